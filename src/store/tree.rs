//! [`KvMap`]: the store's map, a persistent B+tree of records in key
//! order. Nodes are shared through `Arc`s: cloning the map (freezing it
//! for a snapshot) is O(1), and a change copies only the nodes on its path
//! that a clone still shares (`Arc::make_mut`), so a put never waits for a
//! snapshot and a snapshot never sees a later put.
//!
//! A leaf holds its records (`record.rs`) one after another in one byte
//! arena, in key order, with no allocation per key: beside the arena, the
//! keys' 8-byte prefixes (as in [`StoreKey`]) and where each record ends.
//! A search compares integers in one or two cache lines and reaches into
//! the arena only on a prefix tie or to confirm the key it found. A leaf
//! is its node plus three exact buffers (copied whole when a clone shares it), at
//! most [`LEAF_CAP`] records and [`LEAF_BYTES`] bytes. A branch keeps the
//! first key of each child but the first as its separators.
//!
//! A map can be built in bulk from records in key order ([`KvMapBuilder`]):
//! full leaves, then each level of branches over them, with no search at
//! all; that is how a snapshot is loaded.
//!
//! **Invariant:** keys are strictly ascending across the leaves, left to
//! right; every key in child `i` of a branch is below separator `i` and
//! every key in child `i + 1` at or above it; all leaves are at the same
//! depth; a leaf holds at most `LEAF_CAP` records and at most `LEAF_BYTES`
//! bytes unless it holds one record; a branch holds at most `BRANCH_CAP`
//! children and at least two; every record's writer id is in the map's
//! `Writers`. Checked by `check` in the tests after every operation.

use super::key::{KeyRef, StoreKey};
use super::record::{self, Record, Writers};
use std::cmp::Ordering;
use std::ops::{Bound, Range};
use std::sync::Arc;

/// Records per leaf, at most.
const LEAF_CAP: usize = 32;
/// Bytes of records per leaf, at most, unless the leaf holds one record.
/// Small enough that the copy of a leaf the published state still shares
/// (once per leaf a fold touches) or an insert's move of the records after
/// it costs little; large enough that a leaf's own overhead (its three
/// allocations and its separator in the branch above) is a few bytes a key.
const LEAF_BYTES: usize = 4 << 10;
/// A leaf with fewer records and under a quarter of `LEAF_BYTES` after a
/// delete is merged with or refilled from a neighbour.
const LEAF_MIN: usize = LEAF_CAP / 4;
/// Children per branch, at most.
const BRANCH_CAP: usize = 32;
/// A branch with fewer children after a merge below it is merged with or
/// refilled from a neighbour.
const BRANCH_MIN: usize = BRANCH_CAP / 4;

/// Records in key order, in one arena, with their prefixes.
#[derive(Clone, Default)]
struct Leaf {
    prefixes: Vec<u64>,
    /// Where record `i` ends in `data` (it starts where record `i - 1` ends).
    ends: Vec<u32>,
    data: Vec<u8>,
}

struct Branch {
    /// Separator `i` divides child `i` from child `i + 1`.
    separators: Separators,
    children: Vec<Node>,
}

/// A branch's separator keys: a leaf's arena holding bare keys instead of
/// records (their prefixes, and their bytes back to back), so a branch's
/// copy is three buffer copies, not a reference count touched per key.
#[derive(Clone, Default)]
struct Separators(Leaf);

#[derive(Clone)]
enum Node {
    Leaf(Arc<Leaf>),
    Branch(Arc<Branch>),
}

/// The store's map: every live key's record, in key order. Cloning it
/// is O(1) and the clone never changes.
#[derive(Clone)]
pub struct KvMap {
    root: Node,
    len: usize,
    writers: Writers,
    /// The last writer looked up and its id: most changes in a row are one
    /// writer's.
    last_writer: Option<(Arc<str>, u32)>,
}

/// Where `key` is among keys given by `prefixes` and `bytes`, in order:
/// `Ok(i)` if it is key `i`, `Err(i)` if it belongs before key `i`.
fn search<'n>(prefixes: &[u64], bytes: impl Fn(usize) -> &'n [u8], key: KeyRef<'_>) -> Result<usize, usize> {
    let (mut low, mut high) = (0, prefixes.len());
    while low < high {
        let mid = low + (high - low) / 2;
        match prefixes[mid].cmp(&key.prefix()).then_with(|| bytes(mid).cmp(key.bytes())) {
            Ordering::Less => low = mid + 1,
            Ordering::Greater => high = mid,
            Ordering::Equal => return Ok(mid),
        }
    }
    Err(low)
}

/// Makes room for `additional` more items, growing by an eighth at least:
/// a leaf's arrays are exact when built or copied, and grow by little.
fn grow<T>(v: &mut Vec<T>, additional: usize) {
    if v.capacity() - v.len() < additional {
        v.reserve_exact(additional.max(v.capacity() / 8 + 1));
    }
}

/// Gives back a buffer's room once it is more than twice what it holds
/// plus `spare` items.
fn shrink_if_loose<T>(v: &mut Vec<T>, spare: usize) {
    if v.capacity() > 2 * v.len() + spare {
        v.shrink_to_fit();
    }
}

/// Buffers of leaves dropped, for the next leaves a fold copies: a fold
/// at scale copies about a leaf per change while the leaves it replaces
/// are dropped with the state it replaced, and glibc's allocator spends
/// more on a kilobyte-sized chunk's free and reuse (bins sorted by size,
/// consolidation, another thread's arena) than the copy costs.
///
/// A leaf a fold copies gets an arena of a class size (a multiple of
/// `SPARE_STEP` between `LEAF_BYTES / 2` and `2 * LEAF_BYTES`, at most
/// `SPARE_STEP - 1` bytes more than it needs), and only arenas of a class
/// size come back, to their class: a spare never holds a small leaf in a
/// large arena. At most `SPARE_LEAVES_MAX` in all, taken and given back
/// with `try_lock`, so no thread ever waits for another here (a busy pool
/// means an allocation or a free).
static SPARE_LEAVES: parking_lot::Mutex<SpareLeaves> =
    parking_lot::const_mutex(SpareLeaves { classes: [const { Vec::new() }; SPARE_CLASSES], count: 0 });

struct SpareLeaves {
    classes: [Vec<Leaf>; SPARE_CLASSES],
    count: usize,
}

const SPARE_STEP: usize = 256;
const SPARE_CLASSES: usize = (2 * LEAF_BYTES - LEAF_BYTES / 2) / SPARE_STEP + 1;
/// About the leaves a fold share of a large tree copies (a share there
/// is a few hundred to a thousand records, a leaf each): under 5 MiB.
const SPARE_LEAVES_MAX: usize = 1024;

/// The class of an arena of `capacity` bytes, if it is a class size.
fn spare_class(capacity: usize) -> Option<usize> {
    let classed = capacity.is_multiple_of(SPARE_STEP) && (LEAF_BYTES / 2..=2 * LEAF_BYTES).contains(&capacity);
    classed.then(|| (capacity - LEAF_BYTES / 2) / SPARE_STEP)
}

impl Drop for Leaf {
    fn drop(&mut self) {
        let Some(class) = spare_class(self.data.capacity()) else { return };
        if let Some(mut spare) = SPARE_LEAVES.try_lock() {
            if spare.count < SPARE_LEAVES_MAX {
                let mut leaf = Leaf {
                    prefixes: std::mem::take(&mut self.prefixes),
                    ends: std::mem::take(&mut self.ends),
                    data: std::mem::take(&mut self.data),
                };
                leaf.prefixes.clear();
                leaf.ends.clear();
                leaf.data.clear();
                spare.classes[class].push(leaf);
                spare.count += 1;
            }
        }
    }
}

impl Leaf {
    /// An empty leaf with room for `count` records of `bytes` bytes in
    /// all: a spare one of its class if there is one.
    fn with_room(count: usize, bytes: usize) -> Leaf {
        let capacity = bytes.next_multiple_of(SPARE_STEP);
        let class = spare_class(capacity);
        let spare = class.and_then(|class| {
            let mut spare = SPARE_LEAVES.try_lock()?;
            let leaf = spare.classes[class].pop()?;
            spare.count -= 1;
            Some(leaf)
        });
        let mut leaf = spare.unwrap_or_else(|| Leaf {
            prefixes: Vec::new(),
            ends: Vec::new(),
            data: Vec::with_capacity(if class.is_some() { capacity } else { bytes }),
        });
        leaf.prefixes.reserve_exact(count);
        leaf.ends.reserve_exact(count);
        leaf
    }

