//! What goes wrong with an HL7 v2 message, in the terms an acknowledgement needs: where
//! (segment, field, repetition, component), which HL7 error code (table 0357), and whether
//! the message is rejected (AR) or was understood but refused (AE).
//!
//! [`Hl7Error`] is the content of an ERR segment, not a second error type of the library: it
//! converts into [`crate::Error::InvalidInput`] (the field being the position, e.g. `PID-7`)
//! for callers that only report, and [`Hl7Error::from_error`] turns the library's errors
//! (a record refused by [`crate::record::Record::validate`], an unknown key) back into an
//! ERR naming the HL7 position of the domain field. Reasons never carry a value.

use std::borrow::Cow;
use std::fmt;

use crate::error::Error;

/// MSA-1: the acknowledgement code of original-mode processing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AckCode {
    /// `AA`: accepted and applied.
    Accept,
    /// `AE`: understood, but refused or failed (bad content, unknown key).
    Error,
    /// `AR`: rejected unread (unparsable, or an unsupported type, event, version or
    /// processing id); nothing was applied.
    Reject,
}

impl AckCode {
    /// The MSA-1 code: `AA`, `AE` or `AR`.
    pub fn as_str(self) -> &'static str {
        match self {
            AckCode::Accept => "AA",
            AckCode::Error => "AE",
            AckCode::Reject => "AR",
        }
    }
}

/// HL7 table 0357, the message error condition codes used here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// 100: a required segment is missing or out of order.
    SegmentSequence,
    /// 101: a required field is missing.
    RequiredFieldMissing,
    /// 102: a value does not fit its data type (a date that is not one, too long, …).
    DataType,
    /// 103: a coded value is not in its table.
    TableValueNotFound,
    /// 200: MSH-9.1 is not a message type this receiver handles.
    UnsupportedMessageType,
    /// 201: MSH-9.2 is not an event this receiver handles.
    UnsupportedEventCode,
    /// 202: MSH-11 is not a processing id this receiver handles.
    UnsupportedProcessingId,
    /// 203: MSH-12 is not a version this receiver handles.
    UnsupportedVersionId,
    /// 204: the identifier or domain is not known.
    UnknownKeyIdentifier,
    /// 205: the identifier is already in use (e.g. a control id reused for another message).
    DuplicateKeyIdentifier,
    /// 207: anything else, on the receiver's side.
    ApplicationInternal,
}

impl ErrorCode {
    /// The numeric code of table 0357.
    pub fn code(self) -> u16 {
        match self {
            ErrorCode::SegmentSequence => 100,
            ErrorCode::RequiredFieldMissing => 101,
            ErrorCode::DataType => 102,
            ErrorCode::TableValueNotFound => 103,
            ErrorCode::UnsupportedMessageType => 200,
            ErrorCode::UnsupportedEventCode => 201,
            ErrorCode::UnsupportedProcessingId => 202,
            ErrorCode::UnsupportedVersionId => 203,
            ErrorCode::UnknownKeyIdentifier => 204,
            ErrorCode::DuplicateKeyIdentifier => 205,
            ErrorCode::ApplicationInternal => 207,
        }
    }

    /// The code's text in table 0357.
    pub fn text(self) -> &'static str {
        match self {
            ErrorCode::SegmentSequence => "Segment sequence error",
            ErrorCode::RequiredFieldMissing => "Required field missing",
            ErrorCode::DataType => "Data type error",
            ErrorCode::TableValueNotFound => "Table value not found",
            ErrorCode::UnsupportedMessageType => "Unsupported message type",
            ErrorCode::UnsupportedEventCode => "Unsupported event code",
            ErrorCode::UnsupportedProcessingId => "Unsupported processing id",
            ErrorCode::UnsupportedVersionId => "Unsupported version id",
            ErrorCode::UnknownKeyIdentifier => "Unknown key identifier",
            ErrorCode::DuplicateKeyIdentifier => "Duplicate key identifier",
            ErrorCode::ApplicationInternal => "Application internal error",
        }
    }
}

/// Where in a message a problem is, as ERR-2 (v2.5) or ERR-1 (v2.3.1) names it. Numbers
/// are 1-based; 0 means "not narrower than this".
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Location {
    /// The segment id (a valid one, three letters or digits), or empty when the problem
    /// is the whole message or a line that is not a segment.
    pub segment: String,
    /// Which occurrence of that segment (1 for the first PID); with an empty `segment`,
    /// the line number in the message (0: the whole message).
    pub sequence: u32,
    /// The field number (PID-7 is 7).
    pub field: u32,
    /// The repetition of the field.
    pub repetition: u32,
    /// The component.
    pub component: u32,
    /// The subcomponent.
    pub subcomponent: u32,
}

