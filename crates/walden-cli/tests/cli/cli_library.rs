//! The library behind the recovery commands (`walden::admin`), checked
//! against the real thing: a dry run predicts exactly what a real open
//! reports, a repair plan exactly what the repair cuts, a point-in-time
//! state exactly what `Store::view_at` builds.

use crate::common as fx;
use std::fs;
use std::path::Path;
use walden::admin::{self, DataDir, DumpOptions, Health, NoProgress, Target};
use walden::io::RealFs;
use walden::store::KvState;
use walden::{Lsn, RecoveryMode, Store, Wal, WalOptions};

fn locate(dir: &Path) -> DataDir {
    DataDir::locate(&RealFs, dir).unwrap()
}

/// The dry run on `dir` and a real open of a copy report the same recovery.
fn assert_dry_run_matches_open(dir: &Path, copy: &Path) {
    let dry =
        admin::dry_run_recovery::<KvState, _>(&RealFs, &locate(dir), RecoveryMode::TolerateTornTail, &mut NoProgress)
            .unwrap();
    assert!(dry.refused.is_none(), "{:?}", dry.refused);
    let predicted = dry.report.unwrap();
    fx::copy_dir(dir, copy);
    let store = Store::open(copy, fx::options()).unwrap();
    let real = store.recovery_report();
    let rebase = |p: &Path| p.strip_prefix(dir).unwrap().to_owned();
    let rebase_real = |p: &Path| p.strip_prefix(copy).unwrap().to_owned();
    assert_eq!(predicted.snapshot_used.as_deref().map(rebase), real.snapshot_used.as_deref().map(rebase_real));
    assert_eq!(predicted.snapshot_lsn, real.snapshot_lsn);
    // The reasons name the file, so the copy's reasons name the copy.
    let (d, c) = (dir.to_str().unwrap(), copy.to_str().unwrap());
    let skipped = |v: &[(std::path::PathBuf, String)], f: &dyn Fn(&Path) -> std::path::PathBuf| {
        v.iter().map(|(p, why)| (f(p), why.replace(c, d))).collect::<Vec<_>>()
    };
    assert_eq!(skipped(&predicted.snapshots_skipped, &rebase), skipped(&real.snapshots_skipped, &rebase_real));
    assert_eq!(predicted.records_replayed, real.records_replayed);
    assert_eq!(predicted.bytes_read, real.bytes_read);
    assert_eq!(predicted.bytes_cut, real.bytes_cut);
    assert_eq!(predicted.temporary_files_removed, real.temporary_files_removed);
    assert_eq!(dry.applied_lsn, store.applied_lsn());
}

#[test]
fn the_dry_run_predicts_what_a_real_open_reports() {
    type Damage = fn(&Path);
    let cases: [(&str, Damage); 4] = [
        ("healthy", |_| {}),
        ("torn tail", |d| drop(fx::tear_tail(d))),
        ("corrupt newest snapshot", |d| drop(fx::corrupt_newest_snapshot(d))),
        ("leftover temporary snapshot", |d| drop(fx::leave_temporary_snapshot(d))),
    ];
    for (name, damage) in cases {
        let tmp = tempfile::tempdir().unwrap();
        let dir = fx::healthy(tmp.path());
        damage(&dir);
        let before = fx::contents(&dir);
        assert_dry_run_matches_open(&dir, &tmp.path().join("copy"));
        assert_eq!(fx::contents(&dir), before, "{name}: the dry run changed the directory");
    }
}

#[test]
fn a_mid_log_corruption_is_refused_by_the_dry_run_as_by_the_open() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = fx::healthy(tmp.path());
    let (segment, offset, lsn) = fx::flip_mid_log(&dir);
    let dry =
        admin::dry_run_recovery::<KvState, _>(&RealFs, &locate(&dir), RecoveryMode::TolerateTornTail, &mut NoProgress)
            .unwrap();
    let refusal = dry.plan.refused.unwrap();
    assert_eq!((refusal.file, refusal.offset, refusal.lsn), (segment.clone(), offset as u64, Lsn(lsn)));
    match Store::open(&dir, fx::options()) {
        Err(walden::Error::Corrupt { file, offset: o, lsn: l, .. }) => {
            assert_eq!((file, o, l), (segment, offset as u64, Lsn(lsn)));
        }
        other => panic!("the open should refuse: {:?}", other.map(|_| ())),
    }
    let exam = admin::examine(&RealFs, &locate(&dir), &mut NoProgress).unwrap();
    assert_eq!(exam.health, Health::Damaged);
    assert_eq!(exam.recoverable_to_lsn, Lsn(lsn - 1));
}

