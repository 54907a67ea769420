//! Prometheus metrics of the controller, served on /metrics: the last
//! successful backup per policy and tier (what the RPO alert watches),
//! backup duration, bytes and failures, reconcile errors by failed step and
//! reconcile durations.
//!
//! A policy's series exist only while the policy does and asks for them:
//! each policy reconcile says which tiers and objectives the spec has
//! ([`Exported`]) and the others are removed; [`Metrics::forget_policy`]
//! removes all of a deleted policy's series. Otherwise an alert would fire
//! for a policy or tier that no longer exists until the controller restarts.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::AtomicU64;
use std::sync::Mutex;
use std::time::Instant;

use chrono::{DateTime, Utc};
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use super::run::Outcome;
use super::Error;
use crate::api::policy::WalArchive;
use crate::api::Tier;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PolicyTier {
    namespace: String,
    policy: String,
    tier: String,
}

/// A policy's tier and one figure of its newest file or bucket backup.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TierFigure {
    namespace: String,
    policy: String,
    tier: String,
    /// `new`, `changed`, `unchanged` (entries); `read`, `deduplicated`,
    /// `stored`, `total` (bytes).
    state: String,
}

const ENTRY_STATES: [&str; 3] = ["new", "changed", "unchanged"];
const BYTE_STATES: [&str; 4] = ["read", "deduplicated", "stored", "total"];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PolicyLabels {
    namespace: String,
    policy: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RestoreLabels {
    namespace: String,
    policy: String,
    /// `request` or `drill`.
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ControllerLabels {
    controller: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    controller: String,
    error: String,
}

type FloatGauge = Gauge<f64, AtomicU64>;

/// The controller's metrics and their registry.
pub struct Metrics {
    registry: Registry,
    last_success: Family<PolicyTier, FloatGauge>,
    backup_bytes: Family<PolicyTier, Gauge>,
    backup_duration: Family<PolicyTier, Histogram, fn() -> Histogram>,
    backup_failures: Family<PolicyTier, Counter>,
    backup_entries: Family<TierFigure, Gauge>,
    backup_entry_bytes: Family<TierFigure, Gauge>,
    objective_breached: Family<PolicyLabels, Gauge>,
    rpo_objective: Family<PolicyLabels, FloatGauge>,
    rto_objective: Family<PolicyLabels, FloatGauge>,
    restore_duration: Family<RestoreLabels, Histogram, fn() -> Histogram>,
    drill_failures: Family<PolicyLabels, Counter>,
    last_drill_success: Family<PolicyLabels, FloatGauge>,
    reconcile_errors: Family<ErrorLabels, Counter>,
    wal_lag: Family<PolicyLabels, FloatGauge>,
    wal_last_archived: Family<PolicyLabels, FloatGauge>,
    wal_archiver_up: Family<PolicyLabels, Gauge>,
    /// Every policy some series was recorded for (namespace → name), with
    /// what [`Metrics::retain`] last kept of it: None once another recorder
    /// may have added a series, so that the next retain prunes again.
    policies: Mutex<BTreeMap<String, BTreeMap<String, Option<Exported>>>>,
    reconcile_duration: Family<ControllerLabels, Histogram, fn() -> Histogram>,
    leader: Gauge,
}

fn backup_buckets() -> Histogram {
    // 1 s … ~4.5 h
    Histogram::new(exponential_buckets(1.0, 2.0, 15))
}

fn reconcile_buckets() -> Histogram {
    // 1 ms … ~16 s
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("lifeboat");
        let m = Self {
            last_success: Family::default(),
            backup_bytes: Family::default(),
            backup_duration: Family::new_with_constructor(backup_buckets),
            backup_failures: Family::default(),
            backup_entries: Family::default(),
            backup_entry_bytes: Family::default(),
            objective_breached: Family::default(),
            rpo_objective: Family::default(),
            rto_objective: Family::default(),
            restore_duration: Family::new_with_constructor(backup_buckets),
            drill_failures: Family::default(),
            last_drill_success: Family::default(),
            reconcile_errors: Family::default(),
            wal_lag: Family::default(),
            wal_last_archived: Family::default(),
            wal_archiver_up: Family::default(),
            policies: Mutex::default(),
            reconcile_duration: Family::new_with_constructor(reconcile_buckets),
            leader: Gauge::default(),
            registry: Registry::default(),
        };
        registry.register(
            "last_success_timestamp_seconds",
            "Completion time of the newest successful backup, per policy and tier",
            m.last_success.clone(),
        );
        registry.register(
            "backup_size_bytes",
            "Size of the newest successful backup, per policy and tier",
            m.backup_bytes.clone(),
        );
        registry.register(
            "backup_duration_seconds",
            "Duration of finished backups",
            m.backup_duration.clone(),
        );
        registry.register(
            "backup_failures",
            "Backups that failed",
            m.backup_failures.clone(),
        );
        registry.register(
            "backup_entries",
            "Files (volume) or objects (bucket) of the newest successful backup, per tier: \
             new, changed (read again) and unchanged (not read)",
            m.backup_entries.clone(),
        );
        registry.register(
            "backup_entry_bytes",
            "Bytes of the newest successful file or bucket backup, per tier: read, \
             deduplicated (already stored), stored (new, summed over destinations), total",
            m.backup_entry_bytes.clone(),
        );
        registry.register(
            "objective_breached",
            "1 when the newest successful backup is older than the policy's RPO",
            m.objective_breached.clone(),
        );
        registry.register(
            "rpo_objective_seconds",
            "The policy's RPO objective; alerts compare backup age with it",
            m.rpo_objective.clone(),
        );
        registry.register(
            "rto_objective_seconds",
            "The policy's RTO objective; alerts compare measured restore times with it",
            m.rto_objective.clone(),
        );
        registry.register(
            "wal_archive_lag_seconds",
            "Age of the oldest WAL received by the archiver but not yet in every destination",
            m.wal_lag.clone(),
        );
        registry.register(
            "wal_last_archived_timestamp_seconds",
            "When WAL last reached every destination: the newest restorable instant",
            m.wal_last_archived.clone(),
        );
        registry.register(
            "wal_archiver_up",
            "1 while the policy's WAL archiver answers /status; 0 while its pod is missing or \
             does not answer, when the WAL gauges keep their last value",
            m.wal_archiver_up.clone(),
        );
        registry.register(
            "restore_duration_seconds",
            "Measured RTO of each successful restore: request to verified database",
            m.restore_duration.clone(),
        );
        registry.register(
            "drill_failures",
            "Restore drills that failed (plan, restore or checks)",
            m.drill_failures.clone(),
        );
        registry.register(
            "last_drill_success_timestamp_seconds",
            "Completion time of the newest successful restore drill",
            m.last_drill_success.clone(),
        );
        registry.register(
            "reconcile_errors",
            "Reconciles that failed, by the step that failed",
            m.reconcile_errors.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Time one reconcile took",
            m.reconcile_duration.clone(),
        );
        registry.register(
            "leader",
            "1 while this replica holds the leader Lease",
            m.leader.clone(),
        );
        Self { registry, ..m }
    }
}

/// Observes a reconcile's duration when dropped, however the reconcile ends.
pub struct ReconcileTimer {
    histogram: Histogram,
    start: Instant,
}

impl Drop for ReconcileTimer {
    fn drop(&mut self) {
        self.histogram.observe(self.start.elapsed().as_secs_f64());
    }
}

/// Which of a policy's series its spec asks for; [`Metrics::retain`]
/// removes the others.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Exported {
    /// The scheduled tiers, and `manual`.
    pub tiers: Vec<Tier>,
    /// `spec.objectives.rpo` is set.
    pub rpo: bool,
    /// `spec.objectives.rto` is set.
    pub rto: bool,
    /// `verification.restoreDrill` is set.
    pub drills: bool,
    /// The policy runs a WAL archiver.
    pub wal: bool,
}

