//! `walden bench-follow`: what followers cost the appenders, and how soon
//! they see a record.
//!
//! 1. Append throughput with 0, 1 and 8 in-process followers
//!    (`Wal::follow`, each reading every record), 1 and 16 writers,
//!    `Periodic` and `Always`: every cell run `--runs` times, the cells
//!    interleaved run by run, the median quoted, every run printed.
//! 2. Delivery latency in-process: one writer appends one record every
//!    `--interval-us`, one follower blocks in `next()`; the time from the
//!    writer's `append` returning to the follower holding the record
//!    (0 if the follower had it first), `Periodic` and `Never`; the writer
//!    busy-spins between appends (it holds a CPU), then, in rows of their
//!    own, sleeps (as a service's writer waiting for requests).
//! 3. Delivery latency to `walden follow` in another process (this binary,
//!    `--json`, polling every `--poll-ms`): from `append` returning to its
//!    line arriving on the pipe.

use crate::engines::Result;
use crate::latency::{median, nanos, Percentiles};
use clap::Args;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};
use walden::{FsyncMode, Lsn, Wal, WalOptions};

/// What `walden bench-follow` takes.
#[derive(Args)]
pub struct FollowBenchArgs {
    /// Records appended per throughput run in `Periodic`.
    #[arg(long, default_value_t = 200_000)]
    records: u64,
    /// Records appended per throughput run in `Always` (each group waits for an fdatasync).
    #[arg(long, default_value_t = 2_000)]
    always_records: u64,
    /// Runs of every cell; the median is quoted.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Records whose delivery is timed in-process, per run.
    #[arg(long, default_value_t = 20_000)]
    samples: usize,
    /// Records whose delivery to `walden follow` is timed, per run.
    #[arg(long, default_value_t = 2_000)]
    process_samples: usize,
    /// The pause between two timed appends, in microseconds.
    #[arg(long, default_value_t = 100)]
    interval_us: u64,
    /// `walden follow --poll-ms` for the cross-process latency.
    #[arg(long, default_value_t = 5)]
    poll_ms: u64,
    /// Bytes per record.
    #[arg(long, default_value_t = 128)]
    record_bytes: usize,
    /// Lower the throughput followers' CPU priority by this nice increment
    /// (`walden::io::lower_current_thread_priority`; 0: as the writers).
    #[arg(long, default_value_t = 0)]
    follower_nice: i32,
    /// The throughput followers take each record lent (`Follower::next_ref`,
    /// no copy) instead of as an owned `Record` (`Iterator::next`).
    #[arg(long)]
    lend: bool,
    /// Where the data goes: a temporary directory is made in PATH and removed afterwards.
    #[arg(long, value_name = "PATH", default_value = ".")]
    dir: PathBuf,
    /// Run only these throughput cells, each `MODE:WRITERS:FOLLOWERS`
    /// (`periodic:1:1`, `always:16:8`); every cell if none is given. A
    /// cell's "vs no follower" needs its 0-follower cell run too.
    #[arg(long = "cell", value_name = "CELL")]
    cells: Vec<String>,
    /// Skip the throughput cells.
    #[arg(long)]
    no_throughput: bool,
    /// Skip the delivery latencies.
    #[arg(long)]
    no_latency: bool,
}

/// Whether `--cell` (if any) asks for this throughput cell.
fn cell_chosen(args: &FollowBenchArgs, mode: FsyncMode, writers: u64, followers: usize) -> bool {
    let name = format!("{}:{writers}:{followers}", mode_name(mode));
    args.cells.is_empty() || args.cells.iter().any(|c| c.eq_ignore_ascii_case(&name))
}

/// Removes the directory when dropped.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        drop(std::fs::remove_dir_all(&self.0));
    }
}

fn fresh_dir(root: &Path, name: &str) -> TempDir {
    let nonce = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    TempDir(root.join(format!(".walden-bench-follow-{}-{name}-{nonce}", std::process::id())))
}

fn periodic() -> FsyncMode {
    FsyncMode::Periodic { interval: Duration::from_millis(10) }
}

fn mode_name(mode: FsyncMode) -> &'static str {
    match mode {
        FsyncMode::Always => "Always",
        FsyncMode::Periodic { .. } => "Periodic",
        _ => "Never",
    }
}

