//! Load generator: drives `empi serve` over loopback with N concurrent gRPC clients sending
//! `MatchOrCreate` for records of an `empi synth` CSV, and reports throughput, latency
//! percentiles (p50/p90/p99/max), decision counts and errors. With `--mllp` the same
//! records go as HL7 v2.5 ADT^A04 messages over MLLP to the server's HL7 listener instead,
//! one connection per client, each message answered (durably) before the next is sent.
//!
//! ```sh
//! cargo bench --bench loadgen -- --addr 127.0.0.1:50051 --input FILE --clients 8 --requests 50000
//! cargo bench --bench loadgen -- --spawn-server /tmp/empi-bench --input FILE --preload 1000000
//! cargo bench --bench loadgen -- --spawn-server /tmp/empi-bench --mllp --input FILE --skip 1000000
//! ```
//!
//! Records are taken in file order: the first `--skip` ones are not sent (already stored, e.g.
//! by `empi load`), the next `--preload` ones are sent as fast as possible and not measured
//! (to measure against a store that already holds many records), the next `--warmup` ones are
//! sent and not measured, then up to `--requests` are measured. Without
//! `--addr` or `--spawn-server` it prints its usage and exits 0, so a plain `cargo bench`
//! (which runs every bench binary with `--bench`) does not fail.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use empi::grpc::pb::{self, empi_client::EmpiClient};
use empi::hl7::mllp::{self, MllpDecoder};
use empi::hl7::{escape, Delimiters};
use empi::input::{read_csv, ColumnMapping, ReadOptions};
use empi::record::{Record, Sex};
use hdrhistogram::Histogram;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::transport::{Channel, Endpoint};

const USAGE: &str = "\
empi load generator: MatchOrCreate over gRPC (or ADT^A04 over MLLP) with N concurrent
clients

