//! Who may call what: roles and the per-operation permission table, credentials (API
//! tokens and client certificates, stored hashed), the append-only audit trail, TLS
//! configuration and request limits of the gRPC listener. The application layer
//! ([`crate::app`]) applies the table and writes the trail for every front door.
//!
//! # Roles
//! Every call to `empi.v1.Empi` runs as an authenticated [`Identity`] with one [`Role`].
//! [`Role::allows`] is the whole table; anything not listed is denied (`PERMISSION_DENIED`),
//! and a call without valid credentials is rejected (`UNAUTHENTICATED`).
//!
//! | RPC                                                    | consumer | submitter      | registrar | admin |
//! |--------------------------------------------------------|----------|----------------|-----------|-------|
//! | `MatchOrCreate`                                        | –        | own source(s)  | –         | yes   |
//! | `Match`                                                | –        | yes (trimmed)  | yes       | yes   |
//! | `GetRecord`                                            | –        | own source(s)  | yes       | yes   |
//! | `GetPerson`                                            | –        | –              | yes       | yes   |
//! | `ListReviewTasks`, `GetReviewTask`, `ResolveReviewTask` | –       | –              | yes       | yes   |
//! | `Link`, `Unlink`, `MergePersons`, `SplitPerson`        | –        | –              | yes       | yes   |
//! | `MarkNotDuplicate`                                     | –        | –              | yes       | yes   |
//! | `RemoveRecord`                                         | –        | –              | –         | yes   |
//! | `GetStats`                                             | –        | –              | –         | yes   |
//! | `WatchChanges`                                         | yes      | –              | –         | yes   |
//! | `SearchPersons` (the registrar console's search)       | –        | –              | yes       | yes   |
//! | `MergeRecords` (HL7 v2 ADT^A40)                        | –        | own source     | –         | yes   |
//! | `CrossReference` (PIX, PIXm)                           | –        | own source(s)  | yes       | yes   |
//! | `FindPersons` (PDQ, FHIR `$match`)                     | –        | yes (trimmed)  | yes       | yes   |
//!
//! A consumer is a downstream system following the change feed: it sees record keys and
//! EUIDs only, and reads nothing else (a consumer that needs a person's data gets a
//! registrar credential of its own for that).
//! A submitter (an interface engine) carries the source system(s) it speaks for; it may
//! submit and read records of those sources only, and its `MatchOrCreate` / `Match` answers
//! are trimmed to the minimum necessary (EUIDs, decisions, scores; no per-field explanation
//! of other patients). Registrars see the side-by-side views they need to decide. Admin is
//! the operator's role and may call everything; hand people registrar tokens for daily work.
//! Tokens themselves are managed offline with `empi token` (see [`tokens`]).
//!
//! The last three are the standards doors' (HL7 v2, FHIR), not RPCs of `empi.v1.Empi`: a
//! source merging two of its own records, the identifiers of the person holding a record
//! (a submitter sees those of its own sources), and a demographic search (a submitter sees
//! what its own sources' records say of each candidate).
//!
//! Health checking and reflection are served without credentials: they carry no patient
//! data, and load balancers must be able to probe.

pub mod audit;
pub mod limits;
/// Timestamps, kept at the crate root (training metadata uses them too).
pub use crate::time;
pub mod tls;
pub mod tokens;

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

pub use audit::{AuditEntry, AuditLog, AuditOutcome};
pub use limits::{Limits, Space};
pub use tokens::{Credential, Credentials};

/// How callers are authenticated.
#[derive(Debug, Clone)]
pub enum AuthMode {
    /// No authentication: every call runs as [`Identity::local_dev`] (an admin). Only for a
    /// plaintext listener on loopback (the local quick start) or tests.
    Disabled,
    /// Every `empi.v1.Empi` call needs an active credential.
    Required(std::sync::Arc<Credentials>),
}

