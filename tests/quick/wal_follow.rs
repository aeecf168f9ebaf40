//! `Wal::follow`: every acknowledged record from an LSN on, in LSN order,
//! those already in the log and then each new one as it is acknowledged,
//! blocking or async, never one that is not acknowledged, and an error (not
//! a skip) where the records it needs were truncated away.

use crate::common::{payload, sim_dir, small};
use std::collections::BTreeMap;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};
use walden::io::{Fault, FaultKind, SimFs, SimOp};
use walden::{Error, FsyncMode, Lsn, Wal};

/// Followers travel between threads and tasks.
const _: () = {
    const fn owned_and_sendable<T: Send + 'static>() {}
    owned_and_sendable::<walden::wal::Follower>();
    owned_and_sendable::<walden::wal::Follower<SimFs>>();
};

const MODES: [FsyncMode; 3] =
    [FsyncMode::Always, FsyncMode::Periodic { interval: Duration::from_millis(2) }, FsyncMode::Never];

/// Runs `body` on a thread of its own and fails the test (instead of
/// hanging it) if it does not finish in time.
fn within<T: Send + 'static>(limit: Duration, body: impl FnOnce() -> T + Send + 'static) -> T {
    let (done, finished) = mpsc::channel();
    std::thread::spawn(move || done.send(body()).ok());
    finished.recv_timeout(limit).expect("the test body did not finish in time: something blocked")
}

/// Follows from `from` until `last` is delivered, checking that each record
/// was acknowledged when it came.
fn follow_until(wal: &Arc<Wal<SimFs>>, from: Lsn, last: Lsn) -> Vec<(Lsn, Vec<u8>)> {
    let mut follower = wal.follow(from).unwrap();
    let mut seen = Vec::new();
    while seen.last().is_none_or(|(lsn, _)| *lsn < last) {
        let record = follower.next_timeout(Duration::from_secs(20)).expect("a record within 20 s").unwrap();
        assert!(wal.acknowledged_lsn() >= record.lsn, "LSN {} delivered before it was acknowledged", record.lsn);
        seen.push((record.lsn, record.payload));
    }
    seen
}

/// 3 writers append single records and batches of 3; what each got back is
/// the acknowledged sequence.
fn append_concurrently(wal: &Arc<Wal<SimFs>>, writers: u64, rounds: u64) -> BTreeMap<Lsn, Vec<u8>> {
    let handles: Vec<_> = (0..writers)
        .map(|w| {
            let wal = wal.clone();
            std::thread::spawn(move || {
                let mut got = Vec::new();
                for i in 0..rounds {
                    let base = (w * rounds + i) * 4;
                    if i % 3 == 2 {
                        let batch = [payload(base), payload(base + 1), payload(base + 2)];
                        let lsns = wal.append_batch(&batch).unwrap();
                        assert_eq!(lsns.end.0 - lsns.start.0, 3);
                        for (lsn, p) in (lsns.start.0..lsns.end.0).zip(batch) {
                            got.push((Lsn(lsn), p));
                        }
                    } else {
                        let p = payload(base);
                        got.push((wal.append(&p).unwrap(), p));
                    }
                }
                got
            })
        })
        .collect();
    handles.into_iter().flat_map(|h| h.join().unwrap()).collect()
}

