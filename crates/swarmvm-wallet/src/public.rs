//! Public keys: the part of a wallet that others see, in SPKI, PKCS#1 and JWK form.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use der::Decode as _;
use der::asn1::{AnyRef, BitStringRef, UintRef};
use serde_json::{Map, Value};
use sha2::{Digest as _, Sha256};
use spki::{AlgorithmIdentifierRef, ObjectIdentifier, SubjectPublicKeyInfoRef};

use crate::error::{KeyError, Result};
use swarmvm_primitives::WalletId;

/// OID of Ed25519 keys (RFC 8410).
pub(crate) const ED25519_OID: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");
/// OID of `rsaEncryption` keys (RFC 8017).
pub(crate) const RSA_OID: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");

/// The smallest RSA modulus accepted anywhere, in bits.
pub const RSA_MIN_BITS: usize = 2048;
/// The largest RSA modulus accepted, in bits (the verifier's limit).
pub const RSA_MAX_BITS: usize = 8192;

/// What kind of key a wallet holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyKind {
    /// An Ed25519 key (signs with JWS `EdDSA`).
    Ed25519,
    /// An RSA key of `bits` bits (signs with JWS `RS256`).
    Rsa {
        /// Modulus length in bits.
        bits: usize,
    },
}

impl KeyKind {
    /// The JWS `alg` this kind of key signs with. It is fixed by the key, never by a token.
    pub fn jws_algorithm(self) -> &'static str {
        match self {
            Self::Ed25519 => "EdDSA",
            Self::Rsa { .. } => "RS256",
        }
    }
}

impl fmt::Display for KeyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Ed25519 => f.write_str("ed25519"),
            Self::Rsa { bits } => write!(f, "rsa-{bits}"),
        }
    }
}

/// A wallet's public key: Ed25519, or RSA of 2048 to 8192 bits.
///
/// Equality is equality of keys: the same key read from PEM, DER or JWK compares equal.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct PublicKey(Repr);

#[derive(Clone, PartialEq, Eq, Hash)]
enum Repr {
    /// Checked once (a canonical point, not of small order) and kept decompressed, so that
    /// verifying a signature does not decompress it again.
    Ed25519(ed25519_dalek::VerifyingKey),
    /// Modulus and exponent as minimal unsigned big-endian integers.
    Rsa { n: Vec<u8>, e: Vec<u8> },
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PublicKey").field("kind", &self.kind()).field("id", &self.id()).finish()
    }
}

/// The canonical encodings of the eight points of small order. A signature whose `R` is one
/// of them is refused; a non-canonical encoding never equals the encoding a verifier computes.
const SMALL_ORDER_ENCODINGS: [[u8; 32]; 8] = {
    let mut y_minus_one = [0xff; 32];
    y_minus_one[0] = 0xec;
    y_minus_one[31] = 0x7f;
    let mut identity = [0; 32];
    identity[0] = 1;
    let mut zero_x_sign = [0; 32];
    zero_x_sign[31] = 0x80;
    let order8_a: [u8; 32] = [
        0x26, 0xe8, 0x95, 0x8f, 0xc2, 0xb2, 0x27, 0xb0, 0x45, 0xc3, 0xf4, 0x89, 0xf2, 0xef, 0x98,
        0xf0, 0xd5, 0xdf, 0xac, 0x05, 0xd3, 0xc6, 0x33, 0x39, 0xb1, 0x38, 0x02, 0x88, 0x6d, 0x53,
        0xfc, 0x05,
    ];
    let order8_b: [u8; 32] = [
        0xc7, 0x17, 0x6a, 0x70, 0x3d, 0x4d, 0xd8, 0x4f, 0xba, 0x3c, 0x0b, 0x76, 0x0d, 0x10, 0x67,
        0x0f, 0x2a, 0x20, 0x53, 0xfa, 0x2c, 0x39, 0xcc, 0xc6, 0x4e, 0xc7, 0xfd, 0x77, 0x92, 0xac,
        0x03, 0x7a,
    ];
    let mut order8_a_neg = order8_a;
    order8_a_neg[31] |= 0x80;
    let mut order8_b_neg = order8_b;
    order8_b_neg[31] |= 0x80;
    [identity, y_minus_one, [0; 32], zero_x_sign, order8_a, order8_a_neg, order8_b, order8_b_neg]
};

