//! Bundle folders: `registration_tokens.txt`, `contracts.jsonl` and `manifest.jwt`, the
//! authority's signed list of the other two with their sizes and SHA-256. This module is the
//! one place that knows a bundle's layout: its file names, their limits, the shape a
//! bundle's torrent must have, and the canonical form of each file.
//!
//! What is hashed, compared or stored is exactly what was verified: `manifest.jwt` holds one
//! JWS serialization and at most one trailing newline, and the token files hold one token a
//! line with nothing around it. Anything else is refused, never trimmed.

use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::{Path, PathBuf};

use swarmvm_primitives::BundleId;
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
/// The folder of WebAssembly modules (`modules/<sha256>.wasm`) a bundle may carry.
pub const MODULES_DIR: &str = "modules";
/// Most modules one bundle may carry.
pub const MAX_MODULES: usize = 64;
/// The largest module, in bytes (1 MiB).
pub const MAX_MODULE_LEN: u64 = 1024 * 1024;
/// The largest `manifest.jwt`: one token and a newline.
pub const MAX_MANIFEST_FILE: u64 = MAX_TOKEN_LEN as u64 + 1;
/// The most a bundle's files may hold together (512 MiB): a torrent declaring more is refused
/// before anything is fetched or reserved for it.
pub const MAX_BUNDLE_TOTAL: u64 = 512 * 1024 * 1024;

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
    /// `manifest.jwt` holds something besides one serialization and one newline.
    #[error(
        "manifest.jwt must hold exactly one JWS compact serialization and at most one trailing newline: {0}"
    )]
    ManifestFile(&'static str),
    /// A registration token did not verify when the bundle was made.
    #[error("registration token {line} refused")]
    Token {
        /// Its line (1-based).
        line: usize,
        /// Why.
        #[source]
        source: VerifyError,
    },
    /// A line of a token file that is not exactly one token.
    #[error("{file} line {line} {problem}; each line holds exactly one token")]
    NotCanonical {
        /// The file.
        file: &'static str,
        /// The line (1-based).
        line: usize,
        /// What is around or instead of the token.
        problem: &'static str,
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
    /// The clock is before the previous bundle's time.
    #[error(
        "the previous bundle was signed at {parent} (unix seconds), after now ({now}); a manifest's iat is never below its parent's"
    )]
    BeforeParent {
        /// The previous manifest's `iat`.
        parent: u64,
        /// Now.
        now: u64,
    },
    /// The folder already holds a signed bundle.
    #[error(
        "{} already holds a signed bundle (manifest.jwt); signing it again would make a second bundle for its seq, a fork; give --force to replace it",
        .0.display()
    )]
    AlreadySigned(PathBuf),
    /// A torrent whose files cannot be a bundle.
    #[error("not a bundle torrent: {0}")]
    Shape(String),
}

impl BundleError {
    fn io(action: &'static str, path: &Path, source: std::io::Error) -> Self {
        Self::Io { action, path: path.to_path_buf(), source }
    }
}

/// Checks that a torrent's files can be a bundle, before anything is fetched or reserved for
/// it: a folder holding `manifest.jwt` (at most 64 KiB), `registration_tokens.txt` and
/// `contracts.jsonl` (each at most 256 MiB), and nothing else but up to [`MAX_MODULES`]
/// `modules/<sha256>.wasm` files of at most 1 MiB, all together at most
/// [`MAX_BUNDLE_TOTAL`]. `files` are the paths inside the torrent's folder with their
/// lengths; `multi_file` is false for a torrent of a single file.
pub fn check_torrent_shape<'a>(
    multi_file: bool,
    files: impl IntoIterator<Item = (&'a Path, u64)>,
) -> Result<(), BundleError> {
    let shape = |why: String| BundleError::Shape(why);
    if !multi_file {
        return Err(shape("it is a single file; a bundle is a folder".into()));
    }
    let (mut total, mut modules) = (0u64, 0usize);
    let mut required = [(MANIFEST_FILE, false), (TOKENS_FILE, false), (CONTRACTS_FILE, false)];
    for (path, len) in files {
        let parts: Vec<&str> = path.iter().filter_map(|p| p.to_str()).collect();
        let limit = match parts.as_slice() {
            [MANIFEST_FILE] => MAX_MANIFEST_FILE,
            [TOKENS_FILE] | [CONTRACTS_FILE] => MAX_BUNDLE_FILE,
            [MODULES_DIR, file] if is_module_file_name(file) => {
                modules += 1;
                if modules > MAX_MODULES {
                    return Err(shape(format!("it carries more than {MAX_MODULES} modules")));
                }
                MAX_MODULE_LEN
            }
            _ => {
                return Err(shape(format!(
                    "it holds '{}'; a bundle holds manifest.jwt, registration_tokens.txt, contracts.jsonl and modules/<sha256>.wasm only",
                    swarmvm_primitives::text::shown(&path.to_string_lossy())
                )));
            }
        };
        if len > limit {
            return Err(shape(format!(
                "{} declares {len} bytes; at most {limit} are accepted",
                path.display()
            )));
        }
        for slot in &mut required {
            if parts == [slot.0] {
                slot.1 = true;
            }
        }
        total = total.saturating_add(len);
    }
    if let Some((missing, _)) = required.iter().find(|(_, seen)| !seen) {
        return Err(shape(format!("it has no {missing}")));
    }
    if total > MAX_BUNDLE_TOTAL {
        return Err(shape(format!(
            "it declares {total} bytes; at most {MAX_BUNDLE_TOTAL} are accepted"
        )));
    }
    Ok(())
}

