use super::*;
use serde_json::json;

const NOW: &str = "2026-11-25T12:00:00Z";

fn at(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

fn policy(name: &str, completed: &str, drill_message: &str) -> BackupPolicy {
    serde_json::from_value(json!({
        "apiVersion": "lifeboat.dev/v1alpha1",
        "kind": "BackupPolicy",
        "metadata": {"name": name, "namespace": "shop", "generation": 1,
                     "creationTimestamp": "2026-11-01T00:00:00Z"},
        "spec": {
            "source": {"postgres": {"connectionSecretRef": {"name": "db"}, "databases": ["orders"]}},
            "schedule": {"daily": "0 2 * * *"},
            "destinations": [{"name": "primary", "s3": {"region": "us-east-1", "bucket": "backups"}},
                             {"name": "dr", "s3": {"region": "eu-west-1", "bucket": "backups-dr"}}],
            "encryption": {"keySecretRef": {"name": "keys"}},
            "objectives": {"rpo": "1h", "rto": "4h"}
        },
        "status": {
            "observedGeneration": 1,
            "conditions": [{"type": "Ready", "status": "True", "reason": "Reconciled", "message": "ok",
                            "lastTransitionTime": "2026-11-01T00:00:00Z"}],
            "lastBackup": {"run": format!("{name}-1"), "tier": "daily", "completedAt": completed},
            "recoveryWindow": {"from": "2026-11-18T02:00:00Z", "to": completed},
            "lastDrill": {"run": "drill-1", "completedAt": "2026-11-25T06:00:00Z", "succeeded": false,
                          "recoveryTimeSeconds": 18000, "message": drill_message}
        }
    }))
    .unwrap()
}

fn run(name: &str, policy: &str, phase: &str, started: &str, message: &str) -> BackupRun {
    let artifacts = if phase == "Succeeded" {
        json!([{"destination": "primary", "key": format!("{name}/a"), "bytes": 1024, "sha256": "0".repeat(64), "verified": true},
               {"destination": "primary", "key": format!("{name}/m"), "bytes": 1024, "sha256": "0".repeat(64), "verified": true},
               {"destination": "dr", "key": format!("{name}/a"), "bytes": 2048, "sha256": "0".repeat(64)}])
    } else {
        json!([])
    };
    serde_json::from_value(json!({
        "apiVersion": "lifeboat.dev/v1alpha1",
        "kind": "BackupRun",
        "metadata": {"name": name, "namespace": "shop"},
        "spec": {"policyRef": {"name": policy}, "tier": "daily"},
        "status": {"phase": phase, "startedAt": started, "completedAt": started,
                   "backupId": format!("id-{name}"), "duration": "3m0s", "size": "2.0 KiB",
                   "message": message, "artifacts": artifacts}
    }))
    .unwrap()
}

#[test]
fn the_page_shows_health_ages_breaches_history_and_points_as_text() {
    let p = policy(
        "orders",
        "2026-11-25T09:00:00Z",
        "<script>alert(1)</script>",
    );
    let runs = vec![
        run(
            "orders-1",
            "orders",
            "Succeeded",
            "2026-11-23T02:00:00Z",
            "",
        ),
        run(
            "orders-2",
            "orders",
            "Failed",
            "2026-11-24T02:00:00Z",
            "<b>disk</b> full & more",
        ),
        run(
            "orders-3",
            "orders",
            "Succeeded",
            "2026-11-25T02:00:00Z",
            "",
        ),
        run(
            "other-1",
            "other",
            "Failed",
            "2026-11-25T02:00:00Z",
            "not mine",
        ),
    ];
    let html = render(&[p], &runs, at(NOW));
    assert!(
        html.contains("<meta http-equiv=\"refresh\" content=\"30\">"),
        "{html}"
    );
    assert!(html.contains("data-policy=\"shop/orders\""), "{html}");
    // 3h against an RPO of 1h; a drill of 5h against 4h.
    assert!(
        html.contains("<span class=\"breached\">3h0m/1h BREACHED</span>"),
        "{html}"
    );
    assert!(
        html.contains("<span class=\"breached\">5h0m/4h BREACHED</span>"),
        "{html}"
    );
    assert!(
        html.contains("RPO BREACHED, DRILL FAILED, RTO BREACHED"),
        "{html}"
    );
    assert!(
        html.contains("2 of 3 finished runs succeeded (66%)"),
        "{html}"
    );
    assert!(!html.contains("not mine"), "{html}");
    // Newest run first.
    let (a, b) = (
        html.find("orders-3").unwrap(),
        html.find("orders-2").unwrap(),
    );
    assert!(a < b, "{html}");
    // Hostile text is text.
    assert!(
        !html.contains("<script>") && !html.contains("<b>"),
        "{html}"
    );
    assert!(
        html.contains("&lt;b&gt;disk&lt;/b&gt; full &amp; more"),
        "{html}"
    );
    assert!(
        html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{html}"
    );
    // Recovery points per destination, newest first.
    let primary = html.split("data-destination=\"primary\"").nth(1).unwrap();
    let primary = &primary[..primary.find("</table>").unwrap()];
    assert!(primary.contains("2 recovery points"), "{primary}");
    assert!(
        primary.contains("2.0 KiB") && primary.contains("verified"),
        "{primary}"
    );
    assert!(
        primary.find("id-orders-3").unwrap() < primary.find("id-orders-1").unwrap(),
        "{primary}"
    );
    let dr = html.split("data-destination=\"dr\"").nth(1).unwrap();
    assert!(
        dr[..dr.find("</table>").unwrap()].contains("not read back"),
        "{dr}"
    );
}

#[test]
fn a_healthy_policy_has_no_breach_and_an_empty_cluster_says_so() {
    let mut p = policy("orders", "2026-11-25T11:30:00Z", "");
    let status = p.status.as_mut().unwrap();
    status.last_drill.as_mut().unwrap().succeeded = true;
    status.last_drill.as_mut().unwrap().recovery_time_seconds = Some(252);
    let html = render(&[p], &[], at(NOW));
    assert!(html.contains("<span class=\"health\">OK</span>"), "{html}");
    assert!(
        html.contains("30m0s/1h") && html.contains("4m12s/4h"),
        "{html}"
    );
    assert!(
        !html.contains("BREACHED") && !html.contains("card bad"),
        "{html}"
    );
    assert!(html.contains("no finished runs"), "{html}");
    assert!(html.contains("primary: 0 recovery points"), "{html}");
    assert!(render(&[], &[], at(NOW)).contains("no BackupPolicies found"));
}

#[test]
fn escape_leaves_no_markup() {
    assert_eq!(
        escape(r#"<a href="x" onclick='y'>&</a>"#),
        "&lt;a href=&quot;x&quot; onclick=&#39;y&#39;&gt;&amp;&lt;/a&gt;"
    );
}
