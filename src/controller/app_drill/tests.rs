use serde_json::json;

use super::*;
use crate::api::app_drill::ApplicationDrillSpec;
use crate::api::app_restore::ApplicationRestoreStatus;
use crate::controller::test_support::{at, RESYNC};

fn drill(extra: serde_json::Value) -> ApplicationDrill {
    let mut spec = json!({
        "schedule": "0 4 * * *",
        "scratchNamespaces": ["shop-drill"],
        "serviceAccountName": "driller",
        "parts": [
            {"name": "config", "policyRef": {"name": "shop-config"},
             "target": {"config": {"serviceAccountName": "driller",
                                   "namespaceMapping": [{"from": "shop", "to": "shop-drill"}]}}},
            {"name": "orders", "policyRef": {"name": "orders"},
             "target": {"postgres": {"connectionSecretRef": {"name": "scratch-db"}, "database": "drill_orders"}}}
        ]
    });
    for (k, v) in extra.as_object().unwrap() {
        spec[k] = v.clone();
    }
    let spec: ApplicationDrillSpec = serde_json::from_value(spec).unwrap();
    let mut d = ApplicationDrill::new("shop", spec);
    d.metadata.namespace = Some("ops".into());
    d.metadata.uid = Some("drill-uid".into());
    d.metadata.creation_timestamp =
        Some(crate::api::conditions::to_time(at("2026-11-20T12:00:00Z")));
    d
}

fn decide_at(
    d: &mut ApplicationDrill,
    restores: &[ApplicationRestore],
    existing: &[String],
    now: &str,
) -> Decision {
    let access = due_slot(d, restores, at(now)).map(|_| None);
    let out = decide(
        Observed {
            drill: d,
            restores,
            existing,
            access,
            now: at(now),
        },
        RESYNC,
    );
    if let Some(s) = &out.status {
        d.status = Some(s.clone());
    }
    out
}

fn finish(r: &mut ApplicationRestore, ok: bool, done: &str) {
    r.status = Some(ApplicationRestoreStatus {
        phase: if ok {
            RestorePhase::Succeeded
        } else {
            RestorePhase::Failed
        },
        completed_at: Some(at(done)),
        recovery_time_seconds: ok.then_some(95),
        message: Some(if ok {
            "every part restored".into()
        } else {
            "step databases failed: part orders: connection refused".into()
        }),
        ..Default::default()
    });
}

#[test]
fn a_due_slot_creates_a_restore_of_the_slot_into_scratch_and_waits_for_it() {
    let mut d = drill(json!({}));
    let out = decide_at(&mut d, &[], &[], "2026-11-21T04:00:30Z");
    let r = out.create.expect("a drill restore");
    assert_eq!(r.name_any(), "shop-202611210400");
    assert_eq!(r.spec.point_in_time, at("2026-11-21T04:00:00Z"));
    assert!(
        r.spec.parts[1].drop_after,
        "the scratch database is dropped"
    );
    assert!(r.spec.maintenance.is_none());
    assert_eq!(r.labels()[DRILL_LABEL], "shop");
    assert_eq!(r.owner_references()[0].uid, "drill-uid");
    assert_eq!(
        d.status.as_ref().unwrap().next_drill_at,
        Some(at("2026-11-22T04:00:00Z"))
    );
    // While it runs, nothing new starts, even when the next slot passes.
    let out = decide_at(&mut d, &[r], &[], "2026-11-22T05:00:00Z");
    assert!(out.create.is_none());
}

#[test]
fn a_finished_drill_is_recorded_its_scratch_namespace_deleted_and_the_next_waits_for_that() {
    let mut d = drill(json!({}));
    let mut r = drill_restore(&d, at("2026-11-21T04:00:00Z")).unwrap();
    finish(&mut r, false, "2026-11-21T04:02:00Z");
    let scratch = vec!["shop-drill".to_string()];
    let out = decide_at(
        &mut d,
        std::slice::from_ref(&r),
        &scratch,
        "2026-11-22T04:00:10Z",
    );
    assert_eq!(out.delete_namespaces, scratch);
    assert!(
        out.create.is_none(),
        "not while the scratch namespace is there"
    );
    let last = d.status.as_ref().unwrap().last_drill.clone().unwrap();
    assert!(!last.succeeded && !last.cleaned_up);
    assert!(last.message.unwrap().contains("connection refused"));
    let o = out.outcome.unwrap();
    assert_eq!(o.policies, ["shop-config", "orders"]);
    assert!(!o.succeeded);
    // Recorded once.
    let again = decide_at(
        &mut d,
        std::slice::from_ref(&r),
        &scratch,
        "2026-11-22T04:00:20Z",
    );
    assert!(again.outcome.is_none());
    // Gone: the next drill starts.
    let out = decide_at(
        &mut d,
        std::slice::from_ref(&r),
        &[],
        "2026-11-22T04:00:30Z",
    );
    assert!(
        d.status
            .as_ref()
            .unwrap()
            .last_drill
            .as_ref()
            .unwrap()
            .cleaned_up
    );
    assert_eq!(out.create.unwrap().name_any(), "shop-202611220400");
}

