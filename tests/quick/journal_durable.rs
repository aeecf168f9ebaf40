//! The durable journal across reopen and crash, recovery from a snapshot
//! plus the log, compaction that survives reopen and frees segments, and
//! time-range queries checked against a brute-force oracle over many
//! segments (the time index's seek).

use walden::journal::{Journal, JournalEntry, NewEntry, Pattern, Query, SignalType, Value};
use walden::{DurableJournal, FsyncMode, JournalOptions};

fn options(segment_bytes: u64) -> JournalOptions {
    let mut options = JournalOptions::default();
    options.engine.wal.segment_bytes = segment_bytes;
    options.engine.wal.fsync = FsyncMode::Never;
    options.engine.snapshots.keep_count = 1;
    options.engine.snapshots.every_commits = None;
    options.engine.snapshots.every_bytes = None;
    options.engine.snapshots.every = None;
    options
}

fn entry(i: u64) -> NewEntry {
    let address = format!("/zone/{}/level", i % 5);
    let base = if i.is_multiple_of(3) {
        NewEntry::publish(SignalType::Event, "relay", &address, Value::Int(i as i64))
    } else {
        NewEntry::set(&format!("session-{}", i % 2), &address, Value::Float(i as f64 / 8.0))
    };
    base.at(1_000_000 + i * 10)
}

fn everything(j: &dyn Journal) -> Vec<JournalEntry> {
    j.since(0, usize::MAX).unwrap()
}

#[test]
fn sequences_and_state_continue_after_close_and_after_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let j = DurableJournal::open(dir.path(), options(64 << 10)).unwrap();
    for i in 0..500 {
        j.append(entry(i)).unwrap();
    }
    let (history, params) = (everything(&j), j.params(&Pattern::all()));
    j.close().unwrap();

    let j = DurableJournal::open(dir.path(), options(64 << 10)).unwrap();
    assert_eq!(j.latest_sequence(), 500);
    assert_eq!(everything(&j), history);
    assert_eq!(j.params(&Pattern::all()), params);
    assert_eq!(j.append(entry(500)).unwrap(), 501, "gap-free after reopen");
    j.append_batch((501..600).map(entry).collect()).unwrap();
    let history = everything(&j);
    drop(j); // no close: a process crash keeps what write() took (FsyncMode::Never)

    let j = DurableJournal::open(dir.path(), options(64 << 10)).unwrap();
    assert_eq!(everything(&j), history);
    assert_eq!(j.append(entry(600)).unwrap(), 601);
    let last = j.since(600, 10).unwrap();
    assert_eq!(last.len(), 1);
    assert!(last[0].timestamp_us >= history.last().unwrap().timestamp_us);
}

#[test]
fn recovery_loads_the_snapshot_then_replays_only_the_tail() {
    let dir = tempfile::tempdir().unwrap();
    let j = DurableJournal::open(dir.path(), options(64 << 10)).unwrap();
    for i in 0..1_000 {
        j.append(entry(i)).unwrap();
    }
    assert_eq!(j.snapshot().unwrap(), 1_000);
    for i in 1_000..1_250 {
        j.append(entry(i)).unwrap();
    }
    let (history, params) = (everything(&j), j.params(&Pattern::all()));
    j.close().unwrap();

    let j = DurableJournal::open(dir.path(), options(64 << 10)).unwrap();
    let report = j.recovery_report();
    assert!(report.snapshot_used.is_some());
    assert_eq!(report.records_replayed, 250);
    assert_eq!(j.params(&Pattern::all()), params);
    assert_eq!(everything(&j), history);
    let snapshot = j.load_snapshot().unwrap().unwrap();
    assert_eq!(snapshot.sequence, 1_000);
    assert_eq!(j.read(|s| s.index_points()), 1_250usize.div_ceil(64));
}

#[test]
fn compaction_survives_reopen_and_frees_log_segments() {
    let dir = tempfile::tempdir().unwrap();
    let j = DurableJournal::open(dir.path(), options(64 << 10)).unwrap();
    for chunk in (0..5_000u64).collect::<Vec<_>>().chunks(100) {
        j.append_batch(chunk.iter().map(|&i| entry(i)).collect()).unwrap();
    }
    assert_eq!(j.log_first_lsn().get(), 1);
    let params = j.params(&Pattern::all());
    assert_eq!(j.compact_before(4_001).unwrap(), 4_000);
    assert!(j.log_first_lsn().get() > 1, "segments below the compaction snapshot are deleted");
    // A second compaction after the snapshot lives only in the log tail.
    assert_eq!(j.compact_before(4_101).unwrap(), 100);
    let remaining = everything(&j);
    assert_eq!(remaining.first().unwrap().sequence, 4_101);
    j.close().unwrap();

    let j = DurableJournal::open(dir.path(), options(64 << 10)).unwrap();
    assert_eq!((j.first_sequence(), j.len(), j.latest_sequence()), (4_101, 900, 5_000));
    assert_eq!(everything(&j), remaining);
    assert_eq!(j.params(&Pattern::all()), params, "compaction keeps the parameter state");
    let old = Query::all().to_us(1_000_000 + 4_100 * 10);
    assert!(j.query(&old).unwrap().entries.is_empty());
}

