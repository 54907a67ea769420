//! RestoreRequest targets of file and bucket backups (format 2): a
//! PersistentVolumeClaim (`spec.target.files`), a bucket
//! (`spec.target.bucket`), and the scratch space a drill restores into
//! (`spec.target.scratch`). Types and checks only; the Job is built in
//! src/controller/jobs/restore_files.rs.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::policy::volume::{check_ids, check_sub_path, uid_gid};
use super::restore::{RestoreRequestSpec, RestoreTarget};
use super::{check_ref_name, FieldError, S3CredentialsRef};
use crate::location::S3Location;

/// Files restored into a claim: in place, into what the volume holds.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FilesTarget {
    /// PersistentVolumeClaim in the request's namespace, mounted read-write.
    #[schemars(length(min = 1, max = 253))]
    pub claim_name: String,
    /// Directory inside the volume to restore into (relative, no `..`);
    /// absent = the volume's root. Created when missing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub_path: Option<String>,
    /// Restore only these paths of the backup (relative) and what is under them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<String>,
    /// For a path the volume already has: keep it (never), replace it when
    /// the backup's copy was modified later (ifNewer), or replace it (always).
    #[serde(default)]
    pub overwrite: FileOverwrite,
    /// Also remove what the backup does not hold (under `paths`, when given).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub delete_extra: bool,
    /// Restore each file's recorded owner: the Job runs as root with only
    /// CHOWN, FOWNER and DAC_OVERRIDE, which the restricted Pod Security
    /// Standard refuses (the namespace must allow baseline or privileged).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub restore_owners: bool,
    /// Otherwise the uid the Job writes as (owner of what it restores);
    /// default 65532, the image's user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub run_as_user: Option<i64>,
    /// The gid the Job writes as; default runAsUser.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub run_as_group: Option<i64>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum FileOverwrite {
    #[default]
    Never,
    IfNewer,
    Always,
}

impl FileOverwrite {
    /// As `lifeboat restore --overwrite` spells it.
    pub fn arg(self) -> &'static str {
        match self {
            FileOverwrite::Never => "never",
            FileOverwrite::IfNewer => "if-newer",
            FileOverwrite::Always => "always",
        }
    }
}

/// Objects restored into a bucket (the same one, or another in any region).
/// Field names as in `spec.source.bucket`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BucketTarget {
    /// Endpoint URL of an S3-compatible service; absent = AWS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// The bucket's region (required).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[schemars(length(min = 3, max = 63))]
    pub bucket: String,
    /// Key prefix the objects are restored under; absent = the bucket's root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// Secret with the target's access keys, mounted as files; absent = the
    /// pod's ambient identity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret_ref: Option<S3CredentialsRef>,
    /// Restore only these keys and the keys under them (`dir` restores `dir/…`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<String>,
    /// For a key the bucket already has: keep it (never) or replace it (always).
    #[serde(default)]
    pub overwrite: FileOverwrite,
    /// Allow an `http://` endpoint on another host (refused otherwise:
    /// anyone on the network could read or alter the objects).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_insecure_http: bool,
}

/// A drill's target: the restore Job's own emptyDir, discarded with the
/// pod. A volume or bucket backup's files land there, every chunk read and
/// authenticated; a physical backup becomes a data directory there
/// (`dataDirectory`), recovered, checked and stopped.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScratchTarget {
    /// For a physical policy's backup, and only for one: recover it into a
    /// data directory in scratch space, as `lifeboat restore --data-dir`
    /// does into a claim (`target.volume`), and run the checks against it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_directory: Option<ScratchDataDirectory>,
}

/// How the scratch data directory's server runs: the same two fields as
/// `target.volume`, whose defaults they share.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScratchDataDirectory {
    /// The uid PostgreSQL runs as, which owns the data directory (999: the
    /// postgres image). The restore Job runs as this uid.
    #[serde(default = "super::restore::postgres_uid")]
    #[schemars(range(min = 1))]
    pub run_as_user: i64,
    /// A role of the backed-up cluster, for the checks and to watch
    /// recovery (over the data directory's socket).
    #[serde(default = "super::restore::postgres_role")]
    #[schemars(length(min = 1, max = 63))]
    pub user: String,
}

impl Default for ScratchDataDirectory {
    fn default() -> Self {
        ScratchDataDirectory {
            run_as_user: super::restore::postgres_uid(),
            user: super::restore::postgres_role(),
        }
    }
}

impl FilesTarget {
    /// The directory restored into, relative to the volume ("" = its root).
    pub fn sub_dir(&self) -> &str {
        self.sub_path.as_deref().unwrap_or("").trim_matches('/')
    }

    /// The uid and gid the Job writes as (0 with `restoreOwners`).
    pub fn uid_gid(&self) -> (i64, i64) {
        uid_gid(self.restore_owners, self.run_as_user, self.run_as_group)
    }

    fn validate(&self, errors: &mut Vec<FieldError>) {
        let field = "spec.target.files";
        check_ref_name(&format!("{field}.claimName"), &self.claim_name, errors);
        if let Some(sub) = &self.sub_path {
            if let Err(e) = check_sub_path(sub) {
                errors.push(FieldError::new(format!("{field}.subPath"), e));
            }
        }
        check_paths(&format!("{field}.paths"), &self.paths, errors);
        let ids = (self.run_as_user, self.run_as_group);
        check_ids(field, ("restoreOwners", self.restore_owners), ids, errors);
    }
}

