//! The fuzz targets' bodies, shared by `fuzz/` (cargo-fuzz) and the corpus replay test that
//! every ordinary test run executes. Each takes arbitrary bytes and must neither panic nor
//! break an invariant (checked with `assert!`, which the fuzzer reports as a crash).

use std::sync::OnceLock;

use serde_json::Value;
use swarmvm_token::{AuthoritySet, Network, TimeCheck, TrustStore};
use swarmvm_vm::{Contract, HANDLER_NAMES, Machine, MemoryState, Outcome};
use swarmvm_wallet::{KeyMaterial, Wallet};

/// A fixed authority (RFC 8032 test key 1), so corpus inputs can carry valid signatures.
pub fn authority() -> &'static Wallet {
    static W: OnceLock<Wallet> = OnceLock::new();
    W.get_or_init(|| {
        let seed: Vec<u8> = (0..32)
            .map(|i| {
                u8::from_str_radix(
                    &"9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"
                        [i * 2..i * 2 + 2],
                    16,
                )
                .unwrap()
            })
            .collect();
        Wallet::from_ed25519_seed(&seed).unwrap()
    })
}

fn trust() -> &'static TrustStore {
    static T: OnceLock<TrustStore> = OnceLock::new();
    T.get_or_init(|| TrustStore::with_keys([authority().public_key()]))
}

fn single() -> &'static AuthoritySet {
    static S: OnceLock<AuthoritySet> = OnceLock::new();
    S.get_or_init(|| AuthoritySet::single(authority().public_key().clone()))
}

/// Refusals must explain themselves on one line (docs/design.md: a one-line reason): no control
/// character from the input may reach the message.
fn one_line(error: &impl std::fmt::Display) {
    let text = error.to_string();
    assert!(!text.chars().any(char::is_control), "reason is not one clean line: {text:?}");
}

/// The time tokens are checked at: a fixed moment, so results do not depend on the clock.
pub const FUZZ_TIME: u64 = 1_700_000_000;

/// Every token verifier on one input: registration, contract, manifest. Returns whether
/// any of them accepted it; no input may be accepted as two kinds.
pub fn token_verify(data: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(data) else { return false };
    let network = authority().id().to_string();
    let accepted = [
        swarmvm_token::verify_registration(text, trust(), TimeCheck::at(FUZZ_TIME), HANDLER_NAMES)
            .inspect_err(one_line)
            .is_ok(),
        swarmvm_token::verify_contract(text, trust(), &network).inspect_err(one_line).is_ok(),
        swarmvm_token::verify_manifest(text, &network, single()).inspect_err(one_line).is_ok(),
    ];
    let kinds = accepted.iter().filter(|a| **a).count();
    assert!(kinds <= 1, "one token accepted as {kinds} kinds");
    kinds == 1
}

/// A VM with every handler and two wallets, as contracts expect.
fn vm() -> Machine {
    let mut vm = Machine::new();
    for h in HANDLER_NAMES {
        vm.register_operation(h, h).unwrap();
    }
    vm.register_wallet("alice", "a", "{}").unwrap();
    vm.register_wallet("bob", "b", "{}").unwrap();
    vm
}

/// Strict JSON parsing of a contract's actions, then execution: twice (the second a replay)
/// and by another signer; a rejected contract must leave the root as it was.
/// Returns whether the first execution was accepted.
pub fn contract_execute(data: &[u8]) -> bool {
    let Ok(value) = swarmvm_token::parse_strict(data) else { return false };
    let actions: Vec<Value> = match value {
        Value::Array(a) => a,
        Value::Object(mut o) => match o.remove("actions") {
            Some(Value::Array(a)) => a,
            _ => return false,
        },
        _ => return false,
    };
    let mut vm = vm();
    let mut first = None;
    for (signer, nonce) in [("alice", 1), ("alice", 1), ("bob", 7)] {
        let before = vm.state_root();
        let outcome = vm.execute(&Contract { signer, nonce, actions: &actions });
        let accepted = match outcome {
            Outcome::Rejected(reason) => {
                assert_eq!(vm.state_root(), before, "a rejected contract changed the state");
                one_line(&reason);
                false
            }
            _ => true,
        };
        first.get_or_insert(accepted);
    }
    let entries = vm.state().iter().map(|(t, id, r)| (t, id.to_owned(), r.clone()));
    assert_eq!(MemoryState::from_entries(entries).unwrap().root(), vm.state_root());
    first == Some(true)
}

