//! The commit path under stalls (issue 24): a writer frozen at a step of
//! its commit, as a preempted thread is, holds up no other writer's commit
//! and no reader. Frozen in its write, the appenders behind it write its
//! record for it; frozen in the middle of applying records to the state (a
//! fold), the others neither wait for it nor lose visibility, since a
//! commit is visible once the log acknowledges it and readers read the
//! acknowledged records themselves.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};
use walden::io::{Fault, FaultKind, SimFs, SimOp};
use walden::{
    Engine, EngineOptions, FsyncMode, Lsn, Recent, Result, SnapshotOptions, StateMachine, Store, StoreOptions,
    WalOptions,
};

fn dir() -> PathBuf {
    PathBuf::from("/data")
}

fn engine_options(fsync: FsyncMode) -> EngineOptions {
    EngineOptions {
        wal: WalOptions { fsync, segment_bytes: 64 << 10, ..Default::default() },
        snapshots: SnapshotOptions::manual(),
    }
}

/// Runs `body` on a thread of its own, failing the test instead of hanging.
fn within<T: Send + 'static>(limit: Duration, body: impl FnOnce() -> T + Send + 'static) -> T {
    let (done, finished) = mpsc::channel();
    std::thread::spawn(move || done.send(body()).ok());
    finished.recv_timeout(limit).expect("the test body did not finish in time: something waited for a frozen thread")
}

