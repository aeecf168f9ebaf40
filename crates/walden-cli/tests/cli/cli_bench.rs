//! What `walden bench` and its two sections (`bench-recovery`,
//! `bench-journal`) print, run as the real binary on tiny workloads: they
//! speak of walden vs SQLite and walden vs the raw disk, show no goal or
//! target of the project, and `--json` keeps one object per measurement
//! with its baselines named; and that `bench-puts` reports every write and
//! the reads beside the log, also through `--compare-with`. No figure is
//! judged here (beyond being a positive number): speed is measured by the
//! bench itself, never by a test.

use std::path::Path;
use std::process::{Command, Output};

fn walden(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_walden")).args(args).output().expect("run walden")
}

/// Runs `walden args` in `dir`, which must succeed; returns its stdout.
fn bench(dir: &Path, args: &[&str]) -> String {
    let mut all = args.to_vec();
    let dir = dir.to_str().unwrap();
    all.extend(["--dir", dir]);
    let o = walden(&all);
    let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(o.status.success(), "walden {all:?}\nstdout:\n{stdout}\nstderr:\n{}", String::from_utf8_lossy(&o.stderr));
    stdout
}

/// The words of the project's own planning, which a user never needs.
fn assert_no_project_internals(report: &str) {
    let lower = report.to_lowercase();
    for word in ["goal", "target", "issue", "missed", "verdict"] {
        assert!(!lower.contains(word), "the output says {word:?}:\n{report}");
    }
}

fn json_lines(path: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).unwrap();
    text.lines().map(|line| serde_json::from_str(line).expect("one JSON object a line")).collect()
}

#[test]
fn bench_prints_walden_vs_sqlite_and_vs_the_raw_disk_and_keeps_its_json() {
    let tmp = tempfile::tempdir().unwrap();
    let (json, chart) = (tmp.path().join("bench.jsonl"), tmp.path().join("bench.svg"));
    let args = ["bench", "--writers", "1", "--record-bytes", "128", "--reps", "1", "--run-secs", "0.05"];
    let mut args = args.to_vec();
    args.extend([
        "--no-recovery",
        "--no-journal",
        "--json",
        json.to_str().unwrap(),
        "--chart",
        chart.to_str().unwrap(),
    ]);
    let out = bench(tmp.path(), &args);

    let sqlite = out.find("## walden vs SQLite: appends").expect("a walden vs SQLite section");
    let raw = out.find("## walden vs the raw disk: appends").expect("a walden vs the raw disk section");
    let all = out.find("## Every append measurement").expect("the full table");
    assert!(sqlite < raw && raw < all, "the comparisons come first:\n{out}");
    for mode in ["always (FULL)", "periodic (NORMAL)", "never (OFF)"] {
        assert!(out[sqlite..raw].contains(&format!("| 1 | 128 B | {mode} |")), "no {mode} row:\n{out}");
    }
    for (mode, api, raw_loop) in [
        ("always", "blocking", "write + fdatasync"),
        ("periodic", "blocking", "write"),
        ("never", "blocking", "write"),
        ("never", "pipelined", "write"),
        ("periodic", "pipelined", "write"),
    ] {
        let row = out[raw..all].lines().find(|l| l.starts_with(&format!("| 1 | 128 B | {mode} | {api} |")));
        let row = row.unwrap_or_else(|| panic!("no {mode} {api} row against the raw disk:\n{out}"));
        assert!(row.contains(&format!(" | {raw_loop} | ")), "{row}");
    }
    assert_no_project_internals(&out);

    let rows = json_lines(&json);
    assert_eq!(rows.len(), 12, "8 engines for blocking appends, 4 for pipelined ones");
    for row in &rows {
        assert_eq!(row["workload"], "append");
        assert!(row["ops_per_s"].as_f64().is_some_and(|r| r > 0.0), "{row}");
        if row["engine"] == "walden" {
            assert!(row["vs_raw"].as_f64().is_some_and(|r| r > 0.0), "{row}");
            assert!(row["raw_baseline"].is_string(), "{row}");
        }
    }
    let never = rows.iter().find(|r| r["engine"] == "walden" && r["mode"] == "never" && r["api"] == "blocking");
    let never = never.expect("a walden never row");
    assert_eq!(never["sqlite_baseline"], "sqlite OFF");
    assert!(never["vs_sqlite"].as_f64().is_some_and(|r| r > 0.0), "{never}");
    let pipelined = rows.iter().find(|r| r["engine"] == "walden" && r["api"] == "pipelined").unwrap();
    assert_eq!(pipelined["raw_synced_baseline"], "raw-seq");
    let svg = std::fs::read_to_string(&chart).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("walden vs SQLite vs the raw disk"), "{svg}");
}

