//! [`Store`]: the built-in key-value state machine, on the [`Engine`].
//!
//! Keys and values are bytes. Every key carries its revision (1 on its
//! first write, bumped on every write after; a delete forgets it), the id of
//! its last writer and the time of its last write, like the parameter
//! snapshots of the seed systems. The state is a persistent B+tree
//! ([`KvMap`], `tree.rs`) whose leaves hold their keys' records in byte
//! arenas (`record.rs`), with no allocation per key, so freezing it for a
//! snapshot is an O(1) clone and a snapshot of millions of keys never
//! holds up a `put`.
//!
//! Log records and snapshot content use the encodings in `codec.rs`,
//! specified in docs/FORMAT.md; `load.rs` writes and loads snapshots.
//! [`StoreKey`]s (`key.rs`), which compare by an inline 8-byte prefix
//! first, are the tree's separators.

pub(crate) mod codec;
mod key;
mod load;
mod record;
mod tree;
mod watch;

pub use key::{KeyRef, StoreKey};
pub use tree::KvMap;
pub use watch::{ChangeBatch, ChangeKind, KeyChange, Watch, WatchFrom, WatchKeys, REANCHOR_EVERY_LSNS};

use crate::engine::{CommitTicket, Engine, EngineOptions, Recent, RecoveryReport, StateMachine};
use crate::io::{RealFs, Vfs};
use crate::snapshot::SnapshotInfo;
use crate::wal::now_unix_us;
use crate::{Error, Lsn, Result};
use codec::Op;
use std::io::{self, Read, Write};
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::Arc;
use tree::Change;

/// What the store keeps for a key, as [`Store::get`] hands it out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The value of the last put.
    pub value: Arc<[u8]>,
    /// 1 on the key's first write, bumped on every write after.
    pub revision: u64,
    /// Who wrote it last.
    pub writer: Arc<str>,
    /// When it was written last, microseconds since the Unix epoch.
    pub timestamp_us: u64,
}

/// The store's state: every live key and its [`Entry`]. Cloning it is
/// O(1): the map's root is shared.
#[derive(Clone, Debug, Default)]
pub struct KvState {
    map: KvMap,
}

/// What the recent operations (acknowledged, not yet folded into the
/// state) make of one key: `None` if they do not touch it, else its entry
/// now (`None` if deleted). Walks them oldest first, decoding only those
/// of `key`.
fn recent_entry(base: &KvState, recent: &Recent<'_>, key: &[u8]) -> Option<Option<Entry>> {
    let mut now: Option<Option<(Op<'_>, u64)>> = None;
    for (lsn, payload) in recent.iter() {
        if codec::op_key(payload) != key {
            continue;
        }
        let op = match decode(lsn, payload) {
            Ok(op) => op,
            Err(e) => {
                debug_assert!(false, "an acknowledged record passed check: {e}");
                continue;
            }
        };
        now = Some(match op {
            Op::Put { .. } => {
                let before = match &now {
                    Some(entry) => entry.as_ref().map_or(0, |&(_, revision)| revision),
                    None => base.map.get(KeyRef::new(key)).map_or(0, |r| r.revision()),
                };
                Some((op, before + 1))
            }
            Op::Delete { .. } => None,
        });
    }
    now.map(|entry| entry.map(|(op, revision)| entry_of(op, revision)))
}

/// The entry a put makes, with its revision.
fn entry_of(op: Op<'_>, revision: u64) -> Entry {
    match op {
        Op::Put { value, writer, timestamp_us, .. } => {
            Entry { value: value.into(), revision, writer: writer.into(), timestamp_us }
        }
        Op::Delete { .. } => unreachable!("a delete leaves no entry"),
    }
}

/// Every key the recent operations touch, in key order, with its entry
/// after them (`None`: deleted).
fn recent_entries<'r>(base: &KvState, recent: &Recent<'r>) -> std::collections::BTreeMap<&'r [u8], Option<Entry>> {
    let mut entries: std::collections::BTreeMap<&[u8], Option<Entry>> = std::collections::BTreeMap::new();
    for (lsn, payload) in recent.iter() {
        match decode(lsn, payload) {
            Ok(op @ Op::Put { key, .. }) => {
                let before = match entries.get(key) {
                    Some(entry) => entry.as_ref().map_or(0, |e| e.revision),
                    None => base.map.get(KeyRef::new(key)).map_or(0, |r| r.revision()),
                };
                entries.insert(key, Some(entry_of(op, before + 1)));
            }
            Ok(Op::Delete { key, .. }) => {
                entries.insert(key, None);
            }
            Err(e) => debug_assert!(false, "an acknowledged record passed check: {e}"),
        }
    }
    entries
}