    fn len(&self) -> usize {
        self.ends.len()
    }

    fn bytes(&self) -> usize {
        self.data.len()
    }

    /// Where record `i` starts (`i == len`: the arena's end).
    fn start(&self, i: usize) -> usize {
        if i == 0 {
            0
        } else {
            self.ends[i - 1] as usize
        }
    }

    fn raw(&self, i: usize) -> &[u8] {
        &self.data[self.start(i)..self.ends[i] as usize]
    }

    fn key(&self, i: usize) -> &[u8] {
        record::key(self.raw(i))
    }

    fn record<'a>(&'a self, i: usize, writers: &'a Writers) -> Record<'a> {
        Record::new(self.raw(i), writers)
    }

    fn search(&self, key: KeyRef<'_>) -> Result<usize, usize> {
        search(&self.prefixes, |i| self.key(i), key)
    }

    fn first_key(&self) -> StoreKey {
        StoreKey::from_parts(self.prefixes[0], self.key(0).into())
    }

    /// Whether records `range` may make a leaf: at most `LEAF_CAP` of
    /// them, and at most `LEAF_BYTES` unless there is one.
    fn fits(&self, range: Range<usize>) -> bool {
        let (count, bytes) = (range.len(), self.start(range.end) - self.start(range.start));
        count <= LEAF_CAP && (bytes <= LEAF_BYTES || count == 1)
    }

    fn is_underfull(&self) -> bool {
        self.len() < LEAF_MIN && self.bytes() < LEAF_BYTES / 4
    }

    /// Records `range`, as a leaf of their own in exact allocations (a
    /// built or split leaf is kept: a class size would cost up to 255
    /// bytes a leaf for good).
    fn part(&self, range: Range<usize>) -> Leaf {
        let (from, to) = (self.start(range.start), self.start(range.end));
        Leaf {
            prefixes: self.prefixes[range.clone()].to_vec(),
            ends: self.ends[range].iter().map(|&end| end - from as u32).collect(),
            data: self.data[from..to].to_vec(),
        }
    }

    /// Makes this leaf hold `other`'s records, in its own buffers (grown if
    /// they must be, shrunk if they would be more than twice too large).
    fn assign(&mut self, other: &Leaf) {
        fn copy<T: Copy>(to: &mut Vec<T>, from: &[T]) {
            to.clear();
            grow(to, from.len());
            to.extend_from_slice(from);
            shrink_if_loose(to, 64);
        }
        copy(&mut self.prefixes, &other.prefixes);
        copy(&mut self.ends, &other.ends);
        copy(&mut self.data, &other.data);
    }

    /// Puts `n` bytes for a record of prefix `prefix` at `i`, in place of
    /// record `i` if `replace`, else before it; returns them, to encode
    /// the record into. The records after it move.
    fn splice(&mut self, i: usize, replace: bool, prefix: u64, n: usize) -> &mut [u8] {
        let at = self.start(i);
        let old_end = if replace { self.ends[i] as usize } else { at };
        let len = self.data.len();
        let new_len = len - (old_end - at) + n;
        if new_len > len {
            grow(&mut self.data, new_len - len);
            self.data.resize(new_len, 0);
            self.data.copy_within(old_end..len, at + n);
        } else if new_len < len {
            self.data.copy_within(old_end..len, at + n);
            self.data.truncate(new_len);
        }
        assert!(new_len <= u32::MAX as usize, "a leaf's arena is under 4 GiB");
        if !replace {
            grow(&mut self.prefixes, 1);
            grow(&mut self.ends, 1);
            self.prefixes.insert(i, prefix);
            self.ends.insert(i, at as u32);
        }
        let delta = (n as u32).wrapping_sub((old_end - at) as u32);
        self.ends[i] = (at + n) as u32;
        for end in &mut self.ends[i + 1..] {
            *end = end.wrapping_add(delta);
        }
        &mut self.data[at..at + n]
    }

    /// A copy of the leaf with `n` bytes for a record of prefix `prefix`
    /// at `i`, in place of record `i` if `replace`, else before it, and
    /// where those bytes start: [`Leaf::splice`] on a copy, in one pass.
    fn copy_with(&self, i: usize, replace: bool, prefix: u64, n: usize) -> (Leaf, usize) {
        let at = self.start(i);
        let (old_end, next) = if replace { (self.ends[i] as usize, i + 1) } else { (at, i) };
        let count = self.len() + usize::from(!replace);
        let mut leaf = Leaf::with_room(count, self.data.len() - (old_end - at) + n);
        leaf.data.extend_from_slice(&self.data[..at]);
        leaf.data.resize(at + n, 0);
        leaf.data.extend_from_slice(&self.data[old_end..]);
        leaf.prefixes.extend_from_slice(&self.prefixes[..i]);
        leaf.prefixes.push(prefix);
        leaf.prefixes.extend_from_slice(&self.prefixes[next..]);
        let delta = (n as u32).wrapping_sub((old_end - at) as u32);
        leaf.ends.extend_from_slice(&self.ends[..i]);
        leaf.ends.push(u32::try_from(at + n).expect("a leaf's arena is under 4 GiB"));
        leaf.ends.extend(self.ends[next..].iter().map(|end| end.wrapping_add(delta)));
        (leaf, at)
    }

    /// A copy of the leaf without record `i`, in one pass.
    fn copy_without(&self, i: usize) -> Leaf {
        let (at, end) = (self.start(i), self.ends[i] as usize);
        let mut leaf = Leaf::with_room(self.len() - 1, self.data.len() - (end - at));
        leaf.data.extend_from_slice(&self.data[..at]);
        leaf.data.extend_from_slice(&self.data[end..]);
        leaf.prefixes.extend_from_slice(&self.prefixes[..i]);
        leaf.prefixes.extend_from_slice(&self.prefixes[i + 1..]);
        leaf.ends.extend_from_slice(&self.ends[..i]);
        leaf.ends.extend(self.ends[i + 1..].iter().map(|&e| e - (end - at) as u32));
        leaf
    }

    /// Sets the record of `key` in `leaf`: replaces it (its revision
    /// bumped) or inserts it (revision 1). A leaf a clone of the map still
    /// shares is copied with the change made on the way. Returns where the
    /// record is and whether it is new.
    fn upsert(leaf: &mut Arc<Leaf>, key: KeyRef<'_>, value: &[u8], writer: u32, timestamp_us: u64) -> (usize, bool) {
        let n = record::encoded_len(key.bytes(), value);
        let (i, revision, new) = match leaf.search(key) {
            Ok(i) => (i, record::revision(leaf.raw(i)) + 1, false),
            Err(i) => (i, 1, true),
        };
        let out = match Arc::get_mut(leaf) {
            Some(own) => own.splice(i, !new, key.prefix(), n),
            None => {
                let (copy, at) = leaf.copy_with(i, !new, key.prefix(), n);
                *leaf = Arc::new(copy);
                let own = Arc::get_mut(leaf).expect("a leaf just made is not shared");
                &mut own.data[at..at + n]
            }
        };
        record::encode(out, key.bytes(), value, revision, writer, timestamp_us);
        (i, new)
    }

    /// Removes record `i` of `leaf` (copied without it if shared); returns
    /// its revision.
    fn remove_shared(leaf: &mut Arc<Leaf>, i: usize) -> u64 {
        match Arc::get_mut(leaf) {
            Some(own) => own.remove(i),
            None => {
                let revision = record::revision(leaf.raw(i));
                *leaf = Arc::new(leaf.copy_without(i));
                revision
            }
        }
    }

    /// Removes record `i`; returns its revision.
    fn remove(&mut self, i: usize) -> u64 {
        let revision = record::revision(self.raw(i));
        self.cut_out(i);
        shrink_if_loose(&mut self.data, 1024);
        revision
    }

    /// Removes item `i`'s bytes, prefix and end.
    fn cut_out(&mut self, i: usize) {
        let (at, end) = (self.start(i), self.ends[i] as usize);
        self.data.copy_within(end.., at);
        self.data.truncate(self.data.len() - (end - at));
        self.prefixes.remove(i);
        self.ends.remove(i);
        for e in &mut self.ends[i..] {
            *e -= (end - at) as u32;
        }
    }

