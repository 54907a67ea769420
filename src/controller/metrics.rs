//! Prometheus metrics of the controller, served on /metrics: the last
//! successful backup per policy and tier (what the RPO alert watches),
//! backup duration, bytes and failures, reconcile errors by failed step and
//! reconcile durations.

use std::sync::atomic::AtomicU64;
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
    objective_breached: Family<PolicyLabels, Gauge>,
    rpo_objective: Family<PolicyLabels, FloatGauge>,
    rto_objective: Family<PolicyLabels, FloatGauge>,
    restore_duration: Family<RestoreLabels, Histogram, fn() -> Histogram>,
    drill_failures: Family<PolicyLabels, Counter>,
    last_drill_success: Family<PolicyLabels, FloatGauge>,
    reconcile_errors: Family<ErrorLabels, Counter>,
    wal_lag: Family<PolicyLabels, FloatGauge>,
    wal_last_archived: Family<PolicyLabels, FloatGauge>,
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
            objective_breached: Family::default(),
            rpo_objective: Family::default(),
            rto_objective: Family::default(),
            restore_duration: Family::new_with_constructor(backup_buckets),
            drill_failures: Family::default(),
            last_drill_success: Family::default(),
            reconcile_errors: Family::default(),
            wal_lag: Family::default(),
            wal_last_archived: Family::default(),
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

