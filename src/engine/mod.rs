//! [`Engine`]: a log, its snapshots, and the application's state machine.
//!
//! The engine appends every change to the [`Wal`], applies it to a
//! [`StateMachine`] in LSN order, takes snapshots of the state, and on open
//! recovers: the newest snapshot whose checksum holds (older ones if it does
//! not, each skip reported), then the log from the LSN after it.
//!
//! **Invariant:** a snapshot at LSN n is written only after the log is
//! durable up to n, so a snapshot never covers records the log could lose
//! (new appends would otherwise reuse those LSNs and replay would skip them).
//! **Invariant:** a log segment is removed only when the oldest retained
//! snapshot no longer needs it, so falling back never lacks a record.
//! **Invariant:** a snapshot past the end of the recovered log is moved
//! aside at open: records that reuse its LSNs are never taken for covered.
//! **Invariant:** replay applies each LSN at most once: records at or below
//! the state's applied LSN are skipped.

mod published;
mod replay;

use crate::io::{RealFs, Vfs};
use crate::snapshot::{self, OriginCheck, SnapshotInfo, SnapshotOrigin};
use crate::wal::now_unix_us;

mod pending;
use crate::wal::Chained;
use crate::{Error, Lsn, Result, Wal, WalOptions};
use arc_swap::ArcSwap;
use parking_lot::{Condvar, Mutex, RwLock};
pub use pending::{CommitTicket, Committed, Pending};
use published::Base;
pub use published::Recent;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The boundary between the engine and the state an application keeps.
///
/// The state is `Clone`, and a clone should be cheap (a persistent map's
/// is O(1)): readers read a published version of it with no lock, and
/// each fold of new records into it publishes a clone.
pub trait StateMachine: Clone + Send + Sync + Sized + 'static {
    /// A view of the state frozen at one moment, cheap to take, which can be
    /// written out while the state goes on changing (for example a clone of
    /// a persistent map).
    type Frozen: Send + 'static;

    /// Whether this state's readers read the acknowledged records not yet
    /// applied to it themselves, beside the state (the store does, through
    /// `Engine::read_recent`). Then a commit is visible once its record is
    /// published, and records are applied ("folded") in batches by whichever
    /// thread finds the folder free, so no committer waits for another's
    /// apply. This asks that [`StateMachine::apply`] never fail for a record
    /// [`StateMachine::check`] accepted. Default false: each commit is
    /// applied before it returns, and an apply error is the committer's.
    const READS_RECENT: bool = false;

    /// The state before any record.
    fn empty() -> Self;
    /// Decides whether `payload` may be committed, before it reaches the
    /// log: a refused record is never logged, and the log, the state and
    /// later commits are untouched. The contract: `check` depends on the
    /// payload alone (not on the state, which records committed ahead of
    /// this one but not yet applied will still change) and has no side
    /// effects, and [`StateMachine::apply`] cannot fail for a record that
    /// `check` accepted, whatever state it meets. Validate the record's
    /// form here; keep rules that depend on the state out of the records
    /// (compute them at apply, as the store computes revisions), or
    /// resolve them in [`Engine::commit_with`]'s builder.
    fn check(payload: &[u8]) -> Result<()>;
    /// Applies the record at `lsn`. Called once per LSN, in LSN order, once
    /// the record is acknowledged. It must not fail for a record
    /// [`StateMachine::check`] accepted; an error means the log holds a
    /// record this state machine cannot apply (written by another program,
    /// or under other rules): the engine stops taking commits, and opening
    /// the directory reports the LSN and the reason ([`Error::Apply`]).
    fn apply(&mut self, lsn: Lsn, payload: &[u8]) -> Result<()>;
    /// Applies the records of `batch` (consecutive LSNs, in LSN order), as
    /// replay does: the engine gathers the log's records into batches at
    /// open and for views. The result must be the same as applying them one
    /// by one; a state may reorder the work inside the batch to get there
    /// faster (the store applies puts in key order, so that consecutive
    /// ones walk the same part of its tree). After an error the state is
    /// discarded. The default calls `apply` for each record.
    fn apply_batch(&mut self, batch: &[(Lsn, &[u8])]) -> Result<()> {
        batch.iter().try_for_each(|&(lsn, payload)| self.apply(lsn, payload))
    }
    /// The order in which replay may apply the records of `batch`, as
    /// indices into it, for the same result as LSN order (the store sorts
    /// its operations by key, keeping each key's in LSN order), or nothing
    /// (the default) for LSN order. Replay calls it on its reading thread,
    /// while the previous batch is applied, and then copies the records
    /// into that order; an error here is an error applying the batch.
    fn plan_batch(batch: &[(Lsn, &[u8])], order: &mut Vec<u32>) -> Result<()> {
        let _ = (batch, order);
        Ok(())
    }
    /// Applies records in the order [`StateMachine::plan_batch`] chose for
    /// them (LSN order if it chose none): replay calls this instead of
    /// `apply_batch`. The default calls `apply_batch`, which a state that
    /// plans no order of its own need not tell apart.
    fn apply_planned_batch(&mut self, records: &[(Lsn, &[u8])]) -> Result<()> {
        self.apply_batch(records)
    }
    /// Freezes the state as it is now.
    fn freeze(&self) -> Self::Frozen;
    /// Streams a frozen state; returns how many entries it wrote.
    fn write_snapshot(frozen: &Self::Frozen, out: &mut dyn Write) -> io::Result<u64>;
    /// Rebuilds a state from what `write_snapshot` wrote.
    fn read_snapshot(input: &mut dyn Read) -> io::Result<Self>;
    /// Whether [`StateMachine::read_snapshot`] fails cleanly on any bytes
    /// at all: an error, never a panic, and no allocation larger than what
    /// it has read justifies. Then a snapshot's checksum is checked while
    /// its content streams in, in one pass over the file, and a state built
    /// from content that fails it is dropped, never used. Default false:
    /// the file is read twice, and damaged content never reaches
    /// `read_snapshot`.
    const READS_ANY_BYTES: bool = false;
    /// The oldest LSN this state still needs the log to hold, besides what
    /// recovery from the kept snapshots needs: a journal serves its history
    /// from the log. After a snapshot the log is truncated below the
    /// smaller of the two. Default: `None`, no need of its own.
    fn retain_log_from(_frozen: &Self::Frozen) -> Option<Lsn> {
        None
    }
}

/// When snapshots are taken and how many are kept.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default))]
pub struct SnapshotOptions {
    /// Snapshots kept; older ones are deleted once a newer one is durable,
    /// and log segments once no kept snapshot needs them. Default 3.
    pub keep_count: usize,
    /// Take a snapshot after this many commits since the last one. Default
    /// 1,000,000, so the log replayed at open stays bounded (the store
    /// replayed 0.28M records/s on a quiet 2-core machine before replay
    /// was batched and sorted, and 2.7x as fast as that code since, when
    /// both were measured on the same loaded machine: about 0.75M/s, so
    /// under 2 s, may be expected on a quiet one; see docs/BENCHMARKS.md)
    /// while a snapshot, a full copy of the state, is not rewritten every
    /// few thousand writes as Statehouse's default of 1,000 would.
    pub every_commits: Option<u64>,
    /// ... or after this many bytes of log since the last one. Default
    /// 256 MiB, which bounds the disk the log holds.
    pub every_bytes: Option<u64>,
    /// ... or this long after the last one, if anything was committed since.
    /// Default one hour.
    pub every: Option<Duration>,
    /// Take a final snapshot in `close()`. Default false.
    pub on_close: bool,
}

impl SnapshotOptions {
    /// No automatic snapshots: only [`Engine::snapshot_now`] takes them.
    /// The keep count is the default's.
    pub fn manual() -> Self {
        SnapshotOptions { every_commits: None, every_bytes: None, every: None, ..Default::default() }
    }
}

