//! Request limits of the gRPC listener: message size, per-call deadline, concurrency, and
//! the free space writes need ([`Space`]).

use std::time::Duration;

/// Limits applied to every call.
///
/// | limit                        | default | on excess                                  |
/// |------------------------------|---------|--------------------------------------------|
/// | `max_request_bytes`          | 1 MiB   | `RESOURCE_EXHAUSTED` (tonic decoding)       |
/// | `max_response_bytes`         | 16 MiB  | `RESOURCE_EXHAUSTED` (tonic encoding)       |
/// | `timeout`                    | 30 s    | `CANCELLED` (a client's shorter `grpc-timeout` wins) |
/// | `concurrency_per_connection` | 32      | further calls on that connection wait       |
/// | `max_concurrent_streams`     | 64      | HTTP/2 refuses more streams per connection  |
/// | `max_concurrent_calls`       | 256     | further calls wait (all connections)        |
///
/// One patient record encodes to well under 10 KiB, so 1 MiB leaves room for any
/// legitimate request while bounding what one call can make the server allocate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest accepted request message, bytes.
    pub max_request_bytes: usize,
    /// Largest response message, bytes.
    pub max_response_bytes: usize,
    /// Deadline of every call on the server side.
    pub timeout: Duration,
    /// Calls served at once per connection.
    pub concurrency_per_connection: usize,
    /// HTTP/2 streams per connection.
    pub max_concurrent_streams: u32,
    /// Calls served at once over all connections.
    pub max_concurrent_calls: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_request_bytes: 1 << 20,
            max_response_bytes: 16 << 20,
            timeout: Duration::from_secs(30),
            concurrency_per_connection: 32,
            max_concurrent_streams: 64,
            max_concurrent_calls: 256,
        }
    }
}

/// The free-space reserve of a data directory: writes are refused (`RESOURCE_EXHAUSTED`)
/// while its filesystem has less than a reserve free, so the store never meets a full
/// disk (sled cannot go on after a failed write until it is reopened), and what is left
/// serves the audit lines of reads. Measured on every write (one `statvfs`), so writes
/// resume by themselves as soon as space is freed.
pub struct Space {
    dir: std::path::PathBuf,
    reserve: u64,
    probe: Box<FreeBytes>,
}

/// Measures the bytes free on the filesystem of a directory.
type FreeBytes = dyn Fn(&std::path::Path) -> Option<u64> + Send + Sync;

impl std::fmt::Debug for Space {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Space")
            .field("dir", &self.dir)
            .field("reserve", &self.reserve)
            .finish_non_exhaustive()
    }
}

/// Smallest default reserve.
const MIN_RESERVE: u64 = 16 << 20;
/// Largest default reserve.
const MAX_RESERVE: u64 = 256 << 20;

impl Space {
    /// The reserve of `dir`: `reserve` bytes kept free; `None`: the default, 5% of the
    /// filesystem's size within 16 to 256 MiB.
    pub fn new(dir: &std::path::Path, reserve: Option<u64>) -> Self {
        let reserve = reserve.unwrap_or_else(|| {
            filesystem(dir).map_or(MIN_RESERVE, |(_, size)| {
                (size / 20).clamp(MIN_RESERVE, MAX_RESERVE)
            })
        });
        Space {
            dir: dir.to_path_buf(),
            reserve,
            probe: Box::new(|d| filesystem(d).map(|(free, _)| free)),
        }
    }

    /// The reserve with another way of measuring free bytes (tests simulate a full disk).
    pub fn with_probe(
        dir: &std::path::Path,
        reserve: u64,
        probe: impl Fn(&std::path::Path) -> Option<u64> + Send + Sync + 'static,
    ) -> Self {
        Space {
            dir: dir.to_path_buf(),
            reserve,
            probe: Box::new(probe),
        }
    }

    /// The reserve, bytes.
    pub fn reserve(&self) -> u64 {
        self.reserve
    }

    /// Bytes free for this process, `None` when they cannot be measured.
    pub fn free(&self) -> Option<u64> {
        (self.probe)(&self.dir)
    }

    /// `None` when a write may go ahead (or free space cannot be measured: the write then
    /// meets the disk as before); else why not, for the client.
    pub fn refusal(&self) -> Option<String> {
        let free = self.free()?;
        (free < self.reserve).then(|| {
            format!(
                "the data directory's disk is nearly full ({} MiB free, {} MiB kept in \
                 reserve): writes are refused until space is freed; reads go on",
                free >> 20,
                self.reserve >> 20
            )
        })
    }
}

/// Free bytes (for an unprivileged process) and size of the filesystem holding `dir`.
fn filesystem(dir: &std::path::Path) -> Option<(u64, u64)> {
    let s = rustix::fs::statvfs(dir).ok()?;
    Some((
        s.f_bavail.saturating_mul(s.f_frsize),
        s.f_blocks.saturating_mul(s.f_frsize),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_are_refused_below_the_reserve_and_resume_above() {
        let free = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(100 << 20));
        let probe = std::sync::Arc::clone(&free);
        let space = Space::with_probe(std::path::Path::new("."), 32 << 20, move |_| {
            Some(probe.load(std::sync::atomic::Ordering::SeqCst))
        });
        assert_eq!(space.refusal(), None);
        free.store(1 << 20, std::sync::atomic::Ordering::SeqCst);
        let why = space.refusal().unwrap();
        assert!(
            why.contains("1 MiB free") && why.contains("32 MiB"),
            "{why}"
        );
        free.store(33 << 20, std::sync::atomic::Ordering::SeqCst);
        assert_eq!(space.refusal(), None);
        // The real filesystem: measurable, and the default reserve within its bounds.
        let real = Space::new(std::path::Path::new("."), None);
        assert!(real.free().is_some());
        assert!((MIN_RESERVE..=MAX_RESERVE).contains(&real.reserve()));
    }
}
