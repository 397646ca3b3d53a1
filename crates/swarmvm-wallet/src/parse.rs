//! Reading any supported key encoding: PEM (PKCS#8, encrypted PKCS#8, PKCS#1, SPKI), DER, JWK.

use der::Decode as _;
use pkcs8::EncryptedPrivateKeyInfo;
use pkcs8::pkcs5::{EncryptionScheme, pbes2};
use serde_json::Value;
use zeroize::Zeroizing;

use crate::error::{KeyError, Result};
use crate::public::PublicKey;
use crate::wallet::Wallet;

/// Most memory an encrypted key's scrypt parameters may ask for (256 MiB).
const MAX_SCRYPT_MEMORY: u64 = 256 * 1024 * 1024;
/// Most PBKDF2 iterations an encrypted key may ask for.
const MAX_PBKDF2_ITERATIONS: u32 = 10_000_000;
/// Largest key input read (a JWK of an 8192-bit RSA key is far smaller).
pub const MAX_KEY_INPUT: usize = 64 * 1024;

/// What a key file or key text holds: a whole wallet, or only a public key.
#[derive(Debug)]
pub enum KeyMaterial {
    /// A private key (and so its public key).
    Private(Wallet),
    /// A public key only.
    Public(PublicKey),
}

/// How a key was stored, for display.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyFormat {
    /// PEM `PRIVATE KEY` (PKCS#8).
    Pkcs8Pem,
    /// PEM `ENCRYPTED PRIVATE KEY` (PKCS#8 PBES2).
    EncryptedPkcs8Pem,
    /// PEM `RSA PRIVATE KEY` (PKCS#1).
    Pkcs1Pem,
    /// PEM `PUBLIC KEY` (SPKI).
    SpkiPem,
    /// PEM `RSA PUBLIC KEY` (PKCS#1).
    Pkcs1PublicPem,
    /// Binary DER (PKCS#8, SPKI or PKCS#1).
    Der,
    /// JSON Web Key.
    Jwk,
}

impl KeyFormat {
    /// A short name: `pkcs8-pem`, `jwk`, ...
    pub fn name(self) -> &'static str {
        match self {
            Self::Pkcs8Pem => "pkcs8-pem",
            Self::EncryptedPkcs8Pem => "encrypted-pkcs8-pem",
            Self::Pkcs1Pem => "pkcs1-pem",
            Self::SpkiPem => "spki-pem",
            Self::Pkcs1PublicPem => "pkcs1-public-pem",
            Self::Der => "der",
            Self::Jwk => "jwk",
        }
    }
}

impl KeyMaterial {
    /// The public key, whichever the material holds.
    pub fn public_key(&self) -> &PublicKey {
        match self {
            Self::Private(wallet) => wallet.public_key(),
            Self::Public(key) => key,
        }
    }

    /// True when a private key is held.
    pub fn is_private(&self) -> bool {
        matches!(self, Self::Private(_))
    }

    /// The wallet, or `None` for a public key.
    pub fn into_wallet(self) -> Option<Wallet> {
        match self {
            Self::Private(wallet) => Some(wallet),
            Self::Public(_) => None,
        }
    }

