//! A head taken apart into what it says and its Ed25519 signatures, and put back together
//! byte for byte. This is what a DHT item carries: BEP 44 allows a value of 1000 bytes, and a
//! head of several signatures in JWS JSON takes several times that, most of it base64 of
//! headers a reader can write again. Putting a head back writes its payload and each
//! protected header exactly as [`sign_head`](crate::sign_head) writes them, so the signatures
//! hold over the rebuilt head. A head written any other way cannot be taken apart: nothing
//! is dropped silently. Taking apart checks no signature; the rebuilt head is verified as any
//! head is, by [`verify_head`](crate::verify_head).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;
use swarmvm_primitives::{BundleId, Hash32};

use crate::error::{IssueError, Result, VerifyError};
use crate::head::{HeadClaims, MAX_HEAD_LEN, SnapshotClaim};
use crate::jws::{Decoded, encode_payload, protected_header, split, write};
use crate::kind::Kind;

/// The most signatures a head taken apart may carry (DESIGN: a DHT head carries at most 7).
pub const MAX_PART_SIGNATURES: usize = 7;

/// What a head says and its signatures, each an Ed25519 signature (`EdDSA`) by key `kid`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeadParts {
    /// `iss`: a member's id.
    pub issuer: String,
    /// `aud`: the network id.
    pub network: String,
    /// `seq`.
    pub seq: u64,
    /// `bundle`.
    pub bundle: BundleId,
    /// `magnet`.
    pub magnet: String,
    /// `state_root`.
    pub state_root: Hash32,
    /// `iat`.
    pub issued_at: u64,
    /// `exp`.
    pub expires_at: u64,
    /// `snapshot`, if any.
    pub snapshot: Option<SnapshotClaim>,
    /// The signatures in the order written: the signer's id (`kid`) and the 64 bytes.
    pub signatures: Vec<(String, [u8; 64])>,
}

fn cannot(why: impl Into<String>) -> VerifyError {
    VerifyError::Malformed(format!("the head cannot be taken apart: {}", why.into()))
}

/// Takes head `text` apart. Refused: a head that is not well formed, one with more than
/// [`MAX_PART_SIGNATURES`] signatures or a signature that is not `EdDSA`, and one that
/// [`head_from_parts`] would not write again byte for byte.
pub fn head_parts(text: &str) -> Result<HeadParts> {
    let split = split(text, MAX_HEAD_LEN)?;
    if split.compact.len() > MAX_PART_SIGNATURES {
        return Err(cannot(format!(
            "{} signatures, more than {MAX_PART_SIGNATURES}",
            split.compact.len()
        )));
    }
    let decoded = split.compact.iter().map(|t| Decoded::parse(t)).collect::<Result<Vec<_>>>()?;
    let mut signatures = Vec::with_capacity(decoded.len());
    for d in &decoded {
        if d.alg != "EdDSA" {
            return Err(cannot(format!("a signature is {}, not EdDSA (Ed25519)", d.alg)));
        }
        let kid = d.kid.clone().ok_or_else(|| cannot("a signature names no kid"))?;
        let bytes = URL_SAFE_NO_PAD
            .decode(d.signature)
            .map_err(|_| cannot("a signature is not base64url"))?;
        let bytes: [u8; 64] =
            bytes.try_into().map_err(|_| cannot("a signature is not 64 bytes"))?;
        signatures.push((kid, bytes));
    }
    let claims = &decoded.first().ok_or_else(|| cannot("no signature"))?.claims;
    let text_claim = |name: &'static str| match claims.get(name) {
        Some(Value::String(s)) => Ok(s.clone()),
        _ => Err(cannot(format!("'{name}' is not a string"))),
    };
    let number = |name: &'static str| {
        claims.get(name).and_then(Value::as_u64).ok_or_else(|| cannot(format!("no '{name}'")))
    };
    let parts = HeadParts {
        issuer: text_claim("iss")?,
        network: text_claim("aud")?,
        seq: number("seq")?,
        bundle: text_claim("bundle")?.parse().map_err(|_| cannot("'bundle' is not an identity"))?,
        magnet: text_claim("magnet")?,
        state_root: text_claim("state_root")?
            .parse()
            .map_err(|_| cannot("'state_root' is not a hash"))?,
        issued_at: number("iat")?,
        expires_at: number("exp")?,
        snapshot: match claims.get("snapshot") {
            None => None,
            Some(v) => {
                Some(serde_json::from_value(v.clone()).map_err(|_| {
                    cannot("'snapshot' is not {\"seq\", \"state_root\", \"magnet\"}")
                })?)
            }
        },
        signatures,
    };
    let again = head_from_parts(&parts).map_err(|e| cannot(e.to_string()))?;
    if again != text {
        return Err(cannot("it is not written as swarmvm writes heads"));
    }
    Ok(parts)
}

