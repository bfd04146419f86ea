//! The console's handlers. Each signs the browser in ([`desk`]), checks the CSRF token of a
//! post, converts the form ([`forms`]), makes one call on the application layer as the
//! signed-in registrar, and renders the answer ([`pages`]) or redirects.

// A step that answers early returns the answer itself (`Err(Response)`): boxing it would
// buy nothing for one request.
#![allow(clippy::result_large_err)]

use std::sync::Arc;

use axum::extract::connect_info::ConnectInfo;
use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Form;
use maud::Markup;

use crate::app::{Caller, ResolveReviewTask};
use crate::auth::{AuthMode, Identity, Role};
use crate::error::{Code, Error};
use crate::store::{ResolutionAction, TaskId, TaskQuery, UnixMillis};

use super::forms::{self, Fields};
use super::pages::{self, Frame};
use super::session::{self, NoSession, Session, COOKIE, LOGIN_COOKIE};
use super::{Console, Peer};

type Shared = State<Arc<Console>>;

/// Where a request came from, for the audit line.
pub struct PeerAddr(Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for PeerAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(PeerAddr(
            parts
                .extensions
                .get::<ConnectInfo<Peer>>()
                .map(|c| c.0 .0.to_string()),
        ))
    }
}

fn html(status: StatusCode, page: Markup) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        page.into_string(),
    )
        .into_response()
}

fn redirect(to: &str) -> Response {
    (StatusCode::SEE_OTHER, [(header::LOCATION, to.to_string())]).into_response()
}

fn with_cookie(mut r: Response, cookie: Option<String>) -> Response {
    if let Some(c) = cookie.and_then(|c| HeaderValue::from_str(&c).ok()) {
        r.headers_mut().append(header::SET_COOKIE, c);
    }
    r
}

/// A signed-in browser for one request.
pub struct Desk {
    session: Session,
    id: String,
    caller: Caller,
    /// A cookie to set with the answer (a session started for `local-dev`).
    cookie: Option<String>,
}

/// The browser's session: its cookie's, or one started as `local-dev` while
/// authentication is off; otherwise a redirect to the login form.
async fn desk(c: &Console, headers: &HeaderMap, peer: PeerAddr) -> Result<Desk, Response> {
    let id = headers
        .get(header::COOKIE)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| session::cookie(h, COOKIE))
        .unwrap_or("")
        .to_string();
    match c.sessions.touch(&id, &c.auth) {
        Ok(session) => Ok(Desk {
            caller: Caller::new(session.identity.clone(), peer.0),
            session,
            id,
            cookie: None,
        }),
        Err(why) => match c.auth {
            AuthMode::Disabled => {
                let id = c.sessions.start(Identity::local_dev());
                let session = c
                    .sessions
                    .touch(&id, &c.auth)
                    .map_err(|_| redirect("/login"))?;
                Ok(Desk {
                    caller: Caller::new(session.identity.clone(), peer.0),
                    cookie: Some(session::set_cookie(COOKIE, &id, c.secure, None)),
                    session,
                    id,
                })
            }
            AuthMode::Required(_) => Err(redirect(match why {
                NoSession::Expired => "/login?expired=1",
                NoSession::Missing => "/login",
            })),
        },
    }
}

