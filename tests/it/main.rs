//! Integration tests, one binary with a module per area.

mod batch;
mod cli;
mod crash;
mod grpc;
mod quality;
mod security;
mod service;
mod store;
mod train;
