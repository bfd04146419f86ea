//! The tonic handlers of `empi.v1.Empi`. Each is a conversion, one call into the
//! application layer ([`App`]), and a conversion back: roles, a submitter's sources, the
//! audit line, durability and the minimum-necessary trimming all happen in that call, the
//! same for every front door.
//!
//! The [`Guard`](super::Guard) in front has authenticated the caller and put its [`Caller`]
//! (identity and peer address) in the request extensions; [`Reached`] tells it the call
//! got here, so the application layer audited it.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use crate::app::{App, Caller};

use super::convert;
use super::guard::Reached;
use super::pb;
use super::requests;

/// The `empi.v1.Empi` gRPC API over the application layer.
#[derive(Debug, Clone)]
pub struct EmpiApi {
    app: Arc<App>,
}

impl EmpiApi {
    /// The API over `app`.
    pub fn new(app: Arc<App>) -> Self {
        EmpiApi { app }
    }
}

type Reply<T> = Result<Response<T>, Status>;

/// The stream of a `WatchChanges` call.
pub type ChangeStream = std::pin::Pin<
    Box<dyn tokio_stream::Stream<Item = Result<pb::WatchChangesResponse, Status>> + Send>,
>;

/// The caller the guard put in the extensions (taken out of them), marking the call
/// reached.
fn caller<T>(request: &mut Request<T>) -> Result<Caller, Status> {
    if let Some(reached) = request.extensions().get::<Reached>() {
        reached.mark();
    }
    request
        .extensions_mut()
        .remove::<Caller>()
        // The guard inserts it for every call it lets through; a missing one means a
        // server assembled without the guard, which must not serve anything.
        .ok_or_else(|| Status::unauthenticated("no authenticated identity"))
}

/// An answer as a reply.
fn reply<T, U>(answer: crate::Result<T>, out: impl FnOnce(T) -> U) -> Reply<U> {
    answer.map(|a| Response::new(out(a))).map_err(Status::from)
}

#[tonic::async_trait]
impl pb::empi_server::Empi for EmpiApi {
    async fn match_or_create(
        &self,
        mut request: Request<pb::MatchOrCreateRequest>,
    ) -> Reply<pb::MatchOrCreateResponse> {
        let who = caller(&mut request)?;
        let submitted = requests::submit(request.into_inner());
        let answer = self.app.match_or_create(&who, submitted).await;
        reply(answer, convert::match_result_out)
    }

