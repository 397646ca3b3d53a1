//! What the ledger records besides the state: one log entry per applied batch and one
//! receipt per contract. Both lie outside the state root.

use serde::{Deserialize, Serialize};

/// Where a batch came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A local run (`swarmvm exec`): not part of the bundle sequence.
    Exec,
    /// A bundle: it must be the next in order.
    Bundle {
        /// The manifest's `seq`.
        seq: u64,
        /// SHA-256 of the bundle's `manifest.jwt` bytes.
        manifest: swarmvm_vm::Hash32,
        /// The manifest's `parent` (absent at `seq` 1).
        parent: Option<swarmvm_vm::Hash32>,
    },
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
    /// The bundle's manifest hash (hex), for bundles.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub manifest: Option<String>,
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
    pub state_root: String,
}

/// What happened to one contract.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    /// The log position of its batch.
    pub position: u64,
    /// Its index in the batch (0-based).
    pub index: u32,
    /// SHA-256 (hex) of the contract token's bytes.
    pub contract: String,
    /// The verified signer, when the signature verified.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signer: Option<String>,
    /// The nonce, when the signature verified.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nonce: Option<u64>,
    /// `applied` or `rejected`.
    pub status: String,
    /// Why it was rejected.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl Receipt {
    /// True when the contract applied.
    pub fn is_applied(&self) -> bool {
        self.status == "applied"
    }
}
