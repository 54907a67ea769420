//! Smoke tests: HTTP GETs to in-cluster Services, each expecting a status
//! and optionally text in the body, retried until its timeout runs out;
//! or Jobs that must succeed within it (user_jobs.rs runs them).
//! [`run_all`] is the IO of the HTTP tests (the Service's cluster IP and
//! port, one request each); [`evaluate`] turns results into a step's
//! progress.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::rt::TokioExecutor;
use k8s_openapi::api::core::v1::Service;
use kube::{Api, ResourceExt};

use super::{steps, user_jobs, Pass, Progress};
use crate::api::app_restore::{ServiceRef, SmokeTest};
use crate::error_line::error_chain;

/// One request's answer: `None` when it passed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SmokeResult {
    pub name: String,
    pub error: Option<String>,
}

/// How long one request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How much of a body is read to look for the expected text.
const BODY_LIMIT: usize = 256 * 1024;

/// Runs every HTTP test once.
pub async fn run_all(client: &kube::Client, tests: &[SmokeTest]) -> Vec<SmokeResult> {
    let mut out = Vec::new();
    for (t, s) in tests.iter().filter_map(|t| Some((t, t.service.as_ref()?))) {
        let error = run_one(client, t, s).await.err();
        if let Some(e) = &error {
            tracing::info!(test = %t.name, error = %e, "smoke test did not pass");
        }
        out.push(SmokeResult {
            name: t.name.clone(),
            error,
        });
    }
    out
}

async fn run_one(client: &kube::Client, t: &SmokeTest, s: &ServiceRef) -> Result<(), String> {
    let what = format!("Service {}/{}", s.namespace, s.name);
    let services: Api<Service> = Api::namespaced(client.clone(), &s.namespace);
    let service = services
        .get_opt(&s.name)
        .await
        .map_err(|e| format!("reading {what}: {}", error_chain(&e)))?
        .ok_or_else(|| format!("{what} not found"))?;
    let spec = service.spec.unwrap_or_default();
    let ip: IpAddr = spec
        .cluster_ip
        .as_deref()
        .filter(|ip| !ip.is_empty() && *ip != "None")
        .ok_or_else(|| format!("{what} has no cluster IP"))?
        .parse()
        .map_err(|_| format!("{what} has no usable cluster IP"))?;
    let has_port = spec
        .ports
        .unwrap_or_default()
        .iter()
        .any(|p| p.port == i32::from(s.port));
    if !has_port {
        return Err(format!("{what} has no port {}", s.port));
    }
    let uri = http::Uri::builder()
        .scheme("http")
        .authority(SocketAddr::new(ip, s.port).to_string())
        .path_and_query(t.path())
        .build()
        .map_err(|e| format!("path {:?}: {e}", t.path()))?;
    let http = HttpClient::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let (status, body) = tokio::time::timeout(REQUEST_TIMEOUT, async {
        let response = http.get(uri.clone()).await.map_err(|e| error_chain(&e))?;
        let status = response.status().as_u16();
        let body = Limited::new(response.into_body(), BODY_LIMIT)
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        Ok::<_, String>((status, body))
    })
    .await
    .map_err(|_| {
        format!(
            "GET {uri}: no answer within {} s",
            REQUEST_TIMEOUT.as_secs()
        )
    })?
    .map_err(|e| format!("GET {uri}: {e}"))?;
    if status != t.expect_status() {
        return Err(format!(
            "GET {uri} answered {status}, expected {}",
            t.expect_status()
        ));
    }
    if let Some(text) = &t.expect_body {
        if !String::from_utf8_lossy(&body).contains(text.as_str()) {
            return Err(format!("GET {uri}: the body does not contain {text:?}"));
        }
    }
    Ok(())
}

/// The progress of `step` (smokeTests or postCheck) given this reconcile's
/// results: done when all passed; failed when one is still failing after
/// its timeout (counted from the step's start), or its Job failed; else
/// retried (HTTP) or waited for (Job). postCheck sends the HTTP requests
/// again and does not run a Job test twice.
pub(super) fn evaluate(pass: &mut Pass<'_, '_>, step: &str) -> Progress {
    let results = match pass.obs.smoke {
        Some((taken_for, r)) if taken_for == step => Some(r),
        _ => None,
    };
    let elapsed = pass.elapsed(step);
    let app = pass.obs.app;
    let mut waiting = Vec::new();
    let mut passed = Vec::new();
    for t in &app.spec.smoke_tests {
        let error = match (&t.job, results) {
            (Some(_), _) if step != steps::SMOKE_TESTS => continue,
            (Some(job), _) => {
                let name = user_jobs::smoke_name(&app.name_any(), &t.name);
                match user_jobs::run(pass, step, &name, job, t.timeout_seconds) {
                    Progress::Done(_) => None,
                    Progress::Failed(e) => {
                        return Progress::Failed(format!("smoke test {}: {e}", t.name))
                    }
                    Progress::Wait(m) => {
                        let m = m.unwrap_or_default();
                        waiting.push(format!("smoke test {}: {m}", t.name));
                        continue;
                    }
                }
            }
            (None, None) => {
                waiting.push("running the smoke tests".to_string());
                continue;
            }
            (None, Some(r)) => match r.iter().find(|r| r.name == t.name) {
                Some(SmokeResult { error, .. }) => error.clone(),
                None => Some("not run".to_string()),
            },
        };
        match error {
            None => passed.push(t.name.as_str()),
            Some(e) if elapsed >= t.timeout_seconds => {
                return Progress::Failed(format!("smoke test {}: {e}", t.name))
            }
            Some(e) => waiting.push(format!("smoke test {}: {e} (retrying)", t.name)),
        }
    }
    match waiting.first() {
        None => Progress::Done(format!("passed: {}", passed.join(", "))),
        Some(first) => Progress::Wait(Some(first.clone())),
    }
}
