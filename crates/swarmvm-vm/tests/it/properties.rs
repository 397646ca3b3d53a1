//! Properties of execution and the state root, over random contract sequences.

use proptest::prelude::*;
use serde_json::{Value, json};
use swarmvm_vm::{Contract, Machine, MemoryState, Outcome, Overlay, nonce_of};

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

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn same_inputs_give_the_same_root_on_fresh_vms(steps in prop::collection::vec(step(), 1..40)) {
        let (mut a, mut b) = (vm(), vm());
        for s in &steps {
            let nonce = nonce_for(&a, s);
            let oa = a.execute(&Contract { signer: s.signer, nonce, actions: &s.actions });
            let ob = b.execute(&Contract { signer: s.signer, nonce, actions: &s.actions });
            prop_assert_eq!(oa, ob);
            prop_assert_eq!(a.state_root(), b.state_root());
        }
    }

    #[test]
    fn a_rejected_contract_never_changes_the_root(steps in prop::collection::vec(step(), 1..40)) {
        let mut vm = vm();
        for s in &steps {
            let before = vm.state_root();
            let nonce_before = vm.nonce(s.signer);
            let nonce = nonce_for(&vm, s);
            if let Outcome::Rejected(_) = vm.execute(&Contract { signer: s.signer, nonce, actions: &s.actions }) {
                prop_assert_eq!(vm.state_root(), before);
                prop_assert_eq!(vm.nonce(s.signer), nonce_before);
            }
        }
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
        prop_assert_eq!(swarmvm_vm::root_of_sorted(sorted), Some(vm.state_root()));
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
        // A deterministic shuffle from the seed (Fisher–Yates with a small LCG).
        let mut x = seed | 1;
        for i in (1..shuffled.len()).rev() {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            let j = usize::try_from(x >> 33).unwrap() % (i + 1);
            shuffled.swap(i, j);
        }
        let apply = |list: &[(usize, Value)]| {
            let mut vm = vm();
            for (w, action) in list {
                let signer = WALLETS[*w];
                let nonce = vm.nonce(signer) + 1;
                let actions = [action.clone()];
                assert!(vm.execute(&Contract { signer, nonce, actions: &actions }).is_applied());
            }
            vm.state_root()
        };
        prop_assert_eq!(apply(&contracts), apply(&shuffled));
    }

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
        for s in &during {
            let nonce = pick_nonce(nonce_of(&overlay, s.signer).unwrap(), s);
            vm.vm().execute(&mut overlay, &Contract { signer: s.signer, nonce, actions: &s.actions }).unwrap();
        }
        // A batch that is not applied leaves nothing behind.
        drop(overlay);
        prop_assert_eq!(vm.state_root(), root);
    }
}
