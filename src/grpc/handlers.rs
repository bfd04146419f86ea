//! The tonic handlers of `empi.v1.Empi`: each validates and converts its request, calls the
//! service as the authenticated caller, audits the call, and converts the answer back
//! (trimmed to the minimum necessary for submitters). No decisions are made here. The
//! steps every RPC shares (caller, audit entry, error → status, audit before answering)
//! live in one place, `EmpiApi::call`; a handler holds only what is its own.
//! `MatchOrCreate`, the machine clients' hot path, goes through `EmpiApi::call_durable`,
//! where the audit trail's writer makes the change durable in the same cycle as it syncs
//! the entry.
//!
//! The [`crate::auth::Guard`] in front has already authenticated the caller, checked the
//! RPC against its role, and put its [`Identity`] in the request extensions; handlers add
//! the checks that need the request body (a submitter's own source) and the audit entry
//! naming the record keys and EUIDs touched. The actor recorded in history is that
//! identity; the requests' `actor` fields are ignored, except on a server running without
//! authentication (local development), where the claim is all there is.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use crate::auth::audit::Intent;
use crate::auth::guard::{code_name, Reached};
use crate::auth::{audit, AuditEntry, AuditLog, AuditOutcome, Identity, Operation, Space};
use crate::error::Error;
use crate::record::{Record, RecordKey, MAX_REPEATED};
use crate::service::{Pending, Service};
use crate::store::UnixMillis;

use super::convert::{self, euid_in, key_in, task_id_in};
use super::pb;

/// The `empi.v1.Empi` gRPC API over a [`Service`].
#[derive(Debug, Clone)]
pub struct EmpiApi {
    service: Arc<Service>,
    audit: Option<Arc<AuditLog>>,
    space: Option<Arc<Space>>,
}

impl EmpiApi {
    /// The API over a service, auditing nothing (in-process tests).
    pub fn new(service: Arc<Service>) -> Self {
        EmpiApi {
            service,
            audit: None,
            space: None,
        }
    }

    /// The API over a service, appending an entry to `audit` for every call.
    pub fn with_audit(service: Arc<Service>, audit: Option<Arc<AuditLog>>) -> Self {
        EmpiApi {
            service,
            audit,
            space: None,
        }
    }

    /// Refuses writes (`RESOURCE_EXHAUSTED`) while `space` says the disk is nearly full.
    pub fn with_space(mut self, space: Option<Arc<Space>>) -> Self {
        self.space = space;
        self
    }

    /// Runs one call the way every RPC runs: the caller the guard authenticated, an audit
    /// entry for `op` started, then `body` with the caller, the request message and the
    /// entry (it names the record keys and EUIDs it touches as it goes, so a refused or
    /// failed call is audited with what it had reached, and a write takes its intent,
    /// [`Audited::intend`], before it changes anything). Library errors become their
    /// status ([`Status::from`]); the outcome is audited before the answer leaves.
    async fn call<Req, Res>(
        &self,
        op: Operation,
        request: Request<Req>,
        body: impl AsyncFnOnce(&Identity, Req, &mut Audited) -> Result<Res, Status>,
    ) -> Reply<Res> {
        let (who, mut entry) = self.caller(&request, op)?;
        let result = body(&who, request.into_inner(), &mut entry).await;
        self.finish(entry, result.map(Response::new)).await
    }

