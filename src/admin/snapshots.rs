//! Every snapshot of a data directory checked (header, content checksum,
//! zstd framing) and placed against the log: whether recovery could start
//! from it, and which one it would start from.

use super::log::LogReport;
use super::{Finding, Progress, Severity};
use crate::engine::StateMachine;
use crate::io::Vfs;
use crate::snapshot::{self, OriginCheck, SnapshotInfo};
use crate::{Lsn, Result};
use std::io;
use std::path::{Path, PathBuf};

/// Whether a snapshot reads.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[cfg_attr(feature = "serde", serde(tag = "state", rename_all = "snake_case"))]
#[non_exhaustive]
pub enum SnapshotState {
    /// The checksum holds and the content decompresses to `raw_bytes`.
    Good {
        /// The state's size in bytes, decompressed.
        raw_bytes: u64,
    },
    /// The file cannot be used, and why.
    Bad {
        /// What is wrong with it.
        reason: String,
    },
}

/// One snapshot file.
#[derive(Clone, Debug)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct SnapshotReport {
    /// The snapshot file.
    pub path: PathBuf,
    /// The LSN it covers; from the name if the header does not read.
    pub lsn: Lsn,
    /// When it was written, in microseconds since the Unix epoch (from the
    /// header, if it reads).
    pub created_unix_us: Option<u64>,
    /// Entries the state machine wrote (from the header, if it reads).
    pub entries: Option<u64>,
    /// The file's length in bytes, if the header reads.
    pub file_bytes: Option<u64>,
    /// Whether it reads.
    pub state: SnapshotState,
    /// Why recovery could not start from it even though it reads (it covers
    /// more than the log holds, or the log no longer continues it).
    pub unusable: Option<String>,
    /// Why it is not a snapshot of this log at all: taken from another
    /// store's log or another history of this one, or under a name that
    /// disagrees with its header. The open moves such a file aside.
    pub refused: Option<String>,
    /// Why it cannot be checked in full against the log (a format-1 file,
    /// or the log no longer holds the record at its LSN); it is used anyway.
    pub unchecked: Option<String>,
    /// Decompressed bytes per stored byte.
    pub compression_ratio: Option<f64>,
    #[cfg_attr(feature = "serde", serde(skip))]
    pub(crate) info: Option<SnapshotInfo>,
}

impl SnapshotReport {
    /// Whether the snapshot reads (it may still be unusable: see `unusable`).
    pub fn is_good(&self) -> bool {
        matches!(self.state, SnapshotState::Good { .. })
    }

    /// Whether recovery could start from it: it reads, belongs to this log
    /// and the log continues it.
    pub fn is_usable(&self) -> bool {
        self.is_good() && self.unusable.is_none() && self.refused.is_none()
    }
}

/// The snapshots of a data directory, oldest first.
#[derive(Clone, Debug, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct SnapshotsReport {
    /// The snapshot directory (`None` for a bare log, which has none).
    pub dir: Option<PathBuf>,
    /// Every file with a snapshot's name, oldest first.
    pub snapshots: Vec<SnapshotReport>,
    /// Leftover `.zst.tmp` files of interrupted snapshots.
    pub temporary: Vec<PathBuf>,
    /// The snapshot recovery would start from: the newest that reads and
    /// that the log continues.
    pub newest_usable: Option<Lsn>,
}

/// Checks every snapshot in `dir` against `log`, of which LSNs
/// `log_first..=log_last` are readable: its checksums, its name, and its
/// origin ([`snapshot::check_origin`]). Reads each file in full; writes nothing.
pub fn scan_snapshots<V: Vfs>(
    fs: &V,
    dir: &Path,
    log: &LogReport,
    log_first: Lsn,
    log_last: Lsn,
    progress: &mut dyn Progress,
) -> Result<SnapshotsReport> {
    let mut report = SnapshotsReport { dir: Some(dir.to_owned()), ..Default::default() };
    if super::sorted_names(fs, dir)?.is_empty() {
        return Ok(report);
    }
    let listing = snapshot::list_snapshots(fs, dir)?;
    report.temporary = snapshot::temporary_files(fs, dir)?;
    report.temporary.sort();
    progress.begin("checking snapshots", listing.snapshots.iter().map(|s| s.file_bytes).sum());
    for (path, e) in listing.unreadable {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        let lsn = snapshot::parse_snapshot_file_name(name).unwrap_or_default();
        report.snapshots.push(SnapshotReport {
            path,
            lsn,
            created_unix_us: None,
            entries: None,
            file_bytes: None,
            state: SnapshotState::Bad { reason: e.to_string() },
            unusable: None,
            refused: None,
            unchecked: None,
            compression_ratio: None,
            info: None,
        });
    }
    for info in listing.snapshots {
        let h = info.header;
        let counted = snapshot::read_snapshot(fs, &info, |r| io::copy(r, &mut io::sink()));
        progress.advance(info.file_bytes);
        let (state, ratio) = match counted {
            Ok(raw) => (SnapshotState::Good { raw_bytes: raw }, Some(raw as f64 / h.content_bytes.max(1) as f64)),
            Err(e) => (SnapshotState::Bad { reason: e.to_string() }, None),
        };
        let unusable = unusable(h.lsn, log_first, log_last);
        let origin = match (snapshot::check_name(&info), log.log_id) {
            (Some(why), _) => OriginCheck::Refused(why),
            (None, None) => OriginCheck::Continues, // no log to check against
            (None, Some(log_id)) => {
                let seal = match snapshot::wants_seal(&h) {
                    Some(lsn) => log.record_seal(fs, lsn)?,
                    None => None,
                };
                snapshot::check_origin(&h, log_id, seal)
            }
        };
        let (refused, unchecked) = match origin {
            OriginCheck::Continues => (None, None),
            OriginCheck::Unchecked(why) => (None, Some(why)),
            OriginCheck::Refused(why) => (Some(why), None),
        };
        report.snapshots.push(SnapshotReport {
            path: info.path.clone(),
            lsn: h.lsn,
            created_unix_us: Some(h.created_unix_us),
            entries: Some(h.entries),
            file_bytes: Some(info.file_bytes),
            state,
            unusable,
            refused,
            unchecked,
            compression_ratio: ratio,
            info: Some(info),
        });
    }
    progress.end();
    report.snapshots.sort_by(|a, b| (a.lsn, &a.path).cmp(&(b.lsn, &b.path)));
    report.newest_usable = report.snapshots.iter().rev().find(|s| s.is_usable()).map(|s| s.lsn);
    Ok(report)
}

