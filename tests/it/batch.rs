//! Batch paths end to end on generated data: dedup quality and the weight bound on the
//! committed synthetic set, linking two files, re-scanning a store.

use std::path::Path;

use empi::batch::{self, Dataset, DedupOptions, LinkOptions, RescanMode, RescanOptions};
use empi::input::{read_csv, ReadOptions};
use empi::linker::Linker;
use empi::record::Record;
use empi::store::{LinkMethod, MemoryStore, Plan, Stamp, Store};

fn small() -> Vec<Record> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("synthetic-data/small/records.csv");
    read_csv(&path, None, &ReadOptions::default())
        .expect("committed set reads")
        .0
}

fn small_dataset(linker: &Linker) -> (Dataset, Vec<u32>) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("synthetic-data/small");
    let (data, _) = batch::read_dataset(
        &dir.join("records.csv"),
        None,
        &ReadOptions::default(),
        linker,
        false,
    )
    .expect("committed set reads");
    let labels =
        batch::dedup::labels_from_truth(&dir.join("truth.csv"), &data.keys).expect("truth reads");
    (data, labels)
}

#[test]
fn dedup_of_the_committed_set_meets_the_floors_and_never_chains() {
    let linker = Linker::with_default_model();
    let (data, labels) = small_dataset(&linker);
    let n = data.len();
    let result = batch::dedup(&linker, data, &DedupOptions::default()).unwrap();
    let t = result.linker.thresholds();
    let q = empi::eval::quality(
        &result.clustering.ids,
        &labels,
        &result.run.pairs,
        t.upper,
        t.lower,
    );
    assert!(q.precision >= 0.995, "precision {}", q.precision);
    assert!(q.recall >= 0.95, "recall {}", q.recall);
    assert!(
        q.false_merge_rate <= 0.001,
        "false merges {}",
        q.false_merge_rate
    );
    assert!(
        result.summary.scoring.bound_used,
        "the weight bound passed its self-check"
    );
    assert!(result.summary.scoring.pairs_scored_in_full < result.summary.scoring.pair_visits);
    // No cluster holds two records that contradict each other.
    let mut members: std::collections::BTreeMap<u32, Vec<usize>> = Default::default();
    for (i, &c) in result.clustering.ids.iter().enumerate() {
        members.entry(c).or_default().push(i);
    }
    let p = &result.run.prepared;
    for m in members.values().filter(|m| m.len() >= 3) {
        for (x, &a) in m.iter().enumerate() {
            for &b in &m[x + 1..] {
                assert!(
                    !batch::contradicts(
                        &result.linker,
                        &p[a],
                        &p[b],
                        batch::ChainGuards::BirthOrder
                    ),
                    "records {a} and {b} contradict inside one cluster"
                );
            }
        }
    }
    // Review pairs lie between clusters and name only keys in the file.
    assert!(!result.review.is_empty());
    for r in &result.review {
        assert_ne!(
            result.clustering.ids[r.pair.a as usize],
            result.clustering.ids[r.pair.b as usize]
        );
    }
    let mut out = Vec::new();
    batch::write_review(&mut out, &result.keys, p, &result.linker, &result.review).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(text.starts_with("a_source,a_local_id,b_source,b_local_id,weight"));
    assert!(
        text.contains("given_name") && text.contains(":+"),
        "explained per comparison"
    );
    assert_eq!(result.summary.scoring.records as usize, n);
}

#[test]
fn the_weight_bound_never_drops_a_kept_pair() {
    // Scoring every candidate pair in full keeps exactly the pairs the bounded run keeps.
    let linker = Linker::with_default_model();
    let (data, _) = small_dataset(&linker);
    let opts = batch::ScoreOptions {
        keep_min_weight: linker.thresholds().lower,
        tf_from_data: true,
        progress: false,
    };
    let (used, run) = batch::score_prepared(&linker, data.prepared, None, None, &opts).unwrap();
    assert!(run.stats.bound_used);
    let scorer = used.scorer();
    let mut full = Vec::new();
    for part in run.blocks.par_visit_pairs(None, Vec::new, |v, a, b, _| {
        let s = scorer.score(&run.prepared[a as usize], &run.prepared[b as usize]);
        if s.weight >= opts.keep_min_weight {
            v.push((a, b));
        }
    }) {
        full.extend(part);
    }
    full.sort_unstable();
    let kept: Vec<(u32, u32)> = run.pairs.iter().map(|p| (p.a, p.b)).collect();
    assert_eq!(kept, full);
}

