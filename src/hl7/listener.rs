//! The HL7 v2 door: an MLLP listener (plain TCP, or TLS with the gRPC listener's files) that
//! reads each framed message with the codecs of this module, makes one call into the
//! application layer ([`App`]) as the connection's caller, and answers with an ACK or RSP.
//!
//! - **Who calls.** A connection authenticates with a registered TLS client certificate,
//!   or runs as the one credential the listener is bound to by configuration
//!   ([`Hl7Config::bound`], e.g. a submitter token whose sources are the PID-3 assigning
//!   authorities that feed may write). The identity is looked up again for every message,
//!   so revoking the credential takes effect at once. Without authentication (the local
//!   quick start) every message runs as the admin `local-dev`.
//! - **What it calls.** ADT^A01/A04/A05/A08 → [`App::match_or_create_once`]; ADT^A40 →
//!   [`App::merge_records`]; QBP^Q23 → [`App::cross_reference`]; QBP^Q22 →
//!   [`App::find_persons`]; QCN^J01 ends a PDQ query's paging ([`App::noted`]). A message
//!   that cannot be read is refused through the operation it was meant for (with the keys
//!   it carried) or, when not even its type is known, [`App::refused`]: every message is
//!   audited, and nothing of one that is refused is stored.
//! - **Replays.** ADT messages are named by sender (MSH-3, MSH-4) and MSH-10 and carry
//!   their acknowledgement as a receipt kept in the same change as the message
//!   ([`crate::app::Once`]): a replay gets the same acknowledgement, byte for byte, and
//!   applies nothing, also after a restart.
//! - **PDQ paging.** RCP-2 limits a page; when more candidates follow, DSC-1 carries a
//!   continuation pointer: 32 random hexadecimal digits naming the next offset of that
//!   query, kept in memory for [`CURSOR_TTL`] and good once, for the same sender, caller,
//!   query tag and QPD. Each page runs the search again (candidates are scored anew, so a
//!   page reflects the index when it is asked for). QCN^J01 with the query tag in QID-1
//!   drops the query's pointers.
//! - **Limits.** Frames over [`Hl7Config::max_frame`] bytes are answered AR unread;
//!   connections over [`Hl7Config::max_connections`] are closed at once; a connection idle
//!   for [`Hl7Config::idle_timeout`] is closed. A bad frame never ends the connection.
//!
//! Errors name the HL7 position (ERR-2, `PID-7`) and never a value; logs carry peer
//! addresses and counts only.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::app::{
    App, Caller, CrossReference, FindPersons, Identifiers, MergeRecords, Once, Receipted, Submit,
    Unreadable,
};
use crate::auth::tls::{accept, handshake};
use crate::auth::{AuthMode, Identity};
use crate::error::{Code, Error, Result};
use crate::record::{today_days, RecordKey};
use crate::service::{FoundPersons, PersonView};
use crate::store::UnixMillis;

use super::answer::{
    ack, query_error, rsp_k22, rsp_k23, Cx, Outbound, PdqCandidate, PdqPage, PixAnswer, Responder,
};
use super::error::{ErrorCode, Hl7Error, Location};
use super::header::{Hd, Header};
use super::mllp::{self, MllpDecoder};
use super::replay::ReplayKey;
use super::request::{
    read_request, Inbound, MappingOptions, PdqQuery, PixQuery, Rejection, Request,
};

/// How long a PDQ continuation pointer stays good.
pub const CURSOR_TTL: Duration = Duration::from_secs(600);

/// Continuation pointers kept at most (the oldest is forgotten first).
const MAX_CURSORS: usize = 4096;

/// How often old receipts are dropped from the store.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// The audit trail's name for a message whose type could not be read.
const UNREAD: &str = "Hl7Message";

