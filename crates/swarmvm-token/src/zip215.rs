//! Contract signatures under ZIP-215 (rules 4): Ed25519 with the cofactored equation and
//! lenient encodings of `R` and the key, which batch verification and single verification
//! decide alike, so a bundle's signatures are checked in batches and the outcome of each is
//! what checking it alone would give. ZIP-215 (Zcash) is what `ed25519-zebra` implements.
//! Where it accepts what the strict check of rules 1 to 3 refuses is listed in SECURITY.md.
//! Tokens, manifests and heads stay strictly verified, one by one.

use ed25519_zebra::{Signature, VerificationKey, VerificationKeyBytes, batch};

/// An Ed25519 signature of a contract left to be checked (in a batch).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ed25519Check {
    pub(crate) key: [u8; 32],
    pub(crate) signature: [u8; 64],
    pub(crate) message: Vec<u8>,
}

impl Ed25519Check {
    /// A check of `signature` over `message` by the key `key` (its 32 bytes).
    pub fn new(key: [u8; 32], signature: [u8; 64], message: Vec<u8>) -> Self {
        Self { key, signature, message }
    }

    /// The signer's key (its 32 bytes).
    pub fn key(&self) -> &[u8; 32] {
        &self.key
    }

    /// Whether it holds under ZIP-215, checked alone.
    pub fn verify_one(&self) -> bool {
        VerificationKey::try_from(self.key)
            .and_then(|key| key.verify(&Signature::from(self.signature), &self.message))
            .is_ok()
    }
}

/// Whether each of `checks` holds under ZIP-215: as one batch, and when the batch fails (one
/// or more do not hold), each one alone, so that the ones that fail are named. The outcome of
/// each is the one [`Ed25519Check::verify_one`] gives.
pub fn verify_batch(checks: &[&Ed25519Check]) -> Vec<bool> {
    let mut batch = batch::Verifier::new();
    for c in checks {
        batch.queue((VerificationKeyBytes::from(c.key), Signature::from(c.signature), &c.message));
    }
    if batch.verify(rand_core::OsRng).is_ok() {
        return vec![true; checks.len()];
    }
    checks.iter().map(|c| c.verify_one()).collect()
}
