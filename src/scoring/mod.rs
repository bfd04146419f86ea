//! The Fellegi–Sunter model: comparisons, level weights, term-frequency adjustment,
//! thresholds, explanations, and the model's versioned JSON form.
//!
//! # Formulas
//! For a record pair, each comparison `c` falls into one agreement level `l` (see
//! [`Comparison::levels`]). With `m = P(l | same person)` and `u = P(l | different people)`
//! (Fellegi & Sunter, 1969, *A Theory for Record Linkage*, JASA 64:1183–1210):
//!
//! - level weight `w(c, l) = log2(m / u)`; a value missing on either side weighs 0;
//! - prior weight `log2(λ / (1 − λ))`, λ = P(two random records are the same person);
//! - match weight `S = log2(λ / (1 − λ)) + Σ_c w(c, l_c)`, match probability `2^S / (1 + 2^S)`;
//! - term frequency (Winkler, 1990, *String comparator metrics and enhanced decision rules
//!   in the Fellegi–Sunter model of record linkage*): on the exact level of names and
//!   postcodes, `w += log2(Σtf² / max(tf(value), floor))`, and the adjusted weight never
//!   drops below [`MIN_AGREEMENT_WEIGHT`] (agreeing is never evidence against).
//!   The adjustment is often written with the exact level's `u` as the reference; for
//!   random pairs `u_exact = Σtf²`, and using the table's own `Σtf²` keeps the adjustment
//!   neutral on average even where a model's `u_exact` was set for candidate pairs rather
//!   than random ones (docs/DESIGN.md, section 4).
//! - one dependence is modelled: a move changes the street and the postcode together, so a
//!   postcode that differs beside a street that differs weighs
//!   `log2((m_pc / m_st) / (u_pc / u_st))` (the chance it differs given that the street
//!   does, each ratio capped at 1) instead of `log2(m_pc / u_pc)`: one move is charged once,
//!   not twice (about 3 bits with the default model).
//!
//! The decision weight is not `S` alone: a pair is also weighed against the relatives who
//! share a household (a twin; a sibling, parent, child or spouse), whose records agree on
//! family name, address and phone as the same person's do. `W` is the posterior log-odds of
//! the same person against all three rival hypotheses ([`rivals`]); it never exceeds `S`.
//!
//! Two thresholds on `W` decide: `W ≥ upper` links, `lower ≤ W < upper` goes to review,
//! `W < lower` is a new person. Only a differing multiple-birth order forbids a link
//! outright ([`Rival::BirthOrderDiffers`]): both records say they are two children of one
//! birth.

mod bound;
mod comparisons;
mod default_model;
pub mod estimate;
pub mod rivals;
pub mod tf;
pub mod training;

pub use bound::{Sig, WeightBound};
pub use comparisons::{Comparison, MISSING, N_COMPARISONS};
use rivals::RivalTable;
pub use rivals::{combine, Basis, RivalParams, Rivals, Spelling};
pub use tf::{TermFrequencies, TfTable};
pub use training::{RunSummary, TrainingSummary};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::normalize::Placeholders;
use crate::prepare::Prepared;
use crate::record::Record;

/// Model file format version written by this build. Version 1 files (without rival
/// hypotheses) are read with the default [`Rivals`].
pub const MODEL_FORMAT_VERSION: u32 = 2;
/// Smallest weight an exact agreement keeps after its term-frequency adjustment.
pub const MIN_AGREEMENT_WEIGHT: f64 = 0.5;
/// Most levels any comparison has.
pub const MAX_LEVELS: usize = 8;

/// m and u of one agreement level.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LevelParams {
    /// Level name, as in [`Comparison::levels`].
    pub name: String,
    /// P(level | same person).
    pub m: f64,
    /// P(level | different people).
    pub u: f64,
    /// When true, estimation keeps `m` as given.
    #[serde(default, skip_serializing_if = "is_false")]
    pub fixed_m: bool,
    /// When true, estimation keeps `u` as given.
    #[serde(default, skip_serializing_if = "is_false")]
    pub fixed_u: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl LevelParams {
    /// The level's weight, `log2(m / u)`.
    pub fn weight(&self) -> f64 {
        (self.m / self.u).log2()
    }
}

