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

use std::sync::Arc;

use futures::{Stream, StreamExt};
use k8s_openapi::api::batch::v1::{Job, JobStatus};
use k8s_openapi::api::core::v1::Pod;
use kube::api::ListParams;
use kube::runtime::reflector::store::Writer;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Resource};
use tokio::sync::watch;

use super::cached_job::CachedJob;
use super::job_status::ObservedJob;
use super::overlay::{CreatedJobs, Written};
use super::triggers::touched;
use super::{Context, Error};
use crate::api::BackupPolicy;

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
/// once the store holds the first list. Each event is also handed to `seen`
/// once the store has it, together with the store's copy of its object from before (None:
/// new to the store, or no object in the event). The event goes on down
/// the stream when `seen` returns true: a change nobody downstream decides
/// on (the echo of a write, a field no decision reads) wakes no reconcile.
pub(crate) fn reflect_seen<K, S, F>(
    events: S,
    mut writer: Writer<K>,
    mut seen: F,
) -> (impl Stream<Item = S::Item> + Send + 'static, Ready)
where
    K: Resource + Clone + Send + Sync + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone + Send + Sync,
    S: Stream<Item = watcher::Result<watcher::Event<K>>> + Send + 'static,
    F: FnMut(&watcher::Event<K>, Option<Arc<K>>) -> bool + Send + 'static,
{
    let reader = writer.as_reader();
    let (tx, rx) = watch::channel(false);
    let events = events.filter(move |event| {
        let keep = match event {
            Ok(event) => {
                let before = touched(event).and_then(|o| reader.get(&ObjectRef::from_obj(o)));
                writer.apply_watcher_event(event);
                if matches!(event, watcher::Event::InitDone) {
                    tx.send_replace(true);
                }
                seen(event, before)
            }
            Err(_) => true,
        };
        std::future::ready(keep)
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
    written: Arc<Written<BackupPolicy>>,
) -> (
    impl Stream<Item = Result<BackupPolicy, watcher::Error>> + Send + 'static,
    Ready,
) {
    let events = watcher(api, config).modify(slim).inspect(move |event| {
        if let Ok(event) = event {
            forget.apply(event);
        }
    });
    let (events, ready) = reflect_seen(events, writer, move |event, _| !is_echo(event, &written));
    (events.applied_objects(), ready)
}

/// True when `event` is the watch's echo of a write `written` recorded
/// ([`Written::take_echo`]): no trigger for the controller that wrote it.
pub(crate) fn is_echo<K>(event: &watcher::Event<K>, written: &Written<K>) -> bool
where
    K: Resource<DynamicType = ()> + Clone,
{
    matches!(event, watcher::Event::Apply(obj) if written.take_echo(obj))
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
    created: Arc<CreatedJobs>,
) -> (
    impl Stream<Item = Result<CachedJob, watcher::Error>> + Send + 'static,
    Ready,
) {
    let events = watcher(api, config)
        .default_backoff()
        .modify(slim_unlabelled);
    let (events, ready) = reflect_seen(events, writer, move |event, before| {
        if let Some(job) = touched(event) {
            created.seen(job);
        }
        match event {
            watcher::Event::Apply(job) => job_changed(before.as_deref(), job),
            _ => true,
        }
    });
    (events.touched_objects(), ready)
}

/// Whether a Job's change is news to the run or RestoreRequest that owns
/// it: they read its status and nothing else a Job's owner can change
/// (its spec is theirs). A Job new to the cache without a status is the
/// one its owner's reconcile just created and recorded; the Job
/// controller's first status write wakes the owner. Waking it for the
/// Job's arrival too cost a run reconcile per backup.
fn job_changed(before: Option<&CachedJob>, after: &CachedJob) -> bool {
    // The API server may write no status or an empty one.
    fn status(job: &CachedJob) -> Option<&JobStatus> {
        job.status.as_ref().filter(|s| **s != JobStatus::default())
    }
    match before {
        None => status(after).is_some(),
        Some(b) => {
            status(b) != status(after)
                || b.metadata.uid != after.metadata.uid
                || b.metadata.deletion_timestamp != after.metadata.deletion_timestamp
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
    use crate::controller::test_support::job;
    use kube::ResourceExt;

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
    fn a_job_wakes_its_owner_when_its_status_or_identity_changes() {
        let new = CachedJob::from(job("a"));
        assert!(!job_changed(None, &new), "created, no status yet");
        let mut empty = new.clone();
        empty.status = Some(JobStatus::default());
        assert!(!job_changed(None, &empty), "an empty status is none");
        assert!(!job_changed(Some(&new), &empty));
        let mut active = new.clone();
        active.status = Some(JobStatus {
            active: Some(1),
            ..Default::default()
        });
        assert!(job_changed(None, &active), "new to the cache, running");
        assert!(job_changed(Some(&new), &active));
        assert!(!job_changed(Some(&active), &active.clone()));
        let mut other = active.clone();
        other.metadata.uid = Some("another".into());
        assert!(job_changed(Some(&active), &other), "another Job, same name");
        let mut deleting = active.clone();
        deleting.metadata.deletion_timestamp =
            Some(crate::api::conditions::to_time(chrono::Utc::now()));
        assert!(job_changed(Some(&active), &deleting));
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
