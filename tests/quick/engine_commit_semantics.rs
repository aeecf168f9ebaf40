//! What a commit promises an application (issue 13): a reader sees only
//! acknowledged commits and never one that returned an error; a record
//! the state machine would reject never reaches the log; a commit can be
//! awaited from async code without blocking a runtime thread.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};
use walden::io::{CrashMode, Fault, FaultKind, SimFs, SimOp, Vfs};
use walden::journal::{NewEntry, Query, Value};
use walden::{
    DurableJournal, Engine, EngineOptions, Error, FsyncMode, Journal, JournalOptions, Lsn, Result, SnapshotOptions,
    StateMachine, Store, StoreOptions, Wal, WalOptions,
};

/// A counter that accepts `+N` records and refuses anything else.
#[derive(Clone, Debug, Default)]
struct Counter(i64);

fn parse_increment(payload: &[u8]) -> Result<i64> {
    std::str::from_utf8(payload)
        .ok()
        .and_then(|text| text.strip_prefix('+'))
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| Error::InvalidArgument(format!("not +N: {:?}", String::from_utf8_lossy(payload))))
}

impl StateMachine for Counter {
    type Frozen = i64;

    fn empty() -> Self {
        Counter(0)
    }

    fn check(payload: &[u8]) -> Result<()> {
        parse_increment(payload).map(drop)
    }

    fn apply(&mut self, _lsn: Lsn, payload: &[u8]) -> Result<()> {
        self.0 += parse_increment(payload)?;
        Ok(())
    }

    fn freeze(&self) -> i64 {
        self.0
    }

    fn write_snapshot(frozen: &i64, out: &mut dyn Write) -> std::io::Result<u64> {
        out.write_all(&frozen.to_le_bytes())?;
        Ok(1)
    }

    fn read_snapshot(input: &mut dyn Read) -> std::io::Result<Self> {
        let mut bytes = [0; 8];
        input.read_exact(&mut bytes)?;
        Ok(Counter(i64::from_le_bytes(bytes)))
    }
}

fn dir() -> PathBuf {
    PathBuf::from("/data")
}

fn engine_options(fsync: FsyncMode) -> EngineOptions {
    EngineOptions {
        wal: WalOptions { fsync, segment_bytes: 4096, ..Default::default() },
        snapshots: SnapshotOptions::manual(),
    }
}

fn store_options(fsync: FsyncMode) -> StoreOptions {
    StoreOptions { engine: engine_options(fsync), ..Default::default() }
}

/// Every file under `dir` (the engine's layout: the directory, wal/ and
/// snapshots/) with its bytes.
fn files(fs: &SimFs, dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    for d in [dir.to_owned(), dir.join("wal"), dir.join("snapshots")] {
        for name in fs.list_dir(&d).unwrap_or_default() {
            let path = d.join(name);
            out.insert(path.clone(), fs.read_file(&path).expect("a listed file reads"));
        }
    }
    out
}

/// Runs `body` on a thread of its own, failing the test instead of hanging.
fn within<T: Send + 'static>(limit: Duration, body: impl FnOnce() -> T + Send + 'static) -> T {
    let (done, finished) = mpsc::channel();
    std::thread::spawn(move || done.send(body()).ok());
    finished.recv_timeout(limit).expect("the test body did not finish in time: something blocked")
}

