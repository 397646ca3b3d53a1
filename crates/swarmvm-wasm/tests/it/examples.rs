//! The examples of `docs/wasm/`: counter and tally, in WebAssembly text and in C, and the
//! tally of `sdk/rust/` in Rust.

use serde_json::json;

use crate::{WALLETS, default_fuel, example, machine, run, wat};

#[test]
fn the_counter_counts_every_action() {
    let counter = wat(&std::fs::read_to_string(example("counter.wat")).unwrap());
    let (mut m, _) = machine(&[("count", &counter, default_fuel())]);
    for _ in 0..3 {
        assert!(run(&mut m, WALLETS[0], &[json!({"action": "count"})]).is_applied());
    }
    let two = [json!({"action": "count"}), json!({"action": "count"})];
    assert!(run(&mut m, WALLETS[1], &two).is_applied());
    let state = m.state().to_json();
    assert_eq!(state["wasm"]["count"]["count"], "5", "{state}");
}

#[test]
fn tally_counts_one_vote_per_wallet_per_proposal() {
    let tally = wat(&std::fs::read_to_string(example("tally.wat")).unwrap());
    let (mut m, _) = machine(&[("tally", &tally, default_fuel())]);
    let vote = |id: &str| json!({"action": "tally", "proposal": {"id": id, "description": "More \"funding\""}});
    for w in WALLETS {
        assert!(run(&mut m, w, &[vote("P001")]).is_applied());
    }
    let again = run(&mut m, WALLETS[0], &[vote("P001")]);
    let swarmvm_vm::Outcome::Rejected(reason) = again else { panic!("a second vote applied") };
    assert!(
        reason.to_string().contains("module failed: tally: this wallet already voted"),
        "{reason}"
    );
    assert!(run(&mut m, WALLETS[0], &[vote("P002")]).is_applied());
    let state = m.state().to_json();
    let votes = &state["wasm"]["tally"];
    assert_eq!(votes["P001"], "3", "{state}");
    assert_eq!(votes["P002"], "1");
    assert_eq!(votes[format!("P001/{}", WALLETS[1])], "");
    // Inputs that are not the note's vote are refused whole.
    for bad in [
        json!({"action": "tally", "proposal": "P1"}),
        json!({"action": "tally", "proposal": {"id": "P 1"}}),
        json!({"action": "tally", "proposal": {"id": "P1", "extra": 1}}),
        json!({"action": "tally", "proposal": {"a": {"id": "X"}, "id": "P1"}}),
        json!({"action": "tally"}),
    ] {
        let root = m.state_root();
        let out = run(&mut m, WALLETS[2], std::slice::from_ref(&bad));
        assert!(!out.is_applied(), "{bad}");
        assert_eq!(m.state_root(), root);
    }
}

/// `docs/wasm/tally.c` built with Debian's clang and lld as `docs/wasm.md` says.
pub fn tally_from_c() -> Vec<u8> {
    let out = tempfile::tempdir().unwrap();
    let wasm = out.path().join("tally.wasm");
    let status = std::process::Command::new("clang")
        .args(["--target=wasm32", "-nostdlib", "-O2", "-Wl,--no-entry", "-Wl,--export=run"])
        .args(["-Wl,-z,stack-size=16384", "-Wl,--initial-memory=65536", "-o"])
        .arg(&wasm)
        .arg(example("tally.c"))
        .status()
        .unwrap_or_else(|e| panic!("cannot run clang: {e}; install Debian's clang and lld"));
    assert!(status.success(), "clang failed on tally.c");
    std::fs::read(wasm).unwrap()
}

