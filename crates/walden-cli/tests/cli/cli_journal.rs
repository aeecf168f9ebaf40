//! `walden dump` and `walden compact --older-than` on a real journal
//! directory, run as the real binary: journal entries decoded, address
//! patterns (`*` one segment, `**` any depth) and signal types filtering
//! them, bad filters and store directories refused with exit 2, and
//! compaction by age counted exactly by the dry run (which changes no
//! byte) and done by the journal's own compaction with `--apply`.

use crate::common as fx;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use walden::journal::{now_us, DurableJournal, Journal, JournalOptions, NewEntry, Query, SignalType, Value};
use walden::{Lsn, Wal};

const DAY_US: u64 = 86_400_000_000;

fn walden(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_walden")).args(args).output().expect("run walden")
}

fn run(args: &[&str], code: i32) -> String {
    let o = walden(args);
    let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
    assert_eq!(o.status.code(), Some(code), "walden {args:?}\nstdout:\n{stdout}\nstderr:\n{}", stderr(&o));
    stdout
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Runs a command that must fail with exit 2 and returns its stderr.
fn refused(args: &[&str]) -> String {
    let o = walden(args);
    assert_eq!(o.status.code(), Some(2), "walden {args:?}: {}", stderr(&o));
    assert!(o.stdout.is_empty(), "walden {args:?} printed {:?}", String::from_utf8_lossy(&o.stdout));
    stderr(&o)
}

/// The journal sequences `dump --json` prints (entries only).
fn sequences(dir: &Path, extra: &[&str]) -> Vec<u64> {
    let mut args = vec!["dump", dir.to_str().unwrap(), "--json"];
    args.extend_from_slice(extra);
    run(&args, 0)
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("a JSON line"))
        .filter(|v| v["journal"]["kind"] == "entry")
        .map(|v| v["journal"]["sequence"].as_u64().expect("a sequence"))
        .collect()
}

/// Six entries: three 30 days old, three an hour old; a snapshot between.
fn journal(root: &Path) -> (PathBuf, u64) {
    let dir = root.join("journal");
    let old = now_us() - 30 * DAY_US;
    let recent = now_us() - 3_600_000_000;
    let j = DurableJournal::open(&dir, JournalOptions::default()).unwrap();
    j.append(NewEntry::set("desk", "/lights/kitchen/brightness", Value::Int(10)).at(old)).unwrap();
    j.append(NewEntry::set("desk", "/lights/kitchen", Value::Bool(true)).at(old + 1)).unwrap();
    j.append(NewEntry::publish(SignalType::Event, "sensor", "/lights/hall/motion", Value::Null).at(old + 2)).unwrap();
    j.snapshot().unwrap();
    j.append(NewEntry::set("desk", "/heat/room", Value::Float(21.5)).at(recent)).unwrap();
    j.append(
        NewEntry::publish(SignalType::Stream, "fader", "/lights/kitchen/brightness", Value::Int(11)).at(recent + 1),
    )
    .unwrap();
    j.append(NewEntry::set("desk", "/lights", Value::String("on".into())).at(recent + 2)).unwrap();
    j.close().unwrap();
    (dir, recent)
}

#[test]
fn dump_decodes_journal_entries_and_filters_them() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, recent) = journal(tmp.path());
    let d = dir.to_str().unwrap();
    let before = fx::contents(&dir);

    let text = run(&["dump", d], 0);
    assert!(text.contains("#1 "), "{text}");
    assert!(text.contains("SET param /lights/kitchen/brightness = 10 rev 1 by desk"), "{text}");
    assert!(text.contains("PUBLISH event /lights/hall/motion = null by sensor"), "{text}");
    assert!(text.contains("SET param /lights = \"on\" rev 1 by desk"), "{text}");
    assert_eq!(sequences(&dir, &[]), [1, 2, 3, 4, 5, 6]);

    // `*` is exactly one segment; `**` any number, zero included.
    assert_eq!(sequences(&dir, &["--pattern", "/lights/*"]), [2]);
    assert_eq!(sequences(&dir, &["--pattern", "/lights/**"]), [1, 2, 3, 5, 6]);
    assert_eq!(sequences(&dir, &["--pattern", "/lights/*/brightness"]), [1, 5]);
    assert_eq!(sequences(&dir, &["--pattern", "/**"]), [1, 2, 3, 4, 5, 6]);
    let text = run(&["dump", d, "--pattern", "/heat/*"], 0);
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(text.contains("/heat/room = 21.5"), "{text}");

    assert_eq!(sequences(&dir, &["--type", "event"]), [3]);
    assert_eq!(sequences(&dir, &["--type", "Event,stream"]), [3, 5]);
    assert_eq!(sequences(&dir, &["--type", "param", "--pattern", "/lights/**"]), [1, 2, 6]);
    assert!(sequences(&dir, &["--type", "gesture"]).is_empty());

    // --from/--to times are the entries' timestamps (both inclusive).
    let at = |us: u64| humantime::format_rfc3339_micros(std::time::UNIX_EPOCH + std::time::Duration::from_micros(us));
    let (from, to) = (at(recent).to_string(), at(recent + 1).to_string());
    assert_eq!(sequences(&dir, &["--from", &from]), [4, 5, 6]);
    assert_eq!(sequences(&dir, &["--from", &from, "--to", &to]), [4, 5]);
    assert_eq!(sequences(&dir, &["--limit", "2", "--type", "param"]), [1, 2]);

    assert_eq!(fx::contents(&dir), before, "dump changed the journal directory");
}

