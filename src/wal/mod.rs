//! The segmented write-ahead log: [`Wal`].
//!
//! - `options.rs`: what can be configured, and the defaults.
//! - `segment.rs`: segment files, their names, creation and scanning.
//! - `writer.rs`: staging, the write and sync leaders, the background thread.
//! - `recovery.rs`: what opening an existing log does with what it finds.
//! - `reader.rs`: reading records back.
//! - `follow.rs`: following the log as it is acknowledged ([`Follower`]).
//! - `feed.rs`: what a log's followers share: records read once, the wake-up.

mod feed;
mod follow;
mod options;
mod reader;
pub(crate) mod recovery;
pub(crate) mod segment;
mod tail;
mod writer;

pub use follow::Follower;
pub use options::{FsyncMode, Preallocate, RecoveryMode, WalOptions};
pub use reader::{ReadPosition, Record, WalReader};
pub use recovery::{Cut, WalRecoveryReport};
pub use segment::{parse_segment_file_name, segment_file_name};

use crate::format::{padded_len, SegmentHeader, SEGMENT_HEADER_BYTES};
use crate::io::{DirLock, RealFs, Vfs};
use crate::{Error, Lsn, Result};
use parking_lot::{Condvar, Mutex};
use segment::{create_spare, publish_segment, Segment};

/// Segments a reader may map, each with the length of its readable prefix.
pub(crate) type Readable<F> = Vec<(Segment<F>, u64)>;
pub(crate) use segment::{now_unix_us, random_u64};
use std::ops::Range;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
pub(crate) use tail::Chained;
pub(crate) use writer::Reserved;
use writer::{Shared, State};

/// The body of a background thread.
type BackgroundBody<V> = fn(Arc<Shared<V>>);

/// A segmented write-ahead log. `Send + Sync`: share it between threads by
/// reference or in an `Arc`.
///
/// ```no_run
/// use walden::{Wal, WalOptions, FsyncMode};
/// let wal = Wal::open("/tmp/log", WalOptions { fsync: FsyncMode::Always, ..Default::default() })?;
/// let lsn = wal.append(b"hello")?;          // durable when it returns
/// let batch = wal.append_batch(&[b"a", b"b"])?; // all or nothing after a crash
/// for record in wal.read_from(lsn)? {
///     println!("{} {:?}", record?.lsn, batch);
/// }
/// wal.close()?;
/// # Ok::<(), walden::Error>(())
/// ```
pub struct Wal<V: Vfs = RealFs> {
    shared: Arc<Shared<V>>,
    /// The timer and preparer threads.
    background: Vec<JoinHandle<()>>,
    report: WalRecoveryReport,
    _lock: DirLock,
}

/// An append that has a place in the log but may not yet be acknowledged.
/// [`Ticket::wait`] blocks until it has the durability the fsync mode
/// promises; `ticket.await` waits the same way without blocking a thread
/// (see [`Durable`]). A ticket owns what it needs (`'static`, `Send`):
/// hand it to another thread or task. Dropping it does not cancel the
/// append, which is acknowledged with the ones after it.
#[must_use = "an append is acknowledged only when its ticket is waited on"]
pub struct Ticket<V: Vfs = RealFs> {
    shared: Arc<Shared<V>>,
    last: Lsn,
    /// Where the append's first record is in the log.
    first_at: ReadPosition,
}

/// A future that resolves once every record up to an LSN has the
/// durability the fsync mode promises: from [`Wal::durable`], or by
/// awaiting a [`Ticket`]. Runtime-agnostic (no runtime is a dependency):
/// it registers the task's waker with the log, and the log's own timer
/// thread leads the write and fdatasync it waits for, so no runtime thread
/// blocks on I/O. Dropping it only stops the waiting.
#[must_use = "futures do nothing unless polled"]
pub struct Durable<V: Vfs = RealFs> {
    shared: Arc<Shared<V>>,
    lsn: Lsn,
    /// This future's registration among the log's waiters, once it has one.
    registration: Option<u64>,
}

