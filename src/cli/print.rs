//! What the commands print: each report in human-readable form, any of them
//! as JSON (`--json`), and the compact JSON a Job leaves as its termination
//! message (`--report-file`).

use crate::api::run::format_bytes;
use crate::commands::{
    self, backup, list, pitr, plan, prune, recover, restore, restore_server, verify,
};
use serde::Serialize;

/// A report as `--json` asked: pretty JSON, or `human`'s lines.
pub fn report<T: Serialize + ?Sized>(json: bool, v: &T, human: fn(&T)) {
    if json {
        print_json(v);
    } else {
        human(v);
    }
}

pub fn print_json<T: Serialize + ?Sized>(v: &T) {
    println!(
        "{}",
        serde_json::to_string_pretty(v).expect("report serialises")
    );
}

/// The compact report a Job leaves as its termination message (4 KiB max).
pub fn write_report<T: Serialize>(
    path: Option<&std::path::Path>,
    v: &T,
) -> Result<(), commands::Error> {
    let Some(path) = path else { return Ok(()) };
    let text = serde_json::to_string(v).expect("report serialises");
    std::fs::write(path, text)
        .map_err(|e| commands::Error::Usage(format!("--report-file {}: {e}", path.display())))
}

pub fn backup(report: &backup::BackupReport) {
    println!("backup {} committed", report.backup_id);
    println!(
        "  {} read, {} stored per destination, {:.1} s, {:.1} MiB/s, peak memory {}",
        format_bytes(report.bytes_in),
        format_bytes(report.bytes_out),
        report.seconds,
        report.mib_per_s,
        format_bytes(report.peak_rss_bytes)
    );
    if let Some(f) = &report.files {
        println!(
            "  files: {} new, {} changed, {} unchanged (not read); {} read, {} deduplicated, {} new chunks stored",
            f.files_new,
            f.files_changed,
            f.files_unchanged,
            format_bytes(f.bytes_read),
            format_bytes(f.bytes_deduplicated),
            f.chunks_new
        );
        for s in &f.skipped {
            println!("  skipped: {s}");
        }
    }
    for d in &report.destinations {
        let checked = if d.verified == Some(true) {
            " (verified)"
        } else {
            ""
        };
        match &d.error {
            None => println!("  ✓ {}{checked}", d.destination),
            Some(e) => println!("  ✗ {} — {e}", d.destination),
        }
    }
}

/// A file restore, one line.
pub fn bucket_restored(r: &crate::commands::bucket::BucketRestoreReport) {
    println!(
        "restored backup {} from {} into {}: {} objects, {}, {} left as they were, in {:.1} s",
        r.backup_id,
        r.destination,
        r.target,
        r.restored.objects,
        format_bytes(r.restored.bytes),
        r.restored.kept,
        r.seconds
    );
}

pub fn files_restored(r: &crate::commands::files::FilesRestoreReport) {
    println!(
        "restored backup {} from {} into {}: {} files, {} directories, {} symlinks, {} hardlinks, {} in {:.1} s",
        r.backup_id,
        r.destination,
        r.target,
        r.restored.files,
        r.restored.dirs,
        r.restored.symlinks,
        r.restored.hardlinks,
        format_bytes(r.restored.bytes),
        r.seconds
    );
    if r.kept > 0 || r.deleted > 0 {
        println!(
            "kept {} existing entries, deleted {} not in the backup",
            r.kept, r.deleted
        );
    }
}

pub fn restore(report: &restore::RestoreReport) {
    println!(
        "restored backup {} ({} {}) from {} into {} in {:.1} s ({:.1} MiB/s)",
        report.backup_id,
        report.source_database,
        report.backup_completed_at.to_rfc3339(),
        report.destination,
        report.target_database,
        report.seconds,
        report.mib_per_s
    );
    for f in &report.failed_attempts {
        println!("  skipped {}: {}", f.destination, f.error);
    }
}

pub fn whole_server(report: &restore_server::ServerReport) {
    println!(
        "backup {} from {}: {} of {} database(s) restored in {:.1} s{}",
        report.backup_id,
        report.destination,
        report.databases.len() - report.failed(),
        report.databases.len(),
        report.seconds,
        if report.globals {
            ", roles and tablespaces first"
        } else {
            ""
        }
    );
    for d in &report.databases {
        match (&d.restore, &d.error) {
            (Some(r), _) => println!(
                "  {}: restored in {:.1} s; properties {}",
                d.database, r.seconds, r.database_properties
            ),
            (None, e) => println!("  {}: FAILED: {}", d.database, e.as_deref().unwrap_or("")),
        }
    }
}

