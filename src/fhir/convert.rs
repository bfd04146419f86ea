//! Patient ↔ [`Record`], the `$match` request and its searchset Bundle, the PIXm query and
//! its Parameters, errors as OperationOutcome, and the CapabilityStatement.
//!
//! Identifier systems: a source is written as the URI configured for it, else as
//! `urn:oid:<source>` when the source is an OID (the universal id HL7 v2 feeds name their
//! domain with), else as `urn:empi:source:<source>`; each is read back to the same source.
//! The national id has its own system (a US SSN's by default), the EUID another.

use crate::error::{Error, Result};
use crate::record::{
    check_key_part, Address as RecordAddress, Identifier as RecordIdentifier, PartialDate, Record,
    RecordKey, Sex, NATIONAL_ID_SYSTEM,
};

use super::read;
use super::resources::{
    Address, Bundle, BundleEntry, BundleSearch, CapabilityStatement, ContactPoint, Extension,
    HumanName, Identifier, Implementation, Interaction, Issue, Operation, OperationOutcome,
    Parameter, Parameters, Patient, PatientLink, Reference, Resource, Rest, RestResource, Security,
    Software,
};

/// The match-grade extension of `Bundle.entry.search`.
pub const MATCH_GRADE_URL: &str = "http://hl7.org/fhir/StructureDefinition/match-grade";
/// The prefix of the systems of sources that have no configured URI and are not OIDs.
pub const SOURCE_SYSTEM_PREFIX: &str = "urn:empi:source:";

/// How identifiers and URLs are written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FhirConfig {
    /// The server's base URL, e.g. `https://empi.example.org/fhir` (entries' `fullUrl`).
    pub base_url: String,
    /// The system of EUIDs.
    pub euid_system: String,
    /// The system of the national id.
    pub national_id_system: String,
    /// Sources with their identifier system URIs.
    pub systems: Vec<SourceSystem>,
}

/// A source and the URI of its identifier system.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceSystem {
    /// The source, as records are keyed.
    pub source: String,
    /// Its identifier system URI.
    pub system: String,
}

impl Default for FhirConfig {
    fn default() -> Self {
        FhirConfig {
            base_url: "http://localhost/fhir".into(),
            euid_system: "urn:empi:euid".into(),
            national_id_system: "http://hl7.org/fhir/sid/us-ssn".into(),
            systems: Vec::new(),
        }
    }
}

fn is_oid(s: &str) -> bool {
    !s.is_empty()
        && s.split('.')
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

impl FhirConfig {
    /// The identifier system of a source (or [`NATIONAL_ID_SYSTEM`]).
    pub fn system_of(&self, source: &str) -> String {
        if source == NATIONAL_ID_SYSTEM {
            return self.national_id_system.clone();
        }
        if let Some(s) = self.systems.iter().find(|s| s.source == source) {
            return s.system.clone();
        }
        if is_oid(source) {
            format!("urn:oid:{source}")
        } else {
            format!("{SOURCE_SYSTEM_PREFIX}{source}")
        }
    }

    /// The source an identifier system names ([`NATIONAL_ID_SYSTEM`] for the national id's),
    /// or `None` for a system that names none (the EUID's included).
    pub fn source_of(&self, system: &str) -> Option<String> {
        if system == self.national_id_system {
            return Some(NATIONAL_ID_SYSTEM.into());
        }
        if let Some(s) = self.systems.iter().find(|s| s.system == system) {
            return Some(s.source.clone());
        }
        let source = system
            .strip_prefix("urn:oid:")
            .filter(|s| is_oid(s))
            .or_else(|| system.strip_prefix(SOURCE_SYSTEM_PREFIX))?;
        check_key_part("source", source).ok()?;
        Some(source.to_string())
    }
}

/// The FHIRPath of the Patient element a domain field of [`Record`] comes from (the names
/// [`Record::validate`] uses), or `None` for a name that is not a record field.
pub fn patient_element_of(field: &str) -> Option<&'static str> {
    Some(match field {
        "family_name" | "previous_family_name" => "Patient.name.family",
        "given_name" | "middle_name" => "Patient.name.given",
        "birth_date" => "Patient.birthDate",
        "sex" => "Patient.gender",
        "address_line" => "Patient.address.line",
        "city" => "Patient.address.city",
        "state" => "Patient.address.state",
        "postal_code" => "Patient.address.postalCode",
        "country" => "Patient.address.country",
        "phone" | "email" => "Patient.telecom",
        "identifiers" | "identifier.system" | "identifier.value" | "source" | "local_id" => {
            "Patient.identifier"
        }
        "multiple_birth_order" => "Patient.multipleBirthInteger",
        "record" => "Patient",
        _ => return None,
    })
}

fn invalid(path: String, reason: &'static str) -> Error {
    Error::invalid(path, reason)
}

