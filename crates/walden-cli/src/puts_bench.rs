//! `walden bench-puts`: store writes per second and their latency with 1,
//! 16 and 64 writer threads in each fsync mode, next to the log's own
//! append rate for records of the same size, and, with `--compare-with`,
//! next to another build of walden (a before/after comparison in one run).
//! The writes measured ("whats"): `put` (`Store::put` of a new key),
//! `batch` (`Store::write` of a `WriteBatch` of 10 such puts) and `journal`
//! (`DurableJournal::append` of one SET); and `reads`: `Store::get` of
//! random preloaded keys from 2 reader threads, with no writer and while
//! the largest writer count puts new keys.
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
use walden::journal::{NewEntry, Value};
use walden::{
    DurableJournal, Journal as _, JournalOptions, SnapshotOptions, Store, StoreOptions, Wal, WalOptions, WriteBatch,
};

#[derive(clap::Args)]
pub struct PutsArgs {
    /// Writer thread counts [default: 1,16,64]. The reads run with no
    /// writer and with the largest count.
    #[arg(long, value_name = "N,..", value_delimiter = ',', value_parser = clap::value_parser!(u16).range(1..))]
    writers: Vec<u16>,
    /// Fsync modes [default: always,periodic,never].
    #[arg(long, value_name = "MODE,..", value_delimiter = ',', value_parser = parse_mode_arg)]
    modes: Vec<Mode>,
    /// What to measure: put (Store::put), batch (Store::write of 10 puts),
    /// journal (DurableJournal::append), reads (Store::get beside writers)
    /// [default: put,batch,journal,reads].
    #[arg(long, value_name = "WHAT,..", value_delimiter = ',', value_parser = parse_what_arg)]
    what: Vec<What>,
    /// Repetitions of every cell; medians are reported.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    reps: u32,
    /// Seconds each run lasts.
    #[arg(long, value_name = "SECS", default_value_t = 1.0)]
    run_secs: f64,
    /// Key bytes of each put (distinct keys, never overwritten).
    #[arg(long, default_value_t = 16)]
    key_bytes: usize,
    /// Value bytes of each put (and of each journal entry's value).
    #[arg(long, default_value_t = 100)]
    value_bytes: usize,
    /// Keys preloaded into the store the reads get from.
    #[arg(long, value_name = "N", default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..))]
    read_keys: u64,
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
    /// Skip the log-append runs (the store's and the journal's writes only).
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

/// Puts in one `batch` write.
const BATCH_PUTS: u64 = 10;
/// Reader threads of the `reads` measurement.
const READERS: usize = 2;
/// Puts per write batch while preloading the store for the reads.
const PRELOAD_BATCH_PUTS: usize = 1000;

/// What a run measures.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum What {
    /// `Store::put` of a new key.
    Put,
    /// `Store::write` of a batch of `BATCH_PUTS` puts of new keys.
    Batch,
    /// `DurableJournal::append` of one SET, to one address per writer.
    Journal,
    /// `Wal::append` of a record as long as a put's.
    LogAppend,
    /// `Store::get` of a random preloaded key from `READERS` threads, while
    /// `writers` threads put new keys (none in the idle cell).
    Reads,
}

impl What {
    const ALL: [What; 5] = [What::Put, What::Batch, What::Journal, What::LogAppend, What::Reads];
    /// The writes a row of the first table is about, in table order.
    const WRITES: [What; 4] = [What::Put, What::Batch, What::Journal, What::LogAppend];

    fn name(self) -> &'static str {
        match self {
            What::Put => "put",
            What::Batch => "batch",
            What::Journal => "journal",
            What::LogAppend => "log-append",
            What::Reads => "reads",
        }
    }

    fn parse(s: &str) -> Option<What> {
        What::ALL.into_iter().find(|w| w.name() == s)
    }

    /// Log records one call writes (a batch counts its puts).
    fn records_per_op(self) -> f64 {
        match self {
            What::Batch => BATCH_PUTS as f64,
            _ => 1.0,
        }
    }
}

fn parse_what_arg(s: &str) -> std::result::Result<What, String> {
    What::parse(s).filter(|&w| w != What::LogAppend).ok_or_else(|| format!("{s}: not put, batch, journal or reads"))
}

/// One run of one cell.
#[derive(Clone, Copy, Debug)]
struct Run {
    ops_per_sec: f64,
    p50_us: f64,
    p99_us: f64,
    p999_us: f64,
}

impl Run {
    fn json(&self) -> String {
        serde_json::json!({
            "ops_per_sec": self.ops_per_sec, "p50_us": self.p50_us, "p99_us": self.p99_us, "p999_us": self.p999_us,
        })
        .to_string()
    }

