//! `swarmvm token issue operations|wallets` and `swarmvm token verify`.

use serde_json::{Value, json};
use swarmvm_test_support::{ForgeKey, b64, forge, now};
use swarmvm_wallet::{KeyMaterial, Wallet};

use crate::support::{Env, FAILURE, NOTE_OPS, REFUSED};

/// An authority, its public key, and the note's operations file.
fn setup() -> (Env, String) {
    let env = Env::new();
    let id = env.wallet("auth.pem", "ed25519");
    env.public("auth.pem", "auth.pub");
    env.write("ops.json", NOTE_OPS);
    (env, id)
}

fn issue_ops(env: &Env, extra: &[&str]) -> String {
    let mut args = vec!["token", "issue", "operations", "--key", "auth.pem", "--ops", "ops.json"];
    args.extend_from_slice(extra);
    let out = env.ok(&args);
    assert_eq!(out.lines().count(), 1, "the token alone on one line: {out:?}");
    out.trim().to_owned()
}

#[test]
fn issued_operations_token_verifies_with_json_details() {
    let (env, id) = setup();
    let token = issue_ops(&env, &[]);
    let v = env.json(&["token", "verify", &token, "--trust", "auth.pub"]);
    assert_eq!(v["valid"], true);
    assert_eq!(v["kind"], "operations");
    // `token issue --json` wraps the same kind of token in {"token": ...}.
    let issued =
        env.json(&["token", "issue", "operations", "--key", "auth.pem", "--ops", "ops.json"]);
    let again =
        env.json(&["token", "verify", issued["token"].as_str().unwrap(), "--trust", "auth.pub"]);
    assert_eq!(again["operations"], v["operations"]);
    assert_eq!(v["issuer"], id.as_str());
    assert_eq!(v["alg"], "EdDSA");
    assert_eq!(v["operations"], serde_json::from_str::<Value>(NOTE_OPS).unwrap());
    let (iat, exp) = (v["iat"].as_u64().unwrap(), v["exp"].as_u64().unwrap());
    assert_eq!(exp - iat, 30 * 86_400, "default ttl of 30 days");
    assert!(iat.abs_diff(now()) < 60);
    let text = env.ok(&["token", "verify", &token, "--trust", "auth.pub"]);
    assert!(text.starts_with("valid operations token\n"), "{text}");
    assert!(text.contains("operation register_student -> register_student"), "{text}");
}

#[test]
fn ttl_sets_expiry_and_verify_at_checks_other_times() {
    let (env, _) = setup();
    let token = issue_ops(&env, &["--ttl", "90s"]);
    let v = env.json(&["token", "verify", &token, "--trust", "auth.pub"]);
    assert_eq!(v["exp"].as_u64().unwrap() - v["iat"].as_u64().unwrap(), 90);
    let later = (now() + 3600).to_string();
    let err =
        env.fails(&["token", "verify", &token, "--trust", "auth.pub", "--at", &later], REFUSED);
    assert!(err.starts_with("token expired at "), "{err}");
    let err = env.fails(
        &["token", "verify", &token, "--trust", "auth.pub", "--at", "2001-01-01T00:00:00Z"],
        REFUSED,
    );
    assert!(err.starts_with("token not valid before"), "{err}");
    let run = env.run(&[
        "token",
        "issue",
        "operations",
        "--key",
        "auth.pem",
        "--ops",
        "ops.json",
        "--ttl",
        "soon",
    ]);
    assert_eq!(run.code, FAILURE);
    assert!(run.stderr.contains("not a duration"), "{}", run.stderr);
}

