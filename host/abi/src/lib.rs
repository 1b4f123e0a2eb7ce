//! The host-side vocabulary of AgentOS, shared by every layer: capability
//! names and sets ([`caps`]), the Rust mirror of the WIT syscall types
//! ([`syscall`]), "did you mean" suggestions for mistyped names
//! ([`suggest`]), a model call's progress ([`progress`]), and the interface between the kernel and the sources of
//! syscalls it does not implement itself ([`source`]). Deliberately free of
//! wasmtime so the kernel, providers and tools can depend on it cheaply.

pub mod caps;
pub mod progress;
pub mod source;
pub mod suggest;
pub mod syscall;

pub use caps::{valid_mcp_server, Capability, CapabilitySet, MissingCapabilities, UnknownCapability};
pub use progress::ModelProgress;
pub use source::{AgentContext, Missing, Refusal, SyscallHandle, SyscallSource};
pub use syscall::{CallOutcome, Effect, SyscallError, SyscallSpec, ToolCall, ToolMode};