fn policy_labels(ns: &str, policy: &str) -> PolicyLabels {
    PolicyLabels {
        namespace: ns.to_string(),
        policy: policy.to_string(),
    }
}

fn policy_tier(ns: &str, policy: &str, tier: Tier) -> PolicyTier {
    PolicyTier {
        namespace: ns.to_string(),
        policy: policy.to_string(),
        tier: tier.to_string(),
    }
}

fn figure(ns: &str, policy: &str, tier: Tier, state: &str) -> TierFigure {
    TierFigure {
        namespace: ns.to_string(),
        policy: policy.to_string(),
        tier: tier.to_string(),
        state: state.to_string(),
    }
}

impl Metrics {
    pub fn reconcile_timer(&self, controller: &str) -> ReconcileTimer {
        ReconcileTimer {
            histogram: self
                .reconcile_duration
                .get_or_create(&ControllerLabels {
                    controller: controller.to_string(),
                })
                .clone(),
            start: Instant::now(),
        }
    }

    pub fn reconcile_error(&self, controller: &str, error: &Error) {
        self.reconcile_errors
            .get_or_create(&ErrorLabels {
                controller: controller.to_string(),
                error: error.metric_label().to_string(),
            })
            .inc();
    }

    /// Notes that `policy` has series, so that [`Metrics::known_policies`]
    /// can name it when it is gone.
    fn note(&self, ns: &str, policy: &str) {
        self.swap_kept(ns, policy, None);
    }

