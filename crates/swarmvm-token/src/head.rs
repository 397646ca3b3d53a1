//! Heads: the sequencer's signed statement of the newest bundle it applied and the state root
//! after it, signed with a manifest's threshold, so that followers can find new bundles and
//! check their roots through any relay.

use serde::Serialize;
use serde_json::Value;
use swarmvm_primitives::{BundleId, Hash32};
use swarmvm_wallet::Wallet;

use crate::authority::AuthoritySet;
use crate::error::{IssueError, Result, VerifyError};
use crate::jws::{Decoded, Serialization, encode_payload, sign_all, split};
use crate::kind::{Kind, shorten};
use crate::manifest::{MAX_SEQ, authenticate_all, check_signature_headers, check_threshold};
use crate::time::numeric_date;

/// The largest head serialization accepted or written (64 KiB).
pub const MAX_HEAD_LEN: usize = 64 * 1024;
/// The longest magnet link a head may carry.
pub const MAX_HEAD_MAGNET: usize = 8 * 1024;

/// What a head says.
#[derive(Debug, Clone, Copy)]
pub struct HeadContent<'a> {
    /// The network id (`aud`).
    pub network: &'a str,
    /// The newest applied bundle's `seq`.
    pub seq: u64,
    /// Its identity.
    pub bundle: BundleId,
    /// A magnet link for it.
    pub magnet: &'a str,
    /// The state root after it.
    pub state_root: Hash32,
    /// `iat`, Unix seconds.
    pub now: u64,
    /// Seconds until `exp`.
    pub max_age: u64,
    /// The newest snapshot of the state the signers publish (`snapshot` claim), if any.
    pub snapshot: Option<&'a SnapshotClaim>,
}

/// A head's `snapshot` claim: the newest state snapshot, `{"seq", "state_root", "magnet"}`:
/// the state after bundle `seq`, whose root is `state_root`, as a torrent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct SnapshotClaim {
    /// The seq whose state it holds (at most the head's).
    pub seq: u64,
    /// That state's root: every piece is checked against it.
    pub state_root: Hash32,
    /// The snapshot torrent's magnet link.
    pub magnet: String,
}

/// A head's payload, in the order its JSON is written.
#[derive(Serialize)]
pub(crate) struct HeadClaims<'a> {
    pub(crate) iss: String,
    pub(crate) aud: &'a str,
    pub(crate) seq: u64,
    pub(crate) bundle: BundleId,
    pub(crate) magnet: &'a str,
    pub(crate) state_root: String,
    pub(crate) iat: u64,
    pub(crate) exp: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) snapshot: Option<&'a SnapshotClaim>,
}

/// A head whose signatures and claims verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedHead {
    /// Its signers' ids, sorted.
    pub signers: Vec<String>,
    /// `seq` of the bundle it names.
    pub seq: u64,
    /// That bundle's identity.
    pub bundle: BundleId,
    /// A magnet link for it.
    pub magnet: String,
    /// The state root after it.
    pub state_root: Hash32,
    /// When it was signed.
    pub issued_at: u64,
    /// When it expires.
    pub expires_at: u64,
    /// The newest snapshot it names.
    pub snapshot: Option<SnapshotClaim>,
}

fn invalid(claim: &str, reason: impl Into<String>) -> VerifyError {
    VerifyError::InvalidClaim { claim: claim.into(), reason: reason.into() }
}

/// Signs a head with every wallet of `signers` (compact for one, general JSON for several).
pub fn sign_head(signers: &[&Wallet], content: &HeadContent<'_>) -> Result<String, IssueError> {
    let Some(first) = signers.first() else {
        return Err(IssueError::Signing("a head needs at least one signer".into()));
    };
    let claims = HeadClaims::of(first.id().as_str(), content)?;
    let text = sign_all(signers, Kind::Head, &encode_payload(&claims)?)?;
    if text.len() > MAX_HEAD_LEN {
        return Err(IssueError::TooLarge { size: text.len(), max: MAX_HEAD_LEN });
    }
    Ok(text)
}

impl<'a> HeadClaims<'a> {
    /// A head's claims, `iss` being `issuer`, after checking the ranges of `content`.
    pub(crate) fn of(issuer: &str, content: &HeadContent<'a>) -> Result<Self, IssueError> {
        if content.magnet.len() > MAX_HEAD_MAGNET
            || !(1..=MAX_SEQ).contains(&content.seq)
            || content.snapshot.is_some_and(|s| {
                s.magnet.len() > MAX_HEAD_MAGNET || !(1..=content.seq).contains(&s.seq)
            })
        {
            return Err(IssueError::Signing("head seq or magnet out of range".into()));
        }
        Ok(Self {
            iss: issuer.to_owned(),
            aud: content.network,
            seq: content.seq,
            bundle: content.bundle,
            magnet: content.magnet,
            state_root: content.state_root.to_hex(),
            iat: content.now,
            exp: content.now.saturating_add(content.max_age),
            snapshot: content.snapshot,
        })
    }
}

