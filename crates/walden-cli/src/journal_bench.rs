//! `walden bench-journal`: the journal against a SQLite journal table
//! (journal_mode=WAL, synchronous=NORMAL, indexes on address and timestamp),
//! side by side in one process: appends one at a time and in batches of 100,
//! and a time-range query returning 1,000 entries from journals of each
//! size given. docs/BENCHMARKS.md has the method and the figures.

use crate::engines::{sqlite_connect, Mode, Result};
use crate::latency::median;
use rusqlite::{params, Connection};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;
use walden::journal::{codec, Journal, JournalEntry, JournalOp, NewEntry, Query, SignalType, Value};
use walden::{DurableJournal, JournalOptions};

#[derive(clap::Args)]
pub struct JournalArgs {
    /// Entries appended per append run (one at a time and in batches).
    #[arg(long, value_name = "N", default_value_t = 200_000)]
    entries: u64,
    /// Append runs per engine, alternating which engine goes first; medians are reported.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    rounds: u32,
    /// Journal sizes for the time-range query.
    #[arg(long, value_name = "N,..", value_delimiter = ',', default_value = "1000000,10000000")]
    query_sizes: Vec<u64>,
    /// Queries per engine and size (alternated between the engines).
    #[arg(long, default_value_t = 200)]
    queries: u32,
    /// Where the data goes: a temporary directory is made in PATH and removed afterwards.
    #[arg(long, value_name = "PATH", default_value = ".")]
    dir: PathBuf,
    /// Only the query part, walden only (to look into walden's query time).
    #[arg(long)]
    walden_queries_only: bool,
    /// Also write the results to FILE, one JSON object per line.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
}

/// Entries are 10 us apart, so a 10 ms window holds exactly 1,000.
const STEP_US: u64 = 10;
const BASE_US: u64 = 1_700_000_000_000_000;
const QUERY_ENTRIES: u64 = 1_000;
const BATCH: usize = 100;

/// Entry `i` as a relay would journal it: 70% SETs of 350 parameters, 30%
/// event PUBLISHes, four sessions writing, a float value.
fn entry(i: u64) -> NewEntry {
    let author = ["session-a", "session-b", "session-c", "session-d"][(i % 4) as usize];
    let value = Value::Float((i % 1000) as f64 / 1000.0);
    let e = if i % 10 < 7 {
        NewEntry::set(author, &format!("/lights/room{}/channel{}", i % 50, i % 7), value)
    } else {
        NewEntry::publish(SignalType::Event, author, &format!("/sensors/door{}/opened", i % 20), value)
    };
    e.at(BASE_US + i * STEP_US)
}

fn walden_options() -> JournalOptions {
    let mut options = JournalOptions::default();
    options.engine.wal.fsync = Mode::Periodic.fsync();
    options
}

const SQLITE_SCHEMA: &str = "CREATE TABLE journal(seq INTEGER PRIMARY KEY, timestamp INTEGER NOT NULL, \
     author TEXT NOT NULL, address TEXT NOT NULL, signal_type INTEGER NOT NULL, value BLOB NOT NULL, \
     revision INTEGER, op INTEGER NOT NULL);
     CREATE INDEX journal_address ON journal(address);
     CREATE INDEX journal_timestamp ON journal(timestamp);";
const SQLITE_INSERT: &str = "INSERT INTO journal(seq, timestamp, author, address, signal_type, value, revision, op) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)";
const SQLITE_QUERY: &str = "SELECT seq, timestamp, author, address, signal_type, value, revision, op FROM journal \
     WHERE timestamp >= ?1 AND timestamp < ?2 ORDER BY seq LIMIT ?3";

/// A SQLite journal table, the way the seed relay keeps one: the relay
/// numbers entries and tracks revisions itself (here in a HashMap).
struct SqliteJournal {
    conn: Connection,
    sequence: u64,
    revisions: HashMap<String, u64>,
    value: Vec<u8>,
}

impl SqliteJournal {
    fn create(path: &Path) -> Result<SqliteJournal> {
        let conn = sqlite_connect(path, Mode::Periodic)?;
        conn.execute_batch(SQLITE_SCHEMA)?;
        Ok(SqliteJournal { conn, sequence: 0, revisions: HashMap::new(), value: Vec::new() })
    }

    fn insert(&mut self, e: &NewEntry) -> Result<()> {
        self.sequence += 1;
        let revision = match e.op {
            JournalOp::Set => {
                let r = self.revisions.entry(e.address.clone()).or_insert(0);
                *r += 1;
                Some(*r)
            }
            _ => None,
        };
        self.value.clear();
        codec::encode_value(&mut self.value, &e.value);
        let mut insert = self.conn.prepare_cached(SQLITE_INSERT)?;
        insert.execute(params![
            self.sequence as i64,
            e.timestamp_us.unwrap_or(0) as i64,
            e.author,
            e.address,
            e.signal_type as u8,
            self.value,
            revision.map(|r| r as i64),
            e.op as u8
        ])?;
        Ok(())
    }

