//! The 64-byte segment header that opens every segment file.
//!
//! ```text
//! offset size type     field
//!      0    8 [u8; 8]  magic b"WALDNLOG"
//!      8    4 u32      format version (1)
//!     12    4 u32      header length in bytes (64)
//!     16    8 u64      log id: random, the same in every segment of one log
//!     24    8 u64      segment salt: random, new for every segment file
//!     32    8 u64      first LSN stored in this segment
//!     40    8 u64      creation time, microseconds since the Unix epoch
//!     48   12 -        reserved, zero
//!     60    4 u32      CRC32 (unseeded) of bytes 0..60
//! ```

use super::{read_u32, read_u64, Seed};
use crate::Lsn;

/// Bytes in a segment header; the first record starts here.
pub const SEGMENT_HEADER_BYTES: usize = 64;
/// The format version this build writes and the newest it reads.
pub const FORMAT_VERSION: u32 = 1;
const MAGIC: [u8; 8] = *b"WALDNLOG";

/// The decoded segment header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentHeader {
    /// Random, chosen when the log is created; the same in all its segments.
    pub log_id: u64,
    /// Random, new for every segment file, so a record from an earlier file
    /// of the same name never validates here.
    pub salt: u64,
    /// The LSN of the first record stored in this segment (also in its name).
    pub first_lsn: Lsn,
    /// When the segment was created, in microseconds since the Unix epoch.
    pub created_unix_us: u64,
}

/// Why a segment header was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SegmentHeaderError {
    /// The file is shorter than a header; holds its length in bytes.
    #[error("file is shorter than a segment header ({0} bytes)")]
    Truncated(u64),
    /// The first 8 bytes are not `WALDNLOG`.
    #[error("not a walden segment (bad magic)")]
    BadMagic,
    /// The header's CRC32 does not match its bytes.
    #[error("segment header checksum mismatch")]
    Checksum,
    /// A format version this build does not read (a newer walden wrote it).
    #[error("segment format version {0} is not one this build reads (it reads version {FORMAT_VERSION})")]
    UnsupportedVersion(u32),
    /// The checksum holds but a field is impossible (says which).
    #[error("segment header is malformed: {0}")]
    Malformed(&'static str),
}

impl SegmentHeader {
    /// The checksum seed of every record in this segment.
    pub fn seed(&self) -> Seed {
        Seed::new(self.log_id, self.salt)
    }

    /// The header's 64 bytes, checksum included. Panics if `first_lsn` is 0.
    pub fn encode(&self) -> [u8; SEGMENT_HEADER_BYTES] {
        assert!(self.first_lsn.0 > 0, "segments start at LSN 1 or later");
        let mut out = [0u8; SEGMENT_HEADER_BYTES];
        out[0..8].copy_from_slice(&MAGIC);
        out[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        out[12..16].copy_from_slice(&(SEGMENT_HEADER_BYTES as u32).to_le_bytes());
        out[16..24].copy_from_slice(&self.log_id.to_le_bytes());
        out[24..32].copy_from_slice(&self.salt.to_le_bytes());
        out[32..40].copy_from_slice(&self.first_lsn.0.to_le_bytes());
        out[40..48].copy_from_slice(&self.created_unix_us.to_le_bytes());
        let crc = crc32fast::hash(&out[..60]);
        out[60..64].copy_from_slice(&crc.to_le_bytes());
        out
    }

    /// Reads a header from the start of `bytes`, checking its magic,
    /// checksum, version and fields (in that order).
    pub fn decode(bytes: &[u8]) -> Result<SegmentHeader, SegmentHeaderError> {
        if bytes.len() < SEGMENT_HEADER_BYTES {
            return Err(SegmentHeaderError::Truncated(bytes.len() as u64));
        }
        let bytes = &bytes[..SEGMENT_HEADER_BYTES];
        if bytes[0..8] != MAGIC {
            return Err(SegmentHeaderError::BadMagic);
        }
        if crc32fast::hash(&bytes[..60]) != read_u32(bytes, 60) {
            return Err(SegmentHeaderError::Checksum);
        }
        let version = read_u32(bytes, 8);
        if version != FORMAT_VERSION {
            return Err(SegmentHeaderError::UnsupportedVersion(version));
        }
        if read_u32(bytes, 12) as usize != SEGMENT_HEADER_BYTES {
            return Err(SegmentHeaderError::Malformed("header length is not 64"));
        }
        if bytes[48..60].iter().any(|&b| b != 0) {
            return Err(SegmentHeaderError::Malformed("reserved bytes are not zero"));
        }
        let first_lsn = Lsn(read_u64(bytes, 32));
        if first_lsn.0 == 0 {
            return Err(SegmentHeaderError::Malformed("first LSN is 0"));
        }
        Ok(SegmentHeader {
            log_id: read_u64(bytes, 16),
            salt: read_u64(bytes, 24),
            first_lsn,
            created_unix_us: read_u64(bytes, 40),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> SegmentHeader {
        SegmentHeader {
            log_id: 0x0123_4567_89ab_cdef,
            salt: 0xfedc_ba98_7654_3210,
            first_lsn: Lsn(1),
            created_unix_us: 1_700_000_000_000_000,
        }
    }

    #[test]
    fn golden_bytes_match_the_spec() {
        // This exact header is printed in docs/FORMAT.md.
        let hex: String = header().encode().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "57414c444e4c4f470100000040000000efcdab89674523011032547698badcfe\
             010000000000000000401e18240a06000000000000000000000000009744a7f0"
        );
    }

    #[test]
    fn round_trip() {
        assert_eq!(SegmentHeader::decode(&header().encode()), Ok(header()));
    }

    #[test]
    fn every_bit_flip_is_refused() {
        let good = header().encode();
        for bit in 0..SEGMENT_HEADER_BYTES * 8 {
            let mut bad = good;
            bad[bit / 8] ^= 1 << (bit % 8);
            assert!(SegmentHeader::decode(&bad).is_err(), "flip of bit {bit} accepted");
        }
    }

    #[test]
    fn newer_version_is_refused_clearly() {
        let mut bytes = header().encode();
        bytes[8..12].copy_from_slice(&2u32.to_le_bytes());
        let crc = crc32fast::hash(&bytes[..60]);
        bytes[60..64].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(SegmentHeader::decode(&bytes), Err(SegmentHeaderError::UnsupportedVersion(2)));
    }

    #[test]
    fn short_or_foreign_files_are_refused() {
        assert_eq!(SegmentHeader::decode(&[0u8; 10]), Err(SegmentHeaderError::Truncated(10)));
        assert_eq!(SegmentHeader::decode(&[0u8; 64]), Err(SegmentHeaderError::BadMagic));
    }
}

/// The log record a snapshot continues from: enough to tell whether a log
/// holding a record at the snapshot's LSN is the history it was taken from.
/// The record's CRC is seeded with its log id and segment salt and covers
/// its LSN and payload, so another history's record at that LSN has
/// another CRC (but for a 1 in 2^32 coincidence) and another salt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct RecordSeal {
    /// The salt of the segment holding the record.
    pub segment_salt: u64,
    /// The record's stored CRC.
    pub record_crc: u32,
}
