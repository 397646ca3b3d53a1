//! Other implementations accept what we make and we accept what they make: PyJWT for tokens,
//! OpenSSL for key files, jwcrypto for RFC 7638 thumbprints. The tools are installed by
//! `.ci/run`; when one is missing these tests fail with an install hint, never skip.

use serde_json::{Value, json};
use swarmvm_test_support::{now, require_program, require_python_modules};

use crate::support::{Env, NOTE_OPS, external};

const TOOL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/jwt_tool.py");

fn python(env: &Env, args: &[&str]) -> String {
    require_python_modules(&["jwt", "jwcrypto", "cryptography"]);
    let mut all = vec![TOOL];
    all.extend_from_slice(args);
    external("python3", &all, env.dir.path())
}

fn openssl(env: &Env, args: &[&str]) -> String {
    require_program("openssl", "openssl");
    external("openssl", args, env.dir.path())
}

#[test]
fn pyjwt_verifies_our_eddsa_rs256_and_hs256_tokens() {
    let env = Env::new();
    env.write("ops.json", NOTE_OPS);
    for (alg, algorithm) in [("EdDSA", "ed25519"), ("RS256", "rsa-2048"), ("RS256", "rsa-4096")] {
        let id = env.wallet("auth.pem", algorithm);
        env.public("auth.pem", "auth.pub");
        let token =
            env.ok(&["token", "issue", "operations", "--key", "auth.pem", "--ops", "ops.json"]);
        let out: Value =
            serde_json::from_str(&python(&env, &["verify", token.trim(), "auth.pub", alg]))
                .unwrap();
        assert_eq!(out["header"]["alg"], alg);
        assert_eq!(out["header"]["kid"], id.as_str());
        assert_eq!(out["header"]["typ"], "swarmvm-operations+jwt");
        assert_eq!(out["claims"]["iss"], id.as_str());
        assert_eq!(out["claims"]["operations"], serde_json::from_str::<Value>(NOTE_OPS).unwrap());
        std::fs::remove_file(env.path("auth.pem")).unwrap();
    }
    let secret = env.write("secret", "a shared secret that is long enough!!\n");
    let token = env.ok(&[
        "token",
        "issue",
        "operations",
        "--hs256-secret-file",
        &secret,
        "--ops",
        "ops.json",
    ]);
    let out: Value =
        serde_json::from_str(&python(&env, &["verify", token.trim(), "secret", "HS256"])).unwrap();
    assert_eq!(out["claims"]["iss"], "hs256");
}

#[test]
fn pyjwt_reads_our_wallets_token_jwks() {
    let env = Env::new();
    let id = env.wallet("auth.pem", "ed25519");
    env.public("auth.pem", "auth.pub");
    let peer = env.wallet("peer1.pem", "rsa-2048");
    let token =
        env.ok(&["token", "issue", "wallets", "--key", "auth.pem", "--wallet", "peer1.pem"]);
    let out: Value =
        serde_json::from_str(&python(&env, &["verify", token.trim(), "auth.pub", "EdDSA"]))
            .unwrap();
    assert_eq!(out["claims"]["iss"], id.as_str());
    let entry = &out["claims"]["wallets"][0];
    assert_eq!(entry["label"], "peer1");
    assert_eq!(entry["jwk"]["kid"], peer.as_str());
    env.write("peer1.jwk", entry["jwk"].to_string());
    assert_eq!(
        python(&env, &["thumbprint", "peer1.jwk"]).trim(),
        peer,
        "jwcrypto agrees on the id"
    );
}

