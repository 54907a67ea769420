//! A private PostgreSQL 15 cluster per test, in a temp dir, run as the
//! `postgres` user (PostgreSQL refuses root): for tests that kill the server,
//! read its pg_wal or restore a data directory. The shared server that
//! scripts/test.sh starts must never be harmed, so these tests use their own.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use super::pg_bin;

pub struct WalCluster {
    pub data: PathBuf,
    pub port: u16,
    log: PathBuf,
}

/// A loopback port nobody listens on now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Runs a command as the postgres user, keeping this environment (the S3
/// settings a restore_command needs).
pub fn as_postgres(program: &Path) -> Command {
    let mut c = Command::new("runuser");
    c.args(["-u", "postgres", "--"]).arg(program);
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

/// Makes `dir` (and the temp dir above it) usable by the postgres user.
pub fn give_to_postgres(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    run_ok(Command::new("chown").args(["-R", "postgres"]).arg(dir));
    if let Some(parent) = dir.parent() {
        run_ok(Command::new("chmod").arg("755").arg(parent));
    }
}

impl WalCluster {
    /// initdb in `root/<name>` (trust auth, loopback replication allowed by
    /// initdb's defaults), not started.
    pub fn init(root: &Path, name: &str) -> Self {
        let dir = root.join(name);
        give_to_postgres(&dir);
        let data = dir.join("data");
        run_ok(
            as_postgres(&pg_bin().join("initdb"))
                .args(["-U", "postgres", "-A", "trust", "--no-sync", "-D"])
                .arg(&data),
        );
        Self::at(data)
    }

    /// A data directory that already exists (a restored base backup).
    pub fn at(data: PathBuf) -> Self {
        let log = data.parent().unwrap().join("server.log");
        WalCluster {
            data,
            port: free_port(),
            log,
        }
    }

    pub fn start(&mut self) {
        self.port = free_port();
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c wal_level=replica -c max_wal_senders=10 -c fsync=off -c full_page_writes=off",
            self.port,
            self.data.parent().unwrap().display()
        );
        let o = as_postgres(&pg_bin().join("pg_ctl"))
            .arg("-D")
            .arg(&self.data)
            .arg("-l")
            .arg(&self.log)
            .args(["-w", "-t", "120", "-o", &opts, "start"])
            .output()
            .unwrap();
        assert!(o.status.success(), "pg_ctl start: {}", self.server_log());
    }

    /// Appends settings to postgresql.auto.conf (read at the next start).
    pub fn conf(&self, lines: &str) {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(self.data.join("postgresql.auto.conf"))
            .unwrap();
        writeln!(f, "{lines}").unwrap();
    }

    pub fn server_log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// psql as postgres over TCP; the output unaligned, tuples only.
    pub fn psql(&self, sql: &str) -> String {
        let o = self.try_psql(sql);
        assert!(
            o.status.success(),
            "psql {sql}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    }

    pub fn try_psql(&self, sql: &str) -> Output {
        Command::new(pg_bin().join("psql"))
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
            .args(["-h", "127.0.0.1", "-U", "postgres", "-d", "postgres"])
            .args(["-p", &self.port.to_string(), "-c", sql])
            .output()
            .unwrap()
    }

    /// `--host/--port/--user` for lifeboat commands.
    pub fn conn_args(&self) -> Vec<String> {
        [
            "--host",
            "127.0.0.1",
            "--port",
            &self.port.to_string(),
            "--user",
            "postgres",
            "--pg-bin",
            pg_bin().to_str().unwrap(),
        ]
        .map(String::from)
        .to_vec()
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
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    pub fn stop(&self) {
        let _ = as_postgres(&pg_bin().join("pg_ctl"))
            .arg("-D")
            .arg(&self.data)
            .args(["-m", "immediate", "-w", "stop"])
            .output();
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

impl Drop for WalCluster {
    fn drop(&mut self) {
        if self.data.join("postmaster.pid").exists() {
            self.stop();
        }
    }
}
