//! Snapshot files know their store: a snapshot from another store, from
//! another history of the same store, or under a name that disagrees with
//! its header is refused at open (reported in `snapshots_skipped`, moved
//! aside, never deleted), and the store recovers its own exact state. A
//! format-1 snapshot (walden 0.1.0) still loads, and the report says it
//! could not be checked.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use walden::snapshot::{check_origin, OriginCheck, RecordSeal, SnapshotHeader, SnapshotOrigin};
use walden::store::Entry;
use walden::{EngineOptions, FsyncMode, Lsn, SnapshotOptions, Store, StoreOptions, WalOptions};

fn options(writer: &str) -> StoreOptions {
    StoreOptions {
        engine: EngineOptions {
            wal: WalOptions { fsync: FsyncMode::Never, segment_bytes: 8192, ..Default::default() },
            snapshots: SnapshotOptions::manual(),
        },
        writer: writer.into(),
    }
}

type State = Vec<(Arc<[u8]>, Entry)>;

/// Puts `key-{i}` = `{tag}-{i}` for i in `range`, with a snapshot after
/// each of `snapshot_after` (counts of puts so far in this call).
fn fill(store: &Store, tag: &str, range: std::ops::Range<u64>, snapshot_after: &[u64]) {
    for (n, i) in range.enumerate() {
        store.put(format!("key-{i}").as_bytes(), format!("{tag}-{i}").as_bytes()).unwrap();
        if snapshot_after.contains(&(n as u64 + 1)) {
            store.snapshot_now().unwrap();
        }
    }
}

fn snapshot_path(dir: &Path, lsn: u64) -> PathBuf {
    dir.join("snapshots").join(walden::snapshot::snapshot_file_name(Lsn(lsn)))
}

fn quarantined(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir.join("snapshots"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.contains(".quarantine-"))
        .collect();
    names.sort();
    names
}

/// A store with snapshots at LSN 100 and 250 and records up to 400; its state.
fn store_a(dir: &Path, tag: &str) -> State {
    let store = Store::open(dir, options(tag)).unwrap();
    fill(&store, tag, 0..400, &[100, 250]);
    let state = store.range(..);
    store.close().unwrap();
    state
}

/// Opens `dir`, asserts the snapshot at `refused` was skipped for `why` and
/// moved aside, and that the state is exactly `expected`.
fn assert_refused_and_exact(dir: &Path, refused: u64, why: &str, expected: &State, tag: &str) {
    let store = Store::open(dir, options(tag)).unwrap();
    let report = store.recovery_report().clone();
    let path = snapshot_path(dir, refused);
    let skipped: Vec<_> = report.snapshots_skipped.iter().filter(|(p, _)| *p == path).collect();
    assert_eq!(skipped.len(), 1, "{:?}", report.snapshots_skipped);
    assert!(skipped[0].1.contains(why), "{}", skipped[0].1);
    assert!(skipped[0].1.contains("moved to"), "{}", skipped[0].1);
    assert_eq!(report.snapshot_lsn, Lsn(100), "fell back to the snapshot before it");
    assert!(!path.exists(), "the refused file left its snapshot name");
    assert_eq!(quarantined(dir).len(), 1, "it was moved aside, not deleted");
    assert_eq!(&store.range(..), expected, "the store recovered its own exact state");
    assert_eq!(store.applied_lsn(), Lsn(400));
    // The store goes on: its next snapshot and reopen are its own.
    store.put(b"after", b"open").unwrap();
    store.snapshot_now().unwrap();
    store.close().unwrap();
    let again = Store::open(dir, options(tag)).unwrap();
    assert!(again.recovery_report().snapshots_skipped.is_empty());
    assert_eq!(again.len(), expected.len() + 1);
}

#[test]
fn a_snapshot_from_another_store_is_refused_and_the_store_recovers_its_own_state() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    let expected = store_a(&a, "a");
    store_a(&b, "b");
    // Same LSNs, same keys, other values: only the origin tells them apart.
    fs::copy(snapshot_path(&b, 250), snapshot_path(&a, 250)).unwrap();
    assert_refused_and_exact(&a, 250, "taken from another store's log", &expected, "a");
}

#[test]
fn a_snapshot_under_another_lsns_name_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("a");
    let expected = store_a(&a, "a");
    // An older snapshot's bytes under the newer one's name.
    fs::copy(snapshot_path(&a, 100), snapshot_path(&a, 250)).unwrap();
    assert_refused_and_exact(&a, 250, "its name says LSN 250 but its header says LSN 100", &expected, "a");
}