#[test]
fn we_verify_tokens_that_pyjwt_issues_with_the_same_keys() {
    let env = Env::new();
    let t = now();
    for (alg, algorithm) in [("EdDSA", "ed25519"), ("RS256", "rsa-2048")] {
        let id = env.wallet("auth.pem", algorithm);
        env.public("auth.pem", "auth.pub");
        let claims = json!({"iss": id, "iat": t, "nbf": t, "exp": t + 600,
            "jti": "0b8a1c2e-8f0d-4c55-9a1e-0c7d5d1b7e11",
            "operations": {"register_student": "register_student"}});
        // PyJWT's defaults: typ JWT, no kid; then with our kid and typ.
        let plain = python(&env, &["issue", "auth.pem", alg, &claims.to_string()]);
        let typed = python(
            &env,
            &[
                "issue",
                "auth.pem",
                alg,
                &claims.to_string(),
                &json!({"kid": id, "typ": "swarmvm-operations+jwt"}).to_string(),
            ],
        );
        for token in [plain, typed] {
            let v = env.json(&["token", "verify", token.trim(), "--trust", "auth.pub"]);
            assert_eq!((v["issuer"].as_str(), v["alg"].as_str()), (Some(id.as_str()), Some(alg)));
            assert_eq!(v["operations"]["register_student"], "register_student");
        }
        // A PyJWT token whose kid and iss disagree is still refused.
        let liar = python(&env, &["issue", "auth.pem", alg,
            &json!({"iss": "someone-else", "exp": t + 600, "operations": {"add_course": "add_course"}}).to_string(),
            &json!({"kid": id}).to_string()]);
        let err = env.fails(&["token", "verify", liar.trim(), "--trust", "auth.pub"], 1);
        assert!(err.contains("issuer mismatch"), "{err}");
        std::fs::remove_file(env.path("auth.pem")).unwrap();
    }
    let secret = env.write("secret", "a shared secret that is long enough!!\n");
    let claims = json!({"iss": "hs256", "exp": t + 600, "wallets": []});
    let token = python(&env, &["issue", "secret", "HS256", &claims.to_string()]);
    let err = env.fails(&["token", "verify", token.trim(), "--hs256-secret-file", &secret], 1);
    assert!(err.contains("at least one wallet"), "verified, then the content rule refused: {err}");
}

#[test]
fn openssl_keys_load_with_the_thumbprint_jwcrypto_computes() {
    let env = Env::new();
    openssl(&env, &["genpkey", "-algorithm", "ed25519", "-out", "ed.pem"]);
    openssl(
        &env,
        &["genpkey", "-algorithm", "rsa", "-pkeyopt", "rsa_keygen_bits:2048", "-out", "rsa8.pem"],
    );
    openssl(&env, &["genrsa", "-traditional", "-out", "rsa1.pem", "3072"]);
    openssl(&env, &["pkey", "-in", "ed.pem", "-pubout", "-out", "ed.pub"]);
    openssl(&env, &["pkey", "-in", "rsa8.pem", "-pubout", "-out", "rsa8.pub"]);
    openssl(&env, &["rsa", "-in", "rsa1.pem", "-RSAPublicKey_out", "-out", "rsa1.rsapub"]);
    assert!(env.read("rsa1.pem").starts_with("-----BEGIN RSA PRIVATE KEY-----"));
    assert!(env.read("rsa1.rsapub").starts_with("-----BEGIN RSA PUBLIC KEY-----"));
    let expected = [
        ("ed.pem", "ed.pub", "ed25519"),
        ("rsa8.pem", "rsa8.pub", "rsa-2048"),
        ("rsa1.pem", "rsa1.rsapub", "rsa-3072"),
    ];
    for (private, public, algorithm) in expected {
        let independent = python(&env, &["thumbprint", private]).trim().to_owned();
        let ours = env.json(&["wallet", "show", private]);
        assert_eq!(ours["id"], independent.as_str(), "{private}");
        assert_eq!(ours["algorithm"], algorithm);
        assert_eq!(env.json(&["wallet", "show", public])["id"], independent.as_str(), "{public}");
        // Our public PEM of the key is byte-identical to OpenSSL's.
        let ours_pem = env.ok(&["wallet", "public", private]);
        let theirs = openssl(&env, &["pkey", "-in", private, "-pubout"]);
        assert_eq!(ours_pem, theirs, "{private}");
    }
}

