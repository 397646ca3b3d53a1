//! Bundle manifests: the authority's signed list of a bundle's files, with its place in the
//! sequence (`seq`, `parent`).

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Map, Value};
use swarmvm_primitives::{BundleId, Hash32, Rules};
use swarmvm_wallet::Wallet;

use swarmvm_wallet::{PublicKey, WalletId};

use crate::authority::AuthoritySet;
use crate::error::{IssueError, Result, VerifyError};
use crate::jws::{Decoded, Serialization, encode_payload, sign_all, sign_payload, split, write};
use crate::kind::{Kind, shorten};
use crate::time::numeric_date;
use crate::trust::TrustStore;

/// The signed contracts file of a bundle, one contract a line.
pub const CONTRACTS_FILE: &str = "contracts.jsonl";
/// The registration tokens file of a bundle, one token a line.
pub const TOKENS_FILE: &str = "registration_tokens.txt";
/// The files a bundle holds besides its manifest and its modules, in the order a manifest
/// lists them (by name).
pub const BUNDLE_FILES: [&str; 2] = [CONTRACTS_FILE, TOKENS_FILE];
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

/// The largest manifest serialization accepted or written (128 KiB): room for a general JSON
/// serialization with many RSA signatures and a rotation to a large set.
pub const MAX_MANIFEST_LEN: usize = 128 * 1024;

/// A manifest whose signatures and content verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedManifest {
    /// The bundle's identity: SHA-256 of the JWS payload, the bytes every signature covers.
    pub id: BundleId,
    /// The authority that made it (`iss`; one of its signers).
    pub issuer: String,
    /// The distinct keys whose signatures verified, by wallet id, sorted: members of the set
    /// in force, and keys that a rotation adds.
    pub signers: Vec<String>,
    /// When it was signed (Unix seconds); token time rules are checked at this time.
    pub issued_at: u64,
    /// Its place in the sequence, from 1.
    pub seq: u64,
    /// The previous bundle's identity; absent at seq 1.
    pub parent: Option<BundleId>,
    /// The bundle's files by name.
    pub files: BTreeMap<String, FileDigest>,
    /// Its `aud`, the network id; absent only on first-version manifests.
    pub audience: Option<String>,
    /// The authority set it puts in force from the next bundle (a rotation).
    pub authority_set: Option<AuthoritySet>,
    /// The canonical text of the set its signatures were counted against.
    pub verified_against: String,
    /// The rules it is verified and executed under (`rules`; version 1 when absent).
    pub rules: Rules,
    /// The info-hash of its parent's torrent, when it names one (`parent_info_hash`).
    pub parent_info_hash: Option<[u8; 20]>,
}

/// What a manifest claims besides its signer and time.
#[derive(Debug, Clone, Copy)]
pub struct ManifestContent<'a> {
    /// Its `seq`.
    pub seq: u64,
    /// Its parent's identity (absent at seq 1).
    pub parent: Option<BundleId>,
    /// The info-hash of its parent's torrent (`parent_info_hash`, optional; absent at seq 1):
    /// a node that knows only the newest bundle walks back to the first through the swarm.
    pub parent_info_hash: Option<[u8; 20]>,
    /// Its files.
    pub files: &'a BTreeMap<String, FileDigest>,
    /// The network id (`aud`).
    pub network: &'a str,
    /// A rotation: the set in force from the next bundle.
    pub authority_set: Option<&'a AuthoritySet>,
    /// `iat`, Unix seconds.
    pub now: u64,
    /// The rules it names (`rules`, written only above version 1, so a version-1 manifest
    /// has the second wave's bytes).
    pub rules: Rules,
}

#[derive(Serialize)]
pub(crate) struct ManifestClaims<'a> {
    iss: String,
    aud: &'a str,
    iat: u64,
    seq: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    parent: Option<BundleId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    parent_info_hash: Option<String>,
    files: &'a BTreeMap<String, FileDigest>,
    #[serde(skip_serializing_if = "Option::is_none")]
    authority_set: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rules: Option<u64>,
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

