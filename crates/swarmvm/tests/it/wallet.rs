//! `swarmvm wallet new|show|public`.

use std::os::unix::fs::PermissionsExt as _;

use serde_json::json;

use crate::support::{Env, FAILURE, REFUSED};

#[test]
fn new_writes_a_0600_pkcs8_key_and_prints_its_id() {
    let env = Env::new();
    let id = env.wallet("w.pem", "ed25519");
    assert_eq!(id.len(), 43, "an RFC 7638 thumbprint: {id}");
    let mode = std::fs::metadata(env.path("w.pem")).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert!(env.read("w.pem").starts_with("-----BEGIN PRIVATE KEY-----\n"));
    let shown = env.json(&["wallet", "show", &env.p("w.pem")]);
    assert_eq!(shown["id"], id.as_str());
    assert_eq!(shown["algorithm"], "ed25519");
    assert_eq!(shown["private"], true);
    assert_eq!(shown["jwk"]["kid"], id.as_str());
}

#[test]
fn new_json_describes_the_wallet() {
    let env = Env::new();
    let out = env.json(&["wallet", "new", "--out", &env.p("r.pem"), "--algorithm", "rsa-2048"]);
    assert_eq!(out["algorithm"], "rsa-2048");
    assert_eq!(out["jws_alg"], "RS256");
    assert_eq!(out["encrypted"], false);
    assert_eq!(out["jwk"]["kty"], "RSA");
    assert!(out["jwk"].get("d").is_none());
    assert_eq!(env.json(&["wallet", "show", &env.p("r.pem")])["id"], out["id"]);
}

#[test]
fn new_makes_every_rsa_size() {
    let env = Env::new();
    for (alg, bits) in [("rsa-3072", 3072usize), ("rsa-4096", 4096)] {
        let file = format!("{alg}.pem");
        env.wallet(&file, alg);
        let shown = env.json(&["wallet", "show", &env.p(&file)]);
        assert_eq!(shown["algorithm"], format!("rsa-{bits}"));
        let n = shown["jwk"]["n"].as_str().unwrap();
        assert_eq!(n.len(), (bits / 8 * 4).div_ceil(3), "modulus of {bits} bits");
    }
}

#[test]
fn new_never_overwrites_without_force() {
    let env = Env::new();
    let first = env.wallet("w.pem", "ed25519");
    let before = env.read("w.pem");
    let err = env.fails(&["wallet", "new", "--out", &env.p("w.pem")], FAILURE);
    assert!(err.contains("already exists") && err.contains("--force"), "{err}");
    assert_eq!(env.read("w.pem"), before, "the existing key is untouched");
    let second = env.ok(&["wallet", "new", "--out", &env.p("w.pem"), "--force"]);
    assert_ne!(second.trim(), first);
    assert_eq!(env.json(&["wallet", "show", &env.p("w.pem")])["id"], second.trim());
}