/// A FHIR date (`YYYY`, `YYYY-MM`, `YYYY-MM-DD`), kept as partial as given.
fn fhir_date(s: &str, path: &str) -> Result<PartialDate> {
    let shape_ok = match s.len() {
        4 | 7 | 10 => s.bytes().enumerate().all(|(i, b)| {
            if i == 4 || i == 7 {
                b == b'-'
            } else {
                b.is_ascii_digit()
            }
        }),
        _ => false,
    };
    if !shape_ok {
        return Err(invalid(
            path.to_string(),
            "not a FHIR date (YYYY, YYYY-MM or YYYY-MM-DD)",
        ));
    }
    PartialDate::parse_iso(s).map_err(|_| invalid(path.to_string(), "not a date of the calendar"))
}

/// A Patient as a record without a key (a `$match` query's), `path` naming the Patient
/// (e.g. `Parameters.parameter[0].resource`), checked like any record
/// ([`Record::validate`], `today` in days since 1970-01-01).
///
/// Read: the `official` or `usual` name (else the first that is not `old` or `maiden`):
/// family, first given, further givens as the middle name; `old` and `maiden` family names
/// as earlier ones; `gender`; `birthDate`; `phone` and `sms` telecoms as phones, the first
/// `email`; the `home` address, else the first; `multipleBirthInteger`; identifiers whose
/// system names a source or the national id (the EUID's are left out: a query by EUID is a
/// read).
///
/// # Errors
/// [`Error::InvalidInput`] naming the element: an identifier without system or value or
/// with a system that names no source, a gender outside the value set, a date that is not
/// one, a birth order outside 1 to 16, or what [`Record::validate`] refuses (named by
/// [`patient_element_of`]).
pub fn patient_to_record(p: &Patient, path: &str, cfg: &FhirConfig, today: i64) -> Result<Record> {
    let at = |e: &str| format!("{path}.{e}");
    let mut r = Record::default();
    for (i, id) in p.identifier.iter().enumerate() {
        let ip = at(&format!("identifier[{i}]"));
        let system = id
            .system
            .as_deref()
            .ok_or_else(|| invalid(format!("{ip}.system"), "missing"))?;
        let value = id
            .value
            .clone()
            .ok_or_else(|| invalid(format!("{ip}.value"), "missing"))?;
        if system == cfg.euid_system {
            continue;
        }
        let source = cfg.source_of(system).ok_or_else(|| {
            invalid(
                format!("{ip}.system"),
                "not a known identifier system (a configured source, urn:oid:…, urn:empi:source:…, or the national id's)",
            )
        })?;
        r.identifiers.push(RecordIdentifier {
            system: source,
            value,
        });
    }
    let use_of = |n: &HumanName| n.use_.clone().unwrap_or_default();
    let primary = p
        .name
        .iter()
        .position(|n| matches!(use_of(n).as_str(), "official" | "usual"))
        .or_else(|| {
            p.name
                .iter()
                .position(|n| !matches!(use_of(n).as_str(), "old" | "maiden"))
        });
    if let Some(i) = primary {
        let n = &p.name[i];
        r.family_name = n.family.clone();
        r.given_name = n.given.first().cloned();
        r.middle_name = (n.given.len() > 1).then(|| n.given[1..].join(" "));
    }
    for (i, n) in p.name.iter().enumerate() {
        if Some(i) != primary && matches!(use_of(n).as_str(), "old" | "maiden") {
            if let Some(f) = &n.family {
                if r.family_name.as_ref() != Some(f) && !r.previous_family_names.contains(f) {
                    r.previous_family_names.push(f.clone());
                }
            }
        }
    }
    r.sex = match p.gender.as_deref() {
        None | Some("unknown") => Sex::Unknown,
        Some("female") => Sex::Female,
        Some("male") => Sex::Male,
        Some("other") => Sex::Other,
        Some(_) => {
            return Err(invalid(
                at("gender"),
                "not one of male, female, other, unknown",
            ))
        }
    };
    if let Some(d) = &p.birth_date {
        r.birth_date = Some(fhir_date(d, &at("birthDate"))?);
    }
    for t in &p.telecom {
        match (t.system.as_deref(), &t.value) {
            (Some("phone" | "sms"), Some(v)) if !r.phones.contains(v) => r.phones.push(v.clone()),
            (Some("email"), Some(v)) if r.email.is_none() => r.email = Some(v.clone()),
            _ => {}
        }
    }
    let home = p
        .address
        .iter()
        .find(|a| a.use_.as_deref() == Some("home"))
        .or_else(|| p.address.first());
    if let Some(a) = home {
        r.address = RecordAddress {
            lines: a.line.clone(),
            city: a.city.clone(),
            state: a.state.clone(),
            postal_code: a.postal_code.clone(),
            country: a.country.clone(),
        };
    }
    if p.multiple_birth_boolean.is_some() && p.multiple_birth_integer.is_some() {
        return Err(invalid(
            at("multipleBirth[x]"),
            "only one of multipleBirthBoolean and multipleBirthInteger",
        ));
    }
    if let Some(n) = p.multiple_birth_integer {
        r.multiple_birth_order = Some(
            u8::try_from(n)
                .ok()
                .filter(|n| (1..=16).contains(n))
                .ok_or_else(|| invalid(at("multipleBirthInteger"), "must be 1 to 16"))?,
        );
    }
    r.validate_keyless(today).map_err(|e| match e {
        Error::InvalidInput { field, reason, .. } => {
            let element = patient_element_of(&field).unwrap_or("Patient");
            let element = element.replacen("Patient", path, 1);
            Error::invalid(element, reason)
        }
        other => other,
    })?;
    Ok(r)
}

