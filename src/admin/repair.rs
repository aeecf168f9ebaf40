//! The functions that change a data directory, each planned first so a
//! command line can show the plan as a dry run:
//!
//! - [`apply_repair`]: the log's own recovery, run offline under the
//!   directory lock: a torn tail (or, with `salvage`, everything from the
//!   first damage on) is copied to a synced quarantine file beside the
//!   segment before it is zeroed; later segments are renamed aside.
//! - [`apply_cut`]: the same recovery cutting at an LSN the operator names
//!   (`repair --cut-from`), for a record the state machine refuses: the
//!   log is intact, but every record from that one on moves aside the way
//!   salvage moves damage. It never cuts into what a kept snapshot covers
//!   ([`plan_cut`] says why): such a snapshot would describe a state the
//!   log no longer leads to, so the cut is refused rather than moving
//!   snapshots too; an older state can still be rebuilt elsewhere with
//!   [`super::write_point_in_time`].
//! - [`apply_compact`]: removes whole sealed segments below an LSN, never
//!   past what the oldest good snapshot needs (the engine's own rule).
//! - [`create_snapshot`] and [`prune`]: snapshot retention by hand.

use super::examine::{examine, Examination};
use super::log::{LogReport, RecoveryPlan, SegmentEnd};
use super::range::{walk_records, Target};
use super::recover::{state_at, PointInTime};
use super::snapshots::{SnapshotReport, SnapshotsReport};
use super::{DataDir, Progress};
use crate::engine::StateMachine;
use crate::io::{Vfs, VfsFile};
use crate::snapshot;
use crate::wal::recovery::{recover_cutting_from, OperatorCut};
use crate::wal::{now_unix_us, RecoveryMode, WalRecoveryReport};
use crate::{Error, Lsn, Result};
use std::ops::ControlFlow;
use std::path::PathBuf;

/// What a repair would do.
#[derive(Clone, Debug)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct RepairPlan {
    /// Whether damage in the middle of the log may be cut (`PointInTime`).
    pub salvage: bool,
    /// The LSN the operator asked to cut from (`--cut-from`), if any.
    pub cut_from: Option<Lsn>,
    /// What the log's recovery in that mode would cut, or why it refuses.
    /// For a cut from an LSN: the cuts, and the LSNs kept.
    pub plan: RecoveryPlan,
    /// Records the scan accepted that the cuts take out of the log (the
    /// damaged bytes of a torn tail or of corruption hold none).
    pub records_cut: u64,
    /// Why the cut from `cut_from` must not be made; then `plan` cuts nothing.
    pub cut_refused: Option<String>,
}

impl RepairPlan {
    /// Whether there is anything to cut.
    pub fn needed(&self) -> bool {
        !self.plan.cuts.is_empty()
    }

    /// Whether the repair cannot run: the log refuses it (`plan.refused`),
    /// or the cut does (`cut_refused`).
    pub fn refused(&self) -> bool {
        self.plan.refused.is_some() || self.cut_refused.is_some()
    }
}

/// The repair of `log`: a torn tail only, or with `salvage` the longest
/// valid prefix (everything from the first damage on is moved aside, intact
/// later segments included, because LSNs must stay gap-free).
pub fn plan_repair(log: &LogReport, salvage: bool) -> RepairPlan {
    let mode = if salvage { RecoveryMode::PointInTime } else { RecoveryMode::TolerateTornTail };
    let plan = log.plan(mode);
    let records_cut = if plan.refused.is_some() { 0 } else { accepted_records(log) - plan.records };
    RepairPlan { salvage, cut_from: None, plan, records_cut, cut_refused: None }
}

fn accepted_records(log: &LogReport) -> u64 {
    log.segments.iter().map(|s| s.records).sum()
}

