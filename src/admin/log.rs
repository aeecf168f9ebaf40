//! The read-only scan of a log: every segment's header, every record's
//! checksum, LSN continuity across segments, and how each segment ends
//! ([`SegmentEnd`]), judged by the same code recovery uses (`classify`,
//! `check_header`). [`LogReport::plan`] then says what opening the log in a
//! [`RecoveryMode`] would do, without doing it.

use super::store_view::store_timestamp;
use super::{read_file, sorted_names, Finding, Progress, Severity};
use crate::error::Corruption;
use crate::format::{RecordDecodeError, SegmentHeader, SEGMENT_HEADER_BYTES};
use crate::io::Vfs;
use crate::snapshot::{RecordSeal, SnapshotOrigin};
use crate::wal::recovery::{check_header, classify, last_nonzero_end, HeaderProblem, Verdict};
use crate::wal::segment::{find_record_seal, scan_segment, QUARANTINE_INFIX, TEMP_SUFFIX};
use crate::wal::{parse_segment_file_name, RecoveryMode};
use crate::{Lsn, Result};
use std::path::{Path, PathBuf};

/// How a segment ends, as recovery would judge it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[cfg_attr(feature = "serde", serde(tag = "state", rename_all = "snake_case"))]
#[non_exhaustive]
pub enum SegmentEnd {
    /// The records end at a batch boundary, followed only by zeros.
    Clean,
    /// Damage at the end of the last segment that a crash explains:
    /// opening cuts `bytes` bytes from `offset` into quarantine.
    TornTail {
        /// Where the damage starts.
        offset: u64,
        /// The LSN expected there.
        lsn: Lsn,
        /// Bytes from `offset` to the last non-zero byte of the file.
        bytes: u64,
        /// What the damage is.
        what: String,
    },
    /// Damage a crash cannot explain: in a sealed segment, or proven durable.
    Corrupt {
        /// Where the damage starts.
        offset: u64,
        /// The LSN expected there.
        lsn: Lsn,
        /// Bytes from `offset` to the last non-zero byte of the file.
        bytes: u64,
        /// What the damage is.
        what: String,
    },
    /// The header is damaged, foreign, or does not continue the LSNs.
    BadHeader {
        /// The LSN the segment should start at.
        lsn: Lsn,
        /// What is wrong with the header.
        what: String,
    },
    /// A valid record or header of a newer format: refused, never cut.
    Unsupported {
        /// Where it is (0 for the header).
        offset: u64,
        /// What this build does not know.
        what: String,
    },
}

impl SegmentEnd {
    /// Whether the segment ends cleanly.
    pub fn is_clean(&self) -> bool {
        matches!(self, SegmentEnd::Clean)
    }
}

/// One segment file as the scan found it.
#[derive(Clone, Debug)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct SegmentReport {
    /// The segment file.
    pub path: PathBuf,
    /// The first LSN, from the name (the header agrees unless `end` says not).
    pub first_lsn: Lsn,
    /// The last LSN of the accepted records (`first_lsn - 1` if none).
    pub last_lsn: Lsn,
    /// Records accepted: those of complete batches before any damage.
    pub records: u64,
    /// Payload bytes of the accepted records.
    pub payload_bytes: u64,
    /// The whole file, preallocated zeros included.
    pub file_bytes: u64,
    /// The offset just past the last accepted record.
    pub end_offset: u64,
    /// From the header, if it reads.
    pub created_unix_us: Option<u64>,
    /// The last segment is the active one; the others are sealed.
    pub active: bool,
    /// How it ends, as recovery would judge it.
    pub end: SegmentEnd,
    /// The timestamp of the first accepted record that is a store operation.
    pub first_timestamp_us: Option<u64>,
    /// The timestamp of the last one.
    pub last_timestamp_us: Option<u64>,
    #[cfg_attr(feature = "serde", serde(skip))]
    pub(crate) header: Option<SegmentHeader>,
    /// One past the file's last non-zero byte: where a cut's quarantined
    /// bytes end.
    #[cfg_attr(feature = "serde", serde(skip))]
    pub(crate) nonzero_end: u64,
}

