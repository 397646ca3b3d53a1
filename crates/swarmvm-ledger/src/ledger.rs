//! The writer: verified batches executed over the stored state and committed, state, trie,
//! receipts and log, in one redb transaction each.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use redb::{Database, ReadableTable as _, WriteTransaction};
use swarmvm_bundle::{Origin, VerifiedBatch};
use swarmvm_token::{Operation, RegistrationBody};
use swarmvm_vm::{
    Block, Contract, Hash32, NodeHashing, Outcome, Overlay, TrieUpdate, Vm, build_sorted,
    encode_key, entry_leaf,
};
use swarmvm_wasm::Runtime;

use crate::codec::Stored as _;
use crate::error::{ApplyError, OpenError, ReadError, corrupt, storage};
use crate::reader::{CACHE_BYTES, Db, LedgerReader, Snapshot};
use crate::record::{BundleRecord, Evidence, LogEntry, Receipt};
use crate::store::{
    BUNDLES, CONTRACTS, EVIDENCE, FORMAT, FORMAT_V1, FORMAT_V2, FORMAT_V3, HEADS, LOG, META,
    META_BUNDLE_IAT, META_BUNDLE_ID, META_BUNDLE_RULES, META_BUNDLE_SEQ, META_CONTRACT_INDEX,
    META_FORMAT, META_LOCAL, META_LOG_LEN, META_NETWORK, META_NODE_HASHING, META_ROOT, MODULES,
    RECEIPTS, ROTATIONS, STATE, StateTable, TRIE, TrieTable, decode_row, json_row, read_head,
};

/// Trie keys updated per pass: the nodes a pass loads are bounded, whatever the batch.
const TRIE_CHUNK: usize = 8_192;

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

/// A peer's ledger, the writer: one per file and process. Each batch is one write
/// transaction, so after a crash the file holds the whole batch or none of it; readers
/// ([`Ledger::reader`]) see the last commit and never wait for a batch in progress.
pub struct Ledger {
    pub(crate) db: Arc<Db>,
    path: PathBuf,
    vm: Vm,
    pub(crate) runtime: Arc<Runtime>,
}

impl fmt::Debug for Ledger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ledger").field("path", &self.path).finish_non_exhaustive()
    }
}

pub(crate) fn write_db(db: &Db) -> Result<&Database, ReadError> {
    match db {
        Db::Writable(db) => Ok(db),
        Db::ReadOnly(_) => Err(corrupt("ledger is open read-only")),
    }
}

impl Ledger {
    /// Opens the ledger file at `path`, creating it (and nothing else) if it does not exist,
    /// and carrying an older format over (version 2 and version 1 without bundles: the trie is
    /// built from the entries and checked against the recorded root).
    pub fn open(path: &Path) -> Result<Self, OpenError> {
        let db = Database::builder()
            .set_concurrency_mode(redb::ConcurrencyMode::SingleWriter)
            .set_cache_size(CACHE_BYTES)
            .create(path)
            .map_err(|e| OpenError::Storage(e.into()))?;
        init(&db)?;
        let runtime = Arc::new(Runtime::new());
        load_modules(&db, &runtime)?;
        let vm = Vm::new().with_runner(runtime.clone());
        Ok(Self { db: Arc::new(Db::Writable(db)), path: path.to_path_buf(), vm, runtime })
    }

    /// The file this ledger lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A handle for readers, cheap to clone and share between threads.
    pub fn reader(&self) -> LedgerReader {
        LedgerReader::new(self.db.clone())
    }

    /// The state as the last commit left it.
    pub fn snapshot(&self) -> Result<Snapshot, ReadError> {
        Snapshot::new(self.db.begin_read()?)
    }

