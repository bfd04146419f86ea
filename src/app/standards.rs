//! The operations only the standards doors (HL7 v2, FHIR) call, with the same steps as every
//! other ([`super::call`]): a source's merge of two of its records (ADT^A40), the identifiers
//! of a person (PIX, PIXm), a demographic search (PDQ, `$match`); and the identity feed's
//! match-or-create that answers a replayed message as before instead of applying it again.
//!
//! Replays: a door names each message it may be sent again ([`Once`]). The message's
//! receipt is kept in the same change set as its change ([`crate::store::Receipt`]), so
//! the two are durable together; a message whose identity has a receipt is answered with
//! the receipt's answer and applies nothing. Messages with the same identity are handled
//! one at a time in this process (a sender retrying on a second connection while the
//! first is still being applied waits, then finds the receipt).

use std::hash::{Hash, Hasher};

use crate::auth::{Identity, Operation};
use crate::error::{Error, Result};
use crate::record::RecordKey;
use crate::service::{golden_view, FoundPersons, MatchResult, Merged, PersonView};
use crate::store::{Euid, Receipt, UnixMillis};

use super::call::Call;
use super::{
    trim_candidates, App, Caller, CrossReference, FindPersons, Incoming, MergeRecords, Once, Submit,
};

/// What a call that may be a replay did.
#[derive(Debug, Clone, PartialEq)]
pub enum Receipted<T> {
    /// The message was applied: here is the result (its answer is [`Once::answer`]).
    Applied(T),
    /// The message was applied before: nothing was done, send this answer again.
    Replay(Vec<u8>),
}

/// The identifiers of a person, as the caller may see them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identifiers {
    /// The person holding the record (the survivor, when it was merged).
    pub euid: Euid,
    /// Its records in the domains asked for (all when none were), the one asked about
    /// included; a submitter's answer holds its own sources' only.
    pub records: Vec<RecordKey>,
    /// Which of the domains asked for (0-based) are not known: no record of that source
    /// is stored (or, to a submitter, it is not one of its own).
    pub unknown_domains: Vec<usize>,
}

/// Striped locks over message identities: messages with the same identity run one at a
/// time (different ones rarely share a stripe, and then only wait for each other).
#[derive(Debug)]
pub(super) struct Replays {
    stripes: Vec<tokio::sync::Mutex<()>>,
}

impl Default for Replays {
    fn default() -> Self {
        Replays {
            stripes: (0..256).map(|_| tokio::sync::Mutex::new(())).collect(),
        }
    }
}

impl Replays {
    async fn hold(&self, id: &[u8]) -> tokio::sync::MutexGuard<'_, ()> {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        id.hash(&mut h);
        let i = usize::try_from(h.finish() % self.stripes.len() as u64).unwrap_or(0);
        self.stripes[i].lock().await
    }
}

/// The receipt of `once`: its digest, then its answer.
fn receipt_of(once: &Once) -> Receipt {
    let mut body = once.digest.to_vec();
    body.extend_from_slice(&once.answer);
    Receipt {
        id: once.id.clone(),
        at: UnixMillis::now(),
        body,
    }
}

/// A person as a submitter may see it: only its own sources' records, the golden view
/// assembled from those, no history.
fn trim_person(who: &Identity, view: &mut PersonView) {
    view.records
        .retain(|r| who.may_use_source(&r.record.source));
    view.golden = golden_view(&view.records);
    view.history.clear();
}

impl Call<'_> {
    /// What a receipt already kept for `once` means: `None` when there is none (apply the
    /// message), its answer for a replay.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] on `message_id` when the identity was used for another
    /// message; store errors.
    fn replayed(&mut self, app: &App, once: &Once) -> Result<Option<Vec<u8>>> {
        let Some(kept) = app.service.receipt(&once.id)? else {
            return Ok(None);
        };
        match kept.body.split_at_checked(once.digest.len()) {
            Some((digest, answer)) if digest == once.digest => {
                self.note("a replay: answered as before, nothing applied".into());
                Ok(Some(answer.to_vec()))
            }
            _ => Err(Error::invalid(
                "message_id",
                "already used by this sender for another message",
            )),
        }
    }
}

impl App {
    /// [`App::match_or_create`] for a message that may be sent again: applied once with its
    /// receipt in the same change set; a replay (same identity and digest, within
    /// [`crate::service::RECEIPT_WINDOW_MS`]) is answered with the first answer and applies
    /// nothing. Each message is audited, replays included.
    ///
    /// # Errors
    /// As [`App::match_or_create`]; [`Error::InvalidInput`] on `message_id` for an identity
    /// used for another message.
    pub async fn match_or_create_once(
        &self,
        caller: &Caller,
        request: Incoming<Submit>,
        once: Once,
    ) -> Result<Receipted<MatchResult>> {
        let _one_at_a_time = self.replays.hold(&once.id).await;
        self.run_durable(
            caller,
            Operation::MatchOrCreate,
            request,
            async |call, r| {
                call.name_record(&r.record.key());
                call.own_source(&r.record.source)?;
                if let Some(answer) = call.replayed(self, &once)? {
                    // Durable before it is answered, as the first answer was.
                    return Ok((Receipted::Replay(answer), self.service.pending_now()));
                }
                call.intend()?;
                let (result, pending) = self
                    .service
                    .match_or_create_receipted(
                        r.record,
                        call.actor(&r.actor),
                        Some(receipt_of(&once)),
                    )
                    .await?;
                Ok((Receipted::Applied(self.answered(call, result)), pending))
            },
        )
        .await
    }

