//! The driver runtime's integration tests, one binary (`cargo test -p
//! aos-runtime --test all`): real driver components run under capability-
//! derived linkers. Tests needing Docker skip loudly outside CI.

#![allow(clippy::unwrap_used)] // a test's panic is its failure

mod common;

mod blocking;
mod capabilities;
mod escape;
mod exec;
mod https;
mod isolation;
mod memory;
mod net;
