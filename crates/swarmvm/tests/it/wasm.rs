//! WebAssembly operations through the command line: `module check`, registration from
//! `.wat` and `.wasm`, modules in bundles applied by several peers, upgrades that keep an
//! action's state, a module missing from the chain, `exec --modules`, `demo --wasm`.

use serde_json::{Value, json};

use crate::support::{Env, REFUSED};

fn docs(name: &str) -> String {
    std::fs::read_to_string(format!("{}/../../docs/wasm/{name}", env!("CARGO_MANIFEST_DIR")))
        .unwrap()
}

/// The authority, two peers, the counter (`.wat`) and tally (`.wasm`) in the folder.
fn setup() -> Env {
    let env = Env::new();
    env.network("ed25519", "note_tokens.txt");
    env.write("counter.wat", docs("counter.wat"));
    let tally = swarmvm_wasm::module_bytes(docs("tally.wat").as_bytes()).unwrap();
    std::fs::write(env.path("tally.wasm"), tally).unwrap();
    env
}

/// A signed contract line of `actions` by `wallet` with `nonce`.
fn contract(env: &Env, wallet: &str, nonce: u64, actions: Value) -> String {
    env.write("c.json", json!({ "actions": actions }).to_string());
    env.ok(&[
        "contract",
        "sign",
        "c.json",
        "--wallet",
        wallet,
        "--network",
        "auth.pub",
        "--nonce",
        &nonce.to_string(),
    ])
}

fn vote(action: &str, id: &str) -> Value {
    json!({"action": action, "proposal": {"id": id, "description": "More funding"}})
}

