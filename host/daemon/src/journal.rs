//! The journal: every kernel event of one daemon run, appended as JSON lines
//! to `$AOS_HOME/journal/run-<start ms>-<os pid>.jsonl` by an
//! [`EventSink`], flushed (and by default fsynced) at each line; and the
//! reader that replays a journal into one [`ProcessSnapshot`] per process.
//!
//! Lines are [`KernelEvent`]s (`{"event": "spawned" | "entry" | "status" |
//! "compacted" | "context_shrunk" | "exited" | "delivered" | "consumed" | "scheduled" | "fired" | "reaped", ...}`:
//! queue items and timers not yet received are restored too) plus two records of the daemon's own:
//! `{"event": "counters", "pid", "counters"}` after every model reply (token
//! and step counters are not part of the events) and `{"event": "restored",
//! "snapshot"}` when a process from an earlier run is resumed in this one.
//!
//! Recovery ([`recover`]) replays every earlier run's journal and rebuilds
//! each process with `Kernel::restore` under its own pid: an unfinished one
//! gets its full history back plus [`ProcessSnapshot::recovery_entries`] (the
//! call that was running when the daemon died is reported to the model as
//! interrupted, never re-run; later calls of the same reply as not run) and
//! resumes at its next step; an ended one is kept for `ps --all` and `logs`.
//! Earlier journals then move to `journal/archive/`.
//!
//! Retention: a process reaped from the kernel's table (`[retention]` in
//! aos.toml; `KernelEvent::Reaped`) is journalled as `reaped` and dropped by
//! the replay, so it is not restored again; the kernel reaps after recovery
//! by the same rules, so ended processes from earlier runs are kept only as
//! long as those of this run. Archived journals are deleted by
//! [`prune_archive`] (count and age) at every start. There are no
//! per-process journal files: a process's state lives in the journal of the
//! run that last saw it (a resumed or kept process is copied into the new
//! run's journal as a `restored` snapshot at start).

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use anyhow::{Context, Result};
use std::sync::Mutex;
use serde::{Deserialize, Serialize};

use aos_kernel::{
    Counters, Entry, EventSink, ExitStatus, Kernel, KernelEvent, LogEntry, Pid, ProcessInfo, ProcessStatus, Queue, RestoreRequest,
};

/// A journal line.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Record {
    Kernel(KernelEvent),
    Daemon(DaemonRecord),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum DaemonRecord {
    Counters { pid: Pid, counters: Counters },
    Restored { snapshot: Box<ProcessSnapshot> },
}

/// The journal of this daemon run: an [`EventSink`].
pub struct Journal {
    path: PathBuf,
    file: Mutex<File>,
    fsync: bool,
    kernel: OnceLock<Kernel>,
}

impl Journal {
    /// Creates `dir/run-<started_ms>-<pid>.jsonl`.
    pub fn create(dir: &Path, started_ms: u64, fsync: bool) -> Result<Arc<Journal>> {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create the journal directory {}", dir.display()))?;
        {
            // Journals hold whole conversations: owner only.
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
        }
        let path = dir.join(format!("run-{started_ms}-{}.jsonl", std::process::id()));
        use std::os::unix::fs::OpenOptionsExt;
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&path)
            .with_context(|| format!("cannot create the journal {}", path.display()))?;
        Ok(Arc::new(Journal { path, file: Mutex::new(file), fsync, kernel: OnceLock::new() }))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Starts recording `kernel`'s events.
    pub fn attach(self: &Arc<Self>, kernel: &Kernel) {
        let _ = self.kernel.set(kernel.clone());
        kernel.add_sink(self.clone());
    }

    /// Appends one record, flushed (and fsynced if configured) before returning.
    pub fn write(&self, rec: &Record) {
        self.write_all(std::slice::from_ref(rec));
    }

    /// Appends records with one write (and one fsync).
    pub fn write_all(&self, recs: &[Record]) {
        let mut buf = Vec::new();
        for rec in recs {
            match serde_json::to_vec(rec) {
                Ok(l) => {
                    buf.extend_from_slice(&l);
                    buf.push(b'\n');
                }
                Err(e) => tracing::error!("journal: cannot encode an event: {e}"),
            }
        }
        let mut f = self.file.lock().unwrap_or_else(|e| e.into_inner());
        // One write call (O_APPEND): a crash leaves at most a torn last line.
        if let Err(e) = f.write_all(&buf).and_then(|_| f.flush()) {
            tracing::error!("journal {}: write failed: {e}", self.path.display());
            return;
        }
        if self.fsync {
            let _ = f.sync_data();
        }
    }
}

