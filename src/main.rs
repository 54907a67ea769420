//! The `lifeboat` binary: parses the command line and dispatches.

use clap::{Args, Parser, Subcommand, ValueEnum};
use lifeboat::api::run::format_bytes;
use lifeboat::catalog::Point;
use lifeboat::commands::{self, backup, list, prune, restore, verify};
use lifeboat::keys::{self, Keyring};
use lifeboat::location::NamedLocation;
use lifeboat::pipeline::header::Compression;
use lifeboat::source::postgres::{PgConn, Secret};
use lifeboat::wire::{step, PlanSummary, RestoreSummary};
use serde::Serialize;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

#[derive(Parser)]
#[command(
    name = "lifeboat",
    version,
    about = "Backup and disaster recovery: PostgreSQL to S3 in several regions, encrypted and verified"
)]
struct Cli {
    /// Log filter (error, warn, info, debug, trace or a tracing directive).
    #[arg(long, global = true, env = "LIFEBOAT_LOG", default_value = "info")]
    log: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Back up PostgreSQL databases to one or more destinations.
    Backup(BackupArgs),
    /// Restore a backup into a database.
    Restore(RestoreArgs),
    /// Choose and verify the recovery point a restore would use; writes no database.
    Plan(PlanArgs),
    /// List the recovery points in destinations.
    List(ListArgs),
    /// Re-read backups and check every byte without restoring.
    Verify(VerifyArgs),
    /// Delete backups from every destination; clean interrupted uploads.
    Prune(PruneArgs),
    /// Write a new master key file (or put a new key first in one).
    Keygen(KeygenArgs),
    /// Archive one WAL file (PostgreSQL's archive_command: `lifeboat wal-push %p --to …`).
    WalPush(WalPushArgs),
    /// Restore one WAL file (PostgreSQL's restore_command: `lifeboat wal-fetch %f %p --from …`).
    /// Exit 1: not archived; exit 126 (fatal to recovery): a copy failed verification.
    WalFetch(WalFetchArgs),
    /// The on-call table: per BackupPolicy, last backup against the RPO,
    /// next backup, last drill against the RTO, recovery window, health.
    Status(StatusArgs),
    /// Stream WAL continuously (pg_receivewal on a replication slot) and ship
    /// every segment, and the partial one at least every --max-wal-delay.
    WalStream(WalStreamArgs),
    /// Print the CustomResourceDefinitions (crds/ holds this output).
    Crds,
    /// Run the operator: schedule BackupRuns, run their Jobs, write status.
    Controller(ControllerArgs),
}

#[derive(Args)]
struct ControllerArgs {
    /// Image of the Jobs the controller creates (this binary's image).
    #[arg(long, env = "LIFEBOAT_IMAGE")]
    image: String,
    /// Address of /metrics, /healthz and /readyz.
    #[arg(long, env = "LIFEBOAT_HTTP_ADDR", default_value = "0.0.0.0:8080")]
    metrics_addr: std::net::SocketAddr,
    /// Watch only this namespace (default: all).
    #[arg(long, env = "LIFEBOAT_NAMESPACE")]
    namespace: Option<String>,
    /// Namespace of the leader-election Lease (the controller's own).
    #[arg(long, env = "POD_NAMESPACE", default_value = "lifeboat-system")]
    leader_election_namespace: String,
    /// Name of the leader-election Lease.
    #[arg(
        long,
        env = "LIFEBOAT_LEASE_NAME",
        default_value = "lifeboat-controller"
    )]
    lease_name: String,
    /// Elect a leader through a Lease (off: exactly one replica must run).
    #[arg(long, env = "LIFEBOAT_LEADER_ELECTION", default_value_t = true, action = clap::ArgAction::Set)]
    leader_election: bool,
    /// This replica's name in the Lease (default: POD_NAME, else the hostname).
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
}

