//! [`DurableJournal`]: the journal on walden's log, and [`JournalState`],
//! the state machine the [`Engine`] replays its records into.
//!
//! One log: each journal entry is one log record (`codec.rs`), and that
//! record is also the state change. [`JournalState`] holds the parameter
//! state (address -> value, revision, writer, timestamp), the journal's
//! counters (latest sequence, last timestamp, compaction floor) and a
//! sparse time index: one (sequence, timestamp, LSN) point every
//! [`INDEX_EVERY_ENTRIES`] entries. All of it is in the snapshot, so
//! recovery is the newest snapshot plus the records after it.
//!
//! Queries read the log itself through a [`crate::WalReader`], starting at
//! the index point just before the answer (timestamps never go backwards,
//! so the index is sorted by time as well as by sequence), filtering while
//! they read and stopping at the end of the time range or the page.
//!
//! Snapshots do not delete history: [`StateMachine::retain_log_from`] tells
//! the engine to keep the log from the first entry still held.
//!
//! Compaction logs a *floor* record: entries below it are gone for every
//! query from then on, including after recovery from any snapshot. Then it
//! takes a snapshot, after which the engine deletes the log segments that
//! no kept snapshot and no held entry needs. Older kept snapshots (the
//! fallbacks recovery uses if the newest is damaged) still need the
//! segments after them, so with `keep_count` k the compacted entries leave
//! the disk k - 1 snapshots later, never earlier than recovery allows.
//! Until then they are hidden, not readable.
//!
//! **Invariant:** sequence numbers in the log are consecutive; `apply`
//! refuses a record that breaks this rather than guess.
//! **Invariant:** an entry below the compaction floor is never returned.

use super::codec::{self, JournalRecordView};
use super::entry::{JournalOp, NewEntry, Param, ParamSnapshot};
use super::pattern::Pattern;
use super::query::{Cursor, Page, Query};
use super::{now_us, resolve, validate_entry, Journal, SignalType, SignalTypes, Subscription};
use crate::engine::{CommitTicket, Engine, EngineOptions, Pending, RecoveryReport, StateMachine};
use crate::io::{RealFs, Vfs};
use crate::snapshot::SnapshotInfo;
use crate::wal::ReadPosition;
use crate::WalReader;
use crate::{Error, Lsn, Result};
use imbl::{OrdMap, Vector};
use parking_lot::Mutex;
use std::collections::{BTreeMap, HashMap};
use std::io::{self, Read, Write};
use std::ops::RangeInclusive;
use std::path::Path;
use std::sync::Arc;

/// One time-index point every this many entries (sequences 1, 1 + N, ...).
/// A query reads at most this many records before its first answer,
/// beyond the seek within a segment (docs/BENCHMARKS.md).
pub const INDEX_EVERY_ENTRIES: u64 = 64;

fn is_index_point(sequence: u64) -> bool {
    (sequence - 1).is_multiple_of(INDEX_EVERY_ENTRIES)
}

/// The version byte that opens a journal snapshot's content.
const SNAPSHOT_CONTENT_VERSION: u8 = 1;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct IndexPoint {
    sequence: u64,
    timestamp_us: u64,
    lsn: Lsn,
}

/// The journal's state: parameters, counters and the time index.
#[derive(Clone, Debug)]
pub struct JournalState {
    params: OrdMap<Arc<str>, Arc<Param>>,
    latest_sequence: u64,
    last_timestamp_us: u64,
    /// The compaction floor: the oldest sequence number still held.
    first_sequence: u64,
    index: Vector<IndexPoint>,
}

impl JournalState {
    /// The sequence number of the last entry appended (0 before the first).
    pub fn latest_sequence(&self) -> u64 {
        self.latest_sequence
    }

    /// The compaction floor: the oldest sequence number still held.
    pub fn first_sequence(&self) -> u64 {
        self.first_sequence
    }

    /// The timestamp of the last entry appended, in microseconds since the
    /// Unix epoch (0 before the first); the next entry's is never earlier.
    pub fn last_timestamp_us(&self) -> u64 {
        self.last_timestamp_us
    }

    /// The state of the parameter at `address`, if a SET made one and no
    /// DELETE removed it.
    pub fn param(&self, address: &str) -> Option<&Param> {
        self.params.get(address).map(|p| &**p)
    }

    /// Every parameter, in address order.
    pub fn params(&self) -> impl Iterator<Item = &Param> {
        self.params.values().map(|p| &**p)
    }

