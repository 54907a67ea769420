//! Chunks for a restore, read pack span by pack span.
//!
//! A restore asks for chunks in tree order, which is mostly the order the
//! backup wrote them into packs. A [`Plan`], made by a first pass over the
//! tree, lists the stretches of packs ("spans") those asks cover, in order;
//! a [`Feed`] streams each span with one ranged GET, a few spans ahead of
//! the writer, and hands the chunks out as the second pass asks for them.
//! On S3 the request, not the byte, is what costs: a span is one request
//! where reading chunk by chunk was one per chunk. Nothing here decides
//! anything from the bytes: every chunk still opens only under its id
//! ([`Repo::open_blob`]), and an ask the plan does not cover (the tree
//! read twice may differ, when someone edits it in between) is read alone.

use super::index::Index;
use super::repo::Repo;
use super::tree::Entry;
use super::tree_io::TreeReader;
use super::{ChunkError, ChunkId, ChunkKeys};
use crate::catalog::ObjectEntry;
use crate::chunks::pack::HEADER_MAX;
use crate::keys::Keyring;
use crate::store::{Store, StoreError};
use bytes::Bytes;
use std::collections::{HashSet, VecDeque};
use tokio::runtime::Handle;
use tokio::sync::mpsc;

/// A span goes on past up to this many bytes of chunks nobody asked for
/// (reading them costs less than a second request).
pub const SPAN_GAP: u64 = 1 << 20;
/// Spans downloading ahead of the one being read: their requests' latency
/// overlaps the writing (the benchmarks in docs/BENCHMARKS.md ran with 3).
const SPANS_AHEAD: usize = 3;
/// Frames of a span buffered ahead (the store's read size each: 1 MiB from
/// a directory, a few KiB from S3).
const FRAMES_AHEAD: usize = 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Span {
    pack: u32,
    start: u64,
    end: u64,
    /// Starts at the pack's header, which opens the pack's key.
    header: bool,
}

/// The spans a restore will read, in the order it will ask.
#[derive(Debug, Default)]
pub struct Plan {
    spans: Vec<Span>,
    last: Option<ChunkId>,
    /// The same chunk is asked for twice in a row somewhere.
    repeats: bool,
    headed: HashSet<u32>,
}

impl Plan {
    /// Adds the next chunk the restore will ask for. A chunk the index
    /// lacks is left out (asking for it reports it missing).
    pub fn add(&mut self, index: &Index, id: &ChunkId) {
        if self.last == Some(*id) {
            self.repeats = true; // a run of one chunk (zeros): handed out again
            return;
        }
        self.last = Some(*id);
        let Some((_, l)) = index.get(id) else {
            return;
        };
        let (start, end) = (l.offset, l.offset + u64::from(l.stored_len));
        if let Some(s) = self.spans.last_mut() {
            if s.pack == l.pack && start >= s.end && start - s.end <= SPAN_GAP {
                s.end = end;
                return;
            }
        }
        // The first span near a pack's start reads its header too.
        let header = start <= HEADER_MAX as u64 + SPAN_GAP && self.headed.insert(l.pack);
        self.spans.push(Span {
            pack: l.pack,
            start: if header { 0 } else { start },
            end,
            header,
        });
    }

    /// Range requests the plan makes.
    pub fn requests(&self) -> usize {
        self.spans.len()
    }
}

/// Plans the chunk reads of the entries of `tree` that `keep` selects, in
/// tree order: a first pass over the tree (the restore is the second).
pub fn plan_tree(
    rt: Handle,
    store: &Store,
    keys: &Keyring,
    tree: &ObjectEntry,
    index: &Index,
    keep: impl Fn(&Entry) -> bool,
) -> Result<Plan, String> {
    let mut plan = Plan::default();
    for e in TreeReader::open(rt, store, keys, tree)? {
        let e = e?;
        if keep(&e) {
            for c in e.chunk_refs() {
                plan.add(index, &c.id);
            }
        }
    }
    Ok(plan)
}

type Frames = mpsc::Receiver<Result<Bytes, StoreError>>;

/// A span being downloaded by a task of the runtime.
struct Running {
    at: usize,
    frames: Frames,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The span being read: its bytes from `pos` on, as they arrive.
struct Current {
    span: Span,
    pack: String,
    run: Running,
    buf: Vec<u8>,
    /// The offset in the pack of `buf[0]`.
    pos: u64,
}

impl Current {
    fn covers(&self, pack: u32, offset: u64, len: u64) -> bool {
        self.span.pack == pack && offset >= self.pos && offset + len <= self.span.end
    }

    /// Receives frames until the buffer reaches `end`, dropping whatever
    /// ends before `keep` (the chunks between asked ones).
    fn fill_to(&mut self, keep: u64, end: u64) -> Result<(), ChunkError> {
        loop {
            let have = self.pos + self.buf.len() as u64;
            if have <= keep {
                self.pos = have;
                self.buf.clear();
            }
            if have >= end {
                return Ok(());
            }
            match self.run.frames.blocking_recv() {
                Some(Ok(b)) => self.buf.extend_from_slice(&b),
                Some(Err(e)) => return Err(e.into()),
                None => {
                    return Err(ChunkError::Pack {
                        pack: self.pack.clone(),
                        problem: format!(
                            "ends before offset {end}, where its index says a chunk ends"
                        ),
                    })
                }
            }
        }
    }