impl Desk {
    fn frame<'a>(&'a self, c: &Console) -> Frame<'a> {
        Frame {
            who: Some(&self.session.identity),
            csrf: &self.session.csrf,
            flash: self.session.flash.as_deref(),
            auth: c.auth_on(),
        }
    }

    fn page(self, page: Markup) -> Response {
        with_cookie(html(StatusCode::OK, page), self.cookie)
    }

    fn go(self, to: &str) -> Response {
        with_cookie(redirect(to), self.cookie)
    }

    /// Redirects to `to`, leaving `message` for the next page.
    fn done(self, c: &Console, message: String, to: &str) -> Response {
        c.sessions.flash(&self.id, message);
        self.go(to)
    }

    /// The page explaining a failed call (its message names fields, keys and ids only,
    /// never patient data); `back` leads back.
    fn failure(self, c: &Console, e: &Error, back: Option<&str>) -> Response {
        let (status, heading) = match e.code() {
            Code::InvalidArgument => (StatusCode::BAD_REQUEST, "Not accepted"),
            Code::NotFound => (StatusCode::NOT_FOUND, "Not found"),
            Code::FailedPrecondition | Code::Aborted => (StatusCode::CONFLICT, "Not changed"),
            Code::PermissionDenied => (StatusCode::FORBIDDEN, "Not allowed"),
            Code::ResourceExhausted | Code::Unavailable => {
                (StatusCode::SERVICE_UNAVAILABLE, "Try again later")
            }
            _ => (StatusCode::INTERNAL_SERVER_ERROR, "Something went wrong"),
        };
        let message = if status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!(error = %e, "console call failed");
            "an internal error; the server log has the details".to_string()
        } else {
            e.to_string()
        };
        let page = pages::error(&self.frame(c), heading, &message, back);
        with_cookie(html(status, page), self.cookie)
    }

    /// Refuses a post whose CSRF token is missing or wrong (audited as a refusal of
    /// `operation`).
    async fn csrf(&self, c: &Console, f: &Fields, operation: &str) -> Result<(), Response> {
        if f.one("csrf")
            .is_some_and(|t| session::same_secret(t, &self.session.csrf))
        {
            return Ok(());
        }
        let audited = c
            .app
            .refused(
                Some(&self.caller.identity),
                operation,
                self.caller.peer.clone(),
                Code::PermissionDenied,
            )
            .await;
        let message = match audited {
            Ok(()) => "the form carried no valid CSRF token (it may be from an old page): reload the page and try again",
            Err(_) => "the audit trail is unavailable; try again later",
        };
        let page = pages::error(&self.frame(c), "Not accepted", message, None);
        Err(html(StatusCode::FORBIDDEN, page))
    }
}

/// A form body, or the page saying it could not be read.
fn fields(form: Result<Form<Vec<(String, String)>>, FormRejection>) -> Result<Fields, Response> {
    form.map(|Form(v)| Fields(v))
        .map_err(|_| (StatusCode::BAD_REQUEST, "the form could not be read").into_response())
}

/// Signs in and reads the form of a post, checking its CSRF token.
async fn posted(
    c: &Console,
    headers: &HeaderMap,
    peer: PeerAddr,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
    operation: &str,
) -> Result<(Desk, Fields), Response> {
    let desk = desk(c, headers, peer).await?;
    let f = fields(form)?;
    desk.csrf(c, &f, operation).await?;
    Ok((desk, f))
}

/// Unwraps a step that answered early.
macro_rules! step {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(response) => return response,
        }
    };
}

pub async fn index() -> Response {
    redirect("/worklist")
}

pub async fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "not found").into_response()
}

pub async fn css() -> Response {
    asset(
        "text/css; charset=utf-8",
        include_str!("assets/console.css"),
    )
}

pub async fn js() -> Response {
    asset(
        "text/javascript; charset=utf-8",
        include_str!("assets/console.js"),
    )
}

fn asset(kind: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "private, max-age=300"),
        ],
        body,
    )
        .into_response()
}

// ---- signing in and out ------------------------------------------------------------------

pub async fn login_page(State(c): Shared, Query(q): Query<Vec<(String, String)>>) -> Response {
    if !c.auth_on() {
        return redirect("/worklist");
    }
    let expired = q.iter().any(|(k, _)| k == "expired");
    let token = session::random_id();
    let page = pages::login(
        &token,
        expired.then_some("Your session ended; sign in again."),
    );
    with_cookie(
        html(StatusCode::OK, page),
        Some(session::set_cookie(
            LOGIN_COOKIE,
            &token,
            c.secure,
            Some(600),
        )),
    )
}

/// The operation name a refused sign-in is audited under.
const LOGIN_OP: &str = "ConsoleLogin";

