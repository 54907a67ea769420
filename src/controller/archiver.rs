//! The WAL archiver of a policy with point-in-time recovery: a one-replica
//! Deployment running `lifeboat wal-stream` on a replication slot, and what
//! its status endpoint reports. Pure: no IO.
//!
//! One replica with the Recreate strategy, because a replication slot takes
//! one receiver at a time. The spool is an emptyDir: a new pod loses nothing,
//! since the slot keeps the server's WAL until a receiver has flushed it.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy};
use k8s_openapi::api::core::v1::{
    ContainerPort, EmptyDirVolumeSource, HTTPGetAction, PodTemplateSpec, Probe, Volume,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::Resource;

use super::jobs::backup::compression_arg;
use super::jobs::pod::{mount, pod_spec, PodNeeds};
use super::jobs::{
    base_labels, bounded_name, destinations, policy_id, short_hash, JobConfig, JobError,
    LABEL_COMPONENT, LABEL_POLICY,
};
use crate::api::conditions::{find, reasons, types, ConditionUpdate};
use crate::api::policy::{BackupPolicyStatus, ValidSource, WalArchive};
use crate::api::{parse_duration, BackupPolicy};

/// Port of the archiver's `/status`, `/metrics` and `/healthz`.
pub const STATUS_PORT: u16 = 8081;
/// Where the spool emptyDir is mounted.
pub const SPOOL_DIR: &str = "/var/lib/lifeboat/spool";
pub const COMPONENT: &str = "wal-stream";

/// The Deployment's name: `<policy>-wal-stream` within 63 characters.
pub fn archiver_name(policy: &str) -> String {
    bounded_name(policy, COMPONENT)
}

/// The replication slot of a policy: `lifeboat_<namespace>_<policy>` in the
/// characters PostgreSQL allows, hashed when longer than 63.
pub fn slot_name(namespace: &str, policy: &str) -> String {
    let clean = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '_'
                }
            })
            .collect()
    };
    let slot = format!("lifeboat_{}_{}", clean(namespace), clean(policy));
    if slot.len() <= 63 {
        return slot;
    }
    let hash = short_hash(&slot);
    format!("{}_{hash}", &slot[..63 - hash.len() - 1])
}

/// True when the policy asks for continuous WAL archiving. A suspended
/// policy keeps archiving: suspend stops scheduled backups, and stopping
/// the receiver would make the slot hold WAL on the server until its disk fills.
pub fn wants_archiver(policy: &BackupPolicy) -> bool {
    policy.spec.source.is_physical()
        && policy
            .spec
            .point_in_time_recovery
            .as_ref()
            .is_some_and(|p| p.enabled)
}

/// What the archiver's pod needs: `lifeboat wal-stream` on the slot, the
/// database connection, the keys and destinations, and a writable spool.
fn archiver_needs(policy: &BackupPolicy, cfg: &JobConfig) -> Result<PodNeeds, JobError> {
    let valid = super::jobs::validated(policy)?;
    let (ValidSource::PostgresPhysical(pg), Some(pitr)) =
        (valid.source, &policy.spec.point_in_time_recovery)
    else {
        return Err(JobError::Missing {
            field: "spec.pointInTimeRecovery",
        });
    };
    let mut needs = PodNeeds {
        args: vec!["wal-stream".to_string()],
        ..Default::default()
    };
    needs.args.extend(destinations::args(
        "--to",
        &destinations::for_pod(&valid, cfg),
    ));
    needs.add(PodNeeds::database(&pg.connection_secret_ref, cfg));
    needs.args.extend([
        "--slot".into(),
        slot_name(&valid.namespace, &valid.name),
        "--spool".into(),
        SPOOL_DIR.into(),
        "--max-wal-delay".into(),
        pitr.max_wal_delay.clone(),
        "--compression".into(),
        compression_arg(policy).into(),
        "--http-addr".into(),
        format!("0.0.0.0:{STATUS_PORT}"),
    ]);
    needs.add(PodNeeds::bucket_access(policy, cfg));
    needs.volumes.push(Volume {
        name: "spool".into(),
        empty_dir: Some(EmptyDirVolumeSource::default()),
        ..Default::default()
    });
    let mut spool = mount("spool", SPOOL_DIR);
    spool.read_only = None;
    needs.mounts.push(spool);
    Ok(needs)
}

/// The arguments of `lifeboat wal-stream` for `policy`.
pub fn archiver_args(policy: &BackupPolicy, cfg: &JobConfig) -> Result<Vec<String>, JobError> {
    Ok(archiver_needs(policy, cfg)?.args)
}

