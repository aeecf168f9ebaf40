//! The `walden` recovery commands, run as the real binary on real data
//! directories: healthy, torn tail, a flipped bit mid-log, a corrupt newest
//! snapshot, a leftover temporary snapshot. Each checks the exit code, the
//! output, and that read-only commands left every byte as it was.

use crate::common as fx;
use std::fs;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use walden::{Store, StoreOptions};

fn walden(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_walden")).args(args).output().expect("run walden")
}

fn text(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn run(args: &[&str], code: i32) -> String {
    let o = walden(args);
    assert_eq!(
        o.status.code(),
        Some(code),
        "walden {args:?}\nstdout:\n{}\nstderr:\n{}",
        text(&o),
        String::from_utf8_lossy(&o.stderr)
    );
    text(&o)
}

fn json(args: &[&str], code: i32) -> serde_json::Value {
    let mut with = args.to_vec();
    with.push("--json");
    serde_json::from_str(&run(&with, code)).expect("valid JSON")
}

/// Runs each read-only command and asserts the directory's bytes did not change.
fn assert_read_only(dir: &Path) {
    let before = fx::contents(dir);
    let d = dir.to_str().unwrap();
    for args in [
        vec!["inspect", d],
        vec!["verify", d],
        vec!["dump", d],
        vec!["dump", d, "--format", "hex"],
        vec!["recover", d],
        vec!["repair", d],
        vec!["stats", d],
        vec!["snapshot", "list", d],
        vec!["snapshot", "verify", d],
        vec!["snapshot", "prune", d, "--keep", "1"],
        vec!["compact", d, "--before", "300"],
    ] {
        let o = walden(&args);
        assert!(matches!(o.status.code(), Some(0 | 1)), "{args:?}: {}", String::from_utf8_lossy(&o.stderr));
        assert_eq!(fx::contents(dir), before, "walden {args:?} changed the directory");
    }
}

#[test]
fn a_healthy_directory_is_reported_healthy_and_left_untouched() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = fx::healthy(tmp.path());
    let d = dir.to_str().unwrap();

    let first = fx::first_lsn(&dir);
    assert!(first > 1 && first <= 101, "the snapshots truncated the log below LSN 101, not past it");
    let inspect = run(&["inspect", d], 0);
    assert!(inspect.contains(&format!("verdict      healthy: LSNs {first}..=400")), "{inspect}");
    assert!(inspect.contains("recovery starts here"), "{inspect}");
    assert!(inspect.contains("00000000000000000250"), "{inspect}");
    let v = json(&["verify", d], 0);
    assert_eq!(v["health"], "healthy");
    assert_eq!(v["records"], 401 - first);
    // A closed log may leave its prepared spare segment: a notice, no more.
    assert!(v["findings"].as_array().unwrap().iter().all(|f| f["severity"] == "notice"), "{v}");

    let dump = run(&["dump", d, "--from", "101", "--limit", "3"], 0);
    assert!(run(&["dump", d], 0).lines().count() as u64 == 401 - first);
    let lines: Vec<_> = dump.lines().collect();
    assert_eq!(lines.len(), 3, "{dump}");
    assert!(lines[0].starts_with("101 ") && lines[0].contains("put \"key-100\" = \"value-100\" by fixture"), "{dump}");
    let jl = run(&["dump", d, "--from", "390", "--to", "392", "--format", "json"], 0);
    let records: Vec<serde_json::Value> = jl.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(records.iter().map(|r| r["lsn"].as_u64().unwrap()).collect::<Vec<_>>(), [390, 391, 392]);
    assert_eq!(records[0]["store_op"]["key"], "key-389");
    let hex = run(&["dump", d, "--from", "400", "--format", "hex"], 0);
    let frame = hex.split_whitespace().nth(2).unwrap();
    assert_eq!(frame.len() % 16, 0, "a frame is a multiple of 8 bytes");
    assert_eq!(&frame[16..32], "9001000000000000", "LSN 400 little-endian at bytes 8..16");

    let stats = json(&["stats", d], 0);
    assert_eq!(stats["records"], 401 - first);
    let recover = json(&["recover", d], 0);
    assert_eq!(recover["report"]["records_replayed"], 150);
    assert_eq!(recover["report"]["snapshot_lsn"], 250);
    assert!(recover["refused"].is_null());
    run(&["repair", d], 0);
    assert_read_only(&dir);
}

