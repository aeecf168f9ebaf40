//! `walden follow`: prints a log's records as they become readable, like
//! `tail -f`, from a directory another process may hold. A shell over
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
use walden::admin::{self, DataDir, FollowEvent, FollowOptions};
use walden::io::RealFs;
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
    stop_on_signals();
    let options = FollowOptions { from: args.from.map(Lsn), poll: Duration::from_millis(args.poll_ms) };
    let stdout = io::stdout();
    let mut out = stdout.lock();
    let mut write_failed = None;
    let result = admin::follow_dir(&RealFs, &dir.log_dir, &options, &STOP, |event| {
        match event {
            FollowEvent::Record(record) => {
                if let Err(e) = print_record(&mut out, record.lsn, record.payload, args.json) {
                    write_failed = Some(e);
                    return ControlFlow::Break(());
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
