//! Power loss at every I/O boundary of a raft storage script, on walden's
//! simulated file system (`walden::io::SimFs`).
//!
//! The store is the generic one (`LogStore<C>`, `StateMachine<C, S>`) with
//! the key-value example's types. The script saves votes, appends entries
//! (some acknowledged, some left in flight), saves the committed log id
//! (which returns before its record is durable: the next durable operation
//! or the flusher's own sync makes it so), truncates, applies entries and
//! builds snapshots, purges (which frees log segments), installs a snapshot
//! received from a "leader", and reopens the store midway. For each I/O
//! call N (and once past the last) the script runs on a fresh disk whose
//! calls fail from N on; the disk then loses power three ways (unsynced data
//! dropped, kept, torn per sector) and the store is reopened, twice.
//!
//! The oracle keeps the log's model after every operation the script
//! submitted. After recovery the log must be exactly one of the models
//! from the last acknowledged operation on (the log is a prefix of what was
//! submitted, holding everything acknowledged): so the vote is never older
//! than an acknowledged one, no acknowledged entry is missing, no truncated
//! entry comes back, the committed log id is never older than one made
//! durable, and `get_log_state` matches. The state machine must
//! load a snapshot at least as new as the last one acknowledged, with
//! exactly the state it was built from.
//!
//! `WALDEN_CRASH_SEEDS=n` tries n torn crashes per point (default 1).

#[path = "../examples/common/mod.rs"]
mod common;

use common::kv::{log_id, Entry, KvConfig, KvState, Request};
use std::collections::BTreeMap;
use std::time::Duration;
use walden::io::{CrashMode, Fault, FaultKind, SimFs};
use walden::{FsyncMode, WalOptions};
use walden_raft::content::Meta;
use walden_raft::snapshot_data::SnapshotData;
use walden_raft::{open_with, LogStore, StateMachine};

type LogId = openraft::LogId<u64>;
type Vote = openraft::Vote<u64>;
type SnapshotMeta = Meta<KvConfig>;
type Sm = StateMachine<KvConfig, KvState, SimFs>;

const DIR: &str = "/node";

fn options() -> WalOptions {
    WalOptions {
        fsync: FsyncMode::Always,
        // Small segments: appends roll over and purges free segments.
        segment_bytes: 4096,
        // No timer-driven writes during the script: the I/O order is the script's.
        flush_interval: Duration::from_secs(3600),
        ..Default::default()
    }
}

fn put(term: u64, index: u64) -> Entry {
    let request = Request::Put {
        key: format!("key-{index}"),
        value: format!("value-{term}-{index}-{}", "x".repeat((index % 7) as usize * 9)),
    };
    Entry { log_id: log_id(term, 1, index), payload: openraft::EntryPayload::Normal(request) }
}

/// The raft log as the script asked for it.
#[derive(Clone, Debug, Default, PartialEq)]
struct Model {
    entries: BTreeMap<u64, Entry>,
    vote: Option<Vote>,
    committed: Option<LogId>,
    purged: Option<LogId>,
}

#[derive(Default)]
struct Oracle {
    /// The model after each submitted operation; `models[0]` is the empty log.
    models: Vec<Model>,
    /// Index into `models` of the last acknowledged operation.
    acked: usize,
    /// The state each snapshot was built or installed with, by index.
    snapshots: BTreeMap<u64, KvState>,
    /// The newest snapshot acknowledged (durable).
    snapshot_acked: Option<u64>,
}

impl Oracle {
    fn last(&self) -> Model {
        self.models.last().cloned().unwrap_or_default()
    }

    /// Records the model after an operation about to be submitted.
    fn submit(&mut self, change: impl FnOnce(&mut Model)) {
        let mut next = self.last();
        change(&mut next);
        self.models.push(next);
    }

    fn ack(&mut self) {
        self.acked = self.models.len() - 1;
    }
}

