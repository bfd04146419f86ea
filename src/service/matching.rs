//! Match-or-create and match-only: validate, prepare, find candidates in the live index,
//! decide with the linker, and (for match-or-create) write the outcome in one change set.

use ahash::AHashSet;
use serde::{Deserialize, Serialize};

use crate::blocking::block_keys;
use crate::error::{Error, Result};
use crate::linker::{pair_decision, Decision, Outcome, Ranking, ReviewReason};
use crate::prepare::Prepared;
use crate::record::{today_days, Record, RecordKey};
use crate::scoring::{weight_to_prob, PairScore, Sig, Thresholds};
use crate::store::{
    Audit, Euid, LinkMethod, OpaqueJson, Plan, StoredRecord, TaskCandidate, TaskId, Ticket,
};

use super::index::key_text;
use super::types::{comparisons_of, CandidateView, ComparisonView, MatchDecision, MatchPreview};
use super::{check_text, MatchResult, Pending, Service, MAX_ACTOR_LEN, RETRIES};

/// Most candidates [`Service::match_only`] returns.
pub const MAX_MATCH_CANDIDATES: usize = 100;

/// The answer of a match-or-create as stored with the record (compact field names: one per
/// stored record), so an identical resubmission returns it without deciding again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct StoredOutcome {
    #[serde(rename = "d")]
    decision: MatchDecision,
    #[serde(rename = "s", default, skip_serializing_if = "Option::is_none")]
    score: Option<f64>,
    /// The best candidate's explanation as `(comparison, level, weight)`.
    #[serde(rename = "x", default, skip_serializing_if = "Vec::is_empty")]
    explanation: Vec<(String, String, f64)>,
    /// Candidates as `(euid, score, best record)`.
    #[serde(rename = "c", default, skip_serializing_if = "Vec::is_empty")]
    candidates: Vec<(Euid, f64, RecordKey)>,
    #[serde(rename = "t", default, skip_serializing_if = "Option::is_none")]
    task: Option<TaskId>,
    #[serde(rename = "m")]
    model: String,
    /// Why the best candidate was not linked automatically (the others' reasons are not
    /// kept: the answer to a repeat names the one that decided).
    #[serde(rename = "r", default, skip_serializing_if = "Option::is_none")]
    reason: Option<ReviewReason>,
}

impl StoredOutcome {
    fn of(r: &MatchResult) -> Self {
        StoredOutcome {
            decision: r.decision,
            score: r.score,
            explanation: r
                .explanation
                .iter()
                .map(|c| (c.comparison.clone(), c.level.clone(), c.weight))
                .collect(),
            candidates: r
                .candidates
                .iter()
                .map(|c| (c.euid.clone(), c.score, c.best_record.clone()))
                .collect(),
            task: r.review_task,
            model: r.model_version.clone(),
            reason: r.candidates.first().and_then(|c| c.reason),
        }
    }

    fn into_result(self, euid: Euid, unchanged: bool) -> MatchResult {
        MatchResult {
            euid,
            decision: self.decision,
            score: self.score,
            probability: self.score.map(weight_to_prob),
            explanation: self
                .explanation
                .into_iter()
                .map(|(comparison, level, weight)| ComparisonView {
                    comparison,
                    level,
                    weight,
                })
                .collect(),
            candidates: self
                .candidates
                .into_iter()
                .enumerate()
                .map(|(i, (euid, score, best_record))| CandidateView {
                    euid,
                    score,
                    probability: weight_to_prob(score),
                    best_record,
                    explanation: Vec::new(),
                    reason: if i == 0 { self.reason } else { None },
                })
                .collect(),
            review_task: self.task,
            unchanged,
            model_version: self.model,
        }
    }
}

/// The answer for a stored record that was submitted again unchanged.
fn repeat_answer(stored: &StoredRecord) -> MatchResult {
    let outcome = stored
        .outcome
        .as_ref()
        .and_then(OpaqueJson::decode::<StoredOutcome>);
    match outcome {
        Some(o) => o.into_result(stored.euid.clone(), true),
        // Stored by something other than match-or-create: describe the link.
        None => MatchResult {
            euid: stored.euid.clone(),
            decision: match stored.link.method {
                LinkMethod::Created => MatchDecision::Created,
                _ => MatchDecision::Linked,
            },
            score: None,
            probability: None,
            explanation: Vec::new(),
            candidates: Vec::new(),
            review_task: None,
            unchanged: true,
            model_version: String::new(),
        },
    }
}

/// Candidates scored against a query: the linker's outcome and a view of each ranked person.
struct Scored {
    outcome: Outcome<u64>,
    views: Vec<CandidateView>,
}

