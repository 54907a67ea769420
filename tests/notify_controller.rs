//! Notifications end to end: the controller loop against the in-memory API
//! server decides them and creates notify Jobs; a stand-in kubelet runs each
//! Job once, as Kubernetes would (the real binary, its Secret volumes
//! materialised from fixtures); a recorder on loopback stands in for Slack,
//! PagerDuty, a webhook and a heartbeat monitor, and aiosmtpd receives the
//! mail. A failed run reaches every target exactly once although the
//! controller restarts three times, each time having lost the status write
//! that recorded the failure; the recovery resolves the PagerDuty incident;
//! no secret appears in a Job spec or in what the Jobs print. An RPO breach
//! is sent once per repeat interval across restarts and resolved by the
//! backup that ends it.

#[path = "support/apiserver.rs"]
mod apiserver;
#[allow(dead_code)]
#[path = "support/recorder.rs"]
mod recorder;
mod support;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use apiserver::{ApiServer, JOBS, POLICIES, RUNS};
use chrono::{DateTime, Utc};
use k8s_openapi::api::batch::v1::Job;
use kube::api::{Patch, PatchParams};
use kube::Api;
use lifeboat::api::BackupRun;
use lifeboat::controller::jobs::JobConfig;
use lifeboat::controller::metrics::Metrics;
use lifeboat::controller::{Clock, Settings};
use recorder::Recorder;
use serde_json::{json, Value};
use support::kubelet::{execute, Secrets};
use support::{cluster::free_port, smtp};

const NS: &str = "shop";
const WAIT: Duration = Duration::from_secs(30);
const TOKEN: &str = "T111-B222-slacktoken-5ecret";
const SIGNING_KEY: &str = "whsec-controller-4b3a";
const ROUTING_KEY: &str = "PD-routing-key-8e7f6a";
const HB_TOKEN: &str = "hb-uuid-0c0ffee";
const SMTP_PASSWORD: &str = "smtp-pw-ctl-2f1e";
const RESULT: &str = r#"{"backup_id":"20261122T020010.000Z-ab12cd","server_version":"15.18","bytes_in":4096,"bytes_out":2048,"seconds":1.5,"committed":["primary"],"failed":[],"verified":["primary"],"objects":[{"key":"backups/20261122T020010.000Z-ab12cd/db-0.lbk","size":2048,"sha256":"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"}]}"#;

