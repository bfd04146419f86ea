//! What the standards doors need beside match-or-create: the persons a set of demographics
//! may be, graded (PDQ, FHIR `$match`); the person holding a record (PIX, PIXm); a source's
//! own declaration that two of its records are one patient (HL7 v2 ADT^A40); and the
//! receipts that let a door answer a replayed message without applying it again.

use crate::error::{Error, Result};
use crate::record::{Record, RecordKey};
use crate::store::{Op, Receipt, UnixMillis};

use super::matching::MAX_MATCH_CANDIDATES;
use super::types::{CandidateView, Merged, PersonView};
use super::{stamp, Service};

/// How long a receipt is found after it was kept: a replay later than this is a new
/// message. Receipts are dropped a whole day after that at the latest.
pub const RECEIPT_WINDOW_MS: i64 = 24 * 3_600_000;

/// How sure a candidate is, in the terms of FHIR's match-grade: the decision match-or-create
/// would make about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MatchGrade {
    /// It would be linked: at or above the upper threshold, no relative could have the
    /// record, and no other candidate is as sure.
    Certain,
    /// It would go to review: at or above the lower threshold, or above the upper one but
    /// held back (a relative could have the record, or another candidate is as sure).
    Probable,
    /// Below the lower threshold.
    Possible,
}

/// One person a set of demographics may be.
#[derive(Debug, Clone, PartialEq)]
pub struct PersonMatch {
    /// The candidate as scored (its EUID as scored; `person` follows later merges).
    pub candidate: CandidateView,
    /// How sure.
    pub grade: MatchGrade,
    /// The person now, with golden view, records and history.
    pub person: PersonView,
}

/// A page of [`PersonMatch`]es, best first.
#[derive(Debug, Clone, PartialEq)]
pub struct FoundPersons {
    /// This page.
    pub matches: Vec<PersonMatch>,
    /// How many candidates the search found in all (at most [`MAX_MATCH_CANDIDATES`]).
    pub total: usize,
}

/// Grades ranked candidates: certain only for the one candidate that would be linked.
fn grades(candidates: &[CandidateView], lower: f64) -> Vec<MatchGrade> {
    let linkable = candidates.iter().filter(|c| c.reason.is_none()).count();
    candidates
        .iter()
        .map(|c| match c.reason {
            None if linkable == 1 => MatchGrade::Certain,
            _ if c.score >= lower => MatchGrade::Probable,
            _ => MatchGrade::Possible,
        })
        .collect()
}

impl Service {
    /// The persons a set of demographics (a record without a key, validated like one) may
    /// be, best first, graded; `only_certain` keeps the certain ones. The candidates are
    /// found and scored as match-or-create finds them (at most [`MAX_MATCH_CANDIDATES`]);
    /// the page is `limit` of them from `offset`. Reads only.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] naming the field; store errors.
    pub fn find_persons(
        &self,
        criteria: &Record,
        offset: usize,
        limit: usize,
        only_certain: bool,
    ) -> Result<FoundPersons> {
        let preview = self.match_only(criteria, MAX_MATCH_CANDIDATES)?;
        let graded = grades(&preview.candidates, self.linker.thresholds().lower);
        let ranked: Vec<(CandidateView, MatchGrade)> = preview
            .candidates
            .into_iter()
            .zip(graded)
            .filter(|(_, g)| !only_certain || *g == MatchGrade::Certain)
            .collect();
        let total = ranked.len();
        let matches = ranked
            .into_iter()
            .skip(offset)
            .take(limit)
            .map(|(candidate, grade)| {
                let person = self.get_person(&candidate.euid)?;
                Ok(PersonMatch {
                    candidate,
                    grade,
                    person,
                })
            })
            .collect::<Result<_>>()?;
        Ok(FoundPersons { matches, total })
    }

    /// Whether any record of `source` is stored: whether the source is a known domain.
    ///
    /// # Errors
    /// Store errors.
    pub fn has_source(&self, source: &str) -> Result<bool> {
        self.store.has_source(source)
    }