/// A person as the door shows it: the EUID, its golden demographics, the records linked to
/// it, and the EUIDs merged into it or it into.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FhirPerson {
    /// The EUID (Patient.id).
    pub euid: String,
    /// The golden view, as a record whose key is not used.
    pub demographics: Record,
    /// The linked source records.
    pub records: Vec<RecordKey>,
    /// EUIDs merged into this one (`link` of type `replaces`).
    pub replaces: Vec<String>,
    /// The EUID this one was merged into (`link` of type `replaced-by`; the Patient is then
    /// not `active`).
    pub replaced_by: Option<String>,
}

fn patient_ref(euid: &str) -> Reference {
    Reference {
        reference: format!("Patient/{euid}"),
    }
}

/// The Patient of a person: id the EUID; identifiers the EUID (`official`), every linked
/// record (`usual`) and the golden view's identifiers; the golden demographics; `link` for
/// merges.
pub fn person_to_patient(person: &FhirPerson, cfg: &FhirConfig) -> Patient {
    let d = &person.demographics;
    let ident = |use_: &str, system: String, value: &str| Identifier {
        use_: Some(use_.into()),
        system: Some(system),
        value: Some(value.into()),
    };
    let mut identifier = vec![ident("official", cfg.euid_system.clone(), &person.euid)];
    identifier.extend(
        person
            .records
            .iter()
            .map(|k| ident("usual", cfg.system_of(&k.source), &k.local_id)),
    );
    identifier.extend(d.identifiers.iter().map(|i| Identifier {
        use_: None,
        system: Some(cfg.system_of(&i.system)),
        value: Some(i.value.clone()),
    }));
    let mut name = Vec::new();
    if d.family_name.is_some() || d.given_name.is_some() || d.middle_name.is_some() {
        name.push(HumanName {
            use_: Some("official".into()),
            family: d.family_name.clone(),
            given: d
                .given_name
                .iter()
                .chain(d.middle_name.iter())
                .cloned()
                .collect(),
        });
    }
    name.extend(d.previous_family_names.iter().map(|f| HumanName {
        use_: Some("old".into()),
        family: Some(f.clone()),
        given: Vec::new(),
    }));
    let mut telecom: Vec<ContactPoint> = d
        .phones
        .iter()
        .map(|p| ContactPoint {
            system: Some("phone".into()),
            value: Some(p.clone()),
            use_: None,
        })
        .collect();
    telecom.extend(d.email.iter().map(|e| ContactPoint {
        system: Some("email".into()),
        value: Some(e.clone()),
        use_: None,
    }));
    let a = &d.address;
    let address = if a.is_empty() {
        Vec::new()
    } else {
        vec![Address {
            use_: Some("home".into()),
            line: a.lines.clone(),
            city: a.city.clone(),
            state: a.state.clone(),
            postal_code: a.postal_code.clone(),
            country: a.country.clone(),
        }]
    };
    let mut link: Vec<PatientLink> = person
        .replaces
        .iter()
        .map(|e| PatientLink {
            other: patient_ref(e),
            type_: "replaces".into(),
        })
        .collect();
    link.extend(person.replaced_by.iter().map(|e| PatientLink {
        other: patient_ref(e),
        type_: "replaced-by".into(),
    }));
    Patient {
        id: Some(person.euid.clone()),
        identifier,
        active: Some(person.replaced_by.is_none()),
        name,
        telecom,
        gender: match d.sex {
            Sex::Unknown => None,
            s => Some(s.as_str().to_string()),
        },
        birth_date: d.birth_date.map(|b| b.to_string()),
        address,
        multiple_birth_boolean: None,
        multiple_birth_integer: d.multiple_birth_order.map(i64::from),
        link,
    }
}

/// What `Patient/$match` asks.
#[derive(Debug, Clone, PartialEq)]
pub struct MatchRequest {
    /// The patient to match, as a record without a key.
    pub record: Record,
    /// `onlyCertainMatches`: answer only matches graded certain.
    pub only_certain_matches: bool,
    /// `count`: at most this many matches.
    pub count: Option<u32>,
}

