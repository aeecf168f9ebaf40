//! Criterion benchmarks of `Wal::append`: each fsync mode x 1, 4, 16 and 64
//! writer threads x 128 B and 4 KiB records, plus pipelined appends from one
//! thread. Throughput is in appends per second. The logs live under
//! target/tmp (the repository's file system), never in memory.
//!
//! `cargo bench --bench append` (about 5 minutes); `walden bench` is the
//! side-by-side comparison with the raw disk and SQLite.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::collections::VecDeque;
use std::sync::Barrier;
use std::time::{Duration, Instant};
use walden::{FsyncMode, Wal, WalOptions};

const MODES: [(&str, FsyncMode); 3] = [
    ("always", FsyncMode::Always),
    ("periodic_10ms", FsyncMode::Periodic { interval: Duration::from_millis(10) }),
    ("never", FsyncMode::Never),
];
const WRITERS: [usize; 4] = [1, 4, 16, 64];
const RECORD_BYTES: [usize; 2] = [128, 4096];
/// Pipelined appends kept in flight.
const WINDOW: usize = 1024;

fn open(fsync: FsyncMode) -> (tempfile::TempDir, Wal) {
    let dir = tempfile::Builder::new()
        .prefix("walden-bench-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .expect("a temporary directory under target/tmp");
    let wal = Wal::open(dir.path().join("wal"), WalOptions { fsync, ..Default::default() }).expect("open the log");
    (dir, wal)
}

/// `iters` appends shared out between `writers` threads; the time runs from
/// the moment every thread is ready until the last one is done.
fn blocking(wal: &Wal, writers: usize, iters: u64, payload: &[u8]) -> Duration {
    let ready = Barrier::new(writers + 1);
    std::thread::scope(|scope| {
        let threads: Vec<_> = (0..writers as u64)
            .map(|t| {
                let share = iters / writers as u64 + u64::from(t < iters % writers as u64);
                let ready = &ready;
                scope.spawn(move || {
                    ready.wait();
                    for _ in 0..share {
                        wal.append(payload).expect("append");
                    }
                })
            })
            .collect();
        ready.wait();
        let start = Instant::now();
        threads.into_iter().for_each(|t| t.join().expect("a writer thread panicked"));
        start.elapsed()
    })
}

/// `iters` pipelined appends from this thread, `WINDOW` tickets in flight.
fn pipelined(wal: &Wal, iters: u64, payload: &[u8]) -> Duration {
    let start = Instant::now();
    let mut in_flight = VecDeque::with_capacity(WINDOW);
    for _ in 0..iters {
        if in_flight.len() == WINDOW {
            let oldest: walden::Ticket = in_flight.pop_front().expect("a full window");
            oldest.wait().expect("ticket");
        }
        in_flight.push_back(wal.append_pipelined(payload).expect("append"));
    }
    for ticket in in_flight {
        ticket.wait().expect("ticket");
    }
    start.elapsed()
}

fn configure(c: &mut Criterion, name: String) -> criterion::BenchmarkGroup<'_, criterion::measurement::WallTime> {
    let mut group = c.benchmark_group(name);
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_millis(2500))
        .throughput(Throughput::Elements(1));
    group
}

fn append(c: &mut Criterion) {
    for (mode, fsync) in MODES {
        let mut group = configure(c, format!("append/{mode}"));
        for record_bytes in RECORD_BYTES {
            let payload = vec![0x5a; record_bytes];
            for writers in WRITERS {
                let (_dir, wal) = open(fsync);
                let id = BenchmarkId::new(format!("{record_bytes}B"), format!("{writers}w"));
                group.bench_function(id, |b| b.iter_custom(|iters| blocking(&wal, writers, iters, &payload)));
                wal.close().expect("close");
            }
        }
        group.finish();
    }
    let mut group = configure(c, "append_pipelined".into());
    let payload = vec![0x5a; 128];
    for (mode, fsync) in MODES {
        let (_dir, wal) = open(fsync);
        group.bench_function(BenchmarkId::new("128B", mode), |b| {
            b.iter_custom(|iters| pipelined(&wal, iters, &payload))
        });
        wal.close().expect("close");
    }
    group.finish();
}

criterion_group!(benches, append);
criterion_main!(benches);
