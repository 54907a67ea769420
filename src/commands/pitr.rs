//! `lifeboat restore --data-dir DIR [--target-time T | --target-lsn L]`:
//! point-in-time recovery from a physical base backup and the WAL archive.
//!
//! The newest base backup that can reach the target is unpacked into an empty
//! directory, recovery.signal and the recovery settings (restore_command =
//! this binary's `wal-fetch`) are written, and — unless `--no-start` — the
//! postmaster replays WAL up to the target and promotes. The point actually
//! recovered to is read from the promoted server. If recovery stops early
//! (a corrupted WAL file: wal-fetch exits 126) the restore fails naming the
//! file and removes what it unpacked: never a silently shorter history.

use super::download::decode_object;
use super::progress::peak_rss_bytes;
use super::{manifests, Error};
use crate::catalog::{Manifest, PhysicalInfo};
use crate::keys::Keyring;
use crate::location::{Location, NamedLocation};
use crate::recovery::{self, RecoveryTarget};
use crate::source::postgres::majors::{self, Rule};
use crate::source::postgres::{self, Need, PgConn, PgError};
use crate::store::Store;
use crate::target::data_dir::{self, DataDir};
use crate::wire::RestoreSummary;
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The pg_hba.conf of the server while lifeboat runs it (removed after).
const RECOVERY_HBA: &str = "lifeboat-recovery-hba.conf";
/// The server's output while lifeboat runs it, inside the data directory.
pub const RECOVERY_LOG: &str = "lifeboat-recovery.log";

pub struct PitrOptions {
    pub from: Vec<NamedLocation>,
    pub keys: Arc<Keyring>,
    /// Its path goes into restore_command (never its content).
    pub key_file: PathBuf,
    pub data_dir: PathBuf,
    pub target: RecoveryTarget,
    /// Run the postmaster to replay and promote (else only prepare).
    pub start: bool,
    /// Leave the promoted server running.
    pub keep_running: bool,
    /// Owner of the data directory and user of the postmaster.
    pub run_as: Option<String>,
    /// Port of the server while lifeboat runs it.
    pub port: u16,
    /// User for the queries after promotion and the PostgreSQL binaries' directory.
    pub conn: PgConn,
    /// This binary, for restore_command.
    pub lifeboat: PathBuf,
    /// SQL run on the promoted server before it stops ([`super::checks`]).
    pub checks: Vec<String>,
    /// Database the checks run in.
    pub check_db: String,
}

/// Where recovery ended, read from the promoted server.
#[derive(Debug, Serialize)]
pub struct RecoveredPoint {
    /// The timeline the server continues on after promotion.
    pub timeline: u32,
    /// The last WAL record replayed.
    pub lsn: String,
    /// Commit time of the last transaction replayed (None: none was replayed).
    pub last_commit_time: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize)]
pub struct PitrReport {
    pub backup_id: String,
    pub destination: String,
    pub base: PhysicalInfo,
    pub target: String,
    pub data_dir: PathBuf,
    /// None with `--no-start`: recovery runs when the server is started.
    pub recovered: Option<RecoveredPoint>,
    pub running: bool,
    /// The archive ends before the target: everything archived is at or
    /// before it, so the restore replayed to the archive's end.
    pub ended_before_target: bool,
    pub seconds: f64,
    pub peak_rss_bytes: u64,
}

impl PitrReport {
    /// The compact summary a RestoreRequest's Job leaves: the point reached
    /// (the last commit replayed, else the base backup's end) as the backup's time.
    pub fn summary(&self, checks: usize) -> RestoreSummary {
        let reached = self
            .recovered
            .as_ref()
            .and_then(|p| p.last_commit_time)
            .unwrap_or(self.base.stopped_at);
        RestoreSummary {
            ok: true,
            backup_id: Some(self.backup_id.clone()),
            backup_completed_at: Some(reached),
            restore_seconds: self.seconds,
            checks,
            ..Default::default()
        }
    }
}

pub async fn restore(o: PitrOptions) -> Result<PitrReport, Error> {
    let t0 = Instant::now();
    if o.from.is_empty() {
        return Err(Error::Usage("no source: give --from at least once".into()));
    }
    if o.start && o.run_as.is_none() && data_dir::running_as_root() {
        return Err(Error::Usage(
            "PostgreSQL refuses to run as root: give --run-as USER (the data directory's owner) or --no-start".into(),
        ));
    }
    let dir = DataDir::prepare(&o.data_dir, o.run_as.as_deref())?;
    let result = match check_restore_command_access(&o, &dir) {
        Ok(()) => unpack_and_recover(&o, &dir).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(mut report) => {
            report.seconds = t0.elapsed().as_secs_f64();
            report.peak_rss_bytes = peak_rss_bytes();
            Ok(report)
        }
        Err(e) => {
            dir.discard();
            Err(e)
        }
    }
}

