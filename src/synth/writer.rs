//! Drives a run: population, record plan, shuffled record order, source systems and local
//! ids; writes `records.csv`, `truth.csv` and the manifest.

use std::fmt::Write as _;
use std::io::Write;
use std::path::Path;

use serde::Serialize;

use super::corrupt::{Corruption, CorruptionCount};
use super::names::NameTables;
use super::places::Geography;
use super::population::{Population, AS_OF};
use super::render::{Renderer, Row, N_FIELDS};
use super::rng::{below_u32, chance, seeded, shuffle, weighted, Rng};
use super::{Scaled, SynthConfig, SynthSummary, GENERATOR_VERSION};
use crate::error::{Error, Result};

/// The columns of `records.csv`, in order: our field names, the list the reader maps
/// ([`crate::input::FIELDS`]).
pub const RECORD_COLUMNS: [&str; N_FIELDS] = crate::input::FIELDS;

/// The columns of `truth.csv`.
pub const TRUTH_COLUMNS: [&str; 3] = ["source", "local_id", "person_id"];

/// The columns of `relations.csv`: two persons of `truth.csv` sharing a household, and how
/// they are related (`twin`, `sibling`, `parent_child`, `spouse`).
pub const RELATION_COLUMNS: [&str; 3] = ["person_a", "person_b", "relation"];

/// A source system: name, local-id prefix, digits, first id, share of records.
struct SourceSpec {
    name: &'static str,
    prefix: &'static str,
    digits: usize,
    first: u64,
    weight: u32,
}

const SOURCE_SPECS: [SourceSpec; 6] = [
    SourceSpec {
        name: "st-marys-adt",
        prefix: "MRN",
        digits: 8,
        first: 100_000,
        weight: 30,
    },
    SourceSpec {
        name: "county-lab",
        prefix: "L",
        digits: 9,
        first: 20_000_000,
        weight: 20,
    },
    SourceSpec {
        name: "rx-pharmacy",
        prefix: "RX-",
        digits: 7,
        first: 1_000,
        weight: 15,
    },
    SourceSpec {
        name: "billing",
        prefix: "",
        digits: 10,
        first: 4_000_000_000,
        weight: 15,
    },
    SourceSpec {
        name: "imaging",
        prefix: "IMG",
        digits: 7,
        first: 50_000,
        weight: 10,
    },
    SourceSpec {
        name: "riverside-clinic",
        prefix: "RC",
        digits: 6,
        first: 10_000,
        weight: 10,
    },
];

/// The source systems records come from.
pub const SOURCES: [&str; 6] = [
    SOURCE_SPECS[0].name,
    SOURCE_SPECS[1].name,
    SOURCE_SPECS[2].name,
    SOURCE_SPECS[3].name,
    SOURCE_SPECS[4].name,
    SOURCE_SPECS[5].name,
];

/// Most records one person can have.
const MAX_RECORDS_PER_PERSON: u32 = 40;

/// Random streams of a run (one per stage, so stages do not shift each other).
const STREAM_POPULATION: u64 = 0;
const STREAM_PLAN: u64 = 1;
const STREAM_RECORDS: u64 = 2;

