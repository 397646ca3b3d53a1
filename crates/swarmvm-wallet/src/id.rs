//! Wallet ids: RFC 7638 JWK thumbprints.

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The id of a wallet: the unpadded base64url SHA-256 JWK thumbprint (RFC 7638) of its public
/// key, 43 characters. A network's id is its authority's wallet id.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WalletId(String);

/// Length of a wallet id in characters (32 bytes in unpadded base64url).
pub const WALLET_ID_LEN: usize = 43;

impl WalletId {
    pub(crate) fn from_digest(digest: &[u8]) -> Self {
        Self(URL_SAFE_NO_PAD.encode(digest))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The 32 bytes of the thumbprint.
    pub fn to_bytes(&self) -> [u8; 32] {
        let mut out = [0u8; 32];
        // Validated on construction, so decoding cannot fail.
        let _ = URL_SAFE_NO_PAD.decode_slice(&self.0, &mut out);
        out
    }
}

/// A string that is not a wallet id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{0}' is not a wallet id (43 base64url characters)")]
pub struct InvalidWalletId(String);

/// Text given as a wallet id (on the command line, in a file) that is not one: a usage error.
impl swarmvm_primitives::Classify for InvalidWalletId {
    fn class(&self) -> swarmvm_primitives::ErrorClass {
        swarmvm_primitives::ErrorClass::Failed
    }
}

impl FromStr for WalletId {
    type Err = InvalidWalletId;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = [0u8; 32];
        let shown = crate::error::shown(s);
        if s.len() != WALLET_ID_LEN {
            return Err(InvalidWalletId(shown));
        }
        match URL_SAFE_NO_PAD.decode_slice(s, &mut out) {
            Ok(32) => Ok(Self(s.to_owned())),
            _ => Err(InvalidWalletId(shown)),
        }
    }
}

impl fmt::Display for WalletId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for WalletId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WalletId({})", self.0)
    }
}

impl AsRef<str> for WalletId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl Serialize for WalletId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for WalletId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_accepts_only_43_char_base64url() {
        let id: WalletId = "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs".parse().unwrap();
        assert_eq!(id.to_string().len(), WALLET_ID_LEN);
        assert_eq!(WalletId::from_digest(&id.to_bytes()), id);
        assert!("NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9X".parse::<WalletId>().is_err());
        assert!("NzbLsXh8uDCcd+6MNwXF4W_7noWXFZAfHkxZsRGC9Xs".parse::<WalletId>().is_err());
        assert!("../../etc/passwd".parse::<WalletId>().is_err());
    }
}
