//! Wallets: private key pairs, their generation and their PKCS#8 encoding.

use std::fmt;
use std::str::FromStr;

use aws_lc_rs::encoding::AsDer as _;
use aws_lc_rs::rsa::{KeyPair as RsaKeyPair, KeySize};
use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair as _};
use der::Decode as _;
use der::asn1::AnyRef;
use pkcs8::PrivateKeyInfo;
use spki::AlgorithmIdentifierRef;
use zeroize::Zeroizing;

use crate::error::{KeyError, Result};
use crate::public::{ED25519_OID, KeyKind, PublicKey, RSA_OID, encode_der, pem_encode};
use swarmvm_primitives::WalletId;

/// scrypt cost for encrypted key files: N = 2^14, r = 8, p = 1 (16 MiB), the same as
/// `openssl pkcs8 -scrypt` and within OpenSSL's default 32 MiB limit for reading.
const SCRYPT_LOG_N: u8 = 14;
const SCRYPT_R: u32 = 8;
const SCRYPT_P: u32 = 1;

/// The key algorithms a new wallet can have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Algorithm {
    /// Ed25519 (JWS `EdDSA`), the default.
    #[default]
    Ed25519,
    /// RSA with a 2048-bit modulus (JWS `RS256`).
    Rsa2048,
    /// RSA with a 3072-bit modulus (JWS `RS256`).
    Rsa3072,
    /// RSA with a 4096-bit modulus (JWS `RS256`).
    Rsa4096,
}

impl Algorithm {
    /// Every algorithm, in the order the command line lists them.
    pub const ALL: [Self; 4] = [Self::Ed25519, Self::Rsa2048, Self::Rsa3072, Self::Rsa4096];

    /// The name used on the command line: `ed25519`, `rsa-2048`, ...
    pub fn name(self) -> &'static str {
        match self {
            Self::Ed25519 => "ed25519",
            Self::Rsa2048 => "rsa-2048",
            Self::Rsa3072 => "rsa-3072",
            Self::Rsa4096 => "rsa-4096",
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A name that is not one of [`Algorithm::ALL`].
#[derive(Debug, Clone, thiserror::Error)]
#[error("unknown key algorithm '{0}'; expected ed25519, rsa-2048, rsa-3072 or rsa-4096")]
pub struct UnknownAlgorithm(String);

/// An algorithm name given that is not one: a usage error.
impl swarmvm_primitives::Classify for UnknownAlgorithm {
    fn class(&self) -> swarmvm_primitives::ErrorClass {
        swarmvm_primitives::ErrorClass::Failed
    }
}

impl FromStr for Algorithm {
    type Err = UnknownAlgorithm;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|a| a.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| UnknownAlgorithm(swarmvm_primitives::text::escape(s, 32)))
    }
}

/// The private key of a wallet, in the form a signing backend takes it.
///
/// This is secret material: hand it to a signer, never print or log it.
#[derive(Clone, Copy)]
#[non_exhaustive]
pub enum SigningKey<'a> {
    /// An Ed25519 key as unencrypted PKCS#8 v1 DER.
    Ed25519Pkcs8(&'a [u8]),
    /// An RSA key as PKCS#1 `RSAPrivateKey` DER.
    RsaPkcs1(&'a [u8]),
}

impl fmt::Debug for SigningKey<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Ed25519Pkcs8(_) => f.write_str("SigningKey::Ed25519Pkcs8(<secret>)"),
            Self::RsaPkcs1(_) => f.write_str("SigningKey::RsaPkcs1(<secret>)"),
        }
    }
}

/// A wallet: a private key and its public key. Its id is the public key's RFC 7638 thumbprint.
///
/// `Debug` shows the id and kind only; the private key is zeroed when the wallet is dropped.
pub struct Wallet {
    secret: Secret,
    public: PublicKey,
}

enum Secret {
    /// PKCS#8 v1 DER of the Ed25519 seed.
    Ed25519 { pkcs8: Zeroizing<Vec<u8>> },
    /// PKCS#1 `RSAPrivateKey` DER.
    Rsa { pkcs1: Zeroizing<Vec<u8>> },
}

impl fmt::Debug for Wallet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Wallet").field("id", &self.id()).field("kind", &self.kind()).finish()
    }
}