impl Default for SnapshotOptions {
    fn default() -> Self {
        SnapshotOptions {
            keep_count: 3,
            every_commits: Some(1_000_000),
            every_bytes: Some(256 << 20),
            every: Some(Duration::from_secs(3600)),
            on_close: false,
        }
    }
}

/// Options of an [`Engine`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default))]
pub struct EngineOptions {
    /// The log's options (`dir/wal`).
    pub wal: WalOptions,
    /// When snapshots are taken and how many are kept (`dir/snapshots`).
    pub snapshots: SnapshotOptions,
}

/// What opening an engine found and did.
#[derive(Clone, Debug, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct RecoveryReport {
    /// The snapshot the state was loaded from, if any.
    pub snapshot_used: Option<PathBuf>,
    /// The LSN that snapshot covers (0 if none).
    pub snapshot_lsn: Lsn,
    /// Snapshots passed over, newest first, and why: unreadable, damaged,
    /// from another store or another history of this log (moved aside),
    /// under a name that disagrees with its header (moved aside), or not
    /// continued by the log.
    pub snapshots_skipped: Vec<(PathBuf, String)>,
    /// Set when the snapshot used could not be checked in full against the
    /// log, and why: a format-1 file (walden 0.1.0 recorded no origin), or
    /// the log no longer holds the record at its LSN (log id checked only).
    pub snapshot_unchecked: Option<String>,
    /// Log records applied after the snapshot.
    pub records_replayed: u64,
    /// Bytes of log records replayed plus bytes of snapshot file read.
    pub bytes_read: u64,
    /// Bytes the log's recovery moved into quarantine.
    pub bytes_cut: u64,
    /// Leftover temporary snapshot files removed.
    pub temporary_files_removed: usize,
    /// How long the open took, log recovery and replay included.
    pub duration: Duration,
}

/// The state records are applied to: the one place `apply` is called
/// after open. Readers never see it; each fold publishes a clone.
struct Folder<S> {
    machine: S,
    lsn: Lsn,
    /// Payload bytes applied since open; with `lsn`, what a snapshot covers.
    bytes: u64,
    /// The log's chain at or before the record after `lsn`.
    anchor: Arc<Chained>,
    /// Set when a record could not be applied: nothing later is.
    failed: bool,
    /// How many records a bounded fold takes (`Core::fold_share`).
    share: u64,
}

/// Counters that decide when the next automatic snapshot is due.
/// Measured by position, not by counting events, so commits that land
/// while a snapshot is being taken are never lost from the count.
struct Since {
    /// What the last snapshot covers (LSN, bytes applied) and when it began.
    snapshot_lsn: Lsn,
    snapshot_bytes: u64,
    at: Instant,
    /// Set when the engine closes: the snapshot thread stops.
    stop: bool,
}

/// A log plus snapshots plus an application's state.
///
/// **Visibility follows acknowledgement.** A commit is checked
/// ([`StateMachine::check`]), appended to the log, and visible to readers
/// only once the log acknowledges it in its fsync mode's terms (`Always`:
/// synced; `Periodic`, `Never`: written), in LSN order. So a reader
/// ([`Engine::read`], views, log reads) never sees a commit that is not
/// acknowledged or that returned an error, and a committer sees its own
/// write as soon as its commit returns. Concurrent commits still share one
/// write and one fdatasync; readers never wait for either.
///
/// Records are applied to the state a batch at a time ("folded") by
/// whichever thread finds the folder free; a state that reads the
/// acknowledged records after its last fold itself
/// ([`StateMachine::READS_RECENT`], as the store does) makes a commit
/// visible the moment the log acknowledges it, with no lock taken on the
/// way, and its readers take none either.
pub struct Engine<S: StateMachine, V: Vfs = RealFs> {
    core: Arc<Core<S, V>>,
    /// The thread that takes automatic snapshots, if any trigger is set.
    snapshotter: Option<JoinHandle<()>>,
    /// The thread that folds records for a state that reads its recent
    /// records ([`StateMachine::READS_RECENT`]), woken by committers.
    folder: Option<JoinHandle<()>>,
}

/// `S::check` of every payload: a commit with one it refuses is refused
/// whole, before the log sees any.
fn check_all<S: StateMachine, P: AsRef<[u8]>>(payloads: &[P]) -> Result<()> {
    payloads.iter().try_for_each(|payload| S::check(payload.as_ref()))
}

/// Acknowledged records not yet applied at which a committer of a state
/// that reads them ([`StateMachine::READS_RECENT`]) wakes the fold thread
/// to fold them: enough that a fold's copies of the nodes it shares with
/// the last base are spread over many records, few enough that a reader
/// walks them quickly.
const FOLD_AT: u64 = 128;
/// ... and at which a committer folds them itself, if the folder is free
/// (the fold thread, woken at `FOLD_AT`, has not run: on a busy machine),
/// and a pipelined appender too (its commit may never be waited for).
const COMMITTER_FOLDS_AT: u64 = 4 * FOLD_AT;
/// The most records the fold thread (or a committer) folds at once, and
/// the share a fold starts with: a fold copies about a leaf per record on
/// a large tree of random keys, so a share is bounded by time
/// (`FOLD_TIME_NS`), and this bounds the first one and those of a cheap
/// record (a small tree, or keys that share leaves), which are cheaper
/// per record the more they take and, taken more at a time, fall on
/// fewer commits (a committer that folds a share pays for it).
const FOLD_MAX: u64 = 16 * 1024;
/// ... and the fewest, however long a record's fold takes ...
const FOLD_MIN: u64 = 256;
/// ... between which a fold takes as many records as fold in about this
/// long, at the rate of the last fold: on a large tree of random keys a
/// fold of fewer records is also cheaper per record (what it touches
/// stays in cache), on a small one a fold of more is (one publication).
const FOLD_TIME_NS: u64 = 1_000_000;
/// Waiting records at which a committer folds a share if the folder is
/// free (never waiting for a folder whose holder may have lost its CPU
/// among many writers) ...
const COMMITTER_HELPS_AT: u64 = 4 * 1024;
/// ... and at which it waits for the folder and folds: the bound on what
/// a reader walks and the chain holds while the folds run behind the
/// writers (a fold of random keys on a large tree copies a leaf per
/// record, slower than a put), and the writers' backpressure: each waits
/// at most for the fold in progress and one of its own.
const COMMITTER_WAITS_AT: u64 = 4 * COMMITTER_HELPS_AT;
/// How long the fold thread sleeps with nothing asked of it before it
/// folds what is left.
const FOLD_THREAD_IDLE: Duration = Duration::from_millis(50);

/// Everything the engine and its snapshot thread share.
pub(crate) struct Core<S: StateMachine, V: Vfs> {
    fs: V,
    wal: Wal<V>,
    snapshot_dir: PathBuf,
    options: EngineOptions,
    /// The base state readers add the acknowledged records after it to,
    /// loaded with no lock; stored by folds, under `folder`.
    published: ArcSwap<Base<S>>,
    /// Where records are applied, a batch at a time (`fold`).
    folder: Mutex<Folder<S>>,
    /// Held shared by every append from its reservation in the log until
    /// its records are linked in the log's chain (the same critical section
    /// of the log's), and exclusively by a commit builder (`commit_with`),
    /// which so sees every record before its own.
    /// Lock order: `gate`, `folder`, the log's own.
    gate: RwLock<()>,
    /// Set when a record could not be applied: nothing later can be.
    broken: OnceLock<Arc<Error>>,
    /// The fold thread (`walden-fold`, [`StateMachine::READS_RECENT`]
    /// states only), which committers wake (`wake_folder`).
    fold_thread: OnceLock<std::thread::Thread>,
    /// Set by the committer that wakes the fold thread, cleared by the
    /// thread as it starts a fold: one wake-up per fold, not per commit.
    fold_wanted: AtomicBool,
    /// Set when the engine closes: the fold thread stops.
    fold_stop: AtomicBool,
    /// The published base's LSN and the folder's payload bytes applied
    /// since open, as the last fold left them (stored under `folder`):
    /// what commits compare their triggers with, without loading the base
    /// or counting their bytes in a counter every commit writes.
    folded_lsn: AtomicU64,
    folded_bytes: AtomicU64,
    since: Mutex<Since>,
    /// The LSN and bytes at which a snapshot is due by count (`u64::MAX`
    /// if never): a commit below both takes no lock.
    due_lsn: AtomicU64,
    due_bytes: AtomicU64,
    /// Signalled when an automatic snapshot is due, or at shutdown.
    snapshot_due: Condvar,
    /// Held while a snapshot is written: one at a time.
    snapshotting: Mutex<()>,
    report: RecoveryReport,
}

