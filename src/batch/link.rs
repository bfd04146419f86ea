//! Linking two files: each left record to at most its best right record. Only pairs across
//! the files are blocked and scored; the decision per left record is [`pair_decision`] of
//! its best pair (link at or above the upper threshold, review between the thresholds). How many right records reached the upper threshold is
//! reported beside it: several usually means duplicates within the right file, which
//! `empi link --clusters` (or `empi dedup`) resolves.

use crate::linker::{pair_decision, Decision, Linker};
use crate::scoring::{PairScore, Rival};
use crate::Result;

use super::dataset::{Dataset, Keys};
use super::score::{score_prepared, ScoreOptions, ScoreStats, ScoredRun};

/// Options of a link run.
#[derive(Debug, Clone)]
pub struct LinkOptions {
    /// Count term frequencies, rivals and the prior among the pairs across the files from
    /// both files instead of taking the model's ([`crate::scoring::estimate::estimate_cross_prior`]).
    pub tf_from_data: bool,
    /// Progress bars on stderr.
    pub progress: bool,
}

/// How a link file names a left record's [`Decision`]: `link`, `review`, or `none` (no
/// right record at or above the lower threshold).
pub fn decision_name(d: Decision) -> &'static str {
    match d {
        Decision::Link => "link",
        Decision::Review => "review",
        Decision::New => "none",
    }
}

/// One left record's answer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinkRow {
    /// Left record (index into the left file).
    pub left: u32,
    /// Best right record (index into the right file), if any reached the lower threshold.
    pub right: Option<u32>,
    /// Its match weight.
    pub weight: f64,
    /// The rival holding the best pair's weight down, if any.
    pub rival: Option<Rival>,
    /// The decision: [`Decision::New`] when no right record reached the lower threshold.
    pub decision: Decision,
    /// Right records that link on their own (at or above the upper threshold).
    pub links_above_upper: u32,
}

/// The result of [`link`].
#[derive(Debug)]
pub struct LinkResult {
    /// One row per left record, in left order.
    pub rows: Vec<LinkRow>,
    /// Keys of left then right records.
    pub keys: Keys,
    /// Number of left records (right record `j` is `left_len + j` in `keys` and `run`).
    pub left_len: usize,
    /// The scored run over both files.
    pub run: ScoredRun,
    /// The linker used.
    pub linker: Linker,
    /// Scoring counters.
    pub stats: ScoreStats,
}

/// Links each left record to at most one right record.
///
/// # Errors
/// [`crate::Error::Model`] if the data-TF model does not validate (it always should).
pub fn link(
    linker: &Linker,
    left: Dataset,
    right: Dataset,
    opts: &LinkOptions,
) -> Result<LinkResult> {
    let t = linker.thresholds();
    let nl = left.len();
    let mut keys = left.keys;
    keys.extend(&right.keys);
    let mut prepared = left.prepared;
    prepared.extend(right.prepared);
    let score_opts = ScoreOptions {
        keep_min_weight: t.lower,
        tf_from_data: opts.tf_from_data,
        progress: opts.progress,
    };
    let (linker, run) = score_prepared(linker, prepared, None, Some(nl as u32), &score_opts)?;
    let mut rows: Vec<LinkRow> = (0..nl as u32)
        .map(|left| LinkRow {
            left,
            right: None,
            weight: f64::NEG_INFINITY,
            rival: None,
            decision: Decision::New,
            links_above_upper: 0,
        })
        .collect();
    // Pairs are sorted by (a, b) and every pair has a < nl <= b.
    for p in &run.pairs {
        let row = &mut rows[p.a as usize];
        let s = p.score();
        if pair_decision(&s, t) == Decision::Link {
            row.links_above_upper += 1;
        }
        if s.weight > row.weight {
            row.weight = s.weight;
            row.rival = s.rival;
            row.right = Some(p.b - nl as u32);
        }
    }
    for row in &mut rows {
        if row.right.is_none() {
            row.weight = 0.0;
            continue;
        }
        let s = PairScore {
            weight: row.weight,
            rival: row.rival,
        };
        // Several right records above the upper threshold are usually duplicates within
        // the right file; the best one is the match, and the count goes to the output.
        row.decision = pair_decision(&s, t);
    }
    let stats = run.stats.clone();
    Ok(LinkResult {
        rows,
        keys,
        left_len: nl,
        run,
        linker,
        stats,
    })
}

/// Writes `left_source,left_local_id,right_source,right_local_id,weight,probability,decision,
/// rival,right_links_above_upper` (empty right key and score when nothing was found).
///
/// # Errors
/// I/O errors.
pub fn write_links(out: impl std::io::Write, result: &LinkResult) -> std::io::Result<()> {
    let mut w = csv::Writer::from_writer(std::io::BufWriter::with_capacity(1 << 20, out));
    w.write_record([
        "left_source",
        "left_local_id",
        "right_source",
        "right_local_id",
        "weight",
        "probability",
        "decision",
        "rival",
        "right_links_above_upper",
    ])?;
    for row in &result.rows {
        let (ls, ll) = result.keys.get(row.left as usize);
        match row.right {
            Some(r) => {
                let (rs, rl) = result.keys.get(result.left_len + r as usize);
                w.write_record([
                    ls,
                    ll,
                    rs,
                    rl,
                    &format!("{:.2}", row.weight),
                    &format!("{:.6}", crate::scoring::weight_to_prob(row.weight)),
                    decision_name(row.decision),
                    row.rival.map(|g| g.reason()).unwrap_or(""),
                    &row.links_above_upper.to_string(),
                ])?;
            }
            None => {
                w.write_record([ls, ll, "", "", "", "", decision_name(row.decision), "", "0"])?
            }
        }
    }
    w.flush()
}
