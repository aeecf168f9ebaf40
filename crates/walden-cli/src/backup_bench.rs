//! `walden bench-backup`: a full `walden backup` of a data directory against
//! `cp -r` of the same directory (and `cp -r` followed by an fsync of every
//! file it wrote, since a backup syncs what it writes), in the same run,
//! alternating which goes first, medians reported; then the time of an
//! incremental backup after 1% more writes. docs/BENCHMARKS.md has the
//! figures and the command.

use crate::engines::Result;
use crate::latency::median;
use serde::Serialize;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;
use walden::admin::{DataDir, NoProgress};
use walden::backup::{self, BackupOptions};
use walden::io::RealFs;
use walden::{EngineOptions, FsyncMode, SnapshotOptions, Store, StoreOptions, WalOptions};

#[derive(clap::Args)]
pub struct BackupBenchArgs {
    /// Size of the data directory to build, in MiB (60% snapshot, 40% log).
    #[arg(long, value_name = "MIB", default_value_t = 1024)]
    mib: u64,
    /// Rounds of each copy, alternating which goes first; medians are reported.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    rounds: u32,
    /// Where the data goes: a temporary directory is made in PATH and removed afterwards.
    #[arg(long, value_name = "PATH", default_value = ".")]
    dir: PathBuf,
    /// Also write the results to FILE as one JSON object.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
}

const VALUE_BYTES: usize = 4096;

#[derive(Serialize)]
struct Results {
    data_bytes: u64,
    rounds: u32,
    backup_s: Vec<f64>,
    cp_s: Vec<f64>,
    cp_sync_s: Vec<f64>,
    backup_mb_per_s: f64,
    cp_mb_per_s: f64,
    cp_sync_mb_per_s: f64,
    incremental_s: Vec<f64>,
    incremental_bytes_copied: Vec<u64>,
    incremental_median_s: f64,
}

fn options() -> StoreOptions {
    StoreOptions {
        engine: EngineOptions {
            wal: WalOptions { fsync: FsyncMode::Never, ..Default::default() },
            snapshots: SnapshotOptions { keep_count: 1, ..SnapshotOptions::manual() },
        },
        writer: "bench-backup".into(),
    }
}

/// A 4 KiB value that zstd cannot shrink much (xorshift bytes), so the
/// snapshot is about as large as the state.
fn value(i: u64, out: &mut [u8]) {
    let mut x = i.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    for chunk in out.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
}

fn put_range(store: &Store, range: std::ops::Range<u64>) -> Result<()> {
    let mut v = vec![0u8; VALUE_BYTES];
    for i in range {
        value(i, &mut v);
        store.put(format!("key-{i:010}").as_bytes(), &v)?;
    }
    Ok(())
}

fn dir_bytes(dir: &Path) -> Result<u64> {
    let mut total = 0;
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        total += if meta.is_dir() { dir_bytes(&entry.path())? } else { meta.len() };
    }
    Ok(total)
}

fn sync_tree(dir: &Path) -> Result<()> {
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            sync_tree(&path)?;
        } else {
            fs::File::open(&path)?.sync_all()?;
        }
    }
    fs::File::open(dir)?.sync_all()?;
    Ok(())
}

fn cp_r(from: &Path, to: &Path, sync: bool) -> Result<f64> {
    let started = Instant::now();
    let status = Command::new("cp").arg("-r").arg(from).arg(to).status()?;
    if !status.success() {
        return Err(format!("cp -r {} {} failed: {status}", from.display(), to.display()).into());
    }
    if sync {
        sync_tree(to)?;
    }
    Ok(started.elapsed().as_secs_f64())
}

fn full_backup(data: &DataDir, dest: &Path) -> Result<f64> {
    let started = Instant::now();
    backup::backup_data_dir(&RealFs, data, dest, &BackupOptions::default(), &mut NoProgress)?;
    Ok(started.elapsed().as_secs_f64())
}

