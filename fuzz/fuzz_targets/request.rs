//! A gRPC request's bytes as the server first meets them: the first byte picks the
//! operation, the rest is the message. Every input must be answered OK or
//! INVALID_ARGUMENT, with a bounded message free of control characters; never a panic.
#![no_main]

use empi::auth::Operation;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, bytes)) = data.split_first() else {
        return;
    };
    let op = Operation::ALL[usize::from(pick) % Operation::ALL.len()];
    if let Err(s) = empi::grpc::check_request(op, bytes) {
        assert_eq!(s.code(), tonic::Code::InvalidArgument, "{op}: {s:?}");
        assert!(s.message().len() <= 512);
        assert!(!s.message().chars().any(char::is_control));
    }
});