/// How the HL7 v2 listener reads, answers and authenticates.
#[derive(Debug, Clone)]
pub struct Hl7Config {
    /// How identifiers are read from PID.
    pub mapping: MappingOptions,
    /// MSH-3 of answers.
    pub application: Hd,
    /// MSH-4 of answers.
    pub facility: Hd,
    /// The assigning authority of EUIDs in PIX and PDQ answers (a QPD-4 or QPD-8 domain
    /// naming it asks for EUIDs).
    pub euid_authority: Hd,
    /// Largest message accepted, in bytes.
    pub max_frame: usize,
    /// Connections served at once.
    pub max_connections: usize,
    /// A connection that sends nothing for this long is closed.
    pub idle_timeout: Duration,
    /// Candidates a PDQ page holds when RCP-2 does not say.
    pub pdq_page: usize,
    /// TLS (rustls, [`crate::auth::tls::TlsFiles::rustls_config`]); `None`: plain TCP.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// How callers are authenticated: [`AuthMode::Disabled`] runs every message as the
    /// admin `local-dev`.
    pub auth: AuthMode,
    /// The credential a connection without a registered client certificate runs as
    /// (with authentication required, a connection with neither is refused).
    pub bound: Option<String>,
}

impl Default for Hl7Config {
    fn default() -> Self {
        Hl7Config {
            mapping: MappingOptions::default(),
            application: Hd::named("EMPI"),
            facility: Hd::named("EMPI"),
            euid_authority: Hd::named("EMPI"),
            max_frame: mllp::DEFAULT_MAX_FRAME,
            max_connections: 256,
            idle_timeout: Duration::from_secs(1800),
            pdq_page: 50,
            tls: None,
            auth: AuthMode::Disabled,
            bound: None,
        }
    }
}

/// A PDQ query's next page, as a continuation pointer names it.
#[derive(Debug, Clone)]
struct Cursor {
    /// The caller's credential name.
    owner: String,
    /// MSH-3 and MSH-4 of the query.
    sender: Vec<u8>,
    query_tag: String,
    /// SHA-256 of the QPD segment: a pointer continues the same query only.
    query: [u8; 32],
    offset: usize,
    made: Instant,
}

#[derive(Debug, Default)]
struct Cursors {
    by_token: HashMap<String, Cursor>,
    order: VecDeque<String>,
}

impl Cursors {
    fn insert(&mut self, token: String, cursor: Cursor) {
        while self.by_token.len() >= MAX_CURSORS {
            match self.order.pop_front() {
                Some(old) => {
                    self.by_token.remove(&old);
                }
                None => break,
            }
        }
        self.order.push_back(token.clone());
        self.by_token.insert(token, cursor);
    }

    /// Takes the cursor of `token` (good once).
    fn take(&mut self, token: &str) -> Option<Cursor> {
        let c = self.by_token.remove(token)?;
        self.order.retain(|t| t != token);
        (c.made.elapsed() < CURSOR_TTL).then_some(c)
    }

    /// Drops every cursor of one sender's query.
    fn cancel(&mut self, sender: &[u8], query_tag: &str) -> usize {
        let before = self.by_token.len();
        self.by_token
            .retain(|_, c| !(c.sender == sender && c.query_tag == query_tag));
        let kept = &self.by_token;
        self.order.retain(|t| kept.contains_key(t));
        before - self.by_token.len()
    }
}

/// The listener's shared state.
struct Door {
    app: Arc<App>,
    config: Hl7Config,
    cursors: Mutex<Cursors>,
    /// Answers sent, numbering their MSH-10.
    answers: AtomicU64,
    /// The start time, in base 36, prefixing every MSH-10 of this run.
    run: String,
}