/// Merges the state's entries in key order (`base`) with what the recent
/// operations make of the keys they touch (`recent`, in key order too):
/// a key in both takes the recent entry, or is gone if it was deleted.
fn merge_recent<'a>(
    base: impl Iterator<Item = (&'a [u8], Entry)>,
    recent: impl Iterator<Item = (&'a [u8], Option<Entry>)>,
) -> Vec<(Arc<[u8]>, Entry)> {
    let mut out = Vec::new();
    let mut recent = recent.peekable();
    for (key, entry) in base {
        while let Some((changed, now)) = recent.next_if(|&(k, _)| k < key) {
            out.extend(now.map(|e| (Arc::from(changed), e)));
        }
        match recent.next_if(|&(k, _)| k == key) {
            Some((_, now)) => out.extend(now.map(|e| (Arc::from(key), e))),
            None => out.push((Arc::from(key), entry)),
        }
    }
    out.extend(recent.filter_map(|(key, now)| now.map(|e| (Arc::from(key), e))));
    out
}

/// Whether `key` is within `range`.
fn in_range(range: &impl RangeBounds<Arc<[u8]>>, key: &[u8]) -> bool {
    let above_start = match range.start_bound() {
        Bound::Included(start) => key >= &start[..],
        Bound::Excluded(start) => key > &start[..],
        Bound::Unbounded => true,
    };
    let below_end = match range.end_bound() {
        Bound::Included(end) => key <= &end[..],
        Bound::Excluded(end) => key < &end[..],
        Bound::Unbounded => true,
    };
    above_start && below_end
}

impl KvState {
    /// One descent of the tree, new key or not: the record is replaced or
    /// inserted where the search ended, copying only the nodes the last
    /// snapshot still shares.
    fn put(&mut self, key: &[u8], value: &[u8], writer: &str, timestamp_us: u64) {
        self.map.upsert(KeyRef::new(key), value, writer, timestamp_us);
    }

    fn apply_op(&mut self, op: Op<'_>) {
        match op {
            Op::Put { key, value, writer, timestamp_us } => self.put(key, value, writer, timestamp_us),
            Op::Delete { key, .. } => {
                self.map.remove(KeyRef::new(key));
            }
        }
    }

    /// The entry of `key`, if the key is live, copied out of the state.
    pub fn get(&self, key: &[u8]) -> Option<Entry> {
        self.map.get(KeyRef::new(key)).map(|r| r.to_entry())
    }

    /// Every key and entry, in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], Entry)> {
        self.map.iter().map(|r| (r.key(), r.to_entry()))
    }

    /// Keys in `range`, in order, with their entries.
    pub fn range<'s>(&'s self, range: impl RangeBounds<Arc<[u8]>>) -> impl Iterator<Item = (&'s [u8], Entry)> + 's {
        let end = range.end_bound().map(|k| k.clone());
        let start = match range.start_bound() {
            Bound::Included(k) => Bound::Included(KeyRef::new(k)),
            Bound::Excluded(k) => Bound::Excluded(KeyRef::new(k)),
            Bound::Unbounded => Bound::Unbounded,
        };
        self.map
            .range_from(start)
            .take_while(move |r| match &end {
                Bound::Included(end) => r.key() <= &end[..],
                Bound::Excluded(end) => r.key() < &end[..],
                Bound::Unbounded => true,
            })
            .map(|r| (r.key(), r.to_entry()))
    }

    /// Keys that start with `prefix`, in order, with their entries.
    fn scan_prefix<'s>(&'s self, prefix: &'s [u8]) -> impl Iterator<Item = (&'s [u8], Entry)> + 's {
        self.map
            .range_from(Bound::Included(KeyRef::new(prefix)))
            .take_while(move |r| r.key().starts_with(prefix))
            .map(|r| (r.key(), r.to_entry()))
    }

    /// How many keys are live.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether no key is live.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

