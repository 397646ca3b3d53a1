//! The peer: fetch bundles, verify them, apply them in order, keep seeding them.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, RwLock};
use std::time::Duration;

use serde_json::{Map, Value, json};
use swarmvm_bundle::{OpenedBundle, check_torrent_shape, open_bundle};
use swarmvm_ledger::{Evidence, Ledger, LedgerReader, LogEntry, ReadError, Receipt, Snapshot};
use swarmvm_swarm::{InfoHash, MagnetLink, Source, Swarm, SwarmOptions, TorrentFile, Transfer};
use swarmvm_token::{AuthoritySet, Network};
use swarmvm_vm::{Hash32, Record, StateScan as _, Table};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::error::NodeError;
use crate::status::{
    BundlePage, BundleState, BundleStatus, EvidenceSummary, STATUS_BUNDLES, Status, TransferTotals,
};

/// Bounds on what strangers can make a node hold or wait for. Every bundle source (the API,
/// the drop folder, `--bundle`) meets them before it costs memory, disk or time.
#[derive(Debug, Clone)]
pub struct NodeLimits {
    /// Bundles being resolved, fetched or waiting for their turn, at most; more are refused
    /// (`POST /v1/bundles` answers 429). The node's own fetches (the bundles a follower
    /// fetches, those given with [`Node::add_own`]) have as many slots again, apart, so that
    /// bundles strangers post can never hold up the node's own.
    pub max_pending: usize,
    /// Refused bundles remembered for the status, newest first; older ones are forgotten.
    pub max_rejected: usize,
    /// How long a magnet link may take to resolve before it is refused.
    pub resolve_timeout: Duration,
    /// How long a fetch may go without a new verified byte before it is refused.
    pub stall_timeout: Duration,
    /// The HTTP API's bounds.
    pub http: crate::http::HttpLimits,
}

impl Default for NodeLimits {
    fn default() -> Self {
        Self {
            max_pending: 64,
            max_rejected: 128,
            resolve_timeout: Duration::from_secs(60),
            stall_timeout: Duration::from_secs(120),
            http: crate::http::HttpLimits::default(),
        }
    }
}

/// How a node runs.
#[derive(Debug, Default)]
pub struct NodeOptions {
    /// Its folder: `ledger.redb`, `torrents/` (every bundle it knows, to resume after a
    /// restart) and `bundles/<info-hash>/<name>/` (the bundles' data).
    pub data_dir: PathBuf,
    /// The network it follows: its id and first authority set (`--network FILE`, or
    /// `--trust PUBFILE` for a network of one key). Required: [`Node::start`] refuses `None`.
    pub network: Option<Network>,
    /// How it finds and talks to peers.
    pub swarm: SwarmOptions,
    /// Its own wallet id, shown in its status.
    pub wallet: Option<String>,
    /// Serve the HTTP API here.
    pub http: Option<SocketAddr>,
    /// Pick up `.torrent` and `.magnet` files dropped in this folder.
    pub watch: Option<PathBuf>,
    /// Host names (besides IP addresses and `localhost`) the HTTP API answers for, as
    /// `name` or `name:port` (behind a reverse proxy, say).
    pub allow_hosts: Vec<String>,
    /// Bounds on pending work and waiting.
    pub limits: NodeLimits,
    /// Run as the network's sequencer: queue submissions, cut, sign and publish bundles and
    /// heads.
    pub sequencer: Option<crate::SequencerOptions>,
    /// Follow the newest signed head of these nodes and fetch the bundles it lacks.
    pub follow: Option<crate::FollowOptions>,
}

/// Refuses to run a sequencer whose keys cannot sign for the set in force: each must be a
/// member, distinct, and together at least the threshold.
fn check_sequencer_keys(
    keys: &[swarmvm_wallet::Wallet],
    set: &AuthoritySet,
) -> Result<(), NodeError> {
    let mut ids = std::collections::BTreeSet::new();
    for key in keys {
        let id = key.id().to_string();
        if !set.contains(&id) {
            return Err(NodeError::BadRequest(format!(
                "sequencer key {id} is not a member of the authority set in force"
            )));
        }
        ids.insert(id);
    }
    if ids.len() < set.threshold() {
        return Err(NodeError::BadRequest(format!(
            "a sequencer needs {} distinct authority keys (the threshold); {} given",
            set.threshold(),
            ids.len()
        )));
    }
    Ok(())
}

/// A bundle as the status shows it.
fn bundle_status(hash: &InfoHash, e: &Entry) -> BundleStatus {
    let p = e.transfer.as_ref().map(|t| t.progress());
    BundleStatus {
        info_hash: hash.to_string(),
        name: e.name.clone(),
        state: e.state,
        seq: e.seq,
        reason: e.reason.clone(),
        percent: p.as_ref().map_or(0.0, |p| (p.percent() * 100.0).round() / 100.0),
        size: p.as_ref().map_or(0, |p| p.total),
        fetched: p.as_ref().map_or(0, |p| p.fetched),
        uploaded: p.as_ref().map_or(0, |p| p.uploaded),
        // The engine's estimate decays slowly; a finished download takes nothing.
        down_bps: p.as_ref().filter(|p| !p.finished).map_or(0, |p| p.down_bps.round() as u64),
        up_bps: p.as_ref().map_or(0, |p| p.up_bps.round() as u64),
        peers: p.as_ref().map_or(0, |p| p.peers),
    }
}

/// The longest wait before a bundle is applied again after a storage failure.
const RETRY_MAX: Duration = Duration::from_secs(60);

struct Entry {
    name: Option<String>,
    state: BundleState,
    seq: Option<u64>,
    reason: Option<String>,
    transfer: Option<Arc<Transfer>>,
    /// Storage failures while applying it, in a row (for the retry's back-off).
    failures: u32,
    /// Peers to ask for it besides the session's own (the node a follower learned it from).
    peers: Vec<SocketAddr>,
    /// The node's own fetch (a followed head's bundle, `--bundle`): counted in the slots of
    /// its own, not in those of bundles strangers post.
    own: bool,
}

/// How a transfer being waited for ended ([`Node::fetched`]).
enum Fetched {
    /// Every piece is here and verified.
    Complete,
    /// It failed or stalled; why.
    Failed(String),
    /// Its peers were renewed: it is added again with the new ones.
    Renewed,
}

/// Whose a bundle being admitted is, for the bound on pending bundles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Admission {
    /// Posted by anyone (the API, the drop folder): bounded by `max_pending`.
    Stranger,
    /// The node's own (followed heads, `--bundle`): bounded by `max_pending` slots of its own.
    Own,
    /// Stored before a restart: resumed whatever the bound (it passed every check then).
    Resumed,
}

#[derive(Default)]
struct Bundles {
    order: Vec<InfoHash>,
    entries: BTreeMap<InfoHash, Entry>,
    /// Verified bundles waiting for their turn, by `seq`.
    pending: BTreeMap<u64, Vec<(InfoHash, OpenedBundle)>>,
}

impl Bundles {
    /// Every bundle known, oldest first.
    fn listed(&self) -> impl Iterator<Item = (&InfoHash, &Entry)> + '_ {
        self.order.iter().filter_map(|h| self.entries.get(h).map(|e| (h, e)))
    }

    fn forget(&mut self, hash: InfoHash) {
        self.entries.remove(&hash);
        self.order.retain(|h| *h != hash);
    }

    /// Forgets the oldest refused bundles beyond `max`.
    fn cap_rejected(&mut self, max: usize) {
        let rejected: Vec<InfoHash> = self
            .order
            .iter()
            .filter(|h| self.entries.get(h).is_some_and(|e| e.state == BundleState::Rejected))
            .copied()
            .collect();
        for hash in rejected.iter().take(rejected.len().saturating_sub(max)) {
            self.forget(*hash);
        }
    }
}

