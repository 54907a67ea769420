//! `lifeboat wal-stream`: pg_receivewal on a replication slot writes WAL
//! into a local spool; this loop ships each completed segment to every
//! destination (as wal-push does, idempotently), deletes it from the spool
//! once every destination has it, and ships the segment being received as
//! `<segment>.partial` at least every `--max-wal-delay`.
//!
//! Restart-safe by construction: the slot keeps the server's WAL until
//! pg_receivewal has flushed it to the spool, and the spool keeps it until
//! every destination has it. pg_receivewal is restarted with back-off when
//! it dies; SIGTERM stops it, ships what is left and exits.

use super::wal::{archive_file, open_stores, replace_partial};
use super::wal_spool::{self as spool, PartialShipped, SpoolFile, SpoolKind, Status};
use super::Error;
use crate::keys::Keyring;
use crate::location::NamedLocation;
use crate::pipeline::header::Compression;
use crate::source::postgres::majors::Rule;
use crate::source::postgres::{PassFile, PgConn, PgError};
use crate::store::Store;
use chrono::{DateTime, Utc};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncBufReadExt;
use tokio::sync::watch;

pub struct StreamOptions {
    pub conn: PgConn,
    /// Database asked for the server's major (which pg_receivewal runs).
    pub maintenance_db: String,
    pub slot: String,
    pub spool: PathBuf,
    pub to: Vec<NamedLocation>,
    pub keys: Arc<Keyring>,
    pub compression: Compression,
    pub max_delay: chrono::Duration,
    pub status_file: Option<PathBuf>,
    /// Serve `/status`, `/metrics` and `/healthz` here.
    pub http_addr: Option<std::net::SocketAddr>,
}

