//! Opening an existing log: scan every segment, classify what is found at
//! the end of each, and act on it as the [`RecoveryMode`] says.
//!
//! | found                                              | TolerateTornTail | PointInTime | AbsoluteConsistency |
//! |----------------------------------------------------|------------------|-------------|---------------------|
//! | zeros after the last record                        | clean end        | clean end   | clean end           |
//! | torn bytes / torn batch at the end of the last segment, no later record proves them durable | cut | cut | error |
//! | damage that a later record proves was durable      | error            | cut         | error               |
//! | damage or garbage in a sealed segment, LSN gap, foreign or damaged segment header | error | cut | error |
//! | a valid record of a kind or version this build does not know | error | error | error |
//!
//! "cut" never deletes: bytes are copied into a quarantine file beside the
//! segment (synced) before they are zeroed in place, and whole segments after
//! the cut are renamed aside.
//!
//! [`recover_cutting_from`] is the same recovery with one more row, for
//! `walden repair --cut-from`: the record at an LSN the operator names is
//! cut like damage in `PointInTime` mode, everything before it must read
//! as in `AbsoluteConsistency`.

use super::segment::{
    durability_proof, now_unix_us, parse_segment_file_name, scan_segment, Scan, Segment, Stop, QUARANTINE_INFIX,
    TEMP_SUFFIX,
};
use super::RecoveryMode;
use crate::error::Corruption;
use crate::format::{RecordDecodeError, SegmentHeader, SegmentHeaderError, SEGMENT_HEADER_BYTES};
use crate::io::{Vfs, VfsFile};
use crate::{Error, Lsn, Result};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// What opening the log found and did.
#[derive(Clone, Debug, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct WalRecoveryReport {
    /// Segments kept.
    pub segments: usize,
    /// Records found in the kept segments.
    pub records: u64,
    /// The first LSN of the first kept segment (0 when the directory held
    /// no segment: a new log).
    pub first_lsn: Lsn,
    /// The last LSN kept: `first_lsn - 1` when the kept segments hold no
    /// record, 0 for a new log.
    pub last_lsn: Lsn,
    /// Bytes of segment files read.
    pub bytes_scanned: u64,
    /// Everything moved aside.
    pub cuts: Vec<Cut>,
}

impl WalRecoveryReport {
    /// Bytes moved out of the log into quarantine files.
    pub fn bytes_cut(&self) -> u64 {
        self.cuts.iter().map(|c| c.bytes).sum()
    }
}

/// Bytes recovery moved out of the log, and where they are now.
#[derive(Clone, Debug)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct Cut {
    /// The segment they came from.
    pub file: PathBuf,
    /// Their offset in it (0 for a whole segment moved aside).
    pub offset: u64,
    /// How many bytes.
    pub bytes: u64,
    /// The first LSN that was lost with them.
    pub lsn: Lsn,
    /// The file that now holds them.
    pub quarantine: PathBuf,
    /// Why recovery cut them (the damage it found).
    pub reason: String,
}

/// The log as recovery leaves it, ready for the writer.
pub(crate) struct Recovered<F> {
    pub log_id: u64,
    /// Kept segments in LSN order; the last one is active (`sealed: None`).
    pub segments: Vec<Segment<F>>,
    /// Where the next record goes in the active segment.
    pub active_end: u64,
    pub last_lsn: Lsn,
    pub report: WalRecoveryReport,
}

/// What the scan of one segment concluded.
pub(crate) enum Verdict {
    Clean,
    /// Damage that only a crash could have caused: cut in tolerant modes.
    TornTail(Corruption),
    /// Damage a crash cannot explain.
    Corrupt(Corruption),
}

/// Recovers the log in `dir`, or returns `None` if it holds no segment.
pub(crate) fn recover<V: Vfs>(fs: &V, dir: &Path, mode: RecoveryMode) -> Result<Option<Recovered<V::File>>> {
    recover_with(fs, dir, mode, None)
}

/// Where the operator asks a repair to cut the log: every record from
/// `from` on, none of them damaged.
#[derive(Clone, Copy, Debug)]
pub(crate) struct OperatorCut<'a> {
    /// The first LSN that leaves the log; it must start a batch.
    pub from: Lsn,
    /// Why, as the cuts will say.
    pub reason: &'a str,
}

/// A cut inside one segment: its bytes from `offset` (the record at `lsn`
/// on), `tail`, go to quarantine, and the segment is kept sealed at `keep`
/// (its end offset and last LSN).
struct TailCut {
    offset: u64,
    lsn: Lsn,
    keep: (u64, Lsn),
    reason: String,
    tail: Vec<u8>,
}

