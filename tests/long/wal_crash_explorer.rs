//! Power loss at every I/O boundary of a scripted workload.
//!
//! A persistent EIO armed at the Nth I/O call freezes the simulated disk at
//! exactly that boundary: the call and everything after it fail without
//! effect. The frozen disk is then "powered off" three ways (unsynced data
//! dropped, kept, or torn per sector) and recovered, and the oracle checks:
//! recovery succeeds; the records are a gap-free prefix of what was
//! submitted, byte for byte; every append the mode promised durable is
//! there; batches are whole; recovering again gives the same log. Recovery
//! itself is then crashed at each of its own I/O calls and recovered again.
//!
//! `WALDEN_CRASH_SEEDS=n` widens the torn-crash seeds per point (default 2).

use crate::common::{self, *};
use std::time::Duration;
use walden::io::{CrashMode, Fault, FaultKind, SimFs};
use walden::{FsyncMode, Lsn, Wal, WalOptions};

fn options(fsync: FsyncMode) -> WalOptions {
    WalOptions {
        fsync,
        segment_bytes: 4096,
        // Deterministic I/O order: no timer-driven flushes during the script.
        flush_interval: Duration::from_secs(3600),
        ..Default::default()
    }
}

/// What the script submitted and what the engine promised.
#[derive(Default)]
struct Oracle {
    /// Every payload handed to the log, in submission (= LSN) order, with
    /// the id of the batch it belongs to.
    submitted: Vec<(Vec<u8>, u32)>,
    /// Every LSN up to here must survive power loss.
    durable: Lsn,
    /// Every LSN up to here must survive a process crash (acknowledged).
    acknowledged: Lsn,
}

impl Oracle {
    fn submit(&mut self, payloads: &[Vec<u8>], batch: u32) {
        self.submitted.extend(payloads.iter().map(|p| (p.clone(), batch)));
    }

    fn check(&self, records: &[(Lsn, Vec<u8>)], crash: CrashMode, context: &str) {
        let first = records.first().map_or(1, |r| r.0 .0);
        for (lsn, payload) in records {
            let index = lsn.0 as usize - 1;
            assert!(index < self.submitted.len(), "{context}: LSN {lsn} was never submitted (invented)");
            assert_eq!(payload, &self.submitted[index].0, "{context}: LSN {lsn} has the wrong bytes");
        }
        let last = records.last().map_or(Lsn(first - 1), |r| r.0);
        let required = match crash {
            CrashMode::KeepUnsynced => self.acknowledged.max(self.durable),
            _ => self.durable,
        };
        assert!(last >= required, "{context}: {crash:?} lost LSN {} (recovered up to {last})", required);
        if let (Some(&(_, batch)), true) = (self.submitted.get(last.0 as usize), last.0 > 0) {
            let (_, last_batch) = self.submitted[last.0 as usize - 1];
            assert_ne!(batch, last_batch, "{context}: a batch came back in part (up to LSN {last})");
        }
    }
}

/// The scripted workload: appends, batches, pipelined appends, syncs,
/// roll-overs, truncation, close and reopen. Stops at the first error.
fn script(fs: &SimFs, fsync: FsyncMode, oracle: &mut Oracle) {
    let mut wal = match Wal::open_with(fs.clone(), sim_dir(), options(fsync)) {
        Ok(wal) => wal,
        Err(_) => return,
    };
    let mut batch_id = 0u32;
    for step in 0u64..60 {
        batch_id += 1;
        let lsn_before = oracle.submitted.len() as u64;
        let ok = match step % 6 {
            0 | 1 => {
                let p = payload(step);
                oracle.submit(std::slice::from_ref(&p), batch_id);
                wal.append(&p).is_ok()
            }
            2 => {
                let batch: Vec<Vec<u8>> = (0..1 + step % 5).map(|i| payload(step * 10 + i)).collect();
                oracle.submit(&batch, batch_id);
                wal.append_batch(&batch).is_ok()
            }
            3 => {
                let payloads: Vec<Vec<u8>> = (0..3).map(|i| payload(step * 100 + i)).collect();
                let mut tickets = Vec::new();
                let mut ok = true;
                for p in &payloads {
                    oracle.submit(std::slice::from_ref(p), batch_id);
                    batch_id += 1;
                    match wal.append_pipelined(p) {
                        Ok(t) => tickets.push(t),
                        Err(_) => {
                            oracle.submitted.pop();
                            ok = false;
                            break;
                        }
                    }
                }
                ok && tickets.into_iter().all(|t| t.wait().is_ok())
            }
            4 => wal.sync().is_ok(),
            _ => {
                if step % 12 == 5 {
                    let first = wal.first_lsn();
                    wal.truncate_before(Lsn(first.0 + 20)).is_ok()
                } else if step % 18 == 11 {
                    let acknowledged = Lsn(oracle.submitted.len() as u64);
                    if wal.close().is_err() {
                        return;
                    }
                    oracle.durable = oracle.durable.max(acknowledged);
                    match Wal::open_with(fs.clone(), sim_dir(), options(fsync)) {
                        Ok(w) => {
                            wal = w;
                            true
                        }
                        Err(_) => return,
                    }
                } else {
                    true
                }
            }
        };
        if !ok {
            return;
        }
        let submitted = Lsn(oracle.submitted.len() as u64);
        if submitted.0 > lsn_before {
            oracle.acknowledged = submitted;
        }
        if fsync == FsyncMode::Always {
            assert!(wal.durable_lsn() >= oracle.acknowledged, "Always acknowledged an unsynced append");
        }
        oracle.durable = oracle.durable.max(wal.durable_lsn());
    }
    if wal.close().is_ok() {
        oracle.durable = Lsn(oracle.submitted.len() as u64);
    }
}

