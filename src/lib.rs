//! walden: a write-ahead-log storage engine for the hot write path.
//!
//! Four layers, each usable on its own, each built on the one before:
//!
//! - [`Wal`]: a segmented log of checksummed records with gap-free
//!   [`Lsn`]s, a group-commit writer shared by many threads, and exactly
//!   the durability its [`FsyncMode`] promises. Opening it recovers: a torn
//!   tail is cut into a quarantine file, never deleted, and damage a crash
//!   cannot explain is an [`Error::Corrupt`] that says where.
//! - [`Engine`]: an application's [`StateMachine`] kept on the log:
//!   commits are logged and applied in LSN order, snapshots are taken on
//!   their own thread, and opening loads the newest good snapshot and
//!   replays the log after it.
//! - [`Store`]: the built-in state machine, a key-value store with
//!   revisions, atomic [`WriteBatch`]es and views as of an LSN or a time.
//! - [`DurableJournal`]: typed history (SET, PUBLISH, DELETE of addressed
//!   values) with queries by address pattern, time range and signal type,
//!   behind the [`Journal`] trait it shares with [`MemoryJournal`].
//!
//! [`admin`] is the read-only inspection and explicit repair behind the
//! `walden` command-line tool; [`format`](mod@format) and [`snapshot`] expose the
//! on-disk encodings; [`io`] is the narrow file-system boundary.
//!
//! Features: `serde` derives `Serialize`/`Deserialize` for the options,
//! reports and journal values. `sim` adds `io::SimFs`, a simulated file
//! system for crash tests, and `fuzzing` the bodies of the fuzz targets;
//! both are for tests, and an application needs neither.
//!
//! docs/ARCHITECTURE.md is the map of the code, docs/FORMAT.md specifies
//! every byte on disk, docs/RELIABILITY.md says which test proves each
//! durability promise.
//!
//! # The log
//!
//! ```
//! use walden::{FsyncMode, Lsn, Wal, WalOptions};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = std::env::temp_dir().join(format!("walden-doc-wal-{}", std::process::id()));
//! # let _ = std::fs::remove_dir_all(&dir);
//! let options = WalOptions { fsync: FsyncMode::Always, segment_bytes: 1 << 20, ..Default::default() };
//! let wal = Wal::open(&dir, options.clone())?;
//! let first = wal.append(b"set /lights/kitchen 0.8")?; // on stable storage now
//! wal.append_batch(&[b"a".as_slice(), b"b"])?; // all or nothing after a crash
//! let ticket = wal.append_pipelined(b"in flight")?; // returns before the fsync
//! assert_eq!(ticket.wait()?, Lsn(4)); // acknowledged here
//! wal.close()?;
//!
//! // Opening again recovers every acknowledged record.
//! let wal = Wal::open(&dir, options)?;
//! let payloads: Vec<Vec<u8>> = wal.read_from(first)?.map(|r| r.map(|r| r.payload)).collect::<Result<_, _>>()?;
//! assert_eq!(payloads, [&b"set /lights/kitchen 0.8"[..], b"a", b"b", b"in flight"]);
//! wal.close()?;
//! std::fs::remove_dir_all(&dir)?;
//! # Ok(())
//! # }
//! ```
//!
//! # A state machine on the log
//!
//! ```
//! use std::io::{self, Read, Write};
//! use walden::{Engine, EngineOptions, Lsn, StateMachine};
//!
//! /// The sum of every u64 committed.
//! #[derive(Clone)]
//! struct Total(u64);
//!
//! impl StateMachine for Total {
//!     type Frozen = u64;
//!
//!     fn empty() -> Self {
//!         Total(0)
//!     }
//!     // Runs before the record reaches the log: a refused one never does.
//!     fn check(payload: &[u8]) -> walden::Result<()> {
//!         match payload.len() {
//!             8 => Ok(()),
//!             n => Err(walden::Error::InvalidArgument(format!("{n} bytes, not a u64"))),
//!         }
//!     }
//!     // Runs once the log acknowledged the record, in LSN order.
//!     fn apply(&mut self, _lsn: Lsn, payload: &[u8]) -> walden::Result<()> {
//!         self.0 += u64::from_le_bytes(payload.try_into().expect("checked"));
//!         Ok(())
//!     }
//!     fn freeze(&self) -> u64 {
//!         self.0
//!     }
//!     fn write_snapshot(frozen: &u64, out: &mut dyn Write) -> io::Result<u64> {
//!         out.write_all(&frozen.to_le_bytes())?;
//!         Ok(1) // entries written
//!     }
//!     fn read_snapshot(input: &mut dyn Read) -> io::Result<Self> {
//!         let mut bytes = [0u8; 8];
//!         input.read_exact(&mut bytes)?;
//!         Ok(Total(u64::from_le_bytes(bytes)))
//!     }
//! }
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = std::env::temp_dir().join(format!("walden-doc-engine-{}", std::process::id()));
//! # let _ = std::fs::remove_dir_all(&dir);
//! let mut options = EngineOptions::default();
//! options.wal.segment_bytes = 1 << 20;
//! let engine: Engine<Total> = Engine::open(&dir, options.clone())?;
//! engine.commit(&5u64.to_le_bytes())?;
//! engine.commit(&7u64.to_le_bytes())?;
//! engine.snapshot_now()?; // covers both commits
//! engine.commit(&1u64.to_le_bytes())?;
//! assert!(engine.commit(b"not a u64").is_err()); // refused by check: never logged
//! assert_eq!(engine.read(|total| total.0), 13);
//! engine.close()?;
//!
//! // Opening loads the snapshot and replays the one record after it.
//! let engine: Engine<Total> = Engine::open(&dir, options)?;
//! assert_eq!(engine.read(|total| total.0), 13);
//! assert_eq!(engine.recovery_report().records_replayed, 1);
//! engine.close()?;
//! std::fs::remove_dir_all(&dir)?;
//! # Ok(())
//! # }
//! ```
//!
//! # The key-value store
//!
//! ```
//! use walden::{Store, StoreOptions, WriteBatch};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = std::env::temp_dir().join(format!("walden-doc-store-{}", std::process::id()));
//! # let _ = std::fs::remove_dir_all(&dir);
//! let mut options = StoreOptions::default();
//! options.engine.wal.segment_bytes = 1 << 20;
//! let store = Store::open(&dir, options.clone())?;
//! store.put(b"lights/kitchen", b"0.8")?;
//! store.put(b"lights/kitchen", b"0.5")?;
//! let mut batch = WriteBatch::default();
//! batch.put(b"lights/hall", b"0.2").delete(b"doors/front");
//! store.write(&batch)?; // one log batch: all or nothing
//! store.close()?;
//!
//! let store = Store::open(&dir, options)?;
//! let kitchen = store.get(b"lights/kitchen").expect("recovered");
//! assert_eq!((&kitchen.value[..], kitchen.revision), (&b"0.5"[..], 2));
//! assert_eq!(store.scan_prefix(b"lights/").len(), 2);
//! store.close()?;
//! std::fs::remove_dir_all(&dir)?;
//! # Ok(())
//! # }
//! ```
//!
//! # Awaiting durability from async code
//!
//! Every blocking call has a `_pipelined` twin that returns an owned
//! ticket (`'static`, `Send`) as soon as the write has its LSN. Awaiting
//! it waits for the fsync mode's acknowledgement without blocking the
//! runtime's thread, on any runtime: the library depends on none (this
//! example uses tokio). The write is visible to readers once acknowledged,
//! never before, and concurrent tasks share fsyncs as threads do.
//!
//! ```
//! use std::sync::Arc;
//! use walden::{FsyncMode, Store, StoreOptions};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = std::env::temp_dir().join(format!("walden-doc-async-{}", std::process::id()));
//! # let _ = std::fs::remove_dir_all(&dir);
//! let mut options = StoreOptions::default();
//! options.engine.wal.fsync = FsyncMode::Always; // acknowledged = on disk
//! let store = Arc::new(Store::open(&dir, options)?);
//!
//! let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
//! runtime.block_on(async {
//!     // A service handling 32 requests at once: each task answers only
//!     // once its write is durable.
//!     let mut requests = Vec::new();
//!     for i in 0..32u32 {
//!         let store = store.clone();
//!         requests.push(tokio::spawn(async move {
//!             let key = format!("sessions/{i}");
//!             let lsn = store.put_pipelined(key.as_bytes(), b"open")?.await?;
//!             assert!(store.get(key.as_bytes()).is_some(), "visible once durable");
//!             Ok::<_, walden::Error>(lsn)
//!         }));
//!     }
//!     for request in requests {
//!         request.await.expect("the task ran")?;
//!     }
//!     Ok::<_, walden::Error>(())
//! })?;
//! assert_eq!(store.scan_prefix(b"sessions/").len(), 32);
//! Arc::into_inner(store).expect("the tasks are done").close()?;
//! std::fs::remove_dir_all(&dir)?;
//! # Ok(())
//! # }
//! ```
//!
//! # The journal
//!
//! ```
//! use walden::journal::{Journal, NewEntry, Query, SignalType, Value};
//! use walden::{DurableJournal, JournalOptions};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = std::env::temp_dir().join(format!("walden-doc-journal-{}", std::process::id()));
//! # let _ = std::fs::remove_dir_all(&dir);
//! let journal = DurableJournal::open(&dir, JournalOptions::default())?;
//! journal.append(NewEntry::set("ui", "/lights/kitchen", Value::Float(0.8)))?;
//! journal.append(NewEntry::publish(SignalType::Event, "door", "/doors/front", Value::Bool(true)))?;
//! journal.append(NewEntry::set("ui", "/lights/kitchen", Value::Float(0.5)))?;
//!
//! // History: every entry under /lights, oldest first.
//! let page = journal.query(&Query::new("/lights/**")?)?;
//! let values: Vec<&Value> = page.entries.iter().map(|e| &e.value).collect();
//! assert_eq!(values, [&Value::Float(0.8), &Value::Float(0.5)]);
//! // State: what the SETs left behind.
//! assert_eq!(journal.param("/lights/kitchen").expect("set").revision, 2);
//! journal.close()?;
//! std::fs::remove_dir_all(&dir)?;
//! # Ok(())
//! # }
//! ```
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod admin;
pub mod backup;
pub mod engine;
mod error;
pub mod format;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzz_targets;
pub mod io;
pub mod journal;
#[cfg(test)]
mod layers;
mod lsn;
pub mod snapshot;
pub mod store;
mod thread_safety;
pub mod wal;

pub use engine::{Engine, EngineOptions, Recent, RecoveryReport, SnapshotOptions, StateMachine};
pub use error::{Corruption, Error, ErrorClass, Result};
pub use journal::{DurableJournal, Journal, JournalEntry, JournalOptions, MemoryJournal};
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
