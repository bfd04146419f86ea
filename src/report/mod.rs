//! The model report (`empi model report`): m, u and weight per comparison and level; the
//! model's own estimate of precision and recall at each threshold (from the posterior over
//! candidate pairs), with measured quality beside it when ground truth is given; pictures.
//!
//! # Expected quality from the posterior
//! Each candidate pair's match weight `S` gives the model's match probability
//! `p = 2^S / (1 + 2^S)`. At an upper threshold `t` the automatic links are the
//! pairs with `S ≥ t`; the model expects `Σ_links (1 − p)` of them to be false and
//! `Σ_candidates p − Σ_links p` true pairs to be missed, so its estimated pairwise precision
//! is `Σ_links p / #links` and its recall `Σ_links p / Σ_candidates p`. Pairs blocking never
//! proposes are not counted (measured recall includes them). Measured quality comes from
//! [`crate::eval`] (clusters, as everywhere).

pub mod plots;

use serde::Serialize;

use crate::batch::sweep;
use crate::batch::ScoredPair;
use crate::eval::Quality;
use crate::scoring::{
    prob_to_weight, weight_to_prob, Comparison, Model, Thresholds, TrainingSummary,
};

/// One level of one comparison.
#[derive(Debug, Clone, Serialize)]
pub struct LevelRow {
    /// Comparison name.
    pub comparison: &'static str,
    /// Level name.
    pub level: String,
    /// P(level | same person).
    pub m: f64,
    /// P(level | different people).
    pub u: f64,
    /// `log2(m / u)`.
    pub weight: f64,
    /// m fixed by the user.
    pub fixed_m: bool,
    /// u fixed by the user.
    pub fixed_u: bool,
}

/// Every level of a model, in comparison order.
pub fn level_rows(model: &Model) -> Vec<LevelRow> {
    Comparison::ALL
        .iter()
        .flat_map(|&c| {
            model.params(c).levels.iter().map(move |l| LevelRow {
                comparison: c.name(),
                level: l.name.clone(),
                m: l.m,
                u: l.u,
                weight: l.weight(),
                fixed_m: l.fixed_m,
                fixed_u: l.fixed_u,
            })
        })
        .collect()
}

/// Expected and (optionally) measured quality at one upper threshold.
#[derive(Debug, Clone, Serialize)]
pub struct ThresholdRow {
    /// Upper threshold (match weight).
    pub upper: f64,
    /// The same as a match probability.
    pub probability: f64,
    /// Automatic links (candidate pairs that link on their own at `upper`).
    pub links: u64,
    /// Links the model expects to be false.
    pub expected_false_links: f64,
    /// True pairs among the candidates the model expects not to link.
    pub expected_missed: f64,
    /// The model's estimated pairwise precision.
    pub expected_precision: f64,
    /// The model's estimated pairwise recall (over candidate pairs).
    pub expected_recall: f64,
    /// Measured against ground truth, when given.
    pub measured: Option<Quality>,
}

/// The model's expected quality at each upper threshold, and the measured quality when
/// `labels` (true person per record) are given; `who` and `twins` as in [`sweep()`].
pub fn threshold_rows(
    pairs: &[ScoredPair],
    who: &[crate::batch::Identity],
    twins: Option<&crate::batch::twins::KnownTwins>,
    uppers: &[f64],
    lower: f64,
    labels: Option<&[u32]>,
) -> Vec<ThresholdRow> {
    let total: f64 = pairs.iter().map(|p| weight_to_prob(p.weight as f64)).sum();
    let measured: Vec<Option<Quality>> = match labels {
        Some(l) => sweep(l, pairs, who, twins, uppers, lower)
            .into_iter()
            .map(Some)
            .collect(),
        None => vec![None; uppers.len()],
    };
    uppers
        .iter()
        .zip(measured)
        .map(|(&upper, measured)| {
            let (mut links, mut true_links) = (0u64, 0.0);
            for p in pairs {
                if p.links(upper) {
                    links += 1;
                    true_links += weight_to_prob(p.weight as f64);
                }
            }
            ThresholdRow {
                upper,
                probability: weight_to_prob(upper),
                links,
                expected_false_links: links as f64 - true_links,
                expected_missed: (total - true_links).max(0.0),
                expected_precision: if links == 0 {
                    1.0
                } else {
                    true_links / links as f64
                },
                expected_recall: if total > 0.0 { true_links / total } else { 1.0 },
                measured,
            }
        })
        .collect()
}

/// The upper thresholds a report shows: every 2 bits from `lower`, and the model's own.
pub fn report_uppers(t: Thresholds) -> Vec<f64> {
    let mut uppers: Vec<f64> = (0..=14).map(|i| t.lower + 2.0 * i as f64).collect();
    if !uppers.contains(&t.upper) {
        uppers.push(t.upper);
        uppers.sort_by(f64::total_cmp);
    }
    uppers
}

