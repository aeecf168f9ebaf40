//! The bodies of the cargo-fuzz targets in `fuzz/`, as plain functions over
//! bytes, so the fuzzers and the stable replay in
//! `tests/quick/fuzz_corpus.rs` run the same code. Each function checks its properties itself and panics on a
//! violation; a panic is a finding.
//!
//! - [`decode_record`]: the record and segment-header decoders never panic,
//!   never yield a record that fails its checksum, and round-trip exactly.
//! - [`open_segment`]: opening a log whose only segment holds arbitrary bytes
//!   never panics, fails only with a corruption or unsupported error, keeps
//!   exactly the complete batches before the first anomaly, accepts the next
//!   append, and recovers to the same state a second time.
//!
//! - [`decode_snapshot`], [`open_mutated_store`], [`store_model`]: the
//!   snapshot decoder, a mutated store directory, and arbitrary store
//!   operations, faults and crashes against a model (`fuzz_targets/store.rs`).
//! - [`model`]: the one model of a store those targets, the store crash
//!   explorer, the kill test and the store property test judge it by.
//!
//! Compiled only with the `fuzzing` feature (which turns on `sim`): the
//! fuzz crate and walden's own tests enable it. Not part of the public API.

use crate::format::{
    decode_record as decode, encode_record, RecordDecodeError, RecordRef, Seed, SegmentHeader, MAX_RECORD_BYTES,
    RECORD_ALIGN, RECORD_HEADER_BYTES, SEGMENT_HEADER_BYTES,
};
use crate::io::SimFs;
use crate::{Error, FsyncMode, Lsn, RecoveryMode, Wal, WalOptions};
use std::path::Path;

pub mod model;
mod store;
pub use store::{
    base_store_files, decode_snapshot, open_mutated_store, store_model, wrap_snapshot, FUZZ_SNAPSHOT_DIR,
    FUZZ_SNAPSHOT_LSN, FUZZ_SNAPSHOT_ORIGIN, FUZZ_STORE_DIR,
};

/// The log id of the segment header [`open_segment`] can prefix.
pub const FUZZ_LOG_ID: u64 = 0x0123_4567_89ab_cdef;
/// The salt of the segment header [`open_segment`] can prefix.
pub const FUZZ_SALT: u64 = 0xfedc_ba98_7654_3210;
/// The directory of the simulated log [`open_segment`] opens.
pub const FUZZ_DIR: &str = "/fuzz";
/// The one segment file [`open_segment`] writes.
pub const FUZZ_SEGMENT: &str = "00000000000000000001.wal";
/// The record [`open_segment`] appends after a successful open.
pub const FUZZ_APPENDED: &[u8] = b"appended by the fuzzer";

/// Control bit of [`open_segment`]'s first byte: prefix the rest with
/// [`fuzz_segment_header`] instead of taking it as the whole file.
pub const OPEN_WITH_HEADER: u8 = 1;

/// The valid segment header (log id [`FUZZ_LOG_ID`], salt [`FUZZ_SALT`],
/// first LSN 1) that [`open_segment`] prefixes when its control byte asks.
pub fn fuzz_segment_header() -> SegmentHeader {
    SegmentHeader {
        log_id: FUZZ_LOG_ID,
        salt: FUZZ_SALT,
        first_lsn: Lsn::FIRST,
        created_unix_us: 1_700_000_000_000_000,
    }
}

/// The control byte of an [`open_segment`] input.
pub fn open_segment_control(with_header: bool, recovery: RecoveryMode) -> u8 {
    let mode = match recovery {
        RecoveryMode::TolerateTornTail => 0,
        RecoveryMode::PointInTime => 1,
        RecoveryMode::AbsoluteConsistency => 2,
    };
    (mode << 1) | u8::from(with_header)
}

/// Fuzz target `decode_record`. Input: 16 bytes of seed (log id and salt,
/// little-endian, zero-padded if short), then the bytes to decode.
pub fn decode_record(data: &[u8]) {
    let mut seed_bytes = [0u8; 16];
    let split = data.len().min(16);
    seed_bytes[..split].copy_from_slice(&data[..split]);
    let rest = &data[split..];
    let log_id = u64::from_le_bytes(seed_bytes[..8].try_into().expect("8 bytes"));
    let salt = u64::from_le_bytes(seed_bytes[8..].try_into().expect("8 bytes"));
    let seed = Seed::new(log_id, salt);

    match decode(rest, seed) {
        Ok(record) => check_decoded(rest, seed, &record),
        Err(RecordDecodeError::Truncated { needed, available }) => {
            assert_eq!(available, rest.len() as u64, "Truncated must report the bytes available");
            assert!(needed > available, "Truncated with enough bytes: {needed} <= {available}");
        }
        Err(RecordDecodeError::Zeroed) => assert!(rest[..RECORD_HEADER_BYTES].iter().all(|&b| b == 0)),
        Err(RecordDecodeError::TooLong(len)) => assert!(len > MAX_RECORD_BYTES),
        Err(RecordDecodeError::Checksum { stored, computed }) => assert_ne!(stored, computed),
        Err(RecordDecodeError::Unsupported { .. }) => {}
    }

    if let Ok(header) = SegmentHeader::decode(rest) {
        assert_eq!(header.encode()[..], rest[..SEGMENT_HEADER_BYTES], "segment header does not round-trip");
    }
}

