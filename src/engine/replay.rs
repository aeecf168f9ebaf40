//! Log replay, at open and for views: the log's records after a state's
//! LSN, applied to it in batches.
//!
//! Reading and applying overlap on two threads. `walden-replay` reads
//! records (each one's checksum checked by the log's reader), copies them
//! into a batch and plans it: `StateMachine::plan_batch` may choose another
//! order to apply them in (the store decodes every operation and sorts
//! them by key), and the batch is then copied into that order, so the
//! applying thread reads it front to back. The calling thread applies each
//! planned batch (`apply_planned_batch`) while the next is read. The state
//! stays on the calling thread, which also allocates what it keeps (with
//! glibc, the main thread's heap grows in large steps where another
//! thread's arena grows a page at a time, one `mprotect` each). A log that
//! fits in one batch is applied with no thread started, and so is a replay
//! whose `include` test cannot be sent to another thread.
//!
//! **Invariant:** records are applied exactly once, and in LSN order but
//! for a state's own reordering inside a batch (which must give the same
//! result): batches go through one FIFO channel to one applier, a record at
//! or below the last LSN read is skipped, and a plan is checked to be an
//! order of all of the batch's records.

use super::StateMachine;
use crate::io::Vfs;
use crate::{Error, Lsn, Result, WalReader};
use std::path::Path;
use std::sync::mpsc;

/// What a replay did.
pub(crate) struct Replayed<S> {
    pub machine: S,
    /// The LSN of the last record applied (the start LSN if none was).
    pub lsn: Lsn,
    pub records: u64,
    pub bytes: u64,
}

/// Where a replay is: the last LSN read, and the test of whether to go on.
struct Reading<V: Vfs, F> {
    reader: WalReader<V>,
    last: Lsn,
    include: F,
}

impl<V: Vfs, F: FnMut(Lsn, &[u8]) -> bool> Reading<V, F> {
    /// Fills `batch` with the records after `last` until it is full
    /// (false) or the replay's records end (true): the log ends, or
    /// `include` refuses one.
    fn fill(&mut self, batch: &mut ReplayBatch) -> Result<bool> {
        loop {
            let Some(record) = self.reader.next_ref() else { return Ok(true) };
            let (lsn, payload) = record?;
            if lsn <= self.last {
                continue;
            }
            if !(self.include)(lsn, payload) {
                return Ok(true);
            }
            self.last = lsn;
            batch.push(lsn, payload);
            if batch.is_full() {
                return Ok(false);
            }
        }
    }
}

/// Applies the records `reader` yields after `lsn` to `machine`, in
/// batches, for as long as `include` holds (the first record it refuses
/// ends the replay; it sees the records in LSN order, on the reading
/// thread). An error reading, planning or applying ends the replay too,
/// and is the answer. `dir` names the engine in an error.
pub(crate) fn replay<S: StateMachine, V: Vfs>(
    dir: &Path,
    reader: WalReader<V>,
    machine: S,
    lsn: Lsn,
    include: impl FnMut(Lsn, &[u8]) -> bool + Send,
) -> Result<Replayed<S>> {
    if reader.upto().0.saturating_sub(lsn.0) < REPLAY_BATCH_RECORDS as u64 {
        return replay_here(reader, machine, lsn, include); // one batch at most
    }
    let mut reading = Reading { reader, last: lsn, include };
    let mut applied = Replayed { machine, lsn, records: 0, bytes: 0 };
    let (full_tx, full_rx) = mpsc::sync_channel::<Result<ReplayBatch>>(1);
    let (empty_tx, empty_rx) = mpsc::channel::<ReplayBatch>();
    std::thread::scope(|scope| {
        std::thread::Builder::new()
            .name("walden-replay".into())
            .spawn_scoped(scope, move || loop {
                let mut next = empty_rx.try_recv().unwrap_or_default();
                let read = reading.fill(&mut next).and_then(|end| next.plan::<S>().map(|()| end));
                let end = read.as_ref().map_or(true, |&end| end);
                // The applier may have stopped (an error); then so does the reading.
                if full_tx.send(read.map(|_| next)).is_err() || end {
                    return;
                }
            })
            .map_err(Error::io("spawn the replay thread", dir))?;
        // Returning drops the receivers, which stops the reading thread.
        for read in full_rx {
            let mut batch = read?;
            applied.apply(&mut batch)?;
            // The reader may be gone already; then the batch is dropped.
            let _ = empty_tx.send(batch);
        }
        Ok::<_, Error>(())
    })?;
    Ok(applied)
}

/// [`replay`] on the calling thread alone, for an `include` test that
/// cannot be sent to another thread.
pub(crate) fn replay_here<S: StateMachine, V: Vfs>(
    reader: WalReader<V>,
    machine: S,
    lsn: Lsn,
    include: impl FnMut(Lsn, &[u8]) -> bool,
) -> Result<Replayed<S>> {
    let mut reading = Reading { reader, last: lsn, include };
    let mut applied = Replayed { machine, lsn, records: 0, bytes: 0 };
    let mut batch = ReplayBatch::default();
    loop {
        let end = reading.fill(&mut batch)?;
        batch.plan::<S>()?;
        applied.apply(&mut batch)?;
        if end {
            return Ok(applied);
        }
    }
}

impl<S: StateMachine> Replayed<S> {
    /// Applies a planned batch (if it holds any records) and empties it.
    fn apply(&mut self, batch: &mut ReplayBatch) -> Result<()> {
        if !batch.is_empty() {
            self.records += batch.records.len() as u64;
            self.bytes += batch.bytes.len() as u64;
            self.lsn = self.lsn.max(batch.apply_to(&mut self.machine)?);
        }
        Ok(())
    }
}

