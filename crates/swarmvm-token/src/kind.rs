//! The kinds of signed object, each with its own explicit `typ` (RFC 8725 §3.11).

use std::fmt;

use serde_json::{Map, Value};

use crate::error::{Result, VerifyError};

/// A kind of signed object. One kind is never accepted in place of another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// An authority's registration of operations (action → handler).
    Operations,
    /// An authority's registration of wallets (public keys).
    Wallets,
    /// A wallet's signed contract.
    Contract,
    /// An authority's bundle manifest.
    Manifest,
    /// The sequencer's signed head: the newest bundle and the state root after it.
    Head,
}

impl Kind {
    /// Every kind.
    pub const ALL: [Self; 5] =
        [Self::Operations, Self::Wallets, Self::Contract, Self::Manifest, Self::Head];

    /// The JWS `typ` header this kind is issued with.
    pub fn typ(self) -> &'static str {
        match self {
            Self::Operations => "swarmvm-operations+jwt",
            Self::Wallets => "swarmvm-wallets+jwt",
            Self::Contract => "swarmvm-contract+jwt",
            Self::Manifest => "swarmvm-manifest+jwt",
            Self::Head => "swarmvm-head+jwt",
        }
    }

    /// The claim whose presence marks this kind.
    pub fn marker_claim(self) -> &'static str {
        match self {
            Self::Operations => "operations",
            Self::Wallets => "wallets",
            Self::Contract => "actions",
            Self::Manifest => "files",
            Self::Head => "state_root",
        }
    }

    /// True for the kinds an authority signs with registration time rules (`exp`, `nbf`).
    pub fn is_registration(self) -> bool {
        matches!(self, Self::Operations | Self::Wallets)
    }

    /// The kind whose content the claims hold.
    pub(crate) fn of_claims(claims: &Map<String, Value>) -> Result<Self> {
        let mut found = Self::ALL.into_iter().filter(|k| claims.contains_key(k.marker_claim()));
        match (found.next(), found.next()) {
            (Some(kind), None) => Ok(kind),
            (Some(a), Some(b)) => Err(VerifyError::AmbiguousKind(a, b)),
            (None, _) => Err(VerifyError::NoKind),
        }
    }

    /// Decides the kind from the header's `typ` and the claims: a `typ` of ours must name the
    /// kind the claims hold; `typ` absent or `JWT` (other JWT libraries) leaves it to the claims.
    pub(crate) fn resolve(typ: Option<&str>, claims: &Map<String, Value>) -> Result<Self> {
        let from_claims = Self::of_claims(claims)?;
        let Some(typ) = typ else { return Ok(from_claims) };
        // RFC 7515 §4.1.9: media types compare case-insensitively; "application/" may be omitted.
        let lower = typ.to_ascii_lowercase();
        let bare = lower.strip_prefix("application/").unwrap_or(&lower);
        if bare == "jwt" {
            return Ok(from_claims);
        }
        match Self::ALL.into_iter().find(|k| k.typ() == bare) {
            Some(kind) if kind == from_claims => Ok(kind),
            Some(_) => Err(VerifyError::TypMismatch { typ: shorten(typ), claims: from_claims }),
            None => Err(VerifyError::UnknownTyp(shorten(typ))),
        }
    }
}

/// Cuts attacker-supplied text to a length fit for a one-line message, escaping control and
/// format characters.
pub(crate) use swarmvm_primitives::text::shown as shorten;

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Operations => "operations",
            Self::Wallets => "wallets",
            Self::Contract => "contract",
            Self::Manifest => "manifest",
            Self::Head => "head",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn typ_absent_or_jwt_defers_to_claims() {
        let ops = claims(json!({"operations": {}}));
        for typ in [None, Some("JWT"), Some("jwt"), Some("application/jwt")] {
            assert_eq!(Kind::resolve(typ, &ops).unwrap(), Kind::Operations);
        }
    }

    #[test]
    fn typ_of_another_kind_is_refused() {
        let ops = claims(json!({"operations": {}}));
        let err = Kind::resolve(Some("swarmvm-wallets+jwt"), &ops).unwrap_err();
        assert!(matches!(err, VerifyError::TypMismatch { claims: Kind::Operations, .. }));
        assert!(matches!(Kind::resolve(Some("at+jwt"), &ops), Err(VerifyError::UnknownTyp(_))));
    }

    #[test]
    fn claims_of_two_kinds_are_refused() {
        let both = claims(json!({"operations": {}, "wallets": []}));
        assert!(matches!(Kind::resolve(None, &both), Err(VerifyError::AmbiguousKind(..))));
        assert!(matches!(Kind::resolve(None, &claims(json!({"x": 1}))), Err(VerifyError::NoKind)));
    }
}
