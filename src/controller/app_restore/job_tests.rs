//! The user's Jobs in the procedure: the enter Job before any workload is
//! scaled, the exit Job after the smoke tests, a smoke test that is a Job.

use serde_json::{json, Value};

use super::tests::{done_job, passed, World};
use super::*;

fn job(script: &str) -> Value {
    json!({"template": {"spec": {"containers": [
        {"name": "switch", "image": "busybox", "command": ["sh", "-c", script]}]}}})
}

/// Maintenance by Jobs around the web Deployment's hold, and `smoke`.
fn world(smoke: Value, end_on_failure: bool) -> World {
    World::new(json!({
        "maintenance": {"scaleToZero": [{"kind": "Deployment", "namespace": "shop", "name": "web"}],
                        "enterJob": job("echo on"), "exitJob": job("echo off"),
                        "jobTimeoutSeconds": 120, "endOnFailure": end_on_failure},
        "smokeTests": smoke
    }))
}

fn names(d: &Decision) -> Vec<String> {
    d.create_user_jobs.iter().map(|j| j.name_any()).collect()
}

fn saw(w: &mut World, name: &str, job: ObservedJob) {
    w.jobs.retain(|(n, _)| n != name);
    w.jobs.push((name.to_string(), job));
}

/// The web Deployment at `replicas`, all ready.
fn web_at(w: &mut World, replicas: i32) {
    w.web = Some(WorkloadState {
        replicas,
        ready: replicas,
    });
}

/// Planned, entered (the enter Job run), held, restored, scaled back:
/// the smoke tests are current.
fn to_smoke_tests(w: &mut World) {
    w.decide("2026-11-22T10:00:01Z");
    w.planned();
    let d = w.decide("2026-11-22T10:00:05Z");
    assert_eq!(names(&d), ["shop-maintenance-enter"]);
    let job = &d.create_user_jobs[0];
    assert_eq!(job.labels()[APP_LABEL], "shop");
    assert_eq!(job.owner_references()[0].uid, "app-uid");
    let spec = job.spec.as_ref().unwrap();
    assert_eq!(
        (spec.backoff_limit, spec.active_deadline_seconds),
        (Some(0), Some(120))
    );
    let pod = spec.template.spec.as_ref().unwrap();
    assert_eq!(pod.restart_policy.as_deref(), Some("Never"));
    assert!(d.scale.is_empty(), "nothing scaled before the enter Job");
    assert!(w.status().workloads.is_empty());

    // Looked at while it runs: asked for again (it exists: no second Job).
    saw(w, "shop-maintenance-enter", ObservedJob::default());
    let d = w.decide("2026-11-22T10:00:06Z");
    assert_eq!(names(&d), ["shop-maintenance-enter"]);
    saw(w, "shop-maintenance-enter", done_job("enter", "", true));
    let d = w.decide("2026-11-22T10:00:10Z");
    assert!(names(&d).is_empty() && d.scale.is_empty());
    assert_eq!(w.status().workloads[0].replicas, Some(2));
    let d = w.decide("2026-11-22T10:00:11Z");
    assert_eq!(d.scale[0].1, 0);
    web_at(w, 0);
    let d = w.decide("2026-11-22T10:00:12Z");
    let m = w.status().steps[2].message.clone().unwrap();
    assert_eq!(
        m,
        "Job shop-maintenance-enter succeeded; deployment shop/web held at 0 (2 to restore)"
    );
    w.part_done(0, &d, true);
    let d = w.decide("2026-11-22T10:00:13Z");
    w.part_done(1, &d, true);
    let d = w.decide("2026-11-22T10:00:14Z");
    assert_eq!(d.scale[0].1, 2);
    web_at(w, 2);
}

#[test]
fn the_exit_job_runs_once_the_smoke_tests_passed() {
    let home =
        json!([{"name": "home", "service": {"namespace": "shop", "name": "web", "port": 80}}]);
    let mut w = world(home, false);
    to_smoke_tests(&mut w);
    w.decide("2026-11-22T10:00:15Z");
    assert_eq!(w.phase(steps::SMOKE_TESTS), StepPhase::Running);
    w.smoke = passed(steps::SMOKE_TESTS);
    let d = w.decide("2026-11-22T10:00:16Z");
    assert_eq!(w.phase(steps::SMOKE_TESTS), StepPhase::Succeeded);
    assert_eq!(names(&d), ["shop-maintenance-exit"]);
    assert_eq!(
        d.create_user_jobs[0].labels()[user_jobs::USER_JOB_LABEL],
        "exitJob"
    );
    saw(&mut w, "shop-maintenance-exit", done_job("exit", "", true));
    w.decide("2026-11-22T10:00:20Z");
    assert_eq!(w.phase(steps::EXIT_JOB), StepPhase::Succeeded);
    w.smoke = passed(steps::POST_CHECK);
    w.decide("2026-11-22T10:00:21Z");
    assert_eq!(w.status().phase, RestorePhase::Succeeded);
}

#[test]
fn a_failing_smoke_job_fails_the_request_naming_it_and_the_exit_job_is_not_run() {
    let orders = json!([{"name": "orders", "job": job("exit 1"), "timeoutSeconds": 30}]);
    let mut w = world(orders, false);
    to_smoke_tests(&mut w);
    let d = w.decide("2026-11-22T10:00:15Z");
    assert_eq!(names(&d), ["shop-smoke-orders"]);
    saw(
        &mut w,
        "shop-smoke-orders",
        done_job("smoke", "no orders today", false),
    );
    let d = w.decide("2026-11-22T10:00:20Z");
    let st = w.status();
    assert_eq!(st.phase, RestorePhase::Failed);
    assert_eq!(
        st.message.as_deref().unwrap(),
        "step smokeTests failed: smoke test orders: Job shop-smoke-orders failed: no orders today; \
         maintenance stays on: deployment shop/web at 0 (2 to restore), exit Job shop-maintenance-exit not run"
    );
    assert!(names(&d).is_empty(), "no exit Job");
    assert_eq!(d.scale[0].1, 0);
    assert_eq!(w.phase(steps::EXIT_JOB), StepPhase::Skipped);
}