impl EventSink for Journal {
    fn record(&self, event: &KernelEvent) {
        let mut recs = vec![Record::Kernel(event.clone())];
        // Token, step and syscall counters are not in the events: journal them
        // with every reply, call result and exit.
        let pid = match event {
            KernelEvent::Entry { entry } if matches!(entry.entry, Entry::Reply { .. } | Entry::Result { .. } | Entry::Error { .. }) => Some(entry.pid),
            KernelEvent::Exited { pid, .. } => Some(*pid),
            _ => None,
        };
        if let Some(info) = pid.and_then(|pid| self.kernel.get().and_then(|k| k.info(pid).ok())) {
            recs.push(Record::Daemon(DaemonRecord::Counters { pid: info.pid, counters: info.counters }));
        }
        self.write_all(&recs);
    }
}

/// Everything the journal knows about one process: exactly what
/// `Kernel::restore` needs to rebuild it (a [`RestoreRequest`], stored
/// flattened), plus the replay logic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProcessSnapshot {
    #[serde(flatten)]
    pub state: RestoreRequest,
}

impl std::ops::Deref for ProcessSnapshot {
    type Target = RestoreRequest;
    fn deref(&self) -> &RestoreRequest {
        &self.state
    }
}

impl std::ops::DerefMut for ProcessSnapshot {
    fn deref_mut(&mut self) -> &mut RestoreRequest {
        &mut self.state
    }
}

impl ProcessSnapshot {
    fn new(info: ProcessInfo) -> Self {
        ProcessSnapshot { state: RestoreRequest::new(info) }
    }

    fn push(&mut self, e: LogEntry) {
        // Replays are idempotent: an entry already present is skipped.
        if e.seq < self.log.len() as u64 {
            return;
        }
        match &e.entry {
            Entry::Result { id, .. } | Entry::Error { id, .. } => self.next_call_id = self.next_call_id.max(id + 1),
            _ => {}
        }
        self.log.push(e);
    }

    /// Whether the log has a gap (an entry missing), i.e. cannot be trusted.
    pub fn is_complete(&self) -> bool {
        self.log.iter().enumerate().all(|(i, e)| e.seq == i as u64)
    }

    /// The calls of the last model reply that have no result yet: for an
    /// unfinished process, the first of them was running when the kernel
    /// stopped (it may have had effects) and the others had not started.
    pub fn pending_calls(&self) -> Vec<aos_kernel::ParsedCall> {
        let Some(r) = self.log.iter().rposition(|e| matches!(e.entry, Entry::Reply { .. })) else {
            return Vec::new();
        };
        let Entry::Reply { text, truncated } = &self.log[r].entry else { return Vec::new() };
        if *truncated {
            return Vec::new();
        }
        let done = self.log[r + 1..]
            .iter()
            .filter(|e| matches!(e.entry, Entry::Result { .. } | Entry::Error { .. }))
            .count();
        aos_kernel::parse_reply(text)
            .into_iter()
            .skip(done)
            .map(|c| match c {
                Ok(c) => c,
                Err(e) => aos_kernel::ParsedCall {
                    name: e.name.unwrap_or_else(|| "SYS_CALL".into()),
                    args: serde_json::Value::Null,
                    span: e.span,
                },
            })
            .collect()
    }

    /// The entries to append when this process is resumed: an error for the
    /// call that was interrupted (not retried) and a notice for the calls of
    /// the same reply that never started. Empty when the process was between
    /// steps (its next step simply runs).
    pub fn recovery_entries(&self) -> Vec<Entry> {
        let pending = self.pending_calls();
        let mut out = Vec::new();
        let mut id = self.next_call_id;
        if let Some(first) = pending.first() {
            out.push(Entry::Error {
                id,
                name: Some(first.name.clone()),
                args: (!first.args.is_null()).then(|| first.args.clone()),
                error: "interrupted: the kernel stopped while this call was running and has restarted; the call was \
                        not retried and may or may not have taken effect — check before repeating it"
                    .into(),
            });
            id += 1;
        }
        if pending.len() > 1 {
            let names: Vec<&str> = pending[1..].iter().map(|c| c.name.as_str()).collect();
            out.push(Entry::Notice {
                text: format!(
                    "{} later call(s) of your last reply were not run because the kernel restarted: {}; \
                     repeat them if still needed",
                    pending.len() - 1,
                    names.join(", ")
                ),
            });
        }
        let _ = id;
        out.push(Entry::Notice { text: "the kernel restarted; your process was resumed from its journal".into() });
        out
    }
}

