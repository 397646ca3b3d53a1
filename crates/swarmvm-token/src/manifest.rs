//! Bundle manifests: the authority's signed list of a bundle's files, with its place in the
//! sequence (`seq`, `parent`).

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Map, Value};
use swarmvm_primitives::{BundleId, Hash32};
use swarmvm_wallet::Wallet;

use crate::error::{IssueError, Result, VerifyError};
use crate::jws::{Decoded, Signer, sign};
use crate::kind::{Kind, shorten};
use crate::time::numeric_date;
use crate::trust::TrustStore;

/// The files a bundle holds besides its manifest, in the order they are listed.
pub const BUNDLE_FILES: [&str; 2] = ["contracts.jsonl", "registration_tokens.txt"];
/// The manifest's own file name.
pub const MANIFEST_FILE: &str = "manifest.jwt";
/// The largest size a manifest may declare for a file (256 MiB).
pub const MAX_BUNDLE_FILE: u64 = 256 * 1024 * 1024;
/// Most WebAssembly modules one bundle may carry.
pub const MAX_MODULES: usize = 64;
/// The largest module file, in bytes (1 MiB).
pub const MAX_MODULE_FILE: u64 = 1024 * 1024;
/// The largest `seq` (2^53 − 1).
pub const MAX_SEQ: u64 = (1 << 53) - 1;

/// Size and SHA-256 of one bundle file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileDigest {
    /// Bytes.
    pub size: u64,
    /// Its SHA-256 (lowercase hex in the manifest).
    pub sha256: Hash32,
}

/// A manifest whose signature and content verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedManifest {
    /// The bundle's identity: SHA-256 of the JWS payload, the bytes the signature covers.
    pub id: BundleId,
    /// The authority that signed it (its wallet id; the network id).
    pub issuer: String,
    /// When it was signed (Unix seconds); token time rules are checked at this time.
    pub issued_at: u64,
    /// Its place in the sequence, from 1.
    pub seq: u64,
    /// The previous bundle's identity; absent at seq 1.
    pub parent: Option<BundleId>,
    /// The bundle's files by name.
    pub files: BTreeMap<String, FileDigest>,
}

#[derive(Serialize)]
struct ManifestClaims<'a> {
    iss: String,
    iat: u64,
    seq: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    parent: Option<BundleId>,
    files: &'a BTreeMap<String, FileDigest>,
}

fn invalid(claim: impl Into<String>, reason: impl Into<String>) -> VerifyError {
    VerifyError::InvalidClaim { claim: claim.into(), reason: reason.into() }
}

/// The module file name for a module's hash: `modules/<64 lowercase hex>.wasm`.
pub fn module_file(hash: &Hash32) -> String {
    format!("modules/{}.wasm", hash.to_hex())
}

/// The hash a module file name carries, if it is `modules/<64 lowercase hex>.wasm`.
pub fn module_hash(name: &str) -> Option<Hash32> {
    let hex = name.strip_prefix("modules/")?.strip_suffix(".wasm")?;
    hex.parse().ok()
}

/// Signs a manifest by the authority `wallet`. `files` must name exactly [`BUNDLE_FILES`]
/// and any number (up to [`MAX_MODULES`]) of [`module_file`]s.
pub fn sign_manifest(
    wallet: &Wallet,
    seq: u64,
    parent: Option<BundleId>,
    files: &BTreeMap<String, FileDigest>,
    now: u64,
) -> Result<String, IssueError> {
    check_shape(seq, parent, files)?;
    let claims = ManifestClaims { iss: wallet.id().to_string(), iat: now, seq, parent, files };
    sign(&Signer::Wallet(wallet), Kind::Manifest, &claims)
}

fn check_shape(
    seq: u64,
    parent: Option<BundleId>,
    files: &BTreeMap<String, FileDigest>,
) -> Result<()> {
    if !(1..=MAX_SEQ).contains(&seq) {
        return Err(invalid("seq", format!("{seq} is not from 1 to 2^53-1")));
    }
    match (seq, parent) {
        (1, Some(_)) => return Err(invalid("parent", "the first bundle (seq 1) has no parent")),
        (s, None) if s > 1 => {
            return Err(invalid("parent", format!("bundle seq {s} needs a parent")));
        }
        _ => {}
    }
    let modules: Vec<&String> = files.keys().filter(|n| n.starts_with("modules/")).collect();
    let names: Vec<&str> =
        files.keys().map(String::as_str).filter(|n| !n.starts_with("modules/")).collect();
    if names != BUNDLE_FILES {
        return Err(invalid(
            "files",
            format!(
                "must list exactly {} and {}, and modules/<sha256>.wasm files",
                BUNDLE_FILES[1], BUNDLE_FILES[0]
            ),
        ));
    }
    if modules.len() > MAX_MODULES {
        return Err(invalid("files", format!("more than {MAX_MODULES} modules")));
    }
    for name in modules {
        let hash = module_hash(name).ok_or_else(|| {
            invalid(format!("files.{}", shorten(name)), "is not modules/<64 lowercase hex>.wasm")
        })?;
        let digest = &files[name];
        if digest.sha256 != hash {
            return Err(invalid(
                format!("files.{}.sha256", shorten(name)),
                "is not the hash in the module's name",
            ));
        }
        if digest.size > MAX_MODULE_FILE {
            return Err(invalid(
                format!("files.{}.size", shorten(name)),
                format!("{} bytes is more than the {MAX_MODULE_FILE} allowed", digest.size),
            ));
        }
    }
    for (name, digest) in files {
        if digest.size > MAX_BUNDLE_FILE {
            return Err(invalid(
                format!("files.{name}.size"),
                format!("{} bytes is more than the {MAX_BUNDLE_FILE} allowed", digest.size),
            ));
        }
    }
    Ok(())
}

