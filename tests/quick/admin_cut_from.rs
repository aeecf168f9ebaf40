//! `walden repair --cut-from` ([`walden::admin::apply_cut`]) under power
//! loss: a store's intact log holds a record the store refuses (another
//! program appended it with a raw `Wal`, then valid puts), and the cut that
//! moves it and every later record aside loses power at every I/O call.
//! Whatever the disk keeps, finishing the job (the same cut again, or
//! `repair --salvage` if the interrupted cut left damage after the last
//! record kept) leaves a store that opens one LSN before the cut, and every
//! byte that left the log is in a quarantine file: nothing is deleted.

use crate::common::crash_modes;
use std::collections::BTreeMap;
use std::path::PathBuf;
use walden::admin::{self, DataDir, NoProgress};
use walden::io::{CrashMode, Fault, FaultKind, SimFs, Vfs};
use walden::{
    EngineOptions, Error, FsyncMode, Lsn, RecoveryMode, SnapshotOptions, Store, StoreOptions, Wal, WalOptions,
};

const REFUSED_LSN: u64 = 121;

fn dir() -> PathBuf {
    PathBuf::from("/data")
}

fn options() -> StoreOptions {
    StoreOptions {
        engine: EngineOptions {
            wal: WalOptions { fsync: FsyncMode::Always, segment_bytes: 4096, ..Default::default() },
            snapshots: SnapshotOptions::manual(),
        },
        ..Default::default()
    }
}

/// LSNs 1..=120 are puts of `key-{n}` (a snapshot at 40), 121 is no store
/// operation, 122..=124 are puts of `after-{i}`; every byte durable.
fn refused_record_store() -> SimFs {
    let fs = SimFs::new();
    let store = Store::open_with(fs.clone(), dir(), options()).unwrap();
    for n in 1..=120u64 {
        store.put(format!("key-{n}").as_bytes(), b"value").unwrap();
        if n == 40 {
            store.snapshot_now().unwrap();
        }
    }
    store.close().unwrap();
    let scratch = Store::open_with(fs.clone(), "/scratch", options()).unwrap();
    for i in 1..=3 {
        scratch.put(format!("after-{i}").as_bytes(), b"x").unwrap();
    }
    scratch.close().unwrap();
    let scratch_log = Wal::open_with(fs.clone(), "/scratch/wal", options().engine.wal).unwrap();
    let puts: Vec<Vec<u8>> = scratch_log.read_from(Lsn::FIRST).unwrap().map(|r| r.unwrap().payload).collect();
    scratch_log.close().unwrap();
    let log = Wal::open_with(fs.clone(), dir().join("wal"), options().engine.wal).unwrap();
    assert_eq!(log.append(b"set x=1").unwrap(), Lsn(REFUSED_LSN));
    for put in &puts {
        log.append(put).unwrap();
    }
    log.close().unwrap();
    fs.crash(CrashMode::DropUnsynced)
}

/// Every segment file of the log, by path, with its bytes.
fn segments(fs: &SimFs) -> BTreeMap<PathBuf, Vec<u8>> {
    let wal = dir().join("wal");
    let names = fs.list_dir(&wal).unwrap();
    let segments = names.into_iter().filter(|n| walden::wal::parse_segment_file_name(n).is_some());
    segments.map(|n| (wal.join(&n), fs.read_file(&wal.join(n)).unwrap())).collect()
}

fn quarantined(fs: &SimFs) -> Vec<Vec<u8>> {
    crate::common::quarantine_files(fs, &dir().join("wal")).iter().map(|p| fs.read_file(p).unwrap()).collect()
}

/// The bytes a cut from `from` must move aside: the rest of the segment
/// that holds it (up to its last non-zero byte), and later segments whole.
fn bytes_to_move(original: &BTreeMap<PathBuf, Vec<u8>>, from: Lsn) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for bytes in original.values() {
        let frames = crate::common::frames(bytes);
        if let Some(&(offset, _, _)) = frames.iter().find(|f| f.2 == from) {
            let end = bytes.iter().rposition(|&b| b != 0).unwrap() + 1;
            out.push(bytes[offset..end].to_vec());
        } else if frames.first().is_some_and(|f| f.2 > from) {
            out.push(bytes.clone());
        }
    }
    out
}

/// Finishes an interrupted cut the way an operator would, then checks the
/// store and that every byte the cut moves is in a quarantine file.
fn finish_and_check(disk: &SimFs, from: Lsn, moved: &[Vec<u8>], context: &str) {
    let data = DataDir::locate(disk, dir()).unwrap();
    let exam = admin::examine(disk, &data, &mut NoProgress).unwrap();
    let plan = admin::plan_cut(disk, &exam, from, &mut NoProgress).unwrap();
    match &plan.cut_refused {
        None => drop(admin::apply_cut(disk, &data, from, &mut NoProgress).unwrap()),
        Some(why) => {
            assert!(
                why.contains(&format!("past the log's last readable record (LSN {})", from.0 - 1)),
                "{context}: {why}"
            );
            admin::apply_repair(disk, &data, true).unwrap();
        }
    }
    let store = Store::open_with(disk.clone(), dir(), options()).unwrap_or_else(|e| panic!("{context}: {e}"));
    assert_eq!(store.applied_lsn(), Lsn(from.0 - 1), "{context}");
    assert_eq!(store.len() as u64, from.0 - 1, "{context}");
    assert!(store.get(format!("key-{}", from.0 - 1).as_bytes()).is_some(), "{context}");
    assert!(store.get(b"after-1").is_none(), "{context}");
    store.close().unwrap();
    let kept = quarantined(disk);
    for bytes in moved {
        assert!(kept.contains(bytes), "{context}: {} bytes that left the log are in no quarantine file", bytes.len());
    }
}

