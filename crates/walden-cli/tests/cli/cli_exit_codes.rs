//! The exit-code contract, as a table: every command that reads data, run
//! as the real binary on every kind of damage the fixtures make, exits 1,
//! names the damaged file, and changes no byte. `--json` carries the class
//! of an error (`damage`, `usage`, `environment`) beside its exit code.
//!
//! A command is run on the damage it reads: `inspect`, `verify`, `stats`,
//! `recover`, `compact` and `backup` read the whole directory; `dump` and
//! `repair` the log; `snapshot list` and `snapshot verify` the snapshots;
//! `restore` the backup.

use crate::common as fx;
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use walden::Store;

fn walden(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_walden")).args(args).output().expect("run walden")
}

fn said(o: &Output) -> String {
    format!("stdout:\n{}\nstderr:\n{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn cut_to_half(path: &Path) {
    let len = fs::metadata(path).unwrap().len();
    fs::OpenOptions::new().write(true).open(path).unwrap().set_len(len / 2).unwrap();
}

/// What part of a data directory a damage is in, and so which commands read it.
#[derive(Clone, Copy, PartialEq)]
enum Part {
    /// The end of the last segment, where a live process may be writing.
    Tail,
    /// The rest of the log.
    Log,
    Snapshots,
}

/// One kind of damage to a copy of [`fx::healthy`]: it returns the file a
/// command must name. `other` is a second healthy store (another log id).
struct Damage {
    name: &'static str,
    part: Part,
    apply: fn(dir: &Path, other: &Path) -> PathBuf,
}

fn middle_segment(dir: &Path) -> PathBuf {
    let segs = fx::segments(dir);
    segs[segs.len() / 2].clone()
}

const DAMAGES: &[Damage] = &[
    Damage { name: "torn tail", part: Part::Tail, apply: |dir, _| fx::tear_tail(dir).0 },
    Damage { name: "flipped byte in a sealed segment", part: Part::Log, apply: |dir, _| fx::flip_mid_log(dir).0 },
    Damage {
        name: "truncated sealed segment",
        part: Part::Log,
        apply: |dir, _| {
            let victim = middle_segment(dir);
            cut_to_half(&victim);
            victim
        },
    },
    Damage {
        name: "foreign segment",
        part: Part::Log,
        apply: |dir, other| {
            // The other store wrote the same LSNs into the same names, under its own log id.
            let victim = middle_segment(dir);
            fs::copy(other.join("wal").join(victim.file_name().unwrap()), &victim).unwrap();
            victim
        },
    },
    Damage {
        name: "missing sealed segment",
        part: Part::Log,
        apply: |dir, _| {
            let victim = middle_segment(dir);
            fs::remove_file(&victim).unwrap();
            // The gap is named by the segment that follows it.
            fx::segments(dir).into_iter().find(|s| s > &victim).unwrap()
        },
    },
    Damage { name: "garbled snapshot", part: Part::Snapshots, apply: |dir, _| fx::corrupt_newest_snapshot(dir) },
    Damage {
        name: "truncated snapshot",
        part: Part::Snapshots,
        apply: |dir, _| {
            let newest = fx::snapshots(dir).pop().unwrap();
            cut_to_half(&newest);
            newest
        },
    },
    Damage {
        name: "foreign snapshot",
        part: Part::Snapshots,
        apply: |dir, other| {
            let newest = fx::snapshots(dir).pop().unwrap();
            fs::copy(other.join("snapshots").join(newest.file_name().unwrap()), &newest).unwrap();
            newest
        },
    },
];

/// A data-reading command: its arguments around the data directory `d`
/// (and a scratch path `s` it may write outside it), and the parts it reads.
struct Reader {
    args: fn(d: &str, s: &str) -> Vec<String>,
    reads: &'static [Part],
}

fn v(args: &[&str]) -> Vec<String> {
    args.iter().map(|a| a.to_string()).collect()
}

const WHOLE: &[Part] = &[Part::Tail, Part::Log, Part::Snapshots];
const LOG: &[Part] = &[Part::Tail, Part::Log];

const READERS: &[Reader] = &[
    Reader { args: |d, _| v(&["inspect", d]), reads: WHOLE },
    Reader { args: |d, _| v(&["verify", d]), reads: WHOLE },
    Reader { args: |d, _| v(&["stats", d]), reads: WHOLE },
    Reader { args: |d, _| v(&["recover", d]), reads: WHOLE },
    Reader { args: |d, _| v(&["compact", d, "--before", "300"]), reads: WHOLE },
    // A backup reads a directory in use: the tail a process is writing is
    // copied as far as it reads, as that process's next open would keep it.
    Reader { args: |d, s| v(&["backup", d, s]), reads: &[Part::Log, Part::Snapshots] },
    Reader { args: |d, _| v(&["dump", d]), reads: LOG },
    Reader { args: |d, _| v(&["repair", d]), reads: LOG },
    Reader { args: |d, _| v(&["snapshot", "list", d]), reads: &[Part::Snapshots] },
    Reader { args: |d, _| v(&["snapshot", "verify", d]), reads: &[Part::Snapshots] },
    // The damaged snapshot is the newest: asked for by its LSN.
    Reader { args: |d, _| v(&["snapshot", "export", d, "--lsn", &newest_snapshot_lsn(d)]), reads: &[Part::Snapshots] },
    // A snapshot of a damaged log is refused, and none is written.
    Reader { args: |d, _| v(&["snapshot", "create", d]), reads: LOG },
];

/// The LSN of the newest snapshot in the data directory `d`, from its name.
fn newest_snapshot_lsn(d: &str) -> String {
    let newest = fx::snapshots(Path::new(d)).pop().expect("the fixture has snapshots");
    let name = newest.file_name().unwrap().to_str().unwrap();
    walden::snapshot::parse_snapshot_file_name(name).expect("a snapshot named by its LSN").0.to_string()
}

/// Runs `args`, expecting a problem found: exit 1, `file` named, and no
/// byte of `watched` changed. Returns what was wrong, if anything.
fn problem_found(case: &str, args: &[String], file: &Path, watched: &Path) -> Option<String> {
    let before: BTreeMap<PathBuf, Vec<u8>> = fx::contents(watched);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = walden(&args);
    let out = said(&o);
    let name = file.file_name().unwrap().to_str().unwrap();
    let mut wrong = Vec::new();
    if o.status.code() != Some(1) {
        wrong.push(format!("exits {:?}, not 1", o.status.code()));
    }
    if !out.contains(name) {
        wrong.push(format!("does not name {name}"));
    }
    if fx::contents(watched) != before {
        wrong.push(format!("changed {}", watched.display()));
    }
    (!wrong.is_empty()).then(|| format!("{case}: walden {args:?} {}\n{out}", wrong.join(", ")))
}

#[test]
fn every_data_reading_command_exits_1_and_names_the_file_for_every_damage() {
    let tmp = tempfile::tempdir().unwrap();
    let (healthy, other) = (tmp.path().join("healthy"), tmp.path().join("other"));
    fs::create_dir_all(&healthy).unwrap();
    fs::create_dir_all(&other).unwrap();
    let (healthy, other) = (fx::healthy(&healthy), fx::healthy(&other));
    let (mut cases, mut failed) = (0, Vec::new());
    for (i, damage) in DAMAGES.iter().enumerate() {
        let dir = tmp.path().join(format!("case-{i}"));
        fx::copy_dir(&healthy, &dir);
        let file = (damage.apply)(&dir, &other);
        for (j, reader) in READERS.iter().filter(|r| r.reads.contains(&damage.part)).enumerate() {
            let scratch = tmp.path().join(format!("scratch-{i}-{j}"));
            let args = (reader.args)(dir.to_str().unwrap(), scratch.to_str().unwrap());
            failed.extend(problem_found(damage.name, &args, &file, &dir));
            // A damaged snapshot is left out of a backup (exit 1); damage in the log stops it.
            if args[0] == "backup" && damage.part == Part::Log && scratch.join("backup-000001").exists() {
                failed.push(format!("{}: a backup was made of a damaged log", damage.name));
            }
            cases += 1;
        }
    }
    assert!(failed.is_empty(), "{} of {cases} cases fail:\n\n{}", failed.len(), failed.join("\n\n"));
    assert_eq!(cases, 8 + 4 * 9 + 3 * 9, "every reader ran on every damage it reads");
}

/// One kind of damage to a backup: it returns the file restore must name.
struct BackupDamage {
    name: &'static str,
    apply: fn(backup: &Path) -> PathBuf,
}

fn listed_segment(backup: &Path, index: usize) -> PathBuf {
    let mut segs: Vec<PathBuf> = fs::read_dir(backup.join("wal")).unwrap().map(|e| e.unwrap().path()).collect();
    segs.sort();
    segs[index].clone()
}

const BACKUP_DAMAGES: &[BackupDamage] = &[
    BackupDamage {
        name: "flipped byte in a segment",
        apply: |b| {
            let victim = listed_segment(b, 1);
            fx::flip_byte(&victim, 200);
            victim
        },
    },
    BackupDamage {
        name: "truncated segment",
        apply: |b| {
            let victim = listed_segment(b, 1);
            cut_to_half(&victim);
            victim
        },
    },
    BackupDamage {
        name: "missing segment",
        apply: |b| {
            let victim = listed_segment(b, 1);
            fs::remove_file(&victim).unwrap();
            victim
        },
    },
    BackupDamage {
        name: "missing snapshot",
        apply: |b| {
            let victim = fx::snapshots(b).pop().unwrap();
            fs::remove_file(&victim).unwrap();
            victim
        },
    },
    BackupDamage {
        name: "garbled snapshot",
        apply: |b| {
            let victim = fx::snapshots(b).pop().unwrap();
            fx::flip_byte(&victim, walden::snapshot::SNAPSHOT_HEADER_BYTES + 10);
            victim
        },
    },
    BackupDamage {
        name: "manifest not UTF-8",
        apply: |b| {
            let manifest = b.join(walden::backup::MANIFEST_NAME);
            let mut bytes = fs::read(&manifest).unwrap();
            bytes[3] = 0xff;
            fs::write(&manifest, bytes).unwrap();
            manifest
        },
    },
    BackupDamage {
        name: "truncated manifest",
        apply: |b| {
            let manifest = b.join(walden::backup::MANIFEST_NAME);
            cut_to_half(&manifest);
            manifest
        },
    },
];

/// A backup of [`fx::healthy`] in `root/backups/backup-000001`.
fn backup_of_healthy(root: &Path) -> PathBuf {
    fs::create_dir_all(root).unwrap();
    let data = fx::healthy(root);
    let dest = root.join("backups");
    let o = walden(&["backup", data.to_str().unwrap(), dest.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", said(&o));
    dest.join("backup-000001")
}

#[test]
fn restore_exits_1_names_the_file_and_writes_nothing_for_every_damage_to_a_backup() {
    let tmp = tempfile::tempdir().unwrap();
    for (i, damage) in BACKUP_DAMAGES.iter().enumerate() {
        let root = tmp.path().join(format!("case-{i}"));
        let backup = backup_of_healthy(&root);
        let file = (damage.apply)(&backup);
        let dest = root.join("restored");
        let args = v(&["restore", backup.to_str().unwrap(), dest.to_str().unwrap()]);
        if let Some(wrong) = problem_found(damage.name, &args, &file, &root.join("backups")) {
            panic!("{wrong}");
        }
        assert!(!dest.exists(), "{}: nothing is restored", damage.name);
        let leftovers: Vec<_> = fs::read_dir(&root).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(leftovers.len(), 2, "{}: no temporary directory is left: {leftovers:?}", damage.name);
    }
}

fn json_error(o: &Output) -> serde_json::Value {
    let stdout = String::from_utf8_lossy(&o.stdout);
    let last = stdout.lines().last().unwrap_or_else(|| panic!("a JSON error on stdout\n{}", said(o)));
    serde_json::from_str(last).unwrap_or_else(|e| panic!("{e}: {last}"))
}

#[test]
fn json_output_carries_the_class_of_an_error() {
    let tmp = tempfile::tempdir().unwrap();

    // Damage: a backup whose manifest is not UTF-8.
    let root = tmp.path().join("damage");
    let backup = backup_of_healthy(&root);
    let manifest = (BACKUP_DAMAGES.iter().find(|d| d.name == "manifest not UTF-8").unwrap().apply)(&backup);
    let o = walden(&["restore", backup.to_str().unwrap(), root.join("r").to_str().unwrap(), "--json"]);
    assert_eq!(o.status.code(), Some(1), "{}", said(&o));
    let e = json_error(&o);
    assert_eq!(e["class"], "damage", "{e}");
    assert_eq!(e["exit_code"], 1, "{e}");
    assert_eq!(e["file"], manifest.to_str().unwrap(), "{e}");
    assert!(e["error"].as_str().unwrap().contains("not UTF-8"), "{e}");

    // Damage: a backup missing a listed segment, named through the backups' directory.
    let root = tmp.path().join("missing");
    let backup = backup_of_healthy(&root);
    let victim = listed_segment(&backup, 1);
    fs::remove_file(&victim).unwrap();
    let o = walden(&["restore", root.join("backups").to_str().unwrap(), root.join("r").to_str().unwrap(), "--json"]);
    assert_eq!(o.status.code(), Some(1), "{}", said(&o));
    let e = json_error(&o);
    assert_eq!((e["class"].as_str(), e["file"].as_str()), (Some("damage"), victim.to_str()), "{e}");
    assert!(e["error"].as_str().unwrap().contains("missing"), "{e}");

    // Usage: a path that is not a walden directory; a destination that is not empty.
    let o = walden(&["verify", tmp.path().to_str().unwrap(), "--json"]);
    assert_eq!(o.status.code(), Some(2), "{}", said(&o));
    assert_eq!(json_error(&o)["class"], "usage");
    let o = walden(&["restore", backup.to_str().unwrap(), root.to_str().unwrap(), "--json"]);
    assert_eq!(o.status.code(), Some(2), "{}", said(&o));
    assert_eq!(json_error(&o)["class"], "usage");

    // Environment: a directory another process holds.
    let data = root.join("data");
    let holder = Store::open(&data, fx::options()).unwrap();
    let o = walden(&["snapshot", "create", data.to_str().unwrap(), "--json"]);
    assert_eq!(o.status.code(), Some(2), "{}", said(&o));
    let e = json_error(&o);
    assert_eq!(e["class"], "environment", "{e}");
    assert_eq!(e["exit_code"], 2, "{e}");
    drop(holder);

    // Damage found as a result rather than an error keeps its own JSON (verify's health).
    let (segment, _, _) = fx::flip_mid_log(&data);
    let o = walden(&["verify", data.to_str().unwrap(), "--json"]);
    assert_eq!(o.status.code(), Some(1), "{}", said(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["health"], "damaged", "{v}");
    assert!(v.to_string().contains(segment.to_str().unwrap()), "{v}");
}

#[test]
fn help_states_the_contract_with_its_classes() {
    let o = walden(&["--help"]);
    assert_eq!(o.status.code(), Some(0));
    let help = String::from_utf8_lossy(&o.stdout);
    for expected in
        ["Exit codes, kept by every command that reads data", "\"class\": damage (1), usage or environment (2)"]
    {
        assert!(help.contains(expected), "{expected:?} in\n{help}");
    }
}