#[test]
fn our_encrypted_key_opens_with_openssl_and_theirs_with_us() {
    let env = Env::new();
    let pass = env.write("pass", "s3cret passphrase\n");
    for algorithm in ["ed25519", "rsa-2048"] {
        env.ok(&[
            "wallet",
            "new",
            "--out",
            "mine.pem",
            "--algorithm",
            algorithm,
            "--passphrase-file",
            &pass,
            "--force",
        ]);
        let theirs = openssl(&env, &["pkey", "-in", "mine.pem", "-passin", "file:pass", "-pubout"]);
        let ours = env.ok(&["wallet", "public", "mine.pem", "--passphrase-file", &pass]);
        assert_eq!(ours, theirs, "{algorithm}");
        let text = openssl(&env, &["asn1parse", "-in", "mine.pem"]);
        assert!(text.contains(":scrypt"), "scrypt kdf: {text}");
        assert!(text.contains("aes-256-cbc"), "{text}");
    }
    openssl(
        &env,
        &[
            "genpkey",
            "-algorithm",
            "ed25519",
            "-aes-256-cbc",
            "-pass",
            "file:pass",
            "-out",
            "theirs.pem",
        ],
    );
    // OpenSSL reads `-passin` and `-passout` from one file as two lines, so give it two files.
    env.write("pass2", env.read("pass"));
    openssl(
        &env,
        &[
            "pkcs8",
            "-topk8",
            "-scrypt",
            "-in",
            "theirs.pem",
            "-passin",
            "file:pass",
            "-passout",
            "file:pass2",
            "-out",
            "theirs-scrypt.pem",
        ],
    );
    for file in ["theirs.pem", "theirs-scrypt.pem"] {
        let shown = env.json(&["wallet", "show", file, "--passphrase-file", &pass]);
        assert_eq!(shown["format"], "encrypted-pkcs8-pem", "{file}");
        let pubout = openssl(&env, &["pkey", "-in", file, "-passin", "file:pass", "-pubout"]);
        env.write("theirs.pub", pubout);
        assert_eq!(env.json(&["wallet", "show", "theirs.pub"])["id"], shown["id"], "{file}");
    }
}

const JWS_MULTI: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/jws_multi.py");

/// jwcrypto through `tests/interop/jws_multi.py`.
fn jwcrypto(env: &Env, args: &[&str]) -> String {
    require_python_modules(&["jwcrypto"]);
    let mut all = vec![JWS_MULTI];
    all.extend_from_slice(args);
    external("python3", &all, env.dir.path())
}

/// The decoded payload of a manifest in any serialization, written to `out`.
fn manifest_payload(env: &Env, manifest: &str, out: &str) {
    let text = env.read(manifest);
    let text = text.trim_end();
    let b64 = if text.starts_with('{') {
        serde_json::from_str::<Value>(text).unwrap()["payload"].as_str().unwrap().to_owned()
    } else {
        text.split('.').nth(1).unwrap().to_owned()
    };
    let bytes =
        base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, b64).unwrap();
    std::fs::write(env.path(out), bytes).unwrap();
}

#[test]
fn jwcrypto_verifies_our_multi_signature_manifests_and_we_verify_its() {
    let env = Env::new();
    for w in ["a", "b", "c"] {
        env.wallet(&format!("{w}.pem"), "ed25519");
    }
    env.wallet("r.pem", "rsa-2048");
    let two = env.json(&[
        "network",
        "init",
        "--authority",
        "a.pem,b.pem,c.pem,r.pem",
        "--threshold",
        "2",
        "--out",
        "net.json",
    ])["network"]
        .as_str()
        .unwrap()
        .to_owned();
    std::fs::create_dir_all(env.path("b1")).unwrap();
    let ours = env.json(&[
        "bundle",
        "create",
        "b1",
        "--key",
        "a.pem",
        "--key",
        "r.pem",
        "--network",
        "net.json",
    ]);
    // Ours (general JSON, EdDSA and RS256) verifies in jwcrypto with each signer's key alone.
    let out: Value = serde_json::from_str(&jwcrypto(
        &env,
        &["verify", "b1/manifest.jwt", "a.pem", "b.pem", "c.pem", "r.pem"],
    ))
    .unwrap();
    let id = |w: &str| env.json(&["wallet", "show", w])["id"].as_str().unwrap().to_owned();
    assert_eq!(out["verified"], json!([id("a.pem"), id("r.pem")]), "{out}");
    assert_eq!(out["claims"]["aud"], two);

    // jwcrypto signs the same claims with two members (general JSON): the same bundle for us.
    manifest_payload(&env, "b1/manifest.jwt", "claims.json");
    jwcrypto(&env, &["sign", "claims.json", "theirs.jwt", "b.pem", "c.pem"]);
    let theirs: Value = serde_json::from_str(env.read("theirs.jwt").trim_end()).unwrap();
    assert_eq!(theirs["signatures"].as_array().unwrap().len(), 2, "{theirs}");
    std::fs::copy(env.path("theirs.jwt"), env.path("b1/manifest.jwt")).unwrap();
    let applied = env.json(&["node", "apply", "b1", "--data-dir", "p", "--network", "net.json"]);
    assert_eq!(applied["bundle"], ours["bundle"], "the identity is the payload's");

    // One key in flattened JSON: verified (only the threshold is missing here) ...
    jwcrypto(&env, &["sign", "claims.json", "flat.jwt", "c.pem"]);
    let flat: Value = serde_json::from_str(env.read("flat.jwt").trim_end()).unwrap();
    assert!(flat.get("signatures").is_none() && flat.get("protected").is_some(), "{flat}");
    std::fs::copy(env.path("flat.jwt"), env.path("b1/manifest.jwt")).unwrap();
    let run = env.run(&["node", "apply", "b1", "--data-dir", "q", "--network", "net.json"]);
    assert_eq!(run.code, crate::support::REFUSED);
    assert!(run.one_line_error().contains("signed by 1 member(s)"), "{}", run.stderr);
    // ... and applied by a network of threshold 1.
    env.json(&[
        "network",
        "init",
        "--authority",
        "a.pem,b.pem,c.pem",
        "--threshold",
        "1",
        "--out",
        "one.json",
    ]);
    std::fs::create_dir_all(env.path("b2")).unwrap();
    env.json(&["bundle", "create", "b2", "--key", "a.pem", "--network", "one.json"]);
    manifest_payload(&env, "b2/manifest.jwt", "claims2.json");
    jwcrypto(&env, &["sign", "claims2.json", "flat2.jwt", "c.pem"]);
    std::fs::copy(env.path("flat2.jwt"), env.path("b2/manifest.jwt")).unwrap();
    let applied = env.json(&["node", "apply", "b2", "--data-dir", "r", "--network", "one.json"]);
    assert_eq!(applied["seq"], 1);
}

