//! Faults leave nothing half-committed: a killed upload, a failing pg_dump, an
//! unreachable destination.

mod support;
use std::time::{Duration, Instant};
use support::*;

fn wait_for(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !cond() {
        assert!(t0.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn manifests(keys: &[String]) -> usize {
    keys.iter().filter(|k| k.ends_with("manifest.json")).count()
}

#[test]
fn a_backup_killed_mid_upload_leaves_no_recovery_point_and_the_next_one_cleans_up() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keyfile(dir.path(), "k");
    let k = keys.to_str().unwrap();
    let src = create_db("killed");
    // ~60 MB that does not compress: several multipart parts
    psql(&src, "create extension if not exists pgcrypto; create table t as select i, gen_random_bytes(1000) r from generate_series(1, 60000) i");
    let s3 = bucket("eu-west-1");
    let local = format!("file://{}/bk", dir.path().display());

    let both = backup(&src, k, &[&s3, &local]);
    let mut child = both
        .cmd()
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_for("a multipart upload", Duration::from_secs(60), || {
        !s3_incomplete_uploads(&s3).is_empty()
    });
    child.kill().unwrap(); // SIGKILL: no cleanup code runs
    child.wait().unwrap();

    assert_eq!(manifests(&s3_keys(&s3)), 0, "no manifest after a kill");
    assert!(
        !s3_incomplete_uploads(&s3).is_empty(),
        "the killed upload is still open"
    );
    let listed = ok(&lifeboat(&[
        "list", "--from", &s3, "--from", &local, "--json",
    ]));
    assert_eq!(
        listed.as_array().unwrap().len(),
        0,
        "list shows no recovery point: {listed}"
    );

    let next = both.json().ok();
    let id = next["backup_id"].as_str().unwrap();
    assert!(
        s3_incomplete_uploads(&s3).is_empty(),
        "the killed upload was aborted"
    );
    // Only the new backup's objects remain, in both destinations.
    for key in s3_keys(&s3) {
        assert!(key.contains(id), "leftover {key}");
    }
    let leftovers: Vec<_> = walk(&dir.path().join("bk"))
        .into_iter()
        .filter(|p| !p.contains(id))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    let listed = ok(&lifeboat(&["list", "--from", &s3, "--json"]));
    assert_eq!(listed.as_array().unwrap().len(), 1);
}

fn walk(p: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(p) {
        for e in rd.flatten() {
            if e.path().is_dir() {
                out.extend(walk(&e.path()));
            } else {
                out.push(e.path().display().to_string());
            }
        }
    }
    out
}

#[test]
fn pg_dump_failures_fail_the_backup_with_its_own_message_and_no_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keyfile(dir.path(), "k");
    let k = keys.to_str().unwrap();
    let s3 = bucket("us-east-1");
    let local = format!("file://{}/bk", dir.path().display());

    // missing database
    let err = backup("no_such_db", k, &[&s3, &local]).fails();
    assert!(
        err.contains("pg_dump") && err.contains("database \"no_such_db\" does not exist"),
        "{err}"
    );

    // server down: nothing listens on this port
    let err = backup("postgres", k, &[&s3])
        .opt("--port", "9")
        .arg("--no-globals")
        .fails();
    assert!(
        err.contains("pg_dump") && err.contains("connection"),
        "{err}"
    );

    // bad password for a role that must log in with one
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "wrong-password\n").unwrap();
    let err = backup("postgres", k, &[&s3])
        .opt("--user", "lifeboat_pw")
        .opt("--password-file", pw.to_str().unwrap())
        .arg("--no-globals")
        .fails();
    assert!(
        err.contains("pg_dump") && err.contains("password authentication failed"),
        "{err}"
    );
    assert!(!err.contains("wrong-password"), "{err}");

    assert_eq!(s3_keys(&s3), Vec::<String>::new(), "nothing written to S3");
    assert!(walk(&dir.path().join("bk"))
        .iter()
        .all(|p| !p.ends_with("manifest.json")));
}

#[test]
fn an_unreachable_destination_fails_the_backup_everywhere_unless_partial_is_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keyfile(dir.path(), "k");
    let k = keys.to_str().unwrap();
    let src = create_db("unreach");
    psql(
        &src,
        "create table t as select i from generate_series(1, 1000) i",
    );
    let good = bucket("us-east-1");
    let dead = "s3://dr-bucket/x?region=eu-west-1&endpoint=http://127.0.0.1:9";

    let both = backup(&src, k, &[&good, dead]);
    let err = both.fails();
    assert!(
        err.contains(dead) && err.contains("nothing was committed"),
        "{err}"
    );
    assert_eq!(manifests(&s3_keys(&good)), 0);
    assert!(
        s3_keys(&good).is_empty(),
        "the good destination was cleaned: {:?}",
        s3_keys(&good)
    );

    let rep = both.arg("--allow-partial").json().ok();
    let dests = rep["destinations"].as_array().unwrap();
    assert_eq!(dests[0]["committed"], true);
    assert_eq!(dests[1]["committed"], false);
    assert!(
        dests[1]["error"].as_str().unwrap().contains("dr-bucket"),
        "{rep}"
    );
    assert_eq!(manifests(&s3_keys(&good)), 1);
}

