//! The store's byte encodings: log record payloads (operations) and
//! snapshot content. Little-endian, lengths before bytes; specified in
//! docs/FORMAT.md.
//!
//! Operation (one log record):
//! ```text
//! u8 tag (1 = put, 2 = delete) | u64 timestamp_us | u16 writer length | writer
//! | u32 key length | key | put only: u32 value length | value
//! ```
//! Snapshot content, version 2 (what `write_snapshot` writes):
//! ```text
//! "WKVS" | u32 version = 2 | chunk... | u32 0 | u32 0 | u64 total entries
//! chunk: u32 entries (>= 1) | u32 bytes | that many entries, filling those bytes
//! entry: u64 revision | u64 timestamp_us | u32 key length | u32 value length
//!        | u16 writer length | key | value | writer
//! ```
//! An entry is also how the store keeps a key in memory (`record.rs`): a
//! snapshot is written by copying records out and loaded by copying them
//! back in, and its chunks can be handed whole to another thread.
//!
//! Snapshot content, version 1 (still read): entries back to back, each
//! ```text
//! u32 key length | key | u32 value length | value | u64 revision
//! | u16 writer length | writer | u64 timestamp_us
//! ```
//! Version 1 has no header; its first four bytes are a key length of at
//! most 128 MiB, which "WKVS" (0x53564b57 as a little-endian u32) is not.

use std::io::{self, BufRead};

const TAG_PUT: u8 = 1;
const TAG_DELETE: u8 = 2;

/// A store operation, borrowing its bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Op<'a> {
    Put { key: &'a [u8], value: &'a [u8], writer: &'a str, timestamp_us: u64 },
    Delete { key: &'a [u8], writer: &'a str, timestamp_us: u64 },
}

impl<'a> Op<'a> {
    pub(crate) fn timestamp_us(&self) -> u64 {
        match *self {
            Op::Put { timestamp_us, .. } | Op::Delete { timestamp_us, .. } => timestamp_us,
        }
    }

    pub(crate) fn key(&self) -> &'a [u8] {
        match *self {
            Op::Put { key, .. } | Op::Delete { key, .. } => key,
        }
    }
}

/// An operation's bytes beside its key, value and writer id (a put's;
/// a delete has 4 fewer).
pub(crate) const OP_FIXED_BYTES: usize = 1 + 8 + 2 + 4 + 4;

pub(crate) fn encode_op(out: &mut Vec<u8>, op: &Op<'_>) {
    out.reserve(op_len(op));
    encode_op_with(op, |bytes| out.extend_from_slice(bytes));
}

/// The bytes [`encode_op`] writes for `op`.
pub(crate) fn op_len(op: &Op<'_>) -> usize {
    match *op {
        Op::Put { key, value, writer, .. } => OP_FIXED_BYTES + writer.len() + key.len() + value.len(),
        Op::Delete { key, writer, .. } => OP_FIXED_BYTES - 4 + writer.len() + key.len(),
    }
}

/// [`encode_op`] into `out`, which is exactly [`op_len`] bytes long.
pub(crate) fn encode_op_into(out: &mut [u8], op: &Op<'_>) {
    let mut rest = out;
    encode_op_with(op, |bytes| {
        let (head, tail) = std::mem::take(&mut rest).split_at_mut(bytes.len());
        head.copy_from_slice(bytes);
        rest = tail;
    });
    assert!(rest.is_empty(), "an operation fills exactly op_len bytes");
}

/// Hands `put` the bytes of `op`'s encoding, front to back.
fn encode_op_with(op: &Op<'_>, mut put: impl FnMut(&[u8])) {
    let (tag, key, value, writer, timestamp_us) = match *op {
        Op::Put { key, value, writer, timestamp_us } => (TAG_PUT, key, Some(value), writer, timestamp_us),
        Op::Delete { key, writer, timestamp_us } => (TAG_DELETE, key, None, writer, timestamp_us),
    };
    put(&[tag]);
    put(&timestamp_us.to_le_bytes());
    put(&u16::try_from(writer.len()).expect("writer ids are under 64 KiB").to_le_bytes());
    put(writer.as_bytes());
    put(&u32::try_from(key.len()).expect("keys are under 4 GiB").to_le_bytes());
    put(key);
    if let Some(value) = value {
        put(&u32::try_from(value.len()).expect("values are under 4 GiB").to_le_bytes());
        put(value);
    }
}

