//! Taking one backup into a destination: under the destination's lock, copy
//! (or hard-link from the previous backup) every source file into
//! `backup-{id}.tmp/`, check what was copied, write the manifest, rename
//! the directory into place, then prune old backups.

use super::manifest::{Manifest, SegmentEntry, SnapshotEntry, MANIFEST_NAME};
use super::source::{self, SourceSegment, SourceSnapshot, Sources};
use super::{backup_dir_name, parse_backup_dir_name, read_all, sync_dir};
use crate::admin::{DataDir, Progress};
use crate::error::Corruption;
use crate::format::SegmentHeader;
use crate::io::{RealFs, Vfs, VfsFile};
use crate::snapshot::{self, OriginCheck};
use crate::wal::now_unix_us;
use crate::wal::recovery::{classify, Verdict};
use crate::wal::segment::{find_record_seal, scan_segment};
use crate::{Error, Lsn, Result};
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Reads of the source are made in chunks of this size.
const CHUNK_BYTES: usize = 1 << 20;
/// How often a backup of a directory that a running process holds starts
/// over when the process's retention raced it (see `source::from_disk`).
const MAX_ATTEMPTS: u32 = 5;

/// How a backup is taken.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BackupOptions {
    /// Keep only the newest this many backups in the destination (at least
    /// 1), removing older ones after this one succeeded. `None`: keep all.
    pub keep: Option<usize>,
}

/// What a backup did.
#[derive(Clone, Debug)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct BackupReport {
    /// The new backup's directory, `DEST/backup-{id:06}`.
    pub dir: PathBuf,
    /// What it holds (also written into it as its manifest).
    pub manifest: Manifest,
    /// Files read from the source and written.
    pub files_copied: usize,
    /// Bytes of those files.
    pub bytes_copied: u64,
    /// Files the previous backup had already, shared by a hard link.
    pub files_linked: usize,
    /// Bytes of those files.
    pub bytes_linked: u64,
    /// Source snapshots not taken into the backup, and why.
    pub snapshots_left_out: Vec<(PathBuf, String)>,
    /// Older backups removed to keep `keep`.
    pub pruned: Vec<PathBuf>,
    /// 1, or more if the source's retention raced the backup.
    pub attempts: u32,
    /// How long the backup took.
    pub duration: Duration,
}

/// Backs up the data directory `data` (a store's, engine's or journal's),
/// which a running process may hold and keep writing, into `dest`.
/// Read-only on `data`: it takes no lock there and writes nothing.
pub fn backup_data_dir<V: Vfs>(
    fs: &V,
    data: &DataDir,
    dest: &Path,
    options: &BackupOptions,
    progress: &mut dyn Progress,
) -> Result<BackupReport> {
    let started = Instant::now();
    let mut attempt = 1;
    loop {
        let sources = source::from_disk(fs, data)?;
        match take(sources, &data.root, dest, options, progress)? {
            Taken::Done(mut report) => {
                report.attempts = attempt;
                report.duration = started.elapsed();
                return Ok(*report);
            }
            // What a race left for one attempt, it does not leave for
            // MAX_ATTEMPTS in a row: then it is the directory's own damage.
            Taken::Raced(why) if attempt == MAX_ATTEMPTS => return Err(why),
            Taken::Raced(why) => log::info!("walden: backup attempt {attempt} of {}: {why}", data.root.display()),
        }
        attempt += 1;
    }
}

/// Backs up sources a live engine opened under its snapshot lock: nothing
/// can race them.
pub(crate) fn backup_sources<F: VfsFile>(
    sources: Sources<F>,
    source: &Path,
    dest: &Path,
    options: &BackupOptions,
) -> Result<BackupReport> {
    let started = Instant::now();
    match take(sources, source, dest, options, &mut crate::admin::NoProgress)? {
        Taken::Done(mut report) => {
            report.attempts = 1;
            report.duration = started.elapsed();
            Ok(*report)
        }
        Taken::Raced(why) => Err(why),
    }
}

enum Taken {
    Done(Box<BackupReport>),
    /// The source changed in a way that a new attempt resolves, or is
    /// damaged this way if no attempt does.
    Raced(Error),
}

/// Backups by id, oldest first.
type Backups = Vec<(u64, PathBuf)>;

