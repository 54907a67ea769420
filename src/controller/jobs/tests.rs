use super::*;
use crate::api::run::Artifact;
use crate::api::{BackupRun, LocalRef, RunKind};
use crate::wire::{BackupSummary, SummaryError};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::PodSpec;
use serde_json::{json, Value};

fn policy(extra: Value) -> BackupPolicy {
    let mut spec = json!({
        "source": {"postgres": {
            "connectionSecretRef": {"name": "orders-db", "passwordKey": "pw"},
            "databases": ["orders", "billing"]}},
        "schedule": {"daily": "0 2 * * *"},
        "destinations": [
            {"name": "primary", "s3": {"region": "us-east-1", "bucket": "bk-primary",
                "prefix": "/prod/", "endpoint": "http://minio:9000",
                "allowInsecureHttp": true, "storageClass": "STANDARD_IA",
                "credentialsSecretRef": {"name": "s3-primary"}}},
            {"name": "dr-eu", "s3": {"region": "eu-west-1", "bucket": "bk-dr",
                "credentialsSecretRef": {"name": "s3-dr", "accessKeyIdKey": "id",
                                         "secretAccessKeyKey": "secret"}}},
            {"name": "ambient", "s3": {"region": "us-west-2", "bucket": "bk-irsa"}}
        ],
        "encryption": {"keySecretRef": {"name": "backup-keys"}},
        "jobTemplate": {
            "resources": {"limits": {"memory": "256Mi"}},
            "nodeSelector": {"pool": "backup"},
            "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "backup", "effect": "NoSchedule"}],
            "serviceAccountName": "orders-backup"
        }
    });
    merge(&mut spec, extra);
    let mut p = BackupPolicy::new("orders", serde_json::from_value(spec).unwrap());
    p.metadata.namespace = Some("shop".into());
    p.metadata.uid = Some("policy-uid".into());
    p
}

fn merge(a: &mut Value, b: Value) {
    match (a, b) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                merge(a.entry(k).or_insert(Value::Null), v);
            }
        }
        (a, b) => *a = b,
    }
}

fn run(name: &str) -> BackupRun {
    crate::controller::test_support::daily_run(name, "run-uid-1")
}

fn cfg() -> JobConfig {
    JobConfig::new("registry.example/lifeboat:1.0")
}

fn pod(job: &Job) -> &PodSpec {
    job.spec.as_ref().unwrap().template.spec.as_ref().unwrap()
}

fn args(job: &Job) -> Vec<String> {
    pod(job).containers[0].args.clone().unwrap()
}

fn values_after(args: &[String], flag: &str) -> Vec<String> {
    args.windows(2)
        .filter(|w| w[0] == flag)
        .map(|w| w[1].clone())
        .collect()
}

#[test]
fn secrets_reach_the_job_by_reference_only() {
    // (tests/job_runs.rs also checks that no fixture Secret value appears
    // in the serialised Job.)
    let job = backup_job(&policy(json!({})), &run("orders-daily-1"), &cfg()).unwrap();
    // Every env var is either a reference or a non-secret path/setting.
    for e in pod(&job).containers[0].env.as_ref().unwrap() {
        match (&e.value, &e.value_from) {
            // Whose backups the keys vouch for (src/owner.rs).
            (Some(v), None) if e.name == "LIFEBOAT_OWNER" => assert_eq!(v, "shop/orders"),
            (Some(v), None) => {
                assert!(["LIFEBOAT_KEY_FILE", "TMPDIR"].contains(&e.name.as_str()));
                assert!(v.starts_with('/'), "{}={v}", e.name);
            }
            (None, Some(src)) => {
                let r = src.secret_key_ref.as_ref().unwrap();
                assert_eq!(r.name, "orders-db");
            }
            other => panic!("{}: {other:?}", e.name),
        }
    }
    // No password anywhere in argv, only the file it is in.
    let a = args(&job);
    assert!(!a.iter().any(|x| x == "--password"));
    assert_eq!(
        values_after(&a, "--password-file"),
        ["/var/run/lifeboat/db/password"]
    );
}

