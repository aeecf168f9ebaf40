//! One model of a [`Store`], shared by everything that judges a recovered
//! store: the store crash explorer and the kill test (`tests/long/`), the
//! fuzz targets `open_mutated_store` and `store_model`, and the property
//! test of `tests/quick/store_load.rs`.
//!
//! The model keeps every record the store was given, in LSN order, and
//! builds the state they make (each key's value and revision) at any LSN.
//! [`StoreModel::check`] is the one verdict: the store's applied LSN covers
//! every write it had to keep, was written, ends no batch early, and its
//! state (scanned in order, revisions included) is exactly the model's
//! state at that LSN.

use crate::io::Vfs;
use crate::{Lsn, Store};
use std::collections::BTreeMap;

/// A key's entry in the model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelEntry {
    /// The value of the key's latest put.
    pub value: Vec<u8>,
    /// 1 on the put that creates the key (again, after a delete), one more
    /// on every later put.
    pub revision: u64,
}

/// A store's state as the model sees it: every key's entry, in key order.
pub type ModelState = BTreeMap<Vec<u8>, ModelEntry>;

/// One log record: a put (`Some(value)`) or a delete (`None`), and whether
/// the next record belongs to the same batch.
#[derive(Clone, Debug)]
struct ModelRecord {
    key: Vec<u8>,
    value: Option<Vec<u8>>,
    batch_continues: bool,
}

/// Every record a store was given, and the state they build at each LSN.
///
/// Records up to [`StoreModel::settled`] are folded into one state and
/// freed ([`StoreModel::settle`]), so a long run (thousands of kill cycles,
/// millions of LSNs) keeps only what it may still need.
#[derive(Clone, Debug, Default)]
pub struct StoreModel {
    /// Records up to here can no longer be lost; their state is `base`.
    settled: Lsn,
    /// The state at `settled`.
    base: ModelState,
    /// The records after `settled`: LSN `settled + 1 + i` at index `i`.
    records: Vec<ModelRecord>,
}

impl StoreModel {
    /// An empty store's model.
    pub fn new() -> Self {
        Self::default()
    }

    /// Notes the next record the store was given (its LSN is returned): a
    /// put of `value` (`None`: a delete) to `key`; `batch_continues` says
    /// the next record is of the same batch, so recovery may not stop here.
    pub fn record(&mut self, key: &[u8], value: Option<&[u8]>, batch_continues: bool) -> Lsn {
        self.records.push(ModelRecord { key: key.to_vec(), value: value.map(<[u8]>::to_vec), batch_continues });
        self.written()
    }

    /// Notes a put on its own (a batch of one).
    pub fn put(&mut self, key: &[u8], value: &[u8]) -> Lsn {
        self.record(key, Some(value), false)
    }

    /// Notes a delete on its own (a batch of one).
    pub fn delete(&mut self, key: &[u8]) -> Lsn {
        self.record(key, None, false)
    }

    /// The LSN of the last record noted.
    pub fn written(&self) -> Lsn {
        Lsn(self.settled.0 + self.records.len() as u64)
    }

    /// The LSN up to which records can no longer be lost.
    pub fn settled(&self) -> Lsn {
        self.settled
    }

    /// The state after the records up to `lsn`. Panics if `lsn` is before
    /// the settled LSN or after the last record.
    pub fn state_at(&self, lsn: Lsn) -> ModelState {
        assert!(lsn >= self.settled && lsn <= self.written(), "LSN {lsn} is outside the model");
        let mut state = self.base.clone();
        for record in &self.records[..(lsn.0 - self.settled.0) as usize] {
            apply(&mut state, record);
        }
        state
    }

    /// Forgets the records after `lsn`: the store lost them (a crash
    /// before they were durable), and the next record it is given is
    /// `lsn + 1`.
    pub fn truncate(&mut self, lsn: Lsn) {
        assert!(lsn >= self.settled, "LSN {lsn} is settled: it cannot be lost");
        self.records.truncate((lsn.0 - self.settled.0) as usize);
    }

    /// Records up to `lsn` can no longer be lost: folds them into the base
    /// state and frees them. A later [`StoreModel::check`] that finds the
    /// store before `lsn` fails.
    pub fn settle(&mut self, lsn: Lsn) {
        assert!(lsn <= self.written(), "LSN {lsn} was never written");
        if lsn <= self.settled {
            return;
        }
        let folded = (lsn.0 - self.settled.0) as usize;
        for record in self.records.drain(..folded) {
            apply(&mut self.base, &record);
        }
        self.settled = lsn;
    }

    /// The verdict on a recovered (or live) store: its applied LSN is at or
    /// after `required` and after every settled record, was written, and
    /// does not end inside a batch; its state, scanned in key order, is
    /// exactly the model's state at that LSN, values and revisions. Returns
    /// the applied LSN, or what is wrong.
    pub fn check<V: Vfs>(&self, store: &Store<V>, required: Lsn) -> Result<Lsn, String> {
        let lsn = store.applied_lsn();
        if lsn < required {
            return Err(format!("LSN {required} was promised and is lost (recovered {lsn})"));
        }
        if lsn < self.settled {
            return Err(format!("LSN {}, kept before, is lost (recovered {lsn})", self.settled));
        }
        if lsn > self.written() {
            return Err(format!("LSN {lsn} was never written (the last written is {})", self.written()));
        }
        if lsn > self.settled && self.records[(lsn.0 - self.settled.0) as usize - 1].batch_continues {
            return Err(format!("recovered into the middle of a batch at LSN {lsn}"));
        }
        let got = store_state(store);
        let want: Vec<(Vec<u8>, ModelEntry)> = self.state_at(lsn).into_iter().collect();
        if got != want {
            return Err(format!("the state is not the state at LSN {lsn}: {}", first_difference(&got, &want)));
        }
        Ok(lsn)
    }
}