impl PublicKey {
    /// An Ed25519 public key from its 32 bytes. They must be the canonical encoding (RFC 8032
    /// §5.1.2) of a point on the curve that is not of small order: for the identity and the
    /// other torsion points a signature that anyone can compute verifies under lenient rules,
    /// so such a key would let anyone sign as its wallet.
    pub fn from_ed25519_bytes(bytes: [u8; 32]) -> Result<Self> {
        let key = ed25519_dalek::VerifyingKey::from_bytes(&bytes)
            .map_err(|_| KeyError::malformed("ed25519 public key is not a point on the curve"))?;
        if key.to_edwards().compress().to_bytes() != bytes {
            return Err(KeyError::WeakKey(
                "ed25519 public key is not canonically encoded (a coordinate is out of range)",
            ));
        }
        if key.is_weak() {
            return Err(KeyError::WeakKey(
                "ed25519 public key is a small-order point, for which anyone can forge signatures",
            ));
        }
        Ok(Self(Repr::Ed25519(key)))
    }

    /// Whether `signature` is this Ed25519 key's signature of `message`, under strict rules
    /// (the semantics of ed25519-dalek's `verify_strict`): the key is not of small order
    /// (checked when it was read), `S` is reduced, the equation is the cofactorless one with
    /// `R` compared as encoded, and `R` is not of small order, so that no signature verifies
    /// that the key's holder could not have made. aws-lc-rs makes the check (it refuses
    /// `S ≥ L` and compares encodings); the small-order `R` test is ours. False for RSA keys
    /// and for signatures that are not 64 bytes.
    pub fn verify_ed25519_strict(&self, message: &[u8], signature: &[u8]) -> bool {
        let Repr::Ed25519(key) = &self.0 else { return false };
        let Some(r) = signature.get(..32) else { return false };
        if signature.len() != 64 || SMALL_ORDER_ENCODINGS.iter().any(|s| *s == r) {
            return false;
        }
        aws_lc_rs::signature::UnparsedPublicKey::new(&aws_lc_rs::signature::ED25519, key.as_bytes())
            .verify(message, signature)
            .is_ok()
    }

    /// An RSA public key from its modulus and public exponent (unsigned big-endian).
    ///
    /// Refuses moduli under [`RSA_MIN_BITS`] or over [`RSA_MAX_BITS`] bits, even moduli, and
    /// exponents that are even, below 3 or wider than 32 bits.
    pub fn from_rsa_components(n: &[u8], e: &[u8]) -> Result<Self> {
        let n = strip_leading_zeros(n);
        let e = strip_leading_zeros(e);
        let bits = bit_length(n);
        if bits < RSA_MIN_BITS {
            return Err(KeyError::RsaKeyTooSmall { bits });
        }
        if bits > RSA_MAX_BITS {
            return Err(KeyError::RsaKeyTooLarge { bits });
        }
        if n.last().is_some_and(|b| b & 1 == 0) {
            return Err(KeyError::malformed("rsa modulus is even"));
        }
        let e_ok = !e.is_empty()
            && e.len() <= 4
            && e.last().is_some_and(|b| b & 1 == 1)
            && (e.len() > 1 || e[0] >= 3);
        if !e_ok {
            return Err(KeyError::malformed(
                "rsa public exponent must be odd, at least 3 and at most 32 bits",
            ));
        }
        Ok(Self(Repr::Rsa { n: n.to_vec(), e: e.to_vec() }))
    }

    /// The kind of key, with its size for RSA.
    pub fn kind(&self) -> KeyKind {
        match &self.0 {
            Repr::Ed25519(_) => KeyKind::Ed25519,
            Repr::Rsa { n, .. } => KeyKind::Rsa { bits: bit_length(n) },
        }
    }

    /// The 32 bytes of an Ed25519 key, or `None` for RSA.
    pub fn ed25519_bytes(&self) -> Option<&[u8; 32]> {
        match &self.0 {
            Repr::Ed25519(k) => Some(k.as_bytes()),
            Repr::Rsa { .. } => None,
        }
    }

