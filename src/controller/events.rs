//! Events for people, written to `events.k8s.io/v1` as kube-runtime's
//! `Recorder` writes them (a repeat within six minutes becomes a `series`
//! patch of the first event instead of a new object), with a cache sized
//! for thousands of policies: kube's recorder scans its whole cache on
//! every publish and keeps every event it sent in full, which made the
//! controller O(policies²) and cost tens of MiB at 10,000 policies
//! (docs/BENCHMARKS.md, "Controller from its caches"). Here an entry is its
//! key and the event's name, and expired entries go at most once a minute.
//!
//! Unlike kube's, the key includes the note: a different message about the
//! same object is a new event that people can read, not a count on an old one.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event as K8sEvent;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::json;
use tokio::sync::Mutex;

use super::Note;

/// How long a sent event takes repeats as a series (kube's `CACHE_TTL`).
const SERIES_TTL: Duration = Duration::from_secs(6 * 60);
/// How often expired entries are dropped.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// Who publishes: shown as the events' reporting controller and instance.
pub struct Reporter {
    pub controller: String,
    pub instance: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Key {
    /// The regarded object: uid when it has one, else kind/namespace/name.
    regarding: String,
    warning: bool,
    reason: String,
    action: &'static str,
    note: String,
}

struct Sent {
    namespace: String,
    name: String,
    count: i32,
    at: Instant,
}

/// What publishing a note comes to: a new event, or another count on one
/// sent a moment ago.
#[derive(Debug, PartialEq, Eq)]
enum Write {
    Create,
    Series {
        namespace: String,
        name: String,
        count: i32,
    },
}

struct Cache {
    sent: HashMap<Key, Sent>,
    pruned: Instant,
}

impl Cache {
    fn new(now: Instant) -> Self {
        Self {
            sent: HashMap::new(),
            pruned: now,
        }
    }

    /// What to write for `key` at `now`; a series count is remembered
    /// before the write (a failed patch only skips a number).
    fn decide(&mut self, key: &Key, now: Instant) -> Write {
        if now.duration_since(self.pruned) >= PRUNE_EVERY {
            self.sent
                .retain(|_, s| now.duration_since(s.at) < SERIES_TTL);
            self.pruned = now;
        }
        match self.sent.get_mut(key) {
            Some(s) if now.duration_since(s.at) < SERIES_TTL => {
                s.count += 1;
                s.at = now;
                Write::Series {
                    namespace: s.namespace.clone(),
                    name: s.name.clone(),
                    count: s.count,
                }
            }
            _ => Write::Create,
        }
    }

    fn created(&mut self, key: Key, namespace: String, name: String, now: Instant) {
        let sent = Sent {
            namespace,
            name,
            count: 1,
            at: now,
        };
        self.sent.insert(key, sent);
    }
}

pub struct Recorder {
    client: Client,
    reporter: Reporter,
    cache: Mutex<Cache>,
}

impl Recorder {
    pub fn new(client: Client, reporter: Reporter) -> Self {
        Self {
            client,
            reporter,
            cache: Mutex::new(Cache::new(Instant::now())),
        }
    }

    /// Publishes `note` about `regarding` (in its namespace, or `default`
    /// for a cluster-scoped object).
    pub async fn publish(
        &self,
        note: &Note,
        regarding: &ObjectReference,
    ) -> Result<(), kube::Error> {
        let key = Key {
            regarding: regarding.uid.clone().unwrap_or_else(|| {
                let part = |s: &Option<String>| s.clone().unwrap_or_default();
                let (kind, ns) = (part(&regarding.kind), part(&regarding.namespace));
                format!("{kind}/{ns}/{}", part(&regarding.name))
            }),
            warning: note.warning,
            reason: note.reason.clone(),
            action: note.action,
            note: note.message.clone(),
        };
        let now = Instant::now();
        let write = self.cache.lock().await.decide(&key, now);
        let at = MicroTime(k8s_openapi::jiff::Timestamp::now());
        match write {
            Write::Series {
                namespace,
                name,
                count,
            } => {
                let patch = json!({ "series": { "count": count, "lastObservedTime": at } });
                Api::<K8sEvent>::namespaced(self.client.clone(), &namespace)
                    .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await?;
            }
            Write::Create => {
                let event = self.event(note, regarding, at);
                let namespace = event.metadata.namespace.clone().unwrap_or_default();
                let created = Api::<K8sEvent>::namespaced(self.client.clone(), &namespace)
                    .create(&PostParams::default(), &event)
                    .await?;
                let name = created.metadata.name.unwrap_or_default();
                self.cache.lock().await.created(key, namespace, name, now);
            }
        }
        Ok(())
    }

    fn event(&self, note: &Note, regarding: &ObjectReference, at: MicroTime) -> K8sEvent {
        let nanos = at.0.as_nanosecond();
        let subject = regarding
            .name
            .as_deref()
            .unwrap_or(&self.reporter.controller);
        K8sEvent {
            metadata: ObjectMeta {
                namespace: Some(regarding.namespace.clone().unwrap_or("default".into())),
                name: Some(format!("{subject}.{nanos:x}")),
                ..Default::default()
            },
            action: Some(note.action.to_string()),
            reason: Some(note.reason.clone()),
            note: Some(note.message.clone()),
            event_time: Some(at),
            regarding: Some(regarding.clone()),
            reporting_controller: Some(self.reporter.controller.clone()),
            reporting_instance: Some(self.reporter.instance.clone()),
            type_: Some(if note.warning { "Warning" } else { "Normal" }.into()),
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(note: &str) -> Key {
        Key {
            regarding: "uid-1".into(),
            warning: false,
            reason: "Scheduled".into(),
            action: "Schedule",
            note: note.into(),
        }
    }

    #[test]
    fn a_repeat_within_the_ttl_counts_on_the_first_event() {
        let t0 = Instant::now();
        let mut cache = Cache::new(t0);
        assert_eq!(cache.decide(&key("a"), t0), Write::Create);
        cache.created(key("a"), "shop".into(), "orders.1".into(), t0);
        let series = |count| Write::Series {
            namespace: "shop".into(),
            name: "orders.1".into(),
            count,
        };
        assert_eq!(
            cache.decide(&key("a"), t0 + Duration::from_secs(10)),
            series(2)
        );
        assert_eq!(
            cache.decide(&key("a"), t0 + Duration::from_secs(20)),
            series(3)
        );
        // Another message is another event.
        assert_eq!(
            cache.decide(&key("b"), t0 + Duration::from_secs(20)),
            Write::Create
        );
        // Quiet for longer than the TTL: a new event.
        assert_eq!(
            cache.decide(&key("a"), t0 + Duration::from_secs(20) + SERIES_TTL),
            Write::Create
        );
    }

    #[test]
    fn expired_entries_go_once_a_minute_not_on_every_publish() {
        let t0 = Instant::now();
        let mut cache = Cache::new(t0);
        cache.created(key("a"), "shop".into(), "orders.1".into(), t0);
        let late = t0 + SERIES_TTL;
        cache.pruned = late - Duration::from_secs(1);
        cache.decide(&key("b"), late);
        assert_eq!(
            cache.sent.len(),
            1,
            "not pruned within a minute of the last prune"
        );
        cache.decide(&key("b"), late + PRUNE_EVERY);
        assert!(cache.sent.is_empty(), "pruned after a minute");
    }
}
