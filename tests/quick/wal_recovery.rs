//! Opening damaged logs: torn tails, bit rot, stale generations, failed
//! fsyncs. Each recovery mode must do exactly what it promises, and nothing
//! is ever deleted: cut bytes land in quarantine files.

use crate::common::*;
use walden::io::{CrashMode, Fault, FaultKind, SimFs, SimOp};
use walden::{Corruption, Error, FsyncMode, Lsn, Preallocate, RecoveryMode, Wal, WalOptions};

const ALL_MODES: [RecoveryMode; 3] =
    [RecoveryMode::TolerateTornTail, RecoveryMode::PointInTime, RecoveryMode::AbsoluteConsistency];

/// A closed log of `n` records written in `fsync` mode, in one segment.
fn one_segment_log(n: u64, fsync: FsyncMode, preallocate: bool) -> SimFs {
    let fs = SimFs::new();
    let options = WalOptions { fsync, segment_bytes: 1 << 20, preallocate: fill(preallocate), ..Default::default() };
    let wal = Wal::open_with(fs.clone(), sim_dir(), options).unwrap();
    for i in 0..n {
        wal.append(&payload(i)).unwrap();
    }
    wal.close().unwrap();
    fs
}

fn fill(zero_fill: bool) -> Preallocate {
    if zero_fill {
        Preallocate::ZeroFill
    } else {
        Preallocate::Off
    }
}

fn options(recovery: RecoveryMode, preallocate: bool) -> WalOptions {
    WalOptions {
        segment_bytes: 1 << 20,
        preallocate: fill(preallocate),
        recovery,
        fsync: FsyncMode::Never,
        ..Default::default()
    }
}

#[test]
fn a_log_cut_at_every_byte_of_its_last_record_reopens_to_the_complete_records() {
    for preallocate in [true, false] {
        let fs = one_segment_log(20, FsyncMode::Never, preallocate);
        let path = segment_paths(&fs, &sim_dir())[0].clone();
        let bytes = fs.read_file(&path).unwrap();
        let (start, len, lsn) = *frames(&bytes).last().unwrap();
        assert_eq!(lsn, Lsn(20));
        for cut in start..=start + len {
            let mut damaged = bytes.clone();
            if preallocate {
                damaged[cut..start + len].fill(0); // unwritten preallocated space reads as zeros
            } else {
                damaged.truncate(cut);
            }
            // Padding is not covered by the checksum: a cut inside it loses nothing.
            let data_end = start + 32 + payload(19).len();
            assert!(data_end <= start + len);
            let torn = cut > start && cut < data_end && damaged[start..cut].iter().any(|&b| b != 0);
            for mode in ALL_MODES {
                let fs = SimFs::new();
                fs.write_file(&path, &damaged);
                let result = Wal::open_with(fs.clone(), sim_dir(), options(mode, preallocate));
                if torn && mode == RecoveryMode::AbsoluteConsistency {
                    let err = result.err().expect("absolute consistency refuses a torn tail");
                    assert!(
                        matches!(err, Error::Corrupt { offset, lsn: Lsn(20), .. } if offset == start as u64),
                        "{err}"
                    );
                    assert_eq!(fs.read_file(&path).unwrap(), damaged, "a refused open changes nothing");
                    continue;
                }
                let wal = result.unwrap_or_else(|e| panic!("cut at {cut}, {mode:?}: {e}"));
                let records = read_all(&wal);
                let complete = if cut >= data_end { 20 } else { 19 };
                assert_eq!(records.len(), complete, "cut at {cut}, {mode:?}");
                assert_eq!(records.last().unwrap().1, payload(complete as u64 - 1));
                let report = wal.recovery_report();
                assert_eq!(report.cuts.len(), usize::from(torn), "cut at {cut}, {mode:?}");
                if torn {
                    // The torn bytes are kept, not destroyed.
                    let quarantined = fs.read_file(&report.cuts[0].quarantine).unwrap();
                    let torn_end = start + damaged[start..cut].iter().rposition(|&b| b != 0).unwrap() + 1;
                    assert_eq!(quarantined, damaged[start..torn_end].to_vec());
                    assert!(fs.read_file(&path).unwrap()[start..].iter().all(|&b| b == 0), "zeroed in place");
                }
                // The log goes on right after the last complete record.
                assert_eq!(wal.append(b"after").unwrap(), Lsn(complete as u64 + 1));
                wal.close().unwrap();
                let wal = Wal::open_with(fs, sim_dir(), options(mode, preallocate)).unwrap();
                assert_eq!(
                    read_all(&wal).len(),
                    complete + 1,
                    "cut at {cut}, {mode:?}: the append after recovery is reachable"
                );
            }
        }
    }
}

