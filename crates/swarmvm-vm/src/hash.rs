//! Leaf hashing with RFC 6962's domain separation. [`Hash32`] itself is shared by every
//! crate (`swarmvm-primitives`).

use sha2::{Digest as _, Sha256};
pub use swarmvm_primitives::{Hash32, InvalidHash};

/// Domain-separation prefix of leaf hashes (RFC 6962 §2.1).
pub const LEAF_PREFIX: u8 = 0x00;
/// Domain-separation prefix of interior (trie node) hashes (RFC 6962 §2.1).
pub const NODE_PREFIX: u8 = 0x01;
/// Domain-separation prefix of the hashes joining a node's children in pairs (rules 3).
pub const SPLIT_PREFIX: u8 = 0x02;

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
}
