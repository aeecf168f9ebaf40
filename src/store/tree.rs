//! [`KvMap`]: the store's map, a persistent B+tree of [`Record`]s in key
//! order. Nodes are shared through `Arc`s: cloning the map (freezing it
//! for a snapshot) is O(1), and a change copies only the nodes on its path
//! that a clone still shares (`Arc::make_mut`), so a put never waits for a
//! snapshot and a snapshot never sees a later put.
//!
//! A leaf keeps its keys' 8-byte prefixes (as in [`StoreKey`]) in an array
//! of their own beside the records, so a search compares integers in one
//! or two cache lines and reaches into a record only on a prefix tie or to
//! confirm the key it found. A branch keeps the first key of each child
//! but the first as its separators.
//!
//! A map can be built in bulk from records in key order ([`KvMapBuilder`]):
//! full leaves, then each level of branches over them, with no search at
//! all; that is how a snapshot is loaded.
//!
//! **Invariant:** keys are strictly ascending across the leaves, left to
//! right; every key in child `i` of a branch is below separator `i` and
//! every key in child `i + 1` at or above it; all leaves are at the same
//! depth; no node holds more than its capacity; a branch has at least two
//! children. Checked by `check` in the tests after every operation.

use super::key::{KeyRef, StoreKey};
use super::record::Record;
use std::cmp::Ordering;
use std::ops::Bound;
use std::sync::Arc;

/// Records per leaf, at most. Small enough that copying a leaf shared
/// with a snapshot (an `Arc` increment per record) costs little.
const LEAF_CAP: usize = 32;
/// A leaf with fewer records after a delete is merged with or refilled
/// from a neighbour.
const LEAF_MIN: usize = LEAF_CAP / 4;
/// Children per branch, at most.
const BRANCH_CAP: usize = 32;
/// A branch with fewer children after a merge below it is merged with or
/// refilled from a neighbour.
const BRANCH_MIN: usize = BRANCH_CAP / 4;

/// Records in key order, with their prefixes, in one allocation (the
/// `Arc`'s): a search reads the count and the prefixes, one or two cache
/// lines, then the one record it lands on.
struct Leaf {
    len: usize,
    prefixes: [u64; LEAF_CAP],
    records: [Option<Record>; LEAF_CAP],
}

struct Branch {
    /// Separator `i` (prefix and bytes) divides child `i` from child `i + 1`.
    prefixes: Vec<u64>,
    keys: Vec<Arc<[u8]>>,
    children: Vec<Node>,
}

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

impl Leaf {
    fn new() -> Leaf {
        const NONE: Option<Record> = None;
        Leaf { len: 0, prefixes: [0; LEAF_CAP], records: [NONE; LEAF_CAP] }
    }

    fn len(&self) -> usize {
        self.len
    }

    fn prefixes(&self) -> &[u64] {
        &self.prefixes[..self.len]
    }

    fn record(&self, i: usize) -> &Record {
        self.records[..self.len][i].as_ref().expect("a leaf's first len slots hold records")
    }

    #[cfg(test)]
    fn records(&self) -> impl Iterator<Item = &Record> {
        (0..self.len).map(|i| self.record(i))
    }

    fn search(&self, key: KeyRef<'_>) -> Result<usize, usize> {
        search(self.prefixes(), |i| self.record(i).key(), key)
    }

    fn first_key(&self) -> StoreKey {
        StoreKey::from_parts(self.prefixes[0], self.record(0).key().into())
    }

    fn push(&mut self, prefix: u64, record: Record) {
        assert!(self.len < LEAF_CAP, "a full leaf takes no more");
        self.prefixes[self.len] = prefix;
        self.records[self.len] = Some(record);
        self.len += 1;
    }

    fn put(&mut self, i: usize, prefix: u64, record: Record) {
        assert!(self.len < LEAF_CAP && i <= self.len, "a slot for record {i}");
        self.prefixes.copy_within(i..self.len, i + 1);
        self.records[i..=self.len].rotate_right(1);
        self.prefixes[i] = prefix;
        self.records[i] = Some(record);
        self.len += 1;
    }

    fn remove(&mut self, i: usize) -> Record {
        let record = self.records[..self.len][i].take().expect("a record to remove");
        self.prefixes.copy_within(i + 1..self.len, i);
        self.records[i..self.len].rotate_left(1);
        self.len -= 1;
        record
    }

