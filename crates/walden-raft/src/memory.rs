//! The same log and state machine with no disk at all, for any type
//! configuration and [`AppState`]: a benchmark's upper bound, and a quick
//! way to run an application's tests. An append is "durable" the moment it
//! is in the map; a snapshot is a buffer ([`MemoryFile`]) holding the
//! content encoding (content.rs), uncompressed. Nothing survives the
//! process.

use crate::app::AppState;
use crate::content::{self, Applied, Membership, Meta};
use crate::snapshot_data::{MemoryFile, SnapshotData};
use openraft::storage::{LogFlushed, LogState, RaftLogStorage, RaftStateMachine, Snapshot};
use openraft::{
    AnyError, Entry, ErrorSubject, ErrorVerb, LogId, OptionalSend, RaftLogId, RaftLogReader, RaftSnapshotBuilder,
    RaftTypeConfig, StorageError, StorageIOError, Vote,
};
use parking_lot::{Mutex, RwLock};
use std::collections::BTreeMap;
use std::fmt::Debug;
use std::ops::RangeBounds;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

struct Log<C: RaftTypeConfig> {
    entries: BTreeMap<u64, C::Entry>,
    vote: Option<Vote<C::NodeId>>,
    committed: Option<LogId<C::NodeId>>,
    purged: Option<LogId<C::NodeId>>,
}

/// An in-memory raft log. Cloning shares it.
pub struct MemLogStore<C: RaftTypeConfig> {
    log: Arc<Mutex<Log<C>>>,
}

impl<C: RaftTypeConfig> Clone for MemLogStore<C> {
    fn clone(&self) -> Self {
        MemLogStore { log: self.log.clone() }
    }
}

impl<C: RaftTypeConfig> Default for MemLogStore<C> {
    fn default() -> Self {
        let log = Log { entries: BTreeMap::new(), vote: None, committed: None, purged: None };
        MemLogStore { log: Arc::new(Mutex::new(log)) }
    }
}

impl<C: RaftTypeConfig> RaftLogReader<C> for MemLogStore<C>
where
    C::Entry: Clone,
{
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<C::Entry>, StorageError<C::NodeId>> {
        Ok(self.log.lock().entries.range(range).map(|(_, e)| e.clone()).collect())
    }
}

