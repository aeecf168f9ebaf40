//! Fuzz targets above the log: the snapshot decoder, recovery of a store
//! directory whose files were mutated, and a model-based target that runs
//! arbitrary store operations, faults and crashes against an in-memory
//! model. See `fuzz/README.md` for the input layouts.

use super::model::StoreModel;
use crate::engine::StateMachine;
use crate::io::{CrashMode, Fault, FaultKind, SimFs, SimOp, Vfs};
use crate::snapshot::{
    list_snapshots, read_snapshot, snapshot_file_name, write_snapshot, RecordSeal, SnapshotHeader, SnapshotOrigin,
};
use crate::store::KvState;
use crate::{
    EngineOptions, Error, FsyncMode, Lsn, Preallocate, RecoveryMode, SnapshotOptions, Store, StoreOptions, WalOptions,
    WriteBatch,
};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

/// The directory [`decode_snapshot`] writes its one snapshot into.
pub const FUZZ_SNAPSHOT_DIR: &str = "/fuzz/snapshots";
/// The LSN of that snapshot.
pub const FUZZ_SNAPSHOT_LSN: Lsn = Lsn(7);
/// The directory of the stores [`open_mutated_store`] and [`store_model`] open.
pub const FUZZ_STORE_DIR: &str = "/fuzz/store";

/// The origin [`wrap_snapshot`] gives its header.
pub const FUZZ_SNAPSHOT_ORIGIN: SnapshotOrigin = SnapshotOrigin {
    log_id: 0x0123_4567_89ab_cdef,
    seal: Some(RecordSeal { segment_salt: 0xfedc_ba98_7654_3210, record_crc: 0x1122_3344 }),
};

/// Fuzz target `decode_snapshot`. Input: a control byte, then bytes. The
/// control byte mod 3 says what the bytes are: 0 the whole snapshot file;
/// 1 its zstd content, wrapped in a valid header (length and checksum
/// right); 2 the uncompressed store content (version 1 or 2), compressed
/// and wrapped. Never a panic; a refused file is `BadSnapshot` or
/// `Unsupported`; an accepted one passed its checksum, and its state
/// writes and reads back the same.
pub fn decode_snapshot(data: &[u8]) {
    let (control, rest) = data.split_first().map_or((0, &[][..]), |(c, rest)| (*c, rest));
    let file = match control % 3 {
        0 => rest.to_vec(),
        1 => wrap_snapshot(rest),
        _ => wrap_snapshot(&zstd::bulk::compress(rest, 1).expect("compress")),
    };
    if let Ok(header) = SnapshotHeader::decode(&file) {
        assert_eq!(header.encode()[..], file[..header.header_bytes()], "the header does not round-trip");
    }
    let fs = SimFs::new();
    let dir = Path::new(FUZZ_SNAPSHOT_DIR);
    fs.write_file(&dir.join(snapshot_file_name(FUZZ_SNAPSHOT_LSN)), &file);
    let listing = list_snapshots(&fs, dir).expect("listing a simulated directory");
    for (path, e) in &listing.unreadable {
        assert!(matches!(e, Error::BadSnapshot { .. } | Error::Unsupported { .. }), "{}: {e}", path.display());
    }
    let Some(info) = listing.snapshots.first() else { return };
    match read_snapshot(&fs, info, |r| KvState::read_snapshot(r)) {
        Err(e) => assert!(matches!(e, Error::BadSnapshot { .. }), "refused with {e}"),
        Ok(state) => {
            let content = &file[info.header.header_bytes()..];
            assert_eq!(crc32fast::hash(content), info.header.content_crc, "decoded past a checksum mismatch");
            let again = SimFs::new();
            let frozen = state.freeze();
            let origin = info.header.origin.unwrap_or(FUZZ_SNAPSHOT_ORIGIN);
            let written =
                write_snapshot(&again, dir, FUZZ_SNAPSHOT_LSN, 1, origin, |w| KvState::write_snapshot(&frozen, w))
                    .expect("write the state again");
            assert_eq!(written.header.entries, state.len() as u64);
            let back = read_snapshot(&again, &written, |r| KvState::read_snapshot(r)).expect("read it back");
            assert!(back.iter().eq(state.iter()), "a snapshot written and read back changed the state");
        }
    }
}

