//! The comparisons a record pair is scored on, each with its ordered agreement levels.
//!
//! A pair falls into the *first* level it satisfies; a value missing on either side is the
//! level [`MISSING`] with weight 0. Level names are part of the model file format.

use serde::{Deserialize, Serialize};

use crate::compare::date::{compare_dates, DateAgreement};
use crate::compare::identifier::{compare_identifiers, IdAgreement};
use crate::compare::nickname::NicknameTable;
use crate::compare::string::{damerau_levenshtein, jaro_winkler};
use crate::prepare::{NameKeys, Prepared};
use crate::record::{PartialDate, Sex};

/// Level index meaning "missing on either side" (weight 0).
pub const MISSING: u8 = u8::MAX;

/// Number of comparisons in [`Comparison::ALL`].
pub const N_COMPARISONS: usize = 10;

/// Given-name level decided by the names agreeing crosswise.
pub(super) const GIVEN_SWAPPED: u8 = 1;
/// Family-name level decided by previous family names.
pub(super) const FAMILY_PREVIOUS: u8 = 1;
/// Family-name level decided by the names agreeing crosswise.
pub(super) const FAMILY_SWAPPED: u8 = 2;
/// Family-name level decided by a shared word of a several-word name.
pub(super) const FAMILY_SHARED_WORD: u8 = 3;

/// What a pair is known to share without any string comparison: the facts by which
/// [`Comparison::reachable_when_unequal`] rules levels in or out for the weight bound
/// ([`super::bound`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct CheapFacts {
    /// The given and family names may agree crosswise (`a.given = b.family` and
    /// `a.family = b.given`).
    pub(super) crosswise: bool,
    /// Either side has a previous family name.
    pub(super) previous: bool,
    /// Either side's family name has several words.
    pub(super) multiword: bool,
}

/// One comparison of a record pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Comparison {
    /// First given name.
    GivenName,
    /// Middle name.
    MiddleName,
    /// Family name, with previous family names and swapped order.
    FamilyName,
    /// Birth date.
    BirthDate,
    /// Administrative sex.
    Sex,
    /// National identifier.
    NationalId,
    /// Any phone number.
    Phone,
    /// First street line.
    Street,
    /// Postal code.
    Postcode,
    /// Email address.
    Email,
}

impl Comparison {
    /// Every comparison, in scoring order; index = position in an agreement pattern.
    pub const ALL: [Comparison; N_COMPARISONS] = [
        Comparison::GivenName,
        Comparison::MiddleName,
        Comparison::FamilyName,
        Comparison::BirthDate,
        Comparison::Sex,
        Comparison::NationalId,
        Comparison::Phone,
        Comparison::Street,
        Comparison::Postcode,
        Comparison::Email,
    ];