#[test]
fn time_range_queries_match_a_brute_force_oracle_across_segments() {
    let dir = tempfile::tempdir().unwrap();
    let j = DurableJournal::open(dir.path(), options(64 << 10)).unwrap();
    // Irregular time steps, repeats included.
    let mut t = 5_000u64;
    let mut state = 7u64;
    let mut next = || {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        state >> 33
    };
    for chunk in 0..40u64 {
        let batch: Vec<NewEntry> = (0..500u64)
            .map(|i| {
                t += next() % 4;
                let mut e = entry(chunk * 500 + i);
                e.timestamp_us = Some(t);
                e
            })
            .collect();
        j.append_batch(batch).unwrap();
    }
    j.compact_before(777).unwrap();
    let all = everything(&j);
    assert_eq!(all.len(), 20_000 - 776);
    assert!(j.read(|s| s.index_points()) < 20_000 / 64 + 2);
    let (first_t, last_t) = (all.first().unwrap().timestamp_us, all.last().unwrap().timestamp_us);
    for round in 0..60 {
        let from = first_t.saturating_sub(50) + next() % (last_t - first_t + 100);
        let to = from + next() % 3_000;
        let pattern = ["/**", "/zone/3/level", "/zone/*/level", "/zone/**"][round % 4];
        let types: &[SignalType] = if round % 5 == 0 { &[SignalType::Event] } else { &[] };
        let query = Query::new(pattern).unwrap().from_us(from).to_us(to).types(types).limit(usize::MAX);
        let expected: Vec<&JournalEntry> = all
            .iter()
            .filter(|e| e.timestamp_us >= from && e.timestamp_us < to)
            .filter(|e| query.pattern.matches(&e.address))
            .filter(|e| types.is_empty() || types.contains(&e.signal_type))
            .collect();
        let got = j.query(&query).unwrap().entries;
        assert_eq!(got.iter().collect::<Vec<_>>(), expected, "round {round}: [{from}, {to}) {pattern}");
    }
}

#[test]
fn a_log_that_is_not_a_journal_is_refused_with_its_lsn() {
    let dir = tempfile::tempdir().unwrap();
    let store = walden::Store::open(dir.path(), Default::default()).unwrap();
    store.put(b"/k", b"v").unwrap();
    store.close().unwrap();
    let err = DurableJournal::open(dir.path(), JournalOptions::default()).err().expect("a store's log").to_string();
    assert!(err.contains("log record 1 is not a valid journal record"), "{err}");
}

#[test]
fn concurrent_appenders_get_gap_free_sequences() {
    let dir = tempfile::tempdir().unwrap();
    let j = DurableJournal::open(dir.path(), options(256 << 10)).unwrap();
    let per_thread = 2_000u64;
    let got: Vec<Vec<u64>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..4u64)
            .map(|t| {
                let j = &j;
                scope.spawn(move || {
                    (0..per_thread)
                        .map(|i| {
                            let e = NewEntry::set(&format!("thread-{t}"), &format!("/t{t}"), Value::Int(i as i64));
                            if i % 10 == 0 {
                                *j.append_batch(vec![e.clone(), e]).unwrap().end()
                            } else {
                                j.append(e).unwrap()
                            }
                        })
                        .collect()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let total = 4 * (per_thread + per_thread / 10);
    assert_eq!(j.latest_sequence(), total);
    let all = everything(&j);
    assert_eq!(all.iter().map(|e| e.sequence).collect::<Vec<_>>(), (1..=total).collect::<Vec<_>>());
    assert!(all.windows(2).all(|w| w[0].timestamp_us <= w[1].timestamp_us));
    for (t, sequences) in got.iter().enumerate() {
        assert!(sequences.windows(2).all(|w| w[0] < w[1]), "a thread's own appends are ordered");
        let revisions: Vec<u64> =
            all.iter().filter(|e| e.address == format!("/t{t}")).map(|e| e.revision.unwrap()).collect();
        assert_eq!(revisions, (1..=per_thread + per_thread / 10).collect::<Vec<_>>());
    }
}

#[test]
fn queries_agree_warm_cold_and_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let j = DurableJournal::open(dir.path(), options(64 << 10)).unwrap();
    for chunk in 0..30u64 {
        j.append_batch((chunk * 100..chunk * 100 + 100).map(entry).collect()).unwrap();
    }
    let windows: Vec<Query> = (0..40u64)
        .map(|i| {
            let from = 1_000_000 + (i * 7_919) % 30_000;
            Query::new("/zone/*/level").unwrap().from_us(from).to_us(from + 2_000).limit(50)
        })
        .collect();
    let run = |j: &DurableJournal| -> Vec<Vec<JournalEntry>> {
        windows.iter().map(|q| j.query(q).unwrap().entries).collect()
    };
    let expected: Vec<Vec<JournalEntry>> = windows
        .iter()
        .map(|q| {
            everything(&j)
                .into_iter()
                .filter(|e| e.timestamp_us >= q.from_us.unwrap() && e.timestamp_us < q.to_us.unwrap())
                .take(50)
                .collect()
        })
        .collect();
    assert_eq!(run(&j), expected, "positions cached by the appends");
    j.close().unwrap();
    let j = DurableJournal::open(dir.path(), options(64 << 10)).unwrap();
    assert_eq!(run(&j), expected, "after reopen: no positions cached");
    assert_eq!(run(&j), expected, "positions cached by the queries");
}
