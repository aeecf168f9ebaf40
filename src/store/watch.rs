//! [`Watch`] ([`Store::watch`]): the puts and deletes of the keys a
//! [`WatchKeys`] selects, from an LSN (history read from the log, then
//! live) or from now, one [`ChangeBatch`] per log batch, in LSN order, with
//! no gap and no duplicate.
//!
//! A watch is a [`crate::wal::Follower`] of the store's log (so it reads
//! the segment files, never a buffer the writers fill: a slow or idle
//! watch costs the writers nothing) that decodes each record with the
//! store's codec and keeps only the operations on selected keys.
//!
//! **Revisions are exact.** A record holds no revision: the store computes
//! one at apply (1 on a key's first write, the previous one plus one after,
//! a delete forgets it). A watch derives the same numbers from a state at
//! an LSN at or before its start (its *anchor*, an O(1) clone of the
//! store's persistent tree) plus the records it reads after that anchor,
//! in LSN order: `seen` holds the revision each selected key has after the
//! records read so far, and a key not in `seen` has the anchor's. The
//! anchor is the store's published state when the start is recent, else
//! the newest snapshot before the start (loaded from its file once). While
//! the watch keeps up, it moves its anchor to the store's newest published
//! state every [`REANCHOR_EVERY_LSNS`] LSNs (one walk over the few records
//! published after it), which empties `seen` and lets the old tree go: a
//! live watch holds at most the keys changed since its last re-anchor. A
//! watch that lags behind the store's folds keeps its anchor: it then holds
//! that older tree's nodes the store has since replaced (at most one copy
//! of the state as it was) and one revision per selected key it has read.
//!
//! **Invariant:** a watch delivers LSN `n` at most once, in order, only
//! once the log acknowledged it and every record of its batch; a record it
//! cannot read (its segment removed) is [`Error::Compacted`], never
//! skipped. What it holds between calls is bounded by one batch's changes
//! plus `seen` (see above), never by how far behind it is.

use super::codec::{self, Op};
use super::{Entry, KvState, Store};
use crate::engine::{Recent, StateMachine};
use crate::io::Vfs;
use crate::wal::{Follower, Record};
use crate::{Error, Lsn, Result};
use std::collections::HashMap;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// A watch moves its anchor forward after reading this many LSNs, if the
/// store has published a state at or before where it is.
pub const REANCHOR_EVERY_LSNS: u64 = 1024;

/// Which keys a [`Watch`] delivers changes of.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum WatchKeys {
    /// Every key.
    All,
    /// Keys that start with these bytes.
    Prefix(Vec<u8>),
    /// Keys within these bounds (as [`Store::range`] takes them).
    Range(Bound<Vec<u8>>, Bound<Vec<u8>>),
}

impl WatchKeys {
    /// Keys that start with `prefix`.
    pub fn prefix(prefix: &[u8]) -> WatchKeys {
        WatchKeys::Prefix(prefix.to_vec())
    }

    /// Keys in `range`, e.g. `WatchKeys::range(&b"a"[..]..&b"c"[..])`.
    pub fn range<'r>(range: impl RangeBounds<&'r [u8]>) -> WatchKeys {
        let own = |b: Bound<&&[u8]>| b.map(|k| k.to_vec());
        WatchKeys::Range(own(range.start_bound()), own(range.end_bound()))
    }

    /// Whether `key` is selected.
    pub fn matches(&self, key: &[u8]) -> bool {
        match self {
            WatchKeys::All => true,
            WatchKeys::Prefix(prefix) => key.starts_with(prefix),
            WatchKeys::Range(start, end) => {
                let above = match start {
                    Bound::Included(s) => key >= &s[..],
                    Bound::Excluded(s) => key > &s[..],
                    Bound::Unbounded => true,
                };
                let below = match end {
                    Bound::Included(e) => key <= &e[..],
                    Bound::Excluded(e) => key < &e[..],
                    Bound::Unbounded => true,
                };
                above && below
            }
        }
    }
}