/// Generates and writes a whole data set. `labels` name the two outputs in errors.
pub(crate) fn run<R: Write, T: Write>(
    config: &SynthConfig,
    records: R,
    truth: T,
    relations: Option<(&mut dyn Write, &Path)>,
    progress: &indicatif::ProgressBar,
    labels: (&Path, &Path),
) -> Result<SynthSummary> {
    let scaled = Scaled::new(config);
    let names = NameTables::shared();
    let geo = Geography::build();
    let pop = Population::generate(
        config,
        &scaled,
        names,
        &geo,
        &mut seeded(config.seed, STREAM_POPULATION),
    );

    if let Some((out, path)) = relations {
        write_relations(&pop, out, path)?;
    }

    // Which person each output row belongs to, in shuffled order.
    let mut rng = seeded(config.seed, STREAM_PLAN);
    let mut slots: Vec<u32> = Vec::with_capacity(pop.persons.len() * 2 + 16);
    for person in 0..pop.persons.len() as u32 {
        for _ in 0..records_for_person(&mut rng, config) {
            slots.push(person);
        }
    }
    shuffle(&mut rng, &mut slots);
    progress.set_length(slots.len() as u64);

    let rec_err = |e: csv::Error| Error::io(labels.0, std::io::Error::from(e));
    let truth_err = |e: csv::Error| Error::io(labels.1, std::io::Error::from(e));
    let mut rec_w = csv::WriterBuilder::new().from_writer(records);
    let mut truth_w = csv::WriterBuilder::new().from_writer(truth);
    rec_w.write_record(RECORD_COLUMNS).map_err(rec_err)?;
    truth_w.write_record(TRUTH_COLUMNS).map_err(truth_err)?;

    let weights: Vec<(usize, u32)> = SOURCE_SPECS
        .iter()
        .enumerate()
        .map(|(i, s)| (i, s.weight))
        .collect();
    let mut next_id: Vec<u64> = SOURCE_SPECS.iter().map(|s| s.first).collect();
    let mut rng = seeded(config.seed, STREAM_RECORDS);
    let mut renderer = Renderer::new(config, &scaled, names, &geo, &pop);
    let mut row = Row::default();
    let mut person_id = String::new();
    for (n, &person) in slots.iter().enumerate() {
        let s = *weighted(&mut rng, &weights);
        let spec = &SOURCE_SPECS[s];
        // Ids grow in output order with small gaps, so neighbours in a source are unrelated.
        next_id[s] += 1 + u64::from(below_u32(&mut rng, 3));
        let [source, local_id, ..] = &mut row.f;
        source.clear();
        source.push_str(spec.name);
        local_id.clear();
        // Writing to a String cannot fail.
        let _ = write!(
            local_id,
            "{}{:0width$}",
            spec.prefix,
            next_id[s],
            width = spec.digits
        );
        renderer.render(&mut rng, person as usize, &mut row);
        rec_w.write_record(&row.f).map_err(rec_err)?;
        person_id.clear();
        let _ = write!(person_id, "P{:07}", person + 1);
        truth_w
            .write_record([&row.f[0], &row.f[1], &person_id])
            .map_err(truth_err)?;
        if n % 8192 == 0 {
            progress.set_position(n as u64);
        }
    }
    rec_w.flush().map_err(|e| Error::io(labels.0, e))?;
    truth_w.flush().map_err(|e| Error::io(labels.1, e))?;
    progress.set_position(slots.len() as u64);

    let tally = &renderer.tally;
    let corruptions = Corruption::ALL
        .iter()
        .map(|&c| {
            let count = CorruptionCount {
                applied: tally.applied[c as usize],
                eligible: tally.eligible[c as usize],
            };
            (c.name(), count)
        })
        .collect();
    Ok(SynthSummary {
        persons: pop.persons.len() as u64,
        records: slots.len() as u64,
        households: pop.households.len() as u64,
        multiple_birth_sets: pop.multiple_birth_sets,
        multiple_birth_persons: pop.multiple_birth_persons,
        households_moved: pop.households_moved,
        persons_moved: pop.persons_moved(),
        married_eligible: pop.married_eligible,
        persons_married: pop.persons_married,
        corruptions,
    })
}

/// Writes `relations.csv`: every pair of persons sharing a household.
fn write_relations(pop: &Population, out: &mut dyn Write, path: &Path) -> Result<()> {
    let err = |e: csv::Error| Error::io(path, std::io::Error::from(e));
    let mut w = csv::WriterBuilder::new().from_writer(out);
    w.write_record(RELATION_COLUMNS).map_err(err)?;
    let (mut a_id, mut b_id) = (String::new(), String::new());
    for (a, b, relation) in pop.relations() {
        a_id.clear();
        b_id.clear();
        // Writing to a String cannot fail.
        let _ = write!(a_id, "P{:07}", a + 1);
        let _ = write!(b_id, "P{:07}", b + 1);
        w.write_record([a_id.as_str(), b_id.as_str(), relation.name()])
            .map_err(err)?;
    }
    w.flush().map_err(|e| Error::io(path, e))
}

