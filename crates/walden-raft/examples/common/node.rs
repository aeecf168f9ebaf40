//! A node: openraft on walden (or on memory, for the benchmark's upper
//! bound) serving an application ([`Service`]: the key-value map, the
//! tests' bank) over the framed TCP transport (network.rs), and a
//! [`Client`] that finds the leader.
//!
//! A write sent to a follower is answered "not the leader, try N at ADDR"
//! ([`Reply::NotLeader`]); the client follows the hint. A read is
//! linearizable unless the client asks for a stale one: the node asked
//! calls openraft's `ensure_linearizable` (the leader confirms its
//! leadership with a quorum and returns its committed index, the read
//! index; the node waits until its state machine has applied up to it),
//! and a follower forwards the read to the leader, whose answer it relays.
//! A stale read (`stale: true`) reads the asked node's applied state as it
//! is, and the reply says so.
//!
//! Writes are batched: openraft 0.9's core waits for each append's flush
//! before it takes the next, and appends one client write per entry, so a
//! proposer task groups the writes that arrive while earlier proposals are
//! in flight ([`PROPOSALS_IN_FLIGHT`] at most) into one entry
//! ([`Service::batch`]) of up to [`BATCH_WRITES_MAX`] writes: one fsync
//! then carries many clients' writes. Each client still gets its own
//! answer, once its entry is applied. The in-memory cluster batches the
//! same way.
//!
//! A proposal answers its clients all at once, and those that write again
//! come back over the next few hundred microseconds. Proposing at the first
//! arrival would split them into two batches that alternate, each waiting
//! for the other's round (measured: 32 puts a round at 64 clients, half the
//! clients). So the proposer waits, at most [`LINGER_MAX`], until as many
//! writes have queued as the last proposal carried.

use super::network::{read_frame, write_frame, Connection, Message, NetworkFactory, NodeId, Reply, Status};
use openraft::error::{CheckIsLeaderError, ClientWriteError, RaftError};
use openraft::{BasicNode, ChangeMembers, RaftTypeConfig};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::BTreeMap;
use std::io;
use std::marker::PhantomData;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, Semaphore};
use walden_raft::memory::{MemLogStore, MemStateMachine};
use walden_raft::{AppState, SnapshotData, StateMachine};

/// An application the node serves: its openraft types, its state, what one
/// client writes and reads, and how writes are grouped into one entry.
pub trait Service: Send + Sync + Sized + 'static {
    /// The request data of an entry (`Clone`: the log store keeps recent
    /// entries in memory for replication).
    type D: openraft::AppData + Clone;
    /// The openraft configuration (the node's transport fixes node ids,
    /// nodes, entries, snapshot data and runtime).
    type C: RaftTypeConfig<
        D = Self::D,
        NodeId = NodeId,
        Node = BasicNode,
        Entry = openraft::Entry<Self::C>,
        SnapshotData = SnapshotData,
        AsyncRuntime = openraft::TokioRuntime,
        Responder = openraft::impls::OneshotResponder<Self::C>,
    >;
    /// The replicated state.
    type State: AppState<Self::C>;
    /// One client's write.
    type Write: Serialize + DeserializeOwned + Send + Sync + 'static;
    /// Its answer.
    type WriteReply: Serialize + DeserializeOwned + Send + Sync + 'static;
    /// One client's read.
    type Read: Serialize + DeserializeOwned + Send + Sync + 'static;
    /// Its answer.
    type ReadReply: Serialize + DeserializeOwned + Send + Sync + 'static;
    /// The request of one entry carrying these writes, in order.
    fn batch(writes: Vec<Self::Write>) -> <Self::C as RaftTypeConfig>::D;
    /// The answers to each write of a batch, in order.
    fn split(response: <Self::C as RaftTypeConfig>::R) -> Vec<Self::WriteReply>;
    /// Answers a read from the applied state.
    fn read(state: &Self::State, read: &Self::Read) -> Self::ReadReply;
    /// The number of items in the state and a hash of all of them.
    fn digest(state: &Self::State) -> (u64, u64);
}

type Raft<A> = openraft::Raft<<A as Service>::C>;

/// Proposals (log entries of client writes) a node has in flight at once.
/// One: the next batch grows while the current one commits. (On the bench
/// at 64 clients, 2 in flight made walden's batches smaller and its
/// throughput lower: docs/BENCHMARKS.md.)
pub const PROPOSALS_IN_FLIGHT: usize = 1;
/// The most writes one proposal carries.
pub const BATCH_WRITES_MAX: usize = 1024;
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
    fn reply<A: Service>(self) -> Reply<A> {
        match self {
            Failed::NotLeader(leader) => Reply::NotLeader { leader },
            Failed::Error(e) => Reply::Error(e),
        }
    }
}

