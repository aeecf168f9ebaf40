//! The recovery commands (`inspect`, `verify`, `dump`, `recover`, `repair`,
//! `snapshot`, `compact`, `stats`): argument parsing and exit codes. Every
//! command is one call into `walden::admin`; `cli_render.rs` prints the
//! result for people, `--json` prints it for machines.
//!
//! Exit codes: 0 healthy or done, 1 a problem found (or a dry run that
//! would change something), 2 a usage error or I/O failing for a reason
//! outside the data; an error's code is `cli_exit.rs`'s to decide. A closed
//! pipe (`walden dump DIR | head`) ends the command quietly with 0.

use crate::cli_exit::{fail, fail_with};
use crate::cli_progress::Bars;
use crate::cli_render as render;
use clap::{Args, Subcommand, ValueEnum};
use serde::Serialize;
use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};
use walden::admin::{self, DataDir, DumpOptions, Health, JournalFilter, LogContent, Target};
use walden::io::RealFs;
use walden::journal::{JournalOptions, Pattern, SignalType, SignalTypes};
use walden::store::KvState;
use walden::{ErrorClass, Lsn, RecoveryMode};

#[derive(Subcommand)]
pub enum AdminCommand {
    /// Shows segments, snapshots, the recoverable LSN range and a one-line health verdict.
    Inspect(Common),
    /// Checks every record and snapshot checksum and the chain between them; says where damage is.
    ///
    /// A torn tail (what a crash leaves; opening cuts it) is told apart from
    /// corruption in the middle of the log, which is named by file, offset and LSN.
    /// Exits 0 if healthy, 1 if anything needs attention. It checks the bytes,
    /// not what they mean: whether the state machine accepts every record is
    /// what `walden recover` checks, by replaying them.
    Verify(Common),
    /// Prints the records in a range as text, JSON lines, or hex of the raw frames.
    ///
    /// Store operations and journal entries are decoded. A directory is taken
    /// for a journal's when its first log record decodes as a journal record
    /// (the journal writes no marker file); then each entry shows its
    /// sequence, time, author, address, signal type, op, value and revision,
    /// --from/--to times are the entries' timestamps, and --pattern/--type
    /// filter the entries. On a store's directory --pattern and --type are an
    /// error (exit 2).
    Dump(DumpArgs),
    /// Shows what opening the directory would do, without doing it; or writes a point-in-time state.
    ///
    /// Without --to: a read-only dry run that prints the recovery report an
    /// open would produce (the snapshot used, those skipped and why, records
    /// replayed, bytes that would be cut), replaying the log into the state
    /// machine its first record names (a journal's or a store's). A record
    /// that state machine refuses is named by file, offset, LSN and reason,
    /// with what can be done (exit 1). With --to and --out: rebuilds the
    /// store as of that LSN or time and writes it as a new snapshot into the
    /// --out directory; the data directory is not touched.
    Recover(RecoverArgs),
    /// Cuts a torn tail, or with --cut-from the log from an LSN on, into quarantine files (a dry run unless --apply).
    ///
    /// Every byte removed is first copied into a synced
    /// `{segment}.quarantine-*` file beside the segment; nothing is deleted.
    /// Corruption in the middle of the log is cut only with --salvage, which
    /// keeps the longest valid prefix and moves everything after it aside.
    /// --cut-from LSN moves that record and every later one aside the same
    /// way (for a record the state machine refuses: see `walden recover`);
    /// it refuses an LSN the log does not hold, one inside a batch, and one a
    /// kept snapshot covers.
    Repair(RepairArgs),
    /// Lists, creates, verifies, prunes or exports snapshots.
    #[command(subcommand)]
    Snapshot(SnapshotCommand),
    /// Removes sealed log segments below an LSN, or journal entries older than an age (dry run unless --apply).
    ///
    /// --before LSN (a store's or bare log's directory) removes sealed
    /// segments, never past what the oldest good snapshot needs.
    /// --older-than AGE (a journal's directory) counts exactly the entries with
    /// a timestamp before now - AGE, read-only; with --apply it opens the
    /// journal (taking its lock) and runs the journal's own compaction, which
    /// hides those entries from every query at once and frees their segments
    /// only when no kept snapshot needs them any more.
    Compact(CompactArgs),
    /// Prints counters of the log: records, bytes, segments, average record size, time span.
    Stats(Common),
}

