//! Property: over random spawn trees, the kernel grants a child exactly what
//! an independent model of the delegation rules says (the rules are written
//! out below, not taken from `aos_abi::CapabilitySet`, so a bug in the
//! library's implication table or subset test fails here), refuses exactly
//! the rights the model says the parent lacks, and never lets a child hold
//! more than its parent.
//!
//! Requests are mostly subsets of the parent's rights plus, now and then, a
//! right from outside them; half the nodes hang under the newest process,
//! so trees get deep; a part of the spawns goes through the `SPAWN_AGENT`
//! syscall of a running parent (its model's reply), the rest through
//! `Kernel::spawn` (the control API's way in).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use proptest::prelude::*;

/// The delegation rules, written out independently of `aos_abi::caps`.
mod model {
    use std::collections::BTreeSet;

    pub type Rights = BTreeSet<String>;

    /// What `all` stands for: every built-in right but `ipc:any` (and no
    /// driver, no shared memory space).
    const ALL: &[&str] = &["fs:ro", "fs:rw", "net", "exec", "exec:net", "memory", "timers", "spawn", "ipc", "webhook"];

    /// The rights one grant, as written, stands for (itself and what it implies).
    pub fn expand(grant: &str) -> Vec<String> {
        let g = grant.trim();
        let names: &[&str] = match g {
            "all" => ALL,
            // A right and what it implies.
            "fs:rw" => &["fs:rw", "fs:ro"],
            "exec:net" => &["exec:net", "exec"],
            "ipc:any" => &["ipc:any", "ipc"],
            // Syscall names used as permissions (the original AgentOS's prompts).
            "FS_READ" => &["fs:ro"],
            "FS_WRITE" => &["fs:rw", "fs:ro"],
            "NET_FETCH" => &["net"],
            "SLEEP" => &["timers"],
            "SPAWN_AGENT" => &["spawn"],
            "SEND_MSG" => &["ipc"],
            _ => {
                // Host names are case-insensitive; nothing else implies anything.
                if let Some(host) = g.strip_prefix("net:") {
                    return vec![format!("net:{}", host.to_ascii_lowercase())];
                }
                return vec![g.to_string()];
            }
        };
        names.iter().map(|s| s.to_string()).collect()
    }

    pub fn rights(grants: &[String]) -> Rights {
        grants.iter().flat_map(|g| expand(g)).collect()
    }

    /// Whether a holder of `held` may hand `right` on: it holds it, or it is
    /// `net:HOST` and the holder has `net`. In particular `memory` does not
    /// give `memory:shared/NAME`, `net:HOST` does not give `net`, `ipc` does
    /// not give `ipc:any`, `fs:ro` does not give `fs:rw`.
    pub fn passes_on(held: &Rights, right: &str) -> bool {
        held.contains(right) || (right.starts_with("net:") && held.contains("net"))
    }

    /// The requested rights the parent cannot hand on (empty: granted).
    pub fn missing(parent: &Rights, requested: &[String]) -> Rights {
        rights(requested).into_iter().filter(|r| !passes_on(parent, r)).collect()
    }
}

use model::Rights;

/// Grants a root may start with.
const ROOT_POOL: &[&str] = &[
    "fs:ro", "fs:rw", "net", "net:a.example", "net:B.example", "exec", "exec:net", "memory", "memory:shared/team",
    "memory:shared/ops", "timers", "spawn", "ipc", "ipc:any", "webhook", "driver:wordcount", "all", "FS_READ",
    "FS_WRITE", "NET_FETCH", "SLEEP", "SPAWN_AGENT", "SEND_MSG",
];

/// Rights a child may ask for beyond what its parent holds.
const EXTRA_POOL: &[&str] = &[
    "fs:rw", "fs:ro", "net", "net:a.example", "net:C.example", "exec", "exec:net", "memory", "memory:shared/team",
    "memory:shared/other", "timers", "spawn", "ipc", "ipc:any", "webhook", "driver:wordcount", "all", "FS_WRITE",
    "NET_FETCH", "SPAWN_AGENT",
];

/// One node of a generated tree, before the model decides its fate.
#[derive(Debug, Clone)]
struct NodeGen {
    /// Hang under the newest process (deep trees) rather than `pick`.
    chain: bool,
    pick: prop::sample::Index,
    /// Through the parent's `SPAWN_AGENT` rather than `Kernel::spawn`.
    syscall: bool,
    /// Which of the parent's rights to ask for (by position, cycled).
    keep: Vec<bool>,
    extra: Option<&'static str>,
}

fn node_strategy() -> impl Strategy<Value = NodeGen> {
    (
        any::<bool>(),
        any::<prop::sample::Index>(),
        prop::bool::weighted(0.4),
        prop::collection::vec(prop::bool::weighted(0.7), 16),
        prop::option::weighted(0.3, prop::sample::select(EXTRA_POOL)),
    )
        .prop_map(|(chain, pick, syscall, keep, extra)| NodeGen { chain, pick, syscall, keep, extra })
}

