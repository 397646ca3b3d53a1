//! The replica's raft log and applied state, in one redb file: every write is one synced
//! transaction, so what a replica acknowledged survives a crash.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::Arc;

use openraft::storage::{LogState, RaftLogReader, RaftSnapshotBuilder, RaftStorage, Snapshot};
use openraft::{
    AnyError, Entry, EntryPayload, LogId, RaftLogId as _, SnapshotMeta, StorageError,
    StorageIOError, StoredMembership, Vote,
};
use redb::{Database, Durability, ReadableDatabase as _, ReadableTable as _, TableDefinition};
use serde_json::json;
use tokio::sync::mpsc;

use crate::types::{Command, NodeId, Replica, TypeConfig};

/// Entries by index (JSON).
const LOG: TableDefinition<'_, u64, &[u8]> = TableDefinition::new("log");
/// `vote`, `committed`, `purged`, `applied`, `membership` (JSON each).
const META: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("meta");

/// A committed command, in log order, as the state machine applies it.
#[derive(Debug, Clone)]
pub struct Committed {
    /// Its log index.
    pub index: u64,
    /// Its term.
    pub term: u64,
    /// The command.
    pub command: Command,
}

type StoreResult<T> = Result<T, StorageError<NodeId>>;

fn any(e: impl std::error::Error + 'static) -> AnyError {
    AnyError::new(&e)
}

/// The log and the applied state of one replica.
#[derive(Clone)]
pub(crate) struct Store {
    db: Arc<Database>,
    applied: mpsc::UnboundedSender<Committed>,
}

impl Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Store")
    }
}

impl Store {
    /// Opens (or creates) the store at `path`; committed commands go to `applied` as they
    /// apply.
    pub(crate) fn open(
        path: &Path,
        applied: mpsc::UnboundedSender<Committed>,
    ) -> Result<Self, redb::Error> {
        let db = Database::create(path)?;
        let txn = db.begin_write()?;
        txn.open_table(LOG)?;
        txn.open_table(META)?;
        txn.commit()?;
        Ok(Self { db: Arc::new(db), applied })
    }

    fn read_meta<T: serde::de::DeserializeOwned>(&self, key: &str) -> Result<Option<T>, AnyError> {
        let txn = self.db.begin_read().map_err(any)?;
        let table = txn.open_table(META).map_err(any)?;
        let Some(v) = table.get(key).map_err(any)? else { return Ok(None) };
        serde_json::from_slice(v.value()).map(Some).map_err(any)
    }

    /// Writes `pairs`; synced unless `durable` is false ([`Durability::None`]: the write
    /// becomes durable with the next synced one, and a crash before it loses it).
    fn write_meta(
        &self,
        pairs: &[(&str, serde_json::Value)],
        durable: bool,
    ) -> Result<(), AnyError> {
        let mut txn = self.db.begin_write().map_err(any)?;
        if !durable {
            txn.set_durability(Durability::None).map_err(any)?;
        }
        {
            let mut table = txn.open_table(META).map_err(any)?;
            for (key, value) in pairs {
                let bytes = serde_json::to_vec(value).map_err(any)?;
                table.insert(*key, bytes.as_slice()).map_err(any)?;
            }
        }
        txn.commit().map_err(any)
    }

    fn entries(&self, range: (Bound<u64>, Bound<u64>)) -> Result<Vec<Entry<TypeConfig>>, AnyError> {
        let txn = self.db.begin_read().map_err(any)?;
        let table = txn.open_table(LOG).map_err(any)?;
        let mut out = Vec::new();
        for row in table.range::<u64>(range).map_err(any)? {
            let (_, v) = row.map_err(any)?;
            out.push(serde_json::from_slice(v.value()).map_err(any)?);
        }
        Ok(out)
    }

