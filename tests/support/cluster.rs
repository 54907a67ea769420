//! A private PostgreSQL 15 cluster for one test: its own data directory,
//! socket directory and port, run as the `postgres` user (PostgreSQL refuses
//! root). For tests that archive WAL, kill the server, read its pg_wal or
//! restore a data directory: the shared server that scripts/test.sh starts
//! must never be harmed, so these tests use their own. Stopped (immediate)
//! when dropped.

use super::kubelet::World;
use super::{bin, bucket_and_region, cli::Cli, pg_bin, s3_url, unique, write_private};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

pub const OS_USER: &str = "postgres";

/// Settings every private cluster starts with (in postgresql.conf, so a
/// base backup carries them to the restored server): TCP on loopback too,
/// commit timestamps for point-in-time targets, no fsync.
const SETTINGS: &str = "
listen_addresses = '127.0.0.1'
wal_level = replica
max_wal_senders = 10
track_commit_timestamp = on
fsync = off
full_page_writes = off
";

/// uid and gid of the `postgres` user.
pub fn postgres_ids() -> (u32, u32) {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap();
    lifeboat::recovery::passwd_ids(&passwd, OS_USER).expect("a postgres user (scripts/testbed.sh)")
}

/// Hands a file or directory (created when missing) and what it holds to
/// the postgres user, and lets it enter the directory above.
pub fn give_to_postgres(path: &Path) {
    if !path.exists() {
        std::fs::create_dir_all(path).unwrap();
    }
    let (uid, gid) = postgres_ids();
    run_ok(
        Command::new("chown")
            .arg("-R")
            .arg(format!("{uid}:{gid}"))
            .arg(path),
    );
    if let Some(parent) = path.parent() {
        run_ok(Command::new("chmod").arg("755").arg(parent));
    }
}

/// A `file://` destination the archive_command (run as postgres) can write.
pub fn shared_file_dest(root: &Path, name: &str) -> String {
    let dir = root.join(name);
    give_to_postgres(&dir);
    format!("file://{}", dir.display())
}

/// A temp directory the postgres user can enter.
pub fn shared_tempdir() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

/// A loopback port nobody listens on now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A PostgreSQL tool run as the postgres user, keeping this environment
/// (the S3 settings a restore_command needs).
pub fn as_postgres(tool: &str) -> Command {
    let mut c = Command::new("runuser");
    c.args(["-u", OS_USER, "--"]).arg(pg_bin().join(tool));
    c
}

