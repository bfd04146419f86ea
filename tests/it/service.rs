//! The service without the network: re-evaluation of changed records, not-duplicate
//! assertions, the live index against the store after every kind of operation, golden view
//! and merge resolution. In-memory store: durability is not the point here.

use std::sync::Arc;

use empi::linker::Decision;
use empi::linker::Linker;
use empi::record::{Address, Record, RecordKey};
use empi::service::{Service, ServiceConfig};
use empi::store::{HistoryAction, MemoryStore, PersonStatus, ResolutionAction, Store, TaskStatus};
use empi::Error;

fn service_over(store: Arc<dyn Store>) -> Service {
    Service::open(
        store,
        Linker::with_default_model(),
        ServiceConfig::default(),
    )
    .unwrap()
}

fn service() -> Service {
    service_over(Arc::new(MemoryStore::new()))
}

/// A hand-made synthetic record.
fn rec(id: &str, given: &str, family: &str, dob: &str) -> Record {
    Record {
        source: "adt".into(),
        local_id: id.into(),
        given_name: Some(given.into()),
        family_name: Some(family.into()),
        birth_date: Some(dob.parse().unwrap()),
        ..Default::default()
    }
}

fn margaret(id: &str) -> Record {
    Record {
        phones: vec!["413-555-0142".into()],
        address: Address {
            lines: vec!["12 Elm St".into()],
            postal_code: Some("01852".into()),
            ..Default::default()
        },
        ..rec(id, "Margaret", "Okonkwo", "1961-07-02")
    }
}

/// Margaret's twin: family name, birth date, phone and address agree, the given name does
/// not. The twin hypothesis keeps that from linking automatically: a review.
fn twin(id: &str) -> Record {
    Record {
        given_name: Some("Olga".into()),
        ..margaret(id)
    }
}

fn stranger(id: &str) -> Record {
    rec(id, "Peter", "Ng", "1990-01-15")
}

fn key(id: &str) -> RecordKey {
    RecordKey::new("adt", id)
}

fn assert_consistent(s: &Service) {
    let check = s.check().unwrap();
    assert!(
        check.is_ok(),
        "{:?} {:?}",
        check.store.problems,
        check.index_problems
    );
}

#[tokio::test]
async fn changed_records_move_only_on_a_decisive_score() {
    let s = service();
    let a = s.match_or_create(margaret("1"), "feed").await.unwrap();
    assert_eq!(a.decision, Decision::New);
    let b = s.match_or_create(stranger("2"), "feed").await.unwrap();
    assert_eq!(b.decision, Decision::New);
    assert_ne!(a.euid, b.euid);

    // adt/2 is corrected to be Margaret: a decisive score moves it, its old person retires
    let moved = s.match_or_create(margaret("2"), "feed").await.unwrap();
    assert_eq!(moved.decision, Decision::Link);
    assert_eq!(moved.euid, a.euid);
    let old = s.get_person(&b.euid).unwrap();
    assert_eq!(old.person.status, PersonStatus::Retired);
    assert_consistent(&s);

    // adt/3 becomes merely close to Margaret: it stays and a review task is opened
    let c = s
        .match_or_create(rec("3", "Mary", "Smith", "1980-03-03"), "feed")
        .await
        .unwrap();
    let close = s.match_or_create(twin("3"), "feed").await.unwrap();
    assert_eq!(close.decision, Decision::Review);
    assert_eq!(
        close.euid, c.euid,
        "an uncertain score never moves a record"
    );
    let task = s.get_task(close.review_task.unwrap()).unwrap();
    assert_eq!(task.candidates[0].euid, a.euid);
    assert!(!task.candidates[0].explanation.is_empty());
    assert_eq!(task.record_euid.as_ref(), Some(&c.euid));

    // changing it again supersedes that task
    let again = s
        .match_or_create(rec("3", "Mary", "Smithers", "1980-03-03"), "feed")
        .await
        .unwrap();
    assert_eq!(again.decision, Decision::New);
    let t = s.get_task(task.task.id).unwrap().task;
    assert!(matches!(
        t.status,
        TaskStatus::Resolved(ref r) if r.action == ResolutionAction::Superseded
    ));
    assert_eq!(s.stats().unwrap().open_tasks, 0);
    assert_consistent(&s);
}

