//! A node: openraft on walden (or on memory, for the benchmark's upper
//! bound) serving the replicated key-value map over the framed TCP
//! transport (network.rs), and a [`Client`] that finds the leader.
//!
//! A write sent to a follower is answered "not the leader, try N at ADDR"
//! ([`Reply::NotLeader`]); the client follows the hint. A read is served by
//! the node asked, from its applied state.
//!
//! Writes are batched: openraft 0.9's core waits for each append's flush
//! before it takes the next, and appends one client write per entry, so a
//! proposer task groups the puts that arrive while earlier proposals are in
//! flight ([`PROPOSALS_IN_FLIGHT`] at most) into one [`Request::Batch`]
//! entry of up to [`BATCH_PUTS_MAX`] puts: one fsync then carries many
//! clients' writes. Each client still gets its own answer, once its entry
//! is applied. The in-memory cluster batches the same way.
//!
//! A proposal answers its clients all at once, and those that write again
//! come back over the next few hundred microseconds. Proposing at the first
//! arrival would split them into two batches that alternate, each waiting
//! for the other's round (measured: 32 puts a round at 64 clients, half the
//! clients). So the proposer waits, at most [`LINGER_MAX`], until as many
//! puts have queued as the last proposal carried.

use crate::kv::KvState;
use crate::memory::{MemLogStore, MemStateMachine};
use crate::network::{read_frame, write_frame, Connection, Message, NetworkFactory, Reply, Status};
use crate::state_machine::StateMachine;
use crate::types::{NodeId, Raft, Request, Response};
use openraft::error::{ClientWriteError, RaftError};
use openraft::{BasicNode, ChangeMembers};
use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, Semaphore};

/// Proposals (log entries of client writes) a node has in flight at once.
/// One: the next batch grows while the current one commits. (On the bench
/// at 64 clients, 2 in flight made walden's batches smaller and its
/// throughput lower: docs/BENCHMARKS.md.)
pub const PROPOSALS_IN_FLIGHT: usize = 1;
/// The most puts one proposal carries.
pub const BATCH_PUTS_MAX: usize = 1024;
/// The longest a proposer waits for the clients its last proposal answered
/// (tokio's timer has millisecond resolution).
pub const LINGER_MAX: Duration = Duration::from_millis(1);

/// Why a put was not applied.
#[derive(Clone, Debug)]
enum Failed {
    NotLeader(Option<(NodeId, String)>),
    Error(String),
}

impl Failed {
    fn reply(self) -> Reply {
        match self {
            Failed::NotLeader(leader) => Reply::NotLeader { leader },
            Failed::Error(e) => Reply::Error(e),
        }
    }
}

struct Proposal {
    key: String,
    value: String,
    done: oneshot::Sender<Result<Option<String>, Failed>>,
}

/// Moves the puts already queued into `batch`, up to [`BATCH_PUTS_MAX`].
fn take_queued(rx: &mut mpsc::UnboundedReceiver<Proposal>, batch: &mut Vec<Proposal>) {
    while batch.len() < BATCH_PUTS_MAX {
        match rx.try_recv() {
            Ok(put) => batch.push(put),
            Err(_) => break,
        }
    }
}

