//! The HL7 v2 (MLLP) and FHIR doors live: in-process listeners on `127.0.0.1:0` over one
//! application layer, driven over sockets. The bad-input tables of issue 20 through the
//! listeners (clear AE/AR or OperationOutcome, nothing stored, the listener keeps
//! serving), replays answered as before across restarts and connections, PDQ paging and its
//! cancel, sources bound to a feed, one audit line per message, TLS with client
//! certificates, and the same record deciding alike through gRPC, HL7 v2 and FHIR.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use empi::app::App;
use empi::auth::{audit, tokens, AuditEntry, AuditLog, AuthMode, Credentials, Role, Security};
use empi::fhir::http::FhirServerConfig;
use empi::grpc::pb::{self, empi_client::EmpiClient};
use empi::hl7::listener::Hl7Config;
use empi::hl7::mllp::{self, MllpDecoder};
use empi::linker::Linker;
use empi::record::RecordKey;
use empi::service::{Service, ServiceConfig};
use empi::store::{MemoryStore, SledStore, Store};
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// The three listeners of one server, over one service and one audit trail.
struct Live {
    grpc: SocketAddr,
    hl7: SocketAddr,
    fhir: SocketAddr,
    service: Arc<Service>,
    stop: tokio::sync::watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<empi::Result<()>>>,
}

fn service_over(store: Arc<dyn Store>) -> Arc<Service> {
    Arc::new(
        Service::open(
            store,
            Linker::with_default_model(),
            ServiceConfig::default(),
        )
        .unwrap(),
    )
}

impl Live {
    /// Starts gRPC, HL7 and FHIR listeners over `service`, auditing into `data`.
    async fn start(
        service: Arc<Service>,
        data: &Path,
        auth: AuthMode,
        mut hl7: Hl7Config,
        mut fhir: FhirServerConfig,
    ) -> Live {
        let audit = Some(Arc::new(AuditLog::open(data).unwrap()));
        let security = Security {
            auth: auth.clone(),
            audit: audit.clone(),
            ..Security::local_dev()
        };
        let app = Arc::new(App::new(Arc::clone(&service), audit, None));
        hl7.auth = auth.clone();
        fhir.auth = auth;
        let bind = || tokio::net::TcpListener::bind("127.0.0.1:0");
        let (g, h, f) = (
            bind().await.unwrap(),
            bind().await.unwrap(),
            bind().await.unwrap(),
        );
        let (grpc, hl7_addr, fhir_addr) = (
            g.local_addr().unwrap(),
            h.local_addr().unwrap(),
            f.local_addr().unwrap(),
        );
        fhir.fhir.base_url = format!("http://{fhir_addr}/fhir");
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let until = || {
            let mut s = stopped.clone();
            async move {
                let _ = s.wait_for(|v| *v).await;
            }
        };
        let tasks = vec![
            tokio::spawn(empi::grpc::serve_secure(
                g,
                Arc::clone(&service),
                security,
                until(),
            )),
            tokio::spawn(empi::hl7::listener::serve(
                h,
                Arc::clone(&app),
                hl7,
                until(),
            )),
            tokio::spawn(empi::fhir::http::serve(f, app, fhir, until())),
        ];
        Live {
            grpc,
            hl7: hl7_addr,
            fhir: fhir_addr,
            service,
            stop,
            tasks,
        }
    }

    async fn open(store: Arc<dyn Store>, data: &Path) -> Live {
        let (hl7, fhir) = (Hl7Config::default(), FhirServerConfig::default());
        Live::start(service_over(store), data, AuthMode::Disabled, hl7, fhir).await
    }

    async fn stop(self) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            t.await.unwrap().unwrap();
        }
    }

    fn records(&self) -> u64 {
        self.service.stats().unwrap().records
    }

    async fn mllp(&self) -> Mllp<TcpStream> {
        Mllp::over(TcpStream::connect(self.hl7).await.unwrap())
    }

    async fn fhir(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: &[u8],
    ) -> (u16, Value) {
        let stream = TcpStream::connect(self.fhir).await.unwrap();
        http(stream, method, path, token, body).await
    }

    async fn grpc(&self) -> EmpiClient<tonic::transport::Channel> {
        EmpiClient::connect(format!("http://{}", self.grpc))
            .await
            .unwrap()
    }
}

