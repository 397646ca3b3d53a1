//! The ledger: a VM kept in memory over a redb file that holds its state, and the batches
//! that changed it.

use std::fmt;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use redb::{
    Database, ReadOnlyDatabase, ReadTransaction, ReadableDatabase as _, ReadableTable as _,
    TableDefinition,
};
use swarmvm_primitives::BundleId;
use swarmvm_primitives::text::shown;
use swarmvm_token::{
    RegistrationBody, TimeCheck, TrustStore, VerifiedContract, VerifyError, verify_contract,
    verify_registration,
};
use swarmvm_vm::{
    Contract, HANDLER_NAMES, Hash32, Outcome, Record, Table, Vm, decode_key, encode_key,
};
use swarmvm_wallet::PublicKey;

use crate::bundle::OpenedBundle;
use crate::error::{ApplyError, storage};
use crate::record::{BundleRecord, BundleRef, Evidence, LogEntry, Receipt, Source};

/// Entries of the state: storage key (table tag, id) → record encoding.
const STATE: TableDefinition<'_, &[u8], &[u8]> = TableDefinition::new("state");
/// Ledger facts: network, root, positions.
const META: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("meta");
/// Applied batches by log position (JSON [`LogEntry`]).
const LOG: TableDefinition<'_, u64, &[u8]> = TableDefinition::new("log");
/// Receipts by (log position, index) (JSON [`Receipt`]).
const RECEIPTS: TableDefinition<'_, (u64, u32), &[u8]> = TableDefinition::new("receipts");
/// Applied bundles by seq (JSON [`BundleRecord`], with the manifest).
const BUNDLES: TableDefinition<'_, u64, &[u8]> = TableDefinition::new("bundles");
/// Fork evidence by (seq, the other bundle's identity) (JSON [`Evidence`]).
const EVIDENCE: TableDefinition<'_, (u64, &[u8; 32]), &[u8]> = TableDefinition::new("evidence");

const META_FORMAT: &str = "format";
const META_NETWORK: &str = "network";
const META_ROOT: &str = "state_root";
const META_LOG_LEN: &str = "log_len";
const META_BUNDLE_SEQ: &str = "bundle_seq";
const META_BUNDLE_ID: &str = "bundle_id";
const META_BUNDLE_IAT: &str = "bundle_iat";
/// Set once a local (`exec`) batch applied: such a ledger never takes bundles.
const META_LOCAL: &str = "local";
/// The version of what this code writes. Version 2 identifies bundles by the hash of their
/// manifest's signed payload (version 1 hashed the file) and keeps every applied manifest.
pub const FORMAT: &str = "swarmvm-ledger/2";
const FORMAT_V1: &str = "swarmvm-ledger/1";

/// One batch to apply: registration tokens first, then contracts in order, as one database
/// transaction.
#[derive(Debug, Clone, Copy)]
pub struct Batch<'a> {
    /// Registration tokens (one JWS each); every one must verify or nothing applies.
    pub registrations: &'a [String],
    /// Signed contracts (one JWS each); each applies or gets a rejection receipt.
    pub contracts: &'a [String],
    /// Authorities trusted to sign registrations.
    pub trust: &'a TrustStore,
    /// The time registration tokens are checked at (a bundle's manifest `iat`).
    pub time: TimeCheck,
    /// Where the batch comes from.
    pub source: Source<'a>,
    /// The authority the batch must come from (a bundle's manifest signer): the ledger's
    /// network must be it, and every registration token must be signed by it.
    pub authority: Option<&'a str>,
}

/// What applying a batch did.
#[derive(Debug, Clone)]
pub struct BatchReport {
    /// The log entry written.
    pub entry: LogEntry,
    /// The state root after the batch.
    pub state_root: Hash32,
    /// One receipt per contract, in order.
    pub receipts: Vec<Receipt>,
}

