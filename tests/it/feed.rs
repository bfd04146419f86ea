//! The change feed: each operation's events, in order and numbered without a gap, shown
//! only once durable, pruned by retention with a clear error for a consumer left behind;
//! and `WatchChanges` through the gRPC door: replay then follow, a consumer stopped
//! mid-stream resuming from its last sequence gets every event exactly once, a consumer
//! ahead of the store or behind retention is told to resynchronise. The store-level tests
//! run on both backends from `store`'s list.

use std::sync::Arc;
use std::time::Duration;

use empi::app::App;
use empi::auth::Identity;
use empi::grpc::pb::{self, change_event::Change as Pb, empi_client::EmpiClient};
use empi::linker::Linker;
use empi::record::{Record, RecordKey};
use empi::service::{Service, ServiceConfig};
use empi::store::{
    Change, ChangeEvent, LinkMethod, MemoryStore, Plan, ResolutionAction, SledStore, Stamp, Store,
    TaskCandidate, UnixMillis,
};
use tonic::transport::Channel;

/// Any store, as the helpers take it (every store is a `'static` type).
type DynStore = dyn Store + 'static;

fn rec(id: &str, family: &str) -> Record {
    Record {
        source: "adt".into(),
        local_id: id.into(),
        given_name: Some("Test".into()),
        family_name: Some(family.into()),
        ..Default::default()
    }
}

