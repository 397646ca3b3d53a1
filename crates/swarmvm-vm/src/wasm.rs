//! WebAssembly operations as the VM sees them: the host interface a module runtime calls
//! back into for one action, how a module's entries are keyed in the state, and the bytes a
//! module reads as its input. The runtime itself (`swarmvm-wasm`, on wasmi) implements
//! [`ModuleRunner`] outside this crate, which stays free of an interpreter and of I/O.

use std::cell::RefCell;
use std::fmt;

use compact_str::CompactString;
use serde_json::Value;

use crate::access::{Overlay, StateError, StateRead as _};
use crate::error::ActionError;
use crate::fields::{Limits, write_canonical};
use crate::hash::Hash32;
use crate::state::{Record, Table};
use swarmvm_primitives::Rules;

/// Longest key a module may use, in bytes (the shortest is 1).
pub const MAX_KEY_LEN: usize = 256;
/// Largest value a module may store, in bytes.
pub const MAX_VALUE_LEN: usize = 64 * 1024;
/// Deepest nesting of an action given to a module.
pub const MAX_INPUT_DEPTH: usize = 32;
/// Version 1: the most key and value bytes one action may set (removals are not counted).
pub const V1_MAX_WRITTEN: u64 = 1024 * 1024;
/// From rules version 2: the bytes counted for every entry a module sets or removes (absent
/// keys included), besides its key and value, for what storing or deleting it costs.
pub const ENTRY_COST: u64 = 64;
/// From rules version 2: what one action may write.
pub const ACTION_BUDGET: Budget = Budget { bytes: 1024 * 1024, entries: 4096 };
/// From rules version 2: what the actions of one contract may write together.
pub const CONTRACT_BUDGET: Budget = Budget { bytes: 4 * 1024 * 1024, entries: 16_384 };
/// From rules version 2: what the applied contracts of one bundle may write together.
pub const BUNDLE_BUDGET: Budget = Budget { bytes: 32 * 1024 * 1024, entries: 65_536 };
/// From rules version 2: the most memory, in 64 KiB pages, that the module sessions of one
/// contract may hold together.
pub const MAX_CONTRACT_PAGES: u64 = 1024;

/// Where in the chain a batch runs: what a module's `seq()` and `time()` return (a bundle's
/// `seq` and its manifest's `iat`; 0 and the clock for a local `exec`), and the rules it runs
/// under (its manifest's; the newest for a local `exec`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Block {
    /// The bundle's `seq`.
    pub seq: u64,
    /// The manifest's `iat`, Unix seconds.
    pub time: u64,
    /// The rules version.
    pub rules: Rules,
}

/// Module writes, counted (from rules version 2) as key bytes, value bytes and
/// [`ENTRY_COST`] for each entry set or removed: a budget, or what was spent of one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Budget {
    /// Bytes.
    pub bytes: u64,
    /// Entries set or removed.
    pub entries: u64,
}

impl Budget {
    /// What is left of this budget after `spent`.
    pub fn left(self, spent: Budget) -> Budget {
        Budget {
            bytes: self.bytes.saturating_sub(spent.bytes),
            entries: self.entries.saturating_sub(spent.entries),
        }
    }

    /// `self` and `other` added.
    pub fn plus(self, other: Budget) -> Budget {
        Budget {
            bytes: self.bytes.saturating_add(other.bytes),
            entries: self.entries.saturating_add(other.entries),
        }
    }
}

/// What an action may write: a budget and which limit it comes from (`action`, `contract`
/// or `bundle`), for the message when it runs out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteLimit {
    /// What is left to write.
    pub left: Budget,
    /// Whose budget that is.
    pub scope: &'static str,
}

impl WriteLimit {
    /// Version 1's limit: [`V1_MAX_WRITTEN`] bytes of keys and values set by the action,
    /// entries uncounted.
    pub const V1: WriteLimit =
        WriteLimit { left: Budget { bytes: V1_MAX_WRITTEN, entries: u64::MAX }, scope: "action" };

    /// The tightest of an action's own budget and what is left of its contract's and its
    /// bundle's (rules version 2).
    pub fn tightest(contract_spent: Budget, bundle_spent: Budget) -> WriteLimit {
        let contract = CONTRACT_BUDGET.left(contract_spent);
        let bundle = BUNDLE_BUDGET.left(bundle_spent);
        let mut limit = WriteLimit { left: ACTION_BUDGET, scope: "action" };
        for (scope, left) in [("contract", contract), ("bundle", bundle)] {
            if left.bytes < limit.left.bytes || left.entries < limit.left.entries {
                limit = WriteLimit {
                    left: Budget {
                        bytes: left.bytes.min(limit.left.bytes),
                        entries: left.entries.min(limit.left.entries),
                    },
                    scope,
                };
            }
        }
        limit
    }
}

/// What an action that applied used: fuel, and its writes as counted under its rules.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Used {
    /// Fuel, instantiation and resets included (rules version 2).
    pub fuel: u64,
    /// Writes.
    pub written: Budget,
}

/// The entries of WebAssembly operations, as a module session reads and writes them: each
/// action has its own namespace. Reads see the contract's earlier writes. Interior
/// mutability, because the VM lends it to module sessions and to built-in handlers by turns
/// within one contract.
pub trait WasmState {
    /// The value at `key` in `action`'s namespace, if any.
    fn get(&self, action: &str, key: &[u8]) -> Result<Option<Vec<u8>>, StateError>;
    /// Stores `value` at `key` in `action`'s namespace.
    fn set(&self, action: &str, key: &[u8], value: &[u8]);
    /// Removes the value at `key` in `action`'s namespace.
    fn remove(&self, action: &str, key: &[u8]);
}

