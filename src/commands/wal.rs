//! `lifeboat wal-push` and `wal-fetch`: PostgreSQL's archive_command and
//! restore_command. Each WAL file becomes one encrypted object at
//! `wal/<timeline>/<file>.lbk` in every destination.
//!
//! wal-push is idempotent: a file already archived with the same content is
//! success, with different content an error (never an overwrite). wal-fetch
//! exits 1 for "not archived" (the end of recovery) and 126 — which
//! PostgreSQL treats as fatal — when a copy fails authentication, so a
//! corrupted segment stops recovery instead of silently shortening history.
//! A segment that is missing while its `.partial` is archived is served
//! from the partial (the end of a streamed or promoted-away timeline).

use super::download::decode_stream;
use super::progress::Progress;
use super::upload::{fan_out, spawn_encoder};
use super::wal_owed::{pay_debts, Bound, Ledger};
use super::Error;
use crate::keys::Keyring;
use crate::location::NamedLocation;
use crate::pipeline::codec::Hasher;
use crate::pipeline::header::Compression;
use crate::store::{Store, StoreError};
use backon::{ExponentialBuilder, Retryable};
use std::io::Read;
use std::path::Path;
use std::sync::Arc;

/// The object key of a WAL file, or None for a name PostgreSQL never archives.
/// Segments (`000000010000000000000003`), history files (`00000002.history`),
/// backup labels (`…0003.00000028.backup`) and partial segments.
pub fn wal_key(name: &str) -> Option<String> {
    crate::walarchive::parse_wal_name(name)?;
    Some(format!("wal/{}/{name}.lbk", &name[..8]))
}

fn bad_name(name: &str) -> Error {
    Error::Usage(format!(
        "{name:?} is not a WAL file name (segment, .history, .backup or .partial)"
    ))
}

fn sha256_of_file(path: &Path) -> Result<String, Error> {
    let mut f = std::fs::File::open(path).map_err(Error::Pipeline)?;
    let mut h = Hasher::default();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf).map_err(Error::Pipeline)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finish().sha256)
}

