//! `walden bench`: walden's appends next to the raw disk and SQLite, in one
//! process. Each group of engines shares a workload (writers, record size);
//! every engine of a group runs once per repetition, in an order that
//! alternates between repetitions, so drift of the machine hits every engine
//! alike. Figures are medians over repetitions; a ratio is the median of the
//! ratios measured within the same repetition. docs/BENCHMARKS.md has the method.

use crate::bench_sections;
use crate::chart::{Bar, BarGroup, Chart, Panel};
use crate::engines::{self, Api, Engine, Mode, Result, Setup, SqliteConn, Workload};
use crate::latency::{median, Percentiles};
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::PathBuf;
use std::time::Instant;

#[derive(clap::Args)]
pub struct BenchArgs {
    /// Writers 1 and 16 only, and shorter runs: done in under 2 minutes.
    #[arg(long)]
    quick: bool,
    /// Writer thread counts to measure [default: 1,16,64; 1,16 with --quick].
    #[arg(long, value_name = "N,..", value_delimiter = ',', value_parser = clap::value_parser!(u16).range(1..))]
    writers: Vec<u16>,
    /// Record sizes to measure, in bytes [default: 128,4096]. The pipelined
    /// workload runs when 1 writer and 128 B are both measured.
    #[arg(long, value_name = "BYTES,..", value_delimiter = ',', value_parser = clap::value_parser!(u32).range(1..=1 << 24))]
    record_bytes: Vec<u32>,
    /// Repetitions of every measurement; medians are reported.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    reps: u32,
    /// Also write the results to FILE, one JSON object per line.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Also draw walden, SQLite and the raw disk as a grouped bar chart in FILE (SVG).
    #[arg(long, value_name = "FILE.svg")]
    chart: Option<PathBuf>,
    /// Where the data goes: a temporary directory is made in PATH and
    /// removed afterwards. Use the file system you want to measure.
    #[arg(long, value_name = "PATH", default_value = ".")]
    dir: PathBuf,
    /// Seconds one run should take [default: 0.6, 0.2 with --quick]. Each
    /// engine's operation count is fixed for all repetitions of a workload
    /// from the rate of a short pilot run.
    #[arg(long, value_name = "SECS")]
    run_secs: Option<f64>,
    /// How several SQLite writer threads share the database.
    #[arg(long, value_enum, default_value_t = SqliteConn::Mutex)]
    sqlite_conn: SqliteConn,
    /// Skip the store-recovery comparison (a child `walden bench-recovery`).
    #[arg(long)]
    no_recovery: bool,
    /// Keys of the store recovered against SQLite [default: 1000000; 200000 with --quick].
    #[arg(long, value_name = "N")]
    recovery_keys: Option<u64>,
    /// Skip the journal comparison (a child `walden bench-journal`).
    #[arg(long)]
    no_journal: bool,
    /// Journal sizes for the 1,000-entry time-range query [default: 1000000,10000000; 1000000 with --quick].
    #[arg(long, value_name = "N,..", value_delimiter = ',')]
    journal_sizes: Vec<u64>,
    /// Pipelined appends kept in flight.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..))]
    window: u32,
}

/// Engines measured side by side on one workload.
struct Group {
    workload: Workload,
    engines: Vec<Engine>,
}

fn plan(args: &BenchArgs) -> Vec<Group> {
    let writers: Vec<usize> = match (&args.writers[..], args.quick) {
        ([], false) => vec![1, 16, 64],
        ([], true) => vec![1, 16],
        (list, _) => list.iter().map(|&w| usize::from(w)).collect(),
    };
    let sizes: Vec<usize> = match &args.record_bytes[..] {
        [] => vec![128, 4096],
        list => list.iter().map(|&b| b as usize).collect(),
    };
    let mut groups = Vec::new();
    for &writers in &writers {
        for &record_bytes in &sizes {
            let mut engines: Vec<Engine> = Mode::ALL.map(|m| Engine::Walden(m, Api::Blocking)).into();
            engines.extend(Mode::ALL.map(Engine::Sqlite));
            engines.extend([Engine::RawWrite, Engine::RawFdatasync]);
            // Small records fill few 64 MiB segments in a run: the
            // segment-synced baseline matters (and is measured) for large ones.
            if record_bytes >= 1024 {
                engines.push(Engine::RawSegmented);
            }
            groups.push(Group { workload: Workload { writers, record_bytes }, engines });
        }
    }
    if !(writers.contains(&1) && sizes.contains(&128)) {
        return groups;
    }
    let pipelined = [Mode::Never, Mode::Periodic].map(|m| Engine::Walden(m, Api::Pipelined));
    groups.push(Group {
        workload: Workload { writers: 1, record_bytes: 128 },
        engines: [pipelined[0], pipelined[1], Engine::RawWrite, Engine::RawSequential].into(),
    });
    groups
}