/// One action for a module to run.
#[derive(Debug, Clone, Copy)]
pub struct Call<'a> {
    /// The action's name: the namespace its entries live in.
    pub action: &'a str,
    /// The action object as canonical JSON.
    pub input: &'a [u8],
    /// The signer's wallet id (43 ASCII characters).
    pub caller: &'a str,
    /// The block the batch runs in.
    pub block: Block,
    /// Fuel for this action.
    pub fuel: u64,
    /// What it may write.
    pub limit: WriteLimit,
}

/// A module ready to run actions of one contract, one after the other. Each action starts
/// from the module's initial memory and globals, whatever earlier actions did.
pub trait ModuleSession {
    /// Runs the module's `run` for one action, its writes made to the session's state only
    /// if it succeeds; returns what it used. An error rejects the contract.
    fn run(&mut self, call: &Call<'_>) -> Result<Used, ActionError>;

    /// The memory the session holds, in 64 KiB pages (the instance's memory and the image it
    /// is reset from).
    fn pages(&self) -> u64;
}

/// Runs WebAssembly modules, by hash, metered: the VM opens a session per module per
/// contract and hands it one action at a time. Implementations must be deterministic: the
/// same module, fuel, input and state give the same writes, the same fuel used and the same
/// error on every machine.
pub trait ModuleRunner: Send + Sync + fmt::Debug {
    /// True when `module` is loaded and can run.
    fn has(&self, module: &Hash32) -> bool;
    /// A session of `module` over `state`.
    fn session<'h>(
        &'h self,
        module: &Hash32,
        state: &'h dyn WasmState,
    ) -> Result<Box<dyn ModuleSession + 'h>, ActionError>;
}

/// The state id of `key` in `action`'s namespace: `action/` then the key in lowercase hex,
/// so ids sort as the keys' bytes do within an action.
pub fn wasm_id(action: &str, key: &[u8]) -> String {
    wasm_slot(action, key).into_string()
}

/// [`wasm_id`] as a state id (a long id keeps the string's buffer).
fn wasm_slot(action: &str, key: &[u8]) -> CompactString {
    let mut id = String::with_capacity(action.len() + 1 + key.len() * 2);
    id.push_str(action);
    id.push('/');
    data_encoding::HEXLOWER.encode_append(key, &mut id);
    CompactString::from(id)
}

/// The action and key of a [`wasm_id`]; `None` for anything else.
pub fn split_wasm_id(id: &str) -> Option<(&str, Vec<u8>)> {
    let (action, hex) = id.split_once('/')?;
    let key = data_encoding::HEXLOWER.decode(hex.as_bytes()).ok()?;
    (!action.is_empty() && !key.is_empty()).then_some((action, key))
}

/// The bytes a module reads as its input: the action object (with its `action` member) as
/// canonical JSON, at most [`MAX_INPUT_DEPTH`] levels deep, integers only.
pub fn canonical_input(action: &Value) -> Result<Vec<u8>, ActionError> {
    const LIMITS: Limits = Limits {
        depth: MAX_INPUT_DEPTH,
        len: usize::MAX,
        too_deep: "is nested more than 32 levels deep",
    };
    let mut out = String::new();
    write_canonical(action, &mut out, 0, LIMITS, "action")?;
    Ok(out.into_bytes())
}

/// The contract's overlay, lent by turns to module sessions and built-in handlers.
pub(crate) struct SharedOverlay<'a, 's>(pub(crate) RefCell<&'a mut Overlay<'s>>);

impl WasmState for SharedOverlay<'_, '_> {
    fn get(&self, action: &str, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        Ok(match self.0.borrow().get(Table::Wasm, &wasm_slot(action, key))? {
            Some(Record::Data { value }) => Some(value.into_vec()),
            _ => None,
        })
    }

    fn set(&self, action: &str, key: &[u8], value: &[u8]) {
        self.0.borrow_mut().put_id(wasm_slot(action, key), Record::Data { value: value.into() });
    }

    fn remove(&self, action: &str, key: &[u8]) {
        self.0.borrow_mut().remove(Table::Wasm, &wasm_slot(action, key));
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn ids_keep_the_keys_order_and_come_apart_again() {
        let keys: [&[u8]; 4] = [b"\x00", b"a", b"a\x00", b"b"];
        let ids: Vec<String> = keys.iter().map(|k| wasm_id("tally", k)).collect();
        let mut sorted = ids.clone();
        sorted.sort();
        assert_eq!(ids, sorted);
        for (id, key) in ids.iter().zip(keys) {
            assert_eq!(split_wasm_id(id), Some(("tally", key.to_vec())));
        }
        assert_eq!(split_wasm_id("tally/zz"), None);
        assert_eq!(split_wasm_id("tally/"), None);
        assert_eq!(split_wasm_id("tally"), None);
    }

    #[test]
    fn the_input_is_canonical_json_of_integers() {
        let action = json!({"proposal": {"id": "P1", "description": "é \"x\""}, "action": "t"});
        let input = canonical_input(&action).unwrap();
        assert_eq!(
            String::from_utf8(input).unwrap(),
            r#"{"action":"t","proposal":{"description":"é \"x\"","id":"P1"}}"#
        );
        assert!(canonical_input(&json!({"action": "t", "x": 1.5})).is_err());
        let deep = (0..40).fold(json!(1), |v, _| json!({"k": v}));
        assert!(canonical_input(&json!({"action": "t", "d": deep})).is_err());
    }
}