#[test]
fn tally_in_rust_is_built_byte_for_byte_the_same_anywhere_and_pinned() {
    let vectors: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../tests/vectors/wasm.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let (one, two) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    // The second build from a copy of the sources in another folder, into a deeper one.
    let copy = two.path().join("elsewhere/sdk");
    std::fs::create_dir_all(copy.join("rust/swarmvm-sdk/src")).unwrap();
    std::fs::create_dir_all(copy.join("rust/tally/src")).unwrap();
    let sdk = concat!(env!("CARGO_MANIFEST_DIR"), "/../../sdk/rust");
    for file in ["build.sh", "swarmvm-sdk/src/lib.rs", "tally/src/lib.rs"] {
        std::fs::copy(format!("{sdk}/{file}"), copy.join("rust").join(file)).unwrap();
    }
    let first = crate::rust_tally::build(one.path());
    let out = two.path().join("out/deeper");
    let status = std::process::Command::new("sh")
        .arg(copy.join("rust/build.sh"))
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success());
    let second = std::fs::read(out.join("tally.wasm")).unwrap();
    assert_eq!(first, second, "two builds in different folders differ");
    let info = swarmvm_wasm::check_module(&first).unwrap();
    assert_eq!(info.hash.to_hex(), vectors["rust_tally"]["hash"].as_str().unwrap());
    assert_eq!(info.imports, ["input_len", "input_read", "caller", "get", "set", "fail"]);
    let text = String::from_utf8_lossy(&first);
    assert!(!text.contains("/tmp") && !text.contains("/work"), "a path of this machine inside");
}

#[test]
fn tally_in_c_in_rust_and_in_webassembly_text_give_the_same_state() {
    let from_c = tally_from_c();
    let info = swarmvm_wasm::check_module(&from_c).unwrap();
    assert_eq!(info.imports, ["input_len", "input_read", "caller", "get", "set", "fail"]);
    let from_wat = wat(&std::fs::read_to_string(example("tally.wat")).unwrap());
    let out = tempfile::tempdir().unwrap();
    let from_rust = crate::rust_tally::build(out.path());
    let mut states = Vec::new();
    let mut refusals = Vec::new();
    for module in [&from_c, &from_wat, &from_rust] {
        let (mut m, _) = machine(&[("vote_proposal", module, default_fuel())]);
        let vote = |id: &str| json!({"action": "vote_proposal", "proposal": {"id": id, "description": "d\\u00e9 \\\"q\\\""}});
        let mut outcomes = Vec::new();
        for (i, w) in WALLETS.iter().enumerate() {
            outcomes.push(run(&mut m, w, &[vote("P1"), vote(&format!("P{}", i + 2))]).is_applied());
            outcomes.push(run(&mut m, w, &[vote("P1")]).is_applied());
        }
        assert_eq!(outcomes, [true, false, true, false, true, false]);
        // Refusals: no id, and an input longer than the 32 KiB each module has room for.
        let long = "x".repeat(40_000);
        let refused: Vec<String> = [
            json!({"action": "vote_proposal", "proposal": {}}),
            json!({"action": "vote_proposal", "proposal": {"id": "P9", "description": long}}),
        ]
        .iter()
        .map(|a| match run(&mut m, WALLETS[0], std::slice::from_ref(a)) {
            swarmvm_vm::Outcome::Rejected(r) => r.to_string(),
            applied => panic!("{applied:?}"),
        })
        .collect();
        refusals.push(refused);
        let mut state = m.state().to_json();
        // The one difference: which module the action is bound to.
        let bound = state["operations"]["vote_proposal"]["wasm"].take();
        assert_eq!(
            bound.as_str(),
            Some(swarmvm_wasm::check_module(module).unwrap().hash.to_hex().as_str())
        );
        states.push(state);
    }
    assert_eq!(states[0], states[1], "the same state, entry for entry");
    assert_eq!(states[0], states[2], "the same state from the Rust module");
    assert_eq!(states[0]["wasm"]["vote_proposal"]["P1"], "3");
    assert!(refusals[0][1].contains("tally: expected"), "{refusals:?}");
    assert!(refusals.iter().all(|r| *r == refusals[0]), "the same refusals: {refusals:?}");
}

mod determinism {
    use std::sync::Arc;

    use proptest::prelude::*;
    use serde_json::json;
    use swarmvm_vm::{HANDLER_NAMES, Machine, Record, Table};
    use swarmvm_wasm::Runtime;

    use crate::{WALLETS, default_fuel, example, machine, run, wat};

