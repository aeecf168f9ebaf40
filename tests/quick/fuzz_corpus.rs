//! Replays the cargo-fuzz corpus (`fuzz/corpus/<target>/`) and the saved
//! crash inputs (`fuzz/regressions/<target>/`) through the same functions the
//! fuzzers run, `walden::fuzz_targets`, so plain `cargo test` keeps every
//! input the fuzzers ever found interesting passing.
//!
//! The hand-made seeds the corpus grew from are generated here too
//! ([`decode_record_seeds`], [`open_segment_seeds`]) and replayed from
//! memory; `WALDEN_WRITE_FUZZ_SEEDS=1 cargo test --test quick fuzz_corpus::` writes
//! them into the corpus directories (see fuzz/README.md).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use walden::format::{
    encode_record, Seed, SegmentHeader, FLAG_BATCH_CONTINUES, MAX_RECORD_BYTES, RECORD_HEADER_BYTES,
    SEGMENT_HEADER_BYTES,
};
use walden::fuzz_targets::{self, fuzz_segment_header, open_segment_control, FUZZ_LOG_ID, FUZZ_SALT, OPEN_WITH_HEADER};
use walden::{Lsn, RecoveryMode};

type Target = fn(&[u8]);

const MODES: [RecoveryMode; 3] =
    [RecoveryMode::TolerateTornTail, RecoveryMode::PointInTime, RecoveryMode::AbsoluteConsistency];

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

/// The regular files of `dir`, sorted; none if it does not exist.
fn files_in(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut files: Vec<PathBuf> = entries.map(|e| e.expect("directory entry").path()).filter(|p| p.is_file()).collect();
    files.sort();
    files
}

/// Runs `target` on every input, then fails listing every input that panicked.
fn replay<'a>(what: &str, target: Target, inputs: impl IntoIterator<Item = (String, &'a [u8])>) -> usize {
    let mut count = 0;
    let mut failures = Vec::new();
    for (name, bytes) in inputs {
        count += 1;
        if let Err(panic) = catch_unwind(AssertUnwindSafe(|| target(bytes))) {
            let message = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("(no message)");
            failures.push(format!("{name}: {message}"));
        }
    }
    assert!(failures.is_empty(), "{what}: {} of {count} inputs failed:\n{}", failures.len(), failures.join("\n"));
    count
}

fn replay_dir(what: &str, target: Target, dir: &Path) -> usize {
    let files = files_in(dir);
    let inputs: Vec<(String, Vec<u8>)> = files
        .iter()
        .map(|p| (p.display().to_string(), std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))))
        .collect();
    replay(what, target, inputs.iter().map(|(name, bytes)| (name.clone(), &bytes[..])))
}

#[test]
fn the_decode_record_corpus_replays_cleanly() {
    let n = replay_dir("decode_record corpus", fuzz_targets::decode_record, &fuzz_dir().join("corpus/decode_record"));
    assert!(n > 0, "fuzz/corpus/decode_record is empty");
}

#[test]
fn the_open_segment_corpus_replays_cleanly() {
    let n = replay_dir("open_segment corpus", fuzz_targets::open_segment, &fuzz_dir().join("corpus/open_segment"));
    assert!(n > 0, "fuzz/corpus/open_segment is empty");
}

#[test]
fn the_saved_decode_record_crashes_stay_fixed() {
    replay_dir("decode_record regressions", fuzz_targets::decode_record, &fuzz_dir().join("regressions/decode_record"));
}

#[test]
fn the_saved_open_segment_crashes_stay_fixed() {
    replay_dir("open_segment regressions", fuzz_targets::open_segment, &fuzz_dir().join("regressions/open_segment"));
}

/// Replays generated seeds through a target and, with
/// `WALDEN_WRITE_FUZZ_SEEDS` set, writes them into its corpus as `seed-*`.
fn replay_seeds(target: &str, f: Target, seeds: &[(String, Vec<u8>)]) {
    replay(target, f, seeds.iter().map(|(name, bytes)| (name.clone(), &bytes[..])));
    if std::env::var_os("WALDEN_WRITE_FUZZ_SEEDS").is_some() {
        let dir = fuzz_dir().join("corpus").join(target);
        std::fs::create_dir_all(&dir).unwrap();
        for (name, bytes) in seeds {
            std::fs::write(dir.join(format!("seed-{name}")), bytes).unwrap();
        }
    }
}