/// 1 + extra records: none for a `singleton_rate` share of persons, else 1 + a geometric
/// count chosen so the overall mean is `mean_records`.
fn records_for_person(rng: &mut Rng, config: &SynthConfig) -> u32 {
    let extra_mean = config.mean_records - 1.0;
    if extra_mean <= 0.0 || chance(rng, config.singleton_rate) {
        return 1;
    }
    // Mean of extras given at least one, minus that one: the geometric part's mean g,
    // continued with probability g / (1 + g).
    let g = (extra_mean / (1.0 - config.singleton_rate) - 1.0).max(0.0);
    let q = g / (1.0 + g);
    let mut n = 2;
    while n < MAX_RECORDS_PER_PERSON && chance(rng, q) {
        n += 1;
    }
    n
}

#[derive(Serialize)]
struct Files {
    records: &'static str,
    truth: &'static str,
    relations: &'static str,
}

#[derive(Serialize)]
struct Manifest<'a> {
    generator: &'static str,
    generator_version: u32,
    seed: u64,
    persons: u64,
    records: u64,
    as_of: String,
    files: Files,
    record_columns: [&'static str; N_FIELDS],
    sources: [&'static str; 6],
    scaled_rates: &'static [&'static str],
    config: &'a SynthConfig,
    effective_rates: Scaled,
    summary: &'a SynthSummary,
}

/// The manifest: seed, sizes, every configured and effective rate, and what was applied.
pub(crate) fn manifest_json(config: &SynthConfig, summary: &SynthSummary) -> String {
    let m = Manifest {
        generator: "empi synth",
        generator_version: GENERATOR_VERSION,
        seed: config.seed,
        persons: summary.persons,
        records: summary.records,
        as_of: format!("{:04}-{:02}-{:02}", AS_OF.0, AS_OF.1, AS_OF.2),
        files: Files {
            records: "records.csv",
            truth: "truth.csv",
            relations: "relations.csv",
        },
        record_columns: RECORD_COLUMNS,
        sources: SOURCES,
        scaled_rates: SynthConfig::SCALED_RATES,
        config,
        effective_rates: Scaled::new(config),
        summary,
    };
    // Serialising plain structs of numbers and strings cannot fail.
    let mut s = serde_json::to_string_pretty(&m).unwrap_or_default();
    s.push('\n');
    s
}

/// Record counts the plan would give `persons` persons (for tests).
#[cfg(test)]
pub(crate) fn plan_sizes(config: &SynthConfig, persons: usize) -> Vec<u32> {
    let mut rng = seeded(config.seed, STREAM_PLAN);
    (0..persons)
        .map(|_| records_for_person(&mut rng, config))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_counts_have_the_configured_shape() {
        let config = SynthConfig::default();
        let sizes = plan_sizes(&config, 20_000);
        let n = sizes.len() as f64;
        let mean = sizes.iter().map(|&s| f64::from(s)).sum::<f64>() / n;
        let singles = sizes.iter().filter(|&&s| s == 1).count() as f64 / n;
        assert!((1.9..2.1).contains(&mean), "{mean}");
        assert!((0.37..0.43).contains(&singles), "{singles}");
        let one = SynthConfig {
            mean_records: 1.0,
            ..SynthConfig::default()
        };
        assert!(plan_sizes(&one, 100).iter().all(|&s| s == 1));
    }

    #[test]
    fn source_names_match_specs() {
        for (s, spec) in SOURCES.iter().zip(&SOURCE_SPECS) {
            assert_eq!(*s, spec.name);
            assert!(!s.contains('/'));
        }
    }
}
