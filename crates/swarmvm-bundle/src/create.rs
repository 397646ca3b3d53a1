//! Making a bundle: the token files in their canonical form, and the signed manifest.

use std::collections::BTreeMap;
use std::path::Path;

use swarmvm_primitives::{BundleId, Rules};
use swarmvm_token::{
    AuthoritySet, MANIFEST_FILE, MAX_BUNDLE_FILE, MAX_MODULES, ManifestContent, Network, TimeCheck,
    VerifyError, add_manifest_signature, module_file, module_hash, peek_manifest, sign_manifest,
    verify_registration,
};
use swarmvm_vm::HANDLER_NAMES;
use swarmvm_wallet::Wallet;

use crate::error::BundleError;
use crate::layout::{
    CONTRACTS_FILE, MAX_MODULE_LEN, MODULES_DIR, TOKENS_FILE, digest, lenient_lines, read_bounded,
    text_file,
};
use crate::open::read_manifest_text;
use crate::verify::BundlePosition;

/// What [`create_bundle`] made.
#[derive(Debug, Clone)]
pub struct CreatedBundle {
    /// Its `seq`.
    pub seq: u64,
    /// Its identity.
    pub id: BundleId,
    /// Its `parent`.
    pub parent: Option<BundleId>,
}

/// What to put in a bundle made by [`create_bundle`].
#[derive(Debug, Clone, Default)]
pub struct CreateOptions<'a> {
    /// Registration tokens to copy in (one a line).
    pub tokens: Option<&'a Path>,
    /// Signed contracts to copy in (one a line).
    pub contracts: Option<&'a Path>,
    /// WebAssembly modules (`.wasm`, or `.wat` text compiled here) to copy in as
    /// `modules/<sha256>.wasm`; modules already there are kept.
    pub modules: &'a [std::path::PathBuf],
    /// The previous bundle's folder: this one comes next.
    pub after: Option<&'a Path>,
    /// The previous bundle's position, when its folder is not at hand (a sequencer cutting
    /// the next bundle after its ledger's last): this one comes next. `after` wins.
    pub follows: Option<BundlePosition>,
    /// The info-hash of the previous bundle's torrent, named in the manifest
    /// (`parent_info_hash`) so that a node that knows only the newest bundle can walk back
    /// through the swarm. Ignored for the first bundle.
    pub parent_info_hash: Option<[u8; 20]>,
    /// The manifest's `iat` (Unix seconds).
    pub now: u64,
    /// Sign again a folder that already holds a manifest (which makes a second bundle for its
    /// seq if the first was published: a fork).
    pub force: bool,
    /// A rotation: the authority set in force from the next bundle (every key it adds must
    /// be among the signers).
    pub authority_set: Option<&'a AuthoritySet>,
    /// The authority set in force before this bundle, when it is known (a sequencer's):
    /// registration tokens signed by any of its members are taken besides those of the
    /// network's first set and the signers.
    pub members: Option<&'a AuthoritySet>,
    /// The rules version the manifest names (default: the newest, [`Rules::CURRENT`]);
    /// older versions only to extend or reproduce an old chain.
    pub rules: Rules,
}

