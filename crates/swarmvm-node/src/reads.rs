//! The typed reads of one ledger snapshot: what a running node's [`Api`](crate::Api) answers
//! from its last commit, and what the command line's offline commands (`state show`, `state
//! root`, `node evidence`) answer from a data folder, with the same types.

use swarmvm_ledger::{Outcome, ReadError, Snapshot};
use swarmvm_vm::{Hash32, Record, StateScan as _, Table};

use crate::protocol::{
    ContractState, ContractView, EvidenceList, Log, Receipts, StateEntry, StatePage, StateRoot,
    WalletView,
};

/// The state root.
pub fn state_root(snapshot: &Snapshot) -> StateRoot {
    StateRoot { state_root: snapshot.state_root() }
}

/// A page of the state table `table`, in id order: at most `limit` entries after the id
/// `after`, and the id to ask after for the next page.
pub fn state_page(
    snapshot: &Snapshot,
    table: Table,
    after: Option<&str>,
    limit: usize,
) -> Result<StatePage, ReadError> {
    let (entries, next) = snapshot.page(table, after, limit)?;
    Ok(StatePage { table: table.name().to_owned(), entries, next })
}

/// The entry `id` of the state table `table`, with the root and seq of the state it was read
/// from; `None` when there is no such entry.
pub fn state_entry(
    snapshot: &Snapshot,
    table: Table,
    id: &str,
) -> Result<Option<StateEntry>, ReadError> {
    let Some(entry) = snapshot.entry(table, id)? else { return Ok(None) };
    Ok(Some(StateEntry {
        table: table.name().to_owned(),
        entry,
        state_root: snapshot.state_root(),
        last_seq: snapshot.last_bundle().map_or(0, |b| b.seq),
    }))
}

/// Why a ledger cannot prove an entry.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProveError {
    /// The ledger could not be read.
    #[error(transparent)]
    Read(#[from] ReadError),
    /// Its state is hashed as before rules 3, where a proof would hold every sibling.
    #[error(
        "this ledger's state root is hashed under rules 2 or older; proofs start at the first bundle under rules 3"
    )]
    OldHashing,
}

/// Reading failed; old hashing is a refusal of the request.
impl swarmvm_primitives::Classify for ProveError {
    fn class(&self) -> swarmvm_primitives::ErrorClass {
        match self {
            Self::Read(e) => e.class(),
            Self::OldHashing => swarmvm_primitives::ErrorClass::Refused,
        }
    }
}

/// The entry `id` of `table`, or its absence, with its proof against the snapshot's root, the
/// head kept for the snapshot's last seq (else the root itself), and the manifests that
/// rotated the authority set up to it.
pub fn proof(
    snapshot: &Snapshot,
    table: Table,
    id: &str,
) -> Result<crate::protocol::ProofAnswer, ProveError> {
    use base64::Engine as _;
    // An empty ledger's trie is empty under either hashing.
    if snapshot.log_len() > 0 && snapshot.node_hashing() != swarmvm_vm::NodeHashing::Binary {
        return Err(ProveError::OldHashing);
    }
    let key = swarmvm_vm::encode_key(table, id);
    let proof = snapshot.prove(&key)?;
    let value = snapshot
        .record(table, id)?
        .map_or(serde_json::Value::Null, |r| swarmvm_vm::view::record_value(&r));
    let head = match snapshot.last_bundle() {
        Some(last) => snapshot.head_at(last.seq)?,
        None => None,
    };
    let manifests = snapshot.rotations()?.into_iter().map(|b| b.manifest).collect();
    Ok(crate::protocol::ProofAnswer {
        root: head.is_none().then(|| snapshot.state_root()),
        head,
        table: table.name().to_owned(),
        id: id.to_owned(),
        value,
        proof: base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(proof),
        manifests,
    })
}

/// Every entry of `table` as id → value (the registrations, which stay small).
pub fn table(snapshot: &Snapshot, table: Table) -> crate::protocol::Table {
    let mut out = crate::protocol::Table::new();
    let _ = snapshot.scan(table, None, &mut |id, record| {
        let value = match &record {
            Record::Operation { handler } => serde_json::json!(handler.as_str()),
            _ => swarmvm_vm::view::value_json(snapshot, id, &record)
                .unwrap_or(serde_json::Value::Null),
        };
        out.insert(id.to_owned(), value);
        true
    });
    out
}

/// One registered wallet with its last used nonce (the next contract's is one more); `None`
/// when it is not registered (or cannot be read).
pub fn wallet(snapshot: &Snapshot, id: &str) -> Option<WalletView> {
    let record = snapshot.record(Table::Wallet, id).ok()??;
    let mut value = swarmvm_vm::view::value_json(snapshot, id, &record).ok()?;
    let nonce = swarmvm_vm::nonce_of(snapshot, id).ok()?;
    let revoked = snapshot.record(Table::Revocation, &swarmvm_vm::revoked_id(id)).ok()?.is_some();
    Some(WalletView {
        id: id.to_owned(),
        label: value["label"].take(),
        jwk: value["jwk"].take(),
        nonce,
        revoked,
    })
}

/// What the ledger says of contract `id`: applied or rejected, with its receipt and its
/// bundle's seq; `None` when no batch held it.
pub fn contract(snapshot: &Snapshot, id: &Hash32) -> Result<Option<ContractView>, ReadError> {
    let Some((receipt, entry)) = snapshot.contract(id)? else { return Ok(None) };
    let state = if receipt.status == Outcome::Applied {
        ContractState::Applied
    } else {
        ContractState::Rejected
    };
    Ok(Some(ContractView {
        id: *id,
        state,
        seq: entry.seq,
        reason: receipt.reason.clone(),
        receipt: Some(receipt),
    }))
}

/// Fork evidence: pairs of validly signed bundles for one seq.
pub fn evidence(snapshot: &Snapshot) -> Result<EvidenceList, ReadError> {
    Ok(EvidenceList { evidence: snapshot.evidence()?, equivocations: Vec::new() })
}

/// Receipts from log position `from`, at most `limit`.
pub fn receipts(snapshot: &Snapshot, from: u64, limit: usize) -> Result<Receipts, ReadError> {
    Ok(Receipts { receipts: snapshot.receipts(from, limit)? })
}

/// The log from position `from`, at most `limit`.
pub fn log(snapshot: &Snapshot, from: u64, limit: usize) -> Result<Log, ReadError> {
    Ok(Log { log: snapshot.log(from, limit)? })
}
