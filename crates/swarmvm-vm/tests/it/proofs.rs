//! Proofs over random states: every present and absent id is proved against the root, and
//! any one-byte change to the value, the proof or the root makes the proof fail.

use std::collections::BTreeMap;

use proptest::prelude::*;
use swarmvm_vm::{
    Hash32, MemoryState, NodeHashing, NodeStore, ProofError, Record, StateError, StoredNode, Table,
    build_sorted, encode_entry, encode_key, leaf_hash, prove, verify_proof,
};

/// A trie's nodes in memory.
struct Nodes(BTreeMap<Vec<u8>, StoredNode>);

impl NodeStore for Nodes {
    fn node(&self, path: &[u8]) -> Result<Option<StoredNode>, StateError> {
        Ok(self.0.get(path).cloned())
    }
}

/// Ids with shared prefixes, in a few tables, so that tries branch at every depth.
fn id() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(vec!['S', '0', '1', '9', '/', 'a', 'é']), 0..7)
        .prop_map(|c| c.into_iter().collect())
}

fn table() -> impl Strategy<Value = Table> {
    prop::sample::select(vec![Table::Student, Table::Nonce, Table::Wallet, Table::Token])
}

fn record(table: Table, n: u64) -> Record {
    match table {
        Table::Student => Record::Student { name: format!("N{n}").into(), department: "D".into() },
        Table::Nonce => Record::Nonce { last: n },
        Table::Wallet => Record::Wallet { label: "w".into(), key: format!("{{\"k\":{n}}}").into() },
        _ => Record::TokenUsed,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn every_proof_verifies_and_no_one_byte_change_does(
        present in prop::collection::vec((table(), id(), 0..1000u64), 0..60),
        absent in prop::collection::vec((table(), id()), 1..12),
        flip in 1..=255u8,
        at in any::<prop::sample::Index>(),
    ) {
        let entries: BTreeMap<(Table, String), Record> =
            present.into_iter().map(|(t, i, n)| ((t, i), record(t, n))).collect();
        let state = MemoryState::from_entries(
            entries.iter().map(|((t, id), r)| (*t, id.clone(), r.clone())),
        )
        .unwrap();
        let mut nodes = BTreeMap::new();
        let leaves: BTreeMap<Vec<u8>, (Vec<u8>, Hash32)> = entries
            .iter()
            .map(|((t, id), r)| {
                let mut entry = Vec::new();
                encode_entry(*t, id, r, &mut entry);
                let leaf = leaf_hash(&entry);
                (encode_key(*t, id), (entry, leaf))
            })
            .collect();
        let root = build_sorted(
            leaves.iter().map(|(k, (_, l))| (k.clone(), *l)),
            NodeHashing::Binary,
            &mut |path, node| {
                nodes.insert(path.to_vec(), node);
            },
        )
        .unwrap();
        // The in-memory state, built another way, has the same root.
        prop_assert_eq!(state.root(), root);
        let nodes = Nodes(nodes);
        let asked = leaves.keys().cloned().chain(absent.iter().map(|(t, i)| encode_key(*t, i)));
        for key in asked {
            let proof = prove(&nodes, &key).unwrap();
            let claim = leaves.get(&key);
            let leaf = claim.map(|(_, l)| l);
            prop_assert!(verify_proof(&proof, &key, leaf, &root).is_ok(), "{:?}", key);
            // The proof with any one byte changed.
            let i = at.index(proof.len());
            let mut bent = proof.clone();
            bent[i] ^= flip;
            prop_assert!(verify_proof(&bent, &key, leaf, &root).is_err(), "byte {} of {:?}", i, key);
            // Another root.
            let mut other = *root.as_bytes();
            other[i % 32] ^= flip;
            let other = Hash32(other);
            let err = verify_proof(&proof, &key, leaf, &other).unwrap_err();
            prop_assert!(matches!(err, ProofError::OtherRoot { .. }), "{}", err);
            // Another value: one byte of the entry changed; or a value claimed where none is.
            match claim {
                Some((entry, _)) => {
                    let mut changed = entry.clone();
                    let j = at.index(changed.len());
                    changed[j] ^= flip;
                    let wrong = leaf_hash(&changed);
                    prop_assert!(verify_proof(&proof, &key, Some(&wrong), &root).is_err());
                    prop_assert!(verify_proof(&proof, &key, None, &root).is_err());
                }
                None => {
                    let made_up = leaf_hash(b"made up");
                    prop_assert!(verify_proof(&proof, &key, Some(&made_up), &root).is_err());
                }
            }
        }
    }
}
