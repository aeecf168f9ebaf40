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
//! specified in docs/FORMAT.md.

pub(crate) mod codec;

use crate::engine::{Engine, EngineOptions, RecoveryReport, StateMachine};
use crate::io::{RealFs, Vfs};
use crate::snapshot::SnapshotInfo;
use crate::wal::now_unix_us;
use crate::{Error, Lsn, Result};
use codec::Op;
use imbl::OrdMap;
use std::io::{self, Read, Write};
use std::ops::RangeBounds;
use std::path::Path;
use std::sync::Arc;

/// What the store keeps for a key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub value: Arc<[u8]>,
    /// 1 on the key's first write, bumped on every write after.
    pub revision: u64,
    /// Who wrote it last.
    pub writer: Arc<str>,
    /// When it was written last, microseconds since the Unix epoch.
    pub timestamp_us: u64,
}

/// The store's state: every live key and its [`Entry`].
#[derive(Clone, Debug, Default)]
pub struct KvState {
    map: OrdMap<Arc<[u8]>, Entry>,
    /// The last writer id seen, shared by every entry it wrote: a store has
    /// few writers and many keys, so this saves an allocation per key.
    last_writer: Option<Arc<str>>,
}

impl KvState {
    fn put(&mut self, key: &[u8], value: &[u8], writer: &str, timestamp_us: u64) {
        let revision = self.map.get(key).map_or(1, |e| e.revision + 1);
        let writer = self.intern(writer);
        let entry = Entry { value: value.into(), revision, writer, timestamp_us };
        self.map.insert(key.into(), entry);
    }

    fn intern(&mut self, writer: &str) -> Arc<str> {
        match &self.last_writer {
            Some(last) if &**last == writer => last.clone(),
            _ => self.last_writer.insert(Arc::from(writer)).clone(),
        }
    }

    pub fn get(&self, key: &[u8]) -> Option<&Entry> {
        self.map.get(key)
    }

    /// Every key and entry, in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&Arc<[u8]>, &Entry)> {
        self.map.iter()
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

impl StateMachine for KvState {
    type Frozen = OrdMap<Arc<[u8]>, Entry>;

    fn empty() -> Self {
        KvState::default()
    }

    fn apply(&mut self, lsn: Lsn, payload: &[u8]) -> Result<()> {
        let op = codec::decode_op(payload)
            .map_err(|e| Error::InvalidArgument(format!("log record {lsn} is not a store operation: {e}")))?;
        match op {
            Op::Put { key, value, writer, timestamp_us } => self.put(key, value, writer, timestamp_us),
            Op::Delete { key, .. } => {
                self.map.remove(key);
            }
        }
        Ok(())
    }

    fn freeze(&self) -> Self::Frozen {
        self.map.clone()
    }

    fn write_snapshot(frozen: &Self::Frozen, out: &mut dyn Write) -> io::Result<u64> {
        let mut buffer = Vec::with_capacity(64 << 10);
        for (key, entry) in frozen.iter() {
            codec::encode_entry(&mut buffer, key, entry);
            if buffer.len() >= 60 << 10 {
                out.write_all(&buffer)?;
                buffer.clear();
            }
        }
        out.write_all(&buffer)?;
        Ok(frozen.len() as u64)
    }

    fn read_snapshot(input: &mut dyn Read) -> io::Result<Self> {
        let mut state = KvState::default();
        let mut reader = io::BufReader::with_capacity(256 << 10, input);
        let mut scratch = Vec::new();
        let mut last_writer: Option<Arc<str>> = None;
        let mut intern = |writer: &str| match &last_writer {
            Some(last) if &**last == writer => last.clone(),
            _ => last_writer.insert(Arc::from(writer)).clone(),
        };
        while let Some((key, entry)) = codec::read_entry(&mut reader, &mut scratch, &mut intern)? {
            state.map.insert(key, entry);
        }
        state.last_writer = last_writer;
        Ok(state)
    }
}

/// Options of a [`Store`].
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct StoreOptions {
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
    pub fn put(&mut self, key: &[u8], value: &[u8]) -> &mut Self {
        self.ops.push((key.to_vec(), Some(value.to_vec())));
        self
    }

    pub fn delete(&mut self, key: &[u8]) -> &mut Self {
        self.ops.push((key.to_vec(), None));
        self
    }

    pub fn len(&self) -> usize {
        self.ops.len()
    }

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
    pub fn open(dir: impl AsRef<Path>, options: StoreOptions) -> Result<Self> {
        Store::open_with(RealFs, dir, options)
    }
}

impl<V: Vfs> Store<V> {
    pub fn open_with(fs: V, dir: impl AsRef<Path>, options: StoreOptions) -> Result<Self> {
        let engine = Engine::open_with(fs, dir, options.engine)?;
        Ok(Store { engine, writer: options.writer })
    }

    /// Sets `key` to `value` as the store's writer; returns the LSN.
    pub fn put(&self, key: &[u8], value: &[u8]) -> Result<Lsn> {
        self.put_as(&self.writer, key, value)
    }

    /// Sets `key` to `value`, recording `writer` as its author.
    pub fn put_as(&self, writer: &str, key: &[u8], value: &[u8]) -> Result<Lsn> {
        let mut record = Vec::with_capacity(32 + key.len() + value.len() + writer.len());
        codec::encode_op(&mut record, &Op::Put { key, value, writer, timestamp_us: now_unix_us() });
        self.engine.commit(&record)
    }

    /// Removes `key` (logged even if it is absent).
    pub fn delete(&self, key: &[u8]) -> Result<Lsn> {
        let mut record = Vec::with_capacity(24 + key.len() + self.writer.len());
        codec::encode_op(&mut record, &Op::Delete { key, writer: &self.writer, timestamp_us: now_unix_us() });
        self.engine.commit(&record)
    }

    /// Applies a batch atomically; returns the LSN of its last record.
    pub fn write(&self, batch: &WriteBatch) -> Result<Lsn> {
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
        self.engine.commit_batch(&records)
    }

    pub fn get(&self, key: &[u8]) -> Option<Entry> {
        self.engine.read(|s| s.get(key).cloned())
    }

    /// Keys in `range`, in order, with their entries.
    pub fn range(&self, range: impl RangeBounds<Arc<[u8]>>) -> Vec<(Arc<[u8]>, Entry)> {
        self.engine.read(|s| s.map.range(range).map(|(k, e)| (k.clone(), e.clone())).collect())
    }

    /// Keys that start with `prefix`, in order, with their entries.
    pub fn scan_prefix(&self, prefix: &[u8]) -> Vec<(Arc<[u8]>, Entry)> {
        let start: Arc<[u8]> = prefix.into();
        self.engine.read(|s| {
            s.map
                .range(start..)
                .take_while(|(k, _)| k.starts_with(prefix))
                .map(|(k, e)| (k.clone(), e.clone()))
                .collect()
        })
    }

    pub fn len(&self) -> usize {
        self.engine.read(|s| s.len())
    }

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

    pub fn snapshot_now(&self) -> Result<SnapshotInfo> {
        self.engine.snapshot_now()
    }

    pub fn list_snapshots(&self) -> Result<Vec<SnapshotInfo>> {
        self.engine.list_snapshots()
    }

    pub fn recovery_report(&self) -> &RecoveryReport {
        self.engine.recovery_report()
    }

    pub fn applied_lsn(&self) -> Lsn {
        self.engine.applied_lsn()
    }

    pub fn close(self) -> Result<()> {
        self.engine.close()
    }
}