/// Recovers the log in `dir` and cuts it before `cut.from`, the way
/// `PointInTime` cuts the first damage: the rest of that segment is copied
/// into a synced quarantine file and zeroed, later segments are renamed
/// aside whole. Damage before `cut.from` is refused (as in
/// `AbsoluteConsistency`), and so is an LSN the log does not hold or one
/// inside a batch. Returns what was cut.
pub(crate) fn recover_cutting_from<V: Vfs>(fs: &V, dir: &Path, cut: OperatorCut<'_>) -> Result<WalRecoveryReport> {
    let recovered = recover_with(fs, dir, RecoveryMode::AbsoluteConsistency, Some(cut))?;
    let report = recovered.map(|r| r.report).unwrap_or_default();
    if report.cuts.first().map(|c| c.lsn) != Some(cut.from) {
        return Err(Error::InvalidArgument(format!(
            "the log holds no record at LSN {} (it holds LSN {}..={}); nothing was cut",
            cut.from, report.first_lsn, report.last_lsn
        )));
    }
    Ok(report)
}

fn recover_with<V: Vfs>(
    fs: &V,
    dir: &Path,
    mode: RecoveryMode,
    operator_cut: Option<OperatorCut<'_>>,
) -> Result<Option<Recovered<V::File>>> {
    let mut names = Vec::new();
    for name in fs.list_dir(dir).map_err(Error::io("list", dir))? {
        if name.ends_with(TEMP_SUFFIX) {
            // A spare that was never published holds no records.
            let path = dir.join(&name);
            fs.remove_file(&path).map_err(Error::io("remove", &path))?;
        } else if let Some(lsn) = parse_segment_file_name(&name) {
            names.push((lsn, dir.join(name)));
        }
    }
    names.sort();
    if names.is_empty() {
        return Ok(None);
    }
    // The names listed may be visible yet not durable: a crash or a failed
    // directory fsync between a segment's rename and its directory fsync
    // leaves it so. New appends are about to be acknowledged on top of
    // them, so they become durable first.
    fs.sync_dir(dir).map_err(Error::io("fsync directory", dir))?;

    let mut report = WalRecoveryReport::default();
    let mut kept: Vec<Segment<V::File>> = Vec::new();
    let mut log_id = None;
    let mut active_end = SEGMENT_HEADER_BYTES as u64;
    let count = names.len();
    for (index, (name_lsn, path)) in names.iter().enumerate() {
        let is_last = index + 1 == count;
        let expected = kept.last().map_or(*name_lsn, |s| s.sealed.map_or(*name_lsn, |(_, last)| last.next()));
        let file = fs.open(path, true).map_err(Error::io("open", path))?;
        if is_last {
            // Read the last segment from the device, not the page cache: a
            // process that saw an fsync fail may have left pages the kernel
            // marked clean without writing them. Syncing first makes every
            // truly dirty page durable; evicting then drops the rest. (Sealed
            // segments were synced whole before their successor existed.)
            file.sync_and_evict_cache().map_err(Error::io("fsync and evict", path))?;
        }
        let len = file.size_bytes().map_err(Error::io("stat", path))?;
        let map = file.map(len).map_err(Error::io("map", path))?;
        report.bytes_scanned += len;

        let header = match check_header(&map, *name_lsn, expected, log_id) {
            Ok(header) => header,
            Err(HeaderProblem::Unsupported(reason)) => return Err(Error::Unsupported { file: path.clone(), reason }),
            Err(HeaderProblem::Corrupt(kind)) => {
                if mode != RecoveryMode::PointInTime || kept.is_empty() {
                    return Err(Error::Corrupt { file: path.clone(), offset: 0, lsn: expected, kind });
                }
                drop(map);
                move_aside_from(fs, dir, &names[index..], expected, &kind.to_string(), &mut report)?;
                break;
            }
        };
        log_id = Some(header.log_id);
        let cut_lsn = operator_cut.map(|c| c.from);
        // With an operator's cut: where its record starts, and whether a
        // batch is open there (records are contiguous from the header).
        let (mut at, mut in_batch, mut cut_at) = (SEGMENT_HEADER_BYTES as u64, false, None);
        let scan = scan_segment(&map, &header, |record, _| {
            if Some(record.lsn) == cut_lsn {
                cut_at = Some((at, in_batch));
            }
            at += record.frame_len() as u64;
            in_batch = record.batch_continues();
        });
        report.records += scan.records;
        if scan.end > len {
            // The file ends inside the last record's padding, which the
            // checksum does not cover. Restore the zeros, so every kept byte
            // up to `end` exists and can be mapped.
            let missing = vec![0u8; (scan.end - len) as usize];
            file.write_all_at(&missing, len).map_err(Error::io("pad", path))?;
            file.sync_data().map_err(Error::io("fsync", path))?;
        }
        let verdict = classify(&map, &header, &scan, is_last);
        let (torn, kind) = match verdict {
            Verdict::Clean => (false, None),
            Verdict::TornTail(kind) => (true, Some(kind)),
            Verdict::Corrupt(kind) => (false, Some(kind)),
        };
        if let Some(kind @ Corruption::Record(RecordDecodeError::Unsupported { .. })) = &kind {
            return Err(Error::Unsupported {
                file: path.clone(),
                reason: format!("offset {}: {kind}; written by a newer walden?", scan.stop_offset),
            });
        }
        // The operator's cut, or damage the mode allows cutting; what it
        // moves to quarantine runs to the segment's last non-zero byte.
        let tail_from = |offset: u64| map[offset as usize..last_nonzero_end(&map)].to_vec();
        let cut = match (operator_cut, cut_at, kind) {
            (Some(cut), Some((offset, in_batch)), _) => {
                if in_batch {
                    return Err(Error::InvalidArgument(format!(
                        "LSN {} is inside a batch: a batch is kept or cut whole",
                        cut.from
                    )));
                }
                report.records -= scan.last_lsn.0 + 1 - cut.from.0;
                let keep = (offset, Lsn(cut.from.0 - 1));
                Some(TailCut { offset, lsn: cut.from, keep, reason: cut.reason.to_owned(), tail: tail_from(offset) })
            }
            (_, _, Some(kind)) => {
                let cut_allowed = match mode {
                    RecoveryMode::TolerateTornTail => torn,
                    RecoveryMode::PointInTime => true,
                    RecoveryMode::AbsoluteConsistency => false,
                };
                if !cut_allowed {
                    return Err(Error::Corrupt {
                        file: path.clone(),
                        offset: scan.stop_offset,
                        lsn: scan.stop_lsn,
                        kind,
                    });
                }
                let (offset, keep) = (scan.stop_offset, (scan.end, scan.last_lsn));
                Some(TailCut { offset, lsn: scan.stop_lsn, keep, reason: kind.to_string(), tail: tail_from(offset) })
            }
            _ => None,
        };
        drop(map);
        if let Some(c) = &cut {
            let done = quarantine_tail(fs, dir, path, &file, c.offset, c.lsn, &c.tail, &c.reason)?;
            log::warn!(
                "recovery cut {} bytes at {}:{} into {} ({})",
                done.bytes,
                path.display(),
                done.offset,
                done.quarantine.display(),
                c.reason
            );
            report.cuts.push(done);
        }
        let (end, last_lsn) = cut.as_ref().map_or((scan.end, scan.last_lsn), |c| c.keep);
        kept.push(Segment { header, path: path.clone(), file: Arc::new(file), sealed: Some((end, last_lsn)) });
        active_end = end;
        if let Some(c) = cut {
            if !is_last {
                move_aside_from(fs, dir, &names[index + 1..], last_lsn.next(), &c.reason, &mut report)?;
            }
            break;
        }
    }

    let active = kept.last_mut().expect("at least one segment is kept");
    let (end, last_lsn) = active.sealed.take().expect("kept segments are sealed until here");
    debug_assert_eq!(end, active_end);
    // What was read came from the device after a sync, or was written and
    // synced by this recovery: all of it is durable, so new records may
    // carry `last_lsn` as their durable watermark. This sync covers a
    // previous segment that point-in-time recovery made active again.
    active.file.sync_data().map_err(Error::io("fsync", &active.path))?;
    report.segments = kept.len();
    report.first_lsn = kept[0].header.first_lsn;
    report.last_lsn = last_lsn;
    Ok(Some(Recovered { log_id: log_id.expect("a header was read"), segments: kept, active_end, last_lsn, report }))
}

