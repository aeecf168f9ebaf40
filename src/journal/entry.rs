//! The journal's data types: [`JournalEntry`], [`NewEntry`], [`SignalType`],
//! [`JournalOp`], the dynamic [`Value`] and the parameter state [`Param`].

use std::collections::BTreeMap;
use std::fmt;

/// What kind of signal an entry carries (CLASP's signal types).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[repr(u8)]
#[non_exhaustive]
pub enum SignalType {
    /// A parameter: a value with state, changed by SET and removed by DELETE.
    Param = 1,
    /// A discrete event.
    Event = 2,
    /// A sample of a continuous stream.
    Stream = 3,
    /// A step of a gesture.
    Gesture = 4,
    /// A point of a timeline.
    Timeline = 5,
}

impl SignalType {
    /// Every signal type, in the order of their codes (1 to 5).
    pub const ALL: [SignalType; 5] =
        [SignalType::Param, SignalType::Event, SignalType::Stream, SignalType::Gesture, SignalType::Timeline];

    pub(crate) fn from_u8(v: u8) -> Option<SignalType> {
        SignalType::ALL.get((v as usize).wrapping_sub(1)).copied()
    }

    /// The bit of this type in a [`SignalTypes`] set.
    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

impl SignalType {
    /// The lower-case name: `param`, `event`, `stream`, `gesture`, `timeline`.
    pub fn name(self) -> &'static str {
        match self {
            SignalType::Param => "param",
            SignalType::Event => "event",
            SignalType::Stream => "stream",
            SignalType::Gesture => "gesture",
            SignalType::Timeline => "timeline",
        }
    }
}

impl fmt::Display for SignalType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for SignalType {
    type Err = crate::Error;

    /// Parses a name as [`SignalType::name`] spells it, in any case.
    fn from_str(s: &str) -> crate::Result<SignalType> {
        SignalType::ALL.into_iter().find(|t| t.name().eq_ignore_ascii_case(s)).ok_or_else(|| {
            crate::Error::InvalidArgument(format!(
                "unknown signal type {s:?} (param, event, stream, gesture or timeline)"
            ))
        })
    }
}

/// A set of signal types; the empty set stands for "every type".
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SignalTypes(u8);

impl SignalTypes {
    /// Every type (no filter).
    pub const ANY: SignalTypes = SignalTypes(0);

    /// The set of `types` (an empty slice gives [`SignalTypes::ANY`]).
    pub fn of(types: &[SignalType]) -> SignalTypes {
        SignalTypes(types.iter().fold(0, |bits, t| bits | t.bit()))
    }

    /// Whether `t` passes: it is in the set, or the set is empty.
    pub fn contains(self, t: SignalType) -> bool {
        self.0 == 0 || self.0 & t.bit() != 0
    }
}

/// The operation an entry records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[repr(u8)]
#[non_exhaustive]
pub enum JournalOp {
    /// Sets a parameter: the parameter state changes, the entry has a revision.
    Set = 1,
    /// Publishes an event or stream sample: journaled, no state changes.
    Publish = 2,
    /// Removes a parameter from the state.
    Delete = 3,
}

impl fmt::Display for JournalOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            JournalOp::Set => "SET",
            JournalOp::Publish => "PUBLISH",
            JournalOp::Delete => "DELETE",
        })
    }
}

impl JournalOp {
    pub(crate) fn from_u8(v: u8) -> Option<JournalOp> {
        match v {
            1 => Some(JournalOp::Set),
            2 => Some(JournalOp::Publish),
            3 => Some(JournalOp::Delete),
            _ => None,
        }
    }
}

/// A dynamic value. Maps are ordered by key, so equal maps encode equally.
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub enum Value {
    /// No value (a DELETE carries this).
    Null,
    /// A boolean.
    Bool(bool),
    /// A signed 64-bit integer.
    Int(i64),
    /// A 64-bit float, stored by its bits (NaN payloads survive).
    Float(f64),
    /// UTF-8 text.
    String(String),
    /// Raw bytes.
    Bytes(Vec<u8>),
    /// Values in order; lists and maps nest at most
    /// [`MAX_VALUE_DEPTH`](super::codec::MAX_VALUE_DEPTH) deep.
    List(Vec<Value>),
    /// Values by key, in key order; keys are at most 65,535 bytes.
    Map(BTreeMap<String, Value>),
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Null => write!(f, "null"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Int(i) => write!(f, "{i}"),
            Value::Float(x) => write!(f, "{x}"),
            Value::String(s) => write!(f, "{s:?}"),
            Value::Bytes(b) => write!(f, "<{} bytes>", b.len()),
            Value::List(items) => {
                write!(f, "[")?;
                for (i, item) in items.iter().enumerate() {
                    write!(f, "{}{item}", if i == 0 { "" } else { ", " })?;
                }
                write!(f, "]")
            }
            Value::Map(map) => {
                write!(f, "{{")?;
                for (i, (k, v)) in map.iter().enumerate() {
                    write!(f, "{}{k:?}: {v}", if i == 0 { "" } else { ", " })?;
                }
                write!(f, "}}")
            }
        }
    }
}

