//! Why a bundle folder cannot be made, read or used.

use std::path::{Path, PathBuf};

use swarmvm_primitives::{Classify, ErrorClass};
use swarmvm_token::VerifyError;

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
        "manifest.jwt must hold exactly one JWS serialization (compact, or JSON on one line) and at most one trailing newline: {0}"
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
        "bundle holds an unexpected entry '{0}'; a bundle holds exactly registration_tokens.txt, contracts.jsonl, manifest.jwt and the modules/<sha256>.wasm files its manifest lists"
    )]
    UnexpectedEntry(String),
    /// A file the bundle must hold.
    #[error("bundle has no {0}")]
    Missing(&'static str),
    /// A module the manifest lists but the folder lacks.
    #[error("bundle has no {0}, which its manifest lists")]
    MissingModule(String),
    /// A module file that is not a module the ABI accepts, or whose name is not its hash.
    #[error("module {name} refused")]
    Module {
        /// Its file name.
        name: String,
        /// Why.
        #[source]
        source: swarmvm_wasm::ModuleError,
    },
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
    /// `--after` names a bundle of another network.
    #[error("the previous bundle is signed for network {found}, not for this network {expected}")]
    OtherAuthority {
        /// The previous manifest's network (its `aud`, or its signer's id for a first-version
        /// manifest).
        found: String,
        /// This network.
        expected: String,
    },
    /// A rules version below the previous bundle's.
    #[error(
        "the previous bundle names rules version {parent}; a bundle after it may not name {rules} (a chain's rules never go back)"
    )]
    RulesLowered {
        /// The previous bundle's version.
        parent: swarmvm_primitives::Rules,
        /// The version asked for.
        rules: swarmvm_primitives::Rules,
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
    /// A manifest that cannot be signed as asked (a signer twice, one that already signed).
    #[error("{0}")]
    Signing(String),
}

/// A file that could not be read or written is a failure; everything else refuses the
/// bundle.
impl Classify for BundleError {
    fn class(&self) -> ErrorClass {
        match self {
            Self::Io { .. } => ErrorClass::Failed,
            _ => ErrorClass::Refused,
        }
    }
}

impl BundleError {
    pub(crate) fn io(action: &'static str, path: &Path, source: std::io::Error) -> Self {
        Self::Io { action, path: path.to_path_buf(), source }
    }
}

#[cfg(test)]
mod tests {
    use swarmvm_vm::StateError;

    use super::*;
    use crate::BatchError;

    #[test]
    fn io_and_storage_fail_and_the_rest_refuses() {
        let io = BundleError::io("cannot read", Path::new("f"), std::io::Error::other("x"));
        assert_eq!(io.class(), ErrorClass::Failed);
        assert_eq!(BundleError::Missing("manifest.jwt").class(), ErrorClass::Refused);
        assert_eq!(BundleError::Manifest(VerifyError::NoKind).class(), ErrorClass::Refused);
        let storage = BatchError::Storage(StateError::MissingBundle { seq: 1 });
        assert!(storage.is_fatal());
        assert_eq!(storage.class(), ErrorClass::Failed);
        let refused = BatchError::NoRegistrations;
        assert!(!refused.is_fatal());
        assert_eq!(refused.class(), ErrorClass::Refused);
    }
}
