//! [`verify_backup`]: every file of a backup checked against its manifest
//! (length, CRC32), every record's checksum, the LSN chain, every
//! snapshot's checksum and origin. [`restore`]: a verified backup written
//! into a new directory under a temporary name, checked again there, and
//! renamed into place; optionally only up to an LSN or a time.

use super::manifest::{Manifest, SegmentEntry, MANIFEST_NAME};
use super::{parse_backup_dir_name, sync_dir};
use crate::admin::{self, DataDir, Health, NoProgress, Progress, Target};
use crate::engine::StateMachine;
use crate::format::{decode_record, SegmentHeader, SEGMENT_HEADER_BYTES};
use crate::io::RealFs;
use crate::snapshot::{self, OriginCheck, RecordSeal, SnapshotHeader, SNAPSHOT_HEADER_BYTES};
use crate::wal::recovery::{classify, Verdict};
use crate::wal::segment::{find_record_seal, scan_segment};
use crate::wal::{parse_segment_file_name, random_u64};
use crate::{Error, Lsn, Result};
use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const CHUNK_BYTES: usize = 1 << 20;

/// What a restore wrote.
#[derive(Clone, Debug)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct RestoreReport {
    /// The backup restored (`DEST/backup-{id}`).
    pub backup: PathBuf,
    /// That backup's number.
    pub backup_id: u64,
    /// The directory written.
    pub dest: PathBuf,
    /// `--to`, as asked.
    pub requested: Option<Target>,
    /// The LSNs the restored log holds, and the LSN its state ends at
    /// (`last_lsn`: a batch is restored whole or not at all, so a target
    /// inside a batch restores up to the batch before it).
    pub first_lsn: Lsn,
    /// See `first_lsn`.
    pub last_lsn: Lsn,
    /// The snapshot recovery of the restored directory starts from.
    pub snapshot_used: Option<String>,
    /// Files written.
    pub files: usize,
    /// Bytes written.
    pub bytes: u64,
    /// How long the restore took.
    pub duration: Duration,
}