impl Scored {
    fn best(&self) -> Option<&CandidateView> {
        self.views.first()
    }
}

impl Service {
    /// Finds and scores the candidates of `query`, leaving out the record `own_key` and the
    /// persons in `excluded` (EUID sequence numbers), ranking them as `ranking` says.
    /// `explain_all`: every ranked candidate gets its explanation, not only the best.
    fn score(
        &self,
        query: &Prepared,
        own_key: Option<&str>,
        excluded: &AHashSet<u64>,
        explain_all: bool,
        ranking: Ranking,
    ) -> Result<Scored> {
        let index = self.read_index()?;
        let mut buf = Vec::new();
        let exclude = own_key.and_then(|k| index.id_of(k));
        let found: Vec<_> = index
            .candidates(query, exclude, &mut buf)
            .into_iter()
            .filter(|f| !excluded.contains(&f.euid))
            .collect();
        let outcome = match &self.bound {
            Some(bound) => {
                let candidates: Vec<(u64, &Prepared, &Sig)> =
                    found.iter().map(|f| (f.euid, f.prepared, f.sig)).collect();
                self.linker
                    .decide_bounded(query, &candidates, ranking, bound)
            }
            None => {
                let candidates = found.iter().map(|f| (f.euid, f.prepared));
                self.linker.decide(query, candidates, ranking)
            }
        };
        let views = outcome
            .ranked
            .iter()
            .enumerate()
            .map(|(i, ps)| {
                let f = &found[ps.best_record];
                CandidateView {
                    euid: Euid::from_seq(ps.person),
                    score: ps.score.weight,
                    probability: ps.score.probability(),
                    best_record: f.record_key(),
                    reason: candidate_reason(&ps.score, self.linker.thresholds()),
                    explanation: if explain_all || i == 0 {
                        comparisons_of(&self.linker.explain(query, f.prepared))
                    } else {
                        Vec::new()
                    },
                }
            })
            .collect();
        Ok(Scored { outcome, views })
    }

    /// The persons asserted not to be duplicates of `euid`, resolved through merges.
    fn not_duplicates(&self, euid: &Euid) -> Result<AHashSet<u64>> {
        let mut out = AHashSet::new();
        for n in self.store.not_duplicates_of(euid)? {
            let other = self
                .store
                .resolve_person(&n.b)?
                .map_or(n.b, |r| r.person.euid);
            out.insert(other.seq());
        }
        Ok(out)
    }

    /// Submits a record: an identical resubmission changes nothing and returns the stored
    /// answer; a new record is linked (decisive score), given a new person (no candidate
    /// reaches the lower threshold) or given a new person *and* a review task listing the
    /// candidates with their explanations (anything uncertain); a changed record is updated
    /// in place and re-evaluated, moving to another person only on a decisive score and
    /// otherwise opening a review task when another person comes close. Persons asserted
    /// not to be duplicates of the record's person are never candidates. Returns after the
    /// write is durable.
    ///
    /// An empty `actor` stands for the record's source.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] naming the field (nothing is stored); [`Error::Conflict`]
    /// when concurrent writes kept invalidating the decision; store errors.
    pub async fn match_or_create(&self, record: Record, actor: &str) -> Result<MatchResult> {
        let (result, pending) = self.match_or_create_applied(record, actor).await?;
        self.wait_durable(pending).await?;
        Ok(result)
    }

    /// [`Service::match_or_create`] up to the point where the change is applied (readers
    /// see it) but not yet known to be durable: the caller must pass the returned
    /// [`Pending`] to [`Service::wait_durable`] before acknowledging the record. The gRPC
    /// handler writes its audit entry in that interval, so the audit trail's sync and the
    /// store's flush overlap instead of following one another.
    ///
    /// # Errors
    /// As [`Service::match_or_create`], except durability.
    // The machine clients' hot path: its span is debug-level, so with the default `info`
    // filter no span is built per call (nothing inside logs at info or above).
    #[tracing::instrument(level = "debug", skip_all, fields(record = %record.key()))]
    pub async fn match_or_create_applied(
        &self,
        record: Record,
        actor: &str,
    ) -> Result<(MatchResult, Pending)> {
        let key = record.key();
        record
            .validate(today_days())
            .map_err(|e| e.for_record(&key))?;
        let actor = if actor.trim().is_empty() {
            record.source.clone()
        } else {
            check_text("actor", actor, MAX_ACTOR_LEN)?;
            actor.to_string()
        };
        let prepared = self.prepare(&record);
        let keys = block_keys(&prepared, &self.linker.blocking().rules);
        let held = self
            .stripes
            .lock(self.stripes.stripes_for(&key, &keys))
            .await;
        let mut tries = 0;
        let (result, ticket) = loop {
            match self.decide_and_apply(&record, &prepared, &actor) {
                Err(Error::Conflict(_)) if tries < RETRIES => {
                    tries += 1;
                    tokio::task::yield_now().await;
                }
                other => break other?,
            }
        };
        drop(held);
        tracing::debug!(
            euid = %result.euid,
            decision = ?result.decision,
            unchanged = result.unchanged,
            "match-or-create"
        );
        Ok((result, Pending(ticket)))
    }