fn truncate(m: &mut Model, since: u64) {
    m.entries.split_off(&since);
}

fn purge(m: &mut Model, upto: LogId) {
    m.entries = m.entries.split_off(&(upto.index + 1));
    if m.purged.is_none_or(|p| p.index < upto.index) {
        m.purged = Some(upto);
    }
}

/// Builds, on a disk of its own, the snapshot a leader would send: the
/// state after applying `entries`.
fn leader_snapshot(entries: Vec<Entry>) -> (SnapshotMeta, SnapshotData, KvState) {
    let (sm, _) = Sm::open_with(SimFs::new(), "/leader").expect("leader state machine");
    sm.apply_entries(entries);
    let meta = sm.build().expect("leader snapshot");
    let snapshot = sm.current().expect("leader snapshot").expect("just built");
    (meta, *snapshot.snapshot, sm.read(KvState::clone))
}

/// The script. Stops at the first error (the disk has failed).
fn script(fs: &SimFs, o: &mut Oracle) {
    o.models.push(Model::default());
    let Ok((mut log, mut sm, _)) = open_with::<KvConfig, KvState, _>(fs.clone(), DIR, options()) else { return };
    macro_rules! step {
        ($change:expr, $op:expr, acked) => {{
            o.submit($change);
            if $op.is_err() {
                return;
            }
            o.ack();
        }};
        ($change:expr, $op:expr, in_flight) => {{
            o.submit($change);
            if $op.is_err() {
                return;
            }
        }};
    }
    let vote = Vote::new(1, 1);
    step!(|m| m.vote = Some(vote), log.save_vote_blocking(&vote), acked);
    let batch: Vec<Entry> = (1..=5).map(|i| put(1, i)).collect();
    step!(
        |m| m.entries.extend(batch.iter().map(|e| (e.log_id.index, e.clone()))),
        log.append_entries(batch.clone()).and_then(|lsn| log.wait_durable(lsn.expect("entries"))),
        acked
    );
    step!(|m| m.committed = Some(log_id(1, 1, 3)), log.save_committed(Some(log_id(1, 1, 3))), in_flight);
    step!(|m| truncate(m, 4), log.truncate_blocking(4), acked);
    let vote = Vote::new_committed(2, 1);
    step!(|m| m.vote = Some(vote), log.save_vote_blocking(&vote), acked);
    for chunk in [4..=9u64, 10..=12] {
        let batch: Vec<Entry> = chunk.map(|i| put(2, i)).collect();
        // Left in flight: the next durable operation covers it.
        step!(
            |m| m.entries.extend(batch.iter().map(|e| (e.log_id.index, e.clone()))),
            log.append_entries(batch.clone()),
            in_flight
        );
    }
    step!(|m| m.committed = Some(log_id(2, 1, 9)), log.save_committed(Some(log_id(2, 1, 9))), in_flight);
    // Apply up to 9 and snapshot, then purge what the snapshot covers.
    let Ok(applied) = log.entries(0, 10) else { return };
    sm.apply_entries(applied);
    o.snapshots.insert(9, sm.read(KvState::clone));
    if sm.build().is_err() {
        return;
    }
    o.snapshot_acked = Some(9);
    step!(|m| purge(m, log_id(2, 1, 6)), log.purge_blocking(log_id(2, 1, 6)), acked);
    // Reopen: replay from the purge record's checkpoint.
    drop((log, sm));
    let Ok((l, s, _)) = open_with::<KvConfig, KvState, _>(fs.clone(), DIR, options()) else { return };
    (log, sm) = (l, s);
    let vote = Vote::new_committed(3, 1);
    step!(|m| m.vote = Some(vote), log.save_vote_blocking(&vote), acked);
    // A leader of term 3 sends a snapshot up to 20; the follower installs
    // it, then drops the log it covers.
    let leader_entries: Vec<Entry> = (1..=20).map(|i| put(if i <= 12 { 2 } else { 3 }, i)).collect();
    let (meta, data, state) = leader_snapshot(leader_entries);
    o.snapshots.insert(20, state);
    if sm.install(&meta, data).is_err() {
        return;
    }
    o.snapshot_acked = Some(20);
    step!(|m| purge(m, log_id(3, 1, 20)), log.purge_blocking(log_id(3, 1, 20)), acked);
    // Enough entries to roll several segments, then a snapshot and a purge
    // that frees them.
    for first in (21..=81u64).step_by(10) {
        let batch: Vec<Entry> = (first..first + 10).map(|i| put(3, i)).collect();
        step!(
            |m| m.entries.extend(batch.iter().map(|e| (e.log_id.index, e.clone()))),
            log.append_entries(batch.clone()).and_then(|lsn| log.wait_durable(lsn.expect("entries"))),
            acked
        );
    }
    step!(|m| m.committed = Some(log_id(3, 1, 70)), log.save_committed(Some(log_id(3, 1, 70))), in_flight);
    let Ok(applied) = log.entries(21, 71) else { return };
    sm.apply_entries(applied);
    o.snapshots.insert(70, sm.read(KvState::clone));
    if sm.build().is_err() {
        return;
    }
    o.snapshot_acked = Some(70);
    step!(|m| purge(m, log_id(3, 1, 60)), log.purge_blocking(log_id(3, 1, 60)), acked);
    step!(|m| truncate(m, 85), log.truncate_blocking(85), acked);
    let batch: Vec<Entry> = (85..=86).map(|i| put(4, i)).collect();
    step!(
        |m| m.entries.extend(batch.iter().map(|e| (e.log_id.index, e.clone()))),
        log.append_entries(batch.clone()),
        in_flight
    );
    let vote = Vote::new(5, 2);
    step!(|m| m.vote = Some(vote), log.save_vote_blocking(&vote), acked);
}

