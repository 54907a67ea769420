//! File backups in the chunk store (format 2), end to end with the real
//! binary: a hostile tree round-trips bit for bit and in metadata through a
//! directory and S3 in two regions; an unchanged tree uploads nothing; a
//! damaged store restores nothing; a killed backup leaves no manifest.

mod support;
use lifeboat::chunks::noise;
use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use support::*;

/// A tree that breaks naive tools. Returns its root.
fn hostile_tree(dir: &Path) -> PathBuf {
    let root = dir.join("src");
    fs::create_dir_all(root.join("d/empty")).unwrap();
    fs::create_dir_all(root.join("sticky")).unwrap();
    // Several chunks, and random so nothing compresses.
    fs::write(root.join("big"), noise(3 << 20, 1)).unwrap();
    fs::write(root.join("d/text"), "hello\n".repeat(1000)).unwrap();
    fs::write(root.join("d/empty-file"), b"").unwrap();
    // Sparse: 64 MiB with two islands of data.
    let f = fs::File::create(root.join("sparse")).unwrap();
    f.write_all_at(b"island one", 4096 * 10).unwrap();
    f.write_all_at(&noise(100_000, 2), 40 << 20).unwrap();
    f.set_len(64 << 20).unwrap();
    // Hardlinks, a symlink loop, a dangling link.
    fs::hard_link(root.join("d/text"), root.join("hard")).unwrap();
    fs::hard_link(root.join("d/text"), root.join("d/hard2")).unwrap();
    std::os::unix::fs::symlink("../d", root.join("d/loop")).unwrap();
    std::os::unix::fs::symlink("nowhere/at/all", root.join("dangling")).unwrap();
    // Names: a newline, invalid UTF-8.
    fs::write(root.join("new\nline"), b"n").unwrap();
    fs::write(root.join(OsStr::from_bytes(b"bad\xff\xfename")), b"b").unwrap();
    // Owners and modes (the tests run as root).
    let secret = root.join("d/secret");
    fs::write(&secret, b"only 1234 reads this").unwrap();
    std::os::unix::fs::chown(&secret, Some(1234), Some(5678)).unwrap();
    fs::set_permissions(&secret, fs::Permissions::from_mode(0o600)).unwrap();
    fs::set_permissions(root.join("big"), fs::Permissions::from_mode(0o4751)).unwrap();
    std::os::unix::fs::lchown(root.join("dangling"), Some(42), Some(43)).unwrap();
    std::os::unix::fs::chown(root.join("sticky"), Some(7), Some(8)).unwrap();
    fs::set_permissions(root.join("sticky"), fs::Permissions::from_mode(0o1777)).unwrap();
    fs::set_permissions(root.join("d/empty"), fs::Permissions::from_mode(0o500)).unwrap();
    // Extended attributes on a file and a directory.
    rustix::fs::lsetxattr(
        root.join("d/text"),
        "user.color",
        b"blue",
        rustix::fs::XattrFlags::empty(),
    )
    .unwrap();
    rustix::fs::lsetxattr(
        root.join("d"),
        "user.bin",
        &[0, 1, 255],
        rustix::fs::XattrFlags::empty(),
    )
    .unwrap();
    // Old times, set last.
    let old = filetime(1_500_000_000, 123_456_789);
    for p in ["d/secret", "d/loop", "d"] {
        let flags = rustix::fs::AtFlags::SYMLINK_NOFOLLOW;
        rustix::fs::utimensat(rustix::fs::CWD, root.join(p), &old, flags).unwrap();
    }
    root
}

fn filetime(s: i64, ns: i64) -> rustix::fs::Timestamps {
    let t = rustix::fs::Timespec {
        tv_sec: s,
        tv_nsec: ns as _,
    };
    rustix::fs::Timestamps {
        last_access: t,
        last_modification: t,
    }
}