/// Serves the HL7 v2 door on an already bound listener until `shutdown` completes: stops
/// accepting, lets each connection finish the message it is on, and returns. Taking a bound
/// listener lets tests bind `127.0.0.1:0`.
///
/// # Errors
/// [`Error::Io`] when the listener fails.
pub async fn serve(
    listener: TcpListener,
    app: Arc<App>,
    config: Hl7Config,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<()> {
    let addr = listener
        .local_addr()
        .map_err(|e| Error::io("hl7 listener", e))?;
    let started = UnixMillis::now().0;
    let tls = config.tls.clone().map(tokio_rustls::TlsAcceptor::from);
    let slots = Arc::new(tokio::sync::Semaphore::new(config.max_connections.max(1)));
    let door = Arc::new(Door {
        app,
        config,
        cursors: Mutex::new(Cursors::default()),
        answers: AtomicU64::new(0),
        run: base36(u64::try_from(started).unwrap_or(0)),
    });
    tracing::info!(%addr, tls = tls.is_some(), "serving HL7 v2 over MLLP");
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut connections = tokio::task::JoinSet::new();
    connections.spawn(prune_receipts(Arc::clone(&door.app), stopped.clone()));
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = accept(&listener, "hl7") => accepted,
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            tracing::warn!(%peer, "hl7 connection refused: too many connections");
            continue;
        };
        let (door, tls, stopped) = (Arc::clone(&door), tls.clone(), stopped.clone());
        connections.spawn(async move {
            let _slot = slot;
            match tls {
                None => door.connection(stream, peer, None, stopped).await,
                Some(acceptor) => {
                    if let Some((s, cert)) = handshake(&acceptor, stream, peer, "hl7").await {
                        door.connection(s, peer, cert, stopped).await;
                    }
                }
            }
        });
        // Reap finished connections as they go, so the set does not grow.
        while connections.try_join_next().is_some() {}
    }
    tracing::info!("hl7 listener stopping: finishing the messages in flight");
    let _ = stop.send(true);
    while connections.join_next().await.is_some() {}
    Ok(())
}

/// Drops old receipts now and then until `stopped` (on a blocking thread: it writes).
async fn prune_receipts(app: Arc<App>, mut stopped: tokio::sync::watch::Receiver<bool>) {
    loop {
        let service = Arc::clone(app.service());
        match tokio::task::spawn_blocking(move || service.prune_receipts()).await {
            Ok(Ok(n)) if n > 0 => tracing::info!(dropped = n, "old hl7 receipts dropped"),
            Ok(Err(e)) => tracing::warn!("dropping old hl7 receipts: {e}"),
            _ => {}
        }
        tokio::select! {
            () = tokio::time::sleep(PRUNE_EVERY) => {}
            _ = stopped.changed() => return,
        }
    }
}

