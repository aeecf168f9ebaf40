//! The same log and state machine with no disk at all: the benchmark's
//! upper bound. An append is "durable" the moment it is in the map; a
//! snapshot is a buffer ([`MemoryFile`]) holding the state's content
//! encoding (kv.rs), uncompressed. Nothing survives the process.

use crate::kv::KvState;
use crate::snapshot_data::{MemoryFile, SnapshotData};
use crate::types::{Entry, LogId, Response, SnapshotMeta, StorageError, StoredMembership, TypeConfig, Vote};
use openraft::storage::{LogFlushed, LogState, RaftLogStorage, RaftStateMachine, Snapshot};
use openraft::{AnyError, ErrorSubject, ErrorVerb, OptionalSend, RaftLogReader, RaftSnapshotBuilder, StorageIOError};
use parking_lot::{Mutex, RwLock};
use std::collections::BTreeMap;
use std::fmt::Debug;
use std::ops::RangeBounds;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

#[derive(Default)]
struct Log {
    entries: BTreeMap<u64, Entry>,
    vote: Option<Vote>,
    committed: Option<LogId>,
    purged: Option<LogId>,
}

/// An in-memory raft log. Cloning shares it.
#[derive(Clone, Default)]
pub struct MemLogStore {
    log: Arc<Mutex<Log>>,
}

impl RaftLogReader<TypeConfig> for MemLogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        Ok(self.log.lock().entries.range(range).map(|(_, e)| e.clone()).collect())
    }
}

impl RaftLogStorage<TypeConfig> for MemLogStore {
    type LogReader = MemLogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let log = self.log.lock();
        let last = log.entries.last_key_value().map(|(_, e)| e.log_id).or(log.purged);
        Ok(LogState { last_purged_log_id: log.purged, last_log_id: last })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        self.log.lock().vote = Some(*vote);
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        Ok(self.log.lock().vote)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        self.log.lock().committed = committed;
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(self.log.lock().committed)
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        self.log.lock().entries.extend(entries.into_iter().map(|e| (e.log_id.index, e)));
        callback.log_io_completed(Ok(()));
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.log.lock().entries.split_off(&log_id.index);
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let mut log = self.log.lock();
        log.entries = log.entries.split_off(&(log_id.index + 1));
        if log.purged.is_none_or(|p| p.index < log_id.index) {
            log.purged = Some(log_id);
        }
        Ok(())
    }
}

/// The current snapshot: its metadata and its bytes.
type CurrentSnapshot = (SnapshotMeta, Arc<MemoryFile>);

/// An in-memory state machine. Cloning shares it.
#[derive(Clone, Default)]
pub struct MemStateMachine {
    state: Arc<RwLock<KvState>>,
    current: Arc<Mutex<Option<CurrentSnapshot>>>,
    counter: Arc<AtomicU64>,
    installs: Arc<AtomicU64>,
}

fn snapshot_error(e: std::io::Error, verb: ErrorVerb) -> StorageError {
    StorageIOError::new(ErrorSubject::Snapshot(None), verb, AnyError::new(&e)).into()
}

impl MemStateMachine {
    pub fn state(&self) -> KvState {
        self.state.read().clone()
    }

    /// How many snapshots were installed from a leader.
    pub fn installs(&self) -> u64 {
        self.installs.load(Ordering::Relaxed)
    }

    fn snapshot(&self) -> Option<Snapshot<TypeConfig>> {
        let (meta, file) = self.current.lock().clone()?;
        Some(Snapshot { meta, snapshot: Box::new(SnapshotData::new(file, None)) })
    }
}

impl RaftSnapshotBuilder<TypeConfig> for MemStateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let state = self.state();
        let meta = state.meta(format!("memory-{}", self.counter.fetch_add(1, Ordering::Relaxed)));
        let mut bytes = Vec::new();
        state.write_content(&meta, &mut bytes).map_err(|e| snapshot_error(e, ErrorVerb::Write))?;
        *self.current.lock() = Some((meta, Arc::new(MemoryFile::new(bytes))));
        Ok(self.snapshot().expect("just built"))
    }
}

impl RaftStateMachine<TypeConfig> for MemStateMachine {
    type SnapshotBuilder = MemStateMachine;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        let state = self.state.read();
        Ok((state.last_applied, state.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Response>, StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut state = self.state.write();
        Ok(entries.into_iter().map(|e| state.apply(e)).collect())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<SnapshotData>, StorageError> {
        Ok(Box::new(SnapshotData::new(Arc::new(MemoryFile::default()), None)))
    }

    async fn install_snapshot(&mut self, meta: &SnapshotMeta, snapshot: Box<SnapshotData>) -> Result<(), StorageError> {
        let len = snapshot.size_bytes().map_err(|e| snapshot_error(e, ErrorVerb::Read))?;
        let mut bytes = vec![0u8; len as usize];
        snapshot.file().read_exact_at(&mut bytes, 0).map_err(|e| snapshot_error(e, ErrorVerb::Read))?;
        let (read_meta, state) =
            KvState::read_content(&mut bytes.as_slice()).map_err(|e| snapshot_error(e, ErrorVerb::Read))?;
        if &read_meta != meta {
            let e = std::io::Error::other(format!("snapshot holds {read_meta}, announced {meta}"));
            return Err(snapshot_error(e, ErrorVerb::Read));
        }
        *self.state.write() = state;
        *self.current.lock() = Some((read_meta, Arc::new(MemoryFile::new(bytes))));
        self.installs.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        Ok(self.snapshot())
    }
}