    /// The comparison's name in files and explanations.
    pub fn name(self) -> &'static str {
        match self {
            Comparison::GivenName => "given_name",
            Comparison::MiddleName => "middle_name",
            Comparison::FamilyName => "family_name",
            Comparison::BirthDate => "birth_date",
            Comparison::Sex => "sex",
            Comparison::NationalId => "national_id",
            Comparison::Phone => "phone",
            Comparison::Street => "street",
            Comparison::Postcode => "postcode",
            Comparison::Email => "email",
        }
    }

    /// Position of this comparison in [`Comparison::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// The ordered level names (strongest agreement first, `else` last).
    pub fn levels(self) -> &'static [&'static str] {
        match self {
            Comparison::GivenName => &[
                "exact", "swapped", "nickname", "jw_0.92", "jw_0.88", "phonetic", "initial", "else",
            ],
            Comparison::MiddleName => &["exact", "initial", "else"],
            Comparison::FamilyName => &[
                "exact",
                "previous_name",
                "swapped",
                "shared_word",
                "jw_0.92",
                "jw_0.88",
                "phonetic",
                "else",
            ],
            Comparison::BirthDate => &[
                "exact",
                "day_month_swapped",
                "one_digit_off",
                "one_month_off",
                "one_year_off",
                "partial",
                "else",
            ],
            Comparison::Sex => &["agree", "else"],
            Comparison::NationalId => &["exact", "one_substitution", "transposition", "else"],
            Comparison::Phone => &["exact", "one_digit_off", "else"],
            Comparison::Street => &["exact", "jw_0.90", "else"],
            Comparison::Postcode => &["exact", "first_3", "else"],
            Comparison::Email => &["exact", "else"],
        }
    }

    /// Whether the exact level of this comparison takes a term-frequency adjustment.
    pub fn has_tf(self) -> bool {
        matches!(
            self,
            Comparison::GivenName | Comparison::FamilyName | Comparison::Postcode
        )
    }

    /// The levels (bit `l` for level `l`) a pair can fall into when both values are
    /// present but unequal, knowing only `facts`: a superset of the possible levels, so the
    /// best weight among them bounds the pair's. Meant for the comparisons whose `exact`
    /// level is plain equality (names, street, email); it must stay in step with the
    /// ladders below, which `bound.rs` tests.
    pub(super) fn reachable_when_unequal(self, facts: CheapFacts) -> u16 {
        let mut set = ((1u16 << self.levels().len()) - 1) & !1;
        let mut rule_out = |level: u8, possible: bool| {
            if !possible {
                set &= !(1 << level);
            }
        };
        match self {
            Comparison::GivenName => rule_out(GIVEN_SWAPPED, facts.crosswise),
            Comparison::FamilyName => {
                rule_out(FAMILY_PREVIOUS, facts.previous);
                rule_out(FAMILY_SWAPPED, facts.crosswise);
                rule_out(FAMILY_SHARED_WORD, facts.multiword);
            }
            _ => {}
        }
        set
    }

    /// The level index the pair falls into, or [`MISSING`].
    #[inline]
    pub fn level(self, a: &Prepared, b: &Prepared) -> u8 {
        match self {
            Comparison::GivenName => given_level(a, b),
            Comparison::MiddleName => middle_level(a, b),
            Comparison::FamilyName => family_level(a, b),
            Comparison::BirthDate => match (&a.birth, &b.birth) {
                (Some(x), Some(y)) => birth_level(x, y),
                _ => MISSING,
            },
            Comparison::Sex => sex_level(a.sex, b.sex),
            Comparison::NationalId => match (&a.national_id, &b.national_id) {
                (Some(x), Some(y)) => id_level(compare_identifiers(x, y)),
                _ => MISSING,
            },
            Comparison::Phone => phone_level(&a.phones, &b.phones),
            Comparison::Street => match (&a.street, &b.street) {
                (Some(x), Some(y)) if x == y => 0,
                (Some(x), Some(y)) if jaro_winkler(x, y) >= 0.90 => 1,
                (Some(_), Some(_)) => 2,
                _ => MISSING,
            },
            Comparison::Postcode => match (&a.postcode, &b.postcode) {
                (Some(x), Some(y)) => postcode_level(x.as_bytes(), y.as_bytes()),
                _ => MISSING,
            },
            Comparison::Email => match (&a.email, &b.email) {
                (Some(x), Some(y)) => u8::from(x != y),
                _ => MISSING,
            },
        }
    }
}

fn swapped(a: &Prepared, b: &Prepared) -> bool {
    match (&a.given, &a.family, &b.given, &b.family) {
        (Some(ag), Some(af), Some(bg), Some(bf)) => {
            ag.text == bf.text && af.text == bg.text && ag.text != af.text
        }
        _ => false,
    }
}

/// Jaro–Winkler ladder shared by both name comparisons: `Some(0)` ≥ 0.92, `Some(1)` ≥ 0.88.
#[inline]
fn jw_step(x: &NameKeys, y: &NameKeys) -> Option<u8> {
    let s = jaro_winkler(&x.text, &y.text);
    if s >= 0.92 {
        Some(0)
    } else if s >= 0.88 {
        Some(1)
    } else {
        None
    }
}

