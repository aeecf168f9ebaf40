//! [`Error`]: what the raft layer reports, and its mapping onto openraft's
//! `StorageError` at the trait boundary.

use crate::types::{NodeId, StorageError};
use openraft::{ErrorSubject, ErrorVerb, StorageIOError};
use std::path::PathBuf;
use walden::Lsn;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything the raft storage layer can report.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The log or a snapshot file failed underneath.
    #[error(transparent)]
    Walden(#[from] walden::Error),
    /// A record of the raft log does not decode, or does not fit the state
    /// replayed before it (an entry that leaves a hole, for example).
    #[error("raft record at LSN {lsn} in {dir}: {what}")]
    Corrupt { dir: PathBuf, lsn: Lsn, what: String },
    /// A setting that would break openraft's durability contract.
    #[error("unsafe setting for a raft log: {0}")]
    UnsafeSetting(String),
    /// A snapshot file is unusable (bad header, checksum, content, or
    /// metadata other than announced).
    #[error("snapshot {file}: {what}")]
    Snapshot { file: PathBuf, what: String },
    /// A call openraft should never make (it would leave a hole in the log).
    #[error("refused: {0}")]
    Refused(String),
    /// Opening would roll the state back further than the log can replay.
    #[error("{0}")]
    Unrecoverable(String),
    /// An I/O error outside walden's file system (the node's own files).
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// This error as openraft's, naming what was being done.
    pub(crate) fn storage(&self, subject: ErrorSubject<NodeId>, verb: ErrorVerb) -> StorageError {
        StorageIOError::new(subject, verb, openraft::AnyError::new(self)).into()
    }
}

/// Shorthands for the trait impls.
pub(crate) fn write_logs(e: Error) -> StorageError {
    e.storage(ErrorSubject::Logs, ErrorVerb::Write)
}

pub(crate) fn read_logs(e: Error) -> StorageError {
    e.storage(ErrorSubject::Logs, ErrorVerb::Read)
}

pub(crate) fn write_vote(e: Error) -> StorageError {
    e.storage(ErrorSubject::Vote, ErrorVerb::Write)
}
