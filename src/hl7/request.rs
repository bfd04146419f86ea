//! What a message asks for, in domain terms: the patient identity feed (ADT^A01, A04, A05,
//! A08 → a [`Record`]; ADT^A40 → a merge of two of the source's records), the PIX query
//! (QBP^Q23) and the PDQ query (QBP^Q22).
//!
//! The field mapping is the README's table "HL7 v2 field mapping". Every refusal is an
//! [`Hl7Error`] naming the position (`PID-7`, `PID-3[2].4`, `QPD-3[1].2`), never the value;
//! once the record key is read and valid, errors carry it too.

use crate::record::{
    check_key_part, Address, Identifier, PartialDate, Record, RecordKey, Sex, NATIONAL_ID_SYSTEM,
};

use super::error::{ErrorCode, Hl7Error, Location};
use super::header::{Hd, Header};
use super::message::{Message, Segment};

/// How identifiers are read from PID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MappingOptions {
    /// The CX.5 identifier type code of the PID-3 repetition that holds the national id
    /// (`SS`, a US social security number, by default); `None` reads none from PID-3.
    pub national_id_type: Option<String>,
    /// Whether PID-19 (SSN number, withdrawn after 2.5 but still sent) is read as the
    /// national id when PID-3 gives none.
    pub national_id_from_pid19: bool,
}

impl Default for MappingOptions {
    fn default() -> Self {
        MappingOptions {
            national_id_type: Some("SS".into()),
            national_id_from_pid19: true,
        }
    }
}

/// An ADT trigger event of the identity feed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AdtEvent {
    /// A01: admit an inpatient.
    A01,
    /// A04: register an outpatient.
    A04,
    /// A05: pre-admit.
    A05,
    /// A08: update patient information.
    A08,
}

/// What a message asks the application to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    /// ADT^A01/A04/A05/A08: match-or-create this record (validated with
    /// [`Record::validate`]).
    Submit {
        /// The trigger event.
        event: AdtEvent,
        /// The record, keyed by PID-3's assigning authority and id.
        record: Record,
    },
    /// ADT^A40: the source declares two of its records one patient; the retired one is
    /// merged into the survivor.
    Merge(Merge),
    /// QBP^Q23: the identifiers a person holds.
    PixQuery(PixQuery),
    /// QBP^Q22: candidates for demographics.
    PdqQuery(PdqQuery),
    /// QCN^J01: the sender is done with a PDQ query's further pages (QID-1, its tag).
    Cancel(Cancel),
}

/// QCN^J01 (IHE ITI-21): cancel a query's continuation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cancel {
    /// QID-1: the query tag of the query to cancel.
    pub query_tag: String,
}

/// ADT^A40: merge two records of one source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Merge {
    /// The source (PID-3.4, and MRG-1.4 when given).
    pub source: String,
    /// PID-3.1: the record that stays.
    pub survivor_local_id: String,
    /// MRG-1.1: the record merged into it.
    pub retired_local_id: String,
}

/// QBP^Q23 (IHE ITI-9): the identifiers of the person holding `identifier`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PixQuery {
    /// QPD-2, echoed in QAK-1.
    pub query_tag: String,
    /// QPD-3: the identifier asked about, as a record key (CX.4 domain, CX.1).
    pub identifier: RecordKey,
    /// QPD-4: the domains to answer in; empty for all.
    pub domains: Vec<Hd>,
    /// The QPD segment, echoed in the answer.
    pub qpd: Segment,
}

/// QBP^Q22 (IHE ITI-21): persons matching demographics.
#[derive(Debug, Clone, PartialEq)]
pub struct PdqQuery {
    /// QPD-2, echoed in QAK-1.
    pub query_tag: String,
    /// QPD-3's parameters as a record without a key (validated like one).
    pub criteria: Record,
    /// QPD-8: the domains whose identifiers are returned; empty for all.
    pub domains: Vec<Hd>,
    /// RCP-2: at most this many candidates a page.
    pub limit: Option<u32>,
    /// DSC-1: the continuation pointer of the previous page, asking for the next.
    pub continuation: Option<String>,
    /// The QPD segment, echoed in the answer.
    pub qpd: Segment,
}

/// A message read and understood.
#[derive(Debug, Clone, PartialEq)]
pub struct Inbound {
    /// Its header.
    pub header: Header,
    /// What it asks for.
    pub request: Request,
    /// [`Message::digest`], for replay detection.
    pub digest: [u8; 32],
}

/// A message that cannot be acted on, with what is needed to answer it.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejection {
    /// The header, as far as it could be read (`None`: no usable MSH).
    pub header: Option<Header>,
    /// For a query: its tag (QPD-2) and QPD segment, so the answer is an RSP with QAK.
    pub query: Option<(String, Segment)>,
    /// The problem.
    pub error: Hl7Error,
}

