//! Errors of opening a ledger, reading it, and applying batches to it.

use swarmvm_primitives::{Classify, ErrorClass};
use swarmvm_vm::{Hash32, RegistrationError, StateError};

/// Why a ledger file could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The database failed.
    #[error("storage failure")]
    Storage(#[from] redb::Error),
    /// A file written by an older version that cannot be carried over.
    #[error("ledger is in format {found}, which this version cannot use: {why}")]
    OldFormat {
        /// The file's format.
        found: String,
        /// Why, and what to do.
        why: &'static str,
    },
    /// A format this version does not know: written by a newer swarmvm, or not a ledger.
    #[error(
        "ledger is in format {found}, which this version does not know (a newer swarmvm wrote it?)"
    )]
    UnknownFormat {
        /// The file's format, escaped.
        found: String,
    },
    /// What is stored is not what any version wrote.
    #[error("ledger is corrupt: {0}")]
    Corrupt(String),
}

/// Why a ledger could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    /// The database failed.
    #[error("storage failure")]
    Storage(#[from] redb::Error),
    /// What is stored is not what this version wrote.
    #[error("ledger is corrupt: {0}")]
    Corrupt(String),
}

/// Why a verified batch was not applied. Every variant leaves the ledger exactly as before.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApplyError {
    /// The batch was verified against another chain position than the ledger's now.
    #[error(
        "the batch was verified against another state of the ledger (last bundle {verified}, now {now}); verify it again"
    )]
    Stale {
        /// The last bundle when it was verified.
        verified: String,
        /// The last bundle now.
        now: String,
    },
    /// A registration verified but cannot be registered.
    #[error("registration token {line} cannot be applied")]
    Registry {
        /// Its line (1-based).
        line: usize,
        /// Why.
        #[source]
        source: RegistrationError,
    },
    /// The ledger could not be read or written.
    #[error(transparent)]
    Read(#[from] ReadError),
}

impl ApplyError {
    /// True when the peer itself failed (storage, corruption) rather than refusing input.
    pub fn is_fatal(&self) -> bool {
        matches!(self, Self::Read(_) | Self::Registry { source: RegistrationError::Storage(_), .. })
    }
}

/// What `swarmvm ledger verify` found wrong.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CheckError {
    /// The stored entries do not hash to the stored root.
    #[error("state root mismatch: recorded {stored} but the entries hash to {computed}")]
    RootMismatch {
        /// The root the last commit recorded.
        stored: Hash32,
        /// The root of the stored entries.
        computed: Hash32,
    },
    /// The stored trie is not the trie of the stored entries.
    #[error("the stored trie disagrees with the entries: {0}")]
    Trie(String),
    /// The log, receipts or bundle records do not hang together.
    #[error("the log disagrees with itself: {0}")]
    Log(String),
    /// The ledger could not be read.
    #[error(transparent)]
    Read(#[from] ReadError),
}

/// A ledger that cannot be opened is the peer's failure, whatever the reason.
impl Classify for OpenError {
    fn class(&self) -> ErrorClass {
        ErrorClass::Failed
    }
}

/// A ledger that cannot be read is the peer's failure.
impl Classify for ReadError {
    fn class(&self) -> ErrorClass {
        ErrorClass::Failed
    }
}

/// A batch verified against another state, or a registration that cannot be applied, is
/// refused; the ledger failing (reading it, or reading the state while registering) is a
/// failure, as [`ApplyError::is_fatal`] says.
impl Classify for ApplyError {
    fn class(&self) -> ErrorClass {
        match self {
            Self::Stale { .. } => ErrorClass::Refused,
            Self::Registry { source, .. } => source.class(),
            Self::Read(e) => e.class(),
        }
    }
}

/// What `ledger verify` found wrong is a verification that failed; a ledger it could not
/// read is a failure.
impl Classify for CheckError {
    fn class(&self) -> ErrorClass {
        match self {
            Self::Read(e) => e.class(),
            Self::RootMismatch { .. } | Self::Trie(_) | Self::Log(_) => ErrorClass::Refused,
        }
    }
}

pub(crate) fn storage(e: impl Into<redb::Error>) -> ReadError {
    ReadError::Storage(e.into())
}

pub(crate) fn corrupt(what: impl std::fmt::Display) -> ReadError {
    ReadError::Corrupt(what.to_string())
}

impl From<ReadError> for StateError {
    fn from(e: ReadError) -> Self {
        match e {
            ReadError::Storage(inner) => StateError::storage(inner),
            ReadError::Corrupt(what) => StateError::Corrupt(what),
        }
    }
}

impl From<redb::Error> for ApplyError {
    fn from(e: redb::Error) -> Self {
        Self::Read(ReadError::Storage(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_storage_failure_while_registering_is_fatal_not_a_refusal() {
        let storage = ApplyError::Registry {
            line: 1,
            source: RegistrationError::Storage(StateError::storage(std::io::Error::other("disk"))),
        };
        assert!(storage.is_fatal(), "the bundle is retried, not refused");
        let refused =
            ApplyError::Registry { line: 1, source: RegistrationError::Revoked("w".into()) };
        assert!(!refused.is_fatal());
    }

    #[test]
    fn the_class_of_an_apply_error_agrees_with_is_fatal() {
        let storage = || StateError::storage(std::io::Error::other("disk"));
        let cases = [
            ApplyError::Stale { verified: "a".into(), now: "b".into() },
            ApplyError::Registry { line: 1, source: RegistrationError::Storage(storage()) },
            ApplyError::Registry { line: 1, source: RegistrationError::Revoked("w".into()) },
            ApplyError::Read(ReadError::Corrupt("x".into())),
        ];
        for e in &cases {
            let fatal = e.class() == ErrorClass::Failed;
            assert_eq!(fatal, e.is_fatal(), "{e}");
            assert_ne!(e.class(), ErrorClass::TimedOut);
        }
        assert_eq!(OpenError::Corrupt("x".into()).class(), ErrorClass::Failed);
        assert_eq!(CheckError::Read(ReadError::Corrupt("x".into())).class(), ErrorClass::Failed);
        assert_eq!(CheckError::Log("x".into()).class(), ErrorClass::Refused);
    }
}
