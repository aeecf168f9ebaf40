//! The journal's byte encodings: values, log records (entries and the
//! compaction floor) and the snapshot of the journal's state. Little-endian,
//! lengths before bytes; specified in docs/FORMAT.md ("Journal").
//!
//! Log record (the payload of one log record):
//! ```text
//! entry: u8 kind = 0x4A | u8 op | u8 signal type | u8 flags (bit 0: revision present)
//!        | u64 sequence | u64 timestamp_us | [u64 revision] | u16 author length | author
//!        | u16 address length | address | value
//! floor: u8 kind = 0x4B | u64 first kept sequence | u64 timestamp_us
//! ```
//! Value: `u8 tag` then 0 null | 1 false | 2 true | 3 i64 | 4 f64 (bits)
//! | 5 u32 length + UTF-8 | 6 u32 length + bytes | 7 u32 count + values
//! | 8 u32 count + (u16 key length + UTF-8 key + value), keys ascending.

use super::entry::{JournalEntry, JournalOp, Param, SignalType, Value};
use std::collections::BTreeMap;

pub(crate) const KIND_ENTRY: u8 = 0x4A;
pub(crate) const KIND_FLOOR: u8 = 0x4B;
/// Lists and maps nest at most this deep; a deeper value is refused.
pub const MAX_VALUE_DEPTH: usize = 64;

const FLAG_REVISION: u8 = 1;

/// A decoding failure: what was wrong, at which byte of the record.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct JournalDecodeError {
    /// The byte of the payload where decoding failed.
    pub offset: usize,
    /// What was wrong there.
    pub what: String,
}

impl std::fmt::Display for JournalDecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "at byte {}: {}", self.offset, self.what)
    }
}

type Decoded<T> = Result<T, JournalDecodeError>;

/// Appends the encoding of `value` to `out`.
pub fn encode_value(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Null => out.push(0),
        Value::Bool(false) => out.push(1),
        Value::Bool(true) => out.push(2),
        Value::Int(i) => {
            out.push(3);
            out.extend_from_slice(&i.to_le_bytes());
        }
        Value::Float(x) => {
            out.push(4);
            out.extend_from_slice(&x.to_bits().to_le_bytes());
        }
        Value::String(s) => {
            out.push(5);
            put_u32_len(out, s.len());
            out.extend_from_slice(s.as_bytes());
        }
        Value::Bytes(b) => {
            out.push(6);
            put_u32_len(out, b.len());
            out.extend_from_slice(b);
        }
        Value::List(items) => {
            out.push(7);
            put_u32_len(out, items.len());
            for item in items {
                encode_value(out, item);
            }
        }
        Value::Map(map) => {
            out.push(8);
            put_u32_len(out, map.len());
            for (k, v) in map {
                put_str16(out, k);
                encode_value(out, v);
            }
        }
    }
}

/// The fields of an entry record, borrowing its bytes; the value is decoded
/// only when asked for, so filters run before any allocation.
#[derive(Clone, Copy, Debug)]
pub(crate) struct EntryView<'a> {
    pub op: JournalOp,
    pub signal_type: SignalType,
    pub sequence: u64,
    pub timestamp_us: u64,
    pub revision: Option<u64>,
    pub author: &'a str,
    pub address: &'a str,
    /// The encoded value, exactly (checked when the record was viewed).
    pub value: &'a [u8],
}

impl EntryView<'_> {
    pub fn value(&self) -> Value {
        let mut r = ByteReader { bytes: self.value, at: 0 };
        read_value(&mut r, 0).expect("the value was checked when the record was viewed")
    }

    pub fn to_entry(self) -> JournalEntry {
        JournalEntry {
            sequence: self.sequence,
            timestamp_us: self.timestamp_us,
            author: self.author.to_owned(),
            address: self.address.to_owned(),
            signal_type: self.signal_type,
            value: self.value(),
            revision: self.revision,
            op: self.op,
        }
    }
}

/// A journal log record.
#[derive(Clone, Copy, Debug)]
pub(crate) enum JournalRecordView<'a> {
    Entry(EntryView<'a>),
    /// Every entry below `first_kept` is compacted away.
    Floor {
        first_kept: u64,
    },
}