fn base36(mut n: u64) -> String {
    const DIGITS: &[u8; 36] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";
    let mut out = Vec::new();
    loop {
        out.push(DIGITS[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).unwrap_or_default()
}

/// The domain a source's records are keyed under, as an HD: an OID as a universal id,
/// anything else as a namespace id.
fn hd_of(source: &str) -> Hd {
    let oid = !source.is_empty()
        && source
            .split('.')
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    if oid && source.contains('.') {
        Hd {
            namespace_id: String::new(),
            universal_id: source.to_string(),
            universal_id_type: "ISO".into(),
        }
    } else {
        Hd::named(source)
    }
}

/// A record key as a CX, its authority as the query named it when it did.
fn cx_of(key: &RecordKey, asked: &[Hd]) -> Cx {
    Cx {
        id: key.local_id.clone(),
        authority: asked
            .iter()
            .find(|h| h.domain() == key.source)
            .cloned()
            .unwrap_or_else(|| hd_of(&key.source)),
        type_code: "PI".into(),
    }
}

/// The record key an [`Hl7Error`] names (`source/local_id`; sources hold no `/`).
fn key_named(e: &Hl7Error) -> Vec<RecordKey> {
    e.key
        .as_deref()
        .and_then(|k| k.split_once('/'))
        .map(|(s, l)| RecordKey::new(s, l))
        .into_iter()
        .collect()
}

/// An error of the application as an ERR: `at` is where the request named the record
/// whose source was refused.
fn refusal(e: &Error, at: Location) -> Hl7Error {
    match e {
        Error::InvalidInput { field, reason, .. } if field == "message_id" => Hl7Error::new(
            Location::field("MSH", 10),
            ErrorCode::DuplicateKeyIdentifier,
            reason.clone(),
        ),
        Error::Denied(_) => Hl7Error::new(
            at,
            ErrorCode::ApplicationInternal,
            "this sender may not use records of this assigning authority",
        ),
        Error::Conflict(_) => Hl7Error::new(
            at,
            ErrorCode::ApplicationInternal,
            "conflicts with the current state (a registrar's assertion or a concurrent change)",
        ),
        Error::NoSpace(_) => Hl7Error::new(
            Location::message(),
            ErrorCode::ApplicationInternal,
            "the receiver takes no writes for now (disk space); retry later",
        ),
        _ => Hl7Error::from_error(e),
    }
}

impl Door {
    fn responder(&self) -> Responder {
        let n = self.answers.fetch_add(1, Ordering::Relaxed) + 1;
        Responder {
            application: self.config.application.clone(),
            facility: self.config.facility.clone(),
            control_id: format!("{}.{n}", self.run),
            time_ms: UnixMillis::now().0,
        }
    }

    /// Who a connection's message runs as: see the module docs.
    fn identify(&self, cert: Option<&[u8]>) -> std::result::Result<Identity, &'static str> {
        let creds = match &self.config.auth {
            AuthMode::Disabled => return Ok(Identity::local_dev()),
            AuthMode::Required(c) => c,
        };
        if let Some(der) = cert {
            return creds
                .authenticate_cert(der)
                .ok_or("client certificate not registered or revoked");
        }
        match &self.config.bound {
            Some(name) => creds
                .active_named(name)
                .ok_or("the credential this listener is bound to is not active"),
            None => Err("credentials required: a registered client certificate"),
        }
    }

    /// Serves one connection: frames in, answers out, until the peer closes, it idles too
    /// long, or the listener stops (after the message in hand).
    async fn connection<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        mut stream: S,
        peer: SocketAddr,
        cert: Option<Vec<u8>>,
        mut stopped: tokio::sync::watch::Receiver<bool>,
    ) {
        let peer_text = peer.to_string();
        let mut decoder = MllpDecoder::new(self.config.max_frame);
        let mut buf = vec![0u8; 64 * 1024];
        tracing::debug!(%peer, "hl7 connection");
        loop {
            let read = tokio::select! {
                r = tokio::time::timeout(self.config.idle_timeout, stream.read(&mut buf)) => r,
                _ = stopped.changed() => break,
            };
            let n = match read {
                Ok(Ok(0)) => {
                    if decoder.finish().is_some() {
                        let who = self.identify(cert.as_deref());
                        self.audit_unread(&who, &peer_text).await;
                    }
                    break;
                }
                Ok(Ok(n)) => n,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, "hl7 connection read failed: {e}");
                    break;
                }
                Err(_) => {
                    tracing::info!(%peer, "hl7 connection idle too long; closed");
                    break;
                }
            };
            for frame in decoder.push(&buf[..n]) {
                let who = self.identify(cert.as_deref());
                let answer = match frame {
                    Ok(bytes) => self.answer(&bytes, &who, &peer_text).await,
                    Err(e) => {
                        self.audit_unread(&who, &peer_text).await;
                        let error = Hl7Error::new(
                            Location::message(),
                            ErrorCode::DataType,
                            format!("unreadable frame: {e}"),
                        );
                        unread(error).answer(&self.responder()).to_bytes()
                    }
                };
                let framed = match mllp::encode(&answer) {
                    Ok(f) => f,
                    Err(e) => {
                        // Answers are our own text; a framing byte in one is a defect.
                        tracing::error!("hl7 answer not framable: {e}");
                        continue;
                    }
                };
                if let Err(e) = stream.write_all(&framed).await {
                    tracing::debug!(%peer, "hl7 answer not sent: {e}");
                    return;
                }
            }
            if stream.flush().await.is_err() {
                return;
            }
        }
        let _ = stream.shutdown().await;
    }

    /// Audits a frame that could not be read as a message at all.
    async fn audit_unread(&self, who: &std::result::Result<Identity, &'static str>, peer: &str) {
        let (identity, code) = match who {
            Ok(i) => (Some(i), Code::InvalidArgument),
            Err(_) => (None, Code::Unauthenticated),
        };
        if let Err(e) = self
            .app
            .refused(identity, UNREAD, Some(peer.to_string()), code)
            .await
        {
            tracing::warn!("hl7 refusal not audited: {e}");
        }
    }

    /// The answer to one message, as bytes to frame.
    async fn answer(
        &self,
        bytes: &[u8],
        who: &std::result::Result<Identity, &'static str>,
        peer: &str,
    ) -> Vec<u8> {
        let read = read_request(bytes, &self.config.mapping, today_days());
        let identity = match who {
            Ok(i) => i.clone(),
            Err(why) => {
                self.audit_unread(who, peer).await;
                let header = match &read {
                    Ok(inb) => Some(inb.header.clone()),
                    Err(rej) => rej.header.clone(),
                };
                let refusal = Rejection {
                    header,
                    query: None,
                    error: Hl7Error::new(Location::message(), ErrorCode::ApplicationInternal, *why),
                };
                return refusal.answer(&self.responder()).to_bytes();
            }
        };
        let caller = Caller::new(identity, Some(peer.to_string()));
        match read {
            Ok(inbound) => self.apply(&caller, inbound).await,
            Err(rejection) => self.reject(&caller, &rejection).await,
        }
    }

    /// Audits a message that could not be read through the operation it was meant for
    /// (naming the keys it carried), and answers it AE or AR.
    async fn reject(&self, caller: &Caller, rej: &Rejection) -> Vec<u8> {
        let unreadable = || Unreadable {
            error: Error::from(rej.error.clone()),
            keys: key_named(&rej.error),
        };
        let kind = rej
            .header
            .as_ref()
            .map(|h| (h.message_code.as_str(), h.trigger_event.as_str()));
        let audited = match kind {
            Some(("ADT", "A01" | "A04" | "A05" | "A08")) => self
                .app
                .match_or_create(caller, Err(unreadable()))
                .await
                .map(drop),
            Some(("ADT", "A40")) => self
                .app
                .merge_records(caller, Err(unreadable()), None)
                .await
                .map(drop),
            Some(("QBP", "Q23")) => self
                .app
                .cross_reference(caller, Err(unreadable()))
                .await
                .map(drop),
            Some(("QBP", "Q22")) => self
                .app
                .find_persons(caller, Err(unreadable()))
                .await
                .map(drop),
            _ => {
                self.app
                    .refused(
                        Some(&caller.identity),
                        UNREAD,
                        caller.peer.clone(),
                        Code::InvalidArgument,
                    )
                    .await
            }
        };
        let r = self.responder();
        match audited {
            // Not audited: the sender must retry later, not fix the message.
            Err(e @ Error::Storage(_)) => {
                let header = rej.header.clone().unwrap_or_default();
                ack(&header, &[refusal(&e, Location::message())], &r).to_bytes()
            }
            _ => rej.answer(&r).to_bytes(),
        }
    }

    /// Makes the one application call a message asks for and answers it.
    async fn apply(&self, caller: &Caller, inbound: Inbound) -> Vec<u8> {
        let Inbound {
            header,
            request,
            digest,
        } = inbound;
        let r = self.responder();
        let once = |answer: &Outbound| Once {
            id: ReplayKey::of(&header).to_bytes(),
            digest,
            answer: answer.to_bytes(),
        };
        let pid3 = Location::field("PID", 3).component(4);
        match request {
            Request::Submit { record, .. } => {
                let accepted = once(&ack(&header, &[], &r));
                let answer = accepted.answer.clone();
                let submit = Submit {
                    record,
                    actor: String::new(),
                };
                match self
                    .app
                    .match_or_create_once(caller, Ok(submit), accepted)
                    .await
                {
                    Ok(Receipted::Applied(_)) => answer,
                    Ok(Receipted::Replay(before)) => before,
                    Err(e) => ack(&header, &[refusal(&e, pid3)], &r).to_bytes(),
                }
            }
            Request::Merge(m) => {
                let accepted = once(&ack(&header, &[], &r));
                let answer = accepted.answer.clone();
                let merge = MergeRecords {
                    survivor: RecordKey::new(&m.source, &m.survivor_local_id),
                    retired: RecordKey::new(&m.source, &m.retired_local_id),
                };
                let retired = merge.retired.to_string();
                match self
                    .app
                    .merge_records(caller, Ok(merge), Some(accepted))
                    .await
                {
                    Ok(Receipted::Applied(_)) => answer,
                    Ok(Receipted::Replay(before)) => before,
                    Err(Error::NotFound { id, .. }) => {
                        let at = if id == retired {
                            Location::field("MRG", 1).component(1)
                        } else {
                            Location::field("PID", 3).component(1)
                        };
                        let e = Hl7Error::new(
                            at,
                            ErrorCode::UnknownKeyIdentifier,
                            "record not known in its domain",
                        );
                        ack(&header, &[e], &r).to_bytes()
                    }
                    Err(e) => ack(&header, &[refusal(&e, Location::segment("MRG"))], &r).to_bytes(),
                }
            }
            Request::PixQuery(q) => self.pix(caller, &header, &q, &r).await.to_bytes(),
            Request::PdqQuery(q) => self.pdq(caller, &header, &q, &r).await.to_bytes(),
            Request::Cancel(c) => {
                let sender = ReplayKey::of(&header).sender_bytes();
                let dropped = self
                    .cursors
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .cancel(&sender, &c.query_tag);
                tracing::debug!(dropped, "pdq continuation cancelled");
                match self.app.noted(caller, "CancelQuery").await {
                    Ok(()) => ack(&header, &[], &r).to_bytes(),
                    Err(e) => ack(&header, &[refusal(&e, Location::message())], &r).to_bytes(),
                }
            }
        }
    }

    /// QBP^Q23: the person's identifiers in the domains asked for.
    async fn pix(&self, caller: &Caller, header: &Header, q: &PixQuery, r: &Responder) -> Outbound {
        let euid_domain = &self.config.euid_authority;
        // QPD-4's repetitions (1-based) that name a source, and their domains.
        let sources: Vec<(usize, &Hd)> = q
            .domains
            .iter()
            .enumerate()
            .filter(|(_, d)| !d.same_domain(euid_domain))
            .map(|(i, d)| (i + 1, d))
            .collect();
        let want_euid = q.domains.is_empty() || q.domains.len() > sources.len();
        let request = CrossReference {
            key: q.identifier.clone(),
            domains: sources
                .iter()
                .map(|(_, d)| d.domain().to_string())
                .collect(),
        };
        let answer = match self.app.cross_reference(caller, Ok(request)).await {
            Ok(Identifiers {
                unknown_domains, ..
            }) if !unknown_domains.is_empty() => {
                PixAnswer::UnknownDomains(unknown_domains.iter().map(|&i| sources[i].0).collect())
            }
            Ok(ids) => {
                let mut found: Vec<Cx> = ids.records.iter().map(|k| cx_of(k, &q.domains)).collect();
                if want_euid {
                    found.push(Cx {
                        id: ids.euid.to_string(),
                        authority: euid_domain.clone(),
                        type_code: "PI".into(),
                    });
                }
                PixAnswer::Found(found)
            }
            Err(Error::NotFound { what: "source", .. }) => PixAnswer::UnknownSourceDomain,
            Err(Error::NotFound { .. }) => PixAnswer::UnknownIdentifier,
            Err(e) => {
                let at = Location::field("QPD", 3).component(4);
                return query_error(header, &q.query_tag, Some(&q.qpd), &[refusal(&e, at)], r);
            }
        };
        rsp_k23(header, q, &answer, r)
    }

    /// QBP^Q22: a page of candidates, and a continuation pointer when more follow.
    async fn pdq(&self, caller: &Caller, header: &Header, q: &PdqQuery, r: &Responder) -> Outbound {
        let sender = ReplayKey::of(header).sender_bytes();
        let query: [u8; 32] = Sha256::digest(q.qpd.raw().as_bytes()).into();
        let offset = match &q.continuation {
            None => 0,
            Some(token) => {
                let cursor = self
                    .cursors
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .take(token)
                    .filter(|c| {
                        c.owner == caller.identity.name
                            && c.sender == sender
                            && c.query_tag == q.query_tag
                            && c.query == query
                    });
                match cursor {
                    Some(c) => c.offset,
                    None => {
                        let e = Hl7Error::new(
                            Location::field("DSC", 1),
                            ErrorCode::UnknownKeyIdentifier,
                            "unknown or expired continuation pointer; ask again without one",
                        );
                        return query_error(header, &q.query_tag, Some(&q.qpd), &[e], r);
                    }
                }
            }
        };
        let limit = q.limit.map_or(self.config.pdq_page, |n| n as usize).max(1);
        let request = FindPersons {
            criteria: q.criteria.clone(),
            offset,
            limit,
            only_certain: false,
        };
        let found = match self.app.find_persons(caller, Ok(request)).await {
            Ok(f) => f,
            Err(e) => {
                let at = Location::field("QPD", 3);
                return query_error(header, &q.query_tag, Some(&q.qpd), &[refusal(&e, at)], r);
            }
        };
        let FoundPersons { matches, total } = found;
        let shown = offset + matches.len();
        let remaining = total.saturating_sub(shown);
        let continuation = (remaining > 0).then(|| {
            let token = new_token();
            let cursor = Cursor {
                owner: caller.identity.name.clone(),
                sender,
                query_tag: q.query_tag.clone(),
                query,
                offset: shown,
                made: Instant::now(),
            };
            self.cursors
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(token.clone(), cursor);
            token
        });
        let candidates = matches
            .iter()
            .map(|m| PdqCandidate {
                identifiers: self.identifiers(&m.person, &q.domains),
                demographics: m.person.golden.to_record(),
                score: m.candidate.probability,
            })
            .collect();
        let page = PdqPage {
            candidates,
            total,
            remaining,
            continuation,
        };
        rsp_k22(header, q, &page, r)
    }

    /// A person's identifiers: its records', then its EUID.
    fn identifiers(&self, person: &PersonView, asked: &[Hd]) -> Vec<Cx> {
        let mut ids: Vec<Cx> = person
            .records
            .iter()
            .map(|s| cx_of(&s.key(), asked))
            .collect();
        ids.push(Cx {
            id: person.person.euid.to_string(),
            authority: self.config.euid_authority.clone(),
            type_code: "PI".into(),
        });
        ids
    }
}

