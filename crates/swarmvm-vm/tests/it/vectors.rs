//! The trie vectors of `tests/vectors/trie.json`: each case's root, reached three ways (one
//! update over a node store, then the removals as a second update; a trie rebuilt from the
//! sorted entries left; and the store compared with the one built from them), is the pinned
//! one. `tests/vectors/recompute_root.py` checks the same roots from the spec alone.

use std::cell::RefCell;
use std::collections::BTreeMap;

use serde_json::Value;
use swarmvm_vm::{
    Hash32, NodeStore, StateError, StoredNode, TrieChanges, TrieUpdate, build_sorted,
    root_of_sorted,
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
    assert!(cases.len() >= 10);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let expected: Hash32 = case["root"].as_str().unwrap().parse().unwrap();
        let entries: Vec<(Vec<u8>, Hash32)> = case["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| (hex(&e[0]), Hash32::from_slice(&hex(&e[1])).unwrap()))
            .collect();
        let removed: Vec<Vec<u8>> =
            case["remove"].as_array().map_or_else(Vec::new, |r| r.iter().map(hex).collect());

        let store = Store::default();
        let mut update = TrieUpdate::open(&store).unwrap();
        for (key, leaf) in &entries {
            update.set(key, Some(*leaf)).unwrap();
        }
        let inserted = store.apply(update.finish());
        let mut update = TrieUpdate::open(&store).unwrap();
        for key in &removed {
            update.set(key, None).unwrap();
        }
        let root = if removed.is_empty() { inserted } else { store.apply(update.finish()) };
        assert_eq!(root, expected, "{name}: through a store");

        let mut left: Vec<(Vec<u8>, Hash32)> =
            entries.into_iter().filter(|(k, _)| !removed.contains(k)).collect();
        left.sort();
        assert_eq!(root_of_sorted(left.clone()), Some(expected), "{name}: from sorted entries");
        let mut built = BTreeMap::new();
        build_sorted(left, &mut |path, node| {
            built.insert(path.to_vec(), node);
        });
        assert_eq!(*store.0.borrow(), built, "{name}: the store holds exactly the canonical trie");
    }
}
