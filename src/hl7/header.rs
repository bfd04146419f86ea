//! The message header (MSH): who sent it to whom, what it is, its control id, version and
//! character set; and the hierarchic designators (HD) that name applications, facilities
//! and identifier domains.

use super::error::{ErrorCode, Hl7Error, Location};
use super::message::{components, escape, join_trimmed, Charset, Delimiters, Message, Segment};

/// Longest MSH-10 accepted (the v2.7 length; earlier versions allow 20).
pub const MAX_CONTROL_ID_LEN: usize = 199;

/// The HL7 versions read here (MSH-12).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Version {
    /// 2.3.1, the version of IHE ITI-8's older feed.
    V2_3_1,
    /// 2.4.
    V2_4,
    /// 2.5, the version of IHE ITI-8, ITI-9 and ITI-21.
    V2_5,
    /// 2.5.1.
    V2_5_1,
}

impl Version {
    /// Reads MSH-12.1.
    pub fn parse(s: &str) -> Option<Version> {
        match s.trim() {
            "2.3.1" => Some(Version::V2_3_1),
            "2.4" => Some(Version::V2_4),
            "2.5" => Some(Version::V2_5),
            "2.5.1" => Some(Version::V2_5_1),
            _ => None,
        }
    }

    /// The MSH-12 value.
    pub fn as_str(self) -> &'static str {
        match self {
            Version::V2_3_1 => "2.3.1",
            Version::V2_4 => "2.4",
            Version::V2_5 => "2.5",
            Version::V2_5_1 => "2.5.1",
        }
    }

    /// From 2.5 on, ERR names the location in ERR-2 and the code in ERR-3, MSH-9 has a
    /// third component (the message structure), and MSA-3 is withdrawn.
    pub fn is_v25_or_later(self) -> bool {
        self >= Version::V2_5
    }
}

/// A hierarchic designator: namespace id, universal id, universal id type (e.g.
/// `HOSP&1.2.840.114350&ISO`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Hd {
    /// HD.1, the local name, e.g. `HOSP`.
    pub namespace_id: String,
    /// HD.2, the universal id, e.g. an OID.
    pub universal_id: String,
    /// HD.3, the universal id's type, e.g. `ISO`.
    pub universal_id_type: String,
}

impl Hd {
    /// An HD with only a namespace id.
    pub fn named(namespace_id: impl Into<String>) -> Self {
        Hd {
            namespace_id: namespace_id.into(),
            ..Hd::default()
        }
    }

    /// The name of the domain: the namespace id, or the universal id when there is none.
    /// A source's records are keyed under this name.
    pub fn domain(&self) -> &str {
        if self.namespace_id.is_empty() {
            &self.universal_id
        } else {
            &self.namespace_id
        }
    }

    /// True when no part is given.
    pub fn is_empty(&self) -> bool {
        self.namespace_id.is_empty() && self.universal_id.is_empty()
    }

    /// Whether this HD names the same domain as `other` (by namespace id, else universal id).
    pub fn same_domain(&self, other: &Hd) -> bool {
        (!self.namespace_id.is_empty() && self.namespace_id == other.namespace_id)
            || (!self.universal_id.is_empty() && self.universal_id == other.universal_id)
    }

    /// The HD in components `c..c+2` of field `f`, repetition `r`.
    pub(crate) fn from_components(seg: &Segment, f: usize, r: usize) -> Hd {
        Hd {
            namespace_id: seg.get(f, r, 1, 1).trim().to_string(),
            universal_id: seg.get(f, r, 2, 1).trim().to_string(),
            universal_id_type: seg.get(f, r, 3, 1).trim().to_string(),
        }
    }

    /// The HD in the subcomponents of component `c` of field `f`, repetition `r` (as CX.4).
    pub(crate) fn from_subcomponents(seg: &Segment, f: usize, r: usize, c: usize) -> Hd {
        Hd {
            namespace_id: seg.get(f, r, c, 1).trim().to_string(),
            universal_id: seg.get(f, r, c, 2).trim().to_string(),
            universal_id_type: seg.get(f, r, c, 3).trim().to_string(),
        }
    }