    /// Appends a record already encoded (`raw`, its key's prefix `prefix`).
    fn push_raw(&mut self, prefix: u64, raw: &[u8]) {
        grow(&mut self.data, raw.len());
        grow(&mut self.prefixes, 1);
        grow(&mut self.ends, 1);
        self.data.extend_from_slice(raw);
        self.prefixes.push(prefix);
        self.ends.push(u32::try_from(self.data.len()).expect("a leaf's arena is under 4 GiB"));
    }

    /// Appends a record of these fields.
    fn push(&mut self, key: KeyRef<'_>, value: &[u8], revision: u64, writer: u32, timestamp_us: u64) {
        let n = self.len();
        let out = self.splice(n, false, key.prefix(), record::encoded_len(key.bytes(), value));
        record::encode(out, key.bytes(), value, revision, writer, timestamp_us);
    }

    /// Appends every record of `other`.
    fn append(&mut self, other: &Leaf) {
        let base = self.data.len() as u32;
        grow(&mut self.data, other.data.len());
        self.data.extend_from_slice(&other.data);
        self.prefixes.extend_from_slice(&other.prefixes);
        self.ends.extend(other.ends.iter().map(|&end| base + end));
    }

    /// Where to cut the records in two leaves that both fit, their bytes
    /// as near halves as can be; `None` if no cut makes two that fit.
    fn balanced_cut(&self) -> Option<usize> {
        let half = self.bytes() / 2;
        (1..self.len())
            .filter(|&at| self.fits(0..at) && self.fits(at..self.len()))
            .min_by_key(|&at| self.start(at).abs_diff(half))
    }

    /// Cuts the records into runs that fit in a leaf each, as even as
    /// they can be: a run ends once it holds its share of the records or
    /// of the bytes, or when the next record would not fit in it.
    fn cut(&self) -> Vec<Range<usize>> {
        let n = self.len();
        let runs = n.div_ceil(LEAF_CAP).max(self.bytes().div_ceil(LEAF_BYTES)).max(1);
        let (share, share_bytes) = (n.div_ceil(runs), self.bytes().div_ceil(runs));
        let mut out = Vec::with_capacity(runs);
        let mut from = 0;
        for i in 0..n {
            let full = i + 1 - from >= share || self.start(i + 1) - self.start(from) >= share_bytes;
            if full || (i + 1 < n && !self.fits(from..i + 2)) {
                out.push(from..i + 1);
                from = i + 1;
            }
        }
        if from < n {
            out.push(from..n);
        }
        out
    }

    /// A leaf over its limits after an insert at `inserted`, cut into
    /// leaves that fit, each with its first key: in two at the end if the
    /// insert was at the end (keys that arrive in order fill their leaves),
    /// else in two halves, else in as many as it takes.
    fn split(&self, inserted: usize) -> Vec<(StoreKey, Leaf)> {
        let n = self.len();
        let runs = if inserted + 1 == n && self.fits(0..n - 1) {
            vec![0..n - 1, n - 1..n]
        } else if let Some(at) = self.balanced_cut() {
            vec![0..at, at..n]
        } else {
            self.cut()
        };
        runs.into_iter()
            .map(|run| {
                let leaf = self.part(run);
                (leaf.first_key(), leaf)
            })
            .collect()
    }
}

impl Separators {
    fn len(&self) -> usize {
        self.0.len()
    }

    fn key(&self, i: usize) -> &[u8] {
        self.0.raw(i)
    }

    /// Separator `i`'s prefix and bytes, if there is one.
    fn get(&self, i: usize) -> Option<(u64, &[u8])> {
        (i < self.len()).then(|| (self.0.prefixes[i], self.key(i)))
    }

    /// Separator `i` as a key of its own.
    fn store_key(&self, i: usize) -> StoreKey {
        StoreKey::from_parts(self.0.prefixes[i], self.key(i).into())
    }

    fn search(&self, key: KeyRef<'_>) -> Result<usize, usize> {
        search(&self.0.prefixes, |i| self.key(i), key)
    }

    fn push(&mut self, key: &StoreKey) {
        self.insert(self.len(), key.prefix(), key.bytes());
    }

    /// Puts a separator of `prefix` and `bytes` before separator `i`.
    fn insert(&mut self, i: usize, prefix: u64, bytes: &[u8]) {
        self.0.splice(i, false, prefix, bytes.len()).copy_from_slice(bytes);
    }

    fn remove(&mut self, i: usize) {
        self.0.cut_out(i);
    }

    /// Replaces separator `i`.
    fn set(&mut self, i: usize, prefix: u64, bytes: &[u8]) {
        self.0.splice(i, true, prefix, bytes.len()).copy_from_slice(bytes);
        self.0.prefixes[i] = prefix;
    }

    /// Separators `range`, as a list of their own.
    fn part(&self, range: Range<usize>) -> Separators {
        Separators(self.0.part(range))
    }

    /// Removes separators `at..` and returns them.
    fn split_off(&mut self, at: usize) -> Separators {
        let tail = self.part(at..self.len());
        self.0.data.truncate(self.0.start(at));
        self.0.prefixes.truncate(at);
        self.0.ends.truncate(at);
        tail
    }

    /// Appends every separator of `other`.
    fn append(&mut self, other: &Separators) {
        self.0.append(&other.0);
    }

    /// Removes the last separator and returns it.
    fn pop(&mut self) -> Option<StoreKey> {
        let last = self.len().checked_sub(1)?;
        let key = self.store_key(last);
        self.split_off(last);
        Some(key)
    }
}

impl Branch {
    fn with_capacity() -> Branch {
        Branch { separators: Separators::default(), children: Vec::with_capacity(BRANCH_CAP + 1) }
    }

    /// The child whose keys `key` falls among.
    fn child_index(&self, key: KeyRef<'_>) -> usize {
        match self.separators.search(key) {
            Ok(i) => i + 1,
            Err(i) => i,
        }
    }

    fn push(&mut self, separator: Option<StoreKey>, child: Node) {
        if let Some(key) = separator {
            self.separators.push(&key);
        }
        self.children.push(child);
    }

    /// Child `i` split and `right` (each node with its first key) goes
    /// after it; if the branch overflows, splits it and returns the right
    /// half with the separator between the halves.
    fn insert(&mut self, i: usize, right: Vec<(StoreKey, Node)>) -> Option<(StoreKey, Node)> {
        let added = right.len();
        for (at, (separator, node)) in (i..).zip(right) {
            self.separators.insert(at, separator.prefix(), separator.bytes());
            self.children.insert(at + 1, node);
        }
        if self.children.len() <= BRANCH_CAP {
            return None;
        }
        // Children kept on the left: all but the new ones and the one before
        // them if they are last (keys arriving in order fill their branches;
        // a branch has two children at least), else half.
        let at = if i + added + 1 == self.children.len() { i } else { self.children.len() / 2 };
        let mut half = Branch::with_capacity();
        half.children.extend(self.children.drain(at..));
        half.separators = self.separators.split_off(at);
        let up = self.separators.pop().expect("a separator left of the split");
        Some((up, Node::Branch(Arc::new(half))))
    }

    /// Child `i` is under its minimum: merges it with a neighbour, or
    /// evens the two out if together they are too many for one node.
    fn rebalance(&mut self, i: usize) {
        if self.children.len() < 2 {
            return; // the branch's own parent (or the root's collapse) sees to it
        }
        let left = i.saturating_sub(1);
        let (lower, upper) = self.children.split_at_mut(left + 1);
        let merged = match (&mut lower[left], &mut upper[0]) {
            (Node::Leaf(a), Node::Leaf(b)) => {
                let (a, b) = (Arc::make_mut(a), Arc::make_mut(b));
                let seam = a.len();
                a.append(b);
                if a.fits(0..a.len()) {
                    true
                } else {
                    // Both fitted, so cutting at the seam does: a cut nearer
                    // the middle of the bytes is taken if there is one.
                    let both = std::mem::take(a);
                    let at = both.balanced_cut().unwrap_or(seam);
                    (*a, *b) = (both.part(0..at), both.part(at..both.len()));
                    self.separators.set(left, b.prefixes[0], b.key(0));
                    false
                }
            }
            (Node::Branch(a), Node::Branch(b)) => {
                let (a, b) = (Arc::make_mut(a), Arc::make_mut(b));
                // All the children of both, with all the separators between
                // them: the one in this branch between the two included.
                a.separators.push(&self.separators.store_key(left));
                a.separators.append(&std::mem::take(&mut b.separators));
                a.children.append(&mut b.children);
                // A child of either may be under its minimum, if a merge
                // of sorted changes left its parent with it alone.
                if a.children.len() <= BRANCH_CAP {
                    a.fix_underfull_children();
                    true
                } else {
                    let keep = a.children.len() / 2;
                    b.children.extend(a.children.drain(keep..));
                    b.separators = a.separators.split_off(keep);
                    let between = a.separators.pop().expect("a separator between the halves");
                    self.separators.set(left, between.prefix(), between.bytes());
                    a.fix_underfull_children();
                    b.fix_underfull_children();
                    false
                }
            }
            _ => unreachable!("siblings are at the same depth"),
        };
        if merged {
            self.remove_child(left + 1);
        }
    }

