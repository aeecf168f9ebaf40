//! [`SnapshotData`]: openraft's handle on a snapshot's bytes, a file read
//! and written at a position (tokio's `AsyncRead`, `AsyncWrite`,
//! `AsyncSeek`), so a snapshot is streamed in chunks, never held whole in
//! memory. The file is a walden snapshot file (header + zstd content) of a
//! store's snapshot directory, on any [`walden::io::Vfs`], or a buffer in
//! memory for the in-memory store of the benchmark.
//!
//! Reads and writes are positional calls on a local file, made inside
//! `poll_*` (like std's file I/O, they do not wait on the network).

use parking_lot::Mutex;
use std::io::{self, SeekFrom};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use walden::io::VfsFile;

/// A file read and written at offsets.
pub trait ByteFile: Send + Sync + 'static {
    /// Fills `buf` from `offset`.
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
    /// Writes all of `buf` at `offset`.
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// The file's length.
    fn size_bytes(&self) -> io::Result<u64>;
}

impl<F: VfsFile> ByteFile for F {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        VfsFile::read_exact_at(self, buf, offset)
    }

    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        VfsFile::write_all_at(self, buf, offset)
    }

    fn size_bytes(&self) -> io::Result<u64> {
        VfsFile::size_bytes(self)
    }
}

/// Bytes in memory, for the in-memory store.
#[derive(Default)]
pub struct MemoryFile(Mutex<Vec<u8>>);

impl MemoryFile {
    /// A buffer holding `bytes`.
    pub fn new(bytes: Vec<u8>) -> MemoryFile {
        MemoryFile(Mutex::new(bytes))
    }

    /// A copy of the bytes.
    pub fn bytes(&self) -> Vec<u8> {
        self.0.lock().clone()
    }
}

impl ByteFile for MemoryFile {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let bytes = self.0.lock();
        let start = offset as usize;
        match bytes.get(start..start + buf.len()) {
            Some(src) => {
                buf.copy_from_slice(src);
                Ok(())
            }
            None => Err(io::Error::new(io::ErrorKind::UnexpectedEof, "read past the end")),
        }
    }

    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        let mut bytes = self.0.lock();
        let end = offset as usize + buf.len();
        if bytes.len() < end {
            bytes.resize(end, 0);
        }
        bytes[offset as usize..end].copy_from_slice(buf);
        Ok(())
    }

    fn size_bytes(&self) -> io::Result<u64> {
        Ok(self.0.lock().len() as u64)
    }
}

/// A snapshot's bytes, with a position.
pub struct SnapshotData {
    file: Arc<dyn ByteFile>,
    pos: u64,
    /// The file's path when it is one of a store's files.
    path: Option<PathBuf>,
}

impl std::fmt::Debug for SnapshotData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotData").field("path", &self.path).field("pos", &self.pos).finish()
    }
}

impl SnapshotData {
    /// `file` at position 0; `path` when it is one of a store's files.
    pub fn new(file: Arc<dyn ByteFile>, path: Option<PathBuf>) -> SnapshotData {
        SnapshotData { file, pos: 0, path }
    }

    /// The file's path, when it is one of a store's files.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The file.
    pub fn file(&self) -> &Arc<dyn ByteFile> {
        &self.file
    }

    /// The file's length.
    pub fn size_bytes(&self) -> io::Result<u64> {
        self.file.size_bytes()
    }
}

impl tokio::io::AsyncRead for SnapshotData {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let size = self.file.size_bytes()?;
        let n = (size.saturating_sub(self.pos)).min(buf.remaining() as u64) as usize;
        if n > 0 {
            let dst = buf.initialize_unfilled_to(n);
            self.file.read_exact_at(&mut dst[..n], self.pos)?;
            buf.advance(n);
            self.pos += n as u64;
        }
        Poll::Ready(Ok(()))
    }
}

impl tokio::io::AsyncWrite for SnapshotData {
    fn poll_write(mut self: Pin<&mut Self>, _cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.file.write_all_at(buf, self.pos)?;
        self.pos += buf.len() as u64;
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl tokio::io::AsyncSeek for SnapshotData {
    fn start_seek(mut self: Pin<&mut Self>, position: SeekFrom) -> io::Result<()> {
        let target = match position {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
            SeekFrom::End(d) => self.file.size_bytes()?.checked_add_signed(d),
        };
        self.pos = target.ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "seek before the start"))?;
        Ok(())
    }

    fn poll_complete(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<u64>> {
        Poll::Ready(Ok(self.pos))
    }
}
