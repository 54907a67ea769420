//! A small in-memory Kubernetes API server for controller tests: a generic
//! store of JSON objects keyed by (resource path, namespace, name), served
//! over loopback HTTP so a real `kube::Client` and kube-runtime's watcher
//! drive it exactly as they would a cluster.
//!
//! It speaks what the controller uses: list (label and field selectors),
//! watch (`?watch=true`, newline-delimited events replayed from a
//! resourceVersion, periodic bookmarks), get, create (409 when the name
//! exists, `generateName`), JSON merge patch of an object or its `/status`
//! (409 on a stale `metadata.resourceVersion`; a no-op patch changes
//! nothing and wakes no watcher), and delete, which only sets
//! `deletionTimestamp` while finalizers remain. No admission, no schema, no
//! garbage collection. Two liberties for tests: `status` given on create is
//! kept, and so is a `creationTimestamp` (to backdate objects).
//!
//! For config backups it also serves discovery (`apiserver_discovery.rs`),
//! paged lists with continue tokens that expire on demand
//! ([`Store::compact_at_continue`]), replace (PUT), server-side dry run
//! (`dryRun=All`: checked, answered, not stored), the immutable fields of
//! Secrets, ConfigMaps and Services, and deleting a namespace deletes what
//! is in it. SubjectAccessReviews are answered from the stored RBAC objects
//! (`apiserver_rbac.rs`). [`Store::strict`] makes it refuse objects in a namespace that
//! does not exist and of a type it does not serve, as a cluster does.
//! A Service created without a `clusterIP` gets one from the service range,
//! 10.96.0.0/16 by default; [`Store::services_on_loopback`] makes that range
//! 127.0.0.1/32 (every Service allocated 127.0.0.1), so a test can answer a
//! Service's cluster IP with a server on loopback, ports telling them apart.

#![allow(dead_code)]

#[path = "apiserver_discovery.rs"]
pub mod discovery;
#[path = "apiserver_rbac.rs"]
pub mod rbac;
#[path = "apiserver_rules.rs"]
mod rules;

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{Method, StatusCode, Uri};
use axum::response::Response;
use axum::Router;
use serde_json::{json, Map, Value};
use tokio::sync::watch;

pub const POLICIES: &str = "apis/lifeboat.dev/v1alpha1/backuppolicies";
pub const RUNS: &str = "apis/lifeboat.dev/v1alpha1/backupruns";
pub const JOBS: &str = "apis/batch/v1/jobs";
pub const PODS: &str = "api/v1/pods";
pub const EVENTS: &str = "apis/events.k8s.io/v1/events";
pub const LEASES: &str = "apis/coordination.k8s.io/v1/leases";

type Key = (String, String, String);

/// A change, as watchers replay it. The object is shared with the store
/// (and with every watcher, which serializes it outside the store's lock).
struct Logged {
    rv: u64,
    resource: String,
    type_: &'static str,
    object: Arc<Value>,
}

#[derive(Default)]
struct Inner {
    rv: u64,
    uid: u64,
    /// Shared, not copied, with the log and the lists and watches serving
    /// them: a write stores one copy of the object.
    objects: BTreeMap<Key, Arc<Value>>,
    log: Vec<Logged>,
    /// (apiVersion, kind) per resource path, for lists and bookmarks.
    kinds: HashMap<String, (String, String)>,
    requests: u64,
    /// Requests by (verb, resource), see [`Store::requests_by`].
    requests_by: BTreeMap<(String, String), u64>,
    /// Refuse objects in missing namespaces and of unserved types.
    strict: bool,
    /// Allocate 127.0.0.1 to every Service created without a cluster IP.
    loopback_services: bool,
    /// At this many continued lists, the store compacts: every token
    /// issued before then is answered 410 Expired.
    compact_at_continue: Option<u64>,
    continues: u64,
    /// Tokens of lists older than this resourceVersion have expired.
    compacted: u64,
    /// Continue tokens answered 410 so far.
    pub expired: u64,
    /// Writes that were dry runs.
    pub dry_runs: u64,
}

/// The store and its change signal.
pub struct Store {
    inner: Mutex<Inner>,
    changed: watch::Sender<u64>,
}

impl Store {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Signalled on every change of the store.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// One object, as stored.
    pub fn get(&self, resource: &str, ns: &str, name: &str) -> Option<Value> {
        self.lock()
            .objects
            .get(&(resource.into(), ns.into(), name.into()))
            .map(|v| Value::clone(v))
    }

