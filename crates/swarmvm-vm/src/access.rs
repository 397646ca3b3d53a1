//! How the VM sees a state it does not own: [`StateRead`] (and [`StateScan`] for ordered
//! reads), the [`Overlay`] that stages a batch's writes over it, and the [`ChangeSet`] those
//! writes become. The VM never writes a store itself: the caller commits the changes.

use std::collections::BTreeMap;
use std::sync::Arc;

use compact_str::CompactString;
use swarmvm_primitives::{Classify, ErrorClass};

use crate::state::{Record, Table};
use crate::wasm::Budget;

/// A store could not be read: the caller's storage failed, or what it holds is not what was
/// written. Never a rejection of input: the batch that met it stops and is tried again.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    /// The storage failed to read (a database or disk error). The error is kept as the
    /// storage gave it, and its text is part of this one's (so it is not also a `source`,
    /// which would show it twice in a chain).
    #[error("storage failure: storage failure: {0}")]
    Storage(Arc<dyn std::error::Error + Send + Sync>),
    /// A stored record, trie node or key is not what any version wrote.
    #[error("storage failure: ledger is corrupt: {0}")]
    Corrupt(String),
    /// A trie node an update needs is not loaded, and the trie has no store to load it from.
    #[error("storage failure: trie node {path:02x?} is not loaded and there is no store")]
    NoStore {
        /// The node's path.
        path: Vec<u8>,
    },
    /// A trie node an update needs is missing from its store.
    #[error("storage failure: trie node {path:02x?} is missing from the store")]
    MissingNode {
        /// The node's path.
        path: Vec<u8>,
    },
    /// The chain has no record of a bundle it applied (below its last `seq`).
    #[error("storage failure: no record of applied bundle seq {seq}")]
    MissingBundle {
        /// The bundle's `seq`.
        seq: u64,
    },
}

impl StateError {
    /// The storage failed to read, with `source`, the storage's error.
    pub fn storage(source: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Storage(Arc::new(source))
    }

    /// What the store holds is corrupt, as `what` says.
    pub fn corrupt(what: impl std::fmt::Display) -> Self {
        Self::Corrupt(what.to_string())
    }
}

/// Equal when of the same kind and with the same details; storage errors compare by their
/// text.
impl PartialEq for StateError {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Storage(a), Self::Storage(b)) => a.to_string() == b.to_string(),
            (Self::Corrupt(a), Self::Corrupt(b)) => a == b,
            (Self::NoStore { path: a }, Self::NoStore { path: b })
            | (Self::MissingNode { path: a }, Self::MissingNode { path: b }) => a == b,
            (Self::MissingBundle { seq: a }, Self::MissingBundle { seq: b }) => a == b,
            _ => false,
        }
    }
}

impl Eq for StateError {}

/// Every state error is the peer's failure, never the input's.
impl Classify for StateError {
    fn class(&self) -> ErrorClass {
        ErrorClass::Failed
    }
}

/// Reads one entry of a state.
pub trait StateRead {
    /// The record at `id` in `table`, if any.
    fn get(&self, table: Table, id: &str) -> Result<Option<Record>, StateError>;
}

/// Reads a state's entries in order (id bytes within a table).
pub trait StateScan: StateRead {
    /// Calls `f` with the entries of `table` whose id is above `after` (all when `None`), in
    /// order, until `f` returns false.
    fn scan(
        &self,
        table: Table,
        after: Option<&str>,
        f: &mut dyn FnMut(&str, Record) -> bool,
    ) -> Result<(), StateError>;

    /// Calls `f` with the entries of `table` whose id starts with `prefix`, in order, until
    /// `f` returns false.
    fn scan_prefix(
        &self,
        table: Table,
        prefix: &str,
        f: &mut dyn FnMut(&str, Record) -> bool,
    ) -> Result<(), StateError>;
}

impl<S: StateRead + ?Sized> StateRead for &S {
    fn get(&self, table: Table, id: &str) -> Result<Option<Record>, StateError> {
        (**self).get(table, id)
    }
}

/// A state key: table and id.
pub type Slot = (Table, CompactString);

/// The entries a batch changed: each to its new record, or `None` when removed. Iterates in
/// canonical order (table, then id bytes).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChangeSet {
    changes: Tables,
}

/// One map per table (indexed as [`Table::ALL`], which is in tag order), so that an id is
/// looked up as a `&str`, with no key built for it.
type Tables = [BTreeMap<CompactString, Option<Record>>; Table::ALL.len()];

impl ChangeSet {
    /// The changes, in canonical order.
    pub fn iter(&self) -> impl Iterator<Item = (Table, &str, Option<&Record>)> {
        Table::ALL.into_iter().flat_map(move |t| {
            self.changes[t.index()].iter().map(move |(id, r)| (t, id.as_str(), r.as_ref()))
        })
    }

    /// Entries changed.
    pub fn len(&self) -> usize {
        self.changes.iter().map(BTreeMap::len).sum()
    }

    /// True when nothing changed.
    pub fn is_empty(&self) -> bool {
        self.changes.iter().all(BTreeMap::is_empty)
    }

    /// The new record at `id` in `table`: `Some(None)` when removed, `None` when unchanged.
    pub fn get(&self, table: Table, id: &str) -> Option<Option<&Record>> {
        self.changes[table.index()].get(id).map(Option::as_ref)
    }
}

