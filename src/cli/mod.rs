//! Runners for the `empi` subcommands: each turns parsed arguments into library calls and
//! prints results. No matching logic lives here.

pub mod audit;
pub mod backup;
pub mod check;
pub mod console;
pub mod data;
pub mod dedup;
pub mod doors;
pub mod eval;
pub mod input;
pub mod link;
pub mod load;
pub mod model;
pub mod ops;
pub mod security;
pub mod serve;
pub mod synth;
pub mod token;
pub mod train;
