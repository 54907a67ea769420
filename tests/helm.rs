//! The Helm chart (charts/lifeboat) installs what manifests/ installs: the
//! same CRDs, RBAC rules and controller container, checked by rendering it
//! with the real `helm` (`helm lint --strict`, `helm template`, offline) and
//! validating the result with `kubernetes-validate --strict` against
//! Kubernetes 1.30 schemas. The optional extras (ServiceMonitor,
//! PrometheusRule, Grafana dashboard) render, and every PromQL expression in
//! them parses.
//!
//! `helm` is found through LIFEBOAT_HELM (scripts/test.sh installs it with
//! scripts/testbed.sh's `ensure_helm` and exports it) or PATH. Where helm or
//! kubernetes-validate is missing these checks are skipped with a message,
//! unless LIFEBOAT_REQUIRE_TOOLS=1 (set by scripts/test.sh) makes that a
//! failure.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

mod support;
use serde_json::Value;
use support::k8s::{helm, role_rules, root, validate_files_strict, validator, Rule};

const CHART: &str = "charts/lifeboat";
const RELEASE: &str = "lifeboat";
const NAMESPACE: &str = "lifeboat-system";
/// Every optional extra switched on.
const EXTRAS: &[&str] = &[
    "serviceMonitor.enabled=true",
    "prometheusRule.enabled=true",
    "grafanaDashboard.enabled=true",
];

/// Runs helm in the repository root; returns (success, stdout, stderr).
fn run_helm(helm: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(helm)
        .current_dir(root())
        .args(args)
        .output()
        .expect("helm runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn template_args<'a>(sets: &'a [&'a str], include_crds: bool) -> Vec<&'a str> {
    let mut args = vec!["template", RELEASE, CHART, "--namespace", NAMESPACE];
    if include_crds {
        args.push("--include-crds");
    }
    for s in sets {
        args.extend(["--set", s]);
    }
    args
}

/// `helm template` with `--set` values; the rendered documents.
fn render(helm: &Path, sets: &[&str], include_crds: bool) -> Vec<Value> {
    let (ok, out, err) = run_helm(helm, &template_args(sets, include_crds));
    assert!(ok, "helm template {sets:?} failed:\n{err}{out}");
    parse_docs(&out, &format!("helm template {sets:?}"))
}

fn parse_docs(text: &str, what: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(text)
        .map(|d| {
            let v: serde_yaml::Value =
                serde::Deserialize::deserialize(d).unwrap_or_else(|e| panic!("{what}: {e}"));
            serde_json::to_value(v).unwrap()
        })
        .filter(|v| !v.is_null())
        .collect()
}

fn file_docs(path: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(root().join(path)).unwrap();
    parse_docs(&text, path)
}

fn manifests() -> Vec<Value> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(root().join("manifests"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    files
        .iter()
        .flat_map(|p| file_docs(p.strip_prefix(root()).unwrap().to_str().unwrap()))
        .collect()
}

fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} in {:?}", kinds(docs)))
}

fn kinds(docs: &[Value]) -> Vec<String> {
    docs.iter()
        .map(|d| format!("{}/{}", d["kind"].as_str().unwrap(), d["metadata"]["name"]))
        .collect()
}

fn is_monitoring(doc: &Value) -> bool {
    doc["apiVersion"]
        .as_str()
        .unwrap()
        .starts_with("monitoring.coreos.com/")
}

/// `kubernetes-validate --strict` over `docs`: every one must pass.
fn validate_strict(cmd: &[String], docs: &[Value]) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rendered.yaml");
    let text: String = docs
        .iter()
        .map(|d| format!("---\n{}", serde_yaml::to_string(d).unwrap()))
        .collect();
    std::fs::write(&file, text).unwrap();
    validate_files_strict(cmd, &[file], docs.len());
}

