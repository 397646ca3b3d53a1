//! The HTTP API's protocol: the request and response types of every `/v1` route, and its
//! headers. The server ([`router`](crate::router)) answers with them and the [`Client`]
//! (which the command line and the follower use) reads them, so the two cannot drift.
//!
//! [`Client`]: crate::client::Client

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use swarmvm_ledger::{Evidence, LogEntry, Receipt};
use swarmvm_primitives::{BundleId, Hash32, NetworkId, WalletId};

/// Where a bundle is in its life on this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EvidenceSummary {
    /// The seq both claim.
    pub seq: u64,
    /// The bundle applied.
    pub kept: BundleId,
    /// The bundle refused.
    pub other: BundleId,
}

/// One bundle known to the node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthoritySummary {
    /// Distinct members whose signatures the next bundle needs.
    pub threshold: usize,
    /// The members' wallet ids, sorted.
    pub members: Vec<WalletId>,
}

impl AuthoritySummary {
    /// The summary of `set`.
    pub fn of(set: &swarmvm_token::AuthoritySet) -> Self {
        Self {
            threshold: set.threshold(),
            members: set.members().map(|(id, _)| id.clone()).collect(),
        }
    }
}

/// A node's status (`GET /v1/status`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// The BitTorrent peer id (hex).
    pub peer_id: String,
    /// When the node started (Unix seconds).
    pub started_at: u64,
    /// The node's wallet id, if it was given one.
    pub wallet: Option<WalletId>,
    /// Where peers reach it.
    pub listen: Option<String>,
    /// The network it belongs to, once a bundle applied.
    pub network: Option<NetworkId>,
    /// The authority set in force: the next bundle needs `threshold` of `members`.
    pub authorities: AuthoritySummary,
    /// The last applied bundle's `seq` (0 before the first).
    pub last_seq: u64,
    /// The state root.
    pub state_root: Hash32,
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
    /// On an authority replica: the cluster as it sees it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterSummary>,
    /// The nodes this node follows.
    pub following: Vec<String>,
    /// The newest state snapshot this node seeds (`--snapshot-every`, or the one it started
    /// from), as heads name it.
    #[serde(default)]
    pub snapshot: Option<swarmvm_token::SnapshotClaim>,
    /// How its ledger began, when it was asked to start from a snapshot (`--from-snapshot`).
    #[serde(default)]
    pub joined: Option<Joined>,
    /// The node's DHT address (UDP), when it runs one (`--dht-bootstrap`, `--follow LINK`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dht: Option<String>,
}

/// How a node's ledger began (`/v1/status` `joined`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Joined {
    /// `snapshot` when it started from one, `genesis` when it replays every bundle.
    pub from: String,
    /// The snapshot's seq (from a snapshot).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    /// Why it replays instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The snapshot's size in bytes (from a snapshot, in the run that fetched it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    /// The bytes of it received from peers in that run: less than `bytes` when a fetch cut
    /// short by a crash resumed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fetched: Option<u64>,
}

/// A head, as the status shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeadSummary {
    /// The bundle's seq.
    pub seq: u64,
    /// Its identity.
    pub bundle: BundleId,
    /// The state root after it.
    pub state_root: Hash32,
    /// When the head was signed (Unix seconds).
    pub issued_at: u64,
    /// When it expires.
    pub expires_at: u64,
    /// Its signers.
    pub signers: Vec<WalletId>,
    /// Where this node took it from: `self` (it signed it), `relay` (a followed node's HTTP
    /// API) or `dht` (a member's item in the DHT).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub via: Option<String>,
    /// When this node took it (Unix seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub received_at: Option<u64>,
}

impl HeadSummary {
    /// The summary of a verified head.
    pub fn of(head: &swarmvm_token::VerifiedHead) -> Self {
        Self {
            seq: head.seq,
            bundle: head.bundle,
            state_root: head.state_root,
            issued_at: head.issued_at,
            expires_at: head.expires_at,
            // Verified, so each is a wallet id.
            signers: head.signers.iter().filter_map(|s| s.parse().ok()).collect(),
            via: None,
            received_at: None,
        }
    }
}

/// The sequencer's queue, as the status shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SequencerSummary {
    /// Items (contracts, registrations, modules) waiting for the next cut.
    pub queued: usize,
}

/// An authority replica's view of its cluster (`/v1/status` `cluster`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterSummary {
    /// `leader`, `follower` or `candidate`.
    pub role: String,
    /// Its current term.
    pub term: u64,
    /// The leader's member id, when one is known.
    pub leader: Option<String>,
    /// The replicas, each with the last seq whose manifest it signed.
    pub members: Vec<ClusterMember>,
    /// The index of the last log entry it applied.
    pub commit_index: u64,
    /// How many times it saw the leader change since it started.
    pub leader_changes: u64,
    /// The last log index its newest snapshot holds (its log before that is purged, but for
    /// a few entries kept behind); 0 before its first.
    #[serde(default)]
    pub snapshot_index: u64,
}

