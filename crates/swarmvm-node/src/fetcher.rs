//! The fetcher: bundles from torrents and magnet links, from strangers (the API, the drop
//! folder) and the node's own (`--bundle`, a followed head's, a sequencer's cuts). It bounds
//! what strangers can make the node hold, resolves magnets, fetches over BitTorrent, refuses
//! a transfer that stalls, asks other peers when a followed node moved, opens each fetched
//! folder against the chain ([`Applier::open_bundle`]), hands it to the [`Applier`] in seq order (an
//! early bundle waits), resumes after a restart and keeps seeding every bundle it applied.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use swarmvm_bundle::{KnownContracts, OpenedBundle, check_torrent_shape};
use swarmvm_swarm::{InfoHash, MagnetLink, Source, Swarm, TorrentFile, Transfer};
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::applier::Applier;
use crate::error::{NodeError, one_line};
use crate::heads::HeadStore;
use crate::pipeline::{Applied, PipelineError};
use crate::protocol::{BundlePage, BundleState, BundleStatus};
use crate::tasks::Tasks;

/// Bounds on what strangers can make the fetcher hold or wait for.
#[derive(Debug, Clone)]
pub(crate) struct FetchLimits {
    /// Bundles being resolved, fetched or waiting for their turn, at most, for strangers'
    /// bundles and as many again for the node's own.
    pub(crate) max_pending: usize,
    /// Refused bundles remembered for the status, newest first.
    pub(crate) max_rejected: usize,
    /// How long a magnet link may take to resolve before it is refused.
    pub(crate) resolve_timeout: Duration,
    /// How long a fetch may go without a new verified byte before it is refused.
    pub(crate) stall_timeout: Duration,
}

/// Why a bundle folder of the node's own was not published.
#[derive(Debug)]
pub(crate) enum CutError {
    /// A rule refused it: nothing of it is kept.
    Refused(String),
    /// The node failed (storage, a task): it may go through later.
    Failed(String),
}

impl std::fmt::Display for CutError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Refused(why) | Self::Failed(why) => f.write_str(why),
        }
    }
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

/// How a transfer being waited for ended ([`Fetcher::fetched`]).
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
    /// Refused bundles whose manifest could be read, unverified: torrent → (seq, the parent's
    /// torrent it names). A pointer only (see [`Fetcher::parent_torrent`]); at most
    /// [`MAX_PEEKED`].
    peeked: BTreeMap<InfoHash, (u64, InfoHash)>,
}