    /// Moves records `at..` to the end of `to`.
    fn move_tail(&mut self, at: usize, to: &mut Leaf) {
        let n = self.len - at;
        assert!(to.len + n <= LEAF_CAP, "room for the records moved");
        to.prefixes[to.len..to.len + n].copy_from_slice(&self.prefixes[at..self.len]);
        for i in 0..n {
            to.records[to.len + i] = self.records[at + i].take();
        }
        (self.len, to.len) = (at, to.len + n);
    }

    /// Moves records `at..` to the front of `to`.
    fn move_tail_to_front(&mut self, at: usize, to: &mut Leaf) {
        let n = self.len - at;
        assert!(to.len + n <= LEAF_CAP, "room for the records moved");
        to.prefixes.copy_within(0..to.len, n);
        to.records[..to.len + n].rotate_right(n);
        to.prefixes[..n].copy_from_slice(&self.prefixes[at..self.len]);
        for i in 0..n {
            to.records[i] = self.records[at + i].take();
        }
        (self.len, to.len) = (at, to.len + n);
    }

    /// Moves the first `n` records to the end of `to`.
    fn move_head(&mut self, n: usize, to: &mut Leaf) {
        assert!(n <= self.len && to.len + n <= LEAF_CAP, "room for the records moved");
        to.prefixes[to.len..to.len + n].copy_from_slice(&self.prefixes[..n]);
        for i in 0..n {
            to.records[to.len + i] = self.records[i].take();
        }
        self.prefixes.copy_within(n..self.len, 0);
        self.records[..self.len].rotate_left(n);
        (self.len, to.len) = (self.len - n, to.len + n);
    }

    /// Inserts at `i`; if the leaf was full, splits it and returns the
    /// right half with its first key. An insert at the end of a full leaf
    /// leaves it full and starts a new one, so keys that arrive in order
    /// fill their leaves.
    fn insert(&mut self, i: usize, prefix: u64, record: Record) -> Option<(StoreKey, Node)> {
        if self.len() < LEAF_CAP {
            self.put(i, prefix, record);
            return None;
        }
        let at = if i == LEAF_CAP { LEAF_CAP } else { LEAF_CAP / 2 };
        let mut right = Leaf::new();
        self.move_tail(at, &mut right);
        if i < at {
            self.put(i, prefix, record);
        } else {
            right.put(i - at, prefix, record);
        }
        Some((right.first_key(), Node::Leaf(Arc::new(right))))
    }
}

impl Clone for Leaf {
    fn clone(&self) -> Leaf {
        let mut leaf = Leaf::new();
        leaf.len = self.len;
        leaf.prefixes[..self.len].copy_from_slice(self.prefixes());
        leaf.records[..self.len].clone_from_slice(&self.records[..self.len]);
        leaf
    }
}

impl Branch {
    fn with_capacity() -> Branch {
        Branch {
            prefixes: Vec::with_capacity(BRANCH_CAP),
            keys: Vec::with_capacity(BRANCH_CAP),
            children: Vec::with_capacity(BRANCH_CAP + 1),
        }
    }

    /// The child whose keys `key` falls among.
    fn child_index(&self, key: KeyRef<'_>) -> usize {
        match search(&self.prefixes, |i| &self.keys[i][..], key) {
            Ok(i) => i + 1,
            Err(i) => i,
        }
    }

    fn push(&mut self, separator: Option<StoreKey>, child: Node) {
        if let Some(key) = separator {
            self.prefixes.push(key.prefix());
            self.keys.push(key.bytes().clone());
        }
        self.children.push(child);
    }

