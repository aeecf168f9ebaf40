//! Backups of an open engine, store or journal, while writes go on.

use super::take::{backup_sources, BackupOptions, BackupReport};
use crate::engine::{Engine, StateMachine};
use crate::io::Vfs;
use crate::{DurableJournal, Result, Store};
use std::path::Path;

impl<S: StateMachine, V: Vfs> Engine<S, V> {
    /// Backs up the engine's directory into `dest` while commits go on
    /// (see [`crate::backup`]): every commit acknowledged before this call
    /// is in the backup, which is checked before this returns. Repeated
    /// backups into one `dest` share unchanged files with the previous one.
    pub fn backup_to(&self, dest: impl AsRef<Path>) -> Result<BackupReport> {
        self.backup_with(dest, &BackupOptions::default())
    }

    /// [`Engine::backup_to`] with options (how many backups to keep).
    pub fn backup_with(&self, dest: impl AsRef<Path>, options: &BackupOptions) -> Result<BackupReport> {
        // With the snapshot lock held no snapshot is written or pruned and
        // no segment removed while the files are opened; once open they
        // stay readable whatever happens to their names.
        let sources = self.with_files_still(super::source::from_engine)?;
        backup_sources(sources, self.data_dir(), dest.as_ref(), options)
    }
}

impl<V: Vfs> Store<V> {
    /// Backs up the directory into `dest` while writes go on: see
    /// [`Engine::backup_to`].
    pub fn backup_to(&self, dest: impl AsRef<Path>) -> Result<BackupReport> {
        self.engine().backup_to(dest)
    }

    /// [`Store::backup_to`] with options (how many backups to keep).
    pub fn backup_with(&self, dest: impl AsRef<Path>, options: &BackupOptions) -> Result<BackupReport> {
        self.engine().backup_with(dest, options)
    }
}

impl<V: Vfs> DurableJournal<V> {
    /// Backs up the directory into `dest` while appends go on: see
    /// [`Engine::backup_to`].
    pub fn backup_to(&self, dest: impl AsRef<Path>) -> Result<BackupReport> {
        self.engine().backup_to(dest)
    }

    /// [`DurableJournal::backup_to`] with options (how many backups to keep).
    pub fn backup_with(&self, dest: impl AsRef<Path>, options: &BackupOptions) -> Result<BackupReport> {
        self.engine().backup_with(dest, options)
    }
}
