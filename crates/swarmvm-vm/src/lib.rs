//! The swarmvm machine: an operation registry filled from verified registration tokens, a
//! catalogue of handlers behind the [`Handler`] trait, atomic execution of signed contracts,
//! and one state root.
//!
//! This crate is pure: no I/O, no clocks, no randomness, and no hash-map order anywhere (its
//! `clippy.toml` bans them). Signatures are checked by the caller, which hands the VM a
//! [`Contract`] naming its verified signer. Storage is the caller's too: the [`Vm`] reads a
//! state through [`StateRead`], stages a batch's writes in an [`Overlay`], and returns them
//! as a [`ChangeSet`] for the caller to commit; the root of a state kept elsewhere is updated
//! from the changes alone ([`TrieUpdate`] over a [`NodeStore`]). [`Machine`] keeps a state in
//! memory, for tests and benchmarks.
//!
//! ```
//! use serde_json::json;
//! use swarmvm_vm::{Contract, Machine, Outcome};
//!
//! let mut machine = Machine::new();
//! machine.register_operation("register_student", "register_student")?;
//! machine.register_wallet("alice", "peer1", r#"{"crv":"Ed25519","kty":"OKP","x":"..."}"#)?;
//! let actions = [json!({"action": "register_student",
//!     "student": {"id": "S001", "name": "John Doe", "department": "Computer Science"}})];
//! let outcome = machine.execute(&Contract { signer: "alice", nonce: 1, actions: &actions });
//! assert_eq!(outcome, Outcome::Applied);
//! // A replay is rejected and changes nothing.
//! let root = machine.state_root();
//! assert!(!machine.execute(&Contract { signer: "alice", nonce: 1, actions: &actions }).is_applied());
//! assert_eq!(machine.state_root(), root);
//! # Ok::<(), swarmvm_vm::RegistrationError>(())
//! ```
#![cfg_attr(not(test), warn(unused_crate_dependencies))]

mod access;
mod error;
pub mod fields;
mod handlers;
mod hash;
mod key;
pub mod proof;
mod state;
mod trie;
pub mod view;
mod vm;
pub mod wasm;

pub use access::{ChangeSet, Overlay, Slot, StateError, StateRead, StateScan};
pub use compact_str::CompactString;
pub use error::{
    ActionError, MAX_ACTIONS, MAX_DESCRIPTION_LEN, MAX_ID_LEN, MAX_METADATA_DEPTH,
    MAX_METADATA_LEN, MAX_NONCE, MAX_TEXT_LEN, RegistrationError, Rejection,
};
pub use fields::{Args, is_id};
pub use handlers::{
    AddCourse, Catalogue, Ctx, EnrollStudent, GenerateNft, Handler, RegisterStudent, TransferNft,
    VoteProposal,
};
pub use hash::{Hash32, InvalidHash, LEAF_PREFIX, NODE_PREFIX, SPLIT_PREFIX, leaf_hash};
pub use proof::{MAX_PROOF_LEN, ProofError, proof_root, prove, verify_proof};
pub use state::{
    DecodeError, MemoryState, Record, Table, WASM_HANDLER, decode_key, encode_entry, encode_key,
    entry_leaf,
};
pub use trie::{
    NodeHashing, NodeStore, StoredNode, TrieChanges, TrieUpdate, build_sorted, children_root,
    root_of_sorted,
};
pub use vm::{
    AUTHORITY_SET_ID, Contract, Machine, Outcome, Vm, nonce_of, revoked_id, withdrawn_id,
};
pub use wasm::{Block, Call, ModuleRunner, ModuleSession, WasmState};

/// Names of the handlers in the built-in catalogue, the only names an `operations` token may
/// bind actions to (the token layer takes this list as input).
pub const HANDLER_NAMES: &[&str] = &[
    "register_student",
    "add_course",
    "vote_proposal",
    "generate_nft",
    "enroll_student",
    "transfer_nft",
];

#[cfg(test)]
mod tests {
    #[test]
    fn handler_names_are_the_builtin_catalogue() {
        let mut listed: Vec<&str> = super::HANDLER_NAMES.to_vec();
        listed.sort_unstable();
        let catalogue: Vec<&str> = super::Catalogue::builtin().names().collect();
        assert_eq!(listed, catalogue);
    }
}