impl<C: RaftTypeConfig> RaftLogStorage<C> for MemLogStore<C>
where
    C::Entry: Clone,
{
    type LogReader = MemLogStore<C>;

    async fn get_log_state(&mut self) -> Result<LogState<C>, StorageError<C::NodeId>> {
        let log = self.log.lock();
        let last = log.entries.last_key_value().map(|(_, e)| e.get_log_id().clone()).or_else(|| log.purged.clone());
        Ok(LogState { last_purged_log_id: log.purged.clone(), last_log_id: last })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<C::NodeId>) -> Result<(), StorageError<C::NodeId>> {
        self.log.lock().vote = Some(vote.clone());
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<C::NodeId>>, StorageError<C::NodeId>> {
        Ok(self.log.lock().vote.clone())
    }

    async fn save_committed(&mut self, committed: Option<LogId<C::NodeId>>) -> Result<(), StorageError<C::NodeId>> {
        self.log.lock().committed = committed;
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<C::NodeId>>, StorageError<C::NodeId>> {
        Ok(self.log.lock().committed.clone())
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<C>) -> Result<(), StorageError<C::NodeId>>
    where
        I: IntoIterator<Item = C::Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        self.log.lock().entries.extend(entries.into_iter().map(|e| (e.get_log_id().index, e)));
        callback.log_io_completed(Ok(()));
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId<C::NodeId>) -> Result<(), StorageError<C::NodeId>> {
        self.log.lock().entries.split_off(&log_id.index);
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId<C::NodeId>) -> Result<(), StorageError<C::NodeId>> {
        let mut log = self.log.lock();
        log.entries = log.entries.split_off(&(log_id.index + 1));
        if log.purged.as_ref().is_none_or(|p| p.index < log_id.index) {
            log.purged = Some(log_id);
        }
        Ok(())
    }
}

/// The current snapshot: its metadata and its bytes.
type CurrentSnapshot<C> = (Meta<C>, Arc<MemoryFile>);

/// An in-memory state machine for the application state `S`. Cloning
/// shares it.
pub struct MemStateMachine<C: RaftTypeConfig, S> {
    state: Arc<RwLock<Applied<C, S>>>,
    current: Arc<Mutex<Option<CurrentSnapshot<C>>>>,
    counter: Arc<AtomicU64>,
    installs: Arc<AtomicU64>,
}

impl<C: RaftTypeConfig, S> Clone for MemStateMachine<C, S> {
    fn clone(&self) -> Self {
        MemStateMachine {
            state: self.state.clone(),
            current: self.current.clone(),
            counter: self.counter.clone(),
            installs: self.installs.clone(),
        }
    }
}

fn snapshot_error<NID: openraft::NodeId>(e: std::io::Error, verb: ErrorVerb) -> StorageError<NID> {
    StorageIOError::new(ErrorSubject::Snapshot(None), verb, AnyError::new(&e)).into()
}

impl<C, S> Default for MemStateMachine<C, S>
where
    C: RaftTypeConfig<Entry = Entry<C>, SnapshotData = SnapshotData>,
    S: AppState<C>,
{
    fn default() -> Self {
        MemStateMachine {
            state: Arc::new(RwLock::new(Applied::empty())),
            current: Arc::default(),
            counter: Arc::default(),
            installs: Arc::default(),
        }
    }
}

impl<C, S> MemStateMachine<C, S>
where
    C: RaftTypeConfig<Entry = Entry<C>, SnapshotData = SnapshotData>,
    S: AppState<C>,
{
    /// Calls `f` on the applied state, under the read lock.
    pub fn read<R>(&self, f: impl FnOnce(&S) -> R) -> R {
        f(&self.state.read().app)
    }

    /// How many snapshots were installed from a leader.
    pub fn installs(&self) -> u64 {
        self.installs.load(Ordering::Relaxed)
    }

    fn snapshot(&self) -> Option<Snapshot<C>> {
        let (meta, file) = self.current.lock().clone()?;
        Some(Snapshot { meta, snapshot: Box::new(SnapshotData::new(file, None)) })
    }
}

impl<C, S> RaftSnapshotBuilder<C> for MemStateMachine<C, S>
where
    C: RaftTypeConfig<Entry = Entry<C>, SnapshotData = SnapshotData>,
    S: AppState<C>,
{
    async fn build_snapshot(&mut self) -> Result<Snapshot<C>, StorageError<C::NodeId>> {
        let id = format!("memory-{}", self.counter.fetch_add(1, Ordering::Relaxed));
        let (meta, frozen) = self.state.read().freeze(id);
        // Off the runtime, as the walden state machine builds (blocking.rs),
        // so the two clusters of a benchmark pay the same way.
        let built = crate::blocking::off_runtime::<C, _>("walden-raft-snapshot", move || {
            let mut bytes = Vec::new();
            content::write_content::<C, S>(&meta, &frozen, &mut bytes).map(|_| (meta, bytes))
        })
        .await
        .map_err(|e| snapshot_error(std::io::Error::other(e.to_string()), ErrorVerb::Write))?;
        let (meta, bytes) = built.map_err(|e| snapshot_error(e, ErrorVerb::Write))?;
        *self.current.lock() = Some((meta, Arc::new(MemoryFile::new(bytes))));
        Ok(self.snapshot().expect("just built"))
    }
}

impl<C, S> RaftStateMachine<C> for MemStateMachine<C, S>
where
    C: RaftTypeConfig<Entry = Entry<C>, SnapshotData = SnapshotData>,
    S: AppState<C>,
{
    type SnapshotBuilder = MemStateMachine<C, S>;

    async fn applied_state(&mut self) -> Result<(Option<LogId<C::NodeId>>, Membership<C>), StorageError<C::NodeId>> {
        let state = self.state.read();
        Ok((state.last_applied.clone(), state.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<C::R>, StorageError<C::NodeId>>
    where
        I: IntoIterator<Item = Entry<C>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut state = self.state.write();
        Ok(entries.into_iter().map(|e| state.apply(e)).collect())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<SnapshotData>, StorageError<C::NodeId>> {
        Ok(Box::new(SnapshotData::new(Arc::new(MemoryFile::default()), None)))
    }

    async fn install_snapshot(
        &mut self,
        meta: &Meta<C>,
        snapshot: Box<SnapshotData>,
    ) -> Result<(), StorageError<C::NodeId>> {
        let len = snapshot.size_bytes().map_err(|e| snapshot_error(e, ErrorVerb::Read))?;
        let mut bytes = vec![0u8; len as usize];
        snapshot.file().read_exact_at(&mut bytes, 0).map_err(|e| snapshot_error(e, ErrorVerb::Read))?;
        let (read_meta, state) =
            content::read_content::<C, S>(&mut bytes.as_slice()).map_err(|e| snapshot_error(e, ErrorVerb::Read))?;
        if &read_meta != meta {
            let e = std::io::Error::other(format!("snapshot holds {read_meta}, announced {meta}"));
            return Err(snapshot_error(e, ErrorVerb::Read));
        }
        *self.state.write() = state;
        *self.current.lock() = Some((read_meta, Arc::new(MemoryFile::new(bytes))));
        self.installs.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<C>>, StorageError<C::NodeId>> {
        Ok(self.snapshot())
    }
}
