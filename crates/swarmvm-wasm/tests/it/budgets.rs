//! Rules version 2's bounds on what a module costs: removals and entries count in the write
//! budget, contracts and bundles have write budgets of their own, instantiating and resetting
//! a module costs fuel for its memory and table, and the modules of one contract hold a
//! bounded memory together. Every case also runs under version 1, which keeps its outcome, so
//! an old chain replays as it did.

use serde_json::{Value, json};
use swarmvm_primitives::Rules;
use swarmvm_vm::wasm::{BUNDLE_BUDGET, ENTRY_COST};
use swarmvm_vm::{Contract, Machine, Outcome};
use swarmvm_wasm::{INSTANCE_FUEL, PAGE_FUEL};

use crate::{WALLETS, block, machine, run_under, wat};

/// A module that removes `n` distinct 4-byte keys per action.
fn remover(n: u32) -> Vec<u8> {
    wat(&format!(
        r#"(module
            (import "swarmvm" "remove" (func $remove (param i32 i32)))
            (memory (export "memory") 1)
            (func (export "run") (result i32) (local $i i32)
              (loop $l
                (i32.store (i32.const 0) (local.get $i))
                (call $remove (i32.const 0) (i32.const 4))
                (local.set $i (i32.add (local.get $i) (i32.const 1)))
                (br_if $l (i32.lt_u (local.get $i) (i32.const {n}))))
              (i32.const 0)))"#
    ))
}

/// A module that sets 16 keys to 60 KiB values per action: 983,104 bytes of keys and
/// values, under the 1 MiB an action may write.
fn setter() -> Vec<u8> {
    wat(r#"(module
        (import "swarmvm" "set" (func $set (param i32 i32 i32 i32)))
        (memory (export "memory") 2)
        (func (export "run") (result i32) (local $i i32)
          (loop $l
            (i32.store (i32.const 0) (local.get $i))
            (call $set (i32.const 0) (i32.const 4) (i32.const 16) (i32.const 61440))
            (local.set $i (i32.add (local.get $i) (i32.const 1)))
            (br_if $l (i32.lt_u (local.get $i) (i32.const 16))))
          (i32.const 0)))"#)
}

/// A module that does nothing, with `pages` of memory and a table of `elements`; `tag`
/// makes modules that differ.
fn idle(pages: u32, elements: u32, tag: u32) -> Vec<u8> {
    wat(&format!(
        r#"(module
            (memory (export "memory") {pages})
            (table {elements} funcref)
            (global i32 (i32.const {tag}))
            (func (export "run") (result i32) (i32.const 0)))"#
    ))
}

fn actions(name: &str, n: usize) -> Vec<Value> {
    vec![json!({"action": name}); n]
}

/// The reason `actions` were rejected under `rules`, or `None` when they applied; either way
/// under version 1 they apply.
fn outcome(m: &mut Machine, actions: &[Value], rules: Rules) -> Option<String> {
    match run_under(m, WALLETS[0], actions, rules) {
        Outcome::Applied => None,
        Outcome::Rejected(r) => Some(r.to_string()),
    }
}

#[test]
fn removals_count_in_the_write_budget_from_rules_2() {
    // 100,000 removals of absent keys in one action: version 1 let them through (42 MB of
    // pending removals per action in the review); version 2 counts each.
    let (mut m, _) = machine(&[("rm", &remover(100_000), 1_000_000_000)]);
    assert_eq!(outcome(&mut m, &actions("rm", 1), Rules::V1), None);
    let root = m.state_root();
    let reason = outcome(&mut m, &actions("rm", 1), Rules::V2).expect("rejected");
    assert!(reason.contains("remove: the action write budget is spent"), "{reason}");
    assert_eq!(m.state_root(), root);
    // Entries count too: 5,000 removals of 4-byte keys are 340,000 bytes, but more than the
    // 4,096 entries an action may touch.
    let (mut m, _) = machine(&[("rm", &remover(5_000), 1_000_000_000)]);
    let reason = outcome(&mut m, &actions("rm", 1), Rules::V2).expect("rejected");
    assert!(reason.contains("remove: the action write budget is spent"), "{reason}");
    let (mut m, _) = machine(&[("rm", &remover(4_000), 1_000_000_000)]);
    assert_eq!(outcome(&mut m, &actions("rm", 1), Rules::V2), None, "within the budget");
}

#[test]
fn a_contract_has_a_write_budget_of_its_own_from_rules_2() {
    let (mut m, _) = machine(&[("put", &setter(), 1_000_000_000)]);
    // Four actions of 983,104 bytes and 16 entries (64 bytes each) fit in 4 MiB; five do not.
    let per_action = 16 * (4 + 61_440 + ENTRY_COST);
    assert!(4 * per_action <= 4 * 1024 * 1024 && 5 * per_action > 4 * 1024 * 1024);
    assert_eq!(outcome(&mut m, &actions("put", 4), Rules::V2), None);
    let root = m.state_root();
    let reason = outcome(&mut m, &actions("put", 5), Rules::V2).expect("rejected");
    assert!(reason.starts_with("action 4 (put)"), "the fifth action: {reason}");
    assert!(reason.contains("set: the contract write budget is spent"), "{reason}");
    assert_eq!(m.state_root(), root);
    assert_eq!(outcome(&mut m, &actions("put", 5), Rules::V1), None, "version 1 had none");
}

