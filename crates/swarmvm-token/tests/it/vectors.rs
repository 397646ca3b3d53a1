//! The shared contract vectors (`tests/vectors/contracts.json`): the Rust signer gives every
//! pinned JWS byte for byte from the same seed and inputs, and verifies it; the Python
//! implementation of `docs/format.md` (`contracts.py`, Python's json and `cryptography`)
//! gives the same bytes too. JavaScript and Python clients check the same file.

use serde_json::Value;
use swarmvm_test_support::require_python_modules;
use swarmvm_token::{TrustStore, sign_contract, verify_contract};
use swarmvm_wallet::Wallet;

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/vectors");

fn seed(hex: &str) -> Vec<u8> {
    (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap()).collect()
}

#[test]
fn the_rust_signer_gives_every_pinned_contract_byte_for_byte() {
    let text = std::fs::read_to_string(format!("{DIR}/contracts.json")).unwrap();
    let vectors: Value = serde_json::from_str(&text).unwrap();
    let cases = vectors["cases"].as_array().unwrap();
    assert!(cases.len() >= 8, "at least 8 cases");
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let wallet = Wallet::from_ed25519_seed(&seed(case["seed"].as_str().unwrap())).unwrap();
        assert_eq!(wallet.id().as_str(), case["expect"]["wallet"], "{name}");
        let network = case["network"].as_str().unwrap();
        let nonce = case["nonce"].as_u64().unwrap();
        let actions = case["actions"].as_array().unwrap();
        let iat = case["iat"].as_u64().unwrap();
        let jws = sign_contract(&wallet, network, nonce, actions, iat).unwrap();
        assert_eq!(jws, case["expect"]["jws"].as_str().unwrap(), "{name}");
        let verified =
            verify_contract(&jws, &TrustStore::with_keys([wallet.public_key()]), network).unwrap();
        assert_eq!(
            (verified.nonce, &verified.actions[..], verified.issued_at),
            (nonce, &actions[..], Some(iat)),
            "{name}"
        );
    }
    // The edges the clients must agree on are in the file.
    let names: Vec<&str> = cases.iter().map(|c| c["name"].as_str().unwrap()).collect();
    for edge in [
        "non-ASCII",
        "nested",
        "2^53 - 1",
        "empty action list",
        "large action list",
        "UTF-16",
        "integer-like",
    ] {
        assert!(names.iter().any(|n| n.contains(edge)), "no case for {edge}: {names:?}");
    }
    assert!(cases.iter().any(|c| c["nonce"] == 9_007_199_254_740_991_u64));
}

#[test]
fn the_python_implementation_of_the_format_gives_the_same_contracts() {
    require_python_modules(&["cryptography"]);
    let out = std::process::Command::new("python3")
        .args([&format!("{DIR}/contracts.py"), "check", &format!("{DIR}/contracts.json")])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("contracts match") && !stdout.contains("MISMATCH"), "{stdout}");
}
