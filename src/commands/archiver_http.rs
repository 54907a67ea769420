//! What `lifeboat wal-stream --http-addr` serves: `/status` (JSON, read by
//! the controller for the policy's status), `/metrics` (Prometheus text, for
//! a PodMonitor) and `/healthz`.

use std::net::SocketAddr;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use tokio::sync::watch;

use crate::wire::ArchiverStatus;

type Status = watch::Receiver<ArchiverStatus>;

async fn status(State(s): State<Status>) -> impl IntoResponse {
    let body = serde_json::to_string(&*s.borrow()).unwrap_or_else(|_| "{}".into());
    ([(header::CONTENT_TYPE, "application/json")], body)
}

/// The archiver's gauges in Prometheus text format.
pub fn metrics_text(s: &ArchiverStatus) -> String {
    let mut out = String::new();
    out.push_str("# HELP lifeboat_wal_archive_lag_seconds Age of the oldest WAL received but not yet in every destination.\n");
    out.push_str("# TYPE lifeboat_wal_archive_lag_seconds gauge\n");
    out.push_str(&format!(
        "lifeboat_wal_archive_lag_seconds {}\n",
        s.lag_seconds
    ));
    out.push_str("# HELP lifeboat_wal_partial_bytes Bytes of the segment being received.\n");
    out.push_str("# TYPE lifeboat_wal_partial_bytes gauge\n");
    out.push_str(&format!("lifeboat_wal_partial_bytes {}\n", s.partial_bytes));
    if let Some(at) = s.last_shipped_at {
        out.push_str("# HELP lifeboat_wal_last_archived_timestamp_seconds When WAL last reached every destination.\n");
        out.push_str("# TYPE lifeboat_wal_last_archived_timestamp_seconds gauge\n");
        out.push_str(&format!(
            "lifeboat_wal_last_archived_timestamp_seconds {}\n",
            at.timestamp_millis() as f64 / 1000.0
        ));
    }
    out
}

async fn metrics(State(s): State<Status>) -> impl IntoResponse {
    let text = metrics_text(&s.borrow());
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
}

async fn healthz() -> &'static str {
    "ok"
}

pub fn router(status_rx: Status) -> Router {
    Router::new()
        .route("/status", get(status))
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .with_state(status_rx)
}

/// Binds `addr` (an error here is the caller's to report: a bad flag) and
/// returns the server to run.
pub async fn bind(
    addr: SocketAddr,
    status_rx: Status,
) -> std::io::Result<impl std::future::Future<Output = std::io::Result<()>>> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, "serving /status, /metrics, /healthz");
    Ok(async move { axum::serve(listener, router(status_rx)).await })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_name_lag_and_last_archived() {
        let s = ArchiverStatus {
            last_segment: Some("000000010000000000000003".into()),
            last_shipped_at: Some("2026-11-26T02:00:00Z".parse().unwrap()),
            lag_seconds: 2.5,
            partial_bytes: 4096,
        };
        let text = metrics_text(&s);
        assert!(
            text.contains("lifeboat_wal_archive_lag_seconds 2.5\n"),
            "{text}"
        );
        assert!(
            text.contains("lifeboat_wal_last_archived_timestamp_seconds 1795658400\n"),
            "{text}"
        );
        assert!(!metrics_text(&ArchiverStatus::default()).contains("last_archived"));
    }
}
