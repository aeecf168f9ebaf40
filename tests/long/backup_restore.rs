//! Online backups and verified restores: a backup taken while writers keep
//! writing holds every write acknowledged before it began; a backup of a
//! process killed with SIGKILL in the middle of it either completes from
//! the files on disk or fails, never leaving a backup that restores wrong
//! data; repeated backups copy only what is new; a restore refuses a
//! non-empty destination and a damaged backup, and changes nothing then.

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use walden::admin::{DataDir, NoProgress, Progress, Target};
use walden::backup::{self, BackupOptions};
use walden::io::RealFs;
use walden::store::KvState;
use walden::{EngineOptions, Error, FsyncMode, Lsn, SnapshotOptions, Store, StoreOptions, WalOptions};

const KILL_CHILD_ENV: &str = "WALDEN_BACKUP_KILL9_CHILD_DIR";

fn options(fsync: FsyncMode, every_commits: Option<u64>) -> StoreOptions {
    StoreOptions {
        engine: EngineOptions {
            wal: WalOptions { fsync, segment_bytes: 64 << 10, ..Default::default() },
            snapshots: SnapshotOptions { keep_count: 2, every_commits, ..SnapshotOptions::manual() },
        },
        writer: "backup-test".into(),
    }
}

fn value(writer: u64, i: u64) -> Vec<u8> {
    format!("value of writer {writer}, write {i}, {}", "x".repeat((i % 13) as usize)).into_bytes()
}

fn key(writer: u64, i: u64) -> Vec<u8> {
    format!("w{writer}-{i:08}").into_bytes()
}

/// Every file under `dir` with its bytes.
fn contents(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                out.insert(path.clone(), Vec::new());
                stack.push(path);
            } else {
                out.insert(path.clone(), fs::read(&path).unwrap());
            }
        }
    }
    out
}

/// Restores `backup` into a new directory and opens it.
fn restore_and_open(backup: &Path, dest: &Path, fsync: FsyncMode) -> Store {
    let (report, state) = backup::restore::<KvState>(backup, dest, None, &mut NoProgress).unwrap();
    let store = Store::open(dest, options(fsync, None)).unwrap();
    assert_eq!(store.applied_lsn(), report.last_lsn, "the restored store opens at the LSN the restore reported");
    assert_eq!(store.len(), state.len(), "the state the restore rebuilt is the one the store opens with");
    store
}

/// Asserts the store holds, for every writer, writes 0..n exactly (with
/// n at least `acknowledged[w]`) and nothing else of that writer.
fn assert_holds_prefixes(store: &Store, acknowledged: &[u64], context: &str) {
    for (w, &acked) in acknowledged.iter().enumerate() {
        let w = w as u64;
        let prefix = key(w, 0)[..key(w, 0).len() - 8].to_vec();
        let held = store.scan_prefix(&prefix);
        for (i, (k, entry)) in held.iter().enumerate() {
            assert_eq!(&**k, &key(w, i as u64)[..], "{context}: writer {w} has a hole before {i}");
            assert_eq!(&*entry.value, &value(w, i as u64)[..], "{context}: writer {w} write {i} has wrong bytes");
        }
        assert!(
            held.len() as u64 >= acked,
            "{context}: writer {w}: {acked} writes acknowledged, {} restored",
            held.len()
        );
    }
}