fn given_level(a: &Prepared, b: &Prepared) -> u8 {
    let (Some(x), Some(y)) = (&a.given, &b.given) else {
        return MISSING;
    };
    if x.text == y.text {
        return 0;
    }
    if swapped(a, b) {
        return GIVEN_SWAPPED;
    }
    if let Some(level) = alike_given(x, &x.nick, y, &y.nick) {
        return level;
    }
    let initial = |p: &str, q: &str| p.len() == 1 && q.starts_with(p);
    if initial(&x.text, &y.text) || initial(&y.text, &x.text) {
        return 6;
    }
    7
}

/// The alike given-name levels (nickname, Jaro–Winkler, phonetic, one edit apart) of two
/// unequal names, with their nickname groups.
#[inline]
fn alike_given(x: &NameKeys, xn: &[u32], y: &NameKeys, yn: &[u32]) -> Option<u8> {
    if NicknameTable::share_group(xn, yn) {
        return Some(2);
    }
    spelling_step(x, y).map(|step| 3 + step)
}

/// The spelling rungs both name ladders share, from their first: `Some(0)` Jaro–Winkler ≥
/// 0.92, `Some(1)` ≥ 0.88 or [`one_edit_apart`], `Some(2)` phonetic.
#[inline]
fn spelling_step(x: &NameKeys, y: &NameKeys) -> Option<u8> {
    if let Some(step) = jw_step(x, y) {
        return Some(step);
    }
    if x.phonetic_agrees(y) {
        return Some(2);
    }
    if one_edit_apart(&x.text, &y.text) {
        return Some(1);
    }
    None
}

/// Two names of at least [`ONE_EDIT_MIN_LEN`] letters one edit apart (a letter replaced,
/// added, dropped, or two neighbours transposed): the typos Jaro–Winkler misses because
/// they fall on the first letters of a short name (`Karl`/`Darl`, `Jay`/`Ajy`). Given and
/// family names alike take their `jw_0.88` level, alike in spelling.
#[inline]
fn one_edit_apart(x: &str, y: &str) -> bool {
    x.len().min(y.len()) >= ONE_EDIT_MIN_LEN
        && x.len().abs_diff(y.len()) <= 1
        && damerau_levenshtein(x, y) == 1
}

/// Shortest name [`one_edit_apart`] applies to: one edit in two letters is half the name.
const ONE_EDIT_MIN_LEN: usize = 3;

/// Given and family names written in each other's fields with a slip in one of them
/// (`Dixon, Jeffery` against `Jeff Dixon`): one name equal crosswise, the other alike
/// crosswise, while directly both differ. See [`crosswise`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Crosswise<'p> {
    /// The given-name level: `exact` when the name equal crosswise reads as a given name,
    /// else the alike pair's ([`alike_given`]).
    pub(super) given: u8,
    /// The family-name level: `exact`, or the alike pair's ([`alike_family`]).
    pub(super) family: u8,
    /// Term frequency of the name equal crosswise, in the table of the field it reads as.
    pub(super) equal_tf: f32,
    /// The two names alike crosswise: the one written in a family field, then the one
    /// written in a given field.
    pub(super) alike: (&'p NameKeys, &'p NameKeys),
}

/// The pair's names read crosswise, when they agree so and not directly (only for pairs
/// whose direct given and family levels are both `else`). The name equal crosswise reads
/// as a given name when the term-frequency tables say it is more often one than a family
/// name (`Tracy`), and otherwise as the family name (`Dixon`, and any name when the tables
/// are not there: a household shares its family name, so the rivals gain nothing from
/// it); the alike pair is then the other name.
pub(super) fn crosswise<'p>(a: &'p Prepared, b: &'p Prepared) -> Option<Crosswise<'p>> {
    let (Some(ag), Some(af), Some(bg), Some(bf)) = (&a.given, &a.family, &b.given, &b.family)
    else {
        return None;
    };
    // The name equal crosswise as a given and as a family name, and the two names left to
    // be alike (the first from a family field).
    let (as_given, as_family, x, y) = if ag.text == bf.text && af.text != bg.text {
        (ag, bf, af, bg)
    } else if af.text == bg.text && ag.text != bf.text {
        (bg, af, bf, ag)
    } else {
        return None;
    };
    if x.text == y.text {
        return None;
    }
    let reads_as_given = as_given.tf > 0.0 && as_family.tf > 0.0 && as_given.tf > as_family.tf;
    if reads_as_given {
        alike_family(x, y).map(|family| Crosswise {
            given: 0,
            family,
            equal_tf: as_given.tf,
            alike: (x, y),
        })
    } else {
        let nick = NicknameTable::shipped().groups(&x.text);
        alike_given(x, nick, y, &y.nick).map(|given| Crosswise {
            given,
            family: 0,
            equal_tf: as_family.tf,
            alike: (x, y),
        })
    }
}

