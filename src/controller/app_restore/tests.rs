use k8s_openapi::api::core::v1::Pod;
use serde_json::{json, Value};

use super::*;
use crate::api::app_restore::ApplicationRestoreSpec;
use crate::controller::test_support::{at, policy_of_source, RESYNC};

const T: &str = "2026-11-22T09:00:00Z";

fn policies() -> Vec<BackupPolicy> {
    let mut orders = policy_of_source(json!({"postgres": {
        "connectionSecretRef": {"name": "orders-db"}, "databases": ["orders"]}}));
    orders.metadata.name = Some("orders".into());
    let mut uploads = policy_of_source(json!({"volume": {"claimName": "uploads"}}));
    uploads.metadata.name = Some("uploads".into());
    vec![orders, uploads]
}

fn app(extra: Value) -> ApplicationRestore {
    let mut spec = json!({
        "pointInTime": T,
        "serviceAccountName": "restorer",
        "parts": [
            {"name": "db", "policyRef": {"name": "orders"},
             "target": {"postgres": {"connectionSecretRef": {"name": "restore-db"}}}},
            {"name": "files", "policyRef": {"name": "uploads"},
             "target": {"files": {"claimName": "uploads"}}}
        ],
        "maintenance": {"scaleToZero": [{"kind": "Deployment", "namespace": "shop", "name": "web"}]},
        "smokeTests": [{"name": "home", "service": {"namespace": "shop", "name": "web", "port": 80},
                        "timeoutSeconds": 30}]
    });
    for (k, v) in extra.as_object().unwrap() {
        spec[k] = v.clone();
    }
    let spec: ApplicationRestoreSpec = serde_json::from_value(spec).unwrap();
    let mut a = ApplicationRestore::new("shop", spec);
    a.metadata.namespace = Some("shop".into());
    a.metadata.uid = Some("app-uid".into());
    a.metadata.creation_timestamp =
        Some(crate::api::conditions::to_time(at("2026-11-22T10:00:00Z")));
    a
}

pub(super) fn done_job(name: &str, message: &str, ok: bool) -> ObservedJob {
    let status = match ok {
        true => json!({"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]}),
        false => json!({"failed": 1, "conditions": [{"type": "Failed", "status": "True"}]}),
    };
    let job =
        serde_json::from_value(json!({"metadata": {"name": name}, "status": status})).unwrap();
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "p"},
        "status": {"containerStatuses": [{"name": "lifeboat", "image": "x", "imageID": "", "ready": false,
            "restartCount": 0, "state": {"terminated": {"exitCode": if ok {0} else {1}, "message": message}}}]}
    }))
    .unwrap();
    ObservedJob::new(Some(job), vec![pod])
}

fn plan(id: &str, completed: &str) -> String {
    json!({"backup_id": id, "destination": "primary", "completed_at": completed, "bytes": 100,
           "plain_bytes": 100, "databases": [], "skipped": [], "seconds": 1.0})
    .to_string()
}

pub(super) struct World {
    pub(super) app: ApplicationRestore,
    policies: Vec<BackupPolicy>,
    plans: Vec<ObservedJob>,
    parts: Vec<Option<RestoreRequest>>,
    pub(super) web: Option<WorkloadState>,
    pub(super) smoke: Option<(&'static str, Vec<SmokeResult>)>,
    access: Option<Option<String>>,
    claims: Vec<Option<ClaimSpace>>,
    /// The user's Jobs the reconcile looked at.
    pub(super) jobs: Vec<(String, ObservedJob)>,
}

impl World {
    pub(super) fn new(extra: Value) -> Self {
        World {
            app: app(extra),
            policies: policies(),
            plans: vec![ObservedJob::default(), ObservedJob::default()],
            parts: vec![None, None],
            web: Some(WorkloadState {
                replicas: 2,
                ready: 2,
            }),
            smoke: None,
            access: Some(None),
            claims: Vec::new(),
            jobs: Vec::new(),
        }
    }

