//! The operator: `lifeboat controller`.
//!
//! Two kube-runtime controllers share one [`Context`]:
//!
//! - BackupPolicy ([`policy`]): schedules BackupRuns, applies retention by
//!   deleting expired runs, writes the policy's status.
//! - BackupRun ([`run`]): creates the run's Job, follows it to Succeeded or
//!   Failed, and on deletion prunes the backup through a second Job before
//!   releasing the `lifeboat.dev/prune` finalizer.
//! - RestoreRequest ([`restore`]): a plan Job, then a restore Job that also
//!   runs the checks; status with steps and the measured RTO. The policy
//!   controller creates drill RestoreRequests on `verification.restoreDrill`.
//! - ApplicationRestore ([`app_restore`]): several policies of one
//!   application to one instant, as ordered steps (plan, pre-check,
//!   maintenance, configuration, databases, files, verification, end of
//!   maintenance, smoke tests, post-check), each part a RestoreRequest.
//! - ApplicationDrill ([`app_drill`]): an ApplicationRestore into scratch
//!   space on a schedule, its scratch namespaces deleted after.
//!
//! Each reconcile is observe (IO) → decide (a pure function of the objects
//! and the clock) → apply (IO), written as named steps with one [`Error`]
//! variant per step; the reads and writes they share are in `apply`, the
//! caches they read instead of the API in [`cache`], what a Job says in
//! [`job_status`]. Only the leader of a Lease ([`leader`])
//! reconciles; [`metrics`] and [`http`] serve /metrics, /healthz, /readyz
//! and, when asked, the status page ([`page`]);
//! `forget` removes the series of deleted policies. Each resource is
//! watched once ([`triggers`]).

pub mod access;
pub mod app_drill;
pub mod app_restore;
mod apply;
pub mod archiver;
mod archiver_sync;
pub mod cache;
mod cached_job;
pub mod clock;
pub mod drill;
pub mod drill_config;
pub mod events;
mod forget;
pub mod http;
pub mod job_status;
pub mod jobs;
pub mod leader;
pub mod metrics;
pub mod notify;
mod overlay;
pub mod page;
mod patch;
mod pin;
pub use patch::merge_patch;
pub mod policy;
pub mod restore;
pub mod restore_access;
pub mod restore_jobs;
pub mod run;
pub mod runs_by_policy;
#[cfg(test)]
mod test_support;
mod triggers;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher;
use kube::{Api, Client, Resource};

use crate::api::{ApplicationDrill, ApplicationRestore, BackupPolicy, BackupRun, RestoreRequest};
pub use clock::Clock;
use jobs::{JobConfig, JobError};
use metrics::Metrics;

/// Name the controller reports events under.
pub const CONTROLLER_NAME: &str = "lifeboat-controller";
/// Label on scheduled runs naming their policy (hand-made runs may lack it;
/// the controller goes by `spec.policyRef`).
pub const POLICY_LABEL: &str = "lifeboat.dev/policy";
/// Label on scheduled runs naming their tier.
pub const TIER_LABEL: &str = "lifeboat.dev/tier";

/// A failed step of a reconcile. Each reconcile reads as named steps:
/// dereference (read what the object refers to) → validate and build (pure:
/// a bad spec is no error but a status condition that waits for the spec to
/// change) → apply (create, change or delete what the decision asks for) →
/// update status. One variant per step that can fail; all are transient and
/// retried after [`Settings::retry`]. The message names the step and the
/// object; the cause is the error's source, printed once by whoever prints
/// the chain ([`error_policy`] logs it as `error.sources`).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0} has no namespace")]
    MissingNamespace(String),
    /// The watch behind a cache ended (the controller is stopping).
    #[error("the {0} cache stopped")]
    CacheStopped(&'static str),
    /// Reading an object the reconciled one refers to: its policy, Job, pods.
    #[error("reading {what}")]
    Dereference {
        what: String,
        #[source]
        source: kube::Error,
    },
    /// Building an object from a spec that validated.
    #[error("building {what}")]
    Build {
        what: String,
        #[source]
        source: JobError,
    },
    /// Creating, changing or deleting an object the decision asks for.
    #[error("{what}")]
    Apply {
        what: String,
        #[source]
        source: kube::Error,
    },
    /// Writing the reconciled object's status.
    #[error("writing the status of {what}")]
    UpdateStatus {
        what: String,
        #[source]
        source: kube::Error,
    },
}

