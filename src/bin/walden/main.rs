//! The `walden` command line.
//!
//! `walden bench` compares walden's appends with the raw disk and with
//! SQLite, side by side in one process; see docs/BENCHMARKS.md.

mod bench;
mod engines;
mod journal_bench;
mod latency;
mod recovery_bench;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "walden", version, about = "walden, a write-ahead-log storage engine")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Benchmarks appends against the raw disk and SQLite and prints a table.
    Bench(bench::BenchArgs),
    /// Benchmarks the store's recovery and snapshots against loading SQLite into a map.
    BenchRecovery(recovery_bench::RecoveryArgs),
    /// Benchmarks the journal's appends and time-range queries against a SQLite journal table.
    BenchJournal(journal_bench::JournalArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Bench(args) => bench::run(&args),
        Command::BenchRecovery(args) => recovery_bench::run(&args),
        Command::BenchJournal(args) => journal_bench::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("walden: {e}");
            ExitCode::FAILURE
        }
    }
}
