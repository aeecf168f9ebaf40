//! A store that keeps writing, for trying `walden backup` on a directory
//! in use (the README's walk-through):
//!
//! ```sh
//! cargo run --release --example busy_store -- data 50000 &   # 50,000 puts, then 100 a second
//! walden backup data backups
//! ```
//!
//! It puts `sensor-{i % 500}` = a reading (`Periodic` fsync, 256 KiB
//! segments, a snapshot every 10,000 commits, two kept), says when the
//! given number of puts is done, and then goes on with 100 puts a second,
//! holding the directory, until it is killed.

use walden::{EngineOptions, SnapshotOptions, Store, StoreOptions, WalOptions};

fn main() -> walden::Result<()> {
    let mut args = std::env::args().skip(1);
    let dir = args.next().unwrap_or_else(|| "data".into());
    let puts: u64 = args.next().and_then(|n| n.parse().ok()).unwrap_or(20_000);
    let options = StoreOptions {
        engine: EngineOptions {
            wal: WalOptions { segment_bytes: 256 << 10, ..Default::default() },
            snapshots: SnapshotOptions { keep_count: 2, every_commits: Some(10_000), ..SnapshotOptions::manual() },
        },
        writer: "busy_store".into(),
    };
    let store = Store::open(&dir, options)?;
    let put = |i: u64| {
        let reading = format!("{{\"celsius\": {:.1}}}", 18.0 + (i % 70) as f64 / 10.0);
        store.put(format!("sensor-{}", i % 500).as_bytes(), reading.as_bytes())
    };
    let start = store.applied_lsn().0;
    for i in start..start + puts {
        put(i)?;
    }
    println!("wrote {puts} puts (LSN {}); 100 a second from now on, until killed", store.applied_lsn());
    for i in start + puts.. {
        put(i)?;
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    Ok(())
}
