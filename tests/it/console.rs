//! The registrar console over HTTP, in process, with a small HTTP/1.1 client: sign-in and
//! roles, CSRF, session expiry, two registrars on one task, bad form input, search by
//! post, person actions, and every action in history and the audit trail.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use empi::app::{App, Caller, Submit};
use empi::auth::{audit, tokens, AuditEntry, AuditLog, AuditOutcome, AuthMode, Credentials, Role};
use empi::console::forms::percent_encode;
use empi::console::{Console, ConsoleConfig};
use empi::linker::Linker;
use empi::record::{Address, Record};
use empi::service::{Service, ServiceConfig};
use empi::store::{Euid, MemoryStore, ResolutionAction, TaskId, TaskStatus};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_rustls::rustls;

/// One HTTP answer.
#[derive(Debug)]
pub(crate) struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The value of the first hidden `csrf` field.
    pub fn csrf(&self) -> String {
        let at = self
            .body
            .find(r#"name="csrf" value=""#)
            .expect("a csrf field");
        let rest = &self.body[at + r#"name="csrf" value=""#.len()..];
        rest[..rest.find('"').unwrap()].to_string()
    }
}

/// A browser: a cookie jar, every request over a fresh connection (plain or TLS).
pub(crate) struct Browser {
    port: u16,
    tls: Option<Arc<rustls::ClientConfig>>,
    cookies: HashMap<String, String>,
    /// Every address requested, to check none carries patient data.
    pub visited: Vec<String>,
    /// Every `Set-Cookie` received.
    pub set_cookies: Vec<String>,
}

impl Browser {
    pub fn new(port: u16) -> Self {
        Browser {
            port,
            tls: None,
            cookies: HashMap::new(),
            visited: Vec::new(),
            set_cookies: Vec::new(),
        }
    }

    /// A browser trusting `ca_pem` for TLS to `localhost`.
    pub fn tls(port: u16, ca_pem: &str) -> Self {
        use rustls::pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(rustls::pki_types::CertificateDer::from_pem_slice(ca_pem.as_bytes()).unwrap())
            .unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        Browser {
            tls: Some(Arc::new(config)),
            ..Browser::new(port)
        }
    }

    pub async fn get(&mut self, path: &str) -> Reply {
        self.send("GET", path, None, "127.0.0.1").await
    }

    pub async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Reply {
        let body: Vec<String> = form
            .iter()
            .map(|(k, v)| format!("{}={}", percent_encode(k), percent_encode(v)))
            .collect();
        self.send("POST", path, Some(body.join("&")), "127.0.0.1")
            .await
    }

    /// Follows one redirect, if the answer is one.
    pub async fn follow(&mut self, r: Reply) -> Reply {
        match (r.status, r.header("location")) {
            (301..=303, Some(to)) => {
                let to = to.to_string();
                self.get(&to).await
            }
            _ => r,
        }
    }

    pub async fn send(
        &mut self,
        method: &str,
        path: &str,
        body: Option<String>,
        host: &str,
    ) -> Reply {
        self.visited.push(path.to_string());
        let cookies: Vec<String> = self
            .cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {host}:{}\r\nConnection: close\r\n",
            self.port
        );
        if !cookies.is_empty() {
            req.push_str(&format!("Cookie: {}\r\n", cookies.join("; ")));
        }
        let body = body.unwrap_or_default();
        if method == "POST" {
            req.push_str("Content-Type: application/x-www-form-urlencoded\r\n");
            req.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        req.push_str("\r\n");
        req.push_str(&body);
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .unwrap();
        let raw = match &self.tls {
            Some(config) => {
                let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
                let tls = tokio_rustls::TlsConnector::from(Arc::clone(config))
                    .connect(name, tcp)
                    .await
                    .expect("TLS handshake");
                exchange(tls, req.as_bytes()).await
            }
            None => exchange(tcp, req.as_bytes()).await,
        };
        let reply = parse(&raw);
        for (k, v) in &reply.headers {
            if k.eq_ignore_ascii_case("set-cookie") {
                self.set_cookies.push(v.clone());
                let pair = v.split(';').next().unwrap_or("");
                if let Some((name, value)) = pair.split_once('=') {
                    if value.is_empty() || v.contains("Max-Age=0") {
                        self.cookies.remove(name);
                    } else {
                        self.cookies.insert(name.to_string(), value.to_string());
                    }
                }
            }
        }
        reply
    }

    /// Signs in with `token` through the login form; the answer to the form post.
    pub async fn sign_in(&mut self, token: &str) -> Reply {
        let form = self.get("/login").await;
        assert_eq!(form.status, 200);
        let csrf = form.csrf();
        self.post("/login", &[("csrf", &csrf), ("token", token)])
            .await
    }
}

async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(mut s: S, req: &[u8]) -> Vec<u8> {
    s.write_all(req).await.unwrap();
    s.flush().await.unwrap();
    let mut out = Vec::new();
    // A TLS peer may close without close_notify after the answer; what was read counts.
    let _ = s.read_to_end(&mut out).await;
    out
}

fn parse(raw: &[u8]) -> Reply {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP answer");
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_string()
    };
    Reply {
        status,
        headers,
        body,
    }
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        s = &rest[n + 2..];
    }
    out
}

