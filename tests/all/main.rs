//! aos-tests, one binary (`cargo test -p aos-tests --test all`): the
//! assembled system.
//!
//! - End to end, on the real `aos` binary: `aos driver` ([`driver_cli`]),
//!   `aos run` ([`run_cli`]), the daemon and its CLI ([`daemon_cli`]), `aos mcp add/ls` ([`mcp_cli`]), `aos mcp serve` driven by the
//!   PyPI MCP client ([`mcp_serve`]), traces over OTLP ([`telemetry_cli`]), the
//!   CLI as a new user meets it ([`cli_ux`]), `aos top` on a terminal
//!   ([`top_tty`]), and the WIT copy of the guest SDK ([`wit_drift`]).
//! - Small jobs on the embedded offline model through the kernel, judged
//!   by the outcome eval's checker ([`outcome_local`], [`outcome`]).
//! - The kernel on the real driver runtime (the integration proof of the
//!   `SyscallSource` boundary): the kernel's own test modules
//!   (`host/kernel/tests/all/`, which aos-kernel runs on an in-process fake)
//!   in [`kernel_on_runtime`], and the kernel tests that need real drivers
//!   ([`kernel_drivers`], [`kernel_memory`]).

#![allow(clippy::unwrap_used)] // a test's panic is its failure

mod support;

#[path = "../outcome/mod.rs"]
mod outcome;

mod approvals_cli;
mod cli_ux;
mod daemon_cli;
mod driver_cli;
mod mcp_cli;
mod mcp_serve;
mod outcome_local;
mod run_cli;
mod telemetry_cli;
mod top_tty;
mod wit_drift;

mod kernel_drivers;
mod kernel_memory;

mod kernel_on_runtime;
