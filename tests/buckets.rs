//! Bucket backups against the test bed's S3 server (moto), one region's
//! bucket as the source, another's as the destination: keys with spaces,
//! `+` and non-ASCII, a multipart object, content type and user metadata
//! round trip; an object deleted after backup 1 comes back from backup 1;
//! an unchanged second run GETs no object (counted by the proxy).

mod support;
use lifeboat::chunks::noise;
use support::bucket_objects::*;
use support::faulty::{Fault, FaultyS3};
use support::*;

#[test]
fn bucket_round_trip_deleted_objects_come_back_and_unchanged_runs_get_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keyfile(dir.path(), "k");
    let k = keys.to_str().unwrap();
    let src_region = "us-west-2";
    let src = source_bucket(src_region);
    let client = s3_client(src_region);
    put_source(&client, &src, "data");
    put_meta(
        &client,
        &src,
        "other/outside",
        b"not under the prefix".to_vec(),
    );
    let proxy = FaultyS3::start();
    let source = proxy.url(&src, src_region, "data");
    let dest = bucket("eu-west-1");

    let backup = |extra: &[&str]| {
        let mut args = vec![
            "backup",
            "--bucket",
            &source,
            "--to",
            &dest,
            "--key-file",
            k,
            "--json",
        ];
        args.extend_from_slice(extra);
        ok(&lifeboat(&args))
    };
    let first = backup(&[]);
    let id1 = first["backup_id"].as_str().unwrap().to_string();
    assert_eq!(first["files"]["files_new"], 5, "{first}");

    // Deleted after backup 1; everything else unchanged: no object GET.
    runtime()
        .block_on(client.delete_object().bucket(&src).key("data/x+y=z").send())
        .unwrap();
    proxy.inject(
        "GET",
        &format!("/{src}/data/"),
        Fault::Stall(std::time::Duration::ZERO),
        1_000_000,
    );
    let second = backup(&[]);
    assert_eq!(proxy.fired(), 0, "an unchanged run GETs no object");
    assert_eq!(second["files"]["files_unchanged"], 4, "{second}");
    assert_eq!(second["files"]["bytes_read"], 0, "{second}");
    // The count is real: --full GETs every object.
    let full = backup(&["--full"]);
    assert_eq!(proxy.fired(), 4, "--full GETs each object once: {full}");

    // Backup 1 into another region's bucket, under another prefix.
    let target_region = "ap-southeast-2";
    let tgt = source_bucket(target_region);
    let tclient = s3_client(target_region);
    let target = s3_url(&tgt, target_region, "restored");
    let r = ok(&lifeboat(&[
        "restore",
        "--from",
        &dest,
        "--key-file",
        k,
        "--backup",
        &id1,
        "--to-bucket",
        &target,
        "--json",
    ]));
    assert_eq!(r["restored"]["objects"], 5, "{r}");
    assert_restored(&tclient, &tgt, "restored");
    assert!(!s3_keys(&target).iter().any(|k| k.contains("outside")));

    // --overwrite never keeps what is there; --path selects.
    put_meta(
        &tclient,
        &tgt,
        "restored/a file.txt",
        b"local edit".to_vec(),
    );
    let r = ok(&lifeboat(&[
        "restore",
        "--from",
        &dest,
        "--key-file",
        k,
        "--backup",
        &id1,
        "--to-bucket",
        &target,
        "--path",
        "a file.txt",
        "--json",
    ]));
    assert_eq!(
        (
            r["restored"]["objects"].as_u64(),
            r["restored"]["kept"].as_u64()
        ),
        (Some(0), Some(1)),
        "{r}"
    );
    assert_eq!(body(&tclient, &tgt, "restored/a file.txt"), b"local edit");
    let r = ok(&lifeboat(&[
        "restore",
        "--from",
        &dest,
        "--key-file",
        k,
        "--backup",
        &id1,
        "--to-bucket",
        &target,
        "--path",
        "a file.txt",
        "--overwrite",
        "always",
        "--json",
    ]));
    assert_eq!(r["restored"]["objects"], 1, "{r}");
    assert_eq!(body(&tclient, &tgt, "restored/a file.txt"), noise(1000, 1));

    // verify checks every chunk of a bucket backup.
    ok(&lifeboat(&[
        "verify",
        "--from",
        &dest,
        "--key-file",
        k,
        "--backup",
        &id1,
        "--json",
    ]));
}

#[test]
fn an_object_that_keeps_changing_fails_the_run_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keyfile(dir.path(), "k");
    let k = keys.to_str().unwrap();
    let src = source_bucket("us-west-2");
    let client = s3_client("us-west-2");
    put_meta(&client, &src, "data/stable", b"stable".to_vec());
    put_meta(&client, &src, "data/hot key", b"v1".to_vec());
    let proxy = FaultyS3::start();
    let source = proxy.url(&src, "us-west-2", "data");
    let dest = bucket("eu-west-1");
    proxy.inject(
        "GET",
        "/data/hot%20key",
        Fault::Status(412, "PreconditionFailed"),
        100,
    );
    let err = fails(&lifeboat(&[
        "backup",
        "--bucket",
        &source,
        "--to",
        &dest,
        "--key-file",
        k,
    ]));
    assert!(err.contains("hot key") && err.contains("changed"), "{err}");
    assert!(
        s3_keys(&dest).iter().all(|k| !k.contains("manifest")),
        "no backup was committed"
    );
}

#[test]
fn an_object_overwritten_between_list_and_get_is_stored_whole_in_its_new_version() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keyfile(dir.path(), "k");
    let k = keys.to_str().unwrap();
    let src = source_bucket("us-west-2");
    let client = s3_client("us-west-2");
    put_meta(&client, &src, "data/hot", noise(4000, 1));
    let proxy = FaultyS3::start();
    let source = proxy.url(&src, "us-west-2", "data");
    let dest = bucket("eu-west-1");
    // The GET waits in the proxy while the object is replaced.
    proxy.inject(
        "GET",
        "/data/hot",
        Fault::Stall(std::time::Duration::from_secs(3)),
        1,
    );
    let child = lifeboat_cmd(&[
        "backup",
        "--bucket",
        &source,
        "--to",
        &dest,
        "--key-file",
        k,
        "--json",
    ])
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped())
    .spawn()
    .unwrap();
    while proxy.fired() == 0 {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    put_meta(&client, &src, "data/hot", noise(3000, 2));
    let report = ok(&child.wait_with_output().unwrap());
    assert_eq!(report["files"]["bytes_read"], 3000, "{report}");
    let tgt = source_bucket("ap-southeast-2");
    let target = s3_url(&tgt, "ap-southeast-2", "r");
    ok(&lifeboat(&[
        "restore",
        "--from",
        &dest,
        "--key-file",
        k,
        "--to-bucket",
        &target,
        "--json",
    ]));
    assert_eq!(
        body(&s3_client("ap-southeast-2"), &tgt, "r/hot"),
        noise(3000, 2)
    );
}