impl<S: StateMachine> Engine<S, RealFs> {
    /// Opens (or creates) the engine in `dir`: the log in `dir/wal`, the
    /// snapshots in `dir/snapshots`.
    pub fn open(dir: impl AsRef<Path>, options: EngineOptions) -> Result<Self> {
        Engine::open_with(RealFs, dir, options)
    }
}

impl<S: StateMachine, V: Vfs> Engine<S, V> {
    /// [`Engine::open`] on another file system.
    pub fn open_with(fs: V, dir: impl AsRef<Path>, options: EngineOptions) -> Result<Self> {
        let core = Arc::new(Core::open(fs, dir.as_ref(), options)?);
        // Built first, so that its `Drop` stops whichever thread started.
        let mut engine = Engine { core: core.clone(), snapshotter: None, folder: None };
        if S::READS_RECENT {
            let worker = core.clone();
            let handle = std::thread::Builder::new()
                .name("walden-fold".into())
                .spawn(move || worker.fold_when_asked())
                .map_err(Error::io("spawn the fold thread", dir.as_ref()))?;
            let _ = core.fold_thread.set(handle.thread().clone());
            engine.folder = Some(handle);
        }
        let s = &core.options.snapshots;
        if s.every_commits.is_some() || s.every_bytes.is_some() || s.every.is_some() {
            let worker = core.clone();
            let handle = std::thread::Builder::new()
                .name("walden-snap".into())
                .spawn(move || worker.take_snapshots_when_due())
                .map_err(Error::io("spawn the snapshot thread", dir.as_ref()))?;
            engine.snapshotter = Some(handle);
        }
        Ok(engine)
    }

    /// Checks `payload`, appends it to the log, and returns its LSN once
    /// the log's fsync mode acknowledges it and it is applied to the state.
    /// Never waits for a snapshot: those are taken by a thread of their own.
    pub fn commit(&self, payload: &[u8]) -> Result<Lsn> {
        self.core.commit_blocking(std::slice::from_ref(&payload))
    }

    /// Commits the payloads as one atomic log batch: all are applied (and
    /// come back after a crash), or none. Returns the LSN of the last.
    pub fn commit_batch<P: AsRef<[u8]>>(&self, payloads: &[P]) -> Result<Lsn> {
        self.core.commit_blocking(payloads)
    }

    /// [`Engine::commit`] without waiting: returns once the record has its
    /// LSN. The ticket's [`wait`](CommitTicket::wait) (or `.await`) returns
    /// once the record is acknowledged and applied; until then readers do
    /// not see it. Keeps many commits in flight from one thread or task.
    pub fn commit_pipelined(&self, payload: &[u8]) -> Result<CommitTicket<S, V>> {
        self.core.stage(std::slice::from_ref(&payload))
    }

    /// [`Engine::commit_batch`] without waiting, as [`Engine::commit_pipelined`].
    pub fn commit_batch_pipelined<P: AsRef<[u8]>>(&self, payloads: &[P]) -> Result<CommitTicket<S, V>> {
        self.core.stage(payloads)
    }

