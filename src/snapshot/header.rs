//! The snapshot header; the zstd content follows it.
//!
//! Version 2 (written by this build), 96 bytes:
//!
//! ```text
//! offset size type     field
//!      0    8 [u8; 8]  magic b"WALDNSNP"
//!      8    4 u32      snapshot format version (2)
//!     12    4 u32      header length in bytes (96)
//!     16    8 u64      LSN covered: the state includes every record up to it
//!     24    8 u64      creation time, microseconds since the Unix epoch
//!     32    8 u64      entry count (as the state machine counts entries)
//!     40    8 u64      content length: bytes of zstd data after the header
//!     48    4 u32      CRC32 of the content bytes (compressed, as stored)
//!     52    4 u32      seal CRC: the stored CRC of the log record at the LSN
//!     56    8 u64      log id of the log the snapshot was taken from
//!     64    8 u64      seal salt: the salt of the segment holding that record
//!                      (seal CRC and salt both 0: no seal, as for LSN 0)
//!     72   20 -        reserved, zero
//!     92    4 u32      CRC32 of bytes 0..92
//! ```
//!
//! Version 1 (64 bytes) is the same up to offset 52, then 8 reserved zero
//! bytes and the CRC32 of bytes 0..60 at offset 60. It records no origin.

pub use crate::format::RecordSeal;
use crate::format::{read_u32, read_u64};
use crate::Lsn;

/// Bytes in the header this build writes (version 2).
pub const SNAPSHOT_HEADER_BYTES: usize = 96;
/// Bytes in a version-1 header.
pub const SNAPSHOT_V1_HEADER_BYTES: usize = 64;
/// The version this build writes; it reads this one and version 1.
pub const SNAPSHOT_VERSION: u32 = 2;
/// Longest header length an unknown version may claim and still have its
/// checksum tried (to tell "newer walden" from "damaged").
const MAX_FUTURE_HEADER_BYTES: usize = 4096;
const MAGIC: [u8; 8] = *b"WALDNSNP";

/// Which log a snapshot belongs to, and where in its history.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct SnapshotOrigin {
    /// The log id in the segment headers of the log it was taken from.
    pub log_id: u64,
    /// The record at the snapshot's LSN. `None` for LSN 0 (no record), or
    /// if the log no longer held that record when the snapshot was written
    /// (a second snapshot at an LSN whose segment retention removed).
    pub seal: Option<RecordSeal>,
}

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
    /// The log it was taken from: `Some` in version 2, `None` in a version-1
    /// file, which did not record it (such a snapshot cannot be checked
    /// against the log; recovery uses it as before and says so).
    pub origin: Option<SnapshotOrigin>,
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
    #[error("snapshot format version {0} is not one this build reads (it reads versions 1 and {SNAPSHOT_VERSION})")]
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
    /// The header's length on disk: where the content starts.
    pub fn header_bytes(&self) -> usize {
        match self.origin {
            Some(_) => SNAPSHOT_HEADER_BYTES,
            None => SNAPSHOT_V1_HEADER_BYTES,
        }
    }

    /// The file's whole length.
    pub fn file_bytes(&self) -> u64 {
        self.header_bytes() as u64 + self.content_bytes
    }

    /// Encodes version 2, or version 1 for a header without an origin (only
    /// tests write those, to check that old files still read).
    pub fn encode(&self) -> Vec<u8> {
        let len = self.header_bytes();
        let mut out = vec![0u8; len];
        out[0..8].copy_from_slice(&MAGIC);
        let version: u32 = if self.origin.is_some() { SNAPSHOT_VERSION } else { 1 };
        out[8..12].copy_from_slice(&version.to_le_bytes());
        out[12..16].copy_from_slice(&(len as u32).to_le_bytes());
        out[16..24].copy_from_slice(&self.lsn.0.to_le_bytes());
        out[24..32].copy_from_slice(&self.created_unix_us.to_le_bytes());
        out[32..40].copy_from_slice(&self.entries.to_le_bytes());
        out[40..48].copy_from_slice(&self.content_bytes.to_le_bytes());
        out[48..52].copy_from_slice(&self.content_crc.to_le_bytes());
        if let Some(origin) = self.origin {
            assert!(origin.seal.is_none() || self.lsn > Lsn::ZERO, "LSN 0 has no record to seal");
            let seal = origin.seal.unwrap_or(RecordSeal { segment_salt: 0, record_crc: 0 });
            out[52..56].copy_from_slice(&seal.record_crc.to_le_bytes());
            out[56..64].copy_from_slice(&origin.log_id.to_le_bytes());
            out[64..72].copy_from_slice(&seal.segment_salt.to_le_bytes());
        }
        let crc = crc32fast::hash(&out[..len - 4]);
        out[len - 4..].copy_from_slice(&crc.to_le_bytes());
        out
    }

    /// Reads a header from the start of `bytes`, checking its magic,
    /// checksum, version and fields (in that order). The content length
    /// against the file's is checked by the caller, which knows the file.
    pub fn decode(bytes: &[u8]) -> Result<SnapshotHeader, SnapshotHeaderError> {
        if bytes.len() < SNAPSHOT_V1_HEADER_BYTES {
            return Err(SnapshotHeaderError::Truncated(bytes.len() as u64));
        }
        if bytes[0..8] != MAGIC {
            return Err(SnapshotHeaderError::BadMagic);
        }
        let version = read_u32(bytes, 8);
        let len = match version {
            1 => SNAPSHOT_V1_HEADER_BYTES,
            SNAPSHOT_VERSION => SNAPSHOT_HEADER_BYTES,
            _ => return Err(unknown_version(bytes, version)),
        };
        if bytes.len() < len {
            return Err(SnapshotHeaderError::Truncated(bytes.len() as u64));
        }
        let bytes = &bytes[..len];
        if crc32fast::hash(&bytes[..len - 4]) != read_u32(bytes, len - 4) {
            return Err(SnapshotHeaderError::Checksum);
        }
        if read_u32(bytes, 12) as usize != len {
            return Err(SnapshotHeaderError::Malformed("header length does not match the version"));
        }
        let lsn = Lsn(read_u64(bytes, 16));
        let (origin, reserved) = if version == 1 {
            (None, &bytes[52..60])
        } else {
            let (record_crc, log_id, segment_salt) = (read_u32(bytes, 52), read_u64(bytes, 56), read_u64(bytes, 64));
            let seal = match (record_crc, segment_salt) {
                (0, 0) => None,
                _ if lsn == Lsn::ZERO => {
                    return Err(SnapshotHeaderError::Malformed("a seal for LSN 0, which has no record"))
                }
                _ => Some(RecordSeal { segment_salt, record_crc }),
            };
            (Some(SnapshotOrigin { log_id, seal }), &bytes[72..92])
        };
        if reserved.iter().any(|&b| b != 0) {
            return Err(SnapshotHeaderError::Malformed("reserved bytes are not zero"));
        }
        Ok(SnapshotHeader {
            lsn,
            created_unix_us: read_u64(bytes, 24),
            entries: read_u64(bytes, 32),
            content_bytes: read_u64(bytes, 40),
            content_crc: read_u32(bytes, 48),
            origin,
        })
    }
}

