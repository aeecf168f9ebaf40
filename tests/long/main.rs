//! The long integration tests, one binary: `cargo test --release --test long`.
//! Power loss at every I/O boundary (log, store, journal), real SIGKILLs,
//! every bit flipped, and I/O-error loops. Each takes seconds here;
//! `WALDEN_CRASH_SEEDS` and `WALDEN_KILL9_CYCLES` make the explorers and
//! the kill test run as long as you like.
//!
//! Each module is one area and scenario (`<area>_<scenario>`); helpers they
//! share live in `tests/common/`. Run one module with its name as a filter,
//! e.g. `cargo test --release --test long reliability_kill9:: -- --nocapture`.

#[path = "../common/mod.rs"]
mod common;

mod backup_restore;
mod journal_crash_explorer;
mod reliability_bit_rot;
mod reliability_io_errors;
mod reliability_kill9;
mod store_crash_explorer;
mod wal_crash_explorer;