/// Writes the head `parts` hold, byte for byte as [`sign_head`](crate::sign_head) wrote it:
/// compact for one signature, JWS JSON (general) for more.
pub fn head_from_parts(parts: &HeadParts) -> Result<String, IssueError> {
    if parts.signatures.is_empty() {
        return Err(IssueError::Signing("a head needs at least one signature".into()));
    }
    let claims = HeadClaims {
        iss: parts.issuer.clone(),
        aud: &parts.network,
        seq: parts.seq,
        bundle: parts.bundle,
        magnet: &parts.magnet,
        state_root: parts.state_root.to_hex(),
        iat: parts.issued_at,
        exp: parts.expires_at,
        snapshot: parts.snapshot.as_ref(),
    };
    let payload = encode_payload(&claims)?;
    let signatures = parts
        .signatures
        .iter()
        .map(|(kid, sig)| {
            let protected =
                protected_header(Kind::Head, jsonwebtoken::Algorithm::EdDSA, kid.clone())?;
            Ok((protected, URL_SAFE_NO_PAD.encode(sig)))
        })
        .collect::<Result<Vec<_>, IssueError>>()?;
    Ok(write(&payload, &signatures))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AuthoritySet, HeadContent, sign_head, verify_head};
    use swarmvm_wallet::{Algorithm, Wallet};

    fn content<'a>(net: &'a str, snapshot: Option<&'a SnapshotClaim>) -> HeadContent<'a> {
        HeadContent {
            network: net,
            seq: 9,
            bundle: BundleId::of_payload(b"b9"),
            magnet: "magnet:?xt=urn:btih:0123456789abcdef0123456789abcdef01234567&dn=bundle-9",
            state_root: Hash32::digest(b"root"),
            now: 1_000,
            max_age: 60,
            snapshot,
        }
    }

    #[test]
    fn heads_of_one_and_of_several_signatures_come_apart_and_back_byte_for_byte() {
        let w: Vec<Wallet> =
            (0..3).map(|_| Wallet::generate(Algorithm::Ed25519).unwrap()).collect();
        let set = AuthoritySet::new(w.iter().map(|k| k.public_key().clone()).collect(), 2).unwrap();
        let net = set.network_id().to_string();
        let snapshot = SnapshotClaim {
            seq: 8,
            state_root: Hash32::digest(b"r8"),
            magnet: "magnet:?xt=urn:btih:89abcdef0123456789abcdef0123456789abcdef".into(),
        };
        for (signers, snap) in [
            (vec![&w[0]], None),
            (vec![&w[2], &w[0]], Some(&snapshot)),
            (vec![&w[0], &w[1], &w[2]], None),
        ] {
            let head = sign_head(&signers, &content(&net, snap)).unwrap();
            let parts = head_parts(&head).unwrap();
            assert_eq!(parts.signatures.len(), signers.len());
            assert_eq!(parts.issuer, signers[0].id().to_string());
            assert_eq!(parts.snapshot.as_ref(), snap);
            assert_eq!(head_from_parts(&parts).unwrap(), head);
            if signers.len() >= 2 {
                verify_head(&head_from_parts(&parts).unwrap(), &net, &set, 1_010).unwrap();
            }
            // A changed part gives a head whose signatures no longer hold.
            let mut changed = parts.clone();
            changed.seq += 1;
            if signers.len() >= 2 {
                let e = verify_head(&head_from_parts(&changed).unwrap(), &net, &set, 1_010);
                assert!(e.is_err());
            }
        }
    }

    #[test]
    fn heads_that_cannot_be_rebuilt_exactly_are_refused() {
        let w: Vec<Wallet> =
            (0..8).map(|_| Wallet::generate(Algorithm::Ed25519).unwrap()).collect();
        let net = "net";
        let all: Vec<&Wallet> = w.iter().collect();
        let e = head_parts(&sign_head(&all, &content(net, None)).unwrap()).unwrap_err();
        assert!(e.to_string().contains("8 signatures"), "{e}");
        let rsa = Wallet::generate(Algorithm::Rsa2048).unwrap();
        let e = head_parts(&sign_head(&[&w[0], &rsa], &content(net, None)).unwrap()).unwrap_err();
        assert!(e.to_string().contains("not EdDSA"), "{e}");
        // The same head with its JSON written with spaces: its signatures hold, but it is not
        // written as heads are, so it is refused rather than carried changed.
        let head = sign_head(&[&w[0], &w[1]], &content(net, None)).unwrap();
        let spaced = head.replacen("\"payload\":", "\"payload\": ", 1);
        let e = head_parts(&spaced).unwrap_err();
        assert!(e.to_string().contains("not written as swarmvm writes heads"), "{e}");
        assert!(head_parts("a.b").is_err());
    }
}
