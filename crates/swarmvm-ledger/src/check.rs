//! `swarmvm ledger verify`: everything a ledger claims, recomputed from what it stores.
//!
//! Opening a ledger no longer recomputes its root (it reads the recorded one), so this is the
//! check that every entry hashes to the recorded root, that the stored trie is exactly the
//! trie of the entries, and that the log, the receipts and the applied bundles hang together.

use redb::{ReadableTable as _, ReadableTableMetadata as _};
use swarmvm_vm::{Hash32, Record, StoredNode, build_sorted, decode_key, entry_leaf};

use crate::error::{CheckError, ReadError, corrupt, storage};
use crate::reader::LedgerReader;
use crate::record::{BundleRecord, LogEntry, Receipt};
use crate::store::{BUNDLES, LOG, MODULES, RECEIPTS, STATE, TRIE, decode_row};

/// What a check went through.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CheckReport {
    /// State entries hashed.
    pub entries: u64,
    /// Trie nodes compared.
    pub trie_nodes: u64,
    /// Log entries checked.
    pub batches: u64,
    /// Receipts checked.
    pub receipts: u64,
    /// Applied bundles checked.
    pub bundles: u64,
    /// Stored modules whose bytes hash to their key.
    pub modules: u64,
    /// The root, recomputed and equal to the recorded one.
    pub state_root: Hash32,
}

/// Recomputes the state root from every entry, compares every trie node with the trie of the
/// entries, and checks the log, receipts and bundle records against each other and the head.
/// Reads one snapshot; keeps one trie path in memory.
pub fn check(reader: &LedgerReader) -> Result<CheckReport, CheckError> {
    let snapshot = reader.snapshot()?;
    let txn = snapshot.transaction();
    let state = txn.open_table(STATE).map_err(storage)?;
    let trie = txn.open_table(TRIE).map_err(storage)?;
    let mut entries = 0u64;
    let mut failed: Option<CheckError> = None;
    let leaves = state.iter().map_err(storage)?.map_while(|row| {
        let leaf = row.map_err(|e| CheckError::from(storage(e))).and_then(|(k, v)| {
            let (table, id) = decode_key(k.value()).map_err(|e| CheckError::from(corrupt(e)))?;
            let record =
                Record::decode(table, v.value()).map_err(|e| CheckError::from(corrupt(e)))?;
            Ok((k.value().to_vec(), entry_leaf(table, &id, &record)))
        });
        match leaf {
            Ok(entry) => {
                entries += 1;
                Some(entry)
            }
            Err(e) => {
                failed = Some(e);
                None
            }
        }
    });
    let mut nodes = 0u64;
    let mut trie_failed: Option<CheckError> = None;
    let computed = build_sorted(leaves, snapshot.node_hashing(), &mut |path, node| {
        nodes += 1;
        if trie_failed.is_some() {
            return;
        }
        let stored = trie.get(path).map_err(|e| CheckError::from(storage(e))).and_then(|v| {
            v.map(|v| StoredNode::decode(v.value()).map_err(|e| CheckError::from(corrupt(e))))
                .transpose()
        });
        match stored {
            Ok(Some(stored)) if stored == node => {}
            Ok(Some(_)) => {
                trie_failed = Some(CheckError::Trie(format!("the node at {path:02x?} differs")));
            }
            Ok(None) => {
                trie_failed = Some(CheckError::Trie(format!("the node at {path:02x?} is missing")));
            }
            Err(e) => trie_failed = Some(e),
        }
    });
    if let Some(e) = failed.or(trie_failed) {
        return Err(e);
    }
    let computed =
        computed.ok_or_else(|| CheckError::Trie("state keys are not in order".into()))?;
    let stored_nodes = trie.len().map_err(storage)?;
    if computed != Hash32::digest(&[]) && stored_nodes != nodes {
        return Err(CheckError::Trie(format!(
            "{stored_nodes} nodes are stored but the entries make {nodes}"
        )));
    }
    if snapshot.state_root() != computed {
        return Err(CheckError::RootMismatch { stored: snapshot.state_root(), computed });
    }
    let (batches, receipts, bundles) = check_log(&snapshot)?;
    let mut modules = 0;
    for row in txn.open_table(MODULES).map_err(storage)?.iter().map_err(storage)? {
        let (k, v) = row.map_err(storage)?;
        if Hash32::digest(v.value()).as_bytes() != k.value() {
            let key = Hash32::from_slice(k.value()).map_err(corrupt)?;
            return Err(CheckError::Log(format!("stored module {key} does not hash to its key")));
        }
        modules += 1;
    }
    Ok(CheckReport {
        entries,
        trie_nodes: nodes,
        batches,
        receipts,
        bundles,
        modules,
        state_root: computed,
    })
}

