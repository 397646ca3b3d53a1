//! Signing one payload on several machines: authority replicas each hold one key, agree on a
//! manifest's or a head's payload, sign it apart, and join the signatures into the same bytes
//! everywhere. Also the detached signatures on messages between replicas.

use serde::{Deserialize, Serialize};
use swarmvm_wallet::Wallet;

use crate::authority::AuthoritySet;
use crate::error::{IssueError, Result, VerifyError};
use crate::head::{HeadClaims, HeadContent, MAX_HEAD_LEN};
use crate::jws::{Decoded, Signer, encode_payload, sign_payload, write};
use crate::kind::Kind;
use crate::manifest::{MAX_MANIFEST_LEN, ManifestContent, manifest_claims};

/// One member's signature over a payload: its JWS protected header and signature, both
/// base64url, and the member's id (the header's `kid`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayloadSignature {
    /// The signer's wallet id.
    pub signer: String,
    /// The protected header (`typ`, `alg`, `kid`), base64url.
    pub protected: String,
    /// The signature, base64url.
    pub signature: String,
}

/// The payload (base64url JSON) of a manifest of `content` made by member `issuer`: the
/// bytes [`crate::sign_manifest`] signs when `issuer` signs first.
pub fn manifest_payload(issuer: &str, content: &ManifestContent<'_>) -> Result<String, IssueError> {
    let claims = manifest_claims(issuer, content)?;
    encode_payload(&claims)
}

/// The payload (base64url JSON) of a head of `content` made by member `issuer`.
pub fn head_payload(issuer: &str, content: &HeadContent<'_>) -> Result<String, IssueError> {
    let claims = HeadClaims::of(issuer, content)?;
    encode_payload(&claims)
}

/// Signs `payload` as a token of `kind` with `wallet`.
pub fn sign_payload_part(
    wallet: &Wallet,
    kind: Kind,
    payload: &str,
) -> Result<PayloadSignature, IssueError> {
    let (protected, signature) = sign_payload(wallet, kind, payload)?;
    Ok(PayloadSignature { signer: wallet.id().to_string(), protected, signature })
}

/// Checks one signature over `payload`: its header is a `kind`'s, its `kid` is its `signer`,
/// a member of `set`, and the signature holds.
pub fn verify_payload_part(
    part: &PayloadSignature,
    kind: Kind,
    payload: &str,
    set: &AuthoritySet,
) -> Result<()> {
    let token = format!("{}.{payload}.{}", part.protected, part.signature);
    let decoded = Decoded::parse(&token)?;
    if decoded.kid.as_deref() != Some(part.signer.as_str()) {
        return Err(VerifyError::Malformed("the signature's kid is not its signer".into()));
    }
    if decoded.typ.as_deref() != Some(kind.typ()) {
        return Err(VerifyError::Malformed(format!("the signature is not a {kind}'s")));
    }
    if !set.contains(&part.signer) {
        return Err(VerifyError::UnknownKid(crate::kind::shorten(&part.signer)));
    }
    set.trust().authenticate_signature(&decoded, kind, false).map(|_| ())
}

/// Joins signatures over one payload, sorted by signer id (so every replica writes the same
/// bytes): compact for one, general JSON for more.
pub fn join_signatures(
    payload: &str,
    parts: &[PayloadSignature],
    max: usize,
) -> Result<String, IssueError> {
    let mut sorted: Vec<&PayloadSignature> = parts.iter().collect();
    sorted.sort_by(|a, b| a.signer.cmp(&b.signer));
    sorted.dedup_by(|a, b| a.signer == b.signer);
    let pairs: Vec<(String, String)> =
        sorted.iter().map(|p| (p.protected.clone(), p.signature.clone())).collect();
    let text = write(payload, &pairs);
    if text.len() > max {
        return Err(IssueError::TooLarge { size: text.len(), max });
    }
    Ok(text)
}

/// [`join_signatures`] for a manifest.
pub fn join_manifest(payload: &str, parts: &[PayloadSignature]) -> Result<String, IssueError> {
    join_signatures(payload, parts, MAX_MANIFEST_LEN)
}

/// [`join_signatures`] for a head.
pub fn join_head(payload: &str, parts: &[PayloadSignature]) -> Result<String, IssueError> {
    join_signatures(payload, parts, MAX_HEAD_LEN)
}

/// A detached signature (unpadded base64url) by `wallet` over `message`, with the algorithm
/// its key's type fixes (EdDSA or RS256): for messages between authority replicas.
pub fn sign_message(wallet: &Wallet, message: &[u8]) -> Result<String, IssueError> {
    let (alg, key) = Signer::Wallet(wallet).key();
    jsonwebtoken::crypto::sign(message, &key, alg).map_err(|e| IssueError::Signing(e.to_string()))
}