    /// Merges or refills every child under its minimum (after a merge of
    /// sorted changes, several may be).
    fn fix_underfull_children(&mut self) {
        let mut i = 0;
        while i < self.children.len() {
            if self.children.len() > 1 && self.children[i].is_underfull() {
                let before = self.children.len();
                self.rebalance(i);
                if self.children.len() < before {
                    i = i.saturating_sub(1); // merged into its left neighbour, or took in its right one
                    continue;
                }
            }
            i += 1;
        }
    }

    /// Removes child `i` (`i` > 0) and the separator before it.
    fn remove_child(&mut self, i: usize) {
        self.children.remove(i);
        self.separators.remove(i - 1);
    }
}

impl Clone for Branch {
    fn clone(&self) -> Branch {
        let mut branch = Branch { separators: self.separators.clone(), children: Vec::with_capacity(BRANCH_CAP + 1) };
        branch.children.extend(self.children.iter().cloned());
        branch
    }
}

impl Node {
    fn is_underfull(&self) -> bool {
        match self {
            Node::Leaf(leaf) => leaf.is_underfull(),
            Node::Branch(branch) => branch.children.len() < BRANCH_MIN,
        }
    }
}

impl Default for KvMap {
    fn default() -> Self {
        KvMap { root: Node::Leaf(Arc::default()), len: 0, writers: Writers::default(), last_writer: None }
    }
}

impl KvMap {
    /// An empty map.
    pub fn new() -> KvMap {
        KvMap::default()
    }

    /// Keys in the map.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the map holds no key.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The id of writer `name` in the map's table, added if new.
    fn writer_id(&mut self, name: &str) -> u32 {
        match &self.last_writer {
            Some((last, id)) if **last == *name => *id,
            _ => {
                let id = self.writers.id(name);
                self.last_writer = Some((self.writers.name(id).clone(), id));
                id
            }
        }
    }

    pub(crate) fn get(&self, key: KeyRef<'_>) -> Option<Record<'_>> {
        let mut node = &self.root;
        loop {
            match node {
                Node::Branch(branch) => node = &branch.children[branch.child_index(key)],
                Node::Leaf(leaf) => return leaf.search(key).ok().map(|i| leaf.record(i, &self.writers)),
            }
        }
    }

    /// Sets `key` to `value`, written by `writer` at `timestamp_us`, with a
    /// revision one above the key's record's (1 if the key is new). Returns
    /// true if the key is new.
    pub(crate) fn upsert(&mut self, key: KeyRef<'_>, value: &[u8], writer: &str, timestamp_us: u64) -> bool {
        let writer = self.writer_id(writer);
        let mut inserted = false;
        let right = upsert_in(&mut self.root, key, value, writer, timestamp_us, &mut inserted);
        if !right.is_empty() {
            let mut root = Branch::with_capacity();
            let left = std::mem::replace(&mut self.root, Node::Leaf(Arc::default()));
            root.push(None, left);
            for (separator, node) in right {
                root.push(Some(separator), node);
            }
            self.root = Node::Branch(Arc::new(root));
        }
        self.len += usize::from(inserted);
        inserted
    }

    /// Removes `key`; returns its record's revision if it was there.
    /// Nothing is copied if it was not.
    pub(crate) fn remove(&mut self, key: KeyRef<'_>) -> Option<u64> {
        self.get(key)?;
        let removed = remove_in(&mut self.root, key);
        self.collapse_root();
        self.len -= 1;
        Some(removed)
    }

    /// A root branch left with one child gives way to it.
    fn collapse_root(&mut self) {
        while let Node::Branch(root) = &self.root {
            if root.children.len() > 1 {
                break;
            }
            self.root = root.children[0].clone();
        }
    }

    /// Every record, in key order.
    pub(crate) fn iter(&self) -> Iter<'_> {
        self.range_from(Bound::Unbounded)
    }

    /// Records from `start` on, in key order.
    pub(crate) fn range_from(&self, start: Bound<KeyRef<'_>>) -> Iter<'_> {
        let mut stack = Vec::new();
        let mut node = &self.root;
        loop {
            match node {
                Node::Branch(branch) => {
                    let i = match start {
                        Bound::Unbounded => 0,
                        Bound::Included(key) | Bound::Excluded(key) => branch.child_index(key),
                    };
                    stack.push((&**branch, i));
                    node = &branch.children[i];
                }
                Node::Leaf(leaf) => {
                    let position = match start {
                        Bound::Unbounded => 0,
                        Bound::Included(key) => leaf.search(key).unwrap_or_else(|i| i),
                        Bound::Excluded(key) => leaf.search(key).map_or_else(|i| i, |i| i + 1),
                    };
                    return Iter { stack, leaf, position, remaining: self.len, writers: &self.writers };
                }
            }
        }
    }

    /// Checks every invariant in the module's documentation (tests only).
    #[cfg(test)]
    pub(crate) fn check(&self) {
        fn walk(node: &Node, depth: usize, leaf_depth: &mut Option<usize>, writers: &Writers, out: &mut Vec<Vec<u8>>) {
            match node {
                Node::Leaf(leaf) => {
                    assert!(leaf.fits(0..leaf.len()), "a leaf within its limits");
                    assert_eq!((leaf.prefixes.len(), leaf.start(leaf.len())), (leaf.len(), leaf.bytes()));
                    for i in 0..leaf.len() {
                        assert!(leaf.start(i) < leaf.ends[i] as usize, "records end in order");
                        let raw = leaf.raw(i);
                        assert!((record::writer_id(raw) as usize) < writers.len(), "a writer the table names");
                        let key = record::key(raw);
                        assert!(key.len() < raw.len(), "a key inside its record");
                        assert_eq!(leaf.prefixes[i], KeyRef::new(key).prefix(), "a leaf's prefix is its record's");
                        out.push(key.to_vec());
                    }
                    assert_eq!(*leaf_depth.get_or_insert(depth), depth, "leaves at one depth");
                }
                Node::Branch(branch) => {
                    assert!(branch.children.len() >= 2 && branch.children.len() <= BRANCH_CAP);
                    let separators = &branch.separators;
                    assert_eq!(separators.len() + 1, branch.children.len());
                    assert_eq!(
                        (separators.0.prefixes.len(), separators.0.start(separators.len())),
                        (separators.len(), separators.0.bytes())
                    );
                    for (i, child) in branch.children.iter().enumerate() {
                        let start = out.len();
                        walk(child, depth + 1, leaf_depth, writers, out);
                        let below = &out[start..];
                        assert!(!below.is_empty(), "no empty subtree");
                        if i > 0 {
                            let separator = separators.key(i - 1);
                            assert_eq!(separators.0.prefixes[i - 1], KeyRef::new(separator).prefix());
                            assert!(&below[0][..] >= separator, "child {i} starts at or above its separator");
                        }
                        if i < separators.len() {
                            assert!(below[below.len() - 1][..] < *separators.key(i), "child {i} ends below the next");
                        }
                    }
                }
            }
        }
        let mut keys = Vec::new();
        walk(&self.root, 0, &mut None, &self.writers, &mut keys);
        assert_eq!(keys.len(), self.len, "the count is the records'");
        assert!(keys.windows(2).all(|w| w[0] < w[1]), "keys strictly ascending");
        assert!(self.iter().map(|r| r.key()).eq(keys.iter().map(|k| &k[..])), "iteration visits the leaves in order");
    }
}

impl std::fmt::Debug for KvMap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// Sets the record of `key` under `node`; returns the nodes that split
/// off to its right, each with its first key (none if it did not split).
fn upsert_in(
    node: &mut Node,
    key: KeyRef<'_>,
    value: &[u8],
    writer: u32,
    timestamp_us: u64,
    inserted: &mut bool,
) -> Vec<(StoreKey, Node)> {
    match node {
        Node::Leaf(leaf) => {
            let (i, new) = Leaf::upsert(leaf, key, value, writer, timestamp_us);
            *inserted = new;
            let leaf = Arc::get_mut(leaf).expect("upsert leaves the leaf unshared");
            if leaf.fits(0..leaf.len()) {
                return Vec::new();
            }
            let mut parts = leaf.split(i).into_iter();
            *leaf = parts.next().expect("a split makes two leaves or more").1;
            parts.map(|(key, part)| (key, Node::Leaf(Arc::new(part)))).collect()
        }
        Node::Branch(branch) => {
            let branch = Arc::make_mut(branch);
            let i = branch.child_index(key);
            let right = upsert_in(&mut branch.children[i], key, value, writer, timestamp_us, inserted);
            if right.is_empty() {
                return right;
            }
            branch.insert(i, right).into_iter().collect()
        }
    }
}

/// Removes `key`, which is in the tree under `node`; returns its revision.
fn remove_in(node: &mut Node, key: KeyRef<'_>) -> u64 {
    match node {
        Node::Leaf(leaf) => {
            let i = leaf.search(key).expect("the key was found before removing it");
            Leaf::remove_shared(leaf, i)
        }
        Node::Branch(branch) => {
            let branch = Arc::make_mut(branch);
            let i = branch.child_index(key);
            let removed = remove_in(&mut branch.children[i], key);
            if branch.children[i].is_underfull() {
                branch.rebalance(i);
            }
            removed
        }
    }
}

/// Records in key order, from a start position.
pub(crate) struct Iter<'a> {
    /// The branches above the leaf and the child taken in each.
    stack: Vec<(&'a Branch, usize)>,
    leaf: &'a Leaf,
    position: usize,
    /// At most this many are left (the map's length: a bound for `size_hint`).
    remaining: usize,
    writers: &'a Writers,
}

impl<'a> Iterator for Iter<'a> {
    type Item = Record<'a>;

