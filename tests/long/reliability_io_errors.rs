//! SQLite-style I/O-error loops, for the log and for the store.
//!
//! For N = 1, 2, ... the Nth I/O call of a scripted workload fails, until
//! a run completes without reaching call N. Three kinds of fault: one call
//! fails with EIO (transient), every call from the Nth on fails with EIO or
//! ENOSPC (persistent: a dead or full disk, repaired or freed before the
//! next open), and the Nth fsync fails, forgets its data and lets the next
//! fsync report success (the Linux behaviour of "Can Applications Recover
//! from fsync Failures?"). The oracle, at every failure: the error is
//! surfaced as an I/O error with its errno (never a panic, never a hang);
//! a failed append or sync poisons the log, so nothing later is
//! acknowledged; no file under a final name is torn; reopening (in the same
//! boot) recovers every acknowledged write, nothing invented, never half a
//! batch; and after the workload, power loss keeps everything the log made
//! durable.
//!
//! ENOSPC is also checked by phase (segment creation, append, snapshot
//! write, snapshot rename) and with a real space limit that fills up.

use crate::common::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;
use walden::format::SegmentHeader;
use walden::io::{CrashMode, Fault, FaultKind, SimFs, SimOp, Vfs};
use walden::snapshot::{parse_snapshot_file_name, SnapshotHeader};
use walden::{
    EngineOptions, Error, FsyncMode, Lsn, Preallocate, SnapshotOptions, Store, StoreOptions, Wal, WalOptions,
    WriteBatch,
};

/// A run that takes longer than this is a hang.
const WATCHDOG: Duration = Duration::from_secs(60);

/// Runs `f` on its own thread; a run past [`WATCHDOG`] fails as a hang.
fn watchdog<T: Send + 'static>(what: String, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    let handle = std::thread::spawn(move || drop(tx.send(f())));
    match rx.recv_timeout(WATCHDOG) {
        Ok(value) => {
            handle.join().expect("the run finished");
            value
        }
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("{what}: no answer within {WATCHDOG:?} (a hang)"),
        Err(mpsc::RecvTimeoutError::Disconnected) => match handle.join() {
            Err(panic) => std::panic::resume_unwind(panic),
            Ok(()) => unreachable!("the run ended without a result"),
        },
    }
}

/// The I/O error behind `e`: operation, path and errno.
fn io_cause(e: &Error) -> Option<(&'static str, PathBuf, i32)> {
    match e {
        Error::Io { op, path, source } => Some((op, path.clone(), source.raw_os_error()?)),
        Error::Poisoned(inner) => io_cause(inner),
        _ => None,
    }
}

/// The injected fault came back as an I/O error with its errno and a path.
fn assert_surfaced(e: &Error, context: &str) -> (&'static str, PathBuf, i32) {
    let cause = io_cause(e).unwrap_or_else(|| panic!("{context}: the fault came back as `{e}`, not as an I/O error"));
    assert!(matches!(cause.2, 5 | 28), "{context}: errno {} is not the injected one: {e}", cause.2);
    assert!(cause.1.starts_with("/"), "{context}: the error names no file: {e}");
    cause
}

/// No file under a final name is torn: every segment has a valid header
/// and every snapshot its full length and checksum. Read straight from the
/// simulated disk, so an armed fault does not get in the way.
fn assert_no_torn_file_visible(fs: &SimFs, dirs: &[PathBuf], context: &str) {
    for dir in dirs {
        let Ok(names) = fs.list_dir(dir) else { continue };
        for name in names {
            let path = dir.join(&name);
            let bytes = fs.read_file(&path).expect("listed file");
            if walden::wal::parse_segment_file_name(&name).is_some() {
                assert!(SegmentHeader::decode(&bytes).is_ok(), "{context}: segment {} is visible torn", path.display());
            }
            if parse_snapshot_file_name(&name).is_some() {
                let header = SnapshotHeader::decode(&bytes)
                    .unwrap_or_else(|e| panic!("{context}: snapshot {} is visible torn: {e}", path.display()));
                let content = &bytes[header.header_bytes().min(bytes.len())..];
                assert_eq!(content.len() as u64, header.content_bytes, "{context}: {} is short", path.display());
                assert_eq!(crc32fast::hash(content), header.content_crc, "{context}: {} is torn", path.display());
            }
        }
    }
}

/// The faults of one loop: `kind`, persistent or not, on calls of `only`.
#[derive(Clone, Copy, Debug)]
struct Plan {
    kind: FaultKind,
    persistent: bool,
    only: Option<SimOp>,
}