/// Rough rates (ops/s) on the reference machine (2 vCPUs, ext4 on virtio),
/// used only to size the pilot run that sizes the real ones.
fn expected_rate(engine: Engine, workload: Workload) -> f64 {
    let writers = workload.writers as f64;
    let small = workload.record_bytes <= 1024;
    match engine {
        Engine::Walden(Mode::Always, Api::Blocking) => 5_000.0 * writers.min(8.0),
        Engine::Walden(_, Api::Blocking) if small => 300_000.0,
        Engine::Walden(_, Api::Blocking) => 100_000.0,
        Engine::Walden(_, Api::Pipelined) => 3_000_000.0,
        Engine::Sqlite(Mode::Always) => 3_000.0,
        Engine::Sqlite(_) if small => 100_000.0,
        Engine::Sqlite(_) => 30_000.0,
        Engine::RawWrite if small => 1_500_000.0,
        Engine::RawWrite => 300_000.0,
        Engine::RawFdatasync => 5_000.0 * writers.min(2.0),
        Engine::RawSegmented if small => 1_000_000.0,
        Engine::RawSegmented => 150_000.0,
        Engine::RawSequential => 2_000_000.0,
    }
}

/// How long a pilot run should take, by [`expected_rate`].
const PILOT_SECS: f64 = 0.1;

fn ops_for(engine: Engine, workload: Workload, secs: f64) -> u64 {
    let writers = workload.writers as u64;
    let ops = (expected_rate(engine, workload) * secs) as u64;
    ops.max(20 * writers).next_multiple_of(writers)
}

/// One repetition of one engine on one workload.
#[derive(Clone, Copy, Debug)]
struct Sample {
    ops_per_s: f64,
    secs: f64,
    latency: Percentiles,
    fsyncs_per_s: Option<f64>,
    ops_per_write: Option<f64>,
}

/// Runs engines, each in a fresh directory of its own under `root`.
struct Runner<'a> {
    args: &'a BenchArgs,
    root: PathBuf,
    runs: usize,
}

impl Runner<'_> {
    fn measure(&mut self, engine: Engine, workload: Workload, ops: u64) -> Result<Sample> {
        self.runs += 1;
        let dir = self.root.join(format!("run-{}", self.runs));
        std::fs::create_dir(&dir)?;
        let setup = Setup { dir: &dir, sqlite_conn: self.args.sqlite_conn, window: self.args.window as usize };
        let mut measured = engines::run(engine, workload, ops, &setup)?;
        std::fs::remove_dir_all(&dir)?;
        Ok(Sample {
            ops_per_s: measured.ops as f64 / measured.secs,
            secs: measured.secs,
            latency: Percentiles::of(&mut measured.latencies),
            fsyncs_per_s: measured.syncs.map(|s| s as f64 / measured.secs),
            ops_per_write: measured.writes.map(|w| measured.ops as f64 / w.max(1) as f64),
        })
    }
}

/// A group's results: `samples[engine][repetition]`.
struct GroupResult {
    group: Group,
    ops: Vec<u64>,
    samples: Vec<Vec<Sample>>,
}

impl GroupResult {
    fn samples(&self, engine: Engine) -> Option<&[Sample]> {
        let i = self.group.engines.iter().position(|&e| e == engine)?;
        Some(&self.samples[i])
    }

    fn median_rate(&self, engine: Engine) -> Option<f64> {
        self.samples(engine).map(|s| median(s.iter().map(|s| s.ops_per_s)))
    }

