//! The executor: registrations and atomic contracts, staged in an [`Overlay`].

use std::sync::Arc;

use serde_json::Value;

use crate::access::{ChangeSet, Overlay, StateError, StateRead};
use crate::error::{
    ActionError, MAX_ACTIONS, MAX_NONCE, MAX_TEXT_LEN, RegistrationError, Rejection,
};
use crate::fields::is_id;
use crate::handlers::{Catalogue, Ctx, Handler};
use crate::hash::Hash32;
use crate::state::{MemoryState, Record, Table};
use crate::wasm::{
    Block, Budget, Call, MAX_CONTRACT_PAGES, ModuleRunner, ModuleSession, SharedOverlay,
    WriteLimit, canonical_input,
};
use swarmvm_primitives::Rules;

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

/// The last nonce `wallet` used (0 if none).
pub fn nonce_of(state: &impl StateRead, wallet: &str) -> Result<u64, StateError> {
    Ok(match state.get(Table::Nonce, wallet)? {
        Some(Record::Nonce { last }) => last,
        _ => 0,
    })
}

/// The machine: a catalogue of handlers that registrations bind actions to, and the rules of
/// execution. It holds no state: it reads and stages through an [`Overlay`], and the caller
/// commits the [`ChangeSet`] the overlay becomes.
///
/// Contracts are atomic: a contract's writes stay in the overlay only when every action of
/// it succeeded. [`Vm::execute`] returns `Err` only when the state could not be read; a
/// contract the rules refuse is an `Ok(Outcome::Rejected)`.
#[derive(Debug, Default)]
pub struct Vm {
    catalogue: Catalogue,
    runner: Option<Arc<dyn ModuleRunner>>,
}

/// What an action name is bound to.
#[derive(Clone, Copy)]
enum Binding<'v> {
    Builtin(&'v dyn Handler),
    Wasm { module: Hash32, fuel: u64 },
}

impl Vm {
    /// A VM with the built-in catalogue.
    pub fn new() -> Self {
        Self::default()
    }

    /// A VM with the given catalogue.
    pub fn with_catalogue(catalogue: Catalogue) -> Self {
        Self { catalogue, runner: None }
    }

    /// This VM, running WebAssembly operations with `runner`.
    pub fn with_runner(mut self, runner: Arc<dyn ModuleRunner>) -> Self {
        self.runner = Some(runner);
        self
    }

    /// The runner of WebAssembly operations, if any.
    pub fn runner(&self) -> Option<&Arc<dyn ModuleRunner>> {
        self.runner.as_ref()
    }

    /// Binds `action` to WebAssembly module `module` (which the runner must hold) with `fuel`
    /// per action. Call only with the content of a verified `operations` token. Rebinding
    /// keeps the entries the action's earlier module stored.
    pub fn register_module(
        &self,
        state: &mut Overlay<'_>,
        action: &str,
        module: Hash32,
        fuel: u64,
    ) -> Result<(), RegistrationError> {
        if !is_id(action) {
            return Err(RegistrationError::Invalid {
                what: "action name",
                value: crate::error::shown(action),
            });
        }
        if !self.runner.as_ref().is_some_and(|r| r.has(&module)) {
            return Err(RegistrationError::UnknownModule {
                action: crate::error::shown(action),
                module: module.to_hex(),
            });
        }
        state.put(action, Record::WasmOperation { module, fuel });
        state.remove(Table::Revocation, &withdrawn_id(action));
        state.settle();
        Ok(())
    }

    /// The catalogue.
    pub fn catalogue(&self) -> &Catalogue {
        &self.catalogue
    }

    /// Binds `action` to catalogue handler `handler`. Call only with the content of a
    /// verified `operations` token. Rebinding an action replaces its handler.
    pub fn register_operation(
        &self,
        state: &mut Overlay<'_>,
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
        state.put(action, Record::Operation { handler: handler.into() });
        state.remove(Table::Revocation, &withdrawn_id(action));
        state.settle();
        Ok(())
    }

    /// Withdraws `action`: contracts using it are rejected from now on (it may be registered
    /// again later). Call only with the content of a verified `operations` token.
    pub fn withdraw_action(
        &self,
        state: &mut Overlay<'_>,
        action: &str,
    ) -> Result<(), RegistrationError> {
        if !is_id(action) {
            return Err(RegistrationError::Invalid {
                what: "action name",
                value: crate::error::shown(action),
            });
        }
        state.remove(Table::Operation, action);
        state.put(&withdrawn_id(action), Record::Revoked);
        state.settle();
        Ok(())
    }

