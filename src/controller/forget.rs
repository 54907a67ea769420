//! Forgets the metric series of deleted BackupPolicies. A deletion wakes no
//! reconcile — policies carry no finalizer, so deleting one never waits for
//! the controller — so this follows the policy watch's events (those of the
//! policy cache, [`super::cache::policies`]; a watch of its own decoded every
//! policy change a second time): a Delete event forgets that policy's
//! series at once, and after each (re-)list, which may follow a
//! disconnection that hid deletes, every policy with series that the list
//! did not return is forgotten too.

use std::collections::BTreeSet;
use std::sync::Arc;

use kube::runtime::watcher::Event;
use kube::ResourceExt;

use super::metrics::Metrics;
use crate::api::BackupPolicy;

fn key(policy: &BackupPolicy) -> (String, String) {
    (policy.namespace().unwrap_or_default(), policy.name_any())
}

/// What a (re-)list has returned so far, and the series to forget from.
pub(crate) struct Forget {
    metrics: Arc<Metrics>,
    listed: BTreeSet<(String, String)>,
}

impl Forget {
    pub(crate) fn new(metrics: Arc<Metrics>) -> Self {
        Self {
            metrics,
            listed: BTreeSet::new(),
        }
    }

    /// Follows one event of the policy watch.
    pub(crate) fn apply(&mut self, event: &Event<BackupPolicy>) {
        match event {
            Event::Delete(policy) => {
                let (ns, name) = key(policy);
                tracing::debug!(policy = %name, namespace = %ns, "policy deleted: forgetting its metrics");
                self.metrics.forget_policy(&ns, &name);
            }
            Event::Init => self.listed.clear(),
            Event::InitApply(policy) => {
                self.listed.insert(key(policy));
            }
            Event::InitDone => {
                // Needed only until the list ends: kept, the names of
                // 10,000 policies held ~1 MiB until the next relist.
                let listed = std::mem::take(&mut self.listed);
                for (ns, name) in self.metrics.known_policies().difference(&listed) {
                    self.metrics.forget_policy(ns, name);
                }
            }
            Event::Apply(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::metrics::Exported;
    use crate::controller::test_support::policy_of_source;

    fn policy(ns: &str, name: &str) -> BackupPolicy {
        let mut p = policy_of_source(serde_json::json!({"postgres": {
            "connectionSecretRef": {"name": "db"}, "databases": ["app"]}}));
        p.metadata.namespace = Some(ns.into());
        p.metadata.name = Some(name.into());
        p
    }

    #[test]
    fn a_delete_or_absence_from_a_relist_forgets_a_policys_series() {
        let metrics = Arc::new(Metrics::default());
        for name in ["a", "b", "c"] {
            metrics.retain("ns", name, &Exported::default());
        }
        let mut forget = Forget::new(metrics.clone());
        forget.apply(&Event::Apply(policy("ns", "a")));
        forget.apply(&Event::Delete(policy("ns", "a")));
        let names = |m: &Metrics| {
            m.known_policies()
                .into_iter()
                .map(|(_, n)| n)
                .collect::<Vec<_>>()
        };
        assert_eq!(names(&metrics), ["b", "c"]);
        // A relist that returns only b: c was deleted while the watch was down.
        forget.apply(&Event::Init);
        forget.apply(&Event::InitApply(policy("ns", "b")));
        assert_eq!(names(&metrics), ["b", "c"], "not before the list ends");
        forget.apply(&Event::InitDone);
        assert_eq!(names(&metrics), ["b"]);
    }
}
