//! The functions that change a data directory, each planned first so a
//! command line can show the plan as a dry run:
//!
//! - [`apply_repair`]: the log's own recovery, run offline under the
//!   directory lock: a torn tail (or, with `salvage`, everything from the
//!   first damage on) is copied to a synced quarantine file beside the
//!   segment before it is zeroed; later segments are renamed aside.
//! - [`apply_compact`]: removes whole sealed segments below an LSN, never
//!   past what the oldest good snapshot needs (the engine's own rule).
//! - [`create_snapshot`] and [`prune`]: snapshot retention by hand.

use super::examine::{examine, Examination};
use super::log::{LogReport, RecoveryPlan};
use super::range::Target;
use super::recover::{state_at, PointInTime};
use super::snapshots::{SnapshotReport, SnapshotsReport};
use super::{DataDir, Progress};
use crate::engine::StateMachine;
use crate::io::{Vfs, VfsFile};
use crate::snapshot;
use crate::wal::{now_unix_us, RecoveryMode, WalRecoveryReport};
use crate::{Error, Lsn, Result};
use std::path::PathBuf;

/// What a repair would do.
#[derive(Clone, Debug)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct RepairPlan {
    /// Whether damage in the middle of the log may be cut (`PointInTime`).
    pub salvage: bool,
    /// What the log's recovery in that mode would cut, or why it refuses.
    pub plan: RecoveryPlan,
}

impl RepairPlan {
    /// Whether there is anything to cut.
    pub fn needed(&self) -> bool {
        !self.plan.cuts.is_empty()
    }
}

/// The repair of `log`: a torn tail only, or with `salvage` the longest
/// valid prefix (everything from the first damage on is moved aside, intact
/// later segments included, because LSNs must stay gap-free).
pub fn plan_repair(log: &LogReport, salvage: bool) -> RepairPlan {
    let mode = if salvage { RecoveryMode::PointInTime } else { RecoveryMode::TolerateTornTail };
    RepairPlan { salvage, plan: log.plan(mode) }
}

/// Runs the repair: the log's recovery in `TolerateTornTail` or (with
/// `salvage`) `PointInTime` mode, under the directory lock, with no writer
/// started. Every byte removed is first in a synced quarantine file. As at
/// every open, unpublished `.wal.tmp` spares (which never hold records) are
/// deleted. Returns what recovery did.
pub fn apply_repair<V: Vfs>(fs: &V, dir: &DataDir, salvage: bool) -> Result<WalRecoveryReport> {
    let mode = if salvage { RecoveryMode::PointInTime } else { RecoveryMode::TolerateTornTail };
    let _lock = fs.lock_dir(&dir.log_dir).map_err(Error::io("lock", &dir.log_dir))?;
    Ok(crate::wal::recovery::recover(fs, &dir.log_dir, mode)?.map(|r| r.report).unwrap_or_default())
}

/// A segment compaction would remove.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct Removal {
    /// The segment file.
    pub file: PathBuf,
    /// The first LSN it holds.
    pub first_lsn: Lsn,
    /// The last LSN it holds.
    pub last_lsn: Lsn,
    /// Its length in bytes.
    pub bytes: u64,
}

/// What `compact --before` would do.
#[derive(Clone, Debug)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct CompactPlan {
    /// The LSN the operator asked to compact below.
    pub requested_before: Lsn,
    /// The most recovery allows: the LSN after the oldest good snapshot
    /// (`None` for a bare log, which has no snapshots to protect).
    pub limit: Option<Lsn>,
    /// Segments whose records all lie below this go.
    pub effective_before: Lsn,
    /// The segments that go, oldest first.
    pub remove: Vec<Removal>,
    /// Set if compaction must not run now, and why.
    pub refused: Option<String>,
}

/// Plans removing sealed segments below `before`, never the active one and
/// never past the oldest good snapshot's LSN + 1.
pub fn plan_compact(exam: &Examination, before: Lsn) -> CompactPlan {
    let limit = exam.dir.snapshot_dir.as_ref().map(|_| {
        let oldest = exam.snapshots.snapshots.iter().find(|s| s.is_usable());
        oldest.map_or(exam.open_plan.first_lsn, |s| s.lsn.next())
    });
    let effective_before = limit.map_or(before, |l| l.min(before));
    let mut plan = CompactPlan { requested_before: before, limit, effective_before, remove: Vec::new(), refused: None };
    if let Some(bad) = exam.log.segments.iter().find(|s| !s.end.is_clean()) {
        plan.refused = Some(format!("{} needs repair first (`walden verify` says why)", bad.path.display()));
        return plan;
    }
    let segments = &exam.log.segments;
    for pair in segments.windows(2).take_while(|pair| pair[1].first_lsn <= effective_before) {
        let s = &pair[0];
        plan.remove.push(Removal {
            file: s.path.clone(),
            first_lsn: s.first_lsn,
            last_lsn: s.last_lsn,
            bytes: s.file_bytes,
        });
    }
    plan
}

