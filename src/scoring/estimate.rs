//! Learning a model from the site's own unlabelled records: u from random pairs, m and λ by
//! expectation–maximisation over blocked candidate pairs counted per agreement pattern,
//! term frequencies from the data.
//!
//! # Method
//! Fellegi & Sunter (1969) with the EM estimation of Winkler (1988, *Using the EM
//! algorithm for weight computation in the Fellegi–Sunter model of record linkage*), in the
//! form popularised by Splink:
//! 1. **u** per level from uniformly random record pairs (see [`sample`] for the stopping
//!    rule), deterministic for a seed. A random pair is the same person with probability
//!    λ, so after each EM pass the matches are taken out, `u = (share − λ·m)/(1 − λ)`
//!    ([`USample::corrected`]), and EM runs again (two corrections): without this, the u of
//!    a perfect identifier's exact level would *be* λ, and its weight would cancel the
//!    prior.
//! 2. **m** per level by EM with u held fixed, over the candidate pairs of several
//!    [`TrainingRule`]s (see [`rules`] for which rule trains which comparison: none trains
//!    a comparison from pairs selected on that same field). Pairs are counted per distinct
//!    agreement pattern, so an iteration is a pass over a few thousand patterns. A missing
//!    value contributes nothing to its comparison. Each comparison's m pools the expected
//!    matched-pair counts of the runs that train it.
//! 3. **λ** (the prior): each run estimates its number of matching pairs,
//!    `E_r = match share × candidate pairs`. Only a share of all true pairs can be among
//!    them, the rule's *recall*: the chance that two records of one person agree exactly on
//!    the rule's fields, read off the posteriors of the *other* runs (a missing value counts
//!    as not agreeing). Then `λ_r = E_r / (recall_r × n(n−1)/2)`, and λ is the geometric
//!    mean of the runs' estimates.
//! 4. **Household dependence**: phone, street and postcode move together (a move changes
//!    all three; relatives share all three), so their weights are scaled to add up to the
//!    joint likelihood ratios measured in the data (see [`household`]); their stored u are
//!    then *effective* values.
//! 5. **Term frequencies** for given names, family names and postcodes counted from the
//!    records ([`TfTable::from_values`]).
//!
//! On the standard 100k set (`empi synth --persons 50000 --seed 7`) λ comes out at
//! 1.685e-5 against a true 1.671e-5; 1M records train in about 35 s on two shared cores.
//!
//! Estimates are clamped away from 0 and 1: m at least [`M_FLOOR`], u at least
//! [`U_FLOOR`], the other levels renormalised. Values the user fixes ([`FixedValue`], or
//! `fixed_m`/`fixed_u` in the starting model) are kept as given.
//!
//! # Thresholds
//! Thresholds are match weights *with the prior included*, i.e. the log-odds of the
//! posterior match probability, so the trained model keeps the starting model's numbers:
//! they mean the same probabilities (upper 8 ≈ 0.996, lower 0 = 0.5) under the new
//! parameters. `empi model report` shows the trained model's own estimated precision and
//! recall at each threshold for choosing others.

pub mod em;
pub mod household;
pub mod rivals;
pub mod rules;
pub mod sample;

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::Instant;

use rayon::prelude::*;
use serde::Serialize;

pub use em::{run_em, EmResult, EmSetup, LevelFlags, Probs, M_FLOOR};
pub use rules::{rule_pairs, RulePairs, TrainingRule};
pub use sample::{sample_u, USample, U_FLOOR, U_MIN_COUNT};

use super::{Comparison, Model, TfTable, MAX_LEVELS, N_COMPARISONS};
use crate::error::{Error, Result};
use crate::prepare::Prepared;
use crate::progress::bar;
use crate::record::Record;

/// Which parameter of a level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Param {
    /// P(level | same person).
    M,
    /// P(level | different people).
    U,
}

/// A value the user fixes: `comparison.level.m=0.9` or `comparison.level.u=0.01`.
#[derive(Debug, Clone, PartialEq)]
pub struct FixedValue {
    /// The comparison.
    pub comparison: Comparison,
    /// Level index in [`Comparison::levels`].
    pub level: usize,
    /// m or u.
    pub param: Param,
    /// The value, in (0, 1].
    pub value: f64,
}

