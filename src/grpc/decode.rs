//! A request's bytes as the server first meets them: decoded, then converted and validated
//! the way its handler does before touching the service, as one function
//! ([`check_request`]) for property tests and the fuzz targets under `fuzz/`. Every input
//! is answered with a defined status and never a panic: `OK`, or `INVALID_ARGUMENT` naming
//! the field (an undecodable message included, as the guard answers it on the wire).

use prost::Message;
use tonic::Status;

use crate::app::{Attribution, Incoming};
use crate::auth::Operation;
use crate::error::Error;
use crate::record::today_days;

use super::guard::before_handler;
use super::{pb, requests};

fn decoded<M: Message + Default>(bytes: &[u8]) -> Result<M, Status> {
    M::decode(bytes).map_err(|e| {
        before_handler(Status::internal(format!(
            "failed to decode Protobuf message: {e}"
        )))
    })
}

/// A registrar action's request, read, with its actor and reason checked as the service
/// checks them (an empty actor is fine where authentication supplies it).
fn attributed(request: Incoming<Attribution>) -> Result<(), Error> {
    let by = request.map_err(|u| u.error)?;
    let actor = if by.actor.trim().is_empty() {
        "-"
    } else {
        &by.actor
    };
    crate::service::stamp::checked(actor, &by.reason).map(drop)
}

