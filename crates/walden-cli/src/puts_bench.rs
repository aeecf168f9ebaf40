//! `walden bench-puts`: store puts per second and their latency with 1, 16
//! and 64 writer threads in each fsync mode, next to the log's own append
//! rate for records of the same size, and, with `--compare-with`, next to
//! another build of walden (a before/after comparison in one run).
//!
//! Every cell (mode, writers) runs once per repetition, in an order that
//! alternates between repetitions; with `--compare-with` the other build
//! runs the same cell as a child process right before or after this one
//! (alternating too), so drift of the machine hits both alike. Figures are
//! medians over repetitions; a ratio is the median of the ratios measured
//! within the same repetition.

use crate::engines::{Mode, Result};
use crate::latency::{median, nanos, Percentiles};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Barrier;
use std::time::{Duration, Instant};
use walden::{SnapshotOptions, Store, StoreOptions, Wal, WalOptions};

#[derive(clap::Args)]
pub struct PutsArgs {
    /// Writer thread counts [default: 1,16,64].
    #[arg(long, value_name = "N,..", value_delimiter = ',', value_parser = clap::value_parser!(u16).range(1..))]
    writers: Vec<u16>,
    /// Fsync modes [default: always,periodic,never].
    #[arg(long, value_name = "MODE,..", value_delimiter = ',', value_parser = parse_mode_arg)]
    modes: Vec<Mode>,
    /// Repetitions of every cell; medians are reported.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    reps: u32,
    /// Seconds each run lasts.
    #[arg(long, value_name = "SECS", default_value_t = 1.0)]
    run_secs: f64,
    /// Key bytes of each put (distinct keys, never overwritten).
    #[arg(long, default_value_t = 16)]
    key_bytes: usize,
    /// Value bytes of each put.
    #[arg(long, default_value_t = 100)]
    value_bytes: usize,
    /// Another `walden` binary (for example a build of an earlier commit) to
    /// run every cell too, side by side with this one.
    #[arg(long, value_name = "PATH")]
    compare_with: Option<PathBuf>,
    /// Label of this build in the table [default: this].
    #[arg(long, default_value = "this")]
    label: String,
    /// Label of the other build [default: other].
    #[arg(long, default_value = "other")]
    other_label: String,
    /// Skip the log-append runs (the store's puts only).
    #[arg(long)]
    no_log: bool,
    /// Run one cell and print its result as one JSON line (used by
    /// `--compare-with` to run the other build): `what,mode,writers`.
    #[arg(long, value_name = "WHAT,MODE,N", hide = true)]
    cell: Option<String>,
    /// Also write the results to FILE, one JSON object per line.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Where the data goes: a temporary directory is made in PATH and removed afterwards.
    #[arg(long, value_name = "PATH", default_value = ".")]
    dir: PathBuf,
}

/// What a run measures.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum What {
    /// `Store::put` of a new key.
    Put,
    /// `Wal::append` of a record as long as a put's.
    LogAppend,
}

impl What {
    fn name(self) -> &'static str {
        match self {
            What::Put => "put",
            What::LogAppend => "log-append",
        }
    }

    fn parse(s: &str) -> Option<What> {
        [What::Put, What::LogAppend].into_iter().find(|w| w.name() == s)
    }
}

/// One run of one cell.
#[derive(Clone, Copy, Debug)]
struct Run {
    ops_per_sec: f64,
    p50_us: f64,
    p99_us: f64,
}

impl Run {
    fn json(&self) -> String {
        serde_json::json!({ "ops_per_sec": self.ops_per_sec, "p50_us": self.p50_us, "p99_us": self.p99_us }).to_string()
    }

    fn from_json(line: &str) -> Result<Run> {
        let v: serde_json::Value = serde_json::from_str(line)?;
        let get = |k: &str| v[k].as_f64().ok_or_else(|| format!("no {k} in {line}"));
        Ok(Run { ops_per_sec: get("ops_per_sec")?, p50_us: get("p50_us")?, p99_us: get("p99_us")? })
    }
}

fn mode_name(mode: Mode) -> &'static str {
    mode.name()
}

fn parse_mode(s: &str) -> Option<Mode> {
    Mode::ALL.into_iter().find(|m| m.name() == s)
}

fn parse_mode_arg(s: &str) -> std::result::Result<Mode, String> {
    parse_mode(s).ok_or_else(|| format!("{s}: not always, periodic or never"))
}

