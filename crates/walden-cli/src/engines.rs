//! The engines `walden bench` compares, one function each, and the harness
//! that runs a fixed number of operations on N writer threads.

use crate::latency::nanos;
use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Barrier;
use std::time::{Duration, Instant};
use walden::{FsyncMode, Ticket, Wal, WalOptions, WalStats};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub type Result<T> = std::result::Result<T, BoxError>;

/// A durability level, as each engine spells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Always,
    Periodic,
    Never,
}

impl Mode {
    pub const ALL: [Mode; 3] = [Mode::Always, Mode::Periodic, Mode::Never];

    pub fn name(self) -> &'static str {
        match self {
            Mode::Always => "always",
            Mode::Periodic => "periodic",
            Mode::Never => "never",
        }
    }

    pub fn fsync(self) -> FsyncMode {
        match self {
            Mode::Always => FsyncMode::Always,
            Mode::Periodic => FsyncMode::Periodic { interval: Duration::from_millis(10) },
            Mode::Never => FsyncMode::Never,
        }
    }

    /// SQLite's `PRAGMA synchronous` for the same promise (in WAL mode):
    /// FULL syncs the WAL at every commit, NORMAL only at checkpoints, OFF never.
    pub fn sqlite_synchronous(self) -> &'static str {
        match self {
            Mode::Always => "FULL",
            Mode::Periodic => "NORMAL",
            Mode::Never => "OFF",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Api {
    /// `Wal::append`: each call returns once acknowledged.
    Blocking,
    /// `Wal::append_pipelined` with a window of tickets in flight.
    Pipelined,
}

impl Api {
    pub fn name(self) -> &'static str {
        match self {
            Api::Blocking => "blocking",
            Api::Pipelined => "pipelined",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    Walden(Mode, Api),
    /// SQLite, journal_mode=WAL, one autocommit INSERT per record.
    Sqlite(Mode),
    /// pwrite() of each record, appending to a new file.
    RawWrite,
    /// pwrite() + fdatasync() of each record, into a zero-filled file.
    RawFdatasync,
    /// pwrite() of each record, appending to a new file, plus an
    /// fdatasync each time another [`SEGMENT_BYTES`] have been written: the
    /// least a log that syncs each segment whole at its roll-over must pay.
    RawSegmented,
    /// The records gathered into 1 MiB pwrite()s, with an fdatasync each
    /// time another [`SEGMENT_BYTES`] have been written: the disk's
    /// sequential write rate, the ceiling of pipelined appends that a
    /// segmented log syncs at each roll-over.
    RawSequential,
}

/// walden's default segment size, which `RawSegmented` syncs at.
pub const SEGMENT_BYTES: u64 = 64 << 20;

impl Engine {
    pub fn name(self) -> &'static str {
        match self {
            Engine::Walden(..) => "walden",
            Engine::Sqlite(_) => "sqlite",
            Engine::RawWrite => "raw-write",
            Engine::RawFdatasync => "raw-fdatasync",
            Engine::RawSegmented => "raw-write-seg",
            Engine::RawSequential => "raw-seq",
        }
    }

    pub fn mode(self) -> Option<Mode> {
        match self {
            Engine::Walden(mode, _) | Engine::Sqlite(mode) => Some(mode),
            Engine::RawWrite | Engine::RawFdatasync | Engine::RawSegmented | Engine::RawSequential => None,
        }
    }

    pub fn api(self) -> Api {
        match self {
            Engine::Walden(_, api) => api,
            _ => Api::Blocking,
        }
    }

    /// "walden always blocking", "raw-write", ...
    pub fn label(self) -> String {
        match self {
            Engine::Walden(mode, api) => format!("walden {} {}", mode.name(), api.name()),
            Engine::Sqlite(mode) => format!("sqlite {}", mode.sqlite_synchronous()),
            raw => raw.name().to_owned(),
        }
    }
}

/// How several SQLite writer threads share the database.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum SqliteConn {
    /// One connection behind a mutex.
    Mutex,
    /// A connection per thread, with busy_timeout = 10 s.
    PerThread,
}

impl SqliteConn {
    pub fn name(self) -> &'static str {
        match self {
            SqliteConn::Mutex => "mutex",
            SqliteConn::PerThread => "per-thread",
        }
    }
}