#[test]
fn bench_recovery_compares_with_sqlite_and_shows_no_goals() {
    let tmp = tempfile::tempdir().unwrap();
    let args = ["bench-recovery", "--keys", "2000", "--log-records", "200", "--opens", "1", "--rounds", "1"];
    let mut args = args.to_vec();
    args.push("--no-drop-caches");
    let out = bench(tmp.path(), &args);
    assert!(out.starts_with("## walden vs SQLite and a raw write() log: store recovery\n"), "{out}");
    assert!(out.contains("| 2000 | raw write() log -> HashMap"), "{out}");
    assert!(out.contains("| 2000 | open from the log alone | "), "{out}");
    assert!(out.contains("walden vs SQLite: opening the store from its snapshot"), "{out}");
    assert!(out.contains("| 2000 | a HashMap | "), "{out}");
    assert!(out.contains("| 2000 | an imbl::OrdMap | "), "{out}");
    assert!(out.contains("2000 keys: p99 `put` latency while a snapshot is written / without: "), "{out}");
    assert_no_project_internals(&out);
}

/// What the recovery tables report beside the times: the time per million
/// keys, memory per key and against the raw key and value bytes (printed
/// beside them) after and at the peak of each open, the snapshot's MiB/s,
/// the memory a snapshot takes while a writer puts; and that with the page
/// cache left alone it says cold opens were not measured.
#[test]
fn bench_recovery_reports_memory_per_key_and_snapshot_throughput() {
    let tmp = tempfile::tempdir().unwrap();
    let json = tmp.path().join("recovery.jsonl");
    let args = ["bench-recovery", "--keys", "3000", "--log-records", "100", "--opens", "1", "--rounds", "1"];
    let mut args = args.to_vec();
    args.extend(["--no-drop-caches", "--no-sqlite", "--json", json.to_str().unwrap()]);
    let out = bench(tmp.path(), &args);
    assert!(out.starts_with("## walden vs SQLite and a raw write() log: store recovery\n"), "{out}");
    assert!(out.ends_with("\ncold opens not measured: --no-drop-caches\n"), "{out}");
    assert!(out.contains("| cold, s / 1M keys | warm, s / 1M keys |"), "{out}");
    assert!(out.contains("| keys | what | raw key+value bytes | RSS after | RSS / key | RSS / raw | anon after | anon / key | anon / raw | peak RSS | peak / key | peak / raw |"), "{out}");
    assert!(out.contains("| 3000 | walden, snapshot only | 0 MiB | "), "{out}");
    assert!(out.contains("| file MiB/s | raw key+value MiB/s |"), "{out}");
    assert!(
        out.contains("3000 keys: memory a snapshot took while the writer put (the largest of 1 rounds): RSS "),
        "{out}"
    );
    assert!(!out.contains("skipped"), "3,000 keys fit: {out}");
    assert_no_project_internals(&out);
    let rows = json_lines(&json);
    assert_eq!(rows.len(), 1);
    let r = &rows[0];
    assert_eq!(r["raw_key_value_bytes"], 3000 * 116);
    assert_eq!(r["snapshot_secs"].as_array().map(Vec::len), Some(1), "--opens 1: one snapshot");
    assert!(r["open_from_snapshot"]["warm_secs_per_million_keys"].as_f64().unwrap() > 0.0);
    assert!(r["open_from_snapshot"]["cold_secs"].is_null(), "no cold opens");
    assert!(r["latency_test_rss_before_snapshot"].as_u64().unwrap() > 0);
    assert!(r["raw_replay_to_hashmap"]["warm_secs"].as_f64().unwrap() > 0.0);
    assert_eq!(r["skipped"], serde_json::json!([]));
}

#[test]
fn bench_journal_compares_with_sqlite() {
    let tmp = tempfile::tempdir().unwrap();
    let json = tmp.path().join("journal.jsonl");
    let args = ["bench-journal", "--entries", "2000", "--rounds", "1", "--query-sizes", "5000", "--queries", "3"];
    let mut args = args.to_vec();
    args.extend(["--json", json.to_str().unwrap()]);
    let out = bench(tmp.path(), &args);
    assert!(out.starts_with("## walden vs SQLite: the journal\n"), "{out}");
    assert!(out.contains("query 1,000 entries by time from 5000 entries: walden "), "{out}");
    assert_no_project_internals(&out);
    let rows = json_lines(&json);
    let engines: Vec<(&str, &str)> =
        rows.iter().map(|r| (r["workload"].as_str().unwrap(), r["engine"].as_str().unwrap())).collect();
    assert_eq!(
        engines,
        [
            ("append", "walden"),
            ("append", "sqlite"),
            ("append", "walden"),
            ("append", "sqlite"),
            ("query", "walden"),
            ("query", "sqlite")
        ]
    );
}

/// The row of `table` whose first three columns are `mode writers what`,
/// split into its columns.
fn table_row<'a>(table: &'a str, mode: &str, writers: &str, what: &str) -> Vec<&'a str> {
    let mut rows = table.lines().map(|l| l.split_whitespace().collect::<Vec<_>>());
    let row = rows.find(|columns| columns.starts_with(&[mode, writers, what]));
    row.unwrap_or_else(|| panic!("no {mode} {writers} {what} row:\n{table}"))
}

fn positive(column: &str) -> bool {
    column.trim_end_matches('x').parse::<f64>().is_ok_and(|x| x > 0.0)
}

