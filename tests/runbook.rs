//! docs/RUNBOOK.md, followed: real backups made by the binary into two S3
//! buckets, then every `# runbook-step:` block of the runbook run in order in
//! one bash session with the runbook's own variables pointing at them, then
//! the restored databases compared with the originals. The runbook's top
//! describes the markers.

mod support;

use std::io::Write;
use std::process::{Command, Stdio};
use support::*;

const RUNBOOK: &str = include_str!("../docs/RUNBOOK.md");

#[derive(Debug, PartialEq)]
enum Expect {
    Success,
    Output(String),
    Failure(String),
}

#[derive(Debug, PartialEq)]
struct Step {
    name: String,
    expect: Expect,
    body: String,
}

/// The marked ```sh blocks, in order.
fn steps(markdown: &str) -> Vec<Step> {
    let mut out = Vec::new();
    let mut lines = markdown.lines();
    while let Some(line) = lines.next() {
        if line.trim() != "```sh" {
            continue;
        }
        let block: Vec<&str> = lines.by_ref().take_while(|l| l.trim() != "```").collect();
        let Some(name) = block
            .first()
            .and_then(|l| l.strip_prefix("# runbook-step:"))
        else {
            continue;
        };
        let expect = match block.get(1) {
            Some(l) if l.starts_with("# expect-output:") => {
                Expect::Output(l["# expect-output:".len()..].trim().to_string())
            }
            Some(l) if l.starts_with("# expect-failure:") => {
                Expect::Failure(l["# expect-failure:".len()..].trim().to_string())
            }
            _ => Expect::Success,
        };
        out.push(Step {
            name: name.trim().to_string(),
            expect,
            body: block[1..].join("\n"),
        });
    }
    out
}

fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// One bash script: each step inline (so variables carry over, and `set -e`
/// stops at the first failing command), its output kept to check the
/// expectation; a step expected to fail runs in a subshell.
fn script(steps: &[Step]) -> String {
    // On a failing command set -e ends the script; the trap shows the
    // output of the step it was in.
    let mut s = String::from(
        "set -euo pipefail\n__out=$(mktemp -d)\n__cur=\n\
         trap '__rc=$?; if [ $__rc -ne 0 ] && [ -n \"$__cur\" ]; then cat \"$__cur\"; fi' EXIT\n",
    );
    for (i, step) in steps.iter().enumerate() {
        let f = format!("\"$__out/{i}\"");
        let name = quote(&step.name);
        s.push_str(&format!("echo \"=== runbook step {}\"\n", step.name));
        match &step.expect {
            Expect::Failure(text) => s.push_str(&format!(
                "if ( {body}\n ) >{f} 2>&1; then cat {f}; echo \"step \"{name}\" should have failed\"; exit 1; fi\n\
                 cat {f}\n\
                 grep -qF -- {text} {f} || {{ echo \"step \"{name}\" did not print \"{text}; exit 1; }}\n",
                body = step.body,
                text = quote(text),
            )),
            Expect::Output(text) => s.push_str(&format!(
                "__cur={f}\n{{ {body}\n }} >{f} 2>&1\n__cur=\n\
                 cat {f}\n\
                 grep -qF -- {text} {f} || {{ echo \"step \"{name}\" did not print \"{text}; exit 1; }}\n",
                body = step.body,
                text = quote(text),
            )),
            Expect::Success => s.push_str(&format!("{}\n", step.body)),
        }
    }
    s.push_str("echo '=== runbook done'\n");
    s
}

#[test]
fn the_markers_are_parsed() {
    let md = "text\n```sh\nnot a step\n```\n```sh\n# runbook-step: a\necho 1\n```\n\
              ```text\n# runbook-step: no\n```\n```sh\n# runbook-step: b\n# expect-failure: boom\nfalse\n```\n";
    assert_eq!(
        steps(md),
        [
            Step {
                name: "a".into(),
                expect: Expect::Success,
                body: "echo 1".into()
            },
            Step {
                name: "b".into(),
                expect: Expect::Failure("boom".into()),
                body: "# expect-failure: boom\nfalse".into()
            },
        ]
    );
}

#[test]
fn a_failing_command_stops_the_script_even_inside_an_output_step() {
    let steps = [Step {
        name: "x".into(),
        expect: Expect::Output("never".into()),
        body: "false\necho never".into(),
    }];
    let out = Command::new("bash")
        .arg("-c")
        .arg(script(&steps))
        .output()
        .unwrap();
    assert!(!out.status.success());
}

