//! One method per operation: what each names in its audit line, which checks it adds
//! (a submitter's source), which service call it makes, and how its answer is trimmed for
//! the caller's role. The steps they share are in [`super::call`].

use crate::auth::{Identity, Operation};
use crate::error::Result;
use crate::record::RecordKey;
use crate::service::{
    CandidateView, MatchPreview, MatchResult, Merged, PersonView, ServiceStats, Split, TaskView,
};
use crate::store::{Euid, Moved, Removed, StoredRecord, TaskId, TaskQuery};

use super::call::Call;
use super::{
    App, Caller, LinkRecord, MarkNotDuplicate, MatchQuery, MergePersons, RemoveRecord,
    ResolveReviewTask, SplitPerson, Submit, UnlinkRecord, Unreadable,
};

/// A domain request as a door hands it over: read, or [`Unreadable`].
pub type Incoming<T> = std::result::Result<T, Unreadable>;

impl App {
    /// Submits a record: match-or-create as the caller (a submitter only for its own
    /// source), made durable with the call's audit line. A submitter's answer carries no
    /// explanations and no record keys of other sources.
    ///
    /// # Errors
    /// [`crate::Error::Denied`]; [`crate::Error::NoSpace`]; as
    /// [`crate::service::Service::match_or_create`]; [`crate::Error::Storage`] when the
    /// audit trail cannot write (the change may stand; its intent's line is written).
    pub async fn match_or_create(
        &self,
        caller: &Caller,
        request: Incoming<Submit>,
    ) -> Result<MatchResult> {
        self.run_durable(
            caller,
            Operation::MatchOrCreate,
            request,
            async |call, r| {
                call.name_record(&r.record.key());
                call.own_source(&r.record.source)?;
                call.intend()?;
                let (result, pending) = self
                    .service
                    .match_or_create_applied(r.record, call.actor(&r.actor))
                    .await?;
                Ok((self.answered(call, result), pending))
            },
        )
        .await
    }

    /// What every match-or-create does with its result, whichever door it came through:
    /// names the EUID in the audit entry, counts the decision, and trims a submitter's
    /// answer to the minimum necessary.
    pub(super) fn answered(&self, call: &mut Call<'_>, mut result: MatchResult) -> MatchResult {
        call.name_euid(&result.euid);
        self.metrics.decided(&result);
        if call.who().minimum_necessary() {
            result.explanation.clear();
            trim_candidates(call.who(), &mut result.candidates);
        }
        result
    }

    /// Scores a record against the index without writing (match). A submitter's answer
    /// carries no explanations and no record keys of other sources.
    ///
    /// # Errors
    /// [`crate::Error::Denied`]; as [`crate::service::Service::match_only`].
    pub async fn match_only(
        &self,
        caller: &Caller,
        request: Incoming<MatchQuery>,
    ) -> Result<MatchPreview> {
        self.run(caller, Operation::Match, request, async |call, q| {
            call.name_record(&q.record.key());
            let mut preview = self.service.match_only(&q.record, q.max_candidates)?;
            for c in &preview.candidates {
                call.name_euid(&c.euid);
            }
            if call.who().minimum_necessary() {
                trim_candidates(call.who(), &mut preview.candidates);
            }
            Ok(preview)
        })
        .await
    }

    /// A person with golden view, records and history.
    ///
    /// # Errors
    /// [`crate::Error::Denied`]; as [`crate::service::Service::get_person`].
    pub async fn get_person(&self, caller: &Caller, euid: Incoming<Euid>) -> Result<PersonView> {
        self.run(caller, Operation::GetPerson, euid, async |call, euid| {
            call.name_euid(&euid);
            let view = self.service.get_person(&euid)?;
            for r in &view.records {
                call.name_record(&r.key());
            }
            Ok(view)
        })
        .await
    }

