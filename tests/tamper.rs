//! Every kind of damage to a stored backup is found by `verify` and makes
//! `restore` refuse to load anything.

mod support;
use std::path::{Path, PathBuf};
use support::*;

const SEGMENT: usize = 65536 + 16;

struct Fixture {
    _dir: tempfile::TempDir,
    root: PathBuf,
    keys: PathBuf,
    id: String,
    other_id: String,
}

/// Two backups of a database big enough for several segments.
fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let keys = keyfile(dir.path(), "k1");
    let src = create_db("tamper");
    // random bytes do not compress: ~600 KiB stored, about 10 segments
    psql(&src, "create extension if not exists pgcrypto; create table t as select i, gen_random_bytes(600) r from generate_series(1, 1000) i");
    let root = dir.path().join("good");
    let url = format!("file://{}", root.display());
    let backup_json = || backup(&src, keys.to_str().unwrap(), &[&url]).json().ok();
    let a = backup_json();
    psql(&src, "insert into t values (0, 'x')");
    let b = backup_json();
    Fixture {
        root,
        keys,
        id: a["backup_id"].as_str().unwrap().into(),
        other_id: b["backup_id"].as_str().unwrap().into(),
        _dir: dir,
    }
}

fn copy_dir(from: &Path, to: &Path) {
    let st = std::process::Command::new("cp")
        .arg("-r")
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(st.success());
}

fn header_len(id: &str, key_id: &str) -> usize {
    let name = format!("backups/{id}/db-0.lbk");
    8 + 3 + 7 + 1 + key_id.len() + 2 + name.len() + 60
}

/// Applies `damage` to a copy of the destination, then checks verify and restore.
fn check(f: &Fixture, case: &str, damage: impl Fn(&Path), expect: &[&str]) {
    let root = f.root.parent().unwrap().join(case);
    copy_dir(&f.root, &root);
    damage(&root.join("backups").join(&f.id));
    let url = format!("file://{}", root.display());
    let k = f.keys.to_str().unwrap();

    let verify_it = verify(&[&url], k).id(&f.id);
    let err = verify_it.fails();
    let out = stdout(&verify_it.output());
    let said = format!("{err}\n{out}");
    for e in expect {
        assert!(said.contains(e), "{case}: verify said {said}");
    }

    // An empty database must stay empty: nothing is loaded from a bad object.
    let target = create_db("victim");
    let err = restore(&[&url], k).id(&f.id).into_db(&target).fails();
    assert!(!err.contains("restore complete"), "{case}: {err}");
    assert_eq!(
        psql(&target, "select count(*) from pg_class c join pg_namespace n on n.oid = c.relnamespace where n.nspname = 'public'"),
        "0",
        "{case}: restore loaded something: {err}"
    );
}

fn edit(path: &Path, f: impl Fn(&mut Vec<u8>)) {
    let mut b = std::fs::read(path).unwrap();
    f(&mut b);
    std::fs::write(path, b).unwrap();
}

#[test]
fn every_kind_of_damage_is_caught() {
    let f = fixture();
    let hl = header_len(&f.id, "k1");
    let obj = |d: &Path| d.join("db-0.lbk");
    let size = std::fs::metadata(f.root.join("backups").join(&f.id).join("db-0.lbk"))
        .unwrap()
        .len() as usize;
    assert!(size > hl + 4 * SEGMENT, "fixture too small: {size}");

    check(
        &f,
        "flip-data",
        |d| edit(&obj(d), |b| b[hl + 3 * SEGMENT + 100] ^= 0x01),
        &["db-0.lbk"],
    );
    check(
        &f,
        "flip-last-byte",
        |d| edit(&obj(d), |b| *b.last_mut().unwrap() ^= 0x80),
        &["db-0.lbk"],
    );
    check(
        &f,
        "flip-header",
        |d| edit(&obj(d), |b| b[20] ^= 0x01),
        &["db-0.lbk"],
    );
    check(
        &f,
        "truncate-middle",
        |d| edit(&obj(d), |b| b.truncate(b.len() - 100)),
        &["db-0.lbk"],
    );
    check(
        &f,
        "truncate-at-segment",
        |d| edit(&obj(d), |b| b.truncate(hl + 2 * SEGMENT)),
        &["db-0.lbk"],
    );
    check(
        &f,
        "reorder",
        |d| {
            edit(&obj(d), |b| {
                let s1: Vec<u8> = b[hl..hl + SEGMENT].to_vec();
                let s2: Vec<u8> = b[hl + SEGMENT..hl + 2 * SEGMENT].to_vec();
                b[hl..hl + SEGMENT].copy_from_slice(&s2);
                b[hl + SEGMENT..hl + 2 * SEGMENT].copy_from_slice(&s1);
            })
        },
        &["db-0.lbk"],
    );
    check(
        &f,
        "drop-segment",
        |d| edit(&obj(d), |b| drop(b.drain(hl + SEGMENT..hl + 2 * SEGMENT))),
        &["db-0.lbk"],
    );
    check(
        &f,
        "manifest-edited",
        |d| {
            let p = d.join("manifest.json");
            let t = std::fs::read_to_string(&p).unwrap();
            let edited = t.replacen("\"tier\":\"manual\"", "\"tier\":\"monthly\"", 1);
            assert_ne!(t, edited);
            std::fs::write(p, edited).unwrap();
        },
        &["manifest", "MAC"],
    );
    let other = f.root.join("backups").join(&f.other_id).join("db-0.lbk");
    check(
        &f,
        "swapped-object",
        |d| std::fs::copy(&other, obj(d)).map(|_| ()).unwrap(),
        &["db-0.lbk"],
    );
    check(
        &f,
        "object-deleted",
        |d| std::fs::remove_file(obj(d)).unwrap(),
        &["db-0.lbk", "does not exist"],
    );

    // The untouched copy still verifies and restores.
    let url = format!("file://{}", f.root.display());
    verify(&[&url], f.keys.to_str().unwrap()).id("all").ok();
}

