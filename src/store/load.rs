//! The store's snapshot content: written from a frozen [`KvMap`], loaded
//! back into one. The encoding is in `codec.rs` and docs/FORMAT.md.
//!
//! A load runs on two threads. The calling thread reads the content (the
//! snapshot's zstd decoder runs inside its reads) and cuts it into chunks:
//! a version-2 chunk is read whole, by its length, without looking at its
//! entries; version-1 content (no chunks) is cut into entries and each is
//! rewritten as a version-2 entry on the way. A second thread,
//! `walden-load`, checks each entry, encodes it into the leaf being filled
//! and builds the tree bottom-up, leaf by leaf, in key order: no search,
//! no node ever split, each leaf copied once into exact allocations when
//! full. Making the leaves is most of the work (the entries' encoding, and
//! the page faults of the map's memory): when the builder falls behind
//! (its queue is full), the reading thread makes the next chunk's leaves
//! itself and hands them over made (`KvMapBuilder::append`), so the two
//! share the work whichever half is slower. The content is never whole in
//! memory: at most `CHUNKS_IN_FLIGHT` chunks (64 KiB of entries each, or
//! their leaves) wait between the two threads, so memory stays a few
//! megabytes above the map's.
//!
//! **Invariant:** a loaded map holds exactly the entries of the content,
//! each checked (`codec::entry_len`) and in strictly ascending key order;
//! anything else (a cut, garbage, keys out of order, a wrong count) is an
//! `InvalidData` or `UnexpectedEof` error, never a partial map.

use super::codec::{
    self, EntryFields, CHUNK_HEADER_BYTES, CHUNK_TARGET_BYTES, MAX_CHUNK_BYTES, SNAPSHOT_MAGIC, SNAPSHOT_VERSION,
};
use super::tree::{KvMap, KvMapBuilder};
use std::io::{self, BufRead, Read, Write};
use std::sync::mpsc;

/// Chunks the reading thread may be ahead of the building one.
const CHUNKS_IN_FLIGHT: usize = 8;

/// Streams the map as version-2 content; returns the entries written.
pub(crate) fn write_snapshot(map: &KvMap, out: &mut dyn Write) -> io::Result<u64> {
    let mut head = [0u8; 8];
    head[..4].copy_from_slice(&SNAPSHOT_MAGIC);
    head[4..].copy_from_slice(&SNAPSHOT_VERSION.to_le_bytes());
    out.write_all(&head)?;
    let mut chunk = Vec::with_capacity(CHUNK_HEADER_BYTES + 2 * CHUNK_TARGET_BYTES);
    chunk.resize(CHUNK_HEADER_BYTES, 0);
    let (mut entries, mut total) = (0u32, 0u64);
    for record in map.iter() {
        let (key, value, writer) = (record.key(), record.value(), record.writer());
        codec::encode_entry(&mut chunk, key, value, record.revision(), writer, record.timestamp_us());
        entries += 1;
        if chunk.len() - CHUNK_HEADER_BYTES >= CHUNK_TARGET_BYTES {
            write_chunk(out, &mut chunk, entries)?;
            total += u64::from(entries);
            entries = 0;
        }
    }
    if entries > 0 {
        write_chunk(out, &mut chunk, entries)?;
        total += u64::from(entries);
    }
    let mut end = [0u8; CHUNK_HEADER_BYTES + 8];
    end[CHUNK_HEADER_BYTES..].copy_from_slice(&total.to_le_bytes());
    out.write_all(&end)?;
    Ok(total)
}

/// Writes `chunk` (a header's room, then `entries` entries) and empties it
/// back to the header's room.
fn write_chunk(out: &mut dyn Write, chunk: &mut Vec<u8>, entries: u32) -> io::Result<()> {
    let bytes = chunk.len() - CHUNK_HEADER_BYTES;
    assert!(bytes <= MAX_CHUNK_BYTES, "a chunk of {bytes} bytes: more than a reader accepts");
    chunk[..4].copy_from_slice(&entries.to_le_bytes());
    chunk[4..8].copy_from_slice(&(bytes as u32).to_le_bytes());
    out.write_all(chunk)?;
    chunk.truncate(CHUNK_HEADER_BYTES);
    Ok(())
}

/// Version-2 entries on their way from the reading thread to the builder.
struct Chunk {
    bytes: Vec<u8>,
    entries: u32,
}