#[test]
fn score_records_matches_the_service_preparation() {
    // The batch path (cached preparation) scores pairs exactly as `Linker::prepare` does.
    let linker = Linker::with_default_model();
    let records: Vec<Record> = small().into_iter().take(2_000).collect();
    let opts = batch::ScoreOptions {
        keep_min_weight: linker.thresholds().lower,
        tf_from_data: false,
        progress: false,
    };
    let (used, run) = batch::score_records(&linker, &records, None, &opts).unwrap();
    for p in run.pairs.iter().take(500) {
        let (a, b) = (&records[p.a as usize], &records[p.b as usize]);
        let s = used.scorer().score(&linker.prepare(a), &linker.prepare(b));
        assert!((s.weight as f32 - p.weight).abs() < 1e-4);
        assert_eq!(s.rival, p.rival);
    }
}

#[test]
fn link_mode_finds_each_left_record_its_best_right_match() {
    let linker = Linker::with_default_model();
    let (data, labels) = small_dataset(&linker);
    // Left: the first record of each person; right: every other record.
    let mut seen = std::collections::HashSet::new();
    let all = small();
    let (mut left, mut right, mut left_label, mut right_label) = (vec![], vec![], vec![], vec![]);
    for (r, &l) in all.iter().zip(&labels) {
        if seen.insert(l) {
            left.push(r.clone());
            left_label.push(l);
        } else {
            right.push(r.clone());
            right_label.push(l);
        }
    }
    drop(data);
    let l = Dataset::from_records(&linker, &left, false);
    let r = Dataset::from_records(&linker, &right, false);
    let result = batch::link(
        &linker,
        l,
        r,
        &LinkOptions {
            tf_from_data: true,
            progress: false,
        },
    )
    .unwrap();
    assert_eq!(result.rows.len(), left.len());
    // The prior is the share of matches among the pairs across the two files: each left
    // person with records on the right, over all cross pairs (the right file's own
    // duplicates are not counted).
    let across = left_label
        .iter()
        .map(|l| right_label.iter().filter(|r| *r == l).count())
        .sum::<usize>() as f64
        / (left.len() as f64 * right.len() as f64);
    let prior = result.stats.prior.clone().expect("counted");
    assert!(prior.agreed, "{prior:?}");
    assert!(
        (prior.prior / across - 1.0).abs() < 0.15,
        "{prior:?} against {across:e}"
    );
    assert_eq!(result.linker.scorer().model().prior, prior.prior);
    let (mut links, mut correct) = (0, 0);
    for row in &result.rows {
        if row.decision == empi::linker::Decision::Link {
            links += 1;
            let j = row.right.unwrap() as usize;
            correct += usize::from(right_label[j] == left_label[row.left as usize]);
        }
    }
    assert!(links > 100, "some links: {links}");
    assert!(
        correct as f64 / links as f64 >= 0.995,
        "{correct}/{links} correct"
    );
    // A left person with records on the right is found in most cases.
    let has_match = left_label
        .iter()
        .filter(|l| right_label.contains(l))
        .count();
    assert!(
        links as f64 >= 0.8 * has_match as f64,
        "{links} of {has_match}"
    );
    let mut out = Vec::new();
    batch::write_links(&mut out, &result).unwrap();
    assert_eq!(
        String::from_utf8(out).unwrap().lines().count(),
        left.len() + 1
    );
}

fn person(store: &MemoryStore, r: &Record) {
    let mut plan = Plan::new(store, Stamp::now("test", ""));
    plan.create_person(r.clone(), LinkMethod::Created).unwrap();
    store.commit_sync(&plan.finish()).unwrap();
}

fn rec(id: &str, given: &str, family: &str, dob: &str, phone: &str) -> Record {
    Record {
        source: "adt".into(),
        local_id: id.into(),
        given_name: Some(given.into()),
        family_name: Some(family.into()),
        birth_date: Some(dob.parse().unwrap()),
        phones: vec![phone.into()],
        ..Default::default()
    }
}

/// Options of a re-scan by the tests.
fn scan(mode: RescanMode, dry_run: bool, tf_from_data: bool) -> RescanOptions {
    RescanOptions {
        mode,
        dry_run,
        tf_from_data,
        progress: false,
        actor: "test".into(),
    }
}

