//! A swarmvm peer's ledger: the VM's state kept durable in one redb file.
//!
//! A [`Batch`] — registration tokens, then signed contracts — is verified and applied in one
//! redb write transaction together with its receipts and a log entry, so after a crash the
//! file holds the whole batch or none of it. Registration tokens must all verify against the
//! trusted authorities (at the batch's time, a bundle's manifest `iat`); contracts are
//! verified in parallel against the registered wallets and this ledger's network, then run
//! in order, each applying whole or leaving a rejection receipt. Bundles must come in order
//! (`seq`, `parent`). Opening a ledger checks that its entries hash to the recorded root.
//!
//! ```no_run
//! use swarmvm_ledger::{Batch, Ledger, Source};
//! use swarmvm_token::{TimeCheck, TrustStore};
//!
//! let mut ledger = Ledger::open(std::path::Path::new("peer/ledger.redb"))?;
//! let trust = TrustStore::new();
//! let batch = Batch {
//!     registrations: &[],
//!     contracts: &[],
//!     trust: &trust,
//!     time: TimeCheck::system_now(),
//!     source: Source::Exec,
//!     authority: None,
//! };
//! let report = ledger.apply(&batch)?;
//! println!("state root {}", report.state_root);
//! # Ok::<(), swarmvm_ledger::ApplyError>(())
//! ```
#![cfg_attr(not(test), warn(unused_crate_dependencies))]

mod bundle;
mod error;
mod ledger;
mod record;

pub use bundle::{
    BundleError, CONTRACTS_FILE, CreateOptions, CreatedBundle, MAX_BUNDLE_TOTAL, MAX_MANIFEST_FILE,
    MAX_MODULE_LEN, MAX_MODULES, MODULES_DIR, OpenedBundle, TOKENS_FILE, check_torrent_shape,
    create_bundle, manifest_token, open_bundle,
};
pub use error::ApplyError;
pub use ledger::{Batch, BatchReport, BundlePosition, FORMAT, Ledger};
pub use record::{BundleRecord, BundleRef, Evidence, LogEntry, Receipt, Source};