/// What the builder is handed: a chunk, or the leaves the reading thread
/// made of one itself.
enum Batch {
    Chunk(Chunk),
    Made(Box<KvMapBuilder>),
}

/// Checks each of the chunk's entries and adds it to `builder`, whose
/// first entry is the content's entry `first` (for errors).
fn add_entries(builder: &mut KvMapBuilder, chunk: &Chunk, first: usize) -> io::Result<()> {
    each_entry(chunk, first, |n, entry, writer| {
        let (key, value) = (EntryFields::key(entry), EntryFields::value(entry));
        let (revision, timestamp_us) = (EntryFields::revision(entry), EntryFields::timestamp_us(entry));
        match builder.push(key, value, revision, writer, timestamp_us) {
            true => Ok(()),
            false => Err(out_of_order(n)),
        }
    })
}

fn out_of_order(entry: usize) -> io::Error {
    invalid(format!("entry {entry}: its key is not above the one before"))
}

/// Checks each of the chunk's entries and hands it to `take` with its
/// number in the content and its writer id. `first` numbers the chunk's
/// first entry. A writer id is checked as UTF-8 once for a run of entries
/// of the same writer (most of a snapshot's, commonly).
fn each_entry(
    chunk: &Chunk,
    first: usize,
    mut take: impl FnMut(usize, &[u8], &str) -> io::Result<()>,
) -> io::Result<()> {
    let mut at = 0;
    let mut writer = "";
    for n in 0..chunk.entries as usize {
        let entry = &chunk.bytes[at..];
        let (len, its_writer) =
            codec::entry_len(entry, writer).map_err(|e| invalid(format!("entry {}: {e}", first + n)))?;
        writer = its_writer;
        take(first + n, &entry[..len], writer)?;
        at += len;
    }
    if at != chunk.bytes.len() {
        return Err(invalid(format!(
            "a chunk of {} entries ends {} bytes after them (entry {})",
            chunk.entries,
            chunk.bytes.len() - at,
            first + chunk.entries as usize
        )));
    }
    Ok(())
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

/// Loads a map from content of either version.
pub(crate) fn read_snapshot(input: &mut dyn Read) -> io::Result<KvMap> {
    read_with_queue(input, CHUNKS_IN_FLIGHT)
}

/// [`read_snapshot`] with `in_flight` chunks queued for the builder at
/// most (0: each is handed over only if the builder is waiting for it,
/// so the reading thread makes most leaves itself).
fn read_with_queue(input: &mut dyn Read, in_flight: usize) -> io::Result<KvMap> {
    let mut reader = io::BufReader::with_capacity(1 << 20, input);
    let mut head = [0u8; 4];
    let got = read_up_to(&mut reader, &mut head)?;
    if got == 0 {
        return Ok(KvMap::new()); // version 1, no entries
    }
    let (full_tx, full_rx) = mpsc::sync_channel::<Batch>(in_flight);
    let (empty_tx, empty_rx) = mpsc::channel::<Vec<u8>>();
    let recycle = empty_tx.clone();
    std::thread::scope(|scope| {
        let builder = std::thread::Builder::new()
            .name("walden-load".into())
            .spawn_scoped(scope, move || build(full_rx, empty_tx))?;
        // Owns the sender: dropping it (below) ends the builder's input.
        let mut sent = 0usize;
        let mut send = move |chunk: Chunk| -> io::Result<bool> {
            let entries = chunk.entries as usize;
            let made = match full_tx.try_send(Batch::Chunk(chunk)) {
                Ok(()) => None,
                Err(mpsc::TrySendError::Full(Batch::Chunk(chunk))) => {
                    // The builder is behind: make this chunk's leaves here.
                    let mut made = KvMapBuilder::default();
                    add_entries(&mut made, &chunk, sent)?;
                    let _ = recycle.send(chunk.bytes); // never fails: the receiver is right here
                    Some(Batch::Made(Box::new(made)))
                }
                Err(_) => return Ok(false),
            };
            sent += entries;
            Ok(made.is_none_or(|made| full_tx.send(made).is_ok()))
        };
        let mut fresh = || empty_rx.try_recv().unwrap_or_else(|_| Vec::with_capacity(2 * CHUNK_TARGET_BYTES));
        let read = if got == 4 && head == SNAPSHOT_MAGIC {
            read_v2(&mut reader, &mut send, &mut fresh)
        } else {
            let mut v1 = io::Cursor::new(&head[..got]).chain(reader);
            read_v1(&mut v1, &mut send, &mut fresh)
        };
        drop(send);
        let built = builder.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        // The builder's own error says more than the reader's "it stopped".
        let map = built?;
        let total = read?;
        if total != map.len() as u64 {
            return Err(invalid(format!("the content ends claiming {total} entries, and holds {}", map.len())));
        }
        Ok(map)
    })
}

/// Reads into `buf` until it is full or the input ends; returns how much.
fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

fn stopped() -> io::Error {
    io::Error::other("the snapshot's tree builder stopped")
}

/// Version 2, after the magic: the version, the chunks, the end. Returns
/// the entry count the end claims.
fn read_v2(
    r: &mut impl BufRead,
    mut send: impl FnMut(Chunk) -> io::Result<bool>,
    mut fresh: impl FnMut() -> Vec<u8>,
) -> io::Result<u64> {
    let version = u32::from_le_bytes(codec::read_array(r)?);
    if version != SNAPSHOT_VERSION {
        return Err(invalid(format!("store snapshot content version {version}; this build reads 1 and 2")));
    }
    loop {
        let header: [u8; CHUNK_HEADER_BYTES] = codec::read_array(r)?;
        let entries = u32::from_le_bytes(header[..4].try_into().expect("4 bytes"));
        let bytes = u32::from_le_bytes(header[4..].try_into().expect("4 bytes")) as usize;
        if entries == 0 {
            if bytes != 0 {
                return Err(invalid(format!("an end marker with {bytes} bytes")));
            }
            let total = u64::from_le_bytes(codec::read_array(r)?);
            if !r.fill_buf()?.is_empty() {
                return Err(invalid("bytes after the end of the content".into()));
            }
            return Ok(total);
        }
        if bytes > MAX_CHUNK_BYTES || (entries as usize).saturating_mul(codec::ENTRY_HEADER_BYTES) > bytes {
            return Err(invalid(format!("a chunk of {entries} entries in {bytes} bytes")));
        }
        let mut buffer = fresh();
        buffer.clear();
        // Grows with the bytes that arrive: a length that lies costs no more.
        let got = r.take(bytes as u64).read_to_end(&mut buffer)?;
        if got < bytes {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("a chunk cut after {got} of {bytes} bytes"),
            ));
        }
        if !send(Chunk { bytes: buffer, entries })? {
            return Err(stopped());
        }
    }
}

