//! The one apply path, shared by `node run` (for each bundle whose turn it is) and `node
//! apply` (for a folder given by hand): a bundle folder opened (its manifest and files
//! checked, [`swarmvm_bundle::open_bundle`]) is verified against the ledger's last commit
//! ([`swarmvm_bundle::verify_bundle`]), and committed ([`Ledger::commit`]). A second validly
//! signed bundle for a seq already applied is recorded as fork evidence on the way.

use swarmvm_bundle::{BatchError, KnownContracts, OpenedBundle, verify_bundle_with};
use swarmvm_ledger::{ApplyError, BatchReport, Evidence, Ledger, ReadError};
use swarmvm_primitives::BundleId;
use swarmvm_token::Network;

/// A bundle applied.
#[derive(Debug, Clone)]
pub struct Applied {
    /// Its `seq`.
    pub seq: u64,
    /// Its identity.
    pub id: BundleId,
    /// What the ledger did.
    pub report: BatchReport,
}

/// Why a bundle was not applied.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PipelineError {
    /// The bundle does not extend this ledger's chain, or a token or rule refused it.
    #[error(transparent)]
    Refused(#[from] BatchError),
    /// The ledger could not apply it.
    #[error(transparent)]
    Apply(#[from] ApplyError),
    /// The ledger could not be read.
    #[error(transparent)]
    Read(#[from] ReadError),
    /// Applying it panicked (a bug): nothing was committed, and the ledger was opened again
    /// from its file.
    #[error("applying the bundle failed inside this node: {0}")]
    Panicked(String),
}

impl swarmvm_primitives::Classify for PipelineError {
    fn class(&self) -> swarmvm_primitives::ErrorClass {
        match self {
            Self::Refused(e) => e.class(),
            Self::Apply(e) => e.class(),
            Self::Read(e) => e.class(),
            Self::Panicked(_) => swarmvm_primitives::ErrorClass::Failed,
        }
    }
}

impl PipelineError {
    /// True when the peer itself failed (storage), rather than the bundle being refused.
    pub fn is_fatal(&self) -> bool {
        match self {
            Self::Read(_) | Self::Panicked(_) => true,
            Self::Refused(e) => e.is_fatal(),
            Self::Apply(e) => e.is_fatal(),
        }
    }

    /// True when the bundle is the one already applied at its seq (another torrent of it).
    pub fn is_already_applied(&self) -> bool {
        matches!(self, Self::Refused(BatchError::AlreadyApplied { .. }))
    }
}

/// Verifies an opened bundle against the ledger's last commit and commits it; a fork is kept
/// as evidence (and refused).
pub fn apply_opened(
    ledger: &mut Ledger,
    bundle: OpenedBundle,
    network: &Network,
) -> Result<Applied, PipelineError> {
    apply_opened_with(ledger, bundle, network, &KnownContracts::new())
}

/// [`apply_opened`], with contracts whose signatures this peer verified already
/// ([`swarmvm_bundle::verify_bundle_with`]).
pub fn apply_opened_with(
    ledger: &mut Ledger,
    bundle: OpenedBundle,
    network: &Network,
    known: &KnownContracts,
) -> Result<Applied, PipelineError> {
    let (seq, id) = (bundle.manifest.seq, bundle.id());
    let snapshot = ledger.snapshot()?;
    let verified = match verify_bundle_with(bundle, &snapshot, network, known) {
        Ok(v) => v,
        Err(BatchError::Fork { seq, kept, other, kept_manifest, other_manifest }) => {
            drop(snapshot);
            ledger.record_evidence(&Evidence {
                seq,
                kept,
                other,
                kept_manifest: kept_manifest.clone(),
                other_manifest: other_manifest.clone(),
                seen_at: swarmvm_token::unix_now(),
            })?;
            return Err(BatchError::Fork { seq, kept, other, kept_manifest, other_manifest }.into());
        }
        Err(e) => return Err(e.into()),
    };
    drop(snapshot);
    let report = ledger.commit(&verified)?;
    Ok(Applied { seq, id, report })
}
