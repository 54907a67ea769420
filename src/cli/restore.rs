//! `lifeboat restore` in its three forms (a logical restore; one with
//! checks and a drop after, as a drill runs it; point-in-time recovery of a
//! physical backup into a data directory) and `lifeboat plan`, which
//! chooses the point a restore would use.

use super::args::{PlanArgs, RestoreArgs};
use super::print::{self, write_report};
use crate::commands::{self, pitr, recover, restore, restore_server};
use crate::recovery::RecoveryTarget;
use crate::target::database::DatabaseTarget;
use crate::wire::{step, PlanSummary, RestoreSummary};
use std::process::ExitCode;
use std::sync::Arc;

/// `lifeboat restore`: --data-dir asks for point-in-time recovery, --check
/// or --drop-after for a restore the checks judge.
pub async fn restore(a: RestoreArgs) -> Result<ExitCode, commands::Error> {
    if (a.overwrite.is_some() || !a.paths.is_empty()) && a.to_dir.is_none() && a.to_bucket.is_none()
    {
        return Err(commands::Error::Usage(
            "--overwrite and --path are for file and bucket restores (--to-dir, --to-bucket)"
                .into(),
        ));
    }
    if let Some(dir) = a.to_dir.clone() {
        let in_place =
            (a.overwrite.is_some() || a.delete_extra || !a.paths.is_empty()).then(|| {
                crate::target::files_in_place::InPlaceOptions {
                    overwrite: a
                        .overwrite
                        .unwrap_or(crate::target::files_in_place::Overwrite::Never),
                    delete_extra: a.delete_extra,
                    paths: a
                        .paths
                        .iter()
                        .map(|p| p.trim_matches('/').as_bytes().to_vec())
                        .collect(),
                }
            });
        if in_place.is_some() && std::fs::symlink_metadata(&dir).is_err() {
            // In place into a directory that is not there yet (a RestoreRequest's subPath).
            std::fs::create_dir_all(&dir)
                .map_err(|e| commands::Error::Usage(format!("--to-dir {}: {e}", dir.display())))?;
        }
        let outcome = match a.key.load() {
            Ok(keys) => commands::files::restore(&a.from, keys, &a.backup, dir, in_place).await,
            Err(e) => Err(e.into()),
        };
        let report = summarize(a.report_file.as_deref(), outcome, |r| r.summary())?;
        print::report(a.json, &report, print::files_restored);
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(loc) = a.to_bucket.clone() {
        let crate::location::Location::S3(target) = loc else {
            return Err(commands::Error::Usage(
                "--to-bucket: expected s3://bucket/prefix?region=…".into(),
            ));
        };
        let overwrite = bucket_overwrite(a.overwrite)?;
        let outcome = match a.key.load() {
            Ok(keys) => {
                let into = commands::bucket::RestoreInto::Bucket(target, overwrite);
                let paths = a.paths.clone();
                commands::bucket::restore(&a.from, Arc::new(keys), &a.backup, into, paths).await
            }
            Err(e) => Err(e.into()),
        };
        let report = summarize(a.report_file.as_deref(), outcome, |r| r.summary())?;
        print::report(a.json, &report, print::bucket_restored);
        return Ok(ExitCode::SUCCESS);
    }
    if a.objects.config {
        super::objects::restore(a).await
    } else if a.data_dir.is_some() {
        point_in_time(a).await
    } else if !a.checks.is_empty() || a.drop_after {
        recover(a).await
    } else if a.all_databases {
        whole_server(a).await
    } else {
        logical(a).await
    }
}

/// What `lifeboat restore` (logical) was asked for.
fn restore_options(a: &RestoreArgs) -> Result<restore::RestoreOptions, commands::Error> {
    Ok(restore::RestoreOptions {
        from: a.from.clone(),
        keys: Arc::new(a.key.load()?),
        point: a.backup.clone(),
        database: a.database.clone(),
        target: DatabaseTarget {
            conn: a.conn.conn()?,
            maintenance_db: a.conn.maintenance_db.clone(),
            create: a.create,
            clean: a.clean,
            no_owner: a.no_owner,
        },
        target_db: a.target_db.clone(),
        globals: a.globals,
        jobs: a.jobs,
        spool_dir: a.spool_dir.clone(),
    })
}

async fn logical(a: RestoreArgs) -> Result<ExitCode, commands::Error> {
    let report = restore::restore(restore_options(&a)?).await?;
    write_report(a.report_file.as_deref(), &report)?;
    print::report(a.json, &report, print::restore);
    Ok(ExitCode::SUCCESS)
}

/// `lifeboat restore --all-databases`: exit 1 when any database was not
/// restored, after trying every one.
async fn whole_server(a: RestoreArgs) -> Result<ExitCode, commands::Error> {
    let report = restore_server::restore_server(restore_options(&a)?).await?;
    write_report(a.report_file.as_deref(), &report)?;
    print::report(a.json, &report, print::whole_server);
    Ok(if report.failed() == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// `lifeboat restore --check … [--drop-after]`: restore, checks, drop. A
/// failed step is exit 1 with the summary saying which step.
async fn recover(a: RestoreArgs) -> Result<ExitCode, commands::Error> {
    let o = restore_options(&a)?;
    match recover::recover(o, &a.checks, a.drop_after).await {
        Ok(report) => {
            write_report(a.report_file.as_deref(), &report.summary())?;
            print::report(a.json, &report, print::recover);
            Ok(ExitCode::SUCCESS)
        }
        Err(f) => {
            write_report(a.report_file.as_deref(), &f.summary())?;
            eprintln!("error: {} step failed: {}", f.step, f.error);
            Ok(ExitCode::from(1))
        }
    }
}

/// `lifeboat restore --data-dir …`: point-in-time recovery.
async fn point_in_time(a: RestoreArgs) -> Result<ExitCode, commands::Error> {
    let usage = commands::Error::Usage;
    let target = match (&a.target_time, &a.target_lsn) {
        (Some(t), _) => RecoveryTarget::Time(
            chrono::DateTime::parse_from_rfc3339(t)
                .map_err(|e| usage(format!("--target-time {t:?}: not an RFC 3339 time ({e})")))?
                .with_timezone(&chrono::Utc),
        ),
        (None, Some(l)) => {
            RecoveryTarget::Lsn(l.parse().map_err(|e| usage(format!("--target-lsn: {e}")))?)
        }
        (None, None) => RecoveryTarget::Latest,
    };
    let lifeboat = std::env::current_exe()
        .map_err(|e| usage(format!("cannot find this binary for restore_command: {e}")))?;
    if a.no_start && !a.checks.is_empty() {
        return Err(usage(
            "--check needs the server lifeboat starts: drop --no-start".into(),
        ));
    }
    let outcome = pitr::restore(pitr::PitrOptions {
        from: a.from,
        keys: Arc::new(a.key.load()?),
        key_file: a.key.key_file,
        data_dir: a.data_dir.expect("checked by the caller"),
        target,
        start: !a.no_start,
        keep_running: a.keep_running,
        run_as: a.run_as,
        port: a.server_port,
        conn: a.conn.conn()?,
        lifeboat,
        checks: a.checks.clone(),
        check_db: a.conn.maintenance_db.clone(),
    })
    .await;
    // The Job's termination message: the same summary as a logical
    // restore's, so a RestoreRequest reads either.
    if a.report_file.is_some() {
        let summary = match &outcome {
            Ok(r) => r.summary(a.checks.len()),
            Err(e) => {
                let step = if matches!(e, commands::Error::Check(_)) {
                    step::VERIFY
                } else {
                    step::RESTORE
                };
                RestoreSummary::failed(step, e)
            }
        };
        write_report(a.report_file.as_deref(), &summary)?;
    }
    let report = outcome?;
    print::report(a.json, &report, print::point_in_time);
    Ok(ExitCode::SUCCESS)
}

/// `lifeboat plan`.
pub async fn plan(a: PlanArgs) -> Result<ExitCode, commands::Error> {
    let report = commands::plan::plan(commands::plan::PlanOptions {
        from: a.from,
        keys: Arc::new(a.key.load()?),
        point: a.backup,
        target_db: a.target_db,
        depth: a.verify,
        newest_known: a.newest_known,
    });
    let report = match report.await {
        Ok(r) => r,
        Err(e) => {
            write_report(a.report_file.as_deref(), &PlanSummary::failed(&e))?;
            return Err(e);
        }
    };
    write_report(a.report_file.as_deref(), &report.summary())?;
    print::report(a.json, &report, print::plan);
    Ok(ExitCode::SUCCESS)
}

/// Writes the Job's termination message of a file or bucket restore (the
/// summary every restore leaves, failed at the restore step on error).
fn summarize<R>(
    report_file: Option<&std::path::Path>,
    outcome: Result<R, commands::Error>,
    summary: impl Fn(&R) -> RestoreSummary,
) -> Result<R, commands::Error> {
    let s = match &outcome {
        Ok(r) => summary(r),
        Err(e) => RestoreSummary::failed(step::RESTORE, e),
    };
    write_report(report_file, &s)?;
    outcome
}

/// `--overwrite` of a bucket restore: never (the default) or always.
fn bucket_overwrite(
    o: Option<crate::target::files_in_place::Overwrite>,
) -> Result<commands::bucket::Overwrite, commands::Error> {
    use crate::target::files_in_place::Overwrite as O;
    match o {
        None | Some(O::Never) => Ok(commands::bucket::Overwrite::Never),
        Some(O::Always) => Ok(commands::bucket::Overwrite::Always),
        Some(O::IfNewer) => Err(commands::Error::Usage(
            "--overwrite if-newer: a bucket restore takes never or always".into(),
        )),
    }
}
