//! Three node processes on loopback survive SIGKILL of their leader.
//!
//! The nodes are this test binary re-executed in a node role (so the test
//! does not depend on where cargo puts examples), each on walden in a
//! directory of its own. The test writes 10,000 keys through the leader,
//! SIGKILLs the leader, keeps writing through the new one, restarts the
//! killed node, lets a fourth node join late (the log it would need is
//! purged by then, so it must install a snapshot), writes a little more,
//! then checks that all four nodes converge to the same state and that
//! every write a client saw acknowledged is there, on every node.
//!
//! All along, readers read through every node (one reader per node, with
//! linearizable reads, the node's default) while a counter is written in
//! sequence: a read must never return a counter older than the last one
//! acknowledged before the read began, nor miss a key acknowledged before
//! it began, whichever node serves it, before and after the kill, the
//! restart and the join.

#[path = "../examples/common/mod.rs"]
mod common;

use common::kv::Kv;
use common::network::{Connection, Message, Reply, Status};
use common::node::{self, NodeConfig};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

type Client = common::node::Client<Kv>;

const NODE_ENV: &str = "WALDEN_RAFT_CLUSTER_NODE";
const TEST: &str = "three_nodes_survive_sigkill_of_the_leader_and_a_late_fourth_installs_a_snapshot";
const CLIENTS: usize = 32;

/// The child processes, SIGKILLed when the test ends however it ends.
struct Nodes {
    children: BTreeMap<u64, Child>,
    addrs: BTreeMap<u64, String>,
    root: PathBuf,
}

impl Nodes {
    fn dir(&self, id: u64) -> PathBuf {
        self.root.join(format!("node-{id}"))
    }

    fn start(&mut self, id: u64) {
        let addr = self.addrs[&id].clone();
        let child = Command::new(std::env::current_exe().unwrap())
            .args([TEST, "--exact", "--nocapture", "--test-threads=1"])
            .env(NODE_ENV, format!("{id}|{addr}|{}", self.dir(id).display()))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn a node");
        self.children.insert(id, child);
    }

    fn kill(&mut self, id: u64) {
        let mut child = self.children.remove(&id).expect("a running node");
        child.kill().expect("SIGKILL");
        child.wait().expect("reap");
    }

    fn addr_list(&self) -> Vec<String> {
        self.addrs.values().cloned().collect()
    }
}

