//! The ledger file's tables and what its `meta` table says, read the same way by the writer
//! and by readers.

use redb::{ReadableTable, TableDefinition};
use swarmvm_bundle::BundlePosition;
use swarmvm_primitives::{BundleId, Rules};
use swarmvm_vm::{
    Hash32, NodeHashing, NodeStore, Record, StateError, StoredNode, Table, decode_key, encode_key,
};

use crate::error::{ReadError, corrupt, storage};

/// Entries of the state: storage key (table tag, id) → record encoding.
pub(crate) const STATE: TableDefinition<'_, &[u8], &[u8]> = TableDefinition::new("state");
/// The state trie's nodes: full path → node encoding.
pub(crate) const TRIE: TableDefinition<'_, &[u8], &[u8]> = TableDefinition::new("trie");
/// Ledger facts: format, network, root, positions.
pub(crate) const META: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("meta");
/// Applied batches by log position ([`crate::LogEntry`], `crate::codec`).
pub(crate) const LOG: TableDefinition<'_, u64, &[u8]> = TableDefinition::new("log");
/// Receipts by (log position, index) ([`crate::Receipt`], `crate::codec`).
pub(crate) const RECEIPTS: TableDefinition<'_, (u64, u32), &[u8]> =
    TableDefinition::new("receipts");
/// Applied bundles by seq ([`crate::BundleRecord`], with the manifest; `crate::codec`).
pub(crate) const BUNDLES: TableDefinition<'_, u64, &[u8]> = TableDefinition::new("bundles");
/// WebAssembly modules by SHA-256: the bytes, stored once whichever batch carried them.
pub(crate) const MODULES: TableDefinition<'_, &[u8; 32], &[u8]> = TableDefinition::new("modules");
/// Fork evidence by (seq, the other bundle's identity) ([`crate::Evidence`], `crate::codec`).
pub(crate) const EVIDENCE: TableDefinition<'_, (u64, &[u8; 32]), &[u8]> =
    TableDefinition::new("evidence");

/// Heads by seq: the newest head this ledger's node verified (or signed) for each applied
/// seq, its JWS serialization.
pub(crate) const HEADS: TableDefinition<'_, u64, &str> = TableDefinition::new("heads");
/// The seqs of applied bundles whose manifest rotated the authority set.
pub(crate) const ROTATIONS: TableDefinition<'_, u64, ()> = TableDefinition::new("rotations");

/// Receipts by contract id (the SHA-256 of its token): (log position, index) of the receipt
/// that applied it, else of its latest rejection.
pub(crate) const CONTRACTS: TableDefinition<'_, &[u8; 32], (u64, u32)> =
    TableDefinition::new("contracts");

pub(crate) const META_FORMAT: &str = "format";
/// Set once `contracts` indexes every receipt (ledgers older than the index are indexed
/// when first opened).
pub(crate) const META_CONTRACT_INDEX: &str = "contract_index";
pub(crate) const META_NETWORK: &str = "network";
pub(crate) const META_ROOT: &str = "state_root";
pub(crate) const META_LOG_LEN: &str = "log_len";
pub(crate) const META_BUNDLE_SEQ: &str = "bundle_seq";
pub(crate) const META_BUNDLE_ID: &str = "bundle_id";
pub(crate) const META_BUNDLE_IAT: &str = "bundle_iat";
/// The rules version the last bundle named (absent: version 1, as before rules versions).
pub(crate) const META_BUNDLE_RULES: &str = "bundle_rules";
/// The seq of the snapshot this ledger started from (absent: it started from genesis). Its
/// bundle is recorded with log position 0, and no bundle before it is.
pub(crate) const META_SNAPSHOT_SEQ: &str = "snapshot_seq";
/// The state root of that snapshot (32 bytes): the root after its bundle, which no log entry
/// of this ledger records.
pub(crate) const META_SNAPSHOT_ROOT: &str = "snapshot_root";
/// Set once a local (`exec`) batch applied: such a ledger never takes bundles.
pub(crate) const META_LOCAL: &str = "local";
/// How the stored trie's nodes are hashed ([`NodeHashing::number`]; absent: flat, as every
/// ledger before rules 3).
pub(crate) const META_NODE_HASHING: &str = "node_hashing";

/// The version of what this code writes. Version 4 keeps a head for every applied seq, the
/// seqs that rotated the authority set, and how the trie's nodes are hashed; version 3 keeps
/// the state trie in the file (version 2 rebuilt it in memory on every open); version 2
/// identified bundles by the hash of their manifest's signed payload (version 1 hashed the
/// file) and kept every applied manifest.
pub const FORMAT: &str = "swarmvm-ledger/4";
pub(crate) const FORMAT_V3: &str = "swarmvm-ledger/3";
pub(crate) const FORMAT_V2: &str = "swarmvm-ledger/2";
pub(crate) const FORMAT_V1: &str = "swarmvm-ledger/1";

/// What `meta` says: the ledger's position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Head {
    pub(crate) network: Option<String>,
    pub(crate) root: Option<Hash32>,
    pub(crate) log_len: u64,
    pub(crate) last: Option<BundlePosition>,
    pub(crate) local: bool,
    pub(crate) hashing: NodeHashing,
    /// The seq and state root of the snapshot the ledger started from, if it did.
    pub(crate) snapshot: Option<(u64, Hash32)>,
}

