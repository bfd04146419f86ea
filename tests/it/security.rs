//! Security end to end over TLS with generated certificates: each role gets exactly its
//! calls, bad credentials are refused, every call is audited, submitters get the minimum
//! necessary, and no patient data reaches the logs even at TRACE.

use std::path::Path;
use std::sync::Arc;

use empi::auth::{
    audit, tls::TlsFiles, tokens, AuditEntry, AuditLog, AuditOutcome, AuthMode, Credentials,
    Limits, Operation, Role, Security,
};
use empi::grpc::pb::{self, empi_client::EmpiClient};
use empi::linker::Linker;
use empi::service::{Service, ServiceConfig};
use empi::store::MemoryStore;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use tokio::sync::oneshot;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};
use tonic::{Code, Request, Status};

/// A test CA with a server certificate for `localhost` and one client certificate.
pub(crate) struct Pki {
    pub(crate) ca: String,
    server_cert: String,
    server_key: String,
    pub(crate) client_cert: String,
    pub(crate) client_key: String,
}

pub(crate) fn pki() -> Pki {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "empi test ca");
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::CrlSign,
    ];
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let leaf = |name: &str, usage| {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(vec![name.to_string()]).unwrap();
        p.distinguished_name.push(DnType::CommonName, name);
        p.extended_key_usages = vec![usage];
        p.use_authority_key_identifier_extension = true;
        let cert = p.signed_by(&key, &issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    };
    let (server_cert, server_key) = leaf("localhost", ExtendedKeyUsagePurpose::ServerAuth);
    let (client_cert, client_key) = leaf("lab-analyzer", ExtendedKeyUsagePurpose::ClientAuth);
    Pki {
        ca: ca_cert.pem(),
        server_cert,
        server_key,
        client_cert,
        client_key,
    }
}

/// Writes the PKI's server files into `dir` and returns the TLS files description.
pub(crate) fn tls_files(pki: &Pki, dir: &Path, with_client_ca: bool) -> TlsFiles {
    std::fs::write(dir.join("server.pem"), &pki.server_cert).unwrap();
    std::fs::write(dir.join("server.key"), &pki.server_key).unwrap();
    std::fs::write(dir.join("ca.pem"), &pki.ca).unwrap();
    TlsFiles {
        cert: dir.join("server.pem"),
        key: dir.join("server.key"),
        client_ca: with_client_ca.then(|| dir.join("ca.pem")),
        require_client_cert: false,
    }
}

struct TlsServer {
    port: u16,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<empi::Result<()>>,
}

impl TlsServer {
    async fn start(pki: &Pki, data: &Path) -> TlsServer {
        let service = Service::open(
            Arc::new(MemoryStore::new()),
            Linker::with_default_model(),
            ServiceConfig::default(),
        )
        .unwrap();
        let security = Security {
            tls: Some(tls_files(pki, data, true).server_config().unwrap()),
            auth: AuthMode::Required(Arc::new(Credentials::open(data).unwrap())),
            audit: Some(Arc::new(AuditLog::open(data).unwrap())),
            limits: Limits::default(),
            space: None,
        };
        let (addr, stop, task) = crate::faults::spawn_secure(service, security).await;
        TlsServer {
            port: addr.port(),
            stop,
            task,
        }
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        self.task.await.unwrap().unwrap();
    }
}

type Client = EmpiClient<InterceptedService<Channel, Bearer>>;

/// Adds `authorization: Bearer TOKEN` when it has a token.
#[derive(Clone)]
struct Bearer(Option<String>);

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        if let Some(t) = &self.0 {
            req.metadata_mut()
                .insert("authorization", format!("Bearer {t}").parse().unwrap());
        }
        Ok(req)
    }
}

async fn connect(pki: &Pki, port: u16, token: Option<&str>, client_cert: bool) -> Client {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&pki.ca))
        .domain_name("localhost");
    if client_cert {
        tls = tls.identity(Identity::from_pem(&pki.client_cert, &pki.client_key));
    }
    let channel = Channel::from_shared(format!("https://127.0.0.1:{port}"))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .expect("TLS connect");
    EmpiClient::with_interceptor(channel, Bearer(token.map(str::to_string)))
}

