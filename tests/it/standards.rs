//! Conformance fixtures of the standards codecs (`empi::hl7`, `empi::fhir`), through their
//! public API as the door will call them.
//!
//! `tests/fixtures/hl7/cases.json` lists HL7 v2 messages in the shapes of IHE ITI-8, ITI-9
//! and ITI-21 with what each must map to and the answer it must get; the application's part
//! (a PIX or PDQ result) is given there too. `tests/fixtures/fhir/` holds `$match` bodies,
//! good and bad. Every answer is compared with its file under `expected/`; those files are
//! what `tests/standards/validate.py` checks with independent parsers (the PyPI `hl7`
//! package, and `fhir.resources`' R4 models). After a deliberate change of an answer,
//! `EMPI_BLESS=1 cargo test --test it standards` rewrites them; review the diff.
//!
//! Also here: the bad-input table (truncated frames, missing MSH, wrong separators, a 1 MiB
//! segment, unknown types, invalid dates, malformed JSON, wrong resource types), each
//! refused with a clear answer, and the same patient read through HL7 v2 and FHIR giving
//! the same demographics.

use std::path::{Path, PathBuf};

use empi::fhir::{self, FhirConfig, FhirPerson, MatchCandidate, MatchGrade, Resource};
use empi::hl7::{
    self, mllp, AckCode, Cx, Hd, MappingOptions, PdqCandidate, PdqPage, PixAnswer, Request,
    Responder,
};
use empi::record::{days_from_civil, Record, RecordKey};
use serde_json::Value;

fn fixtures(sub: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(sub)
}

fn today() -> i64 {
    days_from_civil(2026, 1, 15)
}

fn responder() -> Responder {
    Responder {
        application: Hd {
            namespace_id: "EMPI".into(),
            universal_id: "1.3.6.1.4.1.21367.3000.1.99".into(),
            universal_id_type: "ISO".into(),
        },
        facility: Hd::named("CITY_HOSP"),
        control_id: "EMPI-ACK-1".into(),
        time_ms: 1_768_478_400_000,
    }
}

/// Compares `got` with the file at `path`, or writes it when `EMPI_BLESS` is set.
fn golden(path: &Path, got: &[u8]) {
    if std::env::var_os("EMPI_BLESS").is_some() {
        std::fs::write(path, got).unwrap();
        return;
    }
    let want = std::fs::read(path)
        .unwrap_or_else(|e| panic!("{}: {e} (EMPI_BLESS=1 writes it)", path.display()));
    assert!(
        want == got,
        "{} differs:\n--- expected\n{}\n--- got\n{}",
        path.display(),
        String::from_utf8_lossy(&want),
        String::from_utf8_lossy(got)
    );
}

/// An HL7 answer as stored: its bytes, with CR segment ends as LF for people to read.
fn stored(answer: &hl7::Outbound) -> Vec<u8> {
    answer
        .to_bytes()
        .into_iter()
        .map(|b| if b == b'\r' { b'\n' } else { b })
        .collect()
}

/// A record from a partial JSON object (fields as `Record` serializes them).
fn record_from(partial: &Value) -> Record {
    let mut full = serde_json::to_value(Record::default()).unwrap();
    for (k, v) in partial.as_object().unwrap() {
        full[k] = v.clone();
    }
    serde_json::from_value(full).unwrap()
}

fn cx_list(v: &Value) -> Vec<Cx> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let s = |i: usize| c[i].as_str().unwrap().to_string();
            Cx {
                id: s(0),
                authority: Hd {
                    namespace_id: s(1),
                    universal_id: s(2),
                    universal_id_type: if s(2).is_empty() {
                        String::new()
                    } else {
                        "ISO".into()
                    },
                },
                type_code: s(3),
            }
        })
        .collect()
}

