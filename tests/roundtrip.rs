//! A database with many kinds of content, backed up to two S3 regions and a
//! directory, restored from each, equals the original.

mod support;
use support::*;

#[test]
fn backup_to_two_regions_and_restore_from_each_gives_the_same_database() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keyfile(dir.path(), "prod-1");
    let src = create_db("rich");
    fill_rich(&src);
    let east = bucket("us-east-1");
    let west = bucket("eu-west-1");
    let local = format!("file://{}/bk", dir.path().display());

    let k = keys.to_str().unwrap();
    let report = backup(&src, k, &[&east, &west, &local])
        .opt("--policy", "orders")
        .opt("--tier", "daily")
        .json()
        .ok();
    let id = report["backup_id"].as_str().unwrap().to_string();
    assert_eq!(report["destinations"].as_array().unwrap().len(), 3);
    assert!(report["destinations"]
        .as_array()
        .unwrap()
        .iter()
        .all(|d| d["committed"] == true));
    assert!(
        report["bytes_in"].as_u64().unwrap() > report["bytes_out"].as_u64().unwrap(),
        "compressed"
    );

    // The manifest is in both regions under the policy prefix.
    for url in [&east, &west] {
        let keys = s3_keys(url);
        assert!(
            keys.contains(&format!("prod/orders/backups/{id}/manifest.json")),
            "{keys:?}"
        );
    }

    let original = dump(&src);
    assert!(original.contains("all_bytes") && original.contains("orders_touch"));
    for from in [&east, &west, &local] {
        let target = unique("restored");
        let r = restore(&[from], k).id(&id).create(&target).json().ok();
        assert_eq!(r["destination"].as_str().unwrap(), from.as_str());
        assert_eq!(dump(&target), original, "restored from {from}");
        // large objects are in the data dump only with their contents
        assert_eq!(
            psql(&target, "select count(*) from pg_largeobject_metadata"),
            "1"
        );
        assert_eq!(
            psql(&target, "select length(b) from sales.all_bytes"),
            "256"
        );
    }

    // `list` reads manifests alone and shows the point in both regions.
    let listed = Cli::new("list")
        .each("--from", &[&east, &west])
        .opt("--key-file", k)
        .json()
        .ok();
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), 2);
    for e in listed {
        assert_eq!(e["backup_id"], id.as_str());
        assert_eq!(e["databases"][0], src.as_str());
        assert_eq!(e["tier"], "daily");
        assert_eq!(e["verified"], true);
    }
    let v = verify(&[&east, &west, &local], k).id("all").json().ok();
    assert_eq!(v["problems"], 0);
    assert_eq!(v["checks"].as_array().unwrap().len(), 3);
}

#[test]
fn gzip_and_uncompressed_backups_restore_too() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keyfile(dir.path(), "k");
    let k = keys.to_str().unwrap();
    let src = create_db("gz");
    psql(
        &src,
        "create table t as select i, md5(i::text) m from generate_series(1, 20000) i",
    );
    for compression in ["gzip", "none"] {
        let dest = format!("file://{}/{compression}", dir.path().display());
        backup(&src, k, &[&dest])
            .opt("--compression", compression)
            .arg("--no-globals")
            .json()
            .ok();
        let target = unique("gzr");
        restore(&[&dest], k).create(&target).json().ok();
        assert_eq!(dump(&target), dump(&src), "{compression}");
    }
}

#[test]
fn restore_refuses_a_non_empty_target_unless_clean() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keyfile(dir.path(), "k");
    let src = create_db("ne");
    psql(&src, "create table t as select 1 as a");
    let dest = format!("file://{}/bk", dir.path().display());
    let k = keys.to_str().unwrap();
    backup(&src, k, &[&dest]).json().ok();

    let target = create_db("busy");
    psql(&target, "create table precious as select 42 as v");
    let err = restore(&[&dest], k).into_db(&target).fails();
    assert!(
        err.contains("not empty") && err.contains("--clean"),
        "{err}"
    );
    assert_eq!(psql(&target, "select v from precious"), "42", "untouched");

    let missing = unique("missing");
    let err = restore(&[&dest], k).into_db(&missing).fails();
    assert!(
        err.contains("does not exist") && err.contains("--create"),
        "{err}"
    );

    restore(&[&dest], k)
        .into_db(&target)
        .arg("--clean")
        .json()
        .ok();
    assert_eq!(psql(&target, "select a from t"), "1");
}

