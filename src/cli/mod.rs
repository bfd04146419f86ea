//! Runners for the `empi` subcommands: each turns parsed arguments into library calls and
//! prints results. No matching logic lives here.

pub mod dedup;
pub mod eval;
pub mod input;
