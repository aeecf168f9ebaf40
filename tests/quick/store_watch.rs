//! `Store::watch`: the puts and deletes of selected keys from an LSN on,
//! one batch at a time, exactly the acknowledged sequence with exact
//! revisions; history or the compacted error across snapshots and log
//! truncation, never a gap; nothing a failed fdatasync or power loss takes
//! away; bounded memory.

use crate::common::small;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use walden::io::{CrashMode, Fault, FaultKind, SimFs, SimOp};
use walden::store::{ChangeBatch, ChangeKind, WatchFrom, WatchKeys, REANCHOR_EVERY_LSNS};
use walden::{EngineOptions, Error, FsyncMode, Lsn, SnapshotOptions, Store, StoreOptions, WriteBatch};

const MODES: [FsyncMode; 3] =
    [FsyncMode::Always, FsyncMode::Periodic { interval: Duration::from_millis(2) }, FsyncMode::Never];

fn dir() -> PathBuf {
    PathBuf::from("/store")
}

fn options(fsync: FsyncMode) -> StoreOptions {
    StoreOptions {
        engine: EngineOptions {
            wal: small(fsync),
            snapshots: SnapshotOptions { keep_count: 1, ..SnapshotOptions::manual() },
        },
        ..Default::default()
    }
}

fn within<T: Send + 'static>(limit: Duration, body: impl FnOnce() -> T + Send + 'static) -> T {
    let (done, finished) = mpsc::channel();
    std::thread::spawn(move || done.send(body()).ok());
    finished.recv_timeout(limit).expect("the test body did not finish in time: something blocked")
}

/// One acknowledged operation: its LSN, key, value (None: a delete),
/// writer, and the LSN of its batch's last record.
#[derive(Clone, Debug)]
struct Op {
    lsn: Lsn,
    key: Vec<u8>,
    value: Option<Vec<u8>>,
    writer: String,
    batch_end: Lsn,
}

/// What a watch must deliver, as (batch LSN, [(LSN, key, Some((value,
/// revision, writer)) or None)]): the model's revisions, batches with a
/// selected change from `from` on.
type SeenChange = (Lsn, Vec<u8>, Option<(Vec<u8>, u64, String)>);
type Seen = Vec<(Lsn, Vec<SeenChange>)>;

fn expected(ops: &BTreeMap<Lsn, Op>, keys: &WatchKeys, from: Lsn) -> Seen {
    let mut revisions: BTreeMap<Vec<u8>, u64> = BTreeMap::new();
    let mut out: Seen = Vec::new();
    let mut open: Option<Lsn> = None;
    for op in ops.values() {
        let revision = match &op.value {
            Some(_) => {
                let r = revisions.get(&op.key).copied().unwrap_or(0) + 1;
                revisions.insert(op.key.clone(), r);
                r
            }
            None => {
                revisions.remove(&op.key);
                0
            }
        };
        if op.lsn < from || !keys.matches(&op.key) {
            continue;
        }
        let change = (op.lsn, op.key.clone(), op.value.clone().map(|v| (v, revision, op.writer.clone())));
        if open != Some(op.batch_end) {
            out.push((op.batch_end, Vec::new()));
            open = Some(op.batch_end);
        }
        out.last_mut().unwrap().1.push(change);
    }
    out
}

fn seen_of(batch: &ChangeBatch) -> (Lsn, Vec<SeenChange>) {
    let changes = batch
        .changes
        .iter()
        .map(|c| {
            let entry = match &c.kind {
                ChangeKind::Put(e) => {
                    assert!(e.timestamp_us > 0);
                    Some((e.value.to_vec(), e.revision, e.writer.to_string()))
                }
                ChangeKind::Delete { timestamp_us, .. } => {
                    assert!(*timestamp_us > 0);
                    None
                }
                _ => unreachable!(),
            };
            (c.lsn, c.key.to_vec(), entry)
        })
        .collect();
    (batch.lsn, changes)
}

