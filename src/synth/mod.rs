//! The deterministic synthetic population generator (`empi synth`).
//!
//! Generates persons (census-frequency names, households, twins, moves, married names),
//! writes several corrupted source records per person in shuffled order, and the ground
//! truth beside them. The same seed and rates give byte-identical files. Every rate and its
//! default is documented in `synthetic-data/README.md`.
//!
//! # Example
//! ```
//! use empi::synth::{generate_to_writers, SynthConfig};
//!
//! let config = SynthConfig { persons: 50, seed: 7, ..SynthConfig::default() };
//! let (mut records, mut truth) = (Vec::new(), Vec::new());
//! let summary = generate_to_writers(&config, &mut records, &mut truth).unwrap();
//! assert_eq!(summary.persons, 50);
//! assert!(summary.records >= 50);
//! ```

mod corrupt;
mod names;
mod places;
mod population;
mod render;
mod rng;
mod writer;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

pub use corrupt::{Corruption, CorruptionCount};
pub use population::AS_OF;
pub use writer::{RECORD_COLUMNS, RELATION_COLUMNS, SOURCES, TRUTH_COLUMNS};

use crate::error::{Error, Result};

/// Most persons one run generates.
pub const MAX_PERSONS: u64 = 20_000_000;

/// Version of the generator's output; bumped whenever the same seed would give other data.
pub const GENERATOR_VERSION: u32 = 2;

/// A family of generated data (see [`SynthConfig::profile`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Profile {
    /// empi's own family: households, twins, registration errors.
    #[default]
    Standard,
    /// The family of public record-linkage benchmarks.
    Outside,
}

impl std::str::FromStr for Profile {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "standard" => Ok(Profile::Standard),
            "outside" => Ok(Profile::Outside),
            _ => Err(Error::invalid("profile", "expected standard or outside")),
        }
    }
}

/// One setting of [`SynthConfig`] as a command line offers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    /// The field's name (`typo_rate`).
    pub name: &'static str,
    /// Its documentation.
    pub help: &'static str,
    /// Its default, as text.
    pub default: String,
}

impl std::fmt::Display for Profile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Profile::Standard => "standard",
            Profile::Outside => "outside",
        })
    }
}