impl Location {
    /// The whole message.
    pub fn message() -> Self {
        Location::default()
    }

    /// Line `n` (1-based) of the message, when it is not a segment.
    pub fn line(n: usize) -> Self {
        Location {
            sequence: u32::try_from(n).unwrap_or(u32::MAX),
            ..Location::default()
        }
    }

    /// A whole segment (its first occurrence).
    pub fn segment(id: &str) -> Self {
        Location {
            segment: id.to_string(),
            sequence: 1,
            ..Location::default()
        }
    }

    /// A field of the first occurrence of a segment, e.g. `Location::field("PID", 7)`.
    pub fn field(segment: &str, field: u32) -> Self {
        Location {
            field,
            ..Location::segment(segment)
        }
    }

    /// This location narrowed to a component.
    pub fn component(mut self, component: u32) -> Self {
        self.component = component;
        self
    }

    /// This location narrowed to a subcomponent.
    pub fn subcomponent(mut self, subcomponent: u32) -> Self {
        self.subcomponent = subcomponent;
        self
    }

    /// This location narrowed to a repetition of its field.
    pub fn repetition(mut self, repetition: u32) -> Self {
        self.repetition = repetition;
        self
    }

    /// This location in the `sequence`-th occurrence of its segment.
    pub fn in_sequence(mut self, sequence: u32) -> Self {
        self.sequence = sequence;
        self
    }
}

/// `PID-7`, `PID-3[2].4`, `PID-5.1.1`, `QPD`, `segment 4`, `message`. The repetition is
/// shown only past the first, and the sequence only past the first occurrence (`PID#2-3`).
impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.segment.is_empty() {
            return match self.sequence {
                0 => f.write_str("message"),
                n => write!(f, "segment {n}"),
            };
        }
        f.write_str(&self.segment)?;
        if self.sequence > 1 {
            write!(f, "#{}", self.sequence)?;
        }
        if self.field == 0 {
            return Ok(());
        }
        write!(f, "-{}", self.field)?;
        if self.repetition > 1 {
            write!(f, "[{}]", self.repetition)?;
        }
        if self.component > 0 {
            write!(f, ".{}", self.component)?;
            if self.subcomponent > 0 {
                write!(f, ".{}", self.subcomponent)?;
            }
        }
        Ok(())
    }
}

/// One problem with a message: where, which table-0357 code, and why (never the value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hl7Error {
    /// Where the problem is.
    pub location: Location,
    /// The HL7 error code.
    pub code: ErrorCode,
    /// What is wrong, lowercase, without the value.
    pub reason: Cow<'static, str>,
    /// The record key (`source/local_id`) once it is known and valid.
    pub key: Option<String>,
}

impl Hl7Error {
    /// A problem at `location`.
    pub fn new(location: Location, code: ErrorCode, reason: impl Into<Cow<'static, str>>) -> Self {
        Hl7Error {
            location,
            code,
            reason: reason.into(),
            key: None,
        }
    }

    /// A required value missing at `location`.
    pub fn missing(location: Location) -> Self {
        Hl7Error::new(location, ErrorCode::RequiredFieldMissing, "missing")
    }

    /// A value at `location` that does not fit its type.
    pub fn bad_value(location: Location, reason: impl Into<Cow<'static, str>>) -> Self {
        Hl7Error::new(location, ErrorCode::DataType, reason)
    }

    /// The same problem, attributed to a record key (a key that passed
    /// [`crate::record::check_key_part`]).
    pub fn for_record(mut self, key: impl fmt::Display) -> Self {
        self.key = Some(key.to_string());
        self
    }

    /// Whether the message is rejected unread (AR) or refused after reading (AE): problems
    /// in MSH, the message's structure, and unsupported types, events, processing ids and
    /// versions reject it.
    pub fn ack_code(&self) -> AckCode {
        let structural = matches!(
            self.code,
            ErrorCode::SegmentSequence
                | ErrorCode::UnsupportedMessageType
                | ErrorCode::UnsupportedEventCode
                | ErrorCode::UnsupportedProcessingId
                | ErrorCode::UnsupportedVersionId
        );
        if structural || self.location.segment.is_empty() || self.location.segment == "MSH" {
            AckCode::Reject
        } else {
            AckCode::Error
        }
    }