#[test]
fn a_wrong_key_names_the_key_id_it_needs() {
    let f = fixture();
    let url = format!("file://{}", f.root.display());
    let dir = tempfile::tempdir().unwrap();
    let other = keyfile(dir.path(), "k2");
    let err = restore(&[&url], other.to_str().unwrap())
        .create(&unique("wk"))
        .fails();
    assert!(err.contains("\"k1\"") && err.contains("k2"), "{err}");
    // Same id, other key material.
    let same_id = keyfile(dir.path(), "k1");
    let err = verify(&[&url], same_id.to_str().unwrap()).fails();
    assert!(
        err.contains("MAC") || err.contains("does not decrypt"),
        "{err}"
    );
}

#[test]
fn restore_falls_back_to_the_next_destination() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keyfile(dir.path(), "k");
    let k = keys.to_str().unwrap();
    let src = create_db("fb");
    psql(
        &src,
        "create table t as select i from generate_series(1, 1000) i",
    );
    let east = bucket("us-east-1");
    let west = bucket("eu-west-1");
    let r = backup(&src, k, &[&east, &west]).json().ok();
    let id = r["backup_id"].as_str().unwrap();
    // Corrupt east's copy in the bucket.
    let key = format!("prod/orders/backups/{id}/db-0.lbk");
    let mut b = s3_get(&east, &key);
    let n = b.len();
    b[n / 2] ^= 0x10;
    s3_put(&east, &key, b);

    let err = verify(&[&east], k).fails();
    assert!(err.contains("db-0.lbk"), "{err}");
    let unreachable = "s3://gone/x?region=us-east-1&endpoint=http://127.0.0.1:9";
    let target = unique("fbr");
    let rep = restore(&[unreachable, &east, &west], k)
        .create(&target)
        .json()
        .ok();
    assert_eq!(rep["destination"].as_str().unwrap(), west);
    let failed = rep["failed_attempts"].as_array().unwrap();
    assert_eq!(failed.len(), 2, "{failed:?}");
    assert!(failed[1]["error"].as_str().unwrap().contains("db-0.lbk"));
    assert_eq!(psql(&target, "select count(*) from t"), "1000");
}

/// Someone who can write to the bucket edits one manifest to claim a base
/// backup that needs only WAL from far in the future: prune must not delete
/// the archive on its word (issue 13, item 3).
#[test]
fn an_edited_manifest_cannot_make_prune_delete_the_wal_archive() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keyfile(dir.path(), "k");
    let k = keys.to_str().unwrap();
    let root = dir.path().join("dest");
    let dest = format!("file://{}", root.display());
    let db = create_db("prunewal");
    let id = backup(&db, k, &[&dest]).json().ok()["backup_id"]
        .as_str()
        .unwrap()
        .to_string();
    let wal = root.join("wal/00000001");
    std::fs::create_dir_all(&wal).unwrap();
    let segments = ["000000010000000000000001", "000000010000000000000002"];
    for s in segments {
        std::fs::write(wal.join(format!("{s}.lbk")), b"archived").unwrap();
    }
    let path = root.join(format!("backups/{id}/manifest.json"));
    let text = std::fs::read_to_string(&path).unwrap();
    let forged = text.replacen(
        ",\"mac\":",
        ",\"physical\":{\"timeline\":1,\"start_lsn\":\"0/FF000028\",\"stop_lsn\":\"0/FF000100\",\
         \"start_wal\":\"0000000100000000000000FF\",\"started_at\":\"2026-11-25T02:00:00Z\",\
         \"stopped_at\":\"2026-11-25T02:01:00Z\"},\"mac\":",
        1,
    );
    assert_ne!(forged, text);
    std::fs::write(&path, forged).unwrap();

    let err = Cli::new("prune")
        .opt("--from", &dest)
        .opt("--key-file", k)
        .arg("--incomplete")
        .fails();
    assert!(err.contains("MAC"), "{err}");
    // Without the key, nothing decides on unauthenticated bytes either.
    Cli::new("prune")
        .opt("--from", &dest)
        .arg("--incomplete")
        .json()
        .ok();
    for s in segments {
        assert!(wal.join(format!("{s}.lbk")).exists(), "{s} was deleted");
    }
}