    /// Applies a verified batch as one transaction: registers its registrations, runs its
    /// contracts in order over the stored state (each applies whole or gets a rejection
    /// receipt), and commits the state's changes, the trie, the receipts and a log entry
    /// together. The batch must have been verified against the ledger as it is now.
    pub fn commit(&mut self, batch: &VerifiedBatch) -> Result<BatchReport, ApplyError> {
        let db = write_db(&self.db)?;
        let txn = db.begin_write().map_err(storage)?;
        let head = read_head(&txn.open_table(META).map_err(storage)?)?;
        let base = batch.base();
        let now_last = head.last.map(|b| b.id);
        if base.last != now_last || base.local != head.local {
            let show = |h: Option<swarmvm_primitives::BundleId>| {
                h.map_or_else(|| "none".to_owned(), |h| h.to_string())
            };
            return Err(ApplyError::Stale { verified: show(base.last), now: show(now_last) });
        }
        self.store_modules(&txn, batch)?;
        let hashing = NodeHashing::for_rules(batch.rules());
        if head.hashing != hashing {
            // The first batch under rules that hash the trie otherwise: every node is hashed
            // again, in this transaction, before the batch's changes.
            rehash_trie(&txn, hashing)?;
        }
        let (changes, receipts) = {
            let state = StateTable(txn.open_table(STATE).map_err(storage)?);
            let view = StateView(&state);
            let mut overlay = Overlay::new(&view);
            self.register(batch, &mut overlay)?;
            let receipts = self.run(batch, &mut overlay)?;
            (overlay.into_changes(), receipts)
        };
        let state_root = store_changes(&txn, &changes, hashing)?;
        let report = record(&txn, batch, &head, state_root, receipts)?;
        txn.commit().map_err(storage)?;
        Ok(report)
    }

    /// Stores the batch's modules (once each) and loads them into the runtime.
    fn store_modules(
        &self,
        txn: &WriteTransaction,
        batch: &VerifiedBatch,
    ) -> Result<(), ApplyError> {
        if batch.modules().is_empty() {
            return Ok(());
        }
        let mut table = txn.open_table(MODULES).map_err(storage)?;
        for (hash, bytes) in batch.modules() {
            let loaded = self.runtime.load(bytes).map_err(|e| corrupt(e.to_string()))?;
            if loaded != *hash {
                return Err(corrupt(format!("module {hash} hashes to {loaded}")).into());
            }
            if table.get(hash.as_bytes()).map_err(storage)?.is_none() {
                table.insert(hash.as_bytes(), bytes.as_slice()).map_err(storage)?;
            }
        }
        Ok(())
    }

    fn register(&self, batch: &VerifiedBatch, overlay: &mut Overlay<'_>) -> Result<(), ApplyError> {
        for (i, reg) in batch.registrations().iter().enumerate() {
            let line = i + 1;
            let failed = |source| ApplyError::Registry { line, source };
            match &reg.body {
                RegistrationBody::Operations(ops) => {
                    for (action, op) in ops {
                        match op {
                            Operation::Handler(handler) => {
                                self.vm.register_operation(overlay, action, handler)
                            }
                            Operation::Wasm { module, fuel } => {
                                self.vm.register_module(overlay, action, *module, *fuel)
                            }
                        }
                        .map_err(failed)?;
                    }
                }
                RegistrationBody::Wallets(wallets) => {
                    for w in wallets {
                        let id = w.key.id();
                        self.vm
                            .register_wallet(
                                overlay,
                                id.as_str(),
                                &w.label,
                                &w.key.thumbprint_input(),
                            )
                            .map_err(failed)?;
                    }
                }
            }
            for taken_back in &reg.revocations {
                match &reg.body {
                    RegistrationBody::Operations(_) => self.vm.withdraw_action(overlay, taken_back),
                    RegistrationBody::Wallets(_) => self.vm.revoke_wallet(overlay, taken_back),
                }
                .map_err(failed)?;
            }
            if batch.remembers_tokens() {
                self.vm.use_token(overlay, &reg.replay_key()).map_err(failed)?;
            }
        }
        if let Some(set) = batch.authorities() {
            self.vm.set_authorities(overlay, set.canonical());
        }
        Ok(())
    }

    /// Runs the contracts; returns their receipts (positions filled in later).
    fn run(
        &self,
        batch: &VerifiedBatch,
        overlay: &mut Overlay<'_>,
    ) -> Result<Vec<Receipt>, ApplyError> {
        let mut receipts = Vec::with_capacity(batch.contracts().len());
        let block =
            Block { seq: batch.seq().unwrap_or(0), time: batch.time(), rules: batch.rules() };
        for (index, checked) in batch.contracts().iter().enumerate() {
            let index = u32::try_from(index).map_err(|_| corrupt("batch too large"))?;
            let contract = checked.hash;
            let receipt = match &checked.verified {
                Err(e) => Receipt::rejected(index, contract, None, None, e.to_string()),
                Ok(c) => {
                    let run = Contract { signer: &c.signer, nonce: c.nonce, actions: &c.actions };
                    let outcome = self
                        .vm
                        .execute_in(overlay, &run, block)
                        .map_err(|e| ApplyError::Read(ReadError::Corrupt(e.to_string())))?;
                    let who = (Some(c.signer.clone()), Some(c.nonce));
                    match outcome {
                        Outcome::Applied => Receipt::applied(index, contract, who.0, who.1),
                        Outcome::Rejected(r) => {
                            Receipt::rejected(index, contract, who.0, who.1, r.to_string())
                        }
                    }
                }
            };
            receipts.push(receipt);
        }
        Ok(receipts)
    }