/// Refused bundles whose parent pointer is remembered, at most.
const MAX_PEEKED: usize = 1024;

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
pub(crate) async fn stall(transfer: &Transfer, limit: Duration) -> String {
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

/// What a fetcher is made of.
pub(crate) struct FetcherParts {
    /// The node's data folder.
    pub(crate) data_dir: PathBuf,
    /// Its bounds.
    pub(crate) limits: FetchLimits,
    /// The BitTorrent session.
    pub(crate) swarm: Swarm,
    /// Where opened bundles are applied.
    pub(crate) applier: Applier,
    /// What is told of each bundle applied.
    pub(crate) heads: HeadStore,
    /// The node's tasks.
    pub(crate) tasks: Tasks,
}

struct Inner {
    parts: FetcherParts,
    bundles: Mutex<Bundles>,
    /// Changes whenever [`Fetcher::renew_peers`] gave a bundle being resolved or fetched other
    /// peers: its intake asks them from then on.
    peers_renewed: watch::Sender<u64>,
}

impl std::ops::Deref for Inner {
    type Target = FetcherParts;

    fn deref(&self) -> &FetcherParts {
        &self.parts
    }
}

/// The handle to the fetcher. Cloning gives another handle to the same one.
#[derive(Clone)]
pub(crate) struct Fetcher {
    inner: Arc<Inner>,
}

impl Fetcher {
    pub(crate) fn new(parts: FetcherParts) -> Self {
        Self {
            inner: Arc::new(Inner {
                parts,
                bundles: Mutex::new(Bundles::default()),
                peers_renewed: watch::channel(0).0,
            }),
        }
    }

    /// The node's bounds on resolving and fetching.
    pub(crate) fn limits(&self) -> &FetchLimits {
        &self.inner.limits
    }

    /// The BitTorrent session.
    pub(crate) fn swarm(&self) -> &Swarm {
        &self.inner.swarm
    }

    /// The node's tasks.
    pub(crate) fn tasks(&self) -> &Tasks {
        &self.inner.tasks
    }

    /// The data folder.
    pub(crate) fn data_dir(&self) -> &Path {
        &self.inner.data_dir
    }

    /// Resumes every bundle this node knew (its stored torrents), whatever the bound on
    /// pending bundles: they passed every check when they came.
    pub(crate) fn resume(&self) -> Result<(), NodeError> {
        let dir = self.inner.data_dir.join("torrents");
        let stored = std::fs::read_dir(&dir)
            .map_err(|source| NodeError::DataDir { path: dir.clone(), source })?;
        for entry in stored.flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "torrent") {
                match TorrentFile::read(&path) {
                    Ok(t) => {
                        if let Err(e) =
                            self.admit(Source::Torrent(t), Admission::Resumed, Vec::new())
                        {
                            warn!(file = %path.display(), "ignoring a stored torrent: {}", one_line(&e));
                        }
                    }
                    Err(e) => warn!(file = %path.display(), "ignoring a stored torrent: {e}"),
                }
            }
        }
        Ok(())
    }

    /// Adds a bundle to fetch, verify and apply. Returns its info-hash at once; the work goes
    /// on in the background. Adding a bundle the node knows already changes nothing, unless
    /// it was refused: then it is tried again. A torrent that cannot be a bundle is refused
    /// at once, before anything is fetched or reserved for it, and so is any bundle beyond
    /// the bound on pending ones ([`NodeError::Busy`]). This is how bundles from anyone come
    /// (the API, the drop folder); the node's own take [`Fetcher::add_own`].
    pub(crate) fn add(&self, source: Source) -> Result<InfoHash, NodeError> {
        self.admit(source, Admission::Stranger, Vec::new())
    }

    /// [`Fetcher::add`], asking `peers` for it besides the session's own.
    pub(crate) fn add_with_peers(
        &self,
        source: Source,
        peers: Vec<SocketAddr>,
    ) -> Result<InfoHash, NodeError> {
        self.admit(source, Admission::Stranger, peers)
    }

    /// Adds one of the node's own bundles (given with `--bundle`, or a followed head's), asking
    /// `peers` for it besides the session's own: as [`Fetcher::add`], but in pending slots of its
    /// own (`max_pending` more), which bundles strangers post never take.
    pub(crate) fn add_own(
        &self,
        source: Source,
        peers: Vec<SocketAddr>,
    ) -> Result<InfoHash, NodeError> {
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
            let mut b = self.inner.bundles.lock();
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
        self.inner.tasks.spawn(async move {
            let mut stop = node.inner.tasks.stopping();
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
    pub(crate) async fn publish(&self, dir: &Path) -> Result<TorrentFile, NodeError> {
        let torrent = TorrentFile::create(dir, &[], None)?;
        let folder = dir.to_path_buf();
        let (network, set) = self.inner.applier.in_force();
        let opened = tokio::task::spawn_blocking(move || {
            swarmvm_bundle::open_bundle(&folder, network.id(), &set)
        })
        .await
        .map_err(NodeError::task)??;
        let seq = opened.manifest.seq;
        let applied = {
            let _turn = self.inner.applier.turn().lock().await;
            self.inner.applier.apply(opened, KnownContracts::new()).await
        };
        let applied = match applied {
            Err(e) if !e.is_already_applied() => return Err(e.into()),
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
    ) -> Result<u64, CutError> {
        let failed = |e: &dyn std::fmt::Display| CutError::Failed(e.to_string());
        let torrent = {
            let (dir, trackers) = (dir.to_path_buf(), self.inner.swarm.trackers().to_vec());
            tokio::task::spawn_blocking(move || TorrentFile::create(&dir, &trackers, None))
                .await
                .map_err(|e| failed(&e))?
                .map_err(|e| CutError::Refused(one_line(&e)))?
        };
        let hash = torrent.info_hash();
        if self.inner.bundles.lock().entries.contains_key(&hash) {
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
        let (network, set) = self.inner.applier.in_force();
        let folder = bundle_dir.clone();
        let opened = tokio::task::spawn_blocking(move || {
            swarmvm_bundle::open_bundle(&folder, network.id(), &set)
        })
        .await
        .map_err(|e| undo(failed(&e)))?
        .map_err(|e| undo(CutError::Refused(one_line(&e))))?;
        let applied = self.inner.applier.apply(opened, known).await.map_err(|e| {
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
        applied: Option<&Applied>,
    ) {
        let hash = torrent.info_hash();
        {
            let mut b = self.inner.bundles.lock();
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
            self.inner.heads.after_applied(a.seq, a.id, a.report.state_root, Some(magnet));
            self.inner.applier.announce(a);
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

    /// Stops seeding the applied bundles up to seq `through` and removes their torrents and
    /// folders (the ledger keeps their records, receipts and log). Returns how many.
    pub(crate) async fn prune(&self, through: u64) -> usize {
        let gone: Vec<(InfoHash, Option<Arc<Transfer>>)> = {
            let mut b = self.inner.bundles.lock();
            let hashes: Vec<InfoHash> = b
                .listed()
                .filter(|(_, e)| {
                    e.state == BundleState::Applied && e.seq.is_some_and(|s| s <= through)
                })
                .map(|(h, _)| *h)
                .collect();
            hashes
                .into_iter()
                .map(|h| {
                    let transfer = b.entries.get(&h).and_then(|e| e.transfer.clone());
                    b.forget(h);
                    (h, transfer)
                })
                .collect()
        };
        for (hash, transfer) in &gone {
            if let Some(t) = transfer {
                self.inner.swarm.remove(t).await;
            }
            let _ = std::fs::remove_file(self.torrent_path(*hash));
            if let Err(e) = remove_tree(&self.data_path(*hash)) {
                warn!(%hash, "cannot remove a pruned bundle's folder: {e}");
            }
        }
        gone.len()
    }

    /// The magnet of a torrent of the applied bundle `seq` this node seeds.
    pub(crate) fn magnet_of(&self, seq: u64) -> Option<String> {
        let b = self.inner.bundles.lock();
        b.order.iter().filter_map(|h| b.entries.get(h)).find_map(|e| {
            let seeding = e.seq == Some(seq) && e.state == BundleState::Applied;
            e.transfer.as_ref().filter(|_| seeding).map(|t| t.torrent().magnet().to_string())
        })
    }

    /// The info-hash of the torrent of bundle `seq − 1` as the bundle fetched for `seq` names
    /// it (`parent_info_hash`), while that bundle waits for its turn: how a follower that
    /// knows only the newest bundle walks back through the swarm.
    /// When `expected` is given, only the bundle of that torrent is read (not a fork or a
    /// stranger's bundle for the same seq), and, if it was refused (signed by keys a rotation
    /// not applied yet adds), the parent its manifest named: a pointer, whose bundle is
    /// verified as any.
    pub(crate) fn parent_torrent(&self, seq: u64, expected: Option<InfoHash>) -> Option<InfoHash> {
        let b = self.inner.bundles.lock();
        let verified = b.pending.get(&seq).and_then(|list| {
            list.iter()
                .filter(|(hash, _)| expected.is_none_or(|e| e == *hash))
                .find_map(|(_, bundle)| bundle.manifest.parent_info_hash.map(InfoHash))
        });
        // Else, for the torrent asked for that seq, what its refused manifest named.
        verified.or_else(|| {
            let (s, parent) = b.peeked.get(&expected?)?;
            (*s == seq).then_some(*parent)
        })
    }

    /// Remembers the seq and parent's torrent that the refused bundle `hash` (in `dir`)
    /// names, read without verifying it: a bundle signed by keys a rotation not applied yet
    /// adds is refused now, and still points a follower of links at the rotation.
    fn peek_parent(&self, hash: InfoHash, dir: &Path) {
        let peek = std::fs::read(dir.join(swarmvm_token::MANIFEST_FILE)).ok().and_then(|raw| {
            swarmvm_bundle::manifest_token(&raw)
                .ok()
                .and_then(|t| swarmvm_token::peek_manifest(t).ok())
        });
        if let Some(p) = peek
            && let Some(parent) = p.parent_info_hash
        {
            let mut b = self.inner.bundles.lock();
            if b.peeked.len() >= MAX_PEEKED {
                b.peeked.clear();
            }
            b.peeked.insert(hash, (p.seq, InfoHash(parent)));
        }
    }

    /// True when a bundle of `seq` waits for its turn (the one of torrent `expected`, when
    /// given).
    pub(crate) fn waits_at(&self, seq: u64, expected: Option<InfoHash>) -> bool {
        let b = self.inner.bundles.lock();
        b.pending
            .get(&seq)
            .is_some_and(|list| list.iter().any(|(h, _)| expected.is_none_or(|e| e == *h)))
    }

    /// The highest seq of the node's own bundles waiting for their turn, if any.
    pub(crate) fn highest_waiting_own(&self) -> Option<u64> {
        let b = self.inner.bundles.lock();
        b.pending.iter().rev().find_map(|(seq, list)| {
            let own = list.iter().any(|(h, _)| b.entries.get(h).is_some_and(|e| e.own));
            own.then_some(*seq)
        })
    }

    /// Sets aside the node's own bundle waiting at `seq`: forgets it, stops its transfer and
    /// removes its files, so its slot can fetch a bundle needed sooner; a follower walking
    /// back through a history longer than its slots fetches it again when its turn nears.
    /// Returns its info-hash, `None` when no own bundle waits at `seq`.
    pub(crate) async fn set_aside(&self, seq: u64) -> Option<InfoHash> {
        let (hash, transfer) = {
            let mut b = self.inner.bundles.lock();
            let list = b.pending.get(&seq)?;
            let hash = list.iter().map(|(h, _)| *h).find(|h| {
                b.entries.get(h).is_some_and(|e| e.own && e.state == BundleState::Waiting)
            })?;
            if let Some(list) = b.pending.get_mut(&seq) {
                list.retain(|(h, _)| *h != hash);
                if list.is_empty() {
                    b.pending.remove(&seq);
                }
            }
            let transfer = b.entries.get(&hash).and_then(|e| e.transfer.clone());
            b.forget(hash);
            (hash, transfer)
        };
        if let Some(t) = transfer {
            self.inner.swarm.remove(&t).await;
        }
        let _ = std::fs::remove_file(self.torrent_path(hash));
        let _ = remove_tree(&self.data_path(hash));
        debug!(info_hash = %hash, seq, "set aside bundle seq {seq} until its turn nears");
        Some(hash)
    }

    /// The state of the bundle `hash`, if the node knows it.
    pub(crate) fn bundle_state(&self, hash: InfoHash) -> Option<BundleState> {
        self.inner.bundles.lock().entries.get(&hash).map(|e| e.state)
    }

    /// The state of the bundle `hash` and the seq its manifest names (known once it was
    /// fetched and opened), if the node knows it.
    pub(crate) fn bundle_progress(&self, hash: InfoHash) -> Option<(BundleState, Option<u64>)> {
        self.inner.bundles.lock().entries.get(&hash).map(|e| (e.state, e.seq))
    }

    /// True when this node announces to the tracker `url` (`--tracker`): one it chose.
    pub(crate) fn own_tracker(&self, url: &str) -> bool {
        self.inner.swarm.trackers().iter().any(|t| t.as_str() == url)
    }

    /// The peers the bundle `hash` is asked from besides the session's own.
    fn entry_peers(&self, hash: InfoHash) -> Vec<SocketAddr> {
        self.inner.bundles.lock().entries.get(&hash).map(|e| e.peers.clone()).unwrap_or_default()
    }

    /// Asks `peers` (besides the session's own) for the bundle `hash` from now on, if it is
    /// still being resolved or fetched and they differ from those it has: its resolve starts
    /// again with them (within the same resolve timeout), or its transfer is added again with
    /// them (keeping the pieces it has). A follower does this when a node it follows moved to
    /// another BitTorrent address (restarted on another port): the transfer's engine would
    /// otherwise go on dialling the old one until the stall timeout.
    pub(crate) fn renew_peers(&self, hash: InfoHash, peers: Vec<SocketAddr>) {
        let renewed = {
            let mut b = self.inner.bundles.lock();
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
    /// they are renewed meanwhile ([`Fetcher::renew_peers`]), asks again with the new ones (the
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
    /// ([`Fetcher::renew_peers`]).
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
    /// entry's peers are renewed ([`Fetcher::renew_peers`]) away from `peers`.
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
        if let Some(e) = self.inner.bundles.lock().entries.get_mut(&hash) {
            f(e);
        }
    }

    /// Refuses a bundle: stops its transfer (closing its files and connections), removes
    /// its data and stored torrent, and remembers why (only the newest refusals are kept).
    async fn reject(&self, hash: InfoHash, reason: String) {
        warn!(info_hash = %hash, "bundle refused: {reason}");
        let transfer = {
            let mut b = self.inner.bundles.lock();
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
        let mut b = self.inner.bundles.lock();
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

    /// fetch → open (manifest and files) → waiting for its turn; then [`Fetcher::drain`].
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
        let opened =
            tokio::task::spawn_blocking(move || node.inner.applier.open_bundle(&path)).await;
        let bundle = match opened {
            Ok(Ok(b)) => b,
            Ok(Err(e)) => {
                self.peek_parent(hash, transfer.path());
                return self.reject(hash, one_line(&e)).await;
            }
            Err(e) => return self.reject(hash, format!("bundle check failed: {e}")).await,
        };
        let seq = bundle.manifest.seq;
        info!(info_hash = %hash, seq, "bundle opened");
        {
            let mut b = self.inner.bundles.lock();
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

    /// Applies every pending bundle whose turn it is, in order. Runs on a blocking thread.
    /// A bundle for a seq already applied is the same bundle (by identity) or a fork, which
    /// is recorded as evidence.
    fn drain(&self) {
        loop {
            if self.inner.heads.diverged().is_some() {
                return;
            }
            let next = match self.inner.applier.snapshot() {
                Some(s) => s.last_bundle().map_or(1, |b| b.seq + 1),
                None => return,
            };
            let ready: Vec<(InfoHash, OpenedBundle)> = {
                let mut b = self.inner.bundles.lock();
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
                let turn = self.inner.applier.turn().blocking_lock();
                let result = self.inner.applier.apply_blocking(bundle, KnownContracts::new());
                drop(turn);
                match result {
                    Ok(applied) => {
                        self.update(hash, |e| {
                            e.state = BundleState::Applied;
                            e.reason = None;
                            e.failures = 0;
                        });
                        let magnet = self.inner.bundles.lock().entries.get(&hash).and_then(|e| {
                            e.transfer.as_ref().map(|t| t.torrent().magnet().to_string())
                        });
                        self.inner.heads.after_applied(
                            applied.seq,
                            applied.id,
                            applied.report.state_root,
                            magnet,
                        );
                        // Waiters see the bundle's entry, the ledger and the head updated.
                        self.inner.applier.announce(&applied);
                        progressed = true;
                        if self.inner.heads.diverged().is_some() {
                            let mut b = self.inner.bundles.lock();
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
                        let mut b = self.inner.bundles.lock();
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
                            PipelineError::Refused(swarmvm_bundle::BatchError::Fork { .. })
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
        self.inner.applier.close_blocking();
        let node = self.clone();
        if tokio::runtime::Handle::try_current().is_err() {
            return;
        }
        self.inner.tasks.spawn(async move {
            let mut stop = node.inner.tasks.stopping();
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
        if self.inner.tasks.stopped() {
            return;
        }
        if let Err(e) = self.inner.applier.reopen_blocking() {
            return self.storage_failed(hash, &one_line(&e));
        }
        let path = {
            let b = self.inner.bundles.lock();
            b.entries.get(&hash).and_then(|e| e.transfer.as_ref().map(|t| t.path().to_path_buf()))
        };
        let Some(path) = path else { return };
        match self.inner.applier.open_bundle(&path) {
            Ok(bundle) => {
                let seq = bundle.manifest.seq;
                self.inner.bundles.lock().pending.entry(seq).or_default().push((hash, bundle));
                self.drain();
            }
            Err(e) => self.reject_blocking(hash, one_line(&e)),
        }
    }

    fn reject_blocking(&self, hash: InfoHash, reason: String) {
        let node = self.clone();
        if tokio::runtime::Handle::try_current().is_ok() {
            self.inner.tasks.spawn(async move { node.reject(hash, reason).await });
        }
    }

    /// Every bundle the node knows, oldest first.
    pub(crate) fn bundles(&self) -> Vec<BundleStatus> {
        let b = self.inner.bundles.lock();
        b.listed().map(|(hash, e)| bundle_status(hash, e)).collect()
    }

    /// The bundles the node knows from position `from` on (1 is the oldest; 0 is taken as
    /// 1), at most `limit`, oldest first: `GET /v1/bundles?from=N&limit=N`.
    pub(crate) fn bundles_page(&self, from: u64, limit: usize) -> BundlePage {
        let b = self.inner.bundles.lock();
        let known = b.listed().count();
        let from = from.max(1);
        let skip = usize::try_from(from - 1).unwrap_or(usize::MAX);
        let bundles: Vec<BundleStatus> =
            b.listed().skip(skip).take(limit).map(|(hash, e)| bundle_status(hash, e)).collect();
        let end = from.saturating_add(bundles.len() as u64);
        let next = (!bundles.is_empty() && end <= known as u64).then_some(end);
        BundlePage { bundles, known, from, next }
    }
}
