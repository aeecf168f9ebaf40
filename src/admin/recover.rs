//! Recovery without its side effects: [`dry_run_recovery`] works out the
//! [`RecoveryReport`] an open would produce (which snapshot, which were
//! skipped and why, how many records replayed, how many bytes cut) by
//! reading only; [`state_at`] rebuilds the state as of an LSN or a time, and
//! [`write_point_in_time`] writes it as a snapshot into a directory the
//! operator names.
//!
//! A record the state machine refuses at replay ([`crate::Error::Apply`] at
//! an open) is a finding of the dry run, not an error of it:
//! [`RefusedRecord`] names its file, offset, LSN and the reason, and where a
//! cut that takes it out of the log (`walden repair --cut-from`) would start.
//!
//! The snapshot choice follows the engine's rule (`Core::load_snapshot`) and
//! its words; `crates/walden-cli/tests/cli/cli_library.rs` checks the dry
//! run against a real open of a copy of the same directory, so the two
//! cannot drift apart unseen.

use super::journal::{log_content, LogContent};
use super::log::{scan_log, LogReport, RecoveryPlan};
use super::range::{walk_records, Target};
use super::snapshots::{read_snapshot_state, scan_snapshots, SnapshotReport, SnapshotState, SnapshotsReport};
use super::store_view::store_timestamp;
use super::{DataDir, Progress};
use crate::engine::{RecoveryReport, StateMachine};
use crate::io::Vfs;
use crate::journal::JournalState;
use crate::snapshot::{self, SnapshotInfo};
use crate::store::KvState;
use crate::wal::{now_unix_us, RecoveryMode};
use crate::{Error, Lsn, Result};
use std::ops::ControlFlow;
use std::path::{Component, Path, PathBuf};
use std::time::Instant;

/// What an open would do, worked out without doing it.
#[derive(Clone, Debug)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct DryRun {
    /// The log's part: what would be cut, or why the open would fail.
    pub plan: RecoveryPlan,
    /// The engine's part (for a data directory with snapshots); `None` for
    /// a bare log, which has no state machine to recover.
    pub report: Option<RecoveryReport>,
    /// Set if the open would fail, with the error it would give.
    pub refused: Option<String>,
    /// Set if the open would fail because the state machine refuses a
    /// record of an intact log ([`crate::Error::Apply`]): which, and why.
    pub refused_record: Option<RefusedRecord>,
    /// The LSN the recovered state would end at.
    pub applied_lsn: Lsn,
    /// What the records were replayed as, when [`dry_run_recovery_by_content`]
    /// chose the state machine by the log's first record; `None` when the
    /// caller chose it.
    pub content: Option<LogContent>,
}

/// A record of an intact log that the state machine refuses to apply
/// (written by another program, or under rules that have changed since).
/// The open fails with [`crate::Error::Apply`] at its LSN. Two ways out:
/// open the directory with the program that wrote it, or move it aside
/// with every later record (`walden repair --cut-from`, [`super::apply_cut`]).
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct RefusedRecord {
    /// The segment file that holds it.
    pub file: PathBuf,
    /// The byte offset of its header in `file`.
    pub offset: u64,
    /// Its LSN.
    pub lsn: Lsn,
    /// Why the state machine refuses it, in its words.
    pub reason: String,
    /// Where a cut that takes it out of the log starts: its own LSN, or the
    /// first LSN of its batch (a batch is kept or cut whole).
    pub cut_from: Lsn,
    /// Records from `cut_from` to the end of the log: what such a cut moves
    /// aside with it.
    pub records_from_cut: u64,
}

/// Works out what opening `dir` as an engine of `S` in `mode` would report.
/// Reads the snapshot it would load and replays the log into a state held
/// only in memory; writes nothing. A record `S` refuses to apply is
/// reported in [`DryRun::refused_record`].
pub fn dry_run_recovery<S: StateMachine, V: Vfs>(
    fs: &V,
    dir: &DataDir,
    mode: RecoveryMode,
    progress: &mut dyn Progress,
) -> Result<DryRun> {
    let log = scan_log(fs, &dir.log_dir, progress)?;
    dry_run_on::<S, V>(fs, dir, log, mode, progress)
}

