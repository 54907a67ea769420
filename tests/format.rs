//! docs/FORMAT.md is enough to decode a backup: an independent decoder in
//! Python (tests/format/decode.py, written from the document, sharing no
//! code) checks the manifest MAC and decodes every object to what pg_dump wrote.

mod support;
use support::*;

#[test]
fn an_independent_decoder_reads_a_backup_from_the_format_document() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keyfile(dir.path(), "fmt-1");
    let src = create_db("fmt");
    fill_rich(&src);
    let root = dir.path().join("bk");
    let dest = format!("file://{}", root.display());
    for compression in ["zstd", "gzip", "none"] {
        let r = backup(&src, keys.to_str().unwrap(), &[&dest])
            .opt("--compression", compression)
            .json()
            .ok();
        let id = r["backup_id"].as_str().unwrap();
        let out = dir.path().join(format!("decoded-{compression}"));
        let o = std::process::Command::new("python3")
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/format/decode.py"
            ))
            .args([
                keys.as_os_str(),
                root.as_os_str(),
                std::ffi::OsStr::new(id),
                out.as_os_str(),
            ])
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "{compression}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        // The decoded part is a pg_dump archive that pg_restore reads.
        let list = std::process::Command::new(pg_bin().join("pg_restore"))
            .arg("--list")
            .arg(out.join("db-0"))
            .output()
            .unwrap();
        assert!(
            list.status.success(),
            "{}",
            String::from_utf8_lossy(&list.stderr)
        );
        let toc = String::from_utf8_lossy(&list.stdout);
        assert!(
            toc.contains("TABLE DATA sales orders") && toc.contains("BLOB"),
            "{toc}"
        );
        let globals = std::fs::read_to_string(out.join("globals")).unwrap();
        assert!(globals.contains("CREATE ROLE"), "{globals}");
    }
}
