//! `walden dump` for a store (or any log): [`dump`] hands each record of a
//! range, by LSN or by the time of the store's operations, with its place
//! and its raw frame, to the caller. A journal's dump, with its filters, is
//! `journal.rs`'s [`super::dump_journal`].

use super::log::LogReport;
use super::range::{walk_range, DumpOptions, LogRecordView};
use super::store_view::store_timestamp;
use super::Progress;
use crate::io::Vfs;
use crate::Result;

/// Calls `emit` for each record in the range `options` selects, in LSN
/// order. Time bounds are matched against store operations' timestamps.
/// Returns how many records were emitted.
pub fn dump<V: Vfs>(
    fs: &V,
    log: &LogReport,
    options: &DumpOptions,
    progress: &mut dyn Progress,
    mut emit: impl FnMut(&LogRecordView<'_>) -> Result<()>,
) -> Result<u64> {
    walk_range(
        fs,
        log,
        options,
        progress,
        |payload| ((), store_timestamp(payload)),
        |record, ()| {
            emit(&record)?;
            Ok(true)
        },
    )
}
