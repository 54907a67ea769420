//! Point-in-time recovery with the real PostgreSQL: physical base backups
//! (`backup --method physical`), WAL archived by wal-push, and
//! `restore --data-dir` to a time, an LSN and the latest point; a corrupted
//! segment fails the restore; the promoted server archives on its new
//! timeline and a second restore follows it.

mod support;
use support::cluster::{
    free_port, give_to_postgres, ids_in, insert, psql_at, shared_file_dest, shared_tempdir,
    Cluster, COMMIT_TS,
};
use support::*;

use std::path::Path;

fn base_backup(c: &Cluster, to: &[&str], key: &str) -> serde_json::Value {
    c.base_backup(to, key).json().ok()
}

/// `lifeboat restore --data-dir`: Ok(report) or Err(stderr).
fn restore_dir(
    from: &[&str],
    key: &str,
    dir: &Path,
    port: u16,
    extra: &[&str],
) -> Result<serde_json::Value, String> {
    restore(from, key)
        .data_dir(dir, port)
        .json()
        .args(extra.iter().copied())
        .result()
}

fn time(v: &serde_json::Value) -> chrono::DateTime<chrono::FixedOffset> {
    chrono::DateTime::parse_from_rfc3339(v.as_str().unwrap_or_default()).expect("a time")
}

#[test]
fn restore_to_a_time_an_lsn_and_latest_and_a_corrupted_segment_fails() {
    let dir = shared_tempdir();
    let keys = keyfile(dir.path(), "k");
    give_to_postgres(&keys);
    let k = keys.to_str().unwrap();
    let s3 = bucket("eu-west-1");
    let local = shared_file_dest(dir.path(), "archive");
    let c = Cluster::archiving(dir.path(), &[s3.clone(), local.clone()], &keys);
    c.psql(
        "create table t (id bigint primary key, at timestamptz not null default clock_timestamp())",
    );
    insert(&c, 0..=0);
    c.switch_wal();
    let before_any_base = chrono::Utc::now();

    let report = base_backup(&c, &[&s3, &local], k);
    let id = report["backup_id"].as_str().unwrap().to_string();
    assert_eq!(report["objects"][0]["role"], "base");
    assert!(report["objects"][0]["key"]
        .as_str()
        .unwrap()
        .ends_with("/base.lbk"));
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(
            dir.path()
                .join(format!("archive/backups/{id}/manifest.json")),
        )
        .unwrap(),
    )
    .unwrap();
    let phys = &manifest["physical"];
    assert_eq!(manifest["source"]["method"], "physical");
    assert_eq!(phys["timeline"], 1);
    let start_wal = phys["start_wal"].as_str().unwrap();
    assert!(
        start_wal.starts_with("00000001") && start_wal.len() == 24,
        "{phys}"
    );
    let lsn_of = |v: &serde_json::Value| {
        v.as_str()
            .unwrap()
            .parse::<lifeboat::recovery::Lsn>()
            .unwrap()
    };
    assert!(
        lsn_of(&phys["start_lsn"]) < lsn_of(&phys["stop_lsn"]),
        "{phys}"
    );
    assert!(
        s3_keys(&s3).contains(&format!("prod/orders/wal/00000001/{start_wal}.lbk")),
        "-X none: the WAL the base backup needs was archived before it ended"
    );

    insert(&c, 1..=3);
    let t = c.psql(&format!("{COMMIT_TS}3"));
    let lsn = c.psql("select pg_current_wal_insert_lsn()");
    std::thread::sleep(std::time::Duration::from_millis(5));
    insert(&c, 4..=6);
    assert!(c.psql(&format!("{COMMIT_TS}4")) > t);
    let last = c.psql(&format!("{COMMIT_TS}6"));
    let tail = c.switch_wal();

    // To a time: exactly the rows committed at or before it (row 3 commits at T).
    let d = dir.path().join("at-time");
    let r = restore_dir(&[&s3], k, &d, free_port(), &["--target-time", &t]).unwrap();
    assert_eq!(r["backup_id"], id.as_str());
    assert_eq!(r["recovered"]["timeline"], 2, "{r}");
    assert_eq!(
        time(&r["recovered"]["last_commit_time"]),
        time(&t.as_str().into()),
        "{r}"
    );
    assert_eq!(r["running"], false);
    assert_eq!(ids_in(&d), vec![0, 1, 2, 3]);

    // To an LSN, from the file:// archive.
    let d = dir.path().join("at-lsn");
    let r = restore_dir(&[&local], k, &d, free_port(), &["--target-lsn", &lsn]).unwrap();
    assert_eq!(ids_in(&d), vec![0, 1, 2, 3], "{r}");

    // Latest: everything archived.
    let d = dir.path().join("latest");
    let r = restore_dir(&[&s3, &local], k, &d, free_port(), &[]).unwrap();
    assert_eq!(
        time(&r["recovered"]["last_commit_time"]),
        time(&last.as_str().into()),
        "{r}"
    );
    assert_eq!(ids_in(&d), vec![0, 1, 2, 3, 4, 5, 6]);

    // Before the first base backup: a clear error naming the flag, nothing unpacked.
    let d = dir.path().join("too-early");
    let early = before_any_base.to_rfc3339();
    let err = restore_dir(&[&s3], k, &d, free_port(), &["--target-time", &early]).unwrap_err();
    assert!(
        err.contains("--target-time") && err.contains("before"),
        "{err}"
    );
    assert!(!d.exists());
    // A non-empty directory is refused.
    let err = restore_dir(&[&s3], k, dir.path(), free_port(), &[]).unwrap_err();
    assert!(
        err.contains("--data-dir") && err.contains("not empty"),
        "{err}"
    );

    // A segment corrupted in the bucket stops recovery: the restore fails
    // naming it and leaves nothing behind, never a shorter history.
    let key = format!("prod/orders/wal/00000001/{tail}.lbk");
    let mut obj = s3_get(&s3, &key);
    let n = obj.len();
    obj[n / 2] ^= 0x01;
    s3_put(&s3, &key, obj);
    let d = dir.path().join("corrupt");
    let err = restore_dir(&[&s3], k, &d, free_port(), &[]).unwrap_err();
    assert!(
        err.contains(&tail) && err.contains("could not be restored"),
        "{err}"
    );
    assert!(!d.exists(), "the half-recovered directory is removed");
}

