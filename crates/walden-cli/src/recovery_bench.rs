//! `walden bench-recovery`: how long the store takes to come back from a
//! snapshot, from a snapshot plus a log and from the log alone, against a
//! naive program that appended the same puts to a file with write() and
//! replays them into a HashMap, and against loading the same rows from
//! SQLite into a map; the memory each holds once recovered, per key, against
//! the raw key and value bytes; how long a snapshot takes to write, how
//! large it is, what it does to a concurrent writer's latency, and the
//! memory of recovery and of snapshot writing. docs/BENCHMARKS.md has the
//! method.
//!
//! Every open and every SQLite load runs in a child process (this binary
//! re-executed with a hidden `--child-*` option), so its peak RSS (VmHWM)
//! is its own and the page cache can be dropped before it.

use crate::engines::Result;
use crate::latency::{median, nanos, Percentiles};
use imbl::OrdMap;
use mem::{decide, mem_available_bytes, release_free_heap, status, Comparison, Fit};
use rusqlite::{params, Connection};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use walden::store::StoreKey;
use walden::{EngineOptions, Entry, FsyncMode, SnapshotOptions, Store, StoreOptions, WalOptions, WriteBatch};

mod mem;
mod report;

use report::{mib, report};

#[derive(clap::Args)]
pub struct RecoveryArgs {
    /// Key counts to measure, each on a store and a SQLite database of its own.
    #[arg(long, value_name = "N,..", value_delimiter = ',', default_value = "1000000")]
    keys: Vec<u64>,
    /// Puts appended to the log after the snapshot for the "snapshot + log" open.
    #[arg(long, value_name = "N", default_value_t = 1_000_000)]
    log_records: u64,
    /// Opens (and SQLite loads) per configuration and cache state; medians
    /// are reported. Default: 3, or 1 from 50,000,000 keys (so that 100M keys
    /// run in minutes, not hours).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    opens: Option<u32>,
    /// Snapshot-while-writing rounds of the latency test (each: one
    /// snapshot, then as long without). Default: 3, or 1 from 50,000,000 keys.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    rounds: Option<u32>,
    /// Do not drop the page cache (`echo 3 > /proc/sys/vm/drop_caches`, needs root) before cold opens.
    #[arg(long)]
    no_drop_caches: bool,
    /// Skip the SQLite comparison.
    #[arg(long)]
    no_sqlite: bool,
    /// Also write the results to FILE, one JSON object per line.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Where the data goes: a temporary directory is made in PATH and removed afterwards.
    #[arg(long, value_name = "PATH", default_value = ".")]
    dir: PathBuf,
    /// Only build a store in DIR as the benchmark does (the first of --keys,
    /// a snapshot, --log-records puts after it) and keep it, for A/B opens
    /// of two builds with --open-only DIR.
    #[arg(long, value_name = "DIR", hide = true)]
    prepare: Option<PathBuf>,
    /// With --prepare: no snapshot, only the log of the keys' puts (and the
    /// log records after them), for A/B opens of replay from the log alone.
    #[arg(long, hide = true)]
    no_snapshot: bool,
    /// Only write the raw write() log of the first of --keys puts to FILE,
    /// for A/B runs with --child-raw-replay FILE.
    #[arg(long, value_name = "FILE", hide = true)]
    prepare_raw: Option<PathBuf>,
    /// Child process: replay the raw write() log FILE into a HashMap.
    #[arg(long, value_name = "FILE", hide = true)]
    child_raw_replay: Option<PathBuf>,
    /// Child process: open the store in DIR, print time and memory as JSON.
    #[arg(long, value_name = "DIR", hide = true)]
    open_only: Option<PathBuf>,
    /// Child process: open the store in DIR, take a snapshot, print its time and memory.
    #[arg(long, value_name = "DIR", hide = true)]
    child_snapshot: Option<PathBuf>,
    /// Child process: load the SQLite database FILE into a HashMap.
    #[arg(long, value_name = "FILE", hide = true)]
    child_sqlite_hashmap: Option<PathBuf>,
    /// Child process: load the SQLite database FILE into the store's imbl::OrdMap.
    #[arg(long, value_name = "FILE", hide = true)]
    child_sqlite_ordmap: Option<PathBuf>,
}

const KEY_BYTES: usize = 16;
const VALUE_BYTES: usize = 100;
const BATCH: u64 = 1000;
const WRITER: &str = "walden";
/// From this many keys, --opens and --rounds default to 1.
const LARGE_KEYS: u64 = 50_000_000;

impl RecoveryArgs {
    fn opens(&self, n: u64) -> u32 {
        self.opens.unwrap_or(if n >= LARGE_KEYS { 1 } else { 3 })
    }

    fn rounds(&self, n: u64) -> u32 {
        self.rounds.unwrap_or(if n >= LARGE_KEYS { 1 } else { 3 })
    }
}

/// Raw key and value bytes of `n` keys.
fn raw_bytes(n: u64) -> u64 {
    n * (KEY_BYTES + VALUE_BYTES) as u64
}

/// Key `i`: 8 bytes of a hash of i (so keys arrive in random order), then i.
fn key(i: u64) -> [u8; KEY_BYTES] {
    let mut k = [0u8; KEY_BYTES];
    k[..8].copy_from_slice(&splitmix64(i).to_be_bytes());
    k[8..].copy_from_slice(&i.to_be_bytes());
    k
}

fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A fast generator of incompressible bytes (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn fill(&mut self, out: &mut [u8]) {
        for chunk in out.chunks_mut(8) {
            let r = self.next().to_le_bytes();
            chunk.copy_from_slice(&r[..chunk.len()]);
        }
    }
}

fn store_options() -> StoreOptions {
    let snapshots = SnapshotOptions::manual();
    let wal = WalOptions { fsync: FsyncMode::Never, ..Default::default() };
    StoreOptions { engine: EngineOptions { wal, snapshots }, writer: WRITER.into() }
}

/// User plus system CPU seconds in a /proc `stat` file (of the process or
/// of one thread), at Linux's 100 clock ticks a second.
fn cpu_secs(stat: &str) -> f64 {
    let text = std::fs::read_to_string(stat).unwrap_or_default();
    let fields: Vec<&str> = text.rsplit_once(')').map_or("", |(_, rest)| rest).split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(f64::NAN);
    (ticks(11) + ticks(12)) / 100.0
}

/// Samples RssAnon (heap) every 2 ms on a thread of its own until
/// finished: VmHWM counts mapped file pages too (the log is read through
/// mmap). Also takes the CPU time the process and the thread that started
/// it use meanwhile (less the sampler's own): on a loaded machine the
/// wall-clock time of an open includes waiting for a core, its CPU time
/// much less so.
struct AnonPeak {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<(u64, f64)>>,
    cpu_before: f64,
    main_before: f64,
}

/// What an [`AnonPeak`] measured.
#[derive(Clone, Copy, Debug, Default)]
struct Sampled {
    peak_anon: u64,
    cpu_secs: f64,
    main_cpu_secs: f64,
}

impl AnonPeak {
    fn start() -> AnonPeak {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut peak = 0;
            loop {
                peak = peak.max(status(&["RssAnon:"])[0]);
                if flag.load(Ordering::Relaxed) {
                    return (peak, cpu_secs("/proc/thread-self/stat"));
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        });
        AnonPeak {
            stop,
            thread: Some(thread),
            cpu_before: cpu_secs("/proc/self/stat"),
            main_before: cpu_secs("/proc/thread-self/stat"),
        }
    }

    fn finish(mut self) -> Sampled {
        let main_cpu_secs = cpu_secs("/proc/thread-self/stat") - self.main_before;
        self.stop.store(true, Ordering::Relaxed);
        let (peak_anon, sampler_cpu) = self.thread.take().map_or((0, 0.0), |t| t.join().unwrap_or((0, 0.0)));
        let cpu_secs = cpu_secs("/proc/self/stat") - self.cpu_before - sampler_cpu;
        Sampled { peak_anon, cpu_secs, main_cpu_secs }
    }
}

/// Resets VmHWM to the current RSS.
fn reset_peak() -> Result<()> {
    std::fs::write("/proc/self/clear_refs", "5")?;
    Ok(())
}

fn drop_caches() -> Result<()> {
    std::process::Command::new("sync").status()?;
    std::fs::write("/proc/sys/vm/drop_caches", "3")?;
    Ok(())
}

pub fn run(args: &RecoveryArgs) -> Result<()> {
    if let Some(dir) = &args.open_only {
        return child_open(dir);
    }
    if let Some(dir) = &args.prepare {
        return prepare(args, dir);
    }
    if let Some(file) = &args.prepare_raw {
        let secs = write_raw_log(file, args.keys[0])?;
        eprintln!("bench-recovery: {} puts written to {} in {secs:.2} s", args.keys[0], file.display());
        return Ok(());
    }
    if let Some(file) = &args.child_raw_replay {
        return child_raw_replay(file);
    }
    if let Some(dir) = &args.child_snapshot {
        return child_snapshot(dir);
    }
    if let Some(file) = &args.child_sqlite_hashmap {
        return child_sqlite(file, false);
    }
    if let Some(file) = &args.child_sqlite_ordmap {
        return child_sqlite(file, true);
    }
    let cold_note = if args.no_drop_caches {
        Some("cold opens not measured: --no-drop-caches".to_owned())
    } else {
        drop_caches().err().map(|e| {
            format!(
                "cold opens not measured: the page cache cannot be dropped (echo 3 > /proc/sys/vm/drop_caches: {e})"
            )
        })
    };
    let cold = cold_note.is_none();
    if let Some(note) = &cold_note {
        eprintln!("bench-recovery: {note}");
    }
    match mem_available_bytes() {
        Some(b) => eprintln!("bench-recovery: {} available (MemAvailable)", mem::gib(b)),
        None => eprintln!("bench-recovery: MemAvailable unreadable: no comparison can be skipped for memory"),
    }
    let root = tempfile::Builder::new().prefix(".walden-bench-").tempdir_in(&args.dir)?;
    eprintln!("bench-recovery: data in {}", root.path().display());
    let started = Instant::now();
    let mut results = Vec::new();
    for &n in &args.keys {
        let dir = root.path().join(format!("keys-{n}"));
        std::fs::create_dir(&dir)?;
        results.push(measure(args, n, &dir, cold)?);
        std::fs::remove_dir_all(&dir)?;
    }
    eprintln!("bench-recovery: done in {:.0} s", started.elapsed().as_secs_f64());
    print!("{}", report(&results, cold));
    if let Some(note) = &cold_note {
        println!("\n{note}");
    }
    if let Some(path) = &args.json {
        let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
        for r in &results {
            writeln!(out, "{}", r.json)?;
        }
        out.flush()?;
        eprintln!("bench-recovery: wrote {}", path.display());
    }
    root.close()?;
    Ok(())
}

