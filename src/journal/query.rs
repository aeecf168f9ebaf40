//! [`Query`], its [`Cursor`] and the [`Page`] it returns.
//!
//! Time bounds: `from_us` is inclusive, `to_us` exclusive, so adjacent
//! windows `[a, b)` and `[b, c)` never share an entry. Pages come in
//! sequence order; a page's `next` cursor resumes right after the last
//! entry it returned, so paging neither skips nor repeats an entry.

use super::entry::{JournalEntry, SignalType, SignalTypes};
use super::pattern::Pattern;
use crate::{Error, Result};

/// The page size when none is given.
pub const DEFAULT_LIMIT_ENTRIES: usize = 1000;

/// Where a paged query resumes: after the entry with this sequence number.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cursor(pub u64);

/// A REPLAY query: pattern, time range, signal types, page size, cursor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Query {
    /// Only entries whose address matches.
    pub pattern: Pattern,
    /// Only entries at or after this time (inclusive).
    pub from_us: Option<u64>,
    /// Only entries before this time (exclusive).
    pub to_us: Option<u64>,
    /// Only these signal types ([`SignalTypes::ANY`]: every type).
    pub types: SignalTypes,
    /// At most this many entries per page (at least 1).
    pub limit: usize,
    /// Only entries after this cursor.
    pub after: Option<Cursor>,
}

/// One page of a query's answer.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Page {
    /// The entries, in sequence order (at most the query's limit).
    pub entries: Vec<JournalEntry>,
    /// Set when the page is full: pass it to [`Query::after`] for the next
    /// page (which may turn out empty). `None`: the answer is complete.
    pub next: Option<Cursor>,
}

impl Query {
    /// A query for the addresses that match `pattern` (validated here: a
    /// malformed pattern is an error).
    pub fn new(pattern: &str) -> Result<Query> {
        Ok(Query::with_pattern(Pattern::parse(pattern)?))
    }

    /// A query for the addresses that match an already parsed `pattern`,
    /// with no time or type filter, the default page size and no cursor.
    pub fn with_pattern(pattern: Pattern) -> Query {
        Query {
            pattern,
            from_us: None,
            to_us: None,
            types: SignalTypes::ANY,
            limit: DEFAULT_LIMIT_ENTRIES,
            after: None,
        }
    }

    /// Every entry.
    pub fn all() -> Query {
        Query::with_pattern(Pattern::all())
    }

    /// Only entries at or after `from_us` (inclusive), in microseconds
    /// since the Unix epoch.
    pub fn from_us(mut self, from_us: u64) -> Query {
        self.from_us = Some(from_us);
        self
    }

    /// Only entries before `to_us` (exclusive), in microseconds since the
    /// Unix epoch.
    pub fn to_us(mut self, to_us: u64) -> Query {
        self.to_us = Some(to_us);
        self
    }

    /// Only entries of these signal types (an empty slice: every type).
    pub fn types(mut self, types: &[SignalType]) -> Query {
        self.types = SignalTypes::of(types);
        self
    }

    /// At most `limit` entries per page; 0 is refused when the query runs.
    pub fn limit(mut self, limit: usize) -> Query {
        self.limit = limit;
        self
    }

    /// Only entries after `cursor`: a page's [`Page::next`], to read the
    /// next page.
    pub fn after(mut self, cursor: Cursor) -> Query {
        self.after = Some(cursor);
        self
    }

    pub(crate) fn validate(&self) -> Result<()> {
        if self.limit == 0 {
            return Err(Error::InvalidArgument("a query limit of 0".into()));
        }
        Ok(())
    }

    /// The first sequence number the answer may hold, given the oldest held.
    pub(crate) fn first_sequence(&self, first_held: u64) -> u64 {
        first_held.max(self.after.map_or(0, |c| c.0.saturating_add(1)))
    }

    /// Whether an entry at `timestamp_us` is past the end of the range (all
    /// later ones are too: timestamps never go backwards).
    pub(crate) fn past_end(&self, timestamp_us: u64) -> bool {
        self.to_us.is_some_and(|to| timestamp_us >= to)
    }

    /// Whether an entry (not past the end) belongs in the answer.
    pub(crate) fn admits(&self, timestamp_us: u64, signal_type: SignalType, address: &str) -> bool {
        self.from_us.is_none_or(|from| timestamp_us >= from)
            && self.types.contains(signal_type)
            && self.pattern.matches(address)
    }
}