/// Writes a bundle of `network` into `dir` (created if missing): the token files from
/// `options.tokens` and `options.contracts` (files already in `dir` are used when none is
/// given; absent ones are created empty), each written in its canonical form (one token a
/// line, blank lines and surrounding spaces dropped); checks that the registration tokens
/// verify at `now` against the network's first set, the signers and the keys of a rotation,
/// and signs `manifest.jwt` with every wallet of `signers` (compact for one, general JSON for
/// several). With `after` (the previous bundle's folder, of the same network) the bundle is
/// the next in sequence; otherwise it is `seq` 1. A folder that already holds `manifest.jwt`
/// is refused unless `force`.
pub fn create_bundle(
    dir: &Path,
    signers: &[&Wallet],
    network: &Network,
    options: &CreateOptions<'_>,
) -> Result<CreatedBundle, BundleError> {
    let now = options.now;
    if !options.force && std::fs::symlink_metadata(dir.join(MANIFEST_FILE)).is_ok() {
        return Err(BundleError::AlreadySigned(dir.to_path_buf()));
    }
    std::fs::create_dir_all(dir).map_err(|e| BundleError::io("cannot create", dir, e))?;
    let mut trust = network.genesis().trust().clone();
    for wallet in signers {
        trust.add(wallet.public_key().clone());
    }
    for (_, key) in
        options.authority_set.iter().chain(options.members.iter()).flat_map(|s| s.members())
    {
        trust.add(key.clone());
    }
    // The previous bundle's position, from its folder (`after`) or as given (`follows`).
    let previous = match options.after {
        None => options.follows,
        Some(prev) => {
            let text = read_manifest_text(prev)?;
            let previous = peek_manifest(&text).map_err(BundleError::Manifest)?;
            let of = previous.audience.clone().unwrap_or_else(|| previous.issuer.clone());
            if of != network.id() {
                return Err(BundleError::OtherAuthority {
                    found: of,
                    expected: network.id().to_owned(),
                });
            }
            Some(BundlePosition {
                seq: previous.seq,
                id: previous.id,
                issued_at: previous.issued_at,
                rules: previous.rules,
            })
        }
    };
    let (seq, parent) = match previous {
        None => (1, None),
        Some(previous) if previous.issued_at > now => {
            return Err(BundleError::BeforeParent { parent: previous.issued_at, now });
        }
        Some(previous) if previous.rules > options.rules => {
            return Err(BundleError::RulesLowered { parent: previous.rules, rules: options.rules });
        }
        Some(previous) => (previous.seq + 1, Some(previous.id)),
    };
    let mut files = BTreeMap::new();
    for (source, name) in [(options.tokens, TOKENS_FILE), (options.contracts, CONTRACTS_FILE)] {
        let target = dir.join(name);
        let from = source.unwrap_or(&target);
        let lines = match std::fs::symlink_metadata(from) {
            Ok(_) => lenient_lines(&read_bounded(from, MAX_BUNDLE_FILE)?, name)?,
            Err(_) if source.is_none() => Vec::new(),
            Err(e) => return Err(BundleError::io("cannot read", from, e)),
        };
        if name == TOKENS_FILE {
            for (i, token) in lines.iter().enumerate() {
                verify_registration(token, &trust, TimeCheck::at(now), HANDLER_NAMES)
                    .map_err(|source| BundleError::Token { line: i + 1, source })?;
            }
        }
        let bytes = text_file(&lines);
        std::fs::write(&target, bytes.as_bytes())
            .map_err(|e| BundleError::io("cannot write", &target, e))?;
        files.insert(name.to_owned(), digest(bytes.as_bytes()));
    }
    for (hash, bytes) in modules_of(dir, options.modules)? {
        files.insert(module_file(&hash), digest(&bytes));
    }
    let content = ManifestContent {
        seq,
        parent,
        parent_info_hash: parent.and(options.parent_info_hash),
        files: &files,
        network: network.id(),
        authority_set: options.authority_set,
        now,
        rules: options.rules,
    };
    let manifest = sign_manifest(signers, &content).map_err(issue_error)?;
    let id = peek_manifest(&manifest).map_err(BundleError::Manifest)?.id;
    let path = dir.join(MANIFEST_FILE);
    std::fs::write(&path, format!("{manifest}\n"))
        .map_err(|e| BundleError::io("cannot write", &path, e))?;
    Ok(CreatedBundle { seq, id, parent })
}

fn issue_error(e: swarmvm_token::IssueError) -> BundleError {
    match e {
        swarmvm_token::IssueError::Invalid(v) => BundleError::Manifest(v),
        swarmvm_token::IssueError::Signing(why) => BundleError::Signing(why),
        other => BundleError::Manifest(VerifyError::Malformed(other.to_string())),
    }
}

/// Adds `wallet`'s signature to the manifest of the bundle in `dir` and rewrites the file
/// (general JSON). The bundle's identity does not change; its torrent must be written again.
/// Returns the identity and the signers' ids now on it.
pub fn sign_bundle(dir: &Path, wallet: &Wallet) -> Result<(BundleId, Vec<String>), BundleError> {
    let text = read_manifest_text(dir)?;
    let signed = add_manifest_signature(&text, wallet).map_err(issue_error)?;
    let peek = peek_manifest(&signed).map_err(BundleError::Manifest)?;
    let path = dir.join(MANIFEST_FILE);
    let temp = dir.join(".manifest.jwt.tmp");
    std::fs::write(&temp, format!("{signed}\n"))
        .map_err(|e| BundleError::io("cannot write", &temp, e))?;
    std::fs::rename(&temp, &path).map_err(|e| BundleError::io("cannot write", &path, e))?;
    Ok((peek.id, peek.signers))
}

