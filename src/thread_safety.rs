//! Compile-time proof that the handles an application shares between
//! threads are `Send + Sync`: [`crate::Wal`], [`crate::Engine`],
//! [`crate::Store`] and [`crate::DurableJournal`] (and the tickets and
//! futures of their pipelined calls), on the real file system
//! and (with the `sim` feature) on `SimFs`. A change that makes one of them
//! lose either trait (an `Rc`, a `Cell`, a raw pointer in a field) fails to
//! build here, not in a user's program.

use crate::engine::{CommitTicket, Committed, Engine, StateMachine};
use crate::io::{RealFs, Vfs};
use crate::journal::{DurableJournal, JournalState};
use crate::store::{KvState, Store};
use crate::wal::{Durable, Ticket, Wal};

const fn assert_send_sync<T: Send + Sync>() {}

/// Every `Engine`, whatever its state machine and file system: checked for
/// all of them at once, since the body must type-check for any `S` and `V`.
#[allow(dead_code)]
const fn engines_are_send_sync<S: StateMachine, V: Vfs>() {
    assert_send_sync::<Engine<S, V>>();
    assert_send_sync::<CommitTicket<S, V>>();
    assert_send_sync::<Committed<S, V>>();
    assert_send_sync::<Wal<V>>();
    assert_send_sync::<Ticket<V>>();
    assert_send_sync::<Durable<V>>();
    assert_send_sync::<Store<V>>();
    assert_send_sync::<DurableJournal<V>>();
}

const _: () = {
    assert_send_sync::<Wal<RealFs>>();
    assert_send_sync::<Engine<KvState, RealFs>>();
    assert_send_sync::<Engine<JournalState, RealFs>>();
    assert_send_sync::<Store<RealFs>>();
    assert_send_sync::<DurableJournal<RealFs>>();
};

#[cfg(any(test, feature = "sim"))]
const _: () = {
    use crate::io::SimFs;
    assert_send_sync::<Wal<SimFs>>();
    assert_send_sync::<Engine<KvState, SimFs>>();
    assert_send_sync::<Store<SimFs>>();
    assert_send_sync::<DurableJournal<SimFs>>();
};