/// A snapshot file around `content`, with its length and checksum right.
pub fn wrap_snapshot(content: &[u8]) -> Vec<u8> {
    let header = SnapshotHeader {
        lsn: FUZZ_SNAPSHOT_LSN,
        created_unix_us: 1_700_000_000_000_000,
        entries: 0,
        content_bytes: content.len() as u64,
        content_crc: crc32fast::hash(content),
        origin: Some(FUZZ_SNAPSHOT_ORIGIN),
    };
    let mut file = header.encode().to_vec();
    file.extend_from_slice(content);
    file
}

fn store_options(fsync: FsyncMode, recovery: RecoveryMode) -> StoreOptions {
    StoreOptions {
        engine: EngineOptions {
            wal: WalOptions {
                fsync,
                recovery,
                segment_bytes: 4096,
                preallocate: Preallocate::Off,
                flush_interval: Duration::from_secs(3600),
                ..Default::default()
            },
            snapshots: SnapshotOptions { keep_count: 2, ..SnapshotOptions::manual() },
        },
        writer: "fuzz".into(),
    }
}

/// The store is exactly the model's state at its applied LSN, which is at
/// or after `required`, was written, and ends no batch early (see
/// [`StoreModel::check`]); panics with what is wrong if not.
fn check(model: &StoreModel, store: &Store<SimFs>, required: Lsn) -> Lsn {
    model.check(store, required).unwrap_or_else(|e| panic!("{e}"))
}

/// Files of a simulated directory: path and bytes.
type Files = Vec<(PathBuf, Vec<u8>)>;

/// The store directory [`open_mutated_store`] starts from: puts, deletes
/// and batches, two snapshots, log segments removed by retention.
fn base_store() -> &'static (Files, StoreModel) {
    static BASE: OnceLock<(Files, StoreModel)> = OnceLock::new();
    BASE.get_or_init(|| {
        let fs = SimFs::new();
        let dir = Path::new(FUZZ_STORE_DIR);
        let store = Store::open_with(fs.clone(), dir, store_options(FsyncMode::Always, RecoveryMode::default()))
            .expect("open the base store");
        let mut history = StoreModel::new();
        for i in 0u64..90 {
            let key = format!("k{}", i % 13).into_bytes();
            match i % 9 {
                4 => {
                    store.delete(&key).expect("delete");
                    history.delete(&key);
                }
                7 => {
                    let mut batch = WriteBatch::default();
                    batch.put(&key, b"batch-1").put(b"b", format!("{i}").as_bytes());
                    store.write(&batch).expect("batch");
                    history.record(&key, Some(b"batch-1"), true);
                    history.record(b"b", Some(format!("{i}").as_bytes()), false);
                }
                _ => {
                    let value = format!("value-{i}-{}", "x".repeat((i % 5 * 20) as usize)).into_bytes();
                    store.put(&key, &value).expect("put");
                    history.put(&key, &value);
                }
            }
            if i % 30 == 29 {
                store.snapshot_now().expect("snapshot");
            }
        }
        store.close().expect("close the base store");
        let mut files = Vec::new();
        for sub in ["wal", "snapshots"] {
            let sub = dir.join(sub);
            let mut names = fs.list_dir(&sub).expect("list");
            names.sort();
            for name in names {
                let path = sub.join(name);
                let bytes = fs.read_file(&path).expect("read");
                files.push((path, bytes));
            }
        }
        (files, history)
    })
}

/// The files of the base store, for seeds: (path, bytes).
pub fn base_store_files() -> Vec<(PathBuf, Vec<u8>)> {
    base_store().0.clone()
}

fn recovery_mode(byte: u8) -> RecoveryMode {
    match byte % 3 {
        0 => RecoveryMode::TolerateTornTail,
        1 => RecoveryMode::PointInTime,
        _ => RecoveryMode::AbsoluteConsistency,
    }
}