    /// Keeps `head` (its JWS) as the newest head for the applied `seq`, in place of an earlier
    /// one. The caller verified it and checked that it names this ledger's bundle and root
    /// at `seq`.
    pub fn keep_head(&mut self, seq: u64, head: &str) -> Result<(), ReadError> {
        let db = write_db(&self.db)?;
        let txn = db.begin_write().map_err(storage)?;
        {
            let mut table = txn.open_table(HEADS).map_err(storage)?;
            table.insert(seq, head).map_err(storage)?;
        }
        txn.commit().map_err(storage)
    }

    /// Keeps a second validly signed bundle for an applied seq as evidence (once).
    pub fn record_evidence(&mut self, evidence: &Evidence) -> Result<(), ReadError> {
        let db = write_db(&self.db)?;
        let txn = db.begin_write().map_err(storage)?;
        {
            let mut table = txn.open_table(EVIDENCE).map_err(storage)?;
            let hash = evidence.other.hash();
            let key = (evidence.seq, hash.as_bytes());
            if table.get(key).map_err(storage)?.is_none() {
                table.insert(key, evidence.to_bytes().as_slice()).map_err(storage)?;
            }
        }
        txn.commit().map_err(storage)
    }
}

/// The stored state as the VM reads it during a batch.
struct StateView<'a, T>(&'a StateTable<T>);

impl<T: redb::ReadableTable<&'static [u8], &'static [u8]>> swarmvm_vm::StateRead
    for StateView<'_, T>
{
    fn get(
        &self,
        table: swarmvm_vm::Table,
        id: &str,
    ) -> Result<Option<swarmvm_vm::Record>, swarmvm_vm::StateError> {
        Ok(self.0.record(table, id)?)
    }
}

/// Writes a batch's changes to the state table and the trie (hashed with `hashing`); returns
/// the new root.
fn store_changes(
    txn: &WriteTransaction,
    changes: &swarmvm_vm::ChangeSet,
    hashing: NodeHashing,
) -> Result<Hash32, ReadError> {
    let mut leaves = Vec::with_capacity(changes.len());
    {
        let mut state = txn.open_table(STATE).map_err(storage)?;
        let mut buf = Vec::new();
        for (table, id, record) in changes.iter() {
            let key = encode_key(table, id);
            match record {
                Some(r) => {
                    buf.clear();
                    r.encode(&mut buf);
                    state.insert(key.as_slice(), buf.as_slice()).map_err(storage)?;
                    leaves.push((key, Some(entry_leaf(table, id, r))));
                }
                None => {
                    state.remove(key.as_slice()).map_err(storage)?;
                    leaves.push((key, None));
                }
            }
        }
    }
    let mut trie = TrieTable(txn.open_table(TRIE).map_err(storage)?);
    let mut root = None;
    for chunk in leaves.chunks(TRIE_CHUNK) {
        let changes = {
            let mut update =
                TrieUpdate::open(&trie, hashing).map_err(|e| ReadError::Corrupt(e.to_string()))?;
            for (key, leaf) in chunk {
                update.set(key, *leaf).map_err(|e| ReadError::Corrupt(e.to_string()))?;
            }
            update.finish()
        };
        for path in &changes.deletes {
            trie.0.remove(path.as_slice()).map_err(storage)?;
        }
        let mut buf = Vec::new();
        for (path, node) in &changes.writes {
            buf.clear();
            node.encode(&mut buf);
            trie.0.insert(path.as_slice(), buf.as_slice()).map_err(storage)?;
        }
        root = Some(changes.root);
    }
    match root {
        Some(r) => Ok(r),
        // Nothing changed: the root is what meta says.
        None => Ok(read_head(&txn.open_table(META).map_err(storage)?)?.state_root()),
    }
}

