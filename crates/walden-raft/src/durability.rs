//! Waiting for durability off the Raft core's task: the flusher thread.
//!
//! An append stages its records in the log ([`walden::Wal::append_batch_pipelined`])
//! and hands the flusher a job: "tell me when LSN n is durable". The flusher
//! takes every job queued, waits once for the highest LSN among them (one
//! fdatasync covers them all: group commit across appends), then completes
//! them in order. The Raft core never blocks on an fsync for an append.
//! (`save_vote` and the other calls that must be durable when they return
//! await the log's own durability future instead, which joins the same
//! group commit.)
//!
//! A lazy job ([`Flusher::submit_lazy`], what `save_committed` hands over)
//! asks for durability within a bound, not now: when the flusher finds only
//! lazy jobs queued, it waits up to [`LAZY_SYNC_DELAY_MAX`] for a job that
//! is not lazy (an append, whose fdatasync covers the lazy record too, as
//! the log is written in LSN order), then syncs anyway. So a committed
//! record is durable at most `LAZY_SYNC_DELAY_MAX` plus one fdatasync after
//! it was staged, and under load it costs no fdatasync of its own.
//!
//! **Invariant:** a job completes with `Ok` only once every record up to its
//! LSN is on stable storage; after a failure, every later job fails too
//! (the log is poisoned).

use parking_lot::Mutex;
use std::io;
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use walden::io::Vfs;
use walden::{Lsn, Wal};

/// Called once the records up to a job's LSN are durable, or with the error.
pub(crate) type Done = Box<dyn FnOnce(io::Result<()>) + Send>;

struct Job {
    lsn: Lsn,
    done: Done,
    lazy: bool,
}

/// The longest a lazy job waits for an append to carry it before the
/// flusher syncs for it alone.
pub const LAZY_SYNC_DELAY_MAX: std::time::Duration = std::time::Duration::from_millis(2);

/// What the flusher does after each durable LSN (the log store drops its
/// cached copies of entries now readable from the log).
pub(crate) type AfterDurable = Box<dyn Fn(Lsn) + Send>;

/// The flusher thread and its queue. Dropping it stops the thread once the
/// queued jobs are done.
pub(crate) struct Flusher {
    tx: Mutex<Option<mpsc::Sender<Job>>>,
    thread: Option<JoinHandle<()>>,
}

impl Flusher {
    pub fn start<V: Vfs>(wal: Arc<Wal<V>>, after: AfterDurable) -> io::Result<Flusher> {
        let (tx, rx) = mpsc::channel::<Job>();
        let thread = std::thread::Builder::new().name("walden-raft-flush".into()).spawn(move || {
            let mut failed: Option<String> = None;
            while let Ok(first) = rx.recv() {
                let mut jobs = vec![first];
                jobs.extend(rx.try_iter());
                if jobs.iter().all(|j| j.lazy) {
                    let deadline = std::time::Instant::now() + LAZY_SYNC_DELAY_MAX;
                    while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
                        match rx.recv_timeout(left) {
                            Ok(job) => {
                                let eager = !job.lazy;
                                jobs.push(job);
                                if eager {
                                    jobs.extend(rx.try_iter());
                                    break;
                                }
                            }
                            Err(_) => break,
                        }
                    }
                }
                let upto = jobs.iter().map(|j| j.lsn).max().expect("at least one job");
                let result = match &failed {
                    Some(why) => Err(why.clone()),
                    None => wal.wait_durable(upto).map_err(|e| e.to_string()),
                };
                match &result {
                    Ok(()) => after(upto),
                    Err(why) => failed = Some(why.clone()),
                }
                for job in jobs {
                    let r = result.clone().map_err(|why| io::Error::other(format!("LSN {}: {why}", job.lsn)));
                    (job.done)(r);
                }
            }
        })?;
        Ok(Flusher { tx: Mutex::new(Some(tx)), thread: Some(thread) })
    }

    /// Queues `done` to run once every record up to `lsn` is durable.
    pub fn submit(&self, lsn: Lsn, done: Done) {
        self.send(Job { lsn, done, lazy: false });
    }

    /// Asks for every record up to `lsn` to be durable within
    /// [`LAZY_SYNC_DELAY_MAX`] plus one fdatasync (sooner if an append
    /// comes); `done` runs then.
    pub fn submit_lazy(&self, lsn: Lsn, done: Done) {
        self.send(Job { lsn, done, lazy: true });
    }

    fn send(&self, job: Job) {
        let tx = self.tx.lock();
        let sent = tx.as_ref().map(|tx| tx.send(job));
        if let Some(Err(mpsc::SendError(job))) = sent {
            (job.done)(Err(io::Error::other("the flusher thread is gone")));
        }
    }
}

impl Drop for Flusher {
    fn drop(&mut self) {
        self.tx.lock().take();
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                log::error!("walden-raft: the flusher thread panicked");
            }
        }
    }
}
