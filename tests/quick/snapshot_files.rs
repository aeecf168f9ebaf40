//! Snapshot files: round trip, checksums, crash safety, retention.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use walden::io::{CrashMode, Fault, FaultKind, SimFs, Vfs};
use walden::snapshot::{
    list_snapshots, prune_snapshots, read_snapshot, snapshot_file_name, temporary_files, verify_snapshot,
    write_snapshot, SnapshotHeader, SnapshotInfo, SnapshotOrigin,
};
use walden::{Error, Lsn};

/// The origin these snapshots record (no log is checked against here).
const ORIGIN: SnapshotOrigin = SnapshotOrigin { log_id: 0x5eed, seal: None };

fn dir() -> PathBuf {
    PathBuf::from("/snap")
}

/// A state of `n` entries, written as length-prefixed lines.
fn state(n: u64) -> Vec<Vec<u8>> {
    (0..n).map(|i| format!("key-{i:08}=value-{}", i * 7).into_bytes()).collect()
}

fn write_state(entries: &[Vec<u8>]) -> impl FnOnce(&mut dyn Write) -> std::io::Result<u64> + '_ {
    move |w| {
        for e in entries {
            w.write_all(&(e.len() as u32).to_le_bytes())?;
            w.write_all(e)?;
        }
        Ok(entries.len() as u64)
    }
}

fn read_state(r: &mut dyn Read) -> std::io::Result<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    let mut len = [0u8; 4];
    loop {
        match r.read_exact(&mut len) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(out),
            Err(e) => return Err(e),
        }
        let mut entry = vec![0u8; u32::from_le_bytes(len) as usize];
        r.read_exact(&mut entry)?;
        out.push(entry);
    }
}

fn take(fs: &SimFs, lsn: u64, n: u64) -> SnapshotInfo {
    write_snapshot(fs, &dir(), Lsn(lsn), 1_700_000_000_000_000 + lsn, ORIGIN, write_state(&state(n))).unwrap()
}

#[test]
fn round_trip_compresses_and_lists_by_lsn() {
    let fs = SimFs::new();
    let a = take(&fs, 300, 10_000);
    let b = take(&fs, 20, 5);
    let walden::snapshot::SnapshotListing { snapshots: listed, unreadable: bad, .. } =
        list_snapshots(&fs, &dir()).unwrap();
    assert!(bad.is_empty());
    assert_eq!(listed.iter().map(|s| s.header.lsn).collect::<Vec<_>>(), vec![Lsn(20), Lsn(300)]);
    assert_eq!(listed[1], a);
    assert_eq!(listed[0], b);
    assert_eq!(a.header.entries, 10_000);
    let raw: usize = state(10_000).iter().map(|e| e.len() + 4).sum();
    assert!((a.header.content_bytes as usize) < raw / 3, "zstd compresses: {} of {raw}", a.header.content_bytes);
    assert_eq!(read_snapshot(&fs, &a, read_state).unwrap(), state(10_000));
}

#[test]
fn real_files_round_trip() {
    let tmp = tempfile::tempdir().unwrap();
    let fs = walden::io::RealFs;
    let info = write_snapshot(&fs, tmp.path(), Lsn(9), 0, ORIGIN, write_state(&state(50_000))).unwrap();
    assert_eq!(std::fs::metadata(&info.path).unwrap().len(), info.file_bytes);
    assert_eq!(read_snapshot(&fs, &info, read_state).unwrap(), state(50_000));
}

/// A state far larger than one of zstd's multithreaded jobs (a few MiB of
/// input each): the frame its workers write is a standard one and reads
/// back entry for entry, on a real file large enough that writeback is
/// started early (every 16 MiB) several times.
#[test]
fn a_snapshot_of_many_compression_jobs_round_trips() {
    let tmp = tempfile::tempdir().unwrap();
    let fs = walden::io::RealFs;
    // Incompressible entries: 60 MiB of content, 60 MiB of file.
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let entries: Vec<Vec<u8>> = (0..500_000)
        .map(|_| {
            (0..16)
                .flat_map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x.to_le_bytes()
                })
                .collect()
        })
        .collect();
    let info = write_snapshot(&fs, tmp.path(), Lsn(11), 0, ORIGIN, write_state(&entries)).unwrap();
    assert!(info.file_bytes > 60 << 20, "incompressible: {} bytes", info.file_bytes);
    assert_eq!(std::fs::metadata(&info.path).unwrap().len(), info.file_bytes);
    verify_snapshot(&fs, &info).unwrap();
    assert!(read_snapshot(&fs, &info, read_state).unwrap() == entries);
    // And a compressible one of many jobs, through the simulated file system.
    let sim = SimFs::new();
    let info = take(&sim, 12, 400_000);
    assert!(info.header.content_bytes < 4 << 20, "compressed: {} bytes", info.header.content_bytes);
    assert_eq!(read_snapshot(&sim, &info, read_state).unwrap(), state(400_000));
}

