//! Conversions between protocol messages and domain types, validating on the way in.
//!
//! Every rejection is an [`Error::InvalidInput`] naming the field (never its value).
//! Absent and blank strings are the same thing: both become `None` (or are dropped from
//! repeated fields), so a record converts to the same domain value however a client spells
//! "no value", and identical resubmissions stay identical.

use prost_types::{Duration, Timestamp};

use crate::error::{Error, Result};
use crate::linker::Decision;
use crate::record::{check_key_part, Address, Identifier, PartialDate, Record, RecordKey, Sex};
use crate::scoring::{RunSummary, TrainingSummary};
use crate::service::{
    CandidateView, ComparisonView, GoldenView, MatchPreview, MatchResult, PersonView, ServiceStats,
    TaskView,
};
use crate::store::{
    Change, ChangeEvent, Euid, HistoryAction, HistoryEntry, LinkMethod, Person, PersonStatus,
    ResolutionAction, StoredRecord, TaskId, TaskQuery, TaskStatus, UnixMillis,
};

use super::pb;

// ---- in -------------------------------------------------------------------------------------

fn text(v: Option<String>) -> Option<String> {
    v.filter(|s| !s.trim().is_empty())
}

fn texts(v: Vec<String>) -> Vec<String> {
    v.into_iter().filter(|s| !s.trim().is_empty()).collect()
}

/// A protocol enum value, or `InvalidInput` naming `field` for a value this build does not
/// know.
pub(crate) fn enum_value<E: TryFrom<i32>>(field: &'static str, v: i32) -> Result<E> {
    E::try_from(v).map_err(|_| Error::invalid(field, format!("unknown enum value {v}")))
}

/// A record from the protocol. Validation of sizes and dates happens in the service
/// ([`Record::validate`]); here only what cannot be represented is refused.
///
/// # Errors
/// [`Error::InvalidInput`] naming `sex`, `birth_date` or `multiple_birth_order`.
pub(crate) fn record_in(p: pb::PatientRecord) -> Result<Record> {
    // The key first, as far as it is given (a `Match` query may have none): the errors
    // below name it.
    for (field, v) in [("source", &p.source), ("local_id", &p.local_id)] {
        if !v.trim().is_empty() {
            check_key_part(field, v)?;
        }
    }
    let key = RecordKey::new(p.source.clone(), p.local_id.clone());
    let sex = match enum_value::<pb::Sex>("sex", p.sex).map_err(|e| e.for_record(&key))? {
        pb::Sex::Unspecified | pb::Sex::Unknown => Sex::Unknown,
        pb::Sex::Female => Sex::Female,
        pb::Sex::Male => Sex::Male,
        pb::Sex::Other => Sex::Other,
    };
    let birth_date = text(p.birth_date)
        .map(|d| PartialDate::parse_iso(&d))
        .transpose()
        .map_err(|e| e.for_record(&key))?;
    let multiple_birth_order = p
        .multiple_birth_order
        .map(|o| {
            u8::try_from(o).map_err(|_| {
                Error::invalid("multiple_birth_order", "must be 1 to 16").for_record(&key)
            })
        })
        .transpose()?;
    let address = p
        .address
        .map(|a| Address {
            lines: texts(a.lines),
            city: text(a.city),
            state: text(a.state),
            postal_code: text(a.postal_code),
            country: text(a.country),
        })
        .unwrap_or_default();
    Ok(Record {
        source: p.source,
        local_id: p.local_id,
        given_name: text(p.given_name),
        middle_name: text(p.middle_name),
        family_name: text(p.family_name),
        previous_family_names: texts(p.previous_family_names),
        birth_date,
        sex,
        address,
        phones: texts(p.phones),
        email: text(p.email),
        identifiers: p
            .identifiers
            .into_iter()
            .map(|i| Identifier {
                system: i.system,
                value: i.value,
            })
            .collect(),
        multiple_birth_order,
    })
}

