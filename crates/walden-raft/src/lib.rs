//! walden-raft: walden as the log and state-machine storage of any
//! [openraft](https://docs.rs/openraft/0.9.25) 0.9 application (feature
//! `storage-v2`).
//!
//! - [`LogStore<C>`](LogStore) (log_store.rs): `RaftLogStorage` +
//!   `RaftLogReader` on a walden log for any `RaftTypeConfig` `C`, every
//!   change a record (codec.rs: JSON of the application's types), group
//!   commit through the flusher (durability.rs); `save_committed` rides the
//!   next fdatasync.
//! - [`AppState`] (app.rs): what the application supplies: apply a request
//!   and answer, freeze a view, write and read a snapshot stream.
//! - [`StateMachine<C, S>`](StateMachine) (state_machine.rs):
//!   `RaftStateMachine` + `RaftSnapshotBuilder` on top of an `AppState`,
//!   durable through walden snapshot files (zstd, checksummed, crash-safe)
//!   streamed as [`SnapshotData`], verified before they replace the state.
//! - [`open`]: both, checked against each other.
//! - [`memory`]: the same on no disk at all (a benchmark's upper bound).
//!
//! The type configuration must use openraft's `Entry<C>` and this crate's
//! [`SnapshotData`]; node ids, nodes, requests and responses are the
//! application's (serde types, as openraft's `serde` feature asks).
//!
//! # Example: a replicated counter on one node
//!
//! ```
//! use std::collections::BTreeMap;
//! use std::io::{Read, Write};
//! use walden_raft::{AppState, SnapshotData};
//!
//! openraft::declare_raft_types!(
//!     /// The counter's types: a request adds to it, the response is the new total.
//!     pub Counter:
//!         D = i64,
//!         R = i64,
//!         NodeId = u64,
//!         Node = openraft::BasicNode,
//!         Entry = openraft::Entry<Counter>,
//!         SnapshotData = SnapshotData,
//!         AsyncRuntime = openraft::TokioRuntime,
//! );
//!
//! /// The state: one total.
//! struct Total(i64);
//!
//! impl AppState<Counter> for Total {
//!     type Frozen = i64;
//!     fn empty() -> Self { Total(0) }
//!     fn apply(&mut self, _: &openraft::LogId<u64>, add: i64) -> i64 {
//!         self.0 += add;
//!         self.0
//!     }
//!     fn response_without_request(&self) -> i64 { self.0 }
//!     fn freeze(&self) -> i64 { self.0 }
//!     fn write_snapshot(total: &i64, out: &mut dyn Write) -> std::io::Result<u64> {
//!         out.write_all(&total.to_le_bytes())?;
//!         Ok(1)
//!     }
//!     fn read_snapshot(input: &mut dyn Read) -> std::io::Result<Self> {
//!         let mut bytes = [0u8; 8];
//!         input.read_exact(&mut bytes)?;
//!         Ok(Total(i64::from_le_bytes(bytes)))
//!     }
//! }
//!
//! /// One node needs no network: every call is refused.
//! struct NoNetwork;
//! impl openraft::network::RaftNetworkFactory<Counter> for NoNetwork {
//!     type Network = NoNetwork;
//!     async fn new_client(&mut self, _: u64, _: &openraft::BasicNode) -> NoNetwork { NoNetwork }
//! }
//! impl openraft::network::RaftNetwork<Counter> for NoNetwork {
//!     async fn append_entries(
//!         &mut self, _: openraft::raft::AppendEntriesRequest<Counter>, _: openraft::network::RPCOption,
//!     ) -> Result<openraft::raft::AppendEntriesResponse<u64>, openraft::error::RPCError<u64, openraft::BasicNode, openraft::error::RaftError<u64>>> {
//!         Err(openraft::error::RPCError::Unreachable(openraft::error::Unreachable::new(&std::io::Error::other("one node"))))
//!     }
//!     async fn install_snapshot(
//!         &mut self, _: openraft::raft::InstallSnapshotRequest<Counter>, _: openraft::network::RPCOption,
//!     ) -> Result<openraft::raft::InstallSnapshotResponse<u64>, openraft::error::RPCError<u64, openraft::BasicNode, openraft::error::RaftError<u64, openraft::error::InstallSnapshotError>>> {
//!         Err(openraft::error::RPCError::Unreachable(openraft::error::Unreachable::new(&std::io::Error::other("one node"))))
//!     }
//!     async fn vote(
//!         &mut self, _: openraft::raft::VoteRequest<u64>, _: openraft::network::RPCOption,
//!     ) -> Result<openraft::raft::VoteResponse<u64>, openraft::error::RPCError<u64, openraft::BasicNode, openraft::error::RaftError<u64>>> {
//!         Err(openraft::error::RPCError::Unreachable(openraft::error::Unreachable::new(&std::io::Error::other("one node"))))
//!     }
//! }
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let runtime = tokio::runtime::Runtime::new()?;
//! runtime.block_on(async {
//!     // The log in dir/log, snapshots in dir/snapshots.
//!     let (log, sm, _report) = walden_raft::open::<Counter, Total>(dir.path(), walden_raft::default_wal_options())?;
//!     let config = std::sync::Arc::new(openraft::Config::default().validate()?);
//!     let raft = openraft::Raft::<Counter>::new(1, config, NoNetwork, log, sm.clone()).await?;
//!     raft.initialize(BTreeMap::from([(1, openraft::BasicNode::new("local"))])).await?;
//!     raft.wait(None).current_leader(1, "leader").await?;
//!     assert_eq!(raft.client_write(5).await?.data, 5);
//!     assert_eq!(raft.client_write(-2).await?.data, 3);
//!     raft.ensure_linearizable().await?; // a read that sees every acknowledged write
//!     assert_eq!(sm.read(|total| total.0), 3);
//!     raft.shutdown().await?;
//!     Ok::<(), Box<dyn std::error::Error>>(())
//! })?;
//! // Reopened, the log replays: the committed entries are applied again.
//! runtime.block_on(async {
//!     let (log, sm, _) = walden_raft::open::<Counter, Total>(dir.path(), walden_raft::default_wal_options())?;
//!     let config = std::sync::Arc::new(openraft::Config::default().validate()?);
//!     let raft = openraft::Raft::<Counter>::new(1, config, NoNetwork, log, sm.clone()).await?;
//!     raft.wait(None).applied_index_at_least(Some(3), "replayed").await?;
//!     assert_eq!(sm.read(|total| total.0), 3);
//!     raft.shutdown().await?;
//!     Ok::<(), Box<dyn std::error::Error>>(())
//! })?;
//! # Ok(())
//! # }
//! ```
//!
//! docs/ARCHITECTURE.md ("Raft storage") has the design, docs/FORMAT.md
//! ("Raft records") the bytes.
#![deny(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod app;
mod blocking;
pub mod codec;
pub mod content;
mod durability;
pub mod error;
pub mod log_store;
pub mod memory;
pub mod snapshot_data;
pub mod state_machine;
pub mod store;

pub use app::AppState;
pub use error::{Error, Result};
pub use log_store::LogStore;
pub use snapshot_data::SnapshotData;
pub use state_machine::{SmOpenReport, StateMachine};
pub use store::{default_wal_options, open, open_with, Storage, RAFT_FLUSH_INTERVAL};