/// Plans `repair --cut-from LSN`: every record from `from` on leaves the
/// log, as salvage moves damage (the rest of its segment into a quarantine
/// file, later segments renamed aside whole), and the log keeps LSNs up to
/// `from - 1`. Refused, with the reason in `cut_refused`, when:
///
/// - `from` is LSN 0, which no record has;
/// - a segment holds a record of a newer format (never moved, by anything);
/// - the log does not hold a readable record at `from` (before its start,
///   past its end, or past damage: `--salvage` cuts damage);
/// - `from` is inside a batch (a batch is kept or cut whole: the reason
///   names the batch's first LSN);
/// - a usable snapshot covers `from` (its LSN is at or past it): after the
///   cut it would lie past the end of the log, describing records that are
///   gone. The cut must start after the newest usable snapshot's LSN.
///
/// Reads the segment that holds `from` once; writes nothing.
pub fn plan_cut<V: Vfs>(fs: &V, exam: &Examination, from: Lsn, progress: &mut dyn Progress) -> Result<RepairPlan> {
    let log = &exam.log;
    let readable = log.plan(RecoveryMode::PointInTime);
    let plan = RecoveryPlan { cuts: Vec::new(), kept_segments: 0, records: 0, ..readable.clone() };
    let mut out = RepairPlan { salvage: false, cut_from: Some(from), plan, records_cut: 0, cut_refused: None };
    let refuse = |mut out: RepairPlan, why: String| {
        out.cut_refused = Some(why);
        Ok(out)
    };
    if from == Lsn::ZERO {
        return refuse(out, "LSN 0 names no record: the first record of a log is LSN 1".to_owned());
    }
    if let Some(s) = log.segments.iter().find(|s| matches!(s.end, SegmentEnd::Unsupported { .. })) {
        let why = format!("{} holds a record or header of a newer walden: open it with that version", s.path.display());
        return refuse(out, why);
    }
    if let Some(r) = &readable.refused {
        return refuse(out, format!("the log does not read from its start: {}: {}", r.file.display(), r.what));
    }
    if from < readable.first_lsn {
        let why = format!("LSN {from} is before the log's first record (LSN {})", readable.first_lsn);
        return refuse(out, why);
    }
    if from > readable.last_lsn {
        let mut why =
            format!("LSN {from} is past the log's last readable record (LSN {}): nothing to cut", readable.last_lsn);
        if !readable.cuts.is_empty() {
            why.push_str("; the damage after it is cut by `walden repair --salvage`");
        }
        return refuse(out, why);
    }
    let covering = exam.snapshots.snapshots.iter().rev().find(|s| s.is_usable() && s.lsn >= from);
    if let Some(s) = covering {
        let why = format!(
            "the snapshot {} covers LSN {}: a cut from LSN {from} would leave it past the end of the log, \
             so a cut must start after LSN {} (an older state can be written elsewhere with \
             `walden recover DIR --to LSN --out OTHER_DIR`)",
            s.path.display(),
            s.lsn,
            s.lsn
        );
        return refuse(out, why);
    }
    let index = log.segments.iter().position(|s| s.first_lsn <= from && from <= s.last_lsn);
    let index = index.expect("the readable prefix holds `from`, so a segment does");
    let segment = &log.segments[index];
    let (mut batch_first, mut found) = (segment.first_lsn, None);
    walk_records(fs, std::slice::from_ref(segment), segment.first_lsn, progress, |record| {
        if record.lsn == from {
            found = Some(record.offset);
            return Ok(ControlFlow::Break(()));
        }
        if !record.header.batch_continues() {
            batch_first = record.lsn.next();
        }
        Ok(ControlFlow::Continue(()))
    })?;
    let Some(offset) = found else {
        return Err(Error::InvalidArgument(format!(
            "{} no longer holds LSN {from} where the scan found it: is a process writing to the directory?",
            segment.path.display()
        )));
    };
    if batch_first != from {
        let why = format!("LSN {from} is inside a batch that starts at LSN {batch_first}: a batch is kept or cut whole; cut from LSN {batch_first}");
        return refuse(out, why);
    }
    let reason = cut_reason(from);
    out.plan.cuts.push(super::PlannedCut {
        file: segment.path.clone(),
        offset,
        bytes: segment.nonzero_end.saturating_sub(offset),
        lsn: from,
        whole_segment: false,
        reason: reason.clone(),
    });
    log.move_aside(&mut out.plan, index + 1, from, &reason);
    out.plan.kept_segments = index + 1;
    out.plan.records = log.segments[..index].iter().map(|s| s.records).sum::<u64>() + (from.0 - segment.first_lsn.0);
    out.plan.last_lsn = Lsn(from.0 - 1);
    out.records_cut = accepted_records(log) - out.plan.records;
    Ok(out)
}

fn cut_reason(from: Lsn) -> String {
    format!("the operator's cut (repair --cut-from {from})")
}

/// Runs `repair --cut-from LSN` under the directory lock: examines the
/// directory again, refuses what [`plan_cut`] refuses
/// ([`Error::InvalidArgument`] with its reason), then runs the log's own
/// recovery cutting at `from` (`wal::recovery`, as salvage does): the rest
/// of that segment is copied into a synced `*.quarantine-*` file and then
/// zeroed, later segments are renamed aside, the directory is synced.
/// Nothing is deleted; the log then opens with LSNs up to `from - 1`.
pub fn apply_cut<V: Vfs>(fs: &V, dir: &DataDir, from: Lsn, progress: &mut dyn Progress) -> Result<WalRecoveryReport> {
    let _lock = fs.lock_dir(&dir.log_dir).map_err(Error::io("lock", &dir.log_dir))?;
    let exam = examine(fs, dir, progress)?;
    let plan = plan_cut(fs, &exam, from, progress)?;
    if let Some(why) = plan.cut_refused {
        return Err(Error::InvalidArgument(why));
    }
    let reason = cut_reason(from);
    recover_cutting_from(fs, &dir.log_dir, OperatorCut { from, reason: &reason })
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
    // Damage found (exit 1), not a usage error: the files are named.
    if let Some(r) = &exam.open_plan.refused {
        return Err(Error::NeedsRepair { file: r.file.clone(), what: r.what.to_string() });
    }
    if let Some(cut) = exam.open_plan.cuts.first() {
        let what = format!("a torn tail from offset {} (LSN {} on)", cut.offset, cut.lsn);
        return Err(Error::NeedsRepair { file: cut.file.clone(), what });
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