/// Where a [`Watch`] starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WatchFrom {
    /// After every write acknowledged when the watch is made.
    Now,
    /// At this LSN: the records the log holds from it on (history), then
    /// live ones. Past the end, the watch waits for it.
    Lsn(Lsn),
}

/// What one operation did to a key.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ChangeKind {
    /// A put: the key's entry after it, with its exact revision.
    Put(Entry),
    /// A delete (delivered even if the key was absent: it is logged).
    Delete {
        /// Who deleted it.
        writer: Arc<str>,
        /// When, in microseconds since the Unix epoch.
        timestamp_us: u64,
    },
}

/// One put or delete of a selected key.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct KeyChange {
    /// The LSN of the operation's log record.
    pub lsn: Lsn,
    /// The key.
    pub key: Arc<[u8]>,
    /// What happened to it.
    pub kind: ChangeKind,
}

impl KeyChange {
    /// The key's entry after a put; `None` after a delete.
    pub fn entry(&self) -> Option<&Entry> {
        match &self.kind {
            ChangeKind::Put(entry) => Some(entry),
            ChangeKind::Delete { .. } => None,
        }
    }
}

/// The changes of selected keys that one log batch made (a single put or
/// delete is a batch of one), in LSN order. Batches with no selected key
/// are not delivered.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ChangeBatch {
    /// The LSN of the batch's last record: the state after this batch is
    /// the store's state at this LSN ([`Store::view_at`]).
    pub lsn: Lsn,
    /// The changes, in LSN order (at least one).
    pub changes: Vec<KeyChange>,
}

/// Revisions of selected keys as of the last record read: `seen`, else
/// the anchor's.
struct Revisions {
    anchor: KvState,
    anchor_lsn: Lsn,
    /// Revision after the records read since the anchor (0: absent).
    seen: HashMap<Box<[u8]>, u64>,
}

impl Revisions {
    fn before(&self, key: &[u8]) -> u64 {
        match self.seen.get(key) {
            Some(&revision) => revision,
            None => self.anchor.get(key).map_or(0, |e| e.revision),
        }
    }

    /// Notes `op`, if its key is selected; returns the key's revision after it.
    fn note(&mut self, op: &Op<'_>) -> u64 {
        let after = match op {
            Op::Put { key, .. } => self.before(key) + 1,
            Op::Delete { .. } => 0,
        };
        self.seen.insert(op.key().into(), after);
        after
    }

    /// Revisions as of `upto` from a published state and the records
    /// after it (`recent`, whose base is at or before `upto`).
    fn from_recent(base: &KvState, recent: &Recent<'_>, upto: Lsn, keys: &WatchKeys) -> Result<Revisions> {
        let mut revisions = Revisions { anchor: base.clone(), anchor_lsn: recent.after(), seen: HashMap::new() };
        for (lsn, payload) in recent.iter() {
            if lsn > upto {
                break;
            }
            let op = decode(lsn, payload)?;
            if keys.matches(op.key()) {
                revisions.note(&op);
            }
        }
        Ok(revisions)
    }
}

fn decode(lsn: Lsn, payload: &[u8]) -> Result<Op<'_>> {
    codec::decode_op(payload)
        .map_err(|e| Error::InvalidArgument(format!("log record {lsn} is not a store operation: {e}")))
}