impl StateMachine for KvState {
    type Frozen = KvMap;

    /// `get`, `range`, `scan_prefix` and `len` read the operations
    /// published after the state themselves; applying a checked operation
    /// cannot fail.
    const READS_RECENT: bool = true;

    fn empty() -> Self {
        KvState::default()
    }

    /// A record is a store operation if it decodes; applying one cannot
    /// fail (a put of an absent key creates it, a delete of one is a no-op,
    /// revisions are computed here, at apply).
    fn check(payload: &[u8]) -> Result<()> {
        codec::decode_op(payload).map(drop).map_err(|e| Error::InvalidArgument(format!("not a store operation: {e}")))
    }

    fn apply(&mut self, lsn: Lsn, payload: &[u8]) -> Result<()> {
        self.apply_op(decode(lsn, payload)?);
        Ok(())
    }

    /// Puts and deletes in a batch are applied in key order (a stable sort,
    /// so each key still sees its own writes in LSN order, and the result,
    /// revisions included, is that of applying them in LSN order): in a
    /// large map, consecutive keys then share most of their path down the
    /// tree, in cache, instead of each missing all the way down.
    /// Each operation is decoded once, and the changes themselves are
    /// sorted (the fold thread's batches come here, a few hundred records
    /// each; replay plans its batches on another thread instead).
    fn apply_batch(&mut self, batch: &[(Lsn, &[u8])]) -> Result<()> {
        let mut changes = Vec::with_capacity(batch.len());
        for &(lsn, payload) in batch {
            changes.push(change_of(decode(lsn, payload)?));
        }
        changes.sort_by(|a, b| a.key.cmp_to(b.key));
        changes.chunks(MERGE_CHANGES).for_each(|part| self.map.apply_sorted(part));
        Ok(())
    }

    /// Decodes every operation (an error names the first that is not one)
    /// and orders them by key (its 8-byte prefix, then its bytes), and by
    /// LSN for one key. Replay then copies the batch into this order, so
    /// the thread that applies it reads it front to back.
    fn plan_batch(batch: &[(Lsn, &[u8])], order: &mut Vec<u32>) -> Result<()> {
        let mut keys: Vec<(u64, u32, u32, u32)> = Vec::with_capacity(batch.len());
        for (i, &(lsn, payload)) in batch.iter().enumerate() {
            let key = decode(lsn, payload)?.key();
            let start = key.as_ptr() as usize - payload.as_ptr() as usize;
            keys.push((KeyRef::new(key).prefix(), i as u32, start as u32, key.len() as u32));
        }
        let key = |&(_, i, start, len): &(u64, u32, u32, u32)| &batch[i as usize].1[start as usize..][..len as usize];
        keys.sort_unstable_by(|a, b| a.0.cmp(&b.0).then_with(|| key(a).cmp(key(b))).then(a.1.cmp(&b.1)));
        order.extend(keys.iter().map(|&(_, i, ..)| i));
        Ok(())
    }

    /// Applies the operations in the order given (`plan_batch`'s, by key):
    /// a few thousand at a time, merged into the tree together
    /// (`KvMap::apply_sorted`), each leaf they touch rewritten once.
    fn apply_planned_batch(&mut self, records: &[(Lsn, &[u8])]) -> Result<()> {
        let mut changes = Vec::with_capacity(MERGE_CHANGES.min(records.len()));
        for part in records.chunks(MERGE_CHANGES) {
            changes.clear();
            for &(lsn, payload) in part {
                changes.push(change_of(decode(lsn, payload)?));
            }
            assert!(
                changes.is_sorted_by(|a, b| a.key.cmp_to(b.key).is_le()),
                "replay hands a planned batch in key order"
            );
            self.map.apply_sorted(&changes);
        }
        Ok(())
    }

