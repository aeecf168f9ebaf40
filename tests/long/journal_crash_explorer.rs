//! Power loss at every I/O boundary of a durable-journal workload: single
//! appends, batches, compactions (which take snapshots and free segments),
//! snapshots, close and reopen, in `Always` mode. A persistent EIO from the
//! Nth I/O call on freezes the disk; it is then powered off (unsynced data
//! dropped, kept or torn) and the journal recovered. The oracle: recovery
//! succeeds; the latest sequence covers every acknowledged entry, was really
//! written, and never ends inside a batch; the entries held are exactly the
//! submitted ones from the compaction floor on; the floor is one that was
//! submitted and at least the last acknowledged one; the parameter state is
//! the state after the latest entry.
//! `WALDEN_CRASH_SEEDS=n` tears each point n ways (default 1).

use crate::common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use walden::io::SimFs;
use walden::journal::{Journal, JournalOp, NewEntry, Pattern, SignalType, Value};
use walden::{DurableJournal, FsyncMode, JournalOptions};

fn dir() -> PathBuf {
    PathBuf::from("/journal")
}

fn options() -> JournalOptions {
    let mut options = JournalOptions::default();
    options.engine.wal.fsync = FsyncMode::Always;
    options.engine.wal.segment_bytes = 4096;
    options.engine.wal.flush_interval = std::time::Duration::from_secs(3600);
    options.engine.snapshots.keep_count = 2;
    options.engine.snapshots.every_commits = None;
    options.engine.snapshots.every_bytes = None;
    options.engine.snapshots.every = None;
    options
}

#[derive(Default)]
struct Oracle {
    /// Every entry submitted (sequence i + 1 at index i), and whether a batch continues after it.
    entries: Vec<(NewEntry, bool)>,
    acknowledged: u64,
    /// Compaction floors submitted, and the last one acknowledged.
    floors: Vec<u64>,
    floor_acknowledged: u64,
}

fn entry(i: u64) -> NewEntry {
    let address = format!("/p/{}", i % 5);
    let e = match i % 4 {
        0 | 1 => NewEntry::set("explorer", &address, Value::Int(i as i64)),
        2 => NewEntry::publish(SignalType::Event, "explorer", &address, Value::String("x".repeat((i % 30) as usize))),
        _ => NewEntry::delete("explorer", &address),
    };
    e.at(1_000 + i)
}

fn script(fs: &SimFs, oracle: &mut Oracle) {
    let Ok(mut j) = DurableJournal::open_with(fs.clone(), dir(), options()) else { return };
    for step in 0u64..60 {
        let n = oracle.entries.len() as u64;
        let ok = match step % 6 {
            0..=2 => {
                oracle.entries.push((entry(n), false));
                j.append(entry(n)).is_ok()
            }
            3 => {
                let batch: Vec<NewEntry> = (n..n + 3).map(entry).collect();
                oracle.entries.extend(batch.iter().cloned().enumerate().map(|(i, e)| (e, i < 2)));
                j.append_batch(batch).is_ok()
            }
            4 => {
                let floor = n.saturating_sub(4).max(1);
                oracle.floors.push(floor);
                let ok = j.compact_before(floor).is_ok();
                if ok {
                    oracle.floor_acknowledged = oracle.floor_acknowledged.max(floor);
                }
                ok
            }
            _ => {
                if step % 18 == 17 {
                    if j.close().is_err() {
                        return;
                    }
                    match DurableJournal::open_with(fs.clone(), dir(), options()) {
                        Ok(reopened) => j = reopened,
                        Err(_) => return,
                    }
                    true
                } else {
                    j.snapshot().is_ok()
                }
            }
        };
        if !ok {
            return;
        }
        oracle.acknowledged = oracle.entries.len() as u64;
    }
}

fn check(disk: &SimFs, oracle: &Oracle, context: &str) {
    let j = DurableJournal::open_with(disk.clone(), dir(), options())
        .unwrap_or_else(|e| panic!("{context}: recovery failed: {e}"));
    let latest = j.latest_sequence();
    assert!(
        latest >= oracle.acknowledged,
        "{context}: acknowledged entry {} lost (latest {latest})",
        oracle.acknowledged
    );
    assert!(latest as usize <= oracle.entries.len(), "{context}: entry {latest} was never written");
    if latest > 0 {
        assert!(!oracle.entries[latest as usize - 1].1, "{context}: recovered into the middle of a batch");
    }
    let first = j.first_sequence();
    assert!(first == 1 || oracle.floors.contains(&first), "{context}: floor {first} was never asked for");
    assert!(first >= oracle.floor_acknowledged.min(latest + 1), "{context}: acknowledged compaction undone");
    let held = j.since(0, usize::MAX).unwrap();
    assert_eq!(held.len() as u64, latest + 1 - first, "{context}: entries missing");
    let mut params = BTreeMap::new();
    for (i, (e, _)) in oracle.entries[..latest as usize].iter().enumerate() {
        match e.op {
            JournalOp::Set => params.insert(e.address.clone(), e.value.clone()),
            JournalOp::Delete => params.remove(&e.address),
            JournalOp::Publish => None,
            op => panic!("{context}: an operation the oracle never writes: {op}"),
        };
        if (i as u64) + 1 >= first {
            let got = &held[(i as u64 + 1 - first) as usize];
            assert_eq!(
                (got.sequence, &got.address, &got.value, got.op),
                (i as u64 + 1, &e.address, &e.value, e.op),
                "{context}"
            );
        }
    }
    let recovered: BTreeMap<String, Value> =
        j.params(&Pattern::all()).into_iter().map(|p| (p.address, p.value)).collect();
    assert_eq!(recovered, params, "{context}: parameter state is not the state after entry {latest}");
}

#[test]
fn power_loss_at_every_io_boundary_of_a_journal() {
    let explored = common::explore_every_io_boundary(script, check);
    assert!(explored > 300, "only {explored} crash points");
    eprintln!("journal: {explored} crash points explored");
}