/// Counters of a live log.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct WalStats {
    /// write() calls that carried records.
    pub writes: u64,
    /// fdatasync calls of the group commit and the timer (roll-overs excluded).
    pub syncs: u64,
    /// write() calls of records another appender had reserved and not yet
    /// written (`Periodic` and `Never`): an appender behind a slow one
    /// writes its bytes instead of waiting for it.
    pub helped_writes: u64,
    /// Segment files the log holds now, the active one included.
    pub segments: usize,
    /// Records the log's followers read from the files into the window
    /// they share (each read and checked once for all of them).
    pub follower_records_shared: u64,
    /// Records followers behind that window read from the files on their own.
    pub follower_records_alone: u64,
}

impl Wal<RealFs> {
    /// Opens the log in `dir`, creating it if it holds none, and recovers it
    /// as `options.recovery` says.
    pub fn open(dir: impl AsRef<Path>, options: WalOptions) -> Result<Wal<RealFs>> {
        Wal::open_with(RealFs, dir, options)
    }
}

impl<V: Vfs> Wal<V> {
    /// [`Wal::open`] on another file system, such as `SimFs` (the `sim`
    /// feature's simulated one, for crash tests).
    pub fn open_with(fs: V, dir: impl AsRef<Path>, options: WalOptions) -> Result<Wal<V>> {
        options.validate()?;
        let dir = dir.as_ref().to_owned();
        let lock = lock_log_dir(&fs, &dir)?;
        Wal::open_locked(fs, dir, options, lock)
    }

    /// [`Wal::open_with`] under a lock on `dir` the caller took already
    /// (with [`lock_log_dir`]), so that it could change files beside the
    /// log first: the engine cleans its snapshot directory under this lock.
    pub(crate) fn open_locked(fs: V, dir: std::path::PathBuf, options: WalOptions, lock: DirLock) -> Result<Wal<V>> {
        options.validate()?;
        let recovered = recovery::recover(&fs, &dir, options.recovery)?;
        let (log_id, segments, active_end, last_lsn, report) = match recovered {
            Some(r) => (r.log_id, r.segments, r.active_end, r.last_lsn, r.report),
            None => {
                let log_id = random_u64();
                let spare = create_spare(&fs, &dir, options.segment_bytes, options.preallocate.zero_fill())?;
                let header =
                    SegmentHeader { log_id, salt: random_u64(), first_lsn: Lsn::FIRST, created_unix_us: now_unix_us() };
                let segment = publish_segment(&fs, &dir, spare, header)?;
                let report = WalRecoveryReport { segments: 1, first_lsn: Lsn::FIRST, ..Default::default() };
                (log_id, vec![segment], SEGMENT_HEADER_BYTES as u64, Lsn::ZERO, report)
            }
        };
        let active = segments.last().expect("a log has a segment");
        let state = State::new(last_lsn, active.file.clone(), active.header, active_end);
        let shared = Arc::new(Shared {
            fs,
            dir,
            options,
            log_id,
            state: Mutex::new(state),
            progress: Condvar::new(),
            timer_wake: Condvar::new(),
            leader_wake: Condvar::new(),
            group_filled: Condvar::new(),
            feed: feed::Feed::new(segments[0].header.first_lsn),
            segments: Mutex::new(segments),
            spare: Mutex::new(None),
            acknowledged_lsn: AtomicU64::new(last_lsn.0),
            written_lsn: AtomicU64::new(last_lsn.0),
            synced_lsn: AtomicU64::new(last_lsn.0),
        });
        let mut background = Vec::with_capacity(2);
        let threads: [(&str, BackgroundBody<V>); 2] =
            [("walden-timer", Shared::timer), ("walden-prep", Shared::preparer)];
        for (name, body) in threads {
            let worker = shared.clone();
            let handle = std::thread::Builder::new().name(name.into()).spawn(move || body(worker));
            match handle {
                Ok(handle) => background.push(handle),
                Err(e) => {
                    shared.stop_background();
                    background.into_iter().for_each(|h| drop(h.join()));
                    return Err(Error::io("spawn a background thread", &shared.dir)(e));
                }
            }
        }
        log::info!(
            "walden: opened {} at LSN {} ({} records in {} segments, {} bytes cut)",
            shared.dir.display(),
            last_lsn,
            report.records,
            report.segments,
            report.bytes_cut()
        );
        Ok(Wal { shared, background, report, _lock: lock })
    }

    fn check_size(&self, len: usize) -> Result<()> {
        let max = self.shared.options.max_record_bytes;
        if len > max as usize {
            return Err(Error::RecordTooLarge { len, max });
        }
        Ok(())
    }

