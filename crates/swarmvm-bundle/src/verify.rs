//! Verification: an opened bundle (or a local batch) checked against the chain it would
//! extend, into [`VerifiedBatch`], the one type a ledger applies.
//!
//! Everything that can be decided before execution is decided here: the bundle's place in
//! the chain (`seq`, `parent`, `iat`, forks), its network, every registration token (at the
//! manifest's time, signed by the manifest's authority) and every contract's signature
//! (against the wallets registered before it, including by this batch). What is left to the
//! ledger is to run the contracts and store the result.

use std::collections::BTreeMap;

use rayon::prelude::*;
use swarmvm_primitives::{BundleId, Classify, ErrorClass, Rules};
use swarmvm_token::{
    AuthoritySet, Network, Operation, Registration, RegistrationBody, TimeCheck, TrustStore,
    VerifiedContract, VerifyError, contract_signer, prepare_contract, verify_contract,
    verify_manifest, verify_registration,
};
use swarmvm_vm::{HANDLER_NAMES, Hash32, StateError};
use swarmvm_wallet::{PublicKey, WalletId};

use crate::open::OpenedBundle;

/// The last bundle a chain applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BundlePosition {
    /// Its `seq`.
    pub seq: u64,
    /// Its identity.
    pub id: BundleId,
    /// Its manifest's `iat`.
    pub issued_at: u64,
    /// The rules version its manifest names: the least the next bundle may name.
    pub rules: Rules,
}

/// What verification needs to know of the chain a batch would extend: a ledger's last
/// committed state.
pub trait ChainView {
    /// The network the chain belongs to, once registrations were applied.
    fn network(&self) -> Option<String>;
    /// The last applied bundle.
    fn last_bundle(&self) -> Option<BundlePosition>;
    /// True when local (`exec`) batches were applied: such a chain takes no bundles.
    fn is_local(&self) -> bool;
    /// The identity and manifest (JWS) of the bundle applied at `seq`.
    fn applied(&self, seq: u64) -> Result<Option<(BundleId, String)>, StateError>;
    /// The public key of a registered wallet.
    fn wallet(&self, id: &str) -> Result<Option<PublicKey>, StateError>;
    /// True when an earlier batch of the chain carried this module.
    fn has_module(&self, module: &Hash32) -> Result<bool, StateError>;
    /// The authority set stored in the state (by a rotation, or at the first bundle of a
    /// network started with `network init`); `None` while the network's first set is
    /// implied by its id.
    fn authorities(&self) -> Result<Option<AuthoritySet>, StateError>;
    /// True when a registration token with this replay key
    /// ([`Registration::replay_key`]) was applied.
    fn token_used(&self, key: &str) -> Result<bool, StateError>;
}

/// The authority set in force before the next batch of the chain `view` shows, for a chain
/// of `network`.
pub fn set_in_force(view: &dyn ChainView, network: &Network) -> Result<AuthoritySet, StateError> {
    Ok(view.authorities()?.unwrap_or_else(|| network.genesis().clone()))
}