/// What a journal says.
#[derive(Debug, Default)]
pub struct Replayed {
    /// The last known state of each process it knows (reaped ones excluded).
    pub procs: BTreeMap<Pid, ProcessSnapshot>,
    /// Pids reaped by the retention rules in that run.
    pub reaped: BTreeSet<Pid>,
    /// Unreadable lines skipped.
    pub bad: usize,
}

/// Replays journal lines into one snapshot per pid (and the unreadable line count).
pub fn replay(lines: impl Iterator<Item = String>) -> (BTreeMap<Pid, ProcessSnapshot>, usize) {
    let r = replay_all(lines);
    (r.procs, r.bad)
}

/// Replays journal lines into one snapshot per pid, leaving out reaped ones.
/// A torn last line (crash mid-write) is ignored; so are unreadable lines,
/// which are counted.
pub fn replay_all(lines: impl Iterator<Item = String>) -> Replayed {
    let mut procs: BTreeMap<Pid, ProcessSnapshot> = BTreeMap::new();
    let mut reaped = BTreeSet::new();
    let mut bad = 0;
    for line in lines {
        if line.trim().is_empty() {
            continue;
        }
        let rec: Record = match serde_json::from_str(&line) {
            Ok(r) => r,
            Err(_) => {
                bad += 1;
                continue;
            }
        };
        match rec {
            Record::Kernel(KernelEvent::Spawned { info }) => {
                let pid = info.pid;
                procs.insert(pid, ProcessSnapshot::new(*info));
                if let Some(parent) = procs.get(&pid).and_then(|s| s.info.parent) {
                    if let Some(pp) = procs.get_mut(&parent) {
                        if !pp.info.children.contains(&pid) {
                            pp.info.children.push(pid);
                        }
                    }
                }
            }
            Record::Kernel(KernelEvent::Entry { entry }) => {
                if let Some(s) = procs.get_mut(&entry.pid) {
                    s.push(entry);
                }
            }
            Record::Kernel(KernelEvent::Status { pid, status }) => {
                if let Some(s) = procs.get_mut(&pid) {
                    s.info.status = status;
                }
            }
            Record::Kernel(KernelEvent::Compacted { pid, entries, context_start }) => {
                if let Some(s) = procs.get_mut(&pid) {
                    s.context_start = context_start;
                    s.compacted += entries;
                }
            }
            Record::Kernel(KernelEvent::ContextShrunk { pid, window, .. }) => {
                if let Some(s) = procs.get_mut(&pid) {
                    s.context_window = Some(window);
                }
            }
            Record::Kernel(KernelEvent::Exited { pid, status }) => {
                if let Some(s) = procs.get_mut(&pid) {
                    s.info.status = status.as_status();
                    s.exit = Some(status);
                }
            }
            Record::Kernel(KernelEvent::Delivered { pid, queue, from, content, at_ms }) => {
                if let Some(s) = procs.get_mut(&pid) {
                    let q = &mut s.pending;
                    match queue {
                        Queue::Mailbox => q.mailbox.push(aos_kernel::IpcMessage { from: from.unwrap_or(0), content, sent_at_ms: at_ms }),
                        Queue::Stdin => q.stdin.push(content),
                        Queue::Events => q.events.push(content),
                    }
                }
            }
            Record::Kernel(KernelEvent::Consumed { pid, queue }) => {
                if let Some(s) = procs.get_mut(&pid) {
                    let q = &mut s.pending;
                    let n = match queue {
                        Queue::Mailbox => q.mailbox.len(),
                        Queue::Stdin => q.stdin.len(),
                        Queue::Events => q.events.len(),
                    };
                    if n > 0 {
                        match queue {
                            Queue::Mailbox => drop(q.mailbox.remove(0)),
                            Queue::Stdin => drop(q.stdin.remove(0)),
                            Queue::Events => drop(q.events.remove(0)),
                        }
                    }
                }
            }
            Record::Kernel(KernelEvent::Scheduled { pid, id, due_ms, prompt }) => {
                if let Some(s) = procs.get_mut(&pid) {
                    s.pending.timers.push(aos_kernel::PendingTimer { id, due_ms, prompt });
                }
            }
            Record::Kernel(KernelEvent::Fired { pid, id }) => {
                if let Some(s) = procs.get_mut(&pid) {
                    s.pending.timers.retain(|t| t.id != id);
                }
            }
            Record::Kernel(KernelEvent::Reaped { pid }) => {
                if let Some(parent) = procs.remove(&pid).and_then(|s| s.info.parent) {
                    if let Some(pp) = procs.get_mut(&parent) {
                        pp.info.children.retain(|c| *c != pid);
                    }
                }
                reaped.insert(pid);
            }
            Record::Daemon(DaemonRecord::Counters { pid, counters }) => {
                if let Some(s) = procs.get_mut(&pid) {
                    s.info.counters = counters;
                }
            }
            Record::Daemon(DaemonRecord::Restored { snapshot }) => {
                procs.insert(snapshot.info.pid, *snapshot);
            }
        }
    }
    // A process whose last call was SYS_EXIT but whose exit was not journaled did exit.
    for s in procs.values_mut() {
        if s.exit.is_none() {
            if let Some(LogEntry { entry: Entry::Result { name, output, .. }, .. }) =
                s.log.iter().rev().find(|e| matches!(e.entry, Entry::Result { .. } | Entry::Error { .. }))
            {
                if name == "SYS_EXIT" {
                    if let Some(code) = output.get("exiting").and_then(|c| c.as_i64()) {
                        s.exit = Some(ExitStatus::Exited { code, result: None });
                        s.info.status = ProcessStatus::Exited { code };
                    }
                }
            }
        }
    }
    Replayed { procs, reaped, bad }
}

