//! Config backups of cloud secret stores (issue 11): AWS Secrets Manager
//! secrets by name prefix and SSM parameters by path, against moto's
//! Secrets Manager and SSM (the test bed's server, S3_ENDPOINT), sealed
//! into real S3 and restored into the same or another prefix.

mod support;

use aws_sdk_secretsmanager::primitives::Blob;
use aws_sdk_ssm::types::ParameterType;
use serde_json::Value;
use std::path::Path;

const REGION: &str = "eu-west-1";

struct Aws {
    sm: aws_sdk_secretsmanager::Client,
    ssm: aws_sdk_ssm::Client,
}

async fn aws() -> Aws {
    let shared = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(REGION))
        .load()
        .await;
    let e = support::s3_endpoint();
    Aws {
        sm: aws_sdk_secretsmanager::Client::from_conf(
            aws_sdk_secretsmanager::config::Builder::from(&shared)
                .endpoint_url(&e)
                .build(),
        ),
        ssm: aws_sdk_ssm::Client::from_conf(
            aws_sdk_ssm::config::Builder::from(&shared)
                .endpoint_url(&e)
                .build(),
        ),
    }
}

impl Aws {
    async fn secret(&self, name: &str) -> Option<(Option<String>, Option<Vec<u8>>)> {
        let v = self
            .sm
            .get_secret_value()
            .secret_id(name)
            .send()
            .await
            .ok()?;
        Some((
            v.secret_string().map(str::to_string),
            v.secret_binary().map(|b| b.as_ref().to_vec()),
        ))
    }

    async fn parameter(&self, name: &str) -> Option<(String, String)> {
        let p = self
            .ssm
            .get_parameter()
            .name(name)
            .with_decryption(true)
            .send()
            .await
            .ok()?;
        let p = p.parameter()?;
        Some((p.r#type()?.as_str().to_string(), p.value()?.to_string()))
    }

    async fn delete_secret(&self, name: &str) {
        self.sm
            .delete_secret()
            .secret_id(name)
            .force_delete_without_recovery(true)
            .send()
            .await
            .unwrap();
    }
}

/// A credentials directory as an S3 destination's: key files, no argv.
fn credentials(dir: &Path) -> String {
    let d = dir.join("aws");
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("AWS_ACCESS_KEY_ID"), "testing\n").unwrap();
    std::fs::write(d.join("AWS_SECRET_ACCESS_KEY"), "testing\n").unwrap();
    d.to_str().unwrap().to_string()
}

async fn run(args: &[&str]) -> Result<Value, (i32, String)> {
    let out = tokio::process::Command::new(support::bin())
        .args(args)
        .env("LIFEBOAT_LOG", "info")
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .unwrap();
    if out.status.success() {
        Ok(serde_json::from_slice(&out.stdout).unwrap_or(Value::Null))
    } else {
        Err((
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ))
    }
}

/// Secrets (text, binary, one with two versions) and parameters (String,
/// StringList, SecureString) backed up, deleted, restored equal; restored
/// under another prefix and path; existing ones skipped, updated or
/// stopping the restore; a dry run that writes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_and_parameters_back_up_and_restore_with_their_types() {
    let dir = tempfile::tempdir().unwrap();
    let aws = aws().await;
    let tag = support::unique("lb").replace('_', "-");
    let prefix = format!("{tag}/app/");
    let path = format!("/{tag}/app");
    let binary: Vec<u8> = (0u8..=255).rev().collect();

    let sm = &aws.sm;
    sm.create_secret()
        .name(format!("{prefix}db"))
        .description("the database")
        .tags(
            aws_sdk_secretsmanager::types::Tag::builder()
                .key("team")
                .value("shop")
                .build(),
        )
        .secret_string("db-password-1")
        .send()
        .await
        .unwrap();
    sm.create_secret()
        .name(format!("{prefix}cert"))
        .secret_binary(Blob::new(binary.clone()))
        .send()
        .await
        .unwrap();
    sm.create_secret()
        .name(format!("{prefix}api"))
        .secret_string("api-old")
        .send()
        .await
        .unwrap();
    // A second version: the backup holds the current one.
    sm.put_secret_value()
        .secret_id(format!("{prefix}api"))
        .secret_string("api-current")
        .send()
        .await
        .unwrap();
    // Outside the prefix: not taken.
    sm.create_secret()
        .name(format!("{tag}/other"))
        .secret_string("not-mine")
        .send()
        .await
        .unwrap();
    let params = [
        (format!("{path}/url"), ParameterType::String, "https://shop"),
        (format!("{path}/hosts"), ParameterType::StringList, "a,b,c"),
        (
            format!("{path}/deep/pw"),
            ParameterType::SecureString,
            "param-secret-1",
        ),
    ];
    for (name, t, v) in &params {
        aws.ssm
            .put_parameter()
            .name(name)
            .r#type(t.clone())
            .value(*v)
            .send()
            .await
            .unwrap();
    }