/// Everything in a log directory.
#[derive(Clone, Debug)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct LogReport {
    /// The log's directory.
    pub dir: PathBuf,
    /// The log id of the first segment whose header reads.
    pub log_id: Option<u64>,
    /// Segment files in LSN order.
    pub segments: Vec<SegmentReport>,
    /// Unpublished `.wal.tmp` spares (they never hold records).
    pub spares: Vec<PathBuf>,
    /// Files holding bytes an earlier recovery or repair moved aside.
    pub quarantine: Vec<PathBuf>,
    /// Bytes of segment files read.
    pub bytes_scanned: u64,
}

/// Bytes that opening (or a repair) would move into quarantine.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct PlannedCut {
    /// The segment file.
    pub file: PathBuf,
    /// 0 and `whole_segment` for a segment renamed aside.
    pub offset: u64,
    /// How many bytes go.
    pub bytes: u64,
    /// The first LSN that leaves the log with them.
    pub lsn: Lsn,
    /// The whole segment is renamed aside (it follows the damage).
    pub whole_segment: bool,
    /// The damage that makes the cut.
    pub reason: String,
}

/// Why opening would refuse, and where.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct Refusal {
    /// The segment file.
    pub file: PathBuf,
    /// Where in it the damage is.
    pub offset: u64,
    /// The LSN expected there.
    pub lsn: Lsn,
    /// What the damage is.
    pub what: String,
}

/// What opening the log in `mode` would do.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct RecoveryPlan {
    /// The mode planned for.
    pub mode: RecoveryMode,
    /// What would be moved into quarantine, in LSN order.
    pub cuts: Vec<PlannedCut>,
    /// Set if the open would fail; then nothing would be cut.
    pub refused: Option<Refusal>,
    /// Segments kept (those before the refusal, if refused).
    pub kept_segments: usize,
    /// Records the kept segments hold.
    pub records: u64,
    /// The first LSN kept (1 for an empty log).
    pub first_lsn: Lsn,
    /// The last LSN kept (`first_lsn - 1` for an empty log).
    pub last_lsn: Lsn,
}

impl RecoveryPlan {
    /// Bytes the cuts move into quarantine, in all.
    pub fn bytes_cut(&self) -> u64 {
        self.cuts.iter().map(|c| c.bytes).sum()
    }
}

/// Scans every segment in `dir`, read-only, and judges how each ends.
pub fn scan_log<V: Vfs>(fs: &V, dir: &Path, progress: &mut dyn Progress) -> Result<LogReport> {
    let mut report = LogReport {
        dir: dir.to_owned(),
        log_id: None,
        segments: Vec::new(),
        spares: Vec::new(),
        quarantine: Vec::new(),
        bytes_scanned: 0,
    };
    let mut names = Vec::new();
    for name in sorted_names(fs, dir)? {
        if name.ends_with(TEMP_SUFFIX) {
            report.spares.push(dir.join(&name));
        } else if name.contains(QUARANTINE_INFIX) {
            report.quarantine.push(dir.join(&name));
        } else if let Some(lsn) = parse_segment_file_name(&name) {
            names.push((lsn, dir.join(name)));
        }
    }
    names.sort();
    let total = names.iter().map(|(_, p)| file_len(fs, p)).sum();
    progress.begin("scanning the log", total);
    let count = names.len();
    for (index, (name_lsn, path)) in names.into_iter().enumerate() {
        let bytes = read_file(fs, &path)?;
        report.bytes_scanned += bytes.len() as u64;
        progress.advance(bytes.len() as u64);
        // Continuity is checked only after a clean predecessor: after damage
        // the missing LSNs are in the damaged part, reported there.
        let expected = match report.segments.last() {
            Some(prev) if prev.end.is_clean() && prev.header.is_some() => prev.last_lsn.next(),
            _ => name_lsn,
        };
        let segment = scan_one(&bytes, path, name_lsn, expected, report.log_id, index + 1 == count);
        if report.log_id.is_none() {
            report.log_id = segment.header.map(|h| h.log_id);
        }
        report.segments.push(segment);
    }
    progress.end();
    Ok(report)
}

fn file_len<V: Vfs>(fs: &V, path: &Path) -> u64 {
    use crate::io::VfsFile;
    fs.open(path, false).and_then(|f| f.size_bytes()).unwrap_or(0)
}