/// Reads and replays one journal file.
pub fn read(path: &Path) -> Result<Replayed> {
    let f = File::open(path).with_context(|| format!("cannot open the journal {}", path.display()))?;
    let lines = BufReader::new(f).lines().map_while(|l| l.ok());
    Ok(replay_all(lines))
}

/// Journals of earlier runs (every `*.jsonl` in `dir` except `current`), oldest first.
pub fn earlier_runs(dir: &Path, current: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "jsonl") && p != current)
                .collect()
        })
        .unwrap_or_default();
    v.sort_by_key(|p| {
        // run-<ms>-<pid>.jsonl
        p.file_stem()
            .and_then(|s| s.to_str())
            .and_then(|s| s.strip_prefix("run-"))
            .and_then(|s| s.split('-').next())
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or(0)
    });
    v
}

/// Rebuilds one process in `kernel` from its snapshot (`Kernel::restore`):
/// an unfinished one resumes at its next step after the recovery entries
/// (its interrupted call reported, never re-run); an ended one is kept for
/// `ps --all` and `logs`. The snapshot is journaled first (`restored`), so
/// this run's journal is complete on its own.
pub async fn restore(kernel: &Kernel, journal: &Journal, snapshot: &ProcessSnapshot) -> Result<Pid, String> {
    let entries = if snapshot.exit.is_none() { snapshot.recovery_entries() } else { Vec::new() };
    journal.write(&Record::Daemon(DaemonRecord::Restored { snapshot: Box::new(snapshot.clone()) }));
    let req = snapshot.state.clone();
    kernel.restore(req, entries).await.map_err(|e| format!("pid {} was not resumed: {e}", snapshot.info.pid))
}