/// The last applied bundle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BundlePosition {
    /// Its `seq`.
    pub seq: u64,
    /// Its identity.
    pub id: BundleId,
    /// Its manifest's `iat`.
    pub issued_at: u64,
}

/// A peer's ledger: the VM's state in memory, durable in one redb file.
///
/// Each batch is one write transaction: after a crash the file holds the whole batch or none
/// of it. Opening checks that the stored entries hash to the stored root.
pub struct Ledger {
    db: Db,
    path: PathBuf,
    vm: Vm,
    /// Registered wallets, as keys that can verify contracts.
    signers: TrustStore,
    network: Option<String>,
    log_len: u64,
    bundle: Option<BundlePosition>,
    /// Local (`exec`) batches were applied.
    local: bool,
}

impl fmt::Debug for Ledger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ledger")
            .field("path", &self.path)
            .field("network", &self.network)
            .field("log_len", &self.log_len)
            .field("bundle", &self.bundle)
            .finish_non_exhaustive()
    }
}

/// The file, open for writing (one process) or for reading (any number, beside the writer).
enum Db {
    Writable(Database),
    ReadOnly(ReadOnlyDatabase),
}

impl Db {
    fn begin_read(&self) -> Result<ReadTransaction, ApplyError> {
        match self {
            Self::Writable(db) => db.begin_read().map_err(storage),
            Self::ReadOnly(db) => db.begin_read().map_err(storage),
        }
    }
}

fn corrupt(what: impl fmt::Display) -> ApplyError {
    ApplyError::Corrupt(what.to_string())
}

fn meta_u64(bytes: &[u8]) -> Result<u64, ApplyError> {
    let b: [u8; 8] = bytes.try_into().map_err(|_| corrupt("meta number is not 8 bytes"))?;
    Ok(u64::from_le_bytes(b))
}

fn meta_hash(bytes: &[u8]) -> Result<Hash32, ApplyError> {
    Hash32::from_slice(bytes).map_err(|_| corrupt("meta hash is not 32 bytes"))
}

fn json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ApplyError> {
    serde_json::from_slice(bytes).map_err(corrupt)
}

fn key_of(record: &Record) -> Result<PublicKey, ApplyError> {
    let Record::Wallet { key, .. } = record else {
        return Err(corrupt("wallet table holds another record"));
    };
    let jwk: serde_json::Value = serde_json::from_str(key).map_err(corrupt)?;
    PublicKey::from_jwk(&jwk).map_err(corrupt)
}

impl Ledger {
    /// Opens the ledger file at `path`, creating it (and nothing else) if it does not exist.
    pub fn open(path: &Path) -> Result<Self, ApplyError> {
        let db = Database::builder()
            .set_concurrency_mode(redb::ConcurrencyMode::SingleWriter)
            .create(path)
            .map_err(storage)?;
        Self::init(&db)?;
        Self::load(Db::Writable(db), path)
    }

    /// Opens an existing ledger for reading only; works while another process has it open
    /// for writing. [`Ledger::apply`] on it fails.
    pub fn open_read_only(path: &Path) -> Result<Self, ApplyError> {
        let db = Database::builder()
            .set_concurrency_mode(redb::ConcurrencyMode::SingleWriter)
            .open_read_only(path)
            .map_err(storage)?;
        Self::load(Db::ReadOnly(db), path)
    }

