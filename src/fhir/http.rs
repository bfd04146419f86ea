//! The FHIR door: an HTTP/1.1 listener (plain, or TLS with the gRPC listener's files) with
//! axum routes under `/fhir`, each a conversion, one call into the application layer
//! ([`App`]) as the authenticated caller, and a conversion back.
//!
//! | route                               | application call        | answer                     |
//! |-------------------------------------|-------------------------|----------------------------|
//! | `GET /fhir/metadata`                | none (no patient data)  | CapabilityStatement        |
//! | `POST /fhir/Patient/$match`         | [`App::find_persons`]   | searchset Bundle           |
//! | `GET /fhir/Patient/$ihe-pix?…`      | [`App::cross_reference`] | Parameters (PIXm)         |
//! | `GET /fhir/Patient/[euid]`          | [`App::get_person`]     | Patient                    |
//!
//! Callers authenticate as on the gRPC API ([`AuthMode::authenticate`]): `Authorization:
//! Bearer TOKEN`, else a registered TLS client certificate; without authentication (the
//! local quick start) every call runs as the admin `local-dev`. A caller is refused by its
//! role before its body is read ([`App::admit`]). Every error is an OperationOutcome with
//! its HTTP status ([`crate::fhir::outcome_of`]): naming the element, never its value.
//! Bodies over [`FhirServerConfig::max_body`] bytes are refused (413) unread. Query strings
//! carry identifiers only (PIXm's `sourceIdentifier`), never demographics: `$match` is a
//! POST.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;

use crate::app::{App, Caller, CrossReference, FindPersons, Incoming, Unreadable};
use crate::auth::tls::{accept, handshake};
use crate::auth::{AuthMode, Operation};
use crate::error::{Code, Error, Result};
use crate::record::today_days;
use crate::service::{MatchGrade as Grade, PersonView};
use crate::store::{Euid, HistoryAction, UnixMillis};

use super::convert::{
    capability_statement, match_bundle, outcome, outcome_of, person_to_patient, pixm_parameters,
    pixm_unknown_target_system, read_match_request, read_pixm_query, FhirConfig, FhirPerson,
    MatchCandidate, MatchGrade, Outcome,
};
use super::resources::Resource;

/// The path every route is under: `[base]` is the server's address and this.
pub const BASE_PATH: &str = "/fhir";

/// Matches a `$match` answers when it gives no `count`.
pub const DEFAULT_MATCH_COUNT: usize = 10;

/// How the FHIR listener answers and authenticates.
#[derive(Debug, Clone)]
pub struct FhirServerConfig {
    /// Identifier systems and the base URL written into answers.
    pub fhir: FhirConfig,
    /// TLS (rustls, offering `http/1.1`); `None`: plain HTTP.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// How callers are authenticated.
    pub auth: AuthMode,
    /// Largest request body, in bytes.
    pub max_body: usize,
    /// The software version the CapabilityStatement names.
    pub version: String,
}

impl Default for FhirServerConfig {
    fn default() -> Self {
        FhirServerConfig {
            fhir: FhirConfig::default(),
            tls: None,
            auth: AuthMode::Disabled,
            max_body: 1 << 20,
            version: env!("CARGO_PKG_VERSION").into(),
        }
    }
}

/// What the routes share.
struct Door {
    app: Arc<App>,
    config: FhirServerConfig,
}

/// Where a request came from: the peer's address and its TLS client certificate (DER).
#[derive(Debug, Clone)]
struct Peer {
    addr: SocketAddr,
    cert: Option<Arc<Vec<u8>>>,
}

type Shared = Arc<Door>;

/// An answer: a resource with its status, as FHIR JSON.
fn resource(status: u16, r: &Resource) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (status, r.to_json()).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/fhir+json; charset=utf-8"),
    );
    response
}

fn failed(o: &Outcome) -> Response {
    resource(o.status, &o.resource)
}

fn error(e: &Error) -> Response {
    failed(&outcome_of(e))
}