/// Opens the crashed disk, reads it all, and checks it against the oracle.
fn recover_and_check(disk: &SimFs, oracle: &Oracle, crash: CrashMode, context: &str) -> Vec<(Lsn, Vec<u8>)> {
    let wal = Wal::open_with(disk.clone(), sim_dir(), options(FsyncMode::Never))
        .unwrap_or_else(|e| panic!("{context}: {crash:?}: recovery failed: {e}"));
    let records = read_all(&wal);
    oracle.check(&records, crash, context);
    drop(wal);
    records
}

fn explore(fsync: FsyncMode) -> u64 {
    // A fault-free run counts the I/O calls of the whole script.
    let fs = SimFs::new();
    script(&fs, fsync, &mut Oracle::default());
    let total_calls = fs.calls();
    let mut explored = 0;
    for at_call in 1..=total_calls + 1 {
        let fs = SimFs::new();
        fs.inject(Fault { at_call, kind: FaultKind::Eio, persistent: true, only: None });
        let mut oracle = Oracle::default();
        script(&fs, fsync, &mut oracle);
        fs.clear_fault();
        for crash in common::crash_modes(at_call, 2) {
            let context = format!("{fsync:?}, power lost at I/O call {at_call} of {total_calls}");
            let disk = fs.crash(crash);
            let first = recover_and_check(&disk, &oracle, crash, &context);
            let again = recover_and_check(&disk, &oracle, CrashMode::DropUnsynced, &format!("{context}, 2nd recovery"));
            assert_eq!(first, again, "{context}: recovering twice gives the same log");
            explored += 1;
        }
        // Crash the recovery itself at each of its I/O calls (on a torn disk).
        let torn = fs.crash(CrashMode::Tear { seed: at_call });
        let probe = torn.crash(CrashMode::KeepUnsynced);
        drop(Wal::open_with(probe.clone(), sim_dir(), options(FsyncMode::Never)));
        for recovery_call in 1..=probe.calls() {
            let disk = torn.crash(CrashMode::KeepUnsynced);
            disk.inject(Fault { at_call: recovery_call, kind: FaultKind::Eio, persistent: true, only: None });
            drop(Wal::open_with(disk.clone(), sim_dir(), options(FsyncMode::Never)));
            disk.clear_fault();
            let after = disk.crash(CrashMode::Tear { seed: recovery_call });
            let context = format!("{fsync:?}, power lost at call {at_call}, then in recovery at call {recovery_call}");
            recover_and_check(&after, &oracle, CrashMode::Tear { seed: recovery_call }, &context);
            explored += 1;
        }
    }
    explored
}

#[test]
fn power_loss_at_every_io_boundary_in_always_mode() {
    let explored = explore(FsyncMode::Always);
    assert!(explored > 500, "only {explored} crash points");
    eprintln!("Always: {explored} crash points explored");
}

#[test]
fn power_loss_at_every_io_boundary_in_never_mode() {
    let explored = explore(FsyncMode::Never);
    assert!(explored > 500, "only {explored} crash points");
    eprintln!("Never: {explored} crash points explored");
}

#[test]
fn power_loss_at_every_io_boundary_in_periodic_mode() {
    // The timer makes the I/O order vary from run to run; the oracle holds
    // whatever the order.
    let explored = explore(FsyncMode::Periodic { interval: Duration::from_millis(1) });
    assert!(explored > 500, "only {explored} crash points");
    eprintln!("Periodic: {explored} crash points explored");
}
