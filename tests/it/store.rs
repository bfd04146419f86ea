//! One store test suite, written once against the `Store` trait and run on both `SledStore`
//! (in a temp dir) and `MemoryStore`; plus sled-only tests (reopen, corruption).

use std::sync::Arc;

use empi::record::{Record, RecordKey};
use empi::store::{
    ChangeSet, Euid, HistoryAction, LinkInfo, LinkMethod, MemoryStore, Op, Person, PersonStatus,
    Plan, Receipt, ResolutionAction, SledStore, Stamp, Store, StoredRecord, TaskCandidate, TaskId,
    TaskQuery, UnixMillis,
};
use empi::Error;

type Dyn = Arc<dyn Store>;
/// What the helpers take: any store, as a trait object (all stores are `'static` types).
type DynStore = dyn Store + 'static;

/// Runs each named test function (taking a fresh `Arc<dyn Store>`) on both backends.
macro_rules! on_both_stores {
    ($($name:ident),* $(,)?) => {
        mod on_sled {
            $(
                #[test]
                fn $name() {
                    let dir = tempfile::tempdir().unwrap();
                    let store = empi::store::SledStore::open(dir.path()).unwrap();
                    super::$name(std::sync::Arc::new(store));
                }
            )*
        }
        mod in_memory {
            $(
                #[test]
                fn $name() {
                    // A simulated fsync latency, so group commit has something to batch.
                    let latency = std::time::Duration::from_micros(200);
                    super::$name(std::sync::Arc::new(
                        empi::store::MemoryStore::with_flush_latency(latency),
                    ));
                }
            )*
        }
    };
}

on_both_stores!(
    lifecycle_keeps_invariants,
    merged_euids_lead_to_their_survivor_through_chains,
    split_and_unlink,
    history_is_append_only_and_ordered,
    tasks_page_and_filter,
    removing_a_record_supersedes_its_open_tasks,
    not_duplicate_assertions,
    counters_follow_every_operation,
    failed_change_set_leaves_nothing_changed,
    stale_plans_conflict_and_retry,
    invalid_operations_are_refused,
    identical_resubmission_is_detected,
    euids_and_task_ids_are_never_reused,
    concurrent_commits_share_flushes,
    receipts_are_kept_with_their_change_and_pruned_by_day,
    every_operation_publishes_its_events_in_order,
    events_are_shown_once_durable,
    retention_drops_the_oldest_events,
);

// The change feed's store-level tests (in `feed`), on both backends too.
use crate::feed::{
    events_are_shown_once_durable, every_operation_publishes_its_events_in_order,
    retention_drops_the_oldest_events,
};

// ---- helpers --------------------------------------------------------------------------

fn rec(source: &str, id: &str, family: &str) -> Record {
    Record {
        source: source.into(),
        local_id: id.into(),
        given_name: Some("Test".into()),
        family_name: Some(family.into()),
        ..Default::default()
    }
}

fn key(source: &str, id: &str) -> RecordKey {
    RecordKey::new(source, id)
}

fn stamp(at: i64) -> Stamp {
    Stamp {
        actor: "tester".into(),
        reason: "test".into(),
        at: UnixMillis(at),
    }
}

fn assert_consistent(s: &DynStore) {
    let report = s.check().unwrap();
    assert!(report.is_ok(), "invariants violated: {:?}", report.problems);
}