/// What the report saw of the input.
#[derive(Debug, Clone, Serialize)]
pub struct InputSummary {
    /// Records scored.
    pub records: u64,
    /// Candidate pairs scored.
    pub candidate_pairs: u64,
    /// Matching pairs the model expects among them (`Σ p`).
    pub expected_matches: f64,
    /// True pairs in the ground truth, when given.
    pub true_pairs: Option<u64>,
    /// The prior λ counted from the input and scored with, when it was counted (the
    /// model's own λ otherwise).
    pub prior: Option<crate::scoring::estimate::PriorCount>,
}

/// A whole model report.
#[derive(Debug, Clone, Serialize)]
pub struct ModelReport {
    /// Model id.
    pub model_id: String,
    /// Model description.
    pub description: String,
    /// λ.
    pub prior: f64,
    /// `log2(λ / (1 − λ))`.
    pub prior_weight: f64,
    /// The model's thresholds.
    pub thresholds: Thresholds,
    /// Parameters per level.
    pub levels: Vec<LevelRow>,
    /// The rival hypotheses (twins, household relatives) and how common they are.
    pub rivals: crate::scoring::Rivals,
    /// Training metadata, when the model was trained.
    pub training: Option<serde_json::Value>,
    /// Input summary, when an input was scored.
    pub input: Option<InputSummary>,
    /// Threshold table, when an input was scored.
    pub table: Vec<ThresholdRow>,
}

impl ModelReport {
    /// A report of the parameters alone.
    pub fn new(model: &Model) -> Self {
        ModelReport {
            model_id: model.id.clone(),
            description: model.description.clone(),
            prior: model.prior,
            prior_weight: prob_to_weight(model.prior),
            thresholds: model.thresholds,
            levels: level_rows(model),
            rivals: model.rivals.clone(),
            training: model.training.clone(),
            input: None,
            table: Vec::new(),
        }
    }

