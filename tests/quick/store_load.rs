//! The store's map after a snapshot load and after replay is the same as
//! the live one, entry for entry: the two-thread snapshot load (many
//! batches), keys that share their 8-byte inline prefix or are shorter than
//! it, and revisions carried across snapshot and replay, against a model.

use proptest::prelude::*;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use walden::fuzz_targets::model::StoreModel;
use walden::io::SimFs;
use walden::{EngineOptions, Entry, FsyncMode, SnapshotOptions, Store, StoreOptions, WalOptions, WriteBatch};

fn dir() -> PathBuf {
    PathBuf::from("/store")
}

fn options(writer: &str) -> StoreOptions {
    StoreOptions {
        engine: EngineOptions {
            wal: WalOptions { fsync: FsyncMode::Never, segment_bytes: 1 << 20, ..Default::default() },
            snapshots: SnapshotOptions::manual(),
        },
        writer: writer.into(),
    }
}

fn everything(store: &Store<SimFs>) -> Vec<(Arc<[u8]>, Entry)> {
    store.scan_prefix(b"")
}

/// Key `i` of a set that spans many snapshot batches: most share their
/// first 8 bytes with thousands of others, some are shorter than 8 bytes.
fn key(i: u32) -> Vec<u8> {
    match i % 5 {
        0 => format!("/shared/{i:08}").into_bytes(), // 8 shared bytes, then the difference
        1 => format!("{}", i % 1000).into_bytes(),   // short, and repeated: overwrites
        2 => i.to_be_bytes().to_vec(),
        3 => [&b"/shared/"[..], &i.to_le_bytes()].concat(),
        _ => vec![0u8; (i % 11) as usize], // zeros of several lengths: "", "\0", ...
    }
}

#[test]
fn a_snapshot_of_many_batches_loads_back_entry_for_entry() {
    let fs = SimFs::new();
    let store = Store::open_with(fs.clone(), dir(), options("loader")).unwrap();
    let mut model: BTreeMap<Vec<u8>, (Vec<u8>, u64)> = BTreeMap::new();
    for chunk in 0..30u32 {
        let mut batch = WriteBatch::default();
        for i in chunk * 1000..(chunk + 1) * 1000 {
            let (k, v) = (key(i), i.to_le_bytes().to_vec());
            if i % 97 == 0 {
                batch.delete(&k);
                model.remove(&k);
            } else {
                batch.put(&k, &v);
                let revision = model.get(&k).map_or(1, |(_, r)| r + 1);
                model.insert(k, (v, revision));
            }
        }
        store.write(&batch).unwrap();
    }
    store.put_as("other", b"/shared/00000005", b"x").unwrap();
    let e = model.get_mut(&b"/shared/00000005"[..]).unwrap();
    *e = (b"x".to_vec(), e.1 + 1);
    assert!(model.len() > 4 * 4096, "spans several load batches: {}", model.len());

    let live = everything(&store);
    let as_model: BTreeMap<Vec<u8>, (Vec<u8>, u64)> =
        live.iter().map(|(k, e)| (k.to_vec(), (e.value.to_vec(), e.revision))).collect();
    assert_eq!(as_model, model, "the live map matches the model");
    assert!(live.windows(2).all(|w| w[0].0 < w[1].0), "scans come in byte order");

    let info = store.snapshot_now().unwrap();
    assert_eq!(info.header.entries, model.len() as u64);
    store.close().unwrap();
    let store = Store::open_with(fs, dir(), options("loader")).unwrap();
    assert_eq!(store.recovery_report().records_replayed, 0, "all from the snapshot");
    assert_eq!(everything(&store), live, "values, revisions, writers and times all come back, in order");
    assert_eq!(store.len(), model.len());
    for (k, (v, revision)) in &model {
        let entry = store.get(k).unwrap_or_else(|| panic!("{k:?} is missing"));
        assert_eq!((&*entry.value, entry.revision), (&v[..], *revision), "{k:?}");
    }
    assert_eq!(&*store.get(b"/shared/00000005").unwrap().writer, "other");
    assert_eq!(&*store.get(b"/shared/00000010").unwrap().writer, "loader");
    assert_eq!(store.get(&key(97)), None, "a deleted key stays deleted");
}

#[test]
fn a_replay_longer_than_one_batch_keeps_each_keys_writes_in_order() {
    // More records than one replay batch (131,072), over few keys, so every
    // key is written many times in each batch and across the boundary.
    let fs = SimFs::new();
    let store = Store::open_with(fs.clone(), dir(), options("w")).unwrap();
    let (records, keys) = (140_000u32, 3_001u32);
    for chunk in 0..records / 1000 {
        let mut batch = WriteBatch::default();
        for i in chunk * 1000..(chunk + 1) * 1000 {
            let k = (i.wrapping_mul(2_654_435_761) % keys).to_be_bytes();
            if i % 1009 == 0 {
                batch.delete(&k);
            } else {
                batch.put(&k, &i.to_le_bytes());
            }
        }
        store.write(&batch).unwrap();
    }
    let live = everything(&store);
    store.close().unwrap();
    let store = Store::open_with(fs, dir(), options("w")).unwrap();
    assert_eq!(store.recovery_report().records_replayed, u64::from(records));
    assert_eq!(everything(&store), live, "values, revisions, writers and times, in order");
    assert!(live.iter().any(|(_, e)| e.revision > 40), "keys were written many times");
}

