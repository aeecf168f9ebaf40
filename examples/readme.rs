//! The example from README.md, kept identical so that `cargo test` (which
//! builds examples) proves it compiles. Run: `cargo run --example readme`.

use walden::{FsyncMode, Wal, WalOptions};

fn main() -> walden::Result<()> {
    let options = WalOptions { fsync: FsyncMode::Always, ..Default::default() };
    let wal = Wal::open("data/log", options)?; // recovers what is there
    let lsn = wal.append(b"set /lights/kitchen 0.8")?; // survives power loss now
    wal.append_batch(&[b"a".as_slice(), b"b"])?; // all or nothing
    let ticket = wal.append_pipelined(b"in flight")?; // returns at once
    ticket.wait()?; // acknowledged here
    for record in wal.read_from(lsn)? {
        let record = record?;
        println!("{} {:?}", record.lsn, record.payload);
    }
    wal.close() // syncs
}
