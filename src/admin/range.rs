//! Walking the accepted records of a scanned log, read-only, shared by
//! every command that reads records: [`walk_records`] from an LSN on, and
//! [`walk_range`] between two [`Target`]s (an LSN or a time) with a limit.
//! Each record comes as a [`LogRecordView`]: its LSN, its place and its
//! bytes.
//!
//! Time bounds use the timestamp a record's payload carries, which only
//! the caller can decode (a store operation, a journal entry); a record
//! without one never starts a `from` time range and never ends a `to` one.
//!
//! **Invariant:** this module knows the log's format and nothing above it:
//! it decodes no payload. It reads with pread (never a map) and never
//! writes.

use super::log::{LogReport, SegmentReport};
use super::{read_file, Progress};
use crate::error::Corruption;
use crate::format::{decode_record, RecordHeader, SEGMENT_HEADER_BYTES};
use crate::io::Vfs;
use crate::{Error, Lsn, Result};
use std::ops::ControlFlow;
use std::path::Path;

/// A point in the log: an LSN, or a wall-clock time in microseconds since
/// the Unix epoch (matched against the timestamps the records carry).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
#[non_exhaustive]
pub enum Target {
    /// The record with this LSN.
    Lsn(Lsn),
    /// Microseconds since the Unix epoch.
    Time(u64),
}

/// One record, where it lives, and its bytes.
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub struct LogRecordView<'a> {
    /// The record's LSN.
    pub lsn: Lsn,
    /// The segment file it is in.
    pub file: &'a Path,
    /// The byte offset of its header in `file`.
    pub offset: u64,
    /// Its decoded header.
    pub header: RecordHeader,
    /// Its payload (checksum verified).
    pub payload: &'a [u8],
    /// The whole frame on disk: header, payload and padding.
    pub frame: &'a [u8],
}

/// Which records to dump. Either bound may be an LSN or a time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DumpOptions {
    /// The first record: this LSN, or the first whose time is at or after
    /// this time. `None`: from the log's first record.
    pub from: Option<Target>,
    /// The last record: this LSN, or the last before the first whose time
    /// is after this time. `None`: to the log's last record.
    pub to: Option<Target>,
    /// Stop after this many records.
    pub limit: Option<u64>,
}

/// Calls `visit` for every accepted record of `segments` from LSN `from`
/// on, in LSN order, until it breaks. Segments after damage are read too
/// (their accepted records are real records; the caller knows the gaps from
/// the scan). Reads with pread; never writes.
pub(crate) fn walk_records<V: Vfs>(
    fs: &V,
    segments: &[SegmentReport],
    from: Lsn,
    progress: &mut dyn Progress,
    mut visit: impl FnMut(LogRecordView<'_>) -> Result<ControlFlow<()>>,
) -> Result<()> {
    let wanted: Vec<&SegmentReport> =
        segments.iter().filter(|s| s.header.is_some() && s.records > 0 && s.last_lsn >= from).collect();
    progress.begin("reading records", wanted.iter().map(|s| s.end_offset).sum());
    for segment in wanted {
        let header = segment.header.expect("filtered above");
        let bytes = read_file(fs, &segment.path)?;
        let end = (segment.end_offset as usize).min(bytes.len());
        let seed = header.seed();
        let mut offset = SEGMENT_HEADER_BYTES;
        let mut expected = segment.first_lsn;
        while offset < end && expected <= segment.last_lsn {
            let corrupt =
                |kind| Error::Corrupt { file: segment.path.clone(), offset: offset as u64, lsn: expected, kind };
            // The scan accepted these bytes; a failure now means the file
            // changed since (a live process cut it, say).
            let record = decode_record(&bytes[offset..], seed).map_err(|e| corrupt(Corruption::Record(e)))?;
            if record.header.lsn != expected {
                return Err(corrupt(Corruption::LsnMismatch { expected, found: record.header.lsn }));
            }
            let frame_end = (offset + record.header.frame_len()).min(bytes.len());
            if expected >= from {
                let view = LogRecordView {
                    lsn: expected,
                    file: &segment.path,
                    offset: offset as u64,
                    header: record.header,
                    payload: record.payload,
                    frame: &bytes[offset..frame_end],
                };
                if visit(view)?.is_break() {
                    progress.end();
                    return Ok(());
                }
            }
            offset += record.header.frame_len();
            expected = expected.next();
        }
        progress.advance(segment.end_offset);
    }
    progress.end();
    Ok(())
}

/// Walks the records of the range `options` selects, in LSN order: from
/// `--from` (an LSN, or the first record whose time is at or after it) to
/// `--to` (an LSN, or the first record whose time is after it), at most
/// `--limit` visited. `decode` reads a record's payload once, into what
/// `visit` needs and the record's time if it has one; `visit` says whether
/// it emitted the record (only those count to the limit). Returns how many
/// were emitted.
pub(crate) fn walk_range<V: Vfs, T>(
    fs: &V,
    log: &LogReport,
    options: &DumpOptions,
    progress: &mut dyn Progress,
    mut decode: impl FnMut(&[u8]) -> (T, Option<u64>),
    mut visit: impl FnMut(LogRecordView<'_>, T) -> Result<bool>,
) -> Result<u64> {
    let start = match options.from {
        Some(Target::Lsn(lsn)) => lsn,
        _ => Lsn::FIRST,
    };
    let mut started = !matches!(options.from, Some(Target::Time(_)));
    let mut emitted = 0u64;
    walk_records(fs, &log.segments, start, progress, |record| {
        if options.limit.is_some_and(|limit| emitted >= limit) {
            return Ok(ControlFlow::Break(()));
        }
        let (decoded, ts) = decode(record.payload);
        if let Some(Target::Time(from)) = options.from {
            started = started || ts.is_some_and(|ts| ts >= from);
        }
        match options.to {
            Some(Target::Lsn(to)) if record.lsn > to => return Ok(ControlFlow::Break(())),
            Some(Target::Time(to)) if ts.is_some_and(|ts| ts > to) => return Ok(ControlFlow::Break(())),
            _ => {}
        }
        if started && visit(record, decoded)? {
            emitted += 1;
        }
        Ok(ControlFlow::Continue(()))
    })?;
    Ok(emitted)
}
