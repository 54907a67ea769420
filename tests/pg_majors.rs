//! PostgreSQL 13 to 17: lifeboat runs the programs of the major each server
//! needs, from a per-major root (`LIFEBOAT_PG_ROOT`, `<root>/<major>/bin`).
//!
//! The servers are real: the host's 15 and, for the others, the server of a
//! Debian root filesystem (13: bullseye, 17: trixie) that scripts/testbed.sh
//! starts on loopback (scripts/pgmajor.sh). `LIFEBOAT_PG_MAJORS` lists them
//! ("15 17" by default; the whole matrix: `LIFEBOAT_PG_MAJORS="13 15 17"
//! scripts/test.sh --test pg_majors`), `LIFEBOAT_PG<major>_PORT` their ports.
//! Every lifeboat command here runs without `LIFEBOAT_PG_BIN`, so the choice
//! by major is what picks the programs.

mod support;
use support::cluster::{free_port, give_to_postgres, shared_file_dest, shared_tempdir};
use support::*;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// One server of the matrix.
struct Server {
    major: u32,
    port: u16,
}

impl Server {
    /// `--host --port --user` of this server.
    fn conn(&self) -> [String; 6] {
        [
            "--host",
            "127.0.0.1",
            "--port",
            &self.port.to_string(),
            "--user",
            "postgres",
        ]
        .map(String::from)
    }

    /// A program of `major` in the root, run against this server.
    fn program(&self, major: u32, name: &str) -> Command {
        let mut c = Command::new(pg_root().join(major.to_string()).join("bin").join(name));
        c.args([
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-p",
            &self.port.to_string(),
        ]);
        c
    }

    fn psql(&self, db: &str, sql: &str) -> String {
        stdout_of(
            self.program(self.major, "psql")
                .args(PSQL_FLAGS)
                .args(["-d", db, "-c", sql]),
        )
        .trim()
        .to_string()
    }

    fn create_db(&self, prefix: &str) -> String {
        let db = unique(&format!("{prefix}_pg{}", self.major));
        self.psql("postgres", &format!("create database {db}"));
        db
    }

    fn has_db(&self, db: &str) -> bool {
        self.psql(
            "postgres",
            &format!("select count(*) from pg_database where datname = '{db}'"),
        ) == "1"
    }

    /// Schema and data as plain SQL, by the newest pg_dump of the root (the
    /// same program for every server, so dumps of two servers compare).
    fn dump(&self, db: &str) -> String {
        self.dump_with(db, &[])
    }

    /// What must be equal after a restore into another major: every row,
    /// and every object by name and type (the server renders some
    /// definitions — views — in its own major's words). Not the `public`
    /// schema's privileges: 15 changed their default, and a restore into 15
    /// or later keeps the new server's.
    fn contents(&self, db: &str) -> (String, Vec<String>) {
        let data = self
            .dump_with(db, &["--data-only"])
            .lines()
            .filter(|l| !l.starts_with("-- Dumped from database version"))
            .collect::<Vec<_>>()
            .join("\n");
        let objects = self
            .dump_with(db, &["--schema-only"])
            .lines()
            .filter(|l| l.starts_with("-- Name: ") && !l.contains("public; Type: SCHEMA"))
            .filter(|l| !l.contains("SCHEMA public; Type: ACL"))
            .map(str::to_string)
            .collect();
        (data, objects)
    }

    fn dump_with(&self, db: &str, flags: &[&str]) -> String {
        let newest = majors().iter().map(|s| s.major).max().unwrap();
        stdout_of(
            self.program(newest, "pg_dump")
                .args(["--restrict-key=lifeboattest", "--no-owner"])
                .args(flags)
                .args(["-d", db]),
        )
    }
}

fn pg_root() -> PathBuf {
    PathBuf::from(std::env::var("LIFEBOAT_PG_ROOT").expect("LIFEBOAT_PG_ROOT (scripts/testbed.sh)"))
}

