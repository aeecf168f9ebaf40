//! [`Store`]: the built-in key-value state machine, on the [`Engine`].
//!
//! Keys and values are bytes. Every key carries its revision (1 on its
//! first write, bumped on every write after; a delete forgets it), the id of
//! its last writer and the time of its last write, like the parameter
//! snapshots of the seed systems. The state is a persistent ordered map
//! (`imbl::OrdMap`), so freezing it for a snapshot is an O(1) clone and a
//! snapshot of millions of keys never holds up a `put`.
//!
//! Log records and snapshot entries use the encoding in `codec.rs`,
//! specified in docs/FORMAT.md. Map keys are [`StoreKey`]s (`key.rs`),
//! which compare by an inline 8-byte prefix first.

pub(crate) mod codec;
mod key;

pub use key::{KeyRef, StoreKey};

use crate::engine::{CommitTicket, Engine, EngineOptions, RecoveryReport, StateMachine};
use crate::io::{RealFs, Vfs};
use crate::snapshot::SnapshotInfo;
use crate::wal::now_unix_us;
use crate::{Error, Lsn, Result};
use codec::Op;
use imbl::OrdMap;
use std::io::{self, Read, Write};
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::{mpsc, Arc};

/// What the store keeps for a key.
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

/// The store's map: every live key and its [`Entry`], in key order.
pub type KvMap = OrdMap<StoreKey, Entry>;

/// The store's state: every live key and its [`Entry`].
#[derive(Clone, Debug, Default)]
pub struct KvState {
    map: KvMap,
    /// The last writer id seen, shared by every entry it wrote: a store has
    /// few writers and many keys, so this saves an allocation per key.
    last_writer: Option<Arc<str>>,
}

impl KvState {
    /// One descent of the tree when the key exists (the entry is updated
    /// in place, copying only the nodes the last snapshot still shares),
    /// two when it is new.
    fn put(&mut self, key: &[u8], value: &[u8], writer: &str, timestamp_us: u64) {
        let writer = self.intern(writer);
        let value: Arc<[u8]> = value.into();
        match self.map.get_mut(&KeyRef::new(key)) {
            Some(entry) => {
                entry.revision += 1;
                entry.value = value;
                entry.writer = writer;
                entry.timestamp_us = timestamp_us;
            }
            None => {
                self.map.insert(StoreKey::from(key), Entry { value, revision: 1, writer, timestamp_us });
            }
        }
    }

    fn intern(&mut self, writer: &str) -> Arc<str> {
        intern(&mut self.last_writer, writer)
    }

    fn apply_op(&mut self, op: Op<'_>) {
        match op {
            Op::Put { key, value, writer, timestamp_us } => self.put(key, value, writer, timestamp_us),
            Op::Delete { key, .. } => {
                self.map.remove(&KeyRef::new(key));
            }
        }
    }

    /// The entry of `key`, if the key is live.
    pub fn get(&self, key: &[u8]) -> Option<&Entry> {
        self.map.get(&KeyRef::new(key))
    }