impl Wallet {
    /// Generates a new wallet with the operating system's random source.
    pub fn generate(algorithm: Algorithm) -> Result<Self> {
        let size = match algorithm {
            Algorithm::Ed25519 => {
                let mut seed = Zeroizing::new([0u8; 32]);
                aws_lc_rs::rand::fill(seed.as_mut())
                    .map_err(|_| KeyError::Crypto("random source failed"))?;
                return Self::from_ed25519_seed(seed.as_ref());
            }
            Algorithm::Rsa2048 => KeySize::Rsa2048,
            Algorithm::Rsa3072 => KeySize::Rsa3072,
            Algorithm::Rsa4096 => KeySize::Rsa4096,
        };
        let pair = RsaKeyPair::generate(size)
            .map_err(|_| KeyError::Crypto("rsa key generation failed"))?;
        let pkcs8 = pair.as_der().map_err(|_| KeyError::Crypto("rsa key encoding failed"))?;
        let info = PrivateKeyInfo::from_der(pkcs8.as_ref()).map_err(KeyError::malformed)?;
        Self::from_rsa_pkcs1_der(info.private_key)
    }

    /// A wallet from a 32-byte Ed25519 seed (the RFC 8032 private key).
    pub fn from_ed25519_seed(seed: &[u8]) -> Result<Self> {
        let seed: &[u8; 32] =
            seed.try_into().map_err(|_| KeyError::malformed("ed25519 seed is not 32 bytes"))?;
        let pair = Ed25519KeyPair::from_seed_unchecked(seed)
            .map_err(|e| KeyError::malformed(format!("ed25519 key rejected: {e}")))?;
        let public: [u8; 32] = pair
            .public_key()
            .as_ref()
            .try_into()
            .map_err(|_| KeyError::Crypto("ed25519 public key has the wrong length"))?;
        // CurvePrivateKey ::= OCTET STRING (RFC 8410 §7), inside PKCS#8's privateKey.
        let mut curve_private_key = Zeroizing::new(Vec::with_capacity(34));
        curve_private_key.extend_from_slice(&[0x04, 0x20]);
        curve_private_key.extend_from_slice(seed);
        let info = PrivateKeyInfo::new(
            AlgorithmIdentifierRef { oid: ED25519_OID, parameters: None },
            &curve_private_key,
        );
        let pkcs8 = Zeroizing::new(encode_der(&info));
        Ok(Self {
            secret: Secret::Ed25519 { pkcs8 },
            public: PublicKey::from_ed25519_bytes(public)?,
        })
    }

    /// A wallet from a PKCS#1 `RSAPrivateKey` (DER). The key is checked for consistency and
    /// must have 2048 to 8192 bits.
    pub fn from_rsa_pkcs1_der(der: &[u8]) -> Result<Self> {
        let parsed = pkcs1::RsaPrivateKey::from_der(der).map_err(KeyError::malformed)?;
        if parsed.other_prime_infos.is_some() {
            return Err(KeyError::malformed("multi-prime rsa keys are not supported"));
        }
        // Checks the size limits before the backend spends time on the key.
        let public = PublicKey::from_rsa_components(
            parsed.modulus.as_bytes(),
            parsed.public_exponent.as_bytes(),
        )?;
        RsaKeyPair::from_der(der)
            .map_err(|e| KeyError::malformed(format!("rsa private key rejected: {e}")))?;
        Ok(Self { secret: Secret::Rsa { pkcs1: Zeroizing::new(der.to_vec()) }, public })
    }

    /// A wallet from unencrypted PKCS#8 `PrivateKeyInfo` DER (v1 or v2).
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self> {
        let info = PrivateKeyInfo::from_der(der).map_err(KeyError::malformed)?;
        let wallet = match info.algorithm.oid {
            ED25519_OID => {
                let seed = der::asn1::OctetStringRef::from_der(info.private_key)
                    .map_err(KeyError::malformed)?;
                Self::from_ed25519_seed(seed.as_bytes())?
            }
            RSA_OID => Self::from_rsa_pkcs1_der(info.private_key)?,
            other => return Err(KeyError::UnsupportedAlgorithm(crate::public::oid_name(other))),
        };
        if let Some(embedded) = info.public_key {
            let matches = match wallet.public.ed25519_bytes() {
                Some(x) => embedded == x.as_slice(),
                // RSA PKCS#8 v2 public keys are not in use; accept what the private key says.
                None => true,
            };
            if !matches {
                return Err(KeyError::malformed(
                    "public key in pkcs#8 does not match the private key",
                ));
            }
        }
        Ok(wallet)
    }

    /// The wallet's public key.
    pub fn public_key(&self) -> &PublicKey {
        &self.public
    }

    /// The wallet's id (RFC 7638 thumbprint of the public key).
    pub fn id(&self) -> WalletId {
        self.public.id()
    }

    /// The kind of key.
    pub fn kind(&self) -> KeyKind {
        self.public.kind()
    }