/// An MLLP client: frames out, answers in (in order, however the reads split them).
struct Mllp<S> {
    stream: S,
    decoder: MllpDecoder,
    ready: std::collections::VecDeque<String>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Mllp<S> {
    fn over(stream: S) -> Self {
        Mllp {
            stream,
            decoder: MllpDecoder::default(),
            ready: std::collections::VecDeque::new(),
        }
    }

    /// Sends raw bytes, returns the next answer (segments ended by CR).
    async fn raw(&mut self, bytes: &[u8]) -> String {
        self.stream.write_all(bytes).await.unwrap();
        self.answer().await
    }

    async fn answer(&mut self) -> String {
        let mut buf = vec![0u8; 65536];
        loop {
            if let Some(answer) = self.ready.pop_front() {
                return answer;
            }
            let n = self.stream.read(&mut buf).await.unwrap();
            assert!(n > 0, "the listener closed the connection");
            for frame in self.decoder.push(&buf[..n]) {
                let frame = frame.expect("the listener's answers are well framed");
                self.ready
                    .push_back(String::from_utf8_lossy(&frame).into_owned());
            }
        }
    }

    /// Sends a message (LF or CR segment ends), returns the answer.
    async fn send(&mut self, text: &str) -> String {
        let text = text.trim_end().replace("\r\n", "\r").replace('\n', "\r") + "\r";
        self.raw(&mllp::encode(text.as_bytes()).unwrap()).await
    }
}

/// One HTTP/1.1 exchange (`Connection: close`): the status and the JSON body.
async fn http<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &[u8],
) -> (u16, Value) {
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: empi\r\nConnection: close\r\n{auth}\
         Content-Type: application/fhir+json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(body).await.unwrap();
    let mut out = Vec::new();
    // A refused upload may be answered before it is all read; what was answered counts.
    let _ = stream.read_to_end(&mut out).await;
    let text = String::from_utf8_lossy(&out);
    let status = text[9..12].parse().unwrap();
    let (headers, json) = text.split_once("\r\n\r\n").unwrap();
    assert!(
        headers.contains("application/fhir+json"),
        "{method} {path}: {headers}"
    );
    (status, serde_json::from_str(json).unwrap())
}

fn fixture(path: &str) -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(path);
    String::from_utf8_lossy(&std::fs::read(p).unwrap()).into_owned()
}

/// An ADT^A04 v2.5 with control id `ctl` and PID `pid`.
fn a04(ctl: &str, pid: &str) -> String {
    format!(
        "MSH|^~\\&|ADT_SENDER|GOOD_HEALTH|EMPI|CITY_HOSP|20260111080000||ADT^A04^ADT_A01|{ctl}|P|2.5\r\
         EVN||20260111080000\r{pid}\rPV1|1|O\r"
    )
}

const MARGARET: &str = "PID|||MRN1^^^GOODHEALTH^MR||Okonkwo^Margaret^Adaeze||19610702|F|||\
    417 Elm Street^^Springfield^MA^01103^USA||(413)555-0142||||||123-45-6789";

/// MSA-1 and the ERR segments' positions of an answer.
fn msa(answer: &str) -> String {
    answer
        .split('\r')
        .find_map(|s| s.strip_prefix("MSA|"))
        .map(|m| m.split('|').next().unwrap_or("").to_string())
        .unwrap_or_default()
}