/// The `files` claim of a manifest for the folder `dir` as it is (its token files and its
/// modules, each checked as [`create_bundle`] checks them): what authority replicas sign
/// apart over a folder each of them wrote from the same log.
pub fn folder_files(
    dir: &Path,
) -> Result<BTreeMap<String, swarmvm_token::FileDigest>, BundleError> {
    let mut files = BTreeMap::new();
    for name in [TOKENS_FILE, CONTRACTS_FILE] {
        let path = dir.join(name);
        let bytes = read_bounded(&path, MAX_BUNDLE_FILE)?;
        files.insert(name.to_owned(), digest(&bytes));
    }
    for (hash, bytes) in modules_of(dir, &[])? {
        files.insert(module_file(&hash), digest(&bytes));
    }
    Ok(files)
}

/// What [`folder_files`] gives for the folder [`write_folder`](crate::write_folder) would
/// write from `tokens`, `contracts` and `modules`, made in memory: each module checked as
/// there, a module given twice listed once. An authority replica checks a cut's payload with
/// it, and writes the folder only for the cut it applies.
pub fn files_of<S: AsRef<str>, M: AsRef<[u8]>>(
    tokens: &[S],
    contracts: &[S],
    modules: &[M],
) -> Result<BTreeMap<String, swarmvm_token::FileDigest>, BundleError> {
    let mut files = BTreeMap::new();
    files.insert(TOKENS_FILE.to_owned(), digest(text_file(tokens).as_bytes()));
    files.insert(CONTRACTS_FILE.to_owned(), digest(text_file(contracts).as_bytes()));
    for bytes in modules {
        let bytes = bytes.as_ref();
        let sha256 = swarmvm_primitives::Hash32::digest(bytes);
        let name = module_file(&sha256);
        if files.contains_key(&name) {
            continue;
        }
        // Named by its hash, so only the ABI's check can refuse it.
        swarmvm_wasm::check_module(bytes)
            .map_err(|source| BundleError::Module { name: name.clone(), source })?;
        files.insert(name, swarmvm_token::FileDigest { size: bytes.len() as u64, sha256 });
    }
    Ok(files)
}

/// Copies `sources` into `dir/modules/<sha256>.wasm` (compiling `.wat` text), then reads every
/// module there: each must be a module the ABI accepts, named by its hash.
fn modules_of(
    dir: &Path,
    sources: &[std::path::PathBuf],
) -> Result<Vec<(swarmvm_primitives::Hash32, Vec<u8>)>, BundleError> {
    let folder = dir.join(MODULES_DIR);
    let refused = |name: String| move |source| BundleError::Module { name, source };
    for source in sources {
        let raw = read_bounded(source, 4 * MAX_MODULE_LEN)?;
        let name = source.display().to_string();
        let bytes = swarmvm_wasm::module_bytes(&raw).map_err(refused(name.clone()))?;
        let info = swarmvm_wasm::check_module(&bytes).map_err(refused(name))?;
        std::fs::create_dir_all(&folder)
            .map_err(|e| BundleError::io("cannot create", &folder, e))?;
        let target = dir.join(module_file(&info.hash));
        std::fs::write(&target, &bytes).map_err(|e| BundleError::io("cannot write", &target, e))?;
    }
    let mut modules = Vec::new();
    let Ok(list) = std::fs::read_dir(&folder) else { return Ok(modules) };
    for entry in list {
        let entry = entry.map_err(|e| BundleError::io("cannot read", &folder, e))?;
        let name = format!("{MODULES_DIR}/{}", entry.file_name().to_string_lossy());
        let path = entry.path();
        let bytes = read_bounded(&path, MAX_MODULE_LEN)?;
        let info = swarmvm_wasm::check_module(&bytes).map_err(refused(name.clone()))?;
        if module_hash(&name) != Some(info.hash) {
            return Err(BundleError::UnexpectedEntry(swarmvm_primitives::text::escape(&name, 80)));
        }
        modules.push((info.hash, bytes));
    }
    if modules.len() > MAX_MODULES {
        return Err(BundleError::Module {
            name: MODULES_DIR.into(),
            source: swarmvm_wasm::ModuleError::Invalid(format!("more than {MAX_MODULES} modules")),
        });
    }
    modules.sort_by_key(|(h, _)| *h);
    Ok(modules)
}
