//! Real process kills. A child process (this test binary, re-executed to
//! run only the test that spawned it, which takes the child role)
//! appends to a log on real files in `Always` mode and prints each LSN as
//! soon as its append is acknowledged; the parent SIGKILLs it at a random
//! moment, recovers the log, and checks that every acknowledged LSN is
//! there with its exact bytes and that the log is gap-free. Then the next
//! child continues the same log (whose oldest segments the parent removes,
//! so that a long run stays fast). `WALDEN_KILL9_CYCLES` sets the
//! number of cycles (default 12).
//!
//! The same with a [`Store`] child whose snapshots (every 40 commits) and
//! retention (two kept, older log segments removed) run on their own
//! thread, so kills land in snapshot writes, pruning and truncation too:
//! the parent checks every acknowledged write is there and the state is
//! exactly the state at the recovered LSN (the store model shared with the
//! store crash explorer and the fuzz targets, `walden::fuzz_targets::model`).

use crate::common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};
use walden::fuzz_targets::model::StoreModel;
use walden::{EngineOptions, FsyncMode, Lsn, SnapshotOptions, Store, StoreOptions, Wal, WalOptions, WriteBatch};

const CHILD_ENV: &str = "WALDEN_KILL9_CHILD_DIR";
const STORE_CHILD_ENV: &str = "WALDEN_KILL9_STORE_CHILD_DIR";

fn options() -> WalOptions {
    // Small segments, so kills also land in roll-overs.
    WalOptions { fsync: FsyncMode::Always, segment_bytes: 64 * 1024, ..Default::default() }
}

/// The child: append forever, reporting every acknowledged LSN.
fn child(dir: &Path) -> ! {
    use std::io::Write;
    let wal = Wal::open(dir, options()).expect("child: open");
    let mut next = wal.last_lsn().map_or(1, |l| l.0 + 1);
    let stdout = std::io::stdout();
    loop {
        let lsn = if next.is_multiple_of(5) {
            let batch = [common::payload(next), common::payload(next + 1)];
            wal.append_batch(&batch).expect("child: append batch").end.0 - 1
        } else {
            wal.append(&common::payload(next)).expect("child: append").0
        };
        let mut out = stdout.lock();
        writeln!(out, "{lsn}").expect("child: report");
        out.flush().expect("child: flush");
        next = lsn + 1;
    }
}

/// The name the test harness knows test `name` of this module by: its path
/// inside the test binary (`reliability_kill9::name`), whatever binary the
/// module is grouped into.
fn test_path(name: &str) -> String {
    let module = module_path!().split_once("::").map_or("", |(_crate, path)| path);
    if module.is_empty() {
        name.to_owned()
    } else {
        format!("{module}::{name}")
    }
}

/// Re-executes this test binary as the child of test `test` (of this
/// module) and of that test only (`--exact`, so none of the binary's other
/// tests run in the child). The test sees `dir` in the environment variable
/// `env`, takes the child role and reports on its stdout.
fn spawn_child(test: &str, env: &str, dir: &Path) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args([&test_path(test), "--exact", "--nocapture", "--test-threads=1"])
        .env(env, dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

/// Keeps the two parents of this module from running at once. A process
/// that spawns a child hands the child a copy of all its open files until
/// the child execs, and a directory lock (flock) belongs to the open file:
/// while one parent spawned, the other parent's store lock, closed a moment
/// before, could still be held by that copy, and its own child would find
/// the directory locked ("locked by another walden instance", seen once on
/// a loaded machine). One at a time, no parent spawns while the other's
/// child opens.
fn one_parent_at_a_time() -> MutexGuard<'static, ()> {
    static PARENTS: Mutex<()> = Mutex::new(());
    PARENTS.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A small deterministic generator for the kill delays.
fn delays(seed: u64) -> impl Iterator<Item = Duration> {
    let mut x = seed | 1;
    std::iter::from_fn(move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        Some(Duration::from_millis(5 + x % 150))
    })
}