/// The backups in `dest`: complete ones and unfinished `.tmp` ones.
fn existing(dest: &Path) -> Result<(Backups, Backups)> {
    let (mut complete, mut unfinished) = (Vec::new(), Vec::new());
    for entry in fs::read_dir(dest).map_err(Error::io("list", dest))? {
        let entry = entry.map_err(Error::io("list", dest))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(id) = name.strip_suffix(".tmp").and_then(parse_backup_dir_name) {
            unfinished.push((id, entry.path()));
        } else if let Some(id) = parse_backup_dir_name(&name) {
            if entry.path().join(MANIFEST_NAME).is_file() {
                complete.push((id, entry.path()));
            }
        }
    }
    complete.sort();
    unfinished.sort();
    Ok((complete, unfinished))
}

fn take<F: VfsFile>(
    sources: Sources<F>,
    source: &Path,
    dest: &Path,
    options: &BackupOptions,
    progress: &mut dyn Progress,
) -> Result<Taken> {
    fs::create_dir_all(dest).map_err(Error::io("create directory", dest))?;
    let _lock = RealFs.lock_dir(dest).map_err(Error::io("lock", dest))?;
    let (complete, unfinished) = existing(dest)?;
    for (_, path) in &unfinished {
        // An interrupted backup of ours: never read, never renamed.
        log::info!("walden: removing the unfinished backup {}", path.display());
        fs::remove_dir_all(path).map_err(Error::io("remove", path))?;
    }
    let previous = match complete.last() {
        Some((_, dir)) => {
            let path = dir.join(MANIFEST_NAME);
            match fs::read_to_string(&path).map_err(Error::io("read", &path)).and_then(|t| Manifest::decode(&t, &path))
            {
                Ok(m) => Some((dir.clone(), m)),
                Err(e) => {
                    log::warn!("walden: not sharing files with {}: {e}", dir.display());
                    None
                }
            }
        }
        None => None,
    };
    let id = complete.iter().chain(&unfinished).map(|(id, _)| *id).max().unwrap_or(0) + 1;
    let staging = dest.join(format!("{}.tmp", backup_dir_name(id)));
    let filled = (|| {
        for sub in ["wal", "snapshots"] {
            fs::create_dir_all(staging.join(sub)).map_err(Error::io("create directory", staging.join(sub)))?;
        }
        fill(&staging, id, source, sources, previous.as_ref(), progress)
    })();
    let filled = match filled {
        Ok(Ok(filled)) => filled,
        Ok(Err(raced)) => {
            remove_staging(&staging);
            return Ok(Taken::Raced(raced));
        }
        Err(e) => {
            remove_staging(&staging);
            return Err(e);
        }
    };
    let final_dir = dest.join(backup_dir_name(id));
    if let Err(e) = seal(&staging, &filled) {
        remove_staging(&staging);
        return Err(e);
    }
    fs::rename(&staging, &final_dir).map_err(Error::io("rename", &staging))?;
    sync_dir(dest)?;
    let mut pruned = Vec::new();
    if let Some(keep) = options.keep {
        let mut kept: Vec<_> = complete.into_iter().map(|(_, path)| path).collect();
        kept.push(final_dir.clone());
        let excess = kept.len().saturating_sub(keep.max(1));
        for old in &kept[..excess] {
            fs::remove_dir_all(old).map_err(Error::io("remove", old))?;
            pruned.push(old.clone());
        }
        if !pruned.is_empty() {
            sync_dir(dest)?;
        }
    }
    Ok(Taken::Done(Box::new(BackupReport {
        dir: final_dir,
        manifest: filled.manifest,
        files_copied: filled.copied.len(),
        bytes_copied: filled.copied.iter().map(|c| c.1).sum(),
        files_linked: filled.files_linked,
        bytes_linked: filled.bytes_linked,
        snapshots_left_out: filled.left_out,
        pruned,
        attempts: 1,
        duration: Duration::ZERO,
    })))
}

fn remove_staging(staging: &Path) {
    if let Err(e) = fs::remove_dir_all(staging) {
        log::warn!("walden: could not remove {}: {e} (the next backup removes it)", staging.display());
    }
}

/// A filled staging directory, before its manifest.
struct Filled {
    manifest: Manifest,
    /// Files copied from the source: path, bytes, CRC32.
    copied: Vec<(String, u64, u32)>,
    files_linked: usize,
    bytes_linked: u64,
    left_out: Vec<(PathBuf, String)>,
}