/// Someone deletes the newest manifest in the first destination (or it just
/// lags): `restore latest` still restores the newest backup, from the
/// destination that has it (issue 13, item 2).
#[test]
fn latest_is_the_newest_backup_in_any_destination() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keyfile(dir.path(), "k");
    let k = keys.to_str().unwrap();
    let first = format!("file://{}", dir.path().join("first").display());
    let second = format!("file://{}", dir.path().join("second").display());
    let db = create_db("lagging");
    psql(&db, "create table t (v text); insert into t values ('old')");
    backup(&db, k, &[&first, &second]).json().ok();
    psql(&db, "update t set v = 'new'");
    let newest = backup(&db, k, &[&second]).json().ok()["backup_id"]
        .as_str()
        .unwrap()
        .to_string();

    let target = unique("lagging_restored");
    let r = restore(&[&first, &second], k).create(&target).json().ok();
    assert_eq!(r["backup_id"], newest.as_str(), "{r}");
    assert_eq!(psql(&target, "select v from t"), "new");
}

/// The newest manifest is deleted in every destination: `plan` with the
/// newest backup the operator recorded refuses `latest` instead of quietly
/// planning the previous one (issue 13, item 2).
#[test]
fn a_plan_notices_that_the_newest_recorded_backup_is_gone() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keyfile(dir.path(), "k");
    let k = keys.to_str().unwrap();
    let dest = format!("file://{}", dir.path().join("dest").display());
    let db = create_db("rollback");
    let older = backup(&db, k, &[&dest]).json().ok()["backup_id"]
        .as_str()
        .unwrap()
        .to_string();
    let newest = backup(&db, k, &[&dest]).json().ok()["backup_id"]
        .as_str()
        .unwrap()
        .to_string();
    std::fs::remove_file(
        dir.path()
            .join("dest/backups")
            .join(&newest)
            .join("manifest.json"),
    )
    .unwrap();
    let plan = |known: &str| {
        Cli::new("plan")
            .opt("--from", &dest)
            .opt("--key-file", k)
            .opt("--newest-known", known)
            .json()
    };
    let err = plan(&newest).fails();
    assert!(err.contains(&older) && err.contains(&newest), "{err}");
    // What the operator knew is there: the plan goes ahead.
    let ok = plan(&older).ok();
    assert_eq!(ok["backup_id"], older.as_str());
}

/// Two policies share one key Secret. A backup copied from one's prefix to
/// the other's authenticates, but restores, plans and prunes of the other
/// policy (the operator sets LIFEBOAT_OWNER on every Job) refuse it and
/// say whose it is (issue 13, item 2).
#[test]
fn a_backup_copied_from_another_policy_is_not_this_policys() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keyfile(dir.path(), "k");
    let k = keys.to_str().unwrap();
    let orders = dir.path().join("orders");
    let billing = dir.path().join("billing");
    let db = create_db("owners");
    psql(
        &db,
        "create table t (v text); insert into t values ('orders')",
    );
    let id = backup(&db, k, &[&format!("file://{}", orders.display())])
        .opt("--owner", "shop/orders")
        .json()
        .ok()["backup_id"]
        .as_str()
        .unwrap()
        .to_string();
    let manifest =
        std::fs::read_to_string(orders.join("backups").join(&id).join("manifest.json")).unwrap();
    assert!(
        manifest.contains(r#""policy":"orders","namespace":"shop""#),
        "{manifest}"
    );
    std::fs::create_dir_all(&billing).unwrap();
    copy_dir(&orders.join("backups"), &billing.join("backups"));
    let from = format!("file://{}", billing.display());

    let target = create_db("owners_victim");
    let err = restore(&[&from], k)
        .opt("--owner", "shop/billing")
        .into_db(&target)
        .fails();
    assert!(
        err.contains("belongs to shop/orders, not shop/billing"),
        "{err}"
    );
    assert_eq!(
        psql(
            &target,
            "select count(*) from pg_tables where schemaname = 'public'"
        ),
        "0"
    );
    let plan = Cli::new("plan")
        .opt("--from", &from)
        .opt("--key-file", k)
        .opt("--owner", "other/orders")
        .json()
        .fails();
    assert!(
        plan.contains("belongs to shop/orders, not other/orders"),
        "{plan}"
    );

    // Its own policy reads it, wherever it lies.
    let own = unique("owners_restored");
    restore(&[&from], k)
        .opt("--owner", "shop/orders")
        .create(&own)
        .json()
        .ok();
    assert_eq!(psql(&own, "select v from t"), "orders");
    // A --policy that contradicts --owner is refused before anything runs.
    let err = backup(&db, k, &[&from])
        .opt("--owner", "shop/orders")
        .opt("--policy", "billing")
        .fails();
    assert!(
        err.contains("--policy \"billing\" is not the policy of --owner shop/orders"),
        "{err}"
    );
}
