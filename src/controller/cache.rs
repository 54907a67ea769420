//! What reconciles read instead of asking the API server: the policies (the
//! policy controller's store), the Jobs (a reflector whose events are also
//! the run controller's Job triggers) and the Jobs a reconcile created that
//! the Job cache has not seen yet.
//!
//! A reconcile that found its run's policy and Job here makes no read at
//! all; the API is asked only where a cache cannot answer for sure: a policy
//! missing from the cache (a hand-made run may name a policy created a
//! moment ago), and the pods of a Job whose status says it has pods (a
//! finished Job's result is its pod's termination message, which must not
//! come from a cache that may lag the Job). Staleness is bounded by the
//! watches: a Job event reaches the store before it triggers the reconcile,
//! and a Job created from a policy the cache has not yet seen change is the
//! same Job the previous API read would have given a moment earlier (see
//! docs/DESIGN.md, "The controller's caches").

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{Stream, StreamExt};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::ListParams;
use kube::runtime::reflector::store::Writer;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Resource, ResourceExt};
use tokio::sync::watch;

use super::cached_job::CachedJob;
use super::job_status::ObservedJob;
use super::{Context, Error};
use crate::api::BackupPolicy;

/// How long a Job this controller created (or an object it wrote) stands in
/// for the cache's copy. The watch delivers it within milliseconds; after
/// this the Job counts as gone (deleted before the cache saw it), as an API
/// read would say.
const CREATED_TTL: Duration = Duration::from_secs(60);

/// How often the overlays drop expired entries: a burst of thousands of
/// writes the watch has not echoed yet would make pruning on every insert
/// quadratic.
const PRUNE_EVERY: Duration = Duration::from_secs(10);

/// Drops `map`'s entries older than [`CREATED_TTL`] when [`PRUNE_EVERY`]
/// has passed since `pruned`.
fn prune_now<K, V>(
    map: &mut HashMap<K, V>,
    pruned: &mut Option<Instant>,
    now: Instant,
    at: impl Fn(&V) -> Instant,
) {
    if pruned.is_some_and(|p| now.duration_since(p) < PRUNE_EVERY) {
        return;
    }
    map.retain(|_, v| now.duration_since(at(v)) < CREATED_TTL);
    *pruned = Some(now);
}

/// Says whether a cache has had its first list. Any number of reconciles
/// may wait on it: a reflector `Store`'s own wait wakes only the last task
/// that polled it, and reconciles run as separate futures.
#[derive(Clone)]
pub struct Ready(watch::Receiver<bool>);

impl Ready {
    /// Waits for the first list; an error when the watch has ended.
    async fn wait(&self, what: &'static str) -> Result<(), Error> {
        self.0
            .clone()
            .wait_for(|ready| *ready)
            .await
            .map(|_| ())
            .map_err(|_| Error::CacheStopped(what))
    }
}

