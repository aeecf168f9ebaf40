//! The raft layer's records: how a log entry, a vote, the committed log
//! id, a truncation and a purge are encoded into one walden record each,
//! for any openraft type configuration. Pure encode/decode, no I/O. The
//! byte layout is in docs/FORMAT.md ("Raft records"), with the golden bytes
//! of the tests below.
//!
//! Every record starts with a kind byte and a version byte (2). A
//! truncation is then one u64 (little-endian). Every other record's body is
//! JSON (serde_json) of a value whose type the application chooses through
//! its `RaftTypeConfig` (node ids, nodes, request data): JSON is
//! self-describing, so a record stays readable with any tool and a field the
//! application adds later is a decode error with a name, not misread bytes.
//! Version 1 (a binary encoding of the key-value example's requests only)
//! is refused with its version named.

use openraft::{LogId, RaftTypeConfig, Vote};
use serde::{Deserialize, Serialize};
use std::fmt;

/// The version byte this build writes and reads.
pub const VERSION: u8 = 2;

/// The kind byte of each record.
pub mod kind {
    /// An entry (JSON of the configuration's `Entry`).
    pub const ENTRY: u8 = 1;
    /// A vote (JSON of openraft's `Vote`).
    pub const VOTE: u8 = 2;
    /// The committed log id (JSON of an optional `LogId`).
    pub const COMMITTED: u8 = 3;
    /// A truncation: every entry at or above an index is removed (u64).
    pub const TRUNCATE: u8 = 4;
    /// A purge and checkpoint (JSON of [`super::PurgeBody`]).
    pub const PURGE: u8 = 5;
}

/// The re-stated state a purge record carries: it is also a checkpoint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct Checkpoint<C: RaftTypeConfig> {
    /// The vote at the time of the purge.
    pub vote: Option<Vote<C::NodeId>>,
    /// The committed log id at the time of the purge.
    pub committed: Option<LogId<C::NodeId>>,
    /// The LSN of the first entry record still live after the purge, from
    /// which replay must start; `None` when no entry is live (replay starts
    /// at the purge record itself).
    pub replay_from: Option<u64>,
}

/// The JSON body of a purge record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(bound = "", deny_unknown_fields)]
pub struct PurgeBody<C: RaftTypeConfig> {
    /// Every entry up to this log id (inclusive) is removed.
    pub upto: LogId<C::NodeId>,
    /// The vote, re-stated.
    pub vote: Option<Vote<C::NodeId>>,
    /// The committed log id, re-stated.
    pub committed: Option<LogId<C::NodeId>>,
    /// See [`Checkpoint::replay_from`].
    pub replay_from: Option<u64>,
}

/// One decoded record.
#[derive(Clone, Debug, PartialEq)]
pub enum RaftRecord<C: RaftTypeConfig> {
    /// A log entry.
    Entry(C::Entry),
    /// A vote.
    Vote(Vote<C::NodeId>),
    /// The committed log id.
    Committed(Option<LogId<C::NodeId>>),
    /// Every entry with an index at or above `since` is removed.
    Truncate {
        /// The first index removed.
        since: u64,
    },
    /// Every entry up to `upto` (inclusive) is removed; the record re-states
    /// the rest of the state.
    Purge {
        /// The last log id removed.
        upto: LogId<C::NodeId>,
        /// The rest of the state.
        checkpoint: Checkpoint<C>,
    },
}

/// A record whose bytes do not decode: what is wrong, at which byte.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodeError {
    /// The offset of the first byte that does not hold up.
    pub offset: usize,
    /// What is wrong there.
    pub what: String,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "byte {}: {}", self.offset, self.what)
    }
}

impl std::error::Error for DecodeError {}

fn json_record<T: Serialize + ?Sized>(kind: u8, value: &T) -> Vec<u8> {
    let mut out = vec![kind, VERSION];
    // Every type here derives Serialize with string keys: it cannot fail.
    serde_json::to_writer(&mut out, value).expect("a raft record serializes to JSON");
    out
}

/// Encodes an entry record.
pub fn encode_entry<C: RaftTypeConfig>(entry: &C::Entry) -> Vec<u8> {
    json_record(kind::ENTRY, entry)
}

/// Encodes a vote record.
pub fn encode_vote<C: RaftTypeConfig>(vote: &Vote<C::NodeId>) -> Vec<u8> {
    json_record(kind::VOTE, vote)
}

