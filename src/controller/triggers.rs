//! Triggers one controller takes from another's watch, so that each
//! resource is listed and watched once (and every change decoded once):
//! the policy controller is woken by the run watch (a run's policy) and the
//! restore watch (a drill's policy), the restore controller by the Job watch
//! (a Job's owning RestoreRequest), the drill controller by the
//! ApplicationRestore watch (its owner), and the metric series of deleted
//! policies are forgotten from the policy watch ([`super::forget`]).
//!
//! A [`Relay`] is an unbounded channel of object references fed from the
//! watching stream after its reflector has applied the event, read by the
//! woken controller through `Controller::reconcile_on`. Unbounded: a
//! controller that has not started yet (the policy controller waits for the
//! run and restore caches) must not hold back the watch that feeds the
//! others; its scheduler merges repeated references to one object, and the
//! refs a start buffers are at most one per change.

use futures::channel::mpsc;
use futures::{Stream, StreamExt};
use kube::runtime::reflector::store::Writer;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Resource};

use crate::api::{ApplicationDrill, ApplicationRestore, BackupPolicy, RestoreRequest};

/// The sending end: where a watch hands on the objects it wakes.
pub(crate) struct Relay<K: Resource<DynamicType = ()>>(mpsc::UnboundedSender<ObjectRef<K>>);

impl<K: Resource<DynamicType = ()>> Clone for Relay<K> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<K: Resource<DynamicType = ()>> Relay<K> {
    /// Wakes `object`. A controller that stopped no longer listens: that is
    /// no error.
    pub(crate) fn wake(&self, object: ObjectRef<K>) {
        let _ = self.0.unbounded_send(object);
    }

    /// Wakes every owner of `child` of type `K`, as `Controller::owns` does.
    pub(crate) fn wake_owners(&self, child: &impl Resource) {
        let meta = child.meta();
        for owner in meta.owner_references.iter().flatten() {
            if let Some(object) = ObjectRef::from_owner_ref(meta.namespace.as_deref(), owner, ()) {
                self.wake(object);
            }
        }
    }
}

/// A relay and the stream of what it wakes (for `Controller::reconcile_on`).
pub(crate) fn relay<K>() -> (Relay<K>, impl Stream<Item = ObjectRef<K>> + Send + 'static)
where
    K: Resource<DynamicType = ()> + Send + 'static,
{
    let (tx, rx) = mpsc::unbounded();
    (Relay(tx), rx)
}

/// The object a watch event is about, whatever the event (None for the
/// markers of a list's start and end). Deletions wake too, as
/// `touched_objects` does.
pub(crate) fn touched<K>(event: &watcher::Event<K>) -> Option<&K> {
    match event {
        watcher::Event::Apply(o) | watcher::Event::InitApply(o) | watcher::Event::Delete(o) => {
            Some(o)
        }
        watcher::Event::Init | watcher::Event::InitDone => None,
    }
}

/// The RestoreRequests watched, kept in `writer`'s store: the restore
/// controller's trigger. A drill wakes its policy (only drills feed a
/// policy's status), once the store has the change.
pub(crate) fn restores(
    api: Api<RestoreRequest>,
    writer: Writer<RestoreRequest>,
    policies: Relay<BackupPolicy>,
) -> impl Stream<Item = Result<RestoreRequest, watcher::Error>> + Send + 'static {
    watcher::watcher(api, watcher::Config::default())
        .reflect(writer)
        .inspect(move |event| {
            let drill = event.as_ref().ok().and_then(touched);
            if let Some(r) = drill.filter(|r| super::restore::is_drill(r)) {
                if let Some(ns) = r.metadata.namespace.as_deref() {
                    policies.wake(ObjectRef::new(&r.spec.policy_ref.name).within(ns));
                }
            }
        })
        .applied_objects()
}

/// The ApplicationRestores watched, kept in `writer`'s store: the
/// application restore controller's trigger. Each wakes the
/// ApplicationDrill that owns it.
pub(crate) fn apps(
    api: Api<ApplicationRestore>,
    writer: Writer<ApplicationRestore>,
    drills: Relay<ApplicationDrill>,
) -> impl Stream<Item = Result<ApplicationRestore, watcher::Error>> + Send + 'static {
    watcher::watcher(api, watcher::Config::default())
        .reflect(writer)
        .inspect(move |event| {
            if let Some(app) = event.as_ref().ok().and_then(touched) {
                drills.wake_owners(app);
            }
        })
        .applied_objects()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::RestoreRequest;
    use futures::StreamExt;
    use k8s_openapi::api::batch::v1::Job;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

    fn owner(kind: &str, api_version: &str, name: &str) -> OwnerReference {
        OwnerReference {
            api_version: api_version.into(),
            kind: kind.into(),
            name: name.into(),
            uid: format!("uid-{name}"),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn wakes_only_the_owners_of_its_type_in_the_childs_namespace() {
        let (relay, woken) = relay::<RestoreRequest>();
        let mut job = Job::default();
        job.metadata.name = Some("j".into());
        job.metadata.namespace = Some("ns".into());
        job.metadata.owner_references = Some(vec![
            owner("RestoreRequest", "lifeboat.dev/v1alpha1", "r"),
            owner("BackupRun", "lifeboat.dev/v1alpha1", "b"),
            owner("RestoreRequest", "other.dev/v1", "x"),
        ]);
        relay.wake_owners(&job);
        drop(relay);
        let woken: Vec<_> = woken.collect().await;
        assert_eq!(woken, [ObjectRef::new("r").within("ns")]);
    }

    #[test]
    fn every_event_about_an_object_touches_it() {
        let job = Job::default();
        assert!(touched(&watcher::Event::Delete(job.clone())).is_some());
        assert!(touched(&watcher::Event::InitApply(job.clone())).is_some());
        assert!(touched(&watcher::Event::Apply(job)).is_some());
        assert!(touched::<Job>(&watcher::Event::InitDone).is_none());
    }
}
