//! The exit-code contract, in one place: 0 healthy or done, 1 a problem
//! found in the data, 2 a usage error or an I/O failure outside the data.
//!
//! A command that finds damage in what it reads and reports it as a result
//! (`verify`'s findings) exits 1 itself; a command that stops on an error
//! ends here, where [`walden::Error::class`] decides the code: damage is 1,
//! a usage error or a failure of the environment (permission denied, a full
//! disk, a directory in use) is 2. With `--json` the error is also printed
//! on stdout as one JSON document on one line (so it also ends `dump`'s
//! JSON lines) carrying its class.

use serde::Serialize;
use std::io::{self, Write};
use std::path::Path;
use std::process::ExitCode;
use walden::ErrorClass;

/// The exit code of a class of error: the one mapping from class to code.
pub fn exit_code(class: ErrorClass) -> u8 {
    match class {
        ErrorClass::Damage => 1,
        ErrorClass::Usage | ErrorClass::Environment => 2,
        // A class a later walden adds: not damage this binary knows of.
        _ => 2,
    }
}

/// What `--json` prints for a command that stopped on an error.
#[derive(Serialize)]
struct Failed<'a> {
    error: &'a str,
    class: &'static str,
    file: Option<&'a Path>,
    exit_code: u8,
}

/// Reports a library error (on stderr, and as JSON on stdout with `json`)
/// and returns its exit code.
pub fn fail(e: &walden::Error, json: bool) -> ExitCode {
    fail_with(e.class(), &explain(e), e.file(), json)
}

/// Reports an error of the given class and returns its exit code.
pub fn fail_with(class: ErrorClass, message: &str, file: Option<&Path>, json: bool) -> ExitCode {
    eprintln!("walden: {message}");
    if json {
        let failed = Failed { error: message, class: class.as_str(), file, exit_code: exit_code(class) };
        let mut out = io::stdout().lock();
        // The exit code says it all if stdout is gone too.
        let _ = serde_json::to_writer(&mut out, &failed).map_err(io::Error::from).and_then(|()| writeln!(out));
    }
    ExitCode::from(exit_code(class))
}

/// The error as printed, said plainly where the library's words are terse:
/// a directory another process holds.
pub fn explain(e: &walden::Error) -> String {
    match e {
        walden::Error::Io { op: "lock", path, source } if source.kind() == io::ErrorKind::WouldBlock => format!(
            "{} is in use: another process holds its lock ({}), so nothing was changed; stop that process first \
             (read-only commands and `walden backup` work on a directory in use)",
            path.display(),
            path.join("LOCK").display()
        ),
        _ => e.to_string(),
    }
}