/// Encodes an entry record. `revision` must already be resolved.
pub(crate) fn encode_entry(out: &mut Vec<u8>, entry: &JournalEntry) {
    out.push(KIND_ENTRY);
    out.push(entry.op as u8);
    out.push(entry.signal_type as u8);
    out.push(if entry.revision.is_some() { FLAG_REVISION } else { 0 });
    out.extend_from_slice(&entry.sequence.to_le_bytes());
    out.extend_from_slice(&entry.timestamp_us.to_le_bytes());
    if let Some(revision) = entry.revision {
        out.extend_from_slice(&revision.to_le_bytes());
    }
    put_str16(out, &entry.author);
    put_str16(out, &entry.address);
    encode_value(out, &entry.value);
}

/// Writes an encoded entry's sequence, time and (for an entry encoded
/// with one) revision into their fixed-offset fields, as the journal's
/// sequencer numbers an entry encoded before it: the record stays one
/// that decodes.
pub(crate) fn patch_entry(record: &mut [u8], sequence: u64, timestamp_us: u64, revision: Option<u64>) {
    assert!(record.len() >= 20 && record[0] == KIND_ENTRY, "an encoded entry");
    record[4..12].copy_from_slice(&sequence.to_le_bytes());
    record[12..20].copy_from_slice(&timestamp_us.to_le_bytes());
    assert_eq!(record[3] & FLAG_REVISION != 0, revision.is_some(), "the revision field is there exactly when given");
    if let Some(revision) = revision {
        record[20..28].copy_from_slice(&revision.to_le_bytes());
    }
}

pub(crate) fn encode_floor(out: &mut Vec<u8>, first_kept: u64, timestamp_us: u64) {
    out.push(KIND_FLOOR);
    out.extend_from_slice(&first_kept.to_le_bytes());
    out.extend_from_slice(&timestamp_us.to_le_bytes());
}

pub(crate) fn decode_record(bytes: &[u8]) -> Decoded<JournalRecordView<'_>> {
    let mut r = ByteReader { bytes, at: 0 };
    let record = match r.u8()? {
        KIND_ENTRY => {
            let op = r.u8()?;
            let op = JournalOp::from_u8(op).ok_or_else(|| r.error(format!("unknown operation {op}")))?;
            let signal = r.u8()?;
            let signal_type =
                SignalType::from_u8(signal).ok_or_else(|| r.error(format!("unknown signal type {signal}")))?;
            let flags = r.u8()?;
            if flags & !FLAG_REVISION != 0 {
                return Err(r.error(format!("unknown flags {flags:#04x}")));
            }
            let sequence = r.u64()?;
            let timestamp_us = r.u64()?;
            let revision = if flags & FLAG_REVISION != 0 { Some(r.u64()?) } else { None };
            let author = r.str16()?;
            let address = r.str16()?;
            let value_start = r.at;
            skip_value(&mut r, 0)?;
            let value = &bytes[value_start..r.at];
            JournalRecordView::Entry(EntryView {
                op,
                signal_type,
                sequence,
                timestamp_us,
                revision,
                author,
                address,
                value,
            })
        }
        KIND_FLOOR => {
            let first_kept = r.u64()?;
            r.u64()?; // when the compaction was made: for people reading the log
            JournalRecordView::Floor { first_kept }
        }
        other => return Err(r.error(format!("not a journal record (kind {other:#04x})"))),
    };
    if r.at != bytes.len() {
        return Err(r.error(format!("{} bytes after the record", bytes.len() - r.at)));
    }
    Ok(record)
}

fn read_value(r: &mut ByteReader<'_>, depth: usize) -> Decoded<Value> {
    if depth > MAX_VALUE_DEPTH {
        return Err(r.error(format!("a value nested deeper than {MAX_VALUE_DEPTH}")));
    }
    Ok(match r.u8()? {
        0 => Value::Null,
        1 => Value::Bool(false),
        2 => Value::Bool(true),
        3 => Value::Int(r.u64()? as i64),
        4 => Value::Float(f64::from_bits(r.u64()?)),
        5 => {
            let len = r.u32()? as usize;
            Value::String(r.utf8(len)?.to_owned())
        }
        6 => {
            let len = r.u32()? as usize;
            Value::Bytes(r.take(len)?.to_vec())
        }
        7 => {
            let count = r.u32()? as usize;
            // Each item takes at least one byte: bound the allocation by what is left.
            let mut items = Vec::with_capacity(count.min(r.remaining()));
            for _ in 0..count {
                items.push(read_value(r, depth + 1)?);
            }
            Value::List(items)
        }
        8 => {
            let count = r.u32()? as usize;
            let mut map = BTreeMap::new();
            let mut last: Option<&str> = None;
            for _ in 0..count {
                let key = r.str16()?;
                if last.is_some_and(|last| last >= key) {
                    return Err(r.error(format!("map key {key:?} out of order")));
                }
                last = Some(key);
                map.insert(key.to_owned(), read_value(r, depth + 1)?);
            }
            Value::Map(map)
        }
        tag => return Err(r.error(format!("unknown value tag {tag}"))),
    })
}

