//! The status page in a real browser: the in-memory API server holds known
//! policies and runs (one healthy, one breaching both objectives with hostile
//! text in its messages, one in a namespace the controller does not watch);
//! the controller's HTTP router serves the page from it; Debian's chromium,
//! headless, loads it and the test reads the DOM it built: health, ages
//! against the objectives, breach marking, success rate, recovery points per
//! destination, and hostile text shown as text. A screenshot is taken too
//! (`LIFEBOAT_UPDATE_SCREENSHOT=1` copies it to docs/status-page.png). The
//! real binary serves the page only with `--status-page`.
//!
//! chromium is found through LIFEBOAT_CHROMIUM or PATH (scripts/test.sh
//! installs Debian's); without it the test is skipped, unless
//! LIFEBOAT_REQUIRE_TOOLS=1 makes that a failure.

#[path = "support/apiserver.rs"]
mod apiserver;
mod support;

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use apiserver::ApiServer;
use lifeboat::api::BackupRun;
use lifeboat::controller::http::{router, Probe};
use lifeboat::controller::metrics::Metrics;
use lifeboat::controller::page::StatusPage;
use lifeboat::controller::Clock;
use serde_json::{json, Value};
use support::k8s::{root, skip_or_fail};

const NOW: &str = "2026-11-25T12:00:00Z";

fn chromium() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("LIFEBOAT_CHROMIUM").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    ["chromium", "chromium-browser"].iter().find_map(|name| {
        std::env::var_os("PATH")
            .into_iter()
            .flat_map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    })
}

/// Runs headless chromium on `url` with `args`; its stdout.
async fn browse(chromium: &Path, profile: &Path, args: &[String], url: &str) -> String {
    let out = tokio::time::timeout(
        Duration::from_secs(120),
        tokio::process::Command::new(chromium)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--hide-scrollbars",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .args(args)
            .arg(url)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("chromium ends within 2 minutes")
    .expect("chromium runs");
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn policy(ns: &str, name: &str, backup: &str, drill: Value, healthy: Value) -> Value {
    json!({
        "apiVersion": "lifeboat.dev/v1alpha1",
        "kind": "BackupPolicy",
        "metadata": {"name": name, "namespace": ns, "generation": 1, "creationTimestamp": "2026-11-01T00:00:00Z"},
        "spec": {
            "source": {"postgres": {"connectionSecretRef": {"name": "db"}, "databases": [name]}},
            "schedule": {"daily": "0 2 * * *"},
            "destinations": [{"name": "primary", "s3": {"region": "us-east-1", "bucket": "backups"}},
                             {"name": "dr", "s3": {"region": "eu-west-1", "bucket": "backups-dr"}}],
            "encryption": {"keySecretRef": {"name": "keys"}},
            "objectives": {"rpo": "1h", "rto": "4h"}
        },
        "status": {
            "observedGeneration": 1,
            "conditions": [
                {"type": "Ready", "status": "True", "reason": "Reconciled", "message": "the spec is valid", "lastTransitionTime": "2026-11-01T00:00:00Z"},
                healthy
            ],
            "lastBackup": {"run": format!("{name}-3"), "tier": "daily", "completedAt": backup, "bytes": 3072},
            "nextBackup": "2026-11-26T02:00:00Z",
            "recoveryWindow": {"from": "2026-11-18T02:00:00Z", "to": backup},
            "lastDrill": drill
        }
    })
}

fn run(ns: &str, policy: &str, n: u32, ok: bool, message: &str) -> Value {
    let started = format!("2026-11-2{n}T02:00:00Z");
    let artifact = |dest: &str, bytes: i64, verified: bool| {
        json!({"destination": dest, "key": format!("{policy}/{n}/db.lbk"), "bytes": bytes,
               "sha256": "ab".repeat(32), "verified": verified})
    };
    json!({
        "apiVersion": "lifeboat.dev/v1alpha1",
        "kind": "BackupRun",
        "metadata": {"name": format!("{policy}-{n}"), "namespace": ns},
        "spec": {"policyRef": {"name": policy}, "tier": "daily"},
        "status": if ok {
            json!({"phase": "Succeeded", "startedAt": started, "completedAt": started,
                   "backupId": format!("2026112{n}T020000.000Z-{policy}"), "bytes": 3072, "size": "3.0 KiB",
                   "duration": "3m0s",
                   "artifacts": [artifact("primary", 2048, true), artifact("primary", 1024, true),
                                 artifact("dr", 3072, n != 3)]})
        } else {
            json!({"phase": "Failed", "startedAt": started, "completedAt": started, "duration": "0s",
                   "message": message})
        }
    })
}

async fn create_run(server: &ApiServer, obj: Value) {
    let ns = obj["metadata"]["namespace"].as_str().unwrap().to_string();
    let runs: kube::Api<BackupRun> = kube::Api::namespaced(server.client(), &ns);
    let run: BackupRun = serde_json::from_value(obj).unwrap();
    runs.create(&Default::default(), &run).await.unwrap();
}

/// The `<section>` of one policy's card in the DOM.
fn card<'a>(dom: &'a str, policy: &str) -> &'a str {
    let start = dom
        .find(&format!("data-policy=\"{policy}\""))
        .unwrap_or_else(|| panic!("no card for {policy}:\n{dom}"));
    let rest = &dom[start..];
    &rest[..rest.find("</section>").unwrap()]
}

