//! The narrow file-system boundary. Every byte walden reads or writes and
//! every fsync it issues goes through [`Vfs`] and [`VfsFile`].
//!
//! Two implementations: [`RealFs`] (std files, memmap2 for reading) and
//! `SimFs` (with the `sim` feature only), an in-memory file system that
//! keeps written and durable bytes apart so tests can crash it at any point
//! and inject EIO or ENOSPC. The engine is generic over `Vfs`, so the real
//! path pays no virtual call.
//!
//! The module also holds the one other call walden makes to the operating
//! system through `unsafe`: [`lower_current_thread_priority`].

mod priority;
mod real;
#[cfg(any(test, feature = "sim"))]
mod sim;

pub use priority::lower_current_thread_priority;
pub use real::{RealFile, RealFs, RealMap};
#[cfg(any(test, feature = "sim"))]
pub use sim::{CrashMode, Fault, FaultKind, SimFile, SimFs, SimOp};

use std::io;
use std::ops::Deref;
use std::path::Path;

/// The directory operations walden uses.
pub trait Vfs: Clone + Send + Sync + 'static {
    /// The open files of this file system.
    type File: VfsFile;

    /// Creates a new file for reading and writing; fails if it exists.
    fn create_new(&self, path: &Path) -> io::Result<Self::File>;
    /// Opens an existing file, for writing too when `write` is set.
    fn open(&self, path: &Path, write: bool) -> io::Result<Self::File>;
    /// Atomically replaces `to` with `from`. Durable only after [`Vfs::sync_dir`].
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Unlinks a file. Durable only after [`Vfs::sync_dir`].
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Makes every create, rename and remove in `dir` durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// Creates `dir` and any missing parents; does nothing if it exists.
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// Names of the regular files in `dir`, in no particular order.
    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>>;
    /// Takes an exclusive lock on the directory, held until the value drops.
    fn lock_dir(&self, dir: &Path) -> io::Result<DirLock>;
}

/// An open file. Offsets are absolute; there is no cursor.
pub trait VfsFile: Send + Sync + 'static {
    /// A read-only view of a file prefix.
    type Map: Deref<Target = [u8]> + Send + Sync + 'static;

    /// Writes all of `buf` at `offset` (pwrite), extending the file if
    /// needed. Not durable until [`VfsFile::sync_data`].
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// Fills `buf` from `offset` (pread); fails if the file ends first.
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
    /// fdatasync: the file's data and size reach stable storage.
    fn sync_data(&self) -> io::Result<()>;
    /// Syncs the file, then evicts its cached pages, so the next read comes
    /// from the device. After a failed fsync the kernel may hold pages it
    /// marked clean without writing them; reading through the cache would
    /// take those bytes for durable ones.
    fn sync_and_evict_cache(&self) -> io::Result<()>;
    /// Starts writing back the cached bytes of `[offset, offset + len)`
    /// without waiting and without making them durable (on Linux,
    /// `sync_file_range(SYNC_FILE_RANGE_WRITE)`), so a later fdatasync
    /// finds less to do. A hint: it promises nothing, so a file system that
    /// cannot start writeback early does nothing.
    fn start_writeback(&self, offset: u64, len: u64) -> io::Result<()> {
        let _ = (offset, len);
        Ok(())
    }
    /// The file's length in bytes.
    fn size_bytes(&self) -> io::Result<u64>;
    /// Truncates or extends (with zeros) the file to `len` bytes. Not
    /// durable until [`VfsFile::sync_data`].
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// Maps `[0, len)` read-only. The caller promises walden never rewrites
    /// those bytes while the map lives.
    fn map(&self, len: u64) -> io::Result<Self::Map>;
    /// Maps `[offset, offset + len)` read-only (`offset` a multiple of
    /// [`MAP_ALIGN`]) with its pages read in, for reading a file front to
    /// back without copying it into a buffer of its own. The caller
    /// promises walden never rewrites those bytes while the map lives.
    fn map_range(&self, offset: u64, len: u64) -> io::Result<Self::Map>;
    /// Says `[offset, offset + len)` will be read soon (on Linux,
    /// `posix_fadvise(WILLNEED)`: the kernel starts reading it in). A hint:
    /// it promises nothing.
    fn will_need(&self, offset: u64, len: u64) -> io::Result<()> {
        let _ = (offset, len);
        Ok(())
    }
}

/// What [`VfsFile::map_range`]'s offset must be a multiple of: the page
/// size on the systems walden runs on, or a multiple of it.
pub const MAP_ALIGN: u64 = 64 << 10;

/// Holds a directory lock; dropping it releases the lock.
pub struct DirLock(#[allow(dead_code)] Option<std::fs::File>);

impl DirLock {
    /// A lock that holds nothing, for file systems without locking.
    pub fn none() -> DirLock {
        DirLock(None)
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    /// Every `.rs` file under `dir`, recursively.
    fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                rust_files(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }

    /// The crate root denies `unsafe_code`; only files under `src/io/` may
    /// allow it again, site by site.
    #[test]
    fn unsafe_is_allowed_only_in_io() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let root = std::fs::read_to_string(src.join("lib.rs")).unwrap();
        assert!(root.contains("#![deny(unsafe_code)]"), "src/lib.rs denies unsafe code");
        let mut files = Vec::new();
        rust_files(&src, &mut files);
        assert!(files.len() > 20, "found the sources ({} files)", files.len());
        let outside: Vec<_> = files
            .iter()
            .filter(|f| !f.starts_with(src.join("io")))
            .filter(|f| std::fs::read_to_string(f).unwrap().contains("allow(unsafe_code)"))
            .collect();
        assert!(outside.is_empty(), "unsafe allowed outside src/io/: {outside:?}");
    }
}
