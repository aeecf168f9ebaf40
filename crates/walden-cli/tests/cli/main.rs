//! The `walden` binary's tests, one binary: `cargo test -p walden-cli --test cli`.
//!
//! Each module is one area (`cli_<area>`); the data directories they share
//! (healthy and damaged stores) are built by `tests/common/`. `cli_bench`
//! runs the benchmarks on tiny workloads to check what they print.

#[path = "../common/mod.rs"]
mod common;

mod cli_bench;
mod cli_binary;
mod cli_exit_codes;
mod cli_follow;
mod cli_follow_changes;
mod cli_journal;
mod cli_library;
