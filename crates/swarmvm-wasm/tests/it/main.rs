//! Integration tests of swarmvm-wasm: the examples of `docs/wasm/`, hostile modules, and
//! determinism, through the VM as a peer runs it.
#![allow(clippy::unwrap_used, missing_docs, unreachable_pub)]

mod budgets;
mod examples;
mod hostile;
mod rust_tally;
mod vectors;

use std::path::PathBuf;
use std::sync::Arc;

use serde_json::Value;
use swarmvm_primitives::Rules;
use swarmvm_vm::{Block, Contract, HANDLER_NAMES, Hash32, Machine, Outcome};
use swarmvm_wasm::{DEFAULT_FUEL, Runtime, module_bytes};

/// Three wallet ids of 43 characters, as real ones are.
pub const WALLETS: [&str; 3] = [
    "alice00000000000000000000000000000000000000",
    "bob0000000000000000000000000000000000000000",
    "carol00000000000000000000000000000000000000",
];

/// A file of `docs/wasm/`.
pub fn example(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/wasm").join(name)
}

/// A module's bytes from WebAssembly text.
pub fn wat(text: &str) -> Vec<u8> {
    module_bytes(text.as_bytes()).unwrap()
}

/// A machine with the built-in operations, three wallets and `modules` loaded and bound to
/// their action names with `fuel`.
pub fn machine(modules: &[(&str, &[u8], u64)]) -> (Machine, Arc<Runtime>) {
    let runtime = Arc::new(Runtime::new());
    let mut m = Machine::new().with_runner(runtime.clone());
    for h in HANDLER_NAMES {
        m.register_operation(h, h).unwrap();
    }
    for (i, w) in WALLETS.iter().enumerate() {
        m.register_wallet(w, &format!("peer{}", i + 1), "{}").unwrap();
    }
    for (action, bytes, fuel) in modules {
        let hash: Hash32 = runtime.load(bytes).unwrap();
        m.register_module(action, hash, *fuel).unwrap();
    }
    (m, runtime)
}

/// Runs `actions` signed by `signer` with its next nonce, under the newest rules.
pub fn run(m: &mut Machine, signer: &str, actions: &[Value]) -> Outcome {
    run_under(m, signer, actions, Rules::CURRENT)
}

/// Runs `actions` signed by `signer` with its next nonce, under `rules`.
pub fn run_under(m: &mut Machine, signer: &str, actions: &[Value], rules: Rules) -> Outcome {
    let nonce = m.nonce(signer) + 1;
    m.execute_in(&Contract { signer, nonce, actions }, block(rules))
}

/// The block the tests run in, under `rules`.
pub fn block(rules: Rules) -> Block {
    Block { seq: 7, time: 1_700_000_000, rules }
}

pub fn default_fuel() -> u64 {
    DEFAULT_FUEL
}
