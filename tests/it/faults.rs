//! Fault injection: what the service guarantees when things go wrong around it — a
//! revoked credential, a full disk (simulated, and a real small filesystem where one can
//! be mounted), a damaged store with and without an index snapshot, bad wire input, a
//! shutdown with an idle connection open, a careless umask. Each test asserts the status
//! a client sees, the health state, recovery, and that nothing acknowledged is lost.

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use empi::auth::{audit, AuditLog, AuthMode, Limits, Security, Space};
use empi::grpc::pb::{self, empi_client::EmpiClient};
use empi::linker::Linker;
use empi::service::{Service, ServiceConfig};
use empi::store::{SledStore, Store};
use tonic::transport::Channel;
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{health_client::HealthClient, HealthCheckRequest};

use crate::crash::{export as exported, record, Server};
use crate::security::empi_cli as empi;

const EMPI: &str = env!("CARGO_BIN_EXE_empi");

/// The health check's answer for the API.
async fn health(ch: &Channel) -> Option<ServingStatus> {
    let asked = HealthCheckRequest {
        service: "empi.v1.Empi".into(),
    };
    let answer = HealthClient::new(ch.clone()).check(asked).await.ok()?;
    ServingStatus::try_from(answer.into_inner().status).ok()
}

/// Waits until the health check answers `want`; panics after 20 s (a bound against a hung
/// server: the health watch runs twice a second).
async fn health_becomes(ch: &Channel, want: ServingStatus) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let now = health(ch).await;
        if now == Some(want) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "health stayed {now:?}, want {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn submit_request(r: pb::PatientRecord) -> pb::MatchOrCreateRequest {
    pb::MatchOrCreateRequest {
        record: Some(r),
        actor: "faults".into(),
    }
}

fn key_of(r: &pb::PatientRecord) -> pb::RecordKey {
    pb::RecordKey {
        source: r.source.clone(),
        local_id: r.local_id.clone(),
    }
}

/// Submits records `js` of client `c`'s series; each with the EUID it was acknowledged
/// with.
async fn submit_all(
    client: &mut EmpiClient<Channel>,
    c: usize,
    js: std::ops::Range<usize>,
) -> Vec<(pb::PatientRecord, String)> {
    let mut acked = Vec::new();
    for j in js {
        let r = record(c, j);
        let reply = client.match_or_create(submit_request(r.clone())).await;
        acked.push((r, reply.expect("acknowledged").into_inner().euid));
    }
    acked
}

/// Every record of `acked` reads back with the EUID it was acknowledged with.
async fn all_there(c: &mut EmpiClient<Channel>, acked: &[(pb::PatientRecord, String)]) {
    for (r, euid) in acked {
        let got = c
            .get_record(pb::GetRecordRequest {
                key: Some(key_of(r)),
            })
            .await
            .unwrap_or_else(|s| panic!("acknowledged {}/{} lost: {s:?}", r.source, r.local_id))
            .into_inner()
            .record
            .expect("a record");
        assert_eq!(&got.euid, euid);
    }
}