#[test]
fn bench_puts_shows_batches_journal_appends_and_reads_beside_the_log_and_another_build() {
    let tmp = tempfile::tempdir().unwrap();
    let json = tmp.path().join("puts.jsonl");
    let args = ["bench-puts", "--run-secs", "0.2", "--reps", "1", "--writers", "1,2", "--modes", "never"];
    let mut args = args.to_vec();
    // This very binary as the other build: every cell also runs in a child.
    args.extend([
        "--read-keys",
        "10000",
        "--compare-with",
        env!("CARGO_BIN_EXE_walden"),
        "--json",
        json.to_str().unwrap(),
    ]);
    let out = bench(tmp.path(), &args);
    let header = out.lines().find(|l| l.starts_with("mode") && l.contains("records/s")).expect("a writes table");
    for column in ["ops/s", "p50 us", "p99 us", "p99.9 us", "vs log", "other ops/s", "vs other"] {
        assert!(header.contains(column), "no {column:?} column:\n{out}");
    }
    for writers in ["1", "2"] {
        for what in ["put", "batch", "journal", "log-append"] {
            let row = table_row(&out, "never", writers, what);
            // ops/s, p50, p99, p99.9, records/s, [vs log], other ops/s, other p99, vs other.
            assert_eq!(row.len(), 12, "{row:?}");
            for (i, column) in row[3..].iter().enumerate() {
                let unmeasured = what == "log-append" && i == 5;
                assert!(if unmeasured { *column == "-" } else { positive(column) }, "{what} {writers}: {row:?}\n{out}");
            }
        }
        let put = table_row(&out, "never", writers, "put");
        let batch = table_row(&out, "never", writers, "batch");
        assert_eq!(put[3], put[7], "a put is one record");
        let (batches, records): (f64, f64) = (batch[3].parse().unwrap(), batch[7].parse().unwrap());
        assert!((records / batches - 10.0).abs() < 0.01, "a batch is 10 records: {batch:?}");
    }
    assert!(out.contains("gets/s") && out.contains("vs idle"), "a reads table:\n{out}");
    for writers in ["0", "2"] {
        let row = table_row(&out, "never", writers, "reads");
        assert_eq!(row.len(), 11, "{row:?}");
        for (i, column) in row[3..].iter().enumerate() {
            let unmeasured = writers == "0" && i == 4;
            assert!(if unmeasured { *column == "-" } else { positive(column) }, "reads {writers}: {row:?}\n{out}");
        }
    }
    assert_no_project_internals(&out);

    let rows = json_lines(&json);
    let cells: Vec<(&str, u64)> =
        rows.iter().map(|r| (r["what"].as_str().unwrap(), r["writers"].as_u64().unwrap())).collect();
    let writes = ["put", "batch", "journal", "log-append"];
    let mut expected: Vec<(&str, u64)> = writes.map(|w| (w, 1)).to_vec();
    expected.extend(writes.map(|w| (w, 2)));
    expected.extend([("reads", 0), ("reads", 2)]);
    assert_eq!(cells, expected);
    for row in &rows {
        for field in ["ops_per_sec", "p50_us", "p99_us", "p999_us", "other_ops_per_sec", "other_p999_us", "vs_other"] {
            assert!(row[field].as_f64().is_some_and(|x| x > 0.0), "{field}: {row}");
        }
        let ratio = match (row["what"].as_str().unwrap(), row["writers"].as_u64().unwrap()) {
            ("log-append", _) | ("reads", 0) => None,
            ("reads", _) => Some("vs_idle"),
            _ => Some("vs_log"),
        };
        if let Some(ratio) = ratio {
            assert!(row[ratio].as_f64().is_some_and(|x| x > 0.0), "{ratio}: {row}");
        }
    }
}

#[test]
fn bench_follow_reports_every_cell_and_both_latencies_on_a_tiny_run() {
    let tmp = tempfile::tempdir().unwrap();
    let args = [
        "bench-follow",
        "--records",
        "400",
        "--always-records",
        "16",
        "--samples",
        "50",
        "--process-samples",
        "10",
        "--runs",
        "1",
    ];
    let out = bench(tmp.path(), &args);
    assert_no_project_internals(&out);
    for mode in ["Periodic", "Always"] {
        for (writers, followers) in [(1, 0), (1, 1), (1, 8), (16, 0), (16, 1), (16, 8)] {
            let row = format!("| {mode} | {writers} | {followers} | ");
            assert!(out.contains(&row), "a row {row:?}:\n{out}");
        }
    }
    for writer in ["spins", "sleeps"] {
        for mode in ["Periodic", "Never"] {
            let place = format!("| Wal::follow, in-process, writer {writer} between appends | {mode} | median |");
            assert!(out.contains(&place), "{place}:\n{out}");
        }
    }
    assert!(out.contains("| walden follow --poll-ms 5, another process | Periodic | median |"), "{out}");
    let leftovers: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().collect();
    assert!(leftovers.is_empty(), "the bench removes its directories");
}