/// Points the contract index at `receipt`, unless the contract already applied.
fn index_receipt(
    index: &mut redb::Table<'_, &'static [u8; 32], (u64, u32)>,
    receipts: &redb::Table<'_, (u64, u32), &'static [u8]>,
    receipt: &Receipt,
) -> Result<(), ReadError> {
    let id = receipt.contract;
    let earlier = index.get(id.as_bytes()).map_err(storage)?.map(|v| v.value());
    if let Some(at) = earlier
        && let Some(old) = receipts.get(at).map_err(storage)?
    {
        let old: Receipt = decode_row(old.value())?;
        if old.is_applied() {
            return Ok(());
        }
    }
    index.insert(id.as_bytes(), (receipt.position, receipt.index)).map_err(storage)?;
    Ok(())
}

/// Indexes every receipt by contract id, once, in a ledger written before the index.
fn index_contracts(txn: &WriteTransaction) -> Result<(), OpenError> {
    let s = |e: redb::Error| OpenError::Storage(e);
    let bad = |e: ReadError| OpenError::Corrupt(e.to_string());
    let mut meta = txn.open_table(META).map_err(|e| s(e.into()))?;
    if meta.get(META_CONTRACT_INDEX).map_err(|e| s(e.into()))?.is_some() {
        return Ok(());
    }
    let receipts = txn.open_table(RECEIPTS).map_err(|e| s(e.into()))?;
    let mut index = txn.open_table(CONTRACTS).map_err(|e| s(e.into()))?;
    for row in receipts.iter().map_err(|e| s(e.into()))? {
        let (_, v) = row.map_err(|e| s(e.into()))?;
        let receipt: Receipt =
            decode_row(v.value()).map_err(|e| OpenError::Corrupt(e.to_string()))?;
        index_receipt(&mut index, &receipts, &receipt).map_err(bad)?;
    }
    meta.insert(META_CONTRACT_INDEX, [1u8].as_slice()).map_err(|e| s(e.into()))?;
    Ok(())
}

/// Writes receipts, the log entry, the bundle record and the new head.
fn record(
    txn: &WriteTransaction,
    batch: &VerifiedBatch,
    head: &crate::store::Head,
    state_root: Hash32,
    mut receipts: Vec<Receipt>,
) -> Result<BatchReport, ReadError> {
    let position = head.log_len + 1;
    for r in &mut receipts {
        r.position = position;
    }
    let applied = receipts.iter().filter(|r| r.is_applied()).count();
    let (source, seq, bundle) = match batch.origin() {
        Origin::Local => ("exec", None, None),
        Origin::Bundle { seq, id, .. } => ("bundle", Some(*seq), Some(*id)),
    };
    let entry = LogEntry {
        position,
        source: source.into(),
        seq,
        bundle,
        registrations: batch.registrations().len(),
        contracts: receipts.len(),
        applied,
        rejected: receipts.len() - applied,
        checked_at: batch.time(),
        state_root,
    };
    {
        let mut table = txn.open_table(RECEIPTS).map_err(storage)?;
        let mut index = txn.open_table(CONTRACTS).map_err(storage)?;
        for r in &receipts {
            table.insert((position, r.index), r.to_bytes().as_slice()).map_err(storage)?;
            index_receipt(&mut index, &table, r)?;
        }
        let mut log = txn.open_table(LOG).map_err(storage)?;
        log.insert(position, entry.to_bytes().as_slice()).map_err(storage)?;
        let mut meta = txn.open_table(META).map_err(storage)?;
        if let Some(n) = batch.network() {
            meta.insert(META_NETWORK, n.as_bytes()).map_err(storage)?;
        }
        meta.insert(META_ROOT, state_root.as_bytes().as_slice()).map_err(storage)?;
        meta.insert(META_LOG_LEN, position.to_le_bytes().as_slice()).map_err(storage)?;
        let hashing = NodeHashing::for_rules(batch.rules()).number();
        meta.insert(META_NODE_HASHING, hashing.to_le_bytes().as_slice()).map_err(storage)?;
        match batch.origin() {
            Origin::Bundle { seq, id, parent, issued_at, manifest } => {
                meta.insert(META_BUNDLE_SEQ, seq.to_le_bytes().as_slice()).map_err(storage)?;
                meta.insert(META_BUNDLE_ID, id.hash().as_bytes().as_slice()).map_err(storage)?;
                meta.insert(META_BUNDLE_IAT, issued_at.to_le_bytes().as_slice())
                    .map_err(storage)?;
                meta.insert(META_BUNDLE_RULES, batch.rules().number().to_le_bytes().as_slice())
                    .map_err(storage)?;
                let record = BundleRecord {
                    seq: *seq,
                    id: *id,
                    parent: *parent,
                    issued_at: *issued_at,
                    position,
                    manifest: manifest.clone(),
                };
                let mut bundles = txn.open_table(BUNDLES).map_err(storage)?;
                bundles.insert(*seq, record.to_bytes().as_slice()).map_err(storage)?;
                if batch.rotates() {
                    txn.open_table(ROTATIONS)
                        .map_err(storage)?
                        .insert(*seq, ())
                        .map_err(storage)?;
                }
            }
            Origin::Local => {
                meta.insert(META_LOCAL, [1u8].as_slice()).map_err(storage)?;
            }
        }
    }
    Ok(BatchReport { entry, state_root, receipts })
}