/// Reads a message (one MLLP frame's content) into a request, `today` (days since
/// 1970-01-01) bounding birth dates.
///
/// # Errors
/// A [`Rejection`] naming the first problem; nothing in the message has been acted on.
pub fn read_request(
    bytes: &[u8],
    opts: &MappingOptions,
    today: i64,
) -> Result<Inbound, Box<Rejection>> {
    let reject = |header, query, error| {
        Box::new(Rejection {
            header,
            query,
            error,
        })
    };
    let msg = Message::parse(bytes).map_err(|e| reject(None, None, e))?;
    let header = Header::read(&msg).map_err(|he| {
        let (h, e) = *he;
        reject(Some(h), None, e)
    })?;
    let query = (header.message_code == "QBP").then(|| {
        let qpd = msg.segment("QPD");
        let tag = qpd
            .map(|q| q.first(2).trim().to_string())
            .unwrap_or_default();
        qpd.map(|q| (tag, q.clone()))
    });
    let request = map(&msg, &header, opts, today)
        .map_err(|e| reject(Some(header.clone()), query.flatten(), e))?;
    Ok(Inbound {
        digest: msg.digest(),
        header,
        request,
    })
}

fn map(msg: &Message, h: &Header, opts: &MappingOptions, today: i64) -> Result<Request, Hl7Error> {
    let event = || Location::field("MSH", 9).component(2);
    match (h.message_code.as_str(), h.trigger_event.as_str()) {
        ("ADT", "A01" | "A04" | "A05" | "A08") => {
            let event = match h.trigger_event.as_str() {
                "A01" => AdtEvent::A01,
                "A04" => AdtEvent::A04,
                "A05" => AdtEvent::A05,
                _ => AdtEvent::A08,
            };
            let record = record_from_pid(required(msg, "PID")?, opts, today)?;
            Ok(Request::Submit { event, record })
        }
        ("ADT", "A40") => merge(msg, opts).map(Request::Merge),
        ("QBP", "Q23") => pix_query(msg).map(Request::PixQuery),
        ("QBP", "Q22") => pdq_query(msg, today).map(Request::PdqQuery),
        ("QCN", "J01") => {
            let qid = required(msg, "QID")?;
            let query_tag =
                clean(&qid.first(1)).ok_or_else(|| Hl7Error::missing(Location::field("QID", 1)))?;
            Ok(Request::Cancel(Cancel { query_tag }))
        }
        ("QCN", _) => Err(Hl7Error::new(
            event(),
            ErrorCode::UnsupportedEventCode,
            "not a supported cancel (J01)",
        )),
        ("ADT", _) => Err(Hl7Error::new(
            event(),
            ErrorCode::UnsupportedEventCode,
            "not a supported ADT event (A01, A04, A05, A08, A40)",
        )),
        ("QBP", _) => Err(Hl7Error::new(
            event(),
            ErrorCode::UnsupportedEventCode,
            "not a supported query (Q22, Q23)",
        )),
        _ => Err(Hl7Error::new(
            Location::field("MSH", 9).component(1),
            ErrorCode::UnsupportedMessageType,
            "not a supported message type (ADT, QBP, QCN)",
        )),
    }
}

fn required<'a>(msg: &'a Message, id: &str) -> Result<&'a Segment, Hl7Error> {
    msg.segment(id).ok_or_else(|| {
        Hl7Error::new(
            Location::segment(id),
            ErrorCode::SegmentSequence,
            "missing segment",
        )
    })
}

/// A value made fit for a record: control characters (a decoded `\.br\`) become spaces,
/// ends are trimmed, and blank is absent.
fn clean(v: &str) -> Option<String> {
    let v: String = v
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let v = v.trim();
    (!v.is_empty()).then(|| v.to_string())
}

/// The record key from PID-3: the first repetition with an id whose type is not the
/// national id's. Its assigning authority (CX.4) names the source.
fn record_key(pid: &Segment, opts: &MappingOptions) -> Result<(RecordKey, usize), Hl7Error> {
    for r in 1..=pid.repetitions(3) {
        let id = pid.get(3, r, 1, 1);
        let national = opts
            .national_id_type
            .as_deref()
            .is_some_and(|t| pid.get(3, r, 5, 1).trim() == t);
        if id.trim().is_empty() || national {
            continue;
        }
        let at = |c| Location::field("PID", 3).repetition(to_u32(r)).component(c);
        let source = Hd::from_subcomponents(pid, 3, r, 4);
        if source.is_empty() {
            return Err(Hl7Error::new(
                at(4),
                ErrorCode::RequiredFieldMissing,
                "missing: the assigning authority names the source",
            ));
        }
        let key = RecordKey::new(source.domain(), id.trim());
        check_key_part("source", &key.source).map_err(|e| retarget(&e, at(4)))?;
        check_key_part("local_id", &key.local_id).map_err(|e| retarget(&e, at(1)))?;
        return Ok((key, r));
    }
    Err(Hl7Error::missing(Location::field("PID", 3).component(1)))
}

/// An error of the library re-pointed at an HL7 position, keeping its reason.
fn retarget(e: &crate::Error, location: Location) -> Hl7Error {
    let mut h = Hl7Error::from_error(e);
    h.location = location;
    if let crate::Error::InvalidInput { reason, .. } = e {
        h.reason = reason.clone();
    }
    h
}