    /// The commands applied before this process started, in order: what the replica's own
    /// state is rebuilt from.
    pub(crate) fn applied_before(&self) -> Result<Vec<Committed>, AnyError> {
        let applied: Option<LogId<NodeId>> = self.read_meta("applied")?;
        let Some(last) = applied else { return Ok(Vec::new()) };
        Ok(self
            .entries((Bound::Unbounded, Bound::Included(last.index)))?
            .into_iter()
            .filter_map(committed)
            .collect())
    }
}

fn committed(entry: Entry<TypeConfig>) -> Option<Committed> {
    match entry.payload {
        EntryPayload::Normal(command) => Some(Committed {
            index: entry.log_id.index,
            term: entry.log_id.leader_id.term,
            command,
        }),
        _ => None,
    }
}

impl RaftLogReader<TypeConfig> for Store {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> StoreResult<Vec<Entry<TypeConfig>>> {
        let bounds = (range.start_bound().cloned(), range.end_bound().cloned());
        self.entries(bounds).map_err(|e| StorageIOError::read_logs(e).into())
    }
}

impl RaftSnapshotBuilder<TypeConfig> for Store {
    /// Snapshots are off (the whole log is kept); this one holds only where the state
    /// machine is, for the engine's bookkeeping.
    async fn build_snapshot(&mut self) -> StoreResult<Snapshot<TypeConfig>> {
        let (last_log_id, last_membership) = self.last_applied_state().await?;
        let meta = SnapshotMeta {
            last_log_id,
            last_membership,
            snapshot_id: format!("{}", last_log_id.map_or(0, |l| l.index)),
        };
        Ok(Snapshot { meta, snapshot: Box::new(std::io::Cursor::new(Vec::new())) })
    }
}

impl RaftStorage<TypeConfig> for Store {
    type LogReader = Self;
    type SnapshotBuilder = Self;

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> StoreResult<()> {
        self.write_meta(&[("vote", json!(vote))], true)
            .map_err(|e| StorageIOError::write_vote(e).into())
    }

    async fn read_vote(&mut self) -> StoreResult<Option<Vote<NodeId>>> {
        self.read_meta("vote").map_err(|e| StorageIOError::read_vote(e).into())
    }

    async fn save_committed(&mut self, committed: Option<LogId<NodeId>>) -> StoreResult<()> {
        // Not synced: the engine learns the commit point again from the leader, and a
        // point lost in a crash only makes it apply (and send) those entries again.
        self.write_meta(&[("committed", json!(committed))], false)
            .map_err(|e| StorageIOError::write(e).into())
    }

    async fn read_committed(&mut self) -> StoreResult<Option<LogId<NodeId>>> {
        self.read_meta::<Option<LogId<NodeId>>>("committed")
            .map(Option::flatten)
            .map_err(|e| StorageIOError::read(e).into())
    }

