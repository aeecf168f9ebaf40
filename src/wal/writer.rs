//! The group-commit writer: LSN assignment, staging, write() and fdatasync.
//!
//! Appenders encode their records into a staging buffer under `state`, the
//! lock that orders appends, and leave. Whoever then needs the bytes in the
//! kernel becomes the *write leader*: it takes everything staged, releases
//! the lock, and issues one write() per segment it touches; appenders that
//! arrive meanwhile stage behind it and are covered by its next round.
//! Whoever needs durability becomes the *sync leader* the same way: it
//! notes the written LSN, releases the lock, fdatasyncs, and wakes every
//! waiter the sync covered at once. Alone, an appender is its own leader and
//! pays one write() (plus one fdatasync in `Always`), with no thread hand-off.
//! The timer thread leads the same two steps on a timer: the `Periodic`
//! fsync, and pipelined appends nobody waits for. A preparer thread
//! zero-fills the next segment file ahead of time.
//!
//! **Invariant:** `state` is never held across write() or fdatasync.
//! **Invariant:** bytes reach a segment in LSN order; only the write leader
//! writes, and a segment is synced before its successor is published.
//! **Invariant:** after a failed write or fdatasync the log is poisoned:
//! nothing later is acknowledged, and the failed sync is never retried.

use super::feed::Feed;
use super::segment::{create_spare, now_unix_us, publish_segment, random_u64, Segment, Spare};
use super::tail::Chained;
use super::{FsyncMode, ReadPosition, WalOptions};
use crate::format::{encode_record, SegmentHeader, FLAG_BATCH_CONTINUES, SEGMENT_HEADER_BYTES};
use crate::io::{Vfs, VfsFile};
use crate::{Error, Lsn, Result};
use parking_lot::{Condvar, Mutex, MutexGuard};
use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Poll, Waker};
use std::time::Instant;

/// Encoded records bound for one contiguous range of one segment.
pub(crate) struct Chunk {
    /// The segment's first LSN; a new value means "roll over first".
    segment: Lsn,
    /// Set when this chunk opens a new segment.
    new_segment: Option<SegmentHeader>,
    offset: u64,
    bytes: Vec<u8>,
    first_lsn: Lsn,
    last_lsn: Lsn,
}

thread_local! {
    /// Where `append_direct` encodes, so steady appends do not allocate:
    /// reused while no helper still holds it.
    static ENCODE_BUFFER: std::cell::RefCell<Option<Arc<Vec<u8>>>> = const { std::cell::RefCell::new(None) };
}

/// An encode buffer grown past this is released after use.
const ENCODE_BUFFER_KEPT_BYTES: usize = 1 << 20;

/// Tries at the state's lock on the direct path before its slow path (a
/// try and a pause each, a few microseconds in all).
const DIRECT_SPINS: usize = 200;

/// A thread or a task waiting until `written` (or, if `durable`, `synced`)
/// reaches `lsn`.
struct Waiter {
    lsn: Lsn,
    durable: bool,
    wake: Wake,
}

/// How a waiter is woken.
enum Wake {
    /// A parked thread: it may also be called to lead the next round.
    Thread(std::thread::Thread),
    /// A future's task (see [`Shared::poll_acknowledged`]): it never leads;
    /// the timer thread leads rounds for tasks (`State::demand`), so no
    /// runtime thread ever blocks in write() or fdatasync. `id` names the
    /// future, so polling it again replaces its waker instead of adding one.
    Task { id: u64, waker: Waker },
}

impl Wake {
    fn wake(self) {
        match self {
            Wake::Thread(thread) => thread.unpark(),
            Wake::Task { waker, .. } => waker.wake(),
        }
    }
}

pub(crate) struct State<F> {
    /// The LSN the next appended record gets.
    pub next_lsn: Lsn,
    /// Records appended but not yet handed to write().
    staged: Vec<Chunk>,
    staged_bytes: usize,
    staged_records: usize,
    /// The segment staging appends to, and where its next record goes.
    tail_first_lsn: Lsn,
    tail_header: SegmentHeader,
    tail_end: u64,
    /// Every LSN up to this is in the kernel (write() returned).
    pub written: Lsn,
    /// Every LSN up to this is on stable storage (fdatasync returned).
    pub synced: Lsn,
    /// The segment write() goes to, and the end of its written bytes.
    pub active: Arc<F>,
    pub active_first_lsn: Lsn,
    pub active_end: u64,
    writing: bool,
    syncing: bool,
    pub poisoned: Option<Arc<Error>>,
    pub closed: bool,
    shutdown: bool,
    /// Buffers to reuse for staging, so steady appends do not allocate.
    free_buffers: Vec<Vec<u8>>,
    /// An empty chunk list to swap in for `staged`, for the same reason.
    spare_chunks: Vec<Chunk>,
    /// Appenders parked, and tasks waiting, until a round covers them.
    waiters: Vec<Waiter>,
    /// The highest LSN a waiting task needs acknowledged; the timer thread
    /// leads rounds until it is (tasks never lead a round themselves).
    demand: Lsn,
    /// Ids for waiting futures (`Wake::Task`), and for waiting followers' tasks.
    next_task_id: u64,
    /// Followers' tasks (`follow.rs`) waiting for the acknowledged LSN to
    /// reach their next record, with the LSN each waits for (follower
    /// threads park on `Shared::feed`). Apart from `waiters` because a
    /// follower never leads a round and may wait for an LSN not yet assigned.
    follow_tasks: Vec<(u64, Lsn, Waker)>,
    /// How many records the next fdatasync should carry: as many as were
    /// waiting when the last one returned (those it synced plus those that
    /// arrived meanwhile), so every writer that keeps appending rides in
    /// every group (see `sync_round`).
    group_target: u64,
    /// Set while a sync leader waits for its group to fill; `stage`
    /// signals `group_filled` when it is.
    filling: bool,
    /// A moving average of fdatasync's duration, in microseconds: the most
    /// a sync leader waits for its group to fill is half of it.
    fsync_average_us: u64,
    /// Direct writes (see `append_direct`) whose owner has not finished its
    /// write() yet.
    inflight: usize,
    /// Direct writes reserved and not yet completed, in LSN order, with
    /// their encoded bytes: whoever waits behind one writes it (the same
    /// bytes at the same offset), so no acknowledgement waits for a thread
    /// that was preempted between reserving its range and writing it.
    direct: VecDeque<DirectWrite<F>>,
    /// Writes completed ahead of an earlier one still in flight:
    /// (first LSN, last LSN, end offset), waiting for `written` to reach them.
    completed: Vec<(Lsn, Lsn, u64)>,
    /// Counters for benchmarks and the CLI.
    pub syncs: u64,
    pub writes: u64,
    /// Writes of another appender's reserved range (see `direct`).
    pub helped_writes: u64,
    /// The last node of the in-memory chain of appends (`tail.rs`), if an
    /// engine started one: appends that carry their payloads are linked
    /// after it as they get their LSNs.
    chain_tail: Option<Arc<Chained>>,
}