/// Serves the FHIR door on an already bound listener until `shutdown` completes: stops
/// accepting, lets requests in flight finish, and returns. Taking a bound listener lets
/// tests bind `127.0.0.1:0`.
///
/// # Errors
/// [`Error::Io`] when the listener fails.
pub async fn serve(
    listener: TcpListener,
    app: Arc<App>,
    config: FhirServerConfig,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<()> {
    let addr = listener
        .local_addr()
        .map_err(|e| Error::io("fhir listener", e))?;
    let tls = config.tls.clone().map(tokio_rustls::TlsAcceptor::from);
    tracing::info!(%addr, tls = tls.is_some(), base = %config.fhir.base_url, "serving FHIR R4");
    let door = Arc::new(Door { app, config });
    let routes = Router::new()
        .route("/metadata", get(metadata))
        .route("/Patient/$match", post(patient_match))
        .route("/Patient/$ihe-pix", get(ihe_pix))
        .route("/Patient/{id}", get(read_patient))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed);
    let router: Router = Router::new()
        .nest(BASE_PATH, routes)
        .fallback(not_found)
        .with_state(door);
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut connections = tokio::task::JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = accept(&listener, "fhir") => accepted,
        };
        let (router, tls, stopped) = (router.clone(), tls.clone(), stopped.clone());
        connections.spawn(async move {
            match tls {
                None => {
                    connection(
                        stream,
                        Peer {
                            addr: peer,
                            cert: None,
                        },
                        router,
                        stopped,
                    )
                    .await
                }
                Some(acceptor) => {
                    if let Some((s, cert)) = handshake(&acceptor, stream, peer, "fhir").await {
                        let cert = cert.map(Arc::new);
                        connection(s, Peer { addr: peer, cert }, router, stopped).await;
                    }
                }
            }
        });
        while connections.try_join_next().is_some() {}
    }
    tracing::info!("fhir listener stopping: finishing the requests in flight");
    let _ = stop.send(true);
    while connections.join_next().await.is_some() {}
    Ok(())
}

