//! The layering of docs/ARCHITECTURE.md, as data, and a test that the
//! imports keep to it: each module of the crate, and each file of
//! `admin/`, names only the modules its row allows. A module that reached
//! up (the log layer decoding store payloads, `admin/dump.rs` and
//! `admin/log.rs` importing each other) fails here.

use std::collections::BTreeSet;
use std::path::Path;

/// Each top-level module and the crate modules it may name (`error` and
/// `lsn` are allowed everywhere).
const CRATE_LAYERS: &[(&str, &[&str])] = &[
    ("format", &[]),
    ("io", &[]),
    ("wal", &["format", "io"]),
    ("snapshot", &["format", "io", "wal"]),
    ("engine", &["format", "io", "wal", "snapshot"]),
    ("store", &["format", "io", "wal", "snapshot", "engine"]),
    ("journal", &["format", "io", "wal", "snapshot", "engine"]),
    ("admin", &["format", "io", "wal", "snapshot", "engine", "store", "journal"]),
    ("backup", &["format", "io", "wal", "snapshot", "engine", "store", "journal", "admin"]),
];

/// Each file of `admin/` and the sibling modules it may name.
const ADMIN_LAYERS: &[(&str, &[&str])] = &[
    ("store_view", &[]),
    ("log", &["store_view"]),
    ("snapshots", &["log"]),
    ("range", &["log"]),
    ("examine", &["log", "snapshots"]),
    ("dump", &["log", "range", "store_view"]),
    ("follow", &["range"]),
    ("journal", &["log", "range", "store_view"]),
    ("recover", &["journal", "log", "range", "snapshots", "store_view"]),
    ("repair", &["examine", "log", "range", "recover", "snapshots"]),
];

/// The code of `path` (and of the files under it, for a directory),
/// comment lines left out.
fn code_of(path: &Path) -> String {
    let mut out = String::new();
    if path.is_dir() {
        for entry in std::fs::read_dir(path).unwrap() {
            out += &code_of(&entry.unwrap().path());
        }
    } else if path.extension().is_some_and(|e| e == "rs") {
        for line in std::fs::read_to_string(path).unwrap().lines() {
            if !line.trim_start().starts_with("//") {
                out += line;
                out += "\n";
            }
        }
    }
    out
}

/// The module names `code` reaches through `prefix` (`crate::` or
/// `super::`): `prefix name::...`, and each `name::...` inside a
/// `prefix {...}` group (nested groups included).
fn modules_named(code: &str, prefix: &str) -> BTreeSet<String> {
    fn leading_module(path: &str) -> Option<String> {
        let name: String =
            path.chars().take_while(|&c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_').collect();
        (!name.is_empty() && path[name.len()..].starts_with("::")).then_some(name)
    }
    let mut names = BTreeSet::new();
    for (at, _) in code.match_indices(prefix) {
        let rest = &code[at + prefix.len()..];
        let Some(group) = rest.strip_prefix('{') else {
            names.extend(leading_module(rest));
            continue;
        };
        // The group's top-level items: split at commas outside nested braces.
        let (mut depth, mut item_start) = (0usize, 0usize);
        for (i, c) in group.char_indices() {
            match c {
                '{' => depth += 1,
                '}' if depth == 0 => {
                    names.extend(leading_module(group[item_start..i].trim_start()));
                    break;
                }
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    names.extend(leading_module(group[item_start..i].trim_start()));
                    item_start = i + 1;
                }
                _ => {}
            }
        }
    }
    names
}

fn check(dir: &Path, rows: &[(&str, &[&str])], prefix: &str) -> Vec<String> {
    let known: BTreeSet<&str> = rows.iter().map(|(name, _)| *name).collect();
    let mut wrong = Vec::new();
    for (name, allowed) in rows {
        let file = dir.join(format!("{name}.rs"));
        let path = if file.exists() { file } else { dir.join(name) };
        let code = code_of(&path);
        assert!(!code.is_empty(), "{} holds code", path.display());
        for used in modules_named(&code, prefix) {
            let used = used.as_str();
            if used != *name && known.contains(used) && !allowed.contains(&used) {
                wrong.push(format!("{name} names {prefix}{used}"));
            }
        }
    }
    wrong
}

#[test]
fn imports_run_down_the_layers() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let wrong = check(&src, CRATE_LAYERS, "crate::");
    assert!(wrong.is_empty(), "imports against the layering: {wrong:?}");
    let wrong = check(&src.join("admin"), ADMIN_LAYERS, "super::");
    assert!(wrong.is_empty(), "admin imports against its order: {wrong:?}");
}

#[test]
fn the_import_finder_sees_paths_and_groups() {
    let code = "use crate::wal::{Wal, segment::X};\nuse crate::{io::{Vfs, VfsFile}, store::Entry, Lsn};\nlet x = crate::journal::now_us();\nuse crate::{Error, admin::hex};";
    let found: Vec<String> = modules_named(code, "crate::").into_iter().collect();
    assert_eq!(found, ["admin", "io", "journal", "store", "wal"]);
    let wrong = |rows: &[(&str, &[&str])], code: &str| {
        let dir = std::env::temp_dir().join(format!("walden-layers-{}-{}", std::process::id(), rows.len()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("wal.rs"), code).unwrap();
        std::fs::write(dir.join("store.rs"), "pub struct Entry;").unwrap();
        let out = check(&dir, rows, "crate::");
        std::fs::remove_dir_all(&dir).unwrap();
        out
    };
    let rows: &[(&str, &[&str])] = &[("wal", &[]), ("store", &["wal"])];
    assert_eq!(wrong(rows, "use crate::store::Entry;"), ["wal names crate::store"]);
    assert!(wrong(rows, "// a comment about crate::store::Entry\nfn f() {}").is_empty());
}
