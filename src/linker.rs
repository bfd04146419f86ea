//! Candidates → scores → decision. Pure and synchronous: the service, batch runs, benches
//! and tests all decide through [`Linker::decide`].
//!
//! A person's score is the best score of any of its records against the query. The
//! decision is *Link* only when exactly one person reaches the upper threshold and no
//! guard rail forbids it; anything uncertain is *Review*, never a guess.
//!
//! # The sole-candidate rule
//! One guard rail is about missing evidence rather than contradiction:
//! [`Guard::NoGivenNameEvidence`] (a "Baby Boy" record, or no given name at all). Alone, a
//! pair like that cannot tell a newborn from a same-sex twin. With the other candidates
//! in view it often can, so [`Linker::decide`] links such a pair when
//! - it reaches the upper threshold and that guard is its only objection, with a given
//!   name on exactly one side;
//! - no record of that person contradicts the query ([`Guard::is_contradiction`]);
//! - no other candidate person is plausible: every other person scores below the lower
//!   threshold or is contradicted (an opposite-sex twin, differing on sex, is no rival; a
//!   same-sex twin is, and the record goes to review). For a query without a given name,
//!   a person whose candidate records have no given name either is not counted: that is a
//!   second placeholder record of the same newborn from another source, more often than
//!   not.
//!
//! The outcome says so ([`Outcome::sole_candidate`]). Batch runs apply the same rule after
//! clustering ([`crate::batch::attach`]).

use std::hash::Hash;

use ahash::AHashMap;
use serde::{Deserialize, Serialize};

use crate::blocking::BlockingConfig;
use crate::prepare::Prepared;
use crate::record::Record;
use crate::scoring::{Explanation, Guard, Model, PairScore, Scorer, Thresholds};
use crate::Result;

/// What to do with a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// Same person as the best candidate: link automatically.
    Link,
    /// Uncertain: a person must decide.
    Review,
    /// Nobody close: a new person.
    New,
}

/// Why an outcome went to review rather than linking.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReviewReason {
    /// The best score lies between the thresholds.
    BetweenThresholds,
    /// Two or more persons reach the upper threshold.
    Ambiguous,
    /// A guard rail forbids automatic linking.
    Guarded(Guard),
}

/// One candidate person and how well the query matches it.
#[derive(Debug, Clone, PartialEq)]
pub struct PersonScore<P> {
    /// The person (EUID or cluster id).
    pub person: P,
    /// Best pair score among the person's records (guard of that pair, or any
    /// multiple-birth guard among its records).
    pub score: PairScore,
    /// Position, in the candidate list given, of the record that scored best.
    pub best_record: usize,
    /// Some record of this person contradicts the query ([`Guard::is_contradiction`]).
    pub contradicted: bool,
    /// Some candidate record of this person has a given name.
    pub named: bool,
}

/// The linker's answer for one query record.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome<P> {
    /// Link, review or new.
    pub decision: Decision,
    /// Why it is a review, when it is one.
    pub review_reason: Option<ReviewReason>,
    /// Candidate persons, best first (all scored persons, up to the `top_k` asked for).
    pub ranked: Vec<PersonScore<P>>,
    /// A link made by the sole-candidate rule (see the module docs): the best pair has no
    /// given name to compare, and no other candidate is plausible.
    pub sole_candidate: bool,
}

impl<P> Outcome<P> {
    /// The best candidate, if any.
    pub fn best(&self) -> Option<&PersonScore<P>> {
        self.ranked.first()
    }
}

/// What one scored pair alone calls for; the rule every path (service, batch, eval) shares.
///
/// - at or above `upper`, no guard: link;
/// - at or above `upper` but guarded: review (a person must look);
/// - between the thresholds: review, unless a guard *contradicts* the match
///   ([`Guard::is_contradiction`]), which makes it a new person;
/// - below `lower`: new person.
pub fn pair_decision(score: &PairScore, t: Thresholds) -> Decision {
    let w = score.weight;
    if w < t.lower {
        return Decision::New;
    }
    match score.guard {
        None if w >= t.upper => Decision::Link,
        None => Decision::Review,
        Some(_) if w >= t.upper => Decision::Review,
        Some(g) if g.is_contradiction() => Decision::New,
        Some(_) => Decision::Review,
    }
}

