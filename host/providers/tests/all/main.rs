//! The providers' tests, one binary (`cargo test -p aos-providers --test
//! all`). Wire level: each HTTP provider against a real local HTTP server
//! that speaks the service's JSON, asserting on what the server received and
//! on what the provider returned; and the script provider.

#![allow(clippy::unwrap_used)] // a test's panic is its failure

mod common;
mod shared;

mod anthropic;
mod gemini;
mod openai;
mod registry;
mod script;
mod streaming;