#[test]
fn rotated_keys_still_restore_old_backups() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keyfile(dir.path(), "2026-q3");
    let k = keys.to_str().unwrap();
    let src = create_db("rot");
    psql(&src, "create table t as select 'before rotation' as v");
    let dest = format!("file://{}/bk", dir.path().display());
    let old = backup(&src, k, &[&dest]).json().ok();
    ok(&lifeboat(&[
        "keygen", "--id", "2026-q4", "--out", k, "--add",
    ]));
    psql(&src, "update t set v = 'after rotation'");
    let new = backup(&src, k, &[&dest]).json().ok();

    let listed = ok(&lifeboat(&["list", "--from", &dest, "--json"]));
    assert_eq!(listed.as_array().unwrap().len(), 2);
    for (report, expect) in [(&old, "before rotation"), (&new, "after rotation")] {
        let target = unique("rotr");
        restore(&[&dest], k)
            .id(report["backup_id"].as_str().unwrap())
            .create(&target)
            .json()
            .ok();
        assert_eq!(psql(&target, "select v from t"), expect);
    }
    let manifest = std::fs::read_to_string(format!(
        "{}/bk/backups/{}/manifest.json",
        dir.path().display(),
        new["backup_id"].as_str().unwrap()
    ))
    .unwrap();
    assert!(
        manifest.contains("\"key_id\":\"2026-q4\""),
        "the new key encrypts"
    );
}

#[test]
fn latest_is_the_newest_backup_even_within_one_second() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keyfile(dir.path(), "k");
    let k = keys.to_str().unwrap();
    let src = create_db("latest");
    let dest = format!("file://{}/bk", dir.path().display());
    for v in 1..=3 {
        psql(
            &src,
            &format!("drop table if exists t; create table t as select {v} as v"),
        );
        backup(&src, k, &[&dest]).arg("--no-globals").json().ok();
    }
    let target = unique("latestr");
    restore(&[&dest], k).create(&target).json().ok();
    assert_eq!(psql(&target, "select v from t"), "3");
}

#[test]
fn globals_recreate_missing_roles_so_owners_and_grants_come_back() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keyfile(dir.path(), "k");
    let k = keys.to_str().unwrap();
    let role = unique("app_owner");
    psql("postgres", &format!("create role {role} nologin"));
    let src = create_db("glob");
    psql(
        &src,
        &format!(
            "create table t (a int); alter table t owner to {role}; grant select on t to public"
        ),
    );
    let dest = format!("file://{}/bk", dir.path().display());
    backup(&src, k, &[&dest]).json().ok();
    // The server loses the role (think: a fresh server after the disaster).
    psql("postgres", &format!("drop database {src}"));
    psql("postgres", &format!("drop role {role}"));

    // Without the globals pg_restore cannot set the owner and the restore fails whole.
    let target = unique("globr");
    let err = restore(&[&dest], k).create(&target).fails();
    assert!(
        err.contains(&role) && err.contains("does not exist"),
        "{err}"
    );

    restore(&[&dest], k)
        .create(&target)
        .arg("--globals")
        .json()
        .ok();
    assert_eq!(
        psql(
            &target,
            "select tableowner from pg_tables where tablename = 't'"
        ),
        role
    );
}

