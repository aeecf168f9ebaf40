//! Store operations seen from the operator's side: [`store_op`] decodes a
//! log payload that holds a store operation into a [`StoreOpView`] for
//! people and tools, and `store_timestamp` reads only its time (the log
//! format itself has no clock; time bounds in `admin` use this one).
//!
//! **Invariant:** this is the one place in `admin` that decodes store
//! payloads, and it does so with the store's own codec
//! (`src/store/codec.rs`), never a second parser.

use super::hex;
use crate::store::codec::{decode_op, Op};

/// A store operation decoded for people and tools. Keys and values that
/// are UTF-8 are shown as text, others as hex (`*_hex`).
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct StoreOpView {
    /// `put` or `delete`.
    pub op: &'static str,
    /// When the writer made the operation, in microseconds since the Unix epoch.
    pub timestamp_us: u64,
    /// The writer id the operation carries.
    pub writer: String,
    /// The key, if it is UTF-8.
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub key: Option<String>,
    /// The key in lower-case hex, if it is not UTF-8.
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub key_hex: Option<String>,
    /// A put's value, if it is UTF-8 (`None` for a delete).
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub value: Option<String>,
    /// A put's value in lower-case hex, if it is not UTF-8.
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub value_hex: Option<String>,
}

/// The store operation a payload holds, if it holds one.
pub fn store_op(payload: &[u8]) -> Option<StoreOpView> {
    let op = decode_op(payload).ok()?;
    let (name, key, value, writer, timestamp_us) = match op {
        Op::Put { key, value, writer, timestamp_us } => ("put", key, Some(value), writer, timestamp_us),
        Op::Delete { key, writer, timestamp_us } => ("delete", key, None, writer, timestamp_us),
    };
    let (key, key_hex) = text_or_hex(key);
    let (value, value_hex) = value.map_or((None, None), text_or_hex);
    Some(StoreOpView { op: name, timestamp_us, writer: writer.to_owned(), key, key_hex, value, value_hex })
}

fn text_or_hex(bytes: &[u8]) -> (Option<String>, Option<String>) {
    match std::str::from_utf8(bytes) {
        Ok(text) => (Some(text.to_owned()), None),
        Err(_) => (None, Some(hex(bytes))),
    }
}

/// The timestamp of a store operation, if the payload is one.
pub(crate) fn store_timestamp(payload: &[u8]) -> Option<u64> {
    decode_op(payload).ok().map(|op| op.timestamp_us())
}