#[test]
fn the_promoted_server_archives_a_new_timeline_and_a_second_restore_follows_it() {
    let dir = shared_tempdir();
    let keys = keyfile(dir.path(), "k");
    give_to_postgres(&keys);
    let k = keys.to_str().unwrap();
    let s3 = bucket("us-east-1");
    let c = Cluster::archiving(dir.path(), std::slice::from_ref(&s3), &keys);
    c.psql(
        "create table t (id bigint primary key, at timestamptz not null default clock_timestamp())",
    );
    base_backup(&c, &[&s3], k);
    insert(&c, 1..=3);
    c.switch_wal();
    // The primary is lost.
    c.stop();
    drop(c);

    let d = dir.path().join("new-primary");
    let port = free_port();
    let r = restore_dir(&[&s3], k, &d, port, &["--keep-running"]).unwrap();
    assert_eq!(r["running"], true);
    assert_eq!(r["recovered"]["timeline"], 2);
    let p = Cluster::running_at(&d, port);
    assert_eq!(psql_at(&d, port, "select count(*) from t"), "3");
    insert(&p, 4..=5);
    let t5 = p.psql(&format!("{COMMIT_TS}5"));
    std::thread::sleep(std::time::Duration::from_millis(5));
    insert(&p, 6..=6);
    let seg = p.switch_wal();
    assert!(seg.starts_with("00000002"), "{seg}");
    let keys_now = s3_keys(&s3);
    assert!(keys_now.contains(&"prod/orders/wal/00000002/00000002.history.lbk".to_string()));
    assert!(keys_now.contains(&format!("prod/orders/wal/00000002/{seg}.lbk")));
    p.stop();

    // A second point-in-time restore, onto the new timeline.
    let d2 = dir.path().join("second");
    let r = restore_dir(&[&s3], k, &d2, free_port(), &["--target-time", &t5]).unwrap();
    assert_eq!(r["recovered"]["timeline"], 3, "{r}");
    assert_eq!(ids_in(&d2), vec![1, 2, 3, 4, 5]);
    let d3 = dir.path().join("third");
    restore_dir(&[&s3], k, &d3, free_port(), &[]).unwrap();
    assert_eq!(ids_in(&d3), vec![1, 2, 3, 4, 5, 6]);
}

