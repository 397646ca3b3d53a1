//! Bundle folders: `registration_tokens.txt`, `contracts.jsonl` and `manifest.jwt`, the
//! authority's signed list of the other two with their sizes and SHA-256.

use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::{Path, PathBuf};

use swarmvm_token::{
    BUNDLE_FILES, FileDigest, MANIFEST_FILE, MAX_BUNDLE_FILE, MAX_TOKEN_LEN, TimeCheck, TrustStore,
    VerifiedManifest, VerifyError, sign_manifest, verify_manifest, verify_registration,
};
use swarmvm_vm::{HANDLER_NAMES, Hash32};
use swarmvm_wallet::Wallet;

/// The registration tokens file.
pub const TOKENS_FILE: &str = "registration_tokens.txt";
/// The signed contracts file.
pub const CONTRACTS_FILE: &str = "contracts.jsonl";

/// Why a bundle folder cannot be used. Every variant but `Io` is a refusal of the bundle.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BundleError {
    /// A file could not be read or written.
    #[error("{action} {}", path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The manifest did not verify.
    #[error("manifest refused")]
    Manifest(#[source] VerifyError),
    /// A registration token did not verify when the bundle was made.
    #[error("registration token {line} refused")]
    Token {
        /// Its line (1-based).
        line: usize,
        /// Why.
        #[source]
        source: VerifyError,
    },
    /// A file that a bundle must not hold.
    #[error(
        "bundle holds an unexpected entry '{0}'; a bundle holds exactly registration_tokens.txt, contracts.jsonl and manifest.jwt"
    )]
    UnexpectedEntry(String),
    /// A file the bundle must hold.
    #[error("bundle has no {0}")]
    Missing(&'static str),
    /// A file whose size is not the manifest's.
    #[error("{file} has {actual} bytes but the manifest says {declared}")]
    SizeMismatch {
        /// The file.
        file: String,
        /// The manifest's size.
        declared: u64,
        /// The size on disk.
        actual: u64,
    },
    /// A file whose SHA-256 is not the manifest's.
    #[error("{0} does not match the manifest's sha-256 (changed after signing)")]
    HashMismatch(String),
    /// A file that is not UTF-8 text.
    #[error("{0} is not utf-8 text")]
    NotText(String),
    /// `--after` names a bundle signed by another authority.
    #[error("the previous bundle is signed by {found}, not by this authority {expected}")]
    OtherAuthority {
        /// Who signed the previous manifest.
        found: String,
        /// This authority.
        expected: String,
    },
}

impl BundleError {
    fn io(action: &'static str, path: &Path, source: std::io::Error) -> Self {
        Self::Io { action, path: path.to_path_buf(), source }
    }
}

/// A bundle whose manifest verified and whose files match it.
#[derive(Debug, Clone)]
pub struct OpenedBundle {
    /// The bundle folder.
    pub dir: PathBuf,
    /// The verified manifest.
    pub manifest: VerifiedManifest,
    /// SHA-256 of `manifest.jwt`'s bytes: the next bundle's `parent`.
    pub manifest_hash: Hash32,
    /// Registration tokens, one per non-blank line.
    pub registrations: Vec<String>,
    /// Signed contracts, one per non-blank line.
    pub contracts: Vec<String>,
}

fn read_bounded(path: &Path, limit: u64) -> Result<Vec<u8>, BundleError> {
    let file = std::fs::File::open(path).map_err(|e| BundleError::io("cannot read", path, e))?;
    let mut bytes = Vec::new();
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| BundleError::io("cannot read", path, e))?;
    Ok(bytes)
}

fn lines(bytes: Vec<u8>, name: &str) -> Result<Vec<String>, BundleError> {
    let text = String::from_utf8(bytes).map_err(|_| BundleError::NotText(name.to_owned()))?;
    Ok(text.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_owned).collect())
}

fn digest(bytes: &[u8]) -> FileDigest {
    FileDigest { size: bytes.len() as u64, sha256: Hash32::digest(bytes).to_hex() }
}