    /// The private key for a signing backend. Secret: never print or log it.
    pub fn signing_key(&self) -> SigningKey<'_> {
        match &self.secret {
            Secret::Ed25519 { pkcs8 } => SigningKey::Ed25519Pkcs8(pkcs8),
            Secret::Rsa { pkcs1 } => SigningKey::RsaPkcs1(pkcs1),
        }
    }

    /// Unencrypted PKCS#8 v1 `PrivateKeyInfo` DER.
    pub fn to_pkcs8_der(&self) -> Zeroizing<Vec<u8>> {
        match &self.secret {
            Secret::Ed25519 { pkcs8 } => pkcs8.clone(),
            Secret::Rsa { pkcs1 } => {
                let info = PrivateKeyInfo::new(
                    AlgorithmIdentifierRef { oid: RSA_OID, parameters: Some(AnyRef::NULL) },
                    pkcs1,
                );
                Zeroizing::new(encode_der(&info))
            }
        }
    }

    /// The `PRIVATE KEY` PEM, or with a passphrase the `ENCRYPTED PRIVATE KEY` PEM
    /// (PKCS#8 PBES2, scrypt and AES-256-CBC; `openssl pkey -passin` reads it).
    pub fn to_pkcs8_pem(&self, passphrase: Option<&[u8]>) -> Result<Zeroizing<String>> {
        let der = self.to_pkcs8_der();
        let Some(passphrase) = passphrase else {
            return Ok(Zeroizing::new(pem_encode("PRIVATE KEY", &der)));
        };
        if passphrase.is_empty() {
            return Err(KeyError::EmptyPassphrase);
        }
        let mut salt = [0u8; 16];
        let mut iv = [0u8; 16];
        aws_lc_rs::rand::fill(&mut salt).map_err(|_| KeyError::Crypto("random source failed"))?;
        aws_lc_rs::rand::fill(&mut iv).map_err(|_| KeyError::Crypto("random source failed"))?;
        let params = pkcs8::pkcs5::scrypt::Params::new(SCRYPT_LOG_N, SCRYPT_R, SCRYPT_P, 32)
            .map_err(|_| KeyError::Crypto("invalid scrypt parameters"))?;
        let pbes2 = pkcs8::pkcs5::pbes2::Parameters::scrypt_aes256cbc(params, &salt, &iv)
            .map_err(|_| KeyError::Crypto("invalid pbes2 parameters"))?;
        let info = PrivateKeyInfo::from_der(&der).map_err(KeyError::malformed)?;
        let encrypted = info
            .encrypt_with_params(pbes2, passphrase)
            .map_err(|_| KeyError::Crypto("key encryption failed"))?;
        Ok(Zeroizing::new(pem_encode("ENCRYPTED PRIVATE KEY", encrypted.as_bytes())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn algorithm_names_round_trip() {
        for a in Algorithm::ALL {
            assert_eq!(a.name().parse::<Algorithm>().unwrap(), a);
        }
        assert!("rsa-1024".parse::<Algorithm>().is_err());
    }

    #[test]
    fn rfc8032_seed_gives_published_public_key() {
        // RFC 8032 §7.1 test 1.
        let seed = hex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60");
        let wallet = Wallet::from_ed25519_seed(&seed).unwrap();
        assert_eq!(
            wallet.public_key().ed25519_bytes().unwrap().to_vec(),
            hex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
        );
    }

    #[test]
    fn pkcs8_round_trip_keeps_id() {
        let ed = Wallet::generate(Algorithm::Ed25519).unwrap();
        assert_eq!(Wallet::from_pkcs8_der(&ed.to_pkcs8_der()).unwrap().id(), ed.id());
        let rsa = Wallet::generate(Algorithm::Rsa2048).unwrap();
        assert_eq!(rsa.kind(), KeyKind::Rsa { bits: 2048 });
        assert_eq!(Wallet::from_pkcs8_der(&rsa.to_pkcs8_der()).unwrap().id(), rsa.id());
    }

    #[test]
    fn debug_never_shows_secret() {
        let ed = Wallet::generate(Algorithm::Ed25519).unwrap();
        let shown = format!("{ed:?} {:?}", ed.signing_key());
        assert!(shown.contains(ed.id().as_str()));
        assert!(!shown.contains("PRIVATE"));
        let SigningKey::Ed25519Pkcs8(der) = ed.signing_key() else { panic!("ed25519") };
        let seed_hex: String = der[der.len() - 32..].iter().map(|b| format!("{b:02x}")).collect();
        assert!(!shown.contains(&seed_hex));
    }

    pub(crate) fn hex(s: &str) -> Vec<u8> {
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }
}