/// Creates the tables and carries older formats over.
fn init(db: &Database) -> Result<(), OpenError> {
    let txn = db.begin_write().map_err(|e| OpenError::Storage(e.into()))?;
    let s = |e: redb::TableError| OpenError::Storage(e.into());
    {
        // Create every table, so readers never meet a missing one.
        let meta = txn.open_table(META).map_err(s)?;
        for def in [STATE, TRIE] {
            txn.open_table(def).map_err(s)?;
        }
        txn.open_table(LOG).map_err(s)?;
        txn.open_table(RECEIPTS).map_err(s)?;
        txn.open_table(BUNDLES).map_err(s)?;
        txn.open_table(EVIDENCE).map_err(s)?;
        txn.open_table(MODULES).map_err(s)?;
        txn.open_table(CONTRACTS).map_err(s)?;
        txn.open_table(HEADS).map_err(s)?;
        txn.open_table(ROTATIONS).map_err(s)?;
        let format = meta
            .get(META_FORMAT)
            .map_err(|e| OpenError::Storage(e.into()))?
            .map(|v| String::from_utf8_lossy(v.value()).into_owned());
        let had_bundles =
            meta.get(META_BUNDLE_SEQ).map_err(|e| OpenError::Storage(e.into()))?.is_some();
        drop(meta);
        match format.as_deref() {
            Some(FORMAT) => {}
            None => set_format(&txn)?,
            // A version 1 ledger identified bundles by a hash of the manifest file, which a
            // padded copy could forge, and did not keep their manifests: one that applied
            // bundles is refused rather than guessed. Without bundles nothing changed meaning.
            Some(FORMAT_V1) if had_bundles => {
                return Err(OpenError::OldFormat {
                    found: FORMAT_V1.into(),
                    why: "it identified bundles by a hash of the manifest file, which a padded copy could forge, and did not keep their manifests; move ledger.redb away and let the node fetch and apply its bundles again",
                });
            }
            Some(FORMAT_V1 | FORMAT_V2) => {
                build_trie(&txn)?;
                compact_records(&txn)?;
                index_rotations(&txn)?;
                set_format(&txn)?;
            }
            Some(FORMAT_V3) => {
                compact_records(&txn)?;
                index_rotations(&txn)?;
                set_format(&txn)?;
            }
            Some(other) => {
                return Err(OpenError::UnknownFormat {
                    found: swarmvm_primitives::text::shown(other),
                });
            }
        }
    }
    index_contracts(&txn)?;
    txn.commit().map_err(|e| OpenError::Storage(e.into()))
}

/// Loads every stored module into the runtime (compiled once per open).
fn load_modules(db: &Database, runtime: &Runtime) -> Result<(), OpenError> {
    use redb::{ReadableDatabase as _, ReadableTable as _};
    let s = |e: redb::StorageError| OpenError::Storage(e.into());
    let txn = db.begin_read().map_err(|e| OpenError::Storage(e.into()))?;
    let table = txn.open_table(MODULES).map_err(|e| OpenError::Storage(e.into()))?;
    for item in table.iter().map_err(s)? {
        let (key, bytes) = item.map_err(s)?;
        let hash = runtime
            .load(bytes.value())
            .map_err(|e| OpenError::Corrupt(format!("stored module: {e}")))?;
        if hash.as_bytes() != key.value() {
            return Err(OpenError::Corrupt(format!("stored module {hash} is under another hash")));
        }
    }
    Ok(())
}

