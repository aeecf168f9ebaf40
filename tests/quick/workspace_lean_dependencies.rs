//! The library stays lean: an application that embeds walden compiles only
//! what the engine needs. This runs `cargo tree -p walden -e normal` (the
//! library's normal dependencies, no features) and fails if any crate that
//! belongs to the CLI, the bench, the tests or the raft layer is among them.

use std::process::Command;

/// Crates an embedding application must never compile because of walden.
const FORBIDDEN: [&str; 11] = [
    "rusqlite",
    "libsqlite3-sys",
    "clap",
    "indicatif",
    "serde_json",
    "humantime",
    "tempfile",
    "tokio",
    "openraft",
    "criterion",
    "proptest",
];

/// The package names in `cargo tree -p walden -e normal` with `args` added.
fn library_tree(args: &[&str]) -> Vec<String> {
    let output = Command::new(env!("CARGO"))
        .args(["tree", "-p", "walden", "-e", "normal", "--prefix", "none", "--offline"])
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run cargo tree");
    assert!(output.status.success(), "cargo tree failed: {}", String::from_utf8_lossy(&output.stderr));
    let text = String::from_utf8(output.stdout).expect("cargo tree prints UTF-8");
    let mut names: Vec<String> =
        text.lines().filter_map(|line| line.split_whitespace().next()).map(str::to_owned).collect();
    names.sort();
    names.dedup();
    names
}

#[test]
fn the_librarys_normal_dependencies_hold_no_cli_bench_or_test_crate() {
    for features in [&[][..], &["--features", "serde"][..]] {
        let names = library_tree(features);
        assert!(names.iter().any(|n| n == "walden"), "cargo tree names the library itself: {names:?}");
        assert!(names.iter().any(|n| n == "zstd"), "the engine's own dependencies are listed: {names:?}");
        let heavy: Vec<&String> = names.iter().filter(|n| FORBIDDEN.contains(&n.as_str())).collect();
        assert!(heavy.is_empty(), "walden {features:?} depends on {heavy:?}: move them to the crate that needs them");
    }
}

#[test]
fn serde_is_compiled_only_when_asked_for() {
    assert!(!library_tree(&[]).iter().any(|n| n == "serde"), "serde without the `serde` feature");
    assert!(library_tree(&["--features", "serde"]).iter().any(|n| n == "serde"), "serde with the feature");
}