pub(crate) enum HeaderProblem {
    Unsupported(String),
    Corrupt(Corruption),
}

pub(crate) fn check_header(
    bytes: &[u8],
    name_lsn: Lsn,
    expected: Lsn,
    log_id: Option<u64>,
) -> Result<SegmentHeader, HeaderProblem> {
    let header = SegmentHeader::decode(bytes).map_err(|e| match e {
        SegmentHeaderError::UnsupportedVersion(_) => HeaderProblem::Unsupported(e.to_string()),
        _ => HeaderProblem::Corrupt(Corruption::SegmentHeader(e)),
    })?;
    if let Some(expected_id) = log_id {
        if header.log_id != expected_id {
            return Err(HeaderProblem::Corrupt(Corruption::ForeignSegment {
                expected: expected_id,
                found: header.log_id,
            }));
        }
    }
    if header.first_lsn != name_lsn || header.first_lsn != expected {
        return Err(HeaderProblem::Corrupt(Corruption::LsnMismatch { expected, found: header.first_lsn }));
    }
    Ok(header)
}

pub(crate) fn classify(bytes: &[u8], header: &SegmentHeader, scan: &Scan, is_last: bool) -> Verdict {
    // A record from a newer walden is refused wherever it is, a batch
    // included: cutting it would destroy data this build cannot read.
    if let Stop::Bad(e @ RecordDecodeError::Unsupported { .. }) = scan.stop {
        return Verdict::Corrupt(Corruption::Record(e));
    }
    let clean_stop = matches!(
        scan.stop,
        Stop::End | Stop::Bad(RecordDecodeError::Zeroed) | Stop::Bad(RecordDecodeError::Truncated { .. })
    );
    if clean_stop && !scan.torn_batch && scan.rest_is_zero {
        return Verdict::Clean;
    }
    let kind = match scan.stop {
        _ if scan.torn_batch => Corruption::TornBatch,
        Stop::WrongLsn(found) => Corruption::LsnMismatch { expected: scan.stop_lsn, found },
        Stop::Bad(e) => Corruption::Record(e),
        // Not reached (a scan ending at the last byte with no open batch is
        // clean), but disk bytes never get to choose a panic.
        Stop::End => Corruption::TornTail,
    };
    if !is_last {
        return Verdict::Corrupt(if clean_stop { Corruption::SealedTail } else { kind });
    }
    match durability_proof(bytes, header, scan.stop_offset, scan.stop_lsn) {
        Some(proof) => Verdict::Corrupt(Corruption::DurableRecordDamaged { proof }),
        None => Verdict::TornTail(kind),
    }
}

