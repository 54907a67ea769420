//! `lifeboat restore --to-dir` into a directory that already holds files
//! (the real binary, a file:// store): `--overwrite never | if-newer |
//! always`, `--delete-extra`, `--path`; and a symlink planted in the target
//! is never followed.

mod support;
use std::fs;
use std::path::Path;
use std::time::{Duration, SystemTime};
use support::*;

fn set_mtime(p: &Path, secs_ago: u64) {
    let t = SystemTime::now() - Duration::from_secs(secs_ago);
    fs::File::options()
        .write(true)
        .open(p)
        .unwrap()
        .set_modified(t)
        .unwrap();
}

struct Fixture {
    _dir: tempfile::TempDir,
    root: std::path::PathBuf,
    key: String,
    store: String,
}

/// A backup of: a.txt and b.txt (an hour old), dir/c.txt, link -> a.txt.
fn backed_up() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let src = root.join("src");
    fs::create_dir_all(src.join("dir")).unwrap();
    fs::write(src.join("a.txt"), "backup a").unwrap();
    fs::write(src.join("b.txt"), "backup b").unwrap();
    fs::write(src.join("dir/c.txt"), "backup c").unwrap();
    std::os::unix::fs::symlink("a.txt", src.join("link")).unwrap();
    set_mtime(&src.join("a.txt"), 3600);
    set_mtime(&src.join("b.txt"), 3600);
    let key = keyfile(&root, "k1").to_str().unwrap().to_string();
    let store = format!("file://{}", root.join("store").display());
    ok(&lifeboat(&[
        "backup",
        "--path",
        src.to_str().unwrap(),
        "--key-file",
        &key,
        "--to",
        &store,
        "--json",
    ]));
    Fixture {
        _dir: dir,
        root,
        key,
        store,
    }
}

impl Fixture {
    /// A live directory: a.txt changed a minute ago (newer than the
    /// backup's), b.txt changed two hours ago (older), no dir/c.txt, and
    /// extra files.
    fn live(&self, name: &str) -> std::path::PathBuf {
        let t = self.root.join(name);
        fs::create_dir_all(t.join("dir")).unwrap();
        fs::write(t.join("a.txt"), "live a").unwrap();
        fs::write(t.join("b.txt"), "live b").unwrap();
        fs::write(t.join("extra.txt"), "extra").unwrap();
        fs::write(t.join("dir/extra2"), "extra2").unwrap();
        set_mtime(&t.join("a.txt"), 60);
        set_mtime(&t.join("b.txt"), 7200);
        t
    }

    fn restore(&self, into: &Path, extra: &[&str]) -> std::process::Output {
        let mut args = vec![
            "restore",
            "--from",
            &self.store,
            "--key-file",
            &self.key,
            "--to-dir",
            into.to_str().unwrap(),
            "--json",
        ];
        args.extend(extra);
        lifeboat(&args)
    }
}

fn read(p: &Path) -> String {
    fs::read_to_string(p).unwrap_or_else(|e| format!("<{e}>"))
}

#[test]
fn overwrite_modes_delete_extra_and_paths_behave_as_documented() {
    let f = backed_up();

    let t = f.live("never");
    let r = ok(&f.restore(&t, &["--overwrite", "never"]));
    assert_eq!(
        (read(&t.join("a.txt")), read(&t.join("b.txt"))),
        ("live a".into(), "live b".into())
    );
    assert_eq!(
        read(&t.join("dir/c.txt")),
        "backup c",
        "missing files are restored"
    );
    assert_eq!(fs::read_link(t.join("link")).unwrap(), Path::new("a.txt"));
    assert_eq!(
        read(&t.join("extra.txt")),
        "extra",
        "kept without --delete-extra"
    );
    assert_eq!(r["kept"], 2, "{r}");

    let t = f.live("if-newer");
    ok(&f.restore(&t, &["--overwrite", "if-newer"]));
    assert_eq!(read(&t.join("a.txt")), "live a", "the live copy is newer");
    assert_eq!(
        read(&t.join("b.txt")),
        "backup b",
        "the backup's copy is newer"
    );

    let t = f.live("always");
    let r = ok(&f.restore(&t, &["--overwrite", "always", "--delete-extra"]));
    assert_eq!(
        (read(&t.join("a.txt")), read(&t.join("b.txt"))),
        ("backup a".into(), "backup b".into())
    );
    assert!(!t.join("extra.txt").exists() && !t.join("dir/extra2").exists());
    assert_eq!(r["deleted"], 2, "{r}");
    let mut names: Vec<_> = fs::read_dir(&t)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["a.txt", "b.txt", "dir", "link"],
        "no temporary file left"
    );

    // Only dir/: a.txt and extra.txt outside it are not touched, dir's
    // extra goes.
    let t = f.live("path");
    ok(&f.restore(
        &t,
        &["--path", "dir", "--overwrite", "always", "--delete-extra"],
    ));
    assert_eq!(read(&t.join("a.txt")), "live a");
    assert_eq!(read(&t.join("extra.txt")), "extra");
    assert_eq!(read(&t.join("dir/c.txt")), "backup c");
    assert!(!t.join("dir/extra2").exists());
    assert!(!t.join("link").exists(), "not under --path");
}

#[test]
fn symlinks_planted_in_the_target_are_not_followed() {
    let f = backed_up();
    let outside = f.root.join("outside");
    fs::create_dir_all(&outside).unwrap();
    fs::write(outside.join("b.txt"), "victim").unwrap();
    fs::write(outside.join("c.txt"), "victim c").unwrap();

    // b.txt is a link to a file outside: replaced as a link, the file
    // outside unchanged.
    let t = f.root.join("planted");
    fs::create_dir_all(&t).unwrap();
    std::os::unix::fs::symlink(outside.join("b.txt"), t.join("b.txt")).unwrap();
    // dir is a link to a directory outside: refused, nothing written there.
    std::os::unix::fs::symlink(&outside, t.join("dir")).unwrap();
    let err = fails(&f.restore(&t, &["--overwrite", "always"]));
    assert!(err.contains("dir") && err.contains("not followed"), "{err}");
    assert_eq!(read(&outside.join("b.txt")), "victim");
    assert_eq!(read(&outside.join("c.txt")), "victim c");
    let names: Vec<_> = fs::read_dir(&outside)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
    assert_eq!(read(&t.join("b.txt")), "backup b");
    assert!(!fs::symlink_metadata(t.join("b.txt"))
        .unwrap()
        .file_type()
        .is_symlink());

    // --delete-extra removes a planted link itself, never what it points to.
    let t = f.root.join("planted-extra");
    fs::create_dir_all(&t).unwrap();
    std::os::unix::fs::symlink(&outside, t.join("elsewhere")).unwrap();
    ok(&f.restore(&t, &["--overwrite", "never", "--delete-extra"]));
    assert!(fs::symlink_metadata(t.join("elsewhere")).is_err());
    assert_eq!(read(&outside.join("c.txt")), "victim c");
}