    /// Every key and entry, in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&Arc<[u8]>, &Entry)> {
        self.map.iter().map(|(k, e)| (k.bytes(), e))
    }

    /// Keys in `range`, in order, with their entries.
    pub fn range<'s>(
        &'s self,
        range: impl RangeBounds<Arc<[u8]>>,
    ) -> impl Iterator<Item = (&'s Arc<[u8]>, &'s Entry)> + 's {
        let bound = |b: Bound<&Arc<[u8]>>| b.map(|k| StoreKey::new(k.clone()));
        let range = (bound(range.start_bound()), bound(range.end_bound()));
        self.map.range(range).map(|(k, e)| (k.bytes(), e))
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
    /// tree, in cache, instead of each missing all the way down. An
    /// operation without a key ends one sorted run and starts the next.
    fn apply_batch(&mut self, batch: &[(Lsn, &[u8])]) -> Result<()> {
        let ops = batch.iter().map(|&(lsn, payload)| decode(lsn, payload)).collect::<Result<Vec<_>>>()?;
        let mut order: Vec<(u64, u32)> = Vec::with_capacity(ops.len());
        let mut start = 0;
        while start < ops.len() {
            let end = ops[start..].iter().position(|op| replay_key(op).is_none()).map_or(ops.len(), |i| start + i);
            order.clear();
            order.extend(
                (start..end).map(|i| (KeyRef::new(replay_key(&ops[i]).unwrap_or_default()).prefix(), i as u32)),
            );
            let key = |i: u32| replay_key(&ops[i as usize]).unwrap_or_default();
            order.sort_unstable_by(|a, b| a.0.cmp(&b.0).then_with(|| key(a.1).cmp(key(b.1))).then(a.1.cmp(&b.1)));
            for &(_, i) in &order {
                self.apply_op(ops[i as usize]);
            }
            if let Some(&barrier) = ops.get(end) {
                self.apply_op(barrier);
            }
            start = end + 1;
        }
        Ok(())
    }

    fn freeze(&self) -> Self::Frozen {
        self.map.clone()
    }

    fn write_snapshot(frozen: &Self::Frozen, out: &mut dyn Write) -> io::Result<u64> {
        let mut buffer = Vec::with_capacity(64 << 10);
        for (key, entry) in frozen.iter() {
            codec::encode_entry(&mut buffer, key.as_slice(), entry);
            if buffer.len() >= 60 << 10 {
                out.write_all(&buffer)?;
                buffer.clear();
            }
        }
        out.write_all(&buffer)?;
        Ok(frozen.len() as u64)
    }

    /// Decoding (zstd, parsing, an allocation for each value) runs on the
    /// calling thread, and making the keys and building the tree on a
    /// second one, fed batches of entries through a bounded channel (so
    /// memory stays a few batches above the map's): on two cores, the load
    /// takes about as long as the slower half instead of the sum of both.
    fn read_snapshot(input: &mut dyn Read) -> io::Result<Self> {
        let (full_tx, full_rx) = mpsc::sync_channel::<LoadBatch>(LOAD_BATCHES_IN_FLIGHT);
        let (empty_tx, empty_rx) = mpsc::channel::<LoadBatch>();
        std::thread::scope(|scope| {
            let builder = std::thread::Builder::new().name("walden-load".into()).spawn_scoped(scope, move || {
                let mut map = KvMap::new();
                for mut batch in full_rx {
                    let mut start = 0;
                    for (end, entry) in batch.entries.drain(..) {
                        map.insert(StoreKey::from(&batch.keys[start..end]), entry);
                        start = end;
                    }
                    batch.keys.clear();
                    // The decoder may be gone already; then the batch is dropped.
                    let _ = empty_tx.send(batch);
                }
                map
            })?;
            let decoded = decode_entries(
                input,
                |batch| full_tx.send(batch).is_ok(),
                || {
                    empty_rx.try_recv().unwrap_or_else(|_| LoadBatch {
                        keys: Vec::with_capacity(LOAD_BATCH_ENTRIES * 32),
                        entries: Vec::with_capacity(LOAD_BATCH_ENTRIES),
                    })
                },
            );
            drop(full_tx);
            let map = builder.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            let last_writer = decoded?;
            Ok(KvState { map, last_writer })
        })
    }
}

/// Snapshot entries on their way from the decoder to the tree builder:
/// the keys' bytes end to end, and each entry with where its key ends.
struct LoadBatch {
    keys: Vec<u8>,
    entries: Vec<(usize, Entry)>,
}

/// Entries per batch handed from the snapshot decoder to the tree builder.
const LOAD_BATCH_ENTRIES: usize = 4096;
/// Full batches the decoder may be ahead of the builder.
const LOAD_BATCHES_IN_FLIGHT: usize = 4;

