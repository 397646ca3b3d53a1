//! Golden vectors (`tests/vectors/`) and an independent state root.
//!
//! - `demo.json`: the demo scenario from fixed seeds, nonces and times; the wallet ids, the
//!   contracts, the manifest, the bundle identity and the state root after `node apply` are
//!   pinned byte for byte (the two registration tokens, whose `jti` is random, are inputs).
//! - `trie.json`: trie edge cases; `recompute_root.py` (Python, `hashlib` and
//!   `docs/format.md` only) gives every pinned root.
//! - The state root of the demo, and of a state that uses every table, recomputed by
//!   `recompute_root.py` from `state show --json`: the spec alone is enough.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::{Value, json};
use swarmvm_bundle::{CreateOptions, create_bundle};
use swarmvm_token::{IssueTime, Signer, WalletEntry, issue_operations, issue_wallets};
use swarmvm_vm::HANDLER_NAMES;
use swarmvm_wallet::Wallet;

use crate::support::Env;

fn vectors_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/vectors")
}

fn vectors(name: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(vectors_dir().join(name)).unwrap()).unwrap()
}

fn seed(v: &Value) -> Wallet {
    let s = v.as_str().unwrap();
    let bytes: Vec<u8> =
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect();
    Wallet::from_ed25519_seed(&bytes).unwrap()
}

/// A JWS compact serialization's payload.
fn payload(token: &str) -> Value {
    use base64::Engine as _;
    let part = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(part).unwrap())
        .unwrap()
}

