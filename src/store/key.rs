//! [`StoreKey`]: the key of the store's map. The key's bytes live behind an
//! `Arc`, and their first 8 bytes are also held inline, as a big-endian
//! integer, so that nearly every comparison in the tree is one integer
//! comparison inside the node instead of a `memcmp` through a pointer (a
//! cache miss in a large map). [`KeyRef`] is the same for a borrowed key,
//! to look one up without allocating.
//!
//! **Invariant:** `StoreKey` orders exactly as its bytes do (`[u8]`'s
//! lexicographic order): the inline prefix is the first 8 bytes padded with
//! zeros, so prefixes that differ order as the bytes do, and equal prefixes
//! fall back to comparing the bytes.

use equivalent::{Comparable, Equivalent};
use std::cmp::Ordering;
use std::fmt;
use std::sync::Arc;

/// A key of the store: its bytes, ordered as bytes.
#[derive(Clone)]
pub struct StoreKey {
    prefix: u64,
    bytes: Arc<[u8]>,
}

/// The first 8 bytes of `bytes`, zero-padded, as a big-endian integer.
fn prefix_of(bytes: &[u8]) -> u64 {
    let mut head = [0u8; 8];
    let n = bytes.len().min(8);
    head[..n].copy_from_slice(&bytes[..n]);
    u64::from_be_bytes(head)
}

fn compare(prefix_a: u64, a: &[u8], prefix_b: u64, b: &[u8]) -> Ordering {
    prefix_a.cmp(&prefix_b).then_with(|| a.cmp(b))
}

impl StoreKey {
    /// The key with these bytes (shared, not copied).
    pub fn new(bytes: Arc<[u8]>) -> Self {
        StoreKey { prefix: prefix_of(&bytes), bytes }
    }

    /// The key's bytes, shared.
    pub fn bytes(&self) -> &Arc<[u8]> {
        &self.bytes
    }

    /// The key's bytes, borrowed.
    pub fn as_slice(&self) -> &[u8] {
        &self.bytes
    }

    /// The first 8 bytes, zero-padded, as a big-endian integer.
    pub(crate) fn prefix(&self) -> u64 {
        self.prefix
    }

    /// A key from its prefix, as [`StoreKey::prefix`] gave it, and bytes.
    pub(crate) fn from_parts(prefix: u64, bytes: Arc<[u8]>) -> Self {
        debug_assert_eq!(prefix, prefix_of(&bytes));
        StoreKey { prefix, bytes }
    }
}

impl From<&[u8]> for StoreKey {
    fn from(bytes: &[u8]) -> Self {
        StoreKey::new(bytes.into())
    }
}

impl From<Arc<[u8]>> for StoreKey {
    fn from(bytes: Arc<[u8]>) -> Self {
        StoreKey::new(bytes)
    }
}

impl PartialEq for StoreKey {
    fn eq(&self, other: &Self) -> bool {
        self.prefix == other.prefix && self.bytes == other.bytes
    }
}

impl Eq for StoreKey {}

impl PartialOrd for StoreKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for StoreKey {
    fn cmp(&self, other: &Self) -> Ordering {
        compare(self.prefix, &self.bytes, other.prefix, &other.bytes)
    }
}

impl fmt::Debug for StoreKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.bytes, f)
    }
}

/// A borrowed key, to find a [`StoreKey`] in the map without allocating.
#[derive(Clone, Copy, Debug)]
pub struct KeyRef<'a> {
    prefix: u64,
    bytes: &'a [u8],
}

impl<'a> KeyRef<'a> {
    /// The key with these bytes, borrowed.
    pub fn new(bytes: &'a [u8]) -> Self {
        KeyRef { prefix: prefix_of(bytes), bytes }
    }

    /// The first 8 bytes, zero-padded, as a big-endian integer: keys whose
    /// prefixes differ order as their prefixes do.
    pub fn prefix(&self) -> u64 {
        self.prefix
    }

    /// The key's bytes.
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// How this key orders against `other`: as their bytes do.
    pub fn cmp_to(&self, other: KeyRef<'_>) -> Ordering {
        compare(self.prefix, self.bytes, other.prefix, other.bytes)
    }
}

impl Equivalent<StoreKey> for KeyRef<'_> {
    fn equivalent(&self, key: &StoreKey) -> bool {
        self.prefix == key.prefix && self.bytes == &key.bytes[..]
    }
}

impl Comparable<StoreKey> for KeyRef<'_> {
    fn compare(&self, key: &StoreKey) -> Ordering {
        compare(self.prefix, self.bytes, key.prefix, &key.bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn keys_order_as_their_bytes(
            a in proptest::collection::vec(prop_oneof![Just(0u8), Just(1u8), Just(255u8), any::<u8>()], 0..20),
            b in proptest::collection::vec(prop_oneof![Just(0u8), Just(1u8), Just(255u8), any::<u8>()], 0..20),
        ) {
            let (ka, kb) = (StoreKey::from(&a[..]), StoreKey::from(&b[..]));
            prop_assert_eq!(ka.cmp(&kb), a.cmp(&b));
            prop_assert_eq!(ka == kb, a == b);
            prop_assert_eq!(KeyRef::new(&a).compare(&kb), a.cmp(&b));
            prop_assert_eq!(KeyRef::new(&a).equivalent(&kb), a == b);
        }
    }

    #[test]
    fn zero_padding_does_not_confuse_short_keys() {
        let keys: [&[u8]; 6] = [b"", b"\0", b"\0\0", b"a", b"a\0", b"a\0\0\0\0\0\0\0\0"];
        for pair in keys.windows(2) {
            assert!(StoreKey::from(pair[0]) < StoreKey::from(pair[1]), "{:?} < {:?}", pair[0], pair[1]);
        }
    }
}