/// Encodes a committed record.
pub fn encode_committed<C: RaftTypeConfig>(committed: Option<&LogId<C::NodeId>>) -> Vec<u8> {
    json_record(kind::COMMITTED, &committed)
}

/// Encodes a truncation record.
pub fn encode_truncate(since: u64) -> Vec<u8> {
    let mut out = vec![kind::TRUNCATE, VERSION];
    out.extend_from_slice(&since.to_le_bytes());
    out
}

/// Encodes a purge record.
pub fn encode_purge<C: RaftTypeConfig>(upto: &LogId<C::NodeId>, checkpoint: &Checkpoint<C>) -> Vec<u8> {
    let body = PurgeBody::<C> {
        upto: upto.clone(),
        vote: checkpoint.vote.clone(),
        committed: checkpoint.committed.clone(),
        replay_from: checkpoint.replay_from,
    };
    json_record(kind::PURGE, &body)
}

fn json<T: for<'de> Deserialize<'de>>(bytes: &[u8], what: &str) -> Result<T, DecodeError> {
    serde_json::from_slice(&bytes[2..]).map_err(|e| {
        // serde_json counts lines and columns; the body is one line.
        let column = if e.line() == 1 { e.column().saturating_sub(1) } else { 0 };
        DecodeError { offset: 2 + column.min(bytes.len() - 2), what: format!("{what} JSON: {e}") }
    })
}