    /// [`machine`] built the other way round: the modules first and in the other order, then
    /// the wallets and the operations, each list reversed, the root asked after every
    /// registration (so that its trie takes the entries one at a time, in another order).
    fn machine_reversed(modules: &[(&str, &[u8], u64)]) -> Machine {
        let runtime = Arc::new(Runtime::new());
        let mut m = Machine::new().with_runner(runtime.clone());
        for (action, bytes, fuel) in modules.iter().rev() {
            let hash = runtime.load(bytes).unwrap();
            m.register_module(action, hash, *fuel).unwrap();
            m.state_root();
        }
        for (i, w) in WALLETS.iter().enumerate().rev() {
            m.register_wallet(w, &format!("peer{}", i + 1), "{}").unwrap();
            m.state_root();
        }
        for h in HANDLER_NAMES.iter().rev() {
            m.register_operation(h, h).unwrap();
            m.state_root();
        }
        m
    }

    /// Every entry of `m`'s state.
    fn entries(m: &Machine) -> Vec<(Table, String, Record)> {
        m.state().iter().map(|(t, id, r)| (t, id.to_owned(), r.clone())).collect()
    }

    /// The root of `entries` put into a fresh state in a random order (from `seed`), one
    /// batch each, the root asked after each.
    fn root_put_one_by_one(
        mut entries: Vec<(Table, String, Record)>,
        seed: u64,
    ) -> swarmvm_vm::Hash32 {
        let mut x = seed | 1;
        for i in (1..entries.len()).rev() {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            let j = usize::try_from(x >> 33).unwrap() % (i + 1);
            entries.swap(i, j);
        }
        let mut m = Machine::new();
        for (_, id, record) in entries {
            m.batch(|_, overlay| overlay.put(&id, record));
            m.state_root();
        }
        m.state_root()
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

        /// The same contracts from the same state give the same outcomes, entries and root on
        /// fresh machines and runtimes whose state was built in different orders: one that
        /// registers as usual and asks for its root only at the end (its trie takes every
        /// entry at once, sorted), one that registers the other way round and asks after
        /// every registration and contract; and the same entries put one at a time in a
        /// random order give that root too.
        #[test]
        fn the_same_contracts_give_the_same_root_whatever_the_order_of_insertion(
            contracts in proptest::collection::vec(
                (0usize..3, proptest::collection::vec((any::<bool>(), 0u8..4), 1..6)),
                1..12,
            ),
            seed in any::<u64>()
        ) {
            let counter = wat(&std::fs::read_to_string(example("counter.wat")).unwrap());
            let tally = wat(&std::fs::read_to_string(example("tally.wat")).unwrap());
            let modules: [(&str, &[u8], u64); 2] =
                [("count", &counter, default_fuel()), ("tally", &tally, default_fuel())];
            let (mut a, _) = machine(&modules);
            let mut b = machine_reversed(&modules);
            let mut applied = 0;
            for (wallet, actions) in &contracts {
                let actions: Vec<_> = actions
                    .iter()
                    .map(|(is_vote, p)| {
                        if *is_vote {
                            json!({"action": "tally", "proposal": {"id": format!("P{p}"), "description": "d"}})
                        } else {
                            json!({"action": "count"})
                        }
                    })
                    .collect();
                let oa = run(&mut a, WALLETS[*wallet], &actions);
                let ob = run(&mut b, WALLETS[*wallet], &actions);
                applied += usize::from(oa.is_applied());
                prop_assert_eq!(oa, ob);
                b.state_root();
            }
            let all = entries(&a);
            prop_assert_eq!(&all, &entries(&b), "the same entries");
            let root = a.state_root();
            prop_assert_eq!(b.state_root(), root);
            prop_assert_eq!(root_put_one_by_one(all, seed), root);
            // The modules wrote: a contract of counts alone always applies.
            let counts_only = contracts.iter().any(|(_, acts)| acts.iter().all(|(vote, _)| !vote));
            prop_assert!(!counts_only || applied > 0, "no contract applied");
        }
    }
}
