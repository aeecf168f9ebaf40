//! The files a backup copies, opened before any is read. An open file
//! stays readable after the running process unlinks it (retention removes
//! old snapshots and segments), so what was opened is what gets copied.

use crate::admin::DataDir;
use crate::error::Corruption;
use crate::format::{SegmentHeader, SEGMENT_HEADER_BYTES};
use crate::io::{Vfs, VfsFile};
use crate::snapshot::{self, SnapshotInfo};
use crate::wal::parse_segment_file_name;
use crate::{Error, Lsn, Result, Wal};
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A segment to copy.
pub(crate) struct SourceSegment<F> {
    pub path: PathBuf,
    pub file: Arc<F>,
    pub header: SegmentHeader,
    /// The readable prefix, when a live log says how long it is; `None`:
    /// read the whole file and take its complete batches.
    pub len: Option<u64>,
    /// Every segment but the log's last is sealed: it never changes.
    pub sealed: bool,
}

/// A snapshot to copy (its header read, its content not yet checked).
pub(crate) struct SourceSnapshot<F> {
    pub info: SnapshotInfo,
    pub file: F,
}

/// Everything a backup starts from.
pub(crate) struct Sources<F> {
    pub segments: Vec<SourceSegment<F>>,
    pub snapshots: Vec<SourceSnapshot<F>>,
    /// Snapshot files that are not taken, and why.
    pub left_out: Vec<(PathBuf, String)>,
}

/// Opens the snapshots of `snapshot_dir`; one removed since it was listed
/// is passed over (a newer one replaced it).
fn open_snapshots<V: Vfs>(fs: &V, snapshot_dir: &Path, into: &mut Sources<V::File>) -> Result<()> {
    let listing = snapshot::list_snapshots(fs, snapshot_dir)?;
    for (path, e) in listing.unreadable {
        into.left_out.push((path, e.to_string()));
    }
    for info in listing.snapshots {
        match fs.open(&info.path, false) {
            Ok(file) => into.snapshots.push(SourceSnapshot { info, file }),
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("open", &info.path)(e)),
        }
    }
    Ok(())
}

/// The files of a live engine: its snapshots, then the log's segments with
/// the lengths the log knows are written. The caller holds the engine's
/// snapshot lock, so no snapshot is written or pruned and no segment is
/// removed meanwhile.
pub(crate) fn from_engine<V: Vfs>(fs: &V, wal: &Wal<V>, snapshot_dir: &Path) -> Result<Sources<V::File>> {
    let mut sources = Sources { segments: Vec::new(), snapshots: Vec::new(), left_out: Vec::new() };
    open_snapshots(fs, snapshot_dir, &mut sources)?;
    let (segments, _) = wal.readable_segments();
    for (segment, len) in segments {
        sources.segments.push(SourceSegment {
            path: segment.path.clone(),
            file: segment.file.clone(),
            header: segment.header,
            len: Some(len),
            sealed: segment.sealed.is_some(),
        });
    }
    Ok(sources)
}

/// The files of a data directory that a running process may hold: the
/// snapshots first, then the segments. Retention removes segments only
/// below the oldest snapshot it keeps, oldest first, so the segments found
/// after the snapshots were opened continue one of them, unless the holder
/// wrote and pruned `keep_count` snapshots in between: then the caller sees
/// a gap between the snapshots and the log, and tries again.
pub(crate) fn from_disk<V: Vfs>(fs: &V, dir: &DataDir) -> Result<Sources<V::File>> {
    let mut sources = Sources { segments: Vec::new(), snapshots: Vec::new(), left_out: Vec::new() };
    let Some(snapshot_dir) = &dir.snapshot_dir else {
        return Err(Error::InvalidArgument(format!(
            "{} is a bare log: a backup is of a store, engine or journal directory (wal/ and snapshots/)",
            dir.root.display()
        )));
    };
    open_snapshots(fs, snapshot_dir, &mut sources)?;
    let mut names: Vec<(Lsn, PathBuf)> = fs
        .list_dir(&dir.log_dir)
        .map_err(Error::io("list", &dir.log_dir))?
        .into_iter()
        .filter_map(|name| parse_segment_file_name(&name).map(|lsn| (lsn, dir.log_dir.join(name))))
        .collect();
    names.sort();
    let count = names.len();
    for (index, (name_lsn, path)) in names.into_iter().enumerate() {
        let file = match fs.open(&path, false) {
            Ok(file) => file,
            // Removed by retention since the listing: only ever the oldest.
            Err(e) if e.kind() == ErrorKind::NotFound && sources.segments.is_empty() => continue,
            Err(e) => return Err(Error::io("open", &path)(e)),
        };
        let mut bytes = [0u8; SEGMENT_HEADER_BYTES];
        file.read_exact_at(&mut bytes, 0).map_err(Error::io("read", &path))?;
        let header = SegmentHeader::decode(&bytes).map_err(|e| Error::Corrupt {
            file: path.clone(),
            offset: 0,
            lsn: name_lsn,
            kind: Corruption::SegmentHeader(e),
        })?;
        let sealed = index + 1 < count;
        sources.segments.push(SourceSegment { path, file: Arc::new(file), header, len: None, sealed });
    }
    if sources.segments.is_empty() {
        return Err(Error::InvalidArgument(format!("{} holds no log segment", dir.log_dir.display())));
    }
    Ok(sources)
}