#[test]
fn a_repair_cuts_exactly_what_its_plan_said() {
    for salvage in [false, true] {
        let tmp = tempfile::tempdir().unwrap();
        let dir = fx::healthy(tmp.path());
        if salvage {
            fx::flip_mid_log(&dir);
        } else {
            fx::tear_tail(&dir);
        }
        let data = locate(&dir);
        let log = admin::scan_log(&RealFs, &data.log_dir, &mut NoProgress).unwrap();
        let plan = admin::plan_repair(&log, salvage);
        assert!(plan.needed() && plan.plan.refused.is_none());
        let done = admin::apply_repair(&RealFs, &data, salvage).unwrap();
        let predicted: Vec<_> = plan.plan.cuts.iter().map(|c| (c.file.clone(), c.offset, c.bytes, c.lsn)).collect();
        let actual: Vec<_> = done.cuts.iter().map(|c| (c.file.clone(), c.offset, c.bytes, c.lsn)).collect();
        assert_eq!(predicted, actual);
        assert_eq!(done.last_lsn, plan.plan.last_lsn);
        let after = admin::examine(&RealFs, &data, &mut NoProgress).unwrap();
        assert!(after.log.segments.iter().all(|s| s.end.is_clean()));
    }
}

#[test]
fn a_point_in_time_state_is_the_stores_own_view_and_is_written_elsewhere() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = fx::healthy(tmp.path());
    let data = locate(&dir);
    let before = fx::contents(&dir);
    let out = tmp.path().join("pit");
    let pit =
        admin::write_point_in_time::<KvState, _>(&RealFs, &data, Target::Lsn(Lsn(180)), &out, &mut NoProgress).unwrap();
    assert_eq!(pit.lsn, Lsn(180));
    assert_eq!(pit.snapshot_used, Some(dir.join("snapshots/snapshot-00000000000000000100.zst")));
    assert_eq!(pit.records_replayed, 80);
    assert_eq!(fx::contents(&dir), before, "the data directory is untouched");
    let written = pit.written.unwrap();
    assert_eq!(written.path, out.join("snapshot-00000000000000000180.zst"));

    let store = Store::open(&dir, fx::options()).unwrap();
    let view = store.view_at(Lsn(180)).unwrap();
    let info = walden::snapshot::list_snapshots(&RealFs, &out).unwrap().snapshots.remove(0);
    let restored: KvState =
        walden::snapshot::read_snapshot(&RealFs, &info, |r| <KvState as walden::StateMachine>::read_snapshot(r))
            .unwrap();
    assert_eq!(restored.len(), 180);
    assert!(view.iter().eq(restored.iter()), "the written state is the store's view at LSN 180");

    // By time: every write up to the 300th record's timestamp.
    let mut ts = None;
    let log = admin::scan_log(&RealFs, &data.log_dir, &mut NoProgress).unwrap();
    let options = DumpOptions { from: Some(Target::Lsn(Lsn(300))), limit: Some(1), ..Default::default() };
    admin::dump(&RealFs, &log, &options, &mut NoProgress, |r| {
        ts = admin::store_op(r.payload).map(|op| op.timestamp_us);
        Ok(())
    })
    .unwrap();
    let ts = ts.unwrap();
    let (by_time, pit) = admin::state_at::<KvState, _>(&RealFs, &data, Target::Time(ts), &mut NoProgress).unwrap();
    let (view, view_lsn) = store.view_at_time(ts).unwrap();
    assert_eq!(pit.lsn, view_lsn);
    assert!(pit.lsn >= Lsn(300));
    assert!(view.iter().eq(by_time.iter()));

    let own = dir.join("snapshots");
    let refused = admin::write_point_in_time::<KvState, _>(&RealFs, &data, Target::Lsn(Lsn(5)), &own, &mut NoProgress);
    assert!(matches!(refused, Err(walden::Error::InvalidArgument(_))));
    let past = admin::state_at::<KvState, _>(&RealFs, &data, Target::Lsn(Lsn(401)), &mut NoProgress);
    assert!(matches!(past, Err(walden::Error::InvalidArgument(_))));
}

