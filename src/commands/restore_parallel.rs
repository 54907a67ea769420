//! `restore --jobs N` into a database the restore creates (docs/DESIGN.md,
//! *Parallel restore*). The dump is copied locally as it downloads and
//! authenticates; pg_restore processes follow that copy as it grows:
//!
//! 1. `--list --section=data` reads the table of contents at its head;
//! 2. the pre-data section (tables, types, functions) in one transaction;
//! 3. the data entries shared out over N lists, one pg_restore per list,
//!    each in its own transaction and fed at its own pace with only its
//!    own entries' data blocks;
//! 4. once the copy authenticated whole: `pg_restore --jobs N
//!    --section=post-data` builds indexes and constraints from the
//!    archive's head.
//!
//! A framed archive (docs/FORMAT.md, *Frames*) is copied still compressed
//! and each loader decompresses only its own frames (`target::frame_feed`);
//! any other is decoded into the copy and each loader's blocks are found by
//! walking it (`target::growing`).
//!
//! Every pg_restore reads only bytes that authenticated; a data loader sees
//! the end of its input only once all of them did (steps 1 and 2 read
//! nothing past the table of contents). Not one transaction: any failure
//! fails the restore, whose caller drops the database it created.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use super::download::{decode_checked, decode_object, Output};
use super::restore::Dump;
use super::Error;
use crate::catalog::{Frames, ObjectEntry};
use crate::source::postgres::archive::listed_id;
use crate::source::postgres::RestoreInput;
use crate::target::database::Prepared;
use crate::target::frame_feed::{feed_frames, Span};
use crate::target::growing::{feed_blocks, FeedError, GrowingWriter, Growth};
use crate::target::spool::Spool;
use crate::target::TargetError;

/// What one pg_restore's stdin is fed with, on a blocking thread.
type Feed = Box<dyn FnOnce(&mut dyn Write) -> Result<(), FeedError> + Send>;

/// The entries a loader loads (`--list` lines) and what feeds it.
type Share = (Vec<String>, Feed);

fn owned(list: Vec<&str>) -> Vec<String> {
    list.into_iter().map(str::to_string).collect()
}

/// The frames of `entry` a parallel restore can use: an index that is
/// consistent with the object.
fn frames_of(entry: &ObjectEntry) -> Option<&Frames> {
    let frames = entry.frames.as_ref()?;
    match frames.problem(entry.plain_size) {
        None if frames.frames.len() > 1 => Some(frames),
        None => None,
        Some(problem) => {
            tracing::warn!(problem, "the archive's frame index is not used");
            None
        }
    }
}

/// The local disk a parallel restore of `entry` needs: the compressed
/// stream and the decoded head of a framed archive, else the whole
/// decoded archive.
pub(super) fn spool_need(entry: &ObjectEntry) -> u64 {
    match frames_of(entry) {
        Some(f) => f.end + f.frames[1].plain_at,
        None => entry.plain_size,
    }
}

