//! The public [`Error`]. Corruption errors say where: file, offset, LSN.
//! [`Error::class`] is the one place that says whether an error is damage
//! found, a usage error or a failure of the environment.

use crate::format::{RecordDecodeError, SegmentHeaderError};
use crate::Lsn;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;

/// walden's `Result`: the error is [`Error`] unless said otherwise.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in walden.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An I/O call failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done: `open`, `write`, `fdatasync`, `rename`...
        op: &'static str,
        /// The file or directory it was done to.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// Bytes on disk are damaged in a way the recovery mode does not accept.
    #[error("corruption in {file} at offset {offset} (expected LSN {lsn}): {kind}")]
    Corrupt {
        /// The segment file.
        file: PathBuf,
        /// The byte offset in `file` where the damage starts.
        offset: u64,
        /// The LSN the log expected there.
        lsn: Lsn,
        /// What is wrong.
        kind: Corruption,
    },
    /// A file was written by a newer walden, or is not walden's at all.
    #[error("{file}: {reason}")]
    Unsupported {
        /// The file refused.
        file: PathBuf,
        /// Why: the version found, or what does not match.
        reason: String,
    },
    /// An earlier write or fsync failed; the log accepts nothing more until
    /// it is reopened, which recovers the acknowledged prefix.
    #[error("the log is poisoned by an earlier failure: {0}")]
    Poisoned(Arc<Error>),
    /// A snapshot file is damaged or incomplete; recovery skips it.
    #[error("bad snapshot {file}: {reason}")]
    BadSnapshot {
        /// The snapshot file.
        file: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A backup is damaged or incomplete: a file's length or checksum is
    /// not what its manifest says, or the manifest itself does not read.
    #[error("bad backup {file}: {reason}")]
    BadBackup {
        /// The file of the backup that is wrong (or its manifest).
        file: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// An operation that needs a sound log found damage that only a
    /// repair can clear (a torn tail to cut, a segment an open would
    /// refuse): nothing was changed.
    #[error("{file}: {what}; run `walden repair` first")]
    NeedsRepair {
        /// The damaged file.
        file: PathBuf,
        /// What is wrong with it.
        what: String,
    },
    /// A record is larger than `max_record_bytes`.
    #[error("record of {len} bytes exceeds max_record_bytes = {max}")]
    RecordTooLarge {
        /// The payload's length in bytes.
        len: usize,
        /// The limit in bytes (`WalOptions::max_record_bytes`).
        max: u32,
    },
    /// The log was closed.
    #[error("the log is closed")]
    Closed,
    /// An option or argument is out of range.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A record asked for is no longer in the log: the segments holding it
    /// were removed (`Wal::truncate_before`, compaction). Start again from
    /// `oldest`, or from a snapshot that covers the records before it.
    #[error("LSN {lsn} is no longer in the log (compacted): the oldest LSN it holds is {oldest}")]
    Compacted {
        /// The LSN asked for.
        lsn: Lsn,
        /// The oldest LSN the log still holds.
        oldest: Lsn,
    },
    /// Journal entries asked for are no longer held (compaction by sequence
    /// or age, or evicted from a memory journal's ring): a subscription
    /// from `sequence` cannot be served without a gap. Start again from
    /// `oldest`, after reading the parameter state.
    #[error("journal entry {sequence} is no longer held (compacted): the oldest held is {oldest}")]
    EntriesCompacted {
        /// The sequence number asked for.
        sequence: u64,
        /// The oldest sequence number still held.
        oldest: u64,
    },
    /// The state machine cannot apply a record the log holds (written by
    /// another program, or by a state machine whose rules have changed).
    /// The log itself is intact; `walden recover` says what can be done.
    #[error("the record at LSN {lsn} cannot be applied to the state: {reason}")]
    Apply {
        /// The record's LSN.
        lsn: Lsn,
        /// Why the state machine refused it.
        reason: String,
    },
}

/// What kind of damage a [`Error::Corrupt`] found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Corruption {
    /// The bytes at the offset are not a valid record.
    #[error("bad record: {0}")]
    Record(RecordDecodeError),
    /// The segment's header does not read.
    #[error("bad segment header: {0}")]
    SegmentHeader(SegmentHeaderError),
    /// A valid record or segment with the wrong LSN: the log has a gap or
    /// an overlap.
    #[error("LSN {found} where {expected} was expected")]
    LsnMismatch {
        /// The LSN that continues the log.
        expected: Lsn,
        /// The LSN found instead.
        found: Lsn,
    },
    /// A batch ends before its last record (its last record still says
    /// "batch continues").
    #[error("a batch ends before its last record")]
    TornBatch,
    /// Non-zero bytes after the last record of a sealed (not the last)
    /// segment, which was synced whole before its successor existed.
    #[error("garbage after the end of a sealed segment")]
    SealedTail,
    /// Damage at a record that a later record's durable watermark proves
    /// was already on stable storage: not a torn write, so not cut.
    #[error("a later record (LSN {proof}) shows this record was already durable")]
    DurableRecordDamaged {
        /// The LSN of the later record whose watermark covers the damage.
        proof: Lsn,
    },
    /// The segment's log id is not this log's.
    #[error("segment belongs to another log (log id {found:#018x}, expected {expected:#018x})")]
    ForeignSegment {
        /// This log's id.
        expected: u64,
        /// The segment's.
        found: u64,
    },
    /// The end of the last segment is torn (a crash mid-write), and the
    /// recovery mode does not allow cutting it.
    #[error("torn tail (cut only in a tolerant recovery mode)")]
    TornTail,
}