/// Starts the proposer task; returns where to send puts.
fn spawn_proposer(raft: Raft) -> mpsc::UnboundedSender<Proposal> {
    let (tx, mut rx) = mpsc::unbounded_channel::<Proposal>();
    tokio::spawn(async move {
        let permits = Arc::new(Semaphore::new(PROPOSALS_IN_FLIGHT));
        // How many puts the last proposal to finish carried.
        let answered = Arc::new(AtomicUsize::new(0));
        while let Some(first) = rx.recv().await {
            let Ok(permit) = permits.clone().acquire_owned().await else { return };
            // Everything that queued while the permits were taken goes together,
            let mut batch = vec![first];
            take_queued(&mut rx, &mut batch);
            // and the clients the last proposal answered, if they come back soon.
            let expected = answered.load(Ordering::Relaxed).min(BATCH_PUTS_MAX);
            if batch.len() < expected {
                let linger = tokio::time::sleep(LINGER_MAX);
                tokio::pin!(linger);
                while batch.len() < expected {
                    tokio::select! {
                        put = rx.recv() => match put {
                            Some(put) => batch.push(put),
                            None => break,
                        },
                        _ = &mut linger => break,
                    }
                    take_queued(&mut rx, &mut batch);
                }
            }
            let (raft, answered) = (raft.clone(), answered.clone());
            tokio::spawn(async move {
                let request = if batch.len() == 1 {
                    Request::Put { key: batch[0].key.clone(), value: batch[0].value.clone() }
                } else {
                    Request::Batch(batch.iter().map(|p| (p.key.clone(), p.value.clone())).collect())
                };
                let result = raft.client_write(request).await;
                answered.store(batch.len(), Ordering::Relaxed);
                match result {
                    Ok(response) => {
                        for (p, previous) in batch.into_iter().zip(response.data.previous) {
                            let _ = p.done.send(Ok(previous));
                        }
                    }
                    Err(e) => {
                        let failed = match write_error(e, "put") {
                            Reply::NotLeader { leader } => Failed::NotLeader(leader),
                            Reply::Error(e) => Failed::Error(e),
                            other => Failed::Error(format!("{other:?}")),
                        };
                        for p in batch {
                            let _ = p.done.send(Err(failed.clone()));
                        }
                    }
                }
                drop(permit);
            });
        }
    });
    tx
}

/// Where a node keeps its log and state machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StorageKind {
    /// walden: the log in `<dir>/log`, snapshots in `<dir>/snapshots`.
    Walden,
    /// Memory only: nothing survives the process (the benchmark's bound).
    Memory,
}

#[derive(Clone, Debug)]
pub struct NodeConfig {
    pub id: NodeId,
    /// The address to listen on and that peers reach this node at.
    pub addr: String,
    pub dir: PathBuf,
    pub storage: StorageKind,
    pub raft: openraft::Config,
}

/// Timeouts for a cluster on one machine, and a snapshot every 2,000
/// entries that keeps 500 entries of log behind it.
pub fn default_raft_config() -> openraft::Config {
    openraft::Config {
        cluster_name: "walden".into(),
        heartbeat_interval: 100,
        election_timeout_min: 400,
        election_timeout_max: 800,
        snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(2_000),
        max_in_snapshot_log_to_keep: 500,
        ..Default::default()
    }
}

impl NodeConfig {
    pub fn new(id: NodeId, addr: impl Into<String>, dir: impl Into<PathBuf>) -> NodeConfig {
        NodeConfig { id, addr: addr.into(), dir: dir.into(), storage: StorageKind::Walden, raft: default_raft_config() }
    }
}

/// What the server reads of the state machine, whichever it is.
trait View: Send + Sync + 'static {
    fn state(&self) -> KvState;
    fn installs(&self) -> u64;
}

impl View for StateMachine {
    fn state(&self) -> KvState {
        StateMachine::state(self)
    }

    fn installs(&self) -> u64 {
        StateMachine::installs(self)
    }
}

impl View for MemStateMachine {
    fn state(&self) -> KvState {
        MemStateMachine::state(self)
    }

    fn installs(&self) -> u64 {
        MemStateMachine::installs(self)
    }
}

/// A running node.
pub struct Node {
    pub raft: Raft,
    view: Arc<dyn View>,
    id: NodeId,
    accept: tokio::task::JoinHandle<()>,
}

