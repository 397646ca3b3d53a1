//! Ids of wallets and networks: 32 bytes as 43 characters of unpadded base64url.
//!
//! A wallet id is the RFC 7638 SHA-256 JWK thumbprint of its public key. A network's id is
//! its authority's wallet id (a network of one key), or the hash of its first authority set.
//! Both are checked when they are made from text, so that a value of either type is always a
//! well-formed id, and both read and write as that text.

use std::fmt;
use std::str::FromStr;

use data_encoding::BASE64URL_NOPAD;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Length of a wallet or network id in characters (32 bytes in unpadded base64url).
pub const WALLET_ID_LEN: usize = 43;

/// The 32 bytes of an id in text, if it is one.
fn decode(s: &str) -> Option<[u8; 32]> {
    if s.len() != WALLET_ID_LEN {
        return None;
    }
    let bytes = BASE64URL_NOPAD.decode(s.as_bytes()).ok()?;
    bytes.try_into().ok()
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $invalid:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(String);

        #[doc = concat!("A string that is not ", $what, " id.")]
        #[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
        #[error("'{0}' is not {what} id (43 base64url characters)", what = $what)]
        pub struct $invalid(String);

        /// Text given as an id that is not one: a usage error.
        impl crate::Classify for $invalid {
            fn class(&self) -> crate::ErrorClass {
                crate::ErrorClass::Failed
            }
        }

        impl $name {
            /// The id of these 32 bytes.
            pub fn from_digest(digest: &[u8; 32]) -> Self {
                Self(BASE64URL_NOPAD.encode(digest))
            }

            /// The id as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// Its 32 bytes.
            pub fn to_bytes(&self) -> [u8; 32] {
                // Checked when made, so it decodes.
                decode(&self.0).unwrap_or([0; 32])
            }
        }

        impl FromStr for $name {
            type Err = $invalid;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match decode(s) {
                    Some(_) => Ok(Self(s.to_owned())),
                    None => Err($invalid(crate::text::shown(s))),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let s = String::deserialize(deserializer)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

id_type!(
    /// The id of a wallet: the unpadded base64url SHA-256 JWK thumbprint (RFC 7638) of its
    /// public key, 43 characters.
    WalletId,
    InvalidWalletId,
    "a wallet"
);

id_type!(
    /// The id of a network: its authority's wallet id (a network of one key), or the hash of
    /// its first authority set; contracts' and manifests' `aud`.
    NetworkId,
    InvalidNetworkId,
    "a network"
);

impl From<WalletId> for NetworkId {
    /// A network of one key is named by that key's wallet id.
    fn from(id: WalletId) -> Self {
        Self(id.0)
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
        assert!("../../etc/passwd".parse::<NetworkId>().is_err());
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, "\"NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs\"");
        assert_eq!(serde_json::from_str::<WalletId>(&json).unwrap(), id);
        assert!(serde_json::from_str::<NetworkId>("\"short\"").is_err());
        let network = NetworkId::from(id.clone());
        assert_eq!(network.as_str(), id.as_str());
    }
}