    /// Appends one record; returns its LSN once it has the durability the
    /// fsync mode promises.
    pub fn append(&self, payload: &[u8]) -> Result<Lsn> {
        self.check_size(payload.len())?;
        if self.writes_directly() {
            if let Some(lsn) = self.shared.append_direct([payload], 1, padded_len(payload.len()))? {
                return Ok(lsn);
            }
        }
        let (st, lsn, _) = self.shared.stage([payload], 1, padded_len(payload.len()), None)?;
        self.acknowledge(st, lsn)?;
        Ok(lsn)
    }

    /// Appends records as one atomic batch: after a crash all of them come
    /// back or none. Returns their LSNs once acknowledged.
    pub fn append_batch<P: AsRef<[u8]>>(&self, payloads: &[P]) -> Result<Range<Lsn>> {
        let frame_bytes = self.batch_frame_bytes(payloads)?;
        if self.writes_directly() {
            let direct = self.shared.append_direct(payloads.iter().map(|p| p.as_ref()), payloads.len(), frame_bytes)?;
            if let Some(last) = direct {
                return Ok(Lsn(last.0 + 1 - payloads.len() as u64)..last.next());
            }
        }
        let (st, last, _) =
            self.shared.stage(payloads.iter().map(|p| p.as_ref()), payloads.len(), frame_bytes, None)?;
        let first = Lsn(last.0 + 1 - payloads.len() as u64);
        self.acknowledge(st, last)?;
        Ok(first..last.next())
    }

    /// Appends one record and returns at once with its LSN; the record is
    /// staged in memory and acknowledged only by [`Ticket::wait`]. Keeps
    /// many appends in flight from one thread.
    pub fn append_pipelined(&self, payload: &[u8]) -> Result<Ticket<V>> {
        self.stage_ticket(&[payload], None)
    }

    /// [`Wal::append_batch`], pipelined.
    pub fn append_batch_pipelined<P: AsRef<[u8]>>(&self, payloads: &[P]) -> Result<Ticket<V>> {
        self.stage_ticket(payloads, None)
    }

    /// Stages `payloads` as one batch (`node` linked into the chain, if
    /// the log keeps one) and returns its ticket.
    fn stage_ticket<P: AsRef<[u8]>>(&self, payloads: &[P], node: Option<&Arc<Chained>>) -> Result<Ticket<V>> {
        let frame_bytes = self.batch_frame_bytes(payloads)?;
        let (st, last, first_at) =
            self.shared.stage(payloads.iter().map(|p| p.as_ref()), payloads.len(), frame_bytes, node)?;
        drop(st);
        Ok(Ticket { shared: self.shared.clone(), last, first_at })
    }

    /// Blocks until every record up to `lsn` has the durability the fsync
    /// mode promises (in `Always`, an fdatasync covered it; in `Periodic`
    /// and `Never`, write() handed it to the kernel), leading the write and
    /// sync itself if nobody else is. Callable from any thread. An error if
    /// `lsn` was never appended, or if the log is poisoned.
    pub fn wait_durable(&self, lsn: Lsn) -> Result<()> {
        self.shared.wait_acknowledged(lsn)
    }

    /// [`Wal::wait_durable`] as a future, for async code on any runtime.
    pub fn durable(&self, lsn: Lsn) -> Durable<V> {
        Durable { shared: self.shared.clone(), lsn, registration: None }
    }

    /// Checks a batch and returns the bytes its frames take.
    fn batch_frame_bytes<P: AsRef<[u8]>>(&self, payloads: &[P]) -> Result<usize> {
        if payloads.is_empty() {
            return Err(Error::InvalidArgument("an empty batch".into()));
        }
        let mut total = 0;
        for p in payloads {
            self.check_size(p.as_ref().len())?;
            total += padded_len(p.as_ref().len());
        }
        if total as u64 > crate::format::MAX_RECORD_BYTES as u64 * 8 {
            return Err(Error::InvalidArgument(format!("a batch of {total} bytes is over 1 GiB")));
        }
        Ok(total)
    }

