//! Durability from any thread and from async code: owned tickets,
//! `Wal::wait_durable`, and the runtime-agnostic `Durable` future, which
//! never blocks a runtime thread on the write or fdatasync it waits for.

use crate::common::{payload, read_all, sim_dir, small};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use walden::io::{CrashMode, Fault, FaultKind, SimFs, SimOp};
use walden::{Error, FsyncMode, Lsn, Ticket, Wal};

/// Tickets and futures travel between threads and tasks.
const _: () = {
    const fn owned_and_sendable<T: Send + Sync + 'static>() {}
    owned_and_sendable::<Ticket>();
    owned_and_sendable::<Ticket<SimFs>>();
    owned_and_sendable::<walden::Durable>();
    owned_and_sendable::<walden::Durable<SimFs>>();
};

/// Runs `body` on a thread of its own and fails the test (instead of
/// hanging it) if it does not finish in time.
fn within<T: Send + 'static>(limit: Duration, body: impl FnOnce() -> T + Send + 'static) -> T {
    let (done, finished) = mpsc::channel();
    std::thread::spawn(move || done.send(body()).ok());
    finished.recv_timeout(limit).expect("the test body did not finish in time: something blocked")
}

#[test]
fn tickets_waited_on_other_threads_are_durable_after_power_loss() {
    let fs = SimFs::new();
    let wal = Wal::open_with(fs.clone(), sim_dir(), small(FsyncMode::Always)).unwrap();
    let tickets: Vec<Ticket<SimFs>> = (0..200).map(|i| wal.append_pipelined(&payload(i)).unwrap()).collect();
    let (sender, receiver) = mpsc::channel();
    let waiters: Vec<_> = tickets
        .into_iter()
        .enumerate()
        .fold(vec![Vec::new(), Vec::new(), Vec::new(), Vec::new()], |mut groups, (i, t)| {
            groups[i % 4].push(t);
            groups
        })
        .into_iter()
        .map(|group| {
            let sender = sender.clone();
            std::thread::spawn(move || {
                for ticket in group {
                    let expected = ticket.lsn();
                    sender.send(ticket.wait().map(|lsn| (lsn, expected))).unwrap();
                }
            })
        })
        .collect();
    drop(sender);
    waiters.into_iter().for_each(|w| w.join().unwrap());
    let acknowledged: Vec<Lsn> = receiver
        .iter()
        .map(|r| r.unwrap())
        .map(|(lsn, expected)| {
            assert_eq!(lsn, expected);
            lsn
        })
        .collect();
    assert_eq!(acknowledged.len(), 200);
    assert!(wal.durable_lsn() >= Lsn(200), "every waited ticket is synced: {}", wal.durable_lsn());
    let stats = wal.stats();
    drop(wal); // no close(): nothing is synced after the tickets were acknowledged

    let after = fs.crash(CrashMode::DropUnsynced);
    let wal = Wal::open_with(after, sim_dir(), small(FsyncMode::Always)).unwrap();
    let records = read_all(&wal);
    assert_eq!(records.len(), 200, "all acknowledged records survive power loss");
    for (i, (_, p)) in records.iter().enumerate() {
        assert_eq!(p, &payload(i as u64));
    }
    assert!(stats.syncs < 200, "waiters on 4 threads share fdatasyncs: {} syncs", stats.syncs);
}

#[test]
fn wait_durable_syncs_in_always_and_writes_in_never() {
    for fsync in [FsyncMode::Always, FsyncMode::Never] {
        let fs = SimFs::new();
        let wal = Wal::open_with(fs.clone(), sim_dir(), small(fsync)).unwrap();
        let first = wal.append_pipelined(b"one").unwrap().lsn();
        let last = wal.append_pipelined(b"two").unwrap().lsn();
        wal.wait_durable(last).unwrap();
        assert!(wal.acknowledged_lsn() >= last);
        let never_appended = wal.wait_durable(Lsn(last.0 + 1)).unwrap_err();
        assert!(matches!(never_appended, Error::InvalidArgument(_)), "{never_appended:?}");
        drop(wal);
        // A process crash keeps what the kernel has; power loss keeps the
        // synced bytes, which in `Always` cover what wait_durable returned for.
        let crash = if fsync == FsyncMode::Always { CrashMode::DropUnsynced } else { CrashMode::KeepUnsynced };
        let wal = Wal::open_with(fs.crash(crash), sim_dir(), small(fsync)).unwrap();
        let records = read_all(&wal);
        assert_eq!(records, vec![(first, b"one".to_vec()), (last, b"two".to_vec())], "{fsync:?}");
    }
}

