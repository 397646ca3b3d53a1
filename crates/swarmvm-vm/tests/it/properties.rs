//! Properties of execution and the state root, over random contract sequences.

use proptest::prelude::*;
use serde_json::{Value, json};
use swarmvm_vm::{
    Contract, HANDLER_NAMES, Machine, MemoryState, Outcome, Overlay, Record, Table, nonce_of,
};

use crate::{WALLETS, vm};

/// A small id space, so random contracts collide often and exercise the failure paths.
fn action() -> impl Strategy<Value = Value> {
    let id = |p: &'static str| (0..4u8).prop_map(move |i| format!("{p}{i}"));
    prop_oneof![
        id("S").prop_map(|s| json!({"action": "register_student", "student": {"id": s, "name": "N", "department": "D"}})),
        id("C").prop_map(|c| json!({"action": "add_course", "course": {"id": c, "name": "N", "department": "D"}})),
        id("P").prop_map(|p| json!({"action": "vote_proposal", "proposal": {"id": p, "description": "d"}})),
        (id("N"), 0..3u8).prop_map(|(n, v)| json!({"action": "generate_nft", "nft": {"id": n, "name": "x", "metadata": {"v": v}}})),
        (id("S"), id("C")).prop_map(|(s, c)| json!({"action": "enroll_student", "student_id": s, "course_id": c})),
        (id("N"), prop::sample::select(vec!["alice", "bob", "carol", "mallory"]))
            .prop_map(|(n, to)| json!({"action": "transfer_nft", "nft_id": n, "to": to})),
        Just(json!({"action": "unregistered_thing"})),
        Just(json!({"action": "register_student", "student": {"id": "bad id", "name": "N", "department": "D"}})),
    ]
}

#[derive(Debug, Clone)]
struct Step {
    signer: &'static str,
    /// 0 = next nonce, 1 = replay of the last, 2 = far ahead.
    nonce_kind: u8,
    actions: Vec<Value>,
}

fn step() -> impl Strategy<Value = Step> {
    (
        prop::sample::select(vec!["alice", "bob", "carol", "mallory"]),
        prop::sample::select(vec![0u8, 0, 0, 1, 2]),
        prop::collection::vec(action(), 1..4),
    )
        .prop_map(|(signer, nonce_kind, actions)| Step { signer, nonce_kind, actions })
}

fn nonce_for(vm: &Machine, s: &Step) -> u64 {
    pick_nonce(vm.nonce(s.signer), s)
}

fn pick_nonce(last: u64, s: &Step) -> u64 {
    match s.nonce_kind {
        0 => last + 1,
        1 => last.max(1),
        _ => last + 1000,
    }
}

/// An action every contract that holds it is rejected for (its id is not an id).
fn invalid_action() -> Value {
    json!({"action": "register_student", "student": {"id": "bad id", "name": "N", "department": "D"}})
}

/// [`vm`] built the other way round: wallets before operations, each list reversed, and the
/// root asked after every registration, so that its trie takes the same entries one at a
/// time and in another order.
fn vm_reversed() -> Machine {
    let mut vm = Machine::new();
    for (i, w) in WALLETS.iter().enumerate().rev() {
        vm.register_wallet(w, &format!("peer{}", i + 1), "{}").unwrap();
        vm.state_root();
    }
    for name in HANDLER_NAMES.iter().rev() {
        vm.register_operation(name, name).unwrap();
        vm.state_root();
    }
    vm
}

/// `list` shuffled (Fisher–Yates driven by a small LCG from `seed`).
fn shuffle<T>(list: &mut [T], seed: u64) {
    let mut x = seed | 1;
    for i in (1..list.len()).rev() {
        x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        let j = usize::try_from(x >> 33).unwrap() % (i + 1);
        list.swap(i, j);
    }
}

/// Every entry of `m`'s state.
fn entries(m: &Machine) -> Vec<(Table, String, Record)> {
    m.state().iter().map(|(t, id, r)| (t, id.to_owned(), r.clone())).collect()
}