impl AuthMode {
    /// Authenticates a caller the way every door does: by a bearer token when it presents
    /// one (`authorization`, the header's value; an invalid token is never excused by a
    /// certificate), else by its TLS client certificate (DER) when registered.
    ///
    /// # Errors
    /// Why the caller is not authenticated, in words for the answer (no secret echoed).
    pub fn authenticate(
        &self,
        authorization: Option<&[u8]>,
        cert: Option<&[u8]>,
    ) -> std::result::Result<Identity, &'static str> {
        let creds = match self {
            AuthMode::Disabled => return Ok(Identity::local_dev()),
            AuthMode::Required(c) => c,
        };
        if let Some(value) = authorization {
            let token = std::str::from_utf8(value)
                .ok()
                .and_then(|v| {
                    v.strip_prefix("Bearer ")
                        .or_else(|| v.strip_prefix("bearer "))
                })
                .map(str::trim)
                .ok_or("authorization: expected `Bearer TOKEN`")?;
            return creds
                .authenticate_token(token)
                .ok_or("unknown or revoked token");
        }
        match cert {
            Some(leaf) => creds
                .authenticate_cert(leaf)
                .ok_or("client certificate not registered or revoked"),
            None => Err("credentials required: a bearer token or a registered client certificate"),
        }
    }
}

/// How the gRPC listener protects itself: transport, authentication, audit, limits.
#[derive(Clone)]
pub struct Security {
    /// TLS; `None` serves plaintext (see [`Security::local_dev`]).
    pub tls: Option<tonic::transport::ServerTlsConfig>,
    /// How callers authenticate.
    pub auth: AuthMode,
    /// Where calls are audited; `None` audits nothing (in-process tests only).
    pub audit: Option<std::sync::Arc<AuditLog>>,
    /// Request limits.
    pub limits: Limits,
    /// The free-space reserve of the data directory; `None` checks nothing (in-process
    /// tests over a memory store).
    pub space: Option<std::sync::Arc<Space>>,
}

impl Security {
    /// Plaintext, no authentication (every call runs as [`Identity::local_dev`]), no audit,
    /// default limits: for in-process tests and the local quick start only.
    pub fn local_dev() -> Self {
        Security {
            tls: None,
            auth: AuthMode::Disabled,
            audit: None,
            limits: Limits::default(),
            space: None,
        }
    }
}

impl fmt::Debug for Security {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Security")
            .field("tls", &self.tls.is_some())
            .field("auth", &self.auth)
            .field(
                "audit",
                &self.audit.as_ref().map(|a| a.path().to_path_buf()),
            )
            .field("limits", &self.limits)
            .field("space", &self.space)
            .finish()
    }
}

/// What a caller is allowed to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// A downstream system following the change feed (`WatchChanges`): keys and EUIDs
    /// only.
    Consumer,
    /// An interface engine: submits and reads records of its own source(s).
    Submitter,
    /// A person resolving duplicates: review queue, person views, registrar actions.
    Registrar,
    /// The operator: stats, record removal, and everything else.
    Admin,
}

impl Role {
    /// All roles, least privileged first.
    pub const ALL: [Role; 4] = [
        Role::Consumer,
        Role::Submitter,
        Role::Registrar,
        Role::Admin,
    ];

    /// The lowercase name (`consumer`, `submitter`, `registrar`, `admin`).
    pub fn name(self) -> &'static str {
        match self {
            Role::Consumer => "consumer",
            Role::Submitter => "submitter",
            Role::Registrar => "registrar",
            Role::Admin => "admin",
        }
    }

    /// Whether this role may call `op` at all (a submitter's source restriction is checked
    /// separately, with [`Identity::may_use_source`]). This is the permission table.
    pub fn allows(self, op: Operation) -> bool {
        use Operation as O;
        match self {
            Role::Admin => true,
            Role::Consumer => op == O::WatchChanges,
            Role::Registrar => !matches!(
                op,
                O::MatchOrCreate
                    | O::RemoveRecord
                    | O::GetStats
                    | O::WatchChanges
                    | O::MergeRecords
            ),
            Role::Submitter => matches!(
                op,
                O::MatchOrCreate
                    | O::Match
                    | O::GetRecord
                    | O::MergeRecords
                    | O::CrossReference
                    | O::FindPersons
            ),
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Role {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Role::ALL
            .into_iter()
            .find(|r| r.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                Error::invalid("role", "expected consumer, submitter, registrar or admin")
            })
    }
}