/// A record key that must be present and valid ([`check_key_part`]).
///
/// # Errors
/// [`Error::InvalidInput`] naming `key`, `key.source` or `key.local_id`.
pub(crate) fn key_in(k: Option<pb::RecordKey>) -> Result<RecordKey> {
    let k = k.ok_or_else(|| Error::invalid("key", "missing"))?;
    check_key_part("key.source", &k.source)?;
    check_key_part("key.local_id", &k.local_id)?;
    Ok(RecordKey::new(k.source, k.local_id))
}

/// An EUID in a named request field.
///
/// # Errors
/// [`Error::InvalidInput`] naming `field`.
pub(crate) fn euid_in(field: &'static str, s: &str) -> Result<Euid> {
    if s.is_empty() {
        return Err(Error::invalid(field, "missing"));
    }
    Euid::parse(s).map_err(|_| Error::invalid(field, "not an EUID"))
}

/// A review task id in a named request field.
///
/// # Errors
/// [`Error::InvalidInput`] naming `field`.
pub(crate) fn task_id_in(field: &'static str, s: &str) -> Result<TaskId> {
    if s.is_empty() {
        return Err(Error::invalid(field, "missing"));
    }
    TaskId::parse(s).map_err(|_| Error::invalid(field, "not a review task id"))
}

fn millis_of(field: &'static str, d: &Duration) -> Result<i64> {
    if d.seconds < 0 || d.nanos < 0 {
        return Err(Error::invalid(field, "negative"));
    }
    d.seconds
        .checked_mul(1000)
        .and_then(|ms| ms.checked_add(i64::from(d.nanos / 1_000_000)))
        .ok_or_else(|| Error::invalid(field, "too large"))
}

/// The store query of a `ListReviewTasks` request, ages taken relative to `now`.
///
/// # Errors
/// [`Error::InvalidInput`] naming `status`, `page_token`, `min_age` or `max_age`.
pub(crate) fn task_query_in(r: &pb::ListReviewTasksRequest, now: UnixMillis) -> Result<TaskQuery> {
    let open = match enum_value::<pb::ReviewTaskStatus>("status", r.status)? {
        pb::ReviewTaskStatus::Unspecified => None,
        pb::ReviewTaskStatus::Open => Some(true),
        pb::ReviewTaskStatus::Resolved => Some(false),
    };
    let after = if r.page_token.is_empty() {
        None
    } else {
        Some(task_id_in("page_token", &r.page_token)?)
    };
    let before = |field, d: &Option<Duration>| -> Result<Option<UnixMillis>> {
        d.as_ref()
            .map(|d| Ok(UnixMillis(now.0.saturating_sub(millis_of(field, d)?))))
            .transpose()
    };
    Ok(TaskQuery {
        open,
        created_at_or_before: before("min_age", &r.min_age)?,
        created_at_or_after: before("max_age", &r.max_age)?,
        page_size: r.page_size as usize,
        after,
    })
}

/// The resolution asked for in a `ResolveReviewTask` request.
///
/// # Errors
/// [`Error::InvalidInput`] naming `action` or `euid`.
pub(crate) fn resolve_in(r: &pb::ResolveReviewTaskRequest) -> Result<ResolutionAction> {
    let euid = || {
        r.euid
            .as_deref()
            .ok_or_else(|| Error::invalid("euid", "missing (needed for LINK and MERGE)"))
            .and_then(|e| euid_in("euid", e))
    };
    match enum_value::<pb::ResolutionAction>("action", r.action)? {
        pb::ResolutionAction::Link => Ok(ResolutionAction::Link { euid: euid()? }),
        pb::ResolutionAction::Merge => Ok(ResolutionAction::Merge { into: euid()? }),
        pb::ResolutionAction::KeepSeparate => Ok(ResolutionAction::KeepSeparate),
        pb::ResolutionAction::Unspecified => Err(Error::invalid("action", "missing")),
        pb::ResolutionAction::Superseded => Err(Error::invalid(
            "action",
            "SUPERSEDED is set by the system, not requested",
        )),
    }
}