    /// Revokes wallet `id`, for good: its contracts are rejected from now on; what it did
    /// before stays. Call only with the content of a verified `wallets` token.
    pub fn revoke_wallet(
        &self,
        state: &mut Overlay<'_>,
        id: &str,
    ) -> Result<(), RegistrationError> {
        if !is_id(id) {
            return Err(RegistrationError::Invalid {
                what: "wallet id",
                value: crate::error::shown(id),
            });
        }
        state.put(&revoked_id(id), Record::Revoked);
        state.settle();
        Ok(())
    }

    /// Remembers an applied registration token by `key` (its `jti`); refuses a key seen before.
    pub fn use_token(&self, state: &mut Overlay<'_>, key: &str) -> Result<(), RegistrationError> {
        if state.get(Table::Token, key)?.is_some() {
            return Err(RegistrationError::Replayed(crate::error::shown(key)));
        }
        state.put(key, Record::TokenUsed);
        state.settle();
        Ok(())
    }

    /// Puts the authority set (its canonical JSON) in force.
    pub fn set_authorities(&self, state: &mut Overlay<'_>, canonical: &str) {
        state.put(AUTHORITY_SET_ID, Record::AuthoritySet { set: canonical.into() });
        state.settle();
    }

    /// Registers a wallet. Call only with the content of a verified `wallets` token: `id` is
    /// the key's thumbprint and `key` its canonical public JWK. Re-registering updates the label.
    pub fn register_wallet(
        &self,
        state: &mut Overlay<'_>,
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
        if state.get(Table::Revocation, &revoked_id(id))?.is_some() {
            return Err(RegistrationError::Revoked(crate::error::shown(id)));
        }
        state.put(id, Record::Wallet { label: label.into(), key: key.into() });
        state.settle();
        Ok(())
    }

    /// Runs a contract atomically over `state`. A rejected contract leaves the overlay as it
    /// was; `Err` means the state could not be read (the caller should drop the overlay).
    pub fn execute(
        &self,
        state: &mut Overlay<'_>,
        contract: &Contract<'_>,
    ) -> Result<Outcome, StateError> {
        self.execute_in(state, contract, Block::default())
    }

    /// [`Vm::execute`] in `block` (what WebAssembly operations see as `seq` and `time`).
    pub fn execute_in(
        &self,
        state: &mut Overlay<'_>,
        contract: &Contract<'_>,
        block: Block,
    ) -> Result<Outcome, StateError> {
        let mark = state.mark();
        match self.try_execute(state, contract, block) {
            Ok(()) => {
                state.settle();
                Ok(Outcome::Applied)
            }
            Err(Failure::Rejected(rejection)) => {
                state.rollback(mark);
                Ok(Outcome::Rejected(rejection))
            }
            Err(Failure::Storage(e)) => {
                state.rollback(mark);
                Err(e)
            }
        }
    }