/// Decodes snapshot entries from `input` into batches from `fresh`, handing
/// each full one (and the last) to `send`, which returns false if nobody
/// takes them any more. Returns the last writer id seen.
fn decode_entries(
    input: &mut dyn Read,
    mut send: impl FnMut(LoadBatch) -> bool,
    mut fresh: impl FnMut() -> LoadBatch,
) -> io::Result<Option<Arc<str>>> {
    let mut reader = io::BufReader::with_capacity(1 << 20, input);
    let mut scratch = Vec::new();
    let mut last_writer: Option<Arc<str>> = None;
    loop {
        let mut batch = fresh();
        let mut done = false;
        while batch.entries.len() < LOAD_BATCH_ENTRIES {
            let keys = &mut batch.keys;
            let entry = codec::read_entry(
                &mut reader,
                &mut scratch,
                &mut |w| codec::intern_writer(&mut last_writer, w),
                |key| {
                    keys.extend_from_slice(key);
                    keys.len()
                },
            )?;
            match entry {
                Some(entry) => batch.entries.push(entry),
                None => {
                    done = true;
                    break;
                }
            }
        }
        if !batch.entries.is_empty() && !send(batch) {
            return Err(io::Error::other("the snapshot's tree builder stopped"));
        }
        if done {
            return Ok(last_writer);
        }
    }
}

/// `writer` as an `Arc`, the same one as `last` if it is the same writer:
/// a store has few writers and many keys.
fn intern(last: &mut Option<Arc<str>>, writer: &str) -> Arc<str> {
    match last {
        Some(last) if &**last == writer => last.clone(),
        _ => last.insert(Arc::from(writer)).clone(),
    }
}

fn decode(lsn: Lsn, payload: &[u8]) -> Result<Op<'_>> {
    codec::decode_op(payload)
        .map_err(|e| Error::InvalidArgument(format!("log record {lsn} is not a store operation: {e}")))
}

/// The key an operation writes, by which replay may reorder it among
/// others with a key; `None` for one that must stay where it is.
fn replay_key<'a>(op: &Op<'a>) -> Option<&'a [u8]> {
    match *op {
        Op::Put { key, .. } | Op::Delete { key, .. } => Some(key),
    }
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
#[derive(Clone, Debug, Default)]
pub struct WriteBatch {
    /// (key, Some(value)) for a put, (key, None) for a delete.
    ops: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

impl WriteBatch {
    /// Adds a put of `key` to `value`.
    pub fn put(&mut self, key: &[u8], value: &[u8]) -> &mut Self {
        self.ops.push((key.to_vec(), Some(value.to_vec())));
        self
    }

    /// Adds a delete of `key`.
    pub fn delete(&mut self, key: &[u8]) -> &mut Self {
        self.ops.push((key.to_vec(), None));
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
        self.put_as_pipelined(writer, key, value)?.wait()
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
        let mut record = Vec::with_capacity(32 + key.len() + value.len() + writer.len());
        codec::encode_op(&mut record, &Op::Put { key, value, writer, timestamp_us: now_unix_us() });
        self.engine.commit_pipelined(&record)
    }

    /// Removes `key` (logged even if it is absent).
    pub fn delete(&self, key: &[u8]) -> Result<Lsn> {
        self.delete_pipelined(key)?.wait()
    }

    /// [`Store::delete`] without waiting, as [`Store::put_pipelined`].
    pub fn delete_pipelined(&self, key: &[u8]) -> Result<CommitTicket<KvState, V>> {
        let mut record = Vec::with_capacity(24 + key.len() + self.writer.len());
        codec::encode_op(&mut record, &Op::Delete { key, writer: &self.writer, timestamp_us: now_unix_us() });
        self.engine.commit_pipelined(&record)
    }

    /// Applies a batch atomically; returns the LSN of its last record.
    pub fn write(&self, batch: &WriteBatch) -> Result<Lsn> {
        self.write_pipelined(batch)?.wait()
    }

