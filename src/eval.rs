//! Quality measures against ground truth, computed the same way everywhere: pairwise
//! precision / recall / F1 of the automatic links (as clusters), false-merge rate, split
//! rate, review rate, review precision and blocking recall, over a range of thresholds;
//! with the generator's `relations.csv`, the pairs of relatives (twins, siblings, parent
//! and child, spouses) that the links merged.

use std::collections::BTreeMap;
use std::path::Path;

use ahash::AHashMap;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::linker::{pair_decision, Decision, ScoredPair};
use crate::record::Record;
use crate::scoring::{weight_to_prob, Thresholds};

/// Quality of one clustering against the truth.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Quality {
    /// Upper threshold (match weight) used.
    pub upper: f64,
    /// Lower threshold used.
    pub lower: f64,
    /// Pairwise precision of the clusters.
    pub precision: f64,
    /// Pairwise recall of the clusters.
    pub recall: f64,
    /// Pairwise F1.
    pub f1: f64,
    /// Fraction of clusters holding records of more than one true person.
    pub false_merge_rate: f64,
    /// Fraction of true persons spread over more than one cluster.
    pub split_rate: f64,
    /// Fraction of records whose submission would have made a review task.
    pub review_rate: f64,
    /// Of the pairs sent to review, the share that are the same person: high means the
    /// queue holds matches a rule could not see past (registrar time spent on the obvious),
    /// low that it holds strangers. `None` when nothing went to review.
    pub review_precision: Option<f64>,
    /// Record pairs of related persons (by relation) that share a cluster: false merges of
    /// relatives. Empty without a relations file.
    pub relatives_linked: BTreeMap<String, u64>,
    /// Number of clusters.
    pub clusters: u64,
}

/// How persons of the truth are related (`relations.csv` of `empi synth`:
/// `person_a,person_b,relation`), keyed by the labels of [`read_truth_and_persons`].
#[derive(Debug, Clone, Default)]
pub struct Relations {
    by_pair: AHashMap<(u32, u32), Box<str>>,
}

impl Relations {
    /// Reads a relations file; pairs naming a person the truth does not have are skipped.
    ///
    /// # Errors
    /// [`Error::Io`] or [`Error::InvalidInput`] naming the missing column.
    pub fn read(path: &Path, persons: &AHashMap<String, u32>) -> Result<Relations> {
        let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        let mut rdr = csv::Reader::from_reader(std::io::BufReader::new(file));
        let headers = rdr
            .headers()
            .map_err(|e| Error::invalid("relations", e.to_string()))?
            .clone();
        let col = |name: &str| {
            headers
                .iter()
                .position(|h| h == name)
                .ok_or_else(|| Error::invalid("relations", format!("column '{name}' missing")))
        };
        let (a, b, r) = (col("person_a")?, col("person_b")?, col("relation")?);
        let mut by_pair = AHashMap::new();
        for row in rdr.records() {
            let row = row.map_err(|e| Error::invalid("relations", e.to_string()))?;
            if let (Some(&x), Some(&y)) = (persons.get(&row[a]), persons.get(&row[b])) {
                by_pair.insert((x.min(y), x.max(y)), row[r].into());
            }
        }
        Ok(Relations { by_pair })
    }

    /// How the persons labelled `a` and `b` are related, if they are.
    pub fn relation(&self, a: u32, b: u32) -> Option<&str> {
        self.by_pair.get(&(a.min(b), a.max(b))).map(|r| &**r)
    }

    /// Number of related pairs of persons.
    pub fn len(&self) -> usize {
        self.by_pair.len()
    }

    /// Whether no pair is related.
    pub fn is_empty(&self) -> bool {
        self.by_pair.is_empty()
    }
}

/// Reads a ground-truth file `source,local_id,person_id` into a label per record
/// (records missing from the truth get a label of their own).
///
/// # Errors
/// [`Error::Io`] or [`Error::InvalidInput`] naming the missing column.
pub fn read_truth(path: &Path, records: &[Record]) -> Result<Vec<u32>> {
    Ok(read_truth_and_persons(path, records)?.0)
}