#[test]
fn a_torn_tail_is_recoverable_and_repair_moves_every_removed_byte_to_quarantine() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = fx::healthy(tmp.path());
    let d = dir.to_str().unwrap();
    let (segment, offset, lsn) = fx::tear_tail(&dir);
    assert_eq!(lsn, 400);
    let original = fs::read(&segment).unwrap();

    let verify = run(&["verify", d], 1);
    assert!(
        verify.contains(&format!("recoverable  {} offset {offset} LSN 400: torn tail", segment.display())),
        "{verify}"
    );
    assert!(verify.contains("verdict: recoverable"), "{verify}");
    let recover = json(&["recover", d], 1);
    assert_eq!(recover["plan"]["cuts"][0]["offset"], offset as u64);
    assert_eq!(recover["report"]["records_replayed"], 149);
    assert_read_only(&dir);

    let dry = run(&["repair", d], 1);
    assert!(dry.contains("dry run: nothing was changed"), "{dry}");
    let done = run(&["repair", d, "--apply"], 0);
    let first = fx::first_lsn(&dir);
    assert!(done.contains(&format!("repaired: the log holds LSN {first}..=399")), "{done}");

    let quarantined = fx::quarantine(&dir);
    assert_eq!(quarantined.len(), 1);
    let moved = fs::read(&quarantined[0]).unwrap();
    let end = original.iter().rposition(|&b| b != 0).unwrap() + 1;
    assert_eq!(moved, &original[offset..end], "the quarantine file holds exactly the bytes removed");
    let after = fs::read(&segment).unwrap();
    assert_eq!(&after[..offset], &original[..offset], "nothing before the cut changed");
    assert!(after[offset..].iter().all(|&b| b == 0));

    run(&["verify", d], 0);
    let store = Store::open(&dir, StoreOptions { ..fx::options() }).unwrap();
    assert_eq!(store.applied_lsn().0, 399);
    assert_eq!(store.recovery_report().bytes_cut, 0, "the repair left nothing for the open to cut");
    assert_eq!(&*store.get(b"key-398").unwrap().value, b"value-398");
}

#[test]
fn a_flipped_bit_mid_log_is_named_and_only_salvage_cuts_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = fx::healthy(tmp.path());
    let d = dir.to_str().unwrap();
    let (segment, offset, lsn) = fx::flip_mid_log(&dir);
    let before = fx::contents(&dir);

    let verify = run(&["verify", d], 1);
    let expected =
        format!("CORRUPT      {} offset {offset} LSN {lsn}: corruption in a sealed segment", segment.display());
    assert!(verify.contains(&expected), "{verify}");
    assert!(verify.contains("verdict: damaged"), "{verify}");
    let inspect = run(&["inspect", d], 1);
    assert!(inspect.contains(&format!("CORRUPT at offset {offset} (LSN {lsn})")), "{inspect}");
    let recover = json(&["recover", d], 1);
    assert!(recover["refused"].as_str().unwrap().contains(&format!("offset {offset} (expected LSN {lsn})")));
    // Records before and after the damage can still be read; the damage
    // found makes it exit 1.
    let dump = run(&["dump", d, "--format", "json"], 1);
    assert!(dump.lines().count() > 200, "records of the intact segments are dumped");
    assert_read_only(&dir);

    let refused = run(&["repair", d, "--apply"], 1);
    assert!(refused.contains("--salvage keeps LSNs up to"), "{refused}");
    assert_eq!(fx::contents(&dir), before, "a refused repair changes nothing");

    let originals: Vec<(std::path::PathBuf, Vec<u8>)> =
        fx::segments(&dir).into_iter().map(|p| (p.clone(), fs::read(&p).unwrap())).collect();
    let done = run(&["repair", d, "--apply", "--salvage"], 0);
    assert!(done.contains(&format!("holds LSN {}..={}", fx::first_lsn(&dir), lsn - 1)), "{done}");
    // Every byte that left the log is in a quarantine file: the damaged
    // segment's tail, and the later segments whole.
    let quarantined = fx::quarantine(&dir);
    let later: Vec<_> = originals.iter().filter(|(p, _)| p > &segment).collect();
    assert_eq!(quarantined.len(), 1 + later.len());
    let (_, damaged) = originals.iter().find(|(p, _)| p == &segment).unwrap();
    let end = damaged.iter().rposition(|&b| b != 0).unwrap() + 1;
    let tail = quarantined.iter().find(|q| q.to_string_lossy().contains(&format!(".quarantine-{offset}-"))).unwrap();
    assert_eq!(fs::read(tail).unwrap(), &damaged[offset..end]);
    for (path, bytes) in later {
        let name = path.file_name().unwrap().to_str().unwrap();
        let moved =
            quarantined.iter().find(|q| q.to_string_lossy().contains(&format!("{name}.quarantine-0-"))).unwrap();
        assert_eq!(&fs::read(moved).unwrap(), bytes, "{name} moved aside whole");
    }
    let store = Store::open(&dir, fx::options()).unwrap();
    assert_eq!(store.applied_lsn().0, lsn - 1);
}