async fn unpack_and_recover(o: &PitrOptions, dir: &DataDir) -> Result<PitrReport, Error> {
    let mut faults = Vec::new();
    let mut unpacked = None;
    for url in &o.from {
        match unpack_from(url, o, dir).await {
            Ok(m) => {
                unpacked = Some((url.name.clone(), m));
                break;
            }
            Err(e) if e.is_source_fault() => {
                tracing::warn!(from = %url.label(), error = %e, "this destination cannot serve the base backup; trying the next one");
                faults.push(format!("{}: {e}", url.label()));
                dir.empty()?;
            }
            Err(e) => return Err(e),
        }
    }
    let Some((url, manifest)) = unpacked else {
        return Err(Error::AllSourcesFailed(faults.join("; ")));
    };
    let base = manifest
        .physical
        .clone()
        .expect("chosen among physical backups");
    write_recovery_settings(o, &manifest.backup_id, &o.target)?;
    dir.give_to_owner()?;
    let mut report = PitrReport {
        backup_id: manifest.backup_id.clone(),
        destination: url,
        base,
        target: o.target.to_string(),
        data_dir: o.data_dir.clone(),
        recovered: None,
        running: false,
        ended_before_target: false,
        seconds: 0.0,
        peak_rss_bytes: 0,
    };
    if o.start {
        let server = server_programs(&o.conn, &manifest)?;
        let (point, running) = match recover(o, &server, dir).await {
            // PostgreSQL refuses a target past the end of the WAL. The
            // archive holds nothing after the target then, so its end is
            // the state as of the target: replay to it.
            Err(e) if o.target != RecoveryTarget::Latest && ends_before_target(o) => {
                tracing::warn!(target = %o.target, error = %e,
                    "the archive ends before the target; replaying to its end");
                write_recovery_settings(o, &manifest.backup_id, &RecoveryTarget::Latest)?;
                report.ended_before_target = true;
                recover(o, &server, dir).await?
            }
            other => other?,
        };
        tracing::info!(timeline = point.timeline, lsn = %point.lsn, last_commit = ?point.last_commit_time, "recovered and promoted");
        report.recovered = Some(point);
        report.running = running;
    }
    Ok(report)
}

/// What the recovering server's restore_command (`lifeboat wal-fetch`, run
/// as the server's user) must reach, checked first as that user, the way
/// the server will run (its uid and gid, no other groups). Without this a
/// restore unpacks the base backup, starts recovery and fails with
/// PostgreSQL's "could not locate required checkpoint record", far from
/// the cause.
fn check_restore_command_access(o: &PitrOptions, dir: &DataDir) -> Result<(), Error> {
    use std::os::unix::process::CommandExt;
    let (true, Some((uid, gid))) = (o.start, dir.owner) else {
        return Ok(());
    };
    let absolute = |p: &PathBuf| std::path::absolute(p).unwrap_or_else(|_| p.clone());
    let mut needs: Vec<(&str, PathBuf, String)> = vec![
        ("-x", absolute(&o.lifeboat), "run lifeboat itself".into()),
        (
            "-r",
            absolute(&o.key_file),
            "read the key file (--key-file)".into(),
        ),
    ];
    for url in &o.from {
        match &url.location {
            Location::S3(s3) => {
                if let Some(c) = &s3.credentials {
                    for file in ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"] {
                        let what = format!("read the credentials of {}", url.label());
                        needs.push(("-r", absolute(&c.join(file)), what));
                    }
                }
            }
            Location::Local(path) => {
                for flag in ["-r", "-x"] {
                    needs.push((
                        flag,
                        absolute(path),
                        format!("read the archive {}", url.label()),
                    ));
                }
            }
        }
    }
    for (flag, path, what) in needs {
        let can = Command::new("test")
            .arg(flag)
            .arg(&path)
            .env_clear()
            .uid(uid)
            .gid(gid)
            .status()
            .is_ok_and(|s| s.success());
        if !can {
            return Err(Error::Usage(format!(
                "--run-as {}: the server's restore_command must {what}, but uid {uid} cannot reach {}; \
                 make it readable by that user (owner or group) and try again",
                o.run_as.as_deref().unwrap_or_default(),
                path.display()
            )));
        }
    }
    Ok(())
}

/// Physical manifests in one destination, MAC checked.
async fn physical_manifests(store: &Store, keys: &Keyring) -> Result<Vec<Manifest>, Error> {
    let mut out = Vec::new();
    for id in manifests::committed_ids(store).await? {
        let m = manifests::open(store, &id, keys).await?;
        if m.physical.is_some() {
            out.push(m);
        }
    }
    Ok(out)
}

