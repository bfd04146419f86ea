//! The true population: households sharing a family name, address and phone; persons with
//! names, birth dates, identifiers; twins and triplets; moves and married-name changes.
//!
//! Persons are kept compact (indices into the name tables and the geography) so a
//! million-record run holds its population in a few tens of megabytes.

use std::collections::HashSet;

use super::names::{Alike, NameSource, NameTables};
use super::places::{Addr, Geography};
use super::rng::{below_u32, between, chance, unit, weighted, Rng};
use super::{Scaled, SynthConfig};
use crate::record::days_from_civil;

/// The fixed "today" of every generated data set, so output does not depend on the clock.
pub const AS_OF: (u16, u8, u8) = (2025, 7, 1);

/// Sentinel for "no name" in index fields.
pub(crate) const NONE: u32 = u32::MAX;

/// True administrative sex.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TrueSex {
    /// Female.
    F,
    /// Male.
    M,
    /// Other.
    O,
}

/// A family name: one census surname, or two joined by a hyphen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Surname {
    /// First (or only) surname index.
    pub(crate) first: u32,
    /// Second surname index of a double-barrelled name, or [`NONE`].
    pub(crate) second: u32,
    /// Whether accented spellings are used.
    pub(crate) accent: bool,
}

impl Surname {
    /// Appends the rendered name.
    pub(crate) fn write(&self, t: &NameTables, out: &mut String) {
        out.push_str(t.last.render(self.first, self.accent));
        if self.second != NONE {
            out.push('-');
            out.push_str(t.last.render(self.second, self.accent));
        }
    }
}

/// A previous home of a household that moved during the observed period.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PrevHome {
    /// Fraction of the observed period at which the move happened.
    pub(crate) t: f32,
    /// The old address.
    pub(crate) addr: Addr,
    /// The old phone.
    pub(crate) phone: u64,
}

/// People living together: they share family name, address and phone.
#[derive(Debug, Clone)]
pub(crate) struct Household {
    /// The family name.
    pub(crate) surname: Surname,
    /// Current address.
    pub(crate) addr: Addr,
    /// Current phone (10 digits).
    pub(crate) phone: u64,
    /// Where the household lived before, if it moved.
    pub(crate) prev: Option<PrevHome>,
}

/// How a person's email is derived from the name.
#[derive(Debug, Clone, Copy)]
pub(crate) struct EmailStyle {
    /// Local-part pattern (0..6).
    pub(crate) pattern: u8,
    /// Number appended to the local part, 0 for none.
    pub(crate) number: u16,
    /// Domain index.
    pub(crate) domain: u8,
}

/// A married-name change inside the observed period.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Maiden {
    /// The name before marriage.
    pub(crate) surname: Surname,
    /// Fraction of the observed period at which the name changed.
    pub(crate) t: f32,
}

/// A person's place in the household, which says how two members are related.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// The household head.
    Head,
    /// The head's spouse.
    Spouse,
    /// A child of the head (and spouse).
    Child,
}

/// How two members of one household are related (`relations.csv`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Relation {
    /// Born in the same multiple birth.
    Twin,
    /// Children of the same household, born apart.
    Sibling,
    /// A parent (head or spouse) and a child.
    ParentChild,
    /// The head and the spouse.
    Spouse,
}

impl Relation {
    /// The name used in `relations.csv`.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Relation::Twin => "twin",
            Relation::Sibling => "sibling",
            Relation::ParentChild => "parent_child",
            Relation::Spouse => "spouse",
        }
    }
}

/// One true person.
#[derive(Debug, Clone)]
pub(crate) struct Person {
    /// Household index.
    pub(crate) household: u32,
    /// Place in the household.
    pub(crate) role: Role,
    /// True sex.
    pub(crate) sex: TrueSex,
    /// Table of the given name.
    pub(crate) given_src: NameSource,
    /// Given-name index.
    pub(crate) given: u32,
    /// Table of the middle name.
    pub(crate) middle_src: NameSource,
    /// Middle-name index or [`NONE`].
    pub(crate) middle: u32,
    /// Whether the given and middle names use accented spellings.
    pub(crate) accent: bool,
    /// Birth date (year, month, day).
    pub(crate) birth: (u16, u8, u8),
    /// Younger than one year on [`AS_OF`].
    pub(crate) infant: bool,
    /// Maiden name when the family name changed by marriage during the period.
    pub(crate) maiden: Option<Maiden>,
    /// Email pattern, if the person has an email.
    pub(crate) email: Option<EmailStyle>,
    /// SSN-like national id as `area*10^6 + group*10^4 + serial`, 0 for none.
    pub(crate) ssn: u32,
    /// Order within a multiple birth (1, 2, 3), 0 for a single birth.
    pub(crate) birth_order: u8,
}