struct Proposal<A: Service> {
    write: A::Write,
    done: oneshot::Sender<Result<A::WriteReply, Failed>>,
}

/// Moves the writes already queued into `batch`, up to [`BATCH_WRITES_MAX`].
fn take_queued<A: Service>(rx: &mut mpsc::UnboundedReceiver<Proposal<A>>, batch: &mut Vec<Proposal<A>>) {
    while batch.len() < BATCH_WRITES_MAX {
        match rx.try_recv() {
            Ok(put) => batch.push(put),
            Err(_) => break,
        }
    }
}

/// Starts the proposer task; returns where to send puts.
fn spawn_proposer<A: Service>(raft: Raft<A>) -> mpsc::UnboundedSender<Proposal<A>> {
    let (tx, mut rx) = mpsc::unbounded_channel::<Proposal<A>>();
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
            let expected = answered.load(Ordering::Relaxed).min(BATCH_WRITES_MAX);
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
                let n = batch.len();
                let (writes, dones): (Vec<A::Write>, Vec<_>) = batch.into_iter().map(|p| (p.write, p.done)).unzip();
                let result = raft.client_write(A::batch(writes)).await;
                answered.store(n, Ordering::Relaxed);
                match result {
                    Ok(response) => {
                        for (done, reply) in dones.into_iter().zip(A::split(response.data)) {
                            let _ = done.send(Ok(reply));
                        }
                    }
                    Err(e) => {
                        let failed = match write_error::<A, _>(e, "write") {
                            Reply::NotLeader { leader } => Failed::NotLeader(leader),
                            Reply::Error(e) => Failed::Error(e),
                            other => Failed::Error(format!("{other:?}")),
                        };
                        for done in dones {
                            let _ = done.send(Err(failed.clone()));
                        }
                    }
                }
                drop(permit);
            });
        }
    });
    tx
}

/// Idle connections a node keeps for reads it forwards to the leader.
pub const FORWARD_CONNECTIONS_MAX: usize = 64;

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

/// The state machine the server reads, whichever it is.
enum View<A: Service> {
    Walden(StateMachine<A::C, A::State>),
    Memory(MemStateMachine<A::C, A::State>),
}

impl<A: Service> View<A> {
    fn read<R>(&self, f: impl FnOnce(&A::State) -> R) -> R {
        match self {
            View::Walden(sm) => sm.read(f),
            View::Memory(sm) => sm.read(f),
        }
    }

    fn installs(&self) -> u64 {
        match self {
            View::Walden(sm) => sm.installs(),
            View::Memory(sm) => sm.installs(),
        }
    }
}

/// A running node.
pub struct Node<A: Service> {
    pub raft: Raft<A>,
    view: Arc<View<A>>,
    id: NodeId,
    accept: tokio::task::JoinHandle<()>,
}