    /// How many time-index points are held.
    pub fn index_points(&self) -> usize {
        self.index.len()
    }

    /// The number of points whose key is below the bound `below`.
    fn points_before(&self, below: impl Fn(&IndexPoint) -> bool) -> usize {
        // The index is sorted by sequence and by time: binary search.
        let (mut lo, mut hi) = (0, self.index.len());
        while lo < hi {
            let mid = (lo + hi) / 2;
            if below(&self.index[mid]) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo
    }

    /// Where a read for entries from `sequence` on, at or after `from_us`,
    /// can start: the latest index point that no answer precedes.
    pub(super) fn seek(&self, sequence: u64, from_us: Option<u64>) -> Lsn {
        let by_sequence = self.points_before(|p| p.sequence <= sequence);
        let by_time = from_us.map_or(0, |from| self.points_before(|p| p.timestamp_us < from));
        match by_sequence.max(by_time) {
            0 => Lsn::FIRST,
            i => self.index[i - 1].lsn,
        }
    }

    fn raise_floor(&mut self, first_kept: u64) {
        let first_kept = first_kept.min(self.latest_sequence + 1);
        if first_kept <= self.first_sequence {
            return;
        }
        self.first_sequence = first_kept;
        // Keep the last point at or below the floor: reads start there.
        let below = self.points_before(|p| p.sequence <= first_kept);
        if below > 1 {
            self.index = self.index.skip(below - 1);
        }
    }
}

fn bad(lsn: Lsn, what: impl std::fmt::Display) -> Error {
    Error::InvalidArgument(format!("log record {lsn} is not a valid journal record: {what}"))
}

/// Where the journal stands for a new entry: the visible state plus the
/// records committed ahead of it and not yet applied (see
/// [`crate::engine::Pending`]). Commits are numbered from this, so
/// sequences stay gap-free while earlier ones wait for their fdatasync.
struct Head {
    next_sequence: u64,
    last_timestamp_us: u64,
    first_sequence: u64,
}

impl JournalState {
    fn head(&self, pending: &Pending) -> Head {
        let mut head = Head {
            next_sequence: self.latest_sequence + 1,
            last_timestamp_us: self.last_timestamp_us,
            first_sequence: self.first_sequence,
        };
        // Every pending record passed `check`: it decodes.
        for (_, payload) in pending.records() {
            match codec::decode_record(payload) {
                Ok(JournalRecordView::Entry(entry)) => {
                    head.next_sequence = entry.sequence + 1;
                    head.last_timestamp_us = entry.timestamp_us;
                }
                Ok(JournalRecordView::Floor { first_kept }) => {
                    head.first_sequence = head.first_sequence.max(first_kept.min(head.next_sequence));
                }
                Err(_) => debug_assert!(false, "a pending record passed check"),
            }
        }
        head
    }

    /// The revision `address` has once the pending records are applied:
    /// the newest pending SET or DELETE of it, else the state's.
    fn previous_revision(&self, pending: &Pending, address: &str) -> Option<u64> {
        for (_, payload) in pending.records().rev() {
            if let Ok(JournalRecordView::Entry(entry)) = codec::decode_record(payload) {
                if entry.address == address {
                    match entry.op {
                        JournalOp::Set => return entry.revision,
                        JournalOp::Delete => return None,
                        JournalOp::Publish => {}
                    }
                }
            }
        }
        self.params.get(address).map(|p| p.revision)
    }
}

impl StateMachine for JournalState {
    type Frozen = JournalState;

    fn empty() -> Self {
        JournalState {
            params: OrdMap::new(),
            latest_sequence: 0,
            last_timestamp_us: 0,
            first_sequence: 1,
            index: Vector::new(),
        }
    }

    /// A record is a journal record if it decodes; the rest (gap-free
    /// sequences, time never going back) holds for what `commit_with`
    /// builds, and `apply` still refuses a log that breaks it.
    fn check(payload: &[u8]) -> Result<()> {
        codec::decode_record(payload)
            .map(drop)
            .map_err(|e| Error::InvalidArgument(format!("not a valid journal record: {e}")))
    }