/// The operations of the application layer, as the permission table and the audit trail
/// name them: the RPCs of `empi.v1.Empi` ([`Operation::ALL`]), those only the standards
/// doors call ([`Operation::STANDARDS`]) and the console's own ([`Operation::CONSOLE`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(missing_docs)] // the variants are the RPC and operation names
pub enum Operation {
    MatchOrCreate,
    Match,
    GetPerson,
    GetRecord,
    RemoveRecord,
    Link,
    Unlink,
    MergePersons,
    SplitPerson,
    MarkNotDuplicate,
    ListReviewTasks,
    GetReviewTask,
    ResolveReviewTask,
    GetStats,
    MergeRecords,
    CrossReference,
    FindPersons,
    /// Find persons like a few demographics, through the matcher (the registrar console's
    /// search; no RPC of its own).
    SearchPersons,
    WatchChanges,
}

impl Operation {
    /// Every RPC of `empi.v1.Empi`.
    pub const ALL: [Operation; 15] = [
        Operation::MatchOrCreate,
        Operation::Match,
        Operation::GetPerson,
        Operation::GetRecord,
        Operation::RemoveRecord,
        Operation::Link,
        Operation::Unlink,
        Operation::MergePersons,
        Operation::SplitPerson,
        Operation::MarkNotDuplicate,
        Operation::ListReviewTasks,
        Operation::GetReviewTask,
        Operation::ResolveReviewTask,
        Operation::GetStats,
        Operation::WatchChanges,
    ];

    /// The operations only the standards doors call, not RPCs of `empi.v1.Empi`.
    pub const STANDARDS: [Operation; 3] = [
        Operation::MergeRecords,
        Operation::CrossReference,
        Operation::FindPersons,
    ];

    /// Operations of the registrar console with no RPC: outside [`Operation::ALL`], so
    /// [`Operation::from_path`] never names one.
    pub const CONSOLE: [Operation; 1] = [Operation::SearchPersons];

    /// The RPC method name, e.g. `MatchOrCreate`.
    pub fn name(self) -> &'static str {
        match self {
            Operation::MatchOrCreate => "MatchOrCreate",
            Operation::Match => "Match",
            Operation::GetPerson => "GetPerson",
            Operation::GetRecord => "GetRecord",
            Operation::RemoveRecord => "RemoveRecord",
            Operation::Link => "Link",
            Operation::Unlink => "Unlink",
            Operation::MergePersons => "MergePersons",
            Operation::SplitPerson => "SplitPerson",
            Operation::MarkNotDuplicate => "MarkNotDuplicate",
            Operation::ListReviewTasks => "ListReviewTasks",
            Operation::GetReviewTask => "GetReviewTask",
            Operation::ResolveReviewTask => "ResolveReviewTask",
            Operation::GetStats => "GetStats",
            Operation::MergeRecords => "MergeRecords",
            Operation::CrossReference => "CrossReference",
            Operation::FindPersons => "FindPersons",
            Operation::SearchPersons => "SearchPersons",
            Operation::WatchChanges => "WatchChanges",
        }
    }

    /// The operation of a gRPC path such as `/empi.v1.Empi/Match`; `None` for other
    /// services and unknown methods (the standards doors' operations are not RPCs).
    pub fn from_path(path: &str) -> Option<Self> {
        let method = path.strip_prefix("/empi.v1.Empi/")?;
        Operation::ALL.into_iter().find(|op| op.name() == method)
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An authenticated caller: the name recorded as actor in history and audit, its role, and
/// for a submitter the source systems it speaks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The credential's name (unique), e.g. `st-marys-adt-engine`.
    pub name: String,
    /// What it may do.
    pub role: Role,
    /// Sources a submitter may submit and read; ignored for other roles.
    pub sources: Vec<String>,
    /// False only for [`Identity::local_dev`]: nobody was authenticated, so the actor a
    /// client names in its request is recorded in history (there is nothing better).
    pub authenticated: bool,
}

