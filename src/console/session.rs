//! Console sessions: a registrar or admin token exchanged at the login form for a random
//! session id kept in a cookie, with a CSRF token for every state-changing form.
//!
//! - The cookie is `HttpOnly`, `SameSite=Strict`, `Path=/`, and `Secure` under TLS. It holds
//!   only the random id; sessions live in memory, keyed by the id's SHA-256, so a restart
//!   ends them all.
//! - A session ends after [`super::ConsoleConfig::idle`] without a request, after
//!   [`super::ConsoleConfig::lifetime`] in any case, at logout, and as soon as the token it
//!   was made from is revoked.
//! - Every form that changes something carries the session's CSRF token, compared in
//!   constant time; the login form carries one of its own, paired with a short-lived cookie.
//! - With authentication off (a plaintext loopback server without credentials, the local
//!   quick start) a browser gets a session as the admin `local-dev` at its first request.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::auth::tokens::sha256_hex;
use crate::auth::{AuthMode, Identity};

/// The session cookie's name.
pub const COOKIE: &str = "empi_session";
/// The login form's CSRF cookie.
pub const LOGIN_COOKIE: &str = "empi_login";

/// 32 random bytes as hex.
pub fn random_id() -> String {
    let mut bytes = [0u8; 32];
    // The OS random source does not fail on a working system; a zeroed id would still
    // be refused below as it could never match a stored hash twice by chance.
    if getrandom::fill(&mut bytes).is_err() {
        tracing::error!("OS random source failed; sessions cannot be made");
        return String::new();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Compares two secrets in time independent of where they differ.
pub fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && !a.is_empty()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// A signed-in browser.
#[derive(Debug, Clone)]
pub struct Session {
    /// Who.
    pub identity: Identity,
    /// The token every state-changing form carries.
    pub csrf: String,
    /// A message shown once on the next page (task and person ids only).
    pub flash: Option<String>,
    created: Instant,
    seen: Instant,
}

/// Every live session.
#[derive(Debug)]
pub struct Sessions {
    by_hash: Mutex<HashMap<String, Session>>,
    idle: Duration,
    lifetime: Duration,
}

/// Why a request has no session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoSession {
    /// No cookie, or an unknown id.
    Missing,
    /// It expired (idle or too old) or its credential was revoked.
    Expired,
}

impl Sessions {
    /// No sessions yet; each ends after `idle` unused or `lifetime` in all.
    pub fn new(idle: Duration, lifetime: Duration) -> Self {
        Sessions {
            by_hash: Mutex::new(HashMap::new()),
            idle,
            lifetime,
        }
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        // The map holds plain values replaced whole; a poisoned lock still holds a valid one.
        self.by_hash.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts a session for `identity`; its id, for the cookie.
    pub fn start(&self, identity: Identity) -> String {
        let id = random_id();
        let now = Instant::now();
        let mut map = self.map();
        // Ended sessions are dropped as new ones start, so the map stays small.
        map.retain(|_, s| !self.ended(s, now));
        map.insert(
            sha256_hex(id.as_bytes()),
            Session {
                identity,
                csrf: random_id(),
                flash: None,
                created: now,
                seen: now,
            },
        );
        id
    }

    fn ended(&self, s: &Session, now: Instant) -> bool {
        now.duration_since(s.seen) >= self.idle || now.duration_since(s.created) >= self.lifetime
    }

    /// The session with cookie value `id`, its use recorded and its flash message taken;
    /// an ended one is dropped. Under `auth`, a session whose credential was revoked since
    /// has ended too.
    pub fn touch(&self, id: &str, auth: &AuthMode) -> Result<Session, NoSession> {
        let key = sha256_hex(id.as_bytes());
        let now = Instant::now();
        let mut map = self.map();
        let Some(s) = map.get_mut(&key) else {
            return Err(NoSession::Missing);
        };
        let revoked = match auth {
            AuthMode::Required(creds) => creds.active_named(&s.identity.name).is_none(),
            AuthMode::Disabled => false,
        };
        if self.ended(s, now) || revoked {
            map.remove(&key);
            return Err(NoSession::Expired);
        }
        s.seen = now;
        let out = s.clone();
        s.flash = None;
        Ok(out)
    }

    /// Leaves a message for the next page of the session `id`.
    pub fn flash(&self, id: &str, message: String) {
        if let Some(s) = self.map().get_mut(&sha256_hex(id.as_bytes())) {
            s.flash = Some(message);
        }
    }

    /// Ends the session `id` (logout).
    pub fn end(&self, id: &str) {
        self.map().remove(&sha256_hex(id.as_bytes()));
    }
}

/// The value of cookie `name` in a `Cookie` header.
pub fn cookie<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header
        .split(';')
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// A `Set-Cookie` value: `name=value` for `max_age` (`None`: until the browser closes;
/// `Some(0)`: delete it), HttpOnly, SameSite=Strict, and Secure under TLS.
pub fn set_cookie(name: &str, value: &str, secure: bool, max_age: Option<u64>) -> String {
    let mut c = format!("{name}={value}; Path=/; HttpOnly; SameSite=Strict");
    if let Some(age) = max_age {
        c.push_str(&format!("; Max-Age={age}"));
    }
    if secure {
        c.push_str("; Secure");
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_expire_end_and_hand_out_their_flash_once() {
        let sessions = Sessions::new(Duration::from_secs(60), Duration::from_secs(3600));
        let id = sessions.start(Identity::local_dev());
        assert_eq!(id.len(), 64);
        let s = sessions.touch(&id, &AuthMode::Disabled).unwrap();
        assert_eq!(s.identity.name, "local-dev");
        assert_eq!(s.csrf.len(), 64);
        sessions.flash(&id, "done".into());
        let s = sessions.touch(&id, &AuthMode::Disabled).unwrap();
        assert_eq!(s.flash.as_deref(), Some("done"));
        let s = sessions.touch(&id, &AuthMode::Disabled).unwrap();
        assert_eq!(s.flash, None);
        assert_eq!(
            sessions.touch("nope", &AuthMode::Disabled).unwrap_err(),
            NoSession::Missing
        );
        sessions.end(&id);
        assert!(sessions.touch(&id, &AuthMode::Disabled).is_err());

        let instant = Sessions::new(Duration::ZERO, Duration::from_secs(3600));
        let id = instant.start(Identity::local_dev());
        assert_eq!(
            instant.touch(&id, &AuthMode::Disabled).unwrap_err(),
            NoSession::Expired
        );
        assert_eq!(
            instant.touch(&id, &AuthMode::Disabled).unwrap_err(),
            NoSession::Missing,
            "an ended session is gone"
        );
    }

    #[test]
    fn cookies_and_secrets() {
        assert_eq!(cookie("a=1; empi_session=xyz; b=2", COOKIE), Some("xyz"));
        assert_eq!(cookie("a=1", COOKIE), None);
        let c = set_cookie(COOKIE, "v", true, None);
        assert!(c.contains("HttpOnly") && c.contains("SameSite=Strict") && c.ends_with("Secure"));
        assert!(!set_cookie(COOKIE, "v", false, Some(0)).contains("Secure"));
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd") && !same_secret("abc", "ab") && !same_secret("", ""));
    }
}
