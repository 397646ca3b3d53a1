//! Errors of opening a ledger and applying batches.

use swarmvm_token::VerifyError;
use swarmvm_vm::{Hash32, RegistrationError};

/// Why a batch was not applied, or the ledger could not be used. Refusals of input
/// ([`ApplyError::is_fatal`] false) leave the ledger exactly as before; storage failures do
/// too, but mean the peer should stop.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApplyError {
    /// A registration token did not verify.
    #[error("registration token {line} refused")]
    Registration {
        /// Its line in the tokens file (1-based).
        line: usize,
        /// Why.
        #[source]
        source: VerifyError,
    },
    /// A registration token verified but its content cannot be registered.
    #[error("registration token {line} cannot be applied")]
    Registry {
        /// Its line (1-based).
        line: usize,
        /// Why.
        #[source]
        source: RegistrationError,
    },
    /// A registration signed by another authority than this ledger's network.
    #[error(
        "registration token {line} is signed by {issuer}, but this ledger belongs to network {network}"
    )]
    WrongNetwork {
        /// Its line (1-based).
        line: usize,
        /// Who signed it.
        issuer: String,
        /// This ledger's network id.
        network: String,
    },
    /// A bundle signed by another authority than this ledger's network.
    #[error("bundle is signed by {issuer}, but this ledger belongs to network {network}")]
    ForeignBundle {
        /// The manifest's signer.
        issuer: String,
        /// This ledger's network.
        network: String,
    },
    /// Contracts without a network to bind them to.
    #[error("no network yet: apply registration tokens before contracts")]
    NoNetwork,
    /// A bundle that is not the next one in order.
    #[error("bundle seq {seq} is out of order: this ledger expects seq {expected}")]
    OutOfOrder {
        /// The bundle's `seq`.
        seq: u64,
        /// The next `seq` this ledger accepts.
        expected: u64,
    },
    /// A bundle whose `parent` is not the last applied manifest.
    #[error("bundle seq {seq} has parent {parent}, but the last applied manifest is {expected}")]
    WrongParent {
        /// The bundle's `seq`.
        seq: u64,
        /// Its `parent` (or `none`).
        parent: String,
        /// The hash of the last applied manifest (or `none`).
        expected: String,
    },
    /// The ledger was opened read-only.
    #[error("ledger is open read-only")]
    ReadOnly,
    /// The database failed.
    #[error("storage failure")]
    Storage(#[from] redb::Error),
    /// What is stored is not what this version wrote.
    #[error("ledger is corrupt: {0}")]
    Corrupt(String),
    /// Stored entries do not hash to the stored root.
    #[error("ledger is corrupt: stored root {stored} but entries hash to {computed}")]
    RootMismatch {
        /// The root the last commit recorded.
        stored: Hash32,
        /// The root of the stored entries.
        computed: Hash32,
    },
}

impl ApplyError {
    /// True when the peer itself failed (storage, corruption) rather than refusing input.
    pub fn is_fatal(&self) -> bool {
        matches!(
            self,
            Self::Storage(_) | Self::Corrupt(_) | Self::RootMismatch { .. } | Self::ReadOnly
        )
    }
}

pub(crate) fn storage(e: impl Into<redb::Error>) -> ApplyError {
    ApplyError::Storage(e.into())
}
