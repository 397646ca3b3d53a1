//! VM execution in memory: `register_student` actions per second, against the design note's
//! Python dict VM measured in the same run.
//!
//! `cargo bench -p swarmvm-vm --bench execute`
//!
//! Actions arrive already parsed (as JSON values, the form a verified contract token gives);
//! every field is validated on the way in. Measured: 1,000 actions in one contract, the same
//! as 1,000 one-action contracts (with the per-contract nonce and signer checks), and the state
//! root of the result. After criterion, the whole-run comparison prints our rate and the
//! Python VM's (`benches/note_vm.py`) for 1,000,000 actions each, and their ratio.
#![allow(missing_docs, clippy::unwrap_used, clippy::print_stdout)]
// Timing the VM from outside is what a benchmark does; the VM itself never reads a clock.
#![allow(clippy::disallowed_methods)]

use std::hint::black_box;
use std::process::Command;
use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion, Throughput, criterion_group};
use serde_json::{Value, json};
use swarmvm_vm::{Contract, Machine};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn students(n: usize) -> Vec<Value> {
    (0..n)
        .map(|i| {
            json!({"action": "register_student",
                "student": {"id": format!("S{i:07}"), "name": "John Doe", "department": "Computer Science"}})
        })
        .collect()
}

fn fresh_vm() -> Machine {
    let mut vm = Machine::new();
    vm.register_operation("register_student", "register_student").unwrap();
    vm.register_wallet("alice", "peer1", "{}").unwrap();
    vm
}

fn bench(c: &mut Criterion) {
    const N: usize = 1000;
    let actions = students(N);
    let mut group = c.benchmark_group("execute");
    group.throughput(Throughput::Elements(N as u64));
    group.bench_function("register_student x1000 in one contract", |b| {
        b.iter_batched(
            fresh_vm,
            |mut vm| {
                let out = vm.execute(&Contract {
                    signer: "alice",
                    nonce: 1,
                    actions: black_box(&actions),
                });
                assert!(out.is_applied());
                vm
            },
            BatchSize::SmallInput,
        );
    });
    group.bench_function("register_student x1000 one-action contracts", |b| {
        b.iter_batched(
            fresh_vm,
            |mut vm| {
                for (i, action) in actions.iter().enumerate() {
                    let one = std::slice::from_ref(action);
                    let nonce = i as u64 + 1;
                    assert!(
                        vm.execute(&Contract { signer: "alice", nonce, actions: one }).is_applied()
                    );
                }
                vm
            },
            BatchSize::SmallInput,
        );
    });
    group.bench_function("state root of 1000 new students", |b| {
        b.iter_batched(
            || {
                let mut vm = fresh_vm();
                vm.execute(&Contract { signer: "alice", nonce: 1, actions: &actions });
                vm
            },
            |vm| black_box(vm.state_root()),
            BatchSize::SmallInput,
        );
    });
    group.finish();
}

/// Best-of-`runs` rate of executing `n` register_student actions into one growing state, in
/// contracts of `per_contract` actions.
fn rust_rate(n: usize, runs: usize, per_contract: usize) -> f64 {
    let actions = students(n);
    let mut best = Duration::MAX;
    for _ in 0..runs {
        let mut vm = fresh_vm();
        let start = Instant::now();
        for (i, chunk) in actions.chunks(per_contract).enumerate() {
            let out =
                vm.execute(&Contract { signer: "alice", nonce: i as u64 + 1, actions: chunk });
            assert!(out.is_applied());
        }
        best = best.min(start.elapsed());
        assert_eq!(vm.state().len(), n + 3);
    }
    n as f64 / best.as_secs_f64()
}

/// The Python VM's rate; `per_contract` 0 puts every action in one call.
fn python_rate(n: usize, runs: usize, per_contract: usize) -> Option<f64> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/note_vm.py");
    let args = [script.to_owned(), n.to_string(), runs.to_string(), per_contract.to_string()];
    let out = Command::new("python3").args(args).output().ok()?;
    let v: Value = serde_json::from_slice(&out.stdout).ok()?;
    v["actions_per_sec"].as_f64()
}

fn comparison() {
    let (n, runs) = (1_000_000, 5);
    println!(
        "\nwhole-run comparison, {n} register_student actions into one state, best of {runs}:"
    );
    // Python's fastest case (one call, no per-contract work) against our 1,000-action
    // contracts (the most a contract holds is 1,024); then one action per contract for both.
    for (label, ours, theirs) in [("batched", 1000, 0), ("one action per contract", 1, 1)] {
        let rust = rust_rate(n, runs, ours);
        match python_rate(n, runs, theirs) {
            Some(py) => println!(
                "  {label:<24} swarmvm-vm {rust:>10.0}/s  python dict VM {py:>10.0}/s  ratio {:.2}x",
                rust / py
            ),
            None => println!("  {label:<24} swarmvm-vm {rust:>10.0}/s  (python3 not available)"),
        }
    }
}

criterion_group!(benches, bench);

fn main() {
    benches();
    comparison();
    criterion::Criterion::default().configure_from_args().final_summary();
}
