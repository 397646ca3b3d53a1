//! The one place that knows a bundle's layout: its file names, their limits, the shape a
//! bundle's torrent must have, and the canonical form of each file.
//!
//! What is hashed, compared or stored is exactly what was verified: `manifest.jwt` holds one
//! JWS serialization and at most one trailing newline, and the token files hold one token a
//! line with nothing around it. Anything else is refused, never trimmed.

use std::io::Read as _;
use std::path::Path;

pub use swarmvm_token::{
    BUNDLE_FILES, CONTRACTS_FILE, MANIFEST_FILE, MAX_BUNDLE_FILE, MAX_MODULES, TOKENS_FILE,
};
use swarmvm_token::{FileDigest, MAX_MANIFEST_LEN, module_file};
use swarmvm_vm::Hash32;

use crate::error::BundleError;

/// The folder of WebAssembly modules (`modules/<sha256>.wasm`) a bundle may carry.
pub const MODULES_DIR: &str = "modules";
/// The largest module, in bytes (1 MiB).
pub const MAX_MODULE_LEN: u64 = swarmvm_token::MAX_MODULE_FILE;
/// The largest `manifest.jwt`: one token and a newline.
pub const MAX_MANIFEST_FILE: u64 = MAX_MANIFEST_LEN as u64 + 1;
/// The most a bundle's files may hold together (512 MiB): a torrent declaring more is refused
/// before anything is fetched or reserved for it.
pub const MAX_BUNDLE_TOTAL: u64 = 512 * 1024 * 1024;

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

pub(crate) fn read_bounded(path: &Path, limit: u64) -> Result<Vec<u8>, BundleError> {
    let file = std::fs::File::open(path).map_err(|e| BundleError::io("cannot read", path, e))?;
    let mut bytes = Vec::new();
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| BundleError::io("cannot read", path, e))?;
    Ok(bytes)
}

/// The JWS in a `manifest.jwt` file: exactly one serialization, optionally followed by one
/// `\n`: compact, or JSON (general or flattened) on one line of printable ASCII from `{` to
/// `}`. Whitespace around it, a carriage return, a second line or any other byte is refused:
/// the identity is taken over what is signed, and nothing else may ride along.
pub fn manifest_token(raw: &[u8]) -> Result<&str, BundleError> {
    let body = raw.strip_suffix(b"\n").unwrap_or(raw);
    if body.is_empty() {
        return Err(BundleError::ManifestFile("it is empty"));
    }
    if body.starts_with(b"{") {
        if let Some(bad) = body.iter().find(|b| !(b' '..=b'~').contains(*b)) {
            return Err(BundleError::ManifestFile(match bad {
                b'\n' | b'\r' => "it has more than one line or a carriage return",
                0x80.. => "it holds non-ascii bytes (unicode spaces?)",
                _ => "it holds a control character",
            }));
        }
        if !body.ends_with(b"}") {
            return Err(BundleError::ManifestFile("its JSON serialization does not end the line"));
        }
        return std::str::from_utf8(body).map_err(|_| BundleError::ManifestFile("it is not ascii"));
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
pub(crate) fn canonical_lines(
    bytes: Vec<u8>,
    file: &'static str,
) -> Result<Vec<String>, BundleError> {
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

/// A bundle's text file (registration tokens or contracts) of `lines`, in its canonical form:
/// each line followed by one `\n`, nothing else.
pub fn text_file<S: AsRef<str>>(lines: &[S]) -> String {
    let mut text = String::with_capacity(lines.iter().map(|l| l.as_ref().len() + 1).sum());
    for line in lines {
        text.push_str(line.as_ref());
        text.push('\n');
    }
    text
}

/// The size in bytes of [`text_file`] of `lines`, without making it: what a manifest lists
/// for the file.
pub fn text_file_size(lines: &[String]) -> u64 {
    lines.iter().map(|l| l.len() as u64 + 1).sum()
}

/// Writes a bundle's files into `dir` (created if missing), unsigned: the registration
/// tokens and the contracts, one a line ([`text_file`]), and each module as
/// `modules/<sha256>.wasm`. [`create_bundle`](crate::create_bundle) or a manifest signed
/// elsewhere makes it a bundle.
pub fn write_folder(
    dir: &Path,
    tokens: &[String],
    contracts: &[String],
    modules: &[Vec<u8>],
) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join(TOKENS_FILE), text_file(tokens))?;
    std::fs::write(dir.join(CONTRACTS_FILE), text_file(contracts))?;
    if !modules.is_empty() {
        std::fs::create_dir_all(dir.join(MODULES_DIR))?;
    }
    for bytes in modules {
        std::fs::write(dir.join(module_file(&Hash32::digest(bytes))), bytes)?;
    }
    Ok(())
}

/// Tokens from a file written by hand or by appending lines: trimmed, blank lines skipped.
pub(crate) fn lenient_lines(bytes: &[u8], file: &str) -> Result<Vec<String>, BundleError> {
    let text = std::str::from_utf8(bytes).map_err(|_| BundleError::NotText(file.to_owned()))?;
    Ok(text.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_owned).collect())
}

pub(crate) fn digest(bytes: &[u8]) -> FileDigest {
    FileDigest { size: bytes.len() as u64, sha256: Hash32::digest(bytes) }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

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
    fn text_files_are_one_item_a_line_and_their_size_is_known_before_they_are_made() {
        let lines = vec!["a.b.c".to_owned(), "de".to_owned()];
        assert_eq!(text_file(&lines), "a.b.c\nde\n");
        assert_eq!(text_file_size(&lines), text_file(&lines).len() as u64);
        assert_eq!((text_file::<String>(&[]), text_file_size(&[])), (String::new(), 0));
        let read = canonical_lines(text_file(&lines).into_bytes(), CONTRACTS_FILE).unwrap();
        assert_eq!(read, lines, "read back as written");
    }

    #[test]
    fn a_written_folder_holds_the_files_one_item_a_line_and_the_modules_by_hash() {
        let dir = tempfile::tempdir().unwrap();
        let folder = dir.path().join("bundle-1");
        let module = b"\0asm\x01\0\0\0".to_vec();
        write_folder(&folder, &["t".to_owned()], &[], std::slice::from_ref(&module)).unwrap();
        assert_eq!(std::fs::read(folder.join(TOKENS_FILE)).unwrap(), b"t\n");
        assert_eq!(std::fs::read(folder.join(CONTRACTS_FILE)).unwrap(), b"");
        let name = module_file(&Hash32::digest(&module));
        assert_eq!(std::fs::read(folder.join(name)).unwrap(), module);
        write_folder(&dir.path().join("bare"), &[], &[], &[]).unwrap();
        assert!(!dir.path().join("bare").join(MODULES_DIR).exists(), "no modules, no folder");
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
            (true, files(&[("manifest.jwt", 140_000), ok[1], ok[2]]), "declares 140000 bytes"),
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