#[track_caller]
pub fn run_ok(c: &mut Command) -> Output {
    let o = c.output().expect("command runs");
    assert!(
        o.status.success(),
        "{c:?}: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

pub struct Cluster {
    pub data: PathBuf,
    /// Socket directory (the host for libpq).
    pub socket: PathBuf,
    pub port: u16,
    log: PathBuf,
}

impl Cluster {
    /// initdb in `root/<name>` (trust auth, replication allowed by initdb's
    /// defaults) with [`SETTINGS`]; not started.
    pub fn init(root: &Path, name: &str) -> Cluster {
        let home = root.join(name);
        give_to_postgres(&home);
        let data = home.join("data");
        run_ok(
            as_postgres("initdb")
                .args(["-U", OS_USER, "-A", "trust", "--no-sync", "-D"])
                .arg(&data),
        );
        let c = Cluster {
            data,
            socket: home.clone(),
            port: free_port(),
            log: home.join("server.log"),
        };
        c.conf(SETTINGS);
        c
    }

    /// initdb + start, archiving every WAL file to `archive_to` with
    /// `key_file` (lifeboat wal-push as archive_command).
    pub fn archiving(root: &Path, archive_to: &[String], key_file: &Path) -> Cluster {
        let mut c = Cluster::init(root, &unique("pg"));
        c.archive_to(archive_to, key_file, &[]);
        c.start();
        c
    }

    /// A data directory that already exists (a restored base backup), not
    /// running: its socket and log go in it.
    pub fn at(data: &Path) -> Cluster {
        Cluster {
            data: data.to_path_buf(),
            socket: data.to_path_buf(),
            port: free_port(),
            log: data.join("server.log"),
        }
    }

    /// A server that `lifeboat restore --keep-running` left running: its
    /// socket is in its data directory.
    pub fn running_at(data: &Path, port: u16) -> Cluster {
        let mut c = Cluster::at(data);
        c.port = port;
        c
    }

    /// Appends settings to postgresql.conf (read at the next start).
    pub fn conf(&self, lines: &str) {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(self.data.join("postgresql.conf"))
            .unwrap();
        writeln!(f, "{lines}").unwrap();
    }

    /// archive_mode on, archive_command `lifeboat wal-push` to `to` with
    /// `key_file` (handed to postgres), and `more` settings.
    pub fn archive_to(&self, to: &[String], key_file: &Path, more: &[&str]) {
        give_to_postgres(key_file);
        let mut cmd = format!(
            "'{}' wal-push %p --key-file '{}'",
            bin(),
            key_file.display()
        );
        for t in to {
            cmd.push_str(&format!(" --to '{t}'"));
        }
        self.conf(&format!(
            "archive_mode = on\narchive_command = '{}'\n{}",
            cmd.replace('\'', "''"),
            more.join("\n")
        ));
    }

    /// Starts it on a new free port with `-o` `extra` server options.
    pub fn start_with(&mut self, extra: &str) {
        self.port = free_port();
        let opts = format!("-p {} -k {} {extra}", self.port, self.socket.display());
        let o = as_postgres("pg_ctl")
            .arg("-D")
            .arg(&self.data)
            .arg("-l")
            .arg(&self.log)
            .args(["-w", "-t", "120", "-o", &opts, "start"])
            .output()
            .unwrap();
        assert!(o.status.success(), "pg_ctl start: {}", self.server_log());
    }

    pub fn start(&mut self) {
        self.start_with("");
    }

    /// A fast shutdown, waited for.
    pub fn stop(&self) {
        run_ok(
            as_postgres("pg_ctl")
                .arg("-D")
                .arg(&self.data)
                .args(["-w", "-m", "fast", "stop"]),
        );
    }

    pub fn server_log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    #[track_caller]
    pub fn psql(&self, sql: &str) -> String {
        psql_at(&self.socket, self.port, sql)
    }

    /// `--host/--port/--user/--pg-bin` for lifeboat commands.
    pub fn conn_args(&self) -> Vec<String> {
        [
            "--host",
            self.socket.to_str().unwrap(),
            "--port",
            &self.port.to_string(),
            "--user",
            OS_USER,
            "--pg-bin",
            pg_bin().to_str().unwrap(),
        ]
        .map(String::from)
        .to_vec()
    }

    /// `lifeboat backup --method physical` of this server to `to` with `key`.
    pub fn base_backup(&self, to: &[&str], key: &str) -> Cli {
        Cli::new("backup")
            .opt("--method", "physical")
            .args(self.conn_args())
            .each("--to", to)
            .opt("--key-file", key)
    }

    /// Switches to a new WAL segment and waits until the one it closed is
    /// archived; returns that segment's name.
    pub fn switch_wal(&self) -> String {
        let seg = self.current_segment();
        self.psql("select pg_switch_wal()");
        self.wait_archived(&seg);
        seg
    }

    pub fn wait_archived(&self, name: &str) {
        let t0 = Instant::now();
        loop {
            let row = self.psql(
                "select coalesce(last_archived_wal, '-') || ' ' || coalesce(last_failed_wal, '-') from pg_stat_archiver",
            );
            let last = row.split(' ').next().unwrap_or_default().to_string();
            if last != "-" && last.as_str() >= name {
                return;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(60),
                "{name} not archived after 60 s (archived, failed: {row}); server log:\n{}",
                self.server_log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The server's copy of a WAL file.
    pub fn wal_file(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.data.join("pg_wal").join(name)).unwrap()
    }

    /// The WAL segment being written now.
    pub fn current_segment(&self) -> String {
        self.psql("select pg_walfile_name(pg_current_wal_lsn())")
    }

    /// kill -9 of the postmaster and every process it started, by their
    /// ids: the server dies as in a node failure, nothing is flushed.
    pub fn kill9(&self) {
        let Ok(pidfile) = std::fs::read_to_string(self.data.join("postmaster.pid")) else {
            return;
        };
        let pid = pidfile.lines().next().unwrap().trim().to_string();
        let mut pids = children_of(&pid);
        pids.push(pid);
        let _ = Command::new("kill")
            .arg("-9")
            .args(&pids)
            .stderr(std::process::Stdio::null())
            .status();
        // Wait until they are gone, so the data directory can be removed.
        for _ in 0..100 {
            if pids
                .iter()
                .all(|p| !Path::new(&format!("/proc/{p}")).exists())
            {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Ids of the processes whose parent is `pid` (from /proc/*/stat).
fn children_of(pid: &str) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        // "pid (comm) state ppid …": comm may hold spaces, so split after ')'.
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
            continue;
        };
        if rest.split_whitespace().nth(1) == Some(pid) {
            out.push(e.file_name().to_string_lossy().into_owned());
        }
    }
    out
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if self.data.join("postmaster.pid").exists() {
            let _ = as_postgres("pg_ctl")
                .arg("-D")
                .arg(&self.data)
                .args(["-m", "immediate", "-w", "stop"])
                .output();
        }
    }
}

/// Commit time (UTC, RFC 3339, microseconds) of the row of table t whose
/// id follows: `c.psql(&format!("{COMMIT_TS}3"))`.
pub const COMMIT_TS: &str = "select to_char(pg_xact_commit_timestamp(xmin) at time zone 'UTC', \
                             'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') from t where id = ";

/// Inserts rows `ids` into table t (id bigint), one transaction each: its
/// own commit record and commit time.
pub fn insert(c: &Cluster, ids: std::ops::RangeInclusive<i64>) {
    for i in ids {
        c.psql(&format!("insert into t (id) values ({i})"));
    }
}

/// Starts a restored data directory (archiving off), returns the ids in
/// table t, stops it.
pub fn ids_in(dir: &Path) -> Vec<i64> {
    let mut c = Cluster::at(dir);
    c.start_with("-c archive_mode=off");
    let ids = c
        .psql("select coalesce(string_agg(id::text, ',' order by id), '') from t")
        .split(',')
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().unwrap())
        .collect();
    c.stop();
    ids
}

#[track_caller]
pub fn psql_at(socket: &Path, port: u16, sql: &str) -> String {
    let out = run_ok(
        Command::new(pg_bin().join("psql"))
            .args(super::PSQL_FLAGS)
            .args(["-U", OS_USER, "-h"])
            .arg(socket)
            .args(["-p", &port.to_string(), "-d", "postgres", "-c", sql]),
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A cluster in `root` that archives its WAL, with the key of the world's
/// Secret `backup-keys`, to `prefix` (the one the controller gives the
/// policy, e.g. `prod/shop/orders`) in both of the world's buckets; the
/// Secret `orders-db` then names it (its port, user postgres).
pub fn archiving_for(w: &mut World, root: &Path, prefix: &str) -> Cluster {
    let key = root.join("keys");
    write_private(&key, &w.secrets["backup-keys"]["keys"]);
    let archive: Vec<String> = w
        .buckets
        .iter()
        .map(|url| {
            let (bucket, region) = bucket_and_region(url);
            s3_url(&bucket, &region, prefix)
        })
        .collect();
    let c = Cluster::archiving(root, &archive, &key);
    let db = w.secrets.get_mut("orders-db").unwrap();
    db.insert("port".into(), c.port.to_string());
    db.insert("user".into(), "postgres".into());
    c
}