pub fn run(args: &PutsArgs) -> Result<()> {
    if let Some(cell) = &args.cell {
        let mut parts = cell.split(',');
        let (what, mode, writers) = (parts.next(), parts.next(), parts.next());
        let what = what.and_then(What::parse).ok_or("--cell: what is put or log-append")?;
        let mode = mode.and_then(parse_mode).ok_or("--cell: an fsync mode")?;
        let writers: usize = writers.and_then(|w| w.parse().ok()).ok_or("--cell: a writer count")?;
        let result = measure(args, what, mode, writers)?;
        println!("{}", result.json());
        return Ok(());
    }
    let writers: Vec<usize> =
        if args.writers.is_empty() { vec![1, 16, 64] } else { args.writers.iter().map(|&w| w.into()).collect() };
    let modes: Vec<Mode> =
        if args.modes.is_empty() { vec![Mode::Always, Mode::Periodic, Mode::Never] } else { args.modes.clone() };
    let mut whats = vec![What::Put];
    if !args.no_log {
        whats.push(What::LogAppend);
    }
    // (what, mode, writers) -> runs of this build, and of the other.
    let cells: Vec<(What, Mode, usize)> = modes
        .iter()
        .flat_map(|&m| writers.iter().flat_map(move |&w| [(What::Put, m, w), (What::LogAppend, m, w)]))
        .collect();
    let cells: Vec<_> = cells.into_iter().filter(|c| whats.contains(&c.0)).collect();
    let mut this: Vec<Vec<Run>> = vec![Vec::new(); cells.len()];
    let mut other: Vec<Vec<Run>> = vec![Vec::new(); cells.len()];
    for rep in 0..args.reps {
        for (i, &(what, mode, writers)) in cells.iter().enumerate() {
            let other_first = (rep + i as u32) % 2 == 1;
            if other_first {
                if let Some(path) = &args.compare_with {
                    other[i].push(measure_other(path, args, what, mode, writers)?);
                }
            }
            this[i].push(measure(args, what, mode, writers)?);
            if !other_first {
                if let Some(path) = &args.compare_with {
                    other[i].push(measure_other(path, args, what, mode, writers)?);
                }
            }
            eprint!(".");
        }
    }
    eprintln!();
    report(args, &cells, &this, &other)
}

/// The median of a field over runs.
fn med(runs: &[Run], field: impl Fn(&Run) -> f64) -> f64 {
    median(runs.iter().map(field))
}

/// The median over repetitions of `a[rep] / b[rep]`.
fn ratio(a: &[Run], b: &[Run], field: impl Fn(&Run) -> f64) -> f64 {
    median(a.iter().zip(b).map(|(a, b)| field(a) / field(b)))
}

fn report(args: &PutsArgs, cells: &[(What, Mode, usize)], this: &[Vec<Run>], other: &[Vec<Run>]) -> Result<()> {
    let comparing = args.compare_with.is_some();
    let find = |what: What, mode: Mode, writers: usize| cells.iter().position(|&c| c == (what, mode, writers));
    println!(
        "store puts ({} B keys, {} B values, distinct keys), {} reps of {:.1} s, medians",
        args.key_bytes, args.value_bytes, args.reps, args.run_secs
    );
    let mut header = format!("{:<9} {:>7} {:>12} {:>9} {:>9}", "mode", "writers", "puts/s", "p50 us", "p99 us");
    if !args.no_log {
        header += &format!(" {:>13} {:>11}", "log appends/s", "put vs log");
    }
    if comparing {
        header += &format!(" {:>12} {:>9} {:>13}", format!("{} puts/s", args.other_label), "p99 us", "vs other");
        if !args.no_log {
            header += &format!(" {:>16} {:>13}", format!("{} log/s", args.other_label), "log vs other");
        }
    }
    println!("{header}");
    let mut json = Vec::new();
    for (i, &(what, mode, writers)) in cells.iter().enumerate() {
        if what != What::Put {
            continue;
        }
        let runs = &this[i];
        let mut line = format!(
            "{:<9} {:>7} {:>12.0} {:>9.1} {:>9.1}",
            mode_name(mode),
            writers,
            med(runs, |r| r.ops_per_sec),
            med(runs, |r| r.p50_us),
            med(runs, |r| r.p99_us)
        );
        let mut row = serde_json::json!({
            "label": args.label, "mode": mode_name(mode), "writers": writers,
            "puts_per_sec": med(runs, |r| r.ops_per_sec), "p50_us": med(runs, |r| r.p50_us),
            "p99_us": med(runs, |r| r.p99_us),
        });
        if let Some(log) = find(What::LogAppend, mode, writers) {
            let put_vs_log = ratio(runs, &this[log], |r| r.ops_per_sec);
            line += &format!(" {:>13.0} {:>10.2}x", med(&this[log], |r| r.ops_per_sec), put_vs_log);
            row["log_appends_per_sec"] = med(&this[log], |r| r.ops_per_sec).into();
            row["put_vs_log"] = put_vs_log.into();
        }
        if comparing {
            let o = &other[i];
            let vs = ratio(runs, o, |r| r.ops_per_sec);
            line += &format!(" {:>12.0} {:>9.1} {:>12.2}x", med(o, |r| r.ops_per_sec), med(o, |r| r.p99_us), vs);
            row["other_label"] = args.other_label.clone().into();
            row["other_puts_per_sec"] = med(o, |r| r.ops_per_sec).into();
            row["other_p99_us"] = med(o, |r| r.p99_us).into();
            row["vs_other"] = vs.into();
            if let Some(log) = find(What::LogAppend, mode, writers) {
                let log_vs = ratio(&this[log], &other[log], |r| r.ops_per_sec);
                line += &format!(" {:>16.0} {:>12.2}x", med(&other[log], |r| r.ops_per_sec), log_vs);
                row["other_log_appends_per_sec"] = med(&other[log], |r| r.ops_per_sec).into();
                row["log_vs_other"] = log_vs.into();
            }
        }
        println!("{line}");
        json.push(row);
    }
    if let Some(path) = &args.json {
        let mut out = std::fs::File::create(path)?;
        for row in json {
            writeln!(out, "{row}")?;
        }
    }
    Ok(())
}