const PLANS: [Plan; 4] = [
    Plan { kind: FaultKind::Eio, persistent: false, only: None },
    Plan { kind: FaultKind::Eio, persistent: true, only: None },
    Plan { kind: FaultKind::Enospc, persistent: true, only: None },
    Plan { kind: FaultKind::SyncLosesData, persistent: false, only: Some(SimOp::Sync) },
];

/// What one loop did.
#[derive(Default, Debug)]
struct Tally {
    runs: u64,
    faults_hit: u64,
    errors_surfaced: u64,
    /// (operation, file kind, errno) of every surfaced error.
    phases: Vec<(&'static str, String, i32)>,
}

fn file_kind(path: &Path) -> String {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    if name.ends_with(".wal.tmp") {
        "spare segment".into()
    } else if name.ends_with(".wal") {
        "segment".into()
    } else if name.ends_with(".zst.tmp") {
        "temporary snapshot".into()
    } else if name.ends_with(".zst") {
        "snapshot".into()
    } else if name.contains("quarantine") {
        "quarantine".into()
    } else {
        "directory".into()
    }
}

/// Runs `run(fs)` with the Nth call failing, for N = 1, 2, ... until a run
/// never reaches call N.
fn fault_loop(plan: Plan, what: &str, run: fn(&SimFs, Plan, &mut Tally)) -> Tally {
    let mut tally = Tally::default();
    for at_call in 1.. {
        assert!(at_call < 100_000, "{what}: the workload never completes without a fault");
        let fs = SimFs::new();
        fs.inject(Fault { at_call, kind: plan.kind, persistent: plan.persistent, only: plan.only });
        let context = format!("{what}, {plan:?}, fault at call {at_call}");
        let (fired, run_tally) = watchdog(context, move || {
            let mut t = Tally::default();
            run(&fs, plan, &mut t);
            (fs.fault_fired(), t)
        });
        tally.runs += 1;
        tally.errors_surfaced += run_tally.errors_surfaced;
        tally.phases.extend(run_tally.phases);
        if !fired {
            break;
        }
        tally.faults_hit += 1;
    }
    tally
}

// ---------------------------------------------------------------- the log

fn log_options(fsync: FsyncMode) -> WalOptions {
    WalOptions { fsync, segment_bytes: 4096, flush_interval: Duration::from_secs(3600), ..Default::default() }
}

/// What the log workload submitted and what the log promised.
#[derive(Default)]
struct LogOracle {
    /// Payload and batch id of every LSN handed out (LSN i+1 at index i).
    submitted: Vec<(Vec<u8>, u32)>,
    acknowledged: Lsn,
    durable: Lsn,
}

impl LogOracle {
    /// `records` are a gap-free run of submitted records with their exact
    /// bytes, ending at a batch boundary at or after `required`.
    fn check(&self, wal: &Wal<SimFs>, required: Lsn, context: &str) -> Lsn {
        let records = read_all(wal);
        for (lsn, payload) in &records {
            let index = lsn.0 as usize - 1;
            assert!(index < self.submitted.len(), "{context}: LSN {lsn} was never submitted");
            assert_eq!(payload, &self.submitted[index].0, "{context}: LSN {lsn} has the wrong bytes");
        }
        let last = wal.last_lsn().unwrap_or(Lsn(wal.first_lsn().0 - 1));
        assert_eq!(records.last().map_or(last, |r| r.0), last, "{context}: the last record is not readable");
        assert!(last >= required, "{context}: LSN {required} was promised and is lost (recovered up to {last})");
        if last.0 > 0 && (last.0 as usize) < self.submitted.len() {
            let (this, next) = (self.submitted[last.0 as usize - 1].1, self.submitted[last.0 as usize].1);
            assert_ne!(this, next, "{context}: a batch came back in part (up to LSN {last})");
        }
        last
    }
}

/// One step of the log workload. `Err((e, poisons))`: the step failed, and
/// whether its failure must have poisoned the log.
fn log_step(wal: &Wal<SimFs>, step: u64, o: &mut LogOracle, batch: &mut u32) -> Result<(), (Error, bool)> {
    *batch += 1;
    let submitted_before = o.submitted.len();
    match step % 6 {
        0 | 1 => {
            o.submitted.push((payload(step), *batch));
            wal.append(&payload(step)).map_err(|e| (e, true))?;
        }
        2 => {
            let payloads: Vec<Vec<u8>> = (0..1 + step % 4).map(|i| payload(step * 10 + i)).collect();
            o.submitted.extend(payloads.iter().map(|p| (p.clone(), *batch)));
            wal.append_batch(&payloads).map_err(|e| (e, true))?;
        }
        3 => {
            let mut tickets = Vec::new();
            for i in 0..3 {
                *batch += 1;
                let p = payload(step * 100 + i);
                match wal.append_pipelined(&p) {
                    Ok(ticket) => tickets.push(ticket),
                    Err(e) => return Err((e, true)),
                }
                o.submitted.push((p, *batch));
            }
            for ticket in tickets {
                ticket.wait().map_err(|e| (e, true))?;
            }
        }
        4 => {
            wal.sync().map_err(|e| (e, true))?;
            o.durable = o.durable.max(Lsn(o.submitted.len() as u64));
        }
        _ => {
            // Removing segments can fail without poisoning the log.
            wal.truncate_before(Lsn(wal.first_lsn().0 + 15)).map_err(|e| (e, false))?;
        }
    }
    if o.submitted.len() > submitted_before {
        o.acknowledged = Lsn(o.submitted.len() as u64);
    }
    if wal.options().fsync == FsyncMode::Always {
        assert!(wal.durable_lsn() >= o.acknowledged, "Always acknowledged an append before it was synced");
    }
    o.durable = o.durable.max(wal.durable_lsn());
    Ok(())
}

/// Opens again in the same boot. With `must_fail` (a persistent fault that
/// has fired) the first attempt must fail cleanly; any failed attempt is
/// followed by the disk being repaired (the fault cleared) and one more,
/// which must succeed.
fn reopen<T>(fs: &SimFs, must_fail: bool, open: impl Fn() -> walden::Result<T>, context: &str, tally: &mut Tally) -> T {
    match open() {
        Ok(_) if must_fail => panic!("{context}: opened on a disk where every call fails"),
        Ok(opened) => return opened,
        Err(e) => {
            let (op, path, errno) = assert_surfaced(&e, &format!("{context}, reopen"));
            tally.errors_surfaced += 1;
            tally.phases.push((op, file_kind(&path), errno));
        }
    }
    fs.clear_fault();
    open().unwrap_or_else(|e| panic!("{context}: reopen on a repaired disk failed: {e}"))
}

fn reopen_log(fs: &SimFs, fsync: FsyncMode, must_fail: bool, context: &str, tally: &mut Tally) -> Wal<SimFs> {
    reopen(fs, must_fail, || Wal::open_with(fs.clone(), sim_dir(), log_options(fsync)), context, tally)
}

fn log_workload(fs: &SimFs, fsync: FsyncMode, plan: Plan, tally: &mut Tally) {
    let context = format!("{fsync:?}, {plan:?}");
    let mut o = LogOracle::default();
    let mut wal = match Wal::open_with(fs.clone(), sim_dir(), log_options(fsync)) {
        Ok(wal) => wal,
        Err(e) => {
            assert_surfaced(&e, &format!("{context}: first open"));
            tally.errors_surfaced += 1;
            fs.clear_fault();
            Wal::open_with(fs.clone(), sim_dir(), log_options(fsync)).expect("open on a repaired disk")
        }
    };
    let mut batch = 0u32;
    let mut step = 0u64;
    while step < 42 {
        let result = log_step(&wal, step, &mut o, &mut batch);
        step += 1;
        let Err((e, poisons)) = result else { continue };
        let context = format!("{context}, step {}", step - 1);
        let (op, path, errno) = assert_surfaced(&e, &context);
        tally.errors_surfaced += 1;
        tally.phases.push((op, file_kind(&path), errno));
        if poisons {
            // Nothing is acknowledged after the failure: the log is poisoned.
            assert!(matches!(wal.append(b"after"), Err(Error::Poisoned(_))), "{context}: append after `{e}`");
            assert!(matches!(wal.sync(), Err(Error::Poisoned(_))), "{context}: sync after `{e}`");
        }
        assert_no_torn_file_visible(fs, &[sim_dir()], &context);
        drop(wal);
        wal = reopen_log(fs, fsync, plan.persistent && fs.fault_fired(), &context, tally);
        // A failed fsync that dropped data loses what it covered, unless an
        // fsync that really wrote made it durable first; anything else the
        // kernel still holds, and recovery makes it durable.
        let required = if plan.kind == FaultKind::SyncLosesData { o.durable } else { o.acknowledged };
        let last = o.check(&wal, required, &format!("{context}, reopened"));
        o.submitted.truncate(last.0 as usize);
        o.acknowledged = last;
        o.durable = last;
        fs.clear_fault();
    }
    wal.close().unwrap_or_else(|e| panic!("{context}: close with no fault armed: {e}"));
    let durable = Lsn(o.submitted.len() as u64);
    for crash in [CrashMode::DropUnsynced, CrashMode::Tear { seed: durable.0 }] {
        let disk = fs.crash(crash);
        let wal = Wal::open_with(disk, sim_dir(), log_options(FsyncMode::Never))
            .unwrap_or_else(|e| panic!("{context}: recovery after power loss ({crash:?}): {e}"));
        o.check(&wal, durable, &format!("{context}, power loss {crash:?} after close"));
    }
}

fn log_loop(fsync: FsyncMode) {
    for plan in PLANS {
        let run: fn(&SimFs, Plan, &mut Tally) = match fsync {
            FsyncMode::Always => |fs, plan, t| log_workload(fs, FsyncMode::Always, plan, t),
            _ => |fs, plan, t| log_workload(fs, FsyncMode::Never, plan, t),
        };
        let tally = fault_loop(plan, &format!("log, {fsync:?}"), run);
        assert!(tally.faults_hit > 5, "{plan:?}: only {} faults hit", tally.faults_hit);
        assert!(tally.errors_surfaced > 0, "{plan:?}: no fault ever reached the workload");
        eprintln!(
            "log {fsync:?} {plan:?}: {} runs, {} faults injected, {} errors surfaced",
            tally.runs, tally.faults_hit, tally.errors_surfaced
        );
    }
}

#[test]
fn the_nth_io_call_fails_in_an_always_log() {
    log_loop(FsyncMode::Always);
}

#[test]
fn the_nth_io_call_fails_in_a_never_log() {
    log_loop(FsyncMode::Never);
}

// -------------------------------------------------------------- the store

fn store_dir() -> PathBuf {
    PathBuf::from("/store")
}

fn store_dirs() -> [PathBuf; 2] {
    [store_dir().join("wal"), store_dir().join("snapshots")]
}

fn store_options(preallocate: Preallocate) -> StoreOptions {
    StoreOptions {
        engine: EngineOptions {
            wal: WalOptions { preallocate, ..log_options(FsyncMode::Always) },
            snapshots: SnapshotOptions { keep_count: 2, ..SnapshotOptions::manual() },
        },
        writer: "io-errors".into(),
    }
}

type Model = BTreeMap<Vec<u8>, Vec<u8>>;

/// Every record the store workload submitted (key, value or delete, whether
/// its batch goes on), and how far writes were acknowledged.
#[derive(Default)]
struct StoreOracle {
    records: Vec<(Vec<u8>, Option<Vec<u8>>, bool)>,
    acknowledged: Lsn,
}

impl StoreOracle {
    fn model_after(&self, lsn: Lsn) -> Model {
        let mut model = Model::new();
        for (key, value, _) in &self.records[..lsn.0 as usize] {
            match value {
                Some(v) => model.insert(key.clone(), v.clone()),
                None => model.remove(key),
            };
        }
        model
    }

