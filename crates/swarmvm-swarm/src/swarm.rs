//! A BitTorrent session (librqbit) behind a small API: seed a folder, fetch a torrent or a
//! magnet into a folder, watch progress.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use librqbit::{
    AddTorrent, AddTorrentOptions, AddTorrentResponse, DhtSessionConfig, ListenerMode,
    ListenerOptions, ManagedTorrent, Session, SessionOptions, TorrentStatsState,
    limits::LimitsConfig,
};
use url::Url;

use crate::error::{Result, SwarmError};
use crate::partial;
use crate::storage::{NoFollowStorageFactory, StorageFailure};
use crate::torrent::{InfoHash, MagnetLink, TorrentFile};

/// Where the session listens for peers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listen {
    /// This address (port 0: any free port).
    Addr(SocketAddr),
    /// The first free port of `first..=last` on `ip`, as the design note's client does.
    Range {
        /// The address to bind.
        ip: IpAddr,
        /// First port tried.
        first: u16,
        /// Last port tried.
        last: u16,
    },
}

/// How a [`Swarm`] finds and talks to peers. `Default` is the production profile: listen on
/// the first free port of 6881–6891, DHT on, local service discovery off, no extra trackers.
/// [`SwarmOptions::loopback`] is the test profile.
#[derive(Debug, Clone)]
pub struct SwarmOptions {
    /// Where to listen.
    pub listen: Listen,
    /// Use the mainline DHT (BEP 5) to find peers.
    pub dht: bool,
    /// Use local service discovery (BEP 14) on the LAN.
    pub lsd: bool,
    /// Trackers added to every torrent.
    pub trackers: Vec<Url>,
    /// Peers to connect to for every torrent.
    pub peers: Vec<SocketAddr>,
    /// Upload limit in bytes per second.
    pub upload_limit: Option<NonZeroU32>,
    /// Download limit in bytes per second.
    pub download_limit: Option<NonZeroU32>,
    /// Super-seed what [`Swarm::seed`] seeds (BEP 16, in the vendored librqbit; on by
    /// default): show each peer a few pieces at a time instead of a bitfield, so a first
    /// seeder sends each piece about once and the fetchers trade the rest. Torrents fetched
    /// and then seeded seed normally.
    pub super_seed: bool,
    /// Chunk requests (16 KiB each) kept outstanding per peer, at most; by default
    /// [`REQUEST_WINDOW`]. Each peer's window starts at 16 and follows its rate (what it
    /// sends in half a second; the vendored librqbit, `PATCHED.md` section 8) up to this.
    pub request_window: usize,
}

/// The default [`SwarmOptions::request_window`]: 128 chunks (2 MiB), librqbit's own. A fixed
/// window of 128 made a fetcher with many slow peers hold many half-fetched pieces at once,
/// with little whole to trade (64 MiB to 32 fetchers behind 80 Mbit/s links: 70 s); a fixed
/// 16 cost round trips on loopback. The window now follows each peer's rate up to this.
pub const REQUEST_WINDOW: usize = 128;

impl Default for SwarmOptions {
    fn default() -> Self {
        Self {
            listen: Listen::Range {
                ip: IpAddr::V6(Ipv6Addr::UNSPECIFIED),
                first: 6881,
                last: 6891,
            },
            dht: true,
            lsd: false,
            trackers: Vec::new(),
            peers: Vec::new(),
            upload_limit: None,
            download_limit: None,
            super_seed: true,
            request_window: REQUEST_WINDOW,
        }
    }
}

impl SwarmOptions {
    /// For tests and local demos: 127.0.0.1 on a free port, no DHT, no local discovery, no
    /// UPnP, no trackers but those given.
    pub fn loopback() -> Self {
        Self {
            listen: Listen::Addr(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0)),
            dht: false,
            lsd: false,
            ..Self::default()
        }
    }
}

/// A running BitTorrent session.
pub struct Swarm {
    session: Arc<Session>,
    options: SwarmOptions,
    peer_id: [u8; 20],
    /// Disk space claimed by fetches that are not complete yet.
    claims: crate::space::Claims,
}