/// `writers` threads put, delete and write batches of 3 on a few keys
/// (so revisions climb and restart); returns every acknowledged operation.
fn write_concurrently<V: walden::io::Vfs>(store: &Store<V>, writers: u64, rounds: u64) -> BTreeMap<Lsn, Op> {
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..writers)
            .map(|w| {
                scope.spawn(move || {
                    let mut got = Vec::new();
                    for i in 0..rounds {
                        let key = |j: u64| {
                            let n = (w * 7 + i * 3 + j) % 13;
                            if n < 10 { format!("k/{n}") } else { format!("other/{n}") }.into_bytes()
                        };
                        let value = format!("{w}-{i}").into_bytes();
                        let writer = format!("w{w}");
                        if i % 4 == 3 {
                            let mut batch = WriteBatch::default();
                            batch.put(&key(0), &value).put(&key(1), &value).delete(&key(2));
                            let end = store.write(&batch).unwrap();
                            for (j, value) in [Some(value.clone()), Some(value.clone()), None].into_iter().enumerate() {
                                let lsn = Lsn(end.0 - 2 + j as u64);
                                let op = Op { lsn, key: key(j as u64), value, writer: "walden".into(), batch_end: end };
                                got.push(op);
                            }
                        } else if i % 5 == 1 {
                            let lsn = store.delete(&key(0)).unwrap();
                            got.push(Op { lsn, key: key(0), value: None, writer: "walden".into(), batch_end: lsn });
                        } else {
                            let lsn = store.put_as(&writer, &key(0), &value).unwrap();
                            got.push(Op { lsn, key: key(0), value: Some(value), writer, batch_end: lsn });
                        }
                    }
                    got
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().unwrap()).map(|op| (op.lsn, op)).collect()
    })
}

/// Reads a watch until it has read past `last` (known once the writers
/// are done), within 30 s.
fn watch_until(mut watch: walden::store::Watch<'_, impl walden::io::Vfs>, last: &AtomicU64) -> Seen {
    let mut seen = Vec::new();
    let started = Instant::now();
    loop {
        let end = last.load(Ordering::Acquire);
        if end > 0 && watch.next_lsn() > Lsn(end) {
            return seen;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "the watch did not reach the end");
        if let Some(batch) = watch.next_timeout(Duration::from_millis(20)) {
            seen.push(seen_of(&batch.unwrap()));
        }
    }
}