/// Why a batch cannot extend the chain. Every variant but `Storage` is a refusal of the batch,
/// which changes nothing.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BatchError {
    /// A registration token did not verify.
    #[error("registration token {line} refused")]
    Registration {
        /// Its line in the tokens file (1-based).
        line: usize,
        /// Why.
        #[source]
        source: VerifyError,
    },
    /// A ledger of another network than the one this peer was started for.
    #[error("this ledger belongs to network {ledger}, not to network {given}")]
    OtherNetwork {
        /// The ledger's network.
        ledger: String,
        /// The network given (`--network`, `--trust`).
        given: String,
    },
    /// A manifest whose signatures do not satisfy the authority set in force before it.
    #[error("bundle seq {seq} refused")]
    Signatures {
        /// Its `seq`.
        seq: u64,
        /// Why.
        #[source]
        source: VerifyError,
    },
    /// A registration signed by a key that is not a member of the set in force.
    #[error(
        "registration token {line} is signed by {issuer}, which is not a member of the authority set in force"
    )]
    NotAMember {
        /// Its line (1-based).
        line: usize,
        /// Who signed it.
        issuer: String,
    },
    /// A registration token applied before (by `jti`), or twice in one batch.
    #[error("registration token {line} ({key}) was already applied; a token is applied once")]
    TokenReplayed {
        /// Its line (1-based).
        line: usize,
        /// Its `jti` (or payload hash).
        key: String,
    },
    /// Contracts for a chain that has no registrations, hence no network, yet.
    #[error("no network yet: apply registration tokens before contracts")]
    NoRegistrations,
    /// A bundle that is not the next one in order.
    #[error("bundle seq {seq} is out of order: this ledger expects seq {expected}")]
    OutOfOrder {
        /// The bundle's `seq`.
        seq: u64,
        /// The next `seq` the chain accepts.
        expected: u64,
    },
    /// A bundle whose `parent` is not the last applied bundle.
    #[error("bundle seq {seq} has parent {parent}, but the last applied bundle is {expected}")]
    WrongParent {
        /// The bundle's `seq`.
        seq: u64,
        /// Its `parent` (or `none`).
        parent: String,
        /// The identity of the last applied bundle (or `none`).
        expected: String,
    },
    /// The very bundle already applied (the same identity, perhaps from another torrent).
    #[error("bundle seq {seq} ({id}) is already applied")]
    AlreadyApplied {
        /// Its `seq`.
        seq: u64,
        /// Its identity.
        id: BundleId,
    },
    /// A second validly signed bundle for a `seq` already applied: a fork. The caller keeps
    /// both manifests as evidence.
    #[error(
        "fork: bundle seq {seq} is already applied as {kept}; this other validly signed bundle {other} for the same seq is refused and kept as evidence"
    )]
    Fork {
        /// The seq both claim.
        seq: u64,
        /// The applied bundle.
        kept: BundleId,
        /// The refused one.
        other: BundleId,
        /// The applied bundle's manifest.
        kept_manifest: String,
        /// The refused bundle's manifest.
        other_manifest: String,
    },
    /// A manifest signed before its parent.
    #[error(
        "bundle seq {seq} was signed at {iat} (unix seconds), before its parent ({parent_iat})"
    )]
    BeforeParent {
        /// The bundle's `seq`.
        seq: u64,
        /// Its manifest's `iat`.
        iat: u64,
        /// The parent manifest's `iat`.
        parent_iat: u64,
    },
    /// A manifest naming an older rules version than its parent's.
    #[error(
        "bundle seq {seq} names rules version {rules}, below its parent's ({parent_rules}); a chain's rules never go back"
    )]
    RulesLowered {
        /// The bundle's `seq`.
        seq: u64,
        /// The version it names.
        rules: Rules,
        /// Its parent's version.
        parent_rules: Rules,
    },
    /// A local batch for a chain that follows a network's bundles.
    #[error(
        "this ledger follows network {network}'s bundles (last seq {seq}); a local exec would use nonces that later bundles need and the node would diverge; use another --data-dir"
    )]
    FollowsNetwork {
        /// The network.
        network: String,
        /// The last applied bundle.
        seq: u64,
    },
    /// A bundle for a chain that ran local batches.
    #[error(
        "this ledger holds local exec batches, so its nonces differ from the network's; bundles are applied only to a ledger that follows them from the start (use another --data-dir)"
    )]
    HasLocalBatches,
    /// A module the batch carries that the ABI refuses.
    #[error("module {module} refused")]
    Module {
        /// Its hash.
        module: Hash32,
        /// Why.
        #[source]
        source: swarmvm_wasm::ModuleError,
    },
    /// A registration binding an action to a module that neither the batch nor an earlier
    /// batch of the chain carries.
    #[error(
        "registration token {line} binds '{action}' to module {module}, which neither this bundle nor an earlier one of the chain carries"
    )]
    ModuleNotFound {
        /// The token's line (1-based).
        line: usize,
        /// The action.
        action: String,
        /// The module's hash.
        module: Hash32,
    },
    /// The chain could not be read.
    #[error(transparent)]
    Storage(#[from] StateError),
}