#[test]
fn rescan_of_a_store_opens_tasks_or_merges_without_resubmitting() {
    let store = MemoryStore::new();
    let same_a = rec("1", "Wanda", "Kowalczyk", "1970-03-09", "555-201-3344");
    let same_b = rec("2", "Wanda", "Kowalczyk", "1970-03-09", "555-201-3344");
    let other = rec("3", "Peter", "Ng", "1990-01-01", "555-999-0000");
    let twin = rec("4", "Olga", "Kowalczyk", "1970-03-09", "555-201-3344");
    for r in [&same_a, &same_b, &other, &twin] {
        person(&store, r);
    }
    assert_eq!(store.stats().unwrap().persons, 4);
    let linker = Linker::with_default_model();
    let opts = scan(RescanMode::Review, false, false);
    let s = batch::rescan(&store, &linker, &opts).unwrap();
    assert_eq!(s.records, 4);
    assert_eq!(s.person_pairs_above_upper, 1, "records 1 and 2 link");
    assert!(s.tasks_opened >= 1);
    assert_eq!(s.merges, 0);
    assert_eq!(
        store.stats().unwrap().persons,
        4,
        "review mode merges nothing"
    );
    let tasks = store.open_tasks_for_record(&same_b.key()).unwrap();
    assert_eq!(tasks.len(), 1);
    assert_eq!(
        tasks[0].candidates[0].euid,
        store.get_record(&same_a.key()).unwrap().unwrap().euid
    );
    assert!(tasks[0].explanation.to_string().contains("given_name"));
    // Idempotent: a second scan opens nothing new.
    let again = batch::rescan(&store, &linker, &opts).unwrap();
    assert_eq!(again.tasks_opened, 0);
    assert_eq!(again.skipped, s.tasks_opened);
    // Merge mode joins the two records of Wanda, never the twin.
    let merge = RescanOptions {
        mode: RescanMode::MergeAboveUpper,
        ..opts
    };
    let m = batch::rescan(&store, &linker, &merge).unwrap();
    assert_eq!(m.merges, 1);
    let ea = store.get_record(&same_a.key()).unwrap().unwrap().euid;
    let eb = store.get_record(&same_b.key()).unwrap().unwrap().euid;
    let et = store.get_record(&twin.key()).unwrap().unwrap().euid;
    assert_eq!(ea, eb);
    assert_ne!(ea, et);
    assert_eq!(store.stats().unwrap().persons, 3);
    assert!(store.check().unwrap().is_ok());
    let history = store.history(&ea).unwrap();
    assert!(history
        .iter()
        .any(|h| h.actor == "test" && h.reason.contains("re-scan")));
}

#[test]
fn rescan_counts_the_prior_of_the_stored_records() {
    // Every record of the committed set's first 3,000 stored as its own person: the scan
    // counts λ from them (as dedup counts it from a file) unless told to use the model's.
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("synthetic-data/small");
    let (records, _) =
        read_csv(&dir.join("records.csv"), None, &ReadOptions::default()).expect("read set");
    let store = MemoryStore::new();
    for r in &records[..3000] {
        person(&store, r);
    }
    let linker = Linker::with_default_model();
    let opts = scan(RescanMode::Review, true, true);
    let s = batch::rescan(&store, &linker, &opts).unwrap();
    let prior = s.prior.expect("counted");
    assert!(prior.agreed, "{prior:?}");
    // A subset of the records keeps the set's λ (its true pairs and all its pairs shrink
    // alike): about 1.7e-4.
    assert!((1.2e-4..2.4e-4).contains(&prior.prior), "{prior:?}");
    assert!(s.rivals.is_some());
    let kept = batch::rescan(&store, &linker, &scan(RescanMode::Review, true, false)).unwrap();
    assert!(kept.prior.is_none() && kept.rivals.is_none());
}

#[test]
fn rescan_refuses_a_store_held_by_another_process() {
    let dir = tempfile::tempdir().unwrap();
    let _held = empi::store::SledStore::open(dir.path()).unwrap();
    let linker = Linker::with_default_model();
    let opts = scan(RescanMode::Review, true, true);
    let e = batch::rescan_dir(dir.path(), &linker, &opts).unwrap_err();
    assert!(e.to_string().contains("in use by another process"), "{e}");
}