/// A hand-made synthetic record of source `st-marys-adt` (names no real person).
fn rec(source: &str, id: &str) -> pb::PatientRecord {
    pb::PatientRecord {
        source: source.into(),
        local_id: id.into(),
        given_name: Some("Zephyrine".into()),
        family_name: Some("Quillfeather".into()),
        birth_date: Some("1958-03-17".into()),
        sex: pb::Sex::Female as i32,
        phones: vec!["413-555-0177".into()],
        identifiers: vec![pb::Identifier {
            system: "urn:oid:2.16.840.1.113883.4.1".into(),
            value: "521-37-8846".into(),
        }],
        ..Default::default()
    }
}

fn key(source: &str, id: &str) -> Option<pb::RecordKey> {
    Some(pb::RecordKey {
        source: source.into(),
        local_id: id.into(),
    })
}

/// Calls `op` with a small request and returns the status code (`Ok` on success).
async fn call(c: &mut Client, op: Operation, euid: &str) -> Code {
    let code = |r: Result<(), Status>| r.err().map_or(Code::Ok, |s| s.code());
    let e = || euid.to_string();
    let k = || key("st-marys-adt", "MRN1");
    match op {
        Operation::MatchOrCreate => code(
            c.match_or_create(pb::MatchOrCreateRequest {
                record: Some(rec("st-marys-adt", "MRN2")),
                ..Default::default()
            })
            .await
            .map(drop),
        ),
        Operation::Match => code(
            c.r#match(pb::MatchRequest {
                record: Some(rec("st-marys-adt", "MRN3")),
                max_candidates: 3,
            })
            .await
            .map(drop),
        ),
        Operation::GetPerson => code(
            c.get_person(pb::GetPersonRequest { euid: e() })
                .await
                .map(drop),
        ),
        Operation::GetRecord => code(
            c.get_record(pb::GetRecordRequest { key: k() })
                .await
                .map(drop),
        ),
        Operation::RemoveRecord => code(
            c.remove_record(pb::RemoveRecordRequest {
                key: key("st-marys-adt", "NOPE"),
                ..Default::default()
            })
            .await
            .map(drop),
        ),
        Operation::Link => code(
            c.link(pb::LinkRequest {
                key: k(),
                euid: e(),
                ..Default::default()
            })
            .await
            .map(drop),
        ),
        Operation::Unlink => code(
            c.unlink(pb::UnlinkRequest {
                key: key("st-marys-adt", "NOPE"),
                ..Default::default()
            })
            .await
            .map(drop),
        ),
        Operation::MergePersons => code(
            c.merge_persons(pb::MergePersonsRequest {
                from_euid: e(),
                into_euid: e(),
                ..Default::default()
            })
            .await
            .map(drop),
        ),
        Operation::SplitPerson => code(
            c.split_person(pb::SplitPersonRequest {
                euid: e(),
                ..Default::default()
            })
            .await
            .map(drop),
        ),
        Operation::MarkNotDuplicate => code(
            c.mark_not_duplicate(pb::MarkNotDuplicateRequest {
                euid_a: e(),
                euid_b: e(),
                ..Default::default()
            })
            .await
            .map(drop),
        ),
        Operation::ListReviewTasks => code(
            c.list_review_tasks(pb::ListReviewTasksRequest::default())
                .await
                .map(drop),
        ),
        Operation::GetReviewTask => code(
            c.get_review_task(pb::GetReviewTaskRequest {
                task_id: "1".into(),
            })
            .await
            .map(drop),
        ),
        Operation::ResolveReviewTask => code(
            c.resolve_review_task(pb::ResolveReviewTaskRequest {
                task_id: "1".into(),
                ..Default::default()
            })
            .await
            .map(drop),
        ),
        Operation::GetStats => code(c.get_stats(pb::GetStatsRequest {}).await.map(drop)),
        Operation::MergeRecords
        | Operation::CrossReference
        | Operation::FindPersons
        | Operation::SearchPersons => {
            unreachable!("{op} is not an RPC: Operation::ALL lists RPCs only")
        }
        // Answered once the stream is open; dropping it closes the call.
        Operation::WatchChanges => code(
            c.watch_changes(pb::WatchChangesRequest { after_sequence: 0 })
                .await
                .map(drop),
        ),
    }
}

