//! 32-byte hashes, and leaf hashing with RFC 6962's domain separation.

use std::fmt;
use std::str::FromStr;

use sha2::{Digest as _, Sha256};

/// A SHA-256 digest. Displays as 64 lowercase hex characters.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Hash32(pub [u8; 32]);

impl Hash32 {
    /// SHA-256 of `bytes`.
    pub fn digest(bytes: &[u8]) -> Self {
        Self(Sha256::digest(bytes).into())
    }

    /// The digest's bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Lowercase hex.
    pub fn to_hex(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for Hash32 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Hash32 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash32({self})")
    }
}

/// Text that is not 64 hex characters.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a sha-256 hash (64 hex characters)")]
pub struct InvalidHash;

impl FromStr for Hash32 {
    type Err = InvalidHash;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bytes = s.as_bytes();
        if bytes.len() != 64 {
            return Err(InvalidHash);
        }
        let mut out = [0u8; 32];
        for (i, pair) in bytes.chunks_exact(2).enumerate() {
            let hex = |c: u8| (c as char).to_digit(16).ok_or(InvalidHash);
            out[i] = u8::try_from(hex(pair[0])? * 16 + hex(pair[1])?).map_err(|_| InvalidHash)?;
        }
        Ok(Self(out))
    }
}

/// Domain-separation prefix of leaf hashes (RFC 6962 §2.1).
pub const LEAF_PREFIX: u8 = 0x00;
/// Domain-separation prefix of interior (trie node) hashes (RFC 6962 §2.1).
pub const NODE_PREFIX: u8 = 0x01;

/// The leaf hash of one encoded entry: SHA-256(0x00 || entry).
pub fn leaf_hash(entry: &[u8]) -> Hash32 {
    let mut h = Sha256::new();
    h.update([LEAF_PREFIX]);
    h.update(entry);
    Hash32(h.finalize().into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc6962_empty_and_single_leaf() {
        assert_eq!(
            Hash32::digest(&[]).to_hex(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        // The leaf hash of the empty entry, as in the Certificate Transparency test vectors.
        assert_eq!(
            leaf_hash(&[]).to_hex(),
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
        );
    }

    #[test]
    fn hex_round_trips() {
        let h = Hash32::digest(b"abc");
        assert_eq!(h.to_hex().parse::<Hash32>().unwrap(), h);
        assert!("xyz".parse::<Hash32>().is_err());
        assert!("G".repeat(64).parse::<Hash32>().is_err());
    }
}
