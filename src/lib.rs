//! walden: a write-ahead-log storage engine for the hot write path.
//!
//! The [`Wal`] is a segmented log of checksummed records with gap-free
//! [`Lsn`]s, three fsync modes ([`FsyncMode`]) and a group-commit writer.
//! docs/ARCHITECTURE.md is the map; docs/FORMAT.md specifies every byte.
#![deny(unsafe_code)]

pub mod admin;
pub mod engine;
mod error;
pub mod format;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzz_targets;
pub mod io;
pub mod journal;
mod lsn;
pub mod snapshot;
pub mod store;
pub mod wal;

pub use engine::{Engine, EngineOptions, RecoveryReport, SnapshotOptions, StateMachine};
pub use error::{Corruption, Error, Result};
pub use journal::{DurableJournal, Journal, JournalOptions, MemoryJournal};
pub use lsn::Lsn;
pub use store::{Entry, Store, StoreOptions, WriteBatch};
pub use wal::{
    Durable, FsyncMode, Preallocate, Record, RecoveryMode, Ticket, Wal, WalOptions, WalReader, WalRecoveryReport,
    WalStats,
};

/// README.md's example, compiled as a doc test so it cannot drift from the API.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
