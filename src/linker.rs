//! Candidates → scores → decision. Pure and synchronous: the service, batch runs, benches
//! and tests all decide through [`Linker::decide`].
//!
//! A person's score is the best score of any of its records against the query, weighed
//! against a stranger and against the relatives who could share the household
//! ([`crate::scoring::rivals`]). The decision is *Link* only when exactly one person
//! reaches the upper threshold; anything uncertain is *Review*, never a guess.
//!
//! # The sole-candidate rule
//! One rival is about missing evidence rather than contradiction:
//! [`Rival::TwinNoGivenName`] (a "Baby Boy" record, or no given name at all, in a household
//! and birth date that a twin could share). Alone, a pair like that cannot tell a newborn
//! from a same-sex twin. With the other candidates in view it often can, so
//! [`Linker::decide`] links such a pair when
//! - that rival is what holds it back (without the twin it would reach the upper
//!   threshold), with a given name on exactly one side;
//! - no record of that person contradicts the query or is held back by a twin or
//!   relative ([`PersonScore::contradicted`]);
//! - the person is not known to be one child of a multiple birth unless the query says
//!   it is the same child: when one side gives a multiple-birth order and the other
//!   gives none (or another), the nameless record could be the co-twin, whom the
//!   records may simply not name yet ([`one_child_of_the_birth`]);
//! - no other candidate person is plausible: every other person scores below the lower
//!   threshold or is contradicted (an opposite-sex twin, differing on sex, is no rival; a
//!   same-sex twin is, and the record goes to review). For a query without a given name,
//!   a person whose candidate records have no given name either is not counted: that is a
//!   second placeholder record of the same newborn from another source, more often than
//!   not.
//!
//! The verdict says so ([`Verdict::sole_candidate`]). Batch runs apply the same rule after
//! clustering ([`crate::batch::attach`]).

use std::hash::Hash;

use ahash::{AHashMap, AHashSet};
use serde::{Deserialize, Serialize};

use crate::blocking::BlockingConfig;
use crate::prepare::Prepared;
use crate::record::Record;
use crate::scoring::{Explanation, Model, PairScore, Rival, Scorer, Sig, Thresholds, WeightBound};
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

/// Why a verdict went to review rather than linking.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReviewReason {
    /// The evidence against a stranger lies between the thresholds.
    BetweenThresholds,
    /// Two or more persons reach the upper threshold.
    Ambiguous,
    /// A relative sharing the household could have the records ([`Rival`]).
    Rival(Rival),
}

impl ReviewReason {
    /// The reason in words a registrar reads.
    pub fn text(self) -> &'static str {
        match self {
            ReviewReason::BetweenThresholds => {
                "the records agree on too little to be sure they are one person"
            }
            ReviewReason::Ambiguous => "more than one person matches the record well",
            ReviewReason::Rival(r) => r.reason(),
        }
    }
}

/// One candidate person and how well the query matches it.
#[derive(Debug, Clone, PartialEq)]
pub struct PersonScore<P> {
    /// The person (EUID or cluster id).
    pub person: P,
    /// Best pair score among the person's records (rival of that pair, or a differing
    /// multiple-birth order among its records).
    pub score: PairScore,
    /// Position, in the candidate list given, of the record that scored best.
    pub best_record: usize,
    /// Some record of this person contradicts the query ([`PairScore::contradicts`]), or
    /// is held back by a twin or relative who could have it: evidence that the person is
    /// not the query's.
    pub contradicted: bool,
    /// Some candidate record of this person has a given name.
    pub named: bool,
    /// The multiple-birth order some candidate record of this person gives: the person is
    /// known to be one child of a multiple birth.
    pub birth_order: Option<u8>,
}

/// Which ranked persons an [`Verdict`] lists (the decision looks at every person either way).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ranking {
    /// The best `k` persons, exactly, however hopeless (a search: [`Linker::decide`] with a
    /// number means this).
    Top(usize),
    /// At most `k`: the best person, then only persons at or above the lower threshold,
    /// the ones that could have been linked or reviewed. Cheaper with a bound
    /// ([`Linker::decide_bounded`]): hopeless candidates need not be ranked among
    /// themselves, so most are never scored in full.
    Plausible(usize),
}

impl From<usize> for Ranking {
    fn from(k: usize) -> Self {
        Ranking::Top(k)
    }
}