/// The text of the `<dd class="{class}">` in a card, tags stripped.
fn field(card: &str, class: &str) -> String {
    let open = format!("<dd class=\"{class}\">");
    let start = card
        .find(&open)
        .unwrap_or_else(|| panic!("no {class}:\n{card}"))
        + open.len();
    let inner = &card[start..start + card[start..].find("</dd>").unwrap()];
    let mut text = String::new();
    let mut in_tag = false;
    for c in inner.chars() {
        match c {
            '<' => in_tag = true,
            '>' => in_tag = false,
            c if !in_tag => text.push(c),
            _ => {}
        }
    }
    text
}

/// The table of a destination's recovery points in a card.
fn points<'a>(card: &'a str, destination: &str) -> &'a str {
    let start = card
        .find(&format!("data-destination=\"{destination}\""))
        .unwrap_or_else(|| panic!("no points for {destination}:\n{card}"));
    let rest = &card[start..];
    &rest[..rest.find("</table>").unwrap()]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_shows_each_policys_health_history_and_recovery_points() {
    let Some(chromium) = chromium() else {
        return skip_or_fail("no chromium (apt-get install chromium)");
    };
    let server = ApiServer::start().await;
    let healthy = json!({"type": "Healthy", "status": "True", "reason": "BackupSucceeded", "message": "ok", "lastTransitionTime": "2026-11-25T11:30:00Z"});
    let passed = json!({"run": "orders-drill-1", "completedAt": "2026-11-25T06:00:00Z", "succeeded": true,
                        "recoveryTimeSeconds": 252, "restoreRequest": "orders-drill-1"});
    server
        .create_policy(policy(
            "shop",
            "orders",
            "2026-11-25T11:30:00Z",
            passed.clone(),
            healthy.clone(),
        ))
        .await;
    let failed = json!({"run": "payments-drill-1", "completedAt": "2026-11-25T10:00:00Z", "succeeded": false,
                        "recoveryTimeSeconds": 18000, "restoreRequest": "payments-drill-1",
                        "message": "<script>document.title='owned'</script>checks failed"});
    let backup_failed = json!({"type": "Healthy", "status": "False", "reason": "BackupFailed",
                               "message": "run payments-4 failed: <img src=x onerror=\"document.title='owned'\">",
                               "lastTransitionTime": "2026-11-25T02:05:00Z"});
    server
        .create_policy(policy(
            "shop",
            "payments",
            "2026-11-25T09:00:00Z",
            failed,
            backup_failed,
        ))
        .await;
    server
        .create_policy(policy(
            "billing",
            "invoices",
            "2026-11-25T11:50:00Z",
            passed,
            healthy,
        ))
        .await;
    for n in 1..=3 {
        create_run(&server, run("shop", "orders", n, true, "")).await;
    }
    create_run(&server, run("shop", "payments", 1, true, "")).await;
    create_run(
        &server,
        run("shop", "payments", 2, false, "<b>disk full</b> & no space"),
    )
    .await;
    create_run(&server, run("shop", "payments", 3, true, "")).await;
    create_run(
        &server,
        run("shop", "payments", 4, false, "pg_dump exited 1"),
    )
    .await;
    create_run(&server, run("billing", "invoices", 1, true, "")).await;

    // The controller's router, reading the cluster as a controller watching "shop" would.
    let probe = Probe {
        metrics: Arc::new(Metrics::default()),
        ready: Arc::new(AtomicBool::new(true)),
        page: Some(StatusPage {
            client: server.client(),
            namespace: Some("shop".into()),
            clock: Clock::fixed(NOW.parse().unwrap()),
        }),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router(probe)).await });

    let profile = tempfile::tempdir().unwrap();
    let dom = browse(&chromium, profile.path(), &["--dump-dom".into()], &url).await;
    // Scripts in hostile text would have renamed the page.
    assert!(dom.contains("<title>lifeboat status</title>"), "{dom}");
    assert!(
        !dom.contains("owned'</script>") && !dom.contains("<img"),
        "{dom}"
    );
    assert!(!dom.contains("<b>"), "{dom}");
    assert!(
        dom.contains("&lt;b&gt;disk full&lt;/b&gt; &amp; no space"),
        "{dom}"
    );
    assert!(dom.contains("&lt;script&gt;document.title="), "{dom}");
    assert!(
        dom.contains("<meta http-equiv=\"refresh\" content=\"30\">"),
        "{dom}"
    );
    assert!(dom.contains("2026-11-25 12:00Z"), "the clock: {dom}");
    assert!(dom.contains("2 policies, 1 needing attention"), "{dom}");
    // Only the watched namespace.
    assert!(!dom.contains("billing/invoices"), "{dom}");

    let orders = card(&dom, "shop/orders");
    assert!(
        orders.contains("<span class=\"health\">OK</span>"),
        "{orders}"
    );
    assert_eq!(
        field(orders, "last-backup"),
        "2026-11-25 11:30Z (daily, orders-3)"
    );
    assert_eq!(field(orders, "rpo"), "30m0s/1h");
    assert_eq!(field(orders, "rto"), "4m12s/4h");
    assert_eq!(
        field(orders, "last-drill"),
        "passed 2026-11-25 06:00Z (6h0m ago)"
    );
    assert_eq!(
        field(orders, "window"),
        "2026-11-18 02:00Z .. 2026-11-25 11:30Z"
    );
    assert!(!orders.contains("BREACHED"), "{orders}");
    assert!(
        orders.contains("3 of 3 finished runs succeeded (100%)"),
        "{orders}"
    );
    let primary = points(orders, "primary");
    assert!(primary.contains("primary: 3 recovery points"), "{primary}");
    let newest = primary.find("20261123T020000.000Z-orders").unwrap();
    assert!(
        newest < primary.find("20261121T020000.000Z-orders").unwrap(),
        "{primary}"
    );
    assert!(
        primary.contains("3.0 KiB") && !primary.contains("not read back"),
        "{primary}"
    );
    assert!(
        points(orders, "dr").contains("not read back"),
        "one copy was not read back"
    );

    let payments = card(&dom, "shop/payments");
    assert!(
        payments.contains(
            "<span class=\"health\">BACKUP FAILED, RPO BREACHED, DRILL FAILED, RTO BREACHED</span>"
        ),
        "{payments}"
    );
    assert_eq!(field(payments, "rpo"), "3h0m/1h BREACHED");
    assert!(
        payments.contains("<dd class=\"rpo\"><span class=\"breached\">"),
        "{payments}"
    );
    assert_eq!(field(payments, "rto"), "5h0m/4h BREACHED");
    assert!(field(payments, "last-drill").starts_with("FAILED 2026-11-25 10:00Z"));
    assert!(
        payments.contains("2 of 4 finished runs succeeded (50%)"),
        "{payments}"
    );
    assert!(
        points(payments, "primary").contains("primary: 2 recovery points"),
        "{payments}"
    );
    // Newest run first in the history.
    let history = &payments[payments.find("<table class=\"runs\">").unwrap()..];
    assert!(history.find("payments-4").unwrap() < history.find("payments-1").unwrap());

    let shot_dir = tempfile::tempdir().unwrap();
    let shot = shot_dir.path().join("status-page.png");
    browse(
        &chromium,
        profile.path(),
        &[
            format!("--screenshot={}", shot.display()),
            "--window-size=1280,900".into(),
        ],
        &url,
    )
    .await;
    let png = std::fs::read(&shot).expect("chromium wrote the screenshot");
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000,
        "{} bytes",
        png.len()
    );
    if std::env::var("LIFEBOAT_UPDATE_SCREENSHOT").as_deref() == Ok("1") {
        std::fs::write(root().join("docs/status-page.png"), &png).unwrap();
    }
}

