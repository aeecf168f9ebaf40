//! Following a log another process writes, like `tail -f`: [`follow_dir`]
//! (the library behind `walden follow`).
//!
//! The writer's atomics are not visible from another process, so the files
//! are polled: opened read-only, read with pread from where the last
//! complete batch ended, every `poll` (5 ms by default) while nothing new
//! is there. A record is delivered once its whole batch is in the file and
//! every checksum holds; a torn write in progress, or a hole a concurrent
//! appender has not filled yet, reads as zeros or a bad checksum and is
//! waited on, never delivered.
//!
//! What the writer's restart does to the files, and what this does about
//! it. After a process crash (SIGKILL) every byte written survives in the
//! page cache, so recovery keeps every complete batch this delivered and
//! cuts only what this never delivered (a torn tail, a batch written
//! behind a hole): it copies those bytes into a `.quarantine` file, zeroes
//! them in place, and the restarted writer reuses their LSNs at the same
//! offsets, where this is waiting. After power loss, records written but
//! not yet synced may vanish and their LSNs be reused by other bytes. So
//! each LSN is delivered at most once, and when the files change under
//! what was delivered (a new quarantine file appears, or the last delivered
//! record's bytes are no longer there), the segment is read again from its
//! start and each of the last [`RECENT_CHECKED`] delivered LSNs that now
//! holds other bytes is reported as [`FollowEvent::Replaced`], not
//! delivered again.
//!
//! **Invariant:** read-only: no lock, no map, no write; files are opened
//! read-only and read with pread. Each LSN is delivered at most once, in
//! order, with no gap; a record whose segment was removed before it was
//! read is [`Error::Compacted`], never skipped.

use super::range::LogRecordView;
use crate::error::Corruption;
use crate::format::{decode_record, RecordDecodeError, SegmentHeader, RECORD_HEADER_BYTES, SEGMENT_HEADER_BYTES};
use crate::io::{Vfs, VfsFile};
use crate::wal::segment::QUARANTINE_INFIX;
use crate::wal::{parse_segment_file_name, segment_file_name};
use crate::{Error, Lsn, Result};
use std::collections::VecDeque;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How many of the last delivered records are checked again when the
/// files change under them (see the module docs).
pub const RECENT_CHECKED: usize = 4096;
/// The first read at a position; grown while records keep coming.
const CHUNK_MIN_BYTES: usize = 16 << 10;
const CHUNK_MAX_BYTES: usize = 4 << 20;
/// Undecodable bytes waited on this long are reported once.
const STALL_REPORT_AFTER: Duration = Duration::from_secs(2);

/// Where [`follow_dir`] starts and how often it looks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FollowOptions {
    /// The first LSN to deliver; `None`: the oldest the log holds.
    pub from: Option<Lsn>,
    /// How long to sleep when nothing new is in the files.
    pub poll: Duration,
}

impl Default for FollowOptions {
    fn default() -> Self {
        FollowOptions { from: None, poll: Duration::from_millis(5) }
    }
}

/// What [`follow_dir`] hands its caller.
#[derive(Debug)]
#[non_exhaustive]
pub enum FollowEvent<'a> {
    /// The next record: complete, its batch complete, its checksum held.
    Record(LogRecordView<'a>),
    /// A record delivered earlier now holds other bytes: the writer lost it
    /// (power loss, or an operator's cut) and reused its LSN. It is not
    /// delivered again.
    Replaced {
        /// The LSN delivered earlier.
        lsn: Lsn,
        /// The segment file it is in now.
        file: &'a Path,
        /// Its offset there.
        offset: u64,
    },
    /// The bytes where the next record belongs have not read as one for a
    /// while (a write in progress reads so for microseconds): damage, or a
    /// writer that died mid-write and was not restarted. Reported once per
    /// place; the follow keeps waiting there.
    Stalled {
        /// The LSN expected there.
        lsn: Lsn,
        /// The segment file.
        file: &'a Path,
        /// The offset.
        offset: u64,
        /// What is there.
        what: String,
    },
}

/// What a follow did, once it stopped.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct FollowSummary {
    /// Records delivered.
    pub records: u64,
    /// The LSN it would have delivered next.
    pub next_lsn: Lsn,
    /// Delivered records found replaced.
    pub replaced: u64,
}

