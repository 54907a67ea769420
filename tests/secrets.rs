//! The master key and the database password never appear in any process's
//! argv or environment, in logs at any verbosity, or in error messages.

mod support;
use std::collections::BTreeSet;
use std::process::Stdio;
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
    std::fs::write(
        &broken,
        format!("LIFEBOAT-KEY-1 k1 {}x\n", &key_material[..20]),
    )
    .unwrap();
    let e = Cli::new("list")
        .opt("--from", &s3)
        .opt("--key-file", broken.to_str().unwrap())
        .fails();
    assert!(
        e.contains("line 1") && !e.contains(&key_material[..20]),
        "{e}"
    );
}
