//! `restore --jobs N` into a database the restore creates (docs/DESIGN.md,
//! *Parallel restore*). The dump is decoded into a local copy as it
//! downloads; pg_restore processes follow that copy as it grows:
//!
//! 1. `--list --section=data` reads the table of contents at its head;
//! 2. the pre-data section (tables, types, functions) in one transaction;
//! 3. the data entries shared out over N lists, one pg_restore per list,
//!    each in its own transaction and fed from the copy at its own pace
//!    with only its own entries' data blocks (`target::archive` finds them);
//! 4. once the copy authenticated whole: `pg_restore --jobs N
//!    --section=post-data` builds indexes and constraints from it.
//!
//! Every pg_restore reads only bytes that authenticated; a data loader sees
//! the end of its input only once all of them did (steps 1 and 2 read
//! nothing past the table of contents). Not one transaction: any failure
//! fails the restore, whose caller drops the database it created.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;

use super::download::decode_object;
use super::restore::Dump;
use super::Error;
use crate::source::postgres::RestoreInput;
use crate::target::archive::listed_id;
use crate::target::database::Prepared;
use crate::target::growing::{feed_blocks, FeedError, GrowingWriter, Growth};
use crate::target::spool::Spool;
use crate::target::TargetError;

/// Loads the dump over `jobs` connections; returns its decoded bytes.
pub(super) async fn load(
    dump: &Dump<'_>,
    spool: &Spool,
    jobs: u32,
    target: &mut Prepared,
) -> Result<u64, Error> {
    let growth = Growth::new();
    let file = std::fs::File::create(spool.file()).map_err(Error::Pipeline)?;
    let writer = GrowingWriter::new(file, growth.clone());
    let decoding = async {
        let decoded = decode_object(dump.store, dump.entry, dump.keys.clone(), writer).await;
        growth.end(decoded.is_ok());
        decoded.map(|(_, plain)| plain)
    };
    let loading = load_tables(dump, spool, &growth, jobs);
    let (decoded, loaded) = tokio::join!(decoding, loading);
    // A damaged dump is the cause of whatever the loads then reported.
    let plain = decoded?;
    loaded?;
    tracing::info!(database = %dump.db, jobs, "tables loaded; building indexes and constraints in parallel");
    dump.server
        .build_post_data(dump.db, &spool.file(), jobs, target)
        .await?;
    Ok(plain)
}

/// Steps 1–3: what precedes the post-data section.
async fn load_tables(
    dump: &Dump<'_>,
    spool: &Spool,
    growth: &Arc<Growth>,
    jobs: u32,
) -> Result<(), Error> {
    let listing = list_data(dump, spool, growth).await?;
    let entries: Vec<&str> = listing
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with(';'))
        .collect();
    let pre_data = RestoreInput::StreamSection {
        section: "pre-data",
        list: None,
    };
    fed_load(dump, spool, growth, &pre_data, HashSet::new()).await?;
    let lists = share(&entries, jobs as usize);
    tracing::info!(database = %dump.db, entries = entries.len(), loaders = lists.len(), "loading rows in parallel");
    let mut paths = Vec::new();
    for (i, list) in lists.iter().enumerate() {
        let path = spool.file().with_file_name(format!("data-{i}.list"));
        std::fs::write(&path, list.join("\n") + "\n").map_err(Error::Pipeline)?;
        paths.push(path);
    }
    let inputs: Vec<RestoreInput> = paths
        .iter()
        .map(|p| RestoreInput::StreamSection {
            section: "data",
            list: Some(p.as_path()),
        })
        .collect();
    let keeps = lists
        .iter()
        .map(|l| l.iter().filter_map(|e| listed_id(e)).collect());
    let loads = inputs
        .iter()
        .zip(keeps)
        .map(|(i, keep)| fed_load(dump, spool, growth, i, keep));
    for outcome in futures::future::join_all(loads).await {
        outcome?;
    }
    Ok(())
}

/// The data section's entries (`pg_restore --list` lines), read from the
/// table of contents at the copy's head.
async fn list_data(dump: &Dump<'_>, spool: &Spool, growth: &Arc<Growth>) -> Result<String, Error> {
    let mut cmd = dump.server.conn.pg_restore_list("data");
    let (path, growth) = (spool.file(), growth.clone());
    let out = tokio::task::spawn_blocking(move || -> std::io::Result<_> {
        let mut child = cmd.spawn()?;
        let stdin = child.stdin.take().expect("piped stdin");
        let feeder =
            std::thread::spawn(move || feed_blocks(&path, &growth, &HashSet::new(), stdin));
        let out = child.wait_with_output()?;
        Ok((out, feeder.join().unwrap_or(Err(FeedError::Failed))))
    })
    .await
    .map_err(std::io::Error::other)
    .and_then(|r| r)
    .map_err(Error::Pipeline)?;
    let (out, fed) = out;
    if let Err(FeedError::Failed) = fed {
        return Err(Error::Pipeline(std::io::Error::other(FeedError::Failed)));
    }
    if !out.status.success() {
        return Err(TargetError::Refused(format!(
            "pg_restore could not read the archive's table of contents: {}",
            crate::source::child::withhold_row_values(String::from_utf8_lossy(&out.stderr).trim())
        ))
        .into());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// One pg_restore of `input`, fed from the copy as it grows with the data
/// blocks of `keep` only; killed when the copy fails.
async fn fed_load(
    dump: &Dump<'_>,
    spool: &Spool,
    growth: &Arc<Growth>,
    input: &RestoreInput<'_>,
    keep: HashSet<i64>,
) -> Result<(), Error> {
    let mut loader = dump.server.loader(dump.db, input)?;
    let sink = loader.input();
    let (path, growth): (PathBuf, _) = (spool.file(), growth.clone());
    let fed = tokio::task::spawn_blocking(move || feed_blocks(&path, &growth, &keep, sink)).await;
    match fed {
        Ok(Ok(())) => {
            loader.finish().await?;
            Ok(())
        }
        Ok(Err(e)) => Err(loader
            .abort()
            .await
            .map_or(Error::Pipeline(std::io::Error::other(e)), Error::from)),
        Err(e) => {
            let _ = loader.abort().await;
            Err(Error::Pipeline(std::io::Error::other(e)))
        }
    }
}

/// `entries` in at most `n` lists, round-robin, each in the archive's
/// order (a pg_restore reading a stream meets its entries in that order).
fn share<'a>(entries: &[&'a str], n: usize) -> Vec<Vec<&'a str>> {
    let n = n.clamp(1, entries.len().max(1));
    let mut lists = vec![Vec::new(); n];
    for (i, e) in entries.iter().enumerate() {
        lists[i % n].push(*e);
    }
    lists.retain(|l| !l.is_empty());
    lists
}

#[cfg(test)]
mod tests {
    use super::share;

    #[test]
    fn entries_are_shared_round_robin_in_archive_order() {
        let e = ["a", "b", "c", "d", "e"];
        assert_eq!(share(&e, 2), vec![vec!["a", "c", "e"], vec!["b", "d"]]);
        assert_eq!(share(&e[..1], 4), vec![vec!["a"]]);
        assert!(share(&[], 3).is_empty());
    }
}