// ---- the console under test ----------------------------------------------------------

/// A hand-made synthetic record of source `adt` (names no real person).
fn margaret(id: &str) -> Record {
    Record {
        source: "adt".into(),
        local_id: id.into(),
        given_name: Some("Margaret".into()),
        family_name: Some("Okonkwo".into()),
        birth_date: Some("1961-07-02".parse().unwrap()),
        phones: vec!["413-555-0142".into()],
        address: Address {
            lines: vec!["12 Elm St".into()],
            postal_code: Some("01852".into()),
            ..Default::default()
        },
        ..Default::default()
    }
}

/// Margaret's twin: a review, not a link.
fn twin(id: &str) -> Record {
    Record {
        given_name: Some("Olga".into()),
        ..margaret(id)
    }
}

/// Patient values of the records above, which must never appear in an address or a log.
const PHI: &[&str] = &[
    "Margaret",
    "Okonkwo",
    "Olga",
    "1961-07-02",
    "413-555-0142",
    "Elm St",
    "01852",
];

struct Desk {
    app: Arc<App>,
    port: u16,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<empi::Result<()>>,
    /// Tokens by name: `ann` and `bob` (registrars), `ops` (admin), `adt` (submitter).
    tokens: HashMap<&'static str, String>,
}

impl Desk {
    /// A console with authentication on over a memory store, the audit trail in `data`,
    /// holding one review task (T00000001: Olga's record against Margaret).
    async fn start(data: &Path, config: ConsoleConfig) -> Desk {
        let mut tokens = HashMap::new();
        for (name, role) in [
            ("ann", Role::Registrar),
            ("bob", Role::Registrar),
            ("ops", Role::Admin),
            ("adt", Role::Submitter),
        ] {
            let sources = if role == Role::Submitter {
                vec!["adt".to_string()]
            } else {
                vec![]
            };
            let (_, token) = tokens::create_token(data, name, role, &sources).unwrap();
            tokens.insert(name, token);
        }
        let auth = AuthMode::Required(Arc::new(Credentials::open(data).unwrap()));
        Self::with_auth(data, config, auth, tokens).await
    }

    async fn with_auth(
        data: &Path,
        config: ConsoleConfig,
        auth: AuthMode,
        tokens: HashMap<&'static str, String>,
    ) -> Desk {
        let service = Service::open(
            Arc::new(MemoryStore::new()),
            Linker::with_default_model(),
            ServiceConfig::default(),
        )
        .unwrap();
        let app = Arc::new(App::new(
            Arc::new(service),
            Some(Arc::new(AuditLog::open(data).unwrap())),
            None,
        ));
        let feed = Caller::new(empi::auth::Identity::local_dev(), None);
        for r in [margaret("1"), twin("2")] {
            let submitted = Submit {
                record: r,
                actor: "feed".into(),
            };
            app.match_or_create(&feed, Ok(submitted)).await.unwrap();
        }
        let console = Arc::new(Console::new(Arc::clone(&app), auth, &config, false));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(empi::console::serve(listener, console, None, async {
            let _ = stopped.await;
        }));
        Desk {
            app,
            port,
            stop,
            task,
            tokens,
        }
    }

    async fn browser(&self, who: &str) -> Browser {
        let mut b = Browser::new(self.port);
        let r = b.sign_in(&self.tokens[who]).await;
        assert_eq!(r.status, 303, "{who} signs in: {}", r.body);
        b
    }

    fn task(&self) -> empi::service::TaskView {
        self.app.service().get_task(TaskId(1)).unwrap()
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        self.task.await.unwrap().unwrap();
    }
}

