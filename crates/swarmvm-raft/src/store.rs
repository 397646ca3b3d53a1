//! The replica's raft log, applied point and snapshots, in one redb file: every write of the
//! log, the vote or a snapshot is one synced transaction, so what a replica acknowledged
//! survives a crash.
//!
//! Snapshots are images of the node's own state (its [`ImageSource`]), taken every so many
//! entries; the log before one is then purged, so the log stays bounded and a replica starts
//! from its newest image and the entries after it. A replica too far behind for the leader's
//! log is sent the leader's image, and the node restores its state from it.

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
/// `vote`, `committed`, `purged`, `applied`, `membership`, `memberships` (JSON each).
const META: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("meta");
/// The newest snapshot: `meta` (JSON) and `data` (the node's image).
const SNAPSHOT: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("snapshot");
/// Membership changes remembered (for the membership as of a snapshot's index).
const MEMBERSHIPS_KEPT: usize = 16;

/// What the node's state machine holds, for a snapshot: the index of the last command its
/// state took and the state's bytes (the node's own format). Called by the engine when it
/// compacts the log.
pub type ImageSource = Arc<dyn Fn() -> (u64, Vec<u8>) + Send + Sync>;

/// What goes to the node's state machine, in log order.
#[derive(Debug, Clone)]
pub enum Applied {
    /// A committed command.
    Command(Committed),
    /// The whole state as of log index `index` (this replica's own newest snapshot at start,
    /// or the leader's when this replica was too far behind): the state is replaced by it,
    /// and commands up to `index` that come after it are already in it.
    Restore {
        /// The last log index the image holds.
        index: u64,
        /// The image, as the node's [`ImageSource`] made it.
        image: Vec<u8>,
    },
}

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
type Meta = SnapshotMeta<NodeId, Replica>;

/// Writes each `(key, value)` of `pairs` into `table`, the value as JSON.
fn put_pairs(
    table: &mut redb::Table<'_, &'static str, &'static [u8]>,
    pairs: &[(&str, serde_json::Value)],
) -> Result<(), AnyError> {
    for (key, value) in pairs {
        let bytes = serde_json::to_vec(value).map_err(any)?;
        table.insert(*key, bytes.as_slice()).map_err(any)?;
    }
    Ok(())
}

fn any(e: impl std::error::Error + 'static) -> AnyError {
    AnyError::new(&e)
}

/// The log and the applied state of one replica.
#[derive(Clone)]
pub(crate) struct Store {
    db: Arc<Database>,
    applied: mpsc::UnboundedSender<Applied>,
    image: Option<ImageSource>,
}

impl Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Store")
    }
}

impl Store {
    /// Opens (or creates) the store at `path`; committed commands go to `applied` as they
    /// apply. With `image`, snapshots are images of the node's state; without, they only
    /// mark the applied point (and the log is never purged).
    pub(crate) fn open(
        path: &Path,
        applied: mpsc::UnboundedSender<Applied>,
        image: Option<ImageSource>,
    ) -> Result<Self, redb::Error> {
        let db = Database::create(path)?;
        let txn = db.begin_write()?;
        txn.open_table(LOG)?;
        txn.open_table(META)?;
        txn.open_table(SNAPSHOT)?;
        txn.commit()?;
        Ok(Self { db: Arc::new(db), applied, image })
    }

    /// The newest snapshot kept: its meta and the image.
    fn read_snapshot(&self) -> Result<Option<(Meta, Vec<u8>)>, AnyError> {
        let txn = self.db.begin_read().map_err(any)?;
        let table = txn.open_table(SNAPSHOT).map_err(any)?;
        let (Some(meta), Some(data)) =
            (table.get("meta").map_err(any)?, table.get("data").map_err(any)?)
        else {
            return Ok(None);
        };
        let meta = serde_json::from_slice(meta.value()).map_err(any)?;
        Ok(Some((meta, data.value().to_vec())))
    }

    /// The newest snapshot's meta alone (its image is not read).
    fn snapshot_meta(&self) -> Result<Option<Meta>, AnyError> {
        let txn = self.db.begin_read().map_err(any)?;
        let table = txn.open_table(SNAPSHOT).map_err(any)?;
        let Some(meta) = table.get("meta").map_err(any)? else { return Ok(None) };
        serde_json::from_slice(meta.value()).map(Some).map_err(any)
    }

    /// Keeps `meta` and `data` as the newest snapshot (synced), with `pairs` of meta.
    fn write_snapshot(
        &self,
        meta: &Meta,
        data: &[u8],
        pairs: &[(&str, serde_json::Value)],
    ) -> Result<(), AnyError> {
        let txn = self.db.begin_write().map_err(any)?;
        {
            let mut table = txn.open_table(SNAPSHOT).map_err(any)?;
            let bytes = serde_json::to_vec(meta).map_err(any)?;
            table.insert("meta", bytes.as_slice()).map_err(any)?;
            table.insert("data", data).map_err(any)?;
            put_pairs(&mut txn.open_table(META).map_err(any)?, pairs)?;
        }
        txn.commit().map_err(any)
    }

    /// The log id of the entry at `index`, if the log still holds it.
    fn log_id_at(&self, index: u64) -> Result<Option<LogId<NodeId>>, AnyError> {
        let txn = self.db.begin_read().map_err(any)?;
        let table = txn.open_table(LOG).map_err(any)?;
        let Some(v) = table.get(index).map_err(any)? else { return Ok(None) };
        let entry: Entry<TypeConfig> = serde_json::from_slice(v.value()).map_err(any)?;
        Ok(Some(*entry.get_log_id()))
    }

