//! The library's one error type.
//!
//! Variants are named for what the caller does next. Messages are lowercase, name the field
//! and the record key, and never carry patient data.

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
    /// The request conflicts with current state (e.g. resolving an already resolved task).
    #[error("conflict: {0}")]
    Conflict(String),
    /// The storage engine failed; retrying may help.
    #[error("storage: {0}")]
    Storage(String),
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
}

impl Error {
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