/// Keys as browsers write them: WebCrypto (here Node.js's, the same API) exports an Ed25519
/// public key as a JWK with `"alg": "Ed25519"` (RFC 9864), `ext` and `key_ops`. We read it
/// wherever a key file is read, with the id its RFC 7638 thumbprint gives, and the private
/// export works as a wallet key file, as a private PEM does.
#[test]
fn webcrypto_ed25519_jwks_are_read_as_key_files() {
    require_program("node", "nodejs");
    let env = Env::new();
    let script = r#"
const key = await crypto.subtle.generateKey({ name: "Ed25519" }, true, ["sign", "verify"]);
const pub = await crypto.subtle.exportKey("jwk", key.publicKey);
const priv = await crypto.subtle.exportKey("jwk", key.privateKey);
const input = new TextEncoder().encode(JSON.stringify({ crv: pub.crv, kty: pub.kty, x: pub.x }));
const id = Buffer.from(await crypto.subtle.digest("SHA-256", input)).toString("base64url");
console.log(JSON.stringify({ pub, priv, id }));
"#;
    let out = external("node", &["--input-type=module", "-e", script], env.dir.path());
    let out: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(out["pub"]["alg"], "Ed25519", "WebCrypto names the algorithm as RFC 9864 does");
    assert_eq!(out["pub"]["key_ops"], json!(["verify"]));
    let id = out["id"].as_str().unwrap();
    env.write("browser.jwk", out["pub"].to_string());
    env.write("browser-private.jwk", out["priv"].to_string());

    let shown = env.json(&["wallet", "show", "browser.jwk"]);
    assert_eq!(shown["id"], id, "{shown}");
    let public: Value =
        serde_json::from_str(&env.ok(&["wallet", "public", "--format", "jwk", "browser.jwk"]))
            .unwrap();
    assert_eq!(
        (&public["x"], &public["alg"], &public["kid"]),
        (&out["pub"]["x"], &json!("EdDSA"), &json!(id))
    );
    assert_eq!(env.json(&["wallet", "show", "browser-private.jwk"])["id"], id);

    env.wallet("auth.pem", "ed25519");
    let token =
        env.ok(&["token", "issue", "wallets", "--key", "auth.pem", "--wallet", "browser.jwk"]);
    env.public("auth.pem", "auth.pub");
    let verified = env.json(&["token", "verify", "--trust", "auth.pub", token.trim()]);
    assert!(verified.to_string().contains(id), "the token registers the browser's key: {verified}");

    // Another algorithm's name is still refused, with the reason.
    let mut other = out["pub"].clone();
    other["alg"] = "Ed448".into();
    env.write("other.jwk", other.to_string());
    let err = env.fails(&["wallet", "show", "other.jwk"], 2);
    assert!(err.contains("signs with EdDSA"), "{err}");
}
