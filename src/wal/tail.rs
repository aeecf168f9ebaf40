//! [`Chained`]: the records of the log's appends that carry their payloads
//! in memory, linked in LSN order as they get their LSNs.
//!
//! An engine hands each append a [`Chained`] holding its payloads; the log
//! gives it its first LSN and links it after the previous one in the same
//! critical section that assigns the LSNs, so the chain holds every such
//! append, in LSN order, before any thread can write or acknowledge it.
//! Nothing is published: a reader that knows a node at or before the
//! records it wants walks forward and stops at the log's acknowledged LSN,
//! so a record is visible exactly when the log acknowledges it.
//!
//! **Invariant:** `first` is set and the node linked (`next` of the one
//! before) under the log's lock, once each, before the records can be
//! written; the chain is gap-free from the node the log started it with.

use crate::Lsn;
use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

/// One append's records, in memory, in the log's chain.
pub struct Chained {
    /// The first record's LSN, once the log gave it (0 until then).
    first: AtomicU64,
    /// The payloads, back to back.
    bytes: Bytes,
    /// Where each payload ends in `bytes`; `None` for exactly one record.
    ends: Option<Box<[u32]>>,
    next: OnceLock<Arc<Chained>>,
}

/// Payload bytes a node of one record keeps inside itself, in the node's
/// own allocation: a store put of a 16-byte key and a 128-byte value is
/// about 170. A node is allocated by its committer and freed by the thread
/// that folds it (another thread), so each allocation saved is a
/// malloc and a cross-thread free saved per commit.
const INLINE_BYTES: usize = 224;

/// Spare nodes of one inline record, unlinked, held by no one else: a
/// chain's nodes are allocated by their committers and let go by the
/// thread that folds them, so without this every commit is a malloc that
/// finds its thread's cache empty and a free into another thread's arena
/// (both take the arena's lock, which the two threads then share). The
/// thread that lets a chain go gives its nodes back here, a chain at a
/// time; a committer takes them `SPARE_NODES_TAKEN` at a time into its
/// own `TAKEN`. At most `SPARE_NODES_MAX` (about 1 MiB), taken and given
/// back with `try_lock`: no thread waits for another here (a busy pool
/// means an allocation or a free). A thread keeps at most
/// `SPARE_NODES_TAKEN` (about 4 KiB) in its `TAKEN` until it commits again
/// or exits: an application of many threads that each commit once holds
/// that much per thread, no more.
static SPARE_NODES: Spares = parking_lot::const_mutex(Vec::new());
const SPARE_NODES_MAX: usize = 4096;
const SPARE_NODES_TAKEN: usize = 16;

thread_local! {
    /// The spare nodes this thread took from `SPARE_NODES`.
    static TAKEN: RefCell<Vec<Arc<Chained>>> = const { RefCell::new(Vec::new()) };
}

type Spares = parking_lot::Mutex<Vec<Arc<Chained>>>;

/// A spare node (unlinked, held once, inline, `next` empty) from `taken`,
/// refilled from `pool` when empty, if there is one.
fn take_spare(pool: &Spares, taken: &mut Vec<Arc<Chained>>) -> Option<Arc<Chained>> {
    if taken.is_empty() {
        let mut pool = pool.try_lock()?;
        let from = pool.len().saturating_sub(SPARE_NODES_TAKEN);
        taken.extend(pool.drain(from..));
    }
    taken.pop()
}

/// Gives `nodes` (each held once, unlinked, inline) back to `pool`, as
/// many as it has room for; the rest are freed.
fn give_back(pool: &Spares, nodes: Vec<Arc<Chained>>) {
    if let Some(mut pool) = pool.try_lock() {
        let room = SPARE_NODES_MAX.saturating_sub(pool.len());
        pool.extend(nodes.into_iter().take(room));
    }
}

/// A node's payload bytes: inline up to [`INLINE_BYTES`], else boxed.
// Large on purpose: the inline bytes are the point (one allocation).
#[allow(clippy::large_enum_variant)]
enum Bytes {
    Inline { len: u8, bytes: [u8; INLINE_BYTES] },
    Boxed(Box<[u8]>),
}

// `len` is a u8: the inline bytes must fit its range.
const _: () = assert!(INLINE_BYTES <= u8::MAX as usize);

