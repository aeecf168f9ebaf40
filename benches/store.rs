//! Criterion benchmarks of the store's snapshots and recovery: 100,000
//! keys of 16 bytes with 100-byte values by default, `WALDEN_BENCH_KEYS`
//! for another count (a multiple of 1,000).
//!
//! `cargo bench --bench store`; `WALDEN_BENCH_KEYS=1000000 cargo bench --bench store`

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::time::Duration;
use walden::{EngineOptions, FsyncMode, SnapshotOptions, Store, StoreOptions, WalOptions, WriteBatch};

fn keys() -> u64 {
    std::env::var("WALDEN_BENCH_KEYS").ok().and_then(|s| s.parse().ok()).unwrap_or(100_000)
}

fn options() -> StoreOptions {
    StoreOptions {
        engine: EngineOptions {
            wal: WalOptions { fsync: FsyncMode::Never, ..Default::default() },
            snapshots: SnapshotOptions { every_commits: None, every_bytes: None, every: None, ..Default::default() },
        },
        ..Default::default()
    }
}

/// A store of `KEYS` keys loaded in batches, with pseudo-random values.
fn loaded(dir: &std::path::Path) -> Store {
    let store = Store::open(dir, options()).expect("open");
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for chunk in 0..keys() / 1000 {
        let mut batch = WriteBatch::default();
        for i in 0..1000 {
            let key = format!("{:016}", chunk * 1000 + i);
            let value: Vec<u8> = (0..100)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            batch.put(key.as_bytes(), &value);
        }
        store.write(&batch).expect("batch");
    }
    store
}

fn snapshots(c: &mut Criterion) {
    let tmp = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("temp dir");
    let store = loaded(tmp.path());
    let keys = keys();
    let mut group = c.benchmark_group(format!("store_{keys}_keys"));
    group.sample_size(10).measurement_time(Duration::from_secs(5)).throughput(Throughput::Elements(keys));
    group.bench_function("snapshot_write", |b| b.iter(|| store.snapshot_now().expect("snapshot")));
    store.close().expect("close");
    // Recovery from the newest snapshot (the log after it is empty).
    group.bench_function("recover_from_snapshot", |b| {
        b.iter(|| {
            let store = Store::open(tmp.path(), options()).expect("reopen");
            assert_eq!(store.len() as u64, keys);
            store
        })
    });
    group.finish();
}

criterion_group!(benches, snapshots);
criterion_main!(benches);