/// Parameters of one comparison.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ComparisonParams {
    /// Which comparison.
    pub comparison: Comparison,
    /// Its levels in order, matching [`Comparison::levels`].
    pub levels: Vec<LevelParams>,
}

/// Decision thresholds, as match weights (log2 odds).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Thresholds {
    /// At or above: link automatically.
    pub upper: f64,
    /// At or above (and below `upper`): send to review. Below: new person.
    pub lower: f64,
}

impl Thresholds {
    /// Thresholds given as match probabilities instead of weights.
    ///
    /// # Errors
    /// [`Error::Model`] unless `0 < lower ≤ upper < 1`.
    pub fn from_probabilities(upper: f64, lower: f64) -> Result<Self> {
        if !(0.0 < lower && lower <= upper && upper < 1.0) {
            return Err(Error::Model(
                "thresholds: need 0 < lower <= upper < 1".into(),
            ));
        }
        Ok(Thresholds {
            upper: prob_to_weight(upper),
            lower: prob_to_weight(lower),
        })
    }
}

/// Match weight → match probability.
pub fn weight_to_prob(w: f64) -> f64 {
    let o = w.exp2();
    if o.is_infinite() {
        1.0
    } else {
        o / (1.0 + o)
    }
}

/// Match probability → match weight.
pub fn prob_to_weight(p: f64) -> f64 {
    (p / (1.0 - p)).log2()
}

/// A complete, serialisable model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Model {
    /// File format version ([`MODEL_FORMAT_VERSION`]).
    pub format_version: u32,
    /// Identity of this model (e.g. `default-1`, or a trained model's id).
    pub id: String,
    /// Free text: where the parameters came from.
    pub description: String,
    /// λ: probability that two random records are the same person.
    pub prior: f64,
    /// One entry per comparison.
    pub comparisons: Vec<ComparisonParams>,
    /// Decision thresholds.
    pub thresholds: Thresholds,
    /// Term-frequency tables.
    pub tf: TermFrequencies,
    /// Placeholder values that carry no identity.
    pub placeholders: Placeholders,
    /// The relatives a pair is weighed against besides a stranger.
    #[serde(default)]
    pub rivals: Rivals,
    /// Training metadata, when the model was estimated from data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub training: Option<serde_json::Value>,
}

impl Model {
    /// The shipped default model (see `default_model.rs` for the reasoning behind each value).
    pub fn default_model() -> Model {
        static DEFAULT: std::sync::OnceLock<Model> = std::sync::OnceLock::new();
        DEFAULT.get_or_init(default_model::build).clone()
    }

    /// Reads and validates a model from JSON.
    ///
    /// # Errors
    /// [`Error::Model`] naming what is wrong.
    pub fn from_json(text: &str) -> Result<Model> {
        let m: Model = serde_json::from_str(text).map_err(|e| Error::Model(e.to_string()))?;
        m.validate()?;
        Ok(m)
    }

