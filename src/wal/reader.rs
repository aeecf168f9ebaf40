//! [`WalReader`]: records in LSN order from any LSN, across segments.
//!
//! A reader sees the log as it was when it was created: every record that
//! had reached write() then. Segments are read through read-only maps
//! ([`crate::io::VfsFile::map`]) of their written prefix only. Records
//! before the starting LSN are stepped over by their header (length and
//! LSN checked), not their checksum: they are not returned.

use super::segment::Segment;
use crate::error::Corruption;
use crate::format::{decode_record, SEGMENT_HEADER_BYTES};
use crate::io::{Vfs, VfsFile};
use crate::{Error, Lsn, Result};

/// One record read back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// The record's LSN.
    pub lsn: Lsn,
    /// The bytes appended.
    pub payload: Vec<u8>,
}

/// Where a record is in the log: its LSN, its segment and its offset there.
/// Valid for the life of the log handle that reported it (segments are
/// immutable once written; recovery cuts tails only at open).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReadPosition {
    /// The record's LSN.
    pub lsn: Lsn,
    /// The first LSN of its segment, which names the segment.
    pub segment_first_lsn: Lsn,
    /// The byte offset of its header in the segment.
    pub offset: u64,
}

/// Reads records in LSN order. Iterate it for owned [`Record`]s, or call
/// [`WalReader::next_ref`] to borrow payloads without copying.
pub struct WalReader<V: Vfs> {
    /// Segments still to read, each with the length of its readable prefix.
    segments: Vec<(Segment<V::File>, u64)>,
    index: usize,
    map: Option<<V::File as VfsFile>::Map>,
    offset: usize,
    next_lsn: Lsn,
    from: Lsn,
    upto: Lsn,
    failed: bool,
    /// The position of the record last returned.
    returned: Option<ReadPosition>,
    /// Whether the record last returned is followed by more of its batch.
    returned_continues: bool,
}

impl<V: Vfs> WalReader<V> {
    pub(crate) fn new(segments: Vec<(Segment<V::File>, u64)>, from: Lsn, upto: Lsn) -> WalReader<V> {
        // Start in the last segment that begins at or before `from`.
        let index = segments.iter().rposition(|(s, _)| s.header.first_lsn <= from).unwrap_or(0);
        let next_lsn = segments.get(index).map_or(from, |(s, _)| s.header.first_lsn);
        WalReader {
            segments,
            index,
            map: None,
            offset: SEGMENT_HEADER_BYTES,
            next_lsn,
            from,
            upto,
            failed: false,
            returned: None,
            returned_continues: false,
        }
    }

    /// Starts at `at`, a position an earlier reader of this log reported;
    /// if its segment is gone, from `at.lsn` the ordinary way.
    pub(crate) fn at(segments: Vec<(Segment<V::File>, u64)>, at: ReadPosition, upto: Lsn) -> WalReader<V> {
        match segments.iter().position(|(s, _)| s.header.first_lsn == at.segment_first_lsn) {
            Some(index) => WalReader {
                segments,
                index,
                map: None,
                offset: at.offset as usize,
                next_lsn: at.lsn,
                from: at.lsn,
                upto,
                failed: false,
                returned: None,
                returned_continues: false,
            },
            None => WalReader::new(segments, at.lsn, upto),
        }
    }

    /// Where the record last returned is: pass it to
    /// [`crate::Wal::read_from_position`] to start another reader there
    /// without scanning its segment from the start.
    pub fn last_position(&self) -> Option<ReadPosition> {
        self.returned
    }

    /// Whether the record last returned has a later record of the same
    /// batch after it (the frame's batch-continues flag).
    pub fn last_batch_continues(&self) -> bool {
        self.returned_continues
    }

    /// The segment of the record last returned (none before the first).
    pub(crate) fn last_segment(&self) -> Option<&Segment<V::File>> {
        self.returned.and(self.segments.get(self.index)).map(|(segment, _)| segment)
    }

    /// The LSN of the last record this reader will return, if any.
    pub fn upto(&self) -> Lsn {
        self.upto
    }

    /// The next record, borrowing its payload from the map.
    pub fn next_ref(&mut self) -> Option<Result<(Lsn, &[u8])>> {
        loop {
            if self.failed || self.next_lsn > self.upto {
                return None;
            }
            let (segment, len) = self.segments.get(self.index)?;
            if self.map.is_none() {
                match segment.file.map(*len) {
                    Ok(map) => self.map = Some(map),
                    Err(e) => {
                        self.failed = true;
                        return Some(Err(Error::io("map", &segment.path)(e)));
                    }
                }
            }
            let bytes: &[u8] = self.map.as_deref().expect("mapped above");
            if self.offset >= bytes.len() {
                self.index += 1;
                self.map = None;
                self.offset = SEGMENT_HEADER_BYTES;
                continue;
            }
            let seed = segment.header.seed();
            let expected = self.next_lsn;
            let corrupt = |offset: usize, kind| Error::Corrupt {
                file: segment.path.clone(),
                offset: offset as u64,
                lsn: expected,
                kind,
            };
            let offset = self.offset;
            if expected < self.from {
                // Not returned: step over it by its header's length and LSN
                // (both checked), without the checksum over its payload, so
                // a read from the middle of a segment is cheap. A header
                // that does not hold up is decoded in full below, which
                // reports the damage.
                if let Some(frame_len) = skip_frame(&bytes[offset..], expected) {
                    self.offset += frame_len;
                    self.next_lsn = expected.next();
                    continue;
                }
            }
            let record = match decode_record(&bytes[offset..], seed) {
                Ok(record) => record,
                Err(e) => {
                    self.failed = true;
                    return Some(Err(corrupt(offset, Corruption::Record(e))));
                }
            };
            if record.header.lsn != expected {
                self.failed = true;
                return Some(Err(corrupt(offset, Corruption::LsnMismatch { expected, found: record.header.lsn })));
            }
            self.offset += record.header.frame_len();
            self.next_lsn = expected.next();
            if expected >= self.from {
                let segment_first_lsn = segment.header.first_lsn;
                self.returned = Some(ReadPosition { lsn: expected, segment_first_lsn, offset: offset as u64 });
                self.returned_continues = record.header.batch_continues();
                // Re-borrow for the caller's lifetime.
                let bytes: &[u8] = self.map.as_deref().expect("mapped above");
                let start = offset + crate::format::RECORD_HEADER_BYTES;
                return Some(Ok((expected, &bytes[start..start + record.payload.len()])));
            }
        }
    }
}

/// The frame length of the record at the start of `bytes` if its header
/// names `lsn`, claims a sane length and the frame fits: enough to step over
/// a record that will not be returned.
fn skip_frame(bytes: &[u8], lsn: Lsn) -> Option<usize> {
    let header = bytes.get(..crate::format::RECORD_HEADER_BYTES)?;
    let payload_len = u32::from_le_bytes(header[4..8].try_into().expect("4 bytes"));
    let record_lsn = u64::from_le_bytes(header[8..16].try_into().expect("8 bytes"));
    if record_lsn != lsn.0 || payload_len > crate::format::MAX_RECORD_BYTES {
        return None;
    }
    let frame_len = crate::format::padded_len(payload_len as usize);
    (frame_len <= bytes.len()).then_some(frame_len)
}

impl<V: Vfs> Iterator for WalReader<V> {
    type Item = Result<Record>;

    fn next(&mut self) -> Option<Result<Record>> {
        self.next_ref().map(|r| r.map(|(lsn, payload)| Record { lsn, payload: payload.to_vec() }))
    }
}
