//! WebAssembly operations as the VM sees them: the host interface a module runtime calls
//! back into for one action, how a module's entries are keyed in the state, and the bytes a
//! module reads as its input. The runtime itself (`swarmvm-wasm`, on wasmi) implements
//! [`ModuleRunner`] outside this crate, which stays free of an interpreter and of I/O.

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

/// What a module may see and do while it runs one action: its input, who signed, the
/// block, and the entries of its action's own namespace (reads see the contract's earlier
/// writes). Keys and values are checked by the runtime before they get here.
pub trait WasmHost {
    /// The action object as canonical JSON.
    fn input(&self) -> &[u8];
    /// The signer's wallet id (43 ASCII characters).
    fn caller(&self) -> &str;
    /// The block the batch runs in.
    fn block(&self) -> Block;
    /// The value at `key`, if any.
    fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, StateError>;
    /// Stores `value` at `key`.
    fn set(&mut self, key: &[u8], value: &[u8]);
    /// Removes the value at `key`.
    fn remove(&mut self, key: &[u8]);
}

/// Runs WebAssembly modules, by hash, metered: the VM hands it one action at a time.
/// Implementations must be deterministic: the same module, fuel, input and state give the
/// same writes, the same fuel used and the same error on every machine.
pub trait ModuleRunner: Send + Sync + fmt::Debug {
    /// True when `module` is loaded and can run.
    fn has(&self, module: &Hash32) -> bool;
    /// Runs `module`'s `run` for one action with at most `fuel`, its writes made through
    /// `host`; returns the fuel used. An error rejects the contract.
    fn run(&self, module: &Hash32, fuel: u64, host: &mut dyn WasmHost) -> Result<u64, ActionError>;
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

/// A [`WasmHost`] over a batch's overlay for one action of a contract.
pub(crate) struct ActionHost<'a, 's> {
    pub(crate) state: &'a mut Overlay<'s>,
    pub(crate) action: &'a str,
    pub(crate) caller: &'a str,
    pub(crate) input: Vec<u8>,
    pub(crate) block: Block,
}

impl WasmHost for ActionHost<'_, '_> {
    fn input(&self) -> &[u8] {
        &self.input
    }

    fn caller(&self) -> &str {
        self.caller
    }

    fn block(&self) -> Block {
        self.block
    }

    fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        Ok(match self.state.get(Table::Wasm, &wasm_id(self.action, key))? {
            Some(Record::Data { value }) => Some(value.into_vec()),
            _ => None,
        })
    }

    fn set(&mut self, key: &[u8], value: &[u8]) {
        self.state.put(&wasm_id(self.action, key), Record::Data { value: value.into() });
    }

    fn remove(&mut self, key: &[u8]) {
        self.state.remove(Table::Wasm, &wasm_id(self.action, key));
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
