//! Tokens we issue verify, for every key type, and carry what was issued.

use std::collections::BTreeMap;

use swarmvm_test_support::wallet;
use swarmvm_token::{
    Hs256Key, IssueError, IssueTime, Operation, RegistrationBody, Signer, TimeCheck, TrustStore,
    VerifyError, WalletEntry, issue_operations, issue_wallets, verify_registration,
};
use swarmvm_vm::HANDLER_NAMES;
use swarmvm_wallet::Algorithm;

fn note_ops() -> BTreeMap<String, Operation> {
    ["register_student", "add_course", "vote_proposal", "generate_nft"]
        .into_iter()
        .map(|n| (n.to_owned(), n.into()))
        .collect()
}

#[test]
fn operations_token_round_trips_for_every_key_type() {
    for algorithm in Algorithm::ALL {
        let authority = wallet(algorithm, 0);
        let time = IssueTime { now: swarmvm_test_support::now(), ttl: 3600 };
        let token =
            issue_operations(&Signer::Wallet(authority), &note_ops(), HANDLER_NAMES, time).unwrap();
        let trust = TrustStore::with_keys([authority.public_key()]);
        let reg = verify_registration(&token, &trust, TimeCheck::system_now(), HANDLER_NAMES)
            .unwrap_or_else(|e| panic!("{algorithm}: {e}"));
        assert_eq!(reg.issuer, authority.id().to_string());
        assert_eq!(reg.algorithm, authority.kind().jws_algorithm());
        assert_eq!(reg.validity.expires_at, Some(time.now + 3600));
        assert_eq!(reg.validity.not_before, Some(time.now));
        assert_eq!(reg.jti.as_ref().map(String::len), Some(36), "a UUID");
        let RegistrationBody::Operations(ops) = reg.body else { panic!("operations") };
        assert_eq!(ops, note_ops());
    }
}

#[test]
fn wallets_token_round_trips_labels_and_keys() {
    let authority = wallet(Algorithm::Ed25519, 0);
    let entries = vec![
        WalletEntry {
            label: "peer1".into(),
            key: wallet(Algorithm::Ed25519, 1).public_key().clone(),
        },
        WalletEntry {
            label: "peer2".into(),
            key: wallet(Algorithm::Rsa2048, 1).public_key().clone(),
        },
    ];
    let token =
        issue_wallets(&Signer::Wallet(authority), &entries, IssueTime::system_now()).unwrap();
    let trust = TrustStore::with_keys([authority.public_key()]);
    let reg = verify_registration(&token, &trust, TimeCheck::system_now(), HANDLER_NAMES).unwrap();
    let RegistrationBody::Wallets(got) = reg.body else { panic!("wallets") };
    assert_eq!(got, entries);
}

#[test]
fn hs256_tokens_verify_only_with_the_same_secret_and_issuer() {
    let secret = [42u8; 32];
    let key = Hs256Key::new(&secret, "hs256").unwrap();
    let token =
        issue_operations(&Signer::Hs256(&key), &note_ops(), HANDLER_NAMES, IssueTime::system_now())
            .unwrap();
    let mut trust = TrustStore::new();
    trust.set_hs256(Hs256Key::new(&secret, "hs256").unwrap());
    let reg = verify_registration(&token, &trust, TimeCheck::system_now(), HANDLER_NAMES).unwrap();
    assert_eq!((reg.issuer.as_str(), reg.algorithm), ("hs256", "HS256"));

    let mut other = TrustStore::new();
    other.set_hs256(Hs256Key::new(&[43u8; 32], "hs256").unwrap());
    let err = verify_registration(&token, &other, TimeCheck::system_now(), HANDLER_NAMES);
    assert!(matches!(err, Err(VerifyError::BadSignature(_))), "{err:?}");

    let mut renamed = TrustStore::new();
    renamed.set_hs256(Hs256Key::new(&secret, "other").unwrap());
    let err = verify_registration(&token, &renamed, TimeCheck::system_now(), HANDLER_NAMES);
    assert!(matches!(err, Err(VerifyError::UnknownKid(_))), "{err:?}");
}