/// The database itself comes back as it was: owner, `ALTER DATABASE … SET`,
/// its ACL (CONNECT revoked from PUBLIC stays revoked) and comment — not
/// owned by the restoring user and open to every role (issue 13, item 10).
#[test]
fn a_restored_database_keeps_its_owner_settings_acl_and_comment() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keyfile(dir.path(), "k");
    let k = keys.to_str().unwrap();
    let dest = format!("file://{}", dir.path().join("dest").display());
    let db = create_db("props");
    let owner = unique("props_owner");
    let reader = unique("props_reader");
    for sql in [
        format!("create role {owner}"),
        format!("create role {reader}"),
        format!("alter database {db} owner to {owner}"),
        format!("revoke connect, temporary on database {db} from public"),
        format!("grant connect on database {db} to {reader}"),
        format!("alter database {db} set work_mem = '7MB'"),
        format!("comment on database {db} is 'orders, kept'"),
    ] {
        psql("postgres", &sql);
    }
    psql(&db, "create table t (v int); insert into t values (1)");
    let props = |name: &str| {
        psql(
            "postgres",
            &format!(
                "select d.datdba::regrole, d.datacl::text, \
                 (select array_to_string(setconfig, ',') from pg_db_role_setting s \
                  where s.setdatabase = d.oid and s.setrole = 0), \
                 shobj_description(d.oid, 'pg_database') \
                 from pg_database d where datname = '{name}'"
            ),
        )
    };
    let before = props(&db);
    assert!(before.contains("work_mem=7MB"), "{before}");
    backup(&db, k, &[&dest]).json().ok();

    psql("postgres", &format!("drop database {db}"));
    let report = restore(&[&dest], k).create(&db).json().ok();
    assert_eq!(props(&db), before, "{report}");
    assert!(
        report["database_properties"]
            .as_str()
            .unwrap()
            .starts_with("restored"),
        "{report}"
    );
    assert_eq!(psql(&db, "select v from t"), "1");
}

/// A whole server back in one command: roles first, then every database of
/// the backup under its own name. One that cannot be restored (here: its
/// name is taken by a non-empty database) does not stop the others, and
/// each is reported (issue 13, item 10).
#[test]
fn all_databases_come_back_in_one_command_each_reported() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keyfile(dir.path(), "k");
    let k = keys.to_str().unwrap();
    let dest = format!("file://{}", dir.path().join("dest").display());
    let role = unique("server_owner");
    psql("postgres", &format!("create role {role}"));
    let (a, b) = (create_db("server_a"), create_db("server_b"));
    for db in [&a, &b] {
        psql(
            db,
            &format!("create table t (v text); insert into t values ('{db}'); alter table t owner to {role}"),
        );
    }
    let (dump_a, dump_b) = (dump(&a), dump(&b));
    Cli::new("backup")
        .opt("-d", &a)
        .opt("-d", &b)
        .opt("--key-file", k)
        .opt("--to", &dest)
        .json()
        .ok();
    for db in [&a, &b] {
        psql("postgres", &format!("drop database {db}"));
    }
    psql("postgres", &format!("drop role {role}"));

    let whole = || {
        restore(&[&dest], k)
            .arg("--all-databases")
            .arg("--create")
            .arg("--globals")
            .json()
    };
    let report = whole().ok();
    assert_eq!(report["databases"].as_array().unwrap().len(), 2, "{report}");
    assert_eq!(dump(&a), dump_a);
    assert_eq!(dump(&b), dump_b);

    // Again, with b's name taken by a database that holds something.
    psql("postgres", &format!("drop database {a}"));
    let o = whole().output();
    assert!(!o.status.success());
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let outcome = |db: &str| {
        report["databases"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["database"] == db)
            .cloned()
            .unwrap()
    };
    assert_eq!(outcome(&a)["ok"], true, "{report}");
    assert_eq!(outcome(&b)["ok"], false, "{report}");
    assert!(
        outcome(&b)["error"].as_str().unwrap().contains("not empty"),
        "{report}"
    );
    assert_eq!(dump(&a), dump_a);
}