/// Follows the log in `log_dir` (a [`super::DataDir`]'s `log_dir`), read
/// only and without its lock, calling `visit` for each record from
/// `options.from` on as it becomes readable, until `stop` is set or `visit`
/// breaks. Returns [`Error::Compacted`] if `from` (or the next record) is
/// older than the oldest segment.
pub fn follow_dir<V: Vfs>(
    fs: &V,
    log_dir: &Path,
    options: &FollowOptions,
    stop: &AtomicBool,
    mut visit: impl FnMut(FollowEvent<'_>) -> ControlFlow<()>,
) -> Result<FollowSummary> {
    if options.from == Some(Lsn::ZERO) {
        return Err(Error::InvalidArgument(format!("LSN 0 names no record: follow from LSN {}", Lsn::FIRST)));
    }
    let mut tail = Tail::<V> {
        dir: log_dir.to_owned(),
        next: options.from,
        cursor: None,
        recent: VecDeque::new(),
        last_delivered: None,
        quarantined: None,
        resyncing: false,
        chunk_bytes: CHUNK_MIN_BYTES,
        stall: None,
        summary: FollowSummary::default(),
    };
    while !stop.load(Ordering::Relaxed) {
        match tail.step(fs, &mut visit)? {
            Step::Read => {}
            Step::Idle => std::thread::sleep(options.poll),
            Step::Broke => break,
        }
    }
    tail.summary.next_lsn = tail.next.unwrap_or(Lsn::FIRST);
    Ok(tail.summary)
}

/// What one step found.
enum Step {
    /// Something was read (or a cursor moved): look again at once.
    Read,
    /// Nothing new: sleep a poll interval.
    Idle,
    /// `visit` asked to stop.
    Broke,
}

/// The segment being read and where.
struct Cursor<F> {
    path: PathBuf,
    file: F,
    header: SegmentHeader,
    /// Where the next batch starts.
    offset: u64,
    /// The LSN of the record there.
    expected: Lsn,
}

/// The follow's state between steps.
struct Tail<V: Vfs> {
    dir: PathBuf,
    /// The next LSN to deliver; `None` until the oldest segment is known.
    next: Option<Lsn>,
    cursor: Option<Cursor<V::File>>,
    /// The last delivered records' LSNs and CRCs, oldest first, contiguous.
    recent: VecDeque<(Lsn, u32)>,
    /// Where the last delivered record is, and its CRC: checked when idle.
    last_delivered: Option<(PathBuf, u64, Lsn, u32)>,
    /// Quarantine files seen in the directory (`None` before the first look).
    quarantined: Option<usize>,
    /// Set when the files changed under delivered records: the next cursor
    /// opens at the oldest recent one, to check them.
    resyncing: bool,
    chunk_bytes: usize,
    /// Where undecodable bytes have been waited on since when, and whether
    /// that was reported.
    stall: Option<(PathBuf, u64, Instant, bool)>,
    summary: FollowSummary,
}

impl<V: Vfs> Tail<V> {
    fn step(&mut self, fs: &V, visit: &mut impl FnMut(FollowEvent<'_>) -> ControlFlow<()>) -> Result<Step> {
        if self.cursor.is_none() && !self.open_cursor(fs)? {
            return Ok(Step::Idle);
        }
        let cursor = self.cursor.as_mut().expect("opened above");
        let size = cursor.file.size_bytes().map_err(Error::io("stat", &cursor.path))?;
        let available = size.saturating_sub(cursor.offset) as usize;
        let len = available.min(self.chunk_bytes);
        let mut bytes = vec![0u8; len];
        cursor.file.read_exact_at(&mut bytes, cursor.offset).map_err(Error::io("read", &cursor.path))?;
        let (consumed, stop) = self.deliver_batches(&bytes, visit);
        let cursor = self.cursor.as_mut().expect("still open");
        let stopped_at = cursor.offset + consumed as u64;
        cursor.offset = stopped_at;
        match stop {
            Stop::Broke => return Ok(Step::Broke),
            Stop::Truncated(needed) if len < available => {
                // The chunk ended inside a batch: read a larger one now.
                self.chunk_bytes = (needed.max(self.chunk_bytes * 2)).min(available.max(CHUNK_MIN_BYTES));
                return Ok(Step::Read);
            }
            Stop::Truncated(_) | Stop::Unreadable(_) | Stop::Zeroed => {}
        }
        if consumed > 0 {
            if consumed * 2 > len {
                self.chunk_bytes = (self.chunk_bytes * 2).min(CHUNK_MAX_BYTES);
            }
            self.stall = None;
            return Ok(Step::Read);
        }
        self.chunk_bytes = CHUNK_MIN_BYTES;
        // Nothing new here. Has the writer moved on to the next segment?
        let expected = cursor.expected;
        if let Ok(file) = fs.open(&self.dir.join(segment_file_name(expected)), false) {
            drop(file);
            self.cursor = None;
            self.stall = None;
            return Ok(Step::Read);
        }
        if let Stop::Unreadable(what) = stop {
            self.note_stall(stopped_at, expected, what, visit);
        }
        // Have the files changed under what was delivered?
        if self.files_changed(fs)? {
            self.resync();
            return Ok(Step::Read);
        }
        Ok(Step::Idle)
    }

    /// Opens the segment holding the next LSN (or, to check delivered
    /// records again, the oldest recent one). `false` if the log has no
    /// segment yet, or none holds it yet.
    fn open_cursor(&mut self, fs: &V) -> Result<bool> {
        let mut segments: Vec<(Lsn, String)> = fs
            .list_dir(&self.dir)
            .map_err(Error::io("list", &self.dir))?
            .into_iter()
            .filter_map(|name| parse_segment_file_name(&name).map(|lsn| (lsn, name)))
            .collect();
        segments.sort();
        let Some(&(oldest, _)) = segments.first() else { return Ok(false) };
        let next = *self.next.get_or_insert(oldest);
        if next < oldest {
            return Err(Error::Compacted { lsn: next, oldest });
        }
        let recent = self.recent.front().filter(|_| self.resyncing).map(|&(lsn, _)| lsn);
        let start = recent.map_or(next, |lsn| lsn.min(next)).max(oldest);
        let (first, name) = segments.iter().rev().find(|(first, _)| *first <= start).expect("oldest <= start");
        let path = self.dir.join(name);
        let file = match fs.open(&path, false) {
            Ok(file) => file,
            // Removed since the listing: look again.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(Error::io("open", &path)(e)),
        };
        let mut bytes = [0u8; SEGMENT_HEADER_BYTES];
        file.read_exact_at(&mut bytes, 0).map_err(Error::io("read", &path))?;
        let corrupt = |kind| Error::Corrupt { file: path.clone(), offset: 0, lsn: *first, kind };
        // A segment gets its name only once its header is durable.
        let header = SegmentHeader::decode(&bytes).map_err(|e| corrupt(Corruption::SegmentHeader(e)))?;
        if header.first_lsn != *first {
            return Err(corrupt(Corruption::LsnMismatch { expected: *first, found: header.first_lsn }));
        }
        let offset = SEGMENT_HEADER_BYTES as u64;
        self.cursor = Some(Cursor { path, file, header, offset, expected: *first });
        self.resyncing = false;
        Ok(true)
    }

    /// Walks `bytes` (read at the cursor) batch by batch: records below the
    /// next LSN are compared with what was delivered, the others delivered.
    /// Returns the bytes of the complete batches walked and why it stopped.
    fn deliver_batches(
        &mut self,
        bytes: &[u8],
        visit: &mut impl FnMut(FollowEvent<'_>) -> ControlFlow<()>,
    ) -> (usize, Stop) {
        let cursor = self.cursor.as_mut().expect("open");
        let seed = cursor.header.seed();
        let mut consumed = 0;
        loop {
            // Find the end of the batch at `consumed`, every checksum checked.
            let mut at = consumed;
            let mut lsn = cursor.expected;
            let batch_end = loop {
                match decode_record(&bytes[at..], seed) {
                    Ok(record) if record.header.lsn == lsn => {
                        at += record.header.frame_len();
                        lsn = lsn.next();
                        if !record.header.batch_continues() {
                            break Ok(at);
                        }
                    }
                    Ok(record) => break Err(Stop::Unreadable(format!("a record with LSN {}", record.header.lsn))),
                    // Zeros, at a batch's start or inside it: not written yet.
                    Err(RecordDecodeError::Zeroed) => break Err(Stop::Zeroed),
                    // Only where the bytes read end.
                    Err(RecordDecodeError::Truncated { needed, .. }) => {
                        break Err(Stop::Truncated((at - consumed) + needed as usize))
                    }
                    Err(e) => break Err(Stop::Unreadable(e.to_string())),
                }
            };
            let end = match batch_end {
                Ok(end) => end,
                Err(stop) => return (consumed, stop),
            };
            // The batch is whole: deliver (or check) its records.
            let mut offset = consumed;
            while offset < end {
                let record = decode_record(&bytes[offset..end], seed).expect("decoded above");
                let frame_len = record.header.frame_len();
                let crc = u32::from_le_bytes(bytes[offset..offset + 4].try_into().expect("4 bytes"));
                let lsn = record.header.lsn;
                let file_offset = cursor.offset + offset as u64;
                let next = self.next.expect("set when the cursor opened");
                let flow = if lsn < next {
                    let first_recent = self.recent.front().map(|&(l, _)| l);
                    let slot = first_recent.and_then(|first| lsn.0.checked_sub(first.0)).map(|i| i as usize);
                    let mut flow = ControlFlow::Continue(());
                    if let Some((_, seen)) = slot.and_then(|i| self.recent.get_mut(i)) {
                        if *seen != crc {
                            *seen = crc;
                            self.summary.replaced += 1;
                            flow = visit(FollowEvent::Replaced { lsn, file: &cursor.path, offset: file_offset });
                        }
                    }
                    if lsn.next() == next {
                        self.last_delivered = Some((cursor.path.clone(), file_offset, lsn, crc));
                    }
                    flow
                } else {
                    debug_assert_eq!(lsn, next, "delivered in order");
                    self.next = Some(lsn.next());
                    self.summary.records += 1;
                    if self.recent.len() == RECENT_CHECKED {
                        self.recent.pop_front();
                    }
                    self.recent.push_back((lsn, crc));
                    self.last_delivered = Some((cursor.path.clone(), file_offset, lsn, crc));
                    visit(FollowEvent::Record(LogRecordView {
                        lsn,
                        file: &cursor.path,
                        offset: file_offset,
                        header: record.header,
                        payload: record.payload,
                        frame: &bytes[offset..offset + frame_len],
                    }))
                };
                offset += frame_len;
                cursor.expected = lsn.next();
                if flow.is_break() {
                    // The rest of the batch is delivered by no one: stop
                    // after this record, at a record boundary.
                    return (offset, Stop::Broke);
                }
            }
            consumed = end;
            if consumed + RECORD_HEADER_BYTES > bytes.len() {
                return (consumed, Stop::Truncated(RECORD_HEADER_BYTES));
            }
        }
    }

    /// Reports undecodable bytes waited on too long, once per place.
    fn note_stall(
        &mut self,
        offset: u64,
        lsn: Lsn,
        what: String,
        visit: &mut impl FnMut(FollowEvent<'_>) -> ControlFlow<()>,
    ) {
        let path = &self.cursor.as_ref().expect("open").path;
        match &mut self.stall {
            Some((p, o, since, reported)) if p == path && *o == offset => {
                if !*reported && since.elapsed() >= STALL_REPORT_AFTER {
                    *reported = true;
                    let _ = visit(FollowEvent::Stalled { lsn, file: path, offset, what });
                }
            }
            _ => self.stall = Some((path.clone(), offset, Instant::now(), false)),
        }
    }

    /// Whether a cut happened (a new quarantine file) or the last delivered
    /// record's bytes are not there any more.
    fn files_changed(&mut self, fs: &V) -> Result<bool> {
        let names = fs.list_dir(&self.dir).map_err(Error::io("list", &self.dir))?;
        let quarantined = names.iter().filter(|n| n.contains(QUARANTINE_INFIX)).count();
        let seen = self.quarantined.replace(quarantined);
        if seen.is_some_and(|seen| quarantined > seen) {
            return Ok(true);
        }
        let Some((path, offset, lsn, crc)) = &self.last_delivered else { return Ok(false) };
        let mut header = [0u8; RECORD_HEADER_BYTES];
        let same = match fs.open(path, false) {
            Ok(file) => file.read_exact_at(&mut header, *offset).is_ok(),
            Err(_) => false,
        };
        let same = same
            && u32::from_le_bytes(header[0..4].try_into().expect("4 bytes")) == *crc
            && u64::from_le_bytes(header[8..16].try_into().expect("8 bytes")) == lsn.0;
        Ok(!same)
    }

    /// Reads again from the segment of the oldest recent record, checking
    /// each delivered one it meets; the last delivered record's place is
    /// known again once it is met.
    fn resync(&mut self) {
        self.cursor = None;
        self.resyncing = true;
        self.last_delivered = None;
        self.stall = None;
    }
}

/// Why a walk of the bytes read stopped.
enum Stop {
    /// `visit` asked to stop.
    Broke,
    /// Zeros where the next batch would start: nothing written yet.
    Zeroed,
    /// A batch runs past the bytes read; it needs this many from its start.
    Truncated(usize),
    /// Bytes that are no record (yet): a write in progress, or damage.
    Unreadable(String),
}
