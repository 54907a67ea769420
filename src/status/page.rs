//! The status page the controller serves (`--status-page`): per policy a
//! health card (the on-call row of [`super::summarize`]: last backup and its
//! age against the RPO, last drill and its RTO against the objective,
//! recovery window, problems), the run history with its success rate, and
//! the recovery points per destination. Pure: HTML from the policies, their
//! runs and the clock; `controller::page` reads the cluster.
//!
//! Every value that comes from the cluster goes through [`escape`]: names,
//! messages and ids are written by users and Jobs, and must read as text.
//! Nothing here comes from a Secret: the page sees only BackupPolicies and
//! BackupRuns.

use std::collections::BTreeMap;
use std::fmt::Write;

use chrono::{DateTime, Utc};
use kube::ResourceExt;

use super::table::{self, when};
use super::{health, summarize, PolicyStatus};
use crate::api::run::{format_bytes, format_duration, RunPhase};
use crate::api::{BackupPolicy, BackupRun};

#[cfg(test)]
#[path = "page_tests.rs"]
mod tests;

/// Runs shown per policy, newest first.
pub const HISTORY: usize = 20;
/// Recovery points shown per destination, newest first.
pub const POINTS: usize = 10;
/// Seconds between the page's own reloads.
pub const REFRESH_SECONDS: u32 = 30;