#[test]
fn compaction_stops_at_what_the_oldest_good_snapshot_needs() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = fx::healthy(tmp.path());
    let data = locate(&dir);
    assert_eq!(locate(&dir.join("wal")), data, "naming wal/ still finds the snapshots beside it");
    let exam = admin::examine(&RealFs, &data, &mut NoProgress).unwrap();
    let plan = admin::plan_compact(&exam, Lsn(1000));
    assert_eq!(plan.limit, Some(Lsn(101)), "the snapshot at LSN 100 needs the log from LSN 101");
    assert!(plan.remove.is_empty(), "the oldest segment holds LSN 101: {plan:?}");

    // With only the snapshot at LSN 250 kept, the log below LSN 251 may go.
    admin::prune(&RealFs, &data, 1, &mut NoProgress).unwrap();
    let segments = fx::segments(&dir);
    let first_lsns: Vec<u64> =
        segments.iter().map(|p| p.file_stem().unwrap().to_str().unwrap().parse().unwrap()).collect();
    let removable = first_lsns.windows(2).take_while(|pair| pair[1] <= 251).count();
    assert!(removable >= 2);
    let done = admin::apply_compact(&RealFs, &data, Lsn(1000), &mut NoProgress).unwrap();
    assert_eq!(done.effective_before, Lsn(251));
    assert_eq!(done.remove.iter().map(|r| r.file.clone()).collect::<Vec<_>>(), &segments[..removable]);
    assert!(done.remove.iter().all(|r| r.last_lsn < Lsn(251) && !r.file.exists()));
    assert_eq!(fx::segments(&dir), &segments[removable..]);
    let store = Store::open(&dir, fx::options()).unwrap();
    assert_eq!(store.applied_lsn(), Lsn(400));
    assert_eq!(store.recovery_report().snapshot_lsn, Lsn(250));
    assert_eq!(store.len(), 400);
    drop(store);

    fx::tear_tail(&dir);
    let exam = admin::examine(&RealFs, &data, &mut NoProgress).unwrap();
    assert!(admin::plan_compact(&exam, Lsn(1000)).refused.is_some(), "a log that needs repair is not compacted");
}

#[test]
fn snapshots_are_created_pruned_and_exported() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = fx::healthy(tmp.path());
    let data = locate(&dir);
    let created = admin::create_snapshot::<KvState, _>(&RealFs, &data, &mut NoProgress).unwrap();
    assert_eq!(created.lsn, Lsn(400));
    assert!(admin::create_snapshot::<KvState, _>(&RealFs, &data, &mut NoProgress).is_err(), "one per LSN");
    let bad = fx::snapshots(&dir)[0].clone();
    fx::flip_byte(&bad, 70);
    let plan = admin::prune(&RealFs, &data, 1, &mut NoProgress).unwrap();
    assert_eq!(plan.left_alone, std::slice::from_ref(&bad), "bad snapshots are left for the operator");
    assert_eq!(plan.remove, [dir.join("snapshots/snapshot-00000000000000000250.zst")]);
    assert_eq!(fx::snapshots(&dir), [bad, created.written.unwrap().path]);
    let exam = admin::examine(&RealFs, &data, &mut NoProgress).unwrap();
    let newest = exam.snapshots.snapshots.last().unwrap();
    let state: KvState = admin::read_snapshot_state(&RealFs, newest).unwrap();
    assert_eq!(state.len(), 400);
    assert_eq!(&*state.get(b"key-7").unwrap().value, b"value-7");
    let store = Store::open(&dir, fx::options()).unwrap();
    assert_eq!(store.recovery_report().snapshot_lsn, Lsn(400));
    assert_eq!(store.recovery_report().records_replayed, 0);
}