impl FromStr for FixedValue {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let bad = |reason: String| Error::invalid("fix", reason);
        let (path, value) = s
            .split_once('=')
            .ok_or_else(|| bad(format!("'{s}': expected comparison.level.m=value")))?;
        let mut parts = path.splitn(3, '.');
        let (c, l, p) = match (parts.next(), parts.next(), parts.next()) {
            (Some(c), Some(l), Some(p)) => (c, l, p),
            _ => return Err(bad(format!("'{s}': expected comparison.level.m=value"))),
        };
        let comparison = Comparison::ALL
            .into_iter()
            .find(|x| x.name() == c)
            .ok_or_else(|| bad(format!("unknown comparison '{c}'")))?;
        let level = comparison
            .levels()
            .iter()
            .position(|x| *x == l)
            .ok_or_else(|| {
                bad(format!(
                    "comparison {c} has no level '{l}' (levels: {})",
                    comparison.levels().join(", ")
                ))
            })?;
        let param = match p {
            "m" => Param::M,
            "u" => Param::U,
            _ => return Err(bad(format!("'{p}': expected m or u"))),
        };
        let value: f64 = value
            .trim()
            .parse()
            .map_err(|_| bad(format!("'{value}' is not a number")))?;
        if !(value > 0.0 && value <= 1.0) {
            return Err(bad(format!("{path}: value must be in (0, 1]")));
        }
        Ok(FixedValue {
            comparison,
            level,
            param,
            value,
        })
    }
}

impl fmt::Display for FixedValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = match self.param {
            Param::M => "m",
            Param::U => "u",
        };
        write!(
            f,
            "{}.{}.{p}={}",
            self.comparison.name(),
            self.comparison.levels()[self.level],
            self.value
        )
    }
}

/// Options of a training run.
#[derive(Debug, Clone)]
pub struct TrainOptions {
    /// Seed of the random-pair sample and of candidate-pair sampling.
    pub seed: u64,
    /// Random pairs per round of u sampling.
    pub u_round_pairs: u64,
    /// Most random pairs drawn for u.
    pub u_max_pairs: u64,
    /// Most candidate pairs compared per EM run (sampled uniformly beyond).
    pub em_max_pairs: u64,
    /// EM iteration cap per run.
    pub em_max_iterations: u32,
    /// EM stops when no parameter moves by more than this.
    pub em_tolerance: f64,
    /// Fewer compared pairs than this and a run is skipped.
    pub min_run_pairs: u64,
    /// Values fixed by the user.
    pub fixed: Vec<FixedValue>,
    /// Where the records came from, for the metadata (a file name, never record data).
    pub input: String,
    /// Show progress bars on stderr.
    pub progress: bool,
}

impl Default for TrainOptions {
    fn default() -> Self {
        TrainOptions {
            seed: 42,
            u_round_pairs: 1_000_000,
            u_max_pairs: 10_000_000,
            em_max_pairs: 2_000_000,
            em_max_iterations: 1000,
            em_tolerance: 1e-6,
            min_run_pairs: 100,
            fixed: Vec::new(),
            input: String::new(),
            progress: false,
        }
    }
}

/// One EM run's facts, as kept in the training metadata.
#[derive(Debug, Clone, Serialize)]
pub struct RunInfo {
    /// The rule.
    pub rule: TrainingRule,
    /// Comparisons the rule selects on.
    pub blocked_on: Vec<&'static str>,
    /// Comparisons used as evidence.
    pub evidence: Vec<&'static str>,
    /// Comparisons whose m this run trains.
    pub trains: Vec<&'static str>,
    /// Candidate pairs the rule selects.
    pub candidate_pairs: u64,
    /// Pairs compared (after sampling).
    pub pairs_used: u64,
    /// Distinct agreement patterns among them.
    pub distinct_patterns: u64,
    /// True when too few pairs: the run trained nothing.
    pub skipped: bool,
    /// EM iterations, convergence and match share.
    pub em: Option<EmResult>,
    /// Expected matching pairs among the candidate pairs.
    pub expected_matches: f64,
    /// Estimated share of all true pairs the rule selects.
    pub recall: Option<f64>,
    /// This run's estimate of λ.
    pub prior: Option<f64>,
}