    /// The median over repetitions of `a`'s rate over `b`'s in the same repetition.
    fn ratio(&self, a: Engine, b: Engine) -> Option<f64> {
        let (a, b) = (self.samples(a)?, self.samples(b)?);
        Some(median(a.iter().zip(b).map(|(a, b)| a.ops_per_s / b.ops_per_s)))
    }
}

/// What a walden row is compared with: the raw disk doing the same promise
/// (fdatasync per record for Always, write() per record otherwise) and
/// SQLite at the same durability.
fn raw_baseline(engine: Engine) -> Option<Engine> {
    match engine {
        Engine::Walden(Mode::Always, _) => Some(Engine::RawFdatasync),
        Engine::Walden(..) => Some(Engine::RawWrite),
        _ => None,
    }
}

fn sqlite_baseline(engine: Engine) -> Option<Engine> {
    match engine {
        Engine::Walden(mode, _) => Some(Engine::Sqlite(mode)),
        _ => None,
    }
}

/// `Periodic` and `Never` against the raw disk when it too syncs every
/// 64 MiB, as walden does at each roll-over: how much of the gap to a bare
/// write() loop, which never waits for the disk, is that sync. One write()
/// per record for blocking appends, 1 MiB writes for pipelined ones.
fn raw_synced_baseline(engine: Engine) -> Option<Engine> {
    match engine {
        Engine::Walden(Mode::Periodic | Mode::Never, Api::Blocking) => Some(Engine::RawSegmented),
        Engine::Walden(Mode::Periodic | Mode::Never, Api::Pipelined) => Some(Engine::RawSequential),
        _ => None,
    }
}

pub fn run(args: &BenchArgs) -> Result<()> {
    let run_secs = args.run_secs.unwrap_or(if args.quick { 0.2 } else { 0.6 });
    if !(run_secs > 0.0 && run_secs <= 60.0) {
        return Err(format!("--run-secs {run_secs} is not between 0 and 60").into());
    }
    let reps = args.reps as usize;
    let root = tempfile::Builder::new().prefix(".walden-bench-").tempdir_in(&args.dir)?;
    let groups = plan(args);
    let total: usize = groups.iter().map(|g| g.engines.len()).sum::<usize>() * reps;
    eprintln!("walden bench: {total} runs ({reps} repetitions, ~{run_secs} s each) in {}", root.path().display());
    let started = Instant::now();
    let mut runner = Runner { args, root: root.path().to_owned(), runs: 0 };
    let mut done = 0;
    let mut results = Vec::new();
    for group in groups {
        let Workload { writers, record_bytes } = group.workload;
        let label = |engine: Engine| format!("{writers} writers x {record_bytes} B: {:<26}", engine.label());
        // A pilot run per engine sizes the fixed operation count of its
        // repetitions (and warms the code paths and the page cache up).
        let mut ops = Vec::with_capacity(group.engines.len());
        for &engine in &group.engines {
            eprint!("[pilot  ] {} ", label(engine));
            let pilot = runner.measure(engine, group.workload, ops_for(engine, group.workload, PILOT_SECS))?;
            let n = ((pilot.ops_per_s * run_secs) as u64).max(20 * writers as u64).next_multiple_of(writers as u64);
            eprintln!("{:>12} ops/s: {n} ops a run", thousands(pilot.ops_per_s));
            ops.push(n);
        }
        let mut samples = vec![Vec::with_capacity(reps); group.engines.len()];
        for rep in 0..reps {
            let mut order: Vec<usize> = (0..group.engines.len()).collect();
            if rep % 2 == 1 {
                order.reverse();
            }
            for i in order {
                done += 1;
                eprint!("[{done:3}/{total}] {} rep {}/{reps} ", label(group.engines[i]), rep + 1);
                let sample = runner.measure(group.engines[i], group.workload, ops[i])?;
                eprintln!("{:>12} ops/s in {:.2} s", thousands(sample.ops_per_s), sample.secs);
                samples[i].push(sample);
            }
        }
        results.push(GroupResult { group, ops, samples });
    }
    eprintln!("walden bench: appends done in {:.0} s", started.elapsed().as_secs_f64());

    let rows: Vec<Row> = results.iter().flat_map(rows_of).collect();
    print!("{}", append_report(&rows, reps, args.sqlite_conn, args.window));
    let mut sections = Vec::new();
    if !args.no_recovery {
        let keys = args.recovery_keys.unwrap_or(if args.quick { 200_000 } else { 1_000_000 });
        eprintln!("walden bench: store recovery, {keys} keys, walden vs SQLite");
        println!();
        sections.extend(bench_sections::recovery(root.path(), keys)?);
    }
    if !args.no_journal {
        let sizes = match (&args.journal_sizes[..], args.quick) {
            ([], false) => vec![1_000_000, 10_000_000],
            ([], true) => vec![1_000_000],
            (sizes, _) => sizes.to_vec(),
        };
        let entries = if args.quick { 20_000 } else { 200_000 };
        eprintln!("walden bench: the journal, walden vs a SQLite journal table");
        println!();
        sections.extend(bench_sections::journal(root.path(), entries, &sizes)?);
    }
    if !sections.is_empty() {
        println!("\n## walden vs SQLite: store recovery and the journal\n");
        println!("Each measured in a child process of its own, whose full report is above.\n");
        print!("{}", bench_sections::table(&sections));
    }
    eprintln!("walden bench: all done in {:.0} s", started.elapsed().as_secs_f64());
    if let Some(path) = &args.json {
        let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
        for row in &rows {
            writeln!(out, "{}", row.json(args.sqlite_conn))?;
        }
        for row in &sections {
            writeln!(out, "{}", row.json())?;
        }
        out.flush()?;
        eprintln!("walden bench: wrote {}", path.display());
    }
    if let Some(path) = &args.chart {
        std::fs::write(path, chart(&rows, args).to_svg())?;
        eprintln!("walden bench: wrote {}", path.display());
    }
    root.close()?;
    Ok(())
}