/// `<64 lowercase hex>.wasm`.
fn is_module_file_name(name: &str) -> bool {
    name.strip_suffix(".wasm").is_some_and(|h| h.parse::<Hash32>().is_ok())
}

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
}

impl OpenedBundle {
    /// The bundle's identity.
    pub fn id(&self) -> BundleId {
        self.manifest.id
    }
}

fn read_bounded(path: &Path, limit: u64) -> Result<Vec<u8>, BundleError> {
    let file = std::fs::File::open(path).map_err(|e| BundleError::io("cannot read", path, e))?;
    let mut bytes = Vec::new();
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| BundleError::io("cannot read", path, e))?;
    Ok(bytes)
}

/// The JWS in a `manifest.jwt` file: exactly one compact serialization, optionally followed by
/// one `\n`. Whitespace, a carriage return, a second line or any other byte is refused: the
/// identity is taken over what is signed, and nothing else may ride along.
pub fn manifest_token(raw: &[u8]) -> Result<&str, BundleError> {
    let body = raw.strip_suffix(b"\n").unwrap_or(raw);
    if body.is_empty() {
        return Err(BundleError::ManifestFile("it is empty"));
    }
    let jws_byte = |b: &u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.');
    if let Some(bad) = body.iter().find(|b| !jws_byte(b)) {
        return Err(BundleError::ManifestFile(match bad {
            b'\n' | b'\r' => "it has more than one line or a carriage return",
            b' ' | b'\t' | 0x0b | 0x0c => "it holds whitespace",
            0x80.. => "it holds non-ascii bytes (unicode spaces?)",
            _ => "it holds a byte that is not base64url or '.'",
        }));
    }
    std::str::from_utf8(body).map_err(|_| BundleError::ManifestFile("it is not ascii"))
}

/// The tokens of a bundle file: one a line, each line exactly a token (no blank lines, no
/// spaces, no carriage returns), the last line's newline optional.
fn canonical_lines(bytes: Vec<u8>, file: &'static str) -> Result<Vec<String>, BundleError> {
    let text = String::from_utf8(bytes).map_err(|_| BundleError::NotText(file.to_owned()))?;
    if text.is_empty() {
        return Ok(Vec::new());
    }
    let body = text.strip_suffix('\n').unwrap_or(&text);
    body.split('\n')
        .enumerate()
        .map(|(i, line)| {
            let problem = if line.is_empty() {
                Some("is blank")
            } else if line.contains('\r') {
                Some("has a carriage return")
            } else if line.chars().any(char::is_whitespace) {
                Some("has whitespace around or inside the token")
            } else {
                None
            };
            match problem {
                Some(problem) => Err(BundleError::NotCanonical { file, line: i + 1, problem }),
                None => Ok(line.to_owned()),
            }
        })
        .collect()
}

/// Tokens from a file written by hand or by appending lines: trimmed, blank lines skipped.
fn lenient_lines(bytes: &[u8], file: &str) -> Result<Vec<String>, BundleError> {
    let text = std::str::from_utf8(bytes).map_err(|_| BundleError::NotText(file.to_owned()))?;
    Ok(text.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_owned).collect())
}

fn digest(bytes: &[u8]) -> FileDigest {
    FileDigest { size: bytes.len() as u64, sha256: Hash32::digest(bytes) }
}