    /// Sets what `retain` last kept of the policy; returns what it was.
    fn swap_kept(&self, ns: &str, policy: &str, kept: Option<Exported>) -> Option<Exported> {
        let mut all = self.policies.lock().unwrap_or_else(|p| p.into_inner());
        if !all.contains_key(ns) {
            all.insert(ns.to_string(), BTreeMap::new());
        }
        let names = all.get_mut(ns).expect("inserted above");
        match names.get_mut(policy) {
            Some(entry) => std::mem::replace(entry, kept),
            None => names.insert(policy.to_string(), kept).flatten(),
        }
    }

    /// (namespace, policy) of every policy that has series.
    pub fn known_policies(&self) -> BTreeSet<(String, String)> {
        let all = self.policies.lock().unwrap_or_else(|p| p.into_inner());
        all.iter()
            .flat_map(|(ns, names)| names.keys().map(|n| (ns.clone(), n.clone())))
            .collect()
    }

    /// Removes the series of the tiers and objectives `keep` does not list.
    /// Returns false, having done nothing, when `keep` is what the last call
    /// kept and no series was recorded since: most reconciles change none,
    /// and removing absent series still builds every label set.
    pub fn retain(&self, ns: &str, policy: &str, keep: &Exported) -> bool {
        if self.swap_kept(ns, policy, Some(keep.clone())).as_ref() == Some(keep) {
            return false;
        }
        self.remove_unkept(ns, policy, keep);
        true
    }

    fn remove_unkept(&self, ns: &str, policy: &str, keep: &Exported) {
        for tier in Tier::SCHEDULED.into_iter().chain([Tier::Manual]) {
            if !keep.tiers.contains(&tier) {
                let labels = policy_tier(ns, policy, tier);
                self.last_success.remove(&labels);
                self.backup_bytes.remove(&labels);
                self.backup_duration.remove(&labels);
                self.backup_failures.remove(&labels);
                for state in ENTRY_STATES {
                    self.backup_entries.remove(&figure(ns, policy, tier, state));
                }
                for state in BYTE_STATES {
                    self.backup_entry_bytes
                        .remove(&figure(ns, policy, tier, state));
                }
            }
        }
        let labels = policy_labels(ns, policy);
        if !keep.rpo {
            self.rpo_objective.remove(&labels);
        }
        if !keep.rto {
            self.rto_objective.remove(&labels);
        }
        if !keep.drills {
            self.drill_failures.remove(&labels);
            self.last_drill_success.remove(&labels);
        }
        if !keep.wal {
            self.wal_lag.remove(&labels);
            self.wal_last_archived.remove(&labels);
            self.wal_archiver_up.remove(&labels);
        }
    }

    /// Removes every series of a deleted policy.
    pub fn forget_policy(&self, ns: &str, policy: &str) {
        self.remove_unkept(ns, policy, &Exported::default());
        let labels = policy_labels(ns, policy);
        self.objective_breached.remove(&labels);
        for kind in ["request", "drill"] {
            self.restore_duration.remove(&RestoreLabels {
                namespace: ns.to_string(),
                policy: policy.to_string(),
                kind: kind.to_string(),
            });
        }
        let mut all = self.policies.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(names) = all.get_mut(ns) {
            names.remove(policy);
            if names.is_empty() {
                all.remove(ns);
            }
        }
    }

    /// Whether the policy's WAL archiver answered `/status` just now.
    pub fn record_archiver_up(&self, ns: &str, policy: &str, up: bool) {
        self.note(ns, policy);
        self.wal_archiver_up
            .get_or_create(&policy_labels(ns, policy))
            .set(i64::from(up));
    }

    pub fn record_last_success(&self, ns: &str, policy: &str, tier: Tier, at: DateTime<Utc>) {
        self.last_success
            .get_or_create(&policy_tier(ns, policy, tier))
            .set(at.timestamp_millis() as f64 / 1000.0);
    }

    pub fn record_objective(&self, ns: &str, policy: &str, breached: bool) {
        self.objective_breached
            .get_or_create(&policy_labels(ns, policy))
            .set(i64::from(breached));
    }

    pub fn record_rpo_objective(&self, ns: &str, policy: &str, seconds: f64) {
        self.rpo_objective
            .get_or_create(&policy_labels(ns, policy))
            .set(seconds);
    }

    pub fn record_rto_objective(&self, ns: &str, policy: &str, seconds: f64) {
        self.rto_objective
            .get_or_create(&policy_labels(ns, policy))
            .set(seconds);
    }

    /// Exports the tier's failure counter at 0 before its first failure:
    /// `increase()` does not count a series' first sample, so a counter that
    /// first appears at 1 would never raise an alert.
    pub fn touch_backup_failures(&self, ns: &str, policy: &str, tier: Tier) {
        let _ = self
            .backup_failures
            .get_or_create(&policy_tier(ns, policy, tier));
    }

