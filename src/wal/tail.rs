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
        let bytes = match u8::try_from(len) {
            Ok(short) if len <= INLINE_BYTES => Bytes::Inline { len: short, bytes: [0; INLINE_BYTES] },
            _ => Bytes::Boxed(vec![0; len].into_boxed_slice()),
        };
        let mut node = Arc::new(Chained { first: AtomicU64::new(0), bytes, ends: None, next: OnceLock::new() });
        fill(Arc::get_mut(&mut node).expect("a new node is held once").bytes.as_mut_slice());
        node
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
    /// stack when its head is let go.
    fn drop(&mut self) {
        let mut next = self.next.take();
        while let Some(node) = next {
            match Arc::try_unwrap(node) {
                Ok(mut node) => next = node.next.take(),
                Err(_) => break, // still held: its holder drops it
            }
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