/// The medians of one engine on one workload.
struct Row {
    engine: Engine,
    workload: Workload,
    ops: u64,
    rates: Vec<f64>,
    ops_per_s: f64,
    secs: f64,
    latency: Percentiles,
    fsyncs_per_s: Option<f64>,
    ops_per_write: Option<f64>,
    /// Against the raw disk making the same promise.
    vs_raw: Option<Versus>,
    /// Against SQLite at the same durability.
    vs_sqlite: Option<Versus>,
    /// `Periodic` and `Never` against the raw disk synced every 64 MiB, as
    /// walden syncs each segment at its roll-over.
    vs_raw_synced: Option<Versus>,
}

/// A walden row against a baseline measured in the same group.
#[derive(Clone, Copy, Debug)]
struct Versus {
    baseline: Engine,
    /// The median over repetitions of walden's rate / the baseline's.
    ratio: f64,
    /// The baseline's median rate and p99 latency.
    ops_per_s: f64,
    p99_us: f64,
}

fn rows_of(result: &GroupResult) -> Vec<Row> {
    let group = &result.group;
    group
        .engines
        .iter()
        .zip(&result.samples)
        .zip(&result.ops)
        .map(|((&engine, samples), &ops)| {
            let med = |f: fn(&Sample) -> f64| median(samples.iter().map(f));
            let against = |baseline: Option<Engine>| {
                let b = baseline?;
                let samples = result.samples(b)?;
                Some(Versus {
                    baseline: b,
                    ratio: result.ratio(engine, b)?,
                    ops_per_s: result.median_rate(b)?,
                    p99_us: median(samples.iter().map(|s| s.latency.p99_us)),
                })
            };
            Row {
                engine,
                workload: group.workload,
                ops,
                rates: samples.iter().map(|s| s.ops_per_s).collect(),
                ops_per_s: med(|s| s.ops_per_s),
                secs: med(|s| s.secs),
                latency: Percentiles {
                    p50_us: med(|s| s.latency.p50_us),
                    p99_us: med(|s| s.latency.p99_us),
                    p999_us: med(|s| s.latency.p999_us),
                },
                fsyncs_per_s: samples[0].fsyncs_per_s.map(|_| med(|s| s.fsyncs_per_s.unwrap_or(f64::NAN))),
                ops_per_write: samples[0].ops_per_write.map(|_| med(|s| s.ops_per_write.unwrap_or(f64::NAN))),
                vs_raw: against(raw_baseline(engine)),
                vs_sqlite: against(sqlite_baseline(engine)),
                vs_raw_synced: against(raw_synced_baseline(engine)),
            }
        })
        .collect()
}