impl std::fmt::Debug for Swarm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Swarm").field("listen", &self.listen_addr()).finish_non_exhaustive()
    }
}

/// What to fetch.
#[derive(Debug, Clone)]
pub enum Source {
    /// A torrent file.
    Torrent(TorrentFile),
    /// A magnet link; the metadata comes from peers (BEP 9).
    Magnet(MagnetLink),
}

impl Source {
    /// A `.torrent` path, or a `magnet:` link.
    pub fn parse(arg: &str) -> Result<Self> {
        if arg.starts_with("magnet:") {
            MagnetLink::parse(arg).map(Self::Magnet)
        } else {
            TorrentFile::read(Path::new(arg)).map(Self::Torrent)
        }
    }
}

fn peers_contains(list: &[SocketAddr], peer: &SocketAddr) -> bool {
    list.contains(peer)
}

/// A BEP 20 (Azureus-style) peer id: `-SV0100-` and twelve random bytes.
fn new_peer_id() -> [u8; 20] {
    let mut id = *b"-SV0100-000000000000";
    let _ = aws_lc_rs::rand::fill(&mut id[8..]);
    id
}

async fn start_session(
    options: &SwarmOptions,
    mut listen_addr: SocketAddr,
    work_dir: &Path,
    peer_id: [u8; 20],
) -> Result<Arc<Session>> {
    if listen_addr.port() == 0 {
        // Choose the port here: the engine announces it to trackers, DHT and LSD only when
        // told it, and on a loopback address it is not told by default.
        let probe = std::net::TcpListener::bind(listen_addr)
            .map_err(|e| SwarmError::Session(format!("cannot listen on {listen_addr}: {e}")))?;
        let port = probe.local_addr().map_err(|e| SwarmError::Session(e.to_string()))?.port();
        drop(probe);
        listen_addr.set_port(port);
    }
    let opts = SessionOptions {
        dht: options.dht.then_some(DhtSessionConfig {
            bootstrap_addrs: None,
            port: None,
            persistence: None,
        }),
        disable_trackers: false,
        fastresume: false,
        persistence: None,
        listen: Some(ListenerOptions {
            mode: ListenerMode::TcpOnly,
            listen_addr,
            enable_upnp_port_forwarding: false,
            announce_port: Some(listen_addr.port()),
            ipv4_only: listen_addr.is_ipv4(),
            ..ListenerOptions::default()
        }),
        disable_local_service_discovery: !options.lsd,
        ipv4_only: listen_addr.is_ipv4(),
        ratelimits: LimitsConfig {
            upload_bps: options.upload_limit,
            download_bps: options.download_limit,
        },
        trackers: options.trackers.iter().cloned().collect(),
        client_name_and_version: Some(concat!("swarmvm ", env!("CARGO_PKG_VERSION")).to_owned()),
        peer_id: Some(librqbit::dht::Id20::new(peer_id)),
        connect: Some(librqbit::ConnectionOptions {
            peer_opts: Some(librqbit::PeerConnectionOptions {
                max_request_window: Some(options.request_window.max(1)),
                ..librqbit::PeerConnectionOptions::default()
            }),
            ..librqbit::ConnectionOptions::default()
        }),
        // Bundles are small and live in the page cache: handing a worker's core to another
        // thread for every 16 KiB read or write (upstream's block_in_place) cost about half
        // of all CPU time with 64 fetchers (BENCHMARKS.md, "In network namespaces").
        inline_chunk_io: true,
        ..SessionOptions::default()
    };
    Session::new_with_opts(work_dir.to_path_buf(), opts)
        .await
        .map_err(|e| SwarmError::Session(format!("{e:#}")))
}