    /// Reads a model file.
    ///
    /// # Errors
    /// [`Error::Io`] or [`Error::Model`].
    pub fn load(path: &std::path::Path) -> Result<Model> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Model::from_json(&text).map_err(|e| match e {
            // The message already says "model: "; name the file once, not the word twice.
            Error::Model(reason) => Error::Model(format!("{}: {reason}", path.display())),
            other => other,
        })
    }

    /// The typed summary of the training metadata; `None` when the model was not trained
    /// (or its metadata is `null`).
    pub fn training_summary(&self) -> Option<TrainingSummary> {
        self.training
            .as_ref()
            .filter(|t| !t.is_null())
            .map(TrainingSummary::from_json)
    }

    /// The model as pretty JSON.
    pub fn to_json(&self) -> String {
        // Serialising plain data with string keys cannot fail.
        serde_json::to_string_pretty(self).expect("model serialises")
    }

    /// Checks version, comparison and level names, probabilities and thresholds.
    ///
    /// # Errors
    /// [`Error::Model`] naming the first problem.
    pub fn validate(&self) -> Result<()> {
        if !(1..=MODEL_FORMAT_VERSION).contains(&self.format_version) {
            return Err(Error::Model(format!(
                "format_version {} not supported (this build reads 1 to {MODEL_FORMAT_VERSION})",
                self.format_version
            )));
        }
        self.rivals.validate()?;
        if !(self.prior > 0.0 && self.prior < 1.0) {
            return Err(Error::Model("prior must be between 0 and 1".into()));
        }
        if self.thresholds.lower > self.thresholds.upper {
            return Err(Error::Model("thresholds: lower is above upper".into()));
        }
        for c in Comparison::ALL {
            let p = self
                .comparisons
                .iter()
                .find(|p| p.comparison == c)
                .ok_or_else(|| Error::Model(format!("comparison {} missing", c.name())))?;
            let names: Vec<&str> = p.levels.iter().map(|l| l.name.as_str()).collect();
            if names != c.levels() {
                return Err(Error::Model(format!(
                    "comparison {}: levels must be {:?}",
                    c.name(),
                    c.levels()
                )));
            }
            for l in &p.levels {
                if !(l.m > 0.0 && l.m <= 1.0 && l.u > 0.0 && l.u <= 1.0) {
                    return Err(Error::Model(format!(
                        "comparison {} level {}: m and u must be in (0, 1]",
                        c.name(),
                        l.name
                    )));
                }
            }
        }
        if self.comparisons.len() != N_COMPARISONS {
            return Err(Error::Model("a comparison is listed twice".into()));
        }
        Ok(())
    }

    /// Parameters of one comparison.
    pub fn params(&self, c: Comparison) -> &ComparisonParams {
        // validate() guarantees every comparison is present; models are validated on load
        // and the default is built complete.
        self.comparisons
            .iter()
            .find(|p| p.comparison == c)
            .expect("validated model")
    }
}

/// What holds a pair's weight below its weight against a stranger, or forbids its link:
/// the rival hypothesis that explains the records about as well ([`rivals`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rival {
    /// A co-twin: same household and birth date, another given name (alike or not).
    Twin,
    /// A co-twin, and one side has no given name (or a placeholder such as "Baby Boy") to
    /// tell the two apart; without the twin the pair would link. The sole-candidate rule
    /// may settle it (see [`crate::linker`]).
    TwinNoGivenName,
    /// A relative sharing the household: a sibling, a parent or child (Jr/Sr), a spouse.
    Relative,
    /// Both records give a multiple-birth order and they differ: two children of one birth,
    /// whatever else agrees. Forbids the link.
    BirthOrderDiffers,
}

impl Rival {
    /// Every rival, in a fixed order (for counts and reports).
    pub const ALL: [Rival; 4] = [
        Rival::Twin,
        Rival::TwinNoGivenName,
        Rival::Relative,
        Rival::BirthOrderDiffers,
    ];

    /// The reason in words a registrar reads.
    pub fn reason(self) -> &'static str {
        match self {
            Rival::Twin => "a twin sharing the household and birth date could have these records",
            Rival::TwinNoGivenName => {
                "no given name to tell the person from a twin sharing the household and birth date"
            }
            Rival::Relative => {
                "a relative sharing the household (sibling, parent or child, spouse) could have these records"
            }
            Rival::BirthOrderDiffers => "multiple-birth orders differ: two children of one birth",
        }
    }

    /// Short name in files and metrics.
    pub fn name(self) -> &'static str {
        match self {
            Rival::Twin => "twin",
            Rival::TwinNoGivenName => "twin_no_given_name",
            Rival::Relative => "relative",
            Rival::BirthOrderDiffers => "birth_order_differs",
        }
    }
}

/// Agreement levels of a pair, one per comparison in [`Comparison::ALL`] order.
pub type Pattern = [u8; N_COMPARISONS];

/// The score of one pair.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PairScore {
    /// Decision weight `W`: log2 odds of the same person against a stranger and the
    /// household rivals at once, priors included.
    pub weight: f64,
    /// The rival that keeps the pair from linking: it holds `weight` below both the
    /// weight against a stranger and the upper threshold. Always set for a differing
    /// multiple-birth order.
    pub rival: Option<Rival>,
}

impl PairScore {
    /// Match probability.
    pub fn probability(&self) -> f64 {
        weight_to_prob(self.weight)
    }

