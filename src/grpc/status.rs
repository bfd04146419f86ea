//! The one place a library [`Error`] becomes a gRPC [`Status`], and where gRPC's status
//! codes meet the crate's canonical [`Code`]s (the same set, numbered alike).

use tonic::Status;

use crate::error::{Code, Error};

/// Each error with the code [`Error::code`] chooses for it (the table there: an exhaustive
/// match, so a new variant must choose its code) and its own message: lowercase, naming
/// fields and record keys, never patient data.
impl From<Error> for Status {
    fn from(e: Error) -> Status {
        Status::new(grpc_code(e.code()), e.to_string())
    }
}

/// The gRPC status code of a canonical code.
pub fn grpc_code(code: Code) -> tonic::Code {
    tonic::Code::from_i32(code as i32)
}

/// The canonical code of a gRPC status code.
pub fn canonical(code: tonic::Code) -> Code {
    Code::from_number(code as i32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_follow_what_the_caller_does_next() {
        let cases = [
            (
                Error::invalid("sex", "unknown enum value 9"),
                tonic::Code::InvalidArgument,
            ),
            (
                Error::not_found("person", "E0000000001"),
                tonic::Code::NotFound,
            ),
            (
                Error::Conflict("task resolved".into()),
                tonic::Code::FailedPrecondition,
            ),
            (Error::Stale("version 3".into()), tonic::Code::Aborted),
            (Error::Denied("role".into()), tonic::Code::PermissionDenied),
            (
                Error::NoSpace("nearly full".into()),
                tonic::Code::ResourceExhausted,
            ),
            (Error::Storage("disk".into()), tonic::Code::Unavailable),
            (Error::Resync("pruned".into()), tonic::Code::OutOfRange),
            (Error::Corrupt("bad".into()), tonic::Code::DataLoss),
            (Error::Model("bad".into()), tonic::Code::Internal),
            (Error::Internal("bug".into()), tonic::Code::Internal),
        ];
        for (e, code) in cases {
            let text = e.to_string();
            let s = Status::from(e);
            assert_eq!(s.code(), code);
            assert_eq!(s.message(), text);
        }
        for c in Code::ALL {
            assert_eq!(canonical(grpc_code(c)), c);
        }
    }
}