/// Decodes one value that fills `bytes` exactly.
pub fn decode_value(bytes: &[u8]) -> Result<Value, JournalDecodeError> {
    let mut r = ByteReader { bytes, at: 0 };
    let value = read_value(&mut r, 0)?;
    if r.at != bytes.len() {
        return Err(r.error(format!("{} bytes after the value", bytes.len() - r.at)));
    }
    Ok(value)
}

/// Checks a value as [`read_value`] does, without building it.
fn skip_value(r: &mut ByteReader<'_>, depth: usize) -> Decoded<()> {
    if depth > MAX_VALUE_DEPTH {
        return Err(r.error(format!("a value nested deeper than {MAX_VALUE_DEPTH}")));
    }
    match r.u8()? {
        0..=2 => {}
        3 | 4 => {
            r.take(8)?;
        }
        5 => {
            let len = r.u32()? as usize;
            r.utf8(len)?;
        }
        6 => {
            let len = r.u32()? as usize;
            r.take(len)?;
        }
        7 => {
            for _ in 0..r.u32()? {
                skip_value(r, depth + 1)?;
            }
        }
        8 => {
            let mut last: Option<&str> = None;
            for _ in 0..r.u32()? {
                let key = r.str16()?;
                if last.is_some_and(|last| last >= key) {
                    return Err(r.error(format!("map key {key:?} out of order")));
                }
                last = Some(key);
                skip_value(r, depth + 1)?;
            }
        }
        tag => return Err(r.error(format!("unknown value tag {tag}"))),
    }
    Ok(())
}

/// The sequence number, timestamp and signal type byte of an entry record,
/// read from their fixed offsets without decoding the rest (`None` for a
/// record that is not an entry, or too short to be one).
pub(crate) fn peek_entry(bytes: &[u8]) -> Option<(u64, u64, u8)> {
    if bytes.len() < 20 || bytes[0] != KIND_ENTRY {
        return None;
    }
    let sequence = u64::from_le_bytes(bytes[4..12].try_into().expect("8 bytes"));
    let timestamp_us = u64::from_le_bytes(bytes[12..20].try_into().expect("8 bytes"));
    Some((sequence, timestamp_us, bytes[2]))
}

/// Encodes one parameter of a snapshot:
/// `u16 address length | address | u64 revision | u16 writer length | writer | u64 timestamp_us | value`.
pub(crate) fn encode_param(out: &mut Vec<u8>, param: &Param) {
    put_str16(out, &param.address);
    out.extend_from_slice(&param.revision.to_le_bytes());
    put_str16(out, &param.writer);
    out.extend_from_slice(&param.timestamp_us.to_le_bytes());
    encode_value(out, &param.value);
}

/// Reads a journal payload front to back; a failure says at which byte.
pub(crate) struct ByteReader<'a> {
    pub bytes: &'a [u8],
    pub at: usize,
}

impl<'a> ByteReader<'a> {
    pub fn error(&self, what: String) -> JournalDecodeError {
        JournalDecodeError { offset: self.at, what }
    }

    fn remaining(&self) -> usize {
        self.bytes.len() - self.at
    }

    pub fn take(&mut self, n: usize) -> Decoded<&'a [u8]> {
        let end = self.at.checked_add(n).filter(|&end| end <= self.bytes.len());
        let end = end.ok_or_else(|| self.error(format!("{n} bytes wanted, {} left", self.remaining())))?;
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }

    pub fn u8(&mut self) -> Decoded<u8> {
        Ok(self.take(1)?[0])
    }

    pub fn u16(&mut self) -> Decoded<u16> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().expect("2 bytes")))
    }

    pub fn u32(&mut self) -> Decoded<u32> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }

    pub fn u64(&mut self) -> Decoded<u64> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }

    fn utf8(&mut self, len: usize) -> Decoded<&'a str> {
        let at = self.at;
        let bytes = self.take(len)?;
        std::str::from_utf8(bytes).map_err(|e| JournalDecodeError { offset: at, what: format!("bad UTF-8: {e}") })
    }

    pub fn str16(&mut self) -> Decoded<&'a str> {
        let len = self.u16()? as usize;
        self.utf8(len)
    }

    pub fn value(&mut self) -> Decoded<Value> {
        read_value(self, 0)
    }
}