/// What a follower waiting for an LSN found (see `Feed::wait`).
pub(crate) enum Followed {
    /// The LSN is acknowledged: read it.
    Ready,
    /// The log is poisoned: nothing past what it acknowledged ever will be.
    Poisoned(Arc<Error>),
    /// The log was closed or dropped: nothing more will be appended.
    Ended,
    /// The deadline passed first.
    TimedOut,
}

/// Records reserved and encoded by [`Shared::reserve_direct`], to be
/// written by [`Shared::write_reserved`].
pub(crate) struct Reserved<F>(DirectWrite<F>);

/// What [`Shared::stage`] returns: the log's state, still locked, the
/// append's last LSN, and where its first record is.
pub(crate) type StagedAt<'a, F> = (MutexGuard<'a, State<F>>, Lsn, ReadPosition);

impl<F> Reserved<F> {
    /// Where the first record reserved will be in the log.
    pub(crate) fn first_position(&self) -> ReadPosition {
        let write = &self.0;
        ReadPosition { lsn: write.first, segment_first_lsn: write.segment, offset: write.offset }
    }
}

/// A direct write's range and bytes, shared with whoever helps write it.
struct DirectWrite<F> {
    first: Lsn,
    last: Lsn,
    /// The first LSN of the segment written to, and where in it.
    segment: Lsn,
    offset: u64,
    bytes: Arc<Vec<u8>>,
    file: Arc<F>,
}

impl<F> Clone for DirectWrite<F> {
    fn clone(&self) -> Self {
        DirectWrite {
            first: self.first,
            last: self.last,
            segment: self.segment,
            offset: self.offset,
            bytes: self.bytes.clone(),
            file: self.file.clone(),
        }
    }
}

pub(crate) struct Shared<V: Vfs> {
    pub fs: V,
    pub dir: PathBuf,
    pub options: WalOptions,
    pub log_id: u64,
    pub state: Mutex<State<V::File>>,
    /// Signalled when staging space frees up (appenders under back-pressure
    /// wait here), the log is poisoned, or the background threads must stop.
    /// Appenders waiting for a round park on `State::waiters` instead.
    pub progress: Condvar,
    /// The preparer thread sleeps here, not on `progress`, so appends never
    /// pay to wake it; signalled only at shutdown.
    pub timer_wake: Condvar,
    /// The timer thread sleeps here: signalled when a task raises `demand`,
    /// and at shutdown.
    pub leader_wake: Condvar,
    /// A sync leader waiting for its group to fill sleeps here.
    pub group_filled: Condvar,
    /// What the log's followers share (`feed.rs`): the window of records
    /// read once for all of them, and where follower threads park
    /// (woken by `wake` when the acknowledged LSN advanced and one sleeps).
    pub feed: Feed<V>,
    /// Segments in LSN order; the last is the active one.
    pub segments: Mutex<Vec<Segment<V::File>>>,
    /// The next segment file, zero-filled ahead of time.
    pub spare: Mutex<Option<Spare<V::File>>>,
    /// The LSN up to which appends are acknowledged in the mode's terms
    /// (see [`Shared::acknowledged`]), readable without `state`: stored in
    /// the critical section that advances it, so it never lags what a
    /// thread saw under `state`, and never leads it.
    pub acknowledged_lsn: AtomicU64,
    /// `State::written` and `State::synced`, readable without `state`, so a
    /// woken waiter that is covered returns without taking the lock; stored
    /// as `acknowledged_lsn` is.
    pub written_lsn: AtomicU64,
    pub synced_lsn: AtomicU64,
}

impl<F> State<F> {
    pub fn new(last_lsn: Lsn, active: Arc<F>, header: SegmentHeader, active_end: u64) -> State<F> {
        State {
            next_lsn: last_lsn.next(),
            staged: Vec::new(),
            staged_bytes: 0,
            staged_records: 0,
            tail_first_lsn: header.first_lsn,
            tail_header: header,
            tail_end: active_end,
            written: last_lsn,
            synced: last_lsn,
            active,
            active_first_lsn: header.first_lsn,
            active_end,
            writing: false,
            syncing: false,
            poisoned: None,
            closed: false,
            shutdown: false,
            free_buffers: Vec::new(),
            spare_chunks: Vec::new(),
            waiters: Vec::new(),
            demand: last_lsn,
            next_task_id: 0,
            follow_tasks: Vec::new(),
            group_target: 0,
            filling: false,
            fsync_average_us: 0,
            inflight: 0,
            direct: VecDeque::new(),
            completed: Vec::new(),
            syncs: 0,
            writes: 0,
            helped_writes: 0,
            chain_tail: None,
        }
    }

    /// Links `node` (an append whose first LSN is `first`) after the
    /// chain's last node. Every append of a log with a chain carries a node.
    fn chain(&mut self, node: Option<&Arc<Chained>>, first: Lsn) {
        match (&self.chain_tail, node) {
            (Some(tail), Some(node)) => {
                tail.link(node, first);
                self.chain_tail = Some(node.clone());
            }
            (None, None) => {}
            (Some(_), None) => debug_assert!(false, "an append without its payloads in a chained log"),
            (None, Some(_)) => debug_assert!(false, "an append with payloads in a log with no chain"),
        }
    }

