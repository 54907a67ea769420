//! The install (manifests/), the CRDs (crds/), the examples (examples/) and
//! the Jobs the controller builds are valid Kubernetes objects: checked
//! offline with `kubernetes-validate --strict` against Kubernetes 1.30
//! schemas, custom resources against the CRDs' own schemas, and the
//! properties that matter (least-privilege RBAC, a locked-down controller)
//! read from the YAML.
//!
//! `kubernetes-validate` (PyPI) is installed by scripts/test.sh. Where it is
//! missing these checks are skipped with a message, unless
//! LIFEBOAT_REQUIRE_TOOLS=1 (set by scripts/test.sh) makes that a failure.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use lifeboat::api::{BackupPolicy, BackupRun, RestoreRequest};
use lifeboat::controller::jobs::{backup_job, owner_of, prune_job, JobConfig};
mod support;
use serde_json::Value;
use support::k8s::{role_rules, root, skip_or_fail, validate_files_strict, validator, Rule};

fn yaml_files(dir: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(root().join(dir))
        .unwrap_or_else(|e| panic!("{dir}: {e}"))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no YAML in {dir}/");
    files
}

fn docs(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap();
    serde_yaml::Deserializer::from_str(&text)
        .map(|d| {
            let v: serde_yaml::Value = serde::Deserialize::deserialize(d)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            serde_json::to_value(v).unwrap()
        })
        .filter(|v| !v.is_null())
        .collect()
}

fn all_docs(dir: &str) -> Vec<Value> {
    yaml_files(dir).iter().flat_map(|p| docs(p)).collect()
}

fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

/// Runs `kubernetes-validate --strict` over `files`; every document must
/// pass, none may be of a kind it has no schema for.
fn validate_strict(cmd: &[String], files: &[PathBuf]) {
    let expected: usize = files.iter().map(|f| docs(f).len()).sum();
    validate_files_strict(cmd, files, expected);
}

#[test]
fn crds_and_install_manifests_pass_kubernetes_validate_strict() {
    let Some(cmd) = validator() else { return };
    let mut files = yaml_files("crds");
    files.extend(yaml_files("manifests"));
    validate_strict(&cmd, &files);
}

#[test]
fn example_secrets_pass_kubernetes_validate_strict() {
    let Some(cmd) = validator() else { return };
    // Custom resources have no built-in schema: see examples_match_the_crd_schemas.
    let builtin: Vec<Value> = all_docs("examples")
        .into_iter()
        .filter(|d| {
            !d["apiVersion"]
                .as_str()
                .unwrap()
                .starts_with("lifeboat.dev/")
        })
        .collect();
    assert!(!builtin.is_empty());
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("builtin.yaml");
    write_docs(&file, &builtin);
    validate_strict(&cmd, &[file]);
}

fn write_docs(path: &Path, docs: &[Value]) {
    let text: String = docs
        .iter()
        .map(|d| format!("---\n{}", serde_yaml::to_string(d).unwrap()))
        .collect();
    std::fs::write(path, text).unwrap();
}

fn example<K: serde::de::DeserializeOwned>(kind: &str) -> K {
    let doc = all_docs("examples")
        .into_iter()
        .find(|d| d["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} in examples/"));
    let mut obj: Value = doc;
    // Applied with `kubectl -n shop apply -f examples/`; the API server sets these.
    obj["metadata"]["namespace"] = "shop".into();
    obj["metadata"]["uid"] = format!("uid-{kind}").into();
    serde_json::from_value(obj).unwrap()
}

