//! A flaky object store (issue 13, item 6): a proxy in front of the S3
//! server throttles, fails and breaks off answers, and every command rides
//! it out — or, when the store stays down, fails naming the destination
//! and commits nothing.

mod support;

use support::faulty::{Fault, FaultyS3};
use support::*;

const SLOW_DOWN: Fault = Fault::Status(503, "SlowDown");
const INTERNAL: Fault = Fault::Status(500, "InternalError");

/// A database whose dump is a few MiB, so that downloads can break off mid-body.
fn sizeable_db(prefix: &str) -> String {
    let db = create_db(prefix);
    psql(
        &db,
        "create table t as select g as id, md5(g::text) || md5((g * 7)::text) as h \
         from generate_series(1, 300000) g",
    );
    db
}

fn through_proxy(proxy: &FaultyS3) -> String {
    let (bucket, region) = bucket_and_region(&bucket("eu-west-1"));
    format!("dr={}", proxy.url(&bucket, &region, "prod/orders"))
}

#[test]
fn backup_restore_verify_and_prune_ride_out_a_flaky_store() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keyfile(dir.path(), "k");
    let k = keys.to_str().unwrap();
    let proxy = FaultyS3::start();
    let dest = through_proxy(&proxy);
    let db = sizeable_db("flaky");

    // Every write is throttled three times in a row, completing fails twice.
    proxy.inject("PUT", "/prod/orders/", SLOW_DOWN, 3);
    proxy.inject("POST", "/prod/orders/", INTERNAL, 2);
    let id = backup(&db, k, &[&dest]).json().ok()["backup_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(proxy.fired(), 5, "the faults were injected");

    // The dump's download breaks off twice mid-body and is throttled once.
    proxy.inject("GET", "/db-0.lbk", Fault::ResetAfter(512 << 10), 2);
    proxy.inject("GET", "/db-0.lbk", SLOW_DOWN, 1);
    proxy.inject(
        "GET",
        "/manifest",
        Fault::Stall(std::time::Duration::from_millis(1500)),
        1,
    );
    let target = unique("flaky_restored");
    restore(&[&dest], k).create(&target).json().ok();
    assert_eq!(proxy.fired(), 9, "the faults were injected");
    assert_eq!(dump(&db), dump(&target));

    proxy.inject("GET", "/db-0.lbk", Fault::ResetAfter(64 << 10), 1);
    verify(&[&dest], k).ok();
    assert_eq!(proxy.fired(), 10);

    // Deleting is throttled too.
    proxy.inject("DELETE", "/prod/orders/", SLOW_DOWN, 2);
    Cli::new("prune")
        .opt("--from", &dest)
        .opt("--backup", &id)
        .opt("--key-file", k)
        .json()
        .ok();
    assert_eq!(proxy.fired(), 12);
    let (bucket, region) = bucket_and_region(&dest.replacen("dr=", "", 1));
    let left = s3_keys(&s3_url(&bucket, &region, "prod/orders"));
    assert!(
        !left.iter().any(|key| key.contains(&id)),
        "the pruned backup is gone: {left:?}"
    );
}

#[test]
fn a_store_that_stays_down_fails_the_backup_naming_it_and_commits_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keyfile(dir.path(), "k");
    let k = keys.to_str().unwrap();
    let proxy = FaultyS3::start();
    let dest = through_proxy(&proxy);
    let db = sizeable_db("down");
    proxy.inject("PUT", "/prod/orders/", SLOW_DOWN, 1000);
    let err = backup(&db, k, &[&dest]).fails();
    let line = err
        .lines()
        .find(|l| l.starts_with("error:"))
        .unwrap_or_else(|| panic!("no error line: {err}"));
    assert!(
        line.contains("dr (s3://") && line.contains("SlowDown"),
        "{line}"
    );
    proxy.heal();
    let (bucket, region) = bucket_and_region(&dest.replacen("dr=", "", 1));
    let left = s3_keys(&s3_url(&bucket, &region, "prod/orders"));
    assert!(
        !left.iter().any(|key| key.contains("manifest")),
        "no recovery point was committed: {left:?}"
    );
}