/// A writer that only hashes: to compare an archived copy with a local file.
struct HashSink(Hasher);
impl std::io::Write for HashSink {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.update(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Size and hash of what a store holds under `key`, read back through the
/// decoder (so the copy is authenticated too); None when absent.
async fn archived_plain_sha(
    store: &Store,
    key: &str,
    keys: &Arc<Keyring>,
) -> Result<Option<String>, Error> {
    match decode_stream(store, key, keys.clone(), HashSink(Hasher::default())).await {
        Ok((sink, _)) => Ok(Some(sink.inner.0.finish().sha256)),
        Err(Error::Store(StoreError::NotFound { .. })) => Ok(None),
        Err(e) => Err(e),
    }
}

pub async fn wal_push(
    path: &Path,
    to: &[NamedLocation],
    keys: Arc<Keyring>,
    compression: Compression,
    bound: Option<&Bound>,
) -> Result<(), Error> {
    if to.is_empty() {
        return Err(Error::Usage(
            "no destination: give --to at least once".into(),
        ));
    }
    let stores = open_stores(to).await?;
    let Some(bound) = bound else {
        let written = archive_file(&stores, path, &keys, compression).await?;
        if written > 0 {
            tracing::info!(file = %path.display(), destinations = written, "archived");
        }
        return Ok(());
    };
    let mut ledger = Ledger::load(&bound.state_dir)?;
    pay_debts(&mut ledger, &stores).await;
    let pushed = push_bounded(&stores, path, &keys, compression, bound, &mut ledger).await;
    ledger.save(&bound.state_dir)?;
    pushed
}

/// A destination that did not take the file (as opposed to a file that
/// must not be archived, such as different content under the same name).
fn is_destination_fault(e: &Error) -> bool {
    matches!(e, Error::Store(_) | Error::Destinations { .. })
}

/// Every destination at once; if one fails, each on its own: a destination
/// failing for less than the bound fails the push (PostgreSQL retries), one
/// failing for longer is owed the file.
async fn push_bounded(
    stores: &[Store],
    path: &Path,
    keys: &Arc<Keyring>,
    compression: Compression,
    bound: &Bound,
    ledger: &mut Ledger,
) -> Result<(), Error> {
    match archive_file(stores, path, keys, compression).await {
        Ok(_) => {
            stores.iter().for_each(|s| ledger.succeeded(s.name()));
            return Ok(());
        }
        Err(e) if !is_destination_fault(&e) => return Err(e),
        Err(_) => {}
    }
    let (name, key) = wal_name(path)?;
    let now = chrono::Utc::now();
    let (mut took, mut blocking, mut lagging) = (0, None, Vec::new());
    for (i, s) in stores.iter().enumerate() {
        match archive_file(&stores[i..=i], path, keys, compression).await {
            Ok(_) => {
                ledger.succeeded(s.name());
                took += 1;
            }
            Err(e) if is_destination_fault(&e) => {
                if ledger.failed(s.name(), now, bound.max_block) {
                    lagging.push((s, e));
                } else {
                    blocking.get_or_insert(e);
                }
            }
            Err(e) => return Err(e),
        }
    }
    if let Some(e) = blocking {
        return Err(e);
    }
    if took == 0 {
        return Err(lagging.remove(0).1);
    }
    for (s, e) in lagging {
        ledger.owe(s.name(), &key);
        tracing::error!(dest = %s.label(), file = %name, error = %e,
            "archived without this destination: it has been failing for longer than --max-block; it is owed the file and lags until it answers");
    }
    Ok(())
}

pub async fn open_stores(urls: &[NamedLocation]) -> Result<Vec<Store>, Error> {
    let mut stores = Vec::new();
    for url in urls {
        stores.push(Store::open(url).await?);
    }
    Ok(stores)
}

/// The WAL file name of `path`, checked.
fn wal_name(path: &Path) -> Result<(&str, String), Error> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    let key = wal_key(name).ok_or_else(|| bad_name(name))?;
    Ok((name, key))
}

/// Archives one finished WAL file in every store that lacks it: the same
/// content already there is success, different content an error. Returns
/// how many stores received it now.
pub async fn archive_file(
    stores: &[Store],
    path: &Path,
    keys: &Arc<Keyring>,
    compression: Compression,
) -> Result<usize, Error> {
    let (name, key) = wal_name(path)?;
    let local = sha256_of_file(path)?;
    let mut missing = Vec::new();
    for (i, s) in stores.iter().enumerate() {
        let archived = match archived_plain_sha(s, &key, keys).await {
            // Whoever wrote it did not hold the key (or it was damaged): it
            // is not this file. Refusing would stall PostgreSQL's archiver
            // until the primary's disk fills, so keep it aside and archive.
            Err(e @ (Error::Object { .. } | Error::Mismatch { .. })) => {
                let aside = quarantine(s, &key).await?;
                tracing::error!(dest = %s.label(), file = %name, kept_as = %aside, error = %e,
                    "an object that does not authenticate sat at this WAL file's name; moved it aside and archiving the real file");
                None
            }
            other => other?,
        };
        match archived {
            None => missing.push(i),
            Some(sha) if sha == local => {
                tracing::info!(dest = %s.label(), file = %name, "already archived with the same content")
            }
            // A promotion archives the old timeline's last segment as
            // `.partial`; a second promotion from the same point (another
            // restore) has different bytes. Refusing would stall PostgreSQL's
            // archiver forever, and PostgreSQL never asks for `.partial`
            // files back: keep the first copy and go on.
            Some(_) if name.ends_with(".partial") => {
                tracing::warn!(dest = %s.label(), file = %name,
                    "a different copy of this partial segment is archived; keeping it")
            }
            Some(_) => {
                return Err(Error::Usage(format!(
                "{}: {key} is already archived with different content; refusing to overwrite it",
                s.label()
            )))
            }
        }
    }
    if missing.is_empty() {
        return Ok(0);
    }
    upload(stores, &missing, path, &key, keys, compression).await?;
    Ok(missing.len())
}

/// Copies the object at `key` to `quarantine/<key>.<time>` in the same store
/// (for whoever investigates) before it is overwritten; returns the new key.
async fn quarantine(store: &Store, key: &str) -> Result<String, Error> {
    let aside = format!(
        "{QUARANTINE}{key}.{}",
        chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ")
    );
    store.copy_from(store, key, &aside).await?;
    Ok(aside)
}

/// Where wal-push keeps objects it found in its way and could not
/// authenticate; nothing lifeboat reads or prunes looks there.
pub const QUARANTINE: &str = "quarantine/";

/// Writes `path` as `<name>.partial` in every store, replacing an older copy:
/// partial segments are the one kind of object that is ever overwritten.
pub async fn replace_partial(
    stores: &[Store],
    path: &Path,
    keys: &Arc<Keyring>,
    compression: Compression,
) -> Result<(), Error> {
    let (name, key) = wal_name(path)?;
    if !name.ends_with(".partial") {
        return Err(bad_name(name));
    }
    let all: Vec<usize> = (0..stores.len()).collect();
    upload(stores, &all, path, &key, keys, compression).await
}

/// Encodes `path` once and writes it to the stores in `to`.
async fn upload(
    stores: &[Store],
    to: &[usize],
    path: &Path,
    key: &str,
    keys: &Arc<Keyring>,
    compression: Compression,
) -> Result<(), Error> {
    let file = std::fs::File::open(path).map_err(Error::Pipeline)?;
    let progress = Progress::start(format!("wal-push {key}"));
    let (rx, encoder) = spawn_encoder(
        file,
        keys.primary(),
        key,
        compression,
        false,
        progress.clone(),
    )
    .map_err(Error::Pipeline)?;
    let (writers, failed) = fan_out(stores, to, key, rx, true).await;
    let encoded = encoder
        .await
        .map_err(|e| Error::Pipeline(std::io::Error::other(e)))?;
    progress.done();
    if let Some((i, e)) = failed.into_iter().next() {
        for (_, w) in writers {
            w.abort().await;
        }
        return Err(Error::Destinations {
            failed: format!("{}: {e}", stores[i].name()),
        });
    }
    if let Err(e) = encoded {
        for (_, w) in writers {
            w.abort().await;
        }
        return Err(Error::Pipeline(e));
    }
    for (i, w) in writers {
        w.finish().await.map_err(|e| Error::Destinations {
            failed: format!("{}: {e}", stores[i].name()),
        })?;
    }
    Ok(())
}

/// Outcome of wal-fetch, mapped to PostgreSQL's exit-code protocol by main.
#[derive(Debug)]
pub enum Fetched {
    Restored,
    NotArchived,
}

/// One attempt at one destination: true when `tmp` holds the authenticated
/// file, false when the destination does not have it. The object's size is
/// what was read (the stream authenticates its own end), not a listing's.
async fn fetch_from(
    url: &NamedLocation,
    key: &str,
    tmp: &Path,
    keys: &Arc<Keyring>,
) -> Result<bool, Error> {
    let store = Store::open(url).await?;
    let file = std::fs::File::create(tmp).map_err(Error::Pipeline)?;
    match decode_stream(&store, key, keys.clone(), file).await {
        Ok((file, _)) => {
            file.inner.sync_all().map_err(Error::Pipeline)?;
            Ok(true)
        }
        Err(Error::Store(StoreError::NotFound { .. })) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Faults that asking again may cure: the store's, not the bytes' (an
/// object that fails authentication fails again).
fn is_transient(e: &Error) -> bool {
    matches!(
        e,
        Error::Store(StoreError::Op { .. } | StoreError::Setup { .. })
    )
}

/// Two more attempts, 1 s and 3 s later, on top of the store's own retries
/// of each request: a restarting endpoint or a connection that keeps
/// breaking, while recovery waits for this file.
fn fetch_backoff() -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_min_delay(std::time::Duration::from_secs(1))
        .with_factor(3.0)
        .with_max_times(2)
        .with_jitter()
}

/// Is `name` a complete segment (not a history, backup label or partial)?
fn is_segment(name: &str) -> bool {
    name.len() == 24 && name.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Restores `name`. A segment that is not archived but whose `.partial` is
/// (the last, incomplete segment of a timeline: shipped by streaming, or left
/// by a promotion) is served from the partial: that is how recovery reaches
/// the end of streamed history. Any fault with the complete segment is an
/// error, never a reason to fall back to the partial.
pub async fn wal_fetch(
    name: &str,
    dest: &Path,
    from: &[NamedLocation],
    keys: Arc<Keyring>,
) -> Result<Fetched, Error> {
    let key = wal_key(name).ok_or_else(|| bad_name(name))?;
    if let Fetched::Restored = fetch_key(name, &key, dest, from, &keys).await? {
        return Ok(Fetched::Restored);
    }
    if !is_segment(name) {
        return Ok(Fetched::NotArchived);
    }
    let partial = format!("{name}.partial");
    let key = wal_key(&partial).ok_or_else(|| bad_name(&partial))?;
    let fetched = fetch_key(&partial, &key, dest, from, &keys).await?;
    if let Fetched::Restored = fetched {
        tracing::info!(file = %name, "served from the archived partial segment");
    }
    Ok(fetched)
}

/// Restores the object `key` from the first destination that has it intact.
/// A destination that fails for a reason that may pass (unreachable,
/// throttled, a broken connection) is asked again before the next one:
/// PostgreSQL takes any failure here as the end of recovery or, with exit
/// 126, as fatal, so a blip must not decide either.
async fn fetch_key(
    name: &str,
    key: &str,
    dest: &Path,
    from: &[NamedLocation],
    keys: &Arc<Keyring>,
) -> Result<Fetched, Error> {
    let tmp = dest.with_extension("lifeboat-fetch");
    let mut faults = Vec::new();
    for url in from {
        let attempt = || fetch_from(url, key, &tmp, keys);
        let fetched = attempt
            .retry(fetch_backoff())
            .when(is_transient)
            .notify(|e, wait| tracing::warn!(file = %name, from = %url.label(), error = %e, ?wait, "fetching WAL failed; trying again"))
            .await;
        match fetched {
            Ok(true) => {
                std::fs::rename(&tmp, dest).map_err(Error::Pipeline)?;
                tracing::info!(file = %name, from = %url.label(), "restored from the archive");
                return Ok(Fetched::Restored);
            }
            Ok(false) => {}
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                tracing::error!(file = %name, from = %url.label(), error = %e, "cannot restore this WAL file from this destination");
                faults.push(e.to_string());
            }
        }
    }
    if faults.is_empty() {
        Ok(Fetched::NotArchived)
    } else {
        Err(Error::Store(StoreError::Op {
            dest: from
                .iter()
                .map(NamedLocation::label)
                .collect::<Vec<_>>()
                .join(", "),
            op: "fetch WAL",
            key: key.to_string(),
            message: faults.join("; "),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wal_names_map_to_keys_by_timeline() {
        assert_eq!(
            wal_key("000000010000000000000003").unwrap(),
            "wal/00000001/000000010000000000000003.lbk"
        );
        assert_eq!(
            wal_key("00000002.history").unwrap(),
            "wal/00000002/00000002.history.lbk"
        );
        assert!(wal_key("000000010000000000000003.00000028.backup").is_some());
        assert!(wal_key("000000010000000000000003.partial").is_some());
        for bad in [
            "",
            "pg_wal",
            "00000001000000000000000",
            "0000000100000000000000zz",
            "../../etc/passwd",
            "00000001.history.x",
        ] {
            assert!(wal_key(bad).is_none(), "{bad}");
        }
    }
}