pub fn run(args: &BackupBenchArgs) -> Result<()> {
    fs::create_dir_all(&args.dir)?;
    let tmp = tempfile::Builder::new().prefix("walden-bench-backup").tempdir_in(&args.dir)?;
    let data_path = tmp.path().join("data");
    let puts = (args.mib << 20) / VALUE_BYTES as u64;
    let snapshot_puts = puts * 6 / 10;
    eprintln!("building a {} MiB data directory ({puts} puts of {VALUE_BYTES} B) ...", args.mib);
    let store = Store::open(&data_path, options())?;
    put_range(&store, 0..snapshot_puts)?;
    store.snapshot_now()?;
    put_range(&store, snapshot_puts..puts)?;
    store.close()?;
    let data = DataDir::locate(&RealFs, &data_path)?;
    let data_bytes = dir_bytes(&data_path)?;
    eprintln!("data directory: {:.1} MiB", data_bytes as f64 / (1 << 20) as f64);

    let (mut backup_s, mut cp_s, mut cp_sync_s) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..args.rounds {
        let dest = tmp.path().join(format!("round-{round}"));
        fs::create_dir_all(&dest)?;
        let mut steps: Vec<&str> = vec!["walden", "cp", "cp+sync"];
        steps.rotate_left(round as usize % 3);
        for step in steps {
            let out = dest.join(step);
            let seconds = match step {
                "walden" => full_backup(&data, &out)?,
                "cp" => cp_r(&data_path, &out, false)?,
                _ => cp_r(&data_path, &out, true)?,
            };
            eprintln!("round {round}: {step:8} {seconds:.2} s");
            match step {
                "walden" => backup_s.push(seconds),
                "cp" => cp_s.push(seconds),
                _ => cp_sync_s.push(seconds),
            }
            fs::remove_dir_all(&out)?;
        }
    }

    // Incremental: a base backup, then 1% more writes and a backup, `rounds` times.
    let inc = tmp.path().join("incremental");
    full_backup(&data, &inc)?;
    let (mut incremental_s, mut incremental_bytes_copied) = (Vec::new(), Vec::new());
    let more = (puts / 100).max(1);
    let mut next = puts;
    for round in 0..args.rounds {
        let store = Store::open(&data_path, options())?;
        put_range(&store, next..next + more)?;
        store.close()?;
        next += more;
        let started = Instant::now();
        let report = backup::backup_data_dir(&RealFs, &data, &inc, &BackupOptions { keep: Some(2) }, &mut NoProgress)?;
        let seconds = started.elapsed().as_secs_f64();
        eprintln!(
            "incremental {round}: {seconds:.2} s, {:.1} MiB copied, {:.1} MiB shared",
            report.bytes_copied as f64 / (1 << 20) as f64,
            report.bytes_linked as f64 / (1 << 20) as f64
        );
        incremental_s.push(seconds);
        incremental_bytes_copied.push(report.bytes_copied);
    }

    let mb = data_bytes as f64 / 1e6;
    let results = Results {
        data_bytes,
        rounds: args.rounds,
        backup_mb_per_s: mb / median(backup_s.iter().copied()),
        cp_mb_per_s: mb / median(cp_s.iter().copied()),
        cp_sync_mb_per_s: mb / median(cp_sync_s.iter().copied()),
        incremental_median_s: median(incremental_s.iter().copied()),
        backup_s,
        cp_s,
        cp_sync_s,
        incremental_s,
        incremental_bytes_copied,
    };
    println!("data directory        {:.1} MB ({} rounds, medians)", mb, args.rounds);
    println!("walden backup         {:>8.1} MB/s", results.backup_mb_per_s);
    println!("cp -r                 {:>8.1} MB/s", results.cp_mb_per_s);
    println!("cp -r + fsync         {:>8.1} MB/s", results.cp_sync_mb_per_s);
    println!(
        "backup / cp -r        {:>8.2}   backup / (cp -r + fsync) {:.2}",
        results.backup_mb_per_s / results.cp_mb_per_s,
        results.backup_mb_per_s / results.cp_sync_mb_per_s
    );
    println!(
        "incremental after 1%  {:>8.2} s (median; {:.1} MB copied)",
        results.incremental_median_s,
        median(results.incremental_bytes_copied.iter().map(|&b| b as f64)) / 1e6
    );
    if let Some(path) = &args.json {
        fs::write(path, serde_json::to_string(&results)? + "\n")?;
    }
    Ok(())
}