/// What is appended, and by how many threads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Workload {
    pub writers: usize,
    pub record_bytes: usize,
}

/// Where and how an engine runs, beyond the workload.
pub struct Setup<'a> {
    /// An empty directory of its own; the caller removes it.
    pub dir: &'a Path,
    pub sqlite_conn: SqliteConn,
    /// Pipelined appends in flight.
    pub window: usize,
}

/// One run: `ops` operations took `secs` of wall time.
pub struct Measured {
    pub ops: u64,
    pub secs: f64,
    /// Every operation's latency in nanoseconds (unsorted).
    pub latencies: Vec<u32>,
    /// fdatasync calls during the run, where the engine tells.
    pub syncs: Option<u64>,
    /// write() calls during the run, where the engine tells.
    pub writes: Option<u64>,
}

/// Runs `ops` operations of `workload` on `engine`.
pub fn run(engine: Engine, workload: Workload, ops: u64, setup: &Setup<'_>) -> Result<Measured> {
    let payload = payload(workload.record_bytes);
    match engine {
        Engine::Walden(mode, Api::Blocking) => walden(mode, workload, ops, &payload, setup.dir),
        Engine::Walden(mode, Api::Pipelined) => walden_pipelined(mode, workload, ops, &payload, setup),
        Engine::Sqlite(mode) => sqlite(mode, workload, ops, &payload, setup),
        Engine::RawWrite => raw(false, workload, ops, &payload, setup.dir),
        Engine::RawFdatasync => raw(true, workload, ops, &payload, setup.dir),
        Engine::RawSegmented => raw_segmented(workload, ops, &payload, setup.dir),
        Engine::RawSequential => raw_sequential(workload, ops, &payload, setup.dir),
    }
}

/// Record bytes that do not compress to nothing.
fn payload(len: usize) -> Vec<u8> {
    let mut x: u32 = 0x9e37_79b9;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// Runs `ops` operations split evenly over `writers` threads, each with the
/// state `init` makes, and returns the wall time from the moment all threads
/// are ready until the last one finished, with every operation's latency.
fn drive<S>(
    writers: usize,
    ops: u64,
    init: impl Fn() -> Result<S> + Sync,
    op: impl Fn(&mut S) -> Result<()> + Sync,
) -> Result<(f64, Vec<u32>)> {
    let ready = Barrier::new(writers + 1);
    let (secs, results) = std::thread::scope(|scope| {
        let threads: Vec<_> = (0..writers as u64)
            .map(|t| {
                let share = ops / writers as u64 + u64::from(t < ops % writers as u64);
                let (ready, init, op) = (&ready, &init, &op);
                scope.spawn(move || -> Result<Vec<u32>> {
                    let state = init();
                    let mut latencies = Vec::with_capacity(share as usize);
                    ready.wait();
                    let mut state = state?;
                    for _ in 0..share {
                        let start = Instant::now();
                        op(&mut state)?;
                        latencies.push(nanos(start.elapsed()));
                    }
                    Ok(latencies)
                })
            })
            .collect();
        ready.wait();
        let start = Instant::now();
        let results: Vec<_> = threads.into_iter().map(|t| t.join().expect("a writer thread panicked")).collect();
        (start.elapsed().as_secs_f64(), results)
    });
    let mut all = Vec::with_capacity(ops as usize);
    for latencies in results {
        all.extend(latencies?);
    }
    Ok((secs, all))
}

fn open_wal(mode: Mode, dir: &Path) -> Result<Wal> {
    Ok(Wal::open(dir.join("wal"), WalOptions { fsync: mode.fsync(), ..Default::default() })?)
}

/// `Wal::append` from every writer thread. Default options but the mode.
fn walden(mode: Mode, workload: Workload, ops: u64, payload: &[u8], dir: &Path) -> Result<Measured> {
    let wal = open_wal(mode, dir)?;
    let before = wal.stats();
    let (secs, latencies) = drive(
        workload.writers,
        ops,
        || Ok(()),
        |_| {
            wal.append(payload)?;
            Ok(())
        },
    )?;
    finish(wal, before, ops, secs, latencies)
}

/// `Wal::append_pipelined` from one thread, keeping `setup.window` tickets
/// in flight: when the window is full the oldest is waited for. A latency
/// runs from the append to the return of its ticket's wait.
fn walden_pipelined(mode: Mode, workload: Workload, ops: u64, payload: &[u8], setup: &Setup<'_>) -> Result<Measured> {
    if workload.writers != 1 {
        return Err("pipelined appends are measured on one thread".into());
    }
    let wal = open_wal(mode, setup.dir)?;
    let before = wal.stats();
    let mut latencies = Vec::with_capacity(ops as usize);
    let mut in_flight: VecDeque<(Ticket, Instant)> = VecDeque::with_capacity(setup.window);
    let start = Instant::now();
    for _ in 0..ops {
        // One clock read per append: the oldest ticket's end is the next append's start.
        let now =
            if in_flight.len() == setup.window { acknowledge(&mut in_flight, &mut latencies)? } else { Instant::now() };
        in_flight.push_back((wal.append_pipelined(payload)?, now));
    }
    while !in_flight.is_empty() {
        acknowledge(&mut in_flight, &mut latencies)?;
    }
    let secs = start.elapsed().as_secs_f64();
    finish(wal, before, ops, secs, latencies)
}

/// Closes the log and reports a run, with the write() and fdatasync calls it
/// made (the log's counters since `before`).
fn finish(wal: Wal, before: WalStats, ops: u64, secs: f64, latencies: Vec<u32>) -> Result<Measured> {
    let after = wal.stats();
    wal.close()?;
    Ok(Measured {
        ops,
        secs,
        latencies,
        syncs: Some(after.syncs - before.syncs),
        writes: Some(after.writes - before.writes),
    })
}

/// Waits for the oldest ticket in flight, records its latency, returns now.
fn acknowledge(in_flight: &mut VecDeque<(Ticket, Instant)>, latencies: &mut Vec<u32>) -> Result<Instant> {
    let (ticket, issued) = in_flight.pop_front().expect("a ticket in flight");
    ticket.wait()?;
    let now = Instant::now();
    latencies.push(nanos(now - issued));
    Ok(now)
}

const SQLITE_INSERT: &str = "INSERT INTO log(payload) VALUES (?1)";

pub fn sqlite_connect(path: &Path, mode: Mode) -> Result<rusqlite::Connection> {
    let conn = rusqlite::Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(10))?;
    let journal: String = conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
    if !journal.eq_ignore_ascii_case("wal") {
        return Err(format!("SQLite refused journal_mode=WAL (got {journal})").into());
    }
    conn.pragma_update(None, "synchronous", mode.sqlite_synchronous())?;
    Ok(conn)
}