    /// The pair is two different people as far as `lower` goes: below it, or declared
    /// twins.
    pub fn contradicts(&self, lower: f64) -> bool {
        self.weight < lower || self.rival == Some(Rival::BirthOrderDiffers)
    }
}

/// One comparison's part in an explanation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ComparisonOutcome {
    /// Comparison name.
    pub comparison: String,
    /// Level reached, or `missing`.
    pub level: String,
    /// Weight contributed (term-frequency adjustment included).
    pub weight: f64,
    /// The term-frequency part of `weight`.
    pub tf_adjustment: f64,
}

/// Why a pair scored what it did: per-comparison levels and weights, and the weight
/// against each hypothesis.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Explanation {
    /// Prior weight `log2(λ/(1-λ))`.
    pub prior_weight: f64,
    /// One entry per comparison (weights against a stranger).
    pub comparisons: Vec<ComparisonOutcome>,
    /// Decision weight `W` against every hypothesis at once.
    pub weight: f64,
    /// Match probability of `weight`.
    pub probability: f64,
    /// Weight against a stranger: the prior plus the comparisons' weights.
    pub stranger_weight: f64,
    /// Weight against a co-twin.
    pub twin_weight: f64,
    /// Weight against a relative sharing the household.
    pub relative_weight: f64,
    /// The rival that keeps the pair from linking ([`PairScore::rival`]), if any.
    pub rival: Option<Rival>,
}

/// A model compiled for fast scoring: weights in a flat table, nothing allocated per pair.
///
/// # Example
/// ```
/// use empi::record::Record;
/// use empi::scoring::{Model, Scorer};
///
/// let scorer = Scorer::new(Model::default_model()).unwrap();
/// let rec = |id: &str, given: &str| Record {
///     source: "adt".into(),
///     local_id: id.into(),
///     given_name: Some(given.into()),
///     family_name: Some("Okonkwo".into()),
///     birth_date: Some("1961-07-02".parse().unwrap()),
///     ..Default::default()
/// };
/// let (a, b) = (scorer.prepare(&rec("1", "Robert")), scorer.prepare(&rec("2", "Bob")));
/// let explained = scorer.explain(&a, &b);
/// assert_eq!(explained.comparisons[0].level, "nickname");
/// assert!(scorer.score(&a, &b).weight > 0.0);
/// ```
#[derive(Debug, Clone)]
pub struct Scorer {
    model: Model,
    weights: [[f64; MAX_LEVELS]; N_COMPARISONS],
    prior_weight: f64,
    /// The twin and relative hypotheses, compiled.
    rivals: [RivalTable; 2],
    /// Alike-spelling weights against the rivals: (rarer spelling rare, not rare).
    spelling: (f64, f64),
    /// A given name's term frequency at or below this is a rare spelling (0: never).
    rare_given: f32,
    /// Weight of a differing postcode beside a differing street ([`moved_postcode_weight`]).
    moved_postcode: f64,
    /// Weight of reading a pair's names crosswise ([`crosswise_weight`]).
    crosswise: f64,
}

/// What reading a pair's names crosswise costs against a stranger: `log2` of the share of
/// the same person's records whose names agree crosswise among those whose names agree at
/// all (`m(swapped) / (m(exact) + m(swapped))` of the given name). A stranger's names
/// agree crosswise as often as directly, so only the same person pays for the swap; the
/// twin and the relative pay as the same person does, and it cancels against them.
fn crosswise_weight(model: &Model) -> f64 {
    let p = model.params(Comparison::GivenName);
    let m = |level: u8| p.levels[level as usize].m;
    let (exact, swapped) = (m(0), m(comparisons::GIVEN_SWAPPED));
    (swapped / (exact + swapped)).log2()
}

/// The weight of a postcode that differs beside a street that differs too: a move changes
/// both at once, so counting the two disagreements as independent would charge one move
/// twice. For the same person, a differing postcode almost always comes with a differing
/// street (a move; a postcode typo alone is rarer), so
/// `P(postcode else | street else, same) ≈ m_pc(else) / m_st(else)`, and for strangers
/// likewise `u_pc(else) / u_st(else)` (both near 1); each capped at 1.
fn moved_postcode_weight(model: &Model) -> f64 {
    let last = |c: Comparison| {
        let p = model.params(c);
        let l = p.levels.last().expect("every comparison has levels");
        (l.m, l.u)
    };
    let (m_st, u_st) = last(Comparison::Street);
    let (m_pc, u_pc) = last(Comparison::Postcode);
    let m = (m_pc / m_st).min(1.0);
    let u = (u_pc / u_st).min(1.0);
    (m / u).log2()
}

