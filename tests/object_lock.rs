//! S3 Object Lock against the test bed's S3 server (moto implements it):
//! a backup and its WAL written with `object-lock=…&lock-days=…` carry the
//! retention, S3 refuses to delete them, prune keeps them and says so,
//! verify shows the lock, and a bucket without Object Lock is refused before
//! anything is written.

mod support;

use chrono::{DateTime, Duration, Utc};
use lifeboat::location::{Location, LockMode, ObjectLock, S3Location};
use support::*;

fn s3_location(url: &str) -> S3Location {
    match url.parse::<Location>() {
        Ok(Location::S3(s)) => s,
        other => panic!("not an S3 URL: {url}: {other:?}"),
    }
}

/// `url` with Object Lock retention of `days` in `mode`.
fn with_lock(url: &str, mode: LockMode, days: u32) -> String {
    let mut s = s3_location(url);
    s.lock = Some(ObjectLock { mode, days });
    Location::S3(s).to_string()
}

/// The bucket and full key of `key` under the destination `url`.
fn full_key(url: &str, key: &str) -> (String, String) {
    let s = s3_location(url);
    (s.bucket, format!("{}/{key}", s.prefix))
}

/// Mode, retain-until and version id of the current version of `key`.
fn head(url: &str, key: &str) -> (Option<String>, Option<DateTime<Utc>>, String) {
    let (bucket, full) = full_key(url, key);
    let (_, region) = bucket_and_region(url);
    let client = s3_client(&region);
    runtime().block_on(async {
        let out = client
            .head_object()
            .bucket(&bucket)
            .key(&full)
            .send()
            .await
            .expect("head");
        (
            out.object_lock_mode().map(|m| m.as_str().to_string()),
            out.object_lock_retain_until_date()
                .map(|d| DateTime::from_timestamp(d.secs(), 0).unwrap()),
            out.version_id().expect("a versioned bucket").to_string(),
        )
    })
}

/// Every version (and delete marker) of objects under the destination `url`.
fn versions(url: &str) -> Vec<String> {
    let (bucket, prefix) = full_key(url, "");
    let (_, region) = bucket_and_region(url);
    let client = s3_client(&region);
    runtime().block_on(async {
        let out = client
            .list_object_versions()
            .bucket(&bucket)
            .prefix(&prefix)
            .send()
            .await
            .expect("list versions");
        let versions = out.versions().iter().filter_map(|v| v.key());
        let markers = out.delete_markers().iter().filter_map(|m| m.key());
        versions.chain(markers).map(str::to_string).collect()
    })
}

fn assert_retained_about(until: Option<DateTime<Utc>>, days: i64) {
    let until = until.expect("a retain-until date");
    let expected = Utc::now() + Duration::days(days);
    assert!(
        (until - expected).num_minutes().abs() < 10,
        "retained until {until}, expected about {expected}"
    );
}

#[test]
fn a_locked_backup_cannot_be_deleted_prune_keeps_it_and_verify_shows_the_lock() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keyfile(dir.path(), "k");
    let k = keys.to_str().unwrap();
    let src = create_db("locked");
    psql(
        &src,
        "create table t as select i from generate_series(1, 100) i",
    );
    let url = with_lock(&locked_bucket("eu-west-1"), LockMode::Governance, 3);

    let report = backup(&src, k, &[&url]).json().ok();
    let id = report["backup_id"].as_str().unwrap().to_string();
    let objects: Vec<String> = report["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["key"].as_str().unwrap().to_string())
        .collect();
    let manifest = format!("backups/{id}/manifest.json");
    assert!(!objects.is_empty());
    for key in objects.iter().chain([&manifest]) {
        let (mode, until, _) = head(&url, key);
        assert_eq!(mode.as_deref(), Some("GOVERNANCE"), "{key}");
        assert_retained_about(until, 3);
    }

    // S3 itself refuses to delete a locked version before its date.
    let (bucket, full) = full_key(&url, &manifest);
    let (_, _, version) = head(&url, &manifest);
    let client = s3_client("eu-west-1");
    let refused = runtime().block_on(async {
        client
            .delete_object()
            .bucket(&bucket)
            .key(&full)
            .version_id(&version)
            .send()
            .await
    });
    let e = refused.expect_err("a locked version cannot be deleted");
    let code = aws_sdk_s3::error::ProvideErrorMetadata::code(&e);
    assert_eq!(code, Some("AccessDenied"), "{e:?}");

    // verify reports the lock of every object and of the manifest.
    let checked = verify(&[&url], k).json().ok();
    let check = &checked["checks"][0];
    assert_eq!(check["ok"], true, "{checked}");
    assert_eq!(check["manifest_lock"]["mode"], "governance", "{checked}");
    for o in check["objects"].as_array().unwrap() {
        assert_eq!(o["lock"]["mode"], "governance", "{o}");
        let until: DateTime<Utc> = o["lock"]["retain_until"].as_str().unwrap().parse().unwrap();
        assert_retained_about(Some(until), 3);
    }
    let printed = stdout(&verify(&[&url], k).output());
    assert!(printed.contains("governance until"), "{printed}");

    // prune keeps the whole backup, says why and until when, and succeeds.
    let before = s3_keys(&url);
    let pruned = Cli::new("prune")
        .opt("--from", &url)
        .opt("--backup", &id)
        .opt("--key-file", k)
        .json()
        .ok();
    assert_eq!(pruned["deleted"], serde_json::json!([]), "{pruned}");
    assert_eq!(pruned["objects_removed"], 0, "{pruned}");
    let kept = &pruned["kept_locked"][0];
    assert_eq!(kept["backup"], id.as_str(), "{pruned}");
    assert_eq!(kept["mode"], "governance", "{pruned}");
    assert_eq!(
        kept["objects"].as_array().unwrap().len(),
        objects.len() + 1,
        "every object and the manifest: {pruned}"
    );
    assert_eq!(s3_keys(&url), before, "nothing was deleted or hidden");
    let listed = ok(&lifeboat(&["list", "--from", &url, "--json"]));
    assert_eq!(
        listed.as_array().unwrap().len(),
        1,
        "still a recovery point"
    );
    let said = stdout(
        &Cli::new("prune")
            .opt("--from", &url)
            .opt("--backup", &id)
            .output(),
    );
    assert!(said.contains("Object Lock until"), "{said}");
}