/// The archiver Deployment, owned by the policy (deleting the policy stops it).
pub fn archiver_deployment(policy: &BackupPolicy, cfg: &JobConfig) -> Result<Deployment, JobError> {
    let (namespace, name) = policy_id(policy)?;
    let needs = archiver_needs(policy, cfg)?;
    let owner = policy.controller_owner_ref(&()).ok_or(JobError::Missing {
        field: "metadata.uid",
    })?;
    let mut pod = pod_spec(policy, cfg, needs, "Always");
    let container = &mut pod.containers[0];
    container.ports = Some(vec![ContainerPort {
        name: Some("status".into()),
        container_port: i32::from(STATUS_PORT),
        ..Default::default()
    }]);
    // Alive while it serves; a receiver that keeps failing shows in /status.
    container.liveness_probe = Some(Probe {
        http_get: Some(HTTPGetAction {
            path: Some("/healthz".into()),
            port: IntOrString::String("status".into()),
            ..Default::default()
        }),
        period_seconds: Some(20),
        failure_threshold: Some(3),
        ..Default::default()
    });

    let labels = base_labels(COMPONENT, name);
    let selector: BTreeMap<String, String> = labels
        .iter()
        .filter(|(k, _)| k.as_str() == LABEL_COMPONENT || k.as_str() == LABEL_POLICY)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    Ok(Deployment {
        metadata: ObjectMeta {
            name: Some(archiver_name(name)),
            namespace: Some(namespace.into()),
            labels: Some(labels.clone()),
            owner_references: Some(vec![owner]),
            ..Default::default()
        },
        spec: DeploymentSpec {
            replicas: Some(1),
            selector: LabelSelector {
                match_labels: Some(selector),
                ..Default::default()
            },
            strategy: Some(DeploymentStrategy {
                type_: Some("Recreate".into()),
                ..Default::default()
            }),
            template: PodTemplateSpec {
                metadata: Some(super::jobs::pod::pod_meta(
                    &policy.spec.job_template.clone().unwrap_or_default(),
                    labels,
                )),
                spec: Some(pod),
            },
            ..Default::default()
        },
        status: None,
    })
}

pub use crate::wire::ArchiverStatus;

/// How far the reported figures may drift before the status is rewritten.
pub const STATUS_REFRESH: chrono::TimeDelta = chrono::TimeDelta::seconds(30);

fn close(a: &WalArchive, b: &WalArchive) -> bool {
    let near = |x: Option<DateTime<Utc>>, y: Option<DateTime<Utc>>| match (x, y) {
        (Some(x), Some(y)) => (x - y).abs() < STATUS_REFRESH,
        (x, y) => x == y,
    };
    let lag = |x: Option<i64>, y: Option<i64>| match (x, y) {
        (Some(x), Some(y)) => (x - y).abs() < STATUS_REFRESH.num_seconds(),
        (x, y) => x == y,
    };
    a.healthy == b.healthy
        && near(a.last_archived_at, b.last_archived_at)
        && lag(a.lag_seconds, b.lag_seconds)
}

/// What the controller learnt about the archiver this reconcile.
#[derive(Clone, Debug, PartialEq)]
pub enum Observed {
    /// No running pod with an address yet.
    NoPod,
    /// The pod did not answer `/status` (the error, for the condition).
    Unreachable(String),
    Status(ArchiverStatus),
}

