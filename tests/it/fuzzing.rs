//! Bounded fuzzing of the CSV reader and the standards codecs (HL7 v2, MLLP, FHIR) in
//! `cargo test` (the long runs are `cargo fuzz run csv|hl7|mllp|fhir`, see `fuzz/README.md`;
//! the request path is fuzzed beside `empi::grpc::check_request`). For the CSV reader:
//! any bytes, and CSV-shaped text with quotes, separators, line ends, control characters
//! and stray bytes, are read or refused with an error, never a panic; a record read has
//! its key parts as the file gave them, and an error never carries a whole row.

use empi::input::{read_csv_from, ReadOptions};
use proptest::prelude::*;

/// Reads `bytes` lenient and strict; fails the case on a panic or an unexpected error kind.
fn read_both(bytes: &[u8]) -> Result<(), TestCaseError> {
    for strict in [false, true] {
        let opts = ReadOptions {
            strict,
            ..ReadOptions::default()
        };
        let read = std::panic::catch_unwind(|| read_csv_from(bytes, None, &opts));
        prop_assert!(read.is_ok(), "the CSV reader panicked (strict: {})", strict);
        if let Ok(Err(e)) = read {
            prop_assert!(
                matches!(e, empi::Error::InvalidInput { .. } | empi::Error::Io { .. }),
                "unexpected error kind: {:?}",
                e
            );
            prop_assert!(
                e.to_string().len() <= 1024,
                "an error of {} bytes",
                e.to_string().len()
            );
        }
    }
    Ok(())
}

/// A cell: plain text, quoted text (with doubled quotes), or odd bytes.
fn cell() -> impl Strategy<Value = String> {
    prop_oneof![
        "[A-Za-z0-9 .-]{0,12}",
        "[A-Za-z,\n\"]{0,8}".prop_map(|s| format!("\"{}\"", s.replace('"', "\"\""))),
        "[\"\r\t\u{0}\u{7}é,;]{0,4}",
        Just("1970-01-02".to_string()),
        Just("02/30/1999".to_string()),
    ]
}

