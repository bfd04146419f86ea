//! Running it for years, against the `empi` binary: the change feed across a SIGKILL of
//! the server, an online backup taken while 8 clients submit and its restore, `/metrics`
//! read with a Prometheus text-format parser, and JSON logs.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use empi::grpc::pb::{self, change_event::Change as Pb, empi_client::EmpiClient};
use empi::record::RecordKey;
use empi::store::{Change, ChangeEvent, SledStore, Store};

use crate::crash::{record, Server};

const EMPI: &str = env!("CARGO_BIN_EXE_empi");

/// Runs `empi` with `args`; its output.
fn empi(args: &[&str]) -> std::process::Output {
    std::process::Command::new(EMPI)
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("runs empi")
}

fn ok(args: &[&str]) -> String {
    let out = empi(args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// What an event says of a record's person, as a consumer keeping a mirror reads it
/// (the loads below only create and link).
fn key_and_euid_pb(e: &pb::ChangeEvent) -> (u64, String, Option<(String, String)>) {
    let key = |k: &Option<pb::RecordKey>| {
        let k = k.as_ref().expect("a record key");
        format!("{}/{}", k.source, k.local_id)
    };
    let (kind, mirror) = match e.change.as_ref().expect("a change") {
        Pb::PersonCreated(p) => (
            "person_created",
            p.records
                .first()
                .map(|k| (format!("{}/{}", k.source, k.local_id), p.euid.clone())),
        ),
        Pb::RecordLinked(l) => ("record_linked", Some((key(&l.record), l.euid.clone()))),
        Pb::RecordUpdated(u) => ("record_updated", Some((key(&u.record), u.euid.clone()))),
        Pb::ReviewOpened(_) => ("review_opened", None),
        other => panic!("a load of new records made {other:?}"),
    };
    (e.sequence, kind.to_string(), mirror)
}

fn key_and_euid(e: &ChangeEvent) -> (u64, String, Option<(String, String)>) {
    let mirror = match &e.change {
        Change::PersonCreated { euid, records } => {
            records.first().map(|k| (k.to_string(), euid.to_string()))
        }
        Change::RecordLinked { record, euid } | Change::RecordUpdated { record, euid } => {
            Some((record.to_string(), euid.to_string()))
        }
        Change::ReviewOpened { .. } => None,
        other => panic!("a load of new records made {other:?}"),
    };
    (e.seq, e.change.kind().to_string(), mirror)
}

/// Record key -> EUID, as a consumer builds it from the events.
fn mirror<'a>(
    events: impl IntoIterator<Item = &'a (u64, String, Option<(String, String)>)>,
) -> BTreeMap<String, String> {
    events
        .into_iter()
        .filter_map(|(_, _, m)| m.clone())
        .collect()
}

/// Record key -> EUID as the store holds them.
fn stored(store: &SledStore) -> BTreeMap<String, String> {
    store
        .records()
        .map(|r| {
            let r = r.unwrap();
            (r.key().to_string(), r.euid.to_string())
        })
        .collect()
}

fn all_events(store: &SledStore) -> Vec<ChangeEvent> {
    store.changes_after(0, usize::MAX).unwrap()
}

/// Submits client `c`'s records from `from` on until `stop` (or an error); returns how far
/// it got and the acknowledged record keys.
async fn submitter(
    endpoint: tonic::transport::Endpoint,
    c: usize,
    from: usize,
    stop: Arc<AtomicBool>,
    acks: Arc<AtomicUsize>,
) -> (usize, Vec<String>) {
    let mut client = EmpiClient::new(endpoint.connect().await.expect("connect"));
    let mut acked = Vec::new();
    let mut j = from;
    while !stop.load(Ordering::SeqCst) && j < from + 2_000 {
        let rec = record(c, j);
        let key = format!("{}/{}", rec.source, rec.local_id);
        let req = pb::MatchOrCreateRequest {
            record: Some(rec),
            actor: "ops-test".into(),
        };
        if client.match_or_create(req).await.is_err() {
            break;
        }
        acked.push(key);
        acks.fetch_add(1, Ordering::SeqCst);
        j += 1;
    }
    (j, acked)
}

/// Waits until `n` acknowledgements, bounded against a hung server (not a speed test).
async fn until_acks(acks: &AtomicUsize, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while acks.load(Ordering::SeqCst) < n {
        assert!(Instant::now() < deadline, "only {acks:?} acknowledged");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A consumer follows the feed while writers submit; the server is killed with SIGKILL;
/// after a restart the consumer resumes from its last sequence. Its stream has no gap and
/// no duplicate, and equals the store's feed and records.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_following_through_a_sigkill_sees_every_event_once() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("store");
    let mut server = Server::start(&data, dir.path().join("serve-1.log"));
    server.ready_client(Duration::from_secs(30)).await;

    let seen = Arc::new(std::sync::Mutex::new(Vec::<pb::ChangeEvent>::new()));
    let follow = |endpoint: tonic::transport::Endpoint, after: u64| {
        let seen = Arc::clone(&seen);
        tokio::spawn(async move {
            let mut c = EmpiClient::new(endpoint.connect().await.expect("connect"));
            let Ok(stream) = c
                .watch_changes(pb::WatchChangesRequest {
                    after_sequence: after,
                })
                .await
            else {
                return;
            };
            let mut stream = stream.into_inner();
            // Ends with an error when the server dies.
            while let Ok(Some(m)) = stream.message().await {
                seen.lock().unwrap().extend(m.events);
            }
        })
    };
    let consumer = follow(server.endpoint(), 0);
    let (stop, acks) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicUsize::new(0)),
    );
    let writers: Vec<_> = (0..4)
        .map(|c| {
            let (stop, acks) = (Arc::clone(&stop), Arc::clone(&acks));
            tokio::spawn(submitter(server.endpoint(), c, 0, stop, acks))
        })
        .collect();
    until_acks(&acks, 150).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen.lock().unwrap().len() < 100 {
        assert!(Instant::now() < deadline, "the consumer got no events");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let _ = server.child.kill();
    let _ = server.child.wait();
    let mut next = Vec::new();
    for w in writers {
        next.push(w.await.unwrap().0);
    }
    let _ = consumer.await;
    let before_kill = seen.lock().unwrap().len();

    let mut server = Server::start(&data, dir.path().join("serve-2.log"));
    server.ready_client(Duration::from_secs(60)).await;
    let last = seen.lock().unwrap().last().unwrap().sequence;
    let consumer = follow(server.endpoint(), last);
    // More writes after the restart, each client going on where it stopped.
    let mut tail = Vec::new();
    for (c, from) in next.into_iter().enumerate() {
        let mut client = server.ready_client(Duration::from_secs(5)).await;
        for j in from..from + 10 {
            let rec = record(c, j);
            tail.push(format!("{}/{}", rec.source, rec.local_id));
            client
                .match_or_create(pb::MatchOrCreateRequest {
                    record: Some(rec),
                    actor: "ops-test".into(),
                })
                .await
                .unwrap();
        }
    }
    // The consumer has caught up when it has seen the last write's event.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let events: Vec<_> = seen.lock().unwrap().iter().map(key_and_euid_pb).collect();
        let mirrored = mirror(&events);
        if tail.iter().all(|k| mirrored.contains_key(k)) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the resumed consumer fell behind"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    consumer.abort();
    let _ = server
        .child
        .kill()
        .and_then(|()| server.child.wait().map(drop));

    let got: Vec<_> = seen.lock().unwrap().iter().map(key_and_euid_pb).collect();
    assert!(got.len() > before_kill, "events after the restart arrived");
    let seqs: Vec<u64> = got.iter().map(|e| e.0).collect();
    assert_eq!(
        seqs,
        (1..=got.len() as u64).collect::<Vec<_>>(),
        "no gap and no duplicate"
    );
    let store = SledStore::open(&data).unwrap();
    let want: Vec<_> = all_events(&store).iter().map(key_and_euid).collect();
    assert_eq!(got, want, "the stream is the store's feed");
    assert_eq!(mirror(&got), stored(&store), "and it mirrors the records");
}

/// A plain HTTP GET of `path` from `addr`; the status line and the body.
fn http_get(addr: &str, path: &str) -> (String, String) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP answer");
    (
        head.lines().next().unwrap_or("").to_string(),
        body.to_string(),
    )
}