#[test]
fn the_generated_seeds_pass_and_can_be_written_out() {
    for (target, f, seeds) in [
        ("decode_record", fuzz_targets::decode_record as Target, decode_record_seeds()),
        ("open_segment", fuzz_targets::open_segment as Target, open_segment_seeds()),
    ] {
        assert!(seeds.len() > 10);
        replay_seeds(target, f, &seeds);
    }
}

// ---------------------------------------------------------------------------
// Seeds

fn seed() -> Seed {
    Seed::new(FUZZ_LOG_ID, FUZZ_SALT)
}

fn seed_prefix(log_id: u64, salt: u64) -> Vec<u8> {
    let mut out = log_id.to_le_bytes().to_vec();
    out.extend_from_slice(&salt.to_le_bytes());
    out
}

/// A payload of `len` bytes that is not all one value.
fn payload(len: usize, tag: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(tag)).collect()
}

/// One framed record.
fn frame(lsn: u64, watermark: u64, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_record(&mut out, seed(), Lsn(lsn), Lsn(watermark), flags, payload);
    out
}

/// Recomputes the checksum of the frame at the start of `bytes` after its
/// header was edited: a record that passes its CRC yet is odd.
fn reseal(bytes: &mut [u8], log_id: u64, salt: u64) {
    let len = u32::from_le_bytes(bytes[4..8].try_into().unwrap()) as usize;
    let end = (RECORD_HEADER_BYTES + len).min(bytes.len());
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&log_id.to_le_bytes());
    hasher.update(&salt.to_le_bytes());
    hasher.update(&bytes[4..end]);
    let crc = hasher.finalize();
    bytes[..4].copy_from_slice(&crc.to_le_bytes());
}

/// `n` records from LSN `first`, with varied sizes, each carrying the
/// previous LSN as its durable watermark.
fn records(first: u64, n: u64) -> Vec<u8> {
    let mut out = Vec::new();
    for lsn in first..first + n {
        let len = (lsn * 37 % 120) as usize;
        encode_record(&mut out, seed(), Lsn(lsn), Lsn(lsn - 1), 0, &payload(len, lsn as u8));
    }
    out
}

/// Seeds of `decode_record`: 16 bytes of seed, then the record bytes.
pub fn decode_record_seeds() -> Vec<(String, Vec<u8>)> {
    let mut seeds = Vec::new();
    let mut add = |name: String, rest: &[u8]| {
        let mut input = seed_prefix(FUZZ_LOG_ID, FUZZ_SALT);
        input.extend_from_slice(rest);
        seeds.push((name, input));
    };
    for (i, len) in [0usize, 1, 7, 8, 9, 31, 100, 1000, 4096].into_iter().enumerate() {
        add(format!("valid-{len}"), &frame(i as u64 + 1, i as u64, 0, &payload(len, i as u8)));
    }
    add("cont".into(), &frame(7, 3, FLAG_BATCH_CONTINUES, b"first of a batch"));
    let mut batch = frame(10, 9, FLAG_BATCH_CONTINUES, b"a");
    batch.extend(frame(11, 9, FLAG_BATCH_CONTINUES, b"bb"));
    batch.extend(frame(12, 9, 0, b"ccc"));
    add("batch-of-3".into(), &batch);
    add("huge-lsn".into(), &frame(u64::MAX, u64::MAX - 1, 0, b"end of time"));

    let good = frame(9, 8, 0, b"walden record");
    let mut flipped = good.clone();
    flipped[RECORD_HEADER_BYTES + 3] ^= 0x10;
    add("flipped-payload-bit".into(), &flipped);
    let mut flipped = good.clone();
    flipped[4] ^= 0x01;
    add("flipped-length-bit".into(), &flipped);
    let mut torn = good.clone();
    torn.truncate(RECORD_HEADER_BYTES + 5);
    add("torn-payload".into(), &torn);
    add("torn-header".into(), &good[..20]);
    for (name, at, value) in
        [("unknown-kind", 24, 7u8), ("kind-zero", 24, 0), ("unknown-flag", 25, 2), ("reserved", 29, 1)]
    {
        let mut odd = good.clone();
        odd[at] = value;
        reseal(&mut odd, FUZZ_LOG_ID, FUZZ_SALT);
        add(format!("{name}-valid-crc"), &odd);
    }
    let mut lsn_zero = frame(1, 0, 0, b"lsn zero");
    lsn_zero[8] = 0;
    reseal(&mut lsn_zero, FUZZ_LOG_ID, FUZZ_SALT);
    add("lsn-zero-valid-crc".into(), &lsn_zero);
    for (name, len) in
        [("len-max", MAX_RECORD_BYTES), ("len-max-plus-1", MAX_RECORD_BYTES + 1), ("len-u32-max", u32::MAX)]
    {
        let mut long = good.clone();
        long[4..8].copy_from_slice(&len.to_le_bytes());
        reseal(&mut long, FUZZ_LOG_ID, FUZZ_SALT);
        add(format!("over-long-{name}"), &long);
    }
    add("zeroed".into(), &[0u8; 64]);
    add("empty".into(), &[]);
    add("segment-header".into(), &fuzz_segment_header().encode());
    let mut v2 = fuzz_segment_header().encode();
    v2[8] = 2;
    let crc = crc32fast::hash(&v2[..60]);
    v2[60..].copy_from_slice(&crc.to_le_bytes());
    add("segment-header-v2".into(), &v2);

    // Another seed: a record valid under log id 0 and salt 0.
    let mut zero_seed = seed_prefix(0, 0);
    let mut rec = Vec::new();
    encode_record(&mut rec, Seed::new(0, 0), Lsn(3), Lsn(2), 0, b"zero seed");
    zero_seed.extend(rec);
    seeds.push(("zero-seed".into(), zero_seed));
    seeds.push(("short-seed".into(), vec![1, 2, 3]));
    seeds
}

