//! `lifeboat restore --all-databases`: a whole server back from one backup
//! in one command — the globals (roles, tablespaces) first when asked, then
//! every database the backup holds, each under its own name and with its
//! own properties, one after another. A database that cannot be restored
//! does not stop the others; each is reported, and the command fails when
//! any did.

use super::restore::{resolve_point, restore, restore_globals, RestoreOptions, RestoreReport};
use super::{error_chain, manifests, Error};
use crate::catalog::{Manifest, Point};
use crate::store::Store;
use serde::Serialize;
use std::time::Instant;

#[derive(Debug, Serialize)]
pub struct DatabaseOutcome {
    pub database: String,
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restore: Option<RestoreReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct ServerReport {
    pub backup_id: String,
    pub destination: String,
    pub globals: bool,
    pub databases: Vec<DatabaseOutcome>,
    pub seconds: f64,
}

impl ServerReport {
    pub fn failed(&self) -> usize {
        self.databases.iter().filter(|d| !d.ok).count()
    }
}

pub async fn restore_server(o: RestoreOptions) -> Result<ServerReport, Error> {
    let t0 = Instant::now();
    if o.from.is_empty() {
        return Err(Error::Usage("no source: give --from at least once".into()));
    }
    // One backup for every database, chosen once across the destinations.
    let (store, manifest) = choose(&o).await?;
    let databases: Vec<String> = manifest
        .objects
        .iter()
        .filter(|e| e.role == "database")
        .filter_map(|e| e.database.clone())
        .collect();
    tracing::info!(backup = %manifest.backup_id, from = %store.label(), databases = databases.len(), "restoring the whole server");
    if o.globals {
        let server = o.target.for_backup(&manifest.source).await?;
        restore_globals(&store, &manifest.objects, &o.keys, &server).await?;
    }
    let mut outcomes = Vec::new();
    for (i, db) in databases.iter().enumerate() {
        tracing::info!(database = %db, n = i + 1, of = databases.len(), "restoring");
        let one = RestoreOptions {
            point: Point::Id(manifest.backup_id.clone()),
            database: Some(db.clone()),
            target_db: Some(db.clone()),
            globals: false,
            ..o.clone()
        };
        outcomes.push(match restore(one).await {
            Ok(r) => DatabaseOutcome {
                database: db.clone(),
                ok: true,
                restore: Some(r),
                error: None,
            },
            Err(e) => {
                tracing::error!(database = %db, error = %error_chain(&e), "this database was not restored; going on with the others");
                DatabaseOutcome {
                    database: db.clone(),
                    ok: false,
                    restore: None,
                    error: Some(error_chain(&e)),
                }
            }
        });
    }
    Ok(ServerReport {
        backup_id: manifest.backup_id.clone(),
        destination: store.name().to_string(),
        globals: o.globals,
        databases: outcomes,
        seconds: t0.elapsed().as_secs_f64(),
    })
}

/// The backup to restore, from the first destination that lists it.
async fn choose(o: &RestoreOptions) -> Result<(Store, Manifest), Error> {
    let point = resolve_point(&o.from, &o.keys, &o.point).await;
    let mut faults = Vec::new();
    for url in &o.from {
        let found = async {
            let store = Store::open(url).await?;
            let m = manifests::choose(&store, &o.keys, &point).await?;
            Ok::<_, Error>((store, m))
        }
        .await;
        match found {
            Ok(found) => return Ok(found),
            Err(e) if e.is_source_fault() => {
                tracing::warn!(from = %url.label(), error = %e, "this destination cannot serve the restore; trying the next one");
                faults.push(e.to_string());
            }
            Err(e) => return Err(e),
        }
    }
    Err(Error::AllSourcesFailed(faults.join("; ")))
}
