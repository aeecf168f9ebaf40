//! The store's byte encodings: log record payloads (operations) and
//! snapshot entries. Little-endian, lengths before bytes; specified in
//! docs/FORMAT.md.
//!
//! Operation (one log record):
//! ```text
//! u8 tag (1 = put, 2 = delete) | u64 timestamp_us | u16 writer length | writer
//! | u32 key length | key | put only: u32 value length | value
//! ```
//! Snapshot entry (a snapshot's content is a sequence of them):
//! ```text
//! u32 key length | key | u32 value length | value | u64 revision
//! | u16 writer length | writer | u64 timestamp_us
//! ```

use super::Entry;
use std::io::{self, BufRead};
use std::sync::Arc;

const TAG_PUT: u8 = 1;
const TAG_DELETE: u8 = 2;

/// A store operation, borrowing its bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Op<'a> {
    Put { key: &'a [u8], value: &'a [u8], writer: &'a str, timestamp_us: u64 },
    Delete { key: &'a [u8], writer: &'a str, timestamp_us: u64 },
}

impl Op<'_> {
    pub(crate) fn timestamp_us(&self) -> u64 {
        match *self {
            Op::Put { timestamp_us, .. } | Op::Delete { timestamp_us, .. } => timestamp_us,
        }
    }
}

pub(crate) fn encode_op(out: &mut Vec<u8>, op: &Op<'_>) {
    let (tag, key, value, writer, timestamp_us) = match *op {
        Op::Put { key, value, writer, timestamp_us } => (TAG_PUT, key, Some(value), writer, timestamp_us),
        Op::Delete { key, writer, timestamp_us } => (TAG_DELETE, key, None, writer, timestamp_us),
    };
    out.push(tag);
    out.extend_from_slice(&timestamp_us.to_le_bytes());
    put_str16(out, writer);
    put_bytes32(out, key);
    if let Some(value) = value {
        put_bytes32(out, value);
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

pub(crate) fn encode_entry(out: &mut Vec<u8>, key: &[u8], entry: &Entry) {
    put_bytes32(out, key);
    put_bytes32(out, &entry.value);
    out.extend_from_slice(&entry.revision.to_le_bytes());
    put_str16(out, &entry.writer);
    out.extend_from_slice(&entry.timestamp_us.to_le_bytes());
}

/// Reads the next snapshot entry, or `None` at a clean end. The key is made
/// by `make_key` and the value copied into its `Arc`, both straight from the
/// reader's buffer (through `scratch` only when one straddles the buffer's
/// end); the writer id goes through `intern`, which shares one `Arc<str>`
/// per writer (and checks the bytes are UTF-8).
pub(crate) fn read_entry<K>(
    r: &mut impl BufRead,
    scratch: &mut Vec<u8>,
    intern: &mut impl FnMut(&[u8]) -> io::Result<Arc<str>>,
    make_key: impl FnOnce(&[u8]) -> K,
) -> io::Result<Option<(K, Entry)>> {
    if r.fill_buf()?.is_empty() {
        return Ok(None);
    }
    let key_len = read_len32(r)?;
    let key = with_field(r, scratch, key_len, |b| Ok(make_key(b)))?;
    let value_len = read_len32(r)?;
    let value: Arc<[u8]> = with_field(r, scratch, value_len, |b| Ok(Arc::from(b)))?;
    let revision = u64::from_le_bytes(read_array(r)?);
    let writer_len = u16::from_le_bytes(read_array(r)?) as usize;
    let writer = with_field(r, scratch, writer_len, &mut *intern)?;
    let timestamp_us = u64::from_le_bytes(read_array(r)?);
    Ok(Some((key, Entry { value, revision, writer, timestamp_us })))
}

/// The writer id in `bytes`, as `last` if it is the same one: a store has
/// few writers and many keys.
pub(crate) fn intern_writer(last: &mut Option<Arc<str>>, bytes: &[u8]) -> io::Result<Arc<str>> {
    match last {
        Some(last) if last.as_bytes() == bytes => Ok(last.clone()),
        _ => {
            let writer = std::str::from_utf8(bytes).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            Ok(last.insert(Arc::from(writer)).clone())
        }
    }
}

/// The largest key or value a snapshot entry may claim before anything is
/// allocated for it (the log's own record limit).
const MAX_FIELD_BYTES: usize = crate::format::MAX_RECORD_BYTES as usize;

fn read_len32(r: &mut impl BufRead) -> io::Result<usize> {
    let len = u32::from_le_bytes(read_array(r)?) as usize;
    if len > MAX_FIELD_BYTES {
        return Err(io::Error::new(io::ErrorKind::InvalidData, format!("a field of {len} bytes")));
    }
    Ok(len)
}

/// Calls `f` on the next `len` bytes: in the reader's buffer if they are
/// all there, else read into `scratch`.
fn with_field<T>(
    r: &mut impl BufRead,
    scratch: &mut Vec<u8>,
    len: usize,
    f: impl FnOnce(&[u8]) -> io::Result<T>,
) -> io::Result<T> {
    let buffered = r.fill_buf()?;
    if buffered.len() >= len {
        let out = f(&buffered[..len])?;
        r.consume(len);
        return Ok(out);
    }
    scratch.resize(len, 0);
    r.read_exact(scratch)?;
    f(scratch)
}

fn read_array<const N: usize>(r: &mut impl BufRead) -> io::Result<[u8; N]> {
    let mut bytes = [0u8; N];
    r.read_exact(&mut bytes)?;
    Ok(bytes)
}

fn put_str16(out: &mut Vec<u8>, s: &str) {
    let len = u16::try_from(s.len()).expect("writer ids are under 64 KiB");
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn put_bytes32(out: &mut Vec<u8>, bytes: &[u8]) {
    let len = u32::try_from(bytes.len()).expect("keys and values are under 4 GiB");
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(bytes);
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
mod tests {
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
    fn entries_round_trip_and_a_huge_length_is_refused_before_allocating() {
        let entry = Entry { value: Arc::from(&b"v"[..]), revision: 3, writer: "w".into(), timestamp_us: 9 };
        let mut bytes = Vec::new();
        encode_entry(&mut bytes, b"key", &entry);
        encode_entry(&mut bytes, b"k2", &entry);
        let mut r = io::BufReader::new(&bytes[..]);
        let mut last = None;
        let (mut scratch, mut intern) = (Vec::new(), |w: &[u8]| intern_writer(&mut last, w));
        assert_eq!(
            read_entry(&mut r, &mut scratch, &mut intern, |b: &[u8]| Arc::<[u8]>::from(b)).unwrap(),
            Some((Arc::from(&b"key"[..]), entry.clone()))
        );
        assert_eq!(
            read_entry(&mut r, &mut scratch, &mut intern, |b: &[u8]| Arc::<[u8]>::from(b)).unwrap().unwrap().0.as_ref(),
            b"k2"
        );
        assert_eq!(read_entry(&mut r, &mut scratch, &mut intern, |b: &[u8]| Arc::<[u8]>::from(b)).unwrap(), None);
        let huge = u32::MAX.to_le_bytes();
        assert!(read_entry(&mut io::BufReader::new(&huge[..]), &mut scratch, &mut intern, |b: &[u8]| {
            Arc::<[u8]>::from(b)
        })
        .is_err());
    }
}
