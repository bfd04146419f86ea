//! One audited call: the steps every operation shares (role, audit entry, intent before a
//! write, the line written before the answer, durability coupled with it), so an operation
//! holds only what is its own.

use std::sync::Arc;

use crate::auth::audit::{key_form, Intent};
use crate::auth::{AuditEntry, AuditOutcome, Identity, Operation};
use crate::error::{Error, Result};
use crate::record::RecordKey;
use crate::service::Pending;
use crate::store::Euid;

use super::{trail_failed, App, Caller, Incoming, Unreadable};

/// [`Error::Denied`] unless `who`'s role may call `op` (the permission table,
/// [`crate::auth::Role::allows`]).
pub(super) fn role_allows(who: &Identity, op: Operation) -> Result<()> {
    if who.role.allows(op) {
        Ok(())
    } else {
        Err(Error::Denied(format!(
            "role {} may not call {op}",
            who.role
        )))
    }
}

/// A call in progress: its caller and its audit entry as the operation fills it in.
pub(super) struct Call<'a> {
    app: &'a App,
    who: &'a Identity,
    entry: AuditEntry,
    intent: Option<Intent>,
}

impl Call<'_> {
    /// The caller.
    pub(super) fn who(&self) -> &Identity {
        self.who
    }

    /// The actor recorded in history for a request naming `claimed`
    /// ([`Identity::actor`]).
    pub(super) fn actor<'c>(&'c self, claimed: &'c str) -> &'c str {
        self.who.actor(claimed)
    }

    /// Names a record key in the audit entry (in its bounded form when invalid).
    pub(super) fn name_record(&mut self, key: &RecordKey) {
        self.entry
            .records
            .push(key_form(&key.source, &key.local_id));
    }

    /// Names an EUID in the audit entry.
    pub(super) fn name_euid(&mut self, euid: &Euid) {
        self.entry.euids.push(euid.to_string());
    }

    /// Says in the audit entry what the call did or asked for beyond keys and EUIDs (never
    /// patient data), e.g. where a change feed starts, or that a message was a replay.
    pub(super) fn note(&mut self, detail: String) {
        self.entry.detail = Some(detail);
    }

    /// Names the keys an unreadable request carried; its error.
    fn unreadable(&mut self, u: Unreadable) -> Error {
        for key in &u.keys {
            self.name_record(key);
        }
        u.error
    }

    /// [`Error::Denied`] unless the caller may use records of `source`: any source for
    /// registrars and admins, only its own for a submitter.
    pub(super) fn own_source(&self, source: &str) -> Result<()> {
        if self.who.may_use_source(source) {
            Ok(())
        } else {
            Err(Error::Denied(
                "a submitter may use records of its own source(s) only".into(),
            ))
        }
    }

    /// For a write, right before it changes anything: refuses it while the disk is nearly
    /// full, then keeps the entry as it stands (keys and EUIDs named so far) in the store
    /// ([`crate::auth::AuditLog::intend`]), so no change of the call can be stored without
    /// a line in the trail, whatever the client is told.
    pub(super) fn intend(&mut self) -> Result<()> {
        if let Some(why) = self.app.space.as_ref().and_then(|s| s.refusal()) {
            return Err(Error::NoSpace(why));
        }
        if let Some(trail) = &self.app.trail {
            self.intent = trail.intend(&self.entry).map_err(trail_failed)?;
        }
        Ok(())
    }

    /// Writes the call's line with its result and passes the result through. A call whose
    /// line cannot be written fails with [`Error::Storage`] (any change it made stands,
    /// and its intent's line is written in its place; every call is safe to retry).
    async fn finish<T>(self, result: Result<T>) -> Result<T> {
        let Call {
            app,
            mut entry,
            intent,
            ..
        } = self;
        if let Err(e) = &result {
            entry.outcome = match e {
                Error::Denied(_) => AuditOutcome::Denied,
                _ => AuditOutcome::Error,
            };
            entry.code = Some(e.code().name().to_string());
        }
        if let Some(trail) = &app.trail {
            trail
                .append_for(&entry, intent)
                .await
                .map_err(trail_failed)?;
        }
        result
    }

    /// [`Call::finish`] for a write applied but perhaps not yet durable ([`Pending`]).
    /// With a trail, its writer makes the change durable as part of the cycle that syncs
    /// the line ([`crate::auth::AuditLog::append_after`]): one hand-off and one sync for
    /// both, and both are on disk before the answer leaves. When the change cannot be made
    /// durable, the call fails and a second line records the error after the first one's
    /// `ok`.
    async fn finish_durable<T>(mut self, applied: Result<(T, Pending)>) -> Result<T> {
        let (value, pending) = match applied {
            Ok(applied) => applied,
            Err(e) => return self.finish(Err(e)).await,
        };
        let Some(trail) = &self.app.trail else {
            self.app.service.wait_durable(pending).await?;
            return Ok(value);
        };
        let service = Arc::clone(&self.app.service);
        let intent = self.intent.take();
        match trail
            .append_after(&self.entry, intent, move || service.make_durable(pending))
            .await
        {
            Ok(Ok(())) => Ok(value),
            Ok(Err(e)) => self.finish(Err(e)).await,
            Err(e) => Err(trail_failed(e)),
        }
    }
}