/// The properties of a record `decode_record` accepted from `input`.
fn check_decoded(input: &[u8], seed: Seed, record: &RecordRef<'_>) {
    let header = &record.header;
    let len = header.payload_len as usize;
    assert!(header.payload_len <= MAX_RECORD_BYTES, "payload of {len} bytes accepted");
    assert_eq!(record.payload.len(), len, "payload slice and length field disagree");
    let start = input.as_ptr() as usize;
    let payload_at = record.payload.as_ptr() as usize;
    assert_eq!(payload_at, start + RECORD_HEADER_BYTES, "payload does not follow the header");
    assert!(RECORD_HEADER_BYTES + len <= input.len(), "payload runs past the input");
    assert_eq!(header.frame_len(), (RECORD_HEADER_BYTES + len).next_multiple_of(RECORD_ALIGN));
    let used = &input[..RECORD_HEADER_BYTES + len];

    // The checksum, recomputed here from its definition: seeded CRC32 over
    // header bytes 4..32 and then the payload.
    let mut hasher = seed.hasher();
    hasher.update(&used[4..RECORD_HEADER_BYTES]);
    hasher.update(record.payload);
    let stored = u32::from_le_bytes(used[..4].try_into().expect("4 bytes"));
    assert_eq!(stored, hasher.finalize(), "a record that fails its checksum was returned");

    // Re-encoding gives the same bytes (padding aside). The encoder refuses
    // (debug-asserts) LSN 0 and a watermark at or past the LSN, which only a
    // forged CRC can produce; those frames are covered by the check above.
    if header.lsn.0 > 0 && header.durable_watermark < header.lsn {
        let mut out = Vec::with_capacity(header.frame_len());
        encode_record(&mut out, seed, header.lsn, header.durable_watermark, header.flags, record.payload);
        assert_eq!(out.len(), header.frame_len(), "frame length disagrees with the encoder");
        assert_eq!(&out[..used.len()], used, "the record does not re-encode to the same bytes");
    }
}

/// What a segment file holds, worked out independently of the recovery code:
/// the records of its complete batches before the first anomaly, and what
/// the recovery modes must make of it.
struct Expected {
    /// The records of every complete batch before the first anomaly.
    committed: Vec<(Lsn, Vec<u8>)>,
    /// Complete batches, then the end of the file or zeros only.
    clean: bool,
    /// The first anomaly is a checksummed record of a kind, flag or reserved
    /// field this build does not know: every mode must refuse the log.
    unsupported: bool,
    /// A valid record past the anomaly says the damaged LSN was durable.
    proven_durable: bool,
}

fn expected_recovery(file: &[u8]) -> Option<Expected> {
    let header = SegmentHeader::decode(file).ok().filter(|h| h.first_lsn == Lsn::FIRST)?;
    let seed = header.seed();
    let mut committed = Vec::new();
    let mut pending: Vec<(Lsn, Vec<u8>)> = Vec::new();
    let mut committed_end = SEGMENT_HEADER_BYTES;
    let mut offset = SEGMENT_HEADER_BYTES;
    let mut next = Lsn::FIRST;
    // Where the walk stopped: Ok(()) at the end of the bytes, else why not.
    let stop: Result<(), Option<RecordDecodeError>> = loop {
        if offset >= file.len() {
            break Ok(());
        }
        match decode(&file[offset..], seed) {
            Err(e) => break Err(Some(e)),
            Ok(rec) if rec.header.lsn != next => break Err(None),
            Ok(rec) => {
                pending.push((next, rec.payload.to_vec()));
                offset += rec.header.frame_len();
                next = next.next();
                if !rec.header.batch_continues() {
                    committed.append(&mut pending);
                    committed_end = offset;
                }
            }
        }
    };
    let (stop_offset, stop_lsn) =
        if pending.is_empty() { (offset, next) } else { (committed_end, Lsn(next.0 - pending.len() as u64)) };
    let clean_stop =
        matches!(stop, Ok(()) | Err(Some(RecordDecodeError::Zeroed | RecordDecodeError::Truncated { .. })));
    let rest_is_zero = file[stop_offset.min(file.len())..].iter().all(|&b| b == 0);
    let clean = clean_stop && pending.is_empty() && rest_is_zero;
    let unsupported = matches!(stop, Err(Some(RecordDecodeError::Unsupported { .. })));
    let mut proven_durable = false;
    let mut at = stop_offset + RECORD_ALIGN;
    while !clean && at + RECORD_HEADER_BYTES <= file.len() {
        if let Ok(rec) = decode(&file[at..], seed) {
            if rec.header.lsn > stop_lsn && rec.header.durable_watermark >= stop_lsn {
                proven_durable = true;
                break;
            }
        }
        at += RECORD_ALIGN;
    }
    Some(Expected { committed, clean, unsupported, proven_durable })
}

