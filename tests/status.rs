//! `lifeboat status` end to end: the real binary, a KUBECONFIG pointing at
//! the in-memory API server holding policies with statuses, the table and
//! the JSON it prints; and the errors for a cluster it cannot reach.

#[path = "support/apiserver.rs"]
mod apiserver;

use std::path::Path;

use apiserver::ApiServer;
use chrono::{Duration, SecondsFormat, Utc};
use serde_json::{json, Value};

fn ago(d: Duration) -> String {
    (Utc::now() - d).to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn policy(ns: &str, name: &str, backup_age: Duration, drill: Value) -> Value {
    json!({
        "apiVersion": "lifeboat.dev/v1alpha1",
        "kind": "BackupPolicy",
        "metadata": {"name": name, "namespace": ns, "generation": 1, "creationTimestamp": ago(Duration::days(10))},
        "spec": {
            "source": {"postgres": {"connectionSecretRef": {"name": "db"}, "databases": [name]}},
            "schedule": {"daily": "0 2 * * *"},
            "destinations": [{"name": "primary", "s3": {"region": "us-east-1", "bucket": "backups"}}],
            "encryption": {"keySecretRef": {"name": "keys"}},
            "verification": {"restoreDrill": {"schedule": "0 6 * * 1", "targetSecretRef": {"name": "scratch"}}},
            "objectives": {"rpo": "1h", "rto": "4h"}
        },
        "status": {
            "observedGeneration": 1,
            "conditions": [
                {"type": "Ready", "status": "True", "reason": "Reconciled", "message": "the spec is valid", "lastTransitionTime": ago(Duration::days(10))},
                {"type": "Healthy", "status": "True", "reason": "BackupSucceeded", "message": "ok", "lastTransitionTime": ago(Duration::days(1))}
            ],
            "lastBackup": {"run": format!("{name}-daily-1"), "tier": "daily", "completedAt": ago(backup_age),
                           "backupId": "20261125T020000.000Z-abcdef", "bytes": 1048576},
            "nextBackup": (Utc::now() + Duration::hours(20)).to_rfc3339_opts(SecondsFormat::Secs, true),
            "recoveryWindow": {"from": ago(Duration::days(7)), "to": ago(backup_age)},
            "lastDrill": drill
        }
    })
}

async fn create(server: &ApiServer, obj: Value) {
    server.create_policy(obj).await;
}

/// Runs `lifeboat status ARGS` with this kubeconfig; (success, stdout, stderr).
async fn status(kubeconfig: &Path, args: &[&str]) -> (bool, String, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_lifeboat"))
        .arg("status")
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .env("LIFEBOAT_LOG", "warn")
        .output()
        .await
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn line_of<'a>(table: &'a str, policy: &str) -> &'a str {
    table
        .lines()
        .find(|l| l.starts_with(policy))
        .unwrap_or_else(|| panic!("no line for {policy}:\n{table}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_prints_the_on_call_table_and_json_from_the_cluster() {
    let server = ApiServer::start().await;
    let passed = json!({"run": "orders-drill-1", "completedAt": ago(Duration::hours(6)), "succeeded": true,
                        "recoveryTimeSeconds": 252, "restoreRequest": "orders-drill-1"});
    let failed = json!({"run": "payments-drill-3", "completedAt": ago(Duration::hours(2)), "succeeded": false,
                        "recoveryTimeSeconds": 18000, "restoreRequest": "payments-drill-3",
                        "message": "verify: object backups/x/payments.lbk failed authentication"});
    create(
        &server,
        policy("shop", "orders", Duration::minutes(30), passed.clone()),
    )
    .await;
    create(
        &server,
        policy("shop", "payments", Duration::hours(3), failed),
    )
    .await;
    create(
        &server,
        policy("billing", "invoices", Duration::minutes(10), passed),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    server.kubeconfig(&kubeconfig);

    // The context's namespace (default) holds none.
    let (ok, out, err) = status(&kubeconfig, &[]).await;
    assert!(ok, "{err}");
    assert_eq!(out, "no BackupPolicies found\n");

    let (ok, table, err) = status(&kubeconfig, &["-n", "shop"]).await;
    assert!(ok, "{err}");
    assert!(table.starts_with("POLICY"), "{table}");
    assert!(!table.contains("billing/"), "{table}");
    let orders = line_of(&table, "shop/orders ");
    for cell in [" daily ", "/1h ", "in 19h", "passed 6h", "4m12s/4h", " .. "] {
        assert!(orders.contains(cell), "{cell:?} missing: {orders}");
    }
    assert!(orders.ends_with("OK"), "{orders}");
    assert!(!orders.contains("BREACHED"), "{orders}");
    let payments = line_of(&table, "shop/payments ");
    assert!(payments.contains("3h0m/1h BREACHED"), "{payments}");
    assert!(payments.contains("FAILED 2h"), "{payments}");
    assert!(payments.contains("5h0m/4h BREACHED"), "{payments}");
    assert!(
        payments.ends_with("RPO BREACHED, DRILL FAILED, RTO BREACHED"),
        "{payments}"
    );
    assert!(
        table.contains("shop/payments: DRILL FAILED: drill payments-drill-3 failed: verify: object backups/x/payments.lbk"),
        "{table}"
    );

    let (ok, out, err) = status(&kubeconfig, &["-A", "-o", "json"]).await;
    assert!(ok, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    let names: Vec<String> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|p| format!("{}/{}", p["namespace"], p["name"]).replace('"', ""))
        .collect();
    assert_eq!(names, ["billing/invoices", "shop/orders", "shop/payments"]);
    let payments = &v[2];
    assert_eq!(payments["healthy"], false);
    assert_eq!(payments["rpoBreached"], true);
    assert_eq!(payments["rtoBreached"], true);
    assert_eq!(payments["rpo"], "1h");
    let age = payments["lastBackup"]["ageSeconds"].as_i64().unwrap();
    assert!((3 * 3600..3 * 3600 + 120).contains(&age), "{age}");
    assert_eq!(payments["lastDrill"]["recoveryTimeSeconds"], 18000);
    assert_eq!(payments["lastDrill"]["restoreRequest"], "payments-drill-3");
    let kinds: Vec<&str> = payments["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["RpoBreached", "DrillFailed", "RtoBreached"]);
    assert_eq!(v[1]["healthy"], true);
    assert_eq!(v[1]["problems"], json!([]));
    assert_eq!(
        v[1]["lastBackup"]["backupId"],
        "20261125T020000.000Z-abcdef"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_cluster_is_named_by_context_and_server() {
    // A port that was free a moment ago: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: gone\n  cluster:\n    server: http://127.0.0.1:{port}\nusers:\n- name: u\n  user: {{}}\ncontexts:\n- name: prod-eu\n  context:\n    cluster: gone\n    user: u\ncurrent-context: prod-eu\n"
        ),
    )
    .unwrap();
    let (ok, _, err) = status(&kubeconfig, &["-A"]).await;
    assert!(!ok);
    assert!(
        err.contains(&format!(
            "cannot reach the Kubernetes API at http://127.0.0.1:{port}/"
        )) && err.contains("context prod-eu"),
        "{err}"
    );

    let (ok, _, err) = status(&kubeconfig, &["--context", "nope"]).await;
    assert!(!ok);
    assert!(err.contains("kube context \"nope\""), "{err}");
}
