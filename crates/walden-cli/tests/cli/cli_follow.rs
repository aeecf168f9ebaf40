//! `walden follow` as a process against a writer in another process: every
//! record printed once, across a SIGKILL of the writer and its restart
//! (whose recovery may cut a torn tail and reuse its LSNs), and a clean
//! exit on SIGINT. The writer is this test binary run again as a child
//! (the test `follow_writer_child`, which does nothing unless its
//! environment variable is set).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};
use walden::{FsyncMode, Lsn, Wal, WalOptions};

/// Set to a log directory, the child writes there (see `follow_writer_child`).
const WRITER_ENV: &str = "WALDEN_FOLLOW_WRITER_DIR";
/// The child's generation, which its payloads carry; and how many records
/// it appends before closing the log and exiting (0: until killed).
const GENERATION_ENV: &str = "WALDEN_FOLLOW_WRITER_GENERATION";
const COUNT_ENV: &str = "WALDEN_FOLLOW_WRITER_COUNT";

fn writer_options() -> WalOptions {
    // Never: appenders write side by side, so a SIGKILL can leave a hole
    // (a later record written, an earlier one not) for recovery to cut.
    WalOptions { fsync: FsyncMode::Never, segment_bytes: 64 << 10, ..Default::default() }
}

/// The child role: three threads append until killed (or `COUNT_ENV`
/// records are in), printing each LSN as it is acknowledged.
#[test]
fn follow_writer_child() {
    let Ok(dir) = std::env::var(WRITER_ENV) else { return };
    let generation: u64 = std::env::var(GENERATION_ENV).unwrap().parse().unwrap();
    let count: u64 = std::env::var(COUNT_ENV).unwrap().parse().unwrap();
    let wal = Wal::open(&dir, writer_options()).unwrap();
    let start = wal.last_lsn().unwrap_or(Lsn::ZERO).0;
    std::thread::scope(|s| {
        for writer in 0..3u64 {
            let wal = &wal;
            s.spawn(move || {
                for i in 0.. {
                    if count > 0 && wal.last_lsn().unwrap_or(Lsn::ZERO).0 >= start + count {
                        break;
                    }
                    let payload = format!("gen{generation}-w{writer}-{i}-{}", "x".repeat((i % 50) as usize));
                    let lsn = wal.append(payload.as_bytes()).unwrap();
                    println!("{lsn}");
                    if i % 64 == 0 {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                }
            });
        }
    });
    wal.close().unwrap();
    println!("closed");
}

/// This module's path inside the test binary, for `--exact`.
fn test_path(name: &str) -> String {
    let module = module_path!().split_once("::").map_or("", |(_crate, path)| path);
    format!("{module}::{name}")
}

fn spawn_writer(dir: &Path, generation: u64, count: u64) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args([&test_path("follow_writer_child"), "--exact", "--nocapture", "--test-threads=1"])
        .env(WRITER_ENV, dir)
        .env(GENERATION_ENV, generation.to_string())
        .env(COUNT_ENV, count.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

/// Lines of a child's stdout, read on a thread of their own.
fn lines_of(child: &mut Child) -> Receiver<String> {
    let (send, receive) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if send.send(line).is_err() {
                break;
            }
        }
    });
    receive
}

/// The highest LSN among the writer's acknowledgements received so far.
fn acknowledged(lines: &Receiver<String>, highest: &mut u64) {
    for line in lines.try_iter() {
        if let Ok(lsn) = line.trim().parse::<u64>() {
            *highest = (*highest).max(lsn);
        }
    }
}

/// The follower's output so far, as LSN → (every payload printed for it).
fn printed(lines: &Receiver<String>, into: &mut BTreeMap<u64, Vec<String>>) {
    for line in lines.try_iter() {
        let value: serde_json::Value = serde_json::from_str(&line).expect("one JSON object a line");
        let lsn = value["lsn"].as_u64().unwrap();
        let text = value["text"].as_str().expect("the payloads are text").to_owned();
        assert_eq!(value["len"].as_u64(), Some(text.len() as u64));
        into.entry(lsn).or_default().push(text);
    }
}