/// Reads the body of `POST Patient/$match`: a Parameters resource with one `resource` (a
/// Patient), and optionally `onlyCertainMatches` (boolean) and `count` (positive integer).
///
/// # Errors
/// [`Error::InvalidInput`] naming the element: malformed JSON (`body`), another resource
/// type, a missing or repeated `resource`, an unknown parameter, a wrong value type, or a
/// Patient refused by [`patient_to_record`].
pub fn read_match_request(body: &[u8], cfg: &FhirConfig, today: i64) -> Result<MatchRequest> {
    let params = read::parameters(&read::parse_json(body)?)?;
    let mut record = None;
    let mut only_certain_matches = None;
    let mut count = None;
    for (i, p) in params.parameter.iter().enumerate() {
        let pp = format!("Parameters.parameter[{i}]");
        let twice = || invalid(format!("{pp}.name"), "given twice");
        let wrong = |what| invalid(pp.clone(), what);
        match p.name.as_str() {
            "resource" => {
                let Some(Resource::Patient(patient)) = p.resource.as_deref() else {
                    return Err(wrong("expected a Patient in resource"));
                };
                if record.is_some() {
                    return Err(twice());
                }
                record = Some(patient_to_record(
                    patient,
                    &format!("{pp}.resource"),
                    cfg,
                    today,
                )?);
            }
            "onlyCertainMatches" => {
                let b = p
                    .value_boolean
                    .ok_or_else(|| wrong("expected valueBoolean"))?;
                if only_certain_matches.replace(b).is_some() {
                    return Err(twice());
                }
            }
            "count" => {
                let n = p
                    .value_integer
                    .and_then(|n| u32::try_from(n).ok())
                    .filter(|&n| n > 0)
                    .ok_or_else(|| wrong("expected a positive valueInteger"))?;
                if count.replace(n).is_some() {
                    return Err(twice());
                }
            }
            _ => {
                return Err(invalid(
                    format!("{pp}.name"),
                    "not a parameter of $match (resource, onlyCertainMatches, count)",
                ))
            }
        }
    }
    Ok(MatchRequest {
        record: record
            .ok_or_else(|| invalid("Parameters.parameter".into(), "no resource parameter"))?,
        only_certain_matches: only_certain_matches.unwrap_or(false),
        count,
    })
}

/// The match-grade extension's codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MatchGrade {
    /// `certain`: would be linked automatically.
    Certain,
    /// `probable`: likely the same person.
    Probable,
    /// `possible`: could be, needs review.
    Possible,
    /// `certainly-not`: known not to match.
    CertainlyNot,
}

impl MatchGrade {
    /// The extension's code.
    pub fn code(self) -> &'static str {
        match self {
            MatchGrade::Certain => "certain",
            MatchGrade::Probable => "probable",
            MatchGrade::Possible => "possible",
            MatchGrade::CertainlyNot => "certainly-not",
        }
    }
}

/// One `$match` answer.
#[derive(Debug, Clone, PartialEq)]
pub struct MatchCandidate {
    /// The person.
    pub person: FhirPerson,
    /// 0 to 1 (`search.score`).
    pub score: f64,
    /// The grade.
    pub grade: MatchGrade,
}

/// A score as FHIR decimal: within 0 and 1, four decimals.
fn score(x: f64) -> f64 {
    if x.is_finite() {
        (x.clamp(0.0, 1.0) * 10_000.0).round() / 10_000.0
    } else {
        0.0
    }
}

/// The `$match` answer: a searchset Bundle, one entry a candidate in the order given, each
/// with `search.mode` `match`, `search.score` and the match-grade extension.
pub fn match_bundle(candidates: &[MatchCandidate], cfg: &FhirConfig) -> Resource {
    let base = cfg.base_url.trim_end_matches('/');
    Resource::Bundle(Bundle {
        type_: "searchset".into(),
        total: candidates.len() as u64,
        entry: candidates
            .iter()
            .map(|c| BundleEntry {
                full_url: format!("{base}/Patient/{}", c.person.euid),
                resource: Resource::Patient(person_to_patient(&c.person, cfg)),
                search: BundleSearch {
                    extension: vec![Extension {
                        url: MATCH_GRADE_URL.into(),
                        value_code: c.grade.code().into(),
                    }],
                    mode: "match".into(),
                    score: score(c.score),
                },
            })
            .collect(),
    })
}

/// What `Patient/$ihe-pix` (IHE PIXm, ITI-83) asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PixmQuery {
    /// `sourceIdentifier` as a record key.
    pub source_identifier: RecordKey,
    /// `targetSystem`s as sources (empty: all); the EUID's system is kept as itself.
    pub target_systems: Vec<String>,
}