    /// The `len` bytes at `offset`; what comes before them is dropped.
    fn take(&mut self, offset: u64, len: u64) -> Result<Vec<u8>, ChunkError> {
        self.fill_to(offset, offset + len)?;
        let from = (offset - self.pos) as usize;
        let out = self.buf[from..from + len as usize].to_vec();
        self.buf.drain(..from + len as usize);
        self.pos = offset + len;
        Ok(out)
    }
}

/// Hands out chunks in the order of a [`Plan`], reading ahead.
pub struct Feed {
    rt: Handle,
    store: Store,
    spans: Vec<Span>,
    /// The next span not yet current.
    next: usize,
    running: VecDeque<Running>,
    cur: Option<Current>,
    /// The last chunk handed out, kept when the plan has repeats.
    repeats: bool,
    last: Option<(ChunkId, Vec<u8>)>,
    /// Chunks read alone, outside the plan.
    pub alone: u64,
}

impl Feed {
    pub fn new(rt: Handle, store: Store, plan: Plan) -> Self {
        Feed {
            rt,
            store,
            spans: plan.spans,
            repeats: plan.repeats,
            next: 0,
            running: VecDeque::new(),
            cur: None,
            last: None,
            alone: 0,
        }
    }

    /// A chunk's plaintext, authenticated.
    pub fn read(
        &mut self,
        repo: &mut Repo,
        ids: &ChunkKeys,
        id: &ChunkId,
    ) -> Result<Vec<u8>, ChunkError> {
        if let Some((last, data)) = &self.last {
            if last == id {
                return Ok(data.clone());
            }
        }
        let (name, l) = repo.index.get(id).ok_or(ChunkError::Missing {
            chunk: super::short(id),
        })?;
        let name = name.to_string();
        let len = u64::from(l.stored_len);
        let plain = if self.reach(repo, l.pack, l.offset, len)? {
            let cur = self.cur.as_mut().expect("reached");
            let stored = cur.take(l.offset, len)?;
            repo.open_blob(ids, id, &name, stored)?
        } else {
            self.alone += 1;
            repo.read_chunk(ids, id)?
        };
        if self.repeats {
            self.last = Some((*id, plain.clone()));
        }
        Ok(plain)
    }

    /// Makes the span holding the chunk current; false when no span ahead
    /// holds it.
    fn reach(
        &mut self,
        repo: &mut Repo,
        pack: u32,
        offset: u64,
        len: u64,
    ) -> Result<bool, ChunkError> {
        if self
            .cur
            .as_ref()
            .is_some_and(|c| c.covers(pack, offset, len))
        {
            return Ok(true);
        }
        // Spans before it are skipped (an in-place restore kept their files).
        let Some(k) = self.spans[self.next..]
            .iter()
            .position(|s| s.pack == pack && offset >= s.start && offset + len <= s.end)
        else {
            return Ok(false);
        };
        let at = self.next + k;
        self.cur = None;
        while self.running.front().is_some_and(|r| r.at < at) {
            self.running.pop_front();
        }
        self.next = at;
        self.start_ahead(repo);
        let run = self.running.pop_front().expect("started");
        self.next = at + 1;
        self.start_ahead(repo);
        let span = self.spans[at];
        let name = repo.index.pack_names()[span.pack as usize].clone();
        let mut cur = Current {
            span,
            pack: name.clone(),
            run,
            buf: Vec::new(),
            pos: span.start,
        };
        tracing::trace!(pack = %name, start = span.start, end = span.end, "reading a span");
        if span.header {
            let size = repo.packs().get(&name).copied().unwrap_or(0);
            cur.fill_to(0, size.min(HEADER_MAX as u64).min(span.end))?;
            if !repo.opened(&name) {
                repo.open_header(&name, &cur.buf)?;
            }
        }
        self.cur = Some(cur);
        Ok(true)
    }

    /// Starts downloads of the spans from `next` on, up to the read-ahead.
    fn start_ahead(&mut self, repo: &Repo) {
        let mut at = self
            .running
            .back()
            .map_or(self.next, |r| r.at + 1)
            .max(self.next);
        while self.running.len() < SPANS_AHEAD && at < self.spans.len() {
            let s = self.spans[at];
            let name = repo.index.pack_names()[s.pack as usize].clone();
            let (tx, frames) = mpsc::channel(FRAMES_AHEAD);
            let store = self.store.clone();
            let task = self.rt.spawn(async move {
                let mut r = match store.range_reader(&name, s.start, s.end - s.start).await {
                    Ok(r) => r,
                    Err(e) => {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                };
                while let Some(frame) = r.next().await.transpose() {
                    let failed = frame.is_err();
                    if tx.send(frame).await.is_err() || failed {
                        return;
                    }
                }
            });
            self.running.push_back(Running { at, frames, task });
            at += 1;
        }
    }
}

#[cfg(test)]
#[path = "feed_tests.rs"]
mod tests;
