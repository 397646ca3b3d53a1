//! The authority replicas' shared log. Each authority member runs one replica holding only
//! its own key; the replicas agree on one order of commands with [openraft] (Raft, crash
//! faults), keep the log and the applied point in redb ([`store`]), and talk over HTTP with
//! every message signed by the sender's authority key ([`message`]).
//!
//! The commands are opaque here: the node gives JSON text to [`Cluster::propose`] and reads
//! what committed, in order, from the channel [`Cluster::start`] returns. Given an
//! [`ImageSource`] (its state's bytes), the log is compacted into snapshots of that state,
//! which reach the node again as [`Applied::Restore`].

#![cfg_attr(not(test), warn(unused_crate_dependencies))]

mod error;
pub mod message;
mod network;
mod routes;
pub mod store;
mod types;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use openraft::error::{ClientWriteError, RaftError};
use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use openraft::storage::Adaptor;
use openraft::{Config, Raft, ServerState, SnapshotPolicy};
use parking_lot::RwLock;
use serde::{Deserialize, Serialize};
use swarmvm_token::AuthoritySet;
use swarmvm_wallet::Wallet;
use tokio::sync::mpsc;
use tracing::{info, warn};

pub use error::{ClusterError, MessageError};
pub use message::{Envelope, Expect};
pub use routes::{MAX_MESSAGE, router};
pub use store::{Applied, Committed, ImageSource};
pub use types::{Command, NodeId, Replica, TypeConfig, node_id};

use crate::network::{Network, Shared};

/// How a replica runs.
pub struct ClusterOptions {
    /// The redb file of its log.
    pub log: PathBuf,
    /// Its authority key (its only key).
    pub key: Wallet,
    /// The network id.
    pub network: String,
    /// The authority set in force: who may send messages.
    pub set: AuthoritySet,
    /// Its own HTTP base URL, as the others reach it.
    pub url: String,
    /// The other replicas' HTTP base URLs.
    pub peers: Vec<String>,
    /// How often the leader sends heartbeats.
    pub heartbeat: Duration,
    /// A follower that hears no leader for a random time between this and twice it starts
    /// an election.
    pub election: Duration,
    /// The node's state, for snapshots. Without it the log is kept whole.
    pub image: Option<ImageSource>,
    /// A snapshot after this many entries since the last (with an image source); the log
    /// before a snapshot, less [`ClusterOptions::keep_after_snapshot`] entries, is purged.
    pub snapshot_every: u64,
    /// Entries kept in the log behind a snapshot: a replica that far behind catches up from
    /// the log, one further behind is sent the snapshot.
    pub keep_after_snapshot: u64,
}

impl std::fmt::Debug for ClusterOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterOptions")
            .field("log", &self.log)
            .field("member", &self.key.id().to_string())
            .field("network", &self.network)
            .field("url", &self.url)
            .field("peers", &self.peers)
            .field("snapshots", &self.image.is_some())
            .field("snapshot_every", &self.snapshot_every)
            .finish_non_exhaustive()
    }
}

impl ClusterOptions {
    /// Options with the default timings (100 ms heartbeats, elections after 400 to 800 ms of
    /// silence: a dead leader is replaced in about a second; shorter timings measured worse
    /// tails under load on two cores, from elections nobody needed).
    pub fn new(
        log: PathBuf,
        key: Wallet,
        network: String,
        set: AuthoritySet,
        url: String,
        peers: Vec<String>,
    ) -> Self {
        Self {
            log,
            key,
            network,
            set,
            url,
            peers,
            heartbeat: Duration::from_millis(100),
            election: Duration::from_millis(400),
            image: None,
            snapshot_every: SNAPSHOT_EVERY,
            keep_after_snapshot: KEEP_AFTER_SNAPSHOT,
        }
    }
}

/// Entries between snapshots by default: at full load (groups of 256 submissions, a cut
/// and its signatures every 250 ms) a few minutes of log.
pub const SNAPSHOT_EVERY: u64 = 4096;
/// Entries kept behind a snapshot by default.
pub const KEEP_AFTER_SNAPSHOT: u64 = 2048;
/// The largest piece of a snapshot in one message (each byte is a JSON number in the
/// message, so a piece is a few times its size there).
const SNAPSHOT_CHUNK: u64 = 4 * 1024 * 1024;

