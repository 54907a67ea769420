//! Test-only: the edits a hostile store or a broken writer can make to stored
//! bytes, as proptest strategies, for the decoders' property tests (issue 13,
//! item 7). Raise the case count with `PROPTEST_CASES=10000 cargo test --lib`.

use proptest::prelude::*;

/// Cases per property by default: enough to find the shallow defects every
/// run, few enough that the whole set takes seconds in a debug build.
pub const CASES: u32 = 256;

/// The configuration of every decoder property: [`CASES`] unless
/// `PROPTEST_CASES` says otherwise.
pub fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(CASES);
    ProptestConfig {
        // A failure found is kept as a named regression test beside the
        // property, not in a seed file.
        failure_persistence: None,
        ..ProptestConfig::with_cases(cases)
    }
}

/// One change to a byte string. Positions are taken modulo its length.
#[derive(Debug, Clone)]
pub enum Edit {
    /// xor one byte with a non-zero mask
    Flip(usize, u8),
    /// xor the byte `n` from the end: formats put trailers there (a
    /// manifest's MAC, an object's final segment)
    FlipTail(usize, u8),
    /// overwrite one byte
    Set(usize, u8),
    /// keep only the first n bytes (n < len)
    Truncate(usize),
    /// append bytes
    Extend(Vec<u8>),
    Insert(usize, u8),
    Remove(usize),
}

/// Any edit; `Set` is also aimed at the first `fields` bytes, where a
/// format's fixed fields (versions, lengths, ids) are.
pub fn edit(fields: usize) -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<usize>(), mask()).prop_map(|(i, m)| Edit::Flip(i, m)),
        (0..80usize, mask()).prop_map(|(i, m)| Edit::FlipTail(i, m)),
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Edit::Set(i, b)),
        (0..fields.max(1), any::<u8>()).prop_map(|(i, b)| Edit::Set(i, b)),
        any::<usize>().prop_map(Edit::Truncate),
        proptest::collection::vec(any::<u8>(), 1..64).prop_map(Edit::Extend),
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Edit::Insert(i, b)),
        any::<usize>().prop_map(Edit::Remove),
    ]
}

/// Bit 5 turns ASCII letters' case; the lowest and highest bits.
fn mask() -> impl Strategy<Value = u8> {
    prop_oneof![Just(0x20), Just(0x01), Just(0x80), 1..=255u8]
}

/// `bytes` with `e` applied (it may equal `bytes`, e.g. a Set to the same value).
pub fn apply(e: &Edit, bytes: &[u8]) -> Vec<u8> {
    let mut b = bytes.to_vec();
    let at = |i: usize| i % bytes.len().max(1);
    match e {
        Edit::Flip(i, m) if !b.is_empty() => b[at(*i)] ^= m,
        Edit::FlipTail(i, m) if !b.is_empty() => b[bytes.len() - 1 - at(*i)] ^= m,
        Edit::Set(i, v) if !b.is_empty() => b[at(*i)] = *v,
        Edit::Truncate(n) => b.truncate(at(*n)),
        Edit::Extend(more) => b.extend_from_slice(more),
        Edit::Insert(i, v) => b.insert(i % (bytes.len() + 1), *v),
        Edit::Remove(i) if !b.is_empty() => {
            b.remove(at(*i));
        }
        _ => {}
    }
    b
}

/// One to three edits in a row.
pub fn edits(fields: usize) -> impl Strategy<Value = Vec<Edit>> {
    proptest::collection::vec(edit(fields), 1..=3)
}

pub fn apply_all(es: &[Edit], bytes: &[u8]) -> Vec<u8> {
    es.iter().fold(bytes.to_vec(), |b, e| apply(e, &b))
}