#[test]
fn a_base_backup_is_refused_while_archiving_fails() {
    let dir = shared_tempdir();
    let keys = keyfile(dir.path(), "k");
    give_to_postgres(&keys);
    // Root's directory: the archive_command (run as postgres) cannot write there.
    let unwritable = dir.path().join("root-only");
    std::fs::create_dir(&unwritable).unwrap();
    let dest = format!("file://{}", unwritable.display());
    let c = Cluster::archiving(dir.path(), std::slice::from_ref(&dest), &keys);
    c.psql("create table t (id int)");
    let seg = c.psql("select pg_walfile_name(pg_current_wal_lsn())");
    c.psql("select pg_switch_wal()");
    let t0 = std::time::Instant::now();
    while c.psql("select coalesce(last_failed_wal, '-') from pg_stat_archiver") != seg {
        assert!(t0.elapsed().as_secs() < 30, "archiving never failed");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let err = c
        .base_backup(&[&dest], keys.to_str().unwrap())
        .json()
        .fails();
    assert!(
        err.contains("archive_command is failing") && err.contains(&seg),
        "{err}"
    );
}

/// The manifest of backup `id` in a file:// archive at `root`.
fn manifest_in(root: &Path, id: &str) -> serde_json::Value {
    let path = root.join(format!("backups/{id}/manifest.json"));
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn wal_files(root: &Path) -> Vec<String> {
    let mut names = Vec::new();
    for tl in std::fs::read_dir(root.join("wal")).unwrap() {
        for f in std::fs::read_dir(tl.unwrap().path()).unwrap() {
            names.push(f.unwrap().file_name().to_string_lossy().into_owned());
        }
    }
    names.sort();
    names
}

#[test]
fn the_recovery_window_restores_at_both_ends_and_retention_keeps_the_wal_kept_backups_need() {
    let dir = shared_tempdir();
    let keys = keyfile(dir.path(), "k");
    give_to_postgres(&keys);
    let k = keys.to_str().unwrap();
    let local = shared_file_dest(dir.path(), "archive");
    let archive = dir.path().join("archive");
    let c = Cluster::archiving(dir.path(), std::slice::from_ref(&local), &keys);
    c.psql(
        "create table t (id bigint primary key, at timestamptz not null default clock_timestamp())",
    );
    insert(&c, 0..=1);
    c.switch_wal();
    let a = base_backup(&c, &[&local], k)["backup_id"]
        .as_str()
        .unwrap()
        .to_string();
    insert(&c, 2..=3);
    c.switch_wal();
    let b = base_backup(&c, &[&local], k)["backup_id"]
        .as_str()
        .unwrap()
        .to_string();
    insert(&c, 4..=5);
    c.switch_wal();
    let archived_until = chrono::Utc::now();

    let stopped = |id: &str| {
        manifest_in(&archive, id)["physical"]["stopped_at"]
            .as_str()
            .unwrap()
            .parse::<chrono::DateTime<chrono::Utc>>()
            .unwrap()
    };
    // The window the controller reports: oldest base backup's end to the newest archived WAL.
    let w =
        lifeboat::walarchive::recovery_window(&[stopped(&a), stopped(&b)], Some(archived_until))
            .unwrap();
    assert_eq!(w.from, stopped(&a));

    // Its start: base backup A, nothing after it.
    let d = dir.path().join("window-start");
    let from = w.from.to_rfc3339();
    let r = restore_dir(&[&local], k, &d, free_port(), &["--target-time", &from]).unwrap();
    assert_eq!(r["backup_id"], a.as_str(), "{r}");
    assert_eq!(ids_in(&d), vec![0, 1]);
    // What a RestoreRequest's Job runs: the same restore with checks on the
    // promoted server, and the summary the controller reads back.
    let report_file = dir.path().join("summary.json");
    let rf = report_file.to_str().unwrap();
    let checked = |name: &str, check: &str| {
        let d = dir.path().join(name);
        let args = [
            "--target-time",
            &from,
            "--check",
            check,
            "--report-file",
            rf,
        ];
        restore_dir(&[&local], k, &d, free_port(), &args)
    };
    checked("window-start-checked", "select count(*) = 2 from t").unwrap();
    let summary: lifeboat::wire::RestoreSummary =
        lifeboat::wire::parse(&std::fs::read_to_string(&report_file).unwrap())
            .expect("a summary the controller reads");
    assert!(summary.ok);
    assert_eq!(summary.backup_id.as_deref(), Some(a.as_str()));
    assert_eq!(summary.checks, 1);
    assert!(
        summary.backup_completed_at.unwrap() <= w.from,
        "{summary:?}"
    );
    // A check that returns false fails the verify step, naming the check.
    let err = checked("window-start-failing", "select count(*) = 3 from t").unwrap_err();
    assert!(
        err.contains("count(*) = 3") && err.contains("false"),
        "{err}"
    );
    let failed: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report_file).unwrap()).unwrap();
    assert_eq!(failed["ok"], false);
    assert_eq!(failed["failed_step"], "verify", "{failed}");

    // Its end: past the last commit, so the archive's end is the state then.
    let d = dir.path().join("window-end");
    let to = w.to.to_rfc3339();
    let r = restore_dir(&[&local], k, &d, free_port(), &["--target-time", &to]).unwrap();
    assert_eq!(r["backup_id"], b.as_str(), "{r}");
    assert_eq!(r["ended_before_target"], true, "{r}");
    assert_eq!(ids_in(&d), vec![0, 1, 2, 3, 4, 5]);

    // Retention lets A go: the WAL before B's first segment goes with it,
    // B's and everything after stays, and B still restores to the end.
    let b_start = manifest_in(&archive, &b)["physical"]["start_wal"]
        .as_str()
        .unwrap()
        .to_string();
    let before = wal_files(&archive);
    assert!(
        before.iter().any(|f| f.as_str() < b_start.as_str()),
        "{before:?}"
    );
    let p = ok(&lifeboat(&[
        "prune",
        "--from",
        &local,
        "--backup",
        &a,
        "--key-file",
        k,
        "--json",
    ]));
    let after = wal_files(&archive);
    assert_eq!(
        p["wal_removed"].as_u64().unwrap() as usize,
        before.len() - after.len(),
        "{p}"
    );
    assert!(p["wal_removed"].as_u64().unwrap() > 0, "{p}");
    assert!(
        after.iter().all(|f| f.as_str() >= b_start.as_str()),
        "only what B needs is left: {after:?}"
    );
    assert!(after.contains(&format!("{b_start}.lbk")), "{after:?}");
    let d = dir.path().join("after-prune");
    restore_dir(&[&local], k, &d, free_port(), &[]).unwrap();
    assert_eq!(ids_in(&d), vec![0, 1, 2, 3, 4, 5]);
}

/// `--run-as` a user who cannot read the key file: the restore says so up
/// front, naming the file, instead of unpacking the base backup and failing
/// in recovery with "could not locate required checkpoint record"
/// (issue 13, item 9).
#[test]
fn a_key_file_the_server_cannot_read_is_named_before_recovery_starts() {
    let dir = shared_tempdir();
    let keys = keyfile(dir.path(), "k"); // root's, 0600
    let archive = shared_file_dest(dir.path(), "archive");
    let data = dir.path().join("restored");
    let err =
        restore_dir(&[&archive], keys.to_str().unwrap(), &data, free_port(), &[]).unwrap_err();
    assert!(
        err.contains("read the key file") && err.contains(keys.to_str().unwrap()),
        "{err}"
    );
    assert!(!data.exists(), "nothing was left behind");
    // Readable by the server's user: past the check (to the next problem,
    // an archive with no backup in it).
    give_to_postgres(&keys);
    let err =
        restore_dir(&[&archive], keys.to_str().unwrap(), &data, free_port(), &[]).unwrap_err();
    assert!(!err.contains("read the key file"), "{err}");
}