/// Loads the dump over `jobs` connections; returns its decoded size.
pub(super) async fn load(
    dump: &Dump<'_>,
    spool: &Spool,
    jobs: u32,
    target: &mut Prepared,
) -> Result<u64, Error> {
    let growth = Growth::new();
    let framed = frames_of(dump.entry);
    let copy = match framed {
        Some(_) => spool.dir().join("frames"),
        None => spool.file(),
    };
    let file = std::fs::File::create(&copy).map_err(Error::Pipeline)?;
    let writer = GrowingWriter::new(file, growth.clone());
    let decoding = async {
        let decoded = match framed {
            Some(f) => {
                let output = Output::Compressed { len: f.end };
                decode_checked(dump.store, dump.entry, dump.keys.clone(), writer, output).await
            }
            None => decode_object(dump.store, dump.entry, dump.keys.clone(), writer).await,
        };
        growth.end(decoded.is_ok());
        decoded.map(|_| dump.entry.plain_size)
    };
    let loading = async {
        match framed {
            Some(frames) => load_framed(dump, spool, frames, &copy, &growth, jobs).await,
            None => load_decoded(dump, spool, &copy, &growth, jobs).await,
        }
    };
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

/// Steps 1–3 from a framed archive's compressed `copy`: the head decoded
/// into the spool's file (for post-data and the properties), then each
/// loader fed the head and its own frames.
async fn load_framed(
    dump: &Dump<'_>,
    spool: &Spool,
    frames: &Frames,
    copy: &Path,
    growth: &Arc<Growth>,
    jobs: u32,
) -> Result<(), Error> {
    tracing::info!(
        frames = frames.frames.len(),
        "a framed archive: each loader decompresses its own frames"
    );
    let spans = spans(frames, dump.entry.plain_size);
    let feed = |mine: Vec<Span>, wait_end| -> Feed {
        let (path, growth) = (copy.to_path_buf(), growth.clone());
        Box::new(move |out| feed_frames(&path, &growth, &mine, wait_end, out))
    };
    let head = feed(vec![spans[0].clone()], false);
    let mut file = std::fs::File::create(spool.file()).map_err(Error::Pipeline)?;
    tokio::task::spawn_blocking(move || head(&mut file))
        .await
        .map_err(std::io::Error::other)
        .and_then(|r| r.map_err(std::io::Error::other))
        .map_err(Error::Pipeline)?;
    let plan = |entries: &[&str]| {
        share_frames(frames, dump.entry.plain_size, entries, jobs as usize)
            .into_iter()
            .map(|(mine, listed)| {
                let mine = std::iter::once(0).chain(mine).map(|i| spans[i].clone());
                (owned(listed), feed(mine.collect(), true))
            })
            .collect()
    };
    load_tables(dump, spool, || feed(vec![spans[0].clone()], false), plan).await
}

/// Steps 1–3 from the decoded `copy`: each loader fed the header and table
/// of contents, then its own entries' blocks, found by walking the copy.
async fn load_decoded(
    dump: &Dump<'_>,
    spool: &Spool,
    copy: &Path,
    growth: &Arc<Growth>,
    jobs: u32,
) -> Result<(), Error> {
    let feed = |keep: HashSet<i64>| -> Feed {
        let (path, growth) = (copy.to_path_buf(), growth.clone());
        Box::new(move |out| feed_blocks(&path, &growth, &keep, out))
    };
    let plan = |entries: &[&str]| {
        share(entries, jobs as usize)
            .into_iter()
            .map(|l| {
                let keep = l.iter().filter_map(|e| listed_id(e)).collect();
                (owned(l), feed(keep))
            })
            .collect()
    };
    load_tables(dump, spool, || feed(HashSet::new()), plan).await
}

/// Each frame's place and decoded size.
fn spans(frames: &Frames, plain_size: u64) -> Vec<Span> {
    (0..frames.frames.len())
        .map(|i| Span {
            stored: frames.range(i),
            plain: frames.plain_len(i, plain_size),
        })
        .collect()
}

/// Steps 1–3: what precedes the post-data section. `head` feeds the
/// archive's head alone; `plan` shares the data entries out.
async fn load_tables(
    dump: &Dump<'_>,
    spool: &Spool,
    head: impl Fn() -> Feed,
    plan: impl FnOnce(&[&str]) -> Vec<Share>,
) -> Result<(), Error> {
    let listing = list_data(dump, head()).await?;
    let entries: Vec<&str> = listing
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with(';'))
        .collect();
    let pre_data = RestoreInput::StreamSection {
        section: "pre-data",
        list: None,
    };
    fed_load(dump, &pre_data, head()).await?;
    let shares = plan(&entries);
    tracing::info!(database = %dump.db, entries = entries.len(), loaders = shares.len(), "loading rows in parallel");
    let mut loads = Vec::new();
    for (i, (list, feed)) in shares.into_iter().enumerate() {
        let path = spool.dir().join(format!("data-{i}.list"));
        std::fs::write(&path, list.join("\n") + "\n").map_err(Error::Pipeline)?;
        loads.push((path, feed));
    }
    let loads = loads.into_iter().map(|(path, feed)| async move {
        let input = RestoreInput::StreamSection {
            section: "data",
            list: Some(&path),
        };
        fed_load(dump, &input, feed).await
    });
    for outcome in futures::future::join_all(loads).await {
        outcome?;
    }
    Ok(())
}

