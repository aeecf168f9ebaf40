//! `walden backup` and `walden restore`: argument parsing, output and exit
//! codes around `walden::backup`.
//!
//! Exit codes (`cli_exit.rs`): 0 done; 1 a problem found (the backup was
//! made but a source snapshot was left out as damaged or not this store's;
//! or the source or the backup is damaged, missing a file or unreadable as
//! text, and nothing was made); 2 a usage error or I/O failing for a reason
//! outside the data.

use crate::cli_exit::{fail, fail_with};
use crate::cli_progress::Bars;
use crate::cli_render::bytes;
use clap::Args;
use serde::Serialize;
use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use walden::admin::{self, DataDir, LogContent, NoProgress, Target};
use walden::backup::{self, BackupOptions, BackupReport, RestoreReport};
use walden::io::RealFs;
use walden::journal::JournalState;
use walden::store::KvState;
use walden::ErrorClass;

#[derive(Args)]
pub struct BackupArgs {
    /// The data directory (a store's, engine's or journal's); a running process may hold it and keep writing.
    #[arg(value_name = "DATA_DIR")]
    pub data: PathBuf,
    /// Where backups go: each run adds DEST/backup-NNNNNN, sharing unchanged files with the previous one.
    #[arg(value_name = "DEST")]
    pub dest: PathBuf,
    /// Keep only the newest N backups in DEST (older ones are removed after this one succeeds).
    #[arg(long, value_name = "N")]
    pub keep: Option<usize>,
    /// Print one JSON document instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct RestoreArgs {
    /// A backup (DEST/backup-NNNNNN), or a directory of backups (its newest is restored).
    #[arg(value_name = "BACKUP")]
    pub backup: PathBuf,
    /// The directory to create; it must not exist or must be empty.
    #[arg(value_name = "DEST")]
    pub dest: PathBuf,
    /// Restore the state as of this LSN (`1200`) or time (`2026-12-01T18:00:00Z`) instead of the newest.
    #[arg(long, value_name = "LSN|TIME", value_parser = crate::cli_admin::parse_target)]
    pub to: Option<Target>,
    /// Print one JSON document instead of text.
    #[arg(long)]
    pub json: bool,
}

fn finish(written: io::Result<()>) -> Option<ExitCode> {
    match written.and_then(|()| io::stdout().flush()) {
        Ok(()) => None,
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Some(ExitCode::SUCCESS),
        Err(e) => Some(fail_with(ErrorClass::Environment, &format!("writing the output: {e}"), None, false)),
    }
}

pub fn run_backup(a: &BackupArgs) -> ExitCode {
    let data = match DataDir::locate(&RealFs, &a.data) {
        Ok(d) => d,
        Err(e) => return fail(&e, a.json),
    };
    let options = BackupOptions { keep: a.keep };
    let report = match backup::backup_data_dir(&RealFs, &data, &a.dest, &options, &mut Bars::new(a.json)) {
        Ok(r) => r,
        Err(e) => return fail(&e, a.json),
    };
    let mut out = io::stdout().lock();
    let written = if a.json {
        serde_json::to_writer_pretty(&mut out, &report).map_err(io::Error::from).and_then(|()| writeln!(out))
    } else {
        render_backup(&mut out, &report)
    };
    if let Some(code) = finish(written) {
        return code;
    }
    if report.snapshots_left_out.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn render_backup(out: &mut dyn Write, r: &BackupReport) -> io::Result<()> {
    let m = &r.manifest;
    writeln!(
        out,
        "backup {} of {} written to {} in {:.2} s",
        m.id,
        m.source,
        r.dir.display(),
        r.duration.as_secs_f64()
    )?;
    writeln!(
        out,
        "  log        LSNs {}..={} in {} segments (log id {:016x})",
        m.first_lsn,
        m.last_lsn,
        m.segments.len(),
        m.log_id
    )?;
    let names: Vec<_> = m.snapshots.iter().map(|s| s.path.trim_start_matches("snapshots/")).collect();
    writeln!(out, "  snapshots  {}", if names.is_empty() { "none".to_owned() } else { names.join(", ") })?;
    writeln!(out, "  copied     {} files, {}", r.files_copied, bytes(r.bytes_copied))?;
    writeln!(
        out,
        "  shared     {} files, {} (hard links to the previous backup)",
        r.files_linked,
        bytes(r.bytes_linked)
    )?;
    for (path, why) in &r.snapshots_left_out {
        writeln!(out, "  left out   {}: {why}", path.display())?;
    }
    for old in &r.pruned {
        writeln!(out, "  pruned     {}", old.display())?;
    }
    if r.attempts > 1 {
        writeln!(out, "  attempts   {} (the source's retention raced the backup)", r.attempts)?;
    }
    writeln!(out, "verified: every file copied was read back, and every record and snapshot in it checked")
}

#[derive(Serialize)]
struct Restored<'a> {
    #[serde(flatten)]
    report: &'a RestoreReport,
    /// A store's keys, or a journal's addresses.
    keys: usize,
    content: &'static str,
}