    /// The objects of a resource in a namespace (`""`: all namespaces).
    pub fn list(&self, resource: &str, ns: &str) -> Vec<Value> {
        self.lock()
            .objects
            .iter()
            .filter(|((r, n, _), _)| r == resource && (ns.is_empty() || n == ns))
            .map(|(_, v)| Value::clone(v))
            .collect()
    }

    /// How many objects of a resource in a namespace (`""`: all) `check`
    /// holds for, without copying them (a poll of thousands of objects).
    pub fn count_where(&self, resource: &str, ns: &str, check: impl Fn(&Value) -> bool) -> usize {
        let inner = self.lock();
        let from = (resource.to_string(), ns.to_string(), String::new());
        inner
            .objects
            .range(from..)
            .take_while(|((r, n, _), _)| r == resource && (ns.is_empty() || n == ns))
            .filter(|(_, v)| check(v))
            .count()
    }

    pub fn count(&self, resource: &str) -> usize {
        // Keys sort by resource first: a range, not a scan of everything.
        let inner = self.lock();
        let from = (resource.to_string(), String::new(), String::new());
        inner
            .objects
            .range(from..)
            .take_while(|((r, _, _), _)| r == resource)
            .count()
    }

    /// Requests served so far.
    pub fn requests(&self) -> u64 {
        self.lock().requests
    }

    /// Requests served so far by (verb, resource): verbs as in an audit log
    /// (`get`, `list`, `watch`, `create`, `patch`, `update`, `delete`), the
    /// resource as its path (`apis/batch/v1/jobs`, `…/status` for the status
    /// subresource; the raw path when it names no resource). Lets a test say
    /// which requests a controller makes, not only how many.
    pub fn requests_by(&self) -> BTreeMap<(String, String), u64> {
        self.lock().requests_by.clone()
    }

    fn tally(&self, method: &Method, path: &str, q: &HashMap<String, String>) {
        let watching = q.get("watch").is_some_and(|w| w == "true" || w == "1");
        let target = parse_path(path);
        let verb = match (method, target.as_ref().and_then(|t| t.name.as_ref())) {
            (&Method::GET, Some(_)) => "get",
            (&Method::GET, None) if watching => "watch",
            (&Method::GET, None) => "list",
            (&Method::POST, _) => "create",
            (&Method::PATCH, _) => "patch",
            (&Method::PUT, _) => "update",
            (&Method::DELETE, _) => "delete",
            (m, _) => m.as_str(),
        };
        let resource = match target {
            Some(t) if t.status => format!("{}/status", t.resource),
            Some(t) => t.resource,
            None => path.trim_matches('/').to_string(),
        };
        *self
            .lock()
            .requests_by
            .entry((verb.to_lowercase(), resource))
            .or_default() += 1;
    }

    /// As a cluster: objects need their namespace to exist and their type
    /// to be served (a CRD stored, or built in).
    pub fn strict(&self) {
        self.lock().strict = true;
    }

    /// The service range is 127.0.0.1/32: a Service created without a
    /// cluster IP (a config restore strips it) gets 127.0.0.1.
    pub fn services_on_loopback(&self) {
        self.lock().loopback_services = true;
    }

    /// Compacts the history at the `n`-th continued list from now: that list and
    /// every other one holding an older token get 410 Expired, as from a
    /// server whose etcd compacted the list's resourceVersion meanwhile.
    /// Lists started afterwards page normally.
    pub fn compact_at_continue(&self, n: u64) {
        let mut inner = self.lock();
        inner.compact_at_continue = Some(inner.continues + n);
    }

    /// (continue tokens expired, dry-run writes) so far.
    pub fn paging_and_dry_runs(&self) -> (u64, u64) {
        let inner = self.lock();
        (inner.expired, inner.dry_runs)
    }