/// Flips one bit in the payload of record `lsn` of the segment at `index`.
fn flip_bit_in_record(fs: &SimFs, index: usize, lsn: Lsn) -> (std::path::PathBuf, u64) {
    let path = segment_paths(fs, &sim_dir())[index].clone();
    let mut bytes = fs.read_file(&path).unwrap();
    let (offset, _, _) = *frames(&bytes).iter().find(|f| f.2 == lsn).expect("record to damage");
    bytes[offset + 33] ^= 0x10;
    fs.write_file(&path, &bytes);
    (path, offset as u64)
}

#[test]
fn a_flipped_bit_in_a_sealed_segment_is_corruption_in_every_mode() {
    for mode in ALL_MODES {
        let fs = SimFs::new();
        let wal = Wal::open_with(fs.clone(), sim_dir(), small(FsyncMode::Never)).unwrap();
        for i in 0..200 {
            wal.append(&payload(i)).unwrap();
        }
        wal.close().unwrap();
        let paths = segment_paths(&fs, &sim_dir());
        assert!(paths.len() > 3);
        let bytes = fs.read_file(&paths[1]).unwrap();
        let victim = frames(&bytes)[3].2;
        let (path, offset) = flip_bit_in_record(&fs, 1, victim);
        let result = Wal::open_with(fs.clone(), sim_dir(), with_recovery(small(FsyncMode::Never), mode));
        match mode {
            RecoveryMode::PointInTime => {
                let wal = result.unwrap();
                let records = read_all(&wal);
                assert_eq!(records.len() as u64, victim.0 - 1, "the valid prefix is kept");
                let report = wal.recovery_report();
                assert_eq!(report.cuts[0].file, path);
                assert_eq!(report.cuts[0].offset, offset);
                // Every later segment was moved aside whole, not deleted.
                assert_eq!(report.cuts.len(), 1 + paths.len() - 2);
                for cut in &report.cuts[1..] {
                    assert_eq!(fs.read_file(&cut.quarantine).unwrap().len() as u64, cut.bytes);
                }
                assert_eq!(wal.append(b"next").unwrap(), victim);
            }
            _ => {
                let err = result.err().expect("corruption must fail the open");
                match err {
                    Error::Corrupt { file, offset: at, lsn, .. } => {
                        assert_eq!((file, at, lsn), (path, offset, victim), "the error says where");
                    }
                    other => panic!("{mode:?}: {other}"),
                }
                assert!(quarantine_files(&fs, &sim_dir()).is_empty(), "a refused open moves nothing");
            }
        }
    }
}

#[test]
fn a_flipped_bit_in_the_active_segment_is_caught_by_the_durable_watermark() {
    // In Always mode each record carries the LSN known durable when it was
    // written, so a later record proves an earlier one was already on disk:
    // damage to it cannot be a torn write.
    for mode in ALL_MODES {
        let fs = one_segment_log(30, FsyncMode::Always, true);
        let (path, offset) = flip_bit_in_record(&fs, 0, Lsn(10));
        let result = Wal::open_with(fs.clone(), sim_dir(), options(mode, true));
        if mode == RecoveryMode::PointInTime {
            let wal = result.unwrap();
            assert_eq!(read_all(&wal).len(), 9);
            assert_eq!(wal.recovery_report().cuts[0].offset, offset);
            continue;
        }
        match result.err().expect("damage to a durable record is an error") {
            Error::Corrupt { file, offset: at, lsn, kind } => {
                assert_eq!((file, at, lsn), (path.clone(), offset, Lsn(10)));
                assert!(matches!(kind, Corruption::DurableRecordDamaged { .. }), "{kind}");
            }
            other => panic!("{other}"),
        }
    }
}