    /// The store holds exactly the model's state at its applied LSN, which
    /// covers every acknowledged write and ends no batch early.
    fn check(&self, store: &Store<SimFs>, context: &str) -> Lsn {
        let lsn = store.applied_lsn();
        assert!(lsn >= self.acknowledged, "{context}: acknowledged LSN {} lost (at {lsn})", self.acknowledged);
        assert!(lsn.0 as usize <= self.records.len(), "{context}: LSN {lsn} was never written");
        if lsn.0 > 0 {
            assert!(!self.records[lsn.0 as usize - 1].2, "{context}: recovered into the middle of a batch");
        }
        let state: Model = store.scan_prefix(b"").into_iter().map(|(k, e)| (k.to_vec(), e.value.to_vec())).collect();
        assert_eq!(state, self.model_after(lsn), "{context}: the state is not the state at LSN {lsn}");
        lsn
    }
}

fn key(i: u64) -> Vec<u8> {
    format!("key-{:02}", i % 17).into_bytes()
}

fn value(i: u64) -> Vec<u8> {
    format!("value-{i}-{}", "v".repeat((i * 53 % 400) as usize)).into_bytes()
}

/// What a failed store step was.
enum StoreFailure {
    /// A commit failed: the log must be poisoned.
    Commit(Error),
    /// A snapshot or a close failed; the log may go on.
    Other(Error),
}

fn store_step(store: &Store<SimFs>, step: u64, o: &mut StoreOracle) -> Result<(), StoreFailure> {
    let before = o.records.len();
    match step % 6 {
        0 | 1 => {
            o.records.push((key(step), Some(value(step)), false));
            store.put(&key(step), &value(step)).map_err(StoreFailure::Commit)?;
        }
        2 => {
            o.records.push((key(step * 5), None, false));
            store.delete(&key(step * 5)).map_err(StoreFailure::Commit)?;
        }
        3 => {
            let mut batch = WriteBatch::default();
            for i in 0..3 {
                let k = key(step * 3 + i);
                batch.put(&k, &value(step + i));
                o.records.push((k, Some(value(step + i)), i < 2));
            }
            store.write(&batch).map_err(StoreFailure::Commit)?;
        }
        _ => {
            store.snapshot_now().map_err(StoreFailure::Other)?;
        }
    }
    if o.records.len() > before {
        o.acknowledged = Lsn(o.records.len() as u64);
    }
    Ok(())
}

fn reopen_store(
    fs: &SimFs,
    must_fail: bool,
    preallocate: Preallocate,
    context: &str,
    tally: &mut Tally,
) -> Store<SimFs> {
    reopen(fs, must_fail, || Store::open_with(fs.clone(), store_dir(), store_options(preallocate)), context, tally)
}

fn store_workload(fs: &SimFs, plan: Plan, preallocate: Preallocate, tally: &mut Tally) {
    let mut o = StoreOracle::default();
    let mut store = match Store::open_with(fs.clone(), store_dir(), store_options(preallocate)) {
        Ok(store) => store,
        Err(e) => {
            assert_surfaced(&e, "first open");
            tally.errors_surfaced += 1;
            fs.clear_fault();
            Store::open_with(fs.clone(), store_dir(), store_options(preallocate)).expect("open on a repaired disk")
        }
    };
    for step in 0u64..48 {
        let context = format!("store step {step}");
        let (e, poisons) = match store_step(&store, step, &mut o) {
            Ok(()) if step % 13 == 12 => {
                // A close and reopen.
                let closed = store.close();
                if let Err(e) = &closed {
                    let (op, path, errno) = assert_surfaced(e, &format!("{context}, close"));
                    tally.errors_surfaced += 1;
                    tally.phases.push((op, file_kind(&path), errno));
                    assert_no_torn_file_visible(fs, &store_dirs(), &context);
                }
                let must_fail = closed.is_err() && plan.persistent;
                store = reopen_store(fs, must_fail, preallocate, &context, tally);
                let lsn = o.check(&store, &format!("{context}, reopened after close"));
                o.records.truncate(lsn.0 as usize);
                o.acknowledged = lsn;
                continue;
            }
            Ok(()) => continue,
            Err(StoreFailure::Commit(e)) => (e, true),
            Err(StoreFailure::Other(e)) => (e, false),
        };
        let (op, path, errno) = assert_surfaced(&e, &context);
        tally.errors_surfaced += 1;
        tally.phases.push((op, file_kind(&path), errno));
        if poisons {
            assert!(store.put(b"after", b"the failure").is_err(), "{context}: a put was accepted after `{e}`");
        }
        assert_no_torn_file_visible(fs, &store_dirs(), &context);
        drop(store);
        store = reopen_store(fs, plan.persistent && fs.fault_fired(), preallocate, &context, tally);
        let lsn = o.check(&store, &format!("{context}, reopened after `{e}`"));
        o.records.truncate(lsn.0 as usize);
        o.acknowledged = lsn;
        fs.clear_fault();
    }
    store.close().unwrap_or_else(|e| panic!("close with no fault armed: {e}"));
    o.acknowledged = Lsn(o.records.len() as u64);
    for crash in [CrashMode::DropUnsynced, CrashMode::Tear { seed: o.records.len() as u64 }] {
        let store = Store::open_with(fs.crash(crash), store_dir(), store_options(preallocate))
            .unwrap_or_else(|e| panic!("recovery after power loss ({crash:?}): {e}"));
        o.check(&store, &format!("power loss {crash:?} after close"));
    }
}

fn store_loop(preallocate: Preallocate) -> Vec<(&'static str, String, i32)> {
    let mut phases = Vec::new();
    for plan in PLANS {
        let run: fn(&SimFs, Plan, &mut Tally) = match preallocate {
            Preallocate::ZeroFill => |fs, plan, t| store_workload(fs, plan, Preallocate::ZeroFill, t),
            Preallocate::Off => |fs, plan, t| store_workload(fs, plan, Preallocate::Off, t),
            other => panic!("no store fault loop for {other:?}"),
        };
        let tally = fault_loop(plan, &format!("store, {preallocate:?}"), run);
        assert!(tally.faults_hit > 5, "{plan:?}: only {} faults hit", tally.faults_hit);
        eprintln!(
            "store {preallocate:?} {plan:?}: {} runs, {} faults injected, {} errors surfaced",
            tally.runs, tally.faults_hit, tally.errors_surfaced
        );
        phases.extend(tally.phases);
    }
    phases
}

#[test]
fn the_nth_io_call_fails_in_a_store_with_snapshots() {
    let phases = store_loop(Preallocate::ZeroFill);
    // ENOSPC reached every phase that takes space, each reported with its file.
    let reached = |what: &dyn Fn(&str, &str) -> bool| phases.iter().any(|(o, k, errno)| *errno == 28 && what(o, k));
    assert!(reached(&|o, k| k == "spare segment" && (o == "create" || o == "preallocate")), "segment creation");
    assert!(reached(&|o, k| k == "segment" && o == "write"), "append");
    assert!(reached(&|o, k| k == "temporary snapshot" && o == "write"), "snapshot write");
    assert!(reached(&|o, k| k == "snapshot" && o == "rename"), "snapshot rename");
}

#[test]
fn the_nth_io_call_fails_in_a_store_whose_segments_grow() {
    let phases = store_loop(Preallocate::Off);
    assert!(phases.iter().any(|(o, k, errno)| *o == "write" && k == "segment" && *errno == 28));
}

// -------------------------------------------------------------- full disk

#[test]
fn a_store_on_a_disk_that_fills_up_fails_cleanly_and_resumes_once_space_is_freed() {
    for limit_bytes in [30_000u64, 45_000, 70_000] {
        let fs = SimFs::new();
        fs.set_space_limit(Some(limit_bytes));
        let context = format!("limit {limit_bytes} bytes");
        let mut o = StoreOracle::default();
        let store = Store::open_with(fs.clone(), store_dir(), store_options(Preallocate::ZeroFill)).unwrap();
        let mut failure = None;
        for step in 0u64..10_000 {
            match store_step(&store, step, &mut o) {
                Ok(()) => {}
                Err(StoreFailure::Other(e)) => {
                    assert_eq!(e.raw_os_error(), Some(28), "{context}: {e}");
                }
                Err(StoreFailure::Commit(e)) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        let e = failure.expect("the disk filled up");
        let (_, path, errno) = assert_surfaced(&e, &context);
        assert_eq!(errno, 28, "{context}: ENOSPC is surfaced: {e}");
        assert!(e.to_string().contains(&path.display().to_string()), "{context}: the message names the file: {e}");
        assert!(store.put(b"k", b"v").is_err(), "{context}: the full disk poisons the log");
        assert_no_torn_file_visible(&fs, &store_dirs(), &context);
        drop(store);
        // Reopening on the still-full disk either works or fails cleanly.
        if let Ok(store) = Store::open_with(fs.clone(), store_dir(), store_options(Preallocate::ZeroFill)) {
            o.check(&store, &format!("{context}, reopened while full"));
        }
        // Space freed: the store reopens with every acknowledged write and
        // takes writes and snapshots again, durably.
        fs.set_space_limit(None);
        let store = Store::open_with(fs.clone(), store_dir(), store_options(Preallocate::ZeroFill))
            .unwrap_or_else(|e| panic!("{context}: reopen after freeing space: {e}"));
        let lsn = o.check(&store, &format!("{context}, reopened after freeing space"));
        o.records.truncate(lsn.0 as usize);
        for step in 0..30 {
            store_step(&store, step, &mut o).unwrap_or_else(|_| panic!("{context}: writing resumes"));
        }
        store.close().unwrap();
        let store =
            Store::open_with(fs.crash(CrashMode::DropUnsynced), store_dir(), store_options(Preallocate::ZeroFill))
                .unwrap();
        assert_eq!(o.check(&store, &format!("{context}, power loss after resuming")), o.acknowledged);
    }
}