/// Waits (briefly sleeping) until `fs` has a sync held at its gate.
fn until_a_sync_is_held(fs: &SimFs) {
    let started = Instant::now();
    while fs.syncs_held() == 0 {
        assert!(started.elapsed() < Duration::from_secs(30), "no fdatasync was started");
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn a_rejected_record_never_reaches_the_log_and_later_commits_go_on() {
    let fs = SimFs::new();
    let engine: Engine<Counter, SimFs> =
        Engine::open_with(fs.clone(), dir(), engine_options(FsyncMode::Always)).unwrap();
    engine.commit(b"+1").unwrap();
    engine.commit(b"+2").unwrap();
    let before = files(&fs, &dir());
    let refused = engine.commit(b"garbage").unwrap_err();
    assert!(matches!(&refused, Error::InvalidArgument(m) if m.contains("not +N")), "{refused:?}");
    let refused_batch = engine.commit_batch(&[b"+10".as_slice(), b"nope"]).unwrap_err();
    assert!(matches!(refused_batch, Error::InvalidArgument(_)), "a batch with one bad record is refused whole");
    assert_eq!(files(&fs, &dir()), before, "the refused records changed no byte of the directory");
    assert_eq!(engine.read(|c| c.0), 3, "the state is untouched");
    assert_eq!(engine.applied_lsn(), Lsn(2));
    assert_eq!(engine.commit(b"+4").unwrap(), Lsn(3), "the next commit takes the next LSN");
    assert_eq!(engine.read(|c| c.0), 7);
    engine.close().unwrap();

    let engine: Engine<Counter, SimFs> = Engine::open_with(fs, dir(), engine_options(FsyncMode::Always)).unwrap();
    assert_eq!(engine.read(|c| c.0), 7, "the directory opens, with every accepted commit");
    assert_eq!(engine.recovery_report().records_replayed, 3);
}

#[test]
fn replaying_a_record_the_state_machine_refuses_names_its_lsn_and_why() {
    let fs = SimFs::new();
    let engine: Engine<Counter, SimFs> =
        Engine::open_with(fs.clone(), dir(), engine_options(FsyncMode::Always)).unwrap();
    engine.commit(b"+1").unwrap();
    engine.close().unwrap();
    // Another program appends to the same log what the counter refuses.
    let wal = Wal::open_with(fs.clone(), dir().join("wal"), engine_options(FsyncMode::Always).wal).unwrap();
    wal.append(b"+2").unwrap();
    wal.append(b"set x=1").unwrap();
    wal.append(b"+3").unwrap();
    wal.close().unwrap();
    let before = files(&fs, &dir());
    let error = Engine::<Counter, SimFs>::open_with(fs.clone(), dir(), engine_options(FsyncMode::Always))
        .err()
        .expect("the open fails");
    match &error {
        Error::Apply { lsn, reason } => {
            assert_eq!(*lsn, Lsn(3), "the refused record is named");
            assert!(reason.contains("not +N"), "{reason}");
        }
        other => panic!("expected Error::Apply, got {other:?}"),
    }
    assert!(error.to_string().contains("LSN 3"), "{error}");
    assert_eq!(files(&fs, &dir()), before, "a failed open changes no byte of the log");
}

/// With the fdatasync held, a store's put is in the log (written) but not
/// acknowledged: no reader sees it, not get, range, len, nor a view; once
/// the sync goes through and the commit returns, every reader does.
#[test]
fn readers_see_a_put_only_once_it_is_acknowledged() {
    within(Duration::from_secs(60), || {
        let fs = SimFs::new();
        let store = Arc::new(Store::open_with(fs.clone(), dir(), store_options(FsyncMode::Always)).unwrap());
        store.put(b"before", b"0").unwrap();
        fs.hold_syncs();
        let writer = {
            let store = store.clone();
            std::thread::spawn(move || store.put(b"held", b"1"))
        };
        until_a_sync_is_held(&fs);
        assert_eq!(store.get(b"held"), None, "a put whose fdatasync has not returned is invisible");
        assert_eq!(store.len(), 1);
        assert_eq!(store.applied_lsn(), Lsn(1));
        assert!(store.scan_prefix(b"").iter().all(|(k, _)| &**k != b"held"));
        assert!(store.view_at(Lsn(2)).is_err(), "no view past what readers see");
        fs.release_syncs();
        let lsn = writer.join().unwrap().unwrap();
        assert_eq!(lsn, Lsn(2));
        assert_eq!(store.get(b"held").map(|e| e.value.to_vec()), Some(b"1".to_vec()), "visible once acknowledged");
        assert_eq!(store.view_at(Lsn(2)).unwrap().get(b"held").map(|e| e.revision), Some(1));
    });
}

/// A put whose fdatasync fails returns an error and is never visible, and
/// nothing after it is; a reader keeps the acknowledged state.
#[test]
fn a_put_whose_fsync_fails_is_never_visible() {
    within(Duration::from_secs(60), || {
        let fs = SimFs::new();
        let store = Arc::new(Store::open_with(fs.clone(), dir(), store_options(FsyncMode::Always)).unwrap());
        store.put(b"kept", b"0").unwrap();
        fs.hold_syncs();
        fs.inject(Fault { at_call: 1, kind: FaultKind::SyncLosesData, persistent: false, only: Some(SimOp::Sync) });
        let writer = {
            let store = store.clone();
            std::thread::spawn(move || store.put(b"lost", b"1"))
        };
        until_a_sync_is_held(&fs);
        fs.release_syncs();
        let outcome = writer.join().unwrap();
        assert!(matches!(outcome, Err(Error::Poisoned(_))), "{outcome:?}");
        assert_eq!(store.get(b"lost"), None, "a commit that returned an error is never visible");
        assert_eq!(store.get(b"kept").map(|e| e.revision), Some(1));
        assert!(matches!(store.put(b"after", b"2"), Err(Error::Poisoned(_))));
        assert_eq!(store.get(b"after"), None);
        assert_eq!(store.len(), 1);
    });
}

/// Writers and readers race while writes or fdatasyncs fail. Whatever a
/// reader saw was acknowledged (never a commit that returned an error),
/// and is there after a crash: power loss in `Always`, a process crash in
/// `Periodic` and `Never`.
#[test]
fn concurrent_readers_never_see_unacknowledged_or_failed_commits() {
    let faults = [
        (SimOp::Sync, FaultKind::Eio),
        (SimOp::Sync, FaultKind::SyncLosesData),
        (SimOp::Write, FaultKind::Eio),
        (SimOp::Write, FaultKind::Enospc),
    ];
    let modes = [FsyncMode::Always, FsyncMode::Periodic { interval: Duration::from_millis(1) }, FsyncMode::Never];
    for fsync in modes {
        for (op, kind) in faults {
            if fsync != FsyncMode::Always && op == SimOp::Sync && kind == FaultKind::Eio {
                continue; // a failed timer fsync: covered by the SyncLosesData case
            }
            // Outside `Always`, syncs are few (the timer's, roll-overs'): fail an early one.
            let at_calls: &[u64] = if op == SimOp::Sync && fsync != FsyncMode::Always { &[1, 2] } else { &[3, 17, 60] };
            for &at_call in at_calls {
                race_with_a_fault(fsync, op, kind, at_call);
            }
        }
    }
}

fn race_with_a_fault(fsync: FsyncMode, op: SimOp, kind: FaultKind, at_call: u64) {
    let context = format!("{fsync:?}, {kind:?} at {op:?} call {at_call}");
    let fs = SimFs::new();
    let store = Arc::new(Store::open_with(fs.clone(), dir(), store_options(fsync)).unwrap());
    fs.inject(Fault { at_call, kind, persistent: false, only: Some(op) });
    let acknowledged = Arc::new(Mutex::new(BTreeSet::new()));
    let failed = Arc::new(Mutex::new(BTreeSet::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let (store, acknowledged, failed) = (store.clone(), acknowledged.clone(), failed.clone());
            std::thread::spawn(move || {
                for i in 0..150 {
                    let key = format!("w{w}-{i:03}");
                    match store.put(key.as_bytes(), key.as_bytes()) {
                        Ok(_) => acknowledged.lock().unwrap().insert(key),
                        Err(_) => failed.lock().unwrap().insert(key),
                    };
                }
            })
        })
        .collect();
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let (store, stop) = (store.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut seen = BTreeSet::new();
                while !stop.load(Ordering::Relaxed) {
                    for (key, entry) in store.scan_prefix(b"w") {
                        assert_eq!(&*key, &*entry.value, "a key holds its own name");
                        seen.insert(String::from_utf8(key.to_vec()).unwrap());
                    }
                }
                seen
            })
        })
        .collect();
    writers.into_iter().for_each(|w| w.join().unwrap());
    // A timer's fsync may fail after the last put returned: the log is
    // poisoned all the same, and the next put says so.
    std::thread::sleep(Duration::from_millis(5));
    let last = store.put(b"w-last", b"w-last");
    assert!(last.is_err(), "{context}: a put after the failure fails");
    failed.lock().unwrap().insert("w-last".to_owned());
    stop.store(true, Ordering::Relaxed);
    let seen: BTreeSet<String> = readers.into_iter().flat_map(|r| r.join().unwrap()).collect();
    let (acknowledged, failed) = (acknowledged.lock().unwrap().clone(), failed.lock().unwrap().clone());
    assert!(fs.fault_fired(), "{context}: the fault fired");
    let seen_failed: Vec<_> = seen.intersection(&failed).collect();
    assert!(seen_failed.is_empty(), "{context}: readers saw failed commits {seen_failed:?}");
    // What the live store shows at the end is exactly what was acknowledged.
    let live: BTreeSet<String> =
        store.scan_prefix(b"w").into_iter().map(|(k, _)| String::from_utf8(k.to_vec()).unwrap()).collect();
    assert_eq!(live, acknowledged, "{context}: the live state is the acknowledged commits");
    drop(store);

    let crash = if fsync == FsyncMode::Always { CrashMode::DropUnsynced } else { CrashMode::KeepUnsynced };
    let fs = fs.crash(crash);
    let store = Store::open_with(fs, dir(), store_options(fsync)).unwrap();
    let recovered: BTreeSet<String> =
        store.scan_prefix(b"w").into_iter().map(|(k, _)| String::from_utf8(k.to_vec()).unwrap()).collect();
    let lost_seen: Vec<_> = seen.difference(&recovered).collect();
    assert!(lost_seen.is_empty(), "{context}: values readers saw are gone after the crash: {lost_seen:?}");
    let lost: Vec<_> = acknowledged.difference(&recovered).collect();
    assert!(lost.is_empty(), "{context}: acknowledged commits lost: {lost:?}");
}