/// A version this build does not know: "written by a newer walden" if the
/// header's own length and checksum hold, else damage.
fn unknown_version(bytes: &[u8], version: u32) -> SnapshotHeaderError {
    let len = read_u32(bytes, 12) as usize;
    let plausible = (SNAPSHOT_V1_HEADER_BYTES..=MAX_FUTURE_HEADER_BYTES).contains(&len) && len.is_multiple_of(4);
    if plausible && bytes.len() >= len && crc32fast::hash(&bytes[..len - 4]) == read_u32(bytes, len - 4) {
        SnapshotHeaderError::UnsupportedVersion(version)
    } else {
        SnapshotHeaderError::Checksum
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
            origin: Some(SnapshotOrigin {
                log_id: 0x0123_4567_89ab_cdef,
                seal: Some(RecordSeal { segment_salt: 0xfedc_ba98_7654_3210, record_crc: 0x1122_3344 }),
            }),
        }
    }

    fn v1_header() -> SnapshotHeader {
        SnapshotHeader { origin: None, ..header() }
    }

    #[test]
    fn round_trip_and_every_bit_flip_is_refused() {
        for h in [header(), v1_header()] {
            let bytes = h.encode();
            assert_eq!(bytes.len(), h.header_bytes());
            assert_eq!(SnapshotHeader::decode(&bytes), Ok(h));
            for bit in 0..bytes.len() * 8 {
                let mut bad = bytes.clone();
                bad[bit / 8] ^= 1 << (bit % 8);
                assert!(SnapshotHeader::decode(&bad).is_err(), "flip of bit {bit} accepted");
            }
        }
    }

    #[test]
    fn golden_bytes_match_the_spec() {
        // These exact headers are printed in docs/FORMAT.md.
        let hex = |h: SnapshotHeader| -> String { h.encode().iter().map(|b| format!("{b:02x}")).collect() };
        assert_eq!(
            hex(header()),
            "57414c444e534e500200000060000000e80300000000000000401e18240a06002a00000000000000\
             d204000000000000efbeadde44332211efcdab89674523011032547698badcfe\
             00000000000000000000000000000000000000008f45bf35"
        );
        // Version 1, as walden 0.1.0 wrote it: still read.
        assert_eq!(
            hex(v1_header()),
            "57414c444e534e500100000040000000e80300000000000000401e18240a06002a00000000000000\
             d204000000000000efbeadde000000000000000026f57bf6"
        );
    }

    #[test]
    fn an_empty_state_has_an_origin_but_no_seal() {
        let h = SnapshotHeader { lsn: Lsn::ZERO, origin: Some(SnapshotOrigin { log_id: 7, seal: None }), ..header() };
        assert_eq!(SnapshotHeader::decode(&h.encode()), Ok(h));
        let mut bad = h.encode();
        bad[52] = 1;
        let crc = crc32fast::hash(&bad[..92]);
        bad[92..].copy_from_slice(&crc.to_le_bytes());
        assert!(matches!(SnapshotHeader::decode(&bad), Err(SnapshotHeaderError::Malformed(_))));
    }

    #[test]
    fn a_newer_version_is_refused_as_unsupported_and_a_short_file_as_truncated() {
        let mut bytes = header().encode();
        bytes[8..12].copy_from_slice(&3u32.to_le_bytes());
        let crc = crc32fast::hash(&bytes[..92]);
        bytes[92..].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(SnapshotHeader::decode(&bytes), Err(SnapshotHeaderError::UnsupportedVersion(3)));
        assert_eq!(SnapshotHeader::decode(&header().encode()[..80]), Err(SnapshotHeaderError::Truncated(80)));
        assert_eq!(SnapshotHeader::decode(&[0u8; 10]), Err(SnapshotHeaderError::Truncated(10)));
    }
}