/// Log records copied out of the log (its reader lends one at a time) to be
/// applied together, in the order the state planned for them.
#[derive(Default)]
pub(crate) struct ReplayBatch {
    bytes: Vec<u8>,
    /// LSN and end offset in `bytes` of each record.
    records: Vec<(Lsn, usize)>,
    /// The highest LSN in the batch (the last read).
    last: Lsn,
    /// Where a plan's order is made, then kept for the next batch.
    order: Vec<u32>,
    spare_bytes: Vec<u8>,
    spare_records: Vec<(Lsn, usize)>,
    seen: Vec<bool>,
    /// The allocation of the records' slices, kept empty between uses.
    slices: Vec<(Lsn, &'static [u8])>,
}

/// A state's error planning or applying `records` as [`Error::Apply`],
/// which names a record: the lowest LSN its own check refuses, or the
/// batch's first if every one passes on its own.
fn name_failure<S: StateMachine>(e: Error, records: &[(Lsn, &[u8])]) -> Error {
    if let Error::Apply { .. } = e {
        return e;
    }
    let refused = records.iter().filter(|(_, payload)| S::check(payload).is_err()).map(|&(lsn, _)| lsn).min();
    match refused {
        Some(lsn) => Error::Apply { lsn, reason: e.to_string() },
        None => {
            let first = records.iter().map(|&(lsn, _)| lsn).min().unwrap_or(Lsn::ZERO);
            let last = records.iter().map(|&(lsn, _)| lsn).max().unwrap_or(Lsn::ZERO);
            Error::Apply { lsn: first, reason: format!("{e} (in the batch of LSN {first} to {last})") }
        }
    }
}

/// An empty vector of slices with `v`'s allocation, for other borrows (an
/// in-place `collect` of nothing keeps the allocation).
fn reuse<'b>(mut v: Vec<(Lsn, &[u8])>) -> Vec<(Lsn, &'b [u8])> {
    v.clear();
    v.into_iter().map(|_| -> (Lsn, &'b [u8]) { unreachable!("the vector is empty") }).collect()
}

/// Records per replay batch: enough that, sorted by key, consecutive puts
/// into a map of millions of keys share most of their path down the tree.
const REPLAY_BATCH_RECORDS: usize = 1 << 17;
/// ... or bytes of payload, whichever comes first: the batches (three at
/// most: being read, waiting, being applied, each with its copy in the
/// planned order) are extra memory on top of the state.
const REPLAY_BATCH_BYTES: usize = 16 << 20;

impl ReplayBatch {
    fn push(&mut self, lsn: Lsn, payload: &[u8]) {
        self.bytes.extend_from_slice(payload);
        self.records.push((lsn, self.bytes.len()));
        self.last = lsn;
    }

    fn is_full(&self) -> bool {
        self.records.len() >= REPLAY_BATCH_RECORDS || self.bytes.len() >= REPLAY_BATCH_BYTES
    }

    fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Calls `f` with the records, as the state machine takes them.
    fn with_slices<T>(&mut self, f: impl FnOnce(&[(Lsn, &[u8])], &mut Vec<u32>) -> T) -> T {
        let mut slices = reuse(std::mem::take(&mut self.slices));
        let mut start = 0;
        slices.extend(self.records.iter().map(|&(lsn, end)| {
            let payload = &self.bytes[start..end];
            start = end;
            (lsn, payload)
        }));
        let out = f(&slices, &mut self.order);
        self.slices = reuse(slices);
        out
    }

    /// Asks the state for the order to apply the records in and, if it is
    /// not LSN order, copies them into that order.
    fn plan<S: StateMachine>(&mut self) -> Result<()> {
        self.order.clear();
        self.with_slices(|slices, order| S::plan_batch(slices, order).map_err(|e| name_failure::<S>(e, slices)))?;
        if self.order.is_empty() {
            return Ok(());
        }
        assert_eq!(self.order.len(), self.records.len(), "a plan orders every record of its batch");
        self.seen.clear();
        self.seen.resize(self.order.len(), false);
        self.spare_bytes.clear();
        self.spare_records.clear();
        for &i in &self.order {
            let i = i as usize;
            assert!(!std::mem::replace(&mut self.seen[i], true), "a plan orders each record once");
            let start = if i == 0 { 0 } else { self.records[i - 1].1 };
            let (lsn, end) = self.records[i];
            self.spare_bytes.extend_from_slice(&self.bytes[start..end]);
            self.spare_records.push((lsn, self.spare_bytes.len()));
        }
        std::mem::swap(&mut self.bytes, &mut self.spare_bytes);
        std::mem::swap(&mut self.records, &mut self.spare_records);
        Ok(())
    }

    /// Applies the planned batch, empties it, and returns its last LSN.
    fn apply_to<S: StateMachine>(&mut self, machine: &mut S) -> Result<Lsn> {
        self.with_slices(|slices, _| machine.apply_planned_batch(slices).map_err(|e| name_failure::<S>(e, slices)))?;
        self.records.clear();
        self.bytes.clear();
        Ok(self.last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_slices_keep_their_allocation_from_batch_to_batch() {
        let mut batch = ReplayBatch::default();
        for i in 1..=1000 {
            batch.push(Lsn(i), &i.to_le_bytes());
        }
        let sum = batch.with_slices(|slices, _| slices.iter().map(|(lsn, p)| lsn.0 + p[0] as u64).sum::<u64>());
        assert_eq!(sum, (1..=1000u64).map(|i| i + (i % 256)).sum());
        assert!(batch.slices.capacity() >= 1000, "the allocation is kept");
        let pointer = batch.slices.as_ptr() as usize;
        batch.with_slices(|slices, _| assert_eq!(slices.as_ptr() as usize, pointer, "and used again"));
    }
}
