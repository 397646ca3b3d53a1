//! Trusted keys, and authentication of a decoded token against them.

use std::collections::BTreeMap;
use std::fmt;

use jsonwebtoken::DecodingKey;
use serde_json::Value;
use swarmvm_wallet::{KeyKind, PublicKey, WalletId};
use zeroize::Zeroizing;

use crate::error::{IssueError, Result, VerifyError};
use crate::jws::Decoded;
use crate::kind::{Kind, shorten};

/// Shortest HS256 secret accepted, in bytes (RFC 7518 §3.2: at least the hash size).
pub const HS256_MIN_SECRET: usize = 32;

/// The issuer name HS256 tokens carry when none is given.
pub const DEFAULT_HS256_ISSUER: &str = "hs256";

/// A shared HS256 secret and the issuer name that tokens signed with it carry. For
/// compatibility with the design note only: manifests and contracts never accept it.
#[derive(Clone)]
pub struct Hs256Key {
    secret: Zeroizing<Vec<u8>>,
    issuer: String,
}

impl fmt::Debug for Hs256Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hs256Key").field("issuer", &self.issuer).finish_non_exhaustive()
    }
}

impl Hs256Key {
    /// A key from a secret of at least [`HS256_MIN_SECRET`] bytes.
    pub fn new(secret: &[u8], issuer: impl Into<String>) -> Result<Self, IssueError> {
        if secret.len() < HS256_MIN_SECRET {
            return Err(IssueError::WeakSecret(secret.len()));
        }
        Ok(Self { secret: Zeroizing::new(secret.to_vec()), issuer: issuer.into() })
    }

    /// The issuer name (`iss`).
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    pub(crate) fn secret(&self) -> &[u8] {
        &self.secret
    }
}

#[derive(Clone)]
struct Trusted {
    key: PublicKey,
    /// For RSA keys: RS256 through jsonwebtoken (aws-lc-rs, constant time). Ed25519 keys
    /// verify through [`PublicKey::verify_ed25519_strict`].
    rsa: Option<DecodingKey>,
}

/// The keys a peer trusts to sign, by wallet id; optionally one HS256 secret.
#[derive(Clone, Default)]
pub struct TrustStore {
    keys: BTreeMap<WalletId, Trusted>,
    hs256: Option<Hs256Key>,
}

impl fmt::Debug for TrustStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TrustStore")
            .field("keys", &self.keys.keys().collect::<Vec<_>>())
            .field("hs256", &self.hs256)
            .finish()
    }
}