    /// One stored record and its link (a submitter: of its own source only).
    ///
    /// # Errors
    /// [`crate::Error::Denied`]; as [`crate::service::Service::get_record`].
    pub async fn get_record(
        &self,
        caller: &Caller,
        key: Incoming<RecordKey>,
    ) -> Result<StoredRecord> {
        self.run(caller, Operation::GetRecord, key, async |call, key| {
            call.name_record(&key);
            call.own_source(&key.source)?;
            let stored = self.service.get_record(&key)?;
            call.name_euid(&stored.euid);
            Ok(stored)
        })
        .await
    }

    /// Removes a record.
    ///
    /// # Errors
    /// [`crate::Error::Denied`]; [`crate::Error::NoSpace`]; as
    /// [`crate::service::Service::remove_record`].
    pub async fn remove_record(
        &self,
        caller: &Caller,
        request: Incoming<RemoveRecord>,
    ) -> Result<Removed> {
        self.run(caller, Operation::RemoveRecord, request, async |call, r| {
            call.name_record(&r.key);
            call.intend()?;
            let removed = self
                .service
                .remove_record(&r.key, call.actor(&r.by.actor), &r.by.reason)
                .await?;
            call.name_euid(&removed.euid);
            Ok(removed)
        })
        .await
    }

    /// Moves a record to a person.
    ///
    /// # Errors
    /// [`crate::Error::Denied`]; [`crate::Error::NoSpace`]; as
    /// [`crate::service::Service::link`].
    pub async fn link(&self, caller: &Caller, request: Incoming<LinkRecord>) -> Result<Moved> {
        self.run(caller, Operation::Link, request, async |call, r| {
            call.name_record(&r.key);
            call.name_euid(&r.euid);
            call.intend()?;
            let moved = self
                .service
                .link(&r.key, &r.euid, call.actor(&r.by.actor), &r.by.reason)
                .await?;
            call.name_euid(&moved.from);
            Ok(moved)
        })
        .await
    }

    /// Moves a record out of its person into a new person.
    ///
    /// # Errors
    /// [`crate::Error::Denied`]; [`crate::Error::NoSpace`]; as
    /// [`crate::service::Service::unlink`].
    pub async fn unlink(&self, caller: &Caller, request: Incoming<UnlinkRecord>) -> Result<Moved> {
        self.run(caller, Operation::Unlink, request, async |call, r| {
            call.name_record(&r.key);
            call.intend()?;
            let moved = self
                .service
                .unlink(&r.key, call.actor(&r.by.actor), &r.by.reason)
                .await?;
            call.name_euid(&moved.from);
            call.name_euid(&moved.to);
            Ok(moved)
        })
        .await
    }

    /// Folds one person into another.
    ///
    /// # Errors
    /// [`crate::Error::Denied`]; [`crate::Error::NoSpace`]; as
    /// [`crate::service::Service::merge_persons`].
    pub async fn merge_persons(
        &self,
        caller: &Caller,
        request: Incoming<MergePersons>,
    ) -> Result<Merged> {
        self.run(caller, Operation::MergePersons, request, async |call, r| {
            call.name_euid(&r.from);
            call.name_euid(&r.into);
            call.intend()?;
            self.service
                .merge_persons(&r.from, &r.into, call.actor(&r.by.actor), &r.by.reason)
                .await
        })
        .await
    }

    /// Moves records out of a person into a new person.
    ///
    /// # Errors
    /// [`crate::Error::Denied`]; [`crate::Error::NoSpace`]; as
    /// [`crate::service::Service::split_person`].
    pub async fn split_person(
        &self,
        caller: &Caller,
        request: Incoming<SplitPerson>,
    ) -> Result<Split> {
        self.run(caller, Operation::SplitPerson, request, async |call, r| {
            call.name_euid(&r.euid);
            for key in &r.keys {
                call.name_record(key);
            }
            call.intend()?;
            let split = self
                .service
                .split_person(&r.euid, &r.keys, call.actor(&r.by.actor), &r.by.reason)
                .await?;
            call.name_euid(&split.new_euid);
            Ok(split)
        })
        .await
    }

