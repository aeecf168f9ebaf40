//! Throughput and latency of a 3-node cluster on walden against the same
//! cluster on an in-memory log and state machine (no disk at all: the upper
//! bound), side by side in one run.
//!
//! ```text
//! cargo run --release -p walden-raft --example bench [-- --secs S] [--rounds R] [--dir DIR]
//! ```
//!
//! Both clusters run in this process, each node on loopback TCP with the
//! node's own transport, on one tokio runtime. For each client count (1, 16,
//! 64) and each round, the in-memory cluster and then the walden one take
//! writes for S seconds (default 3) from that many concurrent clients, each
//! a loop of `put` (a new key, a 100-byte value) waiting for its answer.
//! Reported: writes/s, p50 and p99 latency, medians over rounds (default 3).
//! Then, at 64 clients, linearizable reads (each client asks one node, in
//! turn over the three; a follower forwards to the leader, which confirms
//! its read index with a quorum): reads/s and p99. All of it twice: for the
//! key-value map (`put` of a new key, a 100-byte value; `get` of a key
//! written) and for the tests' bank of counters (a deposit into one of
//! 1,000 accounts; a balance).
//! The walden nodes keep their files under DIR (default
//! target/walden-raft-bench), removed at the end. Last, the same run
//! measures the disk under them: one fdatasync loop alone, then three at
//! once on three files (one per node, as a commit round has them), since a
//! walden commit round waits for three fdatasyncs in sequence (the leader's
//! append, a follower's, the leader's `save_committed`) on one shared disk.

#[path = "../tests/common/bank.rs"]
mod bank;
#[path = "common/mod.rs"]
mod common;

use bank::{Bank, BankConfig, BankOp, BankRequest, BankResponse};
use common::kv::Kv;
use common::network::{Message, Reply};
use common::node::{self, Client, Node, NodeConfig, Service, StorageKind};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The bank of the tests, served by the node: a write is one deposit, a
/// read one account's balance.
struct BankService;

impl Service for BankService {
    type D = BankRequest;
    type C = BankConfig;
    type State = Bank;
    type Write = BankOp;
    type WriteReply = Result<u64, String>;
    type Read = u32;
    type ReadReply = u64;

    fn batch(writes: Vec<BankOp>) -> BankRequest {
        BankRequest(writes)
    }

    fn split(response: BankResponse) -> Vec<Result<u64, String>> {
        response.0
    }

    fn read(state: &Bank, account: &u32) -> u64 {
        state.balance(*account)
    }

    fn digest(state: &Bank) -> (u64, u64) {
        (state.balances.len() as u64, state.total())
    }
}

struct Args {
    secs: f64,
    rounds: usize,
    dir: PathBuf,
}

fn args() -> Args {
    let mut a = Args { secs: 3.0, rounds: 3, dir: PathBuf::from("target/walden-raft-bench") };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--secs" => a.secs = value.parse().expect("--secs S"),
            "--rounds" => a.rounds = value.parse().expect("--rounds R"),
            "--dir" => a.dir = PathBuf::from(value),
            other => panic!("unknown flag {other}"),
        }
    }
    a
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Starts a 3-node cluster and waits for its leader.
async fn cluster<A: Service>(
    storage: StorageKind,
    dir: &std::path::Path,
    warm_up: A::Write,
) -> (Vec<Node<A>>, Vec<String>) {
    let addrs: Vec<String> = (0..3).map(|_| format!("127.0.0.1:{}", free_port())).collect();
    let mut nodes = Vec::new();
    for (i, addr) in addrs.iter().enumerate() {
        let id = i as u64 + 1;
        let mut config = NodeConfig::new(id, addr.clone(), dir.join(format!("node-{id}")));
        config.storage = storage;
        nodes.push(node::start::<A>(config).await.expect("start a node"));
    }
    let members = addrs.iter().enumerate().map(|(i, a)| (i as u64 + 1, a.clone())).collect();
    let reply = node::call::<A>(&addrs[0], &Message::Init(members)).await.expect("init");
    assert!(matches!(reply, Reply::Done), "init: {reply:?}");
    let mut client = Client::<A>::new(addrs.clone());
    client.write(warm_up).await.expect("the cluster takes a write");
    (nodes, addrs)
}