/// A store's key changes from an LSN on: from [`Store::watch`].
///
/// Blocking: iterate it (`next()` waits for the next batch with a
/// selected key; `None` once the store is closed and everything it
/// acknowledged was read), or call [`Watch::next_timeout`] and
/// [`Watch::try_next`]. Async, on any runtime: [`Watch::next_async`] or
/// [`Watch::poll_next`]. An error ends the watch: [`Error::Compacted`]
/// (naming the oldest LSN a watch can start from now) if the records it
/// needs were removed, [`Error::Poisoned`] after everything a poisoned log
/// acknowledged, or a read error.
///
/// It borrows the store (to move its anchor forward, see the module
/// docs); it holds no records between calls beyond the batch it is
/// assembling.
pub struct Watch<'s, V: Vfs> {
    store: &'s Store<V>,
    keys: WatchKeys,
    follower: Follower<V>,
    /// Records before this LSN are read for revisions only.
    deliver_from: Lsn,
    revisions: Revisions,
    /// The selected changes of the batch being read.
    pending: Vec<KeyChange>,
    done: bool,
}

impl<V: Vfs> Store<V> {
    /// The state as of the last acknowledged write, and that write's LSN:
    /// read it, then watch from the LSN after it
    /// (`store.watch(keys, WatchFrom::Lsn(lsn.next()))`) for every change
    /// after the state, none missed and none twice.
    ///
    /// ```
    /// use walden::store::{WatchFrom, WatchKeys};
    /// use walden::{Store, StoreOptions};
    /// use std::time::Duration;
    ///
    /// # fn main() -> walden::Result<()> {
    /// # let dir = std::env::temp_dir().join(format!("walden-doc-watch-{}", std::process::id()));
    /// let store = Store::open(&dir, StoreOptions::default())?;
    /// store.put(b"/lights/kitchen", b"0.8")?;
    /// // Catch up: the state at LSN n ...
    /// let (state, n) = store.current_state()?;
    /// let mirror: Vec<_> = state.iter().map(|(k, e)| (k.to_vec(), e)).collect();
    /// // ... then every change after it, live.
    /// let mut watch = store.watch(WatchKeys::prefix(b"/lights/"), WatchFrom::Lsn(n.next()))?;
    /// store.put(b"/lights/kitchen", b"0.5")?;
    /// let batch = watch.next_timeout(Duration::from_secs(5)).expect("a change")?;
    /// let change = &batch.changes[0];
    /// assert_eq!((&change.key[..], change.entry().unwrap().revision), (&b"/lights/kitchen"[..], 2));
    /// assert_eq!(mirror.len(), 1);
    /// # drop(watch); store.close()?; std::fs::remove_dir_all(&dir).ok();
    /// # Ok(())
    /// # }
    /// ```
    pub fn current_state(&self) -> Result<(KvState, Lsn)> {
        self.engine.read_recent(|base, recent| {
            let mut state = base.clone();
            for (lsn, payload) in recent.iter() {
                state.apply(lsn, payload)?;
            }
            Ok((state, recent.upto()))
        })
    }

    /// The oldest LSN a watch can start at: 1 while the log holds its first
    /// record, else the LSN after the oldest kept snapshot the log continues.
    pub fn oldest_watchable_lsn(&self) -> Lsn {
        let first = self.engine.log_first_lsn();
        if first == Lsn::FIRST {
            return first;
        }
        let snapshots = self.engine.list_snapshots().unwrap_or_default();
        snapshots.iter().map(|s| s.header.lsn.next()).find(|&after| after >= first).unwrap_or(first)
    }
}

