//! What the parts of one kernel share: its settings, event bus, process
//! table, model access, syscall resolution and webhook routes. Plain data
//! with lookups; the behaviour lives in the modules that own each concern
//! ([`crate::lifecycle`], [`crate::scheduler`], [`crate::pcb`], ...), each
//! handed only the part it needs ([`LoopEnv`], [`CallEnv`]).

use std::sync::Arc;

use crate::budget::LiveCount;
use crate::config::KernelConfig;
use crate::error::KernelError;
use crate::bus::EventBus;
use crate::models::Models;
use crate::pcb::Process;
use crate::process::Pid;
use crate::resolve::Syscalls;
use crate::scheduler::LoopEnv;
use crate::syscalls::run::{CallEnv, Spawn};
use crate::table::ProcessTable;
use crate::webhook::WebhookRegistry;

pub(crate) struct Shared {
    pub config: KernelConfig,
    pub events: Arc<EventBus>,
    pub table: ProcessTable,
    pub models: Models,
    /// The kernel's syscalls and the other sources (the driver runtime).
    pub syscalls: Syscalls,
    pub webhooks: WebhookRegistry,
    /// Live processes (the per-kernel and per-tree caps).
    pub live: LiveCount,
    /// Calls waiting for the operator.
    pub approvals: crate::approval::Approvals,
}

impl Shared {
    /// The process `pid`, or the error saying it never existed or was reaped.
    pub fn lookup(&self, pid: Pid) -> Result<Arc<Process>, KernelError> {
        self.table.get(pid).ok_or_else(|| self.missing(pid))
    }

    /// The error for a pid that is not in the table.
    pub fn missing(&self, pid: Pid) -> KernelError {
        if self.table.was_reaped(pid) {
            KernelError::Reaped(pid)
        } else {
            KernelError::NoSuchProcess(pid)
        }
    }

    /// What kernel syscalls may use.
    pub fn call_env<'a>(&'a self, spawn: Spawn<'a>) -> CallEnv<'a> {
        CallEnv {
            events: &self.events,
            table: &self.table,
            webhooks: &self.webhooks,
            syscalls: &self.syscalls,
            spawn,
            approvals: &self.approvals,
            approval_timeout: self.config.approval_timeout,
        }
    }

    /// What a process's loop may use.
    pub fn loop_env<'a>(&'a self, spawn: Spawn<'a>) -> LoopEnv<'a> {
        LoopEnv { config: &self.config, events: &self.events, models: &self.models, calls: self.call_env(spawn) }
    }
}