/// [`read_truth`], with the label of each person id the records have (for [`Relations`]).
///
/// # Errors
/// As [`read_truth`].
pub fn read_truth_and_persons(
    path: &Path,
    records: &[Record],
) -> Result<(Vec<u32>, AHashMap<String, u32>)> {
    truth_for_keys(path, records.len(), |i| {
        (records[i].source.as_str(), records[i].local_id.as_str())
    })
}

/// Reads a ground-truth file `source,local_id,person_id` into a label per record, for
/// `n` records whose keys `key(i)` gives: equal labels mean the same person; a record the
/// truth does not list gets a label of its own. Streams the file (rows for other records
/// are skipped), so it serves million-record batch runs too.
///
/// # Errors
/// [`Error::Io`] or [`Error::InvalidInput`] naming the missing column.
pub fn labels_for_keys<'a>(
    path: &Path,
    n: usize,
    key: impl Fn(usize) -> (&'a str, &'a str),
) -> Result<Vec<u32>> {
    Ok(truth_for_keys(path, n, key)?.0)
}

/// [`labels_for_keys`] with the label of each person id met.
fn truth_for_keys<'a>(
    path: &Path,
    n: usize,
    key: impl Fn(usize) -> (&'a str, &'a str),
) -> Result<(Vec<u32>, AHashMap<String, u32>)> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut rdr = csv::Reader::from_reader(std::io::BufReader::with_capacity(1 << 20, file));
    let headers = rdr
        .headers()
        .map_err(|e| Error::invalid("truth", e.to_string()))?
        .clone();
    let col = |name: &str| {
        headers
            .iter()
            .position(|h| h == name)
            .ok_or_else(|| Error::invalid("truth", format!("column '{name}' missing")))
    };
    let (s, l, p) = (col("source")?, col("local_id")?, col("person_id")?);
    let mut index: AHashMap<(&str, &str), usize> = AHashMap::with_capacity(n);
    for i in 0..n {
        index.insert(key(i), i);
    }
    let mut labels = vec![u32::MAX; n];
    let mut persons: AHashMap<String, u32> = AHashMap::new();
    let mut row = csv::StringRecord::new();
    while rdr
        .read_record(&mut row)
        .map_err(|e| Error::invalid("truth", e.to_string()))?
    {
        if let Some(&i) = index.get(&(&row[s], &row[l])) {
            let next = persons.len() as u32;
            labels[i] = *persons.entry(row[p].to_string()).or_insert(next);
        }
    }
    let unlabelled = labels.iter_mut().filter(|l| **l == u32::MAX);
    for (next, l) in (persons.len() as u32..).zip(unlabelled) {
        *l = next;
    }
    Ok((labels, persons))
}

fn choose2(n: u64) -> u64 {
    n * n.saturating_sub(1) / 2
}

/// Number of true matching pairs implied by the labels.
pub fn true_pairs(labels: &[u32]) -> u64 {
    let mut count: AHashMap<u32, u64> = AHashMap::new();
    for &l in labels {
        *count.entry(l).or_default() += 1;
    }
    count.values().map(|&n| choose2(n)).sum()
}