/// What `GET /v1/cluster/whoami` answers: which member a replica's key is and which network
/// it serves. Unsigned: it only tells a starting replica where the members are; every
/// message after it is signed and checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WhoAmI {
    /// The member id of its key.
    pub member: String,
    /// The network id.
    pub network: String,
    /// Whether its log holds a cluster already (a replica starting then joins it rather
    /// than starting one).
    #[serde(default)]
    pub initialized: bool,
}

/// A replica's view of the cluster (`/v1/status` `cluster`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClusterStatus {
    /// `leader`, `follower` or `candidate` (`learner` while it only receives).
    pub role: &'static str,
    /// Its current term.
    pub term: u64,
    /// The leader's member id, when one is known.
    pub leader: Option<String>,
    /// The replicas, in member id order.
    pub members: Vec<Replica>,
    /// The index of the last command it applied.
    pub commit_index: u64,
    /// How many times it saw the leader change since it started.
    pub leader_changes: u64,
    /// The last index its newest snapshot holds (its log before that is purged, but for a
    /// few entries kept behind); 0 before its first snapshot.
    pub snapshot_index: u64,
}

/// One running replica.
#[derive(Clone)]
pub struct Cluster {
    inner: Arc<Inner>,
}

struct Inner {
    raft: Raft<TypeConfig>,
    shared: Arc<Shared>,
    id: NodeId,
    url: String,
    peers: Vec<String>,
    leader_changes: AtomicU64,
    leader: tokio::sync::watch::Sender<Option<NodeId>>,
    /// Proposals and joins taken: (sender, term, nonce).
    seen: parking_lot::Mutex<std::collections::HashSet<(String, u64, u64)>>,
}

/// Proposals remembered against replays at most; beyond it the memory starts over (a replay
/// then needs the same term still running).
const MAX_SEEN: usize = 1 << 20;

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster").field("member", &self.inner.shared.member).finish()
    }
}

/// What [`Cluster::start`] gives: the replica, what was applied before it started (its
/// newest snapshot's image and the commands after it, to rebuild the node's state from, in
/// order), and what applies from now on.
pub type Started = (Cluster, Vec<Applied>, mpsc::UnboundedReceiver<Applied>);

