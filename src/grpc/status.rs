//! The one place a library [`Error`] becomes a gRPC [`Status`].

use tonic::{Code, Status};

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
        Status::new(code_of(&e), e.to_string())
    }
}

/// The status code of an error (the table on [`Status::from`]).
pub fn code_of(e: &Error) -> Code {
    match e {
        Error::InvalidInput { .. } => Code::InvalidArgument,
        Error::NotFound { .. } => Code::NotFound,
        Error::Conflict(_) => Code::FailedPrecondition,
        Error::Storage(_) => Code::Unavailable,
        Error::Corrupt(_) => Code::DataLoss,
        Error::Io { .. } | Error::Model(_) => Code::Internal,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
