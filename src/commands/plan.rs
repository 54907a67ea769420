//! `lifeboat plan`: choose the recovery point a restore would use, reading
//! nothing but the bucket. Lists each destination's committed backups, then
//! reads back every object of the chosen backup (as `lifeboat verify`) and
//! passes to the next destination when a copy fails. Writes no database:
//! a RestoreRequest's `dryRun` stops here. The choice is [`crate::plan::next`].

use super::{manifests, verify, Error};
use crate::catalog::{Manifest, Point};
use crate::keys::Keyring;
use crate::plan::{next, Next, Plan, Source};
use crate::store::Store;
use serde::Serialize;
use std::sync::Arc;
use std::time::Instant;

pub struct PlanOptions {
    /// Destination URLs in order of preference.
    pub from: Vec<String>,
    pub keys: Arc<Keyring>,
    pub point: Point,
    /// Database to restore into; when unset, the backup's one database.
    pub target_db: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct PlanReport {
    #[serde(flatten)]
    pub plan: Plan,
    /// What the restore would create or replace.
    pub target_database: Option<String>,
    pub seconds: f64,
}

/// A destination URL without its query (credentials paths, endpoint):
/// how reports name it.
pub fn url_base(url: &str) -> &str {
    url.split('?').next().unwrap_or(url)
}

async fn listing(url: &str, keys: &Keyring) -> Result<Vec<Manifest>, Error> {
    let store = Store::open(url).await?;
    let mut out = Vec::new();
    for id in manifests::committed_ids(&store).await? {
        out.push(manifests::open(&store, &id, keys).await?);
    }
    Ok(out)
}

pub async fn plan(o: PlanOptions) -> Result<PlanReport, Error> {
    let t0 = Instant::now();
    if o.from.is_empty() {
        return Err(Error::Usage("no source: give --from at least once".into()));
    }
    let mut sources = Vec::new();
    for url in &o.from {
        let l = listing(url, &o.keys).await.map_err(|e| e.to_string());
        sources.push(Source::new(url_base(url), l));
    }
    let plan = loop {
        match next(&sources, &o.point, None).map_err(|e| Error::Usage(e.to_string()))? {
            Next::Chosen(p) => break p,
            Next::Verify { source, backup_id } => {
                let store = Store::open(&o.from[source]).await?;
                let outcome = match verify::check_backup(&store, &o.keys, &backup_id).await {
                    Ok(c) if c.ok => Ok(()),
                    Ok(c) => Err(c
                        .objects
                        .iter()
                        .filter_map(|x| x.error.clone())
                        .collect::<Vec<_>>()
                        .join("; ")),
                    Err(e) => Err(e.to_string()),
                };
                if let Err(e) = &outcome {
                    tracing::warn!(from = %sources[source].name, backup = %backup_id, error = %e, "this copy failed verification");
                }
                sources[source].checked.insert(backup_id, outcome);
            }
        }
    };
    let target_database = o
        .target_db
        .clone()
        .or_else(|| (plan.databases.len() == 1).then(|| plan.databases[0].clone()));
    tracing::info!(backup = %plan.backup_id, from = %plan.destination, bytes = plan.bytes, "planned");
    Ok(PlanReport {
        plan,
        target_database,
        seconds: t0.elapsed().as_secs_f64(),
    })
}