    /// Child `i` split and `right` (from `separator` up) goes after it; if
    /// the branch overflows, splits it and returns the right half with the
    /// separator between the halves.
    fn insert(&mut self, i: usize, separator: StoreKey, right: Node) -> Option<(StoreKey, Node)> {
        self.prefixes.insert(i, separator.prefix());
        self.keys.insert(i, separator.bytes().clone());
        self.children.insert(i + 1, right);
        if self.children.len() <= BRANCH_CAP {
            return None;
        }
        // Children kept on the left: all but two if the new one is last
        // (keys arriving in order fill their branches; a branch has two
        // children at least), else half.
        let at = if i + 1 == BRANCH_CAP { BRANCH_CAP - 1 } else { self.children.len() / 2 };
        let mut half = Branch::with_capacity();
        half.children.extend(self.children.drain(at..));
        half.prefixes.extend(self.prefixes.drain(at..));
        half.keys.extend(self.keys.drain(at..));
        let up = StoreKey::from_parts(
            self.prefixes.pop().expect("a separator left of the split"),
            self.keys.pop().expect("a separator left of the split"),
        );
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
                if a.len() + b.len() <= LEAF_CAP {
                    b.move_tail(0, a);
                    true
                } else {
                    let keep = (a.len() + b.len()) / 2;
                    if a.len() > keep {
                        a.move_tail_to_front(keep, b);
                    } else {
                        b.move_head(keep - a.len(), a);
                    }
                    self.prefixes[left] = b.prefixes[0];
                    self.keys[left] = b.record(0).key().into();
                    false
                }
            }
            (Node::Branch(a), Node::Branch(b)) => {
                let (a, b) = (Arc::make_mut(a), Arc::make_mut(b));
                // All the children of both, with all the separators between
                // them: the one in this branch between the two included.
                a.prefixes.push(self.prefixes[left]);
                a.keys.push(self.keys[left].clone());
                a.prefixes.append(&mut b.prefixes);
                a.keys.append(&mut b.keys);
                a.children.append(&mut b.children);
                // A child of either may be under its minimum, if a merge
                // of sorted changes left its parent with it alone.
                if a.children.len() <= BRANCH_CAP {
                    a.fix_underfull_children();
                    true
                } else {
                    let keep = a.children.len() / 2;
                    b.children.extend(a.children.drain(keep..));
                    b.prefixes.extend(a.prefixes.drain(keep..));
                    b.keys.extend(a.keys.drain(keep..));
                    self.prefixes[left] = a.prefixes.pop().expect("a separator between the halves");
                    self.keys[left] = a.keys.pop().expect("a separator between the halves");
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
        self.prefixes.remove(i - 1);
        self.keys.remove(i - 1);
    }
}

impl Clone for Branch {
    fn clone(&self) -> Branch {
        let mut branch = Branch::with_capacity();
        branch.prefixes.extend_from_slice(&self.prefixes);
        branch.keys.extend(self.keys.iter().cloned());
        branch.children.extend(self.children.iter().cloned());
        branch
    }
}

impl Node {
    fn is_underfull(&self) -> bool {
        match self {
            Node::Leaf(leaf) => leaf.len() < LEAF_MIN,
            Node::Branch(branch) => branch.children.len() < BRANCH_MIN,
        }
    }
}

impl Default for KvMap {
    fn default() -> Self {
        KvMap { root: Node::Leaf(Arc::new(Leaf::new())), len: 0 }
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

    pub(crate) fn get(&self, key: KeyRef<'_>) -> Option<&Record> {
        let mut node = &self.root;
        loop {
            match node {
                Node::Branch(branch) => node = &branch.children[branch.child_index(key)],
                Node::Leaf(leaf) => return leaf.search(key).ok().map(|i| leaf.record(i)),
            }
        }
    }

    /// Sets the record of `key` to what `make` returns given the record it
    /// has now, which must be a record of `key`. Returns true if the key
    /// is new.
    pub(crate) fn upsert(&mut self, key: KeyRef<'_>, make: impl FnOnce(Option<&Record>) -> Record) -> bool {
        let mut inserted = false;
        if let Some((separator, right)) = upsert_in(&mut self.root, key, make, &mut inserted) {
            let mut root = Branch::with_capacity();
            let left = std::mem::replace(&mut self.root, Node::Leaf(Arc::new(Leaf::new())));
            root.push(None, left);
            root.push(Some(separator), right);
            self.root = Node::Branch(Arc::new(root));
        }
        self.len += usize::from(inserted);
        inserted
    }

    /// Removes `key`; returns its record if it was there. Nothing is
    /// copied if it was not.
    pub(crate) fn remove(&mut self, key: KeyRef<'_>) -> Option<Record> {
        self.get(key)?;
        let removed = remove_in(&mut self.root, key);
        while let Node::Branch(root) = &self.root {
            if root.children.len() > 1 {
                break;
            }
            self.root = root.children[0].clone();
        }
        self.len -= 1;
        Some(removed)
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
                    return Iter { stack, leaf, position, remaining: self.len };
                }
            }
        }
    }

    /// Checks every invariant in the module's documentation (tests only).
    #[cfg(test)]
    pub(crate) fn check(&self) {
        fn walk(node: &Node, depth: usize, leaf_depth: &mut Option<usize>, out: &mut Vec<Record>) {
            match node {
                Node::Leaf(leaf) => {
                    assert!(leaf.len() <= LEAF_CAP);
                    assert!(leaf.records[leaf.len()..].iter().all(Option::is_none), "no record past the count");
                    for (p, r) in leaf.prefixes().iter().zip(leaf.records()) {
                        assert_eq!(*p, KeyRef::new(r.key()).prefix(), "a leaf's prefix is its record's");
                    }
                    assert_eq!(*leaf_depth.get_or_insert(depth), depth, "leaves at one depth");
                    out.extend(leaf.records().cloned());
                }
                Node::Branch(branch) => {
                    assert!(branch.children.len() >= 2 && branch.children.len() <= BRANCH_CAP);
                    assert_eq!(branch.keys.len() + 1, branch.children.len());
                    assert_eq!(branch.prefixes.len(), branch.keys.len());
                    for (i, child) in branch.children.iter().enumerate() {
                        let start = out.len();
                        walk(child, depth + 1, leaf_depth, out);
                        let below = &out[start..];
                        assert!(!below.is_empty(), "no empty subtree");
                        if i > 0 {
                            let separator = &branch.keys[i - 1][..];
                            assert_eq!(branch.prefixes[i - 1], KeyRef::new(separator).prefix());
                            assert!(below[0].key() >= separator, "child {i} starts at or above its separator");
                        }
                        if i < branch.keys.len() {
                            assert!(
                                below[below.len() - 1].key() < &branch.keys[i][..],
                                "child {i} ends below the next"
                            );
                        }
                    }
                }
            }
        }
        let mut records = Vec::new();
        walk(&self.root, 0, &mut None, &mut records);
        assert_eq!(records.len(), self.len, "the count is the records'");
        assert!(records.windows(2).all(|w| w[0].key() < w[1].key()), "keys strictly ascending");
        assert!(self.iter().eq(records.iter()), "iteration visits the leaves in order");
    }
}

