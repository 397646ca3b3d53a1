//! Nothing leaks a private key: every file a demo run writes and everything it prints is
//! scanned for the wallets' secrets in every encoding; only the wallet files hold them, with
//! mode 0600.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use swarmvm_wallet::{KeyMaterial, SigningKey};

use crate::support::Env;

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            files(&p, out);
        } else {
            out.push(p);
        }
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn a_demo_run_leaks_no_private_key_outside_the_wallet_files() {
    let env = Env::new();
    let json = env.run(&["demo", "--peers", "3", "--dir", "run", "--json"]);
    assert_eq!(json.code, 0, "{}", json.stderr);
    let text = env.run(&["demo", "--peers", "2", "--dir", "run2"]);
    assert_eq!(text.code, 0, "{}", text.stderr);

    let mut all = Vec::new();
    files(&env.path("run"), &mut all);
    files(&env.path("run2"), &mut all);
    let wallet_files: Vec<&PathBuf> = all
        .iter()
        .filter(|p| {
            p.extension().is_some_and(|e| e == "pem") && p.parent().unwrap().ends_with("wallets")
        })
        .collect();
    assert_eq!(wallet_files.len(), 4 + 3, "authority and peers, in two runs");

    // Every secret, in every form it could leak in.
    let mut secrets: Vec<(String, Vec<u8>)> =
        vec![("a PEM private key label".into(), b"PRIVATE KEY".to_vec())];
    for path in &wallet_files {
        let mode = std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", path.display());
        let (material, _) = swarmvm_wallet::read_key_file(path, None).unwrap();
        let KeyMaterial::Private(wallet) = material else {
            panic!("{} holds no private key", path.display())
        };
        let SigningKey::Ed25519Pkcs8(der) = wallet.signing_key() else { panic!("ed25519") };
        let seed = &der[der.len() - 32..];
        let hex: String = seed.iter().map(|b| format!("{b:02x}")).collect();
        for (form, bytes) in [
            ("raw seed", seed.to_vec()),
            ("hex seed", hex.clone().into_bytes()),
            ("HEX seed", hex.to_uppercase().into_bytes()),
            ("base64 seed", STANDARD_NO_PAD.encode(seed).into_bytes()),
            ("base64 seed (padded)", STANDARD.encode(seed).into_bytes()),
            ("base64url seed (a JWK 'd')", URL_SAFE_NO_PAD.encode(seed).into_bytes()),
            ("base64url seed (padded)", URL_SAFE.encode(seed).into_bytes()),
            ("pkcs8 der", der.to_vec()),
            ("pkcs8 base64", STANDARD.encode(der).into_bytes()),
        ] {
            secrets.push((format!("{form} of {}", path.display()), bytes));
        }
    }

    let mut scanned = 0;
    for path in &all {
        if wallet_files.contains(&path) {
            continue;
        }
        let bytes = std::fs::read(path).unwrap();
        for (what, needle) in &secrets {
            assert!(!contains(&bytes, needle), "{} holds {what}", path.display());
        }
        scanned += 1;
    }
    assert!(scanned >= 15, "ledgers, torrents, bundles, tokens: {scanned} files scanned");
    for (stream, out) in [
        ("stdout", &json.stdout),
        ("stderr", &json.stderr),
        ("stdout", &text.stdout),
        ("stderr", &text.stderr),
    ] {
        for (what, needle) in &secrets {
            assert!(!contains(out.as_bytes(), needle), "the demo's {stream} holds {what}");
        }
    }
}
