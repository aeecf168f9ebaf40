//! The parts of `walden bench` past appends: recovery of a store against
//! loading the same rows from SQLite (`bench-recovery`), and a journal
//! time-range query against SQLite's indexed query (`bench-journal`).
//!
//! Each runs as a child process of this binary (so a recovery's memory and
//! page cache are its own, as `bench-recovery` needs), writes JSON lines to
//! a file in the bench's temporary directory, and is read back here into
//! rows of the `--json` schema of appends: `workload`, `engine`, `mode`, `api`,
//! `writers`, `record_bytes`, `ops_per_s`, `p50_us`, `p99_us`, `secs`.

use crate::engines::Result;
use serde_json::{json, Value};
use std::path::Path;
use std::process::{Command, Stdio};

/// One measured engine in a section, with its median figures.
pub struct SectionRow {
    pub workload: &'static str,
    pub engine: &'static str,
    /// What was measured, for people: "open 1,000,000 keys from a snapshot".
    pub what: String,
    pub ops_per_s: f64,
    pub secs: f64,
    pub p50_us: Option<f64>,
    pub p99_us: Option<f64>,
    /// Fields of its own (key count, cold time, ...).
    pub extra: Value,
}

impl SectionRow {
    pub fn json(&self) -> Value {
        let mut row = json!({
            "workload": self.workload, "engine": self.engine, "mode": null, "api": null, "writers": 1,
            "what": self.what, "ops_per_s": self.ops_per_s, "p50_us": self.p50_us, "p99_us": self.p99_us,
            "secs": self.secs,
        });
        if let (Some(row), Some(extra)) = (row.as_object_mut(), self.extra.as_object()) {
            row.extend(extra.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        row
    }
}

/// Runs `walden <args>` with its progress on our stderr and its report on
/// our stdout; returns the JSON lines it wrote to `json`.
fn child(args: &[String], json: &Path) -> Result<Vec<Value>> {
    let exe = std::env::current_exe()?;
    let status = Command::new(exe).args(args).arg("--json").arg(json).stdin(Stdio::null()).status()?;
    if !status.success() {
        return Err(format!("walden {} failed: {status}", args.join(" ")).into());
    }
    let text = std::fs::read_to_string(json)?;
    text.lines().map(|line| Ok(serde_json::from_str(line)?)).collect()
}

fn f64_at(v: &Value, path: &[&str]) -> Option<f64> {
    path.iter().try_fold(v, |v, key| v.get(key))?.as_f64()
}

/// Store recovery from a snapshot (the log closed cleanly after it) and from
/// the log alone, against a naive write() log of the same puts replayed
/// into a HashMap and against reading the same rows from SQLite into a
/// HashMap: warm page cache, and cold where the cache can be dropped; with
/// the resident memory of each once recovered.
pub fn recovery(root: &Path, keys: u64) -> Result<Vec<SectionRow>> {
    let dir = root.join("recovery");
    std::fs::create_dir(&dir)?;
    let args: Vec<String> = ["bench-recovery", "--keys", &keys.to_string(), "--opens", "3", "--rounds", "1"]
        .iter()
        .map(|s| s.to_string())
        .chain(["--log-records".into(), (keys / 10).to_string(), "--dir".into(), dir.display().to_string()])
        .collect();
    let lines = child(&args, &root.join("recovery.jsonl"))?;
    let mut rows = Vec::new();
    for line in &lines {
        let n = line.get("keys").and_then(Value::as_u64).unwrap_or(keys);
        for (engine, field, what) in [
            ("walden", "open_from_snapshot", "Store::open from a snapshot"),
            ("walden", "open_from_log", "Store::open from the log alone"),
            ("raw", "raw_replay_to_hashmap", "the same puts, write() log replayed into a HashMap"),
            ("sqlite", "sqlite_to_hashmap", "SELECT * into a HashMap"),
        ] {
            let Some(warm) = f64_at(line, &[field, "warm_secs"]) else { continue };
            let cold = f64_at(line, &[field, "cold_secs"]);
            let rss_after = f64_at(line, &[field, "rss_after"]);
            let per_key = rss_after.map_or(String::new(), |b| format!("; {:.0} B resident a key", b / n as f64));
            rows.push(SectionRow {
                workload: "recover",
                engine,
                what: format!("{what}, {n} keys of 16 B + 100 B{per_key}"),
                ops_per_s: n as f64 / warm,
                secs: warm,
                p50_us: None,
                p99_us: None,
                extra: json!({"keys": n, "record_bytes": 116, "cold_secs": cold, "warm_secs": warm,
                              "rss_after": rss_after, "anon_after": f64_at(line, &[field, "anon_after"])}),
            });
        }
    }
    Ok(rows)
}

/// The journal: a time-range query returning 1,000 entries, walden's
/// journal against SQLite's indexed query, on journals of `sizes` entries,
/// plus appends one at a time and in batches of 100.
pub fn journal(root: &Path, entries: u64, sizes: &[u64]) -> Result<Vec<SectionRow>> {
    let dir = root.join("journal");
    std::fs::create_dir(&dir)?;
    let sizes: Vec<String> = sizes.iter().map(u64::to_string).collect();
    let args: Vec<String> = [
        "bench-journal".to_string(),
        "--entries".into(),
        entries.to_string(),
        "--query-sizes".into(),
        sizes.join(","),
        "--dir".into(),
        dir.display().to_string(),
    ]
    .into();
    let lines = child(&args, &root.join("journal.jsonl"))?;
    Ok(lines.iter().filter_map(journal_row).collect())
}

/// A `bench-journal` JSON line as a row; lines of another shape are skipped.
fn journal_row(line: &Value) -> Option<SectionRow> {
    let workload = match line.get("workload")?.as_str()? {
        "query" => "query",
        "append" => "append-journal",
        _ => return None,
    };
    let engine = match line.get("engine")?.as_str()? {
        "walden" => "walden",
        "sqlite" => "sqlite",
        _ => return None,
    };
    let secs = line.get("secs").and_then(Value::as_f64).unwrap_or(f64::NAN);
    Some(SectionRow {
        workload,
        engine,
        what: line.get("what").and_then(Value::as_str).unwrap_or(workload).to_owned(),
        ops_per_s: line.get("ops_per_s")?.as_f64()?,
        secs,
        p50_us: line.get("p50_us").and_then(Value::as_f64),
        p99_us: line.get("p99_us").and_then(Value::as_f64),
        extra: line.clone(),
    })
}

/// The rows as a table, each walden row followed by SQLite's same
/// measurement and the ratio of their rates, and the ratio to the raw
/// program's same measurement where there is one.
pub fn table(rows: &[SectionRow]) -> String {
    let mut out = String::from(
        "| workload | what | engine | ops/s | median s | p50 µs | p99 µs | walden / SQLite | walden / raw |\n|---|---|---|--:|--:|--:|--:|--:|--:|\n",
    );
    let us = |v: Option<f64>| v.map_or(String::new(), |v| format!("{v:.0}"));
    let ratio = |row: &SectionRow, engine: &str| {
        if row.engine != "walden" {
            return String::new();
        }
        rows.iter()
            .find(|r| r.engine == engine && r.workload == row.workload && same_measurement(r, row))
            .map_or(String::new(), |s| format!("{:.2}x", row.ops_per_s / s.ops_per_s))
    };
    for row in rows {
        out.push_str(&format!(
            "| {} | {} | {} | {:.0} | {:.4} | {} | {} | {} | {} |\n",
            row.workload,
            row.what,
            row.engine,
            row.ops_per_s,
            row.secs,
            us(row.p50_us),
            us(row.p99_us),
            ratio(row, "sqlite"),
            ratio(row, "raw")
        ));
    }
    out
}

/// Whether two rows measure the same thing on different engines: the same
/// key count or journal size and batch (the `what` text differs by engine).
fn same_measurement(a: &SectionRow, b: &SectionRow) -> bool {
    ["keys", "journal_entries", "batch"].iter().all(|k| a.extra.get(k) == b.extra.get(k))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_lines_become_rows_and_pair_by_size() {
        let lines = [
            json!({"workload": "query", "engine": "walden", "journal_entries": 1_000_000, "ops_per_s": 4000.0, "secs": 0.00025, "p50_us": 240.0}),
            json!({"workload": "query", "engine": "sqlite", "journal_entries": 1_000_000, "ops_per_s": 1000.0, "secs": 0.001}),
            json!({"workload": "query", "engine": "sqlite", "journal_entries": 10_000_000, "ops_per_s": 500.0, "secs": 0.002}),
            json!({"workload": "other", "engine": "walden", "ops_per_s": 1.0}),
        ];
        let rows: Vec<SectionRow> = lines.iter().filter_map(journal_row).collect();
        assert_eq!(rows.len(), 3);
        let table = table(&rows);
        assert!(table.contains("| 4.00x |"), "{table}");
        // The 10M SQLite row has no walden row to pair with: one ratio only.
        assert_eq!(table.matches("x |").count(), 1, "{table}");
        let json = rows[0].json();
        assert_eq!(json["workload"], "query");
        assert_eq!(json["writers"], 1);
        assert_eq!(json["journal_entries"], 1_000_000);
    }
}
