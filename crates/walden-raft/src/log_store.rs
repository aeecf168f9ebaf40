//! [`LogStore`]: openraft's log storage (`RaftLogStorage`, `RaftLogReader`)
//! on a walden [`Wal`], for any type configuration whose entries serialize
//! (codec.rs).
//!
//! walden never rewrites a byte nor reuses an LSN, so every change to the
//! raft log is a record appended to it (codec.rs): entries, the vote, the
//! committed log id, a truncation ("entries from index i on are gone") and
//! a purge ("entries up to log id p are gone", which also re-states the vote,
//! the committed log id and where the live entries start: a checkpoint).
//! An in-memory index maps each live raft index to its log id and LSN.
//!
//! Opening replays the log in two passes: the first finds the last purge
//! record; the second replays from the first live entry it names (or from
//! the purge itself), with the purged log id it re-states. Segments wholly
//! before that point are freed with [`Wal::truncate_before`] after each
//! purge, so the log holds only what the next open replays.
//!
//! **Invariant:** replay applies the records with the same rules as the
//! live calls, so the state after reopening is the state before.
//! **Invariant:** `save_vote`, `truncate` and `purge` return once their
//! record is durable; an append's callback fires once its entries are
//! (durability.rs). `save_committed` returns once its record is staged: the
//! record is durable with the next append's fdatasync, or at most
//! [`LAZY_SYNC_DELAY_MAX`] plus one fdatasync later, whichever comes first
//! (the log is written in LSN order, so a durable later record proves it
//! durable). Recovery restores the last committed record that reached the
//! disk, never an older one. Appended entries are readable at once: until
//! the flusher reports them durable they are served from memory, since the
//! log's readers see only what reached write().

use crate::codec::{self, Checkpoint, RaftRecord};
use crate::durability::Flusher;
pub use crate::durability::LAZY_SYNC_DELAY_MAX;
use crate::error::{self, Error, Result};
use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{LogId, OptionalSend, RaftLogId, RaftLogReader, RaftTypeConfig, StorageError, Vote};
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::Arc;
use walden::io::{RealFs, Vfs};
use walden::wal::ReadPosition;
use walden::{FsyncMode, Lsn, RecoveryMode, Wal, WalOptions};

/// A live entry: its log id and where its record is.
struct Slot<C: RaftTypeConfig> {
    log_id: LogId<C::NodeId>,
    lsn: Lsn,
}

impl<C: RaftTypeConfig> Clone for Slot<C> {
    fn clone(&self) -> Self {
        Slot { log_id: self.log_id.clone(), lsn: self.lsn }
    }
}

/// The raft log as replayed: what `get_log_state`, `read_vote` and the
/// readers answer from.
struct State<C: RaftTypeConfig> {
    /// Live entries by index. openraft keeps them contiguous; this layer
    /// does not re-check it (openraft's own suite appends below a purge
    /// point), it records exactly what it was asked to.
    slots: BTreeMap<u64, Slot<C>>,
    vote: Option<Vote<C::NodeId>>,
    committed: Option<LogId<C::NodeId>>,
    purged: Option<LogId<C::NodeId>>,
    /// Entries appended in this process, by index: every one not yet
    /// reported durable (the log's readers do not see it yet), and the
    /// newest [`CACHED_ENTRIES_MAX`] of the others, which replication reads
    /// again right away. Readers take them from here.
    cache: BTreeMap<u64, (Lsn, C::Entry)>,
    /// Where some records are in the log, so a read starts near its first
    /// entry instead of scanning its segment from the start.
    positions: BTreeMap<Lsn, ReadPosition>,
}

/// Durable entries kept in memory for replication to read.
const CACHED_ENTRIES_MAX: usize = 8192;
/// Read positions remembered.
const POSITIONS_MAX: usize = 4096;

impl<C: RaftTypeConfig> Default for State<C> {
    fn default() -> Self {
        State {
            slots: BTreeMap::new(),
            vote: None,
            committed: None,
            purged: None,
            cache: BTreeMap::new(),
            positions: BTreeMap::new(),
        }
    }
}

