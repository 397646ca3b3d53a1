//! WebAssembly operations against built-in ones, compile time, and what metering costs.
//!
//! `cargo bench -p swarmvm-wasm --bench modules`
//!
//! - `tally` in WebAssembly text (docs/wasm/tally.wat) and in Rust (sdk/rust, built here by
//!   `sdk/rust/build.sh` with Debian's rustc 1.63) against the built-in `vote_proposal`, on the
//!   same contracts: 1,000 one-vote actions per contract, each a new proposal, so every action
//!   reads two absent keys and writes two. Throughput in actions.
//! - Compiling and checking a module, per KiB of module.
//! - The text tally with and without fuel metering.
//!
//! Each case starts over from an empty state every 64 contracts (outside the timed part), so
//! the state stays between 0 and 128,000 entries rather than growing for as long as the
//! case runs: first touches of ever new memory would otherwise be measured as VM time.
#![allow(missing_docs, clippy::unwrap_used)]

use std::cell::RefCell;
use std::sync::Arc;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use serde_json::{Value, json};
use swarmvm_vm::{Contract, HANDLER_NAMES, Machine};
use swarmvm_wasm::{DEFAULT_FUEL, Runtime, module_bytes};

#[path = "../tests/it/rust_tally.rs"]
mod rust_tally;

/// The allocator the `swarmvm` binary uses.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const ACTIONS: usize = 1_000;
/// Contracts between two fresh states.
const ROUNDS_PER_STATE: usize = 64;
const WALLET: &str = "alice00000000000000000000000000000000000000";

fn tally() -> Vec<u8> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/wasm/tally.wat");
    module_bytes(std::fs::read_to_string(path).unwrap().as_bytes()).unwrap()
}

/// `sdk/rust`'s tally, built by `sdk/rust/build.sh` with Debian's rustc 1.63.
fn rust_tally() -> Vec<u8> {
    let out = tempfile::tempdir().unwrap();
    rust_tally::build(out.path())
}

/// A VM with the built-in operations, one wallet and, with a runtime, `module` as `tally`.
fn machine(runtime: Option<&Arc<Runtime>>, module: &[u8]) -> Machine {
    let mut m = match runtime {
        Some(r) => Machine::new().with_runner(r.clone()),
        None => Machine::new(),
    };
    for h in HANDLER_NAMES {
        m.register_operation(h, h).unwrap();
    }
    m.register_wallet(WALLET, "peer1", "{}").unwrap();
    if let Some(r) = runtime {
        let hash = r.load(module).unwrap();
        m.register_module("tally", hash, DEFAULT_FUEL).unwrap();
    }
    m
}

fn votes(action: &str, round: usize) -> Vec<Value> {
    (0..ACTIONS)
        .map(|i| json!({"action": action, "proposal": {"id": format!("P{round}-{i}"), "description": "Increase Research Funding"}}))
        .collect()
}

/// A case: its name, the action it runs, the runtime (none: built-in) and the module.
type Case<'m> = (&'static str, &'static str, Option<Arc<Runtime>>, &'m [u8]);

fn bench_tally(c: &mut Criterion) {
    let mut g = c.benchmark_group("1,000 votes per contract");
    g.throughput(Throughput::Elements(ACTIONS as u64));
    g.sample_size(20);
    let (text, rust) = (tally(), rust_tally());
    let cases: [Case<'_>; 4] = [
        ("built-in vote_proposal", "vote_proposal", None, &[]),
        ("tally.wat module, metered", "tally", Some(Arc::new(Runtime::new())), &text),
        ("tally in Rust module, metered", "tally", Some(Arc::new(Runtime::new())), &rust),
        ("tally.wat module, unmetered", "tally", Some(Arc::new(Runtime::unmetered())), &text),
    ];
    for (name, action, runtime, module) in cases {
        let m = RefCell::new(machine(runtime.as_ref(), module));
        let mut round = 0;
        g.bench_function(name, |b| {
            b.iter_batched(
                || {
                    round += 1;
                    if round % ROUNDS_PER_STATE == 0 {
                        *m.borrow_mut() = machine(runtime.as_ref(), module);
                    }
                    votes(action, round)
                },
                |actions| {
                    let mut m = m.borrow_mut();
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