usage: cargo bench --bench loadgen -- (--addr HOST:PORT | --spawn-server DATA_DIR) [options]

  --addr HOST:PORT        a running `empi serve` (loopback only)
  --spawn-server DIR      start `empi serve --data DIR --listen 127.0.0.1:0` (with --mllp
                          also `--hl7 127.0.0.1:0`), report its
                          start time, stop it at the end (binary: --empi-bin, else
                          $EMPI_BIN, else the bench-profile build of `empi` that cargo
                          makes beside this bench, target/release/empi)
  --empi-bin PATH         the empi binary for --spawn-server
  --mllp                  send each record as an HL7 v2.5 ADT^A04 over MLLP (PID-3's
                          assigning authority is the record's source) and count the
                          acknowledgements (AA; AE/AR are errors) instead of decisions
  --hl7-addr HOST:PORT    the HL7 listener of the server given by --addr, with --mllp
  --server-arg ARG        one more argument to the spawned `empi serve` (repeatable), e.g.
                          --server-arg=--metrics --server-arg=127.0.0.1:0
  --follow-feed           one more client follows the change feed (WatchChanges from the
                          feed's start: replays it, then follows) during warmup and
                          measurement, as a downstream consumer does; reports the events
                          it received
  --input FILE            records CSV (`empi synth` output) [synthetic-data/small/records.csv]
  --columns MAPPING       column mapping, as for `empi dedup` (default: headers named like
                          our fields)
  --clients N             concurrent clients, each with its own connection [8]
  --requests M            measured requests at most (stops earlier at the file's end) [all]
  --warmup K              requests sent before measuring, not measured [0]
  --skip S                first S records not sent at all: already stored, e.g. by
                          `empi load` of the file's first S records (faster than --preload)
  --preload P             next P records sent as fast as possible, not measured [0]
  --preload-clients N     concurrency of the preload [2 x --clients]
  --threads T             client runtime threads; 1 runs every client on one thread [1]
  --timeout-secs S        per-request deadline [30]
  -h, --help              this text
";

/// Parsed command line.
#[derive(Debug)]
struct Args {
    addr: Option<String>,
    spawn_server: Option<PathBuf>,
    empi_bin: Option<PathBuf>,
    mllp: bool,
    hl7_addr: Option<String>,
    server_args: Vec<String>,
    follow_feed: bool,
    input: PathBuf,
    columns: Option<String>,
    clients: usize,
    requests: Option<usize>,
    warmup: usize,
    skip: usize,
    preload: usize,
    preload_clients: Option<usize>,
    threads: usize,
    timeout: Duration,
}

/// `Ok(None)` when the usage should be printed instead of running.
fn parse_args(argv: impl IntoIterator<Item = String>) -> Result<Option<Args>> {
    let mut args = Args {
        addr: None,
        spawn_server: None,
        empi_bin: None,
        mllp: false,
        hl7_addr: None,
        server_args: Vec::new(),
        follow_feed: false,
        input: Path::new(env!("CARGO_MANIFEST_DIR")).join("synthetic-data/small/records.csv"),
        columns: None,
        clients: 8,
        requests: None,
        warmup: 0,
        skip: 0,
        preload: 0,
        preload_clients: None,
        threads: 1,
        timeout: Duration::from_secs(30),
    };
    let mut it = argv.into_iter();
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        let mut value = || -> Result<String> {
            match inline.clone() {
                Some(v) => Ok(v),
                None => it.next().with_context(|| format!("{flag} needs a value")),
            }
        };
        let num = |v: String, flag: &str| -> Result<usize> {
            v.parse::<usize>()
                .with_context(|| format!("{flag}: '{v}' is not a count"))
        };
        match flag.as_str() {
            "-h" | "--help" => return Ok(None),
            // Added by `cargo bench` to every bench binary.
            "--bench" => {}
            "--addr" => args.addr = Some(value()?),
            "--spawn-server" => args.spawn_server = Some(PathBuf::from(value()?)),
            "--empi-bin" => args.empi_bin = Some(PathBuf::from(value()?)),
            "--mllp" => args.mllp = true,
            "--hl7-addr" => args.hl7_addr = Some(value()?),
            "--server-arg" => args.server_args.push(value()?),
            "--follow-feed" => args.follow_feed = true,
            "--input" => args.input = PathBuf::from(value()?),
            "--columns" => args.columns = Some(value()?),
            "--clients" => args.clients = num(value()?, &flag)?,
            "--requests" => args.requests = Some(num(value()?, &flag)?),
            "--warmup" => args.warmup = num(value()?, &flag)?,
            "--skip" => args.skip = num(value()?, &flag)?,
            "--preload" => args.preload = num(value()?, &flag)?,
            "--preload-clients" => args.preload_clients = Some(num(value()?, &flag)?),
            "--threads" => args.threads = num(value()?, &flag)?,
            "--timeout-secs" => args.timeout = Duration::from_secs(num(value()?, &flag)? as u64),
            f if f.starts_with('-') => bail!("unknown option {f}\n\n{USAGE}"),
            // A positional argument is a bench name filter from `cargo bench NAME`: not ours.
            _ => {}
        }
    }
    if args.addr.is_none() && args.spawn_server.is_none() {
        return Ok(None);
    }
    if args.addr.is_some() && args.spawn_server.is_some() {
        bail!("give --addr or --spawn-server, not both");
    }
    if args.mllp && args.addr.is_some() && args.hl7_addr.is_none() {
        bail!("--mllp with --addr needs --hl7-addr");
    }
    if args.clients == 0 || args.threads == 0 {
        bail!("--clients and --threads must be at least 1");
    }
    Ok(Some(args))
}

fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(Some(a)) => a,
        Ok(None) => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("loadgen: {e:#}");
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("loadgen: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// A spawned `empi serve`, killed and reaped when dropped (also on error paths).
struct ServerGuard {
    child: Child,
    log: PathBuf,
}

impl Drop for ServerGuard {
    /// Stops the server as an operator would (SIGTERM: in-flight calls finish and the index
    /// snapshot is written, so the next run starts from it), killing it only if it has not
    /// stopped within a minute.
    fn drop(&mut self) {
        let pid = self.child.id().to_string();
        let asked = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .is_ok_and(|s| s.success());
        if asked {
            let deadline = Instant::now() + Duration::from_secs(60);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `empi serve --listen 127.0.0.1:0` (and `--hl7 127.0.0.1:0` with `--mllp`) and
/// waits (up to 10 min: a large store's index is rebuilt before it listens) for the
/// `listening on ADDR` lines it prints on stdout: the gRPC address, and the HL7 one.
fn spawn_server(args: &Args, data: &Path) -> Result<(ServerGuard, String, Option<String>)> {
    let bin = args
        .empi_bin
        .clone()
        .or_else(|| std::env::var_os("EMPI_BIN").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_empi")));
    if !bin.is_file() {
        bail!(
            "empi binary {} not found: cargo build --release --bin empi, or give --empi-bin",
            bin.display()
        );
    }
    let log = std::env::temp_dir().join(format!("empi-loadgen-server-{}.log", std::process::id()));
    let log_file = std::fs::File::create(&log).with_context(|| format!("{}", log.display()))?;
    let started = Instant::now();
    let mut child = Command::new(&bin)
        .arg("serve")
        .arg("--data")
        .arg(data)
        .arg("--listen")
        .arg("127.0.0.1:0")
        .args(if args.mllp {
            &["--hl7", "127.0.0.1:0"][..]
        } else {
            &[]
        })
        .args(&args.server_args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log_file)
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    let stdout = child.stdout.take().context("piped stdout")?;
    let guard = ServerGuard { child, log };
    eprintln!(
        "loadgen: started {} serve --data {} (log: {})",
        bin.display(),
        data.display(),
        guard.log.display()
    );
    let (tx, rx) = std::sync::mpsc::channel();
    // Keeps draining stdout so the server never blocks on a full pipe.
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some((what, addr)) = line.trim().split_once("listening on ") {
                let _ = tx.send((what.trim().to_string(), addr.to_string()));
            }
        }
    });
    let (mut addr, mut hl7) = (None, None);
    while addr.is_none() || (args.mllp && hl7.is_none()) {
        let (what, at) = rx.recv_timeout(Duration::from_secs(600)).with_context(|| {
            format!(
                "empi serve did not print 'listening on ADDR'; see {}",
                guard.log.display()
            )
        })?;
        match what.as_str() {
            "" => addr = Some(at),
            "hl7" => hl7 = Some(at),
            _ => {}
        }
    }
    let addr = addr.context("the gRPC address")?;
    println!(
        "server    listening on {addr} after {:.2} s (store opened, index loaded or rebuilt)",
        started.elapsed().as_secs_f64()
    );
    Ok((guard, addr, hl7))
}

/// Starts a consumer that follows the change feed after sequence `after`; the count of events it
/// has received, and its task.
async fn follow_feed(
    endpoint: &Endpoint,
    after: u64,
) -> Result<(
    std::sync::Arc<std::sync::atomic::AtomicU64>,
    tokio::task::JoinHandle<()>,
)> {
    let mut c = EmpiClient::new(
        endpoint
            .clone()
            .timeout(Duration::from_secs(86_400))
            .connect()
            .await?,
    );
    let mut stream = c
        .watch_changes(pb::WatchChangesRequest {
            after_sequence: after,
        })
        .await
        .context("WatchChanges")?
        .into_inner();
    let received = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let count = std::sync::Arc::clone(&received);
    let task = tokio::spawn(async move {
        while let Ok(Some(m)) = stream.message().await {
            count.fetch_add(m.events.len() as u64, std::sync::atomic::Ordering::Relaxed);
        }
    });
    Ok((received, task))
}

/// Connects and calls GetStats until it answers, within `limit`.
async fn wait_ready(
    endpoint: &Endpoint,
    server: Option<&mut ServerGuard>,
    limit: Duration,
) -> Result<pb::GetStatsResponse> {
    let deadline = Instant::now() + limit;
    let mut server = server;
    loop {
        if let Some(s) = server.as_deref_mut() {
            if let Some(status) = s.child.try_wait()? {
                bail!(
                    "empi serve exited with {status} before answering; see {}",
                    s.log.display()
                );
            }
        }
        if let Ok(ch) = endpoint.connect().await {
            if let Ok(r) = EmpiClient::new(ch).get_stats(pb::GetStatsRequest {}).await {
                return Ok(r.into_inner());
            }
        }
        if Instant::now() > deadline {
            bail!("the server did not answer GetStats within {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What one phase (preload, warm-up, measured) saw.
struct PhaseResult {
    sent: u64,
    elapsed: Duration,
    latency_us: Histogram<u64>,
    decisions: BTreeMap<&'static str, u64>,
    unchanged: u64,
    errors: BTreeMap<String, u64>,
    first_error: Option<String>,
}

impl PhaseResult {
    fn new() -> Result<Self> {
        Ok(PhaseResult {
            sent: 0,
            elapsed: Duration::ZERO,
            // 1 µs to 10 min, 3 significant digits.
            latency_us: Histogram::new_with_bounds(1, 600_000_000, 3)?,
            decisions: BTreeMap::new(),
            unchanged: 0,
            errors: BTreeMap::new(),
            first_error: None,
        })
    }

    fn merge(&mut self, other: PhaseResult) -> Result<()> {
        self.sent += other.sent;
        self.latency_us.add(&other.latency_us)?;
        for (k, v) in other.decisions {
            *self.decisions.entry(k).or_default() += v;
        }
        self.unchanged += other.unchanged;
        for (k, v) in other.errors {
            *self.errors.entry(k).or_default() += v;
        }
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
        Ok(())
    }

    fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }
}

fn decision_name(d: pb::Decision) -> &'static str {
    match d {
        pb::Decision::Linked => "linked",
        pb::Decision::Created => "created",
        pb::Decision::Review => "review",
        pb::Decision::Unspecified => "unspecified",
    }
}

/// What the clients send: gRPC `MatchOrCreate` requests, or framed ADT^A04 messages to
/// the HL7 listener at `addr`.
enum Load {
    Grpc(Arc<Vec<pb::PatientRecord>>),
    Mllp {
        addr: String,
        frames: Arc<Vec<Vec<u8>>>,
        timeout: Duration,
    },
}

impl Load {
    /// Sends `range` with `clients` (gRPC) or `k` fresh MLLP connections.
    async fn drive(
        &self,
        clients: &[EmpiClient<Channel>],
        k: usize,
        range: Range<usize>,
    ) -> Result<PhaseResult> {
        match self {
            Load::Grpc(records) => drive(clients, records, range).await,
            Load::Mllp {
                addr,
                frames,
                timeout,
            } => drive_mllp(addr, k, frames, range, *timeout).await,
        }
    }
}

/// An HL7 v2.5 ADT^A04 (register a patient, IHE ITI-8) carrying `r`: PID-3 the local id
/// under the source as assigning authority, PID-5 names (the earlier family name as a
/// maiden name), PID-7 the birth date as precise as it is, PID-8, PID-11, PID-13 phones and
/// e-mail, PID-19 the national id, PID-24/25 the birth order.
fn a04(r: &Record, control_id: &str) -> String {
    let d = &Delimiters::STANDARD;
    let e = |v: &str| escape(v, d);
    let o = |v: &Option<String>| v.as_deref().map(e).unwrap_or_default();
    let mut names = vec![format!(
        "{}^{}^{}^^^^L",
        o(&r.family_name),
        o(&r.given_name),
        o(&r.middle_name)
    )];
    names.extend(
        r.previous_family_names
            .iter()
            .map(|f| format!("{}^^^^^^M", e(f))),
    );
    let birth = r.birth_date.map_or(String::new(), |b| {
        let mut s = format!("{:04}", b.year);
        if let Some(m) = b.month {
            s += &format!("{m:02}");
            if let Some(day) = b.day {
                s += &format!("{day:02}");
            }
        }
        s
    });
    let sex = match r.sex {
        Sex::Female => "F",
        Sex::Male => "M",
        Sex::Other => "O",
        _ => "U",
    };
    let a = &r.address;
    let address = format!(
        "{}^{}^{}^{}^{}^{}",
        a.lines.first().map(|l| e(l)).unwrap_or_default(),
        a.lines.get(1).map(|l| e(l)).unwrap_or_default(),
        o(&a.city),
        o(&a.state),
        o(&a.postal_code),
        o(&a.country)
    );
    let mut telecom: Vec<String> = r
        .phones
        .iter()
        .map(|p| format!("{}^PRN^PH", e(p)))
        .collect();
    telecom.extend(r.email.iter().map(|m| format!("^NET^Internet^{}", e(m))));
    let (twin, order) = match r.multiple_birth_order {
        Some(n) => ("Y", n.to_string()),
        None => ("", String::new()),
    };
    format!(
        "MSH|^~\\&|LOADGEN|BENCH|EMPI|EMPI|20260111080000||ADT^A04^ADT_A01|{control_id}|P|2.5\r\
         EVN||20260111080000\r\
         PID|1||{}^^^{}^MR||{}||{birth}|{sex}|||{address}||{}||||||{}|||||{twin}|{order}\r\
         PV1|1|O\r",
        e(&r.local_id),
        e(&r.source),
        names.join("~"),
        telecom.join("~"),
        r.national_id().map(e).unwrap_or_default(),
    )
}

/// MSA-1 of an answer, and its first ERR segment.
fn acknowledgement(answer: &[u8]) -> (String, Option<String>) {
    let text = String::from_utf8_lossy(answer);
    let field = |id: &str| {
        text.split('\r')
            .find(|s| s.starts_with(id))
            .map(str::to_string)
    };
    let msa = field("MSA|")
        .and_then(|m| m.split('|').nth(1).map(str::to_string))
        .unwrap_or_default();
    (msa, field("ERR|"))
}

/// Sends `frames[range]` over `k` MLLP connections to `addr`, one task each taking the next
/// unsent message, each waiting for the answer before sending again.
async fn drive_mllp(
    addr: &str,
    k: usize,
    frames: &Arc<Vec<Vec<u8>>>,
    range: Range<usize>,
    timeout: Duration,
) -> Result<PhaseResult> {
    let mut streams = Vec::with_capacity(k);
    for _ in 0..k {
        let s = tokio::net::TcpStream::connect(addr)
            .await
            .with_context(|| format!("connecting to the HL7 listener {addr}"))?;
        s.set_nodelay(true)?;
        streams.push(s);
    }
    let next = Arc::new(AtomicUsize::new(range.start));
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(k);
    for mut stream in streams {
        let (frames, next, end) = (Arc::clone(frames), Arc::clone(&next), range.end);
        tasks.push(tokio::spawn(async move {
            let mut res = PhaseResult::new()?;
            let mut decoder = MllpDecoder::default();
            let mut buf = vec![0u8; 16 * 1024];
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= end {
                    break;
                }
                let t = Instant::now();
                let answered = tokio::time::timeout(timeout, async {
                    stream.write_all(&frames[i]).await?;
                    loop {
                        let n = stream.read(&mut buf).await?;
                        if n == 0 {
                            bail!("the listener closed the connection");
                        }
                        if let Some(frame) = decoder.push(&buf[..n]).into_iter().next() {
                            return Ok(frame?);
                        }
                    }
                })
                .await
                .context("no answer within --timeout-secs")
                .and_then(|r| r);
                let us = t.elapsed().as_micros().min(u64::MAX as u128) as u64;
                res.sent += 1;
                let answer = answered?;
                match acknowledgement(&answer) {
                    (msa, _) if msa == "AA" => {
                        res.latency_us.saturating_record(us.max(1));
                        *res.decisions.entry("AA").or_default() += 1;
                    }
                    (msa, err) => {
                        *res.errors.entry(format!("MSA-1 {msa}")).or_default() += 1;
                        if res.first_error.is_none() {
                            // ERR names the field and why, never a value.
                            res.first_error = Some(format!("record #{i}: {}", err.unwrap_or(msa)));
                        }
                    }
                }
            }
            anyhow::Ok(res)
        }));
    }
    let mut total = PhaseResult::new()?;
    for t in tasks {
        total.merge(t.await??)?;
    }
    total.elapsed = start.elapsed();
    Ok(total)
}

/// Sends `records[range]` with one task per client, each taking the next unsent record.
async fn drive(
    clients: &[EmpiClient<Channel>],
    records: &Arc<Vec<pb::PatientRecord>>,
    range: Range<usize>,
) -> Result<PhaseResult> {
    let next = Arc::new(AtomicUsize::new(range.start));
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(clients.len());
    for client in clients {
        let mut client = client.clone();
        let records = Arc::clone(records);
        let next = Arc::clone(&next);
        let end = range.end;
        tasks.push(tokio::spawn(async move {
            let mut res = PhaseResult::new()?;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= end {
                    break;
                }
                let req = pb::MatchOrCreateRequest {
                    record: Some(records[i].clone()),
                    actor: "loadgen".into(),
                };
                let t = Instant::now();
                let reply = client.match_or_create(req).await;
                let us = t.elapsed().as_micros().min(u64::MAX as u128) as u64;
                res.sent += 1;
                match reply {
                    Ok(r) => {
                        res.latency_us.saturating_record(us.max(1));
                        let r = r.into_inner();
                        *res.decisions
                            .entry(decision_name(r.decision()))
                            .or_default() += 1;
                        res.unchanged += u64::from(r.unchanged);
                    }
                    Err(status) => {
                        *res.errors
                            .entry(format!("{:?}", status.code()))
                            .or_default() += 1;
                        if res.first_error.is_none() {
                            // Server messages name fields and record keys, never values.
                            res.first_error = Some(format!(
                                "record #{i}: {:?}: {}",
                                status.code(),
                                status.message()
                            ));
                        }
                    }
                }
            }
            anyhow::Ok(res)
        }));
    }
    let mut total = PhaseResult::new()?;
    for t in tasks {
        total.merge(t.await??)?;
    }
    total.elapsed = start.elapsed();
    Ok(total)
}

/// CPU time (user + system, all threads) a process has used so far, in clock ticks, from
/// `/proc/PID/stat` (`None`: this process). `None` where there is no such file (not Linux).
fn cpu_ticks(pid: Option<u32>) -> Option<u64> {
    let path = match pid {
        Some(p) => format!("/proc/{p}/stat"),
        None => "/proc/self/stat".to_string(),
    };
    let stat = std::fs::read_to_string(path).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces: utime
    // and stime are the 14th and 15th fields of the line, the 12th and 13th after it.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// Prints the CPU time a process spent per measured request. Clock ticks are taken as
/// 1/100 s (`CLK_TCK` on Linux); over a run of seconds that resolves about 1%.
fn report_cpu(who: &str, before: Option<u64>, after: Option<u64>, requests: u64) {
    if let (Some(b), Some(a)) = (before, after) {
        let ms_total = (a.saturating_sub(b)) as f64 * 10.0;
        println!(
            "          {who} CPU: {:.3} ms per request ({:.2} s in all)",
            ms_total / requests.max(1) as f64,
            ms_total / 1000.0
        );
    }
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

fn rate(n: u64, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64().max(1e-9)
}

fn report_phase(name: &str, r: &PhaseResult, with_latency: bool) {
    println!(
        "{name:<9} {} requests in {:.2} s = {:.0} req/s",
        r.sent,
        r.elapsed.as_secs_f64(),
        rate(r.sent, r.elapsed)
    );
    if with_latency && !r.latency_us.is_empty() {
        let h = &r.latency_us;
        println!(
            "          latency ms: p50 {:.2}  p90 {:.2}  p99 {:.2}  max {:.2}  mean {:.2}",
            ms(h.value_at_quantile(0.50)),
            ms(h.value_at_quantile(0.90)),
            ms(h.value_at_quantile(0.99)),
            ms(h.max()),
            h.mean() / 1000.0
        );
    }
    let decisions: Vec<String> = ["created", "linked", "review", "unspecified", "AA"]
        .iter()
        .filter_map(|d| r.decisions.get(d).map(|n| format!("{d} {n}")))
        .collect();
    println!(
        "          decisions: {}  (unchanged {})",
        if decisions.is_empty() {
            "none".to_string()
        } else {
            decisions.join("  ")
        },
        r.unchanged
    );
    if r.error_count() > 0 {
        let errs: Vec<String> = r.errors.iter().map(|(k, v)| format!("{k} {v}")).collect();
        println!("          errors: {}", errs.join("  "));
        if let Some(e) = &r.first_error {
            println!("          first error: {e}");
        }
    } else {
        println!("          errors: 0");
    }
}

fn print_stats(label: &str, s: &pb::GetStatsResponse) {
    println!(
        "{label:<9} records {}  persons {}  open review tasks {}  model {}",
        s.records, s.persons, s.open_review_tasks, s.model_version
    );
}

/// Runs the whole thing; `Ok(false)` when some request failed.
fn run(args: &Args) -> Result<bool> {
    let t = Instant::now();
    let mapping = args
        .columns
        .as_deref()
        .map(ColumnMapping::parse)
        .transpose()?;
    let (records, summary) = read_csv(&args.input, mapping.as_ref(), &ReadOptions::default())
        .with_context(|| format!("reading {}", args.input.display()))?;
    let count = records.len();
    let grpc_records: Arc<Vec<pb::PatientRecord>> = Arc::new(if args.mllp {
        Vec::new()
    } else {
        records.iter().map(pb::PatientRecord::from).collect()
    });
    eprintln!(
        "loadgen: {} records from {} in {:.1} s ({} rows skipped)",
        count,
        args.input.display(),
        t.elapsed().as_secs_f64(),
        summary.skipped_rows
    );

    let n = count;
    let first = args.skip.min(n);
    let preload = first..(first + args.preload).min(n);
    let warmup = preload.end..(preload.end + args.warmup).min(n);
    let measured_end = match args.requests {
        Some(m) => (warmup.end + m).min(n),
        None => n,
    };
    let measured = warmup.end..measured_end;
    if measured.is_empty() {
        bail!("no record left to measure: skip + preload + warmup take all {n} records");
    }

    // Only the records to be sent become messages; a run's own control ids, so a second run
    // over the same store is not answered as a replay of the first.
    let run_id = format!("{}{}", std::process::id(), t.elapsed().subsec_nanos());
    let frames: Arc<Vec<Vec<u8>>> = Arc::new(if args.mllp {
        let mut frames = vec![Vec::new(); first];
        for (i, r) in records[first..measured_end].iter().enumerate() {
            let control_id = format!("LG{run_id}.{}", first + i);
            frames.push(mllp::encode(a04(r, &control_id).as_bytes())?);
        }
        frames
    } else {
        Vec::new()
    });
    drop(records);

    let mut server = None;
    let (addr, hl7) = match (&args.addr, &args.spawn_server) {
        (Some(a), _) => (a.clone(), args.hl7_addr.clone()),
        (None, Some(dir)) => {
            let (guard, addr, hl7) = spawn_server(args, dir)?;
            server = Some(guard);
            (addr, hl7)
        }
        (None, None) => bail!("give --addr or --spawn-server"),
    };
    let load = match hl7 {
        Some(hl7) if args.mllp => Load::Mllp {
            addr: hl7,
            frames,
            timeout: args.timeout,
        },
        _ => Load::Grpc(grpc_records),
    };

    // One thread by default: every client task then runs on the thread that drives them,
    // with no hand-offs between runtime threads, so the generator takes as little as it can
    // of the CPU it shares with the server.
    let rt = if args.threads == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.threads)
            .enable_all()
            .build()?
    };
    let ok = rt.block_on(async {
        let endpoint = Endpoint::from_shared(format!("http://{addr}"))?
            .timeout(args.timeout)
            .connect_timeout(Duration::from_secs(5))
            .tcp_nodelay(true);
        let before = wait_ready(&endpoint, server.as_mut(), Duration::from_secs(60)).await?;
        print_stats("before", &before);

        let connect = |k: usize| {
            let endpoint = endpoint.clone();
            async move {
                let mut v = Vec::with_capacity(k);
                for _ in 0..k {
                    v.push(EmpiClient::new(endpoint.connect().await?));
                }
                anyhow::Ok(v)
            }
        };
        // The MLLP clients connect per phase; gRPC ones are made once.
        let clients = match &load {
            Load::Grpc(_) => connect(args.clients).await?,
            Load::Mllp { .. } => Vec::new(),
        };
        let follower = if args.follow_feed {
            Some(follow_feed(&endpoint, 0).await?)
        } else {
            None
        };
        let mut ok = true;
        if !preload.is_empty() {
            let k = args.preload_clients.unwrap_or(2 * args.clients);
            let pc = match &load {
                Load::Grpc(_) => connect(k).await?,
                Load::Mllp { .. } => Vec::new(),
            };
            let r = load.drive(&pc, k, preload.clone()).await?;
            report_phase("preload", &r, false);
            ok &= r.error_count() == 0;
            drop(pc);
        }
        if !warmup.is_empty() {
            let r = load.drive(&clients, args.clients, warmup.clone()).await?;
            report_phase("warmup", &r, false);
            ok &= r.error_count() == 0;
        }
        let server_pid = server.as_ref().map(|g| g.child.id());
        let cpu_before = (cpu_ticks(None), server_pid.and_then(|p| cpu_ticks(Some(p))));
        let r = load.drive(&clients, args.clients, measured.clone()).await?;
        let cpu_after = (cpu_ticks(None), server_pid.and_then(|p| cpu_ticks(Some(p))));
        println!(
            "measured  {} {} clients, records #{}..#{} of {}",
            args.clients,
            match load {
                Load::Grpc(_) => "gRPC",
                Load::Mllp { .. } => "MLLP",
            },
            measured.start,
            measured.end,
            n
        );
        report_phase("", &r, true);
        report_cpu("client", cpu_before.0, cpu_after.0, r.sent);
        report_cpu("server", cpu_before.1, cpu_after.1, r.sent);
        ok &= r.error_count() == 0;
        let mut stats = EmpiClient::new(endpoint.connect().await?);
        let after = stats.get_stats(pb::GetStatsRequest {}).await?.into_inner();
        print_stats("after", &after);
        if let Some((received, task)) = follower {
            // Lets the consumer catch up with the last writes, then stops it.
            tokio::time::sleep(Duration::from_millis(500)).await;
            task.abort();
            println!(
                "feed      {} events received by the following consumer",
                received.load(std::sync::atomic::Ordering::Relaxed)
            );
        }
        anyhow::Ok(ok)
    })?;
    // Close the connections first: the server's graceful stop waits for them, and on the
    // one-thread runtime nothing drives them once `block_on` has returned.
    drop(rt);
    drop(server);
    Ok(ok)
}
