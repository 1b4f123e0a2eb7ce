//! The AgentOS kernel: runs LLM agents as long-lived processes.
//!
//! Module map, from the leaves up (no module imports one above it):
//!
//! | module        | owns |
//! |---------------|------|
//! | [`approval`]  | approval policies (allow / ask / deny per call pattern), a process's chain of them, the pending approvals; a leaf (serde only) |
//! | [`events`]    | the journal's record: process vocabulary (pid, statuses, budgets, counters, history entries, `ProcessInfo`), `KernelEvent`, `RestoreRequest`; `EventSink` (journals); a leaf (serde only) |
//! | `bus`         | the event bus: journal first, then sinks, then the live stream |
//! | [`process`]   | what a process is, as data (re-exported from [`events`]) and `SpawnRequest` |
//! | [`codec`]     | the one line format of events for every journal writer and reader |
//! | [`replay`]    | folds journalled events back into the state a restore needs |
//! | [`budget`]    | tree-wide budget accounts (steps, tokens) and the live-process caps |
//! | [`ipc`]       | a process's queues: mailbox, stdin, events |
//! | [`parser`], [`schema`], [`context`] | reply parsing, argument validation, the model's context and compaction |
//! | [`pcb`]       | the process control block and **every change to a live process's state** (each announced as an event) |
//! | [`table`]     | the process table: pids, lookup, subtrees, retention of ended processes |
//! | [`webhook`]   | webhook routes, secrets and pending requests |
//! | [`syscalls`]  | the kernel's own syscalls: one typed table and their implementations |
//! | [`resolve`]   | **where a syscall name is resolved** for a process: kernel table, then the sources (driver runtime) |
//! | `compat`      | the original AgentOS's argument shapes, rewritten to today's before validation |
//! | [`dispatch`]  | one call: resolve → upgrade (`compat`) → validate → authorize ([`approval`]) → execute |
//! | [`models`]    | providers per (name, base URL), per-provider FIFO slots, context windows |
//! | [`observe`]   | hooks told of each step, model call and syscall (traces), no-op by default |
//! | [`scheduler`] | a process's step loop, as named steps |
//! | [`lifecycle`] | spawn, restore, finish, kill, reaping — where the rules on who may start what live |
//! | [`durability`] | the journal interface (append, durable-up-to, snapshot, replay) the kernel waits on before side effects; pausing a process while the journal fails |
//! | [`kernel`]    | the public facade (`Kernel`) |
//!
//! The kernel depends on no driver runtime: syscalls it does not implement
//! come from [`aos_abi::SyscallSource`]s (the Wasm runtime, `aos-runtime`;
//! later MCP servers), given to [`Kernel::new`].

pub mod approval;
pub mod codec;
mod bus;
mod compat;
pub mod budget;
pub mod config;
pub mod context;
mod dispatch;
pub mod durability;
pub mod error;
pub mod events;
pub mod ipc;
pub mod kernel;
pub mod lifecycle;
mod models;
pub mod observe;
pub mod parser;
pub mod pcb;
pub mod process;
pub mod replay;
mod resolve;
pub mod scheduler;
mod spawn_policy;
pub mod schema;
mod shared;
pub mod syscalls;
pub mod table;
pub mod webhook;

pub use config::{KernelConfig, SpawnPolicy, ToolModes, REAP_INTERVAL};
pub use durability::{Durability, DurabilityWatch, Journal, JournalError, JournalFault, Lsn};
pub use error::KernelError;
pub use events::{EventSink, KernelEvent, RestoreRequest, WebhookRoute};
pub use ipc::{IpcMessage, PendingInput, PendingTimer, Queue};
pub use kernel::Kernel;
pub use models::ProviderFactory;
pub use observe::{Observer, Observers, StepObserver};
pub use parser::{parse_reply, ParseError, ParsedCall};
pub use process::{now_ms, Budgets, Counters, Entry, ExitStatus, LogEntry, Pid, ProcessInfo, ProcessStatus, SpawnRequest};
pub use replay::Replay;
pub use table::Retention;
pub use webhook::{WebhookAuth, WebhookError, WebhookRequest, WebhookResponse};