impl Error {
    /// Short name of the failed step, the `error` label of the metric.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::MissingNamespace(..) => "missing_namespace",
            Error::CacheStopped(..) => "cache_stopped",
            Error::Dereference { .. } => "dereference",
            Error::Build { .. } => "build",
            Error::Apply { .. } => "apply",
            Error::UpdateStatus { .. } => "update_status",
        }
    }

    /// For `map_err`: reading `what` failed.
    pub(crate) fn dereference(what: impl Into<String>) -> impl FnOnce(kube::Error) -> Self {
        let what = what.into();
        move |source| Error::Dereference { what, source }
    }

    /// For `map_err`: building `what` failed.
    pub(crate) fn build(what: impl Into<String>) -> impl FnOnce(JobError) -> Self {
        let what = what.into();
        move |source| Error::Build { what, source }
    }

    /// For `map_err`: `what` ("creating job x") failed.
    pub(crate) fn apply(what: impl Into<String>) -> impl FnOnce(kube::Error) -> Self {
        let what = what.into();
        move |source| Error::Apply { what, source }
    }

    /// For `map_err`: writing the status of `what` failed.
    pub(crate) fn update_status(what: impl Into<String>) -> impl FnOnce(kube::Error) -> Self {
        let what = what.into();
        move |source| Error::UpdateStatus { what, source }
    }
}

/// True for the API's "already exists" answer: a deterministic name that a
/// previous reconcile (or another replica) already created.
pub(crate) fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}

/// True for the API's "not found" answer.
pub(crate) fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

/// When the API server created `obj`.
pub(crate) fn created_at<K: Resource>(obj: &K) -> Option<chrono::DateTime<chrono::Utc>> {
    obj.meta()
        .creation_timestamp
        .as_ref()
        .map(crate::api::conditions::from_time)
}

/// An event a decision asks to publish on the reconciled object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    pub warning: bool,
    pub reason: String,
    pub action: &'static str,
    pub message: String,
}

impl Note {
    pub fn normal(reason: &str, action: &'static str, message: impl Into<String>) -> Self {
        Self {
            warning: false,
            reason: reason.to_string(),
            action,
            message: message.into(),
        }
    }
    pub fn warning(reason: &str, action: &'static str, message: impl Into<String>) -> Self {
        Self {
            warning: true,
            ..Self::normal(reason, action, message)
        }
    }
}

/// How the controller runs, apart from the client.
#[derive(Clone)]
pub struct Settings {
    pub jobs: JobConfig,
    /// Watch one namespace; `None` = all.
    pub namespace: Option<String>,
    /// Longest wait between two reconciles of an object, so time-based
    /// decisions (due slots, RPO) are re-checked even when nothing changes.
    pub resync: Duration,
    /// Wait before retrying a reconcile that failed.
    pub retry: Duration,
    /// Reconciles in flight per controller. Bounded so that a start with
    /// thousands of due policies does not open a connection per policy.
    pub concurrency: u16,
    pub clock: Clock,
    /// Port of the WAL archivers' `/status` (tests run them elsewhere).
    pub archiver_port: u16,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            jobs: JobConfig::default(),
            namespace: None,
            resync: Duration::from_secs(300),
            retry: Duration::from_secs(15),
            concurrency: std::env::var("LIFEBOAT_CONCURRENCY")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(16),
            clock: Clock::system(),
            archiver_port: archiver::STATUS_PORT,
        }
    }
}

