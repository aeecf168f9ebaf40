//! `walden follow`: prints a log's records as they become readable, like
//! `tail -f`, from a directory another process may hold; with `--store`,
//! a store's key changes (`--prefix`), with `--journal` a journal's
//! entries (`--pattern`, `--type`), decoded by the library's own codecs. A shell over
//! [`walden::admin::follow_dir`]: read-only, no lock, pread only; the files
//! are polled (every `--poll-ms`, 5 ms by default) since the writer's
//! in-memory progress is not visible from another process. Stops cleanly
//! (exit 0) on SIGINT or SIGTERM, or when stdout is closed.

use crate::cli_exit;
use clap::Args;
use serde::Serialize;
use std::io::{self, Write};
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use walden::admin::{self, DataDir, FollowEvent, FollowOptions, JournalFilter, JournalRecord};
use walden::io::RealFs;
use walden::journal::{Pattern, SignalType, SignalTypes};
use walden::Lsn;

/// What `walden follow` takes.
#[derive(Args)]
pub struct FollowArgs {
    /// The data directory: a store's or engine's (holding wal/), or a bare log's.
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
    /// The first LSN to print (default: the oldest the log holds). Past the
    /// end, it waits; below the oldest held, it fails and names the oldest.
    #[arg(long, value_name = "LSN")]
    pub from: Option<u64>,
    /// One JSON object a line: {"lsn", "len", and "text" (UTF-8) or "hex"}.
    #[arg(long)]
    pub json: bool,
    /// How long to sleep when nothing new is in the files, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 5)]
    pub poll_ms: u64,
    /// A store's directory: print each put and delete as
    /// "LSN<TAB>put|delete<TAB>key<TAB>value<TAB>writer<TAB>timestamp_us"
    /// (no revision: that needs the state, which `Store::watch` derives in
    /// the writing process).
    #[arg(long, conflicts_with = "journal")]
    pub store: bool,
    /// With --store: only keys (UTF-8) that start with this.
    #[arg(long, value_name = "PREFIX", requires = "store")]
    pub prefix: Option<String>,
    /// A journal's directory: print each entry as
    /// "SEQUENCE<TAB>OP<TAB>TYPE<TAB>ADDRESS<TAB>VALUE<TAB>REVISION" (compaction records are skipped).
    #[arg(long)]
    pub journal: bool,
    /// With --journal: only entries whose address matches this pattern (as `walden dump --pattern`).
    #[arg(long, value_name = "PATTERN", requires = "journal")]
    pub pattern: Option<String>,
    /// With --journal: only these signal types (param, event, stream, gesture, timeline; comma-separated).
    #[arg(long = "type", value_name = "TYPES", value_delimiter = ',', requires = "journal")]
    pub types: Vec<String>,
}

/// How records are decoded and filtered.
enum Decode {
    Raw,
    Store { prefix: String },
    Journal(JournalFilter),
}

impl Decode {
    fn of(args: &FollowArgs) -> walden::Result<Decode> {
        if args.store {
            return Ok(Decode::Store { prefix: args.prefix.clone().unwrap_or_default() });
        }
        if args.journal {
            let pattern = args.pattern.as_deref().map(Pattern::parse).transpose()?;
            let types = args.types.iter().map(|t| t.parse::<SignalType>()).collect::<walden::Result<Vec<_>>>()?;
            return Ok(Decode::Journal(JournalFilter { pattern, types: SignalTypes::of(&types) }));
        }
        Ok(Decode::Raw)
    }
}

/// A store operation printed with `--store --json`.
#[derive(Serialize)]
struct JsonStoreOp {
    lsn: u64,
    #[serde(flatten)]
    op: admin::StoreOpView,
}

/// A journal entry printed with `--journal --json`.
#[derive(Serialize)]
struct JsonJournalEntry<'a> {
    lsn: u64,
    #[serde(flatten)]
    entry: &'a admin::JournalEntryView,
}

/// Prints one record as `decode` says; `Ok(false)`: it is not what was
/// asked for (not a store operation, not a journal record).
fn print_decoded(out: &mut impl Write, lsn: Lsn, payload: &[u8], decode: &Decode, json: bool) -> io::Result<bool> {
    match decode {
        Decode::Raw => print_record(out, lsn, payload, json).map(|()| true),
        Decode::Store { prefix } => {
            let Some(op) = admin::store_op(payload) else { return Ok(false) };
            if !op.key.as_deref().map_or(prefix.is_empty(), |k| k.starts_with(prefix.as_str())) {
                return Ok(true);
            }
            if json {
                serde_json::to_writer(&mut *out, &JsonStoreOp { lsn: lsn.0, op }).map_err(io::Error::from)?;
                return writeln!(out).map(|()| true);
            }
            let key = op.key.map_or_else(|| format!("hex:{}", op.key_hex.unwrap_or_default()), |k| format!("{k:?}"));
            let value = match (op.value, op.value_hex) {
                (Some(v), _) => format!("{v:?}"),
                (None, Some(h)) => format!("hex:{h}"),
                (None, None) => "-".into(),
            };
            writeln!(out, "{lsn}\t{}\t{key}\t{value}\t{}\t{}", op.op, op.writer, op.timestamp_us).map(|()| true)
        }
        Decode::Journal(filter) => {
            let Some(record) = admin::journal_record(payload) else { return Ok(false) };
            let JournalRecord::Entry(entry) = &record else { return Ok(true) };
            if !filter.admits(Some(&record)) {
                return Ok(true);
            }
            if json {
                serde_json::to_writer(&mut *out, &JsonJournalEntry { lsn: lsn.0, entry }).map_err(io::Error::from)?;
                return writeln!(out).map(|()| true);
            }
            let revision = entry.revision.map_or_else(|| "-".into(), |r| r.to_string());
            let e = entry;
            writeln!(out, "{}\t{}\t{}\t{}\t{}\t{revision}", e.sequence, e.op, e.signal_type, e.address, e.value_text)
                .map(|()| true)
        }
    }
}