    /// Starts the chain with `start` (no record, at the next LSN).
    pub(crate) fn start_chain(&mut self, start: Arc<Chained>) {
        debug_assert_eq!(start.first(), self.next_lsn);
        self.chain_tail = Some(start);
    }

    fn check_open(&self) -> Result<()> {
        if let Some(cause) = &self.poisoned {
            return Err(Error::Poisoned(cause.clone()));
        }
        if self.closed {
            return Err(Error::Closed);
        }
        Ok(())
    }
}

impl<V: Vfs> Shared<V> {
    /// `state` for the direct path, whose holds are short: spins (without
    /// yielding the CPU) for a moment before the mutex's own slow path,
    /// whose yields, with many appenders on few cores, can line them up
    /// behind a holder that lost its CPU.
    fn lock_state(&self) -> MutexGuard<'_, State<V::File>> {
        for _ in 0..DIRECT_SPINS {
            if let Some(st) = self.state.try_lock() {
                return st;
            }
            std::hint::spin_loop();
        }
        self.state.lock()
    }

    /// Assigns LSNs to `payloads` and encodes them as one atomic batch into
    /// the staging buffer. Returns the LSN of the last record. Waits while
    /// staging is full (back-pressure), leading a write if nobody is.
    /// `frame_bytes` is the sum of [`crate::format::padded_len`] over the payloads.
    pub fn stage<'a, P>(
        &self,
        payloads: P,
        count: usize,
        frame_bytes: usize,
        node: Option<&Arc<Chained>>,
    ) -> Result<StagedAt<'_, V::File>>
    where
        P: IntoIterator<Item = &'a [u8]>,
    {
        let mut st = self.state.lock();
        loop {
            st.check_open()?;
            let fits = st.staged_bytes + frame_bytes <= self.options.group_max_bytes
                && st.staged_records + count <= self.options.group_max_records;
            if fits || st.staged.is_empty() {
                break;
            }
            if st.writing {
                self.progress.wait(&mut st);
            } else {
                st = self.write_round(st);
            }
        }
        // A batch never spans segments: roll over first if it does not fit.
        if st.tail_end + frame_bytes as u64 > self.options.segment_bytes && st.tail_end > SEGMENT_HEADER_BYTES as u64 {
            let header = SegmentHeader {
                log_id: self.log_id,
                salt: random_u64(),
                first_lsn: st.next_lsn,
                created_unix_us: now_unix_us(),
            };
            st.tail_first_lsn = header.first_lsn;
            st.tail_header = header;
            st.tail_end = SEGMENT_HEADER_BYTES as u64;
            self.push_chunk(&mut st, Some(header));
        } else if st.staged.last().is_none_or(|c| c.segment != st.tail_first_lsn) {
            self.push_chunk(&mut st, None);
        }
        let seed = st.tail_header.seed();
        let watermark = st.synced;
        let mut lsn = st.next_lsn;
        let first_at = ReadPosition { lsn, segment_first_lsn: st.tail_first_lsn, offset: st.tail_end };
        let chunk = st.staged.last_mut().expect("a chunk was pushed");
        let before = chunk.bytes.len();
        let mut remaining = count;
        for payload in payloads {
            remaining -= 1;
            let flags = if remaining > 0 { FLAG_BATCH_CONTINUES } else { 0 };
            encode_record(&mut chunk.bytes, seed, lsn, watermark, flags, payload);
            lsn = lsn.next();
        }
        debug_assert_eq!(remaining, 0);
        debug_assert_eq!(chunk.bytes.len() - before, frame_bytes);
        let last = Lsn(lsn.0 - 1);
        chunk.last_lsn = last;
        let added = chunk.bytes.len() - before;
        st.chain(node, Lsn(last.0 + 1 - count as u64));
        st.next_lsn = lsn;
        st.tail_end += added as u64;
        st.staged_bytes += added;
        st.staged_records += count;
        if st.filling && st.next_lsn.0 - 1 - st.synced.0 >= st.group_target {
            self.group_filled.notify_one();
        }
        Ok((st, last, first_at))
    }

    fn push_chunk(&self, st: &mut State<V::File>, new_segment: Option<SegmentHeader>) {
        let mut bytes = st.free_buffers.pop().unwrap_or_default();
        bytes.clear();
        st.staged.push(Chunk {
            segment: st.tail_first_lsn,
            new_segment,
            offset: st.tail_end,
            bytes,
            first_lsn: st.next_lsn,
            last_lsn: st.next_lsn,
        });
    }

    /// Makes sure everything up to `lsn` reached write(): leads write rounds
    /// or waits for the leader.
    pub fn wait_written<'g>(&'g self, mut st: MutexGuard<'g, State<V::File>>, lsn: Lsn) -> Result<()> {
        debug_assert!(lsn < st.next_lsn, "waiting for an LSN never assigned");
        while st.written < lsn {
            if let Some(cause) = &st.poisoned {
                return Err(Error::Poisoned(cause.clone()));
            }
            if !st.writing && !st.staged.is_empty() {
                st = self.write_round(st);
            } else if !self.help_direct_writes(&mut st, lsn) {
                // A write round in flight will cover it.
                debug_assert!(st.writing || st.inflight > 0, "LSN {lsn} is neither staged nor being written");
                self.park(st, lsn, false);
                if self.written_lsn.load(Ordering::Acquire) >= lsn.0 {
                    return Ok(()); // covered: no need to take the lock again
                }
                st = self.state.lock();
            }
        }
        Ok(())
    }

    /// Makes sure everything up to `lsn` is on stable storage. The leader
    /// writes out everything staged and then syncs it, so a whole group
    /// costs one write() and one fdatasync; the others park until a sync
    /// covers them or they are called to lead the next group.
    pub fn wait_synced<'g>(&'g self, mut st: MutexGuard<'g, State<V::File>>, lsn: Lsn) -> Result<()> {
        debug_assert!(lsn < st.next_lsn, "waiting for an LSN never assigned");
        while st.synced < lsn {
            if let Some(cause) = &st.poisoned {
                return Err(Error::Poisoned(cause.clone()));
            }
            let must_wait = if st.syncing || st.writing {
                true
            } else if !st.staged.is_empty() {
                st = self.write_round(st);
                false
            } else if st.written < lsn {
                let helped = self.help_direct_writes(&mut st, lsn);
                debug_assert!(helped || st.inflight > 0, "LSN {lsn} is neither staged nor being written");
                !helped
            } else {
                st = self.sync_round(st);
                false
            };
            if must_wait {
                self.park(st, lsn, true);
                if self.synced_lsn.load(Ordering::Acquire) >= lsn.0 {
                    return Ok(()); // covered: no need to take the lock again
                }
                st = self.state.lock();
            }
        }
        Ok(())
    }

    /// Records that LSNs `first..=last` are in the kernel, ending at `end` in
    /// the active segment, and advances `written` (and the readable end)
    /// over every contiguous completed range. A range completed ahead of an
    /// earlier one still in flight waits in `completed`: `written` never
    /// passes a hole, so nothing is acknowledged behind one.
    fn complete(&self, st: &mut State<V::File>, first: Lsn, last: Lsn, end: u64) {
        if first != st.written.next() {
            debug_assert!(first > st.written.next());
            st.completed.push((first, last, end));
            return;
        }
        st.written = last;
        st.active_end = end;
        while let Some(at) = st.completed.iter().position(|&(f, _, _)| f == st.written.next()) {
            let (_, last, end) = st.completed.swap_remove(at);
            st.written = last;
            st.active_end = end;
        }
        self.store_progress(st);
    }

    /// Copies `written`, `synced` and the acknowledged LSN into their
    /// atomics, in the critical section that advanced them: whoever sees
    /// the state advanced (a waiter checking `written` under the lock) and
    /// then reads an atomic finds it advanced too.
    /// The acknowledged LSN goes first: a waiter that returns on seeing
    /// `written_lsn` or `synced_lsn` (acquire) then sees it too.
    fn store_progress(&self, st: &State<V::File>) {
        self.acknowledged_lsn.store(self.acknowledged(st).0, Ordering::Release);
        self.written_lsn.store(st.written.0, Ordering::Release);
        self.synced_lsn.store(st.synced.0, Ordering::Release);
    }

    /// The append path of `Periodic` and `Never`: reserves the LSNs and the
    /// file range and encodes the records under `state`, then writes them
    /// with no lock held, so concurrent appenders each make their own
    /// write() side by side instead of handing records to a leader and
    /// sleeping. An appender whose range is written but sits behind another
    /// one not yet completed writes that one too (its bytes are kept in
    /// `State::direct` for this): an acknowledgement never waits for a
    /// thread preempted between reserving and writing. Returns `None`
    /// (nothing reserved) when the append must take the staged path:
    /// records are staged ahead of it, or it needs a roll-over.
    pub fn append_direct<'a>(
        &self,
        payloads: impl IntoIterator<Item = &'a [u8]>,
        count: usize,
        frame_bytes: usize,
    ) -> Result<Option<Lsn>> {
        match self.reserve_direct(payloads, count, frame_bytes, None)? {
            Some(reserved) => self.write_reserved(reserved).map(Some),
            None => Ok(None),
        }
    }

    /// The first half of [`Shared::append_direct`]: under `state`, gives
    /// the records their LSNs and file range and encodes them, and links
    /// `node` (their payloads) into the chain, still under `state` (before
    /// any other thread can write or acknowledge them). Whoever gets a reservation
    /// must hand it to [`Shared::write_reserved`] (or drop it: then the
    /// appenders behind it write it).
    pub fn reserve_direct<'a>(
        &self,
        payloads: impl IntoIterator<Item = &'a [u8]>,
        count: usize,
        frame_bytes: usize,
        node: Option<&Arc<Chained>>,
    ) -> Result<Option<Reserved<V::File>>> {
        let mut buffer = ENCODE_BUFFER.with(|cached| cached.borrow_mut().take()).unwrap_or_default();
        if Arc::get_mut(&mut buffer).is_none() {
            buffer = Arc::default(); // a helper still holds the last one
        }
        // Allocated here, not under `state`: a malloc that waits (for an
        // allocator's arena another thread holds) would hold every appender.
        Arc::get_mut(&mut buffer).expect("the buffer is this thread's alone").reserve(frame_bytes);
        let mut st = self.lock_state();
        st.check_open()?;
        let must_roll =
            st.tail_end + frame_bytes as u64 > self.options.segment_bytes && st.tail_end > SEGMENT_HEADER_BYTES as u64;
        if !st.staged.is_empty() || st.tail_first_lsn != st.active_first_lsn || must_roll {
            return Ok(None);
        }
        let first = st.next_lsn;
        let last = Lsn(first.0 + count as u64 - 1);
        let offset = st.tail_end;
        let (seed, watermark) = (st.tail_header.seed(), st.synced);
        {
            let bytes = Arc::get_mut(&mut buffer).expect("the buffer is this thread's alone");
            bytes.clear();
            let mut lsn = first;
            for (i, payload) in payloads.into_iter().enumerate() {
                let flags = if i + 1 < count { FLAG_BATCH_CONTINUES } else { 0 };
                encode_record(bytes, seed, lsn, watermark, flags, payload);
                lsn = lsn.next();
            }
            debug_assert_eq!(bytes.len(), frame_bytes);
        }
        st.next_lsn = last.next();
        st.tail_end += frame_bytes as u64;
        let file = st.active.clone();
        let write = DirectWrite { first, last, segment: st.active_first_lsn, offset, bytes: buffer, file };
        st.direct.push_back(write.clone());
        st.inflight += 1;
        st.chain(node, first);
        Ok(Some(Reserved(write)))
    }

    /// The second half of [`Shared::append_direct`]: writes a reservation
    /// with no lock held, then makes sure everything up to it is written
    /// (writing what is in the way itself). Returns its last LSN.
    pub fn write_reserved(&self, reserved: Reserved<V::File>) -> Result<Lsn> {
        let DirectWrite { first, last, offset, bytes: buffer, file, .. } = reserved.0;
        let result = file.write_all_at(&buffer, offset);
        let mut st = self.lock_state();
        st.inflight -= 1;
        self.finish_direct(&mut st, first, result);
        let outcome = self.help_until_written(st, last);
        if buffer.capacity() <= ENCODE_BUFFER_KEPT_BYTES {
            ENCODE_BUFFER.with(|cached| *cached.borrow_mut() = Some(buffer));
        }
        outcome.map(|()| last)
    }

    /// Records the outcome of writing the direct write that starts at
    /// `first` (by its owner or a helper): completes it, unless someone
    /// already did, or poisons the log.
    fn finish_direct(&self, st: &mut MutexGuard<'_, State<V::File>>, first: Lsn, result: std::io::Result<()>) {
        match result {
            Ok(()) => {
                if let Some(at) = st.direct.iter().position(|d| d.first == first) {
                    let done = st.direct.remove(at).expect("found");
                    let end = done.offset + done.bytes.len() as u64;
                    self.complete(st, done.first, done.last, end);
                    st.writes += 1;
                }
            }
            Err(e) => {
                let e = Error::io("write", self.dir.join(super::segment_file_name(st.active_first_lsn)))(e);
                log::error!("walden: write failed, the log is poisoned: {e}");
                st.poisoned.get_or_insert(Arc::new(e));
            }
        }
        self.wake(st);
    }

    /// Writes every direct write reserved up to `lsn` that is not yet
    /// completed, whoever reserved it. Returns whether there was any.
    /// One at a time, with no allocation under `state` (a malloc that
    /// waits there would hold every appender): those reserved up to `lsn`
    /// when the call began have LSNs up to it, later ones above it.
    fn help_direct_writes(&self, st: &mut MutexGuard<'_, State<V::File>>, lsn: Lsn) -> bool {
        let mut helped = Lsn::ZERO;
        while let Some(write) = st.direct.iter().find(|d| d.first > helped && d.first <= lsn).cloned() {
            let DirectWrite { first, offset, bytes, file, .. } = write;
            let result = MutexGuard::unlocked(st, || file.write_all_at(&bytes, offset));
            if result.is_ok() && st.direct.iter().any(|d| d.first == first) {
                st.helped_writes += 1; // completed by this helper, not its owner
            }
            self.finish_direct(st, first, result);
            helped = first;
        }
        helped > Lsn::ZERO
    }

    /// Waits until `written` reaches `lsn`, writing the direct writes in
    /// the way itself and waiting only for a write round (whose chunks are
    /// its leader's to write).
    fn help_until_written(&self, mut st: MutexGuard<'_, State<V::File>>, lsn: Lsn) -> Result<()> {
        while st.written < lsn {
            if let Some(cause) = &st.poisoned {
                return Err(Error::Poisoned(cause.clone()));
            }
            if !self.help_direct_writes(&mut st, lsn) {
                return self.wait_written(st, lsn);
            }
        }
        Ok(())
    }

    /// Wakes every waiter whose LSN is now covered (all of them if the log
    /// is poisoned) and, if no round is running and some still wait, one
    /// parked thread among those to lead the next round (or, if only tasks
    /// wait, the timer thread). The leader is woken with `state` held,
    /// first, so its round overlaps the other wake-ups; the covered waiters
    /// are woken with `state` released, so that they do not queue on the
    /// lock while it is held for all of their wake-ups. (Unparking the
    /// leader with `state` released too was measured slower in an earlier
    /// version: it then synced sooner with smaller groups.)
    fn wake(&self, st: &mut MutexGuard<'_, State<V::File>>) {
        self.store_progress(st);
        let (written, synced, poisoned) = (st.written, st.synced, st.poisoned.is_some());
        let covered = |w: &Waiter| poisoned || w.lsn <= if w.durable { synced } else { written };
        if !st.writing && !st.syncing && st.direct.is_empty() {
            let leader = st.waiters.iter().rposition(|w| !covered(w) && matches!(w.wake, Wake::Thread(_)));
            if let Some(at) = leader {
                st.waiters.swap_remove(at).wake.wake();
            } else if st.waiters.iter().any(|w| !covered(w)) {
                self.leader_wake.notify_one();
            }
        }
        let mut woken = Vec::new(); // allocates only if someone is woken
        let followers_sleep = self.wake_followers(st, &mut woken);
        let mut at = 0;
        while at < st.waiters.len() {
            if covered(&st.waiters[at]) {
                woken.push(st.waiters.swap_remove(at).wake);
            } else {
                at += 1;
            }
        }
        if !woken.is_empty() || followers_sleep {
            MutexGuard::unlocked(st, || {
                woken.into_iter().for_each(Wake::wake);
                if followers_sleep {
                    self.feed.wake_sleepers();
                }
            });
        }
    }

    /// The followers' part of `wake`, after `store_progress`: whether a
    /// follower thread may sleep on the feed (then `wake` wakes them with
    /// `state` released), and moves the waker of each task whose LSN is now
    /// acknowledged into `woken`. With no follower thread asleep this is a
    /// fence, two loads and a comparison.
    fn wake_followers(&self, st: &mut State<V::File>, woken: &mut Vec<Wake>) -> bool {
        let acknowledged = self.acknowledged(st);
        let ended = st.poisoned.is_some() || st.closed || st.shutdown;
        if ended {
            self.feed.end();
        }
        let sleepers = self.feed.sleepers();
        if !st.follow_tasks.is_empty() {
            let mut at = 0;
            while at < st.follow_tasks.len() {
                if ended || st.follow_tasks[at].1 <= acknowledged {
                    let (id, _, waker) = st.follow_tasks.swap_remove(at);
                    woken.push(Wake::Task { id, waker });
                } else {
                    at += 1;
                }
            }
        }
        sleepers
    }

    /// For a follower thread that saw the log end (`Feed::wait`): what it
    /// finds for `lsn`, under `state`.
    pub fn followed_end(&self, lsn: Lsn) -> Followed {
        let st = self.state.lock();
        self.followed_now(&st, lsn).expect("the feed ends only once the log did")
    }

    /// For a follower's task: `Ready` as `Feed::wait` would
    /// return, or registers `waker` (replacing the one `id` registered) to
    /// be woken when the acknowledged LSN reaches `lsn` or the log ends.
    pub fn poll_followed(&self, lsn: Lsn, id: &mut Option<u64>, waker: &Waker) -> Poll<Followed> {
        let mut st = self.state.lock();
        if let Some(outcome) = self.followed_now(&st, lsn) {
            self.forget_follower_task(&mut st, id);
            return Poll::Ready(outcome);
        }
        let registered = id.and_then(|id| st.follow_tasks.iter().position(|(other, _, _)| *other == id));
        match registered {
            Some(at) => {
                let entry = &mut st.follow_tasks[at];
                entry.1 = lsn;
                if !entry.2.will_wake(waker) {
                    entry.2 = waker.clone();
                }
            }
            None => {
                let new_id = st.next_task_id;
                st.next_task_id += 1;
                *id = Some(new_id);
                st.follow_tasks.push((new_id, lsn, waker.clone()));
            }
        }
        Poll::Pending
    }

    /// What a follower waiting for `lsn` finds now, if it need not wait.
    fn followed_now(&self, st: &State<V::File>, lsn: Lsn) -> Option<Followed> {
        if self.acknowledged(st) >= lsn {
            Some(Followed::Ready)
        } else if let Some(cause) = &st.poisoned {
            Some(Followed::Poisoned(cause.clone()))
        } else if st.closed || st.shutdown {
            Some(Followed::Ended)
        } else {
            None
        }
    }

    /// Removes a follower task's registration, if it has one.
    pub fn forget_follower_task(&self, st: &mut State<V::File>, id: &mut Option<u64>) {
        if let Some(id) = id.take() {
            st.follow_tasks.retain(|(other, _, _)| *other != id);
        }
    }

    /// Parks the calling thread, `state` released, until a round wakes it:
    /// covered, poisoned, or called to lead. Spurious wake-ups are fine:
    /// callers re-check.
    fn park(&self, mut st: MutexGuard<'_, State<V::File>>, lsn: Lsn, durable: bool) {
        st.waiters.push(Waiter { lsn, durable, wake: Wake::Thread(std::thread::current()) });
        drop(st);
        std::thread::park();
    }

    /// The LSN up to which appends are acknowledged in the fsync mode's
    /// terms: synced in `Always`, written otherwise.
    pub fn acknowledged(&self, st: &State<V::File>) -> Lsn {
        match self.options.fsync {
            FsyncMode::Always => st.synced,
            FsyncMode::Periodic { .. } | FsyncMode::Never => st.written,
        }
    }

    /// Blocks until every record up to `lsn` is acknowledged in the mode's
    /// terms, leading rounds or waiting for the leader.
    pub fn wait_acknowledged(&self, lsn: Lsn) -> Result<()> {
        let st = self.state.lock();
        self.check_assigned(&st, lsn)?;
        match self.options.fsync {
            FsyncMode::Always => self.wait_synced(st, lsn),
            FsyncMode::Periodic { .. } | FsyncMode::Never => self.wait_written(st, lsn),
        }
    }

    fn check_assigned(&self, st: &State<V::File>, lsn: Lsn) -> Result<()> {
        if lsn >= st.next_lsn {
            return Err(Error::InvalidArgument(format!(
                "LSN {lsn} was never appended (the last appended is {})",
                Lsn(st.next_lsn.0 - 1)
            )));
        }
        Ok(())
    }

    /// One poll of a future waiting until `lsn` is acknowledged in the
    /// mode's terms. Never writes or syncs on the caller's thread while the
    /// log is open: it registers the task's waker and raises `demand`, and
    /// the timer thread leads the rounds. `id` is the future's registration
    /// (given on the first pending poll, kept for later ones).
    pub fn poll_acknowledged(&self, lsn: Lsn, id: &mut Option<u64>, waker: &Waker) -> Poll<Result<Lsn>> {
        let mut st = self.state.lock();
        if let Err(e) = self.check_assigned(&st, lsn) {
            return Poll::Ready(Err(e));
        }
        if let Some(cause) = &st.poisoned {
            return Poll::Ready(Err(Error::Poisoned(cause.clone())));
        }
        if self.acknowledged(&st) >= lsn {
            self.forget_task(&mut st, id);
            return Poll::Ready(Ok(lsn));
        }
        if st.shutdown {
            // The log was dropped without close(): no timer thread is left
            // to lead, so this poll does (the one case that blocks).
            drop(st);
            return Poll::Ready(self.wait_acknowledged(lsn).map(|()| lsn));
        }
        let durable = matches!(self.options.fsync, FsyncMode::Always);
        let registered = id.and_then(|id| {
            st.waiters.iter().position(|w| matches!(&w.wake, Wake::Task { id: other, .. } if *other == id))
        });
        match registered {
            Some(at) => {
                if let Wake::Task { waker: old, .. } = &mut st.waiters[at].wake {
                    if !old.will_wake(waker) {
                        *old = waker.clone();
                    }
                }
            }
            None => {
                let new_id = st.next_task_id;
                st.next_task_id += 1;
                *id = Some(new_id);
                st.waiters.push(Waiter { lsn, durable, wake: Wake::Task { id: new_id, waker: waker.clone() } });
            }
        }
        if lsn > st.demand {
            st.demand = lsn;
            self.leader_wake.notify_one();
        }
        Poll::Pending
    }

    /// Removes a future's registration, if it still has one (it was
    /// dropped, or completed on a poll that was not a wake-up's).
    pub fn forget_task(&self, st: &mut State<V::File>, id: &mut Option<u64>) {
        if let Some(id) = id.take() {
            st.waiters.retain(|w| !matches!(&w.wake, Wake::Task { id: other, .. } if *other == id));
        }
    }

    /// One write round as leader: everything staged goes to the kernel.
    pub fn write_round<'g>(&'g self, mut st: MutexGuard<'g, State<V::File>>) -> MutexGuard<'g, State<V::File>> {
        debug_assert!(!st.writing);
        if st.staged.is_empty() || st.poisoned.is_some() {
            return st;
        }
        st.writing = true;
        let spare = std::mem::take(&mut st.spare_chunks);
        let mut chunks = std::mem::replace(&mut st.staged, spare);
        st.staged_bytes = 0;
        st.staged_records = 0;
        let mut active = st.active.clone();
        drop(st);
        // Room is free again: appenders blocked on back-pressure may stage.
        self.progress.notify_all();

        let mut outcome = Ok(());
        for chunk in &chunks {
            if let Some(header) = chunk.new_segment {
                // Direct writes in flight go to the segment about to be
                // sealed: they land first, and then its end is known.
                let (end, last) = {
                    let mut st = self.state.lock();
                    // Direct writes go to the segment about to be sealed:
                    // they land first (written here if their owners have
                    // not yet), and then its end is known. An owner's own
                    // write may still come later: the same bytes again.
                    while self.help_direct_writes(&mut st, Lsn(u64::MAX)) {}
                    debug_assert!(st.completed.is_empty() || st.poisoned.is_some());
                    (st.active_end, st.written)
                };
                if last.next() != header.first_lsn {
                    break; // a failed direct write left a hole; the log is poisoned
                }
                match self.roll(header, end, last) {
                    Ok(file) => {
                        active = file.clone();
                        let mut st = self.state.lock();
                        // The roll synced the previous segment whole.
                        st.synced = st.synced.max(last);
                        self.store_progress(&st);
                        st.active = file;
                        st.active_first_lsn = chunk.segment;
                        st.active_end = SEGMENT_HEADER_BYTES as u64;
                    }
                    Err(e) => {
                        outcome = Err(e);
                        break;
                    }
                }
            }
            debug_assert!(!chunk.bytes.is_empty());
            if let Err(e) = active.write_all_at(&chunk.bytes, chunk.offset) {
                outcome = Err(Error::io("write", self.dir.join(super::segment_file_name(chunk.segment)))(e));
                break;
            }
            let mut st = self.state.lock();
            self.complete(&mut st, chunk.first_lsn, chunk.last_lsn, chunk.offset + chunk.bytes.len() as u64);
            st.writes += 1;
        }

        let mut st = self.state.lock();
        if let Err(e) = outcome {
            log::error!("walden: write failed, the log is poisoned: {e}");
            st.poisoned.get_or_insert(Arc::new(e));
        }
        for chunk in chunks.drain(..) {
            if st.free_buffers.len() < 4 && chunk.bytes.capacity() <= self.options.group_max_bytes * 2 {
                st.free_buffers.push(chunk.bytes);
            }
        }
        st.spare_chunks = chunks;
        st.writing = false;
        self.wake(&mut st);
        self.progress.notify_all();
        st
    }

    /// One sync round as leader.
    pub fn sync_round<'g>(&'g self, mut st: MutexGuard<'g, State<V::File>>) -> MutexGuard<'g, State<V::File>> {
        debug_assert!(!st.syncing);
        st.syncing = true;
        match self.options.group_delay {
            Some(delay) => {
                drop(st);
                std::thread::sleep(delay);
                st = self.state.lock();
            }
            None => st = self.fill_group(st),
        }
        if !st.writing && !st.staged.is_empty() {
            st = self.write_round(st);
        }
        let synced_before = st.synced;
        let target = st.written;
        let file = st.active.clone();
        let first = st.active_first_lsn;
        drop(st);
        let started = Instant::now();
        let result = file.sync_data();
        let took_us = started.elapsed().as_micros().min(u128::from(u32::MAX)) as u64;
        let mut st = self.state.lock();
        st.syncing = false;
        st.syncs += 1;
        st.fsync_average_us = if st.fsync_average_us == 0 { took_us } else { (st.fsync_average_us * 7 + took_us) / 8 };
        match result {
            Ok(()) => {
                st.synced = st.synced.max(target);
                self.store_progress(&st);
                // Records this sync carried, plus those that arrived during it.
                st.group_target = (st.next_lsn.0 - 1).saturating_sub(synced_before.0);
            }
            Err(e) => {
                let e = Error::io("fsync", self.dir.join(super::segment_file_name(first)))(e);
                log::error!("walden: fsync failed, the log is poisoned: {e}");
                st.poisoned.get_or_insert(Arc::new(e));
            }
        }
        self.wake(&mut st);
        st
    }

    /// Waits, before an fdatasync, until as many records wait to be synced
    /// as when the last one returned (`group_target`), for at most half an
    /// average fdatasync. With many writers each appending again as soon
    /// as it is acknowledged, the writers the last sync woke are staging
    /// their next record right now: without the wait, the sync would leave
    /// without them, and the writers would split into two groups that
    /// alternate, each syncing half of them. A lone writer, or a group
    /// already complete, does not wait.
    fn fill_group<'g>(&'g self, mut st: MutexGuard<'g, State<V::File>>) -> MutexGuard<'g, State<V::File>> {
        let pending = |st: &State<V::File>| (st.next_lsn.0 - 1).saturating_sub(st.synced.0);
        if pending(&st) >= st.group_target || st.fsync_average_us == 0 {
            return st;
        }
        let deadline = Instant::now() + std::time::Duration::from_micros((st.fsync_average_us / 2).min(2_000));
        st.filling = true;
        while pending(&st) < st.group_target && st.poisoned.is_none() {
            if self.group_filled.wait_until(&mut st, deadline).timed_out() {
                break;
            }
        }
        st.filling = false;
        st
    }

    /// Seals the active segment and publishes the next one. Called by the
    /// write leader only, so segments change in LSN order.
    /// `end` and `last` are where the previous segment's records end.
    fn roll(&self, header: SegmentHeader, end: u64, last: Lsn) -> Result<Arc<V::File>> {
        let mut segments = self.segments.lock();
        let previous = segments.last_mut().expect("there is an active segment");
        debug_assert_eq!(last.next(), header.first_lsn);
        previous.file.sync_data().map_err(Error::io("fsync", &previous.path))?;
        previous.sealed = Some((end, last));
        let spare = match self.spare.lock().take() {
            Some(spare) => spare,
            None => {
                create_spare(&self.fs, &self.dir, self.options.segment_bytes, self.options.preallocate.zero_fill())?
            }
        };
        let segment = publish_segment(&self.fs, &self.dir, spare, header)?;
        let file = segment.file.clone();
        segments.push(segment);
        Ok(file)
    }

    /// Prepares the next segment file if the active one is half full.
    fn prepare_spare(&self) -> Result<()> {
        let half_full = {
            let st = self.state.lock();
            st.tail_end > self.options.segment_bytes / 2
        };
        if !half_full {
            return Ok(());
        }
        let mut spare = self.spare.lock();
        if spare.is_none() {
            *spare = Some(create_spare(
                &self.fs,
                &self.dir,
                self.options.segment_bytes,
                self.options.preallocate.zero_fill(),
            )?);
        }
        Ok(())
    }

    /// Writes out everything appended so far and, if `sync`, fdatasyncs it
    /// (in every mode). Used by `sync()`, `close()` and drop.
    pub fn flush(&self, sync: bool) -> Result<Lsn> {
        let st = self.state.lock();
        let target = Lsn(st.next_lsn.0 - 1);
        if sync {
            self.wait_synced(st, target)?;
        } else {
            self.wait_written(st, target)?;
        }
        Ok(target)
    }

    /// The timer thread: the `Periodic` fsync, writing out (in `Always`
    /// also syncing) pipelined appends nobody waits for, and leading rounds
    /// for waiting tasks (`State::demand`). It never does anything slow but
    /// the write and fsync it exists for.
    pub fn timer(self: Arc<Self>) {
        let (tick, sync) = match self.options.fsync {
            FsyncMode::Periodic { interval } => (interval, true),
            FsyncMode::Always => (self.options.flush_interval, true),
            FsyncMode::Never => (self.options.flush_interval, false),
        };
        let mut next = Instant::now() + tick;
        loop {
            let mut st = self.state.lock();
            let demanded = |st: &State<V::File>| st.poisoned.is_none() && st.demand > self.acknowledged(st);
            while !st.shutdown && Instant::now() < next && !demanded(&st) {
                self.leader_wake.wait_until(&mut st, next);
            }
            if st.shutdown {
                return;
            }
            if demanded(&st) {
                // Tasks wait: acknowledge what they need, in the mode's terms.
                let target = st.demand;
                let outcome = match self.options.fsync {
                    FsyncMode::Always => self.wait_synced(st, target),
                    FsyncMode::Periodic { .. } | FsyncMode::Never => self.wait_written(st, target),
                };
                drop(outcome); // an error poisons the log; the tasks report it
                continue;
            }
            // Everything appended before this tick, staged records included.
            let target = Lsn(st.next_lsn.0 - 1);
            next = Instant::now() + tick;
            if st.poisoned.is_none() && (st.written < target || (sync && st.synced < target)) {
                // An error poisons the log; appenders and `sync()` report it.
                let outcome = if sync { self.wait_synced(st, target) } else { self.wait_written(st, target) };
                drop(outcome);
            }
        }
    }

    /// The preparer thread: zero-fills the next segment file while the
    /// active one is past half full, so a roll-over rarely waits for it.
    pub fn preparer(self: Arc<Self>) {
        // (segment, offset): where writeback of the active segment was last
        // started up to. Only `Periodic` and `Never` start it: in `Always`
        // every record is synced as it is written.
        let mut kicked = (Lsn::ZERO, 0u64);
        let kicks = !matches!(self.options.fsync, FsyncMode::Always);
        loop {
            {
                let mut st = self.state.lock();
                if !st.shutdown {
                    // Woken at once by shutdown (closing must not wait for a tick).
                    self.timer_wake.wait_for(&mut st, std::time::Duration::from_millis(5));
                }
                if st.shutdown {
                    return;
                }
            }
            if kicks {
                self.start_writeback(&mut kicked);
            }
            if let Err(e) = self.prepare_spare() {
                log::warn!("walden: could not prepare the next segment ahead of time: {e}");
            }
        }
    }

    /// Starts the kernel writing back what the active segment has gained
    /// since the last call (whole 64 KiB blocks, once 1 MiB has gathered),
    /// without waiting. A roll-over fdatasyncs the segment whole before its
    /// successor is used; started early, that write is mostly done by then.
    fn start_writeback(&self, kicked: &mut (Lsn, u64)) {
        const BLOCK: u64 = 64 << 10;
        const AT_LEAST: u64 = 1 << 20;
        let (file, segment, end) = {
            let st = self.state.lock();
            if st.poisoned.is_some() {
                return;
            }
            (st.active.clone(), st.active_first_lsn, st.active_end)
        };
        if kicked.0 != segment {
            *kicked = (segment, 0);
        }
        let end = end / BLOCK * BLOCK;
        if end < kicked.1 + AT_LEAST {
            return;
        }
        match file.start_writeback(kicked.1, end - kicked.1) {
            Ok(()) => kicked.1 = end,
            // Only a hint: the fdatasync that needs these bytes reports errors.
            Err(e) => log::debug!("walden: could not start writeback early: {e}"),
        }
    }

    pub fn stop_background(&self) {
        let mut st = self.state.lock();
        st.shutdown = true;
        self.progress.notify_all();
        self.timer_wake.notify_all();
        self.leader_wake.notify_all();
        // Tasks still waiting poll again and find no timer thread to lead.
        for waiter in std::mem::take(&mut st.waiters) {
            waiter.wake.wake();
        }
        // Followers find the log ended once they have read what it acknowledged.
        self.feed.end();
        self.feed.wake_sleepers();
        for (_, _, waker) in std::mem::take(&mut st.follow_tasks) {
            waker.wake();
        }
    }
}