    /// The report as aligned text.
    pub fn to_text(&self) -> String {
        let mut s = format!(
            "model {}\n{}\nprior λ = {:.3e} (weight {:+.2})   thresholds: upper {:.1} (p {:.4}), lower {:.1} (p {:.4})\n",
            self.model_id,
            self.description,
            self.prior,
            self.prior_weight,
            self.thresholds.upper,
            weight_to_prob(self.thresholds.upper),
            self.thresholds.lower,
            weight_to_prob(self.thresholds.lower),
        );
        s.push_str(&format!(
            "rivals: {:.4} twin pairs and {:.4} relative pairs per same-person pair (prior weights {:+.2} and {:+.2} against them)\n",
            self.rivals.twin.ratio,
            self.rivals.relative.ratio,
            -self.rivals.twin.ratio.log2(),
            -self.rivals.relative.ratio.log2(),
        ));
        let sp = &self.rivals.spelling;
        s.push_str(&format!(
            "alike given names: the rarer spelling is rare (seen at most {} times) for {:.3} of same-person and {:.3} of twin and relative pairs\n",
            sp.rare_below, sp.rare_if_same_person, sp.rare_if_rival,
        ));
        if let Some(t) = self.training.as_ref().filter(|t| !t.is_null()) {
            // The same reading of the metadata as `GetStats` reports.
            let summary = TrainingSummary::from_json(t);
            s.push_str(&format!(
                "trained {} by empi {} on {} records, seed {}\n",
                summary.trained_at, summary.empi_version, summary.records, summary.seed
            ));
            if let Some(u) = t.get("u_sample") {
                s.push_str(&format!(
                    "  u: {} random pairs in {} rounds (settled: {})\n",
                    u.get("pairs").map(|v| v.to_string()).unwrap_or_default(),
                    u.get("rounds").map(|v| v.to_string()).unwrap_or_default(),
                    u.get("settled").map(|v| v.to_string()).unwrap_or_default(),
                ));
            }
            if let Some(e) = summary.twin_evidence {
                use crate::scoring::estimate::rivals::{twins_evident, TWIN_EVIDENCE};
                s.push_str(&format!(
                    "  twins: {} (likelihood-ratio statistic {e:.1}; kept at {TWIN_EVIDENCE:.2} or more)\n",
                    if twins_evident(e) { "evident" } else { "not evident" },
                ));
            }
            let dash = |v: Option<String>| v.unwrap_or_else(|| "-".into());
            for r in &summary.runs {
                s.push_str(&format!(
                    "  em {:<12} pairs {:>9} of {:>10}  patterns {:>6}  iterations {:>4}  converged {:<5}  match share {}  λ {}\n",
                    r.rule,
                    r.pairs_used,
                    r.candidate_pairs,
                    r.distinct_patterns,
                    dash(r.iterations.map(|v| v.to_string())),
                    dash(r.converged.map(|v| v.to_string())),
                    dash(r.match_share.map(|v| format!("{v:.4}"))),
                    dash(r.prior.map(|v| format!("{v:.3e}"))),
                ));
            }
        }
        s.push_str(&format!(
            "\n{:<12} {:<18} {:>10} {:>10} {:>8}\n",
            "comparison", "level", "m", "u", "weight"
        ));
        let mut last = "";
        for l in &self.levels {
            let name = if l.comparison == last {
                ""
            } else {
                l.comparison
            };
            last = l.comparison;
            let fixed = match (l.fixed_m, l.fixed_u) {
                (true, true) => "  (m, u fixed)",
                (true, false) => "  (m fixed)",
                (false, true) => "  (u fixed)",
                _ => "",
            };
            s.push_str(&format!(
                "{:<12} {:<18} {:>10.3e} {:>10.3e} {:>+8.2}{fixed}\n",
                name, l.level, l.m, l.u, l.weight
            ));
        }
        if let Some(i) = &self.input {
            s.push_str(&format!(
                "\ninput: {} records, {} candidate pairs, {:.0} expected matching pairs{}\n",
                i.records,
                i.candidate_pairs,
                i.expected_matches,
                i.true_pairs
                    .map(|t| format!(", {t} true pairs"))
                    .unwrap_or_default()
            ));
            s.push_str(&crate::scoring::estimate::counted_lines(
                i.prior.as_ref(),
                None,
                ["from the input"; 2],
                "",
            ));
            let measured = self.table.iter().any(|r| r.measured.is_some());
            s.push_str(&format!(
                "{:>7} {:>9} {:>9} {:>11} {:>11} {:>10} {:>10}",
                "upper", "p(match)", "links", "exp. false", "exp. missed", "exp. prec", "exp. rec"
            ));
            if measured {
                s.push_str(&format!(
                    " | {:>9} {:>9} {:>9} {:>11}",
                    "precision", "recall", "f1", "false-merge"
                ));
            }
            s.push('\n');
            for r in &self.table {
                s.push_str(&format!(
                    "{:>7.1} {:>9.5} {:>9} {:>11.1} {:>11.1} {:>10.5} {:>10.5}",
                    r.upper,
                    r.probability,
                    r.links,
                    r.expected_false_links,
                    r.expected_missed,
                    r.expected_precision,
                    r.expected_recall
                ));
                if let Some(q) = &r.measured {
                    s.push_str(&format!(
                        " | {:>9.5} {:>9.5} {:>9.5} {:>10.4}%",
                        q.precision,
                        q.recall,
                        q.f1,
                        100.0 * q.false_merge_rate
                    ));
                }
                if r.upper == self.thresholds.upper {
                    s.push_str(" <- model");
                }
                s.push('\n');
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(a: u32, b: u32, w: f32) -> ScoredPair {
        ScoredPair {
            a,
            b,
            weight: w,
            rival: None,
        }
    }

    #[test]
    fn expected_quality_follows_the_posterior() {
        // Weights 0 (p = 0.5) and 10 (p ≈ 0.999): at upper 5 one link, expected false
        // ≈ 0.001, expected missed 0.5.
        let pairs = [p(0, 1, 10.0), p(2, 3, 0.0)];
        let rows = threshold_rows(
            &pairs,
            &[],
            None,
            &[-1.0, 5.0, 20.0],
            -1.0,
            Some(&[0, 0, 1, 2]),
        );
        assert_eq!(rows[1].links, 1);
        assert!((rows[1].expected_false_links - (1.0 - weight_to_prob(10.0))).abs() < 1e-9);
        assert!((rows[1].expected_missed - 0.5).abs() < 1e-9);
        assert!((rows[0].expected_precision - (weight_to_prob(10.0) + 0.5) / 2.0).abs() < 1e-9);
        assert_eq!(rows[2].links, 0);
        assert_eq!(rows[2].expected_recall, 0.0);
        let measured = rows[1].measured.as_ref().unwrap();
        assert_eq!((measured.precision, measured.recall), (1.0, 1.0));
    }

    #[test]
    fn text_lists_every_level() {
        let m = Model::default_model();
        let r = ModelReport::new(&m);
        let text = r.to_text();
        assert_eq!(
            r.levels.len(),
            Comparison::ALL
                .iter()
                .map(|c| c.levels().len())
                .sum::<usize>()
        );
        assert!(text.contains("previous_name"));
        assert!(text.contains("default-2"));
    }

    #[test]
    fn text_reads_training_metadata_of_any_age() {
        // An older or hand-edited file: most facts missing, none an error.
        let mut m = Model::default_model();
        m.training = Some(serde_json::json!({
            "trained_at": "2025-01-02T03:04:05Z",
            "records": 5,
            "runs": [{"rule": "name", "pairs_used": 7}]
        }));
        let text = ModelReport::new(&m).to_text();
        assert!(
            text.contains("trained 2025-01-02T03:04:05Z by empi  on 5 records, seed 0"),
            "{text}"
        );
        let run = text.lines().find(|l| l.contains("em name")).expect(&text);
        assert!(
            run.contains("pairs         7") && run.contains("iterations    -"),
            "{run}"
        );
    }
}
