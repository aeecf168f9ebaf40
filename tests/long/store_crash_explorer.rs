//! Power loss at every I/O boundary of a store workload with snapshots.
//!
//! The script puts, deletes and batches in `Always` mode, takes snapshots
//! (so retention prunes snapshots and truncates log segments), and closes
//! and reopens. A persistent EIO from the Nth I/O call on freezes the disk
//! at that boundary; it is then powered off (unsynced data dropped, kept or
//! torn) and the store recovered. The oracle (the store model shared with
//! the kill test and the fuzz targets, `walden::fuzz_targets::model`):
//! recovery succeeds, the state is exactly the model's state after the
//! recovered LSN, revisions included (never in the middle of a batch), and
//! that LSN covers every acknowledged write.
//! `WALDEN_CRASH_SEEDS=n` tears each point n ways (default 1).

use crate::common;

use std::path::PathBuf;
use walden::fuzz_targets::model::StoreModel;
use walden::io::SimFs;
use walden::{EngineOptions, FsyncMode, Lsn, SnapshotOptions, Store, StoreOptions, WalOptions, WriteBatch};

fn dir() -> PathBuf {
    PathBuf::from("/store")
}

fn options() -> StoreOptions {
    StoreOptions {
        engine: EngineOptions {
            wal: WalOptions {
                fsync: FsyncMode::Always,
                segment_bytes: 4096,
                flush_interval: std::time::Duration::from_secs(3600),
                ..Default::default()
            },
            snapshots: SnapshotOptions { keep_count: 2, ..SnapshotOptions::manual() },
        },
        writer: "explorer".into(),
    }
}

#[derive(Default)]
struct Oracle {
    /// Every record submitted, in LSN order.
    model: StoreModel,
    /// Every write acknowledged up to this LSN.
    acknowledged: Lsn,
}

fn key(i: u64) -> Vec<u8> {
    format!("key-{:02}", i % 23).into_bytes()
}

fn value(i: u64) -> Vec<u8> {
    format!("value-{i}-{}", "x".repeat((i % 40) as usize)).into_bytes()
}

fn script(fs: &SimFs, oracle: &mut Oracle) {
    let Ok(mut store) = Store::open_with(fs.clone(), dir(), options()) else { return };
    for step in 0u64..70 {
        let before = oracle.model.written();
        let ok = match step % 7 {
            0..=2 => {
                oracle.model.put(&key(step), &value(step));
                store.put(&key(step), &value(step)).is_ok()
            }
            3 => {
                oracle.model.delete(&key(step * 3));
                store.delete(&key(step * 3)).is_ok()
            }
            4 => {
                let mut batch = WriteBatch::default();
                for i in 0..3 {
                    let k = key(step * 7 + i);
                    batch.put(&k, &value(step + i));
                    oracle.model.record(&k, Some(&value(step + i)), i < 2);
                }
                store.write(&batch).is_ok()
            }
            5 => store.snapshot_now().is_ok(),
            _ => {
                if step % 21 == 20 {
                    if store.close().is_err() {
                        return;
                    }
                    match Store::open_with(fs.clone(), dir(), options()) {
                        Ok(s) => store = s,
                        Err(_) => return,
                    }
                }
                true
            }
        };
        if !ok {
            return;
        }
        if oracle.model.written() > before {
            oracle.acknowledged = oracle.model.written();
        }
    }
}

fn check(disk: &SimFs, oracle: &Oracle, context: &str) {
    let store =
        Store::open_with(disk.clone(), dir(), options()).unwrap_or_else(|e| panic!("{context}: recovery failed: {e}"));
    // Every acknowledged write is there, the LSN was written and ends no
    // batch early, and the state is exactly the model's at that LSN.
    if let Err(e) = oracle.model.check(&store, oracle.acknowledged) {
        panic!("{context}: {e}");
    }
}

#[test]
fn power_loss_at_every_io_boundary_of_a_store_with_snapshots() {
    let explored = common::explore_every_io_boundary(script, check);
    assert!(explored > 300, "only {explored} crash points");
    eprintln!("store: {explored} crash points explored");
}
