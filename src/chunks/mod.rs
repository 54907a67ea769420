//! The content-addressed chunk store (storage format version 2,
//! docs/FORMAT.md §6–§9): what file backups are made of.
//!
//! Data moves through it like this: a source's byte streams are cut into
//! content-defined chunks ([`chunker`]); each chunk is named by an HMAC of
//! its plaintext under a key derived from the master key ([`ChunkKeys`]), so
//! equal content is stored once per destination and a bucket reader cannot
//! confirm a guessed file; a chunk not yet in the destination's [`index`] is
//! compressed (when that shrinks it), sealed and appended to a pack
//! ([`pack`]) of tens of MiB, each pack ending with its own sealed list of
//! what it holds. A run writes one index object listing its packs'
//! contents; the index can always be rebuilt from the packs. The backup's
//! listing — every entry with its metadata and chunk ids — is a [`tree`]
//! object, and the manifest, written last and MAC'd, commits it.
//! [`repo`] is the IO: one store per policy and destination.

pub mod chunker;
pub mod feed;
pub mod index;
pub mod pack;
pub mod repo;
pub mod sink;
pub mod tree;
pub mod tree_io;

use crate::keys::MasterKey;
use ring::hmac;

/// Where packs live under a destination's root.
pub const PACKS: &str = "chunks/packs/";
/// Where index objects live under a destination's root.
pub const INDEXES: &str = "chunks/index/";

/// A chunk's id: HMAC-SHA-256 of its plaintext under the chunk id key.
pub type ChunkId = [u8; 32];

/// The keys of the chunk store, derived from one master key: the same on
/// every destination, so one tree serves them all (a master key rotation
/// starts new ids: the first backup after it stores everything again).
pub struct ChunkKeys {
    id_key: hmac::Key,
    /// Seeds the chunker's gear table: chunk boundaries, and so the sizes a
    /// bucket reader sees, depend on the key too.
    pub seed: u64,
    /// The master key they come from (recorded in the manifest).
    pub key_id: String,
}

impl ChunkKeys {
    pub fn new(master: &MasterKey) -> Self {
        let id_key = master.derive(b"lifeboat chunk id v2");
        let seed = master.derive(b"lifeboat chunk gear seed v2");
        Self {
            id_key: hmac::Key::new(hmac::HMAC_SHA256, &id_key),
            seed: u64::from_be_bytes(seed[..8].try_into().expect("8 bytes")),
            key_id: master.id.clone(),
        }
    }

    pub fn id(&self, plain: &[u8]) -> ChunkId {
        hmac::sign(&self.id_key, plain)
            .as_ref()
            .try_into()
            .expect("32-byte HMAC-SHA-256")
    }
}

/// Deterministic bytes with the entropy of random data (xorshift64*; a
/// non-zero `state`), for tests and benchmarks.
#[doc(hidden)]
pub fn noise(len: usize, mut state: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        out.extend_from_slice(&state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// The short form of an id in messages.
pub fn short(id: &ChunkId) -> String {
    hex::encode(&id[..8])
}

#[derive(Debug, thiserror::Error)]
pub enum ChunkError {
    #[error("pack {pack}: {problem}")]
    Pack { pack: String, problem: String },
    #[error(
        "chunk {chunk} is in no pack of this destination (a pack was deleted or the index edited)"
    )]
    Missing { chunk: String },
    #[error("tree of backup {backup}: {problem}")]
    Tree { backup: String, problem: String },
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Decode(#[from] crate::pipeline::codec::DecodeError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}