#[test]
fn watches_from_anywhere_see_exactly_the_acknowledged_changes_in_every_mode() {
    for fsync in MODES {
        within(Duration::from_secs(120), move || {
            let store = Store::open_with(SimFs::new(), dir(), options(fsync)).unwrap();
            // LSNs 1..=3: one batch, so one watch can start inside it.
            let mut first = WriteBatch::default();
            first.put(b"k/1", b"a").put(b"other/11", b"b").put(b"k/1", b"c");
            assert_eq!(store.write(&first).unwrap(), Lsn(3));
            let mut ops: BTreeMap<Lsn, Op> = BTreeMap::new();
            for (lsn, key, value) in [(1, "k/1", "a"), (2, "other/11", "b"), (3, "k/1", "c")] {
                let value = Some(value.as_bytes().to_vec());
                let op = Op { lsn: Lsn(lsn), key: key.into(), value, writer: "walden".into(), batch_end: Lsn(3) };
                ops.insert(Lsn(lsn), op);
            }
            let all = WatchKeys::All;
            let starts: Vec<(WatchKeys, WatchFrom, Lsn)> = vec![
                (all.clone(), WatchFrom::Lsn(Lsn(1)), Lsn(1)),
                (all.clone(), WatchFrom::Lsn(Lsn(2)), Lsn(2)), // inside the first batch
                (all.clone(), WatchFrom::Lsn(Lsn(4)), Lsn(4)), // at the end
                (all.clone(), WatchFrom::Now, Lsn(4)),
                (all.clone(), WatchFrom::Lsn(Lsn(300)), Lsn(300)), // past the end
                (WatchKeys::prefix(b"other/"), WatchFrom::Lsn(Lsn(1)), Lsn(1)),
                (WatchKeys::range(&b"k/2"[..]..&b"k/6"[..]), WatchFrom::Lsn(Lsn(2)), Lsn(2)),
            ];
            let last = AtomicU64::new(0);
            let (results, written) = std::thread::scope(|scope| {
                let watchers: Vec<_> = starts
                    .iter()
                    .map(|(keys, from, start)| {
                        let watch = store.watch(keys.clone(), *from).unwrap();
                        assert_eq!(watch.start_lsn(), *start);
                        let last = &last;
                        scope.spawn(move || watch_until(watch, last))
                    })
                    .collect();
                let written = write_concurrently(&store, 3, 120);
                last.store(written.keys().last().unwrap().0, Ordering::Release);
                (watchers.into_iter().map(|w| w.join().unwrap()).collect::<Vec<_>>(), written)
            });
            ops.extend(written);
            assert_eq!(ops.len() as u64, ops.keys().last().unwrap().0, "{fsync:?}: gap-free LSNs");
            for ((keys, _, start), seen) in starts.iter().zip(results) {
                let want = expected(&ops, keys, *start);
                assert!(!want.is_empty());
                assert_eq!(seen.len(), want.len(), "{fsync:?} {keys:?} from {start}: no gap, no duplicate");
                assert!(seen == want, "{fsync:?} {keys:?} from {start}: the acknowledged changes, revisions exact");
            }
            // The model's revisions are the store's.
            for (key, entry) in store.scan_prefix(b"") {
                let last_put = ops.values().rev().find(|op| op.key == key[..]).unwrap();
                assert_eq!(last_put.value.as_deref(), Some(&entry.value[..]));
            }
        });
    }
}

/// "Read the state at LSN n, then watch from n + 1": a mirror built this
/// way while writers write ends equal to the store, revisions included.
#[test]
fn reading_the_state_then_watching_from_the_next_lsn_mirrors_the_store_exactly() {
    within(Duration::from_secs(60), || {
        let store = Store::open_with(SimFs::new(), dir(), options(FsyncMode::Never)).unwrap();
        write_concurrently(&store, 2, 40);
        let last = AtomicU64::new(0);
        let mirror = std::thread::scope(|scope| {
            let reader = scope.spawn(|| {
                let (state, n) = store.current_state().unwrap();
                let mut mirror: BTreeMap<Vec<u8>, (Vec<u8>, u64)> =
                    state.iter().map(|(k, e)| (k.to_vec(), (e.value.to_vec(), e.revision))).collect();
                let mut watch = store.watch(WatchKeys::All, WatchFrom::Lsn(n.next())).unwrap();
                let started = Instant::now();
                loop {
                    let end = last.load(Ordering::Acquire);
                    if end > 0 && watch.next_lsn() > Lsn(end) {
                        return mirror;
                    }
                    assert!(started.elapsed() < Duration::from_secs(30));
                    if let Some(batch) = watch.next_timeout(Duration::from_millis(20)) {
                        for change in batch.unwrap().changes {
                            match change.entry() {
                                Some(e) => mirror.insert(change.key.to_vec(), (e.value.to_vec(), e.revision)),
                                None => mirror.remove(&change.key[..]),
                            };
                        }
                    }
                }
            });
            let written = write_concurrently(&store, 2, 80);
            last.store(written.keys().last().unwrap().0, Ordering::Release);
            reader.join().unwrap()
        });
        let now: BTreeMap<Vec<u8>, (Vec<u8>, u64)> =
            store.scan_prefix(b"").into_iter().map(|(k, e)| (k.to_vec(), (e.value.to_vec(), e.revision))).collect();
        assert_eq!(mirror, now, "the mirror is the store: values and revisions");
    });
}