/// `/metrics` parsed by a Prometheus text-format parser.
fn scrape(addr: &str) -> prometheus_parse::Scrape {
    let (status, body) = http_get(addr, "/metrics");
    assert!(status.contains("200"), "{status}");
    prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_string()))).unwrap()
}

/// A sample's value: a counter or gauge, or a histogram's count.
fn value(s: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    use prometheus_parse::Value;
    s.samples
        .iter()
        .find(|x| x.metric == name && labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v)))
        .map_or(0.0, |x| match &x.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
            Value::Histogram(buckets) => buckets.last().map_or(0.0, |b| b.count),
            Value::Summary(_) => f64::NAN,
        })
}

/// `/metrics` parses with a Prometheus text-format parser and its counters move with the
/// calls made; the server logs JSON objects with `--log-format json`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_parse_and_count_the_calls_and_logs_are_json() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("store");
    let log = dir.path().join("serve.log");
    let mut server = Server::start_with(
        &data,
        log.clone(),
        &["--metrics", "127.0.0.1:0", "--log-format", "json"],
    );
    let mut c = server.ready_client(Duration::from_secs(30)).await;
    let at = server.metrics.clone().expect("metrics address");
    let ok_calls = [("operation", "MatchOrCreate"), ("code", "OK")];
    let before = scrape(&at);
    assert_eq!(value(&before, "empi_calls_total", &ok_calls), 0.0);
    assert_eq!(value(&before, "empi_feed_head_sequence", &[]), 0.0);

    for j in 0..5 {
        c.match_or_create(pb::MatchOrCreateRequest {
            record: Some(record(0, j)),
            actor: "ops-test".into(),
        })
        .await
        .unwrap();
    }
    let bad = c
        .get_person(pb::GetPersonRequest {
            euid: "not-an-euid".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);

    let after = scrape(&at);
    assert_eq!(value(&after, "empi_calls_total", &ok_calls), 5.0);
    let invalid = [("operation", "GetPerson"), ("code", "INVALID_ARGUMENT")];
    assert_eq!(value(&after, "empi_calls_total", &invalid), 1.0);
    let latency = [("operation", "MatchOrCreate")];
    assert_eq!(value(&after, "empi_call_duration_seconds", &latency), 5.0);
    let decided: f64 = ["linked", "review", "created"]
        .iter()
        .map(|d| value(&after, "empi_decisions_total", &[("decision", d)]))
        .sum();
    assert_eq!(decided, 5.0);
    assert_eq!(value(&after, "empi_records", &[]), 5.0);
    assert_eq!(value(&after, "empi_index_records", &[]), 5.0);
    assert!(value(&after, "empi_feed_head_sequence", &[]) >= 5.0);
    assert!(value(&after, "empi_store_flush_duration_seconds", &[]) >= 1.0);
    assert!(value(&after, "empi_store_size_bytes", &[]) > 0.0);
    assert!(value(&after, "empi_audit_wait_seconds", &[]) >= 6.0);
    assert!(value(&after, "process_resident_memory_bytes", &[]) > 0.0);
    let (status, _) = http_get(&at, "/other");
    assert!(status.contains("404"), "{status}");

    let _ = std::process::Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status();
    let _ = server.child.wait();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.lines().count() >= 3, "{text}");
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
        assert!(
            v.get("level").is_some() && v.get("timestamp").is_some(),
            "{line}"
        );
    }
}