fn put_u32_len(out: &mut Vec<u8>, len: usize) {
    out.extend_from_slice(&u32::try_from(len).expect("checked by the journal: under 4 GiB").to_le_bytes());
}

pub(crate) fn put_str16(out: &mut Vec<u8>, s: &str) {
    let len = u16::try_from(s.len()).expect("checked by the journal: under 64 KiB");
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> JournalEntry {
        let mut map = BTreeMap::new();
        map.insert("a".to_string(), Value::List(vec![Value::Int(-3), Value::Float(0.5), Value::Null]));
        map.insert("b".to_string(), Value::Bytes(vec![1, 2, 3]));
        JournalEntry {
            sequence: 7,
            timestamp_us: 1_700_000_000_000_000,
            author: "relay-1".into(),
            address: "/lights/kitchen".into(),
            signal_type: SignalType::Param,
            value: Value::Map(map),
            revision: Some(4),
            op: JournalOp::Set,
        }
    }

    #[test]
    fn records_round_trip_and_truncations_are_refused() {
        let mut publish = sample();
        publish.op = JournalOp::Publish;
        publish.revision = None;
        publish.value = Value::String("ü".into());
        for entry in [sample(), publish] {
            let mut bytes = Vec::new();
            encode_entry(&mut bytes, &entry);
            match decode_record(&bytes).unwrap() {
                JournalRecordView::Entry(view) => assert_eq!(view.to_entry(), entry),
                other => panic!("decoded {other:?}"),
            }
            for cut in 0..bytes.len() {
                assert!(decode_record(&bytes[..cut]).is_err(), "a record cut at {cut} was accepted");
            }
            bytes.push(0);
            assert!(decode_record(&bytes).is_err());
        }
    }

    #[test]
    fn golden_bytes_of_a_small_entry() {
        let entry = JournalEntry {
            sequence: 1,
            timestamp_us: 2,
            author: "a".into(),
            address: "/x".into(),
            signal_type: SignalType::Event,
            value: Value::Bool(true),
            revision: None,
            op: JournalOp::Publish,
        };
        let mut bytes = Vec::new();
        encode_entry(&mut bytes, &entry);
        // The same bytes are printed in docs/FORMAT.md.
        let golden: &[u8] =
            &[0x4A, 2, 2, 0, 1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 1, 0, b'a', 2, 0, b'/', b'x', 2];
        assert_eq!(bytes, golden);
    }

    #[test]
    fn hostile_values_are_refused_without_huge_allocations() {
        // A list claiming 4 billion items in 5 bytes.
        let mut bytes = vec![0x4A, 2, 2, 0];
        bytes.extend_from_slice(&[0; 16]);
        bytes.extend_from_slice(&[0, 0, 0, 0]);
        bytes.extend_from_slice(&[7, 0xff, 0xff, 0xff, 0xff]);
        assert!(decode_record(&bytes).is_err());
        // Nesting past the limit.
        let mut deep = vec![0x4A, 2, 2, 0];
        deep.extend_from_slice(&[0; 16]);
        deep.extend_from_slice(&[0, 0, 0, 0]);
        for _ in 0..=MAX_VALUE_DEPTH + 1 {
            deep.extend_from_slice(&[7, 1, 0, 0, 0]);
        }
        deep.push(0);
        let err = decode_record(&deep).unwrap_err();
        assert!(err.what.contains("deeper"), "{err}");
        // Map keys out of order.
        let mut map = vec![0x4A, 2, 2, 0];
        map.extend_from_slice(&[0; 16]);
        map.extend_from_slice(&[0, 0, 0, 0]);
        map.extend_from_slice(&[8, 2, 0, 0, 0, 1, 0, b'b', 0, 1, 0, b'a', 0]);
        assert!(decode_record(&map).unwrap_err().what.contains("out of order"));
    }
}
