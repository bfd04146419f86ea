//! The application layer driven directly, with no transport: roles, sources, audit lines,
//! trimming, and the coupling of durability with the audit trail.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::*;
use crate::auth::audit;
use crate::auth::Role;
use crate::linker::{Decision, Linker};
use crate::record::{Record, RecordKey};
use crate::service::{Merged, ServiceConfig};
use crate::store::{MemoryStore, SledStore, Store};

fn record(source: &str, id: &str) -> Record {
    Record {
        source: source.into(),
        local_id: id.into(),
        given_name: Some("Margaret".into()),
        family_name: Some("Okonkwo".into()),
        birth_date: Some("1961-07-02".parse().unwrap()),
        phones: vec!["413-555-0142".into()],
        ..Default::default()
    }
}

fn caller(name: &str, role: Role, sources: &[&str]) -> Caller {
    let identity = Identity {
        name: name.into(),
        role,
        sources: sources.iter().map(|s| s.to_string()).collect(),
        authenticated: true,
    };
    Caller::new(identity, Some("test".into()))
}

fn submit(source: &str, id: &str) -> Incoming<Submit> {
    Ok(Submit {
        record: record(source, id),
        actor: "claimed".into(),
    })
}

/// An audited application layer over `store`, its trail in `data`.
fn app_over(store: Arc<dyn Store>, data: &Path) -> App {
    let service = Service::open(
        store,
        Linker::with_default_model(),
        ServiceConfig::default(),
    );
    App::new(
        Arc::new(service.unwrap()),
        Some(Arc::new(AuditLog::open(data).unwrap())),
        None,
    )
}