/// Opens the node's storage, starts Raft and listens. Runs on the caller's
/// tokio runtime.
pub async fn start<A: Service>(config: NodeConfig) -> walden_raft::Result<Node<A>> {
    let raft_config = Arc::new(config.raft.validate().map_err(|e| walden_raft::Error::Refused(e.to_string()))?);
    let fatal = |e: openraft::error::Fatal<NodeId>| walden_raft::Error::Refused(format!("raft did not start: {e}"));
    let network = NetworkFactory::<A>(PhantomData);
    let (raft, view) = match config.storage {
        StorageKind::Walden => {
            let (log, sm, report) =
                walden_raft::open::<A::C, A::State>(&config.dir, walden_raft::default_wal_options())?;
            if let Some(path) = &report.loaded {
                log::info!("walden-raft node {}: loaded {}", config.id, path.display());
            }
            let raft = Raft::<A>::new(config.id, raft_config, network, log, sm.clone()).await.map_err(fatal)?;
            (raft, Arc::new(View::Walden(sm)))
        }
        StorageKind::Memory => {
            let sm = MemStateMachine::default();
            let raft = Raft::<A>::new(config.id, raft_config, network, MemLogStore::default(), sm.clone())
                .await
                .map_err(fatal)?;
            (raft, Arc::new(View::Memory(sm)))
        }
    };
    let listener = TcpListener::bind(&config.addr).await.map_err(|source| walden_raft::Error::Io {
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
            reads: ReadGate::default(),
            forward_pool: parking_lot::Mutex::new(Vec::new()),
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

impl<A: Service> Node<A> {
    pub fn status(&self) -> Status {
        status(&self.raft, &self.view, self.id)
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
pub fn run<A: Service>(config: NodeConfig) -> walden_raft::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|source| walden_raft::Error::Io { op: "start a runtime for", path: config.dir.clone(), source })?;
    runtime.block_on(async {
        let node = start::<A>(config).await?;
        println!("walden-raft node {} listening", node.id);
        std::future::pending::<()>().await;
        Ok(())
    })
}

fn status<A: Service>(raft: &Raft<A>, view: &View<A>, id: NodeId) -> Status {
    let metrics = raft.metrics().borrow().clone();
    let (keys, digest) = view.read(A::digest);
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
        keys,
        digest,
    }
}

/// The reply to a write-like call that failed: a hint to the leader, or why.
fn write_error<A: Service, E: std::fmt::Display>(
    e: RaftError<NodeId, ClientWriteError<NodeId, BasicNode>>,
    or: E,
) -> Reply<A> {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => {
            Reply::NotLeader { leader: f.leader_id.zip(f.leader_node.map(|n| n.addr)) }
        }
        other => Reply::Error(format!("{or}: {other}")),
    }
}

/// What a connection's handler needs.
struct Server<A: Service> {
    raft: Raft<A>,
    view: Arc<View<A>>,
    id: NodeId,
    proposer: mpsc::UnboundedSender<Proposal<A>>,
    reads: ReadGate,
    /// Idle connections for reads forwarded to the leader.
    forward_pool: parking_lot::Mutex<Vec<Connection>>,
}

type ReadCheck = Result<(), Box<RaftError<NodeId, CheckIsLeaderError<NodeId, BasicNode>>>>;

/// Groups concurrent linearizable reads behind one `ensure_linearizable`
/// (one read index, one quorum round), as etcd batches ReadIndex requests.
/// A read waits for a check that starts after it arrived: a check already
/// in flight may have taken its read index before a write the reader saw
/// acknowledged, so it only serves the reads queued before it started.
#[derive(Default)]
struct ReadGate {
    state: Arc<parking_lot::Mutex<GateState>>,
}

#[derive(Default)]
struct GateState {
    running: bool,
    next: Vec<oneshot::Sender<ReadCheck>>,
}

impl ReadGate {
    /// Waits for a check that started after this call; its result.
    async fn check<A: Service>(&self, raft: &Raft<A>) -> ReadCheck {
        let (tx, rx) = oneshot::channel();
        let start = {
            let mut st = self.state.lock();
            st.next.push(tx);
            !std::mem::replace(&mut st.running, true)
        };
        if start {
            // A task runs the checks, one after another, until no read is queued.
            let (state, raft) = (self.state.clone(), raft.clone());
            tokio::spawn(async move {
                loop {
                    let batch = {
                        let mut st = state.lock();
                        if st.next.is_empty() {
                            st.running = false;
                            break;
                        }
                        std::mem::take(&mut st.next)
                    };
                    let result = raft.ensure_linearizable().await.map(|_| ()).map_err(Box::new);
                    for waiter in batch {
                        let _ = waiter.send(result.clone());
                    }
                }
            });
        }
        rx.await.unwrap_or(Err(Box::new(RaftError::Fatal(openraft::error::Fatal::Stopped))))
    }
}

/// A linearizable read: confirmed by the leader's read index, or forwarded
/// to the leader once.
async fn read_linearizable<A: Service>(server: &Server<A>, read: A::Read, forwarded: bool) -> Reply<A> {
    match server.reads.check::<A>(&server.raft).await {
        Ok(()) => {
            let value = server.view.read(|state| A::read(state, &read));
            Reply::Read { value, served_by: server.id, stale: false }
        }
        Err(e) if !forwarded && matches!(*e, RaftError::APIError(CheckIsLeaderError::ForwardToLeader(_))) => {
            let RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f)) = *e else { unreachable!("matched above") };
            let Some(addr) = f.leader_node.map(|n| n.addr) else {
                return Reply::NotLeader { leader: None };
            };
            let message = Message::<A>::Read { read, stale: false, forwarded: true };
            let pooled = {
                let mut pool = server.forward_pool.lock();
                let at = pool.iter().position(|c| c.addr() == addr);
                at.map(|i| pool.swap_remove(i))
            };
            let mut conn = pooled.unwrap_or_else(|| Connection::new(addr.clone()));
            match conn.call(&message).await {
                Ok(reply) => {
                    let mut pool = server.forward_pool.lock();
                    if pool.len() < FORWARD_CONNECTIONS_MAX {
                        pool.push(conn);
                    }
                    reply
                }
                Err(e) => Reply::Error(format!("forwarding a read to the leader at {addr}: {e}")),
            }
        }
        Err(e) => match *e {
            RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f)) => {
                Reply::NotLeader { leader: f.leader_id.zip(f.leader_node.map(|n| n.addr)) }
            }
            e => Reply::Error(format!("read: {e}")),
        },
    }
}

