//! The 64-byte snapshot header; the zstd content follows it.
//!
//! ```text
//! offset size type     field
//!      0    8 [u8; 8]  magic b"WALDNSNP"
//!      8    4 u32      snapshot format version (1)
//!     12    4 u32      header length in bytes (64)
//!     16    8 u64      LSN covered: the state includes every record up to it
//!     24    8 u64      creation time, microseconds since the Unix epoch
//!     32    8 u64      entry count (as the state machine counts entries)
//!     40    8 u64      content length: bytes of zstd data after the header
//!     48    4 u32      CRC32 of the content bytes (compressed, as stored)
//!     52    8 -        reserved, zero
//!     60    4 u32      CRC32 of bytes 0..60
//! ```

use crate::format::{read_u32, read_u64};
use crate::Lsn;

/// Bytes in a snapshot header; the zstd content starts here.
pub const SNAPSHOT_HEADER_BYTES: usize = 64;
/// The snapshot format version this build writes and the newest it reads.
pub const SNAPSHOT_VERSION: u32 = 1;
const MAGIC: [u8; 8] = *b"WALDNSNP";

/// The decoded snapshot header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct SnapshotHeader {
    /// The state includes every record up to this LSN and none after it.
    pub lsn: Lsn,
    /// When the snapshot was written, in microseconds since the Unix epoch.
    pub created_unix_us: u64,
    /// How many entries the state machine wrote (as it counts them).
    pub entries: u64,
    /// Bytes of zstd content after the header.
    pub content_bytes: u64,
    /// CRC32 of those content bytes, as stored (compressed).
    pub content_crc: u32,
}

/// Why a snapshot header was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SnapshotHeaderError {
    /// The file is shorter than a header; holds its length in bytes.
    #[error("file is shorter than a snapshot header ({0} bytes)")]
    Truncated(u64),
    /// The first 8 bytes are not `WALDNSNP`.
    #[error("not a walden snapshot (bad magic)")]
    BadMagic,
    /// The header's CRC32 does not match its bytes.
    #[error("snapshot header checksum mismatch")]
    Checksum,
    /// A snapshot format version this build does not read.
    #[error("snapshot format version {0} is not one this build reads (it reads version {SNAPSHOT_VERSION})")]
    UnsupportedVersion(u32),
    /// The checksum holds but a field is impossible (says which).
    #[error("snapshot header is malformed: {0}")]
    Malformed(&'static str),
    /// The file's length disagrees with the header's content length.
    #[error("the header says {header} content bytes but the file holds {file} bytes in all")]
    LengthMismatch {
        /// Content bytes the header states.
        header: u64,
        /// Bytes in the whole file.
        file: u64,
    },
}

impl SnapshotHeader {
    /// The header's 64 bytes, checksum included.
    pub fn encode(&self) -> [u8; SNAPSHOT_HEADER_BYTES] {
        let mut out = [0u8; SNAPSHOT_HEADER_BYTES];
        out[0..8].copy_from_slice(&MAGIC);
        out[8..12].copy_from_slice(&SNAPSHOT_VERSION.to_le_bytes());
        out[12..16].copy_from_slice(&(SNAPSHOT_HEADER_BYTES as u32).to_le_bytes());
        out[16..24].copy_from_slice(&self.lsn.0.to_le_bytes());
        out[24..32].copy_from_slice(&self.created_unix_us.to_le_bytes());
        out[32..40].copy_from_slice(&self.entries.to_le_bytes());
        out[40..48].copy_from_slice(&self.content_bytes.to_le_bytes());
        out[48..52].copy_from_slice(&self.content_crc.to_le_bytes());
        let crc = crc32fast::hash(&out[..60]);
        out[60..64].copy_from_slice(&crc.to_le_bytes());
        out
    }

    /// Reads a header from the start of `bytes`, checking its magic,
    /// checksum, version and fields (in that order). The content length
    /// against the file's is checked by the caller, which knows the file.
    pub fn decode(bytes: &[u8]) -> Result<SnapshotHeader, SnapshotHeaderError> {
        if bytes.len() < SNAPSHOT_HEADER_BYTES {
            return Err(SnapshotHeaderError::Truncated(bytes.len() as u64));
        }
        let bytes = &bytes[..SNAPSHOT_HEADER_BYTES];
        if bytes[0..8] != MAGIC {
            return Err(SnapshotHeaderError::BadMagic);
        }
        if crc32fast::hash(&bytes[..60]) != read_u32(bytes, 60) {
            return Err(SnapshotHeaderError::Checksum);
        }
        let version = read_u32(bytes, 8);
        if version != SNAPSHOT_VERSION {
            return Err(SnapshotHeaderError::UnsupportedVersion(version));
        }
        if read_u32(bytes, 12) as usize != SNAPSHOT_HEADER_BYTES {
            return Err(SnapshotHeaderError::Malformed("header length is not 64"));
        }
        if bytes[52..60].iter().any(|&b| b != 0) {
            return Err(SnapshotHeaderError::Malformed("reserved bytes are not zero"));
        }
        Ok(SnapshotHeader {
            lsn: Lsn(read_u64(bytes, 16)),
            created_unix_us: read_u64(bytes, 24),
            entries: read_u64(bytes, 32),
            content_bytes: read_u64(bytes, 40),
            content_crc: read_u32(bytes, 48),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> SnapshotHeader {
        SnapshotHeader {
            lsn: Lsn(1000),
            created_unix_us: 1_700_000_000_000_000,
            entries: 42,
            content_bytes: 1234,
            content_crc: 0xdead_beef,
        }
    }

    #[test]
    fn round_trip_and_every_bit_flip_is_refused() {
        let bytes = header().encode();
        assert_eq!(SnapshotHeader::decode(&bytes), Ok(header()));
        for bit in 0..SNAPSHOT_HEADER_BYTES * 8 {
            let mut bad = bytes;
            bad[bit / 8] ^= 1 << (bit % 8);
            assert!(SnapshotHeader::decode(&bad).is_err(), "flip of bit {bit} accepted");
        }
    }

    #[test]
    fn golden_bytes_match_the_spec() {
        // This exact header is printed in docs/FORMAT.md.
        let hex: String = header().encode().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "57414c444e534e500100000040000000e80300000000000000401e18240a06002a00000000000000\
             d204000000000000efbeadde000000000000000026f57bf6"
        );
    }
}