fn middle_level(a: &Prepared, b: &Prepared) -> u8 {
    match (&a.middle, &b.middle) {
        (Some(x), Some(y)) if x == y => 0,
        (Some(x), Some(y))
            if x.as_bytes()[0] == y.as_bytes()[0] && (x.len() == 1 || y.len() == 1) =>
        {
            1
        }
        (Some(_), Some(_)) => 2,
        _ => MISSING,
    }
}

fn family_level(a: &Prepared, b: &Prepared) -> u8 {
    let (Some(x), Some(y)) = (&a.family, &b.family) else {
        return MISSING;
    };
    if x.text == y.text {
        return 0;
    }
    let in_prev = |name: &NameKeys, prev: &[NameKeys]| prev.iter().any(|p| p.text == name.text);
    if in_prev(x, &b.previous)
        || in_prev(y, &a.previous)
        || a.previous.iter().any(|p| in_prev(p, &b.previous))
    {
        return FAMILY_PREVIOUS;
    }
    if swapped(a, b) {
        return FAMILY_SWAPPED;
    }
    if (x.text.contains(' ') || y.text.contains(' '))
        && x.text
            .split(' ')
            .any(|w| w.len() >= 2 && y.text.split(' ').any(|v| v == w))
    {
        return FAMILY_SHARED_WORD;
    }
    alike_family(x, y).unwrap_or(7)
}

/// The alike family-name levels (Jaro–Winkler, phonetic, one edit apart) of two unequal
/// names.
#[inline]
fn alike_family(x: &NameKeys, y: &NameKeys) -> Option<u8> {
    spelling_step(x, y).map(|step| 4 + step)
}

/// Birth-date level of two present dates.
#[inline]
pub(super) fn birth_level(x: &PartialDate, y: &PartialDate) -> u8 {
    match compare_dates(x, y) {
        DateAgreement::Exact => 0,
        DateAgreement::DayMonthSwapped => 1,
        DateAgreement::OneDigitOff => 2,
        DateAgreement::OneMonthOff => 3,
        DateAgreement::OneYearOff => 4,
        DateAgreement::Partial => 5,
        DateAgreement::Disagree => 6,
    }
}

/// Sex level, [`MISSING`] when either side is unknown.
#[inline]
pub(super) fn sex_level(x: Sex, y: Sex) -> u8 {
    match (x, y) {
        (Sex::Unknown, _) | (_, Sex::Unknown) => MISSING,
        (x, y) => u8::from(x != y),
    }
}

/// National-id level of two present ids that agree as `a`.
#[inline]
pub(super) fn id_level(a: IdAgreement) -> u8 {
    match a {
        IdAgreement::Exact => 0,
        IdAgreement::OneSubstitution => 1,
        IdAgreement::AdjacentTransposition => 2,
        IdAgreement::Disagree => 3,
    }
}

/// Phone level of one pair of numbers that agree as `a`; the comparison takes the best
/// (lowest) over the pairs of both records' numbers.
#[inline]
pub(super) fn phone_step(a: IdAgreement) -> u8 {
    match a {
        IdAgreement::Exact => 0,
        IdAgreement::OneSubstitution | IdAgreement::AdjacentTransposition => 1,
        IdAgreement::Disagree => 2,
    }
}