    fn next(&mut self) -> Option<Record<'a>> {
        loop {
            if self.position < self.leaf.len() {
                let record = self.leaf.record(self.position, self.writers);
                self.position += 1;
                self.remaining = self.remaining.saturating_sub(1);
                return Some(record);
            }
            // The next leaf: up to the first branch with a child left, then
            // down its leftmost path.
            let mut node = loop {
                let (branch, i) = self.stack.last_mut()?;
                let branch: &'a Branch = branch;
                if *i + 1 < branch.children.len() {
                    *i += 1;
                    break &branch.children[*i];
                }
                self.stack.pop();
            };
            loop {
                match node {
                    Node::Branch(branch) => {
                        self.stack.push((branch, 0));
                        node = &branch.children[0];
                    }
                    Node::Leaf(leaf) => {
                        self.leaf = leaf;
                        self.position = 0;
                        break;
                    }
                }
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(self.remaining))
    }
}

/// Builds a [`KvMap`] from records in strictly ascending key order.
#[derive(Default)]
pub(crate) struct KvMapBuilder {
    /// Full leaves so far, each with its first key.
    leaves: Vec<(StoreKey, Node)>,
    /// The leaf being filled: copied into exact allocations when full.
    leaf: Leaf,
    len: usize,
    map: KvMap,
}

impl KvMapBuilder {
    /// The prefix and bytes of the last key pushed, if any.
    fn last_key(&self) -> Option<(u64, &[u8])> {
        match (self.leaf.len(), self.leaves.last()) {
            (n, _) if n > 0 => Some((self.leaf.prefixes[n - 1], self.leaf.key(n - 1))),
            (_, Some((_, Node::Leaf(leaf)))) => Some((leaf.prefixes[leaf.len() - 1], leaf.key(leaf.len() - 1))),
            _ => None,
        }
    }

    /// Whether `key` is above every key pushed so far.
    fn is_above_last(&self, key: KeyRef<'_>) -> bool {
        self.last_key().is_none_or(|(prefix, last)| compare(prefix, || last, key).is_lt())
    }

    /// Adds the next record; false (and nothing added) if its key is not
    /// above the last one's.
    pub(crate) fn push(&mut self, key: &[u8], value: &[u8], revision: u64, writer: &str, timestamp_us: u64) -> bool {
        let key = KeyRef::new(key);
        if !self.is_above_last(key) {
            return false;
        }
        let n = record::encoded_len(key.bytes(), value);
        if self.leaf.len() == LEAF_CAP || (self.leaf.len() > 0 && self.leaf.bytes() + n > LEAF_BYTES) {
            self.finish_leaf();
        }
        let writer = self.map.writer_id(writer);
        self.leaf.push(key, value, revision, writer, timestamp_us);
        self.len += 1;
        true
    }

    fn finish_leaf(&mut self) {
        let leaf = self.leaf.part(0..self.leaf.len());
        self.leaf.prefixes.clear();
        self.leaf.ends.clear();
        self.leaf.data.clear();
        self.leaves.push((leaf.first_key(), Node::Leaf(Arc::new(leaf))));
    }

    /// Keys pushed so far.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Adds every record of `run`, a builder filled apart (on another
    /// thread) with the records that come next; false (and nothing added)
    /// if its first key is not above the last one's. The leaf being filled
    /// is closed first (it may stay short), and `run`'s writer ids are
    /// renumbered into this map's table where they differ.
    pub(crate) fn append(&mut self, mut run: KvMapBuilder) -> bool {
        let first = match (run.leaves.first(), run.leaf.len()) {
            (Some((key, _)), _) => KeyRef::new(key.bytes()),
            (None, n) if n > 0 => KeyRef::new(run.leaf.key(0)),
            _ => return true,
        };
        if !self.is_above_last(first) {
            return false;
        }
        let ids: Vec<u32> =
            (0..run.map.writers.len() as u32).map(|id| self.map.writer_id(run.map.writers.name(id))).collect();
        if ids.iter().enumerate().any(|(from, &to)| from as u32 != to) {
            let renumber = |leaf: &mut Leaf| {
                for i in 0..leaf.len() {
                    let (at, end) = (leaf.start(i), leaf.ends[i] as usize);
                    let raw = &mut leaf.data[at..end];
                    record::set_writer_id(raw, ids[record::writer_id(raw) as usize]);
                }
            };
            for (_, node) in &mut run.leaves {
                if let Node::Leaf(leaf) = node {
                    renumber(Arc::get_mut(leaf).expect("a leaf being built is not shared"));
                }
            }
            renumber(&mut run.leaf);
        }
        if self.leaf.len() > 0 {
            self.finish_leaf();
        }
        self.leaves.append(&mut run.leaves);
        self.leaf = std::mem::take(&mut run.leaf);
        self.len += run.len;
        true
    }

    pub(crate) fn finish(mut self) -> KvMap {
        if self.len == 0 {
            return KvMap { len: 0, ..self.map };
        }
        // The last leaf is the only one that may be short: if it is under
        // the minimum, it and the one before share their records.
        if self.leaf.is_underfull() {
            if let Some((_, Node::Leaf(previous))) = self.leaves.pop() {
                let mut both = Arc::try_unwrap(previous).ok().expect("a leaf being built is not shared");
                both.append(&self.leaf);
                let at = both.balanced_cut().expect("the cut between the two fits");
                let first = both.part(0..at);
                self.leaves.push((first.first_key(), Node::Leaf(Arc::new(first))));
                self.leaf = both.part(at..both.len());
            }
        }
        self.finish_leaf();
        let level = self.leaves.into_iter().map(|(key, leaf)| (Some(key), leaf)).collect();
        KvMap { root: build_levels(level), len: self.len, ..self.map }
    }
}

/// Nodes of one depth, in key order, each with its first key (the first
/// node's may be unknown: no separator needs it), under as many levels of
/// branches as they need: the root.
fn build_levels(mut level: Vec<(Option<StoreKey>, Node)>) -> Node {
    if level.is_empty() {
        return Node::Leaf(Arc::default());
    }
    while level.len() > 1 {
        // As few branches as will hold the level, the children spread
        // evenly, so every branch has at least half its capacity.
        let groups = spread(level.len(), BRANCH_CAP);
        let mut children = level.into_iter();
        level = groups
            .map(|size| {
                let mut branch = Branch::with_capacity();
                let (first, child) = children.next().expect("every branch has children");
                branch.push(None, child);
                for (key, child) in children.by_ref().take(size - 1) {
                    branch.push(Some(key.expect("a node after the first has its first key")), child);
                }
                (first, Node::Branch(Arc::new(branch)))
            })
            .collect();
    }
    level.pop().expect("one node is left").1
}

/// The sizes of as few groups of at most `cap` as hold `n` items, as
/// equal as they can be.
fn spread(n: usize, cap: usize) -> impl Iterator<Item = usize> {
    let groups = n.div_ceil(cap);
    let (per, extra) = (n / groups.max(1), n % groups.max(1));
    (0..groups).map(move |g| per + usize::from(g < extra))
}

/// One change of a sorted batch: `key` set to a value by a writer at a
/// time (a new record, its revision one above the key's record's), or
/// removed (`put` is `None`).
pub(crate) struct Change<'a> {
    pub key: KeyRef<'a>,
    pub put: Option<(&'a [u8], &'a str, u64)>,
}

