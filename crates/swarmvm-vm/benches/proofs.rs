//! Proofs against the state root (rules 3): their size at 1 thousand to 10 million entries,
//! and how fast they are made and checked.
//!
//! `cargo bench -p swarmvm-vm --bench proofs`. Targets: at most 1 KiB at a million entries;
//! at least 10,000 proofs served per second per core (see also the ledger's `proofs` bench,
//! which reads them from redb).
//!
//! Ids are the demo's (`S0000001`, students) and wallet ids (43 base64url characters of a
//! hash, wallets). Each trie is built from its sorted entries ([`build_sorted`]) into memory
//! (about 2 GiB at 10 million entries).
#![allow(missing_docs, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use swarmvm_vm::{
    Hash32, NodeHashing, NodeStore, StateError, StoredNode, Table, build_sorted, encode_key,
    leaf_hash, prove, verify_proof,
};

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct Nodes(BTreeMap<Vec<u8>, StoredNode>);

impl NodeStore for Nodes {
    fn node(&self, path: &[u8]) -> Result<Option<StoredNode>, StateError> {
        Ok(self.0.get(path).cloned())
    }
}

/// The demo's id for entry `i` (`S0000001` on; eight digits from ten million).
fn student(i: u64) -> String {
    if i < 10_000_000 { format!("S{i:07}") } else { format!("S{i:08}") }
}

/// A wallet id: 43 base64url characters of SHA-256(i).
fn wallet(i: u64) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let h = Hash32::digest(&i.to_le_bytes());
    let bits = h.as_bytes();
    (0..43)
        .map(|k| {
            let bit = k * 6;
            let (byte, shift) = (bit / 8, bit % 8);
            let word = u16::from(bits[byte]) << 8 | u16::from(*bits.get(byte + 1).unwrap_or(&0));
            ALPHABET[usize::from((word >> (10 - shift)) & 63)] as char
        })
        .collect()
}

/// The trie of `n` entries of `table` with ids `id(0..n)`, every node kept; and the root.
fn trie(table: Table, n: u64, id: &dyn Fn(u64) -> String) -> (Nodes, Hash32) {
    let mut keys: Vec<Vec<u8>> = (0..n).map(|i| encode_key(table, &id(i))).collect();
    keys.sort_unstable();
    let mut nodes = BTreeMap::new();
    let root = build_sorted(
        keys.into_iter().map(|k| {
            let leaf = leaf_hash(&k);
            (k, leaf)
        }),
        NodeHashing::Binary,
        &mut |path, node| {
            nodes.insert(path.to_vec(), node);
        },
    )
    .unwrap();
    (Nodes(nodes), root)
}

/// Proof sizes (min, mean, max bytes) for 200 present and 50 absent ids among `n`.
fn sizes(table: Table, n: u64, id: &dyn Fn(u64) -> String) -> (usize, usize, usize) {
    let present: Vec<Vec<u8>> = (0..200).map(|k| encode_key(table, &id(k * n / 200))).collect();
    let absent: Vec<Vec<u8>> = (0..50).map(|k| encode_key(table, &id(n + 1 + k))).collect();
    let asked: Vec<Vec<u8>> = present.iter().chain(&absent).cloned().collect();
    let (nodes, root) = trie(table, n, id);
    let mut lens = Vec::new();
    for key in &asked {
        let proof = prove(&nodes, key).unwrap();
        let leaf = present.contains(key).then(|| leaf_hash(key));
        verify_proof(&proof, key, leaf.as_ref(), &root).unwrap();
        lens.push(proof.len());
    }
    let mean = lens.iter().sum::<usize>() / lens.len();
    (*lens.iter().min().unwrap(), mean, *lens.iter().max().unwrap())
}

fn bench(c: &mut Criterion) {
    eprintln!("proof bytes (min / mean / max over 200 present and 50 absent ids)");
    for n in [1_000u64, 100_000, 1_000_000, 10_000_000] {
        let (lo, mean, hi) = sizes(Table::Student, n, &student);
        eprintln!("  {n:>10} students S0000001…: {lo:>4} / {mean:>4} / {hi:>4}");
        let (lo, mean, hi) = sizes(Table::Wallet, n, &wallet);
        eprintln!("  {n:>10} wallet ids:         {lo:>4} / {mean:>4} / {hi:>4}");
    }

    // Making and checking one proof at a million entries.
    let n = 1_000_000u64;
    let keys: Vec<Vec<u8>> = (0..n).map(|i| encode_key(Table::Student, &student(i))).collect();
    let (nodes, root) = trie(Table::Student, n, &student);
    let mut group = c.benchmark_group("proofs at 1M entries");
    group.sample_size(20).measurement_time(Duration::from_secs(5));
    let mut i = 0usize;
    group.bench_function("prove (in memory)", |b| {
        b.iter(|| {
            i = (i + 7919) % keys.len();
            black_box(prove(&nodes, &keys[i]).unwrap())
        });
    });
    let proofs: Vec<(Vec<u8>, Hash32, Vec<u8>)> = (0..1000)
        .map(|k| {
            let key = keys[k * 997 % keys.len()].clone();
            (prove(&nodes, &key).unwrap(), leaf_hash(&key), key)
        })
        .collect();
    let mut j = 0usize;
    group.bench_function("verify", |b| {
        b.iter(|| {
            j = (j + 1) % proofs.len();
            let (proof, leaf, key) = &proofs[j];
            verify_proof(proof, key, Some(leaf), &root).unwrap();
        });
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