#[test]
fn a_backup_taken_while_8_threads_write_in_always_mode_restores_every_acknowledged_write() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, dest) = (tmp.path().join("data"), tmp.path().join("backups"));
    // Automatic snapshots every 2,000 commits (two kept, older segments
    // removed), so retention runs while the backups read.
    let store = Store::open(&data, options(FsyncMode::Always, Some(2000))).unwrap();
    let acked: Vec<AtomicU64> = (0..8).map(|_| AtomicU64::new(0)).collect();
    let stop = AtomicBool::new(false);
    let (before_engine, before_disk, engine_report, disk_report) = std::thread::scope(|scope| {
        for w in 0..8u64 {
            let (store, acked, stop) = (&store, &acked, &stop);
            scope.spawn(move || {
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    store.put(&key(w, i), &value(w, i)).unwrap();
                    i += 1;
                    acked[w as usize].store(i, Ordering::SeqCst);
                }
            });
        }
        let wait_for = |n: u64| {
            while acked.iter().map(|a| a.load(Ordering::SeqCst)).sum::<u64>() < n {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
        };
        wait_for(3000);
        // Every write acknowledged before the backup begins.
        let before_engine: Vec<u64> = acked.iter().map(|a| a.load(Ordering::SeqCst)).collect();
        let engine_report = store.backup_to(&dest).unwrap();
        wait_for(before_engine.iter().sum::<u64>() + 2000);
        // The same through the files alone, as `walden backup` does on a
        // directory another process holds.
        let before_disk: Vec<u64> = acked.iter().map(|a| a.load(Ordering::SeqCst)).collect();
        let located = DataDir::locate(&RealFs, &data).unwrap();
        let disk_report =
            backup::backup_data_dir(&RealFs, &located, &dest, &BackupOptions::default(), &mut NoProgress).unwrap();
        stop.store(true, Ordering::Relaxed);
        (before_engine, before_disk, engine_report, disk_report)
    });
    assert!(engine_report.manifest.last_lsn.0 >= before_engine.iter().sum::<u64>());
    assert!(!disk_report.manifest.snapshots.is_empty() || disk_report.manifest.first_lsn == Lsn::FIRST);
    let writes = store.len();
    store.close().unwrap();
    assert!(writes as u64 > before_disk.iter().sum::<u64>(), "the writers kept writing during the backups");

    let first = restore_and_open(&engine_report.dir, &tmp.path().join("restored-1"), FsyncMode::Always);
    assert_holds_prefixes(&first, &before_engine, "Engine::backup_to");
    let second = restore_and_open(&disk_report.dir, &tmp.path().join("restored-2"), FsyncMode::Always);
    assert_holds_prefixes(&second, &before_disk, "backup_data_dir");
    // The restored store takes new writes.
    second.put(b"after", b"restore").unwrap();
    second.close().unwrap();
}