fn lines(data: &Path) -> Vec<AuditEntry> {
    let read = audit::read(data, None, None).unwrap();
    assert!(read.unreadable_lines.is_empty());
    read.entries
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_sources_and_one_audit_line_per_call() {
    let dir = tempfile::tempdir().unwrap();
    let app = app_over(Arc::new(MemoryStore::new()), dir.path());
    let adt = caller("adt-engine", Role::Submitter, &["adt"]);
    let ann = caller("ann", Role::Registrar, &[]);

    let created = app.match_or_create(&adt, submit("adt", "1")).await.unwrap();
    assert_eq!(created.decision, Decision::New);
    let other_source = app.match_or_create(&adt, submit("lab", "1")).await;
    assert!(matches!(other_source, Err(Error::Denied(_))));
    let role = app.get_stats(&adt).await;
    assert!(matches!(role, Err(Error::Denied(_))));
    let no_submitting = app.match_or_create(&ann, submit("adt", "2")).await;
    assert!(matches!(no_submitting, Err(Error::Denied(_))));
    let person = app
        .get_person(&ann, Ok(created.euid.clone()))
        .await
        .unwrap();
    assert_eq!(person.records.len(), 1);
    // A request the door could not read is refused and audited with the key it carried.
    let invalid = Error::invalid("key.local_id", "missing");
    let unreadable = app
        .get_record(&ann, Err(Unreadable::naming(invalid, "adt", "")))
        .await;
    assert!(matches!(unreadable, Err(Error::InvalidInput { .. })));

    let entries = lines(dir.path());
    let seen: Vec<(&str, AuditOutcome, Option<&str>)> = entries
        .iter()
        .map(|e| (e.operation.as_str(), e.outcome, e.code.as_deref()))
        .collect();
    assert_eq!(
        seen,
        [
            ("MatchOrCreate", AuditOutcome::Ok, None),
            (
                "MatchOrCreate",
                AuditOutcome::Denied,
                Some("PERMISSION_DENIED")
            ),
            ("GetStats", AuditOutcome::Denied, Some("PERMISSION_DENIED")),
            (
                "MatchOrCreate",
                AuditOutcome::Denied,
                Some("PERMISSION_DENIED")
            ),
            ("GetPerson", AuditOutcome::Ok, None),
            ("GetRecord", AuditOutcome::Error, Some("INVALID_ARGUMENT")),
        ]
    );
    assert_eq!(entries[0].records, ["adt/1"]);
    assert_eq!(entries[0].euids, [created.euid.to_string()]);
    assert_eq!(entries[0].actor, "adt-engine");
    assert_eq!(entries[0].peer.as_deref(), Some("test"));
    assert_eq!(
        entries[1].records,
        ["lab/1"],
        "a refusal names what was asked"
    );
    assert!(entries[5].records[0].starts_with("invalid-key:"));
    // History names the authenticated caller, not the actor the request claimed.
    let actors: Vec<&str> = person.history.iter().map(|h| h.actor.as_str()).collect();
    assert_eq!(actors, ["adt-engine"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_submitter_gets_the_minimum_necessary() {
    let dir = tempfile::tempdir().unwrap();
    let app = app_over(Arc::new(MemoryStore::new()), dir.path());
    let ops = caller("ops", Role::Admin, &[]);
    let lab = caller("lab-engine", Role::Submitter, &["lab"]);
    let first = app.match_or_create(&ops, submit("adt", "1")).await.unwrap();

    let linked = app
        .match_or_create(&lab, submit("lab", "L1"))
        .await
        .unwrap();
    assert_eq!(
        (linked.decision, &linked.euid),
        (Decision::Link, &first.euid)
    );
    assert!(linked.score.is_some() && linked.explanation.is_empty());
    assert!(!linked.candidates.is_empty());
    for c in &linked.candidates {
        assert!(c.explanation.is_empty() && c.best_record.is_none(), "{c:?}");
    }
    // An admin sees everything.
    let query = || {
        Ok(MatchQuery {
            record: record("lab", "L2"),
            max_candidates: 5,
        })
    };
    let full = app.match_only(&ops, query()).await.unwrap();
    assert!(full.candidates[0].best_record.is_some());
    assert!(!full.candidates[0].explanation.is_empty());
    let trimmed = app.match_only(&lab, query()).await.unwrap();
    assert_eq!(trimmed.candidates[0].euid, full.candidates[0].euid);
    assert!(trimmed.candidates[0].explanation.is_empty());
    // Its own source's record is shown, another source's is not.
    let shown = trimmed.candidates[0].best_record.as_ref();
    match full.candidates[0].best_record.as_ref() {
        Some(k) if k.source == "lab" => assert_eq!(shown, Some(k)),
        _ => assert_eq!(shown, None),
    }
}

/// A write whose audit line could not be written is told so, yet its change may be stored
/// (here: flushed by the store afterwards, as sled's own flusher may): it still gets its
/// line, from the intent kept in the store before the change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_told_failed_but_stored_still_has_its_audit_line() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SledStore::open(dir.path()).unwrap());
    let log = Arc::new(AuditLog::open_staged(dir.path(), store.clone()).unwrap());
    let service = Service::open(
        store.clone(),
        Linker::with_default_model(),
        ServiceConfig::default(),
    )
    .unwrap();
    let app = App::new(Arc::new(service), Some(log.clone()), None);
    log.fail_next_writes(1);
    let who = Caller::new(Identity::local_dev(), None);
    let failed = app.match_or_create(&who, submit("adt", "9")).await;
    assert!(matches!(&failed, Err(Error::Storage(m)) if m == "audit trail unavailable"));
    store.flush().unwrap();
    let key = RecordKey::new("adt", "9");
    assert!(
        store.get_record(&key).unwrap().is_some(),
        "the change is stored"
    );
    drop(app);
    drop(Arc::into_inner(log).expect("the only handle"));
    drop(AuditLog::open_staged(dir.path(), store).unwrap());
    let entries = lines(dir.path());
    assert!(
        entries
            .iter()
            .any(|e| e.records == ["adt/9"] && e.outcome == AuditOutcome::Interrupted),
        "{entries:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn match_or_create_is_audited_once_when_durable_and_twice_when_not() {
    let dir = tempfile::tempdir().unwrap();
    let failing = Arc::new(AtomicBool::new(false));
    let fail = Arc::clone(&failing);
    let store = MemoryStore::with_flusher(Arc::new(move || {
        if fail.load(Ordering::SeqCst) {
            Err(Error::Storage("disk gone".into()))
        } else {
            Ok(())
        }
    }));
    let app = app_over(Arc::new(store), dir.path());
    let who = Caller::new(Identity::local_dev(), None);

    let first = app.match_or_create(&who, submit("adt", "1")).await.unwrap();
    let entries = lines(dir.path());
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].outcome, AuditOutcome::Ok);
    assert_eq!(entries[0].records, ["adt/1"]);
    assert_eq!(entries[0].euids, [first.euid.to_string()]);

    failing.store(true, Ordering::SeqCst);
    let failed = app.match_or_create(&who, submit("adt", "2")).await;
    assert!(matches!(failed, Err(Error::Storage(_))));
    let entries = lines(dir.path());
    assert_eq!(entries.len(), 3, "{entries:?}");
    let (applied, failed) = (&entries[1], &entries[2]);
    assert_eq!(applied.outcome, AuditOutcome::Ok);
    assert_eq!(failed.outcome, AuditOutcome::Error);
    assert_eq!(failed.code.as_deref(), Some("UNAVAILABLE"));
    assert_eq!(applied.records, ["adt/2"]);
    assert_eq!(failed.records, applied.records);
    assert_eq!(failed.euids, applied.euids);
}

/// Another patient altogether (no candidate of [`record`]'s).
fn other_patient(source: &str, id: &str) -> Record {
    Record {
        source: source.into(),
        local_id: id.into(),
        given_name: Some("Teodor".into()),
        family_name: Some("Lindqvist".into()),
        birth_date: Some("1990-11-23".parse().unwrap()),
        phones: vec!["617-555-0199".into()],
        ..Default::default()
    }
}

fn once(id: &str, content: u8) -> Once {
    Once {
        id: id.as_bytes().to_vec(),
        digest: [content; 32],
        answer: format!("ack of {id}").into_bytes(),
    }
}

/// A message applied with its receipt is answered from it when sent again, also after the
/// store is reopened; the same identity with other content is refused; every message is
/// audited, replays with a note.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_message_is_answered_as_before_and_applied_once() {
    let dir = tempfile::tempdir().unwrap();
    let adt = caller("adt-engine", Role::Submitter, &["adt"]);
    let open = || {
        let store = Arc::new(SledStore::open(dir.path()).unwrap());
        let log = Arc::new(AuditLog::open_staged(dir.path(), store.clone()).unwrap());
        let service = Service::open(
            store,
            Linker::with_default_model(),
            ServiceConfig::default(),
        );
        App::new(Arc::new(service.unwrap()), Some(log), None)
    };
    let app = open();
    let first = app
        .match_or_create_once(&adt, submit("adt", "1"), once("m1", 1))
        .await
        .unwrap();
    let Receipted::Applied(created) = first else {
        panic!("{first:?}")
    };
    // The record changes under a later message; the replay of the first must not undo it.
    let mut changed = record("adt", "1");
    changed.phones = vec!["413-555-0100".into()];
    let update = Submit {
        record: changed.clone(),
        actor: String::new(),
    };
    app.match_or_create_once(&adt, Ok(update), once("m2", 2))
        .await
        .unwrap();
    drop(app);

    let app = open();
    let again = app
        .match_or_create_once(&adt, submit("adt", "1"), once("m1", 1))
        .await
        .unwrap();
    assert_eq!(again, Receipted::Replay(b"ack of m1".to_vec()));
    let stored = app
        .service()
        .get_record(&RecordKey::new("adt", "1"))
        .unwrap();
    assert_eq!(stored.record, changed, "the replay applied nothing");
    assert_eq!(stored.euid, created.euid);
    let reused = app
        .match_or_create_once(&adt, submit("adt", "1"), once("m1", 9))
        .await;
    assert!(
        matches!(&reused, Err(Error::InvalidInput { field, .. }) if field == "message_id"),
        "{reused:?}"
    );
    // The same new message on two connections at once: applied once, answered twice alike.
    let (a, b) = tokio::join!(
        app.match_or_create_once(&adt, submit("adt", "7"), once("m7", 7)),
        app.match_or_create_once(&adt, submit("adt", "7"), once("m7", 7)),
    );
    let mut kinds = [a.unwrap(), b.unwrap()].map(|r| matches!(r, Receipted::Applied(_)));
    kinds.sort();
    assert_eq!(kinds, [false, true]);
    // Decisions are counted as for gRPC: the message applied (adt/7, the same person as
    // adt/1), not the replays.
    let metrics = app.metrics_text().unwrap();
    assert!(
        metrics.contains("empi_decisions_total{decision=\"linked\"} 1\n"),
        "{metrics}"
    );
    drop(app);

    let entries = lines(dir.path());
    let seen: Vec<(&str, AuditOutcome, Option<&str>)> = entries
        .iter()
        .map(|e| (e.operation.as_str(), e.outcome, e.detail.as_deref()))
        .collect();
    let replay = Some("a replay: answered as before, nothing applied");
    assert_eq!(
        seen,
        [
            ("MatchOrCreate", AuditOutcome::Ok, None),
            ("MatchOrCreate", AuditOutcome::Ok, None),
            ("MatchOrCreate", AuditOutcome::Ok, replay),
            ("MatchOrCreate", AuditOutcome::Error, None),
            ("MatchOrCreate", AuditOutcome::Ok, None),
            ("MatchOrCreate", AuditOutcome::Ok, replay),
        ]
    );
    assert!(entries
        .iter()
        .all(|e| e.records == ["adt/1"] || e.records == ["adt/7"]));
}

/// A source merges two of its records: one person afterwards, both records in it; other
/// sources may not, a merge across sources is refused, a replay applies nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_merges_its_own_records() {
    let dir = tempfile::tempdir().unwrap();
    let app = app_over(Arc::new(MemoryStore::new()), dir.path());
    let adt = caller("adt-engine", Role::Submitter, &["adt"]);
    let lab = caller("lab-engine", Role::Submitter, &["lab"]);
    let sub = |r: Record| {
        Ok(Submit {
            record: r,
            actor: String::new(),
        })
    };
    let a = app
        .match_or_create(&adt, sub(record("adt", "A")))
        .await
        .unwrap();
    let b = app
        .match_or_create(&adt, sub(other_patient("adt", "B")))
        .await
        .unwrap();
    assert_ne!(a.euid, b.euid);
    let merge = |survivor: &str, retired: (&str, &str)| {
        Ok(MergeRecords {
            survivor: RecordKey::new("adt", survivor),
            retired: RecordKey::new(retired.0, retired.1),
        })
    };
    let denied = app
        .merge_records(&lab, merge("A", ("adt", "B")), None)
        .await;
    assert!(matches!(denied, Err(Error::Denied(_))), "{denied:?}");
    let across = app
        .merge_records(&adt, merge("A", ("lab", "B")), None)
        .await;
    assert!(
        matches!(across, Err(Error::InvalidInput { .. })),
        "{across:?}"
    );
    let missing = app
        .merge_records(&adt, merge("A", ("adt", "Z")), None)
        .await;
    assert!(
        matches!(missing, Err(Error::NotFound { .. })),
        "{missing:?}"
    );

    let merged = app
        .merge_records(&adt, merge("A", ("adt", "B")), Some(once("a40", 1)))
        .await
        .unwrap();
    let Receipted::Applied(m) = merged else {
        panic!("{merged:?}")
    };
    assert_eq!((m.survivor.clone(), m.records_moved), (a.euid.clone(), 1));
    let ops = caller("ops", Role::Admin, &[]);
    let person = app.get_person(&ops, Ok(b.euid.clone())).await.unwrap();
    assert_eq!(
        person.person.euid, a.euid,
        "the retired record's person is merged"
    );
    assert_eq!(person.records.len(), 2);
    let replay = app
        .merge_records(&adt, merge("A", ("adt", "B")), Some(once("a40", 1)))
        .await
        .unwrap();
    assert_eq!(replay, Receipted::Replay(b"ack of a40".to_vec()));
    // Already one person: nothing to do.
    let again = app
        .merge_records(&adt, merge("A", ("adt", "B")), None)
        .await
        .unwrap();
    assert_eq!(
        again,
        Receipted::Applied(Merged {
            survivor: a.euid.clone(),
            records_moved: 0
        })
    );
    let merges = lines(dir.path())
        .into_iter()
        .filter(|e| e.operation == "MergeRecords")
        .count();
    assert_eq!(merges, 6, "every message audited");
}

