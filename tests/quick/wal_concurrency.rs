//! Many threads appending at once.

use crate::common::*;
use std::collections::HashSet;
use walden::io::SimFs;
use walden::{FsyncMode, Lsn, Wal, WalOptions};

fn hammer<V: walden::io::Vfs>(wal: &Wal<V>, threads: u64, per_thread: u64) {
    std::thread::scope(|s| {
        for t in 0..threads {
            s.spawn(move || {
                let mut last = Lsn(0);
                for i in 0..per_thread {
                    let body = format!("{t}:{i}");
                    let lsn = match i % 3 {
                        0 => wal.append(body.as_bytes()).unwrap(),
                        1 => {
                            let range = wal.append_batch(&[body.as_bytes(), b"batch-tail"]).unwrap();
                            assert_eq!(range.end.0 - range.start.0, 2);
                            range.start
                        }
                        _ => wal.append_pipelined(body.as_bytes()).unwrap().wait().unwrap(),
                    };
                    assert!(lsn > last, "a thread's own LSNs increase");
                    last = lsn;
                }
            });
        }
    });
}

fn check(records: &[(Lsn, Vec<u8>)], threads: u64, per_thread: u64, with_batches: bool) {
    let mut seen = HashSet::new();
    let mut next_per_thread = vec![0u64; threads as usize];
    let mut iter = records.iter().peekable();
    while let Some((lsn, body)) = iter.next() {
        let text = String::from_utf8(body.clone()).unwrap();
        assert_ne!(text, "batch-tail", "a batch tail must directly follow its head (LSN {lsn})");
        let (t, i) = text.split_once(':').unwrap();
        let (t, i): (usize, u64) = (t.parse().unwrap(), i.parse().unwrap());
        assert!(seen.insert((t, i)), "duplicate record {text}");
        assert_eq!(i, next_per_thread[t], "thread {t}'s records appear in its own order");
        next_per_thread[t] += 1;
        if with_batches && i % 3 == 1 {
            let (tail_lsn, tail) = iter.next().expect("batch tail");
            assert_eq!(*tail_lsn, lsn.next());
            assert_eq!(tail, b"batch-tail");
        }
    }
    assert!(next_per_thread.iter().all(|&n| n == per_thread));
}

#[test]
fn sixteen_threads_get_unique_gap_free_lsns_in_every_mode() {
    for mode in [FsyncMode::Always, FsyncMode::default(), FsyncMode::Never] {
        let fs = SimFs::new();
        let wal = Wal::open_with(fs.clone(), sim_dir(), small(mode)).unwrap();
        hammer(&wal, 16, 150);
        let records = read_all(&wal);
        assert_eq!(records.len() as u64, 16 * 150 + 16 * 50, "{mode:?}");
        check(&records, 16, 150, true);
        wal.close().unwrap();
        let wal = Wal::open_with(fs, sim_dir(), small(mode)).unwrap();
        assert_eq!(read_all(&wal), records, "{mode:?}: the same after reopen");
    }
}

#[test]
fn always_mode_groups_concurrent_appends_into_fewer_fsyncs() {
    let dir = tempfile::tempdir().unwrap();
    let options = WalOptions { fsync: FsyncMode::Always, segment_bytes: 1 << 20, ..Default::default() };
    let wal = Wal::open(dir.path(), options).unwrap();
    let per_thread = 40;
    std::thread::scope(|s| {
        for t in 0..32 {
            let wal = &wal;
            s.spawn(move || {
                for i in 0..per_thread {
                    wal.append(format!("{t}:{i}").as_bytes()).unwrap();
                }
            });
        }
    });
    let stats = wal.stats();
    let appends = 32 * per_thread;
    // Every append was acknowledged only after a sync covered it, yet syncs
    // were shared: far fewer fsyncs than appends.
    assert!(stats.syncs < appends / 2, "{stats:?} for {appends} appends");
    assert_eq!(wal.durable_lsn(), Lsn(appends));
    check(&read_all(&wal), 32, per_thread, false);
}

#[test]
fn readers_run_while_writers_append() {
    let fs = SimFs::new();
    let wal = Wal::open_with(fs, sim_dir(), small(FsyncMode::Never)).unwrap();
    std::thread::scope(|s| {
        for t in 0..4 {
            let wal = &wal;
            s.spawn(move || {
                for i in 0..300 {
                    wal.append(format!("{t}:{i}").as_bytes()).unwrap();
                }
            });
        }
        let wal = &wal;
        s.spawn(move || {
            for _ in 0..50 {
                let records = read_all(wal);
                // A reader sees a gap-free prefix of the log.
                for (i, (lsn, _)) in records.iter().enumerate() {
                    assert_eq!(*lsn, Lsn(i as u64 + 1));
                }
            }
        });
    });
    assert_eq!(read_all(&wal).len(), 1200);
}

/// In `Periodic` and `Never`, an appender whose record is written but sits
/// behind one whose writer stalled (as a preempted thread does) writes the
/// stalled record's bytes itself and returns: no acknowledgement waits for
/// another thread. Both records are whole after a process crash, and the
/// stalled writer's own (later, identical) write changes nothing.
#[test]
fn an_append_behind_a_stalled_writer_writes_its_record_and_returns() {
    use std::sync::Arc;
    use walden::io::CrashMode;
    for fsync in [FsyncMode::Never, FsyncMode::Periodic { interval: std::time::Duration::from_secs(3600) }] {
        let fs = SimFs::new();
        let wal = Arc::new(Wal::open_with(fs.clone(), crate::common::sim_dir(), crate::common::small(fsync)).unwrap());
        wal.append(b"before").unwrap();
        fs.hold_next_writes(1);
        let stalled = {
            let wal = wal.clone();
            std::thread::spawn(move || wal.append(b"stalled writer"))
        };
        let started = std::time::Instant::now();
        while fs.writes_held() == 0 {
            assert!(started.elapsed() < std::time::Duration::from_secs(30), "the first write never started");
            std::thread::yield_now();
        }
        // LSN 2 is reserved and stalled; LSN 3 is written and acknowledged anyway.
        let behind = wal.append(b"behind it").unwrap();
        assert_eq!(behind, Lsn(3), "{fsync:?}");
        assert!(wal.acknowledged_lsn() >= Lsn(3), "{fsync:?}: acknowledged with its writer still stalled");
        assert_eq!(fs.writes_held(), 1, "{fsync:?}: the stalled write has not happened");
        assert_eq!(wal.stats().helped_writes, 1, "{fsync:?}: the stalled record was written by the appender behind it");
        let records: Vec<Vec<u8>> = crate::common::read_all(&wal).into_iter().map(|(_, p)| p).collect();
        assert_eq!(records, vec![b"before".to_vec(), b"stalled writer".to_vec(), b"behind it".to_vec()]);
        fs.release_writes();
        assert_eq!(stalled.join().unwrap().unwrap(), Lsn(2));
        let wal = Arc::try_unwrap(wal).ok().expect("one owner left");
        drop(wal);
        let wal =
            Wal::open_with(fs.crash(CrashMode::KeepUnsynced), crate::common::sim_dir(), crate::common::small(fsync))
                .unwrap();
        let records: Vec<Vec<u8>> = crate::common::read_all(&wal).into_iter().map(|(_, p)| p).collect();
        assert_eq!(records, vec![b"before".to_vec(), b"stalled writer".to_vec(), b"behind it".to_vec()], "{fsync:?}");
    }
}
