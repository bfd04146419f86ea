//! The one place a library [`Error`] becomes a gRPC [`Status`].

use tonic::Status;

use crate::error::Error;

/// Maps each error to the code that tells the client what to do next. The match is
/// exhaustive on purpose: a new variant must choose its code here.
///
/// | error            | code                  | client's next step            |
/// |------------------|-----------------------|-------------------------------|
/// | `InvalidInput`   | `INVALID_ARGUMENT`    | fix the request               |
/// | `NotFound`       | `NOT_FOUND`           | check the id                  |
/// | `Conflict`       | `FAILED_PRECONDITION` | re-read the state, decide again |
/// | `Storage`        | `UNAVAILABLE`         | retry later                   |
/// | `Corrupt`        | `DATA_LOSS`           | call an operator (per the proto's contract) |
/// | `Io`, `Model`    | `INTERNAL`            | call an operator              |
///
/// Messages are the error's own text: lowercase, naming fields and record keys, never
/// patient data.
impl From<Error> for Status {
    fn from(e: Error) -> Status {
        let message = e.to_string();
        match e {
            Error::InvalidInput { .. } => Status::invalid_argument(message),
            Error::NotFound { .. } => Status::not_found(message),
            Error::Conflict(_) => Status::failed_precondition(message),
            Error::Storage(_) => Status::unavailable(message),
            Error::Corrupt(_) => Status::data_loss(message),
            Error::Io { .. } | Error::Model(_) => Status::internal(message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    #[test]
    fn codes_follow_what_the_caller_does_next() {
        let cases = [
            (
                Error::invalid("sex", "unknown enum value 9"),
                Code::InvalidArgument,
            ),
            (
                Error::NotFound {
                    what: "person",
                    id: "E0000000001".into(),
                },
                Code::NotFound,
            ),
            (
                Error::Conflict("task resolved".into()),
                Code::FailedPrecondition,
            ),
            (Error::Storage("disk".into()), Code::Unavailable),
            (Error::Corrupt("bad".into()), Code::DataLoss),
            (Error::Model("bad".into()), Code::Internal),
        ];
        for (e, code) in cases {
            let text = e.to_string();
            let s = Status::from(e);
            assert_eq!(s.code(), code);
            assert_eq!(s.message(), text);
        }
    }
}