/// The policy's `status.walArchive` and `WalArchiving` condition from an
/// observation; None when the policy has no archiver. Lagging means WAL has
/// waited longer than twice maxWalDelay: the RPO the policy promises is not kept.
pub fn archive_status(
    policy: &BackupPolicy,
    old: &BackupPolicyStatus,
    observed: &Observed,
) -> Option<(WalArchive, ConditionUpdate<'static>)> {
    if !wants_archiver(policy) {
        return None;
    }
    let previous = old.wal_archive.as_deref();
    let generation = policy.metadata.generation;
    let limit = policy
        .spec
        .point_in_time_recovery
        .as_ref()
        .and_then(|p| parse_duration(&p.max_wal_delay))
        .map_or(120.0, |d| 2.0 * d.num_milliseconds() as f64 / 1000.0);
    // What was known stays known while the archiver is away.
    let mut archive = previous.cloned().unwrap_or(WalArchive {
        healthy: false,
        last_segment: None,
        last_archived_at: None,
        lag_seconds: None,
        message: None,
    });
    let (healthy, reason, message) = match observed {
        Observed::NoPod => (
            false,
            reasons::ARCHIVER_STARTING,
            "waiting for the wal-stream pod to run".to_string(),
        ),
        Observed::Unreachable(e) => (
            false,
            reasons::ARCHIVER_UNREACHABLE,
            format!("the wal-stream pod did not answer /status: {e}"),
        ),
        Observed::Status(s) => {
            archive.last_segment = s.last_segment.clone().or(archive.last_segment);
            archive.last_archived_at = s.last_shipped_at.or(archive.last_archived_at);
            archive.lag_seconds = Some(s.lag_seconds.round() as i64);
            if s.lag_seconds > limit {
                (
                    false,
                    reasons::ARCHIVE_LAGGING,
                    format!(
                        "WAL has waited {:.0} s for the destinations (limit {limit:.0} s, twice maxWalDelay)",
                        s.lag_seconds
                    ),
                )
            } else {
                let at = archive
                    .last_segment
                    .as_deref()
                    .map_or("no segment yet".to_string(), |seg| format!("up to {seg}"));
                (true, reasons::ARCHIVING, format!("archiving, {at}"))
            }
        }
    };
    archive.healthy = healthy;
    archive.message = Some(message.clone());
    // Each status write wakes this policy's reconcile again: write when the
    // state changes or the figures have moved by STATUS_REFRESH, not on
    // every second of lag, or the controller would loop on its own writes.
    let same_reason =
        find(&old.conditions, types::WAL_ARCHIVING).is_some_and(|c| c.reason == reason);
    if let Some(prev) = previous.filter(|p| same_reason && close(p, &archive)) {
        archive = prev.clone();
    }
    let message = archive.message.clone().unwrap_or_default();
    let condition = ConditionUpdate {
        type_: types::WAL_ARCHIVING,
        status: healthy,
        reason,
        message,
        observed_generation: generation,
    };
    Some((archive, condition))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn policy(pitr: bool, method: &str) -> BackupPolicy {
        let spec = json!({
            "source": {"postgres": {
                "connectionSecretRef": {"name": "orders-db", "passwordKey": "pw"},
                "method": method}},
            "schedule": {"daily": "0 2 * * *"},
            "pointInTimeRecovery": {"enabled": pitr, "maxWalDelay": "5s"},
            "destinations": [
                {"name": "primary", "s3": {"region": "us-east-1", "bucket": "bk",
                    "credentialsSecretRef": {"name": "s3-primary"}}},
                {"name": "dr-eu", "s3": {"region": "eu-west-1", "bucket": "bk-dr"}}
            ],
            "encryption": {"keySecretRef": {"name": "backup-keys"}, "compression": "gzip"}
        });
        let mut p = BackupPolicy::new("orders", serde_json::from_value(spec).unwrap());
        p.metadata.namespace = Some("shop".into());
        p.metadata.uid = Some("policy-uid".into());
        p
    }

    #[test]
    fn only_physical_policies_with_pitr_enabled_get_an_archiver() {
        assert!(wants_archiver(&policy(true, "physical")));
        assert!(!wants_archiver(&policy(false, "physical")));
        assert!(!wants_archiver(&policy(true, "logical")));
        let mut suspended = policy(true, "physical");
        suspended.spec.suspend = true;
        assert!(
            wants_archiver(&suspended),
            "suspend stops backups, not archiving"
        );
    }

    #[test]
    fn slot_names_are_valid_and_distinct() {
        assert_eq!(slot_name("shop", "orders-db"), "lifeboat_shop_orders_db");
        let long = "p".repeat(60);
        let a = slot_name("shop", &long);
        let b = slot_name("shop2", &long);
        assert!(a.len() <= 63 && b.len() <= 63);
        assert_ne!(a, b);
        assert!(a
            .bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_'));
    }

    #[test]
    fn the_deployment_runs_wal_stream_on_the_slot_with_secrets_by_reference() {
        let cfg = JobConfig::new("lifeboat:1.0");
        let d = archiver_deployment(&policy(true, "physical"), &cfg).unwrap();
        assert_eq!(d.metadata.name.as_deref(), Some("orders-wal-stream"));
        assert_eq!(
            d.metadata.owner_references.as_ref().unwrap()[0].uid,
            "policy-uid"
        );
        let spec = d.spec;
        assert_eq!(spec.replicas, Some(1));
        assert_eq!(spec.strategy.unwrap().type_.as_deref(), Some("Recreate"));
        let pod = spec.template.spec.unwrap();
        assert_eq!(pod.restart_policy.as_deref(), Some("Always"));
        let c = &pod.containers[0];
        let args = c.args.clone().unwrap();
        let after = |flag: &str| {
            let i = args.iter().position(|a| a == flag).unwrap();
            args[i + 1].clone()
        };
        assert_eq!(args[0], "wal-stream");
        assert_eq!(args.iter().filter(|a| *a == "--to").count(), 2);
        assert_eq!(after("--slot"), "lifeboat_shop_orders");
        assert_eq!(after("--max-wal-delay"), "5s");
        assert_eq!(after("--compression"), "gzip");
        assert_eq!(after("--spool"), SPOOL_DIR);
        assert_eq!(after("--password-file"), cfg.password_file());
        let spool = c
            .volume_mounts
            .as_ref()
            .unwrap()
            .iter()
            .find(|m| m.name == "spool")
            .unwrap();
        assert_eq!(spool.read_only, None, "the spool is written");
        // Nothing secret is spelled out: only references.
        let text = serde_json::to_string(&pod).unwrap();
        assert!(text.contains("\"secretName\":\"orders-db\""));
        assert!(text.contains("\"secretName\":\"backup-keys\""));
        assert!(c
            .env
            .as_ref()
            .unwrap()
            .iter()
            .all(|e| e.value.is_none() || !e.name.contains("PASSWORD")));
    }

    #[test]
    fn status_json_round_trips_in_camel_case() {
        let s: ArchiverStatus = serde_json::from_value(json!({
            "lastSegment": "000000010000000000000005",
            "lastShippedAt": "2026-11-26T02:00:00Z",
            "lagSeconds": 1.5,
            "partialBytes": 8192
        }))
        .unwrap();
        assert_eq!(s.last_segment.as_deref(), Some("000000010000000000000005"));
        assert_eq!(s.lag_seconds, 1.5);
    }

    fn status(lag: f64) -> Observed {
        Observed::Status(ArchiverStatus {
            last_segment: Some("000000010000000000000007".into()),
            last_shipped_at: Some("2026-11-26T02:00:00Z".parse().unwrap()),
            lag_seconds: lag,
            partial_bytes: 0,
        })
    }

    /// The status after a reconcile wrote `archive` and its condition.
    fn written(archive: &WalArchive, c: ConditionUpdate<'_>) -> BackupPolicyStatus {
        let mut s = BackupPolicyStatus {
            wal_archive: Some(Box::new(archive.clone())),
            ..Default::default()
        };
        crate::api::conditions::set_condition(&mut s.conditions, c, Utc::now());
        s
    }

    #[test]
    fn archive_status_follows_the_archiver() {
        let p = policy(true, "physical");
        let none = BackupPolicyStatus::default();
        let (a, c) = archive_status(&p, &none, &status(1.2)).unwrap();
        assert!(a.healthy && c.status);
        assert_eq!(c.reason, reasons::ARCHIVING);
        assert_eq!(a.lag_seconds, Some(1));
        assert_eq!(a.last_segment.as_deref(), Some("000000010000000000000007"));
        // maxWalDelay is 5s: 11 s of lag breaks the promise.
        let after_a = written(&a, c);
        let (lagging, c) = archive_status(&p, &after_a, &status(11.0)).unwrap();
        assert!(!lagging.healthy && !c.status);
        assert_eq!(c.reason, reasons::ARCHIVE_LAGGING);
        assert!(c.message.contains("11 s"), "{}", c.message);
        // Unreachable keeps what was known and says why.
        let (down, c) = archive_status(
            &p,
            &after_a,
            &Observed::Unreachable("connection refused".into()),
        )
        .unwrap();
        assert_eq!(down.last_archived_at, a.last_archived_at);
        assert_eq!(c.reason, reasons::ARCHIVER_UNREACHABLE);
        assert!(c.message.contains("connection refused"));
        let (_, c) = archive_status(&p, &none, &Observed::NoPod).unwrap();
        assert_eq!(c.reason, reasons::ARCHIVER_STARTING);
        assert!(archive_status(&policy(false, "physical"), &none, &status(0.0)).is_none());
    }

    #[test]
    fn small_moves_do_not_rewrite_the_status() {
        let p = policy(true, "physical");
        let (a, c) = archive_status(&p, &BackupPolicyStatus::default(), &status(1.0)).unwrap();
        let old = written(&a, c);
        let moved = |lag: f64, shipped: &str| {
            Observed::Status(ArchiverStatus {
                last_segment: Some("000000010000000000000008".into()),
                last_shipped_at: Some(shipped.parse().unwrap()),
                lag_seconds: lag,
                partial_bytes: 0,
            })
        };
        // 3 s later, one segment on: the same status, so no write and no wake-up.
        let (same, _) = archive_status(&p, &old, &moved(2.0, "2026-11-26T02:00:03Z")).unwrap();
        assert_eq!(same, a);
        // 40 s later: rewritten.
        let (newer, _) = archive_status(&p, &old, &moved(2.0, "2026-11-26T02:00:40Z")).unwrap();
        assert_eq!(
            newer.last_segment.as_deref(),
            Some("000000010000000000000008")
        );
    }
}
