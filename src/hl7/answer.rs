//! Writing the answers: ACK (MSA with AA, AE or AR, and ERR segments), RSP^K23 to a PIX
//! query and RSP^K22 to a PDQ query, from neutral inputs ([`Cx`], [`PixAnswer`],
//! [`PdqPage`]) that the door fills from whatever the application returned.
//!
//! Answers use the standard delimiters `|^~\&`, echo MSH-10 in MSA-2, go back to the
//! sender (MSH-3/4 become MSH-5/6), keep the request's version and processing id, and are
//! written in the request's character set unless their text needs UTF-8. ERR segments name
//! the position and the reason, never a value.

use crate::record::{Record, Sex};

use super::error::{AckCode, Hl7Error};
use super::header::{Hd, Header};
use super::message::{
    components, escape, join_trimmed, Charset, Delimiters, Segment, SegmentWriter,
};
use super::request::{PdqQuery, PixQuery, Rejection};

const D: Delimiters = Delimiters::STANDARD;

/// Who answers: this application's names, the answer's own control id and time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Responder {
    /// MSH-3 of answers, e.g. `EMPI`.
    pub application: Hd,
    /// MSH-4 of answers.
    pub facility: Hd,
    /// MSH-10 of the answer (unique per answer).
    pub control_id: String,
    /// MSH-7 of the answer, milliseconds since the epoch (UTC).
    pub time_ms: i64,
}

/// An answer ready to send: its text (segments ended by CR) and the character set its
/// MSH-18 declares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outbound {
    /// The message text.
    pub text: String,
    /// The character set to encode it in (`None`: ASCII, undeclared).
    pub charset: Option<Charset>,
}

impl Outbound {
    /// The bytes to frame and send.
    pub fn to_bytes(&self) -> Vec<u8> {
        Charset::encode(self.charset, &self.text)
    }
}

/// An identifier in an answer: CX.1 id, CX.4 assigning authority, CX.5 type code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cx {
    /// The identifier, e.g. an MRN or an EUID.
    pub id: String,
    /// Its domain.
    pub authority: Hd,
    /// Its type (table 0203), e.g. `PI` (patient internal identifier) or `MR`.
    pub type_code: String,
}

impl Cx {
    fn encode(&self) -> String {
        join_trimmed(
            [
                escape(&self.id, &D),
                String::new(),
                String::new(),
                self.authority.as_component(&D),
                escape(&self.type_code, &D),
            ],
            D.component,
        )
    }
}

/// What the application found for a PIX query (IHE ITI-9's cases).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PixAnswer {
    /// The person's identifiers, in every domain (the answer keeps those of the requested
    /// domains and leaves out the queried identifier itself); none left is NF.
    Found(Vec<Cx>),
    /// The domain of QPD-3 is known, the identifier is not: AE, 204 on QPD-3.1.
    UnknownIdentifier,
    /// The domain of QPD-3 is not known: AE, 204 on QPD-3.4.
    UnknownSourceDomain,
    /// These repetitions of QPD-4 (1-based) name domains that are not known: AE, 204 on
    /// each.
    UnknownDomains(Vec<usize>),
}

/// One PDQ candidate.
#[derive(Debug, Clone, PartialEq)]
pub struct PdqCandidate {
    /// The person's identifiers (PID-3; the answer keeps the requested domains').
    pub identifiers: Vec<Cx>,
    /// The demographics to show (a golden view, as a record whose key and identifiers are
    /// not used): PID-5, 7, 8, 11, 13, 24, 25.
    pub demographics: Record,
    /// The match score, 0 to 1 (QRI-1).
    pub score: f64,
}

/// One page of PDQ candidates.
#[derive(Debug, Clone, PartialEq)]
pub struct PdqPage {
    /// The candidates of this page, best first.
    pub candidates: Vec<PdqCandidate>,
    /// How many candidates the query has in all (QAK-4).
    pub total: usize,
    /// How many come after this page (QAK-6).
    pub remaining: usize,
    /// The pointer to the next page (DSC-1), when there is one.
    pub continuation: Option<String>,
}