/// Sends SIGTERM to a child and asserts it exits cleanly (within a bound against a hang).
fn terminate(server: &mut Server) {
    let pid = server.child.id().to_string();
    let sent = Command::new("kill").args(["-TERM", &pid]).status();
    assert!(sent.is_ok_and(|s| s.success()), "kill -TERM {pid}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = server.child.try_wait().expect("try_wait") {
            assert!(
                status.success(),
                "empi serve exited with {status} on SIGTERM:\n{}",
                server.log_tail()
            );
            return;
        }
        assert!(
            Instant::now() < deadline,
            "empi serve did not stop on SIGTERM:\n{}",
            server.log_tail()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

// ---- credentials ------------------------------------------------------------------------

/// Revoking every credential and restarting leaves authentication on; serving without
/// it again takes `--disable-auth`, which the audit trail records, as it records every
/// token operation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_every_credential_and_restarting_keeps_authentication_on() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("store");
    let d = data.to_str().unwrap();
    // A mistyped --data is refused, not made a new store.
    let out = Command::new(EMPI)
        .args([
            "token", "create", "--data", d, "--role", "admin", "--name", "ops",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success() && !data.exists(), "{out:?}");
    let token = empi(
        &[
            "token", "create", "--data", d, "--create", "--role", "admin", "--name", "ops",
        ],
        dir.path(),
    );
    let token = token.trim().to_string();

    let anonymous = |ch: Channel| async move {
        EmpiClient::new(ch)
            .get_stats(pb::GetStatsRequest {})
            .await
            .map(drop)
            .map_err(|s| s.code())
    };
    let with_token = |ch: Channel, token: String| async move {
        let mut request = tonic::Request::new(pb::GetStatsRequest {});
        let value = format!("Bearer {token}").parse().unwrap();
        request.metadata_mut().insert("authorization", value);
        EmpiClient::new(ch)
            .get_stats(request)
            .await
            .map(drop)
            .map_err(|s| s.code())
    };

    let mut server = Server::start(&data, dir.path().join("serve-1.log"));
    let ch = server.ready_channel(Duration::from_secs(30)).await;
    assert_eq!(anonymous(ch.clone()).await, Err(Code::Unauthenticated));
    assert_eq!(with_token(ch, token.clone()).await, Ok(()));
    drop(server);

    empi(
        &["token", "revoke", "--data", d, "--name", "ops"],
        dir.path(),
    );
    let mut server = Server::start(&data, dir.path().join("serve-2.log"));
    let ch = server.ready_channel(Duration::from_secs(30)).await;
    assert_eq!(
        anonymous(ch.clone()).await,
        Err(Code::Unauthenticated),
        "revoking every credential turned authentication off"
    );
    assert_eq!(with_token(ch, token).await, Err(Code::Unauthenticated));
    drop(server);

    let mut server = Server::start_with(&data, dir.path().join("serve-3.log"), &["--disable-auth"]);
    let ch = server.ready_channel(Duration::from_secs(30)).await;
    assert_eq!(anonymous(ch).await, Ok(()));
    drop(server);

    let operations: Vec<String> = exported(&data)
        .into_iter()
        .filter(|e| e.actor.starts_with("operator:"))
        .map(|e| e.operation)
        .collect();
    assert_eq!(
        operations,
        ["TokenCreate", "TokenRevoke", "ServeWithoutAuth"]
    );
}

// ---- a full disk ---------------------------------------------------------------------------

/// Serves `service` with `security` in-process on a free loopback port until the
/// returned sender is used or dropped.
pub(crate) async fn spawn_secure(
    service: Service,
    security: Security,
) -> (
    std::net::SocketAddr,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<empi::Result<()>>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(empi::grpc::serve_secure(
        listener,
        Arc::new(service),
        security,
        async {
            let _ = stopped.await;
        },
    ));
    (addr, stop, task)
}

/// An in-process server over a sled store with a staged audit trail and a free-space
/// guard whose measure the test sets.
struct Guarded {
    addr: std::net::SocketAddr,
    free: Arc<AtomicU64>,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<empi::Result<()>>,
}

impl Guarded {
    async fn start(data: &Path) -> Guarded {
        let store = Arc::new(SledStore::open(data).unwrap());
        let service = Service::open(
            Arc::clone(&store) as Arc<dyn Store>,
            Linker::with_default_model(),
            ServiceConfig::default(),
        )
        .unwrap();
        let free = Arc::new(AtomicU64::new(1 << 40));
        let measured = Arc::clone(&free);
        let space = Space::with_probe(data, 64 << 20, move |_| {
            Some(measured.load(Ordering::SeqCst))
        });
        let security = Security {
            tls: None,
            auth: AuthMode::Disabled,
            audit: Some(Arc::new(AuditLog::open_staged(data, store).unwrap())),
            limits: Limits::default(),
            space: Some(Arc::new(space)),
        };
        let (addr, stop, task) = spawn_secure(service, security).await;
        Guarded {
            addr,
            free,
            stop,
            task,
        }
    }

    async fn channel(&self) -> Channel {
        Channel::from_shared(format!("http://{}", self.addr))
            .unwrap()
            .connect()
            .await
            .unwrap()
    }
}

/// While the disk is (simulated) nearly full, writes are refused with
/// RESOURCE_EXHAUSTED, reads go on, health says NOT_SERVING; once space is back
/// everything resumes by itself, and nothing acknowledged is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nearly_full_disk_refuses_writes_keeps_reads_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("store");
    let server = Guarded::start(&data).await;
    let ch = server.channel().await;
    let mut c = EmpiClient::new(ch.clone());
    let mut acked = submit_all(&mut c, 0, 0..4).await;
    health_becomes(&ch, ServingStatus::Serving).await;

    server.free.store(1 << 20, Ordering::SeqCst);
    let refused = c
        .match_or_create(submit_request(record(0, 10)))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(refused.message().contains("nearly full"), "{refused:?}");
    all_there(&mut c, &acked).await;
    health_becomes(&ch, ServingStatus::NotServing).await;

    server.free.store(1 << 40, Ordering::SeqCst);
    health_becomes(&ch, ServingStatus::Serving).await;
    acked.extend(submit_all(&mut c, 0, 11..12).await);
    drop((c, ch));
    let _ = server.stop.send(());
    server.task.await.unwrap().unwrap();

    // Reopened: everything acknowledged is there; the refusal is audited.
    let again = Guarded::start(&data).await;
    let mut c = EmpiClient::new(again.channel().await);
    all_there(&mut c, &acked).await;
    let trail = audit::read(&data, None, None).unwrap();
    assert!(trail.unreadable_lines.is_empty());
    assert!(trail
        .entries
        .iter()
        .any(|e| e.code.as_deref() == Some("RESOURCE_EXHAUSTED")
            && e.records == ["crash-adt/A0-00010"]));
    drop(c);
    let _ = again.stop.send(());
    again.task.await.unwrap().unwrap();
}

/// A small tmpfs mounted for the test, unmounted when dropped; `None` where mounting is
/// not allowed (not root, no tmpfs): the test then says so and checks the rest.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(mib: u64) -> Option<SmallDisk> {
        let dir = tempfile::tempdir().ok()?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(dir.path())
            .output()
            .ok()?;
        out.status.success().then_some(SmallDisk { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn free(&self) -> u64 {
        Space::new(self.path(), None).free().expect("statvfs")
    }

    /// Writes a file of zeros until `leave` bytes are free, or the disk is full.
    fn fill(&self, name: &str, leave: u64) {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.path().join(name))
            .unwrap();
        let chunk = vec![0u8; 64 << 10];
        while self.free() > leave {
            let n = (self.free() - leave).min(chunk.len() as u64) as usize;
            if f.write_all(&chunk[..n.max(1)]).is_err() {
                break;
            }
        }
        let _ = f.sync_all();
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// A real full filesystem: writes refused before it fills, reads refused only once the
/// trail cannot write, health NOT_SERVING meanwhile; freeing space brings everything
/// back without a restart; SIGTERM exits cleanly; nothing acknowledged is lost and the
/// trail has no torn line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_filesystem_is_survived() {
    let Some(disk) = SmallDisk::mount(48) else {
        eprintln!("a_full_filesystem_is_survived: cannot mount a tmpfs here; skipped");
        return;
    };
    let data = disk.path().join("store");
    let logs = tempfile::tempdir().unwrap();
    let mut server = Server::start_with(
        &data,
        logs.path().join("serve-1.log"),
        &["--min-free-mib", "16"],
    );
    let ch = server.ready_channel(Duration::from_secs(30)).await;
    let mut c = EmpiClient::new(ch.clone());
    let mut acked = submit_all(&mut c, 1, 0..10).await;

    // Below the reserve: writes refused, reads served.
    disk.fill("ballast-1", 8 << 20);
    let refused = c
        .match_or_create(submit_request(record(1, 20)))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    all_there(&mut c, &acked).await;
    health_becomes(&ch, ServingStatus::NotServing).await;

    // Full: reads go on while their lines fit in the trail's last block, then are
    // refused, since they cannot be audited.
    disk.fill("ballast-2", 0);
    let mut refused = None;
    for _ in 0..1000 {
        let read = c
            .get_record(pb::GetRecordRequest {
                key: Some(key_of(&acked[0].0)),
            })
            .await;
        if let Err(s) = read {
            refused = Some(s);
            break;
        }
    }
    let refused = refused.expect("reads were audited on a full disk");
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
    assert_eq!(health(&ch).await, Some(ServingStatus::NotServing));

    // Space freed: back by itself.
    std::fs::remove_file(disk.path().join("ballast-1")).unwrap();
    std::fs::remove_file(disk.path().join("ballast-2")).unwrap();
    health_becomes(&ch, ServingStatus::Serving).await;
    all_there(&mut c, &acked).await;
    acked.extend(submit_all(&mut c, 1, 21..22).await);
    drop((c, ch));
    terminate(&mut server);

    let mut server = Server::start(&data, logs.path().join("serve-2.log"));
    let mut c = server.ready_client(Duration::from_secs(30)).await;
    all_there(&mut c, &acked).await;
    drop(c);
    terminate(&mut server);
    let trail = audit::read(&data, None, None).unwrap();
    assert_eq!(trail.unreadable_lines, Vec::<usize>::new());
    assert!(trail
        .entries
        .iter()
        .any(|e| e.operation == "AuditTrailResumed"));
}

// ---- a damaged store -----------------------------------------------------------------------

/// The records of the damaged-store matrix.
fn matrix_record(i: usize) -> empi::record::Record {
    let r = record(2, i);
    empi::record::Record {
        source: r.source,
        local_id: format!("DMG{i:04}"),
        // A name found nowhere else: its bytes in sled's log are this record's value only.
        given_name: if i == MARKED {
            Some("Quintessa".into())
        } else {
            r.given_name
        },
        family_name: r.family_name,
        birth_date: r.birth_date.and_then(|d| d.parse().ok()),
        phones: r.phones,
        ..Default::default()
    }
}

const MATRIX_RECORDS: usize = 120;
/// The record whose stored value the matrix damages.
const MARKED: usize = 55;

/// A cleanly stopped store with an index snapshot, as `empi serve` leaves one.
async fn pristine(dir: &Path) -> Vec<empi::store::Euid> {
    let store = Arc::new(SledStore::open(dir).unwrap());
    let config = ServiceConfig {
        snapshot: Some(empi::service::snapshot::path_in(dir)),
        ..ServiceConfig::default()
    };
    let service = Service::open(store, Linker::with_default_model(), config).unwrap();
    let mut euids = Vec::new();
    for i in 0..MATRIX_RECORDS {
        let r = service
            .match_or_create(matrix_record(i), "matrix")
            .await
            .unwrap();
        euids.push(r.euid);
    }
    service.save_snapshot().unwrap();
    drop(service);
    SledStore::settle(dir).unwrap();
    euids
}

/// What starting over a damaged store did.
#[derive(Debug, PartialEq)]
enum Start {
    /// Refused to start (an error, or sled gave up).
    Refused,
    /// Started, and every record read back as stored, and the store's check passed.
    ServedIntact,
}

/// Opens the store and the service over it as `empi serve` does (snapshot when present)
/// and reads every record back. Panics when it starts but serves damage.
fn start_on(dir: &Path, euids: &[empi::store::Euid]) -> Start {
    let config = ServiceConfig {
        snapshot: Some(empi::service::snapshot::path_in(dir)),
        ..ServiceConfig::default()
    };
    let opened = std::panic::catch_unwind(|| {
        let store = Arc::new(SledStore::open(dir)?);
        Service::open(store, Linker::with_default_model(), config)
    });
    let service = match opened {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            eprintln!("refused: {e}");
            return Start::Refused;
        }
        Err(_) => {
            eprintln!("refused: panicked");
            return Start::Refused;
        }
    };
    for (i, euid) in euids.iter().enumerate() {
        let want = matrix_record(i);
        let got = service
            .get_record(&want.key())
            .unwrap_or_else(|e| panic!("started on a damaged store, then: {e}"));
        assert_eq!(
            got.record, want,
            "started on a damaged store: record {i} changed"
        );
        assert_eq!(&got.euid, euid);
    }
    let check = service.check().expect("check reads");
    assert!(
        check.is_ok(),
        "started on a store that fails its check: {check:?}"
    );
    Start::ServedIntact
}

/// XORs 16 bytes at each offset (clamped into the file).
fn flip(path: &Path, offsets: &[usize]) {
    let mut bytes = std::fs::read(path).unwrap();
    for &at in offsets {
        let at = at.min(bytes.len().saturating_sub(16));
        for b in bytes.iter_mut().skip(at).take(16) {
            *b ^= 0x5a;
        }
    }
    std::fs::write(path, bytes).unwrap();
}

/// Where `needle` occurs in the file.
fn occurrences(path: &Path, needle: &[u8]) -> Vec<usize> {
    let bytes = std::fs::read(path).unwrap();
    bytes
        .windows(needle.len())
        .enumerate()
        .filter(|(_, w)| *w == needle)
        .map(|(i, _)| i)
        .collect()
}

/// Bytes flipped in each kind of file of a cleanly stopped store, with and without its
/// index snapshot: the server either refuses to start or serves every record intact —
/// never starts on damage (the snapshot used to hide a `db` that could not be read).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_store_is_never_served_from_a_snapshot() {
    let root = tempfile::tempdir().unwrap();
    let clean = root.path().join("clean");
    let euids = pristine(&clean).await;
    let snap = std::fs::read_dir(&clean)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .find(|n| n.starts_with("snap."))
        .expect("sled's page-table snapshot");
    assert_eq!(start_on(&clean, &euids), Start::ServedIntact);
    let db = clean.join("db");
    // One record's stored value (every copy of it in sled's log): a page the server does
    // not read at start when it loads the index from the snapshot.
    let live = occurrences(&db, b"Quintessa");
    assert!(!live.is_empty());
    let len = std::fs::metadata(&db).unwrap().len() as usize;
    let cases: Vec<(&str, String, Vec<usize>)> = vec![
        ("a record in db", "db".into(), live),
        (
            "db, spread",
            "db".into(),
            vec![len / 5, len / 2, len * 4 / 5],
        ),
        ("conf", "conf".into(), vec![0, 8]),
        ("snap", snap.clone(), vec![0, 40, 200]),
        ("index.snapshot", "index.snapshot".into(), vec![64, 4096]),
    ];
    let mut refused = Vec::new();
    for (name, file, offsets) in &cases {
        for with_snapshot in [true, false] {
            if file == "index.snapshot" && !with_snapshot {
                continue;
            }
            let case = root
                .path()
                .join(format!("{name}-{with_snapshot}").replace(' ', "_"));
            crate::crash::copy_dir(&clean, &case);
            if !with_snapshot {
                std::fs::remove_file(empi::service::snapshot::path_in(&case)).unwrap();
            }
            flip(&case.join(file), offsets);
            let start = start_on(&case, &euids);
            if start == Start::Refused {
                refused.push(format!("{name} (snapshot: {with_snapshot})"));
            }
            if *name == "a record in db" {
                assert_eq!(
                    start,
                    Start::Refused,
                    "damaged records served (snapshot: {with_snapshot})"
                );
            }
            if *name == "index.snapshot" {
                assert_eq!(
                    start,
                    Start::ServedIntact,
                    "a damaged snapshot is only a rebuild"
                );
            }
        }
    }
    eprintln!(
        "damaged-store matrix: refused to start for {refused:?}; every other case served intact"
    );
}