#[test]
fn a_flipped_bit_without_proof_of_durability_is_cut_and_quarantined_never_accepted() {
    // Never mode: nothing after record 10 proves it durable, so the damage is
    // indistinguishable from a torn write. The default mode cuts it (into
    // quarantine), absolute consistency refuses; nobody accepts the bad record.
    let fs = one_segment_log(30, FsyncMode::Never, true);
    flip_bit_in_record(&fs, 0, Lsn(10));
    let fs_strict = fs.crash(CrashMode::KeepUnsynced);
    assert!(Wal::open_with(fs_strict, sim_dir(), options(RecoveryMode::AbsoluteConsistency, true)).is_err());
    let wal = Wal::open_with(fs.clone(), sim_dir(), options(RecoveryMode::TolerateTornTail, true)).unwrap();
    assert_eq!(read_all(&wal).len(), 9);
    let cut = &wal.recovery_report().cuts[0];
    assert_eq!(cut.lsn, Lsn(10));
    assert!(fs.read_file(&cut.quarantine).unwrap().len() as u64 == cut.bytes && cut.bytes > 0);
}

#[test]
fn a_batch_whose_last_record_is_lost_comes_back_not_at_all() {
    let fs = SimFs::new();
    let opts = WalOptions { segment_bytes: 1 << 20, fsync: FsyncMode::Never, ..Default::default() };
    let wal = Wal::open_with(fs.clone(), sim_dir(), opts.clone()).unwrap();
    wal.append(b"before").unwrap();
    let batch: Vec<Vec<u8>> = (0..5).map(payload).collect();
    assert_eq!(wal.append_batch(&batch).unwrap(), Lsn(2)..Lsn(7));
    wal.close().unwrap();
    let path = segment_paths(&fs, &sim_dir())[0].clone();
    let bytes = fs.read_file(&path).unwrap();
    for lost in 2..=6u64 {
        // Zero one record of the batch, as a lost sector would.
        let mut damaged = bytes.clone();
        let (offset, len, _) = frames(&bytes)[lost as usize - 1];
        damaged[offset..offset + len].fill(0);
        let fs = SimFs::new();
        fs.write_file(&path, &damaged);
        let wal = Wal::open_with(fs, sim_dir(), opts.clone()).unwrap();
        assert_eq!(read_all(&wal), vec![(Lsn(1), b"before".to_vec())], "record {lost} lost: the whole batch goes");
        assert_eq!(wal.recovery_report().cuts.len(), 1);
    }
}