    /// Modulus and exponent of an RSA key (minimal big-endian), or `None` for Ed25519.
    pub fn rsa_components(&self) -> Option<(&[u8], &[u8])> {
        match &self.0 {
            Repr::Ed25519(_) => None,
            Repr::Rsa { n, e } => Some((n, e)),
        }
    }

    /// The wallet id: the RFC 7638 SHA-256 thumbprint of the public JWK, base64url without padding.
    pub fn id(&self) -> WalletId {
        let digest = Sha256::digest(self.thumbprint_input().as_bytes());
        WalletId::from_digest(&digest.into())
    }

    /// The RFC 7638 thumbprint input: the required members in lexicographic order, no spaces.
    pub fn thumbprint_input(&self) -> String {
        match &self.0 {
            Repr::Ed25519(k) => format!(
                r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#,
                URL_SAFE_NO_PAD.encode(k.as_bytes())
            ),
            Repr::Rsa { n, e } => format!(
                r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#,
                URL_SAFE_NO_PAD.encode(e),
                URL_SAFE_NO_PAD.encode(n)
            ),
        }
    }

    /// The public JWK (RFC 7517/8037) with `kid` set to the wallet id and `alg` to the key's
    /// JWS algorithm. Members are in lexicographic order.
    pub fn to_jwk(&self) -> Value {
        let mut jwk = Map::new();
        match &self.0 {
            Repr::Ed25519(k) => {
                jwk.insert("kty".into(), "OKP".into());
                jwk.insert("crv".into(), "Ed25519".into());
                jwk.insert("x".into(), URL_SAFE_NO_PAD.encode(k.as_bytes()).into());
            }
            Repr::Rsa { n, e } => {
                jwk.insert("kty".into(), "RSA".into());
                jwk.insert("n".into(), URL_SAFE_NO_PAD.encode(n).into());
                jwk.insert("e".into(), URL_SAFE_NO_PAD.encode(e).into());
            }
        }
        jwk.insert("alg".into(), self.kind().jws_algorithm().into());
        jwk.insert("kid".into(), self.id().to_string().into());
        Value::Object(jwk)
    }

    /// Reads a public JWK. A JWK holding private members (`d`, `p`, ...) is refused here: a
    /// public key was asked for. An `alg` member, when present, must match the key type.
    pub fn from_jwk(jwk: &Value) -> Result<Self> {
        let obj = jwk.as_object().ok_or_else(|| KeyError::jwk("not a json object"))?;
        if let Some(member) = crate::jwk::private_member(obj) {
            return Err(KeyError::PrivateKeyInJwk(member));
        }
        crate::jwk::public_from_members(obj)
    }

    /// DER `SubjectPublicKeyInfo` (RFC 5280), as in a `PUBLIC KEY` PEM.
    pub fn to_spki_der(&self) -> Vec<u8> {
        let (algorithm, key_bytes) = match &self.0 {
            Repr::Ed25519(k) => (
                AlgorithmIdentifierRef { oid: ED25519_OID, parameters: None },
                k.as_bytes().to_vec(),
            ),
            Repr::Rsa { .. } => (
                AlgorithmIdentifierRef { oid: RSA_OID, parameters: Some(AnyRef::NULL) },
                self.to_pkcs1_der(),
            ),
        };
        let Ok(subject_public_key) = BitStringRef::from_bytes(&key_bytes) else {
            unreachable!("a byte string always fits a bit string")
        };
        let spki = SubjectPublicKeyInfoRef { algorithm, subject_public_key };
        encode_der(&spki)
    }

    /// The `PUBLIC KEY` PEM of this key.
    pub fn to_spki_pem(&self) -> String {
        pem_encode("PUBLIC KEY", &self.to_spki_der())
    }

    /// DER PKCS#1 `RSAPublicKey` for RSA keys; empty for Ed25519, which has no PKCS#1 form.
    fn to_pkcs1_der(&self) -> Vec<u8> {
        match &self.0 {
            Repr::Ed25519(_) => Vec::new(),
            Repr::Rsa { n, e } => {
                let (Ok(modulus), Ok(public_exponent)) = (UintRef::new(n), UintRef::new(e)) else {
                    unreachable!("validated integers always encode")
                };
                encode_der(&pkcs1::RsaPublicKey { modulus, public_exponent })
            }
        }
    }