    /// Creates the tables and checks the format.
    fn init(db: &Database) -> Result<(), ApplyError> {
        let txn = db.begin_write().map_err(storage)?;
        {
            // Create every table, so readers never meet a missing one.
            let mut meta = txn.open_table(META).map_err(storage)?;
            txn.open_table(STATE).map_err(storage)?;
            txn.open_table(LOG).map_err(storage)?;
            txn.open_table(RECEIPTS).map_err(storage)?;
            txn.open_table(BUNDLES).map_err(storage)?;
            txn.open_table(EVIDENCE).map_err(storage)?;
            let format = meta.get(META_FORMAT).map_err(storage)?.map(|v| v.value().to_vec());
            match format.as_deref().map(String::from_utf8_lossy).as_deref() {
                None => {
                    meta.insert(META_FORMAT, FORMAT.as_bytes()).map_err(storage)?;
                }
                Some(FORMAT) => {}
                // A version 1 ledger that never applied a bundle holds nothing whose meaning
                // changed: only the version moves. One that did cannot know its bundles'
                // identities (it kept a hash of the manifest file, which a padded copy could
                // forge), so it is refused rather than guessed.
                Some(FORMAT_V1) if meta.get(META_BUNDLE_SEQ).map_err(storage)?.is_none() => {
                    meta.insert(META_FORMAT, FORMAT.as_bytes()).map_err(storage)?;
                }
                Some(FORMAT_V1) => {
                    return Err(ApplyError::OldFormat {
                        found: FORMAT_V1.into(),
                        why: "it identified bundles by a hash of the manifest file, which a padded copy could forge, and did not keep their manifests; move ledger.redb away and let the node fetch and apply its bundles again",
                    });
                }
                Some(other) => {
                    return Err(corrupt(format!("unknown format {}", shown(other))));
                }
            }
        }
        txn.commit().map_err(storage)
    }

    fn load(db: Db, path: &Path) -> Result<Self, ApplyError> {
        let read = db.begin_read()?;
        let state = read.open_table(STATE).map_err(storage)?;
        let mut entries = Vec::new();
        for row in state.iter().map_err(storage)? {
            let (k, v) = row.map_err(storage)?;
            let (table, id) = decode_key(k.value()).map_err(corrupt)?;
            let record = Record::decode(table, v.value()).map_err(corrupt)?;
            entries.push((table, id, record));
        }
        let vm = Vm::from_entries(entries).map_err(corrupt)?;
        let meta = read.open_table(META).map_err(storage)?;
        let get = |key: &str| -> Result<Option<Vec<u8>>, ApplyError> {
            Ok(meta.get(key).map_err(storage)?.map(|v| v.value().to_vec()))
        };
        let network = get(META_NETWORK)?
            .map(|b| String::from_utf8(b).map_err(|_| corrupt("network id is not utf-8")))
            .transpose()?;
        let log_len = get(META_LOG_LEN)?.map(|b| meta_u64(&b)).transpose()?.unwrap_or(0);
        if get(META_FORMAT)?.as_deref() != Some(FORMAT.as_bytes()) {
            return Err(ApplyError::OldFormat {
                found: shown(&String::from_utf8_lossy(&get(META_FORMAT)?.unwrap_or_default())),
                why: "open it for writing once (swarmvm node run, node apply or exec) to migrate it, or move it away",
            });
        }
        let bundle = match (get(META_BUNDLE_SEQ)?, get(META_BUNDLE_ID)?, get(META_BUNDLE_IAT)?) {
            (Some(seq), Some(id), Some(iat)) => Some(BundlePosition {
                seq: meta_u64(&seq)?,
                id: BundleId(meta_hash(&id)?),
                issued_at: meta_u64(&iat)?,
            }),
            (None, None, None) => None,
            _ => return Err(corrupt("the last bundle's seq, identity and time are incomplete")),
        };
        let local = get(META_LOCAL)?.is_some();
        let computed = vm.state_root();
        if let Some(stored) = get(META_ROOT)?.map(|b| meta_hash(&b)).transpose()? {
            if stored != computed {
                return Err(ApplyError::RootMismatch { stored, computed });
            }
        } else if !vm.state().is_empty() {
            return Err(corrupt("entries without a recorded root"));
        }
        let mut signers = TrustStore::new();
        for (_, record) in vm.state().table(Table::Wallet) {
            signers.add(key_of(record)?);
        }
        drop((meta, state, read));
        Ok(Self { db, path: path.to_path_buf(), vm, signers, network, log_len, bundle, local })
    }

