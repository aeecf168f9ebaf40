//! Whether a snapshot belongs to the log beside it: the rule recovery, the
//! views, `walden verify` and backups all apply, written once.
//!
//! | the snapshot                                   | verdict                         |
//! |------------------------------------------------|---------------------------------|
//! | file name's LSN differs from its header's      | refused (renamed or copied)     |
//! | format 1: no origin recorded                   | unchecked: used by its LSN alone, as walden 0.1.0 did |
//! | log id differs from the log's                  | refused: from another store     |
//! | LSN 0, or no seal recorded                     | continues (log id checked)      |
//! | the log no longer holds the record at its LSN  | unchecked: log id only          |
//! | the record at its LSN has another CRC or salt  | refused: from another history   |
//! | the record at its LSN matches the seal         | continues                       |

use super::{parse_snapshot_file_name, RecordSeal, SnapshotHeader, SnapshotInfo};
use crate::Lsn;

/// What [`check_origin`] concluded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OriginCheck {
    /// The snapshot was taken from this log, at this point of its history.
    Continues,
    /// It cannot be checked in full; it is used, and this says why.
    Unchecked(String),
    /// It belongs to another store or another history: never loaded.
    Refused(String),
}

/// Whether a snapshot's file name and header name the same LSN. A snapshot
/// copied or renamed under another LSN's name is refused: its name would
/// place it wrongly among the others (retention, `walden snapshot list`).
pub fn check_name(info: &SnapshotInfo) -> Option<String> {
    let name = info.path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    match parse_snapshot_file_name(name) {
        Some(named) if named != info.header.lsn => Some(format!(
            "its name says LSN {named} but its header says LSN {}: renamed or copied under another name",
            info.header.lsn
        )),
        _ => None,
    }
}

/// Whether the snapshot described by `header` continues the log whose id is
/// `log_id`, given `seal_at_lsn`: the seal of the record that log holds at
/// the snapshot's LSN (`None` if it holds none).
pub fn check_origin(header: &SnapshotHeader, log_id: u64, seal_at_lsn: Option<RecordSeal>) -> OriginCheck {
    let lsn = header.lsn;
    let Some(origin) = header.origin else {
        return OriginCheck::Unchecked(
            "snapshot format 1 records no origin: used by its LSN alone, as walden 0.1.0 did".into(),
        );
    };
    if origin.log_id != log_id {
        return OriginCheck::Refused(format!(
            "it was taken from another store's log (log id {:#018x}; this log's is {log_id:#018x})",
            origin.log_id
        ));
    }
    let Some(expected) = origin.seal else {
        return OriginCheck::Continues;
    };
    match seal_at_lsn {
        None => {
            OriginCheck::Unchecked(format!("the log no longer holds the record at LSN {lsn}: checked by log id only"))
        }
        Some(found) if found == expected => OriginCheck::Continues,
        Some(found) => OriginCheck::Refused(format!(
            "it was taken from another history of this log: its record at LSN {lsn} had CRC {:#010x} in a segment \
             salted {:#018x}, the log's has CRC {:#010x} salted {:#018x}",
            expected.record_crc, expected.segment_salt, found.record_crc, found.segment_salt
        )),
    }
}

/// The seal of `lsn` is only looked up for snapshots that carry one.
pub(crate) fn wants_seal(header: &SnapshotHeader) -> Option<Lsn> {
    header.origin.and_then(|o| o.seal).map(|_| header.lsn)
}
