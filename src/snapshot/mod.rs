//! Snapshot files: a state, compressed with zstd, as of one LSN.
//!
//! A snapshot is written crash-safely (temporary name, fdatasync, rename,
//! directory fsync) and streamed in constant memory: the state writes
//! itself into a [`std::io::Write`] that compresses and checksums as it
//! goes. It is read back only after its checksum holds. The layout is in
//! `header.rs` and docs/FORMAT.md.
//!
//! **Invariant:** a file with a final snapshot name is complete and synced;
//! a half-written snapshot only ever exists under a `.tmp` name.

mod header;
mod origin;

pub use header::{
    RecordSeal, SnapshotHeader, SnapshotHeaderError, SnapshotOrigin, SNAPSHOT_HEADER_BYTES, SNAPSHOT_V1_HEADER_BYTES,
    SNAPSHOT_VERSION,
};
pub(crate) use origin::wants_seal;
pub use origin::{check_name, check_origin, OriginCheck};

use crate::io::{Vfs, VfsFile, MAP_ALIGN};
use crate::{Error, Lsn, Result};
use std::io::{self, BufRead, Read, Write};
use std::path::{Path, PathBuf};

const PREFIX: &str = "snapshot-";
const SUFFIX: &str = ".zst";
const TEMP_SUFFIX: &str = ".zst.tmp";
const IO_CHUNK_BYTES: usize = 1 << 20;
/// zstd level 1. `zstd -b1 -e3` on this project's 2-core machine, on
/// 200 MB of a 10M-key store's snapshot content (100-byte random values):
/// level 1 at 404 MB/s (1.277x), level 3 at 101 MB/s (1.274x); on 1 MB
/// of text (walden's own docs and source) level 1 gives 3.16x, level 3
/// 3.56x. A snapshot is written often and read once, while writers run:
/// its writing time counts more than the last tenth of its size. Any
/// level reads back the same: the level is the compressor's alone.
const ZSTD_LEVEL: i32 = 1;
/// What the compressor is handed at a time, at least.
const ENCODER_INPUT_BYTES: usize = 64 << 10;
/// Writeback of the written bytes is started every this many bytes, so
/// the closing fdatasync waits only for the last of them.
const WRITEBACK_BYTES: u64 = 16 << 20;
/// The most zstd worker threads a snapshot uses.
const MAX_COMPRESSION_WORKERS: usize = 4;

/// The file name of the snapshot covering `lsn`; names sort by LSN.
pub fn snapshot_file_name(lsn: Lsn) -> String {
    format!("{PREFIX}{:020}{SUFFIX}", lsn.0)
}

/// The LSN a snapshot file name stands for, if it is one.
pub fn parse_snapshot_file_name(name: &str) -> Option<Lsn> {
    let digits = name.strip_prefix(PREFIX)?.strip_suffix(SUFFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok().map(Lsn)
}

/// A snapshot on disk.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct SnapshotInfo {
    /// The snapshot file (`snapshot-{lsn:020}.zst`).
    pub path: PathBuf,
    /// Its header (the content is verified separately).
    pub header: SnapshotHeader,
    /// The whole file, header included.
    pub file_bytes: u64,
}

/// Writes a snapshot of the state as of `lsn`, taken from the log `origin`
/// names, into `dir`. `write_state` streams the state into the writer it is
/// given and returns how many entries it wrote. Returns once the snapshot
/// is durable under its final name.
pub fn write_snapshot<V: Vfs>(
    fs: &V,
    dir: &Path,
    lsn: Lsn,
    created_unix_us: u64,
    origin: SnapshotOrigin,
    write_state: impl FnOnce(&mut dyn Write) -> io::Result<u64>,
) -> Result<SnapshotInfo> {
    let final_path = dir.join(snapshot_file_name(lsn));
    let temp_path = dir.join(format!("{PREFIX}{:020}-{:016x}{TEMP_SUFFIX}", lsn.0, crate::wal::random_u64()));
    let file = fs.create_new(&temp_path).map_err(Error::io("create", &temp_path))?;
    let result = (|| {
        let sink = FileSink::new(&file, SNAPSHOT_HEADER_BYTES as u64);
        let mut zstd = zstd::stream::Encoder::new(sink, ZSTD_LEVEL)?;
        // zstd's workers compress while this thread goes on producing the
        // state; their frames are standard zstd frames. They are made on
        // this thread and run at its priority (the store lowers it).
        let workers = compression_workers();
        if workers > 0 {
            zstd.multithread(workers)?;
        }
        // Each write to the encoder is a zstd stream call: small writes
        // (a field at a time) are gathered first; large ones pass through.
        let mut encoder = io::BufWriter::with_capacity(ENCODER_INPUT_BYTES, zstd);
        let entries = write_state(&mut encoder)?;
        let sink = encoder.into_inner().map_err(io::IntoInnerError::into_error)?.finish()?.finish()?;
        Ok::<_, io::Error>((entries, sink))
    })();
    let (entries, (content_bytes, content_crc)) = result.map_err(Error::io("write", &temp_path))?;
    let header = SnapshotHeader { lsn, created_unix_us, entries, content_bytes, content_crc, origin: Some(origin) };
    let encoded = header.encode();
    assert_eq!(encoded.len(), SNAPSHOT_HEADER_BYTES, "the content was written after a header of this length");
    file.write_all_at(&encoded, 0).map_err(Error::io("write header", &temp_path))?;
    file.sync_data().map_err(Error::io("fsync", &temp_path))?;
    fs.rename(&temp_path, &final_path).map_err(Error::io("rename", &final_path))?;
    fs.sync_dir(dir).map_err(Error::io("fsync directory", dir))?;
    Ok(SnapshotInfo { path: final_path, header, file_bytes: header.file_bytes() })
}