/// Training metadata, saved as the model's `training` field.
#[derive(Debug, Clone, Serialize)]
pub struct TrainingInfo {
    /// Version of empi that trained the model.
    pub empi_version: &'static str,
    /// When, in UTC (`YYYY-MM-DDTHH:MM:SSZ`).
    pub trained_at: String,
    /// The seed.
    pub seed: u64,
    /// Where the records came from.
    pub input: String,
    /// Records trained on.
    pub records: u64,
    /// Id of the starting model (fixed values, thresholds and placeholders come from it).
    pub base_model: String,
    /// The random-pair sample for u.
    pub u_sample: USample,
    /// The EM runs.
    pub runs: Vec<RunInfo>,
    /// The estimated λ.
    pub prior: f64,
    /// λ after each EM pass (u corrected for matches between passes).
    pub prior_by_pass: Vec<f64>,
    /// The household dependence adjustment (see [`household`]), when there was data for it.
    pub household: Option<household::HouseholdAdjustment>,
    /// The rival hypotheses' shares found in the data (see [`rivals`]), when there was
    /// data for them.
    pub rivals: Option<rivals::RivalFit>,
    /// How λ was estimated.
    pub prior_method: &'static str,
    /// Where the thresholds come from.
    pub thresholds: String,
    /// Values fixed by the user.
    pub fixed: Vec<String>,
    /// Comparisons no run could train (their m is the starting model's).
    pub m_from_base: Vec<&'static str>,
    /// Distinct values in each term-frequency table.
    pub tf_values: BTreeMap<&'static str, u64>,
    /// Seconds per step.
    pub seconds: BTreeMap<&'static str, f64>,
}

/// A trained model and what training saw.
#[derive(Debug, Clone)]
pub struct Trained {
    /// The model, with `training` filled in.
    pub model: Model,
    /// The same metadata, typed.
    pub info: TrainingInfo,
}

/// Prepares the records (in parallel, with the starting model's placeholders) and trains.
///
/// # Errors
/// As [`train`].
pub fn train_records(records: &[Record], base: &Model, opts: &TrainOptions) -> Result<Trained> {
    let t = Instant::now();
    let pb = bar(records.len() as u64, "prepare", opts.progress);
    let prepared: Vec<Prepared> = records
        .par_iter()
        .map(|r| {
            pb.inc(1);
            Prepared::new(r, &base.placeholders)
        })
        .collect();
    pb.finish_and_clear();
    let secs = t.elapsed().as_secs_f64();
    let mut trained = train(&prepared, base, opts)?;
    trained.info.seconds.insert("prepare", secs);
    trained.model.training = Some(info_json(&trained.info));
    Ok(trained)
}

fn info_json(info: &TrainingInfo) -> serde_json::Value {
    // Plain data with string keys and finite numbers serialises; fall back to null.
    serde_json::to_value(info).unwrap_or(serde_json::Value::Null)
}