#[test]
fn wal_push_and_fetch_ride_out_a_flaky_store() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keyfile(dir.path(), "k");
    let k = keys.to_str().unwrap();
    let proxy = FaultyS3::start();
    let dest = through_proxy(&proxy);
    let seg = dir.path().join("000000010000000000000007");
    // Incompressible (xorshift), so the stored object is the segment's size.
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let content: Vec<u8> = (0..16u32 << 20)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    std::fs::write(&seg, &content).unwrap();

    proxy.inject("PUT", "/wal/", SLOW_DOWN, 3);
    proxy.inject("PUT", "/wal/", INTERNAL, 1);
    ok(&lifeboat(&[
        "wal-push",
        seg.to_str().unwrap(),
        "--to",
        &dest,
        "--key-file",
        k,
    ]));
    assert_eq!(proxy.fired(), 4, "the faults were injected");

    // Recovery asks for the file: the answer breaks off, is throttled and
    // breaks off again. Exit 0 with the exact bytes, not 126 (fatal).
    proxy.inject("GET", "/wal/", Fault::ResetAfter(1 << 20), 3);
    proxy.inject("GET", "/wal/", SLOW_DOWN, 3);
    let fetched = dir.path().join("fetched");
    ok(&lifeboat(&[
        "wal-fetch",
        "000000010000000000000007",
        fetched.to_str().unwrap(),
        "--from",
        &dest,
        "--key-file",
        k,
    ]));
    assert_eq!(proxy.fired(), 10);
    assert!(
        std::fs::read(&fetched).unwrap() == content,
        "the same bytes"
    );
}

/// One destination stays down: with `--max-block`, wal-push holds
/// PostgreSQL's archiver up only that long, then archives to the other and
/// owes the down one the file; once it answers, the next push copies it over
/// (issue 13, item 3).
#[test]
fn a_destination_that_stays_down_blocks_wal_push_only_until_the_bound() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keyfile(dir.path(), "k");
    let k = keys.to_str().unwrap();
    let proxy = FaultyS3::start();
    let down = through_proxy(&proxy);
    let up = format!("up=file://{}", dir.path().join("up").display());
    let state = dir.path().join("state");
    let segment = |n: u32| {
        let p = dir.path().join(format!("0000000100000000000000{n:02X}"));
        std::fs::write(&p, vec![n as u8; 1 << 20]).unwrap();
        p
    };
    let push = |seg: &std::path::Path, max_block: &str| {
        Cli::new("wal-push")
            .arg(seg.to_str().unwrap())
            .opt("--to", &up)
            .opt("--to", &down)
            .opt("--key-file", k)
            .opt("--max-block", max_block)
            .opt("--state-dir", state.to_str().unwrap())
            .output()
    };
    let (bucket, region) = bucket_and_region(&down.replacen("dr=", "", 1));
    let down_keys = || s3_keys(&s3_url(&bucket, &region, "prod/orders"));

    for method in ["GET", "PUT", "POST"] {
        proxy.inject(method, "/wal/", SLOW_DOWN, 10_000);
    }
    // Within the bound: the push fails, so PostgreSQL keeps the file and retries.
    let first = segment(0x21);
    fails(&push(&first, "1h"));
    // Past it (the same run of failures, a bound of zero): archived to `up`, owed to `dr`.
    ok(&push(&first, "0s"));
    let ledger = std::fs::read_to_string(state.join("wal-push-state.json")).unwrap();
    assert!(
        ledger.contains("\"dr\"") && ledger.contains("000000010000000000000021"),
        "{ledger}"
    );
    assert!(down_keys().is_empty());

    // `dr` answers again: the next push pays the debt first, then archives everywhere.
    proxy.heal();
    let second = segment(0x22);
    ok(&push(&second, "1h"));
    let have = down_keys();
    for name in ["000000010000000000000021", "000000010000000000000022"] {
        assert!(
            have.iter().any(|key| key.contains(name)),
            "{name} in {have:?}"
        );
    }
    let ledger = std::fs::read_to_string(state.join("wal-push-state.json")).unwrap();
    assert!(!ledger.contains("\"dr\""), "settled: {ledger}");
    // What `dr` was given is the real file.
    let fetched = dir.path().join("fetched");
    Cli::new("wal-fetch")
        .arg("000000010000000000000021")
        .arg(fetched.to_str().unwrap())
        .opt("--from", &down)
        .opt("--key-file", k)
        .output()
        .status
        .success()
        .then_some(())
        .expect("fetched from dr");
    assert!(std::fs::read(&fetched).unwrap() == std::fs::read(&first).unwrap());
}
