//! How long the walden state machine takes to write a snapshot.
//!
//! ```text
//! cargo run --release -p walden-raft --example snapshot_build [-- PAIRS]
//! ```
//!
//! Applies PAIRS puts (default 500,000; 16-byte keys, 100-byte values) in
//! entries of 1,000, then builds a snapshot five times and prints the
//! median and every build's time. The files go to a temporary directory
//! under target/, removed at the end.

#[path = "common/mod.rs"]
mod common;

use common::kv::{log_id, Entry, KvConfig, KvState, Request};
use std::time::Instant;
use walden_raft::StateMachine;

fn main() {
    let pairs: u64 = std::env::args().nth(1).map_or(500_000, |a| a.parse().expect("PAIRS: a number"));
    let dir = std::path::PathBuf::from(format!("target/walden-raft-snapshot-build-{}", std::process::id()));
    let (sm, _) = StateMachine::<KvConfig, KvState>::open(&dir).expect("open the state machine");
    let value = "v".repeat(100);
    const PER_ENTRY: u64 = 1_000;
    for entry in 0..pairs.div_ceil(PER_ENTRY) {
        let puts = (entry * PER_ENTRY..((entry + 1) * PER_ENTRY).min(pairs))
            .map(|i| (format!("key-{i:012}"), value.clone()))
            .collect();
        let payload = openraft::EntryPayload::Normal(Request::Batch(puts));
        sm.apply_entries([Entry { log_id: log_id(1, 1, entry + 1), payload }]);
    }
    let mut secs: Vec<f64> = (0..5)
        .map(|_| {
            let started = Instant::now();
            sm.build().expect("build a snapshot");
            started.elapsed().as_secs_f64()
        })
        .collect();
    let runs = secs.iter().map(|s| format!("{s:.3}")).collect::<Vec<_>>().join(", ");
    secs.sort_by(|a, b| a.total_cmp(b));
    println!("snapshot of {pairs} pairs: median {:.3} s over 5 builds ({runs})", secs[2]);
    drop(sm);
    let _ = std::fs::remove_dir_all(&dir);
}