/// A snapshot as the builds before zstd's workers wrote it: one frame from
/// the single-threaded encoder at level 3. It still lists, verifies and
/// loads entry for entry.
#[test]
fn a_snapshot_compressed_as_earlier_builds_did_still_loads() {
    let fs = SimFs::new();
    let entries = state(20_000);
    let mut raw = Vec::new();
    write_state(&entries)(&mut raw).unwrap();
    let content = zstd::stream::encode_all(&raw[..], 3).unwrap();
    let header = SnapshotHeader {
        lsn: Lsn(42),
        created_unix_us: 1_700_000_000_000_000,
        entries: 20_000,
        content_bytes: content.len() as u64,
        content_crc: crc32fast::hash(&content),
        origin: Some(ORIGIN),
    };
    fs.write_file(&dir().join(snapshot_file_name(Lsn(42))), &[header.encode(), content].concat());
    let listed = list_snapshots(&fs, &dir()).unwrap();
    assert!(listed.unreadable.is_empty());
    let [info] = &listed.snapshots[..] else { panic!("one snapshot: {:?}", listed.snapshots) };
    assert_eq!(info.header, header);
    verify_snapshot(&fs, info).unwrap();
    assert_eq!(read_snapshot(&fs, info, read_state).unwrap(), entries);
}

#[test]
fn any_damaged_byte_is_detected_before_decoding() {
    let fs = SimFs::new();
    let info = take(&fs, 5, 200);
    let good = fs.read_file(&info.path).unwrap();
    for at in (0..good.len()).step_by(7) {
        let mut bad = good.clone();
        bad[at] ^= 0x40;
        fs.write_file(&info.path, &bad);
        let listed = list_snapshots(&fs, &dir()).unwrap();
        let detected = match listed.snapshots.first() {
            None => true, // the header itself was refused
            Some(info) => verify_snapshot(&fs, info).is_err() && read_snapshot(&fs, info, read_state).is_err(),
        };
        assert!(detected, "a flip at byte {at} went unnoticed");
    }
    fs.write_file(&info.path, &good[..good.len() - 1]);
    let walden::snapshot::SnapshotListing { snapshots: listed, unreadable: bad, .. } =
        list_snapshots(&fs, &dir()).unwrap();
    assert!(listed.is_empty());
    assert!(matches!(bad[0].1, Error::BadSnapshot { .. }), "a truncated snapshot is refused: {}", bad[0].1);
}

#[test]
fn a_crash_at_any_point_of_writing_leaves_a_whole_snapshot_or_none() {
    let probe = SimFs::new();
    take(&probe, 7, 3000);
    let calls = probe.calls();
    for at_call in 1..=calls {
        for crash in [CrashMode::DropUnsynced, CrashMode::KeepUnsynced, CrashMode::Tear { seed: at_call }] {
            let fs = SimFs::new();
            fs.inject(Fault { at_call, kind: FaultKind::Eio, persistent: true, only: None });
            let result = write_snapshot(&fs, &dir(), Lsn(7), 0, ORIGIN, write_state(&state(3000)));
            assert!(result.is_err(), "the fault at call {at_call} must surface");
            let after = fs.crash(crash);
            let walden::snapshot::SnapshotListing { snapshots: listed, unreadable: bad, .. } =
                list_snapshots(&after, &dir()).unwrap();
            assert!(bad.is_empty(), "call {at_call}, {crash:?}: a half-written file under a final name");
            for info in &listed {
                assert_eq!(read_snapshot(&after, info, read_state).unwrap(), state(3000));
            }
        }
    }
    // The leftover temporary file is visible as such, never as a snapshot.
    let fs = SimFs::new();
    fs.inject(Fault { at_call: calls - 1, kind: FaultKind::Eio, persistent: true, only: None });
    assert!(write_snapshot(&fs, &dir(), Lsn(7), 0, ORIGIN, write_state(&state(3000))).is_err());
    fs.clear_fault();
    assert_eq!(temporary_files(&fs, &dir()).unwrap().len(), 1);
    assert!(list_snapshots(&fs, &dir()).unwrap().snapshots.is_empty());
}

#[test]
fn a_full_disk_fails_the_snapshot_cleanly() {
    let fs = SimFs::new();
    take(&fs, 1, 100);
    fs.set_space_limit(Some(
        fs.read_file(&dir().join(walden::snapshot::snapshot_file_name(Lsn(1)))).unwrap().len() as u64 + 500,
    ));
    let err = write_snapshot(&fs, &dir(), Lsn(2), 0, ORIGIN, write_state(&state(20_000))).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(28), "{err}");
    let walden::snapshot::SnapshotListing { snapshots: listed, unreadable: bad, .. } =
        list_snapshots(&fs, &dir()).unwrap();
    assert_eq!(listed.len(), 1, "the older snapshot is untouched");
    assert!(bad.is_empty());
}

#[test]
fn prune_keeps_exactly_the_newest_keep_count() {
    let fs = SimFs::new();
    for lsn in [10, 20, 30, 40, 50] {
        take(&fs, lsn, 10);
    }
    let listed = list_snapshots(&fs, &dir()).unwrap().snapshots;
    let removed = prune_snapshots(&fs, &dir(), &listed, 3).unwrap();
    assert_eq!(removed.len(), 2);
    let listed = list_snapshots(&fs, &dir()).unwrap().snapshots;
    assert_eq!(listed.iter().map(|s| s.header.lsn.0).collect::<Vec<_>>(), vec![30, 40, 50]);
    // Durable: the removals survive power loss.
    let after = fs.crash(CrashMode::DropUnsynced);
    assert_eq!(list_snapshots(&after, &dir()).unwrap().snapshots.len(), 3);
    assert!(Path::new(&removed[0]).file_name().is_some());
    let names = after.list_dir(&dir()).unwrap();
    assert!(names.iter().all(|n| !n.contains("00000000000000000010")));
}
