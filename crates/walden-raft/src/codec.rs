//! The raft layer's records: how a log entry, a vote, the committed log
//! id, a truncation and a purge are encoded into one walden record each.
//! Pure encode/decode, no I/O. The byte layout is in docs/FORMAT.md
//! ("Raft records"), with the golden bytes of the tests below.
//!
//! Every record starts with a kind byte and a version byte (1). Integers are
//! little-endian with explicit widths. An optional value is a presence byte
//! (0 or 1) followed by the value when present. A log id is 24 bytes: term,
//! leader node, index (u64 each). A vote is 17 bytes: term, node (u64 each)
//! and a committed byte. A normal entry's payload is this crate's own
//! binary encoding of [`Request`]; a membership entry's is the JSON of
//! openraft's `Membership` (serde), a type whose fields openraft keeps
//! private and may extend.

use crate::types::{Entry, LogId, NodeId, Request, Vote};
use openraft::{EntryPayload, Membership};
use std::fmt;

pub const VERSION: u8 = 1;

/// The kind byte of each record.
pub mod kind {
    pub const ENTRY: u8 = 1;
    pub const VOTE: u8 = 2;
    pub const COMMITTED: u8 = 3;
    pub const TRUNCATE: u8 = 4;
    pub const PURGE: u8 = 5;
}

/// The payload kind byte of an entry record.
mod payload {
    pub const BLANK: u8 = 0;
    pub const NORMAL: u8 = 1;
    pub const MEMBERSHIP: u8 = 2;
}

/// The op byte of an encoded [`Request`].
const OP_PUT: u8 = 1;
const OP_BATCH: u8 = 2;

/// The re-stated state a purge record carries: it is also a checkpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    pub vote: Option<Vote>,
    pub committed: Option<LogId>,
    /// The LSN of the first entry record still live after the purge, from
    /// which replay must start; `None` when no entry is live (replay starts
    /// at the purge record itself).
    pub replay_from: Option<u64>,
}

/// One decoded record.
#[derive(Clone, Debug, PartialEq)]
pub enum RaftRecord {
    Entry(Entry),
    Vote(Vote),
    Committed(Option<LogId>),
    /// Every entry with an index at or above this one is removed.
    Truncate {
        since: u64,
    },
    /// Every entry up to `upto` (inclusive) is removed; the record re-states
    /// the rest of the state.
    Purge {
        upto: LogId,
        checkpoint: Checkpoint,
    },
}

/// A record whose bytes do not decode: what is wrong, at which byte.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodeError {
    pub offset: usize,
    pub what: String,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "byte {}: {}", self.offset, self.what)
    }
}

impl std::error::Error for DecodeError {}

fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_log_id(out: &mut Vec<u8>, id: &LogId) {
    put_u64(out, id.leader_id.term);
    put_u64(out, id.leader_id.node_id);
    put_u64(out, id.index);
}

fn put_opt_log_id(out: &mut Vec<u8>, id: Option<&LogId>) {
    match id {
        None => out.push(0),
        Some(id) => {
            out.push(1);
            put_log_id(out, id);
        }
    }
}