impl Row {
    fn mb_per_s(&self) -> f64 {
        self.ops_per_s * self.workload.record_bytes as f64 / 1e6
    }

    fn json(&self, sqlite_conn: SqliteConn) -> serde_json::Value {
        let ratio = |r: Option<Versus>| r.map(|v| v.ratio);
        let baseline = |r: Option<Versus>| r.map(|v| v.baseline.label());
        serde_json::json!({
            "workload": "append",
            "engine": self.engine.name(),
            "mode": self.engine.mode().map(Mode::name),
            "api": self.engine.api().name(),
            "writers": self.workload.writers,
            "record_bytes": self.workload.record_bytes,
            "ops": self.ops,
            "reps": self.rates.len(),
            "ops_per_s": self.ops_per_s,
            "ops_per_s_reps": self.rates,
            "mb_per_s": self.mb_per_s(),
            "p50_us": self.latency.p50_us,
            "p99_us": self.latency.p99_us,
            "p999_us": self.latency.p999_us,
            "secs": self.secs,
            "fsyncs_per_s": self.fsyncs_per_s,
            "ops_per_write": self.ops_per_write,
            "vs_raw": ratio(self.vs_raw),
            "raw_baseline": baseline(self.vs_raw),
            "vs_sqlite": ratio(self.vs_sqlite),
            "sqlite_baseline": baseline(self.vs_sqlite),
            "vs_raw_synced": ratio(self.vs_raw_synced),
            "raw_synced_baseline": baseline(self.vs_raw_synced),
            "sqlite_synchronous": match self.engine {
                Engine::Sqlite(mode) => Some(mode.sqlite_synchronous()),
                _ => None,
            },
            "sqlite_conn": matches!(self.engine, Engine::Sqlite(_)).then_some(sqlite_conn.name()),
        })
    }
}

/// The chart: a panel per fsync mode, a group per workload, and in each
/// group walden, SQLite at the same durability and the raw disk baseline
/// (both measured in walden's group).
fn chart(rows: &[Row], args: &BenchArgs) -> Chart<'static> {
    const SERIES: &[&str] = &["walden", "SQLite (same durability)", "raw disk (same promise)"];
    let panels = Mode::ALL
        .iter()
        .map(|&mode| {
            let groups = rows
                .iter()
                .filter(|row| matches!(row.engine, Engine::Walden(m, _) if m == mode))
                .map(|row| {
                    let values =
                        [Some(row.ops_per_s), row.vs_sqlite.map(|v| v.ops_per_s), row.vs_raw.map(|v| v.ops_per_s)];
                    let bars = values
                        .iter()
                        .enumerate()
                        .filter_map(|(series, value)| Some(Bar { series, value: (*value)? }))
                        .collect();
                    let api = if row.engine.api() == Api::Pipelined { " pipelined" } else { "" };
                    let workload = row.workload;
                    BarGroup { label: format!("{} x {}{api}", workload.writers, bytes(workload.record_bytes)), bars }
                })
                .collect();
            let sqlite = mode.sqlite_synchronous();
            Panel { title: format!("fsync mode {} (SQLite synchronous={sqlite})", mode.name()), groups }
        })
        .collect();
    Chart {
        title: "walden bench: appends per second, walden vs SQLite vs the raw disk",
        subtitle: if args.quick {
            "writers x record size; medians of alternated repetitions in one run (--quick)"
        } else {
            "writers x record size; medians of alternated repetitions in one run"
        },
        series: SERIES,
        panels,
    }
}