    /// Reads key material from bytes: PEM, DER or a JWK. `passphrase` opens encrypted PKCS#8.
    pub fn parse(input: &[u8], passphrase: Option<&[u8]>) -> Result<(Self, KeyFormat)> {
        if input.len() > MAX_KEY_INPUT {
            return Err(KeyError::malformed(format!(
                "key input is {} bytes; at most {MAX_KEY_INPUT} are read",
                input.len()
            )));
        }
        let trimmed = input.trim_ascii_start();
        if trimmed.starts_with(b"{") {
            return parse_jwk(trimmed).map(|m| (m, KeyFormat::Jwk));
        }
        if let Some(start) = find(trimmed, b"-----BEGIN ") {
            return parse_pem(&trimmed[start..], passphrase);
        }
        parse_der(input).map(|m| (m, KeyFormat::Der))
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn parse_jwk(text: &[u8]) -> Result<KeyMaterial> {
    let value: Value = serde_json::from_slice(text).map_err(|e| KeyError::jwk(e.to_string()))?;
    let obj = value.as_object().ok_or_else(|| KeyError::jwk("not a json object"))?;
    if obj.contains_key("keys") {
        return Err(KeyError::jwk("a jwk set; give a single key"));
    }
    if crate::jwk::private_member(obj).is_some() {
        crate::jwk::wallet_from_members(obj).map(KeyMaterial::Private)
    } else {
        crate::jwk::public_from_members(obj).map(KeyMaterial::Public)
    }
}

fn parse_pem(pem: &[u8], passphrase: Option<&[u8]>) -> Result<(KeyMaterial, KeyFormat)> {
    if find(pem, b"Proc-Type:").is_some() {
        return Err(KeyError::LegacyEncryptedPem);
    }
    // Only the first PEM block counts; ignore any text after it.
    let end = find(pem, b"-----END ")
        .and_then(|i| pem[i + 9..].windows(5).position(|w| w == b"-----").map(|j| i + 9 + j + 5))
        .ok_or_else(|| KeyError::malformed("pem block has no END line"))?;
    let (label, der) = der::pem::decode_vec(&pem[..end]).map_err(KeyError::malformed)?;
    let der = Zeroizing::new(der);
    match label {
        "PRIVATE KEY" => {
            Ok((KeyMaterial::Private(Wallet::from_pkcs8_der(&der)?), KeyFormat::Pkcs8Pem))
        }
        "ENCRYPTED PRIVATE KEY" => {
            let passphrase = passphrase.ok_or(KeyError::PassphraseRequired)?;
            let info = EncryptedPrivateKeyInfo::from_der(&der).map_err(KeyError::malformed)?;
            check_encryption(&info.encryption_algorithm)?;
            let plain = info.decrypt(passphrase).map_err(|_| KeyError::WrongPassphrase)?;
            let wallet = Wallet::from_pkcs8_der(plain.as_bytes())?;
            Ok((KeyMaterial::Private(wallet), KeyFormat::EncryptedPkcs8Pem))
        }
        "RSA PRIVATE KEY" => {
            Ok((KeyMaterial::Private(Wallet::from_rsa_pkcs1_der(&der)?), KeyFormat::Pkcs1Pem))
        }
        "PUBLIC KEY" => {
            Ok((KeyMaterial::Public(PublicKey::from_spki_der(&der)?), KeyFormat::SpkiPem))
        }
        "RSA PUBLIC KEY" => {
            Ok((KeyMaterial::Public(PublicKey::from_pkcs1_der(&der)?), KeyFormat::Pkcs1PublicPem))
        }
        other => Err(KeyError::UnsupportedPemLabel(swarmvm_primitives::text::escape(other, 40))),
    }
}

fn parse_der(der: &[u8]) -> Result<KeyMaterial> {
    type Attempt = fn(&[u8]) -> Result<KeyMaterial>;
    let attempts: [Attempt; 4] = [
        |d| Wallet::from_pkcs8_der(d).map(KeyMaterial::Private),
        |d| PublicKey::from_spki_der(d).map(KeyMaterial::Public),
        |d| Wallet::from_rsa_pkcs1_der(d).map(KeyMaterial::Private),
        |d| PublicKey::from_pkcs1_der(d).map(KeyMaterial::Public),
    ];
    // A structure that parsed but broke a rule (a weak rsa key, say) reports that rule.
    let mut refusal = None;
    for attempt in attempts {
        match attempt(der) {
            Ok(material) => return Ok(material),
            Err(e) if e.is_refusal() => refusal = refusal.or(Some(e)),
            Err(_) => {}
        }
    }
    Err(refusal.unwrap_or(KeyError::NotAKey))
}

/// Refuses key-derivation parameters that would cost unbounded time or memory.
fn check_encryption(scheme: &EncryptionScheme<'_>) -> Result<()> {
    let EncryptionScheme::Pbes2(params) = scheme else {
        return Err(KeyError::UnsafeEncryption("pbes1 is obsolete; use pbes2".into()));
    };
    match &params.kdf {
        pbes2::Kdf::Pbkdf2(p) if p.iteration_count > MAX_PBKDF2_ITERATIONS => {
            Err(KeyError::UnsafeEncryption(format!(
                "pbkdf2 with {} iterations (at most {MAX_PBKDF2_ITERATIONS})",
                p.iteration_count
            )))
        }
        pbes2::Kdf::Scrypt(p) => {
            let n = p.cost_parameter;
            let memory = 128u64.saturating_mul(u64::from(p.block_size)).saturating_mul(n);
            if memory > MAX_SCRYPT_MEMORY || p.parallelization > 16 {
                return Err(KeyError::UnsafeEncryption(format!(
                    "scrypt n={n} r={} p={} needs too much memory or time",
                    p.block_size, p.parallelization
                )));
            }
            Ok(())
        }
        _ => Ok(()),
    }
}