/// Recovery at daemon start: replays the journals of earlier runs, resumes
/// (or reports) every process that had not exited, keeps the ended ones
/// (those not reaped yet), reaps by the kernel's retention rules, and moves
/// those journals to `journal/archive/`. Returns one line per unfinished process.
pub async fn recover(dir: &Path, journal: &Journal, kernel: &Kernel) -> Vec<String> {
    let runs = earlier_runs(dir, journal.path());
    if runs.is_empty() {
        return Vec::new();
    }
    let mut report = Vec::new();
    // The latest state of each pid across runs (a pid restored into a later run
    // continues there, under the same pid).
    let mut latest: BTreeMap<Pid, ProcessSnapshot> = BTreeMap::new();
    for run in &runs {
        match read(run) {
            Ok(r) => {
                if r.bad > 1 {
                    report.push(format!("{}: {} unreadable lines skipped", run.display(), r.bad));
                }
                latest.extend(r.procs);
                // Reaped in that run: gone for good (an older run may still have it).
                for pid in r.reaped {
                    latest.remove(&pid);
                    kernel.note_reaped(pid);
                }
            }
            Err(e) => report.push(format!("{e:#}")),
        }
    }
    // Parents before children (pids grow with spawn order).
    for snap in latest.values() {
        if !snap.is_complete() {
            report.push(format!("pid {} was not resumed: its journal has a gap", snap.info.pid));
            continue;
        }
        let unfinished = snap.exit.is_none();
        let doing = snap.pending_calls().first().map(|c| format!(" (it was in {}; reported as interrupted)", c.name));
        match restore(kernel, journal, snap).await {
            Ok(pid) if unfinished => {
                report.push(format!("pid {pid} resumed from the journal{}", doing.unwrap_or_default()))
            }
            Ok(_) => {}
            Err(e) => report.push(e),
        }
    }
    // Ended processes of earlier runs count against the retention limits
    // like those of this run (journalled as `reaped`).
    kernel.reap();
    let archive = dir.join("archive");
    if std::fs::create_dir_all(&archive).is_ok() {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&archive, std::fs::Permissions::from_mode(0o700));
        for run in runs {
            if let Some(name) = run.file_name() {
                let _ = std::fs::rename(&run, archive.join(name));
            }
        }
    }
    report
}

/// Deletes archived journals (`*.jsonl` in `archive`) that the retention
/// rules no longer keep: every one last written `ttl` or longer before
/// `now`, then the least recently written until at most `max` are left.
/// Returns the deleted paths (a missing directory is no error).
pub fn prune_archive(archive: &Path, max: usize, ttl: std::time::Duration, now: std::time::SystemTime) -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir(archive) else { return Vec::new() };
    let mut files: Vec<(std::time::SystemTime, PathBuf)> = rd
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "jsonl"))
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .collect();
    files.sort();
    let mut left = files.len();
    let mut deleted = Vec::new();
    for (modified, path) in files {
        let expired = now.duration_since(modified).is_ok_and(|age| age >= ttl);
        if left <= max && !expired {
            // The rest are newer and within the count.
            break;
        }
        match std::fs::remove_file(&path) {
            Ok(()) => {
                left -= 1;
                deleted.push(path);
            }
            Err(e) => tracing::warn!("cannot delete the archived journal {}: {e}", path.display()),
        }
    }
    deleted
}

#[cfg(test)]
mod tests {
    use super::*;
    use aos_kernel::Budgets;
    use serde_json::json;

    fn info(pid: Pid) -> ProcessInfo {
        ProcessInfo {
            pid,
            parent: None,
            children: vec![],
            status: ProcessStatus::Ready,
            role: "r".into(),
            task: "t".into(),
            provider: "script".into(),
            model: "m".into(),
            capabilities: vec![],
            budgets: Budgets::default(),
            remaining: Budgets::default(),
            counters: Counters::default(),
            workspace: "/w".into(),
            pipe_to: None,
            base_url: None,
        }
    }

    fn entry(pid: Pid, seq: u64, entry: Entry) -> String {
        serde_json::to_string(&Record::Kernel(KernelEvent::Entry { entry: LogEntry { pid, seq, at_ms: 1, entry } }))
            .unwrap()
    }

