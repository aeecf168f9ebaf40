//! The manifest of one backup, `backup-{id:06}/BACKUP`: a text file that
//! lists every file of the backup with its length and CRC32, and what the
//! files hold. Written last (synced, then the directory renamed into its
//! final name), so a backup directory with a manifest is complete.
//!
//! ```text
//! walden-backup 1
//! id 3
//! created_unix_us 1700000000000000
//! source /srv/data
//! log_id 0123456789abcdef
//! lsn 101 4000
//! segment wal/00000000000000000101.wal 4096 0a1b2c3d 101 200 fedcba9876543210 sealed
//! segment wal/00000000000000000201.wal 2048 11223344 201 4000 0011223344556677 active
//! snapshot snapshots/snapshot-00000000000000000250.zst 1234 55667788 250 deadbeef
//! end 9abcdef0
//! ```
//!
//! `lsn` is the first and last LSN the log holds (last = first - 1 for an
//! empty log). A segment line: path, bytes, CRC32 of those bytes, first and
//! last LSN, segment salt (hex), `sealed` or `active` (the source's last
//! segment, copied up to its last complete batch). A snapshot line: path,
//! bytes, CRC32 of the whole file, its LSN, its content CRC (hex). `end`
//! holds the CRC32 of every byte before that line. Paths are relative to
//! the backup directory and never contain spaces.

use crate::{Error, Lsn, Result};
use std::fmt::Write as _;
use std::path::Path;

/// The manifest's file name inside a backup directory.
pub const MANIFEST_NAME: &str = "BACKUP";
const MAGIC_LINE: &str = "walden-backup 1";

/// A segment of a backup.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct SegmentEntry {
    /// Relative to the backup directory: `wal/{first_lsn:020}.wal`.
    pub path: String,
    /// The file's length as copied.
    pub bytes: u64,
    /// CRC32 of the whole file as copied.
    pub crc: u32,
    /// The LSN of its first record.
    pub first_lsn: Lsn,
    /// The LSN of its last record copied.
    pub last_lsn: Lsn,
    /// The salt in its segment header.
    pub salt: u64,
    /// False for the source's last segment, copied up to its last complete
    /// batch while it may still have been written to.
    pub sealed: bool,
}

/// A snapshot of a backup.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct SnapshotEntry {
    /// Relative to the backup directory: `snapshots/snapshot-{lsn:020}.zst`.
    pub path: String,
    /// The file's length.
    pub bytes: u64,
    /// CRC32 of the whole file.
    pub crc: u32,
    /// The LSN the snapshot covers.
    pub lsn: Lsn,
    /// The content CRC its header records.
    pub content_crc: u32,
}

/// What one backup holds.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Manifest {
    /// The backup's number in its destination (`backup-{id:06}`).
    pub id: u64,
    /// When it was taken, microseconds since the Unix epoch.
    pub created_unix_us: u64,
    /// The data directory it was taken from, as named.
    pub source: String,
    /// The log id of the source's log.
    pub log_id: u64,
    /// The first LSN the backup's log holds.
    pub first_lsn: Lsn,
    /// The last LSN the backup's log holds.
    pub last_lsn: Lsn,
    /// Its segments, in LSN order.
    pub segments: Vec<SegmentEntry>,
    /// Its snapshots, oldest first.
    pub snapshots: Vec<SnapshotEntry>,
}

