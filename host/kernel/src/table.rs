//! The process table: a concurrent map pid → [`Process`], pid allocation
//! (from 1, never reused) and the retention of ended processes.
//!
//! Ended processes (exited, failed, killed) stay in the table so `ps`,
//! `logs` and `wait` keep working after they end, until [`ProcessTable::reap`]
//! removes them by the [`Retention`] rules: at most `max_ended` ended
//! processes are kept and none longer than `ended_ttl` after it ended,
//! oldest-ended first. An ended process that is an ancestor of a process
//! still running is never reaped: `kill` finds a subtree through the
//! children lists, so the lineage must stay. The pids reaped in this run are
//! remembered (as ranges, a few bytes for thousands of pids) so that a later
//! lookup can say "it ended and was reaped" instead of "no such process".

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Mutex, RwLock};

use crate::pcb::Process;
use crate::process::{Pid, ProcessInfo};

/// How long ended processes are kept in the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retention {
    /// Most ended processes kept; the oldest-ended beyond it are reaped.
    pub max_ended: usize,
    /// An ended process is reaped this long after it ended.
    pub ended_ttl: Duration,
}

impl Default for Retention {
    fn default() -> Self {
        Retention { max_ended: 256, ended_ttl: Duration::from_secs(24 * 3600) }
    }
}

impl Retention {
    /// Which of `ended` ((pid, ended at in Unix ms, order of ending within
    /// the same ms); the unprotected ones) to reap at `now_ms`, when
    /// `total_ended` processes have ended (protected ones included): every
    /// one older than the TTL, then the oldest-ended until at most
    /// `max_ended` are left (or no unprotected one is).
    pub fn select(&self, mut ended: Vec<(Pid, u64, u64)>, total_ended: usize, now_ms: u64) -> Vec<Pid> {
        ended.sort_by_key(|&(pid, at, seq)| (at, seq, pid));
        let ttl = self.ended_ttl.as_millis().min(u64::MAX as u128) as u64;
        let mut left = total_ended;
        let mut out = Vec::new();
        for (pid, at, _) in ended {
            if left > self.max_ended || at.saturating_add(ttl) <= now_ms {
                out.push(pid);
                left -= 1;
            } else {
                // Sorted by end time: the rest are younger and within the count.
                break;
            }
        }
        out
    }
}

#[derive(Default)]
pub struct ProcessTable {
    procs: RwLock<HashMap<Pid, Arc<Process>>>,
    last_pid: AtomicU64,
    /// Pids reaped in this run, as inclusive ranges start → end.
    reaped: RwLock<BTreeMap<Pid, Pid>>,
    /// Counts the processes that ended in this run (orders ends within a ms).
    ends: AtomicU64,
    /// (ended at, order of ending, pid) of every ended process in the table:
    /// tells in O(1) whether a reaping pass has anything to do.
    ended: Mutex<BTreeSet<(u64, u64, Pid)>>,
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

    /// The root of `pid`'s process tree: its oldest ancestor in the table
    /// (itself for a root). The ancestors of a running process are never
    /// reaped, so a running process's root is its tree's real root.
    pub fn root_of(&self, pid: Pid) -> Pid {
        let procs = self.procs.read();
        let mut at = pid;
        for _ in 0..procs.len() {
            match procs.get(&at).and_then(|p| p.parent) {
                Some(parent) if procs.contains_key(&parent) => at = parent,
                _ => break,
            }
        }
        at
    }

    /// `pid` and all its descendants (pre-order).
    pub fn subtree(&self, pid: Pid) -> Vec<Pid> {
        let mut out = Vec::new();
        let mut stack = vec![pid];
        while let Some(p) = stack.pop() {
            if let Some(proc_) = self.get(p) {
                out.push(p);
                stack.extend(proc_.children().into_iter().rev());
            }
        }
        out
    }

    /// Notes that `pid` ended at `at_ms` (before its state says so); returns
    /// its number in the order of ending.
    pub(crate) fn mark_ended(&self, pid: Pid, at_ms: u64) -> u64 {
        let seq = self.ends.fetch_add(1, Ordering::Relaxed) + 1;
        self.ended.lock().insert((at_ms, seq, pid));
        seq
    }

    /// Whether `pid` was in the table and has been reaped (in this run).
    pub fn was_reaped(&self, pid: Pid) -> bool {
        covers(&self.reaped.read(), pid)
    }

    /// Remembers `pid` as reaped (also for pids reaped by an earlier run,
    /// which a journal reports).
    pub fn mark_reaped(&self, pid: Pid) {
        let mut r = self.reaped.write();
        if covers(&r, pid) {
            return;
        }
        // Extend the range ending just below, or start one.
        let start = match r.range(..pid).next_back() {
            Some((&s, &e)) if e + 1 == pid => s,
            _ => pid,
        };
        let mut end = pid;
        // Merge with the range starting just above.
        if let Some(next_end) = r.remove(&(pid + 1)) {
            end = next_end;
        }
        r.insert(start, end);
    }