/// Appends `records` from `writers` threads with `followers` following
/// every record; returns appends per second (until the last append
/// returned) and checks that every follower read every record, in order,
/// each with its whole payload.
fn throughput(
    root: &Path,
    mode: FsyncMode,
    writers: u64,
    followers: usize,
    records: u64,
    args: &FollowBenchArgs,
) -> Result<(f64, f64)> {
    let (bytes, nice, lend) = (args.record_bytes, args.follower_nice, args.lend);
    let dir = fresh_dir(root, "tput");
    let wal = Wal::open(&dir.0, WalOptions { fsync: mode, ..Default::default() })?;
    let per_writer = records / writers;
    let total = per_writer * writers;
    let start = Barrier::new(writers as usize + followers + 1);
    let (elapsed, followers_cpu) = std::thread::scope(|scope| -> Result<(Duration, Duration)> {
        let readers: Vec<_> = (0..followers)
            .map(|_| {
                let mut follower = wal.follow(Lsn::FIRST)?;
                let start = &start;
                Ok(std::thread::Builder::new().name("follower".into()).spawn_scoped(scope, move || {
                    if nice > 0 {
                        drop(walden::io::lower_current_thread_priority(nice));
                    }
                    start.wait();
                    let cpu_at_start = thread_cpu();
                    // Every record, in order, its payload in hand (checked, so
                    // a follower cannot count without delivering it).
                    let mut read = 0u64;
                    while read < total {
                        let delivered = if lend {
                            matches!(follower.next_ref(), Some(Ok((lsn, payload))) if lsn.0 == read + 1 && payload.len() == bytes)
                        } else {
                            matches!(follower.next(), Some(Ok(record)) if record.lsn.0 == read + 1 && record.payload.len() == bytes)
                        };
                        if !delivered {
                            break;
                        }
                        read += 1;
                    }
                    (read, thread_cpu().saturating_sub(cpu_at_start))
                })?)
            })
            .collect::<Result<_>>()?;
        let base = Instant::now();
        let appenders: Vec<_> = (0..writers)
            .map(|_| {
                let (wal, start) = (&wal, &start);
                scope.spawn(move || -> walden::Result<(Duration, Duration)> {
                    let payload = vec![0x5a; bytes];
                    start.wait();
                    let began = base.elapsed();
                    for _ in 0..per_writer {
                        wal.append(&payload)?;
                    }
                    Ok((began, base.elapsed()))
                })
            })
            .collect();
        start.wait();
        // From the first writer's start to the last one's end.
        let (mut first, mut last) = (Duration::MAX, Duration::ZERO);
        for appender in appenders {
            let (began, ended) = appender.join().expect("an appender panicked")?;
            (first, last) = (first.min(began), last.max(ended));
        }
        let elapsed = last.saturating_sub(first);
        let mut followers_cpu = Duration::ZERO;
        for reader in readers {
            let (read, cpu) = reader.join().expect("a follower panicked");
            if read != total {
                return Err(format!("a follower read {read} of {total} records").into());
            }
            followers_cpu += cpu;
        }
        Ok((elapsed, followers_cpu))
    })?;
    wal.close()?;
    let cpu_per_delivery = followers_cpu.as_nanos() as f64 / (total as f64 * followers as f64);
    Ok((total as f64 / elapsed.as_secs_f64(), cpu_per_delivery))
}

/// The CPU time the calling thread has used.
fn thread_cpu() -> Duration {
    let mut now = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes the timespec it is given, nothing else.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) };
    if rc != 0 {
        return Duration::ZERO;
    }
    Duration::new(now.tv_sec as u64, now.tv_nsec as u32)
}

/// Microseconds since `base`, as a u64 (for the atomics both sides read).
fn since_ns(base: Instant) -> u64 {
    base.elapsed().as_nanos() as u64
}

/// Waits until `interval` after `from`: busy-spinning (the writer holds a
/// CPU), or, if `sleeping`, asleep (as a service's writer waiting for its
/// next request: the CPU is free for the follower and the log's threads).
fn pace(from: Instant, interval: Duration, sleeping: bool) {
    if sleeping {
        std::thread::sleep(interval.saturating_sub(from.elapsed()));
        return;
    }
    while from.elapsed() < interval {
        std::hint::spin_loop();
    }
}

/// Appends `samples` records of `payload`, one every `interval`, noting in
/// `acked` when each append returned.
fn append_paced<V: walden::io::Vfs>(
    wal: &Wal<V>,
    payload: &[u8],
    samples: usize,
    interval: Duration,
    sleeping: bool,
    base: Instant,
    acked: &[AtomicU64],
) -> Result<()> {
    for _ in 0..samples {
        let started = Instant::now();
        let lsn = wal.append(payload)?;
        acked[lsn.0 as usize].store(since_ns(base), Ordering::Release);
        pace(started, interval, sleeping);
    }
    Ok(())
}

