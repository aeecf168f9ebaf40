//! Bit rot: every bit of a small log and of a small snapshot flipped in turn.
//!
//! For the log, each flip is opened in every recovery mode, and each mode
//! must do what docs/FORMAT.md's decision table promises: AbsoluteConsistency
//! refuses any damage and changes nothing; TolerateTornTail cuts only a
//! torn last record (every earlier record is proven durable by the
//! watermark of the one after it) and refuses anything else;
//! PointInTime keeps the longest valid prefix, refusing only a damaged first
//! segment header. In every mode what comes back is a prefix of the log with
//! its exact bytes, a cut is reported and its bytes are in a quarantine
//! file, and a flip that no mode notices lies in record padding, which no
//! checksum covers and no reader uses.
//!
//! For the store, each flip of the newest snapshot must be detected (the
//! snapshot is skipped and reported) and the store must fall back to the
//! previous snapshot plus the log and lose nothing.
//!
//! `WALDEN_BIT_ROT_STRIDE=n` flips every nth bit only (default 1: all).

use crate::common::*;
use std::collections::BTreeMap;
use std::path::PathBuf;
use walden::io::{SimFs, Vfs};
use walden::{
    EngineOptions, Error, FsyncMode, Lsn, Preallocate, RecoveryMode, SnapshotOptions, Store, StoreOptions, Wal,
    WalOptions, WriteBatch,
};

const MODES: [RecoveryMode; 3] =
    [RecoveryMode::TolerateTornTail, RecoveryMode::PointInTime, RecoveryMode::AbsoluteConsistency];

fn stride() -> usize {
    std::env::var("WALDEN_BIT_ROT_STRIDE").ok().and_then(|s| s.parse().ok()).unwrap_or(1).max(1)
}

fn log_options(recovery: RecoveryMode) -> WalOptions {
    WalOptions {
        fsync: FsyncMode::Always,
        segment_bytes: 4096,
        preallocate: Preallocate::Off,
        recovery,
        ..Default::default()
    }
}

/// Every file of the simulated directory, by name, with its bytes.
fn snapshot_of_dir(fs: &SimFs, dir: &std::path::Path) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    for name in fs.list_dir(dir).unwrap() {
        let bytes = fs.read_file(&dir.join(&name)).unwrap();
        files.insert(name, bytes);
    }
    files
}

/// A closed `Always` log of `n` records (a batch among them), small
/// enough to flip every bit.
fn small_log(n: u64) -> (SimFs, Vec<(Lsn, Vec<u8>)>) {
    let fs = SimFs::new();
    let wal = Wal::open_with(fs.clone(), sim_dir(), log_options(RecoveryMode::TolerateTornTail)).unwrap();
    for i in 0..n {
        if i == 2 {
            wal.append_batch(&[payload(100), payload(101)]).unwrap();
        }
        wal.append(&payload(i)).unwrap();
    }
    wal.close().unwrap();
    let wal = Wal::open_with(fs.clone(), sim_dir(), log_options(RecoveryMode::AbsoluteConsistency)).unwrap();
    let records = read_all(&wal);
    drop(wal);
    (fs, records)
}

/// Byte ranges of a segment that no checksum covers: the padding after
/// each record's payload.
fn padding(bytes: &[u8]) -> Vec<std::ops::Range<usize>> {
    use walden::format::{decode_record, SegmentHeader, RECORD_HEADER_BYTES};
    let seed = SegmentHeader::decode(bytes).unwrap().seed();
    frames(bytes)
        .into_iter()
        .map(|(offset, len, _)| {
            let payload_len = decode_record(&bytes[offset..], seed).unwrap().payload.len();
            offset + RECORD_HEADER_BYTES + payload_len..offset + len
        })
        .collect()
}

