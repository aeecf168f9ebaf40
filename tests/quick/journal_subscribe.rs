//! `Journal::subscribe`: REPLAY then follow, on the durable journal (in
//! every fsync mode) and the memory journal: exactly the stored entries
//! that match, from any sequence, in order, no gap and no duplicate; the
//! compacted error below the oldest held or once compaction passes a
//! lagging subscriber; never an entry whose fdatasync failed.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use walden::io::{Fault, FaultKind, SimFs, SimOp};
use walden::journal::{Journal, JournalEntry, NewEntry, Pattern, SignalType, SignalTypes, Subscription, Value};
use walden::{DurableJournal, Error, FsyncMode, JournalOptions, MemoryJournal};

const MODES: [FsyncMode; 3] =
    [FsyncMode::Always, FsyncMode::Periodic { interval: Duration::from_millis(2) }, FsyncMode::Never];

fn options(fsync: FsyncMode) -> JournalOptions {
    let mut options = JournalOptions::default();
    options.engine.wal.segment_bytes = 8192;
    options.engine.wal.fsync = fsync;
    options.engine.snapshots = walden::SnapshotOptions { keep_count: 1, ..walden::SnapshotOptions::manual() };
    options
}

fn within<T: Send + 'static>(limit: Duration, body: impl FnOnce() -> T + Send + 'static) -> T {
    let (done, finished) = mpsc::channel();
    std::thread::spawn(move || done.send(body()).ok());
    finished.recv_timeout(limit).expect("the test body did not finish in time: something blocked")
}

fn entry(w: u64, i: u64) -> NewEntry {
    let address = format!("/zone/{}/level", (w + i) % 4);
    match i % 4 {
        0 => NewEntry::publish(SignalType::Event, "relay", &address, Value::Int(i as i64)),
        3 => NewEntry::delete("relay", &address),
        _ => NewEntry::set(&format!("w{w}"), &address, Value::Float(i as f64 / 8.0)),
    }
}

/// `writers` threads append single entries and batches of 3.
fn append_concurrently(journal: &dyn Journal, writers: u64, rounds: u64) {
    std::thread::scope(|scope| {
        for w in 0..writers {
            scope.spawn(move || {
                for i in 0..rounds {
                    if i % 5 == 4 {
                        journal.append_batch(vec![entry(w, i), entry(w, i + 1), entry(w, i + 2)]).unwrap();
                    } else {
                        journal.append(entry(w, i)).unwrap();
                    }
                }
            });
        }
    });
}

/// Reads until the subscription has read past `last` (once known).
fn read_until(mut subscription: Subscription<'_>, last: &AtomicU64) -> Vec<JournalEntry> {
    let mut seen = Vec::new();
    let started = Instant::now();
    loop {
        let end = last.load(Ordering::Acquire);
        if end > 0 && subscription.next_sequence() > end {
            return seen;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "the subscription did not reach the end");
        if let Some(entry) = subscription.next_timeout(Duration::from_millis(20)) {
            seen.push(entry.unwrap());
        }
    }
}

fn subscribers_see_exactly_the_stored_entries(journal: &dyn Journal, what: &str) {
    journal.append_batch(vec![entry(9, 1), entry(9, 2), entry(9, 3)]).unwrap();
    let event = SignalTypes::of(&[SignalType::Event]);
    let starts: Vec<(Pattern, SignalTypes, u64)> = vec![
        (Pattern::all(), SignalTypes::ANY, 1),
        (Pattern::all(), SignalTypes::ANY, 2),   // inside the first batch
        (Pattern::all(), SignalTypes::ANY, 4),   // at the end
        (Pattern::all(), SignalTypes::ANY, 250), // past the end
        (Pattern::parse("/zone/1/*").unwrap(), SignalTypes::ANY, 1),
        (Pattern::parse("/zone/**").unwrap(), event, 2),
    ];
    let last = AtomicU64::new(0);
    let results = std::thread::scope(|scope| {
        let readers: Vec<_> = starts
            .iter()
            .map(|(pattern, types, from)| {
                let subscription = journal.subscribe(pattern, *types, *from).unwrap();
                let last = &last;
                scope.spawn(move || read_until(subscription, last))
            })
            .collect();
        append_concurrently(journal, 2, 100);
        last.store(journal.latest_sequence(), Ordering::Release);
        readers.into_iter().map(|r| r.join().unwrap()).collect::<Vec<_>>()
    });
    let stored = journal.since(0, usize::MAX).unwrap();
    assert_eq!(stored.len() as u64, journal.latest_sequence(), "{what}: everything held");
    for ((pattern, types, from), seen) in starts.iter().zip(results) {
        let want: Vec<_> = stored
            .iter()
            .filter(|e| e.sequence >= *from && types.contains(e.signal_type) && pattern.matches(&e.address))
            .cloned()
            .collect();
        assert!(!want.is_empty());
        assert_eq!(seen.len(), want.len(), "{what} {} from {from}: no gap, no duplicate", pattern.as_str());
        assert!(seen == want, "{what} {} from {from}: the stored entries, in order", pattern.as_str());
    }
}

#[test]
fn subscribers_from_anywhere_see_exactly_the_stored_entries_on_both_backends() {
    for fsync in MODES {
        within(Duration::from_secs(120), move || {
            let journal = DurableJournal::open_with(SimFs::new(), PathBuf::from("/j"), options(fsync)).unwrap();
            subscribers_see_exactly_the_stored_entries(&journal, &format!("durable {fsync:?}"));
        });
    }
    within(Duration::from_secs(60), || {
        let journal = MemoryJournal::with_capacity(100_000).unwrap();
        subscribers_see_exactly_the_stored_entries(&journal, "memory");
    });
}