/// zstd's worker threads for a snapshot: one a core, up to
/// [`MAX_COMPRESSION_WORKERS`]; 0 (zstd compresses on the calling thread)
/// on one core, where a worker would only add a copy.
fn compression_workers() -> u32 {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cores <= 1 {
        0
    } else {
        cores.min(MAX_COMPRESSION_WORKERS) as u32
    }
}

/// What [`list_snapshots`] found.
#[derive(Debug)]
#[non_exhaustive]
pub struct SnapshotListing {
    /// Snapshots whose header reads, oldest first (content not yet verified:
    /// see [`verify_snapshot`]).
    pub snapshots: Vec<SnapshotInfo>,
    /// Files with a snapshot name whose header cannot be read, and why.
    pub unreadable: Vec<(PathBuf, Error)>,
}

/// The snapshots in `dir`, oldest first.
pub fn list_snapshots<V: Vfs>(fs: &V, dir: &Path) -> Result<SnapshotListing> {
    let mut names: Vec<(Lsn, String)> = fs
        .list_dir(dir)
        .map_err(Error::io("list", dir))?
        .into_iter()
        .filter_map(|name| parse_snapshot_file_name(&name).map(|lsn| (lsn, name)))
        .collect();
    names.sort();
    let mut good = Vec::new();
    let mut bad = Vec::new();
    for (_, name) in names {
        let path = dir.join(name);
        match read_header(fs, &path) {
            Ok(info) => good.push(info),
            Err(e) => bad.push((path, e)),
        }
    }
    Ok(SnapshotListing { snapshots: good, unreadable: bad })
}

/// Names of leftover temporary snapshot files in `dir` (a crash during a
/// snapshot leaves one; it is never taken for a snapshot).
pub fn temporary_files<V: Vfs>(fs: &V, dir: &Path) -> Result<Vec<PathBuf>> {
    Ok(fs
        .list_dir(dir)
        .map_err(Error::io("list", dir))?
        .into_iter()
        .filter(|name| name.starts_with(PREFIX) && name.ends_with(TEMP_SUFFIX))
        .map(|name| dir.join(name))
        .collect())
}

fn read_header<V: Vfs>(fs: &V, path: &Path) -> Result<SnapshotInfo> {
    let file = fs.open(path, false).map_err(Error::io("open", path))?;
    let file_bytes = file.size_bytes().map_err(Error::io("stat", path))?;
    // As much as the longest header this build reads; decode says if the
    // version needs more than the file has.
    let mut bytes = vec![0u8; file_bytes.min(SNAPSHOT_HEADER_BYTES as u64) as usize];
    file.read_exact_at(&mut bytes, 0).map_err(Error::io("read", path))?;
    let header = SnapshotHeader::decode(&bytes).map_err(|e| corrupt(path, e))?;
    if file_bytes != header.file_bytes() {
        return Err(corrupt(
            path,
            SnapshotHeaderError::LengthMismatch { header: header.content_bytes, file: file_bytes },
        ));
    }
    Ok(SnapshotInfo { path: path.to_owned(), header, file_bytes })
}