#[test]
fn a_bundle_has_a_write_budget_of_its_own_from_rules_2() {
    let per_contract = 16 * (4 + 61_440 + ENTRY_COST);
    let fits = usize::try_from(BUNDLE_BUDGET.bytes / per_contract).unwrap();
    for rules in [Rules::V1, Rules::V2] {
        let (mut m, _) = machine(&[("put", &setter(), 1_000_000_000)]);
        let one = actions("put", 1);
        let (outcomes, _) = m.batch(|vm, overlay| {
            (1..=fits as u64 + 2)
                .map(|nonce| {
                    let contract = Contract { signer: WALLETS[0], nonce, actions: &one };
                    vm.execute_in(overlay, &contract, block(rules)).unwrap()
                })
                .collect::<Vec<_>>()
        });
        let applied = outcomes.iter().filter(|o| o.is_applied()).count();
        if rules == Rules::V1 {
            assert_eq!(applied, fits + 2, "version 1 had no bundle budget");
            continue;
        }
        assert_eq!(applied, fits, "the contracts after the bundle's budget are rejected");
        assert!(outcomes[..fits].iter().all(Outcome::is_applied), "in order");
        let Outcome::Rejected(reason) = &outcomes[fits] else { unreachable!() };
        assert!(reason.to_string().contains("set: the bundle write budget is spent"), "{reason}");
    }
}

#[test]
fn a_contract_s_own_writes_count_against_what_is_left_of_the_bundle_s_budget() {
    // Contracts of four actions (each within the contract's 4 MiB) until the bundle's 32 MiB
    // cannot hold another: the contract that crosses it is rejected at the action that would,
    // not let through because its bundle still had room when it began.
    let per_action = 16 * (4 + 61_440 + ENTRY_COST);
    let four = actions("put", 4);
    let (mut m, _) = machine(&[("put", &setter(), 1_000_000_000)]);
    let (outcomes, _) = m.batch(|vm, overlay| {
        (1..=12u64)
            .map(|nonce| {
                let contract = Contract { signer: WALLETS[0], nonce, actions: &four };
                let outcome = vm.execute_in(overlay, &contract, block(Rules::V2)).unwrap();
                (outcome, overlay.module_writes().bytes)
            })
            .collect::<Vec<_>>()
    });
    let applied = outcomes.iter().filter(|(o, _)| o.is_applied()).count() as u64;
    assert_eq!(applied, BUNDLE_BUDGET.bytes / (4 * per_action), "{outcomes:?}");
    let written = outcomes.last().unwrap().1;
    assert!(written <= BUNDLE_BUDGET.bytes, "the bundle wrote {written} bytes");
    let Outcome::Rejected(reason) = &outcomes[applied as usize].0 else { unreachable!() };
    assert!(reason.to_string().contains("set: the bundle write budget is spent"), "{reason}");
}

#[test]
fn instances_pay_fuel_for_their_memory_and_table_from_rules_2() {
    let instance = INSTANCE_FUEL + 256 * PAGE_FUEL;
    // 256 pages: two fuel units per action under version 1, whatever the copies cost.
    let (mut m, _) = machine(&[("big", &idle(256, 0, 0), 10_000)]);
    assert_eq!(outcome(&mut m, &actions("big", 3), Rules::V1), None);
    let reason = outcome(&mut m, &actions("big", 1), Rules::V2).expect("rejected");
    assert!(reason.contains("out of fuel"), "{reason}");
    // Enough for the instantiation, and for each reset (256 pages again).
    let (mut m, _) = machine(&[("big", &idle(256, 0, 0), instance + 100)]);
    assert_eq!(outcome(&mut m, &actions("big", 3), Rules::V2), None);
    let (mut m, _) = machine(&[("big", &idle(256, 0, 0), instance - 1)]);
    assert!(outcome(&mut m, &actions("big", 1), Rules::V2).is_some(), "one unit short");

    // A table costs a unit an element to set up.
    let (mut m, _) = machine(&[("tab", &idle(1, 60_000, 0), 50_000)]);
    assert_eq!(outcome(&mut m, &actions("tab", 1), Rules::V1), None);
    let reason = outcome(&mut m, &actions("tab", 1), Rules::V2).expect("rejected");
    assert!(reason.contains("out of fuel"), "{reason}");
    let (mut m, _) = machine(&[("tab", &idle(1, 60_000, 0), 100_000)]);
    assert_eq!(outcome(&mut m, &actions("tab", 1), Rules::V2), None);
    // A table over the bound (a module stored under rules 1, which had none) does not run
    // under rules 2, whatever the fuel.
    let (mut m, _) = machine(&[("tab", &idle(1, 1_000_000, 0), 500_000_000)]);
    assert_eq!(outcome(&mut m, &actions("tab", 1), Rules::V1), None);
    let reason = outcome(&mut m, &actions("tab", 1), Rules::V2).expect("rejected");
    assert!(reason.contains("tables have 1000000 elements; at most 65536"), "{reason}");
}

#[test]
fn the_modules_of_one_contract_hold_bounded_memory_from_rules_2() {
    let fuel = 1_000_000;
    let modules: Vec<(String, Vec<u8>)> =
        (0..3).map(|i| (format!("big{i}"), idle(256, 0, i))).collect();
    let bound: Vec<(&str, &[u8], u64)> =
        modules.iter().map(|(n, b)| (n.as_str(), b.as_slice(), fuel)).collect();
    let (mut m, _) = machine(&bound);
    let all: Vec<Value> = modules.iter().map(|(n, _)| json!({"action": n})).collect();
    // Two sessions of 256 pages (and their images) are 1,024 pages: within the bound.
    assert_eq!(outcome(&mut m, &all[..2], Rules::V2), None);
    let reason = outcome(&mut m, &all, Rules::V2).expect("rejected");
    assert!(reason.contains("hold 1536 pages of memory together (at most 1024)"), "{reason}");
    assert_eq!(outcome(&mut m, &all, Rules::V1), None, "version 1 had no bound");
}