/// One replica of a cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterMember {
    /// Its authority member id.
    pub member: String,
    /// Its HTTP base URL.
    pub url: String,
    /// The last seq whose manifest it signed (0 when none yet).
    pub last_seq: u64,
}

/// The header counting the nodes a forwarded submission went through.
pub const HOPS_HEADER: &str = "swarmvm-hops";
/// The header naming the nodes a forwarded submission went through (their BitTorrent peer
/// ids, hex, comma-separated), so that one that comes back to a node is refused at once
/// instead of going round a loop of followers.
pub const VIA_HEADER: &str = "swarmvm-via";
/// The status of a submission that came back to a node it went through already.
pub const LOOP_DETECTED: u16 = 508;

/// Every error's body: `{"error": "<one line>"}`, with the wallet's next nonce after a stale
/// one, and `"duplicate": true` when the very contract was taken already.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ErrorBody {
    /// One line.
    pub error: String,
    /// The wallet's next nonce (409 for a stale nonce).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_nonce: Option<u64>,
    /// The very contract was taken already (409).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub duplicate: bool,
}

/// A refusal as the API answers it: the status, one line, and what a client needs to try
/// again (`Retry-After`, the next nonce) or to know it was taken already.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The HTTP status.
    pub status: u16,
    /// One line.
    pub message: String,
    /// Seconds to wait before trying again (429).
    pub retry_after: Option<u64>,
    /// The wallet's next nonce (a stale nonce).
    pub next_nonce: Option<u64>,
    /// The very contract was taken already.
    pub duplicate: bool,
}

impl Refusal {
    /// The body it is answered with.
    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            error: self.message.replace('\n', " "),
            next_nonce: self.next_nonce,
            duplicate: self.duplicate,
        }
    }
}

/// `GET /v1/head?seq=N&iat=T&wait=SECONDS`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeadQuery {
    /// The seq of the newest head the asker knows.
    pub seq: Option<u64>,
    /// Its `iat`.
    pub iat: Option<u64>,
    /// Seconds to wait for a newer one (at most 25).
    pub wait: Option<u64>,
}

/// `GET /v1/head`: the newest valid head, as its token, and the BEP 44 items that carry it
/// in the DHT, so that a node that learned it over HTTP can put it again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeadAnswer {
    /// The signed head (a JWS).
    pub head: String,
    /// The signed DHT items this node holds for that head, one per member key (none when it
    /// holds none, or runs no DHT).
    #[serde(default)]
    pub items: Vec<DhtItem>,
}

/// A BEP 44 mutable item as `GET /v1/head` gives it (docs/format.md, "Heads in the DHT").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DhtItem {
    /// The member's Ed25519 public key, 64 lowercase hex characters.
    pub k: String,
    /// BEP 44's `seq`: the head's seq × 2^32 plus the low 32 bits of its `iat`.
    pub seq: i64,
    /// The item's Ed25519 signature, 128 lowercase hex characters.
    pub sig: String,
    /// The item's value (the bencoded dictionary), base64url without padding.
    pub v: String,
}

/// `?from=N&limit=N` for the paged routes (`/v1/bundles`, `/v1/receipts`, `/v1/log`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PageQuery {
    /// The first position (1 unless told).
    pub from: Option<u64>,
    /// Items at most.
    pub limit: Option<usize>,
}

/// `?after=ID&limit=N` for `GET /v1/state/{table}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatePageQuery {
    /// The id to start after.
    pub after: Option<String>,
    /// Entries at most.
    pub limit: Option<usize>,
}

/// `GET /v1/state/{table}`: a page of one table, in id order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatePage {
    /// The table.
    pub table: String,
    /// Its entries, as the state shows them.
    pub entries: Vec<Value>,
    /// The id to ask after for the next page (`null` after the last).
    pub next: Option<String>,
}

/// `GET /v1/state/{table}/{id}`: one entry, as a page of its table shows it, with the state it
/// was read from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StateEntry {
    /// The table.
    pub table: String,
    /// The entry: `{"id", ...its fields}`.
    pub entry: Value,
    /// The root of the state it was read from.
    pub state_root: Hash32,
    /// The last bundle applied to that state (0: none).
    pub last_seq: u64,
}

