//! The sequencer's durable queue (`sequencer.redb` in the data folder): what was accepted and
//! not yet cut into a bundle, in arrival order. An item is written (and the file synced)
//! before its submitter hears 202, and removed only once the bundle holding it is applied, so
//! a crash loses nothing; a restart drops what the ledger already holds.

use std::path::Path;

use redb::{Database, ReadableDatabase as _, ReadableTable as _, TableDefinition};

/// Items by arrival number: a tag byte (`c` contract, `r` registration token, `m` module),
/// then the item's bytes.
const QUEUE: TableDefinition<'_, u64, &[u8]> = TableDefinition::new("queue");

/// One queued item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Item {
    /// A signed contract (compact JWS).
    Contract(String),
    /// A registration token.
    Registration(String),
    /// A WebAssembly module's bytes.
    Module(Vec<u8>),
}

impl Item {
    fn encode(&self) -> Vec<u8> {
        let (tag, bytes) = match self {
            Self::Contract(t) => (b'c', t.as_bytes()),
            Self::Registration(t) => (b'r', t.as_bytes()),
            Self::Module(b) => (b'm', b.as_slice()),
        };
        let mut out = Vec::with_capacity(bytes.len() + 1);
        out.push(tag);
        out.extend_from_slice(bytes);
        out
    }

    fn decode(bytes: &[u8]) -> Option<Self> {
        let (tag, rest) = bytes.split_first()?;
        let text = || String::from_utf8(rest.to_vec()).ok();
        match tag {
            b'c' => text().map(Self::Contract),
            b'r' => text().map(Self::Registration),
            b'm' => Some(Self::Module(rest.to_vec())),
            _ => None,
        }
    }
}

/// A cut's items as a bundle folder holds them: the registration tokens, the contracts and
/// the modules, each in the items' order.
pub(crate) struct Parts<'a> {
    pub(crate) tokens: Vec<&'a str>,
    pub(crate) contracts: Vec<&'a str>,
    pub(crate) modules: Vec<&'a [u8]>,
}

impl<'a> Parts<'a> {
    /// `items` split into their parts.
    pub(crate) fn of(items: impl IntoIterator<Item = &'a Item>) -> Self {
        let mut parts = Self { tokens: Vec::new(), contracts: Vec::new(), modules: Vec::new() };
        for item in items {
            match item {
                Item::Contract(t) => parts.contracts.push(t),
                Item::Registration(t) => parts.tokens.push(t),
                Item::Module(b) => parts.modules.push(b),
            }
        }
        parts
    }

    /// The parts copied, to be written elsewhere ([`swarmvm_bundle::write_folder`]).
    pub(crate) fn owned(&self) -> (Vec<String>, Vec<String>, Vec<Vec<u8>>) {
        let text = |lines: &[&str]| lines.iter().map(|l| (*l).to_owned()).collect();
        (
            text(&self.tokens),
            text(&self.contracts),
            self.modules.iter().map(|m| m.to_vec()).collect(),
        )
    }
}

/// Why the queue could not be used.
#[derive(Debug, thiserror::Error)]
#[error("the sequencer's queue: {0}")]
pub(crate) struct QueueError(String);

impl QueueError {
    pub(crate) fn closed() -> Self {
        Self("it is closed: the node stopped".into())
    }
}

fn storage(e: impl std::fmt::Display) -> QueueError {
    QueueError(e.to_string())
}

/// The queue's file.
#[derive(Debug)]
pub(crate) struct Queue {
    db: Database,
}

impl Queue {
    /// Opens (or creates) the queue at `path`; returns it with every item stored, in arrival
    /// order. An item that cannot be read is a corrupt file: refused.
    pub(crate) fn open(path: &Path) -> Result<(Self, Vec<(u64, Item)>), QueueError> {
        let db = Database::create(path).map_err(storage)?;
        let txn = db.begin_write().map_err(storage)?;
        txn.open_table(QUEUE).map_err(storage)?;
        txn.commit().map_err(storage)?;
        let read = db.begin_read().map_err(storage)?;
        let table = read.open_table(QUEUE).map_err(storage)?;
        let mut items = Vec::new();
        for entry in table.iter().map_err(storage)? {
            let (k, v) = entry.map_err(storage)?;
            let item = Item::decode(v.value())
                .ok_or_else(|| QueueError(format!("item {} cannot be read", k.value())))?;
            items.push((k.value(), item));
        }
        drop(table);
        drop(read);
        Ok((Self { db }, items))
    }

    /// Stores `items` in one durable transaction.
    pub(crate) fn append(&self, items: &[(u64, &Item)]) -> Result<(), QueueError> {
        let txn = self.db.begin_write().map_err(storage)?;
        {
            let mut table = txn.open_table(QUEUE).map_err(storage)?;
            for (arrival, item) in items {
                table.insert(*arrival, item.encode().as_slice()).map_err(storage)?;
            }
        }
        txn.commit().map_err(storage)
    }

    /// Removes the items `arrivals` in one durable transaction.
    pub(crate) fn remove(&self, arrivals: &[u64]) -> Result<(), QueueError> {
        let txn = self.db.begin_write().map_err(storage)?;
        {
            let mut table = txn.open_table(QUEUE).map_err(storage)?;
            for arrival in arrivals {
                table.remove(*arrival).map_err(storage)?;
            }
        }
        txn.commit().map_err(storage)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_survive_reopening_in_arrival_order_until_removed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q.redb");
        let (q, items) = Queue::open(&path).unwrap();
        assert!(items.is_empty());
        let a = Item::Contract("a.b.c".into());
        let r = Item::Registration("r.s.t".into());
        let m = Item::Module(vec![0, 97, 115, 109]);
        q.append(&[(2, &r), (1, &a), (7, &m)]).unwrap();
        drop(q);
        let (q, items) = Queue::open(&path).unwrap();
        assert_eq!(items, vec![(1, a), (2, r.clone()), (7, m)]);
        q.remove(&[1, 7]).unwrap();
        drop(q);
        let (_, items) = Queue::open(&path).unwrap();
        assert_eq!(items, vec![(2, r)]);
    }
}