    /// Reads a DER `SubjectPublicKeyInfo` holding an Ed25519 or RSA key.
    pub fn from_spki_der(der: &[u8]) -> Result<Self> {
        let spki = SubjectPublicKeyInfoRef::from_der(der).map_err(KeyError::malformed)?;
        let bytes = spki
            .subject_public_key
            .as_bytes()
            .ok_or_else(|| KeyError::malformed("public key bit string has unused bits"))?;
        match spki.algorithm.oid {
            ED25519_OID => {
                let x: [u8; 32] = bytes
                    .try_into()
                    .map_err(|_| KeyError::malformed("ed25519 public key is not 32 bytes"))?;
                Self::from_ed25519_bytes(x)
            }
            RSA_OID => Self::from_pkcs1_der(bytes),
            other => Err(KeyError::UnsupportedAlgorithm(oid_name(other))),
        }
    }

    /// Reads a DER PKCS#1 `RSAPublicKey`, as in an `RSA PUBLIC KEY` PEM.
    pub fn from_pkcs1_der(der: &[u8]) -> Result<Self> {
        let key = pkcs1::RsaPublicKey::from_der(der).map_err(KeyError::malformed)?;
        Self::from_rsa_components(key.modulus.as_bytes(), key.public_exponent.as_bytes())
    }
}

pub(crate) fn encode_der(value: &impl der::Encode) -> Vec<u8> {
    match value.to_der() {
        Ok(der) => der,
        Err(_) => unreachable!("in-memory DER encoding of a well-formed structure cannot fail"),
    }
}

pub(crate) fn pem_encode(label: &str, der: &[u8]) -> String {
    match der::pem::encode_string(label, der::pem::LineEnding::LF, der) {
        Ok(pem) => pem,
        Err(_) => unreachable!("pem encoding to a string cannot fail"),
    }
}

pub(crate) fn oid_name(oid: ObjectIdentifier) -> String {
    match oid.to_string().as_str() {
        "1.2.840.10045.2.1" => "ec (1.2.840.10045.2.1)".into(),
        "1.3.101.110" => "x25519 (1.3.101.110)".into(),
        "1.3.101.113" => "ed448 (1.3.101.113)".into(),
        "1.2.840.113549.1.1.10" => "rsassa-pss (1.2.840.113549.1.1.10)".into(),
        "1.2.840.10040.4.1" => "dsa (1.2.840.10040.4.1)".into(),
        other => other.to_owned(),
    }
}

pub(crate) fn strip_leading_zeros(bytes: &[u8]) -> &[u8] {
    let first = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
    &bytes[first..]
}