/// Reads the query parameters of `GET Patient/$ihe-pix` (already split and percent-decoded):
/// `sourceIdentifier=system|value` once, `targetSystem` any number of times (or
/// comma-separated). Other parameters (`_format`) are ignored.
///
/// # Errors
/// [`Error::InvalidInput`] naming `sourceIdentifier` or `targetSystem`: missing, not
/// `system|value`, a system that names no source (PIXm answers these with 400, or 403 for
/// a target system that is not known: see [`pixm_unknown_target_system`]).
pub fn read_pixm_query(params: &[(String, String)], cfg: &FhirConfig) -> Result<PixmQuery> {
    let mut source = None;
    let mut targets = Vec::new();
    for (name, value) in params {
        match name.as_str() {
            "sourceIdentifier" => {
                let f = || "sourceIdentifier".to_string();
                if source.is_some() {
                    return Err(invalid(f(), "given twice"));
                }
                let (system, id) = value
                    .split_once('|')
                    .filter(|(s, v)| !s.is_empty() && !v.is_empty())
                    .ok_or_else(|| invalid(f(), "expected system|value"))?;
                let src = cfg
                    .source_of(system)
                    .filter(|s| s != NATIONAL_ID_SYSTEM)
                    .ok_or_else(|| invalid(f(), "the system names no source"))?;
                check_key_part("sourceIdentifier", id)?;
                source = Some(RecordKey::new(src, id));
            }
            "targetSystem" => {
                for system in value.split(',').filter(|s| !s.is_empty()) {
                    if system == cfg.euid_system {
                        targets.push(system.to_string());
                        continue;
                    }
                    targets.push(cfg.source_of(system).ok_or_else(|| {
                        invalid("targetSystem".into(), "the system names no source")
                    })?);
                }
            }
            _ => {}
        }
    }
    Ok(PixmQuery {
        source_identifier: source.ok_or_else(|| invalid("sourceIdentifier".into(), "missing"))?,
        target_systems: targets,
    })
}

/// The PIXm answer: a `targetIdentifier` for each of the person's records in the target
/// systems (all when none were asked), the queried one left out, and a `targetId`
/// reference to the person's Patient (the EUID, also as a `targetIdentifier` when its
/// system is a target).
pub fn pixm_parameters(person: &FhirPerson, query: &PixmQuery, cfg: &FhirConfig) -> Resource {
    let wanted =
        |s: &str| query.target_systems.is_empty() || query.target_systems.iter().any(|t| t == s);
    let identifier = |system: String, value: &str| Parameter {
        name: "targetIdentifier".into(),
        value_identifier: Some(Identifier {
            use_: None,
            system: Some(system),
            value: Some(value.into()),
        }),
        ..Parameter::default()
    };
    let mut parameter: Vec<Parameter> = person
        .records
        .iter()
        .filter(|k| **k != query.source_identifier && wanted(&k.source))
        .map(|k| identifier(cfg.system_of(&k.source), &k.local_id))
        .collect();
    if query.target_systems.contains(&cfg.euid_system) {
        parameter.push(identifier(cfg.euid_system.clone(), &person.euid));
    }
    parameter.push(Parameter {
        name: "targetId".into(),
        value_reference: Some(patient_ref(&person.euid)),
        ..Parameter::default()
    });
    Resource::Parameters(Parameters { parameter })
}

/// An error answer: the HTTP status and the OperationOutcome.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// The HTTP status.
    pub status: u16,
    /// The OperationOutcome.
    pub resource: Resource,
}

/// An OperationOutcome with one error issue.
pub fn outcome(status: u16, code: &str, diagnostics: &str, expression: Option<&str>) -> Outcome {
    Outcome {
        status,
        resource: Resource::OperationOutcome(OperationOutcome {
            issue: vec![Issue {
                severity: "error".into(),
                code: code.into(),
                diagnostics: Some(diagnostics.into()),
                expression: expression.map(str::to_string).into_iter().collect(),
            }],
        }),
    }
}

/// PIXm's answer to a `targetSystem` that is not known: 403 (ITI-83).
pub fn pixm_unknown_target_system() -> Outcome {
    outcome(
        403,
        "code-invalid",
        "targetSystem: not a known system",
        Some("targetSystem"),
    )
}

/// The answer to an error of the library: invalid input 400 (`structure` for JSON that
/// does not parse, else `invalid`, with the element as the expression: a FHIRPath the door
/// named, or the Patient element of a record field), denied 403 (`forbidden`), not found
/// 404, conflict 409, storage 503 (`transient`), anything else 500 with diagnostics that
/// reveal nothing of the server's internals.
pub fn outcome_of(e: &Error) -> Outcome {
    match e {
        Error::InvalidInput { field, reason, .. } => {
            let diagnostics = format!("{field}: {reason}");
            if field == "body" {
                return outcome(400, "structure", &diagnostics, None);
            }
            let element = if field.starts_with(|c: char| c.is_ascii_uppercase()) {
                Some(field.to_string())
            } else {
                patient_element_of(field).map(str::to_string)
            };
            let code = if reason == "missing" {
                "required"
            } else {
                "invalid"
            };
            outcome(400, code, &diagnostics, element.as_deref())
        }
        Error::NotFound { what, .. } => {
            outcome(404, "not-found", &format!("{what} not found"), None)
        }
        Error::Conflict(_) | Error::Stale(_) => {
            outcome(409, "conflict", "conflicts with the current state", None)
        }
        Error::Denied(_) => outcome(403, "forbidden", "not permitted for this caller", None),
        Error::Storage(_) => outcome(503, "transient", "storage unavailable; retry later", None),
        _ => outcome(
            500,
            "exception",
            "the server could not process the request",
            None,
        ),
    }
}