/// Makes a watch: see [`Store::watch`].
pub(super) fn start<V: Vfs>(store: &Store<V>, keys: WatchKeys, from: WatchFrom) -> Result<Watch<'_, V>> {
    let engine = &store.engine;
    if from == WatchFrom::Lsn(Lsn::ZERO) {
        return Err(Error::InvalidArgument(format!("LSN 0 names no write: watch from LSN {}", Lsn::FIRST)));
    }
    // The published state and the records after it, if they reach back to
    // the start: (revisions as of `start - 1` or the last acknowledged
    // record, the first LSN to read, the first to deliver).
    let recent = engine.read_recent(|base, recent| {
        let last = recent.upto();
        let (read_from, deliver_from) = match from {
            WatchFrom::Now => (last.next(), last.next()),
            WatchFrom::Lsn(n) if Lsn(n.0 - 1) < recent.after() => return Ok(None),
            WatchFrom::Lsn(n) => (n.min(last.next()), n),
        };
        let revisions = Revisions::from_recent(base, recent, Lsn(read_from.0 - 1), &keys)?;
        Ok::<_, Error>(Some((revisions, read_from, deliver_from)))
    })?;
    let (revisions, read_from, deliver_from) = match (recent, from) {
        (Some(found), _) => found,
        (None, WatchFrom::Lsn(n)) => {
            // History: the newest snapshot before `n` (or the empty state
            // at LSN 0), read from there.
            let compacted = || Error::Compacted { lsn: n, oldest: store.oldest_watchable_lsn() };
            if n < engine.log_first_lsn() {
                return Err(compacted());
            }
            let (anchor, anchor_lsn) =
                engine.view_until(|info| info.header.lsn < n, |_, _| false).map_err(|_| compacted())?;
            (Revisions { anchor, anchor_lsn, seen: HashMap::new() }, anchor_lsn.next(), n)
        }
        (None, WatchFrom::Now) => unreachable!("a watch from now starts at the published state"),
    };
    let follower = engine.follow(read_from).map_err(|e| match e {
        Error::Compacted { .. } => Error::Compacted { lsn: deliver_from, oldest: store.oldest_watchable_lsn() },
        e => e,
    })?;
    Ok(Watch { store, keys, follower, deliver_from, revisions, pending: Vec::new(), done: false })
}

impl<'s, V: Vfs> Watch<'s, V> {
    /// Holds the log's segments this watch has still to read, at most
    /// `keep_bytes` of them, against the truncations that follow snapshots
    /// ([`crate::wal::Follower::retain`]): a watcher that falls behind a
    /// snapshot reads on with no gap instead of getting
    /// [`Error::Compacted`], unless it falls more than `keep_bytes` behind.
    pub fn retain(&mut self, keep_bytes: u64) -> Result<()> {
        self.follower.retain(keep_bytes)
    }

    /// The LSN of the next record this watch reads: every selected change
    /// before it was delivered (or came before the start).
    pub fn next_lsn(&self) -> Lsn {
        self.follower.next_lsn()
    }

    /// The first LSN this watch delivers changes from.
    pub fn start_lsn(&self) -> Lsn {
        self.deliver_from
    }

    /// How many keys' revisions and pending changes the watch holds now
    /// (for tests of its memory bound).
    #[doc(hidden)]
    pub fn held_entries(&self) -> usize {
        self.revisions.seen.len() + self.pending.len()
    }

    /// The next batch if it is acknowledged already, else `None` at once.
    /// After the end: `Some(Err(Error::Closed))`.
    pub fn try_next(&mut self) -> Option<Result<ChangeBatch>> {
        self.next_with(|f| f.try_next())
    }

    /// The next batch, waiting at most `timeout` for it; `None` if none
    /// came. After the end, as [`Watch::try_next`].
    pub fn next_timeout(&mut self, timeout: Duration) -> Option<Result<ChangeBatch>> {
        let deadline = Instant::now() + timeout;
        self.next_with(|f| f.next_timeout(deadline.saturating_duration_since(Instant::now())))
    }

    /// The next batch, waited for without blocking a thread.
    pub async fn next_async(&mut self) -> Option<Result<ChangeBatch>> {
        std::future::poll_fn(|cx| self.poll_next(cx)).await
    }

    /// `Stream::poll_next`: the next batch if it is acknowledged, else
    /// `Pending` with the task's waker registered with the log.
    pub fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<ChangeBatch>>> {
        loop {
            if self.done {
                return Poll::Ready(None);
            }
            let record = match self.follower.poll_next(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(record) => record,
            };
            if let Some(out) = self.take(record) {
                return Poll::Ready(out);
            }
        }
    }