fn to_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// PID as a record (see the README's mapping table).
///
/// # Errors
/// An [`Hl7Error`] naming the PID position: no key in PID-3, a date that is not one, a sex
/// not in table 0001, a bad multiple-birth order, or what [`Record::validate`] refuses.
pub fn record_from_pid(
    pid: &Segment,
    opts: &MappingOptions,
    today: i64,
) -> Result<Record, Hl7Error> {
    let (key, key_rep) = record_key(pid, opts)?;
    let with_key = |e: Hl7Error| e.for_record(&key);
    let mut record = Record {
        source: key.source.clone(),
        local_id: key.local_id.clone(),
        ..Record::default()
    };

    // Other identifiers in PID-3: the national id by its type, others by their domain;
    // repetitions without an assigning authority name no domain and are left out.
    let mut national = None;
    for r in (1..=pid.repetitions(3)).filter(|&r| r != key_rep) {
        let Some(value) = clean(&pid.get(3, r, 1, 1)) else {
            continue;
        };
        let ty = pid.get(3, r, 5, 1);
        if opts.national_id_type.as_deref() == Some(ty.trim()) {
            national.get_or_insert(value);
            continue;
        }
        let domain = Hd::from_subcomponents(pid, 3, r, 4);
        if !domain.is_empty() {
            record.identifiers.push(Identifier {
                system: domain.domain().to_string(),
                value,
            });
        }
    }
    if national.is_none() && opts.national_id_from_pid19 {
        national = clean(&pid.first(19));
    }
    if let Some(value) = national {
        record.identifiers.insert(
            0,
            Identifier {
                system: NATIONAL_ID_SYSTEM.into(),
                value,
            },
        );
    }

    read_names(pid, &mut record);
    if let Some(ts) = clean(&pid.component(7, 1)) {
        record.birth_date =
            Some(parse_date(&ts).map_err(|reason| {
                with_key(Hl7Error::bad_value(Location::field("PID", 7), reason))
            })?);
    }
    record.sex = parse_sex(&pid.first(8)).map_err(|reason| {
        with_key(Hl7Error::new(
            Location::field("PID", 8),
            ErrorCode::TableValueNotFound,
            reason,
        ))
    })?;
    read_address(pid, &mut record);
    read_telecom(pid, 13, &mut record);
    read_telecom(pid, 14, &mut record);
    record.multiple_birth_order = multiple_birth(pid).map_err(with_key)?;

    record
        .validate(today)
        .map_err(|e| with_key(Hl7Error::from_error(&e)))?;
    Ok(record)
}

/// PID-5: the legal name (type `L`), else the first; maiden and birth names (types `M`,
/// `B`) and PID-9 aliases are earlier family names.
fn read_names(pid: &Segment, record: &mut Record) {
    let reps = pid.repetitions(5);
    let name_type = |r| pid.get(5, r, 7, 1).trim().to_ascii_uppercase();
    let primary = (1..=reps).find(|&r| name_type(r) == "L").or_else(|| {
        (1..=reps).find(|&r| {
            clean(&pid.get(5, r, 1, 1)).is_some() || clean(&pid.get(5, r, 2, 1)).is_some()
        })
    });
    if let Some(r) = primary {
        record.family_name = clean(&pid.get(5, r, 1, 1));
        record.given_name = clean(&pid.get(5, r, 2, 1));
        record.middle_name = clean(&pid.get(5, r, 3, 1));
    }
    let mut earlier: Vec<String> = (1..=reps)
        .filter(|&r| Some(r) != primary && matches!(name_type(r).as_str(), "M" | "B"))
        .filter_map(|r| clean(&pid.get(5, r, 1, 1)))
        .collect();
    earlier.extend((1..=pid.repetitions(9)).filter_map(|r| clean(&pid.get(9, r, 1, 1))));
    for name in earlier {
        if record.family_name.as_ref() != Some(&name)
            && !record.previous_family_names.contains(&name)
        {
            record.previous_family_names.push(name);
        }
    }
}

/// PID-11: the home address (type `H`), else the first.
fn read_address(pid: &Segment, record: &mut Record) {
    let reps = pid.repetitions(11);
    let Some(r) = (1..=reps)
        .find(|&r| pid.get(11, r, 7, 1).trim().eq_ignore_ascii_case("H"))
        .or((reps > 0).then_some(1))
    else {
        return;
    };
    let part = |c| clean(&pid.get(11, r, c, 1));
    record.address = Address {
        lines: [part(1), part(2)].into_iter().flatten().collect(),
        city: part(3),
        state: part(4),
        postal_code: part(5),
        country: part(6),
    };
}

/// PID-13 or PID-14: phone numbers (XTN.1, else country, area and local number), and the
/// first e-mail address (use code `NET` or equipment `Internet`, in XTN.4).
fn read_telecom(pid: &Segment, f: usize, record: &mut Record) {
    for r in 1..=pid.repetitions(f) {
        let use_code = pid.get(f, r, 2, 1);
        let equipment = pid.get(f, r, 3, 1);
        if use_code.trim() == "NET" || equipment.trim().eq_ignore_ascii_case("Internet") {
            let email = clean(&pid.get(f, r, 4, 1)).or_else(|| clean(&pid.get(f, r, 1, 1)));
            if record.email.is_none() {
                record.email = email;
            }
            continue;
        }
        let number = clean(&pid.get(f, r, 1, 1)).or_else(|| {
            let parts: Vec<String> = [5, 6, 7]
                .into_iter()
                .filter_map(|c| clean(&pid.get(f, r, c, 1)))
                .collect();
            (!parts.is_empty()).then(|| parts.join(" "))
        });
        if let Some(n) = number {
            if !record.phones.contains(&n) {
                record.phones.push(n);
            }
        }
    }
}