impl Swarm {
    /// Starts a session. `work_dir` is where fetched torrents go unless told otherwise.
    pub async fn start(options: SwarmOptions, work_dir: &Path) -> Result<Self> {
        let peer_id = new_peer_id();
        let session = match options.listen {
            Listen::Addr(addr) => start_session(&options, addr, work_dir, peer_id).await?,
            Listen::Range { ip, first, last } => {
                let mut started = None;
                let mut last_error = None;
                for port in first..=last {
                    match start_session(&options, SocketAddr::new(ip, port), work_dir, peer_id)
                        .await
                    {
                        Ok(s) => {
                            started = Some(s);
                            break;
                        }
                        Err(e) => last_error = Some(e),
                    }
                }
                match (started, last_error) {
                    (Some(s), _) => s,
                    (None, e) => {
                        return Err(SwarmError::Session(format!(
                            "no free port in {first}-{last} on {ip}{}",
                            e.map(|e| format!(" ({e})")).unwrap_or_default()
                        )));
                    }
                }
            }
        };
        Ok(Self { session, options, peer_id, claims: crate::space::Claims::default() })
    }

    /// This session's BitTorrent peer id (BEP 20 style, `-SV0100-` then random bytes), hex.
    pub fn peer_id(&self) -> String {
        data_encoding::HEXLOWER.encode(&self.peer_id)
    }

    /// Stops and forgets a transfer; its files stay where they are.
    pub async fn remove(&self, transfer: &Transfer) {
        let id = librqbit::api::TorrentIdOrHash::from(transfer.handle.id());
        let _ = self.session.delete(id, false).await;
    }

    /// The trackers this session announces to (its options').
    pub fn trackers(&self) -> &[Url] {
        &self.options.trackers
    }

    /// The address peers reach this session at.
    pub fn listen_addr(&self) -> Option<SocketAddr> {
        self.session.listen_addr()
    }

    /// Adds `torrent` to the session with its files below `base/prefix` (opened without
    /// following links, see [`NoFollowStorageFactory`]).
    async fn add(
        &self,
        torrent: &TorrentFile,
        base: &Path,
        prefix: &Path,
        peers: &[SocketAddr],
        super_seed: bool,
    ) -> Result<(Arc<ManagedTorrent>, StorageFailure)> {
        let failure = StorageFailure::default();
        let mut initial_peers = self.options.peers.clone();
        initial_peers.extend_from_slice(peers);
        let output = base.join(prefix);
        let opts = AddTorrentOptions {
            overwrite: true,
            output_folder: Some(output.to_string_lossy().into_owned()),
            initial_peers: (!initial_peers.is_empty()).then_some(initial_peers),
            storage_factory: Some(
                NoFollowStorageFactory::new(base, prefix, failure.clone()).boxed_factory(),
            ),
            super_seed,
            ..AddTorrentOptions::default()
        };
        let bytes = torrent.as_bytes().to_vec();
        let response = self
            .session
            .add_torrent(AddTorrent::TorrentFileBytes(bytes.into()), Some(opts))
            .await
            .map_err(|e| engine_error(&e, &output, &failure))?;
        match response {
            AddTorrentResponse::Added(_, handle)
            | AddTorrentResponse::AlreadyManaged(_, handle) => Ok((handle, failure)),
            AddTorrentResponse::ListOnly(_) => {
                Err(SwarmError::Engine("the engine only listed the torrent".into()))
            }
        }
    }

    /// Seeds `torrent` from `dir`, the folder holding its data (for a multi-file torrent,
    /// the torrent's own folder). The data is checked first, without changing it; a folder
    /// that does not hold exactly the torrent's data is refused.
    pub async fn seed(&self, torrent: &TorrentFile, dir: &Path) -> Result<Transfer> {
        // For a multi-file torrent `dir` is its folder; for a single file, the file's folder.
        let root = dir.to_path_buf();
        let check_torrent = torrent.clone();
        let check_root = root.clone();
        tokio::task::spawn_blocking(move || check_torrent.check_data(&check_root))
            .await
            .map_err(|e| SwarmError::Engine(format!("data check failed: {e}")))?
            .map_err(|detail| SwarmError::DataMismatch { dir: dir.to_path_buf(), detail })?;
        let (handle, failure) =
            self.add(torrent, &root, Path::new(""), &[], self.options.super_seed).await?;
        let path =
            if torrent.is_multi_file() { dir.to_path_buf() } else { dir.join(torrent.name()) };
        Ok(Transfer {
            handle,
            failure,
            torrent: torrent.clone(),
            path,
            out: None,
            claim: parking_lot::Mutex::new(None),
        })
    }

