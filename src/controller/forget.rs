//! Forgets the metric series of deleted BackupPolicies. A deletion wakes no
//! reconcile — policies carry no finalizer, so deleting one never waits for
//! the controller — so this watches policies itself: a Delete event forgets
//! that policy's series at once, and after each (re-)list, which may follow
//! a disconnection that hid deletes, every policy with series that the list
//! did not return is forgotten too.

use std::collections::BTreeSet;
use std::sync::Arc;

use futures::StreamExt;
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, ResourceExt};

use super::metrics::Metrics;
use crate::api::BackupPolicy;

fn key(policy: &BackupPolicy) -> (String, String) {
    (policy.namespace().unwrap_or_default(), policy.name_any())
}

/// Runs until the watch stream ends (never, in practice: the caller stops it).
pub async fn forget_deleted_policies(api: Api<BackupPolicy>, metrics: Arc<Metrics>) {
    let mut listed = BTreeSet::new();
    let events = watcher::watcher(api, watcher::Config::default()).default_backoff();
    futures::pin_mut!(events);
    while let Some(event) = events.next().await {
        match event {
            Ok(Event::Delete(policy)) => {
                let (ns, name) = key(&policy);
                tracing::debug!(policy = %name, namespace = %ns, "policy deleted: forgetting its metrics");
                metrics.forget_policy(&ns, &name);
            }
            Ok(Event::Init) => listed.clear(),
            Ok(Event::InitApply(policy)) => {
                listed.insert(key(&policy));
            }
            Ok(Event::InitDone) => {
                // Needed only until the list ends: kept, the names of
                // 10,000 policies held ~1 MiB until the next relist.
                let listed = std::mem::take(&mut listed);
                for (ns, name) in metrics.known_policies().difference(&listed) {
                    metrics.forget_policy(ns, name);
                }
            }
            Ok(Event::Apply(_)) => {}
            Err(e) => tracing::warn!(error = %e, "watching policies for deletions"),
        }
    }
}
