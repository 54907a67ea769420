//! A recording HTTP server on loopback that stands in for Slack, PagerDuty,
//! generic webhooks and heartbeat monitors: it keeps every request (method,
//! path, headers, body, the status it answered) and answers from a script
//! per path — a status (with Retry-After), or no answer at all (a hang) —
//! then 200 once the script is used up.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

/// One scripted answer.
#[derive(Clone, Debug)]
pub enum Answer {
    Status(u16),
    /// 429 with `Retry-After: <seconds>`.
    TooMany(u64),
    /// Holds the request without answering (for a minute).
    Hang,
}

#[derive(Clone, Debug)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub headers: BTreeMap<String, String>,
    pub body: Vec<u8>,
    /// The status answered; 0 for a hang.
    pub answered: u16,
    pub at: Instant,
}

impl Request {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }
}

#[derive(Default)]
struct State {
    requests: Vec<Request>,
    script: HashMap<String, VecDeque<Answer>>,
}

pub struct Recorder {
    pub url: String,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Recorder {
    pub async fn start() -> Recorder {
        let state = Arc::new(Mutex::new(State::default()));
        let shared = state.clone();
        let app = axum::Router::new().fallback(
            move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                let state = shared.clone();
                async move { answer(state, method, uri, headers, body).await }
            },
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Recorder { url, state, task }
    }

    /// Answers the next requests to `path` with `answers`, in order.
    pub fn script(&self, path: &str, answers: &[Answer]) {
        self.state
            .lock()
            .unwrap()
            .script
            .insert(path.into(), answers.iter().cloned().collect());
    }

    /// Every request to `path` so far.
    pub fn requests(&self, path: &str) -> Vec<Request> {
        let s = self.state.lock().unwrap();
        s.requests
            .iter()
            .filter(|r| r.path == path)
            .cloned()
            .collect()
    }

    /// Requests to `path` answered with success: what was delivered.
    pub fn delivered(&self, path: &str) -> Vec<Request> {
        self.requests(path)
            .into_iter()
            .filter(|r| (200..300).contains(&r.answered))
            .collect()
    }
}

async fn answer(
    state: Arc<Mutex<State>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_string();
    let next = state
        .lock()
        .unwrap()
        .script
        .get_mut(&path)
        .and_then(|q| q.pop_front());
    let (status, retry_after) = match next {
        Some(Answer::Hang) => (0, None),
        Some(Answer::Status(s)) => (s, None),
        Some(Answer::TooMany(secs)) => (429, Some(secs)),
        None => (if method == Method::POST { 202 } else { 200 }, None),
    };
    state.lock().unwrap().requests.push(Request {
        method: method.to_string(),
        path,
        headers: headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or_default().to_string()))
            .collect(),
        body: body.to_vec(),
        answered: status,
        at: Instant::now(),
    });
    if status == 0 {
        tokio::time::sleep(Duration::from_secs(60)).await;
        return StatusCode::OK.into_response();
    }
    let mut res = StatusCode::from_u16(status).unwrap().into_response();
    if let Some(secs) = retry_after {
        res.headers_mut()
            .insert("retry-after", secs.to_string().parse().unwrap());
    }
    res
}