fn set_format(txn: &WriteTransaction) -> Result<(), OpenError> {
    let mut meta = txn.open_table(META).map_err(|e| OpenError::Storage(e.into()))?;
    meta.insert(META_FORMAT, FORMAT.as_bytes()).map_err(|e| OpenError::Storage(e.into()))?;
    Ok(())
}

/// Rewrites the JSON rows of `log`, `receipts`, `bundles` and `evidence` (format 3 and older)
/// as compact records, each read back and compared, [`COMPACT_CHUNK`] rows at a time (the keys
/// stay, so the next chunk starts after the last key rewritten).
fn compact_records(txn: &WriteTransaction) -> Result<(), OpenError> {
    rewrite::<u64, LogEntry>(txn, LOG)?;
    rewrite::<(u64, u32), Receipt>(txn, RECEIPTS)?;
    rewrite::<u64, BundleRecord>(txn, BUNDLES)?;
    rewrite_evidence(txn)
}

/// Rows [`compact_records`] holds in memory at once.
const COMPACT_CHUNK: usize = 10_000;

/// A row's JSON record as compact bytes, checked to read back as the same record.
fn compacted<T>(json: &[u8]) -> Result<Vec<u8>, OpenError>
where
    T: crate::codec::Stored + serde::de::DeserializeOwned + PartialEq,
{
    let bad = |e: ReadError| OpenError::Corrupt(e.to_string());
    let record: T = json_row(json).map_err(bad)?;
    let bytes = record.to_bytes();
    if T::from_bytes(&bytes).map_err(bad)? != record {
        return Err(OpenError::Corrupt("a record does not survive compaction".into()));
    }
    Ok(bytes)
}

fn rewrite<K, T>(
    txn: &WriteTransaction,
    def: redb::TableDefinition<'_, K, &'static [u8]>,
) -> Result<(), OpenError>
where
    K: redb::Key + 'static,
    for<'a> K: redb::Value<SelfType<'a> = K> + Clone,
    T: crate::codec::Stored + serde::de::DeserializeOwned + PartialEq,
{
    let s = |e: redb::Error| OpenError::Storage(e);
    let mut table = txn.open_table(def).map_err(|e| s(e.into()))?;
    let mut after: Option<K> = None;
    loop {
        let mut rows: Vec<(K, Vec<u8>)> = Vec::with_capacity(COMPACT_CHUNK);
        {
            let range = match after.clone() {
                None => table.range::<K>(..),
                Some(k) => {
                    table.range::<K>((std::ops::Bound::Excluded(k), std::ops::Bound::Unbounded))
                }
            }
            .map_err(|e| s(e.into()))?;
            for row in range.take(COMPACT_CHUNK) {
                let (k, v) = row.map_err(|e| s(e.into()))?;
                rows.push((k.value(), compacted::<T>(v.value())?));
            }
        }
        let Some((last, _)) = rows.last() else { return Ok(()) };
        after = Some(last.clone());
        for (k, bytes) in rows {
            table.insert(k, bytes.as_slice()).map_err(|e| s(e.into()))?;
        }
    }
}

/// [`compact_records`] for `evidence`, whose key borrows (fork evidence is rare: one pass).
fn rewrite_evidence(txn: &WriteTransaction) -> Result<(), OpenError> {
    let s = |e: redb::Error| OpenError::Storage(e);
    let mut table = txn.open_table(EVIDENCE).map_err(|e| s(e.into()))?;
    let mut rows: Vec<(u64, [u8; 32], Vec<u8>)> = Vec::new();
    for row in table.iter().map_err(|e| s(e.into()))? {
        let (k, v) = row.map_err(|e| s(e.into()))?;
        let (seq, other) = k.value();
        rows.push((seq, *other, compacted::<Evidence>(v.value())?));
    }
    for (seq, other, bytes) in rows {
        table.insert((seq, &other), bytes.as_slice()).map_err(|e| s(e.into()))?;
    }
    Ok(())
}