/// Copies or links every file into `staging`. `Ok(Err(why))` when the
/// source raced the backup (or is damaged so, if it stays that way).
fn fill<F: VfsFile>(
    staging: &Path,
    id: u64,
    source: &Path,
    sources: Sources<F>,
    previous: Option<&(PathBuf, Manifest)>,
    progress: &mut dyn Progress,
) -> Result<std::result::Result<Filled, Error>> {
    let Sources { segments, snapshots, mut left_out } = sources;
    let log_id = segments[0].header.log_id;
    let mut filled = Filled {
        manifest: empty_manifest(id, source, log_id),
        copied: Vec::new(),
        files_linked: 0,
        bytes_linked: 0,
        left_out: Vec::new(),
    };
    let reused_segment = |s: &SourceSegment<F>| -> Option<SegmentEntry> {
        let (_, prev) = previous?;
        let rel = relative("wal", &s.path);
        prev.segments.iter().find(|e| e.sealed && s.sealed && e.path == rel && e.salt == s.header.salt).cloned()
    };
    let reused_snapshot = |s: &SourceSnapshot<F>| -> Option<SnapshotEntry> {
        let (_, prev) = previous?;
        let (rel, h) = (relative("snapshots", &s.info.path), &s.info.header);
        prev.snapshots
            .iter()
            .find(|e| e.path == rel && e.bytes == s.info.file_bytes && e.lsn == h.lsn && e.content_crc == h.content_crc)
            .cloned()
    };
    let mut to_read = 0u64;
    for s in &segments {
        if reused_segment(s).is_none() {
            to_read += match s.len {
                Some(len) => len,
                None => s.file.size_bytes().map_err(Error::io("stat", &s.path))?,
            };
        }
    }
    to_read += snapshots.iter().filter(|s| reused_snapshot(s).is_none()).map(|s| s.info.file_bytes).sum::<u64>();
    progress.begin("copying", to_read);

    for s in &segments {
        if s.header.log_id != log_id {
            return Err(Error::Corrupt {
                file: s.path.clone(),
                offset: 0,
                lsn: s.header.first_lsn,
                kind: Corruption::ForeignSegment { expected: log_id, found: s.header.log_id },
            });
        }
        if let Some(prev) = filled.manifest.segments.last() {
            if s.header.first_lsn != prev.last_lsn.next() {
                return Ok(Err(Error::Corrupt {
                    file: s.path.clone(),
                    offset: 0,
                    lsn: prev.last_lsn.next(),
                    kind: Corruption::LsnMismatch { expected: prev.last_lsn.next(), found: s.header.first_lsn },
                }));
            }
        }
        let entry = match (reused_segment(s), previous) {
            (Some(entry), Some((prev_dir, _))) => {
                link(&prev_dir.join(&entry.path), &staging.join(&entry.path), entry.bytes)?;
                filled.files_linked += 1;
                filled.bytes_linked += entry.bytes;
                entry
            }
            _ => {
                let entry = copy_segment(s, staging, progress)?;
                filled.copied.push((entry.path.clone(), entry.bytes, entry.crc));
                entry
            }
        };
        filled.manifest.segments.push(entry);
    }
    let first = filled.manifest.segments[0].first_lsn;
    let last = filled.manifest.segments.last().expect("a log has a segment").last_lsn;
    (filled.manifest.first_lsn, filled.manifest.last_lsn) = (first, last);

    for s in &snapshots {
        let h = s.info.header;
        let out_of_range = (h.lsn > last || h.lsn.next() < first)
            .then(|| format!("the log copied (LSNs {first}..={last}) does not continue LSN {}", h.lsn));
        if let Some(why) = snapshot::check_name(&s.info).or(out_of_range) {
            left_out.push((s.info.path.clone(), why));
            continue;
        }
        let entry = match (reused_snapshot(s), previous) {
            (Some(entry), Some((prev_dir, _))) => {
                link(&prev_dir.join(&entry.path), &staging.join(&entry.path), entry.bytes)?;
                filled.files_linked += 1;
                filled.bytes_linked += entry.bytes;
                entry
            }
            _ => match copy_snapshot(s, staging, &filled.manifest, progress)? {
                Ok(entry) => {
                    filled.copied.push((entry.path.clone(), entry.bytes, entry.crc));
                    entry
                }
                Err(why) => {
                    left_out.push((s.info.path.clone(), why));
                    continue;
                }
            },
        };
        filled.manifest.snapshots.push(entry);
    }
    progress.end();
    if first > Lsn::FIRST && filled.manifest.snapshots.is_empty() {
        return Ok(Err(Error::BadSnapshot {
            file: source.join("snapshots"),
            reason: format!("no snapshot taken continues the log copied, which starts at LSN {first}"),
        }));
    }
    filled.left_out = left_out;
    Ok(Ok(filled))
}

