//! Property: over random spawn trees with random requested rights, no child
//! ever holds a right its parent lacks; a request is granted exactly when the
//! parent holds every requested right.


use aos_abi::CapabilitySet;
use proptest::prelude::*;

const POOL: &[&str] = &[
    "fs:ro", "fs:rw", "net", "net:a.example", "net:b.example", "exec", "exec:net", "memory",
    "memory:shared/team", "timers", "spawn", "ipc", "driver:wordcount", "FS_WRITE", "NET_FETCH",
];

fn caps_strategy() -> impl Strategy<Value = Vec<&'static str>> {
    proptest::sample::subsequence(POOL, 0..=POOL.len())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, .. ProptestConfig::default() })]
    #[test]
    fn children_never_exceed_parents(
        root in caps_strategy(),
        nodes in proptest::collection::vec((any::<prop::sample::Index>(), caps_strategy()), 1..12),
    ) {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(async {
            let h = crate::support::harness_on(crate::support::backend_with_wordcount().await, |_| {}).await;
            let model = h.script("idle", &[r#"[SYS_CALL::SYS_READ_STDIN] {}"#]);
            let root_pid = h.kernel.spawn(h.req("root", &model, &root)).await.unwrap();
            let mut pids = vec![root_pid];
            for (idx, requested) in &nodes {
                let parent = pids[idx.index(pids.len())];
                let parent_caps = CapabilitySet::parse(h.kernel.info(parent).unwrap().capabilities).unwrap();
                let req_set = h.kernel.parse_grants(requested).unwrap();
                let mut req = h.req("child", &model, requested);
                req.parent = Some(parent);
                match h.kernel.spawn(req).await {
                    Ok(child) => {
                        prop_assert!(req_set.is_subset_of(&parent_caps));
                        let child_caps = CapabilitySet::parse(h.kernel.info(child).unwrap().capabilities).unwrap();
                        prop_assert_eq!(&child_caps, &req_set);
                        pids.push(child);
                    }
                    Err(e) => {
                        prop_assert!(!req_set.is_subset_of(&parent_caps), "refused {:?} from {:?}: {}", requested, parent_caps, e);
                        prop_assert!(e.to_string().starts_with("denied: the parent does not hold `"), "{}", e);
                    }
                }
            }
            for info in h.kernel.ps() {
                if let Some(pp) = info.parent {
                    let parent_caps = CapabilitySet::parse(h.kernel.info(pp).unwrap().capabilities).unwrap();
                    let caps = CapabilitySet::parse(&info.capabilities).unwrap();
                    prop_assert!(caps.is_subset_of(&parent_caps), "{} holds {} but parent {} holds {}", info.pid, caps, pp, parent_caps);
                }
            }
            let before: Vec<_> = h.kernel.ps().into_iter().map(|i| (i.pid, i.status)).collect();
            let killed = h.kernel.kill(root_pid).unwrap();
            prop_assert_eq!(killed.len(), pids.len());
            for pid in pids {
                let st = h.wait(pid).await;
                prop_assert_eq!(&st, &aos_kernel::ExitStatus::Killed, "{:?} before={:?}", h.kernel.logs(pid), before);
            }
            Ok(())
        })?;
    }
}
