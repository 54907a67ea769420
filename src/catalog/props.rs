//! Property tests of manifest parsing and its MAC check under hostile input:
//! random JSON, manifests with a member replaced, and edited sealed manifests.

use super::*;
use crate::hostile::{apply_all, config, edits};
use chrono::TimeZone;
use proptest::prelude::*;
use serde_json::Value;
use std::path::Path;

const ID: &str = "20261125T020000.000Z-abcdef";

fn keys() -> Keyring {
    Keyring::parse(&crate::keys::new_key_line("k1").unwrap(), Path::new("k")).unwrap()
}

fn sealed(keys: &Keyring) -> Vec<u8> {
    let done = Utc.with_ymd_and_hms(2026, 11, 25, 2, 3, 10).unwrap();
    seal_manifest(Manifest::sample(ID, done, 10, 20), keys)
}

/// Any JSON a few levels deep, with the manifest's member names likely.
fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u32>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        Just(Value::from(ID)),
        ".{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 5, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            proptest::collection::btree_map(member(), inner, 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn member() -> impl Strategy<Value = String> {
    prop_oneof![
        proptest::sample::select(
            &[
                "format",
                "backup_id",
                "policy",
                "tier",
                "source",
                "kind",
                "objects",
                "key",
                "size",
                "mac_key",
                "mac",
                "key_id",
                "compression",
            ][..]
        )
        .prop_map(String::from),
        "[a-z_]{1,8}",
    ]
}

/// `body` (a JSON object) closed with a well-formed MAC member.
fn with_mac_suffix(body: &Value, mac: &[u8; 32]) -> Vec<u8> {
    let mut b = serde_json::to_vec(body).unwrap();
    b.pop();
    close(b, mac)
}

fn close(mut b: Vec<u8>, mac: &[u8; 32]) -> Vec<u8> {
    b.extend_from_slice(MAC_SUFFIX_START);
    b.extend_from_slice(hex::encode(mac).as_bytes());
    b.extend_from_slice(MAC_SUFFIX_END);
    b
}

/// A sealed manifest's top-level members in file order, each as its name
/// and the text of its value, and its MAC. (The sample's top-level names
/// occur nowhere deeper, so the first `"name":` is the member.)
fn members(sealed: &[u8]) -> (Vec<(String, String)>, [u8; 32]) {
    let text = std::str::from_utf8(sealed).unwrap();
    let body = &text[..text.len() - (MAC_SUFFIX_START.len() + 64 + MAC_SUFFIX_END.len())];
    let mac = hex::decode(&text[body.len() + MAC_SUFFIX_START.len()..][..64]).unwrap();
    let m: serde_json::Map<String, Value> = serde_json::from_str(text).unwrap();
    let mut starts: Vec<(usize, String)> = m
        .keys()
        .filter(|k| *k != "mac")
        .map(|k| (body.find(&format!("\"{k}\":")).unwrap(), k.clone()))
        .collect();
    starts.sort();
    let ends: Vec<usize> = starts
        .iter()
        .skip(1)
        .map(|(at, _)| at - 1)
        .chain([body.len()])
        .collect();
    let members = starts
        .iter()
        .zip(ends)
        .map(|((at, k), end)| (k.clone(), body[at + k.len() + 3..end].to_string()))
        .collect();
    (members, mac.try_into().unwrap())
}

fn reassemble(members: &[(String, String)], mac: &[u8; 32]) -> Vec<u8> {
    let body: Vec<String> = members
        .iter()
        .map(|(k, v)| format!("\"{k}\":{v}"))
        .collect();
    close(format!("{{{}", body.join(",")).into_bytes(), mac)
}

proptest! {
    #![proptest_config(config())]

    /// Random JSON, as it is or closed like a sealed manifest: no panic,
    /// never a manifest.
    #[test]
    fn random_json_is_refused(v in json(), mac in any::<[u8; 32]>()) {
        let keys = keys();
        let bytes = serde_json::to_vec(&v).unwrap();
        let _ = parse_manifest(&bytes, ID);
        prop_assert!(open_manifest(&bytes, ID, &keys).is_err());
        if v.is_object() {
            prop_assert!(open_manifest(&with_mac_suffix(&v, &mac), ID, &keys).is_err());
        }
    }

    /// A sealed manifest with one member replaced by random JSON, closed
    /// with the original MAC: whatever still parses fails the MAC.
    #[test]
    fn a_replaced_member_fails_the_mac(i in any::<usize>(), v in json()) {
        let keys = keys();
        let good = sealed(&keys);
        let (mut members, mac) = members(&good);
        prop_assert_eq!(&reassemble(&members, &mac), &good);
        let at = i % members.len();
        let v = v.to_string();
        prop_assume!(members[at].1 != v);
        members[at].1 = v;
        prop_assert!(open_manifest(&reassemble(&members, &mac), ID, &keys).is_err());
    }

    /// Any changed byte: refused, and what still parses fails the MAC.
    #[test]
    fn an_edited_manifest_is_refused(es in edits(16)) {
        let keys = keys();
        let good = sealed(&keys);
        let bytes = apply_all(&es, &good);
        prop_assume!(bytes != good);
        let opened = open_manifest(&bytes, ID, &keys);
        prop_assert!(opened.is_err(), "{:?} opened", String::from_utf8_lossy(&bytes));
    }
}