    pub(super) fn decide(&mut self, now: &str) -> Decision {
        let policies: Vec<Option<&BackupPolicy>> = self.policies.iter().map(Some).collect();
        let workloads = [self.web];
        let d = decide(
            Observed {
                app: &self.app,
                policies: &policies,
                plans: &self.plans,
                parts: &self.parts,
                workloads: &workloads,
                claims: &self.claims,
                smoke: self.smoke.as_ref().map(|(s, r)| (*s, r.as_slice())),
                access: self.access.as_ref().map(|a| a.as_deref()),
                jobs: &self.jobs,
                now: at(now),
            },
            &JobConfig::default(),
            RESYNC,
        );
        if let Some(s) = &d.status {
            self.app.status = Some(s.clone());
        }
        d
    }

    pub(super) fn status(&self) -> &ApplicationRestoreStatus {
        self.app.status.as_ref().unwrap()
    }

    pub(super) fn phase(&self, step: &str) -> StepPhase {
        self.status()
            .steps
            .iter()
            .find(|s| s.name == step)
            .unwrap()
            .phase
    }

    pub(super) fn planned(&mut self) {
        self.plans = vec![
            done_job(
                "shop-db-plan",
                &plan("20261122T080000.000Z-aaaaaa", "2026-11-22T08:00:00Z"),
                true,
            ),
            done_job(
                "shop-files-plan",
                &plan("20261121T090000.000Z-bbbbbb", "2026-11-21T09:00:00Z"),
                true,
            ),
        ];
    }

    pub(super) fn part_done(&mut self, index: usize, d: &Decision, ok: bool) {
        let mut r = d
            .create_parts
            .iter()
            .find(|r| r.name_any().ends_with(&self.app.spec.parts[index].name))
            .cloned()
            .unwrap_or_else(|| self.parts[index].clone().unwrap());
        r.status = Some(crate::api::RestoreRequestStatus {
            phase: if ok {
                RestorePhase::Succeeded
            } else {
                RestorePhase::Failed
            },
            message: Some(if ok {
                "restored".into()
            } else {
                "connection refused".into()
            }),
            ..Default::default()
        });
        self.parts[index] = Some(r);
    }
}

pub(super) fn passed(step: &'static str) -> Option<(&'static str, Vec<SmokeResult>)> {
    Some((
        step,
        vec![SmokeResult {
            name: "home".into(),
            error: None,
        }],
    ))
}

#[test]
fn the_whole_procedure_runs_in_order_with_maintenance_around_the_parts() {
    let mut w = World::new(json!({}));
    let d = w.decide("2026-11-22T10:00:01Z");
    let names: Vec<String> = d.create_jobs.iter().map(|j| j.name_any()).collect();
    assert_eq!(names, ["shop-db-plan", "shop-files-plan"]);
    let owner = &d.create_jobs[0].metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.uid.as_str()),
        ("ApplicationRestore", "app-uid")
    );
    assert_eq!(w.status().current_step.as_deref(), Some(steps::PLAN));

    // Planned: the gaps; the workload's replicas recorded before any scaling.
    w.planned();
    let d = w.decide("2026-11-22T10:00:05Z");
    let plan = &w.status().plan;
    assert_eq!(plan[0].gap_seconds, 3600);
    assert_eq!(plan[1].gap_seconds, 86400);
    assert_eq!(w.phase(steps::PRE_CHECK), StepPhase::Succeeded);
    assert_eq!(w.phase(steps::CONFIGURATION), StepPhase::Skipped);
    assert!(
        d.scale.is_empty(),
        "scaled before the replicas were written"
    );
    assert_eq!(w.status().workloads[0].replicas, Some(2));

    let d = w.decide("2026-11-22T10:00:06Z");
    assert_eq!(d.scale.len(), 1);
    assert_eq!(d.scale[0].1, 0);
    w.web = Some(WorkloadState {
        replicas: 0,
        ready: 0,
    });

    // Databases before files, one part at a time.
    let d = w.decide("2026-11-22T10:00:07Z");
    assert_eq!(w.phase(steps::MAINTENANCE), StepPhase::Succeeded);
    let parts: Vec<String> = d.create_parts.iter().map(|r| r.name_any()).collect();
    assert_eq!(parts, ["shop-db"]);
    let part = &d.create_parts[0];
    assert_eq!(part.spec.point_in_time, Some(at(T)));
    assert_eq!(part.labels()[APP_LABEL], "shop");
    w.part_done(0, &d, true);
    let d = w.decide("2026-11-22T10:01:00Z");
    let parts: Vec<String> = d.create_parts.iter().map(|r| r.name_any()).collect();
    assert_eq!(parts, ["shop-files"]);
    // A part that scales the workload back up is held at zero again.
    w.web = Some(WorkloadState {
        replicas: 2,
        ready: 0,
    });
    let held = w.decide("2026-11-22T10:01:30Z");
    assert_eq!(held.scale[0].1, 0);
    assert_eq!(
        w.status().workloads[0].replicas,
        Some(2),
        "the first count is kept"
    );
    w.web = Some(WorkloadState {
        replicas: 0,
        ready: 0,
    });
    w.part_done(1, &d, true);
    let d = w.decide("2026-11-22T10:02:00Z");
    assert_eq!(w.phase(steps::VERIFICATION), StepPhase::Succeeded);
    assert_eq!(d.scale[0].1, 2, "end of maintenance scales back");
    assert_eq!(
        w.status().current_step.as_deref(),
        Some(steps::END_MAINTENANCE)
    );

    w.web = Some(WorkloadState {
        replicas: 2,
        ready: 1,
    });
    w.decide("2026-11-22T10:02:10Z");
    assert_eq!(w.phase(steps::END_MAINTENANCE), StepPhase::Running);
    w.web = Some(WorkloadState {
        replicas: 2,
        ready: 2,
    });
    w.decide("2026-11-22T10:02:20Z");
    assert_eq!(w.phase(steps::SMOKE_TESTS), StepPhase::Running);
    w.smoke = passed(steps::SMOKE_TESTS);
    w.decide("2026-11-22T10:02:21Z");
    assert_eq!(w.phase(steps::SMOKE_TESTS), StepPhase::Succeeded);
    assert_eq!(
        w.phase(steps::POST_CHECK),
        StepPhase::Running,
        "needs its own round"
    );
    w.smoke = passed(steps::POST_CHECK);
    let d = w.decide("2026-11-22T10:02:25Z");
    assert_eq!(w.status().phase, RestorePhase::Succeeded);
    assert_eq!(w.status().recovery_time_seconds, Some(145));
    let o = d.outcome.unwrap();
    assert!(
        o.summary.contains("- databases Succeeded 53 s"),
        "{}",
        o.summary
    );
}

