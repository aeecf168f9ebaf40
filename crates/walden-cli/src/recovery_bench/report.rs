//! The tables `walden bench-recovery` prints: recovery times (with the
//! time per million keys, so growth with size shows), memory after and at
//! the peak of each open against the raw key and value bytes, snapshot
//! writing, a writer's latency and the memory a snapshot takes while it
//! puts, and every comparison skipped for memory.

use super::{raw_bytes, Measured, Opens, BATCH, KEY_BYTES, VALUE_BYTES};
use crate::latency::median;
use std::fmt::Write as _;

/// Every recovery measured for one key count, labelled, in table order.
fn recovered(r: &Measured) -> Vec<(String, &Opens)> {
    let mut rows = vec![
        ("walden, snapshot only".to_owned(), &r.from_snapshot),
        (
            format!("walden, snapshot + {} log records", r.from_snapshot_and_log.records_replayed),
            &r.from_snapshot_and_log,
        ),
        (format!("walden, log only ({} records)", r.from_log.records_replayed), &r.from_log),
    ];
    if let Some(x) = &r.raw_replay {
        rows.push(("raw write() log -> HashMap<Vec<u8>, Vec<u8>> (the same puts)".to_owned(), x));
    }
    if let Some(x) = &r.sqlite_hashmap {
        rows.push(("SQLite -> HashMap<Vec<u8>, (Vec<u8>, u64, String, u64)>".to_owned(), x));
    }
    if let Some(x) = &r.sqlite_ordmap {
        rows.push(("SQLite -> imbl::OrdMap<StoreKey, Entry> (the store's map before its own B+tree)".to_owned(), x));
    }
    rows
}

pub(super) fn mib(b: u64) -> String {
    format!("{:.0} MiB", b as f64 / 1048576.0)
}

/// How many times faster walden was than the other, "-" if either is missing.
fn times_faster(walden: Option<f64>, other: Option<f64>) -> String {
    match (walden, other) {
        (Some(w), Some(o)) => format!("{:.2}x", o / w),
        _ => "-".to_owned(),
    }
}

fn secs(s: Option<f64>) -> String {
    s.map_or("-".into(), |s| format!("{s:.3} s"))
}

