//! ZIP-215 (rules 4, contracts): on every edge case of "Taming the many EdDSAs"
//! (`tests/vectors/ed25519-speccheck.json`) a batch and a single verification give the same
//! outcome, the one the vectors pin for ZIP-215; the strict check of rules 1 to 3 gives the
//! one they pin for it; and one bad signature in a batch of good ones is named alone.

use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair as _};
use serde_json::Value;
use swarmvm_token::zip215::{Ed25519Check, verify_batch};
use swarmvm_wallet::PublicKey;

/// A fresh Ed25519 key: its public bytes and a signer of messages.
fn key_pair() -> ([u8; 32], impl Fn(&[u8]) -> [u8; 64]) {
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
    let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
    let key: [u8; 32] = pair.public_key().as_ref().try_into().unwrap();
    (key, move |m: &[u8]| pair.sign(m).as_ref().try_into().unwrap())
}

fn hex(v: &Value) -> Vec<u8> {
    let s = v.as_str().unwrap();
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

/// One case of the vectors: its key, signature and message, and its two pinned outcomes.
struct Case {
    key: [u8; 32],
    signature: Vec<u8>,
    message: Vec<u8>,
    zip215: bool,
    strict: bool,
}

impl Case {
    fn check(&self) -> Ed25519Check {
        let signature = self.signature.clone().try_into().unwrap();
        Ed25519Check::new(self.key, signature, self.message.clone())
    }
}

fn cases() -> Vec<Case> {
    let v: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../tests/vectors/ed25519-speccheck.json"
        ))
        .unwrap(),
    )
    .unwrap();
    v["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| Case {
            key: hex(&c["pub_key"]).try_into().unwrap(),
            signature: hex(&c["signature"]),
            message: hex(&c["message"]),
            zip215: c["zip215"].as_bool().unwrap(),
            strict: c["strict"].as_bool().unwrap(),
        })
        .collect()
}

/// The strict check of rules 1 to 3: the key refused as a wallet, or the signature strictly.
fn strict(key: [u8; 32], sig: &[u8], msg: &[u8]) -> bool {
    PublicKey::from_ed25519_bytes(key).is_ok_and(|k| k.verify_ed25519_strict(msg, sig))
}

#[test]
fn single_and_batched_zip215_agree_on_every_edge_case_and_strict_keeps_its_outcomes() {
    let cases = cases();
    assert_eq!(cases.len(), 12);
    for (i, case) in cases.iter().enumerate() {
        let check = case.check();
        assert_eq!(check.verify_one(), case.zip215, "case {i}: single ZIP-215");
        assert_eq!(verify_batch(&[&check]), vec![case.zip215], "case {i}: a batch of one");
        let strictly = strict(case.key, &case.signature, &case.message);
        assert_eq!(strictly, case.strict, "case {i}: strict");
    }
    // All twelve in one batch, among good signatures: each outcome is its single one.
    let (key, sign) = key_pair();
    let mut checks: Vec<Ed25519Check> = (0..20)
        .map(|n| {
            let message = format!("contract {n}").into_bytes();
            Ed25519Check::new(key, sign(&message), message)
        })
        .collect();
    checks.extend(cases.iter().map(Case::check));
    let refs: Vec<&Ed25519Check> = checks.iter().collect();
    let singles: Vec<bool> = checks.iter().map(Ed25519Check::verify_one).collect();
    assert_eq!(verify_batch(&refs), singles);
    assert!(singles[..20].iter().all(|ok| *ok));
}

#[test]
fn one_bad_signature_in_a_batch_is_named_and_the_good_ones_hold() {
    let (key, sign) = key_pair();
    let mut checks: Vec<Ed25519Check> = (0..64)
        .map(|n| {
            let message = format!("contract {n}").into_bytes();
            Ed25519Check::new(key, sign(&message), message)
        })
        .collect();
    let refs: Vec<&Ed25519Check> = checks.iter().collect();
    assert!(verify_batch(&refs).iter().all(|ok| *ok));
    checks[17] = Ed25519Check::new(key, sign(b"contract 16"), b"contract 17".to_vec());
    let refs: Vec<&Ed25519Check> = checks.iter().collect();
    let outcome = verify_batch(&refs);
    let bad: Vec<usize> =
        outcome.iter().enumerate().filter(|(_, ok)| !**ok).map(|(i, _)| i).collect();
    assert_eq!(bad, vec![17]);
}
