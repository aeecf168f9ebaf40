//! The `walden` binary's tests, one binary: `cargo test -p walden-cli --test cli`.
//!
//! Each module is one area (`cli_<area>`); the data directories they share
//! (healthy and damaged stores) are built by `tests/common/`.

#[path = "../common/mod.rs"]
mod common;

mod cli_binary;
mod cli_journal;
mod cli_library;