    fn freeze(&self) -> Self::Frozen {
        self.map.clone()
    }

    fn write_snapshot(frozen: &Self::Frozen, out: &mut dyn Write) -> io::Result<u64> {
        load::write_snapshot(frozen, out)
    }

    /// See `load.rs`: read and decompressed on the calling thread, the
    /// records made and the tree built in bulk on a second one.
    fn read_snapshot(input: &mut dyn Read) -> io::Result<Self> {
        Ok(KvState { map: load::read_snapshot(input)? })
    }

    /// `load.rs` checks every length against what arrived before it
    /// allocates, every entry, and the order of the keys.
    const READS_ANY_BYTES: bool = true;
}

/// Changes merged into the tree at a time in replay: enough that most
/// leaves they touch take several, few enough to stay in cache.
const MERGE_CHANGES: usize = 4096;

/// The change an operation makes to the tree.
fn change_of(op: Op<'_>) -> Change<'_> {
    match op {
        Op::Put { key, value, writer, timestamp_us } => {
            Change { key: KeyRef::new(key), put: Some((value, writer, timestamp_us)) }
        }
        Op::Delete { key, .. } => Change { key: KeyRef::new(key), put: None },
    }
}

fn decode(lsn: Lsn, payload: &[u8]) -> Result<Op<'_>> {
    codec::decode_op(payload)
        .map_err(|e| Error::InvalidArgument(format!("log record {lsn} is not a store operation: {e}")))
}

/// Options of a [`Store`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default))]
pub struct StoreOptions {
    /// The engine underneath: the log's options and the snapshot policy.
    pub engine: EngineOptions,
    /// The writer id recorded by `put` and `delete`. Default "walden".
    pub writer: String,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions { engine: EngineOptions::default(), writer: "walden".into() }
    }
}

/// Writes applied together: one log batch, all or nothing after a crash.
///
/// Its keys and values are kept back to back in one buffer, so adding an
/// operation allocates nothing once the buffer has grown; [`WriteBatch::clear`]
/// keeps the buffer for the next batch.
#[derive(Clone, Debug, Default)]
pub struct WriteBatch {
    /// Every operation's key, then its value for a put, back to back.
    bytes: Vec<u8>,
    /// Per operation: where its key ends in `bytes`, and where its value
    /// ends for a put (`None` for a delete). It starts where the one
    /// before it ends.
    ops: Vec<(usize, Option<usize>)>,
}

impl WriteBatch {
    /// Adds a put of `key` to `value`.
    pub fn put(&mut self, key: &[u8], value: &[u8]) -> &mut Self {
        self.bytes.extend_from_slice(key);
        let key_end = self.bytes.len();
        self.bytes.extend_from_slice(value);
        self.ops.push((key_end, Some(self.bytes.len())));
        self
    }

    /// Adds a delete of `key`.
    pub fn delete(&mut self, key: &[u8]) -> &mut Self {
        self.bytes.extend_from_slice(key);
        self.ops.push((self.bytes.len(), None));
        self
    }

    /// How many operations the batch holds.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// Whether the batch holds no operation (writing it is refused).
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Removes every operation, keeping the room they took for the next.
    pub fn clear(&mut self) {
        self.bytes.clear();
        self.ops.clear();
    }

    /// Each operation's key, and its value for a put, in the order added.
    fn iter(&self) -> impl Iterator<Item = (&[u8], Option<&[u8]>)> + '_ {
        let mut start = 0;
        self.ops.iter().map(move |&(key_end, value_end)| {
            let key = &self.bytes[start..key_end];
            start = value_end.unwrap_or(key_end);
            (key, value_end.map(|end| &self.bytes[key_end..end]))
        })
    }
}

/// A batch's log records, encoded back to back.
struct EncodedBatch {
    bytes: Vec<u8>,
    /// Where each record ends in `bytes`.
    ends: Vec<usize>,
}

