//! The clients for wallet holders. The Python package (`clients/python`, `swarmvm_client`),
//! installed offline with pip into a fresh virtual environment, and the JavaScript module
//! (`clients/js/swarmvm.mjs`, in Node.js) each give the shared vectors' bytes, and sign,
//! submit and follow a contract against a live sequencer.

use serde_json::{Value, json};
use swarmvm_test_support::{require_program, require_python_modules};

use crate::support::{Daemon, Env, external};

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");

/// A network whose sequencer (cutting every 200 ms) applied its registrations; its HTTP
/// address, and peer 1's `wallet show`. Writes `network.json`: the network of the
/// sequencer's one key (`--trust auth.pub`) as a network file, made from the key, not asked
/// of the node.
fn live_sequencer(env: &Env) -> (Daemon, std::net::SocketAddr, Value) {
    let (seq, http) = crate::live::live_sequencer(env);
    let auth = env.json(&["wallet", "show", "auth.pub"]);
    let network = json!({"authorities": [auth["jwk"]], "network": auth["id"], "threshold": 1});
    env.write("network.json", network.to_string());
    (seq, http, env.json(&["wallet", "show", "peer1.pem"]))
}

/// PyJWT verifies the contract a client signed (EdDSA, `aud` the network) with the client's
/// public JWK, and jwcrypto computes that key's thumbprint: the wallet id.
fn assert_pyjwt_accepts(env: &Env, out: &Value, public_jwk: &Value, wallet: &Value) {
    require_python_modules(&["jwt", "jwcrypto"]);
    env.write("client.jwk", public_jwk.to_string());
    let tool = format!("{ROOT}/crates/swarmvm/tests/interop/jwt_tool.py");
    let signed = out["signed"].as_str().unwrap_or_else(|| panic!("{out}"));
    let network = out["network"].as_str().unwrap();
    let checked = external(
        "python3",
        &[&tool, "contract", signed, &env.p("client.jwk"), network],
        env.dir.path(),
    );
    let checked: Value = serde_json::from_str(&checked).unwrap();
    assert_eq!(checked["claims"]["iss"], *wallet, "{checked}");
    assert_eq!(checked["claims"]["aud"], network);
    assert_eq!(checked["header"]["typ"], "swarmvm-contract+jwt");
    assert_eq!(checked["thumbprint"], *wallet, "jwcrypto's thumbprint is the wallet id");
}

/// A client's verified reads: the untouched answer holds, and each tampered one is refused
/// for its reason.
fn assert_refusals(out: &Value) {
    let refusals = &out["refusals"];
    assert_eq!(refusals["untouched"], "accepted", "{out}");
    for (case, reason) in [
        ("value", "the proof leads to root"),
        ("proof", ""),
        ("network", "another network"),
        ("expired", "the head expired"),
        ("outsiders", "not a member of the set"),
        ("asked", "another entry than the one asked"),
    ] {
        let got = refusals[case].as_str().unwrap_or_else(|| panic!("{case}: {out}"));
        assert!(got != "accepted" && got.contains(reason), "{case}: {got}");
    }
}

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

    let (seq, http, peer1) = live_sequencer(&env);
    let script = format!("{ROOT}/clients/python/tests/live.py");
    let vectors = format!("{ROOT}/tests/vectors/contracts.json");
    let out = external(
        &python,
        &[
            &script,
            &format!("http://{http}"),
            &env.p("peer1.pem"),
            &vectors,
            &env.p("network.json"),
        ],
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
    // Verified reads: the value with a proof against a head K members signed, and an absence.
    assert_eq!(out["verified"], json!({"name": "Zoë Python", "department": "Snakes"}), "{out}");
    assert_eq!(out["verified_absent"], Value::Null, "{out}");
    assert_refusals(&out);
    assert_pyjwt_accepts(&env, &out, &out["public_jwk"], &out["wallet"]);
    // What the client applied is what the node holds.
    let state = env.json(&["state", "show", "--data-dir", "seq"]);
    assert_eq!(state["students"]["PY1"]["name"], "Zoë Python");
    drop(seq);
}

#[test]
fn the_javascript_client_is_small_and_signs_submits_and_follows_a_contract() {
    require_program("node", "nodejs");
    let terser = format!("{ROOT}/tests/browser/node_modules/terser/main.js");
    assert!(
        std::path::Path::new(&terser).exists(),
        "terser is missing: make test-deps installs it"
    );
    let env = Env::new();
    let (seq, http, peer1) = live_sequencer(&env);
    let out = external(
        "node",
        &[
            &format!("{ROOT}/clients/js/test.mjs"),
            &format!("{ROOT}/tests/vectors/contracts.json"),
            &terser,
            &format!("http://{http}"),
            &env.p("peer1.pem"),
            &env.p("network.json"),
        ],
        env.dir.path(),
    );
    let out: Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();

    let vectors = out["vectors"].as_array().unwrap();
    assert!(vectors.len() >= 8 && vectors.iter().all(|v| v == true), "{out}");
    assert_eq!(out["order"], "{\"10\":2,\"9\":3,\"a\":{\"\u{ff61}\":2,\"\u{1f600}\":1},\"b\":1}");
    let gzipped = out["size"]["gzipped"].as_u64().unwrap();
    assert!(gzipped <= 5 * 1024, "at most 5 KB minified and gzipped: {out}");
    assert!(out["size"]["minified"].as_u64().unwrap() < out["size"]["source"].as_u64().unwrap());
    assert_eq!(out["generated"], json!({"id": 43, "extractable": false}));
    assert_eq!(out["wallet"], peer1["id"]);
    assert_eq!((&out["nonce"], &out["nextNonce"]), (&json!(1), &json!(2)), "{out}");
    assert_eq!(out["submitted"]["state"], "pending", "{out}");
    assert_eq!(out["outcome"]["state"], "applied", "{out}");
    assert_eq!(
        out["entry"],
        json!({"id": "JS1", "name": "Zoë Script", "department": "Webs", "courses": []})
    );
    assert_eq!(out["absent"], Value::Null);
    assert_eq!(out["replay"]["status"], 409, "{out}");
    let after = out["timeout"]["after"].as_f64().unwrap_or_else(|| panic!("{out}"));
    assert!((0.4..5.0).contains(&after), "{out}");
    assert_eq!(out["verified"], json!({"name": "Zoë Script", "department": "Webs"}), "{out}");
    assert_eq!(out["verifiedAbsent"], Value::Null, "{out}");
    assert_refusals(&out);
    assert_pyjwt_accepts(&env, &out, &out["publicJwk"], &out["wallet"]);
    let state = env.json(&["state", "show", "--data-dir", "seq"]);
    assert_eq!(state["students"]["JS1"]["name"], "Zoë Script");
    drop(seq);
}