#[test]
fn a_bare_log_is_examined_and_dumped_too() {
    let tmp = tempfile::tempdir().unwrap();
    let wal = Wal::open(tmp.path(), WalOptions { segment_bytes: 4096, ..Default::default() }).unwrap();
    for i in 0..100u32 {
        wal.append(format!("record {i}").as_bytes()).unwrap();
    }
    wal.close().unwrap();
    let data = locate(tmp.path());
    assert_eq!(data.snapshot_dir, None);
    let exam = admin::examine(&RealFs, &data, &mut NoProgress).unwrap();
    assert_eq!(exam.health, Health::Healthy);
    assert_eq!(exam.stats.records, 100);
    let mut seen = Vec::new();
    let log = admin::scan_log(&RealFs, &data.log_dir, &mut NoProgress).unwrap();
    let options = DumpOptions { from: Some(Target::Lsn(Lsn(40))), to: Some(Target::Lsn(Lsn(60))), limit: Some(5) };
    let n = admin::dump(&RealFs, &log, &options, &mut NoProgress, |r| {
        seen.push((r.lsn.0, String::from_utf8(r.payload.to_vec()).unwrap()));
        Ok(())
    })
    .unwrap();
    assert_eq!(n, 5);
    assert_eq!(seen[0], (40, "record 39".to_owned()));
    assert_eq!(seen[4].0, 44);
}

#[test]
fn a_time_range_dumps_exactly_the_writes_made_in_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = fx::healthy(tmp.path());
    let log = admin::scan_log(&RealFs, &locate(&dir).log_dir, &mut NoProgress).unwrap();
    let mut all = Vec::new();
    admin::dump(&RealFs, &log, &DumpOptions::default(), &mut NoProgress, |r| {
        all.push((r.lsn.0, admin::store_op(r.payload).unwrap().timestamp_us));
        Ok(())
    })
    .unwrap();
    let ts = |lsn: u64| all.iter().find(|(l, _)| *l == lsn).unwrap().1;
    let (from, to) = (ts(150), ts(160));
    let options = DumpOptions { from: Some(Target::Time(from)), to: Some(Target::Time(to)), limit: None };
    let mut got = Vec::new();
    admin::dump(&RealFs, &log, &options, &mut NoProgress, |r| {
        got.push(r.lsn.0);
        Ok(())
    })
    .unwrap();
    let expected: Vec<u64> = all.iter().filter(|(_, t)| (from..=to).contains(t)).map(|(l, _)| *l).collect();
    assert_eq!(got, expected, "timestamps rise with LSNs, so the range is the writes made in it");
    assert!(got.contains(&150) && got.contains(&160));
}

#[test]
fn a_damaged_segment_header_mid_log_is_corrupt_and_salvage_moves_it_aside_whole() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = fx::healthy(tmp.path());
    let segments = fx::segments(&dir);
    let middle = segments[segments.len() / 2].clone();
    fx::flip_byte(&middle, 20); // inside the log id: the header CRC fails
    let data = locate(&dir);
    let exam = admin::examine(&RealFs, &data, &mut NoProgress).unwrap();
    assert_eq!(exam.health, Health::Damaged);
    let bad = exam.log.segments.iter().find(|s| s.path == middle).unwrap();
    assert!(matches!(bad.end, admin::SegmentEnd::BadHeader { .. }), "{:?}", bad.end);
    let refusal = exam.open_plan.refused.as_ref().unwrap();
    assert_eq!((refusal.file.clone(), refusal.offset), (middle.clone(), 0));

    let log = admin::scan_log(&RealFs, &data.log_dir, &mut NoProgress).unwrap();
    let plan = admin::plan_repair(&log, true);
    let moved: Vec<_> = plan.plan.cuts.iter().map(|c| (c.file.clone(), c.whole_segment)).collect();
    let later: Vec<_> = segments.iter().filter(|p| **p >= middle).map(|p| (p.clone(), true)).collect();
    assert_eq!(moved, later);
    let original = fs::read(&middle).unwrap();
    let done = admin::apply_repair(&RealFs, &data, true).unwrap();
    assert_eq!(done.cuts.len(), later.len());
    let q = done.cuts.iter().find(|c| c.file == middle).unwrap();
    assert_eq!(fs::read(&q.quarantine).unwrap(), original, "the segment is kept whole in quarantine");
    let store = Store::open(&dir, fx::options()).unwrap();
    let first_of_middle: u64 = middle.file_stem().unwrap().to_str().unwrap().parse().unwrap();
    assert_eq!(store.applied_lsn().0, first_of_middle - 1);
}

