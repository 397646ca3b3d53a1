//! Signed contracts: a wallet's `{actions, nonce, aud}` as a JWS (`typ`
//! `swarmvm-contract+jwt`), bound to one network by `aud`.

use serde::Serialize;
use serde_json::{Map, Value};
use swarmvm_wallet::Wallet;

use crate::error::{IssueError, Result, VerifyError};
use crate::jws::{Decoded, Signer, sign};
use crate::kind::{Kind, shorten};
use crate::time::numeric_date;
use crate::trust::TrustStore;

/// Largest nonce: 2^53 − 1, exact in every JSON implementation.
pub const MAX_CONTRACT_NONCE: u64 = (1 << 53) - 1;

/// A contract whose signature, signer and network were verified.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedContract {
    /// The signing wallet's id (`iss`, the `kid`'s key).
    pub signer: String,
    /// The network it was signed for (`aud`).
    pub network: String,
    /// Its nonce.
    pub nonce: u64,
    /// The note's action list, not yet validated (the VM does that).
    pub actions: Vec<Value>,
    /// `iat`, when present.
    pub issued_at: Option<u64>,
}

#[derive(Serialize)]
struct ContractClaims<'a> {
    iss: String,
    aud: &'a str,
    iat: u64,
    nonce: u64,
    actions: &'a [Value],
}

/// Signs `actions` by `wallet` for the network `network` (its authority's id) with `nonce`.
pub fn sign_contract(
    wallet: &Wallet,
    network: &str,
    nonce: u64,
    actions: &[Value],
    now: u64,
) -> Result<String, IssueError> {
    if !(1..=MAX_CONTRACT_NONCE).contains(&nonce) {
        return Err(VerifyError::InvalidClaim {
            claim: "nonce".into(),
            reason: format!("{nonce} is out of range (1 to 2^53-1)"),
        }
        .into());
    }
    let claims =
        ContractClaims { iss: wallet.id().to_string(), aud: network, iat: now, nonce, actions };
    sign(&Signer::Wallet(wallet), Kind::Contract, &claims)
}

/// The wallet id a contract token names as its signer (`kid`, else `iss`), read without
/// verifying anything, to look its key up; `None` when the token cannot be read so far.
pub fn contract_signer(token: &str) -> Option<String> {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut parts = token.splitn(3, '.');
    let field = |part: Option<&str>, name: &str| -> Option<String> {
        let bytes = b64.decode(part?).ok()?;
        let value: Value = serde_json::from_slice(&bytes).ok()?;
        value.get(name)?.as_str().map(str::to_owned)
    };
    let header = parts.next();
    field(header, "kid").or_else(|| field(parts.next(), "iss"))
}

/// What a contract says of itself, read by [`peek_contract`] without checking its signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContractPeek {
    /// The network it is signed for (`aud`), as written (not shortened or escaped).
    pub network: String,
    /// The wallet it names as its signer (`kid`, else `iss`), if it names one.
    pub signer: Option<String>,
}

/// Reads a signed contract's network and signer without checking its signature, with the
/// parsing and the checks [`verify_contract`] makes before it needs the signer's key: a strict
/// compact JWS (size, encoding, strict JSON, no refused header member, no `alg: none`, no
/// private key material), of the contract kind as `typ` and the claims decide it
/// ([`VerifyError::WrongKind`], [`VerifyError::TypMismatch`], [`VerifyError::UnknownTyp`]
/// otherwise), with a string `aud`. For a node that checks a submission's form and network
/// before it forwards it; nothing read here is trusted until [`verify_contract`] verified it.
pub fn peek_contract(token: &str) -> Result<ContractPeek> {
    let decoded = Decoded::parse(token)?;
    contract_kind(&decoded)?;
    let network = audience(&decoded.claims)?.to_owned();
    let signer = decoded
        .kid
        .clone()
        .or_else(|| decoded.claims.get("iss").and_then(Value::as_str).map(str::to_owned));
    Ok(ContractPeek { network, signer })
}

/// The kind of a parsed token, which must be a contract.
fn contract_kind(decoded: &Decoded<'_>) -> Result<Kind> {
    let kind = Kind::resolve(decoded.typ.as_deref(), &decoded.claims)?;
    if kind != Kind::Contract {
        return Err(VerifyError::WrongKind { found: kind, expected: "a contract".into() });
    }
    Ok(kind)
}

