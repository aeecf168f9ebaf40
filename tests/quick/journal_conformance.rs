//! The journal conformance suite: one set of checks, run against both
//! backends (the ring buffer in memory and the durable journal on the log).
//! Each check takes a `&dyn Journal`; the macro at the bottom makes one
//! `#[test]` per check and backend.

use std::collections::BTreeMap;
use std::time::Duration;
use walden::journal::{
    now_us, parse_age, Cursor, Journal, JournalEntry, JournalOp, NewEntry, Pattern, Query, SignalType, Value,
};

fn set(address: &str, value: i64, at_us: u64) -> NewEntry {
    NewEntry::set("tester", address, Value::Int(value)).at(at_us)
}

fn event(address: &str, at_us: u64) -> NewEntry {
    NewEntry::publish(SignalType::Event, "tester", address, Value::Bool(true)).at(at_us)
}

fn everything(j: &dyn Journal) -> Vec<JournalEntry> {
    j.since(0, usize::MAX).unwrap()
}

fn sequences(entries: &[JournalEntry]) -> Vec<u64> {
    entries.iter().map(|e| e.sequence).collect()
}

fn ordering_and_gap_free_sequences(j: &dyn Journal) {
    assert_eq!((j.latest_sequence(), j.len(), j.first_sequence()), (0, 0, 1));
    assert!(j.is_empty());
    for i in 0..50u64 {
        let sequence = j.append(set(&format!("/p/{}", i % 7), i as i64, 1_000 + i)).unwrap();
        assert_eq!(sequence, i + 1);
    }
    let all = everything(j);
    assert_eq!(sequences(&all), (1..=50).collect::<Vec<_>>());
    assert_eq!((j.latest_sequence(), j.len()), (50, 50));
    assert_eq!(all[9].address, "/p/2");
    assert_eq!(all[9].value, Value::Int(9));
}

fn time_never_goes_backwards(j: &dyn Journal) {
    j.append(set("/a", 1, 500)).unwrap();
    j.append(set("/a", 2, 100)).unwrap(); // a clock stepped back
    j.append(NewEntry::set("t", "/a", Value::Int(3))).unwrap(); // now
    let all = everything(j);
    assert_eq!(all[0].timestamp_us, 500);
    assert_eq!(all[1].timestamp_us, 500, "raised to the last timestamp");
    assert!(all[2].timestamp_us >= now_us() - 60_000_000);
    assert!(all.windows(2).all(|w| w[0].timestamp_us <= w[1].timestamp_us));
}

fn batches_are_consecutive_and_number_revisions(j: &dyn Journal) {
    j.append(set("/a", 0, 10)).unwrap();
    let range = j.append_batch(vec![set("/a", 1, 11), event("/e", 12), set("/a", 2, 13), set("/b", 3, 14)]).unwrap();
    assert_eq!(range, 2..=5);
    assert!(j.append_batch(Vec::new()).is_err());
    let bad = j.append_batch(vec![set("/ok", 1, 20), set("no-slash", 1, 21)]);
    assert!(bad.is_err(), "a batch with a malformed address");
    assert_eq!(j.latest_sequence(), 5, "nothing of a refused batch is appended");
    let revisions: Vec<_> = everything(j).iter().map(|e| e.revision).collect();
    assert_eq!(revisions, [Some(1), Some(2), None, Some(3), Some(1)]);
    assert_eq!(j.param("/a").unwrap().revision, 3);
}

fn set_publish_delete_shape_the_parameter_state(j: &dyn Journal) {
    j.append(set("/lights/kitchen", 1, 10)).unwrap();
    j.append(set("/lights/kitchen", 2, 11)).unwrap();
    j.append(NewEntry::publish(SignalType::Event, "bob", "/doorbell", Value::Null).at(12)).unwrap();
    let kitchen = j.param("/lights/kitchen").unwrap();
    assert_eq!((kitchen.value.clone(), kitchen.revision, kitchen.writer.as_str()), (Value::Int(2), 2, "tester"));
    assert_eq!(kitchen.timestamp_us, 11);
    assert!(j.param("/doorbell").is_none(), "a PUBLISH changes no state");
    j.append(NewEntry::delete("bob", "/lights/kitchen").at(13)).unwrap();
    assert!(j.param("/lights/kitchen").is_none());
    j.append(set("/lights/kitchen", 3, 14)).unwrap();
    assert_eq!(j.param("/lights/kitchen").unwrap().revision, 1, "a deleted parameter starts again");
    let mut given = set("/lights/hall", 9, 15);
    given.revision = Some(40);
    j.append(given).unwrap();
    assert_eq!(j.param("/lights/hall").unwrap().revision, 40);
    let all = everything(j);
    assert_eq!(all[2].revision, None);
    assert_eq!(all[3].op, JournalOp::Delete);
    assert_eq!(all[3].revision, None);
    let names: Vec<_> = j.params(&Pattern::parse("/lights/*").unwrap()).into_iter().map(|p| p.address).collect();
    assert_eq!(names, ["/lights/hall", "/lights/kitchen"]);
}