impl Identity {
    /// The identity of a server running without authentication (local development only).
    pub fn local_dev() -> Self {
        Identity {
            name: "local-dev".into(),
            role: Role::Admin,
            sources: Vec::new(),
            authenticated: false,
        }
    }

    /// Whether the caller may submit or read records of `source`: any source for registrars
    /// and admins, only its own for a submitter.
    pub fn may_use_source(&self, source: &str) -> bool {
        self.role != Role::Submitter || self.sources.iter().any(|s| s == source)
    }

    /// The actor recorded in history for a call that names `claimed`: the authenticated
    /// identity, never the client's claim, except without authentication (local dev).
    pub fn actor<'a>(&'a self, claimed: &'a str) -> &'a str {
        if self.authenticated {
            &self.name
        } else {
            claimed
        }
    }

    /// Whether answers to this caller are trimmed to the minimum necessary.
    pub fn minimum_necessary(&self) -> bool {
        self.role == Role::Submitter
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permission_table() {
        use Operation as O;
        let allowed = |role: Role| -> Vec<Operation> {
            O::ALL
                .into_iter()
                .chain(O::STANDARDS)
                .filter(|op| role.allows(*op))
                .collect()
        };
        assert_eq!(
            allowed(Role::Submitter),
            vec![
                O::MatchOrCreate,
                O::Match,
                O::GetRecord,
                O::MergeRecords,
                O::CrossReference,
                O::FindPersons
            ]
        );
        assert_eq!(allowed(Role::Consumer), vec![O::WatchChanges]);
        let registrar = allowed(Role::Registrar);
        assert_eq!(registrar.len(), 13);
        for op in [
            O::MatchOrCreate,
            O::RemoveRecord,
            O::GetStats,
            O::MergeRecords,
            O::WatchChanges,
        ] {
            assert!(!registrar.contains(&op), "{op}");
        }
        assert_eq!(
            allowed(Role::Admin).len(),
            O::ALL.len() + O::STANDARDS.len()
        );
        // The console's search shows persons' demographics: registrars and admins only.
        let search = |r: Role| r.allows(O::SearchPersons);
        assert_eq!(Role::ALL.map(search), [false, false, true, true]);
        assert_eq!(Operation::from_path("/empi.v1.Empi/SearchPersons"), None);
    }

    #[test]
    fn paths_and_names_round_trip() {
        for op in Operation::ALL {
            assert_eq!(
                Operation::from_path(&format!("/empi.v1.Empi/{op}")),
                Some(op)
            );
        }
        for op in Operation::STANDARDS {
            assert_eq!(Operation::from_path(&format!("/empi.v1.Empi/{op}")), None);
        }
        assert_eq!(Operation::from_path("/empi.v1.Empi/Nope"), None);
        assert_eq!(Operation::from_path("/grpc.health.v1.Health/Check"), None);
        for r in Role::ALL {
            assert_eq!(r.name().parse::<Role>().ok(), Some(r));
        }
        assert!("root".parse::<Role>().is_err());
    }

    #[test]
    fn submitter_sources() {
        let s = Identity {
            name: "adt".into(),
            role: Role::Submitter,
            sources: vec!["st-marys".into()],
            authenticated: true,
        };
        assert_eq!(s.actor("someone"), "adt");
        assert_eq!(Identity::local_dev().actor("someone"), "someone");
        assert!(s.may_use_source("st-marys"));
        assert!(!s.may_use_source("general"));
        assert!(s.minimum_necessary());
        assert!(Identity::local_dev().may_use_source("general"));
    }
}