impl Bytes {
    fn as_slice(&self) -> &[u8] {
        match self {
            Bytes::Inline { len, bytes } => &bytes[..*len as usize],
            Bytes::Boxed(bytes) => bytes,
        }
    }

    fn as_mut_slice(&mut self) -> &mut [u8] {
        match self {
            Bytes::Inline { len, bytes } => &mut bytes[..*len as usize],
            Bytes::Boxed(bytes) => bytes,
        }
    }
}

impl Chained {
    /// An append of `payloads`, not yet in the log: one allocation for a
    /// record of up to [`INLINE_BYTES`], else one for the node and one for
    /// the bytes (one more for their ends if several).
    pub fn new<P: AsRef<[u8]>>(payloads: &[P]) -> Arc<Chained> {
        let (bytes, ends) = match payloads {
            [one] if one.as_ref().len() <= INLINE_BYTES => {
                let one = one.as_ref();
                return Chained::with_payload(one.len(), |out| out.copy_from_slice(one));
            }
            [one] => (Bytes::Boxed(Box::from(one.as_ref())), None),
            _ => {
                let mut bytes = Vec::with_capacity(payloads.iter().map(|p| p.as_ref().len()).sum());
                let mut ends = Vec::with_capacity(payloads.len());
                for payload in payloads {
                    bytes.extend_from_slice(payload.as_ref());
                    ends.push(u32::try_from(bytes.len()).expect("an append is under 4 GiB"));
                }
                (Bytes::Boxed(bytes.into_boxed_slice()), Some(ends.into_boxed_slice()))
            }
        };
        Arc::new(Chained { first: AtomicU64::new(0), bytes, ends, next: OnceLock::new() })
    }

    /// A node of one record of `len` bytes, which `fill` writes (inline,
    /// in the node's one allocation, up to [`INLINE_BYTES`]): a record is
    /// encoded straight into the node, not copied there. The bytes are
    /// zeroed first, in the allocation (the node is not built elsewhere
    /// and moved in).
    pub fn with_payload(len: usize, fill: impl FnOnce(&mut [u8])) -> Arc<Chained> {
        if len <= INLINE_BYTES {
            let spare = TAKEN.try_with(|taken| take_spare(&SPARE_NODES, &mut *taken.try_borrow_mut().ok()?));
            if let Ok(Some(node)) = spare {
                return Chained::refill(node, len, fill);
            }
        }
        let bytes = match u8::try_from(len) {
            Ok(short) if len <= INLINE_BYTES => Bytes::Inline { len: short, bytes: [0; INLINE_BYTES] },
            _ => Bytes::Boxed(vec![0; len].into_boxed_slice()),
        };
        let mut node = Arc::new(Chained { first: AtomicU64::new(0), bytes, ends: None, next: OnceLock::new() });
        fill(Arc::get_mut(&mut node).expect("a new node is held once").bytes.as_mut_slice());
        node
    }

    /// A spare node as a new one of one record of `len` (at most
    /// [`INLINE_BYTES`]) bytes, zeroed, then written by `fill`.
    fn refill(mut node: Arc<Chained>, len: usize, fill: impl FnOnce(&mut [u8])) -> Arc<Chained> {
        let spare = Arc::get_mut(&mut node).expect("a spare node is held once");
        debug_assert!(spare.next.get().is_none() && spare.ends.is_none(), "a spare node is unlinked");
        *spare.first.get_mut() = 0;
        let Bytes::Inline { len: kept, bytes } = &mut spare.bytes else { unreachable!("a spare node is inline") };
        *kept = u8::try_from(len).expect("an inline record's length fits its u8");
        bytes[..len].fill(0);
        fill(&mut bytes[..len]);
        node
    }

    /// Unlinks the nodes after this one that no one else holds, up to the
    /// first someone does, and returns those of one inline record (the
    /// others are freed).
    fn unlink_spares(&mut self) -> Vec<Arc<Chained>> {
        let mut next = self.next.take();
        let mut spares = Vec::new();
        while let Some(mut node) = next {
            let Some(held_once) = Arc::get_mut(&mut node) else {
                break; // still held: its holder drops it
            };
            next = held_once.next.take();
            if matches!(held_once.bytes, Bytes::Inline { .. }) && held_once.ends.is_none() {
                spares.push(node);
            }
        }
        spares
    }