/// Fuzz target `open_mutated_store`. Input: a recovery-mode byte (mod 3:
/// tolerate torn tail, point in time, absolute consistency), then up to 16
/// mutations of 5 bytes `[file, op, offset lo, offset hi, value]` applied to
/// the files of a store (segments, then snapshots, by name). `op` mod 6:
/// flip bit `value % 8` at the offset, set the byte to `value`, truncate at
/// the offset, zero `value` bytes from it, remove the file, or append
/// `value` bytes of `value`. Opening never panics; a refusal is never an
/// I/O error (the disk has no faults); an open store is exactly the state
/// at its applied LSN, never inside a batch, takes one more write and
/// reopens with it.
pub fn open_mutated_store(data: &[u8]) {
    let (base, history) = base_store();
    let (mode, rest) = data.split_first().map_or((0, &[][..]), |(c, rest)| (*c, rest));
    let mut files: Vec<(PathBuf, Option<Vec<u8>>)> = base.iter().map(|(p, b)| (p.clone(), Some(b.clone()))).collect();
    for m in rest.chunks_exact(5).take(16) {
        let n = files.len();
        let slot = &mut files[m[0] as usize % n].1;
        let Some(bytes) = slot.as_mut() else { continue };
        let offset = u16::from_le_bytes([m[2], m[3]]) as usize;
        let value = m[4];
        match m[1] % 6 {
            0 if !bytes.is_empty() => {
                let at = offset % bytes.len();
                bytes[at] ^= 1 << (value % 8);
            }
            1 if !bytes.is_empty() => {
                let at = offset % bytes.len();
                bytes[at] = value;
            }
            2 => bytes.truncate(offset % (bytes.len() + 1)),
            3 if !bytes.is_empty() => {
                let at = offset % bytes.len();
                let end = (at + value as usize).min(bytes.len());
                bytes[at..end].fill(0);
            }
            4 => *slot = None,
            5 => bytes.extend(std::iter::repeat_n(value, value as usize)),
            _ => {}
        }
    }
    let fs = SimFs::new();
    for (path, bytes) in &files {
        if let Some(bytes) = bytes {
            fs.write_file(path, bytes);
        }
    }
    let options = store_options(FsyncMode::Always, recovery_mode(mode));
    let dir = Path::new(FUZZ_STORE_DIR);
    let store = match Store::open_with(fs.clone(), dir, options.clone()) {
        Ok(store) => store,
        Err(e) => {
            assert!(!matches!(e, Error::Io { .. } | Error::Poisoned(_)), "an I/O error with no fault: {e}");
            return;
        }
    };
    let lsn = check(history, &store, Lsn::ZERO);
    let mut after = history.clone();
    after.truncate(lsn);
    store.put(b"fuzz", b"after recovery").expect("a write after recovery");
    after.put(b"fuzz", b"after recovery");
    store.close().expect("close after recovery");
    let store = Store::open_with(fs, dir, options).unwrap_or_else(|e| panic!("reopen after recovery: {e}"));
    assert_eq!(check(&after, &store, Lsn(lsn.0 + 1)), Lsn(lsn.0 + 1), "the write after recovery is not the last");
}

/// What the model knows of a store under [`store_model`].
struct Model {
    history: StoreModel,
    /// Every write up to here was acknowledged.
    acknowledged: Lsn,
    /// Every write up to here survives power loss.
    durable: Lsn,
    /// A fault that drops fsynced data was armed since the last check.
    lying_fsync: bool,
}