/// Builds a plan with `f`, commits it durably (sync), checks invariants, returns f's value.
fn run<T>(s: &DynStore, at: i64, f: impl FnOnce(&mut Plan<'_, DynStore>) -> T) -> T {
    let mut plan = Plan::new(s, stamp(at));
    let out = f(&mut plan);
    s.commit_sync(&plan.finish()).unwrap();
    assert_consistent(s);
    out
}

fn create(s: &DynStore, r: Record) -> Euid {
    run(s, 1, |p| p.create_person(r, LinkMethod::Created).unwrap())
}

fn members(s: &DynStore, e: &Euid) -> Vec<RecordKey> {
    s.get_person(e).unwrap().unwrap().members
}

fn status(s: &DynStore, e: &Euid) -> PersonStatus {
    s.get_person(e).unwrap().unwrap().status
}

fn euid_of(s: &DynStore, k: &RecordKey) -> Euid {
    s.get_record(k).unwrap().unwrap().euid
}

fn actions(s: &DynStore, e: &Euid) -> Vec<HistoryAction> {
    s.history(e)
        .unwrap()
        .into_iter()
        .map(|h| h.action)
        .collect()
}

/// The request conflicts with the state (a plan refused it).
fn is_conflict<T: std::fmt::Debug>(r: empi::Result<T>) -> bool {
    matches!(r, Err(Error::Conflict(_)))
}

/// What the change set read changed before it was applied (a version check failed).
fn is_stale<T: std::fmt::Debug>(r: empi::Result<T>) -> bool {
    matches!(r, Err(Error::Stale(_)))
}

/// A change set that would break an invariant: a defect of whoever built it.
fn is_defect<T: std::fmt::Debug>(r: empi::Result<T>) -> bool {
    matches!(r, Err(Error::Internal(_)))
}

// ---- the suite --------------------------------------------------------------------------

fn lifecycle_keeps_invariants(s: Dyn) {
    let s = &*s;
    let (k1, k2, k3) = (key("adt", "1"), key("adt", "2"), key("lab", "3"));
    let p1 = create(s, rec("adt", "1", "Garcia"));
    assert_eq!(euid_of(s, &k1), p1);
    assert_eq!(status(s, &p1), PersonStatus::Active);
    assert_eq!(members(s, &p1), vec![k1.clone()]);

    // automatic link of a second record
    let joined = run(s, 2, |p| {
        p.add_record(
            rec("adt", "2", "Garcia"),
            &p1,
            LinkMethod::Auto { score: 12.5 },
        )
        .unwrap()
    });
    assert_eq!(joined, p1);
    let r2 = s.get_record(&k2).unwrap().unwrap();
    assert_eq!(r2.euid, p1);
    assert_eq!(
        r2.link,
        LinkInfo {
            method: LinkMethod::Auto { score: 12.5 },
            at: UnixMillis(2),
            actor: "tester".into()
        }
    );
    assert_eq!(members(s, &p1), vec![k1.clone(), k2.clone()]);
    assert_eq!(s.members(&p1).unwrap().len(), 2);

    let p2 = create(s, rec("lab", "3", "Okafor"));
    assert_ne!(p1, p2);

    // registrar moves k2 to p2
    let moved = run(s, 3, |p| {
        p.move_record(&k2, &p2, LinkMethod::Registrar).unwrap()
    });
    assert_eq!(
        (moved.from, moved.to.clone(), moved.from_retired),
        (p1.clone(), p2.clone(), false)
    );
    assert_eq!(members(s, &p1), vec![k1.clone()]);
    assert_eq!(members(s, &p2), vec![k3.clone(), k2.clone()]);
    assert_eq!(
        s.get_record(&k2).unwrap().unwrap().link.method,
        LinkMethod::Registrar
    );

    // moving the last record retires the person it leaves
    let moved = run(s, 4, |p| {
        p.move_record(&k1, &p2, LinkMethod::Registrar).unwrap()
    });
    assert!(moved.from_retired);
    assert_eq!(status(s, &p1), PersonStatus::Retired);
    assert!(members(s, &p1).is_empty());
    assert_eq!(s.stats().unwrap().persons, 1);

    // a retired person takes no records
    let mut plan = Plan::new(s, stamp(5));
    assert!(is_conflict(plan.add_record(
        rec("adt", "9", "X"),
        &p1,
        LinkMethod::Registrar
    )));

    // merge a new person into p2
    let p3 = create(s, rec("adt", "4", "Garcia"));
    let moved = run(s, 6, |p| p.merge_persons(&p3, &p2).unwrap());
    assert_eq!(moved, vec![key("adt", "4")]);
    assert_eq!(status(s, &p3), PersonStatus::MergedInto(p2.clone()));
    assert_eq!(euid_of(s, &key("adt", "4")), p2);
    assert_eq!(
        s.get_record(&key("adt", "4")).unwrap().unwrap().link.method,
        LinkMethod::Merge
    );
    assert_eq!(members(s, &p2).len(), 4);

    // remove everything; the person retires with its last record
    for (i, k) in members(s, &p2).iter().enumerate() {
        let removed = run(s, 10 + i as i64, |p| p.remove_record(k).unwrap());
        assert_eq!(removed.euid, p2);
        assert_eq!(removed.retired, i == 3);
        assert!(s.get_record(k).unwrap().is_none());
    }
    assert_eq!(status(s, &p2), PersonStatus::Retired);
    let stats = s.stats().unwrap();
    assert_eq!((stats.records, stats.persons, stats.open_tasks), (0, 0, 0));
}

fn merged_euids_lead_to_their_survivor_through_chains(s: Dyn) {
    let s = &*s;
    let a = create(s, rec("adt", "a", "A"));
    let b = create(s, rec("adt", "b", "B"));
    let c = create(s, rec("adt", "c", "C"));
    run(s, 2, |p| p.merge_persons(&a, &b).unwrap());
    let survivor = s.survivor_of(&a).unwrap().unwrap();
    assert!(survivor.was_merged());
    assert_eq!(survivor.person.euid, b);
    assert_eq!(survivor.path, vec![a.clone(), b.clone()]);
    run(s, 3, |p| p.merge_persons(&b, &c).unwrap());
    let survivor = s.survivor_of(&a).unwrap().unwrap();
    assert_eq!(survivor.person.euid, c);
    assert_eq!(survivor.path, vec![a.clone(), b.clone(), c.clone()]);
    assert_eq!(survivor.person.members.len(), 3);
    // members() follows merges too
    let keys: Vec<_> = s.members(&a).unwrap().iter().map(|r| r.key()).collect();
    // joining order: c's own record, then b's (which had absorbed a's)
    assert_eq!(
        keys,
        vec![key("adt", "c"), key("adt", "b"), key("adt", "a")]
    );
    let direct = s.survivor_of(&c).unwrap().unwrap();
    assert!(!direct.was_merged());
    assert_eq!(direct.path, vec![c.clone()]);
    // operations aimed at a merged EUID land on the survivor
    let joined = run(s, 4, |p| {
        p.add_record(rec("adt", "d", "D"), &a, LinkMethod::Registrar)
            .unwrap()
    });
    assert_eq!(joined, c);
    // merging into a merged alias of yourself is refused
    let mut plan = Plan::new(s, stamp(5));
    assert!(is_conflict(plan.merge_persons(&a, &c)));
    assert!(s.survivor_of(&Euid::from_seq(999_999)).unwrap().is_none());
    assert!(matches!(
        s.members(&Euid::from_seq(999_999)),
        Err(Error::NotFound { .. })
    ));
}

fn split_and_unlink(s: Dyn) {
    let s = &*s;
    let p = create(s, rec("adt", "1", "A"));
    for i in 2..=4 {
        run(s, i, |pl| {
            pl.add_record(rec("adt", &i.to_string(), "A"), &p, LinkMethod::Registrar)
                .unwrap()
        });
    }
    let out = vec![key("adt", "2"), key("adt", "4")];
    let q = run(s, 10, |pl| pl.split_person(&p, &out).unwrap());
    assert_eq!(members(s, &p), vec![key("adt", "1"), key("adt", "3")]);
    assert_eq!(members(s, &q), out);
    assert_eq!(euid_of(s, &key("adt", "4")), q);
    assert_eq!(actions(s, &q), vec![HistoryAction::PersonCreated]);
    assert_eq!(s.history(&q).unwrap()[0].euids, vec![p.clone()]);
    assert_eq!(actions(s, &p).last(), Some(&HistoryAction::Split));

    // unlink one record of p into its own person
    let moved = run(s, 11, |pl| pl.unlink_record(&key("adt", "3")).unwrap());
    assert_eq!(moved.from, p);
    assert!(!moved.from_retired);
    assert_eq!(members(s, &moved.to), vec![key("adt", "3")]);
    assert_eq!(members(s, &p), vec![key("adt", "1")]);
    assert_eq!(s.stats().unwrap().persons, 3);

    // refusals: the only record, everything, not a member, empty, repeated
    let mut plan = Plan::new(s, stamp(12));
    assert!(is_conflict(plan.unlink_record(&key("adt", "1"))));
    assert!(is_conflict(plan.split_person(&p, &[key("adt", "1")])));
    assert!(is_conflict(plan.split_person(&q, &[key("adt", "1")])));
    assert!(matches!(
        plan.split_person(&q, &[]),
        Err(Error::InvalidInput { .. })
    ));
    let twice = [key("adt", "2"), key("adt", "2")];
    assert!(matches!(
        plan.split_person(&q, &twice),
        Err(Error::InvalidInput { .. })
    ));
    assert!(plan.is_empty());
}

fn history_is_append_only_and_ordered(s: Dyn) {
    let s = &*s;
    let p = create(s, rec("adt", "1", "A"));
    let after_create = s.history(&p).unwrap();
    assert_eq!(after_create.len(), 1);
    assert_eq!(after_create[0].action, HistoryAction::PersonCreated);
    assert_eq!(after_create[0].records, vec![key("adt", "1")]);
    assert_eq!(
        (
            after_create[0].actor.as_str(),
            after_create[0].reason.as_str()
        ),
        ("tester", "test")
    );

    run(s, 2, |pl| {
        pl.add_record(rec("adt", "2", "A"), &p, LinkMethod::Registrar)
            .unwrap()
    });
    run(s, 3, |pl| pl.update_record(rec("adt", "2", "B")).unwrap());
    let q = create(s, rec("adt", "3", "C"));
    run(s, 4, |pl| {
        pl.move_record(&key("adt", "2"), &q, LinkMethod::Registrar)
            .unwrap()
    });
    run(s, 5, |pl| pl.merge_persons(&q, &p).unwrap());

    let h = s.history(&p).unwrap();
    assert_eq!(
        h.iter().map(|e| e.action).collect::<Vec<_>>(),
        vec![
            HistoryAction::PersonCreated,
            HistoryAction::RecordLinked,
            HistoryAction::RecordUpdated,
            HistoryAction::RecordUnlinked,
            HistoryAction::MergeAbsorbed,
        ]
    );
    // earlier entries are unchanged by later writes
    assert_eq!(h[0], after_create[0]);
    // strictly increasing store-wide sequence, non-decreasing time, owner set
    assert!(h
        .windows(2)
        .all(|w| w[0].seq < w[1].seq && w[0].at <= w[1].at));
    assert!(h.iter().all(|e| e.euid == p));
    assert_eq!(h[3].euids, vec![q.clone()]);
    let hq = actions(s, &q);
    assert_eq!(
        hq,
        vec![
            HistoryAction::PersonCreated,
            HistoryAction::RecordLinked,
            HistoryAction::MergedInto
        ]
    );
    // sequence numbers are unique across persons
    let mut all: Vec<u64> = h
        .iter()
        .chain(s.history(&q).unwrap().iter())
        .map(|e| e.seq)
        .collect();
    let n = all.len();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), n);
    // an unknown person has no history
    assert!(s.history(&Euid::from_seq(424_242)).unwrap().is_empty());
}