/// MSH-7 text: `YYYYMMDDHHMMSS+0000`.
fn timestamp(ms: i64) -> String {
    let (days, rem) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    let (y, m, d) = crate::time::civil_from_days(days);
    let (h, min, s) = (rem / 3_600_000, rem / 60_000 % 60, rem / 1000 % 60);
    format!("{y:04}{m:02}{d:02}{h:02}{min:02}{s:02}+0000")
}

/// A number as HL7 NM: at most four decimals, no trailing zeros.
fn decimal(x: f64) -> String {
    if !x.is_finite() {
        return "0".into();
    }
    let s = format!("{x:.4}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" {
        "0".into()
    } else {
        s.to_string()
    }
}

/// The answer's text: MSH (to the sender of `req`), then `body`.
fn finish(req: &Header, r: &Responder, message_type: [&str; 3], body: Vec<String>) -> Outbound {
    let body_text: String = body.iter().flat_map(|s| [s.as_str(), "\r"]).collect();
    let charset = Charset::for_answer(req.charset, &body_text);
    let mut msh = SegmentWriter::new("MSH");
    let mtype: &[&str] = if req.version.is_v25_or_later() {
        &message_type
    } else {
        &message_type[..2]
    };
    msh.set_encoded(3, r.application.as_field(&D))
        .set_encoded(4, r.facility.as_field(&D))
        .set_encoded(5, req.sending_application.as_field(&D))
        .set_encoded(6, req.sending_facility.as_field(&D))
        .set(7, &timestamp(r.time_ms), &D)
        .set_components(9, mtype, &D)
        .set(10, &r.control_id, &D)
        .set(11, &req.processing_id, &D)
        .set(12, req.version.as_str(), &D);
    if let Some(c) = charset {
        msh.set(18, c.name(), &D);
    }
    Outbound {
        text: format!("{}\r{body_text}", msh.finish(&D)),
        charset,
    }
}

/// MSA-1 for a list of problems: AA when none, AR when one rejects, else AE.
fn ack_code(errors: &[Hl7Error]) -> AckCode {
    if errors.is_empty() {
        AckCode::Accept
    } else if errors.iter().any(|e| e.ack_code() == AckCode::Reject) {
        AckCode::Reject
    } else {
        AckCode::Error
    }
}

/// MSA, then one ERR a problem (in 2.3.1 and 2.4: ERR-1, and the first reason in MSA-3;
/// from 2.5: ERR-2, ERR-3, ERR-4 and the reason in ERR-7).
fn msa_err(req: &Header, code: AckCode, errors: &[Hl7Error]) -> Vec<String> {
    let text = |e: &Hl7Error| format!("{}: {}", e.location, e.reason);
    let mut msa = SegmentWriter::new("MSA");
    msa.set(1, code.as_str(), &D).set(2, &req.control_id, &D);
    let v25 = req.version.is_v25_or_later();
    if let (false, Some(first)) = (v25, errors.first()) {
        msa.set(3, &text(first), &D);
    }
    let mut out = vec![msa.finish(&D)];
    for e in errors {
        let l = &e.location;
        let num = |n: u32| if n == 0 { String::new() } else { n.to_string() };
        let mut err = SegmentWriter::new("ERR");
        let code_text = e.code.text();
        let code_num = e.code.code().to_string();
        if v25 {
            let erl = if l.segment.is_empty() {
                String::new()
            } else {
                let field_parts = if l.field == 0 {
                    [String::new(), String::new(), String::new(), String::new()]
                } else {
                    [
                        num(l.field),
                        num(l.repetition.max(1)),
                        num(l.component),
                        num(l.subcomponent),
                    ]
                };
                let mut parts = vec![l.segment.clone(), num(l.sequence.max(1))];
                parts.extend(field_parts);
                let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
                components(&parts, &D)
            };
            err.set_encoded(2, erl)
                .set_components(3, &[&code_num, code_text, "HL70357"], &D)
                .set(4, "E", &D)
                .set(7, &text(e), &D);
        } else {
            let code_ce = join_trimmed(
                [code_num.as_str(), code_text, "HL70357"].map(|s| escape(s, &D)),
                D.subcomponent,
            );
            let seq = if l.segment.is_empty() {
                String::new()
            } else {
                num(l.sequence.max(1))
            };
            let parts = [escape(&l.segment, &D), seq, num(l.field), code_ce];
            err.set_encoded(1, join_trimmed(parts, D.component));
        }
        out.push(err.finish(&D));
    }
    out
}

/// An acknowledgement of `req`: AA without errors, else AE or AR (see
/// [`Hl7Error::ack_code`]) with one ERR a problem.
pub fn ack(req: &Header, errors: &[Hl7Error], r: &Responder) -> Outbound {
    let event = req.trigger_event.as_str();
    // Without a known event (no readable MSH-9), MSH-9 is `ACK` alone.
    let structure = if event.is_empty() { "" } else { "ACK" };
    finish(
        req,
        r,
        ["ACK", event, structure],
        msa_err(req, ack_code(errors), errors),
    )
}

/// The answer to a query that failed: RSP with MSA AE or AR, QAK-2 the same, the QPD
/// echoed when there was one, and ERR segments. `req` says which query (Q22 → K22, else
/// K23).
pub fn query_error(
    req: &Header,
    query_tag: &str,
    qpd: Option<&Segment>,
    errors: &[Hl7Error],
    r: &Responder,
) -> Outbound {
    let code = match ack_code(errors) {
        AckCode::Accept => AckCode::Error,
        c => c,
    };
    let mut body = msa_err(req, code, errors);
    let errs = body.split_off(1);
    body.push(qak(query_tag, code.as_str()));
    if let Some(q) = qpd {
        body.push(q.encode_with(&D));
    }
    body.extend(errs);
    let (event, structure) = response_type(req);
    finish(req, r, ["RSP", event, structure], body)
}

fn response_type(req: &Header) -> (&'static str, &'static str) {
    if req.trigger_event == "Q22" {
        ("K22", "RSP_K21")
    } else {
        ("K23", "RSP_K23")
    }
}

fn qak(tag: &str, status: &str) -> String {
    let mut q = SegmentWriter::new("QAK");
    q.set(1, tag, &D).set(2, status, &D);
    q.finish(&D)
}

/// Whether `cx` belongs to one of `domains` (all when empty).
fn in_domains(cx: &Cx, domains: &[Hd]) -> bool {
    domains.is_empty() || domains.iter().any(|d| d.same_domain(&cx.authority))
}

/// RSP^K23 (IHE ITI-9): the person's identifiers in the requested domains in PID-3, with a
/// PID-5 that is only the name type `S` (no demographics in a PIX answer); QAK-2 OK or
/// NF; or AE with 204 on the unknown identifier or domains.
pub fn rsp_k23(req: &Header, query: &PixQuery, answer: &PixAnswer, r: &Responder) -> Outbound {
    use super::error::{ErrorCode, Location};
    let unknown = |loc: Location, what: &'static str| {
        Hl7Error::new(loc, ErrorCode::UnknownKeyIdentifier, what)
    };
    let errors: Vec<Hl7Error> = match answer {
        PixAnswer::Found(_) => Vec::new(),
        PixAnswer::UnknownIdentifier => vec![unknown(
            Location::field("QPD", 3).repetition(1).component(1),
            "identifier not known in its domain",
        )],
        PixAnswer::UnknownSourceDomain => vec![unknown(
            Location::field("QPD", 3).repetition(1).component(4),
            "assigning authority not known",
        )],
        PixAnswer::UnknownDomains(reps) => reps
            .iter()
            .map(|&rep| {
                unknown(
                    Location::field("QPD", 4)
                        .repetition(u32::try_from(rep).unwrap_or(u32::MAX))
                        .component(4),
                    "domain not known",
                )
            })
            .collect(),
    };
    if !errors.is_empty() {
        return query_error(req, &query.query_tag, Some(&query.qpd), &errors, r);
    }
    let PixAnswer::Found(ids) = answer else {
        unreachable!("errors were answered above")
    };
    let queried = |cx: &Cx| {
        cx.id == query.identifier.local_id && cx.authority.domain() == query.identifier.source
    };
    let kept: Vec<&Cx> = ids
        .iter()
        .filter(|cx| !queried(cx) && in_domains(cx, &query.domains))
        .collect();
    let mut body = msa_err(req, AckCode::Accept, &[]);
    body.push(qak(
        &query.query_tag,
        if kept.is_empty() { "NF" } else { "OK" },
    ));
    body.push(query.qpd.encode_with(&D));
    if !kept.is_empty() {
        let mut pid = SegmentWriter::new("PID");
        pid.set_encoded(
            3,
            kept.iter()
                .map(|c| c.encode())
                .collect::<Vec<_>>()
                .join("~"),
        )
        .set_encoded(5, "^^^^^^S".into());
        body.push(pid.finish(&D));
    }
    finish(req, r, ["RSP", "K23", "RSP_K23"], body)
}

