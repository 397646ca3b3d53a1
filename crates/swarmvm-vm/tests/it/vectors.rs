//! The trie vectors of `tests/vectors/trie.json`: each case's root, reached three ways (one
//! update over a node store, then the removals as a second update; a trie rebuilt from the
//! sorted entries left; and the store compared with the one built from them), is the pinned
//! one, under rules 1 and 2's node hashing (`root`) and rules 3's (`binary_root`); and under
//! rules 3 every key of a case, and keys next to them, is proved present or absent against
//! it. `tests/vectors/recompute_root.py` checks the same roots from the spec alone.

use std::cell::RefCell;
use std::collections::BTreeMap;

use serde_json::Value;
use swarmvm_vm::{
    Hash32, NodeHashing, NodeStore, StateError, StoredNode, TrieChanges, TrieUpdate, build_sorted,
    prove, root_of_sorted, verify_proof,
};

/// A node store in memory.
#[derive(Default)]
struct Store(RefCell<BTreeMap<Vec<u8>, StoredNode>>);

impl NodeStore for Store {
    fn node(&self, path: &[u8]) -> Result<Option<StoredNode>, StateError> {
        Ok(self.0.borrow().get(path).cloned())
    }
}

impl Store {
    fn apply(&self, changes: TrieChanges) -> Hash32 {
        let mut nodes = self.0.borrow_mut();
        for path in changes.deletes {
            nodes.remove(&path);
        }
        for (path, node) in changes.writes {
            nodes.insert(path, node);
        }
        changes.root
    }
}

fn hex(v: &Value) -> Vec<u8> {
    let s = v.as_str().unwrap();
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

pub fn vectors(name: &str) -> Value {
    let path = format!("{}/../../tests/vectors/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn trie_vectors_give_their_pinned_roots() {
    let v = vectors("trie.json");
    let cases = v["cases"].as_array().unwrap();
    assert!(cases.len() >= 15);
    for case in cases {
        for (hashing, member) in [(NodeHashing::Flat, "root"), (NodeHashing::Binary, "binary_root")]
        {
            check_case(case, hashing, member);
        }
    }
}

fn check_case(case: &Value, hashing: NodeHashing, member: &str) {
    let name = format!("{} ({member})", case["name"].as_str().unwrap());
    let expected: Hash32 = case[member].as_str().unwrap().parse().unwrap();
    let entries: Vec<(Vec<u8>, Hash32)> = case["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (hex(&e[0]), Hash32::from_slice(&hex(&e[1])).unwrap()))
        .collect();
    let removed: Vec<Vec<u8>> =
        case["remove"].as_array().map_or_else(Vec::new, |r| r.iter().map(hex).collect());

    let store = Store::default();
    let mut update = TrieUpdate::open(&store, hashing).unwrap();
    for (key, leaf) in &entries {
        update.set(key, Some(*leaf)).unwrap();
    }
    let inserted = store.apply(update.finish());
    let mut update = TrieUpdate::open(&store, hashing).unwrap();
    for key in &removed {
        update.set(key, None).unwrap();
    }
    let root = if removed.is_empty() { inserted } else { store.apply(update.finish()) };
    assert_eq!(root, expected, "{name}: through a store");

    let mut left: Vec<(Vec<u8>, Hash32)> =
        entries.into_iter().filter(|(k, _)| !removed.contains(k)).collect();
    left.sort();
    assert_eq!(
        root_of_sorted(left.clone(), hashing),
        Some(expected),
        "{name}: from sorted entries"
    );
    let mut built = BTreeMap::new();
    build_sorted(left.clone(), hashing, &mut |path, node| {
        built.insert(path.to_vec(), node);
    });
    assert_eq!(*store.0.borrow(), built, "{name}: the store holds exactly the canonical trie");
    if hashing != NodeHashing::Binary {
        return;
    }
    // Every key left is proved present; keys around them (cut short, extended, one byte
    // changed) and the removed ones are proved absent, or present when they are there.
    let present: BTreeMap<Vec<u8>, Hash32> = left.into_iter().collect();
    let mut asked: Vec<Vec<u8>> = present.keys().cloned().collect();
    for key in present.keys().chain(&removed) {
        asked.push(key.clone());
        asked.push([key.as_slice(), b"x"].concat());
        if let Some((last, head)) = key.split_last() {
            asked.push(head.to_vec());
            asked.push([head, &[last ^ 0x01]].concat());
            asked.push([head, &[last ^ 0x80]].concat());
        }
    }
    asked.push(b"\xff\xff".to_vec());
    for key in asked {
        let proof = prove(&store, &key).unwrap();
        let leaf = present.get(&key);
        verify_proof(&proof, &key, leaf, &root)
            .unwrap_or_else(|e| panic!("{name}: key {key:02x?}: {e}"));
        let other = Hash32::digest(b"another leaf");
        let wrong = if leaf.is_some() { None } else { Some(&other) };
        assert!(verify_proof(&proof, &key, wrong, &root).is_err(), "{name}: {key:02x?} flipped");
    }
}
