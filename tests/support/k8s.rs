//! Shared by the manifest and Helm tests: the repository root, the
//! kubernetes-validate command, and the skip-or-fail rule for missing tools.

use std::path::PathBuf;
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