fn sqlite_insert(conn: &rusqlite::Connection, payload: &[u8]) -> Result<()> {
    conn.prepare_cached(SQLITE_INSERT)?.execute([payload])?;
    Ok(())
}

/// SQLite in WAL mode, one autocommit INSERT (one transaction) per record
/// through a cached prepared statement.
fn sqlite(mode: Mode, workload: Workload, ops: u64, payload: &[u8], setup: &Setup<'_>) -> Result<Measured> {
    let path = setup.dir.join("bench.db");
    let conn = sqlite_connect(&path, mode)?;
    conn.execute_batch("CREATE TABLE log(id INTEGER PRIMARY KEY, payload BLOB)")?;
    let (secs, latencies) = match setup.sqlite_conn {
        SqliteConn::PerThread if workload.writers > 1 => {
            drive(workload.writers, ops, || sqlite_connect(&path, mode), |conn| sqlite_insert(conn, payload))?
        }
        _ => {
            let shared = parking_lot::Mutex::new(conn);
            drive(workload.writers, ops, || Ok(()), |_| sqlite_insert(&shared.lock(), payload))?
        }
    };
    Ok(Measured { ops, secs, latencies, syncs: None, writes: None })
}

/// The disk without an engine: each writer claims the next `record_bytes`
/// of one file from an atomic offset and pwrite()s the record there; with
/// `fdatasync`, into a file zero-filled and synced beforehand (as walden's
/// segments are), followed by fdatasync() of each record.
fn raw(fdatasync: bool, workload: Workload, ops: u64, payload: &[u8], dir: &Path) -> Result<Measured> {
    let file = OpenOptions::new().read(true).write(true).create_new(true).open(dir.join("raw.dat"))?;
    if fdatasync {
        zero_fill(&file, (ops * payload.len() as u64).next_multiple_of(4096))?;
        file.sync_all()?;
    }
    let next = AtomicU64::new(0);
    let (secs, latencies) = drive(
        workload.writers,
        ops,
        || Ok(()),
        |_| {
            file.write_all_at(payload, next.fetch_add(payload.len() as u64, Ordering::Relaxed))?;
            if fdatasync {
                file.sync_data()?;
            }
            Ok(())
        },
    )?;
    Ok(Measured { ops, secs, latencies, syncs: fdatasync.then_some(ops), writes: Some(ops) })
}

