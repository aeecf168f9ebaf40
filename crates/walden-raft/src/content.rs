//! [`Applied`]: an application's state with what openraft asks of a state
//! machine beside it (the last applied log id, the membership), how entries
//! are applied to it, and a snapshot's content encoding, shared by the
//! walden and the in-memory state machines.
//!
//! A snapshot's content (compressed by walden's snapshot writer on disk) is:
//!
//! ```text
//! u32     length of the metadata JSON (at most 16 MiB)
//! bytes   openraft's SnapshotMeta as JSON (last log id, membership, snapshot id)
//! bytes   the application's stream (AppState::write_snapshot), to the end
//! ```
//!
//! The last applied log id and the membership are the metadata's.

use crate::app::AppState;
use openraft::{Entry, EntryPayload, LogId, RaftTypeConfig, SnapshotMeta, StoredMembership};
use std::io::{self, Read, Write};

/// The largest metadata JSON a snapshot may claim; a larger length is
/// damage, refused before anything is allocated.
pub const META_BYTES_MAX: u32 = 16 << 20;

/// openraft's snapshot metadata for `C`.
pub type Meta<C> = SnapshotMeta<<C as RaftTypeConfig>::NodeId, <C as RaftTypeConfig>::Node>;
/// openraft's stored membership for `C`.
pub type Membership<C> = StoredMembership<<C as RaftTypeConfig>::NodeId, <C as RaftTypeConfig>::Node>;

/// The application's state, the last log id applied to it and the last
/// membership applied.
pub struct Applied<C: RaftTypeConfig, S> {
    /// The last entry applied.
    pub last_applied: Option<LogId<C::NodeId>>,
    /// The last membership applied.
    pub membership: Membership<C>,
    /// The application's state.
    pub app: S,
}

impl<C, S> Applied<C, S>
where
    C: RaftTypeConfig<Entry = Entry<C>>,
    S: AppState<C>,
{
    /// Nothing applied.
    pub fn empty() -> Self {
        Applied { last_applied: None, membership: StoredMembership::default(), app: S::empty() }
    }

    /// Applies one committed entry; returns its response.
    pub fn apply(&mut self, entry: Entry<C>) -> C::R {
        self.last_applied = Some(entry.log_id.clone());
        match entry.payload {
            EntryPayload::Blank => self.app.response_without_request(),
            EntryPayload::Normal(request) => self.app.apply(&entry.log_id, request),
            EntryPayload::Membership(membership) => {
                self.membership = StoredMembership::new(Some(entry.log_id), membership);
                self.app.response_without_request()
            }
        }
    }

    /// The metadata of a snapshot of this state.
    pub fn meta(&self, snapshot_id: String) -> Meta<C> {
        SnapshotMeta { last_log_id: self.last_applied.clone(), last_membership: self.membership.clone(), snapshot_id }
    }

    /// The metadata and frozen state a snapshot of this state writes.
    pub fn freeze(&self, snapshot_id: String) -> (Meta<C>, S::Frozen) {
        (self.meta(snapshot_id), self.app.freeze())
    }
}

/// Streams a snapshot's content into `out`; returns the application's count
/// of items written.
pub fn write_content<C, S>(meta: &Meta<C>, frozen: &S::Frozen, out: &mut dyn Write) -> io::Result<u64>
where
    C: RaftTypeConfig,
    S: AppState<C>,
{
    let json = serde_json::to_vec(meta).map_err(io::Error::other)?;
    out.write_all(&(json.len() as u32).to_le_bytes())?;
    out.write_all(&json)?;
    S::write_snapshot(frozen, out)
}

fn invalid(what: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

/// Reads a snapshot's content written by [`write_content`]: the metadata and
/// the state, with the last applied log id and membership the metadata's.
pub fn read_content<C, S>(input: &mut dyn Read) -> io::Result<(Meta<C>, Applied<C, S>)>
where
    C: RaftTypeConfig<Entry = Entry<C>>,
    S: AppState<C>,
{
    let mut len = [0u8; 4];
    input.read_exact(&mut len)?;
    let len = u32::from_le_bytes(len);
    if len > META_BYTES_MAX {
        return Err(invalid(format!("a metadata of {len} bytes (at most {META_BYTES_MAX})")));
    }
    let mut json = vec![0u8; len as usize];
    input.read_exact(&mut json)?;
    let meta: Meta<C> = serde_json::from_slice(&json).map_err(|e| invalid(format!("metadata JSON: {e}")))?;
    let app = S::read_snapshot(input)?;
    let mut rest = [0u8; 1];
    if input.read(&mut rest)? != 0 {
        return Err(invalid("bytes after the end of the application's state".into()));
    }
    let applied = Applied { last_applied: meta.last_log_id.clone(), membership: meta.last_membership.clone(), app };
    Ok((meta, applied))
}