    /// For a blocking append in `Periodic` and `Never`: gives `payloads`
    /// (one record, or an atomic batch) their LSNs and encodes them, under
    /// the log's lock, so the caller can note the LSNs under a lock of its
    /// own before the write. `None` in `Always`, or when the records must be
    /// staged (records staged ahead, or a roll-over due): then append them
    /// the pipelined way. Every reservation must go to [`Wal::write_reserved`].
    ///
    /// `node` (the records' payloads) is linked into the log's chain under
    /// the log's lock, before any other thread can write or acknowledge the
    /// records (see `tail.rs`).
    pub(crate) fn reserve<P: AsRef<[u8]>>(
        &self,
        payloads: &[P],
        node: &Arc<Chained>,
    ) -> Result<Option<Reserved<V::File>>> {
        if !self.writes_directly() {
            return Ok(None);
        }
        let frame_bytes = self.batch_frame_bytes(payloads)?;
        self.shared.reserve_direct(payloads.iter().map(|p| p.as_ref()), payloads.len(), frame_bytes, Some(node))
    }

    /// [`Wal::append_batch_pipelined`] (one record or more), linking `node`
    /// into the chain as [`Wal::reserve`] does.
    pub(crate) fn append_chained<P: AsRef<[u8]>>(&self, payloads: &[P], node: &Arc<Chained>) -> Result<Ticket<V>> {
        self.stage_ticket(payloads, Some(node))
    }

    /// Starts the log's in-memory chain of appends (`tail.rs`): from now
    /// on every append must carry its payloads ([`Wal::reserve`],
    /// [`Wal::append_chained`]). Returns the chain's start, a node with no
    /// record right before the next LSN.
    pub(crate) fn start_chain(&self) -> Arc<Chained> {
        let mut st = self.shared.state.lock();
        let start = Chained::start(st.next_lsn);
        st.start_chain(start.clone());
        start
    }

    /// Writes a reservation and returns its last LSN once it is
    /// acknowledged (written, in `Periodic` and `Never`).
    pub(crate) fn write_reserved(&self, reserved: Reserved<V::File>) -> Result<Lsn> {
        self.shared.write_reserved(reserved)
    }

    /// Whether blocking appends write their own records (`Periodic` and
    /// `Never`: they wait for no fsync, so nothing is gained by a group).
    fn writes_directly(&self) -> bool {
        !matches!(self.shared.options.fsync, FsyncMode::Always)
    }