/// PIX: the identifiers of the person holding a record, an unknown source and an unknown
/// record told apart, a submitter seeing its own sources only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_references_know_their_domains() {
    let dir = tempfile::tempdir().unwrap();
    let app = app_over(Arc::new(MemoryStore::new()), dir.path());
    let ops = caller("ops", Role::Admin, &[]);
    let first = app.match_or_create(&ops, submit("adt", "1")).await.unwrap();
    app.match_or_create(&ops, submit("lab", "L1"))
        .await
        .unwrap();
    let xref = |source: &str, id: &str, domains: &[&str]| {
        Ok(CrossReference {
            key: RecordKey::new(source, id),
            domains: domains.iter().map(|d| d.to_string()).collect(),
        })
    };
    let all = app
        .cross_reference(&ops, xref("adt", "1", &[]))
        .await
        .unwrap();
    assert_eq!(all.euid, first.euid);
    assert_eq!(
        all.records,
        [RecordKey::new("adt", "1"), RecordKey::new("lab", "L1")]
    );
    let some = app
        .cross_reference(&ops, xref("adt", "1", &["lab", "nowhere"]))
        .await
        .unwrap();
    assert_eq!(some.records, [RecordKey::new("lab", "L1")]);
    assert_eq!(some.unknown_domains, [1]);
    let unknown = app.cross_reference(&ops, xref("nowhere", "1", &[])).await;
    assert!(matches!(
        unknown,
        Err(Error::NotFound { what: "source", .. })
    ));
    let unknown = app.cross_reference(&ops, xref("adt", "9", &[])).await;
    assert!(matches!(
        unknown,
        Err(Error::NotFound { what: "record", .. })
    ));

    let adt = caller("adt-engine", Role::Submitter, &["adt"]);
    let own = app
        .cross_reference(&adt, xref("adt", "1", &["lab"]))
        .await
        .unwrap();
    assert!(
        own.records.is_empty() && own.unknown_domains == [0],
        "{own:?}"
    );
    let other = app.cross_reference(&adt, xref("lab", "L1", &[])).await;
    assert!(matches!(other, Err(Error::Denied(_))));
}