/// PID for a candidate: identifiers, then the demographics of `rec`.
fn candidate_pid(set_id: usize, ids: &[&Cx], rec: &Record) -> String {
    let mut pid = SegmentWriter::new("PID");
    pid.set(1, &set_id.to_string(), &D);
    pid.set_encoded(
        3,
        ids.iter().map(|c| c.encode()).collect::<Vec<_>>().join("~"),
    );
    let o = |v: &Option<String>| v.clone().unwrap_or_default();
    let mut names = vec![components(
        &[
            &o(&rec.family_name),
            &o(&rec.given_name),
            &o(&rec.middle_name),
            "",
            "",
            "",
            "L",
        ],
        &D,
    )];
    names.extend(
        rec.previous_family_names
            .iter()
            .map(|n| components(&[n, "", "", "", "", "", "M"], &D)),
    );
    pid.set_encoded(5, names.join("~"));
    if let Some(b) = rec.birth_date {
        pid.set(7, &b.to_string().replace('-', ""), &D);
    }
    let sex = match rec.sex {
        Sex::Female => "F",
        Sex::Male => "M",
        Sex::Other => "O",
        Sex::Unknown => "",
    };
    pid.set(8, sex, &D);
    if !rec.address.is_empty() {
        let a = &rec.address;
        let line = |i: usize| a.lines.get(i).cloned().unwrap_or_default();
        let rest = a.lines.get(1..).map(|l| l.join(", ")).unwrap_or_default();
        pid.set_components(
            11,
            &[
                &line(0),
                &rest,
                &o(&a.city),
                &o(&a.state),
                &o(&a.postal_code),
                &o(&a.country),
                "H",
            ],
            &D,
        );
    }
    let mut telecom: Vec<String> = rec
        .phones
        .iter()
        .map(|p| components(&[p, "PRN", "PH"], &D))
        .collect();
    if let Some(e) = &rec.email {
        telecom.push(components(&["", "NET", "Internet", e], &D));
    }
    pid.set_encoded(13, telecom.join("~"));
    if let Some(n) = rec.multiple_birth_order {
        pid.set(24, "Y", &D).set(25, &n.to_string(), &D);
    }
    pid.finish(&D)
}