impl<C: RaftTypeConfig> State<C> {
    /// The last entry's log id, or the last purged one if no entry is live.
    fn last_log_id(&self) -> Option<LogId<C::NodeId>> {
        self.slots.last_key_value().map(|(_, s)| s.log_id.clone()).or_else(|| self.purged.clone())
    }

    /// Drops the oldest cached entries beyond the cap among those durable up
    /// to `durable` (the rest are not readable from the log yet).
    fn trim_cache(&mut self, durable: Lsn) {
        while self.cache.len() > CACHED_ENTRIES_MAX {
            match self.cache.first_key_value() {
                Some((_, (lsn, _))) if *lsn <= durable => drop(self.cache.pop_first()),
                _ => break,
            }
        }
    }

    fn remember(&mut self, position: ReadPosition) {
        self.positions.insert(position.lsn, position);
        if self.positions.len() > POSITIONS_MAX {
            self.positions.pop_first();
        }
    }

    /// Records an entry; one already at its index is replaced.
    fn insert(&mut self, log_id: LogId<C::NodeId>, lsn: Lsn) {
        self.slots.insert(log_id.index, Slot { log_id, lsn });
    }

    fn truncate(&mut self, since: u64) {
        self.slots.split_off(&since);
        self.cache.split_off(&since);
    }

    fn purge(&mut self, upto: LogId<C::NodeId>) {
        let keep_from = upto.index.saturating_add(1);
        self.slots = self.slots.split_off(&keep_from);
        self.cache = self.cache.split_off(&keep_from);
        if upto.index == u64::MAX {
            self.slots.clear();
            self.cache.clear();
        }
        if self.purged.as_ref().is_none_or(|p| p.index < upto.index) {
            self.purged = Some(upto);
        }
    }
}

/// Why an option is refused for a raft log, if it is.
pub fn check_options(options: &WalOptions) -> Result<()> {
    match options.fsync {
        FsyncMode::Always => {}
        other => {
            return Err(Error::UnsafeSetting(format!(
                "fsync mode {other:?}: openraft counts an appended entry and a saved vote as \
                 durable once acknowledged, so only FsyncMode::Always (fdatasync before \
                 acknowledging) keeps a quorum's promise across power loss"
            )))
        }
    }
    match options.recovery {
        RecoveryMode::TolerateTornTail | RecoveryMode::AbsoluteConsistency => Ok(()),
        RecoveryMode::PointInTime => Err(Error::UnsafeSetting(
            "recovery mode PointInTime: it cuts the log at the first damaged record even when \
             later records prove that record was durable, so a node could forget an entry it \
             acknowledged to the leader or a vote it granted; use TolerateTornTail (cuts only a \
             torn tail, which in Always mode was never acknowledged) or AbsoluteConsistency"
                .into(),
        )),
        other => Err(Error::UnsafeSetting(format!(
            "recovery mode {other:?} is not one this raft layer has reviewed; use TolerateTornTail"
        ))),
    }
}

struct Inner<C: RaftTypeConfig, V: Vfs> {
    wal: Arc<Wal<V>>,
    state: Arc<Mutex<State<C>>>,
    flusher: Flusher,
}

/// openraft's log storage on a walden log, for the type configuration `C`
/// (any whose entries are `Clone`; with openraft's `serde` feature they
/// serialize). Cloning shares it (a clone is what `get_log_reader` hands
/// out).
pub struct LogStore<C: RaftTypeConfig, V: Vfs = RealFs> {
    inner: Arc<Inner<C, V>>,
}

impl<C: RaftTypeConfig, V: Vfs> Clone for LogStore<C, V> {
    fn clone(&self) -> Self {
        LogStore { inner: self.inner.clone() }
    }
}

impl<C: RaftTypeConfig> LogStore<C, RealFs>
where
    C::Entry: Clone,
{
    /// Opens (or creates) the raft log in `dir`.
    pub fn open(dir: impl AsRef<Path>, options: WalOptions) -> Result<LogStore<C, RealFs>> {
        LogStore::open_with(RealFs, dir, options)
    }
}