/// Verifies a head of `network` against `set` at `now` (Unix seconds): the signatures as a
/// manifest's (K distinct members, no outsider, no signer twice, protected headers with the
/// head `typ`), `aud` the network, `iss` a member, `seq`, `bundle`, `magnet` and `state_root`
/// well formed, and not expired (`exp` after `now`, `iat` not after it).
pub fn verify_head(
    text: &str,
    network: &str,
    set: &AuthoritySet,
    now: u64,
) -> Result<VerifiedHead> {
    let split = split(text, MAX_HEAD_LEN)?;
    let json = split.form != Serialization::Compact;
    let decoded = split.compact.iter().map(|t| Decoded::parse(t)).collect::<Result<Vec<_>>>()?;
    check_signature_headers(&decoded, Kind::Head, json)?;
    let mut signers = authenticate_all(&decoded, Kind::Head, set.trust(), json)?;
    check_threshold(&signers, set)?;
    let claims = &decoded[0].claims;
    match claims.get("iss") {
        Some(Value::String(s)) if set.contains(s) => {}
        Some(_) => return Err(invalid("iss", "not a member of the authority set")),
        None => return Err(VerifyError::MissingClaim("iss")),
    }
    match claims.get("aud") {
        Some(Value::String(aud)) if aud == network => {}
        Some(Value::String(aud)) => {
            return Err(VerifyError::ManifestAudience {
                aud: shorten(aud),
                network: shorten(network),
            });
        }
        Some(_) => return Err(invalid("aud", "not a string")),
        None => return Err(VerifyError::MissingClaim("aud")),
    }
    let seq = claims
        .get("seq")
        .and_then(Value::as_u64)
        .filter(|s| (1..=MAX_SEQ).contains(s))
        .ok_or_else(|| invalid("seq", "not an integer from 1 to 2^53-1"))?;
    let text_claim = |name: &'static str| match claims.get(name) {
        Some(Value::String(s)) => Ok(s.as_str()),
        Some(_) => Err(invalid(name, "not a string")),
        None => Err(VerifyError::MissingClaim(name)),
    };
    let bundle = text_claim("bundle")?
        .parse::<BundleId>()
        .map_err(|_| invalid("bundle", "not a bundle identity (64 lowercase hex characters)"))?;
    let state_root = text_claim("state_root")?
        .parse::<Hash32>()
        .map_err(|_| invalid("state_root", "not 64 lowercase hex characters"))?;
    let magnet = text_claim("magnet")?;
    if magnet.len() > MAX_HEAD_MAGNET || !magnet.starts_with("magnet:?") {
        return Err(invalid("magnet", "not a magnet link of at most 8 KiB"));
    }
    let issued_at = numeric_date(claims, "iat")?.ok_or(VerifyError::MissingClaim("iat"))?;
    let expires_at = numeric_date(claims, "exp")?.ok_or(VerifyError::MissingClaim("exp"))?;
    if expires_at <= now {
        return Err(VerifyError::Expired { exp: expires_at, now });
    }
    if issued_at > now.saturating_add(crate::time::DEFAULT_LEEWAY) {
        return Err(VerifyError::IssuedInFuture { iat: issued_at, now });
    }
    let snapshot = match claims.get("snapshot") {
        None => None,
        Some(v) => {
            let claim: SnapshotClaim = serde_json::from_value(v.clone())
                .map_err(|_| invalid("snapshot", "not {\"seq\", \"state_root\", \"magnet\"}"))?;
            if !(1..=seq).contains(&claim.seq) {
                return Err(invalid("snapshot", "its seq is not from 1 to the head's"));
            }
            if claim.magnet.len() > MAX_HEAD_MAGNET || !claim.magnet.starts_with("magnet:?") {
                return Err(invalid(
                    "snapshot",
                    "its magnet is not a magnet link of at most 8 KiB",
                ));
            }
            Some(claim)
        }
    };
    signers.sort();
    Ok(VerifiedHead {
        signers,
        seq,
        bundle,
        magnet: magnet.to_owned(),
        state_root,
        issued_at,
        expires_at,
        snapshot,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use swarmvm_wallet::Algorithm;

    #[test]
    fn heads_need_the_threshold_and_expire() {
        let w: Vec<Wallet> =
            (0..3).map(|_| Wallet::generate(Algorithm::Ed25519).unwrap()).collect();
        let set = AuthoritySet::new(w.iter().map(|k| k.public_key().clone()).collect(), 2).unwrap();
        let net = set.network_id().to_string();
        let content = HeadContent {
            network: &net,
            seq: 3,
            bundle: BundleId::of_payload(b"x"),
            magnet: "magnet:?xt=urn:btih:0000000000000000000000000000000000000000",
            state_root: Hash32::digest(b"root"),
            now: 1_000,
            max_age: 60,
            snapshot: None,
        };
        let head = sign_head(&[&w[0], &w[2]], &content).unwrap();
        let v = verify_head(&head, &net, &set, 1_010).unwrap();
        assert_eq!((v.seq, v.bundle, v.state_root), (3, content.bundle, content.state_root));
        assert_eq!(v.expires_at, 1_060);
        let err = verify_head(&head, &net, &set, 1_060).unwrap_err();
        assert!(matches!(err, VerifyError::Expired { .. }), "{err}");
        let one = sign_head(&[&w[1]], &content).unwrap();
        let err = verify_head(&one, &net, &set, 1_010).unwrap_err();
        assert!(matches!(err, VerifyError::ThresholdNotMet { have: 1, .. }), "{err}");
        let err = verify_head(&head, "other", &set, 1_010).unwrap_err();
        assert!(matches!(err, VerifyError::ManifestAudience { .. }), "{err}");
        let outsider = Wallet::generate(Algorithm::Ed25519).unwrap();
        let err =
            verify_head(&sign_head(&[&w[0], &outsider], &content).unwrap(), &net, &set, 1_010)
                .unwrap_err();
        assert!(matches!(err, VerifyError::NotAMember(_)), "{err}");
        // A manifest is not a head, nor the other way round.
        let err = crate::verify_manifest(&head, &net, &set).unwrap_err();
        assert!(matches!(err, VerifyError::WrongKind { .. }), "{err}");
    }

    #[test]
    fn a_head_carries_the_newest_snapshot_and_a_snapshot_beyond_it_is_refused() {
        let w: Vec<Wallet> =
            (0..2).map(|_| Wallet::generate(Algorithm::Ed25519).unwrap()).collect();
        let set = AuthoritySet::new(w.iter().map(|k| k.public_key().clone()).collect(), 1).unwrap();
        let net = set.network_id().to_string();
        let claim = SnapshotClaim {
            seq: 3,
            state_root: Hash32::digest(b"state at 3"),
            magnet: "magnet:?xt=urn:btih:1111111111111111111111111111111111111111".into(),
        };
        let mut content = HeadContent {
            network: &net,
            seq: 3,
            bundle: BundleId::of_payload(b"x"),
            magnet: "magnet:?xt=urn:btih:0000000000000000000000000000000000000000",
            state_root: Hash32::digest(b"root"),
            now: 1_000,
            max_age: 60,
            snapshot: Some(&claim),
        };
        let head = sign_head(&[&w[0]], &content).unwrap();
        let v = verify_head(&head, &net, &set, 1_010).unwrap();
        assert_eq!(v.snapshot.as_ref(), Some(&claim));
        content.snapshot = None;
        let v = verify_head(&sign_head(&[&w[0]], &content).unwrap(), &net, &set, 1_010).unwrap();
        assert_eq!(v.snapshot, None);
        // A snapshot of a later seq than the head's is not signed, nor accepted.
        let later = SnapshotClaim { seq: 4, ..claim.clone() };
        content.snapshot = Some(&later);
        assert!(sign_head(&[&w[0]], &content).is_err());
        let claims = serde_json::json!({
            "iss": w[0].id().to_string(), "aud": net, "seq": 3,
            "bundle": BundleId::of_payload(b"x"),
            "magnet": "magnet:?xt=urn:btih:0000000000000000000000000000000000000000",
            "state_root": Hash32::digest(b"root").to_hex(), "iat": 1_000, "exp": 1_060,
            "snapshot": later,
        });
        let forged =
            crate::jws::sign_all(&[&w[0]], Kind::Head, &encode_payload(&claims).unwrap()).unwrap();
        let err = verify_head(&forged, &net, &set, 1_010).unwrap_err();
        assert!(err.to_string().contains("snapshot"), "{err}");
    }
}