    #[test]
    fn replay_rebuilds_history_and_finds_the_interrupted_call() {
        let mut lines = vec![serde_json::to_string(&KernelEvent::Spawned { info: Box::new(info(1)) }).unwrap()];
        lines.push(entry(1, 0, Entry::Reply {
            text: "[SYS_CALL::FS_WRITE] {\"path\":\"a\",\"content\":\"x\"}\n[SYS_CALL::RECV_MSG] {}\n[SYS_CALL::SYS_EXIT] {}".into(),
            truncated: false,
        }));
        lines.push(serde_json::to_string(&Record::Daemon(DaemonRecord::Counters {
            pid: 1,
            counters: Counters { steps: 1, prompt_tokens: 10, ..Default::default() },
        }))
        .unwrap());
        lines.push(entry(1, 1, Entry::Result { id: 1, name: "FS_WRITE".into(), args: json!({}), output: json!({}) }));
        lines.push("{\"event\":\"entry\",\"pid\":1,\"se".into()); // torn last line
        let (procs, bad) = replay(lines.into_iter());
        assert_eq!(bad, 1);
        let s = &procs[&1];
        assert!(s.exit.is_none() && s.is_complete());
        assert_eq!(s.log.len(), 2);
        assert_eq!(s.next_call_id, 2);
        assert_eq!(s.info.counters.steps, 1);
        let pending = s.pending_calls();
        assert_eq!(pending.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(), ["RECV_MSG", "SYS_EXIT"]);
        let rec = s.recovery_entries();
        match &rec[0] {
            Entry::Error { id, name, error, .. } => {
                assert_eq!(*id, 2);
                assert_eq!(name.as_deref(), Some("RECV_MSG"));
                assert!(error.starts_with("interrupted"));
            }
            e => panic!("{e:?}"),
        }
        assert!(matches!(&rec[1], Entry::Notice { text } if text.contains("SYS_EXIT")));
    }

    #[test]
    fn exited_processes_are_not_recovered_and_sys_exit_counts_as_exit() {
        let lines = vec![
            serde_json::to_string(&KernelEvent::Spawned { info: Box::new(info(1)) }).unwrap(),
            entry(1, 0, Entry::Reply { text: "[SYS_CALL::SYS_EXIT] {\"code\": 4}".into(), truncated: false }),
            entry(1, 1, Entry::Result { id: 1, name: "SYS_EXIT".into(), args: json!({"code": 4}), output: json!({"exiting": 4}) }),
            serde_json::to_string(&KernelEvent::Spawned { info: Box::new(info(2)) }).unwrap(),
            serde_json::to_string(&KernelEvent::Exited { pid: 2, status: ExitStatus::Killed }).unwrap(),
        ];
        let (procs, _) = replay(lines.into_iter());
        assert_eq!(procs[&1].exit, Some(ExitStatus::Exited { code: 4, result: None }));
        assert_eq!(procs[&2].exit, Some(ExitStatus::Killed));
        assert!(procs[&1].pending_calls().is_empty());
    }

    #[test]
    fn replay_keeps_the_compaction_point_and_the_shrunk_window() {
        let ev = |e: KernelEvent| serde_json::to_string(&e).unwrap();
        let lines = vec![
            ev(KernelEvent::Spawned { info: Box::new(info(1)) }),
            ev(KernelEvent::Compacted { pid: 1, entries: 4, context_start: 6 }),
            ev(KernelEvent::ContextShrunk { pid: 1, prompt_tokens: 4200, limit: 4080, window: 2900 }),
            ev(KernelEvent::Compacted { pid: 1, entries: 3, context_start: 11 }),
            ev(KernelEvent::ContextShrunk { pid: 1, prompt_tokens: 4100, limit: 4080, window: 2600 }),
        ];
        let (procs, bad) = replay(lines.into_iter());
        assert_eq!(bad, 0);
        let s = &procs[&1];
        assert_eq!((s.compacted, s.context_start, s.context_window), (7, 11, Some(2600)));
    }