/// A rejection of something that is not a message (no header read).
fn unread(error: Hl7Error) -> Rejection {
    Rejection {
        header: None,
        query: None,
        error,
    }
}

/// 32 random hexadecimal digits from the OS random source.
fn new_token() -> String {
    let mut bytes = [0u8; 16];
    if getrandom::fill(&mut bytes).is_err() {
        // No random source: a token from the clock and a counter is still unique, only
        // guessable, and it only continues a query its guesser could ask anyway.
        static N: AtomicU64 = AtomicU64::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        bytes[..8].copy_from_slice(&UnixMillis::now().0.to_be_bytes());
        bytes[8..].copy_from_slice(&n.to_be_bytes());
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cursor(sender: &[u8], tag: &str) -> Cursor {
        Cursor {
            owner: "x".into(),
            sender: sender.to_vec(),
            query_tag: tag.into(),
            query: [0; 32],
            offset: 2,
            made: Instant::now(),
        }
    }

    #[test]
    fn cursors_are_good_once_and_cancelled_by_query() {
        let mut c = Cursors::default();
        c.insert("a".into(), cursor(b"s1", "T1"));
        c.insert("b".into(), cursor(b"s1", "T1"));
        c.insert("c".into(), cursor(b"s2", "T1"));
        assert_eq!(c.take("a").map(|c| c.offset), Some(2));
        assert!(c.take("a").is_none(), "good once");
        assert_eq!(c.cancel(b"s1", "T1"), 1);
        assert!(c.take("b").is_none());
        assert!(c.take("c").is_some(), "another sender's query stays");
        assert!(c.order.is_empty());
    }

    #[test]
    fn domains_and_tokens() {
        assert_eq!(hd_of("1.2.840.114350").universal_id, "1.2.840.114350");
        assert_eq!(hd_of("STMARY").namespace_id, "STMARY");
        assert_eq!(hd_of("2026").namespace_id, "2026");
        let (a, b) = (new_token(), new_token());
        assert_eq!(a.len(), 32);
        assert_ne!(a, b);
        assert_eq!(base36(0), "0");
        assert_eq!(base36(36 * 36 + 35), "10Z");
    }
}
