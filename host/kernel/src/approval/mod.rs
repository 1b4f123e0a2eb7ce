//! Approvals: the operator's say over single calls, between resolution and
//! execution ([`crate::dispatch`]'s authorize step), for every syscall
//! source alike.
//!
//! * A [`Policy`] is a list of [`Rule`]s (first match wins) and a default
//!   [`Decision`]: `allow`, `ask` or `deny`. Presets: [`Policy::never`]
//!   (allow everything), [`Policy::ask_dangerous`], [`Policy::ask_all`].
//! * A process holds its [`Chain`]: its ancestors' policies and its own. A
//!   call's decision is the strictest of them (`deny` > `ask` > `allow`),
//!   so a child can make its tree stricter, never looser.
//! * `ask`: the call is not run. It becomes a [`PendingApproval`] in the
//!   kernel's [`Approvals`] registry; the process shows as
//!   `approval` in `ps`/`top` until the operator approves it (`aos approve`),
//!   denies it (`aos deny`, the model gets `denied: by the operator: REASON`)
//!   or it times out (a denial). "Approve always" adds an `allow` rule for
//!   the call's pattern to the process tree's shared list, which turns later
//!   `ask`s of that pattern into `allow` — never a `deny`.
//! * Everything survives a restart, through the journal: each process's
//!   policy chain (with it), a pending approval
//!   ([`KernelEvent::ApprovalAsked`](crate::KernelEvent::ApprovalAsked)) —
//!   the restored process asks again under the same id and expiry before
//!   the rest of its reply runs —, the go-ahead
//!   ([`KernelEvent::ApprovalGranted`](crate::KernelEvent::ApprovalGranted),
//!   durable before the call runs: an approved call cut by a crash is
//!   reported as interrupted, never run twice) and "always" rules
//!   ([`KernelEvent::ApprovalRule`](crate::KernelEvent::ApprovalRule)).

mod policy;

pub use policy::{CallFacts, Decision, PendingApproval, Policy, Rule};

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::oneshot;

type Pid = u64;

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// A process's policies: its ancestors' and its own (journalled with it),
/// and its tree's "approved always" rules.
#[derive(Debug, Clone, Default)]
pub struct Chain {
    pub policies: Vec<Policy>,
    always: Arc<Mutex<Vec<Rule>>>,
}

impl Chain {
    /// The chain of a root process.
    pub fn root(policy: Policy) -> Chain {
        Chain { policies: vec![policy], always: Arc::default() }
    }

    /// A restored process's chain, sharing its restored parent's "always"
    /// rules (those of before the restart are not kept).
    pub fn restored(policies: Vec<Policy>, parent: Option<&Chain>) -> Chain {
        Chain { policies, always: parent.map(|p| p.always.clone()).unwrap_or_default() }
    }

    /// A child's: this chain, plus `own` if given (it can only add
    /// strictness: every policy of the chain still applies), sharing the
    /// tree's "always" rules.
    pub fn child(&self, own: Option<Policy>) -> Chain {
        let mut policies = self.policies.clone();
        policies.extend(own);
        Chain { policies, always: self.always.clone() }
    }

    pub fn decide(&self, call: &CallFacts) -> Decision {
        let strictest = self.policies.iter().map(|p| p.decide(call)).max().unwrap_or(Decision::Allow);
        if strictest == Decision::Ask && self.always.lock().iter().any(|r| r.matches(call)) {
            return Decision::Allow;
        }
        strictest
    }

    pub fn approve_always(&self, rule: Rule) {
        let mut a = self.always.lock();
        if !a.contains(&rule) {
            a.push(rule);
        }
    }

    pub fn always_rules(&self) -> Vec<Rule> {
        self.always.lock().clone()
    }
}

/// The operator's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Approve { always: bool },
    Deny { reason: Option<String> },
}

struct Waiting {
    info: PendingApproval,
    always: Rule,
    chain: Chain,
    tx: oneshot::Sender<Answer>,
}

/// The kernel's pending approvals.
#[derive(Default)]
pub struct Approvals {
    next: AtomicU64,
    pending: Mutex<BTreeMap<u64, Waiting>>,
}

/// Why an answer was not taken.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AnswerError {
    #[error("no pending approval {0}: it was answered, timed out, or its process ended (see `aos approvals`)")]
    NotPending(u64),
}

impl Approvals {
    /// Registers `call` of `pid`; the receiver gets the answer. `again`:
    /// the approval this call had before a restart (same id and expiry).
    pub(crate) fn ask(
        &self,
        pid: Pid,
        call: &CallFacts,
        chain: &Chain,
        timeout: std::time::Duration,
        again: Option<PendingApproval>,
    ) -> (PendingApproval, oneshot::Receiver<Answer>) {
        let always = Rule::always_for(call);
        let info = match again {
            Some(before) => {
                self.reserve(before.id);
                PendingApproval { always_rule: always.describe(), ..before }
            }
            None => {
                let now = now_ms();
                PendingApproval {
                    id: self.next.fetch_add(1, Ordering::Relaxed) + 1,
                    pid,
                    syscall: call.name.to_string(),
                    args: call.args.clone(),
                    asked_at_ms: now,
                    expires_at_ms: now.saturating_add(timeout.as_millis() as u64),
                    always_rule: always.describe(),
                }
            }
        };
        let (tx, rx) = oneshot::channel();
        self.pending.lock().insert(info.id, Waiting { info: info.clone(), always, chain: chain.clone(), tx });
        (info, rx)
    }