    /// The first half of [`Engine::commit_batch`]: the payloads checked,
    /// given their LSNs and linked into the log's chain, nothing written
    /// yet. A caller that numbers its records (the journal) begins each
    /// commit under its own lock, so its numbers and LSNs are in one
    /// order, and finishes it ([`Begun::finish`]) after releasing it.
    pub(crate) fn begin_commit_batch<P: AsRef<[u8]>>(&self, payloads: &[P]) -> Result<Begun<'_, S, V>> {
        self.core.begin_blocking(payloads)
    }

    /// A record checked ([`StateMachine::check`]) and copied into the node
    /// the log will link, before any lock: [`Prepared::payload_mut`] may
    /// still patch it, then [`Engine::begin_prepared`] begins its commit.
    pub(crate) fn prepare(&self, payload: &[u8]) -> Result<Prepared<S>> {
        S::check(payload)?;
        Ok(Prepared { node: Chained::new(std::slice::from_ref(&payload)), state: std::marker::PhantomData })
    }

    /// [`Engine::prepare`] of a record of `len` bytes that `encode` writes
    /// straight into the node (zeroed before), then checked: the store
    /// encodes its puts and deletes so, with no copy of the record.
    pub(crate) fn prepare_with(&self, len: usize, encode: impl FnOnce(&mut [u8])) -> Result<Prepared<S>> {
        let node = Chained::with_payload(len, encode);
        S::check(node.payload().expect("a node of one record"))?;
        Ok(Prepared { node, state: std::marker::PhantomData })
    }

    /// [`Engine::begin_commit_batch`] of a prepared record: no check and
    /// no copy left to do, so a caller that begins it under a lock of its
    /// own holds that lock for the log's critical section and little else.
    pub(crate) fn begin_prepared(&self, prepared: Prepared<S>) -> Result<Begun<'_, S, V>> {
        let node = prepared.node;
        let payload = node.payload().expect("a prepared node holds one record");
        debug_assert!(S::check(payload).is_ok(), "a patch keeps a prepared record valid");
        let core = &self.core;
        core.check_open()?;
        let payloads = std::slice::from_ref(&payload);
        let _gate = core.gate.read();
        Ok(match core.wal.reserve(payloads, &node)? {
            Some(reserved) => Begun::Reserved { core, reserved },
            None => Begun::Staged(core.append_chained(payloads, &node)?),
        })
    }

    /// [`Engine::begin_commit_batch_pipelined`] of a prepared record.
    pub(crate) fn begin_prepared_pipelined(&self, prepared: Prepared<S>) -> Result<Staged<S, V>> {
        let node = prepared.node;
        let payload = node.payload().expect("a prepared node holds one record");
        debug_assert!(S::check(payload).is_ok(), "a patch keeps a prepared record valid");
        self.core.check_open()?;
        let _gate = self.core.gate.read();
        Ok(Staged(self.core.append_chained(std::slice::from_ref(&payload), &node)?))
    }

    /// Reads the base state the last fold published, with no lock and no
    /// fold: acknowledged records after it are not in it (see
    /// [`Engine::read_recent`]), nor are records not yet acknowledged.
    pub(crate) fn read_base<R>(&self, f: impl FnOnce(&S) -> R) -> R {
        f(&self.core.published.load().machine)
    }

    /// Builds records from the state and commits them as one batch. `build`
    /// sees the visible state plus the records committed ahead of it but
    /// not yet applied ([`Pending`]), and nothing can be committed between
    /// what it saw and its own records: a journal numbers its entries this
    /// way. Returns the LSN of the last record and what `build` returned,
    /// once they are acknowledged and applied.
    pub fn commit_with<T>(&self, build: impl FnOnce(&S, &Pending, &mut Vec<Vec<u8>>) -> Result<T>) -> Result<(Lsn, T)> {
        let (ticket, out) = self.commit_with_pipelined(build)?;
        Ok((ticket.wait()?, out))
    }

    /// [`Engine::commit_with`] without waiting.
    pub fn commit_with_pipelined<T>(
        &self,
        build: impl FnOnce(&S, &Pending, &mut Vec<Vec<u8>>) -> Result<T>,
    ) -> Result<(CommitTicket<S, V>, T)> {
        self.core.stage_built(build)
    }

    /// Reads the log from `from` (or its oldest record, if older) up to the
    /// last record applied to the state now: what readers of the state can
    /// see, never further. Read-only: nothing is appended this way.
    pub fn read_log(&self, from: Lsn) -> Result<crate::WalReader<V>> {
        Ok(self.core.wal.read_between(from, self.applied_lsn()))
    }

    /// Reads the log from a position an earlier reader reported, up to the
    /// last record applied, as [`Engine::read_log`] does.
    pub fn read_log_at(&self, at: crate::wal::ReadPosition) -> Result<crate::WalReader<V>> {
        Ok(self.core.wal.read_position_between(at, self.applied_lsn()))
    }

    /// Reads the state: every acknowledged commit, in LSN order, and
    /// nothing else. Takes no lock a writer holds across work, unless
    /// acknowledged records wait to be applied (in a state that reads them
    /// itself, [`StateMachine::READS_RECENT`], they often do): then the
    /// reader applies them first, or waits for the thread that is.
    pub fn read<R>(&self, f: impl FnOnce(&S) -> R) -> R {
        let base = self.core.published.load();
        if base.lsn >= self.core.wal.acknowledged_lsn() {
            return f(&base.machine);
        }
        drop(base);
        self.core.fold(&mut self.core.folder.lock());
        f(&self.core.published.load().machine)
    }

    /// Reads the state as it is, with no lock a writer can hold: the base
    /// state the last fold published and the acknowledged records after
    /// it, in LSN order, which a state that sets
    /// [`StateMachine::READS_RECENT`] reads through (a reader sees every
    /// acknowledged commit, and no other, only by adding them). Never
    /// waits and never folds: the committers fold (and past
    /// `COMMITTER_WAITS_AT` wait for the folds), so a reader walks at most
    /// about that many records, and pays for no writer's fold.
    pub fn read_recent<R>(&self, f: impl FnOnce(&S, &Recent<'_>) -> R) -> R {
        // The base first: the acknowledged LSN read after it is at or past it.
        let base = self.core.published.load();
        let acknowledged = self.core.wal.acknowledged_lsn();
        f(&base.machine, &Recent::new(&base.anchor, base.lsn, acknowledged))
    }

    /// Follows the log from `from`: every acknowledged record, in order,
    /// history first, then live ([`crate::Wal::follow`]). Read-only: the
    /// records are the state machine's, decoded by the caller.
    pub fn follow(&self, from: Lsn) -> Result<crate::wal::Follower<V>> {
        self.core.wal.follow(from)
    }

    /// [`Engine::follow`] with a retention hold
    /// ([`crate::wal::Follower::retain`]): the log's segments it has still to
    /// read, at most `keep_bytes` of them, outlive the truncations that
    /// follow snapshots while it lives.
    pub fn follow_retained(&self, from: Lsn, keep_bytes: u64) -> Result<crate::wal::Follower<V>> {
        self.core.wal.follow_retained(from, keep_bytes)
    }

    /// The LSN of the last record a reader of the state can see.
    pub fn applied_lsn(&self) -> Lsn {
        self.core.visible_lsn()
    }

    /// Takes a snapshot now; returns it once it is durable.
    pub fn snapshot_now(&self) -> Result<SnapshotInfo> {
        let _guard = self.core.snapshotting.lock();
        self.core.snapshot_locked()
    }

    /// Runs `f` on the engine's file system, log and snapshot directory
    /// with no snapshot written or pruned and no segment removed meanwhile
    /// (the snapshot lock held): how a backup opens the files it copies.
    pub(crate) fn with_files_still<T>(&self, f: impl FnOnce(&V, &Wal<V>, &Path) -> Result<T>) -> Result<T> {
        let core = &self.core;
        let _guard = core.snapshotting.lock();
        f(&core.fs, &core.wal, &core.snapshot_dir)
    }

    /// The engine's data directory (the parent of `wal/` and `snapshots/`).
    pub(crate) fn data_dir(&self) -> &Path {
        self.core.snapshot_dir.parent().unwrap_or(&self.core.snapshot_dir)
    }

    /// Snapshots that are on disk now, oldest first.
    pub fn list_snapshots(&self) -> Result<Vec<SnapshotInfo>> {
        Ok(snapshot::list_snapshots(&self.core.fs, &self.core.snapshot_dir)?.snapshots)
    }

    /// What opening this engine found and did.
    pub fn recovery_report(&self) -> &RecoveryReport {
        &self.core.report
    }

    /// Counters of the log underneath. (The log itself is not handed out:
    /// an append that bypassed the state machine would break replay.)
    pub fn wal_stats(&self) -> crate::WalStats {
        self.core.wal.stats()
    }

    /// The oldest LSN the log still holds.
    pub fn log_first_lsn(&self) -> Lsn {
        self.core.wal.first_lsn()
    }

    /// The state as of `lsn`: the newest kept snapshot at or before it,
    /// plus the log up to it. Read-only: the live state and the files are
    /// not touched.
    pub fn view_at(&self, lsn: Lsn) -> Result<S> {
        if lsn > self.applied_lsn() {
            return Err(Error::InvalidArgument(format!("LSN {lsn} is past the last applied ({})", self.applied_lsn())));
        }
        let (state, from) = self.core.view_base(|info| info.header.lsn <= lsn)?;
        let reader = self.core.view_reader(from);
        Ok(replay::replay(&self.core.snapshot_dir, reader, state, from, |record, _| record <= lsn)?.machine)
    }

    /// A view built from the newest snapshot for which `use_snapshot` holds,
    /// plus the records after it for as long as `include` holds. Returns the
    /// state and the LSN it ends at. For views by other keys than the LSN,
    /// such as the store's view by time.
    pub fn view_until(
        &self,
        use_snapshot: impl Fn(&SnapshotInfo) -> bool,
        include: impl FnMut(Lsn, &[u8]) -> bool,
    ) -> Result<(S, Lsn)> {
        let (state, from) = self.core.view_base(use_snapshot)?;
        let replayed = replay::replay_here(self.core.view_reader(from), state, from, include)?;
        Ok((replayed.machine, replayed.lsn))
    }

    fn stop_folder(&mut self) {
        if let Some(handle) = self.folder.take() {
            self.core.fold_stop.store(true, Ordering::Release);
            handle.thread().unpark();
            if handle.join().is_err() {
                log::error!("walden: the fold thread panicked");
            }
        }
    }

    fn stop_snapshotter(&mut self) {
        if let Some(handle) = self.snapshotter.take() {
            self.core.since.lock().stop = true;
            self.core.snapshot_due.notify_all();
            if handle.join().is_err() {
                log::error!("walden: the snapshot thread panicked");
            }
        }
    }

    /// Syncs the log (taking a final snapshot first if configured) and closes.
    pub fn close(mut self) -> Result<()> {
        self.stop_snapshotter();
        self.stop_folder();
        if self.core.options.snapshots.on_close {
            self.snapshot_now()?;
        }
        self.core.wal.sync()?;
        Ok(())
    }
}

/// The state in the snapshot `info`, its checksum checked first or, if
/// the state reads any bytes safely, on the way.
fn read_state<S: StateMachine, V: Vfs>(fs: &V, info: &SnapshotInfo) -> Result<S> {
    match S::READS_ANY_BYTES {
        true => snapshot::read_snapshot_checking_on_the_way(fs, info, |r| S::read_snapshot(r)),
        false => snapshot::read_snapshot(fs, info, |r| S::read_snapshot(r)),
    }
}

