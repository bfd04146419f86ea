//! A cheap upper bound on a pair's match weight, so the pair loop can skip the full score
//! of pairs that cannot reach the keep threshold (most candidate pairs of a big block are
//! different people who disagree on birth date).
//!
//! Each record is reduced once to a [`Sig`]: about 100 bytes in one dense array, so a pair
//! costs two cache lines instead of a walk over a dozen heap strings. The bound takes the
//! exact level of the comparisons that are cheap on that summary (birth date, sex, national
//! id, phone, postcode) and, for the others (given and family name, street, email, middle
//! name), the exact level's weight when the values' hashes agree and otherwise the best
//! weight of the other levels still possible (for names: `swapped` only when the names
//! agree crosswise, `previous_name` only with a previous family name, `shared_word` only
//! for a family name of several words). No Jaro–Winkler, nickname or phonetic work is done, and a
//! value too long for the summary falls back to the best weight of any level. Only pairs
//! whose bound is below the threshold are skipped, so the kept pairs are exactly those a
//! full scan keeps.
//!
//! The level rules and the exact level's term-frequency weight repeat the scorer's, so
//! [`Bound::new`] checks itself against [`crate::scoring::Scorer::explain`] on sample
//! records and against [`crate::scoring::Scorer::score`] on sample pairs, and declines
//! (full scoring for every pair) if the two ever disagree — e.g. after a change to the
//! scoring rules.

use std::hash::{BuildHasher, Hash};

use rayon::prelude::*;

use crate::compare::date::{compare_dates, DateAgreement};
use crate::prepare::Prepared;
use crate::record::{PartialDate, Sex};
use crate::scoring::{Comparison, Scorer, MIN_AGREEMENT_WEIGHT};

/// Margin kept below the threshold for floating-point summation order.
const EPS: f64 = 1e-6;
/// Length marking a value too long to keep inline.
const LONG: u8 = u8::MAX;
/// The record has previous family names (the family `previous_name` level is possible).
const PREVIOUS: u8 = 1;
/// The family name has several words (the `shared_word` level is possible).
const MULTIWORD: u8 = 2;

/// Up to 16 bytes of an ASCII value packed in a `u128` (first byte lowest), with its
/// length (`len` 0: none; [`LONG`]: too long or not ASCII), so equality and the
/// identifier near-miss tests are a few integer operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Inline {
    len: u8,
    bytes: u128,
}

impl Inline {
    fn of(s: &str) -> Self {
        if s.len() > 16 || !s.is_ascii() || s.is_empty() {
            return Inline {
                len: LONG,
                bytes: 0,
            };
        }
        let mut buf = [0u8; 16];
        buf[..s.len()].copy_from_slice(s.as_bytes());
        Inline {
            len: s.len() as u8,
            bytes: u128::from_le_bytes(buf),
        }
    }

    fn byte(self, i: u32) -> u8 {
        (self.bytes >> (8 * i)) as u8
    }

    /// The level [`compare_identifiers`] gives two inline ASCII values: 0 exact, 1 one
    /// substitution, 2 adjacent transposition, 3 else.
    fn id_level(self, other: Inline) -> u8 {
        if self.len != other.len {
            return 3;
        }
        let x = self.bytes ^ other.bytes;
        if x == 0 {
            return 0;
        }
        // Positions of the first and last differing bytes.
        let first = x.trailing_zeros() / 8;
        let last = (127 - x.leading_zeros()) / 8;
        if first == last {
            return 1;
        }
        let rest = x & !(0xffu128 << (8 * first)) & !(0xffu128 << (8 * last));
        if last == first + 1
            && rest == 0
            && self.byte(first) == other.byte(last)
            && self.byte(last) == other.byte(first)
        {
            return 2;
        }
        3
    }
}

/// What the bound knows of one record.
#[derive(Debug, Clone, Copy, Default)]
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