impl App {
    /// Starts a call of `op` by `caller`: the role checked (a refusal audited and counted),
    /// the audit entry begun.
    async fn begin<'a>(&'a self, caller: &'a Caller, op: Operation) -> Result<Call<'a>> {
        self.admit(caller, op).await?;
        let who = &caller.identity;
        let mut entry = AuditEntry::for_op(Some(who), op, AuditOutcome::Ok);
        entry.peer.clone_from(&caller.peer);
        Ok(Call {
            app: self,
            who,
            entry,
            intent: None,
        })
    }

    /// Begins a call of `op` ([`App::begin`]) and runs `body` with the call and the request
    /// (it names what it touches as it goes, so a refused or failed call is audited with
    /// what it had reached, and a write takes its intent, [`Call::intend`], before it
    /// changes anything); an unreadable request is refused, naming the keys it carried.
    async fn enter<'a, R, T>(
        &'a self,
        caller: &'a Caller,
        op: Operation,
        request: Incoming<R>,
        body: impl AsyncFnOnce(&mut Call<'_>, R) -> Result<T>,
    ) -> Result<(Call<'a>, Result<T>)> {
        let mut call = self.begin(caller, op).await?;
        let result = match request {
            Ok(request) => body(&mut call, request).await,
            Err(unreadable) => Err(call.unreadable(unreadable)),
        };
        Ok((call, result))
    }

    /// Runs one call of `op` the way every operation runs ([`App::enter`]), its line
    /// written before the answer ([`Call::finish`]).
    pub(super) async fn run<R, T>(
        &self,
        caller: &Caller,
        op: Operation,
        request: Incoming<R>,
        body: impl AsyncFnOnce(&mut Call<'_>, R) -> Result<T>,
    ) -> Result<T> {
        let started = std::time::Instant::now();
        let (call, result) = self.enter(caller, op, request, body).await?;
        let answer = call.finish(result).await;
        self.metrics.finished(op, &answer, started);
        answer
    }

    /// [`App::run`] for a write whose body returns once its change is applied but
    /// perhaps not yet durable ([`Call::finish_durable`]).
    pub(super) async fn run_durable<R, T>(
        &self,
        caller: &Caller,
        op: Operation,
        request: Incoming<R>,
        body: impl AsyncFnOnce(&mut Call<'_>, R) -> Result<(T, Pending)>,
    ) -> Result<T> {
        let started = std::time::Instant::now();
        let (call, applied) = self.enter(caller, op, request, body).await?;
        let answer = call.finish_durable(applied).await;
        self.metrics.finished(op, &answer, started);
        answer
    }
}
