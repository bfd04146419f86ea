//! Crash test: a child `empi serve` is killed with SIGKILL in the middle of a concurrent
//! load; after a restart on the same store every acknowledged record is there with the EUID
//! it was acknowledged with, `empi check` passes on the crashed store, and the audit trail
//! holds each acknowledged call exactly once (its last lines come back from the store),
//! in `empi audit`'s export before the restart and in the file after it. Every record in
//! the store has a line, acknowledged or not, and a copy of the crashed data directory
//! exports the same trail, however often.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use empi::auth::{audit, AuditOutcome};
use empi::grpc::pb::{self, empi_client::EmpiClient};
use tonic::transport::{Channel, Endpoint};

const EMPI: &str = env!("CARGO_BIN_EXE_empi");
/// Concurrent clients, each with its own connection and its own persons.
const CLIENTS: usize = 4;
/// Records each client would send if never interrupted: far more than are sent before the
/// kill, so the kill always lands mid-load.
const PER_CLIENT: usize = 5_000;
/// Acknowledged records (all clients together) after which the server is killed.
const KILL_AFTER_ACKS: usize = 200;

/// A child `empi serve`; killed (SIGKILL on unix) and reaped when dropped.
pub(crate) struct Server {
    pub(crate) child: Child,
    pub(crate) addr: String,
    /// The operations listener's address, when started with `--metrics`.
    pub(crate) metrics: Option<String>,
    log: PathBuf,
}

impl Server {
    /// Starts `empi serve` on port 0 and reads the bound address from its first stdout line
    /// (`listening on ADDR`), so no port is picked and then raced for.
    pub(crate) fn start(data: &Path, log: PathBuf) -> Server {
        Self::start_with(data, log, &[])
    }