/// An online backup taken while 8 clients submit is the store at the backup's sequence:
/// restored, it passes `empi check` and holds exactly the original's events up to that
/// sequence and the records they describe, with the original's content. A backup with one
/// byte changed, or a file that is no backup, is refused and restores nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_taken_while_eight_clients_submit_restores_the_store_at_its_sequence() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("store");
    let mut server = Server::start(&data, dir.path().join("serve.log"));
    server.ready_client(Duration::from_secs(30)).await;
    let (stop, acks) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicUsize::new(0)),
    );
    let clients: Vec<_> = (0..8)
        .map(|c| {
            let (stop, acks) = (Arc::clone(&stop), Arc::clone(&acks));
            tokio::spawn(submitter(server.endpoint(), c, 0, stop, acks))
        })
        .collect();
    until_acks(&acks, 200).await;
    let file = dir.path().join("store.empibak");
    let (data_s, file_s) = (data.to_str().unwrap(), file.to_str().unwrap());
    let during = acks.load(Ordering::SeqCst);
    let said = tokio::task::spawn_blocking({
        let (d, f) = (data_s.to_string(), file_s.to_string());
        move || ok(&["backup", "--data", &d, "--out", &f])
    })
    .await
    .unwrap();
    // Writes went on during and after the backup.
    until_acks(&acks, acks.load(Ordering::SeqCst) + 50).await;
    stop.store(true, Ordering::SeqCst);
    for c in clients {
        c.await.unwrap();
    }
    assert!(acks.load(Ordering::SeqCst) > during + 50);
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status();
    let _ = server.child.wait();
    assert!(said.contains("change feed sequence"), "{said}");

    let restored = dir.path().join("restored");
    let restored_s = restored.to_str().unwrap();
    ok(&["restore", "--from", file_s, "--data", restored_s]);
    let check = ok(&["check", "--data", restored_s]);
    assert!(check.trim_end().ends_with("ok"), "{check}");

    let original = SledStore::open(&data).unwrap();
    let copy = SledStore::open(&restored).unwrap();
    let at = copy.feed_bounds().unwrap().head;
    assert!(said.contains(&format!("sequence {at},")), "{said} / {at}");
    let originals: Vec<_> = all_events(&original)
        .iter()
        .map(key_and_euid)
        .filter(|e| e.0 <= at)
        .collect();
    assert!(
        (originals.len() as u64) < original.feed_bounds().unwrap().head,
        "the original went on after the backup"
    );
    let copies: Vec<_> = all_events(&copy).iter().map(key_and_euid).collect();
    assert_eq!(
        copies, originals,
        "the original's feed up to the backup's sequence"
    );
    let records = stored(&copy);
    assert_eq!(
        records,
        mirror(&originals),
        "the records those events describe"
    );
    for key in records.keys() {
        let (source, local_id) = key.split_once('/').unwrap();
        let k = RecordKey::new(source, local_id);
        let a = original.get_record(&k).unwrap().unwrap();
        let b = copy.get_record(&k).unwrap().unwrap();
        assert_eq!((a.record, a.link), (b.record, b.link), "{key}");
    }
    let stats = copy.stats().unwrap();
    assert_eq!(stats.records, records.len() as u64);
    drop((original, copy));
    // The restored trail holds the original's lines up to the backup, completed from the
    // store once opened; `empi audit` reads it.
    let audit = ok(&["audit", "--data", restored_s]);
    assert!(
        audit.lines().count() >= records.len(),
        "{}",
        audit.lines().count()
    );

    let good = std::fs::read(&file).unwrap();
    let mut bad = good.clone();
    let middle = bad.len() / 2;
    bad[middle] ^= 0x01;
    let damaged = dir.path().join("damaged.empibak");
    std::fs::write(&damaged, &bad).unwrap();
    let refused_into = dir.path().join("refused");
    let out = empi(&[
        "restore",
        "--from",
        damaged.to_str().unwrap(),
        "--data",
        refused_into.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let why = String::from_utf8_lossy(&out.stderr);
    assert!(why.contains("damaged") && why.contains("checksum"), "{why}");
    assert!(!refused_into.exists(), "nothing restored");
    let foreign = data.join("auth").join("audit.jsonl");
    let out = empi(&[
        "restore",
        "--from",
        foreign.to_str().unwrap(),
        "--data",
        refused_into.to_str().unwrap(),
    ]);
    let why = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && why.contains("not an empi backup"),
        "{why}"
    );
    // Into a directory that is not empty: refused, and left as it was.
    let out = empi(&["restore", "--from", file_s, "--data", data_s]);
    assert!(!out.status.success());
    assert!(Path::new(data_s).join("db").exists());
}