impl BucketTarget {
    /// Where the objects go, credentials (a directory of key files in the
    /// pod) included. Call on a validated target.
    pub fn location(&self, credentials: Option<&str>) -> S3Location {
        S3Location {
            bucket: self.bucket.clone(),
            region: self.region.clone(),
            endpoint: self.endpoint.as_deref().and_then(|e| e.parse().ok()),
            credentials: credentials.map(Into::into),
            insecure_http: self.allow_insecure_http,
            ..Default::default()
        }
        .join(self.prefix.as_deref().unwrap_or(""))
    }

    fn validate(&self, errors: &mut Vec<FieldError>) {
        let field = "spec.target.bucket";
        if self.bucket.len() < 3 {
            errors.push(FieldError::new(
                format!("{field}.bucket"),
                "a bucket name is 3 to 63 characters",
            ));
        }
        if self.region.as_deref().is_none_or(str::is_empty) {
            errors.push(FieldError::new(
                format!("{field}.region"),
                "name the bucket's region, e.g. eu-west-1",
            ));
        }
        if let Some(e) = &self.endpoint {
            let problem =
                match url::Url::parse(e) {
                    Err(_) => Some(format!(
                        "{e:?} is not a URL like https://minio.example:9000"
                    )),
                    Ok(_) => self.location(None).check_transport().err().map(|p| {
                        format!("{p}, or set allowInsecureHttp: true on a network you trust")
                    }),
                };
            if let Some(p) = problem {
                errors.push(FieldError::new(format!("{field}.endpoint"), p));
            }
        }
        if let Some(creds) = &self.credentials_secret_ref {
            check_ref_name(
                &format!("{field}.credentialsSecretRef.name"),
                &creds.name,
                errors,
            );
        }
        check_paths(&format!("{field}.paths"), &self.paths, errors);
        if self.overwrite == FileOverwrite::IfNewer {
            errors.push(FieldError::new(
                format!("{field}.overwrite"),
                "a bucket restore takes never or always (objects keep no modification time of their own to compare)",
            ));
        }
    }
}

/// Paths of a backup to restore: relative, plain names, none empty.
fn check_paths(field: &str, paths: &[String], errors: &mut Vec<FieldError>) {
    for (i, p) in paths.iter().enumerate() {
        if let Err(e) = check_sub_path(p.trim_end_matches('/')) {
            errors.push(FieldError::new(format!("{field}[{i}]"), e));
        }
    }
}

impl RestoreTarget {
    /// How many of the file and bucket targets are set.
    pub fn chunked_kinds(&self) -> usize {
        [
            self.files.is_some(),
            self.bucket.is_some(),
            self.scratch.is_some(),
        ]
        .into_iter()
        .filter(|x| *x)
        .count()
    }

    /// The target in words, for the request's status and events.
    pub fn describe(&self) -> Option<String> {
        if let Some(f) = &self.files {
            return Some(match f.sub_dir() {
                "" => format!("claim {}", f.claim_name),
                sub => format!("claim {} (subPath {sub})", f.claim_name),
            });
        }
        if let Some(b) = &self.bucket {
            return Some(crate::location::Location::S3(b.location(None)).base());
        }
        self.scratch.as_ref().map(|s| match s.data_directory {
            Some(_) => "a data directory in scratch space".to_string(),
            None => "scratch space".to_string(),
        })
    }

    /// The scratch data directory a physical drill recovers into, if that
    /// is the target.
    pub fn scratch_data_directory(&self) -> Option<&ScratchDataDirectory> {
        self.scratch.as_ref()?.data_directory.as_ref()
    }
}

/// Checks of a request whose one target is files, bucket or scratch: the
/// target's fields, and the request's fields that only a database takes.
pub(super) fn validate(spec: &RestoreRequestSpec, errors: &mut Vec<FieldError>) {
    if let Some(f) = &spec.target.files {
        f.validate(errors);
    }
    if let Some(b) = &spec.target.bucket {
        b.validate(errors);
    }
    let data_dir = spec.target.scratch_data_directory();
    if let Some(d) = data_dir {
        if d.user.is_empty() || d.user.len() > 63 {
            errors.push(FieldError::new(
                "spec.target.scratch.dataDirectory.user",
                "a role name is 1 to 63 bytes",
            ));
        }
        if d.run_as_user < 1 {
            errors.push(FieldError::new(
                "spec.target.scratch.dataDirectory.runAsUser",
                "PostgreSQL does not run as root: give the server's uid",
            ));
        }
    }
    let db_only = [
        ("spec.checks", !spec.checks.is_empty() && data_dir.is_none(), "SQL checks are for database targets; a file or bucket restore authenticates every chunk it writes"),
        ("spec.overwrite", spec.overwrite, "for database targets; set target.files.overwrite or target.bucket.overwrite"),
        ("spec.dropAfter", spec.drop_after, "for database targets; target.scratch is discarded with the restore Job"),
    ];
    for (field, set, why) in db_only {
        if set {
            errors.push(FieldError::new(field, why));
        }
    }
}

#[cfg(test)]
#[path = "restore_files_tests.rs"]
mod tests;
