//! The `walden` command line.
//!
//! `walden bench` compares walden's appends with the raw disk and with
//! SQLite, side by side in one process; see docs/BENCHMARKS.md.

mod bench;
mod engines;
mod latency;

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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Bench(args) => bench::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("walden: {e}");
            ExitCode::FAILURE
        }
    }
}
