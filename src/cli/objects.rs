//! `lifeboat restore --config` and `lifeboat export`: a config backup's
//! Kubernetes objects back into a cluster, or into YAML files.

use std::process::ExitCode;
use std::sync::Arc;

use super::args::{ExportArgs, RestoreArgs};
use super::print::{self, write_report};
use crate::commands::{self, objects};
use crate::source::config;
use crate::target::objects::Filter;

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
    let report = objects::restore(options, client, c.mapping()?, c.existing(), c.dry_run).await?;
    write_report(a.report_file.as_deref(), &report)?;
    print::report(a.json, &report, human);
    Ok(if report.failures() == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
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
