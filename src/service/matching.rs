//! Match-or-create and match-only: validate, prepare, find candidates in the live index,
//! decide with the linker, and (for match-or-create) write the record, its person, any
//! review task and the answer in one change set.

use ahash::AHashSet;
use serde::{Deserialize, Serialize};

use crate::blocking::block_keys;
use crate::error::{Error, Result};
use crate::linker::{pair_decision, Decision, Ranking, ReviewReason, Verdict};
use crate::prepare::Prepared;
use crate::record::{today_days, Record, RecordKey};
use crate::scoring::{weight_to_prob, PairScore, Sig, Thresholds};
use crate::store::{
    Euid, LinkMethod, Op, OpaqueJson, Plan, Receipt, Stamp, Store, StoredRecord, TaskCandidate,
    TaskId, Ticket,
};

use super::index::key_text;
use super::stamp::{check_text, MAX_ACTOR_LEN};
use super::types::{comparisons_of, CandidateView, ComparisonView, MatchPreview};
use super::{MatchResult, Pending, Service, RETRIES};

/// Most candidates [`Service::match_only`] returns.
pub const MAX_MATCH_CANDIDATES: usize = 100;

/// The answer of a match-or-create as stored with the record (compact field names: one per
/// stored record), so an identical resubmission returns it without deciding again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct StoredAnswer {
    #[serde(rename = "d", with = "stored_decision")]
    decision: Decision,
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

/// A [`Decision`] as a stored answer spells it (`linked`, `created`, `review`: the words of
/// the API's answer).
mod stored_decision {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::linker::Decision;