/// The servers of `LIFEBOAT_PG_MAJORS`; none (the test says SKIPPED) when it
/// is unset, unless the test bed requires every tool.
fn majors() -> Vec<Server> {
    let Ok(list) = std::env::var("LIFEBOAT_PG_MAJORS") else {
        assert!(
            std::env::var("LIFEBOAT_REQUIRE_TOOLS").is_err(),
            "LIFEBOAT_PG_MAJORS is not set: run with scripts/test.sh, which starts the servers"
        );
        eprintln!("SKIPPED: LIFEBOAT_PG_MAJORS is not set (scripts/test.sh sets it)");
        return Vec::new();
    };
    list.split_whitespace()
        .map(|m| {
            let major: u32 = m.parse().expect("a major in LIFEBOAT_PG_MAJORS");
            let port = std::env::var(format!("LIFEBOAT_PG{major}_PORT"))
                .unwrap_or_else(|_| panic!("LIFEBOAT_PG{major}_PORT (scripts/testbed.sh)"))
                .parse()
                .unwrap();
            Server { major, port }
        })
        .collect()
}

fn server(major: u32) -> Option<Server> {
    majors().into_iter().find(|s| s.major == major)
}

/// A lifeboat command choosing programs from `root`, never `LIFEBOAT_PG_BIN`.
fn with_root(cli: &Cli, root: &Path) -> Command {
    let mut c = cli.cmd();
    c.env_remove("LIFEBOAT_PG_BIN")
        .env("LIFEBOAT_PG_ROOT", root);
    c
}

/// Ok(JSON report) or Err(stderr) of `cli` run with the test bed's root.
fn run(cli: Cli) -> Result<serde_json::Value, String> {
    run_in(cli, &pg_root())
}

fn run_in(cli: Cli, root: &Path) -> Result<serde_json::Value, String> {
    let o = with_root(&cli, root).output().expect("lifeboat runs");
    if o.status.success() {
        Ok(serde_json::from_slice(&o.stdout).expect("json report"))
    } else {
        Err(stderr(&o))
    }
}

/// The manifest of backup `id` in a `file://` destination, as JSON.
fn manifest(dest: &str, id: &str) -> serde_json::Value {
    let dir = PathBuf::from(dest.strip_prefix("file://").unwrap());
    let path = find(&dir, id).expect("the backup's directory");
    serde_json::from_slice(&std::fs::read(path.join("manifest.json")).unwrap()).unwrap()
}

fn find(dir: &Path, name: &str) -> Option<PathBuf> {
    for e in std::fs::read_dir(dir).ok()?.flatten() {
        if e.file_name() == name {
            return Some(e.path());
        }
        if e.path().is_dir() {
            if let Some(p) = find(&e.path(), name) {
                return Some(p);
            }
        }
    }
    None
}

/// A root holding only the host's PostgreSQL 15 programs.
fn root_of_15_only(dir: &Path) -> PathBuf {
    let root = dir.join("pg-root-15-only");
    std::fs::create_dir_all(&root).unwrap();
    std::os::unix::fs::symlink("/usr/lib/postgresql/15", root.join("15")).unwrap();
    root
}