/// What every recovery command takes.
#[derive(Args)]
pub struct Common {
    /// The data directory: a store's or engine's (holding wal/ and snapshots/), or a bare log's.
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
    /// Print one JSON document (JSON lines for dump) instead of text, for machines.
    #[arg(long)]
    pub json: bool,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum DumpFormat {
    /// One readable line per record; store operations are decoded.
    Text,
    /// One JSON object per record.
    Json,
    /// The raw frame (header, payload, padding) of each record in hex.
    Hex,
}

#[derive(Args)]
pub struct DumpArgs {
    #[command(flatten)]
    pub common: Common,
    /// First record: an LSN (`120`) or a time (`2026-12-01T18:00:00Z`).
    #[arg(long, value_name = "LSN|TIME", value_parser = parse_target)]
    pub from: Option<Target>,
    /// Last record: an LSN, or a time (stops at the first store write or journal entry after it).
    #[arg(long, value_name = "LSN|TIME", value_parser = parse_target)]
    pub to: Option<Target>,
    /// Print at most N records.
    #[arg(long, value_name = "N")]
    pub limit: Option<u64>,
    /// Output format (--json means --format json).
    #[arg(long, value_enum, default_value = "text")]
    pub format: DumpFormat,
    /// Only journal entries whose address matches (`/lights/*` one segment, `/lights/**` any depth, `/**` all).
    #[arg(long, value_name = "PATTERN")]
    pub pattern: Option<String>,
    /// Only journal entries of these signal types (param, event, stream, gesture, timeline; comma-separated).
    #[arg(long = "type", value_name = "TYPE")]
    pub entry_type: Option<String>,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum Mode {
    /// Cut a torn tail only (the default of every open).
    TolerateTornTail,
    /// Keep the longest valid prefix, moving everything after the first damage aside.
    PointInTime,
    /// Refuse any damage.
    AbsoluteConsistency,
}

impl From<Mode> for RecoveryMode {
    fn from(m: Mode) -> RecoveryMode {
        match m {
            Mode::TolerateTornTail => RecoveryMode::TolerateTornTail,
            Mode::PointInTime => RecoveryMode::PointInTime,
            Mode::AbsoluteConsistency => RecoveryMode::AbsoluteConsistency,
        }
    }
}

#[derive(Args)]
pub struct RecoverArgs {
    #[command(flatten)]
    pub common: Common,
    /// The recovery mode to simulate.
    #[arg(long, value_enum, default_value = "tolerate-torn-tail")]
    pub mode: Mode,
    /// Rebuild the store as of this LSN or time (needs --out).
    #[arg(long, value_name = "LSN|TIME", value_parser = parse_target, requires = "out")]
    pub to: Option<Target>,
    /// Where --to writes its snapshot: a directory outside the data directory's wal/ and snapshots/.
    #[arg(long, value_name = "DIR", requires = "to")]
    pub out: Option<PathBuf>,
}

#[derive(Args)]
pub struct RepairArgs {
    #[command(flatten)]
    pub common: Common,
    /// Change the directory; without it, only print what would be done.
    #[arg(long)]
    pub apply: bool,
    /// Also cut corruption in the middle of the log: keep the valid prefix, move the rest aside.
    #[arg(long)]
    pub salvage: bool,
    /// Move the record at this LSN and every later one aside; the log keeps LSNs up to LSN - 1.
    #[arg(long, value_name = "LSN", conflicts_with = "salvage")]
    pub cut_from: Option<u64>,
}

#[derive(Subcommand)]
pub enum SnapshotCommand {
    /// Lists the snapshots with their LSN, size, compression ratio, age and state.
    List(Common),
    /// Writes a snapshot of the store at the log's last record into the directory's snapshots/.
    Create(Common),
    /// Checks every snapshot's checksum and origin; exits 1 if any is bad or not this store's.
    Verify(Common),
    /// Deletes all but the newest N good snapshots (a dry run unless --apply; bad ones are left alone).
    Prune(PruneArgs),
    /// Writes a snapshot's contents (every key and entry) as JSON to stdout.
    Export(ExportArgs),
}

#[derive(Args)]
pub struct PruneArgs {
    #[command(flatten)]
    pub common: Common,
    /// How many good snapshots to keep (at least 1).
    #[arg(long, value_name = "N")]
    pub keep: usize,
    /// Delete; without it, only print what would go.
    #[arg(long)]
    pub apply: bool,
}

#[derive(Args)]
pub struct ExportArgs {
    /// The data directory.
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
    /// Accepted for symmetry with the other commands: export always prints JSON.
    #[arg(long)]
    pub json: bool,
    /// The snapshot at this LSN (default: the newest good one).
    #[arg(long, value_name = "LSN")]
    pub lsn: Option<u64>,
}

#[derive(Args)]
pub struct CompactArgs {
    #[command(flatten)]
    pub common: Common,
    /// Remove sealed segments whose records all lie below this LSN.
    #[arg(long, value_name = "LSN", required_unless_present = "older_than", conflicts_with = "older_than")]
    pub before: Option<u64>,
    /// A journal's directory: remove the entries older than this age (`7d`, `12h`, `1h30m`).
    #[arg(long, value_name = "AGE")]
    pub older_than: Option<String>,
    /// Remove; without it, only print what would go.
    #[arg(long)]
    pub apply: bool,
}

/// An integer is an LSN; anything else must be an RFC 3339 time.
pub fn parse_target(s: &str) -> Result<Target, String> {
    if let Ok(lsn) = s.parse::<u64>() {
        return Ok(Target::Lsn(Lsn(lsn)));
    }
    let time = humantime::parse_rfc3339_weak(s)
        .map_err(|e| format!("`{s}` is neither an LSN nor an RFC 3339 time like 2026-12-01T18:00:00Z ({e})"))?;
    let us = time.duration_since(UNIX_EPOCH).map_err(|_| format!("`{s}` is before 1970"))?.as_micros();
    Ok(Target::Time(us as u64))
}

/// Why a command could not do its work.
enum Failure {
    /// A library error: I/O, a bad directory, a refused argument.
    Walden(walden::Error),
    /// Writing the output failed.
    Output(io::Error),
    /// An argument that does not fit the directory.
    Usage(String),
}

impl From<walden::Error> for Failure {
    fn from(e: walden::Error) -> Self {
        Failure::Walden(e)
    }
}

impl From<io::Error> for Failure {
    fn from(e: io::Error) -> Self {
        Failure::Output(e)
    }
}

impl From<serde_json::Error> for Failure {
    fn from(e: serde_json::Error) -> Self {
        Failure::Output(e.into())
    }
}

type Outcome = Result<ExitCode, Failure>;

const NOT_JOURNAL: &str = "holds store operations, not journal entries";

/// Runs a recovery command and turns its outcome into an exit code.
pub fn run(command: AdminCommand) -> ExitCode {
    let json = command.json();
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    let result = dispatch(command, &mut out).and_then(|code| {
        out.flush()?;
        Ok(code)
    });
    match result {
        Ok(code) => code,
        Err(Failure::Output(e)) if e.kind() == io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(Failure::Output(e)) => fail_with(ErrorClass::Environment, &format!("writing the output: {e}"), None, false),
        Err(Failure::Walden(e)) => {
            drop(out.flush());
            fail(&e, json)
        }
        Err(Failure::Usage(e)) => {
            drop(out.flush());
            fail_with(ErrorClass::Usage, &e, None, json)
        }
    }
}

impl AdminCommand {
    /// Whether the command was asked for JSON (`snapshot export` always prints it).
    fn json(&self) -> bool {
        match self {
            AdminCommand::Inspect(c) | AdminCommand::Verify(c) | AdminCommand::Stats(c) => c.json,
            AdminCommand::Dump(a) => a.common.json || matches!(a.format, DumpFormat::Json),
            AdminCommand::Recover(a) => a.common.json,
            AdminCommand::Repair(a) => a.common.json,
            AdminCommand::Compact(a) => a.common.json,
            AdminCommand::Snapshot(
                SnapshotCommand::List(c) | SnapshotCommand::Create(c) | SnapshotCommand::Verify(c),
            ) => c.json,
            AdminCommand::Snapshot(SnapshotCommand::Prune(p)) => p.common.json,
            AdminCommand::Snapshot(SnapshotCommand::Export(_)) => true,
        }
    }
}

fn locate(common: &Common) -> Result<DataDir, Failure> {
    Ok(DataDir::locate(&RealFs, &common.dir)?)
}

fn bars(json: bool) -> Bars {
    Bars::new(json)
}

fn json_out(out: &mut dyn Write, value: &impl Serialize) -> Result<(), Failure> {
    serde_json::to_writer_pretty(&mut *out, value)?;
    writeln!(out)?;
    Ok(())
}

fn code(ok: bool) -> ExitCode {
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

pub fn now_unix_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64)
}

fn dispatch(command: AdminCommand, out: &mut dyn Write) -> Outcome {
    match command {
        AdminCommand::Inspect(c) => {
            let exam = admin::examine(&RealFs, &locate(&c)?, &mut bars(c.json))?;
            if c.json {
                json_out(out, &exam)?
            } else {
                render::inspect(out, &exam, now_unix_us())?
            }
            Ok(code(exam.health == Health::Healthy))
        }
        AdminCommand::Verify(c) => {
            let exam = admin::examine(&RealFs, &locate(&c)?, &mut bars(c.json))?;
            if c.json {
                #[derive(Serialize)]
                struct Verified<'a> {
                    health: Health,
                    verdict: &'a str,
                    findings: &'a [admin::Finding],
                    records: u64,
                    segments: usize,
                    snapshots: usize,
                }
                let v = Verified {
                    health: exam.health,
                    verdict: &exam.verdict,
                    findings: &exam.findings,
                    records: exam.stats.records,
                    segments: exam.stats.segments,
                    snapshots: exam.snapshots.snapshots.len(),
                };
                json_out(out, &v)?
            } else {
                render::verify(out, &exam)?
            }
            Ok(code(exam.health == Health::Healthy))
        }
        AdminCommand::Stats(c) => {
            let exam = admin::examine(&RealFs, &locate(&c)?, &mut bars(c.json))?;
            if c.json {
                json_out(out, &exam.stats)?
            } else {
                render::stats(out, &exam.stats)?
            }
            Ok(code(!note_problems(&exam.findings)))
        }
        AdminCommand::Dump(a) => dump(a, out),
        AdminCommand::Recover(a) => recover(a, out),
        AdminCommand::Repair(a) => repair(a, out),
        AdminCommand::Snapshot(s) => snapshot(s, out),
        AdminCommand::Compact(a) => compact(a, out),
    }
}