/// Prefix of a name comparison's level in an [`Explanation`] when the pair's names were
/// read crosswise (`crosswise_jw_0.92`, `crosswise_exact`: names written in each other's
/// fields with a slip in one of them, see `docs/DESIGN.md`).
pub const CROSSWISE_PREFIX: &str = "crosswise_";

/// The given-name levels where a twin's alike name and a typo meet (Jaro–Winkler,
/// phonetic): the spelling evidence applies there.
pub(crate) const ALIKE_GIVEN_LEVELS: [u8; 3] = [3, 4, 5];

/// The term frequency at or below which a given name in `table` is a rare spelling:
/// [`Spelling::rare_below`] times the frequency of a value the table has not seen.
pub fn rare_spelling_cutoff(table: &TfTable, spelling: &Spelling) -> f32 {
    (table.unseen as f64 * spelling.rare_below) as f32
}

/// Index of the twin in [`Scorer::rivals`].
const TWIN: usize = 0;
/// Index of the relative in [`Scorer::rivals`].
const RELATIVE: usize = 1;

/// Weights of two different generational suffixes (Jr vs Sr, both recorded) against a
/// stranger and against a relative: a registrar writes the wrong suffix for 2% of the
/// same person's records, half of strangers who both carry one carry different ones, and
/// nine in ten household namesakes are told apart by theirs. Twins never differ by one.
const SUFFIX_DIFFERS: (f64, f64) = (-4.643_856_189_774_724, -5.491_853_096_329_675);

/// The weights of a pair against each hypothesis before they are combined.
#[derive(Debug, Clone, Copy)]
struct Weights {
    stranger: f64,
    twin: f64,
    relative: f64,
}

impl Scorer {
    /// Compiles a model.
    ///
    /// # Errors
    /// [`Error::Model`] if the model does not validate.
    pub fn new(model: Model) -> Result<Scorer> {
        model.validate()?;
        let mut weights = [[0.0; MAX_LEVELS]; N_COMPARISONS];
        let mut m = [[0.0; MAX_LEVELS]; N_COMPARISONS];
        for c in Comparison::ALL {
            let p = model.params(c);
            for (i, l) in p.levels.iter().enumerate() {
                weights[c.index()][i] = l.weight();
                m[c.index()][i] = l.m;
            }
        }
        let prior_weight = prob_to_weight(model.prior);
        let rivals = [
            RivalTable::new(&model.rivals.twin, &m),
            RivalTable::new(&model.rivals.relative, &m),
        ];
        let rare_given = model
            .tf
            .given_name
            .as_ref()
            .map_or(0.0, |t| rare_spelling_cutoff(t, &model.rivals.spelling));
        Ok(Scorer {
            spelling: rivals::spelling_weights(&model.rivals.spelling),
            moved_postcode: moved_postcode_weight(&model),
            crosswise: crosswise_weight(&model),
            model,
            weights,
            prior_weight,
            rivals,
            rare_given,
        })
    }

    /// The model behind this scorer.
    pub fn model(&self) -> &Model {
        &self.model
    }

    /// Decision thresholds.
    pub fn thresholds(&self) -> Thresholds {
        self.model.thresholds
    }

    /// Prepares a record (normalise, derive keys, look up term frequencies).
    pub fn prepare(&self, r: &Record) -> Prepared {
        let mut p = Prepared::new(r, &self.model.placeholders);
        self.fill_tf(&mut p);
        p
    }

    /// Fills the term frequencies of an already prepared record from this model's tables.
    pub fn fill_tf(&self, p: &mut Prepared) {
        let tf = &self.model.tf;
        if let (Some(t), Some(g)) = (&tf.given_name, p.given.as_mut()) {
            g.tf = t.get(&g.text);
        }
        if let (Some(t), Some(f)) = (&tf.family_name, p.family.as_mut()) {
            f.tf = t.get(&f.text);
        }
        if let (Some(t), Some(pc)) = (&tf.postcode, p.postcode.as_ref()) {
            p.postcode_tf = t.get(pc);
        }
    }