/// Trains a model from prepared records, starting from `base` (its fixed values,
/// thresholds, placeholders and, for anything the data cannot inform, its parameters).
///
/// # Example
/// ```
/// use empi::prepare::Prepared;
/// use empi::record::Record;
/// use empi::scoring::estimate::{train, TrainOptions};
/// use empi::scoring::Model;
///
/// let base = Model::default_model();
/// let records: Vec<Prepared> = (0..200)
///     .map(|i| Record {
///         source: "adt".into(),
///         local_id: i.to_string(),
///         given_name: Some(["Ana", "Ben", "Cleo", "Dev"][i % 4].into()),
///         family_name: Some(format!("Fam{}", i / 2)),
///         birth_date: Some(format!("19{:02}-0{}-1{}", 40 + i / 4, 1 + i % 9, i % 10).parse().unwrap()),
///         ..Default::default()
///     })
///     .map(|r| Prepared::new(&r, &base.placeholders))
///     .collect();
/// let opts = TrainOptions { u_max_pairs: 20_000, ..Default::default() };
/// let trained = train(&records, &base, &opts).unwrap();
/// assert!(trained.model.id.starts_with("trained-"));
/// assert_eq!(trained.info.records, 200);
/// ```
///
/// # Errors
/// [`Error::Model`] if `base` does not validate; [`Error::InvalidInput`] for fewer than two
/// records.
pub fn train(prepared: &[Prepared], base: &Model, opts: &TrainOptions) -> Result<Trained> {
    base.validate()?;
    if prepared.len() < 2 {
        return Err(Error::invalid(
            "input",
            "training needs at least two records",
        ));
    }
    let started = Instant::now();
    let mut seconds = BTreeMap::new();
    let mut start = base.clone();
    for f in &opts.fixed {
        let level = &mut start.comparisons[f.comparison.index()].levels[f.level];
        match f.param {
            Param::M => (level.m, level.fixed_m) = (f.value, true),
            Param::U => (level.u, level.fixed_u) = (f.value, true),
        }
    }
    let (m0, u0) = em::model_probs(&start);
    let (fixed_m, fixed_u) = em::model_fixed(&start);

    // 1. u from random pairs.
    let t = Instant::now();
    let pb = bar(opts.u_max_pairs, "u pairs", opts.progress);
    let u_sample = sample_u(
        prepared,
        opts.seed,
        opts.u_round_pairs,
        opts.u_max_pairs,
        &fixed_u,
        &pb,
    );
    pb.finish_and_clear();
    let mut u = u_sample.estimate(&u0, &fixed_u);
    seconds.insert("u_sampling", t.elapsed().as_secs_f64());

    // 2. Candidate-pair patterns per training rule (counted once).
    let t = Instant::now();
    let rule_data: Vec<RulePairs> = TrainingRule::ALL
        .iter()
        .map(|&rule| {
            let pb = bar(0, rule.name(), opts.progress);
            let pairs = rule_pairs(prepared, rule, opts.seed, opts.em_max_pairs, &pb);
            pb.finish_and_clear();
            pairs
        })
        .collect();
    seconds.insert("candidate_pairs", t.elapsed().as_secs_f64());

    // 3. EM passes: EM per rule, pool m, estimate λ, take the matches out of u, again.
    let t = Instant::now();
    let n = prepared.len() as f64;
    let all_pairs = n * (n - 1.0) / 2.0;
    let mut m = m0;
    let mut prior_by_pass = Vec::new();
    let mut pass = Pass::default();
    for i in 0..U_CORRECTION_PASSES + 1 {
        pass = em_pass(&rule_data, &u, &m0, &fixed_m, opts, all_pairs);
        m = pass.m;
        let prior = pass.prior.unwrap_or(start.prior);
        prior_by_pass.push(prior);
        if i < U_CORRECTION_PASSES {
            // Matches among random pairs where c is observed: λ · P(observed | match) /
            // P(observed | random pair).
            let mut prior_c = [0.0; N_COMPARISONS];
            for c in Comparison::ALL {
                let ci = c.index();
                let random = u_sample.observed[ci] as f64 / u_sample.pairs.max(1) as f64;
                if random > 0.0 {
                    prior_c[ci] = (prior * pass.observed_in_matches[ci] / random).min(0.5);
                }
            }
            u = u_sample.corrected(&prior_c, &m, &u0, &fixed_u);
        }
    }
    seconds.insert("em", t.elapsed().as_secs_f64());
    let prior = pass.prior.unwrap_or(start.prior);

    // 4. Household fields: weights made to add up to their joint likelihood ratios.
    let mut matched = [0.0; household::HOUSEHOLD_PATTERNS];
    let (mut all_observed, mut expected) = (0.0, 0.0);
    for ((rule, pairs), em) in TrainingRule::ALL.iter().zip(&rule_data).zip(&pass.ems) {
        let Some(em) = em else { continue };
        if !household::HOUSEHOLD
            .iter()
            .all(|c| rule.trains().contains(c))
        {
            continue;
        }
        let scale = 1.0 / pairs.sample_rate();
        expected += em.match_share * pairs.pairs_used as f64 * scale;
        for ((pat, count), post) in pairs.patterns.iter().zip(&em.posteriors) {
            if let Some(j) = household::household_index(pat) {
                let w = *count as f64 * scale * post;
                matched[j] += w;
                all_observed += w;
            }
        }
    }
    let random_observed =
        u_sample.household.iter().sum::<u64>() as f64 / u_sample.pairs.max(1) as f64;
    let household_share = if expected > 0.0 && random_observed > 0.0 {
        (prior * (all_observed / expected) / random_observed).min(0.5)
    } else {
        prior
    };
    // Pairs sharing a family name: where twins and relatives are found (step 5).
    // The given-name table the trained model will score with decides which spellings are
    // rare (step 6 keeps it).
    let t = Instant::now();
    let given_tf = TfTable::from_values(
        prepared
            .iter()
            .filter_map(|p| p.given.as_ref().map(|g| &*g.text)),
    );
    let given_tf_secs = t.elapsed().as_secs_f64();
    let pb = bar(0, "family", opts.progress);
    let family = rivals::family_pairs(
        prepared,
        Some(&given_tf),
        &start.rivals.spelling,
        opts.seed,
        opts.em_max_pairs,
        &pb,
    );
    pb.finish_and_clear();
    // "All agree" is weighed against random pairs: relatives sharing a household are rival
    // hypotheses of their own (step 5), not a reason to weaken the household fields.
    let household = household::adjust(
        &m,
        &mut u,
        &fixed_u,
        &matched,
        &u_sample.household,
        household_share,
    );
    // 5. How common twins and relatives are, among the pairs sharing a family name.
    let rival_fit = rivals::fit(
        &family,
        &m,
        &u,
        &start.rivals,
        opts.em_max_iterations.max(200),
        opts.em_tolerance,
    );
    let m_from_base = pass.m_from_base;
    let runs: Vec<RunInfo> = TrainingRule::ALL
        .iter()
        .zip(&rule_data)
        .zip(pass.ems)
        .zip(pass.recalls)
        .map(|(((&rule, pairs), em), (recall, run_prior))| RunInfo {
            rule,
            blocked_on: rule.blocked().iter().map(|c| c.name()).collect(),
            evidence: rule.evidence().iter().map(|c| c.name()).collect(),
            trains: rule.trains().iter().map(|c| c.name()).collect(),
            candidate_pairs: pairs.candidate_pairs,
            pairs_used: pairs.pairs_used,
            distinct_patterns: pairs.patterns.len() as u64,
            skipped: em.is_none(),
            expected_matches: em
                .as_ref()
                .map_or(0.0, |e| e.match_share * pairs.candidate_pairs as f64),
            em,
            recall,
            prior: run_prior,
        })
        .collect();

    // 6. Term frequencies and the model.
    let t = Instant::now();
    let mut model = start.clone();
    model.tf.given_name = Some(given_tf);
    model.tf.family_name = Some(TfTable::from_values(
        prepared
            .iter()
            .filter_map(|p| p.family.as_ref().map(|f| &*f.text)),
    ));
    model.tf.postcode = Some(TfTable::from_values(
        prepared.iter().filter_map(|p| p.postcode.as_deref()),
    ));
    seconds.insert(
        "term_frequencies",
        given_tf_secs + t.elapsed().as_secs_f64(),
    );
    for c in Comparison::ALL {
        let ci = c.index();
        for (l, level) in model.comparisons[ci].levels.iter_mut().enumerate() {
            level.m = m[ci][l];
            level.u = u[ci][l];
        }
    }
    model.prior = prior;
    if let Some(f) = &rival_fit {
        f.apply(&mut model.rivals);
    }
    model.id = format!("trained-{:012x}", fingerprint(&model) & 0xffff_ffff_ffff);
    model.description = format!(
        "trained by empi {} on {} records{}",
        env!("CARGO_PKG_VERSION"),
        prepared.len(),
        if opts.input.is_empty() {
            String::new()
        } else {
            format!(" from {}", opts.input)
        }
    );
    seconds.insert("total", started.elapsed().as_secs_f64());
    let tf_len = |t: &Option<TfTable>| t.as_ref().map_or(0, |t| t.len() as u64);
    let info = TrainingInfo {
        empi_version: env!("CARGO_PKG_VERSION"),
        trained_at: utc_now(),
        seed: opts.seed,
        input: opts.input.clone(),
        records: prepared.len() as u64,
        base_model: base.id.clone(),
        u_sample,
        runs,
        prior,
        prior_by_pass,
        household,
        rivals: rival_fit,
        prior_method: "geometric mean over runs of expected matches / (recall x all pairs)",
        thresholds: format!(
            "carried over from {} (match weights with the prior included, i.e. the same \
             match probabilities)",
            base.id
        ),
        fixed: opts.fixed.iter().map(|f| f.to_string()).collect(),
        m_from_base,
        tf_values: [
            ("given_name", tf_len(&model.tf.given_name)),
            ("family_name", tf_len(&model.tf.family_name)),
            ("postcode", tf_len(&model.tf.postcode)),
        ]
        .into(),
        seconds,
    };
    model.training = Some(info_json(&info));
    model.validate()?;
    Ok(Trained { model, info })
}

