//! The BackupRuns of each policy, found without scanning every run: the run
//! cache (a reflector store) answers by name, and this index, kept from the
//! same watch events, says which names belong to which policy. A policy
//! reconcile that copied and filtered the whole store made the controller
//! O(policies²) overall (docs/BENCHMARKS.md, "Controller from its caches").
//!
//! The index may name a run the store does not have yet (it is updated
//! just before the store): lookups go through the store and skip it. A
//! relist rebuilds the index beside the old one and swaps at its end, as
//! the store does, so runs deleted while the watch was down leave it. A run's `spec.policyRef` does not change after creation, but the
//! lookup checks it anyway rather than trust the index over the object.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use futures::{Stream, StreamExt};
use kube::runtime::reflector::store::Writer;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, ResourceExt};

use super::cache::{is_echo, reflect_seen, Ready};
use super::overlay::Written;
use super::policy::run_change_matters;
use super::triggers::{touched, Relay};
use crate::api::{BackupPolicy, BackupRun};

/// (namespace, policy) → names of its runs.
type Index = HashMap<(String, String), BTreeSet<String>>;

#[derive(Clone, Default)]
pub struct RunsByPolicy {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Default)]
struct Inner {
    index: Index,
    /// The index a relist is building, swapped in at its end.
    next: Option<Index>,
}

fn key_of(run: &BackupRun) -> Option<((String, String), String)> {
    let ns = run.metadata.namespace.clone()?;
    let name = run.metadata.name.clone()?;
    Some(((ns, run.spec.policy_ref.name.clone()), name))
}

impl RunsByPolicy {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn apply(&self, event: &watcher::Event<BackupRun>) {
        let mut inner = self.lock();
        match event {
            watcher::Event::Apply(run) => {
                if let Some((policy, name)) = key_of(run) {
                    inner.index.entry(policy).or_default().insert(name);
                }
            }
            watcher::Event::InitApply(run) => {
                if let Some((policy, name)) = key_of(run) {
                    // Into both: the store answers from its old state
                    // until the relist ends, and may already hold it.
                    inner
                        .index
                        .entry(policy.clone())
                        .or_default()
                        .insert(name.clone());
                    if let Some(next) = inner.next.as_mut() {
                        next.entry(policy).or_default().insert(name);
                    }
                }
            }
            watcher::Event::Delete(run) => {
                if let Some((policy, name)) = key_of(run) {
                    if let Some(names) = inner.index.get_mut(&policy) {
                        names.remove(&name);
                        if names.is_empty() {
                            inner.index.remove(&policy);
                        }
                    }
                }
            }
            watcher::Event::Init => inner.next = Some(Index::new()),
            watcher::Event::InitDone => {
                if let Some(next) = inner.next.take() {
                    inner.index = next;
                }
            }
        }
    }

    /// The runs of `policy` that `store` holds, in name order.
    pub fn runs_of(&self, policy: &BackupPolicy, store: &Store<BackupRun>) -> Vec<Arc<BackupRun>> {
        let ns = policy.namespace().unwrap_or_default();
        self.runs_of_named(&ns, &policy.name_any(), store)
    }

    fn runs_of_named(
        &self,
        ns: &str,
        policy: &str,
        store: &Store<BackupRun>,
    ) -> Vec<Arc<BackupRun>> {
        let key = (ns.to_string(), policy.to_string());
        let mut inner = self.lock();
        let Some(names) = inner.index.get_mut(&key) else {
            return Vec::new();
        };
        let mut runs = Vec::with_capacity(names.len());
        names.retain(|name| match store.get(&ObjectRef::new(name).within(ns)) {
            Some(run) if run.spec.policy_ref.name == key.1 => {
                runs.push(run);
                true
            }
            Some(_) => false,
            // Not in the store (yet): an Apply event indexes before the
            // store has it, so keep the name unless a Delete removed it.
            None => true,
        });
        runs
    }
}