    let keys = tokio::task::block_in_place(|| support::keyfile(dir.path(), "k1"));
    let keys = keys.to_str().unwrap();
    let bucket = tokio::task::block_in_place(|| support::bucket("us-east-1"));
    let endpoint = support::s3_endpoint();
    let creds = credentials(dir.path());
    let cloud = [
        "--cloud-endpoint",
        endpoint.as_str(),
        "--cloud-credentials",
        creds.as_str(),
    ];
    let mut backup = vec![
        "backup",
        "--config",
        "--secrets-manager",
        &prefix,
        "--ssm-path",
        &path,
        "--cloud-region",
        REGION,
        "--to",
        &bucket,
        "--key-file",
        keys,
        "--policy",
        "cloud",
        "--json",
    ];
    backup.extend(cloud);
    let report = run(&backup).await.unwrap();
    let id = report["backup_id"].as_str().unwrap().to_string();

    // The manifest: where and how many, no name, no value.
    let manifest_bytes = tokio::task::block_in_place(|| {
        let key = support::s3_keys(&bucket)
            .into_iter()
            .find(|k| k.ends_with(&format!("{id}/manifest.json")))
            .unwrap();
        support::s3_get(&bucket, &key)
    });
    let manifest: Value = serde_json::from_slice(&manifest_bytes).unwrap();
    let stores = manifest["source"]["cloud"].as_array().unwrap();
    let count = |s: &str| {
        stores.iter().find(|c| c["store"] == s).unwrap()["count"]
            .as_u64()
            .unwrap()
    };
    assert_eq!(count("secretsmanager"), 3, "{manifest}");
    assert_eq!(count("ssm"), 3, "{manifest}");
    assert_eq!(stores[0]["region"], REGION);
    let text = String::from_utf8_lossy(&manifest_bytes);
    for v in [
        "db-password-1",
        "api-current",
        "param-secret-1",
        "deep/pw",
        "app/db",
    ] {
        assert!(!text.contains(v), "{v} in the manifest");
    }