/// Every record of the log, asserting each is readable and the LSNs are
/// consecutive from the first.
fn read_all(wal: &Wal<SimFs>) -> Vec<(Lsn, Vec<u8>)> {
    let mut out = Vec::new();
    let mut next = wal.first_lsn();
    for record in wal.read_from(Lsn::FIRST).expect("read_from") {
        let record = record.unwrap_or_else(|e| panic!("reading record {next} back failed: {e}"));
        assert_eq!(record.lsn, next, "LSNs must be consecutive");
        next = next.next();
        out.push((record.lsn, record.payload));
    }
    out
}

/// Fuzz target `open_segment`. Input: a control byte, then the segment
/// file. Bit 0 of the control byte ([`OPEN_WITH_HEADER`]) puts
/// [`fuzz_segment_header`] before the file bytes; bits 1-2 choose the
/// recovery mode (0 tolerate torn tail, 1 point in time, 2 absolute
/// consistency, 3 tolerate torn tail).
pub fn open_segment(data: &[u8]) {
    let (control, rest) = data.split_first().map_or((0, &[][..]), |(c, rest)| (*c, rest));
    let recovery = match (control >> 1) & 3 {
        1 => RecoveryMode::PointInTime,
        2 => RecoveryMode::AbsoluteConsistency,
        _ => RecoveryMode::TolerateTornTail,
    };
    let mut file = Vec::with_capacity(SEGMENT_HEADER_BYTES + rest.len());
    if control & OPEN_WITH_HEADER != 0 {
        file.extend_from_slice(&fuzz_segment_header().encode());
    }
    file.extend_from_slice(rest);

    let fs = SimFs::new();
    let dir = Path::new(FUZZ_DIR);
    fs.write_file(&dir.join(FUZZ_SEGMENT), &file);
    let options = WalOptions {
        segment_bytes: 64 * 1024,
        preallocate: crate::Preallocate::Off,
        fsync: FsyncMode::Never,
        recovery,
        ..Default::default()
    };
    let expected = expected_recovery(&file);

    let wal = match Wal::open_with(fs.clone(), dir, options.clone()) {
        Ok(wal) => wal,
        Err(e) => {
            assert!(matches!(e, Error::Corrupt { .. } | Error::Unsupported { .. }), "{recovery:?}: open failed: {e}");
            let Some(expected) = expected else { return };
            assert_eq!(
                expected.unsupported,
                matches!(e, Error::Unsupported { .. }),
                "{recovery:?}: refused as {e}, yet the first anomaly is {}an unknown record",
                if expected.unsupported { "" } else { "not " }
            );
            assert!(!expected.clean, "{recovery:?}: a clean segment was refused: {e}");
            assert!(
                recovery != RecoveryMode::PointInTime || expected.unsupported,
                "PointInTime refused a segment with a valid header: {e}"
            );
            assert!(
                recovery != RecoveryMode::TolerateTornTail || expected.proven_durable || expected.unsupported,
                "TolerateTornTail refused a torn tail that no later record proves durable: {e}"
            );
            return;
        }
    };
    let expected = expected.unwrap_or_else(|| panic!("{recovery:?}: a segment with a bad header was opened"));
    assert!(!expected.unsupported, "{recovery:?}: a log with an unknown record was opened, not refused");
    assert!(
        recovery != RecoveryMode::AbsoluteConsistency || expected.clean,
        "AbsoluteConsistency opened a damaged segment"
    );
    assert!(
        recovery != RecoveryMode::TolerateTornTail || expected.clean || !expected.proven_durable,
        "TolerateTornTail cut a record a later record proves durable"
    );
    assert_eq!(wal.first_lsn(), Lsn::FIRST);
    let records = read_all(&wal);
    assert!(records == expected.committed, "{recovery:?}: recovery kept other records than the complete batches");
    assert_eq!(wal.last_lsn(), records.last().map(|r| r.0), "last_lsn disagrees with the records read");
    let lsn = wal.append(FUZZ_APPENDED).expect("append after recovery");
    assert_eq!(lsn, Lsn(records.len() as u64 + 1), "the appended record got the wrong LSN");
    wal.close().expect("close");

    let wal = Wal::open_with(fs, dir, options).unwrap_or_else(|e| panic!("{recovery:?}: reopen failed: {e}"));
    assert!(wal.recovery_report().cuts.is_empty(), "the second recovery cut {:?}", wal.recovery_report().cuts);
    let again = read_all(&wal);
    assert_eq!(again.len(), records.len() + 1, "reopen found another number of records");
    assert!(again[..records.len()] == records[..], "reopen found other records");
    assert_eq!(again[records.len()], (lsn, FUZZ_APPENDED.to_vec()), "the appended record did not survive");
    wal.close().expect("close after reopen");
}