/// Across a snapshot and the log truncation behind it: a watch from
/// history gets every change (revisions from the snapshot on) or the
/// compacted error naming where a watch can start, never a gap.
#[test]
fn across_snapshots_and_truncation_a_watch_gets_history_or_the_compacted_error() {
    within(Duration::from_secs(60), || {
        let store = Store::open_with(SimFs::new(), dir(), options(FsyncMode::Never)).unwrap();
        let mut ops = write_concurrently(&store, 1, 300);
        // A lagging watch from LSN 1, which reads one batch and stops.
        let mut lagging = store.watch(WatchKeys::All, WatchFrom::Lsn(Lsn(1))).unwrap();
        let first = lagging.try_next().unwrap().unwrap();
        assert_eq!(first.lsn, Lsn(1));
        store.snapshot_now().unwrap();
        ops.extend(write_concurrently(&store, 1, 300));
        let snapshot = store.snapshot_now().unwrap();
        let oldest = store.oldest_watchable_lsn();
        assert!(oldest > Lsn(1), "keep_count 1: the log before the snapshot is gone");
        // Below the oldest: refused, naming it.
        match store.watch(WatchKeys::All, WatchFrom::Lsn(Lsn(2))) {
            Err(Error::Compacted { lsn, oldest: named }) => assert_eq!((lsn, named), (Lsn(2), oldest)),
            other => panic!("expected the compacted error, got {:?}", other.map(|w| w.start_lsn())),
        }
        // The lagging watch: the error, not a skip.
        match lagging.try_next() {
            Some(Err(Error::Compacted { lsn, oldest: named })) => assert_eq!((lsn, named), (Lsn(2), oldest)),
            other => panic!("expected the compacted error, got {other:?}"),
        }
        // From the oldest watchable LSN and from inside the kept history:
        // every change, revisions exact.
        ops.extend(write_concurrently(&store, 1, 40));
        let end = ops.keys().last().unwrap().0;
        // The snapshot's own LSN may still be in the log, but the state
        // before it is in no kept snapshot: revisions there are unknown.
        assert_eq!(oldest, snapshot.header.lsn.next());
        let refused = store.watch(WatchKeys::All, WatchFrom::Lsn(snapshot.header.lsn));
        assert!(matches!(refused, Err(Error::Compacted { oldest: o, .. }) if o == oldest));
        for from in [oldest, Lsn(oldest.0 + 7), Lsn(end - 3)] {
            let mut watch = store.watch(WatchKeys::prefix(b"k/"), WatchFrom::Lsn(from)).unwrap();
            let mut seen = Vec::new();
            while let Some(batch) = watch.try_next() {
                seen.push(seen_of(&batch.unwrap()));
            }
            assert_eq!(watch.next_lsn(), Lsn(end + 1), "caught up");
            assert!(seen == expected(&ops, &WatchKeys::prefix(b"k/"), from), "from {from}: the history, exact");
        }
    });
}

