//! The log's contract on a healthy disk: round trip, LSNs, batches,
//! pipelining, roll-over, reopen, truncation, limits.

use crate::common::*;
use walden::io::SimFs;
use walden::{Error, FsyncMode, Lsn, Wal, WalOptions};

const MODES: [FsyncMode; 3] =
    [FsyncMode::Always, FsyncMode::Periodic { interval: std::time::Duration::from_millis(5) }, FsyncMode::Never];

#[test]
fn round_trip_in_every_mode_across_roll_overs_and_reopen() {
    for mode in MODES {
        let fs = SimFs::new();
        let wal = Wal::open_with(fs.clone(), sim_dir(), small(mode)).unwrap();
        let mut expected = Vec::new();
        for i in 0..300 {
            let lsn = wal.append(&payload(i)).unwrap();
            assert_eq!(lsn, Lsn(i + 1));
            expected.push((lsn, payload(i)));
        }
        assert!(wal.stats().segments > 3, "{mode:?}: small segments must roll over");
        assert_eq!(read_all(&wal), expected);
        wal.close().unwrap();

        let wal = Wal::open_with(fs.clone(), sim_dir(), small(mode)).unwrap();
        assert_eq!(read_all(&wal), expected, "{mode:?}: reopen sees the same records");
        assert_eq!(wal.last_lsn(), Some(Lsn(300)));
        assert_eq!(wal.append(b"next").unwrap(), Lsn(301), "{mode:?}: reopen continues the sequence");
        assert!(wal.recovery_report().cuts.is_empty());
    }
}

#[test]
fn empty_payloads_and_an_empty_log_work() {
    let fs = SimFs::new();
    let wal = Wal::open_with(fs.clone(), sim_dir(), small(FsyncMode::Never)).unwrap();
    assert_eq!(wal.last_lsn(), None);
    assert!(read_all(&wal).is_empty());
    assert_eq!(wal.append(b"").unwrap(), Lsn(1));
    wal.close().unwrap();
    let wal = Wal::open_with(fs, sim_dir(), small(FsyncMode::Never)).unwrap();
    assert_eq!(read_all(&wal), vec![(Lsn(1), Vec::new())]);
}

#[test]
fn batches_get_consecutive_lsns_and_never_span_segments() {
    let fs = SimFs::new();
    let wal = Wal::open_with(fs.clone(), sim_dir(), small(FsyncMode::Always)).unwrap();
    let mut next = 1;
    for size in 1..40u64 {
        let batch: Vec<Vec<u8>> = (0..size).map(|i| payload(next + i)).collect();
        let range = wal.append_batch(&batch).unwrap();
        assert_eq!(range, Lsn(next)..Lsn(next + size));
        next += size;
    }
    wal.close().unwrap();
    // Every segment starts at a batch boundary: its first LSN is a batch start.
    let starts: Vec<u64> = (1..40u64).scan(1, |s, size| Some(std::mem::replace(s, *s + size))).collect();
    for path in segment_paths(&fs, &sim_dir()) {
        let name = path.file_name().unwrap().to_str().unwrap();
        let first = walden::wal::parse_segment_file_name(name).unwrap().0;
        assert!(starts.contains(&first), "segment {name} starts inside a batch");
    }
}

#[test]
fn pipelined_appends_are_acknowledged_in_order() {
    for mode in MODES {
        let fs = SimFs::new();
        let wal = Wal::open_with(fs.clone(), sim_dir(), small(mode)).unwrap();
        let tickets: Vec<_> = (0..200).map(|i| wal.append_pipelined(&payload(i)).unwrap()).collect();
        for (i, ticket) in tickets.into_iter().enumerate() {
            assert_eq!(ticket.lsn(), Lsn(i as u64 + 1));
            assert_eq!(ticket.wait().unwrap(), Lsn(i as u64 + 1));
        }
        if mode == FsyncMode::Always {
            assert!(wal.durable_lsn() >= Lsn(200), "Always: a waited ticket is durable");
        }
        assert_eq!(read_all(&wal).len(), 200);
    }
}