    fn try_execute(
        &self,
        state: &mut Overlay<'_>,
        contract: &Contract<'_>,
        block: Block,
    ) -> Result<(), Failure> {
        let signer = contract.signer;
        if !(1..=MAX_NONCE).contains(&contract.nonce) {
            return Err(Rejection::NonceOutOfRange(contract.nonce).into());
        }
        if state.get(Table::Wallet, signer)?.is_none() {
            return Err(Rejection::UnregisteredSigner(crate::error::shown(signer)).into());
        }
        if state.get(Table::Revocation, &revoked_id(signer))?.is_some() {
            return Err(Rejection::RevokedSigner(crate::error::shown(signer)).into());
        }
        let last = nonce_of(state, signer)?;
        if contract.nonce <= last {
            return Err(Rejection::StaleNonce { last, got: contract.nonce }.into());
        }
        match contract.actions.len() {
            0 => return Err(Rejection::NoActions.into()),
            n if n > MAX_ACTIONS => return Err(Rejection::TooManyActions(n).into()),
            _ => {}
        }
        // Contracts often repeat one action; resolve a name once per run of it. Module
        // sessions last the contract; the overlay is lent to them and to handlers by turns.
        let budgets = block.rules.has(Rules::V2);
        let bundle_spent = state.module_writes();
        let mut contract_spent = Budget::default();
        let shared = SharedOverlay(std::cell::RefCell::new(&mut *state));
        let mut sessions: Vec<(Hash32, Box<dyn ModuleSession + '_>)> = Vec::new();
        let mut resolved: Option<(&str, Binding<'_>)> = None;
        for (index, action) in contract.actions.iter().enumerate() {
            let args = action.as_object().ok_or(Rejection::MalformedAction { index })?;
            let Some(Value::String(name)) = args.get("action") else {
                return Err(Rejection::MalformedAction { index }.into());
            };
            let binding = match resolved {
                Some((last, b)) if last == name => b,
                _ => {
                    let b = self.resolve(&shared.0.borrow(), index, name)?;
                    resolved = Some((name, b));
                    b
                }
            };
            let result = match binding {
                Binding::Builtin(handler) => {
                    handler.apply(&mut Ctx::new(&mut shared.0.borrow_mut(), signer), args)
                }
                Binding::Wasm { module, fuel } => {
                    let session = match sessions.iter().position(|(m, _)| *m == module) {
                        Some(i) => &mut sessions[i].1,
                        None => {
                            let runner = self
                                .runner
                                .as_ref()
                                .ok_or_else(|| ActionError::ModuleMissing(module.to_hex()));
                            let opened = runner.and_then(|r| r.session(&module, &shared));
                            match opened {
                                Ok(s) => {
                                    sessions.push((module, s));
                                    &mut sessions.last_mut().expect("just pushed").1
                                }
                                Err(error) => {
                                    return Err(failure(index, name, error));
                                }
                            }
                        }
                    };
                    let limit = if budgets {
                        // The bundle's budget less what earlier contracts and this one wrote.
                        WriteLimit::tightest(contract_spent, bundle_spent.plus(contract_spent))
                    } else {
                        WriteLimit::V1
                    };
                    canonical_input(action)
                        .and_then(|input| {
                            let call = Call {
                                action: name,
                                input: &input,
                                caller: signer,
                                block,
                                fuel,
                                limit,
                            };
                            session.run(&call)
                        })
                        .and_then(|used| {
                            contract_spent = contract_spent.plus(used.written);
                            if !budgets {
                                return Ok(());
                            }
                            let pages: u64 = sessions.iter().map(|(_, s)| s.pages()).sum();
                            if pages > MAX_CONTRACT_PAGES {
                                return Err(ActionError::ModuleMemory {
                                    pages,
                                    max: MAX_CONTRACT_PAGES,
                                });
                            }
                            Ok(())
                        })
                }
            };
            if let Err(error) = result {
                return Err(failure(index, name, error));
            }
        }
        drop(sessions);
        let state = shared.0.into_inner();
        state.add_module_writes(contract_spent);
        state.put(signer, Record::Nonce { last: contract.nonce });
        Ok(())
    }

    /// What an action name is registered to.
    fn resolve(
        &self,
        state: &Overlay<'_>,
        index: usize,
        name: &str,
    ) -> Result<Binding<'_>, Failure> {
        let handler = match state.get(Table::Operation, name)? {
            Some(Record::Operation { handler }) => handler,
            Some(Record::WasmOperation { module, fuel }) => {
                return Ok(Binding::Wasm { module, fuel });
            }
            _ => {
                let withdrawn = state.get(Table::Revocation, &withdrawn_id(name))?.is_some();
                let name = crate::error::shown(name);
                if withdrawn {
                    return Err(Rejection::WithdrawnAction { index, name }.into());
                }
                return Err(Rejection::UnknownAction { index, name }.into());
            }
        };
        self.catalogue.get(&handler).map(Binding::Builtin).ok_or_else(|| {
            Rejection::MissingHandler {
                index,
                action: crate::error::shown(name),
                handler: crate::error::shown(&handler),
            }
            .into()
        })
    }
}

/// The id under which the authority set in force is stored ([`Table::Authority`]).
pub const AUTHORITY_SET_ID: &str = "set";

/// The revocation entry of a wallet.
pub fn revoked_id(wallet: &str) -> String {
    format!("wallet/{wallet}")
}

/// The revocation entry of a withdrawn action.
pub fn withdrawn_id(action: &str) -> String {
    format!("action/{action}")
}

/// An action's error as the contract's failure: a storage error stops the batch.
fn failure(index: usize, name: &str, error: ActionError) -> Failure {
    match error {
        ActionError::Storage(e) => Failure::Storage(e),
        error => Rejection::Action { index, action: name.to_owned(), error }.into(),
    }
}

/// Why `try_execute` stopped.
enum Failure {
    Rejected(Rejection),
    Storage(StateError),
}

impl From<Rejection> for Failure {
    fn from(r: Rejection) -> Self {
        Self::Rejected(r)
    }
}

impl From<StateError> for Failure {
    fn from(e: StateError) -> Self {
        Self::Storage(e)
    }
}

/// A VM with its state in memory, for tests, benchmarks and fuzzing: each call is a batch of
/// its own, applied at once.
#[derive(Debug, Default)]
pub struct Machine {
    vm: Vm,
    state: MemoryState,
}

impl Machine {
    /// An empty state and the built-in catalogue.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty state and the given catalogue.
    pub fn with_catalogue(catalogue: Catalogue) -> Self {
        Self { vm: Vm::with_catalogue(catalogue), state: MemoryState::new() }
    }

