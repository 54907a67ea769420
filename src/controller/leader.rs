//! Leader election through a coordination.k8s.io/v1 Lease, so two replicas
//! never reconcile at once. [`decide`] (pure) reads the Lease and the time
//! and says create, acquire, renew or stand by; [`Elector`] applies it with a
//! resourceVersion precondition, so of two replicas racing for an expired
//! Lease exactly one write wins and the other sees a conflict.

use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use serde_json::json;
use tokio::sync::watch;

use super::is_conflict;

/// What to do with the Lease.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// No Lease exists: create it, held by us.
    Create,
    /// Someone else's Lease expired (or nobody holds it): take it.
    Acquire,
    /// We hold it: renew it.
    Renew,
    /// Someone else holds it until `until`.
    Standby {
        holder: String,
        until: DateTime<Utc>,
    },
}

fn micro_to_chrono(t: &MicroTime) -> DateTime<Utc> {
    DateTime::from_timestamp(t.0.as_second(), t.0.subsec_nanosecond() as u32).unwrap_or_default()
}

fn chrono_to_micro(t: DateTime<Utc>) -> MicroTime {
    MicroTime(crate::api::conditions::to_time(t).0)
}

/// Decides from the observed Lease. Pure.
pub fn decide(lease: Option<&Lease>, identity: &str, now: DateTime<Utc>) -> Decision {
    let Some(lease) = lease else {
        return Decision::Create;
    };
    let spec = lease.spec.clone().unwrap_or_default();
    let holder = spec.holder_identity.unwrap_or_default();
    if holder == identity {
        return Decision::Renew;
    }
    if holder.is_empty() {
        return Decision::Acquire;
    }
    let seconds = i64::from(spec.lease_duration_seconds.unwrap_or(0));
    let renewed = spec
        .renew_time
        .as_ref()
        .or(spec.acquire_time.as_ref())
        .map(micro_to_chrono);
    match renewed {
        Some(at) if at + chrono::Duration::seconds(seconds) > now => Decision::Standby {
            holder,
            until: at + chrono::Duration::seconds(seconds),
        },
        _ => Decision::Acquire,
    }
}

/// The Lease spec to write for a decision to hold it.
pub fn held_spec(
    old: Option<&Lease>,
    decision: &Decision,
    identity: &str,
    now: DateTime<Utc>,
    duration: Duration,
) -> LeaseSpec {
    let old = old.and_then(|l| l.spec.clone()).unwrap_or_default();
    let taking = matches!(decision, Decision::Create | Decision::Acquire);
    LeaseSpec {
        holder_identity: Some(identity.to_string()),
        lease_duration_seconds: Some(duration.as_secs().max(1) as i32),
        acquire_time: if taking {
            Some(chrono_to_micro(now))
        } else {
            old.acquire_time
        },
        renew_time: Some(chrono_to_micro(now)),
        lease_transitions: Some(
            old.lease_transitions.unwrap_or(0) + i32::from(matches!(decision, Decision::Acquire)),
        ),
        ..LeaseSpec::default()
    }
}

/// Holds (or waits for) one Lease.
pub struct Elector {
    pub api: Api<Lease>,
    pub name: String,
    pub identity: String,
    /// How long a Lease stays valid without renewal.
    pub duration: Duration,
    /// How often the holder renews (and a candidate retries).
    pub renew_every: Duration,
}