/// Fuzz target `store_model`. Input: a byte whose bit 0 picks the fsync
/// mode (0 `Always`, 1 `Never`), then operations, one byte each (mod 10)
/// plus argument bytes: put, put, put (key byte, length byte), delete (key
/// byte), batch (count byte), snapshot, close and reopen, crash (mode byte:
/// drop, keep or tear unsynced data), fail the nth write (byte), fail the
/// nth fsync and drop its data (byte). After every failure, reopen and
/// crash the store must hold exactly the model's state at its applied LSN,
/// with everything acknowledged (or, after power loss, made durable) there.
pub fn store_model(data: &[u8]) {
    let mut input = data.iter().copied();
    let fsync = if input.next().unwrap_or(0) & 1 == 0 { FsyncMode::Always } else { FsyncMode::Never };
    let options = store_options(fsync, RecoveryMode::TolerateTornTail);
    let dir = Path::new(FUZZ_STORE_DIR);
    let mut fs = SimFs::new();
    let mut store = Some(Store::open_with(fs.clone(), dir, options.clone()).expect("open an empty store"));
    let mut m = Model { history: StoreModel::new(), acknowledged: Lsn::ZERO, durable: Lsn::ZERO, lying_fsync: false };
    let mut counter = 0u64;
    let mut ops = 0;
    while let Some(op) = input.next() {
        ops += 1;
        if ops > 200 {
            break;
        }
        let s = store.as_ref().expect("an open store");
        let before = m.history.written();
        let result: crate::Result<()> = match op % 10 {
            0..=2 => {
                let key = vec![b'k', input.next().unwrap_or(0) % 16];
                counter += 1;
                let mut value = format!("{counter}:").into_bytes();
                value.resize(value.len() + input.next().unwrap_or(0) as usize % 200, b'v');
                m.history.put(&key, &value);
                s.put(&key, &value).map(drop)
            }
            3 => {
                let key = vec![b'k', input.next().unwrap_or(0) % 16];
                m.history.delete(&key);
                s.delete(&key).map(drop)
            }
            4 => {
                let n = 2 + input.next().unwrap_or(0) as usize % 3;
                let mut batch = WriteBatch::default();
                for i in 0..n {
                    counter += 1;
                    let key = vec![b'k', (counter % 16) as u8];
                    let value = format!("batch-{counter}").into_bytes();
                    batch.put(&key, &value);
                    m.history.record(&key, Some(&value), i + 1 < n);
                }
                s.write(&batch).map(drop)
            }
            5 => s.snapshot_now().map(|_| m.durable = m.history.written()),
            6 => {
                let s = store.take().expect("an open store");
                let result = s.close();
                if result.is_ok() {
                    m.durable = m.history.written();
                }
                store = Some(reopen(&fs, dir, &options, &mut m, true));
                result
            }
            7 => {
                let crash = match input.next().unwrap_or(0) % 3 {
                    0 => CrashMode::DropUnsynced,
                    1 => CrashMode::KeepUnsynced,
                    seed => CrashMode::Tear { seed: u64::from(seed) * 7919 + counter },
                };
                let crashed = fs.crash(crash);
                drop(store.take());
                fs = crashed;
                store = Some(reopen(&fs, dir, &options, &mut m, crash == CrashMode::KeepUnsynced));
                Ok(())
            }
            8 => {
                let at_call = 1 + u64::from(input.next().unwrap_or(0) % 8);
                fs.inject(Fault { at_call, kind: FaultKind::Eio, persistent: false, only: Some(SimOp::Write) });
                Ok(())
            }
            _ => {
                let at_call = 1 + u64::from(input.next().unwrap_or(0) % 8);
                fs.inject(Fault {
                    at_call,
                    kind: FaultKind::SyncLosesData,
                    persistent: false,
                    only: Some(SimOp::Sync),
                });
                m.lying_fsync = true;
                Ok(())
            }
        };
        match result {
            Ok(()) => {
                if m.history.written() > before {
                    m.acknowledged = m.history.written();
                    if fsync == FsyncMode::Always {
                        m.durable = m.acknowledged;
                    }
                }
            }
            Err(e) => {
                assert!(matches!(e, Error::Io { .. } | Error::Poisoned(_)), "a fault came back as {e}");
                if let Some(s) = &store {
                    if op % 10 <= 4 {
                        assert!(s.put(b"k", b"after a failure").is_err(), "a write was accepted after {e}");
                    }
                }
                drop(store.take());
                fs.clear_fault();
                store = Some(reopen(&fs, dir, &options, &mut m, true));
            }
        }
    }
    let s = store.take().expect("an open store");
    fs.clear_fault();
    if s.close().is_ok() {
        m.durable = m.history.written();
        m.acknowledged = m.durable;
    }
    reopen(&fs.crash(CrashMode::DropUnsynced), dir, &options, &mut m, false);
}

/// Reopens after a close, a failure or a crash and checks the store against
/// the model. `same_boot`: nothing the kernel accepted was lost, so every
/// acknowledged write must be there, unless a failed fsync dropped it.
fn reopen(fs: &SimFs, dir: &Path, options: &StoreOptions, m: &mut Model, same_boot: bool) -> Store<SimFs> {
    fs.clear_fault();
    let store = Store::open_with(fs.clone(), dir, options.clone()).unwrap_or_else(|e| panic!("recovery failed: {e}"));
    let required = if same_boot && !m.lying_fsync { m.acknowledged.max(m.durable) } else { m.durable };
    let lsn = check(&m.history, &store, required);
    m.history.truncate(lsn);
    m.acknowledged = lsn;
    m.durable = lsn;
    m.lying_fsync = false;
    store
}