/// The decision maker: a compiled model plus the blocking configuration.
///
/// # Example
/// ```
/// use empi::linker::{Decision, Linker};
/// use empi::record::Record;
///
/// let linker = Linker::with_default_model();
/// let rec = |id: &str, given: &str| Record {
///     source: "adt".into(),
///     local_id: id.into(),
///     given_name: Some(given.into()),
///     family_name: Some("Okonkwo".into()),
///     birth_date: Some("1961-07-02".parse().unwrap()),
///     phones: vec!["413-555-0142".into()],
///     ..Default::default()
/// };
/// let stored = linker.prepare(&rec("1", "Margaret"));
/// let query = linker.prepare(&rec("2", "Margaret"));
/// let outcome = linker.decide(&query, [("E1", &stored)], 5);
/// assert_eq!(outcome.decision, Decision::Link);
/// assert_eq!(outcome.best().unwrap().person, "E1");
/// ```
#[derive(Debug, Clone)]
pub struct Linker {
    scorer: Scorer,
    blocking: BlockingConfig,
}

impl Linker {
    /// A linker over a model, with default blocking.
    ///
    /// # Errors
    /// [`crate::Error::Model`] if the model does not validate.
    pub fn new(model: Model) -> Result<Linker> {
        Ok(Linker {
            scorer: Scorer::new(model)?,
            blocking: BlockingConfig::default(),
        })
    }

    /// A linker over the shipped default model.
    pub fn with_default_model() -> Linker {
        // The default model is built complete and is checked by a unit test.
        Linker::new(Model::default_model()).expect("default model validates")
    }

    /// Replaces the blocking configuration.
    pub fn with_blocking(mut self, blocking: BlockingConfig) -> Linker {
        self.blocking = blocking;
        self
    }

    /// The scorer.
    pub fn scorer(&self) -> &Scorer {
        &self.scorer
    }

    /// The blocking configuration.
    pub fn blocking(&self) -> &BlockingConfig {
        &self.blocking
    }

    /// Decision thresholds.
    pub fn thresholds(&self) -> Thresholds {
        self.scorer.thresholds()
    }

    /// Prepares a record for comparison and blocking.
    pub fn prepare(&self, r: &Record) -> Prepared {
        self.scorer.prepare(r)
    }

    /// Explains one pair.
    pub fn explain(&self, a: &Prepared, b: &Prepared) -> Explanation {
        self.scorer.explain(a, b)
    }

    /// Scores every candidate record, groups by person, ranks persons, decides.
    /// `top_k` bounds the ranked list returned (the decision looks at all persons).
    pub fn decide<'a, P: Clone + Eq + Hash>(
        &self,
        query: &Prepared,
        candidates: impl IntoIterator<Item = (P, &'a Prepared)>,
        top_k: usize,
    ) -> Outcome<P> {
        let mut by_person: AHashMap<P, PersonScore<P>> = AHashMap::new();
        let mut best_named = Vec::new();
        for (i, (person, rec)) in candidates.into_iter().enumerate() {
            let s = self.scorer.score(query, rec);
            let contradicted = s.guard.is_some_and(Guard::is_contradiction);
            let named = rec.given.is_some();
            best_named.push(named);
            match by_person.get_mut(&person) {
                None => {
                    by_person.insert(
                        person.clone(),
                        PersonScore {
                            person,
                            score: s,
                            best_record: i,
                            contradicted,
                            named,
                        },
                    );
                }
                Some(ps) => {
                    let twin = ps.score.guard == Some(Guard::MultipleBirthOrderDiffers)
                        || s.guard == Some(Guard::MultipleBirthOrderDiffers);
                    if s.weight > ps.score.weight {
                        ps.score = s;
                        ps.best_record = i;
                    }
                    if twin {
                        ps.score.guard = Some(Guard::MultipleBirthOrderDiffers);
                    }
                    ps.contradicted |= contradicted;
                    ps.named |= named;
                }
            }
        }
        let mut ranked: Vec<PersonScore<P>> = by_person.into_values().collect();
        ranked.sort_by(|a, b| {
            b.score
                .weight
                .total_cmp(&a.score.weight)
                .then(a.best_record.cmp(&b.best_record))
        });
        let (mut decision, mut review_reason) = self.classify(&ranked);
        let sole_candidate = decision == Decision::Review
            && self.sole_candidate(query.given.is_some(), &ranked, &best_named);
        if sole_candidate {
            (decision, review_reason) = (Decision::Link, None);
        }
        ranked.truncate(top_k.max(1));
        Outcome {
            decision,
            review_reason,
            ranked,
            sole_candidate,
        }
    }