/// A store written by the previous release (format 1, no change feed: 300 records of the
/// committed small set loaded by empi at commit 57d8b06, see
/// `tests/fixtures/store-format-1.md`) is refused by this build with the command that
/// upgrades it; `empi upgrade` keeps every record, person and history entry, the store
/// then passes `empi check`, serves its old persons (the same record under a new key links
/// to the person stored before the upgrade), and its change feed starts at sequence 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_written_by_the_previous_release_is_upgraded_and_serves_the_same_persons() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("store");
    crate::crash::copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/store-format-1"),
        &data,
    );
    let d = data.to_str().unwrap();

    let refused = empi(&["check", "--data", d]);
    assert!(!refused.status.success(), "an old store opened as if new");
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(said.contains("format version 1"), "{said}");
    assert!(said.contains("empi upgrade --data"), "{said}");

    ok(&["upgrade", "--data", d]);
    let report = ok(&["check", "--data", d]);
    for (what, n) in [
        ("records", 300),
        ("persons active", 291),
        ("history entries", 300),
        ("indexed records", 300),
    ] {
        assert!(
            report
                .lines()
                .any(|l| l.starts_with(what) && l.split_whitespace().last() == Some(&n.to_string())),
            "{what} {n} not in:\n{report}"
        );
    }

    let mut server = Server::start(&data, dir.path().join("serve.log"));
    let mut client = server.ready_client(Duration::from_secs(30)).await;
    let before = client
        .get_record(pb::GetRecordRequest {
            key: Some(pb::RecordKey {
                source: "st-marys-adt".into(),
                local_id: "MRN00100001".into(),
            }),
        })
        .await
        .expect("a record stored before the upgrade")
        .into_inner()
        .record
        .expect("the record and its link");
    // The fixture's first line, sent by another source.
    let again = pb::PatientRecord {
        source: "upgrade-clinic".into(),
        local_id: "U0001".into(),
        given_name: Some("Cynthia".into()),
        family_name: Some("Brown".into()),
        birth_date: Some("1970-11-30".into()),
        sex: pb::Sex::Female as i32,
        address: Some(pb::Address {
            lines: vec!["923 6th Avenue".into()],
            city: Some("Appleridge".into()),
            state: Some("FL".into()),
            postal_code: Some("34256".into()),
            country: Some("US".into()),
        }),
        phones: vec!["4962722142".into()],
        ..Default::default()
    };
    let answer = client
        .match_or_create(pb::MatchOrCreateRequest {
            record: Some(again),
            actor: "ops-test".into(),
        })
        .await
        .expect("match-or-create on the upgraded store")
        .into_inner();
    assert_eq!(answer.decision, pb::Decision::Linked as i32);
    assert_eq!(answer.euid, before.euid);

    let mut feed = client
        .watch_changes(pb::WatchChangesRequest { after_sequence: 0 })
        .await
        .expect("the feed of an upgraded store")
        .into_inner();
    let first = feed.message().await.unwrap().expect("one event");
    assert_eq!(first.events.first().map(|e| e.sequence), Some(1));
    drop(server);
}