/// The whole true population.
pub(crate) struct Population {
    /// Households.
    pub(crate) households: Vec<Household>,
    /// Persons; the index is the person id minus one.
    pub(crate) persons: Vec<Person>,
    /// Number of twin/triplet sets.
    pub(crate) multiple_birth_sets: u64,
    /// Persons belonging to a twin/triplet set.
    pub(crate) multiple_birth_persons: u64,
    /// Households that moved.
    pub(crate) households_moved: u64,
    /// Persons whose family name changed by marriage.
    pub(crate) persons_married: u64,
    /// Women aged 20 or more (those eligible for a married-name change).
    pub(crate) married_eligible: u64,
}

/// Household sizes and their relative frequencies.
const HOUSEHOLD_SIZES: &[(u32, u32)] =
    &[(1, 28), (2, 34), (3, 15), (4, 13), (5, 6), (6, 3), (7, 1)];
/// Age bands of a household head (inclusive years) and their weights.
const HEAD_AGES: &[((u32, u32), u32)] = &[
    ((18, 24), 8),
    ((25, 34), 18),
    ((35, 44), 18),
    ((45, 54), 17),
    ((55, 64), 16),
    ((65, 74), 12),
    ((75, 84), 8),
    ((85, 99), 3),
];
/// How an alike co-twin name resembles the first twin's, for twins of one sex, and how
/// often. Plank (1964, "Names of twins", *Names* 12:1–8) found 62% of twin pairs sharing an
/// initial and 17% alike in sound or rhyme; here the alike names split 50% initial only, 30%
/// one or two letters apart (itself mostly a shared initial: Louise/Louisa), 20% rhyme.
const ALIKE_KINDS: &[(Alike, u32)] = &[
    (Alike::Initial, 50),
    (Alike::Spelling, 30),
    (Alike::Rhyme, 20),
];
/// Most tries at drawing a twin's given name different from the siblings'.
const NAME_TRIES: usize = 20;