/// What the recovered store holds.
fn recovered(log: &LogStore<KvConfig, SimFs>) -> Model {
    let entries = log.entries(0, u64::MAX).expect("read the recovered entries");
    Model {
        entries: entries.into_iter().map(|e| (e.log_id.index, e)).collect(),
        vote: log.vote(),
        committed: log.committed(),
        purged: log.log_state().last_purged_log_id,
    }
}

fn check(disk: &SimFs, o: &Oracle, context: &str) {
    let (log, sm, _) = open_with::<KvConfig, KvState, _>(disk.clone(), DIR, options())
        .unwrap_or_else(|e| panic!("{context}: open: {e}"));
    let got = recovered(&log);
    let acked = &o.models[o.acked];
    assert!(got.vote >= acked.vote, "{context}: vote {:?} is older than the acknowledged {:?}", got.vote, acked.vote);
    // A committed record is durable once a later operation was acknowledged
    // durable (the log is written in LSN order): the model acknowledged last
    // holds the newest committed log id made durable.
    assert!(
        got.committed >= acked.committed,
        "{context}: committed {:?} is older than {:?}, made durable",
        got.committed,
        acked.committed
    );
    let candidates = &o.models[o.acked..];
    // An entry every possible outcome holds (acknowledged, and no later
    // submitted truncation or purge could have removed it) must be there.
    for (index, entry) in &acked.entries {
        if candidates.iter().all(|m| m.entries.get(index) == Some(entry)) {
            assert_eq!(
                got.entries.get(index),
                Some(entry),
                "{context}: acknowledged entry {} is missing",
                entry.log_id
            );
        }
    }
    // A truncated entry never comes back once its truncation is acknowledged.
    for model in &o.models[..=o.acked] {
        for (index, entry) in &model.entries {
            let removed = !acked.entries.contains_key(index) && acked.purged.is_none_or(|p| p.index < *index);
            if removed && got.entries.get(index) == Some(entry) {
                panic!("{context}: entry {} came back after its truncation was acknowledged", entry.log_id);
            }
        }
    }
    let Some(offset) = candidates.iter().position(|m| *m == got) else {
        panic!(
            "{context}: the recovered log is no state the script passed through from its last acknowledged \
             operation on.\nrecovered: {got:#?}\nacknowledged: {acked:#?}"
        );
    };
    let model = &candidates[offset];
    let state = log.log_state();
    let last = model.entries.last_key_value().map(|(_, e)| e.log_id).or(model.purged);
    assert_eq!((state.last_purged_log_id, state.last_log_id), (model.purged, last), "{context}: get_log_state");
    // The state machine: at least the last acknowledged snapshot, exactly as built.
    let applied = sm.applied().0.map(|l| l.index);
    assert!(
        applied >= o.snapshot_acked,
        "{context}: snapshot at {applied:?}, but {:?} was acknowledged",
        o.snapshot_acked
    );
    if let Some(index) = applied {
        assert_eq!(
            Some(&sm.read(KvState::clone)),
            o.snapshots.get(&index),
            "{context}: the snapshot at {index} holds another state"
        );
    }
}

