//! [`examine`]: the log and the snapshots of a data directory checked
//! together, with one verdict. `inspect`, `verify` and `stats` are views of
//! one examination.

use super::log::{scan_log, LogReport, RecoveryPlan};
use super::snapshots::{scan_snapshots, SnapshotsReport};
use super::{DataDir, Finding, Progress, Severity};
use crate::io::Vfs;
use crate::wal::RecoveryMode;
use crate::{Lsn, Result};

/// The one-word verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
#[non_exhaustive]
pub enum Health {
    /// Nothing to fix (notices aside).
    Healthy,
    /// Opening repairs it by itself without losing acknowledged data.
    Recoverable,
    /// The default open refuses, or would lose the state.
    Damaged,
}

/// Throughput-relevant counters of a log.
#[derive(Clone, Debug, Default, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct LogStats {
    /// Segment files.
    pub segments: usize,
    /// Records accepted by the scan.
    pub records: u64,
    /// Their payload bytes.
    pub payload_bytes: u64,
    /// Framed record bytes (headers and padding included).
    pub record_bytes: u64,
    /// Segment file bytes, preallocated space included.
    pub file_bytes: u64,
    /// `payload_bytes / records` (0 without records).
    pub average_payload_bytes: f64,
    /// The store-operation timestamp of the first record that has one.
    pub first_timestamp_us: Option<u64>,
    /// The store-operation timestamp of the last record that has one.
    pub last_timestamp_us: Option<u64>,
    /// Records per second over that span.
    pub records_per_second: Option<f64>,
}

/// A data directory, examined.
#[derive(Clone, Debug)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct Examination {
    /// The directory examined.
    pub dir: DataDir,
    /// The one-word verdict.
    pub health: Health,
    /// One line saying what is wrong, or that nothing is.
    pub verdict: String,
    /// The scan of the log.
    pub log: LogReport,
    /// Every snapshot, checked and placed against the log.
    pub snapshots: SnapshotsReport,
    /// What the default open (`TolerateTornTail`) would do.
    pub open_plan: RecoveryPlan,
    /// The oldest state a recovery or a point-in-time view can reach, as
    /// the LSN it ends at: 0 (the empty state) when the log starts at LSN
    /// 1, else the oldest usable snapshot's.
    pub recoverable_from_lsn: Lsn,
    /// The newest: the end of the log the default open keeps or, if it
    /// refuses, the end a salvage keeps.
    pub recoverable_to_lsn: Lsn,
    /// The options the directory was last opened with: walden does not
    /// record them, so this is always `None` today.
    pub options_recorded: Option<String>,
    /// Every problem and notice, the worst first.
    pub findings: Vec<Finding>,
    /// The log's counters.
    pub stats: LogStats,
}

/// Examines a data directory: every record checksum, LSN continuity, every
/// snapshot checksum, and the chain between them. Writes nothing.
pub fn examine<V: Vfs>(fs: &V, dir: &DataDir, progress: &mut dyn Progress) -> Result<Examination> {
    let log = scan_log(fs, &dir.log_dir, progress)?;
    let open_plan = log.plan(RecoveryMode::TolerateTornTail);
    let salvage = log.plan(RecoveryMode::PointInTime);
    let snapshots = match &dir.snapshot_dir {
        Some(sd) => scan_snapshots(fs, sd, &log, salvage.first_lsn, salvage.last_lsn, progress)?,
        None => SnapshotsReport::default(),
    };
    let mut findings = log.findings();
    if dir.snapshot_dir.is_some() {
        findings.extend(snapshots.findings(open_plan.first_lsn));
    }
    findings.sort_by_key(|f| std::cmp::Reverse(f.severity));
    let worst = findings.iter().map(|f| f.severity).max();
    let health = match worst {
        Some(Severity::Corrupt) => Health::Damaged,
        Some(Severity::Recoverable) => Health::Recoverable,
        _ => Health::Healthy,
    };
    let oldest_usable = snapshots.snapshots.iter().find(|s| s.is_usable()).map(|s| s.lsn);
    let recoverable_from_lsn = match (oldest_usable, open_plan.first_lsn) {
        (_, Lsn::FIRST) => Lsn::ZERO,
        (Some(lsn), _) => lsn,
        (None, first) => Lsn(first.0 - 1),
    };
    let verdict = verdict(health, &findings, &open_plan, &snapshots);
    let stats = stats(&log);
    Ok(Examination {
        dir: dir.clone(),
        health,
        verdict,
        recoverable_from_lsn,
        recoverable_to_lsn: if open_plan.refused.is_none() { open_plan.last_lsn } else { salvage.last_lsn },
        log,
        snapshots,
        open_plan,
        options_recorded: None,
        findings,
        stats,
    })
}

fn verdict(health: Health, findings: &[Finding], plan: &RecoveryPlan, snapshots: &SnapshotsReport) -> String {
    let range = if plan.last_lsn < plan.first_lsn {
        "an empty log".to_owned()
    } else {
        format!("LSNs {}..={} in {} segments", plan.first_lsn, plan.last_lsn, plan.kept_segments)
    };
    match health {
        Health::Healthy => {
            let snaps = match snapshots.newest_usable {
                Some(lsn) => format!(", recovery starts from the snapshot at LSN {lsn}"),
                None => String::new(),
            };
            format!("healthy: {range}{snaps}")
        }
        Health::Recoverable => {
            let first = &findings[0];
            format!("recoverable: {}: {}", first.file.display(), first.what)
        }
        Health::Damaged => {
            let first = &findings[0];
            let place = match (first.offset, first.lsn) {
                (Some(o), Some(l)) => format!(" at offset {o} (LSN {l})"),
                (None, Some(l)) => format!(" (LSN {l})"),
                _ => String::new(),
            };
            format!("damaged: {}{place}: {}; the default open refuses", first.file.display(), first.what)
        }
    }
}

fn stats(log: &LogReport) -> LogStats {
    let mut s = LogStats { segments: log.segments.len(), ..Default::default() };
    for seg in &log.segments {
        s.records += seg.records;
        s.payload_bytes += seg.payload_bytes;
        s.record_bytes += seg.end_offset.saturating_sub(crate::format::SEGMENT_HEADER_BYTES as u64);
        s.file_bytes += seg.file_bytes;
        if s.first_timestamp_us.is_none() {
            s.first_timestamp_us = seg.first_timestamp_us;
        }
        if seg.last_timestamp_us.is_some() {
            s.last_timestamp_us = seg.last_timestamp_us;
        }
    }
    if s.records > 0 {
        s.average_payload_bytes = s.payload_bytes as f64 / s.records as f64;
    }
    if let (Some(a), Some(b)) = (s.first_timestamp_us, s.last_timestamp_us) {
        if b > a {
            s.records_per_second = Some(s.records as f64 / ((b - a) as f64 / 1e6));
        }
    }
    s
}