/// Where PostgreSQL is. Unset values come from libpq's environment
/// (PGHOST, PGPORT, PGUSER, PGPASSFILE, PGPASSWORD, PGSSLMODE).
#[derive(Args, Clone)]
struct ConnArgs {
    #[arg(long)]
    host: Option<String>,
    #[arg(long)]
    port: Option<u16>,
    #[arg(long)]
    user: Option<String>,
    /// File holding the password (never pass a password on the command line).
    #[arg(long, env = "LIFEBOAT_PASSWORD_FILE")]
    password_file: Option<PathBuf>,
    /// Directory of pg_dump, pg_restore and pg_dumpall (default: PATH).
    #[arg(long, env = "LIFEBOAT_PG_BIN")]
    pg_bin: Option<PathBuf>,
    /// Database for server-level queries.
    #[arg(long, default_value = "postgres")]
    maintenance_db: String,
}

impl ConnArgs {
    fn conn(&self) -> Result<PgConn, commands::Error> {
        Ok(PgConn {
            host: self.host.clone(),
            port: self.port,
            user: self.user.clone(),
            password: self
                .password_file
                .as_deref()
                .map(Secret::from_file)
                .transpose()?,
            bin_dir: self.pg_bin.clone(),
        })
    }
}

#[derive(Args)]
struct KeyArgs {
    /// Master key file (`lifeboat keygen`); the first key encrypts, all decrypt.
    #[arg(long, env = "LIFEBOAT_KEY_FILE")]
    key_file: PathBuf,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum MethodArg {
    Logical,
    Physical,
}

#[derive(Clone, Copy, ValueEnum)]
enum CompressionArg {
    Zstd,
    Gzip,
    None,
}

#[derive(Args)]
struct BackupArgs {
    #[command(flatten)]
    conn: ConnArgs,
    /// `logical` (pg_dump per database) or `physical` (pg_basebackup of the
    /// whole cluster, for point-in-time restore; needs WAL archiving with wal-push).
    #[arg(long, value_enum, default_value = "logical")]
    method: MethodArg,
    /// Database to back up (repeat for several).
    #[arg(
        long = "database",
        short = 'd',
        required_unless_present_any = ["all_databases", "method"]
    )]
    databases: Vec<String>,
    /// Every database that accepts connections.
    #[arg(long, conflicts_with = "databases")]
    all_databases: bool,
    /// Leave out roles and tablespaces (pg_dumpall --globals-only).
    #[arg(long)]
    no_globals: bool,
    /// Destination: s3://bucket/prefix?region=R[&endpoint=URL] or file:///path (repeat for several).
    #[arg(long = "to", required = true)]
    to: Vec<NamedLocation>,
    #[command(flatten)]
    key: KeyArgs,
    #[arg(long, value_enum, default_value = "zstd")]
    compression: CompressionArg,
    /// Policy name recorded in the manifest.
    #[arg(long, default_value = "manual")]
    policy: String,
    /// Tier recorded in the manifest (daily, weekly, monthly, manual).
    #[arg(long, default_value = "manual")]
    tier: String,
    /// Commit in the destinations that succeeded when others fail (default: all or nothing).
    #[arg(long)]
    allow_partial: bool,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// Also write a compact JSON report here (a Job's /dev/termination-log).
    #[arg(long)]
    report_file: Option<PathBuf>,
    /// After committing, read the backup back from every destination and
    /// check every byte (as `lifeboat verify`); exit 1 when any check fails.
    #[arg(long)]
    verify: bool,
}

