//! A cheap upper bound on a pair's match weight, so pair loops can skip the full score of
//! pairs that cannot reach a threshold (most candidate pairs of a big block are different
//! people who disagree on birth date).
//!
//! Each record is reduced once to a [`Sig`]: 144 bytes in one dense array, so a pair
//! costs a few cache lines instead of a walk over a dozen heap strings. The bound takes the
//! exact level of the comparisons that are cheap on that summary (birth date, sex, national
//! id, phone, postcode) from the scorer's own level rules, and for the others (given and
//! family name, street, email, middle name) the exact level's weight when the values'
//! hashes agree and otherwise the best weight of the levels
//! [`Comparison::reachable_when_unequal`] leaves possible (for names: `swapped` only when
//! the names agree crosswise, `previous_name` only with a previous family name,
//! `shared_word` only for a family name of several words). No Jaro–Winkler, nickname or
//! phonetic work is done, and a value too long for the summary falls back to the best
//! weight of any level. Only pairs whose bound is below the threshold are skipped, so the
//! kept pairs are exactly those a full scan keeps.
//!
//! Level weights, the prior and the exact level's term-frequency weight are the
//! [`Scorer`]'s own (`Scorer::exact_weight`), and the level rules are the functions
//! [`Comparison::level`] uses, so a change to either moves the bound with it. Two things
//! are the bound's alone, and tested here against their reference: the packed identifier
//! comparison ([`Inline::agreement`] vs [`compare_identifiers`]) and which levels the
//! summary rules out (property tests). At start-up [`WeightBound::new`] still checks itself
//! against [`Scorer::explain`] on sample records and [`Scorer::score`] on sample pairs and
//! declines (full scoring for every pair) if they ever disagree.
//!
//! [`compare_identifiers`]: crate::compare::identifier::compare_identifiers

use rayon::prelude::*;

use super::comparisons::{
    birth_level, id_level, phone_step, postcode_level, sex_level, CheapFacts,
};
use super::{Comparison, Scorer, MAX_LEVELS, MISSING, N_COMPARISONS};
use crate::compare::identifier::IdAgreement;
use crate::prepare::Prepared;
use crate::record::{PartialDate, Sex};

/// Margin kept below the threshold for floating-point summation order.
const EPS: f64 = 1e-6;
/// Length marking a value too long to keep inline.
const LONG: u8 = u8::MAX;
/// The record has previous family names (the family `previous_name` level is possible).
const PREVIOUS: u8 = 1;
/// The family name has several words (the `shared_word` level is possible).
const MULTIWORD: u8 = 2;
/// Combinations of [`CheapFacts`] (crosswise, previous, multiword).
const N_FACTS: usize = 8;

/// Up to 16 bytes of an ASCII value, read as a `u128` (first byte lowest), with its
/// length (`len` 0: none; [`LONG`]: too long or not ASCII), so equality and the
/// identifier near-miss tests are a few integer operations. Kept as bytes, not a `u128`,
/// so it needs no 16-byte alignment: a [`Sig`] is stored for every indexed record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Inline {
    len: u8,
    bytes: [u8; 16],
}

impl Inline {
    fn of(s: &str) -> Self {
        if s.len() > 16 || !s.is_ascii() || s.is_empty() {
            return Inline {
                len: LONG,
                bytes: [0; 16],
            };
        }
        let mut bytes = [0u8; 16];
        bytes[..s.len()].copy_from_slice(s.as_bytes());
        Inline {
            len: s.len() as u8,
            bytes,
        }
    }

    fn word(self) -> u128 {
        u128::from_le_bytes(self.bytes)
    }

    /// What [`crate::compare::identifier::compare_identifiers`] says of two inline ASCII
    /// values, by integer operations.
    #[inline]
    fn agreement(self, other: Inline) -> IdAgreement {
        if self.len != other.len {
            return IdAgreement::Disagree;
        }
        let x = self.word() ^ other.word();
        if x == 0 {
            return IdAgreement::Exact;
        }
        // Positions of the first and last differing bytes.
        let first = x.trailing_zeros() / 8;
        let last = (127 - x.leading_zeros()) / 8;
        if first == last {
            return IdAgreement::OneSubstitution;
        }
        let rest = x & !(0xffu128 << (8 * first)) & !(0xffu128 << (8 * last));
        if last == first + 1
            && rest == 0
            && self.bytes[first as usize] == other.bytes[last as usize]
            && self.bytes[last as usize] == other.bytes[first as usize]
        {
            return IdAgreement::AdjacentTransposition;
        }
        IdAgreement::Disagree
    }
}

