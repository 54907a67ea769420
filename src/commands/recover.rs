//! `lifeboat restore --check SQL … [--drop-after]`: what a RestoreRequest's
//! Job runs. Restore (as `lifeboat restore`), then the checks
//! ([`super::checks`]) against the restored database, then, for a drill, drop
//! the scratch database whatever happened. The report says which step
//! failed, so the controller can name it; it is written to the report file
//! (the Job's termination message) on failure as well as on success.

use super::checks::{run_checks, CheckResult};
use super::restore::{restore, RestoreOptions, RestoreReport};
use super::Error;
use crate::wire::{step, RestoreSummary};
use serde::Serialize;
use std::time::Instant;

#[derive(Debug, Serialize)]
pub struct RecoverReport {
    #[serde(flatten)]
    pub restore: RestoreReport,
    pub checks: Vec<CheckResult>,
    pub check_seconds: f64,
    /// The scratch database was dropped afterwards (`--drop-after`).
    pub dropped: bool,
}

/// A failed step and why.
#[derive(Debug)]
pub struct Failure {
    pub step: &'static str,
    pub error: Error,
}

impl Failure {
    /// The Job's termination message for this failure.
    pub fn summary(&self) -> RestoreSummary {
        RestoreSummary::failed(self.step, &self.error)
    }
}

impl RecoverReport {
    /// The Job's termination message.
    pub fn summary(&self) -> RestoreSummary {
        RestoreSummary {
            ok: true,
            backup_id: Some(self.restore.backup_id.clone()),
            backup_completed_at: Some(self.restore.backup_completed_at),
            target_database: Some(self.restore.target_database.clone()),
            restore_seconds: self.restore.seconds,
            check_seconds: self.check_seconds,
            checks: self.checks.len(),
            bytes: self.restore.bytes,
            ..Default::default()
        }
    }
}

async fn drop_target(o: &RestoreOptions, db: &str) -> Result<(), Error> {
    o.target.drop_database(db).await?;
    tracing::info!(database = %db, "dropped the scratch database");
    Ok(())
}

pub async fn recover(
    o: RestoreOptions,
    checks: &[String],
    drop_after: bool,
) -> Result<RecoverReport, Failure> {
    let fail = |step, error| Failure { step, error };
    let conn = o.target.conn.clone();
    let planned_db = o.target_db.clone();
    let restored = restore(o.clone()).await;
    let report = match restored {
        Ok(r) => r,
        Err(e) => {
            // A database created by this attempt is dropped by restore itself;
            // a drill's existing scratch database goes too.
            if let (true, Some(db)) = (drop_after, &planned_db) {
                let _ = drop_target(&o, db).await;
            }
            return Err(fail(step::RESTORE, e));
        }
    };
    let t0 = Instant::now();
    let checked = run_checks(&conn, &report.target_database, checks).await;
    let check_seconds = t0.elapsed().as_secs_f64();
    let dropped = if drop_after {
        drop_target(&o, &report.target_database)
            .await
            .map_err(|e| fail(step::VERIFY, e))?;
        true
    } else {
        false
    };
    let checks = checked.map_err(|e| fail(step::VERIFY, e))?;
    Ok(RecoverReport {
        restore: report,
        checks,
        check_seconds,
        dropped,
    })
}