/// The bound for one scorer (see the module docs).
#[derive(Debug, Clone)]
pub struct Bound {
    prior: f64,
    /// Level weights per comparison (no term frequency).
    weights: Vec<Vec<f64>>,
    /// Best weight of the levels after `exact`, per comparison.
    best_inexact: Vec<f64>,
    /// Best weight of any level, per comparison.
    best: Vec<f64>,
    /// Term-frequency tables' `Σtf²` for given name, family name, postcode (None: no table).
    collision: [Option<f64>; 3],
    floor: f32,
    hasher: ahash::RandomState,
    sigs: Vec<Sig>,
}

fn nonzero(h: u64) -> u64 {
    h | 1
}

impl Bound {
    /// The bound for `scorer` over `prepared` (term frequencies filled), if it passes its
    /// self-check on sample records and the sample `pairs`; `None` means: score every pair
    /// in full.
    pub fn new(scorer: &Scorer, prepared: &[Prepared], pairs: &[(u32, u32)]) -> Option<Bound> {
        let model = scorer.model();
        let weights: Vec<Vec<f64>> = Comparison::ALL
            .iter()
            .map(|&c| model.params(c).levels.iter().map(|l| l.weight()).collect())
            .collect();
        let max = |w: &[f64]| w.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let best_inexact = weights.iter().map(|w| max(&w[1..])).collect();
        let best = weights.iter().map(|w| max(w)).collect();
        let tf = &model.tf;
        let mut b = Bound {
            prior: crate::scoring::prob_to_weight(model.prior),
            weights,
            best_inexact,
            best,
            collision: [
                tf.given_name.as_ref().map(|t| t.collision()),
                tf.family_name.as_ref().map(|t| t.collision()),
                tf.postcode.as_ref().map(|t| t.collision()),
            ],
            floor: tf.floor,
            hasher: ahash::RandomState::with_seeds(7, 11, 13, 17),
            sigs: Vec::new(),
        };
        b.sigs = prepared
            .par_iter()
            .with_min_len(4096)
            .map(|p| b.sig(p))
            .collect();
        b.self_check(scorer, prepared, pairs).then_some(b)
    }

    fn hash(&self, s: &str) -> u64 {
        let mut h = self.hasher.build_hasher();
        s.hash(&mut h);
        nonzero(std::hash::Hasher::finish(&h))
    }