// ---- out ------------------------------------------------------------------------------------

/// A protocol timestamp.
pub(crate) fn timestamp(t: UnixMillis) -> Timestamp {
    Timestamp {
        seconds: t.0.div_euclid(1000),
        nanos: (t.0.rem_euclid(1000) * 1_000_000) as i32,
    }
}

fn sex_out(s: Sex) -> pb::Sex {
    match s {
        Sex::Unknown => pb::Sex::Unknown,
        Sex::Female => pb::Sex::Female,
        Sex::Male => pb::Sex::Male,
        Sex::Other => pb::Sex::Other,
    }
}

fn address_out(a: &Address) -> Option<pb::Address> {
    (!a.is_empty()).then(|| pb::Address {
        lines: a.lines.clone(),
        city: a.city.clone(),
        state: a.state.clone(),
        postal_code: a.postal_code.clone(),
        country: a.country.clone(),
    })
}

fn identifiers_out(ids: &[Identifier]) -> Vec<pb::Identifier> {
    ids.iter()
        .map(|i| pb::Identifier {
            system: i.system.clone(),
            value: i.value.clone(),
        })
        .collect()
}

/// A domain record as a protocol message (what a Rust client sends), e.g. the load
/// generator's requests.
impl From<&Record> for pb::PatientRecord {
    fn from(r: &Record) -> Self {
        record_out(r)
    }
}

/// A record as the protocol shows it.
pub(crate) fn record_out(r: &Record) -> pb::PatientRecord {
    pb::PatientRecord {
        source: r.source.clone(),
        local_id: r.local_id.clone(),
        given_name: r.given_name.clone(),
        middle_name: r.middle_name.clone(),
        family_name: r.family_name.clone(),
        previous_family_names: r.previous_family_names.clone(),
        birth_date: r.birth_date.map(|d| d.to_string()),
        sex: sex_out(r.sex) as i32,
        address: address_out(&r.address),
        phones: r.phones.clone(),
        email: r.email.clone(),
        identifiers: identifiers_out(&r.identifiers),
        multiple_birth_order: r.multiple_birth_order.map(u32::from),
    }
}

/// A record key.
pub(crate) fn key_out(k: &RecordKey) -> pb::RecordKey {
    pb::RecordKey {
        source: k.source.clone(),
        local_id: k.local_id.clone(),
    }
}

/// A stored record with its link.
pub(crate) fn linked_record_out(s: &StoredRecord) -> pb::LinkedRecord {
    let (method, score) = match s.link.method {
        LinkMethod::Created => (pb::LinkMethod::Created, None),
        LinkMethod::Auto { score } => (pb::LinkMethod::Auto, Some(score)),
        LinkMethod::Registrar => (pb::LinkMethod::Registrar, None),
        LinkMethod::Merge => (pb::LinkMethod::Merge, None),
    };
    pb::LinkedRecord {
        record: Some(record_out(&s.record)),
        euid: s.euid.to_string(),
        link: Some(pb::LinkInfo {
            method: method as i32,
            score,
            linked_at: Some(timestamp(s.link.at)),
            actor: s.link.actor.clone(),
        }),
        updated_at: Some(timestamp(s.updated_at)),
    }
}

fn explanation_out(e: &[ComparisonView]) -> Vec<pb::ComparisonExplanation> {
    e.iter()
        .map(|c| pb::ComparisonExplanation {
            comparison: c.comparison.clone(),
            level: c.level.clone(),
            weight: c.weight,
        })
        .collect()
}

fn candidate_out(c: &CandidateView) -> pb::Candidate {
    pb::Candidate {
        euid: c.euid.to_string(),
        score: c.score,
        probability: c.probability,
        best_record: c.best_record.as_ref().map(key_out),
        explanation: explanation_out(&c.explanation),
        reason: c.reason.map_or(String::new(), |r| r.text().to_string()),
    }
}