// ---- bad input at the door -------------------------------------------------------------------

/// An in-process server over a memory store auditing to `data`, without authentication.
async fn audited_memory_server(
    data: &Path,
) -> (
    Channel,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<empi::Result<()>>,
) {
    let service = Service::open(
        Arc::new(empi::store::MemoryStore::new()),
        Linker::with_default_model(),
        ServiceConfig::default(),
    )
    .unwrap();
    let security = Security {
        tls: None,
        auth: AuthMode::Disabled,
        audit: Some(Arc::new(AuditLog::open(data).unwrap())),
        limits: Limits::default(),
        space: None,
    };
    let (addr, stop, task) = spawn_secure(service, security).await;
    let ch = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    (ch, stop, task)
}

/// A codec that sends and receives raw bytes, to put anything on the wire.
#[derive(Clone, Default)]
struct Raw;

struct RawCoder;

impl tonic::codec::Codec for Raw {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawCoder;
    type Decoder = RawCoder;
    fn encoder(&mut self) -> RawCoder {
        RawCoder
    }
    fn decoder(&mut self) -> RawCoder {
        RawCoder
    }
}

impl tonic::codec::Encoder for RawCoder {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn encode(
        &mut self,
        item: Vec<u8>,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        use prost::bytes::BufMut;
        dst.put_slice(&item);
        Ok(())
    }
}