/// RSP^K22 (IHE ITI-21): one PID and QRI (QRI-1 the score) a candidate, QAK-2 OK or NF with
/// the hit counts (QAK-4 total, QAK-5 this page, QAK-6 remaining), and DSC with the
/// continuation pointer when more pages follow.
pub fn rsp_k22(req: &Header, query: &PdqQuery, page: &PdqPage, r: &Responder) -> Outbound {
    let mut body = msa_err(req, AckCode::Accept, &[]);
    let status = if page.candidates.is_empty() {
        "NF"
    } else {
        "OK"
    };
    let mut qak = SegmentWriter::new("QAK");
    qak.set(1, &query.query_tag, &D)
        .set(2, status, &D)
        .set_encoded(3, query.qpd.field_encoded(1, &D))
        .set(4, &page.total.to_string(), &D)
        .set(5, &page.candidates.len().to_string(), &D)
        .set(6, &page.remaining.to_string(), &D);
    body.push(qak.finish(&D));
    body.push(query.qpd.encode_with(&D));
    for (i, c) in page.candidates.iter().enumerate() {
        let ids: Vec<&Cx> = c
            .identifiers
            .iter()
            .filter(|cx| in_domains(cx, &query.domains))
            .collect();
        body.push(candidate_pid(i + 1, &ids, &c.demographics));
        let mut qri = SegmentWriter::new("QRI");
        qri.set(1, &decimal(c.score), &D);
        body.push(qri.finish(&D));
    }
    if let Some(next) = &page.continuation {
        let mut dsc = SegmentWriter::new("DSC");
        dsc.set(1, next, &D).set(2, "I", &D);
        body.push(dsc.finish(&D));
    }
    finish(req, r, ["RSP", "K22", "RSP_K21"], body)
}