impl Ranking {
    /// The longest list (at least one person).
    fn limit(self) -> usize {
        match self {
            Ranking::Top(k) | Ranking::Plausible(k) => k.max(1),
        }
    }

    /// Persons that must be known exactly among those below the lower threshold.
    fn exact_below_lower(self) -> usize {
        match self {
            Ranking::Top(k) => k.max(1),
            Ranking::Plausible(_) => 1,
        }
    }
}

/// The linker's answer for one query record.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict<P> {
    /// Link, review or new.
    pub decision: Decision,
    /// Why it is a review, when it is one.
    pub review_reason: Option<ReviewReason>,
    /// Candidate persons, best first, as the [`Ranking`] asked for.
    pub ranked: Vec<PersonScore<P>>,
    /// A link made by the sole-candidate rule (see the module docs): the best pair has no
    /// given name to compare, and no other candidate is plausible.
    pub sole_candidate: bool,
    /// Candidate records scored in full (all of them, but for what
    /// [`Linker::decide_bounded`] ruled out).
    pub scored: usize,
}

impl<P> Verdict<P> {
    /// The best candidate, if any.
    pub fn best(&self) -> Option<&PersonScore<P>> {
        self.ranked.first()
    }
}

/// One scored candidate pair (`a < b`, indexes into the record list).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScoredPair {
    /// First record.
    pub a: u32,
    /// Second record.
    pub b: u32,
    /// Decision weight (see [`PairScore::weight`]).
    pub weight: f32,
    /// The rival holding the weight down, if any.
    pub rival: Option<Rival>,
}

impl ScoredPair {
    /// A pair at `weight` that no rival holds down.
    pub fn new(a: u32, b: u32, weight: f32) -> Self {
        ScoredPair {
            a,
            b,
            weight,
            rival: None,
        }
    }

    /// The pair's score.
    pub fn score(&self) -> PairScore {
        PairScore {
            weight: f64::from(self.weight),
            rival: self.rival,
        }
    }

    /// Whether the pair links on its own at `upper` (see [`pair_decision`]).
    pub fn links(&self, upper: f64) -> bool {
        f64::from(self.weight) >= upper && self.rival != Some(Rival::BirthOrderDiffers)
    }
}

/// What one scored pair alone calls for; the rule every path (service, batch, eval) shares.
///
/// - a differing multiple-birth order ([`Rival::BirthOrderDiffers`]): new person;
/// - otherwise the decision weight against every hypothesis decides: at or above `upper`
///   link, at or above `lower` review, below it a new person.
pub fn pair_decision(score: &PairScore, t: Thresholds) -> Decision {
    if score.contradicts(t.lower) {
        Decision::New
    } else if score.weight >= t.upper {
        Decision::Link
    } else {
        Decision::Review
    }
}

/// Whether a record without a given name and the named person it would join can only be
/// one child, as far as multiple births go: neither side says it is one of a multiple
/// birth, or both give the same order. When one side gives an order and the other does
/// not, the person is known to have a co-twin of the same household and birth date, and
/// the nameless record could be that child (the sole-candidate rule, module docs; batch
/// runs ask the same of a whole group, [`crate::batch::attach`]).
pub fn one_child_of_the_birth(a: Option<u8>, b: Option<u8>) -> bool {
    a == b
}

/// The candidate persons known to be one child of a multiple birth: some record of theirs
/// gives a birth order. A query that gives none is weighed against such a person's every
/// record as against a known twin ([`Scorer::score_with`]; batch runs do the same per
/// cluster, [`crate::batch::twins`]). Empty (no lookups) when no candidate gives an order
/// or the query gives one itself (its own order already decides the prior).
struct TwinPersons<P>(AHashSet<P>);

impl<P: Clone + Eq + Hash> TwinPersons<P> {
    fn of<'a>(query: &Prepared, candidates: impl Iterator<Item = (&'a P, &'a Prepared)>) -> Self
    where
        P: 'a,
    {
        let mut set = AHashSet::new();
        if query.multiple_birth_order.is_none() {
            for (p, r) in candidates {
                if r.multiple_birth_order.is_some() {
                    set.insert(p.clone());
                }
            }
        }
        TwinPersons(set)
    }

    fn known(&self, person: &P) -> bool {
        !self.0.is_empty() && self.0.contains(person)
    }
}