    /// Makes sure later approvals get ids above `id` (one restored from the journal).
    pub(crate) fn reserve(&self, id: u64) {
        self.next.fetch_max(id, Ordering::Relaxed);
    }

    /// Forgets `id` (answered elsewhere, timed out, or its process gone).
    pub(crate) fn withdraw(&self, id: u64) {
        self.pending.lock().remove(&id);
    }

    pub fn list(&self) -> Vec<PendingApproval> {
        self.pending.lock().values().map(|w| w.info.clone()).collect()
    }

    /// Answers `id`; "always" adds its rule to the tree first.
    pub fn answer(&self, id: u64, answer: Answer) -> Result<PendingApproval, AnswerError> {
        let w = self.pending.lock().remove(&id).ok_or(AnswerError::NotPending(id))?;
        if answer == (Answer::Approve { always: true }) {
            w.chain.approve_always(w.always.clone());
        }
        let info = w.info.clone();
        // A process that ended meanwhile dropped its receiver: nothing to do.
        let _ = w.tx.send(answer);
        Ok(info)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn facts<'a>(name: &'a str, args: &'a Value) -> CallFacts<'a> {
        CallFacts { name, args, target_exists: false }
    }

    #[test]
    fn strictest_policy_of_the_chain_decides() {
        let root = Chain::root(Policy::ask_dangerous());
        let child = root.child(Some(Policy::never()));
        let args = json!({"cmd": "ls"});
        assert_eq!(child.decide(&facts("EXEC_CMD", &args)), Decision::Ask, "a child's `never` cannot loosen its parent");
        let strict = root.child(Some(Policy { rules: vec![Rule::new("EXEC_CMD", Decision::Deny)], default: Decision::Allow }));
        assert_eq!(strict.decide(&facts("EXEC_CMD", &args)), Decision::Deny);
        assert_eq!(root.decide(&facts("EXEC_CMD", &args)), Decision::Ask, "the parent is not made stricter by its child");
    }

    #[test]
    fn always_turns_ask_into_allow_never_deny() {
        let root = Chain::root(Policy::ask_dangerous());
        let child = root.child(Some(Policy { rules: vec![Rule::new("FS_DELETE", Decision::Deny)], default: Decision::Allow }));
        let git = json!({"cmd": "git status"});
        root.approve_always(Rule::always_for(&facts("EXEC_CMD", &git)));
        assert_eq!(child.decide(&facts("EXEC_CMD", &git)), Decision::Allow, "shared by the tree");
        assert_eq!(child.decide(&facts("EXEC_CMD", &json!({"cmd": "rm -rf x"}))), Decision::Ask, "other commands still ask");
        let del = json!({"path": "a.txt"});
        child.approve_always(Rule::always_for(&facts("FS_DELETE", &del)));
        assert_eq!(child.decide(&facts("FS_DELETE", &del)), Decision::Deny);
    }

    #[test]
    fn rules_match_their_arguments() {
        let p = Policy {
            rules: vec![
                Rule { hosts: Some(vec!["*.example.com".into(), "api.test".into()]), ..Rule::new("NET_FETCH", Decision::Allow) },
                Rule { path: Some("out/*".into()), ..Rule::new("FS_*", Decision::Allow) },
            ],
            default: Decision::Ask,
        };
        let a = json!({"url": "https://docs.example.com/x"});
        assert_eq!(p.decide(&facts("NET_FETCH", &a)), Decision::Allow);
        let b = json!({"url": "https://user@evil.com:443/example.com"});
        assert_eq!(p.decide(&facts("NET_FETCH", &b)), Decision::Ask);
        let c = json!({"url": "http://example.com.evil.net/"});
        assert_eq!(p.decide(&facts("NET_FETCH", &c)), Decision::Ask);
        let d = json!({"path": "/workspace/out/r.txt"});
        assert_eq!(p.decide(&facts("FS_WRITE", &d)), Decision::Allow);
        let e = json!({"path": "notes.txt"});
        assert_eq!(p.decide(&facts("FS_WRITE", &e)), Decision::Ask);
        use policy::glob;
        assert!(glob("a*b*c", "axxbyyc") && !glob("a*b*c", "axxbyy") && glob("*", ""));
    }

    #[test]
    fn ask_dangerous_asks_for_overwrites_only() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("notes.txt"), "x").unwrap();
        let p = Policy::ask_dangerous();
        let over = json!({"path": "notes.txt", "content": "y"});
        let new = json!({"path": "new.txt", "content": "y"});
        assert_eq!(p.decide(&CallFacts::new("FS_WRITE", &over, dir.path())), Decision::Ask);
        assert_eq!(p.decide(&CallFacts::new("FS_WRITE", &new, dir.path())), Decision::Allow);
        assert_eq!(p.decide(&CallFacts::new("FS_READ", &over, dir.path())), Decision::Allow);
        assert_eq!(Policy::preset("nope").unwrap_err(), "unknown approval mode `nope`: use never, ask-dangerous or ask-all");
    }
}