#[test]
fn an_incremental_backup_copies_only_new_files_and_old_backups_are_pruned_by_count() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, dest) = (tmp.path().join("data"), tmp.path().join("backups"));
    let store = Store::open(&data, options(FsyncMode::Never, None)).unwrap();
    for i in 0..3000 {
        store.put(&key(0, i), &value(0, i)).unwrap();
        if i == 1000 || i == 2000 {
            store.snapshot_now().unwrap();
        }
    }
    let first = store.backup_to(&dest).unwrap();
    assert_eq!(first.files_linked, 0);
    assert_eq!(first.bytes_copied, first.manifest.bytes(), "the first backup copies everything");
    assert!(first.manifest.segments.len() >= 3 && first.manifest.snapshots.len() == 2);

    // A few more writes: the active segment grows; nothing else changes.
    for i in 3000..3010 {
        store.put(&key(0, i), &value(0, i)).unwrap();
    }
    let second = store.backup_to(&dest).unwrap();
    let active = second.manifest.segments.last().unwrap();
    // New since the first backup: the segment that was active then (it
    // grew, or was sealed and a new one began) and any after it.
    let sealed_before: Vec<_> = first.manifest.segments.iter().filter(|e| e.sealed).map(|e| &e.path).collect();
    let new: Vec<_> = second.manifest.segments.iter().filter(|e| !sealed_before.contains(&&e.path)).collect();
    assert!(new.len() <= 2 && new.last() == Some(&active), "{new:?}");
    assert_eq!(second.files_copied, new.len(), "only the new files are copied");
    assert_eq!(second.bytes_copied, new.iter().map(|e| e.bytes).sum::<u64>(), "the bytes copied are the new files'");
    assert_eq!(
        second.bytes_copied,
        new.iter().map(|e| fs::metadata(second.dir.join(&e.path)).unwrap().len()).sum::<u64>()
    );
    assert_eq!(second.files_linked, sealed_before.len() + 2, "every sealed segment and both snapshots are shared");
    assert_eq!(second.bytes_linked + second.bytes_copied, second.manifest.bytes());
    assert!(second.bytes_copied * 3 < second.manifest.bytes(), "most bytes are shared");
    for path in sealed_before.iter().copied().chain(second.manifest.snapshots.iter().map(|s| &s.path)) {
        let (a, b) = (fs::metadata(first.dir.join(path)).unwrap(), fs::metadata(second.dir.join(path)).unwrap());
        assert_eq!(a.ino(), b.ino(), "{path} is shared, not copied");
    }
    assert_ne!(
        fs::metadata(first.dir.join(&active.path)).unwrap().ino(),
        fs::metadata(second.dir.join(&active.path)).unwrap().ino(),
        "each backup's last segment is its own"
    );

    // A third, keeping two: the first goes, the second still restores whole.
    store.put(b"third", b"backup").unwrap();
    let third = store.backup_with(&dest, &BackupOptions { keep: Some(2) }).unwrap();
    assert_eq!(third.pruned, vec![first.dir.clone()]);
    assert!(!first.dir.exists());
    let listed: Vec<_> = backup::list_backups(&dest).unwrap().into_iter().map(|(_, p)| p).collect();
    assert_eq!(listed, vec![second.dir.clone(), third.dir.clone()]);
    backup::verify_backup(&second.dir, &mut NoProgress).unwrap();
    let restored = restore_and_open(&second.dir, &tmp.path().join("restored"), FsyncMode::Never);
    assert_eq!(restored.len(), 3010);
    assert_eq!(restored.applied_lsn(), second.manifest.last_lsn);

    // A backup opened in place as a store appends to its own last segment
    // only: the other backup, sharing its sealed files, still verifies.
    let in_place = Store::open(&third.dir, options(FsyncMode::Never, None)).unwrap();
    for i in 0..500 {
        in_place.put(&key(1, i), &value(1, i)).unwrap();
    }
    in_place.close().unwrap();
    backup::verify_backup(&second.dir, &mut NoProgress).unwrap();
    store.close().unwrap();
}

#[test]
fn a_restore_refuses_a_non_empty_destination_or_a_damaged_backup_and_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, dest) = (tmp.path().join("data"), tmp.path().join("backups"));
    let store = Store::open(&data, options(FsyncMode::Never, None)).unwrap();
    for i in 0..2000 {
        store.put(&key(0, i), &value(0, i)).unwrap();
        if i == 1500 {
            store.snapshot_now().unwrap();
        }
    }
    let taken = store.backup_to(&dest).unwrap();
    store.close().unwrap();

    let occupied = tmp.path().join("occupied");
    fs::create_dir_all(&occupied).unwrap();
    fs::write(occupied.join("precious.txt"), b"not a walden file").unwrap();
    let before = contents(tmp.path());
    let e = backup::restore::<KvState>(&dest, &occupied, None, &mut NoProgress).unwrap_err();
    assert!(matches!(&e, Error::InvalidArgument(why) if why.contains("is not empty")), "{e}");
    assert_eq!(contents(tmp.path()), before, "a refused restore changed something");

    // One flipped byte in a shared segment of the backup.
    let victim = taken.dir.join(&taken.manifest.segments[1].path);
    let mut bytes = fs::read(&victim).unwrap();
    bytes[200] ^= 0x10;
    fs::write(&victim, bytes).unwrap();
    let before = contents(tmp.path());
    let fresh = tmp.path().join("fresh");
    let e = backup::restore::<KvState>(&dest, &fresh, None, &mut NoProgress).unwrap_err();
    match &e {
        Error::BadBackup { file, reason } => {
            assert_eq!(file, &victim);
            assert!(reason.contains("checksum mismatch"), "{reason}");
        }
        other => panic!("expected a bad backup, got {other}"),
    }
    assert!(!fresh.exists());
    assert_eq!(contents(tmp.path()), before, "a refused restore changed something");
}