fn policy_tier(ns: &str, policy: &str, tier: Tier) -> PolicyTier {
    PolicyTier {
        namespace: ns.to_string(),
        policy: policy.to_string(),
        tier: tier.to_string(),
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

    pub fn record_last_success(&self, ns: &str, policy: &str, tier: Tier, at: DateTime<Utc>) {
        self.last_success
            .get_or_create(&policy_tier(ns, policy, tier))
            .set(at.timestamp_millis() as f64 / 1000.0);
    }

    pub fn record_objective(&self, ns: &str, policy: &str, breached: bool) {
        self.objective_breached
            .get_or_create(&PolicyLabels {
                namespace: ns.to_string(),
                policy: policy.to_string(),
            })
            .set(i64::from(breached));
    }

    pub fn record_rpo_objective(&self, ns: &str, policy: &str, seconds: f64) {
        self.rpo_objective
            .get_or_create(&PolicyLabels {
                namespace: ns.to_string(),
                policy: policy.to_string(),
            })
            .set(seconds);
    }

    pub fn record_rto_objective(&self, ns: &str, policy: &str, seconds: f64) {
        self.rto_objective
            .get_or_create(&PolicyLabels {
                namespace: ns.to_string(),
                policy: policy.to_string(),
            })
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
        let labels = policy_tier(ns, policy, tier);
        if let Some(seconds) = outcome.seconds {
            self.backup_duration.get_or_create(&labels).observe(seconds);
        }
        if outcome.succeeded {
            self.record_last_success(ns, policy, tier, outcome.completed_at);
            if let Some(bytes) = outcome.bytes {
                self.backup_bytes.get_or_create(&labels).set(bytes);
            }
        } else {
            self.backup_failures.get_or_create(&labels).inc();
        }
    }

    /// The archiver's lag and last archived instant, as its status reports them.
    pub fn record_wal_archive(&self, ns: &str, policy: &str, archive: &WalArchive) {
        let labels = PolicyLabels {
            namespace: ns.to_string(),
            policy: policy.to_string(),
        };
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
        let policy_labels = PolicyLabels {
            namespace: ns.to_string(),
            policy: policy.to_string(),
        };
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

    /// The newest successful drill's completion (from the policy's status).
    pub fn record_last_drill_success(&self, ns: &str, policy: &str, at: DateTime<Utc>) {
        self.last_drill_success
            .get_or_create(&PolicyLabels {
                namespace: ns.to_string(),
                policy: policy.to_string(),
            })
            .set(at.timestamp_millis() as f64 / 1000.0);
    }

    /// Exports the drill failure counter at 0 for a policy with drills, so
    /// `increase()` sees its first failure.
    pub fn touch_drill_failures(&self, ns: &str, policy: &str) {
        let _ = self.drill_failures.get_or_create(&PolicyLabels {
            namespace: ns.to_string(),
            policy: policy.to_string(),
        });
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
mod tests {
    use super::*;

    #[test]
    fn outcomes_show_up_in_the_exposition() {
        let m = Metrics::default();
        let at: DateTime<Utc> = "2026-11-25T02:05:00Z".parse().unwrap();
        m.record_outcome(
            "shop",
            "orders",
            Tier::Daily,
            &Outcome {
                succeeded: true,
                seconds: Some(42.0),
                bytes: Some(1234),
                completed_at: at,
            },
        );
        m.record_outcome(
            "shop",
            "orders",
            Tier::Weekly,
            &Outcome {
                succeeded: false,
                seconds: None,
                bytes: None,
                completed_at: at,
            },
        );
        m.reconcile_error("backuprun", &Error::MissingNamespace("x".into()));
        drop(m.reconcile_timer("backuppolicy"));
        let text = m.encode();
        assert!(text.contains(
            r#"lifeboat_last_success_timestamp_seconds{namespace="shop",policy="orders",tier="daily"} 1795572300.0"#
        ), "{text}");
        assert!(text.contains(
            r#"lifeboat_backup_size_bytes{namespace="shop",policy="orders",tier="daily"} 1234"#
        ));
        assert!(text.contains(
            r#"lifeboat_backup_failures_total{namespace="shop",policy="orders",tier="weekly"} 1"#
        ));
        assert!(text.contains(
            r#"lifeboat_reconcile_errors_total{controller="backuprun",error="missing_namespace"} 1"#
        ));
        assert!(text
            .contains(r#"lifeboat_reconcile_duration_seconds_count{controller="backuppolicy"} 1"#));
    }

    #[test]
    fn counters_start_at_zero_and_objectives_are_exported() {
        let m = Metrics::default();
        m.touch_backup_failures("shop", "orders", Tier::Monthly);
        m.record_rto_objective("shop", "orders", 14400.0);
        let text = m.encode();
        assert!(text.contains(
            r#"lifeboat_backup_failures_total{namespace="shop",policy="orders",tier="monthly"} 0"#
        ), "{text}");
        assert!(
            text.contains(
                r#"lifeboat_rto_objective_seconds{namespace="shop",policy="orders"} 14400.0"#
            ),
            "{text}"
        );
    }

    /// Every metric the chart's README lists — and tests/helm.rs checks that
    /// the alerts and the dashboard use only listed ones — is one this
    /// controller registers.
    #[test]
    fn every_metric_the_chart_uses_is_registered() {
        let readme = include_str!("../../charts/lifeboat/README.md");
        let section = readme
            .split("## Metrics the controller must export")
            .nth(1)
            .expect("the README lists the metrics");
        let listed: Vec<&str> = section
            .lines()
            .filter_map(|l| l.strip_prefix("| `lifeboat_"))
            .filter_map(|l| l.split('`').next())
            .collect();
        assert!(listed.len() >= 10, "{listed:?}");
        // One event of every kind the controller records.
        let m = Metrics::default();
        let at: DateTime<Utc> = "2026-11-25T02:05:00Z".parse().unwrap();
        for succeeded in [true, false] {
            let outcome = Outcome {
                succeeded,
                seconds: Some(42.0),
                bytes: Some(1234),
                completed_at: at,
            };
            m.record_outcome("shop", "orders", Tier::Daily, &outcome);
        }
        m.record_rpo_objective("shop", "orders", 3600.0);
        m.record_rto_objective("shop", "orders", 14400.0);
        m.record_objective("shop", "orders", false);
        m.record_wal_archive(
            "shop",
            "orders",
            &WalArchive {
                healthy: true,
                last_segment: None,
                last_archived_at: Some(at),
                lag_seconds: Some(1),
                message: None,
            },
        );
        m.record_restore(
            "shop",
            "orders",
            &super::super::restore::RestoreOutcome {
                succeeded: true,
                dry_run: false,
                drill: true,
                recovery_time_seconds: Some(300),
            },
        );
        m.touch_drill_failures("shop", "orders");
        m.record_last_drill_success("shop", "orders", at);
        let text = m.encode();
        for name in listed {
            assert!(
                text.contains(&format!("\nlifeboat_{name}")),
                "lifeboat_{name} is listed in charts/lifeboat/README.md but not registered:\n{text}"
            );
        }
    }
}