#[test]
fn a_failing_smoke_test_fails_after_its_timeout_and_leaves_maintenance_on() {
    let mut w = World::new(json!({}));
    w.decide("2026-11-22T10:00:01Z");
    w.planned();
    w.decide("2026-11-22T10:00:02Z");
    w.decide("2026-11-22T10:00:03Z");
    w.web = Some(WorkloadState {
        replicas: 0,
        ready: 0,
    });
    let d = w.decide("2026-11-22T10:00:04Z");
    w.part_done(0, &d, true);
    let d = w.decide("2026-11-22T10:00:05Z");
    w.part_done(1, &d, true);
    w.decide("2026-11-22T10:00:06Z");
    w.web = Some(WorkloadState {
        replicas: 2,
        ready: 2,
    });
    w.decide("2026-11-22T10:00:07Z");
    w.smoke = Some((
        steps::SMOKE_TESTS,
        vec![SmokeResult {
            name: "home".into(),
            error: Some("GET http://10.0.0.1:80/ answered 503, expected 200".into()),
        }],
    ));
    w.decide("2026-11-22T10:00:20Z");
    assert_eq!(
        w.phase(steps::SMOKE_TESTS),
        StepPhase::Running,
        "retried within its timeout"
    );
    let d = w.decide("2026-11-22T10:00:40Z");
    let st = w.status();
    assert_eq!(st.phase, RestorePhase::Failed);
    let message = st.message.clone().unwrap();
    assert!(
        message.starts_with(
            "step smokeTests failed: smoke test home: GET http://10.0.0.1:80/ answered 503"
        ),
        "{message}"
    );
    assert!(
        message.ends_with("maintenance stays on: deployment shop/web at 0 (2 to restore)"),
        "{message}"
    );
    assert_eq!(
        d.scale,
        vec![(
            w.app.spec.maintenance.clone().unwrap().scale_to_zero[0].clone(),
            0
        )]
    );
    assert_eq!(w.phase(steps::POST_CHECK), StepPhase::Skipped);
}