    /// The membership in force at log index `index`: the newest change applied at or before
    /// it, else the snapshot's.
    fn membership_at(
        &self,
        index: u64,
        snapshot: Option<&Meta>,
    ) -> Result<StoredMembership<NodeId, Replica>, AnyError> {
        let changes: Vec<StoredMembership<NodeId, Replica>> =
            self.read_meta("memberships")?.unwrap_or_default();
        let found = changes
            .into_iter()
            .filter(|m| m.log_id().is_some_and(|l| l.index <= index))
            .max_by_key(|m| m.log_id().map(|l| l.index));
        Ok(found.or_else(|| snapshot.map(|s| s.last_membership.clone())).unwrap_or_default())
    }

    /// Makes a snapshot of the node's image (when it holds commands beyond the newest
    /// snapshot) and keeps it; otherwise gives the newest one again.
    fn make_snapshot(&self) -> Result<Snapshot<TypeConfig>, AnyError> {
        let current = self.snapshot_meta()?;
        let current_index = current.as_ref().and_then(|m| m.last_log_id).map(|l| l.index);
        let fresh = match &self.image {
            Some(source) => {
                let (index, image) = source();
                if current_index.is_some_and(|c| c >= index) {
                    None
                } else {
                    self.log_id_at(index)?.map(|log_id| (log_id, image))
                }
            }
            None => None,
        };
        if let Some((log_id, image)) = fresh {
            let meta = SnapshotMeta {
                last_log_id: Some(log_id),
                last_membership: self.membership_at(log_id.index, current.as_ref())?,
                snapshot_id: format!("{}-{}", log_id.leader_id.term, log_id.index),
            };
            self.write_snapshot(&meta, &image, &[])?;
            return Ok(Snapshot { meta, snapshot: Box::new(std::io::Cursor::new(image)) });
        }
        // The node has not taken the commands since the last snapshot yet: nothing new (an
        // error here would stop the engine); asked again after the next commands.
        let (meta, data) = self.read_snapshot()?.unwrap_or_else(|| {
            let none = SnapshotMeta {
                last_log_id: None,
                last_membership: StoredMembership::default(),
                snapshot_id: "none".into(),
            };
            (none, Vec::new())
        });
        Ok(Snapshot { meta, snapshot: Box::new(std::io::Cursor::new(data)) })
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
        put_pairs(&mut txn.open_table(META).map_err(any)?, pairs)?;
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

    /// What was applied before this process started, in order: the newest snapshot's image
    /// and the commands after it, what the replica's own state is rebuilt from.
    pub(crate) fn applied_before(&self) -> Result<Vec<Applied>, AnyError> {
        let mut out = Vec::new();
        let mut from = Bound::Unbounded;
        if let Some((meta, image)) = self.read_snapshot()?
            && let Some(at) = meta.last_log_id
        {
            out.push(Applied::Restore { index: at.index, image });
            from = Bound::Excluded(at.index);
        }
        let applied: Option<LogId<NodeId>> = self.read_meta("applied")?;
        let Some(last) = applied else { return Ok(out) };
        out.extend(
            self.entries((from, Bound::Included(last.index)))?
                .into_iter()
                .filter_map(committed)
                .map(Applied::Command),
        );
        Ok(out)
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
    /// With an image source: the node's state as of the last command it took. Without (the
    /// engine then never asks for one by itself): only where the state machine is, for the
    /// engine's bookkeeping.
    async fn build_snapshot(&mut self) -> StoreResult<Snapshot<TypeConfig>> {
        if self.image.is_some() {
            return self.make_snapshot().map_err(|e| StorageIOError::read_state_machine(e).into());
        }
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
            // The applied point is written unsynced: one lost in a crash may be older than
            // the newest snapshot, which holds everything up to its own.
            if let Some(meta) = self.snapshot_meta()?
                && meta.last_log_id > applied
            {
                return Ok((meta.last_log_id, meta.last_membership));
            }
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
            let mut changes: Vec<StoredMembership<NodeId, Replica>> = self
                .read_meta("memberships")
                .map_err(StorageIOError::write_state_machine)?
                .unwrap_or_default();
            changes.push(m.clone());
            let extra = changes.len().saturating_sub(MEMBERSHIPS_KEPT);
            changes.drain(..extra);
            pairs.push(("membership", json!(m)));
            pairs.push(("memberships", json!(changes)));
        }
        let result = self.write_meta(&pairs, durable);
        result.map_err(StorageIOError::write_state_machine)?;
        for entry in entries {
            if let Some(c) = committed(entry.clone()) {
                // The receiver gone means the node is stopping.
                let _ = self.applied.send(Applied::Command(c));
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

    /// The leader's snapshot, sent because this replica is behind its log: kept as this
    /// replica's own, and its image given to the node, whose state it replaces.
    async fn install_snapshot(
        &mut self,
        meta: &Meta,
        snapshot: Box<std::io::Cursor<Vec<u8>>>,
    ) -> StoreResult<()> {
        let image = snapshot.into_inner();
        let pairs = [
            ("applied", json!(meta.last_log_id)),
            ("membership", json!(meta.last_membership)),
            ("memberships", json!([meta.last_membership])),
        ];
        self.write_snapshot(meta, &image, &pairs).map_err(StorageIOError::write_state_machine)?;
        if let Some(at) = meta.last_log_id
            && self.image.is_some()
        {
            let _ = self.applied.send(Applied::Restore { index: at.index, image });
        }
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> StoreResult<Option<Snapshot<TypeConfig>>> {
        let current = self.read_snapshot().map_err(|e| StorageIOError::read_snapshot(None, e))?;
        Ok(current
            .map(|(meta, data)| Snapshot { meta, snapshot: Box::new(std::io::Cursor::new(data)) }))
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
