//! The `walden` command line.
//!
//! `walden bench` compares walden's appends with the raw disk and with
//! SQLite, side by side in one process; see docs/BENCHMARKS.md. The
//! recovery commands (`inspect`, `verify`, `dump`, `recover`, `repair`,
//! `snapshot`, `compact`, `stats`) are in `cli_admin.rs`; `walden follow`
//! is in `cli_follow.rs`.

mod backup_bench;
mod bench;
mod bench_sections;
mod chart;
mod cli_admin;
mod cli_backup;
mod cli_exit;
mod cli_follow;
mod cli_progress;
mod cli_render;
mod engines;
mod follow_bench;
mod journal_bench;
mod latency;
mod puts_bench;
mod recovery_bench;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "walden",
    version,
    about = "walden, a write-ahead-log storage engine",
    after_help = "Exit codes, kept by every command that reads data: 0 healthy or done; 1 a problem found in \
                  the data (a file damaged, truncated, missing though listed, unreadable as text, foreign or \
                  inconsistent; the message names it), or a dry run that would change something; 2 a usage \
                  error, or I/O that failed for a reason outside the data (permission denied, a full disk, a \
                  directory in use). With --json, an error is also printed on stdout as one JSON object with its \
                  \"class\": damage (1), usage or environment (2). inspect, verify, dump, recover and backup \
                  never change the data directory; repair, compact and snapshot prune change it only with \
                  --apply, and refuse a directory another process holds."
)]
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
    #[command(flatten)]
    Admin(cli_admin::AdminCommand),
    /// Benchmarks the journal's appends and time-range queries against a SQLite journal table.
    BenchJournal(journal_bench::JournalArgs),
    /// Backs up a data directory, even one a running process holds, into DEST/backup-NNNNNN.
    ///
    /// Sealed segments and snapshots the previous backup in DEST has already
    /// are shared by hard links; the rest is copied, every record and
    /// snapshot copied is checked, and the backup gets its final name only
    /// then. Never changes the data directory and takes no lock there.
    Backup(cli_backup::BackupArgs),
    /// Restores a backup into a new directory, after verifying every checksum.
    ///
    /// Refuses a destination that exists and is not empty. Writes under a
    /// temporary name beside DEST, checks the result, then renames it into
    /// place. --to restores the state as of an LSN or a time.
    Restore(cli_backup::RestoreArgs),
    /// Prints a log's records as they become readable, like `tail -f`, even while another process writes it.
    ///
    /// Read-only and without the directory's lock: segment files are opened
    /// read-only and polled with pread every --poll-ms (5 ms by default). A
    /// record is printed once its batch is complete and its checksum holds,
    /// each LSN once: as "LSN<TAB>LENGTH<TAB>payload" (quoted, escaped text,
    /// or hex: for bytes that are not UTF-8), or with --json one object a
    /// line. If the writer restarts after a crash and an LSN already printed
    /// comes back with other bytes, that is said on stderr. Stops on Ctrl-C
    /// (SIGINT) or SIGTERM with exit code 0. --store prints a store's puts
    /// and deletes (--prefix), --journal a journal's entries (--pattern,
    /// --type), decoded.
    Follow(cli_follow::FollowArgs),
    /// Benchmarks `walden backup` of a data directory against `cp -r`, and an incremental backup.
    BenchBackup(backup_bench::BackupBenchArgs),
    /// Benchmarks store puts with 1, 16 and 64 writers in each fsync mode, next to the log's own appends.
    BenchPuts(puts_bench::PutsArgs),
    /// Benchmarks appends with 0, 1 and 8 followers, and delivery latency to a follower in-process and to `walden follow`.
    BenchFollow(follow_bench::FollowBenchArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Bench(args) => bench::run(&args),
        Command::BenchRecovery(args) => recovery_bench::run(&args),
        Command::Admin(command) => return cli_admin::run(command),
        Command::BenchJournal(args) => journal_bench::run(&args),
        Command::Backup(args) => return cli_backup::run_backup(&args),
        Command::Restore(args) => return cli_backup::run_restore(&args),
        Command::Follow(args) => return cli_follow::run(&args),
        Command::BenchBackup(args) => backup_bench::run(&args),
        Command::BenchPuts(args) => puts_bench::run(&args),
        Command::BenchFollow(args) => follow_bench::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("walden: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_command_line_definition_is_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