#[test]
fn followers_from_anywhere_see_exactly_the_acknowledged_sequence_in_every_mode() {
    for fsync in MODES {
        within(Duration::from_secs(120), move || {
            let fs = SimFs::new();
            let wal = Arc::new(Wal::open_with(fs.clone(), sim_dir(), small(fsync)).unwrap());
            // LSNs 1..=3: a batch, so one follower can start inside it.
            let first = wal.append_batch(&[b"a".as_slice(), b"b", b"c"]).unwrap();
            assert_eq!(first, Lsn(1)..Lsn(4));
            let (writers, rounds) = (3u64, 150u64);
            let appended = 3 + writers * rounds + writers * (rounds / 3) * 2;
            let last = Lsn(appended);
            // From the first LSN, inside the batch, at the end, past the end.
            let starts = [Lsn(1), Lsn(2), Lsn(4), Lsn(200)];
            let followers: Vec<_> = starts
                .iter()
                .map(|&from| {
                    let wal = wal.clone();
                    std::thread::spawn(move || (from, follow_until(&wal, from, last)))
                })
                .collect();
            let mut acknowledged = append_concurrently(&wal, writers, rounds);
            acknowledged.extend([(Lsn(1), b"a".to_vec()), (Lsn(2), b"b".to_vec()), (Lsn(3), b"c".to_vec())]);
            assert_eq!(acknowledged.len() as u64, appended, "{fsync:?}: every append got its own LSN");
            assert_eq!(acknowledged.keys().last(), Some(&last));
            for follower in followers {
                let (from, seen) = follower.join().unwrap();
                let expected: Vec<_> = acknowledged.range(from..).map(|(l, p)| (*l, p.clone())).collect();
                assert_eq!(seen.len(), expected.len(), "{fsync:?} from {from}: no gap, no duplicate");
                assert!(seen == expected, "{fsync:?} from {from}: the acknowledged sequence, in order");
            }
            // A follower below the oldest LSN kept is refused, naming it.
            assert!(wal.stats().segments > 3, "small segments: the log rolled over");
            let removed = wal.truncate_before(Lsn(100)).unwrap();
            assert!(removed > 0);
            let oldest = wal.first_lsn();
            match wal.follow(Lsn(1)) {
                Err(e @ Error::Compacted { .. }) => {
                    assert!(matches!(e, Error::Compacted { lsn: Lsn(1), oldest: o } if o == oldest));
                    assert!(e.to_string().contains(&format!("oldest LSN it holds is {oldest}")), "{e}");
                }
                other => panic!("{fsync:?}: {:?}", other.map(|f| f.next_lsn())),
            }
            let from_oldest = follow_until(&wal, oldest, last);
            assert_eq!(from_oldest.first().map(|r| r.0), Some(oldest), "{fsync:?}: the oldest kept is followable");
        });
    }
}

#[test]
fn a_lagging_follower_whose_segments_are_truncated_gets_the_compacted_error_not_a_skip() {
    within(Duration::from_secs(60), || {
        let fs = SimFs::new();
        let wal = Wal::open_with(fs, sim_dir(), small(FsyncMode::Never)).unwrap();
        wal.append(b"first").unwrap();
        let mut follower = wal.follow(Lsn(1)).unwrap();
        assert_eq!(follower.try_next().unwrap().unwrap().lsn, Lsn(1));
        for i in 0..400 {
            wal.append(&payload(i)).unwrap();
        }
        assert!(wal.truncate_before(Lsn(300)).unwrap() > 0);
        let oldest = wal.first_lsn();
        assert!(oldest > Lsn(2));
        match follower.try_next() {
            Some(Err(Error::Compacted { lsn, oldest: named })) => {
                assert_eq!((lsn, named), (Lsn(2), oldest), "names the LSN it needed and the oldest held");
            }
            other => panic!("expected the compacted error, got {:?}", other.map(|r| r.map(|r| r.lsn))),
        }
        assert!(follower.next().is_none(), "the error ends the follow");
    });
}

