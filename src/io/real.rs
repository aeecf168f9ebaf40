//! [`RealFs`]: the operating system's files. With `priority.rs`, the only
//! code in walden that contains `unsafe` (one memory map, see
//! [`RealFile::map`], and two system calls std does not wrap:
//! `posix_fadvise`, `sync_file_range`).

use super::{DirLock, Vfs, VfsFile};
use std::fs::{self, File, OpenOptions};
use std::io;
use std::ops::Deref;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// The real file system.
#[derive(Clone, Copy, Debug, Default)]
pub struct RealFs;

/// A real file.
#[derive(Debug)]
pub struct RealFile(File);

/// A read-only memory map of a file prefix (empty prefixes are not mapped).
#[non_exhaustive]
pub enum RealMap {
    /// A mapped prefix.
    Mapped(memmap2::Mmap),
    /// A prefix of length 0, which `mmap` refuses: nothing is mapped.
    Empty,
}

impl Deref for RealMap {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            RealMap::Mapped(map) => map,
            RealMap::Empty => &[],
        }
    }
}

impl Vfs for RealFs {
    type File = RealFile;

    fn create_new(&self, path: &Path) -> io::Result<RealFile> {
        OpenOptions::new().read(true).write(true).create_new(true).open(path).map(RealFile)
    }

    fn open(&self, path: &Path, write: bool) -> io::Result<RealFile> {
        OpenOptions::new().read(true).write(write).open(path).map(RealFile)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }

    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        fs::create_dir_all(dir)
    }

    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            if entry.file_type()?.is_file() {
                if let Some(name) = entry.file_name().to_str() {
                    names.push(name.to_owned());
                }
            }
        }
        Ok(names)
    }

    /// An exclusive `flock` on `dir/LOCK`. A lock found held is tried again
    /// for up to 200 ms: a flock belongs to the open file, so a child
    /// process that another thread of this process is just spawning holds a
    /// copy of it until its exec closes it, for a moment after a close here
    /// (or in another process doing the same) released it.
    fn lock_dir(&self, dir: &Path) -> io::Result<DirLock> {
        let file = OpenOptions::new().create(true).truncate(false).write(true).open(dir.join("LOCK"))?;
        let started = std::time::Instant::now();
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(DirLock(Some(file))),
                Err(fs::TryLockError::WouldBlock) if started.elapsed() < LOCK_WAIT => {
                    std::thread::sleep(std::time::Duration::from_millis(2));
                }
                Err(fs::TryLockError::WouldBlock) => {
                    return Err(io::Error::new(
                        io::ErrorKind::WouldBlock,
                        format!("{} is locked by another walden instance", dir.display()),
                    ))
                }
                Err(fs::TryLockError::Error(e)) => return Err(e),
            }
        }
    }
}

/// How long [`RealFs::lock_dir`] tries again a lock found held before it
/// reports the directory in use.
pub const LOCK_WAIT: std::time::Duration = std::time::Duration::from_millis(200);

impl RealFile {
    /// `posix_fadvise(advice)` over `[offset, offset + len)` (`len` 0: to
    /// the end of the file).
    #[cfg(target_os = "linux")]
    fn fadvise(&self, offset: u64, len: u64, advice: libc::c_int) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        let (offset, len) = (offset as libc::off64_t, len as libc::off64_t);
        // SAFETY: posix_fadvise only reads its integer arguments; the
        // descriptor is open for the life of `self`.
        #[allow(unsafe_code)]
        let rc = unsafe { libc::posix_fadvise(self.0.as_raw_fd(), offset, len, advice) };
        match rc {
            0 => Ok(()),
            _ => Err(io::Error::from_raw_os_error(rc)),
        }
    }
}

impl VfsFile for RealFile {
    type Map = RealMap;

    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.0.write_all_at(buf, offset)
    }

    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.0.read_exact_at(buf, offset)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.0.sync_data()
    }

    fn sync_and_evict_cache(&self) -> io::Result<()> {
        self.0.sync_data()?;
        #[cfg(target_os = "linux")]
        self.fadvise(0, 0, libc::POSIX_FADV_DONTNEED)?;
        Ok(())
    }

    fn start_writeback(&self, offset: u64, len: u64) -> io::Result<()> {
        #[cfg(target_os = "linux")]
        {
            use std::os::fd::AsRawFd;
            let (offset, len) = (offset as libc::off64_t, len as libc::off64_t);
            // SAFETY: sync_file_range only reads its integer arguments; the
            // descriptor is open for the life of `self`.
            #[allow(unsafe_code)]
            let rc = unsafe { libc::sync_file_range(self.0.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE) };
            if rc != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        #[cfg(not(target_os = "linux"))]
        let _ = (offset, len);
        Ok(())
    }

    fn size_bytes(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }

    #[allow(unsafe_code)]
    fn map_range(&self, offset: u64, len: u64) -> io::Result<RealMap> {
        if len == 0 {
            return Ok(RealMap::Empty);
        }
        // SAFETY: as for `map`; the files mapped by range are snapshots,
        // written once under a temporary name, renamed into place, and
        // only ever unlinked after that, which keeps a live map's pages.
        let map = unsafe { memmap2::MmapOptions::new().offset(offset).len(len as usize).populate().map(&self.0)? };
        Ok(RealMap::Mapped(map))
    }

    fn will_need(&self, offset: u64, len: u64) -> io::Result<()> {
        #[cfg(target_os = "linux")]
        self.fadvise(offset, len, libc::POSIX_FADV_WILLNEED)?;
        #[cfg(not(target_os = "linux"))]
        let _ = (offset, len);
        Ok(())
    }

    #[allow(unsafe_code)]
    fn map(&self, len: u64) -> io::Result<RealMap> {
        if len == 0 {
            return Ok(RealMap::Empty);
        }
        // SAFETY: walden maps only segment bytes that are already written and
        // that it never rewrites or truncates while a map is alive: records
        // are appended past the mapped prefix, torn tails are cut only during
        // open (before any reader exists), and segments are removed by unlink,
        // which keeps the pages of a live map valid. The directory is locked
        // (`lock_dir`) against other walden processes; a process outside
        // walden that rewrites the files breaks this promise, as documented
        // in docs/ARCHITECTURE.md.
        let map = unsafe { memmap2::MmapOptions::new().len(len as usize).map(&self.0)? };
        Ok(RealMap::Mapped(map))
    }
}