#[test]
fn hl7_conformance_cases() {
    let dir = fixtures("hl7");
    let cases: Value =
        serde_json::from_slice(&std::fs::read(dir.join("cases.json")).unwrap()).unwrap();
    let cases = cases["cases"].as_array().unwrap();
    assert!(cases.len() >= 15);
    for case in cases {
        let name = case["input"].as_str().unwrap();
        let input = std::fs::read(dir.join(name)).unwrap();
        let r = responder();
        let answer = match hl7::read_request(&input, &MappingOptions::default(), today()) {
            Ok(inbound) => {
                assert!(
                    case.get("error").is_none() || case.get("pix").is_some(),
                    "{name} was read"
                );
                match &inbound.request {
                    Request::Submit { record, .. } => {
                        let got = serde_json::to_value(record).unwrap();
                        for (k, v) in case["record"].as_object().expect(name) {
                            assert_eq!(&got[k], v, "{name}: {k}");
                        }
                        hl7::ack(&inbound.header, &[], &r)
                    }
                    Request::Merge(m) => {
                        let want = &case["merge"];
                        assert_eq!(m.source, want["source"].as_str().unwrap(), "{name}");
                        assert_eq!(
                            m.survivor_local_id,
                            want["survivor_local_id"].as_str().unwrap()
                        );
                        assert_eq!(
                            m.retired_local_id,
                            want["retired_local_id"].as_str().unwrap()
                        );
                        hl7::ack(&inbound.header, &[], &r)
                    }
                    Request::PixQuery(q) => {
                        let answer = match &case["pix"] {
                            Value::String(s) if s == "unknown-identifier" => {
                                PixAnswer::UnknownIdentifier
                            }
                            v => PixAnswer::Found(cx_list(&v["found"])),
                        };
                        hl7::rsp_k23(&inbound.header, q, &answer, &r)
                    }
                    Request::PdqQuery(q) => {
                        let p = &case["pdq"];
                        let page = PdqPage {
                            candidates: p["candidates"]
                                .as_array()
                                .unwrap()
                                .iter()
                                .map(|c| PdqCandidate {
                                    identifiers: cx_list(&c["ids"]),
                                    demographics: record_from(&c["record"]),
                                    score: c["score"].as_f64().unwrap(),
                                })
                                .collect(),
                            total: p["total"].as_u64().unwrap() as usize,
                            remaining: p["remaining"].as_u64().unwrap() as usize,
                            continuation: p["continuation"].as_str().map(str::to_string),
                        };
                        assert_eq!(
                            q.continuation.is_some(),
                            name.contains("next-page"),
                            "{name}"
                        );
                        hl7::rsp_k22(&inbound.header, q, &page, &r)
                    }
                    Request::Cancel(c) => {
                        assert_eq!(c.query_tag, case["cancel"].as_str().unwrap(), "{name}");
                        hl7::ack(&inbound.header, &[], &r)
                    }
                }
            }
            Err(rejection) => {
                assert_eq!(
                    rejection.error.location.to_string(),
                    case["error"].as_str().unwrap_or("(none expected)"),
                    "{name}: {}",
                    rejection.error
                );
                rejection.answer(&r)
            }
        };
        let msa = format!("\rMSA|{}|", case["msa"].as_str().unwrap());
        assert!(
            answer.text.contains(&msa) || answer.text.contains(&msa[..7]),
            "{name}: {}",
            answer.text
        );
        golden(
            &dir.join(case["expected"].as_str().unwrap()),
            &stored(&answer),
        );
    }
}

/// A message with `pid` as its PID segment.
fn adt(pid: &str) -> Vec<u8> {
    format!("MSH|^~\\&|ADT|H|EMPI|C|20260101||ADT^A04^ADT_A01|C1|P|2.5\rEVN||20260101\r{pid}\r")
        .into_bytes()
}

