//! `lifeboat notify`, the command the notify Jobs run, against real
//! servers: a recorder on loopback stands in for Slack, PagerDuty, a
//! webhook and a heartbeat monitor (with scripted 429, 500 and hanging
//! answers), and aiosmtpd receives the mail over STARTTLS with a login.
//! Secrets are files in each target's directory; none may show in the
//! output.

#[path = "support/recorder.rs"]
mod recorder;
mod support;

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use recorder::{Answer, Recorder};
use serde_json::{json, Value};
use support::{bin, cluster::free_port, smtp};

const TOKEN: &str = "T000-B000-hooktoken-5ecret";
const SIGNING_KEY: &str = "whsec-9f8e7d-signing";
const ROUTING_KEY: &str = "R0UT1NG-pd-key-3c2b1a";
const SMTP_PASSWORD: &str = "smtp-pw-71c0ffee";

fn event(kind: &str) -> Value {
    json!({"event": kind, "namespace": "shop", "policy": "orders", "subject": "orders-daily-1",
           "summary": "run orders-daily-1 failed: pg_dump: connection refused",
           "dedupKey": "lifeboat/shop/orders/backup", "at": "2026-11-21T02:03:00Z"})
}

/// A target directory holding `files` (a mounted Secret).
fn secret_dir(root: &Path, name: &str, files: &[(&str, &str)]) -> String {
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    for (f, v) in files {
        // As `kubectl create secret --from-file` keeps it: a trailing newline.
        std::fs::write(dir.join(f), format!("{v}\n")).unwrap();
    }
    dir.to_str().unwrap().to_string()
}

fn target(name: &str, kind: Value) -> String {
    json!({"name": name, "kind": kind}).to_string()
}

async fn notify(event: &Value, targets: &[String], extra: &[&str], report: &Path) -> Output {
    let mut c = tokio::process::Command::new(bin());
    c.args(["notify", "--event", &event.to_string(), "--report-file"])
        .arg(report)
        .args(["--timeout", "2", "--backoff-ms", "200"])
        .args(extra);
    for t in targets {
        c.args(["--target", t]);
    }
    c.output().await.expect("lifeboat runs")
}

