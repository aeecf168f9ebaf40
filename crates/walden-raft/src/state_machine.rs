//! [`StateMachine`]: openraft's state machine (`RaftStateMachine`,
//! `RaftSnapshotBuilder`) for any application's [`AppState`], persisted by
//! walden snapshot files.
//!
//! The state (the application's, with the last applied log id and the
//! membership: content.rs) lives in memory; it is made durable only by
//! snapshots, which are walden snapshot files (zstd, checksummed, written
//! under a temporary name, fdatasync'd, renamed, directory fsync'd) whose
//! content starts with openraft's `SnapshotMeta`. A snapshot is built from
//! a frozen view ([`AppState::freeze`]) taken under the read lock and
//! written with no lock held, so applies go on meanwhile. A file is named after the
//! raft index it covers plus one (walden's name field is an LSN, and LSN 0
//! names nothing), so names sort by index. Opening loads the newest snapshot
//! that verifies; the log replays the rest (openraft re-applies committed
//! entries after the last applied one).
//!
//! A snapshot received from the leader is written chunk by chunk into a
//! temporary file of the snapshot directory, then, at install: fdatasync'd,
//! verified (header, checksum, content, and metadata equal to the one the
//! leader announced, in a staging subdirectory under its final name), renamed
//! into place and the directory fsync'd; only then is the in-memory state
//! replaced, in one swap under the lock.
//!
//! **Invariant:** a file with a final snapshot name is complete and durable
//! (walden's snapshot writer, or the verify-then-rename above).
//! **Invariant:** the two newest snapshots are kept; an older one is removed
//! only after a newer one is durable.

use crate::app::AppState;
use crate::content::{self, Applied, Membership, Meta};
use crate::error::{Error, Result};
use crate::snapshot_data::SnapshotData;
use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    Entry, ErrorSubject, ErrorVerb, LogId, OptionalSend, RaftSnapshotBuilder, RaftTypeConfig, StorageError,
};
use parking_lot::{Mutex, RwLock};
use std::collections::BTreeSet;
use std::hash::{BuildHasher, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use walden::io::{RealFs, Vfs, VfsFile};
use walden::snapshot::{self as files, SnapshotHeader, SNAPSHOT_HEADER_BYTES};
use walden::Lsn;

/// How many snapshots are kept: the current one and one to fall back to if
/// the current one is found damaged at open.
pub const SNAPSHOTS_KEPT: usize = 2;

/// The subdirectory where a received snapshot is verified before it moves
/// into place; whatever an interrupted install left there is removed at open.
const STAGING_DIR: &str = "incoming";

/// A snapshot of this store: its metadata and its file.
struct Current<C: RaftTypeConfig> {
    meta: Meta<C>,
    path: PathBuf,
}

impl<C: RaftTypeConfig> Clone for Current<C> {
    fn clone(&self) -> Self {
        Current { meta: self.meta.clone(), path: self.path.clone() }
    }
}

/// What opening the state machine found.
#[derive(Debug, Default)]
pub struct SmOpenReport {
    /// The snapshot loaded, if any.
    pub loaded: Option<PathBuf>,
    /// Newer snapshot files that did not verify, and why (left in place).
    pub skipped: Vec<(PathBuf, String)>,
    /// Leftover temporary files removed (a crash mid-write leaves them).
    pub temporaries_removed: usize,
}

struct Inner<C: RaftTypeConfig, S, V: Vfs> {
    fs: V,
    dir: PathBuf,
    state: RwLock<Applied<C, S>>,
    current: Mutex<Option<Current<C>>>,
    /// Temporary files handed out by `begin_receiving_snapshot`.
    incoming: Mutex<BTreeSet<PathBuf>>,
    counter: AtomicU64,
    /// Snapshots installed from a leader since open.
    installs: AtomicU64,
}

/// openraft's state machine for the application state `S` of the type
/// configuration `C`, on walden snapshot files. Cloning shares it.
pub struct StateMachine<C: RaftTypeConfig, S, V: Vfs = RealFs> {
    inner: Arc<Inner<C, S, V>>,
}

impl<C: RaftTypeConfig, S, V: Vfs> Clone for StateMachine<C, S, V> {
    fn clone(&self) -> Self {
        StateMachine { inner: self.inner.clone() }
    }
}

fn random_u64() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos());
    h.finish()
}