impl<C: RaftTypeConfig, V: Vfs> LogStore<C, V>
where
    C::Entry: Clone,
{
    /// [`LogStore::open`] on another file system.
    pub fn open_with(fs: V, dir: impl AsRef<Path>, options: WalOptions) -> Result<LogStore<C, V>> {
        check_options(&options)?;
        let wal = Arc::new(Wal::open_with(fs, dir, options)?);
        let state = Arc::new(Mutex::new(replay::<C, V>(&wal)?));
        let after = {
            let state = state.clone();
            Box::new(move |durable: Lsn| state.lock().trim_cache(durable))
        };
        let flusher = Flusher::start(wal.clone(), after).map_err(|source| Error::Io {
            op: "spawn the flusher thread",
            path: wal.dir().to_owned(),
            source,
        })?;
        Ok(LogStore { inner: Arc::new(Inner { wal, state, flusher }) })
    }

    /// The walden log underneath (for inspection and tests).
    pub fn wal(&self) -> &Wal<V> {
        &self.inner.wal
    }

    /// The last purged log id and the last log id.
    pub fn log_state(&self) -> LogState<C> {
        let st = self.inner.state.lock();
        LogState { last_purged_log_id: st.purged.clone(), last_log_id: st.last_log_id() }
    }

    /// The last vote saved.
    pub fn vote(&self) -> Option<Vote<C::NodeId>> {
        self.inner.state.lock().vote.clone()
    }

    /// The last committed log id saved.
    pub fn committed(&self) -> Option<LogId<C::NodeId>> {
        self.inner.state.lock().committed.clone()
    }

    fn stage(&self, payload: &[u8]) -> Result<Lsn> {
        let ticket = self.inner.wal.append_pipelined(payload)?;
        Ok(ticket.lsn())
    }

    /// Stages `entries` in the log and makes them readable; returns the LSN
    /// of the last one. Durable only once [`LogStore::wait_durable`] (or the
    /// flusher) says so.
    pub fn append_entries(&self, entries: Vec<C::Entry>) -> Result<Option<Lsn>> {
        if entries.is_empty() {
            return Ok(None);
        }
        let payloads: Vec<Vec<u8>> = entries.iter().map(codec::encode_entry::<C>).collect();
        let ticket = self.inner.wal.append_batch_pipelined(&payloads)?;
        let last = ticket.lsn();
        let first = Lsn(last.0 + 1 - entries.len() as u64);
        let mut st = self.inner.state.lock();
        for (i, entry) in entries.into_iter().enumerate() {
            let lsn = Lsn(first.0 + i as u64);
            let log_id = entry.get_log_id().clone();
            st.insert(log_id.clone(), lsn);
            st.cache.insert(log_id.index, (lsn, entry));
        }
        Ok(Some(last))
    }

    /// Blocks until every record up to `lsn` is durable.
    pub fn wait_durable(&self, lsn: Lsn) -> Result<()> {
        self.inner.wal.wait_durable(lsn)?;
        let mut st = self.inner.state.lock();
        st.trim_cache(lsn);
        Ok(())
    }

    /// Waits, without blocking a thread, until every record up to `lsn` is
    /// durable.
    pub async fn durable(&self, lsn: Lsn) -> Result<()> {
        self.inner.wal.durable(lsn).await?;
        Ok(())
    }

    /// Stages a vote record; the vote is durable once its LSN is.
    pub fn stage_vote(&self, vote: &Vote<C::NodeId>) -> Result<Lsn> {
        let lsn = self.stage(&codec::encode_vote::<C>(vote))?;
        self.inner.state.lock().vote = Some(vote.clone());
        Ok(lsn)
    }

    /// Stages a committed record; durable once its LSN is.
    pub fn stage_committed(&self, committed: Option<LogId<C::NodeId>>) -> Result<Lsn> {
        let lsn = self.stage(&codec::encode_committed::<C>(committed.as_ref()))?;
        self.inner.state.lock().committed = committed;
        Ok(lsn)
    }

    /// Stages the removal of every entry with an index at or above `since`.
    pub fn stage_truncate(&self, since: u64) -> Result<Lsn> {
        {
            let st = self.inner.state.lock();
            if let Some(purged) = st.purged.as_ref().filter(|p| p.index >= since) {
                return Err(Error::Refused(format!(
                    "truncating from index {since}: entries up to {purged} are purged"
                )));
            }
        }
        let lsn = self.stage(&codec::encode_truncate(since))?;
        self.inner.state.lock().truncate(since);
        Ok(lsn)
    }

    /// Stages the removal of every entry up to `upto`; returns the record's
    /// LSN and the LSN of the first live entry after it, if any.
    pub fn stage_purge(&self, upto: LogId<C::NodeId>) -> Result<(Lsn, Option<Lsn>)> {
        let mut st = self.inner.state.lock();
        let replay_from = st.slots.range(upto.index.saturating_add(1)..).map(|(_, s)| s.lsn).min();
        let checkpoint = Checkpoint {
            vote: st.vote.clone(),
            committed: st.committed.clone(),
            replay_from: replay_from.map(|l| l.0),
        };
        // Staged under the state lock: no vote or committed record can slip
        // between the state read above and this record.
        let lsn = self.stage(&codec::encode_purge::<C>(&upto, &checkpoint))?;
        st.purge(upto);
        Ok((lsn, replay_from))
    }

    /// Frees the log segments the last purge made unnecessary: everything
    /// before the first live entry (or the purge record itself).
    fn free_segments(&self, purge_lsn: Lsn, replay_from: Option<Lsn>) -> Result<usize> {
        Ok(self.inner.wal.truncate_before(replay_from.unwrap_or(purge_lsn))?)
    }

    /// `save_vote`, blocking: durable when it returns.
    pub fn save_vote_blocking(&self, vote: &Vote<C::NodeId>) -> Result<()> {
        let lsn = self.stage_vote(vote)?;
        self.wait_durable(lsn)
    }

    /// `save_committed`: stages the record and asks the flusher for
    /// durability within [`LAZY_SYNC_DELAY_MAX`] plus one fdatasync (the
    /// next append's sync covers it sooner). Returns the record's LSN.
    pub fn save_committed(&self, committed: Option<LogId<C::NodeId>>) -> Result<Lsn> {
        let lsn = self.stage_committed(committed)?;
        self.inner.flusher.submit_lazy(
            lsn,
            Box::new(move |r| {
                if let Err(e) = r {
                    log::error!("walden-raft: the committed record at LSN {lsn} did not become durable: {e}");
                }
            }),
        );
        Ok(lsn)
    }

    /// `truncate`, blocking: durable when it returns.
    pub fn truncate_blocking(&self, since: u64) -> Result<()> {
        let lsn = self.stage_truncate(since)?;
        self.wait_durable(lsn)
    }

    /// `purge`, blocking: durable when it returns, segments freed.
    pub fn purge_blocking(&self, upto: LogId<C::NodeId>) -> Result<()> {
        let (lsn, replay_from) = self.stage_purge(upto)?;
        self.wait_durable(lsn)?;
        self.free_segments(lsn, replay_from)?;
        Ok(())
    }

    /// The live entries with indexes in `[start, end)`.
    pub fn entries(&self, start: u64, end: u64) -> Result<Vec<C::Entry>> {
        enum Source<C: RaftTypeConfig> {
            Memory(C::Entry),
            Log(Slot<C>),
        }
        let sources: Vec<Source<C>> = {
            let st = self.inner.state.lock();
            if start >= end {
                return Ok(Vec::new());
            }
            st.slots
                .range(start..end)
                .map(|(index, slot)| match st.cache.get(index) {
                    Some((_, entry)) => Source::Memory(entry.clone()),
                    None => Source::Log(slot.clone()),
                })
                .collect()
        };
        let mut out = Vec::with_capacity(sources.len());
        let mut reader: Option<walden::WalReader<V>> = None;
        for source in sources {
            let slot = match source {
                Source::Memory(entry) => {
                    out.push(entry);
                    continue;
                }
                Source::Log(slot) => slot,
            };
            // Live entries' LSNs grow with their index, so one reader
            // serves a range, unless an overwrite reordered them.
            if reader.as_ref().is_none_or(|r| r.last_position().is_some_and(|p| p.lsn >= slot.lsn)) {
                let hint = self.inner.state.lock().positions.range(..=slot.lsn).next_back().map(|(_, p)| *p);
                reader = Some(match hint {
                    Some(position) => self.inner.wal.read_from_position(position)?,
                    None => self.inner.wal.read_from(slot.lsn)?,
                });
            }
            let r = reader.as_mut().expect("opened above");
            let entry = loop {
                let (lsn, bytes) = match r.next_ref() {
                    Some(record) => record?,
                    None => return Err(self.corrupt(slot.lsn, format!("entry {} is missing", slot.log_id))),
                };
                if lsn < slot.lsn {
                    continue;
                }
                if lsn > slot.lsn {
                    return Err(self.corrupt(slot.lsn, format!("entry {} is missing (read LSN {lsn})", slot.log_id)));
                }
                match codec::decode::<C>(bytes) {
                    Ok(RaftRecord::Entry(entry)) if *entry.get_log_id() == slot.log_id => break entry,
                    Ok(other) => {
                        return Err(self.corrupt(lsn, format!("expected entry {}, found {other:?}", slot.log_id)))
                    }
                    Err(e) => return Err(self.corrupt(lsn, e.to_string())),
                }
            };
            out.push(entry);
        }
        if let Some(position) = reader.as_ref().and_then(|r| r.last_position()) {
            self.inner.state.lock().remember(position);
        }
        Ok(out)
    }

    fn corrupt(&self, lsn: Lsn, what: String) -> Error {
        Error::Corrupt { dir: self.inner.wal.dir().to_owned(), lsn, what }
    }
}