    async fn get_log_state(&mut self) -> StoreResult<LogState<TypeConfig>> {
        let purged: Option<LogId<NodeId>> =
            self.read_meta("purged").map_err(StorageIOError::read_logs)?;
        let last = {
            let txn = self.db.begin_read().map_err(|e| StorageIOError::read_logs(any(e)))?;
            let table = txn.open_table(LOG).map_err(|e| StorageIOError::read_logs(any(e)))?;
            match table.last().map_err(|e| StorageIOError::read_logs(any(e)))? {
                Some((_, v)) => {
                    let entry: Entry<TypeConfig> = serde_json::from_slice(v.value())
                        .map_err(|e| StorageIOError::read_logs(any(e)))?;
                    Some(*entry.get_log_id())
                }
                None => None,
            }
        };
        Ok(LogState { last_purged_log_id: purged, last_log_id: last.or(purged) })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn append_to_log<I>(&mut self, entries: I) -> StoreResult<()>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
    {
        let write = || -> Result<(), AnyError> {
            let txn = self.db.begin_write().map_err(any)?;
            {
                let mut table = txn.open_table(LOG).map_err(any)?;
                for entry in entries {
                    let bytes = serde_json::to_vec(&entry).map_err(any)?;
                    table.insert(entry.log_id.index, bytes.as_slice()).map_err(any)?;
                }
            }
            txn.commit().map_err(any)
        };
        write().map_err(|e| StorageIOError::write_logs(e).into())
    }

    async fn delete_conflict_logs_since(&mut self, log_id: LogId<NodeId>) -> StoreResult<()> {
        self.remove_logs(log_id.index..).map_err(|e| StorageIOError::write_logs(e).into())
    }

    async fn purge_logs_upto(&mut self, log_id: LogId<NodeId>) -> StoreResult<()> {
        self.write_meta(&[("purged", json!(log_id))], true).map_err(StorageIOError::write_logs)?;
        self.remove_logs(..=log_id.index).map_err(|e| StorageIOError::write_logs(e).into())
    }

    async fn last_applied_state(
        &mut self,
    ) -> StoreResult<(Option<LogId<NodeId>>, StoredMembership<NodeId, Replica>)> {
        let read = || -> Result<_, AnyError> {
            let applied: Option<LogId<NodeId>> = self.read_meta("applied")?;
            let membership: Option<StoredMembership<NodeId, Replica>> =
                self.read_meta("membership")?;
            Ok((applied, membership.unwrap_or_default()))
        };
        read().map_err(|e| StorageIOError::read_state_machine(e).into())
    }

    async fn apply_to_state_machine(
        &mut self,
        entries: &[Entry<TypeConfig>],
    ) -> StoreResult<Vec<u64>> {
        let Some(last) = entries.last() else { return Ok(Vec::new()) };
        let membership = entries.iter().rev().find_map(|e| match &e.payload {
            EntryPayload::Membership(m) => Some(StoredMembership::new(Some(e.log_id), m.clone())),
            _ => None,
        });
        // The applied point is written before the commands go out: one written and not yet
        // acted on is found again by `applied_before` after a crash. It is not synced (the
        // entries are, in the log): a point lost in a crash is an earlier one, and the engine
        // applies the entries after it again, so the replica rebuilds the same state. A
        // membership change is synced.
        let durable = membership.is_some();
        let mut pairs = vec![("applied", json!(last.log_id))];
        if let Some(m) = membership {
            pairs.push(("membership", json!(m)));
        }
        let result = self.write_meta(&pairs, durable);
        result.map_err(StorageIOError::write_state_machine)?;
        for entry in entries {
            if let Some(c) = committed(entry.clone()) {
                // The receiver gone means the node is stopping.
                let _ = self.applied.send(c);
            }
        }
        Ok(entries.iter().map(|e| e.log_id.index).collect())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> StoreResult<Box<std::io::Cursor<Vec<u8>>>> {
        Ok(Box::new(std::io::Cursor::new(Vec::new())))
    }

    /// Snapshots are never built from state (the log is kept whole), so a replica is never
    /// sent one that carries state; an empty one only moves the applied point.
    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, Replica>,
        _snapshot: Box<std::io::Cursor<Vec<u8>>>,
    ) -> StoreResult<()> {
        self.write_meta(
            &[("applied", json!(meta.last_log_id)), ("membership", json!(meta.last_membership))],
            true,
        )
        .map_err(|e| StorageIOError::write_state_machine(e).into())
    }

    async fn get_current_snapshot(&mut self) -> StoreResult<Option<Snapshot<TypeConfig>>> {
        Ok(None)
    }
}

impl Store {
    fn remove_logs(&self, range: impl RangeBounds<u64>) -> Result<(), AnyError> {
        let txn = self.db.begin_write().map_err(any)?;
        {
            let mut table = txn.open_table(LOG).map_err(any)?;
            let keys: Vec<u64> = table
                .range::<u64>((range.start_bound().cloned(), range.end_bound().cloned()))
                .map_err(any)?
                .filter_map(|r| r.ok().map(|(k, _)| k.value()))
                .collect();
            for k in keys {
                table.remove(k).map_err(any)?;
            }
        }
        txn.commit().map_err(any)
    }
}
