//! The parts every client of the ledger and the swarm uses (the sequencer, the follower, the
//! API), handed to them as one value.

use crate::applier::Applier;
use crate::fetcher::Fetcher;
use crate::heads::HeadStore;
use crate::snapshot_store::Snapshots;
use crate::tasks::Tasks;

/// The node's parts with one owner each: the [`Applier`] (the ledger's writer), the
/// [`Fetcher`] (bundles in and out over BitTorrent), the [`HeadStore`] (signed heads), the
/// node's [`Tasks`] and its [`Snapshots`]. Cloning is cheap: each part is a handle.
#[derive(Clone)]
pub(crate) struct Core {
    pub(crate) applier: Applier,
    pub(crate) heads: HeadStore,
    pub(crate) fetcher: Fetcher,
    pub(crate) tasks: Tasks,
    pub(crate) snapshots: Snapshots,
}

impl Core {
    /// Signs the head again (a new `iat` and `exp`) for the last applied bundle, so that
    /// followers never see it expire while the sequencer runs, and so that it names a
    /// snapshot published since (on a sequencer; elsewhere it does nothing).
    pub(crate) fn refresh_head(&self) {
        let Some(snapshot) = self.applier.snapshot() else { return };
        let Some(last) = snapshot.last_bundle() else { return };
        let root = snapshot.state_root();
        drop(snapshot);
        match self.fetcher.magnet_of(last.seq) {
            Some(magnet) => self.heads.sign(last.seq, last.id, root, &magnet),
            None => {
                tracing::debug!(
                    seq = last.seq,
                    "no head yet: this node does not seed bundle {}",
                    last.seq
                );
            }
        }
    }
}