fn tasks_page_and_filter(s: Dyn) {
    let s = &*s;
    let target = create(s, rec("adt", "0", "T"));
    let mut ids = Vec::new();
    for i in 1..=25i64 {
        let r = rec("adt", &i.to_string(), "T");
        let id = run(s, i * 1000, |p| {
            p.create_person(r.clone(), LinkMethod::Created).unwrap();
            let c = TaskCandidate {
                euid: target.clone(),
                score: 3.0,
                probability: 0.8,
            };
            p.open_task(&r.key(), vec![c], serde_json::json!({"n": i}))
                .unwrap()
        });
        ids.push(id);
    }
    assert!(ids.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(s.stats().unwrap().open_tasks, 25);
    let t = s.get_task(ids[0]).unwrap().unwrap();
    assert!(t.is_open());
    assert_eq!(t.explanation, serde_json::json!({"n": 1}));
    assert_eq!(t.created_at, UnixMillis(1000));
    assert_eq!(t.candidates[0].euid, target);
    assert_eq!(
        actions(s, &euid_of(s, &key("adt", "1"))).last(),
        Some(&HistoryAction::ReviewOpened)
    );

    // resolve every third task (ids[0], ids[3], ...): 9 resolved, 16 open
    for (i, id) in ids.iter().enumerate().filter(|(i, _)| i % 3 == 0) {
        run(s, 100_000 + i as i64, |p| {
            p.resolve_task(*id, ResolutionAction::KeepSeparate).unwrap()
        });
    }
    assert_eq!(s.stats().unwrap().open_tasks, 16);
    let resolved = s.get_task(ids[0]).unwrap().unwrap();
    assert!(!resolved.is_open());
    let mut plan = Plan::new(s, stamp(1));
    assert!(is_conflict(
        plan.resolve_task(ids[0], ResolutionAction::KeepSeparate)
    ));
    assert!(matches!(
        plan.resolve_task(TaskId(9_999), ResolutionAction::KeepSeparate),
        Err(Error::NotFound { .. })
    ));

    let collect = |q: TaskQuery| -> (Vec<TaskId>, usize) {
        let mut q = q;
        let mut out = Vec::new();
        let mut pages = 0;
        loop {
            let page = s.list_tasks(&q).unwrap();
            pages += 1;
            assert!(page.tasks.len() <= q.effective_page_size());
            out.extend(page.tasks.iter().map(|t| t.id));
            match page.next {
                Some(n) => q.after = Some(n),
                None => return (out, pages),
            }
        }
    };
    let open: Vec<TaskId> = ids
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 3 != 0)
        .map(|(_, id)| *id)
        .collect();
    let closed: Vec<TaskId> = ids
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 3 == 0)
        .map(|(_, id)| *id)
        .collect();

    let (got, pages) = collect(TaskQuery {
        open: Some(true),
        page_size: 5,
        ..Default::default()
    });
    assert_eq!(got, open);
    assert_eq!(pages, 4); // 5 + 5 + 5 + 1
    let (got, _) = collect(TaskQuery {
        open: Some(false),
        page_size: 4,
        ..Default::default()
    });
    assert_eq!(got, closed);
    let (got, pages) = collect(TaskQuery {
        page_size: 10,
        ..Default::default()
    });
    assert_eq!(got, ids);
    assert_eq!(pages, 3);
    // exactly one full page: no next token
    let page = s
        .list_tasks(&TaskQuery {
            open: Some(true),
            page_size: 16,
            ..Default::default()
        })
        .unwrap();
    assert_eq!((page.tasks.len(), page.next), (16, None));

    // age filters: created at i*1000 for task i (1-based)
    let q = TaskQuery {
        open: Some(true),
        created_at_or_after: Some(UnixMillis(5_000)),
        created_at_or_before: Some(UnixMillis(12_000)),
        page_size: 3,
        ..Default::default()
    };
    let (got, _) = collect(q);
    // tasks 5..=12 that are open: 5,6,8,9,11,12 (indices 4,5,7,8,10,11)
    let want: Vec<TaskId> = [4, 5, 7, 8, 10, 11].iter().map(|&i| ids[i]).collect();
    assert_eq!(got, want);
    let none = s.list_tasks(&TaskQuery {
        created_at_or_before: Some(UnixMillis(10)),
        ..Default::default()
    });
    assert!(none.unwrap().tasks.is_empty());

    let for_record = s.open_tasks_for_record(&key("adt", "2")).unwrap();
    assert_eq!(
        for_record.iter().map(|t| t.id).collect::<Vec<_>>(),
        vec![ids[1]]
    );
    assert!(s
        .open_tasks_for_record(&key("adt", "1"))
        .unwrap()
        .is_empty());
}

