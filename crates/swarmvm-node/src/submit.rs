//! Checking a submitted contract: what any node can check alone (its form and network), and
//! what the sequencer checks against its ledger (signature, registration, revocation, nonce,
//! not already applied). Each refusal has its HTTP status and one line.

use swarmvm_bundle::ChainView as _;
use swarmvm_ledger::Snapshot;
use swarmvm_primitives::Rules;
use swarmvm_token::{Kind, MAX_TOKEN_LEN, TrustStore, VerifyError, verify_contract};
use swarmvm_vm::{Hash32, Table};

use crate::protocol::Refusal;

/// Why a submission was refused (or could not be taken now).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SubmitError {
    /// Not a signed contract, or not one this network could run.
    #[error("{0}")]
    Malformed(String),
    /// The signature does not verify against the wallet's registered key.
    #[error("bad signature: {0}")]
    BadSignature(String),
    /// Signed for another network.
    #[error("{0}")]
    WrongNetwork(String),
    /// Its signer is not a registered wallet.
    #[error("wallet {0} is not registered on this network")]
    Unregistered(String),
    /// Its signer's wallet was revoked.
    #[error("wallet {0} is revoked")]
    Revoked(String),
    /// Its nonce is not above the wallet's last, applied or queued.
    #[error("nonce {nonce} is not above the wallet's last nonce {last} (applied or queued); the next is {}", last + 1)]
    StaleNonce {
        /// The contract's nonce.
        nonce: u64,
        /// The wallet's last nonce, applied or queued.
        last: u64,
    },
    /// The very contract was taken already.
    #[error("contract {id} is already {state}")]
    Duplicate {
        /// Its id.
        id: String,
        /// Where it is: queued, or applied in seq N.
        state: String,
    },
    /// A registration, module or bundle the sequencer cannot take.
    #[error("{0}")]
    Refused(String),
    /// The queue is full.
    #[error("the sequencer's queue is full ({max} items); try again in {retry_after} s")]
    Full {
        /// The bound.
        max: usize,
        /// Seconds until a cut makes room.
        retry_after: u64,
    },
    /// No sequencer could be reached, or it could not store the submission.
    #[error("{0}")]
    Unavailable(String),
    /// It went round a loop of nodes that follow each other (508: the node that forwarded it
    /// here passes this one over).
    #[error("{0}")]
    Looped(String),
}

impl swarmvm_primitives::Classify for SubmitError {
    /// A 4xx is a refusal; a sequencer that cannot take it now (503) failed.
    fn class(&self) -> swarmvm_primitives::ErrorClass {
        if self.status() >= 500 {
            swarmvm_primitives::ErrorClass::Failed
        } else {
            swarmvm_primitives::ErrorClass::Refused
        }
    }
}

impl SubmitError {
    /// The HTTP status this refusal is answered with.
    pub fn status(&self) -> u16 {
        match self {
            Self::Malformed(_)
            | Self::BadSignature(_)
            | Self::WrongNetwork(_)
            | Self::Refused(_) => 400,
            Self::Unregistered(_) | Self::Revoked(_) => 403,
            Self::StaleNonce { .. } | Self::Duplicate { .. } => 409,
            Self::Full { .. } => 429,
            Self::Unavailable(_) => 503,
            Self::Looped(_) => crate::protocol::LOOP_DETECTED,
        }
    }
}

impl From<SubmitError> for Refusal {
    fn from(e: SubmitError) -> Self {
        Self {
            status: e.status(),
            message: e.to_string(),
            retry_after: match &e {
                SubmitError::Full { retry_after, .. } => Some(*retry_after),
                _ => None,
            },
            next_nonce: match &e {
                SubmitError::StaleNonce { last, .. } => Some(last + 1),
                _ => None,
            },
            duplicate: matches!(e, SubmitError::Duplicate { .. }),
        }
    }
}

/// A contract the sequencer accepted: its id, signer and nonce.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Checked {
    pub(crate) id: Hash32,
    pub(crate) signer: String,
    pub(crate) nonce: u64,
    /// What its signature check found: the cut takes it as verified.
    pub(crate) verified: std::sync::Arc<swarmvm_token::VerifiedContract>,
}

