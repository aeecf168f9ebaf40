//! The engine: crash and reopen in each fsync mode, recovery from snapshot
//! plus log tail, falling back from a corrupt snapshot, leftover temporary
//! files, retention that never strands a snapshot, idempotent replay, and
//! the automatic trigger.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use walden::io::{CrashMode, SimFs, Vfs};
use walden::{Engine, EngineOptions, FsyncMode, Lsn, Result, SnapshotOptions, StateMachine, WalOptions};

/// A tiny state machine: `key=value` records into a map.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Map(BTreeMap<String, String>);

impl StateMachine for Map {
    type Frozen = Map;

    fn empty() -> Self {
        Map::default()
    }

    fn check(payload: &[u8]) -> Result<()> {
        parse(payload).map(drop)
    }

    fn apply(&mut self, _lsn: Lsn, payload: &[u8]) -> Result<()> {
        let (k, v) = parse(payload)?;
        self.0.insert(k.to_owned(), v.to_owned());
        Ok(())
    }

    fn freeze(&self) -> Map {
        self.clone()
    }

    fn write_snapshot(frozen: &Map, out: &mut dyn Write) -> std::io::Result<u64> {
        for (k, v) in &frozen.0 {
            writeln!(out, "{k}={v}")?;
        }
        Ok(frozen.0.len() as u64)
    }

    fn read_snapshot(input: &mut dyn Read) -> std::io::Result<Map> {
        let mut map = Map::default();
        for line in BufReader::new(input).lines() {
            let line = line?;
            let (k, v) = line.split_once('=').ok_or(std::io::ErrorKind::InvalidData)?;
            map.0.insert(k.to_owned(), v.to_owned());
        }
        Ok(map)
    }
}

/// A `key=value` record, or why it is not one.
fn parse(payload: &[u8]) -> Result<(&str, &str)> {
    let text = std::str::from_utf8(payload).map_err(|e| walden::Error::InvalidArgument(e.to_string()))?;
    text.split_once('=').ok_or_else(|| walden::Error::InvalidArgument(text.into()))
}

fn dir() -> PathBuf {
    PathBuf::from("/engine")
}

fn options(fsync: FsyncMode) -> EngineOptions {
    EngineOptions {
        wal: WalOptions { fsync, segment_bytes: 4096, ..Default::default() },
        snapshots: SnapshotOptions::manual(),
    }
}

fn set(engine: &Engine<Map, SimFs>, i: u64) -> Lsn {
    engine.commit(format!("k{}=v{i}", i % 50).as_bytes()).unwrap()
}

/// The map after commits 0..n.
fn expected(n: u64) -> Map {
    let mut map = Map::default();
    for i in 0..n {
        map.0.insert(format!("k{}", i % 50), format!("v{i}"));
    }
    map
}

fn state(engine: &Engine<Map, SimFs>) -> Map {
    engine.read(|m| m.clone())
}

#[test]
fn a_crash_keeps_what_each_fsync_mode_promised() {
    for fsync in [FsyncMode::Always, FsyncMode::default(), FsyncMode::Never] {
        let fs = SimFs::new();
        let engine = Engine::<Map, _>::open_with(fs.clone(), dir(), options(fsync)).unwrap();
        for i in 0..100 {
            set(&engine, i);
        }
        if fsync == FsyncMode::Never {
            engine.commit(b"synced=yes").unwrap();
            // Never promises power-loss survival only through sync/close.
            engine.snapshot_now().unwrap();
        }
        // A process crash: the kernel keeps what was written.
        let process_crash = fs.crash(CrashMode::KeepUnsynced);
        let engine2 = Engine::<Map, _>::open_with(process_crash, dir(), options(fsync)).unwrap();
        assert_eq!(state(&engine2).0.get("k49"), Some(&"v99".to_owned()), "{fsync:?}");
        // Power loss: Always keeps every acknowledged commit.
        let power_loss = fs.crash(CrashMode::DropUnsynced);
        let engine3 = Engine::<Map, _>::open_with(power_loss, dir(), options(fsync)).unwrap();
        let recovered = state(&engine3);
        match fsync {
            FsyncMode::Always => assert_eq!(recovered, expected(100)),
            FsyncMode::Never => assert_eq!(recovered.0.get("synced"), Some(&"yes".to_owned())),
            // Periodic: the state after some prefix of the commits (up to
            // the last timer sync), never a mix.
            _ => assert!((0..=100).any(|k| expected(k) == recovered), "not a prefix state: {recovered:?}"),
        }
        drop(engine);
    }
}