    /// Stores `obj` under `resource` as a create through the API would,
    /// without HTTP (for tests that fill the server with many objects).
    pub fn insert(&self, resource: &str, obj: Value) -> Result<Value, String> {
        let ns = obj["metadata"]["namespace"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let t = Target {
            resource: resource.to_string(),
            api_version: obj["apiVersion"].as_str().unwrap_or_default().to_string(),
            namespace: ns,
            name: None,
            status: false,
        };
        let mut inner = self.lock();
        create_in(self, &mut inner, &t, obj, false)
            .map(Arc::unwrap_or_clone)
            .map_err(|(_, _, m)| m)
    }

    fn record(&self, inner: &mut Inner, resource: &str, type_: &'static str, object: Arc<Value>) {
        inner.log.push(Logged {
            rv: inner.rv,
            resource: resource.to_string(),
            type_,
            object,
        });
        self.changed.send_replace(inner.rv);
    }
}

/// A running server.
pub struct ApiServer {
    pub addr: SocketAddr,
    pub store: Arc<Store>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl ApiServer {
    pub async fn start() -> Self {
        let (changed, _) = watch::channel(0);
        let store = Arc::new(Store {
            inner: Mutex::new(Inner::default()),
            changed,
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = Router::new().fallback(handle).with_state(store.clone());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self { addr, store, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A client talking to this server over loopback HTTP.
    pub fn client(&self) -> kube::Client {
        lifeboat::controller::install_crypto_provider();
        let mut config = kube::Config::new(self.url().parse().unwrap());
        config.default_namespace = "default".into();
        config.read_timeout = Some(Duration::from_secs(300));
        kube::Client::try_from(config).unwrap()
    }

    /// A kubeconfig file pointing at this server (for the real binary).
    pub fn kubeconfig(&self, path: &std::path::Path) {
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: mem\n  cluster:\n    server: {url}\nusers:\n- name: mem\n  user: {{}}\ncontexts:\n- name: mem\n  context:\n    cluster: mem\n    user: mem\n    namespace: default\ncurrent-context: mem\n",
            url = self.url()
        );
        std::fs::write(path, text).unwrap();
    }

    /// lifeboat's controllers run against this server until the task is
    /// aborted, counting into `metrics`.
    pub fn run_controllers(
        &self,
        settings: lifeboat::controller::Settings,
        metrics: Arc<lifeboat::controller::metrics::Metrics>,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(lifeboat::controller::run_controllers(
            self.client(),
            settings,
            metrics,
            "test".into(),
            futures::future::pending(),
        ))
    }

    /// Creates a BackupPolicy (as JSON, its namespace in its metadata)
    /// through the API, as `kubectl create` would.
    pub async fn create_policy(&self, obj: Value) {
        let ns = obj["metadata"]["namespace"].as_str().unwrap().to_string();
        let api: kube::Api<kube::api::DynamicObject> = kube::Api::namespaced_with(
            self.client(),
            &ns,
            &kube::api::ApiResource::from_gvk(&kube::api::GroupVersionKind::gvk(
                "lifeboat.dev",
                "v1alpha1",
                "BackupPolicy",
            )),
        );
        api.create(
            &kube::api::PostParams::default(),
            &serde_json::from_value(obj).unwrap(),
        )
        .await
        .unwrap();
    }

    /// A JSON merge patch of the BackupPolicy `ns/name` through the API,
    /// as `kubectl patch --type merge` would send it.
    pub async fn patch_policy(&self, ns: &str, name: &str, patch: Value) {
        let policies: kube::Api<lifeboat::api::BackupPolicy> =
            kube::Api::namespaced(self.client(), ns);
        policies
            .patch(
                name,
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(patch),
            )
            .await
            .unwrap();
    }

    /// What the Job controller and kubelet would do when the Job `job` in
    /// `ns` ends: a pod whose container ended with `message` as its
    /// termination message, then the Job's status.
    pub async fn finish_job(&self, ns: &str, job: &str, ok: bool, message: &str) {
        use k8s_openapi::api::batch::v1::Job;
        use k8s_openapi::api::core::v1::Pod;
        use kube::api::{Patch, PatchParams, PostParams};
        let client = self.client();
        let pods: kube::Api<Pod> = kube::Api::namespaced(client.clone(), ns);
        let terminated = if ok {
            json!({"exitCode": 0, "reason": "Completed", "message": message})
        } else {
            json!({"exitCode": 1, "reason": "Error", "message": message})
        };
        let pod: Pod = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": format!("{job}-x1"), "labels": {"job-name": job}},
            "spec": {"containers": [{"name": "lifeboat", "image": "lifeboat"}]},
            "status": {"phase": if ok {"Succeeded"} else {"Failed"},
                       "containerStatuses": [{"name": "lifeboat", "image": "lifeboat", "imageID": "", "ready": false, "restartCount": 0,
                                              "state": {"terminated": terminated}}]}
        }))
        .unwrap();
        pods.create(&PostParams::default(), &pod).await.unwrap();
        let jobs: kube::Api<Job> = kube::Api::namespaced(client, ns);
        let status = if ok {
            json!({"status": {"startTime": "2026-11-21T02:00:05Z", "completionTime": "2026-11-21T02:03:05Z", "succeeded": 1,
                              "conditions": [{"type": "Complete", "status": "True"}]}})
        } else {
            json!({"status": {"startTime": "2026-11-21T02:00:05Z", "failed": 1,
                              "conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "message": "Job has reached the specified backoff limit"}]}})
        };
        jobs.patch_status(job, &PatchParams::default(), &Patch::Merge(status))
            .await
            .unwrap();
    }

    /// Waits until `check` returns `Some`, re-checking on every change of
    /// the store (no fixed sleeps). Panics with `what` after `timeout`.
    pub async fn wait_for<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut check: impl FnMut(&Store) -> Option<T>,
    ) -> T {
        let mut changes = self.store.changed.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            changes.borrow_and_update();
            if let Some(v) = check(&self.store) {
                return v;
            }
            match tokio::time::timeout_at(deadline, changes.changed()).await {
                Ok(_) => {}
                Err(_) => panic!("timed out after {timeout:?} waiting for {what}"),
            }
        }
    }
}

fn reply(code: StatusCode, body: &Value) -> Response {
    Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(Body::from(serde_json::to_vec(body).unwrap()))
        .unwrap()
}

fn status(code: u16, reason: &str, message: String) -> Response {
    let body = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {},
        "status": "Failure", "message": message, "reason": reason, "code": code,
    });
    reply(StatusCode::from_u16(code).unwrap(), &body)
}

/// A request's target.
struct Target {
    /// `api/v1/pods`, `apis/batch/v1/jobs`.
    resource: String,
    api_version: String,
    /// Empty for all namespaces.
    namespace: String,
    name: Option<String>,
    status: bool,
}

fn parse_path(path: &str) -> Option<Target> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (prefix, api_version, rest) = match parts.as_slice() {
        ["api", v, rest @ ..] => (format!("api/{v}"), v.to_string(), rest),
        ["apis", g, v, rest @ ..] => (format!("apis/{g}/{v}"), format!("{g}/{v}"), rest),
        _ => return None,
    };
    let (namespace, plural, name, sub) = match rest {
        ["namespaces", ns, plural] => (ns.to_string(), *plural, None, None),
        ["namespaces", ns, plural, name] => (ns.to_string(), *plural, Some(*name), None),
        ["namespaces", ns, plural, name, sub] => (ns.to_string(), *plural, Some(*name), Some(*sub)),
        [plural] => (String::new(), *plural, None, None),
        [plural, name] => (String::new(), *plural, Some(*name), None),
        _ => return None,
    };
    if sub.is_some_and(|s| s != "status") {
        return None;
    }
    Some(Target {
        resource: format!("{prefix}/{plural}"),
        api_version,
        namespace,
        name: name.map(str::to_string),
        status: sub.is_some(),
    })
}

