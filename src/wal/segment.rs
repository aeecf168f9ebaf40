//! Segment files: names, creation (crash-safe, preallocated) and the scan
//! that walks a segment's records and says where and why it stops.

use crate::format::{
    decode_record, RecordDecodeError, RecordHeader, SegmentHeader, RECORD_ALIGN, SEGMENT_HEADER_BYTES,
};
use crate::io::{Vfs, VfsFile};
use crate::{Error, Lsn, Result};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

const SEGMENT_SUFFIX: &str = ".wal";
/// Suffix of a segment file being prepared; never holds records.
pub(crate) const TEMP_SUFFIX: &str = ".wal.tmp";
/// Infix of files holding bytes moved aside by recovery.
pub(crate) const QUARANTINE_INFIX: &str = ".quarantine";
/// Zero-fill in 64 KiB writes: 1 MiB writes leave the file cached in large
/// folios, which made later small appends ~2.5x slower on ext4.
const ZERO_CHUNK_BYTES: usize = 64 << 10;

/// The file name of the segment whose first record has `first_lsn`:
/// twenty decimal digits, so names sort by LSN.
pub fn segment_file_name(first_lsn: Lsn) -> String {
    format!("{:020}{SEGMENT_SUFFIX}", first_lsn.0)
}

/// The first LSN a segment file name stands for, if it is one.
pub fn parse_segment_file_name(name: &str) -> Option<Lsn> {
    let digits = name.strip_suffix(SEGMENT_SUFFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok().map(Lsn)
}

pub(crate) fn now_unix_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64)
}

/// A random 64-bit value for log ids and segment salts. Not cryptographic:
/// it only has to differ between logs and between generations of a file.
pub(crate) fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(now_unix_us());
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    hasher.write_u32(std::process::id());
    hasher.finish()
}

/// A segment that is part of the log.
pub(crate) struct Segment<F> {
    pub header: SegmentHeader,
    pub path: PathBuf,
    pub file: Arc<F>,
    /// For a sealed segment: the end offset of its last record, and that LSN.
    /// `None` for the active segment.
    pub sealed: Option<(u64, Lsn)>,
}

impl<F> Clone for Segment<F> {
    fn clone(&self) -> Self {
        Segment { header: self.header, path: self.path.clone(), file: self.file.clone(), sealed: self.sealed }
    }
}

/// A zero-filled file waiting to become the next segment.
pub(crate) struct Spare<F> {
    pub path: PathBuf,
    pub file: F,
}

/// Creates and fills a spare segment file under a temporary name.
pub(crate) fn create_spare<V: Vfs>(fs: &V, dir: &Path, bytes: u64, preallocate: bool) -> Result<Spare<V::File>> {
    let path = dir.join(format!("{:016x}{TEMP_SUFFIX}", random_u64()));
    let file = fs.create_new(&path).map_err(Error::io("create", &path))?;
    if preallocate {
        // The zeros are synced here, on the preparer thread, so that the
        // fdatasync of the header when the spare is published (on the
        // append path) does not have to write them, and so that the blocks
        // are allocated before any record's fdatasync needs them.
        let zero_fill = || -> std::io::Result<()> {
            let zeros = vec![0u8; ZERO_CHUNK_BYTES];
            let mut offset = 0u64;
            while offset < bytes {
                let n = (bytes - offset).min(ZERO_CHUNK_BYTES as u64) as usize;
                file.write_all_at(&zeros[..n], offset)?;
                offset += n as u64;
            }
            file.sync_data()
        };
        if let Err(e) = zero_fill() {
            drop(file);
            // A spare holds no records: remove it rather than leave 64 MiB
            // behind (recovery would remove it too, at the next open).
            if let Err(remove) = fs.remove_file(&path) {
                log::warn!("walden: could not remove the unfinished spare {}: {remove}", path.display());
            }
            return Err(Error::io("preallocate", &path)(e));
        }
    }
    Ok(Spare { path, file })
}

/// Turns a spare into the segment starting at `header.first_lsn`: header
/// written and synced, then renamed into place and the directory synced.
/// Only then may records be written to it.
pub(crate) fn publish_segment<V: Vfs>(
    fs: &V,
    dir: &Path,
    spare: Spare<V::File>,
    header: SegmentHeader,
) -> Result<Segment<V::File>> {
    let Spare { path: temp, file } = spare;
    file.write_all_at(&header.encode(), 0).map_err(Error::io("write header", &temp))?;
    file.sync_data().map_err(Error::io("fsync", &temp))?;
    let path = dir.join(segment_file_name(header.first_lsn));
    fs.rename(&temp, &path).map_err(Error::io("rename", &path))?;
    fs.sync_dir(dir).map_err(Error::io("fsync directory", dir))?;
    Ok(Segment { header, path, file: Arc::new(file), sealed: None })
}

/// Where and why a scan of one segment stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stop {
    /// The bytes ran out exactly at a record boundary.
    End,
    /// A record failed to decode.
    Bad(RecordDecodeError),
    /// A valid record carried the wrong LSN.
    WrongLsn(Lsn),
}

