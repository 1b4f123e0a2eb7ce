//! The AgentOS kernel: runs LLM agents as long-lived processes.
//!
//! Each step of a process builds its context ([`context`]), calls its model
//! (an `aos_providers::Provider`), parses the `[SYS_CALL::NAME] {json}` blocks
//! in the reply ([`parser`]), validates ([`schema`]) and dispatches each one
//! ([`syscalls`]: kernel syscalls natively, others to the Wasm driver runtime),
//! and appends every result or error to the history. [`scheduler`] runs one
//! tokio task per process; [`ipc`] carries messages, stdin and events;
//! [`process`] and [`table`] hold process state ([`table`] also reaps ended
//! processes by the [`Retention`] rules); [`webhook`] routes HTTP requests to
//! processes; [`kernel`] is the facade.
//!
//! Durability: [`events`] holds the serializable record (every
//! [`KernelEvent`] and the types it carries), [`replay`] folds events back
//! into the state a restore needs, [`codec`] is the one line format of
//! events for every writer and reader, and [`durability`] is the journal
//! interface (append, durable-up-to, snapshot, replay) the kernel waits on
//! before side effects.

pub mod codec;
pub mod context;
pub mod durability;
pub mod events;
pub mod ipc;
pub mod kernel;
pub mod parser;
pub mod process;
pub mod replay;
pub mod scheduler;
pub mod schema;
pub mod syscalls;
pub mod table;
pub mod webhook;

pub use durability::{Durability, DurabilityWatch, Journal, JournalError, JournalFault, Lsn};
pub use events::WebhookRoute;
pub use ipc::{IpcMessage, PendingInput, PendingTimer, Queue};
pub use kernel::{
    EventSink, Kernel, KernelConfig, KernelError, KernelEvent, ProviderFactory, RestoreRequest, SpawnRequest,
};
pub use parser::{parse_reply, ParseError, ParsedCall};
pub use table::Retention;
pub use webhook::{WebhookError, WebhookRequest, WebhookResponse};
pub use process::{now_ms, Budgets, Counters, Entry, ExitStatus, LogEntry, Pid, ProcessInfo, ProcessStatus};
pub use replay::Replay;