/// What the bound knows of one record ([`WeightBound::sig`]): enough to bound its pairs
/// with records outside the set the bound was built over.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Sig {
    given: u64,
    family: u64,
    given_w: f64,
    family_w: f64,
    postcode_w: f64,
    birth: Option<PartialDate>,
    sex: Sex,
    email: u64,
    street: u64,
    middle: u64,
    national_id: Inline,
    postcode: Inline,
    /// Number of phones (at most 2 inline; more: [`LONG`]).
    phones: u8,
    /// [`PREVIOUS`], [`MULTIWORD`].
    flags: u8,
    phone: [Inline; 2],
}

impl Sig {
    /// The summary of `p` for use only as the *second* side of [`WeightBound::sig_bound`]:
    /// without the exact-level weights (three logarithms), which the bound takes from the
    /// first side alone. It depends on the record alone, not on a model, so a record's
    /// summary can be made once and kept with it (the service's index does).
    pub fn second(p: &Prepared) -> Sig {
        let mut s = Sig {
            birth: p.birth,
            sex: p.sex,
            ..Default::default()
        };
        if let Some(g) = &p.given {
            s.given = hash(&g.text);
        }
        if let Some(f) = &p.family {
            s.family = hash(&f.text);
            if f.text.contains(' ') {
                s.flags |= MULTIWORD;
            }
        }
        if !p.previous.is_empty() {
            s.flags |= PREVIOUS;
        }
        if let Some(pc) = &p.postcode {
            s.postcode = Inline::of(pc);
        }
        s.email = p.email.as_deref().map_or(0, hash);
        s.street = p.street.as_deref().map_or(0, hash);
        s.middle = p.middle.as_deref().map_or(0, hash);
        s.national_id = p.national_id.as_deref().map(Inline::of).unwrap_or_default();
        s.phones = match p.phones.len() {
            n @ 0..=2 => n as u8,
            _ => LONG,
        };
        for (slot, ph) in s.phone.iter_mut().zip(&p.phones) {
            *slot = Inline::of(ph);
            if slot.len == LONG {
                s.phones = LONG;
            }
        }
        s
    }

    /// Whether the record has a given name (the linker's sole-candidate rule asks).
    pub fn named(&self) -> bool {
        self.given != 0
    }
}

/// An upper bound on a scorer's match weight for the pairs of one record set, built by
/// [`Scorer::weight_bound`] (see the module docs).
#[derive(Debug, Clone)]
pub struct WeightBound {
    prior: f64,
    /// The scorer's level weights (no term frequency).
    weights: [[f64; MAX_LEVELS]; N_COMPARISONS],
    /// Best weight of the levels after `exact`, per comparison.
    best_inexact: [f64; N_COMPARISONS],
    /// Best weight of any level, per comparison.
    best: [f64; N_COMPARISONS],
    /// Best weight of the levels [`Comparison::reachable_when_unequal`] leaves, per
    /// comparison and [`facts_index`].
    best_unequal: [[f64; N_FACTS]; N_COMPARISONS],
    sigs: Vec<Sig>,
}

/// The hasher of summarised values. Its seeds are fixed, so summaries made at different
/// times in one process (a record's when it is indexed, a query's when it arrives) agree.
/// Summaries are never stored on disk.
const HASHER: ahash::RandomState = ahash::RandomState::with_seeds(7, 11, 13, 17);

fn hash(s: &str) -> u64 {
    nonzero(HASHER.hash_one(s))
}

fn nonzero(h: u64) -> u64 {
    h | 1
}

/// Index of a [`CheapFacts`] combination in [`WeightBound::best_unequal`].
fn facts_index(crosswise: bool, previous: bool, multiword: bool) -> usize {
    usize::from(crosswise) | usize::from(previous) << 1 | usize::from(multiword) << 2
}