fn segment(body: &[u8]) -> Vec<u8> {
    let mut file = fuzz_segment_header().encode().to_vec();
    file.extend_from_slice(body);
    file
}

/// Seeds of `open_segment`: a control byte, then the segment file (or,
/// with [`OPEN_WITH_HEADER`], the bytes after its header).
pub fn open_segment_seeds() -> Vec<(String, Vec<u8>)> {
    // (name, body after the header)
    let mut bodies: Vec<(String, Vec<u8>)> = Vec::new();
    for n in [0u64, 1, 2, 5, 20, 50] {
        bodies.push((format!("{n}-records"), records(1, n)));
    }
    let mut body = records(1, 10);
    body.extend_from_slice(&[0u8; 4096]);
    bodies.push(("zero-tail".into(), body));

    let mut batches = records(1, 2);
    for (lsn, flags) in
        [(3, FLAG_BATCH_CONTINUES), (4, FLAG_BATCH_CONTINUES), (5, 0), (6, FLAG_BATCH_CONTINUES), (7, 0)]
    {
        batches.extend(frame(lsn, 2, flags, &payload(lsn as usize * 3, lsn as u8)));
    }
    bodies.push(("batches".into(), batches.clone()));
    let mut torn_batch = batches.clone();
    torn_batch.extend(frame(8, 7, FLAG_BATCH_CONTINUES, b"batch never ends"));
    torn_batch.extend(frame(9, 7, FLAG_BATCH_CONTINUES, b"still going"));
    bodies.push(("torn-batch".into(), torn_batch));

    let full = records(1, 8);
    let last_start = records(1, 7).len();
    bodies.push(("torn-tail-payload".into(), full[..full.len() - 5].to_vec()));
    bodies.push(("torn-tail-header".into(), full[..last_start + 12].to_vec()));
    // The last record's payload ends before its padding does.
    let mut unpadded = records(1, 3);
    unpadded.extend(frame(4, 3, 0, b"odd"));
    unpadded.truncate(unpadded.len() - 5);
    bodies.push(("ends-in-padding".into(), unpadded));

    let mut flipped_middle = records(1, 8);
    let third = records(1, 2).len();
    flipped_middle[third + RECORD_HEADER_BYTES + 1] ^= 4;
    bodies.push(("flipped-bit-proven-durable".into(), flipped_middle));
    let mut flipped_last = records(1, 8);
    flipped_last[last_start + RECORD_HEADER_BYTES + 2] ^= 1;
    bodies.push(("flipped-bit-last".into(), flipped_last));

    let mut unknown = records(1, 4);
    let at = unknown.len();
    unknown.extend(frame(5, 4, 0, b"from the future"));
    unknown[at + 24] = 9;
    reseal(&mut unknown[at..], FUZZ_LOG_ID, FUZZ_SALT);
    unknown.extend(records(6, 2));
    bodies.push(("unknown-kind".into(), unknown));

    let mut long = records(1, 3);
    let at = long.len();
    long.extend(frame(4, 3, 0, b"long"));
    long[at + 4..at + 8].copy_from_slice(&u32::MAX.to_le_bytes());
    reseal(&mut long[at..], FUZZ_LOG_ID, FUZZ_SALT);
    bodies.push(("over-long-length".into(), long));

    let mut gap = records(1, 3);
    gap.extend(records(5, 2));
    bodies.push(("lsn-gap".into(), gap));
    let mut zero_then_garbage = records(1, 3);
    zero_then_garbage.extend_from_slice(&[0u8; 64]);
    zero_then_garbage.extend_from_slice(b"garbage after a hole");
    bodies.push(("zeros-then-garbage".into(), zero_then_garbage));
    let mut foreign = records(1, 2);
    encode_record(&mut foreign, Seed::new(FUZZ_LOG_ID, FUZZ_SALT + 1), Lsn(3), Lsn(2), 0, b"other generation");
    bodies.push(("stale-generation".into(), foreign));
    // Nearly a whole 64 KiB segment: the append after recovery rolls over.
    let mut big = Vec::new();
    encode_record(&mut big, seed(), Lsn(1), Lsn(0), 0, &payload(40_000, 1));
    encode_record(&mut big, seed(), Lsn(2), Lsn(1), 0, &payload(25_300, 2));
    bodies.push(("nearly-full-segment".into(), big));

    let mut seeds = Vec::new();
    for (name, body) in &bodies {
        for (m, mode) in MODES.into_iter().enumerate() {
            // Alternate between a whole file and header-prefixed input.
            let mut input = vec![open_segment_control(m != 1, mode)];
            if m == 1 {
                input.extend(segment(body));
            } else {
                input.extend_from_slice(body);
            }
            seeds.push((format!("{name}-{mode:?}"), input));
        }
    }

    let header = fuzz_segment_header().encode();
    let mut bad_headers: Vec<(&str, Vec<u8>)> = vec![("empty-file", Vec::new()), ("short-file", header[..40].to_vec())];
    let mut bad_magic = header;
    bad_magic[0] = b'X';
    bad_headers.push(("bad-magic", bad_magic.to_vec()));
    let mut bad_crc = header;
    bad_crc[63] ^= 1;
    bad_headers.push(("bad-header-crc", bad_crc.to_vec()));
    let mut v2 = header;
    v2[8] = 2;
    let crc = crc32fast::hash(&v2[..60]);
    v2[60..].copy_from_slice(&crc.to_le_bytes());
    bad_headers.push(("version-2", v2.to_vec()));
    let other_first = SegmentHeader { first_lsn: Lsn(5), ..fuzz_segment_header() }.encode();
    bad_headers.push(("first-lsn-mismatch", other_first.to_vec()));
    for (name, mut file) in bad_headers {
        file.extend(records(1, 2));
        for mode in MODES {
            let mut input = vec![open_segment_control(false, mode)];
            input.extend_from_slice(&file);
            seeds.push((format!("{name}-{mode:?}"), input));
        }
    }
    seeds.push(("empty-input".into(), Vec::new()));
    seeds.push(("header-only".into(), vec![OPEN_WITH_HEADER]));
    assert!(seeds.iter().all(|(_, s)| s.len() <= SEGMENT_HEADER_BYTES + 66_000));
    seeds
}

