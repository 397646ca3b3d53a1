//! What a node knows of its snapshots: the ones it seeds, how its ledger began, and which
//! bundles it pruned. The tasks that publish, join and prune are in `snapshots`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;
use swarmvm_swarm::{Swarm, Transfer};
use tracing::info;

use crate::fetcher::remove_tree;
use crate::protocol::Joined;

/// Snapshots kept and seeded.
pub(crate) const KEEP: usize = 2;

/// A snapshot's folder (and torrent) name.
pub(crate) fn name(seq: u64) -> String {
    format!("snapshot-{seq}")
}

struct Seeded {
    seq: u64,
    transfer: Transfer,
}

/// The snapshots a node seeds, and how it joined. Cloning gives another handle.
#[derive(Clone)]
pub(crate) struct Snapshots {
    inner: Arc<Inner>,
}

struct Inner {
    dir: PathBuf,
    seeded: Mutex<Vec<Seeded>>,
    joined: Mutex<Option<Joined>>,
    /// The applied bundles up to this seq were pruned (`--keep-bundles`; kept in the file
    /// `pruned` of the data folder).
    pruned: Mutex<u64>,
    pruned_file: PathBuf,
}

impl Snapshots {
    /// The snapshots of the node whose data folder is `data_dir` (in `snapshots/`).
    pub(crate) fn new(data_dir: &Path) -> Self {
        let pruned_file = data_dir.join("pruned");
        let pruned = std::fs::read_to_string(&pruned_file)
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(0);
        Self {
            inner: Arc::new(Inner {
                dir: data_dir.join("snapshots"),
                seeded: Mutex::default(),
                joined: Mutex::default(),
                pruned: Mutex::new(pruned),
                pruned_file,
            }),
        }
    }

    /// The applied bundles up to this seq were pruned here (0: none).
    pub(crate) fn pruned_through(&self) -> u64 {
        *self.inner.pruned.lock()
    }

    /// How the ledger began, once a join decided it.
    pub(crate) fn joined(&self) -> Option<Joined> {
        self.inner.joined.lock().clone()
    }

    pub(crate) fn set_joined(&self, joined: Joined) {
        *self.inner.joined.lock() = Some(joined);
    }

    /// The folder of the snapshots (`snapshots/` of the data folder).
    pub(crate) fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Records (in the file `pruned`, replaced whole) that the bundles up to `through` are
    /// pruned.
    pub(crate) fn set_pruned(&self, through: u64) -> std::io::Result<()> {
        let file = &self.inner.pruned_file;
        let partial = file.with_extension("partial");
        std::fs::write(&partial, format!("{through}\n"))
            .and_then(|()| std::fs::rename(&partial, file))?;
        *self.inner.pruned.lock() = through;
        Ok(())
    }

    /// Keeps seeding `transfer` (snapshot `seq`) and stops seeding, and removes, all but the
    /// newest [`KEEP`].
    pub(crate) async fn keep(&self, swarm: &Swarm, seq: u64, transfer: Transfer) {
        let old: Vec<Seeded> = {
            let mut seeded = self.inner.seeded.lock();
            seeded.retain(|s| s.seq != seq);
            seeded.push(Seeded { seq, transfer });
            seeded.sort_by_key(|s| s.seq);
            let extra = seeded.len().saturating_sub(KEEP);
            seeded.drain(..extra).collect()
        };
        for s in old {
            swarm.remove(&s.transfer).await;
            let _ = remove_tree(&self.inner.dir.join(name(s.seq)));
            let _ = std::fs::remove_file(self.inner.dir.join(format!("{}.torrent", name(s.seq))));
            info!(seq = s.seq, "older snapshot removed");
        }
    }
}
