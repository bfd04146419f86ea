//! Integration tests, one binary with a module per area.

mod store;