#[test]
fn a_bucket_without_object_lock_is_refused_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keyfile(dir.path(), "k");
    let src = create_db("nolock");
    psql(&src, "create table t (i int)");
    let plain = bucket("us-east-1");
    let (name, _) = bucket_and_region(&plain);
    let url = format!("primary={}", with_lock(&plain, LockMode::Compliance, 1));

    let err = backup(&src, keys.to_str().unwrap(), &[&url]).fails();
    let line = err
        .lines()
        .find(|l| l.contains("Object Lock"))
        .unwrap_or_else(|| panic!("no Object Lock message: {err}"));
    assert!(
        line.contains("primary (s3://")
            && line.contains(&format!(
                "bucket {name} has no Object Lock configuration; create the bucket with Object Lock enabled"
            )),
        "{line}"
    );
    assert!(
        s3_keys(&plain).is_empty(),
        "nothing written: {:?}",
        s3_keys(&plain)
    );
}

#[test]
fn wal_is_written_locked_and_prune_in_a_locked_bucket_removes_every_version() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keyfile(dir.path(), "k");
    let k = keys.to_str().unwrap();
    let plain_url = locked_bucket("us-east-1");
    let url = with_lock(&plain_url, LockMode::Compliance, 2);

    let push = |file: &std::path::Path| {
        let args = [
            "wal-push",
            file.to_str().unwrap(),
            "--to",
            &url,
            "--key-file",
            k,
        ];
        ok(&lifeboat(&args))
    };
    let seg = dir.path().join("000000010000000000000007");
    std::fs::write(&seg, vec![7u8; 16 << 20]).unwrap();
    push(&seg);
    let (mode, until, _) = head(&url, "wal/00000001/000000010000000000000007.lbk");
    assert_eq!(mode.as_deref(), Some("COMPLIANCE"));
    assert_retained_about(until, 2);

    // Incompressible: a multipart upload, whose parts carry the checksum S3
    // wants with a retention (the test server does not keep a multipart
    // upload's retention, so only the upload and the read back are checked).
    let big = dir.path().join("000000010000000000000008");
    let mut noise = vec![0u8; 16 << 20];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut noise).unwrap();
    std::fs::write(&big, &noise).unwrap();
    push(&big);
    let fetched = dir.path().join("fetched");
    ok(&lifeboat(&[
        "wal-fetch",
        "000000010000000000000008",
        fetched.to_str().unwrap(),
        "--from",
        &url,
        "--key-file",
        k,
    ]));
    assert!(std::fs::read(&fetched).unwrap() == noise, "read back whole");

    // A backup written without a lock into the same (versioned) bucket:
    // prune through the locked location deletes every version of it, where
    // a plain delete would only have hidden it behind a delete marker.
    let src = create_db("unlocked");
    psql(&src, "create table t (i int)");
    let id = backup(&src, k, &[&plain_url]).json().ok()["backup_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(versions(&url).iter().any(|v| v.contains(&id)));
    let pruned = Cli::new("prune")
        .opt("--from", &url)
        .opt("--backup", &id)
        .json()
        .ok();
    assert_eq!(
        pruned["deleted"],
        serde_json::json!([id.as_str()]),
        "{pruned}"
    );
    assert!(pruned.get("kept_locked").is_none(), "{pruned}");
    let left: Vec<String> = versions(&url)
        .into_iter()
        .filter(|v| v.contains(&id))
        .collect();
    assert!(left.is_empty(), "versions left behind: {left:?}");
    assert!(
        versions(&url).iter().any(|v| v.contains("wal/")),
        "the locked WAL stays"
    );
}
