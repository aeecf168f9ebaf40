//! [`Follower`]: every acknowledged record from an LSN on, in LSN order,
//! first those the log holds, then each new one as it is acknowledged.
//!
//! A follower reads the segment files (a [`WalReader`] bounded by the
//! acknowledged LSN, resumed at a [`ReadPosition`] so no segment is scanned
//! twice), never an in-memory buffer the appenders fill: a slow or idle
//! follower costs the appenders nothing and holds no records. It waits for
//! the log's `acknowledged_lsn` to reach its next LSN, woken by the log's
//! own wake-up (`Shared::wake`, which already holds `state`: a thread sleeps
//! on `Shared::followed`, a task leaves its waker in `State::follow_tasks`).
//! A follower never leads a write or a sync: it causes no I/O of the log's.
//!
//! **Invariant:** a follower delivers LSN `n` only once `acknowledged_lsn`
//! is at least `n` (so never a record a failed write or fdatasync left in
//! a file), each LSN once, in order, with no gap: a record it cannot read
//! because its segment was removed is [`Error::Compacted`], never skipped.

use super::reader::{ReadPosition, Record, WalReader};
use super::writer::{Followed, Shared};
use crate::format::padded_len;
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
/// did). It holds no records: between calls, at most the map of the segment
/// it reads.
pub struct Follower<V: Vfs = RealFs> {
    shared: Arc<Shared<V>>,
    /// The LSN of the next record to deliver.
    next: Lsn,
    /// Where the record at `next` starts, once a record was read: the next
    /// reader starts there instead of scanning its segment.
    position: Option<ReadPosition>,
    /// The reader in use, bounded by the acknowledged LSN when it was made.
    reader: Option<WalReader<V>>,
    /// This follower's task registration with the log, while it has one.
    registration: Option<u64>,
    /// Whether the record last delivered has more of its batch after it.
    batch_continues: bool,
    /// Set once an error or the end was returned.
    done: bool,
}

impl<V: Vfs> Follower<V> {
    pub(crate) fn new(shared: Arc<Shared<V>>, from: Lsn) -> Follower<V> {
        debug_assert!(from > Lsn::ZERO);
        Follower {
            shared,
            next: from,
            position: None,
            reader: None,
            registration: None,
            batch_continues: false,
            done: false,
        }
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

    fn acknowledged(&self) -> Lsn {
        Lsn(self.shared.acknowledged_lsn.load(Ordering::Acquire))
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
    /// (a page-cache read, as a record just written is).
    pub fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Record>>> {
        if self.done {
            return Poll::Ready(None);
        }
        if self.acknowledged() >= self.next {
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
        if self.done {
            return if ends_quietly { None } else { Some(Err(Error::Closed)) };
        }
        if self.acknowledged() < self.next {
            let outcome = self.shared.wait_followed(self.next, deadline);
            if !matches!(outcome, Followed::Ready) {
                return self.after_wait(outcome, ends_quietly);
            }
        }
        Some(self.read_acknowledged())
    }

    /// What a wait's outcome means for the caller.
    fn after_wait(&mut self, outcome: Followed, ends_quietly: bool) -> Option<Result<Record>> {
        match outcome {
            Followed::Ready => Some(self.read_acknowledged()),
            Followed::TimedOut => None,
            Followed::Poisoned(cause) => {
                self.finish();
                Some(Err(Error::Poisoned(cause)))
            }
            Followed::Ended => {
                self.finish();
                if ends_quietly {
                    None
                } else {
                    Some(Err(Error::Closed))
                }
            }
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
        let next = self.next;
        // Removed under a lagging follower: say so, never skip.
        let oldest = self.shared.segments.lock()[0].header.first_lsn;
        if next < oldest {
            return Err(Error::Compacted { lsn: next, oldest });
        }
        if self.reader.as_ref().is_none_or(|r| r.upto() < next) {
            let acknowledged = self.acknowledged();
            let (segments, written) = super::readable_segments(&self.shared);
            // The acknowledged LSN was loaded first, so `written` covers it.
            debug_assert!(written >= acknowledged);
            let upto = written.min(acknowledged);
            self.reader = Some(match self.position {
                Some(at) => WalReader::at(segments, at, upto),
                None => WalReader::new(segments, next, upto),
            });
        }
        let reader = self.reader.as_mut().expect("made above");
        let (lsn, payload) = match reader.next_ref() {
            Some(Ok(found)) => found,
            Some(Err(e)) => return Err(e),
            None => {
                // Only a segment removed between the check above and the
                // reader's listing can leave an acknowledged LSN unread.
                let oldest = self.shared.segments.lock()[0].header.first_lsn;
                return Err(Error::Compacted { lsn: next, oldest: oldest.max(next.next()) });
            }
        };
        if lsn != next {
            // The reader started past `next`: its segment was removed meanwhile.
            let oldest = self.shared.segments.lock()[0].header.first_lsn;
            return Err(Error::Compacted { lsn: next, oldest: oldest.max(lsn) });
        }
        let record = Record { lsn, payload: payload.to_vec() };
        self.batch_continues = reader.last_batch_continues();
        let at = reader.last_position().expect("a record was just returned");
        assert_eq!(at.lsn, lsn, "the reader reports the record it returned");
        self.position = Some(ReadPosition {
            lsn: lsn.next(),
            segment_first_lsn: at.segment_first_lsn,
            offset: at.offset + padded_len(record.payload.len()) as u64,
        });
        self.next = lsn.next();
        if reader.upto() < self.next {
            self.reader = None; // hold no map while waiting
        }
        Ok(record)
    }

    fn finish(&mut self) {
        self.done = true;
        self.reader = None;
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
