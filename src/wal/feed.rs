//! [`Feed`]: what a log's followers share: one window of records read
//! from the segment files once, and the wake-up of follower threads.
//!
//! **The window.** Records are read (their CRC checked) by one follower at
//! a time: with one pread from where the last batch ended, in the same
//! segment (no map and no lock of the log's: a follower keeping up costs
//! the appenders no `state` lock and no unmap's TLB shootdown), else
//! through a [`WalReader`]'s map of the segments the log lists, into a [`Batch`] of at most [`BATCH_RECORDS_MAX`]
//! records and [`BATCH_BYTES_MAX`] payload bytes, which goes into a window
//! of recent batches weighing at most [`WINDOW_BYTES_MAX`] (payloads plus
//! a little per record and batch; the newest batch always stays). A follower whose next LSN is in the
//! window takes that batch (an `Arc`) and delivers from it with no lock; one
//! whose next LSN is the window's end plus one reads the next batch for
//! everyone, under `reading`, on its own thread; one that fell behind the
//! window reads the files on its own (a private [`Cursor`]) up to the
//! window's start, then joins it. The appenders never read, copy or wait
//! for anything here: the window is filled by the followers that need it.
//!
//! **The wake-up.** A follower that finds nothing acknowledged past what it
//! delivered spins for at most [`SPIN_MAX`] watching `acknowledged_lsn`
//! (one follower at a time, `spinning`; not at all for a while after a
//! spinner found itself preempted: the machine is busy; never on a
//! machine of [`SPIN_CPUS_MIN`] CPUs or fewer), then parks on
//! `wake`. The log's `wake`
//! (writer.rs) stores the acknowledged LSN, then calls [`Feed::sleepers`]:
//! a fence and two loads, and only if a follower sleeps and none spins, a
//! `notify_all`, made with the log's `state` released. While a follower
//! spins, it wakes the sleepers itself when it sees the LSN move, so the
//! appenders pay no wake-up; a follower that wakes takes every record
//! acknowledged by then. The price: a spinner preempted on a busy machine
//! delays the sleepers' wake-up (and its own delivery) until it runs
//! again, a scheduler's time slice; it then stops spinning for a while.
//!
//! **Streaming.** A follower whose last wait was shorter than [`NAP`], or
//! ended with more than one record to deliver, watches by napping instead
//! (sleeping `NAP` between looks, the same `spinning` role, so the log
//! still wakes nobody), until a nap in which nothing was acknowledged:
//! while records stream in, every follower wakes once a nap and takes all
//! that gathered, and none spins on a CPU the appenders need. The price:
//! a streamed record waits up to a nap (plus the timer's slack) longer.
//!
//! **Gathering.** A follower that delivered all the window holds and finds
//! a few more records acknowledged does not read them at once if they
//! stream in fast: [`Feed::gather_wait`] estimates, from the records
//! acknowledged since the window's newest batch was read, how long
//! [`GATHER_RECORDS`] take to arrive, and the follower (a blocking call,
//! never `poll_next` or `try_next`) sleeps that long first, at most
//! [`GATHER_MAX`]. Without it, followers of a fast stream never wait: each
//! finds a few records past the window and reads them, so 8 followers of
//! one writer at ~1 M records/s read batches of ~3.5 records (282k preads
//! for 1M records) and took 251 ns of CPU per record delivered, against
//! ~45 with it (`walden bench-follow`'s CPU column, BENCHMARKS.md). A
//! stream slower than [`GATHER_RECORDS_MIN`] per `GATHER_MAX` (64k
//! records/s) is never held back; a faster one's records reach a follower
//! up to `GATHER_MAX` (plus the timer's slack) later.
//!
//! **Invariant:** a batch holds only records at or below the acknowledged
//! LSN its reader saw, contiguous from `Batch::first`, each CRC-checked
//! once by the reader; the window's batches are contiguous and in LSN
//! order; its memory is bounded by `WINDOW_BYTES_MAX` plus one batch, and
//! each follower holds at most one batch more; a cursor keeps at most
//! `BATCH_BYTES_MAX` of pread buffer between batches.
//!
//! **Invariant:** no lost wake-up: a follower sets `sleeping` (under
//! `sleep`), fences, then checks the acknowledged LSN and `ended` before it
//! waits; the log stores them, fences, then reads `spinning` and
//! `sleeping`; the spinner clears `spinning`, fences, then reads the LSN
//! and `sleeping`. Of each pair, one sees the other's store: a sleeper is
//! woken by the log, or by the spinner the log saw.

