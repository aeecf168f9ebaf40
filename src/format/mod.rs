//! The on-disk log format: pure encoding and decoding of segment headers and
//! records. No I/O, no clock, no threads; every byte here is specified in
//! docs/FORMAT.md, and the golden-byte tests below appear there too.
//!
//! A segment file is a 64-byte [`SegmentHeader`] followed by records, each an
//! 8-byte-aligned [`RecordHeader`] of 32 bytes plus its payload. Every
//! record's CRC32 is seeded with the segment's [`Seed`] (log id and segment
//! salt), so bytes from another log, another generation of a file or zeroed
//! preallocated space never validate.

mod record;
mod segment;

pub use record::{
    decode_record, encode_record, padded_len, RecordDecodeError, RecordHeader, RecordKind, RecordRef,
    FLAG_BATCH_CONTINUES, MAX_RECORD_BYTES, RECORD_ALIGN, RECORD_HEADER_BYTES,
};
pub use segment::{RecordSeal, SegmentHeader, SegmentHeaderError, FORMAT_VERSION, SEGMENT_HEADER_BYTES};

/// The CRC state every record checksum in one segment starts from: the CRC32
/// of the log id and the segment salt, both little-endian.
///
/// Computing it once per segment lets each record pay only for its own bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Seed(u32);

impl Seed {
    /// The seed of the segment with this log id and salt (both from its
    /// [`SegmentHeader`]).
    pub fn new(log_id: u64, segment_salt: u64) -> Seed {
        let mut hasher = crc32fast::Hasher::new();
        hasher.update(&log_id.to_le_bytes());
        hasher.update(&segment_salt.to_le_bytes());
        Seed(hasher.finalize())
    }

    pub(crate) fn hasher(self) -> crc32fast::Hasher {
        crc32fast::Hasher::new_with_initial(self.0)
    }
}

#[inline]
pub(crate) fn read_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}

#[inline]
pub(crate) fn read_u64(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))
}
