//! The Job runs for real: the Job specs that `controller::jobs` builds are
//! executed locally as a kubelet would run their one container — Secret
//! volumes materialised from fixture Secrets at their mount paths, env
//! `valueFrom.secretKeyRef` resolved from the same fixtures, the container's
//! command and args run with exactly that environment — against the test
//! PostgreSQL and S3 server. The only translations: the image's `lifeboat` is
//! the binary under test, and the termination message path is a temp file.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use k8s_openapi::api::batch::v1::Job;
use lifeboat::api::{BackupPolicy, BackupRun, BackupRunSpec, LocalRef, RunKind, Tier};
use lifeboat::controller::jobs::{
    backup_job, owner_of, parse_job_result, prune_job, JobConfig, JobResult,
};
use serde_json::json;
use support::*;

/// Secret name → key → value, as the cluster would hold them.
type Secrets = BTreeMap<String, BTreeMap<String, String>>;

const DB_PASSWORD: &str = PW_ROLE_PASSWORD;

/// What the kubelet would give the container, then the container's exit.
struct Ran {
    output: Output,
    termination_message: String,
}

/// Runs the Job's container locally. Panics, like a pod stuck in
/// CreateContainerConfigError, when a referenced Secret or key is missing.
fn execute(job: &Job, secrets: &Secrets, work: &Path) -> Ran {
    let pod = job
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .expect("a pod template");
    assert_eq!(pod.containers.len(), 1, "one container");
    let c = &pod.containers[0];
    let volumes = pod.volumes.clone().unwrap_or_default();

    for m in c.volume_mounts.clone().unwrap_or_default() {
        let v = volumes
            .iter()
            .find(|v| v.name == m.name)
            .unwrap_or_else(|| panic!("mount of unknown volume {}", m.name));
        let dir = PathBuf::from(&m.mount_path);
        if let Some(s) = &v.secret {
            let name = s.secret_name.as_deref().expect("secretName");
            let Some(data) = secrets.get(name) else {
                assert_eq!(s.optional, Some(true), "Secret {name:?} not found");
                continue;
            };
            std::fs::create_dir_all(&dir).unwrap();
            let items: Vec<(String, String)> = match &s.items {
                Some(items) => items
                    .iter()
                    .map(|i| (i.key.clone(), i.path.clone()))
                    .collect(),
                None => data.keys().map(|k| (k.clone(), k.clone())).collect(),
            };
            for (key, path) in items {
                let value = data
                    .get(&key)
                    .unwrap_or_else(|| panic!("Secret {name:?} has no key {key:?}"));
                std::fs::write(dir.join(path), value).unwrap();
            }
        } else if v.empty_dir.is_some() {
            // The host's /tmp stands in for the emptyDir the Job mounts there.
            assert_eq!(m.mount_path, "/tmp", "emptyDir at an unexpected path");
        } else {
            panic!("volume {} is neither a Secret nor an emptyDir", v.name);
        }
    }

    let mut env: BTreeMap<String, String> = BTreeMap::new();
    for e in c.env.clone().unwrap_or_default() {
        if let Some(v) = e.value {
            env.insert(e.name, v);
            continue;
        }
        let r = e
            .value_from
            .and_then(|f| f.secret_key_ref)
            .unwrap_or_else(|| panic!("{}: only secretKeyRef is resolved here", e.name));
        match secrets.get(&r.name).and_then(|d| d.get(&r.key)) {
            Some(v) => {
                env.insert(e.name, v.clone());
            }
            None => assert_eq!(
                r.optional,
                Some(true),
                "{}: Secret {:?} key {:?} not found",
                e.name,
                r.name,
                r.key
            ),
        }
    }

    let command = c.command.clone().expect("a command");
    assert_eq!(command, ["lifeboat"], "the image's entrypoint binary");
    let termination_path = c
        .termination_message_path
        .clone()
        .unwrap_or("/dev/termination-log".into());
    let termination_file = work.join("termination-log");
    let _ = std::fs::remove_file(&termination_file);
    let args: Vec<String> = c
        .args
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|a| {
            if a == termination_path {
                termination_file.to_str().unwrap().to_string()
            } else {
                a
            }
        })
        .collect();

    let output = Command::new(bin())
        .args(&args)
        .env_clear()
        .envs(&env)
        .env("PATH", std::env::var("PATH").unwrap())
        .env("LIFEBOAT_PG_BIN", pg_bin())
        .stdin(Stdio::null())
        .output()
        .expect("lifeboat runs");
    Ran {
        output,
        termination_message: std::fs::read_to_string(&termination_file).unwrap_or_default(),
    }
}