#[test]
fn logical_backup_restore_and_drill_on_every_major() {
    for s in &majors() {
        let t0 = Instant::now();
        let dir = tempfile::tempdir().unwrap();
        let key = keyfile(dir.path(), "k");
        let k = key.to_str().unwrap();
        let dest = format!("file://{}/bk", dir.path().display());
        let db = s.create_db("rich");
        s.psql(&db, RICH_SQL);

        let r = run(backup(&db, k, &[&dest]).args(s.conn()).json()).unwrap();
        let id = r["backup_id"].as_str().unwrap();
        let source = &manifest(&dest, id)["source"];
        let server_version = source["server_version"].as_str().unwrap();
        assert!(
            server_version.starts_with(&format!("{}.", s.major)),
            "{source}"
        );
        // The server's own pg_dump dumped it (every major of the matrix is
        // installed), and the manifest says so.
        let client = source["client_version"].as_str().unwrap();
        assert!(client.starts_with(&format!("{}.", s.major)), "{source}");

        let listed = run(Cli::new("list").opt("--from", &dest).json()).unwrap();
        let listed = listed.to_string();
        assert!(
            listed.contains(&format!("{server_version} (pg_dump {}.", s.major)),
            "{listed}"
        );

        let restored = unique(&format!("restored_pg{}", s.major));
        run(restore(&[&dest], k).args(s.conn()).create(&restored).json()).unwrap();
        assert_eq!(s.dump(&db), s.dump(&restored), "PostgreSQL {}", s.major);
        // In parallel: each loader is fed only its own tables' blocks, found
        // by walking this major's archive format (1.14 for 15, 1.16 for 17).
        let parallel = unique(&format!("parallel_pg{}", s.major));
        let r = run(restore(&[&dest], k)
            .args(s.conn())
            .create(&parallel)
            .opt("--jobs", "2")
            .json())
        .unwrap();
        assert_eq!(r["jobs"], 2, "{r}");
        assert_eq!(s.dump(&db), s.dump(&parallel), "PostgreSQL {}", s.major);

        // A restore drill: restored, checked, dropped.
        let drill = unique(&format!("drill_pg{}", s.major));
        let r = run(restore(&[&dest], k)
            .args(s.conn())
            .create(&drill)
            .opt("--check", "select count(*) = 5000 from sales.orders")
            .opt(
                "--check",
                "select count(*) = 1 from pg_largeobject_metadata",
            )
            .arg("--drop-after")
            .json())
        .unwrap();
        assert_eq!(r["backup_id"], id);
        assert!(!s.has_db(&drill), "the drill's database is dropped");
        let failing = run(restore(&[&dest], k)
            .args(s.conn())
            .create(&unique("drill_bad"))
            .opt("--check", "select count(*) = 1 from sales.orders")
            .arg("--drop-after")
            .json())
        .unwrap_err();
        assert!(
            failing.contains("select count(*) = 1 from sales.orders"),
            "{failing}"
        );
        eprintln!(
            "PostgreSQL {} ({server_version}, pg_dump {client}): backup, restore, drills in {:.1} s",
            s.major,
            t0.elapsed().as_secs_f64()
        );
    }
}

