//! [`Subscription`] ([`super::Journal::subscribe`]): REPLAY then follow.
//! The entries whose address matches a [`Pattern`] and whose signal type
//! is in a [`SignalTypes`] set, from a sequence number on: first those the
//! journal holds, then each new one as it is stored, in sequence order,
//! with no gap and no duplicate. The late joiner's need: read the
//! parameter state and its sequence, then subscribe from the next one.
//!
//! - [`DurableJournal`]: a [`crate::wal::Follower`] of the journal's log
//!   from the index point before the first sequence wanted, decoding each
//!   record (filters run on the borrowed record before anything is
//!   allocated). It reads the segment files, never a buffer the appenders
//!   fill, so a slow subscriber costs the appenders nothing and holds
//!   nothing; entries its log no longer holds, or below the compaction
//!   floor when it reaches them, are [`Error::EntriesCompacted`].
//! - [`MemoryJournal`]: reads the ring under its lock, one entry at a
//!   time, and waits on the journal's condition variable, which every
//!   append notifies. An entry evicted before the subscriber reached it is
//!   [`Error::EntriesCompacted`].
//!
//! **Invariant:** a subscription delivers each sequence number at most
//! once, in order, never one that is not stored (acknowledged, for the
//! durable journal); where it cannot deliver the next one it returns an
//! error and ends, it never skips.

use super::codec::{self, JournalRecordView};
use super::durable::DurableJournal;
use super::entry::{JournalEntry, SignalTypes};
use super::memory::MemoryJournal;
use super::pattern::Pattern;
use crate::io::Vfs;
use crate::wal::Follower;
use crate::{Error, Result};
use std::time::{Duration, Instant};

/// A journal's matching entries from a sequence number on: from
/// [`super::Journal::subscribe`].
///
/// Blocking: iterate it (`next()` waits for the next matching entry;
/// `None` once a durable journal is closed and everything it stored was
/// read), or call [`Subscription::next_timeout`] and
/// [`Subscription::try_next`]. An error ends it:
/// [`Error::EntriesCompacted`] (naming the oldest sequence held) if the
/// entries it needs next are gone, [`Error::Poisoned`] after everything a
/// poisoned log acknowledged, or a read error. It borrows the journal.
pub struct Subscription<'j> {
    source: Box<dyn Source + Send + 'j>,
    pattern: Pattern,
    types: SignalTypes,
    /// The sequence number of the next entry to read.
    next: u64,
    done: bool,
}

/// What the journal behind a subscription hands it.
trait Source {
    /// The entry with sequence `next` if it matches, `Ok(None)` if it does
    /// not (it is read all the same), or `None` if it is not stored by
    /// `deadline` (`None`: wait for ever; `Some(now)`: do not wait).
    /// The end of a closed journal is `Some(Err(Error::Closed))`.
    fn next_entry(
        &mut self,
        next: u64,
        filter: (&Pattern, SignalTypes),
        deadline: Option<Instant>,
    ) -> Option<Result<Option<JournalEntry>>>;
}

impl<'j> Subscription<'j> {
    /// The sequence number of the next entry this subscription reads:
    /// every matching entry before it was delivered (or came before the
    /// start).
    pub fn next_sequence(&self) -> u64 {
        self.next
    }

    /// The next matching entry if it is stored already, else `None` at
    /// once. After the end: `Some(Err(Error::Closed))`.
    pub fn try_next(&mut self) -> Option<Result<JournalEntry>> {
        self.next_before(Some(Instant::now()))
    }

    /// The next matching entry, waiting at most `timeout` for it; `None`
    /// if none came. After the end, as [`Subscription::try_next`].
    pub fn next_timeout(&mut self, timeout: Duration) -> Option<Result<JournalEntry>> {
        self.next_before(Some(Instant::now() + timeout))
    }

    fn next_before(&mut self, deadline: Option<Instant>) -> Option<Result<JournalEntry>> {
        loop {
            if self.done {
                return Some(Err(Error::Closed));
            }
            match self.source.next_entry(self.next, (&self.pattern, self.types), deadline)? {
                Ok(found) => {
                    self.next += 1;
                    if let Some(entry) = found {
                        return Some(Ok(entry));
                    }
                }
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            }
        }
    }
}