    #[test]
    fn replay_keeps_undelivered_input_and_unfired_timers() {
        let ev = |e: KernelEvent| serde_json::to_string(&e).unwrap();
        let lines = vec![
            ev(KernelEvent::Spawned { info: Box::new(info(1)) }),
            ev(KernelEvent::Delivered { pid: 1, queue: Queue::Mailbox, from: Some(2), content: "m1".into(), at_ms: 5 }),
            ev(KernelEvent::Delivered { pid: 1, queue: Queue::Mailbox, from: Some(0), content: "m2".into(), at_ms: 6 }),
            ev(KernelEvent::Delivered { pid: 1, queue: Queue::Stdin, from: None, content: "line".into(), at_ms: 6 }),
            ev(KernelEvent::Consumed { pid: 1, queue: Queue::Mailbox }),
            ev(KernelEvent::Scheduled { pid: 1, id: 1, due_ms: 100, prompt: "a".into() }),
            ev(KernelEvent::Scheduled { pid: 1, id: 2, due_ms: 200, prompt: "b".into() }),
            ev(KernelEvent::Delivered { pid: 1, queue: Queue::Events, from: None, content: "scheduled wake-up #1: a".into(), at_ms: 100 }),
            ev(KernelEvent::Fired { pid: 1, id: 1 }),
        ];
        let (procs, bad) = replay(lines.into_iter());
        assert_eq!(bad, 0);
        let p = &procs[&1].pending;
        assert_eq!(p.mailbox.iter().map(|m| (m.from, m.content.as_str())).collect::<Vec<_>>(), [(0, "m2")]);
        assert_eq!(p.stdin, ["line"]);
        assert_eq!(p.events, ["scheduled wake-up #1: a"]);
        assert_eq!(p.timers.iter().map(|t| t.id).collect::<Vec<_>>(), [2]);
    }

    #[test]
    fn reaped_processes_are_not_replayed() {
        let ev = |e: KernelEvent| serde_json::to_string(&e).unwrap();
        let mut child = info(2);
        child.parent = Some(1);
        let lines = vec![
            ev(KernelEvent::Spawned { info: Box::new(info(1)) }),
            ev(KernelEvent::Spawned { info: Box::new(child) }),
            ev(KernelEvent::Exited { pid: 2, status: ExitStatus::Killed }),
            ev(KernelEvent::Reaped { pid: 2 }),
        ];
        let r = replay_all(lines.into_iter());
        assert_eq!(r.procs.keys().copied().collect::<Vec<_>>(), [1]);
        assert!(r.procs[&1].info.children.is_empty());
        assert_eq!(r.reaped, BTreeSet::from([2]));
    }

    #[test]
    fn archive_is_pruned_by_count_and_age() {
        use std::time::{Duration, SystemTime};
        let d = tempfile::tempdir().unwrap();
        let now = SystemTime::now();
        let hour = Duration::from_secs(3600);
        // run-1 is 5 h old ... run-5 is 1 h old.
        for i in 1..=5u32 {
            let p = d.path().join(format!("run-{i}-9.jsonl"));
            std::fs::write(&p, "{}\n").unwrap();
            std::fs::File::options().write(true).open(&p).unwrap().set_modified(now - hour * (6 - i)).unwrap();
        }
        std::fs::write(d.path().join("notes.txt"), "not a journal").unwrap();
        let names = |v: Vec<PathBuf>| -> Vec<String> {
            v.iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect()
        };
        // Count: at most 4 kept, the least recently written goes.
        let gone = prune_archive(d.path(), 4, hour * 100, now);
        assert_eq!(names(gone), ["run-1-9.jsonl"]);
        // Age: older than 2.5 h goes (run-2 and run-3), within the count.
        let gone = prune_archive(d.path(), 4, hour * 5 / 2, now);
        assert_eq!(names(gone), ["run-2-9.jsonl", "run-3-9.jsonl"]);
        let mut left: Vec<String> = std::fs::read_dir(d.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        left.sort();
        assert_eq!(left, ["notes.txt", "run-4-9.jsonl", "run-5-9.jsonl"]);
        // Nothing to do, and no directory at all, are fine.
        assert!(prune_archive(d.path(), 4, hour * 5 / 2, now).is_empty());
        assert!(prune_archive(&d.path().join("none"), 0, Duration::ZERO, now).is_empty());
    }

    #[test]
    fn journal_writes_lines_that_replay() {
        let d = tempfile::tempdir().unwrap();
        let j = Journal::create(d.path(), 5, false).unwrap();
        j.record(&KernelEvent::Spawned { info: Box::new(info(3)) });
        j.record(&KernelEvent::Entry { entry: LogEntry { pid: 3, seq: 0, at_ms: 1, entry: Entry::Stdout { text: "hi".into() } } });
        let r = read(j.path()).unwrap();
        assert_eq!(r.bad, 0);
        assert_eq!(r.procs[&3].log.len(), 1);
        assert_eq!(earlier_runs(d.path(), Path::new("/nonexistent")), vec![j.path().to_path_buf()]);
    }
}