#[test]
fn stale_bytes_from_another_log_or_generation_are_never_accepted() {
    // (a) A segment copied in from another log is refused by its log id.
    let a = one_segment_log(5, FsyncMode::Never, false);
    let b = SimFs::new();
    let wal = Wal::open_with(b.clone(), sim_dir(), small(FsyncMode::Never)).unwrap();
    for i in 0..100 {
        wal.append(&payload(i)).unwrap();
    }
    wal.close().unwrap();
    let b_second = segment_paths(&b, &sim_dir())[1].clone();
    let a_first = segment_paths(&a, &sim_dir())[0].clone();
    let next_name = walden::wal::segment_file_name(Lsn(6));
    let mut foreign = b.read_file(&b_second).unwrap();
    foreign[32..40].copy_from_slice(&6u64.to_le_bytes()); // make its first LSN fit
    let crc = crc32fast::hash(&foreign[..60]);
    foreign[60..64].copy_from_slice(&crc.to_le_bytes());
    a.write_file(&sim_dir().join(&next_name), &foreign);
    let err = Wal::open_with(a.clone(), sim_dir(), options(RecoveryMode::TolerateTornTail, false)).err().unwrap();
    assert!(matches!(err, Error::Corrupt { kind: Corruption::ForeignSegment { .. }, .. }), "{err}");
    assert_eq!(a.read_file(&a_first).map(|b| b.len() > 64), Some(true));

    // (b) Records of an older generation of the same segment file (same log,
    // recreated with a new salt) never validate in the new file.
    let fs = SimFs::new();
    let wal = Wal::open_with(fs.clone(), sim_dir(), small(FsyncMode::Never)).unwrap();
    let mut i = 0;
    while i < 100 || frames(&fs.read_file(segment_paths(&fs, &sim_dir()).last().unwrap()).unwrap()).len() < 5 {
        wal.append(&payload(i)).unwrap();
        i += 1;
    }
    wal.close().unwrap();
    let paths = segment_paths(&fs, &sim_dir());
    let last = paths.last().unwrap().clone();
    let old_generation = fs.read_file(&last).unwrap();
    let old_frames = frames(&old_generation);
    let first_in_last = old_frames[0].2;
    // Damage the previous segment's tail so point-in-time recovery moves the
    // last segment aside, then write new records that recreate its name.
    let prev = paths[paths.len() - 2].clone();
    let mut prev_bytes = fs.read_file(&prev).unwrap();
    let (offset, _, _) = *frames(&prev_bytes).last().unwrap();
    prev_bytes[offset + 40] ^= 1;
    fs.write_file(&prev, &prev_bytes);
    let wal = Wal::open_with(fs.clone(), sim_dir(), with_recovery(small(FsyncMode::Never), RecoveryMode::PointInTime))
        .unwrap();
    let kept = read_all(&wal).len() as u64;
    // Same sizes as before, so roll-overs fall on the same LSNs and the
    // last segment's name comes back; different bytes ("Record-").
    for i in kept..first_in_last.0 {
        let mut p = payload(i);
        p[0] = b'R';
        wal.append(&p).unwrap();
    }
    assert_eq!(segment_paths(&fs, &sim_dir()).last().unwrap(), &last, "the name is reused");
    wal.append(b"one more in the new generation").unwrap();
    wal.close().unwrap();
    assert!(first_in_last > Lsn(kept));
    // Plant the old generation's records right after the new ones.
    let mut new_bytes = fs.read_file(&last).unwrap();
    let new_end = frames(&new_bytes).last().map(|(o, l, _)| o + l).unwrap();
    // The old record planted there carries exactly the LSN expected next, so
    // only the new segment salt in the checksum tells it apart.
    assert!(old_frames.len() >= 3, "the old last segment needs three records");
    assert_eq!(old_frames[2].2, first_in_last.next().next());
    let stale = &old_generation[old_frames[2].0..];
    let room = new_bytes.len().saturating_sub(new_end).min(stale.len());
    new_bytes[new_end..new_end + room].copy_from_slice(&stale[..room]);
    fs.write_file(&last, &new_bytes);
    let wal = Wal::open_with(fs.clone(), sim_dir(), small(FsyncMode::Never)).unwrap();
    let records = read_all(&wal);
    let stale: Vec<_> = records.iter().filter(|(lsn, p)| *lsn >= first_in_last && p.starts_with(b"record-")).collect();
    assert!(stale.is_empty(), "stale records came back: {stale:?}");
    assert_eq!(records.last().unwrap().1, b"one more in the new generation");
}

#[test]
fn a_torn_tail_is_zeroed_in_place_so_later_appends_are_never_orphaned() {
    // A crash that tears the tail of a log, then more appends, then another
    // crash that keeps everything: the new appends must all come back (the
    // bug that orphaned writes behind garbage in other engines).
    for seed in 0..40 {
        let fs = SimFs::new();
        let opts = WalOptions { segment_bytes: 1 << 20, fsync: FsyncMode::Never, ..Default::default() };
        let wal = Wal::open_with(fs.clone(), sim_dir(), opts.clone()).unwrap();
        for i in 0..20 {
            wal.append(&payload(i)).unwrap();
        }
        wal.sync().unwrap();
        for i in 20..60 {
            wal.append(&payload(i)).unwrap();
        }
        let crashed = fs.crash(CrashMode::Tear { seed });
        drop(wal);
        let wal = Wal::open_with(crashed.clone(), sim_dir(), opts.clone()).unwrap();
        let survived = read_all(&wal);
        assert!(survived.len() >= 20, "synced records survive (seed {seed})");
        for (i, (_, p)) in survived.iter().enumerate() {
            assert_eq!(p, &payload(i as u64), "a prefix of what was written (seed {seed})");
        }
        for i in 0..10 {
            wal.append(format!("second-life-{i}").as_bytes()).unwrap();
        }
        drop(wal);
        let again = crashed.crash(CrashMode::KeepUnsynced);
        let wal = Wal::open_with(again, sim_dir(), opts.clone()).unwrap();
        let records = read_all(&wal);
        assert_eq!(records.len(), survived.len() + 10, "seed {seed}: appends after recovery are reachable");
        assert_eq!(records.last().unwrap().1, b"second-life-9");
    }
}