fn bucket_and_region(url: &str) -> (String, String) {
    let u = url::Url::parse(url).unwrap();
    let region = u
        .query_pairs()
        .find(|(k, _)| k == "region")
        .unwrap()
        .1
        .into_owned();
    (u.host_str().unwrap().to_string(), region)
}

struct World {
    policy: BackupPolicy,
    secrets: Secrets,
    cfg: JobConfig,
    /// Test-bed URLs of the two buckets (for listing them).
    buckets: [String; 2],
    db: String,
    _mounts: tempfile::TempDir,
    work: tempfile::TempDir,
}

fn world() -> World {
    // The role and its grant come from scripts/testbed.sh.
    let db = create_db("jobrun");
    psql(
        &db,
        "create table orders (id int primary key, item text); \
         insert into orders select i, 'item ' || i from generate_series(1, 500) i;",
    );

    let buckets = [bucket("us-east-1"), bucket("eu-west-1")];
    let (b0, r0) = bucket_and_region(&buckets[0]);
    let (b1, r1) = bucket_and_region(&buckets[1]);
    let spec = json!({
        "source": {"postgres": {"connectionSecretRef": {"name": "orders-db"}, "databases": [db]}},
        "schedule": {"daily": "0 2 * * *"},
        "destinations": [
            {"name": "primary", "s3": {"region": r0, "bucket": b0, "prefix": "prod",
                "endpoint": s3_endpoint(), "credentialsSecretRef": {"name": "s3-primary"}}},
            {"name": "dr-eu", "s3": {"region": r1, "bucket": b1, "prefix": "prod",
                "endpoint": s3_endpoint(),
                "credentialsSecretRef": {"name": "s3-dr", "accessKeyIdKey": "id",
                                         "secretAccessKeyKey": "secret"}}}
        ],
        "encryption": {"keySecretRef": {"name": "backup-keys"}}
    });
    let mut policy = BackupPolicy::new("orders", serde_json::from_value(spec).unwrap());
    policy.metadata.namespace = Some("shop".into());
    policy.metadata.uid = Some("policy-uid".into());
    policy.spec.validate().expect("a valid policy");

    let work = tempfile::tempdir().unwrap();
    let key_file = keyfile(work.path(), "k1");
    let secrets: Secrets = [
        (
            "orders-db",
            vec![
                ("host", "127.0.0.1".to_string()),
                ("port", pg_port()),
                ("user", "lifeboat_pw".to_string()),
                ("password", DB_PASSWORD.to_string()),
            ],
        ),
        (
            "s3-primary",
            vec![
                ("AWS_ACCESS_KEY_ID", "AKIAJOBRUNPRIMARY".to_string()),
                ("AWS_SECRET_ACCESS_KEY", "jobrun-primary-secret".to_string()),
            ],
        ),
        (
            "s3-dr",
            vec![
                ("id", "AKIAJOBRUNDR".to_string()),
                ("secret", "jobrun-dr-secret".to_string()),
            ],
        ),
        (
            "backup-keys",
            vec![("keys", std::fs::read_to_string(&key_file).unwrap())],
        ),
    ]
    .into_iter()
    .map(|(name, data)| {
        (
            name.to_string(),
            data.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
        )
    })
    .collect();

    let mounts = tempfile::tempdir().unwrap();
    let mut cfg = JobConfig::new("lifeboat:test");
    cfg.mount_root = mounts.path().to_str().unwrap().to_string();
    World {
        policy,
        secrets,
        cfg,
        buckets,
        db,
        _mounts: mounts,
        work,
    }
}

fn run(name: &str) -> BackupRun {
    let mut r = BackupRun::new(
        name,
        BackupRunSpec {
            policy_ref: LocalRef::new("orders"),
            tier: Tier::Manual,
            kind: RunKind::Full,
            scheduled_at: None,
        },
    );
    r.metadata.namespace = Some("shop".into());
    r.metadata.uid = Some(format!("uid-{name}"));
    r
}

#[track_caller]
fn succeeded(ran: &Ran) {
    assert!(
        ran.output.status.success(),
        "the Job's container failed: {}\n{}",
        stderr(&ran.output),
        stdout(&ran.output)
    );
}

fn backup_now(w: &World, run_name: &str) -> JobResult {
    let job = backup_job(&w.policy, &run(run_name), &w.cfg).unwrap();
    let ran = execute(&job, &w.secrets, w.work.path());
    succeeded(&ran);
    parse_job_result(&ran.termination_message).expect("the termination message is a summary")
}

fn keys_of(url: &str, backup_id: &str) -> BTreeSet<String> {
    s3_keys(url)
        .into_iter()
        .filter(|k| k.contains(backup_id))
        .collect()
}

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, data))
}