pub fn recover(report: &recover::RecoverReport) {
    println!(
        "restored backup {} into {} in {:.1} s; {} check(s) passed{}",
        report.restore.backup_id,
        report.restore.target_database,
        report.restore.seconds,
        report.checks.len(),
        if report.dropped { "; dropped it" } else { "" }
    );
}

pub fn point_in_time(report: &pitr::PitrReport) {
    println!(
        "restored base backup {} (timeline {}, consistent at {} {}) from {} into {}",
        report.backup_id,
        report.base.timeline,
        report.base.stop_lsn,
        report.base.stopped_at.to_rfc3339(),
        report.destination,
        report.data_dir.display()
    );
    match &report.recovered {
        Some(p) => println!(
            "  recovered to {}: timeline {}, LSN {}, last commit {}{} ({:.1} s)",
            report.target,
            p.timeline,
            p.lsn,
            p.last_commit_time
                .map(|t| t.to_rfc3339())
                .unwrap_or_else(|| "none replayed".into()),
            if report.running {
                "; server running"
            } else {
                "; server stopped"
            },
            report.seconds
        ),
        None => println!(
            "  prepared for recovery to {}; start PostgreSQL on it to replay and promote",
            report.target
        ),
    }
    if report.ended_before_target {
        println!("  the archive ends before the target: replayed everything archived, all of it at or before the target");
    }
}

pub fn plan(report: &plan::PlanReport) {
    let p = &report.plan;
    println!(
        "plan: backup {} (completed {}) from {}, {} stored, into {}",
        p.backup_id,
        p.completed_at.to_rfc3339(),
        p.destination,
        format_bytes(p.bytes),
        report
            .target_database
            .as_deref()
            .unwrap_or("(choose with --target-db)")
    );
    for s in &p.skipped {
        println!("  skipped {}: {}", s.destination, s.reason);
    }
}

pub fn list(entries: &[list::Entry]) {
    println!(
        "{:<28} {:<21} {:<8} {:<10} {:>10}  {:<20} DESTINATION",
        "BACKUP", "COMPLETED", "TIER", "POLICY", "SIZE", "DATABASES"
    );
    for e in entries {
        let when = e
            .completed_at
            .map(|t| t.format("%Y-%m-%d %H:%M:%SZ").to_string())
            .unwrap_or_else(|| "?".into());
        println!(
            "{:<28} {:<21} {:<8} {:<10} {:>10}  {:<20} {}{}",
            e.backup_id,
            when,
            e.tier,
            e.policy,
            format_bytes(e.bytes),
            e.databases.join(","),
            e.destination,
            e.error
                .as_ref()
                .map(|x| format!("  (INVALID: {x})"))
                .unwrap_or_default()
        );
    }
}

pub fn verify(report: &verify::VerifyReport) {
    for c in &report.checks {
        let mark = if c.ok { "✓" } else { "✗" };
        println!(
            "{mark} {} {}{}",
            c.backup_id,
            c.destination,
            c.error
                .as_ref()
                .map(|e| format!(" — {e}"))
                .unwrap_or_default()
        );
        for o in c.objects.iter().filter(|o| !o.ok) {
            println!("    ✗ {}: {}", o.key, o.error.clone().unwrap_or_default());
        }
        let manifest = crate::catalog::manifest_key(&c.backup_id);
        let locks = c
            .objects
            .iter()
            .map(|o| (o.key.as_str(), o.lock.as_ref()))
            .chain([(manifest.as_str(), c.manifest_lock.as_ref())]);
        for (key, lock) in locks {
            if let Some(l) = lock {
                println!(
                    "    🔒 {key}: {} until {}",
                    l.mode,
                    l.retain_until.to_rfc3339()
                );
            }
        }
    }
}

pub fn prune(report: &prune::PruneReport) {
    println!("deleted {} backup(s)", report.deleted.len());
    for k in &report.kept_locked {
        println!(
            "kept in {} ({} object(s) of {}): {} Object Lock until {}; prune again after that",
            k.destination,
            k.objects.len(),
            k.backup.as_deref().unwrap_or("the WAL archive"),
            k.mode,
            k.retain_until.to_rfc3339()
        );
    }
}