/// The token in a submission's body: the bytes as text, without a trailing line end. The
/// token is exactly what is queued, cut and hashed into the contract's id, so anything else
/// (a second line end, spaces, another line) is refused rather than given an id that the
/// ledger would never know: a compact JWS holds only base64url characters and dots.
pub(crate) fn token_of(body: &[u8]) -> Result<&str, SubmitError> {
    let text = std::str::from_utf8(body).map_err(|_| {
        SubmitError::Malformed("not a signed contract: the body is not text".into())
    })?;
    let token = text.strip_suffix('\n').unwrap_or(text);
    let token = token.strip_suffix('\r').unwrap_or(token);
    if token.is_empty() {
        return Err(SubmitError::Malformed(
            "the body is empty; send the contract's compact JWS".into(),
        ));
    }
    if token.len() > MAX_TOKEN_LEN {
        return Err(SubmitError::Malformed(format!(
            "the contract is {} bytes; at most {MAX_TOKEN_LEN} are accepted",
            token.len()
        )));
    }
    if let Some(c) =
        token.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Err(SubmitError::Malformed(format!(
            "not a signed contract: the body holds {c:?}, and a contract is one compact JWS (base64url characters and dots), at most one line end after it"
        )));
    }
    Ok(token)
}

/// What any node checks alone: a compact JWS of the contract kind whose `aud` is `network`.
/// (The signature needs the wallet's key, which only a node that applied its registration has:
/// the sequencer checks it.)
pub(crate) fn precheck(token: &str, network: &str) -> Result<Option<String>, SubmitError> {
    let not = |why: &str| SubmitError::Malformed(format!("not a signed contract: {why}"));
    let peek = swarmvm_token::peek_contract(token).map_err(|e| match e {
        VerifyError::WrongKind { .. } | VerifyError::UnknownTyp(_) => {
            not(&format!("its typ is not {}", Kind::Contract.typ()))
        }
        VerifyError::MissingClaim("aud") => not("it has no aud (network)"),
        VerifyError::InvalidClaim { ref claim, .. } if claim == "aud" => {
            not("it has no aud (network)")
        }
        VerifyError::InvalidJson { part: "header", .. } => not("its header is not base64url JSON"),
        VerifyError::InvalidJson { part: "payload", .. } => {
            not("its payload is not base64url JSON")
        }
        e => refused_contract(&e),
    })?;
    if peek.network != network {
        return Err(SubmitError::WrongNetwork(format!(
            "the contract is for network {}, this node's is {network}",
            swarmvm_primitives::text::shown(&peek.network)
        )));
    }
    Ok(peek.signer)
}

/// Registered wallets' public keys, as the sequencer looked them up: a wallet id is its key's
/// thumbprint, so an id found once keeps its key (revocation is checked apart). Saves
/// decoding and checking the key again for every contract.
#[derive(Debug, Default)]
pub(crate) struct KeyCache(
    parking_lot::Mutex<std::collections::HashMap<String, swarmvm_wallet::PublicKey>>,
);

/// Keys remembered at most; beyond it the cache starts over.
const MAX_CACHED_KEYS: usize = 200_000;

impl KeyCache {
    fn key(
        &self,
        snapshot: &Snapshot,
        id: &str,
    ) -> Result<Option<swarmvm_wallet::PublicKey>, swarmvm_vm::StateError> {
        if let Some(k) = self.0.lock().get(id) {
            return Ok(Some(k.clone()));
        }
        let found = snapshot.wallet(id)?;
        if let Some(k) = &found {
            let mut cache = self.0.lock();
            if cache.len() >= MAX_CACHED_KEYS {
                cache.clear();
            }
            cache.insert(id.to_owned(), k.clone());
        }
        Ok(found)
    }
}

/// Why [`verify_contract`] refused a contract, as a submission's refusal: only what concerns
/// its signature and signer is a bad signature; a claim out of its range or of the wrong form
/// says so.
fn refused_contract(e: &VerifyError) -> SubmitError {
    match e {
        VerifyError::AudienceMismatch { .. } => SubmitError::WrongNetwork(e.to_string()),
        VerifyError::InvalidClaim { claim, .. } if claim == "nonce" => {
            SubmitError::Malformed(format!("nonce out of range: {e}"))
        }
        VerifyError::AlgNone
        | VerifyError::AlgorithmMismatch { .. }
        | VerifyError::UnsupportedHeader { .. }
        | VerifyError::UnknownKid(_)
        | VerifyError::UnknownIssuer(_)
        | VerifyError::NoSigner
        | VerifyError::IssuerMismatch { .. }
        | VerifyError::BadSignature(_)
        | VerifyError::Hs256NotAllowed(_) => SubmitError::BadSignature(e.to_string()),
        _ => SubmitError::Malformed(format!("not a signed contract: {e}")),
    }
}