/// A machine holding `entries`, put in the order given, one batch each, its root asked
/// after each: a trie built entry by entry in that order.
fn put_one_by_one(entries: Vec<(Table, String, Record)>) -> Machine {
    let mut m = Machine::new();
    for (_, id, record) in entries {
        m.batch(|_, overlay| overlay.put(&id, record));
        m.state_root();
    }
    m
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Two machines given the same inputs in different orders of insertion reach the same
    /// state and root: `a` registers as usual and asks for its root only at the end (its trie
    /// takes every entry at once, sorted); `b` registers the other way round and asks after
    /// every registration and contract (its trie grows entry by entry, in another order); and
    /// the same entries put one at a time in a random order give that root too. A root that
    /// depended on the order of insertion would fail here.
    #[test]
    fn same_inputs_give_the_same_root_whatever_the_order_of_insertion(
        steps in prop::collection::vec(step(), 1..40),
        seed in any::<u64>()
    ) {
        let (mut a, mut b) = (vm(), vm_reversed());
        for s in &steps {
            let nonce = nonce_for(&a, s);
            let oa = a.execute(&Contract { signer: s.signer, nonce, actions: &s.actions });
            let ob = b.execute(&Contract { signer: s.signer, nonce, actions: &s.actions });
            prop_assert_eq!(oa, ob);
            b.state_root();
        }
        let all = entries(&a);
        prop_assert_eq!(&all, &entries(&b), "the same entries");
        let root = a.state_root();
        prop_assert_eq!(b.state_root(), root);
        let mut shuffled = all;
        shuffle(&mut shuffled, seed);
        prop_assert_eq!(put_one_by_one(shuffled).state_root(), root);
    }

    /// Every step runs twice: first with an invalid action appended (with the signer's next
    /// nonce), which must be rejected after its earlier actions may have written; then as
    /// generated, rejected or not. Each rejection leaves the root and the nonce as they were.
    #[test]
    fn a_rejected_contract_never_changes_the_root(steps in prop::collection::vec(step(), 1..40)) {
        let mut vm = vm();
        let mut rejected = 0usize;
        for s in &steps {
            let mut poisoned = s.actions.clone();
            poisoned.push(invalid_action());
            let tries = [(vm.nonce(s.signer) + 1, poisoned, true), (0, s.actions.clone(), false)];
            for (next, actions, must_fail) in tries {
                let before = vm.state_root();
                let nonce_before = vm.nonce(s.signer);
                let nonce = if must_fail { next } else { nonce_for(&vm, s) };
                let outcome = vm.execute(&Contract { signer: s.signer, nonce, actions: &actions });
                prop_assert!(
                    !(must_fail && outcome.is_applied()),
                    "a contract ending in an invalid action applied: {:?}", actions
                );
                if let Outcome::Rejected(_) = outcome {
                    rejected += 1;
                    prop_assert_eq!(vm.state_root(), before);
                    prop_assert_eq!(vm.nonce(s.signer), nonce_before);
                }
            }
        }
        prop_assert!(rejected >= steps.len(), "{} rejections for {} steps", rejected, steps.len());
    }

    #[test]
    fn incremental_root_equals_root_of_the_state_rebuilt_from_its_entries(
        steps in prop::collection::vec(step(), 1..40)
    ) {
        let mut vm = vm();
        for s in &steps {
            let nonce = nonce_for(&vm, s);
            vm.execute(&Contract { signer: s.signer, nonce, actions: &s.actions });
            // Ask for the root along the way, so cached leaf hashes must follow updates.
            vm.state_root();
        }
        let entries = vm.state().iter().map(|(t, id, r)| (t, id.to_owned(), r.clone()));
        let rebuilt = MemoryState::from_entries(entries).unwrap();
        prop_assert_eq!(rebuilt.root(), vm.state_root());
        // And from the sorted entries alone, one path in memory at a time.
        let sorted = vm.state().iter().map(|(t, id, r)| {
            (swarmvm_vm::encode_key(t, id), swarmvm_vm::entry_leaf(t, id, r))
        });
        prop_assert_eq!(swarmvm_vm::root_of_sorted(sorted, swarmvm_vm::NodeHashing::Binary), Some(vm.state_root()));
    }

    #[test]
    fn root_does_not_depend_on_the_order_of_independent_contracts(
        picks in prop::collection::vec((0..3usize, 0..1000u32), 1..30),
        seed in any::<u64>()
    ) {
        // Independent contracts: each registers a distinct student.
        let mut unique = std::collections::BTreeMap::new();
        for (w, n) in picks {
            unique.insert(n, w);
        }
        let contracts: Vec<(usize, Value)> = unique.into_iter().map(|(n, w)| {
            (w, json!({"action": "register_student", "student": {"id": format!("S{n}"), "name": "N", "department": "D"}}))
        }).collect();
        let mut shuffled = contracts.clone();
        shuffle(&mut shuffled, seed);
        let apply = |list: &[(usize, Value)]| {
            let mut vm = vm();
            for (w, action) in list {
                let signer = WALLETS[*w];
                let nonce = vm.nonce(signer) + 1;
                let actions = [action.clone()];
                assert!(vm.execute(&Contract { signer, nonce, actions: &actions }).is_applied());
                // The root after each contract, so that the trie takes the entries in the
                // contracts' order (asked only at the end, it would take them sorted).
                vm.state_root();
            }
            vm.state_root()
        };
        prop_assert_eq!(apply(&contracts), apply(&shuffled));
    }

    /// A batch staged in an overlay and not applied leaves nothing behind; and what it staged
    /// is real: nothing when every contract was rejected, and otherwise changes that move the
    /// root (each applied contract at least moved its signer's nonce), the same as running
    /// its contracts one batch each.
    #[test]
    fn a_rolled_back_batch_leaves_the_root_as_before(
        before in prop::collection::vec(step(), 0..10),
        during in prop::collection::vec(step(), 1..20)
    ) {
        let mut vm = vm();
        for s in &before {
            let nonce = nonce_for(&vm, s);
            vm.execute(&Contract { signer: s.signer, nonce, actions: &s.actions });
        }
        let root = vm.state_root();
        let mut overlay = Overlay::new(vm.state());
        let mut outcomes = Vec::new();
        let mut nonces = Vec::new();
        for s in &during {
            let nonce = pick_nonce(nonce_of(&overlay, s.signer).unwrap(), s);
            let contract = Contract { signer: s.signer, nonce, actions: &s.actions };
            outcomes.push(vm.vm().execute(&mut overlay, &contract).unwrap());
            nonces.push(nonce);
        }
        let changes = overlay.into_changes();
        let applied = outcomes.iter().filter(|o| o.is_applied()).count();
        prop_assert_eq!(changes.is_empty(), applied == 0);
        let mut staged = vm.state().clone();
        staged.apply(&changes);
        prop_assert_eq!(staged.root() != root, applied > 0);
        // The batch not applied: the machine is as before.
        prop_assert_eq!(vm.state_root(), root);
        // The same contracts one batch each reach what the batch staged.
        for ((s, nonce), outcome) in during.iter().zip(nonces).zip(&outcomes) {
            let again = vm.execute(&Contract { signer: s.signer, nonce, actions: &s.actions });
            prop_assert_eq!(&again, outcome);
        }
        prop_assert_eq!(vm.state_root(), staged.root());
    }
}