/// The engine's rule (`Core::load_snapshot`), with its words.
pub(crate) fn unusable(lsn: Lsn, log_first: Lsn, log_last: Lsn) -> Option<String> {
    if lsn > log_last {
        Some(format!("it covers LSN {lsn} but the log ends at {log_last}"))
    } else if lsn.next() < log_first {
        Some(format!("the log no longer holds LSN {} (it starts at {log_first})", lsn.next()))
    } else {
        None
    }
}

impl SnapshotsReport {
    /// The problems worth reporting, given that the log starts at
    /// `log_first`: bad or unusable snapshots (recoverable if the open
    /// would try them, notices if older than the one it starts from),
    /// leftover temporary files, and no usable base at all (corrupt).
    pub fn findings(&self, log_first: Lsn) -> Vec<Finding> {
        let mut out = Vec::new();
        let has_base = self.newest_usable.is_some() || log_first <= Lsn::FIRST;
        for s in &self.snapshots {
            let newer_than_base = self.newest_usable.is_none_or(|base| s.lsn > base);
            if let Some(why) = &s.refused {
                // Never a notice: a file that does not belong here is always
                // worth the operator's attention, whatever its LSN.
                let what = format!("snapshot refused at open (moved aside): {why}");
                out.push(Finding {
                    severity: Severity::Recoverable,
                    file: s.path.clone(),
                    offset: None,
                    lsn: Some(s.lsn),
                    what,
                });
                continue;
            }
            if let (Some(why), true) = (&s.unchecked, s.is_good()) {
                let what = format!("snapshot not checked against the log: {why}");
                out.push(Finding {
                    severity: Severity::Notice,
                    file: s.path.clone(),
                    offset: None,
                    lsn: Some(s.lsn),
                    what,
                });
            }
            let (severity, what) = match (&s.state, &s.unusable) {
                (SnapshotState::Bad { reason }, _) if newer_than_base => {
                    (Severity::Recoverable, format!("bad snapshot, skipped at open: {reason}"))
                }
                (SnapshotState::Bad { reason }, _) => (Severity::Notice, format!("bad older snapshot: {reason}")),
                (SnapshotState::Good { .. }, Some(why)) if s.lsn.next() >= log_first => {
                    (Severity::Recoverable, format!("snapshot skipped at open: {why}"))
                }
                (SnapshotState::Good { .. }, Some(why)) => {
                    (Severity::Notice, format!("snapshot no longer usable: {why}"))
                }
                (SnapshotState::Good { .. }, None) => continue,
            };
            out.push(Finding { severity, file: s.path.clone(), offset: None, lsn: Some(s.lsn), what });
        }
        for t in &self.temporary {
            out.push(Finding {
                severity: Severity::Notice,
                file: t.clone(),
                offset: None,
                lsn: None,
                what: "a temporary file of an interrupted snapshot (never read as one; the next open removes it)"
                    .into(),
            });
        }
        if !has_base {
            out.push(Finding {
                severity: Severity::Corrupt,
                file: self.dir.clone().unwrap_or_default(),
                offset: None,
                lsn: Some(log_first),
                what: format!("no usable snapshot, and the log starts at LSN {log_first}: the state before it is gone"),
            });
        }
        out
    }
}

/// Reads a snapshot's state (after its checksum holds).
pub fn read_snapshot_state<S: StateMachine, V: Vfs>(fs: &V, report: &SnapshotReport) -> Result<S> {
    match &report.info {
        Some(info) => snapshot::read_snapshot(fs, info, |r| S::read_snapshot(r)),
        None => Err(crate::Error::BadSnapshot {
            file: report.path.clone(),
            reason: match &report.state {
                SnapshotState::Bad { reason } => reason.clone(),
                SnapshotState::Good { .. } => "header not read".into(),
            },
        }),
    }
}