fn removing_a_record_supersedes_its_open_tasks(s: Dyn) {
    let s = &*s;
    let a = create(s, rec("adt", "a", "A"));
    let b = create(s, rec("adt", "b", "B"));
    let c = TaskCandidate {
        euid: a.clone(),
        score: 1.0,
        probability: 0.6,
    };
    let t = run(s, 2, |p| {
        p.open_task(&key("adt", "b"), vec![c], serde_json::Value::Null)
            .unwrap()
    });
    assert_eq!(s.stats().unwrap().open_tasks, 1);
    let removed = run(s, 3, |p| p.remove_record(&key("adt", "b")).unwrap());
    assert_eq!(removed.superseded_tasks, vec![t]);
    assert!(removed.retired);
    assert_eq!(status(s, &b), PersonStatus::Retired);
    let task = s.get_task(t).unwrap().unwrap();
    assert!(
        matches!(&task.status, empi::store::TaskStatus::Resolved(r) if r.action == ResolutionAction::Superseded)
    );
    assert_eq!(s.stats().unwrap().open_tasks, 0);
    assert!(s
        .open_tasks_for_record(&key("adt", "b"))
        .unwrap()
        .is_empty());
    let h = actions(s, &b);
    assert_eq!(
        h,
        vec![
            HistoryAction::PersonCreated,
            HistoryAction::ReviewOpened,
            HistoryAction::ReviewResolved,
            HistoryAction::RecordRemoved,
            HistoryAction::Retired,
        ]
    );
    // a task cannot be opened for a record that is not stored
    let mut plan = Plan::new(s, stamp(4));
    assert!(matches!(
        plan.open_task(&key("adt", "b"), vec![], serde_json::Value::Null),
        Err(Error::NotFound { .. })
    ));
}