impl BatchError {
    /// True when the chain could not be read, rather than the batch refused.
    pub fn is_fatal(&self) -> bool {
        matches!(self, Self::Storage(_))
    }
}

/// The chain not read is the storage's failure ([`BatchError::is_fatal`]); everything else
/// refuses the batch.
impl Classify for BatchError {
    fn class(&self) -> ErrorClass {
        match self {
            Self::Storage(e) => e.class(),
            _ => ErrorClass::Refused,
        }
    }
}

/// Where a verified batch comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A bundle, the next in its chain.
    Bundle {
        /// Its `seq`.
        seq: u64,
        /// Its identity.
        id: BundleId,
        /// Its parent's identity (absent at seq 1).
        parent: Option<BundleId>,
        /// Its manifest's `iat`.
        issued_at: u64,
        /// Its manifest's JWS serialization.
        manifest: String,
    },
    /// A local run (`swarmvm exec`), outside any chain.
    Local,
}

/// The chain position a batch was verified against: a ledger applies it only there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Base {
    /// The last bundle applied then.
    pub last: Option<BundleId>,
    /// Whether local batches had been applied then.
    pub local: bool,
}

/// One contract of a batch: the hash of its token (its receipt's id), and its verified
/// content or why its signature, signer or network was refused (a rejection receipt).
#[derive(Debug)]
pub struct CheckedContract {
    /// SHA-256 of the token's bytes.
    pub hash: Hash32,
    /// The verified contract, or why it was refused.
    pub verified: Result<VerifiedContract, VerifyError>,
}

/// A batch whose every signature and rule was checked against the chain it extends: the
/// only thing a ledger applies. Made by [`verify_bundle`] and [`verify_local`] alone.
#[derive(Debug)]
pub struct VerifiedBatch {
    origin: Origin,
    base: Base,
    network: Option<String>,
    time: u64,
    registrations: Vec<Registration>,
    contracts: Vec<CheckedContract>,
    modules: Vec<(Hash32, Vec<u8>)>,
    authorities: Option<AuthoritySet>,
    /// True when `authorities` is a rotation's new set (not a network's first).
    rotation: bool,
    remember_tokens: bool,
    rules: Rules,
}

impl VerifiedBatch {
    /// The rules it is executed under: its manifest's (the newest for a local batch).
    pub fn rules(&self) -> Rules {
        self.rules
    }

    /// A local batch (`exec`) run under `rules` instead of the newest: how rules versions are
    /// compared on the same contracts. A bundle keeps the rules its manifest names.
    pub fn with_local_rules(mut self, rules: Rules) -> Self {
        if matches!(self.origin, Origin::Local) {
            self.rules = rules;
        }
        self
    }

    /// The authority set to store in the state with it: a rotation's new set, or the first
    /// set of a network started with `network init` at its first bundle.
    pub fn authorities(&self) -> Option<&AuthoritySet> {
        self.authorities.as_ref()
    }

    /// True when its manifest rotates the authority set.
    pub fn rotates(&self) -> bool {
        self.rotation
    }

    /// Whether its registration tokens are remembered (by `jti`) under the state root: for
    /// local batches and bundles whose manifest names its network (`aud`); first-version
    /// bundles, made before tokens were remembered, keep the roots they had.
    pub fn remembers_tokens(&self) -> bool {
        self.remember_tokens
    }

    /// The modules it carries, checked against the ABI, by hash.
    pub fn modules(&self) -> &[(Hash32, Vec<u8>)] {
        &self.modules
    }

    /// Where it comes from.
    pub fn origin(&self) -> &Origin {
        &self.origin
    }

    /// The chain position it was verified against.
    pub fn base(&self) -> Base {
        self.base
    }

    /// The network the chain belongs to after it.
    pub fn network(&self) -> Option<&str> {
        self.network.as_deref()
    }

    /// The time its tokens were checked at (a bundle's manifest `iat`; now, for `exec`).
    pub fn time(&self) -> u64 {
        self.time
    }

    /// Its registrations, in order.
    pub fn registrations(&self) -> &[Registration] {
        &self.registrations
    }

    /// Its contracts, in order.
    pub fn contracts(&self) -> &[CheckedContract] {
        &self.contracts
    }

