//! The parts every client of the ledger and the swarm uses (the sequencer, the follower, the
//! API), handed to them as one value.

use crate::applier::Applier;
use crate::fetcher::Fetcher;
use crate::heads::HeadStore;
use crate::snapshots::Snapshots;
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