#[test]
fn the_runbook_restores_from_the_bucket_and_the_key_alone() {
    let steps = steps(RUNBOOK);
    let names: Vec<&str> = steps.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "binary",
            "settings",
            "credentials",
            "list",
            "verify",
            "target",
            "restore",
            "check",
            "region-down",
            "wrong-key",
            "corrupted",
            "corrupted-fallback"
        ]
    );

    // The day before: two backups of a database into two regions.
    let dir = tempfile::tempdir().unwrap();
    let key = keyfile(dir.path(), "prod-2026-11");
    let creds = dir.path().join("creds");
    let primary = bucket("us-east-1");
    let secondary = bucket("eu-west-1");
    // On the bad day the runbook reaches them with the files it writes.
    let with_creds = |url: &str| format!("{url}&credentials={}", creds.display());
    let src = create_db("runbook");
    fill_rich(&src);
    let take_backup = |label: &str| -> String {
        let r = backup(&src, key.to_str().unwrap(), &[&primary, &secondary])
            .json()
            .ok();
        let id = r["backup_id"].as_str().unwrap().to_string();
        assert!(!id.is_empty(), "{label}");
        id
    };
    let first = take_backup("first");
    let first_dump = dump(&src);
    psql(
        &src,
        "insert into sales.orders (customer) values ('after the first backup')",
    );
    let second = take_backup("second");
    let second_dump = dump(&src);
    // The newest backup's data object is damaged in the second region.
    let data_key = s3_keys(&secondary)
        .into_iter()
        .find(|k| k.contains(&second) && k.ends_with(".lbk") && !k.ends_with("globals.lbk"))
        .expect("the second backup's data object");
    let mut bytes = s3_get(&secondary, &data_key);
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    s3_put(&secondary, &data_key, bytes);

    // The bad day: only the binary, the buckets and the key file.
    let bin_dir = std::path::Path::new(bin()).parent().unwrap();
    let path = format!(
        "{}:{}:{}",
        bin_dir.display(),
        pg_bin().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let target = unique("restored");
    let mut child = Command::new("bash")
        .arg("-c")
        .arg(script(&steps))
        .env("PATH", path)
        .env("HOME", dir.path())
        .env("LIFEBOAT_BUCKET", with_creds(&primary))
        .env("LIFEBOAT_BUCKET_2", with_creds(&secondary))
        .env("LIFEBOAT_KEY_FILE", &key)
        .env("LIFEBOAT_CREDS", &creds)
        .env("POINT", &first)
        .env("TARGET_DB", &target)
        .env("LIFEBOAT_LOG", "warn")
        // Only the credential files the runbook writes reach S3.
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env_remove("PGPASSFILE")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // What the person pastes at step 3's prompts (moto takes any keys).
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"AKIARUNBOOKTEST\nrunbook/secret:key\npg:pass\\word\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let log = format!("{}{}", stdout(&out), stderr(&out));
    // Shown with --nocapture: the bad day as the runbook plays it.
    println!("{log}");
    assert!(out.status.success(), "the runbook failed:\n{log}");
    assert!(log.contains("=== runbook done"), "{log}");

    // Step 3 wrote the files the URLs name, and a passfile with the escapes.
    assert_eq!(
        std::fs::read_to_string(creds.join("AWS_SECRET_ACCESS_KEY")).unwrap(),
        "runbook/secret:key"
    );
    let pgpass = dir.path().join("lifeboat-restore/pgpass");
    assert_eq!(
        std::fs::read_to_string(pgpass).unwrap(),
        "*:*:*:*:pg\\:pass\\\\word\n"
    );
    // The chosen point (the first backup) is what was restored.
    assert_eq!(dump(&target), first_dump, "{log}");
    assert_eq!(dump(&format!("{target}_failover")), first_dump, "{log}");
    // Around the damaged copy: the newest backup, from the primary.
    assert_eq!(dump(&format!("{target}_fallback")), second_dump, "{log}");
    let object = &data_key[data_key.find("backups/").unwrap()..];
    assert!(log.contains(object), "verify names {object}: {log}");
    assert!(
        log.contains("restored backup") && log.contains(&first),
        "{log}"
    );
    assert!(
        log.contains("\"prod-2026-11\", which the key file does not hold"),
        "{log}"
    );
}