#[test]
fn wallets_token_lists_labels_and_ids_from_key_files() {
    let (env, _) = setup();
    let p1 = env.wallet("peer1.pem", "ed25519");
    let p2 = env.wallet("peer2.pem", "rsa-2048");
    env.public("peer2.pem", "peer2.pub.pem");
    let token = env.ok(&[
        "token",
        "issue",
        "wallets",
        "--key",
        "auth.pem",
        "--wallet",
        "peer1.pem",
        "--wallet",
        "bob=peer2.pub.pem",
    ]);
    let v = env.json(&["token", "verify", token.trim(), "--trust", "auth.pub"]);
    assert_eq!(v["kind"], "wallets");
    let wallets = v["wallets"].as_array().unwrap();
    assert_eq!(wallets.len(), 2);
    assert_eq!(
        (wallets[0]["label"].as_str(), wallets[0]["id"].as_str()),
        (Some("peer1"), Some(p1.as_str()))
    );
    assert_eq!(
        (wallets[1]["label"].as_str(), wallets[1]["id"].as_str()),
        (Some("bob"), Some(p2.as_str()))
    );
    assert!(wallets[1]["jwk"].get("d").is_none());
    assert!(!token.contains("PRIVATE"));
}

#[test]
fn verify_reads_registration_tokens_txt_one_token_a_line() {
    let (env, _) = setup();
    env.wallet("peer1.pem", "ed25519");
    let ops = issue_ops(&env, &[]);
    let wallets =
        env.ok(&["token", "issue", "wallets", "--key", "auth.pem", "--wallet", "peer1.pem"]);
    env.write("registration_tokens.txt", format!("{ops}\n{wallets}"));
    let out =
        env.ok(&["token", "verify", "registration_tokens.txt", "--trust", "auth.pub", "--json"]);
    let lines: Vec<Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(
        (lines[0]["kind"].as_str(), lines[0]["line"].as_u64()),
        (Some("operations"), Some(1))
    );
    assert_eq!((lines[1]["kind"].as_str(), lines[1]["line"].as_u64()), (Some("wallets"), Some(2)));

    // One bad line: the good one is still reported, the run exits 1 and names the bad line.
    env.write("mixed.txt", format!("{ops}\n{}x\n", wallets.trim()));
    let run = env.run(&["token", "verify", "mixed.txt", "--trust", "auth.pub", "--json"]);
    assert_eq!(run.code, REFUSED);
    let lines: Vec<Value> = run.stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines[0]["valid"], true);
    assert_eq!((lines[1]["valid"].as_bool(), lines[1]["line"].as_u64()), (Some(false), Some(2)));
    assert!(run.stderr.contains("token 2: malformed token"), "{}", run.stderr);
    assert!(run.stderr.ends_with("error: 1 of 2 tokens refused\n"), "{}", run.stderr);

    // Tokens from stdin.
    let run = env.run_with_stdin(&["token", "verify", "-", "--trust", "auth.pub"], Some(&ops));
    assert_eq!(run.code, 0, "{}", run.stderr);
}

#[test]
fn hs256_compatibility_mode_needs_a_long_secret_and_the_same_issuer() {
    let (env, _) = setup();
    let secret = env.write("secret", "this is a shared secret of 41 bytes long\n");
    let token = env.ok(&[
        "token",
        "issue",
        "operations",
        "--hs256-secret-file",
        &secret,
        "--ops",
        "ops.json",
    ]);
    let v = env.json(&["token", "verify", token.trim(), "--hs256-secret-file", &secret]);
    assert_eq!((v["alg"].as_str(), v["issuer"].as_str()), (Some("HS256"), Some("hs256")));
    let err = env.fails(
        &["token", "verify", token.trim(), "--hs256-secret-file", &secret, "--issuer", "other"],
        REFUSED,
    );
    assert!(err.contains("unknown kid 'hs256'"), "{err}");
    let err = env.fails(&["token", "verify", token.trim(), "--trust", "auth.pub"], REFUSED);
    assert!(err.contains("unknown kid"), "{err}");
    let short = env.write("short", "only 31 bytes of shared secret\n");
    let err = env.fails(
        &["token", "issue", "operations", "--hs256-secret-file", &short, "--ops", "ops.json"],
        REFUSED,
    );
    assert!(err.ends_with("hs256 secret is 30 bytes; at least 32 are required"), "{err}");
    let err = env.fails(&["token", "verify", token.trim(), "--hs256-secret-file", &short], REFUSED);
    assert!(err.contains("at least 32"), "{err}");
}

