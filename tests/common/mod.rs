//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use walden::io::SimFs;
use walden::{FsyncMode, Lsn, RecoveryMode, Wal, WalOptions};

/// The directory every simulated log lives in.
pub fn sim_dir() -> PathBuf {
    PathBuf::from("/log")
}

/// Small segments so tests roll over often; preallocation on, as in production.
pub fn small(fsync: FsyncMode) -> WalOptions {
    WalOptions { fsync, segment_bytes: 4096, ..Default::default() }
}

pub fn with_recovery(mut options: WalOptions, recovery: RecoveryMode) -> WalOptions {
    options.recovery = recovery;
    options
}

/// A payload that names its index, with a length that varies.
pub fn payload(i: u64) -> Vec<u8> {
    let len = 1 + (i * 37 % 90) as usize;
    let mut p = format!("record-{i}:").into_bytes();
    p.resize(len.max(p.len()), b'a' + (i % 26) as u8);
    p
}

/// Every record of the log, in order, asserting LSNs are consecutive.
pub fn read_all<V: walden::io::Vfs>(wal: &Wal<V>) -> Vec<(Lsn, Vec<u8>)> {
    let mut out = Vec::new();
    let mut expected = wal.first_lsn();
    for record in wal.read_from(Lsn(1)).expect("reader") {
        let record = record.expect("record");
        assert_eq!(record.lsn, expected, "LSNs must be consecutive");
        expected = expected.next();
        out.push((record.lsn, record.payload));
    }
    out
}

/// The segment files of a simulated log, in LSN order.
pub fn segment_paths(fs: &SimFs, dir: &Path) -> Vec<PathBuf> {
    use walden::io::Vfs;
    let mut names: Vec<_> =
        fs.list_dir(dir).unwrap().into_iter().filter(|n| walden::wal::parse_segment_file_name(n).is_some()).collect();
    names.sort();
    names.into_iter().map(|n| dir.join(n)).collect()
}

pub fn quarantine_files(fs: &SimFs, dir: &Path) -> Vec<PathBuf> {
    use walden::io::Vfs;
    let mut names: Vec<_> = fs.list_dir(dir).unwrap().into_iter().filter(|n| n.contains(".quarantine")).collect();
    names.sort();
    names.into_iter().map(|n| dir.join(n)).collect()
}

/// The (offset, frame length, LSN) of every valid record in a segment file.
pub fn frames(bytes: &[u8]) -> Vec<(usize, usize, Lsn)> {
    use walden::format::{decode_record, SegmentHeader, SEGMENT_HEADER_BYTES};
    let seed = SegmentHeader::decode(bytes).expect("segment header").seed();
    let mut out = Vec::new();
    let mut offset = SEGMENT_HEADER_BYTES;
    while let Ok(rec) = decode_record(&bytes[offset..], seed) {
        out.push((offset, rec.header.frame_len(), rec.header.lsn));
        offset += rec.header.frame_len();
    }
    out
}

/// The power losses tried at I/O call `at_call`: unsynced data dropped,
/// kept, and torn `WALDEN_CRASH_SEEDS` ways (default `default_seeds`).
pub fn crash_modes(at_call: u64, default_seeds: u64) -> Vec<walden::io::CrashMode> {
    use walden::io::CrashMode;
    let seeds = std::env::var("WALDEN_CRASH_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(default_seeds);
    let mut crashes = vec![CrashMode::DropUnsynced, CrashMode::KeepUnsynced];
    crashes.extend((0..seeds).map(|s| CrashMode::Tear { seed: at_call * 1000 + s }));
    crashes
}

/// Power loss at every I/O boundary of a scripted workload: for each call
/// N (and once past the last), the workload runs on a fresh `SimFs` whose
/// calls fail from N on, then the disk loses power in each crash mode and
/// `check` judges it twice (the second time on what the first recovery
/// left). `O` is the oracle the script fills with what it was promised.
/// Returns the crash points explored.
pub fn explore_every_io_boundary<O: Default>(
    script: impl Fn(&SimFs, &mut O),
    check: impl Fn(&SimFs, &O, &str),
) -> usize {
    use walden::io::{Fault, FaultKind};
    let probe = SimFs::new();
    script(&probe, &mut O::default());
    let total = probe.calls();
    let mut explored = 0;
    for at_call in 1..=total + 1 {
        let fs = SimFs::new();
        fs.inject(Fault { at_call, kind: FaultKind::Eio, persistent: true, only: None });
        let mut oracle = O::default();
        script(&fs, &mut oracle);
        fs.clear_fault();
        for crash in crash_modes(at_call, 1) {
            let context = format!("power lost at I/O call {at_call} of {total}, {crash:?}");
            let disk = fs.crash(crash);
            check(&disk, &oracle, &context);
            check(&disk, &oracle, &format!("{context}, second recovery"));
            explored += 1;
        }
    }
    explored
}
