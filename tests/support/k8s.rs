//! Shared by the manifest, Helm and alert tests: the repository root, the
//! kubernetes-validate command, helm, and the skip-or-fail rule for
//! missing tools.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The Kubernetes version manifests are validated against.
pub const K8S_VERSION: &str = "1.30.0";

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A missing external tool skips the test, unless LIFEBOAT_REQUIRE_TOOLS=1
/// (scripts/test.sh sets it, so CI cannot pass by skipping).
pub fn skip_or_fail(why: &str) {
    if std::env::var("LIFEBOAT_REQUIRE_TOOLS").as_deref() == Ok("1") {
        panic!("{why}; LIFEBOAT_REQUIRE_TOOLS=1 requires it");
    }
    eprintln!("SKIPPED: {why}");
}

fn runs(cmd: &Path, arg: &str) -> bool {
    Command::new(cmd)
        .arg(arg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The helm binary, or None (skip) when there is none.
pub fn helm() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("LIFEBOAT_HELM").filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        assert!(
            runs(&path, "version"),
            "LIFEBOAT_HELM={} does not run",
            path.display()
        );
        return Some(path);
    }
    let path = PathBuf::from("helm");
    if runs(&path, "version") {
        return Some(path);
    }
    skip_or_fail(
        "helm is not installed (scripts/test.sh installs it: see ensure_helm in scripts/testbed.sh)",
    );
    None
}

/// The validator's command line, or None (skip) when it is not installed.
pub fn validator() -> Option<Vec<String>> {
    for cmd in [
        vec!["kubernetes-validate".to_string()],
        vec!["python3".into(), "-m".into(), "kubernetes_validate".into()],
    ] {
        let works = Command::new(&cmd[0])
            .args(&cmd[1..])
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if works {
            return Some(cmd);
        }
    }
    skip_or_fail(
        "kubernetes-validate is not installed (python3 -m pip install kubernetes-validate)",
    );
    None
}

/// `kubernetes-validate --strict` over `files`: it succeeds, says no ERROR
/// or WARN, and passes `expected` documents.
pub fn validate_files_strict(cmd: &[String], files: &[impl AsRef<Path>], expected: usize) {
    let out = Command::new(&cmd[0])
        .args(&cmd[1..])
        .args(["--strict", "-k", K8S_VERSION])
        .args(files.iter().map(AsRef::as_ref))
        .output()
        .expect("kubernetes-validate runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "kubernetes-validate failed:\n{text}");
    assert!(
        !text.contains("ERROR") && !text.contains("WARN"),
        "kubernetes-validate:\n{text}"
    );
    assert_eq!(
        text.matches(" passed for resource ").count(),
        expected,
        "every document validated:\n{text}"
    );
}

/// A Role's or ClusterRole's rule: apiGroups, resources, verbs.
pub type Rule = (Vec<String>, Vec<String>, Vec<String>);

/// The rules of a Role or ClusterRole document.
pub fn role_rules(role: &serde_json::Value) -> Vec<Rule> {
    let strings = |v: &serde_json::Value| -> Vec<String> {
        v.as_array()
            .map(|a| a.iter().map(|s| s.as_str().unwrap().to_string()).collect())
            .unwrap_or_default()
    };
    role["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                strings(&r["apiGroups"]),
                strings(&r["resources"]),
                strings(&r["verbs"]),
            )
        })
        .collect()
}
