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
use crate::engine::{CommitTicket, Engine, EngineOptions, Prepared, Recent, RecoveryReport, StateMachine};
use crate::format::padded_len;
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

/// Where the journal stands for its next entry, kept apart from the state
/// and under its own lock (`DurableJournal::sequencer`), so an append
/// numbers its entry with no fold and no walk of the records not yet
/// applied. Each append takes the lock, numbers and encodes its records,
/// and begins its commit in the log (its LSNs and its place in the log's
/// chain) before it lets go: so sequences and LSNs are one order.
///
/// **Invariant:** `next_sequence`, `last_timestamp_us` and
/// `first_sequence` are what the state will hold once every record begun
/// so far is applied; `revisions` holds the revision of every address set
/// or deleted (`None`) by an entry the published base may not hold yet
/// (an entry is dropped from it only once a base's `latest_sequence` is at
/// or past it), so an address not in it has its revision in the base.
struct Sequencer {
    next_sequence: u64,
    last_timestamp_us: u64,
    first_sequence: u64,
    /// Address -> (the sequence of the newest entry that set or deleted
    /// it, the revision it left: `None` if deleted).
    revisions: HashMap<String, (u64, Option<u64>)>,
    /// `revisions` is pruned when it grows to this many addresses.
    prune_at: usize,
    /// The base's latest sequence at the last pruning: a base at or past
    /// it holds the revision of every address `revisions` does not.
    pruned_through: u64,
}

/// Addresses `Sequencer::revisions` holds before its first pruning.
const REVISIONS_PRUNE_AT: usize = 1024;

/// Tries at the sequencer's lock (a try and a pause each, a few
/// microseconds in all) before the mutex's slow path, as the log's own
/// lock does: parked appenders, on few cores, line up behind a holder
/// that lost its CPU.
const SEQUENCER_SPINS: usize = 200;

fn lock_sequencer(sequencer: &Mutex<Sequencer>) -> parking_lot::MutexGuard<'_, Sequencer> {
    for _ in 0..SEQUENCER_SPINS {
        if let Some(guard) = sequencer.try_lock() {
            return guard;
        }
        std::hint::spin_loop();
    }
    sequencer.lock()
}

impl Sequencer {
    fn new(state: &JournalState) -> Sequencer {
        Sequencer {
            next_sequence: state.latest_sequence + 1,
            last_timestamp_us: state.last_timestamp_us,
            first_sequence: state.first_sequence,
            revisions: HashMap::new(),
            prune_at: REVISIONS_PRUNE_AT,
            pruned_through: 0,
        }
    }

    /// The revision `address` has once every record begun is applied.
    fn previous_revision(&self, base: &JournalState, address: &str) -> Option<u64> {
        match self.revisions.get(address) {
            Some(&(_, revision)) => revision,
            None => base.params.get(address).map(|p| p.revision),
        }
    }

    /// Forgets the revisions the published base holds, once enough pile up.
    fn prune(&mut self, base_latest_sequence: u64) {
        self.revisions.retain(|_, (sequence, _)| *sequence > base_latest_sequence);
        self.pruned_through = self.pruned_through.max(base_latest_sequence);
        self.prune_at = (2 * self.revisions.len()).max(REVISIONS_PRUNE_AT);
    }
}