/// A contract's `aud`: present, and a string.
fn audience(claims: &Map<String, Value>) -> Result<&str> {
    match claims.get("aud") {
        Some(Value::String(aud)) => Ok(aud.as_str()),
        Some(_) => {
            Err(VerifyError::InvalidClaim { claim: "aud".into(), reason: "not a string".into() })
        }
        None => Err(VerifyError::MissingClaim("aud")),
    }
}

/// Verifies a signed contract: strict parsing, a `contract` kind, a signer among `signers`
/// (the registered wallets) with its key's algorithm, its signature (Ed25519 strictly, as
/// rules 1 to 3 check it), `iss` naming it, and `aud` equal to `network`. HS256 is refused.
pub fn verify_contract(
    token: &str,
    signers: &TrustStore,
    network: &str,
) -> Result<VerifiedContract> {
    let decoded = Decoded::parse(token)?;
    let kind = contract_kind(&decoded)?;
    let (signer, _alg) = signers.authenticate(&decoded, kind)?;
    contract_claims(&decoded, signer, network)
}

/// A contract verified but for its Ed25519 signature, which is left to a batch (rules 4).
#[derive(Debug)]
pub struct PendingContract {
    /// The signer the token names (its `kid`, else its `iss`).
    signer: String,
    /// The contract, or what its `iss` and claims were refused for: reported only once the
    /// signature holds, so a token refused twice is refused for its signature, as under the
    /// strict check.
    contract: Result<VerifiedContract>,
    signature: Option<crate::zip215::Ed25519Check>,
}

impl PendingContract {
    /// The Ed25519 signature still to check; `None` when the signature was checked already
    /// (an RSA wallet's).
    pub fn signature(&self) -> Option<&crate::zip215::Ed25519Check> {
        self.signature.as_ref()
    }

    /// The contract, once its signature is known to hold (`holds`), or the refusal a bad
    /// signature gets.
    pub fn finish(self, holds: bool) -> Result<VerifiedContract> {
        if self.signature.is_some() && !holds {
            return Err(VerifyError::BadSignature(shorten(&self.signer)));
        }
        self.contract
    }
}

/// [`verify_contract`] as rules 4 verify contracts: everything but an Ed25519 signature,
/// which the caller checks under ZIP-215, in a batch with others
/// ([`crate::zip215::verify_batch`]), then hands to [`PendingContract::finish`].
pub fn prepare_contract(
    token: &str,
    signers: &TrustStore,
    network: &str,
) -> Result<PendingContract> {
    let decoded = Decoded::parse(token)?;
    let kind = contract_kind(&decoded)?;
    let (signer, signature, issuer) = signers.authenticate_deferring(&decoded, kind)?;
    let contract = issuer.and_then(|s| contract_claims(&decoded, s, network));
    Ok(PendingContract { signer, contract, signature })
}