/// A journal query does not return an entry whose fdatasync is held, and
/// sequences stay gap-free for entries appended while earlier ones wait.
#[test]
fn journal_queries_see_only_acknowledged_entries_and_sequences_stay_gap_free() {
    within(Duration::from_secs(60), || {
        let fs = SimFs::new();
        let options = JournalOptions { engine: engine_options(FsyncMode::Always) };
        let journal = Arc::new(DurableJournal::open_with(fs.clone(), dir(), options).unwrap());
        journal.append(NewEntry::set("t", "/a", Value::Int(1))).unwrap();
        fs.hold_syncs();
        let (second, ticket_2) = journal.append_pipelined(NewEntry::set("t", "/a", Value::Int(2))).unwrap();
        let (third, ticket_3) = journal.append_pipelined(NewEntry::set("t", "/a", Value::Int(3))).unwrap();
        assert_eq!((second, third), (2, 3), "numbered after the pending entries");
        let waiter = std::thread::spawn(move || (ticket_2.wait(), ticket_3.wait()));
        until_a_sync_is_held(&fs);
        let page = journal.query(&Query::all()).unwrap();
        assert_eq!(page.entries.len(), 1, "only the acknowledged entry: {:?}", page.entries);
        assert_eq!(journal.latest_sequence(), 1);
        assert_eq!(journal.param("/a").map(|p| p.revision), Some(1));
        fs.release_syncs();
        let (a, b) = waiter.join().unwrap();
        a.unwrap();
        b.unwrap();
        let page = journal.query(&Query::all()).unwrap();
        let sequences: Vec<u64> = page.entries.iter().map(|e| e.sequence).collect();
        assert_eq!(sequences, vec![1, 2, 3]);
        let revisions: Vec<Option<u64>> = page.entries.iter().map(|e| e.revision).collect();
        assert_eq!(revisions, vec![Some(1), Some(2), Some(3)], "revisions count the pending SETs");
    });
}

