//! What each kind of source needs in its backup pod: the `lifeboat backup`
//! arguments that select it, and access to it (a database's connection
//! Secret). The one place the controller matches on the source kind; a new
//! kind adds an arm here and its module under `crate::source`.

use super::pod::{s3_credentials, PodNeeds};
use super::{JobConfig, JobError};
use crate::api::policy::cloud::CloudSecrets;
use crate::api::policy::{BucketSource, ValidPolicy, ValidSource};
use crate::api::S3CredentialsRef;
use crate::location::Location;
use crate::source::config::cloud::Kind;
use crate::source::config::select;

/// The source's part of a backup pod.
pub fn backup_needs(policy: &ValidPolicy<'_>, cfg: &JobConfig) -> Result<PodNeeds, JobError> {
    let mut needs = PodNeeds::default();
    match policy.source {
        ValidSource::PostgresLogical(pg) => {
            if pg.all_databases {
                needs.args.push("--all-databases".into());
            }
            for db in &pg.databases {
                needs.args.extend(["--database".into(), db.clone()]);
            }
            needs.add(PodNeeds::database(&pg.connection_secret_ref, cfg));
        }
        ValidSource::PostgresPhysical(pg) => {
            // A base backup is the whole cluster: databases do not apply.
            needs.args.extend(["--method".into(), "physical".into()]);
            needs.add(PodNeeds::database(&pg.connection_secret_ref, cfg));
        }
        ValidSource::Config(c) => {
            needs.args.push("--config".into());
            let namespaces = c.namespaces_of(&policy.namespace);
            if c.resources.is_empty() {
                // cloud secret stores only: no Kubernetes object is read
            } else if namespaces.is_empty() {
                needs.args.push("--all-namespaces".into());
            }
            for ns in namespaces.into_iter().filter(|_| !c.resources.is_empty()) {
                needs.args.extend(["--namespace".into(), ns]);
            }
            for r in &c.resources {
                needs.args.extend(["--resource".into(), r.clone()]);
            }
            for r in &c.exclude_resources {
                needs.args.extend(["--exclude-resource".into(), r.clone()]);
            }
            if let Some(sel) = &c.label_selector {
                // validate() checked it converts.
                let text = select::selector_text(sel).unwrap_or_default();
                if !text.is_empty() {
                    needs.args.extend(["--selector".into(), text]);
                }
            }
            if c.include_owned {
                needs.args.push("--include-owned".into());
            }
            if c.include_status {
                needs.args.push("--include-status".into());
            }
            if let Some(cloud) = &c.cloud {
                needs.add(cloud_needs(cloud, cfg));
            }
            needs.service_account = Some(c.service_account_name.clone());
            needs.api_access = true;
        }
        ValidSource::Volume(v) => needs.add(super::volume::backup_needs(v)),
        ValidSource::Bucket(b) => needs.add(bucket_needs(b, cfg)),
    }
    Ok(needs)
}

/// `--bucket s3://…` (the typed location, its credentials directory where
/// the Secret is mounted: files, never env or arguments) and the globs.
fn bucket_needs(b: &BucketSource, cfg: &JobConfig) -> PodNeeds {
    let mut needs = PodNeeds::default();
    let mut loc = b.location();
    if let Some(creds) = &b.credentials_secret_ref {
        let dir = cfg.source_credentials_dir();
        needs.add(s3_credentials("source-s3", creds, &dir));
        loc.credentials = Some(dir.into());
    }
    needs
        .args
        .extend(["--bucket".into(), Location::S3(loc).to_string()]);
    for g in &b.include {
        needs.args.extend(["--include".into(), g.clone()]);
    }
    for g in &b.exclude {
        needs.args.extend(["--exclude".into(), g.clone()]);
    }
    needs
}

/// `--secrets-manager`/`--ssm-path` and the account's flags; its
/// credentials Secret mounted as a directory of key files.
fn cloud_needs(cloud: &CloudSecrets, cfg: &JobConfig) -> PodNeeds {
    let mut needs = PodNeeds::default();
    for (kind, scope) in cloud.scopes() {
        let flag = match kind {
            Kind::SecretsManager => "--secrets-manager",
            Kind::Ssm => "--ssm-path",
        };
        needs.args.extend([flag.into(), scope.to_string()]);
    }
    needs
        .args
        .extend(["--cloud-region".into(), cloud.region.clone()]);
    if let Some(e) = &cloud.endpoint {
        needs.args.extend(["--cloud-endpoint".into(), e.clone()]);
    }
    if let Some(creds) = &cloud.credentials_secret_ref {
        needs.add(cloud_credentials(creds, cfg));
    }
    needs
}

/// The cloud stores' credentials Secret mounted as a directory of key
/// files (`--cloud-credentials DIR`): no key in argv or the environment.
pub(super) fn cloud_credentials(creds: &S3CredentialsRef, cfg: &JobConfig) -> PodNeeds {
    let dir = cfg.cloud_credentials_dir();
    let mut needs = s3_credentials("cloud-credentials", creds, &dir);
    needs.args.extend(["--cloud-credentials".into(), dir]);
    needs
}
