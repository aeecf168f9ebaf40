//! Commits between the log and the state: [`Pending`], the records in the
//! log but not yet applied, and [`CommitTicket`], a commit in flight.
//!
//! **Invariant:** `Pending` holds records in LSN order, gap-free, starting
//! right after the state's LSN: a record gets its LSN and its place here
//! under the same lock, and leaves only by being applied.

use super::{Core, StateMachine};
use crate::io::{RealFs, Vfs};
use crate::wal::{Durable, Ticket};
use crate::{Error, Lsn, Result};
use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

/// Records committed to the log but not yet applied to the state (their
/// acknowledgement may still be on its way), in LSN order. A commit
/// builder ([`crate::Engine::commit_with`]) sees them beside the state,
/// since its records come after them.
#[derive(Default)]
pub struct Pending {
    /// The payloads, back to back.
    bytes: Vec<u8>,
    /// Each record's LSN and the end of its payload in `bytes`.
    records: std::collections::VecDeque<(Lsn, usize)>,
    /// Set when a record could not be applied: nothing later can be.
    pub(super) broken: Option<Arc<Error>>,
}

impl Pending {
    /// The pending records, oldest first.
    pub fn records(&self) -> impl DoubleEndedIterator<Item = (Lsn, &[u8])> + ExactSizeIterator + '_ {
        (0..self.records.len()).map(move |i| {
            let start = if i == 0 { 0 } else { self.records[i - 1].1 };
            let (lsn, end) = self.records[i];
            (lsn, &self.bytes[start..end])
        })
    }

    /// The newest pending record, if any.
    pub fn last(&self) -> Option<(Lsn, &[u8])> {
        self.records().next_back()
    }

    /// How many records are pending.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether no record is pending.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    pub(super) fn check_open(&self) -> Result<()> {
        match &self.broken {
            Some(e) => Err(Error::Poisoned(e.clone())),
            None => Ok(()),
        }
    }

    /// Adds the records of one append, whose last LSN is `last`.
    pub(super) fn push<P: AsRef<[u8]>>(&mut self, last: Lsn, payloads: &[P]) {
        let first = Lsn(last.0 + 1 - payloads.len() as u64);
        debug_assert!(self.records.back().is_none_or(|&(lsn, _)| lsn.next() == first), "gap-free");
        for (i, payload) in payloads.iter().enumerate() {
            self.bytes.extend_from_slice(payload.as_ref());
            self.records.push_back((Lsn(first.0 + i as u64), self.bytes.len()));
        }
    }

    /// How many of the oldest records are at or below `lsn`.
    pub(super) fn acknowledged_count(&self, lsn: Lsn) -> usize {
        self.records.partition_point(|&(record, _)| record <= lsn)
    }

    /// Removes the `count` oldest records.
    pub(super) fn remove_first(&mut self, count: usize) {
        if count == 0 {
            return;
        }
        if count == self.records.len() {
            self.records.clear();
            self.bytes.clear();
            return;
        }
        let cut = self.records[count - 1].1;
        self.records.drain(..count);
        self.bytes.drain(..cut);
        for (_, end) in self.records.iter_mut() {
            *end -= cut;
        }
    }
}

/// A commit in flight: its records are in the log, and it is applied to
/// the state (so readers see it) once the log acknowledges it.
/// [`CommitTicket::wait`] blocks until then; `.await` waits without
/// blocking a thread (on any runtime). Owned: `'static` and `Send`.
/// Dropping it does not cancel the commit: it is still applied once
/// acknowledged (by the next commit or read that finds it so).
#[must_use = "a commit is acknowledged only when its ticket is waited on"]
pub struct CommitTicket<S: StateMachine, V: Vfs = RealFs> {
    pub(super) core: Arc<Core<S, V>>,
    pub(super) ticket: Ticket<V>,
}

impl<S: StateMachine, V: Vfs> CommitTicket<S, V> {
    /// The LSN of the (last) record of the commit.
    pub fn lsn(&self) -> Lsn {
        self.ticket.lsn()
    }

    /// Blocks until the commit is acknowledged in the fsync mode's terms
    /// and applied; returns its (last) LSN. An error if the log failed
    /// first: the commit is then never applied.
    pub fn wait(self) -> Result<Lsn> {
        let lsn = self.ticket.wait()?;
        self.core.publish(lsn)?;
        Ok(lsn)
    }
}

impl<S: StateMachine, V: Vfs> IntoFuture for CommitTicket<S, V> {
    type Output = Result<Lsn>;
    type IntoFuture = Committed<S, V>;

    fn into_future(self) -> Committed<S, V> {
        Committed { core: self.core, durable: self.ticket.into_future() }
    }
}

/// A [`CommitTicket`] awaited: resolves once the commit is acknowledged
/// and applied. Waiting for the log never blocks the runtime's thread
/// (see [`Durable`]); applying the acknowledged records to the state is
/// done on it, as a commit's own thread would.
#[must_use = "futures do nothing unless polled"]
pub struct Committed<S: StateMachine, V: Vfs = RealFs> {
    core: Arc<Core<S, V>>,
    durable: Durable<V>,
}

impl<S: StateMachine, V: Vfs> Future for Committed<S, V> {
    type Output = Result<Lsn>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<Lsn>> {
        let this = self.get_mut(); // no self-references: Unpin
        match Pin::new(&mut this.durable).poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Ready(Ok(lsn)) => Poll::Ready(this.core.publish(lsn).map(|()| lsn)),
        }
    }
}
