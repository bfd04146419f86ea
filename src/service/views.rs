//! Reads for a registrar's screens, each in one call: a review task with the records to
//! compare side by side, a search for persons through the matcher, and what a merge of two
//! persons would look like before it is made.

use crate::error::{Error, Result};
use crate::record::{Record, RecordKey};
use crate::store::{Euid, StoredRecord, TaskId};

use super::golden::golden_view;
use super::types::{CandidateView, GoldenView, PersonView, TaskView};
use super::Service;

/// One candidate of a review task with its records as they are now.
#[derive(Debug, Clone, PartialEq)]
pub struct CandidateDetail {
    /// The candidate as scored when the task opened.
    pub candidate: CandidateView,
    /// The candidate's person now (its survivor, when merged since); `None` when it has
    /// no records left.
    pub person: Option<Euid>,
    /// The record the score was computed against, as stored now (`None` when it is gone
    /// or was not kept).
    pub best: Option<StoredRecord>,
    /// The person's other records.
    pub others: Vec<StoredRecord>,
}

/// A review task with everything a registrar compares.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskDetail {
    /// The task and its candidates' explanations.
    pub view: TaskView,
    /// The record under review, as stored now (`None` when it was removed).
    pub record: Option<StoredRecord>,
    /// The candidates, best first.
    pub candidates: Vec<CandidateDetail>,
    /// The open task before this one in the queue (oldest first), if any.
    pub prev: Option<TaskId>,
    /// The open task after this one in the queue, if any.
    pub next: Option<TaskId>,
}

/// A person found by a search.
#[derive(Debug, Clone, PartialEq)]
pub struct PersonHit {
    /// The person.
    pub euid: Euid,
    /// Match weight of the search against the person's best record.
    pub score: f64,
    /// Match probability.
    pub probability: f64,
    /// The person's golden view.
    pub golden: GoldenView,
    /// The person's records.
    pub records: Vec<RecordKey>,
}

/// What merging one person into another would give.
#[derive(Debug, Clone, PartialEq)]
pub struct MergePreview {
    /// The person folded away, as it is now.
    pub from: PersonView,
    /// The survivor, as it is now.
    pub into: PersonView,
    /// The survivor's golden view after the merge.
    pub golden: GoldenView,
    /// Why the merge would be refused, in words; `None` when it can be made.
    pub refused: Option<String>,
}

/// Most persons a search returns.
pub const MAX_SEARCH_HITS: usize = 20;

impl Service {
    /// A review task with the record under review, each candidate's best record and its
    /// person's other records, as stored now, and its neighbours in the open queue.
    ///
    /// # Errors
    /// [`Error::NotFound`]; store errors.
    pub fn task_detail(&self, id: TaskId) -> Result<TaskDetail> {
        let view = self.get_task(id)?;
        let record = self.store.get_record(&view.task.record)?;
        let mut candidates = Vec::with_capacity(view.candidates.len());
        for c in &view.candidates {
            let survivor = self.store.survivor_of(&c.euid)?;
            let members = match &survivor {
                Some(s) if s.person.is_active() => self.store.members(&s.person.euid)?,
                _ => Vec::new(),
            };
            let (mut best, others): (Vec<_>, Vec<_>) = members
                .into_iter()
                .partition(|m| c.best_record.as_ref() == Some(&m.key()));
            candidates.push(CandidateDetail {
                candidate: c.clone(),
                person: survivor
                    .filter(|s| s.person.is_active())
                    .map(|s| s.person.euid),
                best: best.pop(),
                others,
            });
        }
        let (prev, next) = self.open_neighbours(id)?;
        Ok(TaskDetail {
            view,
            record,
            candidates,
            prev,
            next,
        })
    }

    /// Persons like `query` (a record without a key), best first, through the matcher, so
    /// a typo still finds them: at most `max` (0 means [`MAX_SEARCH_HITS`]).
    ///
    /// # Errors
    /// [`Error::InvalidInput`] naming the field, or `query` when it carries no value to
    /// search with; store errors.
    pub fn search_persons(&self, query: &Record, max: usize) -> Result<Vec<PersonHit>> {
        if query.is_empty() {
            return Err(Error::invalid(
                "query",
                "give at least one value to search for",
            ));
        }
        let max = match max {
            0 => MAX_SEARCH_HITS,
            n => n.min(MAX_SEARCH_HITS),
        };
        let preview = self.match_only(query, max)?;
        let mut hits = Vec::with_capacity(preview.candidates.len());
        for c in preview.candidates {
            let Some(survivor) = self.store.survivor_of(&c.euid)? else {
                continue;
            };
            if !survivor.person.is_active() {
                continue;
            }
            let records = self.store.members(&survivor.person.euid)?;
            hits.push(PersonHit {
                euid: survivor.person.euid,
                score: c.score,
                probability: c.probability,
                golden: golden_view(&records),
                records: records.iter().map(StoredRecord::key).collect(),
            });
        }
        Ok(hits)
    }

    /// Both persons as they are and the survivor's golden view were `from` merged into
    /// `into`, with the reason the merge would be refused, if it would.
    ///
    /// # Errors
    /// [`Error::NotFound`] for an unknown EUID; store errors.
    pub fn preview_merge(&self, from: &Euid, into: &Euid) -> Result<MergePreview> {
        let from = self.get_person(from)?;
        let into = self.get_person(into)?;
        let refused = if from.person.euid == into.person.euid {
            Some("both EUIDs are the same person".to_string())
        } else if !from.person.is_active() || !into.person.is_active() {
            Some("a person without records cannot be merged".to_string())
        } else if self
            .store
            .not_duplicate(&from.person.euid, &into.person.euid)?
            .is_some()
        {
            Some("a registrar asserted these are different people".to_string())
        } else {
            None
        };
        let mut records = into.records.clone();
        records.extend(from.records.iter().cloned());
        Ok(MergePreview {
            golden: golden_view(&records),
            from,
            into,
            refused,
        })
    }
}
