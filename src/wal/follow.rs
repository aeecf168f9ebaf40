//! [`Follower`]: every acknowledged record from an LSN on, in LSN order,
//! first those the log holds, then each new one as it is acknowledged.
//!
//! A follower delivers from batches of records read from the segment files
//! (never from a buffer the appenders fill): the log's followers share one
//! window of batches, each record read and CRC-checked once by whichever
//! follower needed it first, on its own thread (`feed.rs`); a follower
//! behind the window reads the files on its own, with a private cursor,
//! until it reaches the window. It waits for the log's `acknowledged_lsn`
//! to reach its next LSN: a thread spins briefly, then parks on the feed
//! (`Feed::wait`), a task leaves its waker in `State::follow_tasks`. A
//! follower never leads a write or a sync: it causes no I/O of the log's.
//!
//! **Invariant:** a follower delivers LSN `n` only once `acknowledged_lsn`
//! is at least `n` (so never a record a failed write or fdatasync left in
//! a file), each LSN once, in order, with no gap: a record it cannot read
//! because its segment was removed is [`Error::Compacted`], never skipped.
//! It checks the log's oldest LSN before each record it delivers.

use super::feed::{Batch, Cursor, Found, RetentionHold, NAP};
use super::reader::Record;
use super::writer::{Followed, Shared};
use crate::io::{RealFs, Vfs};
use crate::{Error, Lsn, Result};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// Follows a [`crate::Wal`]: from [`crate::Wal::follow`].
///
/// Blocking: iterate it (`next()` waits for the next acknowledged record;
/// it returns `None` once the log is closed or dropped and every record it
/// acknowledged was delivered), or call [`Follower::next_timeout`] and
/// [`Follower::try_next`], which never wait longer than they are told.
/// Async, on any runtime: [`Follower::next_async`] or
/// [`Follower::poll_next`] (a `Stream`'s method, without the dependency).
/// An error ends the follow: [`Error::Compacted`] if the records it needs
/// next were removed ([`crate::Wal::truncate_before`]) while it lagged,
/// [`Error::Poisoned`] once it has delivered everything a poisoned log
/// acknowledged, or a read error.
///
/// `Send`, and `'static`: it holds the log's shared state, not a borrow,
/// so it can outlive the [`crate::Wal`] handle (it then ends where the log
/// did). Between calls it holds at most the batch its next record is in
/// (bounded: see `feed.rs`), and none once it delivered everything
/// acknowledged; behind the window, at most the map of the segment it reads.
///
/// Latency: a record reaches a blocking follower soon after it is
/// acknowledged (tens of microseconds on an idle machine). Under a stream
/// of 64k records a second or more, a follower that has caught up lets
/// records gather before it reads them, up to about 1,024 and at most
/// 1 ms, so that it reads and wakes once for many: such a stream is
/// delivered in runs, each record up to 1 ms after its acknowledgement.
/// `try_next` and `poll_next` never wait for records to gather.
pub struct Follower<V: Vfs = RealFs> {
    shared: Arc<Shared<V>>,
    /// The LSN of the next record to deliver.
    next: Lsn,
    /// The batch holding `next`, while it holds more to deliver.
    batch: Option<Arc<Batch>>,
    /// The batch of the record [`Follower::next_ref`] lent last, held until
    /// the next call.
    lent: Option<Arc<Batch>>,
    /// Reads the files for this follower alone while it is behind the window.
    own: Cursor<V>,
    /// This follower's task registration with the log, while it has one.
    registration: Option<u64>,
    /// Whether the record last delivered has more of its batch after it.
    batch_continues: bool,
    /// Set once an error or the end was returned.
    done: bool,
    /// Whether its last wait was shorter than [`NAP`] or ended with more
    /// than one record to deliver: records stream in, the next wait naps.
    streaming: bool,
    /// The acknowledged LSN as last loaded (it only grows).
    seen: Lsn,
    /// Its retention hold, if it was made with one
    /// ([`crate::Wal::follow_retained`]).
    hold: Option<Arc<RetentionHold>>,
}

impl<V: Vfs> Follower<V> {
    pub(crate) fn new(shared: Arc<Shared<V>>, from: Lsn) -> Follower<V> {
        debug_assert!(from > Lsn::ZERO);
        Follower {
            shared,
            next: from,
            batch: None,
            lent: None,
            own: Cursor::new(),
            registration: None,
            batch_continues: false,
            done: false,
            streaming: false,
            seen: Lsn::ZERO,
            hold: None,
        }
    }

    /// Holds the segments this follower has still to read: while it lives
    /// (or until the next call), [`crate::Wal::truncate_before`] keeps
    /// every segment with a record from its next LSN on, so a consumer
    /// that falls behind a snapshot's truncation still reads on with no
    /// gap. Bounded: the hold keeps at most `keep_bytes` of sealed
    /// segments (the newest); a follower that falls further behind loses
    /// the older ones and gets [`Error::Compacted`] for them, as any
    /// follower would. A hold keeps files on disk, never memory.
    /// [`Error::Compacted`] if the records from its next LSN are gone already.
    pub fn retain(&mut self, keep_bytes: u64) -> Result<()> {
        // Under `segments`, so no truncation runs between the check of the
        // oldest LSN and the hold.
        let segments = self.shared.segments.lock();
        let oldest = segments[0].header.first_lsn;
        if self.next < oldest {
            return Err(Error::Compacted { lsn: self.next, oldest });
        }
        self.hold = Some(self.shared.feed.hold(self.next, keep_bytes));
        Ok(())
    }