    fn apply(&mut self, lsn: Lsn, payload: &[u8]) -> Result<()> {
        match codec::decode_record(payload).map_err(|e| bad(lsn, e))? {
            JournalRecordView::Entry(entry) => {
                if entry.sequence != self.latest_sequence + 1 {
                    let expected = self.latest_sequence + 1;
                    return Err(bad(lsn, format!("sequence {} where {expected} was expected", entry.sequence)));
                }
                if entry.timestamp_us < self.last_timestamp_us {
                    return Err(bad(lsn, format!("time {} before {}", entry.timestamp_us, self.last_timestamp_us)));
                }
                match entry.op {
                    JournalOp::Set => {
                        let revision = entry.revision.ok_or_else(|| bad(lsn, "a SET without a revision"))?;
                        let param = Param {
                            address: entry.address.to_owned(),
                            value: entry.value(),
                            revision,
                            writer: entry.author.to_owned(),
                            timestamp_us: entry.timestamp_us,
                        };
                        self.params.insert(Arc::from(entry.address), Arc::new(param));
                    }
                    JournalOp::Delete => {
                        self.params.remove(entry.address);
                    }
                    JournalOp::Publish => {}
                }
                if is_index_point(entry.sequence) {
                    self.index.push_back(IndexPoint {
                        sequence: entry.sequence,
                        timestamp_us: entry.timestamp_us,
                        lsn,
                    });
                }
                self.latest_sequence = entry.sequence;
                self.last_timestamp_us = entry.timestamp_us;
            }
            JournalRecordView::Floor { first_kept } => self.raise_floor(first_kept),
        }
        Ok(())
    }

    /// The history held is served from the log: keep it from the record
    /// of the index point at or below the compaction floor.
    fn retain_log_from(frozen: &JournalState) -> Option<Lsn> {
        frozen.index.front().map(|p| p.lsn)
    }

    fn freeze(&self) -> JournalState {
        self.clone() // O(1): both maps are persistent
    }

    fn write_snapshot(frozen: &JournalState, out: &mut dyn Write) -> io::Result<u64> {
        let mut buffer = Vec::with_capacity(64 << 10);
        buffer.push(SNAPSHOT_CONTENT_VERSION);
        for n in [frozen.latest_sequence, frozen.last_timestamp_us, frozen.first_sequence, frozen.index.len() as u64] {
            buffer.extend_from_slice(&n.to_le_bytes());
        }
        let mut flush = |buffer: &mut Vec<u8>| -> io::Result<()> {
            if buffer.len() >= 60 << 10 {
                out.write_all(buffer)?;
                buffer.clear();
            }
            Ok(())
        };
        for point in frozen.index.iter() {
            for n in [point.sequence, point.timestamp_us, point.lsn.0] {
                buffer.extend_from_slice(&n.to_le_bytes());
            }
            flush(&mut buffer)?;
        }
        buffer.extend_from_slice(&(frozen.params.len() as u64).to_le_bytes());
        for param in frozen.params.values() {
            codec::encode_param(&mut buffer, param);
            flush(&mut buffer)?;
        }
        out.write_all(&buffer)?;
        Ok(frozen.params.len() as u64)
    }