#[test]
fn a_corrupt_newest_snapshot_is_reported_and_recovery_falls_back() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = fx::healthy(tmp.path());
    let d = dir.to_str().unwrap();
    let bad = fx::corrupt_newest_snapshot(&dir);

    let verify = run(&["verify", d], 1);
    assert!(verify.contains(&format!("recoverable  {} LSN 250: bad snapshot", bad.display())), "{verify}");
    let snaps = run(&["snapshot", "verify", d], 1);
    assert!(snaps.contains("2 snapshots, 1 bad"), "{snaps}");
    let recover = json(&["recover", d], 1);
    assert_eq!(recover["report"]["snapshot_lsn"], 100);
    assert_eq!(recover["report"]["snapshots_skipped"][0][0], bad.to_str().unwrap());
    assert_eq!(recover["report"]["records_replayed"], 300);
    assert_read_only(&dir);
    let store = Store::open(&dir, fx::options()).unwrap();
    assert_eq!(store.recovery_report().snapshot_lsn.0, 100);
}

#[test]
fn a_leftover_temporary_snapshot_is_a_notice_not_a_problem() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = fx::healthy(tmp.path());
    let d = dir.to_str().unwrap();
    let temp = fx::leave_temporary_snapshot(&dir);
    let name = temp.file_name().unwrap().to_str().unwrap();

    let inspect = run(&["inspect", d], 0);
    assert!(inspect.contains(&format!("{name} leftover temporary file")), "{inspect}");
    let v = json(&["verify", d], 0);
    assert_eq!(v["findings"][0]["severity"], "notice");
    let recover = json(&["recover", d], 0);
    assert_eq!(recover["report"]["temporary_files_removed"], 1);
    assert_read_only(&dir);
}