fn now_unix_us() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_micros() as u64
}

/// The walden name field of a snapshot covering `last`: its index plus one.
fn name_lsn<NID: openraft::NodeId>(last: Option<&LogId<NID>>) -> Lsn {
    Lsn(last.map_or(0, |l| l.index + 1))
}

fn snapshot_error(file: &Path, what: impl Into<String>) -> Error {
    Error::Snapshot { file: file.to_owned(), what: what.into() }
}

impl<C, S> StateMachine<C, S, RealFs>
where
    C: RaftTypeConfig<Entry = Entry<C>, SnapshotData = SnapshotData>,
    S: AppState<C>,
{
    /// Opens the snapshot directory `dir` (creating it) and loads the newest
    /// snapshot that verifies.
    pub fn open(dir: impl AsRef<Path>) -> Result<(StateMachine<C, S, RealFs>, SmOpenReport)> {
        StateMachine::open_with(RealFs, dir)
    }
}

impl<C, S, V> StateMachine<C, S, V>
where
    C: RaftTypeConfig<Entry = Entry<C>, SnapshotData = SnapshotData>,
    S: AppState<C>,
    V: Vfs,
{
    /// [`StateMachine::open`] on another file system.
    pub fn open_with(fs: V, dir: impl AsRef<Path>) -> Result<(StateMachine<C, S, V>, SmOpenReport)> {
        let dir = dir.as_ref().to_owned();
        let io = |op: &'static str, path: &Path| {
            let path = path.to_owned();
            move |e| Error::Walden(walden::Error::Io { op, path, source: e })
        };
        fs.create_dir_all(&dir).map_err(io("create directory", &dir))?;
        let mut report = SmOpenReport::default();
        let temporaries = files::temporary_files(&fs, &dir)?;
        for path in &temporaries {
            fs.remove_file(path).map_err(io("remove", path))?;
        }
        if !temporaries.is_empty() {
            fs.sync_dir(&dir).map_err(io("fsync directory", &dir))?;
        }
        report.temporaries_removed = temporaries.len();
        let staging = dir.join(STAGING_DIR);
        fs.create_dir_all(&staging).map_err(io("create directory", &staging))?;
        let leftovers = fs.list_dir(&staging).map_err(io("list", &staging))?;
        for name in &leftovers {
            let path = staging.join(name);
            fs.remove_file(&path).map_err(io("remove", &path))?;
        }
        if !leftovers.is_empty() {
            fs.sync_dir(&staging).map_err(io("fsync directory", &staging))?;
        }
        report.temporaries_removed += leftovers.len();
        let listing = files::list_snapshots(&fs, &dir)?;
        for (path, e) in listing.unreadable {
            report.skipped.push((path, e.to_string()));
        }
        let mut loaded = None;
        for info in listing.snapshots.iter().rev() {
            match files::read_snapshot(&fs, info, |r| content::read_content::<C, S>(r)) {
                Ok((meta, state)) if name_lsn(meta.last_log_id.as_ref()) == info.header.lsn => {
                    loaded = Some((Current { meta, path: info.path.clone() }, state));
                    break;
                }
                Ok((meta, _)) => report.skipped.push((
                    info.path.clone(),
                    format!("its metadata names {meta}, not the index its file name covers"),
                )),
                Err(e) => report.skipped.push((info.path.clone(), e.to_string())),
            }
        }
        for (path, why) in &report.skipped {
            log::warn!("walden-raft: snapshot {} skipped at open: {why}", path.display());
        }
        let (current, state) = match loaded {
            Some((current, state)) => {
                report.loaded = Some(current.path.clone());
                (Some(current), state)
            }
            None => (None, Applied::empty()),
        };
        let inner = Inner {
            fs,
            dir,
            state: RwLock::new(state),
            current: Mutex::new(current),
            incoming: Mutex::new(BTreeSet::new()),
            counter: AtomicU64::new(0),
            installs: AtomicU64::new(0),
        };
        Ok((StateMachine { inner: Arc::new(inner) }, report))
    }

    /// Calls `f` on the applied state, under the read lock (applies wait).
    pub fn read<R>(&self, f: impl FnOnce(&S) -> R) -> R {
        f(&self.inner.state.read().app)
    }

    /// How many snapshots were installed from a leader since open.
    pub fn installs(&self) -> u64 {
        self.inner.installs.load(Ordering::Relaxed)
    }

    /// The metadata of the current snapshot, if any.
    pub fn current_snapshot_meta(&self) -> Option<Meta<C>> {
        self.inner.current.lock().as_ref().map(|c| c.meta.clone())
    }

    /// Applies committed entries in order; returns their responses.
    pub fn apply_entries(&self, entries: impl IntoIterator<Item = Entry<C>>) -> Vec<C::R> {
        let mut state = self.inner.state.write();
        entries.into_iter().map(|e| state.apply(e)).collect()
    }

    /// Writes a snapshot of the applied state; returns its metadata once
    /// it is durable under its final name.
    pub fn build(&self) -> Result<Meta<C>> {
        let n = self.inner.counter.fetch_add(1, Ordering::Relaxed);
        let (meta, frozen) = {
            let state = self.inner.state.read();
            let id = match &state.last_applied {
                Some(l) => format!("{}-{}-{}-{n}", l.leader_id.term, l.index, now_unix_us()),
                None => format!("none-{}-{n}", now_unix_us()),
            };
            state.freeze(id)
        };
        let lsn = name_lsn(meta.last_log_id.as_ref());
        // A raft snapshot is named by raft index and travels between nodes:
        // openraft's SnapshotMeta (in the content) binds it to the raft log,
        // not a walden log's id and record seal, so its origin is left empty.
        let origin = files::SnapshotOrigin { log_id: 0, seal: None };
        let info = files::write_snapshot(&self.inner.fs, &self.inner.dir, lsn, now_unix_us(), origin, |w| {
            content::write_content::<C, S>(&meta, &frozen, w)
        })?;
        self.make_current(Current { meta: meta.clone(), path: info.path })?;
        Ok(meta)
    }

    /// Records `current` and removes older snapshots beyond the kept count
    /// (and any named above it: they cannot be newer than what is current).
    fn make_current(&self, current: Current<C>) -> Result<()> {
        let at = name_lsn(current.meta.last_log_id.as_ref());
        *self.inner.current.lock() = Some(current);
        let (fs, dir) = (&self.inner.fs, &self.inner.dir);
        let mut keep = Vec::new();
        let mut removed = false;
        for info in files::list_snapshots(fs, dir)?.snapshots {
            if info.header.lsn <= at {
                keep.push(info);
                continue;
            }
            log::warn!("walden-raft: removing {} (named above the current snapshot)", info.path.display());
            fs.remove_file(&info.path)
                .map_err(|source| Error::Walden(walden::Error::Io { op: "remove", path: info.path.clone(), source }))?;
            removed = true;
        }
        if removed {
            fs.sync_dir(dir).map_err(|source| {
                Error::Walden(walden::Error::Io { op: "fsync directory", path: dir.clone(), source })
            })?;
        }
        files::prune_snapshots(fs, dir, &keep, SNAPSHOTS_KEPT)?;
        Ok(())
    }

    /// A new temporary file in the snapshot directory to receive a snapshot.
    pub fn begin_receiving(&self) -> Result<SnapshotData> {
        let path = self.inner.dir.join(format!("snapshot-incoming-{:016x}.zst.tmp", random_u64()));
        let file = self
            .inner
            .fs
            .create_new(&path)
            .map_err(|source| Error::Walden(walden::Error::Io { op: "create", path: path.clone(), source }))?;
        self.inner.incoming.lock().insert(path.clone());
        Ok(SnapshotData::new(Arc::new(file), Some(path)))
    }

    /// Installs a received snapshot: verify, rename into place, swap the
    /// state. Durable when it returns.
    pub fn install(&self, meta: &Meta<C>, data: SnapshotData) -> Result<()> {
        let fs = &self.inner.fs;
        let io = |op: &'static str, path: &Path| {
            let path = path.to_owned();
            move |e| Error::Walden(walden::Error::Io { op, path, source: e })
        };
        let ours = data.path().is_some_and(|p| self.inner.incoming.lock().remove(p));
        let temp = if ours {
            data.path().expect("checked").to_owned()
        } else {
            // Bytes from elsewhere (another store's file, or memory): copy
            // them into a temporary file of ours, 1 MiB at a time.
            let copy = self.begin_receiving()?;
            self.inner.incoming.lock().remove(copy.path().expect("ours"));
            let len = data.size_bytes().map_err(|e| snapshot_error(copy.path().unwrap(), e.to_string()))?;
            let mut buf = vec![0u8; 1 << 20];
            let mut at = 0u64;
            while at < len {
                let n = ((len - at) as usize).min(buf.len());
                data.file().read_exact_at(&mut buf[..n], at).map_err(io("read", copy.path().unwrap()))?;
                copy.file().write_all_at(&buf[..n], at).map_err(io("write", copy.path().unwrap()))?;
                at += n as u64;
            }
            copy.path().expect("ours").to_owned()
        };
        drop(data);
        let result = self.install_file(meta, &temp);
        if result.is_err() {
            // Never used again: it is not a snapshot of ours.
            if let Err(e) = fs.remove_file(&temp) {
                log::warn!("walden-raft: could not remove {}: {e}", temp.display());
            }
        }
        result
    }

    fn install_file(&self, meta: &Meta<C>, temp: &Path) -> Result<()> {
        let fs = &self.inner.fs;
        let io = |op: &'static str, path: &Path| {
            let path = path.to_owned();
            move |e| Error::Walden(walden::Error::Io { op, path, source: e })
        };
        let file = fs.open(temp, true).map_err(io("open", temp))?;
        file.sync_data().map_err(io("fsync", temp))?;
        let file_bytes = file.size_bytes().map_err(io("stat", temp))?;
        let mut header = [0u8; SNAPSHOT_HEADER_BYTES];
        if file_bytes < SNAPSHOT_HEADER_BYTES as u64 {
            return Err(snapshot_error(temp, format!("{file_bytes} bytes: shorter than a snapshot header")));
        }
        file.read_exact_at(&mut header, 0).map_err(io("read", temp))?;
        drop(file);
        let header = SnapshotHeader::decode(&header).map_err(|e| snapshot_error(temp, e.to_string()))?;
        if file_bytes != SNAPSHOT_HEADER_BYTES as u64 + header.content_bytes {
            return Err(snapshot_error(
                temp,
                format!("{file_bytes} bytes, but the header announces {} content bytes", header.content_bytes),
            ));
        }
        let lsn = name_lsn(meta.last_log_id.as_ref());
        if header.lsn != lsn {
            return Err(snapshot_error(temp, format!("covers {}, but the leader announced {meta}", header.lsn)));
        }
        // Verified under its final name in a staging directory (walden's
        // reader takes only listed snapshots), then moved into place.
        let staging = self.inner.dir.join(STAGING_DIR);
        fs.create_dir_all(&staging).map_err(io("create directory", &staging))?;
        let name = files::snapshot_file_name(lsn);
        let staged = staging.join(&name);
        fs.rename(temp, &staged).map_err(io("rename", &staged))?;
        let verified = (|| {
            let listing = files::list_snapshots(fs, &staging)?;
            if let Some((_, e)) = listing.unreadable.iter().find(|(p, _)| *p == staged) {
                return Err(snapshot_error(&staged, e.to_string()));
            }
            let info = listing
                .snapshots
                .iter()
                .find(|s| s.path == staged)
                .ok_or_else(|| snapshot_error(&staged, "not listed after staging"))?;
            let (read_meta, state) = files::read_snapshot(fs, info, |r| content::read_content::<C, S>(r))?;
            if &read_meta != meta {
                return Err(snapshot_error(&staged, format!("holds {read_meta}, but the leader announced {meta}")));
            }
            Ok((read_meta, state))
        })();
        let (read_meta, state) = match verified {
            Ok(v) => v,
            Err(e) => {
                if let Err(r) = fs.remove_file(&staged) {
                    log::warn!("walden-raft: could not remove {}: {r}", staged.display());
                }
                return Err(e);
            }
        };
        let path = self.inner.dir.join(&name);
        fs.rename(&staged, &path).map_err(io("rename", &path))?;
        fs.sync_dir(&self.inner.dir).map_err(io("fsync directory", &self.inner.dir))?;
        fs.sync_dir(&staging).map_err(io("fsync directory", &staging))?;
        *self.inner.state.write() = state;
        self.inner.installs.fetch_add(1, Ordering::Relaxed);
        self.make_current(Current { meta: read_meta, path })
    }

    /// The current snapshot, opened for reading.
    pub fn current(&self) -> Result<Option<Snapshot<C>>> {
        let Some(current) = self.inner.current.lock().clone() else { return Ok(None) };
        let file =
            self.inner.fs.open(&current.path, false).map_err(|source| {
                Error::Walden(walden::Error::Io { op: "open", path: current.path.clone(), source })
            })?;
        let data = SnapshotData::new(Arc::new(file), Some(current.path));
        Ok(Some(Snapshot { meta: current.meta, snapshot: Box::new(data) }))
    }

    /// The last applied log id and the last applied membership.
    pub fn applied(&self) -> (Option<LogId<C::NodeId>>, Membership<C>) {
        let state = self.inner.state.read();
        (state.last_applied.clone(), state.membership.clone())
    }
}

