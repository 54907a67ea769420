//! Where backups live, as typed values, and the one place their URL grammar
//! is parsed and printed.
//!
//! ```text
//! s3://bucket[/prefix][?region=R][&endpoint=URL][&storage-class=C][&credentials=DIR][&path-style=true|false]
//!     [&insecure-http=true]   (an http:// endpoint on another host; refused otherwise)
//!     [&ca-file=PATH]         (PEM certificates an https endpoint's must chain to, instead of the system's)
//!     [&object-lock=governance|compliance&lock-days=N]
//! file:///absolute/path     or     /absolute/path
//! ```
//!
//! A [`NamedLocation`] is what `--to` and `--from` take: `[NAME=]URL`. The
//! controller names each destination of a policy (`primary=s3://…`), and the
//! Job reports back by that name, so nothing has to map URLs back to
//! destinations. Unnamed, a location is named by the URL as given.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use chrono::{DateTime, Utc};

/// What `--to`/`--from` accept, for messages.
pub const GRAMMAR: &str = "s3://bucket/prefix?region=…[&endpoint=…] or file:///absolute/path";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("destination URL {url:?}: {problem}")]
pub struct LocationError {
    pub url: String,
    pub problem: String,
}

/// A place that holds backups: a prefix of an S3 bucket or a local directory.
// A handful exist per process, so the size of the S3 variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    S3(S3Location),
    Local(PathBuf),
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct S3Location {
    pub bucket: String,
    /// Key prefix without leading or trailing `/`; empty for the bucket's root.
    pub prefix: String,
    /// `None`: the SDK's default chain (AWS_REGION, profile).
    pub region: Option<String>,
    /// An S3-compatible service (MinIO, Ceph, …) instead of AWS.
    pub endpoint: Option<url::Url>,
    pub storage_class: Option<String>,
    /// Directory holding `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY` files.
    pub credentials: Option<PathBuf>,
    /// Path-style addressing; `None`: on with a custom endpoint, off on AWS.
    pub path_style: Option<bool>,
    /// Allow an `http://` endpoint on another host than this one.
    pub insecure_http: bool,
    /// PEM file of the certificate authorities trusted for the endpoint
    /// (a private S3 such as MinIO), in place of the system's roots.
    pub ca_file: Option<PathBuf>,
    /// S3 Object Lock retention every object written here gets.
    pub lock: Option<ObjectLock>,
}

/// S3 Object Lock retention: a mode, and how long from the write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjectLock {
    pub mode: LockMode,
    pub days: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockMode {
    /// Users with `s3:BypassGovernanceRetention` can still delete.
    Governance,
    /// Nobody, not even the account's root user, deletes before the date.
    Compliance,
}

impl LockMode {
    /// As the URL spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            LockMode::Governance => "governance",
            LockMode::Compliance => "compliance",
        }
    }
}

impl ObjectLock {
    /// When an object written at `now` may be deleted.
    pub fn retain_until(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        now + chrono::Duration::days(i64::from(self.days))
    }
}

