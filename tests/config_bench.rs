//! Benchmark of config backups (issue 11): 10,000 objects across 20
//! namespaces served by the in-memory API server, `lifeboat backup
//! --config` against `kubectl get … -A -o json | zstd` over the same server
//! (time and peak RSS, GNU time around each), then a full restore into an
//! empty server and one Secret restored alone. Ignored by default (it
//! measures, it does not check behaviour); run it with
//!
//! ```sh
//! LIFEBOAT_BIN=target/release/lifeboat cargo test --test config_bench -- --ignored --nocapture
//! ```
//!
//! and record the figures in docs/BENCHMARKS.md.

#[path = "support/apiserver.rs"]
mod apiserver;
mod support;

use serde_json::{json, Value};
use std::path::Path;

const NAMESPACES: usize = 20;
const TYPES: [&str; 5] = [
    "namespaces",
    "configmaps",
    "secrets",
    "serviceaccounts",
    "deployments.apps",
];

/// 20 namespaces, 6,000 ConfigMaps, 3,000 Secrets, 20 ServiceAccounts and
/// 960 Deployments: 10,000 objects, about 1 KB each in JSON.
fn fill(store: &apiserver::Store) -> usize {
    let ins = |r: &str, v: Value| {
        store.insert(r, v).unwrap();
    };
    let ns = |i: usize| format!("bench-{:02}", i % NAMESPACES);
    let text = "x".repeat(160);
    for i in 0..NAMESPACES {
        ins(
            "api/v1/namespaces",
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns(i)}}),
        );
        ins(
            "api/v1/serviceaccounts",
            json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "app", "namespace": ns(i)}}),
        );
    }
    for i in 0..6000 {
        ins(
            "api/v1/configmaps",
            json!({"apiVersion": "v1", "kind": "ConfigMap",
                   "metadata": {"name": format!("cm-{i:05}"), "namespace": ns(i), "labels": {"app": "shop", "tier": "web"}},
                   "data": {"a": text, "b": text, "c": format!("{i}")}}),
        );
    }
    for i in 0..3000 {
        ins(
            "api/v1/secrets",
            json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                   "metadata": {"name": format!("secret-{i:04}"), "namespace": ns(i), "labels": {"app": "shop"}},
                   "stringData": {"password": format!("pw-{i}-{text}"), "user": "app"}}),
        );
    }
    for i in 0..960 {
        ins(
            "apis/apps/v1/deployments",
            json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": format!("d-{i:03}"), "namespace": ns(i)},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"containers": [{"name": "c", "image": "nginx:1.27",
                                           "envFrom": [{"configMapRef": {"name": "cm-00001"}}],
                                           "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}}]}}}}),
        );
    }
    NAMESPACES * 2 + 6000 + 3000 + 960
}

/// Wall seconds and peak RSS (KiB) of `sh -c script`, from GNU time.
async fn timed(script: &str, dir: &Path) -> (f64, u64) {
    let out_file = dir.join("time.out");
    let out = tokio::process::Command::new("/usr/bin/time")
        .args(["-f", "%e %M", "-o"])
        .arg(&out_file)
        .args(["sh", "-c", script])
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&out_file).unwrap();
    let mut f = text.split_whitespace().rev().take(2);
    let rss = f.next().unwrap().parse().unwrap();
    let secs = f.next().unwrap().parse().unwrap();
    (secs, rss)
}