/// An entry as the application hands it to `append`: the journal assigns
/// the sequence number, clamps the timestamp and, for a SET, the revision.
#[derive(Clone, Debug, PartialEq)]
pub struct NewEntry {
    /// Microseconds since the Unix epoch; `None` means now. A time earlier
    /// than the journal's last entry is raised to it (time never goes back).
    pub timestamp_us: Option<u64>,
    /// Who wrote the entry (at most 65,535 bytes).
    pub author: String,
    /// The address it is about: `/` and segments, no wildcard.
    pub address: String,
    /// Its signal type (SET and DELETE use [`SignalType::Param`]).
    pub signal_type: SignalType,
    /// The value set or published ([`Value::Null`] for a DELETE).
    pub value: Value,
    /// For a SET: the parameter's new revision, or `None` for the previous
    /// revision plus one (1 for a new parameter). Ignored for PUBLISH and
    /// DELETE, whose entries carry no revision.
    pub revision: Option<u64>,
    /// SET, PUBLISH or DELETE.
    pub op: JournalOp,
}

impl NewEntry {
    /// A SET of a parameter, revision assigned by the journal, time now.
    pub fn set(author: &str, address: &str, value: Value) -> NewEntry {
        NewEntry::new(JournalOp::Set, SignalType::Param, author, address, value)
    }

    /// A PUBLISH of a signal, time now.
    pub fn publish(signal_type: SignalType, author: &str, address: &str, value: Value) -> NewEntry {
        NewEntry::new(JournalOp::Publish, signal_type, author, address, value)
    }

    /// A DELETE of a parameter, time now.
    pub fn delete(author: &str, address: &str) -> NewEntry {
        NewEntry::new(JournalOp::Delete, SignalType::Param, author, address, Value::Null)
    }

    fn new(op: JournalOp, signal_type: SignalType, author: &str, address: &str, value: Value) -> NewEntry {
        NewEntry {
            timestamp_us: None,
            author: author.into(),
            address: address.into(),
            signal_type,
            value,
            revision: None,
            op,
        }
    }

    /// The same entry at time `timestamp_us`.
    pub fn at(mut self, timestamp_us: u64) -> NewEntry {
        self.timestamp_us = Some(timestamp_us);
        self
    }
}

/// A journal entry as stored and returned by queries.
#[derive(Clone, Debug, PartialEq)]
pub struct JournalEntry {
    /// Gap-free within a journal, starting at 1, continuing after reopen.
    pub sequence: u64,
    /// Microseconds since the Unix epoch; never less than the entry before.
    pub timestamp_us: u64,
    /// Who wrote the entry.
    pub author: String,
    /// The address it is about.
    pub address: String,
    /// Its signal type.
    pub signal_type: SignalType,
    /// The value set or published ([`Value::Null`] for a DELETE).
    pub value: Value,
    /// Present for a SET, absent for a PUBLISH or DELETE.
    pub revision: Option<u64>,
    /// SET, PUBLISH or DELETE.
    pub op: JournalOp,
}

/// The state of one parameter: what the SETs so far left behind.
#[derive(Clone, Debug, PartialEq)]
pub struct Param {
    /// The parameter's address.
    pub address: String,
    /// The value of the last SET.
    pub value: Value,
    /// The revision of the last SET (1 for the first, unless given).
    pub revision: u64,
    /// The author of the last SET.
    pub writer: String,
    /// The time of the last SET, in microseconds since the Unix epoch.
    pub timestamp_us: u64,
}

/// The latest snapshot of a journal's parameter state.
#[derive(Clone, Debug, PartialEq)]
pub struct ParamSnapshot {
    /// The last sequence number the snapshot covers.
    pub sequence: u64,
    /// Every parameter, in address order.
    pub params: Vec<Param>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signal_types_parse_by_name() {
        for t in SignalType::ALL {
            assert_eq!(t.name().to_uppercase().parse::<SignalType>().unwrap(), t);
            assert_eq!(SignalType::from_u8(t as u8), Some(t));
        }
        assert!("events".parse::<SignalType>().unwrap_err().to_string().contains("unknown signal type"));
        assert_eq!(SignalType::from_u8(0), None);
        assert!(SignalTypes::of(&[SignalType::Event]).contains(SignalType::Event));
        assert!(!SignalTypes::of(&[SignalType::Event]).contains(SignalType::Param));
        assert!(SignalTypes::ANY.contains(SignalType::Timeline));
    }
}