/// Whether `url` names this machine (plain HTTP to it is not on a network).
pub fn is_loopback(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

impl S3Location {
    /// Refuses a plain-HTTP endpoint on another machine unless allowed:
    /// whoever sits on the network could then see the requests, drop
    /// writes or answer reads with an older copy. Loopback is this machine.
    /// The message leaves saying how to allow it to the caller (a flag in a
    /// URL, a field in a policy).
    pub fn check_transport(&self) -> Result<(), String> {
        let Some(e) = &self.endpoint else {
            return Ok(());
        };
        if e.scheme() == "http" && !is_loopback(e) && !self.insecure_http {
            return Err(format!(
                "endpoint {} is plain HTTP to another host; use https",
                e.as_str().trim_end_matches('/')
            ));
        }
        Ok(())
    }

    /// Path-style addressing as it will be used.
    pub fn uses_path_style(&self) -> bool {
        self.path_style.unwrap_or(self.endpoint.is_some())
    }

    /// This location with `path` appended to its prefix.
    pub fn join(mut self, path: &str) -> Self {
        let path = path.trim_matches('/');
        if !path.is_empty() {
            self.prefix = if self.prefix.is_empty() {
                path.to_string()
            } else {
                format!("{}/{path}", self.prefix)
            };
        }
        self
    }
}

impl Location {
    /// The URL without options: `s3://bucket/prefix` or `file:///path`.
    pub fn base(&self) -> String {
        match self {
            Location::S3(s) if s.prefix.is_empty() => format!("s3://{}", s.bucket),
            Location::S3(s) => format!("s3://{}/{}", s.bucket, s.prefix),
            Location::Local(p) => format!("file://{}", p.display()),
        }
    }
}

impl FromStr for Location {
    type Err = LocationError;

    fn from_str(url: &str) -> Result<Self, Self::Err> {
        let bad = |problem: String| LocationError {
            url: url.to_string(),
            problem,
        };
        if url.starts_with("s3://") {
            parse_s3(url).map(Location::S3).map_err(bad)
        } else if let Some(path) = url
            .strip_prefix("file://")
            .or(url.starts_with('/').then_some(url))
        {
            if !path.starts_with('/') {
                return Err(bad(
                    "file destinations need an absolute path: file:///path".into()
                ));
            }
            if path.contains('?') {
                return Err(bad("file destinations take no options".into()));
            }
            Ok(Location::Local(PathBuf::from(path)))
        } else {
            Err(bad(format!("expected {GRAMMAR}")))
        }
    }
}

fn parse_s3(url: &str) -> Result<S3Location, String> {
    let parsed = url::Url::parse(url).map_err(|e| e.to_string())?;
    let bucket = parsed.host_str().unwrap_or_default().to_string();
    if bucket.is_empty() {
        return Err("no bucket name after s3://".into());
    }
    let mut loc = S3Location {
        bucket,
        prefix: parsed.path().trim_matches('/').to_string(),
        ..Default::default()
    };
    let (mut lock_mode, mut lock_days) = (None, None);
    for (k, v) in parsed.query_pairs() {
        match k.as_ref() {
            "region" => loc.region = Some(v.into_owned()),
            "endpoint" => {
                loc.endpoint = Some(
                    url::Url::parse(&v).map_err(|_| format!("endpoint {v:?} is not a URL"))?,
                )
            }
            "storage-class" => loc.storage_class = Some(v.into_owned()),
            "credentials" => loc.credentials = Some(PathBuf::from(v.as_ref())),
            "ca-file" => loc.ca_file = Some(PathBuf::from(v.as_ref())),
            "path-style" => {
                loc.path_style = Some(match v.as_ref() {
                    "true" => true,
                    "false" => false,
                    other => return Err(format!("path-style {other:?}: expected true or false")),
                })
            }
            "insecure-http" => {
                loc.insecure_http = match v.as_ref() {
                    "true" => true,
                    "false" => false,
                    other => {
                        return Err(format!("insecure-http {other:?}: expected true or false"))
                    }
                }
            }
            "object-lock" => {
                lock_mode = Some(match v.as_ref() {
                    "governance" => LockMode::Governance,
                    "compliance" => LockMode::Compliance,
                    other => {
                        return Err(format!(
                            "object-lock {other:?}: expected governance or compliance"
                        ))
                    }
                })
            }
            "lock-days" => {
                lock_days = Some(
                    v.parse::<u32>()
                        .ok()
                        .filter(|d| *d > 0)
                        .ok_or_else(|| format!("lock-days {v:?}: expected a number of days, 1 or more"))?,
                )
            }
            other => {
                return Err(format!(
                    "unknown option {other:?} (known: region, endpoint, storage-class, credentials, path-style, insecure-http, ca-file, object-lock, lock-days)"
                ))
            }
        }
    }
    loc.lock = match (lock_mode, lock_days) {
        (Some(mode), Some(days)) => Some(ObjectLock { mode, days }),
        (None, None) => None,
        _ => return Err("object-lock and lock-days go together".into()),
    };
    Ok(loc)
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Location::S3(s) = self else {
            return f.write_str(&self.base());
        };
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        if let Some(r) = &s.region {
            q.append_pair("region", r);
        }
        if let Some(e) = &s.endpoint {
            q.append_pair("endpoint", e.as_str().trim_end_matches('/'));
        }
        if let Some(c) = &s.storage_class {
            q.append_pair("storage-class", c);
        }
        if let Some(c) = &s.credentials {
            q.append_pair("credentials", &c.to_string_lossy());
        }
        if let Some(p) = s.path_style {
            q.append_pair("path-style", if p { "true" } else { "false" });
        }
        if s.insecure_http {
            q.append_pair("insecure-http", "true");
        }
        if let Some(c) = &s.ca_file {
            q.append_pair("ca-file", &c.to_string_lossy());
        }
        if let Some(l) = &s.lock {
            q.append_pair("object-lock", l.mode.as_str());
            q.append_pair("lock-days", &l.days.to_string());
        }
        let query = q.finish();
        if query.is_empty() {
            f.write_str(&self.base())
        } else {
            write!(f, "{}?{query}", self.base())
        }
    }
}