/// Everything a restore must bring back, per relative path: kind, mode,
/// owner, mtime, size, content, link target, xattrs, and which earlier
/// path shares the inode. The root's own times are left out (the test
/// writes into it after the backup).
fn describe(root: &Path) -> BTreeMap<Vec<u8>, String> {
    let mut out = BTreeMap::new();
    let mut inodes: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        let m = fs::symlink_metadata(&p).unwrap();
        let rel = p
            .strip_prefix(root)
            .unwrap()
            .as_os_str()
            .as_bytes()
            .to_vec();
        let mut xattrs = vec![0u8; 4096];
        let n = rustix::fs::llistxattr(&p, &mut xattrs[..]).unwrap_or(0);
        let mut names: Vec<&[u8]> = xattrs[..n]
            .split(|&b| b == 0)
            .filter(|n| !n.is_empty())
            .collect();
        names.sort();
        let xv: Vec<String> = names
            .iter()
            .map(|name| {
                let mut v = vec![0u8; 4096];
                let n = rustix::fs::lgetxattr(&p, OsStr::from_bytes(name), &mut v[..]).unwrap();
                format!("{}={:?}", String::from_utf8_lossy(name), &v[..n])
            })
            .collect();
        let ft = m.file_type();
        let what = if ft.is_dir() {
            let mut names: Vec<_> = fs::read_dir(&p)
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect();
            names.sort();
            stack.extend(names);
            "dir".to_string()
        } else if ft.is_symlink() {
            format!("link->{:?}", fs::read_link(&p).unwrap())
        } else {
            let shares = inodes.entry(m.ino()).or_insert_with(|| rel.clone()).clone();
            let data = fs::read(&p).unwrap();
            format!(
                "file size {} sha {} shares {:?} sparse {}",
                m.size(),
                sha(&data),
                String::from_utf8_lossy(&shares),
                m.blocks() * 512 < m.size() / 2
            )
        };
        let times = if rel.is_empty() {
            String::new()
        } else {
            format!("{}.{}", m.mtime(), m.mtime_nsec())
        };
        out.insert(
            rel,
            format!(
                "{what} mode {:o} {}:{} {times} xattrs {xv:?}",
                m.mode() & 0o7777,
                m.uid(),
                m.gid()
            ),
        );
    }
    out
}