/// [`dry_run_recovery`] with the state machine the directory's log holds
/// records of, told by its first record ([`log_content`]): a journal's
/// ([`JournalState`]) or else a store's ([`KvState`]), which is also what
/// an empty log, and one whose first record is neither, are replayed as.
pub fn dry_run_recovery_by_content<V: Vfs>(
    fs: &V,
    dir: &DataDir,
    mode: RecoveryMode,
    progress: &mut dyn Progress,
) -> Result<DryRun> {
    let log = scan_log(fs, &dir.log_dir, progress)?;
    let content = log_content(fs, &log, progress)?;
    let mut dry = match content {
        LogContent::Journal => dry_run_on::<JournalState, V>(fs, dir, log, mode, progress)?,
        _ => dry_run_on::<KvState, V>(fs, dir, log, mode, progress)?,
    };
    dry.content = Some(content);
    Ok(dry)
}

fn dry_run_on<S: StateMachine, V: Vfs>(
    fs: &V,
    dir: &DataDir,
    log: LogReport,
    mode: RecoveryMode,
    progress: &mut dyn Progress,
) -> Result<DryRun> {
    let started = Instant::now();
    let plan = log.plan(mode);
    let mut dry =
        DryRun { plan, report: None, refused: None, refused_record: None, applied_lsn: Lsn::ZERO, content: None };
    if let Some(r) = &dry.plan.refused {
        dry.refused = Some(format!(
            "corruption in {} at offset {} (expected LSN {}): {}",
            r.file.display(),
            r.offset,
            r.lsn,
            r.what
        ));
        return Ok(dry);
    }
    dry.applied_lsn = dry.plan.last_lsn;
    let Some(snapshot_dir) = &dir.snapshot_dir else {
        return Ok(dry);
    };
    let mut report = RecoveryReport { bytes_cut: dry.plan.bytes_cut(), ..Default::default() };
    report.temporary_files_removed = if super::sorted_names(fs, snapshot_dir)?.is_empty() {
        0
    } else {
        snapshot::temporary_files(fs, snapshot_dir)?.len()
    };
    let snapshots = scan_snapshots(fs, snapshot_dir, &log, dry.plan.first_lsn, dry.plan.last_lsn, progress)?;
    let base = load_like_the_engine::<S, V>(fs, &snapshots, &mut report);
    let (mut state, base_lsn) = match base {
        Some(base) => base,
        None if dry.plan.first_lsn <= Lsn::FIRST => (S::empty(), Lsn::ZERO),
        None => {
            dry.refused = Some(format!(
                "invalid argument: no usable snapshot, and the log starts at LSN {}: the state before it is gone",
                dry.plan.first_lsn
            ));
            dry.report = Some(report);
            return Ok(dry);
        }
    };
    let kept = &log.segments[..dry.plan.kept_segments];
    let mut batch_first = base_lsn.next();
    walk_records(fs, kept, base_lsn.next(), progress, |record| {
        if let Err(e) = state.apply(record.lsn, record.payload) {
            // In the engine's words (`Error::Apply`), which it gives for
            // the record its own check refuses; the dry run applies one
            // record at a time, so it knows which one.
            let reason = match e {
                Error::Apply { reason, .. } => reason,
                e => e.to_string(),
            };
            dry.refused = Some(Error::Apply { lsn: record.lsn, reason: reason.clone() }.to_string());
            dry.refused_record = Some(RefusedRecord {
                file: record.file.to_owned(),
                offset: record.offset,
                lsn: record.lsn,
                reason,
                cut_from: batch_first,
                records_from_cut: dry.plan.last_lsn.0 + 1 - batch_first.0,
            });
            return Ok(ControlFlow::Break(()));
        }
        if !record.header.batch_continues() {
            batch_first = record.lsn.next();
        }
        report.records_replayed += 1;
        report.bytes_read += record.payload.len() as u64;
        Ok(ControlFlow::Continue(()))
    })?;
    dry.applied_lsn = Lsn(base_lsn.0 + report.records_replayed);
    report.duration = started.elapsed();
    dry.report = Some(report);
    Ok(dry)
}