    /// The person holding the record `key`, with its golden view, records and history.
    ///
    /// # Errors
    /// [`Error::NotFound`] for `source` when no record of the key's source is stored, for
    /// `record` when the source is known and the record is not; store errors.
    pub fn person_of_record(&self, key: &RecordKey) -> Result<PersonView> {
        match self.store.get_record(key)? {
            Some(stored) => self.get_person(&stored.euid),
            None if self.has_source(&key.source)? => Err(Error::not_found("record", key)),
            None => Err(Error::not_found("source", &key.source)),
        }
    }

    /// A source's declaration that two of its records are one patient (HL7 v2 ADT^A40):
    /// the person of `retired` is merged into the person of `survivor`, both records stay
    /// (the survivor's person holds them), and history records the merge with `actor`.
    /// When both records are the same person already, nothing changes. `receipt`, when
    /// given, is kept in the same change set.
    ///
    /// # Errors
    /// [`Error::NotFound`] for either record; [`Error::Conflict`] when the two persons are
    /// asserted to be different people; [`Error::InvalidInput`] for a bad actor.
    #[tracing::instrument(skip_all, fields(survivor = %survivor, retired = %retired))]
    pub async fn merge_records(
        &self,
        survivor: &RecordKey,
        retired: &RecordKey,
        actor: &str,
        receipt: Option<Receipt>,
    ) -> Result<Merged> {
        let stamp = stamp::checked(
            actor,
            "source merge: the source declared two of its records one patient",
        )?;
        let merged = self
            .write_with(stamp, receipt.map(Op::PutReceipt), |plan| {
                let mut person_of = |key: &RecordKey| -> Result<_> {
                    Ok(plan
                        .record(key)?
                        .ok_or_else(|| Error::not_found("record", key))?
                        .euid
                        .clone())
                };
                let (into, from) = (person_of(survivor)?, person_of(retired)?);
                if into == from {
                    return Ok(Merged {
                        survivor: into,
                        records_moved: 0,
                    });
                }
                let moved = plan.merge_persons(&from, &into)?;
                Ok(Merged {
                    survivor: into,
                    records_moved: moved.len(),
                })
            })
            .await?;
        tracing::info!(survivor = %merged.survivor, moved = merged.records_moved, "records merged by their source");
        Ok(merged)
    }

    /// The receipt kept under `id` within [`RECEIPT_WINDOW_MS`], if any.
    ///
    /// # Errors
    /// Store errors.
    pub fn receipt(&self, id: &[u8]) -> Result<Option<Receipt>> {
        let since = UnixMillis(UnixMillis::now().0 - RECEIPT_WINDOW_MS);
        self.store.receipt(id, since)
    }

    /// Drops receipts older than a day past [`RECEIPT_WINDOW_MS`], a bounded batch at a
    /// time, and returns how many; for a door's periodic housekeeping.
    ///
    /// # Errors
    /// Store errors.
    pub fn prune_receipts(&self) -> Result<usize> {
        const BATCH: usize = 10_000;
        let before = UnixMillis(UnixMillis::now().0 - RECEIPT_WINDOW_MS);
        let mut dropped = 0;
        loop {
            let n = self.store.prune_receipts(before, BATCH)?;
            dropped += n;
            if n < BATCH {
                return Ok(dropped);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::linker::ReviewReason;
    use crate::store::Euid;

    fn candidate(seq: u64, score: f64, reason: Option<ReviewReason>) -> CandidateView {
        CandidateView {
            euid: Euid::from_seq(seq),
            score,
            probability: 0.5,
            best_record: None,
            explanation: Vec::new(),
            reason,
        }
    }

    #[test]
    fn only_a_sole_linkable_candidate_is_certain() {
        let between = Some(ReviewReason::BetweenThresholds);
        let one = [
            candidate(1, 20.0, None),
            candidate(2, 5.0, between),
            candidate(3, -3.0, between),
        ];
        assert_eq!(
            grades(&one, 0.0),
            [
                MatchGrade::Certain,
                MatchGrade::Probable,
                MatchGrade::Possible
            ]
        );
        let two = [candidate(1, 20.0, None), candidate(2, 19.0, None)];
        assert_eq!(grades(&two, 0.0), [MatchGrade::Probable; 2]);
    }
}