fn patterns_select_addresses(j: &dyn Journal) {
    let addresses =
        ["/lights/kitchen", "/lights/kitchen/brightness", "/lights/hall/brightness", "/audio/gain", "/lights"];
    for (i, a) in addresses.iter().enumerate() {
        j.append(set(a, i as i64, 10 + i as u64)).unwrap();
    }
    let matched = |pattern: &str| -> Vec<String> {
        let page = j.query(&Query::new(pattern).unwrap()).unwrap();
        page.entries.into_iter().map(|e| e.address).collect()
    };
    assert_eq!(matched("/lights/kitchen"), ["/lights/kitchen"]);
    assert_eq!(matched("/lights/*"), ["/lights/kitchen"]);
    assert_eq!(matched("/lights/*/brightness"), ["/lights/kitchen/brightness", "/lights/hall/brightness"]);
    assert_eq!(
        matched("/lights/**"),
        ["/lights/kitchen", "/lights/kitchen/brightness", "/lights/hall/brightness", "/lights"]
    );
    assert_eq!(matched("/**/brightness"), ["/lights/kitchen/brightness", "/lights/hall/brightness"]);
    assert_eq!(matched("/**").len(), 5);
    assert!(matched("/video/**").is_empty());
    assert!(matched("/lights/kitchen/brightness/x").is_empty());
    for malformed in ["lights", "/lights/", "/li*ghts", "//", ""] {
        let err = Query::new(malformed).unwrap_err().to_string();
        assert!(err.contains("malformed pattern"), "{malformed:?}: {err}");
    }
    let err = j.append(set("/lights/*", 1, 99)).unwrap_err().to_string();
    assert!(err.contains("malformed address"), "{err}");
    assert_eq!(j.latest_sequence(), 5);
}

fn time_bounds_are_inclusive_then_exclusive(j: &dyn Journal) {
    for t in [10, 20, 20, 30, 40] {
        j.append(set("/t", t as i64, t)).unwrap();
    }
    let times = |q: Query| -> Vec<u64> { j.query(&q).unwrap().entries.iter().map(|e| e.timestamp_us).collect() };
    assert_eq!(times(Query::all().from_us(20).to_us(40)), [20, 20, 30]);
    assert_eq!(times(Query::all().from_us(20)), [20, 20, 30, 40]);
    assert_eq!(times(Query::all().to_us(20)), [10]);
    assert_eq!(times(Query::all().from_us(41)), Vec::<u64>::new());
    assert_eq!(times(Query::all().from_us(30).to_us(30)), Vec::<u64>::new());
    assert_eq!(times(Query::all().from_us(0).to_us(u64::MAX)).len(), 5);
}

fn type_filters_apply(j: &dyn Journal) {
    j.append(set("/p", 1, 1)).unwrap();
    j.append(NewEntry::publish(SignalType::Event, "a", "/e", Value::Null).at(2)).unwrap();
    j.append(NewEntry::publish(SignalType::Stream, "a", "/s", Value::Float(0.5)).at(3)).unwrap();
    j.append(NewEntry::publish(SignalType::Gesture, "a", "/g", Value::Null).at(4)).unwrap();
    j.append(NewEntry::publish(SignalType::Timeline, "a", "/t", Value::Null).at(5)).unwrap();
    let of = |types: &[SignalType]| -> Vec<String> {
        j.query(&Query::all().types(types)).unwrap().entries.into_iter().map(|e| e.address).collect()
    };
    assert_eq!(of(&[SignalType::Event, SignalType::Stream]), ["/e", "/s"]);
    assert_eq!(of(&[SignalType::Param]), ["/p"]);
    assert_eq!(of(&[SignalType::Timeline]), ["/t"]);
    assert_eq!(of(&[]).len(), 5, "no types given: every type");
    let q = Query::new("/e").unwrap().types(&[SignalType::Stream]);
    assert!(j.query(&q).unwrap().entries.is_empty());
}

