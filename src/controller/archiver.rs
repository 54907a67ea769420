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
use serde::{Deserialize, Serialize};

use super::jobs::{
    add_connection, add_destination_volumes, add_keys, base_labels, bounded_name, common_mounts,
    common_volumes, compression_arg, destination_url, mount, pod_spec, short_hash, JobConfig,
    JobError, LABEL_COMPONENT, LABEL_POLICY,
};
use crate::api::policy::PostgresMethod;
use crate::api::BackupPolicy;

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
    let physical = policy
        .spec
        .source
        .postgres
        .as_ref()
        .is_some_and(|pg| pg.method == PostgresMethod::Physical);
    physical
        && policy
            .spec
            .point_in_time_recovery
            .as_ref()
            .is_some_and(|p| p.enabled)
}

/// The arguments of `lifeboat wal-stream` for `policy`.
pub fn archiver_args(policy: &BackupPolicy, cfg: &JobConfig) -> Result<Vec<String>, JobError> {
    let (namespace, name) = id(policy)?;
    let pitr = policy
        .spec
        .point_in_time_recovery
        .as_ref()
        .ok_or(JobError::Missing {
            field: "spec.pointInTimeRecovery",
        })?;
    let mut args = vec!["wal-stream".to_string()];
    for dest in &policy.spec.destinations {
        args.extend(["--to".into(), destination_url(namespace, name, dest, cfg)]);
    }
    args.extend([
        "--password-file".into(),
        cfg.password_file(),
        "--slot".into(),
        slot_name(namespace, name),
        "--spool".into(),
        SPOOL_DIR.into(),
        "--max-wal-delay".into(),
        pitr.max_wal_delay.clone(),
        "--compression".into(),
        compression_arg(policy).into(),
        "--http-addr".into(),
        format!("0.0.0.0:{STATUS_PORT}"),
    ]);
    Ok(args)
}

fn id(policy: &BackupPolicy) -> Result<(&str, &str), JobError> {
    let namespace = policy
        .metadata
        .namespace
        .as_deref()
        .ok_or(JobError::Missing {
            field: "metadata.namespace",
        })?;
    let name = policy.metadata.name.as_deref().ok_or(JobError::Missing {
        field: "metadata.name",
    })?;
    Ok((namespace, name))
}

/// The archiver Deployment, owned by the policy (deleting the policy stops it).
pub fn archiver_deployment(policy: &BackupPolicy, cfg: &JobConfig) -> Result<Deployment, JobError> {
    let (namespace, name) = id(policy)?;
    let args = archiver_args(policy, cfg)?;
    let pg = policy
        .spec
        .source
        .postgres
        .as_ref()
        .ok_or(JobError::Missing {
            field: "spec.source.postgres",
        })?;
    let owner = policy.controller_owner_ref(&()).ok_or(JobError::Missing {
        field: "metadata.uid",
    })?;
    let mut env = Vec::new();
    let mut volumes = common_volumes();
    let mut mounts = common_mounts();
    add_connection(
        &pg.connection_secret_ref,
        cfg,
        &mut env,
        &mut volumes,
        &mut mounts,
    );
    add_keys(policy, cfg, &mut env, &mut volumes, &mut mounts);
    add_destination_volumes(policy, cfg, &mut volumes, &mut mounts);
    volumes.push(Volume {
        name: "spool".into(),
        empty_dir: Some(EmptyDirVolumeSource::default()),
        ..Default::default()
    });
    let mut spool = mount("spool", SPOOL_DIR);
    spool.read_only = None;
    mounts.push(spool);

    let mut pod = pod_spec(policy, cfg, args, env, mounts, volumes, "Always");
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
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    ..Default::default()
                }),
                spec: Some(pod),
            },
            ..Default::default()
        },
        status: None,
    })
}

/// What `lifeboat wal-stream` serves at `/status` (and writes to `--status-file`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ArchiverStatus {
    /// The newest segment every destination holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_segment: Option<String>,
    /// When WAL (a segment or the partial one) last reached every destination.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_shipped_at: Option<DateTime<Utc>>,
    /// Age of the oldest WAL received but not yet in every destination.
    #[serde(default)]
    pub lag_seconds: f64,
    #[serde(default)]
    pub partial_bytes: u64,
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
}
