//! The on-call table: one aligned row per policy, then its problems.

use chrono::{DateTime, Utc};

use super::PolicyStatus;
use crate::api::run::format_duration;

const HEADERS: [&str; 8] = [
    "POLICY",
    "LAST BACKUP",
    "AGE/RPO",
    "NEXT",
    "LAST DRILL",
    "RTO",
    "RECOVERY WINDOW",
    "HEALTH",
];

pub(super) fn when(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%MZ").to_string()
}

/// `3h12m/1h BREACHED`, `12m0s/1h`, `-/1h`, `5m0s`.
pub(super) fn against(measured: Option<String>, objective: Option<&str>, breached: bool) -> String {
    let measured = measured.unwrap_or_else(|| "-".into());
    let mut cell = match objective {
        Some(o) => format!("{measured}/{o}"),
        None => measured,
    };
    if breached {
        cell.push_str(" BREACHED");
    }
    cell
}

/// The age of the last backup against the RPO and the last drill's RTO
/// against its objective: `3h12m/1h BREACHED`, `4m12s/4h`.
pub(super) fn objectives(s: &PolicyStatus, now: DateTime<Utc>) -> (String, String) {
    let age = against(
        s.last_backup
            .as_ref()
            .map(|b| format_duration(now - b.completed_at)),
        s.rpo.as_deref(),
        s.rpo_breached,
    );
    let rto = against(
        s.last_drill
            .as_ref()
            .and_then(|d| d.recovery_time_seconds)
            .map(|secs| format_duration(chrono::Duration::seconds(secs))),
        s.rto.as_deref(),
        s.rto_breached,
    );
    (age, rto)
}

fn cells(s: &PolicyStatus, now: DateTime<Utc>) -> [String; 8] {
    let last = match &s.last_backup {
        Some(b) => format!("{} {}", when(b.completed_at), b.tier),
        None => "never".into(),
    };
    let (age, rto) = objectives(s, now);
    let next = match s.next_backup {
        _ if s.suspended => "suspended".into(),
        Some(t) if t >= now => format!("in {}", format_duration(t - now)),
        Some(t) => format!("overdue {}", format_duration(now - t)),
        None => "-".into(),
    };
    let drill = match &s.last_drill {
        Some(d) => format!(
            "{} {} ago",
            if d.succeeded { "passed" } else { "FAILED" },
            format_duration(now - d.completed_at)
        ),
        None => "never".into(),
    };
    let window = match &s.recovery_window {
        Some(w) => format!("{} .. {}", when(w.from), when(w.to)),
        None => "-".into(),
    };
    let health = health(s);
    [
        format!("{}/{}", s.namespace, s.name),
        last,
        age,
        next,
        drill,
        rto,
        window,
        health,
    ]
}

/// The HEALTH words: `OK`, `OK (suspended)`, or the problems' labels.
pub fn health(s: &PolicyStatus) -> String {
    if s.problems.is_empty() {
        if s.suspended { "OK (suspended)" } else { "OK" }.to_string()
    } else {
        let mut labels: Vec<&str> = s.problems.iter().map(|p| p.kind.label()).collect();
        labels.dedup();
        labels.join(", ")
    }
}

/// The table, aligned, then one line per problem naming its policy.
pub fn table(statuses: &[PolicyStatus], now: DateTime<Utc>) -> String {
    if statuses.is_empty() {
        return "no BackupPolicies found\n".into();
    }
    let rows: Vec<[String; 8]> = std::iter::once(HEADERS.map(String::from))
        .chain(statuses.iter().map(|s| cells(s, now)))
        .collect();
    let mut widths = [0usize; 8];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in &rows {
        let line: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    // File backups: what the last one read and stored.
    for s in statuses {
        if let Some(f) = s.last_backup.as_ref().and_then(|b| b.files.as_ref()) {
            out.push_str(&files_line(s, f));
        }
    }
    let problems: Vec<String> = statuses
        .iter()
        .flat_map(|s| {
            s.problems.iter().map(move |p| {
                format!(
                    "  {}/{}: {}: {}",
                    s.namespace,
                    s.name,
                    p.kind.label(),
                    p.message
                )
            })
        })
        .collect();
    if !problems.is_empty() {
        out.push_str("\nProblems:\n");
        for p in problems {
            out.push_str(&p);
            out.push('\n');
        }
    }
    out
}

/// `  shop/uploads: files 2 new, 1 changed, 40 unchanged; 1.2 MiB read, 800 KiB stored`
/// (`objects` for a bucket policy).
fn files_line(s: &PolicyStatus, f: &crate::api::run::FileCounts) -> String {
    let b = |v: i64| crate::api::run::format_bytes(u64::try_from(v).unwrap_or(0));
    let what = match s.source.as_deref() {
        Some("bucket") => "objects",
        _ => "files",
    };
    format!(
        "  {}/{}: {what} {} new, {} changed, {} unchanged; {} read, {} deduplicated, {} stored\n",
        s.namespace,
        s.name,
        f.files_new,
        f.files_changed,
        f.files_unchanged,
        b(f.bytes_read),
        b(f.bytes_deduplicated),
        b(f.bytes_stored)
    )
}
