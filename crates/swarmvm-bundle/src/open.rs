//! Opening a bundle folder: its manifest verified against the trusted authorities, its files
//! matched against the manifest and read in their canonical form.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use swarmvm_primitives::{BundleId, Hash32};
use swarmvm_token::{
    AuthoritySet, BUNDLE_FILES, MANIFEST_FILE, MAX_BUNDLE_FILE, VerifiedManifest, module_hash,
    verify_manifest,
};

use crate::error::BundleError;
use crate::layout::{
    CONTRACTS_FILE, MAX_MANIFEST_FILE, MAX_MODULE_LEN, MODULES_DIR, TOKENS_FILE, canonical_lines,
    digest, manifest_token, read_bounded,
};

/// A bundle whose manifest verified and whose files match it.
#[derive(Debug, Clone)]
pub struct OpenedBundle {
    /// The bundle folder.
    pub dir: PathBuf,
    /// The verified manifest; its `id` is the bundle's identity.
    pub manifest: VerifiedManifest,
    /// The manifest's JWS serialization, exactly as signed (without the newline).
    pub manifest_token: String,
    /// Registration tokens, one per line.
    pub registrations: Vec<String>,
    /// Signed contracts, one per line.
    pub contracts: Vec<String>,
    /// The WebAssembly modules it carries (`modules/<sha256>.wasm`), by hash; their bytes
    /// match the manifest and their names, not yet checked against the ABI.
    pub modules: Vec<(Hash32, Vec<u8>)>,
}

impl OpenedBundle {
    /// The bundle's identity.
    pub fn id(&self) -> BundleId {
        self.manifest.id
    }
}

/// Reads `manifest.jwt` in `dir`, in its canonical form, without checking signatures.
pub(crate) fn read_manifest_text(dir: &Path) -> Result<String, BundleError> {
    let path = dir.join(MANIFEST_FILE);
    let meta = std::fs::symlink_metadata(&path).map_err(|_| BundleError::Missing(MANIFEST_FILE))?;
    if !meta.is_file() {
        return Err(BundleError::UnexpectedEntry(MANIFEST_FILE.into()));
    }
    let raw = read_bounded(&path, MAX_MANIFEST_FILE)?;
    if raw.len() as u64 > MAX_MANIFEST_FILE {
        return Err(BundleError::ManifestFile("it is larger than one token"));
    }
    Ok(manifest_token(&raw)?.to_owned())
}

/// Reads and verifies `manifest.jwt` in `dir` for `network` against `set`.
pub(crate) fn read_manifest(
    dir: &Path,
    network: &str,
    set: &AuthoritySet,
) -> Result<(VerifiedManifest, String), BundleError> {
    let token = read_manifest_text(dir)?;
    let manifest = verify_manifest(&token, network, set).map_err(BundleError::Manifest)?;
    Ok((manifest, token))
}

/// The names of the entries of `dir`, each a regular file (or, with `allow_modules`, the
/// `modules` folder).
fn entries(dir: &Path, allow_modules: bool) -> Result<Vec<(String, bool)>, BundleError> {
    let list = std::fs::read_dir(dir).map_err(|e| BundleError::io("cannot read", dir, e))?;
    let mut out = Vec::new();
    for entry in list {
        let entry = entry.map_err(|e| BundleError::io("cannot read", dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let kind =
            entry.file_type().map_err(|e| BundleError::io("cannot read", &entry.path(), e))?;
        let folder = allow_modules && name == MODULES_DIR && kind.is_dir();
        if !kind.is_file() && !folder {
            return Err(BundleError::UnexpectedEntry(swarmvm_primitives::text::escape(&name, 80)));
        }
        out.push((name, folder));
    }
    Ok(out)
}

/// Opens a bundle folder of `network`: the manifest must be signed as the authority set `set`
/// (the set in force before the bundle) requires and be the file's only content, the folder must hold exactly the three files and the modules the manifest
/// lists (regular files, nothing else), each file's size and SHA-256 must be the manifest's,
/// and the token files must be in their canonical form. Reads at most what the manifest
/// declares.
pub fn open_bundle(
    dir: &Path,
    network: &str,
    set: &AuthoritySet,
) -> Result<OpenedBundle, BundleError> {
    let mut on_disk = Vec::new();
    for (name, folder) in entries(dir, true)? {
        if folder {
            for (module, _) in entries(&dir.join(MODULES_DIR), false)? {
                let path = format!("{MODULES_DIR}/{module}");
                if module_hash(&path).is_none() {
                    return Err(BundleError::UnexpectedEntry(swarmvm_primitives::text::escape(
                        &path, 80,
                    )));
                }
                on_disk.push(path);
            }
        } else if name != MANIFEST_FILE && !BUNDLE_FILES.contains(&name.as_str()) {
            return Err(BundleError::UnexpectedEntry(swarmvm_primitives::text::escape(&name, 80)));
        }
    }
    let (manifest, manifest_token) = read_manifest(dir, network, set)?;
    if let Some(extra) = on_disk.iter().find(|m| !manifest.files.contains_key(*m)) {
        return Err(BundleError::UnexpectedEntry(extra.clone()));
    }
    let mut contents = BTreeMap::new();
    let mut modules = Vec::new();
    for (name, declared) in &manifest.files {
        let path = dir.join(name);
        if let Some(hash) = module_hash(name) {
            let meta = std::fs::symlink_metadata(&path)
                .map_err(|_| BundleError::MissingModule(name.clone()))?;
            if !meta.is_file() {
                return Err(BundleError::UnexpectedEntry(name.clone()));
            }
            if meta.len() != declared.size {
                return Err(BundleError::SizeMismatch {
                    file: name.clone(),
                    declared: declared.size,
                    actual: meta.len(),
                });
            }
            let bytes = read_bounded(&path, declared.size.min(MAX_MODULE_LEN))?;
            if digest(&bytes) != *declared {
                return Err(BundleError::HashMismatch(name.clone()));
            }
            modules.push((hash, bytes));
            continue;
        }
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
    let registrations =
        canonical_lines(contents.remove(TOKENS_FILE).unwrap_or_default(), TOKENS_FILE)?;
    let contracts =
        canonical_lines(contents.remove(CONTRACTS_FILE).unwrap_or_default(), CONTRACTS_FILE)?;
    Ok(OpenedBundle {
        dir: dir.to_path_buf(),
        manifest,
        manifest_token,
        registrations,
        contracts,
        modules,
    })
}