/// A replication slot name as PostgreSQL accepts it.
pub fn valid_slot(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

pub async fn wal_stream(o: StreamOptions) -> Result<(), Error> {
    if !valid_slot(&o.slot) {
        return Err(Error::Usage(format!(
            "--slot {:?}: a slot name is 1-63 of a-z, 0-9 and _",
            o.slot
        )));
    }
    if o.max_delay <= chrono::Duration::zero() {
        return Err(Error::Usage("--max-wal-delay must be above zero".into()));
    }
    std::fs::create_dir_all(&o.spool)
        .map_err(|e| Error::Usage(format!("--spool {}: {e}", o.spool.display())))?;
    let stores = open_stores(&o.to).await?;
    let (status_tx, status_rx) = watch::channel(Status::default());
    if let Some(addr) = o.http_addr {
        let server = super::archiver_http::bind(addr, status_rx)
            .await
            .map_err(|e| Error::Usage(format!("--http-addr {addr}: {e}")))?;
        tokio::spawn(async move {
            if let Err(e) = server.await {
                tracing::error!(error = %e, "the status server stopped");
            }
        });
    }
    let passfile = Arc::new(o.conn.passfile()?);
    let (stop_tx, stop_rx) = watch::channel(false);
    let receiver = tokio::spawn(supervise(
        Server {
            conn: o.conn.clone(),
            db: o.maintenance_db.clone(),
        },
        passfile.clone(),
        o.slot.clone(),
        o.spool.clone(),
        stop_rx,
    ));
    let mut shipper = Shipper {
        stores,
        keys: o.keys.clone(),
        compression: o.compression,
        spool: o.spool.clone(),
        max_delay: o.max_delay,
        status_file: o.status_file.clone(),
        status: status_tx,
        last_partial: None,
        last_segment: None,
        last_shipped_at: None,
        pending_since: None,
    };
    tracing::info!(spool = %o.spool.display(), slot = %o.slot, destinations = o.to.len(),
        max_wal_delay_s = o.max_delay.num_milliseconds() as f64 / 1000.0, "wal-stream started");
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(Error::Pipeline)?;
    let tick = spool::tick(o.max_delay);
    loop {
        shipper.pass(false).await;
        tokio::select! {
            _ = tokio::time::sleep(tick) => {}
            _ = term.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    tracing::info!("stopping: pg_receivewal first, then shipping what it wrote");
    let _ = stop_tx.send(true);
    let _ = receiver.await;
    shipper.pass(true).await;
    drop(passfile);
    tracing::info!("wal-stream stopped");
    Ok(())
}

/// The server WAL comes from, and the database to ask it its major on.
struct Server {
    conn: PgConn,
    db: String,
}

/// Runs pg_receivewal until told to stop, restarting it with back-off.
async fn supervise(
    server: Server,
    passfile: Arc<Option<PassFile>>,
    slot: String,
    spool: PathBuf,
    mut stop: watch::Receiver<bool>,
) {
    let mut failures = 0u32;
    while !*stop.borrow() {
        let started = std::time::Instant::now();
        let result = receive_once(&server, (*passfile).as_ref(), &slot, &spool, &mut stop).await;
        if *stop.borrow() {
            break;
        }
        if started.elapsed() > Duration::from_secs(60) {
            failures = 0;
        }
        let wait = spool::backoff(failures);
        failures += 1;
        match result {
            Ok(status) => {
                tracing::error!(%status, restart_in_s = wait.as_secs(), "pg_receivewal exited; restarting it")
            }
            Err(e) => {
                tracing::error!(error = %e, restart_in_s = wait.as_secs(), "pg_receivewal failed; restarting it")
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.changed() => {}
        }
    }
}

/// Creates the slot when missing, then runs pg_receivewal until it exits or
/// `stop` turns true (then it gets SIGTERM and is waited for).
async fn receive_once(
    server: &Server,
    passfile: Option<&PassFile>,
    slot: &str,
    spool: &Path,
    stop: &mut watch::Receiver<bool>,
) -> Result<String, Error> {
    // pg_receivewal of the server's own major, asked at every (re)start so
    // that a server upgraded in place is followed.
    let conn = &server
        .conn
        .for_server(&server.db, "pg_receivewal", Rule::Exactly)
        .await?;
    let mut create = conn.command("pg_receivewal", passfile);
    create.args([
        "--create-slot",
        "--if-not-exists",
        "--no-password",
        "--slot",
        slot,
    ]);
    let out = tokio::process::Command::from(create)
        .output()
        .await
        .map_err(|source| spawn_err("pg_receivewal", source))?;
    if !out.status.success() {
        return Err(Error::Tool {
            tool: "pg_receivewal",
            what: format!("creating slot {slot}"),
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    let mut cmd = conn.command("pg_receivewal", passfile);
    cmd.args(["--no-loop", "--no-password", "--slot", slot, "--directory"])
        .arg(spool)
        .stdout(Stdio::null());
    stop_leftover_receiver(spool).await;
    let mut child = tokio::process::Command::from(cmd)
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| spawn_err("pg_receivewal", source))?;
    tracing::info!(pid = child.id(), slot, "pg_receivewal running");
    if let Some(pid) = child.id() {
        let _ = std::fs::write(spool.join(PIDFILE), pid.to_string());
    }
    if let Some(err) = child.stderr.take() {
        tokio::spawn(async move {
            let mut lines = tokio::io::BufReader::new(err).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                tracing::warn!(target: "pg_receivewal", "pg_receivewal: {line}");
            }
        });
    }
    let status = tokio::select! {
        s = child.wait() => s,
        _ = stop.changed() => {
            if let Some(pid) = child.id() {
                // The signal pg_receivewal handles by flushing and exiting.
                signal(&pid.to_string(), "-TERM");
            }
            match tokio::time::timeout(Duration::from_secs(10), child.wait()).await {
                Ok(s) => s,
                Err(_) => {
                    tracing::warn!("pg_receivewal ignored SIGTERM for 10 s; killing it");
                    let _ = child.start_kill();
                    child.wait().await
                }
            }
        }
    }
    .map_err(Error::Pipeline)?;
    Ok(status.to_string())
}

/// Where the spool records its pg_receivewal, so that a wal-stream started
/// after a kill -9 of the last one (which leaves its child running, holding
/// the slot) can stop that child first.
const PIDFILE: &str = "pg_receivewal.pid";

async fn stop_leftover_receiver(spool: &Path) {
    let Ok(pid) = std::fs::read_to_string(spool.join(PIDFILE)) else {
        return;
    };
    let pid = pid.trim();
    // Only if that process is still a pg_receivewal writing into this spool
    // (the id may have been reused by anything else).
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    if !is_receiver_for(&cmdline, spool) {
        return;
    }
    tracing::warn!(
        pid,
        "a pg_receivewal from an earlier run still writes into the spool; stopping it"
    );
    signal(pid, "-TERM");
    for _ in 0..100 {
        if !Path::new(&format!("/proc/{pid}")).exists() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Still holding the slot: the new pg_receivewal could never start.
    tracing::warn!(
        pid,
        "the earlier pg_receivewal ignored SIGTERM for 10 s; killing it"
    );
    signal(pid, "-KILL");
}

/// Sends `sig` to `pid` with kill(1) (this crate has no unsafe code); a
/// process that is already gone is no error.
fn signal(pid: &str, sig: &str) {
    let _ = std::process::Command::new("kill").args([sig, pid]).status();
}

/// Whether a /proc cmdline (NUL-separated) is pg_receivewal on `spool`.
fn is_receiver_for(cmdline: &[u8], spool: &Path) -> bool {
    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    let spool = spool.as_os_str().as_encoded_bytes();
    args.first().is_some_and(|a| a.ends_with(b"pg_receivewal"))
        && args
            .windows(2)
            .any(|w| w[0] == b"--directory" && w[1] == spool)
}

fn spawn_err(tool: &str, source: std::io::Error) -> Error {
    Error::Pg(PgError::Spawn {
        tool: tool.into(),
        source,
    })
}

/// The shipping side: what it last shipped, for the plan and the status.
struct Shipper {
    stores: Vec<Store>,
    keys: Arc<Keyring>,
    compression: Compression,
    spool: PathBuf,
    max_delay: chrono::Duration,
    status_file: Option<PathBuf>,
    status: watch::Sender<Status>,
    last_partial: Option<PartialShipped>,
    last_segment: Option<String>,
    last_shipped_at: Option<DateTime<Utc>>,
    pending_since: Option<DateTime<Utc>>,
}

impl Shipper {
    /// One look at the spool: archive completed files, ship the partial if
    /// due (or, with `flush`, whenever it changed), write the status.
    async fn pass(&mut self, flush: bool) {
        let files = match list_spool(&self.spool) {
            Ok(f) => f,
            Err(e) => {
                tracing::error!(spool = %self.spool.display(), error = %e, "cannot read the spool");
                return;
            }
        };
        let now = Utc::now();
        if spool::has_pending(&files, self.last_partial.as_ref()) {
            self.pending_since.get_or_insert(now);
        }
        let partial_waiting = files.iter().any(|f| {
            matches!(spool::classify(&f.name), SpoolKind::Partial { .. })
                && spool::partial_changed(f, self.last_partial.as_ref())
        });
        let delay = if flush {
            chrono::Duration::zero()
        } else {
            self.max_delay
        };
        let plan = spool::plan(&files, self.last_partial.as_ref(), now, delay);
        let mut all_done = true;
        for name in &plan.complete {
            all_done &= self.ship_complete(name).await;
        }
        if let Some(name) = &plan.partial {
            if let Some(f) = files.iter().find(|f| &f.name == name) {
                all_done &= self.ship_partial(f).await;
            }
        }
        let rest = list_spool(&self.spool).unwrap_or_default();
        let covered = all_done && (plan.partial.is_some() || !partial_waiting);
        self.pending_since = spool::next_pending_since(
            self.pending_since,
            covered,
            spool::has_pending(&rest, self.last_partial.as_ref()),
            now,
        );
        let partial_bytes = rest
            .iter()
            .filter(|f| matches!(spool::classify(&f.name), SpoolKind::Partial { .. }))
            .map(|f| f.written)
            .max()
            .unwrap_or(0);
        self.write_status(partial_bytes);
    }

    async fn ship_complete(&mut self, name: &str) -> bool {
        let path = self.spool.join(name);
        let completed = std::fs::metadata(&path)
            .and_then(|m| m.modified())
            .map(DateTime::<Utc>::from)
            .unwrap_or_else(|_| Utc::now());
        if let Err(e) = archive_file(&self.stores, &path, &self.keys, self.compression).await {
            tracing::error!(file = name, error = %e, "archiving failed; retrying on the next pass");
            return false;
        }
        if let Some(partial) = spool::superseded_partial(name) {
            let key = super::wal::wal_key(&partial).expect("a segment's partial has a key");
            for s in &self.stores {
                if let Err(e) = s.delete(std::slice::from_ref(&key)).await {
                    // Harmless: recovery prefers the whole segment.
                    tracing::warn!(dest = %s.label(), key, error = %e, "could not delete the superseded partial copy");
                }
            }
        }
        if let Err(e) = std::fs::remove_file(&path) {
            tracing::warn!(file = name, error = %e, "archived but not removed from the spool");
        }
        let now = Utc::now();
        let lag = (now - completed).num_milliseconds().max(0) as f64 / 1000.0;
        tracing::info!(
            segment = name,
            lag_s = lag,
            destinations = self.stores.len(),
            "segment archived"
        );
        if spool::classify(name) == SpoolKind::Complete && !name.ends_with(".history") {
            self.last_segment = Some(name.to_string());
        }
        self.last_shipped_at = Some(now);
        true
    }

    async fn ship_partial(&mut self, f: &SpoolFile) -> bool {
        let path = self.spool.join(&f.name);
        match replace_partial(&self.stores, &path, &self.keys, self.compression).await {
            Ok(()) => {
                let now = Utc::now();
                tracing::debug!(file = %f.name, bytes = f.written, "partial segment shipped");
                self.last_partial = Some(PartialShipped {
                    name: f.name.clone(),
                    modified: f.modified,
                    written: f.written,
                    at: now,
                });
                self.last_shipped_at = Some(now);
                true
            }
            // Renamed to its final name between the listing and the read:
            // the next pass archives it whole.
            Err(Error::Pipeline(e)) if e.kind() == std::io::ErrorKind::NotFound => true,
            Err(e) => {
                tracing::error!(file = %f.name, error = %e, "shipping the partial segment failed; retrying");
                false
            }
        }
    }

    fn write_status(&self, partial_bytes: u64) {
        let status = Status {
            last_segment: self.last_segment.clone(),
            last_shipped_at: self.last_shipped_at,
            lag_seconds: spool::lag_seconds(self.pending_since, Utc::now()),
            partial_bytes,
        };
        self.status.send_replace(status.clone());
        let Some(path) = &self.status_file else {
            return;
        };
        let text = serde_json::to_string(&status).expect("status serialises");
        // Written aside and renamed: a reader never sees half a file.
        let tmp = path.with_extension("tmp");
        if let Err(e) = std::fs::write(&tmp, text).and_then(|()| std::fs::rename(&tmp, path)) {
            tracing::warn!(path = %path.display(), error = %e, "cannot write the status file");
        }
    }
}

/// The spool's files with, for partial segments, how much is written.
fn list_spool(dir: &Path) -> std::io::Result<Vec<SpoolFile>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let Some(name) = entry.file_name().to_str().map(str::to_string) else {
            continue;
        };
        let kind = spool::classify(&name);
        if kind == SpoolKind::Other {
            continue;
        }
        let Ok(meta) = entry.metadata() else { continue };
        let written = match kind {
            SpoolKind::Partial { .. } => written_len(&entry.path(), meta.len()).unwrap_or(0),
            _ => meta.len(),
        };
        files.push(SpoolFile {
            name,
            modified: meta.modified()?,
            written,
        });
    }
    Ok(files)
}

/// WAL page size (XLOG_BLCKSZ): every written page starts with a non-zero
/// header, and pg_receivewal preallocates the rest of the segment with zeros.
const WAL_PAGE: u64 = 8192;

/// Bytes of a partial segment written so far, to the end of the last page
/// with a header: found from the end, reading two bytes per page.
fn written_len(path: &Path, len: u64) -> std::io::Result<u64> {
    let f = std::fs::File::open(path)?;
    let mut magic = [0u8; 2];
    let mut page = len / WAL_PAGE;
    while page > 0 {
        f.read_exact_at(&mut magic, (page - 1) * WAL_PAGE)?;
        if magic != [0, 0] {
            return Ok(page * WAL_PAGE);
        }
        page -= 1;
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_names_are_checked() {
        assert!(valid_slot("lifeboat"));
        assert!(valid_slot("lb_1"));
        for bad in ["", "Lifeboat", "a-b", "a b", &"x".repeat(64)] {
            assert!(!valid_slot(bad), "{bad}");
        }
    }

    #[test]
    fn only_our_own_leftover_receiver_is_stopped() {
        let spool = Path::new("/var/spool/wal");
        let ours =
            b"/usr/lib/postgresql/15/bin/pg_receivewal\0--no-loop\0--directory\0/var/spool/wal\0";
        assert!(is_receiver_for(ours, spool));
        let other_spool = b"/usr/bin/pg_receivewal\0--directory\0/var/spool/other\0";
        assert!(!is_receiver_for(other_spool, spool));
        assert!(!is_receiver_for(
            b"/bin/sleep\0--directory\0/var/spool/wal\0",
            spool
        ));
        assert!(!is_receiver_for(b"", spool));
    }

    #[test]
    fn written_length_stops_at_the_last_page_with_a_header() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("000000010000000000000001.partial");
        let mut data = vec![0u8; 16 * WAL_PAGE as usize];
        data[0] = 0x10;
        data[3 * WAL_PAGE as usize] = 0x10;
        std::fs::write(&p, &data).unwrap();
        assert_eq!(written_len(&p, data.len() as u64).unwrap(), 4 * WAL_PAGE);
        std::fs::write(&p, vec![0u8; 4 * WAL_PAGE as usize]).unwrap();
        assert_eq!(written_len(&p, 4 * WAL_PAGE).unwrap(), 0);
    }
}
