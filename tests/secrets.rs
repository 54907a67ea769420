//! The master key and the database password never appear in any process's
//! argv or environment, in logs at any verbosity, or in error messages.

mod support;
use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use support::*;

/// Every process's argv and environment, keyed by pid and command name.
fn scan_processes(secrets: &[&str], seen: &mut BTreeSet<String>) -> Vec<String> {
    let mut leaks = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let pid = entry.file_name().to_string_lossy().into_owned();
        if !pid.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let environ = std::fs::read(entry.path().join("environ")).unwrap_or_default();
        let argv = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if let Some(name) = argv.split_whitespace().next() {
            seen.insert(name.rsplit('/').next().unwrap_or(name).to_string());
        }
        let env = String::from_utf8_lossy(&environ);
        for s in secrets {
            if argv.contains(s) || env.contains(s) {
                leaks.push(format!("pid {pid}: {argv}"));
            }
        }
    }
    leaks
}

#[test]
fn secrets_stay_out_of_argv_environment_logs_and_errors() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keyfile(dir.path(), "k1");
    let key_text = std::fs::read_to_string(&keys).unwrap();
    let key_material = key_text
        .lines()
        .last()
        .unwrap()
        .split_whitespace()
        .last()
        .unwrap()
        .to_string();
    let password = PW_ROLE_PASSWORD.to_string();
    let pwfile = dir.path().join("password");
    std::fs::write(&pwfile, format!("{password}\n")).unwrap();

    let db = create_db("sec");
    psql(
        "postgres",
        &format!("alter database {db} owner to lifeboat_pw"),
    );
    psql(&db, "set role lifeboat_pw; create extension if not exists pgcrypto; create table t as select i, gen_random_bytes(1000) r from generate_series(1, 40000) i");
    let s3 = bucket("us-east-1");
    let secrets = [password.as_str(), key_material.as_str()];
    let k = keys.to_str().unwrap();
    let pw = pwfile.to_str().unwrap();

    let run = |cli: Cli| {
        let mut child = cli
            .cmd()
            .env("LIFEBOAT_LOG", "trace")
            .env("PGPASSWORD", "") // nothing inherited by accident
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut seen = BTreeSet::new();
        let mut leaks = Vec::new();
        // Read output on threads so the child never blocks on a full pipe.
        let (mut out, mut err) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
        let t_out = std::thread::spawn(move || {
            let mut s = String::new();
            std::io::Read::read_to_string(&mut out, &mut s).unwrap();
            s
        });
        let t_err = std::thread::spawn(move || {
            let mut s = String::new();
            std::io::Read::read_to_string(&mut err, &mut s).unwrap();
            s
        });
        while child.try_wait().unwrap().is_none() {
            leaks.extend(scan_processes(&secrets, &mut seen));
        }
        let status = child.wait().unwrap();
        (
            status,
            t_out.join().unwrap(),
            t_err.join().unwrap(),
            seen,
            leaks,
        )
    };

    let as_pw_role = |cli: Cli| cli.opt("--user", "lifeboat_pw").opt("--password-file", pw);
    let backup_db = || as_pw_role(backup(&db, k, &[&s3]));
    let (status, out, err, seen, leaks) = run(backup_db().json());
    assert!(status.success(), "{err}");
    assert!(
        seen.contains("pg_dump") && seen.contains("lifeboat"),
        "the scan saw the processes: {seen:?}"
    );
    assert!(leaks.is_empty(), "{leaks:?}");
    assert!(
        err.contains("TRACE") || err.contains("DEBUG"),
        "trace logging was on"
    );
    for s in secrets {
        assert!(
            !out.contains(s) && !err.contains(s),
            "a secret is in the backup's output"
        );
    }

    let target = unique("secr");
    psql(
        "postgres",
        &format!("create database {target} owner lifeboat_pw"),
    );
    let (status, out, err, seen, leaks) = run(as_pw_role(restore(&[&s3], k))
        .into_db(&target)
        .opt("--maintenance-db", &target)
        .json());
    assert!(status.success(), "{err}");
    assert!(seen.contains("pg_restore"), "{seen:?}");
    assert!(leaks.is_empty(), "{leaks:?}");
    for s in secrets {
        assert!(
            !out.contains(s) && !err.contains(s),
            "a secret is in the restore's output"
        );
    }

    // Errors: a wrong password and a damaged key file do not echo secrets.
    std::fs::write(&pwfile, "not-the-password\n").unwrap();
    let e = backup_db().fails();
    assert!(!e.contains("not-the-password"), "{e}");
    let broken = dir.path().join("broken-keys");
    write_private(
        &broken,
        format!("LIFEBOAT-KEY-1 k1 {}x\n", &key_material[..20]),
    );
    let e = Cli::new("list")
        .opt("--from", &s3)
        .opt("--key-file", broken.to_str().unwrap())
        .fails();
    assert!(
        e.contains("line 1") && !e.contains(&key_material[..20]),
        "{e}"
    );
}

