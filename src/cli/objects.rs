//! `lifeboat restore --config` and `lifeboat export`: a config backup's
//! Kubernetes objects back into a cluster, or into YAML files.

use std::process::ExitCode;
use std::sync::Arc;

use super::args::{ExportArgs, RestoreArgs};
use super::print::{self, write_report};
use crate::commands::{self, objects};
use crate::source::config;
use crate::target::objects::Filter;
use crate::wire::{step, RestoreSummary};

/// Exit 1 when any object was not restored, after trying every one.
pub async fn restore(a: RestoreArgs) -> Result<ExitCode, commands::Error> {
    let c = &a.objects;
    let options = objects::ObjectsOptions {
        from: a.from.clone(),
        keys: Arc::new(a.key.load()?),
        point: a.backup.clone(),
        filter: c.filter()?,
        kubernetes: c.kubernetes(),
        cloud: c.cloud.targets()?,
    };
    let client = match c.kubernetes() {
        true => Some(
            config::client()
                .await
                .map_err(crate::source::SourceError::from)?,
        ),
        false => None,
    };
    let outcome = objects::restore(options, client, c.mapping()?, c.existing(), c.dry_run).await;
    // The Job's termination message: a restore summary, as the other
    // restores leave, so a RestoreRequest reads any of them.
    let summary = match &outcome {
        Ok(r) => summary(r),
        Err(e) => RestoreSummary::failed(step::RESTORE, e),
    };
    write_report(a.report_file.as_deref(), &summary)?;
    let report = outcome?;
    print::report(a.json, &report, human);
    Ok(if report.failures() == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// The report in a line for the request's status; the failures, cut to
/// fit a termination message, as its error.
fn summary(r: &objects::ObjectsReport) -> RestoreSummary {
    let a = &r.applied;
    let mut line = format!(
        "{} {} objects of backup {}: {} created, {} updated, {} skipped (existing){}",
        if r.dry_run {
            "dry run: the API server accepted"
        } else {
            "restored"
        },
        r.objects,
        r.backup_id,
        a.created,
        a.updated,
        a.skipped,
        if a.unchecked > 0 {
            format!(
                ", {} unchecked (their namespace does not exist yet)",
                a.unchecked
            )
        } else {
            String::new()
        }
    );
    for c in &r.cloud {
        line.push_str(&format!(
            "; {} {} under {}: {} created, {} updated, {} skipped",
            c.store, c.region, c.scope, c.applied.created, c.applied.updated, c.applied.skipped
        ));
    }
    let failed: Vec<&String> = a
        .failed
        .iter()
        .chain(r.cloud.iter().flat_map(|c| &c.applied.failed))
        .collect();
    let mut s = if failed.is_empty() {
        RestoreSummary {
            ok: true,
            ..Default::default()
        }
    } else {
        let list: Vec<&str> = failed.iter().map(|f| f.as_str()).collect();
        RestoreSummary::failed(
            step::RESTORE,
            format!("{} not restored: {}", failed.len(), list.join("; ")),
        )
    };
    s.backup_id = Some(r.backup_id.clone());
    s.restore_seconds = r.seconds;
    s.restored = Some(crate::wire::truncate(line, 600));
    s
}

fn human(r: &objects::ObjectsReport) {
    let verb = if r.dry_run {
        "checked (dry run)"
    } else {
        "restored"
    };
    println!(
        "{verb} {} objects of backup {} from {} in {:.1} s: {} created, {} updated, {} skipped (existing){}",
        r.objects,
        r.backup_id,
        r.destination,
        r.seconds,
        r.applied.created,
        r.applied.updated,
        r.applied.skipped,
        if r.applied.unchecked > 0 {
            format!(", {} unchecked (their namespace is created by the restore)", r.applied.unchecked)
        } else {
            String::new()
        }
    );
    for f in &r.applied.failed {
        println!("  ✗ {f}");
    }
    for c in &r.cloud {
        let a = &c.applied;
        println!(
            "{} {} in {} under {}: {} created, {} updated, {} skipped (existing)",
            if r.dry_run {
                "checked (dry run)"
            } else {
                "restored"
            },
            c.store,
            c.region,
            c.scope,
            a.created,
            a.updated,
            a.skipped
        );
        for f in &a.failed {
            println!("  ✗ {f}");
        }
    }
    for a in &r.failed_attempts {
        println!("  (not from {}: {})", a.destination, a.error);
    }
}

/// `lifeboat export`.
pub async fn export(a: ExportArgs) -> Result<ExitCode, commands::Error> {
    crate::source::config::select::Types::check(&a.resources)
        .map_err(|e| commands::Error::Usage(format!("--resource: {e}")))?;
    let options = objects::ObjectsOptions {
        from: a.from,
        keys: Arc::new(a.key.load()?),
        point: a.backup,
        filter: Filter {
            types: a.resources,
            namespaces: a.namespaces,
            ..Default::default()
        },
        kubernetes: true,
        cloud: Vec::new(),
    };
    let report = objects::export(options, &a.out).await?;
    print::report(a.json, &report, |r| {
        println!(
            "exported {} objects of backup {} from {} into {} ({} files; they hold Secrets in the clear): kubectl apply -f {}",
            r.objects,
            r.backup_id,
            r.destination,
            r.directory.display(),
            r.files.len(),
            r.directory.display()
        )
    });
    Ok(ExitCode::SUCCESS)
}
