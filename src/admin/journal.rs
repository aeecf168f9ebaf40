//! The journal seen from the operator's side: telling a journal directory
//! from a store's ([`log_content`]), decoding journal records for `dump`
//! ([`journal_record`], [`dump_journal`] with address-pattern and
//! signal-type filters), and compaction by age: [`plan_journal_compact`]
//! computes, read-only, exactly how many entries a cutoff removes;
//! [`apply_journal_compact`] runs the journal's own compaction.
//!
//! How a directory is known to be a journal: the journal writes no marker
//! file, so its first accepted log record decides. A journal record opens
//! with kind byte 0x4A (entry) or 0x4B (compaction floor) and decodes with
//! the journal's codec (`src/journal/codec.rs`); a store operation opens
//! with tag 1 or 2 and decodes with the store's codec. The two never agree.
//!
//! **Invariant:** the dry run and `dump` read the log with the same pread
//! scan as the other read-only commands; only [`apply_journal_compact`]
//! opens the journal (taking the directory lock), and it refuses a
//! directory whose scan found damage: the open would cut it first.

use super::log::LogReport;
use super::range::{walk_range, walk_records, DumpOptions, LogRecordView};
use super::{DataDir, Progress};
use crate::journal::codec::{self, JournalRecordView};
use crate::journal::{DurableJournal, Journal, JournalOptions, Pattern, SignalType, SignalTypes, Value};
use crate::{Error, Lsn, Result};
use std::ops::ControlFlow;

/// What a log's records hold, judged by its first accepted record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
#[non_exhaustive]
pub enum LogContent {
    /// No accepted record: nothing to tell by.
    Empty,
    /// Key-value store operations (`walden::Store`).
    Store,
    /// Journal entries (`walden::journal::DurableJournal`).
    Journal,
    /// Records neither codec decodes (a bare engine's own state machine).
    Other,
}

/// Decodes the first accepted record of `log` with the journal's codec
/// and the store's, read-only.
pub fn log_content<V: crate::io::Vfs>(fs: &V, log: &LogReport, progress: &mut dyn Progress) -> Result<LogContent> {
    let mut content = LogContent::Empty;
    walk_records(fs, &log.segments, Lsn::FIRST, progress, |record| {
        content = if codec::decode_record(record.payload).is_ok() {
            LogContent::Journal
        } else if super::store_view::store_op(record.payload).is_some() {
            LogContent::Store
        } else {
            LogContent::Other
        };
        Ok(ControlFlow::Break(()))
    })?;
    Ok(content)
}

/// A journal entry decoded for people and tools.
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct JournalEntryView {
    /// The entry's sequence number.
    pub sequence: u64,
    /// Its time, in microseconds since the Unix epoch.
    pub timestamp_us: u64,
    /// Who wrote it.
    pub author: String,
    /// The address it is about.
    pub address: String,
    /// Its signal type (serialized by name).
    #[cfg_attr(feature = "serde", serde(serialize_with = "type_name"))]
    pub signal_type: SignalType,
    /// `SET`, `PUBLISH` or `DELETE`.
    pub op: String,
    /// The value set or published.
    pub value: Value,
    /// The value as text (strings quoted, bytes as their length).
    pub value_text: String,
    /// A SET's revision.
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub revision: Option<u64>,
}

#[cfg(feature = "serde")]
fn type_name<S: serde::Serializer>(t: &SignalType, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(t.name())
}

/// A journal log record decoded.
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[cfg_attr(feature = "serde", serde(tag = "kind", rename_all = "snake_case"))]
#[non_exhaustive]
pub enum JournalRecord {
    /// An entry: a SET, PUBLISH or DELETE.
    Entry(JournalEntryView),
    /// Compaction: every entry below `first_kept` is gone for queries.
    Floor {
        /// The oldest sequence number still held after the compaction.
        first_kept: u64,
        /// When the compaction was made, in microseconds since the Unix epoch.
        timestamp_us: u64,
    },
}

impl JournalRecord {
    /// The entry's time, or the compaction's.
    pub fn timestamp_us(&self) -> u64 {
        match self {
            JournalRecord::Entry(e) => e.timestamp_us,
            JournalRecord::Floor { timestamp_us, .. } => *timestamp_us,
        }
    }
}