/// Candidate persons as their records are scored, in any order.
struct Persons<P> {
    by_person: AHashMap<P, PersonScore<P>>,
    /// The lower threshold: below it a record contradicts the query.
    lower: f64,
}

impl<P> Persons<P> {
    fn new(lower: f64) -> Self {
        Persons {
            by_person: AHashMap::new(),
            lower,
        }
    }
}

impl<P: Clone + Eq + Hash> Persons<P> {
    /// Adds the score `s` of candidate record `i` (position in the candidate list) of
    /// `person`. A person's score is its best record's, the earliest one among equals, so
    /// the order records are added in does not matter; a differing multiple-birth order
    /// among its records stays.
    fn add(&mut self, person: P, i: usize, s: PairScore, rec: &Prepared) {
        let named = rec.given.is_some();
        let contradicted =
            s.contradicts(self.lower) || matches!(s.rival, Some(Rival::Twin | Rival::Relative));
        match self.by_person.get_mut(&person) {
            None => {
                self.by_person.insert(
                    person.clone(),
                    PersonScore {
                        person,
                        score: s,
                        best_record: i,
                        contradicted,
                        named,
                        birth_order: rec.multiple_birth_order,
                    },
                );
            }
            Some(ps) => {
                let twin = ps.score.rival == Some(Rival::BirthOrderDiffers)
                    || s.rival == Some(Rival::BirthOrderDiffers);
                if s.weight > ps.score.weight || (s.weight == ps.score.weight && i < ps.best_record)
                {
                    ps.score = s;
                    ps.best_record = i;
                }
                if twin {
                    ps.score.rival = Some(Rival::BirthOrderDiffers);
                }
                ps.contradicted |= contradicted;
                ps.named |= named;
                ps.birth_order = ps.birth_order.or(rec.multiple_birth_order);
            }
        }
    }