    /// The synchronous core of match-or-create, run with the record's stripes held.
    fn decide_and_apply(
        &self,
        record: &Record,
        prepared: &Prepared,
        actor: &str,
    ) -> Result<(MatchResult, Ticket)> {
        let key = record.key();
        let stored = self.store.get_record(&key)?;
        if let Some(s) = stored.as_ref().filter(|s| &s.record == record) {
            // What it reports may still await its flush (a concurrent identical request).
            return Ok((repeat_answer(s), self.latest_ticket()));
        }
        let own_key = key_text(&key);
        let excluded = match &stored {
            Some(s) => self.not_duplicates(&s.euid)?,
            None => AHashSet::new(),
        };
        // The answer lists the persons that could have been linked or reviewed (and the
        // best one in any case), not the top k however hopeless: see `Ranking::Plausible`.
        let scored = self.score(
            prepared,
            Some(&own_key),
            &excluded,
            false,
            Ranking::Plausible(self.config.top_k),
        )?;
        let t = self.linker.thresholds();
        let best = scored.best();
        let reason = match scored.outcome.decision {
            Decision::Link if scored.outcome.sole_candidate => {
                "automatic link: the sole plausible candidate, no given name to compare"
            }
            Decision::Link => "automatic link above the upper threshold",
            Decision::Review => "uncertain match",
            Decision::New => "no candidate above the lower threshold",
        };
        let mut plan = Plan::new(&*self.store, Audit::now(actor, reason));
        let mut review_task = None;
        let (euid, decision) = match &stored {
            None => match (scored.outcome.decision, best) {
                (Decision::Link, Some(b)) => {
                    let method = LinkMethod::Auto { score: b.score };
                    let euid = plan.add_record(record.clone(), &b.euid, method)?;
                    (euid, MatchDecision::Linked)
                }
                (Decision::Review, Some(_)) => {
                    let euid = plan.create_person(record.clone(), LinkMethod::Created)?;
                    review_task = Some(self.open_review(&mut plan, &key, prepared, None)?);
                    (euid, MatchDecision::Review)
                }
                _ => {
                    let euid = plan.create_person(record.clone(), LinkMethod::Created)?;
                    (euid, MatchDecision::Created)
                }
            },
            Some(s) => {
                let own = s.euid.clone();
                plan.update_record(record.clone())?;
                plan.supersede_open_tasks(&key)?;
                let others_close = scored
                    .views
                    .iter()
                    .any(|c| c.euid != own && c.score >= t.lower);
                match (scored.outcome.decision, best) {
                    (Decision::Link, Some(b)) if b.euid != own => {
                        let method = LinkMethod::Auto { score: b.score };
                        let moved = plan.move_record(&key, &b.euid, method)?;
                        (moved.to, MatchDecision::Linked)
                    }
                    (Decision::Link, Some(_)) => (own, MatchDecision::Linked),
                    _ if others_close => {
                        review_task =
                            Some(self.open_review(&mut plan, &key, prepared, Some(&own))?);
                        (own, MatchDecision::Review)
                    }
                    _ => {
                        let alone = plan.person(&own)?.is_some_and(|p| p.members.len() <= 1);
                        let d = if alone {
                            MatchDecision::Created
                        } else {
                            MatchDecision::Linked
                        };
                        (own, d)
                    }
                }
            }
        };
        let result = MatchResult {
            euid,
            decision,
            score: best.map(|b| b.score),
            probability: best.map(|b| b.probability),
            explanation: best.map(|b| b.explanation.clone()).unwrap_or_default(),
            candidates: scored
                .views
                .iter()
                .map(|c| CandidateView {
                    explanation: Vec::new(),
                    ..c.clone()
                })
                .collect(),
            review_task,
            unchanged: false,
            model_version: self.model_version().to_string(),
        };
        let outcome = OpaqueJson::encode(&StoredOutcome::of(&result))?;
        plan.set_outcome(&key, outcome)?;
        let changes = plan.finish();
        let ticket = self.apply(&changes, Some((&own_key, prepared.clone())))?;
        Ok((result, ticket))
    }

