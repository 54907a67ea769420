//! `lifeboat prune`: deletes named backups from every destination (manifest
//! first, so a half-deleted backup is never a recovery point) and cleans what
//! interrupted backups left. Already gone counts as done: the operator's prune
//! Job may run twice.

use super::{manifests, Error};
use crate::store::Store;
use serde::Serialize;

#[derive(Debug, Serialize)]
pub struct PruneReport {
    pub deleted: Vec<String>,
    pub objects_removed: usize,
}

pub async fn prune(
    from: &[String],
    ids: &[String],
    incomplete: bool,
) -> Result<PruneReport, Error> {
    let mut objects_removed = 0;
    for url in from {
        let store = Store::open(url).await?;
        for id in ids {
            if !crate::catalog::valid_backup_id(id) {
                return Err(Error::Usage(format!(
                    "{id:?} is not a backup id (--backup)"
                )));
            }
            let n = manifests::delete_backup(&store, id).await?;
            tracing::info!(dest = %url, backup = %id, "deleted");
            objects_removed += n;
        }
        if incomplete {
            manifests::clean_leftovers(&store, "").await?;
        }
    }
    Ok(PruneReport {
        deleted: ids.to_vec(),
        objects_removed,
    })
}