    /// The start of a chain: no record, placed right before `next_lsn`.
    pub fn start(next_lsn: Lsn) -> Arc<Chained> {
        let ends = Some(Box::from([]));
        let bytes = Bytes::Boxed(Box::from([]));
        Arc::new(Chained { first: AtomicU64::new(next_lsn.0), bytes, ends, next: OnceLock::new() })
    }

    /// How many records the node holds.
    pub fn len(&self) -> usize {
        self.ends.as_ref().map_or(1, |ends| ends.len())
    }

    /// The LSN of the first record (of the next record, for a start).
    pub fn first(&self) -> Lsn {
        Lsn(self.first.load(Ordering::Acquire))
    }

    /// The node after this one, once the log linked it.
    pub fn next(&self) -> Option<&Arc<Chained>> {
        self.next.get()
    }

    /// The records, oldest first.
    pub fn records(&self) -> impl DoubleEndedIterator<Item = (Lsn, &[u8])> + ExactSizeIterator + '_ {
        let first = self.first().0;
        (0..self.len()).map(move |i| {
            let bytes = self.bytes.as_slice();
            let Some(ends) = &self.ends else { return (Lsn(first), bytes) };
            let start = if i == 0 { 0 } else { ends[i - 1] as usize };
            (Lsn(first + i as u64), &bytes[start..ends[i] as usize])
        })
    }

    /// The payload of a one-record node that no other thread holds yet
    /// (not linked, not shared), to patch in place before it is appended;
    /// `None` for a node of several records or one already shared.
    pub fn payload_mut(self: &mut Arc<Self>) -> Option<&mut [u8]> {
        let node = Arc::get_mut(self)?;
        match node.ends {
            None => Some(node.bytes.as_mut_slice()),
            Some(_) => None,
        }
    }

    /// The payload of a one-record node (`None` for several records).
    pub fn payload(&self) -> Option<&[u8]> {
        match self.ends {
            None => Some(self.bytes.as_slice()),
            Some(_) => None,
        }
    }

    /// Under the log's lock: gives `node` its first LSN and links it after
    /// `self` (the chain's last node).
    pub(crate) fn link(&self, node: &Arc<Chained>, first: Lsn) {
        node.first.store(first.0, Ordering::Release);
        debug_assert_eq!(self.first().0 + self.len() as u64, first.0, "gap-free");
        let linked = self.next.set(node.clone());
        debug_assert!(linked.is_ok(), "a node is linked once");
    }

    /// Every record from `from` up to `last`, walking forward from `self`
    /// (which must be at or before `from`'s node), oldest first.
    pub fn walk(self: &Arc<Self>, from: Lsn, last: Lsn) -> impl Iterator<Item = (Lsn, &[u8])> + '_ {
        let nodes = std::iter::successors(Some(&**self), |node| node.next().map(|n| &**n));
        nodes
            .take_while(move |node| node.first() <= last)
            .flat_map(|node| node.records())
            .skip_while(move |&(lsn, _)| lsn < from)
            .take_while(move |&(lsn, _)| lsn <= last)
    }

    /// The node holding `lsn`, or the last one before it, walking forward
    /// from `self`, no further than `last` is linked.
    pub fn seek(self: &Arc<Self>, lsn: Lsn) -> Arc<Chained> {
        let mut node = self.clone();
        while let Some(next) = node.next() {
            if next.first() > lsn {
                break;
            }
            let next = next.clone();
            node = next;
        }
        node
    }
}