impl WeightBound {
    /// The bound for `scorer` over `prepared` (term frequencies filled), if it passes its
    /// self-check on sample records and the sample `pairs`; `None` means: score every pair
    /// in full.
    pub(super) fn new(
        scorer: &Scorer,
        prepared: &[Prepared],
        pairs: &[(u32, u32)],
    ) -> Option<WeightBound> {
        let mut weights = scorer.weights;
        // A differing postcode may weigh as part of a move (with the street's disagreement):
        // bound it by the larger of the two.
        let pc = Comparison::Postcode;
        let last = &mut weights[pc.index()][pc.levels().len() - 1];
        *last = last.max(scorer.moved_postcode());
        // Only a comparison's own levels: the table is padded to MAX_LEVELS with zeros.
        let best_of = |c: Comparison, set: u16| {
            (0..c.levels().len())
                .filter(|&l| set & (1 << l) != 0)
                .map(|l| weights[c.index()][l])
                .fold(f64::NEG_INFINITY, f64::max)
        };
        let mut best_inexact = [0.0; N_COMPARISONS];
        let mut best = [0.0; N_COMPARISONS];
        let mut best_unequal = [[0.0; N_FACTS]; N_COMPARISONS];
        for c in Comparison::ALL {
            let all = (1u16 << c.levels().len()) - 1;
            best[c.index()] = best_of(c, all);
            best_inexact[c.index()] = best_of(c, all & !1);
            for (i, slot) in best_unequal[c.index()].iter_mut().enumerate() {
                let facts = CheapFacts {
                    crosswise: i & 1 != 0,
                    previous: i & 2 != 0,
                    multiword: i & 4 != 0,
                };
                *slot = best_of(c, c.reachable_when_unequal(facts));
            }
        }
        let mut b = WeightBound {
            prior: scorer.prior_weight,
            weights,
            best_inexact,
            best,
            best_unequal,
            sigs: Vec::new(),
        };
        b.sigs = prepared
            .par_iter()
            .with_min_len(4096)
            .map(|p| b.sig(scorer, p))
            .collect();
        b.self_check(scorer, prepared, pairs).then_some(b)
    }

    /// The summary of `p` (term frequencies filled) under `scorer`, the scorer the bound
    /// was built from.
    pub fn sig(&self, scorer: &Scorer, p: &Prepared) -> Sig {
        let mut s = Sig::second(p);
        if let Some(g) = &p.given {
            s.given_w = scorer.exact_weight(Comparison::GivenName, g.tf);
        }
        if let Some(f) = &p.family {
            s.family_w = scorer.exact_weight(Comparison::FamilyName, f.tf);
        }
        if p.postcode.is_some() {
            s.postcode_w = scorer.exact_weight(Comparison::Postcode, p.postcode_tf);
        }
        s
    }

    fn self_check(&self, scorer: &Scorer, prepared: &[Prepared], pairs: &[(u32, u32)]) -> bool {
        let close = |x: f64, y: f64| (x - y).abs() <= 1e-4 * (1.0 + x.abs());
        for (i, p) in prepared.iter().take(2_000).enumerate() {
            let e = scorer.explain(p, p);
            if !close(e.prior_weight, self.prior) {
                return false;
            }
            // A record against itself reaches `exact` with the weight its summary carries.
            let s = &self.sigs[i];
            let checks = [
                (Comparison::GivenName, p.given.is_some(), s.given_w),
                (Comparison::FamilyName, p.family.is_some(), s.family_w),
                (Comparison::Postcode, p.postcode.is_some(), s.postcode_w),
            ];
            for (c, present, w) in checks {
                if !present {
                    continue;
                }
                let Some(o) = e.comparisons.get(c.index()) else {
                    return false;
                };
                if o.level != "exact" || !close(o.weight, w) {
                    return false;
                }
            }
        }
        pairs.iter().all(|&(a, b)| {
            let (x, y) = (&prepared[a as usize], &prepared[b as usize]);
            !self.below(a, b, scorer.score(x, y).weight)
        })
    }

