//! A tenant names a database, and a name is only ever a name (issue 13,
//! item 1). libpq reads a `--dbname` holding `=` or starting with
//! `postgresql://` as a connection string: unquoted, a database called
//! `dbname=<victim>` would be dumped as the victim and restored over it, and
//! one called `host=… ` would take the connection, and the password, away.

mod support;

use lifeboat::source::postgres::dbname_conninfo;
use support::*;

/// Creates a database with an arbitrary name holding one table `marker`
/// with one row, `what`.
fn named_db(name: &str, what: &str) {
    psql(
        "postgres",
        &format!(
            "create database {}",
            lifeboat::source::postgres::quote_ident(name)
        ),
    );
    psql(
        &dbname_conninfo(name),
        &format!("create table marker (what text); insert into marker values ('{what}')"),
    );
}

fn marker(db: &str) -> String {
    psql(
        &dbname_conninfo(db),
        "select string_agg(what, ',') from marker",
    )
}

#[test]
fn database_names_that_look_like_connection_strings_stay_names() {
    let work = tempfile::tempdir().unwrap();
    let key = keyfile(work.path(), "k1");
    let k = key.to_str().unwrap();
    let dest = format!("file://{}", work.path().join("dest").display());

    let victim = unique("lbvictim");
    named_db(&victim, "victim");
    let hostile = format!("dbname={victim}");
    named_db(&hostile, "tenant");
    // With the name read as a connection string this goes to port 1 and fails.
    let elsewhere = format!("postgresql://127.0.0.1:1/{}", unique("x"));
    named_db(&elsewhere, "elsewhere");

    let report = backup(&hostile, k, &[&dest]).json().ok();
    assert_eq!(report["databases"][0], hostile.as_str());
    let id = report["backup_id"].as_str().unwrap().to_string();
    let report = backup(&elsewhere, k, &[&dest]).json().ok();
    assert_eq!(report["databases"][0], elsewhere.as_str());

    // The tenant's backup holds the tenant's data, not the victim's.
    let restored = unique("lbrestored");
    restore(&[&dest], k).id(&id).create(&restored).json().ok();
    assert_eq!(marker(&restored), "tenant");

    // A restore into a target named like a connection string goes into
    // that database, never into the one the name points at.
    let other_victim = unique("lbvictim");
    named_db(&other_victim, "untouched");
    let hostile_target = format!("dbname={other_victim}");
    restore(&[&dest], k)
        .id(&id)
        .create(&hostile_target)
        .json()
        .ok();
    assert_eq!(marker(&hostile_target), "tenant");
    assert_eq!(marker(&other_victim), "untouched");
}
