//! Real data directories for the recovery-tool tests: a healthy store and
//! copies of it damaged in the ways an operator meets (torn tail, a flipped
//! bit in a sealed segment, a corrupt newest snapshot, a leftover temporary
//! snapshot), and one whose intact log holds a record the store refuses.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use walden::format::{decode_record, SegmentHeader, SEGMENT_HEADER_BYTES};
use walden::{EngineOptions, FsyncMode, Lsn, SnapshotOptions, Store, StoreOptions, Wal, WalOptions};

/// Small segments so the log has several; no automatic snapshots.
/// Copies the directory `from` into `to`, recursively.
pub fn copy_dir(from: &Path, to: &Path) {
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

pub fn options() -> StoreOptions {
    StoreOptions {
        engine: EngineOptions {
            wal: WalOptions { fsync: FsyncMode::Never, segment_bytes: 4096, ..Default::default() },
            snapshots: SnapshotOptions::manual(),
        },
        writer: "fixture".into(),
    }
}

/// LSNs 1..=400 (puts of `key-{i}`), snapshots at LSN 100 and 250; the
/// segments before LSN 101 are truncated away by the snapshots.
pub fn healthy(root: &Path) -> PathBuf {
    let dir = root.join("data");
    let store = Store::open(&dir, options()).unwrap();
    for i in 0..400u64 {
        store.put(format!("key-{i}").as_bytes(), format!("value-{i}").as_bytes()).unwrap();
        if i == 99 || i == 249 {
            store.snapshot_now().unwrap();
        }
    }
    store.close().unwrap();
    dir
}

/// The payloads of the store operations `puts` writes into a scratch store
/// under `root`: valid records another program can append to any log.
pub fn store_payloads(root: &Path, puts: &[(&str, &str)]) -> Vec<Vec<u8>> {
    let scratch = root.join("scratch-store");
    let store = Store::open(&scratch, options()).unwrap();
    for (key, value) in puts {
        store.put(key.as_bytes(), value.as_bytes()).unwrap();
    }
    store.close().unwrap();
    let wal = Wal::open(scratch.join("wal"), options().engine.wal).unwrap();
    let payloads = wal.read_from(Lsn::FIRST).unwrap().map(|r| r.unwrap().payload).collect();
    wal.close().unwrap();
    payloads
}

/// The record another program writes that no store can apply.
pub const REFUSED_PAYLOAD: &[u8] = b"set x=1";

/// [`healthy`] (LSNs 1..=400, snapshots at 100 and 250), then another
/// program appends to its log with a raw `Wal`: at LSN 401 a record that
/// is no store operation, then three valid puts (`after-1..=3`) at LSNs
/// 402..=404. The log is intact; the store refuses LSN 401.
pub fn with_refused_record(root: &Path) -> PathBuf {
    let dir = healthy(root);
    let puts = store_payloads(root, &[("after-1", "a"), ("after-2", "b"), ("after-3", "c")]);
    let wal = Wal::open(dir.join("wal"), options().engine.wal).unwrap();
    assert_eq!(wal.append(REFUSED_PAYLOAD).unwrap(), Lsn(401));
    for payload in &puts {
        wal.append(payload).unwrap();
    }
    assert_eq!(wal.last_lsn(), Some(Lsn(404)));
    wal.close().unwrap();
    dir
}

/// Segment files in LSN order.
pub fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = fs::read_dir(dir.join("wal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "wal"))
        .collect();
    out.sort();
    out
}

/// The first LSN the log holds, from its oldest segment's name.
pub fn first_lsn(dir: &Path) -> u64 {
    let oldest = segments(dir).remove(0);
    oldest.file_stem().unwrap().to_str().unwrap().parse().unwrap()
}

pub fn snapshots(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = fs::read_dir(dir.join("snapshots"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "zst"))
        .collect();
    out.sort();
    out
}

/// (offset, frame length, LSN) of every valid record of a segment file.
pub fn frames(path: &Path) -> Vec<(usize, usize, u64)> {
    let bytes = fs::read(path).unwrap();
    let seed = SegmentHeader::decode(&bytes).unwrap().seed();
    let mut out = Vec::new();
    let mut offset = SEGMENT_HEADER_BYTES;
    while let Ok(rec) = decode_record(&bytes[offset..], seed) {
        out.push((offset, rec.header.frame_len(), rec.header.lsn.0));
        offset += rec.header.frame_len();
    }
    out
}

pub fn flip_byte(path: &Path, offset: usize) {
    let mut bytes = fs::read(path).unwrap();
    bytes[offset] ^= 0x40;
    fs::write(path, bytes).unwrap();
}

/// Damages the payload of the very last record: a torn tail. Returns the
/// segment, the record's offset and LSN.
pub fn tear_tail(dir: &Path) -> (PathBuf, usize, u64) {
    let last = segments(dir).pop().unwrap();
    let (offset, _, lsn) = *frames(&last).last().unwrap();
    flip_byte(&last, offset + 40);
    (last, offset, lsn)
}

/// Flips a bit in the first record of a sealed segment in the middle of the
/// log. Returns the segment, offset and LSN.
pub fn flip_mid_log(dir: &Path) -> (PathBuf, usize, u64) {
    let segs = segments(dir);
    assert!(segs.len() >= 4, "the fixture has several segments");
    let middle = segs[segs.len() / 2].clone();
    let (offset, _, lsn) = frames(&middle)[0];
    flip_byte(&middle, offset + 36);
    (middle, offset, lsn)
}

/// Damages the newest snapshot's content. Returns its path.
pub fn corrupt_newest_snapshot(dir: &Path) -> PathBuf {
    let newest = snapshots(dir).pop().unwrap();
    flip_byte(&newest, walden::snapshot::SNAPSHOT_HEADER_BYTES + 10);
    newest
}

/// Leaves the temporary file of an interrupted snapshot. Returns its path.
pub fn leave_temporary_snapshot(dir: &Path) -> PathBuf {
    let path = dir.join("snapshots").join("snapshot-00000000000000000400-00000000deadbeef.zst.tmp");
    fs::write(&path, b"half a snapshot").unwrap();
    path
}

/// Every file under `dir` with its bytes: to prove a command changed nothing.
pub fn contents(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
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

/// Quarantine files in the log directory.
pub fn quarantine(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = fs::read_dir(dir.join("wal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().contains(".quarantine"))
        .collect();
    out.sort();
    out
}