#[test]
fn a_cut_from_an_lsn_that_loses_power_at_any_io_call_loses_no_byte() {
    let base = refused_record_store();
    let original = segments(&base);
    match Store::open_with(base.crash(CrashMode::DropUnsynced), dir(), options()) {
        Err(Error::Apply { lsn, .. }) => assert_eq!(lsn, Lsn(REFUSED_LSN)),
        other => panic!("the store refuses LSN {REFUSED_LSN}: {:?}", other.map(|_| ())),
    }
    // The refused record itself (in the last segment), and a cut in an
    // earlier segment, which moves the later segments aside whole.
    for from in [Lsn(REFUSED_LSN), Lsn(60)] {
        let moved = bytes_to_move(&original, from);
        assert!(!moved.is_empty());
        let probe = base.crash(CrashMode::DropUnsynced);
        let data = DataDir::locate(&probe, dir()).unwrap();
        admin::apply_cut(&probe, &data, from, &mut NoProgress).unwrap();
        let total = probe.calls();
        for at_call in 1..=total + 1 {
            let fs = base.crash(CrashMode::DropUnsynced);
            fs.inject(Fault { at_call, kind: FaultKind::Eio, persistent: true, only: None });
            let outcome = admin::apply_cut(&fs, &data, from, &mut NoProgress);
            fs.clear_fault();
            assert_eq!(outcome.is_ok(), at_call > total, "cut from {from}, failing from call {at_call} of {total}");
            for crash in crash_modes(at_call, 2) {
                let context = format!("cut from {from}: power lost at I/O call {at_call} of {total}, {crash:?}");
                let disk = fs.crash(crash);
                finish_and_check(&disk, from, &moved, &context);
                finish_and_check(&disk, from, &moved, &format!("{context}, finished twice"));
            }
        }
    }
}

/// The LSN `walden recover`'s dry run proposes is one the cut accepts and
/// counts alike; LSN 0, an LSN the snapshot covers and one past the end
/// are refused, by the plan and by the cut; planning and refusing write
/// nothing.
#[test]
fn the_dry_run_proposes_a_cut_the_plan_accepts() {
    let fs = refused_record_store();
    let data = DataDir::locate(&fs, dir()).unwrap();
    let log_files = |fs: &SimFs| -> Vec<(PathBuf, Vec<u8>)> {
        let wal = dir().join("wal");
        let mut names = fs.list_dir(&wal).unwrap();
        names.sort();
        names.into_iter().map(|n| (wal.join(&n), fs.read_file(&wal.join(n)).unwrap())).collect()
    };
    let before = log_files(&fs);
    let dry = admin::dry_run_recovery_by_content(&fs, &data, RecoveryMode::TolerateTornTail, &mut NoProgress).unwrap();
    let refused = dry.refused_record.expect("the dry run names the refused record");
    assert_eq!((refused.lsn, refused.cut_from), (Lsn(REFUSED_LSN), Lsn(REFUSED_LSN)));
    let exam = admin::examine(&fs, &data, &mut NoProgress).unwrap();
    let plan = admin::plan_cut(&fs, &exam, refused.cut_from, &mut NoProgress).unwrap();
    assert_eq!(plan.cut_refused, None);
    assert_eq!(plan.records_cut, refused.records_from_cut);
    let covered = admin::plan_cut(&fs, &exam, Lsn(40), &mut NoProgress).unwrap();
    let why = covered.cut_refused.expect("the snapshot at LSN 40 covers LSN 40");
    assert!(why.contains("covers LSN 40") && why.contains("must start after LSN 40"), "{why}");
    assert!(covered.plan.cuts.is_empty());
    let zero = admin::plan_cut(&fs, &exam, Lsn::ZERO, &mut NoProgress).unwrap();
    assert!(zero.cut_refused.expect("LSN 0 is refused").contains("LSN 0 names no record"));
    let past = admin::plan_cut(&fs, &exam, Lsn(REFUSED_LSN + 4), &mut NoProgress).unwrap();
    let why = past.cut_refused.expect("an LSN past the end is refused");
    assert!(why.contains(&format!("past the log's last readable record (LSN {})", REFUSED_LSN + 3)), "{why}");
    for (from, words) in [(0, "LSN 0 names no record"), (40, "covers LSN 40"), (REFUSED_LSN + 4, "past the log's last")]
    {
        match admin::apply_cut(&fs, &data, Lsn(from), &mut NoProgress) {
            Err(Error::InvalidArgument(why)) => assert!(why.contains(words), "cut from {from}: {why}"),
            other => panic!("cut from {from} must be refused: {:?}", other.map(|_| ())),
        }
    }
    assert_eq!(log_files(&fs), before, "the dry run, the plans and the refused cuts write nothing");
}