fn report(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn assert_no_secret(text: &str) {
    for s in [TOKEN, SIGNING_KEY, ROUTING_KEY, SMTP_PASSWORD] {
        assert!(!text.contains(s), "a secret in the output: {text}");
    }
}

/// HMAC-SHA256 of `body` as the header carries it, computed here.
fn expected_signature(body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, SIGNING_KEY.as_bytes());
    format!(
        "sha256={}",
        hex::encode(ring::hmac::sign(&key, body).as_ref())
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_http_target_is_reached_through_429_500_and_a_hang() {
    let rec = Recorder::start().await;
    let dir = tempfile::tempdir().unwrap();
    let hook = format!("/services/{TOKEN}");
    rec.script(&hook, &[Answer::TooMany(1)]);
    rec.script("/webhook", &[Answer::Status(500), Answer::Status(503)]);
    rec.script("/pd", &[Answer::Hang]);
    let targets = [
        target(
            "ops-slack",
            json!({"type": "slack", "dir": secret_dir(dir.path(), "slack", &[("url", &format!("{}{hook}", rec.url))])}),
        ),
        target(
            "audit",
            json!({"type": "webhook", "dir": secret_dir(dir.path(), "webhook",
                &[("url", &format!("{}/webhook", rec.url)), ("signingKey", SIGNING_KEY)])}),
        ),
        target(
            "pager",
            json!({"type": "pagerDuty", "dir": secret_dir(dir.path(), "pd", &[("routingKey", ROUTING_KEY)]),
                   "eventsUrl": format!("{}/pd", rec.url)}),
        ),
        target(
            "deadman",
            json!({"type": "heartbeat", "dir": secret_dir(dir.path(), "hb", &[("url", &format!("{}/ping/{TOKEN}", rec.url))])}),
        ),
    ];
    let report_file = dir.path().join("report.json");
    let out = notify(&event("runFailed"), &targets, &[], &report_file).await;
    assert!(out.status.success(), "{}", text(&out));
    assert_no_secret(&text(&out));
    let r = report(&report_file);
    assert_eq!(r["failed"], json!([]), "{r}");
    assert_eq!(r["sent"].as_array().unwrap().len(), 4, "{r}");

    // Slack: a 429, then the retry no sooner than its Retry-After.
    let slack = rec.requests(&hook);
    assert_eq!(
        slack.iter().map(|r| r.answered).collect::<Vec<_>>(),
        [429, 202]
    );
    assert!(slack[1].at - slack[0].at >= Duration::from_secs(1));
    let text_field = slack[1].json()["text"].as_str().unwrap().to_string();
    assert!(
        text_field.contains("shop/orders: backup failed"),
        "{text_field}"
    );

    // The webhook: two 5xx, then delivered; every attempt signed, and the
    // signature is the body's HMAC under the key.
    let hooks = rec.requests("/webhook");
    assert_eq!(
        hooks.iter().map(|r| r.answered).collect::<Vec<_>>(),
        [500, 503, 202]
    );
    let delivered = &hooks[2];
    assert_eq!(
        delivered.headers["x-lifeboat-signature"],
        expected_signature(&delivered.body)
    );
    assert_ne!(
        delivered.headers["x-lifeboat-signature"],
        expected_signature(b"another body")
    );
    assert_eq!(delivered.json()["event"], "runFailed");
    assert_eq!(delivered.headers["x-lifeboat-event"], "runFailed");

    // PagerDuty: the first attempt hangs past the timeout, the retry lands.
    let pd = rec.requests("/pd");
    assert_eq!(pd.iter().map(|r| r.answered).collect::<Vec<_>>(), [0, 202]);
    assert!(pd[1].at - pd[0].at >= Duration::from_secs(2));
    let trigger = pd[1].json();
    assert_eq!(trigger["routing_key"], ROUTING_KEY);
    assert_eq!(trigger["event_action"], "trigger");
    assert_eq!(trigger["dedup_key"], "lifeboat/shop/orders/backup");

    // The heartbeat is a GET of its URL.
    let hb = rec.delivered(&format!("/ping/{TOKEN}"));
    assert_eq!(hb.len(), 1);
    assert_eq!(hb[0].method, "GET");

    // The recovery resolves the same PagerDuty incident.
    let out = notify(&event("recovered"), &targets[2..3], &[], &report_file).await;
    assert!(out.status.success(), "{}", text(&out));
    let pd = rec.delivered("/pd");
    assert_eq!(pd.len(), 2);
    assert_eq!(pd[1].json()["event_action"], "resolve");
    assert_eq!(pd[1].json()["dedup_key"], trigger["dedup_key"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_target_is_named_never_its_url_and_the_others_still_get_it() {
    let rec = Recorder::start().await;
    let dir = tempfile::tempdir().unwrap();
    let hook = format!("/services/{TOKEN}");
    rec.script(
        &hook,
        &[
            Answer::Status(500),
            Answer::Status(502),
            Answer::Status(500),
        ],
    );
    rec.script("/gone", &[Answer::Status(404)]);
    let targets = [
        target(
            "ops-slack",
            json!({"type": "slack", "dir": secret_dir(dir.path(), "slack", &[("url", &format!("{}{hook}", rec.url))])}),
        ),
        target(
            "old-hook",
            json!({"type": "webhook", "dir": secret_dir(dir.path(), "webhook",
                &[("url", &format!("{}/gone", rec.url)), ("signingKey", SIGNING_KEY)])}),
        ),
        target(
            "nowhere",
            json!({"type": "slack", "dir": secret_dir(dir.path(), "closed",
                &[("url", &format!("http://127.0.0.1:{}/services/{TOKEN}", free_port()))])}),
        ),
        target(
            "audit",
            json!({"type": "webhook", "dir": secret_dir(dir.path(), "ok",
                &[("url", &format!("{}/ok", rec.url)), ("signingKey", SIGNING_KEY)])}),
        ),
    ];
    let report_file = dir.path().join("report.json");
    let out = notify(
        &event("runFailed"),
        &targets,
        &["--attempts", "3"],
        &report_file,
    )
    .await;
    // Every target is tried; one not reached makes the exit 1.
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let all = text(&out);
    assert_no_secret(&all);
    assert!(
        !all.contains(&rec.url) && !all.contains("/services/"),
        "{all}"
    );
    let r = report(&report_file);
    assert_eq!(r["sent"], json!(["audit"]));
    let failed: Vec<(String, String)> = serde_json::from_value(r["failed"].clone()).unwrap();
    let failed: std::collections::BTreeMap<_, _> = failed.into_iter().collect();
    assert_eq!(
        failed["ops-slack"],
        "target ops-slack: answered HTTP 500 (after 3 attempts)"
    );
    // A 404 is final: one attempt.
    assert_eq!(failed["old-hook"], "target old-hook: answered HTTP 404");
    assert_eq!(rec.requests("/gone").len(), 1);
    assert!(
        failed["nowhere"].starts_with("target nowhere: "),
        "{failed:?}"
    );
    assert_eq!(rec.requests(&hook).len(), 3);
    assert_eq!(rec.delivered("/ok").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_goes_over_starttls_with_a_login() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let Some(_smtp) = smtp::start(dir.path(), port, "alerts", SMTP_PASSWORD) else {
        return;
    };
    let ca = std::fs::read_to_string(dir.path().join("ca.pem")).unwrap();
    let mail_target = |password: &str| {
        let secrets = secret_dir(
            dir.path(),
            &format!("smtp-{password}"),
            &[
                ("username", "alerts"),
                ("password", password),
                ("ca.pem", &ca),
            ],
        );
        target(
            "oncall-mail",
            json!({"type": "email", "host": "localhost", "port": port, "from": "lifeboat@example.org",
                   "to": ["oncall@example.org", "dba@example.org"], "dir": secrets}),
        )
    };
    let report_file = dir.path().join("report.json");
    let out = notify(
        &event("runFailed"),
        &[mail_target(SMTP_PASSWORD)],
        &[],
        &report_file,
    )
    .await;
    assert!(out.status.success(), "{}", text(&out));
    assert_no_secret(&text(&out));
    let r = report(&report_file);
    assert_eq!(r["sent"], json!(["oncall-mail"]), "{r}");
    let mail = std::fs::read_to_string(dir.path().join("mail/1.eml")).unwrap();
    assert!(
        mail.contains("X-Rcpt: oncall@example.org,dba@example.org"),
        "{mail}"
    );
    assert!(mail.contains("X-Tls: True"), "{mail}");
    assert!(
        mail.contains("Subject: [lifeboat] shop/orders: backup failed"),
        "{mail}"
    );
    assert!(mail.contains("pg_dump: connection refused"), "{mail}");

    // A wrong password is refused by the server: named, not shown.
    let out = notify(
        &event("runFailed"),
        &[mail_target("wrong-pw-0000")],
        &[],
        &report_file,
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(!text(&out).contains("wrong-pw-0000"), "{}", text(&out));
    let r = report(&report_file);
    assert_eq!(r["sent"], json!([]));
    assert!(
        r["failed"][0][1]
            .as_str()
            .unwrap()
            .starts_with("target oncall-mail: "),
        "{r}"
    );
    assert!(!dir.path().join("mail/2.eml").exists());
}