#[test]
fn an_empty_snapshot_loads_an_empty_store() {
    let fs = SimFs::new();
    let store = Store::open_with(fs.clone(), dir(), options("w")).unwrap();
    store.put(b"k", b"v").unwrap();
    store.delete(b"k").unwrap();
    assert_eq!(store.snapshot_now().unwrap().header.entries, 0);
    store.close().unwrap();
    let store = Store::open_with(fs, dir(), options("w")).unwrap();
    assert!(store.recovery_report().snapshot_used.is_some());
    assert!(store.is_empty());
}

/// The store checks its snapshot's checksum while it loads it (one pass
/// over the file): a snapshot damaged where its content still decodes, or
/// where it does not, is skipped all the same, the state built from it is
/// dropped, and the previous snapshot plus the log give every key back.
#[test]
fn a_snapshot_damaged_anywhere_is_skipped_and_the_state_built_from_it_dropped() {
    let value = |i: u32, round: u32| -> Vec<u8> {
        // Bytes zstd cannot shrink: stored as they are, so a flipped byte
        // still decodes.
        let mut x = (i as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ round as u64;
        (0..40)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    };
    let original = {
        let fs = SimFs::new();
        let store = Store::open_with(fs.clone(), dir(), options("w")).unwrap();
        for i in 0..3_000 {
            store.put(&key(i), &value(i, 0)).unwrap();
        }
        store.snapshot_now().unwrap();
        for i in 0..3_000 {
            store.put(&key(i), &value(i, 1)).unwrap();
        }
        let newest = store.snapshot_now().unwrap();
        store.put(b"after", b"both").unwrap();
        let expected = everything(&store);
        store.close().unwrap();
        (fs, newest, expected)
    };
    let (fs, newest, expected) = original;
    let bytes = fs.read_file(&newest.path).unwrap();
    let content = newest.header.header_bytes();
    for at in [content + 40, content + (bytes.len() - content) / 2, bytes.len() - 1] {
        let mut flipped = bytes.clone();
        flipped[at] ^= 0x10;
        fs.write_file(&newest.path, &flipped);
        let store = Store::open_with(fs.clone(), dir(), options("w")).unwrap();
        let report = store.recovery_report();
        assert_eq!(report.snapshots_skipped.len(), 1, "byte {at}");
        assert!(report.snapshots_skipped[0].1.contains("checksum"), "byte {at}: {}", report.snapshots_skipped[0].1);
        assert!(report.snapshot_lsn < newest.header.lsn, "byte {at}: the previous snapshot");
        assert_eq!(everything(&store), expected, "byte {at}: every key as it was");
        drop(store);
        fs.write_file(&newest.path, &bytes);
    }
    let store = Store::open_with(fs, dir(), options("w")).unwrap();
    assert_eq!(store.recovery_report().snapshot_lsn, newest.header.lsn, "the newest, whole again, loads");
    assert_eq!(everything(&store), expected);
}

#[derive(Clone, Debug)]
enum Step {
    Put(Vec<u8>, u8),
    Delete(Vec<u8>),
    Snapshot,
    Reopen,
}

fn step() -> impl Strategy<Value = Step> {
    // Few distinct bytes and lengths around 8, so that keys collide on
    // their inline prefix and are often prefixes of each other.
    let key = proptest::collection::vec(prop_oneof![Just(0u8), Just(b'a'), Just(0xff)], 0..12);
    prop_oneof![
        6 => (key.clone(), any::<u8>()).prop_map(|(k, v)| Step::Put(k, v)),
        2 => key.prop_map(Step::Delete),
        1 => Just(Step::Snapshot),
        1 => Just(Step::Reopen),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn revisions_and_order_match_a_model_across_snapshots_and_replay(
        steps in proptest::collection::vec(step(), 1..120)
    ) {
        let fs = SimFs::new();
        let mut store = Store::open_with(fs.clone(), dir(), options("w")).unwrap();
        let mut model = StoreModel::new();
        for step in steps {
            match step {
                Step::Put(k, v) => {
                    store.put(&k, &[v]).unwrap();
                    model.put(&k, &[v]);
                }
                Step::Delete(k) => {
                    store.delete(&k).unwrap();
                    model.delete(&k);
                }
                Step::Snapshot => {
                    store.snapshot_now().unwrap();
                }
                Step::Reopen => {
                    store.close().unwrap();
                    store = Store::open_with(fs.clone(), dir(), options("w")).unwrap();
                }
            }
            // Nothing is lost without a crash: the store is at the last
            // write, its scan in key order with the model's values and
            // revisions (the store model shared with the crash tests).
            model.check(&store, model.written()).map_err(TestCaseError::fail)?;
        }
        for (k, want) in &model.state_at(model.written()) {
            let entry = store.get(k).unwrap();
            prop_assert_eq!((&entry.value[..], entry.revision), (&want.value[..], want.revision));
        }
    }
}