/// Measures one clustering.
pub fn quality(
    ids: &[u32],
    labels: &[u32],
    pairs: &[ScoredPair],
    upper: f64,
    lower: f64,
) -> Quality {
    let n = ids.len();
    let mut cell: AHashMap<(u32, u32), u64> = AHashMap::new();
    let mut cluster_n: AHashMap<u32, u64> = AHashMap::new();
    let mut label_n: AHashMap<u32, u64> = AHashMap::new();
    for (&c, &l) in ids.iter().zip(labels) {
        *cell.entry((c, l)).or_default() += 1;
        *cluster_n.entry(c).or_default() += 1;
        *label_n.entry(l).or_default() += 1;
    }
    let tp: u64 = cell.values().map(|&k| choose2(k)).sum();
    let predicted: u64 = cluster_n.values().map(|&k| choose2(k)).sum();
    let actual: u64 = label_n.values().map(|&k| choose2(k)).sum();
    let mut labels_per_cluster: AHashMap<u32, u32> = AHashMap::new();
    let mut clusters_per_label: AHashMap<u32, u32> = AHashMap::new();
    for &(c, l) in cell.keys() {
        *labels_per_cluster.entry(c).or_default() += 1;
        *clusters_per_label.entry(l).or_default() += 1;
    }
    let merged = labels_per_cluster.values().filter(|&&k| k > 1).count();
    let split = clusters_per_label.values().filter(|&&k| k > 1).count();
    // A submission makes a review task when some earlier record outside its cluster calls
    // for review (see `pair_decision`): the later record of such a pair.
    let mut review = vec![false; n];
    let (mut reviewed, mut reviewed_same) = (0u64, 0u64);
    let t = Thresholds { upper, lower };
    for p in pairs {
        if pair_decision(&p.score(), t) == Decision::Review
            && ids[p.a as usize] != ids[p.b as usize]
        {
            review[p.a.max(p.b) as usize] = true;
            reviewed += 1;
            reviewed_same += u64::from(labels[p.a as usize] == labels[p.b as usize]);
        }
    }
    let precision = if predicted == 0 {
        1.0
    } else {
        tp as f64 / predicted as f64
    };
    let recall = if actual == 0 {
        1.0
    } else {
        tp as f64 / actual as f64
    };
    let f1 = if precision + recall == 0.0 {
        0.0
    } else {
        2.0 * precision * recall / (precision + recall)
    };
    Quality {
        upper,
        lower,
        precision,
        recall,
        f1,
        false_merge_rate: merged as f64 / cluster_n.len().max(1) as f64,
        split_rate: split as f64 / label_n.len().max(1) as f64,
        review_rate: review.iter().filter(|&&r| r).count() as f64 / n.max(1) as f64,
        review_precision: (reviewed > 0).then(|| reviewed_same as f64 / reviewed as f64),
        relatives_linked: BTreeMap::new(),
        clusters: cluster_n.len() as u64,
    }
}

/// Record pairs of related persons sharing a cluster, by relation.
pub fn relatives_linked(
    ids: &[u32],
    labels: &[u32],
    relations: &Relations,
) -> BTreeMap<String, u64> {
    let mut members: AHashMap<u32, AHashMap<u32, u64>> = AHashMap::new();
    for (&c, &l) in ids.iter().zip(labels) {
        *members.entry(c).or_default().entry(l).or_default() += 1;
    }
    let mut out = BTreeMap::new();
    for persons in members.values().filter(|m| m.len() > 1) {
        let persons: Vec<(u32, u64)> = persons.iter().map(|(&l, &k)| (l, k)).collect();
        for (i, &(a, ka)) in persons.iter().enumerate() {
            for &(b, kb) in &persons[i + 1..] {
                if let Some(r) = relations.relation(a, b) {
                    *out.entry(r.to_string()).or_default() += ka * kb;
                }
            }
        }
    }
    out
}

/// A whole evaluation: blocking recall plus the threshold table.
#[derive(Debug, Clone, Serialize)]
pub struct EvalReport {
    /// Records evaluated.
    pub records: u64,
    /// True matching pairs in the truth.
    pub true_pairs: u64,
    /// Fraction of true pairs that blocking made candidates.
    pub blocking_recall: f64,
    /// Candidate pairs scored.
    pub pairs_compared: u64,
    /// Block lookups skipped as oversized.
    pub capped_block_lookups: u64,
    /// The model's own thresholds.
    pub model_upper: f64,
    /// The model's lower threshold.
    pub model_lower: f64,
    /// One row per upper threshold.
    pub table: Vec<Quality>,
    /// Related pairs of persons known (with a relations file), for the relatives column.
    pub relations: Option<u64>,
    /// Other facts (timings).
    pub notes: BTreeMap<String, f64>,
    /// What the run found of twins and household relatives in the records, when it
    /// counted them.
    pub rivals: Option<crate::scoring::estimate::rivals::RivalFit>,
    /// The prior λ counted from the records and scored with, when it was counted.
    pub prior: Option<crate::scoring::estimate::PriorCount>,
}

