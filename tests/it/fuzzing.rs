//! Bounded fuzzing of the CSV reader in `cargo test` (the long run is `cargo fuzz run csv`,
//! see `fuzz/README.md`; the request path is fuzzed beside `empi::grpc::check_request`):
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
