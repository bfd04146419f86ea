//! Each RPC's request message as the application layer's request ([`crate::app`]): read
//! and validated with the field conversions of `convert`, or [`Unreadable`] with the record
//! keys it carried as sent, so its audit line names them.

use crate::app::{
    Attribution, Incoming, LinkRecord, MarkNotDuplicate, MatchQuery, MergePersons, RemoveRecord,
    ResolveReviewTask, SplitPerson, Submit, UnlinkRecord, Unreadable,
};
use crate::error::Error;
use crate::record::{RecordKey, MAX_REPEATED};
use crate::store::{Euid, TaskId, TaskQuery, UnixMillis};

use super::convert::{euid_in, key_in, record_in, resolve_in, task_id_in, task_query_in};
use super::pb;

/// Who asks for a registrar action and why, as the request says.
fn attribution(actor: String, reason: String) -> Attribution {
    Attribution { actor, reason }
}

/// The record of a request that must carry one; unreadable with the key it names.
fn record_of(r: Option<pb::PatientRecord>) -> Incoming<crate::record::Record> {
    let r = r.ok_or_else(|| Error::invalid("record", "missing"))?;
    let (source, local_id) = (r.source.clone(), r.local_id.clone());
    record_in(r).map_err(|e| Unreadable::naming(e, &source, &local_id))
}

/// A record key a request must carry; unreadable with the key as sent.
fn key_of(k: Option<pb::RecordKey>) -> Incoming<RecordKey> {
    let sent = k
        .as_ref()
        .map(|k| RecordKey::new(k.source.clone(), k.local_id.clone()));
    key_in(k).map_err(|e| Unreadable {
        error: e,
        keys: sent.into_iter().collect(),
    })
}

/// `MatchOrCreate`.
pub(super) fn submit(r: pb::MatchOrCreateRequest) -> Incoming<Submit> {
    Ok(Submit {
        record: record_of(r.record)?,
        actor: r.actor,
    })
}

/// `Match`.
pub(super) fn match_query(r: pb::MatchRequest) -> Incoming<MatchQuery> {
    Ok(MatchQuery {
        record: record_of(r.record)?,
        max_candidates: r.max_candidates as usize,
    })
}

/// `GetPerson`.
pub(super) fn person(r: &pb::GetPersonRequest) -> Incoming<Euid> {
    Ok(euid_in("euid", &r.euid)?)
}

/// `GetRecord`.
pub(super) fn record_key(r: pb::GetRecordRequest) -> Incoming<RecordKey> {
    key_of(r.key)
}

/// `RemoveRecord`.
pub(super) fn remove(r: pb::RemoveRecordRequest) -> Incoming<RemoveRecord> {
    Ok(RemoveRecord {
        key: key_of(r.key)?,
        by: attribution(r.actor, r.reason),
    })
}

/// `Link`.
pub(super) fn link(r: pb::LinkRequest) -> Incoming<LinkRecord> {
    let key = key_of(r.key)?;
    let euid = euid_in("euid", &r.euid).map_err(|e| Unreadable {
        error: e,
        keys: vec![key.clone()],
    })?;
    Ok(LinkRecord {
        key,
        euid,
        by: attribution(r.actor, r.reason),
    })
}

/// `Unlink`.
pub(super) fn unlink(r: pb::UnlinkRequest) -> Incoming<UnlinkRecord> {
    Ok(UnlinkRecord {
        key: key_of(r.key)?,
        by: attribution(r.actor, r.reason),
    })
}

/// `MergePersons`.
pub(super) fn merge(r: pb::MergePersonsRequest) -> Incoming<MergePersons> {
    Ok(MergePersons {
        from: euid_in("from_euid", &r.from_euid)?,
        into: euid_in("into_euid", &r.into_euid)?,
        by: attribution(r.actor, r.reason),
    })
}

/// `SplitPerson`: at most [`MAX_REPEATED`] keys; an invalid one is named as
/// `records.source` / `records.local_id`.
pub(super) fn split(r: pb::SplitPersonRequest) -> Incoming<SplitPerson> {
    if r.records.len() > MAX_REPEATED {
        return Err(Error::invalid("records", format!("more than {MAX_REPEATED} values")).into());
    }
    let sent: Vec<RecordKey> = r
        .records
        .iter()
        .map(|k| RecordKey::new(k.source.clone(), k.local_id.clone()))
        .collect();
    let unreadable = |error| Unreadable {
        error,
        keys: sent.clone(),
    };
    let euid = euid_in("euid", &r.euid).map_err(unreadable)?;
    let keys = r
        .records
        .into_iter()
        .map(|k| key_in(Some(k)).map_err(|e| rename(e, "records")))
        .collect::<Result<Vec<_>, _>>()
        .map_err(unreadable)?;
    Ok(SplitPerson {
        euid,
        keys,
        by: attribution(r.actor, r.reason),
    })
}

/// `MarkNotDuplicate`.
pub(super) fn not_duplicate(r: pb::MarkNotDuplicateRequest) -> Incoming<MarkNotDuplicate> {
    Ok(MarkNotDuplicate {
        a: euid_in("euid_a", &r.euid_a)?,
        b: euid_in("euid_b", &r.euid_b)?,
        by: attribution(r.actor, r.reason),
    })
}

/// `ListReviewTasks`, ages taken relative to now.
pub(super) fn task_query(r: &pb::ListReviewTasksRequest) -> Incoming<TaskQuery> {
    Ok(task_query_in(r, UnixMillis::now())?)
}

/// `GetReviewTask`.
pub(super) fn task_id(r: &pb::GetReviewTaskRequest) -> Incoming<TaskId> {
    Ok(task_id_in("task_id", &r.task_id)?)
}

/// `ResolveReviewTask`.
pub(super) fn resolution(r: pb::ResolveReviewTaskRequest) -> Incoming<ResolveReviewTask> {
    Ok(ResolveReviewTask {
        task: task_id_in("task_id", &r.task_id)?,
        action: resolve_in(&r)?,
        by: attribution(r.actor, r.reason),
    })
}

/// Renames the field of an input error (`key.source` → `records.source` for a list).
fn rename(e: Error, list: &'static str) -> Error {
    match e {
        Error::InvalidInput { key, field, reason } => Error::InvalidInput {
            key,
            field: field.replacen("key", list, 1).into(),
            reason,
        },
        other => other,
    }
}

/// `WatchChanges`.
pub(super) fn watch(r: &pb::WatchChangesRequest) -> Incoming<u64> {
    Ok(r.after_sequence)
}