    /// The LSN of the next record this follower delivers.
    pub fn next_lsn(&self) -> Lsn {
        self.next
    }

    /// Whether the record last delivered is followed by more records of
    /// the same atomic batch (false after a single append or a batch's last
    /// record): what a consumer that hands out whole batches groups by.
    pub fn batch_continues(&self) -> bool {
        self.batch_continues
    }

    /// The log's acknowledged LSN, loaded (and noted in `seen`).
    fn acknowledged(&mut self) -> Lsn {
        self.seen = Lsn(self.shared.acknowledged_lsn.load(Ordering::Acquire));
        self.seen
    }

    /// Whether `next` is acknowledged: known from the last load while the
    /// follower delivers what that load covered, so a record delivered
    /// costs no load of the line every append writes.
    fn next_acknowledged(&mut self) -> bool {
        self.next <= self.seen || self.acknowledged() >= self.next
    }

    /// The next record if it is acknowledged already, else `None` at once.
    /// Once the log has ended (closed or dropped) and everything it
    /// acknowledged was delivered: `Some(Err(Error::Closed))`.
    pub fn try_next(&mut self) -> Option<Result<Record>> {
        self.next_before(Some(Instant::now()), false)
    }

    /// The next record, waiting at most `timeout` for it to be
    /// acknowledged; `None` if it was not. After the end, as
    /// [`Follower::try_next`].
    pub fn next_timeout(&mut self, timeout: Duration) -> Option<Result<Record>> {
        self.next_before(Some(Instant::now() + timeout), false)
    }

    /// The next record, as [`Iterator::next`] waits for it, lent instead of
    /// copied: its LSN and its payload, borrowed from the batch the
    /// follower read (shared with the other followers) until the next call.
    /// A consumer that decodes each record, or hands it on, so saves an
    /// allocation and a copy a record. `None` once the log has ended and
    /// every record it acknowledged was delivered, or after an error.
    pub fn next_ref(&mut self) -> Option<Result<(Lsn, &[u8])>> {
        self.lent = None;
        match self.wait_for_next(None, true) {
            Ok(true) => {}
            Ok(false) => return None,
            Err(e) => return Some(Err(e)),
        }
        if let Err(e) = self.batch_at_next() {
            self.finish();
            return Some(Err(e));
        }
        let lsn = self.next;
        let batch: &Batch = match self.advance() {
            Some(done_with) => self.lent.insert(done_with),
            None => self.batch.as_ref().expect("the batch holds the next record too"),
        };
        Some(Ok((lsn, batch.get(lsn).0)))
    }

    /// The next record, waited for without blocking a thread: the task is
    /// woken when the log acknowledges it. `None` once the log has ended
    /// and everything it acknowledged was delivered.
    pub async fn next_async(&mut self) -> Option<Result<Record>> {
        std::future::poll_fn(|cx| self.poll_next(cx)).await
    }