/// The outcome of walking one segment from its header.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Scan {
    /// Offset just past the last record of the last complete batch.
    pub end: u64,
    /// The LSN of that record, or `first_lsn - 1` if there is none.
    pub last_lsn: Lsn,
    /// Where the walk stopped: the offset of the first byte not accepted
    /// (the start of an incomplete batch, if one was pending), the LSN
    /// expected there, and why.
    pub stop_offset: u64,
    pub stop_lsn: Lsn,
    pub stop: Stop,
    /// Whether the stop cut a batch short (its records are not accepted).
    pub torn_batch: bool,
    /// Records accepted (complete batches only).
    pub records: u64,
    /// Whether the bytes at `stop_offset` onward are all zero.
    pub rest_is_zero: bool,
}

/// Walks the records of a segment in `bytes` (the whole file, header
/// included). Calls `visit` for every record of every complete batch.
pub(crate) fn scan_segment(bytes: &[u8], header: &SegmentHeader, mut visit: impl FnMut(&RecordHeader, &[u8])) -> Scan {
    let seed = header.seed();
    let mut offset = SEGMENT_HEADER_BYTES;
    let mut expected = header.first_lsn;
    let mut committed = (SEGMENT_HEADER_BYTES, Lsn(header.first_lsn.0 - 1), 0u64);
    let mut batch: Vec<(RecordHeader, usize, usize)> = Vec::new();
    let stop = loop {
        if offset >= bytes.len() {
            break Stop::End;
        }
        match decode_record(&bytes[offset..], seed) {
            Err(e) => break Stop::Bad(e),
            Ok(rec) if rec.header.lsn != expected => break Stop::WrongLsn(rec.header.lsn),
            Ok(rec) => {
                let payload_at = offset + crate::format::RECORD_HEADER_BYTES;
                batch.push((rec.header, payload_at, rec.payload.len()));
                offset += rec.header.frame_len();
                expected = expected.next();
                if !rec.header.batch_continues() {
                    for (header, at, len) in &batch {
                        visit(header, &bytes[*at..*at + *len]);
                    }
                    committed = (offset, Lsn(expected.0 - 1), committed.2 + batch.len() as u64);
                    batch.clear();
                }
            }
        }
    };
    let (end, last_lsn, records) = committed;
    let (stop_offset, stop_lsn) = if batch.is_empty() { (offset, expected) } else { (end, last_lsn.next()) };
    debug_assert_eq!(stop_offset % RECORD_ALIGN, 0);
    Scan {
        end: end as u64,
        last_lsn,
        stop_offset: stop_offset as u64,
        stop_lsn,
        stop,
        torn_batch: !batch.is_empty(),
        records,
        rest_is_zero: bytes[stop_offset.min(bytes.len())..].iter().all(|&b| b == 0),
    }
}

/// The seal of the record at `lsn` in a segment (`bytes` is its readable
/// prefix, header included): the segment's salt and the record's stored
/// CRC, once the record has passed its checksum. Records before it are
/// stepped over by their header's length and LSN (as a reader steps over
/// records before its start). `None` if the segment does not hold `lsn` or
/// a record on the way does not hold up.
pub(crate) fn find_record_seal(bytes: &[u8], header: &SegmentHeader, lsn: Lsn) -> Option<crate::format::RecordSeal> {
    use crate::format::{padded_len, read_u32, read_u64, MAX_RECORD_BYTES, RECORD_HEADER_BYTES};
    if lsn < header.first_lsn {
        return None;
    }
    let mut offset = SEGMENT_HEADER_BYTES;
    let mut expected = header.first_lsn;
    while offset + RECORD_HEADER_BYTES <= bytes.len() {
        let frame = &bytes[offset..];
        if expected == lsn {
            let record = decode_record(frame, header.seed()).ok()?;
            return (record.header.lsn == lsn)
                .then(|| crate::format::RecordSeal { segment_salt: header.salt, record_crc: read_u32(frame, 0) });
        }
        let payload_len = read_u32(frame, 4);
        if read_u64(frame, 8) != expected.0 || payload_len > MAX_RECORD_BYTES {
            return None;
        }
        offset += padded_len(payload_len as usize);
        expected = expected.next();
    }
    None
}

/// Looks past `from` for any valid record of this segment and returns the
/// highest durable watermark found, with the LSN that carried it. A record
/// whose watermark covers `lsn` proves that `lsn` had reached stable storage.
pub(crate) fn durability_proof(bytes: &[u8], header: &SegmentHeader, from: u64, lsn: Lsn) -> Option<Lsn> {
    let seed = header.seed();
    let mut offset = from as usize + RECORD_ALIGN;
    while offset + crate::format::RECORD_HEADER_BYTES <= bytes.len() {
        // Cheap filters before the checksum: zeroed space, kind byte, LSN.
        let candidate = &bytes[offset..];
        if candidate[24] == 1 && crate::format::read_u64(candidate, 8) > lsn.0 {
            if let Ok(rec) = decode_record(candidate, seed) {
                if rec.header.durable_watermark >= lsn {
                    return Some(rec.header.lsn);
                }
            }
        }
        offset += RECORD_ALIGN;
    }
    None
}