impl StateMachine for JournalState {
    type Frozen = JournalState;
    /// Readers add the acknowledged records after the base themselves
    /// (`DurableJournal::current`), so an append is visible once the log
    /// acknowledges it and is folded off its path. `apply` does not fail
    /// for the records the journal logs: the sequencer numbers them in LSN
    /// order, with time never going back.
    const READS_RECENT: bool = true;

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

/// Entries numbered and encoded under the sequencer, not yet committed.
struct Numbered {
    records: Vec<Vec<u8>>,
    last_timestamp_us: u64,
    /// (address, sequence, revision left) of each SET and DELETE.
    touched: Vec<(String, u64, Option<u64>)>,
}

/// Numbers `entries` after what `sequencer` says is begun, their times
/// never before the last, their revisions after the newest of their
/// address (in the batch, then begun, then in `base`), and encodes them.
fn number(sequencer: &Sequencer, base: &JournalState, entries: Vec<NewEntry>) -> Numbered {
    let mut numbered = Numbered {
        records: Vec::with_capacity(entries.len()),
        last_timestamp_us: sequencer.last_timestamp_us,
        touched: Vec::new(),
    };
    // Revisions set or deleted earlier in a batch of more than one entry.
    let mut batch: HashMap<String, Option<u64>> = HashMap::new();
    let many = entries.len() > 1;
    for (i, new) in entries.into_iter().enumerate() {
        let previous = match batch.get(&new.address) {
            Some(revision) => *revision,
            None => sequencer.previous_revision(base, &new.address),
        };
        let entry = resolve(new, sequencer.next_sequence + i as u64, numbered.last_timestamp_us, previous);
        numbered.last_timestamp_us = entry.timestamp_us;
        let mut record = Vec::with_capacity(40 + entry.author.len() + entry.address.len());
        codec::encode_entry(&mut record, &entry);
        numbered.records.push(record);
        if matches!(entry.op, JournalOp::Set | JournalOp::Delete) {
            if many {
                batch.insert(entry.address.clone(), entry.revision);
            }
            numbered.touched.push((entry.address, entry.sequence, entry.revision));
        }
    }
    numbered
}

/// The latest sequence and the compaction floor of `base` with `recent`
/// applied, from the records' fixed-offset fields (and a floor record's
/// decoding), as `apply` would leave them.
fn head_of(base: &JournalState, recent: &Recent<'_>) -> (u64, u64) {
    let (mut latest, mut first) = (base.latest_sequence, base.first_sequence);
    for (_, payload) in recent.iter() {
        match codec::peek_entry(payload) {
            Some((sequence, _, _)) => latest = sequence,
            None => {
                if let Ok(JournalRecordView::Floor { first_kept }) = codec::decode_record(payload) {
                    first = first.max(first_kept.min(latest + 1));
                }
            }
        }
    }
    (latest, first)
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

/// A query starts at the nearest index point before its own whose place
/// is known if that is at most this many LSNs before it (it reads and
/// skips the records between), else at the start of its segment.
const NEAR_INDEX_LSNS: u64 = 16 * INDEX_EVERY_ENTRIES;

/// The journal on walden's log.
pub struct DurableJournal<V: Vfs = RealFs> {
    engine: Engine<JournalState, V>,
    /// Where in the log the records of index points are (LSN -> segment and
    /// offset), so a query starts reading at its index point instead of at
    /// the start of the segment. A cache for this process only: filled by
    /// appends (the log gives each commit its place) and by every read that
    /// passes an index point; a missing entry costs one scan from the
    /// segment's start.
    positions: Mutex<BTreeMap<Lsn, ReadPosition>>,
    /// Numbers entries and begins their commits, one append at a time
    /// (`DurableJournal::begin`); held for no I/O, no fold and no wait but
    /// the log's own lock (and, in `Always`, staging's back-pressure).
    sequencer: Mutex<Sequencer>,
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
        let engine = Engine::open_with(fs, dir, options.engine)?;
        let sequencer = Mutex::new(engine.read(Sequencer::new));
        Ok(DurableJournal { engine, positions: Mutex::new(BTreeMap::new()), sequencer })
    }

    /// Reads the journal's state (parameters and counters): every
    /// acknowledged entry and no other. Takes no lock a writer holds: the
    /// acknowledged records the last fold left out are applied to a copy
    /// of its state (cheap to take: its maps are persistent), so this
    /// costs more the more records wait to be folded (a few hundred at
    /// most while appenders run).
    pub fn read<R>(&self, f: impl FnOnce(&JournalState) -> R) -> R {
        self.engine.read_recent(|base, recent| {
            if recent.is_empty() {
                return f(base);
            }
            let mut state = base.clone();
            for (lsn, payload) in recent.iter() {
                if let Err(e) = state.apply(lsn, payload) {
                    // The engine stops taking commits at such a record.
                    debug_assert!(false, "an acknowledged journal record does not apply: {e}");
                    break;
                }
            }
            f(&state)
        })
    }

    /// The latest sequence and the compaction floor with every
    /// acknowledged entry, read from the base and the records after it
    /// (their fixed-offset fields) with no copy of the state.
    fn head(&self) -> (u64, u64) {
        self.engine.read_recent(head_of)
    }

    /// Numbers `entries` after every entry begun before them and begins
    /// their commit in the log, under the sequencer: an entry's sequence,
    /// time and revision follow those of every entry before it in LSN
    /// order. A commit refused before it reaches the log (a check, a
    /// poisoned log) leaves the sequencer as it was. Returns the sequences
    /// and what `begin` returned (the commit, still to be finished once
    /// the sequencer is released).
    fn begin<B>(
        &self,
        entries: Vec<NewEntry>,
        begin: impl FnOnce(&[Vec<u8>]) -> Result<B>,
    ) -> Result<(RangeInclusive<u64>, B)> {
        let mut sequencer = lock_sequencer(&self.sequencer);
        let numbered = self.engine.read_base(|base| number(&sequencer, base, entries));
        let begun = begin(&numbered.records)?;
        let first = sequencer.next_sequence;
        sequencer.next_sequence += numbered.records.len() as u64;
        sequencer.last_timestamp_us = numbered.last_timestamp_us;
        for (address, sequence, revision) in numbered.touched {
            sequencer.revisions.insert(address, (sequence, revision));
        }
        if sequencer.revisions.len() >= sequencer.prune_at {
            let folded = self.engine.read_base(|base| base.latest_sequence);
            sequencer.prune(folded);
        }
        Ok((first..=sequencer.next_sequence - 1, begun))
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

    /// [`DurableJournal::begin`] of one entry, with as little as can be
    /// done under the sequencer: the entry is encoded, checked and copied
    /// for the log before, with a placeholder sequence, time and revision
    /// that the sequencer then writes into their fixed-width fields.
    fn begin_one<B>(&self, new: NewEntry, begin: impl FnOnce(Prepared<JournalState>) -> Result<B>) -> Result<(u64, B)> {
        validate_entry(&new)?;
        let given_revision = new.revision;
        let entry = resolve(new, 0, 0, None);
        let mut record = Vec::with_capacity(40 + entry.author.len() + entry.address.len());
        codec::encode_entry(&mut record, &entry);
        let mut prepared = self.engine.prepare(&record)?;
        let wants_revision = entry.op == JournalOp::Set && given_revision.is_none();
        // The base's revision, before the lock; used if still good under it.
        let seen = wants_revision
            .then(|| self.engine.read_base(|b| (b.latest_sequence, b.params.get(&*entry.address).map(|p| p.revision))));
        let mut sequencer = lock_sequencer(&self.sequencer);
        let sequence = sequencer.next_sequence;
        let timestamp_us = entry.timestamp_us.max(sequencer.last_timestamp_us);
        let revision = match entry.op {
            JournalOp::Set if wants_revision => {
                let previous = match (sequencer.revisions.get(&*entry.address), seen) {
                    (Some(&(_, revision)), _) => revision,
                    (None, Some((latest, revision))) if latest >= sequencer.pruned_through => revision,
                    (None, _) => self.engine.read_base(|b| b.params.get(&*entry.address).map(|p| p.revision)),
                };
                Some(previous.unwrap_or(0) + 1)
            }
            _ => entry.revision,
        };
        codec::patch_entry(prepared.payload_mut(), sequence, timestamp_us, revision);
        let begun = begin(prepared)?;
        sequencer.next_sequence += 1;
        sequencer.last_timestamp_us = timestamp_us;
        if matches!(entry.op, JournalOp::Set | JournalOp::Delete) {
            // An address already held is updated in place: its string is
            // dropped after the lock, not freed under it.
            match sequencer.revisions.get_mut(&*entry.address) {
                Some(slot) => *slot = (sequence, revision),
                None => drop(sequencer.revisions.insert(entry.address, (sequence, revision))),
            }
            if sequencer.revisions.len() >= sequencer.prune_at {
                let folded = self.engine.read_base(|base| base.latest_sequence);
                sequencer.prune(folded);
            }
        }
        Ok((sequence, begun))
    }

    /// [`Journal::append`] without waiting: returns the entry's sequence
    /// number and a ticket at once. Queries see the entry once the log
    /// acknowledges it (the ticket's [`wait`](CommitTicket::wait), or
    /// `.await`, returns then), never before. Sequences stay gap-free: an
    /// entry is numbered after every one appended before it, acknowledged
    /// or not.
    pub fn append_pipelined(&self, entry: NewEntry) -> Result<(u64, CommitTicket<JournalState, V>)> {
        let (sequence, staged) = self.begin_one(entry, |prepared| self.engine.begin_prepared_pipelined(prepared))?;
        let ticket = staged.into_ticket();
        if is_index_point(sequence) {
            self.remember(vec![ticket.first_position()]);
        }
        Ok((sequence, ticket))
    }

    /// Syncs the log (taking a final snapshot first if the options say so)
    /// and closes the journal.
    pub fn close(self) -> Result<()> {
        self.engine.close()
    }

    /// A reader from the index point at `lsn`: at its cached position if
    /// known, else at the nearest cached position before it if that is
    /// close (the reader skips the records before the answer), else from
    /// the start of its segment.
    fn reader_at(&self, lsn: Lsn) -> Result<WalReader<V>> {
        let cached = self.positions.lock().range(..=lsn).next_back().map(|(_, at)| *at);
        match cached {
            Some(at) if at.lsn == lsn => self.engine.read_log_at(at),
            Some(at) if at.lsn.0 + NEAR_INDEX_LSNS >= lsn.0 && at.lsn >= self.engine.log_first_lsn() => {
                self.engine.read_log_at(at)
            }
            _ => self.engine.read_log(lsn),
        }
    }

    /// Notes the positions of the index points a reader passed.
    fn remember(&self, seen: Vec<ReadPosition>) {
        if !seen.is_empty() {
            let mut positions = self.positions.lock();
            positions.extend(seen.into_iter().map(|p| (p.lsn, p)));
        }
    }

    /// Notes where the index points among a commit's records are: the
    /// commit of `sequences` begun at `first` (its first record's place in
    /// the log), whose records take `frames` bytes each. Noted when the
    /// commit is begun: a query looks a position up only at or before an
    /// acknowledged LSN, and the log acknowledges in LSN order, so it never
    /// starts at a record not yet written (or never to be, the log then
    /// being poisoned).
    fn remember_index_points(&self, sequences: RangeInclusive<u64>, first: ReadPosition, frames: &[usize]) {
        let mut offset = first.offset;
        let mut points = Vec::new();
        for ((sequence, frame), lsn) in sequences.zip(frames).zip(first.lsn.0..) {
            if is_index_point(sequence) {
                points.push(ReadPosition { lsn: Lsn(lsn), segment_first_lsn: first.segment_first_lsn, offset });
            }
            offset += *frame as u64;
        }
        self.remember(points);
    }

    /// The first sequence number of an entry at or after `timestamp_us`
    /// (the latest plus one if there is none).
    fn first_sequence_at(&self, timestamp_us: u64) -> Result<u64> {
        let (latest, first) = self.head();
        // The base's index: a point the last fold left out is only a
        // shorter read (the same holds in `query`).
        let start = self.engine.read_base(|s| s.seek(first, Some(timestamp_us)));
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
        let (sequence, begun) = self.begin_one(entry, |prepared| self.engine.begin_prepared(prepared))?;
        if is_index_point(sequence) {
            self.remember(vec![begun.first_position()]);
        }
        begun.finish()?;
        Ok(sequence)
    }

    fn append_batch(&self, entries: Vec<NewEntry>) -> Result<RangeInclusive<u64>> {
        if entries.is_empty() {
            return Err(Error::InvalidArgument("an empty batch".into()));
        }
        entries.iter().try_for_each(validate_entry)?;
        let (range, (begun, frames)) = self.begin(entries, |records| {
            let frames: Vec<usize> = records.iter().map(|r| padded_len(r.len())).collect();
            Ok((self.engine.begin_commit_batch(records)?, frames))
        })?;
        self.remember_index_points(range.clone(), begun.first_position(), &frames);
        begun.finish()?;
        Ok(range)
    }

    fn query(&self, query: &Query) -> Result<Page> {
        query.validate()?;
        let first = query.first_sequence(self.head().1);
        let start = self.engine.read_base(|s| s.seek(first, query.from_us));
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
        self.head().0
    }

    fn first_sequence(&self) -> u64 {
        self.head().1
    }

    fn param(&self, address: &str) -> Option<Param> {
        self.engine.read_recent(|base, recent| {
            // The newest acknowledged SET or DELETE of it, else the base's.
            let mut newest = None;
            for (_, payload) in recent.iter() {
                if let Ok(JournalRecordView::Entry(entry)) = codec::decode_record(payload) {
                    if entry.address == address && !matches!(entry.op, JournalOp::Publish) {
                        newest = Some(entry);
                    }
                }
            }
            match newest {
                None => base.param(address).cloned(),
                Some(entry) => (entry.op == JournalOp::Set).then(|| Param {
                    address: entry.address.to_owned(),
                    value: entry.value(),
                    revision: entry.revision.unwrap_or(0),
                    writer: entry.author.to_owned(),
                    timestamp_us: entry.timestamp_us,
                }),
            }
        })
    }

    fn params(&self, pattern: &Pattern) -> Vec<Param> {
        self.read(|s| s.params().filter(|p| pattern.matches(&p.address)).cloned().collect())
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
        let (latest, first) = self.head();
        if sequence.min(latest + 1).saturating_sub(first) == 0 {
            return Ok(0);
        }
        let (removed, begun) = {
            let mut sequencer = lock_sequencer(&self.sequencer);
            let cut = sequence.min(sequencer.next_sequence);
            let removed = cut.saturating_sub(sequencer.first_sequence);
            let mut record = Vec::with_capacity(17);
            codec::encode_floor(&mut record, cut, now_us());
            let begun = self.engine.begin_commit_batch(&[record])?;
            sequencer.first_sequence = sequencer.first_sequence.max(cut);
            (removed, begun)
        };
        begun.finish()?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::Value;
    use crate::FsyncMode;

    /// Every index point an append, a batch or a pipelined append made has
    /// its place noted, and the log holds that index point's record there:
    /// on the direct path (`Never`) and the staged one (`Always`), across
    /// segment roll-overs.
    #[test]
    fn appends_note_where_each_index_point_is_and_the_log_holds_it_there() {
        for fsync in [FsyncMode::Never, FsyncMode::Always] {
            let dir = tempfile::tempdir().unwrap();
            let mut options = JournalOptions::default();
            options.engine.wal.fsync = fsync;
            options.engine.wal.segment_bytes = 16 << 10;
            options.engine.snapshots = crate::SnapshotOptions::manual();
            let journal = DurableJournal::open(dir.path(), options).unwrap();
            let entry = |i: u64| NewEntry::set("writer", &format!("/a/{}", i % 7), Value::Int(i as i64));
            let mut latest = 0;
            for round in 0..150u64 {
                latest = match round % 3 {
                    0 => journal.append(entry(round)).unwrap(),
                    1 => *journal.append_batch((0..1 + round % 40).map(entry).collect()).unwrap().end(),
                    _ => {
                        let (sequence, ticket) = journal.append_pipelined(entry(round)).unwrap();
                        ticket.wait().unwrap();
                        sequence
                    }
                };
            }
            let positions = journal.positions.lock().clone();
            let points = (1..=latest).filter(|&s| is_index_point(s)).count();
            assert!(points >= 10, "{fsync:?}: the script makes index points ({points})");
            assert_eq!(positions.len(), points, "{fsync:?}: every index point's place is noted");
            let segments: std::collections::BTreeSet<Lsn> = positions.values().map(|p| p.segment_first_lsn).collect();
            assert!(segments.len() > 1, "{fsync:?}: the points span segments");
            for (lsn, at) in positions {
                assert_eq!(at.lsn, lsn);
                let mut reader = journal.engine.read_log_at(at).unwrap();
                let (read, payload) = reader.next_ref().expect("a record there").unwrap();
                assert_eq!(read, lsn, "{fsync:?}: the record at the noted place is the index point's");
                let (sequence, _, _) = codec::peek_entry(payload).expect("an entry");
                assert!(is_index_point(sequence), "{fsync:?}: sequence {sequence} at {lsn} is an index point");
            }
        }
    }
}