#[test]
fn hl7_bad_input_table() {
    let huge_name = adt(&format!("PID|||M1^^^H||{}^Jo", "x".repeat(1 << 20)));
    let huge_z = {
        let mut m = adt("PID|||M1^^^H||Doe^Jo");
        m.extend_from_slice(format!("ZPD|{}\r", "y^".repeat(1 << 19)).as_bytes());
        m
    };
    // "Müller" in Latin-1 (0xFC), with no character set declared in MSH-18.
    let latin1_name: Vec<u8> = adt("PID|||M1^^^H||M?ller^Jo")
        .into_iter()
        .map(|b| if b == b'?' { 0xFC } else { b })
        .collect();
    let cases: Vec<(&str, Vec<u8>, AckCode, &str)> = vec![
        ("empty", Vec::new(), AckCode::Reject, "MSH"),
        (
            "missing MSH",
            b"PID|||M1^^^H||Doe\r".to_vec(),
            AckCode::Reject,
            "MSH",
        ),
        (
            "letter as separator",
            b"MSHX^~\\&XADT".to_vec(),
            AckCode::Reject,
            "MSH-1",
        ),
        (
            "separator among encoding characters",
            b"MSH|^|\\&|ADT".to_vec(),
            AckCode::Reject,
            "MSH-2",
        ),
        (
            "other separators in the body",
            b"MSH|^~\\&|A|H|E|C|1||ADT^A04|C1|P|2.5\rPID#1##M1^^^H\r".to_vec(),
            AckCode::Reject,
            "segment 2",
        ),
        (
            "unknown message type",
            b"MSH|^~\\&|A|H|E|C|1||MFN^M02|C1|P|2.5\r".to_vec(),
            AckCode::Reject,
            "MSH-9.1",
        ),
        (
            "unknown event",
            b"MSH|^~\\&|A|H|E|C|1||ADT^A31|C1|P|2.5\r".to_vec(),
            AckCode::Reject,
            "MSH-9.2",
        ),
        (
            "invalid date",
            adt("PID|||M1^^^H||Doe^Jo||20260230"),
            AckCode::Error,
            "PID-7",
        ),
        (
            "future date",
            adt("PID|||M1^^^H||Doe^Jo||20990101"),
            AckCode::Error,
            "PID-7",
        ),
        ("1 MiB name", huge_name, AckCode::Error, "PID-5.1"),
        (
            "bad escape",
            adt("PID|||M1^^^H||Doe\\X4\\^Jo"),
            AckCode::Error,
            "PID-5.1",
        ),
        ("undeclared Latin-1", latin1_name, AckCode::Reject, "MSH-18"),
    ];
    for (what, bytes, code, loc) in cases {
        let rej = hl7::read_request(&bytes, &MappingOptions::default(), today()).expect_err(what);
        assert_eq!(rej.error.ack_code(), code, "{what}: {}", rej.error);
        assert_eq!(rej.error.location.to_string(), loc, "{what}: {}", rej.error);
        let answer = rej.answer(&responder()).text;
        assert!(
            answer.contains(&format!("\rMSA|{}", code.as_str())),
            "{what}: {answer}"
        );
        assert!(
            answer.len() < 1024,
            "{what}: the answer does not echo the input"
        );
        assert!(
            !answer.contains("xxxx") && !answer.contains("Doe"),
            "{what}: {answer}"
        );
    }
    // A 1 MiB segment the door does not read is no harm.
    assert!(hl7::read_request(&huge_z, &MappingOptions::default(), today()).is_ok());

    // Framing: a frame past the limit, and a connection that ends inside a frame.
    let mut d = mllp::MllpDecoder::new(1 << 20);
    let mut framed = mllp::encode(&adt(&format!("PID|||M1^^^H||{}", "x".repeat(1 << 20)))).unwrap();
    framed.extend_from_slice(&mllp::encode(&adt("PID|||M1^^^H||Doe^Jo")).unwrap());
    framed.extend_from_slice(b"\x0bMSH|^~\\&|cut");
    let out = d.push(&framed);
    assert_eq!(out.len(), 2);
    assert!(out[0]
        .as_ref()
        .unwrap_err()
        .to_string()
        .contains("longer than 1048576 bytes"));
    let frame = out[1].as_ref().unwrap();
    assert!(hl7::read_request(frame, &MappingOptions::default(), today()).is_ok());
    assert!(d.finish().unwrap().to_string().contains("cut short"));
}