fn root_strategy() -> impl Strategy<Value = Vec<&'static str>> {
    (proptest::sample::subsequence(ROOT_POOL, 0..=ROOT_POOL.len()), prop::bool::weighted(0.8)).prop_map(
        |(mut g, spawn)| {
            if spawn {
                g.push("spawn");
            }
            g
        },
    )
}

/// What the model says happens to a node.
#[derive(Debug, Clone)]
enum Fate {
    Granted(Rights),
    /// Refused for these rights.
    Denied(Rights),
    /// Through `SPAWN_AGENT` by a parent that may not call it.
    NoSpawnRight,
}

#[derive(Debug, Clone)]
struct Node {
    parent: usize,
    syscall: bool,
    request: Vec<String>,
    fate: Fate,
    /// For a `SPAWN_AGENT` node: which of its parent's calls it is (1-based).
    call_no: usize,
}

/// Lays out the tree by the model alone: each node's parent, request and fate.
fn plan(root: &Rights, gens: &[NodeGen]) -> Vec<Node> {
    // Node 0 is the root; `alive` holds the nodes that were started.
    let mut nodes: Vec<Node> =
        vec![Node { parent: 0, syscall: false, request: vec![], fate: Fate::Granted(root.clone()), call_no: 0 }];
    let mut alive = vec![0usize];
    let mut calls: BTreeMap<usize, usize> = BTreeMap::new();
    for g in gens {
        // A `SPAWN_AGENT` not under the newest process comes from one that may call it, if any.
        let callers: Vec<usize> = alive
            .iter()
            .copied()
            .filter(|&a| matches!(&nodes[a].fate, Fate::Granted(r) if r.contains("spawn")))
            .collect();
        let parent = match (g.chain, g.syscall && !callers.is_empty()) {
            (true, _) => *alive.last().unwrap(),
            (false, true) => callers[g.pick.index(callers.len())],
            (false, false) => alive[g.pick.index(alive.len())],
        };
        let Fate::Granted(held) = &nodes[parent].fate else { unreachable!() };
        let held = held.clone();
        let mut request: Vec<String> =
            held.iter().enumerate().filter(|(i, _)| g.keep[i % g.keep.len()]).map(|(_, r)| r.clone()).collect();
        request.extend(g.extra.map(str::to_string));
        let missing = model::missing(&held, &request);
        let fate = if g.syscall && !model::passes_on(&held, "spawn") {
            Fate::NoSpawnRight
        } else if missing.is_empty() {
            Fate::Granted(model::rights(&request))
        } else {
            Fate::Denied(missing)
        };
        let call_no = if g.syscall {
            let n = calls.entry(parent).or_default();
            *n += 1;
            *n
        } else {
            0
        };
        if matches!(fate, Fate::Granted(_)) {
            alive.push(nodes.len());
        }
        nodes.push(Node { parent, syscall: g.syscall, request, fate, call_no });
    }
    nodes
}