/// The future never writes or syncs on the runtime's thread: with syncs
/// held, a runtime of one thread keeps running other tasks while one task
/// awaits a ticket, and that task completes once the sync goes through.
#[test]
fn awaiting_a_ticket_never_blocks_the_runtime_thread() {
    within(Duration::from_secs(60), || {
        let fs = SimFs::new();
        let wal = Wal::open_with(fs.clone(), sim_dir(), small(FsyncMode::Always)).unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
        fs.hold_syncs();
        let ticket = wal.append_pipelined(b"awaited").unwrap();
        let lsn = ticket.lsn();
        runtime.block_on(async {
            let waiting = tokio::spawn(async move { ticket.await });
            // The timer thread leads the round and blocks in the held sync;
            // this task, on the runtime's only thread, goes on meanwhile.
            let started = Instant::now();
            while fs.syncs_held() == 0 {
                assert!(started.elapsed() < Duration::from_secs(30), "no sync was started for the awaiting task");
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
            assert!(!waiting.is_finished(), "acknowledged before its fdatasync returned");
            fs.release_syncs();
            assert_eq!(waiting.await.unwrap().unwrap(), lsn);
        });
        assert!(wal.durable_lsn() >= lsn);
        wal.close().unwrap();
    });
}

/// Many tasks on runtimes of one and of two worker threads each append and
/// await; every one is acknowledged in its mode's terms, and in `Always`
/// they share fdatasyncs.
#[test]
fn many_tasks_await_tickets_on_multi_threaded_runtimes() {
    for (workers, fsync) in [(1, FsyncMode::Always), (2, FsyncMode::Always), (2, FsyncMode::Never)] {
        within(Duration::from_secs(120), move || {
            let fs = SimFs::new();
            let wal = std::sync::Arc::new(Wal::open_with(fs.clone(), sim_dir(), small(fsync)).unwrap());
            let runtime =
                tokio::runtime::Builder::new_multi_thread().worker_threads(workers).enable_time().build().unwrap();
            let results: Vec<(Lsn, u64)> = runtime.block_on(async {
                let tasks: Vec<_> = (0..64u64)
                    .map(|task| {
                        let wal = wal.clone();
                        tokio::spawn(async move {
                            let mut out = Vec::new();
                            for i in 0..20 {
                                let n = task * 20 + i;
                                let lsn = wal.append_pipelined(&payload(n)).unwrap().await.unwrap();
                                assert!(wal.acknowledged_lsn() >= lsn);
                                out.push((lsn, n));
                            }
                            out
                        })
                    })
                    .collect();
                let mut all = Vec::new();
                for task in tasks {
                    all.extend(task.await.unwrap());
                }
                all
            });
            assert_eq!(results.len(), 64 * 20);
            let stats = wal.stats();
            if fsync == FsyncMode::Always {
                assert!(wal.durable_lsn() >= Lsn(64 * 20), "{workers} workers: everything awaited is synced");
                assert!(stats.syncs < 64 * 20, "{workers} workers: tasks share fdatasyncs ({} syncs)", stats.syncs);
            }
            let wal = std::sync::Arc::try_unwrap(wal).ok().expect("the tasks are done");
            drop(wal);
            let crash = if fsync == FsyncMode::Always { CrashMode::DropUnsynced } else { CrashMode::KeepUnsynced };
            let wal = Wal::open_with(fs.crash(crash), sim_dir(), small(fsync)).unwrap();
            let records = read_all(&wal);
            assert_eq!(records.len(), 64 * 20, "{workers} workers, {fsync:?}");
            for (lsn, n) in results {
                assert_eq!(records[(lsn.0 - 1) as usize].1, payload(n));
            }
        });
    }
}

/// A failed fdatasync poisons the log: the awaiting task gets the error,
/// not an acknowledgement, and so does a ticket waited on afterwards.
#[test]
fn an_awaited_ticket_reports_a_failed_fsync() {
    within(Duration::from_secs(60), || {
        let fs = SimFs::new();
        let wal = Wal::open_with(fs.clone(), sim_dir(), small(FsyncMode::Always)).unwrap();
        fs.inject(Fault { at_call: 1, kind: FaultKind::SyncLosesData, persistent: true, only: Some(SimOp::Sync) });
        let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
        let ticket = wal.append_pipelined(b"lost").unwrap();
        let outcome = runtime.block_on(async move { ticket.await });
        assert!(matches!(outcome, Err(Error::Poisoned(_))), "{outcome:?}");
        let later = wal.append_pipelined(b"after");
        assert!(matches!(later, Err(Error::Poisoned(_))), "the log takes no more appends");
        let awaited = runtime.block_on(wal.durable(Lsn(1)));
        assert!(matches!(awaited, Err(Error::Poisoned(_))), "{awaited:?}");
    });
}