/// `events` applied to `writer`'s store, and a [`Ready`] that turns true
/// once the store holds the first list.
pub(crate) fn reflect_ready<K, S>(
    events: S,
    writer: Writer<K>,
) -> (impl Stream<Item = S::Item> + Send + 'static, Ready)
where
    K: Resource + Clone + Send + Sync + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone + Send + Sync,
    S: Stream<Item = watcher::Result<watcher::Event<K>>> + Send + 'static,
{
    let (tx, rx) = watch::channel(false);
    let events = events.reflect(writer).inspect(move |event| {
        if matches!(event, Ok(watcher::Event::InitDone)) {
            tx.send_replace(true);
        }
    });
    (events, Ready(rx))
}

/// The policies of the namespace(s) watched, kept in `writer`'s store: the
/// policy controller's trigger (see `Controller::for_stream`). Every event
/// also goes to `forget`, which forgets the series of deleted policies.
pub(crate) fn policies(
    api: Api<BackupPolicy>,
    config: watcher::Config,
    writer: Writer<BackupPolicy>,
    mut forget: super::forget::Forget,
) -> (
    impl Stream<Item = Result<BackupPolicy, watcher::Error>> + Send + 'static,
    Ready,
) {
    let events = watcher(api, config).modify(slim).inspect(move |event| {
        if let Ok(event) = event {
            forget.apply(event);
        }
    });
    let (events, ready) = reflect_ready(events, writer);
    (events.applied_objects(), ready)
}

/// What kubectl and the API server add to an object that no reconcile
/// reads: its managed fields and kubectl's last-applied copy of the whole
/// object. On a real cluster they are often larger than the rest of a
/// policy; the caches keep one copy of every object, so they go at once.
pub(crate) fn slim<K: Resource>(object: &mut K) {
    let meta = object.meta_mut();
    meta.managed_fields = None;
    if let Some(annotations) = meta.annotations.as_mut() {
        annotations.remove(LAST_APPLIED);
        if annotations.is_empty() {
            meta.annotations = None;
        }
    }
}

const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// [`slim`], and for the run and Job caches also every label and
/// annotation: no decision reads them from a cache (a run's policy and tier
/// are in its spec, of a Job a reconcile reads its name and status, and
/// label selectors go to the API). A label map costs a B-tree node of
/// ~0.5 KB however few its entries: with their strings, ~0.6 KB a run and
/// ~0.7 KB a Job in the heap profile of docs/BENCHMARKS.md ("Runs and Jobs
/// cached without labels"), ~13 MB at 10,000 policies. Owner references
/// stay: the run controller finds a Job's run by them.
pub(crate) fn slim_unlabelled<K: Resource>(object: &mut K) {
    slim(object);
    let meta = object.meta_mut();
    meta.labels = None;
    meta.annotations = None;
}

/// The Jobs of the namespace(s) watched, kept in `writer`'s store. Yields
/// each changed Job after the store has it, so a reconcile it triggers
/// reads the Job it was triggered by. The cache keeps metadata and status
/// only: the pod template is the largest part of a Job and no decision
/// reads it.
pub(crate) fn jobs(
    api: Api<CachedJob>,
    config: watcher::Config,
    writer: Writer<CachedJob>,
) -> (
    impl Stream<Item = Result<CachedJob, watcher::Error>> + Send + 'static,
    Ready,
) {
    let events = watcher(api, config)
        .default_backoff()
        .modify(slim_unlabelled);
    let (events, ready) = reflect_ready(events, writer);
    (events.touched_objects(), ready)
}

/// Jobs a reconcile created and the Job cache may not show yet: the next
/// reconcile of the same run (woken by its own status write) must see its
/// Job, not create it again. An entry goes when the cache has the Job or
/// after [`CREATED_TTL`].
#[derive(Default)]
pub struct CreatedJobs {
    jobs: Mutex<Created>,
}

/// Each created Job with when it was created.
#[derive(Default)]
struct Created {
    jobs: HashMap<ObjectRef<CachedJob>, (Instant, Arc<CachedJob>)>,
    pruned: Option<Instant>,
}

impl CreatedJobs {
    fn lock(&self) -> std::sync::MutexGuard<'_, Created> {
        self.jobs.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Remembers a Job the API server just created (its answer).
    pub(crate) fn insert(&self, job: Job) {
        let job = CachedJob::from(job);
        let now = Instant::now();
        let mut created = self.lock();
        let Created { jobs, pruned } = &mut *created;
        // Entries normally go on the next lookup; this drops the rest.
        prune_now(jobs, pruned, now, |(at, _)| *at);
        jobs.insert(ObjectRef::from_obj(&job), (now, Arc::new(job)));
    }

    /// The Job `key`: the cache's copy, else a recent creation's.
    fn get(&self, cache: &Store<CachedJob>, key: &ObjectRef<CachedJob>) -> Option<Arc<CachedJob>> {
        if let Some(job) = cache.get(key) {
            self.lock().jobs.remove(key);
            return Some(job);
        }
        let created = self.lock();
        let (at, job) = created.jobs.get(key)?;
        (at.elapsed() < CREATED_TTL).then(|| job.clone())
    }
}

/// Objects as this controller last wrote them (the API server's answer),
/// each with the resourceVersion its write replaced. A reconcile served that
/// replaced version by a cache that has not seen the write yet decides on
/// the written one instead: deciding again on the old status would write it
/// again and repeat its events. Any other version is the cache's newer word
/// and drops the entry. No ordering of resourceVersions is assumed.
pub struct Written<K: Resource> {
    objects: Mutex<WrittenObjects<K>>,
}

struct WrittenObjects<K: Resource> {
    objects: HashMap<ObjectRef<K>, Entry<K>>,
    pruned: Option<Instant>,
}

struct Entry<K> {
    at: Instant,
    replaced: String,
    written: Arc<K>,
}

impl<K: Resource> Default for Written<K>
where
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    fn default() -> Self {
        Self {
            objects: Mutex::new(WrittenObjects {
                objects: HashMap::new(),
                pruned: None,
            }),
        }
    }
}