    /// The agreement pattern of a pair.
    #[inline]
    pub fn pattern(&self, a: &Prepared, b: &Prepared) -> Pattern {
        let mut p = [MISSING; N_COMPARISONS];
        for c in Comparison::ALL {
            p[c.index()] = c.level(a, b);
        }
        p
    }

    fn tf_table(&self, c: Comparison) -> Option<&TfTable> {
        match c {
            Comparison::GivenName => self.model.tf.given_name.as_ref(),
            Comparison::FamilyName => self.model.tf.family_name.as_ref(),
            Comparison::Postcode => self.model.tf.postcode.as_ref(),
            _ => None,
        }
    }

    fn tf_of(c: Comparison, a: &Prepared) -> f32 {
        match c {
            Comparison::GivenName => a.given.as_ref().map_or(0.0, |n| n.tf),
            Comparison::FamilyName => a.family.as_ref().map_or(0.0, |n| n.tf),
            Comparison::Postcode => a.postcode_tf,
            _ => 0.0,
        }
    }

    /// Weight of the exact level of `c` for a value of relative frequency `tf` (0: not
    /// looked up): the term-frequency rule, used by scoring and by the weight bound alike.
    #[inline]
    fn exact_weight(&self, c: Comparison, tf: f32) -> f64 {
        let base = self.weights[c.index()][0];
        match self.tf_table(c) {
            Some(table) if tf > 0.0 => {
                let tf = (tf.max(self.model.tf.floor)) as f64;
                (base + (table.collision() / tf).log2()).max(MIN_AGREEMENT_WEIGHT)
            }
            _ => base,
        }
    }

    /// Weight of one comparison at a level, and its term-frequency part.
    #[inline]
    fn level_weight(&self, c: Comparison, level: u8, a: &Prepared) -> (f64, f64) {
        self.weight_at(c, level, Self::tf_of(c, a))
    }

    /// Weight of one comparison at a level for a value of relative frequency `tf` (used at
    /// the exact level only), and its term-frequency part.
    #[inline]
    fn weight_at(&self, c: Comparison, level: u8, tf: f32) -> (f64, f64) {
        if level == MISSING {
            return (0.0, 0.0);
        }
        let base = self.weights[c.index()][level as usize];
        if level == 0 && c.has_tf() {
            let adjusted = self.exact_weight(c, tf);
            return (adjusted, adjusted - base);
        }
        (base, 0.0)
    }

    /// Weight of comparison `c` at `level` against `rival`, given its weight `w` against a
    /// stranger.
    #[inline]
    fn rival_weight(&self, rival: usize, c: Comparison, level: u8, w: f64) -> f64 {
        if level == MISSING {
            return 0.0;
        }
        let t = &self.rivals[rival];
        match t.kind[c.index()] {
            rivals::Compiled::Shared => 0.0,
            rivals::Compiled::AsStranger => w,
            rivals::Compiled::Own => t.weights[c.index()][level as usize],
        }
    }

    /// The weights against each hypothesis, from the pattern and the per-comparison weights
    /// against a stranger; `crosswise` is what [`Scorer::read_crosswise`] returned.
    #[inline]
    fn weights_of(
        &self,
        a: &Prepared,
        b: &Prepared,
        pattern: &Pattern,
        w: &[f64],
        known_twin: bool,
        crosswise: Option<f32>,
    ) -> Weights {
        let mut out = Weights {
            stranger: self.prior_weight,
            twin: if known_twin
                || a.multiple_birth_order.is_some() != b.multiple_birth_order.is_some()
            {
                rivals::KNOWN_TWIN_PRIOR
            } else {
                self.rivals[TWIN].prior
            },
            relative: self.rivals[RELATIVE].prior,
        };
        for c in Comparison::ALL {
            let (level, wc) = (pattern[c.index()], w[c.index()]);
            out.stranger += wc;
            out.twin += self.rival_weight(TWIN, c, level, wc);
            out.relative += self.rival_weight(RELATIVE, c, level, wc);
        }
        let given = pattern[Comparison::GivenName.index()];
        if self.rare_given > 0.0 && ALIKE_GIVEN_LEVELS.contains(&given) {
            let tf = |p: &Prepared| p.given.as_ref().map_or(0.0, |g| g.tf);
            let rarer = crosswise.unwrap_or_else(|| tf(a).min(tf(b)));
            if rarer > 0.0 {
                let s = if rarer <= self.rare_given {
                    self.spelling.0
                } else {
                    self.spelling.1
                };
                out.twin += s;
                out.relative += s;
            }
        }
        if let (Some(x), Some(y)) = (a.suffix, b.suffix) {
            if x != y {
                out.stranger += SUFFIX_DIFFERS.0;
                out.relative += SUFFIX_DIFFERS.1;
            }
        }
        out
    }