/// The runs of the namespace(s) watched, kept in `writer`'s store and
/// indexed by policy in `index`: the run controller's trigger (see
/// `Controller::for_stream`). A run's policy is woken through `policies`
/// once the store has the change (the policy controller's run trigger),
/// unless the change is one its decision does not read
/// ([`run_change_matters`]). The echo of the run controller's own status
/// write is kept in the store but triggers no run reconcile.
pub(crate) fn watch(
    api: Api<BackupRun>,
    config: watcher::Config,
    writer: Writer<BackupRun>,
    index: RunsByPolicy,
    policies: Relay<BackupPolicy>,
    written: Arc<Written<BackupRun>>,
) -> (
    impl Stream<Item = Result<BackupRun, watcher::Error>> + Send + 'static,
    Ready,
) {
    let events = watcher(api, config)
        .modify(super::cache::slim_unlabelled)
        .inspect(move |event| {
            if let Ok(event) = event {
                index.apply(event);
            }
        });
    let (events, ready) = reflect_seen(events, writer, move |event, before| {
        let wakes = match event {
            watcher::Event::Apply(run) => before.is_none_or(|b| run_change_matters(&b, run)),
            _ => true,
        };
        let run = touched(event).filter(|_| wakes);
        if let Some((ns, run)) = run.and_then(|r| Some((r.metadata.namespace.as_deref()?, r))) {
            policies.wake(ObjectRef::new(&run.spec.policy_ref.name).within(ns));
        }
        !is_echo(event, &written)
    });
    (events.applied_objects(), ready)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::test_support::daily_run;
    use kube::runtime::reflector::store;

    fn run(name: &str, policy: &str) -> BackupRun {
        let mut run = daily_run(name, name);
        run.metadata.namespace = Some("ns".into());
        run.spec.policy_ref.name = policy.into();
        run
    }

    fn fixture() -> (RunsByPolicy, Store<BackupRun>, Writer<BackupRun>) {
        let (cache, writer) = store::<BackupRun>();
        (RunsByPolicy::default(), cache, writer)
    }

    fn names(runs: &[Arc<BackupRun>]) -> Vec<String> {
        runs.iter().map(|r| r.name_any()).collect()
    }

    #[test]
    fn finds_a_policys_runs_and_forgets_deleted_ones() {
        let (index, cache, mut writer) = fixture();
        let mut feed = |e: watcher::Event<BackupRun>| {
            index.apply(&e);
            writer.apply_watcher_event(&e);
        };
        feed(watcher::Event::Apply(run("a-1", "a")));
        feed(watcher::Event::Apply(run("b-1", "b")));
        feed(watcher::Event::Apply(run("a-2", "a")));
        let mut elsewhere = run("a-3", "a");
        elsewhere.metadata.namespace = Some("other".into());
        feed(watcher::Event::Apply(elsewhere));
        assert_eq!(
            names(&index.runs_of_named("ns", "a", &cache)),
            ["a-1", "a-2"]
        );
        assert_eq!(names(&index.runs_of_named("ns", "b", &cache)), ["b-1"]);
        assert!(index.runs_of_named("ns", "c", &cache).is_empty());

        feed(watcher::Event::Delete(run("a-1", "a")));
        assert_eq!(names(&index.runs_of_named("ns", "a", &cache)), ["a-2"]);
        feed(watcher::Event::Delete(run("b-1", "b")));
        assert!(index.runs_of_named("ns", "b", &cache).is_empty());
        assert!(!index.lock().index.contains_key(&("ns".into(), "b".into())));
    }

    #[test]
    fn a_relist_drops_runs_deleted_while_the_watch_was_down() {
        let (index, cache, mut writer) = fixture();
        let mut feed = |e: watcher::Event<BackupRun>| {
            index.apply(&e);
            writer.apply_watcher_event(&e);
        };
        feed(watcher::Event::Apply(run("a-1", "a")));
        feed(watcher::Event::Apply(run("a-2", "a")));
        feed(watcher::Event::Init);
        feed(watcher::Event::InitApply(run("a-2", "a")));
        // Until the relist ends the store still answers with both.
        assert_eq!(
            names(&index.runs_of_named("ns", "a", &cache)),
            ["a-1", "a-2"]
        );
        feed(watcher::Event::InitDone);
        assert_eq!(names(&index.runs_of_named("ns", "a", &cache)), ["a-2"]);
        assert_eq!(index.lock().index[&("ns".into(), "a".into())].len(), 1);
    }

    #[test]
    fn a_run_that_names_another_policy_in_the_store_is_not_returned() {
        let (cache, mut writer) = store::<BackupRun>();
        let index = RunsByPolicy::default();
        index.apply(&watcher::Event::Apply(run("x", "a")));
        // The store says x belongs to b (the index missed an update).
        writer.apply_watcher_event(&watcher::Event::Apply(run("x", "b")));
        assert!(index.runs_of_named("ns", "a", &cache).is_empty());
        assert!(!index.lock().index[&("ns".into(), "a".into())].contains("x"));
    }
}