#[tokio::test]
async fn not_duplicate_assertions_exclude_candidates() {
    let s = service();
    let a = s.match_or_create(margaret("1"), "feed").await.unwrap();
    let b = s.match_or_create(stranger("2"), "feed").await.unwrap();
    s.mark_not_duplicate(&a.euid, &b.euid, "registrar", "different mothers")
        .await
        .unwrap();
    // without the assertion this update would move adt/2 to Margaret's person
    let r = s.match_or_create(margaret("2"), "feed").await.unwrap();
    assert_eq!(r.euid, b.euid);
    assert_eq!(r.decision, Decision::New);
    assert!(r.candidates.iter().all(|c| c.euid != a.euid));
    assert_eq!(s.stats().unwrap().open_tasks, 0);

    // "keep separate" on a review creates such an assertion
    let c = s.match_or_create(twin("3"), "feed").await.unwrap();
    assert_eq!(c.decision, Decision::Review);
    let task = c.review_task.unwrap();
    let (view, euid) = s
        .resolve_task(
            task,
            &ResolutionAction::KeepSeparate,
            "registrar",
            "checked ids",
        )
        .await
        .unwrap();
    assert_eq!(euid, c.euid);
    assert!(
        matches!(view.task.status, TaskStatus::Resolved(ref r) if r.action == ResolutionAction::KeepSeparate)
    );
    assert!(s.store().not_duplicate(&c.euid, &a.euid).unwrap().is_some());
    // a later change to adt/3 does not bring Margaret's person back as a candidate
    let mut changed = twin("3");
    changed.phones = vec!["413-555-0100".into()];
    let r = s.match_or_create(changed, "feed").await.unwrap();
    assert_eq!(r.euid, c.euid);
    assert_ne!(r.decision, Decision::Review);
    assert!(r.candidates.iter().all(|x| x.euid != a.euid));
    // resolving twice is a conflict
    let e = s
        .resolve_task(task, &ResolutionAction::KeepSeparate, "registrar", "")
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Conflict(_)), "{e}");
    assert_consistent(&s);
}

#[tokio::test]
async fn index_follows_every_operation_and_rebuilds_identically() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let s = service_over(Arc::clone(&store));
    let a = s.match_or_create(margaret("1"), "feed").await.unwrap();
    let linked = s.match_or_create(margaret("2"), "feed").await.unwrap();
    assert_eq!(linked.euid, a.euid);
    let b = s.match_or_create(stranger("3"), "feed").await.unwrap();
    let r = s.match_or_create(twin("4"), "feed").await.unwrap();
    assert_eq!(r.decision, Decision::Review);
    assert_consistent(&s);

    // registrar actions, each followed by a consistency check of index against store
    let moved = s.link(&key("3"), &a.euid, "reg", "same MRN").await.unwrap();
    assert!(moved.from_retired);
    assert_consistent(&s);
    let un = s.unlink(&key("3"), "reg", "wrong after all").await.unwrap();
    assert_ne!(un.to, a.euid);
    assert_consistent(&s);
    let merged = s
        .merge_persons(&un.to, &a.euid, "reg", "dup")
        .await
        .unwrap();
    assert_eq!(merged.survivor, a.euid);
    assert_eq!(merged.records_moved, 1);
    assert_consistent(&s);
    let split = s
        .split_person(&un.to, &[key("3")], "reg", "unmerge")
        .await
        .unwrap();
    assert_eq!(split.euid, a.euid, "a merged EUID stands for its survivor");
    assert_consistent(&s);
    let (_, euid) = s
        .resolve_task(
            r.review_task.unwrap(),
            &ResolutionAction::Merge {
                into: a.euid.clone(),
            },
            "reg",
            "same",
        )
        .await
        .unwrap();
    assert_eq!(euid, a.euid);
    assert_consistent(&s);
    let removed = s
        .remove_record(&key("2"), "reg", "source deleted")
        .await
        .unwrap();
    assert_eq!(removed.euid, a.euid);
    assert!(!removed.retired);
    assert_consistent(&s);
    // the removed record is no candidate any more; the moved ones are under their person
    let m = s.match_only(&margaret("99"), 0).unwrap();
    assert!(m.candidates.iter().all(|c| c.best_record != Some(key("2"))));
    assert_eq!(m.candidates[0].euid, a.euid);
    let _ = b;

    // a fresh service over the same store rebuilds the same index
    let stats = s.stats().unwrap();
    drop(s);
    let again = service_over(store);
    assert_consistent(&again);
    assert_eq!(again.stats().unwrap(), stats);
    assert_eq!(again.index_stats().records, stats.records);
}