/// What an [`Error`] means for the operator, as [`Error::class`] decides.
///
/// The `walden` command line exits 1 for [`Damage`](ErrorClass::Damage) and
/// 2 for the others, and prints the class with `--json`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
#[non_exhaustive]
pub enum ErrorClass {
    /// A problem found in the data: a file that is damaged, truncated, not
    /// walden's (foreign, or from a newer walden), not readable as what it
    /// should be, inconsistent with the files beside it, or missing though
    /// a manifest lists it.
    Damage,
    /// The caller asked for something that cannot be done: a path that
    /// does not exist or is not a walden directory, an argument out of
    /// range, a destination that is not empty, a call after `close`.
    Usage,
    /// The data may well be fine, but the system refused: permission
    /// denied, a full or read-only disk, a directory another process holds,
    /// any other failed I/O call.
    Environment,
}

impl ErrorClass {
    /// The class as `--json` prints it: `damage`, `usage` or `environment`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::Damage => "damage",
            ErrorClass::Usage => "usage",
            ErrorClass::Environment => "environment",
        }
    }
}

/// The class of a failed I/O call, by its kind alone. Bytes that came back
/// unreadable or short are damage. A path that does not exist is a usage
/// error: the `NotFound` of an I/O call cannot tell the operator's typo
/// from a data file that should be there, so a reader that knows a file
/// must exist (one a backup's manifest lists) reports its absence as
/// damage itself ([`Error::BadBackup`]).
fn io_class(kind: io::ErrorKind) -> ErrorClass {
    use io::ErrorKind as K;
    match kind {
        K::InvalidData | K::UnexpectedEof => ErrorClass::Damage,
        K::NotFound | K::AlreadyExists | K::InvalidInput | K::NotADirectory | K::IsADirectory => ErrorClass::Usage,
        // PermissionDenied, StorageFull, ReadOnlyFilesystem, WouldBlock (a
        // lock held), QuotaExceeded, a device's EIO, and kinds to come.
        _ => ErrorClass::Environment,
    }
}

impl Error {
    /// Whether this error is damage found, a usage error or a failure of
    /// the environment. The match names every variant, so a new one must
    /// be given a class here.
    pub fn class(&self) -> ErrorClass {
        match self {
            Error::Io { source, .. } => io_class(source.kind()),
            Error::Poisoned(first) => first.class(),
            Error::Corrupt { .. }
            | Error::Unsupported { .. }
            | Error::BadSnapshot { .. }
            | Error::BadBackup { .. }
            | Error::NeedsRepair { .. }
            | Error::Apply { .. } => ErrorClass::Damage,
            Error::RecordTooLarge { .. }
            | Error::Closed
            | Error::InvalidArgument(_)
            | Error::Compacted { .. }
            | Error::EntriesCompacted { .. } => ErrorClass::Usage,
        }
    }

    /// The file or directory this error is about, if it names one.
    pub fn file(&self) -> Option<&std::path::Path> {
        match self {
            Error::Io { path, .. } => Some(path),
            Error::Corrupt { file, .. }
            | Error::Unsupported { file, .. }
            | Error::BadSnapshot { file, .. }
            | Error::BadBackup { file, .. }
            | Error::NeedsRepair { file, .. } => Some(file),
            Error::Poisoned(first) => first.file(),
            Error::RecordTooLarge { .. }
            | Error::Closed
            | Error::InvalidArgument(_)
            | Error::Apply { .. }
            | Error::Compacted { .. }
            | Error::EntriesCompacted { .. } => None,
        }
    }

    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io { op, path, source }
    }

    /// The OS error behind this error, if it is (or was poisoned by) an I/O failure.
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            Error::Io { source, .. } => source.raw_os_error(),
            Error::Poisoned(inner) => inner.raw_os_error(),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn io_error(kind: io::ErrorKind) -> Error {
        Error::io("read", "wal/00000000000000000001.wal")(io::Error::from(kind))
    }

    #[test]
    fn each_error_has_the_class_the_exit_codes_promise() {
        use io::ErrorKind as K;
        for (kind, class) in [
            (K::InvalidData, ErrorClass::Damage),
            (K::UnexpectedEof, ErrorClass::Damage),
            (K::NotFound, ErrorClass::Usage),
            (K::PermissionDenied, ErrorClass::Environment),
            (K::StorageFull, ErrorClass::Environment),
            (K::ReadOnlyFilesystem, ErrorClass::Environment),
            (K::WouldBlock, ErrorClass::Environment),
        ] {
            assert_eq!(io_error(kind).class(), class, "{kind:?}");
        }
        let bad = Error::BadBackup { file: "b/BACKUP".into(), reason: "not UTF-8".into() };
        assert_eq!((bad.class(), bad.file()), (ErrorClass::Damage, Some(std::path::Path::new("b/BACKUP"))));
        let poisoned = Error::Poisoned(Arc::new(io_error(K::StorageFull)));
        assert_eq!(poisoned.class(), ErrorClass::Environment);
        assert_eq!(poisoned.file(), Some(std::path::Path::new("wal/00000000000000000001.wal")));
        assert_eq!(Error::InvalidArgument("x".into()).class(), ErrorClass::Usage);
        assert_eq!(Error::Apply { lsn: Lsn(7), reason: "no".into() }.class(), ErrorClass::Damage);
    }
}