impl<K> Written<K>
where
    K: Resource<DynamicType = ()> + Clone,
{
    fn lock(&self) -> std::sync::MutexGuard<'_, WrittenObjects<K>> {
        self.objects.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records that `before` was written over; `after` is the API's answer.
    pub(crate) fn wrote(&self, before: &K, after: K) {
        let Some(replaced) = before.resource_version() else {
            return;
        };
        let now = Instant::now();
        let mut written = self.lock();
        let WrittenObjects { objects, pruned } = &mut *written;
        // Entries normally go on the next reconcile; this drops the deleted.
        prune_now(objects, pruned, now, |e| e.at);
        objects.insert(
            ObjectRef::from_obj(before),
            Entry {
                at: now,
                replaced,
                written: Arc::new(after),
            },
        );
    }

    /// `obj`, or what this controller wrote over it when `obj` is the
    /// version that write replaced.
    pub(crate) fn latest(&self, obj: Arc<K>) -> Arc<K> {
        let key = ObjectRef::from_obj(obj.as_ref());
        let mut written = self.lock();
        let objects = &mut written.objects;
        match objects.get(&key) {
            Some(e) if obj.resource_version().as_ref() == Some(&e.replaced) => e.written.clone(),
            Some(_) => {
                objects.remove(&key);
                obj
            }
            None => obj,
        }
    }
}

/// The policy `name` in `ns`: from the cache, or, when the cache does not
/// have it, from the API (it may have been created a moment ago).
pub(crate) async fn policy(
    ctx: &Context,
    ns: &str,
    name: &str,
) -> Result<Option<Arc<BackupPolicy>>, Error> {
    // Deciding on an empty cache would see no policy.
    ctx.policies_ready.wait("policy").await?;
    if let Some(policy) = ctx.policies.get(&ObjectRef::new(name).within(ns)) {
        return Ok(Some(policy));
    }
    let policy = ctx
        .api::<BackupPolicy>(ns)
        .get_opt(name)
        .await
        .map_err(Error::dereference(format!("policy {name}")))?;
    Ok(policy.map(Arc::new))
}

/// The Job `name` in `ns` from the cache, with its pods when its status says
/// the Job controller has made some (read from the API: they carry a
/// finished Job's result).
pub(crate) async fn job(ctx: &Context, ns: &str, name: &str) -> Result<ObservedJob, Error> {
    ctx.jobs_ready.wait("Job").await?;
    let key = ObjectRef::new(name).within(ns);
    let Some(job) = ctx.created_jobs.get(&ctx.jobs, &key) else {
        return Ok(ObservedJob::default());
    };
    let pods = if has_pods(&job) {
        ctx.api::<Pod>(ns)
            .list(&ListParams::default().labels(&format!("job-name={name}")))
            .await
            .map_err(Error::dereference(format!("pods of job {name}")))?
            .items
    } else {
        Vec::new()
    };
    Ok(ObservedJob::new(Some(Job::from(job.as_ref())), pods))
}

