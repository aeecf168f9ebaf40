//! [`MemoryJournal`]: the journal as a ring buffer in memory, for
//! development and tests. Holds at most `capacity` entries and evicts the
//! oldest; nothing survives the process. Same rules as the durable journal
//! (one conformance suite runs against both).

use super::entry::SignalTypes;
use super::entry::{JournalEntry, JournalOp, NewEntry, Param, ParamSnapshot};
use super::pattern::Pattern;
use super::query::{Cursor, Page, Query};
use super::subscribe::Subscription;
use super::{resolve, validate_entry, Journal};
use crate::{Error, Result};
use parking_lot::{Condvar, Mutex};
use std::collections::{BTreeMap, VecDeque};
use std::ops::RangeInclusive;
use std::time::Instant;

/// The capacity of [`MemoryJournal::default`].
pub const DEFAULT_CAPACITY_ENTRIES: usize = 10_000;

struct Inner {
    /// Consecutive sequence numbers, oldest first.
    entries: VecDeque<JournalEntry>,
    capacity: usize,
    latest_sequence: u64,
    last_timestamp_us: u64,
    params: BTreeMap<String, Param>,
    snapshot: Option<ParamSnapshot>,
}

/// A ring-buffer journal with a capacity.
pub struct MemoryJournal {
    inner: Mutex<Inner>,
    /// Notified after every append, for subscribers (`subscribe.rs`).
    appended: Condvar,
}

impl Default for MemoryJournal {
    fn default() -> Self {
        MemoryJournal::with_capacity(DEFAULT_CAPACITY_ENTRIES).expect("a valid capacity")
    }
}

impl MemoryJournal {
    /// A journal that keeps the newest `capacity` entries (at least 1).
    pub fn with_capacity(capacity: usize) -> Result<MemoryJournal> {
        if capacity == 0 {
            return Err(Error::InvalidArgument("a memory journal with capacity 0".into()));
        }
        Ok(MemoryJournal {
            inner: Mutex::new(Inner {
                entries: VecDeque::with_capacity(capacity.min(1 << 16)),
                capacity,
                latest_sequence: 0,
                last_timestamp_us: 0,
                params: BTreeMap::new(),
                snapshot: None,
            }),
            appended: Condvar::new(),
        })
    }

    /// How many entries the ring holds before it evicts the oldest.
    pub fn capacity(&self) -> usize {
        self.inner.lock().capacity
    }

    /// The oldest sequence number held.
    pub(super) fn first_held(&self) -> u64 {
        self.inner.lock().first_sequence()
    }

    /// `f` of the entry with `sequence`, waiting for it until `deadline`
    /// (`None`: for ever); `None` if it was not appended by then.
    pub(super) fn entry_at<T>(
        &self,
        sequence: u64,
        deadline: Option<Instant>,
        f: impl FnOnce(&JournalEntry) -> T,
    ) -> Option<Result<T>> {
        let mut inner = self.inner.lock();
        loop {
            let first = inner.first_sequence();
            if sequence < first {
                return Some(Err(Error::EntriesCompacted { sequence, oldest: first }));
            }
            if sequence <= inner.latest_sequence {
                return Some(Ok(f(&inner.entries[(sequence - first) as usize])));
            }
            match deadline {
                None => self.appended.wait(&mut inner),
                Some(deadline) => {
                    if self.appended.wait_until(&mut inner, deadline).timed_out() && inner.latest_sequence < sequence {
                        return None;
                    }
                }
            }
        }
    }
}

impl Inner {
    fn first_sequence(&self) -> u64 {
        self.latest_sequence + 1 - self.entries.len() as u64
    }