/// Reads and verifies `manifest.jwt` in `dir` against `trust`.
fn read_manifest(
    dir: &Path,
    trust: &TrustStore,
) -> Result<(VerifiedManifest, String), BundleError> {
    let path = dir.join(MANIFEST_FILE);
    let meta = std::fs::symlink_metadata(&path).map_err(|_| BundleError::Missing(MANIFEST_FILE))?;
    if !meta.is_file() {
        return Err(BundleError::UnexpectedEntry(MANIFEST_FILE.into()));
    }
    let raw = read_bounded(&path, MAX_MANIFEST_FILE)?;
    if raw.len() as u64 > MAX_MANIFEST_FILE {
        return Err(BundleError::ManifestFile("it is larger than one token"));
    }
    let token = manifest_token(&raw)?;
    let manifest = verify_manifest(token, trust).map_err(BundleError::Manifest)?;
    Ok((manifest, token.to_owned()))
}

/// Opens a bundle folder: the manifest must be signed by a key in `trust` and be the file's
/// only content, the folder must hold exactly the three files (regular files, nothing else),
/// each file's size and SHA-256 must be the manifest's, and the token files must be in their
/// canonical form. Reads at most what the manifest declares.
pub fn open_bundle(dir: &Path, trust: &TrustStore) -> Result<OpenedBundle, BundleError> {
    let entries = std::fs::read_dir(dir).map_err(|e| BundleError::io("cannot read", dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| BundleError::io("cannot read", dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let kind =
            entry.file_type().map_err(|e| BundleError::io("cannot read", &entry.path(), e))?;
        let expected = name == MANIFEST_FILE || BUNDLE_FILES.contains(&name.as_str());
        if !expected || !kind.is_file() {
            return Err(BundleError::UnexpectedEntry(swarmvm_primitives::text::escape(&name, 80)));
        }
    }
    let (manifest, manifest_token) = read_manifest(dir, trust)?;
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
    let registrations =
        canonical_lines(contents.remove(TOKENS_FILE).unwrap_or_default(), TOKENS_FILE)?;
    let contracts =
        canonical_lines(contents.remove(CONTRACTS_FILE).unwrap_or_default(), CONTRACTS_FILE)?;
    Ok(OpenedBundle { dir: dir.to_path_buf(), manifest, manifest_token, registrations, contracts })
}

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
    /// The previous bundle's folder: this one comes next.
    pub after: Option<&'a Path>,
    /// The manifest's `iat` (Unix seconds).
    pub now: u64,
    /// Sign again a folder that already holds a manifest (which makes a second bundle for its
    /// seq if the first was published: a fork).
    pub force: bool,
}

/// Writes a bundle into `dir` (created if missing): the token files from `options.tokens`
/// and `options.contracts` (files already in `dir` are used when none is given; absent ones
/// are created empty), each written in its canonical form (one token a line, blank lines and
/// surrounding spaces dropped); checks that the registration tokens verify against the
/// authority at `now`, and signs `manifest.jwt`. With `after` (the previous bundle's folder,
/// signed by the same authority) the bundle is the next in sequence; otherwise it is `seq` 1.
/// A folder that already holds `manifest.jwt` is refused unless `force`.
pub fn create_bundle(
    dir: &Path,
    authority: &Wallet,
    options: &CreateOptions<'_>,
) -> Result<CreatedBundle, BundleError> {
    let now = options.now;
    if !options.force && std::fs::symlink_metadata(dir.join(MANIFEST_FILE)).is_ok() {
        return Err(BundleError::AlreadySigned(dir.to_path_buf()));
    }
    std::fs::create_dir_all(dir).map_err(|e| BundleError::io("cannot create", dir, e))?;
    let trust = TrustStore::with_keys([authority.public_key()]);
    let (seq, parent) = match options.after {
        None => (1, None),
        Some(prev) => {
            let previous = read_manifest(prev, &trust).map_err(|e| match e {
                BundleError::Manifest(
                    VerifyError::UnknownKid(found) | VerifyError::UnknownIssuer(found),
                ) => BundleError::OtherAuthority { found, expected: authority.id().to_string() },
                other => other,
            })?;
            if previous.0.issued_at > now {
                return Err(BundleError::BeforeParent { parent: previous.0.issued_at, now });
            }
            (previous.0.seq + 1, Some(previous.0.id))
        }
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
        let bytes: String = lines.iter().map(|l| format!("{l}\n")).collect();
        std::fs::write(&target, bytes.as_bytes())
            .map_err(|e| BundleError::io("cannot write", &target, e))?;
        files.insert(name.to_owned(), digest(bytes.as_bytes()));
    }
    let manifest = sign_manifest(authority, seq, parent, &files, now).map_err(|e| match e {
        swarmvm_token::IssueError::Invalid(v) => BundleError::Manifest(v),
        other => BundleError::Manifest(VerifyError::Malformed(other.to_string())),
    })?;
    let id = verify_manifest(&manifest, &trust).map_err(BundleError::Manifest)?.id;
    let path = dir.join(MANIFEST_FILE);
    std::fs::write(&path, format!("{manifest}\n"))
        .map_err(|e| BundleError::io("cannot write", &path, e))?;
    Ok(CreatedBundle { seq, id, parent })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_file_is_one_serialization_and_one_newline_at_most() {
        assert_eq!(manifest_token(b"a.b.c").unwrap(), "a.b.c");
        assert_eq!(manifest_token(b"a.b.c\n").unwrap(), "a.b.c");
        for bad in [
            &b""[..],
            b"\n",
            b"a.b.c\n\n",
            b"a.b.c\r\n",
            b" a.b.c",
            b"a.b.c ",
            b"a.b.c\t",
            b"a.b.c\n\xc2\xa0",
            "a.b.c\u{2003}".as_bytes(),
            b"a.b.c\na.b.c",
            b"a.b.c\x00",
        ] {
            assert!(manifest_token(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn token_files_are_one_token_a_line() {
        assert_eq!(canonical_lines(b"".to_vec(), TOKENS_FILE).unwrap(), Vec::<String>::new());
        assert_eq!(canonical_lines(b"a\nb\n".to_vec(), TOKENS_FILE).unwrap(), ["a", "b"]);
        assert_eq!(canonical_lines(b"a\nb".to_vec(), TOKENS_FILE).unwrap(), ["a", "b"]);
        for (bad, says) in [
            (&b"a\n\nb\n"[..], "line 2 is blank"),
            (b"\n", "line 1 is blank"),
            (b"a\r\nb\n", "line 1 has a carriage return"),
            (b" a\n", "line 1 has whitespace"),
            (b"a\n\n", "line 2 is blank"),
        ] {
            let err = canonical_lines(bad.to_vec(), TOKENS_FILE).unwrap_err().to_string();
            assert!(err.contains(says), "{bad:?}: {err}");
        }
    }

    #[test]
    fn torrent_shapes_that_cannot_be_bundles_are_refused_by_rule() {
        let ok = [("manifest.jwt", 900), ("registration_tokens.txt", 0), ("contracts.jsonl", 5)];
        let files = |list: &[(&'static str, u64)]| -> Vec<(PathBuf, u64)> {
            list.iter().map(|(p, l)| (PathBuf::from(p), *l)).collect()
        };
        let check = |multi: bool, list: &[(PathBuf, u64)]| {
            check_torrent_shape(multi, list.iter().map(|(p, l)| (p.as_path(), *l)))
        };
        check(true, &files(&ok)).unwrap();
        let module = format!("modules/{}.wasm", "ab".repeat(32));
        let mut with_module = files(&ok);
        with_module.push((PathBuf::from(&module), 1000));
        check(true, &with_module).unwrap();
        type Files = Vec<(PathBuf, u64)>;
        let cases: Vec<(bool, Files, &str)> = vec![
            (false, files(&ok), "single file"),
            (true, files(&ok[..2]), "no contracts.jsonl"),
            (true, [files(&ok), files(&[("evil.sh", 1)])].concat(), "holds 'evil.sh'"),
            (true, files(&[("manifest.jwt", 70_000), ok[1], ok[2]]), "declares 70000 bytes"),
            (
                true,
                files(&[ok[0], ("registration_tokens.txt", 1 << 40), ok[2]]),
                "declares 1099511627776 bytes",
            ),
            (
                true,
                files(&[
                    ok[0],
                    ("registration_tokens.txt", 250 << 20),
                    ("contracts.jsonl", 250 << 20),
                ])
                .into_iter()
                .chain(
                    (0..64).map(|i| (PathBuf::from(format!("modules/{:064x}.wasm", i)), 1 << 20)),
                )
                .collect(),
                "at most 536870912",
            ),
            (
                true,
                files(&ok)
                    .into_iter()
                    .chain((0..65).map(|i| (PathBuf::from(format!("modules/{:064x}.wasm", i)), 1)))
                    .collect(),
                "more than 64 modules",
            ),
            (
                true,
                [files(&ok), vec![(PathBuf::from("modules/x.wasm"), 1)]].concat(),
                "modules/x.wasm",
            ),
            (
                true,
                [files(&ok), vec![(PathBuf::from(&module), 2 << 20)]].concat(),
                "declares 2097152",
            ),
        ];
        for (multi, list, says) in cases {
            let err = check(multi, &list).expect_err(says).to_string();
            assert!(err.contains(says), "{says}: {err}");
        }
    }
}