fn scan_one(
    bytes: &[u8],
    path: PathBuf,
    name_lsn: Lsn,
    expected: Lsn,
    log_id: Option<u64>,
    is_last: bool,
) -> SegmentReport {
    let mut segment = SegmentReport {
        path,
        first_lsn: name_lsn,
        last_lsn: Lsn(name_lsn.0.saturating_sub(1)),
        records: 0,
        payload_bytes: 0,
        file_bytes: bytes.len() as u64,
        end_offset: SEGMENT_HEADER_BYTES as u64,
        created_unix_us: None,
        active: is_last,
        end: SegmentEnd::Clean,
        first_timestamp_us: None,
        last_timestamp_us: None,
        header: None,
        nonzero_end: last_nonzero_end(bytes) as u64,
    };
    let header = match check_header(bytes, name_lsn, expected, log_id) {
        Ok(header) => header,
        Err(HeaderProblem::Unsupported(what)) => {
            segment.end = SegmentEnd::Unsupported { offset: 0, what };
            return segment;
        }
        Err(HeaderProblem::Corrupt(kind)) => {
            segment.end = SegmentEnd::BadHeader { lsn: expected, what: kind.to_string() };
            segment.created_unix_us = SegmentHeader::decode(bytes).ok().map(|h| h.created_unix_us);
            return segment;
        }
    };
    segment.created_unix_us = Some(header.created_unix_us);
    segment.header = Some(header);
    let (mut payload_bytes, mut first_ts, mut last_ts) = (0u64, None, None);
    let scan = scan_segment(bytes, &header, |_, payload| {
        payload_bytes += payload.len() as u64;
        if let Some(ts) = store_timestamp(payload) {
            first_ts.get_or_insert(ts);
            last_ts = Some(ts);
        }
    });
    segment.last_lsn = scan.last_lsn;
    segment.records = scan.records;
    segment.payload_bytes = payload_bytes;
    segment.end_offset = scan.end;
    segment.first_timestamp_us = first_ts;
    segment.last_timestamp_us = last_ts;
    let tail_bytes = segment.nonzero_end.saturating_sub(scan.stop_offset);
    segment.end = match classify(bytes, &header, &scan, is_last) {
        Verdict::Clean => SegmentEnd::Clean,
        Verdict::Corrupt(kind @ Corruption::Record(RecordDecodeError::Unsupported { .. })) => {
            SegmentEnd::Unsupported { offset: scan.stop_offset, what: format!("{kind}; written by a newer walden?") }
        }
        Verdict::TornTail(kind) => SegmentEnd::TornTail {
            offset: scan.stop_offset,
            lsn: scan.stop_lsn,
            bytes: tail_bytes,
            what: kind.to_string(),
        },
        Verdict::Corrupt(kind) => SegmentEnd::Corrupt {
            offset: scan.stop_offset,
            lsn: scan.stop_lsn,
            bytes: tail_bytes,
            what: kind.to_string(),
        },
    };
    segment
}

impl LogReport {
    /// The seal of the record at `lsn` (its segment's salt and stored CRC),
    /// read again from its segment; `None` if the scan accepted no record
    /// at `lsn`.
    pub fn record_seal<V: Vfs>(&self, fs: &V, lsn: Lsn) -> Result<Option<RecordSeal>> {
        let holder = self.segments.iter().find(|s| s.first_lsn <= lsn && lsn <= s.last_lsn);
        let Some((segment, header)) = holder.and_then(|s| s.header.map(|h| (s, h))) else {
            return Ok(None);
        };
        let bytes = read_file(fs, &segment.path)?;
        let end = (segment.end_offset as usize).min(bytes.len());
        Ok(find_record_seal(&bytes[..end], &header, lsn))
    }

    /// The origin a snapshot of this log at `lsn` records.
    pub fn origin_at<V: Vfs>(&self, fs: &V, lsn: Lsn) -> Result<SnapshotOrigin> {
        let log_id = self.log_id.ok_or_else(|| {
            crate::Error::InvalidArgument(format!(
                "{}: no segment header reads, so the log has no id",
                self.dir.display()
            ))
        })?;
        Ok(SnapshotOrigin { log_id, seal: self.record_seal(fs, lsn)? })
    }

