//! The Python client for wallet holders (`clients/python`, package `swarmvm_client`):
//! installed offline with pip into a fresh virtual environment, it gives the shared vectors'
//! bytes, and signs, submits and follows a contract against a live sequencer.

use serde_json::{Value, json};
use swarmvm_test_support::{require_program, require_python_modules};

use crate::live::{genesis, sequencer};
use crate::node::http_of;
use crate::support::{Env, external};

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");

#[test]
fn the_python_client_installs_offline_and_signs_submits_and_follows_a_contract() {
    require_program("python3", "python3");
    require_python_modules(&["cryptography", "venv"]);
    let env = Env::new();
    // Offline: no index, and the package needs no build dependency (its backend is in-tree);
    // cryptography comes from the machine's site packages.
    external("python3", &["-m", "venv", "--system-site-packages", "venv"], env.dir.path());
    let pip = env.p("venv/bin/pip");
    let package = format!("{ROOT}/clients/python");
    external(&pip, &["install", "--no-index", "--quiet", &package], env.dir.path());
    // Run from outside the source tree, so the installed copy is the one imported.
    let python = env.p("venv/bin/python");

    env.network("ed25519", "tokens.txt");
    let seq = sequencer(&env, "200ms");
    let http = http_of(&seq);
    genesis(&env, http);
    let peer1 = env.json(&["wallet", "show", "peer1.pem"]);
    let script = format!("{ROOT}/clients/python/tests/live.py");
    let vectors = format!("{ROOT}/tests/vectors/contracts.json");
    let out = external(
        &python,
        &[&script, &format!("http://{http}"), &env.p("peer1.pem"), &vectors],
        env.dir.path(),
    );
    let out: Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();

    assert!(out["module"].as_str().unwrap().contains("/venv/"), "the installed package: {out}");
    let vectors = out["vectors"].as_array().unwrap();
    assert!(vectors.len() >= 8 && vectors.iter().all(|v| v == true), "{out}");
    assert_eq!(out["wallet"], peer1["id"]);
    assert_eq!(out["public_jwk"]["x"], peer1["jwk"]["x"]);
    assert_eq!(out["nonce"], 1, "a fresh wallet's next nonce");
    assert_eq!(out["submitted"]["state"], "pending", "{out}");
    assert_eq!(out["outcome"]["state"], "applied", "{out}");
    assert_eq!(out["outcome"]["id"], out["submitted"]["id"]);
    assert_eq!(
        out["entry"],
        json!({"id": "PY1", "name": "Zoë Python", "department": "Snakes", "courses": []})
    );
    assert_eq!(out["absent"], Value::Null);
    assert_eq!(out["next_nonce"], 2);
    assert_eq!(out["replay"]["status"], 409, "{out}");
    assert_eq!(out["unknown_table"], 404);
    let after = out["timeout"]["after"].as_f64().unwrap_or_else(|| panic!("{out}"));
    assert!((0.4..5.0).contains(&after), "{out}");
    // What the client applied is what the node holds.
    let state = env.json(&["state", "show", "--data-dir", "seq"]);
    assert_eq!(state["students"]["PY1"]["name"], "Zoë Python");
    drop(seq);
}
