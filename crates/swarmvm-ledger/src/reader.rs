//! Reading a ledger: a [`Snapshot`] is one redb read transaction, the state as the last
//! commit left it. Readers never wait for the writer, and the writer never waits for them.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use redb::{ReadOnlyTable, ReadTransaction, ReadableDatabase as _, ReadableTable as _};
use serde_json::{Map, Value, json};
use swarmvm_bundle::{BundlePosition, ChainView};
use swarmvm_primitives::BundleId;
use swarmvm_token::AuthoritySet;
use swarmvm_vm::view::{ViewError, page, write_state_json};
use swarmvm_vm::{
    Hash32, NodeHashing, Record, StateError, StateRead, StateScan, Table, encode_key,
};
use swarmvm_wallet::PublicKey;

use crate::error::{OpenError, ReadError, corrupt, storage};
use crate::record::{BundleRecord, Evidence, LogEntry, Receipt};
use crate::store::{
    BUNDLES, CONTRACTS, EVIDENCE, FORMAT, HEADS, Head, LOG, META, META_FORMAT, MODULES, RECEIPTS,
    ROTATIONS, STATE, StateTable, TRIE, TrieTable, decode_row, read_head,
};

/// The file, open for writing (one process) or for reading (any number, beside the writer).
pub(crate) enum Db {
    Writable(redb::Database),
    ReadOnly(redb::ReadOnlyDatabase),
}

impl Db {
    pub(crate) fn begin_read(&self) -> Result<ReadTransaction, ReadError> {
        match self {
            Self::Writable(db) => db.begin_read().map_err(storage),
            Self::ReadOnly(db) => db.begin_read().map_err(storage),
        }
    }
}

/// The authority set read from a state last, with its JSON text: parsing decodes and checks
/// every member's key, and nodes read the set in force many times between two rotations.
/// The parse is a function of the text alone, so one memo serves every ledger.
static LAST_SET: std::sync::Mutex<Option<(String, AuthoritySet)>> = std::sync::Mutex::new(None);

/// The page cache redb keeps for a ledger: bounded, so memory does not grow with the state.
pub(crate) const CACHE_BYTES: usize = 48 * 1024 * 1024;

/// A handle for reading a ledger, cheap to clone and to share between threads.
#[derive(Clone)]
pub struct LedgerReader {
    db: Arc<Db>,
}

impl std::fmt::Debug for LedgerReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LedgerReader").finish_non_exhaustive()
    }
}

impl LedgerReader {
    pub(crate) fn new(db: Arc<Db>) -> Self {
        Self { db }
    }

    /// Opens an existing ledger for reading only; works while another process has it open
    /// for writing.
    pub fn open_read_only(path: &Path) -> Result<Self, OpenError> {
        let db = redb::Database::builder()
            .set_concurrency_mode(redb::ConcurrencyMode::SingleWriter)
            .set_cache_size(CACHE_BYTES)
            .open_read_only(path)
            .map_err(|e| OpenError::Storage(e.into()))?;
        let reader = Self { db: Arc::new(Db::ReadOnly(db)) };
        let txn = reader.db.begin_read().map_err(open_error)?;
        let meta = txn.open_table(META).map_err(|e| OpenError::Storage(e.into()))?;
        let format = meta.get(META_FORMAT).map_err(|e| OpenError::Storage(e.into()))?;
        let format = format.map(|v| String::from_utf8_lossy(v.value()).into_owned());
        let known =
            [FORMAT, crate::store::FORMAT_V1, crate::store::FORMAT_V2, crate::store::FORMAT_V3];
        if let Some(other) = format.as_deref().filter(|f| !known.contains(f)) {
            return Err(OpenError::UnknownFormat { found: swarmvm_primitives::text::shown(other) });
        }
        if format.as_deref() != Some(FORMAT) {
            return Err(OpenError::OldFormat {
                found: swarmvm_primitives::text::shown(format.as_deref().unwrap_or("none")),
                why: "open it for writing once (swarmvm node run, node apply or exec) to migrate it, or move it away",
            });
        }
        Ok(reader)
    }

    /// The state as the last commit left it.
    pub fn snapshot(&self) -> Result<Snapshot, ReadError> {
        Snapshot::new(self.db.begin_read()?)
    }
}