/// PID-24 (multiple birth indicator, table 0136) and PID-25 (birth order).
fn multiple_birth(pid: &Segment) -> Result<Option<u8>, Hl7Error> {
    let indicator = pid.first(24).trim().to_ascii_uppercase();
    if !matches!(indicator.as_str(), "" | "Y" | "N") {
        return Err(Hl7Error::new(
            Location::field("PID", 24),
            ErrorCode::TableValueNotFound,
            "not Y or N",
        ));
    }
    let Some(order) = clean(&pid.first(25)) else {
        return Ok(None);
    };
    let n: u8 = order
        .parse()
        .ok()
        .filter(|n| (1..=16).contains(n))
        .ok_or_else(|| {
            Hl7Error::bad_value(Location::field("PID", 25), "must be a number from 1 to 16")
        })?;
    Ok((indicator != "N").then_some(n))
}

/// A date from a TS/DTM value: `YYYY[MM[DD[HHMM[SS[.S…]]]]][±ZZZZ]`. The date is kept to
/// the precision given; the time of day and the offset are checked for shape and ignored.
///
/// # Errors
/// The reason, without the value.
pub fn parse_date(ts: &str) -> Result<PartialDate, &'static str> {
    const SHAPE: &str = "not a date (YYYY, YYYYMM or YYYYMMDD, with an optional time)";
    let ts = ts.trim();
    let (main, offset) = match ts.find(['+', '-']) {
        Some(i) => (&ts[..i], Some(&ts[i + 1..])),
        None => (ts, None),
    };
    if offset.is_some_and(|o| o.len() != 4 || !o.bytes().all(|b| b.is_ascii_digit())) {
        return Err(SHAPE);
    }
    let (digits, fraction) = match main.split_once('.') {
        Some((d, f)) => (d, Some(f)),
        None => (main, None),
    };
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if !all_digits(digits)
        || !matches!(digits.len(), 4 | 6 | 8 | 10 | 12 | 14)
        || fraction
            .is_some_and(|f| f.is_empty() || f.len() > 4 || !all_digits(f) || digits.len() != 14)
    {
        return Err(SHAPE);
    }
    let num = |a: usize, b: usize| digits[a..b].parse::<u16>().unwrap_or(u16::MAX);
    if digits.len() >= 10
        && (num(8, 10) > 23
            || (digits.len() >= 12 && num(10, 12) > 59)
            || (digits.len() == 14 && num(12, 14) > 59))
    {
        return Err("time of day out of range");
    }
    let date = PartialDate {
        year: num(0, 4),
        month: (digits.len() >= 6).then(|| num(4, 6) as u8),
        day: (digits.len() >= 8).then(|| num(6, 8) as u8),
    };
    date.validate().map_err(|_| "not a date of the calendar")?;
    Ok(date)
}

/// PID-8, table 0001: `F`, `M`, `O`, `U`, `A` (ambiguous: other), `N` (not applicable:
/// unknown).
fn parse_sex(v: &str) -> Result<Sex, &'static str> {
    match v.trim().to_ascii_uppercase().as_str() {
        "" | "U" | "N" => Ok(Sex::Unknown),
        "F" => Ok(Sex::Female),
        "M" => Ok(Sex::Male),
        "O" | "A" => Ok(Sex::Other),
        _ => Err("not in table 0001 (F, M, O, U, A, N)"),
    }
}

/// ADT^A40: one PID (the survivor) and one MRG (the retired record) of the same source.
fn merge(msg: &Message, opts: &MappingOptions) -> Result<Merge, Hl7Error> {
    let pid = required(msg, "PID")?;
    let mrg = required(msg, "MRG")?;
    if msg.segments_named("MRG").count() > 1 || msg.segments_named("PID").count() > 1 {
        return Err(Hl7Error::new(
            Location::segment("MRG").in_sequence(2),
            ErrorCode::SegmentSequence,
            "one PID and MRG pair a message; send each merge on its own",
        ));
    }
    let (survivor, _) = record_key(pid, opts)?;
    let at = |c| Location::field("MRG", 1).component(c);
    let retired =
        (1..=mrg.repetitions(1)).find_map(|r| clean(&mrg.get(1, r, 1, 1)).map(|id| (r, id)));
    let Some((r, retired_id)) = retired else {
        return Err(Hl7Error::missing(at(1)).for_record(&survivor));
    };
    let domain = Hd::from_subcomponents(mrg, 1, r, 4);
    if !domain.is_empty() && domain.domain() != survivor.source {
        return Err(Hl7Error::new(
            at(4),
            ErrorCode::UnknownKeyIdentifier,
            "not PID-3's assigning authority: a source merges only its own records",
        )
        .for_record(&survivor));
    }
    check_key_part("local_id", &retired_id)
        .map_err(|e| retarget(&e, at(1)).for_record(&survivor))?;
    if retired_id == survivor.local_id {
        return Err(Hl7Error::bad_value(at(1), "the same record as PID-3").for_record(&survivor));
    }
    Ok(Merge {
        source: survivor.source,
        survivor_local_id: survivor.local_id,
        retired_local_id: retired_id,
    })
}

/// QPD-2, the query tag every query answer echoes.
fn query_tag(qpd: &Segment) -> Result<String, Hl7Error> {
    clean(&qpd.first(2)).ok_or_else(|| Hl7Error::missing(Location::field("QPD", 2)))
}

/// A list of domains (CX with only CX.4) in QPD field `f`.
fn domains(qpd: &Segment, f: usize) -> Result<Vec<Hd>, Hl7Error> {
    (1..=qpd.repetitions(f))
        .map(|r| {
            let hd = Hd::from_subcomponents(qpd, f, r, 4);
            if hd.is_empty() {
                Err(Hl7Error::missing(
                    Location::field("QPD", to_u32(f))
                        .repetition(to_u32(r))
                        .component(4),
                ))
            } else {
                Ok(hd)
            }
        })
        .collect()
}

