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

/// Where docs/FORMAT.md draws a line, both decoders draw it in the same
/// place: backups crafted here from the document (ring and the spec, not
/// lifeboat's writer) are accepted or refused by `lifeboat verify` and by
/// decode.py alike. Needs neither PostgreSQL nor S3.
mod edge_cases {
    use base64::engine::general_purpose::STANDARD as B64;
    use base64::Engine;
    use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
    use ring::{digest, hmac};
    use std::os::unix::fs::PermissionsExt;
    use std::path::Path;

    const ID: &str = "20261125T020000.000Z-a1b2c3";
    const MASTER: [u8; 32] = [0x42; 32];
    const SEG: usize = 1 << 12;

    fn seal(key: &[u8; 32], nonce: [u8; 12], aad: &[u8], plain: &[u8]) -> Vec<u8> {
        let k = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key).unwrap());
        let mut b = plain.to_vec();
        k.seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(aad), &mut b)
            .unwrap();
        b
    }

    /// §2: nonce ‖ AES-256-GCM(master, key, aad).
    fn wrap(key: &[u8; 32], aad: &[u8]) -> Vec<u8> {
        let nonce = [7u8; 12];
        [&nonce[..], &seal(&MASTER, nonce, aad, key)].concat()
    }

    /// One case: what to change from a valid backup, and whether the
    /// document allows the result.
    struct Case {
        what: &'static str,
        key_file: String,
        compression: u8,
        segment_log2: u8,
        key_id: &'static str,
        /// segment plaintexts and their last-segment flags
        segments: Vec<(Vec<u8>, bool)>,
        /// the decoded size, when the segments are compressed
        plain_size: Option<usize>,
        format: &'static str,
        upper_case_mac: bool,
        allowed: bool,
    }

    fn key_line(id: &str, key: &str) -> String {
        format!("LIFEBOAT-KEY-1 {id} {key}\n")
    }

    fn valid(what: &'static str) -> Case {
        Case {
            what,
            key_file: key_line("k1", &B64.encode(MASTER)),
            compression: 0,
            segment_log2: 12,
            key_id: "k1",
            segments: vec![(vec![1; SEG], false), (vec![2; 10], true)],
            plain_size: None,
            format: "1",
            upper_case_mac: false,
            allowed: true,
        }
    }

    /// §3: header ‖ segments.
    fn object(c: &Case, name: &str) -> Vec<u8> {
        let (dk, prefix) = ([9u8; 32], [1u8; 7]);
        let mut o = b"LIFEBOAT".to_vec();
        o.extend([1, c.compression, c.segment_log2]);
        o.extend(prefix);
        o.push(c.key_id.len() as u8);
        o.extend(c.key_id.as_bytes());
        o.extend((name.len() as u16).to_be_bytes());
        o.extend(name.as_bytes());
        let wrapped = wrap(&dk, &o);
        o.extend(wrapped);
        for (i, (plain, last)) in c.segments.iter().enumerate() {
            let mut n = [0u8; 12];
            n[..7].copy_from_slice(&prefix);
            n[7..11].copy_from_slice(&(i as u32).to_be_bytes());
            n[11] = *last as u8;
            o.extend(seal(&dk, n, b"", plain));
        }
        o
    }

    /// §1 and §4: the object and its manifest under `root`.
    fn write_backup(c: &Case, root: &Path) {
        let key = format!("backups/{ID}/db-0.lbk");
        let obj = object(c, &key);
        let plain_size = c
            .plain_size
            .unwrap_or_else(|| c.segments.iter().map(|(p, _)| p.len()).sum());
        let mac_key = [5u8; 32];
        let body = format!(
            concat!(
                r#"{{"format":{},"backup_id":"{}","policy":"p","tier":"manual","#,
                r#""source":{{"kind":"postgres","method":"logical","host":"db:5432","server_version":"15","databases":["d"]}},"#,
                r#""started_at":"2026-11-25T02:00:00.000Z","completed_at":"2026-11-25T02:00:01.000Z","#,
                r#""compression":"none","key_id":"{}","objects":[{{"key":"{}","role":"database","database":"d","#,
                r#""size":{},"sha256":"{}","plain_size":{}}}],"mac_key":"{}""#
            ),
            c.format,
            ID,
            c.key_id,
            key,
            obj.len(),
            hex::encode(digest::digest(&digest::SHA256, &obj)),
            plain_size,
            B64.encode(wrap(
                &mac_key,
                format!("lifeboat manifest mac key v1\0{ID}").as_bytes()
            )),
        );
        let tag = hmac::sign(
            &hmac::Key::new(hmac::HMAC_SHA256, &mac_key),
            body.as_bytes(),
        );
        let mut mac = hex::encode(tag.as_ref());
        if c.upper_case_mac {
            mac = mac.to_uppercase();
        }
        let dir = root.join("backups").join(ID);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("db-0.lbk"), obj).unwrap();
        std::fs::write(
            dir.join("manifest.json"),
            format!("{body},\"mac\":\"{mac}\"}}\n"),
        )
        .unwrap();
    }

    fn compressed(
        compression: u8,
        stream: Vec<u8>,
        plain_size: usize,
        allowed: bool,
        what: &'static str,
    ) -> Case {
        Case {
            compression,
            segments: vec![(stream, true)],
            plain_size: Some(plain_size),
            allowed,
            ..valid(what)
        }
    }

    fn gzip(plain: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut g = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
        g.write_all(plain).unwrap();
        g.finish().unwrap()
    }

    fn cases() -> Vec<Case> {
        let text = b"lifeboat ".repeat(100);
        let zstd1 = zstd::encode_all(&text[..], 3).unwrap();
        let gzip1 = gzip(&text);
        let canonical = B64.encode(MASTER);
        // Same 32 bytes, but the unused low bits of the last digit set.
        let loose = {
            let alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
            let last = alphabet.find(&canonical[42..43]).unwrap();
            format!("{}{}=", &canonical[..42], &alphabet[last + 1..last + 2])
        };
        let long_id: &'static str = Box::leak("k".repeat(65).into_boxed_str());
        vec![
            valid("a full segment and a short final one"),
            compressed(1, zstd1.clone(), 900, true, "one zstd frame"),
            compressed(2, gzip1.clone(), 900, true, "one gzip member"),
            compressed(
                1,
                zstd1[..zstd1.len() - 3].to_vec(),
                900,
                false,
                "a cut zstd frame",
            ),
            compressed(
                2,
                gzip1[..gzip1.len() - 3].to_vec(),
                900,
                false,
                "a cut gzip member",
            ),
            compressed(
                1,
                [&zstd1[..], &zstd1[..]].concat(),
                1800,
                true,
                "two zstd frames",
            ),
            compressed(
                2,
                [&gzip1[..], &gzip1[..]].concat(),
                1800,
                true,
                "two gzip members",
            ),
            compressed(
                1,
                [&zstd1[..], &zstd1[..9]].concat(),
                900,
                false,
                "a zstd frame, then a cut one",
            ),
            compressed(
                2,
                [&gzip1[..], &gzip1[..9]].concat(),
                900,
                false,
                "a gzip member, then a cut one",
            ),
            compressed(
                2,
                [&gzip1[..], b"xyz"].concat(),
                900,
                false,
                "a gzip member, then junk",
            ),
            compressed(
                1,
                [&zstd1[..], b"xyz"].concat(),
                900,
                false,
                "a zstd frame, then junk",
            ),
            Case {
                segments: vec![(vec![], true)],
                ..valid("empty plaintext: one empty final segment")
            },
            Case {
                segments: vec![(vec![1; SEG], false), (vec![], true)],
                allowed: false,
                ..valid("an empty final segment after a full one")
            },
            Case {
                compression: 3,
                segments: vec![(b"abc".to_vec(), true)],
                allowed: false,
                ..valid("unknown compression id 3")
            },
            Case {
                segment_log2: 25,
                allowed: false,
                ..valid("segment size 2^25")
            },
            Case {
                format: "0",
                allowed: false,
                ..valid("manifest format 0")
            },
            Case {
                format: "1.0",
                allowed: false,
                ..valid("manifest format 1.0 (not an integer)")
            },
            Case {
                upper_case_mac: true,
                allowed: false,
                ..valid("upper-case MAC hex")
            },
            Case {
                key_file: format!(
                    "{}{}",
                    key_line("k1", &B64.encode([0x17; 32])),
                    key_line("k1", &canonical)
                ),
                allowed: false,
                ..valid("key id twice in the key file (the second one right)")
            },
            Case {
                key_file: format!("# keys\r\n \tLIFEBOAT-KEY-1\t\tk1   {canonical} \r\n\r\n"),
                ..valid("key file: tabs, runs of blanks, CRLF")
            },
            Case {
                key_file: format!("LIFEBOAT-KEY-1\u{b}k1 {canonical}\n"),
                allowed: false,
                ..valid("key file: a vertical tab as separator")
            },
            Case {
                key_file: key_line("k1", &loose),
                allowed: false,
                ..valid("key file: base64 with non-zero unused bits")
            },
            Case {
                key_file: key_line(long_id, &canonical),
                key_id: long_id,
                allowed: false,
                ..valid("a key id of 65 characters")
            },
        ]
    }

    #[test]
    fn both_decoders_agree_where_the_format_document_draws_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let mut disagreements = Vec::new();
        for (i, c) in cases().iter().enumerate() {
            let root = dir.path().join(format!("case-{i}"));
            write_backup(c, &root);
            let keys = root.join("keys");
            std::fs::write(&keys, &c.key_file).unwrap();
            std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(0o600)).unwrap();
            let py = std::process::Command::new("python3")
                .arg(concat!(
                    env!("CARGO_MANIFEST_DIR"),
                    "/tests/format/decode.py"
                ))
                .arg(&keys)
                .arg(&root)
                .arg(ID)
                .arg(root.join("out"))
                .output()
                .unwrap();
            let rust = super::verify(
                &[&format!("file://{}", root.display())],
                keys.to_str().unwrap(),
            )
            .opt("--backup", ID)
            .output();
            for (decoder, o) in [("decode.py", &py), ("lifeboat verify", &rust)] {
                if o.status.success() != c.allowed {
                    disagreements.push(format!(
                        "{}: {decoder} {} it (the document {} it): {}{}",
                        c.what,
                        if o.status.success() {
                            "accepts"
                        } else {
                            "refuses"
                        },
                        if c.allowed { "allows" } else { "forbids" },
                        String::from_utf8_lossy(&o.stderr),
                        String::from_utf8_lossy(&o.stdout),
                    ));
                }
            }
        }
        assert!(disagreements.is_empty(), "{}", disagreements.join("\n"));
    }
}