fn empty_manifest(id: u64, source: &Path, log_id: u64) -> Manifest {
    Manifest {
        id,
        created_unix_us: now_unix_us(),
        source: source.display().to_string(),
        log_id,
        first_lsn: Lsn::FIRST,
        last_lsn: Lsn::ZERO,
        segments: Vec::new(),
        snapshots: Vec::new(),
    }
}

/// `{sub}/{file name}`.
fn relative(sub: &str, path: &Path) -> String {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    format!("{sub}/{name}")
}

/// Hard-links a file of the previous backup (or copies it, where the file
/// system has no hard links), after checking it still has its length.
fn link(from: &Path, to: &Path, bytes: u64) -> Result<()> {
    let len = fs::metadata(from).map_err(Error::io("stat", from))?.len();
    if len != bytes {
        return Err(Error::BadBackup {
            file: from.to_owned(),
            reason: format!("its manifest says {bytes} bytes, the file has {len}: an earlier backup changed"),
        });
    }
    if let Err(e) = fs::hard_link(from, to) {
        log::debug!("walden: hard link {} failed ({e}); copying", from.display());
        fs::copy(from, to).map_err(Error::io("copy", from))?;
        File::open(to).and_then(|f| f.sync_data()).map_err(Error::io("fsync", to))?;
    }
    Ok(())
}

fn read_source<F: VfsFile>(file: &F, path: &Path, len: u64, progress: &mut dyn Progress) -> Result<Vec<u8>> {
    let mut bytes = vec![0u8; len as usize];
    for (i, chunk) in bytes.chunks_mut(CHUNK_BYTES).enumerate() {
        file.read_exact_at(chunk, (i * CHUNK_BYTES) as u64).map_err(Error::io("read", path))?;
        progress.advance(chunk.len() as u64);
    }
    Ok(bytes)
}

/// Writes a new file, not yet synced: `seal` syncs every file copied
/// before it writes the manifest, so the disk writes of one file overlap
/// the reading of the next.
fn write_new(path: &Path, chunks: &[&[u8]]) -> Result<()> {
    let mut file = File::create_new(path).map_err(Error::io("create", path))?;
    for chunk in chunks {
        file.write_all(chunk).map_err(Error::io("write", path))?;
    }
    Ok(())
}

/// Copies a segment's complete batches, after checking every record.
fn copy_segment<F: VfsFile>(s: &SourceSegment<F>, staging: &Path, progress: &mut dyn Progress) -> Result<SegmentEntry> {
    let len = match s.len {
        Some(len) => len,
        None => s.file.size_bytes().map_err(Error::io("stat", &s.path))?,
    };
    let bytes = read_source(&*s.file, &s.path, len, progress)?;
    let scan = scan_segment(&bytes, &s.header, |_, _| {});
    match classify(&bytes, &s.header, &scan, !s.sealed) {
        Verdict::Clean => {}
        // The last segment is being written (or a crash tore its tail):
        // what is past the last complete batch was never acknowledged.
        Verdict::TornTail(_) if !s.sealed => {}
        Verdict::TornTail(kind) | Verdict::Corrupt(kind) => {
            return Err(Error::Corrupt { file: s.path.clone(), offset: scan.stop_offset, lsn: scan.stop_lsn, kind })
        }
    }
    let data = &bytes[..scan.end as usize];
    let path = relative("wal", &s.path);
    write_new(&staging.join(&path), &[data])?;
    Ok(SegmentEntry {
        path,
        bytes: data.len() as u64,
        crc: crc32fast::hash(data),
        first_lsn: s.header.first_lsn,
        last_lsn: scan.last_lsn,
        salt: s.header.salt,
        sealed: s.sealed,
    })
}