/// The sequencer's check against its ledger's last commit.
pub(crate) fn check(
    snapshot: &Snapshot,
    token: &str,
    network: &str,
    keys: &KeyCache,
) -> Result<Checked, SubmitError> {
    let signer = precheck(token, network)?;
    check_prechecked(snapshot, token, signer, network, keys)
}

/// [`check`] of a token [`precheck`] passed already, naming `signer`: it is not parsed
/// again before its signature is verified.
pub(crate) fn check_prechecked(
    snapshot: &Snapshot,
    token: &str,
    signer: Option<String>,
    network: &str,
    keys: &KeyCache,
) -> Result<Checked, SubmitError> {
    let signer = signer.ok_or_else(|| {
        SubmitError::Malformed("not a signed contract: it names no signer".into())
    })?;
    let id = Hash32::digest(token.as_bytes());
    let unavailable = |e: &dyn std::fmt::Display| {
        SubmitError::Unavailable(format!("cannot read the ledger: {e}"))
    };
    let key = keys
        .key(snapshot, &signer)
        .map_err(|e| unavailable(&e))?
        .ok_or_else(|| SubmitError::Unregistered(swarmvm_primitives::text::shown(&signer)))?;
    let verified = verify_contract(token, &TrustStore::with_keys([&key]), network)
        .map_err(|e| refused_contract(&e))?;
    checked_against(snapshot, id, std::sync::Arc::new(verified))
}

/// [`check_prechecked`] under rules 4: the signature is checked under ZIP-215 by `batcher`,
/// with the other submissions waiting at the same time.
pub(crate) async fn check_batched(
    snapshot: &Snapshot,
    token: &str,
    signer: Option<String>,
    network: &str,
    keys: &KeyCache,
    batcher: &crate::batcher::Batcher,
) -> Result<Checked, SubmitError> {
    let signer = signer.ok_or_else(|| {
        SubmitError::Malformed("not a signed contract: it names no signer".into())
    })?;
    let id = Hash32::digest(token.as_bytes());
    let key = keys
        .key(snapshot, &signer)
        .map_err(|e| SubmitError::Unavailable(format!("cannot read the ledger: {e}")))?
        .ok_or_else(|| SubmitError::Unregistered(swarmvm_primitives::text::shown(&signer)))?;
    let pending = swarmvm_token::prepare_contract(token, &TrustStore::with_keys([&key]), network)
        .map_err(|e| refused_contract(&e))?;
    let holds = match pending.signature() {
        Some(check) => batcher.holds(check.clone()).await,
        None => true,
    };
    let verified = pending.finish(holds).map_err(|e| refused_contract(&e))?;
    checked_against(snapshot, id, std::sync::Arc::new(verified))
}

/// Contracts checked together, as a bundle's are under `rules` (under rules 4, the Ed25519
/// signatures in ZIP-215 batches): everything [`check`] checks of each. Only the contracts
/// whose checks all pass come back, in the order given; one refused is left out, for a check
/// of it alone to say why.
pub(crate) fn check_together(
    snapshot: &Snapshot,
    tokens: &[String],
    network: &str,
    rules: Rules,
) -> Vec<Checked> {
    let Ok(checked) = swarmvm_bundle::verify_contract_signatures(tokens, snapshot, network, rules)
    else {
        return Vec::new();
    };
    checked
        .into_iter()
        .filter_map(|c| {
            checked_against(snapshot, c.hash, std::sync::Arc::new(c.verified.ok()?)).ok()
        })
        .collect()
}

