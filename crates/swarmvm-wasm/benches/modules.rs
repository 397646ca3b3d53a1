//! WebAssembly operations against built-in ones, compile time, and what metering costs.
//!
//! `cargo bench -p swarmvm-wasm --bench modules`
//!
//! - `tally` (docs/wasm/tally.wat) against the built-in `vote_proposal` on the same
//!   contracts: 1,000 one-vote actions per contract, each a new proposal, so every action
//!   reads two absent keys and writes two. Throughput in actions.
//! - Compiling and checking a module, per KiB of module.
//! - The same tally with and without fuel metering.
#![allow(missing_docs, clippy::unwrap_used)]

use std::sync::Arc;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use serde_json::{Value, json};
use swarmvm_vm::{Contract, HANDLER_NAMES, Machine};
use swarmvm_wasm::{DEFAULT_FUEL, Runtime, module_bytes};

/// The allocator the `swarmvm` binary uses.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const ACTIONS: usize = 1_000;
const WALLET: &str = "alice00000000000000000000000000000000000000";

fn tally() -> Vec<u8> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/wasm/tally.wat");
    module_bytes(std::fs::read_to_string(path).unwrap().as_bytes()).unwrap()
}

fn machine(runtime: Option<Arc<Runtime>>) -> Machine {
    let mut m = match &runtime {
        Some(r) => Machine::new().with_runner(r.clone()),
        None => Machine::new(),
    };
    for h in HANDLER_NAMES {
        m.register_operation(h, h).unwrap();
    }
    m.register_wallet(WALLET, "peer1", "{}").unwrap();
    if let Some(r) = runtime {
        let hash = r.load(&tally()).unwrap();
        m.register_module("tally", hash, DEFAULT_FUEL).unwrap();
    }
    m
}

fn votes(action: &str, round: usize) -> Vec<Value> {
    (0..ACTIONS)
        .map(|i| json!({"action": action, "proposal": {"id": format!("P{round}-{i}"), "description": "Increase Research Funding"}}))
        .collect()
}

fn bench_tally(c: &mut Criterion) {
    let mut g = c.benchmark_group("1,000 votes per contract");
    g.throughput(Throughput::Elements(ACTIONS as u64));
    g.sample_size(20);
    let cases: [(&str, &str, Option<Arc<Runtime>>); 3] = [
        ("built-in vote_proposal", "vote_proposal", None),
        ("tally module, metered", "tally", Some(Arc::new(Runtime::new()))),
        ("tally module, unmetered", "tally", Some(Arc::new(Runtime::unmetered()))),
    ];
    for (name, action, runtime) in cases {
        let mut m = machine(runtime);
        let mut round = 0;
        g.bench_function(name, |b| {
            b.iter_batched(
                || {
                    round += 1;
                    votes(action, round)
                },
                |actions| {
                    let nonce = m.nonce(WALLET) + 1;
                    let out = m.execute(&Contract { signer: WALLET, nonce, actions: &actions });
                    assert!(out.is_applied(), "{out:?}");
                },
                BatchSize::LargeInput,
            );
        });
    }
    g.finish();
}

fn bench_compile(c: &mut Criterion) {
    let bytes = tally();
    let mut g = c.benchmark_group("compile");
    g.throughput(Throughput::Bytes(bytes.len() as u64));
    g.bench_function("check and compile tally.wat's module", |b| {
        b.iter(|| {
            let r = Runtime::new();
            r.load(&bytes).unwrap()
        });
    });
    g.finish();
}

criterion_group!(benches, bench_tally, bench_compile);
criterion_main!(benches);