fn pagination_neither_skips_nor_repeats(j: &dyn Journal) {
    let types = [SignalType::Param, SignalType::Event, SignalType::Stream];
    for i in 0..600u64 {
        let entry =
            NewEntry::publish(types[(i % 3) as usize], "a", &format!("/room/{}/x", i % 4), Value::Int(i as i64));
        j.append(entry.at(1_000 + i / 2)).unwrap();
    }
    let query =
        Query::new("/room/*/x").unwrap().types(&[SignalType::Event, SignalType::Stream]).from_us(1_050).to_us(1_250);
    let expected: Vec<u64> = everything(j)
        .iter()
        .filter(|e| e.signal_type != SignalType::Param && (1_050..1_250).contains(&e.timestamp_us))
        .map(|e| e.sequence)
        .collect();
    assert!(expected.len() > 200);
    for limit in [1, 7, 100, expected.len(), expected.len() + 1] {
        let mut got = Vec::new();
        let mut cursor: Option<Cursor> = None;
        let mut pages = 0;
        loop {
            let mut q = query.clone().limit(limit);
            if let Some(c) = cursor {
                q = q.after(c);
            }
            let page = j.query(&q).unwrap();
            assert!(page.entries.len() <= limit);
            got.extend(sequences(&page.entries));
            pages += 1;
            if pages == 10 {
                // Appends between pages land after the range and change nothing.
                j.append(event("/room/1/x", 5_000)).unwrap();
            }
            match page.next {
                Some(next) => cursor = Some(next),
                None => break,
            }
            assert!(pages <= expected.len() + 1, "pagination does not end");
        }
        assert_eq!(got, expected, "limit {limit}");
    }
    assert!(j.query(&Query::all().limit(0)).is_err());
    let since: Vec<u64> = sequences(&j.since(590, 5).unwrap());
    assert_eq!(since, [591, 592, 593, 594, 595]);
}

fn compaction_by_sequence_is_exact(j: &dyn Journal) {
    for i in 0..100u64 {
        j.append(set(&format!("/k/{}", i % 10), i as i64, 10 + i)).unwrap();
    }
    assert_eq!(j.compact_before(41).unwrap(), 40);
    assert_eq!(j.compact_before(41).unwrap(), 0, "nothing left below 41");
    assert_eq!(j.compact_before(10).unwrap(), 0);
    assert_eq!((j.first_sequence(), j.len(), j.latest_sequence()), (41, 60, 100));
    assert_eq!(sequences(&everything(j)), (41..=100).collect::<Vec<_>>());
    // Entry 41 was appended at time 50: nothing before it remains.
    assert_eq!(j.query(&Query::all().to_us(50)).unwrap().entries.len(), 0, "entries below the floor are gone");
    assert_eq!(sequences(&j.query(&Query::all().to_us(51)).unwrap().entries), [41]);
    assert_eq!(j.param("/k/3").unwrap().value, Value::Int(93), "state is not history: it stays");
    assert_eq!(j.compact_before(1_000).unwrap(), 60);
    assert_eq!((j.len(), j.latest_sequence(), j.first_sequence()), (0, 100, 101));
    assert_eq!(j.append(set("/k/0", 0, 500)).unwrap(), 101, "sequence numbers continue");
    assert_eq!(sequences(&everything(j)), [101]);
}

fn compaction_by_age_is_exact(j: &dyn Journal) {
    let now = now_us();
    let day_us = 86_400_000_000;
    for i in 0..30 {
        j.append(set("/old", i, now - 10 * day_us + i as u64)).unwrap();
    }
    for i in 0..20 {
        j.append(event("/older", now - 8 * day_us + i)).unwrap();
    }
    for i in 0..10 {
        j.append(set("/new", i, now - 3_600_000_000 + i as u64)).unwrap();
    }
    assert_eq!(j.compact_before_time(now - 9 * day_us).unwrap(), 30);
    assert_eq!(j.compact_older_than(parse_age("7d").unwrap()).unwrap(), 20);
    assert_eq!(j.compact_older_than(Duration::from_secs(7 * 86_400)).unwrap(), 0);
    assert_eq!(j.len(), 10);
    assert!(everything(j).iter().all(|e| e.address == "/new"));
    assert_eq!(j.compact_older_than(Duration::ZERO).unwrap(), 10);
    assert!(j.is_empty());
}

