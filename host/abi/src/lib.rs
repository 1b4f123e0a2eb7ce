//! The host-side vocabulary of AgentOS, shared by every layer: capability
//! names and sets ([`caps`]), the Rust mirror of the WIT syscall types
//! ([`syscall`]) and "did you mean" suggestions for mistyped names ([`suggest`]). Deliberately free of wasmtime so providers and tools can
//! depend on it cheaply.

pub mod caps;
pub mod suggest;
pub mod syscall;

pub use caps::{Capability, CapabilitySet, MissingCapabilities, UnknownCapability};
pub use syscall::{CallOutcome, Effect, SyscallError, SyscallSpec};