/// A state as a batch sees it: its own writes over a base it only reads. Contracts are undone
/// by rolling back to a [`Overlay::mark`]; the batch's writes become a [`ChangeSet`].
pub struct Overlay<'s> {
    base: &'s dyn StateRead,
    writes: Tables,
    /// Every write with what the overlay held before it (`None`: nothing, so the base).
    journal: Vec<(Slot, Option<Option<Record>>)>,
    /// What the applied contracts' modules wrote in this batch (rules version 2 counts it
    /// against the bundle's budget).
    module_writes: Budget,
}

impl std::fmt::Debug for Overlay<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let writes: usize = self.writes.iter().map(BTreeMap::len).sum();
        f.debug_struct("Overlay").field("writes", &writes).finish_non_exhaustive()
    }
}

impl<'s> Overlay<'s> {
    /// An overlay with no writes over `base`.
    pub fn new(base: &'s dyn StateRead) -> Self {
        Self {
            base,
            writes: Tables::default(),
            journal: Vec::new(),
            module_writes: Budget::default(),
        }
    }

    /// What the applied contracts' modules wrote in this batch so far.
    pub fn module_writes(&self) -> Budget {
        self.module_writes
    }

    /// Counts what an applied contract's modules wrote.
    pub(crate) fn add_module_writes(&mut self, written: Budget) {
        self.module_writes = self.module_writes.plus(written);
    }

    /// Sets `id` to `record` (in the record's table).
    pub fn put(&mut self, id: &str, record: Record) {
        self.put_id(CompactString::from(id), record);
    }

    /// [`Overlay::put`] with an id already made.
    pub fn put_id(&mut self, id: CompactString, record: Record) {
        self.write((record.table(), id), Some(record));
    }

    /// Removes the entry at `id` in `table`.
    pub fn remove(&mut self, table: Table, id: &str) {
        self.write((table, CompactString::from(id)), None);
    }

    fn write(&mut self, slot: Slot, value: Option<Record>) {
        let before = self.writes[slot.0.index()].insert(slot.1.clone(), value);
        self.journal.push((slot, before));
    }

    /// A point to roll back to.
    pub fn mark(&self) -> usize {
        self.journal.len()
    }

    /// Undoes every write made since `mark`.
    pub fn rollback(&mut self, mark: usize) {
        for ((table, id), before) in self.journal.drain(mark..).rev() {
            let writes = &mut self.writes[table.index()];
            match before {
                Some(value) => {
                    writes.insert(id, value);
                }
                None => {
                    writes.remove(&id);
                }
            }
        }
    }

    /// Forgets the journal up to now: what was written can no longer be rolled back.
    pub fn settle(&mut self) {
        self.journal.clear();
    }

    /// The writes as changes to the base.
    pub fn into_changes(self) -> ChangeSet {
        ChangeSet { changes: self.writes }
    }
}

impl StateRead for Overlay<'_> {
    fn get(&self, table: Table, id: &str) -> Result<Option<Record>, StateError> {
        match self.writes[table.index()].get(id) {
            Some(value) => Ok(value.clone()),
            None => self.base.get(table, id),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::MemoryState;

    #[test]
    fn state_errors_say_what_failed_in_the_words_they_always_had() {
        let disk = StateError::storage(std::io::Error::other("disk gone"));
        assert_eq!(disk.to_string(), "storage failure: storage failure: disk gone");
        assert!(std::error::Error::source(&disk).is_none(), "its text is in the message");
        assert_eq!(disk, StateError::storage(std::io::Error::other("disk gone")));
        assert_ne!(disk, StateError::corrupt("disk gone"));
        assert_eq!(
            StateError::corrupt("bad record").to_string(),
            "storage failure: ledger is corrupt: bad record"
        );
        assert_eq!(
            StateError::MissingNode { path: vec![0x0a, 0xff] }.to_string(),
            "storage failure: trie node [0a, ff] is missing from the store"
        );
        assert_eq!(
            StateError::NoStore { path: vec![] }.to_string(),
            "storage failure: trie node [] is not loaded and there is no store"
        );
        assert_eq!(
            StateError::MissingBundle { seq: 7 }.to_string(),
            "storage failure: no record of applied bundle seq 7"
        );
        assert_eq!(disk.class(), ErrorClass::Failed);
    }

    #[test]
    fn overlay_reads_its_writes_and_rolls_back_to_a_mark() {
        let mut base = MemoryState::new();
        let mut seed = Overlay::new(&base);
        seed.put("S1", Record::Student { name: "A".into(), department: "D".into() });
        let changes = seed.into_changes();
        base.apply(&changes);

        let mut o = Overlay::new(&base);
        assert!(o.get(Table::Student, "S1").unwrap().is_some(), "reads the base");
        let mark = o.mark();
        o.remove(Table::Student, "S1");
        o.put("S2", Record::Student { name: "B".into(), department: "D".into() });
        assert!(o.get(Table::Student, "S1").unwrap().is_none());
        assert!(o.get(Table::Student, "S2").unwrap().is_some());
        o.rollback(mark);
        assert!(o.get(Table::Student, "S1").unwrap().is_some());
        assert!(o.get(Table::Student, "S2").unwrap().is_none());
        o.put("S3", Record::Student { name: "C".into(), department: "D".into() });
        let changes = o.into_changes();
        assert_eq!(changes.len(), 1);
        assert!(changes.get(Table::Student, "S3").unwrap().is_some());
        assert_eq!(changes.get(Table::Student, "S1"), None, "untouched");
    }
}