    fn insert_batch(&mut self, entries: &[NewEntry]) -> Result<()> {
        self.conn.execute_batch("BEGIN")?;
        for e in entries {
            self.insert(e)?;
        }
        self.conn.execute_batch("COMMIT")?;
        Ok(())
    }

    fn query(&self, from_us: u64, to_us: u64, limit: u64) -> Result<Vec<JournalEntry>> {
        let mut query = self.conn.prepare_cached(SQLITE_QUERY)?;
        let rows = query.query_map(params![from_us as i64, to_us as i64, limit as i64], |row| {
            let value: Vec<u8> = row.get(5)?;
            let signal: u8 = row.get(4)?;
            let op: u8 = row.get(7)?;
            Ok(JournalEntry {
                sequence: row.get::<_, i64>(0)? as u64,
                timestamp_us: row.get::<_, i64>(1)? as u64,
                author: row.get(2)?,
                address: row.get(3)?,
                signal_type: SignalType::ALL[signal as usize - 1],
                value: codec::decode_value(&value).unwrap_or(Value::Null),
                revision: row.get::<_, Option<i64>>(6)?.map(|r| r as u64),
                op: if op == 1 { JournalOp::Set } else { JournalOp::Publish },
            })
        })?;
        Ok(rows.collect::<std::result::Result<Vec<_>, _>>()?)
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    Walden,
    Sqlite,
}

/// Appends `n` entries one at a time (`batch` = 1) or in batches; entries/s.
fn append_rate(side: Side, n: u64, batch: usize, dir: &Path) -> Result<f64> {
    let entries: Vec<NewEntry> = (0..n).map(entry).collect();
    let started;
    match side {
        Side::Walden => {
            let journal = DurableJournal::open(dir.join("walden"), walden_options())?;
            started = Instant::now();
            if batch == 1 {
                for e in entries {
                    journal.append(e)?;
                }
            } else {
                for chunk in entries.chunks(batch) {
                    journal.append_batch(chunk.to_vec())?;
                }
            }
            let secs = started.elapsed().as_secs_f64();
            journal.close()?;
            std::fs::remove_dir_all(dir.join("walden"))?;
            Ok(n as f64 / secs)
        }
        Side::Sqlite => {
            let path = dir.join("journal.db");
            let mut sqlite = SqliteJournal::create(&path)?;
            started = Instant::now();
            if batch == 1 {
                for e in &entries {
                    sqlite.insert(e)?;
                }
            } else {
                for chunk in entries.chunks(batch) {
                    sqlite.insert_batch(chunk)?;
                }
            }
            let secs = started.elapsed().as_secs_f64();
            drop(sqlite);
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
            }
            Ok(n as f64 / secs)
        }
    }
}

fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Median microseconds of a 1,000-entry time-range query on journals of
/// `size` entries: (walden, SQLite).
fn query_latency(size: u64, queries: u32, dir: &Path, walden_only: bool) -> Result<(f64, f64)> {
    let started = Instant::now();
    let journal = DurableJournal::open(dir.join("walden-q"), walden_options())?;
    let mut sqlite = SqliteJournal::create(&dir.join("query.db"))?;
    let chunk = 10_000u64;
    for start in (0..size).step_by(chunk as usize) {
        let entries: Vec<NewEntry> = (start..(start + chunk).min(size)).map(entry).collect();
        for part in entries.chunks(1000) {
            journal.append_batch(part.to_vec())?;
        }
        if !walden_only {
            sqlite.insert_batch(&entries)?;
        }
    }
    sqlite.conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE); ANALYZE;")?;
    eprintln!("  built two journals of {size} entries in {:.1} s", started.elapsed().as_secs_f64());
    let (mut walden_us, mut sqlite_us) = (Vec::new(), Vec::new());
    for q in 0..queries {
        let first = splitmix64(u64::from(q) ^ size) % (size - QUERY_ENTRIES);
        let (from, to) = (BASE_US + first * STEP_US, BASE_US + (first + QUERY_ENTRIES) * STEP_US);
        let run_walden = |out: &mut Vec<f64>| -> Result<()> {
            let t = Instant::now();
            let page = journal.query(&Query::all().from_us(from).to_us(to).limit(QUERY_ENTRIES as usize))?;
            out.push(t.elapsed().as_secs_f64() * 1e6);
            check(&page.entries, first)
        };
        let run_sqlite = |out: &mut Vec<f64>| -> Result<()> {
            let t = Instant::now();
            let entries = sqlite.query(from, to, QUERY_ENTRIES)?;
            out.push(t.elapsed().as_secs_f64() * 1e6);
            check(&entries, first)
        };
        if walden_only {
            run_walden(&mut walden_us)?;
        } else if q % 2 == 0 {
            run_walden(&mut walden_us)?;
            run_sqlite(&mut sqlite_us)?;
        } else {
            run_sqlite(&mut sqlite_us)?;
            run_walden(&mut walden_us)?;
        }
    }
    journal.close()?;
    drop(sqlite);
    std::fs::remove_dir_all(dir.join("walden-q"))?;
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", dir.join("query.db").display()));
    }
    Ok((median(walden_us), median(sqlite_us)))
}