/// Opens a bundle folder: the manifest must be signed by a key in `trust`, the folder must
/// hold exactly the three files (regular files, nothing else), and each file's size and
/// SHA-256 must be the manifest's. Reads at most what the manifest declares.
pub fn open_bundle(dir: &Path, trust: &TrustStore) -> Result<OpenedBundle, BundleError> {
    let entries = std::fs::read_dir(dir).map_err(|e| BundleError::io("cannot read", dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| BundleError::io("cannot read", dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let kind =
            entry.file_type().map_err(|e| BundleError::io("cannot read", &entry.path(), e))?;
        let expected = name == MANIFEST_FILE || BUNDLE_FILES.contains(&name.as_str());
        if !expected || !kind.is_file() {
            return Err(BundleError::UnexpectedEntry(name.chars().take(80).collect()));
        }
    }
    let manifest_path = dir.join(MANIFEST_FILE);
    if !manifest_path.exists() {
        return Err(BundleError::Missing(MANIFEST_FILE));
    }
    let raw = read_bounded(&manifest_path, MAX_TOKEN_LEN as u64)?;
    let token =
        std::str::from_utf8(&raw).map_err(|_| BundleError::NotText(MANIFEST_FILE.into()))?;
    let manifest = verify_manifest(token.trim(), trust).map_err(BundleError::Manifest)?;
    let manifest_hash = Hash32::digest(&raw);
    let mut contents = BTreeMap::new();
    for (name, declared) in &manifest.files {
        let path = dir.join(name);
        let static_name = if name == TOKENS_FILE { TOKENS_FILE } else { CONTRACTS_FILE };
        let actual = std::fs::metadata(&path).map_err(|_| BundleError::Missing(static_name))?.len();
        if actual != declared.size {
            return Err(BundleError::SizeMismatch {
                file: name.clone(),
                declared: declared.size,
                actual,
            });
        }
        let bytes = read_bounded(&path, declared.size.min(MAX_BUNDLE_FILE))?;
        if digest(&bytes) != *declared {
            return Err(BundleError::HashMismatch(name.clone()));
        }
        contents.insert(name.clone(), bytes);
    }
    let registrations = lines(contents.remove(TOKENS_FILE).unwrap_or_default(), TOKENS_FILE)?;
    let contracts = lines(contents.remove(CONTRACTS_FILE).unwrap_or_default(), CONTRACTS_FILE)?;
    Ok(OpenedBundle { dir: dir.to_path_buf(), manifest, manifest_hash, registrations, contracts })
}

/// What [`create_bundle`] made.
#[derive(Debug, Clone)]
pub struct CreatedBundle {
    /// Its `seq`.
    pub seq: u64,
    /// SHA-256 of its `manifest.jwt`.
    pub manifest_hash: Hash32,
    /// Its `parent`.
    pub parent: Option<Hash32>,
}

/// Writes a bundle into `dir` (created if missing): copies `tokens` and `contracts` in under
/// their bundle names (files already there are used as they are; absent ones are created
/// empty), checks that the registration tokens verify against the authority at `now`, and
/// signs `manifest.jwt`. With `after` (the previous bundle's folder, signed by the same
/// authority) the bundle is the next in sequence; otherwise it is `seq` 1.
pub fn create_bundle(
    dir: &Path,
    authority: &Wallet,
    tokens: Option<&Path>,
    contracts: Option<&Path>,
    after: Option<&Path>,
    now: u64,
) -> Result<CreatedBundle, BundleError> {
    std::fs::create_dir_all(dir).map_err(|e| BundleError::io("cannot create", dir, e))?;
    for (source, name) in [(tokens, TOKENS_FILE), (contracts, CONTRACTS_FILE)] {
        let target = dir.join(name);
        match source {
            Some(src) => {
                std::fs::copy(src, &target).map_err(|e| BundleError::io("cannot copy", src, e))?;
            }
            None if !target.exists() => {
                std::fs::write(&target, b"")
                    .map_err(|e| BundleError::io("cannot write", &target, e))?;
            }
            None => {}
        }
    }
    let trust = TrustStore::with_keys([authority.public_key()]);
    let mut files = BTreeMap::new();
    for name in BUNDLE_FILES {
        let path = dir.join(name);
        let bytes = read_bounded(&path, MAX_BUNDLE_FILE)?;
        if name == TOKENS_FILE {
            for (i, token) in lines(bytes.clone(), TOKENS_FILE)?.iter().enumerate() {
                verify_registration(token, &trust, TimeCheck::at(now), HANDLER_NAMES)
                    .map_err(|source| BundleError::Token { line: i + 1, source })?;
            }
        }
        files.insert(name.to_owned(), digest(&bytes));
    }
    let (seq, parent) = match after {
        None => (1, None),
        Some(prev) => {
            let raw = read_bounded(&prev.join(MANIFEST_FILE), MAX_TOKEN_LEN as u64)?;
            let token = String::from_utf8_lossy(&raw);
            let mut any = TrustStore::new();
            any.add(authority.public_key().clone());
            let previous = verify_manifest(token.trim(), &any).map_err(|e| match e {
                VerifyError::UnknownKid(found) | VerifyError::UnknownIssuer(found) => {
                    BundleError::OtherAuthority { found, expected: authority.id().to_string() }
                }
                other => BundleError::Manifest(other),
            })?;
            (previous.seq + 1, Some(Hash32::digest(&raw)))
        }
    };
    let parent_hex = parent.map(|p| p.to_hex());
    let manifest =
        sign_manifest(authority, seq, parent_hex.as_deref(), &files, now).map_err(|e| match e {
            swarmvm_token::IssueError::Invalid(v) => BundleError::Manifest(v),
            other => BundleError::Manifest(VerifyError::Malformed(other.to_string())),
        })?;
    let path = dir.join(MANIFEST_FILE);
    std::fs::write(&path, manifest.as_bytes())
        .map_err(|e| BundleError::io("cannot write", &path, e))?;
    Ok(CreatedBundle { seq, manifest_hash: Hash32::digest(manifest.as_bytes()), parent })
}