impl<S: StateMachine, V: Vfs> Drop for Engine<S, V> {
    fn drop(&mut self) {
        self.stop_snapshotter();
        self.stop_folder();
    }
}

impl<S: StateMachine, V: Vfs> Core<S, V> {
    fn open(fs: V, dir: &Path, options: EngineOptions) -> Result<Self> {
        let started = Instant::now();
        let snapshot_dir = dir.join("snapshots");
        // The log's lock first: a second process refused here must not
        // touch the holder's files (such as its snapshot being written).
        let wal_dir = dir.join("wal");
        options.wal.validate()?;
        let lock = crate::wal::lock_log_dir(&fs, &wal_dir)?;
        fs.create_dir_all(&snapshot_dir).map_err(Error::io("create directory", &snapshot_dir))?;
        let mut report = RecoveryReport::default();
        for temp in snapshot::temporary_files(&fs, &snapshot_dir)? {
            // An incomplete snapshot of ours, never a complete one: the
            // final name is given only to synced, whole files.
            fs.remove_file(&temp).map_err(Error::io("remove", &temp))?;
            report.temporary_files_removed += 1;
        }
        let wal = Wal::open_locked(fs.clone(), wal_dir, options.wal.clone(), lock)?;
        report.bytes_cut = wal.recovery_report().bytes_cut();

        let listing = snapshot::list_snapshots(&fs, &snapshot_dir)?;
        let snapshots = &listing.snapshots;
        let (machine, lsn) = Self::load_snapshot(&fs, &snapshot_dir, &wal, snapshots, listing.unreadable, &mut report)?;
        Self::enforce_retention(&fs, &snapshot_dir, options.snapshots.keep_count, snapshots, &report)?;
        log::info!("walden: replaying the log from LSN {}", lsn.next());
        let replayed = replay::replay(dir, wal.read_from(lsn.next())?, machine, lsn, |_, _| true)?;
        report.records_replayed += replayed.records;
        report.bytes_read += replayed.bytes;
        let anchor = wal.start_chain();
        let folder =
            Folder { machine: replayed.machine, lsn: replayed.lsn, bytes: 0, anchor, failed: false, share: FOLD_MIN };
        report.duration = started.elapsed();
        log::info!(
            "walden: recovery complete at LSN {} ({} records replayed, {} snapshots skipped) in {:?}",
            folder.lsn,
            report.records_replayed,
            report.snapshots_skipped.len(),
            report.duration
        );
        let applied_lsn = folder.lsn;
        let due_lsn = threshold(report.snapshot_lsn.0, options.snapshots.every_commits);
        let due_bytes = threshold(0, options.snapshots.every_bytes);
        let base = Base { machine: folder.machine.clone(), lsn: applied_lsn, anchor: folder.anchor.clone() };
        Ok(Core {
            fs,
            wal,
            snapshot_dir,
            options,
            published: ArcSwap::from_pointee(base),
            folder: Mutex::new(folder),
            gate: RwLock::new(()),
            broken: OnceLock::new(),
            fold_thread: OnceLock::new(),
            fold_wanted: AtomicBool::new(false),
            fold_stop: AtomicBool::new(false),
            folded_lsn: AtomicU64::new(applied_lsn.0),
            folded_bytes: AtomicU64::new(0),
            since: Mutex::new(Since {
                snapshot_lsn: report.snapshot_lsn,
                snapshot_bytes: 0,
                at: Instant::now(),
                stop: false,
            }),
            due_lsn: AtomicU64::new(due_lsn),
            due_bytes: AtomicU64::new(due_bytes),
            snapshot_due: Condvar::new(),
            snapshotting: Mutex::new(()),
            report,
        })
    }

    /// Retention after a crash. A process killed between writing a
    /// snapshot and pruning leaves one too many, and several such kills in
    /// a row leave more (found by the 2,000-cycle kill -9 run), so open
    /// prunes to `keep_count` too. Only when recovery loaded the newest
    /// snapshot and skipped none: an older snapshot is never removed while
    /// a newer one failed, since it may be the fallback that is needed.
    /// `snapshots` is the listing recovery chose from: with none skipped,
    /// none was moved aside, so it is still what is on disk.
    fn enforce_retention(
        fs: &V,
        dir: &Path,
        keep_count: usize,
        snapshots: &[SnapshotInfo],
        report: &RecoveryReport,
    ) -> Result<()> {
        // Unreadable snapshot files count as skipped too.
        if report.snapshot_used.is_none() || !report.snapshots_skipped.is_empty() {
            return Ok(());
        }
        for path in snapshot::prune_snapshots(fs, dir, snapshots, keep_count)? {
            log::info!("walden: removed {} at open: over the keep count of {keep_count}", path.display());
        }
        Ok(())
    }

    /// The newest snapshot that verifies and that the log can continue from.
    fn load_snapshot(
        fs: &V,
        dir: &Path,
        wal: &Wal<V>,
        snapshots: &[SnapshotInfo],
        unreadable: Vec<(PathBuf, Error)>,
        report: &mut RecoveryReport,
    ) -> Result<(S, Lsn)> {
        // A snapshot that could not be read for an I/O error is skipped like
        // a damaged one (an older one plus the log gives the same state), but
        // if nothing else can rebuild the state, that error is the answer.
        let mut io_error = None;
        for (path, e) in unreadable {
            report.snapshots_skipped.push((path, e.to_string()));
            if matches!(e, Error::Io { .. }) {
                io_error.get_or_insert(e);
            }
        }
        let log_first = wal.first_lsn();
        let log_last = wal.last_lsn().unwrap_or(Lsn(log_first.0 - 1));
        for info in snapshots.iter().rev() {
            let lsn = info.header.lsn;
            let origin = match snapshot::check_name(info) {
                Some(why) => OriginCheck::Refused(why),
                None if lsn > log_last || lsn.next() < log_first => OriginCheck::Continues, // judged below
                None => origin_check(wal, info)?,
            };
            let unusable = if let OriginCheck::Refused(why) = &origin {
                // Not a state of this log: another store's, another
                // history's, or under a name that places it wrongly. Moved
                // aside (never deleted), so that retention never counts,
                // keeps or removes it.
                let aside = move_aside(fs, dir, info)?;
                Some(format!("{why}; moved to {}", aside.display()))
            } else if lsn > log_last {
                // The log lost records the snapshot proves were durable (it
                // was cut or rotted). New records will reuse those LSNs, so
                // the snapshot is moved aside (never deleted) before it can
                // pass for a state of the new history.
                let aside = move_aside(fs, dir, info)?;
                Some(format!("it covers LSN {lsn} but the log ends at {log_last}; moved to {}", aside.display()))
            } else if lsn.next() < log_first {
                Some(format!("the log no longer holds LSN {} (it starts at {log_first})", lsn.next()))
            } else {
                None
            };
            if let Some(reason) = unusable {
                log::warn!("walden: skipping snapshot {}: {reason}", info.path.display());
                report.snapshots_skipped.push((info.path.clone(), reason));
                continue;
            }
            log::info!("walden: loading snapshot {}", info.path.display());
            match read_state::<S, V>(fs, info) {
                Ok(machine) => {
                    if let OriginCheck::Unchecked(why) = origin {
                        log::warn!(
                            "walden: snapshot {} is not fully checked against the log: {why}",
                            info.path.display()
                        );
                        report.snapshot_unchecked = Some(why);
                    }
                    report.snapshot_used = Some(info.path.clone());
                    report.snapshot_lsn = lsn;
                    report.bytes_read += info.file_bytes;
                    return Ok((machine, lsn));
                }
                Err(e) => {
                    log::warn!("walden: skipping snapshot {}: {e}", info.path.display());
                    report.snapshots_skipped.push((info.path.clone(), e.to_string()));
                    if matches!(e, Error::Io { .. }) {
                        io_error.get_or_insert(e);
                    }
                }
            }
        }
        if log_first > Lsn::FIRST {
            if let Some(e) = io_error {
                return Err(e);
            }
            return Err(Error::InvalidArgument(format!(
                "no usable snapshot, and the log starts at LSN {log_first}: the state before it is gone"
            )));
        }
        Ok((S::empty(), Lsn::ZERO))
    }