fn put_vote(out: &mut Vec<u8>, vote: &Vote) {
    put_u64(out, vote.leader_id.term);
    put_u64(out, vote.leader_id.node_id);
    out.push(u8::from(vote.committed));
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn header(kind: u8) -> Vec<u8> {
    vec![kind, VERSION]
}

/// Encodes `request` as a normal entry's payload.
pub fn encode_request(out: &mut Vec<u8>, request: &Request) {
    match request {
        Request::Put { key, value } => {
            out.push(OP_PUT);
            put_str(out, key);
            put_str(out, value);
        }
        Request::Batch(pairs) => {
            out.push(OP_BATCH);
            out.extend_from_slice(&(pairs.len() as u32).to_le_bytes());
            for (key, value) in pairs {
                put_str(out, key);
                put_str(out, value);
            }
        }
    }
}

pub fn encode_entry(entry: &Entry) -> Vec<u8> {
    let mut out = header(kind::ENTRY);
    put_log_id(&mut out, &entry.log_id);
    match &entry.payload {
        EntryPayload::Blank => out.push(payload::BLANK),
        EntryPayload::Normal(request) => {
            out.push(payload::NORMAL);
            encode_request(&mut out, request);
        }
        EntryPayload::Membership(membership) => {
            out.push(payload::MEMBERSHIP);
            serde_json::to_writer(&mut out, membership).expect("a membership always serializes");
        }
    }
    out
}

pub fn encode_vote(vote: &Vote) -> Vec<u8> {
    let mut out = header(kind::VOTE);
    put_vote(&mut out, vote);
    out
}

pub fn encode_committed(committed: Option<&LogId>) -> Vec<u8> {
    let mut out = header(kind::COMMITTED);
    put_opt_log_id(&mut out, committed);
    out
}

pub fn encode_truncate(since: u64) -> Vec<u8> {
    let mut out = header(kind::TRUNCATE);
    put_u64(&mut out, since);
    out
}

pub fn encode_purge(upto: &LogId, checkpoint: &Checkpoint) -> Vec<u8> {
    let mut out = header(kind::PURGE);
    put_log_id(&mut out, upto);
    match &checkpoint.vote {
        None => out.push(0),
        Some(vote) => {
            out.push(1);
            put_vote(&mut out, vote);
        }
    }
    put_opt_log_id(&mut out, checkpoint.committed.as_ref());
    // 0 stands for "none": LSN 0 never names a record.
    put_u64(&mut out, checkpoint.replay_from.unwrap_or(0));
    out
}

/// Reads fields front to back, failing with the offset of the first byte
/// that does not hold up.
struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn fail<T>(&self, what: impl Into<String>) -> Result<T, DecodeError> {
        Err(DecodeError { offset: self.at, what: what.into() })
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.bytes.len() - self.at < n {
            return self.fail(format!("{n} bytes needed, {} left", self.bytes.len() - self.at));
        }
        let out = &self.bytes[self.at..self.at + n];
        self.at += n;
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }

    fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }

    fn flag(&mut self, what: &str) -> Result<bool, DecodeError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            other => {
                self.at -= 1;
                self.fail(format!("{what} byte is {other}, not 0 or 1"))
            }
        }
    }

    fn log_id(&mut self) -> Result<LogId, DecodeError> {
        let term = self.u64()?;
        let node: NodeId = self.u64()?;
        let index = self.u64()?;
        Ok(crate::types::log_id(term, node, index))
    }

    fn opt_log_id(&mut self) -> Result<Option<LogId>, DecodeError> {
        Ok(if self.flag("presence")? { Some(self.log_id()?) } else { None })
    }

    fn vote(&mut self) -> Result<Vote, DecodeError> {
        let term = self.u64()?;
        let node = self.u64()?;
        let committed = self.flag("committed")?;
        Ok(if committed { Vote::new_committed(term, node) } else { Vote::new(term, node) })
    }

    fn string(&mut self) -> Result<String, DecodeError> {
        let len = u32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes")) as usize;
        let start = self.at;
        let bytes = self.take(len)?;
        match std::str::from_utf8(bytes) {
            Ok(s) => Ok(s.to_owned()),
            Err(e) => Err(DecodeError { offset: start + e.valid_up_to(), what: "a string is not UTF-8".into() }),
        }
    }

    fn end(&self) -> Result<(), DecodeError> {
        if self.at != self.bytes.len() {
            return self.fail(format!("{} trailing bytes", self.bytes.len() - self.at));
        }
        Ok(())
    }
}

/// Decodes a normal entry's payload.
pub fn decode_request(bytes: &[u8]) -> Result<Request, DecodeError> {
    let mut c = Cursor { bytes, at: 0 };
    let request = read_request(&mut c)?;
    c.end()?;
    Ok(request)
}

