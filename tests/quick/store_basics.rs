//! The built-in key-value store: revisions, writers, timestamps, batches,
//! scans, and recovery through snapshots and the log.

use std::path::PathBuf;
use std::sync::Arc;
use walden::io::{CrashMode, SimFs};
use walden::{EngineOptions, FsyncMode, SnapshotOptions, Store, StoreOptions, WalOptions, WriteBatch};

fn dir() -> PathBuf {
    PathBuf::from("/store")
}

fn options(fsync: FsyncMode) -> StoreOptions {
    StoreOptions {
        engine: EngineOptions {
            wal: WalOptions { fsync, segment_bytes: 8192, ..Default::default() },
            snapshots: SnapshotOptions::manual(),
        },
        writer: "relay-1".into(),
    }
}

#[test]
fn puts_bump_revisions_and_record_writer_and_time() {
    let store = Store::open_with(SimFs::new(), dir(), options(FsyncMode::Always)).unwrap();
    store.put(b"/lights/kitchen", b"0.5").unwrap();
    store.put_as("dashboard", b"/lights/kitchen", b"0.8").unwrap();
    let entry = store.get(b"/lights/kitchen").unwrap();
    assert_eq!(&*entry.value, b"0.8");
    assert_eq!(entry.revision, 2);
    assert_eq!(&*entry.writer, "dashboard");
    assert!(entry.timestamp_us > 1_600_000_000_000_000, "a real wall-clock time");
    store.delete(b"/lights/kitchen").unwrap();
    assert_eq!(store.get(b"/lights/kitchen"), None);
    store.put(b"/lights/kitchen", b"1.0").unwrap();
    assert_eq!(store.get(b"/lights/kitchen").unwrap().revision, 1, "a delete forgets the revision");
}

#[test]
fn scans_by_prefix_and_range_in_key_order() {
    let store = Store::open_with(SimFs::new(), dir(), options(FsyncMode::Never)).unwrap();
    for key in ["/b/2", "/a/1", "/b/1", "/c", "/b/3", "/ba"] {
        store.put(key.as_bytes(), b"x").unwrap();
    }
    let keys = |v: Vec<(Arc<[u8]>, walden::Entry)>| -> Vec<String> {
        v.into_iter().map(|(k, _)| String::from_utf8(k.to_vec()).unwrap()).collect()
    };
    assert_eq!(keys(store.scan_prefix(b"/b/")), ["/b/1", "/b/2", "/b/3"]);
    assert_eq!(keys(store.scan_prefix(b"/b")), ["/b/1", "/b/2", "/b/3", "/ba"]);
    let from: Arc<[u8]> = Arc::from(&b"/b/2"[..]);
    let to: Arc<[u8]> = Arc::from(&b"/c"[..]);
    assert_eq!(keys(store.range(from..to)), ["/b/2", "/b/3", "/ba"]);
    assert_eq!(store.len(), 6);
}

#[test]
fn a_batch_is_all_or_nothing_across_a_crash() {
    let fs = SimFs::new();
    let store = Store::open_with(fs.clone(), dir(), options(FsyncMode::Always)).unwrap();
    store.put(b"a", b"0").unwrap();
    let mut batch = WriteBatch::default();
    batch.put(b"a", b"1").put(b"b", b"1").delete(b"zzz").put(b"c", b"1");
    store.write(&batch).unwrap();
    assert_eq!(store.get(b"a").unwrap().revision, 2);
    drop(store);
    let store = Store::open_with(fs.crash(CrashMode::DropUnsynced), dir(), options(FsyncMode::Always)).unwrap();
    for key in [b"a", b"b", b"c"] {
        assert_eq!(&*store.get(key).unwrap().value, b"1");
    }
}

#[test]
fn revisions_writers_and_times_survive_snapshot_and_replay() {
    let fs = SimFs::new();
    let store = Store::open_with(fs.clone(), dir(), options(FsyncMode::Always)).unwrap();
    for i in 0..500u32 {
        store.put(format!("key-{}", i % 40).as_bytes(), &i.to_le_bytes()).unwrap();
    }
    store.snapshot_now().unwrap();
    for i in 500..530u32 {
        store.put_as("late", format!("key-{}", i % 40).as_bytes(), &i.to_le_bytes()).unwrap();
    }
    let before: Vec<_> = store.scan_prefix(b"key-");
    store.close().unwrap();
    let store = Store::open_with(fs, dir(), options(FsyncMode::Always)).unwrap();
    assert_eq!(store.recovery_report().records_replayed, 30);
    assert!(store.recovery_report().snapshot_used.is_some());
    assert_eq!(store.scan_prefix(b"key-"), before, "values, revisions, writers and times all come back");
    assert_eq!(store.get(b"key-0").unwrap().revision, 14);
    assert_eq!(&*store.get(b"key-29").unwrap().writer, "late");
}