    /// The sole-candidate rule (module docs): the best person is held back only by
    /// [`Guard::NoGivenNameEvidence`] on a pair with a given name on one side, nothing of
    /// it contradicts the query, and no other person is a plausible rival.
    fn sole_candidate<P>(
        &self,
        query_named: bool,
        ranked: &[PersonScore<P>],
        record_named: &[bool],
    ) -> bool {
        let t = self.thresholds();
        let Some(best) = ranked.first() else {
            return false;
        };
        let one_side_named = query_named != record_named[best.best_record];
        let rival = |p: &PersonScore<P>| {
            p.score.weight >= t.lower && !p.contradicted && (query_named || p.named)
        };
        best.score.guard == Some(Guard::NoGivenNameEvidence)
            && best.score.weight >= t.upper
            && one_side_named
            && !best.contradicted
            && !ranked[1..].iter().any(rival)
    }

    fn classify<P>(&self, ranked: &[PersonScore<P>]) -> (Decision, Option<ReviewReason>) {
        let t = self.thresholds();
        let Some(best) = ranked.first() else {
            return (Decision::New, None);
        };
        let reason = |p: &PersonScore<P>| {
            Some(
                p.score
                    .guard
                    .map_or(ReviewReason::BetweenThresholds, ReviewReason::Guarded),
            )
        };
        match pair_decision(&best.score, t) {
            Decision::Link => {
                // Only another *linkable* person makes a link ambiguous; a twin whose pair
                // is contradicted is no rival, or the order of arrival would decide.
                if ranked[1..]
                    .iter()
                    .any(|p| pair_decision(&p.score, t) == Decision::Link)
                {
                    (Decision::Review, Some(ReviewReason::Ambiguous))
                } else {
                    (Decision::Link, None)
                }
            }
            Decision::Review => (Decision::Review, reason(best)),
            // The best is contradicted; a weaker, uncontradicted person may still need a look.
            Decision::New => {
                match ranked[1..]
                    .iter()
                    .find(|p| pair_decision(&p.score, t) == Decision::Review)
                {
                    Some(p) => (Decision::Review, reason(p)),
                    None => (Decision::New, None),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::PartialDate;

    fn rec(given: &str, family: &str, dob: (u16, u8, u8), phone: &str) -> Record {
        Record {
            source: "s".into(),
            local_id: "1".into(),
            given_name: Some(given.into()),
            family_name: Some(family.into()),
            birth_date: PartialDate::full(dob.0, dob.1, dob.2).ok(),
            phones: vec![phone.into()],
            ..Default::default()
        }
    }

    #[test]
    fn links_reviews_and_creates() {
        let l = Linker::with_default_model();
        let q = l.prepare(&rec("Wanda", "Kowalczyk", (1970, 3, 9), "555-201-3344"));
        let same = l.prepare(&rec("Wanda", "Kowalczyk", (1970, 3, 9), "555-201-3344"));
        let stranger = l.prepare(&rec("Peter", "Ng", (1990, 1, 1), "555-999-0000"));
        let out = l.decide(&q, [(1u32, &same), (2, &stranger)], 10);
        assert_eq!(out.decision, Decision::Link);
        assert_eq!(out.ranked[0].person, 1);
        assert_eq!(out.ranked.len(), 2);
        let out = l.decide(&q, [(2u32, &stranger)], 10);
        assert_eq!(out.decision, Decision::New);
        let out = l.decide::<u32>(&q, [], 10);
        assert_eq!(out.decision, Decision::New);
        // Two persons both clearly the query: ambiguous, a registrar decides.
        let out = l.decide(&q, [(1u32, &same), (3, &same)], 10);
        assert_eq!(out.decision, Decision::Review);
        assert_eq!(out.review_reason, Some(ReviewReason::Ambiguous));
    }

    #[test]
    fn a_guarded_twin_does_not_make_a_clear_link_ambiguous() {
        let l = Linker::with_default_model();
        let q = l.prepare(&rec("Wanda", "Kowalczyk", (1970, 3, 9), "555-201-3344"));
        let same = l.prepare(&rec("Wanda", "Kowalczyk", (1970, 3, 9), "555-201-3344"));
        let twin = l.prepare(&rec("Olga", "Kowalczyk", (1970, 3, 9), "555-201-3344"));
        for order in [[(1u32, &same), (2, &twin)], [(2, &twin), (1, &same)]] {
            let out = l.decide(&q, order, 10);
            assert_eq!(out.decision, Decision::Link);
            assert_eq!(out.ranked[0].person, 1);
        }
    }

    #[test]
    fn a_contradicted_pair_in_the_band_is_a_new_person() {
        let t = Thresholds {
            upper: 8.0,
            lower: 0.0,
        };
        let s = |weight, guard| PairScore { weight, guard };
        assert_eq!(
            pair_decision(&s(4.0, Some(Guard::BirthDateDiffers)), t),
            Decision::New
        );
        assert_eq!(
            pair_decision(&s(4.0, Some(Guard::NoGivenNameEvidence)), t),
            Decision::Review
        );
        assert_eq!(
            pair_decision(&s(9.0, Some(Guard::BirthDateDiffers)), t),
            Decision::Review
        );
        assert_eq!(pair_decision(&s(9.0, None), t), Decision::Link);
        assert_eq!(pair_decision(&s(4.0, None), t), Decision::Review);
        assert_eq!(pair_decision(&s(-1.0, None), t), Decision::New);
    }

    #[test]
    fn twins_go_to_review_not_link() {
        let l = Linker::with_default_model();
        let q = l.prepare(&rec("Wanda", "Kowalczyk", (1970, 3, 9), "555-201-3344"));
        let twin = l.prepare(&rec("Olga", "Kowalczyk", (1970, 3, 9), "555-201-3344"));
        let out = l.decide(&q, [(7u32, &twin)], 10);
        assert_ne!(out.decision, Decision::Link);
    }

    fn baby(sex: crate::record::Sex) -> Record {
        let mut r = rec("Baby Boy", "Kowalczyk", (2025, 3, 9), "555-201-3344");
        r.sex = sex;
        r
    }

    fn child(given: &str, sex: crate::record::Sex) -> Record {
        let mut r = rec(given, "Kowalczyk", (2025, 3, 9), "555-201-3344");
        r.sex = sex;
        r
    }

    #[test]
    fn a_placeholder_newborn_links_to_its_sole_named_candidate() {
        use crate::record::Sex;
        let l = Linker::with_default_model();
        let q = l.prepare(&baby(Sex::Male));
        let john = l.prepare(&child("John", Sex::Male));
        let out = l.decide(&q, [(1u32, &john)], 10);
        assert_eq!(out.ranked[0].score.guard, Some(Guard::NoGivenNameEvidence));
        assert_eq!(out.decision, Decision::Link);
        assert!(out.sole_candidate);
        // The other way round: the named record finds the placeholder person.
        let out = l.decide(&john, [(1u32, &q)], 10);
        assert_eq!(out.decision, Decision::Link);
        // Two placeholders of one newborn (two sources) do not make each other rivals.
        let other_baby = l.prepare(&baby(Sex::Male));
        let out = l.decide(&q, [(1u32, &john), (2, &other_baby)], 10);
        assert_eq!((out.decision, out.ranked[0].person), (Decision::Link, 1));
        // But placeholder against placeholder alone is still a registrar's question.
        let out = l.decide(&q, [(2u32, &other_baby)], 10);
        assert_eq!(out.decision, Decision::Review);
        assert!(!out.sole_candidate);
    }

    #[test]
    fn a_same_sex_twin_keeps_a_placeholder_in_review_an_opposite_sex_one_does_not() {
        use crate::record::Sex;
        let l = Linker::with_default_model();
        let q = l.prepare(&baby(Sex::Male));
        let john = l.prepare(&child("John", Sex::Male));
        let oliver = l.prepare(&child("Oliver", Sex::Male));
        let jane = l.prepare(&child("Jane", Sex::Female));
        let out = l.decide(&q, [(1u32, &john), (2, &oliver)], 10);
        assert_eq!(out.decision, Decision::Review);
        assert!(!out.sole_candidate);
        let out = l.decide(&q, [(1u32, &john), (3, &jane)], 10);
        assert_eq!((out.decision, out.ranked[0].person), (Decision::Link, 1));
        // A person holding the placeholder and a contradicting twin is not linked to.
        let mut p = vec![(1u32, &q), (1, &john)];
        let out = l.decide(&oliver, p.drain(..), 10);
        assert!(out.ranked[0].contradicted);
        assert_ne!(out.decision, Decision::Link);
    }

    #[test]
    fn person_score_is_best_record() {
        let l = Linker::with_default_model();
        let q = l.prepare(&rec("Wanda", "Kowalczyk", (1970, 3, 9), "555-201-3344"));
        let weak = l.prepare(&rec("Wanda", "Kowalczyk", (1971, 8, 1), "555-000-1111"));
        let strong = l.prepare(&rec("Wanda", "Kowalczyk", (1970, 3, 9), "555-201-3344"));
        let out = l.decide(&q, [(1u32, &weak), (1, &strong)], 1);
        assert_eq!(out.ranked.len(), 1);
        assert_eq!(out.ranked[0].best_record, 1);
    }
}
