//! The library's one error type.
//!
//! Variants are named for what the caller does next. Messages are lowercase, name the field
//! and the record key, and never carry patient data. Each variant has one canonical status
//! [`Code`] ([`Error::code`]); every front door turns that code into its own protocol's
//! answer (the gRPC door in `grpc::status`).

use std::borrow::Cow;

/// Result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in empi.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The caller sent something unusable; fix the input and retry.
    #[error("{}{field}: {reason}", key.as_ref().map(|k| format!("record {k}: ")).unwrap_or_default())]
    InvalidInput {
        /// The record key (`source/local_id`) when known.
        key: Option<String>,
        /// The offending field, in our field names.
        field: Cow<'static, str>,
        /// What is wrong, without the value.
        reason: Cow<'static, str>,
    },
    /// The thing asked for does not exist.
    #[error("{what} {id} not found")]
    NotFound {
        /// Kind of thing: `person`, `record`, `review task`.
        what: &'static str,
        /// Its id or key.
        id: String,
    },
    /// The request conflicts with current state (e.g. resolving an already resolved task,
    /// merging a person with itself): re-read the state and decide again. Never retried
    /// inside empi, since asking again changes nothing.
    #[error("conflict: {0}")]
    Conflict(String),
    /// What a write read changed before it was applied (an optimistic version check
    /// failed). Writes are rebuilt from fresh reads a few times before this reaches a
    /// caller, who may simply try again.
    #[error("stale: {0}")]
    Stale(String),
    /// The caller is authenticated but may not do this (its role, or a submitter's
    /// sources).
    #[error("permission denied: {0}")]
    Denied(String),
    /// Writes are refused until space is freed: the data directory's disk is nearly full.
    #[error("{0}")]
    NoSpace(String),
    /// The storage engine failed; retrying may help.
    #[error("storage: {0}")]
    Storage(String),
    /// A change feed consumer asked to resume where the feed cannot continue: the events
    /// after its position were pruned by retention, or it is ahead of the store (which was
    /// restored from an earlier backup). It must take a fresh copy, then watch from the
    /// feed's head.
    #[error("resynchronise: {0}")]
    Resync(String),
    /// The store's format is not this build's: an operator upgrades an older one (the
    /// message names the command) or uses a newer empi for a newer one.
    #[error("{0}")]
    Incompatible(String),
    /// Stored data violates an invariant; an operator must look.
    #[error("corrupt store: {0}")]
    Corrupt(String),
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file concerned.
        path: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A model file or configuration is unusable.
    #[error("model: {0}")]
    Model(String),
    /// A defect in empi itself: a change set that would break a store invariant, which no
    /// request can cause. Nothing was written; an operator must look at the log.
    #[error("internal: {0}")]
    Internal(String),
}

/// The canonical status codes (gRPC's set, which HTTP and HL7 front doors map too), as the
/// audit trail names them. [`Error::code`] chooses one per error. Declared in the order of
/// their numbers, 0 (`Ok`) to 16 (`Unauthenticated`), so `code as i32` is the number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(missing_docs)] // the variants are the canonical code names
pub enum Code {
    Ok,
    Cancelled,
    Unknown,
    InvalidArgument,
    DeadlineExceeded,
    NotFound,
    AlreadyExists,
    PermissionDenied,
    ResourceExhausted,
    FailedPrecondition,
    Aborted,
    OutOfRange,
    Unimplemented,
    Internal,
    Unavailable,
    DataLoss,
    Unauthenticated,
}

impl Code {
    /// Every code, indexed by its number.
    pub const ALL: [Code; 17] = [
        Code::Ok,
        Code::Cancelled,
        Code::Unknown,
        Code::InvalidArgument,
        Code::DeadlineExceeded,
        Code::NotFound,
        Code::AlreadyExists,
        Code::PermissionDenied,
        Code::ResourceExhausted,
        Code::FailedPrecondition,
        Code::Aborted,
        Code::OutOfRange,
        Code::Unimplemented,
        Code::Internal,
        Code::Unavailable,
        Code::DataLoss,
        Code::Unauthenticated,
    ];

    /// The code with number `n`; [`Code::Unknown`] for a number outside the set.
    pub fn from_number(n: i32) -> Code {
        usize::try_from(n)
            .ok()
            .and_then(|i| Code::ALL.get(i).copied())
            .unwrap_or(Code::Unknown)
    }

    /// The upper-case name, as the audit trail records it (`PERMISSION_DENIED`).
    pub fn name(self) -> &'static str {
        match self {
            Code::Ok => "OK",
            Code::Cancelled => "CANCELLED",
            Code::Unknown => "UNKNOWN",
            Code::InvalidArgument => "INVALID_ARGUMENT",
            Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
            Code::NotFound => "NOT_FOUND",
            Code::AlreadyExists => "ALREADY_EXISTS",
            Code::PermissionDenied => "PERMISSION_DENIED",
            Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
            Code::FailedPrecondition => "FAILED_PRECONDITION",
            Code::Aborted => "ABORTED",
            Code::OutOfRange => "OUT_OF_RANGE",
            Code::Unimplemented => "UNIMPLEMENTED",
            Code::Internal => "INTERNAL",
            Code::Unavailable => "UNAVAILABLE",
            Code::DataLoss => "DATA_LOSS",
            Code::Unauthenticated => "UNAUTHENTICATED",
        }
    }
}

