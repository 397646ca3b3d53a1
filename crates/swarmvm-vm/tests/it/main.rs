//! Integration tests of swarmvm-vm: every handler's paths, atomicity, and properties of the
//! state root.
#![allow(clippy::unwrap_used, missing_docs, unreachable_pub)]

mod handlers;
mod proofs;
mod properties;
mod vectors;

use serde_json::Value;
use swarmvm_vm::{Contract, HANDLER_NAMES, Machine, Outcome};

pub const WALLETS: [&str; 3] = ["alice", "bob", "carol"];

/// A VM with every catalogue handler registered under its own name and three wallets.
pub fn vm() -> Machine {
    let mut vm = Machine::new();
    for name in HANDLER_NAMES {
        vm.register_operation(name, name).unwrap();
    }
    for (i, w) in WALLETS.iter().enumerate() {
        vm.register_wallet(w, &format!("peer{}", i + 1), "{}").unwrap();
    }
    vm
}

/// Runs `actions` signed by `signer` with the next nonce.
pub fn run(vm: &mut Machine, signer: &str, actions: &[Value]) -> Outcome {
    let nonce = vm.nonce(signer) + 1;
    vm.execute(&Contract { signer, nonce, actions })
}

/// The rejection message of a contract that must fail, after checking it changed nothing.
pub fn reject(vm: &mut Machine, signer: &str, actions: &[Value]) -> String {
    let root = vm.state_root();
    let nonce = vm.nonce(signer);
    match run(vm, signer, actions) {
        Outcome::Applied => panic!("applied: {actions:?}"),
        Outcome::Rejected(r) => {
            assert_eq!(vm.state_root(), root, "a rejected contract changed the state");
            assert_eq!(vm.nonce(signer), nonce, "a rejected contract used up its nonce");
            r.to_string()
        }
    }
}