impl EncodedBatch {
    fn records(&self) -> Vec<&[u8]> {
        let starts = std::iter::once(0).chain(self.ends.iter().copied());
        starts.zip(&self.ends).map(|(start, &end)| &self.bytes[start..end]).collect()
    }
}

/// An embedded key-value store with revisions, on walden's log.
pub struct Store<V: Vfs = RealFs> {
    engine: Engine<KvState, V>,
    writer: String,
}

impl Store<RealFs> {
    /// Opens (or creates) the store in `dir` (the log in `dir/wal`, the
    /// snapshots in `dir/snapshots`) and recovers it: the newest good
    /// snapshot plus the log after it.
    pub fn open(dir: impl AsRef<Path>, options: StoreOptions) -> Result<Self> {
        Store::open_with(RealFs, dir, options)
    }
}

impl<V: Vfs> Store<V> {
    /// [`Store::open`] on the file system `fs` (`SimFs` in crash tests).
    pub fn open_with(fs: V, dir: impl AsRef<Path>, options: StoreOptions) -> Result<Self> {
        let engine = Engine::open_with(fs, dir, options.engine)?;
        Ok(Store { engine, writer: options.writer })
    }

    /// Sets `key` to `value` as the store's writer; returns the LSN once
    /// the write is acknowledged in the fsync mode's terms and visible.
    pub fn put(&self, key: &[u8], value: &[u8]) -> Result<Lsn> {
        self.put_as(&self.writer, key, value)
    }

    /// Sets `key` to `value`, recording `writer` as its author.
    pub fn put_as(&self, writer: &str, key: &[u8], value: &[u8]) -> Result<Lsn> {
        self.commit_op(&Op::Put { key, value, writer, timestamp_us: now_unix_us() })
    }

    /// [`Store::put`] without waiting: returns once the write has its LSN.
    /// Readers see it once the ticket's [`wait`](CommitTicket::wait) (or
    /// `.await`) returns, or once a later write or read finds it
    /// acknowledged; never before the log acknowledges it.
    pub fn put_pipelined(&self, key: &[u8], value: &[u8]) -> Result<CommitTicket<KvState, V>> {
        self.put_as_pipelined(&self.writer, key, value)
    }

    /// [`Store::put_as`] without waiting, as [`Store::put_pipelined`].
    pub fn put_as_pipelined(&self, writer: &str, key: &[u8], value: &[u8]) -> Result<CommitTicket<KvState, V>> {
        self.commit_op_pipelined(&Op::Put { key, value, writer, timestamp_us: now_unix_us() })
    }

    /// Removes `key` (logged even if it is absent).
    pub fn delete(&self, key: &[u8]) -> Result<Lsn> {
        self.commit_op(&Op::Delete { key, writer: &self.writer, timestamp_us: now_unix_us() })
    }

    /// [`Store::delete`] without waiting, as [`Store::put_pipelined`].
    pub fn delete_pipelined(&self, key: &[u8]) -> Result<CommitTicket<KvState, V>> {
        self.commit_op_pipelined(&Op::Delete { key, writer: &self.writer, timestamp_us: now_unix_us() })
    }

    /// Applies a batch atomically; returns the LSN of its last record once
    /// it is acknowledged and visible. Takes the blocking commit path, as
    /// [`Store::put`] does (in `Periodic` and `Never` the writer writes its
    /// own batch).
    pub fn write(&self, batch: &WriteBatch) -> Result<Lsn> {
        self.engine.commit_batch(&self.encode_batch(batch)?.records())
    }

    /// [`Store::write`] without waiting, as [`Store::put_pipelined`].
    pub fn write_pipelined(&self, batch: &WriteBatch) -> Result<CommitTicket<KvState, V>> {
        self.engine.commit_batch_pipelined(&self.encode_batch(batch)?.records())
    }

    /// Commits `op`, encoded straight into the node the log will link and
    /// checked ([`Engine::prepare_with`]): no buffer of its own, no copy.
    fn commit_op(&self, op: &Op<'_>) -> Result<Lsn> {
        self.engine.begin_prepared(self.prepare(op)?)?.finish()
    }

