//! The public [`Error`]. Corruption errors say where: file, offset, LSN.

use crate::format::{DecodeError, SegmentHeaderError};
use crate::Lsn;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in walden.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An I/O call failed.
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// Bytes on disk are damaged in a way the recovery mode does not accept.
    #[error("corruption in {file} at offset {offset} (expected LSN {lsn}): {kind}")]
    Corrupt { file: PathBuf, offset: u64, lsn: Lsn, kind: Corruption },
    /// A file was written by a newer walden, or is not walden's at all.
    #[error("{file}: {reason}")]
    Unsupported { file: PathBuf, reason: String },
    /// An earlier write or fsync failed; the log accepts nothing more until
    /// it is reopened, which recovers the acknowledged prefix.
    #[error("the log is poisoned by an earlier failure: {0}")]
    Poisoned(Arc<Error>),
    /// A snapshot file is damaged or incomplete; recovery skips it.
    #[error("bad snapshot {file}: {reason}")]
    BadSnapshot { file: PathBuf, reason: String },
    /// A record is larger than `max_record_bytes`.
    #[error("record of {len} bytes exceeds max_record_bytes = {max}")]
    RecordTooLarge { len: usize, max: u32 },
    /// The log was closed.
    #[error("the log is closed")]
    Closed,
    /// An option or argument is out of range.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The state machine cannot apply a record the log holds (written by
    /// another program, or by a state machine whose rules have changed).
    /// The log itself is intact; `walden recover` says what can be done.
    #[error("the record at LSN {lsn} cannot be applied to the state: {reason}")]
    Apply { lsn: Lsn, reason: String },
}

/// What kind of damage a [`Error::Corrupt`] found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Corruption {
    #[error("bad record: {0}")]
    Record(DecodeError),
    #[error("bad segment header: {0}")]
    SegmentHeader(SegmentHeaderError),
    #[error("LSN {found} where {expected} was expected")]
    LsnMismatch { expected: Lsn, found: Lsn },
    #[error("a batch ends before its last record")]
    TornBatch,
    #[error("garbage after the end of a sealed segment")]
    SealedTail,
    #[error("a later record (LSN {proof}) shows this record was already durable")]
    DurableRecordDamaged { proof: Lsn },
    #[error("segment belongs to another log (log id {found:#018x}, expected {expected:#018x})")]
    ForeignSegment { expected: u64, found: u64 },
    #[error("torn tail (cut only in a tolerant recovery mode)")]
    TornTail,
}

impl Error {
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
