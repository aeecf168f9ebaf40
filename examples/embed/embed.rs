//! A program that embeds walden the way an application does: it depends on
//! the `walden` library alone (no features), opens a [`Store`], writes,
//! reads and closes. CI builds and runs it.
//!
//! `cargo run -p walden-embed-example --example embed -- [DIR]` (default: a fresh directory
//! under the system's temporary directory).

use walden::{FsyncMode, Store, StoreOptions, WalOptions, WriteBatch};

fn main() -> walden::Result<()> {
    let given = std::env::args_os().nth(1).map(std::path::PathBuf::from);
    let dir = given
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join(format!("walden-embed-example-{}", std::process::id())));
    let mut options = StoreOptions::default();
    options.engine.wal = WalOptions { fsync: FsyncMode::Always, ..Default::default() };

    let store = Store::open(&dir, options.clone())?;
    store.put(b"/lights/kitchen", b"0.8")?; // durable when it returns
    let mut batch = WriteBatch::default();
    batch.put(b"/lights/hall", b"0.2");
    batch.delete(b"/lights/kitchen");
    store.write(&batch)?; // all or nothing
    let hall = store.get(b"/lights/hall").expect("the batch's put is visible");
    println!("/lights/hall = {:?} (revision {})", String::from_utf8_lossy(&hall.value), hall.revision);
    assert!(store.get(b"/lights/kitchen").is_none(), "the batch's delete is visible");
    store.close()?;

    // Reopening recovers exactly what was acknowledged.
    let store = Store::open(&dir, options)?;
    assert_eq!(store.get(b"/lights/hall").map(|e| e.value.to_vec()), Some(b"0.2".to_vec()));
    store.close()?;
    println!("reopened {}: state recovered", dir.display());
    if given.is_none() {
        std::fs::remove_dir_all(&dir)
            .map_err(|e| walden::Error::InvalidArgument(format!("remove {}: {e}", dir.display())))?;
    }
    Ok(())
}