#[tokio::test]
async fn merged_person_resolves_with_full_history_and_golden_view() {
    let s = service();
    let a = s.match_or_create(margaret("1"), "feed").await.unwrap();
    let mut other = stranger("2");
    other.email = Some("p.ng@mail.example.com".into());
    let b = s.match_or_create(other, "feed").await.unwrap();
    s.merge_persons(&b.euid, &a.euid, "reg", "same person")
        .await
        .unwrap();
    let v = s.get_person(&b.euid).unwrap();
    assert_eq!(v.person.euid, a.euid);
    assert_eq!(v.requested, b.euid);
    assert_eq!(v.merge_path, vec![b.euid.clone(), a.euid.clone()]);
    assert_eq!(v.records.len(), 2);
    // history: both persons' creation, the merge from both sides, oldest first
    let actions: Vec<HistoryAction> = v.history.iter().map(|h| h.action).collect();
    assert_eq!(
        actions
            .iter()
            .filter(|a| **a == HistoryAction::PersonCreated)
            .count(),
        2
    );
    assert!(actions.contains(&HistoryAction::MergedInto));
    assert!(actions.contains(&HistoryAction::MergeAbsorbed));
    assert!(v.history.windows(2).all(|w| w[0].seq < w[1].seq));
    let merge = v
        .history
        .iter()
        .find(|h| h.action == HistoryAction::MergeAbsorbed)
        .unwrap();
    assert_eq!(
        (merge.actor.as_str(), merge.reason.as_str()),
        ("reg", "same person")
    );
    // golden view: newest non-empty per field; the email only one record has
    assert_eq!(v.golden.email.as_deref(), Some("p.ng@mail.example.com"));
    assert!(v.golden.given_name.is_some());
    let direct = s.get_person(&a.euid).unwrap();
    assert!(direct.merge_path.is_empty());
    assert_eq!(direct.history, v.history);
}

#[tokio::test]
async fn match_only_writes_nothing_and_explains_every_candidate() {
    let s = service();
    s.match_or_create(margaret("1"), "feed").await.unwrap();
    s.match_or_create(twin("2"), "feed").await.unwrap();
    let before = (s.stats().unwrap(), s.store().flush_count());
    let mut query = margaret("");
    query.source = String::new();
    let m = s.match_only(&query, 0).unwrap();
    assert_ne!(m.decision, Decision::New);
    assert!(m.candidates.len() >= 2);
    assert!(m.candidates.iter().all(|c| !c.explanation.is_empty()));
    assert!(m.candidates.windows(2).all(|w| w[0].score >= w[1].score));
    assert_eq!(s.match_only(&query, 1).unwrap().candidates.len(), 1);
    assert_eq!((s.stats().unwrap(), s.store().flush_count()), before);
    let mut bad = query.clone();
    bad.birth_date = Some("2999-01-01".parse().unwrap());
    let e = s.match_only(&bad, 0).unwrap_err().to_string();
    assert!(e.contains("birth_date"), "{e}");
}

#[tokio::test]
async fn repeats_and_rejections_write_nothing() {
    let s = service();
    let mut full = margaret("1");
    full.address = Address {
        lines: vec!["12 Elm St".into()],
        postal_code: Some("01852".into()),
        ..Default::default()
    };
    let first = s.match_or_create(full.clone(), "feed").await.unwrap();
    let flushes = s.store().flush_count();
    let history = s.store().history(&first.euid).unwrap().len();
    let again = s.match_or_create(full.clone(), "feed").await.unwrap();
    assert!(again.unchanged);
    assert_eq!(again.euid, first.euid);
    assert_eq!(again.decision, first.decision);
    assert_eq!(s.store().history(&first.euid).unwrap().len(), history);
    assert_eq!(s.store().flush_count(), flushes);

    let mut bad = full.clone();
    bad.given_name = Some("x".repeat(1000));
    let e = s.match_or_create(bad, "feed").await.unwrap_err();
    assert!(
        matches!(e, Error::InvalidInput { ref field, .. } if field == "given_name"),
        "{e}"
    );
    assert_eq!(s.get_record(&key("1")).unwrap().record, full);
    assert_eq!(s.store().history(&first.euid).unwrap().len(), history);
    let e = s.link(&key("1"), &first.euid, "", "").await.unwrap_err();
    assert!(e.to_string().contains("actor"), "{e}");
}