/// What a child process measured.
#[derive(Clone, Copy, Debug, Default)]
struct Child {
    secs: f64,
    peak_rss: u64,
    rss_after: u64,
    peak_anon: u64,
    anon_after: u64,
    records_replayed: u64,
    entries: u64,
    cpu_secs: f64,
    main_cpu_secs: f64,
    /// With --child-snapshot: the snapshot taken after the open.
    snapshot: Option<ChildSnapshot>,
}

/// A snapshot a child took after its open, with its memory: RSS before it,
/// the peak (VmHWM, reset after the open) and the sampled anon peak.
#[derive(Clone, Copy, Debug, Default)]
struct ChildSnapshot {
    secs: f64,
    file_bytes: u64,
    rss_before: u64,
    peak_rss: u64,
    anon_before: u64,
    peak_anon: u64,
}

/// What a child measured, as JSON, with /proc/self/status read now.
fn child_json(
    secs: f64,
    (rss_before, anon_before): (u64, u64),
    records_replayed: u64,
    entries: u64,
    s: Sampled,
) -> Value {
    let [peak_rss, rss_after, anon_after] = status(&["VmHWM:", "VmRSS:", "RssAnon:"]);
    json!({"secs": secs, "peak_rss": peak_rss, "rss_after": rss_after, "rss_before": rss_before,
           "peak_anon": s.peak_anon, "anon_after": anon_after, "anon_before": anon_before,
           "records_replayed": records_replayed, "entries": entries,
           "cpu_secs": s.cpu_secs, "main_cpu_secs": s.main_cpu_secs})
}

fn child_report(secs: f64, before: (u64, u64), records_replayed: u64, entries: u64, s: Sampled) {
    println!("{}", child_json(secs, before, records_replayed, entries, s));
}

fn child_open(dir: &Path) -> Result<()> {
    let rss_before = status(&["VmRSS:", "RssAnon:"]).into();
    let sampler = AnonPeak::start();
    let t = Instant::now();
    let store = Store::open(dir, store_options())?;
    let secs = t.elapsed().as_secs_f64();
    let sampled = sampler.finish();
    child_report(secs, rss_before, store.recovery_report().records_replayed, store.len() as u64, sampled);
    // Not closed: close() syncs, which is not part of recovery; the log was closed cleanly before.
    std::mem::forget(store);
    Ok(())
}

/// The store `measure` opens for "snapshot + log", built in `dir` and kept.
fn prepare(args: &RecoveryArgs, dir: &Path) -> Result<()> {
    let n = args.keys[0];
    let mut rng = Rng(0x0123_4567_89ab_cdef ^ n);
    let store = Store::open(dir, store_options())?;
    load(&store, 0, n, None, &mut rng)?;
    if !args.no_snapshot {
        store.snapshot_now()?;
    }
    load(&store, 0, args.log_records, Some(n), &mut rng)?;
    store.close()?;
    let snapshot = if args.no_snapshot { "no snapshot" } else { "a snapshot" };
    eprintln!("bench-recovery: {n} keys, {snapshot} and {} log records in {}", args.log_records, dir.display());
    Ok(())
}

/// The naive log: each of the `n` puts `load` makes (the same keys and
/// values in the same order, from the same seed), encoded as the store
/// encodes a put (docs/FORMAT.md) after a u32 length, appended to `file`
/// with one write() each. Returns the seconds it took, with a closing
/// fdatasync.
fn write_raw_log(file: &Path, n: u64) -> Result<f64> {
    let t = Instant::now();
    let mut out = std::fs::OpenOptions::new().create_new(true).append(true).open(file)?;
    let mut rng = Rng(0x0123_4567_89ab_cdef ^ n);
    let mut value = [0u8; VALUE_BYTES];
    let mut record = Vec::with_capacity(64 + KEY_BYTES + VALUE_BYTES);
    let ts = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_micros() as u64;
    for i in 0..n {
        rng.fill(&mut value);
        record.clear();
        record.extend_from_slice(&[0; 4]);
        record.push(1); // put
        record.extend_from_slice(&ts.to_le_bytes());
        record.extend_from_slice(&(WRITER.len() as u16).to_le_bytes());
        record.extend_from_slice(WRITER.as_bytes());
        record.extend_from_slice(&(KEY_BYTES as u32).to_le_bytes());
        record.extend_from_slice(&key(i));
        record.extend_from_slice(&(VALUE_BYTES as u32).to_le_bytes());
        record.extend_from_slice(&value);
        let len = (record.len() - 4) as u32;
        record[..4].copy_from_slice(&len.to_le_bytes());
        std::io::Write::write_all(&mut out, &record)?;
    }
    out.sync_data()?;
    Ok(t.elapsed().as_secs_f64())
}