/// Most candidate pairs per training rule that [`estimate_prior`] compares (sampled
/// uniformly beyond, as [`rule_pairs`] samples): on a 1M-record file of the outside family
/// 300k pairs give λ 3.073e-6 in 0.6 s where 2M give 3.067e-6 in 1.5 s (true 3.1e-6).
pub const PRIOR_PAIRS: u64 = 300_000;

/// Most the training rules' estimates of λ may differ (largest over smallest) for a batch
/// run to score with their mean. On the evaluation sets they agree within 1%; rules that
/// disagree fourfold are measuring something other than one population of duplicates (a
/// rule whose key is shared by many strangers, say), and the run keeps the model's λ.
pub const PRIOR_AGREEMENT: f64 = 4.0;

/// λ of a set of records, counted from them, for the run that scores them and its reports.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PriorCount {
    /// The share of the scored record pairs that are one person: of all pairs, the
    /// geometric mean of the training rules' estimates ([`estimate_prior`]); of the pairs
    /// across two sets, what is left of it once each set's own are taken out
    /// ([`estimate_cross_prior`]).
    pub prior: f64,
    /// Each training rule's estimate, by rule name.
    pub by_rule: Vec<(&'static str, f64)>,
    /// The model's own λ.
    pub model_prior: f64,
    /// Whether the rules' estimates agree within [`PRIOR_AGREEMENT`]: only then does a
    /// run score with [`PriorCount::prior`] instead of the model's λ.
    pub agreed: bool,
}

