//! Test support: the real PostgreSQL and S3 server that scripts/test.sh
//! started (PGHOST, PGPORT, S3_ENDPOINT), the real `lifeboat` binary, and
//! helpers to make databases, buckets and keys.
#![allow(dead_code)]

pub mod bucket_objects;
pub mod certs;
pub mod cli;
pub mod cluster;
pub mod faulty;
pub mod k8s;
pub mod kubelet;
pub mod objects;
pub mod smtp;
pub mod tree;

#[allow(unused_imports)]
pub use cli::{backup, restore, verify, Cli};

use lifeboat::location::{Location, S3Location};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_lifeboat")
}

fn need(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| {
        panic!("{var} is not set: run the tests with scripts/test.sh, which starts PostgreSQL and the S3 server")
    })
}

pub fn pg_bin() -> PathBuf {
    PathBuf::from(
        std::env::var("LIFEBOAT_PG_BIN").unwrap_or_else(|_| "/usr/lib/postgresql/15/bin".into()),
    )
}

/// Role `lifeboat_pw` logs in with this password only (scripts/testbed.sh).
pub const PW_ROLE: &str = "lifeboat_pw";
pub const PW_ROLE_PASSWORD: &str = "lb-secret-7f3a9c-pw";

pub fn pg_port() -> String {
    need("PGPORT")
}

pub fn s3_endpoint() -> String {
    need("S3_ENDPOINT")
}

/// A name unique to this test process and call.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// psql without ~/.psqlrc, unaligned tuples only, stopping at the first error.
pub const PSQL_FLAGS: [&str; 6] = ["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"];