    /// [`EmpiApi::call`] for a write whose body returns once its change is applied but
    /// perhaps not yet durable ([`Pending`]). With an audit trail, its writer thread makes
    /// the change durable as part of the cycle that syncs the entry
    /// ([`AuditLog::append_after`]): one hand-off and one batch for both syncs, instead of
    /// the store's group commit followed by the trail's. Both are on disk before the answer
    /// leaves. When the change cannot be made durable, the call fails and a second entry
    /// for it records the error after the first one's `ok`.
    async fn call_durable<Req, Res>(
        &self,
        op: Operation,
        request: Request<Req>,
        body: impl AsyncFnOnce(&Identity, Req, &mut Audited) -> Result<(Res, Pending), Status>,
    ) -> Reply<Res> {
        let (who, mut entry) = self.caller(&request, op)?;
        let (res, pending) = match body(&who, request.into_inner(), &mut entry).await {
            Ok(applied) => applied,
            Err(status) => return self.finish(entry, Err(status)).await,
        };
        let Some(audit) = &self.audit else {
            self.service.wait_durable(pending).await?;
            return Ok(Response::new(res));
        };
        let service = Arc::clone(&self.service);
        let intent = entry.intent.take();
        match audit
            .append_after(&entry.entry, intent, move || service.make_durable(pending))
            .await
        {
            Ok(Ok(())) => Ok(Response::new(res)),
            Ok(Err(e)) => self.finish(entry, Err(Status::from(e))).await,
            Err(e) => {
                tracing::error!("{e}");
                Err(Status::unavailable("audit trail unavailable"))
            }
        }
    }

    /// Appends the audit entry of a finished call and passes its result through. A call
    /// whose audit entry cannot be written fails with `UNAVAILABLE` (any change it made
    /// stands, and its intent's line is written in its place; every call is safe to
    /// retry).
    async fn finish<T>(&self, audited: Audited, result: Reply<T>) -> Reply<T> {
        let Audited {
            mut entry, intent, ..
        } = audited;
        match &result {
            Ok(_) => entry.outcome = AuditOutcome::Ok,
            Err(s) => {
                entry.outcome = if s.code() == tonic::Code::PermissionDenied {
                    AuditOutcome::Denied
                } else {
                    AuditOutcome::Error
                };
                entry.code = Some(code_name(s.code()).to_string());
            }
        }
        if let Some(audit) = &self.audit {
            if let Err(e) = audit.append_for(&entry, intent).await {
                tracing::error!("{e}");
                return Err(Status::unavailable("audit trail unavailable"));
            }
        }
        result
    }

    /// The caller put in the extensions by the guard, and an audit entry for `op` started.
    fn caller<T>(
        &self,
        request: &Request<T>,
        op: Operation,
    ) -> Result<(Identity, Audited), Status> {
        let who = request
            .extensions()
            .get::<Identity>()
            .cloned()
            // The guard inserts it for every call it lets through; a missing one means a
            // server assembled without the guard, which must not serve anything.
            .ok_or_else(|| Status::unauthenticated("no authenticated identity"))?;
        if let Some(reached) = request.extensions().get::<Reached>() {
            reached.mark();
        }
        let mut entry = AuditEntry::for_op(Some(&who), op, AuditOutcome::Ok);
        entry.peer = request.remote_addr().map(|a| a.to_string());
        Ok((
            who,
            Audited {
                entry,
                intent: None,
                log: self.audit.clone(),
                space: self.space.clone(),
            },
        ))
    }
}

/// A call's audit entry as its handler fills it in (it dereferences to the
/// [`AuditEntry`]), and the write's intent once taken.
struct Audited {
    entry: AuditEntry,
    intent: Option<Intent>,
    log: Option<Arc<AuditLog>>,
    space: Option<Arc<Space>>,
}

impl Audited {
    /// For a write, right before it changes anything: refuses it while the disk is nearly
    /// full ([`Space`]), then keeps the entry as it stands (keys and EUIDs named so far)
    /// in the store ([`AuditLog::intend`]), so no change of the call can be stored without
    /// a line in the trail, whatever the client is told.
    fn intend(&mut self) -> Result<(), Status> {
        if let Some(why) = self.space.as_ref().and_then(|s| s.refusal()) {
            return Err(Status::resource_exhausted(why));
        }
        if let Some(log) = &self.log {
            self.intent = log.intend(&self.entry).map_err(|e| {
                tracing::error!("{e}");
                Status::unavailable("audit trail unavailable")
            })?;
        }
        Ok(())
    }
}