fn corrupt(path: &Path, e: SnapshotHeaderError) -> Error {
    match e {
        SnapshotHeaderError::UnsupportedVersion(_) => {
            Error::Unsupported { file: path.to_owned(), reason: e.to_string() }
        }
        _ => Error::BadSnapshot { file: path.to_owned(), reason: e.to_string() },
    }
}

/// Reads the whole snapshot once and checks its content checksum.
pub fn verify_snapshot<V: Vfs>(fs: &V, info: &SnapshotInfo) -> Result<()> {
    let path = &info.path;
    let file = fs.open(path, false).map_err(Error::io("open", path))?;
    let mut source = FileSource::new(&file, info.header.header_bytes() as u64, info.header.content_bytes);
    io::copy(&mut source, &mut io::sink()).map_err(Error::io("read", path))?;
    check_content_crc(info, source.finish())?;
    Ok(())
}

/// An error naming the file unless `crc` is the content's stored checksum.
fn check_content_crc(info: &SnapshotInfo, crc: u32) -> Result<()> {
    if crc != info.header.content_crc {
        return Err(Error::BadSnapshot {
            file: info.path.clone(),
            reason: format!(
                "content checksum mismatch: stored {:#010x}, computed {crc:#010x}",
                info.header.content_crc
            ),
        });
    }
    Ok(())
}

/// Verifies the snapshot, then streams its decompressed content into
/// `read_state`. A snapshot whose checksum fails is never decoded.
pub fn read_snapshot<V: Vfs, T>(
    fs: &V,
    info: &SnapshotInfo,
    read_state: impl FnOnce(&mut dyn Read) -> io::Result<T>,
) -> Result<T> {
    verify_snapshot(fs, info)?;
    let path = &info.path;
    let file = fs.open(path, false).map_err(Error::io("open", path))?;
    let mut source = FileSource::new(&file, info.header.header_bytes() as u64, info.header.content_bytes);
    // Verified above: the CRC is not computed again. zstd reads straight
    // from the source's 1 MiB buffer, not through a buffer of its own.
    source.hasher = None;
    let mut decoder = zstd::stream::Decoder::with_buffer(source).map_err(Error::io("decompress", path))?;
    read_state(&mut decoder).map_err(|e| content_error(path, e))
}

/// What a failed read of a snapshot's content is: an I/O error if the
/// device failed, not the bytes; else a bad snapshot.
fn content_error(path: &Path, e: io::Error) -> Error {
    match e.raw_os_error() {
        Some(_) => Error::io("read", path)(e),
        None => Error::BadSnapshot { file: path.to_path_buf(), reason: format!("content: {e}") },
    }
}

/// [`read_snapshot`] in one pass over the file instead of two: the
/// checksum is computed as the content streams into `read_state`, and
/// checked once it and the rest of the content are read. A state built
/// from content that fails the checksum is dropped, never returned. Only
/// for a `read_state` that fails cleanly on any bytes (an error, never a
/// panic or an allocation its input does not justify): it sees damaged
/// content before the checksum can refuse it.
pub fn read_snapshot_checking_on_the_way<V: Vfs, T>(
    fs: &V,
    info: &SnapshotInfo,
    read_state: impl FnOnce(&mut dyn Read) -> io::Result<T>,
) -> Result<T> {
    let path = &info.path;
    let file = fs.open(path, false).map_err(Error::io("open", path))?;
    let source = FileSource::new(&file, info.header.header_bytes() as u64, info.header.content_bytes);
    let mut decoder = zstd::stream::Decoder::with_buffer(source).map_err(Error::io("decompress", path))?;
    let state = read_state(&mut decoder);
    // What read_state left unread still counts: the checksum covers every
    // byte of the content.
    let drained = io::copy(&mut decoder, &mut io::sink());
    let mut source = decoder.finish();
    let rest = io::copy(&mut source, &mut io::sink()).map_err(Error::io("read", path))?;
    check_content_crc(info, source.finish())?;
    let state = state.and_then(|state| match (drained, rest) {
        (Ok(0), 0) => Ok(state),
        (Ok(_), _) => Err(io::Error::new(io::ErrorKind::InvalidData, "bytes after the end of the state's content")),
        (Err(e), _) => Err(e),
    });
    state.map_err(|e| content_error(path, e))
}