/// Version 1: entries to the end, rewritten as version 2 in chunks.
/// Returns how many.
fn read_v1(
    r: &mut impl BufRead,
    mut send: impl FnMut(Chunk) -> io::Result<bool>,
    mut fresh: impl FnMut() -> Vec<u8>,
) -> io::Result<u64> {
    let mut scratch = Vec::new();
    let mut total = 0u64;
    loop {
        let mut chunk = Chunk { bytes: fresh(), entries: 0 };
        chunk.bytes.clear();
        let mut more = true;
        while chunk.bytes.len() < CHUNK_TARGET_BYTES {
            more = codec::transcode_v1_entry(r, &mut scratch, &mut chunk.bytes)?;
            if !more {
                break;
            }
            chunk.entries += 1;
        }
        total += u64::from(chunk.entries);
        if chunk.entries > 0 && !send(chunk)? {
            return Err(stopped());
        }
        if !more {
            return Ok(total);
        }
    }
}

/// The building thread: checks each entry of each chunk and adds it to
/// the map being built (or adds the leaves made already), in order.
fn build(batches: mpsc::Receiver<Batch>, recycle: mpsc::Sender<Vec<u8>>) -> io::Result<KvMap> {
    let mut builder = KvMapBuilder::default();
    for batch in batches {
        match batch {
            Batch::Chunk(chunk) => {
                let first = builder.len();
                add_entries(&mut builder, &chunk, first)?;
                // The reader may be gone already; then the buffer is dropped.
                let _ = recycle.send(chunk.bytes);
            }
            Batch::Made(made) => {
                let first = builder.len();
                if !builder.append(*made) {
                    return Err(out_of_order(first));
                }
            }
        }
    }
    Ok(builder.finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::codec::tests::hex;
    use crate::store::key::KeyRef;

    /// The golden bytes of docs/FORMAT.md ("Store snapshot content"): the
    /// content of a store holding "k1" = "on" (revision 3) and "k2" = ""
    /// (revision 1), both by "w" at 1,700,000,000,000,000 µs.
    #[test]
    fn golden_bytes_of_a_snapshot_content() {
        let mut map = KvMap::new();
        for (key, value, puts) in [(&b"k2"[..], &b""[..], 1), (b"k1", b"on", 3)] {
            for _ in 0..puts {
                map.upsert(KeyRef::new(key), value, "w", 1_700_000_000_000_000);
            }
        }
        let mut content = Vec::new();
        assert_eq!(write_snapshot(&map, &mut content).unwrap(), 2);
        let golden = "574b5653 02000000 \
                      02000000 3c000000 \
                      0300000000000000 00401e18240a0600 02000000 02000000 0100 6b31 6f6e 77 \
                      0100000000000000 00401e18240a0600 02000000 00000000 0100 6b32 77 \
                      00000000 00000000 0200000000000000";
        assert_eq!(hex(&content), golden.replace(' ', ""));
        let loaded = read_snapshot(&mut &content[..]).unwrap();
        assert!(loaded.iter().eq(map.iter()));
        let mut empty = Vec::new();
        assert_eq!(write_snapshot(&KvMap::new(), &mut empty).unwrap(), 0);
        assert_eq!(hex(&empty), "574b565302000000".to_owned() + "0000000000000000" + "0000000000000000");
        assert!(read_snapshot(&mut &empty[..]).unwrap().is_empty());
    }

    #[test]
    fn a_chunk_that_claims_more_than_it_can_hold_is_refused_before_it_is_read() {
        let mut content = Vec::new();
        content.extend_from_slice(b"WKVS");
        content.extend_from_slice(&2u32.to_le_bytes());
        content.extend_from_slice(&1u32.to_le_bytes());
        content.extend_from_slice(&u32::MAX.to_le_bytes());
        let e = read_snapshot(&mut &content[..]).expect_err("4 GiB");
        assert!(e.to_string().contains("a chunk of 1 entries in 4294967295 bytes"), "{e}");
        let mut many = content.clone();
        many[8..12].copy_from_slice(&1000u32.to_le_bytes());
        many[12..16].copy_from_slice(&100u32.to_le_bytes());
        let e = read_snapshot(&mut &many[..]).expect_err("1000 entries in 100 bytes");
        assert!(e.to_string().contains("1000 entries in 100 bytes"), "{e}");
        // A length within bounds but past the end: cut, without a 100 MiB buffer.
        content[12..16].copy_from_slice(&(100u32 << 20).to_le_bytes());
        let e = read_snapshot(&mut &content[..]).expect_err("cut");
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
    }

    /// The same content loads the same, and the same damage is the same
    /// error, however many chunks wait for the builder.
    #[test]
    fn content_loads_the_same_and_fails_the_same_whatever_the_queue() {
        let mut builder = KvMapBuilder::default();
        for i in 0u32..50_000 {
            assert!(builder.push(&i.to_be_bytes(), &[7; 20], 1, "w", 2));
        }
        let map = builder.finish();
        let mut content = Vec::new();
        write_snapshot(&map, &mut content).unwrap();
        let entry = codec::ENTRY_HEADER_BYTES + 4 + 20 + 1;
        let per_chunk = CHUNK_TARGET_BYTES.div_ceil(entry);
        let entry_at = |n: usize| 8 + (n / per_chunk) * (8 + per_chunk * entry) + 8 + (n % per_chunk) * entry;
        let mut garbled = content.clone();
        garbled[entry_at(40_000) + 16..][..4].copy_from_slice(&u32::MAX.to_le_bytes());
        let mut swapped = content.clone();
        let at = entry_at(30_001);
        swapped[at + 26..at + 30].copy_from_slice(&0u32.to_be_bytes());
        for in_flight in [0, CHUNKS_IN_FLIGHT] {
            let loaded = read_with_queue(&mut &content[..], in_flight).unwrap();
            loaded.check();
            assert!(loaded.iter().eq(map.iter()), "queue of {in_flight}");
            let e = read_with_queue(&mut &garbled[..], in_flight).expect_err("a huge key length");
            assert!(e.to_string().starts_with("entry 40000: "), "queue of {in_flight}: {e}");
            let e = read_with_queue(&mut &swapped[..], in_flight).expect_err("a key out of order");
            assert!(e.to_string().contains("entry 30001: its key is not above"), "queue of {in_flight}: {e}");
        }
    }
}