#[test]
fn below_the_oldest_held_or_passed_by_compaction_a_subscriber_gets_the_compacted_error() {
    within(Duration::from_secs(60), || {
        let journal = DurableJournal::open_with(SimFs::new(), PathBuf::from("/j"), options(FsyncMode::Never)).unwrap();
        append_concurrently(&journal, 1, 400);
        let mut lagging = journal.subscribe(&Pattern::all(), SignalTypes::ANY, 1).unwrap();
        assert_eq!(lagging.try_next().unwrap().unwrap().sequence, 1);
        assert_eq!(journal.compact_before(200).unwrap(), 199);
        match journal.subscribe(&Pattern::all(), SignalTypes::ANY, 150) {
            Err(Error::EntriesCompacted { sequence, oldest }) => assert_eq!((sequence, oldest), (150, 200)),
            other => panic!("expected the compacted error, got {:?}", other.map(|s| s.next_sequence())),
        }
        match lagging.try_next() {
            Some(Err(Error::EntriesCompacted { sequence, oldest })) => assert_eq!((sequence, oldest), (2, 200)),
            other => panic!("expected the compacted error, got {other:?}"),
        }
        assert!(lagging.next().is_none(), "the error ends it");
        // From the oldest held: exactly the history, then live entries.
        let mut from_oldest = journal.subscribe(&Pattern::all(), SignalTypes::ANY, 200).unwrap();
        journal.append(entry(0, 1)).unwrap();
        let seen: Vec<u64> = std::iter::from_fn(|| from_oldest.try_next()).map(|e| e.unwrap().sequence).collect();
        assert_eq!(seen, (200..=journal.latest_sequence()).collect::<Vec<_>>());
        assert!(matches!(journal.subscribe(&Pattern::all(), SignalTypes::ANY, 0), Err(Error::InvalidArgument(_))));
    });
    within(Duration::from_secs(60), || {
        let journal = MemoryJournal::with_capacity(100).unwrap();
        append_concurrently(&journal, 1, 250);
        let first = journal.first_sequence();
        assert!(matches!(
            journal.subscribe(&Pattern::all(), SignalTypes::ANY, 1),
            Err(Error::EntriesCompacted { sequence: 1, oldest }) if oldest == first
        ));
        let mut lagging = journal.subscribe(&Pattern::all(), SignalTypes::ANY, first).unwrap();
        assert_eq!(lagging.try_next().unwrap().unwrap().sequence, first);
        append_concurrently(&journal, 1, 150); // evicts what it has not read
        assert!(matches!(lagging.try_next(), Some(Err(Error::EntriesCompacted { .. }))), "evicted: the error");
    });
}

/// In `Always`, an entry whose fdatasync fails is never delivered.
#[test]
fn a_subscriber_never_delivers_an_entry_whose_fdatasync_failed() {
    for kind in [FaultKind::Eio, FaultKind::SyncLosesData] {
        within(Duration::from_secs(60), move || {
            let fs = SimFs::new();
            let journal =
                DurableJournal::open_with(fs.clone(), PathBuf::from("/j"), options(FsyncMode::Always)).unwrap();
            journal.append(entry(0, 1)).unwrap();
            let mut subscription = journal.subscribe(&Pattern::all(), SignalTypes::ANY, 1).unwrap();
            fs.hold_syncs();
            fs.inject(Fault { at_call: 1, kind, persistent: false, only: Some(SimOp::Sync) });
            std::thread::scope(|scope| {
                let writer = scope.spawn(|| journal.append(entry(0, 2)));
                let started = Instant::now();
                while fs.syncs_held() == 0 {
                    assert!(started.elapsed() < Duration::from_secs(30), "no fdatasync was started");
                    std::thread::sleep(Duration::from_millis(1));
                }
                let seen: Vec<u64> = std::iter::from_fn(|| subscription.next_timeout(Duration::from_millis(50)))
                    .map(|e| e.unwrap().sequence)
                    .collect();
                assert_eq!(seen, [1], "{kind:?}: only the acknowledged entry");
                fs.release_syncs();
                assert!(matches!(writer.join().unwrap(), Err(Error::Poisoned(_))), "{kind:?}");
            });
            assert!(matches!(subscription.next_timeout(Duration::from_secs(10)), Some(Err(Error::Poisoned(_)))));
        });
    }
}

/// A subscriber that never reads: appends complete, and it holds no entry
/// (it reads the files when asked: everything then, in order).
#[test]
fn an_idle_subscriber_leaves_appends_alone_and_reads_everything_when_asked() {
    within(Duration::from_secs(120), || {
        let dir = tempfile::tempdir().unwrap();
        let journal = DurableJournal::open(dir.path(), options(FsyncMode::Never)).unwrap();
        let mut idle = journal.subscribe(&Pattern::all(), SignalTypes::ANY, 1).unwrap();
        for i in 0..20_000 {
            journal.append(entry(1, i)).unwrap();
        }
        assert_eq!((journal.latest_sequence(), idle.next_sequence()), (20_000, 1));
        let seen: Vec<u64> = std::iter::from_fn(|| idle.try_next()).map(|e| e.unwrap().sequence).collect();
        assert_eq!(seen, (1..=20_000).collect::<Vec<_>>());
        drop(idle);
        journal.close().unwrap();
    });
}