#[derive(Args)]
struct RestoreArgs {
    #[command(flatten)]
    conn: ConnArgs,
    /// Where the backup is, in order of preference (repeat for fallbacks).
    #[arg(long = "from", required = true)]
    from: Vec<NamedLocation>,
    #[command(flatten)]
    key: KeyArgs,
    /// `latest`, a backup id, or an RFC 3339 time (newest backup completed by then).
    #[arg(long, default_value = "latest")]
    backup: Point,
    /// Which database of the backup (when it holds several).
    #[arg(long)]
    database: Option<String>,
    /// Database to restore into (default: the source database's name).
    #[arg(long)]
    target_db: Option<String>,
    /// Create the target database when it does not exist.
    #[arg(long)]
    create: bool,
    /// Replace the contents of a non-empty target (default: refuse).
    #[arg(long, alias = "overwrite")]
    clean: bool,
    /// Do not restore ownership and grants (a server without the same roles).
    #[arg(long)]
    no_owner: bool,
    /// First recreate the backup's roles and tablespaces (a fresh server).
    #[arg(long)]
    globals: bool,
    /// Point-in-time restore: unpack the newest physical base backup that
    /// reaches the target into this empty (or absent) directory and recover
    /// it from the WAL archive (the --from destinations) to the target.
    #[arg(long, conflicts_with_all = ["backup", "database", "target_db", "create", "clean", "no_owner", "globals"])]
    data_dir: Option<PathBuf>,
    /// Recover up to this time (RFC 3339), including transactions committed at it.
    #[arg(long, requires = "data_dir", conflicts_with = "target_lsn")]
    target_time: Option<String>,
    /// Recover up to this WAL position (like 0/3000028), inclusive.
    #[arg(long, requires = "data_dir")]
    target_lsn: Option<String>,
    /// Only prepare the directory (base backup, recovery.signal, settings);
    /// recovery runs when PostgreSQL is next started there.
    #[arg(long, requires = "data_dir")]
    no_start: bool,
    /// Leave the promoted server running after recovery (default: stop it cleanly).
    #[arg(long, requires = "data_dir", conflicts_with = "no_start")]
    keep_running: bool,
    /// Owner of the restored data directory and user of the postmaster
    /// (PostgreSQL refuses root); default: the current user.
    #[arg(long, requires = "data_dir")]
    run_as: Option<String>,
    /// Port of the restored server while lifeboat runs it.
    #[arg(long = "server-port", requires = "data_dir", default_value_t = 5432)]
    server_port: u16,
    #[arg(long)]
    json: bool,
    /// Also write a compact JSON report here (a Job's /dev/termination-log).
    #[arg(long)]
    report_file: Option<PathBuf>,
    /// SQL run against the restored database afterwards (repeat); each must
    /// succeed and, when it returns a boolean, return true.
    #[arg(long = "check")]
    checks: Vec<String>,
    /// Drop the target database after the checks (a restore drill's scratch database).
    #[arg(long)]
    drop_after: bool,
}

#[derive(Args)]
struct PlanArgs {
    /// Destinations in order of preference (repeat).
    #[arg(long = "from", required = true)]
    from: Vec<NamedLocation>,
    #[command(flatten)]
    key: KeyArgs,
    /// `latest`, a backup id, or an RFC 3339 time (newest backup completed by then).
    #[arg(long, default_value = "latest")]
    backup: Point,
    /// Database the restore would go into (default: the backup's one database).
    #[arg(long)]
    target_db: Option<String>,
    /// `full`: read back every object of the chosen copy; `quick`: check each
    /// is there with its size (the restore authenticates every byte anyway).
    #[arg(long, value_enum, default_value = "full")]
    verify: commands::plan::Depth,
    #[arg(long)]
    json: bool,
    /// Also write a compact JSON report here (a Job's /dev/termination-log).
    #[arg(long)]
    report_file: Option<PathBuf>,
}