#[test]
fn bad_input_gets_a_message_naming_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keyfile(dir.path(), "k");
    let k = keys.to_str().unwrap();
    let err = backup("x", k, &["ftp://host/x"]).fails();
    assert!(
        err.contains("ftp://host/x") && err.contains("s3://"),
        "{err}"
    );
    let err = backup("x", k, &["s3://b/p?region=r&colour=red"]).fails();
    assert!(err.contains("colour"), "{err}");
    let err = backup("x", "/nonexistent/keys", &["file:///tmp/x"]).fails();
    assert!(err.contains("/nonexistent/keys"), "{err}");
    let err = restore(&["file:///tmp/x"], k).id("yesterday").fails();
    assert!(
        err.contains("--backup") && err.contains("RFC 3339"),
        "{err}"
    );
    let err = fails(&lifeboat(&[
        "keygen",
        "--id",
        "bad id",
        "--out",
        dir.path().join("x").to_str().unwrap(),
    ]));
    assert!(err.contains("bad id"), "{err}");
    let err = fails(&lifeboat(&["keygen", "--id", "k", "--out", k]));
    assert!(err.contains("already exists"), "{err}");
}

#[test]
fn an_s3_error_is_one_line_with_the_services_code_and_message() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keyfile(dir.path(), "k");
    let k = keys.to_str().unwrap();
    // A bucket nobody created: the service answers NoSuchBucket.
    let missing = s3_url(&unique("lb-missing").replace('_', "-"), "us-east-1", "x");
    let db = create_db("s3err");
    let err = backup(&db, k, &[&format!("dr-eu={missing}")]).fails();
    // Not the SDK's debug dump of the response, anywhere in the output.
    assert!(
        !err.contains("ErrorMetadata") && !err.contains("extras"),
        "{err}"
    );
    let line = err
        .lines()
        .find(|l| l.starts_with("error:"))
        .unwrap_or_else(|| panic!("no error line: {err}"));
    assert!(line.contains("NoSuchBucket"), "{line}");
    assert!(
        line.contains("dr-eu (s3://"),
        "names the destination: {line}"
    );
    assert_eq!(line.matches("dr-eu").count(), 1, "said once: {line}");
    assert!(line.len() < 300, "{} bytes: {line}", line.len());
}

/// pg_restore commits, then fails (killed on its way out, a lost
/// connection): the restored database may be whole, so the restore reports
/// the failure and keeps it rather than dropping what it created
/// (issue 13, item 5).
#[test]
fn a_fault_after_pg_restore_committed_keeps_the_restored_database() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keyfile(dir.path(), "k");
    let k = keys.to_str().unwrap();
    let dest = format!("file://{}", dir.path().join("dest").display());
    let db = create_db("late");
    psql(&db, "create table t (v int); insert into t values (42)");
    backup(&db, k, &[&dest]).json().ok();

    // PostgreSQL's programs, with a pg_restore that fails after its work.
    let bin = pg_bin_with(
        dir.path(),
        "pg_restore",
        "\"$REAL\" \"$@\" || exit $?\necho 'pg_restore: lost the connection after commit' >&2\nexit 1",
    );

    let target = unique("late_restored");
    let err = restore(&[&dest], k)
        .create(&target)
        .opt("--pg-bin", bin.to_str().unwrap())
        .fails();
    assert!(err.contains("lost the connection after commit"), "{err}");
    assert_eq!(
        psql(&target, "select v from t"),
        "42",
        "the restored database was kept"
    );
}

/// An http:// endpoint on another host is refused before anything is sent
/// (issue 13, item 4); `insecure-http=true` allows it.
#[test]
fn plain_http_to_another_host_is_refused_unless_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keyfile(dir.path(), "k");
    let db = create_db("plainhttp");
    let remote = "s3://b/p?region=us-east-1&endpoint=http://192.0.2.10:9000";
    let t0 = Instant::now();
    let err = backup(&db, keys.to_str().unwrap(), &[remote]).fails();
    assert!(
        err.contains("plain HTTP") && err.contains("insecure-http=true"),
        "{err}"
    );
    assert!(t0.elapsed() < Duration::from_secs(5), "refused, not tried");
}