/// Manifest verification.
pub fn manifest_parse(data: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(data) else { return false };
    let network = authority().id().to_string();
    let m = match swarmvm_token::verify_manifest(text, &network, single()) {
        Ok(m) => m,
        Err(e) => {
            one_line(&e);
            return false;
        }
    };
    assert!(m.seq >= 1);
    assert_eq!(m.parent.is_none(), m.seq == 1);
    true
}

/// Torrent parsing and what is derived from a torrent.
pub fn torrent_parse(data: &[u8]) -> bool {
    let t = match swarmvm_swarm::TorrentFile::from_bytes(data) {
        Ok(t) => t,
        Err(e) => {
            one_line(&e);
            return false;
        }
    };
    assert!(t.total_length() > 0);
    let magnet = t.magnet().to_string();
    let back = swarmvm_swarm::MagnetLink::parse(&magnet).unwrap();
    assert_eq!(back.info_hash, t.info_hash());
    for f in t.files() {
        assert!(f.path.components().all(|c| matches!(c, std::path::Component::Normal(_))));
    }
    true
}

/// Magnet link parsing.
pub fn magnet_parse(data: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(data) else { return false };
    let m = match swarmvm_swarm::MagnetLink::parse(text) {
        Ok(m) => m,
        Err(e) => {
            one_line(&e);
            return false;
        }
    };
    let again = swarmvm_swarm::MagnetLink::parse(&m.to_string()).unwrap();
    assert_eq!(again.info_hash, m.info_hash);
    true
}

/// Key parsing (PEM, DER, JWK), without a passphrase.
pub fn key_parse(data: &[u8]) -> bool {
    let material = match KeyMaterial::parse(data, None) {
        Ok((material, _)) => material,
        Err(e) => {
            one_line(&e);
            return false;
        }
    };
    let key = material.public_key();
    let jwk = key.to_jwk();
    assert_eq!(swarmvm_wallet::PublicKey::from_jwk(&jwk).unwrap().id(), key.id());
    true
}

/// Module checking and execution: any bytes through the ABI's checks; a module that passes
/// is loaded and run for two actions (one contract) with little fuel over a fresh state.
/// Whatever the module does, the run must end with a verdict, and a rejected contract must
/// leave the root as it was.
pub fn wasm_module(data: &[u8]) -> bool {
    let runtime = std::sync::Arc::new(swarmvm_wasm::Runtime::new());
    let hash = match runtime.load(data) {
        Ok(hash) => hash,
        Err(e) => {
            one_line(&e);
            return false;
        }
    };
    let mut m = swarmvm_vm::Machine::new().with_runner(runtime);
    let wallet = "fuzz0000000000000000000000000000000000000000";
    m.register_wallet(wallet, "fuzz", "{}").unwrap();
    m.register_module("run", hash, 200_000).unwrap();
    let root = m.state_root();
    let actions =
        [serde_json::json!({"action": "run", "n": 1}), serde_json::json!({"action": "run"})];
    let block = swarmvm_vm::Block { seq: 1, time: FUZZ_TIME, ..swarmvm_vm::Block::default() };
    let outcome =
        m.execute_in(&swarmvm_vm::Contract { signer: wallet, nonce: 1, actions: &actions }, block);
    if let swarmvm_vm::Outcome::Rejected(r) = &outcome {
        assert_eq!(m.state_root(), root, "a rejected contract changed the state");
        assert!(!r.to_string().contains('\n'));
    }
    outcome.is_applied()
}

