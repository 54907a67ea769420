//! The notify Job: `lifeboat notify` of one [`Notification`] to the policy's
//! targets that want its event. Named after the incident
//! (`<policy>-notify-<event>-<hash>`), so creating it twice — a restart, a
//! stale cache, a second replica — meets "already exists" and the news goes
//! out once. Each target's Secret is mounted (only the keys it needs) at
//! `<mount root>/notify/<target>`; the arguments carry no secret. The Job
//! never retries its pod (a retry would send again to targets already
//! reached): a target not reached makes it Failed, its report says which.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::Job;
use kube::Resource;

use super::pod::{job, mount, secret_volume, JobMeta, PodNeeds};
use super::{
    base_labels, bounded_name, policy_id, short_hash, JobConfig, JobError, TERMINATION_LOG,
};
use crate::api::policy::notifications::keys;
use crate::api::policy::{NotificationEvent, NotificationTarget, TargetKind};
use crate::api::BackupPolicy;
use crate::wire::{Notification, NotifyEvent, NotifyKind, NotifyTarget};

/// Label naming the event a notify Job sends.
pub const LABEL_EVENT: &str = "lifeboat.dev/event";
/// File name of the e-mail relay's CA bundle in the target's directory.
const CA_FILE: &str = "ca.pem";

/// The API's name for a wire event.
fn api_event(e: NotifyEvent) -> NotificationEvent {
    match e {
        NotifyEvent::RunFailed => NotificationEvent::RunFailed,
        NotifyEvent::ObjectiveBreached => NotificationEvent::ObjectiveBreached,
        NotifyEvent::DrillFailed => NotificationEvent::DrillFailed,
        NotifyEvent::Recovered => NotificationEvent::Recovered,
        NotifyEvent::Succeeded => NotificationEvent::Succeeded,
        NotifyEvent::RestoreFinished => NotificationEvent::RestoreFinished,
    }
}

/// The name of the notify Job for `incident` (anything that identifies one
/// occurrence: a run, a breach and its repeat).
pub fn notify_job_name(policy: &str, event: NotifyEvent, incident: &str) -> String {
    let suffix = format!(
        "notify-{}-{}",
        event.as_str().to_ascii_lowercase(),
        short_hash(incident)
    );
    bounded_name(policy, &suffix)
}

/// A target as the pod names it, and what mounting its Secret takes.
fn target_in_pod(
    t: &NotificationTarget,
    index: usize,
    cfg: &JobConfig,
) -> Option<(NotifyTarget, PodNeeds)> {
    let dir = format!("{}/notify/{}", cfg.root(), t.name);
    let volume = format!("notify-{index}");
    let mounted = |secret: &str, items: Vec<(&str, &str)>| PodNeeds {
        volumes: vec![secret_volume(&volume, secret, items)],
        mounts: vec![mount(&volume, &dir)],
        ..Default::default()
    };
    let (kind, needs) = match t.kind()? {
        TargetKind::Slack(s) => (
            NotifyKind::Slack { dir: dir.clone() },
            mounted(&s.secret_ref.name, vec![(keys::URL, keys::URL)]),
        ),
        TargetKind::Heartbeat(s) => (
            NotifyKind::Heartbeat { dir: dir.clone() },
            mounted(&s.secret_ref.name, vec![(keys::URL, keys::URL)]),
        ),
        TargetKind::Webhook(s) => (
            NotifyKind::Webhook { dir: dir.clone() },
            mounted(
                &s.secret_ref.name,
                vec![
                    (keys::URL, keys::URL),
                    (keys::SIGNING_KEY, keys::SIGNING_KEY),
                ],
            ),
        ),
        TargetKind::PagerDuty(p) => (
            NotifyKind::PagerDuty {
                dir: dir.clone(),
                events_url: p.events_url.clone(),
            },
            mounted(
                &p.secret_ref.name,
                vec![(keys::ROUTING_KEY, keys::ROUTING_KEY)],
            ),
        ),
        TargetKind::Email(m) => {
            let needs = match &m.secret_ref {
                Some(r) => {
                    let mut items = vec![
                        (keys::USERNAME, keys::USERNAME),
                        (keys::PASSWORD, keys::PASSWORD),
                    ];
                    if let Some(ca) = &m.ca_key {
                        items.push((ca.as_str(), CA_FILE));
                    }
                    mounted(&r.name, items)
                }
                None => PodNeeds::default(),
            };
            (
                NotifyKind::Email {
                    host: m.host.clone(),
                    port: m.port,
                    from: m.from.clone(),
                    to: m.to.clone(),
                    dir: m.secret_ref.as_ref().map(|_| dir.clone()),
                },
                needs,
            )
        }
    };
    Some((
        NotifyTarget {
            name: t.name.clone(),
            kind,
        },
        needs,
    ))
}

/// The Job that sends `n` to the policy's targets that want its event, or
/// `None` when no target does. Owned by the policy.
pub fn notify_job(
    policy: &BackupPolicy,
    n: &Notification,
    incident: &str,
    cfg: &JobConfig,
) -> Result<Option<Job>, JobError> {
    let (namespace, policy_name) = policy_id(policy)?;
    let Some(notifications) = &policy.spec.notifications else {
        return Ok(None);
    };
    let event = api_event(n.event);
    let mut needs = PodNeeds {
        args: vec![
            "notify".into(),
            "--event".into(),
            serde_json::to_string(n).expect("a notification serialises"),
        ],
        ..Default::default()
    };
    let mut any = false;
    for (i, t) in notifications.targets.iter().enumerate() {
        if !t.wants(event) {
            continue;
        }
        let Some((target, target_needs)) = target_in_pod(t, i, cfg) else {
            continue;
        };
        any = true;
        needs.args.push("--target".into());
        needs
            .args
            .push(serde_json::to_string(&target).expect("a target serialises"));
        needs.add(target_needs);
    }
    if !any {
        return Ok(None);
    }
    needs
        .args
        .extend(["--report-file".into(), TERMINATION_LOG.into()]);
    let owner = policy.controller_owner_ref(&()).ok_or(JobError::Missing {
        field: "metadata.uid",
    })?;
    let mut labels = base_labels("notify", policy_name);
    labels.insert(LABEL_EVENT.into(), n.event.as_str().to_ascii_lowercase());
    let meta = JobMeta {
        name: notify_job_name(policy_name, n.event, incident),
        namespace,
        labels,
        annotations: BTreeMap::new(),
        owner,
    };
    let mut job = job(meta, needs, policy, cfg);
    if let Some(spec) = job.spec.as_mut() {
        // A second pod would send again to the targets the first reached.
        spec.backoff_limit = Some(0);
        // The Job is the record that the news went out: it stays at least
        // as long as a repeat interval, so a repeat is not sent twice.
        let repeat = notifications.repeat().map_or(0, |d| d.num_seconds());
        let ttl = i64::from(spec.ttl_seconds_after_finished.unwrap_or(0)) + repeat;
        spec.ttl_seconds_after_finished = Some(i32::try_from(ttl).unwrap_or(i32::MAX));
    }
    Ok(Some(job))
}