/// The naive replay: reads the raw log through a 1 MiB buffer and puts
/// each record's key and value into a `HashMap<Vec<u8>, Vec<u8>>`.
fn child_raw_replay(file: &Path) -> Result<()> {
    let rss_before = status(&["VmRSS:", "RssAnon:"]).into();
    let sampler = AnonPeak::start();
    let t = Instant::now();
    let mut input = std::io::BufReader::with_capacity(1 << 20, std::fs::File::open(file)?);
    let mut map: HashMap<Vec<u8>, Vec<u8>> = HashMap::new();
    let mut record = Vec::new();
    let mut records = 0u64;
    loop {
        let mut len = [0u8; 4];
        match std::io::Read::read_exact(&mut input, &mut len) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(e.into()),
        }
        record.resize(u32::from_le_bytes(len) as usize, 0);
        std::io::Read::read_exact(&mut input, &mut record)?;
        let u32_at = |at: usize| u32::from_le_bytes(record[at..at + 4].try_into().expect("4 bytes")) as usize;
        let key_at = 1 + 8 + 2 + u16::from_le_bytes([record[9], record[10]]) as usize;
        let key_len = u32_at(key_at);
        let value_at = key_at + 4 + key_len;
        let value_len = u32_at(value_at);
        let key = record[key_at + 4..value_at].to_vec();
        map.insert(key, record[value_at + 4..value_at + 4 + value_len].to_vec());
        records += 1;
    }
    let secs = t.elapsed().as_secs_f64();
    child_report(secs, rss_before, records, map.len() as u64, sampler.finish());
    std::mem::forget(map);
    Ok(())
}

/// Opens the store in `dir`, measured as `child_open` measures it, then
/// takes a snapshot (no writer running): prints the open's figures with
/// the snapshot's under "snapshot".
fn child_snapshot(dir: &Path) -> Result<()> {
    let before_open = status(&["VmRSS:", "RssAnon:"]).into();
    let sampler = AnonPeak::start();
    let t = Instant::now();
    let store = Store::open(dir, store_options())?;
    let open_secs = t.elapsed().as_secs_f64();
    let opened = sampler.finish();
    let mut out =
        child_json(open_secs, before_open, store.recovery_report().records_replayed, store.len() as u64, opened);
    let [rss_before, anon_before] = status(&["VmRSS:", "RssAnon:"]);
    reset_peak()?;
    let sampler = AnonPeak::start();
    let t = Instant::now();
    let info = store.snapshot_now()?;
    let secs = t.elapsed().as_secs_f64();
    let sampled = sampler.finish();
    let [peak_rss] = status(&["VmHWM:"]);
    out["snapshot"] = json!({"secs": secs, "file_bytes": info.file_bytes, "rss_before": rss_before,
                             "peak_rss": peak_rss, "anon_before": anon_before, "peak_anon": sampled.peak_anon,
                             "cpu_secs": sampled.cpu_secs});
    println!("{out}");
    store.close()?;
    Ok(())
}

fn child_sqlite(file: &Path, ordmap: bool) -> Result<()> {
    let rss_before = status(&["VmRSS:", "RssAnon:"]).into();
    let sampler = AnonPeak::start();
    let t = Instant::now();
    let conn = Connection::open(file)?;
    let mut stmt = conn.prepare("SELECT key, value, revision, writer, ts FROM kv")?;
    let mut rows = stmt.query([])?;
    let entries;
    if ordmap {
        let mut map: OrdMap<StoreKey, Entry> = OrdMap::new();
        while let Some(row) = rows.next()? {
            let entry = Entry {
                value: row.get_ref(1)?.as_blob()?.into(),
                revision: row.get::<_, i64>(2)? as u64,
                writer: row.get_ref(3)?.as_str()?.into(),
                timestamp_us: row.get::<_, i64>(4)? as u64,
            };
            map.insert(row.get_ref(0)?.as_blob()?.into(), entry);
        }
        entries = map.len() as u64;
        let secs = t.elapsed().as_secs_f64();
        child_report(secs, rss_before, 0, entries, sampler.finish());
        std::mem::forget(map);
    } else {
        let mut map: HashMap<Vec<u8>, (Vec<u8>, u64, String, u64)> = HashMap::new();
        while let Some(row) = rows.next()? {
            let value = (
                row.get_ref(1)?.as_blob()?.to_vec(),
                row.get::<_, i64>(2)? as u64,
                row.get_ref(3)?.as_str()?.to_owned(),
                row.get::<_, i64>(4)? as u64,
            );
            map.insert(row.get_ref(0)?.as_blob()?.to_vec(), value);
        }
        entries = map.len() as u64;
        let secs = t.elapsed().as_secs_f64();
        child_report(secs, rss_before, 0, entries, sampler.finish());
        std::mem::forget(map);
    }
    Ok(())
}

/// Runs this binary as a child with `flag PATH`, after dropping the page cache if `cold`.
fn spawn(flag: &str, path: &Path, cold: bool) -> Result<Child> {
    if cold {
        drop_caches()?;
    }
    let out = std::process::Command::new(std::env::current_exe()?)
        .arg("bench-recovery")
        .arg(flag)
        .arg(path)
        .stderr(std::process::Stdio::inherit())
        .output()?;
    if !out.status.success() {
        return Err(format!("child {flag} {} failed: {}", path.display(), out.status).into());
    }
    let v: Value = serde_json::from_slice(&out.stdout)?;
    let u = |k: &str| v[k].as_u64().unwrap_or(0);
    let snapshot = v.get("snapshot").map(|s| {
        let u = |k: &str| s[k].as_u64().unwrap_or(0);
        ChildSnapshot {
            secs: s["secs"].as_f64().unwrap_or(f64::NAN),
            file_bytes: u("file_bytes"),
            rss_before: u("rss_before"),
            peak_rss: u("peak_rss"),
            anon_before: u("anon_before"),
            peak_anon: u("peak_anon"),
        }
    });
    Ok(Child {
        secs: v["secs"].as_f64().unwrap_or(f64::NAN),
        peak_rss: u("peak_rss"),
        rss_after: u("rss_after"),
        peak_anon: u("peak_anon"),
        anon_after: u("anon_after"),
        records_replayed: u("records_replayed"),
        entries: u("entries"),
        cpu_secs: v["cpu_secs"].as_f64().unwrap_or(f64::NAN),
        main_cpu_secs: v["main_cpu_secs"].as_f64().unwrap_or(f64::NAN),
        snapshot,
    })
}