fn sm_error<NID: openraft::NodeId>(e: Error, verb: ErrorVerb) -> StorageError<NID> {
    e.storage(ErrorSubject::StateMachine, verb)
}

fn snap_error<NID: openraft::NodeId>(e: Error, verb: ErrorVerb) -> StorageError<NID> {
    e.storage(ErrorSubject::Snapshot(None), verb)
}

impl<C, S, V> RaftSnapshotBuilder<C> for StateMachine<C, S, V>
where
    C: RaftTypeConfig<Entry = Entry<C>, SnapshotData = SnapshotData>,
    S: AppState<C>,
    V: Vfs,
{
    async fn build_snapshot(&mut self) -> std::result::Result<Snapshot<C>, StorageError<C::NodeId>> {
        // Off the runtime: a build compresses, writes and syncs the whole
        // state (blocking.rs).
        let this = self.clone();
        crate::blocking::off_runtime::<C, _>("walden-raft-snapshot", move || this.build())
            .await
            .and_then(|built| built)
            .map_err(|e| snap_error(e, ErrorVerb::Write))?;
        self.current()
            .map_err(|e| snap_error(e, ErrorVerb::Read))?
            .ok_or_else(|| snap_error(Error::Refused("the snapshot just built is gone".into()), ErrorVerb::Read))
    }
}

