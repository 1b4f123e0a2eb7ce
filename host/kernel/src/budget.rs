//! Tree-wide budgets and process caps.
//!
//! Every process has an [`Account`]: its own step and token limits, what it
//! and all its descendants have used, and a link to its parent's account.
//! A model call is charged to the caller's account and to every ancestor's:
//! a step is *reserved* at each level before the call (one atomic
//! compare-and-add per level, refused when any level is full), and so is
//! the prompt's estimated token count, replaced by the real count when the
//! call returns. So the model calls of a process and all its descendants
//! never exceed what it was given, whatever its children ask for, and a
//! root's budget bounds its whole tree. Tokens are only known after a call:
//! as for a single process, the call that starts while a budget still has
//! room may take it past the limit (by its reply and the estimate's error);
//! calls running at the same time see each other's reservations, so a tree
//! overshoots no more than one process would. Wall time needs no
//! account: a child's wall-time budget is at most what its parent has left
//! (`lifecycle::spawn`), so no descendant outlives an ancestor's deadline.
//!
//! The root's account also counts the tree's live processes, and
//! [`LiveCount`] the kernel's: a spawn takes a place in both, or is refused
//! with a [`Limit`] naming the cap; a process gives its places back when it
//! ends. The messages say which budget or cap, so a model can correct itself.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use crate::process::{Budgets, Pid};

/// A refusal by a budget or a cap; its text says which one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Limit(pub String);

/// Steps and tokens used by a process and its descendants, against its limits.
#[derive(Debug)]
pub struct Account {
    pid: Pid,
    max_steps: Option<u64>,
    max_tokens: Option<u64>,
    /// Model calls reserved by the process and its descendants.
    steps: AtomicU64,
    /// Tokens used by the process and its descendants.
    tokens: AtomicU64,
    /// Live processes of the tree (kept on the root's account only).
    live: AtomicUsize,
    parent: Option<Arc<Account>>,
}

impl Account {
    pub(crate) fn new(pid: Pid, budgets: &Budgets, parent: Option<Arc<Account>>) -> Arc<Account> {
        Arc::new(Account {
            pid,
            max_steps: budgets.max_steps,
            max_tokens: budgets.max_tokens,
            steps: AtomicU64::new(0),
            tokens: AtomicU64::new(0),
            live: AtomicUsize::new(0),
            parent,
        })
    }

    /// This account and its ancestors', nearest first.
    fn chain(&self) -> impl Iterator<Item = &Account> {
        std::iter::successors(Some(self), |a| a.parent.as_deref())
    }

    /// The root of the tree.
    fn root(&self) -> &Account {
        self.chain().last().unwrap_or(self)
    }

    /// (steps, tokens) used by the process and its descendants.
    pub(crate) fn used(&self) -> (u64, u64) {
        (self.steps.load(Ordering::Relaxed), self.tokens.load(Ordering::Relaxed))
    }

    /// What is left to this process: the least left at any level of its chain.
    pub(crate) fn left(&self) -> (Option<u64>, Option<u64>) {
        let min = |a: Option<u64>, b: Option<u64>| match (a, b) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.chain().fold((None, None), |(s, t), a| {
            let (su, tu) = a.used();
            (min(s, a.max_steps.map(|m| m.saturating_sub(su))), min(t, a.max_tokens.map(|m| m.saturating_sub(tu))))
        })
    }