/// Opens the node's storage, starts Raft and listens. Runs on the caller's
/// tokio runtime.
pub async fn start(config: NodeConfig) -> crate::Result<Node> {
    let raft_config = Arc::new(config.raft.validate().map_err(|e| crate::Error::Refused(e.to_string()))?);
    let fatal = |e: openraft::error::Fatal<NodeId>| crate::Error::Refused(format!("raft did not start: {e}"));
    let (raft, view): (Raft, Arc<dyn View>) = match config.storage {
        StorageKind::Walden => {
            let (log, sm, report) = crate::store::open(&config.dir, crate::store::default_wal_options())?;
            if let Some(path) = &report.loaded {
                log::info!("walden-raft node {}: loaded {}", config.id, path.display());
            }
            let raft = Raft::new(config.id, raft_config, NetworkFactory, log, sm.clone()).await.map_err(fatal)?;
            (raft, Arc::new(sm))
        }
        StorageKind::Memory => {
            let sm = MemStateMachine::default();
            let raft = Raft::new(config.id, raft_config, NetworkFactory, MemLogStore::default(), sm.clone())
                .await
                .map_err(fatal)?;
            (raft, Arc::new(sm))
        }
    };
    let listener = TcpListener::bind(&config.addr).await.map_err(|source| crate::Error::Io {
        op: "listen on",
        path: PathBuf::from(&config.addr),
        source,
    })?;
    let accept = {
        let server = Arc::new(Server {
            raft: raft.clone(),
            view: view.clone(),
            id: config.id,
            proposer: spawn_proposer(raft.clone()),
        });
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let _ = stream.set_nodelay(true);
                tokio::spawn(serve(stream, server.clone()));
            }
        })
    };
    Ok(Node { raft, view, id: config.id, accept })
}

impl Node {
    pub fn status(&self) -> Status {
        status(&self.raft, &*self.view, self.id)
    }

    /// Stops Raft and the listener.
    pub async fn shutdown(self) {
        self.accept.abort();
        if let Err(e) = self.raft.shutdown().await {
            log::warn!("walden-raft node {}: shutdown: {e}", self.id);
        }
    }
}

/// Runs a node until the process is killed: the body of the `node` example.
pub fn run(config: NodeConfig) -> crate::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|source| crate::Error::Io { op: "start a runtime for", path: config.dir.clone(), source })?;
    runtime.block_on(async {
        let node = start(config).await?;
        println!("walden-raft node {} listening", node.id);
        std::future::pending::<()>().await;
        Ok(())
    })
}

fn status(raft: &Raft, view: &dyn View, id: NodeId) -> Status {
    let metrics = raft.metrics().borrow().clone();
    let state = view.state();
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    for (key, value) in state.data.iter() {
        (key, value).hash(&mut hasher);
    }
    Status {
        id,
        leader: metrics.current_leader,
        term: metrics.current_term,
        last_log_index: metrics.last_log_index,
        last_applied: metrics.last_applied.map(|l| l.index),
        snapshot_index: metrics.snapshot.map(|l| l.index),
        purged_index: metrics.purged.map(|l| l.index),
        voters: metrics.membership_config.membership().voter_ids().collect(),
        snapshots_installed: view.installs(),
        keys: state.data.len() as u64,
        digest: hasher.finish(),
    }
}

/// The reply to a write-like call that failed: a hint to the leader, or why.
fn write_error<E: std::fmt::Display>(e: RaftError<NodeId, ClientWriteError<NodeId, BasicNode>>, or: E) -> Reply {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => {
            Reply::NotLeader { leader: f.leader_id.zip(f.leader_node.map(|n| n.addr)) }
        }
        other => Reply::Error(format!("{or}: {other}")),
    }
}

/// What a connection's handler needs.
struct Server {
    raft: Raft,
    view: Arc<dyn View>,
    id: NodeId,
    proposer: mpsc::UnboundedSender<Proposal>,
}

async fn handle(message: Message, server: &Server) -> Reply {
    let (raft, view, id) = (&server.raft, &*server.view, server.id);
    match message {
        Message::AppendEntries(rpc) => Reply::AppendEntries(raft.append_entries(rpc).await),
        Message::Vote(rpc) => Reply::Vote(raft.vote(rpc).await),
        Message::InstallSnapshot(rpc) => Reply::InstallSnapshot(raft.install_snapshot(rpc).await),
        Message::Put(Request::Put { key, value }) => {
            let (done, answer) = oneshot::channel();
            if server.proposer.send(Proposal { key, value, done }).is_err() {
                return Reply::Error("the proposer stopped".into());
            }
            match answer.await {
                Ok(Ok(previous)) => Reply::Put(Response { previous: vec![previous] }),
                Ok(Err(failed)) => failed.reply(),
                Err(_) => Reply::Error("the proposer dropped a put".into()),
            }
        }
        Message::Put(request) => match raft.client_write(request).await {
            Ok(response) => Reply::Put(response.data),
            Err(e) => write_error(e, "put"),
        },
        Message::Get(keys) => {
            let state = view.state();
            Reply::Get(keys.iter().map(|k| state.data.get(k).cloned()).collect())
        }
        Message::Status => Reply::Status(status(raft, view, id)),
        Message::Init(members) => {
            let members: BTreeMap<NodeId, BasicNode> =
                members.into_iter().map(|(id, addr)| (id, BasicNode::new(addr))).collect();
            match raft.initialize(members).await {
                Ok(()) => Reply::Done,
                Err(e) => Reply::Error(format!("init: {e}")),
            }
        }
        Message::AddLearner(learner, addr) => match raft.add_learner(learner, BasicNode::new(addr), true).await {
            Ok(_) => Reply::Done,
            Err(e) => write_error(e, "add learner"),
        },
        Message::ChangeMembership(voters) => {
            match raft.change_membership(ChangeMembers::ReplaceAllVoters(voters), false).await {
                Ok(_) => Reply::Done,
                Err(e) => write_error(e, "change membership"),
            }
        }
    }
}