    fn read_snapshot(input: &mut dyn Read) -> io::Result<Self> {
        let mut bytes = Vec::new();
        input.read_to_end(&mut bytes)?;
        let invalid =
            |e: codec::JournalDecodeError| io::Error::new(io::ErrorKind::InvalidData, format!("journal state {e}"));
        let mut r = codec::ByteReader { bytes: &bytes, at: 0 };
        let version = r.u8().map_err(invalid)?;
        if version != SNAPSHOT_CONTENT_VERSION {
            return Err(invalid(r.error(format!("unknown content version {version}"))));
        }
        let mut state = JournalState::empty();
        state.latest_sequence = r.u64().map_err(invalid)?;
        state.last_timestamp_us = r.u64().map_err(invalid)?;
        state.first_sequence = r.u64().map_err(invalid)?;
        let points = r.u64().map_err(invalid)?;
        for _ in 0..points {
            let (sequence, timestamp_us, lsn) =
                (r.u64().map_err(invalid)?, r.u64().map_err(invalid)?, r.u64().map_err(invalid)?);
            state.index.push_back(IndexPoint { sequence, timestamp_us, lsn: Lsn(lsn) });
        }
        let params = r.u64().map_err(invalid)?;
        for _ in 0..params {
            let address = r.str16().map_err(invalid)?.to_owned();
            let revision = r.u64().map_err(invalid)?;
            let writer = r.str16().map_err(invalid)?.to_owned();
            let timestamp_us = r.u64().map_err(invalid)?;
            let value = r.value().map_err(invalid)?;
            let key: Arc<str> = Arc::from(address.as_str());
            state.params.insert(key, Arc::new(Param { address, value, revision, writer, timestamp_us }));
        }
        if r.at != bytes.len() {
            return Err(invalid(r.error(format!("{} bytes after the state", bytes.len() - r.at))));
        }
        Ok(state)
    }
}

/// Options of a [`DurableJournal`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default))]
pub struct JournalOptions {
    /// The log and snapshots underneath. The default differs from
    /// [`EngineOptions::default`] in one field: 4 MiB segments instead of
    /// 64 MiB, because a read from an LSN starts at the beginning of its
    /// segment, so the segment size bounds what a time-range query reads
    /// before its first answer when its position is not cached
    /// (docs/BENCHMARKS.md). The log keeps each segment file open: 256
    /// files per GiB of history, so a large journal needs a matching
    /// open-file limit, or larger segments.
    pub engine: EngineOptions,
}

impl Default for JournalOptions {
    fn default() -> Self {
        let mut engine = EngineOptions::default();
        engine.wal.segment_bytes = 4 << 20;
        JournalOptions { engine }
    }
}

/// Index points further than this many LSNs behind the newest are not
/// walked to by the tail indexer: it starts afresh at the newest instead.
const TAIL_INDEX_MAX_LSNS: u64 = 16 * INDEX_EVERY_ENTRIES;

/// The journal on walden's log.
pub struct DurableJournal<V: Vfs = RealFs> {
    engine: Engine<JournalState, V>,
    /// Where in the log the records of index points are (LSN -> segment and
    /// offset), so a query starts reading at its index point instead of at
    /// the start of the segment. A cache for this process only: filled by
    /// appends (the tail indexer) and by every read that passes an index
    /// point; a missing entry costs one scan from the segment's start.
    positions: Mutex<BTreeMap<Lsn, ReadPosition>>,
}

impl DurableJournal<RealFs> {
    /// Opens (or creates) the journal in `dir` and recovers it.
    pub fn open(dir: impl AsRef<Path>, options: JournalOptions) -> Result<Self> {
        DurableJournal::open_with(RealFs, dir, options)
    }
}

impl<V: Vfs> DurableJournal<V> {
    /// Opens (or creates) the journal in `dir` on the file system `fs`
    /// (`SimFs` in crash tests) and recovers it.
    pub fn open_with(fs: V, dir: impl AsRef<Path>, options: JournalOptions) -> Result<Self> {
        Ok(DurableJournal {
            engine: Engine::open_with(fs, dir, options.engine)?,
            positions: Mutex::new(BTreeMap::new()),
        })
    }

    /// Reads the journal's state (parameters and counters).
    pub fn read<R>(&self, f: impl FnOnce(&JournalState) -> R) -> R {
        self.engine.read(f)
    }

    /// The engine underneath (for backups, which copy its files).
    pub(crate) fn engine(&self) -> &Engine<JournalState, V> {
        &self.engine
    }

    /// What opening the journal found and did.
    pub fn recovery_report(&self) -> &RecoveryReport {
        self.engine.recovery_report()
    }

    /// The journal's snapshots on disk, oldest first.
    pub fn list_snapshots(&self) -> Result<Vec<SnapshotInfo>> {
        self.engine.list_snapshots()
    }

    /// The oldest LSN the log still holds (rises as compaction frees segments).
    pub fn log_first_lsn(&self) -> Lsn {
        self.engine.log_first_lsn()
    }

    /// Syncs the log and closes.
    /// [`Journal::append`] without waiting: returns the entry's sequence
    /// number and a ticket at once. Queries see the entry once the ticket's
    /// [`wait`](CommitTicket::wait) (or `.await`) returns, or once a later
    /// append or query finds it acknowledged; never before the log
    /// acknowledges it. Sequences stay gap-free: an entry is numbered
    /// after every one appended before it, acknowledged or not.
    pub fn append_pipelined(&self, entry: NewEntry) -> Result<(u64, CommitTicket<JournalState, V>)> {
        validate_entry(&entry)?;
        let (ticket, sequence) = self.engine.commit_with_pipelined(|state, pending, records| {
            let head = state.head(pending);
            let sequence = head.next_sequence;
            let previous = state.previous_revision(pending, &entry.address);
            let entry = resolve(entry, sequence, head.last_timestamp_us, previous);
            let mut record = Vec::with_capacity(40 + entry.author.len() + entry.address.len());
            codec::encode_entry(&mut record, &entry);
            records.push(record);
            Ok(sequence)
        })?;
        Ok((sequence, ticket))
    }

