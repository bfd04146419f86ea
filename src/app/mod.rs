//! The application layer: the one door policy every front door calls (gRPC today; the
//! registrar console, HL7 v2 and FHIR next). Transport-neutral: it takes an authenticated
//! [`Caller`] and a domain request, and returns a domain answer.
//!
//! For each call, in order:
//! 1. **roles**: the caller's [`Role`](crate::auth::Role) must allow the
//!    [`Operation`] ([`Role::allows`](crate::auth::Role::allows), the permission table);
//! 2. **audit entry**: started for the caller, naming the record keys and EUIDs the request
//!    carries, even when the door could not read the rest of it ([`Unreadable`]);
//! 3. **sources**: a submitter uses records of its own source(s) only;
//! 4. **before a write**: writes are refused while the disk is nearly full, and the entry
//!    as known then is kept in the store as an *intent*, so no change can be stored
//!    without a line in the trail ([`AuditLog::intend`]);
//! 5. the [`Service`] does the work, as the authenticated identity (the actor a client
//!    names is recorded only when nobody was authenticated, in local development);
//! 6. **durability and audit**: the call's line is written, durable before the answer
//!    leaves, exactly once whether the call was allowed, denied or failed. A match-or-create
//!    makes its change durable in the same cycle of the trail's writer as its line
//!    ([`AuditLog::append_after`]): one sync for both (docs/DESIGN.md, "Durability and
//!    audit");
//! 7. **minimum necessary**: a submitter's answer is trimmed (no per-field explanation of
//!    other patients, no record keys of other sources).
//!
//! A door authenticates its callers its own way (a bearer token or a client certificate
//! for gRPC, a session for the console), describes where the call came from for the audit
//! line ([`Caller::peer`]), converts its request into the domain request, calls the one
//! method of [`App`] for the operation, and converts the answer back. Refusals that happen
//! at the door, before a request reaches this layer (no valid credentials, an undecodable
//! or oversized message), are audited through [`App::refused`]. Reads that a registrar's screens
//! need in one call (the worklist, a task with its records, a search, a merge preview) are
//! in `registrar.rs`.

mod call;
mod feed;
mod metrics;
mod ops;
mod registrar;
mod requests;
mod standards;

#[cfg(test)]
mod tests;

pub use feed::{ChangeFeed, FEED_BATCH};
pub use metrics::AppMetrics;
pub use ops::Incoming;
pub use requests::{
    Attribution, CrossReference, FindPersons, LinkRecord, MarkNotDuplicate, MatchQuery,
    MergePersons, MergeRecords, Once, RemoveRecord, ResolveReviewTask, SplitPerson, Submit,
    UnlinkRecord, Unreadable,
};
pub use standards::{Identifiers, Receipted};

use ops::trim_candidates;

use std::sync::Arc;

use crate::auth::{AuditEntry, AuditLog, AuditOutcome, Identity, Operation, Space};
use crate::error::{Code, Error, Result};
use crate::service::Service;

/// An authenticated caller and where its call came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// Who: authenticated by the door (token, certificate, console session), or
    /// [`Identity::local_dev`] on a server running without authentication.
    pub identity: Identity,
    /// Where the call came from, as the door describes it for the audit line (the gRPC
    /// door: the peer's socket address); `None` when unknown.
    pub peer: Option<String>,
}

impl Caller {
    /// A caller authenticated as `identity`, calling from `peer`.
    pub fn new(identity: Identity, peer: Option<String>) -> Self {
        Caller { identity, peer }
    }
}

/// Whether the server can take writes, for a door's health check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Health {
    /// The disk has room: writes are not refused.
    pub room: bool,
    /// The audit trail's last cycle succeeded.
    pub trail: bool,
    /// The store takes writes.
    pub store: bool,
}

impl Health {
    /// All three: serving.
    pub fn serving(&self) -> bool {
        self.room && self.trail && self.store
    }
}

/// The application layer over a [`Service`]: roles, sources, audit, durability and
/// minimum-necessary trimming for every operation. Cheap to share: wrap it in an `Arc`.
#[derive(Debug)]
pub struct App {
    service: Arc<Service>,
    trail: Option<Arc<AuditLog>>,
    space: Option<Arc<Space>>,
    /// Messages that may be sent again, one identity at a time.
    replays: standards::Replays,
    metrics: AppMetrics,
}