/// `recompute_root.py` with `args`, `stdin` on its standard input; its standard output.
fn python(args: &[&str], stdin: &str) -> String {
    let mut child = Command::new("python3")
        .arg(vectors_dir().join("recompute_root.py"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs (scripts/install-test-deps.sh installs it)");
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// A network's tokens at `time`: `operations`, and a wallets token labelling `peers`.
fn tokens(
    authority: &Wallet,
    operations: &BTreeMap<String, swarmvm_token::Operation>,
    peers: &[(String, Wallet)],
    time: IssueTime,
) -> [String; 2] {
    let signer = Signer::Wallet(authority);
    let entries: Vec<WalletEntry> = peers
        .iter()
        .map(|(label, w)| WalletEntry { label: label.clone(), key: w.public_key().clone() })
        .collect();
    [
        issue_operations(&signer, operations, HANDLER_NAMES, time).unwrap(),
        issue_wallets(&signer, &entries, time).unwrap(),
    ]
}

/// Bundle seq 1 in `env`/`name` (tokens and contracts), signed at `now`; applied to `peer`
/// with `node apply`. Returns the bundle folder.
fn bundle_applied(
    env: &Env,
    authority: &Wallet,
    tokens: &[String],
    contracts: &[String],
    modules: &[PathBuf],
    now: u64,
) -> PathBuf {
    let dir = env.path("bundle-1");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("registration_tokens.txt"), tokens.join("\n") + "\n").unwrap();
    std::fs::write(dir.join("contracts.jsonl"), contracts.join("\n") + "\n").unwrap();
    let options = CreateOptions { now, modules, ..CreateOptions::default() };
    let network = swarmvm_token::Network::single(authority.public_key().clone());
    create_bundle(&dir, &[authority], &network, &options).unwrap();
    env.write("authority.pub", authority.public_key().to_spki_pem());
    let applied =
        env.json(&["node", "apply", "bundle-1", "--data-dir", "peer", "--trust", "authority.pub"]);
    assert_eq!(applied["rejected"], 0, "{applied}");
    dir
}

/// The state root, and the one Python recomputes from `state show --json`.
fn roots(env: &Env) -> (String, String) {
    let root = env.ok(&["state", "root", "--data-dir", "peer"]).trim().to_owned();
    let state = env.ok(&["state", "show", "--data-dir", "peer", "--json"]);
    (root, python(&["state"], &state).trim().to_owned())
}

#[test]
fn the_demo_vector_gives_its_pinned_contracts_bundle_and_root() {
    let v = vectors("demo.json");
    let now = v["time"].as_u64().unwrap();
    let time = IssueTime { now, ttl: v["ttl"].as_u64().unwrap() };
    let authority = seed(&v["authority_seed"]);
    let network = authority.id().to_string();
    let peers: Vec<(String, Wallet)> = v["peers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["label"].as_str().unwrap().to_owned(), seed(&p["seed"])))
        .collect();
    let operations: BTreeMap<String, swarmvm_token::Operation> = v["operations"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, h)| (k.clone(), h.as_str().unwrap().into()))
        .collect();
    // Registration tokens carry a random `jti`, so the vector holds the two the authority
    // signed; tokens issued again from the same inputs differ from them in `jti` alone.
    let pinned: Vec<String> =
        v["tokens"].as_array().unwrap().iter().map(|t| t.as_str().unwrap().to_owned()).collect();
    let fresh = tokens(&authority, &operations, &peers, time);
    for (p, f) in pinned.iter().zip(&fresh) {
        let (mut p, mut f) = (payload(p), payload(f));
        assert_ne!(p["jti"], f["jti"]);
        p.as_object_mut().unwrap().remove("jti");
        f.as_object_mut().unwrap().remove("jti");
        assert_eq!(p, f, "a token issued from the vector's inputs");
    }
    let tokens = pinned;
    let contracts: Vec<String> = v["contracts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let peer = &peers[usize::try_from(c["peer"].as_u64().unwrap()).unwrap()].1;
            let actions = c["actions"].as_array().unwrap();
            swarmvm_token::sign_contract(peer, &network, c["nonce"].as_u64().unwrap(), actions, now)
                .unwrap()
        })
        .collect();
    let env = Env::new();
    let dir = bundle_applied(&env, &authority, &tokens, &contracts, &[], now);
    let manifest = std::fs::read_to_string(dir.join("manifest.jwt")).unwrap();
    let opened = swarmvm_bundle::open_bundle(
        &dir,
        &network,
        &swarmvm_token::AuthoritySet::single(authority.public_key().clone()),
    )
    .unwrap();
    let (root, python_root) = roots(&env);
    assert_eq!(python_root, root, "Python's root from state show --json");

    let got = json!({
        "authority": network,
        "wallets": peers.iter().map(|(_, w)| w.id().to_string()).collect::<Vec<_>>(),
        "contracts": contracts,
        "manifest": manifest.trim_end(),
        "bundle_id": opened.id().to_string(),
        "state_root": root,
    });
    assert_eq!(
        v["expect"],
        got,
        "the demo vector changed; if on purpose, pin it in tests/vectors/demo.json:\n{}",
        serde_json::to_string_pretty(&got).unwrap()
    );

    // Signed under rules version 1, the same bundle is the one the second wave pinned, byte
    // for byte, and applies to the same root.
    let pinned = &v["rules_1"];
    let v1 = env.path("bundle-rules-1");
    std::fs::create_dir_all(&v1).unwrap();
    for file in ["registration_tokens.txt", "contracts.jsonl"] {
        std::fs::copy(dir.join(file), v1.join(file)).unwrap();
    }
    let options = CreateOptions { now, rules: swarmvm_primitives::Rules::V1, ..Default::default() };
    let network_of_one = swarmvm_token::Network::single(authority.public_key().clone());
    create_bundle(&v1, &[&authority], &network_of_one, &options).unwrap();
    let manifest_v1 = std::fs::read_to_string(v1.join("manifest.jwt")).unwrap();
    assert_eq!(manifest_v1.trim_end(), pinned["manifest"].as_str().unwrap());
    let applied = env.json(&[
        "node",
        "apply",
        "bundle-rules-1",
        "--data-dir",
        "rules-1-peer",
        "--trust",
        "authority.pub",
    ]);
    assert_eq!(applied["bundle"], pinned["bundle_id"], "{applied}");
    let root_v1 = env.ok(&["state", "root", "--data-dir", "rules-1-peer"]);
    assert_eq!(root_v1.trim(), pinned["state_root"], "rules 1 hash the trie as before");
    assert_ne!(root_v1.trim(), root, "rules 3 hash it as a binary tree");
    // A ledger hashed as rules 1 and 2 hash it cannot prove entries in rules 3's form.
    let err = env.fails(
        &["state", "prove", "--data-dir", "rules-1-peer", "--table", "students", "--id", "S001"],
        crate::support::REFUSED,
    );
    assert!(err.contains("hashed under rules 2 or older"), "{err}");

    // The same bundle as the first version signed it (no `aud`) still applies, to the root
    // pinned then: its tokens are not remembered under the root.
    let old = &v["first_version"];
    let legacy = env.path("bundle-legacy");
    std::fs::create_dir_all(&legacy).unwrap();
    for file in ["registration_tokens.txt", "contracts.jsonl"] {
        std::fs::copy(dir.join(file), legacy.join(file)).unwrap();
    }
    std::fs::write(legacy.join("manifest.jwt"), format!("{}\n", old["manifest"].as_str().unwrap()))
        .unwrap();
    let applied = env.json(&[
        "node",
        "apply",
        "bundle-legacy",
        "--data-dir",
        "legacy-peer",
        "--trust",
        "authority.pub",
    ]);
    assert_eq!(applied["bundle"], old["bundle_id"], "{applied}");
    assert_eq!(applied["state_root"], old["state_root"], "{applied}");
}

#[test]
fn python_gives_every_pinned_trie_root() {
    let path = vectors_dir().join("trie.json");
    let out = python(&["trie", path.to_str().unwrap()], "");
    let v = vectors("trie.json");
    let cases = v["cases"].as_array().unwrap();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), cases.len(), "{out}");
    for (case, line) in cases.iter().zip(lines) {
        let name = case["name"].as_str().unwrap();
        let (flat, binary) =
            (case["root"].as_str().unwrap(), case["binary_root"].as_str().unwrap());
        assert_eq!(line, format!("{name} {flat} {binary}"));
    }
}