fn segment<'a>(answer: &'a str, id: &str) -> Option<&'a str> {
    answer.split('\r').find(|s| s.starts_with(id))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hl7_bad_input_is_answered_and_nothing_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let live = Live::open(Arc::new(MemoryStore::new()), dir.path()).await;
    let mut c = live.mllp().await;
    let huge = format!(
        "MSH|^~\\&|A|B|C|D|1||ADT^A04|BIG|P|2.5\rZZZ|{}\rPID|||M9^^^H||Doe^Jo\r",
        "x".repeat(1 << 20)
    );
    let cases: Vec<(&str, Vec<u8>, &str, Option<&str>)> = vec![
        // (what, bytes on the wire, MSA-1, ERR location as ERR-2 or ERR-7 names it)
        (
            "missing MSH",
            mllp_of(&fixture("hl7/bad-missing-msh.hl7")),
            "AR",
            Some("MSH"),
        ),
        (
            "wrong field separators",
            mllp_of(&fixture("hl7/bad-field-separator.hl7")),
            "AR",
            Some("MSH"),
        ),
        ("a 1 MiB segment", mllp_of(&huge), "AR", Some("longer than")),
        (
            "unknown message type",
            mllp_of(&fixture("hl7/bad-unknown-message-type.hl7")),
            "AR",
            Some("MSH^1^9^1^1"),
        ),
        (
            "unsupported event",
            mllp_of(&fixture("hl7/bad-unsupported-event.hl7")),
            "AR",
            Some("MSH^1^9^1^2"),
        ),
        (
            "invalid date",
            mllp_of(&fixture("hl7/bad-pid7-date.hl7")),
            "AE",
            Some("PID^1^7"),
        ),
        (
            "missing PID",
            mllp_of(&fixture("hl7/bad-missing-pid.hl7")),
            "AR",
            Some("PID"),
        ),
        (
            "bad PDQ parameter",
            mllp_of(&fixture("hl7/bad-q22-parameter.hl7")),
            "AE",
            Some("QPD"),
        ),
        (
            "version",
            mllp_of(&fixture("hl7/bad-version.hl7")),
            "AR",
            Some("MSH^1^12"),
        ),
        ("not HL7 at all", mllp_of("hello"), "AR", None),
    ];
    // A frame cut short by a new start block is answered when that block comes: AR for
    // the cut frame, then the next frame's own answer.
    let cut = [
        b"\x0bMSH|^~\\&|A|B|C|D|1||ADT^A04|CUT|P|2.5\rPID|||M9".as_slice(),
        &mllp_of(&fixture("hl7/bad-missing-msh.hl7")),
    ]
    .concat();
    let first = c.raw(&cut).await;
    assert_eq!(msa(&first), "AR", "{first}");
    assert!(first.contains("unreadable frame"), "{first}");
    let second = c.answer().await;
    assert_eq!(
        msa(&second),
        "AR",
        "the next frame read, and refused: {second}"
    );
    assert_eq!(live.records(), 0);
    for (what, bytes, want, err) in &cases {
        let answer = c.raw(bytes).await;
        assert_eq!(msa(&answer), *want, "{what}: {answer}");
        if let Some(e) = err {
            assert!(answer.contains(e), "{what}: {answer}");
        }
        // MSH-10 of the answer is the listener's own (and may hold any letters).
        let rest: Vec<&str> = answer.split('\r').skip(1).collect();
        assert!(
            rest.iter().all(|s| !s.contains("Doe") && !s.contains("M9")),
            "{what}: no values echoed: {answer}"
        );
        assert_eq!(live.records(), 0, "{what}: nothing stored");
    }
    // The listener keeps serving on the same connection.
    let ok = c.send(&a04("GOOD1", MARGARET)).await;
    assert_eq!(msa(&ok), "AA", "{ok}");
    assert_eq!(live.records(), 1);
    // A connection that ends inside a frame costs nothing but itself.
    let mut cut = live.mllp().await;
    cut.stream
        .write_all(b"\x0bMSH|^~\\&|A|B|C|D|1||ADT^A04|EOF|P|2.5\rPID|||M8^^^H")
        .await
        .unwrap();
    cut.stream.shutdown().await.unwrap();
    drop(cut);
    let again = live.mllp().await.send(&a04("GOOD2", MARGARET)).await;
    assert_eq!(msa(&again), "AA");
    assert_eq!(
        live.records(),
        1,
        "an identical record again changes nothing"
    );
    live.stop().await;

    // Every message, refused or not, has its line; the refused ones name no patient data.
    let entries = audit::read(dir.path(), None, None).unwrap().entries;
    assert!(entries.len() >= cases.len() + 5, "{}", entries.len());
    assert!(entries.iter().any(|e| e.operation == "Hl7Message"));
    let date = entries
        .iter()
        .find(|e| e.operation == "MatchOrCreate" && e.code.as_deref() == Some("INVALID_ARGUMENT"))
        .expect("the bad date audited as the submission it was");
    assert_eq!(date.records, ["GOODHEALTH/MRN10003"]);
}