fn not_duplicate_assertions(s: Dyn) {
    let s = &*s;
    let a = create(s, rec("adt", "a", "A"));
    let b = create(s, rec("adt", "b", "B"));
    let c = create(s, rec("adt", "c", "C"));
    assert!(s.not_duplicate(&a, &b).unwrap().is_none());
    run(s, 2, |p| p.assert_not_duplicate(&a, &b).unwrap());
    let n = s.not_duplicate(&a, &b).unwrap().unwrap();
    assert_eq!(
        (n.a.clone(), n.b.clone(), n.actor.as_str()),
        (a.clone(), b.clone(), "tester")
    );
    let r = s.not_duplicate(&b, &a).unwrap().unwrap();
    assert_eq!((r.a.clone(), r.b.clone()), (b.clone(), a.clone()));
    assert!(s.not_duplicate(&a, &c).unwrap().is_none());
    assert_eq!(s.not_duplicates_of(&b).unwrap().len(), 1);
    assert_eq!(
        actions(s, &a).last(),
        Some(&HistoryAction::NotDuplicateAsserted)
    );

    // asserted persons cannot be merged
    let mut plan = Plan::new(s, stamp(3));
    assert!(is_conflict(plan.merge_persons(&a, &b)));
    assert!(is_conflict(plan.merge_persons(&b, &a)));
    assert!(is_conflict(plan.assert_not_duplicate(&a, &a)));

    // merging a into c carries the assertion to c; lookups through a resolve to c
    run(s, 4, |p| p.merge_persons(&a, &c).unwrap());
    assert!(s.not_duplicate(&c, &b).unwrap().is_some());
    assert!(s.not_duplicate(&b, &c).unwrap().is_some());
    assert!(s.not_duplicate(&a, &b).unwrap().is_some());

    // retracting lifts it
    assert!(run(s, 5, |p| p.retract_not_duplicate(&c, &b).unwrap()));
    assert!(s.not_duplicate(&c, &b).unwrap().is_none());
    assert!(!run(s, 6, |p| p.retract_not_duplicate(&c, &b).unwrap()));
    run(s, 7, |p| p.merge_persons(&b, &c).unwrap());

    // an assertion about a person that does not exist is refused
    let bad: ChangeSet = vec![Op::PutNotDuplicate(empi::store::NotDuplicate {
        a: c.clone(),
        b: Euid::from_seq(777_777),
        at: UnixMillis(1),
        actor: "t".into(),
        reason: String::new(),
    })]
    .into();
    assert!(is_defect(s.apply(&bad)));
    assert_consistent(s);
}

fn counters_follow_every_operation(s: Dyn) {
    let s = &*s;
    let expect = |records, persons, open| {
        let st = s.stats().unwrap();
        assert_eq!(
            (st.records, st.persons, st.open_tasks),
            (records, persons, open)
        );
        let rep = s.check().unwrap();
        assert!(rep.is_ok(), "{:?}", rep.problems);
        assert_eq!(
            (rep.records, rep.active_persons, rep.open_tasks),
            (records, persons, open)
        );
    };
    expect(0, 0, 0);
    let a = create(s, rec("adt", "1", "A"));
    expect(1, 1, 0);
    run(s, 2, |p| {
        p.add_record(rec("adt", "2", "A"), &a, LinkMethod::Registrar)
            .unwrap()
    });
    expect(2, 1, 0);
    let b = create(s, rec("adt", "3", "B"));
    expect(3, 2, 0);
    let c = TaskCandidate {
        euid: a.clone(),
        score: 2.0,
        probability: 0.7,
    };
    let t = run(s, 3, |p| {
        p.open_task(&key("adt", "3"), vec![c], serde_json::Value::Null)
            .unwrap()
    });
    expect(3, 2, 1);
    run(s, 4, |p| {
        p.merge_persons(&b, &a).unwrap();
        p.resolve_task(t, ResolutionAction::Merge { into: a.clone() })
            .unwrap();
    });
    expect(3, 1, 0);
    run(s, 5, |p| p.unlink_record(&key("adt", "1")).unwrap());
    expect(3, 2, 0);
    run(s, 6, |p| p.remove_record(&key("adt", "1")).unwrap());
    expect(2, 1, 0);
    run(s, 7, |p| p.set_model_version("fs-2026.1"));
    assert_eq!(
        s.stats().unwrap().model_version.as_deref(),
        Some("fs-2026.1")
    );
    let rep = s.check().unwrap();
    assert_eq!(
        (rep.merged_persons, rep.retired_persons, rep.tasks),
        (1, 1, 1)
    );
}