/// The journal filters, parsed by the journal's own parsers before any file is read.
fn journal_filter(a: &DumpArgs) -> Result<JournalFilter, Failure> {
    let pattern = a.pattern.as_deref().map(Pattern::parse).transpose()?;
    let types = match &a.entry_type {
        None => SignalTypes::ANY,
        Some(list) => {
            let types = list.split(',').map(|t| t.trim().parse()).collect::<walden::Result<Vec<SignalType>>>()?;
            SignalTypes::of(&types)
        }
    };
    Ok(JournalFilter { pattern, types })
}

/// What the directory's log holds; a store's is an error for journal flags.
fn content_for_journal(dir: &DataDir, log: &admin::LogReport, flags: &str, json: bool) -> Result<LogContent, Failure> {
    let content = admin::log_content(&RealFs, log, &mut bars(json))?;
    match content {
        LogContent::Store => {
            Err(Failure::Usage(format!("{} {NOT_JOURNAL}: {flags} work on a journal's directory", dir.root.display())))
        }
        LogContent::Journal | LogContent::Empty => Ok(content),
        // `Other`, or content a later walden tells apart.
        _ => Err(Failure::Usage(format!(
            "{}: its records are neither journal entries nor store operations: {flags} work on a journal's directory",
            dir.root.display()
        ))),
    }
}