#[test]
fn power_loss_at_every_io_boundary_of_a_raft_storage_script() {
    let seeds: u64 = std::env::var("WALDEN_CRASH_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(1);
    let probe = SimFs::new();
    let mut full = Oracle::default();
    script(&probe, &mut full);
    assert_eq!(full.acked, full.models.len() - 1, "the fault-free script runs to its end");
    assert_eq!(full.snapshot_acked, Some(70), "the fault-free script builds its last snapshot");
    let total = probe.calls();
    assert!(total > 100, "the script does real I/O ({total} calls)");
    let end = probe.crash(CrashMode::KeepUnsynced);
    check(&end, &full, "no fault");
    let (log, _, _) = open_with::<KvConfig, KvState, _>(end, DIR, options()).expect("reopen");
    assert!(log.wal().first_lsn() > walden::Lsn::FIRST, "the purges freed the oldest segments");
    let mut explored = 0;
    for at_call in 1..=total + 1 {
        let fs = SimFs::new();
        fs.inject(Fault { at_call, kind: FaultKind::Eio, persistent: true, only: None });
        let mut oracle = Oracle::default();
        script(&fs, &mut oracle);
        fs.clear_fault();
        let mut crashes = vec![CrashMode::DropUnsynced, CrashMode::KeepUnsynced];
        crashes.extend((0..seeds).map(|s| CrashMode::Tear { seed: at_call * 1000 + s }));
        for crash in crashes {
            let context = format!("power lost at I/O call {at_call} of {total}, {crash:?}");
            let disk = fs.crash(crash);
            check(&disk, &oracle, &context);
            check(&disk, &oracle, &format!("{context}, second recovery"));
            explored += 1;
        }
    }
    assert!(explored as u64 > total, "explored {explored} crash points");
}

/// `save_committed` returns before its record is durable, and the store
/// makes it durable itself within its stated bound when no append comes.
#[test]
fn a_committed_record_becomes_durable_within_the_bound_without_an_append() {
    let fs = SimFs::new();
    let (log, _sm, _) = open_with::<KvConfig, KvState, _>(fs.clone(), DIR, options()).unwrap();
    let lsn = log.append_entries((1..=3).map(|i| put(1, i)).collect()).unwrap().unwrap();
    log.wait_durable(lsn).unwrap();
    let committed_lsn = log.save_committed(Some(log_id(1, 1, 3))).unwrap();
    std::thread::sleep(walden_raft::log_store::LAZY_SYNC_DELAY_MAX + Duration::from_millis(500));
    assert!(log.wal().durable_lsn() >= committed_lsn, "the flusher synced the committed record on its own");
    let disk = fs.crash(CrashMode::DropUnsynced);
    let (log, _, _) = open_with::<KvConfig, KvState, _>(disk, DIR, options()).unwrap();
    assert_eq!(log.committed(), Some(log_id(1, 1, 3)));
}
