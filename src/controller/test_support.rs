//! Fixtures the controllers' unit tests share.

use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::api::batch::v1::Job;

use crate::api::policy::BackupPolicySpec;
use crate::api::{BackupPolicy, BackupRun, BackupRunSpec, LocalRef, RunKind, Tier};

/// The longest wait between reconciles the tests decide with.
pub const RESYNC: Duration = Duration::from_secs(300);

/// An instant from RFC 3339 text.
pub fn at(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

/// An empty Job `name` in namespace `ns`.
pub fn job(name: &str) -> Job {
    let mut job = Job::default();
    job.metadata.name = Some(name.into());
    job.metadata.namespace = Some("ns".into());
    job.spec = Some(Default::default());
    job
}

/// The arguments of a Job's (first) container.
pub fn args(job: &Job) -> Vec<String> {
    let pod = job.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
    pod.containers[0].args.clone().unwrap()
}

/// The pod template of a Job.
pub fn pod(job: &Job) -> &k8s_openapi::api::core::v1::PodSpec {
    job.spec.as_ref().unwrap().template.spec.as_ref().unwrap()
}

/// The values following each `flag` in `args`.
pub fn after<'a>(args: &'a [String], flag: &str) -> Vec<&'a str> {
    args.windows(2)
        .filter(|w| w[0] == flag)
        .map(|w| w[1].as_str())
        .collect()
}

/// A daily BackupRun of policy `orders` in `shop`, with uid `uid`.
pub fn daily_run(name: &str, uid: &str) -> BackupRun {
    let mut r = BackupRun::new(
        name,
        BackupRunSpec {
            policy_ref: LocalRef::new("orders"),
            tier: Tier::Daily,
            kind: RunKind::Full,
            scheduled_at: None,
            deletion_policy: crate::api::DeletionPolicy::Retain,
        },
    );
    r.metadata.namespace = Some("shop".into());
    r.metadata.uid = Some(uid.into());
    r
}

/// Policy `orders` in `shop` backing up `source` (`{"volume": …}`) daily and
/// weekly to one destination with a credentials Secret.
pub fn policy_of_source(source: serde_json::Value) -> BackupPolicy {
    let spec: BackupPolicySpec = serde_json::from_value(serde_json::json!({
        "source": source,
        "schedule": {"daily": "0 2 * * *", "weekly": "0 3 * * 0"},
        "destinations": [{"name": "primary", "s3": {"region": "us-east-1", "bucket": "bk",
            "credentialsSecretRef": {"name": "s3"}}}],
        "encryption": {"keySecretRef": {"name": "backup-keys"}}
    }))
    .unwrap();
    let mut p = BackupPolicy::new("orders", spec);
    p.metadata.namespace = Some("shop".into());
    p.metadata.uid = Some("policy-uid".into());
    p
}