/// Signs a manifest with every wallet of `signers` (the first is its `iss`): compact for one
/// signature, the general JSON serialization for several. `files` must name exactly
/// [`BUNDLE_FILES`] and any number (up to [`MAX_MODULES`]) of [`module_file`]s.
pub fn sign_manifest(
    signers: &[&Wallet],
    content: &ManifestContent<'_>,
) -> Result<String, IssueError> {
    let Some(first) = signers.first() else {
        return Err(IssueError::Signing("a manifest needs at least one signer".into()));
    };
    let claims = manifest_claims(first.id().as_str(), content)?;
    finish(sign_all(signers, Kind::Manifest, &encode_payload(&claims)?)?)
}

/// A manifest's claims, `iss` being `issuer`, after checking the shape of `content`.
pub(crate) fn manifest_claims<'a>(
    issuer: &str,
    content: &ManifestContent<'a>,
) -> Result<ManifestClaims<'a>, IssueError> {
    check_shape(content.seq, content.parent, content.files)?;
    if content.parent.is_none() && content.parent_info_hash.is_some() {
        return Err(invalid("parent_info_hash", "the first bundle (seq 1) has no parent").into());
    }
    Ok(ManifestClaims {
        iss: issuer.to_owned(),
        aud: content.network,
        iat: content.now,
        seq: content.seq,
        parent: content.parent,
        parent_info_hash: content.parent_info_hash.map(|h| hex20(&h)),
        files: content.files,
        authority_set: content.authority_set.map(AuthoritySet::to_json),
        rules: (content.rules != Rules::V1).then(|| content.rules.number()),
    })
}

/// Adds `wallet`'s signature to a manifest (any serialization), written as general JSON. The
/// payload, and so the bundle's identity, is unchanged. Refused when `wallet` already signed.
pub fn add_manifest_signature(manifest: &str, wallet: &Wallet) -> Result<String, IssueError> {
    let split = split(manifest, MAX_MANIFEST_LEN)?;
    let mut signatures = Vec::with_capacity(split.compact.len() + 1);
    for token in &split.compact {
        let decoded = Decoded::parse(token)?;
        if decoded.kid.as_deref() == Some(wallet.id().as_str()) {
            return Err(IssueError::Signing(format!("{} has already signed it", wallet.id())));
        }
        let mut parts = token.split('.');
        let (Some(protected), _, Some(signature)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(VerifyError::Malformed("not a JWS".into()).into());
        };
        signatures.push((protected.to_owned(), signature.to_owned()));
    }
    signatures.push(sign_payload(wallet, Kind::Manifest, &split.payload)?);
    finish(write(&split.payload, &signatures))
}

fn finish(text: String) -> Result<String, IssueError> {
    if text.len() > MAX_MANIFEST_LEN {
        return Err(IssueError::TooLarge { size: text.len(), max: MAX_MANIFEST_LEN });
    }
    // Each signature is checked as the compact token it stands for, which has a size limit.
    for token in split(&text, MAX_MANIFEST_LEN)?.compact {
        if token.len() > crate::jws::MAX_TOKEN_LEN {
            return Err(IssueError::TooLarge { size: token.len(), max: crate::jws::MAX_TOKEN_LEN });
        }
    }
    Ok(text)
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
                "must list exactly {TOKENS_FILE} and {CONTRACTS_FILE}, and modules/<sha256>.wasm files"
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

/// What a manifest says of itself, read without checking its signatures: for tools that
/// handle their own bundles (`bundle create --after`, `bundle sign`), never for trust.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestPeek {
    /// The bundle's identity.
    pub id: BundleId,
    /// Its `seq`.
    pub seq: u64,
    /// Its `iat`.
    pub issued_at: u64,
    /// Its `iss`.
    pub issuer: String,
    /// Its `aud`, when present.
    pub audience: Option<String>,
    /// The `kid` of each signature, in order.
    pub signers: Vec<String>,
    /// The rotation it claims (`authority_set`), if any.
    pub authority_set: Option<AuthoritySet>,
    /// The rules version it names.
    pub rules: Rules,
    /// The info-hash of its parent's torrent, when it names one (`parent_info_hash`).
    pub parent_info_hash: Option<[u8; 20]>,
}