fn raw_segmented(workload: Workload, ops: u64, payload: &[u8], dir: &Path) -> Result<Measured> {
    let file = OpenOptions::new().read(true).write(true).create_new(true).open(dir.join("raw.dat"))?;
    let next = AtomicU64::new(0);
    let syncs = AtomicU64::new(0);
    let (secs, latencies) = drive(
        workload.writers,
        ops,
        || Ok(()),
        |_| {
            write_syncing_each_segment(&file, &next, &syncs, payload)?;
            Ok(())
        },
    )?;
    Ok(Measured { ops, secs, latencies, syncs: Some(syncs.into_inner()), writes: Some(ops) })
}

/// Writes `bytes` at the next free offset of `file` (claimed from `next`,
/// so writers never overlap) and, if they cross a [`SEGMENT_BYTES`]
/// boundary, fdatasyncs as a segmented log does at its roll-over; the
/// writer that crosses it pays. Counts the syncs in `syncs`.
fn write_syncing_each_segment(file: &File, next: &AtomicU64, syncs: &AtomicU64, bytes: &[u8]) -> std::io::Result<()> {
    let len = bytes.len() as u64;
    let at = next.fetch_add(len, Ordering::Relaxed);
    file.write_all_at(bytes, at)?;
    if (at + len) / SEGMENT_BYTES != at / SEGMENT_BYTES {
        file.sync_data()?;
        syncs.fetch_add(1, Ordering::Relaxed);
    }
    Ok(())
}

fn raw_sequential(workload: Workload, ops: u64, payload: &[u8], dir: &Path) -> Result<Measured> {
    const WRITE_BYTES: usize = 1 << 20;
    let file = OpenOptions::new().read(true).write(true).create_new(true).open(dir.join("raw.dat"))?;
    let next = AtomicU64::new(0);
    let syncs = AtomicU64::new(0);
    let write_out = |buffer: &mut Vec<u8>| -> std::io::Result<()> {
        write_syncing_each_segment(&file, &next, &syncs, buffer)?;
        buffer.clear();
        Ok(())
    };
    /// A writer's buffer; the part still held when its share is done is
    /// written when the writer's state drops, inside the clock.
    struct Gather<'a, W: Fn(&mut Vec<u8>) -> std::io::Result<()>> {
        buffer: Vec<u8>,
        write_out: &'a W,
    }
    impl<W: Fn(&mut Vec<u8>) -> std::io::Result<()>> Drop for Gather<'_, W> {
        fn drop(&mut self) {
            if !self.buffer.is_empty() {
                (self.write_out)(&mut self.buffer).expect("raw-seq: the last write");
            }
        }
    }
    let (secs, latencies) = drive(
        workload.writers,
        ops,
        || Ok(Gather { buffer: Vec::with_capacity(WRITE_BYTES + payload.len()), write_out: &write_out }),
        |gather| {
            gather.buffer.extend_from_slice(payload);
            if gather.buffer.len() >= WRITE_BYTES {
                write_out(&mut gather.buffer)?;
            }
            Ok(())
        },
    )?;
    Ok(Measured { ops, secs, latencies, syncs: Some(syncs.into_inner()), writes: None })
}

/// Writes zeros over `len` bytes in 64 KiB pieces. Not larger: on Linux 6.x
/// ext4 a big write() puts big folios in the page cache, and every later
/// small write() into one costs time in proportion to the folio's size
/// (docs/BENCHMARKS.md).
fn zero_fill(file: &File, len: u64) -> Result<()> {
    let zeros = vec![0u8; 64 << 10];
    let mut offset = 0;
    while offset < len {
        let n = (len - offset).min(zeros.len() as u64);
        file.write_all_at(&zeros[..n as usize], offset)?;
        offset += n;
    }
    Ok(())
}