/// What one flip did in one mode.
fn open_flipped(
    damaged: &BTreeMap<String, Vec<u8>>,
    mode: RecoveryMode,
    original: &[(Lsn, Vec<u8>)],
    context: &str,
) -> bool {
    let fs = SimFs::new();
    for (name, bytes) in damaged {
        fs.write_file(&sim_dir().join(name), bytes);
    }
    match Wal::open_with(fs.clone(), sim_dir(), log_options(mode)) {
        Err(e) => {
            assert!(matches!(e, Error::Corrupt { .. } | Error::Unsupported { .. }), "{context}: refused with `{e}`");
            assert_eq!(&snapshot_of_dir(&fs, &sim_dir()), damaged, "{context}: a refused open changed the files");
            true
        }
        Ok(wal) => {
            let records = read_all(&wal);
            assert!(records.len() <= original.len(), "{context}: records appeared");
            assert!(records[..] == original[..records.len()], "{context}: not a prefix of the log, byte for byte");
            let report = wal.recovery_report();
            if records.len() < original.len() {
                assert!(!report.cuts.is_empty(), "{context}: records lost without a reported cut");
            }
            for cut in &report.cuts {
                let kept = fs.read_file(&cut.quarantine).expect("the cut bytes are in quarantine");
                assert_eq!(kept.len() as u64, cut.bytes, "{context}: the quarantine file holds the cut bytes");
            }
            match mode {
                RecoveryMode::AbsoluteConsistency => {
                    assert!(report.cuts.is_empty(), "{context}: AbsoluteConsistency cut {:?}", report.cuts)
                }
                RecoveryMode::TolerateTornTail => assert!(
                    records.len() + 1 >= original.len(),
                    "{context}: TolerateTornTail cut {} records, not a torn last one",
                    original.len() - records.len()
                ),
                _ => {}
            }
            !report.cuts.is_empty()
        }
    }
}

#[test]
fn every_bit_flip_of_a_small_log_is_detected_and_each_mode_keeps_its_promise() {
    let (fs, original) = small_log(7);
    let files = snapshot_of_dir(&fs, &sim_dir());
    assert_eq!(files.len(), 1, "one segment: {:?}", files.keys());
    let mut flips = 0;
    let mut unnoticed = 0;
    for (name, bytes) in &files {
        let pad = padding(bytes);
        for bit in (0..bytes.len() * 8).step_by(stride()) {
            let mut damaged = files.clone();
            damaged.get_mut(name).unwrap()[bit / 8] ^= 1 << (bit % 8);
            let mut noticed = false;
            for mode in MODES {
                let context = format!("{name} bit {bit} (byte {}), {mode:?}", bit / 8);
                noticed |= open_flipped(&damaged, mode, &original, &context);
            }
            // PointInTime refuses only a damaged first segment header.
            if bit / 8 >= walden::format::SEGMENT_HEADER_BYTES {
                let context = format!("{name} bit {bit}");
                let fs = SimFs::new();
                for (name, bytes) in &damaged {
                    fs.write_file(&sim_dir().join(name), bytes);
                }
                Wal::open_with(fs, sim_dir(), log_options(RecoveryMode::PointInTime))
                    .unwrap_or_else(|e| panic!("{context}: PointInTime refused a flip past the header: {e}"));
            }
            if !noticed {
                unnoticed += 1;
                assert!(
                    pad.iter().any(|r| r.contains(&(bit / 8))),
                    "{name} bit {bit}: a flip outside record padding went unnoticed"
                );
            }
            flips += 1;
        }
    }
    assert!(flips > 3000, "only {flips} flips");
    eprintln!("log: {flips} bit flips x 3 modes; {unnoticed} in uncovered padding, every other one detected");
}