/// GET `path` on `addr`: (status code, body).
async fn get(addr: std::net::SocketAddr, path: &str) -> Option<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).await.ok()?;
    let code = out.get(9..12)?.parse().ok()?;
    Some((code, out.split_once("\r\n\r\n")?.1.to_string()))
}

/// Starts `lifeboat controller` (one replica, no Lease) on a free port and
/// waits for /readyz; the child is killed when dropped.
async fn controller(
    kubeconfig: &Path,
    extra: &[&str],
) -> (tokio::process::Child, std::net::SocketAddr) {
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_lifeboat"))
        .args([
            "controller",
            "--image",
            "lifeboat:test",
            "--leader-election=false",
        ])
        .args([
            "--namespace",
            "nothing-here",
            "--metrics-addr",
            &addr.to_string(),
        ])
        .args(extra)
        .env("KUBECONFIG", kubeconfig)
        .env("LIFEBOAT_LOG", "warn")
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    for _ in 0..300 {
        if get(addr, "/readyz").await.is_some_and(|(c, _)| c == 200) {
            return (child, addr);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the controller did not become ready on {addr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_controller_serves_the_page_only_when_asked() {
    let server = ApiServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    server.kubeconfig(&kubeconfig);

    let (child, addr) = controller(&kubeconfig, &[]).await;
    let (code, body) = get(addr, "/").await.unwrap();
    assert_eq!(code, 404, "{body}");
    assert!(body.contains("--status-page"), "{body}");
    drop(child);

    let (_child, addr) = controller(&kubeconfig, &["--status-page"]).await;
    let (code, body) = get(addr, "/status").await.unwrap();
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("no BackupPolicies found"), "{body}");
}