#[test]
fn encrypted_wallet_needs_its_passphrase() {
    let env = Env::new();
    let pass = env.write("pass", "correct horse battery staple\n");
    let out = env.json(&["wallet", "new", "--out", &env.p("e.pem"), "--passphrase-file", &pass]);
    assert_eq!(out["encrypted"], true);
    assert!(env.read("e.pem").starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----"));
    let err = env.fails(&["wallet", "show", &env.p("e.pem")], FAILURE);
    assert!(err.contains("--passphrase-file"), "{err}");
    let wrong = env.write("wrong", "wrong\n");
    let err = env.fails(&["wallet", "show", &env.p("e.pem"), "--passphrase-file", &wrong], REFUSED);
    assert!(err.contains("wrong passphrase"), "{err}");
    let shown = env.json(&["wallet", "show", &env.p("e.pem"), "--passphrase-file", &pass]);
    assert_eq!(shown["id"], out["id"]);
    assert_eq!(shown["format"], "encrypted-pkcs8-pem");
    let empty = env.write("empty", "\n");
    let err = env
        .fails(&["wallet", "new", "--out", &env.p("x.pem"), "--passphrase-file", &empty], FAILURE);
    assert!(err.contains("passphrase is empty"), "{err}");
    assert!(!env.path("x.pem").exists());
}

#[test]
fn public_prints_spki_pem_or_jwk_that_read_back_to_the_same_id() {
    let env = Env::new();
    for alg in ["ed25519", "rsa-2048"] {
        let id = env.wallet("w.pem", alg);
        env.public("w.pem", "w.pub");
        let pem = env.read("w.pub");
        assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----\n"), "{pem}");
        let shown = env.json(&["wallet", "show", &env.p("w.pub")]);
        assert_eq!(
            (shown["id"].as_str(), shown["private"].as_bool()),
            (Some(id.as_str()), Some(false))
        );
        let jwk = env.ok(&["wallet", "public", &env.p("w.pem"), "--format", "jwk"]);
        env.write("w.jwk", &jwk);
        let shown = env.json(&["wallet", "show", &env.p("w.jwk")]);
        assert_eq!(shown["id"], id.as_str());
        assert_eq!(shown["format"], "jwk");
        // `--json` prints the JWK too.
        let json = env.json(&["wallet", "public", &env.p("w.pem")]);
        assert_eq!(json, serde_json::from_str::<serde_json::Value>(&jwk).unwrap());
        std::fs::remove_file(env.path("w.pem")).unwrap();
    }
}

#[test]
fn show_reads_private_jwks_and_derives_the_same_id() {
    let env = Env::new();
    // RFC 8037 A.1's private key and A.3's thumbprint.
    let jwk = json!({"kty": "OKP", "crv": "Ed25519",
        "d": "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A",
        "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"});
    let file = env.write("k.jwk", jwk.to_string());
    let shown = env.json(&["wallet", "show", &file]);
    assert_eq!(shown["id"], "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k");
    assert_eq!(shown["private"], true);
    let mut mismatched = jwk;
    // RFC 8032 §7.1 test 2's public key: a valid point, but not the one `d` gives.
    mismatched["x"] = json!("PUAXw-hDiVqStwqnTRt-vJyYLM8uxJaMwM1V8Sr0Zgw");
    let file = env.write("bad.jwk", mismatched.to_string());
    let err = env.fails(&["wallet", "show", &file], FAILURE);
    assert!(err.contains("do not match"), "{err}");
}

#[test]
fn show_refuses_what_is_not_a_usable_key_with_one_line() {
    let env = Env::new();
    let cases = [
        ("garbage", "hello world".to_owned(), FAILURE, "not a key"),
        ("cert.pem", "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n".into(), FAILURE, "unsupported pem block 'certificate'"),
        ("legacy.pem", "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,00\n\nAAAA\n-----END RSA PRIVATE KEY-----\n".into(), FAILURE, "legacy"),
        ("oct.jwk", r#"{"kty":"oct","k":"AAAA"}"#.into(), REFUSED, "symmetric"),
        ("ec.jwk", r#"{"kty":"EC","crv":"P-256","x":"AA","y":"AA"}"#.into(), REFUSED, "unsupported key algorithm"),
        ("set.jwk", r#"{"keys":[]}"#.into(), FAILURE, "jwk set"),
        ("huge.pem", "A".repeat(100_000), FAILURE, "larger than 65536 bytes"),
    ];
    for (name, contents, code, says) in cases {
        let file = env.write(name, contents);
        let err = env.fails(&["wallet", "show", &file], code);
        assert!(err.to_lowercase().contains(says), "{name}: {err}");
    }
    let err = env.fails(&["wallet", "show", &env.p("missing.pem")], FAILURE);
    assert!(err.contains("missing.pem"), "{err}");
}

#[test]
fn weak_rsa_is_refused_with_its_size() {
    let env = Env::new();
    let mut n = vec![0xc3u8; 128];
    n[127] |= 1;
    let jwk = json!({"kty": "RSA", "n": swarmvm_test_support::b64(n), "e": "AQAB"});
    let file = env.write("weak.jwk", jwk.to_string());
    let err = env.fails(&["wallet", "show", &file], REFUSED);
    assert_eq!(
        err,
        format!("cannot use key {file}: rsa key has 1024 bits; at least 2048 are required")
    );
}

#[test]
fn usage_errors_exit_2() {
    let env = Env::new();
    let run = env.run(&["wallet", "new", "--out", &env.p("w.pem"), "--algorithm", "rsa-1024"]);
    assert_eq!(run.code, FAILURE);
    assert!(run.stderr.contains("unknown key algorithm"), "{}", run.stderr);
    assert_eq!(env.run(&["wallet", "frobnicate"]).code, FAILURE);
}

#[test]
fn no_command_prints_a_private_key() {
    let env = Env::new();
    let pass = env.write("pass", "pw\n");
    let mut outputs = Vec::new();
    for alg in ["ed25519", "rsa-2048"] {
        let file = format!("{alg}.pem");
        outputs.push(env.ok(&["wallet", "new", "--out", &env.p(&file), "--algorithm", alg]));
        outputs.push(env.ok(&["wallet", "show", &env.p(&file)]));
        outputs.push(env.ok(&["wallet", "show", &env.p(&file), "--json"]));
        outputs.push(env.ok(&["wallet", "public", &env.p(&file)]));
        outputs.push(env.ok(&["wallet", "public", &env.p(&file), "--format", "jwk"]));
    }
    outputs.push(env.ok(&[
        "wallet",
        "new",
        "--out",
        &env.p("e.pem"),
        "--passphrase-file",
        &pass,
        "--json",
    ]));
    for out in outputs {
        assert!(!out.contains("PRIVATE KEY"), "{out}");
        for member in ["\"d\"", "\"p\"", "\"q\"", "\"dp\"", "\"dq\"", "\"qi\""] {
            assert!(!out.contains(member), "{member} in {out}");
        }
    }
    // The key file's secret bytes appear nowhere in what was printed.
    let key = env.read("ed25519.pem");
    let body: String = key.lines().filter(|l| !l.starts_with("-----")).collect();
    let shown = env.ok(&["wallet", "show", &env.p("ed25519.pem"), "--json"]);
    assert!(!shown.contains(&body[body.len() - 20..]));
}
