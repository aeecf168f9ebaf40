//! The key-value map application: its openraft types ([`KvConfig`]), its
//! state ([`KvState`], an [`AppState`]) and how the node serves it ([`Kv`]).
//!
//! A snapshot's application stream is a u64 pair count, then each pair as a
//! u32 key length, key, u32 value length, value (UTF-8, each at most 16 MiB).

use super::node::Service;
use openraft::{EntryPayload, LogId};
use serde::{Deserialize, Serialize};
use std::io::{self, Read, Write};
use walden_raft::{AppState, SnapshotData};

openraft::declare_raft_types!(
    /// The types of the replicated key-value map.
    pub KvConfig:
        D = Request,
        R = Response,
        NodeId = u64,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<KvConfig>,
        SnapshotData = SnapshotData,
        AsyncRuntime = openraft::TokioRuntime,
);

/// A log entry of the map.
pub type Entry = openraft::Entry<KvConfig>;

/// The log id of `(term, node)` at `index`.
pub fn log_id(term: u64, node: u64, index: u64) -> LogId<u64> {
    LogId::new(openraft::CommittedLeaderId::new(term, node), index)
}

/// A write to the replicated map.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// Sets `key` to `value`.
    Put { key: String, value: String },
    /// Sets each key to its value, in order, as one log entry: the node
    /// groups concurrent clients' puts so that one fsync carries many.
    Batch(Vec<(String, String)>),
}

/// What applying a [`Request`] returned.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Response {
    /// For each key written, in order, the value it had before, if any.
    pub previous: Vec<Option<String>>,
}

/// A normal entry putting `key` = `value` at `(term, 1, index)`.
pub fn put_entry(term: u64, index: u64, key: &str, value: &str) -> Entry {
    let request = Request::Put { key: key.into(), value: value.into() };
    Entry { log_id: log_id(term, 1, index), payload: EntryPayload::Normal(request) }
}

/// The map.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KvState {
    pub data: imbl::OrdMap<String, String>,
}

/// The largest key or value a snapshot may claim; a larger length is
/// damage, refused before anything is allocated.
const FIELD_BYTES_MAX: u32 = 16 << 20;

impl AppState<KvConfig> for KvState {
    type Frozen = imbl::OrdMap<String, String>;

    fn empty() -> Self {
        KvState::default()
    }

    fn apply(&mut self, _: &LogId<u64>, request: Request) -> Response {
        match request {
            Request::Put { key, value } => Response { previous: vec![self.data.insert(key, value)] },
            Request::Batch(pairs) => {
                Response { previous: pairs.into_iter().map(|(key, value)| self.data.insert(key, value)).collect() }
            }
        }
    }

    fn response_without_request(&self) -> Response {
        Response::default()
    }

    fn freeze(&self) -> Self::Frozen {
        self.data.clone()
    }

    fn write_snapshot(data: &Self::Frozen, out: &mut dyn Write) -> io::Result<u64> {
        out.write_all(&(data.len() as u64).to_le_bytes())?;
        for (key, value) in data.iter() {
            for field in [key, value] {
                out.write_all(&(field.len() as u32).to_le_bytes())?;
                out.write_all(field.as_bytes())?;
            }
        }
        Ok(data.len() as u64)
    }

    fn read_snapshot(input: &mut dyn Read) -> io::Result<Self> {
        let mut count = [0u8; 8];
        input.read_exact(&mut count)?;
        let count = u64::from_le_bytes(count);
        let mut data = imbl::OrdMap::new();
        for i in 0..count {
            let key = utf8(read_field(input)?, i)?;
            let value = utf8(read_field(input)?, i)?;
            data.insert(key, value);
        }
        Ok(KvState { data })
    }
}

fn invalid(what: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

fn read_field(input: &mut dyn Read) -> io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    input.read_exact(&mut len)?;
    let len = u32::from_le_bytes(len);
    if len > FIELD_BYTES_MAX {
        return Err(invalid(format!("a field of {len} bytes (at most {FIELD_BYTES_MAX})")));
    }
    let mut out = vec![0u8; len as usize];
    input.read_exact(&mut out)?;
    Ok(out)
}

fn utf8(bytes: Vec<u8>, pair: u64) -> io::Result<String> {
    String::from_utf8(bytes).map_err(|_| invalid(format!("pair {pair} is not UTF-8")))
}

/// How the node serves the map: a write is one put, a read a list of keys.
pub struct Kv;

impl Service for Kv {
    type D = Request;
    type C = KvConfig;
    type State = KvState;
    type Write = (String, String);
    type WriteReply = Option<String>;
    type Read = Vec<String>;
    type ReadReply = Vec<Option<String>>;

    fn batch(mut writes: Vec<(String, String)>) -> Request {
        if writes.len() == 1 {
            let (key, value) = writes.pop().expect("one");
            Request::Put { key, value }
        } else {
            Request::Batch(writes)
        }
    }

    fn split(response: Response) -> Vec<Option<String>> {
        response.previous
    }

    fn read(state: &KvState, keys: &Vec<String>) -> Vec<Option<String>> {
        keys.iter().map(|k| state.data.get(k).cloned()).collect()
    }

    fn digest(state: &KvState) -> (u64, u64) {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        for (key, value) in state.data.iter() {
            (key, value).hash(&mut hasher);
        }
        (state.data.len() as u64, hasher.finish())
    }
}
