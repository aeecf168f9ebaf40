//! What `walden bench` and its two sections (`bench-recovery`,
//! `bench-journal`) print, run as the real binary on tiny workloads: they
//! speak of walden vs SQLite and walden vs the raw disk, show no goal or
//! target of the project, and `--json` keeps one object per measurement
//! with its baselines named. No figure is judged here: speed is measured by
//! the bench itself, never by a test.

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
