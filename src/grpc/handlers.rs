//! The tonic handlers of `empi.v1.Empi`: each validates and converts its request, calls the
//! service, and converts the answer back. No decisions are made here.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use crate::error::Error;
use crate::service::Service;
use crate::store::UnixMillis;

use super::convert::{self, euid_in, key_in, task_id_in};
use super::pb;

/// The `empi.v1.Empi` gRPC API over a [`Service`].
#[derive(Debug, Clone)]
pub struct EmpiApi {
    service: Arc<Service>,
}

impl EmpiApi {
    /// The API over a service.
    pub fn new(service: Arc<Service>) -> Self {
        EmpiApi { service }
    }
}

type Reply<T> = Result<Response<T>, Status>;

fn ok<T>(v: T) -> Reply<T> {
    Ok(Response::new(v))
}

#[tonic::async_trait]
impl pb::empi_server::Empi for EmpiApi {
    async fn match_or_create(
        &self,
        request: Request<pb::MatchOrCreateRequest>,
    ) -> Reply<pb::MatchOrCreateResponse> {
        let r = request.into_inner();
        let record = convert::record_in(
            r.record
                .ok_or_else(|| Error::invalid("record", "missing"))?,
        )?;
        let result = self.service.match_or_create(record, &r.actor).await?;
        ok(convert::match_result_out(result))
    }

    async fn r#match(&self, request: Request<pb::MatchRequest>) -> Reply<pb::MatchResponse> {
        let r = request.into_inner();
        let record = convert::record_in(
            r.record
                .ok_or_else(|| Error::invalid("record", "missing"))?,
        )?;
        let preview = self
            .service
            .match_only(&record, r.max_candidates as usize)?;
        ok(convert::match_preview_out(preview))
    }

    async fn get_person(
        &self,
        request: Request<pb::GetPersonRequest>,
    ) -> Reply<pb::GetPersonResponse> {
        let euid = euid_in("euid", &request.get_ref().euid)?;
        ok(convert::person_view_out(self.service.get_person(&euid)?))
    }

    async fn get_record(
        &self,
        request: Request<pb::GetRecordRequest>,
    ) -> Reply<pb::GetRecordResponse> {
        let key = key_in(request.into_inner().key)?;
        let stored = self.service.get_record(&key)?;
        ok(pb::GetRecordResponse {
            record: Some(convert::linked_record_out(&stored)),
        })
    }

    async fn remove_record(
        &self,
        request: Request<pb::RemoveRecordRequest>,
    ) -> Reply<pb::RemoveRecordResponse> {
        let r = request.into_inner();
        let key = key_in(r.key)?;
        let removed = self
            .service
            .remove_record(&key, &r.actor, &r.reason)
            .await?;
        ok(pb::RemoveRecordResponse {
            former_euid: removed.euid.to_string(),
            person_retired: removed.retired,
        })
    }

    async fn link(&self, request: Request<pb::LinkRequest>) -> Reply<pb::LinkResponse> {
        let r = request.into_inner();
        let key = key_in(r.key)?;
        let euid = euid_in("euid", &r.euid)?;
        let moved = self.service.link(&key, &euid, &r.actor, &r.reason).await?;
        ok(pb::LinkResponse {
            euid: moved.to.to_string(),
            previous_euid: moved.from.to_string(),
            previous_person_retired: moved.from_retired,
        })
    }

    async fn unlink(&self, request: Request<pb::UnlinkRequest>) -> Reply<pb::UnlinkResponse> {
        let r = request.into_inner();
        let key = key_in(r.key)?;
        let moved = self.service.unlink(&key, &r.actor, &r.reason).await?;
        ok(pb::UnlinkResponse {
            new_euid: moved.to.to_string(),
            previous_euid: moved.from.to_string(),
            previous_person_retired: moved.from_retired,
        })
    }

    async fn merge_persons(
        &self,
        request: Request<pb::MergePersonsRequest>,
    ) -> Reply<pb::MergePersonsResponse> {
        let r = request.into_inner();
        let from = euid_in("from_euid", &r.from_euid)?;
        let into = euid_in("into_euid", &r.into_euid)?;
        let merged = self
            .service
            .merge_persons(&from, &into, &r.actor, &r.reason)
            .await?;
        ok(pb::MergePersonsResponse {
            survivor_euid: merged.survivor.to_string(),
            records_moved: u32::try_from(merged.records_moved).unwrap_or(u32::MAX),
        })
    }

    async fn split_person(
        &self,
        request: Request<pb::SplitPersonRequest>,
    ) -> Reply<pb::SplitPersonResponse> {
        let r = request.into_inner();
        let euid = euid_in("euid", &r.euid)?;
        let keys = r
            .records
            .into_iter()
            .map(|k| key_in(Some(k)).map_err(|e| rename(e, "records")))
            .collect::<Result<Vec<_>, _>>()?;
        let split = self
            .service
            .split_person(&euid, &keys, &r.actor, &r.reason)
            .await?;
        ok(pb::SplitPersonResponse {
            euid: split.euid.to_string(),
            new_euid: split.new_euid.to_string(),
        })
    }

    async fn mark_not_duplicate(
        &self,
        request: Request<pb::MarkNotDuplicateRequest>,
    ) -> Reply<pb::MarkNotDuplicateResponse> {
        let r = request.into_inner();
        let a = euid_in("euid_a", &r.euid_a)?;
        let b = euid_in("euid_b", &r.euid_b)?;
        self.service
            .mark_not_duplicate(&a, &b, &r.actor, &r.reason)
            .await?;
        ok(pb::MarkNotDuplicateResponse {})
    }

    async fn list_review_tasks(
        &self,
        request: Request<pb::ListReviewTasksRequest>,
    ) -> Reply<pb::ListReviewTasksResponse> {
        let query = convert::task_query_in(request.get_ref(), UnixMillis::now())?;
        let (tasks, next) = self.service.list_tasks(&query)?;
        ok(pb::ListReviewTasksResponse {
            tasks: tasks.iter().map(convert::task_out).collect(),
            next_page_token: next.map(|t| t.to_string()).unwrap_or_default(),
        })
    }

    async fn get_review_task(
        &self,
        request: Request<pb::GetReviewTaskRequest>,
    ) -> Reply<pb::GetReviewTaskResponse> {
        let id = task_id_in("task_id", &request.get_ref().task_id)?;
        let task = self.service.get_task(id)?;
        ok(pb::GetReviewTaskResponse {
            task: Some(convert::task_out(&task)),
        })
    }

    async fn resolve_review_task(
        &self,
        request: Request<pb::ResolveReviewTaskRequest>,
    ) -> Reply<pb::ResolveReviewTaskResponse> {
        let r = request.into_inner();
        let id = task_id_in("task_id", &r.task_id)?;
        let resolution = convert::resolve_in(&r)?;
        let (task, euid) = self
            .service
            .resolve_task(id, &resolution, &r.actor, &r.reason)
            .await?;
        ok(pb::ResolveReviewTaskResponse {
            task: Some(convert::task_out(&task)),
            record_euid: euid.to_string(),
        })
    }

    async fn get_stats(
        &self,
        _request: Request<pb::GetStatsRequest>,
    ) -> Reply<pb::GetStatsResponse> {
        let s = self.service.stats()?;
        ok(pb::GetStatsResponse {
            records: s.records,
            persons: s.persons,
            open_review_tasks: s.open_tasks,
            model_version: s.model_version,
        })
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