/// Reads a manifest's claims and signers without checking the signatures.
pub fn peek_manifest(text: &str) -> Result<ManifestPeek> {
    let split = split(text, MAX_MANIFEST_LEN)?;
    let decoded = split.compact.iter().map(|t| Decoded::parse(t)).collect::<Result<Vec<_>>>()?;
    let claims = &decoded[0].claims;
    let text_claim = |name: &'static str| match claims.get(name) {
        Some(Value::String(s)) => Ok(Some(s.clone())),
        None => Ok(None),
        Some(_) => Err(invalid(name, "not a string")),
    };
    Ok(ManifestPeek {
        id: BundleId::of_payload(&decoded[0].payload),
        seq: claims.get("seq").and_then(Value::as_u64).ok_or(VerifyError::MissingClaim("seq"))?,
        issued_at: numeric_date(claims, "iat")?.ok_or(VerifyError::MissingClaim("iat"))?,
        issuer: text_claim("iss")?.ok_or(VerifyError::MissingClaim("iss"))?,
        audience: text_claim("aud")?,
        signers: decoded.iter().filter_map(|d| d.kid.clone()).collect(),
        authority_set: claims
            .get("authority_set")
            .map(|v| {
                AuthoritySet::from_json(v).map_err(|e| invalid("authority_set", e.to_string()))
            })
            .transpose()?,
        rules: rules_claim(claims)?,
        parent_info_hash: parent_info_hash_claim(claims)?,
    })
}

/// 40 lowercase hex characters.
fn hex20(bytes: &[u8; 20]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The `parent_info_hash` claim: absent, or 40 lowercase hex characters.
fn parent_info_hash_claim(claims: &Map<String, Value>) -> Result<Option<[u8; 20]>> {
    let bad = || invalid("parent_info_hash", "not an info-hash (40 lowercase hex characters)");
    match claims.get("parent_info_hash") {
        None => Ok(None),
        Some(Value::String(s))
            if s.len() == 40 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) =>
        {
            let mut out = [0u8; 20];
            for (i, byte) in out.iter_mut().enumerate() {
                *byte = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
            }
            Ok(Some(out))
        }
        Some(_) => Err(bad()),
    }
}