/// Chooses the base backup in `url` and unpacks it into the data directory.
async fn unpack_from(
    url: &NamedLocation,
    o: &PitrOptions,
    dir: &DataDir,
) -> Result<Manifest, Error> {
    let store = Store::open(url).await?;
    let all = physical_manifests(&store, &o.keys).await?;
    let manifest = recovery::choose_base(&all, &o.target)?.clone();
    let entry = manifest
        .objects
        .iter()
        .find(|e| e.role == "base")
        .ok_or_else(|| Error::Usage(format!("backup {} has no base object", manifest.backup_id)))?
        .clone();
    if o.start {
        // Before unpacking: a missing major fails at once, not after the copy.
        server_programs(&o.conn, &manifest)?;
    }
    tracing::info!(backup = %manifest.backup_id, from = %url.label(), bytes = entry.size, target = %o.target, "unpacking the base backup");
    let mut tar = dir.loader(&manifest.backup_id)?;
    match decode_object(&store, &entry, o.keys.clone(), tar.input()).await {
        Ok((input, _)) => drop(input),
        Err(e) => return Err(tar.abort().await.map_or(e, Error::from)),
    }
    tar.finish().await?;
    Ok(manifest)
}

/// The programs that replay a base backup: the server of the backed-up
/// server's own major (its data directory's format).
fn server_programs(conn: &PgConn, m: &Manifest) -> Result<PgConn, Error> {
    let version = m.source.version();
    let Some(major) = majors::major_of(version) else {
        return Ok(conn.clone());
    };
    Ok(conn.with_programs(&Need {
        tool: "postgres",
        rule: Rule::Exactly(major),
        why: format!(
            "to replay backup {} of a PostgreSQL {version} server",
            m.backup_id
        ),
    })?)
}

/// True when the last recovery stopped because the WAL ended before its target.
fn ends_before_target(o: &PitrOptions) -> bool {
    let log = std::fs::read_to_string(o.data_dir.join(RECOVERY_LOG)).unwrap_or_default();
    recovery::ended_before_target(&log)
}

fn write_recovery_settings(
    o: &PitrOptions,
    backup_id: &str,
    target: &RecoveryTarget,
) -> Result<(), Error> {
    let dir = &o.data_dir;
    let key_file = std::path::absolute(&o.key_file).map_err(Error::Pipeline)?;
    let cmd = recovery::restore_command(&o.lifeboat, &o.from, &key_file);
    let settings = recovery::recovery_settings(&cmd, target, backup_id);
    // A backup of a server that was itself a standby or mid-restore carries these.
    for stale in ["standby.signal", "postmaster.pid", RECOVERY_LOG] {
        let _ = std::fs::remove_file(dir.join(stale));
    }
    let auto = dir.join("postgresql.auto.conf");
    let before = std::fs::read_to_string(&auto).unwrap_or_default();
    let text = recovery::without_recovery_settings(&before) + &settings;
    std::fs::write(&auto, text).map_err(Error::Pipeline)?;
    std::fs::write(dir.join("recovery.signal"), b"").map_err(Error::Pipeline)?;
    Ok(())
}

