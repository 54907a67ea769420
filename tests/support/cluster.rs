//! A private PostgreSQL 15 cluster for one test: its own data directory,
//! socket directory and port, run as the `postgres` user (PostgreSQL refuses
//! root), with WAL archived by `lifeboat wal-push` to the given destinations.
//! Stopped (immediate) when dropped.

use super::{bin, pg_bin, unique};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

pub const OS_USER: &str = "postgres";

/// uid and gid of the `postgres` user.
pub fn postgres_ids() -> (u32, u32) {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap();
    lifeboat::recovery::passwd_ids(&passwd, OS_USER).expect("a postgres user (scripts/testbed.sh)")
}

/// Hands a path to the postgres user (a key file its archive_command reads).
pub fn give_to_postgres(path: &Path) {
    let (uid, gid) = postgres_ids();
    std::os::unix::fs::chown(path, Some(uid), Some(gid)).unwrap();
}

/// A `file://` destination the archive_command (run as postgres) can write.
pub fn shared_file_dest(root: &Path, name: &str) -> String {
    let dir = root.join(name);
    std::fs::create_dir(&dir).unwrap();
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

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn as_postgres(tool: &str) -> Command {
    let mut c = Command::new("runuser");
    c.args(["-u", OS_USER, "--"]).arg(pg_bin().join(tool));
    c
}

#[track_caller]
fn run(mut c: Command) -> String {
    let out = c.output().expect("runs");
    assert!(
        out.status.success(),
        "{c:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

pub struct Cluster {
    pub data: PathBuf,
    /// Socket directory (the host for libpq).
    pub socket: PathBuf,
    pub port: u16,
}

impl Cluster {
    /// initdb + start, archiving every WAL file to `archive_to` with `key_file`.
    pub fn start(root: &Path, archive_to: &[String], key_file: &Path) -> Cluster {
        let home = root.join(unique("pg"));
        std::fs::create_dir(&home).unwrap();
        give_to_postgres(&home);
        give_to_postgres(key_file);
        let data = home.join("data");
        let mut init = as_postgres("initdb");
        init.arg("-D")
            .arg(&data)
            .args(["-U", "postgres", "-A", "trust", "--no-sync"]);
        run(init);
        let mut archive = format!(
            "'{}' wal-push %p --key-file '{}'",
            bin(),
            key_file.display()
        );
        for to in archive_to {
            archive.push_str(&format!(" --to '{to}'"));
        }
        let port = free_port();
        let conf = format!(
            "\nport = {port}\nlisten_addresses = ''\nunix_socket_directories = '{home}'\n\
             wal_level = replica\narchive_mode = on\narchive_command = '{}'\n\
             track_commit_timestamp = on\nfsync = off\nfull_page_writes = off\n",
            archive.replace('\'', "''"),
            home = home.display()
        );
        let path = data.join("postgresql.conf");
        let mut text = std::fs::read_to_string(&path).unwrap();
        text.push_str(&conf);
        std::fs::write(&path, text).unwrap();
        let c = Cluster {
            socket: home.clone(),
            data,
            port,
        };
        c.pg_ctl("start");
        c
    }

    /// A server that `lifeboat restore --keep-running` left running: its
    /// socket is in its data directory.
    pub fn running_at(data: &Path, port: u16) -> Cluster {
        Cluster {
            data: data.to_path_buf(),
            socket: data.to_path_buf(),
            port,
        }
    }

    fn pg_ctl(&self, what: &str) {
        let mut c = as_postgres("pg_ctl");
        c.arg("-D")
            .arg(&self.data)
            .args(["-w", "-l"])
            .arg(self.data.join("server.log"))
            .args(["-m", "fast", what]);
        run(c);
    }

    pub fn stop(&self) {
        self.pg_ctl("stop");
    }

    /// Connection flags for `lifeboat backup`.
    pub fn conn_args(&self) -> Vec<String> {
        vec![
            "--host".into(),
            self.socket.display().to_string(),
            "--port".into(),
            self.port.to_string(),
            "--user".into(),
            "postgres".into(),
        ]
    }

    #[track_caller]
    pub fn psql(&self, sql: &str) -> String {
        psql_at(&self.socket, self.port, sql)
    }

    /// Switches to a new WAL segment and waits until the one it closed is
    /// archived; returns that segment's name.
    pub fn switch_wal(&self) -> String {
        let seg = self.psql("select pg_walfile_name(pg_current_wal_lsn())");
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
                std::fs::read_to_string(self.data.join("server.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if self.data.join("postmaster.pid").exists() {
            let _ = as_postgres("pg_ctl")
                .arg("-D")
                .arg(&self.data)
                .args(["-m", "immediate", "stop"])
                .output();
        }
    }
}

#[track_caller]
pub fn psql_at(socket: &Path, port: u16, sql: &str) -> String {
    let mut c = Command::new(pg_bin().join("psql"));
    c.args(super::PSQL_FLAGS)
        .args(["-U", "postgres", "-h"])
        .arg(socket)
        .args(["-p", &port.to_string(), "-d", "postgres", "-c", sql]);
    run(c)
}
