//! The catalog's unit tests: ids, manifests and their MAC, recovery points.
use super::*;
use chrono::TimeZone;
use std::path::Path;

fn keys(text: &str) -> Keyring {
    Keyring::parse(text, Path::new("k")).unwrap()
}

fn manifest(id: &str, done: DateTime<Utc>) -> Manifest {
    Manifest::sample(id, done, 10, 20)
}

#[test]
fn ids_sort_by_time_and_parse() {
    let a = new_backup_id(Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap());
    let b = new_backup_id(Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 6).unwrap());
    assert!(a < b && valid_backup_id(&a), "{a}");
    assert!(a.starts_with("20260102T030405.000Z-"), "{a}");
    assert!(!valid_backup_id("20260102T030405.000Z"));
    assert!(!valid_backup_id("2026010xT030405.000Z-abcdef"));
    let ms = |m| {
        new_backup_id(
            Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap() + chrono::Duration::milliseconds(m),
        )
    };
    assert!(
        ms(1) < ms(2) && ms(999) < b,
        "ids within one second still sort"
    );
    assert_eq!(id_of_key(&object_key(&a, "db-0")), Some(a.as_str()));
}

#[test]
fn listings_name_the_program_that_made_the_backup() {
    let mut s = SourceInfo::sample(PgMethod::Logical, &["orders"]);
    assert_eq!(
        s.summary(),
        "postgres logical db 15",
        "not recorded before issue 14"
    );
    if let SourceInfo::Postgres(pg) = &mut s {
        pg.client_version = Some("17.2".into());
    }
    assert_eq!(s.summary(), "postgres logical db 15 (pg_dump 17.2)");
}

#[test]
fn sealed_manifest_opens_and_any_edit_fails() {
    let k = keys(&crate::keys::new_key_line("k1").unwrap());
    let id = "20261125T020000.000Z-abcdef";
    let bytes = seal_manifest(manifest(id, Utc::now()), &k);
    let m = open_manifest(&bytes, id, &k).unwrap();
    assert_eq!(m.key_id, "k1");
    assert!(
        serde_json::from_slice::<serde_json::Value>(&bytes).is_ok(),
        "valid JSON"
    );
    // edit a size by hand
    let text = String::from_utf8(bytes.clone()).unwrap();
    let edited = text.replace("\"size\":10", "\"size\":11");
    assert_ne!(edited, text);
    assert!(matches!(
        open_manifest(edited.as_bytes(), id, &k),
        Err(CatalogError::Mac { .. })
    ));
    // flip any byte
    for i in 0..bytes.len() - 1 {
        let mut b = bytes.clone();
        b[i] ^= 0x04;
        assert!(open_manifest(&b, id, &k).is_err(), "flip at {i}");
    }
    // a manifest moved under another id
    assert!(matches!(
        open_manifest(&bytes, "20261125T020000.000Z-000000", &k),
        Err(CatalogError::WrongId { .. })
    ));
    // another key file
    let other = keys(&crate::keys::new_key_line("k1").unwrap());
    assert!(matches!(
        open_manifest(&bytes, id, &other),
        Err(CatalogError::Mac { .. })
    ));
}

/// Found by `props::an_edited_manifest_is_refused`: a hex digit of the
/// MAC turned upper case (bit 5 flipped, 18 bytes from the end) and the
/// manifest still opened, so its bytes could change under a valid MAC.
#[test]
fn an_upper_case_mac_is_refused() {
    let id = "20261125T020000.000Z-abcdef";
    let (k, bytes) = sealed_by_k1(manifest(id, Utc::now()));
    let (body, mac) = bytes.split_at(bytes.len() - 67);
    let upper = [body, &mac.to_ascii_uppercase()].concat();
    assert_ne!(upper, bytes);
    let err = open_manifest(&upper, id, &k).unwrap_err();
    assert!(err.to_string().contains("lower-case hex"), "{err}");
}