    /// The file this ledger lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The VM holding the current state (read-only).
    pub fn vm(&self) -> &Vm {
        &self.vm
    }

    /// The current state root.
    pub fn state_root(&self) -> Hash32 {
        self.vm.state_root()
    }

    /// The network (authority id) this ledger belongs to, once registrations were applied.
    pub fn network(&self) -> Option<&str> {
        self.network.as_deref()
    }

    /// The number of batches applied.
    pub fn log_len(&self) -> u64 {
        self.log_len
    }

    /// The last applied bundle.
    pub fn last_bundle(&self) -> Option<BundlePosition> {
        self.bundle
    }

    /// The registered wallets' keys.
    pub fn signers(&self) -> &TrustStore {
        &self.signers
    }

    /// Log entries from position `from` (1-based), at most `limit`.
    pub fn log(&self, from: u64, limit: usize) -> Result<Vec<LogEntry>, ApplyError> {
        let read = self.db.begin_read()?;
        let table = read.open_table(LOG).map_err(storage)?;
        let mut out = Vec::new();
        for row in table.range(from.max(1)..).map_err(storage)?.take(limit) {
            let (_, v) = row.map_err(storage)?;
            out.push(serde_json::from_slice(v.value()).map_err(corrupt)?);
        }
        Ok(out)
    }

    /// The applied bundle at `seq`, with its manifest.
    pub fn bundle(&self, seq: u64) -> Result<Option<BundleRecord>, ApplyError> {
        let read = self.db.begin_read()?;
        let table = read.open_table(BUNDLES).map_err(storage)?;
        table.get(seq).map_err(storage)?.map(|v| json(v.value())).transpose()
    }

    /// Fork evidence this ledger has seen, by seq.
    pub fn evidence(&self) -> Result<Vec<Evidence>, ApplyError> {
        let read = self.db.begin_read()?;
        let table = read.open_table(EVIDENCE).map_err(storage)?;
        let mut out = Vec::new();
        for row in table.iter().map_err(storage)? {
            let (_, v) = row.map_err(storage)?;
            out.push(json(v.value())?);
        }
        Ok(out)
    }

    /// True when local (`exec`) batches were applied: such a ledger takes no bundles.
    pub fn is_local(&self) -> bool {
        self.local
    }

    /// Receipts of the batches from log position `from`, at most `limit`.
    pub fn receipts(&self, from: u64, limit: usize) -> Result<Vec<Receipt>, ApplyError> {
        let read = self.db.begin_read()?;
        let table = read.open_table(RECEIPTS).map_err(storage)?;
        let mut out = Vec::new();
        for row in table.range((from.max(1), 0)..).map_err(storage)?.take(limit) {
            let (_, v) = row.map_err(storage)?;
            out.push(serde_json::from_slice(v.value()).map_err(corrupt)?);
        }
        Ok(out)
    }