pub(crate) fn decode_op(bytes: &[u8]) -> Result<Op<'_>, String> {
    let mut r = ByteReader { bytes, at: 0 };
    let tag = r.take(1)?[0];
    let timestamp_us = r.u64()?;
    let writer_len = r.u16()? as usize;
    let writer = std::str::from_utf8(r.take(writer_len)?).map_err(|e| format!("writer id: {e}"))?;
    let key_len = r.u32()? as usize;
    let key = r.take(key_len)?;
    let op = match tag {
        TAG_PUT => {
            let value_len = r.u32()? as usize;
            Op::Put { key, value: r.take(value_len)?, writer, timestamp_us }
        }
        TAG_DELETE => Op::Delete { key, writer, timestamp_us },
        other => return Err(format!("unknown operation tag {other}")),
    };
    if r.at != bytes.len() {
        return Err(format!("{} bytes after the operation", bytes.len() - r.at));
    }
    Ok(op)
}

/// The key of an operation `decode_op` accepted, read without checking
/// the rest again (readers look through the recent operations with it).
pub(crate) fn op_key(bytes: &[u8]) -> &[u8] {
    let writer_len = u16_at(bytes, 9);
    let key_at = 11 + writer_len;
    &bytes[key_at + 4..key_at + 4 + u32_at(bytes, key_at)]
}

/// The first bytes of a version-2 snapshot content.
pub(crate) const SNAPSHOT_MAGIC: [u8; 4] = *b"WKVS";
/// The snapshot content version `write_snapshot` writes.
pub(crate) const SNAPSHOT_VERSION: u32 = 2;
/// A chunk header, and the end marker: u32 entries, u32 bytes.
pub(crate) const CHUNK_HEADER_BYTES: usize = 8;
/// A chunk ends with the first entry that brings it to this many bytes.
pub(crate) const CHUNK_TARGET_BYTES: usize = 64 << 10;
/// The most bytes a chunk may claim before anything is read for it: more
/// than a full chunk plus one entry of the largest key, value and writer
/// id there can be.
pub(crate) const MAX_CHUNK_BYTES: usize = 2 * MAX_FIELD_BYTES + (256 << 10);

/// The fixed part of a version-2 entry (and of a record in memory).
pub(crate) const ENTRY_HEADER_BYTES: usize = 26;
const AT_REVISION: usize = 0;
const AT_TIMESTAMP: usize = 8;
const AT_KEY_LEN: usize = 16;
const AT_VALUE_LEN: usize = 20;
const AT_WRITER_LEN: usize = 24;

/// Appends a version-2 entry.
pub(crate) fn encode_entry(
    out: &mut Vec<u8>,
    key: &[u8],
    value: &[u8],
    revision: u64,
    writer: &str,
    timestamp_us: u64,
) {
    let key_len = u32::try_from(key.len()).expect("keys are under 4 GiB");
    let value_len = u32::try_from(value.len()).expect("values are under 4 GiB");
    let writer_len = u16::try_from(writer.len()).expect("writer ids are under 64 KiB");
    out.reserve(ENTRY_HEADER_BYTES + key.len() + value.len() + writer.len());
    out.extend_from_slice(&revision.to_le_bytes());
    out.extend_from_slice(&timestamp_us.to_le_bytes());
    out.extend_from_slice(&key_len.to_le_bytes());
    out.extend_from_slice(&value_len.to_le_bytes());
    out.extend_from_slice(&writer_len.to_le_bytes());
    out.extend_from_slice(key);
    out.extend_from_slice(value);
    out.extend_from_slice(writer.as_bytes());
}

