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
    let (sink, digest) = decode_stream(store, &entry.key, keys, sink).await?;
    // An empty `sha256` means no hash was recorded; the size always is.
    if digest.size != entry.size || (!entry.sha256.is_empty() && digest.sha256 != entry.sha256) {
        return Err(Error::Mismatch {
            dest: store.label().to_string(),
            key: entry.key.clone(),
            expected: format!("{} bytes, sha256 {}", entry.size, entry.sha256),
            found: format!("{} bytes, sha256 {}", digest.size, digest.sha256),
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
    let dest = store.label().to_string();
    let (tx, mut rx) = mpsc::channel::<Bytes>(4);
    let name = key.to_string();
    let worker = tokio::task::spawn_blocking(move || {
        let mut dec = ObjectDecoder::new(
            &keys,
            Some(&name),
            Counting {
                inner: sink,
                count: 0,
            },
        );
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
