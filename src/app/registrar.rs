//! Reads a registrar's screens need, each one audited call like every other operation: the
//! worklist with its counts, a review task with the records to compare, a search for
//! persons, and a merge preview. The registrar console calls them; any door may.

use crate::auth::Operation;
use crate::error::Result;
use crate::service::{MergePreview, PersonHit, TaskDetail, Worklist, WorklistQuery};
use crate::store::{TaskId, UnixMillis};

use super::{App, Caller, Incoming, MatchQuery, MergePersons};

impl App {
    /// A worklist page: open tasks counted by age, reason and source, and one page of the
    /// tasks passing the filters (audited as `ListReviewTasks`, naming the page's record
    /// keys). Ages are counted from now.
    ///
    /// # Errors
    /// [`crate::Error::Denied`]; as [`crate::service::Service::worklist`].
    pub async fn review_worklist(
        &self,
        caller: &Caller,
        query: Incoming<WorklistQuery>,
    ) -> Result<Worklist> {
        self.run(
            caller,
            Operation::ListReviewTasks,
            query,
            async |call, q| {
                let list = self.service.worklist(&q, UnixMillis::now())?;
                for row in &list.rows {
                    call.name_record(&row.record);
                }
                Ok(list)
            },
        )
        .await
    }

    /// A review task with the record under review, each candidate's best record and its
    /// person's other records (audited as `GetReviewTask`, naming every record and person
    /// shown).
    ///
    /// # Errors
    /// [`crate::Error::Denied`]; as [`crate::service::Service::task_detail`].
    pub async fn review_task_detail(
        &self,
        caller: &Caller,
        id: Incoming<TaskId>,
    ) -> Result<TaskDetail> {
        self.run(caller, Operation::GetReviewTask, id, async |call, id| {
            let detail = self.service.task_detail(id)?;
            call.name_record(&detail.view.task.record);
            for c in &detail.candidates {
                call.name_euid(&c.candidate.euid);
                for r in c.best.iter().chain(&c.others) {
                    call.name_record(&r.key());
                }
            }
            Ok(detail)
        })
        .await
    }

    /// Persons like the query's record (a record without a key), through the matcher
    /// (audited as `SearchPersons`, naming the persons found, never the query's values).
    ///
    /// # Errors
    /// [`crate::Error::Denied`] (a submitter); as
    /// [`crate::service::Service::search_persons`].
    pub async fn search_persons(
        &self,
        caller: &Caller,
        query: Incoming<MatchQuery>,
    ) -> Result<Vec<PersonHit>> {
        self.run(caller, Operation::SearchPersons, query, async |call, q| {
            let hits = self.service.search_persons(&q.record, q.max_candidates)?;
            for h in &hits {
                call.name_euid(&h.euid);
            }
            Ok(hits)
        })
        .await
    }

    /// What merging `from` into `into` would give, writing nothing (audited as
    /// `GetPerson`, naming both persons and their records). The request's attribution is
    /// not used.
    ///
    /// # Errors
    /// [`crate::Error::Denied`]; as [`crate::service::Service::preview_merge`].
    pub async fn preview_merge(
        &self,
        caller: &Caller,
        request: Incoming<MergePersons>,
    ) -> Result<MergePreview> {
        self.run(caller, Operation::GetPerson, request, async |call, r| {
            call.name_euid(&r.from);
            call.name_euid(&r.into);
            let preview = self.service.preview_merge(&r.from, &r.into)?;
            for p in [&preview.from, &preview.into] {
                for rec in &p.records {
                    call.name_record(&rec.key());
                }
            }
            Ok(preview)
        })
        .await
    }
}
