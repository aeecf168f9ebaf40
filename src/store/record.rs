//! How the store keeps one key in memory: a [`Record`] encoded into its
//! leaf's byte arena (`tree.rs`), with no allocation of its own, and the
//! [`Writers`] table that names each record's writer by a 4-byte id.
//!
//! A record is, with no padding:
//!
//! | bytes | field |
//! |--|--|
//! | 8 | revision, u64 LE |
//! | 8 | timestamp, µs since the Unix epoch, u64 LE |
//! | 4 | writer id, u32 LE (an index into the map's [`Writers`]) |
//! | 1–5 | key length, LEB128 |
//! | key length | key |
//! | the rest | value |
//!
//! The value's length is what is left of the record: the leaf keeps where
//! each record ends. 21 bytes beside the key and value for keys under 128
//! bytes, where a snapshot's entry (`codec.rs`, version 2) takes 26 plus
//! the writer's name: memory is not a file format, and only this module and
//! the tree read these bytes. A snapshot writes each record out as a
//! version-2 entry and a load encodes each entry back into a record.
//!
//! **Invariant:** the bytes of a record are what [`encode`] wrote, with a
//! writer id that the map's `Writers` holds.

use super::Entry;
use std::fmt;
use std::sync::Arc;

/// The fixed part of a record: revision, timestamp, writer id.
const FIXED_BYTES: usize = 20;

/// Bytes a record of this key and value takes.
pub(crate) fn encoded_len(key: &[u8], value: &[u8]) -> usize {
    FIXED_BYTES + leb128_len(key.len() as u32) + key.len() + value.len()
}

/// Writes a record into `out`, which is exactly [`encoded_len`] bytes.
pub(crate) fn encode(out: &mut [u8], key: &[u8], value: &[u8], revision: u64, writer: u32, timestamp_us: u64) {
    debug_assert_eq!(out.len(), encoded_len(key, value));
    out[..8].copy_from_slice(&revision.to_le_bytes());
    out[8..16].copy_from_slice(&timestamp_us.to_le_bytes());
    out[16..20].copy_from_slice(&writer.to_le_bytes());
    let mut at = FIXED_BYTES;
    let mut n = u32::try_from(key.len()).expect("keys are under 4 GiB");
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out[at] = byte;
            at += 1;
            break;
        }
        out[at] = byte | 0x80;
        at += 1;
    }
    out[at..at + key.len()].copy_from_slice(key);
    out[at + key.len()..].copy_from_slice(value);
}

fn leb128_len(n: u32) -> usize {
    match n {
        0..0x80 => 1,
        0x80..0x4000 => 2,
        0x4000..0x20_0000 => 3,
        0x20_0000..0x1000_0000 => 4,
        _ => 5,
    }
}

/// Where the key of the record `bytes` starts and how long it is.
fn key_span(bytes: &[u8]) -> (usize, usize) {
    let (mut len, mut shift, mut at) = (0usize, 0, FIXED_BYTES);
    loop {
        let byte = bytes[at];
        len |= ((byte & 0x7f) as usize) << shift;
        at += 1;
        if byte & 0x80 == 0 {
            return (at, len);
        }
        shift += 7;
    }
}

/// The key of the record `bytes`.
pub(crate) fn key(bytes: &[u8]) -> &[u8] {
    let (at, len) = key_span(bytes);
    &bytes[at..at + len]
}

/// The revision of the record `bytes`.
pub(crate) fn revision(bytes: &[u8]) -> u64 {
    u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes"))
}

/// The writer id of the record `bytes`.
pub(crate) fn writer_id(bytes: &[u8]) -> u32 {
    u32::from_le_bytes(bytes[16..20].try_into().expect("4 bytes"))
}

/// Sets the writer id of the record `bytes`.
pub(crate) fn set_writer_id(bytes: &mut [u8], id: u32) {
    bytes[16..20].copy_from_slice(&id.to_le_bytes());
}

/// The names of the writers the map's records were written by, each once:
/// a record holds its writer's index here. Persistent (an O(1) clone, as
/// the map's), and never shrinks while the map lives: a name no record
/// uses any more is dropped when the state is next loaded from a snapshot.
#[derive(Clone, Default)]
pub(crate) struct Writers {
    names: imbl::Vector<Arc<str>>,
    ids: imbl::HashMap<Arc<str>, u32>,
}