/// Rebuilds the state from the log (see the module docs).
fn replay<C: RaftTypeConfig, V: Vfs>(wal: &Wal<V>) -> Result<State<C>> {
    let corrupt = |lsn: Lsn, what: String| Error::Corrupt { dir: wal.dir().to_owned(), lsn, what };
    let first = wal.first_lsn();
    // Pass 1: the last purge record.
    let mut last_purge: Option<(Lsn, LogId<C::NodeId>, Checkpoint<C>)> = None;
    let mut reader = wal.read_from(first)?;
    while let Some(record) = reader.next_ref() {
        let (lsn, bytes) = record?;
        if bytes.first() == Some(&codec::kind::PURGE) {
            match codec::decode::<C>(bytes) {
                Ok(RaftRecord::Purge { upto, checkpoint }) => last_purge = Some((lsn, upto, checkpoint)),
                Ok(_) => unreachable!("the kind byte says purge"),
                Err(e) => return Err(corrupt(lsn, e.to_string())),
            }
        }
    }
    let mut st = State::<C>::default();
    let start = match &last_purge {
        Some((lsn, upto, checkpoint)) => {
            st.purged = Some(upto.clone());
            checkpoint.replay_from.map_or(*lsn, Lsn)
        }
        None if first > Lsn::FIRST => {
            return Err(corrupt(first, "the log starts after LSN 1 but holds no purge record to replay from".into()))
        }
        None => first,
    };
    if start < first {
        return Err(corrupt(start, format!("replay must start here, but the log starts at LSN {first}")));
    }
    // Pass 2: replay from the first live entry.
    let mut reader = wal.read_from(start)?;
    let mut expected = start;
    while let Some(record) = reader.next_ref() {
        let (lsn, bytes) = record?;
        if lsn != expected {
            return Err(corrupt(expected, format!("LSN {lsn} read where {expected} was expected")));
        }
        expected = lsn.next();
        let record = codec::decode::<C>(bytes).map_err(|e| corrupt(lsn, e.to_string()))?;
        if lsn.0 % 256 == 0 {
            st.remember(reader.last_position().expect("a record was just read"));
        }
        match record {
            RaftRecord::Entry(entry) => st.insert(entry.get_log_id().clone(), lsn),
            RaftRecord::Vote(vote) => st.vote = Some(vote),
            RaftRecord::Committed(committed) => st.committed = committed,
            RaftRecord::Truncate { since } => st.truncate(since),
            RaftRecord::Purge { upto, checkpoint } => {
                st.purge(upto);
                if last_purge.as_ref().is_some_and(|(at, _, _)| *at == lsn) {
                    // The checkpoint re-states what replay skipped over.
                    st.vote = checkpoint.vote;
                    st.committed = checkpoint.committed;
                }
            }
        }
    }
    Ok(st)
}

