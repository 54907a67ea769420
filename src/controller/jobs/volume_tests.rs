//! A volume policy's backup Job: the claim mounted read-only at a fixed
//! path, `--path` under it, the globs and flags, weekly and monthly runs
//! re-reading everything, and the identity it reads as — restricted by
//! default, root with one capability only when asked.

use super::volume::{READ_CAPABILITY, SOURCE_MOUNT};
use super::*;
use crate::api::{BackupRun, Tier};
use crate::controller::test_support::{after, args, daily_run, pod, policy_of_source};
use k8s_openapi::api::batch::v1::Job;
use serde_json::json;

fn policy(volume: serde_json::Value) -> BackupPolicy {
    policy_of_source(json!({ "volume": volume }))
}

fn run(tier: Tier) -> BackupRun {
    let mut r = daily_run("orders-1", "run-uid-1");
    r.spec.tier = tier;
    r
}

fn job(volume: serde_json::Value, tier: Tier) -> Job {
    backup_job(&policy(volume), &run(tier), &JobConfig::default()).unwrap()
}

#[test]
fn the_claim_is_mounted_read_only_and_backed_up_from_its_sub_path() {
    let j = job(
        json!({"claimName": "uploads", "subPath": "app/files", "include": ["**/*.jpg"],
               "exclude": ["cache", "tmp/**"], "skipUnreadable": true}),
        Tier::Daily,
    );
    let a = args(&j);
    assert_eq!(a[0], "backup");
    assert_eq!(after(&a, "--path"), [format!("{SOURCE_MOUNT}/app/files")]);
    assert_eq!(after(&a, "--include"), ["**/*.jpg"]);
    assert_eq!(after(&a, "--exclude"), ["cache", "tmp/**"]);
    assert!(a.contains(&"--skip-unreadable".to_string()));
    assert!(
        !a.contains(&"--full".to_string()),
        "a daily run trusts unchanged files"
    );
    assert!(after(&a, "--password-file").is_empty(), "no database");
    let p = pod(&j);
    let v = p.volumes.as_ref().unwrap();
    let claim = v.iter().find(|v| v.name == "source").unwrap();
    let pvc = claim.persistent_volume_claim.as_ref().unwrap();
    assert_eq!(
        (pvc.claim_name.as_str(), pvc.read_only),
        ("uploads", Some(true))
    );
    let m = p.containers[0].volume_mounts.as_ref().unwrap();
    let m = m.iter().find(|m| m.name == "source").unwrap();
    assert_eq!(
        (m.mount_path.as_str(), m.read_only),
        (SOURCE_MOUNT, Some(true))
    );
    // The whole volume when no subPath.
    let a = args(&job(json!({"claimName": "uploads"}), Tier::Daily));
    assert_eq!(after(&a, "--path"), [SOURCE_MOUNT]);
}

#[test]
fn weekly_and_monthly_runs_re_read_every_file() {
    for (tier, full) in [
        (Tier::Daily, false),
        (Tier::Weekly, true),
        (Tier::Monthly, true),
        (Tier::Manual, false),
    ] {
        let a = args(&job(json!({"claimName": "uploads"}), tier));
        assert_eq!(a.contains(&"--full".to_string()), full, "{tier:?}");
    }
}

#[test]
fn by_default_the_pod_is_restricted_and_reads_as_the_owner_given() {
    let j = job(
        json!({"claimName": "uploads", "runAsUser": 1000, "runAsGroup": 2000}),
        Tier::Daily,
    );
    let p = pod(&j);
    let psc = p.security_context.as_ref().unwrap();
    assert_eq!(
        (psc.run_as_non_root, psc.run_as_user, psc.run_as_group),
        (Some(true), Some(1000), Some(2000))
    );
    // Secret files are readable by the group; the read-only claim is not
    // chowned to it by the kubelet.
    assert_eq!(psc.fs_group, Some(2000));
    assert_eq!(
        psc.seccomp_profile.as_ref().unwrap().type_,
        "RuntimeDefault"
    );
    let sc = p.containers[0].security_context.as_ref().unwrap();
    assert_eq!((sc.run_as_user, sc.run_as_group), (Some(1000), Some(2000)));
    assert_eq!(sc.run_as_non_root, Some(true));
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    let caps = sc.capabilities.as_ref().unwrap();
    assert_eq!(caps.drop.as_deref(), Some(&["ALL".to_string()][..]));
    assert_eq!(caps.add, None);
    // Unset: the image's user.
    let j = job(json!({"claimName": "uploads"}), Tier::Daily);
    let psc = pod(&j).security_context.clone().unwrap();
    assert_eq!(
        (psc.run_as_user, psc.run_as_group),
        (Some(RUN_AS), Some(RUN_AS))
    );
}

#[test]
fn read_as_root_gets_root_and_only_the_read_capability() {
    let j = job(
        json!({"claimName": "uploads", "readAsRoot": true}),
        Tier::Daily,
    );
    let p = pod(&j);
    let psc = p.security_context.as_ref().unwrap();
    assert_eq!(
        (psc.run_as_non_root, psc.run_as_user),
        (Some(false), Some(0))
    );
    let sc = p.containers[0].security_context.as_ref().unwrap();
    assert_eq!((sc.run_as_non_root, sc.run_as_user), (Some(false), Some(0)));
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    assert_eq!(sc.privileged, Some(false));
    let caps = sc.capabilities.as_ref().unwrap();
    assert_eq!(caps.drop.as_deref(), Some(&["ALL".to_string()][..]));
    assert_eq!(
        caps.add.as_deref(),
        Some(&[READ_CAPABILITY.to_string()][..])
    );
}

#[test]
fn a_bad_sub_path_is_refused_by_name() {
    let p = policy(json!({"claimName": "uploads", "subPath": "../other"}));
    let e = backup_job(&p, &run(Tier::Daily), &JobConfig::default()).unwrap_err();
    assert_eq!(e.field(), "spec.source.volume.subPath");
}
