//! `lifeboat restore --check SQL … [--drop-after]`: what a RestoreRequest's
//! Job runs. Restore (as `lifeboat restore`), then the checks
//! ([`super::checks`]) against the restored database, then, for a drill, drop
//! the scratch database whatever happened. The report says which step
//! failed, so the controller can name it; it is written to the report file
//! (the Job's termination message) on failure as well as on success.

use super::checks::{run_checks, CheckResult};
use super::restore::{restore, RestoreOptions, RestoreReport};
use super::Error;
use crate::source::postgres;
use serde::{Deserialize, Serialize};
use std::time::Instant;

/// The steps of a recovery Job, as a RestoreRequest's status names them.
pub const STEP_RESTORE: &str = "restore";
pub const STEP_VERIFY: &str = "verify";

#[derive(Debug, Serialize)]
pub struct RecoverReport {
    #[serde(flatten)]
    pub restore: RestoreReport,
    pub checks: Vec<CheckResult>,
    pub check_seconds: f64,
    /// The scratch database was dropped afterwards (`--drop-after`).
    pub dropped: bool,
}

/// The compact summary in the termination message; the controller reads it
/// back as [`crate::controller::restore_jobs::RecoverSummary`].
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct Summary {
    pub ok: bool,
    /// On failure: the step that failed (`restore` or `verify`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_step: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_completed_at: Option<chrono::DateTime<chrono::Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_database: Option<String>,
    #[serde(default)]
    pub restore_seconds: f64,
    #[serde(default)]
    pub check_seconds: f64,
    #[serde(default)]
    pub checks: usize,
    #[serde(default)]
    pub bytes: u64,
}

/// A failed step and why.
#[derive(Debug)]
pub struct Failure {
    pub step: &'static str,
    pub error: Error,
}

impl Summary {
    pub fn failed(f: &Failure) -> Self {
        let mut error = f.error.to_string();
        // The termination message holds 4 KiB; keep room for the rest.
        if error.len() > 3000 {
            let mut cut = 3000;
            while !error.is_char_boundary(cut) {
                cut -= 1;
            }
            error.truncate(cut);
            error.push('…');
        }
        Summary {
            ok: false,
            failed_step: Some(f.step.to_string()),
            error: Some(error),
            backup_id: None,
            backup_completed_at: None,
            target_database: None,
            restore_seconds: 0.0,
            check_seconds: 0.0,
            checks: 0,
            bytes: 0,
        }
    }

    pub fn succeeded(r: &RecoverReport) -> Self {
        Summary {
            ok: true,
            failed_step: None,
            error: None,
            backup_id: Some(r.restore.backup_id.clone()),
            backup_completed_at: Some(r.restore.backup_completed_at),
            target_database: Some(r.restore.target_database.clone()),
            restore_seconds: r.restore.seconds,
            check_seconds: r.check_seconds,
            checks: r.checks.len(),
            bytes: r.restore.bytes,
        }
    }
}

async fn drop_target(o: &RestoreOptions, db: &str) -> Result<(), Error> {
    let mut c = o.target.connect(&o.maintenance_db).await?;
    postgres::drop_database(&mut c, &o.maintenance_db, db).await?;
    postgres::close(c).await;
    tracing::info!(database = %db, "dropped the scratch database");
    Ok(())
}

pub async fn recover(
    o: RestoreOptions,
    checks: &[String],
    drop_after: bool,
) -> Result<RecoverReport, Failure> {
    let fail = |step, error| Failure { step, error };
    let conn = o.target.clone();
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
            return Err(fail(STEP_RESTORE, e));
        }
    };
    let t0 = Instant::now();
    let checked = run_checks(&conn, &report.target_database, checks).await;
    let check_seconds = t0.elapsed().as_secs_f64();
    let dropped = if drop_after {
        drop_target(&o, &report.target_database)
            .await
            .map_err(|e| fail(STEP_VERIFY, e))?;
        true
    } else {
        false
    };
    let checks = checked.map_err(|e| fail(STEP_VERIFY, e))?;
    Ok(RecoverReport {
        restore: report,
        checks,
        check_seconds,
        dropped,
    })
}
