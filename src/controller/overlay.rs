//! What this controller wrote that its caches may not show yet: the Jobs
//! its reconciles created ([`CreatedJobs`]) and the objects whose status
//! they wrote ([`Written`]). A reconcile reads through them; the watches
//! drop an entry once their cache has its object, and recognise the echo of
//! a write so that it wakes no reconcile of its writer.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Resource, ResourceExt};

use super::cached_job::CachedJob;

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

    /// Remembers a Job the API server just created (its answer), unless
    /// `cache` has it already.
    pub(crate) fn insert(&self, cache: &Store<CachedJob>, mut job: CachedJob) {
        // Kept as the Job cache keeps a watched Job.
        super::cache::slim_unlabelled(&mut job);
        let key = ObjectRef::from_obj(&job);
        let now = Instant::now();
        // Under the lock that `seen` takes after the cache applied a Job:
        // either this sees the cache has it, or `seen` removes the entry.
        let mut created = self.lock();
        if cache.get(&key).is_some() {
            return;
        }
        let Created { jobs, pruned } = &mut *created;
        // Entries normally go when the cache sees them; this drops the rest.
        prune_now(jobs, pruned, now, |(at, _)| *at);
        jobs.insert(key, (now, Arc::new(job)));
    }

    /// The Job cache has `job` now: the entry has done its work.
    pub(crate) fn seen(&self, job: &CachedJob) {
        let mut created = self.lock();
        if !created.jobs.is_empty() {
            created.jobs.remove(&ObjectRef::from_obj(job));
        }
    }

    /// The Job `key`: the cache's copy, else a recent creation's.
    pub(crate) fn get(
        &self,
        cache: &Store<CachedJob>,
        key: &ObjectRef<CachedJob>,
    ) -> Option<Arc<CachedJob>> {
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
    /// Nothing to record when `cache` already has `after`.
    pub(crate) fn wrote(&self, cache: &Store<K>, before: &K, after: K) {
        let Some(replaced) = before.resource_version() else {
            return;
        };
        let now = Instant::now();
        // Under the lock that `take_echo` takes after the cache applied an
        // event: either this sees the echo in the cache, or `take_echo`
        // finds the entry.
        let mut written = self.lock();
        let cached = cache.get(&ObjectRef::from_obj(before));
        if cached.is_some_and(|c| c.resource_version() == after.resource_version()) {
            return;
        }
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

    /// True when `obj` is the version this controller's last write of it
    /// made: the watch's echo of that write, which tells its controller
    /// nothing it did not decide on (the reconcile that wrote it saw
    /// everything else as it is). The echo is in the store now, so the
    /// entry goes.
    pub(crate) fn take_echo(&self, obj: &K) -> bool {
        let key = ObjectRef::from_obj(obj);
        let mut written = self.lock();
        let echo = written
            .objects
            .get(&key)
            .is_some_and(|e| e.written.resource_version() == obj.resource_version());
        if echo {
            written.objects.remove(&key);
        }
        echo
    }

    /// `obj`, or what this controller wrote over it when `obj` is the
    /// version that write replaced, or the cache's copy when it moved on
    /// since `obj` was read: a reconcile is handed its object when it is
    /// dispatched, and the write's echo may reach the cache (and take the
    /// entry, [`Written::take_echo`]) before the reconcile looks here.
    pub(crate) fn latest(&self, cache: &Store<K>, obj: Arc<K>) -> Arc<K> {
        let key = ObjectRef::from_obj(obj.as_ref());
        {
            let mut written = self.lock();
            let objects = &mut written.objects;
            match objects.get(&key) {
                Some(e) if obj.resource_version().as_ref() == Some(&e.replaced) => {
                    return e.written.clone()
                }
                Some(_) => {
                    objects.remove(&key);
                }
                None => {}
            }
        }
        cache.get(&key).unwrap_or(obj)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::test_support::job;
    use k8s_openapi::api::batch::v1::Job;
    use k8s_openapi::api::batch::v1::JobStatus;
    use kube::runtime::reflector::store;
    use kube::runtime::watcher;

    #[test]
    fn a_created_job_stands_in_until_the_cache_has_it() {
        let (cache, mut writer) = store::<CachedJob>();
        let created = CreatedJobs::default();
        let key = ObjectRef::new("a").within("ns");
        assert!(created.get(&cache, &key).is_none());

        created.insert(&cache, CachedJob::from(job("a")));
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
    fn the_job_watch_drops_a_created_job_it_has_seen() {
        let (cache, mut writer) = store::<CachedJob>();
        let created = CreatedJobs::default();
        created.insert(&cache, CachedJob::from(job("a")));
        let cached = CachedJob::from(job("a"));
        writer.apply_watcher_event(&watcher::Event::Apply(cached.clone()));
        created.seen(&cached);
        assert!(created.lock().jobs.is_empty());
        // Created after the cache saw it (the watch was faster): no entry.
        created.insert(&cache, CachedJob::from(job("a")));
        assert!(created.lock().jobs.is_empty());
    }

    /// Job `a` at resourceVersion `rv`.
    fn version(rv: &str) -> Job {
        let mut v = job("a");
        v.metadata.resource_version = Some(rv.into());
        v
    }

    #[test]
    fn the_echo_of_a_write_is_recognised_once() {
        let (cache, mut writer) = store::<Job>();
        let written = Written::<Job>::default();
        let (v1, v2) = (version("7"), version("9"));
        written.wrote(&cache, &v1, v2.clone());
        assert!(!written.take_echo(&version("8")), "someone else's write");
        assert!(written.take_echo(&v2));
        assert!(!written.take_echo(&v2), "the entry went with its echo");
        // The echo reached the cache before the write's answer: no entry.
        writer.apply_watcher_event(&watcher::Event::Apply(v2.clone()));
        written.wrote(&cache, &v1, v2.clone());
        assert!(written.lock().objects.is_empty());
        assert!(!written.take_echo(&v2));
        // A reconcile handed v1 before the echo came looks after the echo
        // took the entry: it decides on the cache's v2, not on v1.
        assert_eq!(
            written
                .latest(&cache, Arc::new(v1))
                .resource_version()
                .as_deref(),
            Some("9")
        );
    }

    #[test]
    fn a_written_object_replaces_only_the_version_it_overwrote() {
        let (cache, _writer) = store::<Job>();
        let written = Written::<Job>::default();
        let (v1, v2) = (version("7"), version("9"));
        written.wrote(&cache, &v1, v2.clone());
        let seen = written.latest(&cache, Arc::new(v1.clone()));
        assert_eq!(seen.resource_version().as_deref(), Some("9"));
        // The cache moved on (to our write or past it): its copy wins.
        let seen = written.latest(&cache, Arc::new(version("12")));
        assert_eq!(seen.resource_version().as_deref(), Some("12"));
        assert_eq!(
            written
                .latest(&cache, Arc::new(v1))
                .resource_version()
                .as_deref(),
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
}
