//! Opening takes the directory lock before it changes, removes or renames
//! any file: an open refused because another process (here, another handle
//! in this process: `flock` locks conflict between open files too) holds the
//! directory leaves every file of the holder as it was, and the holder goes
//! on working, its next snapshot included.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use walden::{
    DurableJournal, EngineOptions, Error, FsyncMode, JournalOptions, SnapshotOptions, Store, StoreOptions, Wal,
    WalOptions,
};

/// Every file under `dir` with its bytes (directories with none), less the
/// spare segments the holder's preparer thread may be filling right now
/// (`{random:016x}.wal.tmp`; the stand-in spare the tests plant is kept).
fn contents(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut all = all_contents(dir);
    all.retain(|path, _| {
        let name = path.file_name().unwrap().to_str().unwrap();
        !name.ends_with(".wal.tmp") || name.starts_with("00000000deadbeef")
    });
    all
}

fn all_contents(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
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

fn options() -> StoreOptions {
    StoreOptions {
        engine: EngineOptions {
            wal: WalOptions { fsync: FsyncMode::Never, segment_bytes: 64 << 10, ..Default::default() },
            snapshots: SnapshotOptions::manual(),
        },
        writer: "lock".into(),
    }
}

fn assert_locked(e: Error) {
    match &e {
        Error::Io { op: "lock", source, .. } => {
            assert_eq!(source.kind(), std::io::ErrorKind::WouldBlock, "{e}");
            assert!(e.to_string().contains("locked by another walden instance"), "{e}");
        }
        other => panic!("expected the lock to be refused, got {other}"),
    }
}

/// What a snapshot in progress looks like on disk (`write_snapshot`'s
/// temporary name), with some bytes in it.
fn snapshot_in_progress(dir: &Path) -> PathBuf {
    let temp = dir.join("snapshots/snapshot-00000000000000000123-00000000deadbeef.zst.tmp");
    fs::write(&temp, b"half a snapshot").unwrap();
    temp
}

#[test]
fn a_refused_store_open_leaves_the_holders_files_alone_and_its_next_snapshot_succeeds() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let holder = Store::open(&dir, options()).unwrap();
    for i in 0..2000u32 {
        holder.put(format!("k{i}").as_bytes(), &[7u8; 100]).unwrap();
    }
    holder.snapshot_now().unwrap();
    holder.put(b"after", b"snapshot").unwrap();
    let temp = snapshot_in_progress(&dir);
    let before = contents(&dir);

    for _ in 0..3 {
        assert_locked(Store::open(&dir, options()).err().expect("a second open is refused"));
        assert_eq!(contents(&dir), before, "the refused open changed the holder's files");
    }
    assert!(temp.exists(), "the holder's snapshot in progress is still there");

    // The holder carries on: a real snapshot, then more writes.
    let info = holder.snapshot_now().unwrap();
    assert_eq!(info.header.lsn, holder.applied_lsn());
    holder.put(b"more", b"writes").unwrap();
    holder.close().unwrap();
    let reopened = Store::open(&dir, options()).unwrap();
    assert_eq!(reopened.len(), 2002);
    // Its own open (no longer refused) removes the stale temporary file.
    assert_eq!(reopened.recovery_report().temporary_files_removed, 1);
    assert!(!temp.exists());
}

#[test]
fn a_refused_open_never_races_the_holders_snapshots() {
    // The bug this guards against: the second open removed the holder's
    // `.zst.tmp` before its lock was refused, and the holder's rename
    // failed. Snapshots run on a thread while opens are tried and refused.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let holder = Store::open(&dir, options()).unwrap();
    for i in 0..20_000u32 {
        holder.put(format!("key-{i:08}").as_bytes(), &[i as u8; 64]).unwrap();
    }
    std::thread::scope(|scope| {
        let snapshots = scope.spawn(|| {
            for _ in 0..10 {
                holder.snapshot_now().expect("a snapshot of the holder");
            }
        });
        while !snapshots.is_finished() {
            assert_locked(Store::open(&dir, options()).err().expect("refused"));
        }
        snapshots.join().unwrap();
    });
    holder.close().unwrap();
}

#[test]
fn a_refused_journal_open_leaves_the_holders_files_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("journal");
    let holder = DurableJournal::open(&dir, JournalOptions::default()).unwrap();
    let temp = snapshot_in_progress(&dir);
    let before = contents(&dir);
    assert_locked(DurableJournal::open(&dir, JournalOptions::default()).err().expect("refused"));
    assert_eq!(contents(&dir), before);
    assert!(temp.exists());
    holder.close().unwrap();
}

#[test]
fn a_refused_log_open_leaves_the_holders_spare_segment_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let options = WalOptions { segment_bytes: 64 << 10, ..Default::default() };
    let holder = Wal::open(&dir, options.clone()).unwrap();
    for i in 0..100u32 {
        holder.append(&i.to_le_bytes()).unwrap();
    }
    // A spare being prepared by the holder (recovery deletes spares).
    let spare = dir.join("00000000deadbeef.wal.tmp");
    fs::write(&spare, vec![0u8; 4096]).unwrap();
    let before = contents(&dir);
    assert_locked(Wal::open(&dir, options).err().expect("refused"));
    assert_eq!(contents(&dir), before);
    holder.append(b"still writing").unwrap();
    holder.close().unwrap();
}