/// Set by the signal handler; read by the follow loop between polls.
static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn request_stop(_signal: libc::c_int) {
    // Only an atomic store: async-signal-safe.
    STOP.store(true, Ordering::Relaxed);
}

/// Makes SIGINT and SIGTERM set [`STOP`] instead of killing the process, so
/// the follow ends after its current poll and the command exits 0.
fn stop_on_signals() {
    let handler = request_stop as extern "C" fn(libc::c_int);
    for signal in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: `request_stop` is an `extern "C"` function that only
        // stores into a static atomic, which is async-signal-safe; it stays
        // valid for the life of the process.
        #[allow(unsafe_code)]
        unsafe {
            libc::signal(signal, handler as libc::sighandler_t);
        }
    }
}

/// One printed record, for `--json`.
#[derive(Serialize)]
struct JsonRecord<'a> {
    lsn: u64,
    len: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    text: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    hex: Option<String>,
}

fn print_record(out: &mut impl Write, lsn: Lsn, payload: &[u8], json: bool) -> io::Result<()> {
    let text = std::str::from_utf8(payload).ok();
    if json {
        let hex = text.is_none().then(|| admin::hex(payload));
        let line = JsonRecord { lsn: lsn.0, len: payload.len(), text, hex };
        serde_json::to_writer(&mut *out, &line).map_err(io::Error::from)?;
        writeln!(out)
    } else {
        match text {
            Some(text) => writeln!(out, "{lsn}\t{}\t\"{}\"", payload.len(), text.escape_debug()),
            None => writeln!(out, "{lsn}\t{}\thex:{}", payload.len(), admin::hex(payload)),
        }
    }
}

/// Runs `walden follow`.
pub fn run(args: &FollowArgs) -> ExitCode {
    let dir = match DataDir::locate(&RealFs, &args.dir) {
        Ok(dir) => dir,
        Err(e) => return cli_exit::fail(&e, args.json),
    };
    let decode = match Decode::of(args) {
        Ok(decode) => decode,
        Err(e) => return cli_exit::fail(&e, args.json),
    };
    stop_on_signals();
    let options = FollowOptions { from: args.from.map(Lsn), poll: Duration::from_millis(args.poll_ms) };
    let stdout = io::stdout();
    let mut out = stdout.lock();
    let mut write_failed = None;
    let mut not_decoded = None;
    let result = admin::follow_dir(&RealFs, &dir.log_dir, &options, &STOP, |event| {
        match event {
            FollowEvent::Record(record) => {
                match print_decoded(&mut out, record.lsn, record.payload, &decode, args.json) {
                    Ok(true) => {}
                    Ok(false) => {
                        not_decoded = Some(record.lsn);
                        return ControlFlow::Break(());
                    }
                    Err(e) => {
                        write_failed = Some(e);
                        return ControlFlow::Break(());
                    }
                }
            }
            FollowEvent::Replaced { lsn, file, offset } => eprintln!(
                "walden follow: LSN {lsn}, printed earlier, now holds other bytes ({} at offset {offset}): the \
                 writer lost it (power loss or a cut) and reused the LSN; not printed again",
                file.display()
            ),
            FollowEvent::Stalled { lsn, file, offset, what } => {
                eprintln!("walden follow: still waiting at LSN {lsn} ({} at offset {offset}): {what}", file.display())
            }
            _ => {}
        }
        ControlFlow::Continue(())
    });
    if let (Ok(_), Some(lsn)) = (&result, not_decoded) {
        let what = if args.store { "a store operation" } else { "a journal record" };
        let e = walden::Error::InvalidArgument(format!(
            "the record at LSN {lsn} of {} is not {what}: is it a {} directory?",
            args.dir.display(),
            if args.store { "store's" } else { "journal's" }
        ));
        let _ = out.flush();
        return cli_exit::fail(&e, args.json);
    }
    match (result, write_failed) {
        // A closed pipe (`walden follow | head`) is a reader that is done.
        (Ok(_), Some(e)) if e.kind() == io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        (Ok(_), Some(e)) => {
            eprintln!("walden: write to stdout: {e}");
            ExitCode::from(2)
        }
        (Ok(_), None) => match out.flush() {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("walden: write to stdout: {e}");
                ExitCode::from(2)
            }
        },
        (Err(e), _) => cli_exit::fail(&e, args.json),
    }
}