impl PriorCount {
    /// The λ a run scores with.
    pub fn used(&self) -> f64 {
        if self.agreed {
            self.prior
        } else {
            self.model_prior
        }
    }

    /// One line for people.
    pub fn summary(&self) -> String {
        if self.agreed {
            format!(
                "λ {:.3e}, about one record pair in {:.0} is one person (the model's {:.3e})",
                self.prior,
                1.0 / self.prior,
                self.model_prior
            )
        } else {
            let rules: Vec<String> = self
                .by_rule
                .iter()
                .map(|(rule, x)| format!("{rule} {x:.3e}"))
                .collect();
            format!(
                "the training rules' estimates of λ disagree ({}), so the model's {:.3e} is used",
                rules.join(", "),
                self.model_prior
            )
        }
    }
}

/// What a batch run counted in its input, for people: a line `prior counted {from}: …`
/// and a line `rivals counted {from}: …` (`from` = where each was counted), each after
/// `indent`; nothing for what was not counted.
pub fn counted_lines(
    prior: Option<&PriorCount>,
    rivals: Option<&rivals::RivalFit>,
    from: [&str; 2],
    indent: &str,
) -> String {
    let mut s = String::new();
    if let Some(p) = prior {
        s.push_str(&format!(
            "{indent}prior counted {}: {}\n",
            from[0],
            p.summary()
        ));
    }
    if let Some(r) = rivals {
        s.push_str(&format!(
            "{indent}rivals counted {}: {}\n",
            from[1],
            r.summary()
        ));
    }
    s
}

/// Whether estimates agree within [`PRIOR_AGREEMENT`] (largest over smallest).
fn estimates_agree(estimates: &[f64]) -> bool {
    let (lo, hi) = estimates
        .iter()
        .fold((f64::INFINITY, 0.0f64), |(lo, hi), &x| {
            (lo.min(x), hi.max(x))
        });
    !estimates.is_empty() && hi <= lo * PRIOR_AGREEMENT
}