impl Cluster {
    /// Opens the log and starts the engine. The replica takes part once [`Cluster::join`]
    /// found the others (or at once, when its log says it was part of the cluster before).
    pub async fn start(options: ClusterOptions) -> Result<Started, ClusterError> {
        let member = options.key.id().to_string();
        if !options.set.contains(&member) {
            return Err(ClusterError::Message(MessageError::NotMember(member)));
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let snapshots = options.image.is_some() && options.snapshot_every > 0;
        let store = store::Store::open(&options.log, tx, options.image.clone())
            .map_err(|e| ClusterError::Store(format!("{}: {e}", options.log.display())))?;
        let before = store.applied_before().map_err(|e| ClusterError::Store(e.to_string()))?;
        let heartbeat = options.heartbeat.as_millis().max(1) as u64;
        let election = options.election.as_millis().max(3 * heartbeat as u128) as u64;
        let config = Config {
            cluster_name: options.network.clone(),
            heartbeat_interval: heartbeat,
            election_timeout_min: election,
            election_timeout_max: 2 * election,
            snapshot_policy: if snapshots {
                SnapshotPolicy::LogsSinceLast(options.snapshot_every)
            } else {
                SnapshotPolicy::Never
            },
            max_in_snapshot_log_to_keep: options.keep_after_snapshot,
            snapshot_max_chunk_size: SNAPSHOT_CHUNK,
            // Entries carry groups of submissions: a few dozen make a request of a few MiB.
            max_payload_entries: 32,
            ..Config::default()
        }
        .validate()
        .map_err(|e| ClusterError::Engine(e.to_string()))?;
        let shared = Arc::new(Shared {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .map_err(|e| ClusterError::Engine(e.to_string()))?,
            key: options.key,
            member: member.clone(),
            network: options.network,
            set: RwLock::new(options.set),
            nonce: AtomicU64::new(seed()),
        });
        let (log_store, state_machine) = Adaptor::new(store);
        let id = node_id(&member);
        let raft = Raft::new(
            id,
            Arc::new(config),
            Network { shared: shared.clone() },
            log_store,
            state_machine,
        )
        .await
        .map_err(|e| ClusterError::Engine(e.to_string()))?;
        let cluster = Self {
            inner: Arc::new(Inner {
                raft,
                shared,
                id,
                url: options.url,
                peers: options.peers,
                leader_changes: AtomicU64::new(0),
                leader: tokio::sync::watch::channel(None).0,
                seen: parking_lot::Mutex::new(std::collections::HashSet::new()),
            }),
        };
        cluster.count_leader_changes();
        Ok((cluster, before, rx))
    }

    fn count_leader_changes(&self) {
        let weak = Arc::downgrade(&self.inner);
        let mut metrics = self.inner.raft.metrics();
        tokio::spawn(async move {
            let mut leader = metrics.borrow().current_leader;
            while metrics.changed().await.is_ok() {
                let now = metrics.borrow().current_leader;
                if now != leader {
                    let Some(inner) = weak.upgrade() else { break };
                    if now.is_some() {
                        inner.leader_changes.fetch_add(1, Ordering::Relaxed);
                    }
                    inner.leader.send_replace(now);
                    leader = now;
                }
            }
        });
    }

    /// Changes whenever the leader this replica knows changes (to the new leader's id, or
    /// none during an election).
    pub fn leader_watch(&self) -> tokio::sync::watch::Receiver<Option<NodeId>> {
        self.inner.leader.subscribe()
    }

    /// Its own member id.
    pub fn member(&self) -> &str {
        &self.inner.shared.member
    }

    /// What it answers to `GET /v1/cluster/whoami`.
    pub fn whoami(&self) -> WhoAmI {
        let m = self.inner.raft.metrics().borrow().clone();
        WhoAmI {
            member: self.member().to_owned(),
            network: self.inner.shared.network.clone(),
            initialized: m.membership_config.nodes().next().is_some(),
        }
    }

    /// Sets the authority set in force (after a rotation applied): who may send messages.
    pub fn set_authorities(&self, set: AuthoritySet) {
        *self.inner.shared.set.write() = set;
    }

    /// Makes the replica part of the cluster. When its log holds one already, nothing to do.
    /// Otherwise it asks every peer which member it is (every 200 ms until `limit`): when
    /// one already runs a cluster, this replica asks to join it (a member added by a
    /// rotation); when none does and all answered, it starts the cluster with all of them,
    /// each a member of the set in force. Every replica of a new cluster does the same with
    /// the same list, which the engine allows.
    pub async fn join(&self, limit: Duration) -> Result<(), ClusterError> {
        let raft = &self.inner.raft;
        if raft.is_initialized().await.map_err(|e| ClusterError::Engine(e.to_string()))? {
            return Ok(());
        }
        let deadline = tokio::time::Instant::now() + limit;
        let me = Replica { member: self.member().to_owned(), url: self.inner.url.clone() };
        loop {
            let mut answers = Vec::new();
            let mut last_error = None;
            for url in &self.inner.peers {
                match self.ask_whoami(url).await {
                    Ok(who) => answers.push((url.clone(), who)),
                    Err(e) => last_error = Some(e),
                }
            }
            // A peer that is not a member of the set in force (one a rotation dropped, say)
            // is not joined through; a new cluster starts only with every peer a member.
            let mut refused = None;
            let mut members = Vec::new();
            for (url, who) in answers.iter() {
                match self.check_peer(url, who) {
                    Ok(()) => members.push((url.clone(), who.clone())),
                    Err(e) => refused = Some(e),
                }
            }
            let running = members.iter().find(|(_, w)| w.initialized);
            if let Some((url, who)) = running {
                let peer = Replica { member: who.member.clone(), url: url.clone() };
                match self.ask_to_join(&peer, &me, deadline).await {
                    Ok(()) => return Ok(()),
                    Err(e) => last_error = Some(e),
                }
            } else if answers.len() == self.inner.peers.len() {
                if let Some(e) = refused {
                    return Err(e);
                }
                return self.start_cluster(members).await;
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(last_error.unwrap_or(ClusterError::NoLeader));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    fn check_peer(&self, url: &str, who: &WhoAmI) -> Result<(), ClusterError> {
        let peer = |why: String| ClusterError::Peer { url: url.to_owned(), why };
        if who.network != self.inner.shared.network {
            return Err(peer(format!("it serves another network ({})", who.network)));
        }
        if !self.inner.shared.set.read().contains(&who.member) {
            return Err(peer(format!(
                "its key {} is not a member of the authority set in force",
                who.member
            )));
        }
        Ok(())
    }

    async fn start_cluster(&self, answers: Vec<(String, WhoAmI)>) -> Result<(), ClusterError> {
        let mut replicas = BTreeMap::new();
        replicas.insert(
            self.inner.id,
            Replica { member: self.member().to_owned(), url: self.inner.url.clone() },
        );
        for (url, who) in answers {
            replicas.insert(node_id(&who.member), Replica { member: who.member, url });
        }
        let ids: BTreeSet<NodeId> = replicas.keys().copied().collect();
        if ids.len() != self.inner.peers.len() + 1 {
            return Err(ClusterError::Engine("two replicas hold the same member key".into()));
        }
        match self.inner.raft.initialize(replicas).await {
            Ok(()) => info!(replicas = ids.len(), "cluster started"),
            // Another replica started it first: this one is joined through the log.
            Err(RaftError::APIError(e)) => info!("cluster already started: {e}"),
            Err(e) => return Err(ClusterError::Engine(e.to_string())),
        }
        Ok(())
    }

    /// Asks the cluster (through `peer`, which forwards to the leader) to add this replica,
    /// then waits until its own log names it a voter.
    async fn ask_to_join(
        &self,
        peer: &Replica,
        me: &Replica,
        deadline: tokio::time::Instant,
    ) -> Result<(), ClusterError> {
        let mut metrics = self.inner.raft.metrics();
        loop {
            // Asked again every few seconds: the leader adds a replica in the background, and
            // a leader change meanwhile drops that work.
            let answer: Result<(), String> =
                network::call(&self.inner.shared, peer, "join", 0, me).await?;
            answer.map_err(|why| ClusterError::Peer { url: peer.url.clone(), why })?;
            let again = tokio::time::Instant::now() + Duration::from_secs(3);
            loop {
                let voters: Vec<NodeId> =
                    metrics.borrow().membership_config.membership().voter_ids().collect();
                if voters.contains(&self.inner.id) {
                    info!("joined the cluster");
                    return Ok(());
                }
                if tokio::time::Instant::now() >= deadline {
                    return Err(ClusterError::Engine("not made a voter in time".into()));
                }
                if tokio::time::timeout_at(again.min(deadline), metrics.changed()).await.is_err() {
                    break;
                }
            }
        }
    }

    /// On the leader: adds `replica` (a member of the set in force) as a learner, then as a
    /// voter, in the background. Elsewhere: forwards the request to the leader.
    async fn add_replica(&self, replica: Replica) -> Result<(), String> {
        if !self.inner.shared.set.read().contains(&replica.member) {
            return Err(format!(
                "{} is not a member of the authority set in force",
                replica.member
            ));
        }
        let m = self.inner.raft.metrics().borrow().clone();
        let id = node_id(&replica.member);
        if m.membership_config.membership().voter_ids().any(|v| v == id) {
            return Ok(());
        }
        if m.state != ServerState::Leader {
            let leader = m
                .current_leader
                .and_then(|l| {
                    m.membership_config.nodes().find(|(n, _)| **n == l).map(|(_, r)| r.clone())
                })
                .ok_or("no leader is known now")?;
            let answer: Result<(), String> =
                network::call(&self.inner.shared, &leader, "join", 0, &replica)
                    .await
                    .map_err(|e| e.to_string())?;
            return answer;
        }
        let raft = self.inner.raft.clone();
        tokio::spawn(async move {
            let known = raft.metrics().borrow().membership_config.nodes().any(|(n, _)| *n == id);
            if !known && let Err(e) = raft.add_learner(id, replica.clone(), true).await {
                warn!("cannot add replica {replica} as a learner: {e}");
                return;
            }
            let mut voters: BTreeSet<NodeId> =
                raft.metrics().borrow().membership_config.membership().voter_ids().collect();
            voters.insert(id);
            match raft.change_membership(voters, false).await {
                Ok(_) => info!(%replica, "replica added to the cluster"),
                Err(e) => warn!("cannot make replica {replica} a voter: {e}"),
            }
        });
        Ok(())
    }

    /// On the leader, after a rotation: the voters whose member left the set in force
    /// (`set`) are removed from the cluster. Does nothing elsewhere or when all are members.
    pub async fn retain_members(&self, set: &AuthoritySet) -> Result<(), ClusterError> {
        let m = self.inner.raft.metrics().borrow().clone();
        if m.state != ServerState::Leader {
            return Ok(());
        }
        let nodes: BTreeMap<NodeId, Replica> =
            m.membership_config.nodes().map(|(n, r)| (*n, r.clone())).collect();
        let voters: BTreeSet<NodeId> = m.membership_config.membership().voter_ids().collect();
        let keep: BTreeSet<NodeId> = voters
            .iter()
            .copied()
            .filter(|v| nodes.get(v).is_some_and(|r| set.contains(&r.member)))
            .collect();
        if keep == voters || keep.is_empty() {
            return Ok(());
        }
        self.inner
            .raft
            .change_membership(keep, false)
            .await
            .map_err(|e| ClusterError::Engine(e.to_string()))?;
        info!("replicas whose member left the authority set were removed from the cluster");
        Ok(())
    }

    async fn ask_whoami(&self, url: &str) -> Result<WhoAmI, ClusterError> {
        let peer = |why: String| ClusterError::Peer { url: url.to_owned(), why };
        let answer = self
            .inner
            .shared
            .http
            .get(format!("{}/v1/cluster/whoami", url.trim_end_matches('/')))
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .map_err(|e| peer(e.to_string()))?;
        if !answer.status().is_success() {
            return Err(peer(format!("answered {}", answer.status())));
        }
        answer.json().await.map_err(|e| peer(e.to_string()))
    }

    /// Appends `command` to the log through the leader (this replica, or the leader it
    /// knows, over a signed message) and returns its index once a majority holds it.
    /// Retries while an election goes on, up to `limit`; a leader cut off from the
    /// majority answers [`ClusterError::TimedOut`] at `limit` rather than waiting to learn of
    /// a newer term.
    pub async fn propose(&self, command: Command, limit: Duration) -> Result<u64, ClusterError> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let write = self.inner.raft.client_write(command.clone());
            let Ok(written) = tokio::time::timeout_at(deadline, write).await else {
                return Err(ClusterError::TimedOut(limit));
            };
            let error = match written {
                Ok(written) => return Ok(written.log_id.index),
                Err(RaftError::APIError(ClientWriteError::ForwardToLeader(to))) => {
                    match to.leader_node {
                        Some(leader) if to.leader_id != Some(self.inner.id) => {
                            let forward = self.forward(&leader, &command);
                            match tokio::time::timeout_at(deadline, forward).await {
                                Ok(Ok(index)) => return Ok(index),
                                Ok(Err(e)) => e,
                                Err(_) => return Err(ClusterError::TimedOut(limit)),
                            }
                        }
                        _ => ClusterError::NoLeader,
                    }
                }
                Err(RaftError::Fatal(e)) => {
                    warn!("consensus stopped: {e}");
                    return Err(ClusterError::Stopping);
                }
                Err(e) => ClusterError::Engine(e.to_string()),
            };
            if tokio::time::Instant::now() >= deadline {
                return Err(error);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn forward(&self, leader: &Replica, command: &Command) -> Result<u64, ClusterError> {
        let term = self.inner.raft.metrics().borrow().current_term;
        let answer: Result<u64, String> =
            network::call(&self.inner.shared, leader, "propose", term, command).await?;
        answer.map_err(|why| ClusterError::Peer { url: leader.url.clone(), why })
    }

    /// Answers a message from another replica (`POST /v1/cluster/raft/{kind}`): checks the
    /// envelope, hands the body to the engine, and seals the answer.
    pub async fn handle(&self, kind: &str, envelope: Envelope) -> Result<Envelope, ClusterError> {
        let shared = &self.inner.shared;
        let raft = &self.inner.raft;
        let set = shared.set.read().clone();
        let expect =
            Expect { kind, network: &shared.network, me: &shared.member, nonce: None, from: None };
        let same_term = |body: u64| {
            if body == envelope.term {
                Ok(())
            } else {
                Err(MessageError::Term { signed: envelope.term, body })
            }
        };
        let answer = match kind {
            "append" => {
                let rpc: AppendEntriesRequest<TypeConfig> = envelope.open(expect, &set)?;
                same_term(rpc.vote.leader_id.term)?;
                json(&raft.append_entries(rpc).await)
            }
            "vote" => {
                let rpc: VoteRequest<NodeId> = envelope.open(expect, &set)?;
                same_term(rpc.vote.leader_id.term)?;
                json(&raft.vote(rpc).await)
            }
            "snapshot" => {
                let rpc: InstallSnapshotRequest<TypeConfig> = envelope.open(expect, &set)?;
                same_term(rpc.vote.leader_id.term)?;
                json(&raft.install_snapshot(rpc).await)
            }
            "join" => {
                let replica: Replica = envelope.open(expect, &set)?;
                self.fresh(&envelope)?;
                json(&self.add_replica(replica).await)
            }
            "propose" => {
                let command: Command = envelope.open(expect, &set)?;
                self.fresh(&envelope)?;
                // A proposal is taken in the term it was sent for only: a replayed one from
                // another term is refused (and within one, commands are idempotent).
                same_term(raft.metrics().borrow().current_term)?;
                let written = raft.client_write(command).await;
                json(&written.map(|w| w.log_id.index).map_err(|e| e.to_string()))
            }
            other => {
                return Err(ClusterError::Message(MessageError::Kind {
                    found: swarmvm_primitives::text::shown(other),
                    expected: "append, vote, snapshot, propose or join".into(),
                }));
            }
        };
        Ok(Envelope::seal(
            &shared.key,
            &format!("{kind}-reply"),
            &shared.network,
            &envelope.from,
            envelope.term,
            envelope.nonce,
            answer,
        )?)
    }

    /// Refuses a proposal or join seen before (the same sender, term and nonce): the engine's
    /// own messages carry their term and log position, but a replayed proposal would be
    /// appended again.
    fn fresh(&self, envelope: &Envelope) -> Result<(), MessageError> {
        let mut seen = self.inner.seen.lock();
        if seen.len() >= MAX_SEEN {
            seen.clear();
        }
        if seen.insert((envelope.from.clone(), envelope.term, envelope.nonce)) {
            Ok(())
        } else {
            Err(MessageError::Replayed)
        }
    }

    /// Its view of the cluster.
    pub fn status(&self) -> ClusterStatus {
        let m = self.inner.raft.metrics().borrow().clone();
        let members: Vec<Replica> =
            m.membership_config.nodes().map(|(_, r)| r.clone()).collect::<Vec<_>>();
        let leader = m.current_leader.and_then(|id| {
            m.membership_config.nodes().find(|(n, _)| **n == id).map(|(_, r)| r.member.clone())
        });
        let mut members = members;
        members.sort_by(|a, b| a.member.cmp(&b.member));
        ClusterStatus {
            role: match m.state {
                ServerState::Leader => "leader",
                ServerState::Candidate => "candidate",
                ServerState::Learner => "learner",
                _ => "follower",
            },
            term: m.current_term,
            leader,
            members,
            commit_index: m.last_applied.map_or(0, |l| l.index),
            leader_changes: self.inner.leader_changes.load(Ordering::Relaxed),
            snapshot_index: m.snapshot.map_or(0, |l| l.index),
        }
    }

    /// Whether this replica is the leader now.
    pub fn is_leader(&self) -> bool {
        self.inner.raft.metrics().borrow().state == ServerState::Leader
    }

    /// Waits until the leader (any) is known, up to `limit`.
    pub async fn wait_leader(&self, limit: Duration) -> Option<String> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if let Some(leader) = self.status().leader {
                return Some(leader);
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops the engine.
    pub async fn shutdown(&self) {
        if let Err(e) = self.inner.raft.shutdown().await {
            warn!("consensus did not stop cleanly: {e}");
        }
    }
}

fn json<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|e| format!("\"cannot encode: {e}\""))
}

/// A nonce seed that differs between runs, so a restarted replica's nonces do not repeat
/// its earlier ones.
fn seed() -> u64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    now ^ u64::from(std::process::id()).rotate_left(32)
}
