//! What a node reports: its status and its bundles. The HTTP API and the command line print
//! these same types, so they cannot drift.

use serde::Serialize;
use swarmvm_primitives::BundleId;

/// Where a bundle is in its life on this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BundleState {
    /// Resolving a magnet link's metadata.
    Resolving,
    /// Downloading (or checking data already on disk).
    Fetching,
    /// Verified; waiting for the bundles before it.
    Waiting,
    /// Its turn: being verified against the ledger, executed and committed. Reads go on
    /// meanwhile, from the last commit.
    Applying,
    /// Applied to the ledger; seeding.
    Applied,
    /// Refused (see the reason); not applied, not seeded.
    Rejected,
}

impl BundleState {
    /// True while the bundle costs the node work: resolving, fetching, waiting its turn or
    /// applying.
    pub fn is_pending(self) -> bool {
        matches!(self, Self::Resolving | Self::Fetching | Self::Waiting | Self::Applying)
    }
}

/// One fork: two validly signed bundles for one seq (`GET /v1/evidence` has the manifests).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EvidenceSummary {
    /// The seq both claim.
    pub seq: u64,
    /// The bundle applied.
    pub kept: BundleId,
    /// The bundle refused.
    pub other: BundleId,
}

/// One bundle known to the node.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BundleStatus {
    /// Its torrent's info-hash.
    pub info_hash: String,
    /// Its torrent's name, once known.
    pub name: Option<String>,
    /// Its state.
    pub state: BundleState,
    /// Its manifest's `seq`, once verified.
    pub seq: Option<u64>,
    /// Why it was refused, or what it waits for.
    pub reason: Option<String>,
    /// Percent of its data verified on disk.
    pub percent: f64,
    /// Bytes in its torrent (0 until its metadata is known).
    pub size: u64,
    /// Bytes this node downloaded for it from peers (this run).
    pub fetched: u64,
    /// Bytes this node uploaded of it to peers (this run).
    pub uploaded: u64,
    /// Receive rate now, bytes per second.
    pub down_bps: u64,
    /// Send rate now, bytes per second.
    pub up_bps: u64,
    /// Peers connected for it now.
    pub peers: u32,
}

/// Bundles `GET /v1/status` (and so each status event) lists at most: the newest. Every
/// bundle the node knows is at `GET /v1/bundles?from=N&limit=N`, page by page.
pub const STATUS_BUNDLES: usize = 32;

/// Transfers summed over every bundle the node knows, listed in the status or not.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct TransferTotals {
    /// Bytes downloaded from peers (this run).
    pub fetched: u64,
    /// Bytes uploaded to peers (this run).
    pub uploaded: u64,
    /// Receive rate now, bytes per second.
    pub down_bps: u64,
    /// Send rate now, bytes per second.
    pub up_bps: u64,
    /// Peers connected now, over all bundles.
    pub peers: u32,
}

impl BundleStatus {
    /// Its state as the status shows it beside a ledger at `last_seq`: a bundle applying
    /// whose seq the ledger holds already was committed in between, and is applied.
    pub fn shown(&self, last_seq: u64) -> BundleState {
        match self.state {
            BundleState::Applying if self.seq.is_some_and(|s| s <= last_seq) => {
                BundleState::Applied
            }
            state => state,
        }
    }
}

impl TransferTotals {
    /// Adds one bundle's figures.
    pub fn add(&mut self, b: &BundleStatus) {
        self.fetched = self.fetched.saturating_add(b.fetched);
        self.uploaded = self.uploaded.saturating_add(b.uploaded);
        self.down_bps = self.down_bps.saturating_add(b.down_bps);
        self.up_bps = self.up_bps.saturating_add(b.up_bps);
        self.peers = self.peers.saturating_add(b.peers);
    }
}

/// One page of the bundles a node knows (`GET /v1/bundles?from=N&limit=N`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BundlePage {
    /// The bundles at positions `from` on, oldest first.
    pub bundles: Vec<BundleStatus>,
    /// How many bundles the node knows (positions 1 to `known`).
    pub known: usize,
    /// The position of the first bundle listed (1 is the oldest).
    pub from: u64,
    /// The position to ask for next; `None` after the last page.
    pub next: Option<u64>,
}

/// The authority set in force, as the status shows it (the keys: `GET /v1/authorities`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuthoritySummary {
    /// Distinct members whose signatures the next bundle needs.
    pub threshold: usize,
    /// The members' wallet ids, sorted.
    pub members: Vec<String>,
}

impl AuthoritySummary {
    /// The summary of `set`.
    pub fn of(set: &swarmvm_token::AuthoritySet) -> Self {
        Self {
            threshold: set.threshold(),
            members: set.members().map(|(id, _)| id.to_string()).collect(),
        }
    }
}

/// A node's status (`GET /v1/status`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Status {
    /// The BitTorrent peer id (hex).
    pub peer_id: String,
    /// When the node started (Unix seconds).
    pub started_at: u64,
    /// The node's wallet id, if it was given one.
    pub wallet: Option<String>,
    /// Where peers reach it.
    pub listen: Option<String>,
    /// The network it belongs to, once a bundle applied.
    pub network: Option<String>,
    /// The authority set in force: the next bundle needs `threshold` of `members`.
    pub authorities: AuthoritySummary,
    /// The last applied bundle's `seq` (0 before the first).
    pub last_seq: u64,
    /// The state root.
    pub state_root: String,
    /// Batches in the ledger's log.
    pub batches: u64,
    /// The newest bundles the node knows (at most [`STATUS_BUNDLES`]), oldest first; of the
    /// refused, the node keeps only the newest. `GET /v1/bundles?from=N&limit=N` pages
    /// through all of them.
    pub torrents: Vec<BundleStatus>,
    /// How many bundles the node knows: `torrents` lists the newest of them.
    pub torrents_known: usize,
    /// Transfers summed over every bundle the node knows (not only those listed).
    pub transfer: TransferTotals,
    /// Fork evidence: validly signed bundles that claim a seq already applied.
    pub evidence: Vec<EvidenceSummary>,
    /// The newest signed head this node knows (`GET /v1/head` has the token).
    pub head: Option<HeadSummary>,
    /// True when the newest head expired: the sequencer stopped publishing, or this node
    /// cannot reach it.
    pub stale: bool,
    /// True when this node's root after a bundle differs from the head's: it stopped applying.
    pub diverged: bool,
    /// Why it diverged.
    pub diverged_reason: Option<String>,
    /// Why the last head refused was refused.
    pub head_refused: Option<String>,
    /// On the sequencer: its queue.
    pub sequencer: Option<SequencerSummary>,
    /// The nodes this node follows.
    pub following: Vec<String>,
}

/// A head, as the status shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HeadSummary {
    /// The bundle's seq.
    pub seq: u64,
    /// Its identity.
    pub bundle: BundleId,
    /// The state root after it.
    pub state_root: String,
    /// When the head was signed (Unix seconds).
    pub issued_at: u64,
    /// When it expires.
    pub expires_at: u64,
    /// Its signers.
    pub signers: Vec<String>,
}

impl HeadSummary {
    /// The summary of a verified head.
    pub fn of(head: &swarmvm_token::VerifiedHead) -> Self {
        Self {
            seq: head.seq,
            bundle: head.bundle,
            state_root: head.state_root.to_hex(),
            issued_at: head.issued_at,
            expires_at: head.expires_at,
            signers: head.signers.clone(),
        }
    }
}

/// The sequencer's queue, as the status shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SequencerSummary {
    /// Items (contracts, registrations, modules) waiting for the next cut.
    pub queued: usize,
}