#[test]
fn database_connection_comes_from_secret_references() {
    let job = backup_job(&policy(json!({})), &run("r"), &cfg()).unwrap();
    let env = pod(&job).containers[0].env.clone().unwrap();
    let reference = |var: &str| {
        let e = env.iter().find(|e| e.name == var).unwrap();
        let r = e
            .value_from
            .as_ref()
            .unwrap()
            .secret_key_ref
            .clone()
            .unwrap();
        (r.name, r.key, r.optional)
    };
    assert_eq!(
        reference("PGHOST"),
        ("orders-db".into(), "host".into(), None)
    );
    assert_eq!(
        reference("PGPORT"),
        ("orders-db".into(), "port".into(), Some(true))
    );
    assert_eq!(
        reference("PGUSER"),
        ("orders-db".into(), "user".into(), None)
    );
    assert_eq!(
        reference("PGSSLMODE"),
        ("orders-db".into(), "sslmode".into(), Some(true))
    );
    assert!(!env.iter().any(|e| e.name.contains("PASSWORD")));

    let vols = pod(&job).volumes.clone().unwrap();
    let secret = |name: &str| {
        vols.iter()
            .find(|v| v.name == name)
            .unwrap()
            .secret
            .clone()
            .unwrap()
    };
    let db = secret("db");
    assert_eq!(db.secret_name.as_deref(), Some("orders-db"));
    let items = db.items.unwrap();
    assert_eq!(items.len(), 1, "only the password is mounted");
    assert_eq!(
        (items[0].key.as_str(), items[0].path.as_str()),
        ("pw", "password")
    );
    let keys = secret("keys");
    assert_eq!(keys.secret_name.as_deref(), Some("backup-keys"));
    assert_eq!(
        env.iter()
            .find(|e| e.name == "LIFEBOAT_KEY_FILE")
            .unwrap()
            .value
            .as_deref(),
        Some("/var/run/lifeboat/keys/keys")
    );
}

/// The Secret mounted read-only at `path`: its name and (key, file) items.
fn mounted_secret(p: &PodSpec, path: &str) -> (String, Vec<(String, String)>) {
    let mounts = p.containers[0].volume_mounts.clone().unwrap();
    let m = mounts.iter().find(|m| m.mount_path == path).unwrap();
    assert_eq!(m.read_only, Some(true));
    let v = p
        .volumes
        .as_ref()
        .unwrap()
        .iter()
        .find(|v| v.name == m.name)
        .unwrap();
    let s = v.secret.clone().unwrap();
    let items = s
        .items
        .unwrap()
        .into_iter()
        .map(|i| (i.key, i.path))
        .collect();
    (s.secret_name.unwrap(), items)
}

#[test]
fn every_destination_gets_its_url_and_its_own_credentials() {
    let job = backup_job(&policy(json!({})), &run("r"), &cfg()).unwrap();
    let to = values_after(&args(&job), "--to");
    assert_eq!(
        to,
        [
            "primary=s3://bk-primary/prod/shop/orders?region=us-east-1&endpoint=http%3A%2F%2Fminio%3A9000&storage-class=STANDARD_IA&credentials=%2Fvar%2Frun%2Flifeboat%2Fs3%2Fprimary&insecure-http=true",
            "dr-eu=s3://bk-dr/shop/orders?region=eu-west-1&credentials=%2Fvar%2Frun%2Flifeboat%2Fs3%2Fdr-eu",
            // No Secret: the ambient identity (IRSA), no credentials=.
            "ambient=s3://bk-irsa/shop/orders?region=us-west-2",
        ]
    );
    let p = pod(&job);
    let mounted = |path: &str| mounted_secret(p, path);
    assert_eq!(
        mounted("/var/run/lifeboat/s3/primary"),
        (
            "s3-primary".to_string(),
            vec![
                ("AWS_ACCESS_KEY_ID".into(), "AWS_ACCESS_KEY_ID".into()),
                (
                    "AWS_SECRET_ACCESS_KEY".into(),
                    "AWS_SECRET_ACCESS_KEY".into()
                )
            ]
        )
    );
    assert_eq!(
        mounted("/var/run/lifeboat/s3/dr-eu"),
        (
            "s3-dr".to_string(),
            vec![
                ("id".into(), "AWS_ACCESS_KEY_ID".into()),
                ("secret".into(), "AWS_SECRET_ACCESS_KEY".into())
            ]
        )
    );
    let mounts = p.containers[0].volume_mounts.clone().unwrap();
    assert!(!mounts.iter().any(|m| m.mount_path.ends_with("/ambient")));
}