fn decision_out(d: Decision) -> pb::Decision {
    match d {
        Decision::Link => pb::Decision::Linked,
        Decision::New => pb::Decision::Created,
        Decision::Review => pb::Decision::Review,
    }
}

/// The response of `MatchOrCreate`.
pub(crate) fn match_result_out(r: MatchResult) -> pb::MatchOrCreateResponse {
    pb::MatchOrCreateResponse {
        euid: r.euid.to_string(),
        decision: decision_out(r.decision) as i32,
        score: r.score,
        probability: r.probability,
        explanation: explanation_out(&r.explanation),
        candidates: r.candidates.iter().map(candidate_out).collect(),
        review_task_id: r.review_task.map(|t| t.to_string()),
        unchanged: r.unchanged,
        model_version: r.model_version,
    }
}

/// The response of `Match`.
pub(crate) fn match_preview_out(p: MatchPreview) -> pb::MatchResponse {
    pb::MatchResponse {
        candidates: p.candidates.iter().map(candidate_out).collect(),
        decision: decision_out(p.decision) as i32,
        model_version: p.model_version,
    }
}

fn golden_out(g: &GoldenView) -> pb::GoldenView {
    pb::GoldenView {
        given_name: g.given_name.clone(),
        middle_name: g.middle_name.clone(),
        family_name: g.family_name.clone(),
        previous_family_names: g.previous_family_names.clone(),
        birth_date: g.birth_date.map(|d| d.to_string()),
        sex: sex_out(g.sex) as i32,
        address: address_out(&g.address),
        phones: g.phones.clone(),
        email: g.email.clone(),
        identifiers: identifiers_out(&g.identifiers),
        multiple_birth_order: g.multiple_birth_order.map(u32::from),
    }
}

fn history_out(h: &HistoryEntry) -> pb::HistoryEntry {
    let action = match h.action {
        HistoryAction::PersonCreated => pb::HistoryAction::PersonCreated,
        HistoryAction::RecordLinked => pb::HistoryAction::RecordLinked,
        HistoryAction::RecordUpdated => pb::HistoryAction::RecordUpdated,
        HistoryAction::RecordUnlinked => pb::HistoryAction::RecordUnlinked,
        HistoryAction::RecordRemoved => pb::HistoryAction::RecordRemoved,
        HistoryAction::MergedInto => pb::HistoryAction::MergedInto,
        HistoryAction::MergeAbsorbed => pb::HistoryAction::MergeAbsorbed,
        HistoryAction::Split => pb::HistoryAction::Split,
        HistoryAction::Retired => pb::HistoryAction::Retired,
        HistoryAction::NotDuplicateAsserted => pb::HistoryAction::NotDuplicateAsserted,
        HistoryAction::NotDuplicateRetracted => pb::HistoryAction::NotDuplicateRetracted,
        HistoryAction::ReviewOpened => pb::HistoryAction::ReviewOpened,
        HistoryAction::ReviewResolved => pb::HistoryAction::ReviewResolved,
    };
    pb::HistoryEntry {
        seq: h.seq,
        at: Some(timestamp(h.at)),
        actor: h.actor.clone(),
        action: action as i32,
        reason: h.reason.clone(),
        records: h.records.iter().map(key_out).collect(),
        euids: h.euids.iter().map(ToString::to_string).collect(),
        review_task_id: h.task.map(|t| t.to_string()),
    }
}

fn person_out(p: &Person, v: &PersonView) -> pb::Person {
    let (status, merged_into) = match &p.status {
        PersonStatus::Active => (pb::PersonStatus::Active, None),
        PersonStatus::MergedInto(e) => (pb::PersonStatus::Merged, Some(e.to_string())),
        PersonStatus::Retired => (pb::PersonStatus::Retired, None),
    };
    pb::Person {
        euid: p.euid.to_string(),
        status: status as i32,
        merged_into,
        created_at: Some(timestamp(p.created_at)),
        golden: Some(golden_out(&v.golden)),
        records: v.records.iter().map(linked_record_out).collect(),
        history: v.history.iter().map(history_out).collect(),
    }
}

