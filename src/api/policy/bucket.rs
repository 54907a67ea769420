//! `spec.source.bucket`: the objects of an S3 bucket (or of a prefix of
//! it), backed up by a Job that runs `lifeboat backup --bucket s3://…`
//! with the bucket's credentials Secret mounted as files. The location the
//! Job is given is built here, typed ([`BucketSource::location`]); the
//! checks make sure it reaches the Job exactly as written.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::volume::check_globs;
use crate::api::{check_ref_name, FieldError, S3CredentialsRef};
use crate::location::{Location, S3Location};

/// Objects in another bucket, copied into the chunk store: unchanged
/// objects (key, size, ETag) are not read again.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BucketSource {
    /// Endpoint URL for S3-compatible stores; absent = AWS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// The bucket's region (required).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[schemars(length(min = 3, max = 63))]
    pub bucket: String,
    /// Back up only the keys under this prefix (`uploads/`); absent = all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// Secret with read access to the bucket (same keys as a
    /// destination's); absent = the Job's ambient identity (IRSA).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret_ref: Option<S3CredentialsRef>,
    /// Only objects whose key (relative to the prefix) matches one of these globs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub include: Vec<String>,
    /// Leave out objects whose key matches, and every key under it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude: Vec<String>,
    /// Allow an `http://` endpoint on another host (refused otherwise:
    /// anyone on the network could read the objects or alter them).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_insecure_http: bool,
}

impl BucketSource {
    /// The bucket and prefix the Job reads, without credentials (where the
    /// pod finds them is the Job builder's business). Call on a validated
    /// spec: an endpoint that is not a URL is left out here, refused there.
    pub fn location(&self) -> S3Location {
        S3Location {
            bucket: self.bucket.clone(),
            region: self.region.clone(),
            endpoint: self.endpoint.as_deref().and_then(|e| e.parse().ok()),
            insecure_http: self.allow_insecure_http,
            ..Default::default()
        }
        .join(self.prefix.as_deref().unwrap_or(""))
    }

    pub(super) fn validate(&self, errors: &mut Vec<FieldError>) {
        let field = "spec.source.bucket";
        if let Err(e) = check_bucket_name(&self.bucket) {
            errors.push(FieldError::new(format!("{field}.bucket"), e));
        }
        if self.region.as_deref().is_none_or(str::is_empty) {
            errors.push(FieldError::new(
                format!("{field}.region"),
                "name the bucket's region, e.g. eu-west-1",
            ));
        }
        if let Some(e) = &self.endpoint {
            if let Err(problem) = self.check_endpoint(e) {
                errors.push(FieldError::new(format!("{field}.endpoint"), problem));
            }
        }
        if let Some(prefix) = &self.prefix {
            // The prefix travels in the Job's `s3://` argument: one that
            // would come back different is refused, not read elsewhere.
            let alone = S3Location {
                bucket: "b".repeat(3),
                ..Default::default()
            }
            .join(prefix);
            let back = Location::S3(alone.clone()).to_string().parse::<Location>();
            if back != Ok(Location::S3(alone)) {
                errors.push(FieldError::new(
                    format!("{field}.prefix"),
                    format!("{prefix:?} holds characters a URL path changes (a space, ?, #, …)"),
                ));
            }
        }
        if let Some(creds) = &self.credentials_secret_ref {
            check_ref_name(
                &format!("{field}.credentialsSecretRef.name"),
                &creds.name,
                errors,
            );
        }
        check_globs(field, &self.include, &self.exclude, errors);
    }

    fn check_endpoint(&self, e: &str) -> Result<(), String> {
        let url = url::Url::parse(e)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
            .ok_or_else(|| format!("{e:?} is not a URL like https://minio.example:9000"))?;
        let loc = S3Location {
            endpoint: Some(url),
            insecure_http: self.allow_insecure_http,
            ..Default::default()
        };
        loc.check_transport()
            .map_err(|p| format!("{p}, or set allowInsecureHttp: true on a network you trust"))
    }
}

/// S3's bucket naming rules: 3–63 lowercase letters, digits, `.` and `-`,
/// starting and ending with a letter or digit, no `..`, not an IP address.
pub fn check_bucket_name(name: &str) -> Result<(), String> {
    let alnum = |b: Option<&u8>| b.is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    let ok = (3..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
        && alnum(name.as_bytes().first())
        && alnum(name.as_bytes().last())
        && !name.contains("..")
        && name.parse::<std::net::Ipv4Addr>().is_err();
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a bucket name (3-63 lowercase letters, digits, '.' and '-', starting and ending with a letter or digit)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fields(v: serde_json::Value) -> Vec<String> {
        let s: BucketSource = serde_json::from_value(v).unwrap();
        let mut errors = Vec::new();
        s.validate(&mut errors);
        errors.into_iter().map(|e| e.field).collect()
    }

    #[test]
    fn each_bad_field_is_named() {
        let good = json!({"bucket": "uploads.eu", "region": "eu-west-1", "prefix": "app/img",
            "endpoint": "http://127.0.0.1:9000", "credentialsSecretRef": {"name": "src"},
            "include": ["*.jpg"], "exclude": ["tmp/**"]});
        assert!(fields(good.clone()).is_empty());
        let bad = |patch: serde_json::Value| {
            let mut v = good.clone();
            for (k, val) in patch.as_object().unwrap() {
                v[k] = val.clone();
            }
            fields(v)
        };
        for name in [
            "Uploads",
            "up_loads",
            "ab",
            "-uploads",
            "a..b",
            "192.168.1.1",
        ] {
            assert_eq!(
                bad(json!({"bucket": name})),
                ["spec.source.bucket.bucket"],
                "{name}"
            );
        }
        assert_eq!(bad(json!({"region": ""})), ["spec.source.bucket.region"]);
        for e in ["minio:9000", "not a url", "http://minio.internal:9000"] {
            assert_eq!(
                bad(json!({"endpoint": e})),
                ["spec.source.bucket.endpoint"],
                "{e}"
            );
        }
        // http to another host, when allowed.
        assert!(
            bad(json!({"endpoint": "http://minio:9000", "allowInsecureHttp": true})).is_empty()
        );
        for p in ["a b", "x?y", "a#b", "ü"] {
            assert_eq!(
                bad(json!({"prefix": p})),
                ["spec.source.bucket.prefix"],
                "{p}"
            );
        }
        assert_eq!(
            bad(json!({"credentialsSecretRef": {"name": ""}})),
            ["spec.source.bucket.credentialsSecretRef.name"]
        );
        assert_eq!(
            bad(json!({"include": ["a[b"], "exclude": ["ok", "{x"]})),
            [
                "spec.source.bucket.include[0]",
                "spec.source.bucket.exclude[1]"
            ]
        );
    }

    #[test]
    fn the_location_is_typed_from_the_fields() {
        let s: BucketSource = serde_json::from_value(json!({"bucket": "uploads",
            "region": "eu-west-1", "prefix": "/app/img/", "endpoint": "https://s3.example:9000",
            "allowInsecureHttp": true}))
        .unwrap();
        let loc = s.location();
        assert_eq!(
            (
                loc.bucket.as_str(),
                loc.prefix.as_str(),
                loc.region.as_deref()
            ),
            ("uploads", "app/img", Some("eu-west-1"))
        );
        assert_eq!(
            loc.endpoint.as_ref().map(|u| u.as_str()),
            Some("https://s3.example:9000/")
        );
        assert!(loc.insecure_http && loc.credentials.is_none());
    }
}