    /// As a field (components).
    pub(crate) fn as_field(&self, d: &Delimiters) -> String {
        components(
            &[
                &self.namespace_id,
                &self.universal_id,
                &self.universal_id_type,
            ],
            d,
        )
    }

    /// As a component (subcomponents).
    pub(crate) fn as_component(&self, d: &Delimiters) -> String {
        join_trimmed(
            [
                &self.namespace_id,
                &self.universal_id,
                &self.universal_id_type,
            ]
            .map(|s| escape(s, d)),
            d.subcomponent,
        )
    }
}

/// MSH: what an answer needs to go back to the sender and what the message is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// MSH-3.
    pub sending_application: Hd,
    /// MSH-4.
    pub sending_facility: Hd,
    /// MSH-5.
    pub receiving_application: Hd,
    /// MSH-6.
    pub receiving_facility: Hd,
    /// MSH-9.1, e.g. `ADT`.
    pub message_code: String,
    /// MSH-9.2, e.g. `A04`.
    pub trigger_event: String,
    /// MSH-10, echoed in MSA-2 (empty only when the message had none).
    pub control_id: String,
    /// MSH-11.1: `P`, `T` or `D`.
    pub processing_id: String,
    /// MSH-12 (2.5 when the message's is missing or not supported).
    pub version: Version,
    /// MSH-18 (`None` when not declared).
    pub charset: Option<Charset>,
}

impl Default for Header {
    /// What an answer to a message without a readable MSH is written with.
    fn default() -> Self {
        Header {
            sending_application: Hd::default(),
            sending_facility: Hd::default(),
            receiving_application: Hd::default(),
            receiving_facility: Hd::default(),
            message_code: String::new(),
            trigger_event: String::new(),
            control_id: String::new(),
            processing_id: "P".into(),
            version: Version::V2_5,
            charset: None,
        }
    }
}