/// `GET /v1/proof/{table}/{id}` and `swarmvm state prove`: one entry, or its absence, with a
/// proof (`docs/format.md`, "Proofs") against the state root a head names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProofAnswer {
    /// The signed head of the state proved: its `state_root` is the root the proof leads to.
    /// Absent when this node keeps no head for its last seq (check the proof with a root).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head: Option<String>,
    /// The table (its name in the routes: `students`, `wallets`, ...).
    pub table: String,
    /// The entry's id.
    pub id: String,
    /// The entry's record (`docs/format.md`, "Proofs"), `null` when there is no such entry.
    pub value: Value,
    /// The proof, base64url without padding.
    pub proof: String,
    /// The state root proved against, when no head covers it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root: Option<Hash32>,
    /// The manifests (JWS) of the bundles that rotated the authority set up to the head, in
    /// seq order: a verifier that starts from the network's first set follows them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub manifests: Vec<String>,
}

/// `GET /v1/state/root`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateRoot {
    /// The state root after the last applied bundle.
    pub state_root: Hash32,
}

/// `GET /v1/wallets/{id}`: one registered wallet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WalletView {
    /// Its id (the key's thumbprint).
    pub id: String,
    /// Its label.
    pub label: Value,
    /// Its public key (a JWK).
    pub jwk: Value,
    /// Its last used nonce; the next contract's is one more.
    pub nonce: u64,
    /// True once revoked.
    pub revoked: bool,
}

/// What became of a contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContractState {
    /// Queued at the sequencer, or forwarded there by this node; not applied yet.
    Pending,
    /// Applied.
    Applied,
    /// Rejected (see the reason).
    Rejected,
}

/// `GET /v1/contracts/{id}` (and `POST /v1/contracts`'s 202, pending).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContractView {
    /// Its id: the SHA-256 of its token.
    pub id: Hash32,
    /// What became of it.
    pub state: ContractState,
    /// Its receipt, once a batch held it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receipt: Option<Receipt>,
    /// Its bundle's seq.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    /// Why it was rejected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl ContractView {
    /// A contract taken and not applied yet.
    pub fn pending(id: Hash32) -> Self {
        Self { id, state: ContractState::Pending, receipt: None, seq: None, reason: None }
    }
}

/// `POST /v1/contracts/batch`: one answer for each line of the body, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchAnswer {
    /// Each contract's answer.
    pub results: Vec<BatchResult>,
}

/// One contract's answer in a batch: the status and body `POST /v1/contracts` would have
/// answered it alone with (202 `{"id", "state": "pending"}`, or a refusal's `{"error", ...}`),
/// the status as a field.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchResult {
    /// The HTTP status it would have had alone.
    pub status: u16,
    /// Its id, once taken (202).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<Hash32>,
    /// `pending`, once taken (202).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<ContractState>,
    /// Why it was refused: one line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The wallet's next nonce (409 for a stale nonce).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_nonce: Option<u64>,
    /// The very contract was taken already (409).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub duplicate: bool,
    /// Seconds to wait before trying it again (429).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
}

impl BatchResult {
    /// A contract taken (202, pending).
    pub fn accepted(id: Hash32) -> Self {
        Self { status: 202, id: Some(id), state: Some(ContractState::Pending), ..Self::default() }
    }

    /// A contract refused.
    pub fn refused(r: &Refusal) -> Self {
        let body = r.body();
        Self {
            status: r.status,
            error: Some(body.error),
            next_nonce: body.next_nonce,
            duplicate: body.duplicate,
            retry_after: r.retry_after,
            ..Self::default()
        }
    }
}

/// `GET /v1/bundles/{seq}`: an applied bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundleAt {
    /// Its seq.
    pub seq: u64,
    /// Its identity.
    pub bundle: BundleId,
    /// Its parent's identity (`null` for the first).
    pub parent: Option<BundleId>,
    /// Its manifest (a JWS).
    pub manifest: String,
    /// The magnet of a torrent of it this node seeds (`null` when it applied it offline).
    pub magnet: Option<String>,
}

/// `POST /v1/bundles`: exactly one of `magnet` and `torrent_base64`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddBundle {
    /// A magnet link.
    pub magnet: Option<String>,
    /// A `.torrent`, base64.
    pub torrent_base64: Option<String>,
}

/// `POST /v1/bundles`'s 202.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundleAdded {
    /// The bundle's info-hash.
    pub info_hash: String,
}

/// `POST /v1/registrations`'s body: tokens and modules for the next cut, or a whole folder
/// signed elsewhere with its manifest.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistrationsBody {
    /// Registration tokens.
    #[serde(default)]
    pub tokens: Vec<String>,
    /// Modules, base64.
    #[serde(default)]
    pub modules: Vec<String>,
    /// A signed folder's manifest.
    pub manifest: Option<String>,
    /// A signed folder's contracts.
    #[serde(default)]
    pub contracts: Vec<String>,
}

