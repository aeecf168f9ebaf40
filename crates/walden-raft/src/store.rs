//! Opening a node's storage: the raft log in `<dir>/log` and the state
//! machine's snapshots in `<dir>/snapshots`, checked against each other.
//!
//! **Invariant:** opening never rolls the state machine back to a snapshot
//! older than what the log can replay: if the newest snapshot that verifies
//! covers less than the log has purged, opening fails and says so (the
//! entries in between exist nowhere else on this node).

use crate::app::AppState;
use crate::error::{Error, Result};
use crate::log_store::LogStore;
use crate::snapshot_data::SnapshotData;
use crate::state_machine::{SmOpenReport, StateMachine};
use openraft::{Entry, RaftTypeConfig};
use std::path::Path;
use walden::io::{RealFs, Vfs};
use walden::{FsyncMode, WalOptions};

/// The only settings openraft's contract allows: fsync before acknowledging,
/// and a recovery that cuts only a torn (never acknowledged) tail.
pub fn default_wal_options() -> WalOptions {
    WalOptions { fsync: FsyncMode::Always, ..Default::default() }
}

/// A node's log store and state machine, for the type configuration `C`
/// and the application state `S`.
pub type Storage<C, S, V = RealFs> = (LogStore<C, V>, StateMachine<C, S, V>, SmOpenReport);

/// Opens (or creates) the storage of one node in `dir`.
pub fn open<C, S>(dir: impl AsRef<Path>, options: WalOptions) -> Result<Storage<C, S>>
where
    C: RaftTypeConfig<Entry = Entry<C>, SnapshotData = SnapshotData>,
    C::Entry: Clone,
    S: AppState<C>,
{
    open_with(RealFs, dir, options)
}

/// [`open`] on another file system.
pub fn open_with<C, S, V>(fs: V, dir: impl AsRef<Path>, options: WalOptions) -> Result<Storage<C, S, V>>
where
    C: RaftTypeConfig<Entry = Entry<C>, SnapshotData = SnapshotData>,
    C::Entry: Clone,
    S: AppState<C>,
    V: Vfs,
{
    let dir = dir.as_ref();
    let log = LogStore::open_with(fs.clone(), dir.join("log"), options)?;
    let (sm, report) = StateMachine::open_with(fs, dir.join("snapshots"))?;
    let purged = log.log_state().last_purged_log_id;
    let applied = sm.applied().0;
    if let Some(purged) = purged {
        if applied.as_ref().is_none_or(|a| a.index < purged.index) {
            let applied = applied.map_or("nothing".to_owned(), |a| a.to_string());
            let skipped: Vec<String> =
                report.skipped.iter().map(|(p, why)| format!("{} ({why})", p.display())).collect();
            return Err(Error::Unrecoverable(format!(
                "{}: the log has purged entries up to {purged}, but the newest snapshot that verifies covers {applied}; \
                 the entries in between are in no file this node can read (snapshots skipped: [{}]). \
                 Restore the damaged snapshot, or remove the node's directory and let it rejoin to receive a snapshot",
                dir.display(),
                skipped.join(", ")
            )));
        }
    }
    Ok((log, sm, report))
}