/// `s` as HTML text or attribute value: `<b>` shows as `<b>`, never bold.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font-family:sans-serif;margin:1.5em;color:#222;background:#f6f7f9}\
h1{margin:0 0 .2em}.meta{color:#666;margin-bottom:1.2em}\
.card{background:#fff;border:1px solid #ccd;border-left:6px solid #2a7;border-radius:6px;padding:1em 1.2em;margin-bottom:1.5em}\
.card.bad{border-left-color:#c33}.health{font-weight:bold;padding:.1em .5em;border-radius:4px;background:#dfd}\
.bad .health{background:#fdd}.breached{color:#c33;font-weight:bold}\
dl{display:grid;grid-template-columns:max-content auto;gap:.2em 1em;margin:.6em 0}dt{color:#555}dd{margin:0}\
table{border-collapse:collapse;margin:.4em 0 .8em;font-size:.92em}th,td{border:1px solid #dde;padding:.2em .5em;text-align:left}\
th{background:#eef}.Failed{color:#c33}.Succeeded{color:#272}h3{margin:.8em 0 .2em;font-size:1em}\
ul.problems{margin:.3em 0;color:#a22}tr.bad td:nth-child(2){color:#c33;font-weight:bold}\
.summary{margin:.2em 0}";

/// The whole page: a card per policy (sorted by namespace and name), with
/// the runs whose `policyRef` names it.
pub fn render(policies: &[BackupPolicy], runs: &[BackupRun], now: DateTime<Utc>) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"refresh\" content=\"{REFRESH_SECONDS}\">\
         <title>lifeboat status</title><style>{STYLE}</style></head><body>\n\
         <h1>lifeboat status</h1><p class=\"meta\">as of <span id=\"now\">{}</span>; \
         this page reloads every {REFRESH_SECONDS}s</p>\n",
        when(now)
    );
    let statuses = summarize(policies, now);
    if statuses.is_empty() {
        out.push_str("<p id=\"empty\">no BackupPolicies found</p>\n");
    } else {
        overview(&mut out, &statuses, now);
    }
    for s in &statuses {
        let policy = policies
            .iter()
            .find(|p| p.namespace().unwrap_or_default() == s.namespace && p.name_any() == s.name);
        let mut mine: Vec<&BackupRun> = runs
            .iter()
            .filter(|r| {
                r.namespace().unwrap_or_default() == s.namespace && r.spec.policy_ref.name == s.name
            })
            .collect();
        mine.sort_by_key(|r| std::cmp::Reverse((started(r), r.name_any())));
        card(&mut out, s, policy, &mine, now);
    }
    out.push_str("</body></html>\n");
    out
}

/// When a run began, as best known: its start, else its creation.
fn started(run: &BackupRun) -> Option<DateTime<Utc>> {
    run.status.as_ref().and_then(|s| s.started_at).or_else(|| {
        run.metadata
            .creation_timestamp
            .as_ref()
            .map(crate::api::conditions::from_time)
    })
}

/// HTML of the age against the RPO and the drill's RTO against its
/// objective: `30m0s/1h`, or marked when breached.
fn objectives(s: &PolicyStatus, now: DateTime<Utc>) -> (String, String) {
    let marked = |breached: bool, cell: String| {
        if breached {
            format!("<span class=\"breached\">{}</span>", escape(&cell))
        } else {
            escape(&cell)
        }
    };
    let (age, rto) = table::objectives(s, now);
    (marked(s.rpo_breached, age), marked(s.rto_breached, rto))
}

/// One line per policy, linking to its card.
fn overview(out: &mut String, statuses: &[PolicyStatus], now: DateTime<Utc>) {
    let bad = statuses.iter().filter(|s| !s.healthy).count();
    let _ = write!(
        out,
        "<p class=\"summary\">{} polic{}, {bad} needing attention</p>\n\
         <table class=\"overview\"><tr><th>Policy</th><th>Health</th><th>Age / RPO</th>\
         <th>Drill RTO / objective</th></tr>\n",
        statuses.len(),
        if statuses.len() == 1 { "y" } else { "ies" }
    );
    for s in statuses {
        let id = escape(&format!("{}/{}", s.namespace, s.name));
        let (age, rto) = objectives(s, now);
        let class = if s.healthy { "ok" } else { "bad" };
        let _ = writeln!(
            out,
            "<tr class=\"{class}\"><td><a href=\"#{id}\">{id}</a></td><td>{}</td><td>{age}</td><td>{rto}</td></tr>",
            escape(&health(s))
        );
    }
    out.push_str("</table>\n");
}

fn card(
    out: &mut String,
    s: &PolicyStatus,
    policy: Option<&BackupPolicy>,
    runs: &[&BackupRun],
    now: DateTime<Utc>,
) {
    let id = escape(&format!("{}/{}", s.namespace, s.name));
    let class = if s.healthy { "card" } else { "card bad" };
    let _ = write!(
        out,
        "<section class=\"{class}\" id=\"{id}\" data-policy=\"{id}\"><h2>{id} <span class=\"health\">{}</span></h2>\n<dl>",
        escape(&health(s))
    );
    let last = match &s.last_backup {
        Some(b) => escape(&format!("{} ({}, {})", when(b.completed_at), b.tier, b.run)),
        None => "never".into(),
    };
    let (age, rto) = objectives(s, now);
    let drill = match &s.last_drill {
        Some(d) => escape(&format!(
            "{} {} ({} ago)",
            if d.succeeded { "passed" } else { "FAILED" },
            when(d.completed_at),
            format_duration(now - d.completed_at)
        )),
        None => "never".into(),
    };
    let window = match &s.recovery_window {
        Some(w) => escape(&format!("{} .. {}", when(w.from), when(w.to))),
        None => "-".into(),
    };
    let next = match s.next_backup {
        _ if s.suspended => "suspended".into(),
        Some(t) => escape(&when(t)),
        None => "-".into(),
    };
    for (key, term, value) in [
        ("last-backup", "Last backup", last),
        ("rpo", "Age / RPO", age),
        ("next-backup", "Next backup", next),
        ("last-drill", "Last drill", drill),
        ("rto", "Drill RTO / objective", rto),
        ("window", "Recovery window", window),
    ] {
        let _ = write!(out, "<dt>{term}</dt><dd class=\"{key}\">{value}</dd>");
    }
    out.push_str("</dl>\n");
    if !s.problems.is_empty() {
        out.push_str("<ul class=\"problems\">");
        for p in &s.problems {
            let _ = write!(
                out,
                "<li>{}: {}</li>",
                escape(p.kind.label()),
                escape(&p.message)
            );
        }
        out.push_str("</ul>\n");
    }
    history(out, &runs[..runs.len().min(HISTORY)]);
    recovery_points(out, policy, runs);
    out.push_str("</section>\n");
}

/// `3 of 4 finished runs succeeded (75%)`, over the runs shown.
pub fn success_rate(runs: &[&BackupRun]) -> String {
    let phase = |r: &&&BackupRun| r.status.as_ref().map(|s| s.phase).unwrap_or_default();
    let finished = runs.iter().filter(|r| phase(r).is_finished()).count();
    let ok = runs
        .iter()
        .filter(|r| phase(r) == RunPhase::Succeeded)
        .count();
    if finished == 0 {
        return "no finished runs".into();
    }
    format!(
        "{ok} of {finished} finished runs succeeded ({}%)",
        ok * 100 / finished
    )
}

fn history(out: &mut String, runs: &[&BackupRun]) {
    let _ = writeln!(
        out,
        "<h3>Run history: <span class=\"success-rate\">{}</span></h3>",
        escape(&success_rate(runs))
    );
    if runs.is_empty() {
        out.push_str("<p>no runs</p>\n");
        return;
    }
    out.push_str(
        "<table class=\"runs\"><tr><th>Run</th><th>Tier</th><th>Phase</th><th>Started</th>\
         <th>Duration</th><th>Size</th><th>Message</th></tr>\n",
    );
    for r in runs {
        let st = r.status.clone().unwrap_or_default();
        let phase = format!("{:?}", st.phase);
        let cells = [
            r.name_any(),
            r.spec.tier.to_string(),
            phase.clone(),
            started(r).map(when).unwrap_or_else(|| "-".into()),
            st.duration.unwrap_or_else(|| "-".into()),
            st.size.unwrap_or_else(|| "-".into()),
            st.message.unwrap_or_default(),
        ];
        let _ = write!(out, "<tr class=\"{phase}\">");
        for c in cells {
            let _ = write!(out, "<td>{}</td>", escape(&c));
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</table>\n");
}

/// One backup held in one destination.
#[derive(Clone, Debug, PartialEq)]
pub struct Point {
    pub backup_id: String,
    pub completed_at: Option<DateTime<Utc>>,
    pub tier: String,
    pub bytes: i64,
    /// Every object of it was read back and matched.
    pub verified: bool,
}

/// Per destination (the policy's, in its order, then any others the runs
/// name), the successful runs' backups there, newest first, as their
/// `status.artifacts` record them.
pub fn points_by_destination(
    policy: Option<&BackupPolicy>,
    runs: &[&BackupRun],
) -> Vec<(String, Vec<Point>)> {
    let mut order: Vec<String> = policy
        .map(|p| p.spec.destinations.iter().map(|d| d.name.clone()).collect())
        .unwrap_or_default();
    let mut by: BTreeMap<String, Vec<Point>> = BTreeMap::new();
    for r in runs {
        let Some(st) = r.status.as_ref().filter(|s| s.phase == RunPhase::Succeeded) else {
            continue;
        };
        let mut per: BTreeMap<&str, Point> = BTreeMap::new();
        for a in &st.artifacts {
            let p = per.entry(&a.destination).or_insert_with(|| Point {
                backup_id: st.backup_id.clone().unwrap_or_else(|| r.name_any()),
                completed_at: st.completed_at,
                tier: r.spec.tier.to_string(),
                bytes: 0,
                verified: true,
            });
            p.bytes += a.bytes;
            p.verified &= a.verified;
        }
        for (dest, p) in per {
            if !order.iter().any(|d| d == dest) {
                order.push(dest.to_string());
            }
            by.entry(dest.to_string()).or_default().push(p);
        }
    }
    order
        .into_iter()
        .map(|d| {
            let mut points = by.remove(&d).unwrap_or_default();
            points.sort_by(|a, b| {
                (b.completed_at, &b.backup_id).cmp(&(a.completed_at, &a.backup_id))
            });
            (d, points)
        })
        .collect()
}

fn recovery_points(out: &mut String, policy: Option<&BackupPolicy>, runs: &[&BackupRun]) {
    out.push_str("<h3>Recovery points</h3>\n");
    for (dest, points) in points_by_destination(policy, runs) {
        let dest = escape(&dest);
        let _ = writeln!(
            out,
            "<table class=\"points\" data-destination=\"{dest}\"><tr><th colspan=\"5\">{dest}: {} recovery point{}</th></tr>",
            points.len(),
            if points.len() == 1 { "" } else { "s" }
        );
        for p in points.iter().take(POINTS) {
            let _ = writeln!(
                out,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(&p.backup_id),
                p.completed_at.map(when).unwrap_or_else(|| "-".into()),
                escape(&p.tier),
                format_bytes(p.bytes.max(0) as u64),
                if p.verified {
                    "verified"
                } else {
                    "not read back"
                }
            );
        }
        out.push_str("</table>\n");
    }
}
