//! Sending a [`Notification`] to its targets: what `lifeboat notify` does in
//! a notify Job. Each target's secrets are files in its mounted Secret
//! directory, read here and never printed; the bodies come from
//! [`message`] (pure), the retry decisions from [`retry`] (pure), the IO is
//! the HTTP client kube already uses (hyper with rustls) and lettre for
//! SMTP. Every target is tried, one failure does not stop the others, and
//! every error names the target, never its URL.

pub mod message;
pub mod retry;

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::wire::{Notification, NotifyKind, NotifyReport, NotifyTarget};
use retry::{GiveUp, RetryPolicy};

/// A failed delivery. Names the target; never carries its URL or a secret.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("target {target}: cannot read {file} of its Secret: {source}")]
    Secret {
        target: String,
        file: String,
        #[source]
        source: std::io::Error,
    },
    #[error("target {target}: the Secret's url is not an http(s) URL")]
    BadUrl { target: String },
    #[error("target {target}: answered HTTP {status}{after}")]
    Status {
        target: String,
        status: u16,
        after: String,
    },
    #[error("target {target}: asked to retry after {seconds} s, longer than lifeboat waits")]
    RetryTooLate { target: String, seconds: u64 },
    #[error("target {target}: no answer within {seconds} s{after}")]
    Timeout {
        target: String,
        seconds: u64,
        after: String,
    },
    #[error("target {target}: {message}{after}")]
    Transport {
        target: String,
        message: String,
        after: String,
    },
    #[error("target {target}: {message}")]
    Email { target: String, message: String },
}

/// How the sender behaves: per-attempt timeout and retries.
#[derive(Clone, Copy, Debug)]
pub struct SendOptions {
    pub timeout: Duration,
    pub retry: RetryPolicy,
}

impl Default for SendOptions {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(10),
            retry: RetryPolicy::default(),
        }
    }
}

/// Sends `n` to every target, one failure not stopping the others; the
/// report says what reached whom.
pub async fn send_all(
    n: &Notification,
    targets: &[NotifyTarget],
    opts: SendOptions,
) -> NotifyReport {
    crate::install_crypto_provider();
    let mut report = NotifyReport::default();
    let sends = targets
        .iter()
        .map(|t| async move { (t, send(n, t, opts).await) });
    for (t, result) in futures::future::join_all(sends).await {
        match result {
            Ok(()) => {
                tracing::info!(target_name = %t.name, event = n.event.as_str(), "sent");
                report.sent.push(t.name.clone());
            }
            Err(e) => {
                tracing::warn!(target_name = %t.name, event = n.event.as_str(), error = %e, "not sent");
                report.failed.push((t.name.clone(), e.to_string()));
            }
        }
    }
    report
}

/// Sends `n` to one target.
pub async fn send(
    n: &Notification,
    t: &NotifyTarget,
    opts: SendOptions,
) -> Result<(), NotifyError> {
    let secret = |dir: &str, file: &str| read_secret(&t.name, dir, file);
    match &t.kind {
        NotifyKind::Slack { dir } => {
            let url = secret(dir, "url")?;
            let body = serde_json::to_vec(&message::slack(n)).expect("JSON");
            post(&t.name, &url, body, vec![], opts).await
        }
        NotifyKind::Webhook { dir } => {
            let url = secret(dir, "url")?;
            let key = secret(dir, "signingKey")?;
            let body = message::webhook_body(n);
            let headers = vec![
                (
                    message::SIGNATURE_HEADER,
                    message::signature(key.as_bytes(), &body),
                ),
                (message::EVENT_HEADER, n.event.as_str().to_string()),
            ];
            post(&t.name, &url, body, headers, opts).await
        }
        NotifyKind::PagerDuty { dir, events_url } => {
            let key = secret(dir, "routingKey")?;
            let url = events_url
                .as_deref()
                .unwrap_or(message::PAGERDUTY_EVENTS_URL);
            let body = serde_json::to_vec(&message::pagerduty(n, &key)).expect("JSON");
            post(&t.name, url, body, vec![], opts).await
        }
        NotifyKind::Heartbeat { dir } => {
            let url = secret(dir, "url")?;
            request(&t.name, http::Method::GET, &url, Vec::new(), vec![], opts).await
        }
        NotifyKind::Email { .. } => email::send(n, t, opts).await,
    }
}

