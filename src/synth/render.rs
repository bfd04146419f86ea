//! Turns a true person into one source record at some moment of the observed period, and
//! corrupts it at the configured rates.
//!
//! The record's fields are reused `String` buffers: a run allocates per field only while
//! the buffers grow to their longest value.

use std::fmt::Write as _;

use super::corrupt::{
    digit_slip, drop_accents, phonetic, punctuation, swap_day_month, to_lower, to_upper, typo,
    whitespace, write_phone, write_ssn, Corruption as C, Scratch, Tally, PHONE_STYLES,
};
use super::names::{fold_accent, NameTables};
use super::places::{write_street_line, write_unit_line, Geography};
use super::population::{civil_from_days, Household, Person, Population, TrueSex, AS_OF, NONE};
use super::rng::{below_u32, between, chance, index, unit, Rng};
use super::{Scaled, SynthConfig};
use crate::record::days_from_civil;

/// Number of columns of `records.csv`.
pub(crate) const N_FIELDS: usize = 18;

/// One output row, in the order of [`super::RECORD_COLUMNS`].
#[derive(Debug, Default)]
pub(crate) struct Row {
    /// Field values.
    pub(crate) f: [String; N_FIELDS],
}

/// Email domains: reserved example domains only, so no address can reach anyone.
const EMAIL_DOMAINS: &[&str] = &[
    "example.com",
    "example.net",
    "example.org",
    "mail.example.com",
    "post.example.net",
    "inbox.example.org",
];

/// Placeholder national ids seen in real feeds.
const PLACEHOLDER_IDS: &[&str] = &[
    "123-45-6789",
    "999-99-9999",
    "000-00-0000",
    "123456789",
    "999999999",
];

/// Renders records of one population.
pub(crate) struct Renderer<'a> {
    cfg: &'a SynthConfig,
    sc: &'a Scaled,
    names: &'a NameTables,
    geo: &'a Geography,
    pop: &'a Population,
    scratch: Scratch,
    /// Corruption counts so far.
    pub(crate) tally: Tally,
}

impl<'a> Renderer<'a> {
    /// A renderer over a population.
    pub(crate) fn new(
        cfg: &'a SynthConfig,
        sc: &'a Scaled,
        names: &'a NameTables,
        geo: &'a Geography,
        pop: &'a Population,
    ) -> Self {
        Renderer {
            cfg,
            sc,
            names,
            geo,
            pop,
            scratch: Scratch::default(),
            tally: Tally::default(),
        }
    }

