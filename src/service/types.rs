//! What the service's operations take and return: plain domain types, no protocol types.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::linker::Decision;
use crate::record::{Address, Identifier, PartialDate, Record, RecordKey, Sex};
use crate::scoring::{Explanation, TrainingSummary};
use crate::store::{Euid, HistoryEntry, Person, ReviewTask, StoredRecord, TaskId, Ticket};

/// One comparison's contribution to a score.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ComparisonView {
    /// The comparison, e.g. `family_name`.
    pub comparison: String,
    /// The level reached, e.g. `exact`, or `missing`.
    pub level: String,
    /// Its weight, term-frequency adjustment included.
    pub weight: f64,
}

/// The per-comparison part of a scorer explanation.
pub(crate) fn comparisons_of(e: &Explanation) -> Vec<ComparisonView> {
    e.comparisons
        .iter()
        .map(|c| ComparisonView {
            comparison: c.comparison.clone(),
            level: c.level.clone(),
            weight: c.weight,
        })
        .collect()
}

/// A candidate person for a record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CandidateView {
    /// The candidate person (as when scored; a later merge resolves it elsewhere).
    pub euid: Euid,
    /// Match weight against the person's best-scoring record.
    pub score: f64,
    /// Match probability.
    pub probability: f64,
    /// The candidate record the score was computed against; `None` where it is not shown
    /// (a submitter's answer about another source) or not kept (a task stored without its
    /// detail).
    pub best_record: Option<RecordKey>,
    /// Per-comparison contributions (may be empty where only the best candidate carries
    /// its explanation).
    pub explanation: Vec<ComparisonView>,
    /// Why this candidate would not be linked automatically, in words (a relative sharing
    /// the household could have the records, or too little agreement); `None` when it
    /// would be.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<crate::linker::ReviewReason>,
}

/// The answer of [`crate::service::Service::match_or_create`].
#[derive(Debug, Clone, PartialEq)]
pub struct MatchResult {
    /// The person the record belongs to now.
    pub euid: Euid,
    /// What was decided (for an identical resubmission: what was decided then). For a
    /// changed record that stays where it was: [`Decision::Link`] when its person holds
    /// other records, [`Decision::New`] when it is its person's only record.
    pub decision: Decision,
    /// Match weight of the best candidate, if there was one.
    pub score: Option<f64>,
    /// Match probability of the best candidate, if there was one.
    pub probability: Option<f64>,
    /// Per-comparison explanation of the best candidate's score.
    pub explanation: Vec<ComparisonView>,
    /// The top candidates considered, best first.
    pub candidates: Vec<CandidateView>,
    /// The review task opened, for [`Decision::Review`].
    pub review_task: Option<TaskId>,
    /// True when the record was identical to the stored one and nothing was written.
    pub unchanged: bool,
    /// The model that scored the record.
    pub model_version: String,
}

/// A change that is applied (readers see it) but may not be durable yet, from
/// [`crate::service::Service::match_or_create_applied`]: pass it to
/// [`crate::service::Service::wait_durable`] before acknowledging the change.
#[derive(Debug)]
#[must_use = "a change must be waited durable before it is acknowledged"]
pub struct Pending(pub(crate) Ticket);

/// The answer of [`crate::service::Service::match_only`].
#[derive(Debug, Clone, PartialEq)]
pub struct MatchPreview {
    /// Candidate persons, best first, each with its explanation.
    pub candidates: Vec<CandidateView>,
    /// The decision match-or-create would make for this record now, were it new.
    pub decision: Decision,
    /// The model that scored the record.
    pub model_version: String,
}

/// A person's best current demographics (see the golden-view rule in [`crate::service`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GoldenView {
    /// First given name.
    pub given_name: Option<String>,
    /// Middle name(s).
    pub middle_name: Option<String>,
    /// Current family name.
    pub family_name: Option<String>,
    /// Earlier family names.
    pub previous_family_names: Vec<String>,
    /// Birth date.
    pub birth_date: Option<PartialDate>,
    /// Administrative sex.
    pub sex: Sex,
    /// Postal address (taken whole from one record).
    pub address: Address,
    /// Phone numbers.
    pub phones: Vec<String>,
    /// Email address.
    pub email: Option<String>,
    /// Identifiers.
    pub identifiers: Vec<Identifier>,
    /// Birth order for twins and multiples.
    pub multiple_birth_order: Option<u8>,
}

impl GoldenView {
    /// The golden view as a record without a key, for doors that show demographics the way
    /// they read a record (an HL7 v2 PID, a FHIR Patient).
    pub fn to_record(&self) -> Record {
        Record {
            given_name: self.given_name.clone(),
            middle_name: self.middle_name.clone(),
            family_name: self.family_name.clone(),
            previous_family_names: self.previous_family_names.clone(),
            birth_date: self.birth_date,
            sex: self.sex,
            address: self.address.clone(),
            phones: self.phones.clone(),
            email: self.email.clone(),
            identifiers: self.identifiers.clone(),
            multiple_birth_order: self.multiple_birth_order,
            ..Record::default()
        }
    }
}

/// A person as [`crate::service::Service::get_person`] shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct PersonView {
    /// The person (the survivor, when the requested EUID was merged).
    pub person: Person,
    /// Best current demographics.
    pub golden: GoldenView,
    /// The linked records, in joining order.
    pub records: Vec<StoredRecord>,
    /// History of the person and of every person merged into it, in sequence order.
    pub history: Vec<HistoryEntry>,
    /// The EUID asked for.
    pub requested: Euid,
    /// The merge chain followed, requested first, survivor last; empty when not merged.
    pub merge_path: Vec<Euid>,
}

/// A review task with what a registrar needs beside it.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskView {
    /// The task as stored.
    pub task: ReviewTask,
    /// The record's current person, if the record is still stored.
    pub record_euid: Option<Euid>,
    /// The candidates, best first, each with its explanation.
    pub candidates: Vec<CandidateView>,
}

/// The answer of [`crate::service::Service::merge_persons`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Merged {
    /// The survivor.
    pub survivor: Euid,
    /// How many records moved.
    pub records_moved: usize,
}

/// The answer of [`crate::service::Service::split_person`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split {
    /// The person that was split (after resolving merges).
    pub euid: Euid,
    /// The new person holding the moved records.
    pub new_euid: Euid,
}

/// Counts, and the identity and training metadata of the model in use.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceStats {
    /// Stored records.
    pub records: u64,
    /// Active persons.
    pub persons: u64,
    /// Open review tasks.
    pub open_tasks: u64,
    /// The model in use: its id.
    pub model_version: String,
    /// The model's description: where its parameters came from.
    pub model_description: String,
    /// How the model was trained; `None` for a model not estimated from data.
    pub training: Option<Arc<TrainingSummary>>,
    /// Records in the in-memory index.
    pub indexed_records: u64,
}

/// The result of [`crate::service::Service::check`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceCheck {
    /// The store's own invariant check.
    pub store: crate::store::CheckReport,
    /// Records compared with the index.
    pub indexed_records: u64,
    /// Disagreements between the index and the stored records (record keys only).
    pub index_problems: Vec<String>,
}

impl ServiceCheck {
    /// True when neither the store nor the index shows a problem.
    pub fn is_ok(&self) -> bool {
        self.store.is_ok() && self.index_problems.is_empty()
    }
}