/// What every reconcile gets.
pub struct Context {
    pub client: Client,
    pub recorder: events::Recorder,
    pub metrics: Arc<Metrics>,
    pub settings: Settings,
    /// Every BackupRun, kept by the run controller's reflector; the policy
    /// controller reads a policy's runs from here instead of listing them,
    /// found by name through `runs_by_policy`.
    pub runs: Store<BackupRun>,
    pub runs_by_policy: runs_by_policy::RunsByPolicy,
    /// Every RestoreRequest, kept by the restore controller's reflector; the
    /// policy controller reads its drills from here.
    pub restores: Store<RestoreRequest>,
    /// Every BackupPolicy, kept by the policy controller's reflector; runs
    /// and restores read their policy from here ([`cache::policy`]).
    pub policies: Store<BackupPolicy>,
    pub policies_ready: cache::Ready,
    /// Every Job (metadata and status), kept by the reflector that triggers
    /// the run controller ([`cache::jobs`]).
    pub jobs: Store<cached_job::CachedJob>,
    pub jobs_ready: cache::Ready,
    /// Jobs created that [`Context::jobs`] may not show yet.
    pub created_jobs: Arc<overlay::CreatedJobs>,
    /// Runs and policies as this controller last wrote them, for a reconcile
    /// that the cache serves the version before that write.
    /// The watches take the echo of such a write as no trigger.
    pub written_runs: Arc<overlay::Written<BackupRun>>,
    pub written_policies: Arc<overlay::Written<BackupPolicy>>,
}

impl Context {
    pub(crate) fn api<K>(&self, namespace: &str) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
    {
        Api::namespaced(self.client.clone(), namespace)
    }

    /// Publishes events; a failure to publish is logged, not fatal: events
    /// are for people, the status carries the state.
    pub(crate) async fn publish<K>(&self, obj: &K, notes: &[Note])
    where
        K: Resource<DynamicType = ()>,
    {
        let reference = obj.object_ref(&());
        for note in notes {
            if let Err(e) = self.recorder.publish(note, &reference).await {
                tracing::warn!(error = %e, reason = %note.reason, "could not publish event");
            }
        }
    }
}