/// A follower with a retention hold keeps what it has still to read from
/// `truncate_before`: it reads on with no gap after the truncation that
/// would have removed it, and the segments go once it has read past them or
/// is dropped.
#[test]
fn a_retained_follower_keeps_its_unread_segments_from_truncation_until_it_reads_past_them() {
    within(Duration::from_secs(60), || {
        let wal = Wal::open_with(SimFs::new(), sim_dir(), small(FsyncMode::Never)).unwrap();
        for i in 0..400 {
            wal.append(&payload(i)).unwrap();
        }
        let mut held = wal.follow_retained(Lsn(1), u64::MAX).unwrap();
        let mut plain = wal.follow(Lsn(1)).unwrap();
        let segments = wal.stats().segments;
        assert!(segments > 3);
        assert_eq!(wal.truncate_before(Lsn(300)).unwrap(), 0, "the hold keeps every segment from LSN 1");
        assert_eq!(wal.first_lsn(), Lsn(1));
        // Read half: the segments wholly before its next LSN may go.
        for i in 0..200u64 {
            let record = held.try_next().unwrap().unwrap();
            assert_eq!((record.lsn, record.payload), (Lsn(i + 1), payload(i)));
        }
        assert!(wal.truncate_before(Lsn(300)).unwrap() > 0, "what it read is no longer held");
        let oldest = wal.first_lsn();
        assert!(oldest > Lsn(1) && oldest <= Lsn(201), "kept from its next LSN (201) on: oldest {oldest}");
        for i in 200..400u64 {
            let record = held.try_next().unwrap().unwrap();
            assert_eq!((record.lsn, record.payload), (Lsn(i + 1), payload(i)), "no gap");
        }
        // The follower without a hold lost its records to the same truncation.
        assert!(matches!(plain.try_next(), Some(Err(Error::Compacted { lsn: Lsn(1), .. }))));
        // Dropped, the hold lets the rest go.
        drop(held);
        assert!(wal.truncate_before(Lsn(300)).unwrap() > 0);
        assert!(wal.first_lsn() > Lsn(201));
    });
}

/// A retention hold is bounded: it keeps at most its `keep_bytes` of sealed
/// segments, the newest; a follower further behind gets the compacted error
/// for the older ones, never a gap. A hold on records already gone is
/// refused.
#[test]
fn a_retention_hold_keeps_at_most_its_bound_and_a_follower_behind_it_gets_the_compacted_error() {
    within(Duration::from_secs(60), || {
        let wal = Wal::open_with(SimFs::new(), sim_dir(), small(FsyncMode::Never)).unwrap();
        let mut held = wal.follow_retained(Lsn(1), 3 * 4096).unwrap();
        for i in 0..800 {
            wal.append(&payload(i)).unwrap();
        }
        let segments = wal.stats().segments;
        assert!(segments > 6, "{segments} segments of 4 KiB");
        assert!(wal.truncate_before(Lsn(800)).unwrap() > 0, "past the bound, older segments go");
        let kept = wal.stats().segments;
        assert_eq!(kept, 4, "the newest 3 sealed segments of 4 KiB kept (its bound), and the active one");
        let oldest = wal.first_lsn();
        assert!(oldest > Lsn(1));
        match held.try_next() {
            Some(Err(Error::Compacted { lsn, oldest: named })) => assert_eq!((lsn, named), (Lsn(1), oldest)),
            other => panic!("expected the compacted error, got {:?}", other.map(|r| r.map(|r| r.lsn))),
        }
        assert!(matches!(
            wal.follow_retained(Lsn(1), u64::MAX),
            Err(Error::Compacted { lsn: Lsn(1), oldest: named }) if named == oldest
        ));
        // From the oldest held, a bounded hold reads everything there is.
        let mut from_oldest = wal.follow_retained(oldest, 3 * 4096).unwrap();
        let mut expected = oldest;
        while let Some(record) = from_oldest.try_next() {
            assert_eq!(record.unwrap().lsn, expected);
            expected = expected.next();
        }
        assert_eq!(expected, Lsn(801));
    });
}

