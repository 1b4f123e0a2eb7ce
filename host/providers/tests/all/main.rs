//! Wire-level tests: each HTTP provider against a real local HTTP server that
//! speaks the service's JSON, asserting on what the server received and on
//! what the provider returned.

mod common;
mod shared;

mod anthropic;
mod gemini;
mod openai;
mod registry;