impl Drop for Nodes {
    fn drop(&mut self) {
        for child in self.children.values_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The node role: run until killed.
fn node_role(spec: &str) -> ! {
    let mut parts = spec.splitn(3, '|');
    let id = parts.next().unwrap().parse().unwrap();
    let addr = parts.next().unwrap().to_owned();
    let dir = Path::new(parts.next().unwrap()).to_owned();
    let mut config = NodeConfig::new(id, addr, dir);
    // Puts are batched (about 32 per entry here): snapshot every 100
    // entries, keeping 50 behind, so the log is purged well before node 4
    // joins.
    config.raft.snapshot_policy = openraft::SnapshotPolicy::LogsSinceLast(100);
    config.raft.max_in_snapshot_log_to_keep = 50;
    let result = node::run::<Kv>(config);
    eprintln!("node {id} stopped: {result:?}");
    std::process::exit(1)
}

async fn wait_for<T>(what: &str, timeout: Duration, mut probe: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if let Ok(Some(v)) = tokio::time::timeout(left, probe()).await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Writes keys `range` with `CLIENTS` concurrent clients; returns what was
/// acknowledged.
async fn write_keys(addrs: Vec<String>, range: std::ops::Range<u64>, seen: &Seen) -> BTreeMap<String, String> {
    let acked = Arc::new(parking_lot::Mutex::new(BTreeMap::new()));
    let mut tasks = Vec::new();
    for c in 0..CLIENTS as u64 {
        let (addrs, acked, range, seen) = (addrs.clone(), acked.clone(), range.clone(), seen.clone());
        tasks.push(tokio::spawn(async move {
            let mut client = Client::new(addrs);
            for i in range.filter(|i| i % CLIENTS as u64 == c) {
                let (key, value) = (format!("key-{i:06}"), format!("value-{i}"));
                client.write((key.clone(), value.clone())).await.unwrap_or_else(|e| panic!("put {key}: {e}"));
                acked.lock().insert(key.clone(), value.clone());
                seen.keys.lock().push((key, value));
            }
        }));
    }
    for task in tasks {
        task.await.expect("a writer panicked");
    }
    Arc::try_unwrap(acked).unwrap().into_inner()
}

async fn leader_of(nodes: &Nodes) -> u64 {
    wait_for("a leader", Duration::from_secs(30), async || {
        for addr in nodes.addrs.values() {
            if let Ok(Status { leader: Some(leader), .. }) = status(addr).await {
                if nodes.children.contains_key(&leader) {
                    return Some(leader);
                }
            }
        }
        None
    })
    .await
}

/// A call to one node that gives up after `CALL_PATIENCE`.
async fn call(addr: &str, message: &Message<Kv>) -> std::io::Result<Reply<Kv>> {
    match tokio::time::timeout(CALL_PATIENCE, node::call::<Kv>(addr, message)).await {
        Ok(result) => result,
        Err(_) => {
            Err(std::io::Error::new(std::io::ErrorKind::TimedOut, format!("{addr}: no answer in {CALL_PATIENCE:?}")))
        }
    }
}

/// The status of one node, or an error after 5 s without an answer.
async fn status(addr: &str) -> std::io::Result<Status> {
    match tokio::time::timeout(Duration::from_secs(5), node::node_status::<Kv>(addr)).await {
        Ok(result) => result,
        Err(_) => Err(std::io::Error::new(std::io::ErrorKind::TimedOut, format!("{addr}: no status in 5 s"))),
    }
}

const CALL_PATIENCE: Duration = Duration::from_secs(30);

/// The whole scenario's bound: it takes 3-10 s; past this it has hung, and
/// the test fails naming the phase it was in and each node's state.
const SCENARIO_PATIENCE: Duration = Duration::from_secs(300);

async fn scenario(nodes: &mut Nodes, reached: Arc<parking_lot::Mutex<String>>) {
    let started = Instant::now();
    let phase = |name: &str| {
        eprintln!("[{:>6.2}s] {name}", started.elapsed().as_secs_f64());
        *reached.lock() = name.to_owned();
    };
    for id in 1..=3 {
        nodes.start(id);
    }
    for id in 1..=3 {
        let addr = nodes.addrs[&id].clone();
        wait_for("a node to listen", Duration::from_secs(30), async || status(&addr).await.ok()).await;
    }
    let members = (1..=3).map(|id| (id, nodes.addrs[&id].clone())).collect();
    let reply = call(&nodes.addrs[&1], &Message::Init(members)).await.expect("init");
    assert!(matches!(reply, Reply::Done), "init: {reply:?}");
    let first_leader = leader_of(nodes).await;
    phase(&format!("cluster of 3 up, leader {first_leader}"));

    let seen = Seen::default();
    let counter = tokio::spawn(write_counter(nodes.addr_list(), seen.clone()));
    let mut readers: Vec<tokio::task::JoinHandle<ReadTally>> =
        (1..=3).map(|id| tokio::spawn(read_through(id, nodes.addrs[&id].clone(), seen.clone()))).collect();
    let mut acked = write_keys(nodes.addr_list(), 0..10_000, &seen).await;
    phase("10,000 keys written");

    let leader = leader_of(nodes).await;
    nodes.kill(leader);
    phase(&format!("leader {leader} SIGKILLed"));
    let killed_at = seen.counter.load(Ordering::SeqCst);
    acked.extend(write_keys(nodes.addr_list(), 10_000..12_000, &seen).await);
    let new_leader = leader_of(nodes).await;
    assert_ne!(new_leader, leader);
    phase(&format!("2,000 more keys written through the new leader {new_leader}"));

    nodes.start(leader);
    phase(&format!("node {leader} restarted"));
    let restarted_at = seen.counter.load(Ordering::SeqCst);

    nodes.addrs.insert(4, format!("127.0.0.1:{}", free_port()));
    nodes.start(4);
    let addr4 = nodes.addrs[&4].clone();
    wait_for("node 4 to listen", Duration::from_secs(30), async || status(&addr4).await.ok()).await;
    let mut admin = Client::new(nodes.addr_list());
    let reply = admin.call_leader(&Message::AddLearner(4, addr4.clone())).await.expect("add learner 4");
    assert!(matches!(reply, Reply::Done), "add learner: {reply:?}");
    let reply = admin.call_leader(&Message::ChangeMembership((1..=4).collect())).await.expect("change membership");
    assert!(matches!(reply, Reply::Done), "change membership: {reply:?}");
    phase("node 4 joined as a voter");
    readers.push(tokio::spawn(read_through(4, addr4.clone(), seen.clone())));
    acked.extend(write_keys(nodes.addr_list(), 12_000..12_500, &seen).await);
    phase("500 more keys written");

    let addrs = nodes.addr_list();
    let statuses = wait_for("all four nodes to converge", Duration::from_secs(60), async || {
        let mut statuses = Vec::new();
        for addr in &addrs {
            statuses.push(status(addr).await.ok()?);
        }
        let first = &statuses[0];
        let same = statuses.iter().all(|s| (s.last_applied, s.digest) == (first.last_applied, first.digest));
        same.then_some(statuses)
    })
    .await;
    phase("all four nodes converged");
    for status in &statuses {
        assert_eq!(status.keys, 12_501, "node {}: 12,500 keys and the counter: {status:?}", status.id);
        assert_eq!(status.voters, vec![1, 2, 3, 4], "node {}", status.id);
    }
    let s4 = statuses.iter().find(|s| s.id == 4).unwrap();
    assert!(s4.snapshots_installed >= 1, "node 4 joined without installing a snapshot: {s4:?}");
    let purged = statuses.iter().filter_map(|s| s.purged_index).max();
    assert!(purged.is_some_and(|p| p > 100), "the log was purged behind snapshots: {statuses:?}");

    assert_eq!(acked.len(), 12_500);
    let keys: Vec<String> = acked.keys().cloned().collect();
    for addr in &addrs {
        for chunk in keys.chunks(2_000) {
            let read = Message::Read { read: chunk.to_vec(), stale: true, forwarded: false };
            let reply = call(addr, &read).await.expect("get");
            let Reply::Read { value: values, .. } = reply else { panic!("{addr}: {reply:?}") };
            for (key, value) in chunk.iter().zip(values) {
                assert_eq!(value.as_ref(), Some(&acked[key]), "{addr}: acknowledged write {key} is missing");
            }
        }
    }
    phase("every acknowledged write is on every node");

    // Let the readers see the end state a little, then stop them.
    tokio::time::sleep(Duration::from_millis(500)).await;
    seen.stop.store(true, Ordering::SeqCst);
    let counted = counter.await.expect("the counter writer");
    for reader in readers {
        let tally = reader.await.expect("a reader panicked");
        eprintln!(
            "node {}: {} linearizable reads checked ({} after the counter passed {killed_at}, {} after it passed {restarted_at}), {} unanswered",
            tally.node, tally.checked, tally.checked_after(killed_at), tally.checked_after(restarted_at), tally.unanswered
        );
        assert!(tally.checked >= 20, "node {}: too few reads answered: {tally:?}", tally.node);
        if tally.node == leader {
            assert!(
                tally.checked_after(restarted_at) >= 5,
                "the restarted node {leader} answered too few reads after its restart: {tally:?}"
            );
        }
    }
    assert!(counted > 100, "the counter was written {counted} times");
    phase("no read returned a value older than a write acknowledged before it began");
}

/// What the writers acknowledged, for the readers to check against.
#[derive(Clone, Default)]
struct Seen {
    /// The last counter value acknowledged.
    counter: Arc<AtomicU64>,
    /// Every key acknowledged, with its value, in acknowledgement order.
    keys: Arc<parking_lot::Mutex<Vec<(String, String)>>>,
    stop: Arc<AtomicBool>,
}

/// Writes `counter` = 1, 2, 3, ... one at a time until told to stop;
/// returns the last value acknowledged.
async fn write_counter(addrs: Vec<String>, seen: Seen) -> u64 {
    let mut client = Client::new(addrs);
    let mut n = 0;
    while !seen.stop.load(Ordering::SeqCst) {
        n += 1;
        client.write(("counter".into(), n.to_string())).await.unwrap_or_else(|e| panic!("counter {n}: {e}"));
        seen.counter.store(n, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    n
}

/// What one reader saw.
#[derive(Debug, Default)]
struct ReadTally {
    node: u64,
    /// The counter value acknowledged before each read that was answered.
    answered_after: Vec<u64>,
    checked: u64,
    unanswered: u64,
}

impl ReadTally {
    fn checked_after(&self, counter: u64) -> usize {
        self.answered_after.iter().filter(|&&c| c > counter).count()
    }
}

/// Reads the counter and one acknowledged key through node `id` only, with
/// linearizable reads, until told to stop; panics on a read older than a
/// write acknowledged before it began. A node that is down or between
/// leaders leaves reads unanswered (counted), never wrong.
async fn read_through(id: u64, addr: String, seen: Seen) -> ReadTally {
    let mut tally = ReadTally { node: id, ..Default::default() };
    let mut conn = Connection::new(addr.clone());
    let mut i = 0usize;
    while !seen.stop.load(Ordering::SeqCst) {
        i += 1;
        let counter_before = seen.counter.load(Ordering::SeqCst);
        let key = {
            let keys = seen.keys.lock();
            (!keys.is_empty()).then(|| keys[(i * 7919) % keys.len()].clone())
        };
        let mut read = vec!["counter".to_owned()];
        read.extend(key.iter().map(|(k, _)| k.clone()));
        let message = Message::<Kv>::Read { read, stale: false, forwarded: false };
        match tokio::time::timeout(Duration::from_secs(5), conn.call(&message)).await {
            Ok(Ok(Reply::Read { value, served_by, stale })) => {
                assert!(!stale, "node {id}: a default read came back stale");
                let counter: u64 = value[0].as_deref().map_or(0, |v| v.parse().expect("a counter value"));
                assert!(
                    counter >= counter_before,
                    "node {id} (served by {served_by}): read counter {counter}, but {counter_before} was acknowledged before the read began"
                );
                if let Some((key, expected)) = &key {
                    assert_eq!(
                        value[1].as_ref(),
                        Some(expected),
                        "node {id} (served by {served_by}): {key} was acknowledged before the read began"
                    );
                }
                tally.checked += 1;
                tally.answered_after.push(counter_before);
            }
            Ok(Ok(_)) | Ok(Err(_)) => tally.unanswered += 1,
            Err(_) => {
                tally.unanswered += 1;
                conn = Connection::new(addr.clone());
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tally
}

#[test]
fn three_nodes_survive_sigkill_of_the_leader_and_a_late_fourth_installs_a_snapshot() {
    if let Ok(spec) = std::env::var(NODE_ENV) {
        node_role(&spec);
    }
    let root = tempfile::tempdir().unwrap();
    let mut nodes = Nodes { children: BTreeMap::new(), addrs: BTreeMap::new(), root: root.path().to_owned() };
    for id in 1..=3 {
        nodes.addrs.insert(id, format!("127.0.0.1:{}", free_port()));
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let reached = Arc::new(parking_lot::Mutex::new("starting the nodes".to_owned()));
    runtime.block_on(async {
        if tokio::time::timeout(SCENARIO_PATIENCE, scenario(&mut nodes, reached.clone())).await.is_err() {
            let mut states = Vec::new();
            for (id, addr) in &nodes.addrs {
                let status = tokio::time::timeout(Duration::from_secs(5), node::node_status::<Kv>(addr)).await;
                states.push(format!("node {id} at {addr}: {status:?}"));
            }
            panic!(
                "the scenario hung for {SCENARIO_PATIENCE:?} after \"{}\"; nodes:\n{}",
                reached.lock(),
                states.join("\n")
            );
        }
    });
}