    /// Reserves one model call at every level, before the call; `own_steps`
    /// (the calls this process made itself) only words the refusal.
    pub(crate) fn reserve_step(&self, own_steps: u64) -> Result<(), Limit> {
        for a in self.chain() {
            let max = a.max_steps.unwrap_or(u64::MAX);
            if a.steps.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < max).then_some(n + 1)).is_ok() {
                continue;
            }
            // Give back what the levels below took.
            for b in self.chain().take_while(|b| !std::ptr::eq(*b, a)) {
                b.steps.fetch_sub(1, Ordering::AcqRel);
            }
            return Err(if std::ptr::eq(a, self) {
                let by_descendants = a.steps.load(Ordering::Acquire).saturating_sub(own_steps);
                let split = if by_descendants > 0 {
                    format!(" ({own_steps} by this process, {by_descendants} by its descendants)")
                } else {
                    String::new()
                };
                Limit(format!("step budget exhausted: {max} model calls used without SYS_EXIT{split}"))
            } else {
                Limit(format!(
                    "step budget exhausted: the budget of process {} ({max} model calls), shared by it and all \
                     its descendants, is used up; this process made {own_steps} of them",
                    a.pid
                ))
            });
        }
        Ok(())
    }

    /// Refuses a model call when any level's token budget is used up.
    pub(crate) fn check_tokens(&self) -> Result<(), Limit> {
        for a in self.chain() {
            let Some(max) = a.max_tokens else { continue };
            let used = a.tokens.load(Ordering::Acquire);
            if used >= max {
                return Err(self.tokens_exhausted(a, used, max));
            }
        }
        Ok(())
    }

    /// Reserves `estimate` tokens (the prompt's estimate) at every level when
    /// a model call starts, if every level still has room; the call's real
    /// count replaces it afterwards ([`Account::settle_tokens`]). So calls
    /// running at the same time see each other's share, and a tree overshoots
    /// its token budget by at most the one call that started with room left.
    pub(crate) fn reserve_tokens(&self, estimate: u64) -> Result<(), Limit> {
        for a in self.chain() {
            let max = a.max_tokens.unwrap_or(u64::MAX);
            if let Err(used) =
                a.tokens.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < max).then(|| n.saturating_add(estimate)))
            {
                for b in self.chain().take_while(|b| !std::ptr::eq(*b, a)) {
                    b.tokens.fetch_sub(estimate, Ordering::AcqRel);
                }
                return Err(self.tokens_exhausted(a, used, max));
            }
        }
        Ok(())
    }

    /// Replaces a reservation of `reserved` tokens by the `used` ones, at every level.
    pub(crate) fn settle_tokens(&self, reserved: u64, used: u64) {
        for a in self.chain() {
            if used >= reserved {
                a.tokens.fetch_add(used - reserved, Ordering::AcqRel);
            } else {
                a.tokens.fetch_sub(reserved - used, Ordering::AcqRel);
            }
        }
    }

    fn tokens_exhausted(&self, a: &Account, used: u64, max: u64) -> Limit {
        Limit(if std::ptr::eq(a, self) {
            format!("token budget exhausted: {used} of {max} tokens used")
        } else {
            format!(
                "token budget exhausted: the budget of process {} ({used} of {max} tokens used), shared by it and \
                 all its descendants, is used up",
                a.pid
            )
        })
    }

    /// Charges usage recorded before (a process restored from its journal).
    pub(crate) fn charge_restored(&self, steps: u64, tokens: u64) {
        for a in self.chain() {
            a.steps.fetch_add(steps, Ordering::AcqRel);
            a.tokens.fetch_add(tokens, Ordering::AcqRel);
        }
    }
}

/// Live processes of the kernel. A process takes a place in it and in its
/// tree's count when it starts ([`LiveCount::admit`]) and gives both back
/// when it ends ([`LiveCount::release`]).
#[derive(Debug, Default)]
pub(crate) struct LiveCount(AtomicUsize);

impl LiveCount {
    /// Takes a place for a new process of the tree of `account` (whose root
    /// is the tree's), within `per_tree` and `per_kernel`.
    pub(crate) fn admit(&self, account: &Account, per_tree: usize, per_kernel: usize) -> Result<(), Limit> {
        if self.0.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < per_kernel).then_some(n + 1)).is_err() {
            return Err(Limit(format!(
                "process cap reached: the kernel already runs {per_kernel} live processes, its limit \
                 (max_processes); wait for some to end or kill some"
            )));
        }
        let root = account.root();
        if root.live.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < per_tree).then_some(n + 1)).is_err() {
            self.0.fetch_sub(1, Ordering::AcqRel);
            return Err(Limit(format!(
                "process cap reached: the process tree of root process {} already has {per_tree} live processes, \
                 the most a tree may have (max_processes_per_tree); wait for a child to exit (its exit arrives as \
                 an [EVENT]) before starting another",
                root.pid
            )));
        }
        Ok(())
    }

    /// Takes a place without a check (a process restored from its journal).
    pub(crate) fn admit_restored(&self, account: &Account) {
        self.0.fetch_add(1, Ordering::AcqRel);
        account.root().live.fetch_add(1, Ordering::AcqRel);
    }

    /// Gives back the places of a process of `account`'s tree that ended.
    pub(crate) fn release(&self, account: &Account) {
        self.0.fetch_sub(1, Ordering::AcqRel);
        account.root().live.fetch_sub(1, Ordering::AcqRel);
    }
}