    /// Number of persons scoring strictly above `w`.
    fn count_above(&self, w: f64) -> usize {
        self.by_person
            .values()
            .filter(|p| p.score.weight > w)
            .count()
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
/// let verdict = linker.decide(&query, [("E1", &stored)], 5);
/// assert_eq!(verdict.decision, Decision::Link);
/// assert_eq!(verdict.best().unwrap().person, "E1");
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
    /// `ranking` (a number `k`: the top `k`) says which persons the verdict lists; the
    /// decision looks at all of them.
    pub fn decide<'a, P: Clone + Eq + Hash>(
        &self,
        query: &Prepared,
        candidates: impl IntoIterator<Item = (P, &'a Prepared)>,
        ranking: impl Into<Ranking>,
    ) -> Verdict<P> {
        let ranking = ranking.into();
        let candidates: Vec<(P, &Prepared)> = candidates.into_iter().collect();
        let twins = TwinPersons::of(query, candidates.iter().map(|(p, r)| (p, *r)));
        let mut persons = Persons::new(self.thresholds().lower);
        let mut record_named = Vec::new();
        for (i, (person, rec)) in candidates.into_iter().enumerate() {
            record_named.push(rec.given.is_some());
            let s = self.scorer.score_with(query, rec, twins.known(&person));
            persons.add(person, i, s, rec);
        }
        let scored = record_named.len();
        self.conclude(query, persons, scored, &record_named, ranking)
    }

    /// [`Linker::decide`] scoring in full only the candidates that can matter, with `bound`
    /// (built from this linker's scorer) ruling out the rest: the same decision, review
    /// reason, sole-candidate flag and ranked persons (scores, rivals, best records) as
    /// `decide`, at a fraction of the cost when most candidates are hopeless.
    ///
    /// Candidates are scored in the order of their bound, best first, until every one left
    /// is bounded below the lower threshold *and* below the score of `k` persons already
    /// (of one person for [`Ranking::Plausible`]): nothing left could then change the
    /// decision or the ranked list. A skipped
    /// record still lends its person a differing multiple-birth order (a field comparison, no
    /// scoring) and its given name. Only [`PersonScore::contradicted`] may miss a skipped
    /// record's contradiction; the one rule that reads it (the sole-candidate rule) is
    /// decided by scoring every candidate whenever it could apply.
    ///
    /// Each candidate comes with its [`Sig::second`] summary, made once per record (the
    /// service keeps one with every indexed record), so ruling a candidate out reads one
    /// dense summary instead of the record's strings.
    pub fn decide_bounded<P: Clone + Eq + Hash>(
        &self,
        query: &Prepared,
        candidates: &[(P, &Prepared, &Sig)],
        ranking: impl Into<Ranking>,
        bound: &WeightBound,
    ) -> Verdict<P> {
        let ranking = ranking.into();
        let t = self.thresholds();
        let q = bound.sig(&self.scorer, query);
        let bounds: Vec<f64> = candidates
            .iter()
            .map(|(_, _, sig)| bound.sig_bound(&q, sig))
            .collect();
        let mut order: Vec<usize> = (0..candidates.len()).collect();
        order.sort_by(|&a, &b| bounds[b].total_cmp(&bounds[a]).then(a.cmp(&b)));
        let record_named: Vec<bool> = candidates.iter().map(|(_, _, sig)| sig.named()).collect();
        let twins = TwinPersons::of(query, candidates.iter().map(|(p, r, _)| (p, *r)));
        let keep = ranking.exact_below_lower();
        let mut persons = Persons::new(t.lower);
        // Candidates are scored in `order` up to `stop`; those after it are skipped.
        let mut stop = order.len();
        for (n, &i) in order.iter().enumerate() {
            let b = bounds[i];
            // Strictly above: a record tying the k-th person could still outrank it.
            if b < t.lower && persons.count_above(b) >= keep {
                stop = n;
                break;
            }
            let (person, rec, _) = &candidates[i];
            let s = self.scorer.score_with(query, rec, twins.known(person));
            persons.add(person.clone(), i, s, rec);
        }
        for &i in &order[stop..] {
            let (person, rec, _) = &candidates[i];
            if let Some(ps) = persons.by_person.get_mut(person) {
                ps.named |= record_named[i];
                ps.birth_order = ps.birth_order.or(rec.multiple_birth_order);
                if Scorer::birth_orders_differ(query, rec) {
                    ps.score.rival = Some(Rival::BirthOrderDiffers);
                    ps.contradicted = true;
                }
            }
        }
        let verdict = self.conclude(query, persons, stop, &record_named, ranking);
        // The rule was applied, or was considered and declined: it reads `contradicted`.
        let sole_rule_may_apply = verdict.sole_candidate
            || (verdict.decision == Decision::Review
                && verdict
                    .best()
                    .is_some_and(|b| b.score.rival == Some(Rival::TwinNoGivenName)));
        if sole_rule_may_apply {
            return self.decide(
                query,
                candidates.iter().map(|(p, r, _)| (p.clone(), *r)),
                ranking,
            );
        }
        verdict
    }

    /// Ranks the persons and decides (the sole-candidate rule included).
    fn conclude<P: Clone + Eq + Hash>(
        &self,
        query: &Prepared,
        persons: Persons<P>,
        scored: usize,
        record_named: &[bool],
        ranking: Ranking,
    ) -> Verdict<P> {
        let mut ranked: Vec<PersonScore<P>> = persons.by_person.into_values().collect();
        ranked.sort_by(|a, b| {
            b.score
                .weight
                .total_cmp(&a.score.weight)
                .then(a.best_record.cmp(&b.best_record))
        });
        let (mut decision, mut review_reason) = self.classify(&ranked);
        let sole_candidate =
            decision == Decision::Review && self.sole_candidate(query, &ranked, record_named);
        if sole_candidate {
            (decision, review_reason) = (Decision::Link, None);
        }
        if let Ranking::Plausible(_) = ranking {
            let lower = self.thresholds().lower;
            let mut first = true;
            ranked.retain(|p| std::mem::take(&mut first) || p.score.weight >= lower);
        }
        ranked.truncate(ranking.limit());
        Verdict {
            decision,
            review_reason,
            ranked,
            sole_candidate,
            scored,
        }
    }

    /// The sole-candidate rule (module docs): the best person is held back only by
    /// [`Rival::TwinNoGivenName`] on a pair with a given name on one side, nothing of it
    /// contradicts the query, and no other person is a plausible rival.
    fn sole_candidate<P>(
        &self,
        query: &Prepared,
        ranked: &[PersonScore<P>],
        record_named: &[bool],
    ) -> bool {
        let t = self.thresholds();
        let Some(best) = ranked.first() else {
            return false;
        };
        let query_named = query.given.is_some();
        if !one_child_of_the_birth(query.multiple_birth_order, best.birth_order) {
            return false;
        }
        let one_side_named = query_named != record_named[best.best_record];
        let rival = |p: &PersonScore<P>| {
            p.score.weight >= t.lower && !p.contradicted && (query_named || p.named)
        };
        best.score.rival == Some(Rival::TwinNoGivenName)
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
                    .rival
                    .map_or(ReviewReason::BetweenThresholds, ReviewReason::Rival),
            )
        };
        match pair_decision(&best.score, t) {
            Decision::Link => {
                // Only another *linkable* person makes a link ambiguous; a twin held below
                // the upper threshold is no competitor, or the order of arrival would decide.
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
            // The best is contradicted (declared twins); another person may still need a look.
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

    fn rec(given: &str, family: &str, dob: (u16, u8, u8), phone: &str) -> Record {
        Record {
            phones: vec![phone.into()],
            ..Record::for_tests(given, family, dob)
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
    fn a_twin_held_back_does_not_make_a_clear_link_ambiguous() {
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
    fn declared_twins_are_new_persons_and_the_weight_decides_the_rest() {
        let t = Thresholds {
            upper: 8.0,
            lower: 0.0,
        };
        let s = |weight, rival| PairScore { weight, rival };
        assert_eq!(
            pair_decision(&s(30.0, Some(Rival::BirthOrderDiffers)), t),
            Decision::New
        );
        assert_eq!(
            pair_decision(&s(4.0, Some(Rival::Twin)), t),
            Decision::Review
        );
        assert_eq!(
            pair_decision(&s(9.0, Some(Rival::Relative)), t),
            Decision::Link
        );
        assert_eq!(pair_decision(&s(9.0, None), t), Decision::Link);
        assert_eq!(pair_decision(&s(4.0, None), t), Decision::Review);
        assert_eq!(pair_decision(&s(-1.0, Some(Rival::Twin)), t), Decision::New);
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
        assert_eq!(out.ranked[0].score.rival, Some(Rival::TwinNoGivenName));
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
        // A person holding the placeholder and a twin is not linked to.
        let mut p = vec![(1u32, &q), (1, &john)];
        let out = l.decide(&oliver, p.drain(..), 10);
        assert_ne!(out.decision, Decision::Link);
        assert!(!out.sole_candidate);
    }

    #[test]
    fn a_person_known_to_be_a_twin_is_weighed_against_the_co_twin() {
        use crate::record::Sex;
        let l = Linker::with_default_model();
        let larry = l.prepare(&child("Larry", Sex::Male));
        let lawrence = l.prepare(&child("Lawrence", Sex::Male));
        // Larry for Lawrence: a nickname, everything else of the household agrees.
        let out = l.decide(&larry, [(1u32, &lawrence)], 10);
        assert_eq!(out.decision, Decision::Link, "{:?}", out.ranked[0].score);
        // Lawrence's other record says he is the second of a multiple birth: Larry may be
        // his co-twin, and the pair is weighed so, even against the record without order.
        let mut second = child("Lawrence", Sex::Male);
        second.multiple_birth_order = Some(2);
        let second = l.prepare(&second);
        let out = l.decide(&larry, [(1u32, &lawrence), (1, &second)], 10);
        assert_ne!(out.decision, Decision::Link, "{:?}", out.ranked[0].score);
        assert_eq!(out.ranked[0].score.rival, Some(Rival::Twin));
        // An exact given name still links a known twin's record.
        let again = l.prepare(&child("Lawrence", Sex::Male));
        let out = l.decide(&again, [(1u32, &lawrence), (1, &second)], 10);
        assert_eq!(out.decision, Decision::Link, "{:?}", out.ranked[0].score);
    }

    #[test]
    fn a_person_known_to_be_a_twin_keeps_a_placeholder_in_review() {
        use crate::record::Sex;
        let l = Linker::with_default_model();
        let q = l.prepare(&baby(Sex::Male));
        let john = l.prepare(&child("John", Sex::Male));
        let mut second = child("John", Sex::Male);
        second.multiple_birth_order = Some(2);
        let second = l.prepare(&second);
        // John's other record says he is the second of a multiple birth: the placeholder
        // could be his co-twin, whom no record names yet.
        let out = l.decide(&q, [(1u32, &john), (1, &second)], 10);
        assert_eq!(out.decision, Decision::Review);
        assert!(!out.sole_candidate);
        // A placeholder that says it is the second child is John.
        let mut baby2 = baby(Sex::Male);
        baby2.multiple_birth_order = Some(2);
        let baby2 = l.prepare(&baby2);
        let out = l.decide(&baby2, [(1u32, &john), (1, &second)], 10);
        assert_eq!(out.decision, Decision::Link);
        // A placeholder that says it is one of a birth, beside a person who never does.
        let out = l.decide(&baby2, [(1u32, &john)], 10);
        assert_eq!(out.decision, Decision::Review);
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

    mod bounded {
        use super::*;

        /// [`Linker::decide_bounded`] over `records`, each its own person (its position).
        fn bounded_over(
            l: &Linker,
            q: &Prepared,
            records: &[Prepared],
            ranking: Ranking,
        ) -> Verdict<usize> {
            let bound = l
                .scorer()
                .weight_bound(std::slice::from_ref(q), &[])
                .unwrap();
            let sigs: Vec<Sig> = records.iter().map(Sig::second).collect();
            let triples: Vec<(usize, &Prepared, &Sig)> = records
                .iter()
                .zip(&sigs)
                .enumerate()
                .map(|(i, (r, s))| (i, r, s))
                .collect();
            l.decide_bounded(q, &triples, ranking, &bound)
        }

        /// Hopeless candidates (other names, born elsewhen) are never scored in full.
        #[test]
        fn hopeless_candidates_are_not_scored() {
            let l = Linker::with_default_model();
            let q = l.prepare(&rec("Margaret", "Okonkwo", (1961, 7, 2), "413-555-0142"));
            let mut records =
                vec![l.prepare(&rec("Margaret", "Okonkwo", (1961, 7, 2), "413-555-0142"))];
            for i in 0..20u8 {
                let given = format!("Zed{i}");
                records.push(l.prepare(&rec(
                    &given,
                    "Nowak",
                    (1990, 1, 1 + i % 9),
                    "617-555-9999",
                )));
            }
            let full = l.decide(&q, records.iter().enumerate(), 1);
            let bounded = bounded_over(&l, &q, &records, Ranking::Top(1));
            assert_eq!(full.scored, 21);
            assert_eq!(bounded.scored, 1);
            assert_eq!(bounded.decision, Decision::Link);
            assert_eq!(bounded.ranked, full.ranked);
        }

        /// With a plausible ranking, hopeless candidates are not ranked among themselves:
        /// once the match is scored, fewer are scored than for the top five, and the list
        /// holds the match only.
        #[test]
        fn a_plausible_ranking_scores_few_hopeless_candidates() {
            let l = Linker::with_default_model();
            let margaret = rec("Margaret", "Okonkwo", (1961, 7, 2), "413-555-0142");
            let q = l.prepare(&margaret);
            let records: Vec<Prepared> = std::iter::once(l.prepare(&margaret))
                .chain((0..20u8).map(|i| {
                    let given = format!("Zed{i}");
                    l.prepare(&rec(
                        &given,
                        "Okonkwo",
                        (1990, 1, 1 + i % 9),
                        "617-555-9999",
                    ))
                }))
                .collect();
            let top = bounded_over(&l, &q, &records, Ranking::Top(5));
            let plausible = bounded_over(&l, &q, &records, Ranking::Plausible(5));
            assert_eq!(top.decision, Decision::Link);
            assert_eq!(plausible.decision, Decision::Link);
            assert_eq!(top.ranked.len(), 5);
            assert_eq!(plausible.ranked.len(), 1);
            assert_eq!(plausible.ranked[0], top.ranked[0]);
            assert!(
                plausible.scored < top.scored,
                "{} vs {}",
                plausible.scored,
                top.scored
            );
        }

        use crate::record::{Identifier, Sex, NATIONAL_ID_SYSTEM};
        use proptest::prelude::*;

        const GIVEN: &[&str] = &["Anna", "Ann", "Hanna", "Baby Boy", "Peter", "Piotr"];
        const FAMILY: &[&str] = &["Kowalczyk", "Kowalczik", "Nowak", "Smith"];
        const PHONE: &[&str] = &["555-201-3344", "555-201-3343", "555-999-0000"];
        const ID: &[&str] = &["123-45-6789", "123-45-6798", "987-65-4321"];

        fn record() -> impl Strategy<Value = Record> {
            (
                prop::option::weighted(0.8, prop::sample::select(GIVEN)),
                prop::sample::select(FAMILY),
                (0u8..3, 1u8..3),
                prop::sample::select(&[Sex::Female, Sex::Male, Sex::Unknown][..]),
                prop::option::weighted(0.2, 1u8..3),
                prop::sample::select(PHONE),
                prop::option::weighted(0.3, prop::sample::select(ID)),
            )
                .prop_map(|(given, family, (y, d), sex, order, phone, id)| {
                    let mut r = rec("x", family, (2000 + u16::from(y), 3, d), phone);
                    r.given_name = given.map(str::to_string);
                    r.sex = sex;
                    r.multiple_birth_order = order;
                    r.identifiers = id
                        .map(|value| Identifier {
                            system: NATIONAL_ID_SYSTEM.into(),
                            value: value.into(),
                        })
                        .into_iter()
                        .collect();
                    r
                })
        }

        /// What callers read of a verdict (all but `contradicted`, which the bounded
        /// path may leave short for skipped records, see `decide_bounded`).
        type Seen = (
            Decision,
            Option<ReviewReason>,
            bool,
            Vec<(u8, f64, Option<Rival>, usize, bool)>,
        );

        fn seen(o: &Verdict<u8>) -> Seen {
            let ranked = o
                .ranked
                .iter()
                .map(|p| {
                    (
                        p.person,
                        p.score.weight,
                        p.score.rival,
                        p.best_record,
                        p.named,
                    )
                })
                .collect();
            (o.decision, o.review_reason, o.sole_candidate, ranked)
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(200))]

            /// Scoring only what the bound leaves gives the verdict of scoring everything,
            /// for either ranking.
            #[test]
            fn bounded_decisions_equal_full_ones(
                query in record(),
                candidates in prop::collection::vec((0u8..6, record()), 0..24),
                top_k in 1usize..6,
                plausible in any::<bool>(),
            ) {
                let ranking = if plausible { Ranking::Plausible(top_k) } else { Ranking::Top(top_k) };
                let l = Linker::with_default_model();
                let q = l.prepare(&query);
                let prepared: Vec<(u8, Prepared)> =
                    candidates.iter().map(|(p, r)| (*p, l.prepare(r))).collect();
                let refs: Vec<(u8, &Prepared)> = prepared.iter().map(|(p, r)| (*p, r)).collect();
                let bound = l.scorer().weight_bound(std::slice::from_ref(&q), &[]).unwrap();
                let full = l.decide(&q, refs.iter().copied(), ranking);
                let sigs: Vec<Sig> = prepared.iter().map(|(_, r)| Sig::second(r)).collect();
                let triples: Vec<(u8, &Prepared, &Sig)> =
                    refs.iter().zip(&sigs).map(|(&(p, r), s)| (p, r, s)).collect();
                let bounded = l.decide_bounded(&q, &triples, ranking, &bound);
                prop_assert_eq!(seen(&bounded), seen(&full));
                prop_assert!(bounded.scored <= full.scored);
            }

            /// A plausible ranking is the top ranking less the persons after the first that
            /// are below the lower threshold; the decision is the same.
            #[test]
            fn plausible_rankings_are_the_top_ones_filtered(
                query in record(),
                candidates in prop::collection::vec((0u8..6, record()), 0..24),
                top_k in 1usize..6,
            ) {
                let l = Linker::with_default_model();
                let lower = l.thresholds().lower;
                let q = l.prepare(&query);
                let prepared: Vec<(u8, Prepared)> =
                    candidates.iter().map(|(p, r)| (*p, l.prepare(r))).collect();
                let refs: Vec<(u8, &Prepared)> = prepared.iter().map(|(p, r)| (*p, r)).collect();
                let top = l.decide(&q, refs.iter().copied(), top_k);
                let plausible = l.decide(&q, refs.iter().copied(), Ranking::Plausible(top_k));
                let mut expected = seen(&top);
                let mut first = true;
                expected.3.retain(|p| std::mem::take(&mut first) || p.1 >= lower);
                prop_assert_eq!(seen(&plausible), expected);
            }
        }
    }
}
