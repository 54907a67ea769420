//! ApplicationDrill reconcile, pure: on `spec.schedule` an
//! ApplicationRestore of the drill's parts to the slot's instant (owned by
//! the drill, labelled [`DRILL_LABEL`], named `<drill>-<yyyymmddhhmm>`);
//! when it finishes, its result becomes `status.lastDrill` and the
//! `DrillPassed` condition — and each part's policy's `status.lastDrill`,
//! as a policy's own drill — and the scratch namespaces are deleted. A drill
//! starts only when none of its scratch namespaces exists, so the only
//! namespaces it ever deletes are ones its own restore created. Finished
//! drills beyond [`KEEP`] are deleted (their parts with them).

pub mod reconcile;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::{Resource, ResourceExt};

use super::drill::is_newest;
use super::{created_at, Note};
use crate::api::app_drill::{AppDrillResult, ApplicationDrill, ApplicationDrillStatus};
use crate::api::app_restore::ApplicationRestore;
use crate::api::conditions::{reasons, set_condition, types, ConditionUpdate};
use crate::api::join_errors;
use crate::api::policy::LastDrill;
use crate::api::restore::RestorePhase;

/// Label on a drill's ApplicationRestores, naming the drill.
pub const DRILL_LABEL: &str = "lifeboat.dev/application-drill";
/// Annotation on a drill's ApplicationRestore: the slot it was made for.
pub const ANNOTATION_SLOT: &str = "lifeboat.dev/scheduled-at";
/// Finished drills kept; older ones are deleted.
pub const KEEP: usize = 3;

/// What the controller saw of one drill.
#[derive(Clone, Copy, Debug)]
pub struct Observed<'a> {
    pub drill: &'a ApplicationDrill,
    /// Its ApplicationRestores.
    pub restores: &'a [ApplicationRestore],
    /// Those of its scratch namespaces that exist.
    pub existing: &'a [String],
    /// The service account's permissions, asked when a drill is due:
    /// `Some(None)` granted, `Some(Some(_))` the first one missing.
    pub access: Option<Option<&'a str>>,
    pub now: DateTime<Utc>,
}

/// A drill that just finished, for the metrics.
#[derive(Clone, Debug, PartialEq)]
pub struct DrillOutcome {
    pub succeeded: bool,
    pub recovery_time_seconds: Option<i64>,
    /// The parts' policies.
    pub policies: Vec<String>,
}

#[derive(Clone, Debug, Default)]
pub struct Decision {
    pub create: Option<ApplicationRestore>,
    pub delete_restores: Vec<String>,
    pub delete_namespaces: Vec<String>,
    pub status: Option<ApplicationDrillStatus>,
    pub events: Vec<Note>,
    pub outcome: Option<DrillOutcome>,
    /// The newest finished drill as the `lastDrill` of each part's policy
    /// (the names): written where [`policy_needs`] says so.
    pub policy_drill: Option<(Vec<String>, LastDrill)>,
    pub requeue_after: Option<Duration>,
}

/// True when a policy whose `lastDrill` is `current` should get `ours`:
/// not already there, and no later drill of the policy's own.
pub fn policy_needs(current: Option<&LastDrill>, ours: &LastDrill) -> bool {
    current != Some(ours) && is_newest(&ours.run, ours.completed_at, current)
}

fn finished(r: &ApplicationRestore) -> Option<(DateTime<Utc>, bool)> {
    let s = r.status.as_ref()?;
    match s.phase {
        RestorePhase::Succeeded => Some((s.completed_at?, true)),
        RestorePhase::Failed => Some((s.completed_at?, false)),
        _ => None,
    }
}

fn slot_of(r: &ApplicationRestore) -> Option<DateTime<Utc>> {
    r.annotations().get(ANNOTATION_SLOT)?.parse().ok()
}

/// The slot a drill should start for now, if any (before permissions and
/// scratch namespaces are looked at). The reconcile asks for the
/// permissions only then.
pub fn due_slot(
    drill: &ApplicationDrill,
    restores: &[ApplicationRestore],
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    if drill.spec.suspend || restores.iter().any(|r| finished(r).is_none()) {
        return None;
    }
    let cron = drill.spec.cron().ok()?;
    let since = restores
        .iter()
        .filter_map(slot_of)
        .max()
        .or_else(|| created_at(drill))
        .unwrap_or(now);
    cron.latest_between(since, now)
}

/// The ApplicationRestore of the drill's `slot`.
pub fn drill_restore(drill: &ApplicationDrill, slot: DateTime<Utc>) -> Option<ApplicationRestore> {
    let name = format!("{}-{}", drill.name_any(), slot.format("%Y%m%d%H%M"));
    Some(ApplicationRestore {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: drill.namespace(),
            labels: Some(BTreeMap::from([(
                DRILL_LABEL.to_string(),
                super::jobs::label_value(&drill.name_any()),
            )])),
            annotations: Some(BTreeMap::from([(
                ANNOTATION_SLOT.to_string(),
                slot.to_rfc3339(),
            )])),
            owner_references: Some(vec![drill.controller_owner_ref(&())?]),
            ..Default::default()
        },
        spec: drill.spec.restore_spec(slot),
        status: None,
    })
}