async fn serve(mut stream: TcpStream, server: Arc<Server>) {
    let id = server.id;
    loop {
        let message = match read_frame::<Message>(&mut stream).await {
            Ok(Some(message)) => message,
            Ok(None) => return,
            Err(e) => {
                log::debug!("walden-raft node {id}: dropping a connection: {e}");
                return;
            }
        };
        let reply = handle(message, &server).await;
        if write_frame(&mut stream, &reply).await.is_err() {
            return;
        }
    }
}

/// A client of the cluster: sends writes to the leader, following
/// "not the leader" hints, and retries across nodes until a deadline.
pub struct Client {
    addrs: Vec<String>,
    next: usize,
    conn: Connection,
    /// How long a call keeps retrying (a leader election takes about one
    /// election timeout).
    pub patience: Duration,
}

impl Client {
    /// A client that knows these node addresses (at least one).
    pub fn new(addrs: Vec<String>) -> Client {
        assert!(!addrs.is_empty(), "a client needs a node address");
        let conn = Connection::new(addrs[0].clone());
        Client { addrs, next: 1, conn, patience: Duration::from_secs(30) }
    }

    fn try_next(&mut self) {
        let addr = self.addrs[self.next % self.addrs.len()].clone();
        self.next += 1;
        self.conn = Connection::new(addr);
    }

    /// Sends a write-like message to the leader; returns its reply.
    pub async fn call_leader(&mut self, message: &Message) -> io::Result<Reply> {
        let deadline = Instant::now() + self.patience;
        let mut last = String::new();
        while Instant::now() < deadline {
            match self.conn.call(message).await {
                Ok(Reply::NotLeader { leader: Some((_, addr)) }) if addr != self.conn.addr() => {
                    if !self.addrs.contains(&addr) {
                        self.addrs.push(addr.clone());
                    }
                    self.conn = Connection::new(addr);
                    continue;
                }
                Ok(Reply::NotLeader { .. }) => last = format!("{}: not the leader, no leader known", self.conn.addr()),
                Ok(Reply::Error(e)) => last = format!("{}: {e}", self.conn.addr()),
                Ok(reply) => return Ok(reply),
                Err(e) => {
                    last = format!("{}: {e}", self.conn.addr());
                    self.try_next();
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("no leader answered within {:?}; last: {last}", self.patience),
        ))
    }

    /// Sets `key` to `value`; returns once the leader applied it.
    pub async fn put(&mut self, key: &str, value: &str) -> io::Result<Response> {
        let message = Message::Put(Request::Put { key: key.into(), value: value.into() });
        match self.call_leader(&message).await? {
            Reply::Put(response) => Ok(response),
            other => Err(io::Error::other(format!("unexpected reply {other:?}"))),
        }
    }
}

/// Sends one message to one node, without redirection.
pub async fn call(addr: &str, message: &Message) -> io::Result<Reply> {
    Connection::new(addr).call(message).await
}

/// The status of the node at `addr`.
pub async fn node_status(addr: &str) -> io::Result<Status> {
    match call(addr, &Message::Status).await? {
        Reply::Status(status) => Ok(status),
        other => Err(io::Error::other(format!("unexpected reply {other:?}"))),
    }
}
