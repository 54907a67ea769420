//! Generated files in the repository match what the code generates.

mod support;

#[test]
fn crds_directory_matches_lifeboat_crds() {
    let out = std::process::Command::new(support::bin())
        .arg("crds")
        .output()
        .unwrap();
    assert!(out.status.success());
    let generated = String::from_utf8(out.stdout).unwrap();
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/crds/lifeboat.dev.yaml");
    let checked_in = std::fs::read_to_string(path).unwrap();
    assert!(
        generated == checked_in,
        "crds/lifeboat.dev.yaml is stale: run `cargo run -- crds > crds/lifeboat.dev.yaml`"
    );
}