/// Latencies of the records delivered at the times given, from the times
/// their appends returned (0 where the follower was first).
fn delivered(times: &[(Lsn, u64)], acked: &[AtomicU64]) -> Vec<u32> {
    times
        .iter()
        .map(|&(lsn, at)| nanos(Duration::from_nanos(at.saturating_sub(acked[lsn.0 as usize].load(Ordering::Acquire)))))
        .collect()
}

/// One writer, one blocked follower: latencies from `append` returning to
/// the follower holding the record. The writer spins between appends, or
/// sleeps if `sleeping` (see `pace`).
fn latency_in_process(
    root: &Path,
    mode: FsyncMode,
    samples: usize,
    interval: Duration,
    sleeping: bool,
    bytes: usize,
) -> Result<Percentiles> {
    let dir = fresh_dir(root, "lat");
    let wal = Wal::open(&dir.0, WalOptions { fsync: mode, ..Default::default() })?;
    let base = Instant::now();
    let acked: Arc<Vec<AtomicU64>> = Arc::new((0..=samples).map(|_| AtomicU64::new(u64::MAX)).collect());
    let mut follower = wal.follow(Lsn::FIRST)?;
    let mut latencies = std::thread::scope(|scope| -> Result<Vec<u32>> {
        let reader = scope.spawn(move || {
            let mut out = Vec::with_capacity(samples);
            for _ in 0..samples {
                let Some(Ok(record)) = follower.next() else { break };
                out.push((record.lsn, since_ns(base)));
            }
            out
        });
        let payload = vec![0x5a; bytes];
        append_paced(&wal, &payload, samples, interval, sleeping, base, &acked)?;
        Ok(delivered(&reader.join().expect("the follower panicked"), &acked))
    })?;
    wal.close()?;
    if latencies.len() != samples {
        return Err(format!("the follower read {} of {samples} records", latencies.len()).into());
    }
    Ok(Percentiles::of(&mut latencies))
}

