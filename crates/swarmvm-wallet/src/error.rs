//! The one error type of this crate.

use std::path::PathBuf;

pub(crate) use swarmvm_primitives::text::shown;
use swarmvm_primitives::{Classify, ErrorClass};

/// Why a key could not be generated, read, parsed or written.
///
/// Messages are one line, lowercase, and never contain key material.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// A file could not be read or written.
    #[error("{action} {}", path.display())]
    Io {
        /// What was being done (`cannot read`, `cannot write`, ...).
        action: &'static str,
        /// The file concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A key file exists already and overwriting was not asked for.
    #[error("{} already exists; refusing to overwrite it (use --force to replace it)", .0.display())]
    AlreadyExists(PathBuf),
    /// The input holds neither a PEM key, a DER key nor a JWK.
    #[error("not a key: expected a PEM key, a DER key or a JWK")]
    NotAKey,
    /// A PEM block with a label we do not read (`EC PRIVATE KEY`, `CERTIFICATE`, ...).
    #[error(
        "unsupported PEM block '{0}': expected PRIVATE KEY, ENCRYPTED PRIVATE KEY, RSA PRIVATE KEY, PUBLIC KEY or RSA PUBLIC KEY"
    )]
    UnsupportedPemLabel(String),
    /// A PEM file encrypted with OpenSSL's legacy `Proc-Type` scheme.
    #[error(
        "legacy OpenSSL-encrypted PEM is not supported; convert it with `openssl pkcs8 -topk8 -v2 aes-256-cbc`"
    )]
    LegacyEncryptedPem,
    /// The key is encrypted and no passphrase was given.
    #[error("the key is encrypted; give its passphrase with --passphrase-file")]
    PassphraseRequired,
    /// The passphrase did not decrypt the key.
    #[error("cannot decrypt the key: wrong passphrase or corrupt file")]
    WrongPassphrase,
    /// A passphrase file was empty.
    #[error("the passphrase is empty")]
    EmptyPassphrase,
    /// The encryption parameters of an encrypted key are outside what we accept.
    #[error("unsafe key encryption parameters: {0}")]
    UnsafeEncryption(String),
    /// A key of an algorithm we do not support.
    #[error("unsupported key algorithm {0}; swarmvm wallets are ed25519 or rsa")]
    UnsupportedAlgorithm(String),
    /// An RSA key shorter than the minimum.
    #[error("rsa key has {bits} bits; at least {min} are required", min = crate::RSA_MIN_BITS)]
    RsaKeyTooSmall {
        /// The key's modulus length in bits.
        bits: usize,
    },
    /// An RSA key longer than the maximum.
    #[error("rsa key has {bits} bits; at most {max} are supported", max = crate::RSA_MAX_BITS)]
    RsaKeyTooLarge {
        /// The key's modulus length in bits.
        bits: usize,
    },
    /// A key that is weak by construction (a small-order Ed25519 point, a non-canonical
    /// encoding).
    #[error("weak key refused: {0}")]
    WeakKey(&'static str),
    /// The key's encoding is wrong or its values are inconsistent.
    #[error("malformed key: {0}")]
    Malformed(String),
    /// A JWK that is not a usable key.
    #[error("invalid jwk: {0}")]
    InvalidJwk(String),
    /// A JWK holding private members where only a public key is allowed.
    #[error("jwk holds private key material (member '{0}'); only public keys are accepted here")]
    PrivateKeyInJwk(String),
    /// The crypto backend failed (key generation, encryption).
    #[error("crypto backend failure: {0}")]
    Crypto(&'static str),
}

impl KeyError {
    pub(crate) fn malformed(reason: impl std::fmt::Display) -> Self {
        Self::Malformed(reason.to_string())
    }

    pub(crate) fn jwk(reason: impl std::fmt::Display) -> Self {
        Self::InvalidJwk(reason.to_string())
    }

    /// True when the key was understood and refused by a rule (too small, unsupported,
    /// unsafe parameters), rather than unreadable.
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            Self::RsaKeyTooSmall { .. }
                | Self::RsaKeyTooLarge { .. }
                | Self::UnsupportedAlgorithm(_)
                | Self::UnsafeEncryption(_)
                | Self::WeakKey(_)
                | Self::WrongPassphrase
        )
    }
}

/// A key refused by a rule ([`KeyError::is_refusal`]) is refused; one that could not be read,
/// parsed or written is a failure.
impl Classify for KeyError {
    fn class(&self) -> ErrorClass {
        if self.is_refusal() { ErrorClass::Refused } else { ErrorClass::Failed }
    }
}

/// `Result` with [`KeyError`] as the default error.
pub type Result<T, E = KeyError> = core::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_refused_and_the_rest_failures() {
        for e in [
            KeyError::WrongPassphrase,
            KeyError::RsaKeyTooSmall { bits: 1024 },
            KeyError::WeakKey("small order"),
        ] {
            assert!(e.is_refusal());
            assert_eq!(e.class(), ErrorClass::Refused, "{e}");
        }
        for e in [KeyError::NotAKey, KeyError::PassphraseRequired, KeyError::Crypto("x")] {
            assert!(!e.is_refusal());
            assert_eq!(e.class(), ErrorClass::Failed, "{e}");
        }
    }
}
