//! SHA-256 digests, and the identity of a bundle.

use std::fmt;
use std::str::FromStr;

use data_encoding::HEXLOWER;
use sha2::{Digest as _, Sha256};

/// A SHA-256 digest. Displays, serializes and parses as 64 lowercase hex characters.
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
        HEXLOWER.encode(&self.0)
    }

    /// The digest from exactly 32 bytes.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, InvalidHash> {
        bytes.try_into().map(Self).map_err(|_| InvalidHash)
    }
}

impl fmt::Display for Hash32 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Hash32 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash32({self})")
    }
}

/// Text that is not 64 lowercase hex characters.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a sha-256 hash (64 lowercase hex characters)")]
pub struct InvalidHash;

impl FromStr for Hash32 {
    type Err = InvalidHash;

    /// Exactly 64 lowercase hex characters: one text per hash, so hashes compare as text too.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() != 64 {
            return Err(InvalidHash);
        }
        let bytes = HEXLOWER.decode(s.as_bytes()).map_err(|_| InvalidHash)?;
        Self::from_slice(&bytes)
    }
}

impl serde::Serialize for Hash32 {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> serde::Deserialize<'de> for Hash32 {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// A bundle's identity: the SHA-256 of its manifest's JWS payload bytes, the claims that every
/// signature covers. Re-encoding the manifest file or adding a signature does not change it;
/// `parent`, heads, fork evidence and every "same bundle?" question use it.
#[derive(
    Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct BundleId(pub Hash32);

impl BundleId {
    /// The identity of the manifest whose decoded JWS payload is `payload`.
    pub fn of_payload(payload: &[u8]) -> Self {
        Self(Hash32::digest(payload))
    }

    /// The hash itself.
    pub fn hash(&self) -> Hash32 {
        self.0
    }
}

impl fmt::Display for BundleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Debug for BundleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BundleId({})", self.0)
    }
}

impl FromStr for BundleId {
    type Err = InvalidHash;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse().map(Self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_is_one_lowercase_text_per_hash() {
        let h = Hash32::digest(b"abc");
        assert_eq!(h.to_hex(), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert_eq!(h.to_hex().parse::<Hash32>().unwrap(), h);
        assert!(h.to_hex().to_uppercase().parse::<Hash32>().is_err(), "uppercase is another text");
        assert!("xyz".parse::<Hash32>().is_err());
        assert!("g".repeat(64).parse::<Hash32>().is_err());
        assert!(format!("{h}0").parse::<Hash32>().is_err());
    }

    #[test]
    fn serde_uses_the_hex_text() {
        let id = BundleId::of_payload(b"{}");
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, format!("\"{id}\""));
        assert_eq!(serde_json::from_str::<BundleId>(&json).unwrap(), id);
        assert!(serde_json::from_str::<BundleId>("\"00\"").is_err());
    }
}
