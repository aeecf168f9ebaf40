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
use std::time::Duration;
use walden::io::{RealFs, Vfs};
use walden::{FsyncMode, WalOptions};

/// The options [`open`] is meant to get. The only durability openraft's
/// contract allows: fsync before acknowledging, and a recovery that cuts
/// only a torn (never acknowledged) tail. And two settings for a log whose
/// appends never overlap (openraft 0.9.25's core awaits each append's flush
/// before its next command, `RaftCore::append_to_log`):
///
/// - `group_delay: Some(0)`: an fdatasync starts at once. walden's default
///   waits up to half an fdatasync for as many records as the last sync
///   carried, for appenders about to join it; here none can join, and the
///   wait would only delay the append in flight (it happened after a
///   committed record was synced alone while an append arrived).
/// - `flush_interval`: [`RAFT_FLUSH_INTERVAL`] instead of 2 ms. walden's
///   timer thread syncs, every tick, the records staged that nobody waits
///   for; in a raft log those are only committed records, which the flusher
///   already makes durable within [`crate::log_store::LAZY_SYNC_DELAY_MAX`]
///   or with the next append. At a 2 ms tick the timer synced them on their
///   own between appends: an fdatasync more per node every few rounds, on
///   the disk the next append needs.
pub fn default_wal_options() -> WalOptions {
    WalOptions {
        fsync: FsyncMode::Always,
        group_delay: Some(Duration::ZERO),
        flush_interval: RAFT_FLUSH_INTERVAL,
        ..Default::default()
    }
}

/// The raft log's timer tick ([`default_wal_options`]): a backstop only,
/// since every record the log store stages is waited for, by a caller or
/// by the flusher within its bound.
pub const RAFT_FLUSH_INTERVAL: Duration = Duration::from_secs(1);

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