/// Deletes all but the newest `keep_count` snapshots of `snapshots` (oldest
/// first). Returns the paths removed. Only complete, synced snapshots are
/// ever listed, so the kept ones are durable before anything goes.
pub fn prune_snapshots<V: Vfs>(
    fs: &V,
    dir: &Path,
    snapshots: &[SnapshotInfo],
    keep_count: usize,
) -> Result<Vec<PathBuf>> {
    let excess = snapshots.len().saturating_sub(keep_count.max(1));
    let mut removed = Vec::with_capacity(excess);
    for info in &snapshots[..excess] {
        fs.remove_file(&info.path).map_err(Error::io("remove", &info.path))?;
        removed.push(info.path.clone());
    }
    if !removed.is_empty() {
        fs.sync_dir(dir).map_err(Error::io("fsync directory", dir))?;
    }
    Ok(removed)
}

/// Buffers compressed bytes into 1 MiB writes at increasing offsets,
/// computing their CRC32 on the way, and starts their writeback every
/// [`WRITEBACK_BYTES`].
struct FileSink<'f, F> {
    file: &'f F,
    offset: u64,
    buffer: Vec<u8>,
    hasher: crc32fast::Hasher,
    bytes: u64,
    /// Writeback is started for the bytes before this offset.
    written_back: u64,
}

impl<'f, F: VfsFile> FileSink<'f, F> {
    fn new(file: &'f F, offset: u64) -> Self {
        FileSink {
            file,
            offset,
            buffer: Vec::with_capacity(IO_CHUNK_BYTES),
            hasher: crc32fast::Hasher::new(),
            bytes: 0,
            written_back: offset,
        }
    }

    fn drain(&mut self) -> io::Result<()> {
        if !self.buffer.is_empty() {
            self.file.write_all_at(&self.buffer, self.offset)?;
            self.offset += self.buffer.len() as u64;
            self.buffer.clear();
            if self.offset - self.written_back >= WRITEBACK_BYTES {
                match self.file.start_writeback(self.written_back, self.offset - self.written_back) {
                    Ok(()) => self.written_back = self.offset,
                    // Only a hint: the closing fdatasync reports what failed.
                    Err(e) => log::debug!("walden: could not start a snapshot's writeback early: {e}"),
                }
            }
        }
        Ok(())
    }

    /// Writes what is buffered; returns the content length and CRC.
    fn finish(mut self) -> io::Result<(u64, u32)> {
        self.drain()?;
        Ok((self.bytes, self.hasher.finalize()))
    }
}

impl<F: VfsFile> Write for FileSink<'_, F> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.hasher.update(buf);
        self.bytes += buf.len() as u64;
        self.buffer.extend_from_slice(buf);
        if self.buffer.len() >= IO_CHUNK_BYTES {
            self.drain()?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.drain()
    }
}

/// Reads `[offset, offset + len)` of a file front to back, computing the
/// CRC32 of what it returns (unless told not to): through read-only maps
/// of [`MAP_WINDOW_BYTES`] at a time, each unmapped when the next is made
/// (so a large snapshot is never resident whole, and its bytes are not
/// copied out of the page cache first), the kernel told to read the next
/// window in while this one is consumed; or, if the file system cannot
/// map it, in 1 MiB reads.
struct FileSource<'f, F: VfsFile> {
    file: &'f F,
    /// The first byte not yet read or mapped.
    offset: u64,
    end: u64,
    buffer: Vec<u8>,
    /// The mapped window, and where the content starts in it (the window
    /// starts at a multiple of `MAP_ALIGN`).
    window: Option<(F::Map, usize)>,
    /// Whether to map: cleared for good once a map fails or comes back short.
    mapping: bool,
    at: usize,
    /// `None` once the content is known to be good: not computed again.
    hasher: Option<crc32fast::Hasher>,
}

/// How much of a snapshot is mapped at a time.
const MAP_WINDOW_BYTES: u64 = 8 << 20;

impl<'f, F: VfsFile> FileSource<'f, F> {
    fn new(file: &'f F, offset: u64, len: u64) -> Self {
        let hasher = Some(crc32fast::Hasher::new());
        FileSource { file, offset, end: offset + len, buffer: Vec::new(), window: None, mapping: true, at: 0, hasher }
    }

    fn finish(self) -> u32 {
        self.hasher.map_or(0, |h| h.finalize())
    }

    /// The bytes of the current window or read, consumed up to `at`.
    fn current(&self) -> &[u8] {
        match &self.window {
            Some((map, skip)) => &map[*skip..],
            None => &self.buffer,
        }
    }