fn failed_change_set_leaves_nothing_changed(s: Dyn) {
    let s = &*s;
    let a = create(s, rec("adt", "1", "A"));
    let snapshot = |s: &DynStore| {
        let records: Vec<StoredRecord> = s.records().map(Result::unwrap).collect();
        // the encoded form decodes to the same records, fully or as index entries
        let encoded: Vec<Vec<u8>> = s.encoded_records().map(Result::unwrap).collect();
        assert_eq!(encoded.len(), records.len());
        for (bytes, r) in encoded.iter().zip(&records) {
            assert_eq!(&StoredRecord::decode(bytes).unwrap(), r);
            let entry = empi::store::RecordEntry::decode(bytes).unwrap();
            assert_eq!((&entry.record, &entry.euid), (&r.record, &r.euid));
        }
        (
            records,
            s.stats().unwrap(),
            s.history(&a).unwrap(),
            s.get_person(&a).unwrap(),
        )
    };
    let before = snapshot(s);

    // valid writes first, a stale write last: the valid ones must not land
    let mut plan = Plan::new(s, stamp(2));
    plan.add_record(rec("adt", "2", "A"), &a, LinkMethod::Registrar)
        .unwrap();
    plan.create_person(rec("adt", "3", "B"), LinkMethod::Created)
        .unwrap();
    plan.set_model_version("never");
    let mut changes = plan.finish();
    let mut stale = s.get_person(&a).unwrap().unwrap();
    stale.version -= 1;
    // the plan already writes `a`; a second write to it must be refused as well
    let mut dup = changes.clone();
    dup.push(Op::PutPerson(stale.clone()));
    assert!(is_defect(s.apply(&dup)));
    // replace the plan's write of `a` by a stale one: fails inside the transaction
    let ops: Vec<Op> = changes
        .ops()
        .iter()
        .cloned()
        .map(|op| match op {
            Op::PutPerson(p) if p.euid == a => Op::PutPerson(Person {
                version: stale.version,
                ..p
            }),
            other => other,
        })
        .collect();
    changes = ops.into();
    let err = s.apply(&changes).unwrap_err();
    assert!(
        matches!(err, Error::Stale(ref m) if m.contains("stale")),
        "{err}"
    );
    assert_eq!(snapshot(s), before);
    assert_eq!(s.stats().unwrap().model_version, None);
    assert!(s.get_record(&key("adt", "3")).unwrap().is_none());

    // a change set that would break an invariant: a record whose person does not list it
    let orphan = StoredRecord {
        record: rec("adt", "9", "Z"),
        euid: a.clone(),
        link: LinkInfo {
            method: LinkMethod::Registrar,
            at: UnixMillis(3),
            actor: "t".into(),
        },
        updated_at: UnixMillis(3),
        answer: None,
        version: 0,
    };
    let err = s
        .apply(&vec![Op::PutRecord(orphan.clone())].into())
        .unwrap_err();
    assert!(
        matches!(err, Error::Internal(ref m) if m.contains("does not list")),
        "{err}"
    );
    // ...or a person listing a record twice, or an active person without records
    let mut twice = s.get_person(&a).unwrap().unwrap();
    twice.members.push(key("adt", "1"));
    assert!(is_defect(s.apply(&vec![Op::PutPerson(twice)].into())));
    let mut empty = s.get_person(&a).unwrap().unwrap();
    empty.members.clear();
    assert!(is_defect(s.apply(&vec![Op::PutPerson(empty)].into())));
    // deleting a record its person still lists
    let del = Op::DeleteRecord {
        key: key("adt", "1"),
        version: 1,
    };
    assert!(is_defect(s.apply(&vec![del].into())));
    // deleting a record that is not there
    let del = Op::DeleteRecord {
        key: key("adt", "404"),
        version: 1,
    };
    assert!(matches!(
        s.apply(&vec![del].into()),
        Err(Error::NotFound { .. })
    ));
    // a key that cannot be encoded
    let mut nul = orphan;
    nul.record.local_id = "a\0b".into();
    assert!(matches!(
        s.apply(&vec![Op::PutRecord(nul)].into()),
        Err(Error::InvalidInput { .. })
    ));

    assert_eq!(snapshot(s), before);
    assert_consistent(s);
    // the store still works afterwards
    run(s, 4, |p| {
        p.add_record(rec("adt", "2", "A"), &a, LinkMethod::Registrar)
            .unwrap()
    });
    assert_eq!(members(s, &a).len(), 2);
}

fn stale_plans_conflict_and_retry(s: Dyn) {
    let s = &*s;
    let a = create(s, rec("adt", "1", "A"));
    // two plans read the same person; the second to commit loses
    let mut first = Plan::new(s, stamp(2));
    let mut second = Plan::new(s, stamp(2));
    first
        .add_record(rec("adt", "2", "A"), &a, LinkMethod::Registrar)
        .unwrap();
    second
        .add_record(rec("adt", "3", "A"), &a, LinkMethod::Registrar)
        .unwrap();
    s.commit_sync(&first.finish()).unwrap();
    assert!(is_stale(s.apply(&second.finish())));
    assert_eq!(members(s, &a).len(), 2);
    assert!(s.get_record(&key("adt", "3")).unwrap().is_none());

    // the same new key from two plans: one wins
    let mut x = Plan::new(s, stamp(3));
    let mut y = Plan::new(s, stamp(3));
    x.create_person(rec("adt", "5", "B"), LinkMethod::Created)
        .unwrap();
    y.create_person(rec("adt", "5", "B"), LinkMethod::Created)
        .unwrap();
    s.commit_sync(&x.finish()).unwrap();
    assert!(is_stale(s.apply(&y.finish())));

    // retry_on_stale re-plans from fresh reads
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut attempts = 0;
    rt.block_on(empi::store::retry_on_stale(3, || {
        attempts += 1;
        let mut plan = Plan::new(s, stamp(4));
        let result = plan.add_record(rec("adt", "3", "A"), &a, LinkMethod::Registrar);
        let changes = plan.finish();
        if attempts == 1 {
            // simulate a concurrent writer sneaking in between read and commit
            let mut sneak = Plan::new(s, stamp(4));
            sneak
                .add_record(rec("adt", "4", "A"), &a, LinkMethod::Registrar)
                .unwrap();
            s.commit_sync(&sneak.finish()).unwrap();
        }
        async move {
            result?;
            let ticket = s.apply(&changes)?;
            s.wait_durable(ticket).await
        }
    }))
    .unwrap();
    assert_eq!(attempts, 2);
    assert_eq!(members(s, &a).len(), 4);
    assert_consistent(s);
}

fn invalid_operations_are_refused(s: Dyn) {
    let s = &*s;
    let a = create(s, rec("adt", "1", "A"));
    let mut plan = Plan::new(s, stamp(2));
    assert!(is_conflict(
        plan.create_person(rec("adt", "1", "A"), LinkMethod::Created)
    ));
    assert!(is_conflict(plan.add_record(
        rec("adt", "1", "A"),
        &a,
        LinkMethod::Registrar
    )));
    let nobody = Euid::from_seq(123_456);
    assert!(matches!(
        plan.add_record(rec("adt", "2", "A"), &nobody, LinkMethod::Registrar),
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        plan.update_record(rec("adt", "7", "A")),
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        plan.remove_record(&key("adt", "7")),
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        plan.move_record(&key("adt", "7"), &a, LinkMethod::Registrar),
        Err(Error::NotFound { .. })
    ));
    assert!(is_conflict(plan.merge_persons(&a, &a)));
    let c = TaskCandidate {
        euid: nobody,
        score: 1.0,
        probability: 0.5,
    };
    assert!(matches!(
        plan.open_task(&key("adt", "1"), vec![c], serde_json::Value::Null),
        Err(Error::NotFound { .. })
    ));
    // moving a record to its own person is a no-op
    let moved = plan
        .move_record(&key("adt", "1"), &a, LinkMethod::Registrar)
        .unwrap();
    assert_eq!(moved.from, moved.to);
    assert!(plan.is_empty());
    assert!(plan.finish().is_empty());
    assert!(matches!(
        s.get_record(&key("a\0b", "1")),
        Err(Error::InvalidInput { .. })
    ));
}