/// The engine's choice: skip unreadable files, then from the newest, the
/// first snapshot the log can continue that verifies and decodes.
fn load_like_the_engine<S: StateMachine, V: Vfs>(
    fs: &V,
    snapshots: &SnapshotsReport,
    report: &mut RecoveryReport,
) -> Option<(S, Lsn)> {
    for s in snapshots.snapshots.iter().filter(|s| s.info.is_none()) {
        if let SnapshotState::Bad { reason } = &s.state {
            report.snapshots_skipped.push((s.path.clone(), reason.clone()));
        }
    }
    for s in snapshots.snapshots.iter().rev().filter(|s| s.info.is_some()) {
        if let Some(why) = &s.refused {
            // The open moves it aside and says where; the dry run cannot
            // know the name it would get.
            report.snapshots_skipped.push((s.path.clone(), format!("{why}; the open moves it aside")));
            continue;
        }
        if let Some(why) = &s.unusable {
            report.snapshots_skipped.push((s.path.clone(), why.clone()));
            continue;
        }
        match read_snapshot_state::<S, V>(fs, s) {
            Ok(state) => {
                report.snapshot_unchecked = s.unchecked.clone();
                report.snapshot_used = Some(s.path.clone());
                report.snapshot_lsn = s.lsn;
                report.bytes_read += s.file_bytes.unwrap_or(0);
                return Some((state, s.lsn));
            }
            Err(e) => report.snapshots_skipped.push((s.path.clone(), e.to_string())),
        }
    }
    None
}

/// A state rebuilt as of a point in the log.
#[derive(Clone, Debug)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct PointInTime {
    /// The LSN the state ends at.
    pub lsn: Lsn,
    /// The snapshot it started from, if any.
    pub snapshot_used: Option<PathBuf>,
    /// Log records applied after it.
    pub records_replayed: u64,
    /// The snapshot written, by [`write_point_in_time`].
    pub written: Option<SnapshotInfo>,
}

/// The state as of `target`: the newest good snapshot at or before it
/// (by LSN, or by creation time for a time), plus the log up to it (for a
/// time, up to the first record written later, as `Store::view_at_time`
/// does). Uses the log's longest valid prefix, so it works on a damaged log
/// for any point before the damage. Writes nothing.
pub fn state_at<S: StateMachine, V: Vfs>(
    fs: &V,
    dir: &DataDir,
    target: Target,
    progress: &mut dyn Progress,
) -> Result<(S, PointInTime)> {
    state_and_log(fs, dir, target, progress).map(|(state, pit, _)| (state, pit))
}