pub(super) fn report(results: &[Measured], cold: bool) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "## walden vs SQLite and a raw write() log: store recovery\n\nMedians of {} opens each{}; every open in a child process; {KEY_BYTES} B keys, {VALUE_BYTES} B random values; s / 1M keys = the time per million keys\n",
        results.iter().map(|r| r.opens.to_string()).collect::<Vec<_>>().join(", "),
        if cold { ", cold (page cache dropped before each) and warm" } else { ", warm only" }
    );
    let _ = writeln!(o, "| keys | what | cold | warm | cold, s / 1M keys | warm, s / 1M keys | warm CPU, all / opening thread | peak RSS | RSS after | peak / after | peak anon | anon after | peak / after (anon) |");
    let _ = writeln!(o, "|--:|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|");
    for r in results {
        let mut row = |what: &str, x: &Opens| {
            let _ = writeln!(
                o,
                "| {} | {what} | {} | {} | {} | {} | {:.3} / {:.3} s | {} | {} | {:.2}x | {} | {} | {:.2}x |",
                r.n,
                secs(x.cold_secs),
                secs(Some(x.warm_secs)),
                secs(x.cold_secs.map(|s| s * 1e6 / r.n as f64)),
                secs(Some(x.warm_secs * 1e6 / r.n as f64)),
                x.warm_cpu_secs,
                x.warm_main_cpu_secs,
                mib(x.peak_rss),
                mib(x.rss_after),
                x.peak_rss as f64 / x.rss_after as f64,
                mib(x.peak_anon),
                mib(x.anon_after),
                x.peak_anon as f64 / x.anon_after as f64
            );
        };
        for (what, x) in recovered(r) {
            row(&what, x);
        }
    }
    let _ = writeln!(
        o,
        "\nMemory once recovered and at the peak of the open (medians; RSS counts mapped log pages too, anon is the heap; peak RSS is the child's VmHWM, exact); raw = {} B of key and value per key\n",
        KEY_BYTES + VALUE_BYTES
    );
    let _ = writeln!(o, "| keys | what | raw key+value bytes | RSS after | RSS / key | RSS / raw | anon after | anon / key | anon / raw | peak RSS | peak / key | peak / raw |");
    let _ = writeln!(o, "|--:|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|");
    for r in results {
        let raw = raw_bytes(r.n) as f64;
        for (what, x) in recovered(r) {
            let _ = writeln!(
                o,
                "| {} | {what} | {} | {} | {:.0} B | {:.2}x | {} | {:.0} B | {:.2}x | {} | {:.0} B | {:.2}x |",
                r.n,
                mib(raw_bytes(r.n)),
                mib(x.rss_after),
                x.rss_after as f64 / r.n as f64,
                x.rss_after as f64 / raw,
                mib(x.anon_after),
                x.anon_after as f64 / r.n as f64,
                x.anon_after as f64 / raw,
                mib(x.peak_rss),
                x.peak_rss as f64 / r.n as f64,
                x.peak_rss as f64 / raw
            );
        }
    }
    let _ = writeln!(
        o,
        "\nSnapshots, written by `snapshot_now()` with no writer running, each in a child process after an open\n"
    );
    let _ = writeln!(o, "| keys | write time (median) | snapshots | file MiB/s | raw key+value MiB/s | file | raw key+value bytes | raw / file | RSS before | RSS growth while writing | anon growth |");
    let _ = writeln!(o, "|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|");
    for r in results {
        let raw = raw_bytes(r.n);
        let write_secs = median(r.snapshot_secs.iter().copied());
        let _ = writeln!(
            o,
            "| {} | {} | {} | {:.0} | {:.0} | {} | {} | {:.3}x | {} | {} | {} |",
            r.n,
            secs(Some(write_secs)),
            r.snapshot_secs.len(),
            r.snapshot_file_bytes as f64 / 1048576.0 / write_secs,
            raw as f64 / 1048576.0 / write_secs,
            mib(r.snapshot_file_bytes),
            mib(raw),
            raw as f64 / r.snapshot_file_bytes as f64,
            mib(r.snapshot_rss_before),
            mib(r.snapshot_rss_growth),
            mib(r.snapshot_anon_growth)
        );
    }
    let _ = writeln!(
        o,
        "\nOne writer's `put` latency (FsyncMode::Never), {} rounds of: a snapshot, then as long without\n",
        results.iter().map(|r| r.rounds.to_string()).collect::<Vec<_>>().join(", ")
    );
    let _ = writeln!(o, "| keys | phase | puts | puts/s | p50 | p99 | p99.9 | max |");
    let _ = writeln!(o, "|--:|---|--:|--:|--:|--:|--:|--:|");
    for r in results {
        let l = &r.latency;
        for (what, p, max, puts, s) in [
            ("no snapshot", &l.idle, l.idle_max_us, l.idle_puts, l.idle_secs),
            ("snapshot running", &l.snap, l.snap_max_us, l.snap_puts, l.snap_secs),
        ] {
            let _ = writeln!(
                o,
                "| {} | {what} | {puts} | {:.0} | {:.1} us | {:.1} us | {:.1} us | {:.0} us |",
                r.n,
                puts as f64 / s,
                p.p50_us,
                p.p99_us,
                p.p999_us,
                max
            );
        }
    }
    let _ = writeln!(
        o,
        "\nwalden vs SQLite: opening the store from its snapshot against loading SQLite's rows into a map\n"
    );
    let _ = writeln!(o, "| keys | SQLite rows loaded into | SQLite / walden, warm | SQLite / walden, cold |");
    let _ = writeln!(o, "|--:|---|--:|--:|");
    for r in results {
        for (label, sq) in [("a HashMap", &r.sqlite_hashmap), ("an imbl::OrdMap", &r.sqlite_ordmap)] {
            let Some(sq) = sq else { continue };
            let warm = times_faster(Some(r.from_snapshot.warm_secs), Some(sq.warm_secs));
            let cold = times_faster(r.from_snapshot.cold_secs, sq.cold_secs);
            let _ = writeln!(o, "| {} | {label} | {warm} | {cold} |", r.n);
        }
    }
    let _ = writeln!(
        o,
        "\nwalden vs a raw write() log of the same puts, replayed into a HashMap<Vec<u8>, Vec<u8>> by a naive program\n"
    );
    let _ = writeln!(o, "| keys | walden | raw / walden, warm | raw / walden, cold |");
    let _ = writeln!(o, "|--:|---|--:|--:|");
    for r in results {
        for (label, x) in [("open from the snapshot", &r.from_snapshot), ("open from the log alone", &r.from_log)] {
            let Some(raw) = &r.raw_replay else { continue };
            let warm = times_faster(Some(x.warm_secs), Some(raw.warm_secs));
            let cold = times_faster(x.cold_secs, raw.cold_secs);
            let _ = writeln!(o, "| {} | {label} | {warm} | {cold} |", r.n);
        }
    }
    for r in results {
        let l = &r.latency;
        let ratio = l.snap.p99_us / l.idle.p99_us;
        let _ = writeln!(o, "\n{} keys: p99 `put` latency while a snapshot is written / without: {ratio:.2}x", r.n);
        let _ = writeln!(
            o,
            "{} keys: memory a snapshot took while the writer put (the largest of {} rounds): RSS {} before, peak RSS {} above it (VmHWM), anon {} above",
            r.n,
            r.rounds,
            mib(l.snap_rss_before),
            mib(l.snap_rss_growth),
            mib(l.snap_anon_growth)
        );
    }
    for r in results {
        for line in &r.skipped {
            let _ = writeln!(o, "\n{} keys: {line}", r.n);
        }
    }
    let _ = writeln!(o, "\nSetup (not measured against anything)\n");
    let _ = writeln!(o, "| keys | walden load, batches of {BATCH} + closing sync | raw log, a write() per put + closing fdatasync | SQLite build, WAL, 10,000-row transactions | SQLite file |");
    let _ = writeln!(o, "|--:|--:|--:|--:|--:|");
    for r in results {
        let _ = writeln!(
            o,
            "| {} | {} | {} | {} | {} |",
            r.n,
            secs(Some(r.load_secs)),
            secs(Some(r.raw_write_secs)),
            secs(r.sqlite_build.map(|(secs, _)| secs)),
            r.sqlite_build.map_or("-".to_owned(), |(_, bytes)| mib(bytes))
        );
    }
    o
}