#[test]
fn module_check_prints_the_hash_and_refuses_what_the_abi_does_not_allow() {
    let env = setup();
    let info = env.json(&["module", "check", "counter.wat"]);
    let wasm = swarmvm_wasm::module_bytes(docs("counter.wat").as_bytes()).unwrap();
    assert_eq!(info["hash"], swarmvm_primitives::Hash32::digest(&wasm).to_hex());
    assert_eq!(info["imports"], json!(["get", "set"]));
    assert_eq!(info["exports"], json!(["memory", "run"]));
    assert_eq!(info["table_elements"], 0);
    let text = env.ok(&["module", "check", "tally.wasm"]);
    assert!(text.contains("imports  input_len, input_read, caller, get, set, fail"), "{text}");
    for (name, module, says) in [
        (
            "float.wat",
            r#"(module (memory (export "memory") 1) (func (export "run") (result i32) (f32.const 1) drop (i32.const 0)))"#,
            "no floats",
        ),
        (
            "import.wat",
            r#"(module (import "env" "clock" (func)) (memory (export "memory") 1) (func (export "run") (result i32) (i32.const 0)))"#,
            "env.clock is not part of the swarmvm ABI",
        ),
        (
            "start.wat",
            r#"(module (memory (export "memory") 1) (func $s) (start $s) (func (export "run") (result i32) (i32.const 0)))"#,
            "start function",
        ),
        (
            "big.wat",
            r#"(module (memory (export "memory") 257) (func (export "run") (result i32) (i32.const 0)))"#,
            "257 pages",
        ),
        ("norun.wat", r#"(module (memory (export "memory") 1))"#, "does not export 'run'"),
        (
            "table.wat",
            r#"(module (memory (export "memory") 1) (table 65537 funcref) (func (export "run") (result i32) (i32.const 0)))"#,
            "tables have 65537 elements initially; at most 65536",
        ),
    ] {
        env.write(name, module);
        let err = env.fails(&["module", "check", name], REFUSED);
        assert!(err.contains(says), "{name}: {err}");
    }
}

#[test]
fn modules_registered_in_bundles_run_on_every_peer_and_upgrades_keep_their_state() {
    let env = setup();
    env.write(
        "ops.json",
        json!({"count": {"wasm": "counter.wat"}, "tally": {"wasm": "tally.wasm", "fuel": 5_000_000}})
            .to_string(),
    );
    let ops = env.ok(&["token", "issue", "operations", "--key", "auth.pem", "--ops", "ops.json"]);
    env.write("tokens.txt", format!("{}{ops}", env.read("note_tokens.txt")));
    let shown = env.ok(&["token", "verify", "tokens.txt", "--trust", "auth.pub", "--json"]);
    let third: Value = serde_json::from_str(shown.lines().nth(2).unwrap()).unwrap();
    let bound = &third["operations"];
    assert_eq!(bound["tally"]["fuel"], 5_000_000);
    assert_eq!(bound["count"]["fuel"], swarmvm_primitives::fuel::DEFAULT_FUEL);

    let lines = [
        contract(&env, "peer1.pem", 1, json!([{"action": "count"}, vote("tally", "P1")])),
        contract(&env, "peer2.pem", 1, json!([vote("tally", "P1"), {"action": "count"}])),
        contract(&env, "peer2.pem", 2, json!([vote("tally", "P1")])), // a second vote: rejected
    ];
    env.write("c1.jsonl", lines.join(""));
    let b1 = env.json(&[
        "bundle",
        "create",
        "b1",
        "--key",
        "auth.pem",
        "--tokens",
        "tokens.txt",
        "--contracts",
        "c1.jsonl",
        "--module",
        "counter.wat",
        "--module",
        "tally.wasm",
    ]);
    assert_eq!(b1["seq"], 1);
    assert_eq!(std::fs::read_dir(env.path("b1/modules")).unwrap().count(), 2);
    let mut roots = Vec::new();
    for peer in ["p1", "p2"] {
        let applied = env.json(&["node", "apply", "b1", "--data-dir", peer, "--trust", "auth.pub"]);
        assert_eq!((applied["applied"].as_u64(), applied["rejected"].as_u64()), (Some(2), Some(1)));
        let reason = applied["receipts"][2]["reason"].as_str().unwrap();
        assert!(reason.contains("module failed: tally: this wallet already voted"), "{reason}");
        roots.push(env.ok(&["state", "root", "--data-dir", peer]));
    }
    assert_eq!(roots[0], roots[1], "every peer reaches one root");
    let state = env.json(&["state", "show", "--data-dir", "p1"]);
    assert_eq!(state["wasm"]["count"]["count"], "2");
    assert_eq!(state["wasm"]["tally"]["P1"], "2");
    let text = env.ok(&["state", "show", "--data-dir", "p1"]);
    assert!(text.contains(r#"wasm        count "count" = "2""#), "{text}");
    assert!(text.contains("operation   tally -> wasm "), "{text}");

    // Bundle 2 upgrades `count` to a module that adds ten: the count goes on from 2.
    env.write("counter10.wat", docs("counter.wat").replace("(i64.const 1))", "(i64.const 10))"));
    env.write("ops2.json", json!({"count": {"wasm": "counter10.wat"}}).to_string());
    let ops2 = env.ok(&["token", "issue", "operations", "--key", "auth.pem", "--ops", "ops2.json"]);
    env.write("tokens2.txt", ops2);
    let more = [contract(&env, "peer1.pem", 2, json!([{"action": "count"}, vote("tally", "P2")]))];
    env.write("c2.jsonl", more.join(""));
    env.ok(&[
        "bundle",
        "create",
        "b2",
        "--key",
        "auth.pem",
        "--tokens",
        "tokens2.txt",
        "--contracts",
        "c2.jsonl",
        "--module",
        "counter10.wat",
        "--after",
        "b1",
    ]);
    for peer in ["p1", "p2"] {
        env.json(&["node", "apply", "b2", "--data-dir", peer, "--trust", "auth.pub"]);
    }
    let state = env.json(&["state", "show", "--data-dir", "p2"]);
    assert_eq!(state["wasm"]["count"]["count"], "12", "the upgrade kept the count");
    assert_eq!(state["wasm"]["tally"]["P2"], "1", "tally, registered in bundle 1, still runs");
    assert_eq!(
        env.ok(&["state", "root", "--data-dir", "p1"]),
        env.ok(&["state", "root", "--data-dir", "p2"])
    );
    env.ok(&["ledger", "verify", "--data-dir", "p1"]);
    let page = env.json(&["state", "show", "--data-dir", "p1", "--table", "wasm", "--limit", "2"]);
    assert_eq!(
        page["entries"][0],
        json!({"id": "count/636f756e74", "action": "count", "key": "count", "value": "12"})
    );
    // The HTTP API shows the same.
    let node = crate::support::Daemon::start(
        &env,
        &[
            "node",
            "run",
            "--data-dir",
            "p2",
            "--trust",
            "auth.pub",
            "--no-dht",
            "--listen",
            "127.0.0.1:0",
            "--http",
            "127.0.0.1:0",
        ],
    );
    let http = crate::node::http_of(&node);
    let (code, state) = swarmvm_test_support::http::get(http, "/v1/state");
    assert_eq!((code, &state["wasm"]["tally"]["P2"]), (200, &json!("1")));
    let (code, page) = swarmvm_test_support::http::get(http, "/v1/state/wasm?limit=1");
    assert_eq!(
        (code, &page["entries"][0]["key"], &page["next"]),
        (200, &json!("count"), &json!("count/636f756e74"))
    );
    drop(node);

    // Bundle 3 binds an action to a module no bundle of the chain carries: refused whole.
    let unknown = swarmvm_primitives::Hash32::digest(b"nowhere").to_hex();
    env.write("ops3.json", json!({"ghost": {"wasm": unknown}}).to_string());
    let ops3 = env.ok(&["token", "issue", "operations", "--key", "auth.pem", "--ops", "ops3.json"]);
    env.write("tokens3.txt", ops3);
    env.ok(&[
        "bundle",
        "create",
        "b3",
        "--key",
        "auth.pem",
        "--tokens",
        "tokens3.txt",
        "--after",
        "b2",
    ]);
    let root = env.ok(&["state", "root", "--data-dir", "p1"]);
    let err =
        env.fails(&["node", "apply", "b3", "--data-dir", "p1", "--trust", "auth.pub"], REFUSED);
    assert!(err.contains("neither this bundle nor an earlier one of the chain carries"), "{err}");
    assert_eq!(env.ok(&["state", "root", "--data-dir", "p1"]), root);
}

#[test]
fn exec_takes_modules_from_a_folder() {
    let env = setup();
    std::fs::create_dir(env.path("mods")).unwrap();
    std::fs::copy(env.path("counter.wat"), env.path("mods/counter.wat")).unwrap();
    env.write("ops.json", json!({"count": {"wasm": "counter.wat"}}).to_string());
    let ops = env.ok(&["token", "issue", "operations", "--key", "auth.pem", "--ops", "ops.json"]);
    env.write("tokens.txt", format!("{}{ops}", env.read("note_tokens.txt")));
    env.write(
        "count.json",
        json!({"actions": [{"action": "count"}, {"action": "count"}]}).to_string(),
    );
    // Without the module, the registration is refused.
    let err = env.fails(
        &[
            "exec",
            "count.json",
            "--wallet",
            "peer1.pem",
            "--data-dir",
            "none",
            "--tokens",
            "tokens.txt",
            "--trust",
            "auth.pub",
        ],
        REFUSED,
    );
    assert!(err.contains("neither this bundle nor an earlier one"), "{err}");
    let out = env.json(&[
        "exec",
        "count.json",
        "--wallet",
        "peer1.pem",
        "--data-dir",
        "p",
        "--tokens",
        "tokens.txt",
        "--trust",
        "auth.pub",
        "--modules",
        "mods",
    ]);
    assert_eq!(out["receipt"]["status"], "applied", "{out}");
    env.ok(&["exec", "count.json", "--wallet", "peer1.pem", "--data-dir", "p"]);
    let state = env.json(&["state", "show", "--data-dir", "p"]);
    assert_eq!(state["wasm"]["count"]["count"], "4");
}

#[test]
fn demo_wasm_counts_the_votes_with_the_tally_module_on_eight_peers() {
    let env = Env::new();
    let out = env.json(&["demo", "--wasm", "--peers", "8"]);
    assert_eq!(out["agree"], true);
    for peer in out["peers"].as_array().unwrap() {
        assert_eq!(peer["state"]["wasm"]["vote_proposal"]["P001"], "8", "{peer}");
        assert!(peer["state"]["proposals"].as_object().unwrap().is_empty());
        assert_eq!(
            peer["state"]["operations"]["vote_proposal"]["fuel"],
            swarmvm_primitives::fuel::DEFAULT_FUEL
        );
        assert_eq!(peer["state_root"], out["state_root"]);
    }
}

/// A module that removes `n` distinct keys in one action.
fn remover(n: u32) -> String {
    format!(
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
    )
}

#[test]
fn bundles_apply_under_the_rules_their_manifest_names_and_rules_never_go_back() {
    let env = setup();
    env.write("rm.wat", remover(10_000));
    env.write("ops.json", json!({"rm": {"wasm": "rm.wat", "fuel": 100_000_000}}).to_string());
    let ops = env.ok(&["token", "issue", "operations", "--key", "auth.pem", "--ops", "ops.json"]);
    env.write("tokens.txt", format!("{}{ops}", env.read("note_tokens.txt")));
    env.write("c.jsonl", contract(&env, "peer1.pem", 1, json!([{"action": "rm"}])));
    let create = |dir: &str, extra: &[&str]| {
        let mut args = vec!["bundle", "create", dir, "--key", "auth.pem"];
        args.extend_from_slice(extra);
        env.json(&args)
    };
    let bundle = ["--tokens", "tokens.txt", "--contracts", "c.jsonl", "--module", "rm.wat"];
    create("old", &[&bundle[..], &["--rules", "1"]].concat());
    create("new", &bundle);
    let claims = |dir: &str| {
        use base64::Engine as _;
        let manifest = env.read(&format!("{dir}/manifest.jwt"));
        let payload = manifest.trim().split('.').nth(1).unwrap().to_owned();
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap();
        serde_json::from_slice::<Value>(&bytes).unwrap()
    };
    assert_eq!(claims("old").get("rules"), None, "version 1 is written as the second wave did");
    assert_eq!(claims("new")["rules"], 4, "new bundles name the newest rules");

    // 10,000 removals in one action: version 1 applies them, version 2 counts them.
    let old = env.json(&["node", "apply", "old", "--data-dir", "p-old", "--trust", "auth.pub"]);
    assert_eq!((old["applied"].as_u64(), old["rejected"].as_u64()), (Some(1), Some(0)), "{old}");
    let new = env.json(&["node", "apply", "new", "--data-dir", "p-new", "--trust", "auth.pub"]);
    assert_eq!((new["applied"].as_u64(), new["rejected"].as_u64()), (Some(0), Some(1)), "{new}");
    let reason = new["receipts"][0]["reason"].as_str().unwrap();
    assert!(reason.contains("remove: the action write budget is spent"), "{reason}");

    // The next bundle may not go back to version 1: `bundle create` refuses to sign it (a
    // node refuses one signed elsewhere: `order::a_bundle_may_not_name_older_rules_than_its_parent`).
    let student = json!({"action": "register_student",
        "student": {"id": "S9", "name": "N", "department": "D"}});
    env.write("c2.jsonl", contract(&env, "peer2.pem", 1, json!([student])));
    let back = ["--after", "new", "--contracts", "c2.jsonl", "--rules", "1"];
    let run = env.run(&[&["bundle", "create", "back", "--key", "auth.pem"][..], &back].concat());
    assert_ne!(run.code, 0, "{run:?}");
    assert!(run.one_line_error().contains("the previous bundle names rules version 4"), "{run:?}");
    assert!(!env.path("back/manifest.jwt").exists());
    // An old chain may move up.
    create("up", &["--after", "old", "--contracts", "c2.jsonl"]);
    env.json(&["node", "apply", "up", "--data-dir", "p-old", "--trust", "auth.pub"]);
    // And a version this build does not know is a usage error that names it.
    let run = env.run(&["bundle", "create", "x", "--key", "auth.pem", "--rules", "5"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("rules version 5 is not known here"), "{run:?}");
}