    /// `Stream::poll_next`: the next record if it is acknowledged, else
    /// `Pending` with the task's waker registered with the log. `Ready(None)`
    /// once the log has ended and everything it acknowledged was delivered.
    /// Reading a record maps and reads its segment on the calling thread
    /// (a page-cache read, as a record just written is), or waits the
    /// moment another follower takes to read the batch it needs.
    pub fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Record>>> {
        if self.done {
            return Poll::Ready(None);
        }
        if self.next_acknowledged() {
            self.forget_registration();
            return Poll::Ready(Some(self.read_acknowledged()));
        }
        match self.shared.poll_followed(self.next, &mut self.registration, cx.waker()) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(outcome) => Poll::Ready(self.after_wait(outcome, true)),
        }
    }

    /// Waits until `deadline` (forever if `None`). `ends_quietly`: the
    /// iterator's convention, the end is `None`; otherwise `None` means
    /// "not yet" and the end is `Error::Closed`.
    fn next_before(&mut self, deadline: Option<Instant>, ends_quietly: bool) -> Option<Result<Record>> {
        match self.wait_for_next(deadline, ends_quietly) {
            Ok(true) => Some(self.read_acknowledged()),
            Ok(false) => None,
            Err(e) => Some(Err(e)),
        }
    }

    /// Waits until `deadline` (forever if `None`) for the record at `next`
    /// to be acknowledged: `Ok(true)` once it is, `Ok(false)` if the
    /// deadline passed or the log ended (`ends_quietly`), else the error.
    fn wait_for_next(&mut self, deadline: Option<Instant>, ends_quietly: bool) -> Result<bool> {
        if self.done {
            return if ends_quietly { Ok(false) } else { Err(Error::Closed) };
        }
        if self.next_acknowledged() {
            if !self.batch.as_ref().is_some_and(|batch| batch.holds(self.next)) {
                self.gather(deadline);
            }
            return Ok(true);
        }
        let began = Instant::now();
        let outcome = self.shared.feed.wait(&self.shared, self.next, deadline, self.streaming);
        if matches!(outcome, Followed::Ready) {
            self.streaming = began.elapsed() < NAP || self.acknowledged() > self.next;
        }
        self.outcome(outcome, ends_quietly)
    }

    /// Before reading past the window's end, lets records gather if they
    /// stream in (see [`super::feed::Feed::gather_wait`]), not past `deadline`.
    fn gather(&mut self, deadline: Option<Instant>) {
        let acknowledged = self.acknowledged();
        let Some(wait) = self.shared.feed.gather_wait(self.next, acknowledged) else {
            return;
        };
        let wait = deadline.map_or(wait, |d| wait.min(d.saturating_duration_since(Instant::now())));
        if !wait.is_zero() {
            std::thread::sleep(wait);
        }
    }

    /// What a wait's outcome means for the caller, as
    /// [`Follower::wait_for_next`] returns it.
    fn outcome(&mut self, outcome: Followed, ends_quietly: bool) -> Result<bool> {
        match outcome {
            Followed::Ready => Ok(true),
            Followed::TimedOut => Ok(false),
            Followed::Poisoned(cause) => {
                self.finish();
                Err(Error::Poisoned(cause))
            }
            Followed::Ended => {
                self.finish();
                if ends_quietly {
                    Ok(false)
                } else {
                    Err(Error::Closed)
                }
            }
        }
    }

    /// What a wait's outcome means for a caller of `poll_next`.
    fn after_wait(&mut self, outcome: Followed, ends_quietly: bool) -> Option<Result<Record>> {
        match self.outcome(outcome, ends_quietly) {
            Ok(true) => Some(self.read_acknowledged()),
            Ok(false) => None,
            Err(e) => Some(Err(e)),
        }
    }

    /// Reads the record at `next`, which the caller saw acknowledged.
    fn read_acknowledged(&mut self) -> Result<Record> {
        let result = self.read_next();
        if result.is_err() {
            self.finish();
        }
        result
    }

    fn read_next(&mut self) -> Result<Record> {
        self.batch_at_next()?;
        let lsn = self.next;
        let batch = self.batch.as_ref().expect("batch_at_next sets it");
        let record = Record { lsn, payload: batch.get(lsn).0.to_vec() };
        self.advance();
        Ok(record)
    }

    /// Makes `batch` the batch holding the record at `next` (acknowledged).
    fn batch_at_next(&mut self) -> Result<()> {
        let next = self.next;
        // Removed under a lagging follower: say so, never skip.
        let oldest = self.shared.feed.oldest();
        if next < oldest {
            return Err(Error::Compacted { lsn: next, oldest });
        }
        if !self.batch.as_ref().is_some_and(|batch| batch.holds(next)) {
            self.batch = None;
            self.batch = Some(self.fetch(next)?);
        }
        Ok(())
    }

    /// Delivers the record at `next` (in `batch`): `next` moves past it,
    /// and the batch is let go (returned) unless it holds the record after,
    /// so a waiting follower holds none. No reference count is touched.
    fn advance(&mut self) -> Option<Arc<Batch>> {
        let batch = self.batch.as_ref().expect("batch_at_next sets it");
        self.batch_continues = batch.get(self.next).1;
        self.next = self.next.next();
        if let Some(hold) = &self.hold {
            hold.advance(self.next);
        }
        match batch.holds(self.next) {
            true => None,
            false => self.batch.take(),
        }
    }

    /// The batch holding `next`, which the caller saw acknowledged: the
    /// window's, or one read on its own while it is behind the window.
    fn fetch(&mut self, next: Lsn) -> Result<Arc<Batch>> {
        let acknowledged = self.acknowledged();
        debug_assert!(acknowledged >= next);
        match self.shared.feed.batch_for(&self.shared, next, acknowledged)? {
            Found::Batch(batch) => {
                self.own.release();
                Ok(batch)
            }
            Found::Behind(window_first) => {
                let last = acknowledged.min(Lsn(window_first.0 - 1));
                let batch = self.own.read(&self.shared, next, last)?;
                self.shared.feed.records_alone.fetch_add(batch.len() as u64, Ordering::Relaxed);
                Ok(Arc::new(batch))
            }
        }
    }

    fn finish(&mut self) {
        self.done = true;
        self.batch = None;
        self.lent = None;
        self.own.release();
        self.forget_registration();
    }

    fn forget_registration(&mut self) {
        if self.registration.is_some() {
            let mut st = self.shared.state.lock();
            self.shared.forget_follower_task(&mut st, &mut self.registration);
        }
    }
}

impl<V: Vfs> Iterator for Follower<V> {
    type Item = Result<Record>;

    /// Waits for the next acknowledged record; `None` once the log has
    /// ended and every record it acknowledged was delivered, or after an
    /// error was returned.
    fn next(&mut self) -> Option<Result<Record>> {
        self.next_before(None, true)
    }
}

impl<V: Vfs> Drop for Follower<V> {
    fn drop(&mut self) {
        self.forget_registration();
    }
}