impl TrustStore {
    /// An empty store, trusting nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// A store trusting the given public keys.
    pub fn with_keys<'a>(keys: impl IntoIterator<Item = &'a PublicKey>) -> Self {
        let mut store = Self::new();
        for key in keys {
            store.add(key.clone());
        }
        store
    }

    /// Trusts `key`. Its type fixes the algorithm its tokens must use.
    pub fn add(&mut self, key: PublicKey) -> WalletId {
        let id = key.id();
        let rsa = match key.kind() {
            KeyKind::Ed25519 => None,
            KeyKind::Rsa { .. } => {
                let (n, e) = key.rsa_components().unwrap_or_default();
                Some(DecodingKey::from_rsa_raw_components(n, e))
            }
        };
        self.keys.insert(id.clone(), Trusted { key, rsa });
        id
    }

    /// Trusts an HS256 shared secret (registration tokens only).
    pub fn set_hs256(&mut self, key: Hs256Key) {
        self.hs256 = Some(key);
    }

    /// The trusted key with this id.
    pub fn get(&self, id: &WalletId) -> Option<&PublicKey> {
        self.keys.get(id).map(|t| &t.key)
    }

    /// The trusted key with this id, given as text.
    pub fn get_str(&self, id: &str) -> Option<&PublicKey> {
        id.parse::<WalletId>().ok().and_then(|id| self.get(&id))
    }

    /// The ids of the trusted keys, in order.
    pub fn ids(&self) -> impl Iterator<Item = &WalletId> {
        self.keys.keys()
    }

    /// True when nothing is trusted.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty() && self.hs256.is_none()
    }

    /// Authenticates a decoded token: finds the signer by `kid` (or by `iss` when there is no
    /// `kid`), pins the algorithm to that key's type, checks the signature, and checks that
    /// `iss` names the signer. Returns the signer's id and the algorithm.
    pub(crate) fn authenticate(
        &self,
        token: &Decoded<'_>,
        kind: Kind,
    ) -> Result<(String, &'static str)> {
        self.authenticate_signature(token, kind, true)
    }

    /// [`TrustStore::authenticate`], except that an Ed25519 signature is not checked here:
    /// it is handed back, to be checked with others in a batch under ZIP-215 rules (rules
    /// 4, contracts only). Every other check is made, an RSA signature's too.
    pub(crate) fn authenticate_deferring(
        &self,
        token: &Decoded<'_>,
        kind: Kind,
    ) -> Result<(String, Option<crate::zip215::Ed25519Check>, Result<String>)> {
        let (signer, iss) = signer_of(token)?;
        let Some(trusted) = signer.parse::<WalletId>().ok().and_then(|id| self.keys.get(&id))
        else {
            // Not a registered wallet: refused as the strict path refuses it.
            return self.authenticate(token, kind).map(|(s, _)| (s.clone(), None, Ok(s)));
        };
        let (Some(key), None) = (trusted.key.ed25519_bytes(), &trusted.rsa) else {
            return self.authenticate(token, kind).map(|(s, _)| (s.clone(), None, Ok(s)));
        };
        let expected = trusted.key.kind().jws_algorithm();
        if token.alg != expected {
            return Err(VerifyError::AlgorithmMismatch { found: token.alg.clone(), expected });
        }
        let signature = decode_signature(token.signature).ok_or_else(|| {
            VerifyError::Malformed(
                "signature is not unpadded base64url or has the wrong length".into(),
            )
        })?;
        // As the strict path does, `iss` is judged after the signature: its result is kept
        // for when the signature holds.
        let issuer = issuer_is(signer, iss, true);
        let check = crate::zip215::Ed25519Check {
            key: *key,
            signature,
            message: token.signing_input.as_bytes().to_vec(),
        };
        Ok((signer.to_owned(), Some(check), issuer))
    }

    /// Checks that `signer` (a trusted wallet id) made `signature` (unpadded base64url) over
    /// `input`, with the algorithm its key's type fixes: for signatures that are not JWS
    /// tokens (messages between authority replicas).
    pub(crate) fn verify_detached(
        &self,
        signer: &str,
        signature: &str,
        input: &[u8],
    ) -> Result<()> {
        let trusted = signer
            .parse::<WalletId>()
            .ok()
            .and_then(|id| self.keys.get(&id))
            .ok_or_else(|| VerifyError::UnknownKid(shorten(signer)))?;
        let how = match &trusted.rsa {
            None => Check::Ed25519(&trusted.key),
            Some(k) => Check::Rsa(k),
        };
        match how.verify(signature, input) {
            Some(true) => Ok(()),
            Some(false) => Err(VerifyError::BadSignature(shorten(signer))),
            None => Err(VerifyError::Malformed(
                "signature is not unpadded base64url or has the wrong length".into(),
            )),
        }
    }

    /// [`TrustStore::authenticate`]; with `iss_is_signer` false, `iss` may name another
    /// signer (one signature of several over a manifest), and the caller checks it.
    pub(crate) fn authenticate_signature(
        &self,
        token: &Decoded<'_>,
        kind: Kind,
        iss_is_signer: bool,
    ) -> Result<(String, &'static str)> {
        let (signer, iss) = signer_of(token)?;
        let by_kid = token.kid.is_some();
        let wallet = signer.parse::<WalletId>().ok().and_then(|id| self.keys.get(&id));
        let hs256;
        let trusted = match (wallet, &self.hs256) {
            (Some(t), _) => t,
            (None, Some(h)) if h.issuer == signer => {
                if !kind.is_registration() {
                    return Err(VerifyError::Hs256NotAllowed(kind));
                }
                hs256 = DecodingKey::from_secret(h.secret());
                return check(token, Check::Hmac(&hs256), "HS256", signer, iss, true);
            }
            (None, _) if by_kid => return Err(VerifyError::UnknownKid(shorten(signer))),
            (None, _) => return Err(VerifyError::UnknownIssuer(shorten(signer))),
        };
        let how = match &trusted.rsa {
            None => Check::Ed25519(&trusted.key),
            Some(k) => Check::Rsa(k),
        };
        check(token, how, trusted.key.kind().jws_algorithm(), signer, iss, iss_is_signer)
    }
}

