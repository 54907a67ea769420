//! The commands on backups in destinations: backup, list, verify, prune,
//! and keygen for the key that seals them.

use super::args::{self, BackupArgs, KeygenArgs, ListArgs, MethodArg, PruneArgs, VerifyArgs};
use super::print::{self, write_report};
use crate::commands::{self, backup, list, prune, verify};
use crate::keys;
use crate::source::{config, postgres, Source};
use std::process::ExitCode;
use std::sync::Arc;

/// `lifeboat backup [--verify]`.
pub async fn backup(a: BackupArgs) -> Result<ExitCode, commands::Error> {
    let policy = manifest_policy(a.policy.as_deref(), a.key.owner.owner.as_ref())?;
    if let Some(root) = a.path.clone() {
        return backup_files(a, root, policy).await;
    }
    if let Some(loc) = a.bucket.clone() {
        return backup_bucket(a, loc, policy).await;
    }
    if !a.include.is_empty() || !a.exclude.is_empty() || a.full || a.skip_unreadable {
        return Err(commands::Error::Usage(
            "--include, --exclude, --full and --skip-unreadable go with --path or --bucket".into(),
        ));
    }
    let conn = a.conn.conn()?;
    let maintenance_db = a.conn.maintenance_db.clone();
    // The one place the command line picks the kind of source.
    let source = match a.method {
        _ if a.objects.config => {
            Source::Config(config::Config::connect(a.objects.selection()?).await?)
        }
        MethodArg::Logical => Source::PostgresLogical(postgres::logical::Logical::new(
            conn,
            a.databases.clone(),
            a.all_databases,
            maintenance_db,
            !a.no_globals,
        )),
        MethodArg::Physical => {
            Source::PostgresPhysical(postgres::physical::Physical::new(conn, maintenance_db))
        }
    };
    let report = backup::backup(backup::BackupOptions {
        source,
        to: a.to.clone(),
        keys: a.key.load()?,
        compression: args::compression(a.compression),
        policy,
        tier: a.tier.clone(),
        allow_partial: a.allow_partial,
    })
    .await?;
    finish(&a, report).await
}

/// `lifeboat backup --path DIR`: files into the chunk store.
async fn backup_files(
    a: BackupArgs,
    root: std::path::PathBuf,
    policy: String,
) -> Result<ExitCode, commands::Error> {
    let report = commands::files::backup(commands::files::FilesBackupOptions {
        spec: crate::source::files::FilesSpec {
            root,
            include: a.include.clone(),
            exclude: a.exclude.clone(),
            full: a.full,
            skip_unreadable: a.skip_unreadable,
            sizes: crate::chunks::chunker::DEFAULT_SIZES,
        },
        to: a.to.clone(),
        keys: a.key.load()?,
        policy,
        tier: a.tier.clone(),
        pack_target: a.pack_size,
    })
    .await?;
    finish(&a, report).await
}

/// `lifeboat backup --bucket s3://…`: a bucket's objects into the chunk store.
async fn backup_bucket(
    a: BackupArgs,
    loc: crate::location::Location,
    policy: String,
) -> Result<ExitCode, commands::Error> {
    let crate::location::Location::S3(source) = loc else {
        return Err(commands::Error::Usage(
            "--bucket: expected s3://bucket/prefix?region=…".into(),
        ));
    };
    if a.skip_unreadable {
        return Err(commands::Error::Usage(
            "--skip-unreadable goes with --path".into(),
        ));
    }
    let report = commands::bucket::backup(commands::bucket::BucketBackupOptions {
        source,
        include: a.include.clone(),
        exclude: a.exclude.clone(),
        full: a.full,
        chunked: commands::chunked::ChunkedOptions {
            to: a.to.clone(),
            keys: a.key.load()?,
            policy,
            tier: a.tier.clone(),
            pack_target: a.pack_size,
        },
    })
    .await?;
    finish(&a, report).await
}

/// Read-back (`--verify`), the report file and the printed report; exit 1
/// when the committed backup failed read-back.
async fn finish(
    a: &BackupArgs,
    mut report: backup::BackupReport,
) -> Result<ExitCode, commands::Error> {
    let verified = if a.verify {
        let keys = Arc::new(a.key.load()?);
        backup::verify_committed(&mut report, keys).await?
    } else {
        true
    };
    write_report(a.report_file.as_deref(), &report.summary())?;
    print::report(a.json, &report, print::backup);
    if !verified {
        eprintln!(
            "error: backup {} was committed but failed read-back verification",
            report.backup_id
        );
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

/// The policy a backup's manifest names: `--policy`, which must agree with
/// `--owner` when both are given.
fn manifest_policy(
    policy: Option<&str>,
    owner: Option<&crate::owner::Owner>,
) -> Result<String, commands::Error> {
    match (policy, owner) {
        (Some(p), Some(o)) if p != o.policy => Err(commands::Error::Usage(format!(
            "--policy {p:?} is not the policy of --owner {o}"
        ))),
        (Some(p), _) => Ok(p.to_string()),
        (None, Some(o)) => Ok(o.policy.clone()),
        (None, None) => Ok("manual".into()),
    }
}

/// `lifeboat list`.
pub async fn list(a: ListArgs) -> Result<ExitCode, commands::Error> {
    let keys = a.key_file.as_deref().map(|k| a.owner.load(k)).transpose()?;
    let entries = list::list(&a.from, keys.as_ref()).await?;
    print::report(a.json, entries.as_slice(), print::list);
    Ok(ExitCode::SUCCESS)
}

/// `lifeboat verify`: exit 1 when any check fails or nothing was checked.
pub async fn verify(a: VerifyArgs) -> Result<ExitCode, commands::Error> {
    let which = if a.backup == "all" {
        verify::Which::All
    } else {
        verify::Which::Point(
            a.backup
                .parse()
                .map_err(|e: String| commands::Error::Usage(format!("--backup: {e}")))?,
        )
    };
    let keys = Arc::new(a.key.load()?);
    let report = verify::verify(&a.from, keys, &which).await?;
    print::report(a.json, &report, print::verify);
    if report.problems > 0 || report.checks.is_empty() {
        if report.checks.is_empty() {
            eprintln!("error: no backup to verify");
        } else {
            eprintln!("error: {} problem(s) found", report.problems);
        }
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

/// `lifeboat prune`.
pub async fn prune(a: PruneArgs) -> Result<ExitCode, commands::Error> {
    if a.backups.is_empty() && !a.incomplete {
        return Err(commands::Error::Usage(
            "nothing to prune: give --backup ID or --incomplete".into(),
        ));
    }
    let keys = a.key_file.as_deref().map(|k| a.owner.load(k)).transpose()?;
    let grace = crate::api::parse_duration(&a.grace).ok_or_else(|| {
        commands::Error::Usage(format!(
            "--grace {:?}: not a duration like 24h or 90m",
            a.grace
        ))
    })?;
    let report = prune::prune(&a.from, &a.backups, a.incomplete, keys.map(Arc::new), grace).await?;
    write_report(a.report_file.as_deref(), &report.summary())?;
    print::report(a.json, &report, print::prune);
    Ok(ExitCode::SUCCESS)
}

/// `lifeboat keygen`.
pub fn keygen(a: KeygenArgs) -> Result<ExitCode, commands::Error> {
    keys::write_new_key(&a.out, &a.id, a.add)?;
    eprintln!(
        "wrote key {:?} to {} (mode 0600); keep a copy outside the cluster",
        a.id,
        a.out.display()
    );
    Ok(ExitCode::SUCCESS)
}
