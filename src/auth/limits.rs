//! Request limits of the gRPC listener: message size, per-call deadline, concurrency.

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