/// The complete backups in a destination, oldest first.
pub fn list_backups(root: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(root).map_err(Error::io("list", root))? {
        let entry = entry.map_err(Error::io("list", root))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(id) = parse_backup_dir_name(&name) {
            if entry.path().join(MANIFEST_NAME).is_file() {
                out.push((id, entry.path()));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// `path` itself if it is a backup (it holds a manifest), else the newest
/// complete backup in it.
pub fn locate_backup(path: &Path) -> Result<PathBuf> {
    if path.join(MANIFEST_NAME).is_file() {
        return Ok(path.to_owned());
    }
    match list_backups(path)?.pop() {
        Some((_, newest)) => Ok(newest),
        None => Err(Error::InvalidArgument(format!(
            "{} is neither a backup (it has no {MANIFEST_NAME}) nor a directory of backups",
            path.display()
        ))),
    }
}

fn bad(file: &Path, reason: impl Into<String>) -> Error {
    Error::BadBackup { file: file.to_owned(), reason: reason.into() }
}

/// The error of an I/O call on a file the manifest lists: its absence is
/// damage to the backup, named by the file; anything else (permission
/// denied, say) stays an I/O error.
fn listed_file_error<'a>(op: &'static str, file: &'a Path) -> impl FnOnce(std::io::Error) -> Error + 'a {
    move |e| match e.kind() {
        std::io::ErrorKind::NotFound => bad(file, "its manifest lists it, but the file is missing"),
        _ => Error::io(op, file)(e),
    }
}

/// Reads the manifest; a manifest that is not UTF-8 text is damage.
fn read_manifest(path: &Path) -> Result<Manifest> {
    let bytes = fs::read(path).map_err(Error::io("read", path))?;
    let text = String::from_utf8(bytes).map_err(|e| {
        bad(path, format!("the manifest is not UTF-8 text (byte {} does not decode)", e.utf8_error().valid_up_to()))
    })?;
    Manifest::decode(&text, path)
}

/// Reads a file of a backup whole and checks its length and CRC32.
fn read_checked(dir: &Path, path: &str, bytes: u64, crc: u32) -> Result<Vec<u8>> {
    let file = dir.join(path);
    let data = fs::read(&file).map_err(listed_file_error("read", &file))?;
    if data.len() as u64 != bytes {
        return Err(bad(&file, format!("its manifest says {bytes} bytes, the file has {}", data.len())));
    }
    let found = crc32fast::hash(&data);
    if found != crc {
        return Err(bad(&file, format!("checksum mismatch: the manifest says {crc:08x}, the file has {found:08x}")));
    }
    Ok(data)
}

/// Checks one segment of a backup: length and CRC32, header, every record,
/// and the LSNs the manifest gives it.
fn check_segment(dir: &Path, manifest: &Manifest, e: &SegmentEntry, data: &[u8]) -> Result<SegmentHeader> {
    let file = dir.join(&e.path);
    let header = SegmentHeader::decode(data).map_err(|err| bad(&file, format!("segment header: {err}")))?;
    let name = Path::new(&e.path).file_name().and_then(|n| n.to_str()).and_then(parse_segment_file_name);
    if header.log_id != manifest.log_id || header.salt != e.salt {
        return Err(bad(&file, "the segment header is not the one the manifest names (log id or salt)"));
    }
    if header.first_lsn != e.first_lsn || name != Some(e.first_lsn) {
        return Err(bad(&file, format!("it should start at LSN {}; header and name say otherwise", e.first_lsn)));
    }
    let scan = scan_segment(data, &header, |_, _| {});
    if !matches!(classify(data, &header, &scan, true), Verdict::Clean) || scan.end != data.len() as u64 {
        return Err(bad(
            &file,
            format!("a record at offset {} (LSN {}) does not read", scan.stop_offset, scan.stop_lsn),
        ));
    }
    if scan.last_lsn != e.last_lsn {
        return Err(bad(&file, format!("it ends at LSN {}, the manifest says {}", scan.last_lsn, e.last_lsn)));
    }
    Ok(header)
}

/// Checks every byte of the backup in `dir` against its manifest, every
/// record and snapshot checksum, the LSN chain, and that every snapshot is
/// of the backup's log and continued by it. Reads only.
pub fn verify_backup(dir: &Path, progress: &mut dyn Progress) -> Result<Manifest> {
    let manifest_path = dir.join(MANIFEST_NAME);
    let manifest = read_manifest(&manifest_path)?;
    if manifest.segments.is_empty() {
        return Err(bad(&manifest_path, "it lists no segment"));
    }
    progress.begin("verifying the backup", manifest.bytes());
    let wanted: Vec<Lsn> = manifest.snapshots.iter().map(|s| s.lsn).collect();
    let mut seals: BTreeMap<Lsn, RecordSeal> = BTreeMap::new();
    let mut expected = manifest.first_lsn;
    for e in &manifest.segments {
        let data = read_checked(dir, &e.path, e.bytes, e.crc)?;
        if e.first_lsn != expected {
            return Err(bad(&dir.join(&e.path), format!("the log has a gap: LSN {expected} expected")));
        }
        let header = check_segment(dir, &manifest, e, &data)?;
        for &lsn in wanted.iter().filter(|&&l| e.first_lsn <= l && l <= e.last_lsn) {
            if let Some(seal) = find_record_seal(&data, &header, lsn) {
                seals.insert(lsn, seal);
            }
        }
        expected = e.last_lsn.next();
        progress.advance(e.bytes);
    }
    if expected != manifest.last_lsn.next() {
        return Err(bad(
            &manifest_path,
            format!("its log ends at LSN {}, the segments at {}", manifest.last_lsn, Lsn(expected.0 - 1)),
        ));
    }
    for s in &manifest.snapshots {
        let file = dir.join(&s.path);
        let (crc, content_crc, header) = stream_snapshot(&file, s.bytes, None)?;
        if crc != s.crc {
            return Err(bad(
                &file,
                format!("checksum mismatch: the manifest says {:08x}, the file has {crc:08x}", s.crc),
            ));
        }
        let info = snapshot::SnapshotInfo { path: file.clone(), header, file_bytes: s.bytes };
        if let Some(why) = snapshot::check_name(&info) {
            return Err(bad(&file, why));
        }
        if header.lsn != s.lsn || content_crc != header.content_crc || content_crc != s.content_crc {
            return Err(bad(&file, "its header or content is not what the manifest says"));
        }
        if header.lsn > manifest.last_lsn || header.lsn.next() < manifest.first_lsn {
            return Err(bad(&file, format!("the backup's log does not continue LSN {}", header.lsn)));
        }
        if let OriginCheck::Refused(why) =
            snapshot::check_origin(&header, manifest.log_id, seals.get(&header.lsn).copied())
        {
            return Err(bad(&file, why));
        }
        progress.advance(s.bytes);
    }
    progress.end();
    if manifest.first_lsn > Lsn::FIRST && manifest.snapshots.is_empty() {
        return Err(bad(&manifest_path, format!("no snapshot, and the log starts at LSN {}", manifest.first_lsn)));
    }
    Ok(manifest)
}

/// Reads a snapshot file in chunks (copying it to `out` if given); returns
/// the CRC32 of the file, the CRC32 of its content and its header.
fn stream_snapshot(file: &Path, bytes: u64, mut out: Option<&mut File>) -> Result<(u32, u32, SnapshotHeader)> {
    let mut input = File::open(file).map_err(listed_file_error("open", file))?;
    let len = input.metadata().map_err(Error::io("stat", file))?.len();
    if len != bytes {
        return Err(bad(file, format!("its manifest says {bytes} bytes, the file has {len}")));
    }
    let mut head = vec![0u8; len.min(SNAPSHOT_HEADER_BYTES as u64) as usize];
    input.read_exact(&mut head).map_err(Error::io("read", file))?;
    let header = SnapshotHeader::decode(&head).map_err(|e| bad(file, format!("snapshot header: {e}")))?;
    let (mut whole, mut content) = (crc32fast::Hasher::new(), crc32fast::Hasher::new());
    whole.update(&head);
    content.update(&head[header.header_bytes().min(head.len())..]);
    if let Some(out) = out.as_deref_mut() {
        out.write_all(&head).map_err(Error::io("write", file))?;
    }
    let mut buffer = vec![0u8; CHUNK_BYTES];
    loop {
        let n = input.read(&mut buffer).map_err(Error::io("read", file))?;
        if n == 0 {
            break;
        }
        whole.update(&buffer[..n]);
        content.update(&buffer[..n]);
        if let Some(out) = out.as_deref_mut() {
            out.write_all(&buffer[..n]).map_err(Error::io("write", file))?;
        }
    }
    Ok((whole.finalize(), content.finalize(), header))
}

/// Refuses a destination that exists and is not an empty directory.
fn check_dest(dest: &Path) -> Result<()> {
    match fs::read_dir(dest) {
        Ok(mut entries) => match entries.next() {
            None => Ok(()),
            Some(_) => Err(Error::InvalidArgument(format!(
                "{} is not empty: a restore writes only into a new or empty directory (nothing was changed)",
                dest.display()
            ))),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => Err(Error::InvalidArgument(format!(
            "{} is a file: a restore writes a new directory (nothing was changed)",
            dest.display()
        ))),
        Err(e) => Err(Error::io("list", dest)(e)),
    }
}

/// The end offset and last LSN of the last complete batch at or before
/// `target` in a (verified) segment.
fn cut_at(data: &[u8], header: &SegmentHeader, target: Lsn) -> (usize, Lsn) {
    let mut offset = SEGMENT_HEADER_BYTES;
    let mut committed = (offset, Lsn(header.first_lsn.0 - 1));
    while let Ok(record) = decode_record(&data[offset..], header.seed()) {
        if record.header.lsn > target {
            break;
        }
        offset += record.header.frame_len();
        if !record.header.batch_continues() {
            committed = (offset, record.header.lsn);
        }
    }
    committed
}

/// Restores the backup at `backup` (a backup, or a directory of backups:
/// its newest) into `dest`, which must not exist or be empty: verifies the
/// whole backup first, writes into a temporary directory beside `dest`,
/// checks what it wrote (`walden verify`'s examination and a rebuild of the
/// state), then renames it into place. With `to`, the log is cut after the
/// last complete batch at or before that LSN (or, for a time, the last
/// store write at or before it) and only the snapshots up to it are
/// restored. Returns what was restored and the state it holds.
pub fn restore<S: StateMachine>(
    backup: &Path,
    dest: &Path,
    to: Option<Target>,
    progress: &mut dyn Progress,
) -> Result<(RestoreReport, S)> {
    let started = Instant::now();
    let dir = locate_backup(backup)?;
    check_dest(dest)?;
    let manifest = verify_backup(&dir, progress)?;
    let target = match to {
        None => manifest.last_lsn,
        Some(Target::Lsn(lsn)) if lsn > manifest.last_lsn => {
            return Err(Error::InvalidArgument(format!(
                "LSN {lsn} is past the backup's last record ({})",
                manifest.last_lsn
            )))
        }
        Some(Target::Lsn(lsn)) => lsn,
        Some(time @ Target::Time(_)) => {
            let data_dir = DataDir::locate(&RealFs, &dir)?;
            admin::state_at::<S, _>(&RealFs, &data_dir, time, progress)?.1.lsn
        }
    };
    let snapshots: Vec<_> = manifest.snapshots.iter().filter(|s| s.lsn <= target).collect();
    if manifest.first_lsn > Lsn::FIRST && snapshots.is_empty() {
        return Err(Error::InvalidArgument(format!(
            "the backup holds no snapshot at or before LSN {target} and its log starts at LSN {}: it cannot \
             restore a state that old",
            manifest.first_lsn
        )));
    }
    let parent = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    fs::create_dir_all(&parent).map_err(Error::io("create directory", &parent))?;
    let name = dest.file_name().and_then(|n| n.to_str()).unwrap_or("restore");
    let temp = parent.join(format!(".{name}.restoring-{:016x}", random_u64()));
    let written =
        write_restore(&dir, &manifest, &snapshots, target, &temp, progress).and_then(|(files, bytes, last)| {
            check_restored::<S>(&temp, last).map(|(state, used)| (files, bytes, last, state, used))
        });
    let (files, bytes, last, state, used) = match written {
        Ok(done) => done,
        Err(e) => {
            if let Err(rm) = fs::remove_dir_all(&temp) {
                log::warn!("walden: could not remove {}: {rm}", temp.display());
            }
            return Err(e);
        }
    };
    // Checked again just before the rename: nothing may have appeared.
    check_dest(dest)?;
    fs::rename(&temp, dest).map_err(Error::io("rename", &temp))?;
    sync_dir(&parent)?;
    let report = RestoreReport {
        backup_id: manifest.id,
        backup: dir,
        dest: dest.to_owned(),
        requested: to,
        first_lsn: manifest.first_lsn,
        last_lsn: last,
        snapshot_used: used,
        files,
        bytes,
        duration: started.elapsed(),
    };
    Ok((report, state))
}

/// Writes the restored directory; returns files, bytes and its last LSN.
fn write_restore(
    dir: &Path,
    manifest: &Manifest,
    snapshots: &[&super::SnapshotEntry],
    target: Lsn,
    temp: &Path,
    progress: &mut dyn Progress,
) -> Result<(usize, u64, Lsn)> {
    for sub in ["wal", "snapshots"] {
        fs::create_dir_all(temp.join(sub)).map_err(Error::io("create directory", temp.join(sub)))?;
    }
    let segments: Vec<_> = manifest
        .segments
        .iter()
        .enumerate()
        .filter(|(i, e)| *i == 0 || e.first_lsn <= target)
        .map(|(_, e)| e)
        .collect();
    let total = segments.iter().map(|e| e.bytes).sum::<u64>() + snapshots.iter().map(|s| s.bytes).sum::<u64>();
    progress.begin("restoring", total);
    let (mut files, mut bytes, mut last) = (0, 0u64, manifest.first_lsn.0 - 1);
    for e in &segments {
        // Read and checked again: what is written is what was verified.
        let data = read_checked(dir, &e.path, e.bytes, e.crc)?;
        let header = check_segment(dir, manifest, e, &data)?;
        let (end, end_lsn) =
            if e.last_lsn <= target { (data.len(), e.last_lsn) } else { cut_at(&data, &header, target) };
        let out = temp.join(&e.path);
        let mut file = File::create_new(&out).map_err(Error::io("create", &out))?;
        file.write_all(&data[..end]).and_then(|()| file.sync_data()).map_err(Error::io("write", &out))?;
        (files, bytes, last) = (files + 1, bytes + end as u64, end_lsn.0);
        progress.advance(e.bytes);
    }
    for s in snapshots {
        let out = temp.join(&s.path);
        let mut file = File::create_new(&out).map_err(Error::io("create", &out))?;
        let (crc, _, _) = stream_snapshot(&dir.join(&s.path), s.bytes, Some(&mut file))?;
        if crc != s.crc {
            return Err(bad(&dir.join(&s.path), "the snapshot changed while it was restored"));
        }
        file.sync_data().map_err(Error::io("fsync", &out))?;
        (files, bytes) = (files + 1, bytes + s.bytes);
        progress.advance(s.bytes);
    }
    progress.end();
    for sub in ["wal", "snapshots"] {
        sync_dir(&temp.join(sub))?;
    }
    sync_dir(temp)?;
    Ok((files, bytes, Lsn(last)))
}

/// Examines the restored directory as `walden verify` does and rebuilds its
/// state; returns the state and the snapshot it started from.
fn check_restored<S: StateMachine>(temp: &Path, last: Lsn) -> Result<(S, Option<String>)> {
    let data_dir = DataDir::locate(&RealFs, temp)?;
    let exam = admin::examine(&RealFs, &data_dir, &mut NoProgress)?;
    if exam.health != Health::Healthy || exam.open_plan.last_lsn != last {
        return Err(bad(temp, format!("the restored directory does not verify: {}", exam.verdict)));
    }
    let (state, pit) = admin::state_at::<S, _>(&RealFs, &data_dir, Target::Lsn(last), &mut NoProgress)?;
    if pit.lsn != last {
        return Err(bad(temp, format!("the restored state ends at LSN {}, not {last}", pit.lsn)));
    }
    let used = pit.snapshot_used.and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()));
    Ok((state, used))
}