/// The stored record if it is identical to `record` (an idempotent repeat), else `None`.
fn stored_if_identical(s: &dyn Store, record: &Record) -> empi::Result<Option<StoredRecord>> {
    Ok(s.get_record(&record.key())?
        .filter(|stored| &stored.record == record))
}

fn identical_resubmission_is_detected(s: Dyn) {
    let s = &*s;
    let r = rec("adt", "1", "A");
    assert!(stored_if_identical(s, &r).unwrap().is_none());
    let a = create(s, r.clone());
    assert_eq!(stored_if_identical(s, &r).unwrap().unwrap().euid, a);
    let mut changed = r.clone();
    changed.phones.push("555-0100".into());
    assert!(stored_if_identical(s, &changed).unwrap().is_none());
    run(s, 2, |p| p.update_record(changed.clone()).unwrap());
    assert!(stored_if_identical(s, &r).unwrap().is_none());
    let stored = stored_if_identical(s, &changed).unwrap().unwrap();
    assert_eq!(stored.updated_at, UnixMillis(2));
    assert_eq!(stored.link.method, LinkMethod::Created); // the link is kept
                                                         // an empty change set is a no-op
    let before = s.flush_count();
    s.commit_sync(&ChangeSet::new()).unwrap();
    assert_eq!(s.flush_count(), before);
}

fn euids_and_task_ids_are_never_reused(s: Dyn) {
    let s = &*s;
    let e1 = s.allocate_euid().unwrap();
    // a plan that is thrown away still consumes its ids
    let mut plan = Plan::new(s, stamp(1));
    let wasted = plan
        .create_person(rec("adt", "1", "A"), LinkMethod::Created)
        .unwrap();
    drop(plan);
    let e2 = create(s, rec("adt", "1", "A"));
    assert!(e1 < wasted && wasted < e2, "{e1} {wasted} {e2}");
    assert_eq!(e2.seq(), wasted.seq() + 1);
    let t1 = s.allocate_task_id().unwrap();
    let t2 = s.allocate_task_id().unwrap();
    assert!(t1 < t2);
    assert_consistent(s);
}

fn concurrent_commits_share_flushes(s: Dyn) {
    const TASKS: usize = 32;
    const WRITES: usize = 50;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let flushes_before = s.flush_count();
    rt.block_on(async {
        let mut handles = Vec::new();
        for t in 0..TASKS {
            let s = Arc::clone(&s);
            handles.push(tokio::spawn(async move {
                for w in 0..WRITES {
                    let r = rec(&format!("src{t}"), &w.to_string(), "Concurrent");
                    let mut plan = Plan::new(&*s, stamp(1));
                    plan.create_person(r, LinkMethod::Created).unwrap();
                    let changes = plan.finish();
                    let ticket = s.apply(&changes).unwrap();
                    s.wait_durable(ticket).await.unwrap();
                }
            }));
        }
        for h in handles {
            h.await.unwrap();
        }
    });
    let commits = (TASKS * WRITES) as u64;
    let flushes = s.flush_count() - flushes_before;
    assert!(
        flushes >= WRITES as u64,
        "each task committed {WRITES} times in sequence"
    );
    assert!(
        flushes * 4 <= commits,
        "{commits} commits took {flushes} flushes"
    );
    let st = s.stats().unwrap();
    assert_eq!((st.records, st.persons), (commits, commits));
    for t in 0..TASKS {
        for w in 0..WRITES {
            assert!(s
                .get_record(&key(&format!("src{t}"), &w.to_string()))
                .unwrap()
                .is_some());
        }
    }
    assert_consistent(&*s);
}

/// A receipt is written by the change set that carries it, found by id within its window,
/// and dropped by day; `has_source` knows a source by its records.
fn receipts_are_kept_with_their_change_and_pruned_by_day(s: Dyn) {
    let s = &*s;
    let day = 86_400_000;
    let now = UnixMillis::now().0;
    let receipt = |id: &str, at: i64| Receipt {
        id: id.as_bytes().to_vec(),
        at: UnixMillis(at),
        body: format!("answer to {id}").into_bytes(),
    };
    assert!(!s.has_source("adt").unwrap());
    let mut plan = Plan::new(s, stamp(1));
    plan.create_person(rec("adt", "1", "Garcia"), LinkMethod::Created)
        .unwrap();
    let mut changes = plan.finish();
    changes.push(Op::PutReceipt(receipt("m1", now)));
    s.commit_sync(&changes).unwrap();
    assert!(s.has_source("adt").unwrap());
    assert!(
        !s.has_source("ad").unwrap(),
        "a prefix of a source is not one"
    );
    let since = UnixMillis(now - day);
    let found = s.receipt(b"m1", since).unwrap().unwrap();
    assert_eq!(found, receipt("m1", now));
    assert_eq!(s.receipt(b"m2", since).unwrap(), None);

    // A change set that fails (here: stale, another wrote the record first) writes its
    // receipt no more than its change.
    let planned = |at| {
        let mut plan = Plan::new(s, stamp(at));
        plan.create_person(rec("adt", "2", "Garcia"), LinkMethod::Created)
            .unwrap();
        plan.finish()
    };
    let (first, mut second) = (planned(2), planned(3));
    second.push(Op::PutReceipt(receipt("m2", now)));
    s.commit_sync(&first).unwrap();
    assert!(is_stale(s.commit_sync(&second)));
    assert_eq!(s.receipt(b"m2", since).unwrap(), None);

    // Older receipts: outside the window they are not found; pruning drops whole days.
    let old = [receipt("o1", now - 3 * day), receipt("o2", now - 3 * day)];
    let two_days = receipt("o3", now - 2 * day);
    let changes: ChangeSet = old
        .iter()
        .chain([&two_days])
        .map(|r| Op::PutReceipt(r.clone()))
        .collect();
    s.commit_sync(&changes).unwrap();
    assert_eq!(s.receipt(b"o1", since).unwrap(), None);
    assert!(s
        .receipt(b"o1", UnixMillis(now - 4 * day))
        .unwrap()
        .is_some());
    let cutoff = UnixMillis(now - 2 * day);
    assert_eq!(s.prune_receipts(cutoff, 1).unwrap(), 1);
    assert_eq!(s.prune_receipts(cutoff, 10).unwrap(), 1);
    assert_eq!(s.prune_receipts(cutoff, 10).unwrap(), 0);
    let all = UnixMillis(0);
    assert_eq!(s.receipt(b"o1", all).unwrap(), None);
    assert_eq!(s.receipt(b"o3", all).unwrap(), Some(two_days));
    assert_eq!(s.receipt(b"m1", all).unwrap(), Some(receipt("m1", now)));
    assert_consistent(s);
}