fn lines(data: &Path) -> Vec<AuditEntry> {
    audit::read(data, None, None).unwrap().entries
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_registrars_on_one_task_the_second_is_told_who_and_nothing_changes() {
    let dir = tempfile::tempdir().unwrap();
    let desk = Desk::start(dir.path(), ConsoleConfig::default()).await;
    assert!(desk.task().task.is_open());
    let mut ann = desk.browser("ann").await;
    let mut bob = desk.browser("bob").await;
    let cookie = ann
        .set_cookies
        .iter()
        .find(|c| c.starts_with("empi_session="))
        .unwrap();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    assert!(!cookie.contains("Secure"), "plaintext: not Secure");

    let list = ann.get("/worklist").await;
    assert_eq!(list.status, 200);
    assert!(list.body.contains("T00000001") && list.body.contains("1 open review tasks"));
    for (h, v) in [
        ("x-frame-options", "DENY"),
        ("cache-control", "no-store"),
        ("x-content-type-options", "nosniff"),
    ] {
        assert_eq!(list.header(h), Some(v), "{h}");
    }
    let csp = list.header("content-security-policy").unwrap();
    assert!(csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"));
    assert!(!csp.contains("unsafe-inline"));

    let page_a = ann.get("/tasks/T00000001").await;
    let page_b = bob.get("/tasks/T00000001").await;
    assert_eq!((page_a.status, page_b.status), (200, 200));
    assert!(
        page_a.body.contains("a twin sharing the household"),
        "the reason in words"
    );
    assert!(
        page_a.body.contains("<mark>"),
        "differing characters highlighted"
    );
    assert!(
        page_a.body.contains(r#"class="agree""#),
        "agreeing fields dimmed"
    );
    let candidate = desk.task().candidates[0].euid.to_string();

    let done = ann
        .post(
            "/tasks/T00000001/resolve",
            &[
                ("csrf", &page_a.csrf()),
                ("action", "keep_separate"),
                ("comment", "twins, checked"),
            ],
        )
        .await;
    assert_eq!(done.status, 303);
    let next = ann.follow(done).await;
    let next = ann.follow(next).await;
    assert!(
        next.body.contains("Task T00000001: kept separate."),
        "{}",
        next.body
    );

    let late = bob
        .post(
            "/tasks/T00000001/resolve",
            &[
                ("csrf", &page_b.csrf()),
                ("action", "link"),
                ("euid", &candidate),
            ],
        )
        .await;
    assert_eq!(late.status, 409);
    assert!(
        late.body.contains("already resolved by ann at"),
        "{}",
        late.body
    );
    let task = desk.task();
    match &task.task.status {
        TaskStatus::Resolved(r) => {
            assert_eq!(r.action, ResolutionAction::KeepSeparate);
            assert_eq!(
                (r.actor.as_str(), r.reason.as_str()),
                ("ann", "twins, checked")
            );
        }
        TaskStatus::Open => panic!("resolved"),
    }
    assert_ne!(
        task.record_euid.as_ref().map(Euid::to_string),
        Some(candidate.clone())
    );
    // History and the audit trail name the registrar.
    let person = desk
        .app
        .service()
        .get_person(task.record_euid.as_ref().unwrap())
        .unwrap();
    assert!(person.history.iter().any(|h| h.actor == "ann"));
    assert!(!person.history.iter().any(|h| h.actor == "bob"));
    desk.stop().await;
    let entries = lines(dir.path());
    let resolutions: Vec<(&str, AuditOutcome)> = entries
        .iter()
        .filter(|e| e.operation == "ResolveReviewTask")
        .map(|e| (e.actor.as_str(), e.outcome))
        .collect();
    assert_eq!(
        resolutions,
        [("ann", AuditOutcome::Ok), ("bob", AuditOutcome::Error)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_post_needs_the_session_csrf_token() {
    let dir = tempfile::tempdir().unwrap();
    let desk = Desk::start(dir.path(), ConsoleConfig::default()).await;
    let mut ann = desk.browser("ann").await;
    let page = ann.get("/tasks/T00000001").await;
    let euid = desk.task().candidates[0].euid.to_string();
    let own = desk.task().record_euid.unwrap().to_string();
    let posts: Vec<(String, Vec<(&str, &str)>)> = vec![
        (
            "/tasks/T00000001/resolve".into(),
            vec![("action", "link"), ("euid", &euid)],
        ),
        (
            "/worklist/keep-separate/confirm".into(),
            vec![("task", "T00000001")],
        ),
        (format!("/persons/{own}/merge"), vec![("into", &euid)]),
        (format!("/persons/{own}/unlink"), vec![("record", "adt/2")]),
        ("/search".into(), vec![("family_name", "Okonkwo")]),
        ("/logout".into(), vec![]),
    ];
    for (path, form) in &posts {
        let r = ann.post(path, form).await;
        assert_eq!(r.status, 403, "{path} without a token");
        let mut wrong = form.clone();
        wrong.push(("csrf", "0123"));
        let r = ann.post(path, &wrong).await;
        assert_eq!(r.status, 403, "{path} with a wrong token");
        assert!(r.body.contains("CSRF"));
    }
    // Another session's token is no good either.
    let mut bob = desk.browser("bob").await;
    let bobs = bob.get("/worklist").await.csrf();
    let r = ann
        .post(
            "/tasks/T00000001/resolve",
            &[("csrf", &bobs), ("action", "keep_separate")],
        )
        .await;
    assert_eq!(r.status, 403);
    assert!(desk.task().task.is_open(), "nothing changed");
    assert_eq!(ann.get("/worklist").await.status, 200, "still signed in");
    // The right token works.
    let r = ann
        .post(
            "/tasks/T00000001/resolve",
            &[("csrf", &page.csrf()), ("action", "keep_separate")],
        )
        .await;
    assert_eq!(r.status, 303);
    desk.stop().await;
    let refused = lines(dir.path())
        .into_iter()
        .filter(|e| e.outcome == AuditOutcome::Denied && e.actor == "ann")
        .count();
    assert_eq!(refused, 2 * posts.len() + 1, "every refusal audited");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_expire_end_at_logout_and_at_revocation() {
    let dir = tempfile::tempdir().unwrap();
    let instant = ConsoleConfig {
        idle: Duration::ZERO,
        ..ConsoleConfig::default()
    };
    let desk = Desk::start(dir.path(), instant).await;
    let mut ann = desk.browser("ann").await;
    let r = ann.get("/worklist").await;
    assert_eq!(
        (r.status, r.header("location")),
        (303, Some("/login?expired=1"))
    );
    let r = ann.follow(r).await;
    assert!(r.body.contains("Your session ended"));
    desk.stop().await;

    let dir = tempfile::tempdir().unwrap();
    let desk = Desk::start(dir.path(), ConsoleConfig::default()).await;
    let mut ann = desk.browser("ann").await;
    let csrf = ann.get("/worklist").await.csrf();
    let out = ann.post("/logout", &[("csrf", &csrf)]).await;
    assert_eq!((out.status, out.header("location")), (303, Some("/login")));
    assert_eq!(ann.get("/worklist").await.status, 303, "signed out");

    let mut bob = desk.browser("bob").await;
    assert_eq!(bob.get("/worklist").await.status, 200);
    tokens::revoke(dir.path(), "bob").unwrap();
    let r = bob.get("/worklist").await;
    assert_eq!(
        (r.status, r.header("location")),
        (303, Some("/login?expired=1"))
    );
    desk.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_registrars_and_admins_sign_in_and_without_auth_it_is_local_dev() {
    let dir = tempfile::tempdir().unwrap();
    let desk = Desk::start(dir.path(), ConsoleConfig::default()).await;
    let mut adt = Browser::new(desk.port);
    let r = adt.sign_in(&desk.tokens["adt"]).await;
    assert_eq!(r.status, 403);
    assert!(r.body.contains("A submitter credential cannot sign in"));
    assert!(!adt.cookies.contains_key("empi_session"));
    assert_eq!(adt.get("/worklist").await.status, 303, "not signed in");
    let mut nobody = Browser::new(desk.port);
    let r = nobody.sign_in("empi_0000").await;
    assert_eq!(r.status, 401);
    // A login post without the form's own token is refused.
    let r = nobody
        .post("/login", &[("token", &desk.tokens["ann"])])
        .await;
    assert_eq!(r.status, 403);
    let mut ops = desk.browser("ops").await;
    assert!(ops.get("/worklist").await.body.contains("(admin)"));
    desk.stop().await;
    let refusals: Vec<(String, AuditOutcome)> = lines(dir.path())
        .into_iter()
        .filter(|e| e.operation == "ConsoleLogin")
        .map(|e| (e.actor, e.outcome))
        .collect();
    assert_eq!(refusals.len(), 2, "{refusals:?}");
    assert_eq!(refusals[0], ("adt".to_string(), AuditOutcome::Denied));
    assert_eq!(refusals[1].1, AuditOutcome::Unauthenticated);

    let dir = tempfile::tempdir().unwrap();
    let desk = Desk::with_auth(
        dir.path(),
        ConsoleConfig::default(),
        AuthMode::Disabled,
        HashMap::new(),
    )
    .await;
    let mut local = Browser::new(desk.port);
    let r = local.get("/worklist").await;
    assert_eq!(r.status, 200);
    assert!(r.body.contains("local-dev") && r.body.contains("(admin)"));
    assert!(!r.body.contains("Sign out"), "nothing to sign out of");
    assert_eq!(local.get("/login").await.status, 303);
    let csrf = r.csrf();
    let done = local
        .post(
            "/tasks/T00000001/resolve",
            &[("csrf", &csrf), ("action", "keep_separate")],
        )
        .await;
    assert_eq!(done.status, 303);
    // Reached through another host name (DNS rebinding): refused.
    let r = local.send("GET", "/worklist", None, "evil.example").await;
    assert_eq!(r.status, 421);
    desk.stop().await;
    let history = lines(dir.path());
    assert!(history
        .iter()
        .any(|e| e.operation == "ResolveReviewTask" && e.actor == "local-dev"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_form_input_is_named_never_echoed_and_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let desk = Desk::start(dir.path(), ConsoleConfig::default()).await;
    let mut ann = desk.browser("ann").await;
    let csrf = ann.get("/search").await.csrf();
    let own = desk.task().record_euid.unwrap().to_string();
    let long = "Okonkwo ".repeat(200);
    // (address, form, the field the message names, a value it must not echo)
    type Case<'a> = (String, Vec<(&'a str, &'a str)>, &'a str, &'a str);
    let cases: Vec<Case> = vec![
        (
            "/search".into(),
            vec![("birth_date", "1961-13-45")],
            "birth_date",
            "1961-13-45",
        ),
        ("/search".into(), vec![("given_name", " ")], "search", ""),
        (
            "/tasks/T00000001/resolve".into(),
            vec![("action", "link"), ("euid", "Okonkwo")],
            "euid",
            "Okonkwo",
        ),
        (
            "/tasks/T00000001/resolve".into(),
            vec![("action", "keep_separate"), ("comment", &long)],
            "comment",
            "Okonkwo",
        ),
        (
            "/tasks/T00000001/resolve".into(),
            vec![("action", "Margaret")],
            "action",
            "Margaret",
        ),
        (
            format!("/persons/{own}/unlink"),
            vec![("record", "Margaret")],
            "record",
            "Margaret",
        ),
        (
            format!("/persons/{own}/merge"),
            vec![("into", "Margaret")],
            "into",
            "Margaret",
        ),
        (format!("/persons/{own}/split"), vec![], "record", ""),
        (
            "/worklist/keep-separate".into(),
            vec![("task", "Olga")],
            "task",
            "Olga",
        ),
    ];
    for (path, mut form, field, typed) in cases {
        form.push(("csrf", &csrf));
        let r = ann.post(&path, &form).await;
        assert_eq!(r.status, 400, "{path} {field}: {}", r.body);
        assert!(r.body.contains(field), "{path}: names {field}");
        if !typed.is_empty() {
            assert!(!r.body.contains(typed), "{path}: never echoes the value");
        }
    }
    let r = ann.get("/worklist?reason=Olga").await;
    assert_eq!(r.status, 400);
    assert!(r.body.contains("reason") && !r.body.contains("Olga"));
    assert!(desk.task().task.is_open(), "nothing stored");
    let stats = desk.app.service().stats().unwrap();
    assert_eq!((stats.records, stats.persons), (2, 2));
    desk.stop().await;
    let audit = std::fs::read_to_string(dir.path().join("auth").join("audit.jsonl")).unwrap();
    for phi in PHI {
        assert!(!audit.contains(phi), "{phi} in the audit trail");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_is_posted_and_person_actions_land_in_history() {
    let dir = tempfile::tempdir().unwrap();
    let desk = Desk::start(dir.path(), ConsoleConfig::default()).await;
    let mut ann = desk.browser("ann").await;
    let csrf = ann.get("/search").await.csrf();
    // A misspelt family name still finds Margaret.
    let r = ann
        .post(
            "/search",
            &[
                ("csrf", &csrf),
                ("family_name", "Okonkow"),
                ("birth_date", "1961-07-02"),
            ],
        )
        .await;
    assert_eq!(r.status, 200);
    let task = desk.task();
    let margaret = task.candidates[0].euid.to_string();
    let olga = task.record_euid.clone().unwrap().to_string();
    assert!(r.body.contains(&format!("/persons/{margaret}")), "found");

    // Merge preview, then the merge.
    let preview = ann
        .get(&format!("/persons/{olga}/merge-preview?into={margaret}"))
        .await;
    assert_eq!(preview.status, 200);
    assert!(preview.body.contains("Afterwards"));
    let merged = ann
        .post(
            &format!("/persons/{olga}/merge"),
            &[
                ("csrf", &csrf),
                ("into", &margaret),
                ("comment", "same patient"),
            ],
        )
        .await;
    assert_eq!(merged.status, 303);
    let page = ann.follow(merged).await;
    assert!(
        page.body.contains("Merged: 1 records moved"),
        "{}",
        page.body
    );
    assert!(page.body.contains("adt"), "records by source");
    // Split one record off again, then unlink is refused for its only record.
    let split = ann
        .post(
            &format!("/persons/{margaret}/split"),
            &[
                ("csrf", &csrf),
                ("record", "adt/2"),
                ("comment", "twins after all"),
            ],
        )
        .await;
    assert_eq!(split.status, 303);
    let page = ann.follow(split).await;
    assert!(page.body.contains("Records split off into new person"));
    let view = desk
        .app
        .service()
        .get_person(&margaret.parse().unwrap())
        .unwrap();
    assert_eq!(view.records.len(), 1);
    let whats: Vec<(&str, &str)> = view
        .history
        .iter()
        .map(|h| (h.actor.as_str(), h.reason.as_str()))
        .collect();
    assert!(whats.contains(&("ann", "same patient")), "{whats:?}");
    assert!(whats.contains(&("ann", "twins after all")), "{whats:?}");
    let r = ann
        .post(
            &format!("/persons/{margaret}/unlink"),
            &[("csrf", &csrf), ("record", "adt/1")],
        )
        .await;
    assert_eq!(r.status, 409, "a person's only record stays");
    // No address the console led to carries patient data.
    for page in [
        "/worklist",
        "/tasks/T00000001",
        &format!("/persons/{margaret}"),
    ] {
        let body = ann.get(page).await.body;
        for attr in ["href=\"", "action=\""] {
            for (at, _) in body.match_indices(attr) {
                let url = &body[at + attr.len()..];
                let url = &url[..url.find('"').unwrap()];
                for phi in PHI {
                    assert!(!url.contains(phi), "{phi} in {url}");
                }
            }
        }
    }
    for url in &ann.visited {
        for phi in PHI {
            assert!(!url.contains(phi), "{phi} in {url}");
        }
    }
    desk.stop().await;
    let entries = lines(dir.path());
    let ops: Vec<&str> = entries
        .iter()
        .filter(|e| e.actor == "ann")
        .map(|e| e.operation.as_str())
        .collect();
    for op in [
        "SearchPersons",
        "GetPerson",
        "MergePersons",
        "SplitPerson",
        "Unlink",
        "ListReviewTasks",
    ] {
        assert!(ops.contains(&op), "{op} audited: {ops:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_keep_separate_asks_first_then_resolves_each() {
    let dir = tempfile::tempdir().unwrap();
    let desk = Desk::start(dir.path(), ConsoleConfig::default()).await;
    let mut ann = desk.browser("ann").await;
    let csrf = ann.get("/worklist").await.csrf();
    let ask = ann
        .post(
            "/worklist/keep-separate",
            &[("csrf", &csrf), ("task", "T00000001")],
        )
        .await;
    assert_eq!(ask.status, 200);
    assert!(ask.body.contains("Keep 1 tasks separate?"));
    assert!(desk.task().task.is_open(), "asking changes nothing");
    let done = ann
        .post(
            "/worklist/keep-separate/confirm",
            &[
                ("csrf", &csrf),
                ("task", "T00000001"),
                ("task", "T00000099"),
            ],
        )
        .await;
    assert_eq!(done.status, 200);
    assert!(
        done.body.contains("1 of 2 tasks kept separate"),
        "{}",
        done.body
    );
    assert!(done.body.contains("review task T00000099 not found"));
    assert!(!desk.task().task.is_open());
    // Remembered for automatic matching: the two persons are asserted different people.
    let task = desk.task();
    let asserted = desk
        .app
        .service()
        .store()
        .not_duplicate(task.record_euid.as_ref().unwrap(), &task.candidates[0].euid)
        .unwrap();
    assert_eq!(asserted.map(|a| a.actor), Some("ann".to_string()));
    desk.stop().await;
}