    /// Records a run that just finished.
    pub fn record_outcome(&self, ns: &str, policy: &str, tier: Tier, outcome: &Outcome) {
        self.note(ns, policy);
        let labels = policy_tier(ns, policy, tier);
        if let Some(seconds) = outcome.seconds {
            self.backup_duration.get_or_create(&labels).observe(seconds);
        }
        if outcome.succeeded {
            self.record_last_success(ns, policy, tier, outcome.completed_at);
            if let Some(bytes) = outcome.bytes {
                self.backup_bytes.get_or_create(&labels).set(bytes);
            }
            if let Some(f) = &outcome.files {
                let entries = [f.files_new, f.files_changed, f.files_unchanged];
                for (state, v) in ENTRY_STATES.into_iter().zip(entries) {
                    self.backup_entries
                        .get_or_create(&figure(ns, policy, tier, state))
                        .set(v);
                }
                let bytes = [
                    f.bytes_read,
                    f.bytes_deduplicated,
                    f.bytes_stored,
                    f.bytes_total,
                ];
                for (state, v) in BYTE_STATES.into_iter().zip(bytes) {
                    self.backup_entry_bytes
                        .get_or_create(&figure(ns, policy, tier, state))
                        .set(v);
                }
            }
        } else {
            self.backup_failures.get_or_create(&labels).inc();
        }
    }

    /// The archiver's lag and last archived instant, as its status reports them.
    pub fn record_wal_archive(&self, ns: &str, policy: &str, archive: &WalArchive) {
        self.note(ns, policy);
        let labels = policy_labels(ns, policy);
        if let Some(lag) = archive.lag_seconds {
            self.wal_lag.get_or_create(&labels).set(lag as f64);
        }
        if let Some(at) = archive.last_archived_at {
            self.wal_last_archived
                .get_or_create(&labels)
                .set(at.timestamp_millis() as f64 / 1000.0);
        }
    }

    /// Records a RestoreRequest that just finished (dry runs restore nothing).
    pub fn record_restore(&self, ns: &str, policy: &str, o: &super::restore::RestoreOutcome) {
        self.note(ns, policy);
        let policy_labels = policy_labels(ns, policy);
        if o.succeeded && !o.dry_run {
            if let Some(rto) = o.recovery_time_seconds {
                let kind = if o.drill { "drill" } else { "request" };
                self.restore_duration
                    .get_or_create(&RestoreLabels {
                        namespace: ns.to_string(),
                        policy: policy.to_string(),
                        kind: kind.to_string(),
                    })
                    .observe(rto as f64);
            }
        }
        if o.drill && !o.succeeded {
            self.drill_failures.get_or_create(&policy_labels).inc();
        }
    }

    /// An application restore that just finished: its RTO, under each of
    /// its parts' policies, as `kind="application"`.
    pub fn record_application_restore(
        &self,
        ns: &str,
        policy: &str,
        o: &super::app_restore::Outcome,
    ) {
        self.note(ns, policy);
        if let (true, false, Some(rto)) = (o.succeeded, o.dry_run, o.recovery_time_seconds) {
            self.restore_duration
                .get_or_create(&RestoreLabels {
                    namespace: ns.to_string(),
                    policy: policy.to_string(),
                    kind: "application".to_string(),
                })
                .observe(rto as f64);
        }
    }

    /// An application drill that just finished, under one of its parts'
    /// policies: its RTO as `kind="application-drill"`, a failure counted
    /// as the policy's drill failure (the drill alert fires for it).
    pub fn record_application_drill(
        &self,
        ns: &str,
        policy: &str,
        o: &super::app_drill::DrillOutcome,
    ) {
        self.note(ns, policy);
        if let (true, Some(rto)) = (o.succeeded, o.recovery_time_seconds) {
            self.restore_duration
                .get_or_create(&RestoreLabels {
                    namespace: ns.to_string(),
                    policy: policy.to_string(),
                    kind: "application-drill".to_string(),
                })
                .observe(rto as f64);
        }
        if !o.succeeded {
            self.drill_failures
                .get_or_create(&policy_labels(ns, policy))
                .inc();
        }
    }

    /// The newest successful drill's completion (from the policy's status).
    pub fn record_last_drill_success(&self, ns: &str, policy: &str, at: DateTime<Utc>) {
        self.last_drill_success
            .get_or_create(&policy_labels(ns, policy))
            .set(at.timestamp_millis() as f64 / 1000.0);
    }

    /// Exports the drill failure counter at 0 for a policy with drills, so
    /// `increase()` sees its first failure.
    pub fn touch_drill_failures(&self, ns: &str, policy: &str) {
        let _ = self
            .drill_failures
            .get_or_create(&policy_labels(ns, policy));
    }

    pub fn set_leader(&self, leader: bool) {
        self.leader.set(i64::from(leader));
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests;
