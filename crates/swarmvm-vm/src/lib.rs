//! The swarmvm machine. For now: the catalogue of handler names that registration tokens may
//! bind actions to.
//!
//! ```
//! assert!(swarmvm_vm::HANDLER_NAMES.contains(&"register_student"));
//! ```

/// Names of the handlers in the VM's catalogue, the only names an `operations` token may use.
pub const HANDLER_NAMES: &[&str] =
    &["register_student", "add_course", "vote_proposal", "generate_nft"];