// ---- sled only ----------------------------------------------------------------------------

#[test]
fn sled_reopen_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, t, history, stats) = {
        let s = SledStore::open(dir.path()).unwrap();
        let s: &DynStore = &s;
        let a = create(s, rec("adt", "1", "A"));
        let b = create(s, rec("adt", "2", "B"));
        run(s, 2, |p| {
            p.add_record(rec("lab", "3", "A"), &a, LinkMethod::Auto { score: 9.0 })
                .unwrap()
        });
        let c = TaskCandidate {
            euid: a.clone(),
            score: 1.0,
            probability: 0.6,
        };
        let t = run(s, 3, |p| {
            p.open_task(&key("adt", "2"), vec![c], serde_json::json!({"x": 1}))
                .unwrap()
        });
        run(s, 4, |p| {
            p.assert_not_duplicate(&a, &b).unwrap();
            p.set_model_version("v7");
        });
        let history = s.history(&a).unwrap();
        (a, b, t, history, s.stats().unwrap())
    };
    let s = SledStore::open(dir.path()).unwrap();
    assert_eq!(s.path(), dir.path());
    let s: &DynStore = &s;
    assert_eq!(s.stats().unwrap(), stats);
    assert_eq!(stats.model_version.as_deref(), Some("v7"));
    assert_eq!(members(s, &a), vec![key("adt", "1"), key("lab", "3")]);
    assert_eq!(
        s.get_record(&key("lab", "3")).unwrap().unwrap().link.method,
        LinkMethod::Auto { score: 9.0 }
    );
    assert_eq!(
        s.get_task(t).unwrap().unwrap().explanation,
        serde_json::json!({"x": 1})
    );
    assert!(s.not_duplicate(&b, &a).unwrap().is_some());
    assert_eq!(s.history(&a).unwrap(), history);
    assert_eq!(s.records().count(), 3);
    assert_consistent(s);
    // counters continue: no id is handed out twice across restarts
    let next = s.allocate_euid().unwrap();
    assert!(next > b, "{next} after {b}");
    assert!(s.allocate_task_id().unwrap() > t);
    let c = create(s, rec("adt", "9", "C"));
    assert!(s.history(&c).unwrap()[0].seq > history.last().unwrap().seq);
}

#[test]
fn sled_check_reports_corruption_without_patient_data() {
    let dir = tempfile::tempdir().unwrap();
    let a = {
        let s = SledStore::open(dir.path()).unwrap();
        let a = create(&s, rec("adt", "1", "Zyxwvut"));
        run(&s, 2, |p| {
            p.add_record(rec("adt", "2", "Zyxwvut"), &a, LinkMethod::Registrar)
                .unwrap()
        });
        a
    };
    {
        // tamper with the raw trees: drop a member record, garble another, skew a counter
        let db = crate::raw_sled(dir.path());
        let records = db.open_tree("records").unwrap();
        records.remove(b"adt\x001").unwrap();
        let mut garbled = records.get(b"adt\x002").unwrap().unwrap().to_vec();
        garbled.truncate(garbled.len() / 2);
        records.insert(b"adt\x002", garbled).unwrap();
        db.open_tree("meta")
            .unwrap()
            .insert("count_persons", &7u64.to_be_bytes())
            .unwrap();
        db.flush().unwrap();
    }
    let s = SledStore::open(dir.path()).unwrap();
    let report = s.check().unwrap();
    assert!(!report.is_ok());
    let all = report.problems.join("\n");
    assert!(
        all.contains(&format!("person {a}: lists missing record adt/1")),
        "{all}"
    );
    assert!(all.contains("record adt/2: undecodable"), "{all}");
    assert!(
        all.contains("counter of active persons is 7, found 1"),
        "{all}"
    );
    assert!(!all.contains("Zyxwvut") && !all.contains("Test"), "{all}");
    assert!(matches!(s.members(&a), Err(Error::Corrupt(_))));
}

#[test]
fn memory_store_starts_empty_and_consistent() {
    let s = MemoryStore::default();
    assert_eq!(s.stats().unwrap(), empi::store::Stats::default());
    assert!(s.check().unwrap().is_ok());
    assert_eq!(s.records().count(), 0);
}