    /// Weight of comparison `c` at `level` ([`MISSING`]: 0).
    #[inline]
    fn w(&self, c: Comparison, level: u8) -> f64 {
        if level == MISSING {
            0.0
        } else {
            self.weights[c.index()][level as usize]
        }
    }

    /// A hashed value: exact weight (or better, in case the hashes collide) when the
    /// hashes agree, else the best level possible for unequal values; 0 when missing on
    /// either side.
    #[inline]
    fn hashed(&self, c: Comparison, x: u64, y: u64, exact: f64, facts: usize) -> f64 {
        match (x, y) {
            (0, _) | (_, 0) => 0.0,
            _ if x == y => exact.max(self.best_inexact[c.index()]),
            _ => self.best_unequal[c.index()][facts],
        }
    }

    /// An upper bound on the full score of records `a` and `b` (indexes into the records
    /// the bound was built over).
    #[inline]
    pub fn upper_bound(&self, a: u32, b: u32) -> f64 {
        self.sig_bound_raw(&self.sigs[a as usize], &self.sigs[b as usize])
    }

    /// An upper bound on the full score of the records summarised as `x` and `y` (in that
    /// order: the first side's term frequencies count, as in [`Scorer::score`]), margin for
    /// floating-point summation order included.
    #[inline]
    pub fn sig_bound(&self, x: &Sig, y: &Sig) -> f64 {
        self.sig_bound_raw(x, y) + EPS
    }

    #[inline]
    fn sig_bound_raw(&self, x: &Sig, y: &Sig) -> f64 {
        let mut w = self.prior;
        if let (Some(p), Some(q)) = (&x.birth, &y.birth) {
            w += self.w(Comparison::BirthDate, birth_level(p, q));
        }
        w += self.names(x, y);
        w += self.w(Comparison::Sex, sex_level(x.sex, y.sex));
        let c = Comparison::MiddleName;
        w += self.hashed(c, x.middle, y.middle, self.w(c, 0), 0);
        let c = Comparison::Street;
        w += self.hashed(c, x.street, y.street, self.w(c, 0), 0);
        let c = Comparison::Email;
        w += self.hashed(c, x.email, y.email, self.w(c, 0), 0);
        w += self.national_id(x, y);
        w += self.phone(x, y);
        w += self.postcode(x, y);
        w
    }

    /// Given and family name: `exact` by hash, the other levels as
    /// [`Comparison::reachable_when_unequal`] leaves them for the pair's cheap facts.
    #[inline]
    fn names(&self, x: &Sig, y: &Sig) -> f64 {
        let crosswise = x.given != 0
            && x.family != 0
            && y.given != 0
            && y.family != 0
            && x.given == y.family
            && x.family == y.given;
        let flags = x.flags | y.flags;
        let facts = facts_index(crosswise, flags & PREVIOUS != 0, flags & MULTIWORD != 0);
        let (g, f) = (Comparison::GivenName, Comparison::FamilyName);
        let direct = self.hashed(g, x.given, y.given, x.given_w, facts)
            + self.hashed(f, x.family, y.family, x.family_w, facts);
        let present = x.given != 0 && x.family != 0 && y.given != 0 && y.family != 0;
        if present && !crosswise && (x.given == y.family || x.family == y.given) {
            // The names may be read crosswise (`Scorer::read_crosswise`): one name exact
            // with either side's term frequency and the other at an alike level (the
            // crosswise cost, a negative weight, left out).
            let family_exact = self.best_unequal[g.index()][facts] + x.family_w.max(y.family_w);
            let given_exact = x.given_w.max(y.given_w) + self.best_unequal[f.index()][facts];
            return direct.max(family_exact).max(given_exact);
        }
        direct
    }

    #[inline]
    fn national_id(&self, x: &Sig, y: &Sig) -> f64 {
        let c = Comparison::NationalId;
        match (x.national_id.len, y.national_id.len) {
            (0, _) | (_, 0) => 0.0,
            (LONG, _) | (_, LONG) => self.best[c.index()],
            _ => self.w(c, id_level(x.national_id.agreement(y.national_id))),
        }
    }

