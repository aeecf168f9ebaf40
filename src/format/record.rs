//! Record framing: a 32-byte header, the payload, zero padding to 8 bytes.
//!
//! ```text
//! offset size type  field
//!      0    4 u32   crc: CRC32 seeded with the segment Seed, over bytes 4..32
//!                   of the header and then the payload (not the padding)
//!      4    4 u32   payload length in bytes (at most MAX_RECORD_BYTES)
//!      8    8 u64   LSN
//!     16    8 u64   durable watermark: every LSN up to this one was on
//!                   stable storage when this record was encoded
//!     24    1 u8    kind (1 = data; 0 is never valid)
//!     25    1 u8    flags (bit 0 = batch continues; others must be zero)
//!     26    6 -     reserved, zero
//! ```

use super::{read_u32, read_u64, Seed};
use crate::Lsn;

/// Bytes in a record header.
pub const RECORD_HEADER_BYTES: usize = 32;
/// Every record starts at a multiple of this offset within its segment.
pub const RECORD_ALIGN: usize = 8;
/// The largest payload the format allows. A length field above this is
/// rejected before anything is allocated or read.
pub const MAX_RECORD_BYTES: u32 = 128 << 20;
/// Set on every record of a batch but the last one.
pub const FLAG_BATCH_CONTINUES: u8 = 1;

const KNOWN_FLAGS: u8 = FLAG_BATCH_CONTINUES;

/// What a record holds. Unknown kinds are refused, never guessed at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
#[non_exhaustive]
pub enum RecordKind {
    /// An application payload.
    Data = 1,
}

/// The decoded fixed part of a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordHeader {
    /// The payload's length in bytes (padding not included).
    pub payload_len: u32,
    /// The record's LSN.
    pub lsn: Lsn,
    /// Every LSN up to this one was on stable storage when the record was
    /// encoded: a later record whose watermark covers damage proves the
    /// damaged record was durable (not a torn write).
    pub durable_watermark: Lsn,
    /// What the record holds.
    pub kind: RecordKind,
    /// Bit 0: [`FLAG_BATCH_CONTINUES`]; the other bits are zero.
    pub flags: u8,
}

impl RecordHeader {
    /// Whether a later record of the same batch follows this one.
    pub fn batch_continues(&self) -> bool {
        self.flags & FLAG_BATCH_CONTINUES != 0
    }

    /// Bytes the whole record occupies on disk, padding included.
    pub fn frame_len(&self) -> usize {
        padded_len(self.payload_len as usize)
    }
}

/// A record that passed its checksum, borrowing its payload from the input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordRef<'a> {
    /// The decoded header.
    pub header: RecordHeader,
    /// The payload, borrowed from the decoded bytes.
    pub payload: &'a [u8],
}

/// Why the bytes at some offset are not a valid record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecordDecodeError {
    /// Fewer bytes remain than the header, or than the length it states.
    #[error("truncated record: {needed} bytes needed, {available} available")]
    Truncated {
        /// Bytes the record needs, header included.
        needed: u64,
        /// Bytes there are.
        available: u64,
    },
    /// The header is all zeros: unwritten (preallocated) space.
    #[error("zeroed space, no record")]
    Zeroed,
    /// The length field is beyond the format's limit.
    #[error("record length {0} exceeds the maximum {MAX_RECORD_BYTES}")]
    TooLong(u32),
    /// The checksum does not match: torn, rotten, stale or foreign bytes.
    #[error("checksum mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    Checksum {
        /// The CRC32 in the header.
        stored: u32,
        /// The CRC32 of the bytes.
        computed: u32,
    },
    /// The checksum holds but the record uses a kind or flag this version
    /// does not know: it was written by a newer walden.
    #[error("unsupported record: kind {kind}, flags {flags:#04x}, reserved bytes {reserved:#x}")]
    Unsupported {
        /// The kind byte.
        kind: u8,
        /// The flags byte.
        flags: u8,
        /// The six reserved bytes, little-endian.
        reserved: u64,
    },
}

/// Bytes a record with `payload_len` payload bytes occupies, padding included.
#[inline]
pub fn padded_len(payload_len: usize) -> usize {
    (RECORD_HEADER_BYTES + payload_len).next_multiple_of(RECORD_ALIGN)
}

/// Appends one framed record to `out`. `out.len()` must be 8-byte aligned
/// relative to the segment start, and the payload within the format limit.
pub fn encode_record(out: &mut Vec<u8>, seed: Seed, lsn: Lsn, durable_watermark: Lsn, flags: u8, payload: &[u8]) {
    assert!(payload.len() <= MAX_RECORD_BYTES as usize, "payload over the format limit");
    assert!(flags & !KNOWN_FLAGS == 0, "unknown record flag");
    debug_assert!(lsn.0 > 0 && durable_watermark < lsn);
    let start = out.len();
    let mut header = [0u8; RECORD_HEADER_BYTES];
    header[4..8].copy_from_slice(&(payload.len() as u32).to_le_bytes());
    header[8..16].copy_from_slice(&lsn.0.to_le_bytes());
    header[16..24].copy_from_slice(&durable_watermark.0.to_le_bytes());
    header[24] = RecordKind::Data as u8;
    header[25] = flags;
    let mut hasher = seed.hasher();
    hasher.update(&header[4..]);
    hasher.update(payload);
    header[0..4].copy_from_slice(&hasher.finalize().to_le_bytes());
    out.extend_from_slice(&header);
    out.extend_from_slice(payload);
    out.resize(start + padded_len(payload.len()), 0);
}