impl Drop for Chained {
    /// Iteratively, not by recursion: a long chain must not overflow the
    /// stack when its head is let go. The nodes of one inline record it
    /// lets go go back to the spare nodes.
    fn drop(&mut self) {
        let spares = self.unlink_spares();
        if !spares.is_empty() {
            give_back(&SPARE_NODES, spares);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(payloads: &[&[u8]]) -> Arc<Chained> {
        Chained::new(payloads)
    }

    #[test]
    fn a_walk_sees_linked_records_in_order_from_any_point_up_to_a_bound() {
        let start = Chained::start(Lsn(5));
        let (a, b) = (node(&[b"a"]), node(&[b"b", b"c", b"d"]));
        start.link(&a, Lsn(5));
        a.link(&b, Lsn(6));
        let seen = |from, last| start.walk(Lsn(from), Lsn(last)).map(|(l, p)| (l.0, p.to_vec())).collect::<Vec<_>>();
        assert_eq!(seen(5, 9), vec![(5, b"a".to_vec()), (6, b"b".to_vec()), (7, b"c".to_vec()), (8, b"d".to_vec())]);
        assert_eq!(seen(7, 7), vec![(7, b"c".to_vec())], "from inside an append, to a bound inside it");
        assert_eq!(seen(6, 5), vec![], "nothing past the bound");
        assert_eq!(seen(9, 20), vec![], "nothing linked yet");
        assert_eq!(start.seek(Lsn(7)).first(), Lsn(6));
        assert_eq!(start.seek(Lsn(4)).first(), Lsn(5), "the start itself");
        assert_eq!(b.walk(Lsn(8), Lsn(8)).count(), 1);
    }

    #[test]
    fn a_record_reads_back_and_patches_alike_inline_or_boxed() {
        for len in [0, 1, INLINE_BYTES - 1, INLINE_BYTES, INLINE_BYTES + 1, 4096] {
            let payload: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let mut node = node(&[&payload]);
            assert_eq!(node.payload(), Some(&payload[..]), "{len} bytes");
            if let Some(first) = node.payload_mut().expect("held once").first_mut() {
                *first = 0xff;
            }
            let start = Chained::start(Lsn(3));
            start.link(&node, Lsn(3));
            let seen: Vec<(Lsn, Vec<u8>)> = start.walk(Lsn(3), Lsn(3)).map(|(l, p)| (l, p.to_vec())).collect();
            let mut patched = payload.clone();
            if let Some(first) = patched.first_mut() {
                *first = 0xff;
            }
            assert_eq!(seen, vec![(Lsn(3), patched)], "{len} bytes");
            assert!(node.payload_mut().is_none(), "a linked node is shared");
        }
    }

    #[test]
    fn nodes_let_go_come_back_as_spares_that_read_as_new_ones() {
        let start = Chained::start(Lsn(1));
        let mut last = start.clone();
        let held = node(&[b"held"]);
        for i in 1..=100u64 {
            let next = match i {
                50 => node(&[&[7u8; INLINE_BYTES + 1]]), // boxed: freed, not kept
                60 => node(&[b"a", b"b"]),               // several records: freed
                70 => held.clone(),                      // still held: the unlinking stops here
                _ => node(&[&i.to_le_bytes()[..]]),
            };
            last.link(&next, Lsn(i));
            last = next;
        }
        drop(last);
        let mut start = Arc::try_unwrap(start).ok().expect("the start is held once");
        let spares = start.unlink_spares();
        assert_eq!(spares.len(), 69 - 2, "the inline nodes before the held one");
        assert!(held.next().is_some(), "the held node keeps its successors");
        let pool = Spares::new(Vec::new());
        give_back(&pool, spares);
        let mut taken = Vec::new();
        for round in 0..67usize {
            let spare = take_spare(&pool, &mut taken).expect("a spare");
            let len = round % 9;
            let mut node = Chained::refill(spare, len, |out| out[..len.min(3)].fill(0xee));
            let mut expected = vec![0u8; len];
            expected[..len.min(3)].fill(0xee);
            assert_eq!(node.payload(), Some(&expected[..]), "zeroed, then filled: nothing of the last record");
            assert_eq!((node.len(), node.first(), node.next().is_none()), (1, Lsn(0), true));
            assert!(node.payload_mut().is_some(), "held once");
        }
        assert!(take_spare(&pool, &mut taken).is_none(), "every spare was taken once");
        give_back(&pool, (0..SPARE_NODES_MAX + 10).map(|_| node(&[b"x"])).collect());
        assert_eq!(pool.lock().len(), SPARE_NODES_MAX, "the pool keeps at most its bound");
    }

    #[test]
    fn a_long_chain_drops_without_recursion() {
        let start = Chained::start(Lsn(1));
        let mut last = start.clone();
        for i in 1..=300_000u64 {
            let next = node(&[b"x"]);
            last.link(&next, Lsn(i));
            last = next;
        }
        drop(last);
        assert_eq!(start.walk(Lsn(1), Lsn(u64::MAX)).count(), 300_000);
        drop(start);
    }
}
