//! Streaming one stored object back: download → hash → open → decompress →
//! a sink (pg_restore's stdin, or nothing for `verify`), with the manifest's
//! size and SHA-256 checked at the end.

use super::Error;
use crate::catalog::ObjectEntry;
use crate::keys::Keyring;
use crate::pipeline::codec::{Counting, Digest, ObjectDecoder};
use crate::store::Store;
use bytes::Bytes;
use std::io::Write;
use std::sync::Arc;
use tokio::sync::mpsc;

/// Decodes `entry` from `store` into `sink`. Returns the sink and the
/// plaintext size. On error the sink may have received authenticated
/// plaintext of earlier segments only; the caller decides what that means.
pub async fn decode_object<W: Write + Send + 'static>(
    store: &Store,
    entry: &ObjectEntry,
    keys: Arc<Keyring>,
    sink: W,
) -> Result<(W, u64), Error> {
    decode_checked(store, entry, keys, sink, Output::Plain).await
}

/// What a decoder writes to its sink.
#[derive(Clone, Copy, PartialEq)]
pub enum Output {
    /// Authenticated and decompressed: the object's plaintext.
    Plain,
    /// Authenticated, still compressed: the `len` bytes of the zstd stream
    /// (a framed archive's, whose loaders decompress their own frames).
    Compressed { len: u64 },
}

/// As [`decode_object`], with the sink getting `output`.
pub async fn decode_checked<W: Write + Send + 'static>(
    store: &Store,
    entry: &ObjectEntry,
    keys: Arc<Keyring>,
    sink: W,
    output: Output,
) -> Result<(W, u64), Error> {
    let (sink, digest) = decode_as(store, &entry.key, keys, sink, output).await?;
    // An empty `sha256` means no hash was recorded; the size always is.
    if digest.size != entry.size || (!entry.sha256.is_empty() && digest.sha256 != entry.sha256) {
        return Err(Error::Mismatch {
            dest: store.label().to_string(),
            key: entry.key.clone(),
            expected: format!("{} bytes, sha256 {}", entry.size, entry.sha256),
            found: format!("{} bytes, sha256 {}", digest.size, digest.sha256),
        });
    }
    // What came out must be what went in, byte for byte in number too.
    let expected = match output {
        Output::Plain => entry.plain_size,
        Output::Compressed { len } => len,
    };
    if sink.count != expected {
        return Err(Error::Mismatch {
            dest: store.label().to_string(),
            key: entry.key.clone(),
            expected: format!("{expected} bytes decoded"),
            found: format!("{} bytes decoded", sink.count),
        });
    }
    Ok((sink.inner, sink.count))
}

/// Decodes the object `key` as it is stored, with no manifest to compare
/// it to: the stream authenticates every segment and its end on its own
/// (WAL objects). Returns the flushed sink, counting the plaintext, and
/// the stored object's size and hash.
pub async fn decode_stream<W: Write + Send + 'static>(
    store: &Store,
    key: &str,
    keys: Arc<Keyring>,
    sink: W,
) -> Result<(Counting<W>, Digest), Error> {
    decode_as(store, key, keys, sink, Output::Plain).await
}

async fn decode_as<W: Write + Send + 'static>(
    store: &Store,
    key: &str,
    keys: Arc<Keyring>,
    sink: W,
    output: Output,
) -> Result<(Counting<W>, Digest), Error> {
    let dest = store.label().to_string();
    let (tx, mut rx) = mpsc::channel::<Bytes>(4);
    let name = key.to_string();
    let worker = tokio::task::spawn_blocking(move || {
        let sink = Counting {
            inner: sink,
            count: 0,
        };
        let mut dec = match output {
            Output::Plain => ObjectDecoder::new(&keys, Some(&name), sink),
            Output::Compressed { .. } => ObjectDecoder::compressed(&keys, Some(&name), sink),
        };
        while let Some(chunk) = rx.blocking_recv() {
            dec.push(&chunk)?;
        }
        dec.finish()
    });
    let fed: Result<(), Error> = async {
        let mut reader = store.reader(key).await?;
        while let Some(chunk) = reader.next().await? {
            if tx.send(chunk).await.is_err() {
                break; // the decoder stopped; its error says why
            }
        }
        Ok(())
    }
    .await;
    drop(tx);
    let decoded = worker
        .await
        .map_err(|e| Error::Pipeline(std::io::Error::other(e)))?;
    fed?;
    let (mut sink, digest) = decoded.map_err(|source| Error::Object {
        dest,
        key: key.to_string(),
        source,
    })?;
    sink.flush().map_err(Error::Pipeline)?;
    Ok((sink, digest))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::location::NamedLocation;
    use crate::pipeline::codec::ObjectEncoder;
    use crate::pipeline::header::Compression;

    /// The manifest says how many bytes the object decodes to; a stream
    /// that authenticates but decodes to another length is refused.
    #[tokio::test]
    async fn the_decoded_size_must_be_the_manifests() {
        let dir = tempfile::tempdir().unwrap();
        let keys = Arc::new(
            Keyring::parse(
                &crate::keys::new_key_line("k").unwrap(),
                std::path::Path::new("k"),
            )
            .unwrap(),
        );
        let url: NamedLocation = format!("file://{}", dir.path().display()).parse().unwrap();
        let store = Store::open(&url).await.unwrap();
        let plain = b"forty-two bytes of plaintext, give or take".to_vec();
        let mut enc =
            ObjectEncoder::new(Vec::new(), keys.primary(), "o.lbk", Compression::Zstd).unwrap();
        enc.write_all(&plain).unwrap();
        let stored = enc.finish().unwrap();
        store.put("o.lbk", stored.clone().into()).await.unwrap();
        let mut entry = ObjectEntry {
            key: "o.lbk".into(),
            role: "database".into(),
            database: None,
            size: stored.len() as u64,
            sha256: String::new(),
            plain_size: plain.len() as u64,
            frames: None,
        };
        let (out, n) = decode_object(&store, &entry, keys.clone(), Vec::new())
            .await
            .unwrap();
        assert_eq!((out, n), (plain.clone(), plain.len() as u64));
        entry.plain_size += 1;
        let err = decode_object(&store, &entry, keys, Vec::new())
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Mismatch { .. }), "{err}");
    }
}