    /// Maps the next window; false (and no more maps tried) if the file
    /// system would not map it whole.
    fn map_next(&mut self) -> bool {
        let start = self.offset - self.offset % MAP_ALIGN;
        let end = (start + MAP_WINDOW_BYTES).min(self.end);
        match self.file.map_range(start, end - start) {
            Ok(map) if map.len() as u64 == end - start => {
                if end < self.end {
                    // Only a hint: a refusal changes nothing but the speed.
                    let _ = self.file.will_need(end, MAP_WINDOW_BYTES.min(self.end - end));
                }
                let skip = (self.offset - start) as usize;
                if let Some(hasher) = &mut self.hasher {
                    hasher.update(&map[skip..]);
                }
                self.window = Some((map, skip));
                self.offset = end;
                true
            }
            // Short (the file is shorter than its header says) or refused:
            // the reads report what is wrong, if anything is.
            Ok(_) | Err(_) => {
                self.mapping = false;
                false
            }
        }
    }
}

impl<F: VfsFile> Read for FileSource<'_, F> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let buffered = self.fill_buf()?;
        let n = out.len().min(buffered.len());
        out[..n].copy_from_slice(&buffered[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl<F: VfsFile> BufRead for FileSource<'_, F> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        if self.at == self.current().len() {
            self.window = None;
            self.buffer.clear();
            self.at = 0;
            if self.offset == self.end {
                return Ok(&[]);
            }
            if !(self.mapping && self.map_next()) {
                let n = (self.end - self.offset).min(IO_CHUNK_BYTES as u64) as usize;
                self.buffer.resize(n, 0);
                self.file.read_exact_at(&mut self.buffer, self.offset)?;
                if let Some(hasher) = &mut self.hasher {
                    hasher.update(&self.buffer);
                }
                self.offset += n as u64;
            }
        }
        let at = self.at;
        Ok(&self.current()[at..])
    }

    fn consume(&mut self, n: usize) {
        self.at = (self.at + n).min(self.current().len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::{Fault, FaultKind, SimFs, SimOp};

    /// A file of `len` bytes that differ from their neighbours.
    fn file_of(fs: &SimFs, len: usize) -> <SimFs as Vfs>::File {
        let bytes: Vec<u8> = (0..len as u64).map(|i| (i.wrapping_mul(2_654_435_761) >> 7) as u8).collect();
        let file = fs.create_new(Path::new("/f")).unwrap();
        file.write_all_at(&bytes, 0).unwrap();
        file
    }

    fn read_all(source: &mut FileSource<'_, impl VfsFile>) -> Vec<u8> {
        let mut out = Vec::new();
        loop {
            let chunk = source.fill_buf().unwrap();
            if chunk.is_empty() {
                return out;
            }
            // Consume in odd steps, across every window's end.
            let n = chunk.len().min(777_777);
            out.extend_from_slice(&chunk[..n]);
            source.consume(n);
        }
    }

    #[test]
    fn a_source_returns_the_same_bytes_and_crc_mapped_or_read() {
        let len = 2 * MAP_WINDOW_BYTES as usize + 12_345;
        let (offset, content) = (4_099u64, len as u64 - 4_099 - 11);
        let fs = SimFs::new();
        let file = file_of(&fs, len);
        let mut whole = vec![0; content as usize];
        file.read_exact_at(&mut whole, offset).unwrap();

        let mut mapped = FileSource::new(&file, offset, content);
        assert_eq!(read_all(&mut mapped), whole);
        assert!(mapped.mapping, "every window was mapped");
        assert_eq!(mapped.finish(), crc32fast::hash(&whole));

        // A file system that refuses to map: the same bytes, by reads.
        fs.inject(Fault { at_call: 1, kind: FaultKind::Eio, persistent: true, only: Some(SimOp::Map) });
        let mut read = FileSource::new(&file, offset, content);
        assert_eq!(read_all(&mut read), whole);
        assert!(!read.mapping);
        assert_eq!(read.finish(), crc32fast::hash(&whole));
    }

    #[test]
    fn a_file_shorter_than_its_content_fails_at_the_missing_bytes() {
        let fs = SimFs::new();
        let file = file_of(&fs, MAP_WINDOW_BYTES as usize + 100);
        let mut source = FileSource::new(&file, 100, MAP_WINDOW_BYTES + 1_000);
        let mut got = 0;
        let err = loop {
            match source.fill_buf() {
                Ok([]) => panic!("the content ended early without an error"),
                Ok(chunk) => {
                    let n = chunk.len();
                    got += n;
                    source.consume(n);
                }
                Err(e) => break e,
            }
        };
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof, "{err}");
        assert!(got < MAP_WINDOW_BYTES as usize + 1_000, "{got} bytes read of a file that holds fewer");
    }
}