/// What the sequencer checks of a contract whose signature holds: its signer not revoked,
/// the contract not applied already, its nonce above the signer's last.
pub(crate) fn checked_against(
    snapshot: &Snapshot,
    id: Hash32,
    verified: std::sync::Arc<swarmvm_token::VerifiedContract>,
) -> Result<Checked, SubmitError> {
    let unavailable = |e: &dyn std::fmt::Display| {
        SubmitError::Unavailable(format!("cannot read the ledger: {e}"))
    };
    if snapshot
        .record(Table::Revocation, &swarmvm_vm::revoked_id(&verified.signer))
        .map_err(|e| unavailable(&e))?
        .is_some()
    {
        return Err(SubmitError::Revoked(verified.signer.clone()));
    }
    if let Some((_, entry)) = snapshot.contract(&id).map_err(|e| unavailable(&e))? {
        let state =
            entry.seq.map_or_else(|| "applied".to_owned(), |s| format!("in bundle seq {s}"));
        return Err(SubmitError::Duplicate { id: id.to_hex(), state });
    }
    let last = swarmvm_vm::nonce_of(snapshot, &verified.signer).map_err(|e| unavailable(&e))?;
    if verified.nonce <= last {
        return Err(SubmitError::StaleNonce { nonce: verified.nonce, last });
    }
    Ok(Checked { id, signer: verified.signer.clone(), nonce: verified.nonce, verified })
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;

    use super::*;

    #[test]
    fn bodies_are_one_token_and_prechecks_read_form_and_network() {
        assert_eq!(token_of(b"a.b.c\n").unwrap(), "a.b.c");
        assert_eq!(token_of(b"a.b.c\r\n").unwrap(), "a.b.c");
        assert!(token_of(b"").is_err());
        assert!(token_of(&[0xff, 0xfe]).is_err());
        // Exactly what is hashed into the id is applied: one line end at most, nothing else.
        for bad in [&b"a.b.c\n\n"[..], b"a.b.c\r\n\r\n", b"a.b.c \n", b"a.b.c\n\r", b"a.b\n.c"] {
            let e = token_of(bad).unwrap_err();
            assert!(matches!(e, SubmitError::Malformed(_)), "{e}");
        }
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let make = |typ: &str, aud: &str| {
            format!(
                "{}.{}.sig",
                b64.encode(format!(r#"{{"alg":"EdDSA","typ":"{typ}"}}"#)),
                b64.encode(format!(r#"{{"aud":"{aud}","actions":[]}}"#))
            )
        };
        precheck(&make("swarmvm-contract+jwt", "net"), "net").unwrap();
        let e = precheck(&make("swarmvm-contract+jwt", "other"), "net").unwrap_err();
        assert_eq!(e.status(), 400);
        assert!(matches!(e, SubmitError::WrongNetwork(_)), "{e}");
        let e = precheck(&make("swarmvm-wallets+jwt", "net"), "net").unwrap_err();
        assert!(matches!(e, SubmitError::Malformed(_)), "{e}");
        assert!(precheck("not-a-token", "net").is_err());
        assert_eq!(SubmitError::StaleNonce { nonce: 3, last: 5 }.status(), 409);
        assert_eq!(SubmitError::Full { max: 1, retry_after: 2 }.status(), 429);
    }

    #[test]
    fn contracts_checked_together_pass_exactly_as_each_checked_alone() {
        use swarmvm_test_support::net::{TestNet, student};
        let dir = tempfile::tempdir().unwrap();
        let net = TestNet::new(2);
        let b1 = net.bundle(dir.path(), "bundle-1", true, &[], None);
        let mut ledger = swarmvm_ledger::Ledger::open(&dir.path().join("ledger.redb")).unwrap();
        crate::pipeline::apply_opened(&mut ledger, net.open(&b1).unwrap(), &net.network).unwrap();
        let snapshot = ledger.snapshot().unwrap();
        let network = net.id();

        let mut tokens: Vec<String> = Vec::new();
        for nonce in 1..=4 {
            for peer in 0..2 {
                tokens.push(net.contract(peer, nonce, &[student(&format!("S{peer}{nonce}"))]));
            }
        }
        // One signature changed, one wallet never registered, one for another network.
        let mut forged = net.contract(0, 9, &[student("F")]);
        let at = forged.rfind('.').unwrap() + 1;
        let c = if forged.as_bytes()[at] == b'A' { "B" } else { "A" };
        forged.replace_range(at..=at, c);
        tokens.insert(3, forged);
        let stranger =
            swarmvm_wallet::Wallet::generate(swarmvm_wallet::Algorithm::Ed25519).unwrap();
        tokens.insert(6, swarmvm_token::sign_contract(&stranger, &network, 1, &[], 1).unwrap());
        tokens.push(swarmvm_token::sign_contract(&net.peers[1], "other", 8, &[], 1).unwrap());

        let alone: Vec<Hash32> = tokens
            .iter()
            .filter_map(|t| check(&snapshot, t, &network, &KeyCache::default()).ok())
            .map(|c| c.id)
            .collect();
        assert_eq!(alone.len(), 8, "the eight good contracts pass alone, the rest do not");
        let together: Vec<Hash32> = check_together(&snapshot, &tokens, &network, Rules::V4)
            .into_iter()
            .map(|c| c.id)
            .collect();
        assert_eq!(together, alone);
    }
}