    fn sig(&self, p: &Prepared) -> Sig {
        let mut s = Sig {
            birth: p.birth,
            sex: p.sex,
            ..Default::default()
        };
        if let Some(g) = &p.given {
            s.given = self.hash(&g.text);
            s.given_w = self.exact(Comparison::GivenName, g.tf);
        }
        if let Some(f) = &p.family {
            s.family = self.hash(&f.text);
            s.family_w = self.exact(Comparison::FamilyName, f.tf);
            if f.text.contains(' ') {
                s.flags |= MULTIWORD;
            }
        }
        if !p.previous.is_empty() {
            s.flags |= PREVIOUS;
        }
        if let Some(pc) = &p.postcode {
            s.postcode = Inline::of(pc);
            s.postcode_w = self.exact(Comparison::Postcode, p.postcode_tf);
        }
        s.email = p.email.as_deref().map_or(0, |e| self.hash(e));
        s.street = p.street.as_deref().map_or(0, |e| self.hash(e));
        s.middle = p.middle.as_deref().map_or(0, |e| self.hash(e));
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

    fn self_check(&self, scorer: &Scorer, prepared: &[Prepared], pairs: &[(u32, u32)]) -> bool {
        let close = |x: f64, y: f64| (x - y).abs() <= 1e-4 * (1.0 + x.abs());
        for p in prepared.iter().take(2_000) {
            let e = scorer.explain(p, p);
            if !close(e.prior_weight, self.prior) {
                return false;
            }
            let checks = [
                (Comparison::GivenName, p.given.as_ref().map(|n| n.tf)),
                (Comparison::FamilyName, p.family.as_ref().map(|n| n.tf)),
                (
                    Comparison::Postcode,
                    p.postcode.as_ref().map(|_| p.postcode_tf),
                ),
            ];
            for (c, tf) in checks {
                let Some(tf) = tf else { continue };
                let Some(o) = e.comparisons.get(c.index()) else {
                    return false;
                };
                if o.level != "exact" || !close(o.weight, self.exact(c, tf)) {
                    return false;
                }
            }
        }
        pairs.iter().all(|&(a, b)| {
            let (x, y) = (&prepared[a as usize], &prepared[b as usize]);
            self.bound(a, b) + EPS >= scorer.score(x, y).weight
        })
    }

    /// The exact level's weight of `c` for a value of relative frequency `tf`, as the
    /// scorer computes it.
    fn exact(&self, c: Comparison, tf: f32) -> f64 {
        let base = self.weights[c.index()][0];
        let table = match c {
            Comparison::GivenName => self.collision[0],
            Comparison::FamilyName => self.collision[1],
            Comparison::Postcode => self.collision[2],
            _ => None,
        };
        match table {
            Some(collision) if tf > 0.0 => {
                let tf = tf.max(self.floor) as f64;
                (base + (collision / tf).log2()).max(MIN_AGREEMENT_WEIGHT)
            }
            _ => base,
        }
    }

    fn w(&self, c: Comparison, level: usize) -> f64 {
        self.weights[c.index()][level]
    }

    /// A hashed value: exact weight (or better) when the hashes agree, else the best
    /// inexact level; 0 when missing on either side.
    fn hashed(&self, c: Comparison, x: u64, y: u64, exact: f64) -> f64 {
        match (x, y) {
            (0, _) | (_, 0) => 0.0,
            _ if x == y => exact.max(self.best_inexact[c.index()]),
            _ => self.best_inexact[c.index()],
        }
    }

    /// An upper bound on the full score of records `a` and `b`.
    #[inline]
    pub fn bound(&self, a: u32, b: u32) -> f64 {
        let (x, y) = (&self.sigs[a as usize], &self.sigs[b as usize]);
        let mut w = self.prior;
        if let (Some(p), Some(q)) = (&x.birth, &y.birth) {
            let level = match compare_dates(p, q) {
                DateAgreement::Exact => 0,
                DateAgreement::DayMonthSwapped => 1,
                DateAgreement::OneDigitOff => 2,
                DateAgreement::OneMonthOff => 3,
                DateAgreement::OneYearOff => 4,
                DateAgreement::Partial => 5,
                DateAgreement::Disagree => 6,
            };
            w += self.w(Comparison::BirthDate, level);
        }
        w += self.names(x, y);
        w += match (x.sex, y.sex) {
            (Sex::Unknown, _) | (_, Sex::Unknown) => 0.0,
            (p, q) => self.w(Comparison::Sex, usize::from(p != q)),
        };
        let c = Comparison::MiddleName;
        w += self.hashed(c, x.middle, y.middle, self.w(c, 0));
        let c = Comparison::Street;
        w += self.hashed(c, x.street, y.street, self.w(c, 0));
        let c = Comparison::Email;
        w += self.hashed(c, x.email, y.email, self.w(c, 0));
        w += self.national_id(x, y);
        w += self.phone(x, y);
        w += self.postcode(x, y);
        w
    }

    /// Given and family name. Beyond `exact`, the levels that need no string work are
    /// ruled in or out from the summary: `swapped` needs the names to agree crosswise,
    /// `previous_name` a previous family name on either side, `shared_word` a family name
    /// of several words; the rest (nickname, Jaro–Winkler, phonetic, initial, else) are
    /// bounded by their best weight.
    fn names(&self, x: &Sig, y: &Sig) -> f64 {
        let (g, f) = (Comparison::GivenName, Comparison::FamilyName);
        let swappable = x.given != 0
            && x.family != 0
            && y.given != 0
            && y.family != 0
            && x.given == y.family
            && x.family == y.given;
        let levels = |c: Comparison, from: usize| {
            self.weights[c.index()][from..]
                .iter()
                .copied()
                .fold(f64::NEG_INFINITY, f64::max)
        };
        let given = match (x.given, y.given) {
            (0, _) | (_, 0) => 0.0,
            (p, q) if p == q => x.given_w.max(self.best_inexact[g.index()]),
            _ if swappable => self.best_inexact[g.index()],
            _ => levels(g, 2),
        };
        let family = match (x.family, y.family) {
            (0, _) | (_, 0) => 0.0,
            (p, q) if p == q => x.family_w.max(self.best_inexact[f.index()]),
            _ => {
                let mut best = levels(f, 4);
                if (x.flags | y.flags) & PREVIOUS != 0 {
                    best = best.max(self.w(f, 1));
                }
                if swappable {
                    best = best.max(self.w(f, 2));
                }
                if (x.flags | y.flags) & MULTIWORD != 0 {
                    best = best.max(self.w(f, 3));
                }
                best
            }
        };
        given + family
    }

    fn national_id(&self, x: &Sig, y: &Sig) -> f64 {
        let c = Comparison::NationalId;
        match (x.national_id.len, y.national_id.len) {
            (0, _) | (_, 0) => 0.0,
            (LONG, _) | (_, LONG) => self.best[c.index()],
            _ => self.w(c, x.national_id.id_level(y.national_id) as usize),
        }
    }

    fn phone(&self, x: &Sig, y: &Sig) -> f64 {
        let c = Comparison::Phone;
        match (x.phones, y.phones) {
            (0, _) | (_, 0) => 0.0,
            (LONG, _) | (_, LONG) => self.best[c.index()],
            (n, m) => {
                let mut best = 2;
                for p in &x.phone[..n as usize] {
                    for q in &y.phone[..m as usize] {
                        best = best.min(match p.id_level(*q) {
                            0 => 0,
                            1 | 2 => 1,
                            _ => 2,
                        });
                    }
                }
                self.w(c, best)
            }
        }
    }

    fn postcode(&self, x: &Sig, y: &Sig) -> f64 {
        let c = Comparison::Postcode;
        let (p, q) = (&x.postcode, &y.postcode);
        match (p.len, q.len) {
            (0, _) | (_, 0) => 0.0,
            (LONG, _) | (_, LONG) => (x.postcode_w).max(self.best[c.index()]),
            _ if p == q => x.postcode_w,
            (m, n) if m >= 3 && n >= 3 && (p.bytes ^ q.bytes) & 0xff_ffff == 0 => self.w(c, 1),
            _ => self.w(c, 2),
        }
    }

    /// Whether records `a` and `b` cannot reach `threshold` (their full score may be
    /// skipped).
    #[inline]
    pub fn below(&self, a: u32, b: u32, threshold: f64) -> bool {
        self.bound(a, b) + EPS < threshold
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compare::identifier::{compare_identifiers, IdAgreement};
    use proptest::prelude::*;

    fn reference(a: &str, b: &str) -> u8 {
        match compare_identifiers(a, b) {
            IdAgreement::Exact => 0,
            IdAgreement::OneSubstitution => 1,
            IdAgreement::AdjacentTransposition => 2,
            IdAgreement::Disagree => 3,
        }
    }

    proptest! {
        /// The packed near-miss test agrees with the comparator on short ASCII values.
        #[test]
        fn inline_levels_match_compare_identifiers(
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
            prop_assert_eq!(Inline::of(&a).id_level(Inline::of(&b)), reference(&a, &b));
            prop_assert_eq!(Inline::of(&b).id_level(Inline::of(&a)), reference(&b, &a));
        }
    }

    #[test]
    fn long_and_empty_values_are_flagged() {
        assert_eq!(Inline::of("").len, LONG);
        assert_eq!(Inline::of("01234567890123456").len, LONG);
        assert_eq!(
            Inline::of("5551234567").id_level(Inline::of("5551234576")),
            2
        );
        assert_eq!(
            Inline::of("5551234567").id_level(Inline::of("555123456")),
            3
        );
    }
}