/// Runs one cell in the other build and reads its JSON line.
fn measure_other(path: &Path, args: &PutsArgs, what: What, mode: Mode, writers: usize) -> Result<Run> {
    let output = Command::new(path)
        .arg("bench-puts")
        .arg("--cell")
        .arg(format!("{},{},{writers}", what.name(), mode_name(mode)))
        .arg("--run-secs")
        .arg(args.run_secs.to_string())
        .arg("--key-bytes")
        .arg(args.key_bytes.to_string())
        .arg("--value-bytes")
        .arg(args.value_bytes.to_string())
        .arg("--dir")
        .arg(&args.dir)
        .output()?;
    if !output.status.success() {
        return Err(format!("{}: {}", path.display(), String::from_utf8_lossy(&output.stderr)).into());
    }
    let text = String::from_utf8_lossy(&output.stdout);
    Run::from_json(text.lines().last().unwrap_or_default())
}

/// Removes the directory when dropped.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        drop(std::fs::remove_dir_all(&self.0));
    }
}

/// One run of one cell in this build.
fn measure(args: &PutsArgs, what: What, mode: Mode, writers: usize) -> Result<Run> {
    let nonce = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_nanos();
    let dir = TempDir(args.dir.join(format!(".walden-bench-puts-{}-{nonce}", std::process::id())));
    let value = vec![0x5a; args.value_bytes];
    let key_bytes = args.key_bytes.max(12);
    // Distinct keys without formatting (which would cost as much as a
    // tenth of a put): the writer and the counter, big-endian, padded.
    let key = move |writer: usize, i: u64| {
        let mut key = Vec::with_capacity(key_bytes);
        key.extend_from_slice(&(writer as u32).to_be_bytes());
        key.extend_from_slice(&i.to_be_bytes());
        key.resize(key_bytes, b'k');
        key
    };
    let wal_options = WalOptions { fsync: mode.fsync(), ..Default::default() };
    let run_for = Duration::from_secs_f64(args.run_secs);
    match what {
        What::Put => {
            let mut options = StoreOptions::default();
            options.engine.wal = wal_options;
            options.engine.snapshots =
                SnapshotOptions { every_commits: None, every_bytes: None, every: None, ..Default::default() };
            let store = Store::open(&dir.0, options)?;
            let result = drive(writers, run_for, |w, i| store.put(&key(w, i), &value).map(drop).map_err(Into::into));
            store.close()?;
            result
        }
        What::LogAppend => {
            // A record as long as a put's (key, value, writer id, time and framing).
            let record = vec![0xa5; key_bytes + args.value_bytes + 32];
            let wal = Wal::open(dir.0.join("wal"), wal_options)?;
            let result = drive(writers, run_for, |_, _| wal.append(&record).map(drop).map_err(Into::into));
            wal.close()?;
            result
        }
    }
}

/// `writers` threads call `op(writer, i)` for `run_for`; returns the rate
/// and latency percentiles over all of them.
fn drive(writers: usize, run_for: Duration, op: impl Fn(usize, u64) -> Result<()> + Sync) -> Result<Run> {
    let ready = Barrier::new(writers + 1);
    let stop = AtomicBool::new(false);
    let (secs, results) = std::thread::scope(|scope| {
        let threads: Vec<_> = (0..writers)
            .map(|w| {
                let (ready, stop, op) = (&ready, &stop, &op);
                scope.spawn(move || -> Result<Vec<u32>> {
                    let mut latencies = Vec::with_capacity(2_000_000 / writers + 1000);
                    ready.wait();
                    let mut i = 0;
                    while !stop.load(Ordering::Relaxed) {
                        let start = Instant::now();
                        op(w, i)?;
                        latencies.push(nanos(start.elapsed()));
                        i += 1;
                    }
                    Ok(latencies)
                })
            })
            .collect();
        ready.wait();
        let start = Instant::now();
        std::thread::sleep(run_for);
        stop.store(true, Ordering::Relaxed);
        let results: Vec<_> = threads.into_iter().map(|t| t.join().expect("a writer thread panicked")).collect();
        (start.elapsed().as_secs_f64(), results)
    });
    let mut all = Vec::new();
    for latencies in results {
        all.extend(latencies?);
    }
    let ops = all.len() as f64;
    let p = Percentiles::of(&mut all);
    Ok(Run { ops_per_sec: ops / secs, p50_us: p.p50_us, p99_us: p.p99_us })
}
