//! Signed contracts per second through the whole peer path: signature verification (on
//! every core), execution, and one redb commit (fsync) per batch of 1,000.
//!
//! `cargo bench -p swarmvm-ledger --bench contracts`. Target: at least 20,000 contracts/s;
//! rules 3 (binary node hashing) at most 10% slower than rules 2, and rules 4 (batched
//! ZIP-215 signatures) against rules 3, measured in the same run.
//! Each sample applies fresh batches to one growing ledger (signing happens outside the
//! timed part). Contracts mix `register_student`, `add_course` + `register_student`, and
//! `vote_proposal`, from 16 wallets.
#![allow(missing_docs, clippy::unwrap_used)]

use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use swarmvm_bundle::{verify_local, verify_local_contracts_under};
use swarmvm_ledger::Ledger;
use swarmvm_primitives::Rules;
use swarmvm_test_support::net::{TestNet, course, student, vote};

const BATCH: usize = 1000;

/// One ledger fed batches under one rules version, and what its next batch holds.
struct Run<'n> {
    net: &'n TestNet,
    rules: Rules,
    ledger: Ledger,
    nonces: Vec<u64>,
    counter: usize,
    _dir: tempfile::TempDir,
}

impl<'n> Run<'n> {
    fn new(net: &'n TestNet, rules: Rules) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut ledger = Ledger::open(&dir.path().join("bench.redb")).unwrap();
        let snapshot = ledger.snapshot().unwrap();
        let register =
            verify_local(&net.tokens, &[], &net.network, &snapshot, net.issued_at).unwrap();
        drop(snapshot);
        ledger.commit(&register.with_local_rules(rules)).unwrap();
        let nonces = vec![0u64; net.peers.len()];
        Self { net, rules, ledger, nonces, counter: 0, _dir: dir }
    }

    fn batch(&mut self) -> Vec<String> {
        (0..BATCH)
            .map(|_| {
                let n = self.counter;
                self.counter += 1;
                let peer = n % self.net.peers.len();
                self.nonces[peer] += 1;
                let actions = match n % 3 {
                    0 => vec![student(&format!("S{n}"))],
                    1 => vec![course(&format!("C{n}")), student(&format!("T{n}"))],
                    _ => vec![vote(&format!("P{}", n / 48))],
                };
                self.net.contract(peer, self.nonces[peer], &actions)
            })
            .collect()
    }

    /// Verifies, executes and commits `contracts`; the time it took.
    fn apply(&mut self, contracts: &[String]) -> Duration {
        let start = Instant::now();
        let snapshot = self.ledger.snapshot().unwrap();
        let batch =
            verify_local_contracts_under(contracts, &snapshot, self.net.issued_at, self.rules)
                .unwrap();
        drop(snapshot);
        let report = self.ledger.commit(&batch).unwrap();
        let took = start.elapsed();
        assert_eq!(report.entry.applied, BATCH, "every contract applies");
        took
    }
}

fn bench(c: &mut Criterion) {
    let net = TestNet::new(16);
    let mut group = c.benchmark_group("ledger");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.sample_size(10).measurement_time(Duration::from_secs(20));
    // The same contracts under rules 2 (trie nodes hash their children at once), rules 3 (as a
    // binary tree) and rules 4 (signatures checked under ZIP-215 in batches), each into its
    // own growing ledger, in one run.
    for (rules, name) in [
        (Rules::V2, "verify + execute + commit, 1000 contracts per batch (rules 2)"),
        (Rules::V3, "verify + execute + commit, 1000 contracts per batch (rules 3)"),
        (Rules::V4, "verify + execute + commit, 1000 contracts per batch (rules 4)"),
    ] {
        let mut run = Run::new(&net, rules);
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let contracts = run.batch();
                    total += run.apply(&contracts);
                }
                total
            });
        });
        let mut entries = 0u64;
        let snapshot = run.ledger.snapshot().unwrap();
        snapshot
            .for_each_entry(&mut |_, _, _| {
                entries += 1;
                true
            })
            .unwrap();
        eprintln!("rules {rules}: the ledger holds {entries} entries after the run");
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
