//! The chart's alerting rules, evaluated — promtool's `test rules`, which is
//! not available here, done with tests/support/promql.rs over the rules
//! `helm template` renders: every alert fires from synthetic series of an
//! unhealthy state and stays quiet for a healthy one; every alert links to
//! its section of docs/RUNBOOK.md; and every metric an alert uses is one the
//! real controller exports, read from its /metrics.

#[path = "support/apiserver.rs"]
mod apiserver;
#[path = "support/promql.rs"]
mod promql;
mod support;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use promql::{firing, metric_names, Db, Labels};
use serde_json::{json, Value};
use support::k8s::{helm, root};

const RELEASE_NS: &str = "lifeboat-system";
/// The `job` of the controller's scrape target: the metrics Service's name.
const JOB: &str = "lifeboat-controller-metrics";
/// The instant the alerts are evaluated at.
const NOW: f64 = 1_795_000_000.0;
const SCRAPE: f64 = 30.0;
const HOUR: f64 = 3600.0;

struct Rule {
    alert: String,
    expr: String,
    r#for: String,
    runbook_url: String,
}

/// The rendered PrometheusRule's rules, or None when helm is missing.
fn rules() -> Option<Vec<Rule>> {
    let helm = helm()?;
    let out = Command::new(helm)
        .current_dir(root())
        .args(["template", "lifeboat", "charts/lifeboat", "--namespace"])
        .args([RELEASE_NS, "--set", "prometheusRule.enabled=true"])
        .args(["--show-only", "templates/prometheusrule.yaml"])
        .output()
        .expect("helm runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: Value = serde_yaml::from_slice(&out.stdout).expect("one YAML document");
    let mut rules = Vec::new();
    for group in doc["spec"]["groups"].as_array().unwrap() {
        for r in group["rules"].as_array().unwrap() {
            let text = |k: &str| r[k].as_str().unwrap_or_default().to_string();
            rules.push(Rule {
                alert: text("alert"),
                expr: text("expr"),
                r#for: text("for"),
                runbook_url: r["annotations"]["runbook_url"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            });
        }
    }
    assert!(rules.len() >= 10, "{} rules", rules.len());
    Some(rules)
}

fn policy(more: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
    let mut l = vec![("namespace", "shop"), ("policy", "orders")];
    l.extend_from_slice(more);
    l
}

/// One series scraped every 30 s over `[NOW - hours, NOW]`.
fn series(
    db: &mut Db,
    name: &str,
    labels: &[(&str, &str)],
    hours: f64,
    value: impl Fn(f64) -> f64,
) {
    db.scrape(name, labels, (NOW - hours * HOUR, NOW), SCRAPE, value);
}

fn constant(name: &str, labels: &[(&str, &str)], v: f64) -> Db {
    let mut db = Db::default();
    series(&mut db, name, labels, 2.0, |_| v);
    db
}

/// A counter exported at 0 from `hours` ago that reaches 1 `failed_ago`
/// seconds before NOW (never, for None).
fn counter(name: &str, labels: &[(&str, &str)], hours: f64, failed_ago: Option<f64>) -> Db {
    let mut db = Db::default();
    series(&mut db, name, labels, hours, |t| match failed_ago {
        Some(ago) if t >= NOW - ago => 1.0,
        _ => 0.0,
    });
    db
}

/// The controller's two replicas, each exporting `name` with its value.
fn replicas(name: &str, up: [f64; 2]) -> Db {
    let mut db = Db::default();
    for (i, v) in up.into_iter().enumerate() {
        let instance = format!("10.0.0.{i}:8080");
        let labels = [
            ("job", JOB),
            ("namespace", RELEASE_NS),
            ("instance", instance.as_str()),
        ];
        series(&mut db, name, &labels, 2.0, |_| v);
    }
    db
}

/// What the alert should do for each state: (state, series, fires).
fn scenarios(rule: &Rule) -> Vec<(String, Db, bool)> {
    let s = |what: &str, db: Db, fires: bool| (what.to_string(), db, fires);
    match rule.alert.as_str() {
        "LifeboatBackupTooOld" => {
            let tier = ["daily", "weekly", "monthly"]
                .into_iter()
                .find(|t| rule.expr.contains(&format!("tier=\"{t}\"")))
                .expect("a tier");
            let limit: f64 = rule
                .expr
                .rsplit('>')
                .next()
                .unwrap()
                .trim()
                .parse()
                .unwrap();
            let labels = policy(&[("tier", tier)]);
            let name = "lifeboat_last_success_timestamp_seconds";
            let other = policy(&[("tier", if tier == "daily" { "weekly" } else { "daily" })]);
            vec![
                s("stale", constant(name, &labels, NOW - limit - HOUR), true),
                s("recent", constant(name, &labels, NOW - limit / 2.0), false),
                s(
                    "another tier stale",
                    constant(name, &other, NOW - 40.0 * 24.0 * HOUR),
                    false,
                ),
            ]
        }
        "LifeboatObjectiveBreached" => {
            let name = "lifeboat_objective_breached";
            let mut recent = Db::default();
            series(&mut recent, name, &policy(&[]), 2.0, |t| {
                f64::from(t >= NOW - 120.0)
            });
            vec![
                // A policy that never succeeded has no last-success series,
                // only this one.
                s(
                    "breached, never succeeded",
                    constant(name, &policy(&[]), 1.0),
                    true,
                ),
                s(
                    "within its objective",
                    constant(name, &policy(&[]), 0.0),
                    false,
                ),
                s("breached for 2 minutes only", recent, false),
            ]
        }
        "LifeboatBackupFailed" => {
            let name = "lifeboat_backup_failures_total";
            let labels = policy(&[("tier", "daily")]);
            let mut born_at_one = Db::default();
            series(&mut born_at_one, name, &labels, 0.2, |_| 1.0);
            vec![
                s(
                    "a failure 10 minutes ago",
                    counter(name, &labels, 2.0, Some(600.0)),
                    true,
                ),
                s("no failure", counter(name, &labels, 2.0, None), false),
                s(
                    "a failure 3 hours ago",
                    counter(name, &labels, 4.0, Some(3.0 * HOUR)),
                    false,
                ),
                // Why the controller exports every counter at 0: one that
                // first appears at 1 is invisible to increase().
                s("a counter born at 1", born_at_one, false),
            ]
        }
        "LifeboatRestoreDrillFailed" => {
            let name = "lifeboat_drill_failures_total";
            let labels = policy(&[]);
            vec![
                s(
                    "a drill failed an hour ago",
                    counter(name, &labels, 26.0, Some(HOUR)),
                    true,
                ),
                s("no drill failed", counter(name, &labels, 26.0, None), false),
            ]
        }
        "LifeboatWALArchiveLagging" => {
            let name = "lifeboat_wal_archive_lag_seconds";
            vec![
                s(
                    "10 minutes behind",
                    constant(name, &policy(&[]), 600.0),
                    true,
                ),
                s("caught up", constant(name, &policy(&[]), 2.0), false),
            ]
        }
        "LifeboatWALArchiverDown" => {
            let name = "lifeboat_wal_archiver_up";
            // The lag gauge stands still at its last good value meanwhile.
            let mut down = constant(name, &policy(&[]), 0.0);
            series(
                &mut down,
                "lifeboat_wal_archive_lag_seconds",
                &policy(&[]),
                2.0,
                |_| 0.0,
            );
            vec![
                s("down, lag frozen at 0", down, true),
                s("answering", constant(name, &policy(&[]), 1.0), false),
            ]
        }
        "LifeboatControllerDown" => vec![
            s("both replicas down", replicas("up", [0.0, 0.0]), true),
            s("never scraped", Db::default(), true),
            s("one replica up", replicas("up", [0.0, 1.0]), false),
        ],
        "LifeboatNoLeader" => vec![
            s(
                "two standbys",
                replicas("lifeboat_leader", [0.0, 0.0]),
                true,
            ),
            s("no replica exports it", Db::default(), true),
            s("one leads", replicas("lifeboat_leader", [0.0, 1.0]), false),
        ],
        other => panic!("{other} has no scenarios here: add them with the alert"),
    }
}

#[test]
fn every_alert_fires_when_unhealthy_and_not_when_healthy() {
    let Some(rules) = rules() else { return };
    for rule in &rules {
        for (state, db, fires) in scenarios(rule) {
            let alerts = firing(&rule.expr, &rule.r#for, &db, NOW);
            assert_eq!(
                !alerts.is_empty(),
                fires,
                "{} ({state}): expected it {} but got {alerts:?}\n{}",
                rule.alert,
                if fires { "to fire" } else { "not to fire" },
                rule.expr
            );
            // Alerts about a policy name it, as the description does.
            let about_policy = rule.expr.contains("by (namespace, policy");
            for labels in &alerts {
                let want: Labels = policy(&[])
                    .into_iter()
                    .map(|(k, v)| (k.into(), v.into()))
                    .collect();
                if about_policy {
                    assert!(
                        want.iter().all(|(k, v)| labels.get(k) == Some(v)),
                        "{}: {labels:?}",
                        rule.alert
                    );
                }
            }
        }
    }
}

/// GitHub's anchor of a Markdown heading.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

#[test]
fn every_alert_links_to_a_runbook_section_that_says_what_to_do() {
    let Some(rules) = rules() else { return };
    let runbook = std::fs::read_to_string(root().join("docs/RUNBOOK.md")).unwrap();
    let sections: Vec<(String, String)> = runbook
        .split("\n#")
        .skip(1)
        .map(|s| {
            let (heading, body) = s.split_once('\n').unwrap_or((s, ""));
            (anchor(heading.trim_start_matches('#')), body.to_string())
        })
        .collect();
    for rule in &rules {
        let (page, fragment) = rule
            .runbook_url
            .split_once('#')
            .unwrap_or_else(|| panic!("{}: runbook_url {:?}", rule.alert, rule.runbook_url));
        assert!(page.ends_with("docs/RUNBOOK.md"), "{}: {page}", rule.alert);
        let (_, body) = sections
            .iter()
            .find(|(a, _)| a == fragment)
            .unwrap_or_else(|| panic!("{}: no section #{fragment} in docs/RUNBOOK.md", rule.alert));
        assert!(
            body.contains("**Means:**") && body.contains("**Do:**"),
            "{}: the section says what it means and what to do",
            rule.alert
        );
    }
    assert_eq!(
        anchor(" LifeboatWALArchiverDown"),
        "lifeboatwalarchiverdown"
    );
    assert_eq!(anchor("A region is down"), "a-region-is-down");
}

/// GET /metrics of the controller at `port`, once it answers.
fn scrape(port: u16) -> Option<String> {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    Some(text.split_once("\r\n\r\n")?.1.to_string())
}

/// A policy with everything that has series: three tiers, both objectives,
/// drills, WAL archiving — and the status an earlier controller left, as a
/// restarted controller finds it.
fn everything_policy() -> Value {
    json!({
        "apiVersion": "lifeboat.dev/v1alpha1",
        "kind": "BackupPolicy",
        "metadata": {"name": "orders", "namespace": "shop", "creationTimestamp": "2026-11-01T00:00:00Z"},
        "spec": {
            "source": {"postgres": {"connectionSecretRef": {"name": "orders-db"}, "databases": [], "method": "physical"}},
            "schedule": {"daily": "0 2 * * *", "weekly": "0 3 * * 0", "monthly": "0 4 1 * *"},
            "pointInTimeRecovery": {"enabled": true, "maxWalDelay": "60s"},
            "destinations": [{"name": "primary", "s3": {"region": "us-east-1", "bucket": "backups"}}],
            "encryption": {"keySecretRef": {"name": "keys"}},
            "verification": {"restoreDrill": {"schedule": "0 6 * * 0", "checks": ["select 1"]}},
            "objectives": {"rpo": "1h", "rto": "4h"}
        },
        "status": {
            "lastBackups": {"daily": "2026-11-29T02:05:00Z", "weekly": "2026-11-29T03:05:00Z",
                            "monthly": "2026-11-01T04:05:00Z"},
            "walArchive": {"healthy": true, "lagSeconds": 3, "lastArchivedAt": "2026-11-29T09:00:00Z"}
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_an_alert_uses_is_one_the_controller_exports() {
    let Some(rules) = rules() else { return };
    let server = apiserver::ApiServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    server.kubeconfig(&kubeconfig);
    let api: kube::Api<kube::api::DynamicObject> = kube::Api::namespaced_with(
        server.client(),
        "shop",
        &kube::api::ApiResource::from_gvk(&kube::api::GroupVersionKind::gvk(
            "lifeboat.dev",
            "v1alpha1",
            "BackupPolicy",
        )),
    );
    let obj = serde_json::from_value(everything_policy()).unwrap();
    api.create(&Default::default(), &obj).await.unwrap();

    let port = support::cluster::free_port();
    let mut child = Command::new(support::bin())
        .args(["controller", "--image", "lifeboat:test", "--metrics-addr"])
        .arg(format!("127.0.0.1:{port}"))
        .args(["--namespace", "shop", "--leader-election-namespace", "shop"])
        .args(["--identity", "alerts-0"])
        .env("KUBECONFIG", &kubeconfig)
        .env("LIFEBOAT_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    // Every policy series (the archiver's health comes last: it has no pod).
    let wanted = [
        r#"lifeboat_wal_archiver_up{namespace="shop",policy="orders"} 0"#,
        r#"lifeboat_last_success_timestamp_seconds{namespace="shop",policy="orders",tier="monthly"}"#,
        r#"lifeboat_leader 1"#,
    ];
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let text = loop {
        let text = tokio::task::block_in_place(|| scrape(port)).unwrap_or_default();
        if wanted.iter().all(|w| text.contains(w)) {
            break text;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("the controller's /metrics never showed {wanted:?}:\n{text}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let _ = child.kill();
    let _ = child.wait();

    let exported: BTreeSet<&str> = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .collect();
    // A restarted controller exports every tier's last success (from the
    // policy's status), not only the newest backup's tier.
    for tier in ["daily", "weekly", "monthly"] {
        let series = format!(
            r#"lifeboat_last_success_timestamp_seconds{{namespace="shop",policy="orders",tier="{tier}"}}"#
        );
        assert!(text.contains(&series), "no {series}:\n{text}");
    }
    for rule in &rules {
        for name in metric_names(&rule.expr) {
            // `up` is Prometheus's own, about the scrape.
            if name == "up" {
                continue;
            }
            assert!(
                exported.contains(name.as_str()),
                "{} uses {name}, which the controller does not export:\n{text}",
                rule.alert
            );
        }
    }
}
