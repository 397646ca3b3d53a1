//! Bundles for swarmvm: the folder layout and its limits (one module knows them), making a
//! bundle, opening one (its manifest verified against the trusted authorities and its files
//! against the manifest), and verifying it against the chain it would extend into a
//! [`VerifiedBatch`], the one type a ledger applies.
//!
//! The stages of a peer, each with the type the next one takes:
//! fetch (a folder) → [`open_bundle`] ([`OpenedBundle`]) → [`verify_bundle`]
//! ([`VerifiedBatch`]) → the ledger's commit (execute and persist) → seed.
//!
//! A sequencer making the next bundle first admits what goes into it by the same rules
//! ([`admit_registration`], [`check_parts`] for a folder signed elsewhere and sent apart),
//! then writes it ([`write_folder`]) and signs it ([`create_bundle`]).
//!
//! ```no_run
//! use swarmvm_bundle::{ChainView, open_bundle, set_in_force, verify_bundle};
//! use swarmvm_token::Network;
//!
//! # fn run(view: &dyn ChainView, network: &Network) -> Result<(), Box<dyn std::error::Error>> {
//! let set = set_in_force(view, network)?;
//! let opened = open_bundle(std::path::Path::new("bundle-2"), network.id(), &set)?;
//! let verified = verify_bundle(opened, view, network)?;
//! println!("seq {:?}: {} contracts checked", verified.seq(), verified.contracts().len());
//! # Ok(()) }
//! ```
#![cfg_attr(not(test), warn(unused_crate_dependencies))]

mod admit;
mod create;
mod error;
pub mod layout;
mod open;
mod verify;

pub use admit::{
    AdmitError, Admitted, PartsError, admit_registration, check_module_parts, check_parts,
    check_text_parts,
};
pub use create::{
    CreateOptions, CreatedBundle, create_bundle, files_of, folder_files, sign_bundle,
};
pub use error::BundleError;
pub use layout::{
    CONTRACTS_FILE, MAX_BUNDLE_TOTAL, MAX_MANIFEST_FILE, MAX_MODULE_LEN, MAX_MODULES, MODULES_DIR,
    TOKENS_FILE, check_torrent_shape, manifest_token, text_file, text_file_size, write_folder,
};
pub use open::{OpenedBundle, open_bundle};
pub use verify::{
    Base, BatchError, BundlePosition, ChainView, CheckedContract, KnownContracts, Origin,
    VerifiedBatch, set_in_force, verify_bundle, verify_bundle_with, verify_contract_signatures,
    verify_local, verify_local_contracts, verify_local_contracts_under, verify_local_with_modules,
};