/// Sixteen tasks submit the same new person at once, ten times over. Without the stripe
/// locks every task may decide "new" before any has written (this fails within a round or
/// two when the locking is disabled).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_submissions_of_one_new_person_share_one_euid() {
    for round in 0..10 {
        let s = Arc::new(service());
        let barrier = Arc::new(tokio::sync::Barrier::new(16));
        let mut tasks = Vec::new();
        for i in 0..16 {
            let (s, barrier) = (Arc::clone(&s), Arc::clone(&barrier));
            tasks.push(tokio::spawn(async move {
                barrier.wait().await;
                s.match_or_create(margaret(&format!("M{i}")), "feed")
                    .await
                    .unwrap()
                    .euid
            }));
        }
        let mut euids = Vec::new();
        for t in tasks {
            euids.push(t.await.unwrap());
        }
        euids.sort();
        euids.dedup();
        assert_eq!(euids.len(), 1, "round {round}: {euids:?}");
    }
}

fn service_with_snapshot(store: Arc<dyn Store>, snapshot: &std::path::Path) -> Service {
    let config = ServiceConfig {
        snapshot: Some(snapshot.to_path_buf()),
        ..ServiceConfig::default()
    };
    Service::open(store, Linker::with_default_model(), config).unwrap()
}

#[tokio::test]
async fn a_snapshot_is_loaded_only_while_it_matches_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let snap = empi::service::snapshot::path_in(dir.path());
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let s = service_with_snapshot(Arc::clone(&store), &snap);
    assert!(!s.index_stats().from_snapshot, "nothing to load yet");
    let a = s.match_or_create(margaret("1"), "feed").await.unwrap();
    s.match_or_create(stranger("3"), "feed").await.unwrap();
    let junior = Record {
        family_name: Some("Okonkwo Jr".into()),
        ..margaret("5")
    };
    s.match_or_create(junior, "feed").await.unwrap();
    assert_eq!(s.save_snapshot().unwrap(), Some(3));
    drop(s);

    // Unchanged store: the index comes from the snapshot, and is the store's index.
    let s = service_with_snapshot(Arc::clone(&store), &snap);
    assert!(s.index_stats().from_snapshot);
    assert_eq!(s.index_stats().records, 3);
    assert_consistent(&s);
    let m = s.match_only(&margaret("9"), 0).unwrap();
    assert_eq!(m.candidates[0].euid, a.euid);
    // A write after the snapshot (and no clean stop, as in a crash) makes it stale.
    s.match_or_create(margaret("2"), "feed").await.unwrap();
    drop(s);
    let s = service_with_snapshot(Arc::clone(&store), &snap);
    assert!(!s.index_stats().from_snapshot, "stale snapshot used");
    assert_eq!(s.index_stats().records, 4);
    assert_consistent(&s);
    s.save_snapshot().unwrap();
    drop(s);

    // Another model shapes the index differently: not used.
    let mut model = empi::scoring::Model::default_model();
    model.thresholds.upper += 1.0;
    let config = ServiceConfig {
        snapshot: Some(snap.clone()),
        ..ServiceConfig::default()
    };
    let s = Service::open(Arc::clone(&store), Linker::new(model).unwrap(), config).unwrap();
    assert!(!s.index_stats().from_snapshot);
    drop(s);

    // A damaged snapshot is never half-used: the service rebuilds.
    let bytes = std::fs::read(&snap).unwrap();
    std::fs::write(&snap, &bytes[..bytes.len() / 2]).unwrap();
    let s = service_with_snapshot(Arc::clone(&store), &snap);
    assert!(!s.index_stats().from_snapshot);
    assert_eq!(s.index_stats().records, 4);
    assert_consistent(&s);
}