    /// A blocking commit. In `Periodic` and `Never` the committer writes
    /// its own records (the log's direct path: reserved, and linked into
    /// the log's chain, under the log's lock; written with no lock held),
    /// with no staging and no write leader; in `Always`, or when records
    /// are staged ahead, it is a pipelined commit waited on. Once the log
    /// acknowledges it, the commit is visible (`publish`).
    fn commit_blocking<P: AsRef<[u8]>>(self: &Arc<Self>, payloads: &[P]) -> Result<Lsn> {
        self.begin_blocking(payloads)?.finish()
    }

    /// The first half of a blocking commit: checked, given its LSNs and
    /// linked into the log's chain (reserved on the direct path, else
    /// staged). Nothing is written or waited for yet; [`Begun::finish`]
    /// does that, and must be called (a reserved range the log waits for).
    fn begin_blocking<P: AsRef<[u8]>>(self: &Arc<Self>, payloads: &[P]) -> Result<Begun<'_, S, V>> {
        check_all::<S, P>(payloads)?;
        self.check_open()?;
        // Copied before any lock; the log links it into its chain.
        let node = Chained::new(payloads);
        let _gate = self.gate.read();
        Ok(match self.wal.reserve(payloads, &node)? {
            Some(reserved) => Begun::Reserved { core: self, reserved },
            None => Begun::Staged(self.append_chained(payloads, &node)?),
        })
    }

    fn check_open(&self) -> Result<()> {
        match self.broken.get() {
            Some(e) => Err(Error::Poisoned(e.clone())),
            None => Ok(()),
        }
    }

    /// Checks `payloads` and appends them as one batch, pipelined.
    fn stage<P: AsRef<[u8]>>(self: &Arc<Self>, payloads: &[P]) -> Result<CommitTicket<S, V>> {
        check_all::<S, P>(payloads)?;
        self.check_open()?;
        let node = Chained::new(payloads);
        let ticket = {
            let _gate = self.gate.read();
            self.append_chained(payloads, &node)?
        };
        self.after_pipelined_append();
        Ok(ticket)
    }

    /// Appends checked `payloads` as one batch, `node` linked into the
    /// log's chain. The caller holds `gate`.
    fn append_chained<P: AsRef<[u8]>>(
        self: &Arc<Self>,
        payloads: &[P],
        node: &Arc<Chained>,
    ) -> Result<CommitTicket<S, V>> {
        let ticket = self.wal.append_chained(payloads, node)?;
        Ok(CommitTicket { core: self.clone(), ticket })
    }

    /// What a pipelined append does once its records are in the log (its
    /// locks, `gate` included, released): commits whose tickets are
    /// dropped never fold, so whoever appends does, once many records
    /// wait (the chain holds them till then).
    fn after_pipelined_append(&self) {
        if S::READS_RECENT {
            self.fold_if_behind(self.wal.acknowledged_lsn(), COMMITTER_FOLDS_AT);
        }
    }

    /// Runs `build` on the state with every acknowledged record applied,
    /// plus the records appended after them ([`Pending`]), with every other
    /// append kept out (`gate`), then checks and appends what it built: so
    /// nothing is committed between what `build` saw and its records.
    fn stage_built<T>(
        self: &Arc<Self>,
        build: impl FnOnce(&S, &Pending, &mut Vec<Vec<u8>>) -> Result<T>,
    ) -> Result<(CommitTicket<S, V>, T)> {
        let _gate = self.gate.write();
        let mut folder = self.folder.lock();
        self.check_open()?;
        self.fold(&mut folder);
        self.check_open()?;
        let pending = Pending::after(&folder.anchor, folder.lsn);
        let mut records = Vec::new();
        let out = build(&folder.machine, &pending, &mut records)?;
        if records.is_empty() {
            return Err(Error::InvalidArgument("nothing to commit".into()));
        }
        check_all::<S, Vec<u8>>(&records)?;
        let node = Chained::new(&records);
        let ticket = self.append_chained(&records, &node)?;
        drop((folder, _gate));
        self.after_pipelined_append();
        Ok((ticket, out))
    }

    /// The newest LSN a reader can see: the log's acknowledged LSN for a
    /// state that reads its recent records, else the published base's.
    fn visible_lsn(&self) -> Lsn {
        match S::READS_RECENT {
            true => self.wal.acknowledged_lsn(),
            false => self.published.load().lsn,
        }
    }

    /// Makes the commit ending at `lsn` (which the log acknowledged) of
    /// `bytes` payload bytes visible. A state that reads its recent records
    /// sees it already; it folds them only when enough wait and the folder
    /// is free. Any other state has them applied before this returns (an
    /// apply error is then this committer's).
    fn publish(&self, lsn: Lsn) -> Result<()> {
        if S::READS_RECENT {
            let behind = self.unfolded(lsn);
            // A commit that brings `COMMITTER_FOLDS_AT` records on its own
            // (a large batch) wakes the fold thread like any other; only a
            // committer that finds it asked already and not yet started
            // (stalled) folds here, if the folder is free. Past
            // `COMMITTER_WAITS_AT` the fold thread is slower than the
            // writers: a committer waits for the folder and folds a share.
            if behind >= COMMITTER_WAITS_AT {
                self.fold_share(&mut self.folder.lock());
            } else if behind >= COMMITTER_HELPS_AT {
                self.try_fold_share();
            } else if behind >= FOLD_AT && !self.wake_folder() && behind >= COMMITTER_FOLDS_AT {
                self.fold_if_behind(lsn, COMMITTER_FOLDS_AT);
            }
        } else if self.published.load().lsn < lsn {
            self.fold(&mut self.folder.lock());
        }
        if self.visible_lsn() < lsn {
            let e = self.broken.get().cloned();
            debug_assert!(e.is_some(), "an acknowledged record is visible unless the engine is broken");
            let e = e.unwrap_or_else(|| Arc::new(Error::InvalidArgument(format!("LSN {lsn} was not applied"))));
            return Err(Error::Poisoned(e));
        }
        self.committed(lsn);
        Ok(())
    }

    /// Wakes the fold thread, unless a committer already did since its
    /// last fold began; returns whether this call woke it.
    fn wake_folder(&self) -> bool {
        if !self.fold_wanted.load(Ordering::Relaxed) && !self.fold_wanted.swap(true, Ordering::AcqRel) {
            if let Some(thread) = self.fold_thread.get() {
                thread.unpark();
            }
            return true;
        }
        false
    }

    /// The fold thread: folds whenever a committer wakes it, and, when
    /// nothing wakes it for a while, folds what is left (so an idle
    /// engine's chain is let go), until the engine closes.
    fn fold_when_asked(&self) {
        while !self.fold_stop.load(Ordering::Acquire) {
            let behind = self.unfolded(self.wal.acknowledged_lsn());
            if self.fold_wanted.swap(false, Ordering::AcqRel) || behind >= FOLD_AT {
                self.fold_share(&mut self.folder.lock());
                continue;
            }
            std::thread::park_timeout(FOLD_THREAD_IDLE);
            if !self.fold_wanted.load(Ordering::Acquire) {
                self.fold_if_behind(self.wal.acknowledged_lsn(), 1);
            }
        }
    }

    /// Records up to `upto` that the published base does not hold yet.
    fn unfolded(&self, upto: Lsn) -> u64 {
        upto.0.saturating_sub(self.folded_lsn.load(Ordering::Acquire))
    }

    /// Folds a share if `upto` is `behind` records or more past the
    /// published base and the folder is free: a caller that finds it held
    /// does not wait, and one that folds pays for a share, not for however
    /// many records wait.
    fn fold_if_behind(&self, upto: Lsn, behind: u64) {
        if self.unfolded(upto) >= behind {
            self.try_fold_share();
        }
    }

    /// Folds a share if the folder is free.
    fn try_fold_share(&self) {
        if let Some(mut folder) = self.folder.try_lock() {
            self.fold_share(&mut folder);
        }
    }

    /// Applies every acknowledged record not yet applied to the folder's
    /// state, in LSN order, walking the log's chain, and publishes a clone
    /// of the state as the new base. Stops at a record that cannot be
    /// applied: the engine is then broken.
    fn fold(&self, folder: &mut Folder<S>) {
        self.fold_at_most(folder, u64::MAX);
    }

    /// [`Core::fold_at_most`] of a share: at most `folder.share` records,
    /// a count set after each such fold from how long it took a record
    /// (`FOLD_TIME_NS` a share, between `FOLD_MIN` and `FOLD_MAX`).
    fn fold_share(&self, folder: &mut Folder<S>) {
        let (before, started) = (folder.lsn, Instant::now());
        self.fold_at_most(folder, folder.share);
        let folded = folder.lsn.0 - before.0;
        if folded >= FOLD_MIN {
            // At most twice the last share: one fold of records that were
            // cheap (in cache) must not size the next at many times its
            // time on a large tree.
            let per_record = (started.elapsed().as_nanos() as u64 / folded).max(1);
            let most = (2 * folder.share).min(FOLD_MAX);
            folder.share = (FOLD_TIME_NS / per_record).clamp(FOLD_MIN, most);
        }
    }

    /// [`Core::fold`] of at most `max` records (a state that reads its
    /// recent records only: readers see the rest through the chain).
    fn fold_at_most(&self, folder: &mut Folder<S>, max: u64) {
        let mut upto = self.wal.acknowledged_lsn();
        if folder.failed || upto <= folder.lsn {
            return;
        }
        if S::READS_RECENT {
            upto = upto.min(Lsn(folder.lsn.0.saturating_add(max)));
        }
        let anchor = folder.anchor.clone();
        let failure = if S::READS_RECENT {
            // Its apply cannot fail for a checked record, so the records go
            // as one batch (the store merges them into its tree in key
            // order, each leaf rewritten once).
            let mut records: Vec<(Lsn, &[u8])> = Vec::with_capacity((upto.0 - folder.lsn.0) as usize);
            records.extend(anchor.walk(folder.lsn.next(), upto));
            debug_assert!(records.iter().zip(folder.lsn.0 + 1..).all(|(r, lsn)| r.0 .0 == lsn), "gap-free");
            match folder.machine.apply_batch(&records) {
                Ok(()) => {
                    folder.lsn = records.last().map_or(folder.lsn, |r| r.0);
                    folder.bytes += records.iter().map(|r| r.1.len() as u64).sum::<u64>();
                    None
                }
                Err(e) => Some(Error::Apply { lsn: records[0].0, reason: e.to_string() }),
            }
        } else {
            let mut failure = None;
            for (lsn, payload) in anchor.walk(folder.lsn.next(), upto) {
                debug_assert_eq!(lsn, folder.lsn.next(), "records are applied in LSN order");
                if let Err(e) = folder.machine.apply(lsn, payload) {
                    failure = Some(Error::Apply { lsn, reason: e.to_string() });
                    break;
                }
                folder.lsn = lsn;
                folder.bytes += payload.len() as u64;
            }
            failure
        };
        if let Some(e) = failure {
            // The log holds a record the state cannot take: no commit after
            // it can be applied either. Readers keep the state before it (a
            // batch that failed is not applied at all); reopening reports it
            // (the log is intact).
            folder.failed = true;
            log::error!("walden: {e}; the engine takes no more commits");
            let _ = self.broken.set(Arc::new(e));
        }
        debug_assert!(folder.failed || folder.lsn == upto, "every acknowledged record is in the chain");
        folder.anchor = anchor.seek(folder.lsn.next());
        let base = Base { machine: folder.machine.clone(), lsn: folder.lsn, anchor: folder.anchor.clone() };
        self.published.store(Arc::new(base));
        self.folded_lsn.store(folder.lsn.0, Ordering::Release);
        self.folded_bytes.store(folder.bytes, Ordering::Relaxed);
        if folder.bytes >= self.due_bytes.load(Ordering::Relaxed) {
            // A snapshot is due by bytes, which commits count no more: a
            // fold with no commit after it (the fold thread's when idle)
            // must wake the snapshot thread too. Lock order: `folder`,
            // `since` (nothing takes `folder` under `since`).
            let _since = self.since.lock();
            self.snapshot_due.notify_one();
        }
    }

    /// The log after `from` for a view: no further than the visible state,
    /// so a view never shows what a reader of the live state could not.
    fn view_reader(&self, from: Lsn) -> crate::WalReader<V> {
        self.wal.read_between(from.next(), self.visible_lsn())
    }

    /// Where a view starts: the newest kept snapshot for which
    /// `use_snapshot` holds and the log can continue from, and its LSN (or
    /// the empty state, if the log starts at LSN 1).
    fn view_base(&self, use_snapshot: impl Fn(&SnapshotInfo) -> bool) -> Result<(S, Lsn)> {
        let listing = snapshot::list_snapshots(&self.fs, &self.snapshot_dir)?;
        let log_first = self.wal.first_lsn();
        let mut base = None;
        for info in listing.snapshots.iter().rev().filter(|i| use_snapshot(i)) {
            if info.header.lsn.next() < log_first {
                break; // older ones are further from the log still
            }
            if snapshot::check_name(info).is_some() || matches!(origin_check(&self.wal, info)?, OriginCheck::Refused(_))
            {
                continue; // not a state of this log (open moves such files aside)
            }
            if let Ok(state) = read_state::<S, V>(&self.fs, info) {
                base = Some((state, info.header.lsn));
                break;
            }
        }
        match base {
            Some(base) => Ok(base),
            None if log_first == Lsn::FIRST => Ok((S::empty(), Lsn::ZERO)),
            None => Err(Error::InvalidArgument(format!(
                "no kept snapshot fits, and the log before LSN {log_first} is gone"
            ))),
        }
    }

    /// Notes a commit ending at `lsn`; wakes the snapshot thread if a
    /// snapshot is due. Takes no lock unless a snapshot is due by count or
    /// bytes (a due time is the snapshot thread's to notice: it waits with
    /// a timeout), and writes no shared counter: the count of commits is
    /// the log's acknowledged LSN, which every commit passed, and the
    /// bytes are counted by the folds (`folded_bytes`), a store per fold.
    fn committed(&self, lsn: Lsn) {
        let bytes = self.folded_bytes.load(Ordering::Relaxed);
        if lsn.0 >= self.due_lsn.load(Ordering::Relaxed) || bytes >= self.due_bytes.load(Ordering::Relaxed) {
            // Under the lock: the snapshot thread checks and waits under it.
            let _since = self.since.lock();
            self.snapshot_due.notify_one();
        }
    }

    fn due(&self, since: &Since) -> bool {
        let s = &self.options.snapshots;
        let commits = self.wal.acknowledged_lsn().0.saturating_sub(since.snapshot_lsn.0);
        let bytes = self.folded_bytes.load(Ordering::Relaxed).saturating_sub(since.snapshot_bytes);
        s.every_commits.is_some_and(|n| commits >= n)
            || s.every_bytes.is_some_and(|n| bytes >= n)
            || s.every.is_some_and(|t| commits > 0 && since.at.elapsed() >= t)
    }

    /// The snapshot thread: waits until a trigger fires, takes a snapshot,
    /// and goes back to waiting, until the engine closes.
    fn take_snapshots_when_due(self: Arc<Self>) {
        loop {
            {
                let mut since = self.since.lock();
                loop {
                    if since.stop {
                        return;
                    }
                    if self.due(&since) {
                        break;
                    }
                    let until_time_trigger = self.options.snapshots.every.map(|t| t.saturating_sub(since.at.elapsed()));
                    let wait = until_time_trigger.unwrap_or(Duration::from_secs(3600)).max(Duration::from_millis(1));
                    self.snapshot_due.wait_for(&mut since, wait);
                }
            }
            let _guard = self.snapshotting.lock();
            if let Err(e) = self.snapshot_locked() {
                log::error!("walden: automatic snapshot failed: {e}");
            }
        }
    }

    fn snapshot_locked(&self) -> Result<SnapshotInfo> {
        let (frozen, lsn, bytes) = {
            let mut folder = self.folder.lock();
            self.fold(&mut folder);
            (folder.machine.freeze(), folder.lsn, folder.bytes)
        };
        {
            let mut since = self.since.lock();
            since.snapshot_lsn = since.snapshot_lsn.max(lsn);
            since.snapshot_bytes = since.snapshot_bytes.max(bytes);
            since.at = Instant::now();
            let s = &self.options.snapshots;
            self.due_lsn.store(threshold(since.snapshot_lsn.0, s.every_commits), Ordering::Relaxed);
            self.due_bytes.store(threshold(since.snapshot_bytes, s.every_bytes), Ordering::Relaxed);
        }
        // The log first: a snapshot must never cover records it could lose.
        self.wal.sync()?;
        let origin = SnapshotOrigin { log_id: self.wal.log_id(), seal: self.wal.record_seal(lsn)? };
        log::info!("walden: creating snapshot at LSN {lsn}");
        // On a thread of its own at a lower CPU priority, so that on a busy
        // machine the writers (who are not waiting for it) come first.
        // The frozen state is dropped there too, and with it the old
        // versions of the nodes that writers copied meanwhile.
        let (fs, dir) = (&self.fs, &self.snapshot_dir);
        let retain_from = S::retain_log_from(&frozen);
        let info = std::thread::scope(|scope| {
            let writer = std::thread::Builder::new()
                .name("walden-snap-write".into())
                .spawn_scoped(scope, move || {
                    if let Err(e) = crate::io::lower_current_thread_priority(SNAPSHOT_NICE_INCREMENT) {
                        log::debug!("walden: could not lower the snapshot writer's priority: {e}");
                    }
                    snapshot::write_snapshot(fs, dir, lsn, now_unix_us(), origin, |w| S::write_snapshot(&frozen, w))
                })
                .map_err(Error::io("spawn the snapshot writer", dir))?;
            writer.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })?;
        log::info!("walden: snapshot created: {}", info.path.display());
        let kept = snapshot::list_snapshots(&self.fs, &self.snapshot_dir)?.snapshots;
        let keep = self.options.snapshots.keep_count.max(1);
        snapshot::prune_snapshots(&self.fs, &self.snapshot_dir, &kept, keep)?;
        let oldest_kept = kept[kept.len().saturating_sub(keep)..].first().map_or(lsn, |s| s.header.lsn);
        let retain = retain_from.map_or(oldest_kept.next(), |l| l.min(oldest_kept.next()));
        self.wal.truncate_before(retain)?;
        Ok(info)
    }
}