#[test]
fn chart_crds_are_a_copy_of_crds() {
    let chart = std::fs::read_to_string(root().join(CHART).join("crds/lifeboat.dev.yaml"))
        .expect("charts/lifeboat/crds/lifeboat.dev.yaml");
    let generated = std::fs::read_to_string(root().join("crds/lifeboat.dev.yaml")).unwrap();
    assert!(
        chart == generated,
        "charts/lifeboat/crds/lifeboat.dev.yaml differs: cp crds/lifeboat.dev.yaml charts/lifeboat/crds/"
    );
}

#[test]
fn helm_lint_strict_passes() {
    let Some(helm) = helm() else { return };
    let mut with_extras = vec!["lint", "--strict", CHART];
    for s in EXTRAS {
        with_extras.extend(["--set", s]);
    }
    for args in [vec!["lint", "--strict", CHART], with_extras] {
        let (ok, out, err) = run_helm(&helm, &args);
        assert!(ok, "helm {args:?} failed:\n{out}{err}");
        assert!(
            out.contains("0 chart(s) failed"),
            "helm {args:?}:\n{out}{err}"
        );
    }
}

#[test]
fn rendered_chart_passes_kubernetes_validate_strict() {
    let Some(helm) = helm() else { return };
    let Some(validator) = validator() else { return };

    let defaults = render(&helm, &[], true);
    assert!(
        !defaults.iter().any(is_monitoring),
        "extras are off by default: {:?}",
        kinds(&defaults)
    );
    assert!(
        !defaults.iter().any(|d| d["kind"] == "ConfigMap"),
        "no dashboard by default"
    );
    for (kind, name) in [
        ("CustomResourceDefinition", "backuppolicies.lifeboat.dev"),
        ("CustomResourceDefinition", "backupruns.lifeboat.dev"),
        ("CustomResourceDefinition", "restorerequests.lifeboat.dev"),
        ("ServiceAccount", "lifeboat-controller"),
        ("ClusterRole", "lifeboat-controller"),
        ("ClusterRoleBinding", "lifeboat-controller"),
        ("Role", "lifeboat-leader-election"),
        ("RoleBinding", "lifeboat-leader-election"),
        ("Deployment", "lifeboat-controller"),
        ("PodDisruptionBudget", "lifeboat-controller"),
        ("Service", "lifeboat-controller-metrics"),
    ] {
        find(&defaults, kind, name);
    }
    validate_strict(&validator, &defaults);

    let all = render(&helm, EXTRAS, true);
    let (monitoring, builtin): (Vec<Value>, Vec<Value>) = all.into_iter().partition(is_monitoring);
    validate_strict(&validator, &builtin);
    // kubernetes-validate has no schema for the Prometheus Operator's kinds:
    // they parsed as YAML above; check their shape here.
    let mut found: Vec<(String, String)> = monitoring
        .iter()
        .map(|d| {
            (
                d["apiVersion"].as_str().unwrap().to_string(),
                d["kind"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    found.sort();
    assert_eq!(
        found,
        [
            ("monitoring.coreos.com/v1".into(), "PrometheusRule".into()),
            ("monitoring.coreos.com/v1".into(), "ServiceMonitor".into()),
        ]
    );
    for d in &monitoring {
        assert_eq!(d["metadata"]["namespace"], NAMESPACE);
    }
    let monitor = find(&monitoring, "ServiceMonitor", "lifeboat-controller");
    let svc = find(&builtin, "Service", "lifeboat-controller-metrics");
    for (k, v) in monitor["spec"]["selector"]["matchLabels"]
        .as_object()
        .unwrap()
    {
        assert_eq!(
            &svc["metadata"]["labels"][k], v,
            "ServiceMonitor selects the Service"
        );
    }
    assert_eq!(
        monitor["spec"]["endpoints"][0]["port"],
        svc["spec"]["ports"][0]["name"]
    );
    assert_eq!(monitor["spec"]["endpoints"][0]["path"], "/metrics");
    let dashboard = builtin
        .iter()
        .find(|d| d["kind"] == "ConfigMap")
        .expect("dashboard ConfigMap");
    assert_eq!(dashboard["metadata"]["labels"]["grafana_dashboard"], "1");
}

/// A role's rules, each with apiGroups, resources and verbs only (no
/// resourceNames or nonResourceURLs).
fn rules(role: &Value) -> Vec<Rule> {
    for r in role["rules"].as_array().unwrap() {
        let keys: BTreeSet<&str> = r.as_object().unwrap().keys().map(|k| k.as_str()).collect();
        assert_eq!(
            keys,
            BTreeSet::from(["apiGroups", "resources", "verbs"]),
            "no resourceNames or nonResourceURLs: {r}"
        );
    }
    role_rules(role)
}

#[test]
fn rendered_rbac_equals_the_manifests() {
    let Some(helm) = helm() else { return };
    let chart = render(&helm, &[], false);
    let plain = manifests();
    for (kind, name) in [
        ("ClusterRole", "lifeboat-controller"),
        ("Role", "lifeboat-leader-election"),
    ] {
        let rendered = rules(find(&chart, kind, name));
        assert_eq!(
            rendered,
            rules(find(&plain, kind, name)),
            "{kind} {name}: the chart's rules differ from manifests/03-rbac.yaml"
        );
        assert!(
            !rendered
                .iter()
                .any(|(_, r, _)| r.iter().any(|r| r.starts_with("secrets"))),
            "the controller never gets Secrets"
        );
    }
    assert_eq!(
        find(&chart, "Role", "lifeboat-leader-election")["metadata"]["namespace"],
        NAMESPACE
    );
    for (kind, name, role_kind) in [
        ("ClusterRoleBinding", "lifeboat-controller", "ClusterRole"),
        ("RoleBinding", "lifeboat-leader-election", "Role"),
    ] {
        let b = find(&chart, kind, name);
        assert_eq!(b["roleRef"], find(&plain, kind, name)["roleRef"]);
        assert_eq!(b["roleRef"]["kind"], role_kind);
        assert_eq!(
            b["subjects"],
            serde_json::json!([{"kind": "ServiceAccount", "name": "lifeboat-controller", "namespace": NAMESPACE}])
        );
    }
    find(&chart, "ServiceAccount", "lifeboat-controller");

    // In another namespace, the bindings follow the release.
    let (ok, out, err) = run_helm(&helm, &["template", "backups", CHART, "--namespace", "ops"]);
    assert!(ok, "{err}");
    let other = parse_docs(&out, "helm template backups");
    let b = find(&other, "ClusterRoleBinding", "backups-lifeboat-controller");
    assert_eq!(b["subjects"][0]["namespace"], "ops");
    assert_eq!(b["subjects"][0]["name"], "backups-lifeboat-controller");
    find(&other, "ServiceAccount", "backups-lifeboat-controller");
}

fn container(docs: &[Value]) -> &Value {
    let d = find(docs, "Deployment", "lifeboat-controller");
    let containers = d["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap();
    assert_eq!(containers.len(), 1);
    &containers[0]
}

fn env_names(c: &Value) -> Vec<String> {
    c["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap().to_string())
        .collect()
}

fn env_value(c: &Value, name: &str) -> Value {
    c["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == name)
        .map(|e| e["value"].clone())
        .unwrap_or(Value::Null)
}

#[test]
fn deployment_runs_the_same_controller_as_the_manifests() {
    let Some(helm) = helm() else { return };
    let chart = render(&helm, &[], false);
    let plain = manifests();
    let (c, m) = (container(&chart), container(&plain));
    assert_eq!(env_names(c), env_names(m), "env names");
    assert_eq!(c["args"], m["args"], "args");
    assert_eq!(c["args"], serde_json::json!(["controller"]));
    // With the default values the container is the manifests' one, field by
    // field: image (the chart's appVersion), env values, ports, probes,
    // resources, security context, mounts.
    assert_eq!(
        c, m,
        "the controller container differs from manifests/04-deployment.yaml"
    );

    let d = find(&chart, "Deployment", "lifeboat-controller");
    let md = find(&plain, "Deployment", "lifeboat-controller");
    assert_eq!(d["metadata"]["namespace"], NAMESPACE);
    assert_eq!(d["spec"]["replicas"], 2);
    let (pod, mpod) = (
        &d["spec"]["template"]["spec"],
        &md["spec"]["template"]["spec"],
    );
    for field in ["serviceAccountName", "securityContext", "volumes"] {
        assert_eq!(pod[field], mpod[field], "pod {field}");
    }
    let spread = &pod["topologySpreadConstraints"][0];
    assert_eq!(spread["topologyKey"], "kubernetes.io/hostname");
    assert_eq!(
        spread["labelSelector"]["matchLabels"],
        d["spec"]["selector"]["matchLabels"]
    );
    // The selector picks the pods, the Service and the PDB find them.
    let labels = &d["spec"]["template"]["metadata"]["labels"];
    for (k, v) in d["spec"]["selector"]["matchLabels"].as_object().unwrap() {
        assert_eq!(&labels[k], v);
    }
    let svc = find(&chart, "Service", "lifeboat-controller-metrics");
    assert_eq!(
        svc["spec"]["selector"],
        d["spec"]["selector"]["matchLabels"]
    );
    assert_eq!(
        svc["spec"]["ports"],
        find(&plain, "Service", "lifeboat-controller-metrics")["spec"]["ports"]
    );
    assert_eq!(svc["metadata"]["annotations"]["prometheus.io/port"], "8080");
    let pdb = find(&chart, "PodDisruptionBudget", "lifeboat-controller");
    assert_eq!(
        pdb["spec"]["selector"]["matchLabels"],
        d["spec"]["selector"]["matchLabels"]
    );
    assert_eq!(pdb["spec"]["minAvailable"], 1);
}

#[test]
fn values_change_what_they_should() {
    let Some(helm) = helm() else { return };
    let docs = render(
        &helm,
        &[
            "image.repository=registry.example/lifeboat",
            "image.tag=9.9.9",
            "image.pullPolicy=Always",
            "jobImage.repository=registry.example/lifeboat-jobs",
            "replicas=3",
            "resources.limits.memory=512Mi",
            "nodeSelector.disktype=ssd",
            "tolerations[0].key=dedicated",
            "tolerations[0].operator=Exists",
            "affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0].key=zone",
            "affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0].operator=Exists",
            "podAnnotations.example\\.com/team=dba",
            "logLevel=debug",
            "statusPage.enabled=true",
        ],
        false,
    );
    let d = find(&docs, "Deployment", "lifeboat-controller");
    let pod = &d["spec"]["template"]["spec"];
    let c = container(&docs);
    assert_eq!(d["spec"]["replicas"], 3);
    assert_eq!(c["image"], "registry.example/lifeboat:9.9.9");
    assert_eq!(c["imagePullPolicy"], "Always");
    assert_eq!(
        env_value(c, "LIFEBOAT_IMAGE"),
        "registry.example/lifeboat-jobs:9.9.9",
        "the job image takes the controller's tag unless given one"
    );
    assert_eq!(env_value(c, "LIFEBOAT_LOG"), "debug");
    assert_eq!(env_value(c, "LIFEBOAT_STATUS_PAGE"), "true");
    assert_eq!(c["resources"]["limits"]["memory"], "512Mi");
    assert_eq!(pod["nodeSelector"]["disktype"], "ssd");
    assert_eq!(pod["tolerations"][0]["key"], "dedicated");
    assert!(pod["affinity"]["nodeAffinity"].is_object());
    assert_eq!(
        d["spec"]["template"]["metadata"]["annotations"]["example.com/team"],
        "dba"
    );
    if let Some(validator) = validator() {
        validate_strict(&validator, &docs);
    }

    let docs = render(
        &helm,
        &["jobImage.repository=jobs", "jobImage.tag=2.0.0"],
        false,
    );
    let c = container(&docs);
    assert_eq!(c["image"], "ghcr.io/lifeboat-dev/lifeboat:0.1.0");
    assert!(
        !env_names(c).contains(&"LIFEBOAT_STATUS_PAGE".to_string()),
        "the status page is off by default"
    );
    assert_eq!(env_value(c, "LIFEBOAT_IMAGE"), "jobs:2.0.0");

    // Without leader election: one replica, no Lease permissions, no PDB.
    let docs = render(
        &helm,
        &["leaderElection.enabled=false", "replicas=1"],
        false,
    );
    let c = container(&docs);
    assert_eq!(env_value(c, "LIFEBOAT_LEADER_ELECTION"), "false");
    assert!(!env_names(c).contains(&"LIFEBOAT_LEASE_NAME".to_string()));
    assert!(
        !docs.iter().any(|d| d["kind"] == "Role"
            || d["kind"] == "RoleBinding"
            || d["kind"] == "PodDisruptionBudget"),
        "{:?}",
        kinds(&docs)
    );
    let (ok, _, err) = run_helm(
        &helm,
        &template_args(&["leaderElection.enabled=false"], false),
    );
    assert!(
        !ok && err.contains("replicas: 1"),
        "two unelected replicas are refused: {err}"
    );
}

#[test]
fn values_schema_rejects_mistakes() {
    let Some(helm) = helm() else { return };
    for (set, says) in [
        ("replica=3", "replica"),
        ("replicas=two", "replicas"),
        ("image.pullPolicy=Sometimes", "pullPolicy"),
        ("serviceMonitor.enable=true", "enable"),
        ("statusPage.enabled=yes", "enabled"),
        (
            "prometheusRule.alerts.backupFailed.window=an hour",
            "window",
        ),
    ] {
        let (ok, out, err) = run_helm(&helm, &template_args(&[set], false));
        assert!(!ok, "--set {set} was accepted:\n{out}");
        assert!(
            err.contains("schema") && err.contains(says),
            "--set {set}: {err}"
        );
    }
}

/// The metric names (`lifeboat_…`) an expression mentions, histogram
/// suffixes removed.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = expr.as_bytes();
    let mut i = 0;
    while let Some(at) = expr[i..].find("lifeboat_") {
        let start = i + at;
        let mut end = start;
        while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_') {
            end += 1;
        }
        let boundary =
            start == 0 || !(bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
        if boundary {
            let mut name = &expr[start..end];
            for suffix in ["_bucket", "_sum", "_count"] {
                name = name.strip_suffix(suffix).unwrap_or(name);
            }
            names.insert(name.to_string());
        }
        i = end;
    }
    names
}

fn parse_promql(expr: &str, what: &str) {
    if let Err(e) = promql_parser::parser::parse(expr) {
        panic!("{what}: PromQL does not parse: {e}\n{expr}");
    }
}

#[test]
fn alerts_and_dashboard_are_valid_promql_over_the_documented_metrics() {
    let Some(helm) = helm() else { return };
    let docs = render(&helm, EXTRAS, false);
    let rule = find(&docs, "PrometheusRule", "lifeboat-controller");
    let mut alerts = BTreeSet::new();
    let mut metrics = BTreeSet::new();
    for group in rule["spec"]["groups"].as_array().unwrap() {
        for r in group["rules"].as_array().unwrap() {
            let name = r["alert"].as_str().expect("only alerting rules");
            let expr = r["expr"].as_str().unwrap();
            parse_promql(expr, name);
            let used = metric_names(expr);
            assert!(
                !used.is_empty() || name == "LifeboatControllerDown",
                "{name}: {expr}"
            );
            metrics.extend(used);
            let r#for = r["for"]
                .as_str()
                .unwrap_or_else(|| panic!("{name} has no for:"));
            assert!(
                r#for.ends_with('m') || r#for.ends_with('h'),
                "{name}: for: {for}"
            );
            let severity = r["labels"]["severity"].as_str().unwrap();
            assert!(
                ["warning", "critical"].contains(&severity),
                "{name}: {severity}"
            );
            for a in ["summary", "description", "runbook_url"] {
                assert!(r["annotations"][a].is_string(), "{name} has no {a}");
            }
            alerts.insert(name.to_string());
        }
    }
    for (alert, metric) in [
        (
            "LifeboatBackupTooOld",
            "lifeboat_last_success_timestamp_seconds",
        ),
        ("LifeboatObjectiveBreached", "lifeboat_objective_breached"),
        ("LifeboatBackupFailed", "lifeboat_backup_failures_total"),
        (
            "LifeboatRestoreDrillFailed",
            "lifeboat_drill_failures_total",
        ),
        (
            "LifeboatWALArchiveLagging",
            "lifeboat_wal_archive_lag_seconds",
        ),
        ("LifeboatWALArchiverDown", "lifeboat_wal_archiver_up"),
        ("LifeboatNoLeader", "lifeboat_leader"),
    ] {
        assert!(alerts.contains(alert), "no {alert} in {alerts:?}");
        assert!(metrics.contains(metric), "no alert uses {metric}");
    }
    // One "too old" alert per scheduled tier.
    let tiers: BTreeSet<&str> = rule["spec"]["groups"][0]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["alert"] == "LifeboatBackupTooOld")
        .map(|r| {
            let expr = r["expr"].as_str().unwrap();
            ["daily", "weekly", "monthly"]
                .into_iter()
                .find(|t| expr.contains(&format!("tier=\"{t}\"")))
                .unwrap_or_else(|| panic!("no tier in {expr}"))
        })
        .collect();
    assert_eq!(tiers, BTreeSet::from(["daily", "weekly", "monthly"]));

    let cm = docs
        .iter()
        .find(|d| d["kind"] == "ConfigMap")
        .expect("dashboard ConfigMap");
    let json = cm["data"]["lifeboat.json"].as_str().unwrap();
    let file =
        std::fs::read_to_string(root().join(CHART).join("dashboards/lifeboat.json")).unwrap();
    assert_eq!(
        json.trim_end(),
        file.trim_end(),
        "the ConfigMap holds dashboards/lifeboat.json"
    );
    let dashboard: Value = serde_json::from_str(json).expect("the dashboard is JSON");
    let panels = dashboard["panels"].as_array().unwrap();
    assert!(panels.len() >= 5);
    let mut dashboard_metrics = BTreeSet::new();
    for p in panels {
        let title = p["title"].as_str().unwrap();
        let targets = p["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "{title}");
        for t in targets {
            // Grafana's variables, as Grafana substitutes them.
            let expr = t["expr"]
                .as_str()
                .unwrap()
                .replace("$__rate_interval", "5m")
                .replace("$window", "1d");
            parse_promql(&expr, title);
            dashboard_metrics.extend(metric_names(&expr));
        }
    }
    for m in [
        "lifeboat_last_success_timestamp_seconds",
        "lifeboat_backup_duration_seconds",
        "lifeboat_backup_size_bytes",
        "lifeboat_backup_failures_total",
        "lifeboat_restore_duration_seconds",
    ] {
        assert!(dashboard_metrics.contains(m), "no panel shows {m}");
    }
    metrics.extend(dashboard_metrics);

    // The chart's README tells the controller's authors what to export.
    let readme = std::fs::read_to_string(root().join(CHART).join("README.md")).unwrap();
    for m in &metrics {
        assert!(
            readme.contains(&format!("`{m}`")),
            "charts/lifeboat/README.md does not list {m}"
        );
    }
}

#[test]
fn metric_names_are_found() {
    assert_eq!(
        metric_names("sum(rate(lifeboat_a_bucket[5m])) / lifeboat_b_total{job=\"lifeboat-x\"} + notlifeboat_d"),
        BTreeSet::from(["lifeboat_a".to_string(), "lifeboat_b_total".into()])
    );
}