    /// Fills `row` (all but `source` and `local_id`) with a corrupted record of `person`.
    pub(crate) fn render(&mut self, rng: &mut Rng, person: usize, row: &mut Row) {
        let (cfg, sc, names, geo) = (self.cfg, self.sc, self.names, self.geo);
        let p: &Person = &self.pop.persons[person];
        let h: &Household = &self.pop.households[p.household as usize];
        let tally = &mut self.tally;
        let scratch = &mut self.scratch;
        let [_, _, given, middle, family, prev_family, birth, sex, line1, line2, city, state, postal, country, phone, email, nid, order] =
            &mut row.f;
        for f in [
            &mut *given,
            &mut *middle,
            &mut *family,
            &mut *prev_family,
            &mut *birth,
            &mut *sex,
            &mut *line1,
            &mut *line2,
            &mut *city,
            &mut *state,
            &mut *postal,
            &mut *country,
            &mut *phone,
            &mut *email,
            &mut *nid,
            &mut *order,
        ] {
            f.clear();
        }
        // When in the observed period this record was made.
        let t = unit(rng) as f32;

        // Names.
        let mut surname = h.surname;
        if let Some(m) = p.maiden {
            tally.eligible(C::MaidenName);
            if t < m.t {
                surname = m.surname;
                tally.applied(C::MaidenName);
            } else {
                tally.eligible(C::PreviousNameRecorded);
                if chance(rng, cfg.previous_name_recorded_rate) {
                    m.surname.write(names, prev_family);
                    tally.applied(C::PreviousNameRecorded);
                }
            }
        }
        surname.write(names, family);
        tally.eligible(C::FamilyReplaced);
        if chance(rng, sc.family_replace_rate) {
            family.clear();
            family.push_str(names.last.render(names.last.sample(rng), false));
            tally.applied(C::FamilyReplaced);
        }
        let nicks = names.nicknames(p.given_src, p.given);
        if !nicks.is_empty() {
            tally.eligible(C::Nickname);
            if chance(rng, sc.nickname_rate) {
                given.push_str(&nicks[index(rng, nicks.len())]);
                tally.applied(C::Nickname);
            }
        }
        if given.is_empty() {
            given.push_str(names.table(p.given_src).render(p.given, p.accent));
        }
        tally.eligible(C::GivenReplaced);
        if chance(rng, sc.given_replace_rate) {
            let table = names.table(p.given_src);
            given.clear();
            given.push_str(table.render(table.sample(rng), false));
            tally.applied(C::GivenReplaced);
        }
        if p.middle != NONE {
            let m = names.table(p.middle_src).render(p.middle, p.accent);
            tally.eligible(C::MiddleInitial);
            if chance(rng, sc.middle_initial_rate) {
                middle.extend(m.chars().next());
                tally.applied(C::MiddleInitial);
            } else {
                middle.push_str(m);
            }
        }
        let mut placeholder = false;
        if p.infant {
            tally.eligible(C::BabyName);
            if chance(rng, sc.baby_name_rate) {
                given.clear();
                given.push_str(match p.sex {
                    TrueSex::F => "Baby Girl",
                    TrueSex::M => "Baby Boy",
                    TrueSex::O => "Baby",
                });
                middle.clear();
                placeholder = true;
                tally.applied(C::BabyName);
            }
        }
        tally.eligible(C::PlaceholderName);
        if chance(rng, sc.placeholder_name_rate) {
            middle.clear();
            prev_family.clear();
            given.clear();
            match below_u32(rng, 3) {
                0 => {
                    given.push_str("Unknown");
                    family.clear();
                    family.push_str("Unknown");
                }
                1 => {
                    given.push_str(if p.sex == TrueSex::F { "Jane" } else { "John" });
                    family.clear();
                    family.push_str("Doe");
                }
                _ => given.push_str("Unknown"),
            }
            placeholder = true;
            tally.applied(C::PlaceholderName);
        }
        if !placeholder {
            for field in [&mut *given, &mut *family] {
                tally.eligible(C::Phonetic);
                if chance(rng, sc.phonetic_rate) && phonetic(rng, field, scratch) {
                    tally.applied(C::Phonetic);
                }
            }
            for field in [&mut *given, &mut *middle, &mut *family] {
                maybe_typo(rng, sc.typo_rate, field, tally, scratch);
            }
        }
        if !given.is_empty() && !family.is_empty() {
            tally.eligible(C::NameSwap);
            if chance(rng, sc.name_swap_rate) {
                std::mem::swap(given, family);
                tally.applied(C::NameSwap);
            }
        }

        // Birth date and sex.
        tally.eligible(C::PlaceholderDate);
        if chance(rng, sc.placeholder_date_rate) {
            birth.push_str("1900-01-01");
            tally.applied(C::PlaceholderDate);
        } else {
            let mut date = p.birth;
            tally.eligible(C::BirthDateReplaced);
            if chance(rng, sc.birth_date_replace_rate) {
                date = other_birth_date(rng);
                tally.applied(C::BirthDateReplaced);
            }
            if date.2 <= 12 && date.2 != date.1 {
                tally.eligible(C::DateDayMonthSwap);
                if chance(rng, sc.date_swap_rate) && swap_day_month(&mut date) {
                    tally.applied(C::DateDayMonthSwap);
                }
            }
            tally.eligible(C::DateDigitSlip);
            if chance(rng, sc.date_digit_rate) && digit_slip(rng, &mut date, AS_OF) {
                tally.applied(C::DateDigitSlip);
            }
            tally.eligible(C::PartialDate);
            // Writing to a String cannot fail.
            let _ = if chance(rng, sc.partial_date_rate) {
                tally.applied(C::PartialDate);
                if chance(rng, 0.4) {
                    write!(birth, "{:04}", date.0)
                } else {
                    write!(birth, "{:04}-{:02}", date.0, date.1)
                }
            } else {
                write!(birth, "{:04}-{:02}-{:02}", date.0, date.1, date.2)
            };
        }
        sex.push_str(match p.sex {
            TrueSex::F => "F",
            TrueSex::M => "M",
            TrueSex::O => "O",
        });

        // Address and phone, as they were when the record was made.
        let (addr, home_phone) = match h.prev {
            Some(prev) => {
                tally.eligible(C::MovedAddress);
                if t < prev.t {
                    tally.applied(C::MovedAddress);
                    (prev.addr, prev.phone)
                } else {
                    (h.addr, h.phone)
                }
            }
            None => (h.addr, h.phone),
        };
        tally.eligible(C::AddressFormatNoise);
        let style = if chance(rng, sc.address_format_noise_rate) {
            tally.applied(C::AddressFormatNoise);
            1 + below_u32(rng, 2) as u8
        } else {
            0
        };
        tally.eligible(C::StreetReplaced);
        if chance(rng, sc.street_replace_rate) {
            write_street_line(line1, &geo.sample_addr(rng, None), style);
            tally.applied(C::StreetReplaced);
        } else {
            write_street_line(line1, &addr, style);
        }
        write_unit_line(line2, &addr);
        let town = geo.town(&addr);
        city.push_str(&town.name);
        state.push_str(town.state);
        tally.eligible(C::PostalCodeReplaced);
        if chance(rng, sc.postal_code_replace_rate) {
            postal.push_str(geo.zip(&geo.sample_addr(rng, None)));
            tally.applied(C::PostalCodeReplaced);
        } else {
            postal.push_str(geo.zip(&addr));
        }
        country.push_str("US");
        for field in [&mut *line1, &mut *city] {
            maybe_typo(rng, sc.typo_rate, field, tally, scratch);
        }
        tally.eligible(C::PhoneFormatNoise);
        let style = if chance(rng, sc.phone_format_noise_rate) {
            tally.applied(C::PhoneFormatNoise);
            1 + below_u32(rng, PHONE_STYLES)
        } else {
            0
        };
        write_phone(phone, home_phone, style);

        // Email, national id, birth order.
        if let Some(e) = p.email {
            write_email(email, names, p, h, e);
        }
        if p.ssn != 0 {
            tally.eligible(C::NationalIdFormatNoise);
            let style = if chance(rng, sc.national_id_format_noise_rate) {
                tally.applied(C::NationalIdFormatNoise);
                1 + below_u32(rng, 2)
            } else {
                0
            };
            let mut ssn = p.ssn;
            tally.eligible(C::NationalIdReplaced);
            tally.eligible(C::NationalIdDigitSlip);
            if chance(rng, sc.national_id_replace_rate) {
                ssn = 1_000_000 * between(rng, 1, 899) + below_u32(rng, 1_000_000);
                tally.applied(C::NationalIdReplaced);
            } else if chance(rng, sc.national_id_digit_rate) {
                ssn = slip_digit(rng, ssn);
                tally.applied(C::NationalIdDigitSlip);
            }
            write_ssn(nid, ssn, style);
        }
        if p.birth_order > 0 {
            tally.eligible(C::BirthOrderRecorded);
            if chance(rng, cfg.birth_order_recorded_rate) {
                let _ = write!(order, "{}", p.birth_order);
                tally.applied(C::BirthOrderRecorded);
            }
        }

        // Missing fields.
        let mut missing = |rng: &mut Rng, field: &mut String, kind: C, rate: f64| {
            if !field.is_empty() {
                tally.eligible(kind);
                if chance(rng, rate) {
                    field.clear();
                    tally.applied(kind);
                    return true;
                }
            }
            false
        };
        missing(rng, given, C::MissingGiven, sc.given_missing_rate);
        missing(rng, middle, C::MissingMiddle, sc.middle_missing_rate);
        missing(rng, family, C::MissingFamily, sc.family_missing_rate);
        missing(rng, birth, C::MissingBirthDate, sc.birth_date_missing_rate);
        if missing(rng, sex, C::MissingSex, sc.sex_missing_rate) && chance(rng, 0.5) {
            sex.push('U');
        }
        if missing(rng, line1, C::MissingAddress, sc.address_missing_rate) {
            for f in [
                &mut *line2,
                &mut *city,
                &mut *state,
                &mut *postal,
                &mut *country,
            ] {
                f.clear();
            }
        } else {
            missing(
                rng,
                postal,
                C::MissingPostalCode,
                sc.postal_code_missing_rate,
            );
        }
        missing(rng, phone, C::MissingPhone, sc.phone_missing_rate);
        missing(rng, email, C::MissingEmail, sc.email_missing_rate);
        missing(rng, nid, C::MissingNationalId, sc.national_id_missing_rate);
        // Placeholders stand in for unknown values, so they may fill a missing id.
        tally.eligible(C::PlaceholderNationalId);
        if chance(rng, sc.placeholder_national_id_rate) {
            nid.clear();
            nid.push_str(PLACEHOLDER_IDS[index(rng, PLACEHOLDER_IDS.len())]);
            tally.applied(C::PlaceholderNationalId);
        }

        // Presentation noise.
        if !(given.is_ascii() && middle.is_ascii() && family.is_ascii() && prev_family.is_ascii()) {
            tally.eligible(C::AccentDrop);
            if chance(rng, sc.accent_drop_rate) {
                for f in [&mut *given, &mut *middle, &mut *family, &mut *prev_family] {
                    drop_accents(f, scratch);
                }
                tally.applied(C::AccentDrop);
            }
        }
        if family.contains(['\'', '-']) {
            tally.eligible(C::PunctuationNoise);
            if chance(rng, sc.punctuation_noise_rate) && punctuation(rng, family, scratch) {
                tally.applied(C::PunctuationNoise);
            }
        }
        tally.eligible(C::CaseNoise);
        if chance(rng, sc.case_noise_rate) {
            match below_u32(rng, 3) {
                // A system that stores everything in capitals.
                0 => {
                    for f in [
                        &mut *given,
                        &mut *middle,
                        &mut *family,
                        &mut *prev_family,
                        &mut *line1,
                        &mut *line2,
                        &mut *city,
                    ] {
                        to_upper(f, scratch);
                    }
                }
                1 => {
                    for f in [&mut *given, &mut *middle, &mut *family, &mut *prev_family] {
                        to_lower(f, scratch);
                    }
                }
                _ => to_upper(family, scratch),
            }
            tally.applied(C::CaseNoise);
        }
        tally.eligible(C::WhitespaceNoise);
        if chance(rng, sc.whitespace_noise_rate) {
            let k = below_u32(rng, 4);
            let field = match k {
                0 => given,
                1 => family,
                2 => line1,
                _ => city,
            };
            if !field.is_empty() {
                whitespace(rng, field, scratch);
                tally.applied(C::WhitespaceNoise);
            }
        }
    }
}