impl Population {
    /// Generates `config.persons` persons in households.
    pub(crate) fn generate(
        config: &SynthConfig,
        scaled: &Scaled,
        names: &NameTables,
        geo: &Geography,
        rng: &mut Rng,
    ) -> Population {
        let n = config.persons as usize;
        let mut pop = Population {
            households: Vec::with_capacity(n / 2 + 1),
            persons: Vec::with_capacity(n),
            multiple_birth_sets: 0,
            multiple_birth_persons: 0,
            households_moved: 0,
            persons_married: 0,
            married_eligible: 0,
        };
        let mut ssns = HashSet::with_capacity(n);
        let mut phones = HashSet::with_capacity(n / 2);
        let as_of_days =
            days_from_civil(i64::from(AS_OF.0), i64::from(AS_OF.1), i64::from(AS_OF.2));
        // Members of the household being built: (age, birth order, year, month, day).
        let mut members: Vec<(u32, u8, u16, u8, u8)> = Vec::new();
        while pop.persons.len() < n {
            let h = pop.households.len() as u32;
            let surname = Surname {
                first: names.last.sample(rng),
                second: if chance(rng, config.hyphenated_surname_rate) {
                    names.last.sample(rng)
                } else {
                    NONE
                },
                accent: chance(rng, config.accent_rate),
            };
            let addr = geo.sample_addr(rng, None);
            let phone = unique_phone(rng, geo, addr.town, &mut phones);
            let prev = if chance(rng, scaled.move_rate) {
                // Half the moves stay in town; a move keeps the phone unless told otherwise.
                let town = if chance(rng, 0.5) {
                    Some(addr.town)
                } else {
                    None
                };
                let old = geo.sample_addr(rng, town);
                let old_phone = if chance(rng, config.new_phone_on_move_rate) {
                    unique_phone(rng, geo, old.town, &mut phones)
                } else {
                    phone
                };
                Some(PrevHome {
                    t: t_event(rng),
                    addr: old,
                    phone: old_phone,
                })
            } else {
                None
            };
            let moved = prev.is_some();
            pop.households.push(Household {
                surname,
                addr,
                phone,
                prev,
            });

            let size = if chance(rng, config.living_alone_rate) {
                1
            } else {
                *weighted(rng, HOUSEHOLD_SIZES)
            };
            let &(lo, hi) = weighted(rng, HEAD_AGES);
            let head_age = between(rng, lo, hi);
            members.clear();
            let head_birth = birth_date(rng, as_of_days, head_age);
            members.push((head_age, 0, head_birth.0, head_birth.1, head_birth.2));
            let has_spouse = size >= 2 && chance(rng, 0.75);
            if has_spouse {
                let spouse_age = (head_age as i32 + between(rng, 0, 10) as i32 - 5).max(18) as u32;
                let b = birth_date(rng, as_of_days, spouse_age);
                members.push((spouse_age, 0, b.0, b.1, b.2));
            }
            let mut tries = 0;
            while members.len() < size as usize && tries < 10 {
                tries += 1;
                let child_age = head_age as i32 - between(rng, 20, 42) as i32;
                if !(0..=40).contains(&child_age) {
                    continue;
                }
                let b = birth_date(rng, as_of_days, child_age as u32);
                let set = if chance(rng, config.multiple_birth_rate) {
                    if chance(rng, config.triplet_fraction) {
                        3
                    } else {
                        2
                    }
                } else {
                    1
                };
                for k in 0..set {
                    let order = if set > 1 { k + 1 } else { 0 };
                    members.push((child_age as u32, order, b.0, b.1, b.2));
                }
            }
            // Truncate to the requested population, keeping multiple-birth orders sensible.
            members.truncate(n - pop.persons.len());
            let set_sizes = count_sets(&members);
            let first_in_household = pop.persons.len();
            for (i, &(age, order, y, m, d)) in members.iter().enumerate() {
                let order = if order > 0 && set_sizes[i] > 1 {
                    order
                } else {
                    0
                };
                let spouse = i == 1 && has_spouse;
                let sex = if chance(rng, config.other_sex_rate) {
                    TrueSex::O
                } else if spouse && chance(rng, 0.9) {
                    // Mostly opposite-sex couples.
                    match pop.persons[first_in_household].sex {
                        TrueSex::F => TrueSex::M,
                        _ => TrueSex::F,
                    }
                } else if chance(rng, 0.5) {
                    TrueSex::F
                } else {
                    TrueSex::M
                };
                let given_src = match sex {
                    TrueSex::F => NameSource::Female,
                    TrueSex::M => NameSource::Male,
                    TrueSex::O if chance(rng, 0.5) => NameSource::Female,
                    TrueSex::O => NameSource::Male,
                };
                let table = names.table(given_src);
                let mut given = table.sample(rng);
                let first_twin = (order > 1)
                    .then(|| &pop.persons[first_in_household + i + 1 - usize::from(order)]);
                let alike = first_twin
                    .filter(|_| chance(rng, config.twin_alike_name_rate))
                    .and_then(|first| {
                        let name = names.table(first.given_src).plain(first.given);
                        let kind = if first.given_src != given_src {
                            Alike::OtherSexForm
                        } else {
                            *weighted(rng, ALIKE_KINDS)
                        };
                        table
                            .alike(name, kind, rng)
                            .or_else(|| table.alike(name, Alike::Initial, rng))
                    });
                let siblings = &pop.persons[first_in_household..];
                let clashes = |g: u32| {
                    siblings.iter().any(|p| {
                        p.birth_order > 0
                            && p.birth == (y, m, d)
                            && names.table(p.given_src).plain(p.given) == table.plain(g)
                    })
                };
                if let Some(a) = alike.filter(|&a| !clashes(a)) {
                    given = a;
                } else if order > 1 {
                    // Co-twins never share a given name.
                    for _ in 0..NAME_TRIES {
                        if !clashes(given) {
                            break;
                        }
                        given = table.sample(rng);
                    }
                }
                let (middle_src, middle) = if chance(rng, config.middle_name_rate) {
                    if chance(rng, 0.1) {
                        (NameSource::Surname, names.last.sample(rng))
                    } else {
                        (given_src, table.sample(rng))
                    }
                } else {
                    (given_src, NONE)
                };
                let maiden = if sex == TrueSex::F && age >= 20 {
                    pop.married_eligible += 1;
                    if chance(rng, scaled.married_name_rate) {
                        let mut first = names.last.sample(rng);
                        if first == surname.first {
                            first = names.last.sample(rng);
                        }
                        pop.persons_married += 1;
                        let accent = chance(rng, config.accent_rate);
                        Some(Maiden {
                            surname: Surname {
                                first,
                                second: NONE,
                                accent,
                            },
                            t: t_event(rng),
                        })
                    } else {
                        None
                    }
                } else {
                    None
                };
                let email = if age >= 16 && chance(rng, config.email_rate) {
                    Some(EmailStyle {
                        pattern: below_u32(rng, 6) as u8,
                        number: if chance(rng, 0.4) {
                            between(rng, 1, 99) as u16
                        } else {
                            0
                        },
                        domain: below_u32(rng, 6) as u8,
                    })
                } else {
                    None
                };
                let ssn = if chance(rng, config.national_id_rate) {
                    unique_ssn(rng, &mut ssns)
                } else {
                    0
                };
                let birth_days = days_from_civil(i64::from(y), i64::from(m), i64::from(d));
                if moved {
                    pop.households_moved += u64::from(i == 0);
                }
                let role = match i {
                    0 => Role::Head,
                    1 if has_spouse => Role::Spouse,
                    _ => Role::Child,
                };
                pop.persons.push(Person {
                    household: h,
                    role,
                    sex,
                    given_src,
                    given,
                    middle_src,
                    middle,
                    accent: chance(rng, config.accent_rate),
                    birth: (y, m, d),
                    infant: as_of_days - birth_days < 365,
                    maiden,
                    email,
                    ssn,
                    birth_order: order,
                });
            }
            for (i, &(_, order, ..)) in members.iter().enumerate() {
                if order == 1 && set_sizes[i] > 1 {
                    pop.multiple_birth_sets += 1;
                    pop.multiple_birth_persons += u64::from(set_sizes[i]);
                }
            }
        }
        pop
    }