/// Streams a snapshot into the staging directory, checking its content
/// checksum and its origin against the segments copied. `Ok(Err(why))` if
/// it is not taken.
fn copy_snapshot<F: VfsFile>(
    s: &SourceSnapshot<F>,
    staging: &Path,
    manifest: &Manifest,
    progress: &mut dyn Progress,
) -> Result<std::result::Result<SnapshotEntry, String>> {
    let (h, source) = (s.info.header, &s.info.path);
    let rel = relative("snapshots", source);
    let target = staging.join(&rel);
    let mut out = File::create_new(&target).map_err(Error::io("create", &target))?;
    let (mut whole, mut content) = (crc32fast::Hasher::new(), crc32fast::Hasher::new());
    let mut buffer = vec![0u8; CHUNK_BYTES];
    let mut offset = 0u64;
    while offset < s.info.file_bytes {
        let n = (s.info.file_bytes - offset).min(CHUNK_BYTES as u64) as usize;
        s.file.read_exact_at(&mut buffer[..n], offset).map_err(Error::io("read", source))?;
        let chunk = &buffer[..n];
        whole.update(chunk);
        let header_left = (h.header_bytes() as u64).saturating_sub(offset).min(n as u64) as usize;
        content.update(&chunk[header_left..]);
        out.write_all(chunk).map_err(Error::io("write", &target))?;
        offset += n as u64;
        progress.advance(n as u64);
    }
    let (crc, content_crc) = (whole.finalize(), content.finalize());
    let refused = if content_crc != h.content_crc {
        Some(format!("content checksum mismatch: stored {:#010x}, computed {content_crc:#010x}", h.content_crc))
    } else {
        match snapshot::check_origin(&h, manifest.log_id, staged_seal(staging, manifest, h.lsn)?) {
            OriginCheck::Refused(why) => Some(why),
            OriginCheck::Continues | OriginCheck::Unchecked(_) => None,
        }
    };
    if let Some(why) = refused {
        drop(out);
        fs::remove_file(&target).map_err(Error::io("remove", &target))?;
        return Ok(Err(why));
    }
    Ok(Ok(SnapshotEntry { path: rel, bytes: s.info.file_bytes, crc, lsn: h.lsn, content_crc }))
}

/// The length and CRC32 of a file, read in chunks.
fn crc_of_file(path: &Path) -> Result<(u64, u32)> {
    use std::io::Read;
    let mut file = File::open(path).map_err(Error::io("open", path))?;
    let (mut hasher, mut len) = (crc32fast::Hasher::new(), 0u64);
    let mut buffer = vec![0u8; CHUNK_BYTES];
    loop {
        let n = file.read(&mut buffer).map_err(Error::io("read", path))?;
        if n == 0 {
            return Ok((len, hasher.finalize()));
        }
        hasher.update(&buffer[..n]);
        len += n as u64;
    }
}

/// The seal of the record at `lsn` in the segments already staged.
fn staged_seal(staging: &Path, manifest: &Manifest, lsn: Lsn) -> Result<Option<snapshot::RecordSeal>> {
    let Some(entry) = manifest.segments.iter().find(|e| e.first_lsn <= lsn && lsn <= e.last_lsn) else {
        return Ok(None);
    };
    let bytes = read_all(&staging.join(&entry.path))?;
    let header = SegmentHeader::decode(&bytes).map_err(|e| Error::BadBackup {
        file: staging.join(&entry.path),
        reason: format!("the segment just copied does not read: {e}"),
    })?;
    Ok(find_record_seal(&bytes, &header, lsn))
}

/// Syncs every file copied in this run and reads it back (length and
/// CRC32), then writes and syncs the manifest and the directories and
/// reads the manifest back, so the backup is durable and checked before
/// it gets its final name.
fn seal(staging: &Path, filled: &Filled) -> Result<()> {
    for (path, bytes, crc) in &filled.copied {
        let file = staging.join(path);
        File::open(&file).and_then(|f| f.sync_data()).map_err(Error::io("fsync", &file))?;
        if crc_of_file(&file)? != (*bytes, *crc) {
            return Err(Error::BadBackup { file, reason: "the copy does not read back as written".into() });
        }
    }
    let text = filled.manifest.encode();
    let manifest_path = staging.join(MANIFEST_NAME);
    write_new(&manifest_path, &[text.as_bytes()])?;
    File::open(&manifest_path).and_then(|f| f.sync_data()).map_err(Error::io("fsync", &manifest_path))?;
    for sub in ["wal", "snapshots"] {
        sync_dir(&staging.join(sub))?;
    }
    sync_dir(staging)?;
    let back = fs::read_to_string(&manifest_path).map_err(Error::io("read", &manifest_path))?;
    if Manifest::decode(&back, &manifest_path)? != filled.manifest {
        return Err(Error::BadBackup {
            file: manifest_path,
            reason: "the manifest does not read back as written".into(),
        });
    }
    Ok(())
}
