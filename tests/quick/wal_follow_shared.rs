//! `Wal::follow` with many followers: they share one reading of the files
//! (each record read and checked once, `WalStats::follower_records_shared`),
//! a stuck one holds nobody back, one that falls behind the shared window
//! reads the files on its own (`follower_records_alone`) and then rejoins
//! it, and records removed by truncation are `Error::Compacted` even while
//! the window still holds them.

use crate::common::{payload, sim_dir, small};
use std::sync::{mpsc, Arc};
use std::time::Duration;
use walden::io::SimFs;
use walden::{Error, FsyncMode, Lsn, Wal, WalOptions};

const MODES: [FsyncMode; 3] =
    [FsyncMode::Always, FsyncMode::Periodic { interval: Duration::from_millis(2) }, FsyncMode::Never];

/// Runs `body` on a thread of its own and fails the test (instead of
/// hanging it) if it does not finish in time.
fn within<T: Send + 'static>(limit: Duration, body: impl FnOnce() -> T + Send + 'static) -> T {
    let (done, finished) = mpsc::channel();
    std::thread::spawn(move || done.send(body()).ok());
    finished.recv_timeout(limit).expect("the test body did not finish in time: something blocked")
}

/// Reads `follower` until `last` was delivered; every record's LSN and payload.
fn read_until(follower: &mut walden::wal::Follower<SimFs>, last: Lsn) -> Vec<(Lsn, Vec<u8>)> {
    let mut seen = Vec::new();
    while seen.last().is_none_or(|(lsn, _)| *lsn < last) {
        let record = follower.next_timeout(Duration::from_secs(20)).expect("a record within 20 s").unwrap();
        seen.push((record.lsn, record.payload));
    }
    seen
}

/// Four followers read while three writers append (single records and
/// batches); a fifth is stuck (never reads) the whole time. Each reader
/// sees every LSN once, in order, with its payload; the files were read
/// once for all of them; the stuck one then reads everything too.
#[test]
fn followers_share_one_reading_of_each_record_and_a_stuck_one_holds_nobody_back() {
    for fsync in MODES {
        within(Duration::from_secs(120), move || {
            let wal = Arc::new(Wal::open_with(SimFs::new(), sim_dir(), small(fsync)).unwrap());
            let mut stuck = wal.follow(Lsn(1)).unwrap();
            let (writers, per_writer) = (3u64, 300u64);
            // Each writer appends `per_writer` records: 2 single appends, then a batch of 3.
            let total = writers * per_writer;
            let readers: Vec<_> = (0..4)
                .map(|_| {
                    let mut follower = wal.follow(Lsn(1)).unwrap();
                    std::thread::spawn(move || read_until(&mut follower, Lsn(total)))
                })
                .collect();
            let appenders: Vec<_> = (0..writers)
                .map(|w| {
                    let wal = wal.clone();
                    std::thread::spawn(move || {
                        let mut i = 0;
                        while i < per_writer {
                            let p = |k: u64| payload(w * per_writer + k);
                            if i % 5 == 2 {
                                wal.append_batch(&[p(i), p(i + 1), p(i + 2)]).unwrap();
                                i += 3;
                            } else {
                                wal.append(&p(i)).unwrap();
                                i += 1;
                            }
                        }
                    })
                })
                .collect();
            appenders.into_iter().for_each(|a| a.join().unwrap());
            assert_eq!(wal.acknowledged_lsn(), Lsn(total), "{fsync:?}: the stuck follower held no append back");
            let expected: Vec<_> =
                wal.read_from(Lsn(1)).unwrap().map(|r| r.map(|r| (r.lsn, r.payload)).unwrap()).collect();
            assert_eq!(expected.len() as u64, total);
            for reader in readers {
                assert!(reader.join().unwrap() == expected, "{fsync:?}: every LSN once, in order, with its payload");
            }
            assert_eq!(stuck.next_lsn(), Lsn(1), "nothing was delivered to the stuck follower");
            assert!(read_until(&mut stuck, Lsn(total)) == expected, "{fsync:?}: the stuck one, late, sees it all");
            let stats = wal.stats();
            assert_eq!(stats.follower_records_shared, total, "{fsync:?}: each record read from the files once");
            assert_eq!(stats.follower_records_alone, 0, "{fsync:?}: nobody fell behind the window");
        });
    }
}