/// In `Always`, a record whose fdatasync failed was written into the file
/// but is never acknowledged: the follower never delivers it, whether the
/// sync failed with EIO or "succeeded" with the data gone on the next one.
#[test]
fn a_follower_never_delivers_a_record_whose_fdatasync_failed() {
    for (kind, at_call) in [(FaultKind::Eio, 1), (FaultKind::SyncLosesData, 1)] {
        within(Duration::from_secs(60), move || {
            let fs = SimFs::new();
            let wal = Arc::new(Wal::open_with(fs.clone(), sim_dir(), small(FsyncMode::Always)).unwrap());
            wal.append(b"kept-1").unwrap();
            wal.append(b"kept-2").unwrap();
            let mut follower = wal.follow(Lsn(1)).unwrap();
            fs.hold_syncs();
            fs.inject(Fault { at_call, kind, persistent: false, only: Some(SimOp::Sync) });
            let writer = {
                let wal = wal.clone();
                std::thread::spawn(move || wal.append(b"lost"))
            };
            let started = Instant::now();
            while fs.syncs_held() == 0 {
                assert!(started.elapsed() < Duration::from_secs(30), "no fdatasync was started");
                std::thread::sleep(Duration::from_millis(1));
            }
            // Written, its sync in flight: the follower stops before it.
            let seen: Vec<Lsn> = std::iter::from_fn(|| follower.next_timeout(Duration::from_millis(50)))
                .map(|r| r.unwrap().lsn)
                .collect();
            assert_eq!(seen, [Lsn(1), Lsn(2)], "{kind:?}: only the acknowledged records");
            fs.release_syncs();
            assert!(matches!(writer.join().unwrap(), Err(Error::Poisoned(_))), "{kind:?}: the append failed");
            match follower.next_timeout(Duration::from_secs(10)) {
                Some(Err(Error::Poisoned(_))) => {}
                other => panic!("{kind:?}: expected the poisoning, got {:?}", other.map(|r| r.map(|r| r.lsn))),
            }
            assert!(follower.next().is_none(), "{kind:?}: nothing after the poisoning");
            assert_eq!(wal.acknowledged_lsn(), Lsn(2));
        });
    }
}

/// A follower that does not read holds nothing: the appenders run as they
/// would without it, and it is delivered only what it asks for, from the
/// files, when it asks.
#[test]
fn an_idle_follower_leaves_appends_alone_and_holds_nothing() {
    within(Duration::from_secs(120), || {
        let dir = tempfile::tempdir().unwrap();
        let options = walden::WalOptions { fsync: FsyncMode::Never, segment_bytes: 1 << 20, ..Default::default() };
        let wal = Wal::open(dir.path(), options).unwrap();
        let mut idle = wal.follow(Lsn(1)).unwrap();
        let count = 100_000u64;
        for i in 0..count {
            wal.append(&payload(i)).unwrap();
        }
        assert_eq!(wal.acknowledged_lsn(), Lsn(count), "every append completed with the follower held");
        assert_eq!(idle.next_lsn(), Lsn(1), "nothing was delivered that it did not ask for");
        // Truncation is not held back by it either.
        wal.sync().unwrap();
        assert!(wal.stats().segments > 3);
        let kept = wal.truncate_before(Lsn(count / 2)).unwrap();
        assert!(kept > 0, "segments an idle follower has not read can be removed");
        assert!(matches!(idle.try_next(), Some(Err(Error::Compacted { lsn: Lsn(1), .. }))));
        // A follower from the oldest kept reads the rest, in order, from the files.
        let oldest = wal.first_lsn();
        let mut follower = wal.follow(oldest).unwrap();
        let mut expected = oldest;
        while let Some(record) = follower.try_next() {
            let record = record.unwrap();
            assert_eq!((record.lsn, record.payload), (expected, payload(expected.0 - 1)));
            expected = expected.next();
        }
        assert_eq!(expected, Lsn(count + 1), "caught up");
        assert!(follower.try_next().is_none(), "nothing more yet");
        wal.close().unwrap();
        assert!(matches!(follower.try_next(), Some(Err(Error::Closed))), "the end, once caught up");
    });
}

#[test]
fn a_blocking_follower_ends_when_the_log_closes_after_delivering_everything() {
    within(Duration::from_secs(60), || {
        let wal = Wal::open_with(SimFs::new(), sim_dir(), small(FsyncMode::Always)).unwrap();
        let follower = wal.follow(Lsn(1)).unwrap();
        let reader = std::thread::spawn(move || follower.map(|r| r.unwrap().lsn.0).collect::<Vec<_>>());
        for i in 0..50 {
            wal.append(&payload(i)).unwrap();
        }
        wal.close().unwrap();
        assert_eq!(reader.join().unwrap(), (1..=50).collect::<Vec<_>>());
    });
}

