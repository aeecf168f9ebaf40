//! [`Record`]: what the store keeps for one key, in one allocation: the
//! key's snapshot entry (version 2, `codec.rs`), that is its revision,
//! time, key, value and writer id behind one reference count.
//!
//! One allocation per key instead of three (key, value and writer used to
//! be `Arc`s of their own beside the entry in the tree's node) is most of
//! what a key costs in memory; a snapshot writes the records' bytes out as
//! they are and a load copies them back in without parsing a field.
//!
//! **Invariant:** the bytes of a record are one entry that
//! [`codec::entry_len`] accepts, exactly: a record is made only from bytes
//! `encode_entry` wrote or `entry_len` checked.

use super::codec::{self, EntryFields};
use super::Entry;
use std::fmt;
use std::sync::Arc;

/// A key and its entry, encoded, shared by every version of the map that
/// holds it.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Record(Arc<[u8]>);

impl Record {
    /// A record of these fields, encoded through `scratch` (kept by the
    /// caller so that a put allocates once, for the record itself).
    pub(crate) fn new(
        scratch: &mut Vec<u8>,
        key: &[u8],
        value: &[u8],
        revision: u64,
        writer: &str,
        timestamp_us: u64,
    ) -> Record {
        scratch.clear();
        codec::encode_entry(scratch, key, value, revision, writer, timestamp_us);
        Record(Arc::from(&scratch[..]))
    }

    /// The record of an entry that [`codec::entry_len`] accepted, all of
    /// `entry`.
    pub(crate) fn from_checked_entry(entry: &[u8]) -> Record {
        debug_assert_eq!(codec::entry_len(entry), Ok(entry.len()));
        Record(Arc::from(entry))
    }

    /// The encoded entry, as a snapshot holds it.
    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    pub(crate) fn key(&self) -> &[u8] {
        EntryFields::key(&self.0)
    }

    pub(crate) fn value(&self) -> &[u8] {
        EntryFields::value(&self.0)
    }

    pub(crate) fn revision(&self) -> u64 {
        EntryFields::revision(&self.0)
    }

    pub(crate) fn timestamp_us(&self) -> u64 {
        EntryFields::timestamp_us(&self.0)
    }

    pub(crate) fn writer(&self) -> &str {
        std::str::from_utf8(EntryFields::writer(&self.0)).expect("a record's writer id was checked when it was made")
    }

    /// The entry, in its own `Arc`s (what `Store::get` hands out).
    pub(crate) fn to_entry(&self) -> Entry {
        Entry {
            value: self.value().into(),
            revision: self.revision(),
            writer: self.writer().into(),
            timestamp_us: self.timestamp_us(),
        }
    }
}

impl fmt::Debug for Record {
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
    fn a_record_reads_back_its_fields_and_is_its_snapshot_entry() {
        let mut scratch = vec![9; 3];
        let record = Record::new(&mut scratch, b"/lights/kitchen", b"0.8", 7, "relay-1", 1_700_000_000_000_000);
        assert_eq!(record.key(), b"/lights/kitchen");
        assert_eq!(record.value(), b"0.8");
        assert_eq!((record.revision(), record.writer(), record.timestamp_us()), (7, "relay-1", 1_700_000_000_000_000));
        assert_eq!(codec::entry_len(record.as_bytes()), Ok(record.as_bytes().len()));
        assert_eq!(Record::from_checked_entry(record.as_bytes()), record);
        let entry = record.to_entry();
        assert_eq!((&*entry.value, entry.revision, &*entry.writer), (&b"0.8"[..], 7, "relay-1"));
        let empty = Record::new(&mut scratch, b"", b"", 1, "", 0);
        assert_eq!((empty.key(), empty.value(), empty.writer()), (&b""[..], &b""[..], ""));
        assert_eq!(empty.as_bytes().len(), codec::ENTRY_HEADER_BYTES);
    }
}