/// [`state_at`], with the scan of the log it read.
pub(crate) fn state_and_log<S: StateMachine, V: Vfs>(
    fs: &V,
    dir: &DataDir,
    target: Target,
    progress: &mut dyn Progress,
) -> Result<(S, PointInTime, LogReport)> {
    let log = scan_log(fs, &dir.log_dir, progress)?;
    let plan = log.plan(RecoveryMode::PointInTime);
    if let Some(r) = &plan.refused {
        return Err(Error::InvalidArgument(format!(
            "the log cannot be read from its start: {} at offset {}: {}",
            r.file.display(),
            r.offset,
            r.what
        )));
    }
    if let Target::Lsn(lsn) = target {
        if lsn > plan.last_lsn {
            return Err(Error::InvalidArgument(format!(
                "LSN {lsn} is past the log's last readable record ({})",
                plan.last_lsn
            )));
        }
    }
    let snapshots = match &dir.snapshot_dir {
        Some(sd) => scan_snapshots(fs, sd, &log, plan.first_lsn, plan.last_lsn, progress)?,
        None => SnapshotsReport::default(),
    };
    let fits = |s: &&SnapshotReport| match target {
        Target::Lsn(lsn) => s.lsn <= lsn,
        Target::Time(t) => s.created_unix_us.is_some_and(|c| c <= t),
    };
    let mut base = None;
    for s in snapshots.snapshots.iter().rev().filter(|s| s.is_usable()).filter(fits) {
        if let Ok(state) = read_snapshot_state::<S, V>(fs, s) {
            base = Some((state, s.lsn, s.path.clone()));
            break;
        }
    }
    let (mut state, mut lsn, used) = match base {
        Some((state, lsn, path)) => (state, lsn, Some(path)),
        None if plan.first_lsn <= Lsn::FIRST => (S::empty(), Lsn::ZERO, None),
        None => {
            return Err(Error::InvalidArgument(format!(
                "no good snapshot fits, and the log before LSN {} is gone",
                plan.first_lsn
            )))
        }
    };
    let mut replayed = 0u64;
    let mut failure = None;
    walk_records(fs, &log.segments[..plan.kept_segments], lsn.next(), progress, |record| {
        let include = match target {
            Target::Lsn(to) => record.lsn <= to,
            Target::Time(t) => store_timestamp(record.payload).is_some_and(|ts| ts <= t),
        };
        if !include {
            return Ok(ControlFlow::Break(()));
        }
        if let Err(e) = state.apply(record.lsn, record.payload) {
            failure = Some(e);
            return Ok(ControlFlow::Break(()));
        }
        lsn = record.lsn;
        replayed += 1;
        Ok(ControlFlow::Continue(()))
    })?;
    if let Some(e) = failure {
        return Err(e);
    }
    Ok((state, PointInTime { lsn, snapshot_used: used, records_replayed: replayed, written: None }, log))
}

/// Rebuilds the state as of `target` and writes it as a snapshot
/// (`snapshot-{lsn}.zst`, crash-safely) into `out_dir`, which must not be
/// the data directory's own log or snapshot directory, and must not hold
/// a snapshot of that name already. Nothing in `dir` changes.
pub fn write_point_in_time<S: StateMachine, V: Vfs>(
    fs: &V,
    dir: &DataDir,
    target: Target,
    out_dir: &Path,
    progress: &mut dyn Progress,
) -> Result<PointInTime> {
    let out = normalize(out_dir);
    if dir.snapshot_dir.as_deref().map(normalize) == Some(out.clone()) || normalize(&dir.log_dir) == out {
        return Err(Error::InvalidArgument(format!(
            "{} is the data directory's own; name another directory (recover never changes the data directory)",
            out_dir.display()
        )));
    }
    let (state, mut pit, log) = state_and_log::<S, V>(fs, dir, target, progress)?;
    // The state is of the data directory's log at that LSN: so says its origin.
    let origin = log.origin_at(fs, pit.lsn)?;
    fs.create_dir_all(out_dir).map_err(Error::io("create directory", out_dir))?;
    let name = snapshot::snapshot_file_name(pit.lsn);
    if super::sorted_names(fs, out_dir)?.contains(&name) {
        return Err(Error::InvalidArgument(format!("{} already exists", out_dir.join(name).display())));
    }
    let frozen = state.freeze();
    let info =
        snapshot::write_snapshot(fs, out_dir, pit.lsn, now_unix_us(), origin, |w| S::write_snapshot(&frozen, w))?;
    pit.written = Some(info);
    Ok(pit)
}

/// `a/./b/` and `a/b` are the same directory (lexically; no file system call).
fn normalize(path: &Path) -> PathBuf {
    path.components().filter(|c| !matches!(c, Component::CurDir)).collect()
}