fn pix_query(msg: &Message) -> Result<PixQuery, Hl7Error> {
    let qpd = required(msg, "QPD")?;
    let query_tag = query_tag(qpd)?;
    let at = |c| Location::field("QPD", 3).component(c);
    let id = clean(&qpd.get(3, 1, 1, 1)).ok_or_else(|| Hl7Error::missing(at(1)))?;
    let domain = Hd::from_subcomponents(qpd, 3, 1, 4);
    if domain.is_empty() {
        return Err(Hl7Error::missing(at(4)));
    }
    let identifier = RecordKey::new(domain.domain(), id);
    check_key_part("source", &identifier.source).map_err(|e| retarget(&e, at(4)))?;
    check_key_part("local_id", &identifier.local_id).map_err(|e| retarget(&e, at(1)))?;
    Ok(PixQuery {
        query_tag,
        identifier,
        domains: domains(qpd, 4)?,
        qpd: qpd.clone(),
    })
}

/// The PID positions a PDQ query may name in QPD-3 (`@PID.5.1.1^SMITH`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Param {
    IdValue,
    IdDomain,
    Family,
    Given,
    Middle,
    BirthDate,
    Sex,
    Street,
    City,
    State,
    PostalCode,
    Country,
    Phone,
    NationalId,
    BirthOrder,
}

/// `@PID.5.1.1` → the parameter. Versions differ in depth (`PID.5.1` in 2.3.1, `PID.5.1.1`
/// from 2.5, where the family name became a component with subcomponents), so trailing
/// `.1`s are optional.
fn param_of(name: &str) -> Option<Param> {
    let name = name.trim().trim_start_matches('@');
    let mut parts = name.split('.');
    if parts.next()? != "PID" {
        return None;
    }
    let nums: Vec<u32> = parts.map(|p| p.parse().ok()).collect::<Option<_>>()?;
    let (f, c, s) = (
        *nums.first()?,
        nums.get(1).copied().unwrap_or(1),
        nums.get(2).copied().unwrap_or(1),
    );
    if nums.len() > 3 || s != 1 && !(f == 3 && c == 4) {
        return None;
    }
    Some(match (f, c) {
        (3, 1) => Param::IdValue,
        (3, 4) => Param::IdDomain,
        (5, 1) => Param::Family,
        (5, 2) => Param::Given,
        (5, 3) => Param::Middle,
        (7, 1) => Param::BirthDate,
        (8, 1) => Param::Sex,
        (11, 1) => Param::Street,
        (11, 3) => Param::City,
        (11, 4) => Param::State,
        (11, 5) => Param::PostalCode,
        (11, 6) => Param::Country,
        (13, 1) | (14, 1) => Param::Phone,
        (19, 1) => Param::NationalId,
        (25, 1) => Param::BirthOrder,
        _ => return None,
    })
}