/// A follower stuck while more than the window holds is appended and read
/// by another falls out of the window: it reads the files on its own up
/// to where the window starts, then from the window, every LSN once.
#[test]
fn a_follower_that_falls_behind_the_shared_window_reads_the_files_then_rejoins_it() {
    within(Duration::from_secs(120), || {
        let options = WalOptions { fsync: FsyncMode::Never, segment_bytes: 1 << 20, ..Default::default() };
        let wal = Wal::open_with(SimFs::new(), sim_dir(), options).unwrap();
        let mut stuck = wal.follow(Lsn(1)).unwrap();
        assert!(stuck.try_next().is_none(), "nothing yet");
        let mut fast = wal.follow(Lsn(1)).unwrap();
        let record = |i: u64| {
            let mut p = payload(i);
            p.resize(1024, b'x');
            p
        };
        // 16 MiB of payloads: twice what the window holds.
        let count = 16 * 1024u64;
        for i in 0..count {
            let lsn = wal.append(&record(i)).unwrap();
            let got = fast.try_next().expect("acknowledged").unwrap();
            assert_eq!((got.lsn, got.payload), (lsn, record(i)), "the fast follower keeps up");
        }
        assert_eq!(wal.stats().follower_records_shared, count);
        let mut expected = Lsn(1);
        while let Some(got) = stuck.try_next() {
            let got = got.unwrap();
            assert_eq!((got.lsn, got.payload), (expected, record(expected.0 - 1)), "every LSN once, in order");
            expected = expected.next();
        }
        assert_eq!(expected, Lsn(count + 1), "caught up");
        let stats = wal.stats();
        assert!(stats.follower_records_alone > 0, "it fell out of the window and read the files itself");
        assert!(stats.follower_records_alone < count, "then rejoined the window: {stats:?}");
        assert_eq!(stats.follower_records_shared, count, "and the window's records were not read again");
    });
}

/// Records still in the shared window, or in the batch a follower holds,
/// are not delivered once truncation removed their segment: the follower
/// gets the compacted error naming the oldest LSN held, never a gap; a
/// follower from the oldest LSN held reads on from the window.
#[test]
fn followers_whose_records_were_truncated_get_the_compacted_error_even_from_the_window() {
    within(Duration::from_secs(60), || {
        let wal = Wal::open_with(SimFs::new(), sim_dir(), small(FsyncMode::Never)).unwrap();
        for i in 0..400 {
            wal.append(&payload(i)).unwrap();
        }
        let mut holding = wal.follow(Lsn(1)).unwrap();
        let first = holding.try_next().unwrap().unwrap();
        assert_eq!(first.lsn, Lsn(1), "it now holds the batch of records after LSN 1");
        let mut waiting = wal.follow(Lsn(2)).unwrap();
        let mut reader = wal.follow(Lsn(1)).unwrap();
        for i in 0..400u64 {
            assert_eq!(reader.try_next().unwrap().unwrap().payload, payload(i));
        }
        assert!(wal.truncate_before(Lsn(300)).unwrap() > 0);
        let oldest = wal.first_lsn();
        assert!(oldest > Lsn(2));
        for (follower, lsn) in [(&mut holding, Lsn(2)), (&mut waiting, Lsn(2))] {
            match follower.try_next() {
                Some(Err(Error::Compacted { lsn: needed, oldest: named })) => {
                    assert_eq!((needed, named), (lsn, oldest), "names the LSN it needed and the oldest held");
                }
                other => panic!("expected the compacted error, got {:?}", other.map(|r| r.map(|r| r.lsn))),
            }
            assert!(follower.next().is_none(), "the error ends the follow");
        }
        let mut from_oldest = wal.follow(oldest).unwrap();
        let mut expected = oldest;
        while let Some(got) = from_oldest.try_next() {
            assert_eq!(got.unwrap().payload, payload(expected.0 - 1));
            expected = expected.next();
        }
        assert_eq!(expected, Lsn(401), "from the oldest held to the end, no gap");
        assert_eq!(wal.stats().follower_records_alone, 0, "all of it from the window");
    });
}