/// A watch that holds its segments (`Watch::retain`) reads its whole
/// history on across the snapshots' truncation; once it is dropped, the
/// next snapshot's truncation takes those records away from a plain
/// lagging watch, which gets the compacted error.
#[test]
fn a_retained_watch_reads_its_whole_history_across_snapshots_and_truncation() {
    within(Duration::from_secs(60), || {
        let store = Store::open_with(SimFs::new(), dir(), options(FsyncMode::Never)).unwrap();
        let mut ops = write_concurrently(&store, 1, 300);
        let keys = WatchKeys::prefix(b"k/");
        let mut held = store.watch(keys.clone(), WatchFrom::Lsn(Lsn(1))).unwrap();
        held.retain(u64::MAX).unwrap();
        let mut plain = store.watch(keys.clone(), WatchFrom::Lsn(Lsn(1))).unwrap();
        store.snapshot_now().unwrap();
        ops.extend(write_concurrently(&store, 1, 300));
        store.snapshot_now().unwrap();
        assert_eq!(store.oldest_watchable_lsn(), Lsn(1), "the hold kept the log from LSN 1");
        let end = ops.keys().last().unwrap().0;
        let mut seen = Vec::new();
        while let Some(batch) = held.try_next() {
            seen.push(seen_of(&batch.unwrap()));
        }
        assert_eq!(held.next_lsn(), Lsn(end + 1), "caught up");
        assert!(seen == expected(&ops, &keys, Lsn(1)), "the history from LSN 1, exact");
        drop(held);
        ops.extend(write_concurrently(&store, 1, 40));
        store.snapshot_now().unwrap();
        assert!(store.oldest_watchable_lsn() > Lsn(1), "keep_count 1: with the hold gone, the log went");
        assert!(matches!(plain.try_next(), Some(Err(Error::Compacted { lsn: Lsn(1), .. }))));
    });
}

/// In `Always`, a put whose fdatasync fails is never delivered; and what
/// a watch delivered survives power loss (its writes were synced).
#[test]
fn a_watch_never_delivers_a_write_that_a_failed_fdatasync_or_power_loss_takes_away() {
    for kind in [FaultKind::Eio, FaultKind::SyncLosesData] {
        within(Duration::from_secs(60), move || {
            let fs = SimFs::new();
            let store = Store::open_with(fs.clone(), dir(), options(FsyncMode::Always)).unwrap();
            store.put(b"k/1", b"kept").unwrap();
            let mut watch = store.watch(WatchKeys::All, WatchFrom::Lsn(Lsn(1))).unwrap();
            fs.hold_syncs();
            fs.inject(Fault { at_call: 1, kind, persistent: false, only: Some(SimOp::Sync) });
            std::thread::scope(|scope| {
                let writer = scope.spawn(|| store.put(b"k/1", b"lost"));
                let started = Instant::now();
                while fs.syncs_held() == 0 {
                    assert!(started.elapsed() < Duration::from_secs(30), "no fdatasync was started");
                    std::thread::sleep(Duration::from_millis(1));
                }
                let seen: Vec<Lsn> = std::iter::from_fn(|| watch.next_timeout(Duration::from_millis(50)))
                    .map(|b| b.unwrap().lsn)
                    .collect();
                assert_eq!(seen, [Lsn(1)], "{kind:?}: only the acknowledged put");
                fs.release_syncs();
                assert!(matches!(writer.join().unwrap(), Err(Error::Poisoned(_))), "{kind:?}");
            });
            match watch.next_timeout(Duration::from_secs(10)) {
                Some(Err(Error::Poisoned(_))) => {}
                other => panic!("{kind:?}: expected the poisoning, got {other:?}"),
            }
        });
    }
    // Power loss while puts wait for their fdatasync: every delivered
    // change is in the store recovered from what was durable.
    for seed in 1..=4u64 {
        within(Duration::from_secs(60), move || {
            let fs = SimFs::new();
            let store = Store::open_with(fs.clone(), dir(), options(FsyncMode::Always)).unwrap();
            for i in 0..30u32 {
                store.put(format!("k/{}", i % 7).as_bytes(), &i.to_le_bytes()).unwrap();
            }
            let mut watch = store.watch(WatchKeys::All, WatchFrom::Lsn(Lsn(1))).unwrap();
            fs.hold_syncs();
            let crashed = std::thread::scope(|scope| {
                let writer = scope.spawn(|| {
                    for i in 30..40u32 {
                        let _ = store.put(format!("k/{}", i % 7).as_bytes(), &i.to_le_bytes());
                    }
                });
                let started = Instant::now();
                while fs.syncs_held() == 0 {
                    assert!(started.elapsed() < Duration::from_secs(30));
                    std::thread::sleep(Duration::from_millis(1));
                }
                let mut delivered = Vec::new();
                while let Some(batch) = watch.next_timeout(Duration::from_millis(50)) {
                    delivered.extend(batch.unwrap().changes);
                }
                let crashed = fs.crash(CrashMode::Tear { seed });
                fs.release_syncs();
                writer.join().unwrap();
                (crashed, delivered)
            });
            let (crashed, delivered) = crashed;
            assert_eq!(delivered.len(), 30, "seed {seed}: the synced puts, none held");
            let recovered = Store::open_with(crashed, dir(), options(FsyncMode::Always)).unwrap();
            assert!(recovered.applied_lsn() >= delivered.last().unwrap().lsn, "seed {seed}");
            for change in &delivered {
                let then = recovered.view_at(change.lsn).unwrap();
                let entry = then.get(&change.key).unwrap();
                assert_eq!(Some(&entry), change.entry(), "seed {seed}: LSN {} survived as delivered", change.lsn);
            }
        });
    }
}