    /// Resolves a magnet's metadata from peers (BEP 9); the result is checked like any
    /// `.torrent`. Runs in its own task, so that a malformed metadata crashing the engine's
    /// parser is an error here, not a crash. `extra_peers` are asked besides the session's
    /// own (the node a follower learned the magnet from, say).
    pub async fn resolve(
        &self,
        magnet: &MagnetLink,
        extra_peers: &[SocketAddr],
    ) -> Result<(TorrentFile, Vec<SocketAddr>)> {
        let session = self.session.clone();
        let mut link = magnet.clone();
        link.trackers.extend(self.options.trackers.iter().cloned());
        let mut peers = self.options.peers.clone();
        peers.extend(extra_peers.iter().filter(|p| !peers_contains(&self.options.peers, p)));
        let task = tokio::spawn(async move {
            let opts = AddTorrentOptions {
                list_only: true,
                initial_peers: (!peers.is_empty()).then_some(peers),
                ..AddTorrentOptions::default()
            };
            session.add_torrent(AddTorrent::from_url(link.to_string()), Some(opts)).await
        });
        // If the caller gives up (a timeout), the search for peers and metadata stops too.
        let task = AbortOnDrop(task);
        let response = match task.await {
            Ok(r) => {
                r.map_err(|e| SwarmError::Engine(format!("cannot resolve the magnet link: {e:#}")))?
            }
            Err(e) if e.is_panic() => {
                return Err(SwarmError::BadTorrent(
                    "the metadata peers sent crashed the parser".into(),
                ));
            }
            Err(e) => return Err(SwarmError::Engine(e.to_string())),
        };
        let AddTorrentResponse::ListOnly(list) = response else {
            return Err(SwarmError::Engine("the engine did not return the metadata".into()));
        };
        let torrent = TorrentFile::from_bytes(&list.torrent_bytes)?;
        if torrent.info_hash() != magnet.info_hash {
            return Err(SwarmError::BadTorrent(
                "metadata does not match the magnet's info-hash".into(),
            ));
        }
        Ok((torrent, list.seen_peers))
    }

    /// Fetches `torrent` into `out/NAME`. An earlier interrupted fetch of the same torrent
    /// resumes (verified pieces are not fetched again); a folder already holding the complete
    /// data is accepted as it is; one holding other data is refused, unchanged, and so is a
    /// symbolic link at `out/NAME`. What the fetch still needs of the disk is claimed at once,
    /// so fetches running together cannot each count the same free space.
    pub async fn fetch(
        &self,
        torrent: &TorrentFile,
        out: &Path,
        peers: &[SocketAddr],
    ) -> Result<Transfer> {
        let path = torrent.path_in(out);
        let existing = std::fs::symlink_metadata(&path).ok();
        if existing.as_ref().is_some_and(|m| m.file_type().is_symlink()) {
            return Err(SwarmError::DifferentData {
                path,
                detail: "it is a symbolic link; fetched files are never written through one".into(),
            });
        }
        if existing.is_some() && !partial::is_ours(out, torrent) {
            let check_torrent = torrent.clone();
            let root = torrent.storage_root(out);
            let checked = tokio::task::spawn_blocking(move || check_torrent.check_data(&root))
                .await
                .map_err(|e| SwarmError::Engine(format!("data check failed: {e}")))?;
            if let Err(detail) = checked {
                return Err(SwarmError::DifferentData { path, detail });
            }
        } else if existing.is_none() {
            std::fs::create_dir_all(out).map_err(|e| SwarmError::io("cannot create", out, e))?;
            partial::mark(out, torrent)?;
        }
        let claim = self.claims.claim(torrent, out)?;
        let prefix =
            if torrent.is_multi_file() { Path::new(torrent.name()) } else { Path::new("") };
        let (handle, failure) = self.add(torrent, out, prefix, peers, false).await?;
        Ok(Transfer {
            handle,
            failure,
            torrent: torrent.clone(),
            path,
            out: Some(out.to_path_buf()),
            claim: parking_lot::Mutex::new(Some(claim)),
        })
    }