impl tonic::codec::Decoder for RawCoder {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn decode(
        &mut self,
        src: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<Vec<u8>>, tonic::Status> {
        use prost::bytes::Buf;
        let out = src.chunk().to_vec();
        src.advance(out.len());
        Ok(Some(out))
    }
}

async fn raw_call(ch: &Channel, method: &'static str, body: Vec<u8>) -> tonic::Status {
    let mut grpc = tonic::client::Grpc::new(ch.clone());
    grpc.ready().await.unwrap();
    let path = tonic::codegen::http::uri::PathAndQuery::from_static(method);
    grpc.unary(tonic::Request::new(body), path, Raw)
        .await
        .expect_err("bad input is refused")
}

/// Undecodable requests are INVALID_ARGUMENT and an oversized one RESOURCE_EXHAUSTED (as
/// the README says), each audited; invalid record keys are refused without being echoed
/// in the message or the trail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_wire_input_and_bad_keys_get_their_status_and_are_audited() {
    let dir = tempfile::tempdir().unwrap();
    let (ch, stop, task) = audited_memory_server(dir.path()).await;
    let cases: [(&str, Vec<u8>); 3] = [
        ("invalid UTF-8", vec![0x0a, 0x03, 0x0a, 0x01, 0xff]),
        ("truncated varint", vec![0x0a, 0x85]),
        ("wrong wire type", vec![0x08, 0x01]),
    ];
    for (what, body) in cases {
        let s = raw_call(&ch, "/empi.v1.Empi/MatchOrCreate", body).await;
        assert_eq!(s.code(), Code::InvalidArgument, "{what}: {s:?}");
    }
    let mut c = EmpiClient::new(ch.clone());
    let mut big = record(3, 0);
    big.given_name = Some("x".repeat(2 << 20));
    let s = c.match_or_create(submit_request(big)).await.unwrap_err();
    assert_eq!(s.code(), Code::ResourceExhausted, "{s:?}");