#[test]
fn a_namespace_the_drill_did_not_make_is_never_deleted_and_blocks_the_drill() {
    let mut d = drill(json!({}));
    let scratch = vec!["shop-drill".to_string()];
    let out = decide_at(&mut d, &[], &scratch, "2026-11-21T04:00:30Z");
    assert!(out.create.is_none() && out.delete_namespaces.is_empty());
    assert!(out
        .events
        .iter()
        .any(|e| e.reason == "ScratchNamespaceExists"));
}

#[test]
fn old_drills_beyond_three_are_deleted_and_a_missing_permission_starts_nothing() {
    let mut d = drill(json!({}));
    let restores: Vec<ApplicationRestore> = (1..=5)
        .map(|day| {
            let slot = at(&format!("2026-11-2{day}T04:00:00Z"));
            let mut r = drill_restore(&d, slot).unwrap();
            finish(&mut r, true, &format!("2026-11-2{day}T04:01:00Z"));
            r
        })
        .collect();
    let out = decide_at(&mut d, &restores, &[], "2026-11-25T05:00:00Z");
    assert_eq!(
        out.delete_restores,
        ["shop-202611220400", "shop-202611210400"]
    );
    let status = d.status.as_ref().unwrap();
    assert_eq!(
        status.last_drill.as_ref().unwrap().recovery_time_seconds,
        Some(95)
    );

    let mut d = drill(json!({}));
    let out = decide(
        Observed {
            drill: &d,
            restores: &[],
            existing: &[],
            access: Some(Some(
                "service account ops/driller cannot delete namespaces in namespace shop-drill",
            )),
            now: at("2026-11-21T04:00:30Z"),
        },
        RESYNC,
    );
    assert!(out.create.is_none());
    assert!(out.events.iter().any(|e| e.reason == "PermissionMissing"));
    d.status = out.status;
}

#[test]
fn an_invalid_drill_says_why_and_never_runs() {
    let mut d = drill(json!({"scratchNamespaces": ["ops"]}));
    let out = decide_at(&mut d, &[], &[], "2026-11-21T04:00:30Z");
    assert!(out.create.is_none());
    let ready = d
        .status
        .as_ref()
        .unwrap()
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .unwrap();
    assert_eq!(ready.status, "False");
    assert!(
        ready.message.contains("spec.scratchNamespaces[0]"),
        "{}",
        ready.message
    );
}

#[test]
fn a_finished_drill_becomes_the_last_drill_of_each_part_policy_unless_a_later_one_is() {
    let mut d = drill(json!({}));
    let mut r = drill_restore(&d, at("2026-11-21T04:00:00Z")).unwrap();
    finish(&mut r, true, "2026-11-21T04:02:00Z");
    let out = decide_at(
        &mut d,
        std::slice::from_ref(&r),
        &[],
        "2026-11-21T04:02:10Z",
    );
    let (policies, last) = out.policy_drill.expect("written to the policies");
    assert_eq!(policies, ["shop-config", "orders"]);
    assert_eq!(last.run, "shop-202611210400");
    assert_eq!(last.completed_at, at("2026-11-21T04:02:00Z"));
    assert!(last.succeeded);
    assert_eq!(last.recovery_time_seconds, Some(95));
    assert_eq!(last.restore_request, None);
    assert_eq!(
        last.message.as_deref(),
        Some("application drill shop-202611210400: every part restored")
    );
    // Written where missing or older; not again, not over a later drill.
    assert!(policy_needs(None, &last));
    let older = LastDrill {
        run: "orders-drill-202611200500".into(),
        completed_at: at("2026-11-20T05:01:00Z"),
        ..last.clone()
    };
    assert!(policy_needs(Some(&older), &last));
    assert!(!policy_needs(Some(&last), &last));
    let later = LastDrill {
        completed_at: at("2026-11-21T05:01:00Z"),
        ..older
    };
    assert!(!policy_needs(Some(&later), &last));
    // Still said on the next reconcile, for a policy a write missed.
    let again = decide_at(
        &mut d,
        std::slice::from_ref(&r),
        &[],
        "2026-11-21T04:03:00Z",
    );
    assert_eq!(again.policy_drill.map(|(_, l)| l), Some(last));
    // Nothing before a drill finished.
    let mut fresh = drill(json!({}));
    assert!(decide_at(&mut fresh, &[], &[], "2026-11-21T03:00:00Z")
        .policy_drill
        .is_none());
}