/// One past the last non-zero byte.
pub(crate) fn last_nonzero_end(bytes: &[u8]) -> usize {
    bytes.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1)
}

fn quarantine_path<V: Vfs>(fs: &V, dir: &Path, file: &Path, offset: u64) -> Result<PathBuf> {
    let name = file.file_name().and_then(|n| n.to_str()).unwrap_or("segment");
    let existing = fs.list_dir(dir).map_err(Error::io("list", dir))?;
    let stamp = now_unix_us();
    let mut n = 0;
    loop {
        let candidate = format!("{name}{QUARANTINE_INFIX}-{offset}-{stamp}-{n}");
        if !existing.contains(&candidate) {
            return Ok(dir.join(candidate));
        }
        n += 1;
    }
}

/// Copies `tail` (the bytes of `file` from `offset`) into a synced quarantine
/// file, then zeroes them in the segment and syncs it.
#[allow(clippy::too_many_arguments)]
fn quarantine_tail<V: Vfs>(
    fs: &V,
    dir: &Path,
    path: &Path,
    file: &V::File,
    offset: u64,
    lsn: Lsn,
    tail: &[u8],
    reason: &str,
) -> Result<Cut> {
    let quarantine = quarantine_path(fs, dir, path, offset)?;
    let q = fs.create_new(&quarantine).map_err(Error::io("create", &quarantine))?;
    q.write_all_at(tail, 0).map_err(Error::io("write", &quarantine))?;
    q.sync_data().map_err(Error::io("fsync", &quarantine))?;
    fs.sync_dir(dir).map_err(Error::io("fsync directory", dir))?;
    file.write_all_at(&vec![0u8; tail.len()], offset).map_err(Error::io("zero", path))?;
    file.sync_data().map_err(Error::io("fsync", path))?;
    Ok(Cut { file: path.to_owned(), offset, bytes: tail.len() as u64, lsn, quarantine, reason: reason.to_owned() })
}

/// Renames whole segments aside, so nothing after a cut stays in the log.
fn move_aside_from<V: Vfs>(
    fs: &V,
    dir: &Path,
    segments: &[(Lsn, PathBuf)],
    lsn: Lsn,
    reason: &str,
    report: &mut WalRecoveryReport,
) -> Result<()> {
    for (_, path) in segments {
        let file = fs.open(path, false).map_err(Error::io("open", path))?;
        let bytes = file.size_bytes().map_err(Error::io("stat", path))?;
        let quarantine = quarantine_path(fs, dir, path, 0)?;
        fs.rename(path, &quarantine).map_err(Error::io("rename", path))?;
        report.cuts.push(Cut { file: path.clone(), offset: 0, bytes, lsn, quarantine, reason: reason.to_owned() });
    }
    fs.sync_dir(dir).map_err(Error::io("fsync directory", dir))
}
