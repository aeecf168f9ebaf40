//! Progress bars (indicatif, on stderr) for the library's long scans. Drawn
//! only on a terminal and only for phases of 64 MiB or more: `walden verify`
//! checked a 193 MB log (1M records of 128 B) in 1.2-1.8 s on this
//! project's shared machine (docs/BENCHMARKS.md), so 64 MiB is about half a
//! second. Pipes and tests see nothing.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use walden::admin::Progress;

/// Phases smaller than this finish too fast for a bar to help.
const MIN_BAR_BYTES: u64 = 64 << 20;

#[derive(Default)]
pub struct Bars {
    bar: Option<ProgressBar>,
    /// `--json` runs and `--quiet` ones draw nothing.
    pub hidden: bool,
}

impl Bars {
    /// Bars that draw (on a terminal) unless `hidden`.
    pub fn new(hidden: bool) -> Bars {
        Bars { bar: None, hidden }
    }
}

impl Progress for Bars {
    fn begin(&mut self, what: &str, total_bytes: u64) {
        self.end();
        if self.hidden || total_bytes < MIN_BAR_BYTES {
            return;
        }
        let bar = ProgressBar::with_draw_target(Some(total_bytes), ProgressDrawTarget::stderr());
        let style = ProgressStyle::with_template("{msg:20} [{bar:40}] {bytes}/{total_bytes} ({eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
        bar.set_style(style);
        bar.set_message(what.to_owned());
        self.bar = Some(bar);
    }

    fn advance(&mut self, bytes: u64) {
        if let Some(bar) = &self.bar {
            bar.inc(bytes);
        }
    }

    fn end(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}