    /// Removes the ended processes that `retention` no longer keeps (at
    /// `now_ms`) and returns their pids, oldest-ended first. Each reaped pid
    /// is also removed from its parent's children list. Cost: O(1) when
    /// nothing is due (within the count, oldest within the TTL); else the
    /// due ones are taken oldest-ended first from the index of ended
    /// processes, each checked for a running descendant through its
    /// children lists — never a pass over the whole table, so a process
    /// ending among 10,000 others costs what its own subtree costs.
    pub fn reap(&self, retention: &Retention, now_ms: u64) -> Vec<Pid> {
        let ttl = retention.ended_ttl.as_millis().min(u64::MAX as u128) as u64;
        let due = |at: u64, left: usize| left > retention.max_ended || at.saturating_add(ttl) <= now_ms;
        {
            let ended = self.ended.lock();
            if !ended.first().is_some_and(|&(at, ..)| due(at, ended.len())) {
                return Vec::new();
            }
        }
        let mut procs = self.procs.write();
        let mut index = self.ended.lock();
        // Oldest-ended first; `left` counts the ended ones still in the table
        // (protected ones included), as `Retention::select` does.
        let mut left = index.len();
        let mut gone: Vec<(u64, u64, Pid)> = Vec::new();
        for &(at, seq, pid) in index.iter() {
            if !procs.get(&pid).is_some_and(|p| p.ended().is_some()) {
                // Not in the table any more (or not ended): a stale entry.
                gone.push((at, seq, pid));
                left -= 1;
                continue;
            }
            if !due(at, left) {
                // Sorted by end time: the rest are younger and within the count.
                break;
            }
            // Ended ancestors of running processes keep the lineage `kill` follows.
            if has_running_descendant(&procs, pid) {
                continue;
            }
            gone.push((at, seq, pid));
            left -= 1;
        }
        for e in &gone {
            index.remove(e);
        }
        drop(index);
        let mut reaped = Vec::new();
        for &(_, _, pid) in &gone {
            if let Some(p) = procs.remove(&pid) {
                if let Some(parent) = p.parent.and_then(|pp| procs.get(&pp)) {
                    parent.remove_child(pid);
                }
                reaped.push(pid);
            }
        }
        drop(procs);
        for &pid in &reaped {
            self.mark_reaped(pid);
        }
        reaped
    }
}

/// Whether a process below `pid` (through the children lists) is still running.
fn has_running_descendant(procs: &HashMap<Pid, Arc<Process>>, pid: Pid) -> bool {
    let mut stack = procs.get(&pid).map(|p| p.children()).unwrap_or_default();
    let mut seen: HashSet<Pid> = HashSet::new();
    while let Some(c) = stack.pop() {
        if !seen.insert(c) {
            continue;
        }
        if let Some(p) = procs.get(&c) {
            if p.ended().is_none() {
                return true;
            }
            stack.extend(p.children());
        }
    }
    false
}

/// Whether a range of `r` holds `pid`.
fn covers(r: &BTreeMap<Pid, Pid>, pid: Pid) -> bool {
    r.range(..=pid).next_back().is_some_and(|(_, &end)| pid <= end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn select_by_count_and_age() {
        let r = Retention { max_ended: 2, ended_ttl: Duration::from_secs(100) };
        // Five ended at 10..50 ms, all young: the three oldest go.
        let ended = vec![(5, 50, 0), (1, 10, 0), (3, 30, 0), (2, 20, 0), (4, 40, 0)];
        assert_eq!(r.select(ended.clone(), 5, 1000), vec![1, 2, 3]);
        // Two of seven ended are protected (not candidates): still only down to the count.
        assert_eq!(r.select(ended.clone(), 7, 1000), vec![1, 2, 3, 4, 5]);
        // Old enough: 1 and 2 ended more than 100 s before now.
        let r = Retention { max_ended: 10, ended_ttl: Duration::from_millis(100) };
        assert_eq!(r.select(ended.clone(), 5, 125), vec![1, 2]);
        let r = Retention { max_ended: 10, ended_ttl: Duration::ZERO };
        assert_eq!(r.select(ended, 5, 50).len(), 5);
        // Within one ms, the order of ending decides, not the pid.
        let r = Retention { max_ended: 1, ended_ttl: Duration::from_secs(100) };
        assert_eq!(r.select(vec![(1, 10, 2), (5, 10, 1)], 2, 20), vec![5]);
    }

    #[test]
    fn reaped_pids_are_remembered_as_ranges() {
        let t = ProcessTable::new();
        for pid in [3, 1, 2, 7, 5, 6, 2] {
            t.mark_reaped(pid);
        }
        assert_eq!(*t.reaped.read(), BTreeMap::from([(1, 3), (5, 7)]));
        assert!(t.was_reaped(1) && t.was_reaped(3) && t.was_reaped(6));
        assert!(!t.was_reaped(4) && !t.was_reaped(8) && !t.was_reaped(0));
        t.mark_reaped(4);
        assert_eq!(*t.reaped.read(), BTreeMap::from([(1, 7)]));
    }
}