#[test]
fn jobs_built_from_the_examples_pass_kubernetes_validate_strict() {
    let Some(cmd) = validator() else { return };
    let policy: BackupPolicy = example("BackupPolicy");
    let run: BackupRun = example("BackupRun");
    let cfg = JobConfig::new("ghcr.io/lifeboat-dev/lifeboat:0.1.0");
    let backup = backup_job(&policy, &run, &cfg).unwrap();
    let prune = prune_job(
        &policy,
        "orders-before-migration",
        "20261125T020000.000Z-a1b2c3",
        owner_of(&run).unwrap(),
        &cfg,
    )
    .unwrap();
    let request: RestoreRequest = example("RestoreRequest");
    let plan = lifeboat::controller::restore_jobs::plan_job(&request, &policy, &cfg).unwrap();
    let planned = lifeboat::api::restore::RestorePlan {
        backup_id: "20261125T020000.000Z-a1b2c3".into(),
        destination: "dr-eu".into(),
        target_database: Some("orders_restored".into()),
        ..Default::default()
    };
    let restore =
        lifeboat::controller::restore_jobs::restore_job(&request, &policy, &planned, &cfg).unwrap();
    // A notify Job of the example's targets: every kind's Secret mounted.
    let failed: lifeboat::wire::Notification = serde_json::from_value(serde_json::json!({
        "event": "runFailed", "namespace": "shop", "policy": "orders", "subject": "orders-now",
        "summary": "run orders-now failed", "dedupKey": "lifeboat/shop/orders/backup",
        "at": "2026-11-25T02:03:00Z"}))
    .unwrap();
    let notify = lifeboat::controller::jobs::notify_job(&policy, &failed, "run/orders-now", &cfg)
        .unwrap()
        .expect("the example's targets get runFailed");
    assert_eq!(
        notify
            .spec
            .as_ref()
            .unwrap()
            .template
            .spec
            .as_ref()
            .unwrap()
            .volumes
            .as_ref()
            .unwrap()
            .len(),
        4
    );
    // The ApplicationRestore's own Jobs: the maintenance switch, a smoke test.
    let app: lifeboat::api::ApplicationRestore = example("ApplicationRestore");
    let enter = app.spec.maintenance.as_ref().unwrap().enter_job.clone();
    let smoke = app.spec.smoke_tests.iter().find_map(|t| t.job.clone());
    let user_jobs: Vec<Value> = [("maintenance", enter), ("smokeTests", smoke)]
        .into_iter()
        .map(|(step, template)| {
            let spec = template.expect("a Job in the example").spec(step).unwrap();
            let job = lifeboat::controller::app_restore::user_jobs::build(
                &app,
                &format!("shop-0959-{}", step.to_lowercase()),
                step,
                spec,
                120,
            );
            serde_json::to_value(job.unwrap()).unwrap()
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("jobs.yaml");
    let mut docs = vec![
        serde_json::to_value(&backup).unwrap(),
        serde_json::to_value(&prune).unwrap(),
        serde_json::to_value(&plan).unwrap(),
        serde_json::to_value(&restore).unwrap(),
        serde_json::to_value(&notify).unwrap(),
    ];
    docs.extend(user_jobs);
    write_docs(&file, &docs);
    validate_strict(&cmd, &[file]);
}

#[test]
fn the_wal_archiver_and_restore_job_of_the_pitr_example_pass_kubernetes_validate_strict() {
    let Some(cmd) = validator() else { return };
    let doc = all_docs("examples")
        .into_iter()
        .find(|d| {
            d["kind"] == "BackupPolicy" && d["spec"]["pointInTimeRecovery"]["enabled"] == true
        })
        .expect("a BackupPolicy with pointInTimeRecovery in examples/");
    let mut obj = doc;
    obj["metadata"]["namespace"] = "shop".into();
    obj["metadata"]["uid"] = "uid-pitr".into();
    let policy: BackupPolicy = serde_json::from_value(obj).unwrap();
    assert_eq!(policy.spec.validate(), Ok(()));
    let cfg = JobConfig::new("ghcr.io/lifeboat-dev/lifeboat:0.1.0");
    let deployment = lifeboat::controller::archiver::archiver_deployment(&policy, &cfg).unwrap();
    // And the restore Job of its RestoreRequest, into a volume.
    let mut request = all_docs("examples")
        .into_iter()
        .find(|d| d["kind"] == "RestoreRequest" && d["spec"]["policyRef"]["name"] == "orders-pitr")
        .expect("a RestoreRequest of the PITR policy in examples/");
    request["metadata"]["namespace"] = "shop".into();
    request["metadata"]["uid"] = "uid-rr-pitr".into();
    let request: RestoreRequest = serde_json::from_value(request).unwrap();
    assert_eq!(request.spec.validate(), Ok(()));
    let plan = lifeboat::api::restore::RestorePlan {
        backup_id: "20261125T010000.000Z-a1b2c3".into(),
        destination: "primary".into(),
        ..Default::default()
    };
    let restore =
        lifeboat::controller::restore_jobs::restore_job(&request, &policy, &plan, &cfg).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("archiver.yaml");
    write_docs(
        &file,
        &[
            serde_json::to_value(&deployment).unwrap(),
            serde_json::to_value(&restore).unwrap(),
        ],
    );
    validate_strict(&cmd, &[file]);
}

#[test]
fn install_crds_are_a_copy_of_crds() {
    let installed = std::fs::read_to_string(root().join("manifests/01-crds.yaml")).unwrap();
    let generated = std::fs::read_to_string(root().join("crds/lifeboat.dev.yaml")).unwrap();
    assert!(
        installed == generated && installed == lifeboat::api::crds_yaml(),
        "manifests/01-crds.yaml differs: cp crds/lifeboat.dev.yaml manifests/01-crds.yaml"
    );
}

fn grants(rules: &[Rule], group: &str, resource: &str) -> Vec<String> {
    let mut verbs: Vec<String> = rules
        .iter()
        .filter(|(g, r, _)| g.iter().any(|x| x == group) && r.iter().any(|x| x == resource))
        .flat_map(|(_, _, v)| v.clone())
        .collect();
    verbs.sort();
    verbs.dedup();
    verbs
}

#[test]
fn rbac_is_least_privilege_and_never_reads_secrets() {
    let docs = all_docs("manifests");
    let cluster = role_rules(find(&docs, "ClusterRole", "lifeboat-controller"));
    let lease = role_rules(find(&docs, "Role", "lifeboat-leader-election"));
    for (groups, resources, verbs) in cluster.iter().chain(&lease) {
        for x in groups.iter().chain(resources).chain(verbs) {
            assert_ne!(x, "*", "no wildcards: {groups:?} {resources:?} {verbs:?}");
        }
        assert!(
            !resources.iter().any(|r| r.starts_with("secrets")),
            "the controller must not touch Secrets: {resources:?}"
        );
        assert!(!verbs
            .iter()
            .any(|v| v == "escalate" || v == "bind" || v == "impersonate"));
    }
    for kind in [
        "backuppolicies",
        "backupruns",
        "restorerequests",
        "applicationrestores",
        "applicationdrills",
    ] {
        assert!(grants(&cluster, "lifeboat.dev", kind).contains(&"watch".to_string()));
        assert_eq!(
            grants(&cluster, "lifeboat.dev", &format!("{kind}/status")),
            ["patch"]
        );
        assert_eq!(
            grants(&cluster, "lifeboat.dev", &format!("{kind}/finalizers")),
            ["update"]
        );
    }
    assert_eq!(
        grants(&cluster, "batch", "jobs"),
        ["create", "delete", "get", "list", "watch"]
    );
    // Trimmed to what the controller does (issue 13, item 8).
    assert_eq!(
        grants(&cluster, "lifeboat.dev", "backuppolicies"),
        ["get", "list", "watch"]
    );
    assert_eq!(grants(&cluster, "", "pods"), ["list"]);
    // Maintenance and smoke tests of application restores.
    assert_eq!(grants(&cluster, "apps", "statefulsets"), ["get", "patch"]);
    assert_eq!(grants(&cluster, "", "services"), ["get"]);
    // Application drills delete only the scratch namespaces they made.
    assert_eq!(grants(&cluster, "", "namespaces"), ["delete", "get"]);
    assert_eq!(grants(&cluster, "", "persistentvolumeclaims"), ["get"]);
    assert!(
        grants(&cluster, "", "events").is_empty(),
        "events.k8s.io only"
    );
    assert_eq!(
        grants(&cluster, "events.k8s.io", "events"),
        ["create", "patch"]
    );
    // Leases only in the controller's own namespace.
    assert!(grants(&cluster, "coordination.k8s.io", "leases").is_empty());
    assert_eq!(
        grants(&lease, "coordination.k8s.io", "leases"),
        ["create", "get", "patch"]
    );
    let binding = find(&docs, "RoleBinding", "lifeboat-leader-election");
    assert_eq!(binding["metadata"]["namespace"], "lifeboat-system");
    for b in [
        binding,
        find(&docs, "ClusterRoleBinding", "lifeboat-controller"),
    ] {
        assert_eq!(b["subjects"][0]["name"], "lifeboat-controller");
        assert_eq!(b["subjects"][0]["namespace"], "lifeboat-system");
    }
}

#[test]
fn controller_runs_two_locked_down_replicas_with_probes_and_metrics() {
    let docs = all_docs("manifests");
    assert_eq!(
        docs[0]["kind"], "Namespace",
        "the namespace is applied first"
    );
    let d = find(&docs, "Deployment", "lifeboat-controller");
    assert_eq!(d["metadata"]["namespace"], "lifeboat-system");
    assert_eq!(d["spec"]["replicas"], 2);
    let pod = &d["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], "lifeboat-controller");
    find(&docs, "ServiceAccount", "lifeboat-controller");
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(pod["securityContext"]["runAsUser"], 65532);
    let c = &pod["containers"][0];
    assert_eq!(c["args"][0], "controller");
    let sc = &c["securityContext"];
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["capabilities"]["drop"][0], "ALL");
    assert_eq!(sc["seccompProfile"]["type"], "RuntimeDefault");
    assert_eq!(c["ports"][0]["containerPort"], 8080);
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    let env: Vec<&str> = c["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    for var in [
        "LIFEBOAT_LEADER_ELECTION",
        "POD_NAME",
        "POD_NAMESPACE",
        "LIFEBOAT_IMAGE",
    ] {
        assert!(env.contains(&var), "{var} not in {env:?}");
    }
    let svc = find(&docs, "Service", "lifeboat-controller-metrics");
    assert_eq!(
        svc["spec"]["selector"],
        d["spec"]["selector"]["matchLabels"]
    );
    assert_eq!(svc["spec"]["ports"][0]["targetPort"], c["ports"][0]["name"]);
}

/// `original` ⊆ `typed`: every field written in the example survived a
/// round trip through the Rust type, so none is misspelt or unknown.
fn assert_subset(original: &Value, typed: &Value, path: &str) {
    match (original, typed) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in a {
                let other = b
                    .get(k)
                    .unwrap_or_else(|| panic!("{path}.{k}: unknown field (dropped by the type)"));
                assert_subset(v, other, &format!("{path}.{k}"));
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            assert_eq!(a.len(), b.len(), "{path}");
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                assert_subset(x, y, &format!("{path}[{i}]"));
            }
        }
        (a, b) => assert_eq!(a, b, "{path}"),
    }
}