/// Checks every signature's protected header of a JWS of `kind`: the claims are of `kind`, no
/// HS256, and in a JSON serialization `typ` and `kid` present.
pub(crate) fn check_signature_headers(
    decoded: &[Decoded<'_>],
    kind: Kind,
    json: bool,
) -> Result<()> {
    for d in decoded {
        let found = Kind::resolve(d.typ.as_deref(), &d.claims)?;
        if found != kind {
            return Err(VerifyError::WrongKind { found, expected: format!("a {kind} token") });
        }
        if d.alg.eq_ignore_ascii_case("HS256") {
            return Err(VerifyError::Hs256NotAllowed(kind));
        }
        if json && d.typ.as_deref() != Some(kind.typ()) {
            return Err(VerifyError::Malformed(format!(
                "every signature of a JSON {kind} has typ '{}' in its protected header",
                kind.typ()
            )));
        }
        if json && d.kid.is_none() {
            return Err(VerifyError::Malformed(format!(
                "every signature of a JSON {kind} names its signer with 'kid'"
            )));
        }
    }
    Ok(())
}

/// Authenticates every signature against `pool` (the set in force, with any keys a rotation
/// adds): a signer outside it, a bad signature or a signer twice is refused. Returns the
/// signers' ids in order. `iss` must name the signer of a compact token (`json` false).
pub(crate) fn authenticate_all(
    decoded: &[Decoded<'_>],
    kind: Kind,
    pool: &TrustStore,
    json: bool,
) -> Result<Vec<String>> {
    let mut signers: Vec<String> = Vec::with_capacity(decoded.len());
    for d in decoded {
        let signer = d.kid.as_deref().or_else(|| d.claims.get("iss").and_then(Value::as_str));
        if let Some(s) = signer
            && pool.get_str(s).is_none()
        {
            return Err(VerifyError::NotAMember(shorten(s)));
        }
        let (signer, _alg) = pool.authenticate_signature(d, kind, !json)?;
        if signers.contains(&signer) {
            return Err(VerifyError::DuplicateSigner(shorten(&signer)));
        }
        signers.push(signer);
    }
    Ok(signers)
}

/// Refuses fewer than `set.threshold()` distinct members of `set` among `signers`.
pub(crate) fn check_threshold(signers: &[String], set: &AuthoritySet) -> Result<()> {
    let members = signers.iter().filter(|s| set.contains(s)).count();
    if members < set.threshold() {
        return Err(VerifyError::ThresholdNotMet {
            have: members,
            need: set.threshold(),
            of: set.len(),
        });
    }
    Ok(())
}

/// Verifies a manifest of network `network` against `set`, the authority set in force before
/// its bundle: strict parsing of any serialization (compact, general or flattened JSON); for
/// every signature the manifest `typ`, a protected header naming its signer (`kid`, required
/// for JSON), a key of the set (or one a rotation in it adds) with that key's algorithm, no
/// signer twice; at least `set.threshold()` distinct members; every key a rotation adds among
/// the signers; `iss` a member (the signer itself, for a compact manifest); `aud` the network
/// (absent only on manifests of a first-version network of one key); `iat`; `seq`/`parent`
/// consistent; and `files` listing exactly the bundle's files with sane sizes and hashes.
pub fn verify_manifest(text: &str, network: &str, set: &AuthoritySet) -> Result<VerifiedManifest> {
    let split = split(text, MAX_MANIFEST_LEN)?;
    let json = split.form != Serialization::Compact;
    let decoded = split.compact.iter().map(|t| Decoded::parse(t)).collect::<Result<Vec<_>>>()?;
    check_signature_headers(&decoded, Kind::Manifest, json)?;
    let first = &decoded[0];
    let claims = &first.claims;
    let rotation = match claims.get("authority_set") {
        None => None,
        Some(v) => {
            Some(AuthoritySet::from_json(v).map_err(|e| invalid("authority_set", e.to_string()))?)
        }
    };
    let added: Vec<(&WalletId, &PublicKey)> = rotation
        .iter()
        .flat_map(AuthoritySet::members)
        .filter(|(id, _)| !set.contains(id.as_str()))
        .collect();
    let extended;
    let pool = if added.is_empty() {
        set.trust()
    } else {
        let mut with_added = set.trust().clone();
        for (_, key) in &added {
            with_added.add((*key).clone());
        }
        extended = with_added;
        &extended
    };
    let mut signers = authenticate_all(&decoded, Kind::Manifest, pool, json)?;
    // `iss` names the member that made the manifest; other members may sign it later.
    let issuer = match claims.get("iss") {
        Some(Value::String(s)) if set.contains(s) => s.clone(),
        Some(Value::String(s)) => {
            return Err(invalid(
                "iss",
                format!("{} is not a member of the authority set", shorten(s)),
            ));
        }
        Some(_) => return Err(invalid("iss", "not a string")),
        None => return Err(VerifyError::MissingClaim("iss")),
    };
    check_threshold(&signers, set)?;
    if let Some((id, _)) = added.iter().find(|(id, _)| !signers.iter().any(|s| s == id.as_str())) {
        return Err(invalid(
            "authority_set",
            format!("adds key {id}, which has not signed the manifest"),
        ));
    }
    let audience = match claims.get("aud") {
        Some(Value::String(aud)) if aud == network => Some(aud.clone()),
        Some(Value::String(aud)) => {
            return Err(VerifyError::ManifestAudience {
                aud: shorten(aud),
                network: shorten(network),
            });
        }
        Some(_) => return Err(invalid("aud", "not a string")),
        None if set.sole_member().is_some_and(|m| m.as_str() == network) => None,
        None => return Err(VerifyError::MissingClaim("aud")),
    };
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
    let parent_info_hash = parent_info_hash_claim(claims)?;
    if parent_info_hash.is_some() && parent.is_none() {
        return Err(invalid("parent_info_hash", "the first bundle (seq 1) has no parent"));
    }
    let rules = rules_claim(claims)?;
    let id = BundleId::of_payload(&first.payload);
    signers.sort();
    Ok(VerifiedManifest {
        id,
        issuer,
        signers,
        issued_at,
        seq,
        parent,
        files,
        audience,
        authority_set: rotation,
        verified_against: set.canonical().to_owned(),
        rules,
        parent_info_hash,
    })
}

/// The `rules` claim: absent means version 1; a version this build does not know is refused.
fn rules_claim(claims: &Map<String, Value>) -> Result<Rules> {
    match claims.get("rules") {
        None => Ok(Rules::V1),
        Some(v) => {
            let n = v.as_u64().ok_or_else(|| invalid("rules", "not a positive integer"))?;
            Rules::new(n).map_err(|e| invalid("rules", e.to_string()))
        }
    }
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

    fn content<'a>(
        files: &'a BTreeMap<String, FileDigest>,
        network: &'a str,
        seq: u64,
        parent: Option<BundleId>,
        now: u64,
    ) -> ManifestContent<'a> {
        ManifestContent {
            seq,
            parent,
            parent_info_hash: None,
            files,
            network,
            authority_set: None,
            now,
            rules: Rules::CURRENT,
        }
    }

    /// A manifest of seq `seq` (with a parent after 1) signed by `w` whose claim `name` is
    /// `value`, as another writer might make it.
    fn with_claim(
        w: &Wallet,
        net: &str,
        files: &BTreeMap<String, FileDigest>,
        (seq, parent): (u64, Option<BundleId>),
        (name, value): (&str, Value),
    ) -> String {
        let mut claims = serde_json::to_value(ManifestClaims {
            iss: w.id().to_string(),
            aud: net,
            iat: 5,
            seq,
            parent,
            parent_info_hash: None,
            files,
            authority_set: None,
            rules: None,
        })
        .unwrap();
        claims[name] = value;
        finish(sign_all(&[w], Kind::Manifest, &encode_payload(&claims).unwrap()).unwrap()).unwrap()
    }

    #[test]
    fn the_rules_claim_names_a_known_version_and_absent_is_version_1() {
        let w = Wallet::generate(Algorithm::Ed25519).unwrap();
        let set = AuthoritySet::single(w.public_key().clone());
        let net = w.id().to_string();
        let f = files();
        let v1 = ManifestContent { rules: Rules::V1, ..content(&f, &net, 1, None, 5) };
        let m1 = sign_manifest(&[&w], &v1).unwrap();
        let payload = m1.split('.').nth(1).unwrap();
        let claims = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap();
        assert!(!String::from_utf8(claims).unwrap().contains("rules"), "absent for version 1");
        assert_eq!(verify_manifest(&m1, &net, &set).unwrap().rules, Rules::V1);
        let m2 = sign_manifest(&[&w], &content(&f, &net, 1, None, 5)).unwrap();
        assert_eq!(verify_manifest(&m2, &net, &set).unwrap().rules, Rules::CURRENT);
        // Claims another build might write: a version this one does not know, or junk.
        for (rules, says) in [
            (serde_json::json!(5), "rules version 5 is not known here"),
            (serde_json::json!(0), "rules version 0 is not known here"),
            (serde_json::json!("2"), "not a positive integer"),
        ] {
            let token = with_claim(&w, &net, &f, (1, None), ("rules", rules));
            let err = verify_manifest(&token, &net, &set).unwrap_err().to_string();
            assert!(err.contains("invalid claim 'rules'") && err.contains(says), "{err}");
        }
    }

    #[test]
    fn a_manifest_may_name_its_parents_torrent_and_a_malformed_one_is_refused() {
        let w = Wallet::generate(Algorithm::Ed25519).unwrap();
        let set = AuthoritySet::single(w.public_key().clone());
        let net = w.id().to_string();
        let f = files();
        let parent = Some(BundleId::of_payload(b"parent"));
        let ih = [0x3c; 20];
        let named =
            ManifestContent { parent_info_hash: Some(ih), ..content(&f, &net, 2, parent, 5) };
        let m = sign_manifest(&[&w], &named).unwrap();
        assert_eq!(verify_manifest(&m, &net, &set).unwrap().parent_info_hash, Some(ih));
        assert_eq!(peek_manifest(&m).unwrap().parent_info_hash, Some(ih));
        let payload = m.split('.').nth(1).unwrap();
        let claims = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap();
        assert!(
            String::from_utf8(claims)
                .unwrap()
                .contains(&format!("\"parent_info_hash\":\"{}\"", "3c".repeat(20)))
        );
        // Absent when not given; never at seq 1.
        let plain = sign_manifest(&[&w], &content(&f, &net, 2, parent, 5)).unwrap();
        assert_eq!(verify_manifest(&plain, &net, &set).unwrap().parent_info_hash, None);
        let first = ManifestContent { parent_info_hash: Some(ih), ..content(&f, &net, 1, None, 5) };
        assert!(sign_manifest(&[&w], &first).is_err());
        // What another writer might put there.
        for (value, seq) in [
            (serde_json::json!("3C".repeat(20)), 2),
            (serde_json::json!("3c".repeat(19)), 2),
            (serde_json::json!(7), 2),
            (serde_json::json!("3c".repeat(20)), 1),
        ] {
            let position = (seq, if seq == 1 { None } else { parent });
            let token = with_claim(&w, &net, &f, position, ("parent_info_hash", value));
            let err = verify_manifest(&token, &net, &set).unwrap_err().to_string();
            assert!(err.contains("invalid claim 'parent_info_hash'"), "{err}");
        }
    }

    #[test]
    fn manifest_round_trip_and_sequence_rules() {
        let w = Wallet::generate(Algorithm::Ed25519).unwrap();
        let set = AuthoritySet::single(w.public_key().clone());
        let net = w.id().to_string();
        let f = files();
        let m1 = sign_manifest(&[&w], &content(&f, &net, 1, None, 1_000)).unwrap();
        let v = verify_manifest(&m1, &net, &set).unwrap();
        assert_eq!((v.seq, v.parent, v.issued_at), (1, None, 1_000));
        assert_eq!(v.issuer, w.id().to_string());
        assert_eq!(v.signers, vec![w.id().to_string()]);
        assert_eq!(v.files, files());
        // The identity is the hash of the signed payload, not of the token's text.
        let payload = m1.split('.').nth(1).unwrap();
        let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap();
        assert_eq!(v.id, BundleId::of_payload(&payload));
        let parent = v.id;
        let m2 = sign_manifest(&[&w], &content(&f, &net, 2, Some(parent), 2_000)).unwrap();
        assert_eq!(verify_manifest(&m2, &net, &set).unwrap().parent, Some(parent));
        assert!(
            sign_manifest(&[&w], &content(&f, &net, 2, None, 0)).is_err(),
            "seq 2 needs a parent"
        );
        assert!(
            sign_manifest(&[&w], &content(&f, &net, 1, Some(parent), 0)).is_err(),
            "seq 1 has none"
        );
        assert!(sign_manifest(&[&w], &content(&f, &net, 0, None, 0)).is_err());
        let mut extra = files();
        extra.insert("evil.sh".into(), FileDigest { size: 1, sha256: Hash32::default() });
        assert!(sign_manifest(&[&w], &content(&extra, &net, 1, None, 0)).is_err());
        let mut huge = files();
        huge.get_mut("contracts.jsonl").unwrap().size = MAX_BUNDLE_FILE + 1;
        assert!(sign_manifest(&[&w], &content(&huge, &net, 1, None, 0)).is_err());
        let other = AuthoritySet::single(
            Wallet::generate(Algorithm::Ed25519).unwrap().public_key().clone(),
        );
        let err = verify_manifest(&m1, &net, &other).unwrap_err();
        assert!(matches!(err, VerifyError::NotAMember(_)), "{err}");
        let err = verify_manifest(&m1, "another-network", &set).unwrap_err();
        assert!(matches!(err, VerifyError::ManifestAudience { .. }), "{err}");
    }

    #[test]
    fn threshold_signatures_and_added_signatures_keep_the_identity() {
        let w: Vec<Wallet> =
            (0..4).map(|_| Wallet::generate(Algorithm::Ed25519).unwrap()).collect();
        let set =
            AuthoritySet::new(w[..3].iter().map(|w| w.public_key().clone()).collect(), 2).unwrap();
        let net = set.network_id().to_string();
        let f = files();
        let one = sign_manifest(&[&w[0]], &content(&f, &net, 1, None, 5)).unwrap();
        let err = verify_manifest(&one, &net, &set).unwrap_err();
        assert!(matches!(err, VerifyError::ThresholdNotMet { have: 1, need: 2, of: 3 }), "{err}");
        let two = add_manifest_signature(&one, &w[1]).unwrap();
        assert!(two.starts_with('{') && !two.contains('\n'));
        let v = verify_manifest(&two, &net, &set).unwrap();
        assert_eq!(
            v.id,
            verify_manifest(
                &sign_manifest(&[&w[0], &w[1]], &content(&f, &net, 1, None, 5)).unwrap(),
                &net,
                &set
            )
            .unwrap()
            .id
        );
        assert_eq!(v.signers.len(), 2);
        assert!(add_manifest_signature(&two, &w[1]).is_err(), "a signer twice");
        let outsider = add_manifest_signature(&one, &w[3]).unwrap();
        let err = verify_manifest(&outsider, &net, &set).unwrap_err();
        assert!(matches!(err, VerifyError::NotAMember(_)), "{err}");
        // The same signature twice, written by hand.
        let mut dup: Value = serde_json::from_str(&two).unwrap();
        let first = dup["signatures"][0].clone();
        dup["signatures"][1] = first;
        let err = verify_manifest(&dup.to_string(), &net, &set).unwrap_err();
        assert!(matches!(err, VerifyError::DuplicateSigner(_)), "{err}");
        // An unprotected header is refused.
        let mut unprotected: Value = serde_json::from_str(&two).unwrap();
        unprotected["signatures"][0]["header"] = serde_json::json!({"kid": "x"});
        let err = verify_manifest(&unprotected.to_string(), &net, &set).unwrap_err();
        assert!(err.to_string().contains("unprotected"), "{err}");
        // Flattened JSON of one signature is accepted as input.
        let parts: Vec<&str> = one.split('.').collect();
        let flat =
            serde_json::json!({"protected": parts[0], "payload": parts[1], "signature": parts[2]});
        let three = add_manifest_signature(&flat.to_string(), &w[2]).unwrap();
        assert_eq!(verify_manifest(&three, &net, &set).unwrap().id, v.id);
    }

    #[test]
    fn rotation_needs_the_old_threshold_and_every_added_key() {
        let w: Vec<Wallet> =
            (0..4).map(|_| Wallet::generate(Algorithm::Ed25519).unwrap()).collect();
        let key = |i: usize| w[i].public_key().clone();
        let old = AuthoritySet::new(vec![key(0), key(1), key(2)], 2).unwrap();
        let new = AuthoritySet::new(vec![key(1), key(2), key(3)], 2).unwrap();
        let net = old.network_id().to_string();
        let f = files();
        let rotate = ManifestContent { authority_set: Some(&new), ..content(&f, &net, 1, None, 5) };
        let ok = sign_manifest(&[&w[0], &w[1], &w[3]], &rotate).unwrap();
        assert_eq!(verify_manifest(&ok, &net, &old).unwrap().authority_set, Some(new.clone()));
        let err = verify_manifest(&sign_manifest(&[&w[0], &w[1]], &rotate).unwrap(), &net, &old)
            .unwrap_err();
        assert!(err.to_string().contains("has not signed"), "{err}");
        // The added key does not count towards the old threshold.
        let err = verify_manifest(&sign_manifest(&[&w[0], &w[3]], &rotate).unwrap(), &net, &old)
            .unwrap_err();
        assert!(matches!(err, VerifyError::ThresholdNotMet { have: 1, .. }), "{err}");
    }
}