/// The fields of a version-2 entry, read from bytes that [`entry_len`]
/// accepted (or that [`encode_entry`] wrote).
pub(crate) struct EntryFields;

impl EntryFields {
    pub(crate) fn revision(entry: &[u8]) -> u64 {
        u64_at(entry, AT_REVISION)
    }

    pub(crate) fn timestamp_us(entry: &[u8]) -> u64 {
        u64_at(entry, AT_TIMESTAMP)
    }

    pub(crate) fn key(entry: &[u8]) -> &[u8] {
        &entry[ENTRY_HEADER_BYTES..ENTRY_HEADER_BYTES + u32_at(entry, AT_KEY_LEN)]
    }

    pub(crate) fn value(entry: &[u8]) -> &[u8] {
        let start = ENTRY_HEADER_BYTES + u32_at(entry, AT_KEY_LEN);
        &entry[start..start + u32_at(entry, AT_VALUE_LEN)]
    }

    pub(crate) fn writer(entry: &[u8]) -> &[u8] {
        let start = ENTRY_HEADER_BYTES + u32_at(entry, AT_KEY_LEN) + u32_at(entry, AT_VALUE_LEN);
        &entry[start..start + u16_at(entry, AT_WRITER_LEN)]
    }
}

/// The length of the version-2 entry at the start of `bytes` and its
/// writer id, once its lengths fit in `bytes` and within the limits and
/// its writer id is UTF-8; or what is wrong with it. A writer id equal to
/// `checked_writer` (the last one the caller had back) is not checked
/// again: that one is returned.
pub(crate) fn entry_len<'a>(bytes: &'a [u8], checked_writer: &'a str) -> Result<(usize, &'a str), String> {
    if bytes.len() < ENTRY_HEADER_BYTES {
        return Err(format!("an entry cut after {} of its {ENTRY_HEADER_BYTES} header bytes", bytes.len()));
    }
    let (key_len, value_len) = (u32_at(bytes, AT_KEY_LEN), u32_at(bytes, AT_VALUE_LEN));
    if key_len > MAX_FIELD_BYTES || value_len > MAX_FIELD_BYTES {
        return Err(format!("an entry claims a key of {key_len} and a value of {value_len} bytes"));
    }
    let len = ENTRY_HEADER_BYTES + key_len + value_len + u16_at(bytes, AT_WRITER_LEN);
    if len > bytes.len() {
        return Err(format!("an entry of {len} bytes with {} left", bytes.len()));
    }
    let writer = EntryFields::writer(&bytes[..len]);
    if writer == checked_writer.as_bytes() {
        return Ok((len, checked_writer));
    }
    Ok((len, std::str::from_utf8(writer).map_err(|e| format!("writer id: {e}"))?))
}

fn u16_at(bytes: &[u8], at: usize) -> usize {
    u16::from_le_bytes(bytes[at..at + 2].try_into().expect("2 bytes")) as usize
}

fn u32_at(bytes: &[u8], at: usize) -> usize {
    u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes")) as usize
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))
}