#[test]
fn issuing_enforces_the_rules_verification_enforces() {
    let signer = Signer::Wallet(wallet(Algorithm::Ed25519, 0));
    let mut ops = note_ops();
    ops.insert("mint".into(), "print_money".into());
    let err = issue_operations(&signer, &ops, HANDLER_NAMES, IssueTime::system_now()).unwrap_err();
    assert!(err.to_string().contains("unknown handler 'print_money'"), "{err}");
    for fuel in [0, swarmvm_primitives::fuel::MAX_FUEL + 1] {
        let module = swarmvm_primitives::Hash32::digest(b"module");
        let ops = BTreeMap::from([("tally".to_owned(), Operation::Wasm { module, fuel })]);
        let err = issue_operations(&signer, &ops, HANDLER_NAMES, IssueTime::system_now());
        assert!(err.unwrap_err().to_string().contains("is not from 1 to"), "fuel {fuel}");
    }

    let err = Hs256Key::new(&[1u8; 31], "hs256").unwrap_err();
    assert!(matches!(err, IssueError::WeakSecret(31)), "{err}");

    let err = issue_operations(&signer, &note_ops(), HANDLER_NAMES, IssueTime { now: 1, ttl: 0 });
    assert!(matches!(err, Err(IssueError::BadTtl(0))));

    let err = issue_operations(&signer, &BTreeMap::new(), HANDLER_NAMES, IssueTime::system_now());
    assert!(matches!(err, Err(IssueError::Invalid(VerifyError::InvalidClaim { .. }))));

    let twice = vec![
        WalletEntry { label: "a".into(), key: wallet(Algorithm::Ed25519, 1).public_key().clone() },
        WalletEntry { label: "b".into(), key: wallet(Algorithm::Ed25519, 1).public_key().clone() },
    ];
    let err = issue_wallets(&signer, &twice, IssueTime::system_now()).unwrap_err();
    assert!(err.to_string().contains("listed twice"), "{err}");
}

#[test]
fn time_rules_use_the_given_time_not_the_clock() {
    let authority = wallet(Algorithm::Ed25519, 0);
    let issued = 1_000_000;
    let token = issue_operations(
        &Signer::Wallet(authority),
        &note_ops(),
        HANDLER_NAMES,
        IssueTime { now: issued, ttl: 3600 },
    )
    .unwrap();
    let trust = TrustStore::with_keys([authority.public_key()]);
    // Long expired by the clock, valid at a time inside its window (a manifest's iat, say).
    assert!(verify_registration(&token, &trust, TimeCheck::at(issued + 10), HANDLER_NAMES).is_ok());
    assert!(matches!(
        verify_registration(&token, &trust, TimeCheck::system_now(), HANDLER_NAMES),
        Err(VerifyError::Expired { .. })
    ));
}

#[test]
fn operations_bind_modules_by_hash_with_their_fuel() {
    let authority = wallet(Algorithm::Ed25519, 0);
    let module = swarmvm_primitives::Hash32::digest(b"a module");
    let mut ops = note_ops();
    ops.insert("tally".into(), Operation::Wasm { module, fuel: 12_345 });
    ops.insert("counter".into(), Operation::wasm(module));
    let token =
        issue_operations(&Signer::Wallet(authority), &ops, HANDLER_NAMES, IssueTime::system_now())
            .unwrap();
    let payload: serde_json::Value = {
        use base64::Engine as _;
        let part = token.split('.').nth(1).unwrap();
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(part).unwrap();
        serde_json::from_slice(&bytes).unwrap()
    };
    assert_eq!(
        payload["operations"]["tally"],
        serde_json::json!({"wasm": module.to_hex(), "fuel": 12_345})
    );
    assert_eq!(payload["operations"]["counter"]["fuel"], swarmvm_primitives::fuel::DEFAULT_FUEL);
    let trust = TrustStore::with_keys([authority.public_key()]);
    let reg = verify_registration(&token, &trust, TimeCheck::system_now(), HANDLER_NAMES).unwrap();
    let RegistrationBody::Operations(got) = reg.body else { panic!("operations") };
    assert_eq!(got, ops);
}

#[test]
fn replay_keys_are_per_issuer_and_revocations_round_trip() {
    use swarmvm_token::{
        IssueTime, Signer, TimeCheck, TrustStore, issue_operations_withdrawing,
        issue_wallets_revoking, verify_registration,
    };
    let (a, b) = (wallet(Algorithm::Ed25519, 2), wallet(Algorithm::Ed25519, 3));
    let trust = TrustStore::with_keys([a.public_key(), b.public_key()]);
    let time = IssueTime { now: 1_700_000_000, ttl: 3600 };
    let at = TimeCheck::at(1_700_000_100);
    let revoke = vec![b.id().to_string()];
    let t = issue_wallets_revoking(&Signer::Wallet(a), &[], &revoke, time).unwrap();
    let ra = verify_registration(&t, &trust, at, HANDLER_NAMES).unwrap();
    assert_eq!(ra.revocations, revoke);
    let withdraw = vec!["add_course".to_owned()];
    let t = issue_operations_withdrawing(
        &Signer::Wallet(b),
        &BTreeMap::new(),
        &withdraw,
        HANDLER_NAMES,
        time,
    )
    .unwrap();
    let rb = verify_registration(&t, &trust, at, HANDLER_NAMES).unwrap();
    assert_eq!(rb.revocations, withdraw);
    // The same jti from two issuers gives two keys: one member cannot block another's token.
    let (mut x, mut y) = (ra, rb);
    x.jti = Some("same".into());
    y.jti = Some("same".into());
    assert_ne!(x.replay_key(), y.replay_key());
    assert_eq!(x.replay_key(), format!("{}/same", a.id()));
    x.jti = None;
    assert_eq!(x.replay_key(), format!("{}/sha256:{}", a.id(), x.digest.to_hex()));
}
