//! The gRPC API end to end: a real server on `127.0.0.1:0` (in-process, `empi::grpc::serve`)
//! and the generated client. In-memory store except where a restart is the point.

use std::sync::Arc;

use empi::grpc::pb::{self, empi_client::EmpiClient};
use empi::linker::Linker;
use empi::service::{Service, ServiceConfig};
use empi::store::{MemoryStore, SledStore, Store};
use tokio::sync::oneshot;
use tonic::transport::Channel;
use tonic::Code;

/// An in-process server; [`TestServer::stop`] shuts it down gracefully.
struct TestServer {
    addr: std::net::SocketAddr,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<empi::Result<()>>,
}

impl TestServer {
    async fn start(store: Arc<dyn Store>) -> TestServer {
        Self::start_with(store, Linker::with_default_model()).await
    }

    async fn start_with(store: Arc<dyn Store>, linker: Linker) -> TestServer {
        let service =
            Service::open(store, linker, ServiceConfig::default()).expect("service opens");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(empi::grpc::serve(listener, Arc::new(service), async {
            let _ = stopped.await;
        }));
        TestServer { addr, stop, task }
    }

    async fn memory() -> TestServer {
        Self::start(Arc::new(MemoryStore::new())).await
    }

    async fn client(&self) -> EmpiClient<Channel> {
        EmpiClient::connect(format!("http://{}", self.addr))
            .await
            .expect("connects")
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        self.task
            .await
            .expect("server task")
            .expect("server ends cleanly");
    }
}

/// A hand-made synthetic record.
fn rec(id: &str, given: &str, family: &str, dob: &str) -> pb::PatientRecord {
    pb::PatientRecord {
        source: "st-marys-adt".into(),
        local_id: id.into(),
        given_name: Some(given.into()),
        family_name: Some(family.into()),
        birth_date: Some(dob.into()),
        sex: pb::Sex::Female as i32,
        address: Some(pb::Address {
            lines: vec!["12 Elm St".into()],
            city: Some("Lowell".into()),
            postal_code: Some("01852".into()),
            ..Default::default()
        }),
        phones: vec!["413-555-0142".into()],
        ..Default::default()
    }
}

fn margaret(id: &str) -> pb::PatientRecord {
    rec(id, "Margaret", "Okonkwo", "1961-07-02")
}

/// Margaret's twin: everything but the given name agrees, so it goes to review.
fn twin(id: &str) -> pb::PatientRecord {
    rec(id, "Olga", "Okonkwo", "1961-07-02")
}

fn stranger(id: &str) -> pb::PatientRecord {
    pb::PatientRecord {
        sex: pb::Sex::Male as i32,
        address: None,
        phones: vec!["617-555-0199".into()],
        ..rec(id, "Peter", "Ng", "1990-01-15")
    }
}

fn key(id: &str) -> pb::RecordKey {
    pb::RecordKey {
        source: "st-marys-adt".into(),
        local_id: id.into(),
    }
}

async fn submit(c: &mut EmpiClient<Channel>, r: pb::PatientRecord) -> pb::MatchOrCreateResponse {
    c.match_or_create(pb::MatchOrCreateRequest {
        record: Some(r),
        actor: "adt-feed".into(),
    })
    .await
    .expect("match-or-create")
    .into_inner()
}

async fn person(c: &mut EmpiClient<Channel>, euid: &str) -> pb::GetPersonResponse {
    c.get_person(pb::GetPersonRequest { euid: euid.into() })
        .await
        .expect("get person")
        .into_inner()
}

async fn stats(c: &mut EmpiClient<Channel>) -> pb::GetStatsResponse {
    c.get_stats(pb::GetStatsRequest {})
        .await
        .unwrap()
        .into_inner()
}

fn decision(r: &pb::MatchOrCreateResponse) -> pb::Decision {
    pb::Decision::try_from(r.decision).unwrap()
}

