//! A fault-injecting proxy on loopback in front of the test bed's S3 server:
//! requests pass through unchanged unless a scripted fault matches them —
//! an S3 error answer (503 SlowDown, 500 InternalError), a connection reset
//! after some bytes of the response body, or a stalled answer. Each rule
//! fires a given number of times; `fired` counts what was injected, so a
//! test can show that its faults really happened.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use futures::StreamExt;
use http_body_util::BodyExt;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;

#[derive(Clone, Copy, Debug)]
pub enum Fault {
    /// An S3 error answer: status and the service's error code.
    Status(u16, &'static str),
    /// The response's headers and this many body bytes, then a reset.
    ResetAfter(usize),
    /// No answer for this long, then the real one.
    Stall(Duration),
}

struct Rule {
    method: &'static str,
    /// A piece of the request's path and query (the object key, `/wal/`, `?delete`).
    path: String,
    fault: Fault,
    left: usize,
}

#[derive(Clone)]
struct Shared {
    upstream: String,
    client: Client<HttpConnector, Body>,
    rules: Arc<Mutex<Vec<Rule>>>,
    fired: Arc<Mutex<usize>>,
}

impl Shared {
    fn take(&self, method: &str, path: &str) -> Option<Fault> {
        let mut rules = self.rules.lock().unwrap();
        let rule = rules
            .iter_mut()
            .find(|r| r.left > 0 && r.method == method && path.contains(&r.path))?;
        rule.left -= 1;
        *self.fired.lock().unwrap() += 1;
        Some(rule.fault)
    }
}

pub struct FaultyS3 {
    /// The proxy's URL: give it to lifeboat as the S3 endpoint.
    pub endpoint: String,
    shared: Shared,
}

impl FaultyS3 {
    /// Starts the proxy in front of the test bed's S3 server.
    pub fn start() -> FaultyS3 {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let shared = Shared {
            upstream: super::s3_endpoint().trim_end_matches('/').to_string(),
            client: Client::builder(TokioExecutor::new()).build_http(),
            rules: Arc::default(),
            fired: Arc::default(),
        };
        let state = shared.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                let app = axum::Router::new().fallback(proxy).with_state(state);
                axum::serve(listener, app).await.unwrap();
            });
        });
        FaultyS3 { endpoint, shared }
    }

    /// The next `times` requests with this method whose path and query
    /// contain `path` get `fault`.
    pub fn inject(&self, method: &'static str, path: &str, fault: Fault, times: usize) {
        self.shared.rules.lock().unwrap().push(Rule {
            method,
            path: path.to_string(),
            fault,
            left: times,
        });
    }

    /// Faults injected so far.
    pub fn fired(&self) -> usize {
        *self.shared.fired.lock().unwrap()
    }

    /// Drops the rules that have not fired yet.
    pub fn heal(&self) {
        self.shared.rules.lock().unwrap().clear();
    }

    /// A destination URL of `prefix` in `bucket`, reached through the proxy.
    pub fn url(&self, bucket: &str, region: &str, prefix: &str) -> String {
        lifeboat::location::Location::S3(lifeboat::location::S3Location {
            bucket: bucket.into(),
            prefix: prefix.into(),
            region: Some(region.into()),
            endpoint: Some(self.endpoint.parse().unwrap()),
            ..Default::default()
        })
        .to_string()
    }
}

async fn proxy(State(st): State<Shared>, req: Request) -> Response {
    let target = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let fault = st.take(req.method().as_str(), target);
    match fault {
        Some(Fault::Status(status, code)) => {
            return Response::builder()
                .status(status)
                .header("content-type", "application/xml")
                .body(Body::from(format!(
                    "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{code}</Code>\
                     <Message>injected by the test proxy</Message></Error>"
                )))
                .unwrap();
        }
        Some(Fault::Stall(d)) => tokio::time::sleep(d).await,
        _ => {}
    }
    let (mut parts, body) = req.into_parts();
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    parts.uri = format!("{}{path}", st.upstream).parse().unwrap();
    let answer = match st.client.request(Request::from_parts(parts, body)).await {
        Ok(a) => a,
        Err(e) => {
            return Response::builder()
                .status(502)
                .body(Body::from(e.to_string()))
                .unwrap()
        }
    };
    let (parts, body) = answer.into_parts();
    let body = match fault {
        Some(Fault::ResetAfter(n)) => {
            let mut left = n;
            let data = body.into_data_stream().map(move |chunk| {
                let chunk = chunk.map_err(std::io::Error::other)?;
                if left == 0 {
                    return Err(std::io::Error::other("reset by the test proxy"));
                }
                let keep = chunk.len().min(left);
                left -= keep;
                Ok(chunk.slice(..keep))
            });
            Body::from_stream(data)
        }
        _ => Body::new(body),
    };
    Response::from_parts(parts, body)
}