    #[inline]
    fn phone(&self, x: &Sig, y: &Sig) -> f64 {
        let c = Comparison::Phone;
        match (x.phones, y.phones) {
            (0, _) | (_, 0) => 0.0,
            (LONG, _) | (_, LONG) => self.best[c.index()],
            (n, m) => {
                let mut best = u8::MAX;
                for p in &x.phone[..n as usize] {
                    for q in &y.phone[..m as usize] {
                        best = best.min(phone_step(p.agreement(*q)));
                    }
                }
                self.w(c, best)
            }
        }
    }

    #[inline]
    fn postcode(&self, x: &Sig, y: &Sig) -> f64 {
        let c = Comparison::Postcode;
        let (p, q) = (&x.postcode, &y.postcode);
        match (p.len, q.len) {
            (0, _) | (_, 0) => 0.0,
            (LONG, _) | (_, LONG) => (x.postcode_w).max(self.best[c.index()]),
            (m, n) => match postcode_level(&p.bytes[..m as usize], &q.bytes[..n as usize]) {
                0 => x.postcode_w,
                level => self.w(c, level),
            },
        }
    }

    /// Whether records `a` and `b` cannot reach `threshold` (their full score may be
    /// skipped).
    #[inline]
    pub fn below(&self, a: u32, b: u32, threshold: f64) -> bool {
        self.upper_bound(a, b) + EPS < threshold
    }
}

#[cfg(test)]
mod tests {
    use std::sync::OnceLock;

    use super::*;
    use crate::compare::identifier::compare_identifiers;
    use crate::record::{Address, Identifier, Record, NATIONAL_ID_SYSTEM};
    use crate::scoring::{Model, TfTable};
    use proptest::prelude::*;

    const GIVEN: &[&str] = &[
        "Robert", "Bob", "Rob", "Roberta", "Smith", "Garcia", "Jon", "John", "J", "Ann", "Anne",
        "Zoë", "Baby Boy",
    ];
    const FAMILY: &[&str] = &[
        "Smith",
        "Smyth",
        "Garcia Lopez",
        "Garcia",
        "Lopez",
        "Robert",
        "Ann",
        "Jones",
        "O'Brien",
        "Obrien",
    ];
    const MIDDLE: &[&str] = &["A", "Ann", "Anna", "B"];
    const NATIONAL_ID: &[&str] = &[
        "123-45-6789",
        "123-45-6798",
        "123-45-6780",
        "987-65-4321",
        "12345678901234567890",
    ];
    const PHONE: &[&str] = &[
        "413-555-0142",
        "413-555-0124",
        "413-555-0143",
        "617-555-9999",
        "+44 20 7946 0958 12345678",
    ];
    const POSTCODE: &[&str] = &["01103", "01104", "01103-1234", "011", "02139", "AB1 2CD"];
    const STREET: &[&str] = &["14 Elm Street", "14 Elm St", "22 Oak Road"];
    const EMAIL: &[&str] = &["a@x.org", "b@x.org"];