/// What `walden bench` prints about appends: walden vs SQLite, walden vs
/// the raw disk, then every measurement.
fn append_report(rows: &[Row], reps: usize, sqlite_conn: SqliteConn, window: u32) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "## walden vs SQLite: appends\n");
    let _ = writeln!(
        out,
        "Records appended per second, {}. SQLite runs in WAL mode, one INSERT per record, at the same \
         durability as walden's fsync mode (always: synchronous=FULL, periodic: NORMAL, never: OFF); its \
         writers share {}.\n",
        if reps == 1 { "one run each".to_owned() } else { format!("medians of {reps} repetitions") },
        match sqlite_conn {
            SqliteConn::Mutex => "one connection behind a mutex",
            SqliteConn::PerThread => "nothing: a connection each",
        }
    );
    out.push_str(&versus_sqlite_table(rows));
    let _ = writeln!(out, "\n## walden vs the raw disk: appends\n");
    let _ = writeln!(
        out,
        "The raw disk is a bare loop making the same promise on the same file system, the least any log pays: \
         pwrite() + fdatasync() of each record (always), pwrite() of each record (periodic, never). A bare \
         pwrite() never waits for the disk; walden syncs each 64 MiB segment whole when it rolls over, so the \
         last columns compare it with the same loop synced every 64 MiB (pipelined appends: 1 MiB writes, the \
         disk's sequential rate). Pipelined: one thread keeps {window} appends in flight.\n"
    );
    out.push_str(&versus_raw_table(rows));
    let _ = writeln!(out, "\n## Every append measurement\n");
    out.push_str(&table(rows));
    let _ = writeln!(
        out,
        "\nRatios are medians of the ratios within each repetition (walden and its baseline measured minutes \
         apart at most). docs/BENCHMARKS.md says how each engine is set up."
    );
    out
}

/// Every walden row that has a SQLite row at the same durability.
fn versus_sqlite_table(rows: &[Row]) -> String {
    let mut out = String::from(
        "| writers | record | fsync mode | walden ops/s | SQLite ops/s | walden / SQLite | walden p99 µs | SQLite p99 µs |\n\
         |--:|--:|---|--:|--:|--:|--:|--:|\n",
    );
    for row in rows {
        let (Some(mode), Some(v)) = (row.engine.mode(), row.vs_sqlite) else { continue };
        let _ = writeln!(
            out,
            "| {} | {} | {} ({}) | {} | {} | {:.2}x | {:.0} | {:.0} |",
            row.workload.writers,
            bytes(row.workload.record_bytes),
            mode.name(),
            mode.sqlite_synchronous(),
            thousands(row.ops_per_s),
            thousands(v.ops_per_s),
            v.ratio,
            row.latency.p99_us,
            v.p99_us,
        );
    }
    out
}

/// Every walden row against the raw disk, and where measured against the
/// raw disk synced at walden's roll-overs.
fn versus_raw_table(rows: &[Row]) -> String {
    let mut out = String::from(
        "| writers | record | fsync mode | api | walden ops/s | raw disk | raw ops/s | walden / raw | \
         raw synced every 64 MiB, ops/s | walden / that |\n|--:|--:|---|---|--:|---|--:|--:|--:|--:|\n",
    );
    for row in rows {
        let (Some(mode), Some(raw)) = (row.engine.mode(), row.vs_raw) else { continue };
        let synced = row.vs_raw_synced;
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {:.2}x | {} | {} |",
            row.workload.writers,
            bytes(row.workload.record_bytes),
            mode.name(),
            row.engine.api().name(),
            thousands(row.ops_per_s),
            raw_loop(raw.baseline),
            thousands(raw.ops_per_s),
            raw.ratio,
            synced.map_or(String::new(), |v| thousands(v.ops_per_s)),
            synced.map_or(String::new(), |v| format!("{:.2}x", v.ratio)),
        );
    }
    out
}

/// What a raw-disk engine does, for people.
fn raw_loop(engine: Engine) -> &'static str {
    match engine {
        Engine::RawFdatasync => "write + fdatasync",
        Engine::RawWrite => "write",
        Engine::RawSegmented => "write, synced every 64 MiB",
        Engine::RawSequential => "1 MiB writes, synced every 64 MiB",
        Engine::Walden(..) | Engine::Sqlite(_) => "",
    }
}