fn dump(a: DumpArgs, out: &mut dyn Write) -> Outcome {
    let filter = journal_filter(&a)?;
    let dir = locate(&a.common)?;
    let format = if a.common.json { DumpFormat::Json } else { a.format };
    // A bar for the scan, which ends before the first record is printed;
    // none while records are printed, so the two never mix on a terminal.
    let log = admin::scan_log(&RealFs, &dir.log_dir, &mut bars(a.common.json))?;
    let mut progress = bars(true);
    let damaged = note_problems(&log.findings());
    let options = DumpOptions { from: a.from, to: a.to, limit: a.limit };
    let content = if filter.is_empty() {
        admin::log_content(&RealFs, &log, &mut progress)?
    } else {
        content_for_journal(&dir, &log, "--pattern and --type", true)?
    };
    let mut failed = None;
    if content == LogContent::Journal {
        admin::dump_journal(&RealFs, &log, &options, &filter, &mut progress, |r| {
            let written = match format {
                DumpFormat::Text => render::journal_text(out, r),
                DumpFormat::Json => render::journal_json(out, r),
                DumpFormat::Hex => render::record_hex(out, &r.record),
            };
            written.map_err(|e| {
                failed = Some(e);
                walden::Error::Closed
            })
        })
        .map_err(|e| match failed.take() {
            Some(io) => Failure::Output(io),
            None => Failure::Walden(e),
        })?;
        return Ok(code(!damaged));
    }
    if !filter.is_empty() {
        return Ok(code(!damaged)); // an empty log: no entry to filter
    }
    admin::dump(&RealFs, &log, &options, &mut progress, |record| {
        let written = match format {
            DumpFormat::Text => render::record_text(out, record),
            DumpFormat::Json => render::record_json(out, record),
            DumpFormat::Hex => render::record_hex(out, record),
        };
        written.map_err(|e| {
            failed = Some(e);
            walden::Error::Closed
        })
    })
    .map_err(|e| match failed.take() {
        Some(io) => Failure::Output(io),
        None => Failure::Walden(e),
    })?;
    Ok(code(!damaged))
}