pub async fn login(
    State(c): Shared,
    peer: PeerAddr,
    headers: HeaderMap,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Response {
    let AuthMode::Required(creds) = &c.auth else {
        return redirect("/worklist");
    };
    let f = step!(fields(form));
    let paired = headers
        .get(header::COOKIE)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| session::cookie(h, LOGIN_COOKIE));
    let refuse = |status: StatusCode, why: &str| {
        let token = session::random_id();
        with_cookie(
            html(status, pages::login(&token, Some(why))),
            Some(session::set_cookie(
                LOGIN_COOKIE,
                &token,
                c.secure,
                Some(600),
            )),
        )
    };
    if !f
        .one("csrf")
        .zip(paired)
        .is_some_and(|(a, b)| session::same_secret(a, b))
    {
        return refuse(
            StatusCode::FORBIDDEN,
            "The sign-in form was out of date; try again.",
        );
    }
    let who = f.one("token").and_then(|t| creds.authenticate_token(t));
    let (code, why) = match &who {
        None => (
            Code::Unauthenticated,
            "Unknown or revoked token.",
        ),
        Some(w) if w.role == Role::Submitter => (
            Code::PermissionDenied,
            "A submitter credential cannot sign in to the console: sign in with a registrar or admin token.",
        ),
        Some(w) => {
            tracing::info!(actor = %w.name, role = %w.role, "console sign-in");
            let id = c.sessions.start(w.clone());
            let mut r = redirect("/worklist");
            for cookie in [
                session::set_cookie(COOKIE, &id, c.secure, None),
                session::set_cookie(LOGIN_COOKIE, "", c.secure, Some(0)),
            ] {
                r = with_cookie(r, Some(cookie));
            }
            return r;
        }
    };
    if c.app
        .refused(who.as_ref(), LOGIN_OP, peer.0, code)
        .await
        .is_err()
    {
        return refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "The audit trail is unavailable; try again later.",
        );
    }
    let status = if code == Code::Unauthenticated {
        StatusCode::UNAUTHORIZED
    } else {
        StatusCode::FORBIDDEN
    };
    refuse(status, why)
}