/// Both engines must return the same 1,000 entries, starting at `first`.
fn check(entries: &[JournalEntry], first: u64) -> Result<()> {
    if entries.len() as u64 != QUERY_ENTRIES || entries[0].sequence != first + 1 {
        return Err(format!(
            "a query returned {} entries from {:?}",
            entries.len(),
            entries.first().map(|e| e.sequence)
        )
        .into());
    }
    Ok(())
}

pub fn run(args: &JournalArgs) -> Result<()> {
    let tmp = tempfile::Builder::new().prefix("walden-bench-journal").tempdir_in(&args.dir)?;
    let dir = tmp.path();
    println!("## walden vs SQLite: the journal\n");
    println!("walden's journal with fsync periodic 10 ms; SQLite a journal table in WAL mode, synchronous=NORMAL.\n");
    let mut rows = Vec::new();
    let appends: &[(&str, usize)] =
        if args.walden_queries_only { &[] } else { &[("one at a time", 1), ("batches of 100", BATCH)] };
    for &(label, batch) in appends {
        let (mut walden, mut sqlite) = (Vec::new(), Vec::new());
        for round in 0..args.rounds {
            let order = if round % 2 == 0 { [Side::Walden, Side::Sqlite] } else { [Side::Sqlite, Side::Walden] };
            for side in order {
                let rate = append_rate(side, args.entries, batch, dir)?;
                match side {
                    Side::Walden => walden.push(rate),
                    Side::Sqlite => sqlite.push(rate),
                }
            }
        }
        let (w, s) = (median(walden.iter().copied()), median(sqlite.iter().copied()));
        for (engine, rate, runs) in [("walden", w, &walden), ("sqlite", s, &sqlite)] {
            rows.push(serde_json::json!({
                "workload": "append", "engine": engine, "what": format!("journal entries, {label}"),
                "batch": batch, "entries": args.entries, "ops_per_s": rate, "ops_per_s_reps": runs,
                "secs": args.entries as f64 / rate, "p50_us": null, "p99_us": null,
            }));
        }
        println!(
            "append {label}: walden {w:.0}/s, SQLite {s:.0}/s, ratio {:.1}x (medians of {} runs of {} entries; runs: walden {:?}, SQLite {:?})",
            w / s,
            args.rounds,
            args.entries,
            walden.iter().map(|r| *r as u64).collect::<Vec<_>>(),
            sqlite.iter().map(|r| *r as u64).collect::<Vec<_>>(),
        );
    }
    let mut by_size = Vec::new();
    for &size in &args.query_sizes {
        let (w, s) = query_latency(size, args.queries, dir, args.walden_queries_only)?;
        let sides: &[(&str, f64)] =
            if args.walden_queries_only { &[("walden", w)] } else { &[("walden", w), ("sqlite", s)] };
        for &(engine, us) in sides {
            rows.push(serde_json::json!({
                "workload": "query", "engine": engine,
                "what": format!("time range, 1,000 of {size} journal entries"),
                "journal_entries": size, "queries": args.queries, "ops_per_s": 1e6 / us, "secs": us / 1e6,
                "p50_us": us, "p99_us": null,
            }));
        }
        println!(
            "query 1,000 entries by time from {size} entries: walden {w:.0} us, SQLite {s:.0} us, SQLite/walden {:.2}x (medians of {} queries each)",
            s / w,
            args.queries
        );
        by_size.push((size, w));
    }
    if let (Some(small), Some(large)) = (by_size.first(), by_size.last()) {
        if large.0 > small.0 {
            println!("walden query at {} / at {}: {:.2}x", large.0, small.0, large.1 / small.1);
        }
    }
    if let Some(path) = &args.json {
        let lines: Vec<String> = rows.iter().map(|row| row.to_string()).collect();
        std::fs::write(path, lines.join("\n") + "\n")?;
    }
    Ok(())
}