fn parse_files(claims: &Map<String, Value>) -> Result<BTreeMap<String, FileDigest>> {
    let Some(Value::Object(files)) = claims.get("files") else {
        return Err(invalid("files", "not an object of file name to {size, sha256}"));
    };
    let mut out = BTreeMap::new();
    for (name, entry) in files {
        let shown = shorten(name);
        let Value::Object(entry) = entry else {
            return Err(invalid(format!("files.{shown}"), "not an object"));
        };
        if entry.keys().any(|k| k != "size" && k != "sha256") {
            return Err(invalid(
                format!("files.{shown}"),
                "has members other than size and sha256",
            ));
        }
        let size = entry
            .get("size")
            .and_then(Value::as_u64)
            .ok_or_else(|| invalid(format!("files.{shown}.size"), "not a non-negative integer"))?;
        let sha256 = match entry.get("sha256") {
            Some(Value::String(s)) => s.parse::<Hash32>().map_err(|_| {
                invalid(format!("files.{shown}.sha256"), "not a lowercase hex sha-256")
            })?,
            _ => return Err(invalid(format!("files.{shown}.sha256"), "not a string")),
        };
        out.insert(name.clone(), FileDigest { size, sha256 });
    }
    Ok(out)
}

/// Verifies a manifest: strict parsing, the `manifest` kind, a trusted authority's signature
/// with its key's algorithm (HS256 refused), `iat` present, `seq`/`parent` consistent, and
/// `files` listing exactly the bundle's two files with sane sizes and hashes.
pub fn verify_manifest(token: &str, trust: &TrustStore) -> Result<VerifiedManifest> {
    let decoded = Decoded::parse(token)?;
    let kind = Kind::resolve(decoded.typ.as_deref(), &decoded.claims)?;
    if kind != Kind::Manifest {
        return Err(VerifyError::WrongKind { found: kind, expected: "a bundle manifest".into() });
    }
    let (issuer, _alg) = trust.authenticate(&decoded, kind)?;
    let claims = &decoded.claims;
    let issued_at = numeric_date(claims, "iat")?.ok_or(VerifyError::MissingClaim("iat"))?;
    let seq = match claims.get("seq") {
        None => return Err(VerifyError::MissingClaim("seq")),
        Some(v) => v.as_u64().ok_or_else(|| invalid("seq", "not a positive integer"))?,
    };
    let parent = match claims.get("parent") {
        None | Some(Value::Null) => None,
        Some(Value::String(p)) => Some(p.parse::<BundleId>().map_err(|_| {
            invalid("parent", "not a bundle identity (64 lowercase hex characters)")
        })?),
        Some(_) => return Err(invalid("parent", "not a string")),
    };
    let files = parse_files(claims)?;
    check_shape(seq, parent, &files)?;
    let id = BundleId::of_payload(&decoded.payload);
    Ok(VerifiedManifest { id, issuer, issued_at, seq, parent, files })
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use swarmvm_wallet::Algorithm;

    fn files() -> BTreeMap<String, FileDigest> {
        BUNDLE_FILES
            .iter()
            .map(|n| ((*n).to_owned(), FileDigest { size: 3, sha256: Hash32([0xab; 32]) }))
            .collect()
    }

    #[test]
    fn manifest_round_trip_and_sequence_rules() {
        let w = Wallet::generate(Algorithm::Ed25519).unwrap();
        let trust = TrustStore::with_keys([w.public_key()]);
        let m1 = sign_manifest(&w, 1, None, &files(), 1_000).unwrap();
        let v = verify_manifest(&m1, &trust).unwrap();
        assert_eq!((v.seq, v.parent, v.issued_at), (1, None, 1_000));
        assert_eq!(v.issuer, w.id().to_string());
        assert_eq!(v.files, files());
        // The identity is the hash of the signed payload, not of the token's text.
        let payload = m1.split('.').nth(1).unwrap();
        let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap();
        assert_eq!(v.id, BundleId::of_payload(&payload));
        let parent = v.id;
        let m2 = sign_manifest(&w, 2, Some(parent), &files(), 2_000).unwrap();
        assert_eq!(verify_manifest(&m2, &trust).unwrap().parent, Some(parent));
        assert!(sign_manifest(&w, 2, None, &files(), 0).is_err(), "seq 2 needs a parent");
        assert!(sign_manifest(&w, 1, Some(parent), &files(), 0).is_err(), "seq 1 has none");
        assert!(sign_manifest(&w, 0, None, &files(), 0).is_err());
        let mut extra = files();
        extra.insert("evil.sh".into(), FileDigest { size: 1, sha256: Hash32::default() });
        assert!(sign_manifest(&w, 1, None, &extra, 0).is_err());
        let mut huge = files();
        huge.get_mut("contracts.jsonl").unwrap().size = MAX_BUNDLE_FILE + 1;
        assert!(sign_manifest(&w, 1, None, &huge, 0).is_err());
        let err = verify_manifest(&m1, &TrustStore::new()).unwrap_err();
        assert!(matches!(err, VerifyError::UnknownKid(_)), "{err}");
    }
}