fn open_error(e: ReadError) -> OpenError {
    match e {
        ReadError::Storage(e) => OpenError::Storage(e),
        ReadError::Corrupt(what) => OpenError::Corrupt(what),
    }
}

/// The ledger as one commit left it: its state, chain position, log and receipts.
pub struct Snapshot {
    txn: ReadTransaction,
    head: Head,
    state: StateTable<ReadOnlyTable<&'static [u8], &'static [u8]>>,
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot").field("head", &self.head).finish_non_exhaustive()
    }
}

impl Snapshot {
    pub(crate) fn new(txn: ReadTransaction) -> Result<Self, ReadError> {
        let head = read_head(&txn.open_table(META).map_err(storage)?)?;
        let state = StateTable(txn.open_table(STATE).map_err(storage)?);
        Ok(Self { txn, head, state })
    }

    /// The read transaction under this snapshot.
    pub(crate) fn transaction(&self) -> &ReadTransaction {
        &self.txn
    }

    /// The seq of the snapshot the ledger started from (`None`: it replayed from genesis).
    pub fn snapshot_seq(&self) -> Option<u64> {
        self.head.snapshot.map(|(seq, _)| seq)
    }

    /// The state root after bundle `seq`: from its log entry, or the snapshot's root for the
    /// bundle of the snapshot the ledger started from. `None` when it is not applied here.
    pub fn root_after(&self, seq: u64) -> Result<Option<Hash32>, ReadError> {
        if let Some((at, root)) = self.head.snapshot
            && at == seq
        {
            return Ok(Some(root));
        }
        let Some(record) = self.bundle(seq)? else { return Ok(None) };
        Ok(self.log(record.position, 1)?.into_iter().next().map(|e| e.state_root))
    }

    /// The state root.
    pub fn state_root(&self) -> Hash32 {
        self.head.state_root()
    }

    /// The network (authority id) this ledger belongs to, once registrations were applied.
    pub fn network(&self) -> Option<&str> {
        self.head.network.as_deref()
    }

    /// The number of batches applied.
    pub fn log_len(&self) -> u64 {
        self.head.log_len
    }

    /// The last applied bundle.
    pub fn last_bundle(&self) -> Option<BundlePosition> {
        self.head.last
    }

    /// True when local (`exec`) batches were applied: such a ledger takes no bundles.
    pub fn is_local(&self) -> bool {
        self.head.local
    }

    /// How the trie's nodes are hashed: binary from the first batch under rules 3.
    pub fn node_hashing(&self) -> NodeHashing {
        self.head.hashing
    }

    /// The newest head kept for the applied `seq` (its JWS), if any.
    pub fn head_at(&self, seq: u64) -> Result<Option<String>, ReadError> {
        let table = self.txn.open_table(HEADS).map_err(storage)?;
        Ok(table.get(seq).map_err(storage)?.map(|v| v.value().to_owned()))
    }

    /// The applied bundles whose manifests rotated the authority set, in seq order.
    pub fn rotations(&self) -> Result<Vec<BundleRecord>, ReadError> {
        let table = self.txn.open_table(ROTATIONS).map_err(storage)?;
        let mut out = Vec::new();
        for row in table.iter().map_err(storage)? {
            let (seq, _) = row.map_err(storage)?;
            let seq = seq.value();
            out.push(self.bundle(seq)?.ok_or_else(|| {
                corrupt(format!("bundle {seq} rotated the set but is not recorded"))
            })?);
        }
        Ok(out)
    }

    /// The proof (`docs/format.md`, "Proofs") of the entry at the storage key `key`, present
    /// or absent, against [`Self::state_root`]. Only a trie hashed with
    /// [`NodeHashing::Binary`] proves entries this way: see [`Self::node_hashing`].
    pub fn prove(&self, key: &[u8]) -> Result<Vec<u8>, ReadError> {
        let trie = TrieTable(self.txn.open_table(TRIE).map_err(storage)?);
        swarmvm_vm::prove(&trie, key).map_err(|e| corrupt(e.to_string()))
    }

    /// The record at `id` in `table`.
    pub fn record(&self, table: Table, id: &str) -> Result<Option<Record>, ReadError> {
        self.state.record(table, id)
    }

    /// The applied bundle at `seq`, with its manifest.
    pub fn bundle(&self, seq: u64) -> Result<Option<BundleRecord>, ReadError> {
        let table = self.txn.open_table(BUNDLES).map_err(storage)?;
        table.get(seq).map_err(storage)?.map(|v| decode_row(v.value())).transpose()
    }