/// An `Always` log with five acknowledged records, and the next fsync armed
/// to fail and forget its data (as Linux may), then report success again.
fn five_records_then_a_lying_fsync() -> (SimFs, WalOptions, Wal<SimFs>) {
    let fs = SimFs::new();
    let opts = WalOptions { segment_bytes: 1 << 20, fsync: FsyncMode::Always, ..Default::default() };
    let wal = Wal::open_with(fs.clone(), sim_dir(), opts.clone()).unwrap();
    for i in 0..5 {
        wal.append(&payload(i)).unwrap();
    }
    fs.inject(Fault { at_call: 1, kind: FaultKind::SyncLosesData, persistent: false, only: Some(SimOp::Sync) });
    (fs, opts, wal)
}

#[test]
fn a_failed_fsync_fails_the_append_poisons_the_log_and_is_never_retried() {
    let (fs, opts, wal) = five_records_then_a_lying_fsync();
    let err = wal.append(b"doomed").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(5), "the EIO is surfaced: {err}");
    let syncs_after_failure = || fs.trace().iter().filter(|op| **op == SimOp::Sync).count();
    let syncs = syncs_after_failure();
    assert!(matches!(wal.append(b"later"), Err(Error::Poisoned(_))));
    assert!(matches!(wal.sync(), Err(Error::Poisoned(_))));
    assert!(wal.append_pipelined(b"p").is_err());
    std::thread::sleep(std::time::Duration::from_millis(20));
    assert_eq!(syncs_after_failure(), syncs, "the failed fsync is never retried");
    assert!(wal.close().is_err(), "close reports the poison");
    // After power loss the acknowledged prefix is there, the doomed record not.
    let after = fs.crash(CrashMode::DropUnsynced);
    let wal = Wal::open_with(after, sim_dir(), opts).unwrap();
    let records = read_all(&wal);
    assert_eq!(records.len(), 5);
    assert_eq!(wal.append(b"recovered").unwrap(), Lsn(6));
}

#[test]
fn a_full_disk_fails_the_append_and_the_log_resumes_after_reopen() {
    let fs = SimFs::new();
    let opts = WalOptions {
        segment_bytes: 8192,
        fsync: FsyncMode::Always,
        preallocate: Preallocate::Off,
        ..Default::default()
    };
    let wal = Wal::open_with(fs.clone(), sim_dir(), opts.clone()).unwrap();
    fs.set_space_limit(Some(20_000));
    let mut acked = 0;
    let err = loop {
        match wal.append(&payload(acked)) {
            Ok(_) => acked += 1,
            Err(e) => break e,
        }
    };
    assert_eq!(err.raw_os_error(), Some(28), "ENOSPC is surfaced: {err}");
    assert!(matches!(wal.append(b"x"), Err(Error::Poisoned(_))));
    drop(wal);
    fs.set_space_limit(None);
    let wal = Wal::open_with(fs.crash(CrashMode::DropUnsynced), sim_dir(), opts).unwrap();
    let records = read_all(&wal);
    assert_eq!(records.len() as u64, acked, "every acknowledged append survives, nothing else");
    assert_eq!(wal.append(b"resumed").unwrap(), Lsn(acked + 1));
}

