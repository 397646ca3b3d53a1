//! `tests/vectors/wasm.json`: the fuel the examples use, call by call, and the root they
//! leave. A wasmi upgrade that changes fuel costs (a protocol change) fails here.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{Value, json};
use swarmvm_primitives::Rules;
use swarmvm_vm::wasm::{WriteLimit, canonical_input};
use swarmvm_vm::{Block, Call, Contract, HANDLER_NAMES, Machine, StateError, WasmState};
use swarmvm_wasm::{Runtime, fuel_used, module_bytes};

/// Module entries by (action, key).
type Entries = BTreeMap<(String, Vec<u8>), Vec<u8>>;

/// Module entries in a map.
#[derive(Default)]
struct MapState(RefCell<Entries>);

impl WasmState for MapState {
    fn get(&self, action: &str, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        Ok(self.0.borrow().get(&(action.to_owned(), key.to_vec())).cloned())
    }
    fn set(&self, action: &str, key: &[u8], value: &[u8]) {
        self.0.borrow_mut().insert((action.to_owned(), key.to_vec()), value.to_vec());
    }
    fn remove(&self, action: &str, key: &[u8]) {
        self.0.borrow_mut().remove(&(action.to_owned(), key.to_vec()));
    }
}

#[test]
fn the_examples_use_their_pinned_fuel_and_leave_their_pinned_root() {
    let root_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let v: Value = serde_json::from_str(
        &std::fs::read_to_string(root_dir.join("tests/vectors/wasm.json")).unwrap(),
    )
    .unwrap();
    // Each rules version has its own pinned figures: version 2 charges instantiation and
    // resets, so an old chain keeps the fuel and root it had.
    // Version 3 changes only how the root is hashed.
    for (rules, expect) in
        [(Rules::V1, "expect"), (Rules::V2, "expect_rules_2"), (Rules::V3, "expect_rules_3")]
    {
        let got = run_vector(&root_dir, &v, rules);
        assert_eq!(
            v[expect],
            got,
            "the fuel vector of rules {rules} changed (a protocol change); if on purpose, pin it in tests/vectors/wasm.json under {expect}:\n{}",
            serde_json::to_string_pretty(&got).unwrap()
        );
    }
}

/// The vector's calls under `rules`: module hashes, fuel used per call and the root.
fn run_vector(root_dir: &Path, v: &Value, rules: Rules) -> Value {
    let runtime = std::sync::Arc::new(Runtime::new());
    let mut hashes = BTreeMap::new();
    for (action, path) in v["modules"].as_object().unwrap() {
        let text = std::fs::read(root_dir.join(path.as_str().unwrap())).unwrap();
        let hash = runtime.load(&module_bytes(&text).unwrap()).unwrap();
        hashes.insert(action.clone(), hash);
    }
    let wallets: Vec<&str> =
        v["wallets"].as_array().unwrap().iter().map(|w| w.as_str().unwrap()).collect();
    let fuel = v["fuel"].as_u64().unwrap();
    let block = Block {
        seq: v["block"]["seq"].as_u64().unwrap(),
        time: v["block"]["time"].as_u64().unwrap(),
        rules,
    };
    let state = MapState::default();
    let mut used = Vec::new();
    for call in v["calls"].as_array().unwrap() {
        let action = call["action"].as_str().unwrap();
        let input = canonical_input(&call["input"]).unwrap();
        let caller = wallets[call["wallet"].as_u64().unwrap() as usize];
        let limit = if rules.has(Rules::V2) {
            WriteLimit::tightest(Default::default(), Default::default())
        } else {
            WriteLimit::V1
        };
        let c = Call { action, input: &input, caller, block, fuel, limit };
        used.push(match fuel_used(&runtime, &hashes[action], &state, &c) {
            Ok(n) => json!(n),
            Err(e) => json!(e.to_string()),
        });
    }

    let mut m = Machine::new().with_runner(runtime);
    for h in HANDLER_NAMES {
        m.register_operation(h, h).unwrap();
    }
    for (i, w) in wallets.iter().enumerate() {
        m.register_wallet(w, &format!("peer{}", i + 1), "{}").unwrap();
    }
    for (action, hash) in &hashes {
        m.register_module(action, *hash, fuel).unwrap();
    }
    for call in v["calls"].as_array().unwrap() {
        let signer = wallets[call["wallet"].as_u64().unwrap() as usize];
        let nonce = m.nonce(signer) + 1;
        let actions = [call["input"].clone()];
        m.execute_in(&Contract { signer, nonce, actions: &actions }, block);
    }
    json!({
        "hashes": hashes.iter().map(|(a, h)| (a.clone(), json!(h.to_hex()))).collect::<serde_json::Map<_, _>>(),
        "fuel_used": used,
        "state_root": m.state_root_under(rules).to_hex(),
    })
}
