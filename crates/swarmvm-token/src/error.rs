//! Errors of verification and issuing.

use swarmvm_primitives::{Classify, ErrorClass};
use swarmvm_wallet::KeyError;

use crate::kind::Kind;

/// Why a token was refused. Every variant names the rule that failed; messages are one line
/// and never contain key material.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// The token is over the size limit.
    #[error("token is {size} bytes; at most {max} are accepted")]
    TooLarge {
        /// The token's length in bytes.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// Not a JWS compact serialization.
    #[error("malformed token: {0}")]
    Malformed(String),
    /// A part that is not strict JSON (including duplicated member names).
    #[error("malformed token {part}: {reason}")]
    InvalidJson {
        /// `header` or `payload`.
        part: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// `alg` is `none`: unsigned tokens are never accepted.
    #[error("unsigned token (alg 'none') refused")]
    AlgNone,
    /// The header's `alg` is not the one the trusted key signs with.
    #[error("algorithm mismatch: token says '{found}' but the trusted key signs with {expected}")]
    AlgorithmMismatch {
        /// What the token's header says.
        found: String,
        /// What the key's type fixes.
        expected: &'static str,
    },
    /// A header member that we refuse (`crit`, `jwk`, `jku`, `x5u`, `x5c`, `b64`, `zip`, `enc`, nested `cty`).
    #[error("header member '{member}' refused: {reason}")]
    UnsupportedHeader {
        /// The member's name.
        member: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// `kid` names no trusted key.
    #[error("unknown kid '{0}': not among the trusted keys")]
    UnknownKid(String),
    /// `iss` names no trusted key (and there is no `kid`).
    #[error("unknown issuer '{0}': not among the trusted keys")]
    UnknownIssuer(String),
    /// Neither `kid` nor `iss` says who signed.
    #[error("token names no signer: both 'kid' and 'iss' are missing")]
    NoSigner,
    /// `iss` is not the key that signed.
    #[error("issuer mismatch: signed by '{signer}' but 'iss' is '{iss}'")]
    IssuerMismatch {
        /// The signing key's id (the `kid`).
        signer: String,
        /// The `iss` claim.
        iss: String,
    },
    /// The signature does not verify with the trusted key.
    #[error("bad signature: the token was not signed by trusted key '{0}' or was altered")]
    BadSignature(String),
    /// An HS256 token where only public-key signatures are allowed.
    #[error("{0} tokens must be signed with a wallet key; hs256 is refused")]
    Hs256NotAllowed(Kind),
    /// `exp` is in the past.
    #[error("token expired at {at} (checked at {now})", at = fmt_time(*.exp), now = fmt_time(*.now))]
    Expired {
        /// The `exp` claim.
        exp: u64,
        /// The time it was checked against.
        now: u64,
    },
    /// `nbf` is in the future.
    #[error("token not valid before {at} (checked at {now})", at = fmt_time(*.nbf), now = fmt_time(*.now))]
    NotYetValid {
        /// The `nbf` claim.
        nbf: u64,
        /// The time it was checked against.
        now: u64,
    },
    /// `iat` is in the future.
    #[error("token issued in the future, at {at} (checked at {now})", at = fmt_time(*.iat), now = fmt_time(*.now))]
    IssuedInFuture {
        /// The `iat` claim.
        iat: u64,
        /// The time it was checked against.
        now: u64,
    },
    /// `exp` further away than any token we issue may live.
    #[error(
        "token expires at {at}, later than 10 years after it was issued or checked (at most {max})",
        at = fmt_time(*.exp), max = fmt_time(*.limit)
    )]
    LivesTooLong {
        /// The `exp` claim.
        exp: u64,
        /// The latest `exp` accepted.
        limit: u64,
    },
    /// A required claim is absent.
    #[error("missing claim '{0}'")]
    MissingClaim(&'static str),
    /// A claim of the wrong type or value.
    #[error("invalid claim '{claim}': {reason}")]
    InvalidClaim {
        /// The claim's name (or path inside it).
        claim: String,
        /// What is wrong.
        reason: String,
    },
    /// `typ` names a different kind than the claims hold.
    #[error("typ '{typ}' does not match the claims, which are a {claims} token")]
    TypMismatch {
        /// The header's `typ`.
        typ: String,
        /// The kind the claims hold.
        claims: Kind,
    },
    /// `typ` is not one we know.
    #[error("unknown typ '{0}'")]
    UnknownTyp(String),
    /// The claims hold more than one kind of content.
    #[error("claims hold both {0} and {1} content; a token has exactly one kind")]
    AmbiguousKind(Kind, Kind),
    /// The claims hold no known kind of content.
    #[error("claims hold none of 'operations', 'wallets', 'actions', 'files' or 'state_root'")]
    NoKind,
    /// A contract signed for another network.
    #[error("contract is for network '{aud}', not this network '{network}'")]
    AudienceMismatch {
        /// The contract's `aud`.
        aud: String,
        /// This network's id.
        network: String,
    },
    /// A manifest for another network (`aud`).
    #[error("manifest is for network '{aud}', not this network '{network}'")]
    ManifestAudience {
        /// The manifest's `aud`.
        aud: String,
        /// This network's id.
        network: String,
    },
    /// A manifest signature by a key outside the authority set in force.
    #[error("signer '{0}' is not a member of the authority set in force")]
    NotAMember(String),
    /// Two signatures by one key.
    #[error("signer '{0}' signs more than once; each member counts once")]
    DuplicateSigner(String),
    /// Fewer distinct members signed than the threshold.
    #[error("signed by {have} member(s) of the authority set; {need} of {of} are required")]
    ThresholdNotMet {
        /// Distinct members that signed.
        have: usize,
        /// The threshold.
        need: usize,
        /// Members in the set.
        of: usize,
    },
    /// A valid token of a kind that is not accepted here.
    #[error("a {found} token is not accepted here; expected {expected}")]
    WrongKind {
        /// The token's kind.
        found: Kind,
        /// What was expected.
        expected: String,
    },
    /// Private key material inside a token.
    #[error("token contains private key material ({0}); only public keys may be published")]
    PrivateKeyMaterial(String),
    /// An operation bound to a handler the VM catalogue does not have.
    #[error("unknown handler '{handler}' for action '{action}'; known handlers: {known}")]
    UnknownHandler {
        /// The action name.
        action: String,
        /// The handler it names.
        handler: String,
        /// The catalogue's handlers, comma-separated.
        known: String,
    },
    /// A wallet entry whose key cannot be used.
    #[error("wallet entry {index}: {reason}")]
    WalletKey {
        /// Position in the `wallets` list (0-based).
        index: usize,
        /// Why the key was refused (part of the message, so not also a source).
        reason: KeyError,
    },
}

/// Why a token could not be issued.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IssueError {
    /// The content breaks a rule that verification would enforce.
    #[error(transparent)]
    Invalid(#[from] VerifyError),
    /// An HS256 secret shorter than 32 bytes.
    #[error("hs256 secret is {0} bytes; at least 32 are required")]
    WeakSecret(usize),
    /// The signing backend failed.
    #[error("signing failed: {0}")]
    Signing(String),
    /// The issued token would exceed the size limit.
    #[error("token would be {size} bytes; at most {max} are accepted")]
    TooLarge {
        /// Its size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// A time-to-live out of range.
    #[error("ttl of {0} s is out of range (1 s to 10 years)")]
    BadTtl(u64),
}

/// Every verification error is a refusal of the token.
impl Classify for VerifyError {
    fn class(&self) -> ErrorClass {
        ErrorClass::Refused
    }
}

/// Content that breaks a rule (of verification, or a weak secret) is refused; a signing
/// backend failure, an oversized result or a time-to-live out of range is a failure.
impl Classify for IssueError {
    fn class(&self) -> ErrorClass {
        match self {
            Self::Invalid(e) => e.class(),
            Self::WeakSecret(_) => ErrorClass::Refused,
            Self::Signing(_) | Self::TooLarge { .. } | Self::BadTtl(_) => ErrorClass::Failed,
        }
    }
}

/// Formats Unix seconds as RFC 3339 UTC.
pub(crate) fn fmt_time(secs: u64) -> String {
    let time = std::time::UNIX_EPOCH.checked_add(std::time::Duration::from_secs(secs));
    match time {
        Some(t) if secs < 253_402_300_800 => humantime::format_rfc3339_seconds(t).to_string(),
        _ => format!("{secs} (unix seconds)"),
    }
}

/// `Result` with [`VerifyError`] as the default error.
pub type Result<T, E = VerifyError> = core::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verification_refuses_and_issuing_fails_unless_a_rule_refused() {
        assert_eq!(VerifyError::AlgNone.class(), ErrorClass::Refused);
        assert_eq!(IssueError::Invalid(VerifyError::NoKind).class(), ErrorClass::Refused);
        assert_eq!(IssueError::WeakSecret(3).class(), ErrorClass::Refused);
        assert_eq!(IssueError::Signing("x".into()).class(), ErrorClass::Failed);
        assert_eq!(IssueError::TooLarge { size: 2, max: 1 }.class(), ErrorClass::Failed);
        assert_eq!(IssueError::BadTtl(0).class(), ErrorClass::Failed);
    }
}