/// A blocking commit between its reservation in the log and its write
/// ([`Engine::begin_commit_batch`]): its records have their LSNs and their
/// place in the log's chain, so a commit begun after it comes after it.
#[must_use = "a begun commit must be finished: the log waits for its reserved bytes"]
pub(crate) enum Begun<'a, S: StateMachine, V: Vfs> {
    /// Reserved on the log's direct path: the committer writes it.
    Reserved { core: &'a Arc<Core<S, V>>, reserved: crate::wal::Reserved<V::File> },
    /// Staged: written (and synced) by a leader, waited on.
    Staged(CommitTicket<S, V>),
}

impl<S: StateMachine, V: Vfs> Begun<'_, S, V> {
    /// Where the commit's first record is in the log (readable there once
    /// the commit is acknowledged).
    pub(crate) fn first_position(&self) -> crate::wal::ReadPosition {
        match self {
            Begun::Reserved { reserved, .. } => reserved.first_position(),
            Begun::Staged(ticket) => ticket.first_position(),
        }
    }

    /// Writes the records (or waits for them to be written), and returns
    /// the LSN of the last once the log acknowledges them: from then on
    /// every reader sees them.
    pub(crate) fn finish(self) -> Result<Lsn> {
        match self {
            Begun::Reserved { core, reserved } => {
                let lsn = core.wal.write_reserved(reserved)?;
                core.publish(lsn)?;
                Ok(lsn)
            }
            Begun::Staged(ticket) => ticket.wait(),
        }
    }
}