    /// The VM.
    pub fn vm(&self) -> &Vm {
        &self.vm
    }

    /// The state.
    pub fn state(&self) -> &MemoryState {
        &self.state
    }

    /// The state root (nodes hashed as rules 3 and later hash them).
    pub fn state_root(&self) -> Hash32 {
        self.state.root()
    }

    /// The state root as a chain under `rules` commits it.
    pub fn state_root_under(&self, rules: swarmvm_primitives::Rules) -> Hash32 {
        self.state.root_with(crate::NodeHashing::for_rules(rules))
    }

    /// The last nonce `wallet` used.
    pub fn nonce(&self, wallet: &str) -> u64 {
        self.state.record(Table::Nonce, wallet).map_or(0, |r| match r {
            Record::Nonce { last } => *last,
            _ => 0,
        })
    }

    /// True when `wallet` is registered.
    pub fn is_registered(&self, wallet: &str) -> bool {
        self.state.record(Table::Wallet, wallet).is_some()
    }

    /// Runs `f` over an overlay of the state and applies what it staged.
    pub fn batch<T>(&mut self, f: impl FnOnce(&Vm, &mut Overlay<'_>) -> T) -> (T, ChangeSet) {
        let mut overlay = Overlay::new(&self.state);
        let out = f(&self.vm, &mut overlay);
        let changes = overlay.into_changes();
        self.state.apply(&changes);
        (out, changes)
    }

    /// See [`Vm::register_operation`].
    pub fn register_operation(
        &mut self,
        action: &str,
        handler: &str,
    ) -> Result<(), RegistrationError> {
        self.batch(|vm, o| vm.register_operation(o, action, handler)).0
    }

    /// See [`Vm::register_wallet`].
    pub fn register_wallet(
        &mut self,
        id: &str,
        label: &str,
        key: &str,
    ) -> Result<(), RegistrationError> {
        self.batch(|vm, o| vm.register_wallet(o, id, label, key)).0
    }

    /// Runs a contract and applies it if it applied.
    pub fn execute(&mut self, contract: &Contract<'_>) -> Outcome {
        match self.batch(|vm, o| vm.execute(o, contract)).0 {
            Ok(outcome) => outcome,
            // A state in memory cannot fail to read.
            Err(e) => unreachable!("{e}"),
        }
    }

    /// This machine, running WebAssembly operations with `runner`.
    pub fn with_runner(mut self, runner: Arc<dyn ModuleRunner>) -> Self {
        self.vm = std::mem::take(&mut self.vm).with_runner(runner);
        self
    }

    /// See [`Vm::register_module`].
    pub fn register_module(
        &mut self,
        action: &str,
        module: Hash32,
        fuel: u64,
    ) -> Result<(), RegistrationError> {
        self.batch(|vm, o| vm.register_module(o, action, module, fuel)).0
    }

    /// Runs a contract in `block` and applies it if it applied.
    pub fn execute_in(&mut self, contract: &Contract<'_>, block: Block) -> Outcome {
        match self.batch(|vm, o| vm.execute_in(o, contract, block)).0 {
            Ok(outcome) => outcome,
            // A state in memory cannot fail to read.
            Err(e) => unreachable!("{e}"),
        }
    }

    /// Replaces the state (tests that load entries).
    pub fn with_state(mut self, state: MemoryState) -> Self {
        self.state = state;
        self
    }
}