/// A change with its writer's id in the map's table.
struct Resolved<'a> {
    key: KeyRef<'a>,
    put: Option<(&'a [u8], u32, u64)>,
}

/// What a merge made of a node: the node itself, changed in place, or the
/// nodes that take its place (none, or two and more), each with its first
/// key (the first node's may be unknown).
enum Merged {
    Same,
    Replaced(Vec<(Option<StoreKey>, Node)>),
}

/// What a merge carries down the tree.
#[derive(Default)]
struct Merge {
    /// A leaf's records during its merge.
    out: Leaf,
    /// Keys added less keys removed.
    added: isize,
}

/// Changes in one leaf up to which they are made in place, one by one;
/// more, and the leaf is rewritten once with all of them.
const IN_PLACE_CHANGES: usize = 4;

/// How the key of `prefix` (and `bytes`, read only on a tie: they are in
/// the record, a cache miss away) orders against `key`.
fn compare<'b>(prefix: u64, bytes: impl FnOnce() -> &'b [u8], key: KeyRef<'_>) -> Ordering {
    prefix.cmp(&key.prefix()).then_with(|| bytes().cmp(key.bytes()))
}

impl KvMap {
    /// Applies `changes`, sorted by key (several of one key in the order
    /// they were made), with the result of making them one by one: each
    /// node they touch is copied (if shared) and rewritten once, with all
    /// of its changes, instead of one descent of the tree per change.
    pub(crate) fn apply_sorted(&mut self, changes: &[Change<'_>]) {
        debug_assert!(changes.windows(2).all(|w| w[0].key.cmp_to(w[1].key).is_le()));
        if changes.is_empty() {
            return;
        }
        let changes: Vec<Resolved<'_>> = changes
            .iter()
            .map(|c| Resolved {
                key: c.key,
                put: c.put.map(|(value, writer, timestamp_us)| (value, self.writer_id(writer), timestamp_us)),
            })
            .collect();
        let mut merge = Merge::default();
        if let Merged::Replaced(nodes) = merge_node(&mut self.root, &changes, &mut merge) {
            self.root = build_levels(nodes);
        }
        self.collapse_root();
        self.len = self.len.checked_add_signed(merge.added).expect("no more keys removed than there were");
    }
}

fn merge_node(node: &mut Node, changes: &[Resolved<'_>], merge: &mut Merge) -> Merged {
    match node {
        Node::Leaf(leaf) => merge_leaf(leaf, changes, merge),
        Node::Branch(branch) => merge_branch(Arc::make_mut(branch), changes, merge),
    }
}

/// Makes the changes that fall among the leaf's records: a few in place,
/// many by merging them with the records into a new arena.
fn merge_leaf(node: &mut Arc<Leaf>, changes: &[Resolved<'_>], merge: &mut Merge) -> Merged {
    if changes.len() <= IN_PLACE_CHANGES {
        for change in changes {
            match change.put {
                Some((value, writer, timestamp_us)) => {
                    merge.added += isize::from(Leaf::upsert(node, change.key, value, writer, timestamp_us).1);
                }
                None => {
                    if let Ok(i) = node.search(change.key) {
                        Leaf::remove_shared(node, i);
                        merge.added -= 1;
                    }
                }
            }
        }
    } else {
        merge_into(node, changes, merge);
        match Arc::get_mut(node) {
            // Replay's leaves are the map's alone: their buffers are reused.
            Some(own) => own.assign(&merge.out),
            None => *node = Arc::new(merge.out.part(0..merge.out.len())),
        }
    }
    let leaf: &Leaf = node;
    if leaf.len() == 0 {
        return Merged::Replaced(Vec::new());
    }
    if leaf.fits(0..leaf.len()) {
        return Merged::Same;
    }
    let nodes = leaf.cut().into_iter().map(|run| {
        let part = leaf.part(run);
        (Some(part.first_key()), Node::Leaf(Arc::new(part)))
    });
    Merged::Replaced(nodes.collect())
}

/// Merges the leaf's records with the changes into `merge.out`, in key
/// order.
fn merge_into(leaf: &Leaf, changes: &[Resolved<'_>], merge: &mut Merge) {
    let out = &mut merge.out;
    out.prefixes.clear();
    out.ends.clear();
    out.data.clear();
    let mut i = 0;
    for change in changes {
        let key = change.key;
        while i < leaf.len() && compare(leaf.prefixes[i], || leaf.key(i), key).is_lt() {
            out.push_raw(leaf.prefixes[i], leaf.raw(i));
            i += 1;
        }
        // The key's revision now: from an earlier change of this batch, or the leaf's.
        let n = out.len();
        let existing = if n > 0 && compare(out.prefixes[n - 1], || out.key(n - 1), key).is_eq() {
            let revision = record::revision(out.raw(n - 1));
            out.remove(n - 1);
            Some(revision)
        } else if i < leaf.len() && compare(leaf.prefixes[i], || leaf.key(i), key).is_eq() {
            i += 1;
            Some(record::revision(leaf.raw(i - 1)))
        } else {
            None
        };
        match change.put {
            Some((value, writer, timestamp_us)) => {
                merge.added += isize::from(existing.is_none());
                out.push(key, value, existing.map_or(1, |r| r + 1), writer, timestamp_us);
            }
            None => merge.added -= isize::from(existing.is_some()),
        }
    }
    while i < leaf.len() {
        out.push_raw(leaf.prefixes[i], leaf.raw(i));
        i += 1;
    }
}
/// Hands each child the changes that fall in it, puts what replaced a
/// child in its place, then evens out children left under their minimum
/// and splits the branch if it overflows.
fn merge_branch(branch: &mut Branch, changes: &[Resolved<'_>], merge: &mut Merge) -> Merged {
    let mut replaced = Vec::new();
    let mut start = 0;
    while start < changes.len() {
        let i = branch.child_index(changes[start].key);
        let end = match branch.separators.get(i) {
            Some((prefix, separator)) => {
                start + changes[start..].partition_point(|c| compare(prefix, || separator, c.key).is_gt())
            }
            None => changes.len(),
        };
        if let Merged::Replaced(nodes) = merge_node(&mut branch.children[i], &changes[start..end], merge) {
            replaced.push((i, nodes));
        }
        start = end;
    }
    // From the last, so that the indices of the others still hold.
    for (i, nodes) in replaced.into_iter().rev() {
        let mut nodes = nodes.into_iter();
        match nodes.next() {
            None => {
                branch.children.remove(i);
                let separator = if i > 0 { i - 1 } else { 0 };
                if separator < branch.separators.len() {
                    branch.separators.remove(separator);
                }
            }
            Some((_, first)) => {
                branch.children[i] = first;
                for (at, (key, node)) in (i + 1..).zip(nodes) {
                    let key = key.expect("a node after the first has its first key");
                    branch.separators.insert(at - 1, key.prefix(), key.bytes());
                    branch.children.insert(at, node);
                }
            }
        }
    }
    branch.fix_underfull_children();
    if branch.children.is_empty() {
        return Merged::Replaced(Vec::new());
    }
    if branch.children.len() <= BRANCH_CAP {
        return Merged::Same;
    }
    // Too many children: as few branches as hold them, evenly.
    let sizes: Vec<usize> = spread(branch.children.len(), BRANCH_CAP).collect();
    let mut children = std::mem::take(&mut branch.children).into_iter();
    let separators = std::mem::take(&mut branch.separators);
    let mut nodes = Vec::with_capacity(sizes.len());
    // Child `from` is the group's first; the separator before it goes up
    // as the group's first key.
    let mut from: usize = 0;
    for size in sizes {
        let first = from.checked_sub(1).map(|before| separators.store_key(before));
        let mut part = Branch::with_capacity();
        part.children.extend(children.by_ref().take(size));
        part.separators = separators.part(from..from + size - 1);
        nodes.push((first, Node::Branch(Arc::new(part))));
        from += size;
    }
    Merged::Replaced(nodes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    /// A value of `len` bytes that tells the revision it was written at.
    fn value(revision: u64, len: usize) -> Vec<u8> {
        revision.to_le_bytes().iter().copied().cycle().take(len.max(8)).collect()
    }

    /// Value lengths: mostly small, some over a leaf's byte limit alone.
    fn len_strategy() -> impl Strategy<Value = usize> {
        prop_oneof![8 => 8usize..200, 2 => 200usize..3_000, 1 => 7_000usize..20_000]
    }

    /// Keys that share long prefixes, are short or empty, or differ only
    /// past 8 bytes: the prefix ties the search must get right.
    fn key_strategy() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            (0u16..600).prop_map(|i| i.to_be_bytes().to_vec()),
            (0u16..300).prop_map(|i| format!("/lights/{i}").into_bytes()),
            proptest::collection::vec(prop_oneof![Just(0u8), Just(1u8), Just(255u8)], 0..10),
        ]
    }

    #[derive(Clone, Debug)]
    enum Step {
        Put(Vec<u8>, usize),
        Delete(Vec<u8>),
        Freeze,
        Thaw,
        /// Puts (true) and deletes, merged in one sorted batch.
        Batch(Vec<(Vec<u8>, bool)>),
    }

    fn step_strategy() -> impl Strategy<Value = Step> {
        prop_oneof![
            6 => (key_strategy(), len_strategy()).prop_map(|(k, n)| Step::Put(k, n)),
            4 => key_strategy().prop_map(Step::Delete),
            1 => Just(Step::Freeze),
            1 => Just(Step::Thaw),
            2 => proptest::collection::vec((key_strategy(), proptest::bool::weighted(0.6)), 0..300).prop_map(Step::Batch),
        ]
    }

    /// Keys, revisions and values, in order.
    type Contents = Vec<(Vec<u8>, u64, Vec<u8>)>;

    fn contents(map: &KvMap) -> Contents {
        map.iter().map(|r| (r.key().to_vec(), r.revision(), r.value().to_vec())).collect()
    }

    /// The model of a map: each key's revision and value.
    type Model = BTreeMap<Vec<u8>, (u64, Vec<u8>)>;

    fn model_contents(model: &Model) -> Contents {
        model.iter().map(|(k, (r, v))| (k.clone(), *r, v.clone())).collect()
    }

    /// Applies `batch` to the map as one sorted merge and to the model one
    /// by one, in the order given; each put's value is a tag of its own.
    fn apply_batch(map: &mut KvMap, model: &mut Model, batch: &[(Vec<u8>, bool)], tag: &mut u64) {
        let tags: Vec<[u8; 8]> = batch
            .iter()
            .map(|_| {
                *tag += 1;
                tag.to_le_bytes()
            })
            .collect();
        for ((key, put), value) in batch.iter().zip(&tags) {
            if *put {
                let revision = model.get(key).map_or(1, |(r, _)| r + 1);
                model.insert(key.clone(), (revision, value.to_vec()));
            } else {
                model.remove(key);
            }
        }
        let mut order: Vec<usize> = (0..batch.len()).collect();
        order.sort_by(|&a, &b| batch[a].0.cmp(&batch[b].0)); // stable: one key's in the order given
        let changes: Vec<Change<'_>> = order
            .iter()
            .map(|&i| Change { key: KeyRef::new(&batch[i].0), put: batch[i].1.then(|| (&tags[i][..], "b", 7)) })
            .collect();
        map.apply_sorted(&changes);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Puts and deletes, against a BTreeMap; frozen copies taken along
        /// the way never change.
        #[test]
        fn the_map_is_a_btreemap_and_a_frozen_copy_never_changes(
            initial in proptest::collection::btree_set(key_strategy(), 0..400),
            steps in proptest::collection::vec(step_strategy(), 0..1500),
        ) {
            let mut builder = KvMapBuilder::default();
            for key in &initial {
                prop_assert!(builder.push(key, &value(1, 8), 1, "w", 1));
            }
            let mut map = builder.finish();
            map.check();
            let mut model: Model = initial.iter().map(|k| (k.clone(), (1, 1u64.to_le_bytes().to_vec()))).collect();
            let mut frozen: Vec<(KvMap, Contents)> = Vec::new();
            let mut tag = 1 << 32;
            for step in steps {
                match step {
                    Step::Put(key, len) => {
                        let revision = model.get(&key).map_or(1, |(r, _)| r + 1);
                        let new = map.upsert(KeyRef::new(&key), &value(revision, len), &format!("w{}", len % 3), revision);
                        prop_assert_eq!(new, revision == 1);
                        prop_assert_eq!(map.get(KeyRef::new(&key)).map(|r| r.revision()), Some(revision));
                        model.insert(key, (revision, value(revision, len)));
                    }
                    Step::Delete(key) => {
                        let removed = map.remove(KeyRef::new(&key));
                        prop_assert_eq!(removed, model.remove(&key).map(|(r, _)| r));
                    }
                    Step::Freeze => frozen.push((map.clone(), contents(&map))),
                    Step::Thaw => drop(frozen.pop()),
                    Step::Batch(batch) => {
                        apply_batch(&mut map, &mut model, &batch, &mut tag);
                        map.check();
                    }
                }
                if map.len() < 64 {
                    map.check();
                }
                prop_assert_eq!(map.len(), model.len());
            }
            map.check();
            prop_assert_eq!(contents(&map), model_contents(&model));
            for key in model.keys().chain(initial.iter()) {
                prop_assert_eq!(map.get(KeyRef::new(key)).map(|r| r.revision()), model.get(key).map(|(r, _)| *r));
            }
            for (copy, then) in &frozen {
                copy.check();
                prop_assert_eq!(&contents(copy), then);
            }
        }

        /// Ranges from every kind of bound start where a BTreeMap's do.
        #[test]
        fn ranges_start_where_a_btreemap_s_do(
            keys in proptest::collection::btree_set(key_strategy(), 0..300),
            starts in proptest::collection::vec(key_strategy(), 1..20),
        ) {
            let mut map = KvMap::new();
            for key in keys.iter().rev() {
                map.upsert(KeyRef::new(key), &value(1, 8), "w", 1);
            }
            map.check();
            for start in &starts {
                let got: Vec<&[u8]> = map.range_from(Bound::Included(KeyRef::new(start))).map(|r| r.key()).collect();
                let want: Vec<&[u8]> = keys.range::<[u8], _>((Bound::Included(&start[..]), Bound::Unbounded)).map(|k| &k[..]).collect();
                prop_assert_eq!(got, want);
                let got: Vec<&[u8]> = map.range_from(Bound::Excluded(KeyRef::new(start))).map(|r| r.key()).collect();
                let want: Vec<&[u8]> = keys.range::<[u8], _>((Bound::Excluded(&start[..]), Bound::Unbounded)).map(|k| &k[..]).collect();
                prop_assert_eq!(got, want);
            }
        }
    }

    #[test]
    fn a_spare_leaf_comes_back_empty_and_in_the_class_of_what_it_must_hold() {
        // Fill the spares with leaves of every class, records in them.
        let record = vec![7u8; 100];
        for bytes in (LEAF_BYTES / 2..=2 * LEAF_BYTES).step_by(SPARE_STEP / 2) {
            let mut leaf = Leaf::with_room(4, bytes);
            leaf.push_raw(1, &record);
            leaf.push_raw(2, &record);
            drop(leaf);
        }
        for bytes in (1..3 * LEAF_BYTES).step_by(97) {
            let leaf = Leaf::with_room(3, bytes);
            assert_eq!((leaf.len(), leaf.bytes(), leaf.prefixes.len()), (0, 0, 0), "{bytes} bytes: not empty");
            assert!(leaf.prefixes.capacity() >= 3 && leaf.ends.capacity() >= 3);
            let capacity = leaf.data.capacity();
            match spare_class(bytes.next_multiple_of(SPARE_STEP)) {
                Some(_) => assert_eq!(capacity, bytes.next_multiple_of(SPARE_STEP), "{bytes} bytes"),
                None => assert_eq!(capacity, bytes, "{bytes} bytes, outside the classes"),
            }
        }
    }

    #[test]
    fn a_built_map_has_full_leaves_and_a_builder_refuses_keys_out_of_order() {
        for n in [0u32, 1, 7, 8, 15, 16, 17, 63, 64, 65, 79, 80, 1000, 1024, 1025, 40_000] {
            let mut builder = KvMapBuilder::default();
            for i in 0..n {
                assert!(builder.push(&i.to_be_bytes(), &value(1, 8), 1, "w", 1));
            }
            assert_eq!(builder.len(), n as usize);
            let map = builder.finish();
            map.check();
            assert_eq!(map.len(), n as usize);
            fn leaves(node: &Node, sizes: &mut Vec<usize>) {
                match node {
                    Node::Leaf(l) => sizes.push(l.len()),
                    Node::Branch(b) => b.children.iter().for_each(|c| leaves(c, sizes)),
                }
            }
            let mut sizes = Vec::new();
            leaves(&map.root, &mut sizes);
            let last = sizes.len().saturating_sub(2);
            assert!(sizes[..last].iter().all(|&s| s == LEAF_CAP), "{n}: all leaves but the last two are full");
            if n > 0 {
                assert!(sizes.iter().all(|&s| s >= LEAF_MIN.min(n as usize)), "{n}: {sizes:?}");
            }
        }
        let mut builder = KvMapBuilder::default();
        assert!(builder.push(b"b", b"1", 1, "w", 1));
        assert!(!builder.push(b"b", b"2", 2, "w", 1), "a repeated key");
        assert!(!builder.push(b"a", b"2", 2, "w", 1), "a lower key");
        assert!(!builder.push(b"a\0\0\0\0\0\0\0\0", b"2", 2, "w", 1), "a lower key, same prefix as none");
        assert!(builder.push(b"b\0", b"2", 2, "w", 1));
        assert_eq!(builder.finish().len(), 2);
    }

    /// Runs built apart and appended make the map one builder would, their
    /// writers renumbered into the map's table; a run that does not start
    /// above the keys before it is refused whole.
    #[test]
    fn runs_built_apart_append_into_one_map_with_their_writers_renamed() {
        let writer = |i: u32| if i == 0 { "w" } else { ["y", "x", "w"][(i / 7 % 3) as usize] };
        let mut whole = KvMapBuilder::default();
        for i in 0..3000u32 {
            assert!(whole.push(&i.to_be_bytes(), &value(u64::from(i), 20), 1, writer(i), 5));
        }
        let whole = whole.finish();
        // Runs of every size, each with a table of its own: the first run
        // appended after key 0 starts with "y", id 0 in its table and not
        // in the map's, where "w" is id 0.
        let mut builder = KvMapBuilder::default();
        let mut from = 0u32;
        for (k, size) in [0u32, 1, 40, 7, 500, 33, 2419].into_iter().enumerate() {
            let mut run = KvMapBuilder::default();
            for i in from..from + size {
                assert!(run.push(&i.to_be_bytes(), &value(u64::from(i), 20), 1, writer(i), 5));
            }
            if k % 2 == 0 {
                assert!(builder.append(run));
            } else {
                // Every other run through the builder itself: both paths mix.
                for i in from..from + size {
                    assert!(builder.push(&i.to_be_bytes(), &value(u64::from(i), 20), 1, writer(i), 5));
                }
            }
            from += size;
        }
        assert_eq!(from, 3000);
        let mut late = KvMapBuilder::default();
        assert!(late.push(&2999u32.to_be_bytes(), b"again", 1, "w", 5));
        assert!(!builder.append(late), "a run starting at the last key");
        let map = builder.finish();
        map.check();
        assert!(map.iter().eq(whole.iter()), "the same records, writers by name");
    }

    #[test]
    fn keys_in_order_fill_their_leaves_and_deletes_shrink_the_tree_back() {
        let mut map = KvMap::new();
        for i in 0u32..10_000 {
            map.upsert(KeyRef::new(&i.to_be_bytes()), &value(1, 8), "w", 1);
        }
        map.check();
        let Node::Branch(root) = &map.root else { panic!("10,000 keys need branches") };
        let Node::Branch(first) = &root.children[0] else { panic!("three levels") };
        let Node::Leaf(leaf) = &first.children[0] else { panic!("three levels") };
        assert_eq!(leaf.len(), LEAF_CAP, "appends keep leaves full");
        for i in 0u32..10_000 {
            assert_eq!(map.remove(KeyRef::new(&i.to_be_bytes())), Some(1));
            if i % 997 == 0 {
                map.check();
            }
        }
        map.check();
        assert!(map.is_empty());
        assert!(matches!(&map.root, Node::Leaf(_)), "the root collapsed back to a leaf");
    }

    /// Enough keys for three levels of branches, grown and then emptied in
    /// random order with frozen copies along the way: branches split,
    /// merge and even out, and the root grows and collapses.
    #[test]
    fn a_large_map_grows_and_shrinks_through_every_branch_operation() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut map = KvMap::new();
        let mut model = BTreeMap::new();
        let mut frozen = Vec::new();
        for round in 0..3u64 {
            let (puts, key_space) =
                ([120_000, 60_000, 200_000][round as usize], [60_000u64, 5_000, 100_000][round as usize]);
            for step in 0..puts {
                let key = (next() % key_space).to_be_bytes();
                let revision = model.get(&key).map_or(1, |r| r + 1);
                map.upsert(KeyRef::new(&key), &value(revision, 8), "w", revision);
                model.insert(key, revision);
                if step % 40_000 == 0 {
                    frozen.push((map.clone(), contents(&map)));
                }
            }
            map.check();
            let mut keys: Vec<[u8; 8]> = model.keys().copied().collect();
            for i in (1..keys.len()).rev() {
                keys.swap(i, (next() % (i as u64 + 1)) as usize);
            }
            let keep = if round == 2 { 0 } else { keys.len() / 10 };
            for (step, key) in keys[keep..].iter().enumerate() {
                assert_eq!(map.remove(KeyRef::new(key)), model.remove(key));
                if step % 25_000 == 0 {
                    map.check();
                    frozen.push((map.clone(), contents(&map)));
                }
            }
            map.check();
            assert_eq!(
                contents(&map),
                model.iter().map(|(k, r)| (k.to_vec(), *r, r.to_le_bytes().to_vec())).collect::<Vec<_>>()
            );
        }
        assert!(map.is_empty() && matches!(&map.root, Node::Leaf(_)));
        for (copy, then) in &frozen {
            copy.check();
            assert_eq!(&contents(copy), then);
        }
    }

    /// Sorted batches merged into a large map: thousands of keys into an
    /// empty one, mixed puts and deletes, deletes of nearly all and then
    /// all keys (whole subtrees emptied in one merge), with frozen copies.
    #[test]
    fn sorted_batches_merge_into_a_large_map_as_one_by_one() {
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let (mut map, mut model, mut tag) = (KvMap::new(), Model::new(), 0);
        let mut frozen = Vec::new();
        let key = |i: u64| (i * 2654435761 % 1_000_003).to_be_bytes().to_vec();
        // 60,000 new keys in one batch, then batches of 5,000 mixed changes.
        let batch: Vec<(Vec<u8>, bool)> = (0..60_000).map(|i| (key(i), true)).collect();
        apply_batch(&mut map, &mut model, &batch, &mut tag);
        map.check();
        for round in 0..40 {
            let space = if round < 20 { 80_000 } else { 2_000 };
            let puts = if round < 30 { 0.6 } else { 0.1 };
            let batch: Vec<(Vec<u8>, bool)> =
                (0..5_000).map(|_| (key(next() % space), (next() % 1000) as f64 / 1000.0 < puts)).collect();
            apply_batch(&mut map, &mut model, &batch, &mut tag);
            if round % 5 == 0 {
                map.check();
                frozen.push((map.clone(), contents(&map)));
            }
            assert_eq!(map.len(), model.len(), "round {round}");
        }
        map.check();
        assert_eq!(contents(&map), model_contents(&model));
        // All but a few keys at either end (subtrees emptied down to one
        // child on the left), then all of them, deleted in one batch each.
        let keys: Vec<Vec<u8>> = model.keys().cloned().collect();
        let batch: Vec<(Vec<u8>, bool)> = keys[3..keys.len() - 300].iter().map(|k| (k.clone(), false)).collect();
        apply_batch(&mut map, &mut model, &batch, &mut tag);
        map.check();
        assert_eq!(contents(&map), model_contents(&model));
        let batch: Vec<(Vec<u8>, bool)> = keys.iter().map(|k| (k.clone(), false)).collect();
        apply_batch(&mut map, &mut model, &batch, &mut tag);
        map.check();
        assert!(map.is_empty() && matches!(&map.root, Node::Leaf(_)));
        for (copy, then) in &frozen {
            copy.check();
            assert_eq!(&contents(copy), then);
        }
    }
}