/// `POST /v1/registrations`'s answer: 202 `{"queued": N}` for tokens and modules queued, 200
/// `{"seq", "bundle"}` for a signed folder published.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum RegistrationsAnswer {
    /// Queued for the next cut.
    Queued {
        /// Items queued.
        queued: usize,
    },
    /// Published as the next bundle.
    Published {
        /// Its seq.
        seq: u64,
        /// Its identity.
        bundle: BundleId,
    },
}

/// `GET /v1/evidence`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EvidenceList {
    /// Forks seen.
    pub evidence: Vec<Evidence>,
    /// On an authority replica: members seen signing two conflicting manifests or heads for
    /// one seq (whether or not either reached K).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub equivocations: Vec<Equivocation>,
}

/// One member's two signatures over conflicting payloads for one seq: two manifests, or two
/// heads naming another bundle or root. Each is the compact JWS the signature stands for, so
/// anyone holding the member's public key can check both.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Equivocation {
    /// The seq both are for.
    pub seq: u64,
    /// The member that signed both.
    pub member: String,
    /// `manifest`, `head`, or `refusal` (it refused and signed one cut).
    pub kind: String,
    /// The first signed (compact JWS; for `refusal`, the signed refusal envelope as JSON).
    pub first: String,
    /// The second (compact JWS).
    pub second: String,
    /// When this replica saw the second (Unix seconds).
    pub seen_at: u64,
}

/// `GET /v1/receipts`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipts {
    /// Receipts, in log order.
    pub receipts: Vec<Receipt>,
}

/// `GET /v1/log`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Log {
    /// Log entries, in order.
    pub log: Vec<LogEntry>,
}

/// Registered operations (`GET /v1/operations`) or wallets (`GET /v1/wallets`): id → value.
pub type Table = BTreeMap<String, Value>;

/// A sequencer's cuts, in `GET /v1/health`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CutHealth {
    /// Cuts that failed since the last one that went through.
    pub failed_cuts: u32,
    /// Why the last failed.
    pub last_failure: Option<String>,
}

/// `GET /v1/health`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    /// `ok` or `unhealthy`.
    pub status: String,
    /// What is wrong.
    pub problems: Vec<String>,
    /// On a sequencer, its cuts; `null` elsewhere.
    pub sequencer: Option<CutHealth>,
}

/// The node ids a [`VIA_HEADER`] value names.
pub(crate) fn via_ids(via: &str) -> impl Iterator<Item = &str> {
    via.split(',').map(str::trim).filter(|id| !id.is_empty())
}

/// True when the [`VIA_HEADER`] value `via` names the node `id`.
pub(crate) fn went_through(via: &str, id: &str) -> bool {
    via_ids(via).any(|v| v == id)
}

/// Why a submission that came back is refused.
pub(crate) fn came_back() -> String {
    "this submission came back to a node it was forwarded through: the nodes it went through follow each other, and none of them reaches the sequencer this way"
        .into()
}

/// Every route the API serves, as `GET /v1` lists them.
pub const ROUTES: [&str; 26] = [
    "GET / (the explorer page to browsers, Accept: text/html; this list otherwise)",
    "GET /v1 (this list)",
    "GET /v1/status",
    "GET /v1/events (server-sent events: a status event at once and at every change)",
    "GET /v1/health (200 ok, 503 unhealthy: the ledger unreadable, diverged, or stale)",
    "GET /metrics (Prometheus text exposition format)",
    "GET /v1/head?seq=N&iat=T&wait=SECONDS (the newest signed head; waits for a newer one)",
    "POST /v1/contracts (body: a signed contract, compact JWS, application/jose)",
    "POST /v1/contracts/batch (body: signed contracts, one per line, at most 1000 and 4 MiB; 200 {\"results\": [one answer per line, with its status]})",
    "POST /v1/registrations {\"tokens\": [...], \"modules\": [base64...], \"manifest\"?: ..., \"contracts\"?: [...]}",
    "GET /v1/authorities",
    "GET /v1/state (the whole state, streamed)",
    "GET /v1/state/root",
    "GET /v1/state/{table}?after=ID&limit=N",
    "GET /v1/state/{table}/{id} (one entry; 404 when absent)",
    "GET /v1/proof/{table}/{id} (the entry or its absence, with a proof against a signed head)",
    "GET /v1/operations",
    "GET /v1/wallets",
    "GET /v1/wallets/{id}",
    "GET /v1/bundles/{seq}",
    "GET /v1/contracts/{id}",
    "GET /v1/bundles?from=N&limit=N (every bundle known, oldest first; the status lists the newest)",
    "POST /v1/bundles {\"magnet\": ...} | {\"torrent_base64\": ...}",
    "GET /v1/receipts?from=N&limit=N",
    "GET /v1/log?from=N&limit=N",
    "GET /v1/evidence",
];
