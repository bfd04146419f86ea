//! # empi — an enterprise master patient index
//!
//! Decides which patient records from many source systems are the same person, with a
//! Fellegi–Sunter model, and gives each person one enterprise id (EUID). The design (the
//! layers, the domain rules, the matching model, the durability and audit protocol, and
//! why each unusual mechanism exists) is in `docs/DESIGN.md`.
//!
//! # Layout
//! Modules in dependency order, lowest first; nothing knows about anything above it.
//! The core (`record` → `linker`) is synchronous and free of I/O, so the service, batch
//! runs, benches and tests all decide with the same code.
//! - [`error`]: the one error type.
//! - [`record`]: the domain types (a source record, its key, partial dates).
//! - [`time`]: UTC timestamps and civil dates without a date-time dependency.
//! - [`progress`]: progress bars of long runs on stderr, the one place they are drawn.
//! - [`metrics`]: counters and latency histograms as atomics, and their Prometheus text.
//! - `census` (crate-private): the shipped census name-frequency lists and their parser,
//!   read by the default model's term frequencies and by the generator.
//! - [`compare`]: comparators: string, phonetic, nickname, date, identifier.
//! - [`normalize`]: canonical forms (case, accents, suffixes, phones, ids) and placeholders.
//! - [`prepare`]: per-record derived keys (phonetic codes, nickname groups), computed once.
//! - [`scoring`]: the Fellegi–Sunter model, its parameters, the rival hypotheses (twins,
//!   household relatives), explanations, estimation, the training metadata, and the upper
//!   bound on a pair's weight that lets bulk runs skip hopeless pairs.
//! - [`blocking`]: blocking keys and the incremental candidate index.
//! - [`linker`]: candidates → scores → decision (pure, sync, no I/O); the decision and the
//!   scored pair every path (service, batch, evaluation) shares.
//! - [`input`]: CSV reading through a column mapping: encoding, delimiter and date-format
//!   detection, and the service's own record rules ([`record::Record::validate`]).
//! - [`hl7`]: HL7 v2 codecs (no I/O): MLLP framing, message parsing with any delimiters and
//!   the MSH-18 character sets, the identity feed and PIX/PDQ queries as domain requests,
//!   ACK and RSP answers, and replay detection; and the door that uses them, the MLLP
//!   [`hl7::listener`] over [`app`] (it sits with the doors, above everything here).
//! - [`fhir`]: FHIR R4 JSON codecs (no I/O): Patient, Parameters, searchset Bundle with
//!   match grades, OperationOutcome and CapabilityStatement, and Patient ↔ record; and the
//!   HTTP door over [`app`], [`fhir::http`].
//! - [`synth`]: the deterministic synthetic population generator.
//! - [`eval`]: quality measures against ground truth.
//! - [`store`]: persistence behind a trait (sled, in-memory): records, persons, review
//!   tasks, history, the change feed; atomic change sets, group-committed durability;
//!   online backups, restores and format upgrades.
//! - [`batch`]: bulk runs on the same core: file dedup, two-file linking, store re-scan,
//!   the threshold sweep of an evaluation, and results joined back to the input for
//!   people to read.
//! - [`report`]: the model report: parameters, expected vs measured quality, pictures.
//! - [`service`]: async orchestration: match-or-create, review queue, registrar actions,
//!   the live in-memory index; CPU work kept short on the async threads.
//! - [`auth`]: roles and their permission table, credentials (hashed tokens, client
//!   certificates), the audit trail, TLS and request limits of the listener, and the
//!   free-space reserve below which writes are refused.
//! - [`app`]: the application layer, the one door policy every front door calls: roles
//!   and a submitter's sources, one audit line per call, the change durable with its line,
//!   answers trimmed to the minimum necessary. Transport-neutral.
//! - [`grpc`]: the gRPC door: the guard that authenticates callers, proto ↔ domain
//!   conversion, handlers that make one call into [`app`] each, the one error → status
//!   mapping, `serve(listener, service, shutdown)` with health (kept honest about disk,
//!   trail and store) and reflection, and `check_request`, the decoding and validation
//!   path alone for fuzzing.
//! - [`console`]: the registrar console, an HTTP door: server-rendered pages for the
//!   review queue, persons and search, sessions exchanged for a registrar's token, CSRF
//!   tokens, strict headers; each page or action one call into [`app`].
#![warn(missing_docs)]

pub mod app;
pub mod auth;
pub mod batch;
pub mod blocking;
mod census;
pub mod compare;
pub mod console;
pub mod error;
pub mod eval;
pub mod fhir;
pub mod grpc;
pub mod hl7;
pub mod input;
pub mod linker;
pub mod metrics;
pub mod normalize;
pub mod prepare;
pub mod progress;
pub mod record;
pub mod report;
pub mod scoring;
pub mod service;
pub mod store;
pub mod synth;
pub mod time;

pub use error::{Error, Result};