    /// Reads a child's line; a build from before p99.9 was measured gives
    /// none, which is NaN here.
    fn from_json(line: &str) -> Result<Run> {
        let v: serde_json::Value = serde_json::from_str(line)?;
        let get = |k: &str| v[k].as_f64().ok_or_else(|| format!("no {k} in {line}"));
        Ok(Run {
            ops_per_sec: get("ops_per_sec")?,
            p50_us: get("p50_us")?,
            p99_us: get("p99_us")?,
            p999_us: v["p999_us"].as_f64().unwrap_or(f64::NAN),
        })
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

/// A cell: what, in which fsync mode, with how many writer threads.
type Cell = (What, Mode, usize);

/// A cell as `--cell` spells it: `what,mode,writers`.
fn cell_name((what, mode, writers): Cell) -> String {
    format!("{},{},{writers}", what.name(), mode_name(mode))
}

/// The cells of a run, in the order they run and are reported: the writes
/// by mode, writer count and what; then the reads by mode, idle and under
/// the largest writer count.
fn cells(args: &PutsArgs) -> Vec<Cell> {
    let writers: Vec<usize> =
        if args.writers.is_empty() { vec![1, 16, 64] } else { args.writers.iter().map(|&w| w.into()).collect() };
    let modes: Vec<Mode> =
        if args.modes.is_empty() { vec![Mode::Always, Mode::Periodic, Mode::Never] } else { args.modes.clone() };
    let chosen: Vec<What> =
        if args.what.is_empty() { vec![What::Put, What::Batch, What::Journal, What::Reads] } else { args.what.clone() };
    let mut writes: Vec<What> = What::WRITES.into_iter().filter(|w| chosen.contains(w)).collect();
    if !writes.is_empty() && !args.no_log {
        writes.push(What::LogAppend);
    }
    let mut cells: Vec<Cell> = modes
        .iter()
        .flat_map(|&m| writers.iter().flat_map(|&n| writes.iter().map(move |&w| (w, m, n))).collect::<Vec<_>>())
        .collect();
    if chosen.contains(&What::Reads) {
        let loaded = writers.iter().copied().max().unwrap_or(64);
        cells.extend(modes.iter().flat_map(|&m| [(What::Reads, m, 0), (What::Reads, m, loaded)]));
    }
    cells
}

pub fn run(args: &PutsArgs) -> Result<()> {
    if let Some(cell) = &args.cell {
        let mut parts = cell.split(',');
        let (what, mode, writers) = (parts.next(), parts.next(), parts.next());
        let what = what.and_then(What::parse).ok_or("--cell: what is put, batch, journal, log-append or reads")?;
        let mode = mode.and_then(parse_mode).ok_or("--cell: an fsync mode")?;
        let writers: usize = writers.and_then(|w| w.parse().ok()).ok_or("--cell: a writer count")?;
        let result = measure(args, what, mode, writers)?;
        println!("{}", result.json());
        return Ok(());
    }
    let cells = cells(args);
    // Runs of each cell: of this build, and of the other.
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
            let run = measure(args, what, mode, writers);
            this[i].push(run.map_err(|e| format!("{}: {e}", cell_name((what, mode, writers))))?);
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

/// The median rate and latencies of runs, as table columns and as JSON
/// fields (`prefix` names the build: "" for this one, "other_" for the
/// other); latencies with `decimals` decimals.
fn figures(runs: &[Run], prefix: &str, decimals: usize, row: &mut serde_json::Value) -> String {
    let (ops, p50, p99, p999) =
        (med(runs, |r| r.ops_per_sec), med(runs, |r| r.p50_us), med(runs, |r| r.p99_us), med(runs, |r| r.p999_us));
    row[format!("{prefix}ops_per_sec")] = ops.into();
    row[format!("{prefix}p50_us")] = p50.into();
    row[format!("{prefix}p99_us")] = p99.into();
    row[format!("{prefix}p999_us")] = p999.into();
    format!("{ops:>12.0} {p50:>9.decimals$} {p99:>9.decimals$} {p999:>9.decimals$}")
}

/// "-" for a ratio that was not measured.
fn times(x: Option<f64>) -> String {
    x.map_or_else(|| "-".into(), |x| format!("{x:.2}x"))
}

/// A row of a table: its leading columns (the cell and this build's
/// figures), its trailing ones (the other build's, if comparing), and its
/// JSON object.
fn row(
    args: &PutsArgs,
    (what, mode, writers): Cell,
    this: &[Run],
    other: &[Run],
) -> (String, String, serde_json::Value) {
    // Gets take well under a microsecond: one more decimal.
    let d = if what == What::Reads { 2 } else { 1 };
    let mut row =
        serde_json::json!({ "label": args.label, "what": what.name(), "mode": mode_name(mode), "writers": writers });
    let line = format!("{:<9} {:>7} {:<10} {}", mode_name(mode), writers, what.name(), figures(this, "", d, &mut row));
    let mut tail = String::new();
    if args.compare_with.is_some() {
        row["other_label"] = args.other_label.clone().into();
        figures(other, "other_", d, &mut row);
        let vs = ratio(this, other, |r| r.ops_per_sec);
        row["vs_other"] = vs.into();
        tail = format!(" {:>12.0} {:>9.d$} {vs:>8.2}x", med(other, |r| r.ops_per_sec), med(other, |r| r.p99_us));
    }
    (line, tail, row)
}

fn report(args: &PutsArgs, cells: &[Cell], this: &[Vec<Run>], other: &[Vec<Run>]) -> Result<()> {
    let comparing = args.compare_with.is_some();
    let find = |cell: Cell| cells.iter().position(|&c| c == cell);
    let other_header = |ops: &str| {
        if comparing {
            format!(" {:>12} {:>9} {:>9}", format!("{} {ops}", args.other_label), "p99 us", "vs other")
        } else {
            String::new()
        }
    };
    let mut json = Vec::new();

    if cells.iter().any(|c| c.0 != What::Reads) {
        println!(
            "writes ({} B keys, {} B values, distinct keys; a batch is {BATCH_PUTS} puts, a journal entry one SET), \
             {} reps of {:.1} s, medians",
            args.key_bytes, args.value_bytes, args.reps, args.run_secs
        );
        println!("records/s counts a batch's puts; vs log: records/s over the log's appends/s in the same repetition");
        println!(
            "{:<9} {:>7} {:<10} {:>12} {:>9} {:>9} {:>9} {:>12} {:>8}{}",
            "mode",
            "writers",
            "what",
            "ops/s",
            "p50 us",
            "p99 us",
            "p99.9 us",
            "records/s",
            "vs log",
            other_header("ops/s")
        );
        for (i, &(what, mode, writers)) in cells.iter().enumerate() {
            if what == What::Reads {
                continue;
            }
            let records = med(&this[i], |r| r.ops_per_sec) * what.records_per_op();
            let log = find((What::LogAppend, mode, writers)).filter(|_| what != What::LogAppend);
            let vs_log = log.map(|log| ratio(&this[i], &this[log], |r| r.ops_per_sec) * what.records_per_op());
            let (line, tail, mut row) = row(args, cells[i], &this[i], &other[i]);
            row["records_per_sec"] = records.into();
            if let Some(vs_log) = vs_log {
                row["vs_log"] = vs_log.into();
            }
            println!("{line} {records:>12.0} {:>8}{tail}", times(vs_log));
            json.push(row);
        }
    }

    if cells.iter().any(|c| c.0 == What::Reads) {
        if !json.is_empty() {
            println!();
        }
        println!(
            "reads: {READERS} readers get random keys among {} preloaded, beside writers putting new keys, \
             {} reps of {:.1} s, medians",
            args.read_keys, args.reps, args.run_secs
        );
        println!("vs idle: gets/s over gets/s with no writer in the same repetition");
        println!(
            "{:<9} {:>7} {:<10} {:>12} {:>9} {:>9} {:>9} {:>8}{}",
            "mode",
            "writers",
            "what",
            "gets/s",
            "p50 us",
            "p99 us",
            "p99.9 us",
            "vs idle",
            other_header("gets/s")
        );
        for (i, &(what, mode, writers)) in cells.iter().enumerate() {
            if what != What::Reads {
                continue;
            }
            let idle = find((What::Reads, mode, 0)).filter(|_| writers > 0);
            let vs_idle = idle.map(|idle| ratio(&this[i], &this[idle], |r| r.ops_per_sec));
            let (line, tail, mut row) = row(args, cells[i], &this[i], &other[i]);
            if let Some(vs_idle) = vs_idle {
                row["vs_idle"] = vs_idle.into();
            }
            row["readers"] = READERS.into();
            row["read_keys"] = args.read_keys.into();
            println!("{line} {:>8}{tail}", times(vs_idle));
            json.push(row);
        }
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
        .arg(cell_name((what, mode, writers)))
        .arg("--run-secs")
        .arg(args.run_secs.to_string())
        .arg("--key-bytes")
        .arg(args.key_bytes.to_string())
        .arg("--value-bytes")
        .arg(args.value_bytes.to_string())
        .args(if what == What::Reads { vec!["--read-keys".to_string(), args.read_keys.to_string()] } else { vec![] })
        .arg("--dir")
        .arg(&args.dir)
        .output()?;
    if !output.status.success() {
        let cell = cell_name((what, mode, writers));
        return Err(
            format!("{}, {cell}: {}", path.display(), String::from_utf8_lossy(&output.stderr).trim_end()).into()
        );
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

/// Sets the flag when dropped, so background threads stop even if the
/// measurement beside them fails or panics (a scope would wait for them).
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Store options for `mode`, without automatic snapshots (a snapshot taken
/// in the middle of a run would be measured as the writes' latency).
fn store_options(mode: Mode) -> StoreOptions {
    let mut options = StoreOptions::default();
    options.engine.wal = WalOptions { fsync: mode.fsync(), ..Default::default() };
    options.engine.snapshots = SnapshotOptions::manual();
    options
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
    let run_for = Duration::from_secs_f64(args.run_secs);
    match what {
        What::Put => {
            let store = Store::open(&dir.0, store_options(mode))?;
            let result = drive(writers, run_for, |w, i| store.put(&key(w, i), &value).map(drop).map_err(Into::into));
            store.close()?;
            result
        }
        What::Batch => {
            let store = Store::open(&dir.0, store_options(mode))?;
            let result = drive(writers, run_for, |w, i| {
                let mut batch = WriteBatch::default();
                for j in 0..BATCH_PUTS {
                    batch.put(&key(w, i * BATCH_PUTS + j), &value);
                }
                store.write(&batch).map(drop).map_err(Into::into)
            });
            store.close()?;
            result
        }
        What::Journal => {
            let mut options = JournalOptions::default();
            options.engine.wal.fsync = mode.fsync();
            options.engine.snapshots = SnapshotOptions::manual();
            let journal = DurableJournal::open(&dir.0, options)?;
            // A SET of a bytes value as long as a put's, one address per
            // writer; made inside the timed call, as an application would.
            let addresses: Vec<String> = (0..writers).map(|w| format!("/bench/w{w}")).collect();
            let result = drive(writers, run_for, |w, _| {
                let entry = NewEntry::set("bench", &addresses[w], Value::Bytes(value.clone()));
                journal.append(entry).map(drop).map_err(Into::into)
            });
            journal.close()?;
            result
        }
        What::LogAppend => {
            // A record as long as a put's (key, value, writer id, time and framing).
            let record = vec![0xa5; key_bytes + args.value_bytes + 32];
            let wal = Wal::open(dir.0.join("wal"), WalOptions { fsync: mode.fsync(), ..Default::default() })?;
            let result = drive(writers, run_for, |_, _| wal.append(&record).map(drop).map_err(Into::into));
            wal.close()?;
            result
        }
        What::Reads => {
            let store = Store::open(&dir.0, store_options(mode))?;
            // Writer 0's keys are the preloaded ones; writer w + 1 puts new keys.
            let keys: Vec<Vec<u8>> = (0..args.read_keys).map(|i| key(0, i)).collect();
            for chunk in keys.chunks(PRELOAD_BATCH_PUTS) {
                let mut batch = WriteBatch::default();
                for k in chunk {
                    batch.put(k, &value);
                }
                store.write(&batch)?;
            }
            let result = beside_writers(
                writers,
                |w, i| store.put(&key(w + 1, i), &value).map(drop).map_err(Into::into),
                || {
                    drive(READERS, run_for, |r, i| {
                        let k = &keys[pick(r, i, keys.len())];
                        store.get(k).map(drop).ok_or_else(|| format!("a preloaded key is missing: {k:?}").into())
                    })
                },
            );
            store.close()?;
            result
        }
    }
}

/// Runs `measure` while `writers` threads call `op(writer, i)` in a loop;
/// the writers start before it and stop after it.
fn beside_writers(
    writers: usize,
    op: impl Fn(usize, u64) -> Result<()> + Sync,
    measure: impl FnOnce() -> Result<Run>,
) -> Result<Run> {
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let threads: Vec<_> = (0..writers)
            .map(|w| {
                let (stop, op) = (&stop, &op);
                scope.spawn(move || -> Result<()> {
                    let mut i = 0;
                    while !stop.load(Ordering::Relaxed) {
                        op(w, i)?;
                        i += 1;
                    }
                    Ok(())
                })
            })
            .collect();
        let stopper = StopOnDrop(&stop);
        let run = measure();
        drop(stopper);
        for t in threads {
            t.join().expect("a writer thread panicked")?;
        }
        run
    })
}

/// A pseudo-random index below `n` for reader `reader`'s `i`th get,
/// deterministic and a few cycles: the counter spread by an odd
/// multiplier, then three xorshift steps.
fn pick(reader: usize, i: u64, n: usize) -> usize {
    let mut x = (i ^ ((reader as u64) << 48)).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    (x % n as u64) as usize
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
    Ok(Run { ops_per_sec: ops / secs, p50_us: p.p50_us, p99_us: p.p99_us, p999_us: p.p999_us })
}