impl App {
    /// The layer over `service`, appending a line to `trail` for every call (`None`
    /// audits nothing: in-process tests and local development), refusing writes while
    /// `space` says the disk is nearly full (`None` checks nothing).
    pub fn new(
        service: Arc<Service>,
        trail: Option<Arc<AuditLog>>,
        space: Option<Arc<Space>>,
    ) -> Self {
        App {
            service,
            trail,
            space,
            replays: standards::Replays::default(),
            metrics: AppMetrics::default(),
        }
    }

    /// The service behind the layer.
    pub fn service(&self) -> &Arc<Service> {
        &self.service
    }

    /// The audit trail every call is audited in, if any.
    pub fn trail(&self) -> Option<&Arc<AuditLog>> {
        self.trail.as_ref()
    }

    /// Refuses a caller whose role may not call `op`, auditing the refusal, for a door
    /// that knows the operation before it reads the request (so an unauthorised caller's
    /// request is never decoded). Every operation checks again: a door that does not ask
    /// is no less safe.
    ///
    /// # Errors
    /// [`Error::Denied`]; [`Error::Storage`] when the refusal could not be audited.
    pub async fn admit(&self, caller: &Caller, op: Operation) -> Result<()> {
        match call::role_allows(&caller.identity, op) {
            Ok(()) => Ok(()),
            Err(denied) => {
                self.refused(
                    Some(&caller.identity),
                    op.name(),
                    caller.peer.clone(),
                    denied.code(),
                )
                .await?;
                Err(denied)
            }
        }
    }

    /// Audits a call that a door refused or lost before it reached this layer: no valid
    /// credentials (`who` is `None`, `code` [`Code::Unauthenticated`]), a role the door
    /// checked early, an undecodable or oversized request. `operation` names the call as
    /// the door knows it (`unknown` for an unknown method).
    ///
    /// # Errors
    /// [`Error::Storage`] when the line could not be written: the door answers
    /// `UNAVAILABLE` instead.
    pub async fn refused(
        &self,
        who: Option<&Identity>,
        operation: &str,
        peer: Option<String>,
        code: Code,
    ) -> Result<()> {
        self.metrics.call(operation, code, None);
        let outcome = match code {
            Code::Unauthenticated => AuditOutcome::Unauthenticated,
            Code::PermissionDenied => AuditOutcome::Denied,
            _ => AuditOutcome::Error,
        };
        tracing::info!(
            operation,
            actor = who.map_or("", |w| w.name.as_str()),
            code = code.name(),
            "call refused"
        );
        let mut entry = AuditEntry::new(who, operation, outcome);
        entry.code = Some(code.name().to_string());
        entry.peer = peer;
        match &self.trail {
            Some(trail) => trail.append(&entry).await.map_err(trail_failed),
            None => Ok(()),
        }
    }

    /// Audits a message a door handled on its own, touching no patient data (an HL7 v2
    /// cancel of the door's own paging state): one `ok` line naming `operation`.
    ///
    /// # Errors
    /// [`Error::Storage`] when the line could not be written.
    pub async fn noted(&self, caller: &Caller, operation: &str) -> Result<()> {
        let mut entry = AuditEntry::new(Some(&caller.identity), operation, AuditOutcome::Ok);
        entry.peer.clone_from(&caller.peer);
        match &self.trail {
            Some(trail) => trail.append(&entry).await.map_err(trail_failed),
            None => Ok(()),
        }
    }

    /// Whether writes can be taken now. A trail that failed is tried again here with a
    /// line of its own (`AuditTrailResumed`), since a server reported unhealthy may get no
    /// call that would show it writes again.
    pub async fn health(&self) -> Health {
        let room = self.space.as_ref().is_none_or(|s| s.refusal().is_none());
        if let Some(trail) = self.trail.as_ref().filter(|t| !t.healthy() && room) {
            let mut e = AuditEntry::new(None, "AuditTrailResumed", AuditOutcome::Ok);
            e.detail = Some("the audit trail could not write for a while; it writes again".into());
            let _ = trail.append(&e).await;
        }
        Health {
            room,
            trail: self.trail.as_ref().is_none_or(|t| t.healthy()),
            store: self.service.store().writable(),
        }
    }
}

/// What a caller is told when the trail could not take a call's line (the reason is
/// logged): every call is safe to retry.
fn trail_failed(e: Error) -> Error {
    tracing::error!("{e}");
    Error::Storage("audit trail unavailable".into())
}