/// Module compilation: any bytes through the ABI's checks; every module the check accepts
/// must load in the runtime (compiled by its wasmi engine, as when a bundle that carries the
/// module applies). A module that passes the check and that the engine refuses would be
/// registered, then fail every bundle that carries it (issue 25, finding 3): a crash here.
pub fn wasm_compile(data: &[u8]) -> bool {
    let info = match swarmvm_wasm::check_module(data) {
        Ok(info) => info,
        Err(e) => {
            one_line(&e);
            return false;
        }
    };
    match swarmvm_wasm::Runtime::new().load(data) {
        Ok(hash) => assert_eq!(hash, info.hash, "the runtime names the module otherwise"),
        Err(e) => panic!("the check accepted a module the runtime cannot load: {e}"),
    }
    true
}

/// A module whose `run` declares `locals` i32 locals and uses the last one: beyond about
/// 30,000 the validator accepts it (up to 50,000) but wasmi cannot compile it.
pub fn many_locals(locals: usize) -> Vec<u8> {
    let last = locals.saturating_sub(1);
    wasm(&format!(
        r#"(module (memory (export "memory") 1) (func (export "run") (result i32) (local {}) (local.set {last} (i32.const 1)) (i32.sub (i32.add (local.get 0) (local.get {last})) (i32.const 1))))"#,
        "i32 ".repeat(locals.max(1))
    ))
}

/// The three members of the fuzz targets' 2-of-3 network (fixed seeds).
fn members() -> &'static [Wallet; 3] {
    static M: OnceLock<[Wallet; 3]> = OnceLock::new();
    M.get_or_init(|| [1u8, 2, 3].map(|i| Wallet::from_ed25519_seed(&[i; 32]).unwrap()))
}

/// The fuzz targets' 2-of-3 network.
fn set_network() -> &'static Network {
    static N: OnceLock<Network> = OnceLock::new();
    N.get_or_init(|| {
        let keys = members().iter().map(|w| w.public_key().clone()).collect();
        Network::from_set(AuthoritySet::new(keys, 2).unwrap())
    })
}

/// Network files and multi-signature manifests: the bytes as a network file (a file that
/// parses must round-trip to the same network and id), then as a manifest of the 2-of-3
/// network (one that verifies has at least two distinct members among its signers, and its
/// identity is its payload's hash whatever the serialization). Every refusal is one line.
pub fn authority_set(data: &[u8]) -> bool {
    let as_file = match Network::parse(data) {
        Ok(network) => {
            let again = Network::parse(network.to_file().as_bytes()).unwrap();
            assert_eq!(again, network);
            assert_eq!(network.network_id(), &network.genesis().network_id());
            true
        }
        Err(e) => {
            one_line(&e);
            false
        }
    };
    let Ok(text) = std::str::from_utf8(data) else { return as_file };
    let net = set_network();
    let as_manifest = match swarmvm_token::verify_manifest(text, net.id(), net.genesis()) {
        Ok(m) => {
            let members = m.signers.iter().filter(|s| net.genesis().contains(s)).count();
            assert!(members >= 2, "{} members signed", members);
            let mut distinct = m.signers.clone();
            distinct.dedup();
            assert_eq!(distinct.len(), m.signers.len());
            let peek = swarmvm_token::peek_manifest(text).unwrap();
            assert_eq!(peek.id, m.id);
            true
        }
        Err(e) => {
            one_line(&e);
            false
        }
    };
    as_file || as_manifest
}

/// A fuzz target: takes any bytes, returns whether they were accepted.
pub type Target = fn(&[u8]) -> bool;

/// Every target by name, for the replay test.
pub const TARGETS: [(&str, Target); 10] = [
    ("token_verify", token_verify),
    ("contract_execute", contract_execute),
    ("manifest_parse", manifest_parse),
    ("torrent_parse", torrent_parse),
    ("magnet_parse", magnet_parse),
    ("key_parse", key_parse),
    ("wasm_module", wasm_module),
    ("authority_set", authority_set),
    ("wasm_compile", wasm_compile),
    ("zip215_batch", zip215_batch),
];