// ---------------------------------------------------------------------------
// Engine bugs the fuzz oracle found, as minimal reproducers; each input is
// also in fuzz/regressions/open_segment/.
//
// - unknown-kind-closes-batch: below. Present in the first commit (f2b70dc),
//   fixed since (`classify` now checks Unsupported before the torn batch).
// - padding-past-eof-resync-panic: a segment whose last record's payload ends
//   at the end of the file, inside its padding. A working-tree state of
//   src/wal/recovery.rs (never committed) mapped `[0, end)` past the end of
//   the file in `resync_unproven_tail` and panicked slicing it; the committed
//   code first restores the missing padding zeros.

/// A batch whose last record has an unknown kind (valid checksum): a record
/// "written by a newer walden". The table in src/wal/recovery.rs says such a
/// record is refused with `Error::Unsupported` in every mode, never cut. But
/// `classify` checks `scan.torn_batch` before `Stop::Bad(Unsupported)`, so
/// the stop is taken for a torn batch: TolerateTornTail and PointInTime cut
/// the batch into quarantine and open the log, AbsoluteConsistency reports
/// `Corrupt(TornBatch)` instead of `Unsupported`.
fn unknown_kind_closing_a_batch() -> Vec<u8> {
    let mut body = frame(1, 0, FLAG_BATCH_CONTINUES, b"");
    let at = body.len();
    body.extend(frame(2, 0, 0, b""));
    body[at + 24] = 9;
    reseal(&mut body[at..], FUZZ_LOG_ID, FUZZ_SALT);
    segment(&body)
}