pub(crate) fn bit_length(minimal: &[u8]) -> usize {
    match minimal.first() {
        None => 0,
        Some(&top) => (minimal.len() - 1) * 8 + (8 - top.leading_zeros() as usize),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by the `key_parse` fuzz target: names from a JWK are echoed escaped.
    #[test]
    fn jwk_errors_escape_control_characters() {
        let cases = [
            (
                serde_json::json!({"kty": "x\u{7f}\ny"}),
                "unsupported key algorithm jwk kty x\\u{7f}\\ny; swarmvm wallets are ed25519 or rsa",
            ),
            (
                serde_json::json!({"kty": "OKP", "crv": "X\r"}),
                "unsupported key algorithm okp curve X\\r; swarmvm wallets are ed25519 or rsa",
            ),
        ];
        for (jwk, reason) in cases {
            assert_eq!(PublicKey::from_jwk(&jwk).unwrap_err().to_string(), reason);
        }
        let alg = serde_json::json!({"kty": "OKP", "crv": "Ed25519", "alg": "Ed\u{7f}", "x": "AA"});
        let err = PublicKey::from_jwk(&alg).unwrap_err().to_string();
        assert!(!err.chars().any(char::is_control) && err.contains("\\u{7f}"), "{err}");
    }

    #[test]
    fn rfc7638_example_thumbprint() {
        // RFC 7638 §3.1: the example RSA key and its published thumbprint.
        let n = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";
        let n = URL_SAFE_NO_PAD.decode(n).unwrap();
        let key = PublicKey::from_rsa_components(&n, &[1, 0, 1]).unwrap();
        assert_eq!(key.id().as_str(), "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs");
        assert_eq!(key.kind(), KeyKind::Rsa { bits: 2048 });
    }

    #[test]
    fn rsa_components_are_validated() {
        let mut n = vec![0xff; 128];
        n[127] = 0xfb;
        assert!(matches!(
            PublicKey::from_rsa_components(&n, &[1, 0, 1]),
            Err(KeyError::RsaKeyTooSmall { bits: 1024 })
        ));
        let mut n = vec![0xff; 256];
        n[255] = 0xfe;
        assert!(PublicKey::from_rsa_components(&n, &[1, 0, 1]).is_err(), "even modulus");
        n[255] = 0xfd;
        assert!(PublicKey::from_rsa_components(&n, &[1]).is_err(), "e = 1");
        assert!(PublicKey::from_rsa_components(&n, &[2]).is_err(), "even e");
        assert!(PublicKey::from_rsa_components(&n, &[1, 0, 0, 0, 1]).is_err(), "wide e");
        let key = PublicKey::from_rsa_components(&[&[0, 0][..], &n].concat(), &[0, 3]).unwrap();
        assert_eq!(key.rsa_components().unwrap(), (&n[..], &[3u8][..]), "leading zeros dropped");
    }

    #[test]
    fn spki_round_trip_for_both_kinds() {
        let ed = crate::Wallet::generate(crate::Algorithm::Ed25519).unwrap().public_key().clone();
        assert_eq!(PublicKey::from_spki_der(&ed.to_spki_der()).unwrap(), ed);
        let mut n = vec![0xc5; 384];
        n[383] |= 1;
        let rsa = PublicKey::from_rsa_components(&n, &[1, 0, 1]).unwrap();
        assert_eq!(PublicKey::from_spki_der(&rsa.to_spki_der()).unwrap(), rsa);
        assert_eq!(rsa.kind(), KeyKind::Rsa { bits: 3072 });
        assert!(rsa.to_spki_pem().starts_with("-----BEGIN PUBLIC KEY-----\n"));
    }

    #[test]
    fn jwk_round_trip_keeps_id() {
        let ed = crate::Wallet::generate(crate::Algorithm::Ed25519).unwrap().public_key().clone();
        let jwk = ed.to_jwk();
        assert_eq!(jwk["kid"], ed.id().as_str());
        assert_eq!(jwk["alg"], "EdDSA");
        assert_eq!(PublicKey::from_jwk(&jwk).unwrap(), ed);
    }

    /// WebCrypto exports an Ed25519 public key with `"alg": "Ed25519"` (RFC 9864's fully
    /// specified name), `ext` and `key_ops`: it is read as the EdDSA key it is. Other names,
    /// the name on an RSA key, and private members are still refused.
    #[test]
    fn webcrypto_ed25519_jwks_are_read_and_other_algs_are_not() {
        let ed = crate::Wallet::generate(crate::Algorithm::Ed25519).unwrap().public_key().clone();
        let x = ed.to_jwk()["x"].clone();
        let browser = serde_json::json!({
            "key_ops": ["verify"], "ext": true, "crv": "Ed25519", "x": x, "kty": "OKP",
            "alg": "Ed25519",
        });
        assert_eq!(PublicKey::from_jwk(&browser).unwrap(), ed);
        for alg in ["Ed448", "ES256", "ed25519", "RS256"] {
            let mut jwk = browser.clone();
            jwk["alg"] = alg.into();
            let err = PublicKey::from_jwk(&jwk).unwrap_err().to_string();
            assert!(err.contains("signs with EdDSA"), "{alg}: {err}");
        }
        let mut private = browser;
        private["d"] = "AAAA".into();
        assert!(
            matches!(PublicKey::from_jwk(&private), Err(KeyError::PrivateKeyInJwk(m)) if m == "d")
        );
        let mut n = vec![0xc5; 256];
        n[255] |= 1;
        let mut rsa = PublicKey::from_rsa_components(&n, &[1, 0, 1]).unwrap().to_jwk();
        rsa["alg"] = "Ed25519".into();
        let err = PublicKey::from_jwk(&rsa).unwrap_err().to_string();
        assert!(err.contains("signs with RS256"), "{err}");
    }

    /// The eight points of small order (the identity and the torsion points), canonically
    /// encoded, and non-canonical encodings of the identity and of -1 (from "Taming the many
    /// EdDSAs", Chalkias, Garillot and Nikolaenko, 2020).
    const WEAK_ED25519: [&str; 10] = [
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

    fn bytes32(hex: &str) -> [u8; 32] {
        let mut out = [0u8; 32];
        for (i, b) in out.iter_mut().enumerate() {
            *b = u8::from_str_radix(&hex[i * 2..i * 2 + 2], 16).unwrap();
        }
        out
    }

    #[test]
    fn small_order_and_non_canonical_ed25519_keys_are_refused() {
        for hex in WEAK_ED25519 {
            let err = PublicKey::from_ed25519_bytes(bytes32(hex)).unwrap_err();
            assert!(err.is_refusal(), "{hex}: {err}");
            assert!(
                err.to_string().contains("small-order") || err.to_string().contains("canonical"),
                "{hex}: {err}"
            );
        }
        // Not a point at all (no square root for x): refused as malformed.
        let err = PublicKey::from_ed25519_bytes(bytes32(
            "0200000000000000000000000000000000000000000000000000000000000000",
        ))
        .unwrap_err();
        assert!(err.to_string().contains("not a point"), "{err}");
        // An ordinary key is accepted.
        let good = crate::Wallet::generate(crate::Algorithm::Ed25519).unwrap();
        let bytes = *good.public_key().ed25519_bytes().unwrap();
        assert_eq!(PublicKey::from_ed25519_bytes(bytes).unwrap(), *good.public_key());
    }

    #[test]
    fn the_small_order_encodings_are_exactly_the_points_of_small_order() {
        for encoding in SMALL_ORDER_ENCODINGS {
            let point = ed25519_dalek::VerifyingKey::from_bytes(&encoding).unwrap();
            assert!(point.is_weak(), "{encoding:02x?}");
            assert_eq!(point.to_edwards().compress().to_bytes(), encoding, "canonical");
        }
        for hex in &WEAK_ED25519[..8] {
            assert!(SMALL_ORDER_ENCODINGS.contains(&bytes32(hex)), "{hex}");
        }
    }

    #[test]
    fn strict_verification_agrees_with_ed25519_dalek_verify_strict() {
        let wallet = crate::Wallet::generate(crate::Algorithm::Ed25519).unwrap();
        let key = wallet.public_key();
        let dalek = ed25519_dalek::VerifyingKey::from_bytes(key.ed25519_bytes().unwrap()).unwrap();
        let crate::SigningKey::Ed25519Pkcs8(der) = wallet.signing_key() else { unreachable!() };
        let pair = aws_lc_rs::signature::Ed25519KeyPair::from_pkcs8(der).unwrap();
        // The group order L, little-endian.
        const L: [u8; 32] = [
            0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9,
            0xde, 0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
        ];
        for i in 0..64u8 {
            let message = [i; 37];
            let good = pair.sign(&message).as_ref().to_vec();
            let mut variants = vec![good.clone()];
            // S + L: the same scalar, not reduced.
            let mut s_plus_l = good.clone();
            let mut carry = 0u16;
            for (b, l) in s_plus_l[32..].iter_mut().zip(L) {
                let sum = u16::from(*b) + u16::from(l) + carry;
                *b = (sum & 0xff) as u8;
                carry = sum >> 8;
            }
            variants.push(s_plus_l);
            // A flipped bit anywhere, and R replaced by each small-order point.
            let mut flipped = good.clone();
            flipped[usize::from(i)] ^= 1;
            variants.push(flipped);
            for r in SMALL_ORDER_ENCODINGS {
                let mut v = good.clone();
                v[..32].copy_from_slice(&r);
                variants.push(v);
            }
            for sig in variants {
                let theirs = ed25519_dalek::Signature::from_slice(&sig)
                    .is_ok_and(|s| dalek.verify_strict(&message, &s).is_ok());
                assert_eq!(key.verify_ed25519_strict(&message, &sig), theirs, "{sig:02x?}");
            }
        }
    }
}