    /// Every pair of persons sharing a household (`a < b`, person indexes) and how they are
    /// related.
    pub(crate) fn relations(&self) -> impl Iterator<Item = (u32, u32, Relation)> + '_ {
        let n = self.persons.len();
        (0..n).flat_map(move |a| {
            let pa = &self.persons[a];
            (a + 1..n)
                .take_while(move |&b| self.persons[b].household == pa.household)
                .map(move |b| {
                    let pb = &self.persons[b];
                    let relation = match (pa.role, pb.role) {
                        (Role::Child, Role::Child)
                            if pa.birth_order > 0 && pb.birth_order > 0 && pa.birth == pb.birth =>
                        {
                            Relation::Twin
                        }
                        (Role::Child, Role::Child) => Relation::Sibling,
                        (Role::Child, _) | (_, Role::Child) => Relation::ParentChild,
                        _ => Relation::Spouse,
                    };
                    (a as u32, b as u32, relation)
                })
        })
    }

    /// Persons in households that moved.
    pub(crate) fn persons_moved(&self) -> u64 {
        self.persons
            .iter()
            .filter(|p| self.households[p.household as usize].prev.is_some())
            .count() as u64
    }
}

/// For each member, the size of its multiple-birth set after truncation (1 for singles).
fn count_sets(members: &[(u32, u8, u16, u8, u8)]) -> Vec<u8> {
    let mut sizes = vec![1u8; members.len()];
    let mut i = 0;
    while i < members.len() {
        if members[i].1 == 1 {
            let mut j = i + 1;
            while j < members.len() && members[j].1 == (j - i + 1) as u8 {
                j += 1;
            }
            for s in &mut sizes[i..j] {
                *s = (j - i) as u8;
            }
            i = j;
        } else {
            i += 1;
        }
    }
    sizes
}

/// The moment of a life event within the observed period, away from its ends.
fn t_event(rng: &mut Rng) -> f32 {
    (0.1 + 0.8 * unit(rng)) as f32
}

/// A birth date for someone `age` whole years old on [`AS_OF`].
fn birth_date(rng: &mut Rng, as_of_days: i64, age: u32) -> (u16, u8, u8) {
    // Days lived: age whole years plus 0..364 days (365.2425 days a year, in integers).
    let days = i64::from(age) * 365_2425 / 10_000 + i64::from(below_u32(rng, 365));
    civil_from_days(as_of_days - days)
}