/// The signer a token names (its `kid`, else its `iss`) and its `iss`.
fn signer_of<'t>(token: &'t Decoded<'_>) -> Result<(&'t str, Option<&'t str>)> {
    let iss = match token.claims.get("iss") {
        None => None,
        Some(Value::String(s)) => Some(s.as_str()),
        Some(_) => {
            return Err(VerifyError::InvalidClaim {
                claim: "iss".into(),
                reason: "not a string".into(),
            });
        }
    };
    match (&token.kid, iss) {
        (Some(kid), _) => Ok((kid.as_str(), iss)),
        (None, Some(iss)) => Ok((iss, Some(iss))),
        (None, None) => Err(VerifyError::NoSigner),
    }
}

/// A 64-byte signature from its unpadded base64url text (exactly 86 characters).
fn decode_signature(signature: &str) -> Option<[u8; 64]> {
    use base64::Engine as _;
    if signature.len() != 86 {
        return None;
    }
    let mut raw = [0u8; 66];
    let n =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.decode_slice(signature, &mut raw).ok()?;
    (n == 64).then(|| {
        let mut out = [0u8; 64];
        out.copy_from_slice(&raw[..64]);
        out
    })
}

/// The signer, once `iss` is checked against it (`iss_is_signer`: it must name it).
fn issuer_is(signer: &str, iss: Option<&str>, iss_is_signer: bool) -> Result<String> {
    match iss {
        Some(iss) if iss == signer || !iss_is_signer => Ok(signer.to_owned()),
        Some(iss) => {
            Err(VerifyError::IssuerMismatch { signer: shorten(signer), iss: shorten(iss) })
        }
        None => Err(VerifyError::MissingClaim("iss")),
    }
}

/// One signature check to make.
enum Check<'k> {
    /// Strict Ed25519 (RFC 8032 with canonical `S`, no small-order `R` or key): the check the
    /// JOSE library's backend makes is not documented to be that strict.
    Ed25519(&'k PublicKey),
    Rsa(&'k DecodingKey),
    Hmac(&'k DecodingKey),
}

impl Check<'_> {
    /// Whether `signature` (base64url, unpadded) signs `input`; `None` when it is not such
    /// text or has the wrong length.
    fn verify(&self, signature: &str, input: &[u8]) -> Option<bool> {
        match self {
            Self::Ed25519(key) => {
                // 64 bytes are exactly 86 characters; decoded on the stack.
                decode_signature(signature).map(|raw| key.verify_ed25519_strict(input, &raw))
            }
            Self::Rsa(key) => {
                jsonwebtoken::crypto::verify(signature, input, key, jsonwebtoken::Algorithm::RS256)
                    .ok()
            }
            Self::Hmac(key) => {
                jsonwebtoken::crypto::verify(signature, input, key, jsonwebtoken::Algorithm::HS256)
                    .ok()
            }
        }
    }
}

fn check(
    token: &Decoded<'_>,
    how: Check<'_>,
    expected: &'static str,
    signer: &str,
    iss: Option<&str>,
    iss_is_signer: bool,
) -> Result<(String, &'static str)> {
    if token.alg != expected {
        return Err(VerifyError::AlgorithmMismatch { found: token.alg.clone(), expected });
    }
    match how.verify(token.signature, token.signing_input.as_bytes()) {
        Some(true) => {}
        Some(false) => return Err(VerifyError::BadSignature(shorten(signer))),
        None => {
            return Err(VerifyError::Malformed(
                "signature is not unpadded base64url or has the wrong length".into(),
            ));
        }
    }
    issuer_is(signer, iss, iss_is_signer).map(|s| (s, expected))
}
