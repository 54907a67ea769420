//! The controller at scale: N BackupPolicies in the in-memory API server,
//! all due (created a day ago), then the real `lifeboat controller` binary
//! started as a child process, as after an outage. Measured: the API
//! requests it makes (in all and by verb and resource) until every policy's
//! first run has its Job and says so in its status, the time from its start
//! until every first run's Job exists, and its peak memory (VmHWM of the
//! child; the API server lives in the test process and is not counted).
//!
//! `requests_per_policy_stay_within_budget` (200 policies, any build) is a
//! test: request counts are deterministic enough to assert, time is not.
//! The benchmark prints the figures for 1,000 and 10,000 policies:
//!
//! ```text
//! cargo test --release --test controller_bench -- --ignored --nocapture
//! ```
//!
//! `LIFEBOAT_BENCH_POLICIES=1000,10000` sets the counts; `LIFEBOAT_BENCH_BIN`
//! runs another build of `lifeboat` (an older one, to compare side by side).

#[path = "support/apiserver.rs"]
mod apiserver;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use apiserver::{ApiServer, Store, JOBS, LEASES, POLICIES, RUNS};
use futures::StreamExt;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, PostParams};
use kube::Api;
use serde_json::json;

/// Requests per policy the controller may make to reach its first Job
/// (issue 16): the run, the Job, the two statuses, an event or two.
const BUDGET_PER_POLICY: u64 = 6;

/// Requests the controller makes once, whatever the number of policies:
/// the Lease and each cache's list and watch.
const BUDGET_FIXED: u64 = 40;

/// What one start of the controller against `policies` due policies cost.
struct Figures {
    policies: usize,
    /// Start → the controller holds the Lease.
    leading: Duration,
    /// Start → every first run's Job exists.
    all_jobs: Duration,
    /// Requests until every first run's Job exists and its run's status
    /// names it, the Lease and the watches included.
    requests: u64,
    by: BTreeMap<(String, String), u64>,
    runs: usize,
    peak_kib: u64,
    /// CPU time (user + system) of the controller from its start until
    /// every run names its Job.
    controller_cpu: Duration,
    /// CPU time of this process (the stand-in API server, and the polls)
    /// over the same span.
    server_cpu: Duration,
    /// Reconciles by controller over the same span, from its /metrics.
    reconciles: BTreeMap<String, u64>,
}

impl Figures {
    /// The requests made once per controller start: the Lease, and the
    /// list and watch behind each cache (a list of a resource nobody
    /// watches, such as a Job's pods, is a reconcile's read).
    fn fixed(&self) -> u64 {
        let watched = |r: &String| self.by.contains_key(&("watch".to_string(), r.clone()));
        self.by
            .iter()
            .filter(|((verb, r), _)| {
                verb == "watch" || (verb == "list" && watched(r)) || r == LEASES
            })
            .map(|(_, count)| count)
            .sum()
    }

    /// The requests made for the policies: all but [`Figures::fixed`].
    fn per_policy(&self) -> f64 {
        (self.requests - self.fixed()) as f64 / self.policies as f64
    }
}

/// utime + stime of process `pid` (`self` for this one), from /proc.
fn cpu_time(pid: &str) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command (which may hold spaces) end at its ')'.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // In USER_HZ, which Linux fixes at 100 for /proc whatever the kernel's HZ.
    Some(Duration::from_millis(ticks * 10))
}

fn vm_hwm_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// Polls `check` every `every` until it holds. A poll, not a wait on every
/// change: with thousands of objects a check per change would take a core
/// from the controller being measured.
async fn poll_until(what: &str, timeout: Duration, every: Duration, check: impl Fn() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(every).await;
    }
}

/// True when every run's status names its Job: the run controller has
/// written what it did, so the count of requests covers the whole first step.
fn every_run_names_its_job(store: &Store, n: usize) -> bool {
    store.count_where(RUNS, "bench", |r| r.pointer("/status/job").is_some()) == n
}