fn recover(a: RecoverArgs, out: &mut dyn Write) -> Outcome {
    let dir = locate(&a.common)?;
    let mut progress = bars(a.common.json);
    if let (Some(target), Some(out_dir)) = (a.to, &a.out) {
        if dir.snapshot_dir.is_none() {
            return Err(Failure::Usage("recover --to needs a store directory (wal/ and snapshots/)".into()));
        }
        let pit = admin::write_point_in_time::<KvState, _>(&RealFs, &dir, target, out_dir, &mut progress)?;
        if a.common.json {
            json_out(out, &pit)?
        } else {
            render::point_in_time(out, &pit)?
        }
        return Ok(ExitCode::SUCCESS);
    }
    let dry = admin::dry_run_recovery_by_content(&RealFs, &dir, a.mode.into(), &mut progress)?;
    if a.common.json {
        json_out(out, &dry)?
    } else {
        render::dry_run(out, &dry, &a.common.dir)?
    }
    let untouched = dry.plan.cuts.is_empty() && dry.report.as_ref().is_none_or(|r| r.snapshots_skipped.is_empty());
    Ok(code(dry.refused.is_none() && untouched))
}

fn repair(a: RepairArgs, out: &mut dyn Write) -> Outcome {
    let dir = locate(&a.common)?;
    let mut progress = bars(a.common.json);
    let plan = match a.cut_from {
        Some(from) => {
            admin::plan_cut(&RealFs, &admin::examine(&RealFs, &dir, &mut progress)?, Lsn(from), &mut progress)?
        }
        None => admin::plan_repair(&admin::scan_log(&RealFs, &dir.log_dir, &mut progress)?, a.salvage),
    };
    let refused = plan.refused();
    if !a.apply || refused || !plan.needed() {
        if a.common.json {
            json_out(out, &plan)?
        } else {
            render::repair_plan(out, &plan, a.apply)?
        }
        return Ok(code(!refused && !plan.needed()));
    }
    let done = match a.cut_from {
        Some(from) => admin::apply_cut(&RealFs, &dir, Lsn(from), &mut progress)?,
        None => admin::apply_repair(&RealFs, &dir, a.salvage)?,
    };
    if a.common.json {
        json_out(out, &done)?
    } else {
        render::repair_done(out, &done)?
    }
    Ok(ExitCode::SUCCESS)
}

