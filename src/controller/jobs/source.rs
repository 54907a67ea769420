//! What each kind of source needs in its backup pod: the `lifeboat backup`
//! arguments that select it, and access to it (a database's connection
//! Secret). The one place the controller matches on the source kind; a new
//! kind adds an arm here and its module under `crate::source`.

use super::pod::PodNeeds;
use super::{JobConfig, JobError};
use crate::api::policy::{ValidPolicy, ValidSource};
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
            if namespaces.is_empty() {
                needs.args.push("--all-namespaces".into());
            }
            for ns in namespaces {
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
            needs.service_account = Some(c.service_account_name.clone());
            needs.api_access = true;
        }
        ValidSource::Volume(v) => needs.add(super::volume::backup_needs(v)),
    }
    Ok(needs)
}