/// The journal record a payload holds, if it holds one.
pub fn journal_record(payload: &[u8]) -> Option<JournalRecord> {
    Some(match codec::decode_record(payload).ok()? {
        JournalRecordView::Entry(e) => {
            let value = e.value();
            JournalRecord::Entry(JournalEntryView {
                sequence: e.sequence,
                timestamp_us: e.timestamp_us,
                author: e.author.to_owned(),
                address: e.address.to_owned(),
                signal_type: e.signal_type,
                op: e.op.to_string(),
                value_text: value.to_string(),
                value,
                revision: e.revision,
            })
        }
        JournalRecordView::Floor { first_kept } => {
            // `u8 kind | u64 first kept | u64 timestamp_us`, checked by the decode.
            let timestamp_us = u64::from_le_bytes(payload[9..17].try_into().expect("8 bytes"));
            JournalRecord::Floor { first_kept, timestamp_us }
        }
    })
}

/// The journal's counters as its log says: what recovery would rebuild.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct JournalSummary {
    /// The compaction floor: the oldest sequence still held.
    pub first_sequence: u64,
    /// The last entry's sequence (0 if none).
    pub latest_sequence: u64,
    /// Entry records in the log, held or below the floor.
    pub entry_records: u64,
}

impl JournalSummary {
    /// Entries still held: `latest - first + 1`.
    pub fn held(&self) -> u64 {
        (self.latest_sequence + 1).saturating_sub(self.first_sequence)
    }
}

/// Replays the counters of the journal's state machine over the log, the
/// way `JournalState::apply` does (a floor is capped at the latest + 1).
pub fn journal_summary<V: crate::io::Vfs>(
    fs: &V,
    log: &LogReport,
    progress: &mut dyn Progress,
) -> Result<JournalSummary> {
    let mut s = JournalSummary { first_sequence: 1, latest_sequence: 0, entry_records: 0 };
    walk_records(fs, &log.segments, Lsn::FIRST, progress, |record| {
        match codec::decode_record(record.payload) {
            Ok(JournalRecordView::Entry(e)) => {
                s.latest_sequence = e.sequence;
                s.entry_records += 1;
            }
            Ok(JournalRecordView::Floor { first_kept }) => {
                s.first_sequence = s.first_sequence.max(first_kept.min(s.latest_sequence + 1));
            }
            Err(_) => {}
        }
        Ok(ControlFlow::Continue(()))
    })?;
    Ok(s)
}

/// What `dump` keeps of a journal: an address pattern and signal types.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JournalFilter {
    /// Only entries whose address matches (`None`: every address).
    pub pattern: Option<Pattern>,
    /// [`SignalTypes::ANY`]: every type.
    pub types: SignalTypes,
}

impl JournalFilter {
    /// Whether the filter keeps every record (no pattern, every type).
    pub fn is_empty(&self) -> bool {
        self.pattern.is_none() && self.types == SignalTypes::ANY
    }

    /// Whether `record` passes: with a filter, only entries can.
    pub fn admits(&self, record: Option<&JournalRecord>) -> bool {
        if self.is_empty() {
            return true;
        }
        match record {
            Some(JournalRecord::Entry(e)) => {
                self.types.contains(e.signal_type) && self.pattern.as_ref().is_none_or(|p| p.matches(&e.address))
            }
            _ => false,
        }
    }
}

/// One record of a journal dump: the record, its decoding (`None` if the
/// journal's codec refuses it) and whether the entry is below the floor.
#[non_exhaustive]
pub struct JournalDumpRecord<'a> {
    /// The log record: where it lies and its bytes.
    pub record: LogRecordView<'a>,
    /// Its decoding, or `None` if the journal's codec refuses it.
    pub journal: Option<JournalRecord>,
    /// Below the compaction floor: still in the log, never returned by a
    /// query, gone from the disk once no kept snapshot needs its segment.
    pub compacted: bool,
}