struct Run {
    ops_per_s: f64,
    p50_us: u64,
    p99_us: u64,
}

/// The write or read client `c` makes at its `i`-th call.
type MakeOp<A> = Arc<dyn Fn(usize, u64) -> (Option<<A as Service>::Write>, Option<<A as Service>::Read>) + Send + Sync>;

/// What one client does at its `i`-th call: a write or a read.
#[derive(Clone, Copy)]
enum Op {
    Write,
    Read,
}

/// `clients` concurrent clients for `secs` seconds, each a loop of the
/// write or read `make` gives for (client, i), waiting for each answer.
/// Readers start at node `c % 3`; writers at the first node, following the
/// leader hint.
async fn run<A: Service>(addrs: &[String], clients: usize, secs: f64, op: Op, make: MakeOp<A>) -> Run {
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let mut addrs = addrs.to_vec();
        if matches!(op, Op::Read) {
            let n = addrs.len();
            addrs.rotate_left(c % n);
        }
        let make = make.clone();
        tasks.push(tokio::spawn(async move {
            let mut client = Client::<A>::new(addrs);
            let mut latencies_us = Vec::new();
            let mut i = 0u64;
            while Instant::now() < deadline {
                let (write, read) = make(c, i);
                let t = Instant::now();
                match op {
                    Op::Write => drop(client.write(write.expect("a write")).await.expect("write")),
                    Op::Read => drop(client.read(read.expect("a read"), false).await.expect("read")),
                }
                latencies_us.push(t.elapsed().as_micros() as u64);
                i += 1;
            }
            latencies_us
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.expect("a client panicked"));
    }
    let elapsed = started.elapsed().as_secs_f64();
    all.sort_unstable();
    let pct = |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)];
    Run { ops_per_s: all.len() as f64 / elapsed, p50_us: pct(0.50), p99_us: pct(0.99) }
}

/// The disk under the walden cluster, measured in the same run: the p50
/// and p99 of a 256-byte pwrite + fdatasync into a zero-filled file, with
/// `files` threads each syncing its own file at once for `secs` seconds
/// (three: one per node, as the cluster's commit rounds do).
fn disk_probe(dir: &std::path::Path, files: usize, secs: f64) -> (u64, u64) {
    use std::os::unix::fs::FileExt;
    const FILE_BYTES: u64 = 16 << 20;
    std::fs::create_dir_all(dir).expect("create the probe directory");
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let threads: Vec<_> = (0..files)
        .map(|i| {
            let path = dir.join(format!("probe-{i}"));
            std::thread::spawn(move || {
                let file = std::fs::OpenOptions::new().create(true).truncate(true).read(true).write(true).open(&path);
                let file = file.expect("create a probe file");
                file.write_all_at(&vec![0u8; FILE_BYTES as usize], 0).expect("zero-fill a probe file");
                file.sync_all().expect("sync a probe file");
                let (record, mut at, mut latencies) = ([7u8; 256], 0u64, Vec::new());
                while Instant::now() < deadline {
                    let t = Instant::now();
                    file.write_all_at(&record, at).expect("probe write");
                    file.sync_data().expect("probe fdatasync");
                    latencies.push(t.elapsed().as_micros() as u64);
                    at = (at + 256) % FILE_BYTES;
                }
                let _ = std::fs::remove_file(&path);
                latencies
            })
        })
        .collect();
    let mut all: Vec<u64> = threads.into_iter().flat_map(|t| t.join().expect("a probe thread panicked")).collect();
    all.sort_unstable();
    let pct = |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)];
    (pct(0.50), pct(0.99))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// The medians over rounds of (ops/s, p50, p99), memory and walden
/// interleaved round by round.
async fn compare<A: Service>(
    memory: &[String],
    walden: &[String],
    clients: usize,
    args: &Args,
    op: Op,
    make: MakeOp<A>,
) -> [(f64, f64, f64); 2] {
    let mut out = [(Vec::new(), Vec::new(), Vec::new()), (Vec::new(), Vec::new(), Vec::new())];
    for _ in 0..args.rounds {
        for (addrs, o) in [(memory, 0), (walden, 1)] {
            let r = run::<A>(addrs, clients, args.secs, op, make.clone()).await;
            out[o].0.push(r.ops_per_s);
            out[o].1.push(r.p50_us as f64);
            out[o].2.push(r.p99_us as f64);
        }
    }
    out.map(|(a, b, c)| (median(a), median(b), median(c)))
}