impl Rejection {
    /// The answer to a message that could not be acted on: for a query (tag known), an RSP
    /// with QAK AE or AR; otherwise an ACK with AE or AR. Without a readable MSH, the ACK
    /// goes to nobody in particular and MSA-2 is empty.
    pub fn answer(&self, r: &Responder) -> Outbound {
        let default = Header::default();
        let header = self.header.as_ref().unwrap_or(&default);
        let errors = std::slice::from_ref(&self.error);
        match &self.query {
            Some((tag, qpd)) if !tag.is_empty() && self.error.ack_code() == AckCode::Error => {
                query_error(header, tag, Some(qpd), errors, r)
            }
            _ => ack(header, errors, r),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::error::{ErrorCode, Location};
    use super::super::header::Version;
    use super::super::request::{read_request, MappingOptions, Request};
    use super::*;

    fn responder() -> Responder {
        Responder {
            application: Hd::named("EMPI"),
            facility: Hd::named("CITY"),
            control_id: "R1".into(),
            time_ms: 1_767_268_800_000,
        }
    }

    fn header(version: Version) -> Header {
        Header {
            sending_application: Hd::named("ADT1"),
            sending_facility: Hd::named("GOOD HEALTH"),
            trigger_event: "A04".into(),
            message_code: "ADT".into(),
            control_id: "MSG1".into(),
            version,
            ..Header::default()
        }
    }

    #[test]
    fn acks_in_both_err_styles() {
        let ok = ack(&header(Version::V2_5), &[], &responder());
        assert_eq!(
            ok.text,
            "MSH|^~\\&|EMPI|CITY|ADT1|GOOD HEALTH|20260101120000+0000||ACK^A04^ACK|R1|P|2.5\rMSA|AA|MSG1\r"
        );
        let e = Hl7Error::bad_value(Location::field("PID", 7), "not a date");
        let v25 = ack(
            &header(Version::V2_5),
            std::slice::from_ref(&e),
            &responder(),
        );
        assert!(
            v25.text.ends_with(
                "MSA|AE|MSG1\rERR||PID^1^7^1|102^Data type error^HL70357|E|||PID-7: not a date\r"
            ),
            "{}",
            v25.text
        );
        let v231 = ack(&header(Version::V2_3_1), &[e], &responder());
        assert!(v231.text.contains("|ACK^A04|R1|P|2.3.1\r"), "{}", v231.text);
        assert!(
            v231.text.ends_with(
                "MSA|AE|MSG1|PID-7: not a date\rERR|PID^1^7^102&Data type error&HL70357\r"
            ),
            "{}",
            v231.text
        );
        let rej = Hl7Error::new(
            Location::field("MSH", 9).component(2),
            ErrorCode::UnsupportedEventCode,
            "no",
        );
        assert!(ack(&header(Version::V2_5), &[rej], &responder())
            .text
            .contains("MSA|AR|MSG1"));
    }

    #[test]
    fn unreadable_messages_get_ar_with_an_empty_msa2() {
        let rej = read_request(b"garbage", &MappingOptions::default(), 0).unwrap_err();
        let a = rej.answer(&responder());
        assert!(
            a.text.contains(
                "\rMSA|AR\rERR||MSH^1|100^Segment sequence error^HL70357|E|||MSH: missing"
            ),
            "{}",
            a.text
        );
    }

    fn pix(qpd: &str) -> (Header, PixQuery) {
        let text =
            format!("MSH|^~\\&|PIXC|F|EMPI|CITY|1||QBP^Q23^QBP_Q21|Q100|P|2.5\r{qpd}\rRCP|I\r");
        let inb = read_request(text.as_bytes(), &MappingOptions::default(), 0).unwrap();
        match inb.request {
            Request::PixQuery(p) => (inb.header, p),
            other => panic!("{other:?}"),
        }
    }

    fn cx(id: &str, ns: &str) -> Cx {
        Cx {
            id: id.into(),
            authority: Hd::named(ns),
            type_code: "PI".into(),
        }
    }

    #[test]
    fn pix_answers() {
        let (h, q) = pix("QPD|IHE PIX Query|T7|M1^^^H|^^^CLINIC~^^^EMPI");
        let ids = vec![
            cx("M1", "H"),
            cx("C9", "CLINIC"),
            cx("E0000000001", "EMPI"),
            cx("Z", "OTHER"),
        ];
        let a = rsp_k23(&h, &q, &PixAnswer::Found(ids.clone()), &responder());
        assert!(a.text.contains("|RSP^K23^RSP_K23|"));
        assert!(a.text.contains("\rMSA|AA|Q100\rQAK|T7|OK\rQPD|IHE PIX Query|T7|M1^^^H|^^^CLINIC~^^^EMPI\rPID|||C9^^^CLINIC^PI~E0000000001^^^EMPI^PI||^^^^^^S\r"), "{}", a.text);
        let nf = rsp_k23(&h, &q, &PixAnswer::Found(vec![cx("M1", "H")]), &responder());
        assert!(
            nf.text.contains("QAK|T7|NF") && !nf.text.contains("PID|"),
            "{}",
            nf.text
        );
        let unknown = rsp_k23(&h, &q, &PixAnswer::UnknownIdentifier, &responder());
        assert!(
            unknown.text.contains("MSA|AE|Q100\rQAK|T7|AE\rQPD|"),
            "{}",
            unknown.text
        );
        assert!(unknown
            .text
            .contains("ERR||QPD^1^3^1^1|204^Unknown key identifier^HL70357|E"));
        let dom = rsp_k23(&h, &q, &PixAnswer::UnknownDomains(vec![2]), &responder());
        assert!(dom.text.contains("ERR||QPD^1^4^2^4|204"), "{}", dom.text);
    }

    #[test]
    fn pdq_answers_page_and_score() {
        let text = "MSH|^~\\&|PDQC|F|EMPI|CITY|1||QBP^Q22^QBP_Q21|Q200|P|2.5\rQPD|IHE PDQ Query|T9|@PID.5.1.1^Doe\rRCP|I|1^RD\r";
        let inb = read_request(text.as_bytes(), &MappingOptions::default(), 0).unwrap();
        let Request::PdqQuery(q) = inb.request else {
            panic!()
        };
        let demographics = Record {
            family_name: Some("Doe".into()),
            given_name: Some("José".into()),
            birth_date: Some(crate::record::PartialDate {
                year: 1956,
                month: Some(3),
                day: None,
            }),
            sex: Sex::Male,
            phones: vec!["413-555-0142".into()],
            ..Record::default()
        };
        let page = PdqPage {
            candidates: vec![PdqCandidate {
                identifiers: vec![cx("E01", "EMPI"), cx("M1", "H")],
                demographics,
                score: 0.912_34,
            }],
            total: 2,
            remaining: 1,
            continuation: Some("next-1".into()),
        };
        let a = rsp_k22(&inb.header, &q, &page, &responder());
        assert_eq!(a.charset, Some(Charset::Utf8), "José needs UTF-8");
        assert!(
            a.text
                .contains("||RSP^K22^RSP_K21|R1|P|2.5||||||UNICODE UTF-8\r"),
            "{}",
            a.text
        );
        assert!(
            a.text.contains("\rQAK|T9|OK|IHE PDQ Query|2|1|1\r"),
            "{}",
            a.text
        );
        assert!(a.text.contains("\rPID|1||E01^^^EMPI^PI~M1^^^H^PI||Doe^José^^^^^L||195603|M|||||413-555-0142^PRN^PH\rQRI|0.9123\rDSC|next-1|I\r"), "{}", a.text);
        let empty = PdqPage {
            candidates: vec![],
            total: 0,
            remaining: 0,
            continuation: None,
        };
        assert!(rsp_k22(&inb.header, &q, &empty, &responder())
            .text
            .contains("QAK|T9|NF|IHE PDQ Query|0|0|0"));
    }

    #[test]
    fn numbers_and_times() {
        assert_eq!(decimal(0.5), "0.5");
        assert_eq!(decimal(1.0), "1");
        assert_eq!(decimal(f64::NAN), "0");
        assert_eq!(decimal(0.123_456), "0.1235");
        assert_eq!(timestamp(0), "19700101000000+0000");
    }
}