/// `next_ref` lends each record instead of copying it: from the start and
/// from inside a batch, while writers append, it sees exactly the
/// acknowledged sequence, then ends once the log closes; a lagging one
/// whose records were truncated away gets the compacted error, then ends.
#[test]
fn a_lending_follower_sees_the_acknowledged_sequence_and_ends_with_the_log() {
    for fsync in MODES {
        within(Duration::from_secs(120), move || {
            let wal = Arc::new(Wal::open_with(SimFs::new(), sim_dir(), small(fsync)).unwrap());
            wal.append_batch(&[b"a".as_slice(), b"b", b"c"]).unwrap();
            let lenders: Vec<_> = [Lsn(1), Lsn(2)]
                .into_iter()
                .map(|from| {
                    let mut follower = wal.follow(from).unwrap();
                    std::thread::spawn(move || {
                        let mut seen = Vec::new();
                        while let Some(record) = follower.next_ref() {
                            let (lsn, payload) = record.unwrap();
                            seen.push((lsn, payload.to_vec()));
                        }
                        (from, seen)
                    })
                })
                .collect();
            let mut acknowledged = append_concurrently(&wal, 3, 90);
            acknowledged.extend([(Lsn(1), b"a".to_vec()), (Lsn(2), b"b".to_vec()), (Lsn(3), b"c".to_vec())]);
            Arc::try_unwrap(wal).ok().expect("the writers are done").close().unwrap();
            for lender in lenders {
                let (from, seen) = lender.join().unwrap();
                let expected: Vec<_> = acknowledged.range(from..).map(|(l, p)| (*l, p.clone())).collect();
                assert_eq!(seen.len(), expected.len(), "{fsync:?} from {from}: no gap, no duplicate");
                assert!(seen == expected, "{fsync:?} from {from}: the acknowledged sequence, in order");
            }
        });
    }
    within(Duration::from_secs(60), || {
        let wal = Wal::open_with(SimFs::new(), sim_dir(), small(FsyncMode::Never)).unwrap();
        wal.append(b"first").unwrap();
        let mut follower = wal.follow(Lsn(1)).unwrap();
        assert_eq!(follower.next_ref().unwrap().unwrap(), (Lsn(1), b"first".as_slice()));
        for i in 0..400 {
            wal.append(&payload(i)).unwrap();
        }
        assert!(wal.truncate_before(Lsn(300)).unwrap() > 0);
        let oldest = wal.first_lsn();
        match follower.next_ref() {
            Some(Err(Error::Compacted { lsn, oldest: named })) => assert_eq!((lsn, named), (Lsn(2), oldest)),
            other => panic!("expected the compacted error, got {:?}", other.map(|r| r.map(|r| r.0))),
        }
        assert!(follower.next_ref().is_none(), "the error ends the follow");
    });
}

#[test]
fn following_from_lsn_zero_is_a_usage_error() {
    let wal = Wal::open_with(SimFs::new(), sim_dir(), small(FsyncMode::Never)).unwrap();
    assert!(matches!(wal.follow(Lsn::ZERO), Err(Error::InvalidArgument(_))));
}

/// The async follower, awaited on tokio while threads append: the same
/// sequence, and the end once the log closes.
#[test]
fn an_async_follower_awaited_on_tokio_sees_the_acknowledged_sequence() {
    for fsync in MODES {
        within(Duration::from_secs(60), move || {
            let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
            let wal = Arc::new(Wal::open_with(SimFs::new(), sim_dir(), small(fsync)).unwrap());
            let followers: Vec<_> = [Lsn(1), Lsn(37)]
                .into_iter()
                .map(|from| {
                    let mut follower = wal.follow(from).unwrap();
                    runtime.spawn(async move {
                        let mut seen = Vec::new();
                        while let Some(record) = follower.next_async().await {
                            seen.push((record.unwrap().lsn, follower.next_lsn()));
                        }
                        (from, seen)
                    })
                })
                .collect();
            let acknowledged = append_concurrently(&wal, 2, 60);
            let last = *acknowledged.keys().last().unwrap();
            Arc::into_inner(wal).expect("the only handle").close().unwrap();
            for follower in followers {
                let (from, seen) = runtime.block_on(follower).unwrap();
                let expected: Vec<_> = (from.0..=last.0).map(|l| (Lsn(l), Lsn(l + 1))).collect();
                assert!(seen == expected, "{fsync:?} from {from}: every LSN once, in order, then the end");
            }
        });
    }
}