#[test]
fn backup_args_carry_databases_policy_tier_report_and_verification() {
    let job = backup_job(&policy(json!({})), &run("r"), &cfg()).unwrap();
    let a = args(&job);
    assert_eq!(a[0], "backup");
    assert_eq!(values_after(&a, "--database"), ["orders", "billing"]);
    assert_eq!(values_after(&a, "--policy"), ["orders"]);
    assert_eq!(values_after(&a, "--tier"), ["daily"]);
    assert_eq!(values_after(&a, "--compression"), ["zstd"]);
    assert_eq!(values_after(&a, "--report-file"), [TERMINATION_LOG]);
    assert!(a.contains(&"--json".to_string()));
    assert!(
        a.contains(&"--verify".to_string()),
        "readBack defaults to on"
    );
    assert_eq!(
        pod(&job).containers[0].command.as_deref(),
        Some(&["/usr/bin/tini".to_string(), "--".into(), "lifeboat".into()][..]),
        "an init as PID 1, then lifeboat"
    );

    let p = policy(json!({"verification": {"readBack": false},
        "source": {"postgres": {"databases": [], "allDatabases": true}},
        "encryption": {"compression": "gzip"}}));
    let a = backup_args(&p, &run("r"), &cfg()).unwrap();
    assert!(!a.contains(&"--verify".to_string()));
    assert!(a.contains(&"--all-databases".to_string()));
    assert!(values_after(&a, "--database").is_empty());
    assert_eq!(values_after(&a, "--compression"), ["gzip"]);
}

#[test]
fn pod_is_locked_down() {
    let job = backup_job(&policy(json!({})), &run("r"), &cfg()).unwrap();
    let p = pod(&job);
    assert_eq!(p.restart_policy.as_deref(), Some("Never"));
    assert_eq!(p.automount_service_account_token, Some(false));
    let psc = p.security_context.as_ref().unwrap();
    assert_eq!(psc.run_as_non_root, Some(true));
    assert_eq!(psc.run_as_user, Some(65532));
    assert_eq!(psc.fs_group, Some(65532));
    assert_eq!(
        psc.seccomp_profile.as_ref().unwrap().type_,
        "RuntimeDefault"
    );
    let c = &p.containers[0];
    let sc = c.security_context.as_ref().unwrap();
    assert_eq!(sc.run_as_non_root, Some(true));
    assert_eq!(sc.run_as_user, Some(65532));
    assert_eq!(sc.read_only_root_filesystem, Some(true));
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    assert_eq!(
        sc.capabilities.as_ref().unwrap().drop.as_deref(),
        Some(&["ALL".to_string()][..])
    );
    assert_eq!(sc.seccomp_profile.as_ref().unwrap().type_, "RuntimeDefault");
    assert_eq!(
        c.termination_message_policy.as_deref(),
        Some("FallbackToLogsOnError")
    );
    // A writable /tmp (TMPDIR) is the only writable place.
    let tmp = c
        .volume_mounts
        .as_ref()
        .unwrap()
        .iter()
        .find(|m| m.mount_path == "/tmp")
        .unwrap();
    assert!(p
        .volumes
        .as_ref()
        .unwrap()
        .iter()
        .any(|v| v.name == tmp.name && v.empty_dir.is_some()));
    assert!(c
        .env
        .as_ref()
        .unwrap()
        .iter()
        .any(|e| e.name == "TMPDIR" && e.value.as_deref() == Some("/tmp")));
    for v in p.volumes.as_ref().unwrap() {
        if let Some(s) = &v.secret {
            assert_eq!(s.default_mode, Some(0o440), "{}", v.name);
        }
    }
}