/// A birth date drawn uniformly from the hundred years before [`AS_OF`]: someone else's.
fn other_birth_date(rng: &mut Rng) -> (u16, u8, u8) {
    let today = days_from_civil(i64::from(AS_OF.0), i64::from(AS_OF.1), i64::from(AS_OF.2));
    civil_from_days(today - i64::from(below_u32(rng, 36_524)))
}

/// `ssn` with one of its nine digits changed to another digit.
fn slip_digit(rng: &mut Rng, ssn: u32) -> u32 {
    let place = 10u32.pow(below_u32(rng, 9));
    let digit = (ssn / place) % 10;
    let other = (digit + 1 + below_u32(rng, 9)) % 10;
    ssn - digit * place + other * place
}

/// With probability `rate`, one typo in `field` (counted under its kind).
fn maybe_typo(rng: &mut Rng, rate: f64, field: &mut String, tally: &mut Tally, sc: &mut Scratch) {
    if field.chars().count() < 2 {
        return;
    }
    for kind in super::corrupt::TYPOS {
        tally.eligible(kind);
    }
    if chance(rng, rate) {
        if let Some(kind) = typo(rng, field, sc) {
            tally.applied(kind);
        }
    }
}

/// Writes the person's email: a pattern over the true given name and current family name.
fn write_email(
    out: &mut String,
    names: &NameTables,
    p: &Person,
    h: &Household,
    e: super::population::EmailStyle,
) {
    let given = names.table(p.given_src).plain(p.given);
    let family = names.last.plain(h.surname.first);
    let push_word = |out: &mut String, w: &str, initial: bool| {
        for c in w
            .chars()
            .map(fold_accent)
            .filter(char::is_ascii_alphanumeric)
        {
            out.push(c.to_ascii_lowercase());
            if initial {
                break;
            }
        }
    };
    match e.pattern {
        0 => {
            push_word(out, given, false);
            out.push('.');
            push_word(out, family, false);
        }
        1 => {
            push_word(out, given, false);
            push_word(out, family, false);
        }
        2 => {
            push_word(out, given, true);
            push_word(out, family, false);
        }
        3 => {
            push_word(out, family, false);
            out.push('.');
            push_word(out, given, false);
        }
        4 => {
            push_word(out, given, false);
            out.push('_');
            push_word(out, family, false);
        }
        _ => {
            push_word(out, given, false);
            push_word(out, family, true);
        }
    }
    if e.number > 0 {
        let _ = write!(out, "{}", e.number);
    }
    out.push('@');
    out.push_str(EMAIL_DOMAINS[e.domain as usize % EMAIL_DOMAINS.len()]);
}