#[test]
fn examples_are_valid_resources() {
    let docs = all_docs("examples");
    let mut kinds = Vec::new();
    for d in &docs {
        let kind = d["kind"].as_str().unwrap();
        kinds.push(kind.to_string());
        let typed = match kind {
            "BackupPolicy" => {
                let p: BackupPolicy = serde_json::from_value(d.clone()).unwrap();
                p.spec.validate().unwrap();
                serde_json::to_value(p).unwrap()
            }
            "BackupRun" => {
                let r: BackupRun = serde_json::from_value(d.clone()).unwrap();
                r.spec.validate().unwrap();
                serde_json::to_value(r).unwrap()
            }
            "RestoreRequest" => {
                let r: RestoreRequest = serde_json::from_value(d.clone()).unwrap();
                r.spec.validate().unwrap();
                serde_json::to_value(r).unwrap()
            }
            "ApplicationRestore" => {
                let r: lifeboat::api::ApplicationRestore =
                    serde_json::from_value(d.clone()).unwrap();
                r.spec.validate().unwrap();
                serde_json::to_value(r).unwrap()
            }
            "ApplicationDrill" => {
                let r: lifeboat::api::ApplicationDrill = serde_json::from_value(d.clone()).unwrap();
                r.spec.validate("shop").unwrap();
                serde_json::to_value(r).unwrap()
            }
            "Secret" => {
                assert!(
                    d.get("data").is_none(),
                    "placeholders in stringData, readable"
                );
                continue;
            }
            other => panic!("unexpected kind {other} in examples/"),
        };
        assert_subset(d, &typed, kind);
    }
    for k in [
        "BackupPolicy",
        "BackupRun",
        "RestoreRequest",
        "ApplicationRestore",
        "ApplicationDrill",
        "Secret",
    ] {
        assert!(kinds.iter().any(|x| x == k), "examples/ has no {k}");
    }
    // Everything the policy refers to is among the example Secrets.
    let secrets: Vec<&str> = docs
        .iter()
        .filter(|d| d["kind"] == "Secret")
        .map(|d| d["metadata"]["name"].as_str().unwrap())
        .collect();
    let policy = find(&docs, "BackupPolicy", "orders");
    let spec = &policy["spec"];
    let mut refs = vec![
        &spec["source"]["postgres"]["connectionSecretRef"]["name"],
        &spec["encryption"]["keySecretRef"]["name"],
        &spec["verification"]["restoreDrill"]["targetSecretRef"]["name"],
    ];
    for dest in spec["destinations"].as_array().unwrap() {
        refs.push(&dest["s3"]["credentialsSecretRef"]["name"]);
    }
    for r in refs {
        assert!(
            secrets.contains(&r.as_str().unwrap()),
            "{r} is not an example Secret"
        );
    }
}