fn wait_until(limit: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < limit, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn follow_prints_each_record_once_across_a_killed_and_restarted_writer_and_exits_0_on_sigint() {
    if std::env::var(WRITER_ENV).is_ok() {
        return; // a child runs only its own test
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    // The log exists before the follower starts (an empty one: the writer
    // opens it once and closes it).
    Wal::open(&dir, writer_options()).unwrap().close().unwrap();
    let mut follower = Command::new(env!("CARGO_BIN_EXE_walden"))
        .args(["follow", dir.to_str().unwrap(), "--json", "--poll-ms", "2"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let follower_lines = lines_of(&mut follower);
    let mut seen = BTreeMap::new();

    // A writer appends until it is SIGKILLed mid-stream.
    let mut writer = spawn_writer(&dir, 1, 0);
    let writer_lines = lines_of(&mut writer);
    let mut highest = 0;
    wait_until(Duration::from_secs(60), "the writer acknowledged 3000 records", || {
        acknowledged(&writer_lines, &mut highest);
        highest >= 3000
    });
    wait_until(Duration::from_secs(60), "the follower printed 1000 records", || {
        printed(&follower_lines, &mut seen);
        seen.len() >= 1000
    });
    writer.kill().unwrap(); // SIGKILL
    writer.wait().unwrap();
    std::thread::sleep(Duration::from_millis(50));
    acknowledged(&writer_lines, &mut highest);

    // Restarted: recovery cuts what the kill tore; it appends 2000 more and closes.
    let mut writer = spawn_writer(&dir, 2, 2000);
    let writer_lines = lines_of(&mut writer);
    assert!(writer.wait().unwrap().success(), "the restarted writer finished");
    let restarted: Vec<String> = writer_lines.iter().collect(); // to its end of file
    assert!(restarted.iter().any(|line| line == "closed"), "the restarted writer closed the log");

    let wal = Wal::open(&dir, writer_options()).unwrap();
    let log: Vec<(u64, String)> = wal
        .read_from(Lsn::FIRST)
        .unwrap()
        .map(|r| r.unwrap())
        .map(|r| (r.lsn.0, String::from_utf8(r.payload).unwrap()))
        .collect();
    let last = log.last().unwrap().0;
    drop(wal);
    assert!(last >= highest + 2000, "every acknowledged record survived the kill");
    wait_until(Duration::from_secs(60), "the follower printed the whole log", || {
        printed(&follower_lines, &mut seen);
        seen.keys().last() == Some(&last)
    });

    // SIGINT: the follower stops cleanly.
    let status = Command::new("kill").args(["-INT", &follower.id().to_string()]).status().unwrap();
    assert!(status.success());
    let exit = follower.wait().unwrap();
    let stderr = std::io::read_to_string(follower.stderr.take().unwrap()).unwrap();
    assert_eq!(exit.code(), Some(0), "SIGINT ends the follow with exit code 0; stderr: {stderr}");
    printed(&follower_lines, &mut seen);

    // Each record of the log printed exactly once, with the bytes the log holds.
    for (lsn, payloads) in &seen {
        assert_eq!(payloads.len(), 1, "LSN {lsn} printed {} times", payloads.len());
    }
    let printed_log: Vec<(u64, String)> = seen.into_iter().map(|(lsn, mut p)| (lsn, p.remove(0))).collect();
    assert_eq!(printed_log.len(), log.len(), "no gap, nothing extra");
    assert!(printed_log == log, "the follower printed exactly the log's records, in order");
    // Nothing printed was replaced: a process crash loses no written byte.
    assert!(!stderr.contains("other bytes"), "{stderr}");
    let generations: Vec<bool> = ["gen1-", "gen2-"].iter().map(|g| log.iter().any(|(_, p)| p.starts_with(g))).collect();
    assert_eq!(generations, [true, true], "records of both writers were followed");
}

#[test]
fn follow_below_the_oldest_kept_lsn_fails_and_names_it() {
    if std::env::var(WRITER_ENV).is_ok() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let wal = Wal::open(&dir, WalOptions { segment_bytes: 4096, ..writer_options() }).unwrap();
    for i in 0..300u32 {
        wal.append(format!("record {i}").as_bytes()).unwrap();
    }
    wal.truncate_before(Lsn(200)).unwrap();
    let oldest = wal.first_lsn();
    wal.close().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_walden"))
        .args(["follow", dir.to_str().unwrap(), "--from", "5"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "a usage error");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&format!("oldest LSN it holds is {oldest}")), "{stderr}");
}