/// The log is contiguous and ends at the head's root; receipts belong to logged batches in
/// the numbers the log says; the applied bundles chain from seq 1 to the head's.
fn check_log(snapshot: &crate::Snapshot) -> Result<(u64, u64, u64), CheckError> {
    let txn = snapshot.transaction();
    let log = txn.open_table(LOG).map_err(storage)?;
    let mut entries: Vec<LogEntry> = Vec::new();
    for (i, row) in log.iter().map_err(storage)?.enumerate() {
        let (k, v) = row.map_err(storage)?;
        let entry: LogEntry = decode_row(v.value())?;
        if k.value() != i as u64 + 1 || entry.position != k.value() {
            return Err(CheckError::Log(format!("log position {} is out of place", k.value())));
        }
        entries.push(entry);
    }
    if entries.len() as u64 != snapshot.log_len() {
        return Err(CheckError::Log(format!(
            "{} batches are logged but the head says {}",
            entries.len(),
            snapshot.log_len()
        )));
    }
    if let Some(last) = entries.last()
        && last.state_root != snapshot.state_root()
    {
        return Err(CheckError::Log("the last batch's root is not the head's".into()));
    }
    let table = txn.open_table(RECEIPTS).map_err(storage)?;
    let mut counts = vec![0usize; entries.len()];
    let mut receipts = 0u64;
    for row in table.iter().map_err(storage)? {
        let (k, v) = row.map_err(storage)?;
        let (position, index) = k.value();
        let receipt: Receipt = decode_row(v.value())?;
        let slot = usize::try_from(position).ok().and_then(|p| p.checked_sub(1));
        match slot.and_then(|s| counts.get_mut(s)) {
            Some(count) if receipt.position == position && receipt.index == index => *count += 1,
            _ => {
                return Err(CheckError::Log(format!(
                    "receipt ({position}, {index}) is out of place"
                )));
            }
        }
        receipts += 1;
    }
    for (entry, count) in entries.iter().zip(&counts) {
        if entry.contracts != *count {
            return Err(CheckError::Log(format!(
                "batch {} lists {} contracts but {count} receipts are stored",
                entry.position, entry.contracts
            )));
        }
    }
    let table = txn.open_table(BUNDLES).map_err(storage)?;
    let mut previous: Option<BundleRecord> = None;
    let mut bundles = 0u64;
    for row in table.iter().map_err(storage)? {
        let (k, v) = row.map_err(storage)?;
        let record: BundleRecord = decode_row(v.value())?;
        let first = snapshot.snapshot_seq().unwrap_or(1);
        let expected_seq = previous.as_ref().map_or(first, |p| p.seq + 1);
        if k.value() != expected_seq || record.seq != expected_seq {
            return Err(CheckError::Log(format!("bundle seq {} is out of place", k.value())));
        }
        if snapshot.snapshot_seq() == Some(record.seq) {
            // The bundle a snapshot stands after: no batch of this ledger applied it.
            if record.position != 0 {
                return Err(CheckError::Log(format!(
                    "bundle seq {} came with the snapshot but is logged",
                    record.seq
                )));
            }
            bundles += 1;
            previous = Some(record);
            continue;
        }
        if record.parent != previous.as_ref().map(|p| p.id) {
            return Err(CheckError::Log(format!(
                "bundle seq {} does not name its parent",
                record.seq
            )));
        }
        let logged = usize::try_from(record.position)
            .ok()
            .and_then(|p| p.checked_sub(1))
            .and_then(|i| entries.get(i));
        match logged {
            Some(e) if e.seq == Some(record.seq) && e.bundle == Some(record.id) => {}
            _ => {
                return Err(CheckError::Log(format!(
                    "bundle seq {} is not the batch logged at {}",
                    record.seq, record.position
                )));
            }
        }
        bundles += 1;
        previous = Some(record);
    }
    let last = previous.map(|p| (p.seq, p.id));
    if last != snapshot.last_bundle().map(|b| (b.seq, b.id)) {
        return Err(CheckError::Log("the last applied bundle is not the head's".into()));
    }
    Ok((entries.len() as u64, receipts, bundles))
}

impl From<redb::StorageError> for CheckError {
    fn from(e: redb::StorageError) -> Self {
        Self::Read(ReadError::Storage(e.into()))
    }
}