#[test]
fn a_dry_run_plans_and_stops_having_created_nothing_else() {
    let mut w = World::new(json!({"dryRun": true}));
    w.decide("2026-11-22T10:00:01Z");
    w.planned();
    let d = w.decide("2026-11-22T10:00:05Z");
    assert!(d.create_parts.is_empty() && d.scale.is_empty() && d.create_jobs.is_empty());
    let st = w.status();
    assert_eq!(st.phase, RestorePhase::Succeeded);
    assert!(st
        .message
        .as_deref()
        .unwrap()
        .starts_with("dry run: planned 2 parts"));
    assert!(st.steps[1..].iter().all(|s| s.phase == StepPhase::Skipped));
    assert_eq!(st.recovery_time_seconds, None);
}

#[test]
fn a_missing_permission_or_a_failed_part_stops_the_run_naming_it() {
    let mut w = World::new(json!({}));
    w.access = Some(Some(
        "service account restorer may not patch deployments.apps in namespace shop".into(),
    ));
    w.decide("2026-11-22T10:00:01Z");
    w.planned();
    let d = w.decide("2026-11-22T10:00:02Z");
    assert!(d.scale.is_empty());
    assert_eq!(w.phase(steps::PRE_CHECK), StepPhase::Failed);
    assert!(w
        .status()
        .message
        .as_deref()
        .unwrap()
        .contains("may not patch deployments.apps"));

    let mut w = World::new(json!({"maintenance": {"endOnFailure": true,
        "scaleToZero": [{"kind": "Deployment", "namespace": "shop", "name": "web"}]}}));
    w.decide("2026-11-22T10:00:01Z");
    w.planned();
    w.decide("2026-11-22T10:00:02Z");
    w.decide("2026-11-22T10:00:03Z");
    w.web = Some(WorkloadState {
        replicas: 0,
        ready: 0,
    });
    let d = w.decide("2026-11-22T10:00:04Z");
    w.part_done(0, &d, false);
    let d = w.decide("2026-11-22T10:00:05Z");
    let message = w.status().message.clone().unwrap();
    assert!(
        message.starts_with(
            "step databases failed: part db (RestoreRequest shop-db): connection refused"
        ),
        "{message}"
    );
    assert!(
        message.ends_with("maintenance ended (endOnFailure): deployment shop/web back to 2"),
        "{message}"
    );
    assert_eq!(d.scale[0].1, 2);
    assert!(
        d.create_parts.is_empty(),
        "no files part after a failed database"
    );
}

#[test]
fn a_missing_policy_and_a_long_name_are_named() {
    let mut w = World::new(json!({}));
    w.policies.truncate(1);
    w.plans.truncate(1);
    // The observation has one policy slot per part: the second is absent.
    let policies: Vec<Option<&BackupPolicy>> = vec![Some(&w.policies[0]), None];
    let d = decide(
        Observed {
            app: &w.app,
            policies: &policies,
            plans: &[ObservedJob::default(), ObservedJob::default()],
            parts: &[None, None],
            workloads: &[None],
            claims: &[],
            smoke: None,
            access: None,
            jobs: &[],
            now: at("2026-11-22T10:00:01Z"),
        },
        &JobConfig::default(),
        RESYNC,
    );
    let message = d.status.unwrap().message.unwrap();
    assert_eq!(
        message,
        "step plan failed: spec.parts[1].policyRef: policy uploads not found"
    );
    let mut w = World::new(json!({}));
    w.app.metadata.name = Some("a".repeat(41));
    w.decide("2026-11-22T10:00:01Z");
    assert!(w
        .status()
        .message
        .as_deref()
        .unwrap()
        .contains("metadata.name: at most 40"));
}