fn table(rows: &[Row]) -> String {
    let mut out = String::new();
    let header = "| writers | record | engine | mode | api | ops/s | MB/s | p50 µs | p99 µs | p99.9 µs | fsync/s | walden / raw disk | walden / SQLite |";
    out.push_str(header);
    out.push('\n');
    out.push_str("|--:|--:|---|---|---|--:|--:|--:|--:|--:|--:|--:|--:|\n");
    for row in rows {
        let mode = match row.engine {
            Engine::Sqlite(mode) => mode.sqlite_synchronous().to_owned(),
            e => e.mode().map_or("", Mode::name).to_owned(),
        };
        let ratio = |r: Option<Versus>| r.map_or(String::new(), |v| format!("{:.2}", v.ratio));
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {:.1} | {:.0} | {:.0} | {:.0} | {} | {} | {} |",
            row.workload.writers,
            bytes(row.workload.record_bytes),
            row.engine.name(),
            mode,
            row.engine.api().name(),
            thousands(row.ops_per_s),
            row.mb_per_s(),
            row.latency.p50_us,
            row.latency.p99_us,
            row.latency.p999_us,
            row.fsyncs_per_s.map_or(String::new(), thousands),
            ratio(row.vs_raw),
            ratio(row.vs_sqlite),
        );
    }
    out
}

fn bytes(n: usize) -> String {
    if n.is_multiple_of(1024) {
        format!("{} KiB", n / 1024)
    } else {
        format!("{n} B")
    }
}