#[test]
fn a_dump_restores_into_a_newer_major_and_is_refused_by_an_older_one() {
    let servers = majors();
    let (Some(old), Some(new)) = (
        servers.iter().min_by_key(|s| s.major),
        servers.iter().max_by_key(|s| s.major),
    ) else {
        return;
    };
    if old.major == new.major {
        eprintln!("SKIPPED: one major only");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let key = keyfile(dir.path(), "k");
    let k = key.to_str().unwrap();

    let from_old = format!("file://{}/old", dir.path().display());
    let db = old.create_db("up");
    old.psql(&db, RICH_SQL);
    run(backup(&db, k, &[&from_old]).args(old.conn()).json()).unwrap();
    let up = unique("upgraded");
    run(restore(&[&from_old], k).args(new.conn()).create(&up).json()).unwrap();
    let (data, objects) = old.contents(&db);
    assert!(objects.len() > 10, "{objects:?}");
    assert_eq!(
        (data, objects),
        new.contents(&up),
        "{} → {}",
        old.major,
        new.major
    );

    let from_new = format!("file://{}/new", dir.path().display());
    let db = new.create_db("down");
    new.psql(&db, "create table t (x int); insert into t values (1)");
    run(backup(&db, k, &[&from_new]).args(new.conn()).json()).unwrap();
    let down = unique("downgraded");
    let e = run(restore(&[&from_new], k)
        .args(old.conn())
        .create(&down)
        .json())
    .unwrap_err();
    assert!(
        e.contains(&format!(
            "the backup is of a PostgreSQL {} server and the target runs {}",
            new.major, old.major
        )) && e.contains(&format!("restore into PostgreSQL {} or newer", new.major)),
        "{e}"
    );
    assert!(!old.has_db(&down), "nothing is created on a refused target");
}

#[test]
fn a_missing_major_names_it_and_what_to_install() {
    let Some(s) = server(17) else {
        eprintln!("SKIPPED: PostgreSQL 17 is not in LIFEBOAT_PG_MAJORS");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let key = keyfile(dir.path(), "k");
    let root = root_of_15_only(dir.path());
    let db = s.create_db("missing");
    let dest = format!("file://{}/bk", dir.path().display());
    let e = run_in(
        backup(&db, key.to_str().unwrap(), &[&dest]).args(s.conn()),
        &root,
    )
    .unwrap_err();
    let line = e.lines().find(|l| l.contains("no pg_dump")).unwrap_or(&e);
    assert!(
        line.contains(&format!(
            "no pg_dump of major 17 or newer for the PostgreSQL 17 server at 127.0.0.1:{}: {} has majors 15; install postgresql-client-17",
            s.port,
            root.display()
        )),
        "{e}"
    );
    assert!(find(&dir.path().join("bk"), "manifest.json").is_none());

    // A base backup needs pg_basebackup of exactly 17: checked before the
    // server's WAL settings, before anything is written.
    let e = run_in(
        Cli::new("backup")
            .opt("--method", "physical")
            .args(s.conn())
            .opt("--to", &dest)
            .opt("--key-file", key.to_str().unwrap()),
        &root,
    )
    .unwrap_err();
    assert!(
        e.contains("no pg_basebackup of major 17 for the PostgreSQL 17 server")
            && e.contains("install postgresql-client-17"),
        "{e}"
    );
    assert!(find(&dir.path().join("bk"), "manifest.json").is_none());

    // wal-stream says so at each attempt to start pg_receivewal, and keeps
    // retrying (the programs may be installed while it runs).
    let cli = Cli::new("wal-stream")
        .args(s.conn())
        .opt("--slot", &unique("lifeboat_missing"))
        .opt("--spool", dir.path().join("spool").to_str().unwrap())
        .opt("--key-file", key.to_str().unwrap())
        .opt("--to", &dest);
    let stream = Stream::start(&cli, &root, dir.path().join("wal-stream.log"));
    wait(&stream, "wal-stream's error", || {
        stream
            .log()
            .contains("no pg_receivewal of major 17 for the PostgreSQL 17 server")
    });
    assert!(
        stream.log().contains("install postgresql-client-17"),
        "{}",
        stream.log()
    );
}

/// A running `lifeboat wal-stream`, stopped with SIGTERM (so its
/// pg_receivewal stops too) when dropped.
struct Stream(Child, PathBuf);

impl Stream {
    /// `cli` (a wal-stream) with the programs of `root`, its log in `log`.
    fn start(cli: &Cli, root: &Path, log: PathBuf) -> Stream {
        let child = with_root(cli, root)
            .env("LIFEBOAT_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Stream(child, log)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.1).unwrap_or_default()
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let _ = self.0.wait();
    }
}

/// On every major but the host's 15 (tests/pitr.rs and tests/walstream.rs
/// cover it): 17 in every run, 13 too in the matrix.
#[test]
fn physical_backup_with_wal_streaming_and_point_in_time_restore() {
    let others: Vec<Server> = majors().into_iter().filter(|s| s.major != 15).collect();
    if others.is_empty() {
        eprintln!("SKIPPED: no major but 15 in LIFEBOAT_PG_MAJORS");
    }
    for s in &others {
        physical_round_trip(s);
    }
}

fn physical_round_trip(s: &Server) {
    let m = s.major;
    // The recovering server (run as postgres) reads the key and the archive.
    let dir = shared_tempdir();
    let root = dir.path();
    let key = keyfile(root, "k");
    give_to_postgres(&key);
    let k = key.to_str().unwrap();
    let dest = shared_file_dest(root, "archive");
    let table = unique("pitr");
    s.psql(
        "postgres",
        &format!("create table {table} (id int, batch text)"),
    );

    // WAL streamed on a slot (the server's archive_mode is off).
    let slot = unique("lifeboat");
    let status = root.join("status.json");
    let log = root.join("wal-stream.log");
    let cli = Cli::new("wal-stream")
        .args(s.conn())
        .opt("--slot", &slot)
        .opt("--spool", root.join("spool").to_str().unwrap())
        .opt("--key-file", k)
        .opt("--max-wal-delay", "2s")
        .opt("--status-file", status.to_str().unwrap())
        .opt("--to", &dest);
    let stream = Stream::start(&cli, &pg_root(), log);
    wait(&stream, "the slot in use", || {
        s.psql(
            "postgres",
            &format!(
                "select count(*) from pg_replication_slots where slot_name = '{slot}' and active"
            ),
        ) == "1"
    });
    let t0 = Instant::now();
    let r = run(Cli::new("backup")
        .opt("--method", "physical")
        .args(s.conn())
        .opt("--to", &dest)
        .opt("--key-file", k)
        .json())
    .unwrap();
    let id = r["backup_id"].as_str().unwrap().to_string();
    let backup_s = t0.elapsed().as_secs_f64();
    let source = &manifest(&dest, &id)["source"];
    assert!(
        source["server_version"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{m}.")),
        "{source}"
    );
    assert!(
        source["client_version"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{m}.")),
        "{source}"
    );

    s.psql(
        "postgres",
        &format!("insert into {table} select i, 'A' from generate_series(1, 100) i"),
    );
    let target = s.psql(
        "postgres",
        r#"select to_char(clock_timestamp() at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')"#,
    );
    s.psql(
        "postgres",
        &format!("insert into {table} select i, 'B' from generate_series(1, 10) i"),
    );
    let segment = s.psql("postgres", "select pg_walfile_name(pg_current_wal_lsn())");
    s.psql("postgres", "select pg_switch_wal()");
    wait(&stream, "the segment after the target archived", || {
        std::fs::read(&status)
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .and_then(|v| v["lastSegment"].as_str().map(|l| l >= segment.as_str()))
            .unwrap_or(false)
    });

    // Without that major's server the restore stops before unpacking.
    let data = root.join("restored");
    let e = run_in(
        restore(&[&dest], k)
            .data_dir(&data, free_port())
            .opt("--target-time", &target),
        &root_of_15_only(root),
    )
    .unwrap_err();
    assert!(
        e.contains(&format!(
            "no postgres of major {m} to replay backup {id} of a PostgreSQL {m}."
        )) && e.contains(&format!("install postgresql-{m}")),
        "{e}"
    );
    assert!(std::fs::read_dir(&data).map_or(true, |mut d| d.next().is_none()));

    // With it: batch A back, batch B (after the target) not.
    let t1 = Instant::now();
    let r = run(restore(&[&dest], k)
        .data_dir(&data, free_port())
        .opt("--target-time", &target)
        .opt(
            "--check",
            &format!("select count(*) = 100 from {table} where batch = 'A'"),
        )
        .opt(
            "--check",
            &format!("select count(*) = 0 from {table} where batch = 'B'"),
        )
        .json())
    .unwrap_or_else(|e| panic!("{e}\nwal-stream:\n{}", stream.log()));
    assert_eq!(r["backup_id"], id.as_str());
    assert!(r["recovered"]["timeline"].as_u64().unwrap() >= 2, "{r}");
    eprintln!(
        "PostgreSQL {m} physical: base backup {backup_s:.1} s, restore to {target} {:.1} s",
        t1.elapsed().as_secs_f64()
    );
    drop(stream);
    s.psql(
        "postgres",
        &format!("select pg_drop_replication_slot('{slot}')"),
    );
}

#[track_caller]
fn wait(stream: &Stream, what: &str, mut done: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !done() {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "timed out waiting for {what}; wal-stream:\n{}",
            stream.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