    /// Stops the session: pauses every torrent (which closes its files and connections)
    /// and cancels the session's tasks. Unlike librqbit's own `stop`, does not sleep.
    pub async fn stop(&self) {
        let handles: Vec<Arc<ManagedTorrent>> =
            self.session.with_torrents(|all| all.map(|(_, h)| h.clone()).collect());
        for h in handles {
            let _ = self.session.pause(&h).await;
        }
        self.session.cancellation_token().cancel();
    }
}

pub(crate) fn write_error(e: std::io::Error, path: &Path) -> SwarmError {
    if e.kind() == std::io::ErrorKind::StorageFull {
        SwarmError::DiskFull { path: path.to_path_buf(), detail: "no space left".into() }
    } else {
        SwarmError::io("cannot write", path, e)
    }
}

/// An error the engine reported for a transfer: a full disk when its storage's write failed
/// so (the engine passes only the text on), otherwise the text's first line.
fn engine_error(e: &dyn std::fmt::Debug, path: &Path, failure: &StorageFailure) -> SwarmError {
    if failure.kind() == Some(std::io::ErrorKind::StorageFull) {
        return SwarmError::DiskFull { path: path.to_path_buf(), detail: "no space left".into() };
    }
    let text = format!("{e:?}");
    let line = swarmvm_primitives::text::escape(text.lines().next().unwrap_or_default(), 300);
    SwarmError::Engine(line)
}

/// A task that is aborted when its handle is dropped.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl<T> std::future::Future for AbortOnDrop<T> {
    type Output = Result<T, tokio::task::JoinError>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        std::pin::Pin::new(&mut self.0).poll(cx)
    }
}

/// What a transfer is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransferState {
    /// Checking data already on disk.
    Checking,
    /// Connected to the swarm, downloading or seeding.
    Live,
    /// Paused.
    Paused,
    /// Failed.
    Error,
}

/// A snapshot of a transfer.
#[derive(Debug, Clone, PartialEq)]
pub struct Progress {
    /// What it is doing.
    pub state: TransferState,
    /// Bytes verified and on disk (0 while the data on disk is being checked).
    pub done: u64,
    /// Bytes in the torrent.
    pub total: u64,
    /// Bytes received from peers in this session (a chunk two peers sent counts twice).
    pub fetched: u64,
    /// Bytes of the pieces fetched and verified in this session: `done` at the start plus
    /// this is `done` now, and `fetched` minus this is what was received in vain.
    pub verified: u64,
    /// Bytes sent to peers in this session.
    pub uploaded: u64,
    /// Receive rate, bytes per second.
    pub down_bps: f64,
    /// Send rate, bytes per second.
    pub up_bps: f64,
    /// Peers connected now.
    pub peers: u32,
    /// Peers learned of so far.
    pub peers_seen: u32,
    /// All data is verified.
    pub finished: bool,
    /// The engine's error, if it failed.
    pub error: Option<String>,
}

impl Progress {
    /// Percent done, 0 to 100.
    pub fn percent(&self) -> f64 {
        if self.total == 0 { 100.0 } else { self.done as f64 * 100.0 / self.total as f64 }
    }
}

/// One peer of a transfer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerView {
    /// Its address.
    pub addr: String,
    /// `live`, `connecting`, `queued`, `dead` or `not_needed`.
    pub state: String,
    /// Bytes received from it.
    pub fetched: u64,
    /// Bytes sent to it.
    pub uploaded: u64,
    /// Connection errors it caused (bad data, protocol violations, timeouts).
    pub errors: u32,
    /// Times connected.
    pub connections: u32,
}

/// One torrent being fetched or seeded.
pub struct Transfer {
    handle: Arc<ManagedTorrent>,
    /// How its storage failed, if it did.
    failure: StorageFailure,
    torrent: TorrentFile,
    path: PathBuf,
    /// For a fetch: the folder it fetches into (where its partial marker is).
    out: Option<PathBuf>,
    /// For a fetch: the disk space it claimed, released once the data is complete.
    claim: parking_lot::Mutex<Option<crate::space::Claim>>,
}

