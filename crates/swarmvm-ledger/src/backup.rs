//! Backups: one commit of a ledger copied, table by table, into a new ledger file.
//!
//! The copy is made from a [`Snapshot`] (one read transaction), so it is consistent even while
//! a node keeps committing to the ledger: it holds exactly the commit the snapshot saw. It is
//! written to a temporary file beside the target, synced, and renamed into place, so the
//! target either does not exist or holds a whole copy. Restoring is putting the file where a
//! node looks for its ledger (`DIR/ledger.redb`).

use std::fs::File;
use std::path::{Path, PathBuf};

use redb::{
    Database, ReadTransaction, ReadableTable as _, TableDefinition, TableError, TableHandle as _,
};
use swarmvm_vm::Hash32;

use crate::reader::{CACHE_BYTES, LedgerReader, Snapshot};
use crate::store::{
    BUNDLES, CONTRACTS, EVIDENCE, HEADS, LOG, META, MODULES, RECEIPTS, ROTATIONS, STATE, TRIE,
};

/// The tables a format 4 ledger holds (each copied by [`copy_into`]); a table outside them is
/// refused, never dropped.
fn known(name: &str) -> bool {
    [
        STATE.name(),
        TRIE.name(),
        META.name(),
        LOG.name(),
        RECEIPTS.name(),
        BUNDLES.name(),
        MODULES.name(),
        EVIDENCE.name(),
        HEADS.name(),
        ROTATIONS.name(),
        CONTRACTS.name(),
    ]
    .contains(&name)
}

/// What a backup holds.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BackupReport {
    /// The file written.
    pub path: PathBuf,
    /// The seq of the last applied bundle in the copy (none before the first bundle).
    pub seq: Option<u64>,
    /// The state root of the copy.
    pub state_root: Hash32,
    /// Rows copied, over all tables.
    pub rows: u64,
    /// The copy's size in bytes.
    pub bytes: u64,
}

/// Why a backup was not made. The ledger is only read, and the target is left as it was.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BackupError {
    /// The target exists; a backup never replaces a file.
    #[error("{} exists; remove it or choose another file", .0.display())]
    Exists(PathBuf),
    /// Creating, writing, syncing or renaming a file failed.
    #[error("cannot write {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The failure.
        source: std::io::Error,
    },
    /// Reading the ledger or writing the copy failed.
    #[error("storage failure: {0}")]
    Storage(#[from] redb::Error),
    /// The copy, read back, is not the commit it copied (it is removed).
    #[error("the copy does not read back as the ledger: {0}")]
    Unreadable(String),
    /// The ledger holds a table this version does not know, so a copy would lose it.
    #[error("the ledger holds a table this version does not know ('{0}'); use a newer swarmvm")]
    UnknownTable(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BackupError + '_ {
    move |source| BackupError::Io { path: path.to_path_buf(), source }
}

impl Snapshot {
    /// Copies this commit of the ledger into a new ledger file at `out`, which must not exist.
    pub fn backup(&self, out: &Path) -> Result<BackupReport, BackupError> {
        if out.exists() {
            return Err(BackupError::Exists(out.to_path_buf()));
        }
        let txn = self.transaction();
        for table in txn.list_tables().map_err(redb::Error::from)? {
            if !known(table.name()) {
                return Err(BackupError::UnknownTable(swarmvm_primitives::text::shown(
                    table.name(),
                )));
            }
        }
        let mut partial = out.as_os_str().to_owned();
        partial.push(".partial");
        let partial = PathBuf::from(partial);
        // A partial file is what an interrupted backup left: never a backup, so replaced.
        match std::fs::remove_file(&partial) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(&partial)(e)),
        }
        let copied = copy_into(txn, &partial);
        let rows = match copied {
            Ok(rows) => rows,
            Err(e) => {
                let _ = std::fs::remove_file(&partial);
                return Err(e);
            }
        };
        File::open(&partial).and_then(|f| f.sync_all()).map_err(io(&partial))?;
        let seq = self.last_bundle().map(|b| b.seq);
        // The copy is read back as a node would open it, before it takes the target's name:
        // the same position and root.
        if let Err(e) = self.compare(&partial, seq) {
            let _ = std::fs::remove_file(&partial);
            return Err(e);
        }
        // Not atomic against a file created at `out` meanwhile: `hard_link` then fails, where a
        // rename would replace it.
        std::fs::hard_link(&partial, out).map_err(|e| {
            let _ = std::fs::remove_file(&partial);
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                BackupError::Exists(out.to_path_buf())
            } else {
                io(out)(e)
            }
        })?;
        std::fs::remove_file(&partial).map_err(io(&partial))?;
        if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
            File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))?;
        }
        let bytes = std::fs::metadata(out).map_err(io(out))?.len();
        Ok(BackupReport {
            path: out.to_path_buf(),
            seq,
            state_root: self.state_root(),
            rows,
            bytes,
        })
    }
}