    /// Syncs the log (taking a final snapshot first if the options say so)
    /// and closes the journal.
    pub fn close(self) -> Result<()> {
        self.engine.close()
    }

    /// A reader from the index point at `lsn`, at its cached position if known.
    fn reader_at(&self, lsn: Lsn) -> Result<WalReader<V>> {
        let cached = self.positions.lock().get(&lsn).copied();
        match cached {
            Some(at) => self.engine.read_log_at(at),
            None => self.engine.read_log(lsn),
        }
    }

    /// Notes the positions of the index points a reader passed.
    fn remember(&self, seen: Vec<ReadPosition>) {
        if !seen.is_empty() {
            let mut positions = self.positions.lock();
            positions.extend(seen.into_iter().map(|p| (p.lsn, p)));
        }
    }

    /// The tail indexer: after appends that made a new index point, read
    /// from the newest known position up to it and note where it is. Costs
    /// about one record read per append; skipped if another thread is at it.
    fn index_tail(&self) {
        let Some(mut positions) = self.positions.try_lock() else {
            return;
        };
        let Some(newest) = self.engine.read(|s| s.index.last().map(|p| p.lsn)) else {
            return;
        };
        if positions.contains_key(&newest) {
            return;
        }
        let start = positions.last_key_value().map(|(_, p)| *p).filter(|p| p.lsn.0 + TAIL_INDEX_MAX_LSNS >= newest.0);
        let reader = match start {
            Some(at) => self.engine.read_log_at(at),
            None => self.engine.read_log(newest),
        };
        let mut reader = match reader {
            Ok(reader) => reader,
            Err(e) => return log::warn!("walden: journal tail indexer: {e}"),
        };
        while let Some(record) = reader.next_ref() {
            let (lsn, payload) = match record {
                Ok(record) => record,
                Err(e) => return log::warn!("walden: journal tail indexer: {e}"),
            };
            let point = codec::peek_entry(payload).is_some_and(|(sequence, _, _)| is_index_point(sequence));
            if let Some(here) = reader.last_position().filter(|_| point) {
                positions.insert(lsn, here);
            }
            if lsn >= newest {
                break;
            }
        }
    }

    /// The first sequence number of an entry at or after `timestamp_us`
    /// (the latest plus one if there is none).
    fn first_sequence_at(&self, timestamp_us: u64) -> Result<u64> {
        let (start, first, latest) =
            self.engine.read(|s| (s.seek(s.first_sequence, Some(timestamp_us)), s.first_sequence, s.latest_sequence));
        let mut reader = self.engine.read_log(start)?;
        while let Some(record) = reader.next_ref() {
            let (_, payload) = record?;
            if let Some((sequence, at_us, _)) = codec::peek_entry(payload) {
                if sequence >= first && at_us >= timestamp_us {
                    return Ok(sequence);
                }
            }
        }
        Ok(latest + 1)
    }
}

impl<V: Vfs> Journal for DurableJournal<V> {
    fn append(&self, entry: NewEntry) -> Result<u64> {
        let (sequence, ticket) = self.append_pipelined(entry)?;
        ticket.wait()?;
        if is_index_point(sequence) {
            self.index_tail();
        }
        Ok(sequence)
    }

    fn append_batch(&self, entries: Vec<NewEntry>) -> Result<RangeInclusive<u64>> {
        if entries.is_empty() {
            return Err(Error::InvalidArgument("an empty batch".into()));
        }
        entries.iter().try_for_each(validate_entry)?;
        let (_, range) = self.engine.commit_with(|state, pending, records| {
            let head = state.head(pending);
            let first = head.next_sequence;
            let mut last_timestamp_us = head.last_timestamp_us;
            // Revisions set (Some) or deleted (None) earlier in this batch.
            let mut batch: HashMap<String, Option<u64>> = HashMap::new();
            for (i, new) in entries.into_iter().enumerate() {
                let previous = match batch.get(&new.address) {
                    Some(revision) => *revision,
                    None => state.previous_revision(pending, &new.address),
                };
                let entry = resolve(new, first + i as u64, last_timestamp_us, previous);
                last_timestamp_us = entry.timestamp_us;
                match entry.op {
                    JournalOp::Set | JournalOp::Delete => {
                        batch.insert(entry.address.clone(), entry.revision);
                    }
                    JournalOp::Publish => {}
                }
                let mut record = Vec::with_capacity(40 + entry.author.len() + entry.address.len());
                codec::encode_entry(&mut record, &entry);
                records.push(record);
            }
            Ok(first..=first + records.len() as u64 - 1)
        })?;
        // Did the batch make an index point? (Sequence s is one if s - 1 is a multiple.)
        if (range.end() - 1) / INDEX_EVERY_ENTRIES != (range.start() - 1).saturating_sub(1) / INDEX_EVERY_ENTRIES
            || *range.start() == 1
        {
            self.index_tail();
        }
        Ok(range)
    }

