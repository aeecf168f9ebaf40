//! The openraft type configuration of the replicated key-value map: what a
//! client asks for ([`Request`]), what it gets back ([`Response`]), node
//! ids and addresses.

use crate::snapshot_data::SnapshotData;
use serde::{Deserialize, Serialize};

/// A node's id: a positive integer chosen by the operator.
pub type NodeId = u64;

openraft::declare_raft_types!(
    /// The types of the replicated key-value map.
    pub TypeConfig:
        D = Request,
        R = Response,
        NodeId = NodeId,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = SnapshotData,
        AsyncRuntime = openraft::TokioRuntime,
);

/// A log entry of this configuration.
pub type Entry = openraft::Entry<TypeConfig>;
/// A log id: the term and node of the leader that proposed it, and its index.
pub type LogId = openraft::LogId<NodeId>;
pub type Vote = openraft::Vote<NodeId>;
pub type StorageError = openraft::StorageError<NodeId>;
pub type SnapshotMeta = openraft::SnapshotMeta<NodeId, openraft::BasicNode>;
pub type StoredMembership = openraft::StoredMembership<NodeId, openraft::BasicNode>;
pub type Raft = openraft::Raft<TypeConfig>;

/// A write to the replicated map.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// Sets `key` to `value`.
    Put { key: String, value: String },
    /// Sets each key to its value, in order, as one log entry: the node
    /// groups concurrent clients' puts so that one fsync carries many.
    Batch(Vec<(String, String)>),
}

/// What applying a [`Request`] returned.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Response {
    /// For each key written, in order, the value it had before, if any.
    pub previous: Vec<Option<String>>,
}

/// The log id of `(term, node)` at `index`.
pub fn log_id(term: u64, node: NodeId, index: u64) -> LogId {
    openraft::LogId::new(openraft::CommittedLeaderId::new(term, node), index)
}