#[test]
fn data_parts_wait_until_a_workload_the_configuration_restored_is_at_zero() {
    let mut w = World::new(json!({"parts": [
        {"name": "config", "policyRef": {"name": "shop-config"},
         "target": {"config": {"serviceAccountName": "restorer"}}},
        {"name": "db", "policyRef": {"name": "orders"},
         "target": {"postgres": {"connectionSecretRef": {"name": "restore-db"}}}}
    ]}));
    let mut config = policy_of_source(json!({"config": {
        "namespaces": ["shop"], "resources": ["deployments.apps"], "serviceAccountName": "reader"}}));
    config.metadata.name = Some("shop-config".into());
    w.policies = vec![config, w.policies[0].clone()];
    // The namespace is gone: nothing to scale yet.
    w.web = None;
    w.decide("2026-11-22T10:00:01Z");
    w.plans = vec![
        done_job(
            "shop-config-plan",
            &plan("20261122T080000.000Z-cccccc", "2026-11-22T08:00:00Z"),
            true,
        ),
        done_job(
            "shop-db-plan",
            &plan("20261122T080000.000Z-aaaaaa", "2026-11-22T08:00:00Z"),
            true,
        ),
    ];
    let d = w.decide("2026-11-22T10:00:05Z");
    assert_eq!(w.phase(steps::MAINTENANCE), StepPhase::Succeeded);
    let parts: Vec<String> = d.create_parts.iter().map(|r| r.name_any()).collect();
    assert_eq!(parts, ["shop-config"]);
    w.part_done(0, &d, true);

    // The configuration brought the workload back at its two replicas: no
    // database is restored under it until it is recorded and at zero.
    w.web = Some(WorkloadState {
        replicas: 2,
        ready: 0,
    });
    let d = w.decide("2026-11-22T10:00:30Z");
    assert_eq!(w.phase(steps::CONFIGURATION), StepPhase::Succeeded);
    assert!(
        d.create_parts.is_empty(),
        "a database part under a running workload"
    );
    assert!(
        d.scale.is_empty(),
        "scaled before its replicas were written"
    );
    assert_eq!(w.status().workloads[0].replicas, Some(2));
    let d = w.decide("2026-11-22T10:00:31Z");
    assert_eq!(d.scale.len(), 1);
    assert_eq!(d.scale[0].1, 0);
    assert!(d.create_parts.is_empty());
    w.web = Some(WorkloadState {
        replicas: 0,
        ready: 0,
    });
    let d = w.decide("2026-11-22T10:00:32Z");
    let parts: Vec<String> = d.create_parts.iter().map(|r| r.name_any()).collect();
    assert_eq!(parts, ["shop-db"]);
}

/// The request planned (100 bytes of files) and its preCheck run, with the
/// files' claim seen as `claim`.
fn pre_checked(claim: ClaimSpace) -> (World, Decision) {
    let mut w = World::new(json!({}));
    w.claims = vec![None, Some(claim)];
    w.decide("2026-11-22T10:00:01Z");
    w.planned();
    let d = w.decide("2026-11-22T10:00:02Z");
    (w, d)
}

#[test]
fn pre_check_fails_a_claim_smaller_than_the_planned_files_and_names_it() {
    let message = |w: &World| {
        let st = w.status().steps.iter().find(|s| s.name == steps::PRE_CHECK);
        st.unwrap().message.clone().unwrap()
    };
    let (w, d) = pre_checked(ClaimSpace::Found(Some("64".into())));
    assert!(d.scale.is_empty(), "maintenance never began");
    assert_eq!(w.phase(steps::PRE_CHECK), StepPhase::Failed);
    assert_eq!(
        message(&w),
        "part files: claim uploads holds 64 bytes; the restore needs the backup's file bytes, 100 bytes"
    );

    let (w, _) = pre_checked(ClaimSpace::Found(Some("1Ki".into())));
    assert_eq!(w.phase(steps::PRE_CHECK), StepPhase::Succeeded);
    let m = message(&w);
    assert!(
        m.ends_with("part files: claim uploads holds 1024 bytes, the backup's file bytes are 100"),
        "{m}"
    );

    // Not there yet (a configuration part may bring it): said, not failed.
    let (w, _) = pre_checked(ClaimSpace::Missing);
    assert_eq!(w.phase(steps::PRE_CHECK), StepPhase::Succeeded);
    assert!(message(&w).contains("claim uploads does not exist yet"));

    // A size the API would never give is an error naming the claim.
    let (w, _) = pre_checked(ClaimSpace::Found(Some("lots".into())));
    assert_eq!(w.phase(steps::PRE_CHECK), StepPhase::Failed);
    let m = message(&w);
    assert!(
        m.starts_with("part files: claim uploads: \"lots\" is not a storage quantity"),
        "{m}"
    );
}
