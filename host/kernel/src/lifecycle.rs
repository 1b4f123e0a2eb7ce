//! Process lifecycle: creating a process ([`spawn`], [`restore`]), the task
//! that runs it, its end ([`finish`]), [`kill`] of a subtree, and reaping
//! ended processes by the retention rules ([`reap`]). Rules about who may
//! start what — a child's rights within its parent's, its budgets within
//! what the parent (and every ancestor) has left, charged to every
//! ancestor's account ([`crate::budget`]), the live-process caps per tree
//! and per kernel, and the providers and models a model may choose for a
//! child (`crate::spawn_policy`) — are enforced here, in [`spawn`].

use std::sync::Arc;

use aos_abi::CapabilitySet;

use crate::durability::await_durable;
use crate::budget::{Account, Limit};
use crate::error::KernelError;
use crate::events::{KernelEvent, RestoreRequest};
use crate::ipc::{self, IpcInbox};
use crate::pcb::{Delivery, NewProcess, Process, Restored};
use crate::process::{now_ms, Entry, ExitStatus, Pid, SpawnRequest};
use crate::scheduler;
use crate::shared::Shared;

/// Starts a process and returns its pid.
pub(crate) fn spawn(k: &Arc<Shared>, mut req: SpawnRequest) -> Result<Pid, KernelError> {
    // Provider names are case-insensitive (`OpenAI` is `openai`): one
    // spelling in `ps`, the journal and the `[spawn]` policy's comparisons.
    req.provider = req.provider.trim().to_ascii_lowercase();
    if req.task.trim().is_empty() {
        return Err(KernelError::Invalid("the task is empty; say what the agent should do".into()));
    }
    let parent = match req.parent {
        Some(ppid) => {
            let pp = k.lookup(ppid)?;
            if let Some(exit) = pp.exit_status() {
                return Err(KernelError::NotRunning { pid: ppid, status: exit });
            }
            Some(pp)
        }
        None => None,
    };
    if let Some(t) = req.pipe_to {
        k.lookup(t).map_err(|e| KernelError::Invalid(format!("pipe_to: {e}")))?;
    }
    let (caps, mut budgets) = match &parent {
        Some(pp) => (pp.caps.delegate(&req.caps)?, req.budgets.capped_by(&pp.remaining())),
        None => (req.caps.clone(), req.budgets.clone()),
    };
    let d = &k.config.default_budgets;
    budgets.max_steps = budgets.max_steps.or(d.max_steps);
    budgets.max_tokens = budgets.max_tokens.or(d.max_tokens);
    budgets.max_wall_time = budgets.max_wall_time.or(d.max_wall_time);
    k.syscalls.check_drivers(&caps)?;
    if let Some(pp) = &parent {
        // A child that could not make a single model call is not started.
        if budgets.max_steps == Some(0) {
            return Err(Limit("step budget exhausted: no model calls are left for a child (this process's budget, \
                 shared with its descendants, or an ancestor's is used up)".into())
            .into());
        }
        if budgets.max_tokens == Some(0) {
            return Err(Limit("token budget exhausted: no tokens are left for a child (this process's budget, \
                 shared with its descendants, or an ancestor's is used up)".into())
            .into());
        }
        // A child's provider and model are chosen by its parent's model: only
        // its own or what the operator's `[spawn]` policy allows.
        k.config.spawn.check_provider(&pp.provider_name, &req.provider)?;
    }
    let provider = k
        .models
        .provider(&req.provider, req.base_url.as_deref())
        .map_err(|source| KernelError::Provider { provider: req.provider.clone(), source })?;
    let model = match &parent {
        Some(pp) => {
            let workspaces = k.config.home.join("workspaces");
            let own = (pp.provider_name.as_str(), pp.model.as_str());
            let ws: [&std::path::Path; 2] = [&workspaces, &pp.workspace];
            k.config.spawn.check_model(own, &req.provider, &req.model, provider.as_ref(), &ws)?
        }
        None => req.model,
    };
    provider
        .check_model(&model)
        .map_err(|source| KernelError::Provider { provider: req.provider.clone(), source })?;

    let pid = k.table.allocate_pid();
    let account = Account::new(pid, &budgets, parent.as_ref().map(|pp| pp.account.clone()));
    k.live.admit(&account, k.config.max_processes_per_tree, k.config.max_processes)?;
    let workspace = match (&req.workspace, &parent) {
        (Some(w), _) => w.clone(),
        (None, Some(pp)) => pp.workspace.clone(),
        (None, None) => match new_workspace(&k.config.home.join("workspaces"), pid) {
            Ok(w) => w,
            Err(e) => {
                k.live.release(&account);
                return Err(e);
            }
        },
    };
    if let Err(source) = std::fs::create_dir_all(&workspace) {
        k.live.release(&account);
        return Err(KernelError::Workspace { path: workspace, source });
    }

    let (ends, inbox) = ipc::channels();
    let tool_mode = req.tool_mode.unwrap_or_else(|| k.config.tool_modes.mode_for(&req.provider, &model));
    // A child's calls answer to every policy of its ancestors and its own.
    let approvals = match &parent {
        Some(pp) => pp.approvals.child(req.approvals),
        None => crate::approval::Chain::root(req.approvals.unwrap_or_else(|| k.config.approvals.clone())),
    };
    let p = Arc::new(Process::new(NewProcess {
        pid,
        parent: req.parent,
        role: req.role,
        task: req.task,
        tool_mode,
        provider_name: req.provider,
        base_url: req.base_url,
        model,
        caps,
        budgets,
        account,
        workspace,
        pipe_to: req.pipe_to,
        provider,
        ipc: ends,
        approvals,
    }));
    k.table.insert(p.clone());
    if let Some(pp) = &parent {
        pp.add_child(pid);
        // A kill of the parent's subtree may have raced with this spawn.
        if pp.is_killed() {
            p.signal_kill();
        }
    }
    p.announce_with(&k.events, || KernelEvent::Spawned { info: Box::new(p.info()) });
    start(k.clone(), p, inbox);
    Ok(pid)
}

