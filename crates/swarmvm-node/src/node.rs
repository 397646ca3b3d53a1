//! The node: its parts put together. [`Node::start`] opens the ledger (the [`Applier`]),
//! starts the BitTorrent session (the [`Fetcher`]), the heads, the sequencer or the follower,
//! the [`Api`] and the HTTP server; [`Node::shutdown`] stops them in order. Every read and
//! request goes through the [`Api`], which a node derefs to.

use std::net::SocketAddr;
use std::ops::Deref;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use swarmvm_swarm::{Swarm, SwarmOptions};
use swarmvm_token::{AuthoritySet, Network};
use tracing::info;

use crate::api::Api;
use crate::applier::Applier;
use crate::conns::HttpLimits;
use crate::core::Core;
use crate::counters::ApplyTimes;
use crate::dht::Dht;
use crate::error::{NodeError, one_line};
use crate::fetcher::{FetchLimits, Fetcher, FetcherParts, remove_tree};
use crate::follow::Follower;
use crate::heads::{HeadStore, Signer, check_head_age};
use crate::sequencer::Sequencer;
use crate::tasks::Tasks;

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
    pub http: HttpLimits,
}

impl Default for NodeLimits {
    fn default() -> Self {
        Self {
            max_pending: 64,
            max_rejected: 128,
            resolve_timeout: Duration::from_secs(60),
            stall_timeout: Duration::from_secs(120),
            http: HttpLimits::default(),
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
    pub wallet: Option<swarmvm_primitives::WalletId>,
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
    /// Publish a snapshot of the state every this many bundles (`--snapshot-every N`), seed
    /// it, and name the newest in the heads this node signs.
    pub snapshot_every: Option<u64>,
    /// Keep seeding only the newest this many bundles (`--keep-bundles N`), pruning older
    /// ones below the newest snapshot.
    pub keep_bundles: Option<u64>,
    /// Take part in the BitTorrent DHT (`--dht-bootstrap`): put and republish heads, announce
    /// and find the bundles' peers, follow links. The BitTorrent session's own DHT is then
    /// off (one DHT a node).
    pub dht: Option<crate::DhtOptions>,
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

/// A replica's cluster, started: its one key must be a member of the set in force, and its
/// `--http` address (a specific IP and port) is the URL the other replicas reach it at.
async fn start_replica(
    dir: &std::path::Path,
    applier: &Applier,
    mut options: crate::SequencerOptions,
    http: Option<SocketAddr>,
) -> Result<
    (
        Arc<crate::replica::Replica>,
        Vec<swarmvm_raft::Applied>,
        tokio::sync::mpsc::UnboundedReceiver<swarmvm_raft::Applied>,
    ),
    NodeError,
> {
    let (network, set) = applier.in_force();
    if options.keys.len() != 1 {
        return Err(NodeError::BadRequest(format!(
            "a replica (--cluster) holds exactly one authority key; {} given",
            options.keys.len()
        )));
    }
    check_head_age(options.max_head_age).map_err(NodeError::BadRequest)?;
    let key = options.keys.remove(0);
    let id = key.id().to_string();
    if !set.contains(&id) {
        return Err(NodeError::BadRequest(format!(
            "replica key {id} is not a member of the authority set in force"
        )));
    }
    let Some(http) = http.filter(|a| !a.ip().is_unspecified() && a.port() != 0) else {
        return Err(NodeError::BadRequest(
            "a replica (--cluster) needs --http IP:PORT with a specific address and port: the other replicas reach it there"
                .into(),
        ));
    };
    // What it decided about cuts before a restart: it must never decide otherwise.
    let decisions = crate::decisions::Decisions::open(dir).map_err(NodeError::BadRequest)?;
    let copy = swarmvm_wallet::Wallet::from_pkcs8_der(&key.to_pkcs8_der())
        .map_err(|e| NodeError::BadRequest(one_line(&e)))?;
    let mut cluster_options = swarmvm_raft::ClusterOptions::new(
        dir.join("replica.redb"),
        copy,
        network.id().to_owned(),
        set,
        format!("http://{http}"),
        options.cluster.clone(),
    );
    // The replicated state is snapshotted (and the log before it purged) every so many
    // entries.
    let state = crate::replica::shared_state();
    cluster_options.image = Some(crate::replica::image_source(&state));
    cluster_options.snapshot_every = options.cluster_snapshot_every;
    cluster_options.keep_after_snapshot = options.cluster_snapshot_every / 2;
    let (cluster, before, committed) = swarmvm_raft::Cluster::start(cluster_options)
        .await
        .map_err(|e| NodeError::BadRequest(one_line(&e)))?;
    let _ = remove_tree(&dir.join("cuts"));
    let replica = crate::replica::Replica::new(
        cluster,
        crate::replica::ReplicaOptions {
            key,
            cut_every: options.cut_every,
            cut_at: options.cut_at,
            max_queue: options.max_queue,
            max_head_age: options.max_head_age,
            rules: options.rules,
            fault: options.fault_equivocate,
            fault_unchecked_cuts: options.fault_unchecked_cuts,
            decisions,
        },
        state,
    );
    Ok((replica, before, committed))
}

/// Fetches the bundles of a replica's [`gap`](crate::replica::Replica::gap) over BitTorrent,
/// by the magnets the other replicas give for them, as a follower would (each applies only
/// once its K signatures verify), until the ledger reaches the cuts the replica holds; then
/// the cuts apply as ever. Looks again whenever a bundle applied, and every second.
async fn fill_replica_gap(core: Core, replica: Arc<crate::replica::Replica>, follower: Follower) {
    let mut applied = core.applier.subscribe();
    let mut stop = core.tasks.stopping();
    let mut state = crate::follow::Following::default();
    loop {
        if let Some(gap) = replica.gap(core.applier.last_seq()) {
            crate::follow::fetch_range(&follower, &replica.others(), &mut state, gap).await;
        }
        tokio::select! {
            _ = applied.changed() => {}
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = stop.wait_for(|s| *s) => break,
        }
    }
}

/// Refuses links (`--follow LINK`) of another network; warns of a key that is not an
/// Ed25519 member of the set in force (a rotation not applied yet may add it: every member's
/// slot is polled anyway).
fn check_links(links: &[String], applier: &Applier) -> Result<(), NodeError> {
    let (network, set) = applier.in_force();
    for link in links {
        let (key, id) = swarmvm_dht::parse_link(link)
            .map_err(|e| NodeError::BadRequest(format!("--follow {link}: {e}")))?;
        if id != network.id() {
            return Err(NodeError::BadRequest(format!(
                "--follow {link}: the link is of network {id}, not of this node's network {}",
                network.id()
            )));
        }
        if !set.members().any(|(_, k)| k.ed25519_bytes() == Some(&key)) {
            tracing::warn!(link, "the link's key is not an Ed25519 member of the set in force");
        }
    }
    Ok(())
}

/// A running peer. Cloning gives another handle to the same peer. Its reads and requests
/// are its [`Api`]'s.
#[derive(Clone)]
pub struct Node {
    api: Api,
    core: Core,
    sequencer: Option<Arc<Sequencer>>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node").field("data_dir", &self.api.data_dir()).finish_non_exhaustive()
    }
}

impl Deref for Node {
    type Target = Api;

    fn deref(&self) -> &Api {
        &self.api
    }
}

impl Node {
    /// Starts a node: opens its ledger, starts its BitTorrent session, resumes every bundle
    /// it knew (fetching what is missing, seeding what it has), then serves the HTTP API and
    /// watches the drop folder if asked.
    pub async fn start(mut options: NodeOptions) -> Result<Self, NodeError> {
        let Some(network) = options.network.take() else {
            return Err(NodeError::BadRequest(
                "no network given: a node needs --network FILE or --trust PUBFILE".into(),
            ));
        };
        let dir = options.data_dir.clone();
        for sub in [dir.clone(), dir.join("torrents"), dir.join("bundles")] {
            std::fs::create_dir_all(&sub)
                .map_err(|source| NodeError::DataDir { path: sub.clone(), source })?;
        }
        let times = Arc::new(ApplyTimes::default());
        let applier = Applier::open(dir.join("ledger.redb"), network, times.clone()).await?;
        let opened = applier.clone();
        let started = Self::assemble(options, dir, applier, times).await;
        if started.is_err() {
            // The ledger is closed before the error is returned, so the caller can open the
            // data folder again at once.
            opened.stop().await;
        }
        started
    }

    /// The rest of [`Node::start`], once the ledger is open.
    async fn assemble(
        options: NodeOptions,
        dir: PathBuf,
        applier: Applier,
        times: Arc<ApplyTimes>,
    ) -> Result<Self, NodeError> {
        let mut replica = None;
        // A replica signs no head alone; its one key puts the heads the replicas signed
        // together under its own member's slot in the DHT.
        let mut dht_signer = None;
        let (sequencer, signer) = match options.sequencer {
            Some(seq_options) if !seq_options.cluster.is_empty() => {
                let own = seq_options
                    .keys
                    .first()
                    .and_then(|k| swarmvm_wallet::Wallet::from_pkcs8_der(&k.to_pkcs8_der()).ok());
                let max_head_age = seq_options.max_head_age;
                replica = Some(start_replica(&dir, &applier, seq_options, options.http).await?);
                dht_signer = own.map(|k| Arc::new(Signer::new(vec![k], max_head_age)));
                (None, None)
            }
            Some(mut seq_options) => {
                let snapshot = applier.snapshot().ok_or_else(|| {
                    NodeError::Task("the ledger closed as the node started".into())
                })?;
                let set = swarmvm_bundle::set_in_force(&snapshot, applier.network())
                    .map_err(|e| NodeError::BadRequest(one_line(&e)))?;
                drop(snapshot);
                check_sequencer_keys(&seq_options.keys, &set)?;
                check_head_age(seq_options.max_head_age).map_err(NodeError::BadRequest)?;
                let _ = remove_tree(&dir.join("cuts"));
                let keys = std::mem::take(&mut seq_options.keys);
                let signer = Arc::new(Signer::new(keys, seq_options.max_head_age));
                let (sequencer, rx) = Sequencer::open(&dir, seq_options, signer.clone())
                    .map_err(NodeError::BadRequest)?;
                (Some((sequencer, rx)), Some(signer))
            }
            None => (None, None),
        };
        let links = options.follow.as_ref().map(|f| f.links.clone()).unwrap_or_default();
        if !links.is_empty() && options.dht.is_none() {
            return Err(NodeError::BadRequest(
                "following a link needs the DHT: give --dht-bootstrap HOST:PORT (or leave the DHT on)".into(),
            ));
        }
        check_links(&links, &applier)?;
        if options.follow.as_ref().is_some_and(|f| f.from_snapshot && f.urls.is_empty()) {
            return Err(NodeError::BadRequest(
                "--from-snapshot needs a followed node's URL (links alone replay every bundle)"
                    .into(),
            ));
        }
        let dht = match &options.dht {
            Some(o) => Some(Dht::start(o).await?),
            None => None,
        };
        let mut swarm_options = options.swarm;
        if dht.is_some() {
            swarm_options.dht = false;
        }
        let swarm = Swarm::start(swarm_options, &dir.join("bundles")).await?;
        let tasks = Tasks::new();
        let heads = HeadStore::new(applier.clone(), signer.clone());
        let limits = &options.limits;
        let fetch_limits = FetchLimits {
            max_pending: limits.max_pending,
            max_rejected: limits.max_rejected,
            resolve_timeout: limits.resolve_timeout,
            stall_timeout: limits.stall_timeout,
        };
        let fetcher = Fetcher::new(FetcherParts {
            data_dir: dir.clone(),
            limits: fetch_limits,
            swarm,
            applier: applier.clone(),
            heads: heads.clone(),
            tasks: tasks.clone(),
        });
        let snapshots = crate::snapshot_store::Snapshots::new(&dir);
        let core = Core { applier, heads, fetcher, tasks, snapshots };
        let follow_poll = options.follow.as_ref().map(|f| f.poll);
        let follower = Follower::new(core.clone(), options.follow, dht.clone());
        let relay = crate::relay::Relay::new(follower.clone());
        let writer = match (&sequencer, &replica) {
            (Some((s, _)), _) => crate::api::Writer::Sequencer(s.clone()),
            (None, Some((r, _, _))) => crate::api::Writer::Replica(r.clone()),
            (None, None) => crate::api::Writer::None,
        };
        let api =
            Api::new(core.clone(), writer, follower.clone(), relay.clone(), options.wallet, times);
        info!(data_dir = %dir.display(), last_seq = core.applier.last_seq(), "node started");
        core.fetcher.resume()?;
        crate::snapshots::start(&core, options.snapshot_every);
        if let Some(keep) = options.keep_bundles {
            crate::snapshots::start_pruning(&core, keep);
        }
        if let Some(addr) = options.http {
            crate::http::serve(&api, addr, options.limits.http.clone(), &options.allow_hosts)?;
        }
        if let Some(folder) = options.watch {
            crate::watch::spawn(core.fetcher.clone(), folder);
        }
        let node = Self { api, core, sequencer: sequencer.as_ref().map(|(s, _)| s.clone()) };
        if let Some((sequencer, rx)) = sequencer {
            sequencer.run(&node.core, rx);
            // Submissions are taken once the bundles it stored before a restart applied and
            // what it queued was checked again (bounded by the resolve and stall timeouts).
            sequencer.wait_ready().await;
        }
        if let Some((replica, before, committed)) = replica {
            replica.run(&node.core, before, committed);
            let (n, r, f) = (node.core.clone(), replica.clone(), follower.clone());
            node.core.tasks.spawn(async move { fill_replica_gap(n, r, f).await });
            let cluster = replica.cluster().clone();
            let mut stop = node.core.tasks.stopping();
            node.core.tasks.spawn(async move {
                // Until it is part of the cluster (a new one forms once every listed replica
                // answers) or the node stops.
                loop {
                    match cluster.join(Duration::from_secs(60)).await {
                        Ok(()) => break,
                        Err(e) => {
                            tracing::error!(
                                "this replica cannot join its cluster yet: {}",
                                one_line(&e)
                            );
                        }
                    }
                    tokio::select! {
                        () = tokio::time::sleep(Duration::from_secs(5)) => {}
                        _ = stop.wait_for(|s| *s) => break,
                    }
                }
            });
        }
        follower.start();
        relay.start(&node.core.tasks);
        if let Some(dht) = &dht {
            let signer = signer.or(dht_signer);
            dht.run(&node.core, signer, follow_poll.filter(|_| !links.is_empty()));
        }
        Ok(node)
    }

    /// The node's API (what a node derefs to).
    pub fn api(&self) -> &Api {
        &self.api
    }

    /// Stops: the HTTP API, the watcher, every transfer and the session; waits (at most
    /// five seconds a task) for the node's tasks to end, and closes the ledger file, so the
    /// data folder can be opened again as soon as this returns.
    pub async fn shutdown(&self) {
        self.core.tasks.stop().await;
        if let Some(replica) = self.api.replica() {
            // Its engine stops too, so that it neither leads nor holds its log file.
            replica.cluster().shutdown().await;
        }
        self.core.fetcher.swarm().stop().await;
        if let Some(sequencer) = &self.sequencer {
            sequencer.close();
        }
        // Waits for an apply in progress, then closes the file.
        self.core.applier.stop().await;
    }
}
