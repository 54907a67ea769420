//! `lifeboat wal-stream` against a private PostgreSQL 15 cluster: segments
//! and the partial segment reach every destination byte-identical, a kill -9
//! loses nothing, and the RPO drill measures what a destroyed server loses.

mod support;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::cluster::*;
use support::*;

/// A running `lifeboat wal-stream`, its log in a file.
struct Stream {
    child: Child,
    log: PathBuf,
    /// Where it serves /status, /metrics and /healthz.
    http: std::net::SocketAddr,
}

impl Stream {
    /// Started and serving /healthz. The HTTP port is picked free and then
    /// handed over, so a concurrent test may take it first: then wal-stream
    /// exits at once, and it is started again on another.
    fn start(c: &Cluster, root: &Path, to: &[&str], key: &Path, delay: &str) -> Stream {
        for _ in 0..3 {
            let mut s = Stream::spawn(c, root, to, key, delay);
            let t0 = Instant::now();
            while t0.elapsed() < Duration::from_secs(30) {
                if s.child.try_wait().unwrap().is_some() {
                    let log = s.log();
                    assert!(log.contains("--http-addr"), "wal-stream exited: {log}");
                    break;
                }
                if s.healthy() {
                    return s;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            s.kill9();
        }
        panic!("wal-stream did not start serving in 3 attempts");
    }

    fn spawn(c: &Cluster, root: &Path, to: &[&str], key: &Path, delay: &str) -> Stream {
        let log = root.join(format!("{}.log", unique("wal-stream")));
        let http = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let mut args: Vec<String> =
            vec!["wal-stream".into(), "--http-addr".into(), http.to_string()];
        args.extend(c.conn_args());
        for (flag, v) in [
            ("--spool", root.join("spool").to_str().unwrap()),
            ("--key-file", key.to_str().unwrap()),
            ("--max-wal-delay", delay),
            ("--status-file", root.join("status.json").to_str().unwrap()),
        ] {
            args.extend([flag.to_string(), v.to_string()]);
        }
        for t in to {
            args.extend(["--to".to_string(), t.to_string()]);
        }
        let child = Command::new(bin())
            .args(&args)
            .env("LIFEBOAT_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Stream { child, log, http }
    }

    /// GET a path of its HTTP server: (status line, body).
    fn get(&self, path: &str) -> (String, String) {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(self.http).unwrap();
        write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
        (
            head.lines().next().unwrap_or("").to_string(),
            body.to_string(),
        )
    }

    /// Whether /healthz answers 200 (no panic while it is not up yet).
    fn healthy(&self) -> bool {
        use std::io::{Read, Write};
        let Ok(mut s) = std::net::TcpStream::connect(self.http) else {
            return false;
        };
        let mut out = String::new();
        write!(s, "GET /healthz HTTP/1.0\r\nHost: x\r\n\r\n").is_ok()
            && s.read_to_string(&mut out).is_ok()
            && out.split_whitespace().nth(1) == Some("200")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// kill -9: no chance to ship or clean anything.
    fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        self.kill9();
    }
}

#[track_caller]
fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) -> Duration {
    let t0 = Instant::now();
    while !f() {
        assert!(t0.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
    t0.elapsed()
}

fn slot_active(c: &Cluster) -> bool {
    c.psql("select count(*) from pg_replication_slots where slot_name = 'lifeboat' and active")
        == "1"
}

/// wal-fetch of `name` (falling back to its partial): Some(bytes) when
/// archived, None when not (exit 1); anything else fails the test.
fn fetch(name: &str, from: &str, key: &Path, dir: &Path) -> Option<Vec<u8>> {
    let out = dir.join(unique("fetched"));
    let o = lifeboat(&[
        "wal-fetch",
        name,
        out.to_str().unwrap(),
        "--from",
        from,
        "--key-file",
        key.to_str().unwrap(),
    ]);
    match o.status.code() {
        Some(0) => {
            let b = std::fs::read(&out).unwrap();
            std::fs::remove_file(&out).unwrap();
            Some(b)
        }
        Some(1) => None,
        _ => panic!("wal-fetch {name} from {from}: {}", stderr(&o)),
    }
}

fn lsn_offset_in_segment(c: &Cluster, lsn_sql: &str) -> usize {
    c.psql(&format!(
        "select ({lsn_sql} - '0/0'::pg_lsn)::numeric % (16*1024*1024)"
    ))
    .parse()
    .unwrap()
}

#[test]
fn segments_and_the_partial_reach_every_destination_and_survive_a_kill() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let key = keyfile(root, "k");
    let local = format!("file://{}/archive", root.display());
    let s3 = bucket("eu-west-1");
    let mut c = Cluster::init(root, "pg");
    c.start();
    let mut stream = Stream::start(&c, root, &[&local, &s3], &key, "2s");
    wait_for(
        "the replication slot in use",
        Duration::from_secs(30),
        || slot_active(&c),
    );

    // Completed segments: written by the server, switched, archived.
    c.psql("create table t (i int, pad text); insert into t select i, repeat('x', 100) from generate_series(1, 20000) i");
    let first = c.current_segment();
    c.psql("select pg_switch_wal()");
    c.psql("insert into t values (1, 'after the first switch')");
    let second = c.current_segment();
    c.psql("select pg_switch_wal()");
    for seg in [&first, &second] {
        wait_for(
            &format!("{seg} in the file destination"),
            Duration::from_secs(30),
            || {
                root.join(format!("archive/wal/00000001/{seg}.lbk"))
                    .exists()
            },
        );
        wait_for(&format!("{seg} in S3"), Duration::from_secs(30), || {
            s3_keys(&s3).contains(&format!("prod/orders/wal/00000001/{seg}.lbk"))
        });
        let server = c.wal_file(seg);
        for from in [&local, &s3] {
            let got = fetch(seg, from, &key, root).expect("archived");
            assert!(got == server, "{seg} from {from} differs from pg_wal");
        }
        // Archived whole: no partial copy is left behind.
        assert!(!root
            .join(format!("archive/wal/00000001/{seg}.partial.lbk"))
            .exists());
    }
    let status: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("status.json")).unwrap()).unwrap();
    assert!(
        status["lastSegment"].as_str() >= Some(second.as_str()),
        "{status}"
    );
    assert!(status["lastShippedAt"].is_string(), "{status}");
    assert!(status["lagSeconds"].is_number(), "{status}");
    // The same state over HTTP, as the operator reads it, and as metrics.
    let (line, body) = stream.get("/status");
    assert!(line.contains("200"), "{line}");
    let served: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(
        served["lastSegment"].as_str() >= Some(second.as_str()),
        "{served}"
    );
    let (_, metrics) = stream.get("/metrics");
    assert!(
        metrics.contains("lifeboat_wal_archive_lag_seconds "),
        "{metrics}"
    );

    // The partial segment: no switch, yet the new row is archived within
    // the delay (2 s) plus polling and upload slack.
    c.psql("insert into t values (2, 'only in the partial segment')");
    let current = c.current_segment();
    let upto = lsn_offset_in_segment(&c, "pg_current_wal_flush_lsn()");
    let took = wait_for("the partial segment", Duration::from_secs(20), || {
        let server = c.wal_file(&current);
        [&local, &s3].iter().all(|from| {
            fetch(&current, from, &key, root).is_some_and(|b| b[..upto] == server[..upto])
        })
    });
    eprintln!(
        "partial segment in every destination {:.1} s after the commit",
        took.as_secs_f64()
    );
    assert!(
        took <= Duration::from_secs(5),
        "took {took:?} with --max-wal-delay 2s"
    );
    assert!(s3_keys(&s3).contains(&format!("prod/orders/wal/00000001/{current}.partial.lbk")));
    let status: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("status.json")).unwrap()).unwrap();
    assert!(
        status["partialBytes"].as_u64().unwrap() >= upto as u64,
        "{status}"
    );

    // kill -9, more WAL while it is down, restart: everything arrives, and
    // what was archived before is no error.
    stream.kill9();
    let log1 = stream.log();
    c.psql("insert into t select i, repeat('y', 100) from generate_series(1, 20000) i");
    c.psql("select pg_switch_wal()");
    c.psql("insert into t values (3, 'x')");
    let last = c.current_segment();
    c.psql("select pg_switch_wal()");
    let mut stream2 = Stream::start(&c, root, &[&local, &s3], &key, "2s");
    let last_key = format!("prod/orders/wal/00000001/{last}.lbk");
    let t0 = Instant::now();
    while !(s3_keys(&s3).contains(&last_key)
        && root
            .join(format!("archive/wal/00000001/{last}.lbk"))
            .exists())
    {
        let exited = stream2.child.try_wait().unwrap();
        assert!(
            t0.elapsed() < Duration::from_secs(60) && exited.is_none(),
            "{last}, written while it was down, not archived ({exited:?}); the killed run's log:\n{log1}\nthe restarted run's log:\n{}",
            stream2.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // No gap: every segment from the first to the last is in both.
    let keys = s3_keys(&s3);
    let n = |s: &str| u64::from_str_radix(&s[16..], 16).unwrap();
    for i in n(&first)..=n(&last) {
        let seg = format!("{}{:08X}", &first[..16], i);
        assert!(
            keys.contains(&format!("prod/orders/wal/00000001/{seg}.lbk")),
            "{seg} missing"
        );
        assert!(
            root.join(format!("archive/wal/00000001/{seg}.lbk"))
                .exists(),
            "{seg} missing"
        );
        assert!(
            !keys.contains(&format!("prod/orders/wal/00000001/{seg}.partial.lbk")),
            "{seg}.partial left"
        );
    }
    let server = c.wal_file(&last);
    assert!(fetch(&last, &s3, &key, root).unwrap() == server);
    // SIGTERM: pg_receivewal stopped with it (the slot is free), exit 0.
    run_ok(Command::new("kill").args(["-TERM", &stream2.child.id().to_string()]));
    let status = stream2.child.wait().unwrap();
    assert!(status.success(), "wal-stream after SIGTERM: {status}");
    // The server frees the slot a moment after its client went away.
    wait_for("the slot released", Duration::from_secs(10), || {
        !slot_active(&c)
    });
    let log2 = stream2.log();
    assert!(log2.contains("wal-stream stopped"), "{log2}");
    for log in [&log1, &log2] {
        assert!(!log.contains("archiving failed"), "{log}");
        assert!(!log.contains("different content"), "{log}");
        assert!(log.contains("segment archived"), "{log}");
    }
    // The killed run's pg_receivewal outlived it, holding the slot; the new
    // run stopped it.
    assert!(log2.contains("from an earlier run"), "{log2}");
    // The spool holds nothing already archived.
    let spool: Vec<String> = std::fs::read_dir(root.join("spool"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        spool
            .iter()
            .all(|f| f.ends_with(".partial") || f == "pg_receivewal.pid"),
        "{spool:?}"
    );
}

/// Restores the newest state with `lifeboat restore --data-dir` (latest):
/// the newest base backup, the archive replayed to its end, promoted and
/// stopped; then started here to be read.
fn restore_latest(root: &Path, from: &[&str], key: &Path) -> Cluster {
    let dir = root.join("restored");
    give_to_postgres(&dir);
    let data = dir.join("data");
    restore(from, key.to_str().unwrap())
        .data_dir(&data, free_port())
        .json()
        .ok();
    let mut c = Cluster::at(&data);
    c.start();
    c
}

/// How WAL leaves the server in a drill.
enum Archiver {
    /// `lifeboat wal-stream --max-wal-delay D`.
    Stream { max_wal_delay: &'static str },
    /// `archive_command = lifeboat wal-push`, `archive_timeout = T`.
    Push { archive_timeout: &'static str },
}

/// The writer: a row every 100 ms, each with its commit time, until the
/// server stops answering or `stop`. Returns the first and last
/// acknowledged commit times (epoch seconds) and how many rows were.
fn writer(
    port: u16,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<(Option<(f64, f64)>, u32)> {
    std::thread::spawn(move || {
        let mut span: Option<(f64, f64)> = None;
        let mut rows = 0u32;
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            let o = Command::new(pg_bin().join("psql"))
                .args(["-X", "-A", "-t", "-h", "127.0.0.1", "-U", "postgres"])
                .args(["-p", &port.to_string(), "-d", "postgres", "-c"])
                .arg("insert into rpo (ts) values (clock_timestamp()) returning extract(epoch from ts)")
                .output()
                .unwrap();
            if !o.status.success() {
                break;
            }
            let text = String::from_utf8_lossy(&o.stdout);
            let t: f64 = text.lines().next().unwrap().trim().parse().unwrap();
            span = Some((span.map_or(t, |s| s.0), t));
            rows += 1;
            std::thread::sleep(Duration::from_millis(100));
        }
        (span, rows)
    })
}

/// The RPO drill (issue 5): archive continuously, take a base backup, write
/// a row every 100 ms for `run`, destroy the server (kill -9, data
/// directory removed) and the archiver with it at the same instant — the
/// harshest case, nothing is shipped after the crash — restore to latest,
/// and measure the loss: last committed row's time − last restored row's
/// (or − the first row's when none came back). Returns it and the rows restored.
fn rpo_drill(label: &str, archiver: Archiver, run: Duration) -> (f64, u32) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let key = keyfile(root, "k");
    // archive_command and restore_command run as the postgres user.
    give_to_postgres(&key);
    let local = shared_file_dest(root, "archive");
    let s3 = bucket("us-east-1");
    let mut c = Cluster::init(root, "pg");
    if let Archiver::Push { archive_timeout } = archiver {
        c.archive_to(
            &[s3.clone(), local.clone()],
            &key,
            &[&format!("archive_timeout = '{archive_timeout}'")],
        );
    }
    c.start();
    c.psql("create table rpo (id bigserial primary key, ts timestamptz not null)");
    let mut stream = match archiver {
        Archiver::Stream { max_wal_delay } => {
            let s = Stream::start(&c, root, &[&s3, &local], &key, max_wal_delay);
            wait_for(
                "the replication slot in use",
                Duration::from_secs(30),
                || slot_active(&c),
            );
            Some(s)
        }
        Archiver::Push { .. } => None,
    };
    // The base backup, through lifeboat into the same destinations.
    c.base_backup(&[&s3, &local], key.to_str().unwrap())
        .json()
        .ok();

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writing = writer(c.port, stop.clone());
    std::thread::sleep(run);
    c.kill9();
    if let Some(s) = stream.as_mut() {
        s.kill9();
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (span, rows) = writing.join().unwrap();
    let (first_committed, last_committed) = span.expect("the writer committed rows");
    std::fs::remove_dir_all(&c.data).unwrap();
    let archiver_log = stream.as_ref().map(|s| s.log()).unwrap_or_default();

    let t0 = Instant::now();
    let r = restore_latest(root, &[&s3, &local], &key);
    let restore_s = t0.elapsed().as_secs_f64();
    let count: u32 = r.psql("select count(*) from rpo").parse().unwrap();
    let restored: f64 = match count {
        0 => first_committed,
        _ => r
            .psql("select extract(epoch from max(ts)) from rpo")
            .parse()
            .unwrap(),
    };
    let loss = last_committed - restored;
    eprintln!(
        "RPO drill: {label}: loss {loss:.2} s ({count} of {rows} rows restored; restore {restore_s:.1} s)"
    );
    // Rows come back as a prefix of what was committed: no hole.
    if count > 0 {
        assert_eq!(
            r.psql("select max(id) - min(id) + 1 from rpo"),
            count.to_string()
        );
    }
    assert!(
        loss >= 0.0,
        "restored a row newer than the last committed one\narchiver log:\n{archiver_log}"
    );
    (loss, count)
}

/// Runs the drill and holds the loss to `bound` seconds; with `replays`,
/// something past the base must come back.
fn rpo_drill_within(label: &str, archiver: Archiver, bound: f64, replays: bool) {
    let (loss, count) = rpo_drill(label, archiver, Duration::from_secs(10));
    assert!(
        !replays || count > 0,
        "{label}: nothing replayed past the base"
    );
    assert!(
        loss <= bound,
        "{label}: lost {loss:.2} s, more than {bound} s"
    );
}

#[test]
fn rpo_drill_wal_stream_5s() {
    let max_wal_delay = "5s";
    // 1 s of slack for the polling tick and the upload.
    rpo_drill_within(
        "wal-stream --max-wal-delay 5s",
        Archiver::Stream { max_wal_delay },
        5.0 + 1.0,
        true,
    );
}

/// The default delay: the loss is bounded by 60 s whatever the run's
/// length, so a 10 s run shows it without waiting a minute (the partial is
/// shipped once at start, then not for 45 s: about the whole run is lost,
/// all of it when that first ship came before the first row).
#[test]
fn rpo_drill_wal_stream_60s() {
    let max_wal_delay = "60s";
    rpo_drill_within(
        "wal-stream --max-wal-delay 60s (default)",
        Archiver::Stream { max_wal_delay },
        60.0,
        false,
    );
}

/// A segment is switched at most 5 s after its first write and then pushed;
/// the push itself takes a fraction of a second.
#[test]
fn rpo_drill_wal_push_archive_timeout_5s() {
    let archive_timeout = "5s";
    rpo_drill_within(
        "wal-push as archive_command, archive_timeout 5s",
        Archiver::Push { archive_timeout },
        5.0 + 1.5,
        true,
    );
}