fn sha(data: &[u8]) -> String {
    use std::fmt::Write;
    let d = ring_digest(data);
    d.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn ring_digest(data: &[u8]) -> Vec<u8> {
    ring::digest::digest(&ring::digest::SHA256, data)
        .as_ref()
        .to_vec()
}

fn key(dir: &Path) -> String {
    keyfile(dir, "k1").to_str().unwrap().to_string()
}

/// `lifeboat backup --path` of `root` into `to`; the JSON report.
fn backup_files(root: &Path, key: &str, to: &[&str], extra: &[&str]) -> serde_json::Value {
    let mut args = vec![
        "backup",
        "--path",
        root.to_str().unwrap(),
        "--key-file",
        key,
        "--json",
        "--pack-size",
        "400000",
    ];
    for t in to {
        args.extend(["--to", t]);
    }
    args.extend(extra);
    ok(&lifeboat(&args))
}

fn restore_files(from: &str, key: &str, into: &Path) -> std::process::Output {
    lifeboat(&[
        "restore",
        "--from",
        from,
        "--key-file",
        key,
        "--to-dir",
        into.to_str().unwrap(),
        "--json",
    ])
}

fn file_url(p: &Path) -> String {
    format!("file://{}", p.display())
}

fn packs(root: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(root.join("chunks/packs"))
        .map(|rd| rd.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn a_hostile_tree_round_trips_through_a_directory_and_s3_in_two_regions() {
    let dir = tempfile::tempdir().unwrap();
    let key = key(dir.path());
    let src = hostile_tree(dir.path());
    let want = describe(&src);
    let fs_dest = file_url(&dir.path().join("dest"));
    let (east, west) = (bucket("us-east-1"), bucket("eu-west-1"));
    let r = backup_files(&src, &key, &[&fs_dest, &east, &west], &[]);
    let files = &r["files"];
    assert_eq!(files["files_new"], 7, "{r}");
    assert_eq!(files["hardlinks"], 2, "{r}");
    assert_eq!(files["symlinks"], 2, "{r}");
    // The sparse file's holes are not read: 3 MiB + data islands, not 64 MiB.
    assert!(files["bytes_read"].as_u64().unwrap() < 5 << 20, "{r}");
    // Three destinations, each with its own packs.
    assert!(
        s3_keys(&west).iter().any(|k| k.contains("chunks/packs/")),
        "{:?}",
        s3_keys(&west)
    );
    for (i, from) in [&fs_dest, &east, &west].iter().enumerate() {
        let into = dir.path().join(format!("restored-{i}"));
        ok(&restore_files(from, &key, &into));
        assert_eq!(describe(&into), want, "restored from {from}");
        // verify reads every pack back; prune finds nothing to delete.
        ok(&lifeboat(&[
            "verify",
            "--from",
            from,
            "--key-file",
            &key,
            "--backup",
            "all",
        ]));
        let p = ok(&lifeboat(&[
            "prune",
            "--from",
            from,
            "--key-file",
            &key,
            "--incomplete",
            "--grace",
            "0s",
            "--json",
        ]));
        assert_eq!(p["packs_removed"], 0, "{p}");
    }
    // The second region restores after the prune too.
    let into = dir.path().join("restored-after-prune");
    ok(&restore_files(&west, &key, &into));
    assert_eq!(describe(&into), want);
    // A database restore of a file backup says what to do instead.
    let err = fails(&lifeboat(&[
        "restore",
        "--from",
        &fs_dest,
        "--key-file",
        &key,
        "--target-db",
        "x",
    ]));
    assert!(
        err.contains("file backup: restore it with --to-dir"),
        "{err}"
    );
}

#[test]
fn an_unchanged_tree_uploads_nothing_and_a_change_is_found() {
    let dir = tempfile::tempdir().unwrap();
    let key = key(dir.path());
    let src = hostile_tree(dir.path());
    // Big enough for many chunks, so an append changes only the last.
    fs::write(src.join("huge"), noise(24 << 20, 5)).unwrap();
    let store = dir.path().join("dest");
    let url = file_url(&store);
    backup_files(&src, &key, &[&url], &[]);
    let before = packs(&store);

    let r = backup_files(&src, &key, &[&url], &[]);
    let f = &r["files"];
    assert_eq!(f["files_unchanged"], 8, "{r}");
    assert_eq!(f["bytes_read"], 0, "{r}");
    assert_eq!(f["chunks_new"], 0, "{r}");
    assert_eq!(f["bytes_stored"], 0, "{r}");
    assert_eq!(packs(&store), before, "no pack written");

    // An appended file is read again; its first chunks are deduplicated.
    let mut big = fs::read(src.join("huge")).unwrap();
    big.extend_from_slice(b"appended");
    fs::write(src.join("huge"), &big).unwrap();
    let r = backup_files(&src, &key, &[&url], &[]);
    let f = &r["files"];
    assert_eq!(
        (f["files_changed"].as_u64(), f["files_unchanged"].as_u64()),
        (Some(1), Some(7)),
        "{r}"
    );
    let (read, dedup) = (
        f["bytes_read"].as_u64().unwrap(),
        f["bytes_deduplicated"].as_u64().unwrap(),
    );
    assert_eq!(read, big.len() as u64, "{r}");
    assert!(dedup > read / 2, "most of the file was stored already: {r}");
    assert!(
        f["bytes_stored"].as_u64().unwrap() < read - dedup + 4096,
        "{r}"
    );

    // --full reads everything and stores nothing new.
    let r = backup_files(&src, &key, &[&url], &["--full"]);
    let f = &r["files"];
    assert_eq!(f["files_unchanged"], 0, "{r}");
    assert_eq!(f["chunks_new"], 0, "{r}");
    assert_eq!(f["bytes_read"], f["bytes_deduplicated"], "{r}");

    // Every backup restores the tree as it was then: the newest has the append.
    let into = dir.path().join("restored");
    ok(&restore_files(&url, &key, &into));
    assert_eq!(describe(&into), describe(&src));
}

/// Copies the store, damages the copy, and checks a restore from it
/// fails with `expect` and writes nothing.
fn damaged(
    dir: &Path,
    store: &Path,
    key: &str,
    case: &str,
    damage: impl Fn(&Path),
    expect: &str,
    verify_expect: &[&str],
) {
    let copy = dir.join(case);
    assert!(std::process::Command::new("cp")
        .arg("-r")
        .arg(store)
        .arg(&copy)
        .status()
        .unwrap()
        .success());
    damage(&copy);
    // verify names the damage and the files it touches.
    let url = file_url(&copy);
    let v = lifeboat(&[
        "verify",
        "--from",
        &url,
        "--key-file",
        key,
        "--backup",
        "all",
    ]);
    let said = format!("{}{}", stdout(&v), stderr(&v));
    assert!(!v.status.success(), "{case}: verify passed: {said}");
    for e in verify_expect {
        assert!(
            said.contains(e),
            "{case}: verify does not say {e:?}: {said}"
        );
    }
    let into = dir.join(format!("{case}-restored"));
    let err = fails(&restore_files(&file_url(&copy), key, &into));
    assert!(err.contains(expect), "{case}: {err}");
    assert!(!into.exists(), "{case}: the restore wrote {into:?}");
    let leftovers: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".lifeboat-"))
        .collect();
    assert!(leftovers.is_empty(), "{case}: staging left behind");
}

#[test]
fn a_damaged_store_restores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let key = key(dir.path());
    let src = hostile_tree(dir.path());
    let store = dir.path().join("dest");
    backup_files(&src, &key, &[&file_url(&store)], &[]);
    let pack = packs(&store)[0].clone();
    let pack_name = pack.file_name().unwrap().to_string_lossy().into_owned();

    damaged(
        dir.path(),
        &store,
        &key,
        "flipped",
        |c| {
            let p = c.join("chunks/packs").join(&pack_name);
            let mut b = fs::read(&p).unwrap();
            let mid = b.len() / 2;
            b[mid] ^= 1;
            fs::write(&p, b).unwrap();
        },
        &pack_name,
        &[&pack_name, "files affected: ", "big"],
    );
    damaged(
        dir.path(),
        &store,
        &key,
        "deleted",
        |c| {
            fs::remove_file(c.join("chunks/packs").join(&pack_name)).unwrap();
        },
        "is in no pack",
        &["in no pack", "files affected: ", "big"],
    );
    // A tree edited: its segment fails.
    damaged(
        dir.path(),
        &store,
        &key,
        "tree",
        |c| {
            let b = fs::read_dir(c.join("backups"))
                .unwrap()
                .next()
                .unwrap()
                .unwrap()
                .path()
                .join("tree.lbk");
            let mut d = fs::read(&b).unwrap();
            let end = d.len() - 20;
            d[end] ^= 4;
            fs::write(&b, d).unwrap();
        },
        "tree.lbk",
        &["tree.lbk"],
    );
    // An edited index is ignored: the packs' own lists rebuild it, and the
    // restore is whole.
    let copy = dir.path().join("index-edited");
    assert!(std::process::Command::new("cp")
        .arg("-r")
        .arg(&store)
        .arg(&copy)
        .status()
        .unwrap()
        .success());
    let idx = fs::read_dir(copy.join("chunks/index"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let mut d = fs::read(&idx).unwrap();
    let end = d.len() - 3;
    d[end] ^= 1;
    fs::write(&idx, d).unwrap();
    let v = lifeboat(&["verify", "--from", &file_url(&copy), "--key-file", &key]);
    assert!(
        !v.status.success() && stdout(&v).contains("chunks/index/"),
        "{}",
        stdout(&v)
    );
    let into = dir.path().join("index-edited-restored");
    ok(&restore_files(&file_url(&copy), &key, &into));
    assert_eq!(describe(&into), describe(&src));
}

#[test]
fn a_killed_backup_leaves_no_manifest_and_the_next_run_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    let key = key(dir.path());
    let src = dir.path().join("src");
    fs::create_dir_all(&src).unwrap();
    for i in 0..40 {
        fs::write(src.join(format!("f{i:02}")), noise(1 << 20, i + 10)).unwrap();
    }
    let store = dir.path().join("dest");
    let url = file_url(&store);
    let mut child = lifeboat_cmd(&[
        "backup",
        "--path",
        src.to_str().unwrap(),
        "--to",
        &url,
        "--key-file",
        &key,
        "--pack-size",
        "100000",
    ])
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::null())
    .spawn()
    .unwrap();
    // Kill it once it has written packs but (it still has most files to go) before its manifest.
    let t0 = std::time::Instant::now();
    while packs(&store).len() < 6 && t0.elapsed().as_secs() < 60 {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(
        packs(&store).len() >= 6,
        "the backup wrote packs before it was killed"
    );
    let manifests: Vec<_> = fs::read_dir(store.join("backups"))
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter(|e| e.path().join("manifest.json").exists())
                .collect()
        })
        .unwrap_or_default();
    assert!(
        manifests.is_empty(),
        "a killed backup committed: {manifests:?}"
    );
    assert!(
        fails(&restore_files(&url, &key, &dir.path().join("nothing")))
            .contains("no committed backup")
    );

    // The next run succeeds, and reuses what the killed one stored; the
    // first file, which the killed run had stored, is gone by then.
    fs::remove_file(src.join("f00")).unwrap();
    // Added after the kill, so only the next run stores it: over 16 MiB is
    // at least three chunks (8 MiB at most each), and a chunk between two of
    // its own fills a pack alone. Deleting it later frees at least that pack
    // wherever the kill fell (f02's chunks may share packs with neighbours').
    fs::write(src.join("late"), noise(17 << 20, 99)).unwrap();
    let partial = |d: &Path| {
        let names = fs::read_dir(d.join("chunks/packs")).unwrap();
        let names: Vec<String> = names
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.iter().filter(|n| n.ends_with(".partial")).count()
    };
    // Almost always a pack was being written (not when the kill fell
    // between two packs): its partial upload must not outlive the next run.
    let had = partial(&store);
    let r = backup_files(&src, &key, &[&url], &[]);
    assert!(
        r["files"]["bytes_deduplicated"].as_u64().unwrap() > 0,
        "{r}"
    );
    assert_eq!(
        partial(&store),
        0,
        "{had} partial pack(s) of the killed run left"
    );

    // Prune: within the grace period the orphaned packs stay; after it they
    // go, and never a pack the kept backup needs.
    let prune = |grace: &str| {
        ok(&lifeboat(&[
            "prune",
            "--from",
            &url,
            "--key-file",
            &key,
            "--incomplete",
            "--grace",
            grace,
            "--json",
        ]))
    };
    let all = packs(&store).len();
    assert_eq!(prune("1h")["packs_removed"], 0);
    assert_eq!(packs(&store).len(), all);
    let p = prune("0s");
    let removed = p["packs_removed"].as_u64().unwrap() as usize;
    assert!(removed >= 1, "{p}");
    assert_eq!(packs(&store).len(), all - removed);
    assert_eq!(prune("0s")["packs_removed"], 0, "nothing more to remove");
    ok(&lifeboat(&[
        "verify",
        "--from",
        &url,
        "--key-file",
        &key,
        "--backup",
        "all",
    ]));
    let into = dir.path().join("restored");
    ok(&restore_files(&url, &key, &into));
    assert_eq!(describe(&into), describe(&src));

    // Without the key, prune deletes no pack.
    fs::remove_file(src.join("f02")).unwrap();
    fs::remove_file(src.join("late")).unwrap();
    let r = backup_files(&src, &key, &[&url], &[]);
    let id = r["backup_id"].as_str().unwrap().to_string();
    let before = packs(&store).len();
    let older: Vec<String> = fs::read_dir(store.join("backups"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| *n != id && store.join("backups").join(n).join("manifest.json").exists())
        .collect();
    assert_eq!(older.len(), 1, "{older:?}");
    ok(&lifeboat(&[
        "prune", "--from", &url, "--backup", &older[0], "--grace", "0s", "--json",
    ]));
    assert_eq!(packs(&store).len(), before);
    // With it, the deleted backup's own chunks (late's, f02's) go.
    assert!(prune("0s")["packs_removed"].as_u64().unwrap() >= 1);
    let into = dir.path().join("restored-2");
    ok(&restore_files(&url, &key, &into));
    assert_eq!(describe(&into), describe(&src));
}