/// What a FHIR answer is stored as: indented JSON and a final newline.
fn stored_json(r: &Resource) -> Vec<u8> {
    let mut s = r.to_json_pretty();
    s.push('\n');
    s.into_bytes()
}

fn fhir_cfg() -> FhirConfig {
    FhirConfig {
        base_url: "https://empi.example.org/fhir".into(),
        ..FhirConfig::default()
    }
}

fn person(euid: &str, record: Record, records: &[(&str, &str)]) -> FhirPerson {
    FhirPerson {
        euid: euid.into(),
        demographics: record,
        records: records
            .iter()
            .map(|(s, l)| RecordKey::new(*s, *l))
            .collect(),
        replaces: Vec::new(),
        replaced_by: None,
    }
}

#[test]
fn fhir_conformance_cases() {
    let dir = fixtures("fhir");
    let out = dir.join("expected");
    let cfg = fhir_cfg();
    let read = |f: &str| std::fs::read(dir.join(f)).unwrap();

    let m = fhir::read_match_request(&read("match-request.json"), &cfg, today()).unwrap();
    assert_eq!(m.count, Some(3));
    assert!(!m.only_certain_matches);
    assert_eq!(m.record.national_id(), Some("123-45-6789"));
    assert_eq!(m.record.identifiers[1].system, "1.3.6.1.4.1.21367.3000.1.6");
    let partial =
        fhir::read_match_request(&read("match-request-partial-date.json"), &cfg, today()).unwrap();
    assert_eq!(partial.record.birth_date.unwrap().to_string(), "1978-05");
    assert_eq!(
        partial.record.previous_family_names,
        vec!["Ashworth".to_string()]
    );
    assert_eq!(partial.record.multiple_birth_order, Some(2));

    let mut golden_view = m.record.clone();
    golden_view
        .identifiers
        .retain(|i| i.system == empi::record::NATIONAL_ID_SYSTEM);
    let best = person(
        "E00000000AB",
        golden_view,
        &[
            ("1.3.6.1.4.1.21367.3000.1.6", "MRN10001"),
            ("NORTHCLINIC", "NC-9"),
        ],
    );
    let mut other = partial.record.clone();
    other.family_name = Some("Okonkwo".into());
    let second = person("E00000000AD", other, &[("GOODHEALTH", "MRN20417")]);
    let bundle = fhir::match_bundle(
        &[
            MatchCandidate {
                person: best.clone(),
                score: 0.9871,
                grade: MatchGrade::Certain,
            },
            MatchCandidate {
                person: second,
                score: 0.41,
                grade: MatchGrade::Possible,
            },
        ],
        &cfg,
    );
    golden(&out.join("match-bundle.json"), &stored_json(&bundle));
    golden(
        &out.join("match-bundle-empty.json"),
        &stored_json(&fhir::match_bundle(&[], &cfg)),
    );

    let mut read_view = best.clone();
    read_view.replaces = vec!["E00000000A9".into()];
    golden(
        &out.join("patient-read.json"),
        &stored_json(&Resource::Patient(fhir::person_to_patient(
            &read_view, &cfg,
        ))),
    );
    let mut merged = person("E00000000A9", partial.record.clone(), &[]);
    merged.replaced_by = Some("E00000000AB".into());
    golden(
        &out.join("patient-merged.json"),
        &stored_json(&Resource::Patient(fhir::person_to_patient(&merged, &cfg))),
    );

    let q = fhir::read_pixm_query(
        &[
            (
                "sourceIdentifier".into(),
                "urn:oid:1.3.6.1.4.1.21367.3000.1.6|MRN10001".into(),
            ),
            ("targetSystem".into(), "urn:empi:source:NORTHCLINIC".into()),
            ("targetSystem".into(), "urn:empi:euid".into()),
        ],
        &cfg,
    )
    .unwrap();
    golden(
        &out.join("pixm-parameters.json"),
        &stored_json(&fhir::pixm_parameters(&best, &q, &cfg)),
    );
    golden(
        &out.join("capability-statement.json"),
        &stored_json(&fhir::capability_statement("0.1.0", "2026-01-15", &cfg)),
    );
}