/// Howard Hinnant's civil-from-days: days since 1970-01-01 → (year, month, day).
pub(crate) fn civil_from_days(z: i64) -> (u16, u8, u8) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    (y as u16, m as u8, d as u8)
}

/// A phone number no other household has (unrelated households never share a phone).
fn unique_phone(rng: &mut Rng, geo: &Geography, town: u16, used: &mut HashSet<u64>) -> u64 {
    loop {
        let p = geo.sample_phone(rng, town);
        if used.insert(p) {
            return p;
        }
    }
}

/// Placeholder or notorious SSNs that must never be generated as real ones.
const RESERVED_SSNS: &[u32] = &[123_456_789, 78_051_120, 219_099_999];

/// A 9-digit SSN-like id not yet used: area 001-899 except 666, group 01-99, serial
/// 0001-9999, never one of the placeholder values.
fn unique_ssn(rng: &mut Rng, used: &mut HashSet<u32>) -> u32 {
    loop {
        let mut area = between(rng, 1, 899);
        if area == 666 {
            area = 665;
        }
        let v = area * 1_000_000 + between(rng, 1, 99) * 10_000 + between(rng, 1, 9999);
        if !RESERVED_SSNS.contains(&v) && used.insert(v) {
            return v;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_round_trip() {
        for z in [-25_000i64, -1, 0, 1, 11_017, 20_000, 20_270] {
            let (y, m, d) = civil_from_days(z);
            assert_eq!(days_from_civil(i64::from(y), i64::from(m), i64::from(d)), z);
        }
        assert_eq!(civil_from_days(0), (1970, 1, 1));
    }

    #[test]
    fn set_sizes_follow_truncation() {
        let m = |o: u8| (5u32, o, 2020u16, 1u8, 1u8);
        assert_eq!(count_sets(&[m(0), m(1), m(2), m(0)]), vec![1, 2, 2, 1]);
        assert_eq!(count_sets(&[m(0), m(1), m(2), m(3)]), vec![1, 3, 3, 3]);
        assert_eq!(count_sets(&[m(0), m(1)]), vec![1, 1]);
    }

    #[test]
    fn twins_share_home_and_birth_but_not_names() {
        let config = SynthConfig {
            persons: 3000,
            multiple_birth_rate: 0.5,
            ..SynthConfig::default()
        };
        let names = NameTables::shared();
        let geo = Geography::build();
        let mut rng = super::super::rng::seeded(1, 0);
        let pop = Population::generate(&config, &Scaled::new(&config), names, &geo, &mut rng);
        assert_eq!(pop.persons.len(), 3000);
        let plain = |p: &Person| names.table(p.given_src).plain(p.given).to_owned();
        let mut sets = 0;
        for (i, p) in pop.persons.iter().enumerate() {
            match p.birth_order {
                0 => {}
                1 => sets += 1,
                k => {
                    let prev = &pop.persons[i - 1];
                    assert_eq!(prev.birth_order, k - 1);
                    assert_eq!((prev.household, prev.birth), (p.household, p.birth));
                    let first = &pop.persons[i - usize::from(k) + 1];
                    assert_ne!(plain(first), plain(p));
                    assert_ne!(plain(prev), plain(p));
                }
            }
        }
        assert_eq!(sets, pop.multiple_birth_sets);
        assert!(sets > 100, "{sets}");
        let mut ids: Vec<u32> = pop
            .persons
            .iter()
            .map(|p| p.ssn)
            .filter(|&s| s != 0)
            .collect();
        let n = ids.len();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), n, "national ids repeat");
        let mut phones: Vec<u64> = pop.households.iter().map(|h| h.phone).collect();
        let n = phones.len();
        phones.sort_unstable();
        phones.dedup();
        assert_eq!(phones.len(), n, "households share a phone");
    }

    #[test]
    fn ssns_avoid_reserved_areas() {
        let mut rng = super::super::rng::seeded(1, 0);
        let mut used = HashSet::new();
        for _ in 0..20_000 {
            let v = unique_ssn(&mut rng, &mut used);
            let area = v / 1_000_000;
            assert!((1..900).contains(&area) && area != 666, "{area}");
            assert!(!(v / 10_000).is_multiple_of(100) && !v.is_multiple_of(10_000));
        }
        assert_eq!(used.len(), 20_000);
    }
}