/// Reads the next version-1 snapshot entry and appends it to `out` as a
/// version-2 entry; false at a clean end. The fields are copied straight
/// from the reader's buffer (through `scratch` only when one straddles the
/// buffer's end). The writer id is checked later, with the entry.
pub(crate) fn transcode_v1_entry(r: &mut impl BufRead, scratch: &mut Vec<u8>, out: &mut Vec<u8>) -> io::Result<bool> {
    if r.fill_buf()?.is_empty() {
        return Ok(false);
    }
    let start = out.len();
    out.resize(start + ENTRY_HEADER_BYTES, 0);
    let key_len = read_len32(r)?;
    with_field(r, scratch, key_len, |b| out.extend_from_slice(b))?;
    let value_len = read_len32(r)?;
    with_field(r, scratch, value_len, |b| out.extend_from_slice(b))?;
    let revision: [u8; 8] = read_array(r)?;
    let writer_len: [u8; 2] = read_array(r)?;
    with_field(r, scratch, u16::from_le_bytes(writer_len) as usize, |b| out.extend_from_slice(b))?;
    let timestamp_us: [u8; 8] = read_array(r)?;
    let header = &mut out[start..start + ENTRY_HEADER_BYTES];
    header[AT_REVISION..AT_REVISION + 8].copy_from_slice(&revision);
    header[AT_TIMESTAMP..AT_TIMESTAMP + 8].copy_from_slice(&timestamp_us);
    header[AT_KEY_LEN..AT_KEY_LEN + 4].copy_from_slice(&(key_len as u32).to_le_bytes());
    header[AT_VALUE_LEN..AT_VALUE_LEN + 4].copy_from_slice(&(value_len as u32).to_le_bytes());
    header[AT_WRITER_LEN..AT_WRITER_LEN + 2].copy_from_slice(&writer_len);
    Ok(true)
}

/// Appends a version-1 entry (tests only: the store writes version 2).
#[cfg(test)]
pub(crate) fn encode_entry_v1(out: &mut Vec<u8>, key: &[u8], value: &[u8], revision: u64, writer: &str, ts: u64) {
    let put_bytes32 = |out: &mut Vec<u8>, bytes: &[u8]| {
        out.extend_from_slice(&u32::try_from(bytes.len()).expect("under 4 GiB").to_le_bytes());
        out.extend_from_slice(bytes);
    };
    put_bytes32(out, key);
    put_bytes32(out, value);
    out.extend_from_slice(&revision.to_le_bytes());
    out.extend_from_slice(&u16::try_from(writer.len()).expect("under 64 KiB").to_le_bytes());
    out.extend_from_slice(writer.as_bytes());
    out.extend_from_slice(&ts.to_le_bytes());
}

/// The largest key or value a snapshot entry may claim before anything is
/// allocated for it (the log's own record limit).
pub(crate) const MAX_FIELD_BYTES: usize = crate::format::MAX_RECORD_BYTES as usize;

fn read_len32(r: &mut impl BufRead) -> io::Result<usize> {
    let len = u32::from_le_bytes(read_array(r)?) as usize;
    if len > MAX_FIELD_BYTES {
        return Err(io::Error::new(io::ErrorKind::InvalidData, format!("a field of {len} bytes")));
    }
    Ok(len)
}

/// Calls `f` on the next `len` bytes: in the reader's buffer if they are
/// all there, else read into `scratch`.
fn with_field(r: &mut impl BufRead, scratch: &mut Vec<u8>, len: usize, f: impl FnOnce(&[u8])) -> io::Result<()> {
    let buffered = r.fill_buf()?;
    if buffered.len() >= len {
        f(&buffered[..len]);
        r.consume(len);
        return Ok(());
    }
    scratch.clear();
    // Grows with the bytes that arrive: a length that lies costs no more.
    let got = io::Read::read_to_end(&mut io::Read::take(&mut *r, len as u64), scratch)?;
    if got < len {
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, format!("a field cut after {got} of {len} bytes")));
    }
    f(scratch);
    Ok(())
}

pub(crate) fn read_array<const N: usize>(r: &mut impl io::Read) -> io::Result<[u8; N]> {
    let mut bytes = [0u8; N];
    r.read_exact(&mut bytes)?;
    Ok(bytes)
}