    /// Its `seq`, for a bundle.
    pub fn seq(&self) -> Option<u64> {
        match &self.origin {
            Origin::Bundle { seq, .. } => Some(*seq),
            Origin::Local => None,
        }
    }
}

fn base_of(view: &dyn ChainView) -> Base {
    Base { last: view.last_bundle().map(|b| b.id), local: view.is_local() }
}

/// Verifies an opened bundle as the next bundle of `network`'s chain that `view` shows: its
/// manifest's signatures against the authority set in force before it (at least K distinct
/// members; a rotation also signed by every key it adds), its place (`seq`, `parent`, `iat`;
/// a validly signed bundle for a seq already applied is the same bundle or a fork), its
/// registration tokens (at the manifest's `iat`, each signed by a member of the set in force,
/// none applied before), and its contracts' signatures.
pub fn verify_bundle(
    bundle: OpenedBundle,
    view: &dyn ChainView,
    network: &Network,
) -> Result<VerifiedBatch, BatchError> {
    verify_bundle_with(bundle, view, network, &KnownContracts::new())
}

/// Contracts whose signatures this peer verified already (a sequencer, when it took them),
/// by the SHA-256 of their token bytes. A wallet id is its key's thumbprint, so a signature
/// verified once for it stays verified.
pub type KnownContracts = std::collections::HashMap<Hash32, VerifiedContract>;

/// [`verify_bundle`], taking the contracts in `known` (verified for this network) as they
/// were verified rather than verifying their signatures again.
pub fn verify_bundle_with(
    mut bundle: OpenedBundle,
    view: &dyn ChainView,
    network: &Network,
    known: &KnownContracts,
) -> Result<VerifiedBatch, BatchError> {
    if view.is_local() {
        return Err(BatchError::HasLocalBatches);
    }
    if let Some(ledger) = view.network()
        && ledger != network.id()
    {
        return Err(BatchError::OtherNetwork { ledger, given: network.id().to_owned() });
    }
    // The very bundle already applied (its identity) is recognized whatever set is in force
    // now; anything else, a fork included, must satisfy the set in force now.
    if bundle.manifest.seq <= view.last_bundle().map_or(0, |b| b.seq)
        && let Some((kept, _)) = view.applied(bundle.manifest.seq)?
        && kept == bundle.manifest.id
    {
        return Err(BatchError::AlreadyApplied { seq: bundle.manifest.seq, id: kept });
    }
    let set = set_in_force(view, network)?;
    let other_network = bundle.manifest.audience.as_deref().is_some_and(|a| a != network.id());
    if bundle.manifest.verified_against != set.canonical() || other_network {
        bundle.manifest = verify_manifest(&bundle.manifest_token, network.id(), &set)
            .map_err(|source| BatchError::Signatures { seq: bundle.manifest.seq, source })?;
    }
    let m = &bundle.manifest;
    check_order(view, &bundle)?;
    let time = TimeCheck::at(m.issued_at);
    let remember_tokens = m.audience.is_some();
    let registrations = verify_registrations(&bundle.registrations, &set, time)?;
    if remember_tokens {
        check_replays(&registrations, view)?;
    }
    let modules = check_modules(bundle.modules, &registrations, view, m.rules)?;
    let contracts =
        verify_contracts(&bundle.contracts, &registrations, view, network.id(), known, m.rules)?;
    let authorities = match &m.authority_set {
        Some(new) => Some(new.clone()),
        None if m.seq == 1 && !network.is_single_key() => Some(network.genesis().clone()),
        None => None,
    };
    Ok(VerifiedBatch {
        modules,
        base: base_of(view),
        origin: Origin::Bundle {
            seq: m.seq,
            id: m.id,
            parent: m.parent,
            issued_at: m.issued_at,
            manifest: bundle.manifest_token,
        },
        network: Some(network.id().to_owned()),
        time: m.issued_at,
        registrations,
        contracts,
        authorities,
        rotation: m.authority_set.is_some(),
        remember_tokens,
        rules: m.rules,
    })
}