/// The response of `GetPerson`.
pub(crate) fn person_view_out(v: PersonView) -> pb::GetPersonResponse {
    pb::GetPersonResponse {
        person: Some(person_out(&v.person, &v)),
        requested_euid: v.requested.to_string(),
        resolved_from_merge: !v.merge_path.is_empty(),
        merge_path: v.merge_path.iter().map(ToString::to_string).collect(),
    }
}

/// A resolution's action and the candidate it chose (for link and merge).
fn resolution_out(a: &ResolutionAction) -> (pb::ResolutionAction, Option<String>) {
    match a {
        ResolutionAction::Link { euid } => (pb::ResolutionAction::Link, Some(euid.to_string())),
        ResolutionAction::KeepSeparate => (pb::ResolutionAction::KeepSeparate, None),
        ResolutionAction::Merge { into } => (pb::ResolutionAction::Merge, Some(into.to_string())),
        ResolutionAction::Superseded => (pb::ResolutionAction::Superseded, None),
    }
}

/// A change feed event: keys and EUIDs only.
pub(crate) fn change_event_out(e: &ChangeEvent) -> pb::ChangeEvent {
    use pb::change_event::Change as Out;
    let euid = |e: &Euid| e.to_string();
    let of_person = |record: &RecordKey, e: &Euid| pb::RecordOfPerson {
        record: Some(key_out(record)),
        euid: e.to_string(),
    };
    let pair = |a: &Euid, b: &Euid| pb::PersonPair {
        euid_a: a.to_string(),
        euid_b: b.to_string(),
    };
    let keys = |ks: &[RecordKey]| ks.iter().map(key_out).collect();
    let change = match &e.change {
        Change::PersonCreated { euid: e, records } => Out::PersonCreated(pb::PersonCreated {
            euid: euid(e),
            records: keys(records),
        }),
        Change::RecordLinked { record, euid: e } => Out::RecordLinked(of_person(record, e)),
        Change::RecordUpdated { record, euid: e } => Out::RecordUpdated(of_person(record, e)),
        Change::RecordMoved { record, from, to } => Out::RecordMoved(pb::RecordMoved {
            record: Some(key_out(record)),
            from_euid: euid(from),
            to_euid: euid(to),
        }),
        Change::RecordUnlinked { record, from, to } => Out::RecordUnlinked(pb::RecordUnlinked {
            record: Some(key_out(record)),
            from_euid: euid(from),
            new_euid: euid(to),
        }),
        Change::RecordRemoved { record, euid: e } => Out::RecordRemoved(of_person(record, e)),
        Change::PersonRetired { euid: e } => {
            Out::PersonRetired(pb::PersonRetired { euid: euid(e) })
        }
        Change::PersonsMerged {
            merged,
            survivor,
            records,
        } => Out::PersonsMerged(pb::PersonsMerged {
            merged_euid: euid(merged),
            survivor_euid: euid(survivor),
            records: keys(records),
        }),
        Change::PersonSplit {
            euid: e,
            new_euid,
            records,
        } => Out::PersonSplit(pb::PersonSplit {
            euid: euid(e),
            new_euid: euid(new_euid),
            records: keys(records),
        }),
        Change::ReviewOpened {
            task,
            record,
            euid: e,
            candidates,
        } => Out::ReviewOpened(pb::ReviewOpened {
            task_id: task.to_string(),
            record: Some(key_out(record)),
            euid: euid(e),
            candidate_euids: candidates.iter().map(euid).collect(),
        }),
        Change::ReviewResolved {
            task,
            record,
            euid: e,
            resolution,
        } => {
            let (action, chosen) = resolution_out(resolution);
            Out::ReviewResolved(pb::ReviewResolved {
                task_id: task.to_string(),
                record: Some(key_out(record)),
                euid: e.as_ref().map(euid),
                action: action as i32,
                chosen_euid: chosen,
            })
        }
        Change::NotDuplicateAsserted { a, b } => Out::NotDuplicateAsserted(pair(a, b)),
        Change::NotDuplicateRetracted { a, b } => Out::NotDuplicateRetracted(pair(a, b)),
    };
    pb::ChangeEvent {
        sequence: e.seq,
        at: Some(timestamp(e.at)),
        change: Some(change),
    }
}