/// Creates `n` due policies, starts `bin` as the controller and measures it
/// until every first run has its Job and says so.
/// With `count_reconciles`, the controller serves its metrics on a port
/// picked here (another process may take it before the controller binds
/// it, and then the run fails): only the benchmark, not the budget test.
async fn measure(n: usize, bin: &Path, count_reconciles: bool) -> Figures {
    let server = ApiServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    server.kubeconfig(&kubeconfig);

    // Policies created a day ago with a slot every 30 minutes: each is due
    // at once when the controller starts, as after an outage.
    let api: Api<DynamicObject> = Api::namespaced_with(
        server.client(),
        "bench",
        &ApiResource::from_gvk(&GroupVersionKind::gvk(
            "lifeboat.dev",
            "v1alpha1",
            "BackupPolicy",
        )),
    );
    let created_at = (chrono::Utc::now() - chrono::Duration::days(1))
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    futures::stream::iter(0..n)
        .for_each_concurrent(16, |i| {
            let (api, created_at) = (api.clone(), created_at.clone());
            async move {
                let obj: DynamicObject = serde_json::from_value(json!({
                    "apiVersion": "lifeboat.dev/v1alpha1",
                    "kind": "BackupPolicy",
                    "metadata": {"name": format!("db-{i:05}"), "namespace": "bench", "creationTimestamp": created_at},
                    "spec": {
                        "source": {"postgres": {"connectionSecretRef": {"name": format!("db-{i:05}")}, "databases": ["app"]}},
                        "schedule": {"daily": "*/30 * * * *", "weekly": "0 3 * * 0"},
                        "destinations": [{"name": "primary", "s3": {"region": "us-east-1", "bucket": "backups"}}],
                        "encryption": {"keySecretRef": {"name": "keys"}},
                        "objectives": {"rpo": "1h"}
                    }
                }))
                .unwrap();
                api.create(&PostParams::default(), &obj).await.unwrap();
            }
        })
        .await;
    assert_eq!(server.store.count(POLICIES), n);
    let requests_before = server.store.requests();
    let by_before = server.store.requests_by();

    let metrics_addr = if count_reconciles {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
    } else {
        std::net::SocketAddr::from(([127, 0, 0, 1], 0))
    };
    let server_cpu_before = cpu_time("self").unwrap_or_default();
    let start = Instant::now();
    let mut child = Command::new(bin)
        .args([
            "controller",
            "--image",
            "lifeboat:bench",
            "--metrics-addr",
            &metrics_addr.to_string(),
            "--namespace",
            "bench",
            "--leader-election-namespace",
            "bench",
            "--identity",
            "bench-0",
        ])
        .env("KUBECONFIG", &kubeconfig)
        .env("LIFEBOAT_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    let store = &server.store;
    let tick = Duration::from_millis(20);
    poll_until(
        "the controller to lead",
        Duration::from_secs(60),
        tick,
        || store.count(LEASES) == 1,
    )
    .await;
    let leading = start.elapsed();
    poll_until(
        "every first run's job",
        Duration::from_secs(600),
        tick,
        || store.count(JOBS) >= n,
    )
    .await;
    let all_jobs = start.elapsed();
    // Looking at every run is dearer than counting Jobs: look less often.
    poll_until(
        "every run to name its job",
        Duration::from_secs(120),
        Duration::from_millis(200),
        || every_run_names_its_job(store, n),
    )
    .await;
    let requests = store.requests() - requests_before;
    let mut by = store.requests_by();
    for (key, before) in by_before {
        if let Some(count) = by.get_mut(&key) {
            *count -= before;
        }
    }
    by.retain(|_, count| *count > 0);
    let runs = store.count(RUNS);
    let jobs = store.count(JOBS);
    let peak_kib = vm_hwm_kib(pid).unwrap_or(0);
    let controller_cpu = cpu_time(&pid.to_string()).unwrap_or_default();
    let server_cpu = cpu_time("self").unwrap_or_default() - server_cpu_before;
    let reconciles = if count_reconciles {
        reconcile_counts(metrics_addr)
    } else {
        BTreeMap::new()
    };
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(runs, n, "exactly one first run per policy");
    assert_eq!(jobs, n, "exactly one Job per first run");
    Figures {
        policies: n,
        leading,
        all_jobs,
        requests,
        by,
        runs,
        peak_kib,
        controller_cpu,
        server_cpu,
        reconciles,
    }
}

/// Reconciles so far by controller: the `_count` of each controller's
/// reconcile duration histogram on the controller's /metrics.
fn reconcile_counts(addr: std::net::SocketAddr) -> BTreeMap<String, u64> {
    use std::io::{Read, Write};
    let mut body = String::new();
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(s, "GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n").unwrap();
    s.read_to_string(&mut body).unwrap();
    let prefix = "lifeboat_reconcile_duration_seconds_count{controller=\"";
    body.lines()
        .filter_map(|l| l.strip_prefix(prefix))
        .filter_map(|l| {
            let (name, rest) = l.split_once('"')?;
            let count = rest.rsplit(' ').next()?.parse().ok()?;
            Some((name.to_string(), count))
        })
        .collect()
}

fn print(bin: &Path, f: &Figures) {
    println!("binary: {}", bin.display());
    println!(
        "policies: {}, all due when the controller starts",
        f.policies
    );
    println!(
        "controller start → Lease held: {:.2} s",
        f.leading.as_secs_f64()
    );
    println!(
        "controller start → every first run's Job exists: {:.2} s",
        f.all_jobs.as_secs_f64()
    );
    println!(
        "API requests until every run names its Job: {} ({:.2} per policy and {} once; runs: {})",
        f.requests,
        f.per_policy(),
        f.fixed(),
        f.runs
    );
    for ((verb, resource), count) in &f.by {
        println!("  {verb:>6} {resource}: {count}");
    }
    println!(
        "CPU until every run names its Job: controller {:.2} s, API server (test process) {:.2} s",
        f.controller_cpu.as_secs_f64(),
        f.server_cpu.as_secs_f64()
    );
    for (controller, count) in &f.reconciles {
        println!(
            "  reconciles of {controller}: {count} ({:.2} per policy)",
            *count as f64 / f.policies as f64
        );
    }
    println!(
        "controller peak memory (VmHWM): {:.1} MiB",
        f.peak_kib as f64 / 1024.0
    );
}

/// The request budget, asserted on every build: 200 due policies reach their
/// first Jobs with at most [`BUDGET_PER_POLICY`] requests each, and none of
/// them is a read the controller's caches answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_per_policy_stay_within_budget() {
    let n = 200;
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_lifeboat"));
    let f = measure(n, &bin, false).await;
    print(&bin, &f);
    let count = |verb: &str, resource: &str| {
        f.by.get(&(verb.to_string(), resource.to_string()))
            .copied()
            .unwrap_or(0)
    };
    for (verb, resource) in [("get", POLICIES), ("get", JOBS), ("list", "api/v1/pods")] {
        assert_eq!(
            count(verb, resource),
            0,
            "a reconcile read {resource} from the API ({verb}) instead of the cache"
        );
    }
    assert_eq!(count("create", JOBS), n as u64, "one Job create per policy");
    assert!(
        f.per_policy() <= BUDGET_PER_POLICY as f64,
        "{:.2} requests per policy, more than {BUDGET_PER_POLICY}: {:?}",
        f.per_policy(),
        f.by
    );
    assert!(
        f.fixed() <= BUDGET_FIXED,
        "{} requests to start (Lease, lists, watches), more than {BUDGET_FIXED}: {:?}",
        f.fixed(),
        f.by
    );
}

/// Prints the figures for 1,000 and 10,000 policies (see the module docs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run with --ignored --nocapture"]
async fn policies_to_first_jobs() {
    let counts: Vec<usize> = std::env::var("LIFEBOAT_BENCH_POLICIES")
        .unwrap_or_else(|_| "1000,10000".into())
        .split(',')
        .map(|c| {
            c.trim()
                .parse()
                .expect("LIFEBOAT_BENCH_POLICIES: counts, comma-separated")
        })
        .collect();
    let bin = std::env::var_os("LIFEBOAT_BENCH_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_lifeboat")));
    for n in counts {
        let f = measure(n, &bin, true).await;
        print(&bin, &f);
        println!();
    }
}