    fn query(&self, query: &Query) -> Result<Page> {
        query.validate()?;
        let (start, first) = self.engine.read(|s| {
            let first = query.first_sequence(s.first_sequence);
            (s.seek(first, query.from_us), first)
        });
        let mut page = Page { entries: Vec::new(), next: None };
        let mut reader = self.reader_at(start)?;
        let mut seen = Vec::new();
        // The record just read is an index point: note its position (once
        // its payload is no longer borrowed from the reader).
        let mut point = false;
        loop {
            if std::mem::take(&mut point) {
                seen.extend(reader.last_position());
            }
            let Some(record) = reader.next_ref() else { break };
            let (lsn, payload) = record?;
            // Fixed-offset fields first: most records are skipped on these.
            let Some((sequence, timestamp_us, signal)) = codec::peek_entry(payload) else {
                continue; // a floor record
            };
            point = is_index_point(sequence);
            if sequence < first {
                continue;
            }
            if query.past_end(timestamp_us) {
                break;
            }
            if SignalType::from_u8(signal).is_some_and(|t| !query.types.contains(t)) {
                continue;
            }
            let JournalRecordView::Entry(entry) = codec::decode_record(payload).map_err(|e| bad(lsn, e))? else {
                continue;
            };
            if query.admits(timestamp_us, entry.signal_type, entry.address) {
                page.entries.push(entry.to_entry());
                if page.entries.len() == query.limit {
                    page.next = Some(Cursor(sequence));
                    break;
                }
            }
        }
        if point {
            seen.extend(reader.last_position());
        }
        self.remember(seen);
        Ok(page)
    }

    fn subscribe(&self, pattern: &Pattern, types: SignalTypes, from: u64) -> Result<Subscription<'_>> {
        super::subscribe::durable(self, pattern, types, from)
    }

    fn latest_sequence(&self) -> u64 {
        self.engine.read(|s| s.latest_sequence)
    }

    fn first_sequence(&self) -> u64 {
        self.engine.read(|s| s.first_sequence)
    }

    fn param(&self, address: &str) -> Option<Param> {
        self.engine.read(|s| s.param(address).cloned())
    }

    fn params(&self, pattern: &Pattern) -> Vec<Param> {
        self.engine.read(|s| s.params().filter(|p| pattern.matches(&p.address)).cloned().collect())
    }

    fn snapshot(&self) -> Result<u64> {
        let before = self.latest_sequence();
        let info = self.engine.snapshot_now()?;
        if self.latest_sequence() == before {
            return Ok(before);
        }
        // Entries were appended meanwhile: ask the snapshot itself.
        Ok(self.engine.view_at(info.header.lsn)?.latest_sequence)
    }

    fn load_snapshot(&self) -> Result<Option<ParamSnapshot>> {
        if self.engine.list_snapshots()?.is_empty() {
            return Ok(None);
        }
        let (state, _) = self.engine.view_until(|_| true, |_, _| false)?;
        let params = state.params().cloned().collect();
        Ok(Some(ParamSnapshot { sequence: state.latest_sequence, params }))
    }

    fn compact_before(&self, sequence: u64) -> Result<u64> {
        let would_remove = self.engine.read(|s| sequence.min(s.latest_sequence + 1).saturating_sub(s.first_sequence));
        if would_remove == 0 {
            return Ok(0);
        }
        let (_, removed) = self.engine.commit_with(|s, pending, records| {
            let head = s.head(pending);
            let cut = sequence.min(head.next_sequence);
            let mut record = Vec::with_capacity(17);
            codec::encode_floor(&mut record, cut, now_us());
            records.push(record);
            Ok(cut.saturating_sub(head.first_sequence))
        })?;
        // The floor is logged and applied; the snapshot carries it and lets
        // the engine free the segments no kept snapshot needs any more.
        self.engine.snapshot_now()?;
        Ok(removed)
    }

    fn compact_before_time(&self, timestamp_us: u64) -> Result<u64> {
        let sequence = self.first_sequence_at(timestamp_us)?;
        self.compact_before(sequence)
    }
}
