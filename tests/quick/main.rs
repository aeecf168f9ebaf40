//! The quick integration tests, one binary: `cargo test --release --test quick`.
//!
//! Each module is one area and scenario (`<area>_<scenario>`); helpers they
//! share live in `tests/common/`. Run one module with its name as a filter,
//! e.g. `cargo test --release --test quick wal_recovery::`. The long crash,
//! kill and bit-rot runs are the other binary, `tests/long/`.

#[path = "../common/mod.rs"]
mod common;

mod admin_cut_from;
mod engine_commit_semantics;
mod engine_recovery;
mod engine_stalls;
mod fuzz_corpus;
mod journal_conformance;
mod journal_durable;
mod journal_subscribe;
mod lock_first;
mod snapshot_files;
mod snapshot_origin;
mod store_basics;
mod store_load;
mod store_watch;
mod wal_async;
mod wal_basics;
mod wal_concurrency;
mod wal_follow;
mod wal_follow_shared;
mod wal_recovery;
mod workspace_lean_dependencies;
