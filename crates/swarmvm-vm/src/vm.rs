//! The executor: registrations, atomic contracts, batches that can be undone.

use std::collections::BTreeSet;

use compact_str::CompactString;
use serde_json::Value;

use crate::error::{MAX_ACTIONS, MAX_NONCE, MAX_TEXT_LEN, RegistrationError, Rejection};
use crate::fields::is_id;
use crate::handlers::{Catalogue, Ctx, Undo};
use crate::hash::Hash32;
use crate::state::{Record, State, Table};

/// A contract as the VM runs it: who signed it (already verified by the caller), its nonce
/// and its actions, each a JSON object with an `action` member.
#[derive(Debug, Clone, Copy)]
pub struct Contract<'a> {
    /// The signing wallet's id.
    pub signer: &'a str,
    /// The contract's nonce; must be above the signer's last.
    pub nonce: u64,
    /// The note's action list.
    pub actions: &'a [Value],
}

/// What happened to a contract.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Every action applied; the signer's nonce is used up.
    Applied,
    /// Nothing applied; the state and the nonce are exactly as before.
    Rejected(Rejection),
}

impl Outcome {
    /// True for [`Outcome::Applied`].
    pub fn is_applied(&self) -> bool {
        matches!(self, Self::Applied)
    }
}

/// The machine: a state and a catalogue of handlers.
///
/// Contracts are atomic: a handler's writes are staged and reach the state only when every
/// action of the contract succeeded. A *batch* (a bundle, say) groups many contracts and
/// registrations so that a caller who fails to persist it can undo it whole.
#[derive(Debug, Default)]
pub struct Vm {
    state: State,
    catalogue: Catalogue,
    /// Undo log: every write since the open batch began (or of the running contract when no
    /// batch is open), with the record it replaced.
    journal: Vec<Undo>,
    /// True while a batch is open.
    in_batch: bool,
}

impl Vm {
    /// A VM with an empty state and the built-in catalogue.
    pub fn new() -> Self {
        Self::default()
    }

    /// A VM with an empty state and the given catalogue.
    pub fn with_catalogue(catalogue: Catalogue) -> Self {
        Self { catalogue, ..Self::default() }
    }

    /// A VM holding `entries` (as loaded from storage). Entries are checked to be in the
    /// table their record names.
    pub fn from_entries(
        entries: impl IntoIterator<Item = (Table, String, Record)>,
    ) -> Result<Self, crate::state::DecodeError> {
        let mut vm = Self::new();
        for (table, id, record) in entries {
            if record.table() != table {
                return Err(crate::state::DecodeError::mismatch());
            }
            vm.state.insert(id.into(), record);
        }
        Ok(vm)
    }

    /// The state.
    pub fn state(&self) -> &State {
        &self.state
    }

    /// The catalogue.
    pub fn catalogue(&self) -> &Catalogue {
        &self.catalogue
    }

    /// The state root (see [`State::root`]).
    pub fn state_root(&self) -> Hash32 {
        self.state.root()
    }

    /// The last nonce `wallet` used (0 if none).
    pub fn nonce(&self, wallet: &str) -> u64 {
        match self.state.get(Table::Nonce, wallet) {
            Some(Record::Nonce { last }) => *last,
            _ => 0,
        }
    }

    /// True when `wallet` is registered.
    pub fn is_registered(&self, wallet: &str) -> bool {
        self.state.get(Table::Wallet, wallet).is_some()
    }

    /// Binds `action` to catalogue handler `handler`. Call only with the content of a
    /// verified `operations` token. Rebinding an action replaces its handler.
    pub fn register_operation(
        &mut self,
        action: &str,
        handler: &str,
    ) -> Result<(), RegistrationError> {
        if self.catalogue.get(handler).is_none() {
            return Err(RegistrationError::UnknownHandler {
                action: crate::error::shown(action),
                handler: crate::error::shown(handler),
            });
        }
        if !is_id(action) {
            return Err(RegistrationError::Invalid {
                what: "action name",
                value: crate::error::shown(action),
            });
        }
        self.write(action.into(), Record::Operation { handler: handler.into() });
        Ok(())
    }

    /// Registers a wallet. Call only with the content of a verified `wallets` token: `id` is
    /// the key's thumbprint and `key` its canonical public JWK. Re-registering updates the label.
    pub fn register_wallet(
        &mut self,
        id: &str,
        label: &str,
        key: &str,
    ) -> Result<(), RegistrationError> {
        if !is_id(id) {
            return Err(RegistrationError::Invalid {
                what: "wallet id",
                value: crate::error::shown(id),
            });
        }
        if label.chars().count() > MAX_TEXT_LEN || swarmvm_primitives::text::has_hidden(label) {
            return Err(RegistrationError::Invalid {
                what: "wallet label",
                value: crate::error::shown(label),
            });
        }
        self.write(id.into(), Record::Wallet { label: label.into(), key: key.into() });
        Ok(())
    }