#[test]
fn fhir_bad_input_table() {
    let dir = fixtures("fhir");
    let out = dir.join("expected");
    let cases: &[(&str, u16, &str, Option<&str>)] = &[
        ("bad-malformed.json", 400, "structure", None),
        ("bad-wrong-resource-type.json", 400, "invalid", None),
        (
            "bad-birth-date.json",
            400,
            "invalid",
            Some("Parameters.parameter[0].resource.birthDate"),
        ),
        (
            "bad-gender.json",
            400,
            "invalid",
            Some("Parameters.parameter[0].resource.gender"),
        ),
        (
            "bad-identifier-system.json",
            400,
            "invalid",
            Some("Parameters.parameter[0].resource.identifier[0].system"),
        ),
        (
            "bad-resource-in-parameters.json",
            400,
            "invalid",
            Some("Parameters.parameter[0].resource.resourceType"),
        ),
        (
            "bad-count.json",
            400,
            "invalid",
            Some("Parameters.parameter[1]"),
        ),
    ];
    for (file, status, code, expression) in cases {
        let body = std::fs::read(dir.join(file)).unwrap();
        let e = fhir::read_match_request(&body, &fhir_cfg(), today()).expect_err(file);
        let o = fhir::outcome_of(&e);
        assert_eq!(o.status, *status, "{file}");
        let v: Value = serde_json::from_str(&o.resource.to_json()).unwrap();
        assert_eq!(v["issue"][0]["code"], *code, "{file}");
        assert_eq!(
            v["issue"][0]["expression"][0].as_str(),
            *expression,
            "{file}"
        );
        golden(
            &out.join(format!("outcome-{}", file.trim_start_matches("bad-"))),
            &stored_json(&o.resource),
        );
    }
    let nf = fhir::outcome_of(&empi::Error::NotFound {
        what: "person",
        id: "E00000000ZZ".into(),
    });
    assert_eq!(nf.status, 404);
    golden(
        &out.join("outcome-not-found.json"),
        &stored_json(&nf.resource),
    );
    let t = fhir::pixm_unknown_target_system();
    assert_eq!(t.status, 403);
    golden(
        &out.join("outcome-pixm-unknown-target-system.json"),
        &stored_json(&t.resource),
    );
    // Bodies that are no resource at all.
    for body in [
        &b""[..],
        b"null",
        b"[]",
        b"\"Parameters\"",
        b"{\"resourceType\": 7}",
        &[0xff, 0xfe],
    ] {
        let e = fhir::read_match_request(body, &fhir_cfg(), today()).unwrap_err();
        assert_eq!(fhir::outcome_of(&e).status, 400);
    }
}

#[test]
fn one_patient_through_hl7_and_fhir_reads_the_same() {
    let adt = std::fs::read(fixtures("hl7").join("iti8-a01-v231.hl7")).unwrap();
    let Request::Submit {
        record: from_hl7, ..
    } = hl7::read_request(&adt, &MappingOptions::default(), today())
        .unwrap()
        .request
    else {
        panic!("not a submit")
    };
    let body = std::fs::read(fixtures("fhir").join("match-request.json")).unwrap();
    let from_fhir = fhir::read_match_request(&body, &fhir_cfg(), today())
        .unwrap()
        .record;
    assert_eq!(from_hl7.given_name, from_fhir.given_name);
    assert_eq!(from_hl7.middle_name, from_fhir.middle_name);
    assert_eq!(from_hl7.family_name, from_fhir.family_name);
    assert_eq!(from_hl7.birth_date, from_fhir.birth_date);
    assert_eq!(from_hl7.sex, from_fhir.sex);
    assert_eq!(from_hl7.address, from_fhir.address);
    assert_eq!(from_hl7.national_id(), from_fhir.national_id());
    assert_eq!(
        empi::normalize::phone(&from_hl7.phones[0]),
        empi::normalize::phone(&from_fhir.phones[0])
    );
}