/// What the server supports: Patient read, `$match` and `$ihe-pix`, JSON, Bearer tokens.
/// `date` is `YYYY-MM-DD`.
pub fn capability_statement(version: &str, date: &str, cfg: &FhirConfig) -> Resource {
    let op = |name: &str, definition: &str| Operation {
        name: name.into(),
        definition: definition.into(),
    };
    Resource::CapabilityStatement(CapabilityStatement {
        status: "active".into(),
        date: date.into(),
        kind: "instance".into(),
        software: Software {
            name: "empi".into(),
            version: version.into(),
        },
        implementation: Implementation {
            description: "empi enterprise master patient index".into(),
            url: cfg.base_url.clone(),
        },
        fhir_version: "4.0.1".into(),
        format: vec!["json".into()],
        rest: vec![Rest {
            mode: "server".into(),
            security: Security {
                cors: false,
                description: "Bearer tokens as for the gRPC API (Authorization: Bearer …)".into(),
            },
            resource: vec![RestResource {
                type_: "Patient".into(),
                interaction: vec![Interaction {
                    code: "read".into(),
                }],
                operation: vec![
                    op(
                        "match",
                        "http://hl7.org/fhir/OperationDefinition/Patient-match",
                    ),
                    op(
                        "ihe-pix",
                        "https://profiles.ihe.net/ITI/PIXm/OperationDefinition/IHE.PIXm.pix",
                    ),
                ],
            }],
        }],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::days_from_civil;

    fn today() -> i64 {
        days_from_civil(2026, 1, 1)
    }

    fn cfg() -> FhirConfig {
        FhirConfig {
            systems: vec![SourceSystem {
                source: "STMARY".into(),
                system: "https://stmary.example/mrn".into(),
            }],
            ..FhirConfig::default()
        }
    }

    fn match_body(patient: &str, extra: &str) -> String {
        format!(
            r#"{{"resourceType": "Parameters", "parameter": [{{"name": "resource", "resource": {patient}}}{extra}]}}"#
        )
    }

    fn err(body: &str) -> String {
        read_match_request(body.as_bytes(), &cfg(), today())
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn systems_round_trip() {
        let c = cfg();
        for source in [
            "STMARY",
            "1.2.840.114350",
            "county-general",
            NATIONAL_ID_SYSTEM,
        ] {
            assert_eq!(
                c.source_of(&c.system_of(source)).as_deref(),
                Some(source),
                "{source}"
            );
        }
        assert_eq!(c.system_of("1.2.3"), "urn:oid:1.2.3");
        assert_eq!(c.source_of("http://unknown.example/x"), None);
        assert_eq!(c.source_of("urn:oid:1.x"), None);
        assert_eq!(c.source_of(&c.euid_system), None);
    }

    #[test]
    fn a_match_request_reads_into_a_keyless_record() {
        let body = match_body(
            r#"{"resourceType": "Patient",
                "identifier": [{"system": "http://hl7.org/fhir/sid/us-ssn", "value": "999-22-3333"},
                               {"system": "https://stmary.example/mrn", "value": "MRN1"},
                               {"system": "urn:empi:euid", "value": "E0000000001"}],
                "name": [{"use": "maiden", "family": "Murphy"},
                         {"use": "official", "family": "O'Brien", "given": ["Mary", "Ann", "Lee"]}],
                "telecom": [{"system": "phone", "value": "413-555-0142"}, {"system": "email", "value": "m@example.org"},
                            {"system": "fax", "value": "1"}],
                "gender": "female", "birthDate": "1956-03",
                "address": [{"use": "work", "city": "Boston"}, {"use": "home", "line": ["12 Main St"], "city": "Springfield", "postalCode": "01101"}],
                "multipleBirthInteger": 2}"#,
            r#", {"name": "onlyCertainMatches", "valueBoolean": true}, {"name": "count", "valueInteger": 5}"#,
        );
        let m = read_match_request(body.as_bytes(), &cfg(), today()).unwrap();
        assert!(m.only_certain_matches);
        assert_eq!(m.count, Some(5));
        let r = m.record;
        assert!(r.source.is_empty() && r.local_id.is_empty());
        assert_eq!(r.national_id(), Some("999-22-3333"));
        assert_eq!(
            r.identifiers[1],
            RecordIdentifier {
                system: "STMARY".into(),
                value: "MRN1".into()
            }
        );
        assert_eq!(
            r.identifiers.len(),
            2,
            "the EUID is not a record identifier"
        );
        assert_eq!(r.family_name.as_deref(), Some("O'Brien"));
        assert_eq!(r.middle_name.as_deref(), Some("Ann Lee"));
        assert_eq!(r.previous_family_names, vec!["Murphy".to_string()]);
        assert_eq!(r.birth_date.unwrap().to_string(), "1956-03");
        assert_eq!(r.sex, Sex::Female);
        assert_eq!(r.phones, vec!["413-555-0142".to_string()]);
        assert_eq!(r.email.as_deref(), Some("m@example.org"));
        assert_eq!(r.address.city.as_deref(), Some("Springfield"));
        assert_eq!(r.multiple_birth_order, Some(2));
    }

    #[test]
    fn bad_match_requests_name_the_element() {
        let p = |body: &str| match_body(&format!(r#"{{"resourceType": "Patient", {body}}}"#), "");
        let r0 = "Parameters.parameter[0].resource";
        let cases = [
            (p(r#""birthDate": "1956-02-30""#), format!("{r0}.birthDate: not a date of the calendar")),
            (p(r#""birthDate": "19560214""#), format!("{r0}.birthDate: not a FHIR date (YYYY, YYYY-MM or YYYY-MM-DD)")),
            (p(r#""birthDate": "2999-01-01""#), format!("{r0}.birthDate: in the future")),
            (p(r#""gender": "SECRET""#), format!("{r0}.gender: not one of male, female, other, unknown")),
            (p(r#""identifier": [{"value": "SECRET"}]"#), format!("{r0}.identifier[0].system: missing")),
            (
                p(r#""identifier": [{"system": "http://x.example", "value": "SECRET"}]"#),
                format!("{r0}.identifier[0].system: not a known identifier system (a configured source, urn:oid:…, urn:empi:source:…, or the national id's)"),
            ),
            (p(r#""multipleBirthInteger": 40"#), format!("{r0}.multipleBirthInteger: must be 1 to 16")),
            (p(r#""multipleBirthInteger": 1, "multipleBirthBoolean": true"#), format!("{r0}.multipleBirth[x]: only one of multipleBirthBoolean and multipleBirthInteger")),
            (p(&format!(r#""name": [{{"family": "{}"}}]"#, "SECRET".repeat(50))), format!("{r0}.name.family: longer than 256 bytes")),
            (p(r#""gender": "female""#).replace(r#""gender": "female""#, r#""text": {}"#), format!("{r0}: no demographic field is present")),
            (match_body(r#"{"resourceType": "Patient", "gender": "male"}"#, r#", {"name": "count", "valueInteger": 0}"#), "Parameters.parameter[1]: expected a positive valueInteger".into()),
            (match_body(r#"{"resourceType": "Patient", "gender": "male"}"#, r#", {"name": "limit", "valueInteger": 1}"#), "Parameters.parameter[1].name: not a parameter of $match (resource, onlyCertainMatches, count)".into()),
            (match_body(r#"{"resourceType": "Patient", "gender": "male"}"#, r#", {"name": "resource", "resource": {"resourceType": "Patient"}}"#), "Parameters.parameter[1].name: given twice".into()),
            (r#"{"resourceType": "Parameters", "parameter": [{"name": "count", "valueInteger": 3}]}"#.into(), "Parameters.parameter: no resource parameter".into()),
            (r#"{"resourceType": "Parameters", "parameter": [{"name": "resource"}]}"#.into(), "Parameters.parameter[0]: expected a Patient in resource".into()),
            (r#"{"resourceType": "Patient", "gender": "male"}"#.into(), "resourceType: expected Parameters".into()),
        ];
        for (body, want) in cases {
            let got = err(&body);
            assert_eq!(got, want, "{body}");
            assert!(!got.contains("SECRET") && !got.contains("1956"), "{got}");
        }
    }

    fn person() -> FhirPerson {
        FhirPerson {
            euid: "E0000000042".into(),
            demographics: Record {
                given_name: Some("Mary".into()),
                middle_name: Some("Ann".into()),
                family_name: Some("O'Brien".into()),
                previous_family_names: vec!["Murphy".into()],
                birth_date: Some(PartialDate {
                    year: 1956,
                    month: Some(3),
                    day: None,
                }),
                sex: Sex::Female,
                identifiers: vec![RecordIdentifier {
                    system: NATIONAL_ID_SYSTEM.into(),
                    value: "999-22-3333".into(),
                }],
                ..Record::default()
            },
            records: vec![
                RecordKey::new("STMARY", "MRN1"),
                RecordKey::new("1.2.3", "77"),
            ],
            replaces: vec!["E0000000007".into()],
            replaced_by: None,
        }
    }

    #[test]
    fn a_person_reads_back_as_the_same_demographics() {
        let p = person_to_patient(&person(), &cfg());
        assert_eq!(p.id.as_deref(), Some("E0000000042"));
        assert_eq!(p.identifier.len(), 4);
        assert_eq!(p.identifier[2].system.as_deref(), Some("urn:oid:1.2.3"));
        assert_eq!(p.link[0].type_, "replaces");
        let json = Resource::Patient(p).to_json();
        let back = read::patient(&read::parse_json(json.as_bytes()).unwrap(), "Patient").unwrap();
        let r = patient_to_record(&back, "Patient", &cfg(), today()).unwrap();
        let d = person().demographics;
        assert_eq!(
            (
                r.given_name.clone(),
                r.middle_name.clone(),
                r.family_name.clone()
            ),
            (d.given_name, d.middle_name, d.family_name)
        );
        assert_eq!(r.previous_family_names, d.previous_family_names);
        assert_eq!(r.birth_date, d.birth_date);
        assert_eq!(r.national_id(), Some("999-22-3333"));
        assert!(r.identifiers.contains(&RecordIdentifier {
            system: "1.2.3".into(),
            value: "77".into()
        }));
    }

    #[test]
    fn match_bundles_and_pixm_answers() {
        let b = match_bundle(
            &[MatchCandidate {
                person: person(),
                score: 0.987_654,
                grade: MatchGrade::Certain,
            }],
            &cfg(),
        );
        let v: serde_json::Value = serde_json::from_str(&b.to_json()).unwrap();
        assert_eq!(v["resourceType"], "Bundle");
        assert_eq!(v["type"], "searchset");
        assert_eq!(v["total"], 1);
        assert_eq!(
            v["entry"][0]["fullUrl"],
            "http://localhost/fhir/Patient/E0000000042"
        );
        assert_eq!(v["entry"][0]["search"]["score"], 0.9877);
        assert_eq!(
            v["entry"][0]["search"]["extension"][0]["valueCode"],
            "certain"
        );
        assert_eq!(v["entry"][0]["resource"]["birthDate"], "1956-03");

        let params = |q: &[(&str, &str)]| {
            q.iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect::<Vec<_>>()
        };
        let q = read_pixm_query(
            &params(&[
                ("sourceIdentifier", "https://stmary.example/mrn|MRN1"),
                ("targetSystem", "urn:oid:1.2.3,urn:empi:euid"),
            ]),
            &cfg(),
        )
        .unwrap();
        assert_eq!(q.source_identifier, RecordKey::new("STMARY", "MRN1"));
        let v: serde_json::Value =
            serde_json::from_str(&pixm_parameters(&person(), &q, &cfg()).to_json()).unwrap();
        assert_eq!(
            v["parameter"][0]["valueIdentifier"]["system"],
            "urn:oid:1.2.3"
        );
        assert_eq!(v["parameter"][1]["valueIdentifier"]["value"], "E0000000042");
        assert_eq!(
            v["parameter"][2]["valueReference"]["reference"],
            "Patient/E0000000042"
        );
        for (q, want) in [
            (params(&[]), "sourceIdentifier: missing"),
            (
                params(&[("sourceIdentifier", "MRN1")]),
                "sourceIdentifier: expected system|value",
            ),
            (
                params(&[("sourceIdentifier", "http://x.example|MRN1")]),
                "sourceIdentifier: the system names no source",
            ),
            (
                params(&[
                    ("sourceIdentifier", "urn:oid:1.2|M"),
                    ("targetSystem", "http://x.example"),
                ]),
                "targetSystem: the system names no source",
            ),
        ] {
            assert_eq!(read_pixm_query(&q, &cfg()).unwrap_err().to_string(), want);
        }
    }

    #[test]
    fn errors_become_operation_outcomes() {
        let o = outcome_of(&Error::invalid(
            "Parameters.parameter[0].resource.birthDate",
            "in the future",
        ));
        assert_eq!(o.status, 400);
        let v: serde_json::Value = serde_json::from_str(&o.resource.to_json()).unwrap();
        assert_eq!(v["issue"][0]["code"], "invalid");
        assert_eq!(
            v["issue"][0]["expression"][0],
            "Parameters.parameter[0].resource.birthDate"
        );
        assert_eq!(
            outcome_of(&Error::invalid("body", "not valid JSON")).status,
            400
        );
        let o = outcome_of(&Error::invalid("birth_date", "in the future"));
        let v: serde_json::Value = serde_json::from_str(&o.resource.to_json()).unwrap();
        assert_eq!(v["issue"][0]["expression"][0], "Patient.birthDate");
        let nf = outcome_of(&Error::NotFound {
            what: "person",
            id: "E1".into(),
        });
        assert_eq!(nf.status, 404);
        let st = outcome_of(&Error::Storage("sled: /var/lib/x".into()));
        assert_eq!(st.status, 503);
        assert!(!st.resource.to_json().contains("sled"));
    }
}