#[test]
fn bad_filters_and_store_directories_exit_2() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, _) = journal(tmp.path());
    let d = dir.to_str().unwrap();
    for bad in ["/a*", "lights", "/lights//x", "/lights/"] {
        let e = refused(&["dump", d, "--pattern", bad]);
        assert!(e.contains("malformed pattern"), "{bad:?}: {e}");
    }
    assert!(refused(&["dump", d, "--type", "put"]).contains("unknown signal type"));
    assert!(refused(&["compact", d, "--older-than", "7"]).contains("malformed duration"));
    assert!(refused(&["compact", d, "--before", "3"]).contains("holds journal entries"));

    let store = fx::healthy(tmp.path());
    let s = store.to_str().unwrap();
    let before = fx::contents(&store);
    for args in [
        vec!["dump", s, "--pattern", "/**"],
        vec!["dump", s, "--type", "param"],
        vec!["compact", s, "--older-than", "7d"],
        vec!["compact", s, "--older-than", "7d", "--apply"],
    ] {
        let e = refused(&args);
        assert!(e.contains("holds store operations, not journal entries"), "{args:?}: {e}");
    }
    // A malformed pattern is refused before the directory is even looked at.
    assert!(refused(&["dump", s, "--pattern", "/a*"]).contains("malformed pattern"));
    assert_eq!(fx::contents(&store), before);
}

#[test]
fn compact_older_than_counts_exactly_then_removes_that_many() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, _) = journal(tmp.path());
    let d = dir.to_str().unwrap();
    let before = fx::contents(&dir);

    let dry: serde_json::Value =
        serde_json::from_str(&run(&["compact", d, "--older-than", "7d", "--json"], 0)).unwrap();
    assert_eq!(dry["removed_entries"], 3, "{dry}");
    assert_eq!(dry["applied"], false);
    let text = run(&["compact", d, "--older-than", "7d"], 0);
    assert!(text.contains("would remove 3 journal entries"), "{text}");
    assert!(run(&["compact", d, "--older-than", "90d"], 0).contains("would remove 0 journal entries"));
    assert!(run(&["compact", d, "--older-than", "1m"], 0).contains("would remove 6 journal entries"));
    assert_eq!(fx::contents(&dir), before, "the dry run changed the journal directory");

    let done: serde_json::Value =
        serde_json::from_str(&run(&["compact", d, "--older-than", "7d", "--apply", "--json"], 0)).unwrap();
    assert_eq!(done["removed_entries"], 3, "{done}");
    assert_eq!(done["applied"], true);
    assert_ne!(fx::contents(&dir), before);

    // The library agrees, and the directory still opens.
    let j = DurableJournal::open(&dir, JournalOptions::default()).unwrap();
    assert_eq!(j.first_sequence(), 4);
    let held: Vec<u64> = j.query(&Query::all()).unwrap().entries.iter().map(|e| e.sequence).collect();
    assert_eq!(held, [4, 5, 6]);
    assert_eq!(j.param("/lights/kitchen").map(|p| p.value), Some(Value::Bool(true)), "state is not history");
    j.close().unwrap();

    // The dump marks what the floor hides; a second dry run removes nothing.
    let text = run(&["dump", d], 0);
    assert!(text.contains("FLOOR entries below #4"), "{text}");
    for line in text.lines().filter(|l| l.contains(" #1 ") || l.contains(" #2 ") || l.contains(" #3 ")) {
        assert!(line.ends_with("[compacted]"), "{line}");
    }
    assert!(run(&["compact", d, "--older-than", "7d"], 0).contains("would remove 0 journal entries"));
    run(&["verify", d], 0);
}