pub async fn logout(
    State(c): Shared,
    peer: PeerAddr,
    headers: HeaderMap,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Response {
    let (desk, _) = step!(posted(&c, &headers, peer, form, "ConsoleLogout").await);
    c.sessions.end(&desk.id);
    tracing::info!(actor = %desk.caller.identity.name, "console sign-out");
    with_cookie(
        redirect(if c.auth_on() { "/login" } else { "/worklist" }),
        Some(session::set_cookie(COOKIE, "", c.secure, Some(0))),
    )
}

// ---- worklist ----------------------------------------------------------------------------

pub async fn worklist(
    State(c): Shared,
    peer: PeerAddr,
    headers: HeaderMap,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Response {
    let desk = step!(desk(&c, &headers, peer).await);
    let f = Fields(query.map(|Query(q)| q).unwrap_or_default());
    let request = forms::worklist(&f);
    let shown = request.as_ref().ok().cloned().unwrap_or_default();
    match c.app.review_worklist(&desk.caller, request).await {
        Ok(list) => {
            let page = pages::worklist(&desk.frame(&c), &list, &shown, UnixMillis::now());
            desk.page(page)
        }
        Err(e) => desk.failure(&c, &e, Some("/worklist")),
    }
}

pub async fn bulk_ask(
    State(c): Shared,
    peer: PeerAddr,
    headers: HeaderMap,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Response {
    let (desk, f) = step!(posted(&c, &headers, peer, form, "ResolveReviewTask").await);
    match forms::tasks(&f, pages::MAX_BULK) {
        Ok(tasks) => {
            let page = pages::bulk_confirm(&desk.frame(&c), &tasks);
            desk.page(page)
        }
        Err(e) => desk.failure(&c, &e, Some("/worklist")),
    }
}

pub async fn bulk_confirm(
    State(c): Shared,
    peer: PeerAddr,
    headers: HeaderMap,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Response {
    let (desk, f) = step!(posted(&c, &headers, peer, form, "ResolveReviewTask").await);
    let tasks = match forms::tasks(&f, pages::MAX_BULK) {
        Ok(t) => t,
        Err(e) => return desk.failure(&c, &e, Some("/worklist")),
    };
    let by = match forms::attribution(&f, &desk.caller.identity.name) {
        Ok(by) => by,
        Err(e) => return desk.failure(&c, &e, Some("/worklist")),
    };
    // One resolution per task, each its own audited call: a task resolved meanwhile by
    // someone else is reported, the others go ahead.
    let mut outcomes = Vec::with_capacity(tasks.len());
    for task in tasks {
        let request = ResolveReviewTask {
            task,
            action: ResolutionAction::KeepSeparate,
            by: by.clone(),
        };
        let result = c.app.resolve_review_task(&desk.caller, Ok(request)).await;
        outcomes.push((task, result.map(drop).map_err(|e| e.to_string())));
    }
    let page = pages::bulk_done(&desk.frame(&c), &outcomes);
    desk.page(page)
}

// ---- tasks -------------------------------------------------------------------------------

pub async fn task(
    State(c): Shared,
    peer: PeerAddr,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let desk = step!(desk(&c, &headers, peer).await);
    match c
        .app
        .review_task_detail(&desk.caller, forms::path_task(&id))
        .await
    {
        Ok(detail) => {
            let page = pages::task(&desk.frame(&c), &detail, detail.prev, detail.next);
            desk.page(page)
        }
        Err(e) => desk.failure(&c, &e, Some("/worklist")),
    }
}

/// The next open task after this one (skip, and where a resolution leads).
pub async fn skip(
    State(c): Shared,
    peer: PeerAddr,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let desk = step!(desk(&c, &headers, peer).await);
    let query = forms::path_task(&id).map(|after| TaskQuery {
        open: Some(true),
        after: Some(after),
        page_size: 1,
        ..TaskQuery::default()
    });
    // A message left by the action that led here is for the page this leads to.
    let flash = desk.session.flash.clone();
    match c.app.list_review_tasks(&desk.caller, query).await {
        Ok((tasks, _)) => {
            let to = match tasks.first() {
                Some(t) => format!("/tasks/{}", t.task.id),
                None => "/worklist".into(),
            };
            match flash {
                Some(m) => desk.done(&c, m, &to),
                None if to == "/worklist" => {
                    desk.done(&c, "No open task after this one.".into(), &to)
                }
                None => desk.go(&to),
            }
        }
        Err(e) => desk.failure(&c, &e, Some("/worklist")),
    }
}

fn resolved_words(task: TaskId, action: &ResolutionAction) -> String {
    match action {
        ResolutionAction::Link { euid } => format!("Task {task}: record linked to {euid}."),
        ResolutionAction::Merge { into } => format!("Task {task}: persons merged into {into}."),
        ResolutionAction::KeepSeparate => format!("Task {task}: kept separate."),
        ResolutionAction::Superseded => format!("Task {task}: superseded."),
    }
}

pub async fn resolve(
    State(c): Shared,
    peer: PeerAddr,
    headers: HeaderMap,
    Path(id): Path<String>,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Response {
    let (desk, f) = step!(posted(&c, &headers, peer, form, "ResolveReviewTask").await);
    let back = format!("/tasks/{id}");
    let request = forms::path_task(&id)
        .and_then(|task| forms::resolution(task, &f, &desk.caller.identity.name));
    match c.app.resolve_review_task(&desk.caller, request).await {
        Ok((view, _)) => {
            let action = match &view.task.status {
                crate::store::TaskStatus::Resolved(r) => r.action.clone(),
                crate::store::TaskStatus::Open => ResolutionAction::Superseded,
            };
            let words = resolved_words(view.task.id, &action);
            desk.done(&c, words, &format!("/tasks/{}/skip", view.task.id))
        }
        Err(e) => desk.failure(&c, &e, Some(&back)),
    }
}

// ---- persons -----------------------------------------------------------------------------

pub async fn person(
    State(c): Shared,
    peer: PeerAddr,
    headers: HeaderMap,
    Path(euid): Path<String>,
) -> Response {
    let desk = step!(desk(&c, &headers, peer).await);
    match c
        .app
        .get_person(&desk.caller, forms::path_euid(&euid))
        .await
    {
        Ok(view) => {
            let page = pages::person(&desk.frame(&c), &view);
            desk.page(page)
        }
        Err(e) => desk.failure(&c, &e, Some("/search")),
    }
}

pub async fn unlink(
    State(c): Shared,
    peer: PeerAddr,
    headers: HeaderMap,
    Path(euid): Path<String>,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Response {
    let (desk, f) = step!(posted(&c, &headers, peer, form, "Unlink").await);
    let back = format!("/persons/{euid}");
    let request = forms::unlink(&f, &desk.caller.identity.name);
    match c.app.unlink(&desk.caller, request).await {
        Ok(moved) => {
            let words = format!("Record moved out into new person {}.", moved.to);
            desk.done(&c, words, &back)
        }
        Err(e) => desk.failure(&c, &e, Some(&back)),
    }
}

pub async fn split(
    State(c): Shared,
    peer: PeerAddr,
    headers: HeaderMap,
    Path(euid): Path<String>,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Response {
    let (desk, f) = step!(posted(&c, &headers, peer, form, "SplitPerson").await);
    let back = format!("/persons/{euid}");
    let request =
        forms::path_euid(&euid).and_then(|e| forms::split(e, &f, &desk.caller.identity.name));
    match c.app.split_person(&desk.caller, request).await {
        Ok(split) => {
            let words = format!("Records split off into new person {}.", split.new_euid);
            desk.done(&c, words, &back)
        }
        Err(e) => desk.failure(&c, &e, Some(&back)),
    }
}

pub async fn merge_preview(
    State(c): Shared,
    peer: PeerAddr,
    headers: HeaderMap,
    Path(euid): Path<String>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Response {
    let desk = step!(desk(&c, &headers, peer).await);
    let f = Fields(query.map(|Query(q)| q).unwrap_or_default());
    let back = format!("/persons/{euid}");
    let request =
        forms::path_euid(&euid).and_then(|e| forms::merge(e, &f, &desk.caller.identity.name));
    match c.app.preview_merge(&desk.caller, request).await {
        Ok(preview) => {
            let page = pages::merge_preview(&desk.frame(&c), &preview);
            desk.page(page)
        }
        Err(e) => desk.failure(&c, &e, Some(&back)),
    }
}

pub async fn merge(
    State(c): Shared,
    peer: PeerAddr,
    headers: HeaderMap,
    Path(euid): Path<String>,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Response {
    let (desk, f) = step!(posted(&c, &headers, peer, form, "MergePersons").await);
    let back = format!("/persons/{euid}");
    let request =
        forms::path_euid(&euid).and_then(|e| forms::merge(e, &f, &desk.caller.identity.name));
    match c.app.merge_persons(&desk.caller, request).await {
        Ok(merged) => {
            let words = format!(
                "Merged: {} records moved into {}.",
                merged.records_moved, merged.survivor
            );
            desk.done(&c, words, &format!("/persons/{}", merged.survivor))
        }
        Err(e) => desk.failure(&c, &e, Some(&back)),
    }
}

// ---- search and help ---------------------------------------------------------------------

pub async fn search_page(State(c): Shared, peer: PeerAddr, headers: HeaderMap) -> Response {
    let desk = step!(desk(&c, &headers, peer).await);
    let page = pages::search(&desk.frame(&c), None);
    desk.page(page)
}

pub async fn search(
    State(c): Shared,
    peer: PeerAddr,
    headers: HeaderMap,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Response {
    let (desk, f) = step!(posted(&c, &headers, peer, form, "SearchPersons").await);
    match c.app.search_persons(&desk.caller, forms::search(&f)).await {
        Ok(hits) => {
            let page = pages::search(&desk.frame(&c), Some(&hits));
            desk.page(page)
        }
        Err(e) => desk.failure(&c, &e, Some("/search")),
    }
}

pub async fn help(State(c): Shared, peer: PeerAddr, headers: HeaderMap) -> Response {
    let desk = step!(desk(&c, &headers, peer).await);
    let page = pages::help(&desk.frame(&c));
    desk.page(page)
}
