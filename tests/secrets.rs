//! The master key and the database password never appear in any process's
//! argv or environment, in logs at any verbosity, or in error messages; nor
//! does a Kubernetes Secret's value that a config backup stores.

#[path = "support/apiserver.rs"]
mod apiserver;
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

/// A Secret's value (a canary) backed up, restored, exported and refused
/// appears in no stored byte, in no output or log at trace verbosity, in no
/// error message and in no report, in the clear or as the API's base64.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_secret_value_appears_in_no_stored_byte_log_or_error() {
    use base64::Engine;
    use serde_json::json;
    const CANARY: &str = "canary-3f9a1c-kubernetes-secret-value";
    let b64 = base64::engine::general_purpose::STANDARD.encode(CANARY);
    let needles = [CANARY.to_string(), b64.clone()];
    let dir = tempfile::tempdir().unwrap();
    let server = apiserver::ApiServer::start().await;
    server.store.strict();
    let kc = dir.path().join("kubeconfig");
    server.kubeconfig(&kc);
    let s = &server.store;
    s.insert(
        "api/v1/namespaces",
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "vault"}}),
    )
    .unwrap();
    s.insert(
        "api/v1/secrets",
        json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque", "immutable": true,
        "metadata": {"name": "db", "namespace": "vault"}, "stringData": {"password": CANARY}}),
    )
    .unwrap();
    let keys = tokio::task::block_in_place(|| keyfile(dir.path(), "k1"));
    let store = dir.path().join("store");
    let to = format!("file://{}", store.display());
    let out_dir = dir.path().join("export");
    let lifeboat = |args: Vec<String>| {
        let kc = kc.clone();
        async move {
            let out = tokio::process::Command::new(bin())
                .args(&args)
                .env("KUBECONFIG", kc)
                .env("LIFEBOAT_LOG", "trace")
                .stdin(Stdio::null())
                .output()
                .await
                .unwrap();
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            (out.status.success(), text)
        }
    };
    let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let k = keys.to_str().unwrap();
    let restore = |extra: &[&str]| {
        let mut a = args(&[
            "restore",
            "--config",
            "--from",
            &to,
            "--key-file",
            k,
            "--json",
        ]);
        a.extend(args(extra));
        a
    };
    let mut outputs = Vec::new();
    let (ok, text) = lifeboat(args(&[
        "backup",
        "--config",
        "-n",
        "vault",
        "--resource",
        "secrets",
        "--resource",
        "namespaces",
        "--to",
        &to,
        "--key-file",
        k,
        "--json",
    ]))
    .await;
    assert!(ok, "{text}");
    assert!(
        text.contains("TRACE") || text.contains("DEBUG"),
        "trace logging was on"
    );
    outputs.push(("backup", text));
    // The live Secret is immutable with another value: the update is refused.
    let secrets: kube::Api<kube::api::DynamicObject> = kube::Api::namespaced_with(
        server.client(),
        "vault",
        &kube::api::ApiResource::erase::<k8s_openapi::api::core::v1::Secret>(&()),
    );
    secrets.delete("db", &Default::default()).await.unwrap();
    secrets
        .create(
            &Default::default(),
            &serde_json::from_value(json!({"apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "db"}, "immutable": true, "data": {"password": "b3RoZXI="}}))
            .unwrap(),
        )
        .await
        .unwrap();
    let (ok, text) = lifeboat(restore(&["--existing", "update"])).await;
    assert!(!ok && text.contains("Secret vault/db"), "{text}");
    outputs.push(("refused update", text));
    secrets.delete("db", &Default::default()).await.unwrap();
    let (ok, text) = lifeboat(restore(&[])).await;
    assert!(ok, "{text}");
    outputs.push(("restore", text));
    assert_eq!(
        server.store.get("api/v1/secrets", "vault", "db").unwrap()["data"]["password"],
        json!(b64)
    );
    let (ok, text) = lifeboat(args(&[
        "export",
        "--from",
        &to,
        "--key-file",
        k,
        "--out",
        out_dir.to_str().unwrap(),
    ]))
    .await;
    assert!(ok, "{text}");
    outputs.push(("export", text));
    for (what, text) in &outputs {
        for n in &needles {
            assert!(
                !text.contains(n.as_str()),
                "the Secret's value is in the output of {what}"
            );
        }
    }
    // Stored bytes: every object and manifest under the destination.
    let stored = all_bytes(&store);
    assert!(stored.len() > 500, "read the destination");
    for n in &needles {
        assert!(
            !stored.windows(n.len()).any(|w| w == n.as_bytes()),
            "the Secret's value is stored in the clear"
        );
    }
}

/// A value kept in AWS Secrets Manager and SSM (moto), as text, binary and
/// SecureString, backed up, restored and refused, appears in no stored
/// byte, in no output or log at trace verbosity and in no error message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cloud_secret_value_appears_in_no_stored_byte_log_or_error() {
    use base64::Engine;
    const CANARY: &str = "canary-5d2e8a-cloud-secret-value";
    let b64 = base64::engine::general_purpose::STANDARD.encode(CANARY);
    let needles = [CANARY.to_string(), b64];
    let dir = tempfile::tempdir().unwrap();
    let shared = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-west-2"))
        .load()
        .await;
    let sm = aws_sdk_secretsmanager::Client::from_conf(
        aws_sdk_secretsmanager::config::Builder::from(&shared)
            .endpoint_url(s3_endpoint())
            .build(),
    );
    let ssm = aws_sdk_ssm::Client::from_conf(
        aws_sdk_ssm::config::Builder::from(&shared)
            .endpoint_url(s3_endpoint())
            .build(),
    );
    let tag = unique("canary").replace('_', "-");
    let prefix = format!("{tag}/");
    let path = format!("/{tag}");
    sm.create_secret()
        .name(format!("{prefix}text"))
        .secret_string(CANARY)
        .send()
        .await
        .unwrap();
    sm.create_secret()
        .name(format!("{prefix}binary"))
        .secret_binary(aws_sdk_secretsmanager::primitives::Blob::new(
            CANARY.as_bytes(),
        ))
        .send()
        .await
        .unwrap();
    ssm.put_parameter()
        .name(format!("{path}/pw"))
        .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
        .value(CANARY)
        .send()
        .await
        .unwrap();
    let keys = tokio::task::block_in_place(|| keyfile(dir.path(), "k1"));
    let store = dir.path().join("store");
    let to = format!("file://{}", store.display());
    let endpoint = s3_endpoint();
    let lifeboat = |args: Vec<&str>| {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        async move {
            let out = tokio::process::Command::new(bin())
                .args(&args)
                .env("LIFEBOAT_LOG", "trace")
                .stdin(Stdio::null())
                .output()
                .await
                .unwrap();
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            (out.status.success(), text)
        }
    };
    let k = keys.to_str().unwrap();
    let mut outputs = Vec::new();
    let (ok, text) = lifeboat(vec![
        "backup",
        "--config",
        "--secrets-manager",
        &prefix,
        "--ssm-path",
        &path,
        "--cloud-region",
        "us-west-2",
        "--cloud-endpoint",
        &endpoint,
        "--to",
        &to,
        "--key-file",
        k,
        "--json",
    ])
    .await;
    assert!(ok, "{text}");
    assert!(text.contains("TRACE"), "trace logging was on");
    outputs.push(("backup", text));
    let restore = |extra: &[&'static str]| {
        let mut a = vec![
            "restore",
            "--config",
            "--secrets-manager",
            "--ssm",
            "--from",
            &to,
            "--key-file",
            k,
            "--cloud-endpoint",
            &endpoint,
            "--json",
        ];
        a.extend_from_slice(extra);
        a
    };
    let (ok, text) = lifeboat(restore(&["--existing", "fail"])).await;
    assert!(!ok && text.contains("already exists"), "{text}");
    outputs.push(("refused restore", text));
    sm.delete_secret()
        .secret_id(format!("{prefix}text"))
        .force_delete_without_recovery(true)
        .send()
        .await
        .unwrap();
    let (ok, text) = lifeboat(restore(&["--existing", "update"])).await;
    assert!(ok, "{text}");
    outputs.push(("restore", text));
    let back = sm
        .get_secret_value()
        .secret_id(format!("{prefix}text"))
        .send()
        .await
        .unwrap();
    assert_eq!(back.secret_string(), Some(CANARY));
    for (what, text) in &outputs {
        for n in &needles {
            assert!(
                !text.contains(n.as_str()),
                "the cloud secret's value is in the output of {what}"
            );
        }
    }
    let stored = all_bytes(&store);
    assert!(stored.len() > 200, "read the destination");
    for n in &needles {
        assert!(
            !stored.windows(n.len()).any(|w| w == n.as_bytes()),
            "the cloud secret's value is stored in the clear"
        );
    }
}

/// Every byte of every file under `dir` (objects and manifests of a file:// destination).
fn all_bytes(dir: &std::path::Path) -> Vec<u8> {
    let mut files = vec![dir.to_path_buf()];
    let mut stored = Vec::new();
    while let Some(p) = files.pop() {
        if p.is_dir() {
            files.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
        } else {
            stored.extend(std::fs::read(&p).unwrap());
        }
    }
    stored
}