/// A store's state as a scan gives it: keys in the order the scan returns
/// them (which must be byte order), with values and revisions.
pub fn store_state<V: Vfs>(store: &Store<V>) -> Vec<(Vec<u8>, ModelEntry)> {
    store
        .scan_prefix(b"")
        .into_iter()
        .map(|(key, entry)| (key.to_vec(), ModelEntry { value: entry.value.to_vec(), revision: entry.revision }))
        .collect()
}

fn apply(state: &mut ModelState, record: &ModelRecord) {
    match &record.value {
        Some(value) => {
            let revision = state.get(&record.key).map_or(1, |e| e.revision + 1);
            state.insert(record.key.clone(), ModelEntry { value: value.clone(), revision });
        }
        None => {
            state.remove(&record.key);
        }
    }
}

/// Where a store's scan and the model's state first part.
fn first_difference(got: &[(Vec<u8>, ModelEntry)], want: &[(Vec<u8>, ModelEntry)]) -> String {
    fn show(entry: Option<&(Vec<u8>, ModelEntry)>) -> String {
        match entry {
            None => "nothing".to_owned(),
            Some((key, e)) => {
                let value: String = e.value.escape_ascii().to_string().chars().take(48).collect();
                format!(
                    "key \"{}\" = \"{value}\" (revision {}, {} bytes)",
                    key.escape_ascii(),
                    e.revision,
                    e.value.len()
                )
            }
        }
    }
    let at = got.iter().zip(want).position(|(g, w)| g != w).unwrap_or(got.len().min(want.len()));
    format!(
        "{} keys in the store, {} in the model; at position {at} the store has {}, the model {}",
        got.len(),
        want.len(),
        show(got.get(at)),
        show(want.get(at))
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::SimFs;
    use crate::{StoreOptions, WriteBatch};

    fn entry(value: &[u8], revision: u64) -> ModelEntry {
        ModelEntry { value: value.to_vec(), revision }
    }

    #[test]
    fn the_state_counts_revisions_and_forgets_deleted_keys() {
        let mut model = StoreModel::new();
        model.put(b"a", b"1");
        model.put(b"a", b"2");
        model.delete(b"a");
        model.put(b"a", b"3");
        model.put(b"b", b"x");
        assert_eq!(model.written(), Lsn(5));
        assert_eq!(model.state_at(Lsn(2)), ModelState::from([(b"a".to_vec(), entry(b"2", 2))]));
        assert_eq!(model.state_at(Lsn(3)), ModelState::new());
        let last = ModelState::from([(b"a".to_vec(), entry(b"3", 1)), (b"b".to_vec(), entry(b"x", 1))]);
        assert_eq!(model.state_at(Lsn(5)), last);
        model.settle(Lsn(4));
        assert_eq!((model.settled(), model.written()), (Lsn(4), Lsn(5)));
        assert_eq!(model.state_at(Lsn(5)), last, "settling keeps the state");
        model.truncate(Lsn(4));
        assert_eq!(model.written(), Lsn(4));
        assert_eq!(model.put(b"c", b"y"), Lsn(5), "the next record takes the freed LSN");
    }

    #[test]
    fn check_refuses_a_lost_write_a_half_batch_and_a_wrong_state() {
        let store = Store::open_with(SimFs::new(), "/model", StoreOptions::default()).unwrap();
        let mut model = StoreModel::new();
        store.put(b"k", b"v").unwrap();
        model.put(b"k", b"v");
        let mut batch = WriteBatch::default();
        batch.put(b"x", b"1").put(b"y", b"2");
        store.write(&batch).unwrap();
        model.record(b"x", Some(b"1"), true);
        model.record(b"y", Some(b"2"), false);
        assert_eq!(model.check(&store, Lsn(3)), Ok(Lsn(3)));

        let err = model.check(&store, Lsn(4)).unwrap_err();
        assert!(err.contains("LSN 4 was promised and is lost"), "{err}");
        let mut ahead = model.clone();
        ahead.settle(Lsn(3));
        ahead.put(b"z", b"3");
        ahead.settle(Lsn(4));
        let err = ahead.check(&store, Lsn(0)).unwrap_err();
        assert!(err.contains("LSN 4, kept before, is lost"), "{err}");
        let mut behind = model.clone();
        behind.truncate(Lsn(2));
        let err = behind.check(&store, Lsn(0)).unwrap_err();
        assert!(err.contains("LSN 3 was never written"), "{err}");
        let mut split = model.clone();
        split.truncate(Lsn(1));
        split.record(b"x", Some(b"1"), true);
        split.record(b"y", Some(b"2"), true);
        let err = split.check(&store, Lsn(0)).unwrap_err();
        assert!(err.contains("middle of a batch at LSN 3"), "{err}");
        let mut other = model.clone();
        other.truncate(Lsn(1));
        other.put(b"k", b"v");
        other.put(b"y", b"2");
        let err = other.check(&store, Lsn(0)).unwrap_err();
        assert!(err.contains("at position 0 the store has key \"k\" = \"v\" (revision 1"), "{err}");
        assert!(err.contains("the model key \"k\" = \"v\" (revision 2"), "{err}");
    }
}