impl Error {
    /// The status code that tells the caller what to do next. Exhaustive on purpose: a new
    /// variant must choose its code here.
    ///
    /// | error            | code                  | caller's next step              |
    /// |------------------|-----------------------|---------------------------------|
    /// | `InvalidInput`   | `INVALID_ARGUMENT`    | fix the request                 |
    /// | `NotFound`       | `NOT_FOUND`           | check the id                    |
    /// | `Conflict`       | `FAILED_PRECONDITION` | re-read the state, decide again |
    /// | `Stale`          | `ABORTED`             | try again                       |
    /// | `Denied`         | `PERMISSION_DENIED`   | use a credential that may       |
    /// | `NoSpace`        | `RESOURCE_EXHAUSTED`  | retry once space is freed       |
    /// | `Storage`        | `UNAVAILABLE`         | retry later                     |
    /// | `Resync`         | `OUT_OF_RANGE`        | take a fresh copy, watch anew   |
    /// | `Incompatible`   | `FAILED_PRECONDITION` | upgrade the store, or empi      |
    /// | `Corrupt`        | `DATA_LOSS`           | call an operator                |
    /// | `Io`, `Model`, `Internal` | `INTERNAL`   | call an operator                |
    pub fn code(&self) -> Code {
        match self {
            Error::InvalidInput { .. } => Code::InvalidArgument,
            Error::NotFound { .. } => Code::NotFound,
            Error::Conflict(_) => Code::FailedPrecondition,
            Error::Stale(_) => Code::Aborted,
            Error::Denied(_) => Code::PermissionDenied,
            Error::NoSpace(_) => Code::ResourceExhausted,
            Error::Storage(_) => Code::Unavailable,
            Error::Resync(_) => Code::OutOfRange,
            Error::Incompatible(_) => Code::FailedPrecondition,
            Error::Corrupt(_) => Code::DataLoss,
            Error::Io { .. } | Error::Model(_) | Error::Internal(_) => Code::Internal,
        }
    }

    /// An [`Error::NotFound`] for the thing `what` with id `id`.
    pub fn not_found(what: &'static str, id: impl std::fmt::Display) -> Self {
        Error::NotFound {
            what,
            id: id.to_string(),
        }
    }

    /// An [`Error::InvalidInput`] without a record key.
    pub fn invalid(
        field: impl Into<Cow<'static, str>>,
        reason: impl Into<Cow<'static, str>>,
    ) -> Self {
        Error::InvalidInput {
            key: None,
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// Attaches a record key to an [`Error::InvalidInput`]; other variants pass through.
    /// A key that could not be a valid one (longer than two 128-byte parts and their
    /// separator, or with control characters) is not attached: messages never echo what a
    /// client sent beyond a valid key.
    pub fn for_record(self, key: impl std::fmt::Display) -> Self {
        /// `source/local_id`, each part at most `record::MAX_KEY_PART_LEN` bytes.
        const MAX_KEY_TEXT: usize = 2 * 128 + 1;
        match self {
            Error::InvalidInput {
                key: None,
                field,
                reason,
            } => {
                let key = key.to_string();
                let valid = key.len() <= MAX_KEY_TEXT && !key.chars().any(char::is_control);
                Error::InvalidInput {
                    key: valid.then_some(key),
                    field,
                    reason,
                }
            }
            other => other,
        }
    }

    /// An [`Error::Io`] for a path.
    pub fn io(path: impl AsRef<std::path::Path>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.as_ref().display().to_string(),
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_follow_what_the_caller_does_next() {
        assert_eq!(Error::invalid("sex", "bad").code(), Code::InvalidArgument);
        assert_eq!(Error::not_found("person", "E1").code(), Code::NotFound);
        assert_eq!(
            Error::Conflict("resolved".into()).code(),
            Code::FailedPrecondition
        );
        assert_eq!(Error::Stale("version".into()).code(), Code::Aborted);
        assert_eq!(Error::Denied("role".into()).code(), Code::PermissionDenied);
        assert_eq!(
            Error::NoSpace("full".into()).code(),
            Code::ResourceExhausted
        );
        assert_eq!(Error::Storage("disk".into()).code(), Code::Unavailable);
        assert_eq!(Error::Resync("pruned".into()).code(), Code::OutOfRange);
        assert_eq!(
            Error::Incompatible("format".into()).code(),
            Code::FailedPrecondition
        );
        assert_eq!(Error::Corrupt("bad".into()).code(), Code::DataLoss);
        assert_eq!(Error::Internal("bug".into()).code(), Code::Internal);
        for (n, code) in Code::ALL.into_iter().enumerate() {
            assert_eq!(Code::from_number(n as i32), code);
        }
        assert_eq!(Code::from_number(99), Code::Unknown);
        assert_eq!(Code::PermissionDenied.name(), "PERMISSION_DENIED");
    }

    #[test]
    fn invalid_input_message_names_key_and_field() {
        let e =
            Error::invalid("birth_date", "month 13 out of range").for_record("st-marys/MRN00417");
        assert_eq!(
            e.to_string(),
            "record st-marys/MRN00417: birth_date: month 13 out of range"
        );
        assert_eq!(Error::invalid("sex", "bad").to_string(), "sex: bad");
        // A key that cannot be valid is never echoed.
        for bad in ["a\0b/1".to_string(), format!("s/{}", "x".repeat(300))] {
            let e = Error::invalid("local_id", "bad").for_record(&bad);
            assert_eq!(e.to_string(), "local_id: bad");
        }
    }
}