    /// A WebAssembly module's bytes, if a batch carried it.
    pub fn module(&self, hash: &Hash32) -> Result<Option<Vec<u8>>, ReadError> {
        let table = self.txn.open_table(MODULES).map_err(storage)?;
        Ok(table.get(hash.as_bytes()).map_err(storage)?.map(|v| v.value().to_vec()))
    }

    /// Every module's hash, in order.
    pub fn modules(&self) -> Result<Vec<Hash32>, ReadError> {
        let table = self.txn.open_table(MODULES).map_err(storage)?;
        let mut out = Vec::new();
        for item in table.iter().map_err(storage)? {
            let (k, _) = item.map_err(storage)?;
            out.push(Hash32::from_slice(k.value()).map_err(corrupt)?);
        }
        Ok(out)
    }

    /// Fork evidence this ledger has seen, by seq.
    pub fn evidence(&self) -> Result<Vec<Evidence>, ReadError> {
        let table = self.txn.open_table(EVIDENCE).map_err(storage)?;
        let mut out = Vec::new();
        for row in table.iter().map_err(storage)? {
            let (_, v) = row.map_err(storage)?;
            out.push(decode_row(v.value())?);
        }
        Ok(out)
    }

    /// Log entries from position `from` (1-based), at most `limit`.
    pub fn log(&self, from: u64, limit: usize) -> Result<Vec<LogEntry>, ReadError> {
        let table = self.txn.open_table(LOG).map_err(storage)?;
        let mut out = Vec::new();
        for row in table.range(from.max(1)..).map_err(storage)?.take(limit) {
            let (_, v) = row.map_err(storage)?;
            out.push(decode_row(v.value())?);
        }
        Ok(out)
    }

    /// The receipt of contract `id` (the SHA-256 of its token) that applied it, else its
    /// latest rejection, with the log entry of its batch.
    pub fn contract(&self, id: &Hash32) -> Result<Option<(Receipt, LogEntry)>, ReadError> {
        let index = self.txn.open_table(CONTRACTS).map_err(storage)?;
        let Some(at) = index.get(id.as_bytes()).map_err(storage)?.map(|v| v.value()) else {
            return Ok(None);
        };
        let receipts = self.txn.open_table(RECEIPTS).map_err(storage)?;
        let receipt = receipts
            .get(at)
            .map_err(storage)?
            .ok_or_else(|| corrupt("the contract index names a missing receipt"))?;
        let log = self.txn.open_table(LOG).map_err(storage)?;
        let entry = log
            .get(at.0)
            .map_err(storage)?
            .ok_or_else(|| corrupt("a receipt of a missing log entry"))?;
        Ok(Some((decode_row(receipt.value())?, decode_row(entry.value())?)))
    }

    /// Receipts of the batches from log position `from`, at most `limit`.
    pub fn receipts(&self, from: u64, limit: usize) -> Result<Vec<Receipt>, ReadError> {
        let table = self.txn.open_table(RECEIPTS).map_err(storage)?;
        let mut out = Vec::new();
        for row in table.range((from.max(1), 0)..).map_err(storage)?.take(limit) {
            let (_, v) = row.map_err(storage)?;
            out.push(decode_row(v.value())?);
        }
        Ok(out)
    }

    /// The entry `id` of `table` as a page of its table shows it (`None` when absent).
    pub fn entry(&self, table: Table, id: &str) -> Result<Option<Value>, ReadError> {
        let Some(record) = self.record(table, id)? else { return Ok(None) };
        swarmvm_vm::view::entry_json(self, id, &record).map(Some).map_err(corrupt)
    }

    /// A page of `table`: at most `limit` entries with ids above `after`, and the id to ask
    /// after for the next page.
    pub fn page(
        &self,
        table: Table,
        after: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<Value>, Option<String>), ReadError> {
        page(self, table, after, limit).map_err(corrupt)
    }

    /// What the whole-state JSON adds to the tables: `network`, `state_root`, `batches`,
    /// `last_seq` and `last_bundle`.
    pub fn summary(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("network".into(), json!(self.network()));
        m.insert("state_root".into(), json!(self.state_root()));
        m.insert("batches".into(), json!(self.log_len()));
        m.insert("last_seq".into(), json!(self.last_bundle().map_or(0, |b| b.seq)));
        m.insert(
            "last_bundle".into(),
            match self.last_bundle() {
                Some(b) => json!({"seq": b.seq, "id": b.id}),
                None => Value::Null,
            },
        );
        m
    }