/// A record checked and copied for the log, not yet in it
/// ([`Engine::prepare`]).
pub(crate) struct Prepared<S> {
    node: Arc<Chained>,
    state: std::marker::PhantomData<fn() -> S>,
}

impl<S: StateMachine> Prepared<S> {
    /// The record's bytes, to patch in place. A patch must keep the record
    /// one that [`StateMachine::check`] accepts (the journal writes its
    /// sequence, time and revision into fixed-width fields).
    pub(crate) fn payload_mut(&mut self) -> &mut [u8] {
        self.node.payload_mut().expect("a prepared node is one record, held by no one else")
    }
}

/// A pipelined commit staged in the log and linked into its chain
/// ([`Engine::begin_prepared_pipelined`]), its ticket not yet handed out.
#[must_use = "a staged commit's ticket is how it is waited on"]
pub(crate) struct Staged<S: StateMachine, V: Vfs>(CommitTicket<S, V>);

impl<S: StateMachine, V: Vfs> Staged<S, V> {
    /// The ticket, once the caller's own locks are released: folds first
    /// if many records wait (see `after_pipelined_append`).
    pub(crate) fn into_ticket(self) -> CommitTicket<S, V> {
        self.0.core.after_pipelined_append();
        self.0
    }
}

/// Where a count trigger of `every` after `from` fires (`u64::MAX`: never).
fn threshold(from: u64, every: Option<u64>) -> u64 {
    every.map_or(u64::MAX, |n| from.saturating_add(n))
}

/// [`snapshot::check_origin`] of a snapshot against the open log.
fn origin_check<V: Vfs>(wal: &Wal<V>, info: &SnapshotInfo) -> Result<OriginCheck> {
    let seal = match snapshot::wants_seal(&info.header) {
        Some(lsn) => wal.record_seal(lsn)?,
        None => None,
    };
    Ok(snapshot::check_origin(&info.header, wal.log_id(), seal))
}

/// Renames a snapshot aside (`{name}.quarantine-{unix_us}`), durably. It is
/// never read again, and never deleted.
fn move_aside<V: Vfs>(fs: &V, dir: &Path, info: &SnapshotInfo) -> Result<PathBuf> {
    let name = info.path.file_name().and_then(|n| n.to_str()).unwrap_or("snapshot");
    let aside = info.path.with_file_name(format!("{name}.quarantine-{}", now_unix_us()));
    fs.rename(&info.path, &aside).map_err(Error::io("rename", &info.path))?;
    fs.sync_dir(dir).map_err(Error::io("fsync directory", dir))?;
    Ok(aside)
}

/// How much lower than its parent's the snapshot writer's CPU priority is
/// (a nice value; 19 is the lowest there is).
const SNAPSHOT_NICE_INCREMENT: i32 = 10;