/// PDQ / `$match`: candidates graded and paged; a submitter sees what its own sources say.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demographic_searches_grade_page_and_trim() {
    use crate::service::MatchGrade;
    let dir = tempfile::tempdir().unwrap();
    let app = app_over(Arc::new(MemoryStore::new()), dir.path());
    let ops = caller("ops", Role::Admin, &[]);
    let person = app.match_or_create(&ops, submit("adt", "1")).await.unwrap();
    app.match_or_create(&ops, submit("lab", "L1"))
        .await
        .unwrap();
    let mut criteria = record("", "");
    criteria.phones.clear();
    let find = |offset, limit| {
        Ok(FindPersons {
            criteria: criteria.clone(),
            offset,
            limit,
            only_certain: false,
        })
    };
    let found = app.find_persons(&ops, find(0, 10)).await.unwrap();
    assert_eq!(found.total, 1);
    let best = &found.matches[0];
    assert_eq!(best.person.person.euid, person.euid);
    assert_eq!(best.grade, MatchGrade::Certain);
    assert_eq!(best.person.records.len(), 2);
    assert!(!best.candidate.explanation.is_empty());
    assert!(app
        .find_persons(&ops, find(1, 10))
        .await
        .unwrap()
        .matches
        .is_empty());

    let lab = caller("lab-engine", Role::Submitter, &["lab"]);
    let trimmed = app.find_persons(&lab, find(0, 10)).await.unwrap();
    let seen = &trimmed.matches[0];
    assert_eq!(seen.person.person.euid, person.euid);
    assert_eq!(seen.person.records.len(), 1, "its own source's record only");
    assert_eq!(seen.person.records[0].record.source, "lab");
    assert!(seen.candidate.explanation.is_empty() && seen.person.history.is_empty());
    let adt_only = caller("x-engine", Role::Submitter, &["x"]);
    let nothing = app.find_persons(&adt_only, find(0, 10)).await.unwrap();
    assert!(nothing.matches[0].person.records.is_empty());
    assert_eq!(nothing.matches[0].person.golden, Default::default());
}
