//! Matching quality on the committed synthetic set, with floors derived from the
//! issue's targets for the 100k set. A regression in comparators, scoring, blocking or
//! guard rails shows up here as a failed floor.

use std::path::Path;

use empi::batch::{cluster, score_records, ScoreOptions};
use empi::eval::{quality, read_truth, true_pairs};
use empi::input::{read_csv, ReadOptions};
use empi::linker::Linker;

#[test]
fn default_model_meets_quality_floors_on_committed_set() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("synthetic-data/small");
    let (records, summary) =
        read_csv(&dir.join("records.csv"), None, &ReadOptions::default()).expect("read set");
    assert!(summary.records > 9_000, "committed set has ~10k records");
    let labels = read_truth(&dir.join("truth.csv"), &records).expect("read truth");
    let linker = Linker::with_default_model();
    let t = linker.thresholds();
    let opts = ScoreOptions {
        keep_min_weight: t.lower,
        tf_from_data: true,
        progress: false,
    };
    let (_, run) = score_records(&linker, &records, Some(&labels), &opts).expect("score");
    let ids = cluster(records.len(), &run.pairs, t.upper);
    let q = quality(&ids, &labels, &run.pairs, t.upper, t.lower);
    let blocking_recall = run.stats.true_candidate_pairs as f64 / true_pairs(&labels) as f64;
    let report = format!("{q:?} blocking_recall={blocking_recall:.4}");
    assert!(q.precision >= 0.995, "precision below floor: {report}");
    assert!(q.recall >= 0.95, "recall below floor: {report}");
    assert!(
        q.false_merge_rate <= 0.001,
        "false-merge rate above ceiling: {report}"
    );
    assert!(
        blocking_recall >= 0.99,
        "blocking recall below floor: {report}"
    );
    assert!(q.review_rate <= 0.05, "review rate above ceiling: {report}");
}