impl Elector {
    pub fn new(client: Client, namespace: &str, name: &str, identity: &str) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            name: name.to_string(),
            identity: identity.to_string(),
            duration: Duration::from_secs(15),
            renew_every: Duration::from_secs(5),
        }
    }

    /// One round: read, decide, write. True when we hold the Lease after it.
    pub async fn try_hold(&self) -> Result<bool, kube::Error> {
        let lease = self.api.get_opt(&self.name).await?;
        let now = Utc::now();
        let decision = decide(lease.as_ref(), &self.identity, now);
        if let Decision::Standby { .. } = decision {
            return Ok(false);
        }
        let spec = held_spec(
            lease.as_ref(),
            &decision,
            &self.identity,
            now,
            self.duration,
        );
        let written = match (&decision, &lease) {
            (Decision::Create, _) | (_, None) => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.name.clone()),
                        ..ObjectMeta::default()
                    },
                    spec: Some(spec),
                };
                self.api
                    .create(&PostParams::default(), &lease)
                    .await
                    .map(|_| ())
            }
            (_, Some(old)) => {
                let patch = json!({
                    "metadata": {"resourceVersion": old.resource_version()},
                    "spec": spec,
                });
                self.api
                    .patch(&self.name, &PatchParams::default(), &Patch::Merge(patch))
                    .await
                    .map(|_| ())
            }
        };
        match written {
            Ok(()) => {
                if decision == Decision::Acquire || decision == Decision::Create {
                    tracing::info!(lease = %self.name, identity = %self.identity, "acquired leadership");
                }
                Ok(true)
            }
            // Another replica wrote first.
            Err(e) if is_conflict(&e) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Gives the Lease up if we hold it, so a standby replica takes over at
    /// its next try instead of after the Lease's duration. The resourceVersion
    /// makes it a no-op when another replica has written since.
    pub async fn release(&self) -> Result<bool, kube::Error> {
        let Some(lease) = self.api.get_opt(&self.name).await? else {
            return Ok(false);
        };
        let holder = lease
            .spec
            .as_ref()
            .and_then(|s| s.holder_identity.as_deref());
        if holder != Some(self.identity.as_str()) {
            return Ok(false);
        }
        let patch = json!({
            "metadata": {"resourceVersion": lease.resource_version()},
            "spec": {"holderIdentity": ""},
        });
        match self
            .api
            .patch(&self.name, &PatchParams::default(), &Patch::Merge(patch))
            .await
        {
            Ok(_) => {
                tracing::info!(lease = %self.name, identity = %self.identity, "released leadership");
                Ok(true)
            }
            Err(e) if is_conflict(&e) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Keeps trying to hold the Lease, publishing whether we lead. A leader
    /// that cannot renew within the Lease's duration steps down.
    pub async fn run(self, leading: watch::Sender<bool>) {
        let mut last_held: Option<tokio::time::Instant> = None;
        loop {
            let held = match self.try_hold().await {
                Ok(true) => {
                    last_held = Some(tokio::time::Instant::now());
                    true
                }
                Ok(false) => false,
                Err(e) => {
                    tracing::warn!(error = %e, lease = %self.name, "lease update failed");
                    last_held.is_some_and(|t| t.elapsed() < self.duration)
                }
            };
            if leading.send_replace(held) != held {
                tracing::info!(leading = held, "leadership changed");
            }
            if leading.is_closed() {
                return;
            }
            tokio::time::sleep(self.renew_every).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn lease(holder: &str, renewed: &str, seconds: i32) -> Lease {
        Lease {
            metadata: ObjectMeta::default(),
            spec: Some(LeaseSpec {
                holder_identity: Some(holder.into()),
                lease_duration_seconds: Some(seconds),
                renew_time: Some(chrono_to_micro(at(renewed))),
                ..LeaseSpec::default()
            }),
        }
    }

    #[test]
    fn no_lease_is_created() {
        assert_eq!(
            decide(None, "a", at("2026-01-01T00:00:00Z")),
            Decision::Create
        );
    }

    #[test]
    fn our_lease_is_renewed() {
        let l = lease("a", "2026-01-01T00:00:00Z", 15);
        assert_eq!(
            decide(Some(&l), "a", at("2026-01-01T00:00:05Z")),
            Decision::Renew
        );
    }

    #[test]
    fn a_live_lease_of_another_means_standby() {
        let l = lease("b", "2026-01-01T00:00:00Z", 15);
        assert_eq!(
            decide(Some(&l), "a", at("2026-01-01T00:00:14Z")),
            Decision::Standby {
                holder: "b".into(),
                until: at("2026-01-01T00:00:15Z")
            }
        );
    }

    #[test]
    fn an_expired_or_released_lease_is_acquired() {
        let l = lease("b", "2026-01-01T00:00:00Z", 15);
        assert_eq!(
            decide(Some(&l), "a", at("2026-01-01T00:00:16Z")),
            Decision::Acquire
        );
        let released = lease("", "2026-01-01T00:00:00Z", 15);
        assert_eq!(
            decide(Some(&released), "a", at("2026-01-01T00:00:01Z")),
            Decision::Acquire
        );
    }

    #[test]
    fn acquiring_counts_a_transition_and_renewing_keeps_acquire_time() {
        let mut l = lease("b", "2026-01-01T00:00:00Z", 15);
        l.spec.as_mut().unwrap().lease_transitions = Some(2);
        let now = at("2026-01-01T00:01:00Z");
        let spec = held_spec(
            Some(&l),
            &Decision::Acquire,
            "a",
            now,
            Duration::from_secs(15),
        );
        assert_eq!(spec.holder_identity.as_deref(), Some("a"));
        assert_eq!(spec.lease_transitions, Some(3));
        assert_eq!(spec.acquire_time.as_ref().map(micro_to_chrono), Some(now));
        let later = now + chrono::Duration::seconds(5);
        let ours = Lease {
            metadata: ObjectMeta::default(),
            spec: Some(spec),
        };
        let renewed = held_spec(
            Some(&ours),
            &Decision::Renew,
            "a",
            later,
            Duration::from_secs(15),
        );
        assert_eq!(
            renewed.acquire_time.as_ref().map(micro_to_chrono),
            Some(now)
        );
        assert_eq!(
            renewed.renew_time.as_ref().map(micro_to_chrono),
            Some(later)
        );
        assert_eq!(renewed.lease_transitions, Some(3));
    }
}