/// Refuses a registration token applied before, or twice in the batch.
fn check_replays(registrations: &[Registration], view: &dyn ChainView) -> Result<(), BatchError> {
    let mut seen = std::collections::BTreeSet::new();
    for (i, reg) in registrations.iter().enumerate() {
        let key = reg.replay_key();
        if view.token_used(&key)? || !seen.insert(key.clone()) {
            return Err(BatchError::TokenReplayed {
                line: i + 1,
                key: swarmvm_primitives::text::shown(&key),
            });
        }
    }
    Ok(())
}

fn check_order(view: &dyn ChainView, bundle: &OpenedBundle) -> Result<(), BatchError> {
    let m = &bundle.manifest;
    let last = view.last_bundle();
    let expected = last.map_or(1, |b| b.seq + 1);
    if m.seq < expected {
        let Some((kept, kept_manifest)) = view.applied(m.seq)? else {
            return Err(StateError::MissingBundle { seq: m.seq }.into());
        };
        if kept == m.id {
            return Err(BatchError::AlreadyApplied { seq: m.seq, id: m.id });
        }
        return Err(BatchError::Fork {
            seq: m.seq,
            kept,
            other: m.id,
            kept_manifest,
            other_manifest: bundle.manifest_token.clone(),
        });
    }
    if m.seq != expected {
        return Err(BatchError::OutOfOrder { seq: m.seq, expected });
    }
    let last_id = last.map(|b| b.id);
    if m.parent != last_id {
        let show = |h: Option<BundleId>| h.map_or_else(|| "none".to_owned(), |h| h.to_string());
        return Err(BatchError::WrongParent {
            seq: m.seq,
            parent: show(m.parent),
            expected: show(last_id),
        });
    }
    if let Some(last) = last
        && m.issued_at < last.issued_at
    {
        return Err(BatchError::BeforeParent {
            seq: m.seq,
            iat: m.issued_at,
            parent_iat: last.issued_at,
        });
    }
    if let Some(last) = last
        && m.rules < last.rules
    {
        return Err(BatchError::RulesLowered {
            seq: m.seq,
            rules: m.rules,
            parent_rules: last.rules,
        });
    }
    Ok(())
}

/// The batch's modules checked against the ABI, and every module a registration binds found
/// in the batch or the chain.
fn check_modules(
    modules: Vec<(Hash32, Vec<u8>)>,
    registrations: &[Registration],
    view: &dyn ChainView,
    rules: Rules,
) -> Result<Vec<(Hash32, Vec<u8>)>, BatchError> {
    for (hash, bytes) in &modules {
        swarmvm_wasm::check_module_under(bytes, rules)
            .map_err(|source| BatchError::Module { module: *hash, source })?;
    }
    for (i, reg) in registrations.iter().enumerate() {
        let RegistrationBody::Operations(ops) = &reg.body else { continue };
        for (action, op) in ops {
            let Operation::Wasm { module, .. } = op else { continue };
            if !modules.iter().any(|(h, _)| h == module) && !view.has_module(module)? {
                return Err(BatchError::ModuleNotFound {
                    line: i + 1,
                    action: action.clone(),
                    module: *module,
                });
            }
        }
    }
    Ok(modules)
}

/// Verifies a local batch (`swarmvm exec`) of `network` at `now`: registration tokens each
/// signed by a member of the set in force and not applied before, and the contracts'
/// signatures. A chain that follows a network's bundles takes no local batch.
pub fn verify_local(
    registrations: &[String],
    contracts: &[String],
    network: &Network,
    view: &dyn ChainView,
    now: u64,
) -> Result<VerifiedBatch, BatchError> {
    verify_local_with_modules(registrations, contracts, Vec::new(), network, view, now)
}