#[test]
fn an_unknown_record_kind_is_refused_in_every_mode_not_cut() {
    let fs = one_segment_log(5, FsyncMode::Never, true);
    let path = segment_paths(&fs, &sim_dir())[0].clone();
    let mut bytes = fs.read_file(&path).unwrap();
    let header = walden::format::SegmentHeader::decode(&bytes).unwrap();
    let (offset, len, _) = frames(&bytes)[2];
    bytes[offset + 24] = 9; // a kind from the future, with a valid checksum
    let payload_len = len - 32;
    let mut hasher = crc32fast::Hasher::new_with_initial(crc_seed(&header));
    hasher.update(&bytes[offset + 4..offset + 32]);
    hasher.update(&bytes[offset + 32..offset + 32 + payload_len.min(bytes.len())][..payload(2).len()]);
    let crc = hasher.finalize();
    bytes[offset..offset + 4].copy_from_slice(&crc.to_le_bytes());
    fs.write_file(&path, &bytes);
    for mode in ALL_MODES {
        let err = Wal::open_with(fs.clone(), sim_dir(), options(mode, true)).err().expect("refused");
        assert!(matches!(err, Error::Unsupported { .. }), "{mode:?}: {err}");
    }
}

fn crc_seed(header: &walden::format::SegmentHeader) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&header.log_id.to_le_bytes());
    h.update(&header.salt.to_le_bytes());
    h.finalize()
}

#[test]
fn a_leftover_spare_segment_is_ignored_and_removed() {
    let fs = one_segment_log(3, FsyncMode::Never, false);
    let spare = sim_dir().join("0123456789abcdef.wal.tmp");
    fs.write_file(&spare, &[0u8; 4096]);
    let wal = Wal::open_with(fs.clone(), sim_dir(), options(RecoveryMode::TolerateTornTail, false)).unwrap();
    assert_eq!(read_all(&wal).len(), 3);
    assert!(fs.read_file(&spare).is_none());
}

#[test]
fn reopening_after_a_lying_fsync_in_the_same_boot_never_vouches_for_lost_bytes() {
    // The failed fsync leaves the doomed record in the page cache, marked
    // clean but never written. A reopen in the same boot that read it back
    // from the cache would keep it, its fsync would "succeed" without
    // writing it, and new records would vouch for it. Recovery reads the
    // last segment from the device instead, so the doomed record is gone.
    let (fs, opts, wal) = five_records_then_a_lying_fsync();
    assert!(wal.append(b"doomed").is_err());
    drop(wal);
    fs.clear_fault();
    let wal = Wal::open_with(fs.clone(), sim_dir(), opts.clone()).unwrap();
    assert_eq!(read_all(&wal).len(), 5, "recovery reads the device, where the doomed record never was");
    for i in 0..3 {
        wal.append(format!("after-{i}").as_bytes()).unwrap();
    }
    drop(wal);
    let after = fs.crash(CrashMode::DropUnsynced);
    let wal = Wal::open_with(after, sim_dir(), opts).expect("no record vouches for bytes that are not on disk");
    let records = read_all(&wal);
    assert_eq!(records.len(), 8, "every append acknowledged after the reopen survives");
    assert_eq!(records.last().unwrap().1, b"after-2");
}

#[test]
fn an_unknown_record_kind_inside_a_batch_is_refused_not_cut() {
    let fs = SimFs::new();
    let opts = WalOptions { segment_bytes: 1 << 20, fsync: FsyncMode::Always, ..Default::default() };
    let wal = Wal::open_with(fs.clone(), sim_dir(), opts).unwrap();
    wal.append(b"first").unwrap();
    wal.append_batch(&[b"a".as_slice(), b"b", b"c"]).unwrap();
    wal.close().unwrap();
    let path = segment_paths(&fs, &sim_dir())[0].clone();
    let mut bytes = fs.read_file(&path).unwrap();
    let header = walden::format::SegmentHeader::decode(&bytes).unwrap();
    let (offset, _, lsn) = frames(&bytes)[2];
    assert_eq!(lsn, Lsn(3), "the middle of the batch");
    bytes[offset + 24] = 9;
    let mut hasher = crc32fast::Hasher::new_with_initial(crc_seed(&header));
    hasher.update(&bytes[offset + 4..offset + 33]);
    bytes[offset..offset + 4].copy_from_slice(&hasher.finalize().to_le_bytes());
    fs.write_file(&path, &bytes);
    for mode in ALL_MODES {
        let err = Wal::open_with(fs.clone(), sim_dir(), options(mode, true)).err().expect("refused");
        assert!(matches!(err, Error::Unsupported { .. }), "{mode:?}: {err}");
        assert!(quarantine_files(&fs, &sim_dir()).is_empty(), "{mode:?}: nothing was cut");
    }
}