/// Medians of repeated child runs, cold (page cache dropped first) and warm.
#[derive(Clone, Copy, Debug, Default)]
struct Opens {
    cold_secs: Option<f64>,
    warm_secs: f64,
    peak_rss: u64,
    rss_after: u64,
    peak_anon: u64,
    anon_after: u64,
    records_replayed: u64,
    entries: u64,
    /// CPU seconds of the whole process and of the thread that opened,
    /// warm opens only.
    warm_cpu_secs: f64,
    warm_main_cpu_secs: f64,
}

fn opens(label: &str, flag: &str, path: &Path, n: u32, cold: bool) -> Result<Opens> {
    Ok(opens_then_snapshots(label, flag, path, n, cold, 0)?.0)
}

/// [`opens`], the last `snapshots` warm opens of which (at most `n`) also
/// take a snapshot once open (`--child-snapshot`); returns those too.
fn opens_then_snapshots(
    label: &str,
    flag: &str,
    path: &Path,
    n: u32,
    cold: bool,
    snapshots: u32,
) -> Result<(Opens, Vec<ChildSnapshot>)> {
    let mut cold_runs = Vec::new();
    if cold {
        for _ in 0..n {
            cold_runs.push(spawn(flag, path, true)?);
        }
    }
    let mut warm_runs = Vec::new();
    for i in 0..n {
        let flag = if i + snapshots >= n { "--child-snapshot" } else { flag };
        warm_runs.push(spawn(flag, path, false)?);
    }
    let taken: Vec<ChildSnapshot> = warm_runs.iter().filter_map(|c| c.snapshot).collect();
    let all: Vec<Child> = cold_runs.iter().chain(&warm_runs).copied().collect();
    let o = Opens {
        cold_secs: cold.then(|| median(cold_runs.iter().map(|c| c.secs))),
        warm_secs: median(warm_runs.iter().map(|c| c.secs)),
        peak_rss: median(all.iter().map(|c| c.peak_rss as f64)) as u64,
        rss_after: median(all.iter().map(|c| c.rss_after as f64)) as u64,
        peak_anon: median(all.iter().map(|c| c.peak_anon as f64)) as u64,
        anon_after: median(all.iter().map(|c| c.anon_after as f64)) as u64,
        records_replayed: all[0].records_replayed,
        entries: all[0].entries,
        warm_cpu_secs: median(warm_runs.iter().map(|c| c.cpu_secs)),
        warm_main_cpu_secs: median(warm_runs.iter().map(|c| c.main_cpu_secs)),
    };
    eprintln!(
        "  {label}: cold {:?} warm {:?} s (warm CPU {:?} s, of it the opening thread {:?}); peak RSS {} MiB, after {} MiB; anon peak {} after {} MiB; {} entries, {} replayed",
        cold_runs.iter().map(|c| round3(c.secs)).collect::<Vec<_>>(),
        warm_runs.iter().map(|c| round3(c.secs)).collect::<Vec<_>>(),
        warm_runs.iter().map(|c| round3(c.cpu_secs)).collect::<Vec<_>>(),
        warm_runs.iter().map(|c| round3(c.main_cpu_secs)).collect::<Vec<_>>(),
        o.peak_rss >> 20,
        o.rss_after >> 20,
        o.peak_anon >> 20,
        o.anon_after >> 20,
        o.entries,
        o.records_replayed
    );
    Ok((o, taken))
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Puts `count` keys starting at `first` (or random existing keys below `overwrite_below`) in batches.
fn load(store: &Store, first: u64, count: u64, overwrite_below: Option<u64>, rng: &mut Rng) -> Result<()> {
    let mut value = [0u8; VALUE_BYTES];
    let mut batch = WriteBatch::default();
    for i in first..first + count {
        let k = match overwrite_below {
            Some(n) => key(rng.next() % n),
            None => key(i),
        };
        rng.fill(&mut value);
        batch.put(&k, &value);
        if batch.len() as u64 == BATCH {
            store.write(&batch)?;
            batch.clear();
        }
    }
    if !batch.is_empty() {
        store.write(&batch)?;
    }
    Ok(())
}

/// Latencies of one writer's puts, while snapshots run and while they do not.
#[derive(Clone, Copy, Debug, Default)]
struct LatencyResult {
    idle: Percentiles,
    idle_max_us: f64,
    idle_puts: u64,
    idle_secs: f64,
    snap: Percentiles,
    snap_max_us: f64,
    snap_puts: u64,
    snap_secs: f64,
    snapshot_secs: f64,
    /// The largest, over the rounds, of: RSS just before a snapshot, the
    /// growth of RSS (VmHWM, reset just before, less that) and of the
    /// sampled anon RSS while it ran with the writer putting.
    snap_rss_before: u64,
    snap_rss_growth: u64,
    snap_anon_growth: u64,
}

const PHASE_WARMUP: usize = 0;
const PHASE_IDLE: usize = 1;
const PHASE_SNAPSHOT: usize = 2;

fn latency_test(store: &Store, n: u64, rounds: u32) -> Result<LatencyResult> {
    let phase = AtomicUsize::new(PHASE_WARMUP);
    let stop = AtomicBool::new(false);
    let mut secs = [0.0f64; 3];
    let mut snapshot_secs = Vec::new();
    let (mut rss_before_max, mut rss_growth_max, mut anon_growth_max) = (0u64, 0u64, 0u64);
    // Written once before the test, so that recording a latency never
    // faults a page in: the memory measured during a snapshot is the store's.
    let prefaulted: [Vec<u32>; 3] = std::array::from_fn(|_| {
        let mut v = Vec::with_capacity(16 << 20);
        v.resize(16 << 20, u32::MAX);
        v.clear();
        v
    });
    let lat = std::thread::scope(|s| -> Result<[Vec<u32>; 3]> {
        let writer = s.spawn(|| -> Result<[Vec<u32>; 3]> {
            let mut lat = prefaulted;
            let mut rng = Rng(0x5eed_1234_5678_9abc);
            let mut value = [0u8; VALUE_BYTES];
            while !stop.load(Ordering::Relaxed) {
                let k = key(rng.next() % n);
                rng.fill(&mut value);
                let p = phase.load(Ordering::Relaxed);
                let t = Instant::now();
                store.put(&k, &value)?;
                lat[p].push(nanos(t.elapsed()));
            }
            Ok(lat)
        });
        std::thread::sleep(Duration::from_millis(500));
        for _ in 0..rounds {
            let [rss_before, anon_before] = status(&["VmRSS:", "RssAnon:"]);
            reset_peak()?;
            let sampler = AnonPeak::start();
            phase.store(PHASE_SNAPSHOT, Ordering::Relaxed);
            let t = Instant::now();
            store.snapshot_now()?;
            let d = t.elapsed();
            phase.store(PHASE_IDLE, Ordering::Relaxed);
            let sampled = sampler.finish();
            let [peak_rss] = status(&["VmHWM:"]);
            rss_before_max = rss_before_max.max(rss_before);
            rss_growth_max = rss_growth_max.max(peak_rss.saturating_sub(rss_before));
            anon_growth_max = anon_growth_max.max(sampled.peak_anon.saturating_sub(anon_before));
            secs[PHASE_SNAPSHOT] += d.as_secs_f64();
            snapshot_secs.push(d.as_secs_f64());
            // The sampler runs in this phase too, so both phases share the machine with it.
            let sampler = AnonPeak::start();
            let t = Instant::now();
            std::thread::sleep(d);
            secs[PHASE_IDLE] += t.elapsed().as_secs_f64();
            sampler.finish();
        }
        stop.store(true, Ordering::Relaxed);
        writer.join().map_err(|_| "writer thread panicked")?
    })?;
    let [_, mut idle, mut snap] = lat;
    let max = |v: &[u32]| f64::from(v.iter().copied().max().unwrap_or(0)) / 1e3;
    Ok(LatencyResult {
        idle_max_us: max(&idle),
        snap_max_us: max(&snap),
        idle_puts: idle.len() as u64,
        snap_puts: snap.len() as u64,
        idle: Percentiles::of(&mut idle),
        snap: Percentiles::of(&mut snap),
        idle_secs: secs[PHASE_IDLE],
        snap_secs: secs[PHASE_SNAPSHOT],
        snapshot_secs: median(snapshot_secs),
        snap_rss_before: rss_before_max,
        snap_rss_growth: rss_growth_max,
        snap_anon_growth: anon_growth_max,
    })
}

/// Everything measured for one key count.
struct Measured {
    n: u64,
    opens: u32,
    rounds: u32,
    load_secs: f64,
    from_log: Opens,
    raw_write_secs: f64,
    /// None: skipped, it would not fit in memory (the reason is in `skipped`).
    raw_replay: Option<Opens>,
    snapshot_secs: Vec<f64>,
    snapshot_file_bytes: u64,
    snapshot_rss_before: u64,
    snapshot_rss_growth: u64,
    snapshot_anon_growth: u64,
    from_snapshot: Opens,
    from_snapshot_and_log: Opens,
    /// Seconds to build the SQLite database and its file's bytes; None with --no-sqlite.
    sqlite_build: Option<(f64, u64)>,
    sqlite_hashmap: Option<Opens>,
    sqlite_ordmap: Option<Opens>,
    latency: LatencyResult,
    /// A line for each comparison skipped because it would not fit in memory.
    skipped: Vec<String>,
    json: Value,
}

/// Whether `what` fits in the memory available now; if not, the line that
/// says so is printed and kept for the report.
fn fits(what: &str, estimate_bytes: u64, skipped: &mut Vec<String>) -> bool {
    match decide(what, estimate_bytes, mem_available_bytes()) {
        Fit::Run => true,
        Fit::Skip(line) => {
            eprintln!("  {line}");
            skipped.push(line);
            false
        }
    }
}

/// Closes a store this process opened and gives its memory back to the
/// kernel, so that the children that open it next have the machine's.
fn close(store: Store) -> Result<()> {
    store.close()?;
    release_free_heap();
    let [rss, anon] = status(&["VmRSS:", "RssAnon:"]);
    eprintln!("  (this process after closing the store: RSS {} MiB, anon {} MiB)", rss >> 20, anon >> 20);
    Ok(())
}

fn measure(args: &RecoveryArgs, n: u64, dir: &Path, cold: bool) -> Result<Measured> {
    let store_dir = dir.join("store");
    let mut rng = Rng(0x0123_4567_89ab_cdef ^ n);
    let (opens_n, rounds) = (args.opens(n), args.rounds(n));
    let raw = raw_bytes(n);
    let mut skipped = Vec::new();
    let started = Instant::now();
    let phase = |what: &str| eprintln!("  [{:.0} s] {what}", started.elapsed().as_secs_f64());
    eprintln!("bench-recovery: {n} keys ({} of keys and values), {opens_n} opens, {rounds} rounds", mib(raw));

    // 1. Load, close (syncs the log).
    let t = Instant::now();
    let store = Store::open(&store_dir, store_options())?;
    load(&store, 0, n, None, &mut rng)?;
    close(store)?;
    let load_secs = t.elapsed().as_secs_f64();
    eprintln!("  loaded in {load_secs:.2} s (with the closing sync)");
    // The log alone; the last warm open also takes the first snapshot (the
    // log before it is then truncated, so it must come last).
    phase("opens from the log alone");
    // From LARGE_KEYS keys, warm only: a cold replay of the whole log adds
    // minutes, and no target is set for it at that size.
    let log_cold = cold && n < LARGE_KEYS;
    if cold && !log_cold {
        eprintln!("  the open from the log alone is measured warm only from {LARGE_KEYS} keys");
    }
    let (from_log, mut taken) =
        opens_then_snapshots("open, log only", "--open-only", &store_dir, opens_n, log_cold, 1)?;
    // The same puts, appended with write() to a plain file and replayed
    // into a HashMap by a naive program, if that fits in memory.
    phase("the raw write() log");
    let raw_file = dir.join("raw.log");
    let raw_write_secs = write_raw_log(&raw_file, n)?;
    eprintln!("  the same puts written with write() in {raw_write_secs:.2} s");
    let raw_replay = match fits("raw write() log -> HashMap", Comparison::RawReplay.estimate_bytes(raw), &mut skipped) {
        true => Some(opens("raw write() log -> HashMap", "--child-raw-replay", &raw_file, opens_n, cold)?),
        false => None,
    };
    std::fs::remove_file(&raw_file)?;

    // 2. From the snapshot alone: all but the first warm open take a snapshot
    // again (so there are --opens snapshots in all, each in a process of its own).
    phase("opens from the snapshot");
    let (from_snapshot, more) = opens_then_snapshots(
        "open, snapshot only",
        "--open-only",
        &store_dir,
        opens_n,
        cold,
        opens_n.saturating_sub(1),
    )?;
    taken.extend(more);
    let snapshot_secs: Vec<f64> = taken.iter().map(|s| s.secs).collect();
    let snapshot_file_bytes = taken.last().map_or(0, |s| s.file_bytes);
    let growth: Vec<f64> = taken.iter().map(|s| s.peak_rss.saturating_sub(s.rss_before) as f64).collect();
    let anon_growth: Vec<f64> = taken.iter().map(|s| s.peak_anon.saturating_sub(s.anon_before) as f64).collect();
    let before: Vec<f64> = taken.iter().map(|s| s.rss_before as f64).collect();
    eprintln!(
        "  snapshots: {:?} s, {} bytes; RSS growth while writing {:?} MiB, anon {:?} MiB",
        snapshot_secs.iter().map(|&s| round3(s)).collect::<Vec<_>>(),
        snapshot_file_bytes,
        growth.iter().map(|&g| round3(g / 1048576.0)).collect::<Vec<_>>(),
        anon_growth.iter().map(|&g| round3(g / 1048576.0)).collect::<Vec<_>>()
    );

    // 3. A log of more puts (overwrites of existing keys) after the snapshot.
    phase("the log after the snapshot");
    let store = Store::open(&store_dir, store_options())?;
    load(&store, 0, args.log_records, Some(n), &mut rng)?;
    close(store)?;
    let from_snapshot_and_log = opens("open, snapshot + log", "--open-only", &store_dir, opens_n, cold)?;

    // 4. A writer's put latency with and without a snapshot running.
    phase("put latency with and without a snapshot");
    let store = Store::open(&store_dir, store_options())?;
    let latency = latency_test(&store, n, rounds)?;
    close(store)?;
    eprintln!(
        "  latency: idle p50/p99/p99.9 {:.1}/{:.1}/{:.1} us ({} puts), during snapshot {:.1}/{:.1}/{:.1} us ({} puts); RSS growth during a snapshot {} MiB, anon {} MiB",
        latency.idle.p50_us,
        latency.idle.p99_us,
        latency.idle.p999_us,
        latency.idle_puts,
        latency.snap.p50_us,
        latency.snap.p99_us,
        latency.snap.p999_us,
        latency.snap_puts,
        latency.snap_rss_growth >> 20,
        latency.snap_anon_growth >> 20
    );
    std::fs::remove_dir_all(&store_dir)?;

    // 5. SQLite, if either of its loads fits in memory (else it is not built).
    let (mut sqlite_build, mut sqlite_hashmap, mut sqlite_ordmap) = (None, None, None);
    if !args.no_sqlite {
        let hashmap = fits("SQLite -> HashMap", Comparison::SqliteHashMap.estimate_bytes(raw), &mut skipped);
        let ordmap = fits("SQLite -> imbl OrdMap", Comparison::SqliteOrdMap.estimate_bytes(raw), &mut skipped);
        if hashmap || ordmap {
            phase("SQLite");
            let file = dir.join("kv.sqlite");
            let t = Instant::now();
            build_sqlite(&file, n)?;
            let (secs, bytes) = (t.elapsed().as_secs_f64(), std::fs::metadata(&file)?.len());
            eprintln!("  SQLite built in {secs:.2} s, {bytes} bytes");
            sqlite_build = Some((secs, bytes));
            if hashmap {
                sqlite_hashmap = Some(opens("SQLite -> HashMap", "--child-sqlite-hashmap", &file, opens_n, cold)?);
            }
            if ordmap {
                sqlite_ordmap = Some(opens("SQLite -> imbl OrdMap", "--child-sqlite-ordmap", &file, opens_n, cold)?);
            }
        }
    }
    phase("done");

    let opens_json = |o: &Opens| {
        json!({"cold_secs": o.cold_secs, "warm_secs": o.warm_secs, "peak_rss": o.peak_rss,
               "cold_secs_per_million_keys": o.cold_secs.map(|s| s * 1e6 / n as f64),
               "warm_secs_per_million_keys": o.warm_secs * 1e6 / n as f64,
               "warm_cpu_secs": o.warm_cpu_secs, "warm_main_cpu_secs": o.warm_main_cpu_secs,
               "rss_after": o.rss_after, "peak_anon": o.peak_anon, "anon_after": o.anon_after, "records_replayed": o.records_replayed, "entries": o.entries})
    };
    let pct = |p: &Percentiles| json!({"p50_us": p.p50_us, "p99_us": p.p99_us, "p999_us": p.p999_us});
    let json = json!({
        "keys": n, "key_bytes": KEY_BYTES, "value_bytes": VALUE_BYTES, "log_records": args.log_records,
        "opens": opens_n, "rounds": rounds,
        "load_secs": load_secs, "log_only_open_secs": from_log.warm_secs,
        "open_from_log": opens_json(&from_log), "raw_write_secs": raw_write_secs,
        "raw_replay_to_hashmap": raw_replay.as_ref().map(opens_json),
        "snapshot_secs": snapshot_secs, "snapshot_file_bytes": snapshot_file_bytes,
        "raw_key_value_bytes": raw,
        "snapshot_rss_before": median(before.iter().copied()), "snapshot_rss_growth": median(growth.iter().copied()),
        "snapshot_anon_growth": median(anon_growth.iter().copied()),
        "open_from_snapshot": opens_json(&from_snapshot),
        "open_from_snapshot_and_log": opens_json(&from_snapshot_and_log),
        "sqlite_build_secs": sqlite_build.map(|(secs, _)| secs),
        "sqlite_file_bytes": sqlite_build.map_or(0, |(_, bytes)| bytes),
        "sqlite_to_hashmap": sqlite_hashmap.as_ref().map(opens_json),
        "sqlite_to_ordmap": sqlite_ordmap.as_ref().map(opens_json),
        "latency_idle": pct(&latency.idle), "latency_idle_max_us": latency.idle_max_us,
        "latency_idle_puts": latency.idle_puts, "latency_idle_secs": latency.idle_secs,
        "latency_snapshot": pct(&latency.snap), "latency_snapshot_max_us": latency.snap_max_us,
        "latency_snapshot_puts": latency.snap_puts, "latency_snapshot_secs": latency.snap_secs,
        "latency_test_snapshot_secs": latency.snapshot_secs,
        "latency_test_rss_before_snapshot": latency.snap_rss_before,
        "latency_test_rss_growth_during_snapshot": latency.snap_rss_growth,
        "latency_test_anon_growth_during_snapshot": latency.snap_anon_growth,
        "skipped": skipped,
        "total_secs": started.elapsed().as_secs_f64(),
    });
    Ok(Measured {
        n,
        opens: opens_n,
        rounds,
        load_secs,
        from_log,
        raw_write_secs,
        raw_replay,
        snapshot_secs,
        snapshot_file_bytes,
        snapshot_rss_before: median(before) as u64,
        snapshot_rss_growth: median(growth) as u64,
        snapshot_anon_growth: median(anon_growth) as u64,
        from_snapshot,
        from_snapshot_and_log,
        sqlite_build,
        sqlite_hashmap,
        sqlite_ordmap,
        latency,
        skipped,
        json,
    })
}

/// The same rows in SQLite: WAL mode, transactions of 10,000 inserts, checkpointed.
fn build_sqlite(file: &Path, n: u64) -> Result<()> {
    let mut conn = Connection::open(file)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "OFF")?;
    conn.execute_batch("CREATE TABLE kv(key BLOB PRIMARY KEY, value BLOB, revision INTEGER, writer TEXT, ts INTEGER)")?;
    let mut rng = Rng(0x0123_4567_89ab_cdef ^ n);
    let mut value = [0u8; VALUE_BYTES];
    let ts = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_micros() as i64;
    let mut i = 0;
    while i < n {
        let tx = conn.transaction()?;
        {
            let mut stmt = tx.prepare_cached("INSERT INTO kv VALUES (?1, ?2, 1, ?3, ?4)")?;
            for j in i..(i + 10_000).min(n) {
                rng.fill(&mut value);
                stmt.execute(params![&key(j)[..], &value[..], WRITER, ts])?;
            }
        }
        tx.commit()?;
        i += 10_000;
    }
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
    Ok(())
}
