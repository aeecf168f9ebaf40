//! The journal: typed history of every change and event, with REPLAY
//! queries by address pattern, time range and signal type, compaction by
//! sequence or age, and two backends behind one [`Journal`] trait:
//!
//! - [`DurableJournal`] (`durable.rs`): on walden's log, through the
//!   [`crate::Engine`]. Its log records *are* the state changes: a SET
//!   record updates the parameter state, a PUBLISH is only journaled, a
//!   DELETE removes the parameter. One log on disk; recovery is the latest
//!   snapshot (parameter state plus journal metadata and the time index)
//!   plus replay of the records after it.
//! - [`MemoryJournal`] (`memory.rs`): a ring buffer that evicts its oldest
//!   entries, for development and tests.
//!
//! Files: `entry.rs` the types, `codec.rs` the bytes, `pattern.rs` address
//! patterns, `query.rs` queries and cursors, `age.rs` durations like `7d`,
//! `subscribe.rs` subscriptions (REPLAY, then follow).

mod age;
pub mod codec;
mod durable;
mod entry;
mod memory;
mod pattern;
mod query;
mod subscribe;

pub use age::parse_age;
pub use durable::{DurableJournal, JournalOptions, JournalState, INDEX_EVERY_ENTRIES};
pub use entry::{JournalEntry, JournalOp, NewEntry, Param, ParamSnapshot, SignalType, SignalTypes, Value};
pub use memory::{MemoryJournal, DEFAULT_CAPACITY_ENTRIES};
pub use pattern::{validate_address, Pattern, MAX_ADDRESS_BYTES};
pub use query::{Cursor, Page, Query, DEFAULT_LIMIT_ENTRIES};
pub use subscribe::Subscription;

use crate::{Error, Result};
use std::ops::RangeInclusive;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The operations every journal backend offers. Entries are ordered by
/// their gap-free sequence number; timestamps never go backwards.
pub trait Journal: Send + Sync {
    /// Appends one entry; returns its sequence number once it is stored
    /// (for the durable backend: acknowledged by the log's fsync mode).
    fn append(&self, entry: NewEntry) -> Result<u64>;

    /// Appends entries all or nothing (one log batch); returns their
    /// sequence numbers. An empty batch is an error.
    fn append_batch(&self, entries: Vec<NewEntry>) -> Result<RangeInclusive<u64>>;

    /// One page of the entries that match `query`, in sequence order.
    fn query(&self, query: &Query) -> Result<Page>;

    /// Up to `limit` entries with a sequence number greater than `sequence`.
    fn since(&self, sequence: u64, limit: usize) -> Result<Vec<JournalEntry>> {
        Ok(self.query(&Query::all().after(Cursor(sequence)).limit(limit))?.entries)
    }

    /// The entries whose address matches `pattern` and whose signal type
    /// is in `types`, from sequence `from` on: those held (REPLAY), then
    /// each new one as it is stored, in order, no gap, no duplicate. From
    /// now: `latest_sequence() + 1`. Below the oldest held:
    /// [`Error::EntriesCompacted`]. See [`Subscription`].
    fn subscribe(&self, pattern: &Pattern, types: SignalTypes, from: u64) -> Result<Subscription<'_>>;

    /// The sequence number of the last entry appended (0 before the first).
    /// Compaction does not change it.
    fn latest_sequence(&self) -> u64;

    /// The sequence number of the oldest entry still held (the latest
    /// sequence plus one when none is).
    fn first_sequence(&self) -> u64;

    /// How many entries are held: `latest - first + 1`, since sequence
    /// numbers are gap-free and compaction removes a prefix.
    fn len(&self) -> u64 {
        self.latest_sequence() + 1 - self.first_sequence()
    }

    /// Whether no entry is held (none appended yet, or all compacted).
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The current state of one parameter.
    fn param(&self, address: &str) -> Option<Param>;

    /// Every parameter whose address matches, in address order.
    fn params(&self, pattern: &Pattern) -> Vec<Param>;

    /// Takes a snapshot of the parameter state now; returns the last
    /// sequence number it covers.
    fn snapshot(&self) -> Result<u64>;

    /// The latest snapshot's parameter state, if a snapshot was taken.
    fn load_snapshot(&self) -> Result<Option<ParamSnapshot>>;