/// Refuses a torrent that cannot be a bundle (its files, their sizes), before anything is
/// fetched or reserved for it.
fn check_shape(torrent: &TorrentFile) -> Result<(), NodeError> {
    let files = torrent.files().iter().map(|f| (f.path.as_path(), f.length));
    check_torrent_shape(torrent.is_multi_file(), files)
        .map_err(|e| NodeError::BadRequest(one_line(&e)))
}

/// Resolves once `transfer` has gone `limit` without a new verified byte; says so.
async fn stall(transfer: &Transfer, limit: Duration) -> String {
    let tick = (limit / 8).clamp(Duration::from_millis(50), Duration::from_secs(1));
    let mut last = (transfer.progress().done, tokio::time::Instant::now());
    loop {
        tokio::time::sleep(tick).await;
        let done = transfer.progress().done;
        if done != last.0 {
            last = (done, tokio::time::Instant::now());
        } else if last.1.elapsed() >= limit {
            return format!(
                "no data for {}: no peer sent a verified piece ({done} of {} bytes)",
                humantime::format_duration(limit),
                transfer.progress().total
            );
        }
    }
}

/// Removes a folder tree without following links (std's `remove_dir_all` does not follow
/// them either); a missing folder is fine.
pub(crate) fn remove_tree(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_dir_all(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// What the status showed when the ledger was closed.
#[derive(Debug, Clone, Default)]
struct Summary {
    network: Option<String>,
    last_seq: u64,
    state_root: String,
    batches: u64,
}

impl Summary {
    fn of(s: &Snapshot) -> Self {
        Self {
            network: s.network().map(str::to_owned),
            last_seq: s.last_bundle().map_or(0, |b| b.seq),
            state_root: s.state_root().to_hex(),
            batches: s.log_len(),
        }
    }
}

pub(crate) struct Inner {
    data_dir: PathBuf,
    network: Network,
    limits: NodeLimits,
    allow_hosts: Vec<String>,
    wallet: Option<String>,
    swarm: Swarm,
    /// The ledger's writer, used only by the apply path (on a blocking thread); `None` once
    /// the node stopped.
    writer: Mutex<Option<Ledger>>,
    /// The ledger's readers' handle: every read takes a snapshot of the last commit, never
    /// this lock's holder's work. `None` once the node stopped (the file is closed then).
    reader: RwLock<Option<LedgerReader>>,
    /// The ledger's position at its last commit: what the status shows while the ledger
    /// cannot be read (after a storage failure, until it is open again; once stopped).
    last_status: Mutex<Option<Summary>>,
    bundles: Mutex<Bundles>,
    /// Changes whenever [`Node::renew_peers`] gave a bundle being resolved or fetched other
    /// peers: its intake asks them from then on.
    peers_renewed: watch::Sender<u64>,
    pub(crate) applied: watch::Sender<u64>,
    stop: watch::Sender<bool>,
    http_addr: OnceLock<SocketAddr>,
    /// Every task the node started, so that stopping can wait for them.
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// The sequencer's part, on the network's sequencer.
    pub(crate) sequencer: Option<Arc<crate::sequencer::Sequencer>>,
    /// The newest head known, and what was refused.
    pub(crate) heads: Mutex<crate::follow::Heads>,
    /// Changes with every newer head: (seq, iat).
    pub(crate) head_changed: watch::Sender<(u64, u64)>,
    /// Why this node stopped applying: its root after a bundle differs from the head's.
    pub(crate) diverged: Mutex<Option<String>>,
    /// The nodes it follows (and forwards submissions to).
    pub(crate) follow: Vec<String>,
    /// How often it polls them.
    pub(crate) poll: Duration,
    /// A client for talking to them.
    pub(crate) client: crate::client::Client,
    /// Contracts this node forwarded and the sequencer accepted (pending until applied here).
    pub(crate) forwarded: Mutex<crate::follow::Forwarded>,
    /// Counters for `/metrics`.
    pub(crate) metrics: crate::metrics::Metrics,
    /// The live status for `GET /v1/events`.
    pub(crate) events: crate::events::Events,
    /// `GET /v1/head` requests waiting for a newer head now (long polls).
    pub(crate) long_polls: std::sync::atomic::AtomicUsize,
    /// When the node started (Unix seconds).
    started_at: u64,
}

/// A running peer. Cloning gives another handle to the same peer.
#[derive(Clone)]
pub struct Node {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node").field("data_dir", &self.inner.data_dir).finish_non_exhaustive()
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding a lock leaves data that is still consistent for our uses
    // (every update is a single assignment), so keep going.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// One line for an error and its causes, as the command line prints them.
pub(crate) fn one_line(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut cause = err.source();
    while let Some(c) = cause {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cause = c.source();
    }
    out.replace('\n', " ")
}

impl Node {
    /// Starts a node: opens its ledger, starts its BitTorrent session, resumes every bundle
    /// it knew (fetching what is missing, seeding what it has), then serves the HTTP API and
    /// watches the drop folder if asked.
    pub async fn start(options: NodeOptions) -> Result<Self, NodeError> {
        let Some(network) = options.network else {
            return Err(NodeError::BadRequest(
                "no network given: a node needs --network FILE or --trust PUBFILE".into(),
            ));
        };
        let dir = options.data_dir.clone();
        for sub in [dir.clone(), dir.join("torrents"), dir.join("bundles")] {
            std::fs::create_dir_all(&sub)
                .map_err(|source| NodeError::DataDir { path: sub.clone(), source })?;
        }
        let ledger_path = dir.join("ledger.redb");
        let expected = network.id().to_owned();
        let (ledger, summary) = tokio::task::spawn_blocking(move || {
            let ledger = Ledger::open(&ledger_path)?;
            let summary = Summary::of(&ledger.snapshot()?);
            if let Some(found) = &summary.network
                && *found != expected
            {
                return Err(NodeError::BadRequest(format!(
                    "this data dir's ledger belongs to network {found}, not to network {expected}"
                )));
            }
            Ok::<_, NodeError>((ledger, summary))
        })
        .await
        .map_err(|e| NodeError::BadRequest(format!("ledger open task failed: {e}")))??;
        let sequencer = match options.sequencer {
            Some(seq_options) => {
                let set = swarmvm_bundle::set_in_force(&ledger.snapshot()?, &network)
                    .map_err(|e| NodeError::BadRequest(one_line(&e)))?;
                check_sequencer_keys(&seq_options.keys, &set)?;
                crate::follow::check_head_age(seq_options.max_head_age)
                    .map_err(NodeError::BadRequest)?;
                let _ = remove_tree(&dir.join("cuts"));
                let (sequencer, rx) = crate::sequencer::Sequencer::open(&dir, seq_options)
                    .map_err(NodeError::BadRequest)?;
                Some((sequencer, rx))
            }
            None => None,
        };
        let (follow, poll) = match options.follow {
            Some(f) => (f.urls, f.poll),
            None => (Vec::new(), Duration::from_secs(1)),
        };
        let swarm = Swarm::start(options.swarm, &dir.join("bundles")).await?;
        let reader = ledger.reader();
        let node = Self {
            inner: Arc::new(Inner {
                data_dir: dir.clone(),
                network,
                limits: options.limits,
                allow_hosts: options.allow_hosts,
                wallet: options.wallet,
                swarm,
                writer: Mutex::new(Some(ledger)),
                reader: RwLock::new(Some(reader)),
                last_status: Mutex::new(Some(summary.clone())),
                bundles: Mutex::new(Bundles::default()),
                peers_renewed: watch::channel(0).0,
                applied: watch::channel(summary.last_seq).0,
                stop: watch::channel(false).0,
                http_addr: OnceLock::new(),
                tasks: Mutex::new(Vec::new()),
                sequencer: sequencer.as_ref().map(|(s, _)| s.clone()),
                heads: Mutex::new(crate::follow::Heads::default()),
                head_changed: watch::channel((0, 0)).0,
                diverged: Mutex::new(None),
                follow,
                poll,
                client: crate::client::Client::new(Duration::from_secs(30)),
                forwarded: Mutex::new(crate::follow::Forwarded::default()),
                metrics: crate::metrics::Metrics::default(),
                events: crate::events::Events::default(),
                long_polls: std::sync::atomic::AtomicUsize::new(0),
                started_at: swarmvm_token::unix_now(),
            }),
        };
        info!(data_dir = %dir.display(), last_seq = summary.last_seq, "node started");
        // Resume every bundle this node knew.
        let stored = std::fs::read_dir(dir.join("torrents"))
            .map_err(|source| NodeError::DataDir { path: dir.join("torrents"), source })?;
        for entry in stored.flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "torrent") {
                match TorrentFile::read(&path) {
                    // Stored torrents passed every check when they came; they are resumed
                    // whatever the bound on pending bundles.
                    Ok(t) => {
                        if let Err(e) =
                            node.admit(Source::Torrent(t), Admission::Resumed, Vec::new())
                        {
                            warn!(file = %path.display(), "ignoring a stored torrent: {}", one_line(&e));
                        }
                    }
                    Err(e) => warn!(file = %path.display(), "ignoring a stored torrent: {e}"),
                }
            }
        }
        if let Some(addr) = options.http {
            crate::http::serve(node.clone(), addr).await?;
        }
        if let Some(folder) = options.watch {
            crate::watch::spawn(node.clone(), folder);
        }
        if let Some((sequencer, rx)) = sequencer {
            sequencer.run(&node, rx);
            // Submissions are taken once the bundles it stored before a restart applied and
            // what it queued was checked again (bounded by the resolve and stall timeouts).
            sequencer.wait_ready().await;
        }
        if !node.inner.follow.is_empty() {
            let follower = node.clone();
            node.spawn(async move { crate::follow::follow_loop(follower).await });
        }
        Ok(node)
    }

    /// The data folder.
    pub fn data_dir(&self) -> &Path {
        &self.inner.data_dir
    }

    /// Where peers reach this node.
    pub fn listen_addr(&self) -> Option<SocketAddr> {
        self.inner.swarm.listen_addr()
    }

    /// This node's name in the path of a forwarded submission (its BitTorrent peer id, hex):
    /// a submission that comes back to it went round a loop of followers.
    pub(crate) fn node_id(&self) -> String {
        self.inner.swarm.peer_id()
    }

    /// Where the HTTP API listens, if it does.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.inner.http_addr.get().copied()
    }

    pub(crate) fn set_http_addr(&self, addr: SocketAddr) {
        let _ = self.inner.http_addr.set(addr);
    }

    /// Runs `task` on the runtime as part of this node: stopping waits for it.
    pub(crate) fn spawn(&self, task: impl std::future::Future<Output = ()> + Send + 'static) {
        let handle = tokio::spawn(task);
        let mut tasks = lock(&self.inner.tasks);
        tasks.retain(|t| !t.is_finished());
        tasks.push(handle);
    }

    /// A receiver that changes when the node is asked to stop.
    pub(crate) fn stopping(&self) -> watch::Receiver<bool> {
        self.inner.stop.subscribe()
    }

    /// The HTTP API's limits and allowed host names.
    pub(crate) fn http_settings(&self) -> (&crate::http::HttpLimits, &[String]) {
        (&self.inner.limits.http, &self.inner.allow_hosts)
    }

    /// Adds a bundle to fetch, verify and apply. Returns its info-hash at once; the work goes
    /// on in the background. Adding a bundle the node knows already changes nothing, unless
    /// it was refused: then it is tried again. A torrent that cannot be a bundle is refused
    /// at once, before anything is fetched or reserved for it, and so is any bundle beyond
    /// the bound on pending ones ([`NodeError::Busy`]). This is how bundles from anyone come
    /// (the API, the drop folder); the node's own take [`Node::add_own`].
    pub fn add(&self, source: Source) -> Result<InfoHash, NodeError> {
        self.admit(source, Admission::Stranger, Vec::new())
    }

    /// [`Node::add`], asking `peers` for it besides the session's own.
    pub fn add_with_peers(
        &self,
        source: Source,
        peers: Vec<SocketAddr>,
    ) -> Result<InfoHash, NodeError> {
        self.admit(source, Admission::Stranger, peers)
    }

    /// Adds one of the node's own bundles (given with `--bundle`, or a followed head's), asking
    /// `peers` for it besides the session's own: as [`Node::add`], but in pending slots of its
    /// own (`max_pending` more), which bundles strangers post never take.
    pub fn add_own(&self, source: Source, peers: Vec<SocketAddr>) -> Result<InfoHash, NodeError> {
        self.admit(source, Admission::Own, peers)
    }

    fn admit(
        &self,
        source: Source,
        admission: Admission,
        peers: Vec<SocketAddr>,
    ) -> Result<InfoHash, NodeError> {
        let (hash, name, state) = match &source {
            Source::Torrent(t) => {
                check_shape(t)?;
                (t.info_hash(), Some(t.name().to_owned()), BundleState::Fetching)
            }
            Source::Magnet(m) => (m.info_hash, m.name.clone(), BundleState::Resolving),
        };
        {
            let mut b = lock(&self.inner.bundles);
            match b.entries.get(&hash).map(|e| e.state) {
                Some(BundleState::Rejected) => b.forget(hash),
                Some(_) => {
                    // A stranger posted the node's own bundle first: it becomes the node's own
                    // (its slot among strangers' is free again), asked of the node's peers too.
                    if admission == Admission::Own
                        && let Some(e) = b.entries.get_mut(&hash)
                        && !e.own
                    {
                        e.own = true;
                        let mut merged = e.peers.clone();
                        merged.extend(peers.iter().filter(|p| !e.peers.contains(p)));
                        drop(b);
                        self.renew_peers(hash, merged);
                    }
                    return Ok(hash);
                }
                None => {}
            }
            // Strangers' bundles and the node's own are counted apart; resumed ones count as
            // strangers' (whoever added them before the restart).
            let own = admission == Admission::Own;
            let pending =
                b.entries.values().filter(|e| e.state.is_pending() && e.own == own).count();
            let max = self.inner.limits.max_pending;
            if admission != Admission::Resumed && pending >= max {
                return Err(NodeError::Busy { pending, max });
            }
            b.order.push(hash);
            b.entries.insert(
                hash,
                Entry {
                    name,
                    state,
                    seq: None,
                    reason: None,
                    transfer: None,
                    failures: 0,
                    peers,
                    own,
                },
            );
        }
        let node = self.clone();
        self.spawn(async move {
            let mut stop = node.stopping();
            tokio::select! {
                () = node.intake(hash, source) => {}
                _ = stop.wait_for(|s| *s) => {}
            }
        });
        Ok(hash)
    }

    /// Applies a bundle folder of this node's own (an authority publishing, the demo's
    /// authority) through the same path as fetched ones, then seeds it from where it is.
    /// Returns its torrent.
    pub async fn publish(&self, dir: &Path) -> Result<TorrentFile, NodeError> {
        let torrent = TorrentFile::create(dir, &[], None)?;
        let folder = dir.to_path_buf();
        let (network, set) = self.in_force();
        let opened = tokio::task::spawn_blocking(move || open_bundle(&folder, network.id(), &set))
            .await
            .map_err(|e| NodeError::BadRequest(format!("bundle check failed: {e}")))?
            .map_err(|e| NodeError::BadRequest(one_line(&e)))?;
        let seq = opened.manifest.seq;
        let node = self.clone();
        let applied = tokio::task::spawn_blocking(move || {
            let _turn = node.inner.sequencer.as_ref().map(|s| s.cutting.blocking_lock());
            node.apply_one(opened)
        })
        .await
        .map_err(|e| NodeError::BadRequest(format!("apply failed: {e}")))?;
        let applied = match applied {
            Err(e) if !e.is_already_applied() => return Err(NodeError::BadRequest(one_line(&e))),
            other => other.ok(),
        };
        let transfer = Arc::new(self.inner.swarm.seed(&torrent, dir).await?);
        self.seeding(&torrent, seq, Some(transfer), applied.as_ref());
        Ok(torrent)
    }

    /// Stores a bundle folder of this node's own (a sequencer's cut, or a folder signed
    /// elsewhere that it publishes) where the node resumes its bundles from, before applying
    /// it, so that a crash after this point applies it on restart rather than losing or
    /// re-cutting it: `staging` (holding the folder `dir`) becomes `bundles/<info-hash>`, and
    /// its torrent is written to `torrents/`. Then applies it, seeds it and signs a head on a
    /// sequencer. Returns its seq.
    pub(crate) async fn publish_stored(
        &self,
        staging: &Path,
        dir: &Path,
        known: swarmvm_bundle::KnownContracts,
    ) -> Result<u64, crate::sequencer::CutError> {
        use crate::sequencer::CutError;
        let failed = |e: &dyn std::fmt::Display| CutError::Failed(e.to_string());
        let torrent = {
            let (dir, trackers) = (dir.to_path_buf(), self.inner.swarm.trackers().to_vec());
            tokio::task::spawn_blocking(move || TorrentFile::create(&dir, &trackers, None))
                .await
                .map_err(|e| failed(&e))?
                .map_err(|e| CutError::Refused(one_line(&e)))?
        };
        let hash = torrent.info_hash();
        if lock(&self.inner.bundles).entries.contains_key(&hash) {
            // The very torrent is here already: its folder is not touched.
            return Err(CutError::Refused(format!("bundle torrent {hash} is known here already")));
        }
        let target = self.data_path(hash);
        let name = torrent.name().to_owned();
        let stored = self.torrent_path(hash);
        {
            let (staging, target, stored) = (staging.to_path_buf(), target.clone(), stored.clone());
            let bytes = torrent.as_bytes().to_vec();
            tokio::task::spawn_blocking(move || -> std::io::Result<()> {
                remove_tree(&target)?;
                std::fs::rename(&staging, &target)?;
                let temp = stored.with_extension("torrent.tmp");
                std::fs::write(&temp, &bytes)?;
                std::fs::File::open(&temp)?.sync_all()?;
                std::fs::rename(&temp, &stored)
            })
            .await
            .map_err(|e| failed(&e))?
            .map_err(|e| failed(&e))?;
        }
        let bundle_dir = target.join(&name);
        let undo = |why: CutError| {
            let _ = std::fs::remove_file(&stored);
            let _ = remove_tree(&target);
            why
        };
        let (network, set) = self.in_force();
        let folder = bundle_dir.clone();
        let opened = tokio::task::spawn_blocking(move || open_bundle(&folder, network.id(), &set))
            .await
            .map_err(|e| undo(failed(&e)))?
            .map_err(|e| undo(CutError::Refused(one_line(&e))))?;
        let node = self.clone();
        let applied = tokio::task::spawn_blocking(move || node.apply_known(opened, &known))
            .await
            .map_err(|e| undo(failed(&e)))?
            .map_err(|e| {
                undo(if e.is_fatal() {
                    CutError::Failed(one_line(&e))
                } else {
                    CutError::Refused(one_line(&e))
                })
            })?;
        let transfer = match self.inner.swarm.seed(&torrent, &bundle_dir).await {
            Ok(t) => Some(Arc::new(t)),
            Err(e) => {
                warn!(info_hash = %hash, "cannot seed a published bundle: {}", one_line(&e));
                None
            }
        };
        self.seeding(&torrent, applied.seq, transfer, Some(&applied));
        Ok(applied.seq)
    }

    /// Records a bundle of this node's own as applied and seeded (its `transfer`, when
    /// seeding started), then, when this call applied it, signs a head on a sequencer (or
    /// checks the head elsewhere) and tells the waiters.
    fn seeding(
        &self,
        torrent: &TorrentFile,
        seq: u64,
        transfer: Option<Arc<Transfer>>,
        applied: Option<&crate::Applied>,
    ) {
        let hash = torrent.info_hash();
        {
            let mut b = lock(&self.inner.bundles);
            if !b.entries.contains_key(&hash) {
                b.order.push(hash);
            }
            b.entries.insert(
                hash,
                Entry {
                    name: Some(torrent.name().to_owned()),
                    state: BundleState::Applied,
                    seq: Some(seq),
                    reason: None,
                    transfer,
                    failures: 0,
                    peers: Vec::new(),
                    own: true,
                },
            );
        }
        if let Some(a) = applied {
            let magnet = torrent.magnet().to_string();
            self.after_applied(a.seq, a.id, a.report.state_root, Some(magnet));
            self.inner.applied.send_replace(a.seq);
        }
    }

    /// Waits until no bundle the node knows is being resolved, fetched (or checked) or
    /// applied: the bundles it resumed at start have applied, or waited for bundles before
    /// them, or were refused. Bounded by the resolve and stall timeouts, which refuse a bundle
    /// that makes no progress.
    pub(crate) async fn wait_resumed(&self) {
        let limits = &self.inner.limits;
        let limit = limits.resolve_timeout.max(limits.stall_timeout) + Duration::from_secs(10);
        let deadline = tokio::time::Instant::now() + limit;
        while tokio::time::Instant::now() < deadline
            && self
                .bundles()
                .iter()
                .any(|b| b.state.is_pending() && b.state != BundleState::Waiting)
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The magnet of a torrent of the applied bundle `seq` this node seeds.
    pub(crate) fn magnet_of(&self, seq: u64) -> Option<String> {
        let b = lock(&self.inner.bundles);
        b.order.iter().filter_map(|h| b.entries.get(h)).find_map(|e| {
            let seeding = e.seq == Some(seq) && e.state == BundleState::Applied;
            e.transfer.as_ref().filter(|_| seeding).map(|t| t.torrent().magnet().to_string())
        })
    }

    /// The state of the bundle `hash`, if the node knows it.
    pub(crate) fn bundle_state(&self, hash: InfoHash) -> Option<BundleState> {
        lock(&self.inner.bundles).entries.get(&hash).map(|e| e.state)
    }

    /// The state of the bundle `hash` and the seq its manifest names (known once it was
    /// fetched and opened), if the node knows it.
    pub(crate) fn bundle_progress(&self, hash: InfoHash) -> Option<(BundleState, Option<u64>)> {
        lock(&self.inner.bundles).entries.get(&hash).map(|e| (e.state, e.seq))
    }

    /// True when this node announces to the tracker `url` (`--tracker`): one it chose.
    pub(crate) fn own_tracker(&self, url: &str) -> bool {
        self.inner.swarm.trackers().iter().any(|t| t.as_str() == url)
    }

    /// The peers the bundle `hash` is asked from besides the session's own.
    fn entry_peers(&self, hash: InfoHash) -> Vec<SocketAddr> {
        lock(&self.inner.bundles).entries.get(&hash).map(|e| e.peers.clone()).unwrap_or_default()
    }

    /// Asks `peers` (besides the session's own) for the bundle `hash` from now on, if it is
    /// still being resolved or fetched and they differ from those it has: its resolve starts
    /// again with them (within the same resolve timeout), or its transfer is added again with
    /// them (keeping the pieces it has). A follower does this when a node it follows moved to
    /// another BitTorrent address (restarted on another port): the transfer's engine would
    /// otherwise go on dialling the old one until the stall timeout.
    pub(crate) fn renew_peers(&self, hash: InfoHash, peers: Vec<SocketAddr>) {
        let renewed = {
            let mut b = lock(&self.inner.bundles);
            match b.entries.get_mut(&hash) {
                Some(e)
                    if matches!(e.state, BundleState::Resolving | BundleState::Fetching)
                        && e.peers != peers =>
                {
                    e.peers = peers;
                    true
                }
                _ => false,
            }
        };
        if renewed {
            info!(info_hash = %hash, "asking other peers for a bundle: a followed node moved");
            self.inner.peers_renewed.send_modify(|n| *n = n.wrapping_add(1));
        }
    }

    /// Resolves `magnet`, the bundle `hash`'s, within `limit`, asking the entry's peers; when
    /// they are renewed meanwhile ([`Node::renew_peers`]), asks again with the new ones (the
    /// limit still counts from the start).
    async fn resolve_renewing(
        &self,
        hash: InfoHash,
        magnet: &MagnetLink,
        limit: Duration,
    ) -> Result<Result<TorrentFile, String>, tokio::time::error::Elapsed> {
        let deadline = tokio::time::Instant::now() + limit;
        let mut renewed = self.inner.peers_renewed.subscribe();
        loop {
            let peers = self.entry_peers(hash);
            tokio::select! {
                r = tokio::time::timeout_at(deadline, self.resolve(magnet, &peers)) => return r,
                () = self.peers_moved(hash, &peers, &mut renewed) => {}
            }
        }
    }

    /// Returns once the bundle `hash` is to be asked of other peers than `peers`
    /// ([`Node::renew_peers`]).
    async fn peers_moved(
        &self,
        hash: InfoHash,
        peers: &[SocketAddr],
        renewed: &mut watch::Receiver<u64>,
    ) {
        loop {
            if renewed.changed().await.is_err() {
                // The node holds the sender: gone only while it stops.
                return std::future::pending().await;
            }
            if self.entry_peers(hash) != peers {
                return;
            }
        }
    }

    /// Waits until `transfer`, the bundle `hash`'s, completes, fails or stalls, or until the
    /// entry's peers are renewed ([`Node::renew_peers`]) away from `peers`.
    async fn fetched(
        &self,
        hash: InfoHash,
        transfer: &Transfer,
        peers: &[SocketAddr],
        renewed: &mut watch::Receiver<u64>,
    ) -> Fetched {
        tokio::select! {
            r = transfer.wait_complete() => match r {
                Ok(()) => Fetched::Complete,
                Err(e) => Fetched::Failed(one_line(&e)),
            },
            reason = stall(transfer, self.inner.limits.stall_timeout) => Fetched::Failed(reason),
            () = self.peers_moved(hash, peers, renewed) => Fetched::Renewed,
        }
    }

    fn update(&self, hash: InfoHash, f: impl FnOnce(&mut Entry)) {
        if let Some(e) = lock(&self.inner.bundles).entries.get_mut(&hash) {
            f(e);
        }
    }

    /// Refuses a bundle: stops its transfer (closing its files and connections), removes
    /// its data and stored torrent, and remembers why (only the newest refusals are kept).
    async fn reject(&self, hash: InfoHash, reason: String) {
        warn!(info_hash = %hash, "bundle refused: {reason}");
        let transfer = {
            let mut b = lock(&self.inner.bundles);
            let Some(e) = b.entries.get_mut(&hash) else { return };
            e.transfer.take()
        };
        if let Some(t) = transfer {
            self.inner.swarm.remove(&t).await;
        }
        let _ = std::fs::remove_file(self.torrent_path(hash));
        let data = self.data_path(hash);
        if let Err(e) =
            tokio::task::spawn_blocking(move || remove_tree(&data)).await.unwrap_or(Ok(()))
        {
            warn!(info_hash = %hash, "cannot remove a refused bundle's data: {e}");
        }
        // Shown as refused once nothing of it is left.
        let mut b = lock(&self.inner.bundles);
        if let Some(e) = b.entries.get_mut(&hash) {
            e.state = BundleState::Rejected;
            e.reason = Some(reason);
        }
        b.cap_rejected(self.inner.limits.max_rejected);
    }

    fn data_path(&self, hash: InfoHash) -> PathBuf {
        self.inner.data_dir.join("bundles").join(hash.to_string())
    }

    fn torrent_path(&self, hash: InfoHash) -> PathBuf {
        self.inner.data_dir.join("torrents").join(format!("{hash}.torrent"))
    }

    /// fetch → open (manifest and files) → waiting for its turn; then [`Node::drain`].
    async fn intake(&self, hash: InfoHash, source: Source) {
        let torrent = match source {
            Source::Torrent(t) => t,
            Source::Magnet(m) => {
                let limit = self.inner.limits.resolve_timeout;
                let torrent = match self.resolve_renewing(hash, &m, limit).await {
                    Ok(Ok(t)) => t,
                    Ok(Err(reason)) => return self.reject(hash, reason).await,
                    Err(_) => {
                        let reason = format!(
                            "magnet link not resolved within {}: no peer sent its metadata",
                            humantime::format_duration(limit)
                        );
                        return self.reject(hash, reason).await;
                    }
                };
                if let Err(e) = check_shape(&torrent) {
                    return self.reject(hash, one_line(&e)).await;
                }
                torrent
            }
        };
        let stored = self.torrent_path(hash);
        if !stored.exists()
            && let Err(e) = std::fs::write(&stored, torrent.as_bytes())
        {
            warn!(file = %stored.display(), "cannot store the torrent, so it will not resume after a restart: {e}");
        }
        let out = self.inner.data_dir.join("bundles").join(hash.to_string());
        let mut renewed = self.inner.peers_renewed.subscribe();
        let mut peers = self.entry_peers(hash);
        let transfer = loop {
            let transfer = match self.inner.swarm.fetch(&torrent, &out, &peers).await {
                Ok(t) => Arc::new(t),
                Err(e) => return self.reject(hash, one_line(&e)).await,
            };
            self.update(hash, |e| {
                e.name = Some(torrent.name().to_owned());
                e.state = BundleState::Fetching;
                e.transfer = Some(transfer.clone());
            });
            info!(info_hash = %hash, name = torrent.name(), "fetching bundle");
            match self.fetched(hash, &transfer, &peers, &mut renewed).await {
                Fetched::Complete => break transfer,
                Fetched::Failed(reason) => return self.reject(hash, reason).await,
                Fetched::Renewed => {}
            }
            // Other peers: the transfer is added again with them (the pieces it has stay).
            peers = self.entry_peers(hash);
            self.update(hash, |e| e.transfer = None);
            self.inner.swarm.remove(&transfer).await;
        };
        let path = transfer.path().to_path_buf();
        let node = self.clone();
        let opened = tokio::task::spawn_blocking(move || node.open_for(&path)).await;
        let bundle = match opened {
            Ok(Ok(b)) => b,
            Ok(Err(e)) => return self.reject(hash, one_line(&e)).await,
            Err(e) => return self.reject(hash, format!("bundle check failed: {e}")).await,
        };
        let seq = bundle.manifest.seq;
        info!(info_hash = %hash, seq, "bundle opened");
        {
            let mut b = lock(&self.inner.bundles);
            if let Some(e) = b.entries.get_mut(&hash) {
                e.seq = Some(seq);
                e.state = BundleState::Waiting;
                e.reason = Some(format!("waiting for the bundles before seq {seq}"));
            }
            b.pending.entry(seq).or_default().push((hash, bundle));
        }
        let node = self.clone();
        let _ = tokio::task::spawn_blocking(move || node.drain()).await;
    }

    async fn resolve(
        &self,
        magnet: &MagnetLink,
        peers: &[SocketAddr],
    ) -> Result<TorrentFile, String> {
        info!(info_hash = %magnet.info_hash, "resolving magnet link");
        self.inner.swarm.resolve(magnet, peers).await.map(|(t, _)| t).map_err(|e| one_line(&e))
    }

    /// The apply path for one opened bundle (blocking: run it on a blocking thread).
    fn apply_one(&self, bundle: OpenedBundle) -> Result<crate::Applied, crate::PipelineError> {
        self.apply_known(bundle, &swarmvm_bundle::KnownContracts::new())
    }

    /// [`Node::apply_one`] with contracts whose signatures were verified already.
    fn apply_known(
        &self,
        bundle: OpenedBundle,
        known: &swarmvm_bundle::KnownContracts,
    ) -> Result<crate::Applied, crate::PipelineError> {
        let mut slot = lock(&self.inner.writer);
        let Some(ledger) = slot.as_mut() else {
            return Err(ReadError::Corrupt("the node stopped".into()).into());
        };
        info!(seq = bundle.manifest.seq, bundle = %bundle.id(), "applying bundle");
        let started = std::time::Instant::now();
        let applied =
            crate::pipeline::apply_opened_with(ledger, bundle, &self.inner.network, known)?;
        self.inner.metrics.applied(started.elapsed());
        if let Ok(snapshot) = ledger.snapshot() {
            *lock(&self.inner.last_status) = Some(Summary::of(&snapshot));
        }
        info!(
            seq = applied.seq,
            bundle = %applied.id,
            applied = applied.report.entry.applied,
            rejected = applied.report.entry.rejected,
            state_root = %applied.report.state_root,
            "bundle applied"
        );
        Ok(applied)
    }

    /// Applies every pending bundle whose turn it is, in order. Runs on a blocking thread.
    /// A bundle for a seq already applied is the same bundle (by identity) or a fork, which
    /// is recorded as evidence.
    fn drain(&self) {
        loop {
            if self.diverged().is_some() {
                return;
            }
            let next = match self.snapshot() {
                Some(s) => s.last_bundle().map_or(1, |b| b.seq + 1),
                None => return,
            };
            let ready: Vec<(InfoHash, OpenedBundle)> = {
                let mut b = lock(&self.inner.bundles);
                let seqs: Vec<u64> = b.pending.range(..=next).map(|(s, _)| *s).collect();
                seqs.into_iter().filter_map(|s| b.pending.remove(&s)).flatten().collect()
            };
            if ready.is_empty() {
                break;
            }
            let mut progressed = false;
            let mut ready = ready.into_iter();
            while let Some((hash, bundle)) = ready.next() {
                let seq = bundle.manifest.seq;
                self.update(hash, |e| {
                    e.state = BundleState::Applying;
                    e.reason = None;
                });
                // On a sequencer, a bundle from elsewhere (a genesis made with `bundle
                // create`) applies between cuts, never during one: a cut always extends the
                // chain it read, so it is never refused as a fork of its own node.
                let turn = self.inner.sequencer.as_ref().map(|s| s.cutting.blocking_lock());
                let result = self.apply_one(bundle);
                drop(turn);
                match result {
                    Ok(applied) => {
                        self.update(hash, |e| {
                            e.state = BundleState::Applied;
                            e.reason = None;
                            e.failures = 0;
                        });
                        let magnet = lock(&self.inner.bundles).entries.get(&hash).and_then(|e| {
                            e.transfer.as_ref().map(|t| t.torrent().magnet().to_string())
                        });
                        self.after_applied(
                            applied.seq,
                            applied.id,
                            applied.report.state_root,
                            magnet,
                        );
                        // Waiters see the bundle's entry, the ledger and the head updated.
                        self.inner.applied.send_replace(applied.seq);
                        progressed = true;
                        if self.diverged().is_some() {
                            let mut b = lock(&self.inner.bundles);
                            for (h, other) in ready {
                                b.pending.entry(other.manifest.seq).or_default().push((h, other));
                            }
                            return;
                        }
                    }
                    Err(e) if e.is_already_applied() => self.update(hash, |e| {
                        e.state = BundleState::Applied;
                        e.reason = None;
                    }),
                    Err(e) if e.is_fatal() => {
                        // The others keep their turn.
                        let mut b = lock(&self.inner.bundles);
                        for (h, other) in ready {
                            b.pending.entry(other.manifest.seq).or_default().push((h, other));
                        }
                        drop(b);
                        self.storage_failed(hash, &one_line(&e));
                        return;
                    }
                    Err(e) => {
                        if matches!(
                            e,
                            crate::PipelineError::Refused(swarmvm_bundle::BatchError::Fork { .. })
                        ) {
                            warn!(info_hash = %hash, seq, "fork evidence: {}", one_line(&e));
                        }
                        self.reject_blocking(hash, one_line(&e));
                    }
                }
            }
            if !progressed {
                break;
            }
        }
    }

    /// The ledger failed to store a bundle (a full or failing disk). Nothing of the bundle
    /// was committed, and it is not the bundle's fault: it waits, the ledger is closed (its
    /// handle refuses every later operation) and the status shows the last commit, and after
    /// a back-off (1 s, doubling to a minute) the ledger is opened again and the bundle
    /// applied again from its folder. Runs on the apply path's blocking thread.
    fn storage_failed(&self, hash: InfoHash, error: &str) {
        let mut failures = 0;
        self.update(hash, |e| {
            e.failures += 1;
            failures = e.failures;
        });
        let delay = Duration::from_secs(1 << failures.saturating_sub(1).min(6)).min(RETRY_MAX);
        warn!(info_hash = %hash, failures, "storage failure applying bundle, trying again in {}: {error}", humantime::format_duration(delay));
        self.update(hash, |e| {
            e.state = BundleState::Waiting;
            e.reason = Some(format!(
                "storage failure: {error}; trying again in {}",
                humantime::format_duration(delay)
            ));
        });
        {
            let mut writer = lock(&self.inner.writer);
            writer.take();
            self.inner.reader.write().unwrap_or_else(std::sync::PoisonError::into_inner).take();
        }
        let node = self.clone();
        if tokio::runtime::Handle::try_current().is_err() {
            return;
        }
        self.spawn(async move {
            let mut stop = node.stopping();
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            let again = node.clone();
            let _ = tokio::task::spawn_blocking(move || again.retry(hash)).await;
        });
    }

    /// Opens the ledger again if it is closed, then the bundle `hash` from its folder, and
    /// applies what is ready.
    fn retry(&self, hash: InfoHash) {
        if *self.inner.stop.borrow() {
            return;
        }
        {
            let mut writer = lock(&self.inner.writer);
            if writer.is_none() {
                match Ledger::open(&self.inner.data_dir.join("ledger.redb")) {
                    Ok(ledger) => {
                        *self
                            .inner
                            .reader
                            .write()
                            .unwrap_or_else(std::sync::PoisonError::into_inner) =
                            Some(ledger.reader());
                        *writer = Some(ledger);
                    }
                    Err(e) => {
                        drop(writer);
                        return self.storage_failed(hash, &one_line(&e));
                    }
                }
            }
        }
        let path = {
            let b = lock(&self.inner.bundles);
            b.entries.get(&hash).and_then(|e| e.transfer.as_ref().map(|t| t.path().to_path_buf()))
        };
        let Some(path) = path else { return };
        match self.open_for(&path) {
            Ok(bundle) => {
                let seq = bundle.manifest.seq;
                lock(&self.inner.bundles).pending.entry(seq).or_default().push((hash, bundle));
                self.drain();
            }
            Err(e) => self.reject_blocking(hash, one_line(&e)),
        }
    }

    fn reject_blocking(&self, hash: InfoHash, reason: String) {
        let node = self.clone();
        if tokio::runtime::Handle::try_current().is_ok() {
            self.spawn(async move { node.reject(hash, reason).await });
        }
    }

    /// Waits until the bundle `seq` has applied, at most `limit`. True if it did.
    pub async fn wait_applied(&self, seq: u64, limit: Duration) -> bool {
        let mut rx = self.inner.applied.subscribe();
        tokio::time::timeout(limit, rx.wait_for(|s| *s >= seq)).await.is_ok_and(|r| r.is_ok())
    }

    /// Opens a fetched bundle folder against the set in force before it: the set in force now
    /// for the next bundle (and, as the best guess, for later ones); for a bundle at or below
    /// the last applied seq (another torrent of an applied bundle, or a fork), the set the
    /// chain had then, found in the applied manifests, when the set in force now refuses its
    /// signers (a rotation removed them since).
    fn open_for(&self, path: &Path) -> Result<OpenedBundle, swarmvm_bundle::BundleError> {
        use swarmvm_bundle::BundleError;
        use swarmvm_token::VerifyError;
        let (network, set) = self.in_force();
        let refused = match open_bundle(path, network.id(), &set) {
            Err(BundleError::Manifest(
                e @ (VerifyError::NotAMember(_)
                | VerifyError::UnknownKid(_)
                | VerifyError::ThresholdNotMet { .. }),
            )) => e,
            other => return other,
        };
        let seq = std::fs::read(path.join(swarmvm_token::MANIFEST_FILE))
            .ok()
            .and_then(|raw| {
                swarmvm_bundle::manifest_token(&raw)
                    .ok()
                    .and_then(|t| swarmvm_token::peek_manifest(t).ok())
            })
            .map(|p| p.seq);
        let last = self.snapshot().and_then(|s| s.last_bundle()).map_or(0, |b| b.seq);
        match seq.filter(|s| *s <= last).and_then(|s| self.set_before(s)) {
            Some(before) if before.canonical() != set.canonical() => {
                open_bundle(path, network.id(), &before)
            }
            _ => Err(BundleError::Manifest(refused)),
        }
    }

    /// The authority set in force before the applied bundle `seq`: the rotation of the last
    /// applied manifest before it that carries one, else the network's first set.
    fn set_before(&self, seq: u64) -> Option<AuthoritySet> {
        let snapshot = self.snapshot()?;
        for s in (1..seq).rev() {
            let record = snapshot.bundle(s).ok()??;
            let peek = swarmvm_token::peek_manifest(&record.manifest).ok()?;
            if let Some(set) = peek.authority_set {
                return Some(set);
            }
        }
        Some(self.inner.network.genesis().clone())
    }

    /// The network, and the authority set in force after the last commit (the network's
    /// first set when the ledger cannot be read: verification repeats the check anyway).
    pub(crate) fn in_force(&self) -> (Network, AuthoritySet) {
        let network = self.inner.network.clone();
        let set = self
            .snapshot()
            .and_then(|s| swarmvm_bundle::set_in_force(&s, &network).ok())
            .unwrap_or_else(|| network.genesis().clone());
        (network, set)
    }

    /// The network this node follows.
    pub fn network(&self) -> &Network {
        &self.inner.network
    }

    /// The authority set in force: the state's, or the network's first set.
    pub fn authorities(&self) -> AuthoritySet {
        self.in_force().1
    }

    /// The ledger as its last commit left it (`None` once the node stopped). Never waits for
    /// a bundle being applied.
    pub fn snapshot(&self) -> Option<Snapshot> {
        let reader = self.inner.reader.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        reader.as_ref()?.snapshot().ok()
    }

    fn summary(&self) -> Summary {
        match self.snapshot() {
            Some(s) => Summary::of(&s),
            None => lock(&self.inner.last_status).clone().unwrap_or_default(),
        }
    }

    /// The node's status. After [`Node::shutdown`] it is the status at that moment.
    pub fn status(&self) -> Status {
        // The bundles first, then the ledger: a bundle shown applying whose seq the ledger
        // already holds was committed in between, and is shown applied, so the two agree.
        // Only the newest are listed, so that the status (and each status event) stays
        // bounded however long the chain; the transfers are summed over all.
        let mut torrents = self.bundles();
        let mut transfer = TransferTotals::default();
        for t in &torrents {
            transfer.add(t);
        }
        let torrents_known = torrents.len();
        let mut torrents = torrents.split_off(torrents_known.saturating_sub(STATUS_BUNDLES));
        let Summary { network, last_seq, state_root, batches } = self.summary();
        for t in &mut torrents {
            if t.shown(last_seq) != t.state {
                t.state = t.shown(last_seq);
                t.reason = None;
            }
        }
        Status {
            peer_id: self.inner.swarm.peer_id(),
            started_at: self.inner.started_at,
            wallet: self.inner.wallet.clone(),
            listen: self.listen_addr().map(|a| a.to_string()),
            network,
            authorities: crate::status::AuthoritySummary::of(&self.authorities()),
            last_seq,
            state_root,
            batches,
            torrents,
            torrents_known,
            transfer,
            evidence: self
                .evidence()
                .unwrap_or_default()
                .iter()
                .map(|e| EvidenceSummary { seq: e.seq, kept: e.kept, other: e.other })
                .collect(),
            head: self.head().map(|(_, h)| crate::status::HeadSummary::of(&h)),
            stale: self.is_stale(),
            diverged: self.diverged().is_some(),
            diverged_reason: self.diverged(),
            head_refused: lock(&self.inner.heads).refused.clone(),
            sequencer: self
                .inner
                .sequencer
                .as_ref()
                .map(|s| crate::status::SequencerSummary { queued: s.queued() }),
            following: self.inner.follow.clone(),
        }
    }

    /// Fork evidence: pairs of validly signed bundles for one seq (empty once stopped).
    pub fn evidence(&self) -> Result<Vec<Evidence>, ReadError> {
        self.snapshot().map_or(Ok(Vec::new()), |s| s.evidence())
    }

    /// Every bundle the node knows, oldest first.
    pub fn bundles(&self) -> Vec<BundleStatus> {
        let b = lock(&self.inner.bundles);
        b.listed().map(|(hash, e)| bundle_status(hash, e)).collect()
    }

    /// The bundles the node knows from position `from` on (1 is the oldest; 0 is taken as
    /// 1), at most `limit`, oldest first: `GET /v1/bundles?from=N&limit=N`.
    pub fn bundles_page(&self, from: u64, limit: usize) -> BundlePage {
        let b = lock(&self.inner.bundles);
        let known = b.listed().count();
        let from = from.max(1);
        let skip = usize::try_from(from - 1).unwrap_or(usize::MAX);
        let bundles: Vec<BundleStatus> =
            b.listed().skip(skip).take(limit).map(|(hash, e)| bundle_status(hash, e)).collect();
        let end = from.saturating_add(bundles.len() as u64);
        let next = (!bundles.is_empty() && end <= known as u64).then_some(end);
        BundlePage { bundles, known, from, next }
    }

    /// The whole state as one JSON value, with the network, root and position (`null` once
    /// the node stopped). Built in memory: for large states, stream
    /// [`Snapshot::write_json`] instead.
    pub fn state(&self) -> Value {
        let Some(snapshot) = self.snapshot() else { return Value::Null };
        let mut bytes = Vec::new();
        match snapshot.write_json(&mut bytes) {
            Ok(()) => serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            Err(_) => Value::Null,
        }
    }

    /// The state root (as it was when the node stopped, after [`Node::shutdown`]).
    pub fn state_root(&self) -> Hash32 {
        match self.snapshot() {
            Some(s) => s.state_root(),
            None => self.summary().state_root.parse().unwrap_or_default(),
        }
    }

    /// Every entry of `table` as `{id: value}` (the registrations, which stay small).
    fn table_json(&self, table: Table) -> Value {
        let Some(snapshot) = self.snapshot() else { return Value::Null };
        let mut out = Map::new();
        let _ = snapshot.scan(table, None, &mut |id, record| {
            let value = match &record {
                Record::Operation { handler } => json!(handler.as_str()),
                _ => swarmvm_vm::view::value_json(&snapshot, id, &record).unwrap_or(Value::Null),
            };
            out.insert(id.to_owned(), value);
            true
        });
        Value::Object(out)
    }

    /// Registered operations: action → handler.
    pub fn operations(&self) -> Value {
        self.table_json(Table::Operation)
    }

    /// One registered wallet: `{"id", "label", "jwk", "nonce", "revoked"}` (its last used
    /// nonce; the next contract's is one more), `None` when it is not registered.
    pub fn wallet(&self, id: &str) -> Option<Value> {
        let snapshot = self.snapshot()?;
        let record = snapshot.record(Table::Wallet, id).ok()??;
        let value = swarmvm_vm::view::value_json(&snapshot, id, &record).ok()?;
        let nonce = swarmvm_vm::nonce_of(&snapshot, id).ok()?;
        let revoked =
            snapshot.record(Table::Revocation, &swarmvm_vm::revoked_id(id)).ok()?.is_some();
        Some(json!({
            "id": id,
            "label": value["label"],
            "jwk": value["jwk"],
            "nonce": nonce,
            "revoked": revoked,
        }))
    }

    /// The applied bundle `seq`: `{"seq", "bundle", "parent", "manifest", "magnet"}`, the
    /// magnet of a torrent of it this node seeds (`null` when it applied it offline). `None`
    /// when it has not applied that bundle.
    pub fn bundle_at(&self, seq: u64) -> Option<Value> {
        let record = self.snapshot()?.bundle(seq).ok()??;
        let magnet = self.magnet_of(seq);
        Some(json!({
            "seq": seq,
            "bundle": record.id,
            "parent": record.parent,
            "manifest": record.manifest,
            "magnet": magnet,
        }))
    }

    /// What became of contract `id` (the SHA-256 of its token): `{"id", "state": "pending" |
    /// "applied" | "rejected", "seq" (the bundle's, for a bundle), "receipt", "reason" (when
    /// rejected)}`; pending while it waits in the sequencer's queue (on the sequencer) or after
    /// this node forwarded it there; `None` when unknown here.
    pub fn contract(&self, id: &Hash32) -> Result<Option<Value>, ReadError> {
        let Some(snapshot) = self.snapshot() else { return Ok(None) };
        let Some((receipt, entry)) = snapshot.contract(id)? else {
            if let Some(reason) = self.inner.sequencer.as_ref().and_then(|s| s.dropped(id)) {
                return Ok(Some(
                    json!({ "id": id.to_hex(), "state": "rejected", "reason": reason }),
                ));
            }
            let queued = self.inner.sequencer.as_ref().is_some_and(|s| s.is_queued(id));
            let pending = queued || lock(&self.inner.forwarded).contains(id);
            return Ok(pending.then(|| json!({ "id": id.to_hex(), "state": "pending" })));
        };
        let mut out = json!({
            "id": id.to_hex(),
            "state": receipt.status,
            "receipt": receipt,
        });
        if let Some(seq) = entry.seq {
            out["seq"] = json!(seq);
        }
        if let Some(reason) = &receipt.reason {
            out["reason"] = json!(reason);
        }
        Ok(Some(out))
    }

    /// Registered wallets with their labels and keys.
    pub fn wallets(&self) -> Value {
        self.table_json(Table::Wallet)
    }

    /// Receipts from log position `from`, at most `limit`.
    pub fn receipts(&self, from: u64, limit: usize) -> Result<Vec<Receipt>, ReadError> {
        self.snapshot().map_or(Ok(Vec::new()), |s| s.receipts(from, limit))
    }

    /// The ledger's log from position `from`, at most `limit`.
    pub fn log(&self, from: u64, limit: usize) -> Result<Vec<LogEntry>, ReadError> {
        self.snapshot().map_or(Ok(Vec::new()), |s| s.log(from, limit))
    }

    /// Stops: the HTTP API, the watcher, every transfer and the session; waits (at most
    /// five seconds a task) for the node's tasks to end, and closes the ledger file, so the
    /// data folder can be opened again as soon as this returns.
    pub async fn shutdown(&self) {
        self.inner.stop.send_replace(true);
        loop {
            let tasks: Vec<_> = std::mem::take(&mut *lock(&self.inner.tasks));
            if tasks.is_empty() {
                break;
            }
            for t in tasks {
                let abort = t.abort_handle();
                if tokio::time::timeout(Duration::from_secs(5), t).await.is_err() {
                    // A task that does not end by itself (a long request) is stopped.
                    abort.abort();
                }
            }
        }
        self.inner.swarm.stop().await;
        if let Some(sequencer) = &self.inner.sequencer {
            sequencer.close();
        }
        if let Some(s) = self.snapshot() {
            *lock(&self.inner.last_status) = Some(Summary::of(&s));
        }
        let node = self.clone();
        // Waits for an apply in progress (it holds the writer), then closes the file.
        let _ = tokio::task::spawn_blocking(move || {
            let writer = lock(&node.inner.writer).take();
            drop(writer);
            node.inner.reader.write().unwrap_or_else(std::sync::PoisonError::into_inner).take();
        })
        .await;
    }
}