fn pdq_query(msg: &Message, today: i64) -> Result<PdqQuery, Hl7Error> {
    let qpd = required(msg, "QPD")?;
    let query_tag = query_tag(qpd)?;
    let mut c = Record::default();
    let (mut id_value, mut id_domain) = (None, None);
    let reps = qpd.repetitions(3);
    if reps == 0 {
        return Err(Hl7Error::missing(Location::field("QPD", 3)));
    }
    for r in 1..=reps {
        let at = |comp| {
            Location::field("QPD", 3)
                .repetition(to_u32(r))
                .component(comp)
        };
        let param = param_of(&qpd.get(3, r, 1, 1)).ok_or_else(|| {
            Hl7Error::new(
                at(1),
                ErrorCode::TableValueNotFound,
                "not a supported query parameter (PID-3.1, 3.4, 5.1, 5.2, 5.3, 7, 8, 11.1, 11.3 to 11.6, 13, 14, 19, 25)",
            )
        })?;
        let Some(value) = clean(&qpd.get(3, r, 2, 1)) else {
            continue;
        };
        match param {
            Param::IdValue => id_value = Some(value),
            Param::IdDomain => id_domain = Some(value),
            Param::Family => c.family_name = Some(value),
            Param::Given => c.given_name = Some(value),
            Param::Middle => c.middle_name = Some(value),
            Param::BirthDate => {
                c.birth_date =
                    Some(parse_date(&value).map_err(|reason| Hl7Error::bad_value(at(2), reason))?)
            }
            Param::Sex => {
                c.sex = parse_sex(&value)
                    .map_err(|reason| Hl7Error::new(at(2), ErrorCode::TableValueNotFound, reason))?
            }
            Param::Street => c.address.lines.push(value),
            Param::City => c.address.city = Some(value),
            Param::State => c.address.state = Some(value),
            Param::PostalCode => c.address.postal_code = Some(value),
            Param::Country => c.address.country = Some(value),
            Param::Phone => c.phones.push(value),
            Param::NationalId => c.identifiers.push(Identifier {
                system: NATIONAL_ID_SYSTEM.into(),
                value,
            }),
            Param::BirthOrder => {
                c.multiple_birth_order = Some(
                    value
                        .parse()
                        .ok()
                        .filter(|n| (1..=16).contains(n))
                        .ok_or_else(|| {
                            Hl7Error::bad_value(at(2), "must be a number from 1 to 16")
                        })?,
                )
            }
        }
    }
    match (id_value, id_domain) {
        (Some(value), Some(system)) => c.identifiers.push(Identifier { system, value }),
        (Some(_), None) => {
            return Err(Hl7Error::new(
                Location::field("QPD", 3),
                ErrorCode::RequiredFieldMissing,
                "PID.3.1 needs PID.3.4, the identifier's domain",
            ))
        }
        _ => {}
    }
    c.validate_keyless(today).map_err(|e| {
        let mut h = Hl7Error::from_error(&e);
        h.location = Location::field("QPD", 3);
        h
    })?;
    let limit = match msg
        .segment("RCP")
        .map(|rcp| (rcp.component(2, 1), rcp.component(2, 2)))
    {
        Some((n, unit)) if !n.trim().is_empty() => {
            let n: u32 = n.trim().parse().ok().filter(|&n| n > 0).ok_or_else(|| {
                Hl7Error::bad_value(
                    Location::field("RCP", 2).component(1),
                    "not a positive number",
                )
            })?;
            if !matches!(unit.trim(), "" | "RD") {
                return Err(Hl7Error::new(
                    Location::field("RCP", 2).component(2),
                    ErrorCode::TableValueNotFound,
                    "only RD (records) is supported",
                ));
            }
            Some(n)
        }
        _ => None,
    };
    let continuation = msg.segment("DSC").and_then(|d| clean(&d.first(1)));
    Ok(PdqQuery {
        query_tag,
        criteria: c,
        domains: domains(qpd, 8)?,
        limit,
        continuation,
        qpd: qpd.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::days_from_civil;

    fn today() -> i64 {
        days_from_civil(2026, 1, 1)
    }

    fn read(text: &str) -> Result<Inbound, Box<Rejection>> {
        read_request(text.as_bytes(), &MappingOptions::default(), today())
    }

    fn adt(pid: &str) -> String {
        format!(
            "MSH|^~\\&|ADT1|GOOD HEALTH|EMPI|CITY|20240102103000||ADT^A04^ADT_A01|MSG00001|P|2.5\rEVN|A04|20240102103000\r{pid}\rPV1|1|O\r"
        )
    }

    /// `PID|1||1^^^H||Doe^Jo` with `v` in field `n` (past 5).
    fn pid_at(n: usize, v: &str) -> String {
        format!("PID|1||1^^^H||Doe^Jo{}{v}", "|".repeat(n - 5))
    }

    fn submitted(pid: &str) -> Record {
        match read(&adt(pid)).unwrap().request {
            Request::Submit { record, .. } => record,
            other => panic!("not a submit: {other:?}"),
        }
    }

    fn refused(pid: &str) -> Hl7Error {
        read(&adt(pid)).unwrap_err().error
    }

    #[test]
    fn a_full_pid_maps_to_a_record() {
        let r = submitted(
            "PID|1||MRN123^^^STMARY&1.2.3&ISO^MR~999-22-3333^^^SSA^SS~X9^^^CLINIC^PI~nodomain||O'Brien&Van^Mary^Ann Lee^^Dr^^L~Murphy^Mary^^^^^M||19560314083000+0100|F||2106-3|12 Main St^Apt 4^Springfield^MA^01101^USA^H~PO Box 9^^Boston^MA^02101^USA^M||(413)555-0142^PRN^PH~^NET^Internet^mary@example.org|555-0199^WPN^PH||||||||||Y|2",
        );
        assert_eq!(
            (r.source.as_str(), r.local_id.as_str()),
            ("STMARY", "MRN123")
        );
        assert_eq!(r.family_name.as_deref(), Some("O'Brien"));
        assert_eq!(r.given_name.as_deref(), Some("Mary"));
        assert_eq!(r.middle_name.as_deref(), Some("Ann Lee"));
        assert_eq!(r.previous_family_names, vec!["Murphy".to_string()]);
        assert_eq!(r.birth_date.unwrap().to_string(), "1956-03-14");
        assert_eq!(r.sex, Sex::Female);
        assert_eq!(r.address.lines, vec!["12 Main St", "Apt 4"]);
        assert_eq!(r.address.city.as_deref(), Some("Springfield"));
        assert_eq!(r.address.postal_code.as_deref(), Some("01101"));
        assert_eq!(r.phones, vec!["(413)555-0142", "555-0199"]);
        assert_eq!(r.email.as_deref(), Some("mary@example.org"));
        assert_eq!(r.national_id(), Some("999-22-3333"));
        assert!(r.identifiers.contains(&Identifier {
            system: "CLINIC".into(),
            value: "X9".into()
        }));
        assert_eq!(
            r.identifiers.len(),
            2,
            "the repetition without a domain is left out"
        );
        assert_eq!(r.multiple_birth_order, Some(2));
    }

    #[test]
    fn partial_dates_stay_partial_and_times_are_ignored() {
        for (ts, want) in [
            ("1956", "1956"),
            ("195603", "1956-03"),
            ("19560314", "1956-03-14"),
            ("195603140830", "1956-03-14"),
            ("19560314083015.1234-0500", "1956-03-14"),
            ("19560314^D", "1956-03-14"),
        ] {
            let r = submitted(&format!("PID|1||1^^^H||Doe^Jo||{ts}"));
            assert_eq!(r.birth_date.unwrap().to_string(), want, "{ts}");
        }
    }

    #[test]
    fn universal_id_names_the_source_when_there_is_no_namespace() {
        let r = submitted("PID|1||77^^^&2.16.840.1.113883.19.5&ISO^MR||Doe^Jo");
        assert_eq!(r.source, "2.16.840.1.113883.19.5");
    }

    #[test]
    fn national_id_from_pid19_or_not_at_all() {
        let r = submitted(&pid_at(19, "123-45-6789"));
        assert_eq!(r.national_id(), Some("123-45-6789"));
        let opts = MappingOptions {
            national_id_type: Some("NI".into()),
            national_id_from_pid19: false,
        };
        let text = adt(&pid_at(19, "123-45-6789").replace("||1^^^H", "||AB12^^^NHS^NI~1^^^H"));
        let Request::Submit { record, .. } = read_request(text.as_bytes(), &opts, today())
            .unwrap()
            .request
        else {
            panic!()
        };
        assert_eq!(
            record.key(),
            RecordKey::new("H", "1"),
            "the NI repetition is not the key"
        );
        assert_eq!(record.national_id(), Some("AB12"));
    }

    #[test]
    fn bad_pids_name_the_position_and_never_the_value() {
        let cases: &[(&str, &str, ErrorCode)] = &[
            (
                "PID|1||||Doe^Jo",
                "PID-3.1",
                ErrorCode::RequiredFieldMissing,
            ),
            (
                "PID|1||SECRET1^^^^MR||Doe^Jo",
                "PID-3.4",
                ErrorCode::RequiredFieldMissing,
            ),
            (
                "PID|1||SECRET1^^^A/B||Doe^Jo",
                "PID-3.4",
                ErrorCode::DataType,
            ),
            (
                "PID|1||1^^^H||Doe^Jo||19561314",
                "PID-7",
                ErrorCode::DataType,
            ),
            (
                "PID|1||1^^^H||Doe^Jo||19560230",
                "PID-7",
                ErrorCode::DataType,
            ),
            (
                "PID|1||1^^^H||Doe^Jo||1956-03-14",
                "PID-7",
                ErrorCode::DataType,
            ),
            (
                "PID|1||1^^^H||Doe^Jo||195603142599",
                "PID-7",
                ErrorCode::DataType,
            ),
            (
                "PID|1||1^^^H||Doe^Jo||20990101",
                "PID-7",
                ErrorCode::DataType,
            ),
            (
                "PID|1||1^^^H||Doe^Jo|||SECRETSEX",
                "PID-8",
                ErrorCode::TableValueNotFound,
            ),
            ("PID|1||1^^^H", "PID", ErrorCode::DataType),
        ];
        for (pid, loc, code) in cases {
            let e = refused(pid);
            assert_eq!(
                (e.location.to_string().as_str(), e.code),
                (*loc, *code),
                "{pid}: {e}"
            );
            let text = e.to_string();
            assert!(!text.contains("SECRET") && !text.contains("1956"), "{text}");
            assert_eq!(e.ack_code(), crate::hl7::AckCode::Error);
        }
        for (pid, loc) in [
            (pid_at(24, "SECRET"), "PID-24"),
            (pid_at(24, "Y|99"), "PID-25"),
        ] {
            assert_eq!(refused(&pid).location.to_string(), loc, "{pid}");
        }
        let long = format!("PID|1||1^^^H||{}^Jo", "x".repeat(300));
        let e = refused(&long);
        assert_eq!(e.location.to_string(), "PID-5.1");
        assert_eq!(e.key.as_deref(), Some("H/1"));
        assert!(!e.to_string().contains("xxx"));
    }

    #[test]
    fn message_level_problems_reject() {
        let cases: &[(&str, &str, ErrorCode)] = &[
            (
                "MSH|^~\\&|A|B|C|D|1||ADT^A03|M1|P|2.5\rPID|1||1^^^H||Doe",
                "MSH-9.2",
                ErrorCode::UnsupportedEventCode,
            ),
            (
                "MSH|^~\\&|A|B|C|D|1||ORU^R01|M1|P|2.5\rPID|1||1^^^H||Doe",
                "MSH-9.1",
                ErrorCode::UnsupportedMessageType,
            ),
            (
                "MSH|^~\\&|A|B|C|D|1||QBP^Q99|M1|P|2.5\rQPD|x|t",
                "MSH-9.2",
                ErrorCode::UnsupportedEventCode,
            ),
            (
                "MSH|^~\\&|A|B|C|D|1||ADT^A04|M1|P|2.5\rEVN|A04",
                "PID",
                ErrorCode::SegmentSequence,
            ),
        ];
        for (text, loc, code) in cases {
            let rej = read(text).unwrap_err();
            assert_eq!(
                (rej.error.location.to_string().as_str(), rej.error.code),
                (*loc, *code),
                "{text}"
            );
            assert_eq!(rej.error.ack_code(), crate::hl7::AckCode::Reject, "{text}");
            assert_eq!(rej.header.unwrap().control_id, "M1");
        }
    }

    #[test]
    fn merges_within_one_source() {
        let a40 = |mrg: &str| {
            format!("MSH|^~\\&|A|B|C|D|1||ADT^A40^ADT_A39|M1|P|2.5\rEVN|A40\rPID|1||SURV^^^H^MR||Doe^Jo\r{mrg}\r")
        };
        let m = match read(&a40("MRG|OLD^^^H^MR")).unwrap().request {
            Request::Merge(m) => m,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            m,
            Merge {
                source: "H".into(),
                survivor_local_id: "SURV".into(),
                retired_local_id: "OLD".into()
            }
        );
        // MRG-1.4 may be left out: the source is PID-3's.
        assert!(read(&a40("MRG|OLD")).is_ok());
        for (mrg, loc) in [
            ("MRG|OLD^^^OTHER", "MRG-1.4"),
            ("MRG|SURV^^^H", "MRG-1.1"),
            ("MRG|", "MRG-1.1"),
        ] {
            let e = read(&a40(mrg)).unwrap_err().error;
            assert_eq!(e.location.to_string(), loc, "{mrg}");
            assert_eq!(e.key.as_deref(), Some("H/SURV"));
        }
        let e = read("MSH|^~\\&|A|B|C|D|1||ADT^A40|M1|P|2.5\rPID|1||S^^^H")
            .unwrap_err()
            .error;
        assert_eq!(e.location.to_string(), "MRG");
    }

    #[test]
    fn pix_queries() {
        let q =
            |qpd: &str| format!("MSH|^~\\&|A|B|C|D|1||QBP^Q23^QBP_Q21|M1|P|2.5\r{qpd}\rRCP|I\r");
        let Request::PixQuery(p) = read(&q(
            "QPD|IHE PIX Query|Q1|MRN1^^^H&1.2&ISO^PI|^^^CLINIC~^^^&9.9&ISO",
        ))
        .unwrap()
        .request
        else {
            panic!()
        };
        assert_eq!(p.query_tag, "Q1");
        assert_eq!(p.identifier, RecordKey::new("H", "MRN1"));
        assert_eq!(p.domains.len(), 2);
        assert_eq!(p.domains[1].domain(), "9.9");
        for (qpd, loc) in [
            ("QPD|IHE PIX Query||MRN1^^^H", "QPD-2"),
            ("QPD|IHE PIX Query|Q1|^^^H", "QPD-3.1"),
            ("QPD|IHE PIX Query|Q1|MRN1", "QPD-3.4"),
            ("QPD|IHE PIX Query|Q1|MRN1^^^H|^^^A~X", "QPD-4[2].4"),
        ] {
            let rej = read(&q(qpd)).unwrap_err();
            assert_eq!(rej.error.location.to_string(), loc, "{qpd}");
            assert!(
                rej.query.is_some(),
                "a query's refusal is answered as a query"
            );
        }
    }

    #[test]
    fn query_cancels() {
        let q = |qid: &str| format!("MSH|^~\\&|A|B|C|D|1||QCN^J01^QCN_J01|M1|P|2.5\r{qid}\r");
        let Request::Cancel(c) = read(&q("QID|T9|IHE PDQ Query")).unwrap().request else {
            panic!()
        };
        assert_eq!(c.query_tag, "T9");
        let e = read(&q("QID||IHE PDQ Query")).unwrap_err().error;
        assert_eq!(e.location.to_string(), "QID-1");
        let e = read("MSH|^~\\&|A|B|C|D|1||QCN^J02|M1|P|2.5\rQID|T9").unwrap_err();
        assert_eq!(e.error.code, ErrorCode::UnsupportedEventCode);
    }

    #[test]
    fn pdq_queries() {
        let q = |qpd: &str, tail: &str| {
            format!("MSH|^~\\&|A|B|C|D|1||QBP^Q22^QBP_Q21|M1|P|2.5\r{qpd}\rRCP|I|5^RD\r{tail}")
        };
        let text = q(
            "QPD|IHE PDQ Query|T1|@PID.5.1.1^Doe~@PID.5.2^Jo~@PID.7^1956~@PID.8^F~@PID.3.1^X1~@PID.3.4.1^H~@PID.11.5^01101|||||^^^H",
            "DSC|page2|I\r",
        );
        let Request::PdqQuery(p) = read(&text).unwrap().request else {
            panic!()
        };
        assert_eq!(p.criteria.family_name.as_deref(), Some("Doe"));
        assert_eq!(p.criteria.given_name.as_deref(), Some("Jo"));
        assert_eq!(p.criteria.birth_date.unwrap().to_string(), "1956");
        assert_eq!(p.criteria.sex, Sex::Female);
        assert_eq!(p.criteria.identifiers[0].system, "H");
        assert_eq!(p.criteria.address.postal_code.as_deref(), Some("01101"));
        assert_eq!(p.domains[0].domain(), "H");
        assert_eq!(p.limit, Some(5));
        assert_eq!(p.continuation.as_deref(), Some("page2"));
        assert!(p.criteria.source.is_empty());
        for (qpd, loc) in [
            ("QPD|IHE PDQ Query|T1", "QPD-3"),
            ("QPD|IHE PDQ Query|T1|@PID.6.1^Secret", "QPD-3.1"),
            (
                "QPD|IHE PDQ Query|T1|@PID.5.1^Doe~@PID.7^19561399",
                "QPD-3[2].2",
            ),
            ("QPD|IHE PDQ Query|T1|@PID.3.1^X", "QPD-3"),
        ] {
            let rej = read(&q(qpd, "")).unwrap_err();
            assert_eq!(rej.error.location.to_string(), loc, "{qpd}");
            assert_eq!(rej.query.as_ref().unwrap().0, "T1");
        }
    }
}