    /// Writes the whole state as JSON (the tables, then [`Snapshot::summary`]), reading
    /// entries as it goes.
    pub fn write_json(&self, out: &mut dyn Write) -> Result<(), ViewError> {
        write_state_json(self, &self.summary(), out)
    }

    /// Calls `f` with every entry in canonical order (storage key, record), until it
    /// returns false.
    pub fn for_each_entry(
        &self,
        f: &mut dyn FnMut(Table, &str, Record) -> bool,
    ) -> Result<(), ReadError> {
        for table in Table::ALL {
            let mut go_on = true;
            let start = [table.tag()];
            self.state.walk(
                table,
                std::ops::Bound::Included(&start[..]),
                &start,
                &mut |id, r| {
                    go_on = f(table, id, r);
                    go_on
                },
            )?;
            if !go_on {
                break;
            }
        }
        Ok(())
    }
}

impl StateRead for Snapshot {
    fn get(&self, table: Table, id: &str) -> Result<Option<Record>, StateError> {
        Ok(self.state.record(table, id)?)
    }
}

impl StateScan for Snapshot {
    fn scan(
        &self,
        table: Table,
        after: Option<&str>,
        f: &mut dyn FnMut(&str, Record) -> bool,
    ) -> Result<(), StateError> {
        let tag = [table.tag()];
        let key = after.map(|a| encode_key(table, a));
        let start = match &key {
            Some(k) => std::ops::Bound::Excluded(k.as_slice()),
            None => std::ops::Bound::Included(&tag[..]),
        };
        Ok(self.state.walk(table, start, &tag, f)?)
    }

    fn scan_prefix(
        &self,
        table: Table,
        prefix: &str,
        f: &mut dyn FnMut(&str, Record) -> bool,
    ) -> Result<(), StateError> {
        let key = encode_key(table, prefix);
        Ok(self.state.walk(table, std::ops::Bound::Included(key.as_slice()), &key, f)?)
    }
}

impl ChainView for Snapshot {
    fn network(&self) -> Option<String> {
        self.head.network.clone()
    }

    fn last_bundle(&self) -> Option<BundlePosition> {
        self.head.last
    }

    fn is_local(&self) -> bool {
        self.head.local
    }

    fn applied(&self, seq: u64) -> Result<Option<(BundleId, String)>, StateError> {
        Ok(self.bundle(seq)?.map(|b| (b.id, b.manifest)))
    }

    fn wallet(&self, id: &str) -> Result<Option<PublicKey>, StateError> {
        let Some(Record::Wallet { key, .. }) = self.state.record(Table::Wallet, id)? else {
            return Ok(None);
        };
        let jwk: Value = serde_json::from_str(&key).map_err(|e| StateError::from(corrupt(e)))?;
        PublicKey::from_jwk(&jwk).map(Some).map_err(|e| StateError::from(corrupt(e)))
    }

    fn has_module(&self, module: &Hash32) -> Result<bool, StateError> {
        Ok(self.module(module).map_err(StateError::from)?.is_some())
    }

    fn authorities(&self) -> Result<Option<AuthoritySet>, StateError> {
        let Some(Record::AuthoritySet { set }) =
            self.state.record(Table::Authority, swarmvm_vm::AUTHORITY_SET_ID)?
        else {
            return Ok(None);
        };
        if let Some((text, parsed)) = &*LAST_SET.lock().unwrap_or_else(|p| p.into_inner())
            && text.as_str() == set.as_str()
        {
            return Ok(Some(parsed.clone()));
        }
        let value: Value = serde_json::from_str(&set).map_err(|e| StateError::from(corrupt(e)))?;
        let parsed = AuthoritySet::from_json(&value).map_err(|e| StateError::from(corrupt(e)))?;
        *LAST_SET.lock().unwrap_or_else(|p| p.into_inner()) =
            Some((set.to_string(), parsed.clone()));
        Ok(Some(parsed))
    }

    fn token_used(&self, key: &str) -> Result<bool, StateError> {
        Ok(self.state.record(Table::Token, key)?.is_some())
    }
}
