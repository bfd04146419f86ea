//! The service's reads: records, persons with their golden view and history, review tasks
//! with their candidates, counts, and the index check.

use std::collections::BTreeSet;

use crate::error::{Error, Result};
use crate::record::RecordKey;
use crate::store::{Euid, HistoryAction, ReviewTask, StoredRecord, TaskId, TaskQuery};

use super::golden::golden_view;
use super::types::{CandidateView, PersonView, ServiceCheck, ServiceStats, TaskView};
use super::Service;

impl Service {
    /// One stored record and its link.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for an empty key part; [`Error::NotFound`].
    pub fn get_record(&self, key: &RecordKey) -> Result<StoredRecord> {
        self.store
            .get_record(key)?
            .ok_or_else(|| Error::not_found("record", key))
    }

    /// A person with golden view, records and history; a merged EUID stands for its
    /// survivor (see [`PersonView::merge_path`]).
    ///
    /// # Errors
    /// [`Error::NotFound`] for an unknown EUID; store errors.
    pub fn get_person(&self, euid: &Euid) -> Result<PersonView> {
        let survivor = self
            .store
            .survivor_of(euid)?
            .ok_or_else(|| Error::not_found("person", euid))?;
        let records = if survivor.person.is_active() {
            self.store.members(&survivor.person.euid)?
        } else {
            Vec::new()
        };
        // The survivor's history and, through its merge-absorbed entries, the history of
        // every person folded into it.
        let mut history = Vec::new();
        let mut seen = BTreeSet::from([survivor.person.euid.clone()]);
        let mut todo = vec![survivor.person.euid.clone()];
        while let Some(e) = todo.pop() {
            for h in self.store.history(&e)? {
                if h.action == HistoryAction::MergeAbsorbed {
                    for absorbed in &h.euids {
                        if seen.insert(absorbed.clone()) {
                            todo.push(absorbed.clone());
                        }
                    }
                }
                history.push(h);
            }
        }
        history.sort_by_key(|h| h.seq);
        let merge_path = if survivor.was_merged() {
            survivor.path.clone()
        } else {
            Vec::new()
        };
        Ok(PersonView {
            golden: golden_view(&records),
            person: survivor.person,
            records,
            history,
            requested: euid.clone(),
            merge_path,
        })
    }

    fn task_view(&self, task: ReviewTask) -> Result<TaskView> {
        let record_euid = self.store.get_record(&task.record)?.map(|r| r.euid);
        let detailed: Option<Vec<CandidateView>> =
            serde_json::from_value(task.explanation.clone()).ok();
        let candidates = match detailed {
            Some(d) if d.len() == task.candidates.len() => d,
            _ => task
                .candidates
                .iter()
                .map(|c| CandidateView {
                    euid: c.euid.clone(),
                    score: c.score,
                    probability: c.probability,
                    best_record: None,
                    explanation: Vec::new(),
                    reason: None,
                })
                .collect(),
        };
        Ok(TaskView {
            task,
            record_euid,
            candidates,
        })
    }

    /// One review task with its candidates' explanations.
    ///
    /// # Errors
    /// [`Error::NotFound`]; store errors.
    pub fn get_task(&self, id: TaskId) -> Result<TaskView> {
        let task = self
            .store
            .get_task(id)?
            .ok_or_else(|| Error::not_found("review task", id))?;
        self.task_view(task)
    }

    /// A page of review tasks, oldest first; the second value continues the listing.
    ///
    /// # Errors
    /// Store errors.
    pub fn list_tasks(&self, query: &TaskQuery) -> Result<(Vec<TaskView>, Option<TaskId>)> {
        let page = self.store.list_tasks(query)?;
        let views = page
            .tasks
            .into_iter()
            .map(|t| self.task_view(t))
            .collect::<Result<_>>()?;
        Ok((views, page.next))
    }

    /// Counts, and the identity and training metadata of the model in use.
    ///
    /// # Errors
    /// Store errors.
    pub fn stats(&self) -> Result<ServiceStats> {
        let s = self.store.stats()?;
        Ok(ServiceStats {
            records: s.records,
            persons: s.persons,
            open_tasks: s.open_tasks,
            model_version: self.model_version().to_string(),
            model_description: self.linker.scorer().model().description.clone(),
            training: self.training.clone(),
            indexed_records: self.read_index()?.len() as u64,
        })
    }

    /// The store's invariant check plus a comparison of the live index with the stored
    /// records (each indexed under its person with its current content, nothing extra).
    ///
    /// # Errors
    /// Store errors while reading.
    pub fn check(&self) -> Result<ServiceCheck> {
        let store = self.store.check()?;
        let mut index_problems = Vec::new();
        let index = self.read_index()?;
        let indexed = index.verify(
            self.store.records(),
            |r| self.prepare(r),
            &mut index_problems,
        )?;
        Ok(ServiceCheck {
            store,
            indexed_records: indexed as u64,
            index_problems,
        })
    }
}