/// True once the Job controller has acted on the Job: it writes the Job's
/// status (start time, active pods) when it creates the first pod, so a Job
/// without a status has no pod to read.
fn has_pods(job: &CachedJob) -> bool {
    job.status
        .as_ref()
        .is_some_and(|s| *s != Default::default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::batch::v1::JobStatus;
    use kube::runtime::reflector::store;

    fn job(name: &str) -> Job {
        let mut job = Job::default();
        job.metadata.name = Some(name.into());
        job.metadata.namespace = Some("ns".into());
        job.spec = Some(Default::default());
        job
    }

    #[test]
    fn slim_drops_what_kubectl_adds_and_keeps_other_annotations() {
        // A run: its slot annotation is read by the drills, so it must stay.
        let mut run = crate::controller::test_support::daily_run("r", "u");
        run.metadata.managed_fields = Some(vec![Default::default()]);
        run.metadata.annotations = Some(
            [(LAST_APPLIED, "{\"spec\":{}}"), ("lifeboat.dev/slot", "x")]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        slim(&mut run);
        assert_eq!(run.metadata.managed_fields, None);
        assert_eq!(
            run.annotations().keys().collect::<Vec<_>>(),
            ["lifeboat.dev/slot"]
        );
        run.metadata.annotations = Some([(LAST_APPLIED.into(), "{}".into())].into());
        slim(&mut run);
        assert_eq!(run.metadata.annotations, None);
    }

    #[test]
    fn the_run_and_job_caches_keep_no_labels_or_annotations() {
        let mut run = crate::controller::test_support::daily_run("r", "u");
        run.metadata.labels = Some([("lifeboat.dev/policy".into(), "orders".into())].into());
        run.metadata.annotations = Some([("a".into(), "b".into())].into());
        run.metadata.owner_references = Some(vec![Default::default()]);
        run.metadata.finalizers = Some(vec!["lifeboat.dev/prune".into()]);
        slim_unlabelled(&mut run);
        assert_eq!(run.metadata.labels, None);
        assert_eq!(run.metadata.annotations, None);
        assert_eq!(run.owner_references().len(), 1);
        assert_eq!(run.finalizers(), ["lifeboat.dev/prune"]);
    }

    #[test]
    fn a_created_job_stands_in_until_the_cache_has_it() {
        let (cache, mut writer) = store::<CachedJob>();
        let created = CreatedJobs::default();
        let key = ObjectRef::new("a").within("ns");
        assert!(created.get(&cache, &key).is_none());

        created.insert(job("a"));
        let seen = created.get(&cache, &key).expect("the created Job");
        assert_eq!(seen.metadata.name.as_deref(), Some("a"));

        let mut cached = CachedJob::from(job("a"));
        cached.status = Some(JobStatus {
            active: Some(1),
            ..Default::default()
        });
        writer.apply_watcher_event(&watcher::Event::Apply(cached));
        let seen = created.get(&cache, &key).expect("the cached Job");
        assert_eq!(seen.status.as_ref().and_then(|s| s.active), Some(1));
        assert!(
            created.lock().jobs.is_empty(),
            "the stand-in goes once cached"
        );
    }

    #[test]
    fn a_written_object_replaces_only_the_version_it_overwrote() {
        let written = Written::<Job>::default();
        let mut v1 = job("a");
        v1.metadata.resource_version = Some("7".into());
        let mut v2 = v1.clone();
        v2.metadata.resource_version = Some("9".into());
        written.wrote(&v1, v2.clone());
        let seen = written.latest(Arc::new(v1.clone()));
        assert_eq!(seen.resource_version().as_deref(), Some("9"));
        // The cache moved on (to our write or past it): its copy wins.
        let mut v3 = v1.clone();
        v3.metadata.resource_version = Some("12".into());
        let seen = written.latest(Arc::new(v3));
        assert_eq!(seen.resource_version().as_deref(), Some("12"));
        assert_eq!(
            written.latest(Arc::new(v1)).resource_version().as_deref(),
            Some("7"),
            "the entry went with the cache's newer copy"
        );
    }

    #[test]
    fn expired_entries_go_at_most_every_prune_interval() {
        let t0 = Instant::now();
        let mut map = HashMap::from([("old", t0), ("new", t0 + CREATED_TTL)]);
        let mut pruned = None;
        let late = t0 + CREATED_TTL + Duration::from_secs(1);
        prune_now(&mut map, &mut pruned, late, |at| *at);
        assert_eq!(
            map.keys().collect::<Vec<_>>(),
            [&"new"],
            "the first call prunes"
        );
        map.insert("old", t0);
        prune_now(&mut map, &mut pruned, late + Duration::from_secs(1), |at| {
            *at
        });
        assert_eq!(map.len(), 2, "not again within the interval");
        prune_now(&mut map, &mut pruned, late + PRUNE_EVERY, |at| *at);
        assert_eq!(map.len(), 1, "again after it");
    }

    #[test]
    fn only_a_job_with_a_status_has_pods_to_read() {
        let mut j = CachedJob::from(job("a"));
        assert!(!has_pods(&j));
        j.status = Some(JobStatus::default());
        assert!(!has_pods(&j));
        j.status = Some(JobStatus {
            active: Some(1),
            ..Default::default()
        });
        assert!(has_pods(&j));
    }
}