#[test]
fn job_template_is_applied() {
    let job = backup_job(&policy(json!({})), &run("r"), &cfg()).unwrap();
    let p = pod(&job);
    assert_eq!(p.service_account_name.as_deref(), Some("orders-backup"));
    assert_eq!(p.node_selector.as_ref().unwrap()["pool"], "backup");
    assert_eq!(
        p.tolerations.as_ref().unwrap()[0].key.as_deref(),
        Some("dedicated")
    );
    let limits = p.containers[0]
        .resources
        .as_ref()
        .unwrap()
        .limits
        .clone()
        .unwrap();
    assert_eq!(limits["memory"].0, "256Mi");
    assert_eq!(
        p.containers[0].image.as_deref(),
        Some("registry.example/lifeboat:1.0")
    );

    let mut c = cfg();
    c.service_account = Some("lifeboat-agent".into());
    let p2 = policy(
        json!({"jobTemplate": {"serviceAccountName": null, "image": "mine:2",
                                           "ttlSecondsAfterFinished": 60}}),
    );
    let job = backup_job(&p2, &run("r"), &c).unwrap();
    assert_eq!(
        pod(&job).service_account_name.as_deref(),
        Some("lifeboat-agent")
    );
    assert_eq!(pod(&job).containers[0].image.as_deref(), Some("mine:2"));
    assert_eq!(
        job.spec.as_ref().unwrap().ttl_seconds_after_finished,
        Some(60)
    );
}

#[test]
fn job_is_owned_by_the_run_labelled_and_named_deterministically() {
    let r = run("orders-daily-20261125t0200");
    let a = backup_job(&policy(json!({})), &r, &cfg()).unwrap();
    let b = backup_job(&policy(json!({})), &r, &cfg()).unwrap();
    assert_eq!(a, b, "same inputs, same Job");
    assert_eq!(
        a.metadata.name.as_deref(),
        Some("orders-daily-20261125t0200-backup")
    );
    assert_eq!(a.metadata.namespace.as_deref(), Some("shop"));
    let owners = a.metadata.owner_references.clone().unwrap();
    assert_eq!(owners.len(), 1);
    assert_eq!(owners[0].kind, "BackupRun");
    assert_eq!(owners[0].api_version, "lifeboat.dev/v1alpha1");
    assert_eq!(owners[0].name, "orders-daily-20261125t0200");
    assert_eq!(owners[0].uid, "run-uid-1");
    assert_eq!(owners[0].controller, Some(true));
    let labels = a.metadata.labels.clone().unwrap();
    assert_eq!(labels[LABEL_POLICY], "orders");
    assert_eq!(labels[LABEL_RUN], "orders-daily-20261125t0200");
    assert_eq!(labels[LABEL_TIER], "daily");
    assert_eq!(labels["app.kubernetes.io/name"], "lifeboat");
    assert_eq!(labels[LABEL_COMPONENT], "backup");
    let spec = a.spec.as_ref().unwrap();
    assert_eq!(spec.backoff_limit, Some(2));
    assert_eq!(
        spec.template.metadata.as_ref().unwrap().labels.as_ref(),
        Some(&labels)
    );
}

#[test]
fn long_names_stay_valid_and_distinct() {
    let long_a = format!("{}-a", "x".repeat(200));
    let long_b = format!("{}-b", "x".repeat(200));
    let a = backup_job_name(&long_a);
    let b = backup_job_name(&long_b);
    assert!(a.len() <= 63 && b.len() <= 63, "{a} {b}");
    assert_ne!(a, b);
    assert!(a.ends_with("-backup"));
    assert!(crate::api::is_dns_label(&a), "{a}");
    assert_eq!(a, backup_job_name(&long_a));
    let job = backup_job(&policy(json!({})), &run(&long_a), &cfg()).unwrap();
    let labels = job.metadata.labels.unwrap();
    assert!(labels[LABEL_RUN].len() <= 63);
    assert_eq!(prune_job_name("r1"), "r1-prune");
}