    /// A source's declaration that two of its records are one patient: the retired
    /// record's person is merged into the survivor's (both records stay, history records
    /// the merge). Both records must be of one source the caller may use. With `once`, as
    /// [`App::match_or_create_once`] for replays.
    ///
    /// # Errors
    /// [`Error::Denied`]; [`Error::InvalidInput`] for records of two sources or a reused
    /// message identity; [`Error::NoSpace`]; as
    /// [`crate::service::Service::merge_records`].
    pub async fn merge_records(
        &self,
        caller: &Caller,
        request: Incoming<MergeRecords>,
        once: Option<Once>,
    ) -> Result<Receipted<Merged>> {
        let _one_at_a_time = match &once {
            Some(o) => Some(self.replays.hold(&o.id).await),
            None => None,
        };
        self.run(caller, Operation::MergeRecords, request, async |call, r| {
            call.name_record(&r.survivor);
            call.name_record(&r.retired);
            if r.survivor.source != r.retired.source {
                return Err(Error::invalid(
                    "retired.source",
                    "a source merges its own records only",
                ));
            }
            call.own_source(&r.survivor.source)?;
            if let Some(o) = &once {
                if let Some(answer) = call.replayed(self, o)? {
                    self.service
                        .wait_durable(self.service.pending_now())
                        .await?;
                    return Ok(Receipted::Replay(answer));
                }
            }
            call.intend()?;
            let merged = self
                .service
                .merge_records(
                    &r.survivor,
                    &r.retired,
                    // The source declares the merge: unauthenticated, it is the actor, as
                    // for a submission without one.
                    call.actor(&r.survivor.source),
                    once.as_ref().map(receipt_of),
                )
                .await?;
            call.name_euid(&merged.survivor);
            Ok(Receipted::Applied(merged))
        })
        .await
    }

    /// The identifiers of the person holding a record (a submitter: a record of its own
    /// sources, answered with its own sources' records only).
    ///
    /// # Errors
    /// [`Error::Denied`]; as [`crate::service::Service::person_of_record`].
    pub async fn cross_reference(
        &self,
        caller: &Caller,
        request: Incoming<CrossReference>,
    ) -> Result<Identifiers> {
        self.run(
            caller,
            Operation::CrossReference,
            request,
            async |call, q| {
                call.name_record(&q.key);
                call.own_source(&q.key.source)?;
                let view = self.service.person_of_record(&q.key)?;
                let who = call.who();
                let mut unknown_domains = Vec::new();
                for (i, d) in q.domains.iter().enumerate() {
                    if !who.may_use_source(d) || !self.service.has_source(d)? {
                        unknown_domains.push(i);
                    }
                }
                let records: Vec<RecordKey> = view
                    .records
                    .iter()
                    .map(|r| r.key())
                    .filter(|k| who.may_use_source(&k.source))
                    .filter(|k| q.domains.is_empty() || q.domains.contains(&k.source))
                    .collect();
                call.name_euid(&view.person.euid);
                for k in &records {
                    call.name_record(k);
                }
                Ok(Identifiers {
                    euid: view.person.euid,
                    records,
                    unknown_domains,
                })
            },
        )
        .await
    }

    /// The persons a set of demographics may be, best first, graded, a page at a time. A
    /// submitter sees scores and grades, and of each person only what its own sources'
    /// records say (no explanations, no history).
    ///
    /// # Errors
    /// [`Error::Denied`]; as [`crate::service::Service::find_persons`].
    pub async fn find_persons(
        &self,
        caller: &Caller,
        request: Incoming<FindPersons>,
    ) -> Result<FoundPersons> {
        self.run(caller, Operation::FindPersons, request, async |call, q| {
            let mut found =
                self.service
                    .find_persons(&q.criteria, q.offset, q.limit, q.only_certain)?;
            let who = call.who().clone();
            for m in &mut found.matches {
                call.name_euid(&m.person.person.euid);
                if who.minimum_necessary() {
                    trim_candidates(&who, std::slice::from_mut(&mut m.candidate));
                    trim_person(&who, &mut m.person);
                }
                for r in &m.person.records {
                    call.name_record(&r.key());
                }
            }
            Ok(found)
        })
        .await
    }
}
