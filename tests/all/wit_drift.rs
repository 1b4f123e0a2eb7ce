//! The guest SDK ships its own copy of the WIT ABI (so it can be published on
//! its own); it must never drift from `wit/`.

use std::collections::BTreeMap;
use std::path::Path;

fn tree(dir: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(base, &p, out);
            } else {
                let rel = p.strip_prefix(base).unwrap().display().to_string();
                out.insert(rel, std::fs::read_to_string(&p).unwrap());
            }
        }
    }
    walk(dir, dir, &mut out);
    out
}

#[test]
fn guest_sdk_wit_matches_the_abi() {
    let root = aos_tests::repo_root();
    let abi = tree(&root.join("wit"));
    let sdk = tree(&root.join("guest-sdk/wit"));
    assert!(abi.contains_key("worlds.wit") && abi.contains_key("deps/filesystem/package.wit"));
    for (k, v) in &abi {
        assert_eq!(sdk.get(k), Some(v), "guest-sdk/wit/{k} differs from wit/{k}: copy wit/ to guest-sdk/wit/ (`./dev sync-wit`)");
    }
    for k in sdk.keys() {
        assert!(abi.contains_key(k), "guest-sdk/wit/{k} is not in wit/");
    }
}