    /// Applies a batch as one transaction: verifies every registration token (all must
    /// verify), registers them, verifies the contracts (on all cores) against the registered
    /// wallets and the network, runs them in order, and commits state, receipts and a log
    /// entry together. On any error nothing changes, in memory or on disk, except that a fork
    /// (a second validly signed bundle for an applied seq) is recorded as evidence.
    pub fn apply(&mut self, batch: &Batch<'_>) -> Result<BatchReport, ApplyError> {
        if matches!(self.db, Db::ReadOnly(_)) {
            return Err(ApplyError::ReadOnly);
        }
        match (&batch.source, self.bundle) {
            (Source::Exec, Some(last)) => {
                return Err(ApplyError::FollowsNetwork {
                    network: self.network.clone().unwrap_or_default(),
                    seq: last.seq,
                });
            }
            (Source::Bundle(_), _) if self.local => return Err(ApplyError::HasLocalBatches),
            _ => {}
        }
        if let (Some(authority), Some(network)) = (batch.authority, &self.network)
            && authority != network
        {
            return Err(ApplyError::ForeignBundle {
                issuer: authority.to_owned(),
                network: network.clone(),
            });
        }
        if let Source::Bundle(bundle) = &batch.source {
            self.check_order(bundle)?;
        }
        let registrations = batch
            .registrations
            .iter()
            .enumerate()
            .map(|(i, token)| {
                verify_registration(token, batch.trust, batch.time, HANDLER_NAMES)
                    .map_err(|source| ApplyError::Registration { line: i + 1, source })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut network = self.network.clone();
        if let Some(authority) = batch.authority {
            match &network {
                Some(n) if n != authority => {
                    return Err(ApplyError::ForeignBundle {
                        issuer: authority.to_owned(),
                        network: n.clone(),
                    });
                }
                _ => network = Some(authority.to_owned()),
            }
        }
        for (i, reg) in registrations.iter().enumerate() {
            match &network {
                None => network = Some(reg.issuer.clone()),
                Some(n) if *n != reg.issuer => {
                    return Err(ApplyError::WrongNetwork {
                        line: i + 1,
                        issuer: reg.issuer.clone(),
                        network: n.clone(),
                    });
                }
                Some(_) => {}
            }
        }
        if network.is_none() && !batch.contracts.is_empty() {
            return Err(ApplyError::NoNetwork);
        }

        self.vm.begin_batch();
        let mut signers = self.signers.clone();
        let result = self.run(batch, &registrations, network.as_deref(), &mut signers);
        let report = match result
            .and_then(|(receipts, regs)| self.persist(batch, network.as_deref(), receipts, regs))
        {
            Ok(report) => report,
            Err(e) => {
                self.vm.rollback_batch();
                return Err(e);
            }
        };
        self.vm.commit_batch();
        self.signers = signers;
        self.network = network;
        self.log_len = report.entry.position;
        match batch.source {
            Source::Bundle(b) => {
                self.bundle = Some(BundlePosition { seq: b.seq, id: b.id, issued_at: b.issued_at });
            }
            Source::Exec => self.local = true,
        }
        Ok(report)
    }

    /// Applies an opened bundle: its registrations and contracts as one batch, in order
    /// (`seq`, `parent`, `iat` not below the parent's), token time rules checked at the
    /// manifest's `iat`, every token and the ledger's network bound to the manifest's signer.
    pub fn apply_bundle(
        &mut self,
        bundle: &OpenedBundle,
        trust: &TrustStore,
    ) -> Result<BatchReport, ApplyError> {
        let m = &bundle.manifest;
        self.apply(&Batch {
            registrations: &bundle.registrations,
            contracts: &bundle.contracts,
            trust,
            time: TimeCheck::at(m.issued_at),
            source: Source::Bundle(BundleRef {
                seq: m.seq,
                id: m.id,
                parent: m.parent,
                issued_at: m.issued_at,
                manifest: &bundle.manifest_token,
            }),
            authority: Some(&m.issuer),
        })
    }

    /// Where a bundle stands against the chain: next in order, or refused as out of order,
    /// already applied, or a fork (recorded as evidence).
    fn check_order(&mut self, bundle: &BundleRef<'_>) -> Result<(), ApplyError> {
        let BundleRef { seq, id, parent, .. } = *bundle;
        let expected = self.bundle.map_or(1, |b| b.seq + 1);
        if seq < expected {
            let applied = self
                .bundle(seq)?
                .ok_or_else(|| corrupt(format!("no record of applied bundle seq {seq}")))?;
            if applied.id == id {
                return Err(ApplyError::AlreadyApplied { seq, id });
            }
            self.record_evidence(&applied, bundle)?;
            return Err(ApplyError::Fork { seq, kept: applied.id, other: id });
        }
        if seq != expected {
            return Err(ApplyError::OutOfOrder { seq, expected });
        }
        let last = self.bundle.map(|b| b.id);
        if parent != last {
            let show = |h: Option<BundleId>| h.map_or_else(|| "none".to_owned(), |h| h.to_string());
            return Err(ApplyError::WrongParent {
                seq,
                parent: show(parent),
                expected: show(last),
            });
        }
        if let Some(last) = self.bundle
            && bundle.issued_at < last.issued_at
        {
            return Err(ApplyError::BeforeParent {
                seq,
                iat: bundle.issued_at,
                parent_iat: last.issued_at,
            });
        }
        Ok(())
    }

    /// Keeps `other`, a second validly signed bundle for an applied seq, as evidence (once).
    fn record_evidence(
        &mut self,
        kept: &BundleRecord,
        other: &BundleRef<'_>,
    ) -> Result<(), ApplyError> {
        let Db::Writable(db) = &self.db else { return Err(ApplyError::ReadOnly) };
        let evidence = Evidence {
            seq: other.seq,
            kept: kept.id,
            other: other.id,
            kept_manifest: kept.manifest.clone(),
            other_manifest: other.manifest.to_owned(),
            seen_at: swarmvm_token::unix_now(),
        };
        let txn = db.begin_write().map_err(storage)?;
        {
            let mut table = txn.open_table(EVIDENCE).map_err(storage)?;
            let hash = other.id.hash();
            let key = (other.seq, hash.as_bytes());
            if table.get(key).map_err(storage)?.is_none() {
                let json = serde_json::to_vec(&evidence).map_err(corrupt)?;
                table.insert(key, json.as_slice()).map_err(storage)?;
            }
        }
        txn.commit().map_err(storage)
    }

    /// Registers, verifies and executes; returns the receipts (without positions) and the
    /// number of registrations.
    fn run(
        &mut self,
        batch: &Batch<'_>,
        registrations: &[swarmvm_token::Registration],
        network: Option<&str>,
        signers: &mut TrustStore,
    ) -> Result<(Vec<Receipt>, usize), ApplyError> {
        for (i, reg) in registrations.iter().enumerate() {
            let line = i + 1;
            match &reg.body {
                RegistrationBody::Operations(ops) => {
                    for (action, handler) in ops {
                        self.vm
                            .register_operation(action, handler)
                            .map_err(|source| ApplyError::Registry { line, source })?;
                    }
                }
                RegistrationBody::Wallets(wallets) => {
                    for w in wallets {
                        let id = w.key.id();
                        self.vm
                            .register_wallet(id.as_str(), &w.label, &w.key.thumbprint_input())
                            .map_err(|source| ApplyError::Registry { line, source })?;
                        signers.add(w.key.clone());
                    }
                }
            }
        }
        let network = network.unwrap_or_default();
        let verified: Vec<Result<VerifiedContract, VerifyError>> = batch
            .contracts
            .par_iter()
            .map(|token| verify_contract(token, signers, network))
            .collect();
        let mut receipts = Vec::with_capacity(verified.len());
        for (index, (token, checked)) in batch.contracts.iter().zip(verified).enumerate() {
            let hash = Hash32::digest(token.as_bytes()).to_hex();
            let index = u32::try_from(index).map_err(|_| corrupt("batch too large"))?;
            let receipt = match checked {
                Err(e) => Receipt {
                    position: 0,
                    index,
                    contract: hash,
                    signer: None,
                    nonce: None,
                    status: "rejected".into(),
                    reason: Some(e.to_string()),
                },
                Ok(c) => {
                    let outcome = self.vm.execute(&Contract {
                        signer: &c.signer,
                        nonce: c.nonce,
                        actions: &c.actions,
                    });
                    let (status, reason) = match outcome {
                        Outcome::Applied => ("applied", None),
                        Outcome::Rejected(r) => ("rejected", Some(r.to_string())),
                    };
                    Receipt {
                        position: 0,
                        index,
                        contract: hash,
                        signer: Some(c.signer),
                        nonce: Some(c.nonce),
                        status: status.into(),
                        reason,
                    }
                }
            };
            receipts.push(receipt);
        }
        Ok((receipts, registrations.len()))
    }

    fn persist(
        &mut self,
        batch: &Batch<'_>,
        network: Option<&str>,
        mut receipts: Vec<Receipt>,
        registrations: usize,
    ) -> Result<BatchReport, ApplyError> {
        let position = self.log_len + 1;
        for r in &mut receipts {
            r.position = position;
        }
        let state_root = self.vm.state_root();
        let applied = receipts.iter().filter(|r| r.is_applied()).count();
        let (source, bundle) = match batch.source {
            Source::Exec => ("exec", None),
            Source::Bundle(b) => ("bundle", Some(b)),
        };
        let entry = LogEntry {
            position,
            source: source.into(),
            seq: bundle.map(|b| b.seq),
            bundle: bundle.map(|b| b.id),
            registrations,
            contracts: receipts.len(),
            applied,
            rejected: receipts.len() - applied,
            checked_at: batch.time.now,
            state_root: state_root.to_hex(),
        };
        let Db::Writable(db) = &self.db else { return Err(ApplyError::ReadOnly) };
        let txn = db.begin_write().map_err(storage)?;
        {
            let mut state = txn.open_table(STATE).map_err(storage)?;
            let mut buf = Vec::new();
            for (table, id) in self.vm.batch_changes() {
                let key = encode_key(table, &id);
                match self.vm.state().get(table, &id) {
                    Some(record) => {
                        buf.clear();
                        record.encode(&mut buf);
                        state.insert(key.as_slice(), buf.as_slice()).map_err(storage)?;
                    }
                    None => {
                        state.remove(key.as_slice()).map_err(storage)?;
                    }
                }
            }
            let mut table = txn.open_table(RECEIPTS).map_err(storage)?;
            for r in &receipts {
                let json = serde_json::to_vec(r).map_err(corrupt)?;
                table.insert((position, r.index), json.as_slice()).map_err(storage)?;
            }
            let mut log = txn.open_table(LOG).map_err(storage)?;
            let json = serde_json::to_vec(&entry).map_err(corrupt)?;
            log.insert(position, json.as_slice()).map_err(storage)?;
            let mut meta = txn.open_table(META).map_err(storage)?;
            if let Some(n) = network {
                meta.insert(META_NETWORK, n.as_bytes()).map_err(storage)?;
            }
            meta.insert(META_ROOT, state_root.as_bytes().as_slice()).map_err(storage)?;
            meta.insert(META_LOG_LEN, position.to_le_bytes().as_slice()).map_err(storage)?;
            match bundle {
                Some(b) => {
                    meta.insert(META_BUNDLE_SEQ, b.seq.to_le_bytes().as_slice())
                        .map_err(storage)?;
                    meta.insert(META_BUNDLE_ID, b.id.hash().as_bytes().as_slice())
                        .map_err(storage)?;
                    meta.insert(META_BUNDLE_IAT, b.issued_at.to_le_bytes().as_slice())
                        .map_err(storage)?;
                    let record = BundleRecord {
                        seq: b.seq,
                        id: b.id,
                        parent: b.parent,
                        issued_at: b.issued_at,
                        position,
                        manifest: b.manifest.to_owned(),
                    };
                    let json = serde_json::to_vec(&record).map_err(corrupt)?;
                    let mut bundles = txn.open_table(BUNDLES).map_err(storage)?;
                    bundles.insert(b.seq, json.as_slice()).map_err(storage)?;
                }
                None => {
                    meta.insert(META_LOCAL, [1u8].as_slice()).map_err(storage)?;
                }
            }
        }
        txn.commit().map_err(storage)?;
        Ok(BatchReport { entry, state_root, receipts })
    }
}