#[test]
fn usage_errors_exit_2_and_journal_filters_refuse_a_store_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = fx::healthy(tmp.path());
    let d = dir.to_str().unwrap();
    assert_eq!(walden(&["inspect"]).status.code(), Some(2));
    assert_eq!(walden(&["dump", d, "--from", "yesterday"]).status.code(), Some(2));
    let o = walden(&["inspect", tmp.path().join("nope").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    let o = walden(&["inspect", tmp.path().to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("is not a walden directory"));
    // The journal's filters on a store's directory (tests/cli_journal.rs has the journal's).
    for (args, why) in [
        (vec!["dump", d, "--pattern", "/x"], "holds store operations, not journal entries"),
        (vec!["dump", d, "--pattern", "x"], "malformed pattern"),
        (vec!["dump", d, "--type", "put"], "unknown signal type"),
        (vec!["compact", d, "--older-than", "7d"], "holds store operations, not journal entries"),
    ] {
        let o = walden(&args);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        assert!(String::from_utf8_lossy(&o.stderr).contains(why), "{args:?}");
    }
}

#[test]
fn a_closed_pipe_ends_dump_quietly() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = fx::healthy(tmp.path());
    let mut child = Command::new(env!("CARGO_BIN_EXE_walden"))
        .args(["dump", dir.to_str().unwrap(), "--format", "hex"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take()); // the reader goes away at once, like `| head -0`
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(out.stderr.is_empty(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn every_help_text_renders() {
    let top = run(&["--help"], 0);
    for command in ["inspect", "verify", "dump", "recover", "repair", "snapshot", "compact", "stats"] {
        assert!(top.contains(command), "{top}");
        let help = run(&[command, "--help"], 0);
        assert!(help.contains("--json") || command == "snapshot", "{command}: {help}");
    }
    for sub in ["list", "create", "verify", "prune", "export"] {
        let help = run(&["snapshot", sub, "--help"], 0);
        assert!(help.contains("--json"), "snapshot {sub}: {help}");
    }
}

#[test]
fn recover_to_writes_a_point_in_time_snapshot_outside_the_data_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = fx::healthy(tmp.path());
    let d = dir.to_str().unwrap();
    let before = fx::contents(&dir);
    let out = tmp.path().join("restore");
    let o = out.to_str().unwrap();
    let said = run(&["recover", d, "--to", "180", "--out", o], 0);
    assert!(said.contains("state as of LSN 180"), "{said}");
    assert_eq!(fx::contents(&dir), before, "recover --to leaves the data directory alone");
    let written = out.join("snapshot-00000000000000000180.zst");
    assert!(written.exists());
    // Written twice is refused rather than overwritten.
    run(&["recover", d, "--to", "180", "--out", o], 2);
    // The data directory's own snapshots/ is refused.
    let own = dir.join("snapshots");
    run(&["recover", d, "--to", "180", "--out", own.to_str().unwrap()], 2);
    assert_eq!(fx::contents(&dir), before);
    // --to needs --out.
    run(&["recover", d, "--to", "180"], 2);
}

#[test]
fn snapshot_create_export_and_prune_and_compact_do_what_they_print() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = fx::healthy(tmp.path());
    let d = dir.to_str().unwrap();
    let said = run(&["snapshot", "create", d], 0);
    assert!(said.contains("state as of LSN 400"), "{said}");
    let list = json(&["snapshot", "list", d], 0);
    assert_eq!(list["snapshots"].as_array().unwrap().len(), 3);
    assert_eq!(list["newest_usable"], 400);

    let export: serde_json::Value = serde_json::from_str(&run(&["snapshot", "export", d], 0)).unwrap();
    assert_eq!(export["snapshot"]["lsn"], 400);
    let entries = export["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 400);
    let k7 = entries.iter().find(|e| e["key"]["text"] == "key-7").unwrap();
    assert_eq!(k7["value"]["text"], "value-7");
    assert_eq!(k7["revision"], 1);
    assert_eq!(k7["writer"], "fixture");
    let older: serde_json::Value =
        serde_json::from_str(&run(&["snapshot", "export", d, "--lsn", "100", "--json"], 0)).unwrap();
    assert_eq!(older["entries"].as_array().unwrap().len(), 100);

    let dry = run(&["snapshot", "prune", d, "--keep", "1"], 0);
    assert!(dry.contains("would remove") && dry.contains("dry run"), "{dry}");
    assert_eq!(fx::snapshots(&dir).len(), 3);
    run(&["snapshot", "prune", d, "--keep", "1", "--apply"], 0);
    assert_eq!(fx::snapshots(&dir), [dir.join("snapshots/snapshot-00000000000000000400.zst")]);

    let segments = fx::segments(&dir);
    let dry = json(&["compact", d, "--before", "1000"], 0);
    assert_eq!(dry["limit"], 401, "the only snapshot left needs the log from LSN 401");
    let removed = dry["remove"].as_array().unwrap().len();
    assert_eq!(removed, segments.len() - 1, "every sealed segment may go, never the active one");
    assert_eq!(fx::segments(&dir), segments, "a dry run removes nothing");
    run(&["compact", d, "--before", "1000", "--apply"], 0);
    assert_eq!(fx::segments(&dir), &segments[removed..]);
    run(&["verify", d], 0);
    let store = Store::open(&dir, fx::options()).unwrap();
    assert_eq!(store.len(), 400);
    assert_eq!(store.applied_lsn().0, 400);
}

#[test]
fn commands_that_change_a_directory_in_use_say_so_and_change_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = fx::healthy(tmp.path());
    let d = dir.to_str().unwrap();
    fx::tear_tail(&dir);
    // A running process holds the directory (a store opened in this test
    // process; the walden binary is another process). Its open cut the
    // torn tail, so tear the new tail again for `repair --apply` to act on.
    let holder = Store::open(&dir, fx::options()).unwrap();
    holder.put(b"held", b"by the test").unwrap();
    fx::tear_tail(&dir);
    // The holder's preparer thread may be filling a spare segment meanwhile.
    let held_files = || {
        let mut all = fx::contents(&dir);
        all.retain(|path, _| !path.to_str().unwrap().ends_with(".wal.tmp"));
        all
    };
    let before = held_files();
    for args in [
        vec!["repair", d, "--apply"],
        vec!["compact", d, "--before", "300", "--apply"],
        vec!["snapshot", "create", d],
        vec!["snapshot", "prune", d, "--keep", "1", "--apply"],
    ] {
        let o = walden(&args);
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains("is in use: another process holds its lock"), "{args:?}: {stderr}");
        let after = held_files();
        let changed: Vec<_> = after.keys().chain(before.keys()).filter(|p| after.get(*p) != before.get(*p)).collect();
        assert!(changed.is_empty(), "walden {args:?} changed a directory in use: {changed:?}");
    }
    // Read-only commands never take the lock: they work on it as it is.
    run(&["verify", d], 1);
    drop(holder);
}

#[test]
fn a_foreign_or_renamed_snapshot_fails_verify_by_name_and_reason_and_the_store_keeps_its_state() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = fx::healthy(tmp.path());
    let other = tmp.path().join("other");
    fs::create_dir_all(&other).unwrap();
    let other = fx::healthy(&other);
    let expected = Store::open(&dir, fx::options()).unwrap().range(..);
    let newest = dir.join("snapshots/snapshot-00000000000000000250.zst");
    let older = dir.join("snapshots/snapshot-00000000000000000100.zst");
    let d = dir.to_str().unwrap();
    for (name, source, why) in [
        ("foreign", other.join("snapshots/snapshot-00000000000000000250.zst"), "taken from another store's log"),
        ("renamed", older.clone(), "its name says LSN 250 but its header says LSN 100"),
    ] {
        let original = fs::read(&newest).unwrap();
        fs::copy(&source, &newest).unwrap();
        let verify = run(&["verify", d], 1);
        assert!(verify.contains(&newest.display().to_string()) && verify.contains(why), "{name}: {verify}");
        assert!(verify.contains("verdict: recoverable"), "{name}: {verify}");
        let v = json(&["verify", d], 1);
        assert_eq!(v["health"], "recoverable", "{name}");
        let snaps = json(&["snapshot", "list", d], 1);
        assert_eq!(snaps["newest_usable"], 100, "{name}: recovery would start from the older snapshot");
        assert_read_only(&dir);
        let store = Store::open(&dir, fx::options()).unwrap();
        assert_eq!(store.recovery_report().snapshot_lsn.0, 100, "{name}");
        assert!(store.recovery_report().snapshots_skipped[0].1.contains(why), "{name}");
        assert_eq!(store.range(..), expected, "{name}: the store recovered its own exact state");
        drop(store);
        run(&["verify", d], 0);
        // Put the real snapshot back for the next case (the refused file
        // was moved aside: it stays, as a quarantine file).
        fs::write(&newest, original).unwrap();
    }
}

#[test]
fn backup_of_a_directory_in_use_and_restore_walk_through() {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    let tmp = tempfile::tempdir().unwrap();
    let (data, dest, out) = (tmp.path().join("data"), tmp.path().join("backups"), tmp.path().join("restored"));
    let (d, b, o) = (data.to_str().unwrap(), dest.to_str().unwrap(), out.to_str().unwrap());
    let mut options = fx::options();
    options.engine.wal.fsync = walden::FsyncMode::Always;
    options.engine.snapshots.every_commits = Some(500);
    // This test process holds the directory and 8 threads keep writing
    // while the walden binary backs it up.
    let holder = Store::open(&data, options).unwrap();
    let acked: Vec<AtomicU64> = (0..8).map(|_| AtomicU64::new(0)).collect();
    let stop = AtomicBool::new(false);
    let (before, said) = std::thread::scope(|scope| {
        for w in 0..8u64 {
            let (holder, acked, stop) = (&holder, &acked, &stop);
            scope.spawn(move || {
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    holder.put(format!("w{w}-{i:08}").as_bytes(), format!("v{w}-{i}").as_bytes()).unwrap();
                    i += 1;
                    acked[w as usize].store(i, Ordering::SeqCst);
                }
            });
        }
        while acked.iter().map(|a| a.load(Ordering::SeqCst)).sum::<u64>() < 2000 {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let before: Vec<u64> = acked.iter().map(|a| a.load(Ordering::SeqCst)).collect();
        let said = run(&["backup", d, b], 0);
        stop.store(true, Ordering::Relaxed);
        (before, said)
    });
    assert!(said.contains("backup 1 of") && said.contains("verified:"), "{said}");
    holder.close().unwrap();

    // Restoring into a non-empty directory is refused and changes nothing.
    fs::create_dir_all(&out).unwrap();
    fs::write(out.join("keep.txt"), b"mine").unwrap();
    let o_ = walden(&["restore", b, o]);
    assert_eq!(o_.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o_.stderr).contains("is not empty"));
    assert_eq!(fs::read(out.join("keep.txt")).unwrap(), b"mine");
    fs::remove_dir_all(&out).unwrap();

    let restored = json(&["restore", b, o], 0);
    assert_eq!(restored["backup_id"], 1);
    let keys = restored["keys"].as_u64().unwrap();
    let store = Store::open(&out, fx::options()).unwrap();
    assert_eq!(store.len() as u64, keys);
    assert_eq!(store.applied_lsn().0, restored["last_lsn"].as_u64().unwrap());
    for (w, &n) in before.iter().enumerate() {
        for i in 0..n {
            let entry = store.get(format!("w{w}-{i:08}").as_bytes());
            assert_eq!(entry.map(|e| e.value.to_vec()), Some(format!("v{w}-{i}").into_bytes()), "w{w}-{i} lost");
        }
    }
    drop(store);

    // The writers went on after the first backup (and retention removed
    // what it had), so a second backup copies; a third, with no writes in
    // between, copies only the last segment again and shares the rest.
    run(&["backup", d, b], 0);
    let third = json(&["backup", d, b, "--keep", "2"], 0);
    let files = third["manifest"]["segments"].as_array().unwrap().len()
        + third["manifest"]["snapshots"].as_array().unwrap().len();
    assert_eq!(third["files_copied"], 1, "{third}");
    assert_eq!(third["files_linked"].as_u64().unwrap() as usize, files - 1, "{third}");
    assert_eq!(third["pruned"][0], dest.join("backup-000001").to_str().unwrap());
    // A damaged backup is refused.
    let victim = dest.join("backup-000003").join(third["manifest"]["segments"][0]["path"].as_str().unwrap());
    let mut bytes = fs::read(&victim).unwrap();
    bytes[100] ^= 1;
    fs::write(&victim, bytes).unwrap();
    let o_ = walden(&["restore", b, tmp.path().join("again").to_str().unwrap()]);
    assert_eq!(o_.status.code(), Some(1), "a damaged backup is a problem found");
    assert!(String::from_utf8_lossy(&o_.stderr).contains("checksum mismatch"));
    assert!(!tmp.path().join("again").exists());
}