/// Two policies sharing one key: a backup copied from one's prefix to
/// the other's authenticates, but is not the other's.
#[test]
fn a_manifest_opens_only_for_the_owner_that_sealed_it() {
    let id = "20261125T020000.000Z-abcdef";
    let line = crate::keys::new_key_line("k1").unwrap();
    let as_owner = |o: &str| keys(&line).for_owner(Some(o.parse().unwrap()));
    let bytes = seal_manifest(manifest(id, Utc::now()), &as_owner("shop/orders"));
    let m = open_manifest(&bytes, id, &as_owner("shop/orders")).unwrap();
    assert_eq!(m.namespace.as_deref(), Some("shop"));
    assert!(
        open_manifest(&bytes, id, &keys(&line)).is_ok(),
        "no owner: any"
    );
    for other in ["other/orders", "shop/billing"] {
        let err = open_manifest(&bytes, id, &as_owner(other)).unwrap_err();
        assert!(
            matches!(err, CatalogError::WrongOwner { .. }),
            "{other}: {err}"
        );
        assert!(err.to_string().contains("belongs to shop/orders"), "{err}");
    }
    // Written without an owner (before namespaces were recorded): the
    // policy name is still checked.
    let old = seal_manifest(manifest(id, Utc::now()), &keys(&line));
    assert!(open_manifest(&old, id, &as_owner("any/orders")).is_ok());
    assert!(open_manifest(&old, id, &as_owner("shop/billing")).is_err());
}

fn sealed_by_k1(m: Manifest) -> (Keyring, Vec<u8>) {
    let k = keys(&crate::keys::new_key_line("k1").unwrap());
    let bytes = seal_manifest(m, &k);
    (k, bytes)
}

/// Format 0 never existed: only 1 is read (it was "refuse larger").
#[test]
fn only_manifest_format_1_is_read() {
    let id = "20261125T020000.000Z-abcdef";
    for format in [0, 2] {
        let (k, bytes) = sealed_by_k1(Manifest {
            format,
            ..manifest(id, Utc::now())
        });
        let err = parse_manifest(&bytes, id).unwrap_err();
        assert!(
            matches!(err, CatalogError::Format(f) if f == format),
            "{err}"
        );
        assert!(open_manifest(&bytes, id, &k).is_err());
    }
}

#[test]
fn recovery_point_selection() {
    let t = |h| Utc.with_ymd_and_hms(2026, 11, 25, h, 0, 0).unwrap();
    let ms = vec![
        manifest("20261125T020000.000Z-aaaaaa", t(2)),
        manifest("20261125T040000.000Z-bbbbbb", t(4)),
    ];
    assert_eq!(
        select(&ms, &Point::Latest).unwrap().backup_id,
        ms[1].backup_id
    );
    assert_eq!(
        select(&ms, &Point::AtOrBefore(t(3))).unwrap().backup_id,
        ms[0].backup_id
    );
    assert_eq!(
        select(&ms, &Point::AtOrBefore(t(4))).unwrap().backup_id,
        ms[1].backup_id
    );
    assert_eq!(
        select(&ms, &Point::AtOrBefore(t(9))).unwrap().backup_id,
        ms[1].backup_id
    );
    assert!(matches!(
        select(&ms, &Point::AtOrBefore(t(1))),
        Err(CatalogError::NothingBefore(_))
    ));
    assert!(matches!(
        select(&[], &Point::Latest),
        Err(CatalogError::Empty)
    ));
    assert!(matches!(
        select(&ms, &Point::Id("20261125T030000.000Z-cccccc".into())),
        Err(CatalogError::NoSuchId(_))
    ));
    assert!("yesterday"
        .parse::<Point>()
        .unwrap_err()
        .contains("RFC 3339"));
    assert_eq!(
        "2026-11-25T03:00:00Z".parse::<Point>().unwrap(),
        Point::AtOrBefore(t(3))
    );
}
