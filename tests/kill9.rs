//! Real process kills. A child process (this test binary, re-executed)
//! appends to a log on real files in `Always` mode and prints each LSN as
//! soon as its append is acknowledged; the parent SIGKILLs it at a random
//! moment, recovers the log, and checks that every acknowledged LSN is
//! there with its exact bytes and that the log is a gap-free prefix. Then
//! the next child continues the same log. `WALDEN_KILL9_CYCLES` sets the
//! number of cycles (default 12).

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use walden::{FsyncMode, Lsn, Wal, WalOptions};

const CHILD_ENV: &str = "WALDEN_KILL9_CHILD_DIR";

fn options() -> WalOptions {
    // Small segments, so kills also land in roll-overs.
    WalOptions { fsync: FsyncMode::Always, segment_bytes: 64 * 1024, ..Default::default() }
}

/// The child: append forever, reporting every acknowledged LSN.
fn child(dir: &Path) -> ! {
    use std::io::Write;
    let wal = Wal::open(dir, options()).expect("child: open");
    let mut next = wal.last_lsn().map_or(1, |l| l.0 + 1);
    let stdout = std::io::stdout();
    loop {
        let lsn = if next.is_multiple_of(5) {
            let batch = [common::payload(next), common::payload(next + 1)];
            wal.append_batch(&batch).expect("child: append batch").end.0 - 1
        } else {
            wal.append(&common::payload(next)).expect("child: append").0
        };
        let mut out = stdout.lock();
        writeln!(out, "{lsn}").expect("child: report");
        out.flush().expect("child: flush");
        next = lsn + 1;
    }
}

/// A small deterministic generator for the kill delays.
fn delays(seed: u64) -> impl Iterator<Item = Duration> {
    let mut x = seed | 1;
    std::iter::from_fn(move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        Some(Duration::from_millis(5 + x % 150))
    })
}

#[test]
fn sigkill_never_loses_an_acknowledged_append() {
    if let Ok(dir) = std::env::var(CHILD_ENV) {
        child(Path::new(&dir));
    }
    let cycles: usize = std::env::var("WALDEN_KILL9_CYCLES").ok().and_then(|s| s.parse().ok()).unwrap_or(12);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let exe = std::env::current_exe().unwrap();
    let mut acknowledged = Lsn(0);
    let mut killed_mid_run = 0;
    for (cycle, delay) in delays(0x5eed).take(cycles).enumerate() {
        let mut child = Command::new(&exe)
            .args(["sigkill_never_loses_an_acknowledged_append", "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, &dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let start = Instant::now();
        let mut acked_this_cycle = 0;
        // Read acknowledgements until the delay is up (at least one, so the
        // child is really appending), then kill without warning.
        while start.elapsed() < delay || acked_this_cycle == 0 {
            match lines.next() {
                Some(Ok(line)) => {
                    if let Ok(lsn) = line.trim().parse::<u64>() {
                        acknowledged = acknowledged.max(Lsn(lsn));
                        acked_this_cycle += 1;
                    }
                }
                _ => panic!("cycle {cycle}: the child stopped by itself"),
            }
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        // Acknowledgements already in the pipe were made before the kill.
        for line in lines.map_while(Result::ok) {
            if let Ok(lsn) = line.trim().parse::<u64>() {
                acknowledged = acknowledged.max(Lsn(lsn));
            }
        }
        killed_mid_run += 1;

        let wal = Wal::open(&dir, options()).unwrap_or_else(|e| panic!("cycle {cycle}: recovery failed: {e}"));
        let records = common::read_all(&wal);
        let last = records.last().map_or(Lsn(0), |r| r.0);
        assert!(last >= acknowledged, "cycle {cycle}: acknowledged LSN {acknowledged} lost (recovered up to {last})");
        for (lsn, payload) in &records {
            assert_eq!(payload, &common::payload(lsn.0), "cycle {cycle}: LSN {lsn} has the wrong bytes");
        }
        wal.close().unwrap();
    }
    assert_eq!(killed_mid_run, cycles);
    assert!(acknowledged.0 > cycles as u64, "the children appended ({acknowledged})");
}