#[test]
fn pipelined_appends_nobody_waits_for_are_written_by_the_timer() {
    let fs = SimFs::new();
    let wal = Wal::open_with(fs.clone(), sim_dir(), small(FsyncMode::Always)).unwrap();
    let ticket = wal.append_pipelined(b"unwaited").unwrap();
    let lsn = ticket.lsn();
    drop(ticket); // nobody waits for it
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while wal.durable_lsn() < lsn {
        assert!(std::time::Instant::now() < deadline, "the background thread never synced the record");
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

#[test]
fn periodic_mode_syncs_on_a_timer_without_further_writes() {
    let fs = SimFs::new();
    let options = small(FsyncMode::Periodic { interval: std::time::Duration::from_millis(20) });
    let wal = Wal::open_with(fs.clone(), sim_dir(), options).unwrap();
    let lsn = wal.append(b"idle afterwards").unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while wal.durable_lsn() < lsn {
        assert!(std::time::Instant::now() < deadline, "the periodic timer never synced");
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    // And a power loss now keeps it.
    let after = fs.crash(walden::io::CrashMode::DropUnsynced);
    let wal = Wal::open_with(after, sim_dir(), small(FsyncMode::Never)).unwrap();
    assert_eq!(read_all(&wal), vec![(Lsn(1), b"idle afterwards".to_vec())]);
}

#[test]
fn never_mode_does_not_sync_until_asked() {
    let fs = SimFs::new();
    let wal = Wal::open_with(fs.clone(), sim_dir(), small(FsyncMode::Never)).unwrap();
    wal.append(b"a").unwrap();
    std::thread::sleep(std::time::Duration::from_millis(30));
    assert_eq!(wal.durable_lsn(), Lsn(0));
    assert_eq!(wal.sync().unwrap(), Lsn(1));
    assert_eq!(wal.durable_lsn(), Lsn(1));
}

#[test]
fn read_from_any_lsn_across_segments() {
    let fs = SimFs::new();
    let wal = Wal::open_with(fs, sim_dir(), small(FsyncMode::Never)).unwrap();
    for i in 0..250 {
        wal.append(&payload(i)).unwrap();
    }
    for from in [1u64, 2, 57, 100, 249, 250] {
        let got: Vec<_> = wal.read_from(Lsn(from)).unwrap().map(|r| r.unwrap()).collect();
        assert_eq!(got.len() as u64, 251 - from, "from {from}");
        assert_eq!(got[0].lsn, Lsn(from));
        assert_eq!(got[0].payload, payload(from - 1));
    }
    assert_eq!(wal.read_from(Lsn(251)).unwrap().count(), 0);
}

#[test]
fn truncate_before_removes_only_whole_older_segments() {
    let fs = SimFs::new();
    let wal = Wal::open_with(fs.clone(), sim_dir(), small(FsyncMode::Never)).unwrap();
    for i in 0..400 {
        wal.append(&payload(i)).unwrap();
    }
    let before = segment_paths(&fs, &sim_dir()).len();
    let removed = wal.truncate_before(Lsn(200)).unwrap();
    assert!(removed > 0);
    assert_eq!(segment_paths(&fs, &sim_dir()).len(), before - removed);
    let first = wal.first_lsn();
    assert!(first <= Lsn(200) && first > Lsn(1), "first LSN {first}");
    let records = read_all(&wal);
    assert_eq!(records.first().unwrap().0, first);
    assert_eq!(records.last().unwrap().0, Lsn(400));
    // Truncating everything keeps the active segment.
    wal.truncate_before(Lsn(10_000)).unwrap();
    assert_eq!(wal.stats().segments, 1);
    assert_eq!(wal.append(b"still").unwrap(), Lsn(401));
    wal.close().unwrap();
    let wal = Wal::open_with(fs, sim_dir(), small(FsyncMode::Never)).unwrap();
    assert_eq!(wal.last_lsn(), Some(Lsn(401)));
    assert_eq!(read_all(&wal).first().unwrap().0, wal.first_lsn());
}

#[test]
fn records_over_the_limit_are_refused_up_front() {
    let fs = SimFs::new();
    let options = WalOptions { max_record_bytes: 1000, ..small(FsyncMode::Never) };
    let wal = Wal::open_with(fs, sim_dir(), options).unwrap();
    let err = wal.append(&[0u8; 1001]).unwrap_err();
    assert!(matches!(err, Error::RecordTooLarge { len: 1001, max: 1000 }), "{err}");
    assert!(matches!(wal.append_batch::<&[u8]>(&[]), Err(Error::InvalidArgument(_))));
    // A record larger than a segment gets a segment of its own.
    assert_eq!(wal.append(&[7u8; 1000]).unwrap(), Lsn(1));
    assert_eq!(wal.append(&[8u8; 1000]).unwrap(), Lsn(2));
    assert_eq!(read_all(&wal).len(), 2);
}

#[test]
fn real_files_round_trip_and_the_directory_is_locked() {
    let dir = tempfile::tempdir().unwrap();
    let options = WalOptions { segment_bytes: 64 * 1024, ..WalOptions::default() };
    let wal = Wal::open(dir.path(), options.clone()).unwrap();
    for i in 0..2000 {
        wal.append(&payload(i)).unwrap();
    }
    let second = Wal::open(dir.path(), options.clone());
    assert!(second.is_err(), "a second instance on the same directory must be refused");
    wal.close().unwrap();
    let wal = Wal::open(dir.path(), options).unwrap();
    let records = read_all(&wal);
    assert_eq!(records.len(), 2000);
    assert_eq!(records[1999].1, payload(1999));
}

#[test]
fn options_round_trip_through_serde() {
    let options = WalOptions { fsync: FsyncMode::Always, segment_bytes: 1 << 20, ..Default::default() };
    let json = serde_json::to_string(&options).unwrap();
    let back: WalOptions = serde_json::from_str(&json).unwrap();
    assert_eq!(back, options);
    let partial: WalOptions = serde_json::from_str(r#"{"fsync":"never"}"#).unwrap();
    assert_eq!(partial, WalOptions { fsync: FsyncMode::Never, ..Default::default() });
}