    pub(super) fn serialize<S: Serializer>(d: &Decision, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(match d {
            Decision::Link => "linked",
            Decision::New => "created",
            Decision::Review => "review",
        })
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Decision, D::Error> {
        match &*std::borrow::Cow::<str>::deserialize(d)? {
            "linked" => Ok(Decision::Link),
            "created" => Ok(Decision::New),
            "review" => Ok(Decision::Review),
            _ => Err(serde::de::Error::custom("unknown decision")),
        }
    }
}

impl StoredAnswer {
    fn of(r: &MatchResult) -> Self {
        StoredAnswer {
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
                .filter_map(|c| Some((c.euid.clone(), c.score, c.best_record.clone()?)))
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
                    best_record: Some(best_record),
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
    let answer = stored
        .answer
        .as_ref()
        .and_then(OpaqueJson::decode::<StoredAnswer>);
    match answer {
        Some(o) => o.into_result(stored.euid.clone(), true),
        // Stored by something other than match-or-create: describe the link.
        None => MatchResult {
            euid: stored.euid.clone(),
            decision: match stored.link.method {
                LinkMethod::Created => Decision::New,
                _ => Decision::Link,
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

/// Candidates scored against a query: the linker's verdict and a view of each ranked person.
struct Scored {
    verdict: Verdict<u64>,
    views: Vec<CandidateView>,
}

impl Scored {
    fn best(&self) -> Option<&CandidateView> {
        self.views.first()
    }
}

/// An attempt at deciding that either got through or found the index changed under it.
enum Tried<T> {
    Done(T),
    /// Decide again from fresh reads (not an error: retried like a stale write).
    DecideAgain,
}

/// Where match-or-create puts a record: its person, the decision, a review task opened.
struct Placed {
    euid: Euid,
    decision: Decision,
    review_task: Option<TaskId>,
}

impl Placed {
    fn at(euid: Euid, decision: Decision) -> Self {
        Placed {
            euid,
            decision,
            review_task: None,
        }
    }
}

/// The reason stamped on the history of a match-or-create, from the linker's verdict.
fn why<P>(verdict: &Verdict<P>) -> &'static str {
    match verdict.decision {
        Decision::Link if verdict.sole_candidate => {
            "automatic link: the sole plausible candidate, no given name to compare"
        }
        Decision::Link => "automatic link above the upper threshold",
        Decision::Review => "uncertain match",
        Decision::New => "no candidate above the lower threshold",
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
        let verdict = match &self.bound {
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
        let views = verdict
            .ranked
            .iter()
            .enumerate()
            .map(|(i, ps)| {
                let f = &found[ps.best_record];
                CandidateView {
                    euid: Euid::from_seq(ps.person),
                    score: ps.score.weight,
                    probability: ps.score.probability(),
                    best_record: Some(f.record_key()),
                    reason: candidate_reason(&ps.score, self.linker.thresholds()),
                    explanation: if explain_all || i == 0 {
                        comparisons_of(&self.linker.explain(query, f.prepared))
                    } else {
                        Vec::new()
                    },
                }
            })
            .collect();
        Ok(Scored { verdict, views })
    }

    /// The persons asserted not to be duplicates of `euid`, each as its survivor.
    fn not_duplicates(&self, euid: &Euid) -> Result<AHashSet<u64>> {
        let mut out = AHashSet::new();
        for n in self.store.not_duplicates_of(euid)? {
            let other = self.store.survivor_of(&n.b)?.map_or(n.b, |r| r.person.euid);
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
    /// [`Error::InvalidInput`] naming the field (nothing is stored); [`Error::Stale`]
    /// when concurrent writes kept invalidating the decision; store errors.
    pub async fn match_or_create(&self, record: Record, actor: &str) -> Result<MatchResult> {
        let (result, pending) = self.match_or_create_applied(record, actor).await?;
        self.wait_durable(pending).await?;
        Ok(result)
    }

    /// [`Service::match_or_create`] up to the point where the change is applied (readers
    /// see it) but not yet known to be durable: the caller must pass the returned
    /// [`Pending`] to [`Service::wait_durable`] or [`Service::make_durable`] before
    /// acknowledging the record. The application layer makes it durable in the same cycle
    /// as the call's audit line ([`crate::app`]).
    ///
    /// # Errors
    /// As [`Service::match_or_create`], except durability.
    // The machine clients' hot path: its span is debug-level, so with the default `info`
    // filter no span is built per call (nothing inside logs at info or above).
    pub async fn match_or_create_applied(
        &self,
        record: Record,
        actor: &str,
    ) -> Result<(MatchResult, Pending)> {
        self.match_or_create_receipted(record, actor, None).await
    }

    /// [`Service::match_or_create_applied`] keeping a door's `receipt` in the same change
    /// set as the record (written even when the record is an identical resubmission, so a
    /// later replay of the same message finds it).
    ///
    /// # Errors
    /// As [`Service::match_or_create`], except durability.
    #[tracing::instrument(level = "debug", skip_all, fields(record = %record.key()))]
    pub async fn match_or_create_receipted(
        &self,
        record: Record,
        actor: &str,
        receipt: Option<Receipt>,
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
            match self.decide_and_apply(&record, &prepared, &actor, receipt.as_ref()) {
                Ok(Tried::Done(done)) => break done,
                Ok(Tried::DecideAgain) | Err(Error::Stale(_)) if tries < RETRIES => {
                    tries += 1;
                    tokio::task::yield_now().await;
                }
                Ok(Tried::DecideAgain) => {
                    return Err(Error::Stale(format!(
                        "record {key}: its candidates kept changing while deciding; try again"
                    )))
                }
                Err(e) => return Err(e),
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

    /// The synchronous core of match-or-create, run with the record's stripes held: an
    /// identical repeat answers from the store; otherwise the record is scored and placed,
    /// as a new record or a changed one, and the change set applied.
    fn decide_and_apply(
        &self,
        record: &Record,
        prepared: &Prepared,
        actor: &str,
        receipt: Option<&Receipt>,
    ) -> Result<Tried<(MatchResult, Ticket)>> {
        let key = record.key();
        let stored = self.store.get_record(&key)?;
        if let Some(s) = stored.as_ref().filter(|s| &s.record == record) {
            let ticket = match receipt {
                Some(r) => self.apply(&vec![Op::PutReceipt(r.clone())].into(), None)?,
                // What it reports may still await its flush (a concurrent identical request).
                None => self.latest_ticket(),
            };
            return Ok(Tried::Done((repeat_answer(s), ticket)));
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
        let mut plan = Plan::new(&*self.store, Stamp::now(actor, why(&scored.verdict)));
        let placed = match &stored {
            None => self.place_new(&mut plan, record, prepared, &scored)?,
            Some(s) => self.place_changed(&mut plan, record, prepared, &scored, &s.euid)?,
        };
        let Tried::Done(placed) = placed else {
            return Ok(Tried::DecideAgain);
        };
        let best = scored.best();
        let result = MatchResult {
            euid: placed.euid,
            decision: placed.decision,
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
            review_task: placed.review_task,
            unchanged: false,
            model_version: self.model_version().to_string(),
        };
        plan.set_answer(&key, OpaqueJson::encode(&StoredAnswer::of(&result))?)?;
        let mut changes = plan.finish();
        if let Some(r) = receipt {
            changes.push(Op::PutReceipt(r.clone()));
        }
        let ticket = self.apply(&changes, Some((&own_key, prepared.clone())))?;
        Ok(Tried::Done((result, ticket)))
    }

    /// Plans a record not stored before: linked to the best candidate on a decisive score,
    /// its own new person with a review task when uncertain, its own new person otherwise.
    fn place_new(
        &self,
        plan: &mut Plan<'_, dyn Store>,
        record: &Record,
        prepared: &Prepared,
        scored: &Scored,
    ) -> Result<Tried<Placed>> {
        let placed = match (scored.verdict.decision, scored.best()) {
            (Decision::Link, Some(best)) => {
                let method = LinkMethod::Auto { score: best.score };
                let euid = plan.add_record(record.clone(), &best.euid, method)?;
                Placed::at(euid, Decision::Link)
            }
            (Decision::Review, Some(_)) => {
                let euid = plan.create_person(record.clone(), LinkMethod::Created)?;
                let Some(task) = self.open_review(plan, &record.key(), prepared, None)? else {
                    return Ok(Tried::DecideAgain);
                };
                Placed {
                    review_task: Some(task),
                    ..Placed::at(euid, Decision::Review)
                }
            }
            _ => {
                let euid = plan.create_person(record.clone(), LinkMethod::Created)?;
                Placed::at(euid, Decision::New)
            }
        };
        Ok(Tried::Done(placed))
    }

    /// Plans a stored record whose content changed: updated in place (its open review tasks
    /// superseded), moved to another person only on a decisive score, reviewed when another
    /// person comes close, left where it is otherwise.
    fn place_changed(
        &self,
        plan: &mut Plan<'_, dyn Store>,
        record: &Record,
        prepared: &Prepared,
        scored: &Scored,
        own: &Euid,
    ) -> Result<Tried<Placed>> {
        let key = record.key();
        plan.update_record(record.clone())?;
        plan.supersede_open_tasks(&key)?;
        let placed = match (scored.verdict.decision, scored.best()) {
            (Decision::Link, Some(best)) if best.euid != *own => {
                let method = LinkMethod::Auto { score: best.score };
                let moved = plan.move_record(&key, &best.euid, method)?;
                Placed::at(moved.to, Decision::Link)
            }
            (Decision::Link, Some(_)) => Placed::at(own.clone(), Decision::Link),
            _ if self.others_close(scored, own) => {
                let Some(task) = self.open_review(plan, &key, prepared, Some(own))? else {
                    return Ok(Tried::DecideAgain);
                };
                Placed {
                    review_task: Some(task),
                    ..Placed::at(own.clone(), Decision::Review)
                }
            }
            _ => {
                let alone = plan.person(own)?.is_some_and(|p| p.members.len() <= 1);
                let decision = if alone { Decision::New } else { Decision::Link };
                Placed::at(own.clone(), decision)
            }
        };
        Ok(Tried::Done(placed))
    }

    /// Whether a person other than `own` scored at or above the lower threshold.
    fn others_close(&self, scored: &Scored, own: &Euid) -> bool {
        let lower = self.linker.thresholds().lower;
        scored
            .views
            .iter()
            .any(|c| c.euid != *own && c.score >= lower)
    }

    /// Opens a review task about `key` listing every candidate at or above the lower
    /// threshold other than `own`, each with its explanation side by side. `None` when no
    /// such candidate is left: the index changed since the decision (a registrar action
    /// moved or merged a candidate), and the record must be decided again.
    fn open_review(
        &self,
        plan: &mut Plan<'_, dyn Store>,
        key: &RecordKey,
        prepared: &Prepared,
        own: Option<&Euid>,
    ) -> Result<Option<TaskId>> {
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
            return Ok(None);
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
        plan.open_task(key, candidates, detail).map(Some)
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
            decision: scored.verdict.decision,
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
    fn stored_answer_round_trips_compactly() {
        let r = MatchResult {
            euid: Euid::from_seq(3),
            decision: Decision::Review,
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
                best_record: Some(RecordKey::new("adt", "1")),
                explanation: Vec::new(),
                reason: Some(ReviewReason::Rival(Rival::Twin)),
            }],
            review_task: Some(TaskId(4)),
            unchanged: false,
            model_version: "default-1".into(),
        };
        let v = serde_json::to_value(StoredAnswer::of(&r)).unwrap();
        let text = v.to_string();
        assert!(text.len() < 200, "{text}");
        let back: StoredAnswer = serde_json::from_value(v).unwrap();
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