/// Tasks on tokio runtimes of one and two workers await store tickets;
/// with syncs held, a one-worker runtime still runs other tasks.
#[test]
fn store_tickets_are_awaited_without_blocking_the_runtime() {
    within(Duration::from_secs(120), || {
        let fs = SimFs::new();
        let store = Arc::new(Store::open_with(fs.clone(), dir(), store_options(FsyncMode::Always)).unwrap());
        let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
        fs.hold_syncs();
        let ticket = store.put_pipelined(b"async", b"1").unwrap();
        runtime.block_on(async {
            let waiting = tokio::spawn(async move { ticket.await });
            let started = Instant::now();
            while fs.syncs_held() == 0 {
                assert!(started.elapsed() < Duration::from_secs(30));
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            assert!(!waiting.is_finished());
            assert_eq!(store.get(b"async"), None);
            fs.release_syncs();
            waiting.await.unwrap().unwrap();
        });
        assert_eq!(store.get(b"async").map(|e| e.value.to_vec()), Some(b"1".to_vec()));

        for workers in [1, 2] {
            let runtime =
                tokio::runtime::Builder::new_multi_thread().worker_threads(workers).enable_time().build().unwrap();
            let store = store.clone();
            runtime.block_on(async move {
                let tasks: Vec<_> = (0..32)
                    .map(|t| {
                        let store = store.clone();
                        tokio::spawn(async move {
                            for i in 0..10 {
                                let key = format!("task{t}-{i}-{workers}");
                                let lsn = store.put_pipelined(key.as_bytes(), b"v").unwrap().await.unwrap();
                                assert!(store.applied_lsn() >= lsn);
                                assert!(store.get(key.as_bytes()).is_some(), "a task reads its own write");
                            }
                        })
                    })
                    .collect();
                for task in tasks {
                    task.await.unwrap();
                }
            });
        }
        assert_eq!(store.len(), 1 + 2 * 320);
    });
}
