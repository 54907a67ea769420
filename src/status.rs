//! The on-call view behind `lifeboat status`: per BackupPolicy, the last
//! backup and its age against the RPO objective, the next backup, the last
//! restore drill and its measured RTO against the RTO objective, the recovery
//! window and what is wrong. Pure: it takes the policies and the clock;
//! `commands::status` reads the cluster.
//!
//! Ages and breaches are computed here from `now`, not copied from the
//! controller's conditions: on the bad day the controller may be the thing
//! that is down, and a status written hours ago would read as fresh.

use chrono::{DateTime, Utc};
use kube::ResourceExt;
use serde::Serialize;

use crate::api::conditions::{find, from_time, reasons, types};
use crate::api::policy::RecoveryWindow;
use crate::api::run::format_duration;
use crate::api::{BackupPolicy, Tier};

/// One policy's line of the on-call table (and its `-o json` object).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyStatus {
    pub namespace: String,
    pub name: String,
    pub suspended: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_backup: Option<BackupView>,
    /// The RPO objective as written in the spec (`1h`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rpo: Option<String>,
    pub rpo_breached: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_backup: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_drill: Option<DrillView>,
    /// The RTO objective as written in the spec (`4h`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rto: Option<String>,
    pub rto_breached: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recovery_window: Option<RecoveryWindow>,
    /// True when `problems` is empty.
    pub healthy: bool,
    pub problems: Vec<Problem>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BackupView {
    pub completed_at: DateTime<Utc>,
    pub age_seconds: i64,
    pub tier: Tier,
    pub run: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backup_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes: Option<i64>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DrillView {
    pub completed_at: DateTime<Utc>,
    pub succeeded: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recovery_time_seconds: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restore_request: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Something the person on call has to look at.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Problem {
    pub kind: ProblemKind,
    pub message: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum ProblemKind {
    /// The controller has not written a status (not running, or behind).
    NoStatus,
    /// The status describes an older generation of the spec.
    StatusStale,
    /// The spec is invalid or refers to something missing.
    NotReady,
    NoBackupYet,
    BackupFailed,
    RpoBreached,
    DrillFailed,
    RtoBreached,
}

impl ProblemKind {
    /// The short words of the HEALTH column.
    pub fn label(self) -> &'static str {
        match self {
            ProblemKind::NoStatus => "NO STATUS",
            ProblemKind::StatusStale => "STALE",
            ProblemKind::NotReady => "NOT READY",
            ProblemKind::NoBackupYet => "NO BACKUP",
            ProblemKind::BackupFailed => "BACKUP FAILED",
            ProblemKind::RpoBreached => "RPO BREACHED",
            ProblemKind::DrillFailed => "DRILL FAILED",
            ProblemKind::RtoBreached => "RTO BREACHED",
        }
    }
}

fn problem(kind: ProblemKind, message: impl Into<String>) -> Problem {
    Problem {
        kind,
        message: message.into(),
    }
}

/// The on-call view of each policy, sorted by namespace and name.
pub fn summarize(policies: &[BackupPolicy], now: DateTime<Utc>) -> Vec<PolicyStatus> {
    let mut out: Vec<PolicyStatus> = policies.iter().map(|p| one(p, now)).collect();
    out.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    out
}

fn one(policy: &BackupPolicy, now: DateTime<Utc>) -> PolicyStatus {
    let spec = &policy.spec;
    let status = policy.status.clone().unwrap_or_default();
    let objectives = spec.objectives.clone().unwrap_or_default();
    let mut problems = Vec::new();

    if policy.status.is_none() {
        problems.push(problem(
            ProblemKind::NoStatus,
            "the controller has written no status: is `lifeboat controller` running?",
        ));
    } else if let (Some(seen), Some(current)) =
        (status.observed_generation, policy.metadata.generation)
    {
        if seen < current {
            problems.push(problem(
                ProblemKind::StatusStale,
                format!("status is for generation {seen} of the spec, which is at {current}: the controller is behind or down"),
            ));
        }
    }
    if let Some(ready) = find(&status.conditions, types::READY) {
        if ready.status == "False" {
            problems.push(problem(
                ProblemKind::NotReady,
                format!("{}: {}", ready.reason, ready.message),
            ));
        }
    }
    match find(&status.conditions, types::HEALTHY) {
        Some(h) if h.status == "False" && h.reason == reasons::BACKUP_FAILED => {
            problems.push(problem(ProblemKind::BackupFailed, h.message.clone()))
        }
        _ if status.last_backup.is_none() && policy.status.is_some() => problems.push(problem(
            ProblemKind::NoBackupYet,
            "no backup has succeeded yet",
        )),
        _ => {}
    }

    let last_backup = status.last_backup.as_ref().map(|b| BackupView {
        completed_at: b.completed_at,
        age_seconds: (now - b.completed_at).num_seconds(),
        tier: b.tier,
        run: b.run.clone(),
        backup_id: b.backup_id.clone(),
        bytes: b.bytes,
    });

    // As the controller does: the RPO clock starts at the newest success, or
    // at the policy's creation when there is none (one RPO of grace).
    let rpo_breached = match spec.rpo() {
        None => false,
        Some(rpo) => {
            let since = last_backup
                .as_ref()
                .map(|b| b.completed_at)
                .or_else(|| policy.metadata.creation_timestamp.as_ref().map(from_time));
            let breached = since.is_some_and(|since| now - since > rpo);
            if breached {
                let text = objectives.rpo.clone().unwrap_or_default();
                problems.push(problem(
                    ProblemKind::RpoBreached,
                    match &last_backup {
                        Some(b) => format!(
                            "the newest backup is {} old; the RPO objective is {text}",
                            format_duration(now - b.completed_at)
                        ),
                        None => format!("no backup within the RPO objective of {text} since the policy was created"),
                    },
                ));
            }
            breached
        }
    };

    let last_drill = status.last_drill.as_ref().map(|d| DrillView {
        completed_at: d.completed_at,
        succeeded: d.succeeded,
        recovery_time_seconds: d.recovery_time_seconds,
        restore_request: d.restore_request.clone(),
        message: d.message.clone(),
    });
    if let Some(d) = last_drill.as_ref().filter(|d| !d.succeeded) {
        let request = status
            .last_drill
            .as_ref()
            .map(|l| l.run.clone())
            .unwrap_or_default();
        problems.push(problem(
            ProblemKind::DrillFailed,
            format!(
                "drill {request} failed: {}",
                d.message.as_deref().unwrap_or("no message")
            ),
        ));
    }
    let rto_breached = match (
        spec.rto(),
        last_drill.as_ref().and_then(|d| d.recovery_time_seconds),
    ) {
        (Some(rto), Some(secs)) if secs > rto.num_seconds() => {
            problems.push(problem(
                ProblemKind::RtoBreached,
                format!(
                    "the last drill took {} to a verified database; the RTO objective is {}",
                    format_duration(chrono::Duration::seconds(secs)),
                    objectives.rto.clone().unwrap_or_default()
                ),
            ));
            true
        }
        _ => false,
    };

    PolicyStatus {
        namespace: policy.namespace().unwrap_or_default(),
        name: policy.name_any(),
        suspended: spec.suspend,
        last_backup,
        rpo: objectives.rpo,
        rpo_breached,
        next_backup: if spec.suspend {
            None
        } else {
            status.next_backup
        },
        last_drill,
        rto: objectives.rto,
        rto_breached,
        recovery_window: status.recovery_window,
        healthy: problems.is_empty(),
        problems,
    }
}

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

fn when(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%MZ").to_string()
}

/// `3h12m/1h BREACHED`, `12m0s/1h`, `-/1h`, `5m0s`.
fn against(measured: Option<String>, objective: Option<&str>, breached: bool) -> String {
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

fn cells(s: &PolicyStatus, now: DateTime<Utc>) -> [String; 8] {
    let last = match &s.last_backup {
        Some(b) => format!("{} {}", when(b.completed_at), b.tier),
        None => "never".into(),
    };
    let age = against(
        s.last_backup
            .as_ref()
            .map(|b| format_duration(now - b.completed_at)),
        s.rpo.as_deref(),
        s.rpo_breached,
    );
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
    let rto = against(
        s.last_drill
            .as_ref()
            .and_then(|d| d.recovery_time_seconds)
            .map(|secs| format_duration(chrono::Duration::seconds(secs))),
        s.rto.as_deref(),
        s.rto_breached,
    );
    let window = match &s.recovery_window {
        Some(w) => format!("{} .. {}", when(w.from), when(w.to)),
        None => "-".into(),
    };
    let health = if s.problems.is_empty() {
        if s.suspended { "OK (suspended)" } else { "OK" }.to_string()
    } else {
        let mut labels: Vec<&str> = s.problems.iter().map(|p| p.kind.label()).collect();
        labels.dedup();
        labels.join(", ")
    };
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    const NOW: &str = "2026-11-25T12:00:00Z";

    fn policy(
        name: &str,
        objectives: serde_json::Value,
        status: serde_json::Value,
    ) -> BackupPolicy {
        let mut v = json!({
            "apiVersion": "lifeboat.dev/v1alpha1",
            "kind": "BackupPolicy",
            "metadata": {"name": name, "namespace": "shop", "generation": 2,
                         "creationTimestamp": "2026-11-01T00:00:00Z"},
            "spec": {
                "source": {"postgres": {"connectionSecretRef": {"name": "db"}, "databases": ["orders"]}},
                "schedule": {"daily": "0 2 * * *"},
                "destinations": [{"name": "primary", "s3": {"region": "us-east-1", "bucket": "backups"}}],
                "encryption": {"keySecretRef": {"name": "keys"}},
                "objectives": objectives
            }
        });
        if !status.is_null() {
            v["status"] = status;
        }
        serde_json::from_value(v).unwrap()
    }

    fn cond(type_: &str, status: &str, reason: &str, message: &str) -> serde_json::Value {
        json!({"type": type_, "status": status, "reason": reason, "message": message,
               "lastTransitionTime": "2026-11-25T02:00:00Z"})
    }

    fn good_status(completed: &str) -> serde_json::Value {
        json!({
            "observedGeneration": 2,
            "conditions": [cond("Ready", "True", "Reconciled", "the spec is valid"),
                           cond("Healthy", "True", "BackupSucceeded", "run orders-1 succeeded")],
            "lastBackup": {"run": "orders-1", "tier": "daily", "completedAt": completed,
                           "backupId": "20261125T020000.000Z-abcdef", "bytes": 1024},
            "nextBackup": "2026-11-26T02:00:00Z",
            "recoveryWindow": {"from": "2026-11-18T02:00:00Z", "to": completed},
            "lastDrill": {"run": "orders-drill-1", "completedAt": "2026-11-25T06:04:00Z", "succeeded": true,
                          "recoveryTimeSeconds": 252, "restoreRequest": "orders-drill-1"}
        })
    }

    #[test]
    fn a_fresh_backup_within_both_objectives_is_ok() {
        let p = policy(
            "orders",
            json!({"rpo": "25h", "rto": "4h"}),
            good_status("2026-11-25T02:00:00Z"),
        );
        let s = summarize(&[p], at(NOW));
        assert_eq!(s[0].problems, vec![]);
        assert!(s[0].healthy && !s[0].rpo_breached && !s[0].rto_breached);
        assert_eq!(s[0].last_backup.as_ref().unwrap().age_seconds, 10 * 3600);
        let t = table(&s, at(NOW));
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 2, "{t}");
        assert!(lines[0].starts_with("POLICY"), "{t}");
        for cell in [
            "shop/orders",
            "2026-11-25 02:00Z daily",
            "10h0m/25h",
            "in 14h0m",
            "passed 5h56m ago",
            "4m12s/4h",
            "2026-11-18 02:00Z .. 2026-11-25 02:00Z",
        ] {
            assert!(lines[1].contains(cell), "{cell:?} missing: {t}");
        }
        assert!(lines[1].ends_with("OK"), "{t}");
        assert!(!t.contains("BREACHED"), "{t}");
    }

    #[test]
    fn an_old_backup_breaches_the_rpo_even_when_the_status_says_otherwise() {
        // The controller last wrote "within objective"; the clock says no.
        let p = policy(
            "orders",
            json!({"rpo": "1h"}),
            good_status("2026-11-25T02:00:00Z"),
        );
        let s = summarize(&[p], at(NOW));
        assert!(s[0].rpo_breached && !s[0].healthy);
        assert_eq!(s[0].problems[0].kind, ProblemKind::RpoBreached);
        assert!(
            s[0].problems[0].message.contains("10h0m old")
                && s[0].problems[0].message.contains("1h"),
            "{:?}",
            s[0].problems
        );
        let t = table(&s, at(NOW));
        assert!(t.contains("10h0m/1h BREACHED"), "{t}");
        assert!(
            t.contains("Problems:\n  shop/orders: RPO BREACHED: the newest backup is 10h0m old"),
            "{t}"
        );
    }

    #[test]
    fn exactly_at_the_rpo_is_not_a_breach() {
        let p = policy(
            "orders",
            json!({"rpo": "10h"}),
            good_status("2026-11-25T02:00:00Z"),
        );
        assert!(!summarize(&[p], at(NOW))[0].rpo_breached);
    }

    #[test]
    fn no_backup_since_creation_longer_than_the_rpo_is_a_breach() {
        let status = json!({"observedGeneration": 2,
            "conditions": [cond("Healthy", "False", "NoBackupYet", "no backup has finished yet")]});
        let p = policy("orders", json!({"rpo": "1h"}), status);
        let s = summarize(&[p], at(NOW));
        let kinds: Vec<ProblemKind> = s[0].problems.iter().map(|p| p.kind).collect();
        assert_eq!(kinds, [ProblemKind::NoBackupYet, ProblemKind::RpoBreached]);
        let t = table(&s, at(NOW));
        assert!(t.contains("never") && t.contains("-/1h BREACHED"), "{t}");
    }

    #[test]
    fn failed_backup_drill_and_slow_drill_are_named() {
        let mut status = good_status("2026-11-25T02:00:00Z");
        status["conditions"][1] = cond(
            "Healthy",
            "False",
            "BackupFailed",
            "run orders-2 failed: primary: access denied",
        );
        status["lastDrill"] = json!({"run": "orders-drill-2", "completedAt": "2026-11-25T11:00:00Z",
            "succeeded": false, "recoveryTimeSeconds": 18000,
            "message": "verify: object backups/x/orders.lbk: authentication failed"});
        let p = policy("orders", json!({"rpo": "25h", "rto": "4h"}), status);
        let s = summarize(&[p], at(NOW));
        let kinds: Vec<ProblemKind> = s[0].problems.iter().map(|p| p.kind).collect();
        assert_eq!(
            kinds,
            [
                ProblemKind::BackupFailed,
                ProblemKind::DrillFailed,
                ProblemKind::RtoBreached
            ]
        );
        let t = table(&s, at(NOW));
        assert!(t.contains("FAILED 1h0m ago"), "{t}");
        assert!(t.contains("5h0m/4h BREACHED"), "{t}");
        assert!(
            t.contains("BACKUP FAILED, DRILL FAILED, RTO BREACHED"),
            "{t}"
        );
        assert!(
            t.contains("access denied") && t.contains("orders.lbk"),
            "{t}"
        );
    }

    #[test]
    fn missing_or_stale_status_says_the_controller_is_behind() {
        let none = policy("a", json!({}), serde_json::Value::Null);
        let mut old = good_status("2026-11-25T11:30:00Z");
        old["observedGeneration"] = json!(1);
        let stale = policy("b", json!({}), old);
        let s = summarize(&[stale, none], at(NOW));
        assert_eq!(s[0].name, "a", "sorted by name");
        assert_eq!(s[0].problems[0].kind, ProblemKind::NoStatus);
        assert_eq!(s[1].problems[0].kind, ProblemKind::StatusStale);
        assert!(s[1].problems[0].message.contains("generation 1"));
    }

    #[test]
    fn not_ready_and_suspended_show_in_health_and_next() {
        let mut status = good_status("2026-11-25T11:30:00Z");
        status["conditions"][0] = cond(
            "Ready",
            "False",
            "InvalidSpec",
            "spec.schedule.daily: bad cron",
        );
        let mut p = policy("orders", json!({}), status);
        p.spec.suspend = true;
        let s = summarize(&[p], at(NOW));
        assert_eq!(s[0].next_backup, None);
        let t = table(&s, at(NOW));
        assert!(t.contains("suspended") && t.contains("NOT READY"), "{t}");
        assert!(
            t.contains("InvalidSpec: spec.schedule.daily: bad cron"),
            "{t}"
        );
    }

    #[test]
    fn an_overdue_slot_says_so() {
        let mut status = good_status("2026-11-25T11:30:00Z");
        status["nextBackup"] = json!("2026-11-25T11:45:00Z");
        let s = summarize(&[policy("orders", json!({}), status)], at(NOW));
        assert!(table(&s, at(NOW)).contains("overdue 15m0s"));
    }

    #[test]
    fn json_is_camel_case_with_the_measurements() {
        let p = policy(
            "orders",
            json!({"rpo": "1h", "rto": "4h"}),
            good_status("2026-11-25T02:00:00Z"),
        );
        let v = serde_json::to_value(summarize(&[p], at(NOW))).unwrap();
        assert_eq!(v[0]["lastBackup"]["ageSeconds"], 36000);
        assert_eq!(v[0]["rpoBreached"], true);
        assert_eq!(v[0]["lastDrill"]["recoveryTimeSeconds"], 252);
        assert_eq!(v[0]["rto"], "4h");
        assert_eq!(v[0]["problems"][0]["kind"], "RpoBreached");
        assert_eq!(v[0]["recoveryWindow"]["from"], "2026-11-18T02:00:00Z");
    }

    #[test]
    fn no_policies_says_so() {
        assert_eq!(table(&[], at(NOW)), "no BackupPolicies found\n");
    }
}