fn read_request(c: &mut Cursor<'_>) -> Result<Request, DecodeError> {
    match c.u8()? {
        OP_PUT => Ok(Request::Put { key: c.string()?, value: c.string()? }),
        OP_BATCH => {
            let count = u32::from_le_bytes(c.take(4)?.try_into().expect("4 bytes"));
            // Each pair takes at least 8 bytes: a larger count is damage.
            if count as usize > (c.bytes.len() - c.at) / 8 {
                c.at -= 4;
                return c.fail(format!("a batch of {count} pairs in {} bytes", c.bytes.len() - c.at - 4));
            }
            let mut pairs = Vec::with_capacity(count as usize);
            for _ in 0..count {
                pairs.push((c.string()?, c.string()?));
            }
            Ok(Request::Batch(pairs))
        }
        op => {
            c.at -= 1;
            c.fail(format!("unknown request op {op}"))
        }
    }
}

/// Decodes one record of the raft layer.
pub fn decode(bytes: &[u8]) -> Result<RaftRecord, DecodeError> {
    let mut c = Cursor { bytes, at: 0 };
    let kind = c.u8()?;
    let version = c.u8()?;
    if version != VERSION {
        c.at = 1;
        return c.fail(format!("record version {version}; this build reads version {VERSION}"));
    }
    let record = match kind {
        kind::ENTRY => {
            let log_id = c.log_id()?;
            let payload = match c.u8()? {
                payload::BLANK => EntryPayload::Blank,
                payload::NORMAL => EntryPayload::Normal(read_request(&mut c)?),
                payload::MEMBERSHIP => {
                    let start = c.at;
                    let json = c.take(bytes.len() - start)?;
                    let membership: Membership<NodeId, openraft::BasicNode> = serde_json::from_slice(json)
                        .map_err(|e| DecodeError { offset: start, what: format!("membership JSON: {e}") })?;
                    EntryPayload::Membership(membership)
                }
                other => {
                    c.at -= 1;
                    return c.fail(format!("unknown entry payload kind {other}"));
                }
            };
            RaftRecord::Entry(Entry { log_id, payload })
        }
        kind::VOTE => RaftRecord::Vote(c.vote()?),
        kind::COMMITTED => RaftRecord::Committed(c.opt_log_id()?),
        kind::TRUNCATE => RaftRecord::Truncate { since: c.u64()? },
        kind::PURGE => {
            let upto = c.log_id()?;
            let vote = if c.flag("presence")? { Some(c.vote()?) } else { None };
            let committed = c.opt_log_id()?;
            let replay_from = c.u64()?;
            let replay_from = (replay_from != 0).then_some(replay_from);
            RaftRecord::Purge { upto, checkpoint: Checkpoint { vote, committed, replay_from } }
        }
        other => {
            c.at = 0;
            return c.fail(format!("unknown record kind {other}"));
        }
    };
    c.end()?;
    Ok(record)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::log_id;
    use std::collections::{BTreeMap, BTreeSet};

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn put(key: &str, value: &str) -> Request {
        Request::Put { key: key.into(), value: value.into() }
    }

    fn samples() -> Vec<(RaftRecord, Vec<u8>)> {
        let members: BTreeMap<NodeId, openraft::BasicNode> =
            [(1, openraft::BasicNode::new("127.0.0.1:7001"))].into_iter().collect();
        let membership = Membership::new(vec![BTreeSet::from([1])], members);
        let batch = Request::Batch(vec![("a".into(), "1".into()), ("b".into(), String::new())]);
        let entries = [
            Entry { log_id: log_id(2, 1, 6), payload: EntryPayload::Normal(batch) },
            Entry { log_id: log_id(2, 1, 7), payload: EntryPayload::Blank },
            Entry { log_id: log_id(2, 1, 8), payload: EntryPayload::Normal(put("k", "vv")) },
            Entry { log_id: log_id(2, 1, 9), payload: EntryPayload::Membership(membership) },
        ];
        let checkpoint = Checkpoint {
            vote: Some(Vote::new_committed(3, 2)),
            committed: Some(log_id(2, 1, 9)),
            replay_from: Some(12),
        };
        let mut out: Vec<(RaftRecord, Vec<u8>)> =
            entries.into_iter().map(|e| (RaftRecord::Entry(e.clone()), encode_entry(&e))).collect();
        out.push((RaftRecord::Vote(Vote::new(3, 2)), encode_vote(&Vote::new(3, 2))));
        out.push((RaftRecord::Committed(None), encode_committed(None)));
        out.push((RaftRecord::Committed(Some(log_id(2, 1, 8))), encode_committed(Some(&log_id(2, 1, 8)))));
        out.push((RaftRecord::Truncate { since: 5 }, encode_truncate(5)));
        out.push((
            RaftRecord::Purge { upto: log_id(1, 1, 4), checkpoint: checkpoint.clone() },
            encode_purge(&log_id(1, 1, 4), &checkpoint),
        ));
        let empty = Checkpoint { vote: None, committed: None, replay_from: None };
        out.push((
            RaftRecord::Purge { upto: log_id(0, 0, 0), checkpoint: empty.clone() },
            encode_purge(&log_id(0, 0, 0), &empty),
        ));
        out
    }

    #[test]
    fn every_record_round_trips() {
        for (record, bytes) in samples() {
            assert_eq!(decode(&bytes), Ok(record));
        }
    }

    #[test]
    fn every_truncation_of_a_record_is_refused() {
        for (_, bytes) in samples() {
            for len in 0..bytes.len() {
                assert!(decode(&bytes[..len]).is_err(), "{} cut to {len} bytes decoded", hex(&bytes));
            }
            let mut longer = bytes.clone();
            longer.push(0);
            assert!(decode(&longer).is_err(), "a trailing byte after {} was accepted", hex(&bytes));
        }
    }

    #[test]
    fn unknown_kinds_versions_and_flags_say_where() {
        let mut bytes = encode_vote(&Vote::new(1, 1));
        bytes[1] = 2;
        assert_eq!(decode(&bytes).unwrap_err().offset, 1);
        bytes[1] = VERSION;
        bytes[18] = 7;
        let e = decode(&bytes).unwrap_err();
        assert_eq!((e.offset, e.what.as_str()), (18, "committed byte is 7, not 0 or 1"));
        let e = decode(&[9, VERSION]).unwrap_err();
        assert_eq!((e.offset, e.what.as_str()), (0, "unknown record kind 9"));
        let mut bad_utf8 =
            encode_entry(&Entry { log_id: log_id(1, 1, 1), payload: EntryPayload::Normal(put("ab", "")) });
        bad_utf8[32] = 0xff;
        assert_eq!(decode(&bad_utf8).unwrap_err().offset, 32);
    }

    #[test]
    fn golden_bytes_match_the_spec() {
        // These exact bytes are printed in docs/FORMAT.md ("Raft records").
        let normal = Entry { log_id: log_id(2, 1, 8), payload: EntryPayload::Normal(put("k", "vv")) };
        assert_eq!(
            hex(&encode_entry(&normal)),
            concat!(
                "0101",
                "020000000000000001000000000000000800000000000000",
                "01",
                "01",
                "010000006b",
                "020000007676"
            )
        );
        assert_eq!(
            hex(&encode_vote(&Vote::new_committed(3, 2))),
            concat!("0201", "0300000000000000", "0200000000000000", "01")
        );
        assert_eq!(hex(&encode_committed(None)), "030100");
        assert_eq!(hex(&encode_truncate(5)), "04010500000000000000");
        let checkpoint = Checkpoint { vote: None, committed: Some(log_id(1, 1, 4)), replay_from: Some(12) };
        assert_eq!(
            hex(&encode_purge(&log_id(1, 1, 4), &checkpoint)),
            concat!(
                "0501",
                "010000000000000001000000000000000400000000000000",
                "00",
                "01010000000000000001000000000000000400000000000000",
                "0c00000000000000"
            )
        );
    }
}