    /// Opens a review task about `key` listing every candidate at or above the lower
    /// threshold other than `own`, each with its explanation side by side.
    fn open_review(
        &self,
        plan: &mut Plan<'_, dyn crate::store::Store>,
        key: &RecordKey,
        prepared: &Prepared,
        own: Option<&Euid>,
    ) -> Result<TaskId> {
        let own_key = key_text(key);
        let excluded: AHashSet<u64> = own.map(|e| e.seq()).into_iter().collect();
        let ranking = Ranking::Plausible(self.config.top_k);
        let scored = self.score(prepared, Some(&own_key), &excluded, true, ranking)?;
        let lower = self.linker.thresholds().lower;
        let mut views: Vec<CandidateView> = scored
            .views
            .into_iter()
            .filter(|c| c.score >= lower)
            .collect();
        if views.is_empty() {
            return Err(Error::Conflict(
                "no candidate left to review; deciding again".into(),
            ));
        }
        views.truncate(self.config.top_k);
        let candidates = views
            .iter()
            .map(|c| TaskCandidate {
                euid: c.euid.clone(),
                score: c.score,
                probability: c.probability,
            })
            .collect();
        let detail = serde_json::to_value(&views)
            .map_err(|e| Error::Corrupt(format!("encoding a review task: {e}")))?;
        plan.open_task(key, candidates, detail)
    }

    /// Scores a record against the index and says what match-or-create would decide were
    /// the record new; writes nothing. A stored record with the same key is left out of its
    /// own candidates. A record without a key may be searched with. `max_candidates` of 0
    /// means [`super::ServiceConfig::top_k`]; at most [`MAX_MATCH_CANDIDATES`] are returned.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] naming the field.
    #[tracing::instrument(level = "debug", skip_all)]
    pub fn match_only(&self, record: &Record, max_candidates: usize) -> Result<MatchPreview> {
        let keyless = record.source.is_empty() && record.local_id.is_empty();
        if keyless {
            let mut probe = record.clone();
            probe.source = "query".into();
            probe.local_id = "query".into();
            probe.validate(today_days())?;
        } else {
            record
                .validate(today_days())
                .map_err(|e| e.for_record(record.key()))?;
        }
        let prepared = self.prepare(record);
        let own_key = (!keyless).then(|| key_text(&record.key()));
        let top_k = match max_candidates {
            0 => self.config.top_k,
            n => n.min(MAX_MATCH_CANDIDATES),
        };
        let ranking = Ranking::Top(top_k);
        let scored = self.score(
            &prepared,
            own_key.as_deref(),
            &AHashSet::new(),
            true,
            ranking,
        )?;
        Ok(MatchPreview {
            decision: match scored.outcome.decision {
                Decision::Link => MatchDecision::Linked,
                Decision::Review => MatchDecision::Review,
                Decision::New => MatchDecision::Created,
            },
            candidates: scored.views,
            model_version: self.model_version().to_string(),
        })
    }
}

/// Why a candidate with this score would not be linked automatically.
fn candidate_reason(score: &PairScore, t: Thresholds) -> Option<ReviewReason> {
    match (score.rival, pair_decision(score, t)) {
        (None, Decision::Link) => None,
        (Some(r), _) => Some(ReviewReason::Rival(r)),
        (None, _) => Some(ReviewReason::BetweenThresholds),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scoring::Rival;

    #[test]
    fn stored_outcome_round_trips_compactly() {
        let r = MatchResult {
            euid: Euid::from_seq(3),
            decision: MatchDecision::Review,
            score: Some(7.25),
            probability: Some(weight_to_prob(7.25)),
            explanation: vec![ComparisonView {
                comparison: "given_name".into(),
                level: "exact".into(),
                weight: 4.5,
            }],
            candidates: vec![CandidateView {
                euid: Euid::from_seq(1),
                score: 7.25,
                probability: weight_to_prob(7.25),
                best_record: RecordKey::new("adt", "1"),
                explanation: Vec::new(),
                reason: Some(ReviewReason::Rival(Rival::Twin)),
            }],
            review_task: Some(TaskId(4)),
            unchanged: false,
            model_version: "default-1".into(),
        };
        let v = serde_json::to_value(StoredOutcome::of(&r)).unwrap();
        let text = v.to_string();
        assert!(text.len() < 200, "{text}");
        let back: StoredOutcome = serde_json::from_value(v).unwrap();
        let again = back.into_result(Euid::from_seq(3), true);
        assert_eq!(
            again,
            MatchResult {
                unchanged: true,
                ..r
            }
        );
    }
}