#[test]
fn a_restore_to_an_lsn_holds_the_state_as_of_that_lsn() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, dest) = (tmp.path().join("data"), tmp.path().join("backups"));
    let store = Store::open(&data, options(FsyncMode::Never, None)).unwrap();
    for i in 0..3000u64 {
        // Overwrites, so an older state really differs from the newest.
        store.put(&key(0, i % 700), &value(0, i)).unwrap();
        if i == 1000 {
            store.snapshot_now().unwrap();
        }
    }
    store.backup_to(&dest).unwrap();
    for lsn in [1001u64, 1500, 2999] {
        let expected = store.view_at(Lsn(lsn)).unwrap();
        let out = tmp.path().join(format!("at-{lsn}"));
        let (report, state) =
            backup::restore::<KvState>(&dest, &out, Some(Target::Lsn(Lsn(lsn))), &mut NoProgress).unwrap();
        assert_eq!(report.last_lsn, Lsn(lsn));
        assert_eq!(report.snapshot_used.as_deref(), Some("snapshot-00000000000000001001.zst"));
        assert!(state.iter().eq(expected.iter()), "LSN {lsn}: the restored state is the view at that LSN");
        let opened = Store::open(&out, options(FsyncMode::Never, None)).unwrap();
        assert_eq!(opened.applied_lsn(), Lsn(lsn));
        assert_eq!(opened.len(), expected.len());
    }
    // By time: the state as of the timestamp of the write at LSN 2000 is
    // the store's own view at that time.
    let at = store.view_at(Lsn(2000)).unwrap();
    let time = at.iter().map(|(_, e)| e.timestamp_us).max().unwrap();
    let (expected, expected_lsn) = store.view_at_time(time).unwrap();
    let out = tmp.path().join("at-time");
    let (report, state) = backup::restore::<KvState>(&dest, &out, Some(Target::Time(time)), &mut NoProgress).unwrap();
    assert_eq!(report.last_lsn, expected_lsn);
    assert!(report.last_lsn >= Lsn(2000));
    assert!(state.iter().eq(expected.iter()), "the restored state is the view at that time");
    // Before the oldest snapshot the backup holds, with its log cut after
    // it: refused, and said why.
    let e = backup::restore::<KvState>(&dest, &tmp.path().join("old"), Some(Target::Lsn(Lsn(10))), &mut NoProgress);
    let e = e.unwrap_err();
    assert!(e.to_string().contains("no snapshot at or before LSN 10"), "{e}");
    store.close().unwrap();
}

/// The child of the kill test: writes `w0-{i}` forever in `Always` mode and
/// prints `i` once each is acknowledged.
fn kill_child(dir: &Path) -> ! {
    use std::io::Write;
    let store = Store::open(dir, options(FsyncMode::Always, Some(3000))).expect("child: open");
    let mut i = store.len() as u64;
    let stdout = std::io::stdout();
    loop {
        store.put(&key(0, i), &value(0, i)).expect("child: put");
        i += 1;
        let mut out = stdout.lock();
        writeln!(out, "{i}").expect("child: report");
        out.flush().expect("child: flush");
    }
}

/// Kills the child (SIGKILL) once the backup has copied `after_bytes`.
struct KillMidway {
    child: Option<std::process::Child>,
    copied: u64,
    after_bytes: u64,
}

impl Progress for KillMidway {
    fn advance(&mut self, bytes: u64) {
        self.copied += bytes;
        if self.copied >= self.after_bytes {
            if let Some(mut child) = self.child.take() {
                child.kill().unwrap();
                child.wait().unwrap();
            }
        }
    }
}