/// Python: validates objects against their CRD's openAPIV3Schema, with
/// unknown fields rejected (as `kubectl apply --validate=strict` would).
const CRD_SCHEMA_CHECK: &str = r#"
import json, sys, jsonschema
data = json.load(sys.stdin)
def strict(s):
    if isinstance(s, dict):
        s = {k: strict(v) for k, v in s.items()}
        if s.get("type") == "object" and isinstance(s.get("properties"), dict) \
           and "additionalProperties" not in s and not s.get("x-kubernetes-preserve-unknown-fields"):
            s["additionalProperties"] = False
        return s
    if isinstance(s, list):
        return [strict(x) for x in s]
    return s
schemas = {}
for crd in data["crds"]:
    for v in crd["spec"]["versions"]:
        key = (crd["spec"]["group"] + "/" + v["name"], crd["spec"]["names"]["kind"])
        root = dict(v["schema"]["openAPIV3Schema"])
        # Implicit in every CRD: the API server adds them.
        root["properties"] = dict(root.get("properties", {}), apiVersion={"type": "string"},
                                  kind={"type": "string"}, metadata={"type": "object"})
        schemas[key] = strict(root)
failed = 0
for obj in data["objects"]:
    key = (obj["apiVersion"], obj["kind"])
    if key not in schemas:
        print("no CRD for", key); failed += 1; continue
    errors = list(jsonschema.Draft4Validator(schemas[key]).iter_errors(obj))
    for e in errors:
        print(obj["kind"], obj["metadata"]["name"], list(e.absolute_path), e.message)
    failed += len(errors)
    print("checked", obj["kind"], obj["metadata"]["name"])