impl Header {
    /// Reads MSH. The header comes back even when it is not acceptable, as far as it could be
    /// read, so that the rejection can be answered to the right sender with the right MSA-2.
    ///
    /// # Errors
    /// The header and the first problem: MSH-9.1 or MSH-9.2, MSH-10 (missing, longer than
    /// [`MAX_CONTROL_ID_LEN`], control characters), MSH-11 not `P`, `T` or `D`, MSH-12 not a
    /// supported [`Version`].
    pub fn read(msg: &Message) -> Result<Header, Box<(Header, Hl7Error)>> {
        let msh = msg.msh();
        let control_id = msh.first(10).trim().to_string();
        let control_ok =
            control_id.len() <= MAX_CONTROL_ID_LEN && !control_id.chars().any(char::is_control);
        let version = Version::parse(&msh.component(12, 1));
        let processing_id = msh.component(11, 1).trim().to_string();
        let header = Header {
            sending_application: Hd::from_components(msh, 3, 1),
            sending_facility: Hd::from_components(msh, 4, 1),
            receiving_application: Hd::from_components(msh, 5, 1),
            receiving_facility: Hd::from_components(msh, 6, 1),
            message_code: msh.component(9, 1).trim().to_string(),
            trigger_event: msh.component(9, 2).trim().to_string(),
            control_id: if control_ok {
                control_id.clone()
            } else {
                String::new()
            },
            processing_id: if ["P", "T", "D"].contains(&processing_id.as_str()) {
                processing_id.clone()
            } else {
                "P".into()
            },
            version: version.unwrap_or(Version::V2_5),
            charset: msg.charset(),
        };
        let at = |f| Location::field("MSH", f);
        let problem = if control_id.is_empty() {
            Some(Hl7Error::missing(at(10)))
        } else if !control_ok {
            Some(Hl7Error::bad_value(
                at(10),
                format!("longer than {MAX_CONTROL_ID_LEN} characters or with control characters"),
            ))
        } else if header.message_code.is_empty() {
            Some(Hl7Error::missing(at(9).component(1)))
        } else if header.trigger_event.is_empty() {
            Some(Hl7Error::missing(at(9).component(2)))
        } else if processing_id.is_empty() {
            Some(Hl7Error::missing(at(11)))
        } else if !["P", "T", "D"].contains(&processing_id.as_str()) {
            Some(Hl7Error::new(
                at(11),
                ErrorCode::UnsupportedProcessingId,
                "not P, T or D",
            ))
        } else if msh.first(12).trim().is_empty() {
            Some(Hl7Error::missing(at(12)))
        } else if version.is_none() {
            Some(Hl7Error::new(
                at(12),
                ErrorCode::UnsupportedVersionId,
                "not a supported version (2.3.1, 2.4, 2.5, 2.5.1)",
            ))
        } else {
            None
        };
        match problem {
            Some(p) => Err(Box::new((header, p))),
            None => Ok(header),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(msh: &str) -> Result<Header, Box<(Header, Hl7Error)>> {
        Header::read(&Message::parse(msh.as_bytes()).unwrap())
    }

    #[test]
    fn reads_the_header() {
        let h = header(
            "MSH|^~\\&|ADT1^1.2.3^ISO|GOOD HEALTH|EMPI|CITY|20240102||ADT^A04^ADT_A01|MSG1|P|2.3.1||||||8859/1",
        )
        .unwrap();
        assert_eq!(h.sending_application.universal_id, "1.2.3");
        assert_eq!(h.sending_facility.domain(), "GOOD HEALTH");
        assert_eq!(
            (h.message_code.as_str(), h.trigger_event.as_str()),
            ("ADT", "A04")
        );
        assert_eq!(h.control_id, "MSG1");
        assert_eq!(h.version, Version::V2_3_1);
        assert_eq!(h.charset, Some(Charset::Latin1));
    }

    #[test]
    fn problems_keep_what_could_be_read() {
        let cases = [
            (
                "MSH|^~\\&|A|B|C|D|1||ADT^A04|M1|P|2.2",
                "MSH-12",
                ErrorCode::UnsupportedVersionId,
            ),
            (
                "MSH|^~\\&|A|B|C|D|1||ADT^A04|M1|P",
                "MSH-12",
                ErrorCode::RequiredFieldMissing,
            ),
            (
                "MSH|^~\\&|A|B|C|D|1||ADT^A04|M1|X|2.5",
                "MSH-11",
                ErrorCode::UnsupportedProcessingId,
            ),
            (
                "MSH|^~\\&|A|B|C|D|1||ADT^A04||P|2.5",
                "MSH-10",
                ErrorCode::RequiredFieldMissing,
            ),
            (
                "MSH|^~\\&|A|B|C|D|1||ADT|M1|P|2.5",
                "MSH-9.2",
                ErrorCode::RequiredFieldMissing,
            ),
            (
                "MSH|^~\\&|A|B|C|D|1|||M1|P|2.5",
                "MSH-9.1",
                ErrorCode::RequiredFieldMissing,
            ),
        ];
        for (msh, loc, code) in cases {
            let (h, e) = *header(msh).unwrap_err();
            assert_eq!(
                (e.location.to_string().as_str(), e.code),
                (loc, code),
                "{msh}"
            );
            assert_eq!(h.sending_application.namespace_id, "A");
        }
        let long = format!("MSH|^~\\&|A|B|C|D|1||ADT^A04|{}|P|2.5", "9".repeat(300));
        let (h, e) = *header(&long).unwrap_err();
        assert_eq!(e.location.to_string(), "MSH-10");
        assert!(
            h.control_id.is_empty(),
            "an unusable control id is not echoed"
        );
    }
}