/// Whether the backup holds a journal's log (its first record decodes as a
/// journal record, as `walden dump` decides) rather than a store's.
fn holds_journal(backup: &std::path::Path) -> walden::Result<bool> {
    let dir = backup::locate_backup(backup)?;
    let log = admin::scan_log(&RealFs, &dir.join("wal"), &mut NoProgress)?;
    Ok(admin::log_content(&RealFs, &log, &mut NoProgress)? == LogContent::Journal)
}

pub fn run_restore(a: &RestoreArgs) -> ExitCode {
    let mut bars = Bars::new(a.json);
    let restored = holds_journal(&a.backup).and_then(|journal| {
        if journal {
            let (report, state) = backup::restore::<JournalState>(&a.backup, &a.dest, a.to, &mut bars)?;
            Ok((report, state.params().count(), "journal"))
        } else {
            let (report, state) = backup::restore::<KvState>(&a.backup, &a.dest, a.to, &mut bars)?;
            Ok((report, state.len(), "store"))
        }
    });
    let (report, keys, content) = match restored {
        Ok(done) => done,
        Err(e) => return fail(&e, a.json),
    };
    let mut out = io::stdout().lock();
    let written = if a.json {
        let restored = Restored { report: &report, keys, content };
        serde_json::to_writer_pretty(&mut out, &restored).map_err(io::Error::from).and_then(|()| writeln!(out))
    } else {
        render_restore(&mut out, &report, keys, content)
    };
    finish(written).unwrap_or(ExitCode::SUCCESS)
}

fn render_restore(out: &mut dyn Write, r: &RestoreReport, keys: usize, content: &str) -> io::Result<()> {
    writeln!(
        out,
        "restored backup {} ({}) into {} in {:.2} s",
        r.backup_id,
        r.backup.display(),
        r.dest.display(),
        r.duration.as_secs_f64()
    )?;
    let asked = match r.requested {
        Some(Target::Lsn(lsn)) if lsn != r.last_lsn => {
            format!(" (asked for LSN {lsn}: inside a batch, which is restored whole or not at all)")
        }
        Some(Target::Lsn(_)) => " (as asked)".to_owned(),
        Some(Target::Time(us)) => format!(" (the last write at or before {})", crate::cli_render::time(us)),
        Some(_) | None => String::new(),
    };
    writeln!(out, "  LSNs      {}..={}{asked}", r.first_lsn, r.last_lsn)?;
    match content {
        "journal" => writeln!(out, "  addresses {keys} (a journal)")?,
        _ => writeln!(out, "  keys      {keys}")?,
    }
    writeln!(out, "  snapshot  {}", r.snapshot_used.as_deref().unwrap_or("none (the log from LSN 1)"))?;
    writeln!(out, "  files     {}, {}", r.files, bytes(r.bytes))?;
    writeln!(out, "verified: every checksum of the backup before writing, and the restored directory before the rename")
}