    /// [`Server::start`] with more arguments to `empi serve`.
    pub(crate) fn start_with(data: &Path, log: PathBuf, args: &[&str]) -> Server {
        let err = std::fs::File::create(&log).expect("server log file");
        let mut child = Command::new(EMPI)
            .args(["serve", "--data"])
            .arg(data)
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(err)
            .spawn()
            .expect("spawning empi serve");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        // Keeps draining stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                for what in ["listening on ", "metrics on "] {
                    if let Some(addr) = line.trim().strip_prefix(what) {
                        let _ = tx.send((what, addr.to_string()));
                    }
                }
            }
        });
        let mut server = Server {
            child,
            addr: String::new(),
            metrics: None,
            log,
        };
        let wanted = 1 + usize::from(args.contains(&"--metrics"));
        for _ in 0..wanted {
            match rx.recv_timeout(Duration::from_secs(30)) {
                Ok(("listening on ", addr)) => server.addr = addr,
                Ok((_, addr)) => server.metrics = Some(addr),
                Err(_) => panic!(
                    "empi serve printed no 'listening on ADDR' within 30 s:\n{}",
                    server.log_tail()
                ),
            }
        }
        server
    }

    pub(crate) fn endpoint(&self) -> Endpoint {
        Endpoint::from_shared(format!("http://{}", self.addr))
            .expect("valid uri")
            .connect_timeout(Duration::from_secs(1))
            .timeout(Duration::from_secs(5))
    }

    pub(crate) fn log_tail(&self) -> String {
        let s = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// A channel once the server answers health checks (whatever its credentials rule);
    /// panics after `limit` or if it exits.
    pub(crate) async fn ready_channel(&mut self, limit: Duration) -> Channel {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                panic!("empi serve exited with {status}:\n{}", self.log_tail());
            }
            if let Ok(ch) = self.endpoint().connect().await {
                let mut health = tonic_health::pb::health_client::HealthClient::new(ch.clone());
                let asked = tonic_health::pb::HealthCheckRequest {
                    service: String::new(),
                };
                if health.check(asked).await.is_ok() {
                    return ch;
                }
            }
            assert!(
                Instant::now() < deadline,
                "empi serve not ready within {limit:?}:\n{}",
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A client once the server answers GetStats; panics after `limit` or if it exits.
    pub(crate) async fn ready_client(&mut self, limit: Duration) -> EmpiClient<Channel> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                panic!("empi serve exited with {status}:\n{}", self.log_tail());
            }
            if let Ok(ch) = self.endpoint().connect().await {
                let mut c = EmpiClient::new(ch);
                if c.get_stats(pb::GetStatsRequest {}).await.is_ok() {
                    return c;
                }
            }
            assert!(
                Instant::now() < deadline,
                "empi serve not ready within {limit:?}:\n{}",
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const GIVEN: &[&str] = &[
    "Amelia", "Bruno", "Clara", "Dmitri", "Esther", "Felix", "Greta", "Hamid", "Ingrid", "Jonas",
    "Kalani", "Lucia", "Marek", "Nadia", "Oskar", "Priya", "Quentin", "Rosa", "Soren", "Tamsin",
    "Ulrich", "Vera", "Wendell", "Ximena", "Yusuf", "Zora",
];
const FAMILY: &[&str] = &[
    "Abernathy",
    "Bellweather",
    "Castellano",
    "Dunmore",
    "Eklund",
    "Fairbanks",
    "Gallagher",
    "Holloway",
    "Ivanova",
    "Jablonski",
    "Kowalczyk",
    "Lindqvist",
    "Montague",
    "Novak",
    "Okonkwo",
    "Pemberton",
    "Quintero",
    "Rasmussen",
    "Szabo",
    "Thorsen",
    "Underhill",
    "Valdivia",
    "Whitcombe",
    "Yamamoto",
    "Zeller",
];
const STREETS: &[&str] = &[
    "Harbour Rd",
    "Maple Ave",
    "Quarry Ln",
    "Station St",
    "Orchard Way",
    "Mill Rd",
    "Elm St",
    "Bridge St",
    "Chapel Ln",
    "Ridge Ave",
];

/// SplitMix64: a fixed, seedless mix, so person `p` always gets the same demographics.
fn mix(p: usize, salt: u64) -> u64 {
    let mut z = (p as u64).wrapping_add(salt.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The `j`-th record client `c` sends. Each client has its own persons; every fifth record is
/// a second source's copy of the previous person, so links happen as well as creations.
pub(crate) fn record(c: usize, j: usize) -> pb::PatientRecord {
    let copy = j % 5 == 4;
    let p = c * PER_CLIENT + if copy { j - 1 } else { j };
    let pick = |list: &[&str], salt| list[(mix(p, salt) % list.len() as u64) as usize].to_string();
    let h = mix(p, 1);
    let (y, m, d) = (1930 + h % 80, 1 + (h >> 8) % 12, 1 + (h >> 16) % 28);
    let (source, local_id) = if copy {
        ("crash-clinic", format!("C{c}-{j:05}"))
    } else {
        ("crash-adt", format!("A{c}-{j:05}"))
    };
    pb::PatientRecord {
        source: source.into(),
        local_id,
        given_name: Some(pick(GIVEN, 2)),
        family_name: Some(pick(FAMILY, 3)),
        birth_date: Some(format!("{y:04}-{m:02}-{d:02}")),
        sex: if h >> 24 & 1 == 0 {
            pb::Sex::Female
        } else {
            pb::Sex::Male
        } as i32,
        address: Some(pb::Address {
            lines: vec![format!("{} {}", 1 + mix(p, 4) % 999, pick(STREETS, 5))],
            city: Some("Appleridge".into()),
            state: Some("MN".into()),
            postal_code: Some(format!("{:05}", 10_000 + mix(p, 6) % 90_000)),
            country: Some("US".into()),
        }),
        phones: vec![format!("612{:07}", mix(p, 7) % 10_000_000)],
        identifiers: vec![pb::Identifier {
            system: "national_id".into(),
            // 5xx-xx-xxxx: unique per person and never one of the placeholder values.
            value: format!("5{:08}", p),
        }],
        ..Default::default()
    }
}

/// What one client saw before the server died.
struct ClientRun {
    acked: Vec<(pb::PatientRecord, String)>,
    linked: usize,
    stopped_by: Option<tonic::Code>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_records_survive_sigkill() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("store");

    let mut server = Server::start(&data, dir.path().join("serve-1.log"));
    server.ready_client(Duration::from_secs(30)).await;

    let acks = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for c in 0..CLIENTS {
        let endpoint = server.endpoint();
        let acks = Arc::clone(&acks);
        tasks.push(tokio::spawn(async move {
            let mut client = EmpiClient::new(endpoint.connect().await.expect("connect"));
            let mut run = ClientRun {
                acked: Vec::new(),
                linked: 0,
                stopped_by: None,
            };
            for j in 0..PER_CLIENT {
                let rec = record(c, j);
                let req = pb::MatchOrCreateRequest {
                    record: Some(rec.clone()),
                    actor: "crash-test".into(),
                };
                match client.match_or_create(req).await {
                    Ok(r) => {
                        let r = r.into_inner();
                        run.linked += usize::from(r.decision() == pb::Decision::Linked);
                        let euid = r.euid;
                        assert!(!euid.is_empty(), "acknowledged without an EUID");
                        run.acked.push((rec, euid));
                        acks.fetch_add(1, Ordering::SeqCst);
                    }
                    Err(s) => {
                        run.stopped_by = Some(s.code());
                        break;
                    }
                }
            }
            run
        }));
    }

    // Kill in the middle of the load, while every client has a request in flight.
    // A bound against a hung server, not a speed requirement (this takes ~1 s normally).
    let deadline = Instant::now() + Duration::from_secs(60);
    while acks.load(Ordering::SeqCst) < KILL_AFTER_ACKS {
        assert!(
            tasks.iter().all(|t| !t.is_finished()),
            "a client stopped before the kill:\n{}",
            server.log_tail()
        );
        assert!(
            Instant::now() < deadline,
            "only {} records acknowledged in 60 s:\n{}",
            acks.load(Ordering::SeqCst),
            server.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    server.child.kill().expect("SIGKILL empi serve");
    server.child.wait().expect("reap empi serve");
    // A copy of the crashed data directory, as a backup or a move would make (the trail
    // gets a new inode): completing its trail must not double it.
    let copy = dir.path().join("copy");
    copy_dir(&data, &copy);

    let mut acked = Vec::new();
    let mut linked = 0;
    for t in tasks {
        let run = t.await.expect("client task");
        assert!(
            run.stopped_by.is_some(),
            "a client sent all its records: the kill was not mid-load"
        );
        acked.extend(run.acked);
        linked += run.linked;
    }
    assert!(acked.len() >= KILL_AFTER_ACKS);
    let persons: std::collections::HashSet<&str> = acked.iter().map(|(_, e)| e.as_str()).collect();
    eprintln!(
        "crash test: {} records acknowledged ({linked} linked) in {} persons before SIGKILL",
        acked.len(),
        persons.len()
    );

    // The crashed store, as left by SIGKILL, satisfies every invariant.
    let check = Command::new(EMPI)
        .args(["check", "--data"])
        .arg(&data)
        .output()
        .expect("running empi check");
    assert!(
        check.status.success(),
        "empi check failed after the crash ({}):\n{}\n{}",
        check.status,
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );

    // The audit export before any restart: each acknowledged call exactly once (the
    // export completes the trail from the store first).
    let exported = export(&data);
    assert_audited_once(&exported, &acked);
    // Every record the store holds has its line, acknowledged or not: its call's own, or
    // the line kept in the store before the change, written as interrupted.
    let named: std::collections::HashSet<&str> = exported
        .iter()
        .filter(|e| e.operation == "MatchOrCreate")
        .filter(|e| matches!(e.outcome, AuditOutcome::Ok | AuditOutcome::Interrupted))
        .flat_map(|e| e.records.iter().map(String::as_str))
        .collect();
    {
        use empi::store::Store;
        let store = empi::store::SledStore::open(&data).expect("opening the crashed store");
        let mut stored = 0;
        for r in store.records() {
            let key = r.expect("a stored record").record.key().to_string();
            assert!(
                named.contains(key.as_str()),
                "record {key} stored without an audit line"
            );
            stored += 1;
        }
        assert!(
            stored >= acked.len(),
            "{stored} stored, {} acknowledged",
            acked.len()
        );
    }

    // The copy exports the same trail, as often as it is exported.
    for _ in 0..2 {
        assert_eq!(
            export(&copy),
            exported,
            "the copy's trail differs from the original's"
        );
    }

    // Restart on the same store: every acknowledged record is there, in the same person.
    let mut server = Server::start(&data, dir.path().join("serve-2.log"));
    let mut client = server.ready_client(Duration::from_secs(30)).await;
    for (rec, euid) in &acked {
        let key = format!("{}/{}", rec.source, rec.local_id);
        let got = client
            .get_record(pb::GetRecordRequest {
                key: Some(pb::RecordKey {
                    source: rec.source.clone(),
                    local_id: rec.local_id.clone(),
                }),
            })
            .await
            .unwrap_or_else(|s| panic!("acknowledged record {key} lost: {:?}", s.code()))
            .into_inner()
            .record
            .unwrap_or_else(|| panic!("GetRecord {key}: no record in the reply"));
        assert_eq!(&got.euid, euid, "record {key} changed person");
        let stored = got.record.expect("the stored record");
        assert_eq!(stored.source, rec.source);
        assert_eq!(stored.local_id, rec.local_id);
        assert_eq!(stored.family_name, rec.family_name, "record {key}");
        assert_eq!(stored.given_name, rec.given_name, "record {key}");
        assert_eq!(stored.birth_date, rec.birth_date, "record {key}");
    }
    let stats = client
        .get_stats(pb::GetStatsRequest {})
        .await
        .expect("GetStats")
        .into_inner();
    assert!(
        stats.records >= acked.len() as u64,
        "{} records stored, {} acknowledged",
        stats.records,
        acked.len()
    );

    // The audit trail after the restart: still each acknowledged call once.
    let trail = audit::read(&data, None, None).expect("reading the audit trail");
    assert!(
        trail.unreadable_lines.is_empty(),
        "torn audit lines {:?}",
        trail.unreadable_lines
    );
    assert_audited_once(&trail.entries, &acked);
}

/// The audit trail of `data` as `empi audit` exports it.
pub(crate) fn export(data: &Path) -> Vec<audit::AuditEntry> {
    let out = Command::new(EMPI)
        .args(["audit", "--data"])
        .arg(data)
        .output()
        .expect("running empi audit");
    assert!(out.status.success(), "empi audit failed: {out:?}");
    String::from_utf8(out.stdout)
        .expect("UTF-8 export")
        .lines()
        .map(|l| serde_json::from_str(l).expect("an audit entry per line"))
        .collect()
}

/// Copies a directory tree (files and folders; not the control socket a killed server
/// left, which `tar` and `rsync` skip too and the next server replaces).
pub(crate) fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("creating the copy");
    for entry in std::fs::read_dir(from).expect("listing") {
        let entry = entry.expect("an entry");
        let target = to.join(entry.file_name());
        let kind = entry.file_type().expect("file type");
        if kind.is_dir() {
            copy_dir(&entry.path(), &target);
        } else if kind.is_file() {
            std::fs::copy(entry.path(), &target).expect("copying a file");
        }
    }
}

/// Every acknowledged call is audited as done exactly once, and no call twice.
fn assert_audited_once(entries: &[audit::AuditEntry], acked: &[(pb::PatientRecord, String)]) {
    let mut audited: HashMap<&str, usize> = HashMap::new();
    for e in entries {
        if e.operation == "MatchOrCreate" && e.outcome == AuditOutcome::Ok {
            for r in &e.records {
                *audited.entry(r.as_str()).or_default() += 1;
            }
        }
    }
    if let Some((key, n)) = audited.iter().find(|(_, n)| **n > 1) {
        panic!("{key} audited {n} times");
    }
    for (rec, _) in acked {
        let key = format!("{}/{}", rec.source, rec.local_id);
        assert_eq!(
            audited.get(key.as_str()),
            Some(&1),
            "acknowledged call for {key} not in the audit trail"
        );
    }
}