/// A review task.
pub(crate) fn task_out(v: &TaskView) -> pb::ReviewTask {
    let t = &v.task;
    let (status, resolution) = match &t.status {
        TaskStatus::Open => (pb::ReviewTaskStatus::Open, None),
        TaskStatus::Resolved(r) => {
            let (action, euid) = resolution_out(&r.action);
            let res = pb::Resolution {
                action: action as i32,
                euid,
                resolved_at: Some(timestamp(r.at)),
                actor: r.actor.clone(),
                reason: r.reason.clone(),
            };
            (pb::ReviewTaskStatus::Resolved, Some(res))
        }
    };
    pb::ReviewTask {
        task_id: t.id.to_string(),
        status: status as i32,
        created_at: Some(timestamp(t.created_at)),
        record: Some(key_out(&t.record)),
        record_euid: v.record_euid.as_ref().map(ToString::to_string),
        candidates: v.candidates.iter().map(candidate_out).collect(),
        resolution,
    }
}

/// The response of `GetStats`.
pub(crate) fn stats_out(s: ServiceStats) -> pb::GetStatsResponse {
    pb::GetStatsResponse {
        records: s.records,
        persons: s.persons,
        open_review_tasks: s.open_tasks,
        model_version: s.model_version,
        model_description: s.model_description,
        model_training: s.training.as_deref().map(training_out),
    }
}

fn training_out(t: &TrainingSummary) -> pb::ModelTraining {
    pb::ModelTraining {
        empi_version: t.empi_version.clone(),
        trained_at: t.trained_at.clone(),
        records: t.records,
        seed: t.seed,
        input: t.input.clone(),
        prior: t.prior,
        pairs_used: t.pairs_used(),
        runs: t.runs.iter().map(run_out).collect(),
        metadata_json: t.json.clone(),
    }
}

