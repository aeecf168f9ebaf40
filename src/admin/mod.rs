//! The operator's library behind the `walden` recovery commands: look at a
//! data directory, check it, read its records, and repair it explicitly.
//!
//! - `log.rs`: the read-only scan of every segment ([`LogReport`]) and what
//!   opening the log would do with it ([`RecoveryPlan`]).
//! - `snapshots.rs`: every snapshot checked and placed against the log.
//! - `examine.rs`: both together, with one health verdict ([`Examination`]),
//!   for `inspect`, `verify` and `stats`.
//! - `dump.rs`: the records in a range, by LSN or by time.
//! - `follow.rs`: a log another process writes, followed like `tail -f`.
//! - `journal.rs`: a journal's records for `dump` (pattern and type
//!   filters), and compaction by age: planned read-only, applied by the
//!   journal's own compaction.
//! - `recover.rs`: the recovery an open would run, without running it (a
//!   record the state machine refuses included), and a point-in-time state
//!   written out as a snapshot elsewhere.
//! - `repair.rs`: cutting a torn tail (or salvaging a prefix, or cutting
//!   from an LSN the operator names), compaction, snapshot creation and
//!   pruning: the only functions here that change a data directory.
//!
//! **Invariant:** reading never changes a byte. Files are opened read-only
//! and read with pread (never mapped, so a live process that cuts a tail
//! cannot change bytes under a reader), no lock file is created, and
//! [`crate::Wal::open`] (which runs recovery) is never called. Only the
//! functions of `repair.rs`, [`write_point_in_time`] and
//! [`apply_journal_compact`] write, each into
//! a place its caller named, and they take the directory lock first.
//!
//! **Invariant:** a repair removes no byte from the log that it has not
//! first copied into a synced quarantine file: it is the log's own recovery
//! ([`crate::wal`]'s `recover`), run in the mode the operator chose, or
//! cutting at the LSN the operator chose.

mod dump;
mod examine;
mod follow;
mod journal;
mod log;
mod range;
mod recover;
mod repair;
mod snapshots;
mod store_view;

pub use dump::dump;
pub use examine::{examine, Examination, Health, LogStats};
pub use follow::{follow_dir, FollowEvent, FollowOptions, FollowSummary, RECENT_CHECKED};
pub use journal::{
    apply_journal_compact, dump_journal, journal_record, journal_summary, log_content, plan_journal_compact,
    JournalCompactPlan, JournalDumpRecord, JournalEntryView, JournalFilter, JournalRecord, JournalSummary, LogContent,
};
pub use log::{scan_log, LogReport, PlannedCut, RecoveryPlan, Refusal, SegmentEnd, SegmentReport};
pub use range::{DumpOptions, LogRecordView, Target};
pub use recover::{
    dry_run_recovery, dry_run_recovery_by_content, state_at, write_point_in_time, DryRun, PointInTime, RefusedRecord,
};
pub use repair::{
    apply_compact, apply_cut, apply_repair, create_snapshot, plan_compact, plan_cut, plan_prune, plan_repair, prune,
    CompactPlan, PrunePlan, Removal, RepairPlan,
};
pub use snapshots::{read_snapshot_state, scan_snapshots, SnapshotReport, SnapshotState, SnapshotsReport};
pub use store_view::{store_op, StoreOpView};

use crate::io::Vfs;
use crate::{Error, Lsn, Result};
use std::path::{Path, PathBuf};

/// Where a data directory keeps its log and its snapshots.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct DataDir {
    /// The directory the operator named.
    pub root: PathBuf,
    /// The segments: `root/wal` for an engine or store, else `root` itself.
    pub log_dir: PathBuf,
    /// `root/snapshots` for an engine or store; `None` for a bare log.
    pub snapshot_dir: Option<PathBuf>,
}

impl DataDir {
    /// Recognises an engine (or store) directory, which holds `wal/` and
    /// `snapshots/`, or a bare log directory, which holds segments. Refuses
    /// anything else, so a mistyped path is never taken for an empty log.
    pub fn locate<V: Vfs>(fs: &V, root: impl AsRef<Path>) -> Result<DataDir> {
        let root = root.as_ref().to_owned();
        let names = fs.list_dir(&root).map_err(Error::io("list", &root))?;
        let log_dir = root.join("wal");
        if fs.list_dir(&log_dir).is_ok() {
            let snapshot_dir = root.join("snapshots");
            return Ok(DataDir { root, log_dir, snapshot_dir: Some(snapshot_dir) });
        }
        // `data/wal` named directly is still a store's log: its snapshots
        // (and what compaction must keep for them) are beside it.
        if let Some(parent) = root.parent().filter(|_| root.file_name().is_some_and(|n| n == "wal")) {
            if fs.list_dir(&parent.join("snapshots")).is_ok() {
                let snapshot_dir = Some(parent.join("snapshots"));
                return Ok(DataDir { root: parent.to_owned(), log_dir: root, snapshot_dir });
            }
        }
        if names.iter().any(|n| crate::wal::parse_segment_file_name(n).is_some() || n == "LOCK") {
            return Ok(DataDir { log_dir: root.clone(), root, snapshot_dir: None });
        }
        Err(Error::InvalidArgument(format!(
            "{} is not a walden directory: it holds neither wal/ (an engine or store) nor segment files (a log)",
            root.display()
        )))
    }
}

/// How bad a finding is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
#[non_exhaustive]
pub enum Severity {
    /// Worth knowing, nothing to fix: a leftover temporary file that the
    /// next open removes, quarantine files from an earlier cut.
    Notice,
    /// Damage that opening handles by itself without losing acknowledged
    /// data: a torn tail (cut into quarantine), a bad snapshot with a
    /// usable fallback.
    Recoverable,
    /// Damage the default open refuses: corruption in the middle of the
    /// log, a broken chain, no usable starting point.
    Corrupt,
}

/// One thing an examination found, and where.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct Finding {
    /// How bad it is.
    pub severity: Severity,
    /// The file it is in (the directory, for what concerns it all).
    pub file: PathBuf,
    /// The byte offset in `file`, where one applies.
    pub offset: Option<u64>,
    /// The LSN expected there, where one applies.
    pub lsn: Option<Lsn>,
    /// What was found, in words.
    pub what: String,
}

/// Told how far a long scan has got, so a command line can draw a bar.
pub trait Progress {
    /// A phase begins that will cover `total_bytes`.
    fn begin(&mut self, _what: &str, _total_bytes: u64) {}
    /// `bytes` more are done.
    fn advance(&mut self, _bytes: u64) {}
    /// The phase is over.
    fn end(&mut self) {}
}

/// Progress that nobody watches.
pub struct NoProgress;

impl Progress for NoProgress {}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// Reads a whole file with pread: no map, no write access.
fn read_file<V: Vfs>(fs: &V, path: &Path) -> Result<Vec<u8>> {
    use crate::io::VfsFile;
    let file = fs.open(path, false).map_err(Error::io("open", path))?;
    let len = file.size_bytes().map_err(Error::io("stat", path))?;
    let mut bytes = vec![0u8; len as usize];
    file.read_exact_at(&mut bytes, 0).map_err(Error::io("read", path))?;
    Ok(bytes)
}

/// Names in `dir`, sorted; an absent directory has none.
fn sorted_names<V: Vfs>(fs: &V, dir: &Path) -> Result<Vec<String>> {
    match fs.list_dir(dir) {
        Ok(mut names) => {
            names.sort();
            Ok(names)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(Error::io("list", dir)(e)),
    }
}