    // Everything deleted, then restored from the backup.
    for n in ["db", "cert", "api"] {
        aws.delete_secret(&format!("{prefix}{n}")).await;
    }
    for (name, _, _) in &params {
        aws.ssm.delete_parameter().name(name).send().await.unwrap();
    }
    let restore = |extra: &[&str]| {
        let mut a: Vec<String> = [
            "restore",
            "--config",
            "--from",
            &bucket,
            "--key-file",
            keys,
            "--json",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        a.extend(cloud.iter().map(|s| s.to_string()));
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    let both = ["--secrets-manager", "--ssm"];
    let args = restore(&both);
    let r = run(&args.iter().map(String::as_str).collect::<Vec<_>>())
        .await
        .unwrap();
    assert_eq!(r["objects"], 0, "no Kubernetes object taken: {r}");
    assert_eq!(r["cloud"][0]["created"], 3, "{r}");
    assert_eq!(r["cloud"][1]["created"], 3, "{r}");
    assert_eq!(r["cloud"][0]["region"], REGION, "the backup's region");
    assert_eq!(
        aws.secret(&format!("{prefix}db")).await,
        Some((Some("db-password-1".into()), None))
    );
    assert_eq!(
        aws.secret(&format!("{prefix}cert")).await,
        Some((None, Some(binary.clone())))
    );
    assert_eq!(
        aws.secret(&format!("{prefix}api")).await,
        Some((Some("api-current".into()), None))
    );
    let described = sm
        .describe_secret()
        .secret_id(format!("{prefix}db"))
        .send()
        .await
        .unwrap();
    assert_eq!(described.description(), Some("the database"));
    assert_eq!(described.tags()[0].value(), Some("shop"));
    for (name, t, v) in &params {
        assert_eq!(
            aws.parameter(name).await,
            Some((t.as_str().to_string(), v.to_string())),
            "{name}"
        );
    }

    // Into another prefix and path (and the Secrets Manager only).
    let (to_prefix, to_path) = (format!("{tag}/copy/"), format!("/{tag}/copy"));
    let args = restore(&[
        "--secrets-manager",
        "--to-prefix",
        &to_prefix,
        "--ssm",
        "--to-path",
        &to_path,
    ]);
    let r = run(&args.iter().map(String::as_str).collect::<Vec<_>>())
        .await
        .unwrap();
    assert_eq!(r["cloud"][0]["scope"], to_prefix.as_str(), "{r}");
    assert_eq!(
        aws.secret(&format!("{to_prefix}cert")).await,
        Some((None, Some(binary.clone())))
    );
    assert_eq!(
        aws.parameter(&format!("{to_path}/deep/pw")).await,
        Some(("SecureString".into(), "param-secret-1".into()))
    );
    assert_eq!(
        aws.parameter(&format!("{to_path}/hosts")).await,
        Some(("StringList".into(), "a,b,c".into()))
    );

    // Existing: skipped by default, updated, or the restore stops.
    sm.put_secret_value()
        .secret_id(format!("{prefix}db"))
        .secret_string("changed")
        .send()
        .await
        .unwrap();
    aws.ssm
        .put_parameter()
        .name(&params[2].0)
        .r#type(ParameterType::SecureString)
        .value("changed")
        .overwrite(true)
        .send()
        .await
        .unwrap();
    let args = restore(&both);
    let r = run(&args.iter().map(String::as_str).collect::<Vec<_>>())
        .await
        .unwrap();
    assert_eq!(r["cloud"][0]["skipped"], 3, "{r}");
    assert_eq!(r["cloud"][1]["skipped"], 3, "{r}");
    assert_eq!(
        aws.secret(&format!("{prefix}db"))
            .await
            .unwrap()
            .0
            .as_deref(),
        Some("changed")
    );
    let args = restore(&["--secrets-manager", "--ssm", "--existing", "update"]);
    let r = run(&args.iter().map(String::as_str).collect::<Vec<_>>())
        .await
        .unwrap();
    assert_eq!(r["cloud"][0]["updated"], 3, "{r}");
    assert_eq!(
        aws.secret(&format!("{prefix}db"))
            .await
            .unwrap()
            .0
            .as_deref(),
        Some("db-password-1")
    );
    assert_eq!(
        aws.parameter(&params[2].0).await,
        Some(("SecureString".into(), "param-secret-1".into()))
    );
    let args = restore(&["--ssm", "--existing", "fail"]);
    let (_, err) = run(&args.iter().map(String::as_str).collect::<Vec<_>>())
        .await
        .unwrap_err();
    assert!(err.contains("already exists (--existing fail)"), "{err}");

    // A dry run looks, writes nothing.
    aws.delete_secret(&format!("{prefix}api")).await;
    let args = restore(&["--secrets-manager", "--dry-run"]);
    let r = run(&args.iter().map(String::as_str).collect::<Vec<_>>())
        .await
        .unwrap();
    assert_eq!(r["cloud"][0]["created"], 1, "{r}");
    assert_eq!(r["cloud"][0]["skipped"], 2, "{r}");
    assert_eq!(aws.secret(&format!("{prefix}api")).await, None);

    // Bad input names the flag.
    let (_, err) = run(&[
        "backup",
        "--config",
        "--ssm-path",
        "relative",
        "--to",
        &bucket,
        "--key-file",
        keys,
    ])
    .await
    .unwrap_err();
    assert!(
        err.contains("--ssm-path") && err.contains("does not start with /"),
        "{err}"
    );
    let (_, err) = run(&[
        "backup",
        "--config",
        "--secrets-manager",
        "x/",
        "--cloud-endpoint",
        "http://secrets.example",
        "--to",
        &bucket,
        "--key-file",
        keys,
    ])
    .await
    .unwrap_err();
    assert!(
        err.contains("--cloud-endpoint") && err.contains("not https"),
        "{err}"
    );
}