fn members(p: &pb::GetPersonResponse) -> Vec<String> {
    p.person
        .as_ref()
        .unwrap()
        .records
        .iter()
        .map(|r| r.record.as_ref().unwrap().local_id.clone())
        .collect()
}

fn actions(p: &pb::GetPersonResponse) -> Vec<pb::HistoryAction> {
    p.person
        .as_ref()
        .unwrap()
        .history
        .iter()
        .map(|h| pb::HistoryAction::try_from(h.action).unwrap())
        .collect()
}

#[tokio::test]
async fn create_link_review_resolve_merge_split_and_not_duplicate() {
    let server = TestServer::memory().await;
    let mut c = server.client().await;

    // create, then a second source's copy links to it
    let a = submit(&mut c, margaret("1")).await;
    assert_eq!(decision(&a), pb::Decision::Created);
    assert!(a.candidates.is_empty() && a.score.is_none());
    let mut copy = margaret("C-77");
    copy.source = "county-clinic".into();
    let linked = submit(&mut c, copy).await;
    assert_eq!(decision(&linked), pb::Decision::Linked);
    assert_eq!(linked.euid, a.euid);
    assert!(linked.score.unwrap() >= 8.0);
    assert!(!linked.explanation.is_empty());
    assert_eq!(linked.model_version, stats(&mut c).await.model_version);

    // the twin: its own EUID and a review task with candidates explained side by side
    let t = submit(&mut c, twin("2")).await;
    assert_eq!(decision(&t), pb::Decision::Review);
    assert_ne!(t.euid, a.euid);
    let task_id = t.review_task_id.clone().unwrap();
    let task = c
        .get_review_task(pb::GetReviewTaskRequest {
            task_id: task_id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .task
        .unwrap();
    assert_eq!(task.status, pb::ReviewTaskStatus::Open as i32);
    assert_eq!(task.record_euid.as_deref(), Some(t.euid.as_str()));
    assert_eq!(task.candidates[0].euid, a.euid);
    assert!(task.candidates[0].explanation.len() > 5);
    assert!(task.candidates[0].best_record.is_some());
    let open = c
        .list_review_tasks(pb::ListReviewTasksRequest {
            status: pb::ReviewTaskStatus::Open as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(open.tasks.len(), 1);
    assert_eq!(stats(&mut c).await.open_review_tasks, 1);

    // a registrar resolves it: LINK to the candidate
    let resolved = c
        .resolve_review_task(pb::ResolveReviewTaskRequest {
            task_id: task_id.clone(),
            action: pb::ResolutionAction::Link as i32,
            euid: Some(a.euid.clone()),
            actor: "registrar-7".into(),
            reason: "same MRN at the clinic".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resolved.record_euid, a.euid);
    let res = resolved.task.unwrap().resolution.unwrap();
    assert_eq!(res.action, pb::ResolutionAction::Link as i32);
    assert_eq!(res.actor, "registrar-7");
    assert_eq!(stats(&mut c).await.open_review_tasks, 0);
    // resolving again is refused
    let again = c
        .resolve_review_task(pb::ResolveReviewTaskRequest {
            task_id,
            action: pb::ResolutionAction::KeepSeparate as i32,
            euid: None,
            actor: "registrar-7".into(),
            reason: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(again.code(), Code::FailedPrecondition);

    // merge a separate person in; the old EUID stands for the survivor and says so
    let p = submit(&mut c, stranger("3")).await;
    assert_eq!(decision(&p), pb::Decision::Created);
    let merged = c
        .merge_persons(pb::MergePersonsRequest {
            from_euid: p.euid.clone(),
            into_euid: a.euid.clone(),
            actor: "registrar-7".into(),
            reason: "duplicate registration".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(merged.survivor_euid, a.euid);
    assert_eq!(merged.records_moved, 1);
    let via_alias = person(&mut c, &p.euid).await;
    assert!(via_alias.resolved_from_merge);
    assert_eq!(via_alias.merge_path, vec![p.euid.clone(), a.euid.clone()]);
    assert_eq!(via_alias.person.as_ref().unwrap().euid, a.euid);
    assert_eq!(members(&via_alias), vec!["1", "C-77", "2", "3"]);
    let history = &via_alias.person.as_ref().unwrap().history;
    let absorbed = history
        .iter()
        .find(|h| h.action == pb::HistoryAction::MergeAbsorbed as i32)
        .unwrap();
    assert_eq!(absorbed.actor, "registrar-7");
    assert_eq!(absorbed.reason, "duplicate registration");
    assert!(absorbed.at.is_some());

    // split it back out (unmerge)
    let split = c
        .split_person(pb::SplitPersonRequest {
            euid: a.euid.clone(),
            records: vec![key("3")],
            actor: "registrar-7".into(),
            reason: "merged in error".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(split.euid, a.euid);
    let q = split.new_euid;
    assert_eq!(members(&person(&mut c, &q).await), vec!["3"]);
    assert!(actions(&person(&mut c, &a.euid).await).contains(&pb::HistoryAction::Split));

    // not-duplicate: once asserted, even a decisive match is not linked automatically
    c.mark_not_duplicate(pb::MarkNotDuplicateRequest {
        euid_a: q.clone(),
        euid_b: a.euid.clone(),
        actor: "registrar-7".into(),
        reason: "different people".into(),
    })
    .await
    .unwrap();
    let became_margaret = submit(&mut c, margaret("3")).await;
    assert_eq!(became_margaret.euid, q, "the assertion is respected");
    assert!(became_margaret.candidates.iter().all(|x| x.euid != a.euid));
    assert!(actions(&person(&mut c, &q).await).contains(&pb::HistoryAction::NotDuplicateAsserted));
    // and merging the two is refused until the assertion is withdrawn
    let refused = c
        .merge_persons(pb::MergePersonsRequest {
            from_euid: q.clone(),
            into_euid: a.euid.clone(),
            actor: "registrar-7".into(),
            reason: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);

    // link / unlink / remove
    let unlinked = c
        .unlink(pb::UnlinkRequest {
            key: Some(key("2")),
            actor: "registrar-7".into(),
            reason: "twin after all".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(unlinked.previous_euid, a.euid);
    let relinked = c
        .link(pb::LinkRequest {
            key: Some(key("2")),
            euid: a.euid.clone(),
            actor: "registrar-7".into(),
            reason: "no, the same".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(relinked.euid, a.euid);
    assert!(relinked.previous_person_retired);
    let removed = c
        .remove_record(pb::RemoveRecordRequest {
            key: Some(key("2")),
            actor: "adt-feed".into(),
            reason: "deleted at source".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(removed.former_euid, a.euid);
    assert!(!removed.person_retired);
    let gone = c
        .get_record(pb::GetRecordRequest {
            key: Some(key("2")),
        })
        .await
        .unwrap_err();
    assert_eq!(gone.code(), Code::NotFound);

    let s = stats(&mut c).await;
    assert_eq!((s.records, s.persons), (3, 2));
    server.stop().await;
}

/// What Match says about another copy of Margaret.
async fn preview(c: &mut EmpiClient<Channel>) -> pb::MatchResponse {
    let mut copy = margaret("C-1");
    copy.source = "county-clinic".into();
    c.r#match(pb::MatchRequest {
        record: Some(copy),
        max_candidates: 0,
    })
    .await
    .unwrap()
    .into_inner()
}

#[tokio::test]
async fn restart_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let open = || -> Arc<dyn Store> { Arc::new(SledStore::open(dir.path()).unwrap()) };

    let server = TestServer::start(open()).await;
    let mut c = server.client().await;
    let a = submit(&mut c, margaret("1")).await;
    let t = submit(&mut c, twin("2")).await;
    let p = submit(&mut c, stranger("3")).await;
    c.merge_persons(pb::MergePersonsRequest {
        from_euid: p.euid.clone(),
        into_euid: a.euid.clone(),
        actor: "registrar-7".into(),
        reason: "dup".into(),
    })
    .await
    .unwrap();
    let before_person = person(&mut c, &p.euid).await;
    let before_twin = person(&mut c, &t.euid).await;
    let before_stats = stats(&mut c).await;
    let before_tasks = c
        .list_review_tasks(pb::ListReviewTasksRequest::default())
        .await
        .unwrap()
        .into_inner();
    let before_match = preview(&mut c).await;
    assert!(!before_match.candidates.is_empty());
    drop(c);
    server.stop().await; // releases the store: the service is dropped with the server

    let server = TestServer::start(open()).await;
    let mut c = server.client().await;
    assert_eq!(stats(&mut c).await, before_stats);
    assert_eq!(person(&mut c, &p.euid).await, before_person);
    assert_eq!(person(&mut c, &t.euid).await, before_twin);
    let tasks = c
        .list_review_tasks(pb::ListReviewTasksRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(tasks, before_tasks);
    // the rebuilt index decides as before, and an identical repeat is recognised
    assert_eq!(preview(&mut c).await, before_match);
    let again = submit(&mut c, margaret("1")).await;
    assert!(again.unchanged);
    assert_eq!(again.euid, a.euid);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixteen_concurrent_submissions_of_one_new_person_make_one_euid() {
    let server = TestServer::memory().await;
    let barrier = Arc::new(tokio::sync::Barrier::new(16));
    let mut tasks = Vec::new();
    for i in 0..16 {
        let mut c = server.client().await;
        let barrier = Arc::clone(&barrier);
        tasks.push(tokio::spawn(async move {
            let mut r = margaret(&format!("M{i}"));
            r.source = format!("source-{}", i % 4);
            barrier.wait().await;
            submit(&mut c, r).await
        }));
    }
    let mut euids = Vec::new();
    for t in tasks {
        euids.push(t.await.unwrap().euid);
    }
    euids.dedup();
    assert_eq!(euids.len(), 1, "{euids:?}");
    let mut c = server.client().await;
    let s = stats(&mut c).await;
    assert_eq!((s.records, s.persons, s.open_review_tasks), (16, 1, 0));
    assert_eq!(members(&person(&mut c, &euids[0]).await).len(), 16);

    // the same key from 16 tasks at once: one record, every answer the same person
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let mut c = server.client().await;
        tasks.push(tokio::spawn(
            async move { submit(&mut c, stranger("S1")).await },
        ));
    }
    let mut answers = Vec::new();
    for t in tasks {
        answers.push(t.await.unwrap());
    }
    assert!(answers.iter().all(|a| a.euid == answers[0].euid));
    assert_eq!(answers.iter().filter(|a| !a.unchanged).count(), 1);
    assert_eq!(stats(&mut c).await.records, 17);
    server.stop().await;
}

#[tokio::test]
async fn bad_input_is_invalid_argument_naming_the_field_and_stores_nothing() {
    let server = TestServer::memory().await;
    let mut c = server.client().await;
    let stored = submit(&mut c, margaret("1")).await;
    let before = (stats(&mut c).await, person(&mut c, &stored.euid).await);

    let with = |f: &dyn Fn(&mut pb::PatientRecord)| {
        let mut r = stranger("new-1");
        f(&mut r);
        Some(r)
    };
    let cases: Vec<(&str, Option<pb::PatientRecord>, &str)> = vec![
        ("missing record", None, "record"),
        ("missing source", with(&|r| r.source.clear()), "source"),
        (
            "missing local id",
            with(&|r| r.local_id.clear()),
            "local_id",
        ),
        (
            "impossible date",
            with(&|r| r.birth_date = Some("1956-02-30".into())),
            "birth_date",
        ),
        (
            "future date",
            with(&|r| r.birth_date = Some("2999-01-01".into())),
            "birth_date",
        ),
        (
            "garbled date",
            with(&|r| r.birth_date = Some("30/02/1956".into())),
            "birth_date",
        ),
        (
            "oversized field",
            with(&|r| r.family_name = Some("N".repeat(300))),
            "family_name",
        ),
        (
            "too many phones",
            with(&|r| r.phones = vec!["555-0100".into(); 40]),
            "phone",
        ),
        ("unknown enum value", with(&|r| r.sex = 17), "sex"),
        (
            "empty record",
            Some(pb::PatientRecord {
                source: "st-marys-adt".into(),
                local_id: "new-2".into(),
                ..Default::default()
            }),
            "record",
        ),
        (
            "birth order out of range",
            with(&|r| r.multiple_birth_order = Some(0)),
            "multiple_birth_order",
        ),
        // an update of the stored record with a bad value changes nothing either
        (
            "bad update",
            Some(pb::PatientRecord {
                birth_date: Some("1961-13-01".into()),
                ..margaret("1")
            }),
            "birth_date",
        ),
    ];
    for (name, record, field) in cases {
        let err = c
            .match_or_create(pb::MatchOrCreateRequest {
                record,
                actor: "adt-feed".into(),
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{name}: {err:?}");
        assert!(err.message().contains(field), "{name}: {}", err.message());
        assert!(
            !err.message().contains("NNNN"),
            "{name}: no values in messages"
        );
    }

    // registrar requests: bad ids and enums name their field too
    let e = c
        .merge_persons(pb::MergePersonsRequest {
            from_euid: "not-an-euid".into(),
            into_euid: stored.euid.clone(),
            actor: "r".into(),
            reason: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("from_euid"), "{}", e.message());
    let e = c
        .resolve_review_task(pb::ResolveReviewTaskRequest {
            task_id: "T00000001".into(),
            action: 99,
            euid: None,
            actor: "r".into(),
            reason: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("action"), "{}", e.message());
    let e = c
        .link(pb::LinkRequest {
            key: Some(key("1")),
            euid: stored.euid.clone(),
            actor: String::new(),
            reason: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("actor"), "{}", e.message());
    let e = c
        .list_review_tasks(pb::ListReviewTasksRequest {
            status: 5,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(e.message().contains("status"), "{}", e.message());

    let after = (stats(&mut c).await, person(&mut c, &stored.euid).await);
    assert_eq!(after, before, "nothing was stored");
    for id in ["new-1", "new-2"] {
        let e = c
            .get_record(pb::GetRecordRequest { key: Some(key(id)) })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::NotFound);
    }
    server.stop().await;
}

#[tokio::test]
async fn unknown_ids_are_not_found() {
    let server = TestServer::memory().await;
    let mut c = server.client().await;
    let a = submit(&mut c, margaret("1")).await;
    let unknown = "E00000ZZZZZ".to_string();
    let e = c
        .get_person(pb::GetPersonRequest {
            euid: unknown.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    assert!(e.message().contains(&unknown));
    let e = c
        .get_review_task(pb::GetReviewTaskRequest {
            task_id: "T00009999".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let e = c
        .resolve_review_task(pb::ResolveReviewTaskRequest {
            task_id: "T00009999".into(),
            action: pb::ResolutionAction::KeepSeparate as i32,
            euid: None,
            actor: "r".into(),
            reason: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let e = c
        .link(pb::LinkRequest {
            key: Some(key("1")),
            euid: unknown.clone(),
            actor: "r".into(),
            reason: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let e = c
        .merge_persons(pb::MergePersonsRequest {
            from_euid: unknown,
            into_euid: a.euid,
            actor: "r".into(),
            reason: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let e = c
        .remove_record(pb::RemoveRecordRequest {
            key: Some(key("nope")),
            actor: "r".into(),
            reason: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    server.stop().await;
}

#[tokio::test]
async fn identical_resubmission_returns_the_same_answer_and_writes_nothing() {
    let server = TestServer::memory().await;
    let mut c = server.client().await;
    let mut firsts = Vec::new();
    for r in [margaret("1"), margaret("2"), twin("3"), stranger("4")] {
        firsts.push((r.clone(), submit(&mut c, r).await));
    }
    let decisions: Vec<pb::Decision> = firsts.iter().map(|(_, a)| decision(a)).collect();
    assert_eq!(
        decisions,
        [
            pb::Decision::Created,
            pb::Decision::Linked,
            pb::Decision::Review,
            pb::Decision::Created
        ]
    );
    let snapshot = |c: &mut EmpiClient<Channel>| {
        let mut c = c.clone();
        let euids: Vec<String> = firsts.iter().map(|(_, a)| a.euid.clone()).collect();
        async move {
            let mut persons = Vec::new();
            for e in &euids {
                persons.push(person(&mut c, e).await);
            }
            (stats(&mut c).await, persons)
        }
    };
    let before = snapshot(&mut c).await;
    for (r, first) in &firsts {
        let again = submit(&mut c, r.clone()).await;
        assert!(again.unchanged);
        assert!(!first.unchanged);
        let close = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) => (a - b).abs() < 1e-9,
            (a, b) => a == b,
        };
        assert!(close(again.score, first.score));
        assert!(close(again.probability, first.probability));
        assert_eq!(
            pb::MatchOrCreateResponse {
                unchanged: false,
                score: None,
                probability: None,
                explanation: vec![],
                candidates: vec![],
                ..again.clone()
            },
            pb::MatchOrCreateResponse {
                score: None,
                probability: None,
                explanation: vec![],
                candidates: vec![],
                ..first.clone()
            }
        );
        let names = |r: &pb::MatchOrCreateResponse| -> Vec<(String, String)> {
            r.explanation
                .iter()
                .map(|e| (e.comparison.clone(), e.level.clone()))
                .collect()
        };
        assert_eq!(names(&again), names(first));
        let euids = |r: &pb::MatchOrCreateResponse| -> Vec<String> {
            r.candidates.iter().map(|x| x.euid.clone()).collect()
        };
        assert_eq!(euids(&again), euids(first));
    }
    assert_eq!(
        snapshot(&mut c).await,
        before,
        "history and counts unchanged"
    );
    server.stop().await;
}

#[tokio::test]
async fn health_reports_serving_and_reflection_lists_the_api() {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::{health_client::HealthClient, HealthCheckRequest};

    let server = TestServer::memory().await;
    let channel = Channel::from_shared(format!("http://{}", server.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = HealthClient::new(channel.clone());
    for service in ["empi.v1.Empi", ""] {
        let r = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.status, ServingStatus::Serving as i32, "{service:?}");
    }

    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    let mut reflection = ServerReflectionClient::new(channel);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = reflection
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let response = responses.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("unexpected reflection answer");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    assert!(names.contains(&"empi.v1.Empi".to_string()), "{names:?}");
    server.stop().await;
}

#[tokio::test]
async fn match_scores_without_writing() {
    let server = TestServer::memory().await;
    let mut c = server.client().await;
    let a = submit(&mut c, margaret("1")).await;
    let before = stats(&mut c).await;
    let mut query = margaret("");
    query.source.clear();
    let m = c
        .r#match(pb::MatchRequest {
            record: Some(query),
            max_candidates: 3,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(m.decision, pb::Decision::Linked as i32);
    assert_eq!(m.candidates[0].euid, a.euid);
    assert!(!m.candidates[0].explanation.is_empty());
    assert_eq!(stats(&mut c).await, before);
    server.stop().await;
}

#[tokio::test]
async fn stats_report_the_default_model_without_training() {
    let server = TestServer::memory().await;
    let mut c = server.client().await;
    let s = stats(&mut c).await;
    let default = empi::scoring::Model::default_model();
    assert_eq!(s.model_version, default.id);
    assert_eq!(s.model_description, default.description);
    assert_eq!(s.model_training, None);
    server.stop().await;
}

#[tokio::test]
async fn stats_report_a_trained_models_identity_and_training() {
    use empi::input::{read_csv, ReadOptions};
    use empi::scoring::estimate::{train_records, TrainOptions};
    use empi::scoring::Model;

    // A tiny model from the head of the committed synthetic set, with small sample caps
    // so a debug build trains it in about a second.
    let csv =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("synthetic-data/small/records.csv");
    let (mut records, _) = read_csv(&csv, None, &ReadOptions::default()).expect("read set");
    records.truncate(2000);
    let opts = TrainOptions {
        seed: 11,
        u_round_pairs: 10_000,
        u_max_pairs: 20_000,
        em_max_pairs: 20_000,
        input: "records.csv".into(),
        ..Default::default()
    };
    let trained = train_records(&records, &Model::default_model(), &opts).expect("train");
    let model = trained.model;
    let server = TestServer::start_with(
        Arc::new(MemoryStore::new()),
        Linker::new(model.clone()).expect("trained model is valid"),
    )
    .await;
    let mut c = server.client().await;
    let s = stats(&mut c).await;
    assert_eq!(s.model_version, model.id);
    assert!(s.model_version.starts_with("trained-"));
    assert_eq!(s.model_description, model.description);

    let t = s
        .model_training
        .expect("a trained model reports its training");
    assert_eq!(t.records, 2000);
    assert_eq!((t.seed, t.input.as_str()), (11, "records.csv"));
    assert_eq!(t.empi_version, env!("CARGO_PKG_VERSION"));
    assert!(t.trained_at.ends_with('Z'), "{}", t.trained_at);
    assert_eq!(t.prior, model.prior);
    assert_eq!(t.runs.len(), trained.info.runs.len());
    assert!(!t.runs.is_empty());
    for (got, want) in t.runs.iter().zip(&trained.info.runs) {
        assert_eq!(got.rule, want.rule.name());
        assert_eq!(
            (got.pairs_used, got.distinct_patterns, got.skipped),
            (want.pairs_used, want.distinct_patterns, want.skipped)
        );
        let em = want.em.as_ref();
        assert_eq!(got.iterations, em.map_or(0, |e| e.iterations));
        assert_eq!(got.converged, em.is_some_and(|e| e.converged));
    }
    assert!(
        t.runs.iter().any(|r| !r.skipped && r.iterations > 0),
        "{:?}",
        t.runs
    );
    assert_eq!(
        t.pairs_used,
        t.runs.iter().map(|r| r.pairs_used).sum::<u64>()
    );
    // The full metadata travels as JSON, untyped facts included.
    let full: serde_json::Value = serde_json::from_str(&t.metadata_json).expect("json");
    assert_eq!(full["records"], 2000);
    assert!(full["u_sample"].is_object());
    server.stop().await;
}

/// The hard cases of matching, through the server: each pair of records arrives in order
/// (same source, consecutive MRNs), and the second's decision is what a registrar would
/// want. Relatives who share the household (twins with alike names, Jr/Sr, opposite-sex
/// twins) are never linked; the same person with one field replaced, re-keyed or slipped
/// is, when an exact personal identifier or the birth date rules a relative out.
#[tokio::test]
async fn hard_cases_decide_as_a_registrar_would() {
    let id = |v: &str| pb::Identifier {
        system: "national_id".into(),
        value: v.into(),
    };
    let child = |mrn: &str, given: &str| pb::PatientRecord {
        sex: pb::Sex::Female as i32,
        ..rec(mrn, given, "Okonkwo", "2015-03-03")
    };
    let with_id = |mut r: pb::PatientRecord, v: &str| {
        r.identifiers = vec![id(v)];
        r
    };
    let man = |mrn: &str, given: &str, dob: &str| pb::PatientRecord {
        sex: pb::Sex::Male as i32,
        ..rec(mrn, given, "Kowalczyk", dob)
    };
    let linked = pb::Decision::Linked as i32;
    let cases: Vec<(&str, pb::PatientRecord, pb::PatientRecord, bool)> = vec![
        (
            "Ava then Eva, twins born the same day",
            child("MRN001", "Ava"),
            child("MRN002", "Eva"),
            false,
        ),
        (
            "Margaret then Margarita, twins",
            rec("MRN003", "Margaret", "Okonkwo", "1961-07-02"),
            rec("MRN004", "Margarita", "Okonkwo", "1961-07-02"),
            false,
        ),
        (
            "opposite-sex twins",
            child("MRN005", "Daniel"),
            pb::PatientRecord {
                sex: pb::Sex::Male as i32,
                ..child("MRN006", "Daniela")
            },
            false,
        ),
        (
            "Jr and Sr at one address",
            man("MRN007", "Robert Sr", "1958-04-11"),
            man("MRN008", "Robert Jr", "1988-09-30"),
            false,
        ),
        (
            "a replaced given name, exact national id, birth date and family name",
            with_id(
                rec("MRN009", "Margaret", "Okonkwo", "1961-07-02"),
                "521-44-9032",
            ),
            with_id(
                rec("MRN010", "Beatrice", "Okonkwo", "1961-07-02"),
                "521-44-9032",
            ),
            true,
        ),
        (
            "a re-keyed birth date, exact names and national id",
            with_id(
                rec("MRN011", "Margaret", "Okonkwo", "1961-07-02"),
                "521-44-9032",
            ),
            with_id(
                rec("MRN012", "Margaret", "Okonkwo", "1972-11-19"),
                "521-44-9032",
            ),
            true,
        ),
        (
            "one slipped digit in the national id, exact names, birth date and address",
            with_id(
                rec("MRN013", "Margaret", "Okonkwo", "1961-07-02"),
                "521-44-9032",
            ),
            with_id(
                rec("MRN014", "Margaret", "Okonkwo", "1961-07-02"),
                "521-44-9082",
            ),
            true,
        ),
        (
            "given and family name in each other's fields, the family name misspelt",
            rec("MRN015", "Bruton", "Tracy", "2004-01-26"),
            rec("MRN016", "Tracy", "Ruton", "2004-01-26"),
            true,
        ),
        (
            "twins alike named, one record's names in each other's fields",
            child("MRN017", "Ava"),
            pb::PatientRecord {
                given_name: Some("Okonkwo".into()),
                family_name: Some("Eva".into()),
                ..child("MRN018", "Eva")
            },
            false,
        ),
    ];
    for (what, first, second, should_link) in cases {
        let server = TestServer::memory().await;
        let mut c = server.client().await;
        assert_eq!(
            submit(&mut c, first).await.decision,
            pb::Decision::Created as i32
        );
        let answer = submit(&mut c, second).await;
        if should_link {
            assert_eq!(answer.decision, linked, "{what}: {answer:?}");
        } else {
            assert_ne!(answer.decision, linked, "{what}: {answer:?}");
            let reason = &answer.candidates.first().expect("a candidate").reason;
            assert!(!reason.is_empty(), "{what}: no reason given: {answer:?}");
        }
        server.stop().await;
    }
}

#[tokio::test]
async fn a_person_known_to_be_a_twin_is_not_linked_to_an_alike_named_record() {
    let server = TestServer::memory().await;
    let mut c = server.client().await;
    let man = |mrn: &str, given: &str| pb::PatientRecord {
        sex: pb::Sex::Male as i32,
        ..rec(mrn, given, "Kellogg", "1995-12-24")
    };
    // Lawrence, then Lawrence again from a record that says he is the second of a
    // multiple birth: one person, known to have a co-twin.
    let first = submit(&mut c, man("MRN101", "Lawrence")).await;
    assert_eq!(first.decision, pb::Decision::Created as i32);
    let second = submit(
        &mut c,
        pb::PatientRecord {
            multiple_birth_order: Some(2),
            ..man("MRN102", "Lawrence")
        },
    )
    .await;
    assert_eq!(second.decision, pb::Decision::Linked as i32, "{second:?}");
    // Larry, with no birth order: a nickname of Lawrence, or his co-twin.
    let larry = submit(&mut c, man("MRN103", "Larry")).await;
    assert_ne!(larry.decision, pb::Decision::Linked as i32, "{larry:?}");
    let reason = &larry.candidates.first().expect("a candidate").reason;
    assert!(reason.contains("twin"), "{reason}");
    server.stop().await;
}