async fn handle<A: Service>(message: Message<A>, server: &Server<A>) -> Reply<A> {
    let (raft, view, id) = (&server.raft, &server.view, server.id);
    match message {
        Message::AppendEntries(rpc) => Reply::AppendEntries(raft.append_entries(rpc).await),
        Message::Vote(rpc) => Reply::Vote(raft.vote(rpc).await),
        Message::InstallSnapshot(rpc) => Reply::InstallSnapshot(raft.install_snapshot(rpc).await),
        Message::Write(write) => {
            let (done, answer) = oneshot::channel();
            if server.proposer.send(Proposal { write, done }).is_err() {
                return Reply::Error("the proposer stopped".into());
            }
            match answer.await {
                Ok(Ok(reply)) => Reply::Write(reply),
                Ok(Err(failed)) => failed.reply(),
                Err(_) => Reply::Error("the proposer dropped a write".into()),
            }
        }
        Message::Read { read, stale: true, .. } => {
            let value = view.read(|state| A::read(state, &read));
            Reply::Read { value, served_by: id, stale: true }
        }
        Message::Read { read, stale: false, forwarded } => read_linearizable(server, read, forwarded).await,
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
            Err(e) => write_error::<A, _>(e, "add learner"),
        },
        Message::ChangeMembership(voters) => {
            match raft.change_membership(ChangeMembers::ReplaceAllVoters(voters), false).await {
                Ok(_) => Reply::Done,
                Err(e) => write_error::<A, _>(e, "change membership"),
            }
        }
    }
}

async fn serve<A: Service>(mut stream: TcpStream, server: Arc<Server<A>>) {
    let id = server.id;
    loop {
        let message = match read_frame::<Message<A>>(&mut stream).await {
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
pub struct Client<A> {
    _app: PhantomData<A>,
    addrs: Vec<String>,
    next: usize,
    conn: Connection,
    /// How long a call keeps retrying (a leader election takes about one
    /// election timeout).
    pub patience: Duration,
}

impl<A: Service> Client<A> {
    /// A client that knows these node addresses (at least one).
    pub fn new(addrs: Vec<String>) -> Client<A> {
        assert!(!addrs.is_empty(), "a client needs a node address");
        let conn = Connection::new(addrs[0].clone());
        Client { _app: PhantomData, addrs, next: 1, conn, patience: Duration::from_secs(30) }
    }

    fn try_next(&mut self) {
        let addr = self.addrs[self.next % self.addrs.len()].clone();
        self.next += 1;
        self.conn = Connection::new(addr);
    }

    /// One call to the current node, given up after `left` (a node that
    /// accepts a connection and never answers must not hold a client past
    /// its patience).
    async fn call_within(&mut self, message: &Message<A>, left: Duration) -> io::Result<Reply<A>> {
        match tokio::time::timeout(left, self.conn.call(message)).await {
            Ok(result) => result,
            Err(_) => {
                self.conn = Connection::new(self.conn.addr().to_owned());
                Err(io::Error::new(io::ErrorKind::TimedOut, format!("no answer within {left:?}")))
            }
        }
    }

    /// Sends a write-like message to the leader; returns its reply.
    pub async fn call_leader(&mut self, message: &Message<A>) -> io::Result<Reply<A>> {
        let deadline = Instant::now() + self.patience;
        let mut last = String::new();
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.call_within(message, left).await {
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

    /// Writes; returns the answer once the leader applied it.
    pub async fn write(&mut self, write: A::Write) -> io::Result<A::WriteReply> {
        match self.call_leader(&Message::Write(write)).await? {
            Reply::Write(reply) => Ok(reply),
            other => Err(io::Error::other(format!("unexpected reply {other:?}"))),
        }
    }

    /// Reads through the node this client is connected to (linearizable
    /// unless `stale`), moving on to the next node after an I/O error.
    /// Returns the answer and the node that served it.
    pub async fn read(&mut self, read: A::Read, stale: bool) -> io::Result<(A::ReadReply, NodeId)> {
        let message = Message::<A>::Read { read, stale, forwarded: false };
        let deadline = Instant::now() + self.patience;
        let mut last = String::new();
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.call_within(&message, left).await {
                Ok(Reply::Read { value, served_by, .. }) => return Ok((value, served_by)),
                Ok(other) => last = format!("{}: {other:?}", self.conn.addr()),
                Err(e) => {
                    last = format!("{}: {e}", self.conn.addr());
                    self.try_next();
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("no read answered within {:?}; last: {last}", self.patience),
        ))
    }
}

/// Sends one message to one node, without redirection.
pub async fn call<A: Service>(addr: &str, message: &Message<A>) -> io::Result<Reply<A>> {
    Connection::new(addr).call(message).await
}

/// The status of the node at `addr`.
pub async fn node_status<A: Service>(addr: &str) -> io::Result<Status> {
    match call::<A>(addr, &Message::Status).await? {
        Reply::Status(status) => Ok(status),
        other => Err(io::Error::other(format!("unexpected reply {other:?}"))),
    }
}
