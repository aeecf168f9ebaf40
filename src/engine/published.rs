//! What readers see: a [`Base`] state, published by the last fold, plus
//! the acknowledged records after it ([`Recent`]), read from the log's
//! in-memory chain of appends (`wal/tail.rs`).
//!
//! A commit is visible once the log acknowledges it: nothing is published
//! per commit. Applying records to the state ("folding" them into a new
//! base) is separate work, done a batch at a time by whoever finds the
//! folder free, so no committer and no reader waits for a thread that is
//! in the middle of an apply.
//!
//! **Invariant:** a base's `anchor` is the chain's node holding the record
//! after `lsn`, or a node before it: walking forward from it up to the
//! log's acknowledged LSN gives exactly the records a reader adds to it.

use crate::wal::Chained;
use crate::Lsn;
use std::sync::Arc;

/// A state as a fold left it, and where its records continue.
pub(crate) struct Base<S> {
    pub machine: S,
    pub lsn: Lsn,
    pub anchor: Arc<Chained>,
}

/// The acknowledged records after a base, in LSN order: what a state that
/// reads them ([`crate::StateMachine::READS_RECENT`]) adds to its base.
pub struct Recent<'a> {
    anchor: &'a Arc<Chained>,
    after: Lsn,
    upto: Lsn,
}

impl<'a> Recent<'a> {
    pub(crate) fn new(anchor: &'a Arc<Chained>, after: Lsn, upto: Lsn) -> Recent<'a> {
        Recent { anchor, after, upto: upto.max(after) }
    }

    /// How many records there are.
    pub fn len(&self) -> usize {
        (self.upto.0 - self.after.0) as usize
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.upto == self.after
    }

    /// The LSN of the base state these records follow.
    pub fn after(&self) -> Lsn {
        self.after
    }

    /// The LSN of the last record (the base's, if there is none).
    pub fn upto(&self) -> Lsn {
        self.upto
    }

    /// The records, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = (Lsn, &'a [u8])> + 'a {
        self.anchor.walk(self.after.next(), self.upto)
    }
}