/// Decides one drill. Pure.
pub fn decide(obs: Observed<'_>, resync: Duration) -> Decision {
    let drill = obs.drill;
    let now = obs.now;
    let generation = drill.metadata.generation;
    let old = drill.status.clone().unwrap_or_default();
    let mut st = old.clone();
    st.observed_generation = generation;
    let mut d = Decision {
        requeue_after: Some(resync),
        ..Decision::default()
    };
    let ns = drill.namespace().unwrap_or_default();
    let name_ok = drill.name_any().len() <= crate::api::app_drill::MAX_DRILL_NAME;
    let invalid = match (name_ok, drill.spec.validate(&ns)) {
        (false, _) => Some(format!(
            "metadata.name: at most {} characters (its restores add -<yyyymmddhhmm>)",
            crate::api::app_drill::MAX_DRILL_NAME
        )),
        (true, Err(errors)) => Some(join_errors(&errors)),
        (true, Ok(())) => None,
    };
    set_condition(
        &mut st.conditions,
        ConditionUpdate {
            type_: types::READY,
            status: invalid.is_none(),
            reason: if invalid.is_none() {
                reasons::RECONCILED
            } else {
                reasons::INVALID_SPEC
            },
            message: invalid
                .clone()
                .unwrap_or_else(|| "drills run on schedule".into()),
            observed_generation: generation,
        },
        now,
    );
    record_last(&obs, &mut st, &mut d);

    let running = obs.restores.iter().any(|r| finished(r).is_none());
    if invalid.is_none() {
        st.next_drill_at = match drill.spec.suspend {
            true => None,
            false => drill.spec.cron().ok().and_then(|c| c.next_after(now)),
        };
        if let Some(slot) = due_slot(drill, obs.restores, now) {
            start(&obs, slot, &st, &mut d);
        }
    }
    if let Some(next) = st.next_drill_at.filter(|_| !running) {
        if let Ok(wait) = (next - now).to_std() {
            d.requeue_after = Some(wait.min(resync));
        }
    }
    d.status = (st != old).then_some(st);
    d
}

/// The newest finished drill as `lastDrill`; its scratch namespaces deleted.
fn record_last(obs: &Observed<'_>, st: &mut ApplicationDrillStatus, d: &mut Decision) {
    let mut done: Vec<(&ApplicationRestore, DateTime<Utc>, bool)> = obs
        .restores
        .iter()
        .filter_map(|r| finished(r).map(|(at, ok)| (r, at, ok)))
        .collect();
    done.sort_by_key(|(r, at, _)| std::cmp::Reverse((*at, r.name_any())));
    d.delete_restores = done
        .iter()
        .skip(KEEP)
        .filter(|(r, ..)| r.metadata.deletion_timestamp.is_none())
        .map(|(r, ..)| r.name_any())
        .collect();
    let Some((r, at, ok)) = done.first() else {
        return;
    };
    let running = obs.restores.iter().any(|r| finished(r).is_none());
    let s = r.status.clone().unwrap_or_default();
    let name = r.name_any();
    let new = st.last_drill.as_ref().is_none_or(|l| l.name != name);
    if !running {
        d.delete_namespaces = obs.existing.to_vec();
    }
    st.last_drill = Some(AppDrillResult {
        name: name.clone(),
        point_in_time: r.spec.point_in_time,
        completed_at: *at,
        succeeded: *ok,
        recovery_time_seconds: s.recovery_time_seconds,
        message: s.message.clone(),
        cleaned_up: !running && obs.existing.is_empty(),
    });
    let message = format!("drill {name}: {}", s.message.clone().unwrap_or_default());
    let policies: Vec<String> = r
        .spec
        .parts
        .iter()
        .map(|p| p.policy_ref.name.clone())
        .collect();
    d.policy_drill = Some((
        policies.clone(),
        LastDrill {
            run: name.clone(),
            completed_at: *at,
            succeeded: *ok,
            recovery_time_seconds: s.recovery_time_seconds,
            // Not a RestoreRequest: the run names the ApplicationRestore.
            restore_request: None,
            message: Some(format!("application {message}")),
        },
    ));
    set_condition(
        &mut st.conditions,
        ConditionUpdate {
            type_: types::DRILL_PASSED,
            status: *ok,
            reason: if *ok {
                reasons::DRILL_SUCCEEDED
            } else {
                reasons::DRILL_FAILED
            },
            message: message.clone(),
            observed_generation: obs.drill.metadata.generation,
        },
        obs.now,
    );
    if new {
        let note = if *ok { Note::normal } else { Note::warning };
        let reason = if *ok { "DrillSucceeded" } else { "DrillFailed" };
        d.events.push(note(reason, "Drill", message));
        d.outcome = Some(DrillOutcome {
            succeeded: *ok,
            recovery_time_seconds: s.recovery_time_seconds,
            policies,
        });
    }
}

/// Starts the drill of `slot` unless a scratch namespace is still there
/// or a permission is missing.
fn start(obs: &Observed<'_>, slot: DateTime<Utc>, st: &ApplicationDrillStatus, d: &mut Decision) {
    if let Some(ns) = obs.existing.first() {
        // Ours, being deleted after the last drill; or someone else's,
        // which a drill must not delete.
        let ours = st.last_drill.as_ref().is_some_and(|l| !l.cleaned_up);
        if !ours {
            d.events.push(Note::warning(
                "ScratchNamespaceExists",
                "Drill",
                format!("scratch namespace {ns} exists; the drill waits (it would delete it)"),
            ));
        }
        d.requeue_after =
            Some(Duration::from_secs(5).min(d.requeue_after.unwrap_or(Duration::MAX)));
        return;
    }
    match obs.access {
        None => d.requeue_after = Some(Duration::ZERO),
        Some(Some(denied)) => d.events.push(Note::warning(
            "PermissionMissing",
            "Drill",
            denied.to_string(),
        )),
        Some(None) => {
            if let Some(r) = drill_restore(obs.drill, slot) {
                d.events.push(Note::normal(
                    "DrillStarted",
                    "Drill",
                    format!("drill {} to {}", r.name_any(), slot.to_rfc3339()),
                ));
                d.create = Some(r);
            }
        }
    }
}