/// A watch that never reads holds nothing while 60,000 writes go by; one
/// that reads every key holds at most the revisions since its last
/// re-anchor, however many keys are written.
#[test]
fn an_idle_watch_holds_nothing_and_a_live_one_holds_a_bounded_set_of_revisions() {
    within(Duration::from_secs(120), || {
        let fs = SimFs::new();
        let mut options = options(FsyncMode::Never);
        options.engine.wal.segment_bytes = 1 << 20;
        let store = Store::open_with(fs, dir(), options).unwrap();
        let idle = store.watch(WatchKeys::All, WatchFrom::Now).unwrap();
        let mut live = store.watch(WatchKeys::All, WatchFrom::Now).unwrap();
        let count = 60_000u64;
        let mut most_held = 0;
        for i in 0..count {
            store.put(format!("key-{i:06}").as_bytes(), b"v").unwrap();
            if i % 16 == 0 {
                while let Some(batch) = live.try_next() {
                    batch.unwrap();
                    most_held = most_held.max(live.held_entries());
                }
            }
        }
        assert_eq!(store.applied_lsn(), Lsn(count), "every write completed with the watches held");
        assert_eq!((idle.next_lsn(), idle.held_entries()), (Lsn(1), 0), "the idle watch read and holds nothing");
        // Re-anchoring every 1,024 LSNs to a state the store published
        // bounds what a live watch holds: the published state is folded
        // every 128 records or so, and on a busy machine lags the commits
        // by at most 16 Ki records (the engine's `COMMITTER_WAITS_AT`,
        // past which committers wait for the folder) plus a fold's share.
        let bound = (REANCHOR_EVERY_LSNS + (16 << 10) + 1024) as usize;
        assert!(most_held > 0 && most_held <= bound, "a live watch held {most_held} revisions (bound {bound})");
    });
}

#[test]
fn an_async_watch_awaited_on_tokio_sees_every_batch_then_the_end() {
    within(Duration::from_secs(60), || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let store =
            Store::open_with(SimFs::new(), dir(), options(FsyncMode::Periodic { interval: Duration::from_millis(2) }))
                .unwrap();
        let ops = std::thread::scope(|scope| {
            let mut watch = store.watch(WatchKeys::prefix(b"k/"), WatchFrom::Lsn(Lsn(1))).unwrap();
            let writer = scope.spawn(|| write_concurrently(&store, 2, 50));
            let ops = writer.join().unwrap();
            let want = expected(&ops, &WatchKeys::prefix(b"k/"), Lsn(1));
            let seen = runtime.block_on(async {
                let mut seen = Vec::new();
                while seen.len() < want.len() {
                    seen.push(seen_of(&watch.next_async().await.unwrap().unwrap()));
                }
                seen
            });
            assert!(seen == want);
            ops
        });
        assert!(!ops.is_empty());
        assert!(matches!(store.watch(WatchKeys::All, WatchFrom::Lsn(Lsn::ZERO)), Err(Error::InvalidArgument(_))));
    });
}