fn snapshot(command: SnapshotCommand, out: &mut dyn Write) -> Outcome {
    match command {
        SnapshotCommand::List(c) => {
            let exam = snapshots_of(&c)?;
            if c.json {
                json_out(out, &exam.snapshots)?
            } else {
                render::snapshots(out, &exam.snapshots, now_unix_us())?
            }
            Ok(code(bad_snapshots(&exam) == 0))
        }
        SnapshotCommand::Verify(c) => {
            let exam = snapshots_of(&c)?;
            let bad = bad_snapshots(&exam);
            if c.json {
                json_out(out, &exam.snapshots)?
            } else {
                render::snapshots(out, &exam.snapshots, now_unix_us())?;
                writeln!(out, "{} snapshots, {bad} bad", exam.snapshots.snapshots.len())?;
            }
            Ok(code(bad == 0))
        }
        SnapshotCommand::Create(c) => {
            let dir = locate(&c)?;
            let pit = admin::create_snapshot::<KvState, _>(&RealFs, &dir, &mut bars(c.json))?;
            if c.json {
                json_out(out, &pit)?
            } else {
                render::point_in_time(out, &pit)?
            }
            Ok(ExitCode::SUCCESS)
        }
        SnapshotCommand::Prune(p) => {
            let dir = locate(&p.common)?;
            let plan = if p.apply {
                admin::prune(&RealFs, &dir, p.keep, &mut bars(p.common.json))?
            } else {
                admin::plan_prune(&snapshots_of(&p.common)?.snapshots, p.keep)
            };
            if p.common.json {
                json_out(out, &plan)?
            } else {
                render::prune(out, &plan, p.apply)?
            }
            Ok(ExitCode::SUCCESS)
        }
        SnapshotCommand::Export(e) => export(e, out),
    }
}

/// Snapshots that are damaged, or not this store's.
fn bad_snapshots(exam: &admin::Examination) -> usize {
    exam.snapshots.snapshots.iter().filter(|s| !s.is_good() || s.refused.is_some()).count()
}

/// Prints each finding worse than a notice on stderr, naming its file, for
/// a command whose output does not show them; whether there was one.
fn note_problems(findings: &[admin::Finding]) -> bool {
    let problems: Vec<_> = findings.iter().filter(|f| f.severity > admin::Severity::Notice).collect();
    for f in &problems {
        eprintln!("walden: note: {}: {}", f.file.display(), f.what);
    }
    !problems.is_empty()
}

