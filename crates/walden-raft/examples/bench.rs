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
//! The walden nodes keep their files under DIR (default
//! target/walden-raft-bench), removed at the end. Last, the same run
//! measures the disk under them: one fdatasync loop alone, then three at
//! once on three files (one per node, as a commit round has them), since a
//! walden commit round waits for three fdatasyncs in sequence (the leader's
//! append, a follower's, the leader's `save_committed`) on one shared disk.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use walden_raft::network::{Message, Reply};
use walden_raft::node::{self, Client, Node, NodeConfig, StorageKind};

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
async fn cluster(storage: StorageKind, dir: &std::path::Path) -> (Vec<Node>, Vec<String>) {
    let addrs: Vec<String> = (0..3).map(|_| format!("127.0.0.1:{}", free_port())).collect();
    let mut nodes = Vec::new();
    for (i, addr) in addrs.iter().enumerate() {
        let id = i as u64 + 1;
        let mut config = NodeConfig::new(id, addr.clone(), dir.join(format!("node-{id}")));
        config.storage = storage;
        nodes.push(node::start(config).await.expect("start a node"));
    }
    let members = addrs.iter().enumerate().map(|(i, a)| (i as u64 + 1, a.clone())).collect();
    let reply = node::call(&addrs[0], &Message::Init(members)).await.expect("init");
    assert!(matches!(reply, Reply::Done), "init: {reply:?}");
    let mut client = Client::new(addrs.clone());
    client.put("warm-up", "x").await.expect("the cluster takes a write");
    (nodes, addrs)
}

struct Run {
    writes_per_s: f64,
    p50_us: u64,
    p99_us: u64,
}

/// `clients` concurrent writers for `secs` seconds.
async fn run(addrs: &[String], clients: usize, secs: f64, tag: &str) -> Run {
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let value = Arc::new("v".repeat(100));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (addrs, value, tag) = (addrs.to_vec(), value.clone(), tag.to_owned());
        tasks.push(tokio::spawn(async move {
            let mut client = Client::new(addrs);
            let mut latencies_us = Vec::new();
            let mut i = 0u64;
            while Instant::now() < deadline {
                let key = format!("{tag}-{c}-{i}");
                let t = Instant::now();
                client.put(&key, &value).await.expect("put");
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
    Run { writes_per_s: all.len() as f64 / elapsed, p50_us: pct(0.50), p99_us: pct(0.99) }
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

fn main() {
    let args = args();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let _ = std::fs::remove_dir_all(&args.dir);
    runtime.block_on(async {
        let (memory_nodes, memory) = cluster(StorageKind::Memory, &args.dir.join("memory")).await;
        let (walden_nodes, walden) = cluster(StorageKind::Walden, &args.dir.join("walden")).await;
        println!(
            "3-node cluster, loopback TCP, {} s per run, median of {} rounds (walden in {})",
            args.secs,
            args.rounds,
            args.dir.display()
        );
        println!(
            "{:>7} | {:>12} {:>9} {:>9} | {:>12} {:>9} {:>9} | {:>13}",
            "clients", "memory w/s", "p50 us", "p99 us", "walden w/s", "p50 us", "p99 us", "walden/memory"
        );
        for clients in [1usize, 16, 64] {
            let mut m = (Vec::new(), Vec::new(), Vec::new());
            let mut w = (Vec::new(), Vec::new(), Vec::new());
            for round in 0..args.rounds {
                for (addrs, out, tag) in [(&memory, &mut m, "m"), (&walden, &mut w, "w")] {
                    let r = run(addrs, clients, args.secs, &format!("{tag}{clients}-{round}")).await;
                    out.0.push(r.writes_per_s);
                    out.1.push(r.p50_us as f64);
                    out.2.push(r.p99_us as f64);
                }
            }
            let (mw, mp50, mp99) = (median(m.0), median(m.1), median(m.2));
            let (ww, wp50, wp99) = (median(w.0), median(w.1), median(w.2));
            println!(
                "{clients:>7} | {mw:>12.0} {mp50:>9.0} {mp99:>9.0} | {ww:>12.0} {wp50:>9.0} {wp99:>9.0} | {:>13.2}",
                ww / mw
            );
        }
        let probe = args.dir.join("probe");
        let (one_p50, one_p99) = disk_probe(&probe, 1, 1.0);
        let (three_p50, three_p99) = disk_probe(&probe, 3, 1.0);
        println!(
            "this disk, pwrite + fdatasync of 256 B: one file alone p50 {one_p50} us, p99 {one_p99} us; \
             three files at once (one per node) p50 {three_p50} us, p99 {three_p99} us"
        );
        for node in memory_nodes.into_iter().chain(walden_nodes) {
            node.shutdown().await;
        }
    });
    let _ = std::fs::remove_dir_all(&args.dir);
}