/// Requeue after a failed reconcile: transient errors retry after a pause,
/// never in a hot loop.
pub fn error_policy<K>(_obj: Arc<K>, error: &Error, ctx: Arc<Context>) -> Action {
    let error: &(dyn std::error::Error + 'static) = error;
    tracing::warn!(error, "reconcile failed");
    Action::requeue(ctx.settings.retry)
}

fn api_for<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Runs both controllers until `shutdown` resolves. The caller decides when
/// (leader election, a test).
pub async fn run_controllers(
    client: Client,
    settings: Settings,
    metrics: Arc<Metrics>,
    identity: String,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let ns = settings.namespace.clone();
    let runs: Api<BackupRun> = api_for(&client, ns.as_deref());
    let policies: Api<BackupPolicy> = api_for(&client, ns.as_deref());
    let jobs: Api<cached_job::CachedJob> = api_for(&client, ns.as_deref());
    let restores: Api<RestoreRequest> = api_for(&client, ns.as_deref());

    let config = kube::runtime::controller::Config::default().concurrency(settings.concurrency);
    // Each resource is watched once; a controller woken by another's
    // resource takes its triggers from that watch ([`triggers`]).
    let (wake_policies, policy_triggers) = triggers::relay::<BackupPolicy>();
    let (wake_restores, restore_triggers) = triggers::relay::<RestoreRequest>();
    let (wake_drills, drill_triggers) = triggers::relay::<ApplicationDrill>();
    // The run controller's Job triggers come from the Job cache's reflector:
    // a Job event reaches the cache before the reconcile it triggers. So do
    // the restore controller's (a Job's owning RestoreRequest).
    let (job_cache, job_writer) = reflector::store();
    let created_jobs = Arc::new(overlay::CreatedJobs::default());
    let (job_events, jobs_ready) = cache::jobs(
        jobs,
        watcher::Config::default(),
        job_writer,
        created_jobs.clone(),
    );
    let job_events = job_events.inspect(move |job| {
        if let Ok(job) = job {
            wake_restores.wake_owners(job);
        }
    });
    let (run_cache, run_writer) = reflector::store();
    let runs_by_policy = runs_by_policy::RunsByPolicy::default();
    let written_runs = Arc::new(overlay::Written::default());
    let (run_events, _runs_ready) = runs_by_policy::watch(
        runs,
        watcher::Config::default(),
        run_writer,
        runs_by_policy.clone(),
        wake_policies.clone(),
        written_runs.clone(),
    );
    let run_controller = Controller::for_stream(run_events, run_cache)
        .owns_stream(job_events)
        .with_config(config.clone());
    let (restore_cache, restore_writer) = reflector::store();
    let restore_events = triggers::restores(restores, restore_writer, wake_policies);
    let restore_controller = Controller::for_stream(restore_events, restore_cache)
        .reconcile_on(restore_triggers)
        .with_config(config.clone());
    // Not woken by its Jobs and parts (a third watch of every Job and
    // RestoreRequest): a running one looks again every second.
    let apps: Api<ApplicationRestore> = api_for(&client, ns.as_deref());
    let (app_cache, app_writer) = reflector::store();
    let app_events = triggers::apps(apps, app_writer, wake_drills);
    let app_controller = Controller::for_stream(app_events, app_cache).with_config(config.clone());
    let drills: Api<ApplicationDrill> = api_for(&client, ns.as_deref());
    let drill_controller = Controller::new(drills, watcher::Config::default())
        .reconcile_on(drill_triggers)
        .with_config(config.clone());
    let recorder = events::Recorder::new(
        client.clone(),
        events::Reporter {
            controller: CONTROLLER_NAME.into(),
            instance: identity,
        },
    );
    let (policy_cache, policy_writer) = reflector::store();
    let forget = forget::Forget::new(metrics.clone());
    let written_policies = Arc::new(overlay::Written::default());
    let (policy_events, policies_ready) = cache::policies(
        policies,
        watcher::Config::default(),
        policy_writer,
        forget,
        written_policies.clone(),
    );
    let policy_controller = Controller::for_stream(policy_events, policy_cache.clone())
        .reconcile_on(policy_triggers)
        .with_config(config);
    let ctx = Arc::new(Context {
        client,
        recorder,
        metrics,
        runs: run_controller.store(),
        runs_by_policy,
        restores: restore_controller.store(),
        policies: policy_cache,
        policies_ready,
        jobs: job_cache,
        jobs_ready,
        created_jobs,
        written_runs,
        written_policies,
        settings,
    });

    // Both stop on the same signal; a shared future is Clone.
    let shutdown = futures::FutureExt::shared(shutdown);
    let run_loop = run_controller
        .graceful_shutdown_on(shutdown.clone())
        .run(run::reconcile, error_policy, ctx.clone())
        .for_each(|_| async {});

    let restore_loop = restore_controller
        .graceful_shutdown_on(shutdown.clone())
        .run(restore::reconcile, error_policy, ctx.clone())
        .for_each(|_| async {});

    let app_loop = app_controller
        .graceful_shutdown_on(shutdown.clone())
        .run(app_restore::reconcile::reconcile, error_policy, ctx.clone())
        .for_each(|_| async {});

    let drill_loop = drill_controller
        .graceful_shutdown_on(shutdown.clone())
        .run(app_drill::reconcile::reconcile, error_policy, ctx.clone())
        .for_each(|_| async {});

    let store = ctx.runs.clone();
    let restore_store = ctx.restores.clone();
    let policy_loop = async move {
        // Deciding on an empty run cache would see no run in progress (and
        // on an empty restore cache, no drill).
        if store.wait_until_ready().await.is_err()
            || restore_store.wait_until_ready().await.is_err()
        {
            return;
        }
        // Its store fills once this runs: run reconciles wait for it.
        policy_controller
            .graceful_shutdown_on(shutdown)
            .run(policy::reconcile, error_policy, ctx)
            .for_each(|_| async {})
            .await
    };
    futures::join!(run_loop, restore_loop, app_loop, drill_loop, policy_loop);
}

pub use crate::install_crypto_provider;

/// Options of `lifeboat controller`.
#[derive(Clone, Debug)]
pub struct Options {
    pub image: String,
    pub metrics_addr: std::net::SocketAddr,
    pub namespace: Option<String>,
    pub lease_namespace: String,
    pub lease_name: String,
    pub identity: String,
    pub leader_election: bool,
    /// Serve the read-only status page at / (off by default).
    pub status_page: bool,
}

/// Failures that end `lifeboat controller`.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("connecting to the Kubernetes API: {0}")]
    Client(#[source] kube::Error),
    #[error("serving /metrics on {0}: {1}")]
    Serve(std::net::SocketAddr, #[source] std::io::Error),
    #[error("lost leadership of lease {0}; exiting so a fresh start rebuilds every cache")]
    LostLease(String),
}

/// `lifeboat controller`: serves the probes, waits for the Lease, reconciles
/// while it leads. Returns an error when leadership is lost (the pod restarts
/// and stands by again, with fresh caches), and Ok on SIGTERM after giving
/// the Lease up.
pub async fn run(opts: Options) -> Result<(), RunError> {
    use std::sync::atomic::{AtomicBool, Ordering};

    install_crypto_provider();
    let client = Client::try_default().await.map_err(RunError::Client)?;
    let metrics = Arc::new(Metrics::default());
    let ready = Arc::new(AtomicBool::new(false));
    let probe = http::Probe {
        metrics: metrics.clone(),
        ready: ready.clone(),
        page: opts.status_page.then(|| page::StatusPage {
            client: client.clone(),
            namespace: opts.namespace.clone(),
            clock: Clock::system(),
        }),
    };
    let addr = opts.metrics_addr;
    let server = tokio::spawn(async move { http::serve(addr, probe).await });

    let (tx, mut leading) = tokio::sync::watch::channel(false);
    let elector = || {
        leader::Elector::new(
            client.clone(),
            &opts.lease_namespace,
            &opts.lease_name,
            &opts.identity,
        )
    };
    if opts.leader_election {
        tokio::spawn(elector().run(tx));
    } else {
        // A single replica by contract (the chart refuses more): lead at once.
        tracing::warn!("leader election is off: run exactly one replica");
        let _ = tx.send(true);
        // Keep the sender alive: a closed channel would read as a lost lead.
        tokio::spawn(async move {
            let _tx = tx;
            std::future::pending::<()>().await
        });
    }
    // A standby replica is ready: it serves and can take over.
    ready.store(true, Ordering::Relaxed);
    tracing::info!(identity = %opts.identity, lease = %opts.lease_name, "waiting for leadership");
    tokio::select! {
        r = leading.wait_for(|l| *l) => { let _ = r; }
        r = server => {
            return Err(RunError::Serve(addr, match r {
                Ok(Err(e)) => e,
                _ => std::io::Error::other("the HTTP server stopped"),
            }));
        }
    }
    metrics.set_leader(true);

    let settings = Settings {
        jobs: JobConfig {
            image: opts.image,
            ..JobConfig::default()
        },
        namespace: opts.namespace,
        ..Settings::default()
    };
    let mut lost = leading.clone();
    let stopping = Arc::new(AtomicBool::new(false));
    let signalled = stopping.clone();
    let shutdown = async move {
        tokio::select! {
            _ = lost.wait_for(|l| !*l) => {}
            _ = termination() => signalled.store(true, Ordering::Relaxed),
        }
    };
    let releaser = elector();
    run_controllers(client, settings, metrics.clone(), opts.identity, shutdown).await;
    metrics.set_leader(false);
    if !stopping.load(Ordering::Relaxed) {
        return Err(RunError::LostLease(opts.lease_name));
    }
    // A rolling update should not leave the controllers idle for the Lease's duration.
    if opts.leader_election {
        if let Err(e) = releaser.release().await {
            tracing::warn!(error = %e, "could not release the lease; it expires on its own");
        }
    }
    tracing::info!("stopped");
    Ok(())
}

/// SIGTERM (the kubelet stopping the pod) or Ctrl-C.
async fn termination() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