impl Snapshot {
    /// Opens the copy at `path` and compares its position and root with this commit's.
    fn compare(&self, path: &Path, seq: Option<u64>) -> Result<(), BackupError> {
        let copy = LedgerReader::open_read_only(path)
            .map_err(|e| BackupError::Unreadable(e.to_string()))?
            .snapshot()
            .map_err(|e| BackupError::Unreadable(e.to_string()))?;
        if copy.state_root() != self.state_root() || copy.last_bundle().map(|b| b.seq) != seq {
            return Err(BackupError::Unreadable(format!(
                "it reads as state root {}, not {}",
                copy.state_root(),
                self.state_root()
            )));
        }
        Ok(())
    }
}

/// Writes every table of `txn` into a new database at `path`, in one write transaction.
fn copy_into(txn: &ReadTransaction, path: &Path) -> Result<u64, BackupError> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(io(path))?;
    drop(file);
    let db = Database::builder()
        .set_cache_size(CACHE_BYTES)
        .create(path)
        .map_err(|e| BackupError::Storage(e.into()))?;
    let write = db.begin_write().map_err(|e| BackupError::Storage(e.into()))?;
    let mut rows = 0;
    rows += copy(txn, &write, STATE)?;
    rows += copy(txn, &write, TRIE)?;
    rows += copy(txn, &write, META)?;
    rows += copy(txn, &write, LOG)?;
    rows += copy(txn, &write, RECEIPTS)?;
    rows += copy(txn, &write, BUNDLES)?;
    rows += copy(txn, &write, MODULES)?;
    rows += copy(txn, &write, EVIDENCE)?;
    rows += copy(txn, &write, HEADS)?;
    rows += copy(txn, &write, ROTATIONS)?;
    rows += copy(txn, &write, CONTRACTS)?;
    write.commit().map_err(|e| BackupError::Storage(e.into()))?;
    Ok(rows)
}

/// Copies one table, row by row in key order; a table the ledger never created is skipped.
fn copy<K: redb::Key + 'static, V: redb::Value + 'static>(
    from: &ReadTransaction,
    to: &redb::WriteTransaction,
    def: TableDefinition<'_, K, V>,
) -> Result<u64, BackupError> {
    let source = match from.open_table(def) {
        Ok(t) => t,
        Err(TableError::TableDoesNotExist(_)) => return Ok(0),
        Err(e) => return Err(BackupError::Storage(e.into())),
    };
    let mut target = to.open_table(def).map_err(|e| BackupError::Storage(e.into()))?;
    let mut rows = 0;
    for row in source.iter().map_err(|e| BackupError::Storage(e.into()))? {
        let (k, v) = row.map_err(|e| BackupError::Storage(e.into()))?;
        target.insert(k.value(), v.value()).map_err(|e| BackupError::Storage(e.into()))?;
        rows += 1;
    }
    Ok(rows)
}