/// The median round by wall time.
fn median(mut v: Vec<(f64, u64)>) -> (f64, u64) {
    v.sort_by(|a, b| a.0.total_cmp(&b.0));
    v[v.len() / 2]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: run with --ignored, figures go to docs/BENCHMARKS.md"]
async fn config_backup_and_restore_of_10000_objects_against_kubectl() {
    let bin = std::env::var("LIFEBOAT_BIN").unwrap_or_else(|_| support::bin().to_string());
    let rounds: usize = std::env::var("BENCH_ROUNDS").map_or(3, |r| r.parse().unwrap());
    let dir = tempfile::tempdir().unwrap();
    let server = apiserver::ApiServer::start().await;
    server.store.strict();
    assert_eq!(fill(&server.store), 10_000);
    let kc = dir.path().join("kubeconfig");
    server.kubeconfig(&kc);
    let kc = kc.display().to_string();
    let keys = tokio::task::block_in_place(|| support::keyfile(dir.path(), "k1"));
    let keys = keys.display().to_string();
    let resources: String = TYPES.iter().map(|t| format!(" --resource {t}")).collect();

    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    let mut kubectl_bytes = 0;
    for round in 0..rounds {
        let store = dir.path().join(format!("store-{round}"));
        ours.push(
            timed(
                &format!(
                    "KUBECONFIG={kc} {bin} backup --config --all-namespaces{resources} \
                     --to file://{} --key-file {keys} --policy bench --json > /dev/null",
                    store.display()
                ),
                dir.path(),
            )
            .await,
        );
        let out = dir.path().join(format!("kubectl-{round}.json.zst"));
        theirs.push(
            timed(
                &format!(
                    "kubectl --kubeconfig {kc} get {} -A -o json | zstd -q -o {}",
                    TYPES.join(","),
                    out.display()
                ),
                dir.path(),
            )
            .await,
        );
        kubectl_bytes = std::fs::metadata(&out).unwrap().len();
    }
    // kubectl's output holds every object (a sanity check of the comparison).
    let listed = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "zstd -dc {} | grep -c '\"kind\": \"ConfigMap\"'",
            dir.path().join("kubectl-0.json.zst").display()
        ))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&listed.stdout).trim(), "6000");
    let (ours, theirs) = (median(ours), median(theirs));
    let from = format!("file://{}", dir.path().join("store-0").display());

    // Full restore into an empty cluster, then one Secret alone.
    let mut full = Vec::new();
    let mut one = Vec::new();
    for _ in 0..rounds {
        let target = apiserver::ApiServer::start().await;
        target.store.strict();
        let tkc = dir.path().join("target-kubeconfig");
        target.kubeconfig(&tkc);
        full.push(
            timed(
                &format!(
                    "KUBECONFIG={} {bin} restore --config --from {from} --key-file {keys} --json > /dev/null",
                    tkc.display()
                ),
                dir.path(),
            )
            .await,
        );
        assert_eq!(target.store.count("api/v1/configmaps"), 6000);
        let single = apiserver::ApiServer::start().await;
        single.kubeconfig(&tkc);
        one.push(
            timed(
                &format!(
                    "KUBECONFIG={} {bin} restore --config --from {from} --key-file {keys} \
                     --resource secrets --name bench-07/secret-0007 --json > /dev/null",
                    tkc.display()
                ),
                dir.path(),
            )
            .await,
        );
        assert!(single
            .store
            .get("api/v1/secrets", "bench-07", "secret-0007")
            .is_some());
    }
    let (full, one) = (median(full), median(one));
    let stored: u64 = walk_bytes(&dir.path().join("store-0"));
    println!("| measure | wall s | peak RSS MiB |");
    println!("|---|---|---|");
    println!(
        "| lifeboat backup --config (10,000 objects, {} kB sealed) | {:.2} | {:.1} |",
        stored / 1000,
        ours.0,
        ours.1 as f64 / 1024.0
    );
    println!(
        "| kubectl get … -A -o json \\| zstd ({} kB) | {:.2} | {:.1} |",
        kubectl_bytes / 1000,
        theirs.0,
        theirs.1 as f64 / 1024.0
    );
    println!("| ratio lifeboat / kubectl | {:.2}× | |", ours.0 / theirs.0);
    println!(
        "| lifeboat restore --config, all 10,000 into an empty server | {:.2} | {:.1} |",
        full.0,
        full.1 as f64 / 1024.0
    );
    println!(
        "| lifeboat restore --config, one Secret | {:.2} | {:.1} |",
        one.0,
        one.1 as f64 / 1024.0
    );
}

fn walk_bytes(p: &Path) -> u64 {
    if p.is_dir() {
        std::fs::read_dir(p)
            .unwrap()
            .map(|e| walk_bytes(&e.unwrap().path()))
            .sum()
    } else {
        std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
    }
}
