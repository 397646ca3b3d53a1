//! Helpers for swarmvm's tests (a dev-dependency only): key fixtures made once per test
//! binary, hand-forged JWS tokens for refusal tests, and checks for the external tools that
//! interoperability tests need (which fail, never skip, when a tool is missing).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::missing_panics_doc)]

pub mod bencode;
pub mod fuzz;
pub mod http;
pub mod live;
pub mod load;
pub mod net;
pub mod netns;
pub mod replicas;
pub mod tools;

use std::process::Command;
use std::sync::OnceLock;

use aws_lc_rs::signature::{Ed25519KeyPair, RSA_PKCS1_SHA256, RsaKeyPair};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;
use swarmvm_wallet::{Algorithm, SigningKey, Wallet};

/// Writes `n` bytes of deterministic pseudo-random data to `path`.
pub fn random_file(path: &std::path::Path, n: usize, seed: u64) {
    let mut x = seed | 1;
    let mut data = Vec::with_capacity(n);
    while data.len() < n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        data.extend_from_slice(&x.to_le_bytes());
    }
    data.truncate(n);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, data).unwrap();
}

/// A bundle-like folder `dir/name` with three files of the given sizes.
pub fn bundle_dir(dir: &std::path::Path, name: &str, sizes: [usize; 3]) -> std::path::PathBuf {
    let root = dir.join(name);
    random_file(&root.join("registration_tokens.txt"), sizes[0], 1);
    random_file(&root.join("contracts.jsonl"), sizes[1], 2);
    random_file(&root.join("manifest.jwt"), sizes[2], 3);
    root
}

/// The operations of the design note: each action name bound to the handler of that name.
pub const NOTE_OPS: &str = r#"{"register_student":"register_student","add_course":"add_course","vote_proposal":"vote_proposal","generate_nft":"generate_nft"}"#;

/// Unpadded base64url.
pub fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A fixed wallet per (algorithm, slot), generated once per test binary: RSA generation is
/// slow, and tests need several distinct keys of each kind.
pub fn wallet(algorithm: Algorithm, slot: usize) -> &'static Wallet {
    const SLOTS: usize = 4;
    static CELLS: [[OnceLock<Wallet>; SLOTS]; 4] =
        [const { [const { OnceLock::new() }; SLOTS] }; 4];
    let row = Algorithm::ALL.iter().position(|a| *a == algorithm).unwrap();
    CELLS[row][slot].get_or_init(|| Wallet::generate(algorithm).unwrap())
}

/// What signs a forged token.
#[derive(Debug, Clone, Copy)]
pub enum ForgeKey<'a> {
    /// A wallet's key with its own algorithm (Ed25519 or RS256).
    Wallet(&'a Wallet),
    /// HMAC-SHA256 with these bytes as the secret.
    Hmac(&'a [u8]),
    /// No signature at all (empty third part).
    Unsigned,
}

/// The raw signature of `input` under `key`.
pub fn sign_raw(input: &[u8], key: ForgeKey<'_>) -> Vec<u8> {
    match key {
        ForgeKey::Wallet(w) => match w.signing_key() {
            SigningKey::Ed25519Pkcs8(der) => {
                Ed25519KeyPair::from_pkcs8(der).unwrap().sign(input).as_ref().to_vec()
            }
            SigningKey::RsaPkcs1(der) => {
                let pair = RsaKeyPair::from_der(der).unwrap();
                let mut sig = vec![0; pair.public_modulus_len()];
                let rng = aws_lc_rs::rand::SystemRandom::new();
                pair.sign(&RSA_PKCS1_SHA256, &rng, input, &mut sig).unwrap();
                sig
            }
            _ => unreachable!("all wallet key types"),
        },
        ForgeKey::Hmac(secret) => {
            let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret);
            aws_lc_rs::hmac::sign(&key, input).as_ref().to_vec()
        }
        ForgeKey::Unsigned => Vec::new(),
    }
}

/// A compact JWS of exactly these header and payload texts (so tests can write duplicate
/// members, odd spacing or non-JSON), signed with `key`.
pub fn forge_raw(header: &str, payload: &str, key: ForgeKey<'_>) -> String {
    let input = format!("{}.{}", b64(header), b64(payload));
    let sig = sign_raw(input.as_bytes(), key);
    format!("{input}.{}", b64(sig))
}

/// A compact JWS of these JSON values, signed with `key`.
pub fn forge(header: &Value, payload: &Value, key: ForgeKey<'_>) -> String {
    forge_raw(&header.to_string(), &payload.to_string(), key)
}

/// Unix seconds now.
pub fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

/// Panics with an install hint unless `python3` can import every module named.
pub fn require_python_modules(modules: &[&str]) {
    let code = modules.iter().map(|m| format!("import {m}")).collect::<Vec<_>>().join("; ");
    let ok = Command::new("python3").args(["-c", &code]).output().is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "python3 cannot import {modules:?}; install them (scripts/install-test-deps.sh, as .ci/run does)"
    );
}

/// Panics with an install hint unless `program` is an executable on `PATH`. (It is looked
/// up, not run: some programs, opentracker among them, start serving on any argument.)
pub fn require_program(program: &str, package: &str) {
    use std::os::unix::fs::PermissionsExt as _;
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path).any(|dir| {
        std::fs::metadata(dir.join(program))
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    });
    assert!(
        found,
        "{program} is not installed; install the Debian package {package} (as .ci/run does)"
    );
}

/// Ed25519 public keys that must be refused: the eight points of small order (the identity
/// and the torsion points) canonically encoded, and non-canonical encodings of the identity
/// and of -1 ("Taming the many EdDSAs", Chalkias, Garillot and Nikolaenko, 2020).
pub const WEAK_ED25519: [&str; 10] = [
    "0100000000000000000000000000000000000000000000000000000000000000",
    "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "0000000000000000000000000000000000000000000000000000000000000000",
    "0000000000000000000000000000000000000000000000000000000000000080",
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85",
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa",
    "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
];

/// The public JWK of an Ed25519 key given as 64 hex characters (however weak).
pub fn ed25519_jwk(hex: &str) -> Value {
    let bytes: Vec<u8> =
        (0..32).map(|i| u8::from_str_radix(&hex[i * 2..i * 2 + 2], 16).unwrap()).collect();
    serde_json::json!({"kty": "OKP", "crv": "Ed25519", "x": b64(bytes)})
}

/// The JSON of a standard claims set for tests.
pub fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap()
}