/// A new, empty default workspace for root process `pid`:
/// `{root}/{pid}-{ms since the epoch}[-n]`, made with `create_dir`, so a
/// directory that already exists (an earlier run's process with the same
/// pid, or anything planted there) is never reused. Only a workspace the
/// operator names is an existing directory.
fn new_workspace(root: &std::path::Path, pid: Pid) -> Result<std::path::PathBuf, KernelError> {
    let err = |path: &std::path::Path, source| KernelError::Workspace { path: path.to_path_buf(), source };
    std::fs::create_dir_all(root).map_err(|e| err(root, e))?;
    let stem = format!("{pid}-{}", now_ms());
    let mut n = 0u32;
    loop {
        let path = if n == 0 { root.join(&stem) } else { root.join(format!("{stem}-{n}")) };
        match std::fs::create_dir(&path) {
            Ok(()) => return Ok(path),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && n < 1000 => n += 1,
            Err(e) => return Err(err(&path, e)),
        }
    }
}

/// Starts the task running `p`'s loop; when the loop ends (or the process
/// is killed, or its wall time runs out) the task finishes the process.
fn start(k: Arc<Shared>, p: Arc<Process>, inbox: IpcInbox) {
    tokio::spawn(async move {
        let deadline = p.deadline();
        let wall = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d.into()).await,
                None => std::future::pending().await,
            }
        };
        let child = |req: SpawnRequest| spawn(&k, req);
        let env = k.loop_env(&child);
        let status = tokio::select! {
            biased;
            _ = p.cancel.cancelled() => ExitStatus::Killed,
            _ = wall => scheduler::wall_time_exhausted(&p),
            s = scheduler::run(env, &p, inbox) => s,
        };
        // A kill that raced with the loop's last poll still wins.
        let status = if p.is_killed() { ExitStatus::Killed } else { status };
        finish(&k, &p, &status);
        // Waiters learn the exit only once it is durable: an exit code is
        // never reported that a restart could take back.
        await_durable(&k.events, &p).await;
        p.announce_exit(status);
    });
}

/// Final bookkeeping of a process that ended (called once, by its task,
/// which then tells its waiters once the end is durable).
pub(crate) fn finish(k: &Shared, p: &Process, status: &ExitStatus) {
    p.record(&k.events, Entry::Notice { text: format!("process {} {status}", p.pid) });
    let ended_at = now_ms();
    let seq = k.table.mark_ended(p.pid, ended_at);
    p.end(status, ended_at, seq);
    // Stops pending timers of this process.
    p.cancel.cancel();
    p.provider.release(p.pid);
    k.live.release(&p.account);
    for source in k.syscalls.sources() {
        source.release(p.pid);
    }
    k.webhooks.forget(p.pid);
    if let Some(parent) = p.parent.and_then(|pp| k.table.get(pp)) {
        parent.deliver(&k.events, Delivery::Event { text: format!("child {} {status}", p.pid), durable: true });
    }
    if k.events.wants() {
        p.emit_counters(&k.events);
        p.announce(&k.events, KernelEvent::Status { pid: p.pid, status: status.as_status() });
        p.announce(&k.events, KernelEvent::Exited { pid: p.pid, status: status.clone() });
    }
    // Whoever waits already holds the process, so it may go at once
    // (with `max_ended = 0` or a zero TTL).
    reap(k);
}

/// Kills `pid` and its whole subtree; returns the pids that were signalled
/// (those still running). See `Kernel::kill`.
pub(crate) fn kill(k: &Shared, pid: Pid) -> Result<Vec<Pid>, KernelError> {
    k.lookup(pid)?;
    let mut killed = Vec::new();
    for p in k.table.subtree(pid) {
        if let Some(proc_) = k.table.get(p) {
            if proc_.is_running() && !proc_.is_killed() {
                proc_.signal_kill();
                killed.push(p);
            }
        }
    }
    Ok(killed)
}