impl<C, S, V> RaftStateMachine<C> for StateMachine<C, S, V>
where
    C: RaftTypeConfig<Entry = Entry<C>, SnapshotData = SnapshotData>,
    S: AppState<C>,
    V: Vfs,
{
    type SnapshotBuilder = StateMachine<C, S, V>;

    async fn applied_state(
        &mut self,
    ) -> std::result::Result<(Option<LogId<C::NodeId>>, Membership<C>), StorageError<C::NodeId>> {
        Ok(self.applied())
    }

    async fn apply<I>(&mut self, entries: I) -> std::result::Result<Vec<C::R>, StorageError<C::NodeId>>
    where
        I: IntoIterator<Item = Entry<C>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        Ok(self.apply_entries(entries))
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> std::result::Result<Box<SnapshotData>, StorageError<C::NodeId>> {
        self.begin_receiving().map(Box::new).map_err(|e| snap_error(e, ErrorVerb::Write))
    }

    async fn install_snapshot(
        &mut self,
        meta: &Meta<C>,
        snapshot: Box<SnapshotData>,
    ) -> std::result::Result<(), StorageError<C::NodeId>> {
        self.install(meta, *snapshot).map_err(|e| sm_error(e, ErrorVerb::Write))
    }

    async fn get_current_snapshot(&mut self) -> std::result::Result<Option<Snapshot<C>>, StorageError<C::NodeId>> {
        self.current().map_err(|e| snap_error(e, ErrorVerb::Read))
    }
}