/// A secret file of the target's mounted Secret, trimmed of the newline
/// `kubectl create secret --from-file` keeps.
fn read_secret(target: &str, dir: &str, file: &str) -> Result<String, NotifyError> {
    let path = Path::new(dir).join(file);
    std::fs::read_to_string(&path)
        .map(|s| s.trim().to_string())
        .map_err(|source| NotifyError::Secret {
            target: target.into(),
            file: path.display().to_string(),
            source,
        })
}

async fn post(
    target: &str,
    url: &str,
    body: Vec<u8>,
    mut headers: Vec<(&'static str, String)>,
    opts: SendOptions,
) -> Result<(), NotifyError> {
    headers.push(("content-type", "application/json".into()));
    request(target, http::Method::POST, url, body, headers, opts).await
}

/// One HTTP request, retried on 429, 5xx, timeouts and connection errors.
async fn request(
    target: &str,
    method: http::Method,
    url: &str,
    body: Vec<u8>,
    headers: Vec<(&'static str, String)>,
    opts: SendOptions,
) -> Result<(), NotifyError> {
    let uri: http::Uri = url
        .parse()
        .ok()
        .filter(|u: &http::Uri| matches!(u.scheme_str(), Some("http" | "https")))
        .ok_or_else(|| NotifyError::BadUrl {
            target: target.into(),
        })?;
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_native_roots()
        .map_err(|e| NotifyError::Transport {
            target: target.into(),
            message: format!("no TLS roots: {e}"),
            after: String::new(),
        })?
        .https_or_http()
        .enable_http1()
        .build();
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build(https);
    let body = Bytes::from(body);
    let mut failed = 0;
    loop {
        let mut req = http::Request::builder()
            .method(method.clone())
            .uri(uri.clone())
            .header(
                "user-agent",
                concat!("lifeboat/", env!("CARGO_PKG_VERSION")),
            );
        for (k, v) in &headers {
            req = req.header(*k, v);
        }
        let req = req.body(Full::new(body.clone())).expect("a valid request");
        let attempt = async {
            let res = client.request(req).await?;
            let status = res.status().as_u16();
            let retry_after = res
                .headers()
                .get(http::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| retry::parse_retry_after(v, chrono::Utc::now()));
            // Read the answer so the connection can be reused; its text is not kept.
            let _ = res.into_body().collect().await;
            Ok::<_, hyper_util::client::legacy::Error>((status, retry_after))
        };
        failed += 1;
        let after = |n: u32| {
            if n > 1 {
                format!(" (after {n} attempts)")
            } else {
                String::new()
            }
        };
        let (error, retry_after) = match tokio::time::timeout(opts.timeout, attempt).await {
            Ok(Ok((status, _))) if (200..300).contains(&status) => return Ok(()),
            Ok(Ok((status, retry_after))) => {
                let e = NotifyError::Status {
                    target: target.into(),
                    status,
                    after: after(failed),
                };
                if !retry::retryable(status) {
                    return Err(e);
                }
                (e, retry_after)
            }
            Ok(Err(e)) => (
                NotifyError::Transport {
                    target: target.into(),
                    message: redact(&crate::error_line::error_chain(&e), url),
                    after: after(failed),
                },
                None,
            ),
            Err(_) => (
                NotifyError::Timeout {
                    target: target.into(),
                    seconds: opts.timeout.as_secs(),
                    after: after(failed),
                },
                None,
            ),
        };
        match opts.retry.next_wait(failed, retry_after) {
            Ok(wait) => {
                tracing::info!(target_name = %target, error = %error, wait_ms = wait.as_millis() as u64, "retrying");
                tokio::time::sleep(wait).await;
            }
            Err(GiveUp::Exhausted) => return Err(error),
            Err(GiveUp::TooLong(asked)) => {
                return Err(NotifyError::RetryTooLate {
                    target: target.into(),
                    seconds: asked.as_secs(),
                })
            }
        }
    }
}

/// `text` without `url` or its path (which holds a webhook's token).
fn redact(text: &str, url: &str) -> String {
    let mut out = text.replace(url, "<url>");
    if let Ok(u) = url::Url::parse(url) {
        if u.path().len() > 1 {
            out = out.replace(u.path(), "<path>");
        }
        if let Some(q) = u.query() {
            out = out.replace(q, "<query>");
        }
    }
    out
}

mod email;

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn errors_lose_the_url_and_its_token() {
        let url = "https://hooks.example/services/T0/B0/SECRET?token=abc";
        let text = format!("error sending request for url ({url}): /services/T0/B0/SECRET refused");
        let r = redact(&text, url);
        assert!(!r.contains("SECRET") && !r.contains("abc"), "{r}");
    }
}
