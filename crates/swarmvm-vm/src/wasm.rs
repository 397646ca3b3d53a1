//! WebAssembly operations as the VM sees them: the host interface a module runtime calls
//! back into for one action, how a module's entries are keyed in the state, and the bytes a
//! module reads as its input. The runtime itself (`swarmvm-wasm`, on wasmi) implements
//! [`ModuleRunner`] outside this crate, which stays free of an interpreter and of I/O.

use std::cell::RefCell;
use std::fmt;

use serde_json::Value;

use crate::access::{Overlay, StateError, StateRead as _};
use crate::error::ActionError;
use crate::fields::{Limits, write_canonical};
use crate::hash::Hash32;
use crate::state::{Record, Table};

/// Longest key a module may use, in bytes (the shortest is 1).
pub const MAX_KEY_LEN: usize = 256;
/// Largest value a module may store, in bytes.
pub const MAX_VALUE_LEN: usize = 64 * 1024;
/// Deepest nesting of an action given to a module.
pub const MAX_INPUT_DEPTH: usize = 32;

/// Where in the chain a batch runs: what a module's `seq()` and `time()` return (a bundle's
/// `seq` and its manifest's `iat`; 0 and the clock for a local `exec`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Block {
    /// The bundle's `seq`.
    pub seq: u64,
    /// The manifest's `iat`, Unix seconds.
    pub time: u64,
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
}

/// A module ready to run actions of one contract, one after the other. Each action starts
/// from the module's initial memory and globals, whatever earlier actions did.
pub trait ModuleSession {
    /// Runs the module's `run` for one action, its writes made to the session's state only
    /// if it succeeds; returns the fuel used. An error rejects the contract.
    fn run(&mut self, call: &Call<'_>) -> Result<u64, ActionError>;
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
    let mut id = String::with_capacity(action.len() + 1 + key.len() * 2);
    id.push_str(action);
    id.push('/');
    id.push_str(&data_encoding::HEXLOWER.encode(key));
    id
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
        Ok(match self.0.borrow().get(Table::Wasm, &wasm_id(action, key))? {
            Some(Record::Data { value }) => Some(value.into_vec()),
            _ => None,
        })
    }

    fn set(&self, action: &str, key: &[u8], value: &[u8]) {
        self.0.borrow_mut().put(&wasm_id(action, key), Record::Data { value: value.into() });
    }

    fn remove(&self, action: &str, key: &[u8]) {
        self.0.borrow_mut().remove(Table::Wasm, &wasm_id(action, key));
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