/// `--jobs N` into a database the restore creates: rows loaded by N
/// pg_restore processes from a local copy as it grows, then indexes and
/// constraints by `pg_restore --jobs` from the copy that authenticated
/// whole; equal to the source, and the copy is gone afterwards. Into an existing database it loads in one
/// transaction (issue 16, item 2).
#[test]
fn a_parallel_restore_loads_the_same_database_and_leaves_no_copy() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keyfile(dir.path(), "k");
    let k = keys.to_str().unwrap();
    let spool = dir.path().join("spool");
    std::fs::create_dir(&spool).unwrap();
    let src = create_db("par");
    fill_rich(&src);
    // Two tables of ~6 MB each: more than a frame's 4 MiB, so the archive
    // has at least two data frames and both loaders get one.
    psql(&src, "create table big as select i, md5(i::text) m from generate_series(1, 150000) i; create index on big (m)");
    psql(
        &src,
        "create table big2 as select i, md5(i::text) m from generate_series(1, 150000) i",
    );
    let dest = format!("file://{}/d", dir.path().display());
    let id = backup(&src, k, &[&dest]).json().ok()["backup_id"]
        .as_str()
        .unwrap()
        .to_string();
    // The archive's object is framed: the head, then its tables.
    let manifest = dir.path().join(format!("d/backups/{id}/manifest.json"));
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(manifest).unwrap()).unwrap();
    let db_object = manifest["objects"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["role"] == "database")
        .unwrap();
    let frames = db_object["frames"]["frames"].as_array().unwrap();
    assert!(frames.len() >= 3, "head and two data frames: {db_object}");
    assert_eq!(frames[0]["at"], 0);
    let parallel = |c: Cli| {
        c.opt("--jobs", "2")
            .opt("--spool-dir", spool.to_str().unwrap())
            .json()
    };

    let target = unique("par_new");
    let out = parallel(restore(&[&dest], k).create(&target)).output();
    let r = ok(&out);
    assert_eq!(r["jobs"], 2, "{r}");
    // Each loader was fed only its own blocks: the archive's framing was
    // walked, not fed whole to every loader for want of knowing it.
    let log = stderr(&out);
    assert!(
        log.contains("each loader decompresses its own frames") && log.contains("loaders=2"),
        "{log}"
    );
    assert_eq!(dump(&target), dump(&src));
    assert_eq!(
        std::fs::read_dir(&spool).unwrap().count(),
        0,
        "copy left behind"
    );

    // A backup without frames (gzip) is decoded into the copy, and each
    // loader is fed its blocks by walking the archive's framing.
    let gz = format!("file://{}/gz", dir.path().display());
    backup(&src, k, &[&gz])
        .opt("--compression", "gzip")
        .json()
        .ok();
    let target = unique("par_gzip");
    let out = parallel(restore(&[&gz], k).create(&target)).output();
    assert_eq!(ok(&out)["jobs"], 2);
    let log = stderr(&out);
    assert!(!log.contains("decompresses its own frames"), "{log}");
    assert!(!log.contains("every loader reads the whole copy"), "{log}");
    assert_eq!(dump(&target), dump(&src));
    assert_eq!(std::fs::read_dir(&spool).unwrap().count(), 0);

    let existing = create_db("par_existing");
    let r = parallel(restore(&[&dest], k).into_db(&existing)).ok();
    assert_eq!(
        r["jobs"], 1,
        "an existing database loads in one transaction: {r}"
    );
    assert_eq!(dump(&existing), dump(&src));
}

/// A parallel restore is not one transaction, so what it created goes when
/// anything fails: a damaged backup stops the load before its damaged
/// chunk (whose bytes never reach pg_restore), and a load that fails
/// part-way (a table owner missing on the target) drops the database it
/// created.
#[test]
fn a_failed_parallel_restore_leaves_no_database() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keyfile(dir.path(), "k");
    let k = keys.to_str().unwrap();
    let src = create_db("parfail");
    let owner = unique("par_owner");
    psql(&src, &format!("create role {owner}; create table t as select i from generate_series(1, 1000) i; create table u (v int); alter table u owner to {owner}"));
    let root = dir.path().join("d");
    let dest = format!("file://{}", root.display());
    let id = backup(&src, k, &[&dest]).arg("--no-globals").json().ok()["backup_id"]
        .as_str()
        .unwrap()
        .to_string();
    let exists = |db: &str| {
        psql(
            "postgres",
            &format!("select count(*) from pg_database where datname = '{db}'"),
        )
    };

    psql(&src, &format!("drop owned by {owner}"));
    psql("postgres", &format!("drop role {owner}"));
    let target = unique("parfail_owner");
    let err = restore(&[&dest], k)
        .create(&target)
        .opt("--jobs", "2")
        .fails();
    assert!(err.contains("pg_restore") && err.contains(&owner), "{err}");
    assert_eq!(exists(&target), "0", "the created database was kept: {err}");

    let object = root.join("backups").join(&id).join("db-0.lbk");
    let mut bytes = std::fs::read(&object).unwrap();
    let at = bytes.len() - 100;
    bytes[at] ^= 1;
    std::fs::write(&object, bytes).unwrap();
    let target = unique("parfail_tampered");
    let err = restore(&[&dest], k)
        .create(&target)
        .opt("--jobs", "2")
        .fails();
    assert!(!err.contains("restore complete"), "{err}");
    assert_eq!(
        exists(&target),
        "0",
        "a damaged backup left a database: {err}"
    );
}
