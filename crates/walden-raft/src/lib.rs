//! walden-raft: walden as the log and state-machine storage of
//! [openraft](https://docs.rs/openraft/0.9.25) 0.9, and a small node that
//! serves a replicated key-value map over TCP.
//!
//! - [`LogStore`] (log_store.rs): `RaftLogStorage` + `RaftLogReader` on a
//!   walden log, every change a record (codec.rs), group commit through the
//!   flusher (durability.rs).
//! - [`StateMachine`] (state_machine.rs): `RaftStateMachine` +
//!   `RaftSnapshotBuilder`, the map in memory (kv.rs), durable through walden
//!   snapshot files streamed as [`SnapshotData`] (snapshot_data.rs).
//! - [`store::open`]: both, checked against each other.
//! - [`memory`]: the same map on an in-memory log, the benchmark's upper bound.
//! - [`network`], [`node`]: the framed TCP transport, the node and its client.
//!
//! docs/ARCHITECTURE.md ("Raft storage") has the design, docs/FORMAT.md
//! ("Raft records") the bytes.
#![deny(unsafe_code)]

pub mod codec;
mod durability;
pub mod error;
pub mod kv;
pub mod log_store;
pub mod memory;
pub mod network;
pub mod node;
pub mod snapshot_data;
pub mod state_machine;
pub mod store;
pub mod types;

pub use error::{Error, Result};
pub use kv::KvState;
pub use log_store::LogStore;
pub use snapshot_data::SnapshotData;
pub use state_machine::StateMachine;
pub use types::{log_id, Entry, LogId, NodeId, Raft, Request, Response, TypeConfig, Vote};