/// MatchOrCreate lists the best person and, after it, only persons that could have been
/// linked or reviewed; Match still ranks the top five however hopeless.
#[tokio::test]
async fn match_or_create_lists_only_plausible_candidates_after_the_best() {
    let s = service();
    let lower = Linker::with_default_model().thresholds().lower;
    let given = ["Ada", "Bea", "Cyr", "Dov", "Eli", "Fay"];
    for (i, g) in given.iter().enumerate() {
        // Same family name and birth year as Margaret: in her block, but hopeless.
        let r = rec(
            &format!("k{i}"),
            g,
            "Okonkwo",
            &format!("1961-0{}-1{i}", i + 1),
        );
        s.match_or_create(r, "feed").await.unwrap();
    }
    let m = margaret("1");
    let mut query = m.clone();
    query.local_id = "probe".into();
    let searched = s.match_only(&query, 0).unwrap();
    assert!(
        searched.candidates.len() > 1,
        "the relatives are candidates: {}",
        searched.candidates.len()
    );
    assert!(searched.candidates.iter().all(|c| c.score < lower));

    // A new person: only the closest miss is listed, with the search's best score.
    let created = s.match_or_create(m, "feed").await.unwrap();
    assert_eq!(created.decision, Decision::New);
    assert_eq!(created.candidates.len(), 1);
    assert_eq!(created.candidates[0].euid, searched.candidates[0].euid);
    assert_eq!(created.candidates[0].score, searched.candidates[0].score);

    // A link: the person linked to, and no hopeless relatives after it.
    let linked = s.match_or_create(margaret("2"), "feed").await.unwrap();
    assert_eq!(linked.decision, Decision::Link);
    assert_eq!(linked.candidates[0].euid, created.euid);
    assert!(linked.candidates[1..].iter().all(|c| c.score >= lower));
    assert!(s.match_only(&margaret("3"), 0).unwrap().candidates.len() > linked.candidates.len());
}

/// Margaret and her twin in household `i` (a birth date, phone and address of its own).
fn household(i: usize) -> (Record, Record) {
    let born = format!("{}-{:02}-{:02}", 1930 + i % 70, 1 + i / 70 % 12, 1 + i % 28);
    let at = |r: Record| Record {
        birth_date: Some(born.parse().unwrap()),
        phones: vec![format!("{:03}-555-{:04}", 200 + i, (i * 7919) % 10_000)],
        address: Address {
            lines: vec![format!("{} Elm St", 10 + i * 13)],
            postal_code: Some(format!("{:05}", 1000 + i * 37)),
            ..Default::default()
        },
        ..r
    };
    (at(margaret(&format!("m{i}"))), at(twin(&format!("t{i}"))))
}

/// The worklist's summary of open tasks is built from a store scan while review tasks are
/// opened and resolved: writes are not held up, and the summary it ends with is the store's
/// open tasks exactly, neither missing a task written during the scan nor keeping one
/// resolved during it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worklist_built_while_tasks_are_written_matches_the_store() {
    use empi::service::WorklistQuery;
    use empi::store::{TaskQuery, UnixMillis};
    let s = Arc::new(service());
    let mut tasks = Vec::new();
    for i in 0..300 {
        let (m, t) = household(i);
        s.match_or_create(m, "feed").await.unwrap();
        let r = s.match_or_create(t, "feed").await.unwrap();
        tasks.extend(r.review_task);
    }
    // Most households are reviewed (a few twins meet another household's look-alike).
    assert!(tasks.len() >= 250, "{} review tasks", tasks.len());
    let build = {
        let s = Arc::clone(&s);
        tokio::task::spawn_blocking(move || s.warm_worklist())
    };
    // Meanwhile: new tasks opened, old ones resolved.
    for i in 300..400 {
        let (m, t) = household(i);
        s.match_or_create(m, "feed").await.unwrap();
        s.match_or_create(t, "feed").await.unwrap();
        let old = tasks[i - 300];
        s.resolve_task(old, &ResolutionAction::KeepSeparate, "reg", "twins")
            .await
            .unwrap();
    }
    build.await.unwrap().unwrap();

    let mut open = Vec::new();
    let mut after = None;
    loop {
        let (page, next) = s
            .list_tasks(&TaskQuery {
                open: Some(true),
                page_size: 1000,
                after,
                ..TaskQuery::default()
            })
            .unwrap();
        open.extend(page.into_iter().map(|t| t.task.id));
        match next {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    let list = s
        .worklist(
            &WorklistQuery {
                page_size: 1000,
                ..WorklistQuery::default()
            },
            UnixMillis::now(),
        )
        .unwrap();
    assert_eq!(list.open, open.len() as u64);
    let listed: Vec<_> = list.rows.iter().map(|r| r.id).collect();
    open.sort();
    let mut sorted = listed.clone();
    sorted.sort();
    assert_eq!(sorted, open);
}