#[test]
fn a_crash_in_each_mode_keeps_what_the_mode_promised() {
    for fsync in [FsyncMode::Always, FsyncMode::Never] {
        let fs = SimFs::new();
        let store = Store::open_with(fs.clone(), dir(), options(fsync)).unwrap();
        for i in 0..200u32 {
            store.put(format!("k{i}").as_bytes(), b"v").unwrap();
        }
        let process_crash = Store::open_with(fs.crash(CrashMode::KeepUnsynced), dir(), options(fsync)).unwrap();
        assert_eq!(process_crash.len(), 200, "{fsync:?}: a process crash keeps every acknowledged put");
        let power_loss = Store::open_with(fs.crash(CrashMode::DropUnsynced), dir(), options(fsync)).unwrap();
        match fsync {
            FsyncMode::Always => assert_eq!(power_loss.len(), 200),
            _ => assert!(power_loss.len() < 200, "Never: unsynced puts may be gone after power loss"),
        }
        drop(store);
    }
}

#[test]
fn a_view_at_an_lsn_matches_the_state_at_that_lsn() {
    let store = Store::open_with(SimFs::new(), dir(), options(FsyncMode::Never)).unwrap();
    let mut lsns = Vec::new();
    for i in 0..300u32 {
        lsns.push(store.put(format!("k{}", i % 10).as_bytes(), &i.to_le_bytes()).unwrap());
        if i == 99 || i == 199 {
            store.snapshot_now().unwrap();
        }
    }
    for upto in [1usize, 50, 100, 101, 150, 200, 250, 300] {
        let view = store.view_at(lsns[upto - 1]).unwrap();
        for k in 0..10u32 {
            // The last i < upto with i % 10 == k.
            let last = (0..upto as u32).rev().find(|i| i % 10 == k);
            let got = view.get(format!("k{k}").as_bytes()).map(|e| e.value.to_vec());
            assert_eq!(got, last.map(|i| i.to_le_bytes().to_vec()), "view at {upto}, key k{k}");
        }
    }
    assert!(store.view_at(walden::Lsn(10_000)).is_err(), "a view past the end is refused");
    assert_eq!(store.get(b"k9").unwrap().revision, 30, "the live store is untouched by views");
}

#[test]
fn a_view_at_a_time_holds_every_write_made_by_then_and_none_after() {
    let store = Store::open_with(SimFs::new(), dir(), options(FsyncMode::Never)).unwrap();
    for i in 0..20u32 {
        store.put(format!("early{i}").as_bytes(), b"1").unwrap();
    }
    store.snapshot_now().unwrap();
    store.put(b"early-after-snapshot", b"1").unwrap();
    std::thread::sleep(std::time::Duration::from_millis(3));
    let cut = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_micros() as u64;
    std::thread::sleep(std::time::Duration::from_millis(3));
    for i in 0..20u32 {
        store.put(format!("late{i}").as_bytes(), b"1").unwrap();
    }
    let (view, _) = store.view_at_time(cut).unwrap();
    assert_eq!(view.len(), 21);
    assert!(view.iter().all(|(k, _)| k.starts_with(b"early")));
    let (before_all, lsn) = store.view_at_time(1).unwrap();
    assert!(before_all.is_empty());
    assert_eq!(lsn, walden::Lsn(0));
}

/// What readers hold stays exact while writers change everything under it:
/// entries got before, and a state taken at an LSN (an O(1) clone sharing
/// the store's leaves), against puts that grow, shrink and replace every
/// value (some past a leaf's byte limit on their own) and deletes of half
/// the keys, through folds and a snapshot.
#[test]
fn entries_and_views_held_by_readers_outlive_later_writes_and_deletes() {
    let store = Store::open_with(SimFs::new(), dir(), options(FsyncMode::Never)).unwrap();
    let key = |i: u32| format!("/k/{:05}", i * 7919 % 4000).into_bytes();
    let value = |i: u32, round: u32| vec![(i + round) as u8; [3, 100, 900, 9_000][((i + round) % 4) as usize]];
    for i in 0..4000 {
        store.put(&key(i), &value(i, 0)).unwrap();
    }
    let held: Vec<_> = (0..4000).map(|i| store.get(&key(i)).unwrap()).collect();
    let (view, at) = store.current_state().unwrap();
    let before: Vec<(Vec<u8>, walden::Entry)> = view.iter().map(|(k, e)| (k.to_vec(), e)).collect();
    assert_eq!(before.len(), 4000);
    for round in 1..4 {
        let mut batch = WriteBatch::default();
        for i in 0..4000 {
            if (i + round) % 2 == 0 {
                batch.delete(&key(i));
            } else {
                batch.put(&key(i), &value(i, round));
            }
            if batch.len() == 500 {
                store.write(&batch).unwrap();
                batch = WriteBatch::default();
            }
        }
        if round == 2 {
            store.snapshot_now().unwrap();
        }
    }
    for (i, entry) in held.iter().enumerate() {
        assert_eq!((&*entry.value, entry.revision), (&value(i as u32, 0)[..], 1), "entry {i}, held since before");
    }
    let after: Vec<(Vec<u8>, walden::Entry)> = view.iter().map(|(k, e)| (k.to_vec(), e)).collect();
    assert_eq!(after, before, "the state at LSN {at} is what it was");
    assert_eq!(store.len(), 2000, "the live store moved on");
    // Key 0: put in round 1 (revision 2), deleted in round 2, put again.
    let live = store.get(&key(0)).unwrap();
    assert_eq!((&*live.value, live.revision), (&value(0, 3)[..], 1));
    assert_eq!(store.get(&key(1)), None);
}