/// The names between backticks in a denial.
fn backticked(s: &str) -> Rights {
    s.split('`').skip(1).step_by(2).map(str::to_string).collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, .. ProptestConfig::default() })]
    #[test]
    fn children_get_exactly_what_the_rules_allow(
        root in root_strategy(),
        gens in proptest::collection::vec(node_strategy(), 1..28),
    ) {
        let root: Vec<String> = root.into_iter().map(str::to_string).collect();
        let nodes = plan(&model::rights(&root), &gens);
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(async {
            let h = crate::support::harness_on(crate::support::backend_with_wordcount().await, |_| {}).await;
            // Each process's script: its SPAWN_AGENT children in order, then it waits on stdin.
            let paths: Vec<String> = (0..nodes.len()).map(|i| h.dir.path().join(format!("node{i}.json")).display().to_string()).collect();
            for (i, path) in paths.iter().enumerate() {
                let mut replies: Vec<String> = nodes
                    .iter()
                    .enumerate()
                    .filter(|(j, c)| *j != 0 && c.syscall && c.parent == i)
                    .map(|(j, c)| {
                        let args = serde_json::json!({"task": format!("node {j}"), "permissions": c.request, "model": paths[j]});
                        format!("[SYS_CALL::SPAWN_AGENT] {args}")
                    })
                    .collect();
                replies.push("[SYS_CALL::SYS_READ_STDIN] {}".into());
                std::fs::write(path, serde_json::to_string(&replies).unwrap()).unwrap();
            }
            let mut req = h.req("node 0", &paths[0], &[]);
            req.caps = h.kernel.parse_grants(&root).unwrap();
            let mut pids: Vec<Option<u64>> = vec![None; nodes.len()];
            pids[0] = Some(h.kernel.spawn(req).await.unwrap());
            for (i, node) in nodes.iter().enumerate().skip(1) {
                let parent = pids[node.parent].expect("a node's parent was started (plan picks only started ones)");
                let outcome: Result<u64, String> = if node.syscall {
                    // The parent's reply number `call_no` was this SPAWN_AGENT; its result is in the next request.
                    let t0 = std::time::Instant::now();
                    while h.requests(parent).len() <= node.call_no {
                        prop_assert!(t0.elapsed() < Duration::from_secs(20), "pid {parent} never made call {}: {:?}", node.call_no, h.kernel.logs(parent));
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                    let seen = h.seen(parent, node.call_no);
                    let ok_tag = format!("[RESULT SPAWN_AGENT#{}] ", node.call_no);
                    let err_tag = format!("[ERROR SPAWN_AGENT#{}] ", node.call_no);
                    if let Some(at) = seen.find(&ok_tag) {
                        let v: serde_json::Value = serde_json::Deserializer::from_str(&seen[at + ok_tag.len()..]).into_iter().next().unwrap().unwrap();
                        Ok(v["pid"].as_u64().unwrap())
                    } else {
                        let at = seen.find(&err_tag).unwrap_or_else(|| panic!("no result of call {} in {seen}", node.call_no));
                        Err(seen[at + err_tag.len()..].lines().next().unwrap().to_string())
                    }
                } else {
                    let mut req = h.req(&format!("node {i}"), &paths[i], &[]);
                    req.caps = h.kernel.parse_grants(&node.request).unwrap();
                    req.parent = Some(parent);
                    h.kernel.spawn(req).await.map_err(|e| e.to_string())
                };
                let how = if node.syscall { "SPAWN_AGENT" } else { "Kernel::spawn" };
                match (&node.fate, outcome) {
                    (Fate::Granted(expected), Ok(pid)) => {
                        let info = h.kernel.info(pid).unwrap();
                        let got: Rights = info.capabilities.iter().cloned().collect();
                        prop_assert_eq!(&got, expected, "node {} ({}) asked for {:?}", i, how, node.request);
                        prop_assert_eq!(info.parent, Some(parent));
                        pids[i] = Some(pid);
                    }
                    (Fate::Denied(missing), Err(e)) => {
                        // The exact wording of each way in, with the missing rights named.
                        let names = if node.syscall {
                            e.strip_prefix("denied: cannot grant ").and_then(|r| r.split_once(" to a child: this process does not hold it")).map(|(n, _)| n)
                        } else {
                            e.strip_prefix("denied: the parent does not hold ").and_then(|r| r.strip_suffix("; request only rights the parent holds"))
                        };
                        prop_assert!(names.is_some(), "node {} ({}): {}", i, how, e);
                        let names = names.unwrap();
                        prop_assert_eq!(&backticked(names), missing, "node {} ({}) asked for {:?}: {}", i, how, node.request, e);
                    }
                    (Fate::NoSpawnRight, Err(e)) => {
                        prop_assert_eq!(e, "denied: capability `spawn` not granted (needed by SPAWN_AGENT)");
                    }
                    (fate, got) => prop_assert!(false, "node {} ({}) asked for {:?}: the model says {:?}, the kernel {:?}", i, how, node.request, fate, got),
                }
            }
            // No process holds a right its parent could not hand on (by the model's rules).
            let started: Vec<u64> = pids.iter().flatten().copied().collect();
            prop_assert_eq!(h.kernel.ps().len(), started.len(), "{:?}", h.kernel.ps());
            for info in h.kernel.ps() {
                if let Some(pp) = info.parent {
                    let held: Rights = h.kernel.info(pp).unwrap().capabilities.into_iter().collect();
                    for r in &info.capabilities {
                        prop_assert!(model::passes_on(&held, r), "{} holds {} but its parent {} holds {:?}", info.pid, r, pp, held);
                    }
                }
            }
            let killed = h.kernel.kill(pids[0].unwrap()).unwrap();
            prop_assert_eq!(killed.len(), started.len());
            for pid in started {
                prop_assert_eq!(h.wait(pid).await, aos_kernel::ExitStatus::Killed);
            }
            Ok(())
        })?;
    }
}

/// The model itself, on the rules the property relies on.
#[test]
fn the_model_states_the_rules() {
    let r = |g: &[&str]| model::rights(&g.iter().map(|s| s.to_string()).collect::<Vec<_>>());
    let set = |g: &[&str]| g.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
    assert_eq!(r(&["fs:rw"]), set(&["fs:rw", "fs:ro"]));
    assert_eq!(r(&["exec:net"]), set(&["exec:net", "exec"]));
    assert_eq!(r(&["net:A.example"]), set(&["net:a.example"]));
    assert!(model::passes_on(&r(&["net"]), "net:x.example"));
    assert!(!model::passes_on(&r(&["net:x.example"]), "net"));
    assert!(!model::passes_on(&r(&["memory"]), "memory:shared/team"));
    assert!(!model::passes_on(&r(&["memory:shared/team"]), "memory"));
    assert!(!model::passes_on(&r(&["all"]), "ipc:any"));
    assert!(!model::passes_on(&r(&["all"]), "driver:wordcount"));
    assert!(model::passes_on(&r(&["ipc:any"]), "ipc"));
    assert_eq!(model::missing(&r(&["fs:ro"]), &["FS_WRITE".to_string()]), set(&["fs:rw"]));
}
