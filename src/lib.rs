//! # empi — an enterprise master patient index
//!
//! Decides which patient records from many source systems are the same person, with a
//! Fellegi–Sunter model, and gives each person one enterprise id (EUID).
//!
//! # Layout
//! Modules in dependency order, lowest first; nothing knows about anything above it.
//! - [`error`]: the one error type.
//! - [`record`]: the domain types (a source record, its key, partial dates).
//! - [`normalize`]: canonical forms and per-record derived keys (computed once).
//! - [`compare`]: comparators: string, phonetic, nickname, date, identifier.
//! - [`scoring`]: the Fellegi–Sunter model, its parameters, explanations.
//! - [`blocking`]: blocking keys and the incremental candidate index.
//! - [`linker`]: candidates → scores → decision (pure, sync, no I/O).
//! - [`synth`]: the deterministic synthetic population generator.
//! - [`io`]: CSV reading through a column mapping.
//! - [`eval`]: quality measures against ground truth.
//! - [`batch`]: file-in, clusters-out deduplication.
#![warn(missing_docs)]

pub mod batch;
pub mod blocking;
pub mod compare;
pub mod error;
pub mod eval;
pub mod grpc;
pub mod input;
pub mod linker;
pub mod normalize;
pub mod prepare;
pub mod record;
pub mod scoring;
pub mod store;
pub mod synth;

pub use error::{Error, Result};