fn commit(s: &DynStore, f: impl FnOnce(&mut Plan<'_, DynStore>)) {
    let mut plan = Plan::new(s, Stamp::now("tester", "feed test"));
    f(&mut plan);
    s.commit_sync(&plan.finish()).unwrap();
}

fn all_events(s: &DynStore) -> Vec<ChangeEvent> {
    s.changes_after(0, usize::MAX).unwrap()
}

/// Every kind of change, through the plans the service uses, on both backends.
pub(crate) fn every_operation_publishes_its_events_in_order(s: Arc<dyn Store>) {
    let s = &*s;
    let (k1, k2, k3) = (
        RecordKey::new("adt", "1"),
        RecordKey::new("adt", "2"),
        RecordKey::new("adt", "3"),
    );
    let mut e = Vec::new();
    commit(s, |p| {
        e.push(p.create_person(rec("1", "A"), LinkMethod::Created).unwrap())
    });
    let a = e[0].clone();
    commit(s, |p| {
        p.add_record(rec("2", "A"), &a, LinkMethod::Auto { score: 20.0 })
            .unwrap();
    });
    commit(s, |p| {
        e.push(p.create_person(rec("3", "B"), LinkMethod::Created).unwrap())
    });
    let b = e[1].clone();
    commit(s, |p| {
        p.update_record(rec("3", "Bee")).unwrap();
    });
    let mut task = None;
    commit(s, |p| {
        task = Some(
            p.open_task(
                &k3,
                vec![TaskCandidate {
                    euid: a.clone(),
                    score: 5.0,
                    probability: 0.5,
                }],
                serde_json::Value::Null,
            )
            .unwrap(),
        );
    });
    let task = task.unwrap();
    commit(s, |p| {
        p.resolve_task(task, ResolutionAction::KeepSeparate)
            .unwrap();
        p.assert_not_duplicate(&a, &b).unwrap();
    });
    commit(s, |p| {
        p.retract_not_duplicate(&a, &b).unwrap();
    });
    commit(s, |p| {
        p.move_record(&k2, &b, LinkMethod::Registrar).unwrap();
    });
    let mut unlinked = None;
    commit(s, |p| unlinked = Some(p.unlink_record(&k2).unwrap().to));
    let c = unlinked.unwrap();
    commit(s, |p| {
        p.merge_persons(&c, &b).unwrap();
    });
    let mut split = None;
    commit(s, |p| {
        split = Some(p.split_person(&b, std::slice::from_ref(&k2)).unwrap())
    });
    let d = split.unwrap();
    commit(s, |p| {
        p.remove_record(&k2).unwrap();
    });

    let events = all_events(s);
    let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
    assert_eq!(
        seqs,
        (1..=events.len() as u64).collect::<Vec<_>>(),
        "gap-free"
    );
    let changes: Vec<Change> = events.into_iter().map(|e| e.change).collect();
    let want = vec![
        Change::PersonCreated {
            euid: a.clone(),
            records: vec![k1.clone()],
        },
        Change::RecordLinked {
            record: k2.clone(),
            euid: a.clone(),
        },
        Change::PersonCreated {
            euid: b.clone(),
            records: vec![k3.clone()],
        },
        Change::RecordUpdated {
            record: k3.clone(),
            euid: b.clone(),
        },
        Change::ReviewOpened {
            task,
            record: k3.clone(),
            euid: b.clone(),
            candidates: vec![a.clone()],
        },
        Change::ReviewResolved {
            task,
            record: k3.clone(),
            euid: Some(b.clone()),
            resolution: ResolutionAction::KeepSeparate,
        },
        Change::NotDuplicateAsserted {
            a: a.clone(),
            b: b.clone(),
        },
        Change::NotDuplicateRetracted {
            a: a.clone(),
            b: b.clone(),
        },
        Change::RecordMoved {
            record: k2.clone(),
            from: a.clone(),
            to: b.clone(),
        },
        Change::RecordUnlinked {
            record: k2.clone(),
            from: b.clone(),
            to: c.clone(),
        },
        Change::PersonsMerged {
            merged: c.clone(),
            survivor: b.clone(),
            records: vec![k2.clone()],
        },
        Change::PersonSplit {
            euid: b.clone(),
            new_euid: d.clone(),
            records: vec![k2.clone()],
        },
        Change::RecordRemoved {
            record: k2.clone(),
            euid: d.clone(),
        },
        Change::PersonRetired { euid: d },
    ];
    assert_eq!(changes, want);
    let report = s.check().unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    assert_eq!(report.feed_events, want.len() as u64);
}

/// An event is shown once the flush after it succeeded, not when it is applied.
pub(crate) fn events_are_shown_once_durable(s: Arc<dyn Store>) {
    let s = &*s;
    let mut heads = s.watch_feed();
    let mut plan = Plan::new(s, Stamp::now("tester", ""));
    plan.create_person(rec("1", "A"), LinkMethod::Created)
        .unwrap();
    s.apply(&plan.finish()).unwrap();
    assert!(all_events(s).is_empty(), "applied, not durable");
    assert_eq!(s.feed_bounds().unwrap().head, 0);
    assert!(!heads.has_changed().unwrap());
    s.flush().unwrap();
    assert!(heads.has_changed().unwrap(), "followers are woken");
    assert_eq!(*heads.borrow_and_update(), 1);
    assert_eq!(all_events(s).len(), 1);
}

/// Retention drops the oldest events in bounded batches; the feed then starts later, and
/// the store stays consistent.
pub(crate) fn retention_drops_the_oldest_events(s: Arc<dyn Store>) {
    let s = &*s;
    for i in 0..5 {
        commit(s, |p| {
            p.create_person(rec(&i.to_string(), "A"), LinkMethod::Created)
                .unwrap();
        });
    }
    let future = UnixMillis(UnixMillis::now().0 + 60_000);
    assert_eq!(s.prune_changes(UnixMillis(0), 10).unwrap(), 0, "none older");
    assert_eq!(s.prune_changes(future, 2).unwrap(), 2);
    assert_eq!(s.prune_changes(future, 2).unwrap(), 2);
    s.flush().unwrap();
    let bounds = s.feed_bounds().unwrap();
    assert_eq!((bounds.first, bounds.head), (5, 5));
    assert!(!bounds.resumable(3) && bounds.resumable(4) && !bounds.resumable(6));
    assert_eq!(all_events(s)[0].seq, 5, "a reader from 0 finds the gap");
    let report = s.check().unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    assert_eq!(s.prune_changes(future, 10).unwrap(), 1);
    commit(s, |p| {
        p.create_person(rec("9", "A"), LinkMethod::Created).unwrap();
    });
    assert_eq!(all_events(s)[0].seq, 6, "numbers go on after pruning");
    assert!(s.check().unwrap().is_ok());
}

/// A change set that fails writes no event and takes no number.
#[test]
fn a_refused_change_set_publishes_nothing() {
    let s = MemoryStore::new();
    commit(&s, |p| {
        p.create_person(rec("1", "A"), LinkMethod::Created).unwrap();
    });
    let mut plan = Plan::new(&s as &DynStore, Stamp::now("tester", ""));
    plan.create_person(rec("2", "A"), LinkMethod::Created)
        .unwrap();
    let changes = plan.finish();
    // The same new record twice in one set is refused as a whole.
    let mut twice = changes.clone();
    twice.extend(changes);
    assert!(s.commit_sync(&twice).is_err());
    commit(&s, |p| {
        p.create_person(rec("3", "A"), LinkMethod::Created).unwrap();
    });
    let seqs: Vec<u64> = all_events(&s).iter().map(|e| e.seq).collect();
    assert_eq!(seqs, [1, 2]);
}

// ---- through the gRPC door --------------------------------------------------------------

/// An in-process server over a sled store; the app is kept for pruning.
struct Served {
    addr: String,
    app: Arc<App>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

/// The application layer over `store`, without audit or space checks.
fn app_over(store: Arc<dyn Store>) -> Arc<App> {
    let linker = Linker::with_default_model();
    let service = Service::open(store, linker, ServiceConfig::default()).unwrap();
    Arc::new(App::new(Arc::new(service), None, None))
}

impl Served {
    async fn start() -> Served {
        let dir = tempfile::tempdir().unwrap();
        let app = app_over(Arc::new(SledStore::open(dir.path()).unwrap()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let for_server = Arc::clone(&app);
        let task = tokio::spawn(async move {
            empi::grpc::serve_app(
                listener,
                for_server,
                empi::auth::Security::local_dev(),
                async {
                    let _ = stopped.await;
                },
            )
            .await
            .unwrap();
        });
        Served {
            addr,
            app,
            stop: Some(stop),
            task,
            _dir: dir,
        }
    }

    async fn client(&self) -> EmpiClient<Channel> {
        EmpiClient::connect(format!("http://{}", self.addr))
            .await
            .unwrap()
    }

    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        let _ = self.task.await;
    }
}

async fn submit(c: &mut EmpiClient<Channel>, id: usize) -> String {
    let record = pb::PatientRecord {
        source: "adt".into(),
        local_id: format!("MRN{id}"),
        given_name: Some(format!("Given{id}")),
        family_name: Some(format!("Family{id}")),
        birth_date: Some("1970-01-01".into()),
        ..Default::default()
    };
    c.match_or_create(pb::MatchOrCreateRequest {
        record: Some(record),
        ..Default::default()
    })
    .await
    .unwrap()
    .into_inner()
    .euid
}

/// Reads messages until `n` events arrived (or panics after 20 s).
async fn take(
    stream: &mut tonic::Streaming<pb::WatchChangesResponse>,
    n: usize,
) -> Vec<pb::ChangeEvent> {
    let mut got = Vec::new();
    while got.len() < n {
        let next = tokio::time::timeout(Duration::from_secs(20), stream.message())
            .await
            .expect("events arrive")
            .unwrap()
            .expect("the stream stays open");
        got.extend(next.events);
    }
    got
}

fn created_euid(e: &pb::ChangeEvent) -> &str {
    match &e.change {
        Some(Pb::PersonCreated(p)) => &p.euid,
        other => panic!("expected person_created, got {other:?}"),
    }
}

/// A consumer stopped mid-stream, more writes, a restart from its last sequence: every
/// event exactly once, in order, each the write's own.
#[tokio::test]
async fn a_consumer_resuming_from_its_last_sequence_misses_nothing_and_sees_nothing_twice() {
    let served = Served::start().await;
    let mut writer = served.client().await;
    let mut euids = Vec::new();
    for i in 0..10 {
        euids.push(submit(&mut writer, i).await);
    }
    let mut consumer = served.client().await;
    let mut stream = consumer
        .watch_changes(pb::WatchChangesRequest { after_sequence: 0 })
        .await
        .unwrap()
        .into_inner();
    // Replay, then live: five more while it follows.
    let mut seen = take(&mut stream, 10).await;
    for i in 10..15 {
        euids.push(submit(&mut writer, i).await);
    }
    seen.extend(take(&mut stream, 5).await);
    // Stopped mid-stream: it processed the first 12 only.
    seen.truncate(12);
    drop(stream);
    for i in 15..25 {
        euids.push(submit(&mut writer, i).await);
    }
    let last = seen.last().unwrap().sequence;
    let mut stream = consumer
        .watch_changes(pb::WatchChangesRequest {
            after_sequence: last,
        })
        .await
        .unwrap()
        .into_inner();
    seen.extend(take(&mut stream, 13).await);
    let seqs: Vec<u64> = seen.iter().map(|e| e.sequence).collect();
    assert_eq!(seqs, (1..=25).collect::<Vec<u64>>());
    let got: Vec<&str> = seen.iter().map(created_euid).collect();
    assert_eq!(got, euids, "each write's own event, in order");
    served.stop().await;
}

/// A position behind retention or ahead of the store is refused with OUT_OF_RANGE and a
/// message saying to resynchronise from the head; a consumer at the head follows on.
#[tokio::test]
async fn a_consumer_behind_retention_or_ahead_of_the_store_is_told_to_resynchronise() {
    let served = Served::start().await;
    let mut c = served.client().await;
    for i in 0..4 {
        submit(&mut c, i).await;
    }
    let ahead = c
        .watch_changes(pb::WatchChangesRequest { after_sequence: 9 })
        .await
        .unwrap_err();
    assert_eq!(ahead.code(), tonic::Code::OutOfRange, "{ahead:?}");
    assert!(ahead.message().contains("restored"), "{}", ahead.message());

    let app = Arc::clone(&served.app);
    let dropped = tokio::task::spawn_blocking(move || app.prune_changes(Duration::ZERO))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(dropped, 4);
    let behind = c
        .watch_changes(pb::WatchChangesRequest { after_sequence: 1 })
        .await
        .unwrap_err();
    assert_eq!(behind.code(), tonic::Code::OutOfRange);
    let text = behind.message();
    assert!(
        text.contains("resynchronise")
            && text.contains("pruned")
            && text.contains("after sequence 4"),
        "{text}"
    );
    let mut stream = c
        .watch_changes(pb::WatchChangesRequest { after_sequence: 4 })
        .await
        .unwrap()
        .into_inner();
    submit(&mut c, 9).await;
    assert_eq!(take(&mut stream, 1).await[0].sequence, 5);
    served.stop().await;
}

/// Only consumers and admins may watch; the call is audited like any other (the role
/// table is checked for every role and operation in `security`).
#[tokio::test]
async fn watching_is_a_consumer_or_admin_call() {
    use empi::app::Caller;
    use empi::auth::Role;
    let app = app_over(Arc::new(MemoryStore::new()));
    let who = |role| {
        Caller::new(
            Identity {
                name: "feed".into(),
                role,
                sources: vec![],
                authenticated: true,
            },
            None,
        )
    };
    assert!(app.watch_changes(&who(Role::Consumer), Ok(0)).await.is_ok());
    assert!(app.watch_changes(&who(Role::Admin), Ok(0)).await.is_ok());
    for role in [Role::Registrar, Role::Submitter] {
        let e = app.watch_changes(&who(role), Ok(0)).await.unwrap_err();
        assert!(matches!(e, empi::Error::Denied(_)), "{role}: {e}");
    }
    assert_eq!(
        app.metrics().calls(
            empi::auth::Operation::WatchChanges,
            empi::error::Code::PermissionDenied
        ),
        2
    );
}
