//! Key files on disk: read any supported encoding, write private keys with mode 0600.

use std::fs::{self, OpenOptions};
use std::io::{Read as _, Write as _};
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use crate::error::{KeyError, Result};
use crate::parse::{KeyFormat, KeyMaterial, MAX_KEY_INPUT};
use crate::wallet::Wallet;

/// Permissions of a private key file.
pub const PRIVATE_KEY_MODE: u32 = 0o600;

fn io<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> KeyError + 'a {
    move |source| KeyError::Io { action, path: path.to_path_buf(), source }
}

fn read_limited(path: &Path, limit: usize) -> Result<Zeroizing<Vec<u8>>> {
    let file = fs::File::open(path).map_err(io("cannot read", path))?;
    let mut buf = Zeroizing::new(Vec::new());
    file.take(limit as u64 + 1).read_to_end(&mut buf).map_err(io("cannot read", path))?;
    if buf.len() > limit {
        return Err(KeyError::malformed(format!(
            "{} is larger than {limit} bytes",
            path.display()
        )));
    }
    Ok(buf)
}

/// Reads a key file of any supported encoding (PEM, DER, JWK).
pub fn read_key_file(path: &Path, passphrase: Option<&[u8]>) -> Result<(KeyMaterial, KeyFormat)> {
    let bytes = read_limited(path, MAX_KEY_INPUT)?;
    KeyMaterial::parse(&bytes, passphrase)
}

/// Reads a passphrase file: its first line, without the line ending (as `openssl -passin
/// file:` does). An empty passphrase is refused.
pub fn read_passphrase_file(path: &Path) -> Result<Zeroizing<Vec<u8>>> {
    let bytes = read_limited(path, 4096)?;
    let line_end = bytes.iter().position(|&b| b == b'\n').unwrap_or(bytes.len());
    let mut line = &bytes[..line_end];
    if let Some(stripped) = line.strip_suffix(b"\r") {
        line = stripped;
    }
    if line.is_empty() {
        return Err(KeyError::EmptyPassphrase);
    }
    Ok(Zeroizing::new(line.to_vec()))
}

/// Writes a wallet's private key as PKCS#8 PEM (encrypted when a passphrase is given) with
/// mode 0600. An existing file is replaced only when `overwrite` is true; the file appears
/// whole or not at all.
pub fn write_key_file(
    path: &Path,
    wallet: &Wallet,
    passphrase: Option<&[u8]>,
    overwrite: bool,
) -> Result<()> {
    let pem = wallet.to_pkcs8_pem(passphrase)?;
    write_private_file(path, pem.as_bytes(), overwrite)
}

/// Writes `contents` to `path` with mode 0600 through a temporary file in the same folder:
/// renamed over the target when `overwrite`, hard-linked (which never replaces) otherwise.
pub fn write_private_file(path: &Path, contents: &[u8], overwrite: bool) -> Result<()> {
    if !overwrite && fs::symlink_metadata(path).is_ok() {
        return Err(KeyError::AlreadyExists(path.to_path_buf()));
    }
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path.file_name().ok_or_else(|| KeyError::Io {
        action: "cannot write",
        path: path.to_path_buf(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a file name"),
    })?;
    let mut random = [0u8; 8];
    aws_lc_rs::rand::fill(&mut random).map_err(|_| KeyError::Crypto("random source failed"))?;
    let suffix = data_encoding::HEXLOWER.encode(&random);
    let tmp = dir.join(format!(".{}.{suffix}.tmp", name.to_string_lossy()));
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(PRIVATE_KEY_MODE)
            .open(&tmp)
            .map_err(io("cannot write", path))?;
        // The mode given to open is filtered by the umask; set it exactly.
        file.set_permissions(fs::Permissions::from_mode(PRIVATE_KEY_MODE))
            .map_err(io("cannot write", path))?;
        file.write_all(contents).map_err(io("cannot write", path))?;
        file.sync_all().map_err(io("cannot write", path))?;
        if overwrite {
            fs::rename(&tmp, path).map_err(io("cannot write", path))
        } else {
            fs::hard_link(&tmp, path).map_err(|e| match e.kind() {
                std::io::ErrorKind::AlreadyExists => KeyError::AlreadyExists(path.to_path_buf()),
                _ => KeyError::Io { action: "cannot write", path: path.to_path_buf(), source: e },
            })
        }
    })();
    let _ = fs::remove_file(&tmp);
    if result.is_ok()
        && let Ok(d) = fs::File::open(&dir)
    {
        let _ = d.sync_all();
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Algorithm;

    #[test]
    fn key_file_is_0600_and_never_overwritten_without_force() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.pem");
        let first = Wallet::generate(Algorithm::Ed25519).unwrap();
        write_key_file(&path, &first, None, false).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let second = Wallet::generate(Algorithm::Ed25519).unwrap();
        let err = write_key_file(&path, &second, None, false).unwrap_err();
        assert!(matches!(err, KeyError::AlreadyExists(_)), "{err}");
        let (read, _) = read_key_file(&path, None).unwrap();
        assert_eq!(read.public_key(), first.public_key(), "the first key is untouched");
        write_key_file(&path, &second, None, true).unwrap();
        let (read, _) = read_key_file(&path, None).unwrap();
        assert_eq!(read.public_key(), second.public_key());
        let leftovers = fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(leftovers, 1, "no temporary files left behind");
    }

    #[test]
    fn encrypted_key_needs_the_right_passphrase() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.pem");
        let wallet = Wallet::generate(Algorithm::Ed25519).unwrap();
        write_key_file(&path, &wallet, Some(b"correct horse"), false).unwrap();
        let text = fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----"));
        assert!(matches!(read_key_file(&path, None), Err(KeyError::PassphraseRequired)));
        assert!(matches!(read_key_file(&path, Some(b"wrong")), Err(KeyError::WrongPassphrase)));
        let (read, format) = read_key_file(&path, Some(b"correct horse")).unwrap();
        assert_eq!(format, KeyFormat::EncryptedPkcs8Pem);
        assert_eq!(read.public_key(), wallet.public_key());
    }

    #[test]
    fn passphrase_file_takes_first_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pass");
        fs::write(&path, "secret words\r\nsecond line\n").unwrap();
        assert_eq!(read_passphrase_file(&path).unwrap().as_slice(), b"secret words");
        fs::write(&path, "\n").unwrap();
        assert!(matches!(read_passphrase_file(&path), Err(KeyError::EmptyPassphrase)));
    }
}