/// A location and the name reports use for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedLocation {
    pub name: String,
    pub location: Location,
    /// Named explicitly (`NAME=URL`) rather than by its URL.
    named: bool,
}

impl NamedLocation {
    pub fn new(name: impl Into<String>, location: Location) -> Self {
        Self {
            name: name.into(),
            location,
            named: true,
        }
    }

    /// The `--to`/`--from` argument that names it: `NAME=URL`.
    pub fn arg(&self) -> String {
        if self.named {
            format!("{}={}", self.name, self.location)
        } else {
            self.name.clone()
        }
    }

    /// How logs and errors name it: the name, and where it is when named.
    pub fn label(&self) -> String {
        if self.named {
            format!("{} ({})", self.name, self.location.base())
        } else {
            self.name.clone()
        }
    }
}

/// A name: a DNS label, as a policy's destination names are.
fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

impl FromStr for NamedLocation {
    type Err = LocationError;

    fn from_str(arg: &str) -> Result<Self, Self::Err> {
        match arg.split_once('=') {
            Some((name, url)) if is_name(name) => Ok(Self::new(name, url.parse()?)),
            _ => Ok(Self {
                name: arg.to_string(),
                location: arg.parse()?,
                named: false,
            }),
        }
    }
}

impl fmt::Display for NamedLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.arg())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s3(url: &str) -> S3Location {
        match url.parse::<Location>().unwrap() {
            Location::S3(s) => s,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn s3_urls_parse_into_every_option_and_print_back() {
        let url = "s3://bk/prod/shop?region=eu-west-1&endpoint=http%3A%2F%2Fminio%3A9000&storage-class=STANDARD_IA&credentials=%2Fvar%2Frun%2Fs3%2Fdr&path-style=false&ca-file=%2Fetc%2Fca.pem";
        let s = s3(url);
        assert_eq!(s.bucket, "bk");
        assert_eq!(s.prefix, "prod/shop");
        assert_eq!(s.region.as_deref(), Some("eu-west-1"));
        assert_eq!(s.endpoint.as_ref().unwrap().as_str(), "http://minio:9000/");
        assert_eq!(s.storage_class.as_deref(), Some("STANDARD_IA"));
        assert_eq!(s.credentials, Some(PathBuf::from("/var/run/s3/dr")));
        assert_eq!(s.path_style, Some(false));
        assert_eq!(s.ca_file, Some(PathBuf::from("/etc/ca.pem")));
        assert!(!s.uses_path_style());
        assert_eq!(Location::S3(s.clone()).to_string(), url);
        assert_eq!(Location::S3(s).base(), "s3://bk/prod/shop");
    }

    #[test]
    fn object_lock_parses_prints_back_and_dates_its_retention() {
        let url = "s3://bk/p?region=eu-west-1&object-lock=compliance&lock-days=30";
        let s = s3(url);
        let lock = s.lock.unwrap();
        assert_eq!(
            lock,
            ObjectLock {
                mode: LockMode::Compliance,
                days: 30
            }
        );
        assert_eq!(Location::S3(s.clone()).to_string(), url);
        let governance = S3Location {
            lock: Some(ObjectLock {
                mode: LockMode::Governance,
                days: 7,
            }),
            ..s
        };
        let printed = Location::S3(governance.clone()).to_string();
        assert!(
            printed.ends_with("object-lock=governance&lock-days=7"),
            "{printed}"
        );
        assert_eq!(s3(&printed), governance);
        let now: DateTime<Utc> = "2026-03-01T10:00:00Z".parse().unwrap();
        assert_eq!(
            lock.retain_until(now),
            "2026-03-31T10:00:00Z".parse::<DateTime<Utc>>().unwrap()
        );
        assert_eq!(s3("s3://bk/p").lock, None);
    }

    #[test]
    fn unencoded_options_and_bare_buckets_parse() {
        let s = s3("s3://bk?region=us-east-1&endpoint=http://127.0.0.1:9");
        assert_eq!((s.bucket.as_str(), s.prefix.as_str()), ("bk", ""));
        assert!(
            s.uses_path_style(),
            "a custom endpoint defaults to path style"
        );
        assert_eq!(Location::S3(s.clone()).base(), "s3://bk");
        assert_eq!(s.join("/shop/orders/").prefix, "shop/orders");
        assert_eq!(s3("s3://bk/a/").prefix, "a");
        assert!(!s3("s3://bk/a?path-style=false&endpoint=http://h:1").uses_path_style());
        assert!(s3("s3://bk/a?path-style=true").uses_path_style());
    }

    #[test]
    fn bad_urls_name_the_problem() {
        for (url, problem) in [
            ("s3://b/p?colour=red&region=x", "colour"),
            ("s3:///p?region=x", "no bucket"),
            ("s3://b/p?endpoint=notaurl", "endpoint"),
            ("s3://b/p?path-style=yes", "path-style"),
            (
                "s3://b/p?object-lock=forever&lock-days=3",
                "governance or compliance",
            ),
            ("s3://b/p?object-lock=governance&lock-days=0", "lock-days"),
            ("s3://b/p?object-lock=governance&lock-days=x", "lock-days"),
            ("s3://b/p?object-lock=governance", "go together"),
            ("s3://b/p?lock-days=3", "go together"),
            ("file://relative/x", "absolute"),
            ("file:///x?y=1", "no options"),
            ("ftp://host/x", "s3://"),
        ] {
            let e = url.parse::<Location>().unwrap_err();
            assert!(e.to_string().contains(problem), "{url}: {e}");
            assert_eq!(e.url, url);
        }
    }

    #[test]
    fn local_paths_parse_with_or_without_scheme() {
        assert_eq!(
            "/var/backups".parse::<Location>().unwrap(),
            Location::Local("/var/backups".into())
        );
        let l: Location = "file:///var/backups".parse().unwrap();
        assert_eq!(l, Location::Local("/var/backups".into()));
        assert_eq!(l.to_string(), "file:///var/backups");
    }

    #[test]
    fn names_are_given_with_name_equals_url_or_default_to_the_url() {
        let n: NamedLocation = "dr-eu=s3://bk/p?region=eu-west-1".parse().unwrap();
        assert_eq!(n.name, "dr-eu");
        assert_eq!(n.arg(), "dr-eu=s3://bk/p?region=eu-west-1");
        assert_eq!(n.label(), "dr-eu (s3://bk/p)");
        assert_eq!(n.arg().parse::<NamedLocation>().unwrap(), n);
        // A URL's own '=' (in its query, or a path) does not make a name.
        for url in ["s3://bk/p?region=eu-west-1", "/tmp/a=b", "file:///tmp/x=y"] {
            let u: NamedLocation = url.parse().unwrap();
            assert_eq!(
                (u.name.as_str(), u.arg(), u.label()),
                (url, url.into(), url.into())
            );
        }
        assert!("Primary=s3://bk".parse::<NamedLocation>().is_err());
    }

    #[test]
    fn plain_http_is_for_this_machine_unless_allowed() {
        let loc = |url: &str| match url.parse::<Location>().unwrap() {
            Location::S3(s) => s,
            Location::Local(_) => unreachable!(),
        };
        for ok in [
            "s3://b/p?region=r",
            "s3://b/p?region=r&endpoint=https://minio.example:9000",
            "s3://b/p?region=r&endpoint=http://127.0.0.1:9000",
            "s3://b/p?region=r&endpoint=http://localhost:9000",
            "s3://b/p?region=r&endpoint=http://[::1]:9000",
            "s3://b/p?region=r&endpoint=http://minio:9000&insecure-http=true",
        ] {
            assert_eq!(loc(ok).check_transport(), Ok(()), "{ok}");
        }
        let e = loc("s3://b/p?region=r&endpoint=http://minio:9000")
            .check_transport()
            .unwrap_err();
        assert!(
            e.contains("http://minio:9000") && e.contains("use https"),
            "{e}"
        );
        let allowed = loc("s3://b/p?region=r&endpoint=http://minio:9000&insecure-http=true");
        assert!(allowed.insecure_http);
        assert_eq!(loc(&Location::S3(allowed.clone()).to_string()), allowed);
        assert!("s3://b?insecure-http=yes".parse::<Location>().is_err());
    }
}
