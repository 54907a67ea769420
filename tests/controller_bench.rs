//! Benchmark, not a test: 1,000 BackupPolicies against the in-memory API
//! server, the real `lifeboat controller` binary as a child process. Prints
//! the time until every policy's first run has its Job, and the
//! controller's peak memory (VmHWM). Run with
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
    let idle_kib = vm_hwm_kib(pid).unwrap_or(0);

    // Policies created a day ago with a daily slot that has passed: each is
    // due at once, as after a controller outage.
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
    let start = Instant::now();
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
    let created = start.elapsed();
    server
        .wait_for("every first run's job", Duration::from_secs(600), |s| {
            (s.count(JOBS) >= n).then_some(())
        })
        .await;
    let all_jobs = start.elapsed();
    let runs = server.store.count(RUNS);
    let requests = server.store.requests();
    let peak_kib = vm_hwm_kib(pid).unwrap_or(0);
    let _ = child.kill();
    let _ = child.wait();

    println!("policies: {n}");
    println!(
        "create {n} policies through the API: {:.2} s",
        created.as_secs_f64()
    );
    println!(
        "first policy created → every first run's Job exists: {:.2} s",
        all_jobs.as_secs_f64()
    );
    println!("runs: {runs}, jobs: {n}, API requests: {requests}");
    println!(
        "controller VmHWM: idle {:.1} MiB, peak {:.1} MiB",
        idle_kib as f64 / 1024.0,
        peak_kib as f64 / 1024.0
    );
    assert_eq!(runs, n, "exactly one first run per policy");
}