/// Decodes one record of the raft layer.
pub fn decode<C: RaftTypeConfig>(bytes: &[u8]) -> Result<RaftRecord<C>, DecodeError> {
    let fail = |offset: usize, what: String| Err(DecodeError { offset, what });
    let (Some(&kind), Some(&version)) = (bytes.first(), bytes.get(1)) else {
        return fail(bytes.len(), format!("{} bytes: shorter than a record header", bytes.len()));
    };
    if version != VERSION {
        return fail(1, format!("record version {version}; this build reads version {VERSION}"));
    }
    match kind {
        kind::ENTRY => Ok(RaftRecord::Entry(json(bytes, "entry")?)),
        kind::VOTE => Ok(RaftRecord::Vote(json(bytes, "vote")?)),
        kind::COMMITTED => Ok(RaftRecord::Committed(json(bytes, "committed log id")?)),
        kind::TRUNCATE => match <[u8; 8]>::try_from(&bytes[2..]) {
            Ok(since) => Ok(RaftRecord::Truncate { since: u64::from_le_bytes(since) }),
            Err(_) => fail(2, format!("a truncation holds 8 bytes, not {}", bytes.len() - 2)),
        },
        kind::PURGE => {
            let body: PurgeBody<C> = json(bytes, "purge")?;
            if body.replay_from == Some(0) {
                return fail(2, "a purge names LSN 0 to replay from".into());
            }
            let checkpoint = Checkpoint { vote: body.vote, committed: body.committed, replay_from: body.replay_from };
            Ok(RaftRecord::Purge { upto: body.upto, checkpoint })
        }
        other => fail(0, format!("unknown record kind {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::{BasicNode, EntryPayload, Membership};
    use std::collections::{BTreeMap, BTreeSet};

    openraft::declare_raft_types!(
        /// A configuration for the codec's tests: string requests.
        pub Test:
            D = String,
            R = String,
            NodeId = u64,
            Node = BasicNode,
            SnapshotData = crate::SnapshotData,
    );

    type Entry = openraft::Entry<Test>;

    fn log_id(term: u64, node: u64, index: u64) -> LogId<u64> {
        LogId::new(openraft::CommittedLeaderId::new(term, node), index)
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn samples() -> Vec<(RaftRecord<Test>, Vec<u8>)> {
        let members: BTreeMap<u64, BasicNode> = [(1, BasicNode::new("127.0.0.1:7001"))].into_iter().collect();
        let membership = Membership::new(vec![BTreeSet::from([1])], members);
        let entries = [
            Entry { log_id: log_id(2, 1, 7), payload: EntryPayload::Blank },
            Entry { log_id: log_id(2, 1, 8), payload: EntryPayload::Normal("set k=\"vv\"".into()) },
            Entry { log_id: log_id(2, 1, 9), payload: EntryPayload::Membership(membership) },
        ];
        let checkpoint = Checkpoint {
            vote: Some(Vote::new_committed(3, 2)),
            committed: Some(log_id(2, 1, 9)),
            replay_from: Some(12),
        };
        let mut out: Vec<(RaftRecord<Test>, Vec<u8>)> =
            entries.into_iter().map(|e| (RaftRecord::Entry(e.clone()), encode_entry::<Test>(&e))).collect();
        out.push((RaftRecord::Vote(Vote::new(3, 2)), encode_vote::<Test>(&Vote::new(3, 2))));
        out.push((RaftRecord::Committed(None), encode_committed::<Test>(None)));
        out.push((RaftRecord::Committed(Some(log_id(2, 1, 8))), encode_committed::<Test>(Some(&log_id(2, 1, 8)))));
        out.push((RaftRecord::Truncate { since: 5 }, encode_truncate(5)));
        out.push((
            RaftRecord::Purge { upto: log_id(1, 1, 4), checkpoint: checkpoint.clone() },
            encode_purge::<Test>(&log_id(1, 1, 4), &checkpoint),
        ));
        let empty = Checkpoint { vote: None, committed: None, replay_from: None };
        out.push((
            RaftRecord::Purge { upto: log_id(0, 0, 0), checkpoint: empty.clone() },
            encode_purge::<Test>(&log_id(0, 0, 0), &empty),
        ));
        out
    }

    #[test]
    fn every_record_round_trips() {
        for (record, bytes) in samples() {
            assert_eq!(decode::<Test>(&bytes), Ok(record));
        }
    }

    #[test]
    fn every_truncation_of_a_record_is_refused() {
        for (_, bytes) in samples() {
            for len in 0..bytes.len() {
                assert!(decode::<Test>(&bytes[..len]).is_err(), "{} cut to {len} bytes decoded", hex(&bytes));
            }
            let mut longer = bytes.clone();
            longer.push(b'x');
            assert!(decode::<Test>(&longer).is_err(), "a trailing byte after {} was accepted", hex(&bytes));
        }
    }

    #[test]
    fn unknown_kinds_versions_and_fields_say_where() {
        let mut bytes = encode_vote::<Test>(&Vote::new(1, 1));
        bytes[1] = 1;
        let e = decode::<Test>(&bytes).unwrap_err();
        assert_eq!((e.offset, e.what.as_str()), (1, "record version 1; this build reads version 2"));
        let e = decode::<Test>(&[9, VERSION]).unwrap_err();
        assert_eq!((e.offset, e.what.as_str()), (0, "unknown record kind 9"));
        let bad = br#"{"upto":{"leader_id":{"term":1,"node_id":1},"index":4},"vote":null,"committed":null,"replay_from":null,"extra":1}"#;
        let mut purge = vec![kind::PURGE, VERSION];
        purge.extend_from_slice(bad);
        let e = decode::<Test>(&purge).unwrap_err();
        assert!(e.what.contains("unknown field `extra`"), "{e}");
        let e = decode::<Test>(&[kind::TRUNCATE, VERSION, 1, 2, 3]).unwrap_err();
        assert_eq!((e.offset, e.what.as_str()), (2, "a truncation holds 8 bytes, not 3"));
    }

    #[test]
    fn golden_bytes_match_the_spec() {
        // These exact bytes are printed in docs/FORMAT.md ("Raft records").
        let normal = Entry { log_id: log_id(2, 1, 8), payload: EntryPayload::Normal("put k".into()) };
        let text = |b: &[u8]| format!("{:02x}{:02x} {}", b[0], b[1], std::str::from_utf8(&b[2..]).unwrap());
        assert_eq!(
            text(&encode_entry::<Test>(&normal)),
            r#"0102 {"log_id":{"leader_id":{"term":2,"node_id":1},"index":8},"payload":{"Normal":"put k"}}"#
        );
        assert_eq!(
            text(&encode_vote::<Test>(&Vote::new_committed(3, 2))),
            r#"0202 {"leader_id":{"term":3,"node_id":2},"committed":true}"#
        );
        assert_eq!(text(&encode_committed::<Test>(None)), "0302 null");
        assert_eq!(hex(&encode_truncate(5)), "04020500000000000000");
        let checkpoint = Checkpoint { vote: None, committed: Some(log_id(1, 1, 4)), replay_from: Some(12) };
        assert_eq!(
            text(&encode_purge::<Test>(&log_id(1, 1, 4), &checkpoint)),
            concat!(
                r#"0502 {"upto":{"leader_id":{"term":1,"node_id":1},"index":4},"vote":null,"#,
                r#""committed":{"leader_id":{"term":1,"node_id":1},"index":4},"replay_from":12}"#
            )
        );
    }
}