fn csv_text() -> impl Strategy<Value = String> {
    let header = prop_oneof![
        Just("source,local_id,given_name,family_name,birth_date,phone".to_string()),
        Just("local_id,given_name".to_string()),
        "[a-z_,]{0,40}",
    ];
    let rows = proptest::collection::vec(proptest::collection::vec(cell(), 0..7), 0..8);
    let end = prop_oneof![Just("\n"), Just("\r\n"), Just("")];
    (header, rows, end).prop_map(|(h, rows, end)| {
        let mut out = h;
        for r in rows {
            out.push('\n');
            out.push_str(&r.join(","));
        }
        out.push_str(end);
        out
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn csv_text_is_read_or_refused(text in csv_text()) {
        read_both(text.as_bytes())?;
    }

    #[test]
    fn any_bytes_are_read_or_refused(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        read_both(&bytes)?;
    }
}

// ---- the standards codecs: HL7 v2, MLLP, FHIR ------------------------------------------------
//
// Bounded counterparts of `cargo fuzz run hl7|mllp|fhir`: any input is read or refused with
// an error naming a position, and every refusal still gets an answer; never a panic.

mod standards {
    use empi::fhir::{self, FhirConfig};
    use empi::hl7::{self, mllp, Hd, MappingOptions, Message, Responder};
    use proptest::prelude::*;

    fn responder() -> Responder {
        Responder {
            application: Hd::named("EMPI"),
            facility: Hd::named("F"),
            control_id: "R1".into(),
            time_ms: 0,
        }
    }

    /// Reads `bytes` as an HL7 message and answers it; fails the case on a panic, an
    /// unbounded error or an answer that is not itself a readable message with an MSA.
    fn hl7_answers(bytes: &[u8]) -> Result<(), TestCaseError> {
        let read = std::panic::catch_unwind(|| {
            hl7::read_request(bytes, &MappingOptions::default(), 20_000)
        });
        prop_assert!(read.is_ok(), "read_request panicked");
        let answer = match read.unwrap() {
            Ok(inbound) => hl7::ack(&inbound.header, &[], &responder()),
            Err(rejection) => {
                let e = rejection.error.to_string();
                prop_assert!(e.len() <= 512, "an error of {} bytes", e.len());
                prop_assert!(
                    !e.chars().any(char::is_control),
                    "control characters in {:?}",
                    e
                );
                rejection.answer(&responder())
            }
        };
        let parsed = Message::parse(&answer.to_bytes());
        prop_assert!(
            parsed.is_ok(),
            "the answer does not parse: {:?}",
            answer.text
        );
        prop_assert!(parsed.unwrap().segment("MSA").is_some());
        Ok(())
    }

    /// A value with delimiters, escapes, odd characters and the HL7 null.
    fn value() -> impl Strategy<Value = String> {
        prop_oneof![
            "[A-Za-z0-9 .-]{0,10}",
            "[|^~&\\\\A-Z0-9]{0,10}",
            Just("\"\"".to_string()),
            Just("\\X4F\\".to_string()),
            Just("\\XZ\\".to_string()),
            Just("\\.br\\".to_string()),
            "[\u{0}-\u{7f}é€]{0,6}",
            Just("19560314".to_string()),
            Just("2025".to_string()),
            Just("@PID.5.1.1".to_string()),
        ]
    }

    fn segment() -> impl Strategy<Value = String> {
        let id = prop_oneof![
            Just("PID"),
            Just("EVN"),
            Just("PV1"),
            Just("MRG"),
            Just("QPD"),
            Just("RCP"),
            Just("DSC"),
            Just("ZZ1"),
            Just("MSH"),
            Just("pid"),
            Just("P")
        ];
        (id, proptest::collection::vec(value(), 0..30))
            .prop_map(|(id, fields)| format!("{id}|{}", fields.join("|")))
    }

    fn message() -> impl Strategy<Value = String> {
        let mtype = prop_oneof![
            Just("ADT^A04"),
            Just("ADT^A08"),
            Just("ADT^A40"),
            Just("QBP^Q22"),
            Just("QBP^Q23"),
            Just("ADT^A99"),
            Just("ORU^R01"),
            Just("")
        ];
        let version = prop_oneof![Just("2.5"), Just("2.3.1"), Just("2.2"), Just("")];
        let charset = prop_oneof![
            Just(""),
            Just("8859/1"),
            Just("UNICODE UTF-8"),
            Just("ASCII"),
            Just("BIG-5")
        ];
        let end = prop_oneof![Just("\r"), Just("\n"), Just("\r\n")];
        (
            mtype,
            version,
            charset,
            proptest::collection::vec(segment(), 0..8),
            end,
        )
            .prop_map(|(t, v, c, segs, end)| {
                let mut m = format!("MSH|^~\\&|A|B|C|D|20260101||{t}|M1|P|{v}||||||{c}");
                for s in segs {
                    m.push_str(end);
                    m.push_str(&s);
                }
                m
            })
    }

    fn mllp_stream() -> impl Strategy<Value = Vec<u8>> {
        let byte = prop_oneof![
            3 => Just(mllp::START_BLOCK),
            3 => Just(mllp::END_BLOCK),
            3 => Just(mllp::CARRIAGE_RETURN),
            10 => any::<u8>(),
        ];
        proptest::collection::vec(byte, 0..200)
    }

    /// A JSON tree with the element names `$match` reads, values of every JSON type.
    fn json() -> impl Strategy<Value = serde_json::Value> {
        use serde_json::Value;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            Just(Value::from(1.5)),
            prop_oneof![
                Just("Parameters"),
                Just("Patient"),
                Just("resource"),
                Just("count"),
                Just("onlyCertainMatches"),
                Just("female"),
                Just("1956-03"),
                Just("1956-02-30"),
                Just("urn:oid:1.2.3"),
                Just("http://hl7.org/fhir/sid/us-ssn"),
                Just(""),
            ]
            .prop_map(Value::from),
        ];
        let keys = prop_oneof![
            Just("resourceType"),
            Just("parameter"),
            Just("name"),
            Just("resource"),
            Just("valueInteger"),
            Just("valueBoolean"),
            Just("valueString"),
            Just("birthDate"),
            Just("gender"),
            Just("identifier"),
            Just("system"),
            Just("value"),
            Just("given"),
            Just("family"),
            Just("telecom"),
            Just("address"),
            Just("line"),
            Just("use"),
            Just("multipleBirthInteger"),
            Just("multipleBirthBoolean"),
        ];
        leaf.prop_recursive(5, 64, 6, move |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::Array),
                proptest::collection::vec((keys.clone(), inner), 0..6).prop_map(|kv| {
                    serde_json::Value::Object(
                        kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
                    )
                }),
            ]
        })
    }

    fn fhir_refuses_cleanly(body: &[u8]) -> Result<(), TestCaseError> {
        let read = std::panic::catch_unwind(|| {
            fhir::read_match_request(body, &FhirConfig::default(), 20_000)
        });
        prop_assert!(read.is_ok(), "read_match_request panicked");
        if let Err(e) = read.unwrap() {
            let o = fhir::outcome_of(&e);
            prop_assert_eq!(o.status, 400);
            let text = e.to_string();
            prop_assert!(text.len() <= 512, "an error of {} bytes", text.len());
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        #[test]
        fn hl7_shaped_messages_are_answered(m in message()) {
            hl7_answers(m.as_bytes())?;
        }

        #[test]
        fn any_bytes_are_answered_as_hl7(mut bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            hl7_answers(&bytes)?;
            // And behind a valid MSH.
            let mut m = b"MSH|^~\\&|A|B|C|D|1||ADT^A04|M1|P|2.5\r".to_vec();
            m.append(&mut bytes);
            hl7_answers(&m)?;
        }

        #[test]
        fn mllp_decodes_the_same_whatever_the_pieces(stream in mllp_stream(), cut in 1usize..16) {
            let whole = {
                let mut d = mllp::MllpDecoder::new(32);
                let mut out: Vec<_> = d.push(&stream).into_iter().map(|r| r.map_err(|e| e.to_string())).collect();
                out.push(d.finish().map_or(Ok(Vec::new()), |e| Err(e.to_string())));
                out
            };
            let mut d = mllp::MllpDecoder::new(32);
            let mut pieces = Vec::new();
            for chunk in stream.chunks(cut) {
                pieces.extend(d.push(chunk).into_iter().map(|r| r.map_err(|e| e.to_string())));
            }
            pieces.push(d.finish().map_or(Ok(Vec::new()), |e| Err(e.to_string())));
            prop_assert_eq!(&whole, &pieces);
            for frame in whole.iter().flatten() {
                prop_assert!(frame.len() <= 32);
                prop_assert!(!frame.contains(&mllp::START_BLOCK) && !frame.contains(&mllp::END_BLOCK));
            }
        }

        #[test]
        fn mllp_round_trips(messages in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..5)) {
            let clean: Vec<Vec<u8>> = messages
                .into_iter()
                .map(|m| m.into_iter().filter(|&b| b != mllp::START_BLOCK && b != mllp::END_BLOCK).collect())
                .collect();
            let stream: Vec<u8> = clean.iter().flat_map(|m| mllp::encode(m).unwrap()).collect();
            let mut d = mllp::MllpDecoder::default();
            let frames: Vec<Vec<u8>> = d.push(&stream).into_iter().map(|r| r.unwrap()).collect();
            prop_assert_eq!(frames, clean);
            prop_assert!(d.finish().is_none());
        }

        #[test]
        fn fhir_json_is_read_or_refused(v in json()) {
            fhir_refuses_cleanly(v.to_string().as_bytes())?;
            let wrapped = serde_json::json!({
                "resourceType": "Parameters",
                "parameter": [{"name": "resource", "resource": v}]
            });
            fhir_refuses_cleanly(wrapped.to_string().as_bytes())?;
        }

        #[test]
        fn any_bytes_are_refused_as_fhir(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            fhir_refuses_cleanly(&bytes)?;
        }
    }
}