/// The data section's entries (`pg_restore --list` lines), read from the
/// table of contents at the archive's head.
async fn list_data(dump: &Dump<'_>, feed: Feed) -> Result<String, Error> {
    let mut cmd = dump.server.conn.pg_restore_list("data");
    let out = tokio::task::spawn_blocking(move || -> std::io::Result<_> {
        let mut child = cmd.spawn()?;
        let mut stdin = child.stdin.take().expect("piped stdin");
        let feeder = std::thread::spawn(move || feed(&mut stdin));
        let out = child.wait_with_output()?;
        Ok((out, feeder.join().unwrap_or(Err(FeedError::Failed))))
    })
    .await
    .map_err(std::io::Error::other)
    .and_then(|r| r)
    .map_err(Error::Pipeline)?;
    let (out, fed) = out;
    if let Err(e @ (FeedError::Failed | FeedError::Frame { .. })) = fed {
        return Err(Error::Pipeline(std::io::Error::other(e)));
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

/// One pg_restore of `input`, fed by `feed`; killed when the feed fails.
async fn fed_load(dump: &Dump<'_>, input: &RestoreInput<'_>, feed: Feed) -> Result<(), Error> {
    let mut loader = dump.server.loader(dump.db, input)?;
    let mut sink = loader.input();
    let fed = tokio::task::spawn_blocking(move || feed(&mut sink)).await;
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

/// A framed archive's data frames (1..) shared over at most `n` loaders,
/// each next frame, largest first, to the loader with the fewest bytes so
/// far; each loader's entries are those whose blocks its frames hold, plus
/// a round-robin share of the entries without a block (a sequence's
/// value). Frames and entries stay in archive order.
fn share_frames<'a>(
    frames: &Frames,
    plain_size: u64,
    entries: &[&'a str],
    n: usize,
) -> Vec<(Vec<usize>, Vec<&'a str>)> {
    let data = frames.frames.len() - 1;
    let n = n.clamp(1, data.max(1));
    let mut by_size: Vec<usize> = (1..=data).collect();
    by_size.sort_by_key(|&i| std::cmp::Reverse(frames.plain_len(i, plain_size)));
    let mut load = vec![0u64; n];
    let mut mine = vec![Vec::new(); n];
    let mut owner = HashMap::new();
    for i in by_size {
        let least = (0..n).min_by_key(|&l| (load[l], l)).expect("n >= 1");
        load[least] += frames.plain_len(i, plain_size);
        mine[least].push(i);
        for id in &frames.frames[i].ids {
            owner.insert(*id, least);
        }
    }
    let mut lists = vec![Vec::new(); n];
    let mut next = 0;
    for e in entries {
        let l = match listed_id(e).and_then(|id| owner.get(&id)) {
            Some(&l) => l,
            None => {
                next += 1;
                (next - 1) % n
            }
        };
        lists[l].push(*e);
    }
    mine.iter_mut().for_each(|m| m.sort_unstable());
    mine.into_iter()
        .zip(lists)
        .filter(|(m, l)| !m.is_empty() || !l.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Frame;

    #[test]
    fn entries_are_shared_round_robin_in_archive_order() {
        let e = ["a", "b", "c", "d", "e"];
        assert_eq!(share(&e, 2), vec![vec!["a", "c", "e"], vec!["b", "d"]]);
        assert_eq!(share(&e[..1], 4), vec![vec!["a"]]);
        assert!(share(&[], 3).is_empty());
    }

    #[test]
    fn frames_go_largest_first_to_the_least_loaded_loader() {
        let frame = |at, plain_at, ids: &[i64]| Frame {
            at,
            plain_at,
            ids: ids.to_vec(),
        };
        // Data frames of 100, 900, 300 and 500 bytes.
        let frames = Frames {
            frames: vec![
                frame(0, 0, &[]),
                frame(10, 100, &[1, 2]),
                frame(20, 200, &[3]),
                frame(30, 1100, &[4]),
                frame(40, 1400, &[5]),
            ],
            end: 50,
        };
        let entries = ["1; a", "2; b", "3; c", "4; d", "5; e", "6; seq", "7; seq"];
        let shares = share_frames(&frames, 1900, &entries, 2);
        // 900 → 0; 500 → 1; 300 → 1 (800); 100 → 1 (900).
        assert_eq!(shares[0], (vec![2], vec!["3; c", "6; seq"]));
        assert_eq!(
            shares[1],
            (
                vec![1, 3, 4],
                vec!["1; a", "2; b", "4; d", "5; e", "7; seq"]
            )
        );
        let one = share_frames(&frames, 1900, &entries, 8);
        assert_eq!(one.len(), 4, "no more loaders than data frames");
        assert_eq!(share_frames(&frames, 1900, &entries, 1)[0].1, entries);
    }
}