#[test]
fn a_refused_record_is_named_by_the_dry_run_as_by_the_open() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = fx::with_refused_record(tmp.path());
    let before = fx::contents(&dir);
    let data = locate(&dir);
    let dry =
        admin::dry_run_recovery::<KvState, _>(&RealFs, &data, RecoveryMode::TolerateTornTail, &mut NoProgress).unwrap();
    let by_content =
        admin::dry_run_recovery_by_content(&RealFs, &data, RecoveryMode::TolerateTornTail, &mut NoProgress).unwrap();
    assert_eq!(by_content.content, Some(admin::LogContent::Store));
    assert_eq!(by_content.refused_record, dry.refused_record);
    assert_eq!(fx::contents(&dir), before, "the dry runs changed the directory");
    let refused = dry.refused_record.unwrap();
    let segment = fx::segments(&dir).pop().unwrap();
    let offset = fx::frames(&segment).iter().find(|f| f.2 == 401).unwrap().0 as u64;
    assert_eq!((refused.file, refused.offset, refused.lsn), (segment, offset, Lsn(401)));
    assert_eq!((refused.cut_from, refused.records_from_cut), (Lsn(401), 4));
    assert_eq!(dry.applied_lsn, Lsn(400));
    match Store::open(&dir, fx::options()) {
        Err(error @ walden::Error::Apply { .. }) => {
            let walden::Error::Apply { lsn, reason } = &error else { unreachable!() };
            assert_eq!((*lsn, reason.as_str()), (refused.lsn, refused.reason.as_str()), "the open's words");
            assert_eq!(dry.refused, Some(error.to_string()));
        }
        other => panic!("the open should refuse LSN 401: {:?}", other.map(|_| ())),
    }
}