#[test]
fn recovery_loads_the_snapshot_and_replays_only_the_tail() {
    let fs = SimFs::new();
    let engine = Engine::<Map, _>::open_with(fs.clone(), dir(), options(FsyncMode::Always)).unwrap();
    for i in 0..300 {
        set(&engine, i);
    }
    let info = engine.snapshot_now().unwrap();
    assert_eq!(info.header.lsn, Lsn(300));
    for i in 300..340 {
        set(&engine, i);
    }
    engine.close().unwrap();
    let engine = Engine::<Map, _>::open_with(fs, dir(), options(FsyncMode::Always)).unwrap();
    let report = engine.recovery_report();
    assert_eq!(report.snapshot_used.as_deref(), Some(info.path.as_path()));
    assert_eq!(report.snapshot_lsn, Lsn(300));
    assert_eq!(report.records_replayed, 40);
    assert_eq!(state(&engine), expected(340));
    assert_eq!(engine.applied_lsn(), Lsn(340));
    assert_eq!(set(&engine, 340), Lsn(341), "the sequence continues");
}

#[test]
fn a_corrupt_newest_snapshot_falls_back_to_the_previous_one_and_loses_nothing() {
    let fs = SimFs::new();
    let engine = Engine::<Map, _>::open_with(fs.clone(), dir(), options(FsyncMode::Always)).unwrap();
    for i in 0..200 {
        set(&engine, i);
    }
    engine.snapshot_now().unwrap();
    for i in 200..400 {
        set(&engine, i);
    }
    let newest = engine.snapshot_now().unwrap();
    for i in 400..450 {
        set(&engine, i);
    }
    engine.close().unwrap();
    let mut bytes = fs.read_file(&newest.path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    fs.write_file(&newest.path, &bytes);
    let engine = Engine::<Map, _>::open_with(fs, dir(), options(FsyncMode::Always)).unwrap();
    let report = engine.recovery_report();
    assert_eq!(report.snapshot_lsn, Lsn(200), "the previous snapshot");
    assert_eq!(report.snapshots_skipped.len(), 1);
    assert_eq!(report.snapshots_skipped[0].0, newest.path);
    assert!(report.snapshots_skipped[0].1.contains("checksum"), "{}", report.snapshots_skipped[0].1);
    assert_eq!(report.records_replayed, 250);
    assert_eq!(state(&engine), expected(450), "nothing lost");
}

#[test]
fn a_leftover_temporary_snapshot_is_ignored_and_cleaned() {
    let fs = SimFs::new();
    let engine = Engine::<Map, _>::open_with(fs.clone(), dir(), options(FsyncMode::Always)).unwrap();
    for i in 0..10 {
        set(&engine, i);
    }
    engine.close().unwrap();
    let temp = dir().join("snapshots").join("snapshot-00000000000000000010-0123456789abcdef.zst.tmp");
    fs.write_file(&temp, b"half a snapshot");
    let engine = Engine::<Map, _>::open_with(fs.clone(), dir(), options(FsyncMode::Always)).unwrap();
    assert_eq!(engine.recovery_report().temporary_files_removed, 1);
    assert!(engine.recovery_report().snapshot_used.is_none());
    assert!(fs.read_file(&temp).is_none());
    assert_eq!(state(&engine), expected(10));
}

fn segment_count(fs: &SimFs) -> usize {
    fs.list_dir(&dir().join("wal")).unwrap().iter().filter(|n| n.ends_with(".wal")).count()
}

#[test]
fn retention_keeps_keep_count_and_never_strands_the_oldest_snapshot() {
    let fs = SimFs::new();
    let engine = Engine::<Map, _>::open_with(fs.clone(), dir(), options(FsyncMode::Never)).unwrap();
    let mut n = 0;
    for _ in 0..6 {
        for _ in 0..150 {
            set(&engine, n);
            n += 1;
        }
        engine.snapshot_now().unwrap();
    }
    let kept = engine.list_snapshots().unwrap();
    assert_eq!(kept.iter().map(|s| s.header.lsn.0).collect::<Vec<_>>(), vec![600, 750, 900]);
    assert!(engine.log_first_lsn() <= Lsn(601), "the log still holds what the oldest snapshot needs");
    assert!(engine.log_first_lsn() > Lsn(1), "and older segments are gone ({} left)", segment_count(&fs));
    engine.close().unwrap();
    // Damage every snapshot but the oldest kept: recovery must still reach
    // the full state from it plus the log.
    for info in &kept[1..] {
        fs.write_file(&info.path, b"garbage");
    }
    let engine = Engine::<Map, _>::open_with(fs, dir(), options(FsyncMode::Never)).unwrap();
    assert_eq!(engine.recovery_report().snapshot_lsn, Lsn(600));
    assert_eq!(state(&engine), expected(900));
}

/// Kills between writing a snapshot and pruning can leave more than
/// `keep_count` snapshots: open prunes them, unless a newer snapshot
/// failed and an older one may be the fallback it needs.
#[test]
fn open_prunes_snapshots_over_the_keep_count_unless_one_failed() {
    let fs = SimFs::new();
    let mut many = options(FsyncMode::Always);
    many.snapshots.keep_count = 5;
    let engine = Engine::<Map, _>::open_with(fs.clone(), dir(), many).unwrap();
    let mut newest = None;
    for round in 0..5 {
        for i in round * 20..(round + 1) * 20 {
            set(&engine, i);
        }
        newest = Some(engine.snapshot_now().unwrap().path);
    }
    engine.close().unwrap();
    let newest = newest.unwrap();
    let lsns = |engine: &Engine<Map, SimFs>| -> Vec<u64> {
        engine.list_snapshots().unwrap().iter().map(|s| s.header.lsn.0).collect()
    };

    // The newest one damaged: nothing is pruned, the fallback loads.
    let good = fs.read_file(&newest).unwrap();
    fs.write_file(&newest, b"garbage");
    let mut few = options(FsyncMode::Always);
    few.snapshots.keep_count = 2;
    let engine = Engine::<Map, _>::open_with(fs.clone(), dir(), few.clone()).unwrap();
    assert_eq!(engine.recovery_report().snapshot_lsn, Lsn(80));
    assert_eq!(lsns(&engine), vec![20, 40, 60, 80], "no snapshot went while the newest one failed");
    assert_eq!(state(&engine), expected(100));
    engine.close().unwrap();

    // Repaired: open keeps the newest two.
    fs.write_file(&newest, &good);
    let engine = Engine::<Map, _>::open_with(fs.clone(), dir(), few).unwrap();
    assert_eq!(engine.recovery_report().snapshot_lsn, Lsn(100));
    assert_eq!(lsns(&engine), vec![80, 100]);
    assert_eq!(state(&engine), expected(100));
}

#[test]
fn replay_is_idempotent_recovering_twice_gives_the_same_state() {
    let fs = SimFs::new();
    let engine = Engine::<Map, _>::open_with(fs.clone(), dir(), options(FsyncMode::Always)).unwrap();
    for i in 0..120 {
        set(&engine, i);
    }
    engine.snapshot_now().unwrap();
    for i in 120..130 {
        set(&engine, i);
    }
    drop(engine);
    let disk = fs.crash(CrashMode::DropUnsynced);
    let first = state(&Engine::<Map, _>::open_with(disk.clone(), dir(), options(FsyncMode::Always)).unwrap());
    let second = state(&Engine::<Map, _>::open_with(disk, dir(), options(FsyncMode::Always)).unwrap());
    assert_eq!(first, second);
    assert_eq!(first, expected(130));
}

#[test]
fn snapshots_are_taken_automatically_every_n_commits() {
    let fs = SimFs::new();
    let mut opts = options(FsyncMode::Never);
    opts.snapshots.every_commits = Some(100);
    let engine = Engine::<Map, _>::open_with(fs.clone(), dir(), opts).unwrap();
    for i in 0..350 {
        set(&engine, i);
    }
    // The snapshot thread catches up: fewer than 100 commits are left that
    // the newest snapshot does not cover.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let newest = engine.list_snapshots().unwrap().last().map_or(0, |s| s.header.lsn.0);
        if 350 - newest < 100 {
            assert!(newest >= 251);
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no snapshot caught up (newest at LSN {newest})");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let snapshots = engine.list_snapshots().unwrap();
    assert!(!snapshots.is_empty() && snapshots.len() <= 3, "keep_count holds: {}", snapshots.len());
}

#[test]
fn real_files_round_trip() {
    let tmp = tempfile::tempdir().unwrap();
    let path: &Path = tmp.path();
    let engine = Engine::<Map, _>::open(path, EngineOptions::default()).unwrap();
    for i in 0..1000 {
        engine.commit(format!("k{i}=v{i}").as_bytes()).unwrap();
    }
    engine.snapshot_now().unwrap();
    engine.commit_batch(&[b"a=1".as_slice(), b"b=2"]).unwrap();
    engine.close().unwrap();
    let engine = Engine::<Map, _>::open(path, EngineOptions::default()).unwrap();
    assert_eq!(engine.read(|m| m.0.len()), 1002);
    assert_eq!(engine.recovery_report().records_replayed, 2);
}