#[test]
fn backup_job_writes_both_regions_and_prune_job_removes_exactly_that_backup() {
    let w = world();

    let job = backup_job(&w.policy, &run("orders-manual-1"), &w.cfg).unwrap();
    // Secrets are references in the Job, never values.
    let serialized = serde_json::to_string(&job).unwrap();
    for data in w.secrets.values() {
        for (key, value) in data {
            if key != "host" && key != "port" && key != "user" {
                assert!(
                    !serialized.contains(value.trim()),
                    "{key} leaked into the Job"
                );
            }
        }
    }

    let ran = execute(&job, &w.secrets, w.work.path());
    succeeded(&ran);
    let first = parse_job_result(&ran.termination_message).expect("a summary");
    // The report on stdout names no secret either.
    assert!(!stdout(&ran.output).contains(DB_PASSWORD));
    assert!(!stderr(&ran.output).contains(DB_PASSWORD));

    assert_eq!(first.committed.len(), 2, "{first:?}");
    assert!(first.failed.is_empty());
    assert!(
        first.fully_verified(),
        "readBack is on by default: {first:?}"
    );
    assert_eq!(
        first.committed_destinations(&w.policy),
        ["primary", "dr-eu"]
    );
    let artifacts = first.artifacts(&w.policy);
    assert_eq!(artifacts.len(), 2 * first.objects.len());
    for (i, url) in w.buckets.iter().enumerate() {
        let keys = s3_keys(url);
        let manifest = format!("prod/shop/orders/backups/{}/manifest.json", first.backup_id);
        assert!(keys.contains(&manifest), "no {manifest} in {keys:?}");
        let dest = ["primary", "dr-eu"][i];
        for a in artifacts.iter().filter(|a| a.destination == dest) {
            assert!(a.verified);
            let body = s3_get(url, &a.key);
            assert_eq!(body.len() as i64, a.bytes, "{}", a.key);
            assert_eq!(sha256_hex(&body), a.sha256, "{}", a.key);
        }
    }

    // What the Job wrote restores: the backup is real, not just objects.
    let (b1, r1) = bucket_and_region(&w.buckets[1]);
    let from = format!(
        "s3://{b1}/prod/shop/orders?region={r1}&endpoint={}",
        s3_endpoint()
    );
    let key_file = w.work.path().join("restore-keys");
    std::fs::write(&key_file, &w.secrets["backup-keys"]["keys"]).unwrap();
    let target = unique("jobrun_restored");
    ok(&lifeboat(&[
        "restore",
        "--from",
        &from,
        "--key-file",
        key_file.to_str().unwrap(),
        "--backup",
        &first.backup_id,
        "--target-db",
        &target,
        "--create",
        "--no-owner",
    ]));
    assert_eq!(psql(&target, "select count(*) from orders"), "500");
    assert_eq!(psql(&w.db, "select count(*) from orders"), "500");

    let second = backup_now(&w, "orders-manual-2");
    assert_ne!(second.backup_id, first.backup_id);
    let second_keys: Vec<_> = w
        .buckets
        .iter()
        .map(|u| keys_of(u, &second.backup_id))
        .collect();
    assert!(second_keys.iter().all(|k| !k.is_empty()));

    let prune = prune_job(
        &w.policy,
        "orders-manual-1",
        &first.backup_id,
        owner_of(&run("orders-manual-1")).unwrap(),
        &w.cfg,
    )
    .unwrap();
    let ran = execute(&prune, &w.secrets, w.work.path());
    succeeded(&ran);
    for (i, url) in w.buckets.iter().enumerate() {
        assert!(
            keys_of(url, &first.backup_id).is_empty(),
            "{url} still holds {}",
            first.backup_id
        );
        assert_eq!(keys_of(url, &second.backup_id), second_keys[i], "{url}");
    }
    // A prune Job that runs twice (a retry) finds nothing left and succeeds.
    succeeded(&execute(&prune, &w.secrets, w.work.path()));
}

#[test]
fn the_password_really_comes_from_the_mounted_secret() {
    let mut w = world();
    w.secrets
        .get_mut("orders-db")
        .unwrap()
        .insert("password".into(), "wrong-password".into());
    let job = backup_job(&w.policy, &run("orders-manual-wrong"), &w.cfg).unwrap();
    let ran = execute(&job, &w.secrets, w.work.path());
    assert!(!ran.output.status.success(), "{}", stdout(&ran.output));
    let err = stderr(&ran.output);
    assert!(err.contains("password authentication failed"), "{err}");
    assert!(!err.contains("wrong-password"), "{err}");
    // A failed Job leaves no summary; the controller falls back to the log.
    assert!(parse_job_result(&ran.termination_message).is_err());
    for url in &w.buckets {
        assert!(
            s3_keys(url).iter().all(|k| !k.ends_with("manifest.json")),
            "a failed backup committed nothing"
        );
    }
}
