//! wal-push / wal-fetch as PostgreSQL's archive and restore commands:
//! idempotent pushes, never an overwrite, and a corrupted segment that stops
//! recovery (exit 126) instead of ending it quietly (exit 1).

mod support;
use support::*;

#[test]
fn wal_segments_round_trip_and_are_never_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keyfile(dir.path(), "k");
    let k = keys.to_str().unwrap();
    let local = format!("file://{}/archive", dir.path().display());
    let s3 = bucket("eu-west-1");
    let seg = dir.path().join("000000010000000000000003");
    // A segment is 16 MiB; most of a real one is zeros after a switch.
    let mut content: Vec<u8> = (0..16u32 << 20)
        .map(|i| (i.wrapping_mul(2654435761) >> 24) as u8)
        .collect();
    content[4096..].iter_mut().step_by(3).for_each(|b| *b = 0);
    std::fs::write(&seg, &content).unwrap();

    let push = |p: &std::path::Path| {
        lifeboat(&[
            "wal-push",
            p.to_str().unwrap(),
            "--to",
            &local,
            "--to",
            &s3,
            "--key-file",
            k,
        ])
    };
    ok(&push(&seg));
    assert!(
        s3_keys(&s3).contains(&"prod/orders/wal/00000001/000000010000000000000003.lbk".to_string())
    );
    // Pushed again with the same content (PostgreSQL retries after a crash): success.
    ok(&push(&seg));
    // Different content under the same name: refused, the archive unchanged.
    let mut other = content.clone();
    other[100] ^= 1;
    let other_dir = dir.path().join("other");
    std::fs::create_dir(&other_dir).unwrap();
    std::fs::write(other_dir.join("000000010000000000000003"), &other).unwrap();
    let err = fails(&push(&other_dir.join("000000010000000000000003")));
    assert!(
        err.contains("different content") && err.contains("000000010000000000000003"),
        "{err}"
    );
    // A promotion's `.partial` with bytes that differ from the archived one
    // (a second restore promoted from the same point): success, so the
    // server's archiver does not stall, and the first copy stays.
    let partial = |dir: &std::path::Path, bytes: &[u8]| {
        let p = dir.join("000000010000000000000003.partial");
        std::fs::write(&p, bytes).unwrap();
        p
    };
    ok(&push(&partial(dir.path(), &content)));
    ok(&push(&partial(&other_dir, &other)));
    let kept = dir.path().join("kept.partial");
    ok(&lifeboat(&[
        "wal-fetch",
        "000000010000000000000003.partial",
        kept.to_str().unwrap(),
        "--from",
        &s3,
        "--key-file",
        k,
    ]));
    assert!(
        std::fs::read(&kept).unwrap() == content,
        "the first partial was kept"
    );

    // Fetch from each destination: the same bytes.
    for from in [&local, &s3] {
        let out = dir.path().join("pg_wal_RECOVERYXLOG");
        ok(&lifeboat(&[
            "wal-fetch",
            "000000010000000000000003",
            out.to_str().unwrap(),
            "--from",
            from,
            "--key-file",
            k,
        ]));
        assert!(
            std::fs::read(&out).unwrap() == content,
            "fetched from {from}"
        );
    }
    // Past the end of the archive: exit 1, which ends recovery normally.
    let o = lifeboat(&[
        "wal-fetch",
        "000000010000000000000004",
        "/tmp/x",
        "--from",
        &local,
        "--key-file",
        k,
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));

    // A corrupted copy: the next destination serves it; alone it is fatal (126).
    let path = dir
        .path()
        .join("archive/wal/00000001/000000010000000000000003.lbk");
    let mut b = std::fs::read(&path).unwrap();
    let n = b.len();
    b[n / 2] ^= 0x40;
    std::fs::write(&path, b).unwrap();
    let out = dir.path().join("fetched");
    ok(&lifeboat(&[
        "wal-fetch",
        "000000010000000000000003",
        out.to_str().unwrap(),
        "--from",
        &local,
        "--from",
        &s3,
        "--key-file",
        k,
    ]));
    assert!(std::fs::read(&out).unwrap() == content);
    std::fs::remove_file(&out).unwrap();
    let o = lifeboat(&[
        "wal-fetch",
        "000000010000000000000003",
        out.to_str().unwrap(),
        "--from",
        &local,
        "--key-file",
        k,
    ]);
    assert_eq!(o.status.code(), Some(126), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("000000010000000000000003"),
        "{}",
        stderr(&o)
    );
    assert!(
        !out.exists(),
        "nothing is left where PostgreSQL would read it"
    );

    let err = fails(&lifeboat(&[
        "wal-push",
        "/etc/passwd",
        "--to",
        &local,
        "--key-file",
        k,
    ]));
    assert!(err.contains("not a WAL file name"), "{err}");
}

