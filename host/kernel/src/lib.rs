//! The AgentOS kernel: runs LLM agents as long-lived processes.
//!
//! Module map, from the leaves up (no module imports one above it):
//!
//! | module        | owns |
//! |---------------|------|
//! | [`process`]   | what a process is, as data: pid, statuses, budgets, counters, history entries, `ProcessInfo`, `SpawnRequest` |
//! | [`budget`]    | tree-wide budget accounts (steps, tokens) and the live-process caps |
//! | [`ipc`]       | a process's queues: mailbox, stdin, events |
//! | [`events`]    | `KernelEvent`, `EventSink` (journals), the event bus |
//! | [`parser`], [`schema`], [`context`] | reply parsing, argument validation, the model's context and compaction |
//! | [`pcb`]       | the process control block and **every change to a live process's state** (each announced as an event) |
//! | [`table`]     | the process table: pids, lookup, subtrees, retention of ended processes |
//! | [`webhook`]   | webhook routes, secrets and pending requests |
//! | [`syscalls`]  | the kernel's own syscalls: one typed table and their implementations |
//! | [`resolve`]   | **where a syscall name is resolved** for a process: kernel table, then the sources (driver runtime) |
//! | [`dispatch`]  | one call: resolve → validate → authorize (approvals go here) → execute |
//! | [`models`]    | providers per (name, base URL), per-provider FIFO slots, context windows |
//! | [`scheduler`] | a process's step loop, as named steps |
//! | [`lifecycle`] | spawn, restore, finish, kill, reaping — where the rules on who may start what live |
//! | [`kernel`]    | the public facade (`Kernel`) |
//!
//! The kernel depends on no driver runtime: syscalls it does not implement
//! come from [`aos_abi::SyscallSource`]s (the Wasm runtime, `aos-runtime`;
//! later MCP servers), given to [`Kernel::new`].

pub mod budget;
pub mod config;
pub mod context;
mod dispatch;
pub mod error;
pub mod events;
pub mod ipc;
pub mod kernel;
pub mod lifecycle;
mod models;
pub mod parser;
pub mod pcb;
pub mod process;
mod resolve;
pub mod scheduler;
pub mod schema;
mod shared;
pub mod syscalls;
pub mod table;
pub mod webhook;

pub use config::{KernelConfig, REAP_INTERVAL};
pub use error::KernelError;
pub use events::{EventSink, KernelEvent};
pub use ipc::{IpcMessage, PendingInput, PendingTimer, Queue};
pub use kernel::Kernel;
pub use lifecycle::RestoreRequest;
pub use models::ProviderFactory;
pub use parser::{parse_reply, ParseError, ParsedCall};
pub use process::{Budgets, Counters, Entry, ExitStatus, LogEntry, Pid, ProcessInfo, ProcessStatus, SpawnRequest};
pub use table::Retention;
pub use webhook::{WebhookAuth, WebhookError, WebhookRequest, WebhookResponse};
