//! Integration tests, one binary with a module per area.

mod batch;
mod cli;
mod console;
mod crash;
mod doors;
mod exports;
mod faults;
mod feed;
mod fuzzing;
mod grpc;
mod operations;
mod quality;
mod security;
mod service;
mod standards;
mod store;
mod train;

/// Opens a store directory with plain sled, behind empi's back (to tamper with it). sled
/// releases a closed database's directory lock when its I/O threads drop their last
/// handle, a moment after the close returns, so the open is retried briefly.
pub fn raw_sled(dir: &std::path::Path) -> sled::Db {
    for _ in 0..100 {
        match sled::open(dir) {
            Ok(db) => return db,
            Err(e) if e.to_string().contains("could not acquire lock") => {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(e) => panic!("opening {}: {e}", dir.display()),
        }
    }
    panic!("{} stayed locked", dir.display())
}