/// [`verify_local`] with modules (`swarmvm exec --modules DIR`): the bytes of each, which
/// registrations may bind besides the modules the chain holds.
pub fn verify_local_with_modules(
    registrations: &[String],
    contracts: &[String],
    modules: Vec<Vec<u8>>,
    network: &Network,
    view: &dyn ChainView,
    now: u64,
) -> Result<VerifiedBatch, BatchError> {
    let modules: Vec<(Hash32, Vec<u8>)> =
        modules.into_iter().map(|b| (Hash32::digest(&b), b)).collect();
    if let Some(last) = view.last_bundle() {
        return Err(BatchError::FollowsNetwork {
            network: view.network().unwrap_or_default(),
            seq: last.seq,
        });
    }
    if let Some(ledger) = view.network()
        && ledger != network.id()
    {
        return Err(BatchError::OtherNetwork { ledger, given: network.id().to_owned() });
    }
    let set = set_in_force(view, network)?;
    let verified = verify_registrations(registrations, &set, TimeCheck::at(now))?;
    check_replays(&verified, view)?;
    let modules = check_modules(modules, &verified, view, Rules::CURRENT)?;
    let checked = verify_contracts(
        contracts,
        &verified,
        view,
        network.id(),
        &KnownContracts::new(),
        Rules::CURRENT,
    )?;
    let first = view.network().is_none() && !verified.is_empty();
    Ok(VerifiedBatch {
        modules,
        origin: Origin::Local,
        base: base_of(view),
        network: Some(network.id().to_owned()),
        time: now,
        registrations: verified,
        contracts: checked,
        authorities: (first && !network.is_single_key()).then(|| network.genesis().clone()),
        rotation: false,
        remember_tokens: true,
        rules: Rules::CURRENT,
    })
}

/// Verifies a local batch of contracts alone (`swarmvm exec` of a contract) against a chain
/// that has registrations: their signatures, for the chain's network.
pub fn verify_local_contracts(
    contracts: &[String],
    view: &dyn ChainView,
    now: u64,
) -> Result<VerifiedBatch, BatchError> {
    verify_local_contracts_under(contracts, view, now, Rules::CURRENT)
}

/// [`verify_local_contracts`] under `rules` (how their signatures are checked, and then how
/// they run): for comparing rules versions on the same contracts.
pub fn verify_local_contracts_under(
    contracts: &[String],
    view: &dyn ChainView,
    now: u64,
    rules: Rules,
) -> Result<VerifiedBatch, BatchError> {
    if let Some(last) = view.last_bundle() {
        return Err(BatchError::FollowsNetwork {
            network: view.network().unwrap_or_default(),
            seq: last.seq,
        });
    }
    let network = view.network().ok_or(BatchError::NoRegistrations)?;
    let checked = verify_contracts(contracts, &[], view, &network, &KnownContracts::new(), rules)?;
    Ok(VerifiedBatch {
        modules: Vec::new(),
        origin: Origin::Local,
        base: base_of(view),
        network: Some(network),
        time: now,
        registrations: Vec::new(),
        contracts: checked,
        authorities: None,
        rotation: false,
        remember_tokens: true,
        rules,
    })
}

/// Contracts for `network` checked as a bundle's are under `rules` (under rules 4, the
/// Ed25519 signatures in ZIP-215 batches on every core), their signers' keys read from
/// `view`: each one verified, or why it was refused. Nothing against the state (nonces,
/// revocations, contracts applied already) is checked here. For a node that checks contracts
/// before they are in a bundle (an authority replica checking a cut).
pub fn verify_contract_signatures(
    contracts: &[String],
    view: &dyn ChainView,
    network: &str,
    rules: Rules,
) -> Result<Vec<CheckedContract>, BatchError> {
    verify_contracts(contracts, &[], view, network, &KnownContracts::new(), rules)
}

/// Every registration token verified at `time`, each signed by a member of `set`.
fn verify_registrations(
    tokens: &[String],
    set: &AuthoritySet,
    time: TimeCheck,
) -> Result<Vec<Registration>, BatchError> {
    let trust = set.trust();
    tokens
        .iter()
        .enumerate()
        .map(|(i, token)| {
            let reg = verify_registration(token, trust, time, HANDLER_NAMES).map_err(|source| {
                match source {
                    VerifyError::UnknownKid(issuer) | VerifyError::UnknownIssuer(issuer) => {
                        BatchError::NotAMember { line: i + 1, issuer }
                    }
                    source => BatchError::Registration { line: i + 1, source },
                }
            })?;
            Ok(reg)
        })
        .collect()
}