    fn acknowledge<'g>(&'g self, st: parking_lot::MutexGuard<'g, State<V::File>>, lsn: Lsn) -> Result<()> {
        match self.shared.options.fsync {
            FsyncMode::Always => self.shared.wait_synced(st, lsn),
            FsyncMode::Periodic { .. } | FsyncMode::Never => self.shared.wait_written(st, lsn),
        }
    }

    /// The LSN up to which every record has the durability the fsync mode
    /// promises (see [`Wal::wait_durable`]).
    pub fn acknowledged_lsn(&self) -> Lsn {
        Lsn(self.shared.acknowledged_lsn.load(Ordering::Acquire))
    }

    /// Makes every record appended so far durable (fdatasync), in every
    /// mode. Returns the LSN it covered.
    pub fn sync(&self) -> Result<Lsn> {
        self.shared.flush(true)
    }

    /// Syncs and closes the log. Dropping a log without closing it writes
    /// out staged records but does not sync them.
    pub fn close(mut self) -> Result<()> {
        let result = self.shared.flush(true);
        self.shared.state.lock().closed = true;
        self.stop();
        result.map(|_| ())
    }

    fn stop(&mut self) {
        if self.background.is_empty() {
            return;
        }
        self.shared.stop_background();
        for handle in self.background.drain(..) {
            if handle.join().is_err() {
                log::error!("walden: a background thread panicked");
            }
        }
    }

    /// The LSN of the oldest record still in the log (1 unless segments
    /// were removed by [`Wal::truncate_before`]).
    pub fn first_lsn(&self) -> Lsn {
        self.shared.segments.lock()[0].header.first_lsn
    }

    /// The LSN of the last record appended, acknowledged or not; `None` if
    /// the log has none.
    pub fn last_lsn(&self) -> Option<Lsn> {
        let last = Lsn(self.shared.state.lock().next_lsn.0 - 1);
        (last.0 > 0).then_some(last)
    }

    /// Every record up to this LSN is on stable storage.
    pub fn durable_lsn(&self) -> Lsn {
        self.shared.state.lock().synced
    }

    /// Reads from a position a reader of this log reported
    /// ([`WalReader::position`]) without scanning its segment from the start.
    pub fn read_from_position(&self, at: ReadPosition) -> Result<WalReader<V>> {
        let (segments, upto) = self.readable_segments();
        Ok(WalReader::at(segments, at, upto))
    }

    /// Reads the records from `from` (or the first one still in the log, if
    /// `from` is older) up to the last one written when this is called.
    pub fn read_from(&self, from: Lsn) -> Result<WalReader<V>> {
        let (segments, upto) = self.readable_segments();
        Ok(WalReader::new(segments, from, upto))
    }

    /// [`Wal::read_from`], ending at `last` if that comes before the last
    /// record written (the engine reads no further than its state shows).
    pub(crate) fn read_between(&self, from: Lsn, last: Lsn) -> WalReader<V> {
        let (segments, upto) = self.readable_segments();
        WalReader::new(segments, from, upto.min(last))
    }

    /// [`Wal::read_from_position`], ending at `last` as [`Wal::read_between`] does.
    pub(crate) fn read_position_between(&self, at: ReadPosition, last: Lsn) -> WalReader<V> {
        let (segments, upto) = self.readable_segments();
        WalReader::at(segments, at, upto.min(last))
    }

    /// Every acknowledged record from `from` on, in LSN order: those the
    /// log holds, then each new one as it is acknowledged in the fsync
    /// mode's terms (see [`Follower`]). `from` may be past the end (the
    /// follower waits for it); older than [`Wal::first_lsn`] it is
    /// [`Error::Compacted`], which names the oldest LSN held.
    pub fn follow(&self, from: Lsn) -> Result<Follower<V>> {
        if from == Lsn::ZERO {
            return Err(Error::InvalidArgument(format!("LSN 0 names no record: follow from LSN {}", Lsn::FIRST)));
        }
        let oldest = self.first_lsn();
        if from < oldest {
            return Err(Error::Compacted { lsn: from, oldest });
        }
        Ok(Follower::new(self.shared.clone(), from))
    }

    /// [`Wal::follow`] with a retention hold of at most `keep_bytes` of
    /// segments ([`Follower::retain`]): what it has still to read is not
    /// removed by [`Wal::truncate_before`] while it lives.
    pub fn follow_retained(&self, from: Lsn, keep_bytes: u64) -> Result<Follower<V>> {
        let mut follower = self.follow(from)?;
        follower.retain(keep_bytes)?;
        Ok(follower)
    }

    /// The segments a reader may map, with their readable lengths, and the
    /// last LSN written.
    pub(crate) fn readable_segments(&self) -> (Readable<V::File>, Lsn) {
        readable_segments(&self.shared)
    }

    /// The log's id: random at creation, the same in every segment header.
    pub fn log_id(&self) -> u64 {
        self.shared.log_id
    }

    /// The seal of the record at `lsn` (its segment's salt and its stored
    /// CRC), which a snapshot at `lsn` records so that it can be checked
    /// against the log later; `None` if the log does not hold `lsn` now.
    pub fn record_seal(&self, lsn: Lsn) -> Result<Option<crate::format::RecordSeal>> {
        let (segments, upto) = self.readable_segments();
        if lsn > upto || lsn == Lsn::ZERO {
            return Ok(None);
        }
        let Some((segment, len)) = segments.iter().rev().find(|(s, _)| s.header.first_lsn <= lsn) else {
            return Ok(None);
        };
        let map = crate::io::VfsFile::map(&*segment.file, *len).map_err(Error::io("map", &segment.path))?;
        Ok(segment::find_record_seal(&map, &segment.header, lsn))
    }

    /// Removes whole sealed segments whose records all have LSNs below
    /// `lsn`, except those a follower's retention hold keeps
    /// ([`Follower::retain`]). The active segment is never removed.
    /// Returns how many went.
    pub fn truncate_before(&self, lsn: Lsn) -> Result<usize> {
        let mut segments = self.shared.segments.lock();
        let lsn = self.shared.feed.held_cutoff(lsn, &segments);
        let removable = segments.windows(2).take_while(|pair| pair[1].header.first_lsn <= lsn).count();
        let dir = &self.shared.dir;
        // Oldest first, each unlink made durable before the next, so a crash
        // can only leave a gap-free suffix of the log behind.
        for _ in 0..removable {
            let path = segments[0].path.clone();
            self.shared.fs.remove_file(&path).map_err(Error::io("remove", &path))?;
            segments.remove(0);
            self.shared.feed.set_oldest(segments[0].header.first_lsn);
            self.shared.fs.sync_dir(dir).map_err(Error::io("fsync directory", dir))?;
        }
        Ok(removable)
    }

    /// What opening this log found and did.
    pub fn recovery_report(&self) -> &WalRecoveryReport {
        &self.report
    }

    /// The log's counters now.
    pub fn stats(&self) -> WalStats {
        let (writes, syncs, helped_writes) = {
            let st = self.shared.state.lock();
            (st.writes, st.syncs, st.helped_writes)
        };
        let feed = &self.shared.feed;
        WalStats {
            writes,
            syncs,
            helped_writes,
            segments: self.shared.segments.lock().len(),
            follower_records_shared: feed.records_shared.load(Ordering::Relaxed),
            follower_records_alone: feed.records_alone.load(Ordering::Relaxed),
        }
    }

    /// The options the log was opened with.
    pub fn options(&self) -> &WalOptions {
        &self.shared.options
    }

    /// The directory of the log's segments.
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }
}