/// A contract's claims once its signer is known: `aud`, `nonce`, `actions`, `iat`.
fn contract_claims(
    decoded: &Decoded<'_>,
    signer: String,
    network: &str,
) -> Result<VerifiedContract> {
    let claims = &decoded.claims;
    let aud = audience(claims)?;
    if aud != network {
        return Err(VerifyError::AudienceMismatch { aud: shorten(aud), network: shorten(network) });
    }
    let nonce = match claims.get("nonce") {
        Some(v) => {
            v.as_u64().filter(|n| (1..=MAX_CONTRACT_NONCE).contains(n)).ok_or_else(|| {
                VerifyError::InvalidClaim {
                    claim: "nonce".into(),
                    reason: "not an integer from 1 to 2^53-1".into(),
                }
            })?
        }
        None => return Err(VerifyError::MissingClaim("nonce")),
    };
    let actions = match claims.get("actions") {
        Some(Value::Array(a)) => a.clone(),
        Some(_) => {
            return Err(VerifyError::InvalidClaim {
                claim: "actions".into(),
                reason: "not a list".into(),
            });
        }
        None => return Err(VerifyError::MissingClaim("actions")),
    };
    let issued_at = numeric_date(claims, "iat")?;
    Ok(VerifiedContract { signer, network: network.to_owned(), nonce, actions, issued_at })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use swarmvm_wallet::Algorithm;

    #[test]
    fn contract_round_trip_and_network_binding() {
        let w = Wallet::generate(Algorithm::Ed25519).unwrap();
        let actions = vec![
            json!({"action": "add_course", "course": {"id": "C1", "name": "n", "department": "d"}}),
        ];
        let token = sign_contract(&w, "net-A", 7, &actions, 1_000).unwrap();
        let signers = TrustStore::with_keys([w.public_key()]);
        let c = verify_contract(&token, &signers, "net-A").unwrap();
        assert_eq!((c.signer.as_str(), c.nonce, c.issued_at), (w.id().as_str(), 7, Some(1_000)));
        assert_eq!(c.actions, actions);
        let err = verify_contract(&token, &signers, "net-B").unwrap_err();
        assert!(matches!(err, VerifyError::AudienceMismatch { .. }), "{err}");
        let err = verify_contract(&token, &TrustStore::new(), "net-A").unwrap_err();
        assert!(matches!(err, VerifyError::UnknownKid(_)), "{err}");
        assert!(sign_contract(&w, "net-A", 0, &actions, 1).is_err());
        assert!(sign_contract(&w, "net-A", 1 << 53, &actions, 1).is_err());
    }

    /// A compact token of `header` and `payload` (JSON text) with a signature that is not one.
    fn unsigned(header: &str, payload: &str) -> String {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        format!("{}.{}.c2ln", b64.encode(header), b64.encode(payload))
    }

    #[test]
    fn a_peek_reads_network_and_signer_strictly_without_the_signature() {
        let w = Wallet::generate(Algorithm::Ed25519).unwrap();
        let token = sign_contract(&w, "net-A", 7, &[json!({"action": "x"})], 1_000).unwrap();
        let peek = peek_contract(&token).unwrap();
        assert_eq!(peek.network, "net-A");
        assert_eq!(peek.signer.as_deref(), Some(w.id().as_str()));
        // The signature is not checked: a changed one reads the same.
        let altered = format!("{}AAAA", &token[..token.len() - 4]);
        assert_eq!(peek_contract(&altered).unwrap(), peek);

        let contract = r#"{"alg":"EdDSA","typ":"swarmvm-contract+jwt"}"#;
        let peek = peek_contract(&unsigned(contract, r#"{"aud":"n","iss":"me","actions":[]}"#));
        assert_eq!(peek.unwrap(), ContractPeek { network: "n".into(), signer: Some("me".into()) });
        let no_signer = peek_contract(&unsigned(contract, r#"{"aud":"n","actions":[]}"#));
        assert_eq!(no_signer.unwrap().signer, None);
        // The kind as verify_contract decides it: no typ, or JWT, leaves it to the claims.
        let bare = unsigned(r#"{"alg":"EdDSA"}"#, r#"{"aud":"n","actions":[]}"#);
        assert_eq!(peek_contract(&bare).unwrap().network, "n");

        let refused = |token: &str| peek_contract(token).unwrap_err();
        assert!(matches!(refused("not-a-token"), VerifyError::Malformed(_)));
        let wallets = r#"{"alg":"EdDSA","typ":"swarmvm-wallets+jwt"}"#;
        let e = refused(&unsigned(wallets, r#"{"aud":"n","wallets":[]}"#));
        assert!(matches!(e, VerifyError::WrongKind { found: Kind::Wallets, .. }), "{e}");
        let e = refused(&unsigned(wallets, r#"{"aud":"n","actions":[]}"#));
        assert!(matches!(e, VerifyError::TypMismatch { .. }), "{e}");
        let e = refused(&unsigned(r#"{"alg":"EdDSA","typ":"at+jwt"}"#, r#"{"actions":[]}"#));
        assert!(matches!(e, VerifyError::UnknownTyp(_)), "{e}");
        let e = refused(&unsigned(contract, r#"{"actions":[]}"#));
        assert!(matches!(e, VerifyError::MissingClaim("aud")), "{e}");
        let e = refused(&unsigned(contract, r#"{"aud":5,"actions":[]}"#));
        assert!(matches!(&e, VerifyError::InvalidClaim { claim, .. } if claim == "aud"), "{e}");
        let e = refused(&unsigned(contract, r#"{"aud":"n","aud":"m","actions":[]}"#));
        assert!(matches!(e, VerifyError::InvalidJson { part: "payload", .. }), "{e}");
        let e = refused(&unsigned(r#"{"alg":"none"}"#, r#"{"aud":"n","actions":[]}"#));
        assert!(matches!(e, VerifyError::AlgNone), "{e}");
    }
}