/// A log of two segments: a flip anywhere in the sealed one is corruption
/// in TolerateTornTail, a cut with the later segment moved aside in
/// PointInTime. One bit of every byte is flipped (the segment is 4 KiB).
#[test]
fn bit_flips_in_a_sealed_segment_are_never_taken_for_a_torn_tail() {
    let fs = SimFs::new();
    let wal = Wal::open_with(fs.clone(), sim_dir(), log_options(RecoveryMode::TolerateTornTail)).unwrap();
    let mut i = 0;
    while wal.stats().segments < 2 {
        wal.append(&payload(i)).unwrap();
        i += 1;
    }
    wal.append(&payload(i)).unwrap();
    wal.close().unwrap();
    let original =
        read_all(&Wal::open_with(fs.clone(), sim_dir(), log_options(RecoveryMode::TolerateTornTail)).unwrap());
    let files = snapshot_of_dir(&fs, &sim_dir());
    let sealed = files.keys().next().unwrap().clone();
    let pad = padding(&files[&sealed]);
    let mut flips = 0;
    for byte in (0..files[&sealed].len()).step_by(stride()) {
        let bit = byte * 8 + byte % 8;
        if pad.iter().any(|r| r.contains(&byte)) {
            continue;
        }
        let mut damaged = files.clone();
        damaged.get_mut(&sealed).unwrap()[byte] ^= 1 << (bit % 8);
        for mode in MODES {
            let context = format!("sealed {sealed} bit {bit}, {mode:?}");
            let noticed = open_flipped(&damaged, mode, &original, &context);
            assert!(noticed, "{context}: a flip in a sealed segment went unnoticed");
        }
        let fs = SimFs::new();
        for (name, bytes) in &damaged {
            fs.write_file(&sim_dir().join(name), bytes);
        }
        let err = Wal::open_with(fs, sim_dir(), log_options(RecoveryMode::TolerateTornTail))
            .err()
            .unwrap_or_else(|| panic!("sealed bit {bit}: TolerateTornTail opened a damaged sealed segment"));
        assert!(err.to_string().contains(&sealed), "sealed bit {bit}: the error names the file: {err}");
        flips += 1;
    }
    assert!(flips > 300, "only {flips} flips");
    eprintln!("sealed segment: {flips} bit flips x 3 modes, every one detected");
}

// ------------------------------------------------------------- snapshots

fn store_dir() -> PathBuf {
    PathBuf::from("/store")
}

fn store_options() -> StoreOptions {
    StoreOptions {
        engine: EngineOptions {
            wal: WalOptions {
                fsync: FsyncMode::Always,
                segment_bytes: 4096,
                preallocate: Preallocate::Off,
                ..Default::default()
            },
            snapshots: SnapshotOptions { keep_count: 2, ..SnapshotOptions::manual() },
        },
        writer: "bit-rot".into(),
    }
}

type State = Vec<(Vec<u8>, Vec<u8>, u64)>;

fn state(store: &Store<SimFs>) -> State {
    store.scan_prefix(b"").into_iter().map(|(k, e)| (k.to_vec(), e.value.to_vec(), e.revision)).collect()
}

/// A closed store with two snapshots and log records after the newest.
fn small_store() -> (SimFs, State, Lsn) {
    let fs = SimFs::new();
    let store = Store::open_with(fs.clone(), store_dir(), store_options()).unwrap();
    for round in 0..3u64 {
        for i in 0..6u64 {
            store.put(format!("k{i}").as_bytes(), format!("v{round}-{i}").as_bytes()).unwrap();
        }
        let mut batch = WriteBatch::default();
        batch.put(b"batch-a", &[round as u8; 3]).delete(b"k0");
        store.write(&batch).unwrap();
        if round < 2 {
            store.snapshot_now().unwrap();
        }
    }
    let expected = state(&store);
    let lsn = store.applied_lsn();
    store.close().unwrap();
    (fs, expected, lsn)
}