/// The segments a reader of `shared`'s log may map, with their readable
/// lengths, and the last LSN written (a [`Wal`]'s, or a [`Follower`]'s).
pub(crate) fn readable_segments<V: Vfs>(shared: &Shared<V>) -> (Readable<V::File>, Lsn) {
    let (upto, active_first, active_end) = {
        let st = shared.state.lock();
        (st.written, st.active_first_lsn, st.active_end)
    };
    let segments = shared.segments.lock();
    let mut readable = Vec::with_capacity(segments.len());
    for segment in segments.iter() {
        let first = segment.header.first_lsn;
        if first > active_first {
            break;
        }
        let len = if first == active_first {
            active_end
        } else {
            segment.sealed.expect("segments before the active one are sealed").0
        };
        readable.push((segment.clone(), len));
    }
    (readable, upto)
}

/// Creates `dir` if needed and takes the log's lock (`dir/LOCK`), before
/// anything in or beside the log is changed, removed or renamed: an open
/// refused by another process's lock must leave that process's files alone.
pub(crate) fn lock_log_dir<V: Vfs>(fs: &V, dir: &Path) -> Result<DirLock> {
    fs.create_dir_all(dir).map_err(Error::io("create directory", dir))?;
    fs.lock_dir(dir).map_err(Error::io("lock", dir))
}

impl<V: Vfs> Drop for Wal<V> {
    fn drop(&mut self) {
        if !self.background.is_empty() {
            // Hand staged (unacknowledged) records to the kernel; no sync.
            if let Err(e) = self.shared.flush(false) {
                log::debug!("walden: drop could not write out staged records: {e}");
            }
            self.stop();
        }
    }
}

impl<V: Vfs> Ticket<V> {
    /// The LSN of the (last) record this ticket stands for.
    pub fn lsn(&self) -> Lsn {
        self.last
    }

    /// Where the append's first record is in the log (readable there once
    /// the append is acknowledged).
    pub(crate) fn first_position(&self) -> ReadPosition {
        self.first_at
    }

    /// Blocks until the append has the durability the mode promises.
    pub fn wait(self) -> Result<Lsn> {
        self.shared.wait_acknowledged(self.last)?;
        Ok(self.last)
    }
}

impl<V: Vfs> std::future::IntoFuture for Ticket<V> {
    type Output = Result<Lsn>;
    type IntoFuture = Durable<V>;

    /// Waits for the append without blocking a thread: see [`Durable`].
    fn into_future(self) -> Durable<V> {
        Durable { shared: self.shared, lsn: self.last, registration: None }
    }
}

impl<V: Vfs> Durable<V> {
    /// The LSN this future waits for.
    pub fn lsn(&self) -> Lsn {
        self.lsn
    }
}

impl<V: Vfs> std::future::Future for Durable<V> {
    type Output = Result<Lsn>;

    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<Lsn>> {
        let this = self.get_mut(); // Durable holds no self-references: it is Unpin
        this.shared.poll_acknowledged(this.lsn, &mut this.registration, cx.waker())
    }
}

impl<V: Vfs> Drop for Durable<V> {
    fn drop(&mut self) {
        if self.registration.is_some() {
            let mut st = self.shared.state.lock();
            self.shared.forget_task(&mut st, &mut self.registration);
        }
    }
}