/// Calls `emit` for each record of a journal's log in the range `options`
/// selects that `filter` admits, in LSN order; returns how many. Time
/// bounds use the journal entries' timestamps (`from` inclusive, `to`
/// inclusive: it stops at the first entry after it).
pub fn dump_journal<V: crate::io::Vfs>(
    fs: &V,
    log: &LogReport,
    options: &DumpOptions,
    filter: &JournalFilter,
    progress: &mut dyn Progress,
    mut emit: impl FnMut(&JournalDumpRecord<'_>) -> Result<()>,
) -> Result<u64> {
    let floor = journal_summary(fs, log, progress)?.first_sequence;
    walk_range(
        fs,
        log,
        options,
        progress,
        |payload| {
            let journal = journal_record(payload);
            let entry_time = match &journal {
                Some(JournalRecord::Entry(e)) => Some(e.timestamp_us),
                _ => None,
            };
            (journal, entry_time)
        },
        |record, journal| {
            if !filter.admits(journal.as_ref()) {
                return Ok(false);
            }
            let compacted = matches!(&journal, Some(JournalRecord::Entry(e)) if e.sequence < floor);
            emit(&JournalDumpRecord { record, journal, compacted })?;
            Ok(true)
        },
    )
}

/// What compacting a journal before a time does (or did).
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct JournalCompactPlan {
    /// Entries with a timestamp below this go.
    pub cutoff_us: u64,
    /// The floor before: entries in `first_sequence_before..first_kept`
    /// are removed.
    pub first_sequence_before: u64,
    /// The floor after.
    pub first_kept: u64,
    /// The last entry's sequence number (compaction does not change it).
    pub latest_sequence: u64,
    /// Exactly how many entries are (or would be) removed.
    pub removed_entries: u64,
    /// Entries still held afterwards.
    pub held_after: u64,
    /// The log's first LSN before the compaction (`--apply` only).
    pub log_first_lsn_before: Option<Lsn>,
    /// The log's first LSN after it (`--apply` only): segments leave only
    /// once no kept snapshot needs them.
    pub log_first_lsn_after: Option<Lsn>,
    /// Whether the compaction ran (`--apply`), or was only planned.
    pub applied: bool,
}

/// Computes, read-only, what `compact_before_time(cutoff_us)` would
/// remove: the entries from the floor up to the first entry at or after
/// the cutoff (every held entry if none is), as the journal counts them.
pub fn plan_journal_compact<V: crate::io::Vfs>(
    fs: &V,
    log: &LogReport,
    cutoff_us: u64,
    progress: &mut dyn Progress,
) -> Result<JournalCompactPlan> {
    let summary = journal_summary(fs, log, progress)?;
    let first = summary.first_sequence;
    let mut first_kept = summary.latest_sequence + 1;
    walk_records(fs, &log.segments, Lsn::FIRST, progress, |record| {
        if let Some((sequence, timestamp_us, _)) = codec::peek_entry(record.payload) {
            if sequence >= first && timestamp_us >= cutoff_us {
                first_kept = sequence;
                return Ok(ControlFlow::Break(()));
            }
        }
        Ok(ControlFlow::Continue(()))
    })?;
    let first_kept = first_kept.max(first);
    Ok(JournalCompactPlan {
        cutoff_us,
        first_sequence_before: first,
        first_kept,
        latest_sequence: summary.latest_sequence,
        removed_entries: first_kept - first,
        held_after: summary.latest_sequence + 1 - first_kept,
        log_first_lsn_before: None,
        log_first_lsn_after: None,
        applied: false,
    })
}

/// Opens the journal in `dir` (taking its lock; recovery runs) and
/// compacts every entry with a timestamp below `cutoff_us` with the
/// journal's own [`Journal::compact_before_time`]: the floor is logged and
/// a snapshot taken; segments leave only when no kept snapshot needs them.
/// Refuses a directory whose scan (`log`) found damage.
pub fn apply_journal_compact(
    dir: &DataDir,
    log: &LogReport,
    cutoff_us: u64,
    options: JournalOptions,
) -> Result<JournalCompactPlan> {
    if let Some(f) = log.findings().iter().find(|f| f.severity > super::Severity::Notice) {
        return Err(Error::InvalidArgument(format!(
            "{}: {}; opening the journal would change the log before compacting (see `walden verify`, `walden repair`)",
            f.file.display(),
            f.what
        )));
    }
    let journal = DurableJournal::open(&dir.root, options)?;
    let (first, latest) = (journal.first_sequence(), journal.latest_sequence());
    let before = journal.log_first_lsn();
    let removed = journal.compact_before_time(cutoff_us)?;
    let plan = JournalCompactPlan {
        cutoff_us,
        first_sequence_before: first,
        first_kept: journal.first_sequence(),
        latest_sequence: latest,
        removed_entries: removed,
        held_after: journal.len(),
        log_first_lsn_before: Some(before),
        log_first_lsn_after: Some(journal.log_first_lsn()),
        applied: true,
    };
    journal.close()?;
    Ok(plan)
}