impl Manifest {
    /// The manifest as the text written into the backup (checksummed).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let w = &mut out;
        // Writing into a String cannot fail.
        let _ = writeln!(w, "{MAGIC_LINE}");
        let _ = writeln!(w, "id {}", self.id);
        let _ = writeln!(w, "created_unix_us {}", self.created_unix_us);
        let _ = writeln!(w, "source {}", self.source.replace('\n', " "));
        let _ = writeln!(w, "log_id {:016x}", self.log_id);
        let _ = writeln!(w, "lsn {} {}", self.first_lsn, self.last_lsn);
        for s in &self.segments {
            let state = if s.sealed { "sealed" } else { "active" };
            let _ = writeln!(
                w,
                "segment {} {} {:08x} {} {} {:016x} {state}",
                s.path, s.bytes, s.crc, s.first_lsn, s.last_lsn, s.salt
            );
        }
        for s in &self.snapshots {
            let _ = writeln!(w, "snapshot {} {} {:08x} {} {:08x}", s.path, s.bytes, s.crc, s.lsn, s.content_crc);
        }
        let crc = crc32fast::hash(out.as_bytes());
        let _ = writeln!(out, "end {crc:08x}");
        out
    }

    /// Parses a manifest; `file` names it in errors.
    pub fn decode(text: &str, file: &Path) -> Result<Manifest> {
        let bad = |reason: String| Error::BadBackup { file: file.to_owned(), reason };
        let end_at = text.rfind("end ").filter(|&i| i == 0 || text.as_bytes()[i - 1] == b'\n');
        let Some(end_at) = end_at else {
            return Err(bad("no `end` line: the manifest is incomplete".into()));
        };
        let stored = text[end_at + 4..].trim_end_matches('\n');
        let computed = crc32fast::hash(&text.as_bytes()[..end_at]);
        if u32::from_str_radix(stored, 16).ok() != Some(computed) || text[end_at..].lines().count() != 1 {
            return Err(bad(format!("checksum mismatch: the `end` line says {stored}, the lines hold {computed:08x}")));
        }
        let mut lines = text[..end_at].lines();
        if lines.next() != Some(MAGIC_LINE) {
            return Err(bad(format!("not a walden backup manifest (first line is not `{MAGIC_LINE}`)")));
        }
        let mut m = Manifest {
            id: 0,
            created_unix_us: 0,
            source: String::new(),
            log_id: 0,
            first_lsn: Lsn::FIRST,
            last_lsn: Lsn::ZERO,
            segments: Vec::new(),
            snapshots: Vec::new(),
        };
        for (n, line) in lines.enumerate() {
            let at = |what: &str| bad(format!("line {}: {what}: `{line}`", n + 2));
            let (key, rest) = line.split_once(' ').ok_or_else(|| at("no value"))?;
            let fields: Vec<&str> = rest.split(' ').collect();
            let num = |i: usize| -> Result<u64> {
                fields.get(i).and_then(|f| f.parse().ok()).ok_or_else(|| at("a number expected"))
            };
            let hex = |i: usize| -> Result<u64> {
                fields.get(i).and_then(|f| u64::from_str_radix(f, 16).ok()).ok_or_else(|| at("hex expected"))
            };
            let path = |i: usize, dir: &str| -> Result<String> {
                let p = fields.get(i).ok_or_else(|| at("a path expected"))?;
                let safe = p.strip_prefix(dir).is_some_and(|n| !n.is_empty() && !n.contains('/') && n != "..");
                if !safe {
                    return Err(at("a path is outside the backup's wal/ or snapshots/"));
                }
                Ok((*p).to_owned())
            };
            match (key, fields.len()) {
                ("id", 1) => m.id = num(0)?,
                ("created_unix_us", 1) => m.created_unix_us = num(0)?,
                ("source", _) => m.source = rest.to_owned(),
                ("log_id", 1) => m.log_id = hex(0)?,
                ("lsn", 2) => (m.first_lsn, m.last_lsn) = (Lsn(num(0)?), Lsn(num(1)?)),
                ("segment", 7) => m.segments.push(SegmentEntry {
                    path: path(0, "wal/")?,
                    bytes: num(1)?,
                    crc: hex(2)? as u32,
                    first_lsn: Lsn(num(3)?),
                    last_lsn: Lsn(num(4)?),
                    salt: hex(5)?,
                    sealed: match fields[6] {
                        "sealed" => true,
                        "active" => false,
                        _ => return Err(at("`sealed` or `active` expected")),
                    },
                }),
                ("snapshot", 5) => m.snapshots.push(SnapshotEntry {
                    path: path(0, "snapshots/")?,
                    bytes: num(1)?,
                    crc: hex(2)? as u32,
                    lsn: Lsn(num(3)?),
                    content_crc: hex(4)? as u32,
                }),
                _ => return Err(at("unknown line")),
            }
        }
        Ok(m)
    }

    /// Every file, with its length and CRC32.
    pub fn files(&self) -> impl Iterator<Item = (&str, u64, u32)> {
        let segments = self.segments.iter().map(|s| (s.path.as_str(), s.bytes, s.crc));
        segments.chain(self.snapshots.iter().map(|s| (s.path.as_str(), s.bytes, s.crc)))
    }

    /// Bytes of all files.
    pub fn bytes(&self) -> u64 {
        self.files().map(|(_, bytes, _)| bytes).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest() -> Manifest {
        Manifest {
            id: 3,
            created_unix_us: 1_700_000_000_000_000,
            source: "/srv/data".into(),
            log_id: 0x0123_4567_89ab_cdef,
            first_lsn: Lsn(101),
            last_lsn: Lsn(4000),
            segments: vec![
                SegmentEntry {
                    path: "wal/00000000000000000101.wal".into(),
                    bytes: 4096,
                    crc: 0x0a1b_2c3d,
                    first_lsn: Lsn(101),
                    last_lsn: Lsn(200),
                    salt: 0xfedc_ba98_7654_3210,
                    sealed: true,
                },
                SegmentEntry {
                    path: "wal/00000000000000000201.wal".into(),
                    bytes: 2048,
                    crc: 0x1122_3344,
                    first_lsn: Lsn(201),
                    last_lsn: Lsn(4000),
                    salt: 0x0011_2233_4455_6677,
                    sealed: false,
                },
            ],
            snapshots: vec![SnapshotEntry {
                path: "snapshots/snapshot-00000000000000000250.zst".into(),
                bytes: 1234,
                crc: 0x5566_7788,
                lsn: Lsn(250),
                content_crc: 0xdead_beef,
            }],
        }
    }

    #[test]
    fn golden_text_matches_the_spec_and_round_trips() {
        // This exact manifest is printed in docs/FORMAT.md.
        let text = manifest().encode();
        let body = "walden-backup 1\nid 3\ncreated_unix_us 1700000000000000\nsource /srv/data\n\
                    log_id 0123456789abcdef\nlsn 101 4000\n\
                    segment wal/00000000000000000101.wal 4096 0a1b2c3d 101 200 fedcba9876543210 sealed\n\
                    segment wal/00000000000000000201.wal 2048 11223344 201 4000 0011223344556677 active\n\
                    snapshot snapshots/snapshot-00000000000000000250.zst 1234 55667788 250 deadbeef\n";
        assert_eq!(text, format!("{body}end {:08x}\n", crc32fast::hash(body.as_bytes())));
        assert_eq!(text.lines().last(), Some("end c4d4431d"));
        assert_eq!(Manifest::decode(&text, Path::new("BACKUP")).unwrap(), manifest());
    }

    #[test]
    fn any_changed_byte_or_a_cut_is_refused() {
        let text = manifest().encode();
        for at in 0..text.len() {
            let mut bytes = text.clone().into_bytes();
            bytes[at] ^= 0x01;
            if let Ok(changed) = String::from_utf8(bytes) {
                assert!(Manifest::decode(&changed, Path::new("BACKUP")).is_err(), "a change at byte {at} was accepted");
            }
        }
        for cut in 0..text.len() - 1 {
            assert!(Manifest::decode(&text[..cut], Path::new("BACKUP")).is_err(), "a cut at {cut} was accepted");
        }
    }

    #[test]
    fn a_path_outside_the_backup_is_refused() {
        let mut m = manifest();
        m.snapshots[0].path = "snapshots/../../etc/passwd".into();
        assert!(Manifest::decode(&m.encode(), Path::new("BACKUP")).is_err());
        m.snapshots[0].path = "/etc/passwd".into();
        assert!(Manifest::decode(&m.encode(), Path::new("BACKUP")).is_err());
    }
}