#[test]
fn a_smoke_job_that_does_not_finish_fails_at_its_timeout() {
    let orders = json!([{"name": "orders", "job": job("sleep 600"), "timeoutSeconds": 30}]);
    let mut w = world(orders, true);
    to_smoke_tests(&mut w);
    w.decide("2026-11-22T10:00:15Z");
    saw(&mut w, "shop-smoke-orders", ObservedJob::default());
    w.decide("2026-11-22T10:00:30Z");
    assert_eq!(w.phase(steps::SMOKE_TESTS), StepPhase::Running);
    let running = serde_json::from_value(json!({"metadata": {"name": "s"},
        "status": {"active": 1, "startTime": "2026-11-22T10:00:16Z"}}))
    .unwrap();
    saw(
        &mut w,
        "shop-smoke-orders",
        ObservedJob::new(Some(running), Vec::new()),
    );
    w.decide("2026-11-22T10:00:44Z");
    assert_eq!(w.phase(steps::SMOKE_TESTS), StepPhase::Running);
    let d = w.decide("2026-11-22T10:00:45Z");
    let m = w.status().message.clone().unwrap();
    assert!(
        m.starts_with("step smokeTests failed: smoke test orders: Job shop-smoke-orders did not finish within 30 s; maintenance ended (endOnFailure): deployment shop/web back to 2, exit Job shop-maintenance-exit started"),
        "{m}"
    );
    assert_eq!(names(&d), ["shop-maintenance-exit"]);
}

#[test]
fn a_dry_run_creates_no_job() {
    let orders = json!([{"name": "orders", "job": job("true")}]);
    let mut w = world(orders, false);
    w.app.spec.dry_run = true;
    let d = w.decide("2026-11-22T10:00:01Z");
    assert!(names(&d).is_empty());
    w.planned();
    let d = w.decide("2026-11-22T10:00:05Z");
    assert!(names(&d).is_empty());
    assert_eq!(w.status().phase, RestorePhase::Succeeded);
}

#[test]
fn the_account_must_be_allowed_to_create_jobs_here() {
    let orders = json!([{"name": "orders", "job": job("true")}]);
    let w = world(orders, false);
    let needs = reconcile::needs(&w.app);
    let last = needs.last().unwrap().to_string();
    assert_eq!(last, "create jobs.batch in namespace shop");
    assert!(
        !needs.iter().any(|n| n.resource == "services"),
        "a Job test reads no Service"
    );
}

#[test]
fn a_failed_post_check_after_the_exit_job_runs_the_enter_job_again() {
    let home = json!([{"name": "home", "service": {"namespace": "shop", "name": "web", "port": 80},
                       "timeoutSeconds": 10}]);
    let mut w = world(home, false);
    to_smoke_tests(&mut w);
    w.smoke = passed(steps::SMOKE_TESTS);
    w.decide("2026-11-22T10:00:16Z");
    saw(&mut w, "shop-maintenance-exit", done_job("exit", "", true));
    w.decide("2026-11-22T10:00:20Z");
    assert_eq!(w.phase(steps::POST_CHECK), StepPhase::Running);
    w.smoke = Some((
        steps::POST_CHECK,
        vec![SmokeResult {
            name: "home".into(),
            error: Some("GET http://10.0.0.1:80/ answered 502, expected 200".into()),
        }],
    ));
    let d = w.decide("2026-11-22T10:00:30Z");
    let m = w.status().message.clone().unwrap();
    assert!(
        m.ends_with("maintenance stays on: deployment shop/web at 0 (2 to restore), enter Job run again as shop-maintenance-reenter"),
        "{m}"
    );
    assert_eq!(names(&d), ["shop-maintenance-reenter"]);
    assert_eq!(
        d.create_user_jobs[0].labels()[user_jobs::USER_JOB_LABEL],
        "maintenance"
    );
    assert_eq!(d.scale[0].1, 0);
}

#[test]
fn pre_check_says_what_the_account_may_do() {
    let orders = json!([{"name": "orders", "job": job("true")}]);
    let mut w = world(orders, false);
    w.decide("2026-11-22T10:00:01Z");
    w.planned();
    w.decide("2026-11-22T10:00:05Z");
    let m = w.status().steps[1].message.clone().unwrap();
    assert_eq!(
        m,
        "every destination answered with its recovery point; service account restorer may \
         get deployments.apps in namespace shop, patch deployments.apps in namespace shop, \
         create jobs.batch in namespace shop"
    );
}

#[test]
fn a_job_the_api_server_never_took_fails_its_step_at_the_timeout() {
    let mut w = world(json!([]), false);
    w.decide("2026-11-22T10:00:01Z");
    w.planned();
    w.decide("2026-11-22T10:00:05Z");
    // Looked at on every reconcile and still absent (each create refused).
    saw(&mut w, "shop-maintenance-enter", ObservedJob::default());
    let d = w.decide("2026-11-22T10:02:04Z");
    assert_eq!(names(&d), ["shop-maintenance-enter"], "asked for again");
    w.decide("2026-11-22T10:02:05Z");
    let m = w.status().message.clone().unwrap();
    assert_eq!(
        m,
        "step maintenance failed: Job shop-maintenance-enter was not created within 120 s \
         (see the request's events); maintenance stays on: exit Job shop-maintenance-exit not run"
    );
}