/// The fixed authority's Ed25519 signature of `message` (RFC 8032 test key 1).
fn authority_signs(message: &[u8]) -> [u8; 64] {
    let swarmvm_wallet::SigningKey::Ed25519Pkcs8(pkcs8) = authority().signing_key() else {
        unreachable!("the authority is an Ed25519 key")
    };
    let pair = aws_lc_rs::signature::Ed25519KeyPair::from_pkcs8_maybe_unchecked(pkcs8).unwrap();
    pair.sign(message).as_ref().try_into().unwrap()
}

/// Batched and single ZIP-215 verification (rules 4's contracts) on up to 64 signatures from
/// `data`, 129 bytes each: a flag, a key, a signature and a 32-byte message; with the flag's
/// low bit set the key and signature are the authority's own over the message (bit 1 set:
/// then one byte of the signature changed, chosen by the flag). Each signature's outcome in
/// the batch must be its outcome alone. Returns whether any held.
pub fn zip215_batch(data: &[u8]) -> bool {
    use swarmvm_token::zip215::{Ed25519Check, verify_batch};
    let checks: Vec<Ed25519Check> = data
        .chunks_exact(129)
        .take(64)
        .map(|c| {
            let (flag, key, signature, message) = (c[0], &c[1..33], &c[33..97], &c[97..129]);
            let mut key: [u8; 32] = key.try_into().unwrap_or_default();
            let mut signature: [u8; 64] = signature.try_into().unwrap_or([0; 64]);
            if flag & 1 == 1 {
                key = *authority().public_key().ed25519_bytes().unwrap_or(&[0; 32]);
                signature = authority_signs(message);
                if flag & 2 == 2 {
                    signature[usize::from(flag >> 2) % 64] ^= 1 << (flag % 8);
                }
            }
            Ed25519Check::new(key, signature, message.to_vec())
        })
        .collect();
    if checks.is_empty() {
        return false;
    }
    let refs: Vec<&Ed25519Check> = checks.iter().collect();
    let single: Vec<bool> = checks.iter().map(Ed25519Check::verify_one).collect();
    assert_eq!(verify_batch(&refs), single, "batched and single ZIP-215 disagree");
    single.iter().any(|ok| *ok)
}

/// A [`zip215_batch`] input of one signature per flag, over distinct messages (the key and
/// signature bytes are the speccheck's first case where the flag leaves them).
fn zip215_seed(flags: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, flag) in flags.iter().enumerate() {
        out.push(*flag);
        out.extend_from_slice(&[0xc7; 32]);
        out.extend_from_slice(&[0u8; 64]);
        out.extend_from_slice(&[u8::try_from(i).unwrap_or(0); 32]);
    }
    out
}

/// One seed input of a fuzz target, and whether the target must accept it: the valid seeds
/// prove that the target reaches the code past parsing and signature checks.
#[derive(Debug)]
pub struct Seed {
    /// The target's name, as in [`TARGETS`].
    pub target: &'static str,
    /// The input.
    pub bytes: Vec<u8>,
    /// Whether the target accepts it.
    pub accepted: bool,
}

