//! Benchmark, not a test: 1,000 BackupPolicies in the in-memory API server,
//! all due (created a day ago), then the real `lifeboat controller` binary
//! started as a child process, as after an outage. Prints the time from its
//! start until every policy's first run has its Job, and the controller's
//! peak memory (VmHWM of the child; the API server lives in the test
//! process and is not counted). Run with
//!
//! ```text
//! cargo test --release --test controller_bench -- --ignored --nocapture
//! ```
//!
//! `LIFEBOAT_BENCH_POLICIES` changes the count.

#[path = "support/apiserver.rs"]
mod apiserver;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use apiserver::{ApiServer, JOBS, LEASES, RUNS};
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, PostParams};
use kube::Api;
use serde_json::json;

fn vm_hwm_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run with --ignored --nocapture"]
async fn thousand_policies_to_first_jobs() {
    let n: usize = std::env::var("LIFEBOAT_BENCH_POLICIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let server = ApiServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    server.kubeconfig(&kubeconfig);

    // Policies created a day ago with a slot every 30 minutes: each is due
    // at once when the controller starts, as after an outage.
    let api: Api<DynamicObject> = Api::namespaced_with(
        server.client(),
        "bench",
        &ApiResource::from_gvk(&GroupVersionKind::gvk(
            "lifeboat.dev",
            "v1alpha1",
            "BackupPolicy",
        )),
    );
    let created_at = (chrono::Utc::now() - chrono::Duration::days(1))
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    for i in 0..n {
        let obj: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "lifeboat.dev/v1alpha1",
            "kind": "BackupPolicy",
            "metadata": {"name": format!("db-{i:04}"), "namespace": "bench", "creationTimestamp": created_at},
            "spec": {
                "source": {"postgres": {"connectionSecretRef": {"name": format!("db-{i:04}")}, "databases": ["app"]}},
                "schedule": {"daily": "*/30 * * * *", "weekly": "0 3 * * 0"},
                "destinations": [{"name": "primary", "s3": {"region": "us-east-1", "bucket": "backups"}}],
                "encryption": {"keySecretRef": {"name": "keys"}},
                "objectives": {"rpo": "1h"}
            }
        }))
        .unwrap();
        api.create(&PostParams::default(), &obj).await.unwrap();
    }
    let requests_before = server.store.requests();

    let start = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_lifeboat"))
        .args([
            "controller",
            "--image",
            "lifeboat:bench",
            "--metrics-addr",
            "127.0.0.1:0",
            "--namespace",
            "bench",
            "--leader-election-namespace",
            "bench",
            "--identity",
            "bench-0",
        ])
        .env("KUBECONFIG", &kubeconfig)
        .env("LIFEBOAT_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    server
        .wait_for("the controller to lead", Duration::from_secs(60), |s| {
            (s.count(LEASES) == 1).then_some(())
        })
        .await;
    let leading = start.elapsed();
    server
        .wait_for("every first run's job", Duration::from_secs(600), |s| {
            (s.count(JOBS) >= n).then_some(())
        })
        .await;
    let all_jobs = start.elapsed();
    let runs = server.store.count(RUNS);
    let requests = server.store.requests() - requests_before;
    let peak_kib = vm_hwm_kib(pid).unwrap_or(0);
    let _ = child.kill();
    let _ = child.wait();

    println!("policies: {n}, all due when the controller starts");
    println!(
        "controller start → Lease held: {:.2} s",
        leading.as_secs_f64()
    );
    println!(
        "controller start → every first run's Job exists: {:.2} s",
        all_jobs.as_secs_f64()
    );
    println!("runs: {runs}, jobs: {n}, API requests by the controller: {requests}");
    println!(
        "controller peak memory (VmHWM): {:.1} MiB",
        peak_kib as f64 / 1024.0
    );
    assert_eq!(runs, n, "exactly one first run per policy");
}