    /// Removes every entry with a sequence number below `sequence`, for
    /// good; returns exactly how many entries were removed. Parameter state
    /// is not history and stays.
    fn compact_before(&self, sequence: u64) -> Result<u64>;

    /// Removes every entry with a timestamp below `timestamp_us`; returns
    /// exactly how many were removed.
    fn compact_before_time(&self, timestamp_us: u64) -> Result<u64>;

    /// Removes every entry older than `age` (as of now): see [`parse_age`].
    fn compact_older_than(&self, age: Duration) -> Result<u64> {
        let age_us = u64::try_from(age.as_micros()).unwrap_or(u64::MAX);
        self.compact_before_time(now_us().saturating_sub(age_us))
    }
}

/// Microseconds since the Unix epoch, now.
pub fn now_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64)
}

/// How deep a value nests (a scalar is 0).
fn value_depth(value: &Value) -> usize {
    match value {
        Value::List(items) => 1 + items.iter().map(value_depth).max().unwrap_or(0),
        Value::Map(map) => 1 + map.values().map(value_depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// Checks what an entry's encoding needs: a valid address, an author and
/// map keys that fit a u16 length, a value no deeper than the decoder takes.
fn validate_entry(entry: &NewEntry) -> Result<()> {
    validate_address(&entry.address)?;
    if entry.author.len() > u16::MAX as usize {
        return Err(Error::InvalidArgument(format!("an author id of {} bytes (at most 65,535)", entry.author.len())));
    }
    if value_depth(&entry.value) > codec::MAX_VALUE_DEPTH {
        return Err(Error::InvalidArgument(format!(
            "the value for {} nests deeper than {}",
            entry.address,
            codec::MAX_VALUE_DEPTH
        )));
    }
    fn keys_fit(value: &Value) -> bool {
        match value {
            Value::List(items) => items.iter().all(keys_fit),
            Value::Map(map) => map.iter().all(|(k, v)| k.len() <= u16::MAX as usize && keys_fit(v)),
            _ => true,
        }
    }
    if !keys_fit(&entry.value) {
        return Err(Error::InvalidArgument(format!("a map key over 65,535 bytes in the value for {}", entry.address)));
    }
    Ok(())
}

/// Turns a new entry into the stored one: the next sequence number, the
/// timestamp clamped to the last one, and for a SET the revision (given,
/// or the previous one plus one). The same rules for both backends.
fn resolve(new: NewEntry, sequence: u64, last_timestamp_us: u64, previous_revision: Option<u64>) -> JournalEntry {
    let timestamp_us = new.timestamp_us.unwrap_or_else(now_us).max(last_timestamp_us);
    let revision = match new.op {
        JournalOp::Set => Some(new.revision.unwrap_or(previous_revision.unwrap_or(0) + 1)),
        JournalOp::Publish | JournalOp::Delete => None,
    };
    JournalEntry {
        sequence,
        timestamp_us,
        author: new.author,
        address: new.address,
        signal_type: new.signal_type,
        value: new.value,
        revision,
        op: new.op,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolve_clamps_time_and_assigns_revisions() {
        let e = resolve(NewEntry::set("a", "/x", Value::Int(1)).at(5), 3, 9, Some(4));
        assert_eq!((e.sequence, e.timestamp_us, e.revision), (3, 9, Some(5)));
        let e = resolve(NewEntry::publish(SignalType::Event, "a", "/x", Value::Null).at(20), 4, 9, Some(4));
        assert_eq!((e.timestamp_us, e.revision), (20, None));
        let mut given = NewEntry::set("a", "/x", Value::Null).at(1);
        given.revision = Some(42);
        assert_eq!(resolve(given, 1, 0, Some(3)).revision, Some(42));
    }

    #[test]
    fn entries_the_encoding_cannot_hold_are_refused() {
        let mut deep = Value::Null;
        for _ in 0..=codec::MAX_VALUE_DEPTH {
            deep = Value::List(vec![deep]);
        }
        assert!(validate_entry(&NewEntry::set("a", "/x", deep)).is_err());
        assert!(validate_entry(&NewEntry::set("a", "x", Value::Null)).is_err());
        assert!(validate_entry(&NewEntry::set(&"a".repeat(70_000), "/x", Value::Null)).is_err());
        assert!(validate_entry(&NewEntry::set("a", "/x", Value::Null)).is_ok());
    }
}