/// A private S3 behind its own CA: the Secret's `ca.crt` is mounted and
/// the destination's location names it (`ca-file=`); only for https.
#[test]
fn a_destinations_ca_certificates_are_mounted_and_named_in_its_location() {
    let ca = json!({"destinations": [{"name": "minio", "s3": {"region": "r", "bucket": "b",
        "endpoint": "https://minio.internal:9000", "caSecretRef": {"name": "minio-ca"}}}]});
    let job = backup_job(&policy(ca), &run("r"), &cfg()).unwrap();
    assert_eq!(
        values_after(&args(&job), "--to"),
        ["minio=s3://b/shop/orders?region=r&endpoint=https%3A%2F%2Fminio.internal%3A9000&ca-file=%2Fvar%2Frun%2Flifeboat%2Fs3-ca%2Fminio%2Fca.crt"]
    );
    assert_eq!(
        mounted_secret(pod(&job), "/var/run/lifeboat/s3-ca/minio"),
        (
            "minio-ca".to_string(),
            vec![("ca.crt".into(), "ca.crt".into())]
        )
    );

    let plain = json!({"destinations": [{"name": "minio", "s3": {"region": "r", "bucket": "b",
        "caSecretRef": {"name": "minio-ca", "key": "root.pem"}}}]});
    assert_eq!(
        backup_job(&policy(plain), &run("r"), &cfg())
            .unwrap_err()
            .field(),
        "spec.destinations[0].s3.caSecretRef"
    );
}

#[test]
fn bad_inputs_name_their_field() {
    let p = policy(json!({}));
    let mut r = run("r");
    r.metadata.uid = None;
    assert_eq!(
        backup_job(&p, &r, &cfg()).unwrap_err().field(),
        "metadata.uid"
    );
    let mut r = run("r");
    r.spec.policy_ref = LocalRef::new("other");
    assert_eq!(
        backup_job(&p, &r, &cfg()).unwrap_err().field(),
        "spec.policyRef.name"
    );
    let mut r = run("r");
    r.metadata.namespace = Some("elsewhere".into());
    assert_eq!(
        backup_job(&p, &r, &cfg()).unwrap_err().field(),
        "metadata.namespace"
    );
    let physical = policy(json!({"source": {"postgres": {"method": "physical", "databases": []}}}));
    let a = args(&backup_job(&physical, &run("r"), &cfg()).unwrap());
    let i = a.iter().position(|x| x == "--method").unwrap();
    assert_eq!(a[i + 1], "physical");
    assert!(!a.contains(&"--database".to_string()));
    let volume = policy(
        json!({"source": {"postgres": null, "volume": {"claimName": "uploads", "subPath": "/etc"}}}),
    );
    assert_eq!(
        backup_job(&volume, &run("r"), &cfg()).unwrap_err().field(),
        "spec.source.volume.subPath"
    );
    let mut drill = run("r");
    drill.spec.kind = RunKind::Drill;
    assert_eq!(
        backup_job(&p, &drill, &cfg()).unwrap_err().field(),
        "spec.kind"
    );
    let owner = owner_of(&run("r")).unwrap();
    assert_eq!(
        prune_job(&p, "r", "not-an-id", owner, &cfg()).unwrap_err(),
        JobError::BadBackupId("not-an-id".into())
    );
}