/// 1234567.8 as "1,234,568".
fn thousands(v: f64) -> String {
    if !v.is_finite() {
        return "-".to_owned();
    }
    let digits = format!("{:.0}", v.abs());
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if v < 0.0 {
        out.insert(0, '-');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: BenchArgs,
    }

    impl BenchArgs {
        fn parse_from<const N: usize>(argv: [&str; N]) -> BenchArgs {
            Cli::parse_from(argv).args
        }
    }

    #[test]
    fn formatting() {
        assert_eq!(thousands(1_234_567.8), "1,234,568");
        assert_eq!(thousands(999.0), "999");
        assert_eq!(bytes(4096), "4 KiB");
        assert_eq!(bytes(128), "128 B");
        assert_eq!(median([3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median([4.0, 1.0]), 2.5);
    }

    fn sample(ops_per_s: f64) -> Sample {
        let latency = Percentiles { p50_us: 10.0, p99_us: 100.0, p999_us: 1000.0 };
        Sample { ops_per_s, secs: 1.0, latency, fsyncs_per_s: None, ops_per_write: None }
    }

    /// One group of two repetitions whose ratios are known: walden always
    /// 2x and 2x SQLite FULL, 1.0x and 1.1x raw write+fdatasync; walden
    /// never 2x and 3x SQLite OFF, 1/3 and 0.4 raw write, 1.25x and 1.47x
    /// raw write synced every 64 MiB.
    fn rows() -> Vec<Row> {
        let engines = vec![
            Engine::Walden(Mode::Always, Api::Blocking),
            Engine::Walden(Mode::Never, Api::Blocking),
            Engine::Sqlite(Mode::Always),
            Engine::Sqlite(Mode::Never),
            Engine::RawWrite,
            Engine::RawFdatasync,
            Engine::RawSegmented,
        ];
        let rates = [
            [6_000.0, 6_600.0],
            [60_000.0, 66_000.0],
            [3_000.0, 3_300.0],
            [30_000.0, 22_000.0],
            [180_000.0, 165_000.0],
            [6_000.0, 6_000.0],
            [48_000.0, 45_000.0],
        ];
        let samples = rates.iter().map(|r| r.iter().map(|&x| sample(x)).collect()).collect();
        let group = Group { workload: Workload { writers: 1, record_bytes: 4096 }, engines };
        rows_of(&GroupResult { group, ops: vec![100; 7], samples })
    }

    #[test]
    fn the_report_puts_walden_against_sqlite_and_the_raw_disk_and_sets_no_goals() {
        let report = append_report(&rows(), 2, SqliteConn::Mutex, 1024);
        assert!(report.contains("## walden vs SQLite: appends"), "{report}");
        assert!(report.contains("## walden vs the raw disk: appends"), "{report}");
        assert!(report.contains("medians of 2 repetitions"), "{report}");
        assert!(report.contains("share one connection behind a mutex"), "{report}");
        // walden vs SQLite: medians of the rates and of the paired ratios.
        assert!(report.contains("| 1 | 4 KiB | always (FULL) | 6,300 | 3,150 | 2.00x | 100 | 100 |"), "{report}");
        assert!(report.contains("| 1 | 4 KiB | never (OFF) | 63,000 | 26,000 | 2.50x | 100 | 100 |"), "{report}");
        // walden vs the raw disk, and vs the raw disk synced every 64 MiB.
        assert!(report.contains("| 1 | 4 KiB | always | blocking | 6,300 | write + fdatasync | 6,000 | 1.05x |  |  |"));
        assert!(
            report.contains("| 1 | 4 KiB | never | blocking | 63,000 | write | 172,500 | 0.37x | 46,500 | 1.36x |"),
            "{report}"
        );
        // Every measurement, SQLite and raw rows included.
        assert!(report.contains("| 1 | 4 KiB | sqlite | OFF | blocking | 26,000 |"), "{report}");
        assert!(report.contains("| 1 | 4 KiB | raw-write-seg |  | blocking | 46,500 |"), "{report}");
        let lower = report.to_lowercase();
        for internal in ["goal", "target", "issue", "missed", "verdict"] {
            assert!(!lower.contains(internal), "the report says {internal:?}:\n{report}");
        }
    }

    #[test]
    fn json_rows_name_each_ratio_and_its_baseline() {
        let rows = rows();
        let never = rows[1].json(SqliteConn::Mutex);
        assert_eq!(never["engine"], "walden");
        assert_eq!(never["mode"], "never");
        assert_eq!(never["vs_sqlite"], 2.5);
        assert_eq!(never["sqlite_baseline"], "sqlite OFF");
        assert_eq!(never["raw_baseline"], "raw-write");
        assert_eq!(never["raw_synced_baseline"], "raw-write-seg");
        let synced = never["vs_raw_synced"].as_f64().unwrap();
        assert!((synced - (1.25 + 66.0 / 45.0) / 2.0).abs() < 1e-9, "{synced}");
        let always = rows[0].json(SqliteConn::Mutex);
        assert_eq!(always["raw_baseline"], "raw-fdatasync");
        assert!(always["vs_raw_synced"].is_null(), "Always has no segment-synced baseline");
        let sqlite = rows[3].json(SqliteConn::Mutex);
        assert_eq!(
            (sqlite["sqlite_synchronous"].as_str(), sqlite["sqlite_conn"].as_str()),
            (Some("OFF"), Some("mutex"))
        );
        assert!(sqlite["vs_sqlite"].is_null());
    }

    #[test]
    fn the_chart_draws_walden_sqlite_and_the_raw_disk_of_the_same_group() {
        let chart = chart(&rows(), &BenchArgs::parse_from(["bench"]));
        let titles: Vec<&str> = chart.panels.iter().map(|p| p.title.as_str()).collect();
        assert_eq!(titles.len(), 3, "{titles:?}");
        let always = &chart.panels[0].groups;
        assert_eq!(always.len(), 1);
        let values: Vec<f64> = always[0].bars.iter().map(|b| b.value).collect();
        assert_eq!(values, [6_300.0, 3_150.0, 6_000.0]);
        assert!(chart.panels[1].groups.is_empty(), "no periodic rows");
        assert_eq!(chart.panels[2].groups[0].bars.len(), 3);
    }

    #[test]
    fn op_counts_are_whole_shares() {
        assert_eq!(plan(&BenchArgs::parse_from(["bench", "--quick"])).len(), 5);
        assert_eq!(plan(&BenchArgs::parse_from(["bench", "--writers", "4", "--record-bytes", "100,200"])).len(), 2);
        let args = BenchArgs::parse_from(["bench"]);
        assert_eq!(plan(&args).len(), 7);
        for group in plan(&args) {
            for engine in group.engines {
                assert_eq!(ops_for(engine, group.workload, 0.3) % group.workload.writers as u64, 0);
            }
        }
    }
}