    let mut long = record(3, 1);
    long.local_id = format!("A\0\nB{}", "z".repeat(1 << 20));
    long.local_id.truncate(900_000);
    let s = c.match_or_create(submit_request(long)).await.unwrap_err();
    assert_eq!(s.code(), Code::InvalidArgument, "{s:?}");
    assert!(
        s.message().len() < 200 && !s.message().contains("zzz"),
        "echoed: {}",
        &s.message()[..200.min(s.message().len())]
    );
    let s = c
        .get_record(pb::GetRecordRequest {
            key: Some(pb::RecordKey {
                source: "adt".into(),
                local_id: "MRN\u{7}1".into(),
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(s.code(), Code::InvalidArgument);
    assert!(!s.message().contains('\u{7}'), "{s:?}");
    drop((c, ch));
    let _ = stop.send(());
    task.await.unwrap().unwrap();

    let trail = audit::read(dir.path(), None, None).unwrap();
    let codes: Vec<&str> = trail
        .entries
        .iter()
        .filter_map(|e| e.code.as_deref())
        .collect();
    assert_eq!(
        codes,
        [
            "INVALID_ARGUMENT",
            "INVALID_ARGUMENT",
            "INVALID_ARGUMENT",
            "RESOURCE_EXHAUSTED",
            "INVALID_ARGUMENT",
            "INVALID_ARGUMENT"
        ]
    );
    let size = std::fs::metadata(audit::audit_path(dir.path()))
        .unwrap()
        .len();
    assert!(size < 8 << 10, "the trail grew by {size} bytes");
    for e in &trail.entries[4..] {
        assert!(
            e.records.iter().all(|r| r.starts_with("invalid-key:")),
            "{e:?}"
        );
    }
}

/// SplitPerson takes at most 16 keys, and MarkNotDuplicate refuses a retired person as
/// Link and MergePersons do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_limits_and_retired_persons_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (ch, stop, task) = audited_memory_server(dir.path()).await;
    let mut c = EmpiClient::new(ch.clone());
    let a = c
        .match_or_create(submit_request(record(4, 0)))
        .await
        .unwrap()
        .into_inner();
    let b = c
        .match_or_create(submit_request(record(4, 1)))
        .await
        .unwrap()
        .into_inner();
    assert_ne!(a.euid, b.euid);
    let keys = vec![key_of(&record(4, 0)); 17];
    let s = c
        .split_person(pb::SplitPersonRequest {
            euid: a.euid.clone(),
            records: keys,
            actor: "ann".into(),
            reason: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(s.code(), Code::InvalidArgument, "{s:?}");
    // b's only record moves to a: b is retired.
    let moved = c
        .link(pb::LinkRequest {
            key: Some(key_of(&record(4, 1))),
            euid: a.euid.clone(),
            actor: "ann".into(),
            reason: "same person".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(moved.previous_person_retired);
    let s = c
        .mark_not_duplicate(pb::MarkNotDuplicateRequest {
            euid_a: a.euid.clone(),
            euid_b: b.euid.clone(),
            actor: "ann".into(),
            reason: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(s.code(), Code::FailedPrecondition, "{s:?}");
    drop((c, ch));
    let _ = stop.send(());
    task.await.unwrap().unwrap();
}

// ---- stopping and files ------------------------------------------------------------------------

/// SIGTERM stops the server promptly and cleanly although a client holds a connection
/// open and never answers (graceful shutdown used to wait for it to close).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_does_not_wait_for_an_idle_connection() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(&dir.path().join("store"), dir.path().join("serve.log"));
    server.ready_channel(Duration::from_secs(30)).await;
    let mut idle = std::net::TcpStream::connect(&server.addr).unwrap();
    // The HTTP/2 preface and an empty SETTINGS frame; then silence.
    idle.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
        .unwrap();
    idle.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut settings = [0u8; 9];
    idle.read_exact(&mut settings)
        .expect("the server serves the connection");
    terminate(&mut server);
    drop(idle);
}

/// Whatever the umask, the data directory and every file in it are owner-only, and
/// `empi check` warns about one that is not.
#[test]
fn store_files_are_owner_only_whatever_the_umask() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("people.csv"),
        "source,local_id,given_name,family_name,birth_date\nadt,1,Ana,Lima,1970-01-02\n",
    )
    .unwrap();
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "umask 022 && exec {EMPI} load --data store --create --input people.csv"
        ))
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let data = dir.path().join("store");
    let mut names = Vec::new();
    let mut todo = vec![data.clone()];
    while let Some(d) = todo.pop() {
        let mode = std::fs::metadata(&d).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "{}", d.display());
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                todo.push(p);
                continue;
            }
            let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", p.display());
            names.push(p.file_name().unwrap().to_string_lossy().into_owned());
        }
    }
    for expected in ["db", "conf", "index.snapshot", "audit.jsonl"] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} in {names:?}"
        );
    }
    assert!(names.iter().any(|n| n.starts_with("snap.")), "{names:?}");

    let db = data.join("db");
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
    let report = empi(&["check", "--data", "store"], dir.path());
    assert!(
        report
            .lines()
            .any(|l| l.starts_with("warning:") && l.contains("db")),
        "{report}"
    );
    let mode = std::fs::metadata(&db).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "opening the store makes it owner-only again");
}