impl Head {
    /// The state root (`SHA-256("")` before anything was applied).
    pub(crate) fn state_root(&self) -> Hash32 {
        self.root.unwrap_or_else(|| Hash32::digest(&[]))
    }
}

pub(crate) fn meta_u64(bytes: &[u8]) -> Result<u64, ReadError> {
    let b: [u8; 8] = bytes.try_into().map_err(|_| corrupt("meta number is not 8 bytes"))?;
    Ok(u64::from_le_bytes(b))
}

fn meta_hash(bytes: &[u8]) -> Result<Hash32, ReadError> {
    Hash32::from_slice(bytes).map_err(|_| corrupt("meta hash is not 32 bytes"))
}

/// Reads the head from a `meta` table (of any transaction).
pub(crate) fn read_head(
    meta: &impl ReadableTable<&'static str, &'static [u8]>,
) -> Result<Head, ReadError> {
    let get = |key: &str| -> Result<Option<Vec<u8>>, ReadError> {
        Ok(meta.get(key).map_err(storage)?.map(|v| v.value().to_vec()))
    };
    let network = get(META_NETWORK)?
        .map(|b| String::from_utf8(b).map_err(|_| corrupt("network id is not utf-8")))
        .transpose()?;
    let root = get(META_ROOT)?.map(|b| meta_hash(&b)).transpose()?;
    let log_len = get(META_LOG_LEN)?.map(|b| meta_u64(&b)).transpose()?.unwrap_or(0);
    let last = match (get(META_BUNDLE_SEQ)?, get(META_BUNDLE_ID)?, get(META_BUNDLE_IAT)?) {
        (Some(seq), Some(id), Some(iat)) => Some(BundlePosition {
            seq: meta_u64(&seq)?,
            id: BundleId(meta_hash(&id)?),
            issued_at: meta_u64(&iat)?,
            rules: match get(META_BUNDLE_RULES)? {
                None => Rules::V1,
                Some(n) => Rules::new(meta_u64(&n)?).map_err(corrupt)?,
            },
        }),
        (None, None, None) => None,
        _ => return Err(corrupt("the last bundle's seq, identity and time are incomplete")),
    };
    let local = get(META_LOCAL)?.is_some();
    let hashing = match get(META_NODE_HASHING)? {
        None => NodeHashing::Flat,
        Some(n) => NodeHashing::from_number(meta_u64(&n)?)
            .ok_or_else(|| corrupt("unknown node hashing"))?,
    };
    let snapshot = match (get(META_SNAPSHOT_SEQ)?, get(META_SNAPSHOT_ROOT)?) {
        (Some(seq), Some(root)) => Some((meta_u64(&seq)?, meta_hash(&root)?)),
        (None, None) => None,
        _ => return Err(corrupt("the snapshot's seq and root are incomplete")),
    };
    Ok(Head { network, root, log_len, last, local, hashing, snapshot })
}

/// The record stored in a row of `log`, `receipts`, `bundles` or `evidence` (format 4).
pub(crate) fn decode_row<T: crate::codec::Stored>(bytes: &[u8]) -> Result<T, ReadError> {
    T::from_bytes(bytes)
}

/// A row of a format 3 or older ledger: the record as JSON.
pub(crate) fn json_row<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ReadError> {
    serde_json::from_slice(bytes).map_err(corrupt)
}

/// A state table, read as the VM reads a state.
pub(crate) struct StateTable<T>(pub(crate) T);

impl<T: ReadableTable<&'static [u8], &'static [u8]>> StateTable<T> {
    pub(crate) fn record(&self, table: Table, id: &str) -> Result<Option<Record>, ReadError> {
        let key = encode_key(table, id);
        match self.0.get(key.as_slice()).map_err(storage)? {
            None => Ok(None),
            Some(v) => Record::decode(table, v.value()).map(Some).map_err(corrupt),
        }
    }

    /// Calls `f` with the entries of `table` from `start` (a storage key) on, in order, while
    /// their key starts with `within` and `f` returns true.
    pub(crate) fn walk(
        &self,
        table: Table,
        start: std::ops::Bound<&[u8]>,
        within: &[u8],
        f: &mut dyn FnMut(&str, Record) -> bool,
    ) -> Result<(), ReadError> {
        let range = self.0.range::<&[u8]>((start, std::ops::Bound::Unbounded)).map_err(storage)?;
        for row in range {
            let (k, v) = row.map_err(storage)?;
            let key = k.value();
            if !key.starts_with(within) {
                break;
            }
            let (t, id) = decode_key(key).map_err(corrupt)?;
            if t != table {
                break;
            }
            let record = Record::decode(table, v.value()).map_err(corrupt)?;
            if !f(&id, record) {
                break;
            }
        }
        Ok(())
    }
}

/// A trie table, read as the trie reads its store.
pub(crate) struct TrieTable<T>(pub(crate) T);

impl<T: ReadableTable<&'static [u8], &'static [u8]>> NodeStore for TrieTable<T> {
    fn node(&self, path: &[u8]) -> Result<Option<StoredNode>, StateError> {
        match self.0.get(path).map_err(|e| StateError::from(storage(e)))? {
            None => Ok(None),
            Some(v) => {
                StoredNode::decode(v.value()).map(Some).map_err(|e| StateError::from(corrupt(e)))
            }
        }
    }
}