/// λ, the share of all record pairs that are one person, estimated from the records as
/// `empi train` estimates it (step 3 of the module docs: EM over each training rule's
/// candidate pairs, λ from the runs' expected matches and recalls) under the model's own
/// u, with m starting from the model's (its fixed values kept) and free to move, so a file
/// corrupted more or less than the model expects still counts its matches. At most
/// `max_pairs` candidate pairs per rule ([`PRIOR_PAIRS`] in batch runs).
///
/// How many duplicates a file holds is a fact about the file, not about the site's data
/// entry: a 20,000-record file of 8,000 persons has λ ≈ 1.3e-4, a 1M-record file of the
/// same kind 3.1e-6, and one fixed λ is wrong for one of them by several bits. Batch runs
/// therefore count λ from their input, as they count term frequencies and rivals; the
/// model's m (how records of one person differ) stays. Measured on the evaluation sets it
/// comes within 3% of the true share (see BENCHMARKS.md). `None` when no rule had enough
/// candidate pairs for an estimate.
pub fn estimate_prior(
    prepared: &[Prepared],
    model: &Model,
    seed: u64,
    max_pairs: u64,
) -> Option<PriorCount> {
    if prepared.len() < 2 {
        return None;
    }
    let (m0, u) = em::model_probs(model);
    let (fixed_m, _) = em::model_fixed(model);
    let hidden = crate::progress::Bar::hidden();
    let rule_data: Vec<RulePairs> = TrainingRule::ALL
        .par_iter()
        .map(|&rule| rule_pairs(prepared, rule, seed, max_pairs, &hidden))
        .collect();
    let n = prepared.len() as f64;
    let opts = TrainOptions::default();
    let pass = em_pass(&rule_data, &u, &m0, &fixed_m, &opts, n * (n - 1.0) / 2.0);
    let by_rule: Vec<(&'static str, f64)> = TrainingRule::ALL
        .iter()
        .zip(&pass.recalls)
        .filter_map(|(rule, (_, prior))| prior.map(|p| (rule.name(), p)))
        .collect();
    let estimates: Vec<f64> = by_rule.iter().map(|(_, p)| *p).collect();
    pass.prior.map(|prior| PriorCount {
        prior,
        agreed: estimates_agree(&estimates),
        by_rule,
        model_prior: model.prior,
    })
}

/// λ among the pairs *across* two sets of records, `prepared[..split]` and
/// `prepared[split..]` (what linking two files scores): the matching pairs estimated in
/// both together ([`estimate_prior`]) less those within each set, over the cross pairs.
/// A set too small or too clean for an estimate of its own counts as holding no
/// duplicates. Agreed only when every estimate made agrees and some matches are left
/// across.
pub fn estimate_cross_prior(
    prepared: &[Prepared],
    split: usize,
    model: &Model,
    seed: u64,
    max_pairs: u64,
) -> Option<PriorCount> {
    let (left, right) = prepared.split_at(split.min(prepared.len()));
    let all = estimate_prior(prepared, model, seed, max_pairs)?;
    let pairs = |n: usize| n as f64 * (n as f64 - 1.0) / 2.0;
    let within = |part: &[Prepared]| match estimate_prior(part, model, seed, max_pairs) {
        Some(p) => (p.prior * pairs(part.len()), p.agreed),
        None => (0.0, true),
    };
    let ((l, l_agreed), (r, r_agreed)) = (within(left), within(right));
    let cross_pairs = left.len() as f64 * right.len() as f64;
    let across = all.prior * pairs(prepared.len()) - l - r;
    let agreed = all.agreed && l_agreed && r_agreed && across > 0.0 && cross_pairs > 0.0;
    Some(PriorCount {
        prior: if agreed {
            (across / cross_pairs).min(0.5)
        } else {
            all.prior
        },
        agreed,
        ..all
    })
}

/// Times u is corrected for the matches among random pairs (each followed by EM again).
const U_CORRECTION_PASSES: usize = 2;

/// What one EM pass over all rules gives.
#[derive(Default)]
struct Pass {
    ems: Vec<Option<EmResult>>,
    m: Probs,
    m_from_base: Vec<&'static str>,
    /// Per comparison: share of matching pairs with the value on both sides.
    observed_in_matches: [f64; N_COMPARISONS],
    /// (recall, λ) per rule.
    recalls: Vec<(Option<f64>, Option<f64>)>,
    prior: Option<f64>,
}

/// EM for every rule with enough pairs, m pooled over the runs that train each comparison
/// (expected counts scaled to all candidates), and λ (see the module docs).
fn em_pass(
    rule_data: &[RulePairs],
    u: &Probs,
    m0: &Probs,
    fixed_m: &LevelFlags,
    opts: &TrainOptions,
    all_pairs: f64,
) -> Pass {
    let ems: Vec<Option<EmResult>> = TrainingRule::ALL
        .par_iter()
        .zip(rule_data)
        .map(|(rule, pairs)| {
            (pairs.pairs_used >= opts.min_run_pairs).then(|| {
                run_em(
                    &pairs.patterns,
                    &EmSetup {
                        u,
                        m_start: m0,
                        fixed_m,
                        active: rule.evidence_flags(),
                        p_start: 0.5,
                        max_iterations: opts.em_max_iterations,
                        tolerance: opts.em_tolerance,
                    },
                )
            })
        })
        .collect();

    let mut m = *m0;
    let mut m_from_base = Vec::new();
    for c in Comparison::ALL {
        let ci = c.index();
        let mut acc = [0.0; MAX_LEVELS];
        for ((rule, pairs), em) in TrainingRule::ALL.iter().zip(rule_data).zip(&ems) {
            if let (true, Some(em)) = (rule.trains().contains(&c), em) {
                let scale = 1.0 / pairs.sample_rate();
                for (a, x) in acc.iter_mut().zip(em.match_counts[ci]) {
                    *a += x * scale;
                }
            }
        }
        let nl = c.levels().len();
        if acc[..nl].iter().sum::<f64>() > 0.0 {
            m[ci] = em::normalise_levels(&acc[..nl], &m0[ci], &fixed_m[ci], M_FLOOR);
        } else {
            m_from_base.push(c.name());
        }
    }

    // Share of matches with c observed, from the runs not selecting on c (selection makes
    // it observed by construction).
    let mut observed_in_matches = [1.0; N_COMPARISONS];
    for c in Comparison::ALL {
        let (mut num, mut den) = (0.0, 0.0);
        for ((rule, pairs), em) in TrainingRule::ALL.iter().zip(rule_data).zip(&ems) {
            if let (false, Some(em)) = (rule.blocked().contains(&c), em) {
                let scale = 1.0 / pairs.sample_rate();
                num += em.match_counts[c.index()].iter().sum::<f64>() * scale;
                den += em.match_share * pairs.pairs_used as f64 * scale;
            }
        }
        if den > 0.0 {
            observed_in_matches[c.index()] = num / den;
        }
    }

    let mut recalls = Vec::new();
    let (mut log_sum, mut k) = (0.0, 0);
    for (r, rule) in TrainingRule::ALL.iter().enumerate() {
        let Some(em_r) = &ems[r] else {
            recalls.push((None, None));
            continue;
        };
        let (mut num, mut den) = (0.0, 0.0);
        for (s, other) in TrainingRule::ALL.iter().enumerate() {
            let Some(em_s) = &ems[s] else {
                continue;
            };
            if s == r || other.blocked().iter().any(|c| rule.blocked().contains(c)) {
                continue;
            }
            let scale = 1.0 / rule_data[s].sample_rate();
            for ((pat, count), post) in rule_data[s].patterns.iter().zip(&em_s.posteriors) {
                let w = *count as f64 * scale * post;
                den += w;
                if rule.blocked().iter().all(|c| pat[c.index()] == 0) {
                    num += w;
                }
            }
        }
        let expected = em_r.match_share * rule_data[r].candidate_pairs as f64;
        if den > 0.0 && num > 0.0 && expected > 0.0 {
            let recall = num / den;
            let prior = (expected / (recall * all_pairs)).clamp(1e-12, 0.5);
            recalls.push((Some(recall), Some(prior)));
            log_sum += prior.ln();
            k += 1;
        } else {
            recalls.push((None, None));
        }
    }
    Pass {
        ems,
        m,
        m_from_base,
        observed_in_matches,
        recalls,
        prior: (k > 0).then(|| (log_sum / k as f64).exp()),
    }
}

/// FNV-1a over the model's parameters (comparisons and prior): a stable identity that does
/// not change with the training date.
fn fingerprint(model: &Model) -> u64 {
    let text = serde_json::to_string(&(&model.comparisons, model.prior)).unwrap_or_default();
    text.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Now in UTC as `YYYY-MM-DDTHH:MM:SSZ`.
fn utc_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    utc_string(secs)
}

/// Seconds since the Unix epoch as `YYYY-MM-DDTHH:MM:SSZ` (civil-from-days, H. Hinnant).
fn utc_string(secs: u64) -> String {
    let (year, month, day) = crate::time::civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_must_agree_on_the_prior() {
        assert!(estimates_agree(&[1.3e-4, 1.31e-4, 1.306e-4]));
        assert!(estimates_agree(&[1e-5, 3.9e-5]));
        assert!(!estimates_agree(&[1e-5, 4.1e-5]));
        assert!(!estimates_agree(&[]));
        let count = |agreed| PriorCount {
            prior: 2e-5,
            by_rule: vec![("birth_date", 1e-5), ("name", 4e-5)],
            model_prior: 1e-5,
            agreed,
        };
        assert_eq!(count(true).used(), 2e-5);
        assert_eq!(count(false).used(), 1e-5);
        assert!(count(false)
            .summary()
            .contains("disagree (birth_date 1.000e-5, name 4.000e-5), so the model's 1.000e-5"));
    }

    #[test]
    fn fixed_values_parse_and_print() {
        let f: FixedValue = "given_name.exact.m=0.9".parse().unwrap();
        assert_eq!(f.comparison, Comparison::GivenName);
        assert_eq!((f.level, f.param, f.value), (0, Param::M, 0.9));
        assert_eq!(f.to_string(), "given_name.exact.m=0.9");
        let f: FixedValue = "birth_date.one_year_off.u=0.001".parse().unwrap();
        assert_eq!((f.level, f.param), (4, Param::U));
        for bad in [
            "given_name.exact.m",
            "given.exact.m=0.5",
            "given_name.nope.m=0.5",
            "given_name.exact.x=0.5",
            "given_name.exact.m=1.5",
            "given_name.exact.m=abc",
        ] {
            assert!(bad.parse::<FixedValue>().is_err(), "{bad}");
        }
    }

    #[test]
    fn utc_dates() {
        assert_eq!(utc_string(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc_string(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(utc_string(1_767_225_599), "2025-12-31T23:59:59Z");
    }
}