fn snapshot_round_trip(j: &dyn Journal) {
    assert_eq!(j.load_snapshot().unwrap(), None);
    let mut map = BTreeMap::new();
    map.insert("r".to_string(), Value::Float(0.25));
    j.append(NewEntry::set("a", "/color", Value::Map(map)).at(1)).unwrap();
    j.append(set("/level", 3, 2)).unwrap();
    j.append(set("/level", 4, 3)).unwrap();
    j.append(event("/tick", 4)).unwrap();
    assert_eq!(j.snapshot().unwrap(), 4);
    let state = j.params(&Pattern::all());
    j.append(set("/level", 5, 5)).unwrap();
    j.append(NewEntry::delete("a", "/color").at(6)).unwrap();
    let snapshot = j.load_snapshot().unwrap().expect("a snapshot was taken");
    assert_eq!(snapshot.sequence, 4);
    assert_eq!(snapshot.params, state);
    assert_eq!(snapshot.params.len(), 2);
    assert_eq!(snapshot.params[1].revision, 2);
    assert_eq!(j.param("/level").unwrap().revision, 3);
}

fn every_value_kind_round_trips(j: &dyn Journal) {
    let mut map = BTreeMap::new();
    map.insert("nested".to_string(), Value::List(vec![Value::Null, Value::Bytes(vec![0, 255])]));
    map.insert("s".to_string(), Value::String("é\u{1F600}".into()));
    let values = [
        Value::Null,
        Value::Bool(false),
        Value::Bool(true),
        Value::Int(i64::MIN),
        Value::Float(-1.5e300),
        Value::String(String::new()),
        Value::Bytes(vec![1; 300]),
        Value::List(vec![]),
        Value::Map(map),
    ];
    for (i, v) in values.iter().enumerate() {
        j.append(NewEntry::publish(SignalType::Stream, "a", "/v", v.clone()).at(i as u64)).unwrap();
    }
    let got: Vec<Value> = everything(j).into_iter().map(|e| e.value).collect();
    assert_eq!(got, values);
}

macro_rules! conformance {
    ($backend:ident, $open:expr) => {
        mod $backend {
            use super::*;
            conformance!(@tests $open; ordering_and_gap_free_sequences, time_never_goes_backwards,
                batches_are_consecutive_and_number_revisions, set_publish_delete_shape_the_parameter_state,
                patterns_select_addresses, time_bounds_are_inclusive_then_exclusive, type_filters_apply,
                pagination_neither_skips_nor_repeats, compaction_by_sequence_is_exact,
                compaction_by_age_is_exact, snapshot_round_trip, every_value_kind_round_trips);
        }
    };
    (@tests $open:expr; $($check:ident),*) => {
        $(
            #[test]
            fn $check() {
                let (journal, _dir) = $open;
                super::$check(&*journal);
            }
        )*
    };
}

fn memory() -> (Box<dyn Journal>, Option<tempfile::TempDir>) {
    (Box::new(walden::MemoryJournal::with_capacity(100_000).unwrap()), None)
}

fn durable() -> (Box<dyn Journal>, Option<tempfile::TempDir>) {
    let dir = tempfile::tempdir().unwrap();
    let journal = walden::DurableJournal::open(dir.path(), Default::default()).unwrap();
    (Box::new(journal), Some(dir))
}

/// The durable journal on 64 KiB segments, so that every check also runs
/// across segment boundaries and with compaction freeing segments.
fn durable_small_segments() -> (Box<dyn Journal>, Option<tempfile::TempDir>) {
    let dir = tempfile::tempdir().unwrap();
    let mut options = walden::JournalOptions::default();
    options.engine.wal.segment_bytes = 64 << 10;
    options.engine.snapshots.keep_count = 1;
    let journal = walden::DurableJournal::open(dir.path(), options).unwrap();
    (Box::new(journal), Some(dir))
}

conformance!(memory_backend, memory());
conformance!(durable_backend, durable());
conformance!(durable_backend_small_segments, durable_small_segments());

#[test]
fn the_ring_buffer_evicts_the_oldest() {
    let j = walden::MemoryJournal::with_capacity(10).unwrap();
    for i in 0..25 {
        j.append(set("/r", i, i as u64)).unwrap();
    }
    assert_eq!((j.len(), j.first_sequence(), j.latest_sequence()), (10, 16, 25));
    assert_eq!(sequences(&everything(&j)), (16..=25).collect::<Vec<_>>());
    assert_eq!(j.compact_before(20).unwrap(), 4, "only what is still held counts");
    assert_eq!(walden::MemoryJournal::default().capacity(), 10_000);
    assert!(walden::MemoryJournal::with_capacity(0).is_err());
}
