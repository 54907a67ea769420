//! What each kind of source needs in its backup pod: the `lifeboat backup`
//! arguments that select it, and access to it (a database's connection
//! Secret). The one place the controller matches on the source kind; a new
//! kind adds an arm here and its module under `crate::source`.

use super::pod::PodNeeds;
use super::{JobConfig, JobError};
use crate::api::policy::{ValidPolicy, ValidSource};

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
    }
    Ok(needs)
}
