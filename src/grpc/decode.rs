//! A request's bytes as the server first meets them: decoded, then converted and validated
//! the way its handler does before touching the service, as one function
//! ([`check_request`]) for property tests and the fuzz targets under `fuzz/`. Every input
//! is answered with a defined status and never a panic: `OK`, or `INVALID_ARGUMENT` naming
//! the field (an undecodable message included, as the guard answers it on the wire).

use prost::Message;
use tonic::Status;

use crate::auth::Operation;
use crate::error::Error;
use crate::record::{today_days, MAX_REPEATED};
use crate::store::UnixMillis;

use super::convert::{euid_in, key_in, record_in, resolve_in, task_id_in, task_query_in};
use super::pb;

fn decoded<M: Message + Default>(bytes: &[u8]) -> Result<M, Status> {
    M::decode(bytes).map_err(|e| {
        crate::auth::guard::before_handler(Status::internal(format!(
            "failed to decode Protobuf message: {e}"
        )))
    })
}

/// The actor and reason of a registrar action, checked as the service checks them
/// (an empty actor is fine where authentication supplies it).
fn stamp(actor: &str, reason: &str) -> Result<(), Error> {
    let actor = if actor.trim().is_empty() { "-" } else { actor };
    crate::service::stamp::checked(actor, reason).map(drop)
}

/// Decodes `bytes` as the request of `op` and validates it as far as its handler does
/// without the service (keys, EUIDs, task ids, records, list sizes, actor and reason).
///
/// # Errors
/// The status the server would answer: `INVALID_ARGUMENT` for anything undecodable or
/// invalid.
pub fn check_request(op: Operation, bytes: &[u8]) -> Result<(), Status> {
    use Operation as O;
    let checked: Result<(), Error> = match op {
        O::MatchOrCreate => {
            let r: pb::MatchOrCreateRequest = decoded(bytes)?;
            let record = record_in(
                r.record
                    .ok_or_else(|| Error::invalid("record", "missing"))?,
            )?;
            record.validate(today_days())
        }
        O::Match => {
            let r: pb::MatchRequest = decoded(bytes)?;
            record_in(
                r.record
                    .ok_or_else(|| Error::invalid("record", "missing"))?,
            )
            .map(drop)
        }
        O::GetPerson => euid_in("euid", &decoded::<pb::GetPersonRequest>(bytes)?.euid).map(drop),
        O::GetRecord => key_in(decoded::<pb::GetRecordRequest>(bytes)?.key).map(drop),
        O::RemoveRecord => {
            let r: pb::RemoveRecordRequest = decoded(bytes)?;
            key_in(r.key).and_then(|_| stamp(&r.actor, &r.reason))
        }
        O::Link => {
            let r: pb::LinkRequest = decoded(bytes)?;
            key_in(r.key)
                .and_then(|_| euid_in("euid", &r.euid))
                .and_then(|_| stamp(&r.actor, &r.reason))
        }
        O::Unlink => {
            let r: pb::UnlinkRequest = decoded(bytes)?;
            key_in(r.key).and_then(|_| stamp(&r.actor, &r.reason))
        }
        O::MergePersons => {
            let r: pb::MergePersonsRequest = decoded(bytes)?;
            euid_in("from_euid", &r.from_euid)
                .and_then(|_| euid_in("into_euid", &r.into_euid))
                .and_then(|_| stamp(&r.actor, &r.reason))
        }
        O::SplitPerson => {
            let r: pb::SplitPersonRequest = decoded(bytes)?;
            if r.records.len() > MAX_REPEATED {
                Err(Error::invalid(
                    "records",
                    format!("more than {MAX_REPEATED} values"),
                ))
            } else {
                euid_in("euid", &r.euid)
                    .and_then(|_| {
                        r.records
                            .into_iter()
                            .try_for_each(|k| key_in(Some(k)).map(drop))
                    })
                    .and_then(|()| stamp(&r.actor, &r.reason))
            }
        }
        O::MarkNotDuplicate => {
            let r: pb::MarkNotDuplicateRequest = decoded(bytes)?;
            euid_in("euid_a", &r.euid_a)
                .and_then(|_| euid_in("euid_b", &r.euid_b))
                .and_then(|_| stamp(&r.actor, &r.reason))
        }
        O::ListReviewTasks => task_query_in(&decoded(bytes)?, UnixMillis::now()).map(drop),
        O::GetReviewTask => task_id_in(
            "task_id",
            &decoded::<pb::GetReviewTaskRequest>(bytes)?.task_id,
        )
        .map(drop),
        O::ResolveReviewTask => {
            let r: pb::ResolveReviewTaskRequest = decoded(bytes)?;
            task_id_in("task_id", &r.task_id)
                .and_then(|_| resolve_in(&r))
                .and_then(|_| stamp(&r.actor, &r.reason))
        }
        O::GetStats => {
            decoded::<pb::GetStatsRequest>(bytes)?;
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
