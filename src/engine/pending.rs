//! [`Pending`], the records a commit builder sees after the state, and
//! [`CommitTicket`], a commit in flight.

use super::{Core, StateMachine};
use crate::io::{RealFs, Vfs};
use crate::wal::{Chained, Durable, Ticket};
use crate::{Lsn, Result};
use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

/// Records in the log but not applied to the state a commit builder
/// ([`crate::Engine::commit_with`]) is given, in LSN order: their
/// acknowledgement may still be on its way, and the builder's records come
/// after them.
pub struct Pending {
    /// The log's chain from the node holding `after`'s successor.
    anchor: Arc<Chained>,
    after: Lsn,
}

impl Pending {
    /// Every record linked in the log's chain after `after`.
    pub(super) fn after(anchor: &Arc<Chained>, after: Lsn) -> Pending {
        Pending { anchor: anchor.clone(), after }
    }

    /// The pending records, oldest first.
    pub fn records(&self) -> impl DoubleEndedIterator<Item = (Lsn, &[u8])> + '_ {
        let records: Vec<(Lsn, &[u8])> = self.anchor.walk(self.after.next(), Lsn(u64::MAX)).collect();
        records.into_iter()
    }

    /// The newest pending record, if any.
    pub fn last(&self) -> Option<(Lsn, &[u8])> {
        self.records().next_back()
    }

    /// How many records are pending.
    pub fn len(&self) -> usize {
        self.anchor.walk(self.after.next(), Lsn(u64::MAX)).count()
    }

    /// Whether no record is pending.
    pub fn is_empty(&self) -> bool {
        self.anchor.walk(self.after.next(), Lsn(u64::MAX)).next().is_none()
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

    /// Where the commit's first record is in the log.
    pub(crate) fn first_position(&self) -> crate::wal::ReadPosition {
        self.ticket.first_position()
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