/// Reads a store operation front to back.
struct ByteReader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> ByteReader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self.at.checked_add(n).filter(|&end| end <= self.bytes.len()).ok_or("truncated operation")?;
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }

    fn u16(&mut self) -> Result<u16, String> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().expect("2 bytes")))
    }

    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }

    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn operations_round_trip_and_garbage_is_refused() {
        let ops = [
            Op::Put { key: b"/lights/kitchen", value: b"0.8", writer: "relay-1", timestamp_us: 7 },
            Op::Put { key: b"", value: b"", writer: "", timestamp_us: 0 },
            Op::Delete { key: b"k", writer: "w", timestamp_us: u64::MAX },
        ];
        for op in ops {
            let mut bytes = Vec::new();
            encode_op(&mut bytes, &op);
            assert_eq!(decode_op(&bytes), Ok(op));
            assert_eq!(bytes.len(), op_len(&op));
            let mut into = vec![0xee; op_len(&op)];
            encode_op_into(&mut into, &op);
            assert_eq!(into, bytes, "the same bytes into a slice as into a vector");
            for cut in 0..bytes.len() {
                assert!(decode_op(&bytes[..cut]).is_err(), "a truncated op was accepted");
            }
            let mut longer = bytes.clone();
            longer.push(0);
            assert!(decode_op(&longer).is_err());
        }
        assert!(decode_op(&[9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]).is_err());
    }

    #[test]
    fn entries_read_back_and_bad_lengths_or_writers_are_refused() {
        let mut bytes = Vec::new();
        encode_entry(&mut bytes, b"key", b"v", 3, "w", 9);
        assert_eq!(entry_len(&bytes, "").map(|(len, _)| len), Ok(bytes.len()));
        assert_eq!(
            entry_len(&[&bytes[..], b"next"].concat(), "").map(|(len, _)| len),
            Ok(bytes.len()),
            "an entry ends where it says"
        );
        assert_eq!(
            (EntryFields::key(&bytes), EntryFields::value(&bytes), EntryFields::writer(&bytes)),
            (&b"key"[..], &b"v"[..], &b"w"[..])
        );
        assert_eq!((EntryFields::revision(&bytes), EntryFields::timestamp_us(&bytes)), (3, 9));
        for cut in 0..bytes.len() {
            assert!(entry_len(&bytes[..cut], "").is_err(), "cut at {cut}");
        }
        let mut huge = bytes.clone();
        huge[AT_VALUE_LEN..AT_VALUE_LEN + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(entry_len(&huge, "").unwrap_err().contains("a value of 4294967295"));
        let mut not_utf8 = bytes.clone();
        *not_utf8.last_mut().unwrap() = 0xff;
        assert!(entry_len(&not_utf8, "").unwrap_err().contains("writer id"));
    }

    /// The golden bytes of docs/FORMAT.md ("Store snapshot content"): an
    /// entry of key "k1", value "on", revision 3, writer "w", time
    /// 1,700,000,000,000,000 µs; and a v1 entry rewritten into the same.
    #[test]
    fn golden_bytes_of_a_snapshot_entry() {
        let mut v2 = Vec::new();
        encode_entry(&mut v2, b"k1", b"on", 3, "w", 1_700_000_000_000_000);
        let golden = "0300000000000000 00401e18240a0600 02000000 02000000 0100 6b31 6f6e 77";
        assert_eq!(hex(&v2), golden.replace(' ', ""));
        let mut v1 = Vec::new();
        encode_entry_v1(&mut v1, b"k1", b"on", 3, "w", 1_700_000_000_000_000);
        let golden_v1 = "02000000 6b31 02000000 6f6e 0300000000000000 0100 77 00401e18240a0600";
        assert_eq!(hex(&v1), golden_v1.replace(' ', ""));
        let (mut scratch, mut out) = (Vec::new(), Vec::new());
        let mut r = io::BufReader::with_capacity(5, &v1[..]); // fields straddle the buffer
        assert!(transcode_v1_entry(&mut r, &mut scratch, &mut out).unwrap());
        assert!(!transcode_v1_entry(&mut r, &mut scratch, &mut out).unwrap(), "a clean end");
        assert_eq!(out, v2);
        for cut in 1..v1.len() {
            let mut out = Vec::new();
            assert!(transcode_v1_entry(&mut &v1[..cut], &mut scratch, &mut out).is_err(), "cut at {cut}");
        }
        let huge = u32::MAX.to_le_bytes();
        assert!(transcode_v1_entry(&mut &huge[..], &mut scratch, &mut out).is_err());
    }

    pub(crate) fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }
}