impl std::ops::Deref for Audited {
    type Target = AuditEntry;
    fn deref(&self) -> &AuditEntry {
        &self.entry
    }
}

impl std::ops::DerefMut for Audited {
    fn deref_mut(&mut self) -> &mut AuditEntry {
        &mut self.entry
    }
}

type Reply<T> = Result<Response<T>, Status>;

/// `PERMISSION_DENIED` unless the caller may use records of `source`.
fn own_source(who: &Identity, source: &str) -> Result<(), Status> {
    if who.may_use_source(source) {
        Ok(())
    } else {
        Err(Status::permission_denied(
            "a submitter may use records of its own source(s) only",
        ))
    }
}

/// Trims a candidate to what a submitter needs: EUID and scores; a best record key only
/// of the submitter's own sources; no per-field explanation of other patients.
fn trim_candidate(who: &Identity, c: &mut pb::Candidate) {
    c.explanation.clear();
    if c.best_record
        .as_ref()
        .is_some_and(|k| !who.may_use_source(&k.source))
    {
        c.best_record = None;
    }
}

/// The record of a request that must carry one, its key named in the audit entry first
/// (in its bounded form, [`audit::key_form`], when it is not a valid key).
fn record_of(r: Option<pb::PatientRecord>, a: &mut AuditEntry) -> Result<Record, Error> {
    let r = r.ok_or_else(|| Error::invalid("record", "missing"))?;
    a.records.push(audit::key_form(&r.source, &r.local_id));
    convert::record_in(r)
}

/// The record key of a request, named in the audit entry first as [`record_of`] does.
fn key_of(k: Option<pb::RecordKey>, a: &mut AuditEntry) -> Result<RecordKey, Error> {
    if let Some(k) = &k {
        a.records.push(audit::key_form(&k.source, &k.local_id));
    }
    key_in(k)
}

#[tonic::async_trait]
impl pb::empi_server::Empi for EmpiApi {
    async fn match_or_create(
        &self,
        request: Request<pb::MatchOrCreateRequest>,
    ) -> Reply<pb::MatchOrCreateResponse> {
        self.call_durable(Operation::MatchOrCreate, request, async |who, r, a| {
            let record = record_of(r.record, a)?;
            own_source(who, &record.key().source)?;
            a.intend()?;
            let (result, pending) = self
                .service
                .match_or_create_applied(record, who.actor(&r.actor))
                .await?;
            a.euids.push(result.euid.to_string());
            let mut out = convert::match_result_out(result);
            if who.minimum_necessary() {
                out.explanation.clear();
                out.candidates
                    .iter_mut()
                    .for_each(|c| trim_candidate(who, c));
            }
            Ok((out, pending))
        })
        .await
    }

