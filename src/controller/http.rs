//! The controller's HTTP endpoints: /metrics (Prometheus text), /healthz
//! (the process serves), /readyz (it has started: leading, or standing by
//! ready to take over) and, when `--status-page` turns it on, the read-only
//! status page at / and /status (404 when off).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use super::metrics::Metrics;
use super::page::StatusPage;

/// What the endpoints read.
#[derive(Clone)]
pub struct Probe {
    pub metrics: Arc<Metrics>,
    pub ready: Arc<AtomicBool>,
    /// The status page; `None` (the default) answers 404.
    pub page: Option<StatusPage>,
}

async fn metrics(State(probe): State<Probe>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        probe.metrics.encode(),
    )
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(probe): State<Probe>) -> (StatusCode, &'static str) {
    if probe.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "starting")
    }
}

async fn page(State(probe): State<Probe>) -> Response {
    let Some(page) = probe.page else {
        return (
            StatusCode::NOT_FOUND,
            "the status page is off (lifeboat controller --status-page)",
        )
            .into_response();
    };
    match page.render().await {
        Ok(html) => ([(header::CACHE_CONTROL, "no-store")], Html(html)).into_response(),
        Err(e) => {
            let error: &(dyn std::error::Error + 'static) = &e;
            tracing::warn!(error, "status page");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("{e}: the Kubernetes API did not answer; see the controller's log"),
            )
                .into_response()
        }
    }
}

pub fn router(probe: Probe) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/status", get(page))
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(probe)
}

/// Serves the endpoints on `addr` until the process ends.
pub async fn serve(addr: SocketAddr, probe: Probe) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let page = if probe.page.is_some() {
        ", the status page at /"
    } else {
        ""
    };
    tracing::info!(%addr, "serving /metrics, /healthz, /readyz{page}");
    axum::serve(listener, router(probe)).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn get(addr: SocketAddr, path: &str) -> String {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn probes_and_metrics_are_served() {
        let probe = Probe {
            metrics: Arc::new(Metrics::default()),
            ready: Arc::new(AtomicBool::new(false)),
            page: None,
        };
        probe.metrics.set_leader(true);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = router(probe.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });

        assert!(get(addr, "/healthz").await.starts_with("HTTP/1.0 200"));
        assert!(get(addr, "/readyz").await.starts_with("HTTP/1.0 503"));
        probe.ready.store(true, Ordering::Relaxed);
        assert!(get(addr, "/readyz").await.starts_with("HTTP/1.0 200"));
        let metrics = get(addr, "/metrics").await;
        assert!(metrics.contains("lifeboat_leader 1"), "{metrics}");
        // Off unless asked for.
        assert!(get(addr, "/").await.starts_with("HTTP/1.0 404"));
        assert!(get(addr, "/status").await.starts_with("HTTP/1.0 404"));
    }
}