sys.exit(1 if failed else 0)
"#;

#[test]
fn examples_match_the_crd_schemas() {
    let has_jsonschema = Command::new("python3")
        .args(["-c", "import jsonschema"])
        .status()
        .is_ok_and(|s| s.success());
    if !has_jsonschema {
        // jsonschema comes with kubernetes-validate.
        return skip_or_fail(
            "python3 jsonschema is not installed (it comes with kubernetes-validate)",
        );
    }
    let objects: Vec<Value> = all_docs("examples")
        .into_iter()
        .filter(|d| {
            d["apiVersion"]
                .as_str()
                .unwrap()
                .starts_with("lifeboat.dev/")
        })
        .collect();
    let input = serde_json::json!({
        "crds": serde_json::to_value(lifeboat::api::crds()).unwrap(),
        "objects": objects,
    });
    let check = |input: &Value| {
        let mut child = Command::new("python3")
            .args(["-c", CRD_SCHEMA_CHECK])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::io::Write::write_all(child.stdin.as_mut().unwrap(), input.to_string().as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    };
    let (ok, text) = check(&input);
    assert!(ok, "{text}");
    assert_eq!(text.matches("checked ").count(), objects.len(), "{text}");

    // The check bites: a misspelt field and a bad enum value are caught.
    let mut bad = input.clone();
    let policy = bad["objects"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|o| o["kind"] == "BackupPolicy")
        .unwrap();
    policy["spec"]["retension"] = serde_json::json!({"daily": 1});
    policy["spec"]["encryption"]["compression"] = "brotli".into();
    let (ok, text) = check(&bad);
    assert!(!ok, "{text}");
    assert!(
        text.contains("retension") && text.contains("brotli"),
        "{text}"
    );
}

#[test]
fn dockerfile_builds_a_locked_release_and_runs_as_non_root() {
    let text = std::fs::read_to_string(root().join("Dockerfile")).unwrap();
    let has = |s: &str| assert!(text.contains(s), "Dockerfile lacks {s:?}");
    has("FROM rust:1.95-bookworm AS build");
    has("cargo build --release --locked");
    has("FROM debian:bookworm-slim");
    // Stripped, without debug info (the release profile keeps line tables).
    has("CARGO_PROFILE_RELEASE_STRIP=symbols");
    has("CARGO_PROFILE_RELEASE_DEBUG=0");
    // Clients and servers of every supported major, where lifeboat looks.
    has(r#"ARG PG_MAJORS="13 14 15 16 17""#);
    has(r#"packages="$packages postgresql-$major postgresql-client-$major""#);
    has("ENV LIFEBOAT_PG_ROOT=/usr/lib/postgresql");
    has("ca-certificates");
    has("USER 65532:65532");
    // tini as PID 1, in the image and in the Jobs' command (which replaces
    // the entrypoint).
    has(" tini ");
    let command = lifeboat::controller::jobs::COMMAND;
    has(&format!("ENTRYPOINT {command:?}"));
}