fn mllp_of(text: &str) -> Vec<u8> {
    let text = text.trim_end().replace('\n', "\r") + "\r";
    mllp::encode(text.as_bytes()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fhir_bad_input_is_answered_with_operation_outcomes() {
    let dir = tempfile::tempdir().unwrap();
    let live = Live::open(Arc::new(MemoryStore::new()), dir.path()).await;
    let body = |f: &str| fixture(&format!("fhir/{f}")).into_bytes();
    let huge = format!(
        r#"{{"resourceType": "Parameters", "x": "{}"}}"#,
        "x".repeat(1 << 20)
    );
    let cases: Vec<(&str, &str, Vec<u8>, u16, &str)> = vec![
        (
            "POST",
            "/fhir/Patient/$match",
            body("bad-malformed.json"),
            400,
            "structure",
        ),
        (
            "POST",
            "/fhir/Patient/$match",
            body("bad-wrong-resource-type.json"),
            400,
            "invalid",
        ),
        (
            "POST",
            "/fhir/Patient/$match",
            body("bad-resource-in-parameters.json"),
            400,
            "invalid",
        ),
        (
            "POST",
            "/fhir/Patient/$match",
            body("bad-birth-date.json"),
            400,
            "invalid",
        ),
        (
            "POST",
            "/fhir/Patient/$match",
            body("bad-gender.json"),
            400,
            "invalid",
        ),
        (
            "POST",
            "/fhir/Patient/$match",
            body("bad-count.json"),
            400,
            "invalid",
        ),
        (
            "POST",
            "/fhir/Patient/$match",
            huge.into_bytes(),
            413,
            "too-costly",
        ),
        ("POST", "/fhir/Patient/$match", Vec::new(), 400, "structure"),
        (
            "GET",
            "/fhir/Patient/$match",
            Vec::new(),
            405,
            "not-supported",
        ),
        (
            "GET",
            "/fhir/Patient/not-an-euid",
            Vec::new(),
            400,
            "invalid",
        ),
        (
            "GET",
            "/fhir/Patient/E00000000ZZ",
            Vec::new(),
            404,
            "not-found",
        ),
        (
            "GET",
            "/fhir/Observation/1",
            Vec::new(),
            404,
            "not-supported",
        ),
        ("GET", "/fhir/Patient/$ihe-pix", Vec::new(), 400, "required"),
        (
            "GET",
            "/fhir/Patient/$ihe-pix?sourceIdentifier=urn:empi:source:NOWHERE%7CM1",
            Vec::new(),
            400,
            "code-invalid",
        ),
    ];
    for (method, path, bytes, status, code) in &cases {
        let (got, v) = live.fhir(method, path, None, bytes).await;
        assert_eq!(
            (got, v["resourceType"].as_str()),
            (*status, Some("OperationOutcome")),
            "{method} {path}: {v}"
        );
        assert_eq!(v["issue"][0]["code"], *code, "{method} {path}: {v}");
        let text = v.to_string();
        assert!(
            !text.contains("1956-02-30") && !text.contains("SECRET"),
            "{text}"
        );
    }
    assert_eq!(live.records(), 0);
    // Still serving.
    let (status, v) = live.fhir("GET", "/fhir/metadata", None, b"").await;
    assert_eq!(
        (status, v["resourceType"].as_str()),
        (200, Some("CapabilityStatement"))
    );
    let (status, v) = live
        .fhir(
            "POST",
            "/fhir/Patient/$match",
            None,
            &body("match-request.json"),
        )
        .await;
    assert_eq!((status, v["total"].as_u64()), (200, Some(0)), "{v}");
    live.stop().await;
    let entries = audit::read(dir.path(), None, None).unwrap().entries;
    let finds = entries
        .iter()
        .filter(|e| e.operation == "FindPersons")
        .count();
    assert_eq!(
        finds, 8,
        "every $match audited, the oversized one as refused before reading"
    );
}

/// The same demographics decide alike through each door: a record sent over HL7 v2 and
/// over gRPC (under other keys) links to the person a first record created, and FHIR
/// `$match` grades that person certain, as gRPC's `Match` decides a link.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_record_gets_the_same_euid_and_decision_through_every_door() {
    let dir = tempfile::tempdir().unwrap();
    let live = Live::open(Arc::new(MemoryStore::new()), dir.path()).await;
    let mut grpc = live.grpc().await;
    let record = |source: &str, id: &str| pb::PatientRecord {
        source: source.into(),
        local_id: id.into(),
        given_name: Some("Margaret".into()),
        middle_name: Some("Adaeze".into()),
        family_name: Some("Okonkwo".into()),
        birth_date: Some("1961-07-02".into()),
        sex: pb::Sex::Female as i32,
        phones: vec!["(413)555-0142".into()],
        identifiers: vec![pb::Identifier {
            system: "national_id".into(),
            value: "123-45-6789".into(),
        }],
        address: Some(pb::Address {
            lines: vec!["417 Elm Street".into()],
            city: Some("Springfield".into()),
            state: Some("MA".into()),
            postal_code: Some("01103".into()),
            country: Some("USA".into()),
        }),
        ..Default::default()
    };
    let submit = |r| pb::MatchOrCreateRequest {
        record: Some(r),
        actor: String::new(),
    };
    let first = grpc
        .match_or_create(submit(record("NORTHCLINIC", "N1")))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.decision(), pb::Decision::Created);

    let via_grpc = grpc
        .match_or_create(submit(record("LAB", "L1")))
        .await
        .unwrap()
        .into_inner();
    let ack = live.mllp().await.send(&a04("SAME1", MARGARET)).await;
    assert_eq!(msa(&ack), "AA", "{ack}");
    let via_hl7 = live
        .service
        .get_record(&RecordKey::new("GOODHEALTH", "MRN1"))
        .unwrap();
    assert_eq!(via_grpc.decision(), pb::Decision::Linked);
    assert_eq!(via_grpc.euid, first.euid);
    assert_eq!(
        via_hl7.euid.to_string(),
        first.euid,
        "HL7 v2: the same EUID"
    );
    assert!(
        matches!(via_hl7.link.method, empi::store::LinkMethod::Auto { .. }),
        "HL7 v2: the same decision, an automatic link: {:?}",
        via_hl7.link
    );

    let preview = grpc
        .r#match(pb::MatchRequest {
            record: Some(record("", "")),
            max_candidates: 3,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(preview.decision(), pb::Decision::Linked);
    let (status, bundle) = live
        .fhir(
            "POST",
            "/fhir/Patient/$match",
            None,
            fixture("fhir/match-request.json").as_bytes(),
        )
        .await;
    assert_eq!(status, 200, "{bundle}");
    let top = &bundle["entry"][0];
    assert_eq!(
        top["resource"]["id"],
        first.euid.as_str(),
        "FHIR: the same EUID"
    );
    assert_eq!(preview.candidates[0].euid, first.euid);
    assert_eq!(
        top["search"]["extension"][0]["valueCode"], "certain",
        "FHIR: the same decision, a link"
    );
    // And the Patient read back lists every record of the three doors.
    let (status, patient) = live
        .fhir("GET", &format!("/fhir/Patient/{}", first.euid), None, b"")
        .await;
    assert_eq!(status, 200);
    let ids: Vec<&str> = patient["identifier"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| i["value"].as_str())
        .collect();
    for id in ["N1", "L1", "MRN1"] {
        assert!(ids.contains(&id), "{ids:?}");
    }
    live.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hl7_replays_are_answered_as_before_across_restarts_and_connections() {
    let dir = tempfile::tempdir().unwrap();
    let store_dir = dir.path().join("store");
    let sled = || -> Arc<dyn Store> { Arc::new(SledStore::open(&store_dir).unwrap()) };
    let live = Live::open(sled(), dir.path()).await;
    let first = live.mllp().await.send(&a04("R1", MARGARET)).await;
    assert_eq!(msa(&first), "AA");
    // A later message changes the record; a replay of the first must not undo it.
    let moved = MARGARET.replace("417 Elm Street", "9 Oak Lane");
    assert_eq!(msa(&live.mllp().await.send(&a04("R2", &moved)).await), "AA");
    live.stop().await;

    let live = Live::open(sled(), dir.path()).await;
    let replay = live.mllp().await.send(&a04("R1", MARGARET)).await;
    assert_eq!(replay, first, "byte for byte as before, after a restart");
    let stored = live
        .service
        .get_record(&RecordKey::new("GOODHEALTH", "MRN1"))
        .unwrap();
    assert_eq!(
        stored.record.address.lines,
        ["9 Oak Lane"],
        "the replay applied nothing"
    );
    // The same control id with other content is refused on MSH-10.
    let reused = live.mllp().await.send(&a04("R1", &moved)).await;
    assert_eq!(msa(&reused), "AR", "{reused}");
    assert!(
        segment(&reused, "ERR").unwrap().contains("MSH^1^10"),
        "{reused}"
    );
    // The same new message on two connections at once: one change, the same answer.
    let other = MARGARET
        .replace("MRN1", "MRN2")
        .replace("Margaret", "Margarete");
    let (mut a, mut b) = (live.mllp().await, live.mllp().await);
    let msg = a04("R3", &other);
    let (x, y) = tokio::join!(a.send(&msg), b.send(&msg));
    assert_eq!(x, y);
    assert_eq!(msa(&x), "AA");
    let key = RecordKey::new("GOODHEALTH", "MRN2");
    let history = live
        .service
        .get_person(&live.service.get_record(&key).unwrap().euid)
        .unwrap()
        .history;
    let touching: Vec<_> = history
        .iter()
        .filter(|h| h.records.contains(&key))
        .collect();
    assert_eq!(touching.len(), 1, "applied once: {touching:?}");
    live.stop().await;
}

/// An ITI-8 feed with a merge, then PIX and PDQ queries over it: A40 makes one person of
/// two records; Q23 lists the other domains' identifiers; Q22 pages with a continuation
/// pointer that is good once, and QCN^J01 ends it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_feed_merges_and_is_queried_by_pix_and_pdq_with_paging() {
    let dir = tempfile::tempdir().unwrap();
    let live = Live::open(Arc::new(MemoryStore::new()), dir.path()).await;
    let mut c = live.mllp().await;
    let family = |id: &str, given: &str, dob: &str, phone: &str| {
        format!(
            "PID|||{id}^^^GOODHEALTH^MR||Lindqvist^{given}||{dob}|M|||12 Birch Road^^Salem^MA^01970||{phone}"
        )
    };
    for (ctl, pid) in [
        (
            "F1",
            family("G1", "Anders", "19700101", "978-555-0101") + "||||||123-45-0001",
        ),
        // His father and his son, of the same name.
        ("F2", family("G2", "Anders", "19450202", "978-555-0102")),
        ("F3", family("G3", "Anders", "19980303", "978-555-0103")),
        ("F4", family("G4", "Anders", "19700101", "978-555-0199")),
    ] {
        assert_eq!(msa(&c.send(&a04(ctl, &pid)).await), "AA", "{ctl}");
    }
    // G4 is Anders again under another MRN (and another phone), held apart by his father
    // and son at the address: the source merges it into G1.
    let euid_of = |id: &str| {
        live.service
            .get_record(&RecordKey::new("GOODHEALTH", id))
            .unwrap()
            .euid
    };
    assert_ne!(euid_of("G1"), euid_of("G4"), "two persons before the merge");
    let a40 = "MSH|^~\\&|ADT_SENDER|GOOD_HEALTH|EMPI|CITY_HOSP|20260111090000||ADT^A40^ADT_A39|M40|P|2.5\r\
               EVN||20260111090000\rPID|||G1^^^GOODHEALTH^MR||Lindqvist^Anders\rMRG|G4^^^GOODHEALTH\r";
    let merged = c.send(a40).await;
    assert_eq!(msa(&merged), "AA", "{merged}");
    assert_eq!(
        c.send(a40).await,
        merged,
        "a replayed merge is answered as before"
    );
    let g1 = euid_of("G1");
    assert_eq!(g1, euid_of("G4"), "one person after the source's merge");
    let history = live.service.get_person(&g1).unwrap().history;
    let absorbed: Vec<_> = history
        .iter()
        .filter(|h| h.action == empi::store::HistoryAction::MergeAbsorbed)
        .collect();
    assert_eq!(absorbed.len(), 1, "recorded once: {history:?}");
    assert_eq!(absorbed[0].actor, "GOODHEALTH", "as the declaring source");
    // The lab's record of Anders links by his SSN (PID-19) despite his brothers at the address.
    let lab = "PID|||L1^^^LAB^MR||Lindqvist^Anders||19700101|M|||12 Birch Road^^Salem^MA^01970||978-555-0101||||||123-45-0001";
    assert_eq!(msa(&c.send(&a04("F5", lab)).await), "AA");
    let l1 = live
        .service
        .get_record(&RecordKey::new("LAB", "L1"))
        .unwrap();
    assert_eq!(l1.euid, g1, "the lab's record is Anders too: {:?}", l1.link);

    let q23 = |domains: &str| {
        format!(
            "MSH|^~\\&|PIX_CONSUMER|LAB|EMPI|CITY_HOSP|1||QBP^Q23^QBP_Q21|P1|P|2.5\r\
             QPD|IHE PIX Query|T23|G1^^^GOODHEALTH|{domains}\rRCP|I\r"
        )
    };
    let pix = c.send(&q23("^^^LAB~^^^EMPI")).await;
    assert!(pix.contains("QAK|T23|OK"), "{pix}");
    let pid = segment(&pix, "PID").unwrap();
    assert!(
        pid.contains("L1^^^LAB^PI") && pid.contains(&format!("{g1}^^^EMPI^PI")),
        "{pid}"
    );
    assert!(!pid.contains("G4"), "only the domains asked for: {pid}");
    let unknown = c.send(&q23("^^^NOWHERE")).await;
    assert!(
        unknown.contains("QAK|T23|AE") && unknown.contains("ERR||QPD^1^4^1^4|204"),
        "{unknown}"
    );

    let q22 = |ctl: &str, dsc: &str| {
        format!(
            "MSH|^~\\&|PDQ_CONSUMER|ED|EMPI|CITY_HOSP|1||QBP^Q22^QBP_Q21|{ctl}|P|2.5\r\
             QPD|IHE PDQ Query|T22|@PID.5.1.1^Lindqvist~@PID.5.2^Anders~@PID.11.3^Salem\r\
             RCP|I|1^RD\r{dsc}"
        )
    };
    let page1 = c.send(&q22("D1", "")).await;
    let qak = segment(&page1, "QAK").unwrap().to_string();
    let fields: Vec<&str> = qak.split('|').collect();
    let total: usize = fields[4].parse().unwrap();
    assert!(total >= 3, "{page1}");
    assert_eq!(
        (fields[5], fields[6].parse::<usize>().unwrap()),
        ("1", total - 1)
    );
    let pointer = segment(&page1, "DSC")
        .unwrap()
        .split('|')
        .nth(1)
        .unwrap()
        .to_string();
    assert_eq!(pointer.len(), 32);
    let page2 = c.send(&q22("D2", &format!("DSC|{pointer}|I\r"))).await;
    assert_eq!(msa(&page2), "AA", "{page2}");
    assert_ne!(
        segment(&page2, "PID"),
        segment(&page1, "PID"),
        "the next candidate"
    );
    let reused = c.send(&q22("D3", &format!("DSC|{pointer}|I\r"))).await;
    assert!(
        reused.contains("QAK|T22|AE") && reused.contains("DSC^1^1"),
        "good once: {reused}"
    );
    let next = segment(&page2, "DSC")
        .unwrap()
        .split('|')
        .nth(1)
        .unwrap()
        .to_string();
    let cancel = "MSH|^~\\&|PDQ_CONSUMER|ED|EMPI|CITY_HOSP|1||QCN^J01^QCN_J01|C1|P|2.5\rQID|T22|IHE PDQ Query\r";
    assert_eq!(msa(&c.send(cancel).await), "AA");
    let cancelled = c.send(&q22("D4", &format!("DSC|{next}|I\r"))).await;
    assert!(cancelled.contains("QAK|T22|AE"), "cancelled: {cancelled}");
    live.stop().await;
}

