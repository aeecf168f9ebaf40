//! Reading records back out of a scanned log, read-only: [`dump`] walks the
//! accepted records of every segment in a range by LSN or by time, and
//! hands each one, with its place and its raw frame, to the caller.
//!
//! Time bounds use the timestamp of the store's operations (the log format
//! itself has no clock): a record that is not a store operation never
//! starts a `from` time range and never ends a `to` one.

use super::log::{LogReport, SegmentReport};
use super::{read_file, Progress};
use crate::error::Corruption;
use crate::format::{decode_record, RecordHeader, SEGMENT_HEADER_BYTES};
use crate::io::Vfs;
use crate::store::codec::{decode_op, Op};
use crate::{Error, Lsn, Result};
use std::ops::ControlFlow;
use std::path::Path;

/// One record, where it lives, and its bytes.
#[derive(Clone, Copy, Debug)]
pub struct LogRecordView<'a> {
    pub lsn: Lsn,
    pub file: &'a Path,
    pub offset: u64,
    pub header: RecordHeader,
    pub payload: &'a [u8],
    /// The whole frame on disk: header, payload and padding.
    pub frame: &'a [u8],
}

/// Which records to dump. Either bound may be an LSN or a time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DumpOptions {
    pub from: Option<super::recover::Target>,
    pub to: Option<super::recover::Target>,
    /// Stop after this many records.
    pub limit: Option<u64>,
}

/// A store operation decoded for people and tools. Keys and values that
/// are UTF-8 are shown as text, others as hex (`*_hex`).
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct StoreOpView {
    pub op: &'static str,
    pub timestamp_us: u64,
    pub writer: String,
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub key: Option<String>,
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub key_hex: Option<String>,
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub value: Option<String>,
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub value_hex: Option<String>,
}

/// The store operation a payload holds, if it holds one.
pub fn store_op(payload: &[u8]) -> Option<StoreOpView> {
    let op = decode_op(payload).ok()?;
    let (name, key, value, writer, timestamp_us) = match op {
        Op::Put { key, value, writer, timestamp_us } => ("put", key, Some(value), writer, timestamp_us),
        Op::Delete { key, writer, timestamp_us } => ("delete", key, None, writer, timestamp_us),
    };
    let (key, key_hex) = text_or_hex(key);
    let (value, value_hex) = value.map_or((None, None), text_or_hex);
    Some(StoreOpView { op: name, timestamp_us, writer: writer.to_owned(), key, key_hex, value, value_hex })
}

fn text_or_hex(bytes: &[u8]) -> (Option<String>, Option<String>) {
    match std::str::from_utf8(bytes) {
        Ok(text) => (Some(text.to_owned()), None),
        Err(_) => (None, Some(hex(bytes))),
    }
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// The timestamp of a store operation, if the payload is one.
pub(crate) fn store_timestamp(payload: &[u8]) -> Option<u64> {
    decode_op(payload).ok().map(|op| op.timestamp_us())
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

/// Calls `emit` for each record in the range `options` selects, in LSN
/// order. Returns how many were emitted.
pub fn dump<V: Vfs>(
    fs: &V,
    log: &LogReport,
    options: &DumpOptions,
    progress: &mut dyn Progress,
    mut emit: impl FnMut(&LogRecordView<'_>) -> Result<()>,
) -> Result<u64> {
    walk_range(
        fs,
        log,
        options,
        progress,
        |payload| ((), store_timestamp(payload)),
        |record, ()| {
            emit(&record)?;
            Ok(true)
        },
    )
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
    use super::recover::Target;
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