/// Runs the compaction under the directory lock, re-examining first.
/// Removes the oldest segment first and fsyncs the directory after each,
/// so a crash leaves a gap-free suffix of the log (as `Wal::truncate_before`).
pub fn apply_compact<V: Vfs>(fs: &V, dir: &DataDir, before: Lsn, progress: &mut dyn Progress) -> Result<CompactPlan> {
    let _lock = fs.lock_dir(&dir.log_dir).map_err(Error::io("lock", &dir.log_dir))?;
    let exam = examine(fs, dir, progress)?;
    let plan = plan_compact(&exam, before);
    if plan.refused.is_none() {
        for removal in &plan.remove {
            fs.remove_file(&removal.file).map_err(Error::io("remove", &removal.file))?;
            fs.sync_dir(&dir.log_dir).map_err(Error::io("fsync directory", &dir.log_dir))?;
        }
    }
    Ok(plan)
}

/// Writes a snapshot of the state at the log's last record into the data
/// directory's snapshot directory, under the lock. Refuses a log that the
/// next open would change (repair it first). The last segment is
/// fdatasynced first, so the snapshot never covers records the log could
/// still lose.
pub fn create_snapshot<S: StateMachine, V: Vfs>(
    fs: &V,
    dir: &DataDir,
    progress: &mut dyn Progress,
) -> Result<PointInTime> {
    let Some(snapshot_dir) = &dir.snapshot_dir else {
        return Err(Error::InvalidArgument(format!("{} is a bare log: it has no snapshots", dir.root.display())));
    };
    let _lock = fs.lock_dir(&dir.log_dir).map_err(Error::io("lock", &dir.log_dir))?;
    let exam = examine(fs, dir, progress)?;
    if let Some(r) = &exam.open_plan.refused {
        return Err(Error::InvalidArgument(format!("the log needs repair first: {}: {}", r.file.display(), r.what)));
    }
    if !exam.open_plan.cuts.is_empty() {
        return Err(Error::InvalidArgument("the log has a torn tail: run `walden repair` first".into()));
    }
    let last = exam.open_plan.last_lsn;
    if last == Lsn::ZERO {
        return Err(Error::InvalidArgument("the log holds no record yet".into()));
    }
    if exam.snapshots.snapshots.iter().any(|s| s.lsn == last) {
        return Err(Error::InvalidArgument(format!("a snapshot at LSN {last} exists already")));
    }
    if let Some(active) = exam.log.segments.last() {
        let file = fs.open(&active.path, false).map_err(Error::io("open", &active.path))?;
        file.sync_data().map_err(Error::io("fsync", &active.path))?;
    }
    let (state, mut pit) = state_at::<S, V>(fs, dir, Target::Lsn(last), progress)?;
    let frozen = state.freeze();
    let origin = exam.log.origin_at(fs, pit.lsn)?;
    let info =
        snapshot::write_snapshot(fs, snapshot_dir, pit.lsn, now_unix_us(), origin, |w| S::write_snapshot(&frozen, w))?;
    pit.written = Some(info);
    Ok(pit)
}

/// What `snapshot prune --keep N` would do.
#[derive(Clone, Debug)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct PrunePlan {
    /// How many good snapshots stay (at least 1).
    pub keep: usize,
    /// Good snapshots beyond the newest `keep` good ones, oldest first.
    pub remove: Vec<PathBuf>,
    /// Bad snapshots, and ones that are not of this log, are left for the
    /// operator to look at.
    pub left_alone: Vec<PathBuf>,
}

/// Keeps the newest `keep` (at least 1) snapshots that read; only good
/// snapshots count and only good ones go, so pruning never leaves recovery
/// without its newest good starting point.
pub fn plan_prune(snapshots: &SnapshotsReport, keep: usize) -> PrunePlan {
    let ours = |s: &&SnapshotReport| s.is_good() && s.refused.is_none();
    let good: Vec<_> = snapshots.snapshots.iter().filter(ours).collect();
    let excess = good.len().saturating_sub(keep.max(1));
    PrunePlan {
        keep: keep.max(1),
        remove: good[..excess].iter().map(|s| s.path.clone()).collect(),
        left_alone: snapshots.snapshots.iter().filter(|s| !ours(s)).map(|s| s.path.clone()).collect(),
    }
}

/// Runs the prune under the directory lock, re-examining first.
pub fn prune<V: Vfs>(fs: &V, dir: &DataDir, keep: usize, progress: &mut dyn Progress) -> Result<PrunePlan> {
    let Some(snapshot_dir) = &dir.snapshot_dir else {
        return Err(Error::InvalidArgument(format!("{} is a bare log: it has no snapshots", dir.root.display())));
    };
    let _lock = fs.lock_dir(&dir.log_dir).map_err(Error::io("lock", &dir.log_dir))?;
    let exam = examine(fs, dir, progress)?;
    let plan = plan_prune(&exam.snapshots, keep);
    let infos: Vec<_> = exam
        .snapshots
        .snapshots
        .iter()
        .filter(|s| s.is_good() && s.refused.is_none())
        .filter_map(|s| s.info.clone())
        .collect();
    let removed = snapshot::prune_snapshots(fs, snapshot_dir, &infos, plan.keep)?;
    debug_assert_eq!(removed, plan.remove);
    Ok(plan)
}