/// A cut in the middle of a segment (later segments move aside whole), at
/// a segment's first record (it keeps its header alone), and at the last
/// segment's refused record: the repair cuts exactly what the plan said,
/// every byte that left is in a quarantine file, and the store opens one
/// LSN before the cut.
#[test]
fn a_cut_from_an_lsn_moves_exactly_what_its_plan_said() {
    let first_of_last = |dir: &Path| -> u64 {
        fx::segments(dir).pop().unwrap().file_stem().unwrap().to_str().unwrap().parse().unwrap()
    };
    for case in ["mid-segment", "segment start", "refused record"] {
        let tmp = tempfile::tempdir().unwrap();
        let dir = fx::with_refused_record(tmp.path());
        let from = match case {
            "mid-segment" => 300,
            "segment start" => first_of_last(&dir),
            _ => 401,
        };
        let originals: Vec<(std::path::PathBuf, Vec<u8>)> =
            fx::segments(&dir).into_iter().map(|p| (p.clone(), fs::read(&p).unwrap())).collect();
        let data = locate(&dir);
        let exam = admin::examine(&RealFs, &data, &mut NoProgress).unwrap();
        let plan = admin::plan_cut(&RealFs, &exam, Lsn(from), &mut NoProgress).unwrap();
        assert_eq!(plan.cut_refused, None, "{case}");
        assert_eq!(plan.records_cut, 405 - from, "{case}");
        assert_eq!(plan.plan.last_lsn, Lsn(from - 1));
        let done = admin::apply_cut(&RealFs, &data, Lsn(from), &mut NoProgress).unwrap();
        let predicted: Vec<_> = plan.plan.cuts.iter().map(|c| (c.file.clone(), c.offset, c.bytes, c.lsn)).collect();
        let actual: Vec<_> = done.cuts.iter().map(|c| (c.file.clone(), c.offset, c.bytes, c.lsn)).collect();
        assert_eq!(predicted, actual, "{case}");
        assert_eq!(done.last_lsn, Lsn(from - 1));
        assert_eq!(done.records, plan.plan.records, "{case}");
        // Every byte that left the log is in its quarantine file.
        for cut in &done.cuts {
            let (_, original) = originals.iter().find(|(p, _)| *p == cut.file).unwrap();
            let start = cut.offset as usize;
            let moved = fs::read(&cut.quarantine).unwrap();
            assert_eq!(moved, &original[start..start + cut.bytes as usize], "{case}: {}", cut.quarantine.display());
            if cut.offset == 0 {
                assert_eq!(&moved, original, "{case}: moved aside whole");
            }
        }
        let after = admin::examine(&RealFs, &data, &mut NoProgress).unwrap();
        assert_eq!(after.health, Health::Healthy, "{case}: {}", after.verdict);
        assert_eq!(after.open_plan.last_lsn, Lsn(from - 1));
        let store = Store::open(&dir, fx::options()).unwrap();
        assert_eq!(store.applied_lsn(), Lsn(from - 1), "{case}");
        // The put at LSN n wrote key-{n-1}: the last one kept is there, the first one cut is not.
        assert!(store.get(format!("key-{}", from - 2).as_bytes()).is_some(), "{case}");
        assert!(store.get(format!("key-{}", from - 1).as_bytes()).is_none(), "{case}");
    }
}

/// A batch is kept or cut whole: the dry run proposes the cut from the
/// batch's first LSN, and a cut from inside it is refused without a change.
#[test]
fn a_cut_inside_a_batch_is_refused_and_names_where_the_batch_starts() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = fx::healthy(tmp.path());
    let puts = fx::store_payloads(tmp.path(), &[("batch-1", "a"), ("batch-2", "b"), ("after", "c")]);
    let wal = Wal::open(dir.join("wal"), fx::options().engine.wal).unwrap();
    let batch: [&[u8]; 3] = [&puts[0], fx::REFUSED_PAYLOAD, &puts[1]];
    assert_eq!(wal.append_batch(&batch).unwrap(), Lsn(401)..Lsn(404));
    wal.append(&puts[2]).unwrap();
    wal.close().unwrap();
    let data = locate(&dir);
    let dry =
        admin::dry_run_recovery::<KvState, _>(&RealFs, &data, RecoveryMode::TolerateTornTail, &mut NoProgress).unwrap();
    let refused = dry.refused_record.unwrap();
    assert_eq!((refused.lsn, refused.cut_from, refused.records_from_cut), (Lsn(402), Lsn(401), 4));
    match Store::open(&dir, fx::options()) {
        Err(walden::Error::Apply { lsn, .. }) => assert_eq!(lsn, Lsn(402)),
        other => panic!("the open should refuse LSN 402: {:?}", other.map(|_| ())),
    }

    let before = fx::contents(&dir);
    let exam = admin::examine(&RealFs, &data, &mut NoProgress).unwrap();
    let inside = admin::plan_cut(&RealFs, &exam, Lsn(402), &mut NoProgress).unwrap();
    let why = inside.cut_refused.expect("a cut inside a batch is refused");
    assert!(why.contains("inside a batch that starts at LSN 401"), "{why}");
    assert!(inside.plan.cuts.is_empty());
    match admin::apply_cut(&RealFs, &data, Lsn(402), &mut NoProgress) {
        Err(walden::Error::InvalidArgument(e)) => assert!(e.contains("starts at LSN 401"), "{e}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(fx::contents(&dir), before, "a refused cut changes nothing");
    admin::apply_cut(&RealFs, &data, Lsn(401), &mut NoProgress).unwrap();
    assert_eq!(Store::open(&dir, fx::options()).unwrap().applied_lsn(), Lsn(400));
}