    fn push(&mut self, new: NewEntry) -> u64 {
        let sequence = self.latest_sequence + 1;
        let previous = self.params.get(&new.address).map(|p| p.revision);
        let entry = resolve(new, sequence, self.last_timestamp_us, previous);
        match entry.op {
            JournalOp::Set => {
                let param = Param {
                    address: entry.address.clone(),
                    value: entry.value.clone(),
                    revision: entry.revision.expect("a SET has a revision"),
                    writer: entry.author.clone(),
                    timestamp_us: entry.timestamp_us,
                };
                self.params.insert(entry.address.clone(), param);
            }
            JournalOp::Delete => {
                self.params.remove(&entry.address);
            }
            JournalOp::Publish => {}
        }
        self.latest_sequence = sequence;
        self.last_timestamp_us = entry.timestamp_us;
        if self.entries.len() == self.capacity {
            self.entries.pop_front();
        }
        self.entries.push_back(entry);
        sequence
    }

    /// Removes the entries below `sequence`; returns how many.
    fn cut(&mut self, sequence: u64) -> u64 {
        let removed = sequence.saturating_sub(self.first_sequence()).min(self.entries.len() as u64);
        self.entries.drain(..removed as usize);
        removed
    }
}

impl Journal for MemoryJournal {
    fn append(&self, entry: NewEntry) -> Result<u64> {
        validate_entry(&entry)?;
        let sequence = self.inner.lock().push(entry);
        self.appended.notify_all();
        Ok(sequence)
    }

    fn append_batch(&self, entries: Vec<NewEntry>) -> Result<RangeInclusive<u64>> {
        if entries.is_empty() {
            return Err(Error::InvalidArgument("an empty batch".into()));
        }
        entries.iter().try_for_each(validate_entry)?;
        let mut inner = self.inner.lock();
        let first = inner.latest_sequence + 1;
        let mut last = first;
        for entry in entries {
            last = inner.push(entry);
        }
        drop(inner);
        self.appended.notify_all();
        Ok(first..=last)
    }

    fn query(&self, query: &Query) -> Result<Page> {
        query.validate()?;
        let inner = self.inner.lock();
        let first_held = inner.first_sequence();
        let start_sequence = query.first_sequence(first_held);
        // Both keys are monotonic along the buffer: binary search each.
        let mut start = (start_sequence - first_held).min(inner.entries.len() as u64) as usize;
        if let Some(from) = query.from_us {
            start = start.max(inner.entries.partition_point(|e| e.timestamp_us < from));
        }
        let mut page = Page { entries: Vec::new(), next: None };
        for entry in inner.entries.range(start..) {
            if query.past_end(entry.timestamp_us) {
                break;
            }
            if query.admits(entry.timestamp_us, entry.signal_type, &entry.address) {
                page.entries.push(entry.clone());
                if page.entries.len() == query.limit {
                    page.next = Some(Cursor(entry.sequence));
                    break;
                }
            }
        }
        Ok(page)
    }

    fn subscribe(&self, pattern: &Pattern, types: SignalTypes, from: u64) -> Result<Subscription<'_>> {
        super::subscribe::memory(self, pattern, types, from)
    }

    fn latest_sequence(&self) -> u64 {
        self.inner.lock().latest_sequence
    }

    fn first_sequence(&self) -> u64 {
        self.inner.lock().first_sequence()
    }

    fn param(&self, address: &str) -> Option<Param> {
        self.inner.lock().params.get(address).cloned()
    }

    fn params(&self, pattern: &Pattern) -> Vec<Param> {
        self.inner.lock().params.values().filter(|p| pattern.matches(&p.address)).cloned().collect()
    }

    fn snapshot(&self) -> Result<u64> {
        let mut inner = self.inner.lock();
        let snapshot =
            ParamSnapshot { sequence: inner.latest_sequence, params: inner.params.values().cloned().collect() };
        inner.snapshot = Some(snapshot);
        Ok(inner.latest_sequence)
    }

    fn load_snapshot(&self) -> Result<Option<ParamSnapshot>> {
        Ok(self.inner.lock().snapshot.clone())
    }

    fn compact_before(&self, sequence: u64) -> Result<u64> {
        Ok(self.inner.lock().cut(sequence))
    }

    fn compact_before_time(&self, timestamp_us: u64) -> Result<u64> {
        let mut inner = self.inner.lock();
        let keep_from = inner.entries.partition_point(|e| e.timestamp_us < timestamp_us) as u64;
        let sequence = inner.first_sequence() + keep_from;
        Ok(inner.cut(sequence))
    }
}