/// A feed bound to a submitter credential writes its own assigning authority only; FHIR
/// callers need a token and get what their role allows; every message and call is audited
/// as its caller.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feeds_are_bound_to_their_sources_and_callers_to_their_roles() {
    let dir = tempfile::tempdir().unwrap();
    tokens::create_token(
        dir.path(),
        "goodhealth-adt",
        Role::Submitter,
        &["GOODHEALTH".into()],
    )
    .unwrap();
    let (_, registrar) = tokens::create_token(dir.path(), "ann", Role::Registrar, &[]).unwrap();
    let (_, submitter) =
        tokens::create_token(dir.path(), "lab", Role::Submitter, &["LAB".into()]).unwrap();
    let auth = AuthMode::Required(Arc::new(Credentials::open(dir.path()).unwrap()));
    let hl7 = Hl7Config {
        bound: Some("goodhealth-adt".into()),
        ..Hl7Config::default()
    };
    let service = service_over(Arc::new(MemoryStore::new()));
    let live = Live::start(service, dir.path(), auth, hl7, FhirServerConfig::default()).await;
    let mut c = live.mllp().await;
    assert_eq!(msa(&c.send(&a04("B1", MARGARET)).await), "AA");
    let other = MARGARET.replace("GOODHEALTH", "STMARY");
    let refused = c.send(&a04("B2", &other)).await;
    assert_eq!(msa(&refused), "AE", "{refused}");
    assert!(
        segment(&refused, "ERR").unwrap().contains("PID^1^3^1^4"),
        "{refused}"
    );
    assert_eq!(live.records(), 1);

    let euid = live
        .service
        .get_record(&RecordKey::new("GOODHEALTH", "MRN1"))
        .unwrap()
        .euid;
    let path = format!("/fhir/Patient/{euid}");
    let (status, v) = live.fhir("GET", &path, None, b"").await;
    assert_eq!(
        (status, v["issue"][0]["code"].as_str()),
        (401, Some("login"))
    );
    let (status, _) = live.fhir("GET", &path, Some("not-a-token"), b"").await;
    assert_eq!(status, 401);
    let (status, v) = live.fhir("GET", &path, Some(&submitter), b"").await;
    assert_eq!(
        (status, v["issue"][0]["code"].as_str()),
        (403, Some("forbidden"))
    );
    let (status, v) = live.fhir("GET", &path, Some(&registrar), b"").await;
    assert_eq!((status, v["id"].as_str()), (200, Some(euid.as_str())));
    // A submitter's $match shows only what its own sources say: nothing of GOODHEALTH's.
    let body = fixture("fhir/match-request.json");
    let (status, v) = live
        .fhir(
            "POST",
            "/fhir/Patient/$match",
            Some(&submitter),
            body.as_bytes(),
        )
        .await;
    assert_eq!(status, 200);
    let patient = &v["entry"][0]["resource"];
    assert_eq!(patient["id"].as_str(), Some(euid.as_str()));
    assert!(
        patient.get("name").is_none() && patient.get("birthDate").is_none(),
        "{patient}"
    );
    live.stop().await;

    let entries: Vec<AuditEntry> = audit::read(dir.path(), None, None).unwrap().entries;
    let by = |actor: &str| entries.iter().filter(|e| e.actor == actor).count();
    assert_eq!(
        by("goodhealth-adt"),
        2,
        "both messages, as the bound credential"
    );
    assert_eq!(by("lab"), 2);
    assert_eq!(by("ann"), 1);
    assert_eq!(
        entries
            .iter()
            .filter(|e| e.outcome == empi::auth::AuditOutcome::Unauthenticated)
            .count(),
        2
    );
}