/// Decodes the record at the start of `bytes`, which runs to the end of the
/// readable region. Never allocates; never reads past `bytes`.
pub fn decode_record(bytes: &[u8], seed: Seed) -> Result<RecordRef<'_>, RecordDecodeError> {
    if bytes.len() < RECORD_HEADER_BYTES {
        return Err(RecordDecodeError::Truncated { needed: RECORD_HEADER_BYTES as u64, available: bytes.len() as u64 });
    }
    let header = &bytes[..RECORD_HEADER_BYTES];
    if header.iter().all(|&b| b == 0) {
        return Err(RecordDecodeError::Zeroed);
    }
    let payload_len = read_u32(header, 4);
    if payload_len > MAX_RECORD_BYTES {
        return Err(RecordDecodeError::TooLong(payload_len));
    }
    let end = RECORD_HEADER_BYTES + payload_len as usize;
    if bytes.len() < end {
        return Err(RecordDecodeError::Truncated { needed: end as u64, available: bytes.len() as u64 });
    }
    let payload = &bytes[RECORD_HEADER_BYTES..end];
    let stored = read_u32(header, 0);
    let mut hasher = seed.hasher();
    hasher.update(&header[4..]);
    hasher.update(payload);
    let computed = hasher.finalize();
    if stored != computed {
        return Err(RecordDecodeError::Checksum { stored, computed });
    }
    let kind = header[24];
    let flags = header[25];
    let reserved = u64::from_le_bytes([header[26], header[27], header[28], header[29], header[30], header[31], 0, 0]);
    if kind != RecordKind::Data as u8 || flags & !KNOWN_FLAGS != 0 || reserved != 0 {
        return Err(RecordDecodeError::Unsupported { kind, flags, reserved });
    }
    Ok(RecordRef {
        header: RecordHeader {
            payload_len,
            lsn: Lsn(read_u64(header, 8)),
            durable_watermark: Lsn(read_u64(header, 16)),
            kind: RecordKind::Data,
            flags,
        },
        payload,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED_LOG_ID: u64 = 0x0123_4567_89ab_cdef;
    const SEED_SALT: u64 = 0xfedc_ba98_7654_3210;

    fn seed() -> Seed {
        Seed::new(SEED_LOG_ID, SEED_SALT)
    }

    #[test]
    fn golden_bytes_match_the_spec() {
        // This exact frame is printed in docs/FORMAT.md.
        let mut out = Vec::new();
        encode_record(&mut out, seed(), Lsn(1), Lsn(0), 0, b"hello");
        assert_eq!(out.len(), 40);
        let hex: String = out.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "1286201805000000010000000000000000000000000000000100000000000000\
             68656c6c6f000000"
        );
    }

    #[test]
    fn round_trip_with_flags_and_padding() {
        let mut out = Vec::new();
        for (i, len) in [0usize, 1, 7, 8, 9, 100, 4096].iter().enumerate() {
            let payload = vec![i as u8 + 1; *len];
            let start = out.len();
            let flags = if i % 2 == 0 { FLAG_BATCH_CONTINUES } else { 0 };
            encode_record(&mut out, seed(), Lsn(i as u64 + 5), Lsn(3), flags, &payload);
            assert_eq!(out.len() % RECORD_ALIGN, 0);
            let rec = decode_record(&out[start..], seed()).unwrap();
            assert_eq!(rec.payload, &payload[..]);
            assert_eq!(rec.header.lsn, Lsn(i as u64 + 5));
            assert_eq!(rec.header.durable_watermark, Lsn(3));
            assert_eq!(rec.header.batch_continues(), i % 2 == 0);
            assert_eq!(rec.header.frame_len(), out.len() - start);
        }
    }

    #[test]
    fn every_single_bit_flip_is_detected() {
        let mut out = Vec::new();
        encode_record(&mut out, seed(), Lsn(9), Lsn(8), 0, b"walden record");
        let used = RECORD_HEADER_BYTES + 13;
        for bit in 0..used * 8 {
            let mut bad = out.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            assert!(decode_record(&bad, seed()).is_err(), "flip of bit {bit} went unnoticed");
        }
    }

    #[test]
    fn another_seed_never_validates() {
        let mut out = Vec::new();
        encode_record(&mut out, seed(), Lsn(1), Lsn(0), 0, b"x");
        let other = Seed::new(SEED_LOG_ID, SEED_SALT + 1);
        assert!(matches!(decode_record(&out, other), Err(RecordDecodeError::Checksum { .. })));
    }

    #[test]
    fn oversized_length_is_refused_before_reading() {
        let mut header = [0u8; RECORD_HEADER_BYTES];
        header[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(decode_record(&header, seed()), Err(RecordDecodeError::TooLong(u32::MAX)));
    }

    #[test]
    fn zeros_and_short_input_are_not_records() {
        assert_eq!(decode_record(&[0u8; 64], seed()), Err(RecordDecodeError::Zeroed));
        assert!(matches!(decode_record(&[1u8; 10], seed()), Err(RecordDecodeError::Truncated { .. })));
    }

    #[test]
    fn unknown_kind_with_valid_checksum_is_unsupported_not_misread() {
        let mut out = Vec::new();
        encode_record(&mut out, seed(), Lsn(1), Lsn(0), 0, b"future");
        out[24] = 7;
        let mut hasher = seed().hasher();
        hasher.update(&out[4..RECORD_HEADER_BYTES]);
        hasher.update(b"future");
        let crc = hasher.finalize();
        out[0..4].copy_from_slice(&crc.to_le_bytes());
        assert!(matches!(decode_record(&out, seed()), Err(RecordDecodeError::Unsupported { kind: 7, .. })));
    }
}
