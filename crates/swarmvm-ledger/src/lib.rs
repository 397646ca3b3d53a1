//! A swarmvm peer's ledger: the VM's state kept in one redb file, read as needed.
//!
//! The state's entries, the nodes of its Merkle trie, the log, the receipts and the applied
//! bundles' manifests all live in the file; opening reads only the ledger's position, so
//! memory and restart time do not grow with the state. A [`VerifiedBatch`] (the one thing the
//! ledger applies, made by `swarmvm-bundle`) is executed over the stored state and committed
//! with its receipts and a log entry in one write transaction: after a crash the file holds
//! the whole batch or none of it. Readers take a [`Snapshot`] (one read transaction) and never
//! wait for the writer. [`check`] recomputes everything from the stored entries.
//!
//! ```no_run
//! use swarmvm_bundle::{open_bundle, set_in_force, verify_bundle};
//! use swarmvm_ledger::Ledger;
//! use swarmvm_token::Network;
//!
//! # fn run(network: &Network) -> Result<(), Box<dyn std::error::Error>> {
//! let mut ledger = Ledger::open(std::path::Path::new("peer/ledger.redb"))?;
//! let set = set_in_force(&ledger.snapshot()?, network)?;
//! let opened = open_bundle(std::path::Path::new("bundle-1"), network.id(), &set)?;
//! let verified = verify_bundle(opened, &ledger.snapshot()?, network)?;
//! let report = ledger.commit(&verified)?;
//! println!("state root {}", report.state_root);
//! # Ok(()) }
//! ```
#![cfg_attr(not(test), warn(unused_crate_dependencies))]

mod backup;
mod check;
mod codec;
mod error;
mod ledger;
mod reader;
mod record;
mod snapshot;
mod store;

pub use backup::{BackupError, BackupReport};
pub use check::{CheckReport, check};
pub use error::{ApplyError, CheckError, OpenError, ReadError};
pub use ledger::{BatchReport, Ledger};
pub use reader::{LedgerReader, Snapshot};
pub use record::{BundleRecord, Evidence, LogEntry, Outcome, Receipt};
pub use snapshot::{InstallReport, SNAPSHOT_PIECE, SnapshotError, SnapshotInfo, SnapshotTarget};
pub use store::FORMAT;
pub use swarmvm_bundle::{BundlePosition, VerifiedBatch};
