//! The transport: length-prefixed frames over TCP on loopback, carrying
//! both the Raft RPCs between nodes and the clients' key-value requests.
//!
//! A frame is a u32 little-endian body length (at most [`FRAME_BYTES_MAX`])
//! and a JSON body: one [`Message`] from the caller, one [`Reply`] back, in
//! turn on one connection. JSON keeps the protocol readable with any tool;
//! it is the same for the walden and the in-memory cluster of the bench.

use super::node::Service;
use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use openraft::BasicNode;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::marker::PhantomData;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A node id.
pub type NodeId = u64;

/// The largest frame body accepted; a larger length is refused before any
/// allocation.
pub const FRAME_BYTES_MAX: u32 = 64 << 20;

/// What a connection carries to a node of the application `A`.
#[derive(Serialize, Deserialize)]
#[serde(bound = "")]
pub enum Message<A: Service> {
    AppendEntries(AppendEntriesRequest<A::C>),
    Vote(VoteRequest<NodeId>),
    InstallSnapshot(InstallSnapshotRequest<A::C>),
    /// One client's write; answered by the leader, or with `NotLeader`.
    Write(A::Write),
    /// A read. Linearizable unless `stale`: the node confirms through the
    /// leader that its applied state holds every write committed before the
    /// read began (openraft's read index), forwarding to the leader if it
    /// is not the leader itself (`forwarded` marks a forwarded read, which
    /// is not forwarded again). `stale` reads this node's applied state as
    /// it is.
    Read {
        read: A::Read,
        stale: bool,
        forwarded: bool,
    },
    Status,
    /// Makes this node the first leader of a cluster of `members`.
    Init(BTreeMap<NodeId, String>),
    AddLearner(NodeId, String),
    ChangeMembership(BTreeSet<NodeId>),
}

/// What a node answers.
#[derive(Serialize, Deserialize)]
#[serde(bound = "")]
pub enum Reply<A: Service> {
    AppendEntries(Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>),
    Vote(Result<VoteResponse<NodeId>, RaftError<NodeId>>),
    InstallSnapshot(Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>),
    Write(A::WriteReply),
    /// A read's answer, the node whose applied state served it, and
    /// whether it is stale (this node's state, which may be behind writes
    /// acknowledged elsewhere) or linearizable.
    Read {
        value: A::ReadReply,
        served_by: NodeId,
        stale: bool,
    },
    Status(Status),
    Done,
    /// "Not the leader, try this one" (if this node knows it).
    NotLeader {
        leader: Option<(NodeId, String)>,
    },
    Error(String),
}

impl<A: Service> std::fmt::Debug for Reply<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match serde_json::to_string(self) {
            Ok(json) => f.write_str(&json),
            Err(e) => write!(f, "(a reply that does not serialize: {e})"),
        }
    }
}

/// A node's view of itself and the cluster.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    pub id: NodeId,
    pub leader: Option<NodeId>,
    pub term: u64,
    pub last_log_index: Option<u64>,
    pub last_applied: Option<u64>,
    pub snapshot_index: Option<u64>,
    pub purged_index: Option<u64>,
    pub voters: Vec<NodeId>,
    /// Snapshots installed from a leader since this process started.
    pub snapshots_installed: u64,
    pub keys: u64,
    /// A hash of every key and value of the applied state.
    pub digest: u64,
}

pub async fn write_frame<T: Serialize>(stream: &mut TcpStream, value: &T) -> io::Result<()> {
    let body = serde_json::to_vec(value).map_err(io::Error::other)?;
    if body.len() > FRAME_BYTES_MAX as usize {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("a frame of {} bytes", body.len())));
    }
    let mut frame = Vec::with_capacity(4 + body.len());
    frame.extend_from_slice(&(body.len() as u32).to_le_bytes());
    frame.extend_from_slice(&body);
    stream.write_all(&frame).await
}