/// Reaps the ended processes the retention rules no longer keep and
/// announces each ([`KernelEvent::Reaped`]).
pub(crate) fn reap(k: &Shared) -> Vec<Pid> {
    let reaped = k.table.reap(&k.config.retention, now_ms());
    if !reaped.is_empty() {
        tracing::debug!(target: "aos::kernel", ?reaped, "reaped ended processes");
        if k.events.wants() {
            for &pid in &reaped {
                k.events.emit(KernelEvent::Reaped { pid });
            }
        }
    }
    reaped
}

/// Reaps ended processes periodically (TTL expiry of an idle kernel),
/// when created inside a tokio runtime; the task ends with the kernel.
pub(crate) fn start_reaper(k: &Arc<Shared>) {
    let Ok(rt) = tokio::runtime::Handle::try_current() else { return };
    let period = (k.config.retention.ended_ttl / 4).clamp(std::time::Duration::from_secs(1), crate::config::REAP_INTERVAL);
    let weak = Arc::downgrade(k);
    rt.spawn(async move {
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            let Some(k) = weak.upgrade() else { return };
            reap(&k);
        }
    });
}

/// Rebuilds a process from its journal (see `Kernel::restore`).
pub(crate) fn restore(k: &Arc<Shared>, r: RestoreRequest, entries: Vec<Entry>) -> Result<Pid, KernelError> {
    // Only a call that never started is asked again (and the rest of its reply run).
    let awaiting_approval = r.waits_for_approval().cloned();
    let info = r.info;
    let pid = info.pid;
    let bad = |why: String| KernelError::Restore { pid, why };
    if k.table.get(pid).is_some() {
        return Err(bad("a process with this pid already exists".into()));
    }
    let caps = CapabilitySet::parse(&info.capabilities).map_err(|e| bad(e.to_string()))?;
    let provider = k
        .models
        .provider(&info.provider, info.base_url.as_deref())
        .map_err(|source| KernelError::Provider { provider: info.provider.clone(), source })?;
    std::fs::create_dir_all(&info.workspace)
        .map_err(|source| KernelError::Workspace { path: info.workspace.clone(), source })?;
    let (ends, inbox) = ipc::channels();
    let exit = r.exit.map(|exit| {
        // Its last entry is the notice written when it ended.
        let last = r.log.last().map_or(0, |e| e.at_ms);
        let at = last.max(info.counters.last_activity_ms).max(info.counters.started_at_ms);
        (exit, at, k.table.mark_ended(pid, at))
    });
    let ended = exit.is_some();
    // Its usage counts in its ancestors' budgets again (parents are restored first).
    let parent_pcb = info.parent.and_then(|pp| k.table.get(pp));
    let parent_account = parent_pcb.as_ref().map(|pp| pp.account.clone());
    let approvals = crate::approval::Chain::restored(info.approvals, parent_pcb.as_ref().map(|pp| &pp.approvals));
    for rule in r.approval_rules {
        approvals.approve_always(rule);
    }
    // Asked again under its id: no new approval may take that id meanwhile.
    if let Some(a) = &awaiting_approval {
        k.approvals.reserve(a.id);
    }
    let account = Account::new(pid, &info.budgets, parent_account);
    let p = Arc::new(Process::restored(
        NewProcess {
            pid,
            parent: info.parent,
            role: info.role,
            task: info.task,
            tool_mode: info.tool_mode,
            provider_name: info.provider,
            base_url: info.base_url,
            model: info.model,
            caps,
            budgets: info.budgets,
            account,
            workspace: info.workspace,
            pipe_to: info.pipe_to,
            provider,
            ipc: ends,
            approvals,
        },
        Restored {
            status: info.status,
            children: info.children,
            counters: info.counters,
            log: r.log,
            context_start: r.context_start,
            compacted: r.compacted,
            context_window: r.context_window,
            next_call_id: r.next_call_id,
            exit,
            awaiting_approval,
        },
    ));
    let (steps, tokens) = p.usage();
    p.account.charge_restored(steps, tokens);
    // Input that was queued when the kernel stopped (already journalled in the snapshot).
    if !ended {
        p.requeue(&r.pending);
        k.live.admit_restored(&p.account);
    }
    k.table.reserve_up_to(pid);
    k.table.insert(p.clone());
    if let Some(pp) = p.parent.and_then(|pp| k.table.get(pp)) {
        pp.add_child(pid);
    }
    if ended {
        return Ok(pid);
    }
    // Per-process provider state (e.g. the script's position) continues.
    p.provider.resume(pid, p.usage().0);
    for t in r.pending.timers {
        scheduler::arm_timer(k.events.clone(), &p, t.id, t.due_ms, t.prompt);
    }
    // Webhook routes the process registered keep their paths and secrets.
    // (journalled as `KernelEvent::WebhookRegistered`, given in the request).
    for route in r.webhooks {
        let path = route.path;
        if let Err(e) = k.webhooks.register(pid, &path, Some(route.secret)) {
            p.record(&k.events, Entry::Notice { text: format!("webhook {path} could not be registered again: {e}") });
        }
    }
    for e in entries {
        if let Entry::Result { id, .. } | Entry::Error { id, .. } = &e {
            p.reserve_call_id(*id);
        }
        p.record(&k.events, e);
    }
    start(k.clone(), p, inbox);
    Ok(pid)
}