    /// The decision weight and the rival that holds it down.
    fn decide_weight(&self, a: &Prepared, b: &Prepared, w: &Weights) -> PairScore {
        let weight = combine(&[w.stranger, w.twin, w.relative]);
        let rival = if Self::birth_orders_differ(a, b) {
            Some(Rival::BirthOrderDiffers)
        } else if w.twin.min(w.relative) >= w.stranger || weight >= self.model.thresholds.upper {
            None
        } else if w.relative < w.twin {
            Some(Rival::Relative)
        } else if (a.given.is_none() || b.given.is_none())
            && combine(&[w.stranger, w.relative]) >= self.model.thresholds.upper
        {
            Some(Rival::TwinNoGivenName)
        } else {
            Some(Rival::Twin)
        };
        PairScore { weight, rival }
    }

    /// Reads the pair's names crosswise where they agree so and not directly
    /// ([`comparisons::crosswise`]): the name equal crosswise `exact` with its term
    /// frequency, the other at its alike level, and the family name's weight less
    /// [`crosswise_weight`] (which the household rivals, sharing the family name, do not
    /// see). When it applied, the given-name frequency of the rarer alike given name (0 when
    /// the given name reads exact, or without a table), for the spelling evidence.
    #[inline]
    fn read_crosswise(
        &self,
        a: &Prepared,
        b: &Prepared,
        pattern: &mut Pattern,
        w: &mut [f64; N_COMPARISONS],
    ) -> Option<f32> {
        let (g, f) = (Comparison::GivenName, Comparison::FamilyName);
        let differ = |c: Comparison| pattern[c.index()] as usize == c.levels().len() - 1;
        if !(differ(g) && differ(f)) {
            return None;
        }
        let c = comparisons::crosswise(a, b)?;
        pattern[g.index()] = c.given;
        pattern[f.index()] = c.family;
        w[g.index()] = self.weight_at(g, c.given, c.equal_tf).0;
        w[f.index()] = self.weight_at(f, c.family, c.equal_tf).0 + self.crosswise;
        // The rarer alike given name's frequency as a given name, for the spelling
        // evidence: the one written in a family field is looked up in the given-name table.
        let (in_family, in_given) = c.alike;
        Some(match (&self.model.tf.given_name, c.given) {
            (Some(table), level) if level != 0 => table.get(&in_family.text).min(in_given.tf),
            _ => 0.0,
        })
    }

    /// A differing postcode beside a differing street weighs as one move
    /// ([`moved_postcode_weight`]); true when it applied.
    #[inline]
    fn count_a_move_once(&self, pattern: &Pattern, w: &mut [f64; N_COMPARISONS]) -> bool {
        let (st, pc) = (Comparison::Street, Comparison::Postcode);
        let moved = pattern[st.index()] as usize == st.levels().len() - 1
            && pattern[pc.index()] as usize == pc.levels().len() - 1;
        if moved {
            w[pc.index()] = self.moved_postcode;
        }
        moved
    }

    /// The weight of a differing postcode beside a differing street (an upper bound on the
    /// postcode's weight at `else` for [`WeightBound`]).
    pub(crate) fn moved_postcode(&self) -> f64 {
        self.moved_postcode
    }