    /// An ERR for an error of the library met while handling a message: a domain field
    /// named by [`crate::record::Record::validate`] becomes its PID position
    /// ([`pid_position_of`]); an unknown person or record becomes 204 on the query's
    /// identifier (QPD-3); anything else is 207 with a reason that reveals nothing of the
    /// receiver's internals.
    pub fn from_error(e: &Error) -> Self {
        match e {
            Error::InvalidInput { key, field, reason } => {
                let location = pid_position_of(field).unwrap_or_else(|| Location::segment("PID"));
                let code = if reason == "missing" {
                    ErrorCode::RequiredFieldMissing
                } else {
                    ErrorCode::DataType
                };
                Hl7Error {
                    location,
                    code,
                    reason: format!("{field}: {reason}").into(),
                    key: key.clone(),
                }
            }
            Error::NotFound { what, .. } => Hl7Error::new(
                Location::field("QPD", 3),
                ErrorCode::UnknownKeyIdentifier,
                format!("{what} not found"),
            ),
            _ => Hl7Error::new(
                Location::message(),
                ErrorCode::ApplicationInternal,
                "the receiver could not process the message; retry later",
            ),
        }
    }
}

impl fmt::Display for Hl7Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(k) = &self.key {
            write!(f, "record {k}: ")?;
        }
        write!(f, "{}: {}", self.location, self.reason)
    }
}

impl From<Hl7Error> for Error {
    fn from(e: Hl7Error) -> Self {
        Error::InvalidInput {
            key: e.key,
            field: e.location.to_string().into(),
            reason: e.reason,
        }
    }
}

/// The PID position a domain field of [`crate::record::Record`] is read from (the names
/// [`crate::record::Record::validate`] uses in its errors), or `None` for a name that is not
/// a record field.
pub fn pid_position_of(field: &str) -> Option<Location> {
    let pid = |f| Location::field("PID", f);
    Some(match field {
        "source" => pid(3).component(4),
        "local_id" => pid(3).component(1),
        "identifiers" | "identifier.system" | "identifier.value" => pid(3),
        "family_name" => pid(5).component(1),
        "given_name" => pid(5).component(2),
        "middle_name" => pid(5).component(3),
        "previous_family_name" => pid(9).component(1),
        "birth_date" => pid(7),
        "sex" => pid(8),
        "address_line" => pid(11).component(1),
        "city" => pid(11).component(3),
        "state" => pid(11).component(4),
        "postal_code" => pid(11).component(5),
        "country" => pid(11).component(6),
        "phone" => pid(13),
        "email" => pid(13).component(4),
        "multiple_birth_order" => pid(25),
        "record" => Location::segment("PID"),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_read_as_hl7_positions() {
        let cases = [
            (Location::message(), "message"),
            (Location::line(4), "segment 4"),
            (Location::segment("QPD"), "QPD"),
            (Location::field("PID", 7), "PID-7"),
            (
                Location::field("PID", 3).repetition(2).component(4),
                "PID-3[2].4",
            ),
            (
                Location::field("PID", 5).component(1).subcomponent(1),
                "PID-5.1.1",
            ),
            (Location::field("PID", 3).in_sequence(2), "PID#2-3"),
        ];
        for (loc, text) in cases {
            assert_eq!(loc.to_string(), text);
        }
    }

    #[test]
    fn structural_problems_reject_and_content_problems_refuse() {
        let msh = Hl7Error::missing(Location::field("MSH", 10));
        assert_eq!(msh.ack_code(), AckCode::Reject);
        let ty = Hl7Error::new(
            Location::field("ZZZ", 1),
            ErrorCode::UnsupportedEventCode,
            "unsupported",
        );
        assert_eq!(ty.ack_code(), AckCode::Reject);
        let date = Hl7Error::bad_value(Location::field("PID", 7), "not a date");
        assert_eq!(date.ack_code(), AckCode::Error);
        assert_eq!(date.to_string(), "PID-7: not a date");
        let e: Error = date.for_record("adt/1").into();
        assert_eq!(e.to_string(), "record adt/1: PID-7: not a date");
    }

    #[test]
    fn library_errors_point_at_pid_positions() {
        let e = Error::invalid("birth_date", "in the future").for_record("adt/7");
        let h = Hl7Error::from_error(&e);
        assert_eq!(h.location.to_string(), "PID-7");
        assert_eq!(h.code, ErrorCode::DataType);
        assert_eq!(h.key.as_deref(), Some("adt/7"));
        let h = Hl7Error::from_error(&Error::invalid("local_id", "missing"));
        assert_eq!(
            (h.location.to_string(), h.code),
            ("PID-3.1".into(), ErrorCode::RequiredFieldMissing)
        );
        let h = Hl7Error::from_error(&Error::NotFound {
            what: "record",
            id: "adt/9".into(),
        });
        assert_eq!(h.code, ErrorCode::UnknownKeyIdentifier);
        assert!(!h.reason.contains("adt/9"));
        let h = Hl7Error::from_error(&Error::Storage("sled: io error at /var/x".into()));
        assert_eq!(h.code, ErrorCode::ApplicationInternal);
        assert!(!h.reason.contains("sled"));
    }
}