macro_rules! synth_config {
    (
        head { $( $(#[doc = $hdoc:literal])* $hfield:ident : $hty:ty = $hdefault:expr ),* $(,)? }
        plain { $( $(#[doc = $pdoc:literal])* $pfield:ident = $pdefault:expr ),* $(,)? }
        scaled { $( $(#[doc = $sdoc:literal])* $sfield:ident = $sdefault:expr ),* $(,)? }
    ) => {
        /// Everything that shapes a generated data set: size, seed and every rate.
        ///
        /// Rates are probabilities in `[0, 1]`. Those in the "scaled" group are corruption
        /// rates: they are multiplied by [`SynthConfig::error_scale`] (and capped at 1)
        /// before use. A command line offers each field as a setting
        /// ([`SynthConfig::settings`]; `typo_rate` is `--typo-rate` for `empi synth`).
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct SynthConfig {
            $(
                $(#[doc = $hdoc])*
                pub $hfield: $hty,
            )*
            $(
                $(#[doc = $pdoc])*
                pub $pfield: f64,
            )*
            $(
                $(#[doc = $sdoc])*
                pub $sfield: f64,
            )*
        }

        impl Default for SynthConfig {
            fn default() -> Self {
                SynthConfig {
                    $( $hfield: $hdefault, )*
                    $( $pfield: $pdefault, )*
                    $( $sfield: $sdefault, )*
                }
            }
        }

        impl SynthConfig {
            /// Every field as a setting a command line offers: its name, its documentation
            /// and its default, in declaration order.
            pub fn settings() -> Vec<Setting> {
                let defaults = SynthConfig::default();
                vec![
                    $( Setting {
                        name: stringify!($hfield),
                        help: concat!($( $hdoc ),*),
                        default: defaults.$hfield.to_string(),
                    }, )*
                    $( Setting {
                        name: stringify!($pfield),
                        help: concat!($( $pdoc ),*),
                        default: defaults.$pfield.to_string(),
                    }, )*
                    $( Setting {
                        name: stringify!($sfield),
                        help: concat!($( $sdoc ),*),
                        default: defaults.$sfield.to_string(),
                    }, )*
                ]
            }

            /// Sets the setting `name` from its text form.
            ///
            /// # Errors
            /// [`Error::InvalidInput`] naming the setting, for an unknown name or a value
            /// that does not parse.
            pub fn set(&mut self, name: &str, value: &str) -> Result<()> {
                fn parsed<T: std::str::FromStr>(name: &str, value: &str) -> Result<T> {
                    value
                        .trim()
                        .parse()
                        .map_err(|_| Error::invalid(name.to_string(), "not a valid value"))
                }
                match name {
                    $( stringify!($hfield) => self.$hfield = parsed(name, value)?, )*
                    $( stringify!($pfield) => self.$pfield = parsed(name, value)?, )*
                    $( stringify!($sfield) => self.$sfield = parsed(name, value)?, )*
                    _ => return Err(Error::invalid(name.to_string(), "no such setting")),
                }
                Ok(())
            }
        }

        /// The corruption rates after [`SynthConfig::error_scale`], as used.
        #[derive(Debug, Clone, PartialEq, Serialize)]
        pub(crate) struct Scaled {
            $( pub(crate) $sfield: f64, )*
        }

        impl Scaled {
            pub(crate) fn new(c: &SynthConfig) -> Scaled {
                Scaled { $( $sfield: (c.$sfield * c.error_scale).min(1.0), )* }
            }
        }

        impl SynthConfig {
            /// Every rate with its name (the flag in snake_case), unscaled ones first.
            pub fn rates(&self) -> Vec<(&'static str, f64)> {
                vec![
                    $( (stringify!($pfield), self.$pfield), )*
                    $( (stringify!($sfield), self.$sfield), )*
                ]
            }

            /// Names of the rates that [`SynthConfig::error_scale`] multiplies.
            pub const SCALED_RATES: &'static [&'static str] = &[$( stringify!($sfield) ),*];

            /// A rate by name.
            pub fn rate(&self, name: &str) -> Option<f64> {
                match name {
                    $( stringify!($pfield) => Some(self.$pfield), )*
                    $( stringify!($sfield) => Some(self.$sfield), )*
                    _ => None,
                }
            }

            /// Sets a rate by name; an unknown name changes nothing.
            fn set_rate(&mut self, name: &str, value: f64) {
                match name {
                    $( stringify!($pfield) => self.$pfield = value, )*
                    $( stringify!($sfield) => self.$sfield = value, )*
                    _ => {}
                }
            }
        }
    };
}

synth_config! {
    head {
        /// Family of data: `standard` (households, twins, registration errors) or `outside`
        /// (the shape of public record-linkage benchmarks: values replaced outright, digit
        /// slips, no sex, phone or email, no households or twins). A rate given explicitly
        /// wins over the profile's unless it equals the standard default.
        profile: Profile = Profile::Standard,
        /// Number of distinct persons.
        persons: u64 = 1000,
        /// Seed of the random stream.
        seed: u64 = 42,
        /// Multiplier on every scaled (corruption) rate, capped at 1 after scaling.
        error_scale: f64 = 1.0,
        /// Mean number of records per person (at least 1).
        mean_records: f64 = 2.0,
    }
    plain {
        /// Share of persons with exactly one record.
        singleton_rate = 0.4,
        /// Per child birth: probability it is a twin or triplet set.
        multiple_birth_rate = 0.03,
        /// Share of multiple births that are triplets.
        triplet_fraction = 0.1,
        /// Per co-twin after the first: given a name alike to the first twin's (same initial,
        /// rhyme, one or two letters apart, the other sex's form). Plank (1964) found 79% of
        /// twin pairs so named; the default assumes fewer today.
        twin_alike_name_rate = 0.5,
        /// Per person: has a national id (SSN-like).
        national_id_rate = 0.8,
        /// Per person aged 16 or more: has an email address.
        email_rate = 0.5,
        /// Per person: has a middle name.
        middle_name_rate = 0.6,
        /// Per household: double-barrelled (hyphenated) family name.
        hyphenated_surname_rate = 0.03,
        /// Per person: a name with an accented spelling (José, Hernández) is written with it.
        accent_rate = 0.6,
        /// Per person: administrative sex is "other".
        other_sex_rate = 0.002,
        /// Per record of a twin/triplet: the multiple-birth order is recorded.
        birth_order_recorded_rate = 0.4,
        /// Per record after a married-name change: the maiden name is recorded as previous.
        previous_name_recorded_rate = 0.5,
        /// Per household move: the phone changes too.
        new_phone_on_move_rate = 0.5,
        /// Per household: only its first member is generated (1: everyone lives alone, so no
        /// relatives share a family name, address or phone).
        living_alone_rate = 0.0,
    }
    scaled {
        /// Per household: moved during the period (older records show the old address).
        move_rate = 0.15,
        /// Per woman aged 20+: family name changed by marriage during the period.
        married_name_rate = 0.1,
        /// Per name or street field per record: one typo (kind uniform over five).
        typo_rate = 0.02,
        /// Per given/family name per record: a sound-alike respelling.
        phonetic_rate = 0.015,
        /// Per record whose given name has nicknames: recorded as a nickname.
        nickname_rate = 0.06,
        /// Per record with a middle name: recorded as its initial.
        middle_initial_rate = 0.15,
        /// Per record: given and family name swapped.
        name_swap_rate = 0.01,
        /// Per record whose birth day is 12 or less (and not the month): day and month swapped.
        date_swap_rate = 0.02,
        /// Per record: one digit of the birth date changed.
        date_digit_rate = 0.01,
        /// Per record: birth date recorded as year only or year-month.
        partial_date_rate = 0.02,
        /// Per record: given name missing.
        given_missing_rate = 0.005,
        /// Per record with a middle name: middle name missing.
        middle_missing_rate = 0.3,
        /// Per record: family name missing.
        family_missing_rate = 0.002,
        /// Per record: birth date missing.
        birth_date_missing_rate = 0.01,
        /// Per record: sex missing.
        sex_missing_rate = 0.02,
        /// Per record: whole address missing.
        address_missing_rate = 0.05,
        /// Per record with an address: postal code missing.
        postal_code_missing_rate = 0.03,
        /// Per record: phone missing.
        phone_missing_rate = 0.15,
        /// Per record of a person with email: email missing.
        email_missing_rate = 0.4,
        /// Per record of a person with a national id: national id missing.
        national_id_missing_rate = 0.35,
        /// Per record of a newborn (under one year): named "Baby Boy"/"Baby Girl".
        baby_name_rate = 0.4,
        /// Per record: names replaced by a placeholder ("Unknown", "John Doe").
        placeholder_name_rate = 0.002,
        /// Per record: birth date replaced by 1900-01-01.
        placeholder_date_rate = 0.002,
        /// Per record: national id replaced by a placeholder (123-45-6789, …).
        placeholder_national_id_rate = 0.003,
        /// Per record: names (and address) upper- or lower-cased.
        case_noise_rate = 0.05,
        /// Per record: stray spaces in one name or address field.
        whitespace_noise_rate = 0.03,
        /// Per record with accented names: accents dropped.
        accent_drop_rate = 0.3,
        /// Per record whose family name has an apostrophe or hyphen: it is mangled.
        punctuation_noise_rate = 0.2,
        /// Per record with an address: street suffix spelled out or dotted.
        address_format_noise_rate = 0.1,
        /// Per record with a national id: written with dashes or spaces.
        national_id_format_noise_rate = 0.3,
        /// Per record with a phone: written as (555) 123-4567, 555.123.4567, +1 …
        phone_format_noise_rate = 0.4,
        /// Per record: given name replaced by another name of the same sex.
        given_replace_rate = 0.0,
        /// Per record: family name replaced by another surname.
        family_replace_rate = 0.0,
        /// Per record: birth date replaced by another date.
        birth_date_replace_rate = 0.0,
        /// Per record with a national id: one of its digits changed.
        national_id_digit_rate = 0.0,
        /// Per record with a national id: replaced by another id.
        national_id_replace_rate = 0.0,
        /// Per record with an address: street line replaced by another address's.
        street_replace_rate = 0.0,
        /// Per record with an address: postal code replaced by another.
        postal_code_replace_rate = 0.0,
    }
}

impl SynthConfig {
    /// The rates of the `outside` profile, where they differ from the standard ones.
    ///
    /// Records are corrupted the way public benchmark generators (FEBRL and its kin) do it:
    /// keyboard typos in about one name in eight, given and family names replaced outright
    /// for 7% of records, birth dates re-keyed or replaced, national-id digits slipped or
    /// the id replaced, street lines and postcodes replaced, a few percent of fields
    /// blanked; values are drawn independently (no households, no twins), and there is no
    /// sex, phone, email or middle name. Record counts follow such files: four persons in
    /// ten have one record, the mean is 2.5.
    pub fn outside_rates() -> Vec<(&'static str, f64)> {
        vec![
            ("singleton_rate", 0.42),
            ("multiple_birth_rate", 0.0),
            ("national_id_rate", 1.0),
            ("email_rate", 0.0),
            ("middle_name_rate", 0.0),
            ("hyphenated_surname_rate", 0.0),
            ("accent_rate", 0.0),
            ("other_sex_rate", 0.0),
            ("living_alone_rate", 1.0),
            ("move_rate", 0.0),
            ("married_name_rate", 0.0),
            ("typo_rate", 0.12),
            ("phonetic_rate", 0.01),
            ("nickname_rate", 0.0),
            ("name_swap_rate", 0.005),
            ("date_swap_rate", 0.0),
            ("date_digit_rate", 0.02),
            ("partial_date_rate", 0.008),
            ("given_missing_rate", 0.035),
            ("family_missing_rate", 0.028),
            ("birth_date_missing_rate", 0.034),
            ("sex_missing_rate", 1.0),
            ("address_missing_rate", 0.04),
            ("postal_code_missing_rate", 0.0),
            ("phone_missing_rate", 1.0),
            ("national_id_missing_rate", 0.0),
            ("baby_name_rate", 0.0),
            ("placeholder_name_rate", 0.0),
            ("placeholder_date_rate", 0.0),
            ("placeholder_national_id_rate", 0.0),
            ("case_noise_rate", 0.0),
            ("accent_drop_rate", 0.0),
            ("punctuation_noise_rate", 0.0),
            ("address_format_noise_rate", 0.0),
            ("national_id_format_noise_rate", 0.0),
            ("phone_format_noise_rate", 0.0),
            ("given_replace_rate", 0.07),
            ("family_replace_rate", 0.07),
            ("birth_date_replace_rate", 0.02),
            ("national_id_digit_rate", 0.05),
            ("national_id_replace_rate", 0.023),
            ("street_replace_rate", 0.1),
            ("postal_code_replace_rate", 0.1),
        ]
    }

    /// The configuration as generated: the profile's rates in place of every rate still
    /// at its standard default (and `mean_records` 2.5 for `outside`).
    pub fn resolved(&self) -> SynthConfig {
        let mut c = self.clone();
        if c.profile == Profile::Outside {
            let standard = SynthConfig::default();
            if c.mean_records == standard.mean_records {
                c.mean_records = 2.5;
            }
            let defaults: std::collections::HashMap<&str, f64> =
                standard.rates().into_iter().collect();
            for (name, value) in SynthConfig::outside_rates() {
                if c.rate(name) == defaults.get(name).copied() {
                    c.set_rate(name, value);
                }
            }
        }
        c
    }

    /// Checks sizes and that every rate is a probability.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] naming the offending setting.
    pub fn validate(&self) -> Result<()> {
        // The cap keeps unique phones and national ids quick to draw.
        if self.persons == 0 || self.persons > MAX_PERSONS {
            return Err(Error::invalid(
                "persons",
                "must be between 1 and 20,000,000",
            ));
        }
        if !self.error_scale.is_finite() || self.error_scale < 0.0 {
            return Err(Error::invalid(
                "error_scale",
                "must be a finite number >= 0",
            ));
        }
        if !self.mean_records.is_finite() || !(1.0..=50.0).contains(&self.mean_records) {
            return Err(Error::invalid("mean_records", "must be between 1 and 50"));
        }
        for (name, v) in self.rates() {
            if !v.is_finite() || !(0.0..=1.0).contains(&v) {
                return Err(Error::invalid(
                    name,
                    "must be a probability between 0 and 1",
                ));
            }
        }
        // Persons with extra records need at least one extra each on average.
        let extra = self.mean_records - 1.0;
        if extra + 1e-9 < 1.0 - self.singleton_rate && extra > 0.0 {
            return Err(Error::invalid(
                "singleton_rate",
                "too high for mean_records: need mean_records - 1 >= 1 - singleton_rate",
            ));
        }
        if extra > 0.0 && self.singleton_rate >= 1.0 {
            return Err(Error::invalid(
                "singleton_rate",
                "1 requires mean_records 1",
            ));
        }
        Ok(())
    }
}

/// What a run produced.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SynthSummary {
    /// Distinct persons.
    pub persons: u64,
    /// Records written.
    pub records: u64,
    /// Households.
    pub households: u64,
    /// Twin and triplet sets.
    pub multiple_birth_sets: u64,
    /// Persons in twin and triplet sets.
    pub multiple_birth_persons: u64,
    /// Households that moved during the period.
    pub households_moved: u64,
    /// Persons living in a household that moved.
    pub persons_moved: u64,
    /// Women aged 20 or more (eligible for a married-name change).
    pub married_eligible: u64,
    /// Persons whose family name changed by marriage.
    pub persons_married: u64,
    /// Per corruption kind (by [`Corruption::name`]): times applied and times possible.
    pub corruptions: BTreeMap<&'static str, CorruptionCount>,
}

impl SynthSummary {
    /// Applied and eligible counts of one corruption kind.
    pub fn count(&self, kind: Corruption) -> CorruptionCount {
        self.corruptions
            .get(kind.name())
            .copied()
            .unwrap_or_default()
    }
}

/// Generates a data set into `out_dir`: `records.csv`, `truth.csv`, `relations.csv` and
/// `manifest.json`.
///
/// Shows a progress bar on stderr when stderr is a terminal ([`crate::progress`]).
///
/// # Errors
/// [`Error::InvalidInput`] for a bad configuration; [`Error::Io`] when a file cannot be
/// created or written.
pub fn generate(config: &SynthConfig, out_dir: &Path) -> Result<SynthSummary> {
    let config = &config.resolved();
    config.validate()?;
    std::fs::create_dir_all(out_dir).map_err(|e| Error::io(out_dir, e))?;
    let records_path = out_dir.join("records.csv");
    let truth_path = out_dir.join("truth.csv");
    let open = |p: &Path| std::fs::File::create(p).map_err(|e| Error::io(p, e));
    let records = std::io::BufWriter::with_capacity(1 << 20, open(&records_path)?);
    let truth = std::io::BufWriter::with_capacity(1 << 20, open(&truth_path)?);
    let progress = crate::progress::bar(0, "synth", true);
    let relations_path = out_dir.join("relations.csv");
    let mut relations = std::io::BufWriter::new(open(&relations_path)?);
    let summary = writer::run(
        config,
        records,
        truth,
        Some((&mut relations, &relations_path)),
        &progress,
        (&records_path, &truth_path),
    )?;
    progress.finish_and_clear();
    relations
        .flush()
        .map_err(|e| Error::io(&relations_path, e))?;
    let manifest_path = out_dir.join("manifest.json");
    let json = writer::manifest_json(config, &summary);
    std::fs::write(&manifest_path, json).map_err(|e| Error::io(&manifest_path, e))?;
    Ok(summary)
}

/// Generates a data set into two writers (records CSV, truth CSV) — for tests and pipes.
///
/// # Errors
/// [`Error::InvalidInput`] for a bad configuration; [`Error::Io`] when writing fails.
pub fn generate_to_writers<R: Write, T: Write>(
    config: &SynthConfig,
    records: R,
    truth: T,
) -> Result<SynthSummary> {
    let config = &config.resolved();
    config.validate()?;
    let labels = (Path::new("records"), Path::new("truth"));
    writer::run(
        config,
        records,
        truth,
        None,
        &indicatif::ProgressBar::hidden(),
        labels,
    )
}

/// The `manifest.json` text for a configuration and the summary of its run.
pub fn manifest_json(config: &SynthConfig, summary: &SynthSummary) -> String {
    writer::manifest_json(config, summary)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{BTreeMap, BTreeSet};

    struct Output {
        records: Vec<Vec<String>>,
        truth: Vec<Vec<String>>,
        records_text: Vec<u8>,
        truth_text: Vec<u8>,
        summary: SynthSummary,
    }

    fn run(config: &SynthConfig) -> Output {
        let (mut records_text, mut truth_text) = (Vec::new(), Vec::new());
        let summary = generate_to_writers(config, &mut records_text, &mut truth_text).unwrap();
        let parse = |bytes: &[u8]| -> Vec<Vec<String>> {
            csv::ReaderBuilder::new()
                .has_headers(true)
                .from_reader(bytes)
                .records()
                .map(|r| r.unwrap().iter().map(str::to_owned).collect())
                .collect()
        };
        Output {
            records: parse(&records_text),
            truth: parse(&truth_text),
            records_text,
            truth_text,
            summary,
        }
    }

    fn col(name: &str) -> usize {
        RECORD_COLUMNS.iter().position(|c| *c == name).unwrap()
    }

    fn small(persons: u64, seed: u64) -> SynthConfig {
        SynthConfig {
            persons,
            seed,
            ..SynthConfig::default()
        }
    }

    #[test]
    fn headers_are_exactly_our_field_names() {
        let out = run(&small(20, 1));
        let first = |b: &[u8]| String::from_utf8(b.split(|&c| c == b'\n').next().unwrap().to_vec());
        assert_eq!(
            first(&out.records_text).unwrap(),
            "source,local_id,given_name,middle_name,family_name,previous_family_name,\
             birth_date,sex,address_line,address_line2,city,state,postal_code,country,phone,\
             email,national_id,multiple_birth_order"
        );
        assert_eq!(first(&out.truth_text).unwrap(), "source,local_id,person_id");
        assert!(out.records.iter().all(|r| r.len() == RECORD_COLUMNS.len()));
    }

    #[test]
    fn same_seed_same_bytes_other_seed_other_bytes() {
        let a = run(&small(400, 11));
        let b = run(&small(400, 11));
        let c = run(&small(400, 12));
        assert_eq!(a.records_text, b.records_text);
        assert_eq!(a.truth_text, b.truth_text);
        assert_eq!(
            manifest_json(&small(400, 11), &a.summary),
            manifest_json(&small(400, 11), &b.summary)
        );
        assert_ne!(a.records_text, c.records_text);
        assert_ne!(a.truth_text, c.truth_text);
    }

    #[test]
    fn ground_truth_covers_every_record_once() {
        let config = small(1500, 5);
        let out = run(&config);
        assert_eq!(out.records.len(), out.truth.len());
        assert_eq!(out.summary.records as usize, out.records.len());
        let mut keys = BTreeSet::new();
        for (r, t) in out.records.iter().zip(&out.truth) {
            assert_eq!((&r[0], &r[1]), (&t[0], &t[1]));
            assert!(SOURCES.contains(&r[0].as_str()), "{}", r[0]);
            assert!(
                keys.insert((r[0].clone(), r[1].clone())),
                "duplicate key {}/{}",
                r[0],
                r[1]
            );
        }
        let persons: BTreeSet<&str> = out.truth.iter().map(|t| t[2].as_str()).collect();
        assert_eq!(persons.len() as u64, config.persons);
        // Shuffled: the records of one person are not adjacent.
        let adjacent = out.truth.windows(2).filter(|w| w[0][2] == w[1][2]).count();
        assert!(adjacent < out.truth.len() / 20, "{adjacent}");
        // Records per person: mean about 2, about 40% singletons.
        let mut per: BTreeMap<&str, u32> = BTreeMap::new();
        for t in &out.truth {
            *per.entry(&t[2]).or_default() += 1;
        }
        let mean = out.truth.len() as f64 / per.len() as f64;
        let singles = per.values().filter(|&&n| n == 1).count() as f64 / per.len() as f64;
        assert!((1.8..2.2).contains(&mean), "{mean}");
        assert!((0.35..0.45).contains(&singles), "{singles}");
    }

    #[test]
    fn twins_are_distinct_people_sharing_a_home() {
        let config = SynthConfig {
            multiple_birth_rate: 0.3,
            ..small(1500, 8)
        };
        let out = run(&config);
        assert!(
            out.summary.multiple_birth_sets > 20,
            "{}",
            out.summary.multiple_birth_sets
        );
        let (order, pid) = (col("multiple_birth_order"), 2);
        // A person's recorded birth order never varies.
        let mut orders: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
        for (r, t) in out.records.iter().zip(&out.truth) {
            if !r[order].is_empty() {
                orders.entry(&t[pid]).or_default().insert(&r[order]);
            }
        }
        assert!(orders.values().all(|o| o.len() == 1));
        // Records with different birth orders, same birth date, family name and address
        // belong to different persons; there are many such pairs.
        let key = |r: &Vec<String>| {
            (
                r[col("birth_date")].clone(),
                r[col("family_name")].clone(),
                r[col("address_line")].clone(),
            )
        };
        let mut groups: BTreeMap<_, Vec<(String, String)>> = BTreeMap::new();
        for (r, t) in out.records.iter().zip(&out.truth) {
            if !r[order].is_empty() {
                groups
                    .entry(key(r))
                    .or_default()
                    .push((r[order].clone(), t[pid].clone()));
            }
        }
        let mut pairs = 0;
        for g in groups.values() {
            for a in g {
                for b in g {
                    if a.0 != b.0 {
                        assert_ne!(a.1, b.1, "two birth orders for one person");
                        pairs += 1;
                    }
                }
            }
        }
        assert!(pairs > 20, "{pairs}");
    }

    #[test]
    fn without_errors_a_persons_records_agree() {
        let config = SynthConfig {
            error_scale: 0.0,
            ..small(800, 3)
        };
        let out = run(&config);
        let mut seen: BTreeMap<&str, &[String]> = BTreeMap::new();
        let order = col("multiple_birth_order");
        for (r, t) in out.records.iter().zip(&out.truth) {
            let fields = &r[2..order];
            if let Some(prev) = seen.insert(&t[2], fields) {
                assert_eq!(prev, fields);
            }
        }
        for &kind in Corruption::ALL {
            if kind != Corruption::BirthOrderRecorded {
                assert_eq!(out.summary.count(kind).applied, 0, "{}", kind.name());
            }
        }
    }

    /// Each corruption's configured rate, for the test below (`None`: not a plain rate).
    fn expected_rate(kind: Corruption, c: &SynthConfig, s: &Scaled) -> Option<f64> {
        use Corruption as C;
        Some(match kind {
            C::TypoSubstitution
            | C::TypoInsertion
            | C::TypoDeletion
            | C::TypoTransposition
            | C::TypoKeyboard => s.typo_rate / 5.0,
            C::Phonetic => s.phonetic_rate,
            C::Nickname => s.nickname_rate,
            C::MiddleInitial => s.middle_initial_rate,
            // Records are spread uniformly over the period; events happen in 10%-90% of it.
            C::MaidenName | C::MovedAddress => 0.5,
            C::PreviousNameRecorded => c.previous_name_recorded_rate,
            C::NameSwap => s.name_swap_rate,
            C::DateDayMonthSwap => s.date_swap_rate,
            C::DateDigitSlip => s.date_digit_rate,
            C::PartialDate => s.partial_date_rate,
            C::MissingGiven => s.given_missing_rate,
            C::MissingMiddle => s.middle_missing_rate,
            C::MissingFamily => s.family_missing_rate,
            C::MissingBirthDate => s.birth_date_missing_rate,
            C::MissingSex => s.sex_missing_rate,
            C::MissingAddress => s.address_missing_rate,
            C::MissingPostalCode => s.postal_code_missing_rate,
            C::MissingPhone => s.phone_missing_rate,
            C::MissingEmail => s.email_missing_rate,
            C::MissingNationalId => s.national_id_missing_rate,
            C::BabyName => s.baby_name_rate,
            C::PlaceholderName => s.placeholder_name_rate,
            C::PlaceholderDate => s.placeholder_date_rate,
            C::PlaceholderNationalId => s.placeholder_national_id_rate,
            C::CaseNoise => s.case_noise_rate,
            C::WhitespaceNoise => s.whitespace_noise_rate,
            C::AccentDrop => s.accent_drop_rate,
            C::PunctuationNoise => s.punctuation_noise_rate,
            C::AddressFormatNoise => s.address_format_noise_rate,
            C::NationalIdFormatNoise => s.national_id_format_noise_rate,
            C::PhoneFormatNoise => s.phone_format_noise_rate,
            C::BirthOrderRecorded => c.birth_order_recorded_rate,
            C::GivenReplaced => s.given_replace_rate,
            C::FamilyReplaced => s.family_replace_rate,
            C::BirthDateReplaced => s.birth_date_replace_rate,
            C::NationalIdDigitSlip => s.national_id_digit_rate * (1.0 - s.national_id_replace_rate),
            C::NationalIdReplaced => s.national_id_replace_rate,
            C::StreetReplaced => s.street_replace_rate,
            C::PostalCodeReplaced => s.postal_code_replace_rate,
        })
    }

    #[test]
    fn each_corruption_happens_at_about_its_rate() {
        // Scaled up so even rare corruptions happen often enough to measure on 6k records.
        let config = SynthConfig {
            error_scale: 4.0,
            multiple_birth_rate: 0.2,
            hyphenated_surname_rate: 0.2,
            ..small(3000, 21)
        };
        let scaled = Scaled::new(&config);
        let out = run(&config);
        for &kind in Corruption::ALL {
            let count = out.summary.count(kind);
            let rate = expected_rate(kind, &config, &scaled).unwrap();
            assert!(
                count.eligible >= 30,
                "{}: only {} eligible",
                kind.name(),
                count.eligible
            );
            let n = count.eligible as f64;
            let seen = count.applied as f64 / n;
            let sd = (rate * (1.0 - rate) / n).sqrt();
            // Edits that need a fitting spot (a sound-alike rule, two letters) may not apply.
            let conditional = matches!(kind, Corruption::Phonetic | Corruption::PunctuationNoise);
            let low = if conditional {
                rate * 0.5
            } else {
                rate - 5.0 * sd - 0.1 * rate
            };
            let high = rate + 5.0 * sd + 0.1 * rate;
            assert!(
                seen >= low && seen <= high,
                "{}: applied {} of {} ({seen:.4}), expected about {rate:.4}",
                kind.name(),
                count.applied,
                count.eligible
            );
        }
        let s = &out.summary;
        let share = |a: u64, b: u64| a as f64 / b as f64;
        let married = share(s.persons_married, s.married_eligible);
        assert!(
            (scaled.married_name_rate * 0.7..scaled.married_name_rate * 1.3).contains(&married)
        );
        let moved = share(s.households_moved, s.households);
        assert!(
            (scaled.move_rate * 0.8..scaled.move_rate * 1.2).contains(&moved),
            "{moved}"
        );
    }

    #[test]
    fn records_look_like_real_feeds() {
        // Doubled so rare placeholders show up; email (40% missing by default) stays.
        let config = SynthConfig {
            error_scale: 2.0,
            ..small(4000, 2)
        };
        let out = run(&config);
        let column = |name: &str| {
            let c = col(name);
            out.records.iter().map(move |r| r[c].as_str())
        };
        let any = |name: &str, f: &dyn Fn(&str) -> bool| column(name).any(f);
        assert!(any("given_name", &|g| g.starts_with("Baby ")));
        assert!(any("family_name", &|f| f == "Doe"));
        assert!(any("family_name", &|f| f.contains('\'')));
        assert!(any("family_name", &|f| f.contains('-')));
        assert!(any("family_name", &|f| !f.is_ascii()));
        assert!(any("family_name", &|f| f.len() > 2 && f == f.to_uppercase()));
        assert!(any("family_name", &|f| f.starts_with(' ') || f.ends_with(' ')));
        assert!(any("previous_family_name", &|f| !f.is_empty()));
        assert!(any("birth_date", &|d| d == "1900-01-01"));
        assert!(any("birth_date", &|d| d.len() == 4));
        assert!(any("birth_date", &|d| d.len() == 7));
        assert!(any("phone", &|p| p.starts_with('(')));
        assert!(any("phone", &|p| p.starts_with("+1")));
        assert!(any("national_id", &|n| n == "123-45-6789" || n == "999-99-9999"));
        assert!(any("national_id", &|n| n.len() == 11 && n.contains('-')));
        assert!(any("email", &|e| e.ends_with("@example.com")));
        assert!(any("sex", &|s| s.is_empty() || s == "U"));
        assert!(any("address_line2", &|a| !a.is_empty()));
        // Dates parse (partial allowed) and are never after the fixed "today".
        for d in column("birth_date").filter(|d| !d.is_empty()) {
            let p = crate::record::PartialDate::parse_iso(d).unwrap();
            assert!(
                (p.year, p.month.unwrap_or(1), p.day.unwrap_or(1)) <= AS_OF,
                "{d}"
            );
        }
        // National ids (other than placeholders) avoid 000, 666 and 9xx areas.
        for n in column("national_id").filter(|n| !n.is_empty()) {
            let digits: String = n.chars().filter(char::is_ascii_digit).collect();
            assert_eq!(digits.len(), 9);
            if !["123456789", "999999999", "000000000"].contains(&digits.as_str()) {
                let area = &digits[..3];
                assert!(
                    area != "000" && area != "666" && !area.starts_with('9'),
                    "{area}"
                );
            }
        }
        // Postcodes are shared: far fewer distinct ZIPs than records with one.
        let zips: BTreeSet<&str> = column("postal_code").filter(|z| !z.is_empty()).collect();
        assert!(zips.len() * 10 < out.records.len(), "{}", zips.len());
        assert!(zips
            .iter()
            .all(|z| z.len() == 5 && z.bytes().all(|b| b.is_ascii_digit())));
    }

    #[test]
    fn surname_frequencies_are_skewed() {
        let out = run(&small(3000, 4));
        let fam = col("family_name");
        let mut counts: BTreeMap<String, u32> = BTreeMap::new();
        for r in &out.records {
            let f = r[fam].trim().to_lowercase();
            if !f.is_empty() {
                *counts.entry(f).or_default() += 1;
            }
        }
        let mut sorted: Vec<(u32, &str)> = counts.iter().map(|(k, v)| (*v, k.as_str())).collect();
        sorted.sort_unstable_by(|a, b| b.cmp(a));
        let median = sorted[sorted.len() / 2].0;
        let top = sorted[0].0;
        assert!(top >= 15 * median, "top {top} median {median}");
        // Smith is the most common census surname (1%), so among the most common here.
        let top10: Vec<&str> = sorted[..10].iter().map(|x| x.1).collect();
        assert!(top10.contains(&"smith"), "{top10:?}");
    }

    #[test]
    fn settings_have_their_docs_and_defaults_and_set_by_name() {
        let settings = SynthConfig::settings();
        let typo = settings.iter().find(|s| s.name == "typo_rate").unwrap();
        assert_eq!(typo.default, "0.02");
        assert!(typo.help.contains("typo"), "{}", typo.help);
        let profile = settings.iter().find(|s| s.name == "profile").unwrap();
        assert_eq!(profile.default, "standard");
        let mut c = SynthConfig::default();
        for s in &settings {
            c.set(s.name, &s.default).unwrap();
        }
        assert_eq!(c, SynthConfig::default());
        c.set("phone_missing_rate", "0.4").unwrap();
        c.set("error_scale", "3").unwrap();
        c.set("profile", "outside").unwrap();
        assert_eq!(c.phone_missing_rate, 0.4);
        assert_eq!(c.profile, Profile::Outside);
        assert_eq!(Scaled::new(&c).phone_missing_rate, 1.0);
        assert_eq!(Scaled::new(&c).typo_rate, 0.06);
        let e = c.set("typo_rate", "lots").unwrap_err().to_string();
        assert!(e.contains("typo_rate") && !e.contains("lots"), "{e}");
        assert!(c.set("nope", "1").is_err());
    }

    #[test]
    fn bad_settings_are_rejected_by_name() {
        let e = SynthConfig {
            typo_rate: 1.5,
            ..SynthConfig::default()
        }
        .validate()
        .unwrap_err();
        assert!(e.to_string().contains("typo_rate"), "{e}");
        let e = SynthConfig {
            persons: 0,
            ..SynthConfig::default()
        }
        .validate()
        .unwrap_err();
        assert!(e.to_string().contains("persons"), "{e}");
        let c = SynthConfig {
            mean_records: 1.2,
            singleton_rate: 0.4,
            ..SynthConfig::default()
        };
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("singleton_rate"));
        assert!(SynthConfig {
            error_scale: f64::NAN,
            ..SynthConfig::default()
        }
        .validate()
        .is_err());
    }

    #[test]
    fn generate_writes_three_files() {
        let dir = tempfile::tempdir().unwrap();
        let config = small(100, 9);
        let summary = generate(&config, dir.path()).unwrap();
        let manifest: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.path().join("manifest.json")).unwrap())
                .unwrap();
        assert_eq!(manifest["seed"], 9);
        assert_eq!(manifest["persons"], 100);
        assert_eq!(manifest["records"], summary.records);
        assert_eq!(manifest["config"]["typo_rate"], 0.02);
        assert_eq!(manifest["effective_rates"]["typo_rate"], 0.02);
        assert_eq!(manifest["generator_version"], GENERATOR_VERSION);
        let records = std::fs::read_to_string(dir.path().join("records.csv")).unwrap();
        let truth = std::fs::read_to_string(dir.path().join("truth.csv")).unwrap();
        assert_eq!(records.lines().count() as u64, summary.records + 1);
        assert_eq!(truth.lines().count() as u64, summary.records + 1);
        let back: SynthConfig = serde_json::from_value(manifest["config"].clone()).unwrap();
        assert_eq!(back, config);
    }
}