impl std::fmt::Debug for KvMap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

fn upsert_in(
    node: &mut Node,
    key: KeyRef<'_>,
    make: impl FnOnce(Option<&Record>) -> Record,
    inserted: &mut bool,
) -> Option<(StoreKey, Node)> {
    match node {
        Node::Leaf(leaf) => {
            let leaf = Arc::make_mut(leaf);
            match leaf.search(key) {
                Ok(i) => {
                    let record = make(Some(leaf.record(i)));
                    debug_assert_eq!(record.key(), key.bytes());
                    leaf.records[i] = Some(record);
                    None
                }
                Err(i) => {
                    *inserted = true;
                    let record = make(None);
                    debug_assert_eq!(record.key(), key.bytes());
                    leaf.insert(i, key.prefix(), record)
                }
            }
        }
        Node::Branch(branch) => {
            let branch = Arc::make_mut(branch);
            let i = branch.child_index(key);
            let (separator, right) = upsert_in(&mut branch.children[i], key, make, inserted)?;
            branch.insert(i, separator, right)
        }
    }
}

/// Removes `key`, which is in the tree under `node`.
fn remove_in(node: &mut Node, key: KeyRef<'_>) -> Record {
    match node {
        Node::Leaf(leaf) => {
            let leaf = Arc::make_mut(leaf);
            let i = leaf.search(key).expect("the key was found before removing it");
            leaf.remove(i)
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
}

impl<'a> Iterator for Iter<'a> {
    type Item = &'a Record;

    fn next(&mut self) -> Option<&'a Record> {
        loop {
            if self.position < self.leaf.len() {
                let record = self.leaf.record(self.position);
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
pub(crate) struct KvMapBuilder {
    /// Full leaves so far, each with its first key.
    leaves: Vec<(StoreKey, Node)>,
    leaf: Leaf,
    len: usize,
}

impl Default for KvMapBuilder {
    fn default() -> Self {
        KvMapBuilder { leaves: Vec::new(), leaf: Leaf::new(), len: 0 }
    }
}

impl KvMapBuilder {
    /// Adds the next record; false (and nothing added) if its key is not
    /// above the last one's.
    pub(crate) fn push(&mut self, record: Record) -> bool {
        let prefix = KeyRef::new(record.key()).prefix();
        let last = match (self.leaf.len(), self.leaves.last()) {
            (n, _) if n > 0 => Some((self.leaf.prefixes[n - 1], self.leaf.record(n - 1))),
            (_, Some((_, Node::Leaf(leaf)))) => Some((leaf.prefixes[leaf.len() - 1], leaf.record(leaf.len() - 1))),
            _ => None,
        };
        if let Some((last_prefix, last)) = last {
            if last_prefix.cmp(&prefix).then_with(|| last.key().cmp(record.key())) != Ordering::Less {
                return false;
            }
        }
        if self.leaf.len() == LEAF_CAP {
            self.finish_leaf();
        }
        self.leaf.push(prefix, record);
        self.len += 1;
        true
    }

    fn finish_leaf(&mut self) {
        let leaf = std::mem::replace(&mut self.leaf, Leaf::new());
        self.leaves.push((leaf.first_key(), Node::Leaf(Arc::new(leaf))));
    }

    /// Keys pushed so far.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn finish(mut self) -> KvMap {
        if self.len == 0 {
            return KvMap::new();
        }
        // The last leaf is the only one that may be short: if it is under
        // the minimum, it takes records from the one before.
        if self.leaf.len() < LEAF_MIN {
            if let Some((_, Node::Leaf(previous))) = self.leaves.last_mut() {
                let previous = Arc::get_mut(previous).expect("a leaf being built is not shared");
                let moved = (previous.len() + self.leaf.len()) / 2 - self.leaf.len();
                let at = previous.len() - moved;
                previous.move_tail_to_front(at, &mut self.leaf);
            }
        }
        self.finish_leaf();
        let level = self.leaves.into_iter().map(|(key, leaf)| (Some(key), leaf)).collect();
        KvMap { root: build_levels(level), len: self.len }
    }
}

/// Nodes of one depth, in key order, each with its first key (the first
/// node's may be unknown: no separator needs it), under as many levels of
/// branches as they need: the root.
fn build_levels(mut level: Vec<(Option<StoreKey>, Node)>) -> Node {
    if level.is_empty() {
        return Node::Leaf(Arc::new(Leaf::new()));
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

/// What a merge made of a node: the node itself, changed in place, or the
/// nodes that take its place (none, or two and more), each with its first
/// key (the first node's may be unknown).
enum Merged {
    Same,
    Replaced(Vec<(Option<StoreKey>, Node)>),
}

/// What a merge carries down the tree.
struct Merge<'s> {
    /// Where a record is encoded before its allocation.
    scratch: &'s mut Vec<u8>,
    /// A leaf's records during its merge.
    records: Vec<(u64, Record)>,
    /// Keys added less keys removed.
    added: isize,
}

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
    pub(crate) fn apply_sorted(&mut self, changes: &[Change<'_>], scratch: &mut Vec<u8>) {
        debug_assert!(changes.windows(2).all(|w| w[0].key.cmp_to(w[1].key).is_le()));
        if changes.is_empty() {
            return;
        }
        let mut merge = Merge { scratch, records: Vec::new(), added: 0 };
        if let Merged::Replaced(nodes) = merge_node(&mut self.root, changes, &mut merge) {
            self.root = build_levels(nodes);
        }
        while let Node::Branch(root) = &self.root {
            if root.children.len() > 1 {
                break;
            }
            self.root = root.children[0].clone();
        }
        self.len = self.len.checked_add_signed(merge.added).expect("no more keys removed than there were");
    }
}

fn merge_node(node: &mut Node, changes: &[Change<'_>], merge: &mut Merge<'_>) -> Merged {
    match node {
        Node::Leaf(leaf) => merge_leaf(Arc::make_mut(leaf), changes, merge),
        Node::Branch(branch) => merge_branch(Arc::make_mut(branch), changes, merge),
    }
}

/// Merges the leaf's records with the changes that fall among them.
fn merge_leaf(leaf: &mut Leaf, changes: &[Change<'_>], merge: &mut Merge<'_>) -> Merged {
    let out = &mut merge.records;
    out.clear();
    let mut i = 0;
    for change in changes {
        let key = change.key;
        while i < leaf.len && compare(leaf.prefixes[i], || leaf.record(i).key(), key).is_lt() {
            out.push((leaf.prefixes[i], leaf.records[i].take().expect("a record")));
            i += 1;
        }
        // The key's record: made by an earlier change of this batch, or the leaf's.
        let existing = if out.last().is_some_and(|(p, r)| compare(*p, || r.key(), key).is_eq()) {
            out.pop().map(|(_, r)| r)
        } else if i < leaf.len && compare(leaf.prefixes[i], || leaf.record(i).key(), key).is_eq() {
            i += 1;
            leaf.records[i - 1].take()
        } else {
            None
        };
        match change.put {
            Some((value, writer, timestamp_us)) => {
                let revision = existing.as_ref().map_or(1, |r| r.revision() + 1);
                merge.added += isize::from(existing.is_none());
                let record = Record::new(merge.scratch, key.bytes(), value, revision, writer, timestamp_us);
                out.push((key.prefix(), record));
            }
            None => merge.added -= isize::from(existing.is_some()),
        }
    }
    while i < leaf.len {
        out.push((leaf.prefixes[i], leaf.records[i].take().expect("a record")));
        i += 1;
    }
    leaf.len = 0;
    if out.is_empty() {
        return Merged::Replaced(Vec::new());
    }
    if out.len() <= LEAF_CAP {
        out.drain(..).for_each(|(prefix, record)| leaf.push(prefix, record));
        return Merged::Same;
    }
    let mut records = out.drain(..);
    let nodes = spread(records.len(), LEAF_CAP)
        .map(|size| {
            let mut part = Leaf::new();
            records.by_ref().take(size).for_each(|(prefix, record)| part.push(prefix, record));
            (Some(part.first_key()), Node::Leaf(Arc::new(part)))
        })
        .collect();
    Merged::Replaced(nodes)
}

/// Hands each child the changes that fall in it, puts what replaced a
/// child in its place, then evens out children left under their minimum
/// and splits the branch if it overflows.
fn merge_branch(branch: &mut Branch, changes: &[Change<'_>], merge: &mut Merge<'_>) -> Merged {
    let mut replaced = Vec::new();
    let mut start = 0;
    while start < changes.len() {
        let i = branch.child_index(changes[start].key);
        let end = match (branch.prefixes.get(i), branch.keys.get(i)) {
            (Some(&prefix), Some(separator)) => {
                start + changes[start..].partition_point(|c| compare(prefix, || separator, c.key).is_gt())
            }
            _ => changes.len(),
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
                if separator < branch.keys.len() {
                    branch.prefixes.remove(separator);
                    branch.keys.remove(separator);
                }
            }
            Some((_, first)) => {
                branch.children[i] = first;
                for (at, (key, node)) in (i + 1..).zip(nodes) {
                    let key = key.expect("a node after the first has its first key");
                    branch.prefixes.insert(at - 1, key.prefix());
                    branch.keys.insert(at - 1, key.bytes().clone());
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
    let mut prefixes = std::mem::take(&mut branch.prefixes).into_iter();
    let mut keys = std::mem::take(&mut branch.keys).into_iter();
    let mut nodes = Vec::with_capacity(sizes.len());
    for (g, size) in sizes.into_iter().enumerate() {
        // The separator before this group goes up as its first key.
        let first = (g > 0)
            .then(|| StoreKey::from_parts(prefixes.next().expect("a separator"), keys.next().expect("a separator")));
        let mut part = Branch::with_capacity();
        part.children.extend(children.by_ref().take(size));
        part.prefixes.extend(prefixes.by_ref().take(size - 1));
        part.keys.extend(keys.by_ref().take(size - 1));
        nodes.push((first, Node::Branch(Arc::new(part))));
    }
    Merged::Replaced(nodes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    fn record(scratch: &mut Vec<u8>, key: &[u8], revision: u64) -> Record {
        Record::new(scratch, key, &revision.to_le_bytes(), revision, "w", revision)
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
        Put(Vec<u8>),
        Delete(Vec<u8>),
        Freeze,
        Thaw,
        /// Puts (true) and deletes, merged in one sorted batch.
        Batch(Vec<(Vec<u8>, bool)>),
    }

    fn step_strategy() -> impl Strategy<Value = Step> {
        prop_oneof![
            6 => key_strategy().prop_map(Step::Put),
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
        map.apply_sorted(&changes, &mut Vec::new());
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
            let mut scratch = Vec::new();
            let mut builder = KvMapBuilder::default();
            for key in &initial {
                prop_assert!(builder.push(record(&mut scratch, key, 1)));
            }
            let mut map = builder.finish();
            map.check();
            let mut model: Model = initial.iter().map(|k| (k.clone(), (1, 1u64.to_le_bytes().to_vec()))).collect();
            let mut frozen: Vec<(KvMap, Contents)> = Vec::new();
            let mut tag = 1 << 32;
            for step in steps {
                match step {
                    Step::Put(key) => {
                        let revision = model.get(&key).map_or(1, |(r, _)| r + 1);
                        let new = map.upsert(KeyRef::new(&key), |old| {
                            assert_eq!(old.map_or(1, |r| r.revision() + 1), revision);
                            record(&mut scratch, &key, revision)
                        });
                        prop_assert_eq!(new, revision == 1);
                        model.insert(key, (revision, revision.to_le_bytes().to_vec()));
                    }
                    Step::Delete(key) => {
                        let removed = map.remove(KeyRef::new(&key)).map(|r| r.revision());
                        prop_assert_eq!(removed, model.remove(&key).map(|(r, _)| r));
                    }
                    Step::Freeze => frozen.push((map.clone(), contents(&map))),
                    Step::Thaw => drop(frozen.pop()),
                    Step::Batch(batch) => {
                        apply_batch(&mut map, &mut model, &batch, &mut tag);
                        map.check();
                    }
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
            let mut scratch = Vec::new();
            let mut map = KvMap::new();
            for key in keys.iter().rev() {
                map.upsert(KeyRef::new(key), |_| record(&mut scratch, key, 1));
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
    fn a_built_map_has_full_leaves_and_a_builder_refuses_keys_out_of_order() {
        let mut scratch = Vec::new();
        for n in [0u32, 1, 7, 8, 31, 32, 33, 39, 40, 1000, 1024, 1025, 40_000] {
            let mut builder = KvMapBuilder::default();
            for i in 0..n {
                assert!(builder.push(record(&mut scratch, &i.to_be_bytes(), 1)));
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
        assert!(builder.push(record(&mut scratch, b"b", 1)));
        assert!(!builder.push(record(&mut scratch, b"b", 2)), "a repeated key");
        assert!(!builder.push(record(&mut scratch, b"a", 2)), "a lower key");
        assert!(!builder.push(record(&mut scratch, b"a\0\0\0\0\0\0\0\0", 2)), "a lower key, same prefix as none");
        assert!(builder.push(record(&mut scratch, b"b\0", 2)));
        assert_eq!(builder.finish().len(), 2);
    }

    #[test]
    fn keys_in_order_fill_their_leaves_and_deletes_shrink_the_tree_back() {
        let mut scratch = Vec::new();
        let mut map = KvMap::new();
        for i in 0u32..10_000 {
            map.upsert(KeyRef::new(&i.to_be_bytes()), |_| record(&mut scratch, &i.to_be_bytes(), 1));
        }
        map.check();
        let Node::Branch(root) = &map.root else { panic!("10,000 keys need branches") };
        let Node::Branch(first) = &root.children[0] else { panic!("three levels") };
        let Node::Leaf(leaf) = &first.children[0] else { panic!("three levels") };
        assert_eq!(leaf.len(), LEAF_CAP, "appends keep leaves full");
        for i in 0u32..10_000 {
            assert_eq!(map.remove(KeyRef::new(&i.to_be_bytes())).map(|r| r.revision()), Some(1));
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
        let mut scratch = Vec::new();
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
                map.upsert(KeyRef::new(&key), |_| record(&mut scratch, &key, revision));
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
                assert_eq!(map.remove(KeyRef::new(key)).map(|r| r.revision()), model.remove(key));
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
