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
fn peer_of(parts: &Parts) -> Option<String> {
    parts
        .extensions
        .get::<ConnectInfo<Peer>>()
        .map(|i| i.0 .0.to_string())
}

/// Where a request came from, for handlers without a session (sign-in).
pub struct PeerAddr(Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for PeerAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(PeerAddr(peer_of(parts)))
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
/// authentication is off; otherwise (the rejection) a redirect to the login form.
impl FromRequestParts<Arc<Console>> for Desk {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        c: &Arc<Console>,
    ) -> Result<Self, Self::Rejection> {
        let peer = peer_of(parts);
        let id = parts
            .headers
            .get(header::COOKIE)
            .and_then(|h| h.to_str().ok())
            .and_then(|h| session::cookie(h, COOKIE))
            .unwrap_or("")
            .to_string();
        let (session, id, cookie) = match (c.sessions.touch(&id, &c.auth), &c.auth) {
            (Ok(session), _) => (session, id, None),
            (Err(_), AuthMode::Disabled) => {
                let id = c.sessions.start(Identity::local_dev());
                let session = c
                    .sessions
                    .touch(&id, &c.auth)
                    .map_err(|_| redirect("/login"))?;
                let cookie = session::set_cookie(COOKIE, &id, c.secure, None);
                (session, id, Some(cookie))
            }
            (Err(NoSession::Expired), AuthMode::Required(_)) => {
                return Err(redirect("/login?expired=1"))
            }
            (Err(NoSession::Missing), AuthMode::Required(_)) => return Err(redirect("/login")),
        };
        Ok(Desk {
            caller: Caller::new(session.identity.clone(), peer),
            session,
            id,
            cookie,
        })
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

    /// The page `render` makes of a call's answer, or the page explaining its failure
    /// (with a way `back`).
    fn show<T>(
        self,
        c: &Console,
        answer: crate::Result<T>,
        back: &str,
        render: impl FnOnce(&Frame<'_>, T) -> Markup,
    ) -> Response {
        match answer {
            Ok(v) => {
                let page = render(&self.frame(c), v);
                self.page(page)
            }
            Err(e) => self.failure(c, &e, Some(back)),
        }
    }

    /// After an action: `done` says what it did and where to go next, or the page
    /// explains its failure (with a way `back`).
    fn acted<T>(
        self,
        c: &Console,
        answer: crate::Result<T>,
        back: &str,
        done: impl FnOnce(T) -> (String, String),
    ) -> Response {
        match answer {
            Ok(v) => {
                let (words, to) = done(v);
                self.done(c, words, &to)
            }
            Err(e) => self.failure(c, &e, Some(back)),
        }
    }

    /// The fields of a post, once its CSRF token is checked.
    async fn posted(&self, c: &Console, form: Posted, operation: &str) -> Result<Fields, Response> {
        let f = fields(form)?;
        self.csrf(c, &f, operation).await?;
        Ok(f)
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

/// A posted form as axum reads it.
type Posted = Result<Form<Vec<(String, String)>>, FormRejection>;

/// A form body, or the page saying it could not be read.
fn fields(form: Posted) -> Result<Fields, Response> {
    form.map(|Form(v)| Fields(v))
        .map_err(|_| (StatusCode::BAD_REQUEST, "the form could not be read").into_response())
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

pub async fn login(State(c): Shared, peer: PeerAddr, headers: HeaderMap, form: Posted) -> Response {
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

pub async fn logout(State(c): Shared, desk: Desk, form: Posted) -> Response {
    step!(desk.posted(&c, form, "ConsoleLogout").await);
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
    desk: Desk,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Response {
    let f = Fields(query.map(|Query(q)| q).unwrap_or_default());
    let request = forms::worklist(&f);
    let shown = request.as_ref().ok().cloned().unwrap_or_default();
    let answer = c.app.review_worklist(&desk.caller, request).await;
    desk.show(&c, answer, "/worklist", |frame, list| {
        pages::worklist(frame, &list, &shown, UnixMillis::now())
    })
}

pub async fn bulk_ask(State(c): Shared, desk: Desk, form: Posted) -> Response {
    let f = step!(desk.posted(&c, form, "ResolveReviewTask").await);
    match forms::tasks(&f, pages::MAX_BULK) {
        Ok(tasks) => {
            let page = pages::bulk_confirm(&desk.frame(&c), &tasks);
            desk.page(page)
        }
        Err(e) => desk.failure(&c, &e, Some("/worklist")),
    }
}

pub async fn bulk_confirm(State(c): Shared, desk: Desk, form: Posted) -> Response {
    let f = step!(desk.posted(&c, form, "ResolveReviewTask").await);
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

pub async fn task(State(c): Shared, desk: Desk, Path(id): Path<String>) -> Response {
    let answer = c
        .app
        .review_task_detail(&desk.caller, forms::path_task(&id))
        .await;
    desk.show(&c, answer, "/worklist", |frame, detail| {
        pages::task(frame, &detail, detail.prev, detail.next)
    })
}

/// The next open task after this one (skip, and where a resolution leads).
pub async fn skip(State(c): Shared, desk: Desk, Path(id): Path<String>) -> Response {
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
    desk: Desk,
    Path(id): Path<String>,
    form: Posted,
) -> Response {
    let f = step!(desk.posted(&c, form, "ResolveReviewTask").await);
    let back = format!("/tasks/{id}");
    let request = forms::path_task(&id)
        .and_then(|task| forms::resolution(task, &f, &desk.caller.identity.name));
    let answer = c.app.resolve_review_task(&desk.caller, request).await;
    desk.acted(&c, answer, &back, |(view, _)| {
        let action = match &view.task.status {
            crate::store::TaskStatus::Resolved(r) => r.action.clone(),
            crate::store::TaskStatus::Open => ResolutionAction::Superseded,
        };
        let words = resolved_words(view.task.id, &action);
        (words, format!("/tasks/{}/skip", view.task.id))
    })
}

// ---- persons -----------------------------------------------------------------------------

pub async fn person(State(c): Shared, desk: Desk, Path(euid): Path<String>) -> Response {
    let answer = c
        .app
        .get_person(&desk.caller, forms::path_euid(&euid))
        .await;
    desk.show(&c, answer, "/search", |frame, view| {
        pages::person(frame, &view)
    })
}

/// Unlink, split and merge, posted from the person page (`/persons/{euid}/{action}`).
pub async fn person_action(
    State(c): Shared,
    desk: Desk,
    Path((euid, action)): Path<(String, String)>,
    form: Posted,
) -> Response {
    let op = match action.as_str() {
        "unlink" => "Unlink",
        "split" => "SplitPerson",
        "merge" => "MergePersons",
        _ => return not_found().await,
    };
    let f = step!(desk.posted(&c, form, op).await);
    let back = format!("/persons/{euid}");
    let (who, person) = (desk.caller.identity.name.clone(), forms::path_euid(&euid));
    let done = match op {
        "Unlink" => c
            .app
            .unlink(&desk.caller, forms::unlink(&f, &who))
            .await
            .map(|m| {
                (
                    format!("Record moved out into new person {}.", m.to),
                    back.clone(),
                )
            }),
        "SplitPerson" => {
            let request = person.and_then(|e| forms::split(e, &f, &who));
            c.app.split_person(&desk.caller, request).await.map(|s| {
                let words = format!("Records split off into new person {}.", s.new_euid);
                (words, back.clone())
            })
        }
        _ => {
            let request = person.and_then(|e| forms::merge(e, &f, &who));
            c.app.merge_persons(&desk.caller, request).await.map(|m| {
                let words = format!(
                    "Merged: {} records moved into {}.",
                    m.records_moved, m.survivor
                );
                (words, format!("/persons/{}", m.survivor))
            })
        }
    };
    desk.acted(&c, done, &back, |d| d)
}

pub async fn merge_preview(
    State(c): Shared,
    desk: Desk,
    Path(euid): Path<String>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Response {
    let f = Fields(query.map(|Query(q)| q).unwrap_or_default());
    let back = format!("/persons/{euid}");
    let request =
        forms::path_euid(&euid).and_then(|e| forms::merge(e, &f, &desk.caller.identity.name));
    let answer = c.app.preview_merge(&desk.caller, request).await;
    desk.show(&c, answer, &back, |frame, preview| {
        pages::merge_preview(frame, &preview)
    })
}

// ---- search and help ---------------------------------------------------------------------

pub async fn search_page(State(c): Shared, desk: Desk) -> Response {
    let page = pages::search(&desk.frame(&c), None);
    desk.page(page)
}

pub async fn search(State(c): Shared, desk: Desk, form: Posted) -> Response {
    let f = step!(desk.posted(&c, form, "SearchPersons").await);
    let answer = c.app.search_persons(&desk.caller, forms::search(&f)).await;
    desk.show(&c, answer, "/search", |frame, hits| {
        pages::search(frame, Some(&hits))
    })
}

pub async fn help(State(c): Shared, desk: Desk) -> Response {
    let page = pages::help(&desk.frame(&c));
    desk.page(page)
}