/// Checks that member `signer` of `set` signed `message` ([`sign_message`]).
pub fn verify_message(
    set: &AuthoritySet,
    signer: &str,
    message: &[u8],
    signature: &str,
) -> Result<()> {
    if !set.contains(signer) {
        return Err(VerifyError::UnknownKid(crate::kind::shorten(signer)));
    }
    set.trust().verify_detached(signer, signature, message)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use swarmvm_primitives::{BundleId, Hash32, Rules};
    use swarmvm_wallet::Algorithm;

    use super::*;
    use crate::{FileDigest, sign_manifest, verify_head, verify_manifest};

    fn wallets(n: usize) -> Vec<Wallet> {
        let mut w: Vec<Wallet> =
            (0..n).map(|_| Wallet::generate(Algorithm::Ed25519).expect("key")).collect();
        w.sort_by_key(|w| w.id().to_string());
        w
    }

    fn files() -> BTreeMap<String, FileDigest> {
        let digest = FileDigest { size: 0, sha256: Hash32::digest(b"") };
        [
            (crate::CONTRACTS_FILE.to_owned(), digest.clone()),
            (crate::TOKENS_FILE.to_owned(), digest),
        ]
        .into_iter()
        .collect()
    }

    #[test]
    fn signatures_made_apart_join_into_the_manifest_signed_together() {
        let w = wallets(3);
        let set =
            AuthoritySet::new(w.iter().map(|w| w.public_key().clone()).collect(), 2).expect("set");
        let network = set.network_id().to_string();
        let files = files();
        let content = ManifestContent {
            seq: 1,
            parent: None,
            parent_info_hash: None,
            files: &files,
            network: &network,
            authority_set: None,
            now: 1_700_000_000,
            rules: Rules::CURRENT,
        };
        let issuer = w[2].id().to_string();
        let payload = manifest_payload(&issuer, &content).expect("payload");
        // Signed by the last two, joined in the other order: the bytes are the same as
        // signing together in signer order.
        let parts: Vec<PayloadSignature> = [&w[2], &w[1]]
            .iter()
            .map(|k| sign_payload_part(k, Kind::Manifest, &payload).expect("sign"))
            .collect();
        for p in &parts {
            verify_payload_part(p, Kind::Manifest, &payload, &set).expect("part verifies");
        }
        let joined = join_manifest(&payload, &parts).expect("join");
        let together = sign_manifest(&[&w[2], &w[1]], &content).expect("together");
        assert_ne!(joined, together, "issuer first is not the sorted order here");
        assert_eq!(
            verify_manifest(&joined, &network, &set).expect("joined verifies").id,
            verify_manifest(&together, &network, &set).expect("together verifies").id
        );
        // One signature is below the threshold.
        let one = join_manifest(&payload, &parts[..1]).expect("join");
        assert!(verify_manifest(&one, &network, &set).is_err());
        // A part over another payload, or by an outsider, is refused.
        let other = manifest_payload(w[0].id().as_str(), &content).expect("payload");
        assert!(verify_payload_part(&parts[0], Kind::Manifest, &other, &set).is_err());
        let outsider = wallets(1).remove(0);
        let foreign = sign_payload_part(&outsider, Kind::Manifest, &payload).expect("sign");
        assert!(verify_payload_part(&foreign, Kind::Manifest, &payload, &set).is_err());
        // A head's signature is not a manifest's.
        let as_head = sign_payload_part(&w[1], Kind::Head, &payload).expect("sign");
        assert!(verify_payload_part(&as_head, Kind::Manifest, &payload, &set).is_err());
    }

    #[test]
    fn a_head_joined_from_parts_verifies_and_needs_the_threshold() {
        let w = wallets(3);
        let set =
            AuthoritySet::new(w.iter().map(|w| w.public_key().clone()).collect(), 2).expect("set");
        let network = set.network_id().to_string();
        let content = HeadContent {
            network: &network,
            seq: 4,
            bundle: BundleId::of_payload(b"x"),
            magnet: "magnet:?xt=urn:btih:0000000000000000000000000000000000000000",
            state_root: Hash32::digest(b"root"),
            now: crate::unix_now(),
            max_age: 60,
            snapshot: None,
        };
        let payload = head_payload(w[0].id().as_str(), &content).expect("payload");
        let parts: Vec<PayloadSignature> = w[..2]
            .iter()
            .map(|k| sign_payload_part(k, Kind::Head, &payload).expect("sign"))
            .collect();
        let head = join_head(&payload, &parts).expect("join");
        let verified = verify_head(&head, &network, &set, crate::unix_now()).expect("verifies");
        assert_eq!(verified.seq, 4);
        assert_eq!(verified.signers.len(), 2);
        let one = join_head(&payload, &parts[1..]).expect("join");
        assert!(verify_head(&one, &network, &set, crate::unix_now()).is_err());
    }

    #[test]
    fn a_message_signature_holds_only_for_its_bytes_and_a_member() {
        let w = wallets(2);
        let set = AuthoritySet::new(vec![w[0].public_key().clone()], 1).expect("set");
        let sig = sign_message(&w[0], b"term 3").expect("sign");
        verify_message(&set, w[0].id().as_str(), b"term 3", &sig).expect("verifies");
        assert!(verify_message(&set, w[0].id().as_str(), b"term 4", &sig).is_err());
        let theirs = sign_message(&w[1], b"term 3").expect("sign");
        assert!(verify_message(&set, w[1].id().as_str(), b"term 3", &theirs).is_err());
        let rsa = Wallet::generate(Algorithm::Rsa2048).expect("rsa");
        let rsa_set = AuthoritySet::new(vec![rsa.public_key().clone()], 1).expect("set");
        let sig = sign_message(&rsa, b"m").expect("sign");
        verify_message(&rsa_set, rsa.id().as_str(), b"m", &sig).expect("rsa verifies");
        assert!(verify_message(&rsa_set, rsa.id().as_str(), b"n", &sig).is_err());
    }
}
