//! [`WalReader`]: records in LSN order from any LSN, across segments.
//!
//! A reader sees the log as it was when it was created: every record that
//! had reached write() then. Segments are read through read-only maps
//! ([`crate::io::VfsFile::map`]) of their written prefix only.

use super::segment::Segment;
use crate::error::Corruption;
use crate::format::{decode_record, SEGMENT_HEADER_BYTES};
use crate::io::{Vfs, VfsFile};
use crate::{Error, Lsn, Result};

/// One record read back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub lsn: Lsn,
    pub payload: Vec<u8>,
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
}

impl<V: Vfs> WalReader<V> {
    pub(crate) fn new(segments: Vec<(Segment<V::File>, u64)>, from: Lsn, upto: Lsn) -> WalReader<V> {
        // Start in the last segment that begins at or before `from`.
        let index = segments.iter().rposition(|(s, _)| s.header.first_lsn <= from).unwrap_or(0);
        let next_lsn = segments.get(index).map_or(from, |(s, _)| s.header.first_lsn);
        WalReader { segments, index, map: None, offset: SEGMENT_HEADER_BYTES, next_lsn, from, upto, failed: false }
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
                // Re-borrow for the caller's lifetime.
                let bytes: &[u8] = self.map.as_deref().expect("mapped above");
                let start = offset + crate::format::RECORD_HEADER_BYTES;
                return Some(Ok((expected, &bytes[start..start + record.payload.len()])));
            }
        }
    }
}

impl<V: Vfs> Iterator for WalReader<V> {
    type Item = Result<Record>;

    fn next(&mut self) -> Option<Result<Record>> {
        self.next_ref().map(|r| r.map(|(lsn, payload)| Record { lsn, payload: payload.to_vec() }))
    }
}