    /// What opening the log in `mode` would do: recovery's decision table
    /// (src/wal/recovery.rs) applied to this scan, stopping at the first
    /// anomaly as recovery does.
    pub fn plan(&self, mode: RecoveryMode) -> RecoveryPlan {
        let first_lsn = self.segments.first().map_or(Lsn::FIRST, |s| s.first_lsn);
        let mut plan = RecoveryPlan {
            mode,
            cuts: Vec::new(),
            refused: None,
            kept_segments: 0,
            records: 0,
            first_lsn,
            last_lsn: Lsn(first_lsn.0 - 1),
        };
        for (index, s) in self.segments.iter().enumerate() {
            let refuse = |offset, lsn, what: &str| Refusal { file: s.path.clone(), offset, lsn, what: what.to_owned() };
            let (cut_here, offset, lsn, bytes, what) = match &s.end {
                SegmentEnd::Clean => {
                    plan.kept_segments += 1;
                    plan.records += s.records;
                    plan.last_lsn = s.last_lsn;
                    continue;
                }
                SegmentEnd::Unsupported { offset, what } => {
                    plan.refused = Some(refuse(*offset, s.last_lsn.next(), what));
                    return plan;
                }
                SegmentEnd::BadHeader { lsn, what } => {
                    if mode != RecoveryMode::PointInTime || index == 0 {
                        plan.refused = Some(refuse(0, *lsn, what));
                    } else {
                        self.move_aside(&mut plan, index, *lsn, what);
                    }
                    return plan;
                }
                SegmentEnd::TornTail { offset, lsn, bytes, what } => {
                    (mode != RecoveryMode::AbsoluteConsistency, *offset, *lsn, *bytes, what)
                }
                SegmentEnd::Corrupt { offset, lsn, bytes, what } => {
                    (mode == RecoveryMode::PointInTime, *offset, *lsn, *bytes, what)
                }
            };
            if !cut_here {
                plan.refused = Some(refuse(offset, lsn, what));
                return plan;
            }
            plan.kept_segments += 1;
            plan.records += s.records;
            plan.last_lsn = s.last_lsn;
            plan.cuts.push(PlannedCut {
                file: s.path.clone(),
                offset,
                bytes,
                lsn,
                whole_segment: false,
                reason: what.clone(),
            });
            self.move_aside(&mut plan, index + 1, s.last_lsn.next(), what);
            return plan;
        }
        plan
    }

    /// Plans renaming segments `from..` aside whole, the first LSN lost being `lsn`.
    pub(crate) fn move_aside(&self, plan: &mut RecoveryPlan, from: usize, lsn: Lsn, why: &str) {
        for s in &self.segments[from..] {
            plan.cuts.push(PlannedCut {
                file: s.path.clone(),
                offset: 0,
                bytes: s.file_bytes,
                lsn,
                whole_segment: true,
                reason: why.to_owned(),
            });
        }
    }

    /// Every problem the scan found, in LSN order.
    pub fn findings(&self) -> Vec<Finding> {
        let mut out = Vec::new();
        for s in &self.segments {
            let (severity, offset, lsn, what) = match &s.end {
                SegmentEnd::Clean => continue,
                SegmentEnd::TornTail { offset, lsn, bytes, what } => (
                    Severity::Recoverable,
                    *offset,
                    Some(*lsn),
                    format!("torn tail: {what}; opening cuts {bytes} bytes into a quarantine file"),
                ),
                SegmentEnd::Corrupt { offset, lsn, what, .. } => {
                    let place = if s.active { "in the last segment" } else { "in a sealed segment" };
                    (Severity::Corrupt, *offset, Some(*lsn), format!("corruption {place}: {what}"))
                }
                SegmentEnd::BadHeader { lsn, what } => {
                    (Severity::Corrupt, 0, Some(*lsn), format!("bad segment header: {what}"))
                }
                SegmentEnd::Unsupported { offset, what } => (Severity::Corrupt, *offset, None, what.clone()),
            };
            out.push(Finding { severity, file: s.path.clone(), offset: Some(offset), lsn, what });
        }
        for spare in &self.spares {
            out.push(Finding {
                severity: Severity::Notice,
                file: spare.clone(),
                offset: None,
                lsn: None,
                what: "an unpublished spare segment (holds no records; the next open removes it)".into(),
            });
        }
        for q in &self.quarantine {
            out.push(Finding {
                severity: Severity::Notice,
                file: q.clone(),
                offset: None,
                lsn: None,
                what: "bytes an earlier recovery or repair moved out of the log".into(),
            });
        }
        if self.segments.is_empty() {
            out.push(Finding {
                severity: Severity::Notice,
                file: self.dir.clone(),
                offset: None,
                lsn: None,
                what: "no segment files: the log is empty (opening creates its first segment)".into(),
            });
        }
        out
    }
}