    /// [`Store::commit_op`], pipelined.
    fn commit_op_pipelined(&self, op: &Op<'_>) -> Result<CommitTicket<KvState, V>> {
        Ok(self.engine.begin_prepared_pipelined(self.prepare(op)?)?.into_ticket())
    }

    fn prepare(&self, op: &Op<'_>) -> Result<crate::engine::Prepared<KvState>> {
        self.engine.prepare_with(codec::op_len(op), |out| codec::encode_op_into(out, op))
    }

    /// The log records of a batch's operations, all with one timestamp,
    /// encoded one after another into one buffer.
    fn encode_batch(&self, batch: &WriteBatch) -> Result<EncodedBatch> {
        if batch.is_empty() {
            return Err(Error::InvalidArgument("an empty batch".into()));
        }
        let timestamp_us = now_unix_us();
        let writer = self.writer.as_str();
        let bytes = batch.bytes.len() + batch.len() * (codec::OP_FIXED_BYTES + writer.len());
        let mut out = EncodedBatch { bytes: Vec::with_capacity(bytes), ends: Vec::with_capacity(batch.len()) };
        for (key, value) in batch.iter() {
            let op = match value {
                Some(value) => Op::Put { key, value, writer, timestamp_us },
                None => Op::Delete { key, writer, timestamp_us },
            };
            codec::encode_op(&mut out.bytes, &op);
            out.ends.push(out.bytes.len());
        }
        Ok(out)
    }

    /// The entry of `key` now (a clone: values are shared, not copied).
    /// Takes no lock: the published state and the operations published
    /// after it are read as they are.
    pub fn get(&self, key: &[u8]) -> Option<Entry> {
        self.engine.read_recent(|s, recent| recent_entry(s, recent, key).unwrap_or_else(|| s.get(key)))
    }

    /// Keys in `range`, in order, with their entries.
    pub fn range(&self, range: impl RangeBounds<Arc<[u8]>>) -> Vec<(Arc<[u8]>, Entry)> {
        self.engine.read_recent(|s, recent| {
            let changed = recent_entries(s, recent);
            let changed = changed.into_iter().filter(|(k, _)| in_range(&range, k));
            merge_recent(s.range((range.start_bound().cloned(), range.end_bound().cloned())), changed)
        })
    }

    /// Keys that start with `prefix`, in order, with their entries.
    pub fn scan_prefix(&self, prefix: &[u8]) -> Vec<(Arc<[u8]>, Entry)> {
        self.engine.read_recent(|s, recent| {
            let changed = recent_entries(s, recent);
            let changed = changed.into_iter().filter(|(k, _)| k.starts_with(prefix));
            merge_recent(s.scan_prefix(prefix), changed)
        })
    }

    /// How many keys are live.
    pub fn len(&self) -> usize {
        self.engine.read_recent(|s, recent| {
            let live_before = |key| s.map.get(KeyRef::new(key)).is_some() as usize;
            let changed = recent_entries(s, recent);
            let added = changed.iter().filter(|(k, now)| now.is_some() && live_before(k) == 0).count();
            let removed = changed.iter().filter(|(k, now)| now.is_none() && live_before(k) == 1).count();
            s.len() + added - removed
        })
    }

    /// Whether no key is live.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A read-only view of the store as of `lsn`.
    pub fn view_at(&self, lsn: Lsn) -> Result<KvState> {
        self.engine.view_at(lsn)
    }

    /// A read-only view of the store as of wall-clock time `timestamp_us`:
    /// every write made at or before it, none after (replay stops at the
    /// first later write).
    pub fn view_at_time(&self, timestamp_us: u64) -> Result<(KvState, Lsn)> {
        self.engine.view_until(
            |info| info.header.created_unix_us <= timestamp_us,
            |_, payload| codec::decode_op(payload).is_ok_and(|op| op.timestamp_us() <= timestamp_us),
        )
    }