/// `walden follow --json` in another process: latencies from `append`
/// returning to the record's line arriving here.
fn latency_to_process(
    root: &Path,
    samples: usize,
    interval: Duration,
    poll_ms: u64,
    bytes: usize,
) -> Result<Percentiles> {
    let dir = fresh_dir(root, "proc");
    let wal = Wal::open(&dir.0, WalOptions { fsync: periodic(), ..Default::default() })?;
    let mut child = Command::new(std::env::current_exe()?)
        .arg("follow")
        .arg(&dir.0)
        .args(["--json", "--poll-ms", &poll_ms.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let stdout = child.stdout.take().expect("piped");
    let base = Instant::now();
    let acked: Arc<Vec<AtomicU64>> = Arc::new((0..=samples + 1).map(|_| AtomicU64::new(u64::MAX)).collect());
    let result = std::thread::scope(|scope| -> Result<Vec<u32>> {
        let reader = scope.spawn(move || {
            let mut out = Vec::with_capacity(samples);
            for line in BufReader::new(stdout).lines().map_while(std::io::Result::ok) {
                let now = since_ns(base);
                let Some(lsn) = line.split("\"lsn\":").nth(1).and_then(|r| r.split(',').next()?.parse::<u64>().ok())
                else {
                    continue;
                };
                if lsn == 1 {
                    continue; // the warm-up record
                }
                out.push((Lsn(lsn), now));
                if out.len() == samples {
                    break;
                }
            }
            out
        });
        let payload = vec![b'x'; bytes];
        // A warm-up record: the follower is running once it printed it.
        wal.append(&payload)?;
        acked[1].store(since_ns(base), Ordering::Release);
        std::thread::sleep(Duration::from_millis(300));
        append_paced(&wal, &payload, samples, interval, false, base, &acked)?;
        Ok(delivered(&reader.join().expect("the reader panicked"), &acked))
    });
    drop(child.kill());
    drop(child.wait());
    wal.close()?;
    let mut latencies = result?;
    if latencies.len() != samples {
        return Err(format!("walden follow printed {} of {samples} records", latencies.len()).into());
    }
    Ok(Percentiles::of(&mut latencies))
}

/// Runs `walden bench-follow`.
pub fn run(args: &FollowBenchArgs) -> Result<()> {
    if args.runs == 0 || args.records == 0 || args.always_records == 0 || args.samples == 0 {
        return Err("--runs, --records, --always-records and --samples must be at least 1".into());
    }
    std::fs::create_dir_all(&args.dir)?;
    if !args.no_throughput {
        throughput_cells(args)?;
    }
    if !args.no_latency {
        latencies(args)?;
    }
    Ok(())
}

/// The throughput table: every chosen cell `--runs` times, interleaved.
fn throughput_cells(args: &FollowBenchArgs) -> Result<()> {
    println!("## Append throughput with in-process followers (records/s; every run, then the median)");
    println!(
        "{} B records; each follower reads every record ({}; follower nice increment {}); cells interleaved run by run",
        args.record_bytes,
        if args.lend { "lent, next_ref" } else { "owned, next" },
        args.follower_nice
    );
    let mut cells = Vec::new();
    for mode in [periodic(), FsyncMode::Always] {
        for writers in [1u64, 16] {
            for followers in [0usize, 1, 8] {
                if !cell_chosen(args, mode, writers, followers) {
                    continue;
                }
                cells.push((mode, writers, followers, Vec::new()));
            }
        }
    }
    for _ in 0..args.runs {
        for (mode, writers, followers, runs) in cells.iter_mut() {
            let records = if *mode == FsyncMode::Always { args.always_records } else { args.records };
            runs.push(throughput(&args.dir, *mode, *writers, *followers, records, args)?);
        }
    }
    println!("| mode | writers | followers | runs | median | vs no follower | follower CPU ns a record (median) |");
    println!("|---|--:|--:|---|--:|--:|--:|");
    for (mode, writers, followers, runs) in &cells {
        let none = cells
            .iter()
            .find(|(m, w, f, _)| m == mode && w == writers && *f == 0)
            .map_or(f64::NAN, |(.., r)| median(r.iter().map(|r| r.0)));
        let m = median(runs.iter().map(|r| r.0));
        let all: Vec<String> = runs.iter().map(|r| format!("{:.0}", r.0)).collect();
        let cpu = match followers {
            0 => "-".to_string(),
            _ => format!("{:.0}", median(runs.iter().map(|r| r.1))),
        };
        println!(
            "| {} | {writers} | {followers} | {} | {m:.0} | {:.2} | {cpu} |",
            mode_name(*mode),
            all.join(", "),
            m / none
        );
    }
    println!();
    Ok(())
}

/// The latency table's "where" for an in-process follower.
fn in_process_where(sleeping: bool) -> String {
    let writer = if sleeping { "sleeps" } else { "spins" };
    format!("Wal::follow, in-process, writer {writer} between appends")
}

/// The delivery latency table, in-process and to another process.
fn latencies(args: &FollowBenchArgs) -> Result<()> {
    let interval = Duration::from_micros(args.interval_us);
    println!(
        "## Delivery latency, acknowledgement to follower (1 writer, one record every {} us, {} records a run)",
        args.interval_us, args.samples
    );
    println!("| where | mode | run | p50 us | p99 us | p99.9 us |");
    println!("|---|---|--:|--:|--:|--:|");
    // The writer spinning between appends (it holds a CPU), then sleeping.
    let mut in_process: Vec<(FsyncMode, bool, Vec<Percentiles>)> = vec![
        (periodic(), false, Vec::new()),
        (FsyncMode::Never, false, Vec::new()),
        (periodic(), true, Vec::new()),
        (FsyncMode::Never, true, Vec::new()),
    ];
    let mut to_process = Vec::new();
    for _ in 0..args.runs {
        for (mode, sleeping, runs) in in_process.iter_mut() {
            runs.push(latency_in_process(&args.dir, *mode, args.samples, interval, *sleeping, args.record_bytes)?);
        }
        let process_interval = interval.max(Duration::from_millis(1));
        to_process.push(latency_to_process(
            &args.dir,
            args.process_samples,
            process_interval,
            args.poll_ms,
            args.record_bytes,
        )?);
    }
    let mut rows: Vec<(String, &str, &Vec<Percentiles>)> =
        in_process.iter().map(|(mode, sleeping, runs)| (in_process_where(*sleeping), mode_name(*mode), runs)).collect();
    let process_where = format!("walden follow --poll-ms {}, another process", args.poll_ms);
    rows.push((process_where, "Periodic", &to_process));
    for (place, mode, runs) in rows {
        for (i, p) in runs.iter().enumerate() {
            println!("| {place} | {mode} | {} | {:.1} | {:.1} | {:.1} |", i + 1, p.p50_us, p.p99_us, p.p999_us);
        }
        let (p50, p99, p999) = (
            median(runs.iter().map(|p| p.p50_us)),
            median(runs.iter().map(|p| p.p99_us)),
            median(runs.iter().map(|p| p.p999_us)),
        );
        println!("| {place} | {mode} | median | {p50:.1} | {p99:.1} | {p999:.1} |");
    }
    Ok(())
}