impl Iterator for Subscription<'_> {
    type Item = Result<JournalEntry>;

    /// Waits for the next matching entry; `None` once a durable journal
    /// has closed and every entry it stored was read, or after an error.
    fn next(&mut self) -> Option<Result<JournalEntry>> {
        if self.done {
            return None;
        }
        match self.next_before(None) {
            Some(Err(Error::Closed)) => None,
            other => other,
        }
    }
}

fn check_from(from: u64, first: u64) -> Result<()> {
    if from == 0 {
        return Err(Error::InvalidArgument("sequence 0 names no entry: subscribe from 1".into()));
    }
    if from < first {
        return Err(Error::EntriesCompacted { sequence: from, oldest: first });
    }
    Ok(())
}

/// The durable journal's subscription: a follower of its log.
struct Durable<'j, V: Vfs> {
    journal: &'j DurableJournal<V>,
    follower: Follower<V>,
}

pub(super) fn durable<'j, V: Vfs>(
    journal: &'j DurableJournal<V>,
    pattern: &Pattern,
    types: SignalTypes,
    from: u64,
) -> Result<Subscription<'j>> {
    let (first, start) = journal.read(|s| (s.first_sequence(), s.seek(from, None)));
    check_from(from, first)?;
    let follower = journal.engine().follow(start).map_err(|e| match e {
        Error::Compacted { .. } => {
            Error::EntriesCompacted { sequence: from, oldest: journal.read(|s| s.first_sequence()) }
        }
        e => e,
    })?;
    let source = Box::new(Durable { journal, follower });
    Ok(Subscription { source, pattern: pattern.clone(), types, next: from, done: false })
}

impl<V: Vfs> Source for Durable<'_, V> {
    fn next_entry(
        &mut self,
        next: u64,
        (pattern, types): (&Pattern, SignalTypes),
        deadline: Option<Instant>,
    ) -> Option<Result<Option<JournalEntry>>> {
        loop {
            let record = match deadline {
                None => self.follower.next().unwrap_or(Err(Error::Closed)),
                Some(deadline) => self.follower.next_timeout(deadline.saturating_duration_since(Instant::now()))?,
            };
            let gone = |journal: &DurableJournal<V>| Error::EntriesCompacted {
                sequence: next,
                oldest: journal.read(|s| s.first_sequence()),
            };
            let record = match record {
                Ok(record) => record,
                Err(Error::Compacted { .. }) => return Some(Err(gone(self.journal))),
                Err(e) => return Some(Err(e)),
            };
            let bad = |what: String| {
                Error::InvalidArgument(format!("log record {} is not a valid journal record: {what}", record.lsn))
            };
            let entry = match codec::decode_record(&record.payload) {
                Ok(JournalRecordView::Entry(entry)) => entry,
                Ok(JournalRecordView::Floor { .. }) => continue,
                Err(e) => return Some(Err(bad(e.to_string()))),
            };
            if entry.sequence < next {
                continue; // before the start, from the index point on
            }
            if entry.sequence != next {
                return Some(Err(bad(format!("sequence {} where {next} was expected", entry.sequence))));
            }
            // Compacted since the subscription reached it: hidden, as from queries.
            if self.journal.read(|s| s.first_sequence()) > next {
                return Some(Err(gone(self.journal)));
            }
            let matches = types.contains(entry.signal_type) && pattern.matches(entry.address);
            return Some(Ok(matches.then(|| entry.to_entry())));
        }
    }
}

/// The memory journal's subscription: the ring, read under its lock.
struct Memory<'j> {
    journal: &'j MemoryJournal,
}

pub(super) fn memory<'j>(
    journal: &'j MemoryJournal,
    pattern: &Pattern,
    types: SignalTypes,
    from: u64,
) -> Result<Subscription<'j>> {
    check_from(from, journal.first_held())?;
    let source = Box::new(Memory { journal });
    Ok(Subscription { source, pattern: pattern.clone(), types, next: from, done: false })
}

impl Source for Memory<'_> {
    fn next_entry(
        &mut self,
        next: u64,
        (pattern, types): (&Pattern, SignalTypes),
        deadline: Option<Instant>,
    ) -> Option<Result<Option<JournalEntry>>> {
        self.journal.entry_at(next, deadline, |entry| {
            (types.contains(entry.signal_type) && pattern.matches(&entry.address)).then(|| entry.clone())
        })
    }
}
