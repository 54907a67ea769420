//! A BackupPolicy read once into what the controller acts on: the schedule
//! parsed, the objectives as durations, the source as its kind, the
//! destinations as locations. [`BackupPolicy::validated`] is the only way to
//! get one, so code that holds a [`ValidPolicy`] never meets an invalid spec
//! and never parses a field again.

use chrono::Duration;
use kube::ResourceExt;

use super::{
    BackupPolicy, BucketSource, ConfigSource, Destination, PostgresMethod, PostgresSource,
    VolumeSource,
};
use crate::api::FieldError;
use crate::location::S3Location;
use crate::schedule::PolicySchedule;

/// The source of a valid policy: one variant per kind this version backs up.
#[derive(Clone, Copy, Debug)]
pub enum ValidSource<'a> {
    PostgresLogical(&'a PostgresSource),
    PostgresPhysical(&'a PostgresSource),
    Config(&'a ConfigSource),
    Volume(&'a VolumeSource),
    Bucket(&'a BucketSource),
}

/// A destination of a valid policy and where it keeps this policy's backups.
#[derive(Clone, Debug)]
pub struct ValidDestination<'a> {
    pub spec: &'a Destination,
    pub location: S3Location,
}

#[derive(Clone, Debug)]
pub struct ValidPolicy<'a> {
    pub policy: &'a BackupPolicy,
    pub namespace: String,
    pub name: String,
    pub schedule: PolicySchedule,
    pub rpo: Option<Duration>,
    pub rto: Option<Duration>,
    pub source: ValidSource<'a>,
    pub destinations: Vec<ValidDestination<'a>>,
}

impl BackupPolicy {
    /// Validates the spec ([`super::BackupPolicySpec::validate`]) and reads it
    /// into its typed form; every error names its field.
    pub fn validated(&self) -> Result<ValidPolicy<'_>, Vec<FieldError>> {
        let spec = &self.spec;
        spec.validate()?;
        let namespace = self.namespace().ok_or_else(|| {
            vec![FieldError::new(
                "metadata.namespace",
                "the policy has no namespace",
            )]
        })?;
        let name = self.name_any();
        let schedule = spec.schedule.parse()?;
        let src = &spec.source;
        let source = match (&src.postgres, &src.config, &src.volume, &src.bucket) {
            (Some(pg), ..) if pg.method == PostgresMethod::Physical => {
                ValidSource::PostgresPhysical(pg)
            }
            (Some(pg), ..) => ValidSource::PostgresLogical(pg),
            (None, Some(config), ..) => ValidSource::Config(config),
            (None, None, Some(volume), _) => ValidSource::Volume(volume),
            (None, None, None, Some(bucket)) => ValidSource::Bucket(bucket),
            // validate() refuses a spec without a source.
            (None, None, None, None) => {
                return Err(vec![FieldError::new(
                    "spec.source",
                    "set exactly one of postgres, volume, bucket, config",
                )])
            }
        };
        let destinations = spec
            .destinations
            .iter()
            .map(|d| ValidDestination {
                spec: d,
                location: d.location(&namespace, &name),
            })
            .collect();
        Ok(ValidPolicy {
            policy: self,
            schedule,
            rpo: spec.rpo(),
            rto: spec.rto(),
            source,
            destinations,
            namespace,
            name,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::location::LockMode;
    use serde_json::json;

    fn policy(spec: serde_json::Value) -> BackupPolicy {
        let mut p = BackupPolicy::new("orders", serde_json::from_value(spec).unwrap());
        p.metadata.namespace = Some("shop".into());
        p
    }

    fn spec() -> serde_json::Value {
        json!({
            "source": {"postgres": {"connectionSecretRef": {"name": "db"}, "method": "physical"}},
            "schedule": {"daily": "0 2 * * *"},
            "objectives": {"rpo": "5m"},
            "destinations": [{"name": "dr", "s3": {"region": "eu-west-1", "bucket": "bk",
                "prefix": "/prod/", "endpoint": "http://minio:9000", "forcePathStyle": true,
                "allowInsecureHttp": true,
                "objectLock": {"mode": "Compliance", "days": 7}}}],
            "encryption": {"keySecretRef": {"name": "keys"}}
        })
    }

    #[test]
    fn a_valid_policy_is_read_into_types_once() {
        let p = policy(spec());
        let v = p.validated().unwrap();
        assert_eq!((v.namespace.as_str(), v.name.as_str()), ("shop", "orders"));
        assert!(matches!(v.source, ValidSource::PostgresPhysical(_)));
        assert_eq!(v.rpo, Some(Duration::minutes(5)));
        assert_eq!(v.rto, None);
        assert_eq!(v.schedule.tiers().count(), 1);
        let loc = &v.destinations[0].location;
        assert_eq!(loc.prefix, "prod/shop/orders");
        assert_eq!(loc.endpoint.as_ref().unwrap().host_str(), Some("minio"));
        assert_eq!(loc.path_style, Some(true));
        // The lock reaches the Job through the typed location.
        let lock = loc.lock.unwrap();
        assert_eq!((lock.mode, lock.days), (LockMode::Compliance, 7));
        assert!(crate::location::Location::S3(loc.clone())
            .to_string()
            .contains("object-lock=compliance&lock-days=7"));
    }

    #[test]
    fn an_invalid_policy_names_its_fields() {
        let mut s = spec();
        s["destinations"][0]["s3"]["endpoint"] = json!("not a url");
        s["schedule"]["daily"] = json!("61 * * * *");
        let fields: Vec<String> = policy(s)
            .validated()
            .unwrap_err()
            .into_iter()
            .map(|e| e.field)
            .collect();
        assert!(
            fields.contains(&"spec.destinations[0].s3.endpoint".to_string()),
            "{fields:?}"
        );
        assert!(
            fields.contains(&"spec.schedule.daily".to_string()),
            "{fields:?}"
        );
        let mut unnamespaced = policy(spec());
        unnamespaced.metadata.namespace = None;
        assert_eq!(
            unnamespaced.validated().unwrap_err()[0].field,
            "metadata.namespace"
        );
    }
}