#[test]
fn an_unknown_record_kind_that_closes_a_batch_is_refused_not_cut_as_a_torn_batch() {
    use walden::io::SimFs;
    use walden::{Error, FsyncMode, Wal, WalOptions};
    let file = unknown_kind_closing_a_batch();
    let hex: String = file.iter().map(|b| format!("{b:02x}")).collect();
    let mut outcomes = Vec::new();
    for recovery in MODES {
        let fs = SimFs::new();
        let path = Path::new(fuzz_targets::FUZZ_DIR).join(fuzz_targets::FUZZ_SEGMENT);
        fs.write_file(&path, &file);
        let options = WalOptions {
            fsync: FsyncMode::Never,
            preallocate: walden::Preallocate::Off,
            recovery,
            ..Default::default()
        };
        match Wal::open_with(fs.clone(), fuzz_targets::FUZZ_DIR, options) {
            Err(Error::Unsupported { .. }) => {
                assert_eq!(fs.read_file(&path).unwrap(), file, "a refused open changes nothing")
            }
            Err(e) => outcomes.push(format!("{recovery:?}: refused with {e}")),
            Ok(wal) => outcomes.push(format!(
                "{recovery:?}: opened with {} records after cutting {:?}",
                wal.recovery_report().records,
                wal.recovery_report().cuts.iter().map(|c| &c.reason).collect::<Vec<_>>()
            )),
        }
    }
    assert!(
        outcomes.is_empty(),
        "segment {hex}\nshould be Error::Unsupported in every mode, but:\n{}",
        outcomes.join("\n")
    );
}

#[test]
fn the_regression_input_for_the_unknown_kind_batch_matches_its_reproducer() {
    // fuzz/regressions/open_segment/unknown-kind-closes-batch is the same
    // segment, in open_segment's input format (control byte first).
    let mut input = vec![open_segment_control(false, RecoveryMode::TolerateTornTail)];
    input.extend(unknown_kind_closing_a_batch());
    let path = fuzz_dir().join("regressions/open_segment/unknown-kind-closes-batch");
    if std::env::var_os("WALDEN_WRITE_FUZZ_SEEDS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &input).unwrap();
    }
    assert_eq!(std::fs::read(&path).expect("the regression input"), input);
}

// ---------------------------------------------------------------------------
// The targets above the log: decode_snapshot, open_mutated_store, store_model

#[test]
fn the_store_target_corpora_replay_cleanly() {
    for (target, f) in [
        ("decode_snapshot", fuzz_targets::decode_snapshot as Target),
        ("open_mutated_store", fuzz_targets::open_mutated_store as Target),
        ("store_model", fuzz_targets::store_model as Target),
    ] {
        let n = replay_dir(&format!("{target} corpus"), f, &fuzz_dir().join("corpus").join(target));
        assert!(n > 0, "fuzz/corpus/{target} is empty");
        replay_dir(&format!("{target} regressions"), f, &fuzz_dir().join("regressions").join(target));
    }
}

#[test]
fn the_store_target_seeds_pass_and_can_be_written_out() {
    for (target, f, seeds) in [
        ("decode_snapshot", fuzz_targets::decode_snapshot as Target, decode_snapshot_seeds()),
        ("open_mutated_store", fuzz_targets::open_mutated_store as Target, open_mutated_store_seeds()),
        ("store_model", fuzz_targets::store_model as Target, store_model_seeds()),
    ] {
        assert!(seeds.len() > 5, "{target}: {} seeds", seeds.len());
        replay_seeds(target, f, &seeds);
    }
}