/// `k=v`, `k==v`, `k!=v`, `k`, `!k`, comma-separated (all must hold): the
/// equality-based selectors lifeboat itself evaluates on restore.
fn labels_match(selector: &str, labels: Option<&Value>) -> bool {
    lifeboat::target::objects::labels_match(selector, labels)
}

fn fields_match(selector: &str, obj: &Value) -> bool {
    selector.split(',').filter(|t| !t.is_empty()).all(|term| {
        let (path, want, equal) = match term.split_once("!=") {
            Some((p, v)) => (p, v, false),
            None => match term.split_once('=') {
                Some((p, v)) => (p, v.trim_start_matches('='), true),
                None => return true,
            },
        };
        let got = path
            .split('.')
            .try_fold(obj, |v, k| v.get(k))
            .and_then(Value::as_str);
        (got == Some(want)) == equal
    })
}

fn selected(q: &HashMap<String, String>, obj: &Value) -> bool {
    q.get("labelSelector")
        .is_none_or(|s| labels_match(s, obj.pointer("/metadata/labels")))
        && q.get("fieldSelector").is_none_or(|s| fields_match(s, obj))
}

fn rv_of(obj: &Value) -> u64 {
    obj.pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

fn set_rv(obj: &mut Value, rv: u64) {
    obj["metadata"]["resourceVersion"] = json!(rv.to_string());
}

/// RFC 7386.
fn merge(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(p) => {
            if !target.is_object() {
                *target = Value::Object(Map::new());
            }
            let t = target.as_object_mut().unwrap();
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        _ => *target = patch.clone(),
    }
}

fn now_rfc3339() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn random_suffix(n: u64) -> String {
    // Deterministic but distinct: base-36 of a counter, padded.
    let alphabet = b"bcdfghjklmnpqrstvwxz2456789";
    let mut x = n.wrapping_mul(2_654_435_761).wrapping_add(12345);
    (0..5)
        .map(|_| {
            let c = alphabet[(x % alphabet.len() as u64) as usize] as char;
            x /= alphabet.len() as u64;
            c
        })
        .collect()
}

type Refusal = (u16, &'static str, String);

fn refuse(r: Refusal) -> Response {
    status(r.0, r.1, r.2)
}

async fn handle(
    State(store): State<Arc<Store>>,
    method: Method,
    uri: Uri,
    Query(q): Query<HashMap<String, String>>,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> Response {
    store.lock().requests += 1;
    store.tally(&method, uri.path(), &q);
    if method == Method::GET {
        if let Some(doc) = discovery::document(&store.lock(), uri.path()) {
            return reply(StatusCode::OK, &doc);
        }
    }
    let Some(t) = parse_path(uri.path()) else {
        return status(404, "NotFound", format!("no route for {}", uri.path()));
    };
    let watching = q.get("watch").is_some_and(|w| w == "true" || w == "1");
    let dry_run = q.get("dryRun").is_some_and(|d| d == "All");
    match (method, &t.name) {
        (Method::GET, None) if watching => watch_stream(store, t, q),
        (Method::GET, None) => list(&store, &t, &q),
        (Method::GET, Some(name)) => match store.get(&t.resource, &t.namespace, name) {
            Some(obj) => reply(StatusCode::OK, &obj),
            None => status(
                404,
                "NotFound",
                format!("{} {name:?} not found", t.resource),
            ),
        },
        (Method::POST, None) if t.resource == rbac::REVIEWS => {
            let Ok(review) = serde_json::from_slice::<Value>(&body) else {
                return status(400, "BadRequest", "the body is not JSON".into());
            };
            let answer = rbac::review(&store.lock(), review);
            reply(StatusCode::CREATED, &answer)
        }
        (Method::POST, None) => {
            let Ok(obj) = serde_json::from_slice::<Value>(&body) else {
                return status(400, "BadRequest", "the body is not JSON".into());
            };
            let created = create_in(&store, &mut store.lock(), &t, obj, dry_run);
            match created {
                Ok(obj) => reply(StatusCode::CREATED, &obj),
                Err(r) => refuse(r),
            }
        }
        (Method::PUT, Some(name)) => {
            let Ok(obj) = serde_json::from_slice::<Value>(&body) else {
                return status(400, "BadRequest", "the body is not JSON".into());
            };
            update(&store, &t, name, Edit::Replace(obj), dry_run)
        }
        (Method::PATCH, Some(name)) => {
            let ct = headers
                .get(axum::http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            if !(ct.starts_with("application/merge-patch+json")
                || ct.starts_with("application/strategic-merge-patch+json"))
            {
                return status(
                    415,
                    "UnsupportedMediaType",
                    format!("only merge patches are supported, not {ct:?}"),
                );
            }
            let Ok(patch) = serde_json::from_slice::<Value>(&body) else {
                return status(400, "BadRequest", "the body is not JSON".into());
            };
            update(&store, &t, name, Edit::Merge(patch), dry_run)
        }
        (Method::DELETE, Some(name)) => delete(&store, &t, name, dry_run),
        (m, _) => status(
            405,
            "MethodNotAllowed",
            format!("{m} is not supported here"),
        ),
    }
}

fn list(store: &Store, t: &Target, q: &HashMap<String, String>) -> Response {
    let mut inner = store.lock();
    let limit: usize = q
        .get("limit")
        .and_then(|l| l.parse().ok())
        .filter(|l| *l > 0)
        .unwrap_or(usize::MAX);
    // A continued list goes on after the last key the previous page served.
    let mut after: Option<(String, String)> = None;
    let mut list_rv = inner.rv;
    if let Some(token) = q.get("continue").filter(|c| !c.is_empty()) {
        let Some((rv, ns, name)) = rules::read_token(token) else {
            return status(400, "BadRequest", "continue: not a valid token".into());
        };
        inner.continues += 1;
        if inner.compact_at_continue == Some(inner.continues) {
            inner.rv += 1;
            inner.compacted = inner.rv;
        }
        if rv < inner.compacted {
            inner.expired += 1;
            return status(
                410,
                "Expired",
                "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.".into(),
            );
        }
        after = Some((ns, name));
        list_rv = rv;
    }
    let mut items: Vec<Arc<Value>> = Vec::new();
    let mut last: Option<(String, String)> = None;
    let mut more = false;
    // Keys sort by resource, namespace, name: start where the page starts.
    let from = match &after {
        Some((n, name)) => (t.resource.clone(), n.clone(), name.clone()),
        None => (t.resource.clone(), t.namespace.clone(), String::new()),
    };
    let in_resource = inner
        .objects
        .range(from..)
        .take_while(|((r, _, _), _)| *r == t.resource);
    for ((_, n, name), v) in in_resource {
        if !(t.namespace.is_empty() || *n == t.namespace) {
            break; // past the namespace's keys
        }
        if after
            .as_ref()
            .is_some_and(|(an, am)| (n.as_str(), name.as_str()) <= (an.as_str(), am.as_str()))
        {
            continue;
        }
        if !selected(q, v) {
            continue;
        }
        if items.len() == limit {
            more = true;
            break;
        }
        items.push(v.clone());
        last = Some((n.clone(), name.clone()));
    }
    let kind = inner
        .kinds
        .get(&t.resource)
        .map(|(_, k)| format!("{k}List"))
        .unwrap_or_else(|| "List".into());
    let mut metadata = json!({"resourceVersion": list_rv.to_string()});
    if let (true, Some((n, name))) = (more, last) {
        metadata["continue"] = json!(rules::token(list_rv, &n, &name));
    }
    drop(inner);
    // Written out item by item: a list of thousands of objects is not
    // copied into one JSON value first.
    let mut body = serde_json::to_vec(&json!({
        "apiVersion": t.api_version,
        "kind": kind,
        "metadata": metadata,
    }))
    .unwrap();
    body.pop(); // the closing brace
    body.extend_from_slice(b",\"items\":[");
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        serde_json::to_writer(&mut body, item.as_ref()).unwrap();
    }
    body.extend_from_slice(b"]}");
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "application/json")
        .body(Body::from(body))
        .unwrap()
}

fn line(v: &Value) -> Bytes {
    let mut s = serde_json::to_string(v).unwrap();
    s.push('\n');
    Bytes::from(s)
}

/// A watch event's line, `{"type":…,"object":…}`, serialized from the
/// stored object without copying it.
fn event_line(type_: &str, object: &Value) -> Bytes {
    let mut out = Vec::with_capacity(1024);
    out.extend_from_slice(b"{\"type\":\"");
    out.extend_from_slice(type_.as_bytes());
    out.extend_from_slice(b"\",\"object\":");
    serde_json::to_writer(&mut out, object).unwrap();
    out.extend_from_slice(b"}\n");
    Bytes::from(out)
}

fn watch_stream(store: Arc<Store>, t: Target, q: HashMap<String, String>) -> Response {
    let from: Option<u64> = q
        .get("resourceVersion")
        .and_then(|s| s.parse().ok())
        .filter(|rv| *rv > 0);
    let timeout = Duration::from_secs(
        q.get("timeoutSeconds")
            .and_then(|s| s.parse().ok())
            .unwrap_or(300),
    );
    let bookmarks = q.get("allowWatchBookmarks").is_some_and(|b| b == "true");
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, Infallible>>(64);
    let mut changes = store.changed.subscribe();
    let resource = kind_of(&store, &t.resource);
    let in_scope = move |resource: &str, obj: &Value| {
        resource == t.resource
            && (t.namespace.is_empty()
                || obj.pointer("/metadata/namespace").and_then(Value::as_str)
                    == Some(t.namespace.as_str()))
            && selected(&q, obj)
    };
    tokio::spawn(async move {
        let deadline = tokio::time::Instant::now() + timeout;
        // Without a resourceVersion, start with the current state.
        let mut cursor = match from {
            Some(rv) => rv,
            None => {
                let (rv, current): (u64, Vec<Arc<Value>>) = {
                    let inner = store.lock();
                    let objs = inner
                        .objects
                        .iter()
                        .filter(|((r, _, _), v)| in_scope(r, v))
                        .map(|(_, v)| v.clone())
                        .collect();
                    (inner.rv, objs)
                };
                for obj in current {
                    if tx.send(Ok(event_line("ADDED", &obj))).await.is_err() {
                        return;
                    }
                }
                rv
            }
        };
        loop {
            changes.borrow_and_update();
            // Picked under the lock, serialized after it.
            let batch: Vec<(&'static str, Arc<Value>)> = {
                let inner = store.lock();
                let start = inner.log.partition_point(|e| e.rv <= cursor);
                let out = inner.log[start..]
                    .iter()
                    .filter(|e| in_scope(&e.resource, &e.object))
                    .map(|e| (e.type_, e.object.clone()))
                    .collect();
                cursor = inner.rv;
                out
            };
            for (type_, object) in batch {
                if tx.send(Ok(event_line(type_, &object))).await.is_err() {
                    return;
                }
            }
            let tick = tokio::time::sleep(Duration::from_secs(5));
            tokio::select! {
                r = changes.changed() => if r.is_err() { return },
                _ = tick => {
                    if bookmarks {
                        let (api_version, kind) = resource.clone();
                        let bm = json!({"type": "BOOKMARK", "object": {"apiVersion": api_version, "kind": kind, "metadata": {"resourceVersion": cursor.to_string()}}});
                        if tx.send(Ok(line(&bm))).await.is_err() { return; }
                    }
                }
                _ = tokio::time::sleep_until(deadline) => return,
            }
        }
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    Response::builder()
        .status(200)
        .header("content-type", "application/json")
        .body(Body::from_stream(stream))
        .unwrap()
}

fn kind_of(store: &Store, resource: &str) -> (String, String) {
    store
        .lock()
        .kinds
        .get(resource)
        .cloned()
        .unwrap_or_else(|| ("v1".into(), "Unknown".into()))
}

fn create_in(
    store: &Store,
    inner: &mut Inner,
    t: &Target,
    mut obj: Value,
    dry_run: bool,
) -> Result<Arc<Value>, Refusal> {
    let meta = obj["metadata"].as_object().cloned().unwrap_or_default();
    let name = match (
        meta.get("name").and_then(Value::as_str),
        meta.get("generateName").and_then(Value::as_str),
    ) {
        (Some(n), _) if !n.is_empty() => n.to_string(),
        (_, Some(g)) => format!("{g}{}", random_suffix(inner.uid + 1)),
        _ => {
            return Err((
                422,
                "Invalid",
                "metadata.name or generateName is required".into(),
            ))
        }
    };
    if inner.strict {
        if discovery::serves(inner, &t.resource).is_none() {
            return Err((
                404,
                "NotFound",
                format!(
                    "the server could not find the requested resource {}",
                    t.resource
                ),
            ));
        }
        let ns_key = (
            "api/v1/namespaces".to_string(),
            String::new(),
            t.namespace.clone(),
        );
        if !t.namespace.is_empty() && !inner.objects.contains_key(&ns_key) {
            return Err((
                404,
                "NotFound",
                format!("namespaces {:?} not found", t.namespace),
            ));
        }
    }
    let key = (t.resource.clone(), t.namespace.clone(), name.clone());
    if inner.objects.contains_key(&key) {
        return Err((
            409,
            "AlreadyExists",
            format!("{} {name:?} already exists", t.resource),
        ));
    }
    let (rv, uid) = (inner.rv + 1, inner.uid + 1);
    let m = &mut obj["metadata"];
    m["name"] = json!(name);
    if !t.namespace.is_empty() {
        m["namespace"] = json!(t.namespace);
    }
    m["uid"] = json!(format!("uid-{uid}"));
    m["generation"] = json!(1);
    if m.get("creationTimestamp").is_none_or(Value::is_null) {
        m["creationTimestamp"] = json!(now_rfc3339());
    }
    if let Some(m) = m.as_object_mut() {
        m.remove("deletionTimestamp");
    }
    set_rv(&mut obj, rv);
    rules::normalize(&t.resource, &mut obj, uid, inner.loopback_services);
    if dry_run {
        inner.dry_runs += 1;
        return Ok(Arc::new(obj));
    }
    inner.rv = rv;
    inner.uid = uid;
    if let (Some(av), Some(k)) = (obj["apiVersion"].as_str(), obj["kind"].as_str()) {
        inner
            .kinds
            .entry(t.resource.clone())
            .or_insert((av.to_string(), k.to_string()));
    }
    let stored = Arc::new(obj);
    inner.objects.insert(key, stored.clone());
    store.record(inner, &t.resource, "ADDED", stored.clone());
    Ok(stored)
}

/// A change to a stored object: a JSON merge patch or a whole replacement.
enum Edit {
    Merge(Value),
    Replace(Value),
}

fn update(store: &Store, t: &Target, name: &str, edit: Edit, dry_run: bool) -> Response {
    let mut inner = store.lock();
    let key = (t.resource.clone(), t.namespace.clone(), name.to_string());
    let Some(current) = inner.objects.get(&key).cloned() else {
        return status(
            404,
            "NotFound",
            format!("{} {name:?} not found", t.resource),
        );
    };
    let (Edit::Merge(body) | Edit::Replace(body)) = &edit;
    if let Some(want) = body
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
    {
        if want
            != current["metadata"]["resourceVersion"]
                .as_str()
                .unwrap_or("")
        {
            return status(
                409,
                "Conflict",
                format!(
                    "{} {name:?} was modified; the object has changed",
                    t.resource
                ),
            );
        }
    }
    let mut next = Value::clone(&current);
    if t.status {
        if let Some(s) = body.get("status") {
            match edit {
                Edit::Merge(_) => merge(&mut next["status"], s),
                Edit::Replace(_) => next["status"] = s.clone(),
            }
        }
    } else {
        let mut p = body.clone();
        if let Some(p) = p.as_object_mut() {
            p.remove("status");
        }
        match edit {
            Edit::Merge(_) => merge(&mut next, &p),
            Edit::Replace(_) => {
                next = p;
                if let Some(s) = current.get("status") {
                    next["status"] = s.clone();
                }
            }
        }
        // Identity and server-owned fields stay.
        for field in [
            "name",
            "namespace",
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "generation",
        ] {
            match current["metadata"].get(field) {
                Some(v) => next["metadata"][field] = v.clone(),
                None => {
                    if let Some(m) = next["metadata"].as_object_mut() {
                        m.remove(field);
                    }
                }
            }
        }
        rules::normalize(&t.resource, &mut next, inner.uid, inner.loopback_services);
        if let Some(why) = rules::immutable(&t.resource, &current, &next) {
            return status(
                422,
                "Invalid",
                format!("{} {name:?} is invalid: {why}", t.resource),
            );
        }
        if next.get("spec") != current.get("spec") {
            let g = current["metadata"]["generation"].as_i64().unwrap_or(1);
            next["metadata"]["generation"] = json!(g + 1);
        }
    }
    set_rv(&mut next, rv_of(&current));
    if next == *current {
        return reply(StatusCode::OK, &current);
    }
    if dry_run {
        inner.dry_runs += 1;
        return reply(StatusCode::OK, &next);
    }
    inner.rv += 1;
    let rv = inner.rv;
    set_rv(&mut next, rv);
    let finished = next.pointer("/metadata/deletionTimestamp").is_some()
        && next
            .pointer("/metadata/finalizers")
            .and_then(Value::as_array)
            .is_none_or(|f| f.is_empty());
    let next = Arc::new(next);
    if finished {
        inner.objects.remove(&key);
        store.record(&mut inner, &t.resource, "DELETED", next.clone());
    } else {
        inner.objects.insert(key, next.clone());
        store.record(&mut inner, &t.resource, "MODIFIED", next.clone());
    }
    drop(inner);
    reply(StatusCode::OK, &next)
}

fn delete(store: &Store, t: &Target, name: &str, dry_run: bool) -> Response {
    let mut inner = store.lock();
    let key = (t.resource.clone(), t.namespace.clone(), name.to_string());
    let Some(mut obj) = inner.objects.get(&key).map(|v| Value::clone(v)) else {
        return status(
            404,
            "NotFound",
            format!("{} {name:?} not found", t.resource),
        );
    };
    if dry_run {
        inner.dry_runs += 1;
        return reply(StatusCode::OK, &obj);
    }
    let held = obj
        .pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .is_some_and(|f| !f.is_empty());
    if held {
        if obj.pointer("/metadata/deletionTimestamp").is_none() {
            inner.rv += 1;
            let rv = inner.rv;
            obj["metadata"]["deletionTimestamp"] = json!(now_rfc3339());
            set_rv(&mut obj, rv);
            let stored = Arc::new(obj.clone());
            inner.objects.insert(key, stored.clone());
            store.record(&mut inner, &t.resource, "MODIFIED", stored);
        }
    } else {
        inner.rv += 1;
        let rv = inner.rv;
        set_rv(&mut obj, rv);
        inner.objects.remove(&key);
        store.record(&mut inner, &t.resource, "DELETED", Arc::new(obj.clone()));
        if t.resource == "api/v1/namespaces" {
            // What the namespace controller does, at once: its contents go too.
            let inside: Vec<Key> = inner
                .objects
                .keys()
                .filter(|(_, ns, _)| ns == name)
                .cloned()
                .collect();
            for k in inside {
                if let Some(gone) = inner.objects.remove(&k) {
                    inner.rv += 1;
                    store.record(&mut inner, &k.0, "DELETED", gone);
                }
            }
        }
    }
    reply(StatusCode::OK, &obj)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors() {
        let labels = json!({"job-name": "a", "tier": "daily"});
        assert!(labels_match("job-name=a", Some(&labels)));
        assert!(labels_match("job-name==a,tier", Some(&labels)));
        assert!(!labels_match("job-name=b", Some(&labels)));
        assert!(labels_match("tier!=weekly,!missing", Some(&labels)));
        let obj = json!({"metadata": {"name": "x"}});
        assert!(fields_match("metadata.name=x", &obj));
        assert!(!fields_match("metadata.name!=x", &obj));
    }
}