use super::reader::{ReadPosition, WalReader};
use super::segment::Segment;
use super::writer::{Followed, Shared};
use crate::format::{decode_record, padded_len};
use crate::io::{Vfs, VfsFile};
use crate::{Error, Lsn, Result};
use parking_lot::{Condvar, Mutex};
use std::collections::VecDeque;
use std::sync::atomic::{fence, AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The most records one read puts in a batch.
pub(crate) const BATCH_RECORDS_MAX: usize = 4096;
/// The most payload bytes one read puts in a batch (a single larger record
/// makes a batch of one).
pub(crate) const BATCH_BYTES_MAX: usize = 256 << 10;
/// The most the window's batches weigh beyond its newest batch (payload
/// bytes plus a little per record and per batch: `Batch::weight_bytes`).
pub(crate) const WINDOW_BYTES_MAX: usize = 8 << 20;
/// The longest a follower spins before it parks: long enough to cover a
/// steady writer's gap between two records (a parked thread's wake-up on a
/// virtual machine costs tens of microseconds), short enough that an idle
/// log costs an idle follower nothing after it.
pub(crate) const SPIN_MAX: Duration = Duration::from_micros(200);
/// The fewest bytes [`Cursor::read_on`] reads: a page.
const READ_ON_BYTES_MIN: usize = 4 << 10;
/// How long a follower whose records stream in sleeps before it looks
/// again (see [`Feed::wait`]): what it adds to a streamed record's
/// delivery, plus the timer's slack (50 µs by default on Linux).
pub(crate) const NAP: Duration = Duration::from_micros(50);
/// How many records a follower at the window's end lets gather before it
/// reads them, when they stream in fast ([`Feed::gather_wait`]).
pub(crate) const GATHER_RECORDS: u64 = 1024;
/// The longest a follower waits for records to gather: what gathering may
/// add to a streamed record's delivery.
pub(crate) const GATHER_MAX: Duration = Duration::from_millis(1);
/// A stream that brings fewer records than this in [`GATHER_MAX`] (64k
/// records/s) is not gathered: each record is read as it comes.
pub(crate) const GATHER_RECORDS_MIN: u64 = 64;
/// On a machine of this many CPUs or fewer a follower never spins: the
/// spinner takes half of a 2-CPU machine from the appenders and the log's
/// threads, and a preempted spinner delays every sleeper. Measured on 2
/// busy vCPUs (`walden bench-follow`, a record every 100 µs, the writer
/// sleeping between appends): delivery p99 24-253 µs parked against
/// 66-3,400 µs with the spin.
const SPIN_CPUS_MIN: usize = 2;
/// A gap between two looks of the spinner this long means it lost its CPU.
const PREEMPTED: Duration = Duration::from_micros(50);
/// How many waits park at once after a spinner was preempted.
const SPIN_SKIPS_AFTER_PREEMPTION: u32 = 1000;

/// Consecutive records read from the files once, shared by the followers.
pub(crate) struct Batch {
    first: Lsn,
    /// The payloads, back to back.
    bytes: Vec<u8>,
    /// Where each payload ends in `bytes`.
    ends: Vec<u32>,
    /// Each record's batch-continues flag.
    continues: Vec<bool>,
}

impl Batch {
    /// An empty batch starting at `first`, with room for `records` records
    /// of `bytes` payload bytes in all.
    fn with_capacity(first: Lsn, records: usize, bytes: usize) -> Batch {
        Batch {
            first,
            bytes: Vec::with_capacity(bytes),
            ends: Vec::with_capacity(records),
            continues: Vec::with_capacity(records),
        }
    }

    /// Adds the next record's payload (its flag goes in `continues`).
    fn push(&mut self, payload: &[u8]) {
        self.bytes.extend_from_slice(payload);
        self.ends.push(u32::try_from(self.bytes.len()).expect("a batch is under 4 GiB"));
    }

    /// The LSN of its last record.
    pub fn last(&self) -> Lsn {
        Lsn(self.first.0 + self.ends.len() as u64 - 1)
    }

    /// How many records it holds.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// The memory it takes, roughly: its buffers (5 bytes a record past the
    /// payloads) and a fixed part (so a window of empty records is bounded too).
    fn weight_bytes(&self) -> usize {
        self.bytes.capacity() + self.ends.capacity() * 4 + self.continues.capacity() + 128
    }

    pub fn holds(&self, lsn: Lsn) -> bool {
        self.first <= lsn && lsn <= self.last()
    }

    /// The payload of the record at `lsn`, which it holds, and whether more
    /// of its atomic batch follow it.
    pub fn get(&self, lsn: Lsn) -> (&[u8], bool) {
        debug_assert!(self.holds(lsn));
        let i = (lsn.0 - self.first.0) as usize;
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        (&self.bytes[start..self.ends[i] as usize], self.continues[i])
    }
}

/// Reads batches from the files, resuming where its last batch ended.
pub(crate) struct Cursor<V: Vfs> {
    /// Where the record after the last one read starts.
    position: Option<ReadPosition>,
    /// The reader in use, bounded by the acknowledged LSN when it was made;
    /// dropped once it has nothing more (no map held while waiting).
    reader: Option<WalReader<V>>,
    /// The segment `position` is in, for [`Cursor::read_on`].
    segment: Option<Segment<V::File>>,
    /// The frame length of the record last read: what `read_on` expects
    /// the next ones to take.
    frame_bytes: usize,
    /// `read_on`'s buffer, kept for the next batch if at most
    /// [`BATCH_BYTES_MAX`] (a larger one, for a large record, is dropped).
    buffer: Vec<u8>,
}

impl<V: Vfs> Cursor<V> {
    pub fn new() -> Cursor<V> {
        Cursor { position: None, reader: None, segment: None, frame_bytes: 0, buffer: Vec::new() }
    }

    /// Drops the reader (and its map), the segment and the buffer.
    pub fn release(&mut self) {
        self.reader = None;
        self.segment = None;
        self.buffer = Vec::new();
    }

    /// Reads the records from `from` to at most `last` on from where the
    /// last batch ended, in the same segment, with one pread: no map, no
    /// lock of the log's, so a follower that keeps up with the appenders
    /// costs them no `state` lock and no map's unmap (whose TLB shootdown
    /// interrupts every CPU the process runs on). `None` if that does not
    /// give at least one record: the records from `from` are in the next
    /// segment, or do not fit the bytes read, or do not decode (the
    /// caller then reads them the ordinary way, which reports damage).
    ///
    /// The bytes past the written end may be changing as they are read
    /// (an appender's pwrite): only records up to `last`, acknowledged and
    /// so written whole before it was, are decoded, each at the offset
    /// the record before it ends, its CRC and LSN checked.
    fn read_on(&mut self, from: Lsn, last: Lsn) -> Option<Batch> {
        let at = self.position.filter(|p| p.lsn == from)?;
        let segment = self.segment.as_ref().filter(|s| s.header.first_lsn == at.segment_first_lsn)?;
        let want = (last.0 - from.0 + 1).min(BATCH_RECORDS_MAX as u64) as usize;
        let frame_bytes = self.frame_bytes.max(crate::format::RECORD_HEADER_BYTES);
        let len = (want * frame_bytes).clamp(READ_ON_BYTES_MIN, BATCH_BYTES_MAX + frame_bytes);
        if self.buffer.len() < len {
            self.buffer.resize(len, 0);
        }
        let bytes = &mut self.buffer[..len];
        segment.file.read_exact_at(bytes, at.offset).ok()?;
        let seed = segment.header.seed();
        let mut batch = Batch::with_capacity(from, want, len.min(BATCH_BYTES_MAX));
        let (mut expected, mut offset) = (from, 0usize);
        while expected <= last && batch.ends.len() < BATCH_RECORDS_MAX && batch.bytes.len() < BATCH_BYTES_MAX {
            let Ok(record) = decode_record(&bytes[offset..], seed) else { break };
            if record.header.lsn != expected {
                break;
            }
            batch.push(record.payload);
            batch.continues.push(record.header.batch_continues());
            offset += record.header.frame_len();
            self.frame_bytes = record.header.frame_len();
            expected = expected.next();
        }
        if self.buffer.len() > BATCH_BYTES_MAX {
            self.buffer = Vec::new();
        }
        if expected == from {
            return None;
        }
        let offset = at.offset + offset as u64;
        self.position = Some(ReadPosition { lsn: expected, segment_first_lsn: at.segment_first_lsn, offset });
        Some(batch)
    }

    /// Reads the records from `from` to at most `last` (acknowledged, the
    /// caller saw to it) into a batch, their CRCs checked. A record that
    /// cannot be read because its segment was removed is
    /// [`Error::Compacted`].
    pub fn read(&mut self, shared: &Shared<V>, from: Lsn, last: Lsn) -> Result<Batch> {
        debug_assert!(from <= last);
        let oldest = shared.feed.oldest();
        if from < oldest {
            return Err(Error::Compacted { lsn: from, oldest });
        }
        if self.reader.as_ref().is_none_or(|r| r.upto() < from) {
            self.reader = None;
            if let Some(batch) = self.read_on(from, last) {
                return Ok(batch);
            }
            let acknowledged = Lsn(shared.acknowledged_lsn.load(Ordering::Acquire));
            let (segments, written) = super::readable_segments(shared);
            // The acknowledged LSN was loaded first, so `written` covers it.
            debug_assert!(written >= acknowledged && acknowledged >= last);
            let upto = written.min(acknowledged);
            self.reader = Some(match self.position.filter(|p| p.lsn == from) {
                Some(at) => WalReader::at(segments, at, upto),
                None => WalReader::new(segments, from, upto),
            });
        }
        let reader = self.reader.as_mut().expect("made above");
        let last = last.min(reader.upto());
        let mut batch = Batch::with_capacity(from, 0, 0);
        let mut expected = from;
        while expected <= last && batch.ends.len() < BATCH_RECORDS_MAX && batch.bytes.len() < BATCH_BYTES_MAX {
            let (lsn, payload) = match reader.next_ref() {
                Some(Ok(found)) => found,
                Some(Err(e)) => {
                    self.reader = None;
                    return Err(e);
                }
                None => break,
            };
            if lsn != expected {
                break; // the reader started past `from`: its segment went meanwhile
            }
            if batch.bytes.is_empty() {
                let want = (last.0 - from.0 + 1).min(BATCH_RECORDS_MAX as u64) as usize;
                batch.bytes.reserve((payload.len() * want).min(BATCH_BYTES_MAX + payload.len()));
                batch.ends.reserve(want);
                batch.continues.reserve(want);
            }
            let frame_bytes = padded_len(payload.len());
            batch.push(payload);
            batch.continues.push(reader.last_batch_continues());
            self.frame_bytes = frame_bytes;
            let at = reader.last_position().expect("a record was just returned");
            assert_eq!(at.lsn, lsn, "the reader reports the record it returned");
            self.position = Some(ReadPosition {
                lsn: lsn.next(),
                segment_first_lsn: at.segment_first_lsn,
                offset: at.offset + frame_bytes as u64,
            });
            expected = lsn.next();
        }
        self.segment = reader.last_segment().cloned();
        if reader.upto() < expected {
            self.reader = None;
        }
        if expected == from {
            // An acknowledged LSN unread: only a segment removed between
            // the check above and the reader's listing does that.
            self.reader = None;
            let oldest = shared.feed.oldest();
            return Err(Error::Compacted { lsn: from, oldest: oldest.max(from.next()) });
        }
        Ok(batch)
    }
}

/// The window of batches recently read, contiguous, oldest first.
struct Window {
    batches: VecDeque<Arc<Batch>>,
    /// What every batch but the newest weighs (`Batch::weight_bytes`).
    weight_bytes: usize,
    /// The last LSN it holds; if it holds none, the one before where it starts.
    end: Lsn,
    /// When its newest batch was read (`None` while it holds none).
    read_at: Option<Instant>,
}

impl Window {
    fn first(&self) -> Lsn {
        self.batches.front().map_or(self.end.next(), |b| b.first)
    }

    fn find(&self, lsn: Lsn) -> Option<Arc<Batch>> {
        if lsn < self.first() || lsn > self.end {
            return None;
        }
        let at = self.batches.partition_point(|b| b.last() < lsn);
        let batch = &self.batches[at];
        debug_assert!(batch.holds(lsn));
        Some(batch.clone())
    }

    fn push(&mut self, batch: Arc<Batch>) {
        debug_assert_eq!(batch.first, self.end.next(), "the window is contiguous");
        if let Some(newest) = self.batches.back() {
            self.weight_bytes += newest.weight_bytes();
        }
        self.end = batch.last();
        self.read_at = Some(Instant::now());
        self.batches.push_back(batch);
        while self.weight_bytes > WINDOW_BYTES_MAX {
            let oldest = self.batches.pop_front().expect("the weight counts held batches");
            self.weight_bytes -= oldest.weight_bytes();
        }
    }

    /// Empties it, to start again at `from`.
    fn restart(&mut self, from: Lsn) {
        self.batches.clear();
        self.weight_bytes = 0;
        self.end = Lsn(from.0 - 1);
        self.read_at = None;
    }
}

/// Where a follower's next record is (see [`Feed::batch_for`]).
pub(crate) enum Found {
    /// In this batch of the window (read just now, perhaps).
    Batch(Arc<Batch>),
    /// Before the window, which starts at this LSN: read it on your own.
    Behind(Lsn),
}

/// A follower's claim on the segments it has still to read: while it
/// lives, [`Feed::held_cutoff`] keeps them from `truncate_before`, up to
/// `keep_bytes` of sealed segments, the newest.
pub(crate) struct RetentionHold {
    /// The next LSN its follower delivers (it only grows).
    next: AtomicU64,
    keep_bytes: u64,
}

impl RetentionHold {
    /// Notes that the follower's next record is `next`.
    pub fn advance(&self, next: Lsn) {
        self.next.store(next.0, Ordering::Release);
    }
}

/// The first LSN of the oldest segment a hold of `keep_bytes` may keep
/// (`segments` oldest first, never empty, the last one active): the newest
/// sealed segments whose records weigh at most `keep_bytes` together.
fn oldest_within<F>(segments: &[Segment<F>], keep_bytes: u64) -> Lsn {
    let mut kept = 0u64;
    let mut oldest = segments.len() - 1;
    for (i, segment) in segments.iter().enumerate().rev().skip(1) {
        kept += segment.sealed.map_or(0, |(end, _)| end);
        if kept > keep_bytes {
            break;
        }
        oldest = i;
    }
    segments[oldest].header.first_lsn
}

/// A value alone on its cache lines (two: adjacent lines are fetched together).
#[repr(align(128))]
struct Aligned<T>(T);

/// What the followers of one log share (see the module's docs).
pub(crate) struct Feed<V: Vfs> {
    window: Mutex<Window>,
    /// Held by the follower reading the next batch for the window.
    reading: Mutex<Cursor<V>>,
    /// The oldest LSN the log holds (its first segment's first LSN): set by
    /// `Wal::truncate_before` under `segments`, read without a lock.
    /// On a cache line of its own: every follower loads it for every
    /// record it delivers, and it is written once a truncation (a line
    /// shared with the window's lock or the counters would be taken from
    /// the followers' caches at every batch).
    oldest_lsn: Aligned<AtomicU64>,
    /// Records read from the files into the window, and by followers
    /// behind it on their own (`WalStats`).
    pub records_shared: AtomicU64,
    pub records_alone: AtomicU64,
    /// The retention holds of followers that asked for one
    /// ([`crate::Wal::follow_retained`]); a dropped follower's is dead.
    holds: Mutex<Vec<std::sync::Weak<RetentionHold>>>,
    /// Set once the log is poisoned, closed or dropped.
    ended: AtomicBool,
    /// Whether a follower thread may be parked on `wake`.
    sleeping: AtomicBool,
    /// Whether a follower is spinning (at most one at a time).
    spinning: AtomicBool,
    /// Waits still to park without spinning, after a spinner was preempted.
    spin_skips: AtomicU32,
    /// Whether a follower spins at all: only on a machine of more than
    /// [`SPIN_CPUS_MIN`] CPUs (a follower still naps while streaming).
    spins: bool,
    sleep: Mutex<()>,
    wake: Condvar,
}

impl<V: Vfs> Feed<V> {
    pub fn new(oldest: Lsn) -> Feed<V> {
        Feed {
            window: Mutex::new(Window { batches: VecDeque::new(), weight_bytes: 0, end: Lsn::ZERO, read_at: None }),
            reading: Mutex::new(Cursor::new()),
            oldest_lsn: Aligned(AtomicU64::new(oldest.0)),
            records_shared: AtomicU64::new(0),
            records_alone: AtomicU64::new(0),
            holds: Mutex::new(Vec::new()),
            ended: AtomicBool::new(false),
            sleeping: AtomicBool::new(false),
            spinning: AtomicBool::new(false),
            spin_skips: AtomicU32::new(0),
            spins: std::thread::available_parallelism().is_ok_and(|cpus| cpus.get() > SPIN_CPUS_MIN),
            sleep: Mutex::new(()),
            wake: Condvar::new(),
        }
    }

    pub fn oldest(&self) -> Lsn {
        Lsn(self.oldest_lsn.0.load(Ordering::Acquire))
    }

    /// Under `segments`, after segments were removed.
    pub fn set_oldest(&self, oldest: Lsn) {
        self.oldest_lsn.0.store(oldest.0, Ordering::Release);
    }

    /// The batch holding `next` (acknowledged up to `last`, the caller saw
    /// to it): from the window, or read into it now on this thread if
    /// `next` is just past it; or where the window starts, if `next` is
    /// before it.
    pub fn batch_for(&self, shared: &Shared<V>, next: Lsn, last: Lsn) -> Result<Found> {
        if let Some(found) = self.in_window(next) {
            return Ok(found);
        }
        let mut cursor = self.reading.lock();
        // Another follower may have read it while this one waited.
        if let Some(found) = self.in_window(next) {
            return Ok(found);
        }
        {
            let mut window = self.window.lock();
            if next != window.end.next() {
                // Past the window (or the window is empty): it moves here;
                // the followers still in it read on their own once through.
                window.restart(next);
                cursor.release();
            }
        }
        let batch = Arc::new(cursor.read(shared, next, last)?);
        self.records_shared.fetch_add(batch.ends.len() as u64, Ordering::Relaxed);
        self.window.lock().push(batch.clone());
        Ok(Found::Batch(batch))
    }

    /// For a follower whose next record (`next`, acknowledged up to
    /// `acknowledged`) is just past the window: how long to let records
    /// gather before it reads them: until [`GATHER_RECORDS`] are expected,
    /// at most [`GATHER_MAX`], at the pace of the records acknowledged since
    /// the window's newest batch was read. `None`: read now (the record is
    /// in the window, enough records wait already, none does, or the
    /// stream is slower than [`GATHER_RECORDS_MIN`] per `GATHER_MAX`).
    pub fn gather_wait(&self, next: Lsn, acknowledged: Lsn) -> Option<Duration> {
        let (end, read_at) = {
            let window = self.window.lock();
            (window.end, window.read_at?)
        };
        let waiting = acknowledged.0.checked_sub(end.0)?;
        if next != end.next() || waiting == 0 || waiting >= GATHER_RECORDS {
            return None;
        }
        let each = read_at.elapsed() / waiting as u32;
        if each.saturating_mul(GATHER_RECORDS_MIN as u32) > GATHER_MAX {
            return None;
        }
        Some(each.saturating_mul((GATHER_RECORDS - waiting) as u32).min(GATHER_MAX))
    }

    /// `next`'s batch or `Behind` if the window answers for it.
    fn in_window(&self, next: Lsn) -> Option<Found> {
        let window = self.window.lock();
        if let Some(batch) = window.find(next) {
            return Some(Found::Batch(batch));
        }
        let first = window.first();
        (!window.batches.is_empty() && next < first).then_some(Found::Behind(first))
    }

    /// Registers a hold for a follower whose next record is `next`.
    pub fn hold(&self, next: Lsn, keep_bytes: u64) -> Arc<RetentionHold> {
        let hold = Arc::new(RetentionHold { next: AtomicU64::new(next.0), keep_bytes });
        let mut holds = self.holds.lock();
        holds.retain(|h| h.strong_count() > 0);
        holds.push(Arc::downgrade(&hold));
        hold
    }

    /// The LSN below which `truncate_before(lsn)` may remove whole sealed
    /// segments (`segments`, oldest first, the last one active): `lsn`,
    /// or lower while a live hold's follower still has to read records
    /// from there, but never so low that a hold keeps more than its
    /// `keep_bytes` of sealed segments (a follower behind that bound gets
    /// [`Error::Compacted`] as any other).
    pub fn held_cutoff<F>(&self, lsn: Lsn, segments: &[Segment<F>]) -> Lsn {
        let mut holds = self.holds.lock();
        holds.retain(|h| h.strong_count() > 0);
        holds.iter().filter_map(std::sync::Weak::upgrade).fold(lsn, |cutoff, hold| {
            let next = Lsn(hold.next.load(Ordering::Acquire));
            cutoff.min(next.max(oldest_within(segments, hold.keep_bytes)))
        })
    }

    /// For the log, under `state`, once it is poisoned, closed or dropped.
    pub fn end(&self) {
        self.ended.store(true, Ordering::Release);
    }

    /// For the log, after it stored a new acknowledged LSN (or `end`ed):
    /// whether the caller must call [`Feed::wake_sleepers`] (with `state`
    /// released): a follower may sleep and none spins (a spinning follower
    /// wakes the sleepers itself when it sees the LSN move, so under load
    /// the appenders pay no wake-ups). A fence and two loads otherwise.
    pub fn sleepers(&self) -> bool {
        fence(Ordering::SeqCst);
        !self.spinning.load(Ordering::Relaxed) && self.take_sleepers()
    }

    /// Whether a follower may sleep, clearing the mark: the caller wakes them.
    fn take_sleepers(&self) -> bool {
        self.sleeping.load(Ordering::Relaxed) && self.sleeping.swap(false, Ordering::AcqRel)
    }

    pub fn wake_sleepers(&self) {
        let _sleep = self.sleep.lock();
        self.wake.notify_all();
    }

    /// Blocks a follower thread until the acknowledged LSN reaches `lsn`
    /// (perhaps not yet assigned), the log ends, or `deadline` passes:
    /// watching first if no other follower does (napping if `streaming`:
    /// the caller's last wait was shorter than [`NAP`] or found more than
    /// one record; else spinning), then parked.
    pub fn wait(&self, shared: &Shared<V>, lsn: Lsn, deadline: Option<Instant>, streaming: bool) -> Followed {
        let ready = || shared.acknowledged_lsn.load(Ordering::Acquire) >= lsn.0;
        let ended = || self.ended.load(Ordering::Acquire);
        if (streaming || (self.spins && !self.skip_spin()))
            && self.spinning.compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed).is_ok()
            && self.spin(shared, lsn, deadline, streaming)
        {
            return Followed::Ready;
        }
        loop {
            if ready() {
                return Followed::Ready;
            }
            if ended() {
                return shared.followed_end(lsn);
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Followed::TimedOut;
            }
            let mut sleep = self.sleep.lock();
            self.sleeping.store(true, Ordering::SeqCst);
            fence(Ordering::SeqCst);
            if ready() || ended() {
                continue;
            }
            match deadline {
                Some(deadline) => drop(self.wake.wait_until(&mut sleep, deadline)),
                None => self.wake.wait(&mut sleep),
            }
        }
    }

    /// Whether this wait parks at once because a spinner was preempted
    /// lately (counts the waits down).
    fn skip_spin(&self) -> bool {
        let skips = self.spin_skips.load(Ordering::Relaxed);
        skips > 0 && {
            self.spin_skips.store(skips - 1, Ordering::Relaxed); // a lost count is harmless
            true
        }
    }

    /// The watching follower (it set `spinning`): watches the acknowledged
    /// LSN until `lsn` is acknowledged, the log ends, `deadline` passes or
    /// its watch gives up (see [`Feed::spin_until`] and
    /// [`Feed::nap_until`]), waking the sleeping followers whenever it sees
    /// the LSN move (the log does not while one watches), then gives the
    /// role up. Returns whether `lsn` is acknowledged.
    fn spin(&self, shared: &Shared<V>, lsn: Lsn, deadline: Option<Instant>, nap: bool) -> bool {
        if nap {
            self.nap_until(shared, lsn, deadline);
        } else {
            self.spin_until(shared, lsn, deadline);
        }
        self.spinning.store(false, Ordering::SeqCst);
        // The log may have skipped a wake-up because this one watched: what
        // it stored before it read `spinning` is seen here, after the fence,
        // and so is any sleeper's mark: wake them, whatever was seen before.
        self.wake_marked_sleepers();
        shared.acknowledged_lsn.load(Ordering::Acquire) >= lsn.0
    }

    /// Fences, then wakes the sleeping followers if one marked itself.
    fn wake_marked_sleepers(&self) {
        fence(Ordering::SeqCst);
        if self.take_sleepers() {
            self.wake_sleepers();
        }
    }

    /// Watches for at most [`SPIN_MAX`] (and not past `deadline`) with the
    /// CPU's spin hint, never yielding (on a busy machine `sched_yield`
    /// hands the CPU away for a whole time slice); stops at once if it
    /// finds it was preempted (two looks [`PREEMPTED`] apart: the machine
    /// is busy, a spinner there is a CPU hog the scheduler makes wait for
    /// milliseconds, measured at load 9-11: p50 delivery 1-7 ms against
    /// 25 µs parked), and the next [`SPIN_SKIPS_AFTER_PREEMPTION`] waits
    /// park without spinning.
    fn spin_until(&self, shared: &Shared<V>, lsn: Lsn, deadline: Option<Instant>) {
        let acknowledged = || shared.acknowledged_lsn.load(Ordering::Acquire);
        let started = Instant::now();
        let until = deadline.map_or(started + SPIN_MAX, |d| d.min(started + SPIN_MAX));
        let mut seen = acknowledged();
        let mut looks = 0u32;
        let mut last_look = started;
        while seen < lsn.0 && !self.ended.load(Ordering::Acquire) {
            looks += 1;
            if looks.is_multiple_of(64) {
                let now = Instant::now();
                if now >= until {
                    break;
                }
                if now - last_look >= PREEMPTED {
                    // The CPU is not this thread's alone: spinning would only
                    // take it from others. Park, and let the next waits park too.
                    self.spin_skips.store(SPIN_SKIPS_AFTER_PREEMPTION, Ordering::Relaxed);
                    break;
                }
                last_look = now;
            }
            std::hint::spin_loop();
            let now_acknowledged = acknowledged();
            if now_acknowledged != seen {
                seen = now_acknowledged;
                self.wake_marked_sleepers();
            }
        }
    }

    /// Watches by sleeping [`NAP`] between looks (no CPU taken, and records
    /// gather: one wake-up per nap for every follower, paid by this one,
    /// none by the appenders), and stops after a nap in which the LSN did
    /// not move: the stream stopped.
    fn nap_until(&self, shared: &Shared<V>, lsn: Lsn, deadline: Option<Instant>) {
        let acknowledged = || shared.acknowledged_lsn.load(Ordering::Acquire);
        let mut seen = acknowledged();
        while seen < lsn.0 && !self.ended.load(Ordering::Acquire) {
            let now = Instant::now();
            let wake_at = deadline.map_or(now + NAP, |d| d.min(now + NAP));
            if wake_at <= now {
                break;
            }
            std::thread::sleep(wake_at - now);
            let now_acknowledged = acknowledged();
            if now_acknowledged == seen {
                break;
            }
            seen = now_acknowledged;
            self.wake_marked_sleepers();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::RealFs;

    fn feed_holding(first: u64, last: u64) -> Feed<RealFs> {
        let feed = Feed::new(Lsn(first));
        let mut batch = Batch::with_capacity(Lsn(first), (last - first + 1) as usize, 0);
        for _ in first..=last {
            batch.push(b"r");
        }
        feed.window.lock().restart(Lsn(first));
        feed.window.lock().push(Arc::new(batch));
        feed
    }

    #[test]
    fn a_follower_waits_for_records_to_gather_only_at_the_windows_end_of_a_fast_stream() {
        let feed = feed_holding(1, 10);
        // Fast: 10 records arrived within the moment since the batch was read.
        let wait = feed.gather_wait(Lsn(11), Lsn(20)).expect("a fast stream gathers");
        assert!(wait <= GATHER_MAX, "never longer than GATHER_MAX: {wait:?}");
        // Fast enough to gather, too slow to fill GATHER_RECORDS in
        // GATHER_MAX: it waits GATHER_MAX.
        let each = GATHER_MAX / (GATHER_RECORDS_MIN as u32 * 2);
        feed.window.lock().read_at = Some(Instant::now() - each * 2);
        assert_eq!(feed.gather_wait(Lsn(11), Lsn(12)), Some(GATHER_MAX));
        // Its next record is in the window: read it now.
        assert_eq!(feed.gather_wait(Lsn(5), Lsn(20)), None);
        // Nothing acknowledged past the window: the wait for it is the feed's.
        assert_eq!(feed.gather_wait(Lsn(11), Lsn(10)), None);
        // Enough have gathered already.
        assert_eq!(feed.gather_wait(Lsn(11), Lsn(10 + GATHER_RECORDS)), None);
        // Slow: one record in the 10 ms since the batch was read; fewer than
        // GATHER_RECORDS_MIN would come in GATHER_MAX.
        feed.window.lock().read_at = Some(Instant::now() - Duration::from_millis(10));
        assert_eq!(feed.gather_wait(Lsn(11), Lsn(11)), None);
        // A window emptied to start again knows no stream.
        feed.window.lock().restart(Lsn(11));
        assert_eq!(feed.gather_wait(Lsn(11), Lsn(20)), None);
    }
}