/// Seeds of `decode_snapshot`: the base store's snapshots whole, their zstd
/// content, their entries, and damaged copies.
fn decode_snapshot_seeds() -> Vec<(String, Vec<u8>)> {
    let mut seeds = Vec::new();
    let snapshots: Vec<Vec<u8>> = fuzz_targets::base_store_files()
        .into_iter()
        .filter(|(p, _)| p.extension().is_some_and(|e| e == "zst"))
        .map(|(_, b)| b)
        .collect();
    assert_eq!(snapshots.len(), 2, "the base store keeps two snapshots");
    for (i, file) in snapshots.iter().enumerate() {
        let header = walden::snapshot::SnapshotHeader::decode(file).unwrap();
        assert!(header.origin.is_some(), "the base store writes snapshot format 2");
        let content = &file[header.header_bytes()..];
        let entries = zstd::bulk::decompress(content, 1 << 20).unwrap();
        seeds.push((format!("file-{i}"), [&[0u8][..], file].concat()));
        seeds.push((format!("content-{i}"), [&[1u8][..], content].concat()));
        seeds.push((format!("entries-{i}"), [&[2u8][..], &entries].concat()));
        for cut in [0, 10, 63, 64, 95, 96, file.len() / 2, file.len() - 1] {
            seeds.push((format!("file-{i}-cut-{cut}"), [&[0u8][..], &file[..cut]].concat()));
        }
        for at in [3, 20, 50, 53, 58, 66, 70, 93, file.len() - 2] {
            let mut bad = file.clone();
            bad[at] ^= 0x08;
            seeds.push((format!("file-{i}-flip-{at}"), [&[0u8][..], &bad].concat()));
        }
        for cut in [1, 5, entries.len() / 3, entries.len() - 1] {
            seeds.push((format!("entries-{i}-cut-{cut}"), [&[2u8][..], &entries[..cut]].concat()));
        }
        let mut huge = entries.clone();
        huge[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        seeds.push((format!("entries-{i}-huge-key"), [&[2u8][..], &huge].concat()));
        // Version-2 content (docs/FORMAT.md): "WKVS", version, chunks, end.
        assert_eq!(&entries[..8], b"WKVS\x02\0\0\0", "the store writes snapshot content version 2");
        let mut huge_chunk = entries.clone();
        huge_chunk[12..16].copy_from_slice(&u32::MAX.to_le_bytes());
        seeds.push((format!("entries-{i}-huge-chunk"), [&[2u8][..], &huge_chunk].concat()));
        let mut huge_value = entries.clone();
        huge_value[16 + 20..16 + 24].copy_from_slice(&u32::MAX.to_le_bytes());
        seeds.push((format!("entries-{i}-huge-value"), [&[2u8][..], &huge_value].concat()));
        let mut miscounted = entries.clone();
        let end = miscounted.len() - 8;
        miscounted[end] ^= 1;
        seeds.push((format!("entries-{i}-miscounted"), [&[2u8][..], &miscounted].concat()));
        let v1 = version_1_of(&entries);
        seeds.push((format!("entries-{i}-v1"), [&[2u8][..], &v1].concat()));
        seeds.push((format!("entries-{i}-v1-cut"), [&[2u8][..], &v1[..v1.len() / 2]].concat()));
    }
    seeds
}

#[test]
fn the_base_store_s_snapshots_load_the_same_from_version_1_content() {
    use walden::store::KvState;
    use walden::StateMachine;
    for (path, file) in fuzz_targets::base_store_files() {
        if path.extension().is_none_or(|e| e != "zst") {
            continue;
        }
        let header = walden::snapshot::SnapshotHeader::decode(&file).unwrap();
        let v2 = zstd::bulk::decompress(&file[header.header_bytes()..], 1 << 20).unwrap();
        let from_v2 = KvState::read_snapshot(&mut &v2[..]).expect("version 2");
        let from_v1 = KvState::read_snapshot(&mut &version_1_of(&v2)[..]).expect("version 1");
        assert!(from_v2.len() > 5, "{}: {} keys", path.display(), from_v2.len());
        assert!(from_v1.iter().eq(from_v2.iter()), "{}", path.display());
    }
}

/// The same store's snapshot content in version 1 (docs/FORMAT.md), read
/// from version-2 content by the spec: the entries, their fields reordered.
fn version_1_of(v2: &[u8]) -> Vec<u8> {
    let u32_at = |at: usize| u32::from_le_bytes(v2[at..at + 4].try_into().unwrap()) as usize;
    let mut v1 = Vec::new();
    let mut at = 8;
    loop {
        let (entries, bytes) = (u32_at(at), u32_at(at + 4));
        at += 8;
        if entries == 0 {
            return v1;
        }
        let chunk_end = at + bytes;
        while at < chunk_end {
            let (key_len, value_len) = (u32_at(at + 16), u32_at(at + 20));
            let writer_len = u16::from_le_bytes(v2[at + 24..at + 26].try_into().unwrap()) as usize;
            let key = &v2[at + 26..at + 26 + key_len];
            let value = &v2[at + 26 + key_len..at + 26 + key_len + value_len];
            let writer = &v2[at + 26 + key_len + value_len..at + 26 + key_len + value_len + writer_len];
            v1.extend_from_slice(&(key_len as u32).to_le_bytes());
            v1.extend_from_slice(key);
            v1.extend_from_slice(&(value_len as u32).to_le_bytes());
            v1.extend_from_slice(value);
            v1.extend_from_slice(&v2[at..at + 8]);
            v1.extend_from_slice(&(writer_len as u16).to_le_bytes());
            v1.extend_from_slice(writer);
            v1.extend_from_slice(&v2[at + 8..at + 16]);
            at += 26 + key_len + value_len + writer_len;
        }
    }
}

/// Seeds of `open_mutated_store`: each recovery mode with no mutation, and
/// each kind of mutation on each file.
fn open_mutated_store_seeds() -> Vec<(String, Vec<u8>)> {
    let files = fuzz_targets::base_store_files();
    let mut seeds = Vec::new();
    for (mode, name) in MODES.iter().enumerate() {
        seeds.push((format!("clean-{name:?}"), vec![mode as u8]));
    }
    for (index, (path, bytes)) in files.iter().enumerate() {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let last = (bytes.len() as u16).saturating_sub(3).to_le_bytes();
        let middle = (bytes.len() as u16 / 2).to_le_bytes();
        for (mode, kind) in [(0u8, "tolerate"), (1, "point-in-time")] {
            for (op, what, offset, value) in [
                (0u8, "flip-end", last, 4u8),
                (0, "flip-middle", middle, 1),
                (1, "set-header", [9, 0], 0xff),
                (2, "truncate-middle", middle, 0),
                (3, "zero-end", last, 3),
                (4, "remove", [0, 0], 0),
                (5, "append-garbage", [0, 0], 40),
            ] {
                let m = [index as u8, op, offset[0], offset[1], value];
                seeds.push((format!("{kind}-{what}-{name}"), [&[mode][..], &m].concat()));
            }
        }
    }
    seeds
}

/// Seeds of `store_model`: sequences of puts, deletes, batches, snapshots,
/// reopens, crashes and faults, in both fsync modes.
fn store_model_seeds() -> Vec<(String, Vec<u8>)> {
    let put = |k: u8, len: u8| vec![0u8, k, len];
    let sequences: Vec<(&str, Vec<Vec<u8>>)> = vec![
        ("puts", (0..20).map(|i| put(i, i * 9)).collect()),
        ("batches-and-deletes", vec![vec![4, 1], put(3, 10), vec![3, 3], vec![4, 2], vec![3, 1]]),
        ("snapshot-then-crash-drop", vec![put(1, 50), put(2, 60), vec![5], put(3, 70), vec![7, 0]]),
        ("snapshot-then-crash-tear", vec![put(1, 150), vec![5], put(2, 150), put(3, 150), vec![7, 2]]),
        ("process-crash", vec![put(1, 20), vec![4, 0], vec![7, 1], put(4, 30)]),
        ("reopen", vec![put(1, 5), vec![6], put(2, 5), vec![5], vec![5], vec![6], put(3, 5)]),
        ("write-fault", vec![put(1, 5), vec![8, 0], put(2, 5), put(3, 5), vec![7, 0]]),
        ("lying-fsync", vec![put(1, 5), vec![9, 0], put(2, 5), put(3, 5), vec![7, 0]]),
        ("lying-fsync-in-snapshot", vec![put(1, 5), put(2, 5), vec![9, 1], vec![5], put(3, 5), vec![7, 2]]),
        ("rolls-and-retention", (0..60).map(|i| if i % 15 == 14 { vec![5] } else { put(i as u8, 200) }).collect()),
    ];
    let mut seeds = Vec::new();
    for (name, ops) in sequences {
        for (mode, mode_name) in [(0u8, "always"), (1, "never")] {
            let mut bytes = vec![mode];
            bytes.extend(ops.iter().flatten());
            seeds.push((format!("{name}-{mode_name}"), bytes));
        }
    }
    seeds
}