#[tokio::test]
async fn each_role_gets_exactly_its_calls_and_every_call_is_audited() {
    let pki = pki();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let mut tokens_by_role = Vec::new();
    for role in Role::ALL {
        let sources = vec!["st-marys-adt".to_string()];
        let (_, t) = tokens::create_token(data, &format!("{role}-1"), role, &sources).unwrap();
        tokens_by_role.push((role, t));
    }
    let server = TlsServer::start(&pki, data).await;

    // One stored record and its EUID, so the allowed calls have something to act on.
    let admin_token = &tokens_by_role
        .iter()
        .find(|(r, _)| *r == Role::Admin)
        .unwrap()
        .1;
    let mut admin = connect(&pki, server.port, Some(admin_token), false).await;
    let created = admin
        .match_or_create(pb::MatchOrCreateRequest {
            record: Some(rec("st-marys-adt", "MRN1")),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let euid = created.euid;

    let mut calls = 1;
    for (role, token) in &tokens_by_role {
        let mut c = connect(&pki, server.port, Some(token), false).await;
        for op in Operation::ALL {
            let code = call(&mut c, op, &euid).await;
            calls += 1;
            if role.allows(op) {
                assert!(
                    !matches!(code, Code::PermissionDenied | Code::Unauthenticated),
                    "{role} {op}: {code:?}"
                );
            } else {
                assert_eq!(code, Code::PermissionDenied, "{role} {op}");
            }
        }
    }
    server.stop().await;

    let entries = audit::read(data, None, None).unwrap().entries;
    assert_eq!(entries.len(), calls, "one audit entry per call");
    for (role, _) in &tokens_by_role {
        let name = format!("{role}-1");
        let mine: Vec<_> = entries.iter().filter(|e| e.actor == name).collect();
        for op in Operation::ALL {
            let e = mine
                .iter()
                .find(|e| e.operation == op.name())
                .unwrap_or_else(|| panic!("{role} {op} audited"));
            assert_eq!(e.role, Some(*role));
            if role.allows(op) {
                assert_ne!(e.outcome, AuditOutcome::Denied, "{role} {op}");
            } else {
                assert_eq!(e.outcome, AuditOutcome::Denied, "{role} {op}");
                assert_eq!(e.code.as_deref(), Some("PERMISSION_DENIED"));
            }
        }
    }
    // The creating call names what it touched.
    let first = &entries[0];
    assert_eq!(
        (first.operation.as_str(), first.outcome),
        ("MatchOrCreate", AuditOutcome::Ok)
    );
    assert_eq!(first.records, vec!["st-marys-adt/MRN1".to_string()]);
    assert_eq!(first.euids, vec![euid]);
}

#[tokio::test]
async fn missing_invalid_and_revoked_credentials_are_rejected() {
    let pki = pki();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let (_, token) = tokens::create_token(data, "reg", Role::Registrar, &[]).unwrap();
    let server = TlsServer::start(&pki, data).await;

    let mut none = connect(&pki, server.port, None, false).await;
    assert_eq!(
        call(&mut none, Operation::Match, "").await,
        Code::Unauthenticated
    );
    let mut bogus = connect(&pki, server.port, Some("empi_0000"), false).await;
    assert_eq!(
        call(&mut bogus, Operation::ListReviewTasks, "").await,
        Code::Unauthenticated
    );
    let mut good = connect(&pki, server.port, Some(&token), false).await;
    assert_eq!(
        call(&mut good, Operation::ListReviewTasks, "").await,
        Code::Ok
    );
    tokens::revoke(data, "reg").unwrap();
    assert_eq!(
        call(&mut good, Operation::ListReviewTasks, "").await,
        Code::Unauthenticated,
        "revocation applies to a running server at once"
    );

    // A client certificate authenticates once registered, and not before.
    let mut by_cert = connect(&pki, server.port, None, true).await;
    assert_eq!(
        call(&mut by_cert, Operation::ListReviewTasks, "").await,
        Code::Unauthenticated
    );
    tokens::register_certificate(
        data,
        "lab",
        Role::Registrar,
        &[],
        pki.client_cert.as_bytes(),
    )
    .unwrap();
    assert_eq!(
        call(&mut by_cert, Operation::ListReviewTasks, "").await,
        Code::Ok
    );
    assert_eq!(
        call(&mut by_cert, Operation::GetStats, "").await,
        Code::PermissionDenied
    );
    server.stop().await;

    let entries = audit::read(data, None, None).unwrap().entries;
    let unauth = entries
        .iter()
        .filter(|e| e.outcome == AuditOutcome::Unauthenticated)
        .count();
    assert_eq!(unauth, 4);
    assert_eq!(
        audit::read(data, None, Some("lab")).unwrap().entries.len(),
        2
    );
}

#[tokio::test]
async fn submitters_stay_in_their_source_and_get_the_minimum_necessary() {
    let pki = pki();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let (_, adt) = tokens::create_token(
        data,
        "adt-engine",
        Role::Submitter,
        &["st-marys-adt".into()],
    )
    .unwrap();
    let (_, lab) =
        tokens::create_token(data, "lab-engine", Role::Submitter, &["lab".into()]).unwrap();
    let (_, reg) = tokens::create_token(data, "registrar-ann", Role::Registrar, &[]).unwrap();
    let server = TlsServer::start(&pki, data).await;
    let mut adt = connect(&pki, server.port, Some(&adt), false).await;
    let mut lab = connect(&pki, server.port, Some(&lab), false).await;

    let first = adt
        .match_or_create(pb::MatchOrCreateRequest {
            record: Some(rec("st-marys-adt", "MRN1")),
            actor: "someone-else".into(),
        })
        .await
        .unwrap()
        .into_inner();
    // Another source's submitter: its own record links, but it learns only EUIDs and scores.
    let second = lab
        .match_or_create(pb::MatchOrCreateRequest {
            record: Some(rec("lab", "L1")),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(second.euid, first.euid);
    assert!(second.score.is_some());
    assert!(second.explanation.is_empty());
    assert!(!second.candidates.is_empty());
    for c in &second.candidates {
        assert!(c.explanation.is_empty());
        assert!(c.best_record.is_none(), "no other source's record keys");
    }
    let preview = lab
        .r#match(pb::MatchRequest {
            record: Some(rec("lab", "L2")),
            max_candidates: 5,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(preview
        .candidates
        .iter()
        .all(|c| c.explanation.is_empty() && c.best_record.is_none()));

    // Out of its source: denied, reading and writing.
    let denied = lab
        .get_record(pb::GetRecordRequest {
            key: key("st-marys-adt", "MRN1"),
        })
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    let denied = lab
        .match_or_create(pb::MatchOrCreateRequest {
            record: Some(rec("st-marys-adt", "MRN9")),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);

    // History names the authenticated identity, not the client-filled actor field.
    let mut reg = connect(&pki, server.port, Some(&reg), false).await;
    let person = reg
        .get_person(pb::GetPersonRequest {
            euid: first.euid.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .person
        .unwrap();
    let actors: Vec<&str> = person.history.iter().map(|h| h.actor.as_str()).collect();
    assert!(actors.contains(&"adt-engine"), "{actors:?}");
    assert!(!actors.contains(&"someone-else"), "{actors:?}");
    assert_eq!(
        person.records.len(),
        2,
        "registrars see the side-by-side view"
    );
    server.stop().await;
}

const EMPI: &str = env!("CARGO_BIN_EXE_empi");

/// Runs the `empi` command in `dir`; its stdout, after asserting success.
pub(crate) fn empi_cli(args: &[&str], dir: &Path) -> String {
    let out = std::process::Command::new(EMPI)
        .args(args)
        .current_dir(dir)
        .env("RUST_LOG", "warn")
        .output()
        .expect("runs empi");
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Synthetic demographics of the flow below, each a string that must never be logged.
const PHI: &[&str] = &[
    "Zephyrine",
    "Quillfeather",
    "Zephyrina",
    "Quilfeather",
    "Thaddeus",
    "1958-03-17",
    "19580317",
    "1958-03-18",
    "413-555-0177",
    "4135550177",
    "521-37-8846",
    "521378846",
    "Larkspur Lane",
    "01432",
];

/// Whether `text` (lower-cased) mentions a patient value. An all-digit value counts only
/// as a whole run of digits: "01432" inside a timestamp's microseconds is not the postcode.
fn mentions(text: &str, phi: &str) -> bool {
    let phi = phi.to_lowercase();
    if !phi.bytes().all(|b| b.is_ascii_digit()) {
        return text.contains(&phi);
    }
    let bytes = text.as_bytes();
    text.match_indices(&phi).any(|(at, _)| {
        let before = at.checked_sub(1).map(|i| bytes[i]);
        let after = bytes.get(at + phi.len()).copied();
        !before.is_some_and(|b| b.is_ascii_digit()) && !after.is_some_and(|b| b.is_ascii_digit())
    })
}

#[test]
fn mentions_treats_digit_values_as_whole_numbers() {
    assert!(mentions("zip 01432 seen", "01432"));
    assert!(!mentions("t=12:00:00.014321z", "01432"));
    assert!(mentions("name zephyrina", "Zephyrina"));
}

#[tokio::test]
async fn a_full_flow_at_trace_level_logs_no_patient_data() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    let pki = pki();
    let dir = tempfile::tempdir().unwrap();
    let tls = tls_files(&pki, dir.path(), false);
    let submitter = empi_cli(
        &[
            "token",
            "create",
            "--data",
            "store",
            "--create",
            "--role",
            "submitter",
            "--name",
            "adt",
        ]
        .into_iter()
        .chain(["--source", "st-marys-adt"])
        .collect::<Vec<_>>(),
        dir.path(),
    );
    let registrar = empi_cli(
        &[
            "token",
            "create",
            "--data",
            "store",
            "--role",
            "registrar",
            "--name",
            "ann",
        ],
        dir.path(),
    );
    let admin = empi_cli(
        &[
            "token", "create", "--data", "store", "--role", "admin", "--name", "ops",
        ],
        dir.path(),
    );
    let (submitter, registrar, admin) = (submitter.trim(), registrar.trim(), admin.trim());
    let log_path = dir.path().join("server.log");
    let mut child = Command::new(EMPI)
        .args([
            "serve",
            "--data",
            "store",
            "--listen",
            "127.0.0.1:0",
            "--console",
            "127.0.0.1:0",
            "--log-format",
            "json",
            "--metrics",
            "127.0.0.1:0",
            "--tls-cert",
        ])
        .arg(&tls.cert)
        .arg("--tls-key")
        .arg(&tls.key)
        .current_dir(dir.path())
        .env("RUST_LOG", "trace")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .expect("spawns empi serve");
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut after = |want: &str| -> String {
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        line.trim()
            .strip_prefix(want)
            .unwrap_or_else(|| panic!("unexpected line {line:?}"))
            .to_string()
    };
    let port_in = |at: String| -> u16 {
        at.rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no port in {at:?}"))
    };
    let port = port_in(after("listening on "));
    let metrics_at = after("metrics on ");
    let console_port = port_in(after("console on https://"));

    let mut sub = connect(&pki, port, Some(submitter), false).await;
    let mut reg = connect(&pki, port, Some(registrar), false).await;
    let mut ops = connect(&pki, port, Some(admin), false).await;
    let mut variant = rec("st-marys-adt", "MRN2");
    variant.given_name = Some("Zephyrina".into());
    variant.family_name = Some("Quilfeather".into());
    variant.birth_date = Some("1958-03-18".into());
    variant.address = Some(pb::Address {
        lines: vec!["7 Larkspur Lane".into()],
        postal_code: Some("01432".into()),
        ..Default::default()
    });
    let mut other = rec("st-marys-adt", "MRN3");
    other.given_name = Some("Thaddeus".into());
    other.sex = pb::Sex::Male as i32;
    let mut bad = rec("st-marys-adt", "MRN4");
    bad.birth_date = Some("1958-13-45".into());
    let mut euids = Vec::new();
    for r in [rec("st-marys-adt", "MRN1"), variant, other, bad] {
        let reply = sub
            .match_or_create(pb::MatchOrCreateRequest {
                record: Some(r),
                ..Default::default()
            })
            .await;
        if let Ok(r) = reply {
            euids.push(r.into_inner().euid);
        }
    }
    assert!(euids.len() >= 3, "the three valid records were accepted");
    let _ = sub
        .r#match(pb::MatchRequest {
            record: Some(rec("st-marys-adt", "MRN9")),
            max_candidates: 5,
        })
        .await
        .unwrap();
    let _ = sub.get_stats(pb::GetStatsRequest {}).await.unwrap_err();
    for e in &euids {
        let _ = reg
            .get_person(pb::GetPersonRequest { euid: e.clone() })
            .await
            .unwrap();
    }
    let tasks = reg
        .list_review_tasks(pb::ListReviewTasksRequest::default())
        .await
        .unwrap()
        .into_inner();
    for t in tasks.tasks {
        let _ = reg
            .get_review_task(pb::GetReviewTaskRequest { task_id: t.task_id })
            .await
            .unwrap();
    }
    let _ = reg
        .get_record(pb::GetRecordRequest {
            key: key("st-marys-adt", "MRN1"),
        })
        .await
        .unwrap();
    let _ = ops
        .remove_record(pb::RemoveRecordRequest {
            key: key("st-marys-adt", "MRN3"),
            reason: "test removal".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let _ = ops.get_stats(pb::GetStatsRequest {}).await.unwrap();
    let console_urls = console_flow(console_port, &pki.ca, registrar, &euids).await;
    // The change feed: keys and EUIDs only.
    let mut feed = ops
        .watch_changes(pb::WatchChangesRequest { after_sequence: 0 })
        .await
        .unwrap()
        .into_inner();
    let events = format!("{:?}", feed.message().await.unwrap().unwrap()).to_lowercase();
    drop(feed);
    let metrics = {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(&metrics_at).unwrap();
        write!(
            s,
            "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        text
    };
    assert!(metrics.contains("empi_calls_total"), "{metrics}");

    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    for _ in 0..200 {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let _ = child.kill();
    let _ = child.wait();

    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(
        log.contains("TRACE") && log.len() > 10_000,
        "the server logged at TRACE ({} bytes)",
        log.len()
    );
    assert!(
        log.lines()
            .all(|l| serde_json::from_str::<serde_json::Value>(l).is_ok()),
        "every log line is a JSON object"
    );
    let lower = log.to_lowercase();
    for phi in PHI {
        assert!(!mentions(&lower, phi), "{phi} appears in the log");
        assert!(!mentions(&events, phi), "{phi} appears in the change feed");
        assert!(
            !mentions(&metrics.to_lowercase(), phi),
            "{phi} appears in the metrics"
        );
    }
    for token in [submitter, registrar, admin] {
        assert!(!log.contains(&token[5..]), "a token appears in the log");
    }
    for url in &console_urls {
        let url = url.to_lowercase();
        for phi in PHI {
            assert!(
                !mentions(&url, phi),
                "{phi} appears in console address {url}"
            );
        }
    }
    let audit = empi_cli(&["audit", "--data", "store"], dir.path());
    assert!(audit.lines().count() >= 10, "{audit}");
    let lower = audit.to_lowercase();
    for phi in PHI {
        assert!(!mentions(&lower, phi), "{phi} appears in the audit");
    }
}

/// The registrar console over TLS, as a registrar: sign in, the worklist, every task and
/// person page, a search posting patient values, a resolution; the addresses requested.
async fn console_flow(port: u16, ca: &str, token: &str, euids: &[String]) -> Vec<String> {
    let mut b = crate::console::Browser::tls(port, ca);
    let signed_in = b.sign_in(token).await;
    assert_eq!(signed_in.status, 303, "{}", signed_in.body);
    assert!(
        b.set_cookies
            .iter()
            .any(|c| c.starts_with("empi_session=") && c.ends_with("Secure")),
        "the session cookie is Secure under TLS: {:?}",
        b.set_cookies
    );
    let list = b.get("/worklist").await;
    assert_eq!(list.status, 200);
    let mut tasks: Vec<String> = list
        .body
        .match_indices("href=\"/tasks/")
        .map(|(at, _)| list.body[at + 13..at + 22].to_string())
        .collect();
    tasks.dedup();
    assert!(!tasks.is_empty(), "the flow opened a review task");
    for t in &tasks {
        assert_eq!(b.get(&format!("/tasks/{t}")).await.status, 200);
    }
    for e in euids {
        assert_eq!(b.get(&format!("/persons/{e}")).await.status, 200);
    }
    let csrf = list.csrf();
    let found = b
        .post(
            "/search",
            &[
                ("csrf", &csrf),
                ("given_name", "Zephyrina"),
                ("family_name", "Quilfeather"),
                ("birth_date", "1958-03-17"),
                ("phone", "413-555-0177"),
            ],
        )
        .await;
    assert_eq!(found.status, 200);
    let bad = b
        .post("/search", &[("csrf", &csrf), ("birth_date", "1958-13-45")])
        .await;
    assert_eq!(bad.status, 400);
    let resolved = b
        .post(
            &format!("/tasks/{}/resolve", tasks[0]),
            &[("csrf", &csrf), ("action", "keep_separate")],
        )
        .await;
    assert_eq!(resolved.status, 303);
    b.visited
}

#[tokio::test]
async fn oversized_requests_are_refused() {
    let pki = pki();
    let dir = tempfile::tempdir().unwrap();
    let (_, token) = tokens::create_token(dir.path(), "ops", Role::Admin, &[]).unwrap();
    let server = TlsServer::start(&pki, dir.path()).await;
    let mut c = connect(&pki, server.port, Some(&token), false).await;
    let mut big = rec("st-marys-adt", "MRN1");
    big.middle_name = Some("x".repeat(Limits::default().max_request_bytes + 1));
    let e = c
        .match_or_create(pb::MatchOrCreateRequest {
            record: Some(big),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    let stats = c
        .get_stats(pb::GetStatsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stats.records, 0, "nothing stored");
    server.stop().await;
}

/// After a crash that lost the audit file's unsynced tail, `empi audit` puts back the lines
/// the store kept before exporting (no server holds the store), once.
#[tokio::test]
async fn the_audit_export_completes_the_trail_from_the_store() {
    use empi::store::{SledStore, Staging};
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("store");
    std::fs::create_dir_all(&data).unwrap();
    let entry = |euid: &str| {
        let mut e = AuditEntry::for_op(None, Operation::GetPerson, AuditOutcome::Ok);
        e.euids.push(euid.into());
        e
    };
    {
        let store = Arc::new(SledStore::open(&data).unwrap());
        let log = AuditLog::open_staged(&data, store.clone()).unwrap();
        log.append(&entry("E1")).await.unwrap();
        drop(log); // settled: E1 is synced in the file
                   // A cycle acknowledged through the store whose lines the file lost in the crash.
        let mut lines = serde_json::to_vec(&entry("E2")).unwrap();
        lines.push(b'\n');
        let ticket = store.stage(1_000, &lines).unwrap();
        store.flush_staged(ticket).unwrap();
    }
    let euids = |export: String| -> Vec<String> {
        export
            .lines()
            .flat_map(|l| serde_json::from_str::<AuditEntry>(l).unwrap().euids)
            .collect()
    };
    let first = empi_cli(&["audit", "--data", "store"], dir.path());
    assert_eq!(euids(first), ["E1", "E2"]);
    let again = empi_cli(&["audit", "--data", "store"], dir.path());
    assert_eq!(euids(again), ["E1", "E2"]);
    // A directory without a store exports its file as it is.
    let bare = dir.path().join("bare");
    drop(AuditLog::open(&bare).unwrap());
    assert_eq!(empi_cli(&["audit", "--data", "bare"], dir.path()), "");
    assert!(!bare.join("db").exists(), "no store created");
}