    /// Both records give a multiple-birth order and they differ: the pair's rival is
    /// [`Rival::BirthOrderDiffers`], whatever else it scores.
    pub fn birth_orders_differ(a: &Prepared, b: &Prepared) -> bool {
        matches!((a.multiple_birth_order, b.multiple_birth_order), (Some(x), Some(y)) if x != y)
    }

    /// Scores a pair (the hot path: no allocation).
    #[inline]
    pub fn score(&self, a: &Prepared, b: &Prepared) -> PairScore {
        self.score_with(a, b, false)
    }

    /// Scores a pair, with `known_twin` saying that the person of one record is known to
    /// be one child of a multiple birth (another of its records gives a birth order): the
    /// twin is then as likely a priori as the same person, as when one record of the pair
    /// gives the order itself ([`rivals`]).
    #[inline]
    pub fn score_with(&self, a: &Prepared, b: &Prepared, known_twin: bool) -> PairScore {
        let mut pattern = self.pattern(a, b);
        let mut w = [0.0; N_COMPARISONS];
        for c in Comparison::ALL {
            w[c.index()] = self.level_weight(c, pattern[c.index()], a).0;
        }
        let crosswise = self.read_crosswise(a, b, &mut pattern, &mut w);
        self.count_a_move_once(&pattern, &mut w);
        let weights = self.weights_of(a, b, &pattern, &w, known_twin, crosswise);
        self.decide_weight(a, b, &weights)
    }

    /// A cheap upper bound on [`Scorer::score`]'s weight for pairs of `prepared` (term
    /// frequencies filled), built from this scorer's own level and term-frequency rules, so
    /// pair loops can skip pairs that cannot reach a threshold. It bounds the weight
    /// against a stranger, which the decision weight never exceeds. It checks itself
    /// against [`Scorer::explain`] and [`Scorer::score`] on sample records and on the
    /// `sample` pairs (indexes into `prepared`); `None` means it disagreed: score every
    /// pair in full.
    pub fn weight_bound(
        &self,
        prepared: &[Prepared],
        sample: &[(u32, u32)],
    ) -> Option<WeightBound> {
        WeightBound::new(self, prepared, sample)
    }

    /// Scores a pair and says why: level and weight of every comparison, and the weight
    /// against each hypothesis.
    pub fn explain(&self, a: &Prepared, b: &Prepared) -> Explanation {
        let mut pattern = self.pattern(a, b);
        let mut w = [0.0; N_COMPARISONS];
        let mut comparisons: Vec<ComparisonOutcome> = Comparison::ALL
            .iter()
            .map(|&c| {
                let level = pattern[c.index()];
                let (weight, tf_adjustment) = self.level_weight(c, level, a);
                w[c.index()] = weight;
                ComparisonOutcome {
                    comparison: c.name().to_string(),
                    level: if level == MISSING {
                        "missing".to_string()
                    } else {
                        c.levels()[level as usize].to_string()
                    },
                    weight,
                    tf_adjustment,
                }
            })
            .collect();
        let crosswise = self.read_crosswise(a, b, &mut pattern, &mut w);
        if crosswise.is_some() {
            for c in [Comparison::GivenName, Comparison::FamilyName] {
                let level = pattern[c.index()] as usize;
                let outcome = &mut comparisons[c.index()];
                outcome.level = format!("{CROSSWISE_PREFIX}{}", c.levels()[level]);
                outcome.weight = w[c.index()];
                let cost = if c == Comparison::FamilyName {
                    self.crosswise
                } else {
                    0.0
                };
                outcome.tf_adjustment = w[c.index()] - cost - self.weights[c.index()][level];
            }
        }
        if self.count_a_move_once(&pattern, &mut w) {
            let pc = Comparison::Postcode.index();
            comparisons[pc].weight = w[pc];
        }
        let weights = self.weights_of(a, b, &pattern, &w, false, crosswise);
        let score = self.decide_weight(a, b, &weights);
        Explanation {
            prior_weight: self.prior_weight,
            comparisons,
            weight: score.weight,
            probability: weight_to_prob(score.weight),
            stranger_weight: weights.stranger,
            twin_weight: weights.twin,
            relative_weight: weights.relative,
            rival: score.rival,
        }
    }
}

#[cfg(test)]
mod tests;