#[test]
fn compact_apply_refuses_a_damaged_journal_and_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, _) = journal(tmp.path());
    let d = dir.to_str().unwrap();
    let (segment, _, lsn) = fx::tear_tail(&dir);
    assert_eq!(lsn, 6);
    let before = fx::contents(&dir);
    // The scan accepts the records before the tear: entries 1..=5, and
    // both commands exit 1 for the damage they found.
    let dumped = run(&["dump", d, "--json", "--pattern", "/**"], 1);
    let sequences: Vec<_> = dumped
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("a JSON line")["journal"]["sequence"].as_u64())
        .collect();
    assert_eq!(sequences, [1, 2, 3, 4, 5].map(Some));
    assert!(run(&["compact", d, "--older-than", "7d"], 1).contains("would remove 3 journal entries (sequences 1..=3)"));
    let e = refused(&["compact", d, "--older-than", "7d", "--apply"]);
    assert!(e.contains(segment.file_name().unwrap().to_str().unwrap()) && e.contains("torn tail"), "{e}");
    assert_eq!(fx::contents(&dir), before, "a refused compaction changed the directory");
}

#[test]
fn backup_and_restore_of_a_journal_say_addresses() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, _) = journal(tmp.path());
    let (backups, out) = (tmp.path().join("backups"), tmp.path().join("restored"));
    run(&["backup", dir.to_str().unwrap(), backups.to_str().unwrap()], 0);
    let said = run(&["restore", backups.to_str().unwrap(), out.to_str().unwrap()], 0);
    assert!(said.contains("(a journal)"), "{said}");
    assert_eq!(sequences(&out, &[]), sequences(&dir, &[]), "the restored journal holds the same entries");
}

/// The journal's version of `a_record_the_store_refuses_...`: another
/// program appends to the journal's log a record that is no journal record
/// (LSN 7), then two valid entries. `recover` replays the log as the
/// journal's (its first record says so) and names LSN 7; `repair
/// --cut-from 7 --apply` moves exactly LSNs 7..=9 aside and the journal
/// opens with its six entries.
#[test]
fn a_record_the_journal_refuses_is_named_by_recover_and_cut_from_by_repair() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, _) = journal(tmp.path());
    let d = dir.to_str().unwrap();
    // Entries 7 and 8 of another journal: valid records continuing this one.
    let scratch = tmp.path().join("scratch");
    let other = DurableJournal::open(&scratch, JournalOptions::default()).unwrap();
    for i in 0..8 {
        other.append(NewEntry::set("desk", "/other", Value::Int(i))).unwrap();
    }
    other.close().unwrap();
    let wal_options = JournalOptions::default().engine.wal;
    let scratch_wal = Wal::open(scratch.join("wal"), wal_options.clone()).unwrap();
    let valid: Vec<Vec<u8>> = scratch_wal.read_from(Lsn(7)).unwrap().map(|r| r.unwrap().payload).collect();
    scratch_wal.close().unwrap();
    let wal = Wal::open(dir.join("wal"), wal_options).unwrap();
    assert_eq!(wal.append(b"not a journal record").unwrap(), Lsn(7));
    for payload in &valid {
        wal.append(payload).unwrap();
    }
    wal.close().unwrap();
    let segment = fx::segments(&dir).pop().unwrap();
    let (offset, _, _) = fx::frames(&segment)[6];
    let original = std::fs::read(&segment).unwrap();
    let before = fx::contents(&dir);

    let text = run(&["recover", d], 1);
    assert!(text.contains(&format!("refused record     {} offset {offset} (LSN 7)", segment.display())), "{text}");
    assert!(text.contains("the journal refuses this record"), "{text}");
    assert!(text.contains(&format!("walden repair {d} --cut-from 7 --apply")), "{text}");
    let dry: serde_json::Value = serde_json::from_str(&run(&["recover", d, "--json"], 1)).unwrap();
    assert_eq!(dry["content"], "journal");
    assert_eq!(dry["refused_record"]["lsn"], 7);
    assert!(dry["refused_record"]["reason"].as_str().unwrap().contains("is not a valid journal record"), "{dry}");
    assert_eq!(dry["refused_record"]["records_from_cut"], 3);
    assert!(run(&["repair", d, "--cut-from", "7"], 1).contains("3 records and"));
    assert_eq!(fx::contents(&dir), before, "recover and the dry run of the cut change no byte");

    run(&["repair", d, "--cut-from", "7", "--apply"], 0);
    let quarantined = fx::quarantine(&dir);
    assert_eq!(quarantined.len(), 1);
    let end = original.iter().rposition(|&b| b != 0).unwrap() + 1;
    assert_eq!(std::fs::read(&quarantined[0]).unwrap(), &original[offset..end]);
    run(&["verify", d], 0);
    assert!(run(&["recover", d], 0).contains("the open would succeed at LSN 6"));
    let j = DurableJournal::open(&dir, JournalOptions::default()).unwrap();
    assert_eq!(j.latest_sequence(), 6);
    let held: Vec<u64> = j.query(&Query::all()).unwrap().entries.iter().map(|e| e.sequence).collect();
    assert_eq!(held, [1, 2, 3, 4, 5, 6]);
    assert_eq!(j.param("/other"), None, "the entries after the refused record left with it");
    j.close().unwrap();
}