/// Postcode level of two present postcodes.
#[inline]
pub(super) fn postcode_level(x: &[u8], y: &[u8]) -> u8 {
    if x == y {
        0
    } else if x.len() >= 3 && y.len() >= 3 && x[..3] == y[..3] {
        1
    } else {
        2
    }
}

fn phone_level(a: &[Box<str>], b: &[Box<str>]) -> u8 {
    if a.is_empty() || b.is_empty() {
        return MISSING;
    }
    let mut best = 2;
    for x in a.iter().take(4) {
        for y in b.iter().take(4) {
            best = best.min(match phone_step(compare_identifiers(x, y)) {
                0 => return 0,
                step => step,
            });
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::normalize::Placeholders;
    use crate::record::{PartialDate, Record};

    fn prep(given: &str, family: &str) -> Prepared {
        Prepared::new(
            &Record {
                source: "s".into(),
                local_id: "1".into(),
                given_name: Some(given.into()),
                family_name: Some(family.into()),
                ..Default::default()
            },
            &Placeholders::default(),
        )
    }

    fn lvl(c: Comparison, a: &Prepared, b: &Prepared) -> &'static str {
        let l = c.level(a, b);
        if l == MISSING {
            "missing"
        } else {
            c.levels()[l as usize]
        }
    }

    #[test]
    fn name_ladders() {
        let g = Comparison::GivenName;
        let f = Comparison::FamilyName;
        assert_eq!(
            lvl(g, &prep("Robert", "Smith"), &prep("robert", "SMITH")),
            "exact"
        );
        assert_eq!(
            lvl(g, &prep("Robert", "Smith"), &prep("Bob", "Smith")),
            "nickname"
        );
        assert_eq!(
            lvl(g, &prep("Martha", "Smith"), &prep("Marhta", "Smith")),
            "jw_0.92"
        );
        assert_eq!(
            lvl(g, &prep("Smith", "Robert"), &prep("Robert", "Smith")),
            "swapped"
        );
        assert_eq!(
            lvl(f, &prep("Smith", "Robert"), &prep("Robert", "Smith")),
            "swapped"
        );
        assert_eq!(
            lvl(g, &prep("J", "Smith"), &prep("John", "Smith")),
            "initial"
        );
        assert_eq!(
            lvl(g, &prep("Alice", "Smith"), &prep("Zoe", "Smith")),
            "else"
        );
        assert_eq!(
            lvl(f, &prep("Ann", "Garcia Lopez"), &prep("Ann", "Garcia")),
            "shared_word"
        );
        let mut married = prep("Ann", "Jones");
        married.previous = prep("x", "Smith").family.into_iter().collect();
        assert_eq!(lvl(f, &married, &prep("Ann", "Smith")), "previous_name");
        assert_eq!(
            lvl(f, &prep("Ann", "Baby Girl"), &prep("Ann", "")),
            "missing"
        );
    }

    /// Typos on the first letters of a short name are one edit apart, where Jaro–Winkler
    /// sees two different names; two letters are too short to tell a typo from a name.
    #[test]
    fn names_one_edit_apart_are_alike_in_spelling() {
        let (g, f) = (Comparison::GivenName, Comparison::FamilyName);
        let given = |x: &str, y: &str| lvl(g, &prep(x, "Smith"), &prep(y, "Smith"));
        let family = |x: &str, y: &str| lvl(f, &prep("Ann", x), &prep("Ann", y));
        assert_eq!(given("Karl", "Darl"), "jw_0.88");
        assert_eq!(given("Jay", "Ajy"), "jw_0.88");
        assert_eq!(given("Sue", "Wue"), "jw_0.88");
        assert_eq!(family("Lee", "Kee"), "jw_0.88");
        assert_eq!(given("Ava", "Eva"), "phonetic");
        assert_eq!(given("Al", "Ed"), "else");
        assert_eq!(given("Karl", "Dary"), "else");
        assert_eq!(family("Cox", "Fix"), "else");
    }

    /// Names in each other's fields with a slip in one: read crosswise only where both
    /// direct comparisons fail and one name is equal crosswise.
    #[test]
    fn names_read_crosswise() {
        let read = |a: (&str, &str), b: (&str, &str)| {
            crosswise(&prep(a.0, a.1), &prep(b.0, b.1))
                .map(|c| Comparison::GivenName.levels()[c.given as usize])
        };
        assert_eq!(
            read(("Dixon", "Jeffrey"), ("Jeff", "Dixon")),
            Some("nickname")
        );
        assert_eq!(
            read(("Margaret", "Okonkwo"), ("Okonkwo", "Margret")),
            Some("jw_0.92")
        );
        assert_eq!(read(("Smith", "Robert"), ("Robert", "Smith")), None);
        assert_eq!(read(("Dixon", "Jeffrey"), ("Zoe", "Dixon")), None);
        assert_eq!(read(("Dixon", "Jeffrey"), ("Jeff", "Smith")), None);
        // With term frequencies, a name more often given than family reads as the given
        // name, and the alike pair as the family name.
        let (mut a, mut b) = (prep("Bruton", "Tracy"), prep("Tracy", "Ruton"));
        let tf = |n: &mut Option<NameKeys>, f: f32| n.as_mut().unwrap().tf = f;
        tf(&mut a.family, 1e-5);
        tf(&mut b.given, 3e-3);
        let c = crosswise(&a, &b).unwrap();
        assert_eq!((c.given, c.equal_tf), (0, 3e-3));
        assert_eq!(
            Comparison::FamilyName.levels()[c.family as usize],
            "jw_0.92"
        );
        tf(&mut a.family, 4e-3);
        let c = crosswise(&a, &b).unwrap();
        assert_eq!((c.family, c.equal_tf), (0, 4e-3));
    }

    #[test]
    fn named_levels_are_where_the_ladders_say() {
        let g = Comparison::GivenName.levels();
        let f = Comparison::FamilyName.levels();
        assert_eq!(g[GIVEN_SWAPPED as usize], "swapped");
        assert_eq!(f[FAMILY_PREVIOUS as usize], "previous_name");
        assert_eq!(f[FAMILY_SWAPPED as usize], "swapped");
        assert_eq!(f[FAMILY_SHARED_WORD as usize], "shared_word");
    }

    #[test]
    fn reachable_levels_rule_out_only_what_the_facts_exclude() {
        let none = CheapFacts::default();
        let all = CheapFacts {
            crosswise: true,
            previous: true,
            multiword: true,
        };
        let (g, f) = (Comparison::GivenName, Comparison::FamilyName);
        assert_eq!(g.reachable_when_unequal(all), 0b1111_1110);
        assert_eq!(g.reachable_when_unequal(none), 0b1111_1100);
        assert_eq!(f.reachable_when_unequal(all), 0b1111_1110);
        assert_eq!(f.reachable_when_unequal(none), 0b1111_0000);
        assert_eq!(Comparison::Email.reachable_when_unequal(none), 0b10);
        assert_eq!(Comparison::Street.reachable_when_unequal(all), 0b110);
    }

    #[test]
    fn other_ladders() {
        let mut a = prep("a", "b");
        let mut b = prep("a", "b");
        a.birth = Some(PartialDate::full(1980, 3, 4).unwrap());
        b.birth = Some(PartialDate::full(1980, 4, 3).unwrap());
        assert_eq!(lvl(Comparison::BirthDate, &a, &b), "day_month_swapped");
        a.phones = vec!["5551234567".into()];
        b.phones = vec!["5559999999".into(), "5551234576".into()];
        assert_eq!(lvl(Comparison::Phone, &a, &b), "one_digit_off");
        a.postcode = Some("02139".into());
        b.postcode = Some("02141".into());
        assert_eq!(lvl(Comparison::Postcode, &a, &b), "first_3");
        assert_eq!(lvl(Comparison::Sex, &a, &b), "missing");
        assert_eq!(lvl(Comparison::Email, &a, &b), "missing");
    }
}