/// LSN 401 of an intact log is no store operation (another program wrote
/// it with a raw `Wal`, then three valid puts). `recover` names it (file,
/// offset, LSN, reason) and the two ways out; `verify` passes and says it
/// checks bytes only; `repair --cut-from 401` plans without changing a
/// byte, refuses what it must, and with `--apply` moves exactly LSNs
/// 401..=404 into a quarantine file, after which the store opens at 400.
#[test]
fn a_record_the_store_refuses_is_named_by_recover_and_cut_from_by_repair() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = fx::with_refused_record(tmp.path());
    let d = dir.to_str().unwrap();
    let segment = fx::segments(&dir).pop().unwrap();
    let (offset, _, _) =
        *fx::frames(&segment).iter().find(|(_, _, lsn)| *lsn == 401).expect("LSN 401 is in the last segment");
    let original = fs::read(&segment).unwrap();
    let before = fx::contents(&dir);

    let recover = run(&["recover", d], 1);
    for expected in [
        format!("refused record     {} offset {offset} (LSN 401)", segment.display()),
        "the open would FAIL: the record at LSN 401 cannot be applied to the state".into(),
        "is not a store operation".into(),
        "the log itself is intact".into(),
        "open the directory with the program that wrote the record".into(),
        "move LSN 401 and every later record aside, 4 records in all".into(),
        format!("walden repair {d} --cut-from 401 --apply"),
    ] {
        assert!(recover.contains(&expected), "{expected:?} in\n{recover}");
    }
    let r = json(&["recover", d], 1);
    let refused = &r["refused_record"];
    assert_eq!(refused["lsn"], 401);
    assert_eq!(refused["file"], segment.to_str().unwrap());
    assert_eq!(refused["offset"], offset as u64);
    assert!(refused["reason"].as_str().unwrap().contains("log record 401 is not a store operation"), "{r}");
    assert_eq!(refused["cut_from"], 401);
    assert_eq!(refused["records_from_cut"], 4);
    assert_eq!(r["content"], "store");
    assert_eq!(r["applied_lsn"], 400);
    let verify = run(&["verify", d], 0);
    assert!(verify.contains("`walden recover` replays them"), "verify says what it does not check: {verify}");
    assert_read_only(&dir);

    let dry = run(&["repair", d, "--cut-from", "401"], 1);
    assert!(dry.contains(&format!("would cut {}: ", segment.display())), "{dry}");
    assert!(dry.contains(&format!("from offset {offset} (LSN 401 on)")), "{dry}");
    assert!(dry.contains("4 records and"), "{dry}");
    assert!(dry.contains("the log would keep LSN") && dry.contains("..=400"), "{dry}");
    assert!(dry.contains("dry run: nothing was changed"), "{dry}");
    let plan = json(&["repair", d, "--cut-from", "401"], 1);
    let end = original.iter().rposition(|&b| b != 0).unwrap() + 1;
    assert_eq!(plan["plan"]["cuts"].as_array().unwrap().len(), 1, "{plan}");
    assert_eq!(plan["plan"]["cuts"][0]["bytes"], (end - offset) as u64);
    assert_eq!(plan["records_cut"], 4);
    let snapshot = run(&["repair", d, "--cut-from", "250", "--apply"], 1);
    assert!(snapshot.contains("snapshot-00000000000000000250.zst covers LSN 250"), "{snapshot}");
    let zero = run(&["repair", d, "--cut-from", "0", "--apply"], 1);
    assert!(zero.contains("cannot cut from LSN 0: LSN 0 names no record"), "{zero}");
    let past = run(&["repair", d, "--cut-from", "405", "--apply"], 1);
    assert!(past.contains("past the log's last readable record (LSN 404)"), "{past}");
    let both = walden(&["repair", d, "--cut-from", "401", "--salvage"]);
    assert_eq!(both.status.code(), Some(2), "--cut-from and --salvage exclude each other");
    assert_eq!(fx::contents(&dir), before, "dry runs and refused cuts change no byte");

    let done = run(&["repair", d, "--cut-from", "401", "--apply"], 0);
    assert!(done.contains(&format!("from offset {offset} (LSN 401 on) into")), "{done}");
    assert!(done.contains(&format!("repaired: the log holds LSN {}..=400", fx::first_lsn(&dir))), "{done}");
    let quarantined = fx::quarantine(&dir);
    assert_eq!(quarantined.len(), 1, "{quarantined:?}");
    assert_eq!(fs::read(&quarantined[0]).unwrap(), &original[offset..end], "the quarantine file holds exactly the cut");
    let after = fs::read(&segment).unwrap();
    assert_eq!(&after[..offset], &original[..offset], "nothing before the cut changed");
    assert!(after[offset..].iter().all(|&b| b == 0), "the cut bytes are zeroed in place");
    for (path, bytes) in before.iter().filter(|(p, _)| p.is_file() && **p != segment) {
        assert_eq!(&fs::read(path).unwrap(), bytes, "{} changed", path.display());
    }

    run(&["verify", d], 0);
    assert!(run(&["recover", d], 0).contains("the open would succeed at LSN 400"));
    let store = Store::open(&dir, fx::options()).unwrap();
    assert_eq!(store.applied_lsn().0, 400);
    assert_eq!(store.len(), 400);
    assert_eq!(&*store.get(b"key-399").unwrap().value, b"value-399");
    assert!(store.get(b"after-1").is_none(), "the puts after the refused record left with it");
    assert_eq!(store.recovery_report().bytes_cut, 0, "the repair left nothing for the open to cut");
    assert_eq!(store.put(b"next", b"1").unwrap().0, 401, "the log goes on from the cut");
    store.close().unwrap();
    assert_eq!(Store::open(&dir, fx::options()).unwrap().applied_lsn().0, 401);
}