fn range_to_bounds<RB: RangeBounds<u64>>(range: &RB) -> (u64, u64) {
    let start = match range.start_bound() {
        Bound::Included(&s) => s,
        Bound::Excluded(&s) => s.saturating_add(1),
        Bound::Unbounded => 0,
    };
    let end = match range.end_bound() {
        Bound::Included(&e) => e.saturating_add(1),
        Bound::Excluded(&e) => e,
        Bound::Unbounded => u64::MAX,
    };
    (start, end)
}

impl<C: RaftTypeConfig, V: Vfs> RaftLogReader<C> for LogStore<C, V>
where
    C::Entry: Clone,
{
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> std::result::Result<Vec<C::Entry>, StorageError<C::NodeId>> {
        let (start, end) = range_to_bounds(&range);
        self.entries(start, end).map_err(error::read_logs)
    }
}

impl<C: RaftTypeConfig, V: Vfs> RaftLogStorage<C> for LogStore<C, V>
where
    C::Entry: Clone,
{
    type LogReader = LogStore<C, V>;

    async fn get_log_state(&mut self) -> std::result::Result<LogState<C>, StorageError<C::NodeId>> {
        Ok(self.log_state())
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<C::NodeId>) -> std::result::Result<(), StorageError<C::NodeId>> {
        let lsn = self.stage_vote(vote).map_err(error::write_vote)?;
        self.durable(lsn).await.map_err(error::write_vote)
    }

    async fn read_vote(&mut self) -> std::result::Result<Option<Vote<C::NodeId>>, StorageError<C::NodeId>> {
        Ok(self.vote())
    }

    async fn save_committed(
        &mut self,
        committed: Option<LogId<C::NodeId>>,
    ) -> std::result::Result<(), StorageError<C::NodeId>> {
        LogStore::save_committed(self, committed).map_err(error::write_logs)?;
        Ok(())
    }

    async fn read_committed(&mut self) -> std::result::Result<Option<LogId<C::NodeId>>, StorageError<C::NodeId>> {
        Ok(self.committed())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<C>,
    ) -> std::result::Result<(), StorageError<C::NodeId>>
    where
        I: IntoIterator<Item = C::Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        match self.append_entries(entries.into_iter().collect()).map_err(error::write_logs)? {
            Some(lsn) => self.inner.flusher.submit(lsn, Box::new(move |r| callback.log_io_completed(r))),
            None => callback.log_io_completed(Ok(())),
        }
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId<C::NodeId>) -> std::result::Result<(), StorageError<C::NodeId>> {
        let lsn = self.stage_truncate(log_id.index).map_err(error::write_logs)?;
        self.durable(lsn).await.map_err(error::write_logs)
    }

    async fn purge(&mut self, log_id: LogId<C::NodeId>) -> std::result::Result<(), StorageError<C::NodeId>> {
        let (lsn, replay_from) = self.stage_purge(log_id).map_err(error::write_logs)?;
        self.durable(lsn).await.map_err(error::write_logs)?;
        self.free_segments(lsn, replay_from).map_err(error::write_logs)?;
        Ok(())
    }
}