/// Serves one HTTP/1.1 connection until it closes, or the listener stops (after the request
/// in hand).
async fn connection<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
    stream: S,
    peer: Peer,
    router: Router,
    mut stopped: tokio::sync::watch::Receiver<bool>,
) {
    let service = hyper_util::service::TowerToHyperService::new(router.layer(Extension(peer)));
    let conn = hyper::server::conn::http1::Builder::new()
        .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
    tokio::pin!(conn);
    let served = tokio::select! {
        served = conn.as_mut() => served,
        _ = stopped.changed() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = served {
        tracing::debug!("fhir connection ended: {e}");
    }
}

impl Door {
    /// The caller of a request, or the 401 answer (the refusal audited).
    async fn caller(
        &self,
        headers: &HeaderMap,
        peer: &Peer,
        op: Operation,
    ) -> std::result::Result<Caller, Response> {
        let authorization = headers
            .get(header::AUTHORIZATION)
            .map(HeaderValue::as_bytes);
        let cert = peer.cert.as_deref().map(Vec::as_slice);
        let where_from = Some(peer.addr.to_string());
        match self.config.auth.authenticate(authorization, cert) {
            Ok(identity) => {
                let caller = Caller::new(identity, where_from);
                // Refused (and audited) by its role before its request is read.
                self.app.admit(&caller, op).await.map_err(|e| error(&e))?;
                Ok(caller)
            }
            Err(why) => {
                let audited = self
                    .app
                    .refused(None, op.name(), where_from, Code::Unauthenticated)
                    .await;
                let mut r = match audited {
                    Ok(()) => failed(&outcome(401, "login", why, None)),
                    Err(e) => error(&e),
                };
                r.headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
                Err(r)
            }
        }
    }

    /// A person as the FHIR conversions show it: as asked for (a merged EUID is shown as
    /// replaced by its survivor), with the EUIDs merged into it.
    fn person(&self, view: &PersonView) -> FhirPerson {
        if view.requested != view.person.euid {
            return FhirPerson {
                euid: view.requested.to_string(),
                demographics: view.golden.to_record(),
                records: Vec::new(),
                replaces: Vec::new(),
                replaced_by: Some(view.person.euid.to_string()),
            };
        }
        FhirPerson {
            euid: view.person.euid.to_string(),
            demographics: view.golden.to_record(),
            records: view.records.iter().map(|r| r.key()).collect(),
            replaces: view
                .history
                .iter()
                .filter(|h| h.action == HistoryAction::MergeAbsorbed)
                .filter_map(|h| h.euids.first().map(ToString::to_string))
                .collect(),
            replaced_by: None,
        }
    }
}

async fn metadata(State(door): State<Shared>) -> Response {
    let (y, m, d) = crate::time::civil_from_days(UnixMillis::now().0.div_euclid(86_400_000));
    let date = format!("{y:04}-{m:02}-{d:02}");
    resource(
        200,
        &capability_statement(&door.config.version, &date, &door.config.fhir),
    )
}

/// The request body, at most `max` bytes.
async fn body(body: Body, max: usize) -> std::result::Result<Vec<u8>, Response> {
    axum::body::to_bytes(body, max)
        .await
        .map(|b| b.to_vec())
        .map_err(|_| {
            failed(&outcome(
                413,
                "too-costly",
                &format!("body: longer than {max} bytes, or cut short"),
                None,
            ))
        })
}

async fn patient_match(
    State(door): State<Shared>,
    Extension(peer): Extension<Peer>,
    headers: HeaderMap,
    request: Body,
) -> Response {
    let caller = match door.caller(&headers, &peer, Operation::FindPersons).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let bytes = match body(request, door.config.max_body).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let read = read_match_request(&bytes, &door.config.fhir, today_days());
    let count = read
        .as_ref()
        .ok()
        .and_then(|m| m.count)
        .map_or(DEFAULT_MATCH_COUNT, |n| n as usize);
    let find: Incoming<FindPersons> = read
        .map(|m| FindPersons {
            criteria: m.record,
            offset: 0,
            limit: count,
            only_certain: m.only_certain_matches,
        })
        .map_err(Unreadable::from);
    match door.app.find_persons(&caller, find).await {
        Ok(found) => {
            let candidates: Vec<MatchCandidate> = found
                .matches
                .iter()
                .map(|m| MatchCandidate {
                    person: door.person(&m.person),
                    score: m.candidate.probability,
                    grade: match m.grade {
                        Grade::Certain => MatchGrade::Certain,
                        Grade::Probable => MatchGrade::Probable,
                        Grade::Possible => MatchGrade::Possible,
                    },
                })
                .collect();
            resource(200, &match_bundle(&candidates, &door.config.fhir))
        }
        Err(e) => error(&e),
    }
}

async fn ihe_pix(
    State(door): State<Shared>,
    Extension(peer): Extension<Peer>,
    headers: HeaderMap,
    Query(params): Query<Vec<(String, String)>>,
) -> Response {
    let caller = match door
        .caller(&headers, &peer, Operation::CrossReference)
        .await
    {
        Ok(c) => c,
        Err(r) => return r,
    };
    let cfg = &door.config.fhir;
    let query = read_pixm_query(&params, cfg);
    let request = query
        .as_ref()
        .map(|q| CrossReference {
            key: q.source_identifier.clone(),
            domains: q
                .target_systems
                .iter()
                .filter(|t| **t != cfg.euid_system)
                .cloned()
                .collect(),
        })
        .map_err(|e| Unreadable::from(clone_invalid(e)));
    match (door.app.cross_reference(&caller, request).await, query) {
        (Ok(ids), _) if !ids.unknown_domains.is_empty() => failed(&pixm_unknown_target_system()),
        (Ok(ids), Ok(q)) => {
            let person = FhirPerson {
                euid: ids.euid.to_string(),
                records: ids.records,
                ..FhirPerson::default()
            };
            resource(200, &pixm_parameters(&person, &q, cfg))
        }
        (Err(Error::NotFound { what: "source", .. }), _) => failed(&outcome(
            400,
            "code-invalid",
            "sourceIdentifier: the system names no known domain",
            Some("sourceIdentifier"),
        )),
        (Err(e), _) => error(&e),
        // The query was read when the call succeeded.
        (Ok(_), Err(e)) => error(&e),
    }
}

/// An invalid-input error again (errors are not `Clone`: they may hold an I/O error).
fn clone_invalid(e: &Error) -> Error {
    match e {
        Error::InvalidInput { key, field, reason } => Error::InvalidInput {
            key: key.clone(),
            field: field.clone(),
            reason: reason.clone(),
        },
        other => Error::Internal(format!("unexpected: {}", other.code().name())),
    }
}

async fn read_patient(
    State(door): State<Shared>,
    Extension(peer): Extension<Peer>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let caller = match door.caller(&headers, &peer, Operation::GetPerson).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let euid = Euid::parse(&id)
        .map_err(|_| Error::invalid("Patient.id", "not an EUID (E and ten base-36 digits)"))
        .map_err(Unreadable::from);
    match door.app.get_person(&caller, euid).await {
        Ok(view) => resource(
            200,
            &Resource::Patient(person_to_patient(&door.person(&view), &door.config.fhir)),
        ),
        Err(e) => error(&e),
    }
}

async fn not_found() -> Response {
    failed(&outcome(
        404,
        "not-supported",
        "no such resource or operation here (see [base]/metadata)",
        None,
    ))
}

async fn method_not_allowed() -> Response {
    failed(&outcome(
        405,
        "not-supported",
        "method not allowed on this path (see [base]/metadata)",
        None,
    ))
}