#[test]
fn a_missing_segment_is_served_from_its_archived_partial() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keyfile(dir.path(), "k");
    let k = keys.to_str().unwrap();
    let local = format!("file://{}/archive", dir.path().display());
    let partial = dir.path().join("000000010000000000000007.partial");
    let content: Vec<u8> = (0..1u32 << 20).map(|i| (i % 251) as u8).collect();
    std::fs::write(&partial, &content).unwrap();
    ok(&lifeboat(&[
        "wal-push",
        partial.to_str().unwrap(),
        "--to",
        &local,
        "--key-file",
        k,
    ]));
    let fetch = |name: &str, out: &std::path::Path| {
        lifeboat(&[
            "wal-fetch",
            name,
            out.to_str().unwrap(),
            "--from",
            &local,
            "--key-file",
            k,
        ])
    };
    let out = dir.path().join("RECOVERYXLOG");
    ok(&fetch("000000010000000000000007", &out));
    assert!(
        std::fs::read(&out).unwrap() == content,
        "the partial's bytes"
    );
    // The probes PostgreSQL makes at the end of recovery: not archived (1).
    for name in ["00000002.history", "000000010000000000000008"] {
        let o = fetch(name, &dir.path().join("probe"));
        assert_eq!(o.status.code(), Some(1), "{name}: {}", stderr(&o));
    }
    // A complete segment that fails verification is fatal even with a partial there.
    let full = dir.path().join("000000010000000000000007");
    std::fs::write(&full, &content).unwrap();
    ok(&lifeboat(&[
        "wal-push",
        full.to_str().unwrap(),
        "--to",
        &local,
        "--key-file",
        k,
    ]));
    let path = dir
        .path()
        .join("archive/wal/00000001/000000010000000000000007.lbk");
    let mut b = std::fs::read(&path).unwrap();
    let n = b.len();
    b[n / 2] ^= 0x40;
    std::fs::write(&path, b).unwrap();
    let o = fetch("000000010000000000000007", &dir.path().join("x"));
    assert_eq!(o.status.code(), Some(126), "{}", stderr(&o));
}

/// Someone with write access to the bucket (or without the key) puts an
/// object at the name of the next WAL file. wal-push must not fail forever
/// (PostgreSQL's archiver would stall until the primary's disk fills): the
/// object is kept aside and the real file archived (issue 13, item 3).
#[test]
fn an_object_that_does_not_authenticate_at_the_next_wal_name_is_moved_aside() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keyfile(dir.path(), "k");
    let k = keys.to_str().unwrap();
    let archive = dir.path().join("archive");
    let local = format!("file://{}", archive.display());
    let name = "00000001000000000000000A";
    let planted = archive.join("wal/00000001").join(format!("{name}.lbk"));
    std::fs::create_dir_all(planted.parent().unwrap()).unwrap();
    std::fs::write(&planted, b"LBK1 not a sealed object at all").unwrap();

    let seg = dir.path().join(name);
    std::fs::write(&seg, vec![7u8; 1 << 20]).unwrap();
    ok(&lifeboat(&[
        "wal-push",
        seg.to_str().unwrap(),
        "--to",
        &local,
        "--key-file",
        k,
    ]));

    let fetched = dir.path().join("fetched");
    ok(&lifeboat(&[
        "wal-fetch",
        name,
        fetched.to_str().unwrap(),
        "--from",
        &local,
        "--key-file",
        k,
    ]));
    assert!(std::fs::read(&fetched).unwrap() == std::fs::read(&seg).unwrap());
    let aside: Vec<_> = std::fs::read_dir(archive.join("quarantine/wal/00000001"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(aside.len(), 1, "{aside:?}");
    assert_eq!(
        std::fs::read(&aside[0]).unwrap(),
        b"LBK1 not a sealed object at all",
        "the planted object is kept for whoever investigates"
    );
}