#[test]
fn python_recomputes_the_root_of_a_state_using_every_table() {
    let now = swarmvm_token::unix_now();
    let authority = Wallet::generate(swarmvm_wallet::Algorithm::Ed25519).unwrap();
    let network = authority.id().to_string();
    // Ed25519 and RSA keys: the key field is each JWK's thumbprint input.
    let peers: Vec<(String, Wallet)> = [
        ("peer \"one\" ✓", swarmvm_wallet::Algorithm::Ed25519),
        ("peer2", swarmvm_wallet::Algorithm::Rsa2048),
        ("peer3", swarmvm_wallet::Algorithm::Ed25519),
    ]
    .into_iter()
    .map(|(label, alg)| (label.to_owned(), Wallet::generate(alg).unwrap()))
    .collect();
    let mut operations: BTreeMap<String, swarmvm_token::Operation> =
        HANDLER_NAMES.iter().map(|h| ((*h).to_owned(), (*h).into())).collect();
    // Two modules: tally, and one storing keys and values that are not text, or that are
    // text beginning with "hex:" (both shown as hex in the state's JSON).
    let env = Env::new();
    let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/wasm");
    let bytes_module = env.write(
        "bytes.wat",
        r#"(module
          (import "swarmvm" "set" (func $set (param i32 i32 i32 i32)))
          (memory (export "memory") 1)
          (data (i32.const 0) "\ff\00k")
          (data (i32.const 16) "hex:not hex")
          (data (i32.const 32) "plain")
          (data (i32.const 48) "\c3\28")
          (func (export "run") (result i32)
            (call $set (i32.const 0) (i32.const 3) (i32.const 16) (i32.const 11))
            (call $set (i32.const 32) (i32.const 5) (i32.const 48) (i32.const 2))
            (call $set (i32.const 16) (i32.const 11) (i32.const 32) (i32.const 5))
            (i32.const 0)))"#,
    );
    let modules = vec![docs.join("tally.wat"), PathBuf::from(bytes_module)];
    for (action, path) in ["tally", "bytes"].iter().zip(&modules) {
        let wasm = swarmvm_wasm::module_bytes(&std::fs::read(path).unwrap()).unwrap();
        let hash = swarmvm_wasm::check_module(&wasm).unwrap().hash;
        operations.insert(
            (*action).to_owned(),
            swarmvm_token::Operation::Wasm { module: hash, fuel: 777_777 },
        );
    }
    let tokens = tokens(&authority, &operations, &peers, IssueTime { now, ttl: 3600 });
    let (p1, p2, p3) = (&peers[0].1, &peers[1].1, &peers[2].1);
    let sign = |w: &Wallet, nonce: u64, actions: Value| {
        swarmvm_token::sign_contract(w, &network, nonce, actions.as_array().unwrap(), now).unwrap()
    };
    let contracts = vec![
        sign(
            p1,
            1,
            json!([
                {"action": "register_student", "student": {"id": "S001", "name": "Zoë \"Z\" Ødegård", "department": "Física"}},
                {"action": "register_student", "student": {"id": "S002", "name": "Li Wei 李伟", "department": "CS"}},
                {"action": "add_course", "course": {"id": "C001", "name": "Blockchain", "department": "CS"}},
                {"action": "add_course", "course": {"id": "C002", "name": "Tries", "department": "CS"}},
                {"action": "enroll_student", "student_id": "S001", "course_id": "C001"},
                {"action": "enroll_student", "student_id": "S001", "course_id": "C002"},
                {"action": "enroll_student", "student_id": "S002", "course_id": "C002"},
            ]),
        ),
        sign(
            p1,
            2,
            json!([{"action": "vote_proposal", "proposal": {"id": "P001", "description": "More funding"}}]),
        ),
        sign(
            p2,
            1,
            json!([{"action": "vote_proposal", "proposal": {"id": "P001", "description": "More funding"}}]),
        ),
        sign(
            p3,
            1,
            json!([{"action": "vote_proposal", "proposal": {"id": "P002", "description": "Less paper"}}]),
        ),
        sign(
            p2,
            2,
            json!([{"action": "generate_nft", "nft": {"id": "NFT001", "name": "Art", "metadata": {
            "z": 1, "a": {"nested": [1, 2, {"k": "v"}], "b": null, "t": true},
            "quote \"and\" backslash \\": "tab\there\nnewline\u{1}control", "ü": "ünïcode ✓", "neg": -42}}}]),
        ),
        sign(
            p2,
            3,
            json!([{"action": "generate_nft", "nft": {"id": "NFT002", "name": "Plain", "metadata": {}}}]),
        ),
        sign(
            p2,
            4,
            json!([{"action": "transfer_nft", "nft_id": "NFT001", "to": p3.id().to_string()}]),
        ),
        sign(
            p3,
            2,
            json!([{"action": "tally", "proposal": {"id": "P9", "description": "x"}}, {"action": "bytes"}]),
        ),
    ];
    bundle_applied(&env, &authority, &tokens, &contracts, &modules, now);
    let state = env.json(&["state", "show", "--data-dir", "peer"]);
    assert_eq!(state["students"]["S001"]["courses"], json!(["C001", "C002"]));
    assert_eq!(state["proposals"]["P001"]["voters"].as_array().unwrap().len(), 2);
    assert_eq!(state["nfts"]["NFT001"]["owner"], p3.id().to_string());
    assert_eq!(state["wallets"].as_object().unwrap().len(), 3);
    assert_eq!(state["wasm"]["tally"]["P9"], "1");
    assert_eq!(state["wasm"]["bytes"]["hex:ff006b"], "hex:6865783a6e6f7420686578");
    assert_eq!(state["wasm"]["bytes"]["plain"], "hex:c328");
    assert_eq!(state["wasm"]["bytes"]["hex:6865783a6e6f7420686578"], "plain");
    assert_eq!(state["operations"]["bytes"]["fuel"], 777_777);
    let (root, python_root) = roots(&env);
    assert_eq!(python_root, root, "Python's root from state show --json");
}