fn until(what: &str, condition: impl Fn() -> bool) {
    let started = Instant::now();
    while !condition() {
        assert!(started.elapsed() < Duration::from_secs(30), "{what} never happened");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// A put frozen in its write() (its LSN reserved, its bytes not yet in
/// the file): 300 later puts, from two threads, are acknowledged and
/// visible meanwhile, and so is the frozen put itself, whose record the
/// writers behind it wrote. Its own call returns once its write does.
#[test]
fn a_put_frozen_in_its_write_holds_up_no_other_put_and_no_reader() {
    for fsync in [FsyncMode::Never, FsyncMode::Periodic { interval: Duration::from_secs(3600) }] {
        within(Duration::from_secs(120), move || {
            let fs = SimFs::new();
            let options = StoreOptions { engine: engine_options(fsync), ..Default::default() };
            let store = Arc::new(Store::open_with(fs.clone(), dir(), options).unwrap());
            store.put(b"before", b"0").unwrap();
            fs.hold_next_writes(1);
            let frozen = {
                let store = store.clone();
                std::thread::spawn(move || store.put(b"frozen", b"1"))
            };
            until("the frozen write", || fs.writes_held() == 1);
            let others: Vec<_> = (0..2u32)
                .map(|t| {
                    let store = store.clone();
                    std::thread::spawn(move || {
                        for i in 0..150u32 {
                            let key = format!("t{t}-{i:03}");
                            let lsn = store.put(key.as_bytes(), &i.to_le_bytes()).unwrap();
                            let seen = store.get(key.as_bytes()).expect("a put is visible once it returns");
                            assert_eq!((&*seen.value, seen.revision), (&i.to_le_bytes()[..], 1));
                            assert!(store.applied_lsn() >= lsn);
                        }
                    })
                })
                .collect();
            for other in others {
                other.join().unwrap();
            }
            assert_eq!(fs.writes_held(), 1, "{fsync:?}: the frozen write is still frozen");
            let entry = store.get(b"frozen").expect("its record was written and acknowledged by the puts behind it");
            assert_eq!(&*entry.value, b"1");
            assert_eq!(store.len(), 302, "{fsync:?}");
            assert_eq!(store.scan_prefix(b"t1-").len(), 150);
            assert!(!frozen.is_finished(), "{fsync:?}: the frozen put has not returned");
            fs.release_writes();
            assert_eq!(frozen.join().unwrap().unwrap(), Lsn(2), "{fsync:?}");
            assert_eq!(store.get(b"frozen").map(|e| e.revision), Some(1));
        });
    }
}

/// Set while the counter's apply of `+0` should block (the fold that
/// meets it freezes, holding the folder).
static FREEZE: AtomicBool = AtomicBool::new(false);
static FROZEN: AtomicBool = AtomicBool::new(false);
/// Whether the fold that froze is the fold thread's (else a committer's).
static FROZEN_ON_FOLD_THREAD: AtomicBool = AtomicBool::new(false);

/// A counter that reads its recent records itself, as the store does, and
/// whose apply of `+0` blocks while `FREEZE` is set.
#[derive(Clone, Debug, Default)]
struct Tally(i64);

fn parse(payload: &[u8]) -> Result<i64> {
    std::str::from_utf8(payload)
        .ok()
        .and_then(|t| t.strip_prefix('+'))
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| walden::Error::InvalidArgument("not +N".into()))
}

impl StateMachine for Tally {
    type Frozen = i64;
    const READS_RECENT: bool = true;

    fn empty() -> Self {
        Tally(0)
    }

    fn check(payload: &[u8]) -> Result<()> {
        parse(payload).map(drop)
    }

    fn apply(&mut self, _lsn: Lsn, payload: &[u8]) -> Result<()> {
        let n = parse(payload)?;
        if n == 0 && FREEZE.load(Ordering::SeqCst) {
            FROZEN_ON_FOLD_THREAD.store(std::thread::current().name() == Some("walden-fold"), Ordering::SeqCst);
            FROZEN.store(true, Ordering::SeqCst);
            while FREEZE.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        self.0 += n;
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
        Ok(Tally(i64::from_le_bytes(bytes)))
    }
}

/// What a reader of a tally sees: its base plus every acknowledged record.
fn total(engine: &Engine<Tally, SimFs>) -> (i64, usize) {
    engine.read_recent(|base, recent: &Recent<'_>| {
        (base.0 + recent.iter().map(|(_, p)| parse(p).unwrap()).sum::<i64>(), recent.len())
    })
}

/// A fold frozen in the middle of applying records, holding the folder
/// (the fold thread's, or a committer's that found the fold thread
/// behind): every other commit is acknowledged and visible, and read
/// with no wait, while the records not yet applied pile up behind it.
#[test]
fn a_committer_frozen_mid_apply_holds_up_no_other_commit_and_no_reader() {
    within(Duration::from_secs(120), || {
        for fsync in [FsyncMode::Never, FsyncMode::Always] {
            FREEZE.store(true, Ordering::SeqCst);
            FROZEN.store(false, Ordering::SeqCst);
            let fs = SimFs::new();
            let engine: Arc<Engine<Tally, SimFs>> =
                Arc::new(Engine::open_with(fs.clone(), dir(), engine_options(fsync)).unwrap());
            engine.commit(b"+0").unwrap(); // the record whose apply freezes
            let folding = {
                let engine = engine.clone();
                std::thread::spawn(move || {
                    // Enough commits that a fold (the fold thread's, woken
                    // by them, or one of theirs) starts, and freezes.
                    for _ in 0..1000 {
                        engine.commit(b"+1").unwrap();
                        if FROZEN.load(Ordering::SeqCst) {
                            return;
                        }
                    }
                })
            };
            until("a fold frozen mid-apply", || FROZEN.load(Ordering::SeqCst));
            // The committing thread's last commit may still be on its way
            // (in `Always`, behind an fdatasync) unless it is the frozen one.
            if FROZEN_ON_FOLD_THREAD.load(Ordering::SeqCst) {
                until("the committing thread stops", || folding.is_finished());
            }
            let before = total(&engine).0;
            for i in 1..=500i64 {
                let lsn = engine.commit(b"+2").unwrap();
                assert!(engine.applied_lsn() >= lsn, "{fsync:?}: visible once the commit returns");
                assert_eq!(total(&engine).0, before + 2 * i, "{fsync:?}: every acknowledged commit is read");
            }
            let (seen, unapplied) = total(&engine);
            assert!(unapplied >= 500, "{fsync:?}: the records wait behind the frozen fold ({unapplied})");
            // The fold that froze is the fold thread's, or a committer's.
            FREEZE.store(false, Ordering::SeqCst);
            folding.join().unwrap();
            assert_eq!(engine.read(|t| t.0), seen, "{fsync:?}: once applied, the state is what readers saw");
            assert_eq!(total(&engine), (seen, 0), "{fsync:?}: nothing left to apply after a read folds");
        }
    });
}

/// Batches and journal appends from 4 threads at once, in every mode:
/// each returns once visible (a commit whose waiter saw the log's
/// acknowledgement under its lock finds the acknowledged LSN that readers
/// use advanced too), and nothing is lost or doubled.
#[test]
fn concurrent_batches_and_journal_appends_are_visible_when_they_return() {
    use walden::journal::{NewEntry, Value};
    use walden::{DurableJournal, Journal, JournalOptions, WriteBatch};
    let modes = [FsyncMode::Never, FsyncMode::Periodic { interval: Duration::from_millis(1) }, FsyncMode::Always];
    for fsync in modes {
        within(Duration::from_secs(120), move || {
            let fs = SimFs::new();
            let options = StoreOptions { engine: engine_options(fsync), ..Default::default() };
            let store = Arc::new(Store::open_with(fs.clone(), dir().join("store"), options).unwrap());
            let options = JournalOptions { engine: engine_options(fsync) };
            let journal = Arc::new(DurableJournal::open_with(fs, dir().join("journal"), options).unwrap());
            let threads: Vec<_> = (0..4u32)
                .map(|t| {
                    let (store, journal) = (store.clone(), journal.clone());
                    std::thread::spawn(move || {
                        for i in 0..300u32 {
                            let mut batch = WriteBatch::default();
                            for k in 0..10u32 {
                                batch.put(format!("t{t}-{i:03}-{k}").as_bytes(), &k.to_le_bytes());
                            }
                            store.write(&batch).unwrap();
                            let last = store.get(format!("t{t}-{i:03}-9").as_bytes());
                            assert!(last.is_some(), "{fsync:?}: a batch is visible when its write returns");
                            let address = format!("/t{t}");
                            let sequence = journal.append(NewEntry::set("w", &address, Value::Int(i.into()))).unwrap();
                            assert!(journal.latest_sequence() >= sequence, "{fsync:?}");
                        }
                    })
                })
                .collect();
            for thread in threads {
                thread.join().unwrap();
            }
            assert_eq!(store.len(), 4 * 300 * 10, "{fsync:?}");
            assert_eq!(journal.latest_sequence(), 4 * 300, "{fsync:?}");
        });
    }
}

fn journal_options(fsync: FsyncMode) -> walden::JournalOptions {
    walden::JournalOptions { engine: engine_options(fsync) }
}

/// A journal append frozen in its write() (numbered, its LSN reserved and
/// linked, its bytes not yet in the file): 300 later appends from two
/// threads are acknowledged, numbered after it and visible (to
/// `latest_sequence`, `param` and queries) meanwhile, and so is the
/// frozen entry, whose record the appenders behind it wrote. The journal
/// numbers entries under a lock of its own, held only until the log has
/// the record's place in its chain, never across the write.
#[test]
fn a_journal_append_frozen_in_its_write_holds_up_no_other_append_and_no_reader() {
    use walden::journal::{NewEntry, Query, Value};
    use walden::{DurableJournal, Journal};
    for fsync in [FsyncMode::Never, FsyncMode::Periodic { interval: Duration::from_secs(3600) }] {
        within(Duration::from_secs(120), move || {
            let fs = SimFs::new();
            let journal = Arc::new(DurableJournal::open_with(fs.clone(), dir(), journal_options(fsync)).unwrap());
            assert_eq!(journal.append(NewEntry::set("w", "/before", Value::Int(0))).unwrap(), 1);
            fs.hold_next_writes(1);
            let frozen = {
                let journal = journal.clone();
                std::thread::spawn(move || journal.append(NewEntry::set("w", "/frozen", Value::Int(1))))
            };
            until("the frozen write", || fs.writes_held() == 1);
            let others: Vec<_> = (0..2u32)
                .map(|t| {
                    let journal = journal.clone();
                    std::thread::spawn(move || {
                        let address = format!("/t{t}");
                        for i in 1..=150i64 {
                            let sequence = journal.append(NewEntry::set("w", &address, Value::Int(i))).unwrap();
                            assert!(sequence > 2, "numbered after the frozen entry");
                            assert!(journal.latest_sequence() >= sequence, "visible once it returns");
                            let param = journal.param(&address).expect("a SET is visible once it returns");
                            assert_eq!((param.value, param.revision), (Value::Int(i), i as u64));
                        }
                    })
                })
                .collect();
            for other in others {
                other.join().unwrap();
            }
            assert_eq!(fs.writes_held(), 1, "{fsync:?}: the frozen write is still frozen");
            assert!(!frozen.is_finished(), "{fsync:?}: the frozen append has not returned");
            assert_eq!(journal.latest_sequence(), 302, "{fsync:?}");
            let entry = journal.param("/frozen").expect("written and acknowledged by the appends behind it");
            assert_eq!(entry.value, Value::Int(1));
            let all = journal.query(&Query::all().limit(1000)).unwrap().entries;
            assert_eq!(all.iter().map(|e| e.sequence).collect::<Vec<_>>(), (1..=302).collect::<Vec<_>>());
            fs.release_writes();
            assert_eq!(frozen.join().unwrap().unwrap(), 2, "{fsync:?}");
        });
    }
}

/// No reader sees a journal entry the log has not acknowledged: in
/// `Always`, entries whose fdatasync is held are invisible to
/// `latest_sequence`, `param`, `read` and queries (though numbered, and
/// in the file) until their fdatasync returns, and visible then; in
/// `Never`, an entry whose write failed is never visible.
#[test]
fn a_reader_never_sees_an_unacknowledged_journal_entry() {
    use walden::journal::{NewEntry, Query, Value};
    use walden::{DurableJournal, Journal};
    within(Duration::from_secs(120), || {
        let fs = SimFs::new();
        let journal =
            Arc::new(DurableJournal::open_with(fs.clone(), dir(), journal_options(FsyncMode::Always)).unwrap());
        journal.append(NewEntry::set("w", "/x", Value::Int(1))).unwrap();
        fs.hold_syncs();
        let (sequence, ticket) = journal.append_pipelined(NewEntry::set("w", "/x", Value::Int(2))).unwrap();
        assert_eq!(sequence, 2);
        let blocked = {
            let journal = journal.clone();
            std::thread::spawn(move || journal.append(NewEntry::delete("w", "/x")))
        };
        until("the held fdatasync", || fs.syncs_held() >= 1);
        for _ in 0..50 {
            assert_eq!(journal.latest_sequence(), 1);
            assert_eq!(journal.param("/x").map(|p| (p.value, p.revision)), Some((Value::Int(1), 1)));
            assert_eq!(journal.read(|s| s.latest_sequence()), 1);
            assert_eq!(journal.query(&Query::all()).unwrap().entries.len(), 1);
            std::thread::sleep(Duration::from_millis(1));
        }
        fs.release_syncs();
        assert_eq!(ticket.wait().unwrap(), Lsn(2));
        assert_eq!(blocked.join().unwrap().unwrap(), 3);
        assert_eq!(journal.latest_sequence(), 3);
        assert_eq!(journal.param("/x"), None, "the DELETE, once acknowledged");
        let revisions: Vec<_> = journal.query(&Query::all()).unwrap().entries.iter().map(|e| e.revision).collect();
        assert_eq!(revisions, [Some(1), Some(2), None]);

        // In `Never` a write that fails: its entry was numbered and linked
        // into the log's chain, and is never acknowledged, so never seen.
        let fs = SimFs::new();
        let journal = DurableJournal::open_with(fs.clone(), dir(), journal_options(FsyncMode::Never)).unwrap();
        journal.append(NewEntry::set("w", "/x", Value::Int(1))).unwrap();
        fs.inject(Fault { at_call: 1, kind: FaultKind::Eio, persistent: true, only: Some(SimOp::Write) });
        assert!(journal.append(NewEntry::set("w", "/x", Value::Int(2))).is_err());
        assert!(journal.append(NewEntry::set("w", "/x", Value::Int(3))).is_err(), "the log is poisoned");
        assert_eq!(journal.latest_sequence(), 1);
        assert_eq!(journal.param("/x").map(|p| (p.value, p.revision)), Some((Value::Int(1), 1)));
        assert_eq!(journal.read(|s| s.latest_sequence()), 1);
        assert_eq!(journal.query(&Query::all()).unwrap().entries.len(), 1);
    });
}

/// Appenders on four threads SET and DELETE addresses they share, more
/// addresses than the sequencer keeps revisions for before it prunes:
/// every address's revisions run 1, 2, 3, ... in sequence order (a DELETE
/// starting it over), and the state, live and reopened, agrees with the
/// entries.
#[test]
fn concurrent_journal_appends_number_revisions_in_sequence_order() {
    use std::collections::HashMap;
    use walden::journal::{JournalOp, NewEntry, Query, Value};
    use walden::{DurableJournal, Journal};
    within(Duration::from_secs(120), || {
        let fs = SimFs::new();
        let journal =
            Arc::new(DurableJournal::open_with(fs.clone(), dir(), journal_options(FsyncMode::Never)).unwrap());
        let threads: Vec<_> = (0..4u64)
            .map(|t| {
                let journal = journal.clone();
                std::thread::spawn(move || {
                    for i in 0..1500u64 {
                        let address = format!("/a{}", (i * 7 + t * 3) % 1500);
                        let entry = match i % 13 {
                            0 => NewEntry::delete("w", &address),
                            _ => NewEntry::set("w", &address, Value::Int(i as i64)),
                        };
                        journal.append(entry).unwrap();
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        let entries = journal.query(&Query::all().limit(10_000)).unwrap().entries;
        assert_eq!(entries.len(), 6000);
        let mut revisions: HashMap<String, u64> = HashMap::new();
        for entry in &entries {
            match entry.op {
                JournalOp::Set => {
                    let revision = revisions.entry(entry.address.clone()).or_default();
                    *revision += 1;
                    assert_eq!(entry.revision, Some(*revision), "sequence {}", entry.sequence);
                }
                JournalOp::Delete => drop(revisions.remove(&entry.address)),
                _ => {}
            }
        }
        let check = |journal: &DurableJournal<SimFs>| {
            for a in 0..1500 {
                let address = format!("/a{a}");
                assert_eq!(journal.param(&address).map(|p| p.revision), revisions.get(&address).copied());
            }
        };
        check(&journal);
        Arc::into_inner(journal).unwrap().close().unwrap();
        let journal = DurableJournal::open_with(fs, dir(), journal_options(FsyncMode::Never)).unwrap();
        check(&journal);
        assert_eq!(journal.append(NewEntry::set("w", "/a0", Value::Null)).unwrap(), 6001);
    });
}