fn snapshots_of(c: &Common) -> Result<admin::Examination, Failure> {
    let dir = locate(c)?;
    if dir.snapshot_dir.is_none() {
        return Err(Failure::Usage(format!("{} is a bare log: it has no snapshots", dir.root.display())));
    }
    Ok(admin::examine(&RealFs, &dir, &mut bars(c.json))?)
}

fn export(e: ExportArgs, out: &mut dyn Write) -> Outcome {
    let exam = snapshots_of(&Common { dir: e.dir, json: true })?;
    // A snapshot of this store's log only: one from another store (or
    // history) is damage found, as `walden verify` reports it.
    let chosen = match e.lsn {
        Some(lsn) => exam.snapshots.snapshots.iter().rev().find(|s| s.lsn == Lsn(lsn)),
        None => exam.snapshots.snapshots.iter().rev().find(|s| s.is_good() && s.refused.is_none()),
    };
    let Some(chosen) = chosen else {
        return Err(Failure::Usage("no such snapshot (see `walden snapshot list`)".into()));
    };
    let bad = |reason: &str| walden::Error::BadSnapshot { file: chosen.path.clone(), reason: reason.to_owned() };
    if let admin::SnapshotState::Bad { reason } = &chosen.state {
        return Err(bad(reason).into());
    }
    if let Some(refused) = &chosen.refused {
        return Err(bad(refused).into());
    }
    let state: KvState = admin::read_snapshot_state(&RealFs, chosen)?;
    render::export(out, chosen, &state)?;
    Ok(ExitCode::SUCCESS)
}

fn compact(a: CompactArgs, out: &mut dyn Write) -> Outcome {
    if let Some(age) = &a.older_than {
        return compact_journal(&a, age, out);
    }
    let before = Lsn(a.before.expect("clap requires --before without --older-than"));
    let dir = locate(&a.common)?;
    let mut progress = bars(a.common.json);
    let log = admin::scan_log(&RealFs, &dir.log_dir, &mut progress)?;
    if admin::log_content(&RealFs, &log, &mut progress)? == LogContent::Journal {
        return Err(Failure::Usage(format!(
            "{} holds journal entries: removing segments by LSN would take history the journal still serves; \
             use --older-than AGE",
            dir.root.display()
        )));
    }
    let (plan, damaged) = if a.apply {
        (admin::apply_compact(&RealFs, &dir, before, &mut progress)?, false)
    } else {
        let exam = admin::examine(&RealFs, &dir, &mut progress)?;
        (admin::plan_compact(&exam, before), note_problems(&exam.findings))
    };
    if a.common.json {
        json_out(out, &plan)?
    } else {
        render::compact(out, &plan, a.apply)?
    }
    Ok(code(plan.refused.is_none() && !damaged))
}

/// `compact --older-than AGE` on a journal's directory.
fn compact_journal(a: &CompactArgs, age: &str, out: &mut dyn Write) -> Outcome {
    let age = walden::journal::parse_age(age)?;
    let cutoff_us = now_unix_us().saturating_sub(u64::try_from(age.as_micros()).unwrap_or(u64::MAX));
    let dir = locate(&a.common)?;
    let mut progress = bars(a.common.json);
    let log = admin::scan_log(&RealFs, &dir.log_dir, &mut progress)?;
    let content = content_for_journal(&dir, &log, "--older-than", a.common.json)?;
    let (plan, damaged) = if a.apply && content == LogContent::Journal {
        (admin::apply_journal_compact(&dir, &log, cutoff_us, JournalOptions::default())?, false)
    } else {
        (admin::plan_journal_compact(&RealFs, &log, cutoff_us, &mut progress)?, note_problems(&log.findings()))
    };
    if a.common.json {
        json_out(out, &plan)?
    } else {
        render::journal_compact(out, &plan)?
    }
    Ok(code(!damaged))
}