/// Runs the postmaster until recovery ends and the server is promoted, reads
/// the point recovered to, then stops it (fast shutdown) unless asked to keep
/// it running. Returns the point and whether the server still runs. Only a
/// server left running archives (its config's archive_command).
async fn recover(
    o: &PitrOptions,
    programs: &PgConn,
    data: &DataDir,
) -> Result<(RecoveredPoint, bool), Error> {
    use std::os::unix::process::CommandExt;
    let owner = data.owner;
    let dir = std::path::absolute(&data.path).map_err(Error::Pipeline)?;
    let log_path = data.write_owned(RECOVERY_LOG, b"")?;
    let log = std::fs::OpenOptions::new()
        .append(true)
        .open(&log_path)
        .map_err(Error::Pipeline)?;
    let hba = data.write_owned(RECOVERY_HBA, b"local all all trust\n")?;
    let mut cmd = Command::new(programs.tool("postgres"));
    // The socket in the data directory: the backed-up server's socket
    // directory may not exist here. The log on stderr, where we read it.
    cmd.arg("-D")
        .arg(&dir)
        .args(["-c", &format!("port={}", o.port)])
        .arg("-c")
        .arg(format!("unix_socket_directories={}", dir.display()))
        .args(["-c", "logging_collector=off"])
        .current_dir(&dir)
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(Error::Pipeline)?)
        .stderr(log);
    if !o.keep_running {
        // Only lifeboat reaches this socket (in the 0700 data directory)
        // while it runs the server: trust it, whatever the backed-up
        // server's pg_hba.conf says; that file stays for the real server.
        cmd.arg("-c").arg(format!("hba_file={}", hba.display()));
        // Nor any TCP address: lifeboat talks to it over that socket, and
        // a server already on the port (the host's own, on 5432) must not
        // stop the restore.
        cmd.args(["-c", "listen_addresses="]);
        // A restore lifeboat stops again (a drill, a verification, a copy to
        // start later) archives nothing: its new timeline must not become
        // the archive's "latest" history that every later restore follows.
        cmd.args(["-c", "archive_mode=off"]);
    }
    if let Some((uid, gid)) = owner {
        cmd.uid(uid).gid(gid);
    }
    let mut server = cmd.spawn().map_err(|source| PgError::Spawn {
        tool: "postgres".into(),
        source,
    })?;
    tracing::info!(pid = server.id(), port = o.port, log = %log_path.display(), "recovering");
    let conn = PgConn {
        host: Some(dir.to_string_lossy().into_owned()),
        port: Some(o.port),
        password: None,
        ..programs.clone()
    };
    let point = loop {
        if let Some(status) = server.try_wait().map_err(Error::Pipeline)? {
            let text = std::fs::read_to_string(&log_path).unwrap_or_default();
            return Err(recovery_failed(&text, &status.to_string()));
        }
        match promoted_point(&conn).await {
            Ok(Some(p)) => break p,
            Ok(None) => {}
            Err(e) => tracing::debug!(error = %e, "server not ready yet"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let checked = super::checks::run_checks(&conn, &o.check_db, &o.checks).await;
    if o.keep_running && checked.is_ok() {
        return Ok((point, true));
    }
    // SIGINT: fast shutdown, a clean stop with a checkpoint.
    let _ = Command::new("kill")
        .args(["-INT", &server.id().to_string()])
        .status();
    let status = tokio::task::spawn_blocking(move || server.wait())
        .await
        .map_err(|e| Error::Pipeline(std::io::Error::other(e)))?
        .map_err(Error::Pipeline)?;
    if !status.success() {
        tracing::warn!(%status, "the server did not stop cleanly after recovery");
    }
    let _ = std::fs::remove_file(&hba);
    checked?;
    queue_history_file(data, point.timeline)?;
    Ok((point, false))
}

/// Marks the new timeline's history file ready for archiving (it was
/// written while archiving was off): if this directory is started as the new
/// primary, its archiver ships the history file first, and later restores can
/// follow the new timeline.
fn queue_history_file(data: &DataDir, timeline: u32) -> Result<(), Error> {
    let name = format!("{timeline:08X}.history");
    let status = data.path.join("pg_wal/archive_status");
    if !data.path.join("pg_wal").join(&name).exists() || !status.is_dir() {
        return Ok(());
    }
    data.write_owned(&format!("pg_wal/archive_status/{name}.ready"), b"")?;
    Ok(())
}

fn recovery_failed(log: &str, status: &str) -> Error {
    let (segment, fatal) = recovery::recovery_failure(log);
    // The FATAL lines, and the lines just before the first (its cause).
    let all: Vec<&str> = log.lines().collect();
    let first_fatal = all
        .iter()
        .position(|l| fatal.first().is_some_and(|f| l.trim() == f))
        .unwrap_or(all.len());
    let lines = all[first_fatal.saturating_sub(3)..first_fatal]
        .iter()
        .map(|l| l.trim().to_string())
        .chain(fatal)
        .collect::<Vec<_>>()
        .join(" | ");
    Error::RecoveryFailed(match segment {
        Some(seg) => format!(
            "recovery stopped: WAL file {seg} could not be restored from the archive (corrupted or unreadable); \
             the restore is incomplete and was removed. Server: {lines}"
        ),
        None => format!("the server stopped during recovery ({status}): {lines}"),
    })
}

/// The recovered point once the server is out of recovery; None before.
async fn promoted_point(conn: &PgConn) -> Result<Option<RecoveredPoint>, PgError> {
    let db = "postgres";
    let mut c = conn.connect(db).await?;
    let row: Result<(bool, String, Option<String>, Option<String>), _> = sqlx::query_as(
        "select pg_is_in_recovery(),
                substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8),
                pg_last_wal_replay_lsn()::text,
                to_char(pg_last_xact_replay_timestamp() at time zone 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')",
    )
    .fetch_one(&mut c)
    .await;
    postgres::close(c).await;
    let (in_recovery, tli, lsn, commit) = match row {
        Ok(r) => r,
        // pg_current_wal_lsn() is refused during recovery.
        Err(e) if e.to_string().contains("recovery is in progress") => return Ok(None),
        Err(e) => {
            return Err(PgError::Query {
                db: db.into(),
                message: e.to_string(),
            })
        }
    };
    if in_recovery {
        return Ok(None);
    }
    Ok(Some(RecoveredPoint {
        timeline: u32::from_str_radix(&tli, 16).unwrap_or(0),
        lsn: lsn.unwrap_or_default(),
        last_commit_time: commit
            .and_then(|c| DateTime::parse_from_rfc3339(&c).ok())
            .map(|t| t.with_timezone(&Utc)),
    }))
}
