//! What the ledger records besides the state: one log entry per applied batch and one
//! receipt per contract. Both lie outside the state root.

use serde::{Deserialize, Serialize};
use swarmvm_primitives::{BundleId, Hash32};

/// An applied bundle, as the ledger keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundleRecord {
    /// Its `seq`.
    pub seq: u64,
    /// Its identity.
    pub id: BundleId,
    /// Its parent's identity.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent: Option<BundleId>,
    /// Its manifest's `iat`.
    pub issued_at: u64,
    /// The log position of the batch that applied it.
    pub position: u64,
    /// The manifest's JWS serialization.
    pub manifest: String,
}

/// Two validly signed bundles for one `seq`: evidence of a compromised or faulty authority.
/// The ledger keeps the first and refuses the other.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evidence {
    /// The `seq` both claim.
    pub seq: u64,
    /// The bundle applied at that seq.
    pub kept: BundleId,
    /// The other, refused.
    pub other: BundleId,
    /// The applied bundle's manifest (JWS).
    pub kept_manifest: String,
    /// The other bundle's manifest (JWS).
    pub other_manifest: String,
    /// When this ledger saw the other (Unix seconds).
    pub seen_at: u64,
}

/// One applied batch, in the ledger's log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogEntry {
    /// Position in the log, from 1.
    pub position: u64,
    /// `exec` or `bundle`.
    pub source: String,
    /// The bundle's `seq`, for bundles.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    /// The bundle's identity, for bundles.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bundle: Option<BundleId>,
    /// Registration tokens applied.
    pub registrations: usize,
    /// Contracts in the batch.
    pub contracts: usize,
    /// Contracts applied.
    pub applied: usize,
    /// Contracts rejected.
    pub rejected: usize,
    /// The time (Unix seconds) token time rules were checked at.
    pub checked_at: u64,
    /// The state root after the batch (hex).
    pub state_root: Hash32,
}

/// What became of one contract in its batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Its actions ran and their writes are in the state.
    Applied,
    /// It was refused (see the reason); nothing of it is in the state.
    Rejected,
}

/// What happened to one contract.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    /// The log position of its batch.
    pub position: u64,
    /// Its index in the batch (0-based).
    pub index: u32,
    /// SHA-256 (hex) of the contract token's bytes.
    pub contract: Hash32,
    /// The verified signer, when the signature verified.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signer: Option<String>,
    /// The nonce, when the signature verified.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nonce: Option<u64>,
    /// `applied` or `rejected`.
    pub status: Outcome,
    /// Why it was rejected.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl Receipt {
    /// An applied contract's receipt (its batch position filled in when it is logged).
    pub fn applied(
        index: u32,
        contract: Hash32,
        signer: Option<String>,
        nonce: Option<u64>,
    ) -> Self {
        Self { position: 0, index, contract, signer, nonce, status: Outcome::Applied, reason: None }
    }

    /// A rejected contract's receipt, with the reason.
    pub fn rejected(
        index: u32,
        contract: Hash32,
        signer: Option<String>,
        nonce: Option<u64>,
        reason: String,
    ) -> Self {
        Self {
            position: 0,
            index,
            contract,
            signer,
            nonce,
            status: Outcome::Rejected,
            reason: Some(reason),
        }
    }

    /// True when the contract applied.
    pub fn is_applied(&self) -> bool {
        self.status == Outcome::Applied
    }
}