    /// The puts and deletes of the keys `keys` selects, from `from` on:
    /// history from the log, then live, one [`ChangeBatch`] per log batch,
    /// in LSN order, no gap and no duplicate, with exact revisions. See
    /// [`Watch`] and [`Store::current_state`] for "read, then watch".
    pub fn watch(&self, keys: WatchKeys, from: WatchFrom) -> Result<Watch<'_, V>> {
        watch::start(self, keys, from)
    }

    /// Takes a snapshot now; returns it once it is durable. See
    /// [`Engine::snapshot_now`].
    pub fn snapshot_now(&self) -> Result<SnapshotInfo> {
        self.engine.snapshot_now()
    }

    /// The store's snapshots on disk, oldest first.
    pub fn list_snapshots(&self) -> Result<Vec<SnapshotInfo>> {
        self.engine.list_snapshots()
    }

    /// The engine underneath (for backups, which copy its files).
    pub(crate) fn engine(&self) -> &Engine<KvState, V> {
        &self.engine
    }

    /// What opening the store found and did.
    pub fn recovery_report(&self) -> &RecoveryReport {
        self.engine.recovery_report()
    }

    /// The LSN of the last write applied to the state.
    pub fn applied_lsn(&self) -> Lsn {
        self.engine.applied_lsn()
    }

    /// Syncs the log (taking a final snapshot first if
    /// [`SnapshotOptions::on_close`](crate::SnapshotOptions::on_close) is
    /// set) and closes the store.
    pub fn close(self) -> Result<()> {
        self.engine.close()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(n: u32) -> KvState {
        let mut state = KvState::empty();
        for i in 0..n {
            state.put(&i.to_be_bytes(), b"v", "w", u64::from(i));
        }
        state
    }

    #[test]
    fn an_update_in_place_leaves_a_frozen_copy_alone() {
        let mut state = sample(1000);
        let frozen = state.freeze();
        state.put(&7u32.to_be_bytes(), b"new", "x", 1);
        state.map.remove(KeyRef::new(&8u32.to_be_bytes()));
        let now = state.get(&7u32.to_be_bytes()).unwrap();
        assert_eq!((&*now.value, now.revision, &*now.writer), (&b"new"[..], 2, "x"));
        let then = frozen.get(KeyRef::new(&7u32.to_be_bytes())).unwrap();
        assert_eq!((then.value(), then.revision(), &**then.writer()), (&b"v"[..], 1, "w"));
        assert!(frozen.get(KeyRef::new(&8u32.to_be_bytes())).is_some());
        assert_eq!((frozen.len(), state.len()), (1000, 999));
    }

    #[test]
    fn a_cut_or_garbled_snapshot_stream_is_an_error_in_any_chunk() {
        let state = sample(10_000);
        let mut bytes = Vec::new();
        assert_eq!(KvState::write_snapshot(&state.freeze(), &mut bytes).unwrap(), 10_000);
        let loaded = KvState::read_snapshot(&mut &bytes[..]).unwrap();
        assert!(loaded.iter().eq(state.iter()));
        assert_eq!(loaded.len(), 10_000);
        for cut in [1, 4, 8, 100, bytes.len() / 2 + 7, bytes.len() - 9, bytes.len() - 8, bytes.len() - 1] {
            assert!(KvState::read_snapshot(&mut &bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(KvState::read_snapshot(&mut &longer[..]).is_err(), "a byte after the end");
        // Every entry here is 32 bytes: chunks of 2,048 (64 KiB), the last
        // of 1,808, after the 8-byte head; then the end marker.
        let chunk_bytes = 8 + 2048 * 32;
        assert_eq!(bytes.len(), 8 + 4 * chunk_bytes + 8 + 1808 * 32 + 16);
        let entry_9000 = 8 + 4 * chunk_bytes + 8 + (9000 - 4 * 2048) * 32;
        let mut garbled = bytes.clone();
        garbled[entry_9000 + 16..entry_9000 + 20].copy_from_slice(&u32::MAX.to_le_bytes());
        let e = KvState::read_snapshot(&mut &garbled[..]).expect_err("a huge key length is refused");
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        assert!(e.to_string().contains("entry 9000"), "{e}");
        // Entries 100 and 101 swapped: keys out of order.
        let mut swapped = bytes.clone();
        let at = 8 + 8 + 100 * 32;
        let (a, b) = (swapped[at..at + 32].to_vec(), swapped[at + 32..at + 64].to_vec());
        swapped[at..at + 32].copy_from_slice(&b);
        swapped[at + 32..at + 64].copy_from_slice(&a);
        let e = KvState::read_snapshot(&mut &swapped[..]).expect_err("keys out of order");
        assert!(e.to_string().contains("entry 101: its key is not above"), "{e}");
        // The end claims one entry more than the chunks hold.
        let mut miscounted = bytes.clone();
        let end = miscounted.len() - 8;
        miscounted[end..].copy_from_slice(&10_001u64.to_le_bytes());
        let e = KvState::read_snapshot(&mut &miscounted[..]).expect_err("a wrong count");
        assert!(e.to_string().contains("claiming 10001 entries"), "{e}");
        // A version this build does not know.
        let mut future = bytes.clone();
        future[4..8].copy_from_slice(&3u32.to_le_bytes());
        let e = KvState::read_snapshot(&mut &future[..]).expect_err("version 3");
        assert!(e.to_string().contains("version 3"), "{e}");
        // A chunk claiming one entry fewer than it holds.
        let mut short = bytes.clone();
        short[8..12].copy_from_slice(&2047u32.to_le_bytes());
        let e = KvState::read_snapshot(&mut &short[..]).expect_err("bytes after a chunk's entries");
        assert!(e.to_string().contains("32 bytes after them"), "{e}");
    }

    #[test]
    fn version_1_snapshots_still_load_entry_for_entry() {
        let mut state = sample(5000);
        state.put(b"", b"", "", 0);
        state.put(&[7; 300_000], &[1; 70_000], "long writer", 9);
        let mut v1 = Vec::new();
        for record in state.map.iter() {
            let (key, value, writer) = (record.key(), record.value(), record.writer());
            codec::encode_entry_v1(&mut v1, key, value, record.revision(), writer, record.timestamp_us());
        }
        let loaded = KvState::read_snapshot(&mut &v1[..]).unwrap();
        loaded.map.check();
        assert!(loaded.map.iter().eq(state.map.iter()), "the same records, byte for byte");
        assert_eq!(loaded.len(), 5002);
        assert!(KvState::read_snapshot(&mut &[][..]).unwrap().is_empty(), "an empty version-1 snapshot");
        for cut in [1, 3, 4, 5, v1.len() - 1] {
            assert!(KvState::read_snapshot(&mut &v1[..cut]).is_err(), "cut at {cut}");
        }
        let mut huge = v1.clone();
        huge[..4].copy_from_slice(&(crate::format::MAX_RECORD_BYTES + 1).to_le_bytes());
        let e = KvState::read_snapshot(&mut &huge[..]).expect_err("a huge key length is refused");
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
    }

    #[test]
    fn a_batch_applies_as_its_records_would_one_by_one() {
        let ops: Vec<Vec<u8>> = (0..3000u32)
            .map(|i| {
                let key = (i * 7919 % 500).to_be_bytes();
                let mut record = Vec::new();
                let op = if i % 5 == 3 {
                    Op::Delete { key: &key, writer: "d", timestamp_us: u64::from(i) }
                } else {
                    Op::Put { key: &key, value: &i.to_le_bytes(), writer: "p", timestamp_us: u64::from(i) }
                };
                codec::encode_op(&mut record, &op);
                record
            })
            .collect();
        let (mut one_by_one, mut batched) = (KvState::empty(), KvState::empty());
        for (i, op) in ops.iter().enumerate() {
            one_by_one.apply(Lsn(i as u64 + 1), op).unwrap();
        }
        let batch: Vec<(Lsn, &[u8])> = ops.iter().enumerate().map(|(i, op)| (Lsn(i as u64 + 1), &op[..])).collect();
        for part in batch.chunks(700) {
            batched.apply_batch(part).unwrap();
        }
        batched.map.check();
        assert!(batched.map.iter().eq(one_by_one.map.iter()), "revisions included");
    }
}