/// Reads one frame; `Ok(None)` at a clean end of the stream.
pub async fn read_frame<T: for<'de> Deserialize<'de>>(stream: &mut TcpStream) -> io::Result<Option<T>> {
    let mut len = [0u8; 4];
    match stream.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_le_bytes(len);
    if len > FRAME_BYTES_MAX {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("a frame of {len} bytes (at most {FRAME_BYTES_MAX})"),
        ));
    }
    let mut body = vec![0u8; len as usize];
    stream.read_exact(&mut body).await?;
    serde_json::from_slice(&body).map(Some).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// One connection to a node: a request, then its reply.
pub struct Connection {
    addr: String,
    stream: Option<TcpStream>,
}

impl Connection {
    pub fn new(addr: impl Into<String>) -> Connection {
        Connection { addr: addr.into(), stream: None }
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Sends `message` and waits for the reply, connecting first if needed.
    /// After an error the connection is dropped; the next call reconnects.
    pub async fn call<A: Service>(&mut self, message: &Message<A>) -> io::Result<Reply<A>> {
        let result = async {
            if self.stream.is_none() {
                let stream = TcpStream::connect(&self.addr).await?;
                stream.set_nodelay(true)?;
                self.stream = Some(stream);
            }
            let stream = self.stream.as_mut().expect("connected above");
            write_frame(stream, message).await?;
            read_frame(stream).await?.ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed"))
        }
        .await;
        if result.is_err() {
            self.stream = None;
        }
        result
    }
}

/// Makes the RPC clients openraft asks for.
pub struct NetworkFactory<A>(pub PhantomData<A>);

impl<A: Service> RaftNetworkFactory<A::C> for NetworkFactory<A> {
    type Network = PeerClient<A>;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> PeerClient<A> {
        PeerClient { target, conn: Connection::new(node.addr.clone()), _app: PhantomData }
    }
}

/// openraft's RPC client to one peer.
pub struct PeerClient<A> {
    target: NodeId,
    conn: Connection,
    _app: PhantomData<A>,
}

type RpcError<E = openraft::error::Infallible> = RPCError<NodeId, BasicNode, RaftError<NodeId, E>>;

impl<A: Service> PeerClient<A> {
    async fn call<E: std::error::Error>(
        &mut self,
        message: Message<A>,
        option: &RPCOption,
    ) -> Result<Reply<A>, RpcError<E>> {
        match tokio::time::timeout(option.hard_ttl(), self.conn.call(&message)).await {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(e)) if e.kind() == io::ErrorKind::ConnectionRefused => {
                Err(RPCError::Unreachable(Unreachable::new(&e)))
            }
            Ok(Err(e)) => Err(RPCError::Network(NetworkError::new(&e))),
            Err(elapsed) => {
                self.conn.stream = None;
                Err(RPCError::Network(NetworkError::new(&elapsed)))
            }
        }
    }

    fn unexpected<E: std::error::Error>(reply: Reply<A>) -> RpcError<E> {
        RPCError::Network(NetworkError::new(&io::Error::other(format!("unexpected reply {reply:?}"))))
    }
}

impl<A: Service> RaftNetwork<A::C> for PeerClient<A> {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<A::C>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RpcError> {
        match self.call(Message::AppendEntries(rpc), &option).await? {
            Reply::AppendEntries(r) => r.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e))),
            other => Err(Self::unexpected(other)),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<A::C>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RpcError<InstallSnapshotError>> {
        match self.call(Message::InstallSnapshot(rpc), &option).await? {
            Reply::InstallSnapshot(r) => r.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e))),
            other => Err(Self::unexpected(other)),
        }
    }

    async fn vote(&mut self, rpc: VoteRequest<NodeId>, option: RPCOption) -> Result<VoteResponse<NodeId>, RpcError> {
        match self.call(Message::Vote(rpc), &option).await? {
            Reply::Vote(r) => r.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e))),
            other => Err(Self::unexpected(other)),
        }
    }
}