#[test]
fn issue_refuses_unknown_handlers_and_bad_input() {
    let (env, _) = setup();
    env.write("bad-ops.json", r#"{"register_student":"register_student","mint":"print_money"}"#);
    let err = env.fails(
        &["token", "issue", "operations", "--key", "auth.pem", "--ops", "bad-ops.json"],
        REFUSED,
    );
    assert!(err.contains("unknown handler 'print_money' for action 'mint'"), "{err}");
    assert!(err.contains("register_student, add_course, vote_proposal, generate_nft"), "{err}");
    env.write("dup.json", r#"{"add_course":"add_course","add_course":"generate_nft"}"#);
    let err = env.fails(
        &["token", "issue", "operations", "--key", "auth.pem", "--ops", "dup.json"],
        FAILURE,
    );
    assert!(err.contains("duplicate member 'add_course'"), "{err}");
    env.write("list.json", "[]");
    env.fails(
        &["token", "issue", "operations", "--key", "auth.pem", "--ops", "list.json"],
        FAILURE,
    );
    let err = env.fails(
        &["token", "issue", "operations", "--key", "auth.pub", "--ops", "ops.json"],
        FAILURE,
    );
    assert!(err.contains("only a public key"), "{err}");
    let run = env.run(&["token", "issue", "operations", "--ops", "ops.json"]);
    assert_eq!(run.code, FAILURE, "neither --key nor --hs256-secret-file");
}

#[test]
fn issuing_with_an_encrypted_authority_key() {
    let env = Env::new();
    let pass = env.write("pass", "authority passphrase\n");
    env.ok(&["wallet", "new", "--out", "auth.pem", "--passphrase-file", &pass]);
    env.write("ops.json", NOTE_OPS);
    let err = env.fails(
        &["token", "issue", "operations", "--key", "auth.pem", "--ops", "ops.json"],
        FAILURE,
    );
    assert!(err.contains("--passphrase-file"), "{err}");
    let token = env.ok(&[
        "token",
        "issue",
        "operations",
        "--key",
        "auth.pem",
        "--ops",
        "ops.json",
        "--passphrase-file",
        &pass,
    ]);
    let pem = env.ok(&["wallet", "public", "auth.pem", "--passphrase-file", &pass]);
    env.write("auth.pub", pem);
    env.ok(&["token", "verify", token.trim(), "--trust", "auth.pub"]);
}

/// The authority's wallet as the test process sees it, for forging tokens.
fn authority_wallet(env: &Env) -> Wallet {
    let (material, _) = swarmvm_wallet::read_key_file(&env.path("auth.pem"), None).unwrap();
    let KeyMaterial::Private(w) = material else { panic!("private") };
    w
}

#[test]
fn verify_refuses_hostile_tokens_with_exit_1_and_one_line() {
    let (env, id) = setup();
    let auth = authority_wallet(&env);
    let stranger = Wallet::generate(swarmvm_wallet::Algorithm::Ed25519).unwrap();
    let t = now();
    let header = json!({"alg": "EdDSA", "typ": "swarmvm-operations+jwt", "kid": id});
    let claims =
        json!({"iss": id, "iat": t, "exp": t + 600, "operations": {"add_course": "add_course"}});
    let mut expired = claims.clone();
    expired["exp"] = json!(t - 600);
    let mut no_exp = claims.clone();
    no_exp.as_object_mut().unwrap().remove("exp");
    let mut two_kinds = claims.clone();
    two_kinds["wallets"] = json!([]);
    let mut jwk = stranger.public_key().to_jwk();
    jwk["d"] = json!(b64([7u8; 32]));
    let private =
        json!({"iss": id, "iat": t, "exp": t + 600, "wallets": [{"label": "eve", "jwk": jwk}]});
    let wallets_header = json!({"alg": "EdDSA", "typ": "swarmvm-wallets+jwt", "kid": id});
    let mut hs = header.clone();
    hs["alg"] = json!("HS256");
    let auth_pem = env.read("auth.pub");
    let good = forge(&header, &claims, ForgeKey::Wallet(&auth));
    let parts: Vec<&str> = good.split('.').collect();
    let reordered =
        b64(format!(r#"{{"kid":"{id}","alg":"EdDSA","typ":"swarmvm-operations+jwt"}}"#));
    let mut later = claims.clone();
    later["exp"] = json!(t + 601);
    let flipped = if parts[2].starts_with('A') { "B" } else { "A" };
    let cases: Vec<(&str, String, &str)> = vec![
        ("control: accepted", good.clone(), ""),
        (
            "alg none",
            forge(&json!({"alg": "none", "kid": id}), &claims, ForgeKey::Unsigned),
            "alg 'none'",
        ),
        (
            "hs256 keyed with the public key",
            forge(&hs, &claims, ForgeKey::Hmac(auth_pem.as_bytes())),
            "algorithm mismatch",
        ),
        ("wrong key", forge(&header, &claims, ForgeKey::Wallet(&stranger)), "bad signature"),
        ("expired", forge(&header, &expired, ForgeKey::Wallet(&auth)), "token expired at"),
        ("missing exp", forge(&header, &no_exp, ForgeKey::Wallet(&auth)), "missing claim 'exp'"),
        ("two kinds", forge(&header, &two_kinds, ForgeKey::Wallet(&auth)), "exactly one kind"),
        ("tampered header", format!("{reordered}.{}.{}", parts[1], parts[2]), "bad signature"),
        (
            "tampered payload",
            format!("{}.{}.{}", parts[0], b64(later.to_string()), parts[2]),
            "bad signature",
        ),
        (
            "tampered signature",
            format!("{}.{}.{flipped}{}", parts[0], parts[1], &parts[2][1..]),
            "bad signature",
        ),
        (
            "private key material",
            forge(&wallets_header, &private, ForgeKey::Wallet(&auth)),
            "private key material",
        ),
        ("truncated", good[..good.len() / 2].to_owned(), "malformed token"),
        ("oversized", "a".repeat(70_000) + ".b.c", "at most 65536"),
    ];
    for (name, token, says) in cases {
        let file = env.write("t.jwt", &token);
        let run = env.run(&["token", "verify", &file, "--trust", "auth.pub"]);
        if says.is_empty() {
            assert_eq!(run.code, 0, "{name}: {}", run.stderr);
            continue;
        }
        assert_eq!(run.code, REFUSED, "{name}: {run:?}");
        let err = run.one_line_error();
        assert!(err.contains(says), "{name}: {err}");
        assert!(run.stdout.is_empty(), "{name}: nothing printed as valid");
    }
}

#[test]
fn verify_without_trust_is_a_usage_error() {
    let (env, _) = setup();
    let token = issue_ops(&env, &[]);
    let err = env.fails(&["token", "verify", &token], FAILURE);
    assert!(err.contains("nothing is trusted"), "{err}");
    let err = env.fails(&["token", "verify", "no-such-file.txt", "--trust", "auth.pub"], FAILURE);
    assert!(err.contains("no-such-file.txt"), "{err}");
}

/// A wallet id may begin with `-` (base64url's 63rd letter): `--revoke` takes it as the value
/// it is, not as a flag (a random id does so once in 64).
#[test]
fn revoke_takes_a_wallet_id_that_begins_with_a_hyphen() {
    let env = Env::new();
    env.wallet("auth.pem", "ed25519");
    env.public("auth.pem", "auth.pub");
    let id = format!("-{}", "A".repeat(42));
    let token = env.ok(&["token", "issue", "wallets", "--key", "auth.pem", "--revoke", &id]);
    let shown = env.json(&["token", "verify", token.trim(), "--trust", "auth.pub"]);
    assert_eq!(shown["revoke"], serde_json::json!([id]));
}
