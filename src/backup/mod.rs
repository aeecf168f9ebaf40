//! Online, incremental backups of a data directory, and their verified
//! restore.
//!
//! - `source.rs`: the files to copy, opened first (so a file the running
//!   process removes meanwhile stays readable): from a live [`Engine`]
//!   ([`Engine::backup_to`]) or from a directory another process may hold
//!   ([`backup_data_dir`], behind `walden backup`).
//! - `take.rs`: one backup: copy (or hard-link from the previous backup)
//!   every file, check every record and snapshot it copies, write the
//!   manifest, rename the directory into place, prune old backups.
//! - `manifest.rs`: the manifest (`BACKUP`), a checksummed text file.
//! - `restore.rs`: [`verify_backup`] and [`restore`].
//!
//! A destination holds numbered backups, each a directory that opens as a
//! store (`wal/` and `snapshots/`) plus its manifest:
//!
//! ```text
//! DEST/LOCK                      flock held while a backup or prune runs
//! DEST/backup-000001/BACKUP      the manifest, written last
//! DEST/backup-000001/wal/...     segments
//! DEST/backup-000001/snapshots/  snapshots
//! DEST/backup-000002/...         the next one: unchanged sealed segments and
//!                                snapshots are hard links to the previous one's
//! DEST/backup-000003.tmp/        a backup in progress (or interrupted): never
//!                                read, removed by the next backup
//! ```
//!
//! **Invariant:** a backup directory under its final name is complete: its
//! manifest was synced and every file it lists was synced and checked
//! before the rename. **Invariant:** sealed segments and snapshots are
//! immutable, so a hard link shares bytes that never change; the last
//! segment of every backup is its own copy, so opening one backup in place
//! (which appends to its last segment) never changes another.
//! **Invariant:** a backup holds every record that was acknowledged before
//! it began: the source's last segment is read after the backup begins,
//! and an acknowledged record has been written to it (or to an earlier
//! segment that is still there, or is covered by a snapshot that is).
//! The destination is on the real file system; the source may be on any
//! [`Vfs`](crate::io::Vfs).
//!
//! [`Engine`]: crate::Engine
//! [`Engine::backup_to`]: crate::Engine::backup_to

mod live;
mod manifest;
mod restore;
mod source;
mod take;

pub use manifest::{Manifest, SegmentEntry, SnapshotEntry, MANIFEST_NAME};
pub use restore::{list_backups, locate_backup, restore, verify_backup, RestoreReport};
pub use take::{backup_data_dir, BackupOptions, BackupReport};

use crate::{Error, Result};
use std::path::Path;

/// The directory name of backup `id`.
pub fn backup_dir_name(id: u64) -> String {
    format!("backup-{id:06}")
}

/// The id a backup directory name stands for (`backup-000012` is 12), if
/// it is one; `.tmp` directories of unfinished backups are not.
pub fn parse_backup_dir_name(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("backup-")?;
    if digits.len() < 6 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Reads a whole file of the destination.
fn read_all(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(Error::io("read", path))
}

/// Makes the entries of `dir` durable.
fn sync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(Error::io("fsync directory", dir))
}