/// Reads the LSNs the child prints as it acknowledges them, until `delay`
/// is up and at least one came (so the child is really writing), then
/// SIGKILLs it without warning, and reads the acknowledgements already in
/// the pipe: they were made before the kill. Returns the highest.
fn acknowledge_then_kill(child: &mut Child, delay: Duration, cycle: usize) -> u64 {
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let start = Instant::now();
    let mut acknowledged = None;
    while start.elapsed() < delay || acknowledged.is_none() {
        match lines.next() {
            Some(Ok(line)) => {
                if let Ok(lsn) = line.trim().parse::<u64>() {
                    acknowledged = acknowledged.max(Some(lsn));
                }
            }
            _ => panic!("cycle {cycle}: the child stopped by itself"),
        }
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    for line in lines.map_while(Result::ok) {
        if let Ok(lsn) = line.trim().parse::<u64>() {
            acknowledged = acknowledged.max(Some(lsn));
        }
    }
    acknowledged.unwrap_or(0)
}

#[test]
fn sigkill_never_loses_an_acknowledged_append() {
    if let Ok(dir) = std::env::var(CHILD_ENV) {
        child(Path::new(&dir));
    }
    let _alone = one_parent_at_a_time();
    let cycles: usize = std::env::var("WALDEN_KILL9_CYCLES").ok().and_then(|s| s.parse().ok()).unwrap_or(12);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let mut acknowledged = Lsn(0);
    let mut verified = Lsn(0);
    let mut kept_from = Lsn(1);
    let mut killed_mid_run = 0;
    for (cycle, delay) in delays(0x5eed).take(cycles).enumerate() {
        let mut child = spawn_child("sigkill_never_loses_an_acknowledged_append", CHILD_ENV, &dir);
        acknowledged = acknowledged.max(Lsn(acknowledge_then_kill(&mut child, delay, cycle)));
        killed_mid_run += 1;

        let wal = Wal::open(&dir, options()).unwrap_or_else(|e| panic!("cycle {cycle}: recovery failed: {e}"));
        assert_eq!(wal.first_lsn(), kept_from, "cycle {cycle}: the start of the log moved");
        // Every record's bytes are checked the first time it is recovered,
        // and the whole log again every 500 cycles and at the end.
        let full = cycle % 500 == 499 || cycle + 1 == cycles;
        let from = if full { kept_from } else { Lsn(verified.0 + 1) };
        let mut expected = from;
        for record in wal.read_from(from).unwrap_or_else(|e| panic!("cycle {cycle}: reader: {e}")) {
            let record = record.unwrap_or_else(|e| panic!("cycle {cycle}: read at {expected}: {e}"));
            assert_eq!(record.lsn, expected, "cycle {cycle}: LSNs must be consecutive");
            assert_eq!(
                record.payload,
                common::payload(record.lsn.0),
                "cycle {cycle}: LSN {} has the wrong bytes",
                record.lsn
            );
            expected = expected.next();
        }
        let last = wal.last_lsn().unwrap_or(Lsn(0));
        assert_eq!(Lsn(expected.0 - 1), last, "cycle {cycle}: the reader stopped before the last LSN");
        assert!(last >= acknowledged, "cycle {cycle}: acknowledged LSN {acknowledged} lost (recovered up to {last})");
        assert!(last >= verified, "cycle {cycle}: LSN {verified}, recovered before, is gone (now up to {last})");
        verified = last;
        // Every open scans the whole log, so a long run keeps it short, as
        // snapshots would: segments wholly below the last 20,000 LSNs go.
        if last.0 > 20_000 {
            wal.truncate_before(Lsn(last.0 - 20_000)).unwrap();
            kept_from = wal.first_lsn();
        }
        wal.close().unwrap();
    }
    assert_eq!(killed_mid_run, cycles);
    assert!(acknowledged.0 > cycles as u64, "the children appended ({acknowledged})");
    eprintln!("log: {cycles} SIGKILL cycles, {acknowledged} LSNs acknowledged, {verified} recovered");
}

fn store_options() -> StoreOptions {
    StoreOptions {
        engine: EngineOptions {
            wal: WalOptions { fsync: FsyncMode::Always, segment_bytes: 16 * 1024, ..Default::default() },
            snapshots: SnapshotOptions {
                keep_count: 2,
                every_commits: Some(40),
                every_bytes: None,
                every: None,
                on_close: false,
            },
        },
        writer: "kill9".into(),
    }
}

/// The operation at LSN `i`: a delete now and then, else a put; the
/// records at LSNs 5k and 5k+1 are one batch.
fn store_op(i: u64) -> (Vec<u8>, Option<Vec<u8>>) {
    if i % 7 == 3 {
        (format!("key-{}", i * 3 % 61).into_bytes(), None)
    } else {
        (format!("key-{}", i % 61).into_bytes(), Some(common::payload(i)))
    }
}

/// Notes in `model` the children's writes up to LSN `lsn`: [`store_op`]
/// of each LSN, those at 5k and 5k+1 one batch.
fn note_store_writes(model: &mut StoreModel, lsn: Lsn) {
    for i in model.written().0 + 1..=lsn.0 {
        let (key, value) = store_op(i);
        model.record(&key, value.as_deref(), i.is_multiple_of(5));
    }
}

/// The store child: write forever, reporting every acknowledged LSN.
fn store_child(dir: &Path) -> ! {
    use std::io::Write;
    let store = Store::open(dir, store_options()).expect("child: open");
    let mut next = store.applied_lsn().0 + 1;
    let stdout = std::io::stdout();
    loop {
        let lsn = if next.is_multiple_of(5) {
            let mut batch = WriteBatch::default();
            for i in [next, next + 1] {
                match store_op(i) {
                    (key, Some(value)) => batch.put(&key, &value),
                    (key, None) => batch.delete(&key),
                };
            }
            store.write(&batch).expect("child: write batch")
        } else {
            match store_op(next) {
                (key, Some(value)) => store.put(&key, &value).expect("child: put"),
                (key, None) => store.delete(&key).expect("child: delete"),
            }
        };
        let mut out = stdout.lock();
        writeln!(out, "{}", lsn.0).expect("child: report");
        out.flush().expect("child: flush");
        next = lsn.0 + 1;
    }
}

#[test]
fn sigkill_never_loses_an_acknowledged_store_write_with_snapshots_and_retention_running() {
    if let Ok(dir) = std::env::var(STORE_CHILD_ENV) {
        store_child(Path::new(&dir));
    }
    let _alone = one_parent_at_a_time();
    let cycles: usize = std::env::var("WALDEN_KILL9_CYCLES").ok().and_then(|s| s.parse().ok()).unwrap_or(12);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let test_name = "sigkill_never_loses_an_acknowledged_store_write_with_snapshots_and_retention_running";
    let mut acknowledged = 0u64;
    let mut from_snapshot = 0;
    let mut model = StoreModel::new();
    for (cycle, delay) in delays(0x5702e).take(cycles).enumerate() {
        let mut child = spawn_child(test_name, STORE_CHILD_ENV, &dir);
        // Longer runs than the log child's, so snapshots are due and taken.
        acknowledged = acknowledged.max(acknowledge_then_kill(&mut child, delay * 3, cycle));

        // The parent checks with automatic snapshots off: with them on, its own
        // store could take a snapshot right after open (the log the child
        // left may already be due one) and be seen mid-way, before pruning.
        let mut check_options = store_options();
        check_options.engine.snapshots = SnapshotOptions { every_commits: None, ..check_options.engine.snapshots };
        let store = Store::open(&dir, check_options).unwrap_or_else(|e| panic!("cycle {cycle}: recovery: {e}"));
        // The shared store model checks that every acknowledged write is
        // there, that recovery did not stop inside a batch (at 5k) and that
        // the state, revisions included, is exactly the state at its LSN.
        note_store_writes(&mut model, store.applied_lsn());
        let lsn = model.check(&store, Lsn(acknowledged)).unwrap_or_else(|e| panic!("cycle {cycle}: {e}"));
        // What this recovery found stays: the next child continues from it,
        // and the model frees what it no longer needs.
        model.settle(lsn);
        if store.recovery_report().snapshot_used.is_some() {
            from_snapshot += 1;
        }
        assert!(store.recovery_report().snapshots_skipped.is_empty(), "cycle {cycle}: a kill damaged a snapshot");
        let kept = store.list_snapshots().unwrap().len();
        assert!(kept <= 2, "cycle {cycle}: {kept} snapshots after open, over the keep count of 2");
        store.close().unwrap();
    }
    assert!(acknowledged > cycles as u64, "the children wrote ({acknowledged})");
    assert!(from_snapshot > 0, "no recovery started from a snapshot: the children never took one");
    eprintln!(
        "store: {cycles} SIGKILL cycles, {acknowledged} LSNs acknowledged, {from_snapshot} recoveries from a snapshot"
    );
}