/// Notes which applied bundles rotated the authority set, in a ledger older than that note:
/// every stored manifest is read once.
fn index_rotations(txn: &WriteTransaction) -> Result<(), OpenError> {
    let s = |e: redb::Error| OpenError::Storage(e);
    let bundles = txn.open_table(BUNDLES).map_err(|e| s(e.into()))?;
    let mut rotations = txn.open_table(ROTATIONS).map_err(|e| s(e.into()))?;
    for row in bundles.iter().map_err(|e| s(e.into()))? {
        let (seq, v) = row.map_err(|e| s(e.into()))?;
        let record: BundleRecord =
            decode_row(v.value()).map_err(|e| OpenError::Corrupt(e.to_string()))?;
        let rotates =
            swarmvm_token::peek_manifest(&record.manifest).is_ok_and(|m| m.authority_set.is_some());
        if rotates {
            rotations.insert(seq.value(), ()).map_err(|e| s(e.into()))?;
        }
    }
    Ok(())
}

/// Hashes every node of the stored trie again with `hashing` (a batch under rules that hash
/// nodes otherwise), and records the new root and hashing in `meta`.
fn rehash_trie(txn: &WriteTransaction, hashing: NodeHashing) -> Result<(), ReadError> {
    txn.delete_table(TRIE).map_err(storage)?;
    let root = fill_trie(txn, hashing).map_err(|e| match e {
        OpenError::Storage(e) => ReadError::Storage(e),
        other => ReadError::Corrupt(other.to_string()),
    })?;
    let mut meta = txn.open_table(META).map_err(storage)?;
    meta.insert(META_ROOT, root.as_bytes().as_slice()).map_err(storage)?;
    meta.insert(META_NODE_HASHING, hashing.number().to_le_bytes().as_slice()).map_err(storage)?;
    Ok(())
}

/// Fills the trie table from the stored entries (an older ledger kept no trie), streaming
/// them in order, and checks the result against the recorded root.
fn build_trie(txn: &WriteTransaction) -> Result<(), OpenError> {
    let head = read_head(&txn.open_table(META).map_err(|e| OpenError::Storage(e.into()))?)
        .map_err(|e| match e {
            ReadError::Storage(e) => OpenError::Storage(e),
            ReadError::Corrupt(what) => OpenError::Corrupt(what),
        })?;
    let root = fill_trie(txn, head.hashing)?;
    if head.state_root() != root {
        return Err(OpenError::Corrupt(format!(
            "stored root {} but the entries hash to {root}",
            head.state_root()
        )));
    }
    Ok(())
}

/// Writes the trie of the stored entries, hashed with `hashing`, into an empty trie table;
/// returns its root.
pub(crate) fn fill_trie(txn: &WriteTransaction, hashing: NodeHashing) -> Result<Hash32, OpenError> {
    let s = |e: redb::StorageError| OpenError::Storage(e.into());
    let state = txn.open_table(STATE).map_err(|e| OpenError::Storage(e.into()))?;
    let mut trie = txn.open_table(TRIE).map_err(|e| OpenError::Storage(e.into()))?;
    let mut failed: Option<OpenError> = None;
    let entries = state.iter().map_err(s)?.map_while(|row| {
        let leaf = row.map_err(s).and_then(|(k, v)| {
            let (table, id) =
                swarmvm_vm::decode_key(k.value()).map_err(|e| OpenError::Corrupt(e.to_string()))?;
            let record = swarmvm_vm::Record::decode(table, v.value())
                .map_err(|e| OpenError::Corrupt(e.to_string()))?;
            Ok((k.value().to_vec(), entry_leaf(table, &id, &record)))
        });
        match leaf {
            Ok(entry) => Some(entry),
            Err(e) => {
                failed = Some(e);
                None
            }
        }
    });
    let mut buf = Vec::new();
    let mut write_failed = None;
    let root = build_sorted(entries, hashing, &mut |path, node| {
        buf.clear();
        node.encode(&mut buf);
        if let Err(e) = trie.insert(path, buf.as_slice()) {
            write_failed = Some(OpenError::Storage(e.into()));
        }
    });
    if let Some(e) = failed.or(write_failed) {
        return Err(e);
    }
    root.ok_or_else(|| OpenError::Corrupt("state keys are not in order".into()))
}