#[test]
fn a_snapshot_from_another_history_of_the_same_log_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, fork) = (tmp.path().join("a"), tmp.path().join("fork"));
    {
        let store = Store::open(&a, options("a")).unwrap();
        fill(&store, "a", 0..200, &[100]);
        store.close().unwrap();
    }
    copy_dir(&a, &fork);
    // Both go on from LSN 201 with other writes: one log id, two histories.
    let expected = {
        let store = Store::open(&a, options("a")).unwrap();
        fill(&store, "a", 200..400, &[50]);
        let state = store.range(..);
        store.close().unwrap();
        state
    };
    {
        let store = Store::open(&fork, options("fork")).unwrap();
        fill(&store, "fork", 200..400, &[50]);
        store.close().unwrap();
    }
    fs::copy(snapshot_path(&fork, 250), snapshot_path(&a, 250)).unwrap();
    assert_refused_and_exact(&a, 250, "another history of this log", &expected, "a");
}

#[test]
fn a_format_1_snapshot_still_loads_and_the_report_says_it_was_not_checked() {
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("a");
    let expected = store_a(&a, "a");
    // Rewrite the newest snapshot as walden 0.1.0 wrote it: a 64-byte
    // header without an origin, the same content.
    let path = snapshot_path(&a, 250);
    let bytes = fs::read(&path).unwrap();
    let header = SnapshotHeader::decode(&bytes).unwrap();
    let v1 = SnapshotHeader { origin: None, ..header };
    fs::write(&path, [&v1.encode()[..], &bytes[header.header_bytes()..]].concat()).unwrap();

    let store = Store::open(&a, options("a")).unwrap();
    let report = store.recovery_report();
    assert_eq!(report.snapshot_used.as_deref(), Some(path.as_path()));
    assert!(report.snapshots_skipped.is_empty(), "{:?}", report.snapshots_skipped);
    let unchecked = report.snapshot_unchecked.as_deref().unwrap_or_default();
    assert!(unchecked.contains("snapshot format 1 records no origin"), "{unchecked}");
    assert_eq!(store.range(..), expected);
}

#[test]
fn a_snapshot_records_its_log_and_the_record_at_its_lsn() {
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("a");
    let store = Store::open(&a, options("a")).unwrap();
    fill(&store, "a", 0..10, &[]);
    let info = store.snapshot_now().unwrap();
    let origin = info.header.origin.expect("format 2 records the origin");
    let seal = origin.seal.expect("the log holds the record at LSN 10");
    // The seal is the salt of the segment and the stored CRC of record 10.
    let segment = fs::read(a.join("wal").join(walden::wal::segment_file_name(Lsn(1)))).unwrap();
    let segment_header = walden::format::SegmentHeader::decode(&segment).unwrap();
    assert_eq!(origin.log_id, segment_header.log_id);
    assert_eq!(seal.segment_salt, segment_header.salt);
    let mut offset = walden::format::SEGMENT_HEADER_BYTES;
    for _ in 1..10 {
        offset += walden::format::decode_record(&segment[offset..], segment_header.seed()).unwrap().header.frame_len();
    }
    let record = walden::format::decode_record(&segment[offset..], segment_header.seed()).unwrap();
    assert_eq!(record.header.lsn, Lsn(10));
    assert_eq!(seal.record_crc, u32::from_le_bytes(segment[offset..offset + 4].try_into().unwrap()));
    store.close().unwrap();
}

#[test]
fn the_origin_rule_is_the_documented_table() {
    let seal = RecordSeal { segment_salt: 9, record_crc: 0xabcd };
    let header = |origin| SnapshotHeader {
        lsn: Lsn(5),
        created_unix_us: 0,
        entries: 0,
        content_bytes: 0,
        content_crc: 0,
        origin,
    };
    let ours = header(Some(SnapshotOrigin { log_id: 1, seal: Some(seal) }));
    assert_eq!(check_origin(&ours, 1, Some(seal)), OriginCheck::Continues);
    assert!(matches!(check_origin(&ours, 2, Some(seal)), OriginCheck::Refused(w) if w.contains("another store")));
    let other = RecordSeal { record_crc: 0xabce, ..seal };
    assert!(matches!(check_origin(&ours, 1, Some(other)), OriginCheck::Refused(w) if w.contains("another history")));
    let resalted = RecordSeal { segment_salt: 10, ..seal };
    assert!(matches!(check_origin(&ours, 1, Some(resalted)), OriginCheck::Refused(_)));
    assert!(matches!(check_origin(&ours, 1, None), OriginCheck::Unchecked(w) if w.contains("log id only")));
    let unsealed = header(Some(SnapshotOrigin { log_id: 1, seal: None }));
    assert_eq!(check_origin(&unsealed, 1, None), OriginCheck::Continues);
    assert!(matches!(check_origin(&unsealed, 3, None), OriginCheck::Refused(_)));
    assert!(matches!(check_origin(&header(None), 1, Some(seal)), OriginCheck::Unchecked(w) if w.contains("format 1")));
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_dir(&path, &target);
        } else {
            fs::copy(&path, &target).unwrap();
        }
    }
}
