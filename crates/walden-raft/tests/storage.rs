//! The raft storage on real files: unsafe settings are refused with the
//! reason, the state survives a reopen exactly, and opening never rolls the
//! state machine back past what the log can replay.

#[path = "../examples/common/mod.rs"]
mod common;

use common::kv::{log_id, put_entry, Entry, KvConfig, KvState};
use std::time::Duration;
use walden::{FsyncMode, RecoveryMode, WalOptions};
use walden_raft::{default_wal_options, Error, Storage};

type Vote = openraft::Vote<u64>;

fn open(dir: impl AsRef<std::path::Path>, options: WalOptions) -> walden_raft::Result<Storage<KvConfig, KvState>> {
    walden_raft::open::<KvConfig, KvState>(dir, options)
}

fn put(index: u64) -> Entry {
    put_entry(1, index, &format!("k{index}"), &format!("v{index}"))
}

#[test]
fn fsync_modes_and_recovery_modes_that_break_the_contract_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let refused = [
        WalOptions { fsync: FsyncMode::Periodic { interval: Duration::from_millis(10) }, ..default_wal_options() },
        WalOptions { fsync: FsyncMode::Never, ..default_wal_options() },
        WalOptions { recovery: RecoveryMode::PointInTime, ..default_wal_options() },
    ];
    for options in refused {
        match open(dir.path(), options.clone()) {
            Err(Error::UnsafeSetting(why)) => {
                assert!(why.contains("openraft") || why.contains("acknowledged"), "{why}")
            }
            Err(e) => panic!("{options:?}: refused for the wrong reason: {e}"),
            Ok(_) => panic!("{options:?} was accepted"),
        }
    }
    for recovery in [RecoveryMode::TolerateTornTail, RecoveryMode::AbsoluteConsistency] {
        let sub = dir.path().join(format!("{recovery:?}"));
        open(&sub, WalOptions { recovery, ..default_wal_options() }).expect("a safe recovery mode");
    }
}

#[test]
fn reopening_recovers_vote_committed_purge_and_entries_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let options = WalOptions { segment_bytes: 4096, ..default_wal_options() };
    let before = {
        let (log, sm, _) = open(dir.path(), options.clone()).unwrap();
        log.save_vote_blocking(&Vote::new(3, 2)).unwrap();
        let lsn = log.append_entries((0..300).map(put).collect()).unwrap().unwrap();
        log.wait_durable(lsn).unwrap();
        let lsn = log.save_committed(Some(log_id(1, 1, 250))).unwrap();
        log.wait_durable(lsn).unwrap();
        sm.apply_entries(log.entries(0, 251).unwrap());
        sm.build().unwrap();
        log.purge_blocking(log_id(1, 1, 200)).unwrap();
        log.truncate_blocking(280).unwrap();
        assert!(log.wal().first_lsn().0 > 1, "the purge freed segments");
        (log.log_state(), log.vote(), log.committed(), log.entries(0, u64::MAX).unwrap(), sm.read(KvState::clone))
    };
    let (log, sm, report) = open(dir.path(), options).unwrap();
    assert!(report.loaded.is_some());
    let after =
        (log.log_state(), log.vote(), log.committed(), log.entries(0, u64::MAX).unwrap(), sm.read(KvState::clone));
    assert_eq!(after, before);
    assert_eq!(after.0.last_log_id, Some(log_id(1, 1, 279)));
    assert_eq!(after.3.len(), 79, "entries 201..=279");
    assert_eq!(sm.read(|s| s.data.get("k250").cloned()).as_deref(), Some("v250"));
}

/// Flips a byte in the content of the snapshot file covering `index`.
fn damage_snapshot(dir: &std::path::Path, index: u64) {
    let path = dir.join("snapshots").join(walden::snapshot::snapshot_file_name(walden::Lsn(index + 1)));
    let mut bytes = std::fs::read(&path).unwrap();
    let at = bytes.len() - 3;
    bytes[at] ^= 0x40;
    std::fs::write(&path, bytes).unwrap();
}

#[test]
fn opening_never_falls_back_to_a_snapshot_older_than_the_log_holds() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (log, sm, _) = open(dir.path(), default_wal_options()).unwrap();
        let lsn = log.append_entries((1..=40).map(put).collect()).unwrap().unwrap();
        log.wait_durable(lsn).unwrap();
        sm.apply_entries(log.entries(1, 11).unwrap());
        sm.build().unwrap();
        sm.apply_entries(log.entries(11, 31).unwrap());
        sm.build().unwrap();
        // Purged up to 10: the snapshot at 10 is still a valid fallback.
        log.purge_blocking(log_id(1, 1, 10)).unwrap();
    }
    damage_snapshot(dir.path(), 30);
    {
        let (log, sm, report) = open(dir.path(), default_wal_options()).expect("falls back to the snapshot at 10");
        assert_eq!(report.skipped.len(), 1, "{report:?}");
        assert_eq!(sm.applied().0, Some(log_id(1, 1, 10)));
        assert_eq!(log.entries(11, 41).unwrap().len(), 30, "the log replays the rest");
        // Now purge past the fallback, as a rebuilt snapshot would allow.
        log.purge_blocking(log_id(1, 1, 20)).unwrap();
    }
    match open(dir.path(), default_wal_options()) {
        Err(Error::Unrecoverable(why)) => {
            assert!(why.contains("purged entries up to") && why.contains("snapshots skipped"), "{why}")
        }
        Err(e) => panic!("refused for the wrong reason: {e}"),
        Ok(_) => panic!("opened with a snapshot at 10 and a log purged up to 20"),
    }
}
