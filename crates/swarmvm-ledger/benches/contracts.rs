//! Signed contracts per second through the whole peer path: signature verification (on
//! every core), execution, and one redb commit (fsync) per batch of 1,000.
//!
//! `cargo bench -p swarmvm-ledger --bench contracts`. Target: at least 20,000 contracts/s.
//! Each sample applies fresh batches to one growing ledger (signing happens outside the
//! timed part). Contracts mix `register_student`, `add_course` + `register_student`, and
//! `vote_proposal`, from 16 wallets.
#![allow(missing_docs, clippy::unwrap_used)]

use std::cell::Cell;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use swarmvm_bundle::{verify_local, verify_local_contracts};
use swarmvm_ledger::Ledger;
use swarmvm_test_support::net::{TestNet, course, student, vote};

const BATCH: usize = 1000;

fn bench(c: &mut Criterion) {
    let net = TestNet::new(16);
    let dir = tempfile::tempdir().unwrap();
    let mut ledger = Ledger::open(&dir.path().join("bench.redb")).unwrap();
    let time = net.issued_at;
    let snapshot = ledger.snapshot().unwrap();
    let register = verify_local(&net.tokens, &[], &net.network, &snapshot, time).unwrap();
    drop(snapshot);
    ledger.commit(&register).unwrap();
    let mut nonces = vec![0u64; net.peers.len()];
    let counter = Cell::new(0usize);
    let mut make_batch = || -> Vec<String> {
        (0..BATCH)
            .map(|_| {
                let n = counter.get();
                counter.set(n + 1);
                let peer = n % net.peers.len();
                nonces[peer] += 1;
                let actions = match n % 3 {
                    0 => vec![student(&format!("S{n}"))],
                    1 => vec![course(&format!("C{n}")), student(&format!("T{n}"))],
                    _ => vec![vote(&format!("P{}", n / 48))],
                };
                net.contract(peer, nonces[peer], &actions)
            })
            .collect()
    };
    let mut group = c.benchmark_group("ledger");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.sample_size(10).measurement_time(Duration::from_secs(20));
    group.bench_function("verify + execute + commit, 1000 contracts per batch", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let contracts = make_batch();
                let start = Instant::now();
                let snapshot = ledger.snapshot().unwrap();
                let batch = verify_local_contracts(&contracts, &snapshot, time).unwrap();
                drop(snapshot);
                let report = ledger.commit(&batch).unwrap();
                total += start.elapsed();
                assert_eq!(report.entry.applied, BATCH, "every contract applies");
            }
            total
        });
    });
    group.finish();
    let mut entries = 0u64;
    let snapshot = ledger.snapshot().unwrap();
    snapshot
        .for_each_entry(&mut |_, _, _| {
            entries += 1;
            true
        })
        .unwrap();
    eprintln!("ledger holds {entries} entries after the run");
}

criterion_group!(benches, bench);
criterion_main!(benches);