#[test]
fn prune_job_deletes_one_backup_from_every_destination() {
    let p = policy(json!({}));
    let r = run("orders-daily-1");
    let id = "20261125T020000.000Z-a1b2c3";
    let job = prune_job(&p, "orders-daily-1", id, owner_of(&r).unwrap(), &cfg()).unwrap();
    let a = args(&job);
    assert_eq!(a[0], "prune");
    assert_eq!(values_after(&a, "--backup"), [id]);
    assert_eq!(values_after(&a, "--from").len(), 3);
    assert!(values_after(&a, "--from")[0]
        .contains("credentials=%2Fvar%2Frun%2Flifeboat%2Fs3%2Fprimary"));
    assert_eq!(job.metadata.name.as_deref(), Some("orders-daily-1-prune"));
    assert_eq!(
        job.metadata.annotations.as_ref().unwrap()[ANNOTATION_BACKUP_ID],
        id
    );
    assert_eq!(
        job.metadata.labels.as_ref().unwrap()[LABEL_COMPONENT],
        "prune"
    );
    assert_eq!(
        job.metadata.owner_references.as_ref().unwrap()[0].uid,
        "run-uid-1"
    );
    // Pruning needs no database; it gets the key to authenticate manifests.
    let c = &pod(&job).containers[0];
    assert!(!c
        .env
        .as_ref()
        .unwrap()
        .iter()
        .any(|e| e.name.starts_with("PG")));
    let vols: Vec<_> = pod(&job)
        .volumes
        .as_ref()
        .unwrap()
        .iter()
        .map(|v| v.name.clone())
        .collect();
    assert_eq!(vols, ["tmp", "keys", "s3-0", "s3-1"]);
}

fn summary(verified: Option<Vec<&str>>) -> String {
    json!({
        "backup_id": "20261125T020000.000Z-a1b2c3",
        "server_version": "15.8",
        "bytes_in": 1000, "bytes_out": 400, "seconds": 1.5,
        "committed": ["primary", "ambient"],
        "failed": ["dr-eu"],
        "verified": verified,
        "objects": [
            {"key": "backups/20261125T020000.000Z-a1b2c3/globals.lbk", "size": 100, "sha256": "a".repeat(64)},
            {"key": "backups/20261125T020000.000Z-a1b2c3/db-0.lbk", "size": 300, "sha256": "b".repeat(64)}
        ]
    })
    .to_string()
}

#[test]
fn job_result_becomes_artifacts_per_destination() {
    let r = BackupSummary::parse(&format!("{}\n", summary(Some(vec!["primary"])))).unwrap();
    assert_eq!(r.backup_id, "20261125T020000.000Z-a1b2c3");
    let p = policy(json!({}));
    let arts = artifacts(&r, &p);
    assert_eq!(arts.len(), 4);
    assert_eq!(
        arts[0],
        Artifact {
            destination: "primary".into(),
            key: "prod/shop/orders/backups/20261125T020000.000Z-a1b2c3/globals.lbk".into(),
            bytes: 100,
            sha256: "a".repeat(64),
            verified: true,
        }
    );
    assert_eq!(arts[2].destination, "ambient");
    assert_eq!(
        arts[3].key,
        "shop/orders/backups/20261125T020000.000Z-a1b2c3/db-0.lbk"
    );
    assert!(!arts[2].verified, "ambient was not verified");
    assert!(!r.fully_verified());
    assert_eq!(committed_destinations(&r, &p), ["primary", "ambient"]);
    assert_eq!(r.bytes_out, 400);
    assert_eq!(source_info(&r).server_version.as_deref(), Some("15.8"));

    let unverified = BackupSummary::parse(&summary(None)).unwrap();
    assert!(artifacts(&unverified, &p).iter().all(|a| !a.verified));
}

#[test]
fn a_log_tail_is_not_a_result() {
    assert!(matches!(
        BackupSummary::parse("  "),
        Err(SummaryError::Empty)
    ));
    assert!(matches!(
        BackupSummary::parse("error: pg_dump failed: connection refused"),
        Err(SummaryError::NotASummary(_))
    ));
    let bad = summary(None).replace("20261125T020000.000Z-a1b2c3", "../../etc");
    assert!(matches!(
        BackupSummary::parse(&bad),
        Err(SummaryError::BadBackupId(_))
    ));
}