impl std::fmt::Debug for Transfer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transfer")
            .field("torrent", &self.torrent)
            .field("path", &self.path)
            .finish()
    }
}

impl Transfer {
    /// The torrent.
    pub fn torrent(&self) -> &TorrentFile {
        &self.torrent
    }

    /// The info-hash.
    pub fn info_hash(&self) -> InfoHash {
        self.torrent.info_hash()
    }

    /// Where the data is: the torrent's folder (or file).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The transfer's state now.
    pub fn progress(&self) -> Progress {
        let stats = self.handle.stats();
        let state = match stats.state {
            TorrentStatsState::Initializing { .. } => TransferState::Checking,
            TorrentStatsState::Live => TransferState::Live,
            TorrentStatsState::Paused => TransferState::Paused,
            TorrentStatsState::Error => TransferState::Error,
        };
        let (fetched, verified, uploaded, down_bps, up_bps, peers, peers_seen) = match &stats.live {
            Some(live) => {
                let p = &live.snapshot.peer_stats;
                (
                    live.snapshot.fetched_bytes,
                    live.snapshot.downloaded_and_checked_bytes,
                    live.snapshot.uploaded_bytes,
                    live.download_speed.mbps * 1_048_576.0,
                    live.upload_speed.mbps * 1_048_576.0,
                    p.live,
                    p.seen,
                )
            }
            None => (0, 0, stats.uploaded_bytes, 0.0, 0.0, 0, 0),
        };
        // While it checks, the engine's progress is how far the check got, not what is
        // verified: nothing is claimed until the check ends.
        let done = if state == TransferState::Checking { 0 } else { stats.progress_bytes };
        Progress {
            state,
            done,
            total: stats.total_bytes,
            fetched,
            verified,
            uploaded,
            down_bps,
            up_bps,
            peers,
            peers_seen,
            finished: stats.finished,
            error: stats.error,
        }
    }

    /// Every peer this transfer has met, with what it sent and its state now (`live`,
    /// `connecting`, `queued`, `dead`, `not_needed`).
    pub fn peers(&self) -> Vec<PeerView> {
        let Some(live) = self.handle.live() else { return Vec::new() };
        let filter = librqbit::PeerStatsFilter { state: librqbit::PeerStatsFilterState::All };
        let mut peers: Vec<PeerView> = live
            .per_peer_stats_snapshot(filter)
            .peers
            .into_iter()
            .map(|(addr, s)| PeerView {
                addr,
                state: s.state.to_owned(),
                fetched: s.counters.fetched_bytes,
                uploaded: s.counters.uploaded_bytes,
                errors: s.counters.errors,
                connections: s.counters.connections,
            })
            .collect();
        peers.sort_by(|a, b| a.addr.cmp(&b.addr));
        peers
    }

    /// Waits until every piece is verified; fails if the engine reports an error. Does not
    /// time out by itself: wrap it in `tokio::time::timeout`.
    pub async fn wait_complete(&self) -> Result<()> {
        loop {
            let p = self.progress();
            match p.state {
                TransferState::Error => {
                    let error = p.error.unwrap_or_default();
                    return Err(engine_error(&error, &self.path, &self.failure));
                }
                TransferState::Live => break,
                TransferState::Checking | TransferState::Paused => {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
        // The engine's wait does not end when the transfer fails once live (a write fails
        // on a full disk): the state is watched meanwhile.
        let completed = self.handle.wait_until_completed();
        tokio::pin!(completed);
        loop {
            tokio::select! {
                done = &mut completed => {
                    done.map_err(|e| engine_error(&e, &self.path, &self.failure))?;
                    break;
                }
                () = tokio::time::sleep(Duration::from_millis(50)) => {
                    let p = self.progress();
                    if p.state == TransferState::Error {
                        let error = p.error.unwrap_or_default();
                        return Err(engine_error(&error, &self.path, &self.failure));
                    }
                }
            }
        }
        self.finish();
        Ok(())
    }

    fn finish(&self) {
        if let Some(out) = &self.out {
            partial::unmark(out, &self.torrent);
        }
        self.claim.lock().take();
    }
}
