//! The domain requests of the operations that need more than an id, and [`Unreadable`]: a
//! request a door could not read. Registrar actions carry their [`Attribution`].

use crate::error::Error;
use crate::record::{Record, RecordKey};
use crate::store::{Euid, ResolutionAction, TaskId};

/// A request a door could not turn into its domain request: why, and the record keys it
/// carried as sent (valid or not), which the call's audit line names (an invalid key in a
/// bounded form, [`crate::auth::audit::key_form`]).
#[derive(Debug)]
pub struct Unreadable {
    /// Why (usually [`Error::InvalidInput`] naming the field).
    pub error: Error,
    /// The record keys the request carried, as sent.
    pub keys: Vec<RecordKey>,
}

impl From<Error> for Unreadable {
    fn from(error: Error) -> Self {
        Unreadable {
            error,
            keys: Vec::new(),
        }
    }
}

impl Unreadable {
    /// `error`, for a request that carried the record key `source`/`local_id`.
    pub fn naming(error: Error, source: &str, local_id: &str) -> Self {
        Unreadable {
            error,
            keys: vec![RecordKey::new(source, local_id)],
        }
    }
}

/// Who asks for a registrar action, as the client names them (recorded in history only
/// when nobody was authenticated), and why (free text kept in history). Neither may carry
/// patient data.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Attribution {
    /// Who asks, as the client names them.
    pub actor: String,
    /// Why.
    pub reason: String,
}

/// Submit a record (match-or-create).
#[derive(Debug, Clone, PartialEq)]
pub struct Submit {
    /// The record.
    pub record: Record,
    /// Who submits, as the client names it; empty stands for the record's source.
    pub actor: String,
}

/// Score a record against the index without writing (match).
#[derive(Debug, Clone, PartialEq)]
pub struct MatchQuery {
    /// The record; it may have no key.
    pub record: Record,
    /// Candidates wanted; 0 means the server default.
    pub max_candidates: usize,
}

/// Remove a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoveRecord {
    /// The record.
    pub key: RecordKey,
    /// Who asks, and why.
    pub by: Attribution,
}

/// Move a record to a person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkRecord {
    /// The record.
    pub key: RecordKey,
    /// The person (a merged EUID stands for its survivor).
    pub euid: Euid,
    /// Who asks, and why.
    pub by: Attribution,
}

/// Move a record out of its person into a new person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnlinkRecord {
    /// The record.
    pub key: RecordKey,
    /// Who asks, and why.
    pub by: Attribution,
}

/// Fold one person into another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MergePersons {
    /// The person folded away.
    pub from: Euid,
    /// The survivor.
    pub into: Euid,
    /// Who asks, and why.
    pub by: Attribution,
}

/// Move records out of a person into a new person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitPerson {
    /// The person.
    pub euid: Euid,
    /// The records to move; at least one must stay behind.
    pub keys: Vec<RecordKey>,
    /// Who asks, and why.
    pub by: Attribution,
}

/// Assert two persons are different people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MarkNotDuplicate {
    /// One person.
    pub a: Euid,
    /// The other.
    pub b: Euid,
    /// Who asks, and why.
    pub by: Attribution,
}

/// Resolve an open review task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolveReviewTask {
    /// The task.
    pub task: TaskId,
    /// What the registrar decided.
    pub action: ResolutionAction,
    /// Who asks, and why.
    pub by: Attribution,
}

/// A source's declaration that two of its records are one patient (HL7 v2 ADT^A40).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MergeRecords {
    /// The record that stays.
    pub survivor: RecordKey,
    /// The record declared the same patient; its person is merged into the survivor's.
    pub retired: RecordKey,
}

/// The identifiers of the person holding a record (PIX, PIXm).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrossReference {
    /// The record asked about.
    pub key: RecordKey,
    /// The sources (identifier domains) wanted; empty for all.
    pub domains: Vec<String>,
}

/// The persons a set of demographics may be (PDQ, FHIR `$match`).
#[derive(Debug, Clone, PartialEq)]
pub struct FindPersons {
    /// The demographics, as a record without a key.
    pub criteria: Record,
    /// Candidates to skip (the pages before).
    pub offset: usize,
    /// Candidates wanted at most.
    pub limit: usize,
    /// Only candidates graded certain.
    pub only_certain: bool,
}

/// A door's identity of a message it may be sent again (HL7 v2: the sender and MSH-10),
/// with what it answers when the message is applied: see [`crate::app::App::match_or_create_once`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Once {
    /// The message's identity.
    pub id: Vec<u8>,
    /// A digest of the message's content: the same identity with another digest is a
    /// sender reusing an identity for another message.
    pub digest: [u8; 32],
    /// The answer to send when the message is applied, and again for each replay.
    pub answer: Vec<u8>,
}