#[test]
fn every_bit_flip_of_the_newest_snapshot_is_skipped_and_nothing_is_lost() {
    let (fs, expected, lsn) = small_store();
    let snapshots = Store::open_with(fs.clone(), store_dir(), store_options()).unwrap().list_snapshots().unwrap();
    assert_eq!(snapshots.len(), 2);
    let newest = snapshots[1].path.clone();
    let bytes = fs.read_file(&newest).unwrap();
    let mut flips = 0;
    for bit in (0..bytes.len() * 8).step_by(stride()) {
        let disk = fs.crash(walden::io::CrashMode::KeepUnsynced);
        let mut damaged = bytes.clone();
        damaged[bit / 8] ^= 1 << (bit % 8);
        disk.write_file(&newest, &damaged);
        let context = format!("{} bit {bit}", newest.display());
        let store = Store::open_with(disk.clone(), store_dir(), store_options())
            .unwrap_or_else(|e| panic!("{context}: the store did not fall back: {e}"));
        let report = store.recovery_report();
        assert!(
            report.snapshots_skipped.iter().any(|(p, _)| p == &newest),
            "{context}: the damaged snapshot was not detected ({:?})",
            report.snapshot_used
        );
        assert_eq!(report.snapshot_used.as_ref(), Some(&snapshots[0].path), "{context}: fell back to the older one");
        assert_eq!(store.applied_lsn(), lsn, "{context}");
        assert_eq!(state(&store), expected, "{context}: the fallback lost something");
        assert_eq!(disk.read_file(&newest).unwrap(), damaged, "{context}: the damaged snapshot was changed");
        flips += 1;
    }
    assert!(flips > 1000, "only {flips} flips");
    eprintln!("snapshot: {flips} bit flips, every one detected, nothing lost");
}

#[test]
fn bit_rot_in_the_only_usable_snapshot_is_a_clear_error_never_a_silent_loss() {
    // Both snapshots damaged, the log already truncated past the start: no
    // state can be rebuilt, and the store must say so rather than open empty.
    let (fs, _, _) = small_store();
    let store = Store::open_with(fs.clone(), store_dir(), store_options()).unwrap();
    let snapshots = store.list_snapshots().unwrap();
    drop(store);
    let wal = Wal::open_with(fs.clone(), store_dir().join("wal"), log_options(RecoveryMode::TolerateTornTail)).unwrap();
    let first = wal.first_lsn();
    drop(wal);
    for info in &snapshots {
        let mut bytes = fs.read_file(&info.path).unwrap();
        let at = bytes.len() - 3;
        bytes[at] ^= 0x40;
        fs.write_file(&info.path, &bytes);
    }
    let result = Store::open_with(fs.clone(), store_dir(), store_options());
    if first > Lsn::FIRST {
        let err = result.err().expect("no state can be rebuilt");
        assert!(err.to_string().contains("no usable snapshot"), "{err}");
    } else {
        let store = result.expect("the whole log is still there");
        assert!(store.recovery_report().snapshots_skipped.len() == 2);
    }
}

#[test]
fn a_snapshot_past_the_end_of_a_rotted_log_is_never_taken_for_the_new_history() {
    // The last record rots; TolerateTornTail cuts it as a torn tail, so the
    // snapshot that covers it is past the end of the log. New writes reuse
    // its LSN: the old snapshot must never be loaded as if it covered them.
    let fs = SimFs::new();
    let store = Store::open_with(fs.clone(), store_dir(), store_options()).unwrap();
    for i in 0..5u64 {
        store.put(format!("k{i}").as_bytes(), b"old").unwrap();
    }
    store.snapshot_now().unwrap();
    let covered = store.applied_lsn();
    store.close().unwrap();
    let segment = segment_paths(&fs, &store_dir().join("wal")).pop().unwrap();
    let mut bytes = fs.read_file(&segment).unwrap();
    let (offset, _, lsn) = *frames(&bytes).last().unwrap();
    assert_eq!(lsn, covered);
    bytes[offset + 40] ^= 0x01;
    fs.write_file(&segment, &bytes);

    let store = Store::open_with(fs.clone(), store_dir(), store_options()).unwrap();
    assert_eq!(store.applied_lsn(), Lsn(covered.0 - 1), "the rotted record is cut");
    assert!(!store.recovery_report().snapshots_skipped.is_empty(), "the snapshot past the end is reported");
    store.put(b"k4", b"new").unwrap();
    store.put(b"k9", b"new").unwrap();
    store.close().unwrap();
    let store = Store::open_with(fs.clone(), store_dir(), store_options()).unwrap();
    assert_eq!(store.get(b"k4").map(|e| e.value.to_vec()), Some(b"new".to_vec()));
    assert_eq!(store.get(b"k9").map(|e| e.value.to_vec()), Some(b"new".to_vec()), "the new history is whole");
    assert_eq!(store.applied_lsn(), Lsn(covered.0 + 1));
}