/// MLLP and FHIR under the gRPC listener's TLS files: a registered client certificate is
/// the feed's identity; an unregistered one is refused; HTTPS takes bearer tokens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mllp_and_fhir_over_tls_with_client_certificates() {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    let dir = tempfile::tempdir().unwrap();
    let pki = crate::security::pki();
    let files = crate::security::tls_files(&pki, dir.path(), true);
    tokens::register_certificate(
        dir.path(),
        "lab-analyzer",
        Role::Submitter,
        &["GOODHEALTH".into()],
        pki.client_cert.as_bytes(),
    )
    .unwrap();
    let (_, ops) = tokens::create_token(dir.path(), "ops", Role::Admin, &[]).unwrap();
    let auth = AuthMode::Required(Arc::new(Credentials::open(dir.path()).unwrap()));
    let hl7 = Hl7Config {
        tls: Some(files.rustls_config(&[]).unwrap()),
        ..Hl7Config::default()
    };
    let fhir = FhirServerConfig {
        tls: Some(files.rustls_config(&[b"http/1.1"]).unwrap()),
        ..FhirServerConfig::default()
    };
    let service = service_over(Arc::new(MemoryStore::new()));
    let live = Live::start(service, dir.path(), auth, hl7, fhir).await;

    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(pki.ca.as_bytes()).unwrap())
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let client = |with_cert: bool| {
        let b = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots.clone());
        let config = if with_cert {
            b.with_client_auth_cert(
                vec![CertificateDer::from_pem_slice(pki.client_cert.as_bytes()).unwrap()],
                PrivateKeyDer::from_pem_slice(pki.client_key.as_bytes()).unwrap(),
            )
            .unwrap()
        } else {
            b.with_no_client_auth()
        };
        tokio_rustls::TlsConnector::from(Arc::new(config))
    };
    let connect = |addr: SocketAddr, with_cert: bool| {
        let connector = client(with_cert);
        async move {
            let tcp = TcpStream::connect(addr).await.unwrap();
            let name = ServerName::try_from("localhost").unwrap();
            connector.connect(name, tcp).await.unwrap()
        }
    };
    let mut feed = Mllp::over(connect(live.hl7, true).await);
    assert_eq!(msa(&feed.send(&a04("T1", MARGARET)).await), "AA");
    let mut anonymous = Mllp::over(connect(live.hl7, false).await);
    let refused = anonymous.send(&a04("T2", MARGARET)).await;
    assert_eq!(msa(&refused), "AR", "{refused}");
    assert_eq!(live.records(), 1);

    let euid = live
        .service
        .get_record(&RecordKey::new("GOODHEALTH", "MRN1"))
        .unwrap()
        .euid;
    let tls = connect(live.fhir, false).await;
    let (status, v) = http(
        tls,
        "GET",
        &format!("/fhir/Patient/{euid}"),
        Some(&ops),
        b"",
    )
    .await;
    assert_eq!((status, v["id"].as_str()), (200, Some(euid.as_str())));
    live.stop().await;
    let entries = audit::read(dir.path(), None, None).unwrap().entries;
    assert!(entries
        .iter()
        .any(|e| e.actor == "lab-analyzer" && e.operation == "MatchOrCreate"));
}
