//! A volume policy's backup Jobs run for real: the Job the controller
//! builds for `spec.source.volume` runs in the stand-in kubelet
//! (support/kubelet.rs) with a host directory standing in for the claim,
//! against the test S3 server in two regions. Its summary reaches the
//! run's status as files new/changed/unchanged; weekly runs re-read every
//! file; the backup restores bit for bit (`lifeboat restore --to-dir`).

mod support;

use std::fs;
use std::os::unix::fs::PermissionsExt;

use lifeboat::api::Tier;
use lifeboat::controller::jobs::source_info;
use serde_json::json;
use support::kubelet::*;
use support::tree::describe;
use support::*;

#[test]
fn a_volume_policy_backs_up_its_claim_and_the_backup_restores_bit_for_bit() {
    let mut w = world();
    // The claim: an application's directory, and one the policy leaves out.
    let claim = w.work.path().join("claim");
    let app = claim.join("app");
    fs::create_dir_all(app.join("img/2026")).unwrap();
    fs::create_dir_all(app.join("cache")).unwrap();
    fs::create_dir_all(claim.join("other")).unwrap();
    fs::write(
        app.join("img/2026/a.bin"),
        lifeboat::chunks::noise(300_000, 7),
    )
    .unwrap();
    fs::write(app.join("notes.txt"), "hello\n".repeat(500)).unwrap();
    fs::write(app.join("cache/tmp"), b"left out").unwrap();
    fs::write(claim.join("other/x"), b"not under subPath").unwrap();
    fs::set_permissions(app.join("notes.txt"), fs::Permissions::from_mode(0o640)).unwrap();
    std::os::unix::fs::symlink("img/2026/a.bin", app.join("latest")).unwrap();
    let before = describe(&claim);

    w.policy.spec.source = serde_json::from_value(json!({"volume": {
        "claimName": "uploads", "subPath": "app", "exclude": ["cache"]}}))
    .unwrap();
    w.policy.spec.validate().expect("a valid volume policy");
    let claims = Claims::from([("uploads".to_string(), claim.clone())]);
    let back_up = |name: &str, tier: Tier| back_up(&w, &claims, name, tier);

    let first = back_up("uploads-1", Tier::Daily);
    assert_eq!(first.committed, ["primary", "dr-eu"]);
    assert!(first.fully_verified(), "{first:?}");
    let files = source_info(&first)
        .files
        .expect("file figures in the run's status");
    assert_eq!(
        (files.files_new, files.files_changed, files.files_unchanged),
        (2, 0, 0),
        "{files:?}"
    );
    assert_eq!(files.bytes_read, 300_000 + 3000);

    // One file changes: only it is read again.
    fs::write(app.join("notes.txt"), "changed\n".repeat(500)).unwrap();
    let second = back_up("uploads-2", Tier::Daily);
    let files = source_info(&second).files.unwrap();
    assert_eq!(
        (files.files_new, files.files_changed, files.files_unchanged),
        (0, 1, 1),
        "{files:?}"
    );
    assert_eq!(files.bytes_read, 4000);
    // A weekly run trusts nothing from the previous backup.
    let weekly = back_up("uploads-3", Tier::Weekly);
    let files = source_info(&weekly).files.unwrap();
    assert_eq!(files.files_unchanged, 0, "{files:?}");
    assert_eq!(files.bytes_read, 300_000 + 4000);
    assert_eq!(files.bytes_stored, 0, "nothing new to store: {files:?}");

    // The read-only claim was not changed by the Jobs.
    let mut expected = before;
    let now = describe(&claim);
    let notes = b"app/notes.txt".to_vec();
    expected.insert(notes.clone(), now[&notes].clone());
    assert_eq!(now, expected);

    // The backup restores from the other region, exactly the subPath minus
    // what was excluded.
    let (b1, r1) = bucket_and_region(&w.buckets[1]);
    let from = s3_url(&b1, &r1, "prod/shop/orders");
    let key_file = w.work.path().join("restore-keys");
    write_private(&key_file, &w.secrets["backup-keys"]["keys"]);
    let into = w.work.path().join("restored");
    ok(&lifeboat(&[
        "restore",
        "--from",
        &from,
        "--key-file",
        key_file.to_str().unwrap(),
        "--backup",
        &weekly.backup_id,
        "--to-dir",
        into.to_str().unwrap(),
        "--json",
    ]));
    let mut want = describe(&app);
    want.retain(|k, _| !k.starts_with(b"cache"));
    let got = describe(&into);
    assert_eq!(got, want);
}