    /// Reads records with `next` until a batch with a selected key ends.
    fn next_with(
        &mut self,
        mut next: impl FnMut(&mut Follower<V>) -> Option<Result<Record>>,
    ) -> Option<Result<ChangeBatch>> {
        loop {
            if self.done {
                return Some(Err(Error::Closed));
            }
            let record = next(&mut self.follower)?;
            if let Some(out) = self.take(Some(record)) {
                return out;
            }
        }
    }

    /// Takes what the follower gave: `None` to read on, else the answer.
    fn take(&mut self, record: Option<Result<Record>>) -> Option<Option<Result<ChangeBatch>>> {
        match record {
            None => {
                // The log ended; a batch it did not finish is not delivered.
                self.finish();
                Some(None)
            }
            Some(Err(e)) => {
                self.finish();
                Some(Some(Err(self.explain(e))))
            }
            Some(Ok(record)) => match self.apply(record) {
                Ok(None) => None,
                Ok(Some(batch)) => Some(Some(Ok(batch))),
                Err(e) => {
                    self.finish();
                    Some(Some(Err(e)))
                }
            },
        }
    }

    fn explain(&self, e: Error) -> Error {
        match e {
            Error::Compacted { lsn, .. } => {
                Error::Compacted { lsn: lsn.max(self.deliver_from), oldest: self.store.oldest_watchable_lsn() }
            }
            e => e,
        }
    }

    fn finish(&mut self) {
        self.done = true;
        self.pending = Vec::new();
    }

    /// Reads one record; returns the batch it ends, if that batch holds a
    /// selected change.
    fn apply(&mut self, record: Record) -> Result<Option<ChangeBatch>> {
        let op = decode(record.lsn, &record.payload)?;
        if self.keys.matches(op.key()) {
            let revision = self.revisions.note(&op);
            if record.lsn >= self.deliver_from {
                let kind = match op {
                    Op::Put { value, writer, timestamp_us, .. } => {
                        ChangeKind::Put(Entry { value: value.into(), revision, writer: writer.into(), timestamp_us })
                    }
                    Op::Delete { writer, timestamp_us, .. } => {
                        ChangeKind::Delete { writer: writer.into(), timestamp_us }
                    }
                };
                self.pending.push(KeyChange { lsn: record.lsn, key: op.key().into(), kind });
            }
        }
        if self.follower.batch_continues() {
            return Ok(None);
        }
        if record.lsn.0 >= self.revisions.anchor_lsn.0 + REANCHOR_EVERY_LSNS {
            self.reanchor(record.lsn)?;
        }
        if self.pending.is_empty() {
            return Ok(None);
        }
        Ok(Some(ChangeBatch { lsn: record.lsn, changes: std::mem::take(&mut self.pending) }))
    }

    /// Moves the anchor to the store's published state if that is at or
    /// before `read` (the last LSN read) and newer than the anchor.
    fn reanchor(&mut self, read: Lsn) -> Result<()> {
        let keys = &self.keys;
        let anchor_lsn = self.revisions.anchor_lsn;
        let moved = self.store.engine.read_recent(|base, recent| {
            if recent.after() > read || recent.after() <= anchor_lsn || recent.upto() < read {
                return Ok(None);
            }
            Revisions::from_recent(base, recent, read, keys).map(Some)
        })?;
        if let Some(revisions) = moved {
            self.revisions = revisions;
        }
        Ok(())
    }
}

impl<V: Vfs> Iterator for Watch<'_, V> {
    type Item = Result<ChangeBatch>;

    /// Waits for the next batch with a selected change; `None` once the
    /// store has closed and everything it acknowledged was read, or after
    /// an error was returned.
    fn next(&mut self) -> Option<Result<ChangeBatch>> {
        if self.done {
            return None;
        }
        loop {
            let record = Iterator::next(&mut self.follower);
            if let Some(out) = self.take(record) {
                return out;
            }
        }
    }
}
