//! [`KvState`]: the replicated key-value map, with the last applied log id
//! and the membership, and its encoding inside a snapshot file.
//!
//! A snapshot's content (compressed by walden's snapshot writer) is:
//!
//! ```text
//! u32     length of the metadata JSON (at most 16 MiB)
//! bytes   openraft's SnapshotMeta as JSON (last log id, membership, snapshot id)
//! u64     number of pairs
//! pairs   u32 key length, key (UTF-8), u32 value length, value (UTF-8)
//! ```
//!
//! The last applied log id and the membership are the metadata's.

use crate::types::{Entry, LogId, Request, Response, SnapshotMeta, StoredMembership};
use openraft::EntryPayload;
use std::io::{self, Read, Write};

/// The largest metadata JSON, key or value a snapshot may claim; a larger
/// length is damage, refused before anything is allocated.
const FIELD_BYTES_MAX: u32 = 16 << 20;

/// The state machine's state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KvState {
    pub last_applied: Option<LogId>,
    pub membership: StoredMembership,
    pub data: imbl::OrdMap<String, String>,
}

impl KvState {
    /// Applies one committed entry; returns its response.
    pub fn apply(&mut self, entry: Entry) -> Response {
        self.last_applied = Some(entry.log_id);
        match entry.payload {
            EntryPayload::Blank => Response::default(),
            EntryPayload::Normal(Request::Put { key, value }) => {
                Response { previous: vec![self.data.insert(key, value)] }
            }
            EntryPayload::Normal(Request::Batch(pairs)) => {
                Response { previous: pairs.into_iter().map(|(key, value)| self.data.insert(key, value)).collect() }
            }
            EntryPayload::Membership(membership) => {
                self.membership = StoredMembership::new(Some(entry.log_id), membership);
                Response::default()
            }
        }
    }

    /// The metadata a snapshot of this state carries.
    pub fn meta(&self, snapshot_id: String) -> SnapshotMeta {
        SnapshotMeta { last_log_id: self.last_applied, last_membership: self.membership.clone(), snapshot_id }
    }

    /// Streams this state, under `meta`, into `out`; returns the pair count.
    pub fn write_content(&self, meta: &SnapshotMeta, out: &mut dyn Write) -> io::Result<u64> {
        let json = serde_json::to_vec(meta).map_err(io::Error::other)?;
        out.write_all(&(json.len() as u32).to_le_bytes())?;
        out.write_all(&json)?;
        out.write_all(&(self.data.len() as u64).to_le_bytes())?;
        for (key, value) in self.data.iter() {
            for field in [key, value] {
                out.write_all(&(field.len() as u32).to_le_bytes())?;
                out.write_all(field.as_bytes())?;
            }
        }
        Ok(self.data.len() as u64)
    }

    /// Reads a state written by [`KvState::write_content`].
    pub fn read_content(input: &mut dyn Read) -> io::Result<(SnapshotMeta, KvState)> {
        let json = read_field(input, "metadata")?;
        let meta: SnapshotMeta = serde_json::from_slice(&json).map_err(|e| invalid(format!("metadata JSON: {e}")))?;
        let mut count = [0u8; 8];
        input.read_exact(&mut count)?;
        let count = u64::from_le_bytes(count);
        let mut data = imbl::OrdMap::new();
        for i in 0..count {
            let key = utf8(read_field(input, "key")?, i)?;
            let value = utf8(read_field(input, "value")?, i)?;
            data.insert(key, value);
        }
        let mut rest = [0u8; 1];
        if input.read(&mut rest)? != 0 {
            return Err(invalid(format!("bytes after the {count} pairs the content announced")));
        }
        let state = KvState { last_applied: meta.last_log_id, membership: meta.last_membership.clone(), data };
        Ok((meta, state))
    }
}

fn invalid(what: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

fn read_field(input: &mut dyn Read, what: &str) -> io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    input.read_exact(&mut len)?;
    let len = u32::from_le_bytes(len);
    if len > FIELD_BYTES_MAX {
        return Err(invalid(format!("a {what} of {len} bytes (at most {FIELD_BYTES_MAX})")));
    }
    let mut out = vec![0u8; len as usize];
    input.read_exact(&mut out)?;
    Ok(out)
}

fn utf8(bytes: Vec<u8>, pair: u64) -> io::Result<String> {
    String::from_utf8(bytes).map_err(|_| invalid(format!("pair {pair} is not UTF-8")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::log_id;

    #[test]
    fn content_round_trips_and_damage_is_refused() {
        let mut state = KvState::default();
        for i in 0..50u64 {
            let put = Request::Put { key: format!("k{i}"), value: "v".repeat(i as usize) };
            state.apply(Entry { log_id: log_id(1, 1, i), payload: EntryPayload::Normal(put) });
        }
        let meta = state.meta("s1".into());
        let mut bytes = Vec::new();
        assert_eq!(state.write_content(&meta, &mut bytes).unwrap(), 50);
        let (read_meta, read_state) = KvState::read_content(&mut bytes.as_slice()).unwrap();
        assert_eq!((read_meta, read_state), (meta, state));
        for len in 0..bytes.len() {
            assert!(KvState::read_content(&mut &bytes[..len]).is_err(), "content cut to {len} bytes read back");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(KvState::read_content(&mut longer.as_slice()).is_err());
        let mut huge = bytes.clone();
        huge[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        let e = KvState::read_content(&mut huge.as_slice()).unwrap_err();
        assert!(e.to_string().contains("metadata of 4294967295 bytes"), "{e}");
    }
}