    async fn r#match(&self, mut request: Request<pb::MatchRequest>) -> Reply<pb::MatchResponse> {
        let who = caller(&mut request)?;
        let query = requests::match_query(request.into_inner());
        let answer = self.app.match_only(&who, query).await;
        reply(answer, convert::match_preview_out)
    }

    async fn get_person(
        &self,
        mut request: Request<pb::GetPersonRequest>,
    ) -> Reply<pb::GetPersonResponse> {
        let who = caller(&mut request)?;
        let euid = requests::person(request.get_ref());
        let answer = self.app.get_person(&who, euid).await;
        reply(answer, convert::person_view_out)
    }

    async fn get_record(
        &self,
        mut request: Request<pb::GetRecordRequest>,
    ) -> Reply<pb::GetRecordResponse> {
        let who = caller(&mut request)?;
        let key = requests::record_key(request.into_inner());
        let answer = self.app.get_record(&who, key).await;
        reply(answer, |stored| pb::GetRecordResponse {
            record: Some(convert::linked_record_out(&stored)),
        })
    }

    async fn remove_record(
        &self,
        mut request: Request<pb::RemoveRecordRequest>,
    ) -> Reply<pb::RemoveRecordResponse> {
        let who = caller(&mut request)?;
        let removal = requests::remove(request.into_inner());
        let answer = self.app.remove_record(&who, removal).await;
        reply(answer, |removed| pb::RemoveRecordResponse {
            former_euid: removed.euid.to_string(),
            person_retired: removed.retired,
        })
    }

    async fn link(&self, mut request: Request<pb::LinkRequest>) -> Reply<pb::LinkResponse> {
        let who = caller(&mut request)?;
        let link = requests::link(request.into_inner());
        let answer = self.app.link(&who, link).await;
        reply(answer, |moved| pb::LinkResponse {
            euid: moved.to.to_string(),
            previous_euid: moved.from.to_string(),
            previous_person_retired: moved.from_retired,
        })
    }

    async fn unlink(&self, mut request: Request<pb::UnlinkRequest>) -> Reply<pb::UnlinkResponse> {
        let who = caller(&mut request)?;
        let unlink = requests::unlink(request.into_inner());
        let answer = self.app.unlink(&who, unlink).await;
        reply(answer, |moved| pb::UnlinkResponse {
            new_euid: moved.to.to_string(),
            previous_euid: moved.from.to_string(),
            previous_person_retired: moved.from_retired,
        })
    }

    async fn merge_persons(
        &self,
        mut request: Request<pb::MergePersonsRequest>,
    ) -> Reply<pb::MergePersonsResponse> {
        let who = caller(&mut request)?;
        let merge = requests::merge(request.into_inner());
        let answer = self.app.merge_persons(&who, merge).await;
        reply(answer, |merged| pb::MergePersonsResponse {
            survivor_euid: merged.survivor.to_string(),
            records_moved: u32::try_from(merged.records_moved).unwrap_or(u32::MAX),
        })
    }

    async fn split_person(
        &self,
        mut request: Request<pb::SplitPersonRequest>,
    ) -> Reply<pb::SplitPersonResponse> {
        let who = caller(&mut request)?;
        let split = requests::split(request.into_inner());
        let answer = self.app.split_person(&who, split).await;
        reply(answer, |split| pb::SplitPersonResponse {
            euid: split.euid.to_string(),
            new_euid: split.new_euid.to_string(),
        })
    }

    async fn mark_not_duplicate(
        &self,
        mut request: Request<pb::MarkNotDuplicateRequest>,
    ) -> Reply<pb::MarkNotDuplicateResponse> {
        let who = caller(&mut request)?;
        let assertion = requests::not_duplicate(request.into_inner());
        let answer = self.app.mark_not_duplicate(&who, assertion).await;
        reply(answer, |()| pb::MarkNotDuplicateResponse {})
    }

    async fn list_review_tasks(
        &self,
        mut request: Request<pb::ListReviewTasksRequest>,
    ) -> Reply<pb::ListReviewTasksResponse> {
        let who = caller(&mut request)?;
        let query = requests::task_query(request.get_ref());
        let answer = self.app.list_review_tasks(&who, query).await;
        reply(answer, |(tasks, next)| pb::ListReviewTasksResponse {
            tasks: tasks.iter().map(convert::task_out).collect(),
            next_page_token: next.map(|t| t.to_string()).unwrap_or_default(),
        })
    }

    async fn get_review_task(
        &self,
        mut request: Request<pb::GetReviewTaskRequest>,
    ) -> Reply<pb::GetReviewTaskResponse> {
        let who = caller(&mut request)?;
        let id = requests::task_id(request.get_ref());
        let answer = self.app.get_review_task(&who, id).await;
        reply(answer, |task| pb::GetReviewTaskResponse {
            task: Some(convert::task_out(&task)),
        })
    }

    async fn resolve_review_task(
        &self,
        mut request: Request<pb::ResolveReviewTaskRequest>,
    ) -> Reply<pb::ResolveReviewTaskResponse> {
        let who = caller(&mut request)?;
        let resolution = requests::resolution(request.into_inner());
        let answer = self.app.resolve_review_task(&who, resolution).await;
        reply(answer, |(task, euid)| pb::ResolveReviewTaskResponse {
            task: Some(convert::task_out(&task)),
            record_euid: euid.to_string(),
        })
    }

    async fn get_stats(
        &self,
        mut request: Request<pb::GetStatsRequest>,
    ) -> Reply<pb::GetStatsResponse> {
        let who = caller(&mut request)?;
        let answer = self.app.get_stats(&who).await;
        reply(answer, convert::stats_out)
    }

    type WatchChangesStream = ChangeStream;

    async fn watch_changes(
        &self,
        mut request: Request<pb::WatchChangesRequest>,
    ) -> Reply<ChangeStream> {
        let who = caller(&mut request)?;
        let after = requests::watch(request.get_ref());
        let feed = self.app.watch_changes(&who, after).await?;
        Ok(Response::new(stream_of(feed)))
    }
}

/// The feed's batches as the call's stream, read by a task of its own: it ends when the
/// feed does (the server stops), after an error (the client gets it as the stream's
/// status), or when the client goes away.
fn stream_of(mut feed: crate::app::ChangeFeed) -> ChangeStream {
    let (tx, rx) = tokio::sync::mpsc::channel(2);
    tokio::spawn(async move {
        loop {
            let next = tokio::select! {
                () = tx.closed() => return,
                next = feed.next() => next,
            };
            let message = match next {
                None => return,
                Some(Ok(events)) => Ok(pb::WatchChangesResponse {
                    events: events.iter().map(convert::change_event_out).collect(),
                }),
                Some(Err(e)) => Err(Status::from(e)),
            };
            let last = message.is_err();
            if tx.send(message).await.is_err() || last {
                return;
            }
        }
    });
    Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))
}
