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

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use walden_raft::network::{Message, Reply, Status};
use walden_raft::node::{self, Client, NodeConfig};

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
    let result = node::run(config);
    eprintln!("node {id} stopped: {result:?}");
    std::process::exit(1)
}

async fn wait_for<T>(what: &str, timeout: Duration, mut probe: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Writes keys `range` with `CLIENTS` concurrent clients; returns what was
/// acknowledged.
async fn write_keys(addrs: Vec<String>, range: std::ops::Range<u64>) -> BTreeMap<String, String> {
    let acked = Arc::new(parking_lot::Mutex::new(BTreeMap::new()));
    let mut tasks = Vec::new();
    for c in 0..CLIENTS as u64 {
        let (addrs, acked, range) = (addrs.clone(), acked.clone(), range.clone());
        tasks.push(tokio::spawn(async move {
            let mut client = Client::new(addrs);
            for i in range.filter(|i| i % CLIENTS as u64 == c) {
                let (key, value) = (format!("key-{i:06}"), format!("value-{i}"));
                client.put(&key, &value).await.unwrap_or_else(|e| panic!("put {key}: {e}"));
                acked.lock().insert(key, value);
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
            if let Ok(Status { leader: Some(leader), .. }) = node::node_status(addr).await {
                if nodes.children.contains_key(&leader) {
                    return Some(leader);
                }
            }
        }
        None
    })
    .await
}

async fn scenario(nodes: &mut Nodes) {
    let started = Instant::now();
    let phase = |name: &str| eprintln!("[{:>6.2}s] {name}", started.elapsed().as_secs_f64());
    for id in 1..=3 {
        nodes.start(id);
    }
    for id in 1..=3 {
        let addr = nodes.addrs[&id].clone();
        wait_for("a node to listen", Duration::from_secs(30), async || node::node_status(&addr).await.ok()).await;
    }
    let members = (1..=3).map(|id| (id, nodes.addrs[&id].clone())).collect();
    let reply = node::call(&nodes.addrs[&1], &Message::Init(members)).await.expect("init");
    assert!(matches!(reply, Reply::Done), "init: {reply:?}");
    let first_leader = leader_of(nodes).await;
    phase(&format!("cluster of 3 up, leader {first_leader}"));

    let mut acked = write_keys(nodes.addr_list(), 0..10_000).await;
    phase("10,000 keys written");

    let leader = leader_of(nodes).await;
    nodes.kill(leader);
    phase(&format!("leader {leader} SIGKILLed"));
    acked.extend(write_keys(nodes.addr_list(), 10_000..12_000).await);
    let new_leader = leader_of(nodes).await;
    assert_ne!(new_leader, leader);
    phase(&format!("2,000 more keys written through the new leader {new_leader}"));

    nodes.start(leader);
    phase(&format!("node {leader} restarted"));

    nodes.addrs.insert(4, format!("127.0.0.1:{}", free_port()));
    nodes.start(4);
    let addr4 = nodes.addrs[&4].clone();
    wait_for("node 4 to listen", Duration::from_secs(30), async || node::node_status(&addr4).await.ok()).await;
    let mut admin = Client::new(nodes.addr_list());
    let reply = admin.call_leader(&Message::AddLearner(4, addr4.clone())).await.expect("add learner 4");
    assert!(matches!(reply, Reply::Done), "add learner: {reply:?}");
    let reply = admin.call_leader(&Message::ChangeMembership((1..=4).collect())).await.expect("change membership");
    assert!(matches!(reply, Reply::Done), "change membership: {reply:?}");
    phase("node 4 joined as a voter");
    acked.extend(write_keys(nodes.addr_list(), 12_000..12_500).await);
    phase("500 more keys written");

    let addrs = nodes.addr_list();
    let statuses = wait_for("all four nodes to converge", Duration::from_secs(60), async || {
        let mut statuses = Vec::new();
        for addr in &addrs {
            statuses.push(node::node_status(addr).await.ok()?);
        }
        let first = &statuses[0];
        let same = statuses.iter().all(|s| (s.last_applied, s.digest) == (first.last_applied, first.digest));
        same.then_some(statuses)
    })
    .await;
    phase("all four nodes converged");
    for status in &statuses {
        assert_eq!(status.keys, 12_500, "node {}: {status:?}", status.id);
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
            let reply = node::call(addr, &Message::Get(chunk.to_vec())).await.expect("get");
            let Reply::Get(values) = reply else { panic!("{addr}: {reply:?}") };
            for (key, value) in chunk.iter().zip(values) {
                assert_eq!(value.as_ref(), Some(&acked[key]), "{addr}: acknowledged write {key} is missing");
            }
        }
    }
    phase("every acknowledged write is on every node");
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
    runtime.block_on(scenario(&mut nodes));
}
