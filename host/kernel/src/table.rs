//! The process table: a concurrent map pid → [`Process`], and pid allocation
//! (from 1, never reused). Exited processes stay in the table so their logs
//! and exit status remain queryable.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::RwLock;

use crate::process::{Pid, Process, ProcessInfo};

#[derive(Default)]
pub struct ProcessTable {
    procs: RwLock<HashMap<Pid, Arc<Process>>>,
    last_pid: AtomicU64,
}

impl ProcessTable {
    pub fn new() -> Self {
        Self::default()
    }

    /// Reserves the next pid.
    pub fn allocate_pid(&self) -> Pid {
        self.last_pid.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Makes sure later pids are allocated above `pid` (after a restore).
    pub fn reserve_up_to(&self, pid: Pid) {
        self.last_pid.fetch_max(pid, Ordering::Relaxed);
    }

    pub fn insert(&self, p: Arc<Process>) {
        self.procs.write().insert(p.pid, p);
    }

    pub fn get(&self, pid: Pid) -> Option<Arc<Process>> {
        self.procs.read().get(&pid).cloned()
    }

    pub fn len(&self) -> usize {
        self.procs.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Snapshots of every process, ordered by pid.
    pub fn snapshot(&self) -> Vec<ProcessInfo> {
        let procs: Vec<Arc<Process>> = self.procs.read().values().cloned().collect();
        let mut infos: Vec<ProcessInfo> = procs.iter().map(|p| p.info()).collect();
        infos.sort_by_key(|i| i.pid);
        infos
    }

    /// `pid` and all its descendants (pre-order).
    pub fn subtree(&self, pid: Pid) -> Vec<Pid> {
        let mut out = Vec::new();
        let mut stack = vec![pid];
        while let Some(p) = stack.pop() {
            if let Some(proc_) = self.get(p) {
                out.push(p);
                let children = proc_.state.lock().children.clone();
                stack.extend(children.into_iter().rev());
            }
        }
        out
    }
}
