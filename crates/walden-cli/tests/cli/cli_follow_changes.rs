//! `walden follow --store` and `--journal` as a process, on a directory
//! this test process holds open and writes: exactly the acknowledged puts
//! and deletes of the selected keys (and the matching journal entries),
//! each once, in order; SIGINT exits 0; the wrong kind of directory exits 2.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};
use walden::journal::{Journal, NewEntry, SignalType, Value};
use walden::{DurableJournal, FsyncMode, JournalOptions, Store, StoreOptions, WriteBatch};

fn follow(args: &[&str]) -> (Child, Receiver<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_walden"))
        .arg("follow")
        .args(args)
        .args(["--json", "--poll-ms", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (send, receive) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if send.send(line).is_err() {
                break;
            }
        }
    });
    (child, receive)
}

fn collect(lines: &Receiver<String>, count: usize) -> Vec<serde_json::Value> {
    let started = Instant::now();
    let mut out = Vec::new();
    while out.len() < count {
        assert!(started.elapsed() < Duration::from_secs(30), "printed {} of {count}: {out:?}", out.len());
        if let Ok(line) = lines.recv_timeout(Duration::from_millis(100)) {
            out.push(serde_json::from_str(&line).expect("one JSON object a line"));
        }
    }
    out
}

fn interrupt(mut child: Child, lines: &Receiver<String>) {
    // Nothing more than what was asked for.
    assert!(lines.recv_timeout(Duration::from_millis(300)).is_err(), "nothing extra was printed");
    let status = Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let exit = child.wait().unwrap();
    let stderr = std::io::read_to_string(child.stderr.take().unwrap()).unwrap();
    assert_eq!(exit.code(), Some(0), "SIGINT exits 0; stderr: {stderr}");
}

#[test]
fn follow_store_prints_each_put_and_delete_of_the_prefix_once_then_exits_0_on_sigint() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let mut options = StoreOptions::default();
    options.engine.wal.fsync = FsyncMode::Never;
    let store = Store::open(&dir, options).unwrap();
    store.put(b"k/before", b"0").unwrap();
    store.put(b"other/x", b"-").unwrap();
    let (child, lines) = follow(&[dir.to_str().unwrap(), "--store", "--prefix", "k/", "--from", "2"]);
    let mut expected = Vec::new();
    for i in 0..200u32 {
        let key = format!("k/{}", i % 7);
        if i % 10 == 9 {
            let mut batch = WriteBatch::default();
            batch.put(key.as_bytes(), b"batched").delete(b"k/0").put(b"other/y", b"skip");
            let end = store.write(&batch).unwrap().0;
            expected.push((end - 2, "put", key.clone(), Some("batched".to_string())));
            expected.push((end - 1, "delete", "k/0".to_string(), None));
        } else if i % 6 == 5 {
            let lsn = store.delete(key.as_bytes()).unwrap().0;
            expected.push((lsn, "delete", key, None));
        } else {
            let lsn = store.put(key.as_bytes(), i.to_string().as_bytes()).unwrap().0;
            expected.push((lsn, "put", key, Some(i.to_string())));
            store.put(b"other/z", b"skip").unwrap();
        }
    }
    let printed = collect(&lines, expected.len());
    interrupt(child, &lines);
    let got: Vec<_> = printed
        .iter()
        .map(|v| {
            let op = if v["op"] == "put" { "put" } else { "delete" };
            (
                v["lsn"].as_u64().unwrap(),
                op,
                v["key"].as_str().unwrap().to_string(),
                v["value"].as_str().map(String::from),
            )
        })
        .collect();
    assert_eq!(got, expected, "each put and delete of k/* from LSN 2 on, once, in order");
    assert!(printed.iter().all(|v| v["writer"] == "walden" && v["timestamp_us"].as_u64() > Some(0)));
    store.close().unwrap();
}

#[test]
fn follow_journal_prints_the_matching_entries_once_and_refuses_a_store_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("journal");
    let mut options = JournalOptions::default();
    options.engine.wal.fsync = FsyncMode::Always;
    let journal = DurableJournal::open(&dir, options).unwrap();
    let (child, lines) =
        follow(&[dir.to_str().unwrap(), "--journal", "--pattern", "/zone/1/**", "--type", "event,param"]);
    for i in 0..120i64 {
        let address = format!("/zone/{}/level", i % 3);
        let entry = match i % 3 {
            0 => NewEntry::publish(SignalType::Stream, "relay", &address, Value::Int(i)),
            1 if i % 2 == 0 => NewEntry::publish(SignalType::Event, "relay", &address, Value::Int(i)),
            _ => NewEntry::set("relay", &address, Value::Int(i)),
        };
        journal.append(entry).unwrap();
    }
    let want: Vec<_> = journal
        .since(0, usize::MAX)
        .unwrap()
        .into_iter()
        .filter(|e| e.address == "/zone/1/level" && e.signal_type != SignalType::Stream)
        .map(|e| (e.sequence, e.revision))
        .collect();
    assert_eq!(want.len(), 40);
    let printed = collect(&lines, want.len());
    interrupt(child, &lines);
    let got: Vec<_> = printed.iter().map(|v| (v["sequence"].as_u64().unwrap(), v["revision"].as_u64())).collect();
    assert_eq!(got, want, "the matching entries, once, in order, with their revisions");
    journal.close().unwrap();

    // A journal's directory followed as a store's: a usage error, exit 2.
    let out =
        Command::new(env!("CARGO_BIN_EXE_walden")).args(["follow", dir.to_str().unwrap(), "--store"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not a store operation"));
    // A malformed pattern is refused before anything is read.
    let out = Command::new(env!("CARGO_BIN_EXE_walden"))
        .args(["follow", dir.to_str().unwrap(), "--journal", "--pattern", "zone"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}