pub fn psql(db: &str, sql: &str) -> String {
    let out = Command::new(pg_bin().join("psql"))
        .args(PSQL_FLAGS)
        .args(["-d", db, "-c", sql])
        .output()
        .expect("psql runs");
    assert!(
        out.status.success(),
        "psql {sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

pub fn create_db(prefix: &str) -> String {
    let db = unique(prefix);
    psql("postgres", &format!("create database {db}"));
    db
}

/// Schema and data as plain SQL, for comparing databases.
pub fn dump(db: &str) -> String {
    stdout_of(Command::new(pg_bin().join("pg_dump")).args([
        "--restrict-key=lifeboattest",
        "--no-owner",
        "-d",
        db,
    ]))
}

/// A program's standard output (UTF-8); the test fails, with its stderr,
/// when it fails.
#[track_caller]
pub fn stdout_of(c: &mut Command) -> String {
    let out = c.output().expect("the program runs");
    assert!(
        out.status.success(),
        "{c:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

pub fn lifeboat(args: &[&str]) -> Output {
    lifeboat_cmd(args).output().expect("lifeboat runs")
}

pub fn lifeboat_cmd(args: &[&str]) -> Command {
    let mut c = Command::new(bin());
    c.args(args).stdin(Stdio::null());
    c
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[track_caller]
pub fn ok(o: &Output) -> serde_json::Value {
    assert!(
        o.status.success(),
        "lifeboat failed: {}\n{}",
        stderr(o),
        stdout(o)
    );
    serde_json::from_slice(&o.stdout).unwrap_or(serde_json::Value::Null)
}

#[track_caller]
pub fn fails(o: &Output) -> String {
    assert!(
        !o.status.success(),
        "lifeboat should have failed: {}",
        stdout(o)
    );
    stderr(o)
}

/// Writes a file only its owner can read (a key file lifeboat accepts).
pub fn write_private(path: &Path, contents: impl AsRef<[u8]>) {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .unwrap();
    std::io::Write::write_all(&mut f, contents.as_ref()).unwrap();
}

pub fn keyfile(dir: &Path, id: &str) -> PathBuf {
    let path = dir.join(format!("keys-{id}-{}", unique("k")));
    let o = lifeboat(&["keygen", "--id", id, "--out", path.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    path
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

pub fn s3_client(region: &str) -> aws_sdk_s3::Client {
    runtime().block_on(async {
        let shared = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new(region.to_string()))
            .load()
            .await;
        let conf = aws_sdk_s3::config::Builder::from(&shared)
            .endpoint_url(s3_endpoint())
            .force_path_style(true)
            .build();
        aws_sdk_s3::Client::from_conf(conf)
    })
}

/// A fresh bucket in `region`; returns its destination URL.
pub fn bucket(region: &str) -> String {
    new_bucket(region, false)
}

/// A fresh bucket created with Object Lock enabled (hence versioned);
/// returns its destination URL, without the lock parameters.
pub fn locked_bucket(region: &str) -> String {
    new_bucket(region, true)
}

fn new_bucket(region: &str, object_lock: bool) -> String {
    let name = unique("b").replace('_', "-");
    let client = s3_client(region);
    runtime().block_on(async {
        let mut req = client
            .create_bucket()
            .bucket(&name)
            .object_lock_enabled_for_bucket(object_lock);
        if region != "us-east-1" {
            req = req.create_bucket_configuration(
                aws_sdk_s3::types::CreateBucketConfiguration::builder()
                    .location_constraint(aws_sdk_s3::types::BucketLocationConstraint::from(region))
                    .build(),
            );
        }
        req.send().await.expect("create bucket");
    });
    s3_url(&name, region, "prod/orders")
}

/// The destination URL of `prefix` in `bucket` on the test bed's S3 server.
pub fn s3_url(bucket: &str, region: &str, prefix: &str) -> String {
    Location::S3(S3Location {
        bucket: bucket.into(),
        prefix: prefix.into(),
        region: Some(region.into()),
        endpoint: Some(s3_endpoint().parse().expect("S3_ENDPOINT is a URL")),
        ..Default::default()
    })
    .to_string()
}

/// Keys of objects in an S3 destination made by `bucket`.
pub fn s3_keys(url: &str) -> Vec<String> {
    let (bucket, region) = bucket_and_region(url);
    let client = s3_client(&region);
    runtime().block_on(async {
        let out = client
            .list_objects_v2()
            .bucket(&bucket)
            .send()
            .await
            .expect("list");
        out.contents()
            .iter()
            .filter_map(|o| o.key().map(str::to_string))
            .collect()
    })
}

pub fn s3_incomplete_uploads(url: &str) -> Vec<String> {
    let (bucket, region) = bucket_and_region(url);
    let client = s3_client(&region);
    runtime().block_on(async {
        let out = client
            .list_multipart_uploads()
            .bucket(&bucket)
            .send()
            .await
            .expect("list uploads");
        out.uploads()
            .iter()
            .filter_map(|u| u.key().map(str::to_string))
            .collect()
    })
}

pub fn s3_get(url: &str, key: &str) -> Vec<u8> {
    let (bucket, region) = bucket_and_region(url);
    let client = s3_client(&region);
    runtime().block_on(async {
        let out = client
            .get_object()
            .bucket(&bucket)
            .key(key)
            .send()
            .await
            .expect("get");
        out.body.collect().await.unwrap().into_bytes().to_vec()
    })
}

pub fn s3_put(url: &str, key: &str, data: Vec<u8>) {
    let (bucket, region) = bucket_and_region(url);
    let client = s3_client(&region);
    runtime().block_on(async {
        client
            .put_object()
            .bucket(&bucket)
            .key(key)
            .body(data.into())
            .send()
            .await
            .expect("put");
    });
}

/// Puts `key` with content type `text/x-test`, a cache-control and the
/// user metadata `owner: team-a`, for round trips of object metadata.
pub fn put_meta(client: &aws_sdk_s3::Client, bucket: &str, key: &str, data: Vec<u8>) {
    runtime().block_on(async {
        client
            .put_object()
            .bucket(bucket)
            .key(key)
            .content_type("text/x-test")
            .cache_control("max-age=60")
            .metadata("owner", "team-a")
            .body(data.into())
            .send()
            .await
            .expect("put");
    });
}

/// The bucket and region of an S3 destination URL.
pub fn bucket_and_region(url: &str) -> (String, String) {
    match url.parse::<Location>().expect("a destination URL") {
        Location::S3(s) => (s.bucket, s.region.expect("a region")),
        other => panic!("not an S3 destination: {other:?}"),
    }
}

/// Fills a database with many kinds of content.
pub fn fill_rich(db: &str) {
    psql(db, RICH_SQL);
}

/// The content of [`fill_rich`]: schemas with odd names, many column types,
/// indexes, a sequence, a view, a trigger function, a large object, a
/// comment (SQL that PostgreSQL 13 and later all accept).
pub const RICH_SQL: &str = r#"
create schema sales;
create schema "Mixed Case";
create table sales.orders (
  id bigserial primary key,
  customer text not null,
  note text,
  tags text[],
  doc jsonb,
  amount numeric(12,2),
  placed timestamptz default '2026-01-01T00:00:00Z',
  raw bytea
);
create index orders_customer on sales.orders (customer);
create index orders_doc on sales.orders using gin (doc);
insert into sales.orders (customer, note, tags, doc, amount, raw)
select 'c' || (i % 97), 'naïve café — 日本語 ✓ ' || i, array['a' || i, 'b'], jsonb_build_object('i', i, 'nested', jsonb_build_array(i, 'x')),
       i * 1.25, decode(md5(i::text), 'hex')
from generate_series(1, 5000) i;
create table sales.all_bytes (b bytea);
insert into sales.all_bytes select string_agg(set_byte('\x00'::bytea, 0, i), ''::bytea order by i) from generate_series(0, 255) i;
create sequence sales.invoice_no start 1000 increment 7;
select nextval('sales.invoice_no'), nextval('sales.invoice_no');
create table "Mixed Case"."Table" ("Col" int);
insert into "Mixed Case"."Table" values (1), (2);
create view sales.big_orders as select id, amount from sales.orders where amount > 1000;
create function sales.touch() returns trigger language plpgsql as $$ begin new.note := coalesce(new.note, 'touched'); return new; end $$;
create trigger orders_touch before insert on sales.orders for each row execute function sales.touch();
select lo_from_bytea(0, convert_to(repeat('large object ', 10000), 'UTF8'));
comment on table sales.orders is 'orders, with a comment';
"#;

/// A directory of PostgreSQL's programs (for `--pg-bin`) in which `tool` is
/// a shell script: `body` runs with `$REAL` set to the real program.
pub fn pg_bin_with(dir: &Path, tool: &str, body: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let bin = dir.join(format!("bin-{}", unique(tool)));
    std::fs::create_dir(&bin).unwrap();
    for e in std::fs::read_dir(pg_bin()).unwrap() {
        let e = e.unwrap();
        if e.file_name() != tool {
            std::os::unix::fs::symlink(e.path(), bin.join(e.file_name())).unwrap();
        }
    }
    let script = bin.join(tool);
    let real = pg_bin().join(tool);
    std::fs::write(
        &script,
        format!("#!/bin/sh\nREAL='{}'\n{body}\n", real.display()),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    bin
}