/// Valid (and a few classic hostile) inputs for each target: the seed corpus. Written to
/// `fuzz/corpus/<target>/` by `make fuzz-corpus`; the replay test runs them too.
pub fn seeds() -> Vec<Seed> {
    use std::collections::BTreeMap;

    use serde_json::json;
    use swarmvm_token::{FileDigest, IssueTime, Signer, WalletEntry};

    let a = authority();
    let network = a.id().to_string();
    let time = IssueTime { now: FUZZ_TIME - 3600, ttl: 365 * 86_400 };
    let ops: BTreeMap<String, swarmvm_token::Operation> =
        HANDLER_NAMES.iter().map(|h| ((*h).to_owned(), (*h).into())).collect();
    let operations =
        swarmvm_token::issue_operations(&Signer::Wallet(a), &ops, HANDLER_NAMES, time).unwrap();
    let entry = WalletEntry { label: "peer1".into(), key: a.public_key().clone() };
    let wallets = swarmvm_token::issue_wallets(&Signer::Wallet(a), &[entry], time).unwrap();
    let student = json!({"action": "register_student", "student": {"id": "S001", "name": "John Doe", "department": "Computer Science"}});
    let contract =
        swarmvm_token::sign_contract(a, &network, 1, std::slice::from_ref(&student), FUZZ_TIME)
            .unwrap();
    let digest =
        |b: &[u8]| FileDigest { size: b.len() as u64, sha256: swarmvm_vm::Hash32::digest(b) };
    let files: BTreeMap<String, FileDigest> = [
        ("contracts.jsonl".to_owned(), digest(b"")),
        ("registration_tokens.txt".to_owned(), digest(b"")),
    ]
    .into();
    let manifest1 = crate::net::sign_single(a, 1, None, &files, FUZZ_TIME);
    let parent = swarmvm_token::verify_manifest(&manifest1, &network, single()).unwrap().id;
    let manifest2 = crate::net::sign_single(a, 2, Some(parent), &files, FUZZ_TIME);
    let none = format!(
        "{}.{}.",
        crate::b64(r#"{"alg":"none"}"#),
        crate::b64(r#"{"iss":"x","exp":1,"operations":{}}"#)
    );

    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("bundle-1");
    std::fs::create_dir_all(&bundle).unwrap();
    std::fs::write(bundle.join("registration_tokens.txt"), format!("{operations}\n{wallets}\n"))
        .unwrap();
    std::fs::write(bundle.join("contracts.jsonl"), format!("{contract}\n")).unwrap();
    std::fs::write(bundle.join("manifest.jwt"), &manifest1).unwrap();
    let torrent = swarmvm_swarm::TorrentFile::create(
        &bundle,
        &[url::Url::parse("http://127.0.0.1:6969/announce").unwrap()],
        None,
    )
    .unwrap();
    let mut single = Vec::new();
    single.extend_from_slice(b"d4:infod6:lengthi5e4:name3:abc12:piece lengthi16384e6:pieces20:");
    single.extend_from_slice(&[7u8; 20]);
    single.extend_from_slice(b"ee");

    let actions = json!([
        student,
        {"action": "add_course", "course": {"id": "C001", "name": "Blockchain Technology", "department": "Computer Science"}},
        {"action": "enroll_student", "student_id": "S001", "course_id": "C001"},
        {"action": "vote_proposal", "proposal": {"id": "P001", "description": "Increase Research Funding"}},
        {"action": "generate_nft", "nft": {"id": "NFT001", "name": "RareArt", "metadata": {"artist": "Alice", "tags": ["rare", 1, true, null]}}},
        {"action": "transfer_nft", "nft_id": "NFT001", "to": "bob"}
    ]);
    let rsa = Wallet::generate(swarmvm_wallet::Algorithm::Rsa2048).unwrap();
    let net = set_network();
    let [m0, m1, m2] = members();
    let content = swarmvm_token::ManifestContent {
        seq: 1,
        parent: None,
        parent_info_hash: None,
        files: &files,
        network: net.id(),
        authority_set: None,
        now: FUZZ_TIME,
        rules: swarmvm_primitives::Rules::CURRENT,
    };
    let two = swarmvm_token::sign_manifest(&[m0, m1], &content).unwrap();
    let three = swarmvm_token::add_manifest_signature(&two, m2).unwrap();
    let one = swarmvm_token::sign_manifest(&[m2], &content).unwrap();
    let mut wrong_id: serde_json::Value = serde_json::from_str(&net.to_file()).unwrap();
    wrong_id["threshold"] = json!(1);

    vec![
        Seed { target: "token_verify", bytes: operations.into_bytes(), accepted: true },
        Seed { target: "token_verify", bytes: wallets.into_bytes(), accepted: true },
        Seed { target: "token_verify", bytes: contract.into_bytes(), accepted: true },
        Seed { target: "token_verify", bytes: manifest1.clone().into_bytes(), accepted: true },
        Seed { target: "token_verify", bytes: none.into_bytes(), accepted: false },
        Seed { target: "contract_execute", bytes: json!({"actions": actions}).to_string().into_bytes(), accepted: true },
        Seed { target: "contract_execute", bytes: json!([{"action": "vote_proposal", "proposal": {"id": "P1", "description": "d"}}, {"action": "vote_proposal", "proposal": {"id": "P1", "description": "d"}}]).to_string().into_bytes(), accepted: false },
        Seed { target: "manifest_parse", bytes: manifest1.into_bytes(), accepted: true },
        Seed { target: "manifest_parse", bytes: manifest2.into_bytes(), accepted: true },
        Seed { target: "torrent_parse", bytes: torrent.as_bytes().to_vec(), accepted: true },
        Seed { target: "torrent_parse", bytes: single, accepted: true },
        Seed { target: "magnet_parse", bytes: torrent.magnet().to_string().into_bytes(), accepted: true },
        Seed { target: "magnet_parse", bytes: format!("magnet:?xt=urn:btih:{}", "MFRGGZDFMZTWQ2LKNNWG23TPOBYXE43U").into_bytes(), accepted: true },
        Seed { target: "key_parse", bytes: a.to_pkcs8_pem(None).unwrap().as_bytes().to_vec(), accepted: true },
        Seed { target: "key_parse", bytes: a.public_key().to_spki_pem().into_bytes(), accepted: true },
        Seed { target: "key_parse", bytes: a.public_key().to_jwk().to_string().into_bytes(), accepted: true },
        Seed { target: "key_parse", bytes: rsa.to_pkcs8_pem(None).unwrap().as_bytes().to_vec(), accepted: true },
        Seed { target: "key_parse", bytes: rsa.public_key().to_spki_pem().into_bytes(), accepted: true },
        Seed { target: "wasm_module", bytes: wasm(include_str!("../../../docs/wasm/counter.wat")), accepted: true },
        Seed { target: "wasm_module", bytes: wasm(include_str!("../../../docs/wasm/tally.wat")), accepted: false },
        Seed { target: "wasm_module", bytes: wasm(r#"(module (import "swarmvm" "get" (func $g (param i32 i32 i32 i32) (result i32))) (import "swarmvm" "set" (func $s (param i32 i32 i32 i32))) (memory (export "memory") 1) (global $n (mut i32) (i32.const 0)) (func (export "run") (result i32) (global.set $n (i32.add (global.get $n) (call $g (i32.const 0) (i32.const 4) (i32.const 8) (i32.const 8)))) (call $s (i32.const 0) (i32.const 4) (i32.const 0) (i32.const 16)) (i32.const 0)))"#), accepted: true },
        Seed { target: "wasm_module", bytes: wasm(r#"(module (memory (export "memory") 1) (func (export "run") (result i32) (loop $l (br $l)) (i32.const 0)))"#), accepted: false },
        Seed { target: "wasm_module", bytes: b"\0asm\x01\0\0\0".to_vec(), accepted: false },
        Seed { target: "authority_set", bytes: net.to_file().into_bytes(), accepted: true },
        Seed { target: "authority_set", bytes: two.into_bytes(), accepted: true },
        Seed { target: "authority_set", bytes: three.into_bytes(), accepted: true },
        Seed { target: "authority_set", bytes: one.into_bytes(), accepted: false },
        Seed { target: "authority_set", bytes: wrong_id.to_string().into_bytes(), accepted: false },
        Seed { target: "wasm_compile", bytes: wasm(include_str!("../../../docs/wasm/counter.wat")), accepted: true },
        Seed { target: "wasm_compile", bytes: wasm(include_str!("../../../docs/wasm/tally.wat")), accepted: true },
        Seed { target: "wasm_compile", bytes: many_locals(1_000), accepted: true },
        Seed { target: "wasm_compile", bytes: many_locals(40_000), accepted: false },
        Seed { target: "wasm_compile", bytes: b"\0asm\x01\0\0\0".to_vec(), accepted: false },
        Seed { target: "zip215_batch", bytes: zip215_seed(&[1, 1, 3, 0, 1, 7]), accepted: true },
        Seed { target: "zip215_batch", bytes: zip215_seed(&[0, 2]), accepted: false },
    ]
}

/// A module's bytes from WebAssembly text.
fn wasm(text: &str) -> Vec<u8> {
    swarmvm_wasm::module_bytes(text.as_bytes()).unwrap()
}