    /// Asserts two persons are different people.
    ///
    /// # Errors
    /// [`crate::Error::Denied`]; [`crate::Error::NoSpace`]; as
    /// [`crate::service::Service::mark_not_duplicate`].
    pub async fn mark_not_duplicate(
        &self,
        caller: &Caller,
        request: Incoming<MarkNotDuplicate>,
    ) -> Result<()> {
        self.run(
            caller,
            Operation::MarkNotDuplicate,
            request,
            async |call, r| {
                call.name_euid(&r.a);
                call.name_euid(&r.b);
                call.intend()?;
                self.service
                    .mark_not_duplicate(&r.a, &r.b, call.actor(&r.by.actor), &r.by.reason)
                    .await
            },
        )
        .await
    }

    /// A page of review tasks, oldest first; the second value continues the listing.
    ///
    /// # Errors
    /// [`crate::Error::Denied`]; as [`crate::service::Service::list_tasks`].
    pub async fn list_review_tasks(
        &self,
        caller: &Caller,
        query: Incoming<TaskQuery>,
    ) -> Result<(Vec<TaskView>, Option<TaskId>)> {
        self.run(
            caller,
            Operation::ListReviewTasks,
            query,
            async |call, q| {
                let (tasks, next) = self.service.list_tasks(&q)?;
                for t in &tasks {
                    call.name_record(&t.task.record);
                }
                Ok((tasks, next))
            },
        )
        .await
    }

    /// One review task with its candidates' explanations.
    ///
    /// # Errors
    /// [`crate::Error::Denied`]; as [`crate::service::Service::get_task`].
    pub async fn get_review_task(&self, caller: &Caller, id: Incoming<TaskId>) -> Result<TaskView> {
        self.run(caller, Operation::GetReviewTask, id, async |call, id| {
            let task = self.service.get_task(id)?;
            call.name_record(&task.task.record);
            for c in &task.candidates {
                call.name_euid(&c.euid);
            }
            Ok(task)
        })
        .await
    }

    /// Resolves an open review task; returns the task and the record's person afterwards.
    ///
    /// # Errors
    /// [`crate::Error::Denied`]; [`crate::Error::NoSpace`]; as
    /// [`crate::service::Service::resolve_task`].
    pub async fn resolve_review_task(
        &self,
        caller: &Caller,
        request: Incoming<ResolveReviewTask>,
    ) -> Result<(TaskView, Euid)> {
        self.run(
            caller,
            Operation::ResolveReviewTask,
            request,
            async |call, r| {
                // The task's record, named before the change (the intent carries it).
                let record = self.service.get_task(r.task)?.task.record;
                call.name_record(&record);
                call.intend()?;
                let (task, euid) = self
                    .service
                    .resolve_task(r.task, &r.action, call.actor(&r.by.actor), &r.by.reason)
                    .await?;
                call.name_euid(&euid);
                Ok((task, euid))
            },
        )
        .await
    }

    /// Counts, and the identity and training metadata of the model in use.
    ///
    /// # Errors
    /// [`crate::Error::Denied`]; as [`crate::service::Service::stats`].
    pub async fn get_stats(&self, caller: &Caller) -> Result<ServiceStats> {
        self.run(caller, Operation::GetStats, Ok(()), async |_, ()| {
            self.service.stats()
        })
        .await
    }
}

/// Trims candidates to what a submitter needs: EUIDs and scores; a best record key only of
/// the submitter's own sources; no per-field explanation of other patients.
pub(super) fn trim_candidates(who: &Identity, candidates: &mut [CandidateView]) {
    for c in candidates {
        c.explanation.clear();
        if c.best_record
            .as_ref()
            .is_some_and(|k| !who.may_use_source(&k.source))
        {
            c.best_record = None;
        }
    }
}