    async fn r#match(&self, request: Request<pb::MatchRequest>) -> Reply<pb::MatchResponse> {
        self.call(Operation::Match, request, async |who, r, a| {
            let record = record_of(r.record, a)?;
            let preview = self
                .service
                .match_only(&record, r.max_candidates as usize)?;
            let mut out = convert::match_preview_out(preview);
            a.euids
                .extend(out.candidates.iter().map(|c| c.euid.clone()));
            if who.minimum_necessary() {
                out.candidates
                    .iter_mut()
                    .for_each(|c| trim_candidate(who, c));
            }
            Ok(out)
        })
        .await
    }

    async fn get_person(
        &self,
        request: Request<pb::GetPersonRequest>,
    ) -> Reply<pb::GetPersonResponse> {
        self.call(Operation::GetPerson, request, async |_, r, a| {
            let euid = euid_in("euid", &r.euid)?;
            a.euids.push(euid.to_string());
            let view = self.service.get_person(&euid)?;
            a.records
                .extend(view.records.iter().map(|r| r.record.key().to_string()));
            Ok(convert::person_view_out(view))
        })
        .await
    }

    async fn get_record(
        &self,
        request: Request<pb::GetRecordRequest>,
    ) -> Reply<pb::GetRecordResponse> {
        self.call(Operation::GetRecord, request, async |who, r, a| {
            let key = key_of(r.key, a)?;
            own_source(who, &key.source)?;
            let stored = self.service.get_record(&key)?;
            let out = convert::linked_record_out(&stored);
            a.euids.push(out.euid.clone());
            Ok(pb::GetRecordResponse { record: Some(out) })
        })
        .await
    }

    async fn remove_record(
        &self,
        request: Request<pb::RemoveRecordRequest>,
    ) -> Reply<pb::RemoveRecordResponse> {
        self.call(Operation::RemoveRecord, request, async |who, r, a| {
            let key = key_of(r.key, a)?;
            a.intend()?;
            let removed = self
                .service
                .remove_record(&key, who.actor(&r.actor), &r.reason)
                .await?;
            a.euids.push(removed.euid.to_string());
            Ok(pb::RemoveRecordResponse {
                former_euid: removed.euid.to_string(),
                person_retired: removed.retired,
            })
        })
        .await
    }

    async fn link(&self, request: Request<pb::LinkRequest>) -> Reply<pb::LinkResponse> {
        self.call(Operation::Link, request, async |who, r, a| {
            let key = key_of(r.key, a)?;
            let euid = euid_in("euid", &r.euid)?;
            a.euids.push(euid.to_string());
            a.intend()?;
            let moved = self
                .service
                .link(&key, &euid, who.actor(&r.actor), &r.reason)
                .await?;
            a.euids.push(moved.from.to_string());
            Ok(pb::LinkResponse {
                euid: moved.to.to_string(),
                previous_euid: moved.from.to_string(),
                previous_person_retired: moved.from_retired,
            })
        })
        .await
    }

    async fn unlink(&self, request: Request<pb::UnlinkRequest>) -> Reply<pb::UnlinkResponse> {
        self.call(Operation::Unlink, request, async |who, r, a| {
            let key = key_of(r.key, a)?;
            a.intend()?;
            let moved = self
                .service
                .unlink(&key, who.actor(&r.actor), &r.reason)
                .await?;
            a.euids
                .extend([moved.from.to_string(), moved.to.to_string()]);
            Ok(pb::UnlinkResponse {
                new_euid: moved.to.to_string(),
                previous_euid: moved.from.to_string(),
                previous_person_retired: moved.from_retired,
            })
        })
        .await
    }

    async fn merge_persons(
        &self,
        request: Request<pb::MergePersonsRequest>,
    ) -> Reply<pb::MergePersonsResponse> {
        self.call(Operation::MergePersons, request, async |who, r, a| {
            let from = euid_in("from_euid", &r.from_euid)?;
            let into = euid_in("into_euid", &r.into_euid)?;
            a.euids.extend([from.to_string(), into.to_string()]);
            a.intend()?;
            let merged = self
                .service
                .merge_persons(&from, &into, who.actor(&r.actor), &r.reason)
                .await?;
            Ok(pb::MergePersonsResponse {
                survivor_euid: merged.survivor.to_string(),
                records_moved: u32::try_from(merged.records_moved).unwrap_or(u32::MAX),
            })
        })
        .await
    }

    async fn split_person(
        &self,
        request: Request<pb::SplitPersonRequest>,
    ) -> Reply<pb::SplitPersonResponse> {
        self.call(Operation::SplitPerson, request, async |who, r, a| {
            let euid = euid_in("euid", &r.euid)?;
            a.euids.push(euid.to_string());
            if r.records.len() > MAX_REPEATED {
                return Err(
                    Error::invalid("records", format!("more than {MAX_REPEATED} values")).into(),
                );
            }
            let keys = r
                .records
                .into_iter()
                .map(|k| key_of(Some(k), a).map_err(|e| rename(e, "records")))
                .collect::<Result<Vec<_>, _>>()?;
            a.intend()?;
            let split = self
                .service
                .split_person(&euid, &keys, who.actor(&r.actor), &r.reason)
                .await?;
            a.euids.push(split.new_euid.to_string());
            Ok(pb::SplitPersonResponse {
                euid: split.euid.to_string(),
                new_euid: split.new_euid.to_string(),
            })
        })
        .await
    }

    async fn mark_not_duplicate(
        &self,
        request: Request<pb::MarkNotDuplicateRequest>,
    ) -> Reply<pb::MarkNotDuplicateResponse> {
        self.call(Operation::MarkNotDuplicate, request, async |who, r, a| {
            let ea = euid_in("euid_a", &r.euid_a)?;
            let eb = euid_in("euid_b", &r.euid_b)?;
            a.euids.extend([ea.to_string(), eb.to_string()]);
            a.intend()?;
            self.service
                .mark_not_duplicate(&ea, &eb, who.actor(&r.actor), &r.reason)
                .await?;
            Ok(pb::MarkNotDuplicateResponse {})
        })
        .await
    }

    async fn list_review_tasks(
        &self,
        request: Request<pb::ListReviewTasksRequest>,
    ) -> Reply<pb::ListReviewTasksResponse> {
        self.call(Operation::ListReviewTasks, request, async |_, r, a| {
            let query = convert::task_query_in(&r, UnixMillis::now())?;
            let (tasks, next) = self.service.list_tasks(&query)?;
            a.records
                .extend(tasks.iter().map(|t| t.task.record.to_string()));
            Ok(pb::ListReviewTasksResponse {
                tasks: tasks.iter().map(convert::task_out).collect(),
                next_page_token: next.map(|t| t.to_string()).unwrap_or_default(),
            })
        })
        .await
    }

    async fn get_review_task(
        &self,
        request: Request<pb::GetReviewTaskRequest>,
    ) -> Reply<pb::GetReviewTaskResponse> {
        self.call(Operation::GetReviewTask, request, async |_, r, a| {
            let id = task_id_in("task_id", &r.task_id)?;
            let task = self.service.get_task(id)?;
            a.records.push(task.task.record.to_string());
            a.euids
                .extend(task.candidates.iter().map(|c| c.euid.to_string()));
            Ok(pb::GetReviewTaskResponse {
                task: Some(convert::task_out(&task)),
            })
        })
        .await
    }

    async fn resolve_review_task(
        &self,
        request: Request<pb::ResolveReviewTaskRequest>,
    ) -> Reply<pb::ResolveReviewTaskResponse> {
        self.call(Operation::ResolveReviewTask, request, async |who, r, a| {
            let id = task_id_in("task_id", &r.task_id)?;
            let resolution = convert::resolve_in(&r)?;
            // The task's record, named before the change (the intent carries it).
            a.records
                .push(self.service.get_task(id)?.task.record.to_string());
            a.intend()?;
            let (task, euid) = self
                .service
                .resolve_task(id, &resolution, who.actor(&r.actor), &r.reason)
                .await?;
            a.euids.push(euid.to_string());
            Ok(pb::ResolveReviewTaskResponse {
                task: Some(convert::task_out(&task)),
                record_euid: euid.to_string(),
            })
        })
        .await
    }

    async fn get_stats(
        &self,
        request: Request<pb::GetStatsRequest>,
    ) -> Reply<pb::GetStatsResponse> {
        self.call(Operation::GetStats, request, async |_, _, _| {
            Ok(convert::stats_out(self.service.stats()?))
        })
        .await
    }
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;
    use crate::auth::audit;
    use crate::linker::Linker;
    use crate::service::ServiceConfig;
    use crate::store::MemoryStore;
    use pb::empi_server::Empi;

    fn submit(id: &str) -> Request<pb::MatchOrCreateRequest> {
        let record = Record {
            source: "adt".into(),
            local_id: id.into(),
            given_name: Some("Margaret".into()),
            family_name: Some("Okonkwo".into()),
            birth_date: Some("1961-07-02".parse().unwrap()),
            ..Default::default()
        };
        let mut request = Request::new(pb::MatchOrCreateRequest {
            record: Some(convert::record_out(&record)),
            actor: String::new(),
        });
        request.extensions_mut().insert(Identity::local_dev());
        request
    }

    /// A store whose flushes fail while `failing` is set, under an audited API.
    fn api(failing: &Arc<AtomicBool>, data: &std::path::Path) -> EmpiApi {
        let fail = Arc::clone(failing);
        let store = MemoryStore::with_flusher(Arc::new(move || {
            if fail.load(Ordering::SeqCst) {
                Err(Error::Storage("disk gone".into()))
            } else {
                Ok(())
            }
        }));
        let service = Service::open(
            Arc::new(store),
            Linker::with_default_model(),
            ServiceConfig::default(),
        )
        .unwrap();
        EmpiApi::with_audit(
            Arc::new(service),
            Some(Arc::new(AuditLog::open(data).unwrap())),
        )
    }

    /// A write whose audit line could not be written is told so, yet its change may be
    /// stored (here: flushed by the store afterwards, as sled's own flusher may): it still
    /// gets its line, from the intent kept in the store before the change.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_write_told_failed_but_stored_still_has_its_audit_line() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(crate::store::SledStore::open(dir.path()).unwrap());
        let log = Arc::new(AuditLog::open_staged(dir.path(), store.clone()).unwrap());
        let service = Service::open(
            store.clone(),
            Linker::with_default_model(),
            ServiceConfig::default(),
        )
        .unwrap();
        let api = EmpiApi::with_audit(Arc::new(service), Some(log.clone()));
        log.fail_next_writes(1);
        let status = api.match_or_create(submit("9")).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::Unavailable);
        use crate::store::Store;
        store.flush().unwrap();
        let key = crate::record::RecordKey::new("adt", "9");
        assert!(
            store.get_record(&key).unwrap().is_some(),
            "the change is stored"
        );
        drop(api);
        drop(Arc::into_inner(log).expect("the only handle"));
        drop(AuditLog::open_staged(dir.path(), store).unwrap());
        let entries = audit::read(dir.path(), None, None).unwrap().entries;
        assert!(
            entries
                .iter()
                .any(|e| e.records == ["adt/9"] && e.outcome == AuditOutcome::Interrupted),
            "{entries:?}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn match_or_create_is_audited_once_when_durable_and_twice_when_not() {
        let dir = tempfile::tempdir().unwrap();
        let failing = Arc::new(AtomicBool::new(false));
        let api = api(&failing, dir.path());

        let first = api.match_or_create(submit("1")).await.unwrap().into_inner();
        let entries = audit::read(dir.path(), None, None).unwrap().entries;
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].outcome, AuditOutcome::Ok);
        assert_eq!(entries[0].records, ["adt/1"]);
        assert_eq!(entries[0].euids, [first.euid]);

        failing.store(true, Ordering::SeqCst);
        let status = api.match_or_create(submit("2")).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::Unavailable);
        let entries = audit::read(dir.path(), None, None).unwrap().entries;
        assert_eq!(entries.len(), 3, "{entries:?}");
        let (applied, failed) = (&entries[1], &entries[2]);
        assert_eq!(applied.outcome, AuditOutcome::Ok);
        assert_eq!(failed.outcome, AuditOutcome::Error);
        assert_eq!(failed.code.as_deref(), Some("UNAVAILABLE"));
        assert_eq!(applied.records, ["adt/2"]);
        assert_eq!(failed.records, applied.records);
        assert_eq!(failed.euids, applied.euids);
    }
}