    /// [`Store::write`] without waiting, as [`Store::put_pipelined`].
    pub fn write_pipelined(&self, batch: &WriteBatch) -> Result<CommitTicket<KvState, V>> {
        if batch.is_empty() {
            return Err(Error::InvalidArgument("an empty batch".into()));
        }
        let timestamp_us = now_unix_us();
        let writer = self.writer.as_str();
        let records: Vec<Vec<u8>> = batch
            .ops
            .iter()
            .map(|(key, value)| {
                let op = match value {
                    Some(value) => Op::Put { key, value, writer, timestamp_us },
                    None => Op::Delete { key, writer, timestamp_us },
                };
                let mut record = Vec::new();
                codec::encode_op(&mut record, &op);
                record
            })
            .collect();
        self.engine.commit_batch_pipelined(&records)
    }

    /// The entry of `key` now (a clone: values are shared, not copied).
    pub fn get(&self, key: &[u8]) -> Option<Entry> {
        self.engine.read(|s| s.get(key).cloned())
    }

    /// Keys in `range`, in order, with their entries.
    pub fn range(&self, range: impl RangeBounds<Arc<[u8]>>) -> Vec<(Arc<[u8]>, Entry)> {
        self.engine.read(|s| s.range(range).map(|(k, e)| (k.clone(), e.clone())).collect())
    }

    /// Keys that start with `prefix`, in order, with their entries.
    pub fn scan_prefix(&self, prefix: &[u8]) -> Vec<(Arc<[u8]>, Entry)> {
        let start = KeyRef::new(prefix);
        self.engine.read(|s| {
            s.map
                .range(start..)
                .map(|(k, e)| (k.bytes(), e))
                .take_while(|(k, _)| k.starts_with(prefix))
                .map(|(k, e)| (k.clone(), e.clone()))
                .collect()
        })
    }

    /// How many keys are live.
    pub fn len(&self) -> usize {
        self.engine.read(|s| s.len())
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

    /// Takes a snapshot now; returns it once it is durable. See
    /// [`Engine::snapshot_now`].
    pub fn snapshot_now(&self) -> Result<SnapshotInfo> {
        self.engine.snapshot_now()
    }

    /// The store's snapshots on disk, oldest first.
    pub fn list_snapshots(&self) -> Result<Vec<SnapshotInfo>> {
        self.engine.list_snapshots()
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
        state.map.remove(&KeyRef::new(&8u32.to_be_bytes()));
        let now = state.get(&7u32.to_be_bytes()).unwrap();
        assert_eq!((&*now.value, now.revision, &*now.writer), (&b"new"[..], 2, "x"));
        let then = frozen.get(&KeyRef::new(&7u32.to_be_bytes())).unwrap();
        assert_eq!((&*then.value, then.revision, &*then.writer), (&b"v"[..], 1, "w"));
        assert!(frozen.get(&KeyRef::new(&8u32.to_be_bytes())).is_some());
        assert_eq!((frozen.len(), state.len()), (1000, 999));
    }

    #[test]
    fn a_cut_or_garbled_snapshot_stream_is_an_error_in_any_batch() {
        let state = sample(10_000);
        let mut bytes = Vec::new();
        KvState::write_snapshot(&state.freeze(), &mut bytes).unwrap();
        let loaded = KvState::read_snapshot(&mut &bytes[..]).unwrap();
        assert!(loaded.iter().eq(state.iter()));
        assert_eq!(loaded.len(), 10_000);
        for cut in [1, 100, bytes.len() / 2 + 7, bytes.len() - 1] {
            assert!(KvState::read_snapshot(&mut &bytes[..cut]).is_err(), "cut at {cut}");
        }
        // Every entry here is 32 bytes; entry 9000 is in the third batch.
        assert_eq!(bytes.len(), 32 * 10_000);
        bytes[32 * 9000..32 * 9000 + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        let e = KvState::read_snapshot(&mut &bytes[..]).expect_err("a huge key length is refused");
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
    }
}