    fn pick(pool: &'static [&'static str]) -> impl Strategy<Value = String> {
        prop::sample::select(pool).prop_map(str::to_string)
    }

    fn maybe(pool: &'static [&'static str]) -> impl Strategy<Value = Option<String>> {
        prop::option::weighted(0.8, pick(pool))
    }

    fn date() -> impl Strategy<Value = PartialDate> {
        (
            1980u16..=1982,
            prop::option::weighted(0.9, (1u8..=3, prop::option::weighted(0.9, 1u8..=3))),
        )
            .prop_map(|(year, md)| PartialDate {
                year,
                month: md.map(|(m, _)| m),
                day: md.and_then(|(_, d)| d),
            })
    }

    /// Records drawn from small pools, so pairs often meet on every level of every ladder.
    fn record() -> impl Strategy<Value = Record> {
        (
            (maybe(GIVEN), maybe(MIDDLE), maybe(FAMILY)),
            prop::collection::vec(pick(FAMILY), 0..3),
            prop::option::weighted(0.9, date()),
            prop::sample::select(&[Sex::Female, Sex::Male, Sex::Unknown][..]),
            (maybe(NATIONAL_ID), prop::collection::vec(pick(PHONE), 0..4)),
            (maybe(STREET), maybe(POSTCODE), maybe(EMAIL)),
        )
            .prop_map(
                |((given, middle, family), previous, birth, sex, ids, place)| {
                    let (national_id, phones) = ids;
                    let (street, postcode, email) = place;
                    Record {
                        source: "s".into(),
                        local_id: "1".into(),
                        given_name: given,
                        middle_name: middle,
                        family_name: family,
                        previous_family_names: previous,
                        birth_date: birth,
                        sex,
                        address: Address {
                            lines: street.into_iter().collect(),
                            postal_code: postcode,
                            ..Default::default()
                        },
                        phones,
                        email,
                        identifiers: national_id
                            .map(|value| Identifier {
                                system: NATIONAL_ID_SYSTEM.into(),
                                value,
                            })
                            .into_iter()
                            .collect(),
                        multiple_birth_order: None,
                    }
                },
            )
    }

    /// The default model, and one with term-frequency tables (postcodes included) counted
    /// from the pools, so both sides of the term-frequency rule are exercised.
    fn scorers() -> &'static [Scorer; 2] {
        static S: OnceLock<[Scorer; 2]> = OnceLock::new();
        S.get_or_init(|| {
            let default = Scorer::new(Model::default_model()).unwrap();
            let prepared: Vec<Prepared> = GIVEN
                .iter()
                .zip(FAMILY.iter().cycle())
                .zip(POSTCODE.iter().cycle())
                .map(|((&g, &f), &pc)| {
                    default.prepare(&Record {
                        given_name: Some(g.into()),
                        family_name: Some(f.into()),
                        address: Address {
                            postal_code: Some(pc.into()),
                            ..Default::default()
                        },
                        ..Default::default()
                    })
                })
                .collect();
            let mut model = Model::default_model();
            model.tf.given_name = Some(TfTable::from_values(
                prepared
                    .iter()
                    .filter_map(|p| p.given.as_ref().map(|n| &*n.text)),
            ));
            model.tf.family_name = Some(TfTable::from_values(
                prepared
                    .iter()
                    .filter_map(|p| p.family.as_ref().map(|n| &*n.text)),
            ));
            model.tf.postcode = Some(TfTable::from_values(
                prepared.iter().filter_map(|p| p.postcode.as_deref()),
            ));
            [default, Scorer::new(model).unwrap()]
        })
    }

    proptest! {
        /// The bound is never below the true score, so no pair that reaches a threshold is
        /// ever skipped.
        #[test]
        fn bound_is_never_below_the_score(a in record(), b in record(), which in 0usize..2) {
            let scorer = &scorers()[which];
            let prepared = [scorer.prepare(&a), scorer.prepare(&b)];
            let bound = scorer.weight_bound(&prepared, &[(0, 1), (1, 0)]);
            prop_assert!(bound.is_some(), "the self-check declined");
            let bound = bound.unwrap();
            for (x, y) in [(0, 1), (1, 0), (0, 0)] {
                let score = scorer.score(&prepared[x as usize], &prepared[y as usize]).weight;
                prop_assert!(
                    !bound.below(x, y, score),
                    "bound {} below score {score}", bound.upper_bound(x, y)
                );
            }
        }

        /// Where the bound needs no string work it rules out only levels the scorer cannot
        /// reach: `exact` exactly when the values are equal, and otherwise a level in
        /// [`Comparison::reachable_when_unequal`] of the pair's facts.
        #[test]
        fn the_scorer_stays_within_the_reachable_levels(a in record(), b in record()) {
            let scorer = &scorers()[0];
            let (p, q) = (scorer.prepare(&a), scorer.prepare(&b));
            let text = |k: &Option<crate::prepare::NameKeys>| k.as_ref().map(|n| n.text.clone());
            let crosswise = text(&p.given).is_some()
                && text(&p.family).is_some()
                && text(&p.given) == text(&q.family)
                && text(&p.family) == text(&q.given);
            let multiword = |x: &Prepared| x.family.as_ref().is_some_and(|f| f.text.contains(' '));
            let facts = CheapFacts {
                crosswise,
                previous: !p.previous.is_empty() || !q.previous.is_empty(),
                multiword: multiword(&p) || multiword(&q),
            };
            let values = [
                (Comparison::GivenName, text(&p.given).map(|t| t.to_string()), text(&q.given).map(|t| t.to_string())),
                (Comparison::FamilyName, text(&p.family).map(|t| t.to_string()), text(&q.family).map(|t| t.to_string())),
                (Comparison::MiddleName, p.middle.as_deref().map(str::to_string), q.middle.as_deref().map(str::to_string)),
                (Comparison::Street, p.street.as_deref().map(str::to_string), q.street.as_deref().map(str::to_string)),
                (Comparison::Email, p.email.as_deref().map(str::to_string), q.email.as_deref().map(str::to_string)),
            ];
            for (c, x, y) in values {
                let level = c.level(&p, &q);
                match (x, y) {
                    (Some(x), Some(y)) if x == y => prop_assert_eq!(level, 0, "{}", c.name()),
                    (Some(_), Some(_)) => prop_assert!(
                        c.reachable_when_unequal(facts) & (1 << level) != 0,
                        "{} level {} ruled out by {:?}", c.name(), level, facts
                    ),
                    _ => prop_assert_eq!(level, MISSING),
                }
            }
        }

        /// The packed near-miss test agrees with the comparator on short ASCII values.
        #[test]
        fn inline_agreement_matches_compare_identifiers(
            a in "[0-9A-C]{1,16}",
            edits in prop::collection::vec((0usize..16, "[0-9A-C]"), 0..3),
            swap in prop::option::of(0usize..15),
        ) {
            let mut b: Vec<u8> = a.clone().into_bytes();
            for (i, c) in &edits {
                let i = i % b.len();
                b[i] = c.as_bytes()[0];
            }
            if let Some(i) = swap {
                if i + 1 < b.len() {
                    b.swap(i, i + 1);
                }
            }
            let b = String::from_utf8(b).unwrap();
            prop_assert_eq!(Inline::of(&a).agreement(Inline::of(&b)), compare_identifiers(&a, &b));
            prop_assert_eq!(Inline::of(&b).agreement(Inline::of(&a)), compare_identifiers(&b, &a));
        }
    }

    #[test]
    fn strangers_are_skipped_and_the_same_person_is_not() {
        let scorer = &scorers()[0];
        let person = |given: &str, family: &str, year: u16, phone: &str| Record {
            source: "s".into(),
            local_id: "1".into(),
            given_name: Some(given.into()),
            family_name: Some(family.into()),
            birth_date: Some(PartialDate::full(year, 5, 17).unwrap()),
            sex: Sex::Female,
            phones: vec![phone.into()],
            ..Default::default()
        };
        let prepared = [
            scorer.prepare(&person("Margaret", "Okonkwo", 1961, "413-555-0142")),
            scorer.prepare(&person("Margaret", "Okonkwo", 1961, "413-555-0142")),
            scorer.prepare(&person("Denise", "Smith", 1990, "617-555-9999")),
        ];
        let bound = scorer.weight_bound(&prepared, &[(0, 1), (0, 2)]).unwrap();
        let t = scorer.thresholds();
        assert!(!bound.below(0, 1, t.upper));
        assert!(bound.below(0, 2, t.lower));
    }

    /// The service keeps a summary for every indexed record (144 bytes: 144 MB at a
    /// million records): a field that forces 16-byte alignment or a wide new field shows
    /// up here.
    #[test]
    fn a_summary_stays_compact() {
        assert!(
            std::mem::size_of::<Sig>() <= 144,
            "{}",
            std::mem::size_of::<Sig>()
        );
    }

    #[test]
    fn long_and_empty_values_are_flagged() {
        assert_eq!(Inline::of("").len, LONG);
        assert_eq!(Inline::of("01234567890123456").len, LONG);
        assert_eq!(
            Inline::of("5551234567").agreement(Inline::of("5551234576")),
            IdAgreement::AdjacentTransposition
        );
        assert_eq!(
            Inline::of("5551234567").agreement(Inline::of("555123456")),
            IdAgreement::Disagree
        );
    }
}