fn run_out(r: &RunSummary) -> pb::TrainingRun {
    pb::TrainingRun {
        rule: r.rule.clone(),
        pairs_used: r.pairs_used,
        distinct_patterns: r.distinct_patterns,
        iterations: r.iterations.unwrap_or_default(),
        converged: r.converged.unwrap_or_default(),
        skipped: r.skipped,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full() -> pb::PatientRecord {
        pb::PatientRecord {
            source: "adt".into(),
            local_id: "1".into(),
            given_name: Some("Ana".into()),
            middle_name: Some(" ".into()),
            family_name: Some("Lima".into()),
            previous_family_names: vec!["Souza".into(), "".into()],
            birth_date: Some("1970-05-06".into()),
            sex: pb::Sex::Female as i32,
            address: Some(pb::Address {
                lines: vec!["1 Main St".into()],
                city: Some("Lowell".into()),
                state: None,
                postal_code: Some("01852".into()),
                country: None,
            }),
            phones: vec!["555-201-3344".into()],
            email: None,
            identifiers: vec![pb::Identifier {
                system: "national_id".into(),
                value: "123-45-6780".into(),
            }],
            multiple_birth_order: Some(2),
        }
    }

    #[test]
    fn records_round_trip_and_blanks_are_absent() {
        let r = record_in(full()).unwrap();
        assert_eq!(r.middle_name, None);
        assert_eq!(r.previous_family_names, vec!["Souza".to_string()]);
        let back = record_out(&r);
        assert_eq!(record_in(back.clone()).unwrap(), r);
        assert_eq!(back.sex, pb::Sex::Female as i32);
        assert_eq!(back.birth_date.as_deref(), Some("1970-05-06"));
    }

    #[test]
    fn bad_values_name_their_field() {
        let mut p = full();
        p.sex = 9;
        let e = record_in(p).unwrap_err().to_string();
        assert!(e.contains("sex") && e.contains("adt/1"), "{e}");
        let mut p = full();
        p.birth_date = Some("1956-02-30".into());
        let e = record_in(p).unwrap_err().to_string();
        assert!(e.contains("birth_date") && !e.contains("1956"), "{e}");
        let mut p = full();
        p.multiple_birth_order = Some(300);
        assert!(record_in(p)
            .unwrap_err()
            .to_string()
            .contains("multiple_birth_order"));
        assert!(key_in(None).unwrap_err().to_string().contains("key"));
        let e = key_in(Some(pb::RecordKey {
            source: "a".into(),
            local_id: "".into(),
        }))
        .unwrap_err();
        assert!(e.to_string().contains("key.local_id"));
        assert!(euid_in("into_euid", "nope")
            .unwrap_err()
            .to_string()
            .contains("into_euid"));
        assert!(task_id_in("task_id", "")
            .unwrap_err()
            .to_string()
            .contains("task_id"));
    }

    #[test]
    fn task_queries_and_resolutions() {
        let now = UnixMillis(1_000_000);
        let q = task_query_in(
            &pb::ListReviewTasksRequest {
                page_size: 10,
                page_token: "T00000007".into(),
                status: pb::ReviewTaskStatus::Open as i32,
                min_age: Some(Duration {
                    seconds: 60,
                    nanos: 0,
                }),
                max_age: None,
            },
            now,
        )
        .unwrap();
        assert_eq!(q.open, Some(true));
        assert_eq!(q.after, Some(TaskId(7)));
        assert_eq!(q.created_at_or_before, Some(UnixMillis(940_000)));
        let bad = pb::ListReviewTasksRequest {
            status: 42,
            ..Default::default()
        };
        assert!(task_query_in(&bad, now)
            .unwrap_err()
            .to_string()
            .contains("status"));
        let r = pb::ResolveReviewTaskRequest {
            task_id: "T00000001".into(),
            action: pb::ResolutionAction::Link as i32,
            euid: None,
            actor: "reg".into(),
            reason: String::new(),
        };
        assert!(resolve_in(&r).unwrap_err().to_string().contains("euid"));
        let r = pb::ResolveReviewTaskRequest {
            action: pb::ResolutionAction::KeepSeparate as i32,
            ..r
        };
        assert_eq!(resolve_in(&r).unwrap(), ResolutionAction::KeepSeparate);
        assert_eq!(
            timestamp(UnixMillis(1_500)),
            Timestamp {
                seconds: 1,
                nanos: 500_000_000
            }
        );
    }

    #[test]
    fn stats_carry_the_model_and_its_training() {
        let run = |rule: &str, pairs_used, iterations: Option<u32>| RunSummary {
            rule: rule.into(),
            pairs_used,
            skipped: iterations.is_none(),
            iterations,
            converged: iterations.map(|_| true),
            ..Default::default()
        };
        let training = TrainingSummary {
            records: 500,
            runs: vec![run("birth_date", 40, Some(12)), run("national_id", 3, None)],
            json: "{}".into(),
            ..Default::default()
        };
        let stats = ServiceStats {
            records: 1,
            persons: 1,
            open_tasks: 0,
            model_version: "trained-1".into(),
            model_description: "trained".into(),
            training: Some(std::sync::Arc::new(training)),
            indexed_records: 1,
        };
        let out = stats_out(stats.clone());
        assert_eq!(out.model_version, "trained-1");
        let t = out.model_training.expect("training");
        assert_eq!(
            (t.records, t.pairs_used, t.metadata_json.as_str()),
            (500, 43, "{}")
        );
        assert_eq!((t.runs[0].iterations, t.runs[0].converged), (12, true));
        assert_eq!((t.runs[1].iterations, t.runs[1].skipped), (0, true));
        let untrained = ServiceStats {
            training: None,
            ..stats
        };
        assert_eq!(stats_out(untrained).model_training, None);
    }
}
