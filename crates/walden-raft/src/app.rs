//! [`AppState`]: what an application supplies to put its state on
//! walden-raft, in the spirit of `walden::StateMachine`: apply a request and
//! answer, freeze a view, write and read a snapshot stream. walden-raft's
//! [`crate::StateMachine`] (on walden snapshot files) and
//! [`crate::memory::MemStateMachine`] (in memory) implement openraft's
//! `RaftStateMachine` and `RaftSnapshotBuilder` on top, keeping the last
//! applied log id and the membership beside the state.
//!
//! **Invariant:** the state a snapshot restores is exactly the state
//! frozen for it: [`AppState::read_snapshot`] of what
//! [`AppState::write_snapshot`] wrote equals the state
//! [`AppState::freeze`] was called on, as far as `apply` and readers can
//! tell.

use openraft::{LogId, RaftTypeConfig};
use std::io::{self, Read, Write};

/// An application's replicated state, for the openraft configuration `C`.
///
/// walden-raft calls [`AppState::apply`] once per committed entry that
/// carries a request, in log order, never concurrently with another call
/// that takes `&mut self`; readers get `&Self` under a read lock
/// ([`crate::StateMachine::read`]).
pub trait AppState<C: RaftTypeConfig>: Send + Sync + Sized + 'static {
    /// A view of the state frozen at one moment, cheap to take, written out
    /// as a snapshot while the state goes on changing (a clone of a
    /// persistent map, for example).
    type Frozen: Send + 'static;

    /// The state before any entry.
    fn empty() -> Self;

    /// Applies the request of the committed entry `log_id` and returns the
    /// response openraft hands to the client that proposed it. It must not
    /// fail: reject a bad request in the response (every replica applies the
    /// same entries and must reach the same state).
    fn apply(&mut self, log_id: &LogId<C::NodeId>, request: C::D) -> C::R;

    /// The response for an entry that carries no request (a blank or a
    /// membership entry): openraft requires one, and no client reads it.
    fn response_without_request(&self) -> C::R;

    /// Freezes the current state for a snapshot.
    fn freeze(&self) -> Self::Frozen;

    /// Streams a frozen state into `out` (walden compresses and checksums
    /// it) and returns how many items it wrote (the snapshot header's entry
    /// count, which `walden inspect` shows). Any encoding the application
    /// likes; it is read back only by [`AppState::read_snapshot`].
    fn write_snapshot(frozen: &Self::Frozen, out: &mut dyn Write) -> io::Result<u64>;

    /// Reads a state written by [`AppState::write_snapshot`], to the end of
    /// `input`. Damage is an `Err` (`io::ErrorKind::InvalidData`); bytes the
    /// application leaves unread are damage too (walden-raft checks).
    fn read_snapshot(input: &mut dyn Read) -> io::Result<Self>;
}
