//! [`Error`]: what the raft layer reports, and its mapping onto openraft's
//! `StorageError` at the trait boundary.

use openraft::{ErrorSubject, ErrorVerb, NodeId, StorageError, StorageIOError};
use std::path::PathBuf;
use walden::Lsn;

/// This crate's result.
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
    Corrupt {
        /// The log's directory.
        dir: PathBuf,
        /// The record's LSN.
        lsn: Lsn,
        /// What is wrong with it.
        what: String,
    },
    /// A setting that would break openraft's durability contract.
    #[error("unsafe setting for a raft log: {0}")]
    UnsafeSetting(String),
    /// A snapshot file is unusable (bad header, checksum, content, or
    /// metadata other than announced).
    #[error("snapshot {file}: {what}")]
    Snapshot {
        /// The snapshot file.
        file: PathBuf,
        /// What is wrong with it.
        what: String,
    },
    /// A call openraft should never make (it would leave a hole in the log).
    #[error("refused: {0}")]
    Refused(String),
    /// Opening would roll the state back further than the log can replay.
    #[error("{0}")]
    Unrecoverable(String),
    /// An I/O error outside walden's file system (the node's own files).
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// To which file or address.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// This error as openraft's, naming what was being done.
    pub(crate) fn storage<NID: NodeId>(&self, subject: ErrorSubject<NID>, verb: ErrorVerb) -> StorageError<NID> {
        StorageIOError::new(subject, verb, openraft::AnyError::new(self)).into()
    }
}

/// Shorthands for the trait impls.
pub(crate) fn write_logs<NID: NodeId>(e: Error) -> StorageError<NID> {
    e.storage(ErrorSubject::Logs, ErrorVerb::Write)
}

pub(crate) fn read_logs<NID: NodeId>(e: Error) -> StorageError<NID> {
    e.storage(ErrorSubject::Logs, ErrorVerb::Read)
}

pub(crate) fn write_vote<NID: NodeId>(e: Error) -> StorageError<NID> {
    e.storage(ErrorSubject::Vote, ErrorVerb::Write)
}