#[derive(Args)]
struct ListArgs {
    #[arg(long = "from", required = true)]
    from: Vec<NamedLocation>,
    /// Check each manifest's MAC with this key file.
    #[arg(long, env = "LIFEBOAT_KEY_FILE")]
    key_file: Option<PathBuf>,
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct VerifyArgs {
    #[arg(long = "from", required = true)]
    from: Vec<NamedLocation>,
    #[command(flatten)]
    key: KeyArgs,
    /// `latest`, a backup id, an RFC 3339 time, or `all`.
    #[arg(long, default_value = "latest")]
    backup: String,
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct PruneArgs {
    #[arg(long = "from", required = true)]
    from: Vec<NamedLocation>,
    /// Backup id to delete (repeat for several).
    #[arg(long = "backup")]
    backups: Vec<String>,
    /// Also remove what interrupted backups left (incomplete uploads, objects without a manifest).
    #[arg(long)]
    incomplete: bool,
    #[arg(long)]
    json: bool,
}

/// Where archived WAL goes and how it is sealed (wal-push, wal-stream).
#[derive(Args)]
struct WalArchiveArgs {
    /// Destination (repeat for several; all receive every file).
    #[arg(long = "to", required = true)]
    to: Vec<NamedLocation>,
    #[command(flatten)]
    key: KeyArgs,
    #[arg(long, value_enum, default_value = "zstd")]
    compression: CompressionArg,
}

#[derive(Args)]
struct WalPushArgs {
    /// The WAL file (PostgreSQL's %p).
    path: PathBuf,
    #[command(flatten)]
    archive: WalArchiveArgs,
}

#[derive(Args)]
struct WalFetchArgs {
    /// The WAL file name wanted (PostgreSQL's %f).
    name: String,
    /// Where to write it (PostgreSQL's %p).
    dest: PathBuf,
    #[arg(long = "from", required = true)]
    from: Vec<NamedLocation>,
    #[command(flatten)]
    key: KeyArgs,
}

#[derive(Clone, Copy, ValueEnum)]
enum OutputArg {
    Table,
    Json,
}

#[derive(Args)]
struct StatusArgs {
    /// Namespace (default: the kube context's).
    #[arg(long, short = 'n', conflicts_with = "all_namespaces")]
    namespace: Option<String>,
    /// Every namespace.
    #[arg(long, short = 'A')]
    all_namespaces: bool,
    /// Kubeconfig context (default: the current one).
    #[arg(long)]
    context: Option<String>,
    #[arg(long, short = 'o', value_enum, default_value = "table")]
    output: OutputArg,
}

#[derive(Args)]
struct WalStreamArgs {
    #[command(flatten)]
    conn: ConnArgs,
    /// Local directory pg_receivewal writes into; files leave it once every
    /// destination has them.
    #[arg(long)]
    spool: PathBuf,
    /// Physical replication slot (created when missing).
    #[arg(long, default_value = "lifeboat")]
    slot: String,
    #[command(flatten)]
    archive: WalArchiveArgs,
    /// Longest time received WAL may wait before it is in every destination
    /// (the partial segment is shipped this often): `60s`, `5s`, `1m`.
    #[arg(long, default_value = "60s", value_parser = parse_max_wal_delay)]
    max_wal_delay: chrono::Duration,
    /// Rewrite this JSON file (atomically) after every pass:
    /// {lastSegment, lastShippedAt, lagSeconds, partialBytes}.
    #[arg(long)]
    status_file: Option<PathBuf>,
    /// Serve `/status` (the same JSON, read by the operator), `/metrics` and
    /// `/healthz` on this address, e.g. 0.0.0.0:8081.
    #[arg(long)]
    http_addr: Option<std::net::SocketAddr>,
}

fn parse_max_wal_delay(text: &str) -> Result<chrono::Duration, String> {
    lifeboat::api::parse_duration(text)
        .filter(|d| *d > chrono::Duration::zero())
        .ok_or_else(|| format!("{text:?} is not a duration above zero such as 5s, 60s or 1m"))
}

#[derive(Args)]
struct KeygenArgs {
    /// Key id recorded in every object it encrypts (A-Z a-z 0-9 . _ -).
    #[arg(long)]
    id: String,
    /// Key file to write (mode 0600).
    #[arg(long)]
    out: PathBuf,
    /// Put the new key first in an existing file (rotation: old keys still decrypt).
    #[arg(long)]
    add: bool,
}

fn compression(c: CompressionArg) -> Compression {
    match c {
        CompressionArg::Zstd => Compression::Zstd,
        CompressionArg::Gzip => Compression::Gzip,
        CompressionArg::None => Compression::None,
    }
}

/// `lifeboat plan`.
async fn commands_plan(a: PlanArgs) -> Result<ExitCode, commands::Error> {
    let report = commands::plan::plan(commands::plan::PlanOptions {
        from: a.from,
        keys: Arc::new(Keyring::load(&a.key.key_file)?),
        point: a.backup,
        target_db: a.target_db,
        depth: a.verify,
    });
    let report = match report.await {
        Ok(r) => r,
        Err(e) => {
            write_report(a.report_file.as_deref(), &PlanSummary::failed(&e))?;
            return Err(e);
        }
    };
    write_report(a.report_file.as_deref(), &report.summary())?;
    if a.json {
        print_json(&report);
    } else {
        let p = &report.plan;
        println!(
            "plan: backup {} (completed {}) from {}, {} stored, into {}",
            p.backup_id,
            p.completed_at.to_rfc3339(),
            p.destination,
            format_bytes(p.bytes),
            report
                .target_database
                .as_deref()
                .unwrap_or("(choose with --target-db)")
        );
        for s in &p.skipped {
            println!("  skipped {}: {}", s.destination, s.reason);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `lifeboat restore --check … [--drop-after]`: restore, checks, drop.
/// What `lifeboat restore` (logical) was asked for.
fn restore_options(a: &RestoreArgs) -> Result<restore::RestoreOptions, commands::Error> {
    Ok(restore::RestoreOptions {
        from: a.from.clone(),
        keys: Arc::new(Keyring::load(&a.key.key_file)?),
        point: a.backup.clone(),
        database: a.database.clone(),
        target: a.conn.conn()?,
        target_db: a.target_db.clone(),
        maintenance_db: a.conn.maintenance_db.clone(),
        create: a.create,
        clean: a.clean,
        no_owner: a.no_owner,
        globals: a.globals,
    })
}

async fn commands_recover(a: RestoreArgs) -> Result<ExitCode, commands::Error> {
    use commands::recover::recover;
    let o = restore_options(&a)?;
    match recover(o, &a.checks, a.drop_after).await {
        Ok(report) => {
            write_report(a.report_file.as_deref(), &report.summary())?;
            if a.json {
                print_json(&report);
            } else {
                println!(
                    "restored backup {} into {} in {:.1} s; {} check(s) passed{}",
                    report.restore.backup_id,
                    report.restore.target_database,
                    report.restore.seconds,
                    report.checks.len(),
                    if report.dropped { "; dropped it" } else { "" }
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(f) => {
            write_report(a.report_file.as_deref(), &f.summary())?;
            eprintln!("error: {} step failed: {}", f.step, f.error);
            Ok(ExitCode::from(1))
        }
    }
}

fn print_json<T: Serialize>(v: &T) {
    println!(
        "{}",
        serde_json::to_string_pretty(v).expect("report serialises")
    );
}

/// The compact report a Job leaves as its termination message (4 KiB max).
fn write_report<T: Serialize>(
    path: Option<&std::path::Path>,
    v: &T,
) -> Result<(), commands::Error> {
    let Some(path) = path else { return Ok(()) };
    let text = serde_json::to_string(v).expect("report serialises");
    std::fs::write(path, text)
        .map_err(|e| commands::Error::Usage(format!("--report-file {}: {e}", path.display())))
}

async fn run(cli: Cli) -> Result<ExitCode, commands::Error> {
    match cli.command {
        Command::Backup(a) => {
            use lifeboat::source::{postgres, Source};
            let conn = a.conn.conn()?;
            let maintenance_db = a.conn.maintenance_db.clone();
            let source = match a.method {
                MethodArg::Logical => Source::PostgresLogical(postgres::logical::Logical::new(
                    conn,
                    a.databases,
                    a.all_databases,
                    maintenance_db,
                    !a.no_globals,
                )),
                MethodArg::Physical => Source::PostgresPhysical(postgres::physical::Physical::new(
                    conn,
                    maintenance_db,
                )),
            };
            let mut report = backup::backup(backup::BackupOptions {
                source,
                to: a.to,
                keys: Keyring::load(&a.key.key_file)?,
                compression: compression(a.compression),
                policy: a.policy,
                tier: a.tier,
                allow_partial: a.allow_partial,
            })
            .await?;
            let verified = if a.verify {
                let keys = Arc::new(Keyring::load(&a.key.key_file)?);
                backup::verify_committed(&mut report, keys).await?
            } else {
                true
            };
            write_report(a.report_file.as_deref(), &report.summary())?;
            if a.json {
                print_json(&report);
            } else {
                println!("backup {} committed", report.backup_id);
                println!(
                    "  {} read, {} stored per destination, {:.1} s, {:.1} MiB/s, peak memory {}",
                    format_bytes(report.bytes_in),
                    format_bytes(report.bytes_out),
                    report.seconds,
                    report.mib_per_s,
                    format_bytes(report.peak_rss_bytes)
                );
                for d in &report.destinations {
                    let checked = if d.verified == Some(true) {
                        " (verified)"
                    } else {
                        ""
                    };
                    match &d.error {
                        None => println!("  ✓ {}{checked}", d.destination),
                        Some(e) => println!("  ✗ {} — {e}", d.destination),
                    }
                }
            }
            if !verified {
                eprintln!(
                    "error: backup {} was committed but failed read-back verification",
                    report.backup_id
                );
                return Ok(ExitCode::from(1));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Restore(a) if a.data_dir.is_some() => restore_point_in_time(a).await,
        Command::Plan(a) => commands_plan(a).await,
        Command::Restore(a) if !a.checks.is_empty() || a.drop_after => commands_recover(a).await,
        Command::Restore(a) => {
            let report = restore::restore(restore_options(&a)?).await?;
            write_report(a.report_file.as_deref(), &report)?;
            if a.json {
                print_json(&report);
            } else {
                println!(
                    "restored backup {} ({} {}) from {} into {} in {:.1} s ({:.1} MiB/s)",
                    report.backup_id,
                    report.source_database,
                    report.backup_completed_at.to_rfc3339(),
                    report.destination,
                    report.target_database,
                    report.seconds,
                    report.mib_per_s
                );
                for f in &report.failed_attempts {
                    println!("  skipped {}: {}", f.destination, f.error);
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::List(a) => {
            let keys = a.key_file.as_deref().map(Keyring::load).transpose()?;
            let entries = list::list(&a.from, keys.as_ref()).await?;
            if a.json {
                print_json(&entries);
            } else {
                println!(
                    "{:<28} {:<21} {:<8} {:<10} {:>10}  {:<20} DESTINATION",
                    "BACKUP", "COMPLETED", "TIER", "POLICY", "SIZE", "DATABASES"
                );
                for e in &entries {
                    let when = e
                        .completed_at
                        .map(|t| t.format("%Y-%m-%d %H:%M:%SZ").to_string())
                        .unwrap_or_else(|| "?".into());
                    println!(
                        "{:<28} {:<21} {:<8} {:<10} {:>10}  {:<20} {}{}",
                        e.backup_id,
                        when,
                        e.tier,
                        e.policy,
                        format_bytes(e.bytes),
                        e.databases.join(","),
                        e.destination,
                        e.error
                            .as_ref()
                            .map(|x| format!("  (INVALID: {x})"))
                            .unwrap_or_default()
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Verify(a) => {
            let which = if a.backup == "all" {
                verify::Which::All
            } else {
                verify::Which::Point(
                    a.backup
                        .parse()
                        .map_err(|e: String| commands::Error::Usage(format!("--backup: {e}")))?,
                )
            };
            let keys = Arc::new(Keyring::load(&a.key.key_file)?);
            let report = verify::verify(&a.from, keys, &which).await?;
            if a.json {
                print_json(&report);
            } else {
                for c in &report.checks {
                    let mark = if c.ok { "✓" } else { "✗" };
                    println!(
                        "{mark} {} {}{}",
                        c.backup_id,
                        c.destination,
                        c.error
                            .as_ref()
                            .map(|e| format!(" — {e}"))
                            .unwrap_or_default()
                    );
                    for o in c.objects.iter().filter(|o| !o.ok) {
                        println!("    ✗ {}: {}", o.key, o.error.clone().unwrap_or_default());
                    }
                }
            }
            if report.problems > 0 || report.checks.is_empty() {
                if report.checks.is_empty() {
                    eprintln!("error: no backup to verify");
                } else {
                    eprintln!("error: {} problem(s) found", report.problems);
                }
                return Ok(ExitCode::from(1));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Prune(a) => {
            if a.backups.is_empty() && !a.incomplete {
                return Err(commands::Error::Usage(
                    "nothing to prune: give --backup ID or --incomplete".into(),
                ));
            }
            let report = prune::prune(&a.from, &a.backups, a.incomplete).await?;
            if a.json {
                print_json(&report);
            } else {
                println!("deleted {} backup(s)", report.deleted.len());
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::WalPush(a) => {
            let w = a.archive;
            let keys = Arc::new(Keyring::load(&w.key.key_file)?);
            lifeboat::commands::wal::wal_push(&a.path, &w.to, keys, compression(w.compression))
                .await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::WalFetch(a) => {
            use lifeboat::commands::wal::{wal_fetch, Fetched};
            let keys = Arc::new(Keyring::load(&a.key.key_file)?);
            match wal_fetch(&a.name, &a.dest, &a.from, keys).await {
                Ok(Fetched::Restored) => Ok(ExitCode::SUCCESS),
                // PostgreSQL asks for files past the end of the archive: routine.
                Ok(Fetched::NotArchived) => Ok(ExitCode::from(1)),
                Err(e) => {
                    eprintln!("error: {e}");
                    // Above 125: PostgreSQL aborts recovery instead of ending it early.
                    Ok(ExitCode::from(126))
                }
            }
        }
        Command::WalStream(a) => {
            use lifeboat::commands::wal_stream::{wal_stream, StreamOptions};
            wal_stream(StreamOptions {
                conn: a.conn.conn()?,
                slot: a.slot,
                spool: a.spool,
                to: a.archive.to,
                keys: Arc::new(Keyring::load(&a.archive.key.key_file)?),
                compression: compression(a.archive.compression),
                max_delay: a.max_wal_delay,
                status_file: a.status_file,
                http_addr: a.http_addr,
            })
            .await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Controller(a) => {
            let identity = a.identity.unwrap_or_else(|| {
                std::fs::read_to_string("/etc/hostname")
                    .map(|h| h.trim().to_string())
                    .ok()
                    .filter(|h| !h.is_empty())
                    .or_else(|| std::env::var("HOSTNAME").ok())
                    .unwrap_or_else(|| "lifeboat-controller".into())
            });
            let opts = lifeboat::controller::Options {
                image: a.image,
                metrics_addr: a.metrics_addr,
                namespace: a.namespace,
                lease_namespace: a.leader_election_namespace,
                lease_name: a.lease_name,
                identity,
                leader_election: a.leader_election,
            };
            if let Err(e) = lifeboat::controller::run(opts).await {
                eprintln!("error: {e}");
                return Ok(ExitCode::from(1));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Status(a) => {
            let policies = commands::status::load(&commands::status::StatusOptions {
                namespace: a.namespace,
                all_namespaces: a.all_namespaces,
                context: a.context,
            })
            .await?;
            let now = chrono::Utc::now();
            let statuses = lifeboat::status::summarize(&policies, now);
            match a.output {
                OutputArg::Json => print_json(&statuses),
                OutputArg::Table => print!("{}", lifeboat::status::table(&statuses, now)),
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Crds => {
            print!("{}", lifeboat::api::crds_yaml());
            Ok(ExitCode::SUCCESS)
        }
        Command::Keygen(a) => {
            keys::write_new_key(&a.out, &a.id, a.add)?;
            eprintln!(
                "wrote key {:?} to {} (mode 0600); keep a copy outside the cluster",
                a.id,
                a.out.display()
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn restore_point_in_time(a: RestoreArgs) -> Result<ExitCode, commands::Error> {
    use lifeboat::commands::pitr;
    use lifeboat::recovery::RecoveryTarget;
    let usage = commands::Error::Usage;
    let target = match (&a.target_time, &a.target_lsn) {
        (Some(t), _) => RecoveryTarget::Time(
            chrono::DateTime::parse_from_rfc3339(t)
                .map_err(|e| usage(format!("--target-time {t:?}: not an RFC 3339 time ({e})")))?
                .with_timezone(&chrono::Utc),
        ),
        (None, Some(l)) => {
            RecoveryTarget::Lsn(l.parse().map_err(|e| usage(format!("--target-lsn: {e}")))?)
        }
        (None, None) => RecoveryTarget::Latest,
    };
    let lifeboat = std::env::current_exe()
        .map_err(|e| usage(format!("cannot find this binary for restore_command: {e}")))?;
    if a.no_start && !a.checks.is_empty() {
        return Err(usage(
            "--check needs the server lifeboat starts: drop --no-start".into(),
        ));
    }
    let outcome = pitr::restore(pitr::PitrOptions {
        from: a.from,
        keys: Arc::new(Keyring::load(&a.key.key_file)?),
        key_file: a.key.key_file,
        data_dir: a.data_dir.expect("checked by the caller"),
        target,
        start: !a.no_start,
        keep_running: a.keep_running,
        run_as: a.run_as,
        port: a.server_port,
        conn: a.conn.conn()?,
        lifeboat,
        checks: a.checks.clone(),
        check_db: a.conn.maintenance_db.clone(),
    })
    .await;
    // The Job's termination message: the same summary as a logical
    // restore's, so a RestoreRequest reads either.
    if a.report_file.is_some() {
        let summary = match &outcome {
            Ok(r) => r.summary(a.checks.len()),
            Err(e) => {
                let step = if matches!(e, commands::Error::Check(_)) {
                    step::VERIFY
                } else {
                    step::RESTORE
                };
                RestoreSummary::failed(step, e)
            }
        };
        write_report(a.report_file.as_deref(), &summary)?;
    }
    let report = outcome?;
    if a.json {
        print_json(&report);
    } else {
        println!(
            "restored base backup {} (timeline {}, consistent at {} {}) from {} into {}",
            report.backup_id,
            report.base.timeline,
            report.base.stop_lsn,
            report.base.stopped_at.to_rfc3339(),
            report.destination,
            report.data_dir.display()
        );
        match &report.recovered {
            Some(p) => println!(
                "  recovered to {}: timeline {}, LSN {}, last commit {}{} ({:.1} s)",
                report.target,
                p.timeline,
                p.lsn,
                p.last_commit_time
                    .map(|t| t.to_rfc3339())
                    .unwrap_or_else(|| "none replayed".into()),
                if report.running {
                    "; server running"
                } else {
                    "; server stopped"
                },
                report.seconds
            ),
            None => println!(
                "  prepared for recovery to {}; start PostgreSQL on it to replay and promote",
                report.target
            ),
        }
        if report.ended_before_target {
            println!("  the archive ends before the target: replayed everything archived, all of it at or before the target");
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_new(&cli.log)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
    match run(cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", commands::error_chain(&e));
            ExitCode::from(1)
        }
    }
}