/// PostgreSQL's programs get libpq's variables and the locale, not the
/// rest of lifeboat's environment (cloud credentials, tokens) (issue 13, item 4).
#[test]
fn child_programs_get_only_the_environment_they_need() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keyfile(dir.path(), "k");
    let k = keys.to_str().unwrap();
    let seen = dir.path().join("env-seen");
    let bin = pg_bin_with(
        dir.path(),
        "pg_dump",
        &format!("env > '{}'\nexec \"$REAL\" \"$@\"", seen.display()),
    );
    let db = create_db("envs");
    let dest = format!("file://{}", dir.path().join("dest").display());
    let o = backup(&db, k, &[&dest])
        .opt("--pg-bin", bin.to_str().unwrap())
        .cmd()
        .env("AWS_SECRET_ACCESS_KEY", "canary-aws-secret")
        .env("LIFEBOAT_CANARY_TOKEN", "canary-token")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let env = std::fs::read_to_string(&seen).unwrap();
    assert!(!env.contains("canary"), "{env}");
    assert!(env.contains("PGPORT=") && env.contains("PATH="), "{env}");
}

/// SIGTERM (a Job's deadline) mid-backup: the passfile with the password
/// does not outlive the process (issue 13, item 4).
#[test]
fn sigterm_removes_the_passfile() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keyfile(dir.path(), "k");
    let k = keys.to_str().unwrap();
    let tmp = dir.path().join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    let pwfile = dir.path().join("password");
    std::fs::write(&pwfile, format!("{PW_ROLE_PASSWORD}\n")).unwrap();
    // pg_dump that hangs, as a dump of a locked table would.
    let bin = pg_bin_with(dir.path(), "pg_dump", "sleep 30");
    let db = create_db("term");
    let dest = format!("file://{}", dir.path().join("dest").display());
    let mut child = backup(&db, k, &[&dest])
        .opt("--user", PW_ROLE)
        .opt("--password-file", pwfile.to_str().unwrap())
        .opt("--pg-bin", bin.to_str().unwrap())
        .arg("--no-globals")
        .cmd()
        .env("TMPDIR", &tmp)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let passfiles = || {
        std::fs::read_dir(&tmp)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .starts_with("lifeboat-pgpass")
            })
            .count()
    };
    let t0 = std::time::Instant::now();
    while passfiles() == 0 {
        assert!(t0.elapsed().as_secs() < 20, "no passfile was written");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(143), "{status}");
    assert_eq!(passfiles(), 0, "the passfile outlived the process");
}

/// pg_restore fails quoting a row (`DETAIL: Key (email)=(…)`): neither the
/// Job's report (what status and events are made of) nor the logs carry
/// the row (issue 13, item 4).
#[test]
fn row_values_from_a_failed_restore_stay_out_of_the_report_and_logs() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keyfile(dir.path(), "k");
    let k = keys.to_str().unwrap();
    let dest = format!("file://{}", dir.path().join("dest").display());
    let db = create_db("rows");
    backup(&db, k, &[&dest]).json().ok();
    let bin = pg_bin_with(
        dir.path(),
        "pg_restore",
        "cat > /dev/null\n\
         echo 'pg_restore: error: could not execute query: ERROR:  duplicate key value violates unique constraint \"users_email_key\"' >&2\n\
         echo 'DETAIL:  Key (email)=(alice@example.com) already exists.' >&2\n\
         exit 1",
    );
    let report = dir.path().join("report.json");
    let o = restore(&[&dest], k)
        .create(&unique("rows_restored"))
        .opt("--check", "select true")
        .opt("--report-file", report.to_str().unwrap())
        .opt("--pg-bin", bin.to_str().unwrap())
        .output();
    assert!(!o.status.success());
    let report = std::fs::read_to_string(&report).unwrap();
    let logs = stderr(&o);
    assert!(report.contains("users_email_key"), "{report}");
    assert!(!report.contains("alice@example.com"), "{report}");
    assert!(!logs.contains("alice@example.com"), "{logs}");
}
