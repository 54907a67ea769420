//! `lifeboat plan`: choose the recovery point a restore would use, reading
//! nothing but the bucket. Lists each destination's committed backups
//! (manifests MAC-checked), then checks the chosen copy and passes to the
//! next destination when it fails. `--verify full` reads back every object
//! (as `lifeboat verify`); `--verify quick` checks that every object is there
//! with the manifest's size, and leaves authenticating every byte to the
//! restore itself, which does so while it streams and falls back to the next
//! destination — one read of the backup instead of two, so the RTO stays
//! that of the restore. Writes no database: a RestoreRequest's `dryRun`
//! stops here. The choice is [`crate::plan::next`].

use super::{manifests, verify, Error};
use crate::catalog::{Manifest, Point};
use crate::keys::Keyring;
use crate::location::NamedLocation;
use crate::plan::{next, rolled_back, Next, Plan, Source};
use crate::store::Store;
use crate::wire::PlanSummary;
use serde::Serialize;
use std::sync::Arc;
use std::time::Instant;

/// How the chosen copy is checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Depth {
    /// Every object present with the manifest's size.
    Quick,
    /// Every object read back: size, SHA-256, every segment's tag.
    Full,
}

pub struct PlanOptions {
    /// Destination URLs in order of preference.
    pub from: Vec<NamedLocation>,
    pub keys: Arc<Keyring>,
    pub point: Point,
    /// Database to restore into; when unset, the backup's one database.
    pub target_db: Option<String>,
    pub depth: Depth,
    /// The newest backup the operator recorded: `latest` fails when no
    /// destination shows it or anything newer.
    pub newest_known: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct PlanReport {
    #[serde(flatten)]
    pub plan: Plan,
    /// What the restore would create or replace.
    pub target_database: Option<String>,
    pub seconds: f64,
}

impl PlanReport {
    /// The Job's termination message: the point and the destination by name.
    pub fn summary(&self) -> PlanSummary {
        let p = &self.plan;
        PlanSummary {
            ok: Some(true),
            error: None,
            backup_id: Some(p.backup_id.clone()),
            destination: Some(p.destination.clone()),
            completed_at: Some(p.completed_at),
            bytes: p.bytes,
            target_database: self.target_database.clone(),
            skipped: p.skipped.clone(),
        }
    }
}

async fn listing(url: &NamedLocation, keys: &Keyring) -> Result<Vec<Manifest>, Error> {
    let store = Store::open(url).await?;
    let mut out = Vec::new();
    for id in manifests::committed_ids(&store).await? {
        out.push(manifests::open(&store, &id, keys).await?);
    }
    Ok(out)
}

/// Every object read back and authenticated.
async fn read_back(url: &NamedLocation, keys: &Arc<Keyring>, id: &str) -> Result<(), String> {
    let store = Store::open(url).await.map_err(|e| e.to_string())?;
    match verify::check_backup(&store, keys, id).await {
        Ok(c) if c.ok => Ok(()),
        Ok(c) => Err(c
            .objects
            .iter()
            .filter_map(|x| x.error.clone())
            .collect::<Vec<_>>()
            .join("; ")),
        Err(e) => Err(e.to_string()),
    }
}

/// Every object of `m` present with the manifest's size.
async fn present(url: &NamedLocation, m: &Manifest) -> Result<(), String> {
    let store = Store::open(url).await.map_err(|e| e.to_string())?;
    let stored = manifests::backups(&store)
        .await
        .map_err(|e| e.to_string())?;
    let objects = stored.get(&m.backup_id).cloned().unwrap_or_default();
    let problems: Vec<String> = m
        .objects
        .iter()
        .filter_map(|e| match objects.iter().find(|o| o.key == e.key) {
            None => Some(format!("object {} is missing", e.key)),
            Some(o) if o.size != e.size => Some(format!(
                "object {} holds {} bytes, the manifest says {}",
                e.key, o.size, e.size
            )),
            Some(_) => None,
        })
        .collect();
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

pub async fn plan(o: PlanOptions) -> Result<PlanReport, Error> {
    let t0 = Instant::now();
    if o.from.is_empty() {
        return Err(Error::Usage("no source: give --from at least once".into()));
    }
    let mut sources = Vec::new();
    for url in &o.from {
        let l = listing(url, &o.keys).await.map_err(|e| e.to_string());
        sources.push(Source::new(&url.name, l));
    }
    if let (Point::Latest, Some(known)) = (&o.point, &o.newest_known) {
        if let Some(newest) = rolled_back(&sources, known) {
            return Err(Error::Usage(format!(
                "the newest backup in the destinations is {newest}, older than {known}, which the operator recorded: \
                 the newest backups were deleted or rolled back (someone with write access to the bucket?); \
                 restore a named backup (--backup) if that is expected"
            )));
        }
    }
    let plan = loop {
        match next(&sources, &o.point, None).map_err(|e| Error::Usage(e.to_string()))? {
            Next::Chosen(p) => break p,
            Next::Verify { source, backup_id } => {
                let outcome = match o.depth {
                    Depth::Full => read_back(&o.from[source], &o.keys, &backup_id).await,
                    Depth::Quick => {
                        let listing = sources[source].listing.as_ref().ok();
                        let m = listing.and_then(|l| l.iter().find(|m| m.backup_id == backup_id));
                        match m {
                            Some(m) => present(&o.from[source], m).await,
                            None => Err(format!("backup {backup_id} is not listed")),
                        }
                    }
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