impl EvalReport {
    /// The row at the model's own upper threshold.
    pub fn at_model_threshold(&self) -> Option<&Quality> {
        self.table.iter().find(|q| q.upper == self.model_upper)
    }

    /// The report as an aligned text table.
    pub fn to_table(&self) -> String {
        let mut s = format!(
            "records {}  true pairs {}  pairs compared {}  blocking recall {:.4}  capped block lookups {}\n",
            self.records, self.true_pairs, self.pairs_compared, self.blocking_recall, self.capped_block_lookups
        );
        s.push_str(&crate::scoring::estimate::counted_lines(
            self.prior.as_ref(),
            self.rivals.as_ref(),
            ["from the records"; 2],
            "",
        ));
        s.push_str(&format!(
            "{:>7} {:>9} {:>9} {:>9} {:>9} {:>9} {:>11} {:>9} {:>9} {:>10} {:>9}\n",
            "upper",
            "p(match)",
            "precision",
            "recall",
            "f1",
            "clusters",
            "false-merge",
            "split",
            "review",
            "review-ok",
            "relatives"
        ));
        for q in &self.table {
            let mark = if q.upper == self.model_upper {
                " <- model"
            } else {
                ""
            };
            let review_ok = q
                .review_precision
                .map_or("-".to_string(), |p| format!("{:.2}%", 100.0 * p));
            let relatives = match self.relations {
                Some(_) => q.relatives_linked.values().sum::<u64>().to_string(),
                None => "-".to_string(),
            };
            s.push_str(&format!(
                "{:>7.1} {:>9.5} {:>9.5} {:>9.5} {:>9.5} {:>9} {:>10.4}% {:>8.4}% {:>8.4}% {:>10} {:>9}{mark}\n",
                q.upper,
                weight_to_prob(q.upper),
                q.precision,
                q.recall,
                q.f1,
                q.clusters,
                100.0 * q.false_merge_rate,
                100.0 * q.split_rate,
                100.0 * q.review_rate,
                review_ok,
                relatives,
            ));
        }
        if let Some(q) = self.at_model_threshold() {
            if self.relations.is_some() {
                let by: Vec<String> = q
                    .relatives_linked
                    .iter()
                    .map(|(r, n)| format!("{r} {n}"))
                    .collect();
                s.push_str(&format!(
                    "relatives merged at the model threshold (record pairs): {}\n",
                    if by.is_empty() {
                        "none".to_string()
                    } else {
                        by.join(", ")
                    }
                ));
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
    fn measures_on_a_hand_made_case() {
        // truth: {0,1,2} {3} {4,5}; clusters: {0,1} {2} {3,4} {5}
        let labels = [0, 0, 0, 1, 2, 2];
        let ids = [1, 1, 2, 3, 3, 4];
        let pairs = [p(1, 2, 5.0), p(0, 1, 20.0), p(3, 4, 20.0)];
        let q = quality(&ids, &labels, &pairs, 10.0, 0.0);
        // predicted pairs: (0,1) (3,4); tp: (0,1); actual: 3 + 1 = 4
        assert!((q.precision - 0.5).abs() < 1e-12);
        assert!((q.recall - 0.25).abs() < 1e-12);
        assert_eq!(q.clusters, 4);
        assert!(
            (q.false_merge_rate - 0.25).abs() < 1e-12,
            "cluster {{3,4}} mixes persons"
        );
        assert!(
            (q.split_rate - 2.0 / 3.0).abs() < 1e-12,
            "persons 0 and 2 are split"
        );
        assert!(
            (q.review_rate - 1.0 / 6.0).abs() < 1e-12,
            "record 2 meets record 1 in the band"
        );
        assert_eq!(true_pairs(&labels), 4);
    }
}