/// Contract signatures checked in one batch under rules 4 (ZIP-215), at most.
const SIGNATURE_BATCH: usize = 64;

/// Each contract's signature checked (on every core) against the wallets registered before
/// it: by `registrations`, or in the chain. Under rules 4, Ed25519 signatures are checked
/// under ZIP-215 in batches of [`SIGNATURE_BATCH`] (a batch that fails is checked one by one,
/// so each outcome is the one checking it alone gives); before, each strictly, alone.
fn verify_contracts(
    tokens: &[String],
    registrations: &[Registration],
    view: &dyn ChainView,
    network: &str,
    known: &KnownContracts,
    rules: Rules,
) -> Result<Vec<CheckedContract>, BatchError> {
    let mut in_batch: BTreeMap<String, &PublicKey> = BTreeMap::new();
    for reg in registrations {
        if let RegistrationBody::Wallets(wallets) = &reg.body {
            for w in wallets {
                in_batch.insert(w.key.id().to_string(), &w.key);
            }
        }
    }
    // The keys of every signer the contracts name, each looked up once.
    let mut signers = TrustStore::new();
    let mut looked_up = std::collections::BTreeSet::new();
    for token in tokens {
        let Some(id) = contract_signer(token) else { continue };
        if !looked_up.insert(id.clone()) || id.parse::<WalletId>().is_err() {
            continue;
        }
        if let Some(key) = in_batch.get(&id) {
            signers.add((*key).clone());
        } else if let Some(key) = view.wallet(&id)? {
            signers.add(key);
        }
    }
    // Everything but the Ed25519 signatures under rules 4 (those follow in batches), the
    // whole contract strictly before; on every core.
    let batched = rules.has(Rules::V4);
    let prepared: Vec<(Hash32, Result<Prepared, VerifyError>)> = tokens
        .par_iter()
        .map(|token| {
            let hash = Hash32::digest(token.as_bytes());
            let prepared = match known.get(&hash).filter(|v| v.network == network) {
                Some(v) => Ok(Prepared::Done(v.clone())),
                None if batched => {
                    prepare_contract(token, &signers, network).map(Prepared::Pending)
                }
                None => verify_contract(token, &signers, network).map(Prepared::Done),
            };
            (hash, prepared)
        })
        .collect();
    let mut pending: Vec<(usize, &swarmvm_token::zip215::Ed25519Check)> = prepared
        .iter()
        .enumerate()
        .filter_map(|(i, (_, p))| match p {
            Ok(Prepared::Pending(c)) => c.signature().map(|s| (i, s)),
            _ => None,
        })
        .collect();
    // A batch decompresses each distinct key once and multiplies it once, so a wallet's
    // signatures are batched together: in a bundle of busy wallets that halves the points
    // decompressed. The outcomes do not depend on the order (each batch that fails is
    // checked one by one).
    pending.sort_by_key(|(_, c)| *c.key());
    let mut holds = vec![true; prepared.len()];
    let outcomes: Vec<(usize, bool)> = pending
        .par_chunks(SIGNATURE_BATCH)
        .flat_map_iter(|chunk| {
            let checks: Vec<&swarmvm_token::zip215::Ed25519Check> =
                chunk.iter().map(|(_, c)| *c).collect();
            let results = swarmvm_token::zip215::verify_batch(&checks);
            chunk.iter().map(|(i, _)| *i).zip(results).collect::<Vec<_>>()
        })
        .collect();
    for (i, ok) in outcomes {
        holds[i] = ok;
    }
    Ok(prepared
        .into_iter()
        .zip(holds)
        .map(|((hash, prepared), ok)| {
            let verified = prepared.and_then(|p| match p {
                Prepared::Done(v) => Ok(v),
                Prepared::Pending(c) => c.finish(ok),
            });
            CheckedContract { hash, verified }
        })
        .collect())
}

/// A contract on its way through [`verify_contracts`].
enum Prepared {
    /// Verified: strictly (before rules 4), or before this batch (by a sequencer at
    /// submission, strictly).
    Done(VerifiedContract),
    /// Verified but for its Ed25519 signature.
    Pending(swarmvm_token::PendingContract),
}