fn at(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

fn policy(rec: &Recorder, smtp_port: u16) -> Value {
    json!({
        "apiVersion": "lifeboat.dev/v1alpha1",
        "kind": "BackupPolicy",
        "metadata": {"name": "orders", "namespace": NS, "creationTimestamp": "2026-11-20T10:00:00Z"},
        "spec": {
            "source": {"postgres": {"connectionSecretRef": {"name": "orders-db"}, "databases": ["orders"]}},
            "schedule": {"daily": "0 2 * * *"},
            "destinations": [{"name": "primary", "s3": {"region": "us-east-1", "bucket": "backups"}}],
            "encryption": {"keySecretRef": {"name": "keys"}},
            // Not breached within the test: the failure and its recovery only.
            "objectives": {"rpo": "48h"},
            "notifications": {"targets": [
                {"name": "ops-slack", "slack": {"secretRef": {"name": "ops-slack"}}},
                {"name": "audit", "webhook": {"secretRef": {"name": "audit-hook"}}},
                {"name": "pager", "pagerduty": {"secretRef": {"name": "pd"}, "eventsUrl": format!("{}/pd", rec.url)}},
                {"name": "oncall-mail", "email": {"host": "localhost", "port": smtp_port,
                    "from": "lifeboat@example.org", "to": ["oncall@example.org"],
                    "secretRef": {"name": "smtp"}, "caKey": "ca.crt"}},
                {"name": "deadman", "heartbeat": {"secretRef": {"name": "hb"}}}
            ]}
        }
    })
}

fn secrets(rec: &Recorder, ca: &str) -> Secrets {
    let s = |pairs: &[(&str, String)]| {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect()
    };
    Secrets::from([
        (
            "ops-slack".into(),
            s(&[("url", format!("{}/services/{TOKEN}", rec.url))]),
        ),
        (
            "audit-hook".into(),
            s(&[
                ("url", format!("{}/audit", rec.url)),
                ("signingKey", SIGNING_KEY.into()),
            ]),
        ),
        ("pd".into(), s(&[("routingKey", ROUTING_KEY.into())])),
        (
            "smtp".into(),
            s(&[
                ("username", "alerts".into()),
                ("password", SMTP_PASSWORD.into()),
                ("ca.crt", ca.into()),
            ]),
        ),
        (
            "hb".into(),
            s(&[("url", format!("{}/ping/{HB_TOKEN}", rec.url))]),
        ),
    ])
}

struct Running(tokio::task::JoinHandle<()>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn start(server: &ApiServer, clock: &Clock, jobs: &JobConfig) -> (Running, Arc<Metrics>) {
    let settings = Settings {
        namespace: Some(NS.into()),
        resync: Duration::from_millis(200),
        retry: Duration::from_millis(200),
        clock: clock.clone(),
        jobs: jobs.clone(),
        ..Settings::default()
    };
    let metrics = Arc::new(Metrics::default());
    (
        Running(server.run_controllers(settings, metrics.clone())),
        metrics,
    )
}

fn reconciles(metrics: &Metrics, controller: &str) -> u64 {
    let prefix =
        format!("lifeboat_reconcile_duration_seconds_count{{controller=\"{controller}\"}} ");
    metrics
        .encode()
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

fn is_notify(job: &Value) -> bool {
    job.pointer("/metadata/labels/app.kubernetes.io~1component") == Some(&json!("notify"))
}

fn name(v: &Value) -> String {
    v["metadata"]["name"].as_str().unwrap().to_string()
}

/// What the Jobs printed, for the secret check.
type Printed = Arc<Mutex<Vec<String>>>;

/// The Job controller and kubelet for notify Jobs: each runs once, for
/// real, then the Job is marked succeeded with its report.
fn kubelet(server: &ApiServer, secrets: Secrets, printed: Printed) -> Running {
    let store = server.store.clone();
    let server_client = server.client();
    let mut changes = server.store.subscribe();
    Running(tokio::spawn(async move {
        let mut ran = BTreeSet::new();
        loop {
            for job in store.list(JOBS, NS).into_iter().filter(is_notify) {
                let job_name = name(&job);
                if !ran.insert(job_name.clone()) {
                    continue;
                }
                let spec: Job = serde_json::from_value(job).unwrap();
                let secrets = secrets.clone();
                let out = tokio::task::spawn_blocking(move || {
                    let work = tempfile::tempdir().unwrap();
                    let r = execute(&spec, &secrets, work.path());
                    (r.output, r.termination_message)
                })
                .await
                .unwrap();
                let (output, report) = out;
                printed.lock().unwrap().push(format!(
                    "{}{}{report}",
                    String::from_utf8_lossy(&output.stdout),
                    String::from_utf8_lossy(&output.stderr)
                ));
                assert!(output.status.success(), "{job_name}: {output:?}");
                finish(&server_client, &job_name).await;
            }
            if changes.changed().await.is_err() {
                return;
            }
        }
    }))
}

/// Marks a notify Job succeeded, as the Job controller would.
async fn finish(client: &kube::Client, job: &str) {
    let jobs: Api<Job> = Api::namespaced(client.clone(), NS);
    let status = json!({"status": {"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}],
        "startTime": "2026-11-21T02:04:00Z", "completionTime": "2026-11-21T02:04:01Z"}});
    jobs.patch_status(job, &PatchParams::default(), &Patch::Merge(status))
        .await
        .unwrap();
}

fn notify_jobs(server: &ApiServer, event: &str) -> Vec<String> {
    let prefix = format!("orders-notify-{event}-");
    server
        .store
        .list(JOBS, NS)
        .iter()
        .map(name)
        .filter(|n| n.starts_with(&prefix))
        .collect()
}

fn mails(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir.join("mail"))
        .map(|d| {
            d.flatten()
                .filter(|e| e.path().extension().is_some_and(|x| x == "eml"))
                .count()
        })
        .unwrap_or(0)
}

/// Every target got `n` notifications.
async fn until_delivered(rec: &Recorder, smtp_dir: &std::path::Path, n: usize) {
    let slack = format!("/services/{TOKEN}");
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let counts = [
            rec.delivered(&slack).len(),
            rec.delivered("/audit").len(),
            rec.delivered("/pd").len(),
            mails(smtp_dir),
        ];
        if counts.iter().all(|c| *c >= n) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "waiting for {n} deliveries per target: {counts:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_reaches_every_target_once_across_restarts_and_the_recovery_resolves_it() {
    let smtp_dir = tempfile::tempdir().unwrap();
    let smtp_port = free_port();
    let Some(_smtp) = smtp::start(smtp_dir.path(), smtp_port, "alerts", SMTP_PASSWORD) else {
        return;
    };
    let ca = std::fs::read_to_string(smtp_dir.path().join("ca.pem")).unwrap();
    let bed = bed(&ca).await;
    let (rec, server, jobs) = (&bed.rec, &bed.server, &bed.jobs);

    let clock = Clock::fixed(at("2026-11-21T02:00:30Z"));
    let (mut controller, _) = start(server, &clock, jobs);
    server.create_policy(policy(rec, smtp_port)).await;

    // The slot's run fails: its notify Job reaches every target.
    let run = "orders-daily-20261121t020000z";
    let backup_job = format!("{run}-backup");
    server
        .wait_for("the run's job", WAIT, |s| s.get(JOBS, NS, &backup_job))
        .await;
    server
        .finish_job(
            NS,
            &backup_job,
            false,
            "pg_dump: connection to server failed",
        )
        .await;
    let failed_run = server
        .wait_for("the run to fail", WAIT, |s| {
            s.get(RUNS, NS, run)
                .filter(|r| r.pointer("/status/phase") == Some(&json!("Failed")))
        })
        .await;
    until_delivered(rec, smtp_dir.path(), 1).await;
    assert_eq!(notify_jobs(server, "runfailed").len(), 1);

    // Three restarts, each after losing the status write that recorded
    // the failure: every new controller decides the failure again.
    let runs: Api<BackupRun> = Api::namespaced(server.client(), NS);
    for i in 0..3 {
        controller.0.abort();
        let lost = json!({"status": {"phase": "Running", "completedAt": null, "message": null,
            "conditions": failed_run["status"]["conditions"].as_array().unwrap().iter()
                .filter(|c| c["type"] != "Complete").collect::<Vec<_>>()}});
        runs.patch_status(run, &PatchParams::default(), &Patch::Merge(lost))
            .await
            .unwrap();
        restart(&mut controller, server, &clock, jobs).await;
        server
            .wait_for(&format!("restart {i}: the run to fail again"), WAIT, |s| {
                s.get(RUNS, NS, run)
                    .filter(|r| r.pointer("/status/phase") == Some(&json!("Failed")))
            })
            .await;
    }
    assert_eq!(notify_jobs(server, "runfailed").len(), 1);
    let slack = format!("/services/{TOKEN}");
    for (target, n) in [
        ("slack", rec.delivered(&slack).len()),
        ("webhook", rec.delivered("/audit").len()),
        ("pagerduty", rec.delivered("/pd").len()),
        ("email", mails(smtp_dir.path())),
    ] {
        assert_eq!(n, 1, "{target} got the failure {n} times");
    }
    let trigger = rec.delivered("/pd")[0].json();
    assert_eq!(trigger["event_action"], "trigger");
    assert_eq!(rec.delivered("/audit")[0].json()["subject"], run);
    assert!(rec.delivered(&format!("/ping/{HB_TOKEN}")).is_empty());

    // The next day's run succeeds: the heartbeat is pinged once, and the
    // recovery reaches every target; PagerDuty resolves its incident.
    clock.set(at("2026-11-22T02:00:30Z"));
    let next_job = "orders-daily-20261122t020000z-backup";
    server
        .wait_for("the next run's job", WAIT, |s| s.get(JOBS, NS, next_job))
        .await;
    server.finish_job(NS, next_job, true, RESULT).await;
    server
        .wait_for("the policy to be healthy", WAIT, |s| {
            let p = s.get(POLICIES, NS, "orders")?;
            p["status"]["conditions"]
                .as_array()?
                .iter()
                .any(|c| c["type"] == "Healthy" && c["status"] == "True")
                .then_some(())
        })
        .await;
    until_delivered(rec, smtp_dir.path(), 2).await;
    let resolve = rec.delivered("/pd")[1].json();
    assert_eq!(resolve["event_action"], "resolve");
    assert_eq!(resolve["dedup_key"], trigger["dedup_key"]);
    assert_eq!(rec.delivered("/audit")[1].json()["event"], "recovered");
    server
        .wait_for("the heartbeat", WAIT, |_| {
            (!rec.delivered(&format!("/ping/{HB_TOKEN}")).is_empty()).then_some(())
        })
        .await;
    assert_eq!(notify_jobs(server, "succeeded").len(), 1);
    assert_eq!(notify_jobs(server, "recovered").len(), 1);

    // No secret in any Job spec (arguments included) or in what Jobs printed.
    let specs = serde_json::to_string(&server.store.list(JOBS, NS)).unwrap();
    let printed = bed.printed.lock().unwrap().join("\n");
    assert!(printed.contains("ops-slack"), "{printed}");
    for secret in [TOKEN, SIGNING_KEY, ROUTING_KEY, HB_TOKEN, SMTP_PASSWORD] {
        assert!(!specs.contains(secret), "{secret} in a Job spec");
        assert!(!printed.contains(secret), "{secret} printed by a Job");
    }
}

/// A BackupRun made by hand ("back up now").
async fn back_up_now(server: &ApiServer, name: &str) {
    let runs: Api<BackupRun> = Api::namespaced(server.client(), NS);
    let run: BackupRun = serde_json::from_value(json!({
        "apiVersion": "lifeboat.dev/v1alpha1", "kind": "BackupRun",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"policyRef": {"name": "orders"}, "tier": "manual"}
    }))
    .unwrap();
    runs.create(&kube::api::PostParams::default(), &run)
        .await
        .unwrap();
}

/// Stops the controller, starts a new one, and waits until it has looked at
/// the policy a few times.
async fn restart(running: &mut Running, server: &ApiServer, clock: &Clock, jobs: &JobConfig) {
    running.0.abort();
    let (next, metrics) = start(server, clock, jobs);
    *running = next;
    let deadline = tokio::time::Instant::now() + WAIT;
    while reconciles(&metrics, "backuppolicy") < 3 {
        assert!(tokio::time::Instant::now() < deadline, "no reconciles");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The recorder, the API server, and the stand-in kubelet that runs notify
/// Jobs with the fixture Secrets (`ca`: the SMTP relay's CA).
struct Bed {
    rec: Recorder,
    server: ApiServer,
    jobs: JobConfig,
    printed: Printed,
    _mounts: tempfile::TempDir,
    _kubelet: Running,
}

async fn bed(ca: &str) -> Bed {
    let rec = Recorder::start().await;
    let server = ApiServer::start().await;
    let mounts = tempfile::tempdir().unwrap();
    let mut jobs = JobConfig::new("lifeboat:test");
    jobs.mount_root = mounts.path().to_str().unwrap().to_string();
    let printed: Printed = Arc::default();
    let kubelet = kubelet(&server, secrets(&rec, ca), printed.clone());
    Bed {
        rec,
        server,
        jobs,
        printed,
        _mounts: mounts,
        _kubelet: kubelet,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_breach_is_sent_once_per_repeat_interval_across_restarts_and_resolved() {
    let bed = bed("").await;
    let (rec, server, jobs) = (&bed.rec, &bed.server, &bed.jobs);

    // No schedule and no backup: the RPO of 1 h ran out an hour after the
    // policy was made (2026-11-20T11:00Z); 12 h later, in the 6th 2-hour
    // repeat interval, the controller first sees it.
    let clock = Clock::fixed(at("2026-11-20T23:00:30Z"));
    let (mut controller, _) = start(server, &clock, jobs);
    server
        .create_policy(json!({
            "apiVersion": "lifeboat.dev/v1alpha1", "kind": "BackupPolicy",
            "metadata": {"name": "orders", "namespace": NS, "creationTimestamp": "2026-11-20T10:00:00Z"},
            "spec": {
                "source": {"postgres": {"connectionSecretRef": {"name": "orders-db"}, "databases": ["orders"]}},
                "destinations": [{"name": "primary", "s3": {"region": "us-east-1", "bucket": "backups"}}],
                "encryption": {"keySecretRef": {"name": "keys"}},
                "objectives": {"rpo": "1h"},
                "notifications": {"repeatInterval": "2h", "targets": [
                    {"name": "ops-slack", "slack": {"secretRef": {"name": "ops-slack"}}},
                    {"name": "pager", "pagerduty": {"secretRef": {"name": "pd"}, "eventsUrl": format!("{}/pd", rec.url)}}
                ]}
            }
        }))
        .await;
    let slack = format!("/services/{TOKEN}");
    let delivered = |n: usize| {
        let (rec, slack) = (rec, &slack);
        async move {
            let deadline = tokio::time::Instant::now() + WAIT;
            while rec.delivered(slack).len() < n || rec.delivered("/pd").len() < n {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "waiting for {n} deliveries"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    delivered(1).await;
    let trigger = rec.delivered("/pd")[0].json();
    assert_eq!(trigger["event_action"], "trigger");
    assert_eq!(trigger["dedup_key"], "lifeboat/shop/orders/objective");
    assert!(
        rec.delivered(&slack)[0].json()["text"]
            .as_str()
            .unwrap()
            .contains("RPO objective breached"),
        "{:?}",
        rec.delivered(&slack)[0].json()
    );

    // A restart in the same interval sends nothing; the next interval sends
    // the breach again, once, however often the controller restarts.
    restart(&mut controller, server, &clock, jobs).await;
    assert_eq!(notify_jobs(server, "objectivebreached").len(), 1);
    clock.set(at("2026-11-21T01:00:30Z"));
    delivered(2).await;
    for _ in 0..2 {
        restart(&mut controller, server, &clock, jobs).await;
    }
    assert_eq!(notify_jobs(server, "objectivebreached").len(), 2);
    assert_eq!(
        (rec.delivered(&slack).len(), rec.delivered("/pd").len()),
        (2, 2)
    );

    // A backup: the RPO is met again, and PagerDuty resolves the breach.
    clock.set(at("2026-11-21T02:10:00Z"));
    back_up_now(server, "orders-now").await;
    server
        .wait_for("the run's job", WAIT, |s| {
            s.get(JOBS, NS, "orders-now-backup")
        })
        .await;
    server
        .finish_job(NS, "orders-now-backup", true, RESULT)
        .await;
    delivered(3).await;
    let resolve = rec.delivered("/pd")[2].json();
    assert_eq!(resolve["event_action"], "resolve");
    assert_eq!(resolve["dedup_key"], trigger["dedup_key"]);
    assert_eq!(notify_jobs(server, "recovered").len(), 1);
    drop(controller);
}