    /// Runs a contract atomically. Rejected contracts change nothing.
    pub fn execute(&mut self, contract: &Contract<'_>) -> Outcome {
        match self.try_execute(contract) {
            Ok(()) => Outcome::Applied,
            Err(rejection) => Outcome::Rejected(rejection),
        }
    }

    fn try_execute(&mut self, contract: &Contract<'_>) -> Result<(), Rejection> {
        let signer = contract.signer;
        if !(1..=MAX_NONCE).contains(&contract.nonce) {
            return Err(Rejection::NonceOutOfRange(contract.nonce));
        }
        if !self.is_registered(signer) {
            return Err(Rejection::UnregisteredSigner(crate::error::shown(signer)));
        }
        let last = self.nonce(signer);
        if contract.nonce <= last {
            return Err(Rejection::StaleNonce { last, got: contract.nonce });
        }
        match contract.actions.len() {
            0 => return Err(Rejection::NoActions),
            n if n > MAX_ACTIONS => return Err(Rejection::TooManyActions(n)),
            _ => {}
        }
        let mark = self.journal.len();
        let result = self.stage(contract);
        match result {
            Ok(()) => {
                self.write(signer.into(), Record::Nonce { last: contract.nonce });
                if !self.in_batch {
                    self.journal.clear();
                }
            }
            Err(_) => self.undo_to(mark),
        }
        result
    }

    fn stage(&mut self, contract: &Contract<'_>) -> Result<(), Rejection> {
        let catalogue = &self.catalogue;
        // Contracts often repeat one action; resolve a name once per run of it.
        let mut resolved: Option<(&str, &dyn crate::Handler)> = None;
        for (index, action) in contract.actions.iter().enumerate() {
            let args = action.as_object().ok_or(Rejection::MalformedAction { index })?;
            let Some(Value::String(name)) = args.get("action") else {
                return Err(Rejection::MalformedAction { index });
            };
            let handler = match resolved {
                Some((last, h)) if last == name => h,
                _ => {
                    let h = resolve(&self.state, catalogue, index, name)?;
                    resolved = Some((name, h));
                    h
                }
            };
            let mut ctx = Ctx::new(&mut self.state, &mut self.journal, contract.signer);
            handler.apply(&mut ctx, args).map_err(|error| Rejection::Action {
                index,
                action: name.clone(),
                error,
            })?;
        }
        Ok(())
    }

    /// Undoes journaled writes back to position `mark`.
    fn undo_to(&mut self, mark: usize) {
        for (table, id, old) in self.journal.drain(mark..).rev() {
            match old {
                Some(record) => {
                    self.state.insert(id, record);
                }
                None => {
                    self.state.remove(table, &id);
                }
            }
        }
    }

    fn write(&mut self, id: CompactString, record: Record) {
        let table = record.table();
        if self.in_batch {
            let old = self.state.insert(id.clone(), record);
            self.journal.push((table, id, old));
        } else {
            self.state.insert(id, record);
        }
    }

    /// Starts a batch: from here every write is kept in the journal so that
    /// [`Vm::rollback_batch`] can undo them all. Starting a batch while one is open keeps
    /// the open one.
    pub fn begin_batch(&mut self) {
        if !self.in_batch {
            self.journal.clear();
            self.in_batch = true;
        }
    }

    /// The entries the open batch changed so far, to persist them.
    pub fn batch_changes(&self) -> BTreeSet<(Table, String)> {
        self.journal.iter().map(|(t, id, _)| (*t, id.to_string())).collect()
    }

    /// Ends the batch, keeping its writes; returns the entries it changed (to persist them).
    pub fn commit_batch(&mut self) -> BTreeSet<(Table, String)> {
        self.in_batch = false;
        self.journal.drain(..).map(|(t, id, _)| (t, id.into())).collect()
    }

    /// Ends the batch, undoing every write made since [`Vm::begin_batch`].
    pub fn rollback_batch(&mut self) {
        self.undo_to(0);
        self.in_batch = false;
    }
}

/// The handler an action name is registered to.
fn resolve<'c>(
    state: &State,
    catalogue: &'c Catalogue,
    index: usize,
    name: &str,
) -> Result<&'c dyn crate::Handler, Rejection> {
    let Some(Record::Operation { handler }) = state.get(Table::Operation, name) else {
        return Err(Rejection::UnknownAction { index, name: crate::error::shown(name) });
    };
    catalogue.get(handler).ok_or_else(|| Rejection::MissingHandler {
        index,
        action: crate::error::shown(name),
        handler: crate::error::shown(handler),
    })
}