impl Writers {
    /// The id of `name`, added if it is new.
    pub(crate) fn id(&mut self, name: &str) -> u32 {
        if let Some(&id) = self.ids.get(name) {
            return id;
        }
        let id = u32::try_from(self.names.len()).expect("under 4 billion writer names");
        let name: Arc<str> = name.into();
        self.names.push_back(name.clone());
        self.ids.insert(name, id);
        id
    }

    /// The name of writer `id`.
    pub(crate) fn name(&self, id: u32) -> &Arc<str> {
        &self.names[id as usize]
    }

    /// How many names there are.
    pub(crate) fn len(&self) -> usize {
        self.names.len()
    }
}

/// A record in a leaf, borrowed, with the table that names its writer.
#[derive(Clone, Copy)]
pub(crate) struct Record<'a> {
    bytes: &'a [u8],
    key_at: u32,
    key_len: u32,
    writers: &'a Writers,
}

impl<'a> Record<'a> {
    pub(crate) fn new(bytes: &'a [u8], writers: &'a Writers) -> Record<'a> {
        let (key_at, key_len) = key_span(bytes);
        Record { bytes, key_at: key_at as u32, key_len: key_len as u32, writers }
    }

    pub(crate) fn key(&self) -> &'a [u8] {
        &self.bytes[self.key_at as usize..][..self.key_len as usize]
    }

    pub(crate) fn value(&self) -> &'a [u8] {
        &self.bytes[(self.key_at + self.key_len) as usize..]
    }

    pub(crate) fn revision(&self) -> u64 {
        revision(self.bytes)
    }

    pub(crate) fn timestamp_us(&self) -> u64 {
        u64::from_le_bytes(self.bytes[8..16].try_into().expect("8 bytes"))
    }

    pub(crate) fn writer(&self) -> &'a Arc<str> {
        self.writers.name(writer_id(self.bytes))
    }

    /// The entry, in its own `Arc`s (what `Store::get` hands out): the
    /// value is copied, the writer's name shared.
    pub(crate) fn to_entry(self) -> Entry {
        Entry {
            value: self.value().into(),
            revision: self.revision(),
            writer: self.writer().clone(),
            timestamp_us: self.timestamp_us(),
        }
    }
}

/// Records are equal if their fields are (their writers' ids may differ
/// between two maps).
impl PartialEq for Record<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
            && self.value() == other.value()
            && self.revision() == other.revision()
            && self.timestamp_us() == other.timestamp_us()
            && self.writer() == other.writer()
    }
}

impl fmt::Debug for Record<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Record")
            .field("key", &self.key())
            .field("value", &self.value())
            .field("revision", &self.revision())
            .field("writer", &self.writer())
            .field("timestamp_us", &self.timestamp_us())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_reads_back_its_fields() {
        let mut writers = Writers::default();
        let relay = writers.id("relay-1");
        assert_eq!((writers.id("relay-1"), writers.id("other"), writers.len()), (relay, relay + 1, 2));
        for key_len in [0usize, 1, 127, 128, 16_383, 16_384, 70_000] {
            let key = vec![7u8; key_len];
            let mut bytes = vec![0u8; encoded_len(&key, b"0.8")];
            encode(&mut bytes, &key, b"0.8", 7, relay, 1_700_000_000_000_000);
            let record = Record::new(&bytes, &writers);
            assert_eq!((record.key(), record.value()), (&key[..], &b"0.8"[..]), "a key of {key_len} bytes");
            assert_eq!(
                (record.revision(), &**record.writer(), record.timestamp_us()),
                (7, "relay-1", 1_700_000_000_000_000)
            );
            assert_eq!(super::key(&bytes), &key[..]);
            let entry = record.to_entry();
            assert_eq!((&*entry.value, entry.revision, &*entry.writer), (&b"0.8"[..], 7, "relay-1"));
        }
        let mut empty = vec![0u8; encoded_len(b"", b"")];
        assert_eq!(empty.len(), FIXED_BYTES + 1);
        encode(&mut empty, b"", b"", 1, 0, 0);
        let record = Record::new(&empty, &writers);
        assert_eq!((record.key(), record.value(), &**record.writer()), (&b""[..], &b""[..], "relay-1"));
    }
}