#[test]
fn a_backup_of_a_process_killed_with_sigkill_midway_completes_or_fails_never_restores_wrong_data() {
    if let Ok(dir) = std::env::var(KILL_CHILD_ENV) {
        kill_child(Path::new(&dir));
    }
    let tmp = tempfile::tempdir().unwrap();
    let (data, dest) = (tmp.path().join("data"), tmp.path().join("backups"));
    let (mut completed, mut failed) = (0, 0);
    for cycle in 0..4u64 {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                concat!(
                    module_path!(),
                    "::a_backup_of_a_process_killed_with_sigkill_midway_completes_or_fails_never_restores_wrong_data"
                )
                .split_once("::")
                .map_or("", |(_crate, path)| path),
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(KILL_CHILD_ENV, &data)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let acked = Arc::new(AtomicU64::new(0));
        let reader = {
            let (stdout, acked) = (child.stdout.take().unwrap(), acked.clone());
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    if let Ok(n) = line.trim().parse::<u64>() {
                        acked.fetch_max(n, Ordering::SeqCst);
                    }
                }
            })
        };
        while acked.load(Ordering::SeqCst) < 3000 * (cycle + 1) {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let before = acked.load(Ordering::SeqCst);
        let located = DataDir::locate(&RealFs, &data).unwrap();
        let mut kill = KillMidway { child: Some(child), copied: 0, after_bytes: 64 << 10 };
        let result = backup::backup_data_dir(&RealFs, &located, &dest, &BackupOptions::default(), &mut kill);
        assert!(kill.child.is_none(), "cycle {cycle}: the child was killed in the middle of the backup");
        if let Some(mut child) = kill.child.take() {
            child.kill().unwrap(); // the backup ended before the kill point
            child.wait().unwrap();
        }
        reader.join().unwrap();
        match result {
            Ok(report) => {
                completed += 1;
                let out = tmp.path().join(format!("restored-{cycle}"));
                let restored = restore_and_open(&report.dir, &out, FsyncMode::Always);
                assert_holds_prefixes(&restored, &[before], &format!("cycle {cycle}"));
                restored.close().unwrap();
            }
            Err(e) => {
                failed += 1;
                eprintln!("cycle {cycle}: the backup failed: {e}");
                let unfinished: Vec<_> = fs::read_dir(&dest)
                    .unwrap()
                    .map(|e| e.unwrap().file_name().into_string().unwrap())
                    .filter(|n| n.ends_with(".tmp"))
                    .collect();
                assert!(unfinished.is_empty(), "a failed backup left {unfinished:?}");
            }
        }
    }
    // Every backup that completed restored right; say how they went.
    eprintln!("{completed} backups completed from the files of a killed process, {failed} failed cleanly");
    assert_eq!(completed + failed, 4);
    assert!(completed > 0, "the files a killed process leaves are enough for a backup");
}

#[test]
fn a_journal_backs_up_and_restores_too() {
    use walden::journal::{JournalState, NewEntry, Value};
    use walden::{DurableJournal, Journal, JournalOptions};
    let tmp = tempfile::tempdir().unwrap();
    let (data, dest) = (tmp.path().join("journal"), tmp.path().join("backups"));
    let journal = DurableJournal::open(&data, JournalOptions::default()).unwrap();
    for i in 0..500 {
        journal.append(NewEntry::set("relay", &format!("/lights/{}", i % 20), Value::Int(i))).unwrap();
    }
    let report = journal.backup_to(&dest).unwrap();
    let latest = journal.read(|s| s.latest_sequence());
    journal.close().unwrap();
    let out = tmp.path().join("restored");
    let (restored, state) = backup::restore::<JournalState>(&dest, &out, None, &mut NoProgress).unwrap();
    assert_eq!(restored.last_lsn, report.manifest.last_lsn);
    assert_eq!(state.latest_sequence(), latest);
    assert_eq!(state.params().count(), 20);
    let reopened = DurableJournal::open(&out, JournalOptions::default()).unwrap();
    assert_eq!(reopened.read(|s| s.latest_sequence()), 500);
}
