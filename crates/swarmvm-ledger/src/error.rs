//! Errors of opening a ledger and applying batches.

use swarmvm_primitives::BundleId;
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
    /// A bundle whose `parent` is not the last applied bundle.
    #[error("bundle seq {seq} has parent {parent}, but the last applied bundle is {expected}")]
    WrongParent {
        /// The bundle's `seq`.
        seq: u64,
        /// Its `parent` (or `none`).
        parent: String,
        /// The identity of the last applied bundle (or `none`).
        expected: String,
    },
    /// The very bundle already applied (the same identity, perhaps from another torrent).
    #[error("bundle seq {seq} ({id}) is already applied")]
    AlreadyApplied {
        /// Its `seq`.
        seq: u64,
        /// Its identity.
        id: BundleId,
    },
    /// A second validly signed bundle for a `seq` already applied: a fork. The ledger keeps
    /// the first and both manifests as evidence.
    #[error(
        "fork: bundle seq {seq} is already applied as {kept}; this other validly signed bundle {other} for the same seq is refused and kept as evidence"
    )]
    Fork {
        /// The seq both claim.
        seq: u64,
        /// The applied bundle.
        kept: BundleId,
        /// The refused one.
        other: BundleId,
    },
    /// A manifest signed before its parent.
    #[error(
        "bundle seq {seq} was signed at {iat} (unix seconds), before its parent ({parent_iat})"
    )]
    BeforeParent {
        /// The bundle's `seq`.
        seq: u64,
        /// Its manifest's `iat`.
        iat: u64,
        /// The parent manifest's `iat`.
        parent_iat: u64,
    },
    /// A local batch on a ledger that follows a network's bundles.
    #[error(
        "this ledger follows network {network}'s bundles (last seq {seq}); a local exec would use nonces that later bundles need and the node would diverge; use another --data-dir"
    )]
    FollowsNetwork {
        /// The network.
        network: String,
        /// The last applied bundle.
        seq: u64,
    },
    /// A bundle for a ledger that ran local batches.
    #[error(
        "this ledger holds local exec batches, so its nonces differ from the network's; bundles are applied only to a ledger that follows them from the start (use another --data-dir)"
    )]
    HasLocalBatches,
    /// A ledger file written by an older version that cannot be carried over.
    #[error("ledger is in format {found}, which this version cannot use: {why}")]
    OldFormat {
        /// The file's format.
        found: String,
        /// Why, and what to do.
        why: &'static str,
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
            Self::Storage(_)
                | Self::Corrupt(_)
                | Self::RootMismatch { .. }
                | Self::ReadOnly
                | Self::OldFormat { .. }
        )
    }
}

pub(crate) fn storage(e: impl Into<redb::Error>) -> ApplyError {
    ApplyError::Storage(e.into())
}