fn header(what: &str) {
    println!(
        "{:>7} | {:>12} {:>9} {:>9} | {:>12} {:>9} {:>9} | {:>13}",
        "clients",
        format!("memory {what}"),
        "p50 us",
        "p99 us",
        format!("walden {what}"),
        "p50 us",
        "p99 us",
        "walden/memory"
    );
}

fn line(clients: usize, [(mw, mp50, mp99), (ww, wp50, wp99)]: [(f64, f64, f64); 2]) {
    println!(
        "{clients:>7} | {mw:>12.0} {mp50:>9.0} {mp99:>9.0} | {ww:>12.0} {wp50:>9.0} {wp99:>9.0} | {:>13.2}",
        ww / mw
    );
}

/// Writes at 1, 16 and 64 clients, then linearizable reads at 64, for the
/// application `A` on both clusters.
async fn bench_app<A: Service>(
    name: &str,
    args: &Args,
    warm_up: impl Fn() -> A::Write,
    writes: MakeOp<A>,
    reads: MakeOp<A>,
) {
    let dir = args.dir.join(name);
    let (memory_nodes, memory) = cluster::<A>(StorageKind::Memory, &dir.join("memory"), warm_up()).await;
    let (walden_nodes, walden) = cluster::<A>(StorageKind::Walden, &dir.join("walden"), warm_up()).await;
    println!("{name}: writes");
    header("w/s");
    for clients in [1usize, 16, 64] {
        line(clients, compare::<A>(&memory, &walden, clients, args, Op::Write, writes.clone()).await);
    }
    println!("{name}: linearizable reads (each client asks one node in turn; followers forward to the leader)");
    header("r/s");
    line(64, compare::<A>(&memory, &walden, 64, args, Op::Read, reads.clone()).await);
    for node in memory_nodes.into_iter().chain(walden_nodes) {
        node.shutdown().await;
    }
}

fn main() {
    let args = args();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let _ = std::fs::remove_dir_all(&args.dir);
    runtime.block_on(async {
        println!(
            "3-node clusters, loopback TCP, {} s per run, median of {} rounds (walden in {})",
            args.secs,
            args.rounds,
            args.dir.display()
        );
        let value = Arc::new("v".repeat(100));
        let kv_writes = {
            let value = value.clone();
            Arc::new(move |c: usize, i: u64| (Some((format!("k-{c}-{i}"), (*value).clone())), None))
        };
        // The reads ask for keys the write phase wrote (client c's first ones).
        let kv_reads = Arc::new(|c: usize, i: u64| (None, Some(vec![format!("k-{c}-{}", i % 16)])));
        bench_app::<Kv>("kv", &args, || ("warm-up".to_owned(), "x".to_owned()), kv_writes, kv_reads).await;
        let bank_writes = Arc::new(|c: usize, i: u64| {
            (Some(BankOp::Deposit { account: ((c as u64 * 7919 + i) % 1000) as u32, amount: 1 }), None)
        });
        let bank_reads = Arc::new(|c: usize, i: u64| (None, Some(((c as u64 * 31 + i) % 1000) as u32)));
        bench_app::<BankService>("bank", &args, || BankOp::Deposit { account: 0, amount: 1 }, bank_writes, bank_reads)
            .await;
        let probe = args.dir.join("probe");
        let (one_p50, one_p99) = disk_probe(&probe, 1, 1.0);
        let (three_p50, three_p99) = disk_probe(&probe, 3, 1.0);
        println!(
            "this disk, pwrite + fdatasync of 256 B: one file alone p50 {one_p50} us, p99 {one_p99} us; \
             three files at once (one per node) p50 {three_p50} us, p99 {three_p99} us"
        );
    });
    let _ = std::fs::remove_dir_all(&args.dir);
}