/// Decodes `bytes` as the request of `op` and validates it as far as the server does
/// without the service: the handler's conversion (keys, EUIDs, task ids, records, list
/// sizes), then a record's fields and a registrar action's actor and reason.
///
/// # Errors
/// The status the server would answer: `INVALID_ARGUMENT` for anything undecodable or
/// invalid.
pub fn check_request(op: Operation, bytes: &[u8]) -> Result<(), Status> {
    use Operation as O;
    let read = |r: Incoming<()>| r.map_err(|u| u.error);
    let checked: Result<(), Error> = match op {
        O::MatchOrCreate => requests::submit(decoded(bytes)?)
            .map_err(|u| u.error)
            .and_then(|s| s.record.validate(today_days())),
        O::Match => read(requests::match_query(decoded(bytes)?).map(drop)),
        O::GetPerson => read(requests::person(&decoded(bytes)?).map(drop)),
        O::GetRecord => read(requests::record_key(decoded(bytes)?).map(drop)),
        O::RemoveRecord => attributed(requests::remove(decoded(bytes)?).map(|r| r.by)),
        O::Link => attributed(requests::link(decoded(bytes)?).map(|r| r.by)),
        O::Unlink => attributed(requests::unlink(decoded(bytes)?).map(|r| r.by)),
        O::MergePersons => attributed(requests::merge(decoded(bytes)?).map(|r| r.by)),
        O::SplitPerson => attributed(requests::split(decoded(bytes)?).map(|r| r.by)),
        O::MarkNotDuplicate => attributed(requests::not_duplicate(decoded(bytes)?).map(|r| r.by)),
        O::ListReviewTasks => read(requests::task_query(&decoded(bytes)?).map(drop)),
        O::GetReviewTask => read(requests::task_id(&decoded(bytes)?).map(drop)),
        O::ResolveReviewTask => attributed(requests::resolution(decoded(bytes)?).map(|r| r.by)),
        O::GetStats => {
            decoded::<pb::GetStatsRequest>(bytes)?;
            Ok(())
        }
        // The standards doors' and the console's own: `Operation::from_path` never names them.
        O::MergeRecords | O::CrossReference | O::FindPersons | O::SearchPersons => {
            Err(Error::invalid("method", "not an RPC of empi.v1.Empi"))
        }
        O::WatchChanges => {
            decoded::<pb::WatchChangesRequest>(bytes)?;
            Ok(())
        }
    };
    checked.map_err(Status::from)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use tonic::Code;

    /// A valid encoding of each operation's request, to mutate.
    fn valid(op: Operation) -> Vec<u8> {
        use Operation as O;
        let one = pb::RecordKey {
            source: "adt".into(),
            local_id: "MRN1".into(),
        };
        let key = Some(one.clone());
        let record = Some(pb::PatientRecord {
            source: "adt".into(),
            local_id: "MRN1".into(),
            given_name: Some("Ana".into()),
            birth_date: Some("1970-01-02".into()),
            ..Default::default()
        });
        let euid = "E0000000001".to_string();
        match op {
            O::MatchOrCreate => pb::MatchOrCreateRequest {
                record,
                actor: String::new(),
            }
            .encode_to_vec(),
            O::Match => pb::MatchRequest {
                record,
                max_candidates: 3,
            }
            .encode_to_vec(),
            O::GetRecord => pb::GetRecordRequest { key }.encode_to_vec(),
            O::Link => pb::LinkRequest {
                key,
                euid,
                actor: "ann".into(),
                reason: "same".into(),
            }
            .encode_to_vec(),
            O::SplitPerson => pb::SplitPersonRequest {
                euid,
                records: vec![one],
                actor: "ann".into(),
                reason: String::new(),
            }
            .encode_to_vec(),
            _ => pb::GetPersonRequest { euid }.encode_to_vec(),
        }
    }

    #[test]
    fn valid_requests_pass_and_bad_wire_input_is_invalid_argument() {
        for op in [
            Operation::MatchOrCreate,
            Operation::Match,
            Operation::GetRecord,
            Operation::Link,
            Operation::SplitPerson,
            Operation::GetPerson,
        ] {
            assert!(check_request(op, &valid(op)).is_ok(), "{op}");
        }
        // Invalid UTF-8 in record.source; a truncated length varint; a varint where a
        // message belongs.
        for bytes in [
            &[0x0a, 0x03, 0x0a, 0x01, 0xff][..],
            &[0x0a, 0x85],
            &[0x08, 0x01],
        ] {
            let s = check_request(Operation::MatchOrCreate, bytes).unwrap_err();
            assert_eq!(s.code(), Code::InvalidArgument, "{bytes:?}: {s:?}");
        }
        let seventeen = pb::SplitPersonRequest {
            euid: "E0000000001".into(),
            records: vec![
                pb::RecordKey {
                    source: "adt".into(),
                    local_id: "1".into()
                };
                17
            ],
            ..Default::default()
        };
        let s = check_request(Operation::SplitPerson, &seventeen.encode_to_vec()).unwrap_err();
        assert_eq!(s.code(), Code::InvalidArgument);
        assert!(s.message().contains("records"), "{s:?}");
    }

    /// Bounded fuzzing in `cargo test` (the long run is `cargo fuzz run request`, see
    /// `fuzz/README.md`): any bytes, and valid requests with bytes flipped, cut or added,
    /// for every operation, are answered with OK or INVALID_ARGUMENT, never a panic, and
    /// the message is bounded and free of control characters (nothing sent is echoed raw).
    fn answered(op: Operation, bytes: &[u8]) -> Result<(), TestCaseError> {
        match check_request(op, bytes) {
            Ok(()) => Ok(()),
            Err(s) => {
                prop_assert_eq!(s.code(), Code::InvalidArgument, "{}: {:?}", op, s);
                prop_assert!(
                    s.message().len() <= 512,
                    "{}: {} bytes",
                    op,
                    s.message().len()
                );
                prop_assert!(!s.message().chars().any(char::is_control), "{:?}", s);
                Ok(())
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        #[test]
        fn any_bytes_get_a_defined_status(
            op in 0..Operation::ALL.len(),
            bytes in proptest::collection::vec(any::<u8>(), 0..256),
        ) {
            answered(Operation::ALL[op], &bytes)?;
        }

        #[test]
        fn mutated_requests_get_a_defined_status(
            op in 0..Operation::ALL.len(),
            flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..4),
            cut in any::<usize>(),
            tail in proptest::collection::vec(any::<u8>(), 0..8),
        ) {
            let op = Operation::ALL[op];
            let mut bytes = valid(op);
            for (at, v) in flips {
                if !bytes.is_empty() {
                    let i = at % bytes.len();
                    bytes[i] ^= v;
                }
            }
            bytes.truncate(cut % (bytes.len() + 1));
            bytes.extend(tail);
            answered(op, &bytes)?;
        }
    }
}
