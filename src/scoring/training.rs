//! The typed summary of a model's training metadata (the `training` object `empi train`
//! writes, see [`super::estimate::TrainingInfo`]), read defensively: a model file written
//! by another version of empi may lack any field, and a missing one reads as its default.

use serde_json::Value;

/// What tools show of how a model was trained: by what, when, on how many records, and
/// how each EM run went. Read from the model's JSON metadata, never failing.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TrainingSummary {
    /// Version of empi that trained the model.
    pub empi_version: String,
    /// When, in UTC (`YYYY-MM-DDTHH:MM:SSZ`).
    pub trained_at: String,
    /// Records trained on.
    pub records: u64,
    /// Seed of the samples.
    pub seed: u64,
    /// Where the records came from (a file name, never record data).
    pub input: String,
    /// The estimated λ.
    pub prior: f64,
    /// The EM runs, in the order they were made.
    pub runs: Vec<RunSummary>,
    /// The rival fit's likelihood-ratio statistic of the twin class, when it was made
    /// ([`super::estimate::rivals::RivalFit::twin_evidence`]).
    pub twin_evidence: Option<f64>,
    /// The whole metadata as compact JSON, for what is not typed here.
    pub json: String,
}

/// One EM run of a [`TrainingSummary`]. The EM facts are `None` for a skipped run (or a
/// file that lacks them).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunSummary {
    /// The training rule's name (`birth_date`, `name`, `national_id`).
    pub rule: String,
    /// Candidate pairs the rule selects.
    pub candidate_pairs: u64,
    /// Pairs compared (after sampling).
    pub pairs_used: u64,
    /// Distinct agreement patterns among them.
    pub distinct_patterns: u64,
    /// True when too few pairs: the run trained nothing.
    pub skipped: bool,
    /// EM iterations run.
    pub iterations: Option<u32>,
    /// Whether EM converged before its iteration cap.
    pub converged: Option<bool>,
    /// Estimated share of matches among the pairs.
    pub match_share: Option<f64>,
    /// The run's estimate of λ.
    pub prior: Option<f64>,
}

impl TrainingSummary {
    /// Reads the summary out of training metadata; anything missing or of another type
    /// takes its default.
    pub fn from_json(v: &Value) -> TrainingSummary {
        TrainingSummary {
            empi_version: text(v, "empi_version"),
            trained_at: text(v, "trained_at"),
            records: count(v, "records"),
            seed: count(v, "seed"),
            input: text(v, "input"),
            prior: v.get("prior").and_then(Value::as_f64).unwrap_or_default(),
            runs: v
                .get("runs")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(RunSummary::from_json)
                .collect(),
            twin_evidence: v
                .get("rivals")
                .and_then(|r| r.get("twin_evidence"))
                .and_then(Value::as_f64),
            json: v.to_string(),
        }
    }

    /// Pairs compared, summed over the runs.
    pub fn pairs_used(&self) -> u64 {
        self.runs.iter().map(|r| r.pairs_used).sum()
    }
}

impl RunSummary {
    /// Reads one element of the metadata's `runs`; anything missing takes its default.
    pub fn from_json(v: &Value) -> RunSummary {
        let em = v.get("em").filter(|e| e.is_object());
        let em_field = |k: &str| em.and_then(|e| e.get(k));
        RunSummary {
            rule: text(v, "rule"),
            candidate_pairs: count(v, "candidate_pairs"),
            pairs_used: count(v, "pairs_used"),
            distinct_patterns: count(v, "distinct_patterns"),
            // An older file without the flag: a run without EM facts trained nothing.
            skipped: v
                .get("skipped")
                .and_then(Value::as_bool)
                .unwrap_or(em.is_none()),
            iterations: em_field("iterations")
                .and_then(Value::as_u64)
                .map(|n| u32::try_from(n).unwrap_or(u32::MAX)),
            converged: em_field("converged").and_then(Value::as_bool),
            match_share: em_field("match_share").and_then(Value::as_f64),
            prior: v.get("prior").and_then(Value::as_f64),
        }
    }
}

fn text(v: &Value, k: &str) -> String {
    v.get(k)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

fn count(v: &Value, k: &str) -> u64 {
    v.get(k).and_then(Value::as_u64).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_the_metadata_train_writes() {
        let v = json!({
            "empi_version": "0.1.0",
            "trained_at": "2025-01-02T03:04:05Z",
            "seed": 7,
            "input": "records.csv",
            "records": 9932,
            "prior": 1.5e-4,
            "runs": [
                {"rule": "birth_date", "candidate_pairs": 900, "pairs_used": 800,
                 "distinct_patterns": 40, "skipped": false, "prior": 1.4e-4,
                 "em": {"iterations": 31, "converged": true, "match_share": 0.25}},
                {"rule": "national_id", "candidate_pairs": 12, "pairs_used": 12,
                 "distinct_patterns": 3, "skipped": true, "em": null}
            ],
            "u_sample": {"pairs": 100}
        });
        let s = TrainingSummary::from_json(&v);
        assert_eq!(s.empi_version, "0.1.0");
        assert_eq!(s.trained_at, "2025-01-02T03:04:05Z");
        assert_eq!((s.records, s.seed, s.prior), (9932, 7, 1.5e-4));
        assert_eq!(s.input, "records.csv");
        assert_eq!(s.pairs_used(), 812);
        assert_eq!(
            s.runs[0],
            RunSummary {
                rule: "birth_date".into(),
                candidate_pairs: 900,
                pairs_used: 800,
                distinct_patterns: 40,
                skipped: false,
                iterations: Some(31),
                converged: Some(true),
                match_share: Some(0.25),
                prior: Some(1.4e-4),
            }
        );
        assert!(s.runs[1].skipped);
        assert_eq!((s.runs[1].iterations, s.runs[1].converged), (None, None));
        // The untyped rest travels as JSON.
        let back: Value = serde_json::from_str(&s.json).unwrap();
        assert_eq!(back["u_sample"]["pairs"], 100);
    }

    #[test]
    fn missing_or_mistyped_fields_take_defaults() {
        let s = TrainingSummary::from_json(&json!({"records": "many", "runs": [{}, 3]}));
        assert_eq!(s.records, 0);
        assert_eq!(s.empi_version, "");
        assert_eq!(s.runs.len(), 2);
        // No EM facts and no flag: the run trained nothing.
        assert!(s.runs.iter().all(|r| r.skipped && r.iterations.is_none()));
        let s = TrainingSummary::from_json(&json!("not an object"));
        assert_eq!((s.records, s.runs.len()), (0, 0));
        assert_eq!(s.json, "\"not an object\"");
    }
}
