//! Power loss at every I/O boundary of a store workload with snapshots.
//!
//! The script puts, deletes and batches in `Always` mode, takes snapshots
//! (so retention prunes snapshots and truncates log segments), and closes
//! and reopens. A persistent EIO from the Nth I/O call on freezes the disk
//! at that boundary; it is then powered off (unsynced data dropped, kept or
//! torn) and the store recovered. The oracle: recovery succeeds, the state
//! is exactly the model's state after the recovered LSN (never in the middle
//! of a batch), and that LSN covers every acknowledged write.
//! `WALDEN_CRASH_SEEDS=n` tears each point n ways (default 1).

use crate::common;

use std::collections::BTreeMap;
use std::path::PathBuf;
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

type Model = BTreeMap<Vec<u8>, Vec<u8>>;

/// One log record of the script: (key, Some(value)) or (key, None), and
/// whether a batch continues after it.
struct Step {
    key: Vec<u8>,
    value: Option<Vec<u8>>,
    batch_continues: bool,
}

#[derive(Default)]
struct Oracle {
    /// Every record submitted, in LSN order (LSN i+1 at index i).
    records: Vec<Step>,
    /// Every write acknowledged up to this LSN.
    acknowledged: Lsn,
}

impl Oracle {
    fn model_after(&self, lsn: Lsn) -> Model {
        let mut model = Model::new();
        for step in &self.records[..lsn.0 as usize] {
            match &step.value {
                Some(v) => model.insert(step.key.clone(), v.clone()),
                None => model.remove(&step.key),
            };
        }
        model
    }
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
        let before = oracle.records.len();
        let ok = match step % 7 {
            0..=2 => {
                oracle.records.push(Step { key: key(step), value: Some(value(step)), batch_continues: false });
                store.put(&key(step), &value(step)).is_ok()
            }
            3 => {
                oracle.records.push(Step { key: key(step * 3), value: None, batch_continues: false });
                store.delete(&key(step * 3)).is_ok()
            }
            4 => {
                let mut batch = WriteBatch::default();
                for i in 0..3 {
                    let k = key(step * 7 + i);
                    batch.put(&k, &value(step + i));
                    oracle.records.push(Step { key: k, value: Some(value(step + i)), batch_continues: i < 2 });
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
        if oracle.records.len() > before {
            oracle.acknowledged = Lsn(oracle.records.len() as u64);
        }
    }
}

fn check(disk: &SimFs, oracle: &Oracle, context: &str) {
    let store =
        Store::open_with(disk.clone(), dir(), options()).unwrap_or_else(|e| panic!("{context}: recovery failed: {e}"));
    let lsn = store.applied_lsn();
    assert!(lsn >= oracle.acknowledged, "{context}: acknowledged LSN {} lost (recovered {lsn})", oracle.acknowledged);
    assert!(lsn.0 as usize <= oracle.records.len(), "{context}: LSN {lsn} was never written");
    if lsn.0 > 0 {
        assert!(!oracle.records[lsn.0 as usize - 1].batch_continues, "{context}: recovered into the middle of a batch");
    }
    let recovered: Model = store.scan_prefix(b"").into_iter().map(|(k, e)| (k.to_vec(), e.value.to_vec())).collect();
    assert_eq!(recovered, oracle.model_after(lsn), "{context}: the state is not the state at LSN {lsn}");
}

#[test]
fn power_loss_at_every_io_boundary_of_a_store_with_snapshots() {
    let explored = common::explore_every_io_boundary(script, check);
    assert!(explored > 300, "only {explored} crash points");
    eprintln!("store: {explored} crash points explored");
}
