//! Following: the follower polls the heads of the nodes it follows (offering each to the
//! [`HeadStore`](crate::heads::HeadStore)), fetches the bundles it lacks, parents first, over
//! BitTorrent through the [`Fetcher`](crate::fetcher::Fetcher), and forwards submissions to
//! the nodes it follows.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use swarmvm_swarm::{InfoHash, MagnetLink, Source};
use swarmvm_vm::Hash32;
use tracing::{debug, info, warn};

use crate::client::Client;
use crate::core::Core;
use crate::dht::Dht;
use crate::error::one_line;
use crate::protocol::BundleState;
use crate::protocol::{
    HOPS_HEADER, HeadQuery, LOOP_DETECTED, VIA_HEADER, came_back, via_ids, went_through,
};

/// How a node follows others (`node run --follow URL... --poll 1s`).
#[derive(Debug, Clone)]
pub struct FollowOptions {
    /// The nodes' HTTP API URLs (`http://host:port`).
    pub urls: Vec<String>,
    /// How long to wait between polls when a node answered nothing new, and after an error.
    pub poll: Duration,
    /// Start an empty ledger from the snapshot the newest head names (`--from-snapshot`),
    /// then follow; without one, replay from genesis.
    pub from_snapshot: bool,
    /// The network's links (`--follow magnet:?xs=urn:btpk:...`): follow the heads in the DHT,
    /// every Ed25519 member's slot, besides any node of `urls`.
    pub links: Vec<String>,
}

/// Contract ids this node forwarded, the newest [`MAX_FORWARDED`].
#[derive(Debug, Default)]
pub(crate) struct Forwarded {
    ids: HashSet<Hash32>,
    order: VecDeque<Hash32>,
}

const MAX_FORWARDED: usize = 100_000;

impl Forwarded {
    pub(crate) fn insert(&mut self, id: Hash32) {
        if self.ids.insert(id) {
            self.order.push_back(id);
            if self.order.len() > MAX_FORWARDED
                && let Some(old) = self.order.pop_front()
            {
                self.ids.remove(&old);
            }
        }
    }

    pub(crate) fn contains(&self, id: &Hash32) -> bool {
        self.ids.contains(id)
    }
}

/// Bundles fetched ahead of the last applied one, at most.
const WINDOW: u64 = 16;
/// The longest a head poll waits for a newer head at the polled node.
const LONG_POLL: Duration = Duration::from_secs(10);

/// The follower: follows the newest signed head of other nodes and fetches the bundles it
/// lacks, and forwards submissions to them. A client of the [`Core`]'s parts.
#[derive(Clone)]
pub(crate) struct Follower {
    core: Core,
    /// The nodes it follows (and forwards submissions to).
    urls: Arc<Vec<String>>,
    /// How often it polls them.
    poll: Duration,
    /// A client for talking to them.
    client: Client,
    /// Contracts this node forwarded and the sequencer accepted (pending until applied here).
    forwarded: Arc<Mutex<Forwarded>>,
    /// This node's name in the path of a forwarded submission (its BitTorrent peer id, hex).
    node_id: String,
    /// Start from a snapshot ([`FollowOptions::from_snapshot`]).
    from_snapshot: bool,
    /// The node's DHT, when it runs one.
    dht: Option<Dht>,
    /// True when it follows the network's links (the heads in the DHT).
    links: bool,
}

impl Follower {
    pub(crate) fn new(core: Core, options: Option<FollowOptions>, dht: Option<Dht>) -> Self {
        let (urls, poll, from_snapshot, links) = match options {
            Some(f) => (f.urls, f.poll, f.from_snapshot, !f.links.is_empty()),
            None => (Vec::new(), Duration::from_secs(1), false, false),
        };
        let node_id = core.fetcher.swarm().peer_id();
        Self {
            core,
            urls: Arc::new(urls),
            poll,
            client: Client::new(Duration::from_secs(30)),
            forwarded: Arc::default(),
            node_id,
            from_snapshot,
            dht,
            links,
        }
    }

    /// The node's DHT, when it runs one.
    pub(crate) fn dht(&self) -> Option<&Dht> {
        self.dht.as_ref()
    }

    /// The nodes it follows.
    pub(crate) fn urls(&self) -> &[String] {
        &self.urls
    }

    /// This node's name in the path of a forwarded submission: one that comes back to it
    /// went round a loop of followers.
    pub(crate) fn node_id(&self) -> &str {
        &self.node_id
    }

    /// Remembers a contract this node forwarded and the sequencer accepted.
    pub(crate) fn forwarded(&self, id: Hash32) {
        self.forwarded.lock().insert(id);
    }

    /// True when this node forwarded contract `id` and the sequencer accepted it.
    pub(crate) fn was_forwarded(&self, id: &Hash32) -> bool {
        self.forwarded.lock().contains(id)
    }

    /// Starts following, if it follows any node.
    pub(crate) fn start(&self) {
        if !self.urls.is_empty() || self.links {
            let follower = self.clone();
            self.core.tasks.spawn(async move { follow_loop(follower).await });
        }
    }

    /// Forwards a request to the nodes this node follows until one of them answers it (not a
    /// 5xx, not unreachable); `hops` counts the nodes it went through already, and `via` (a
    /// [`VIA_HEADER`] value) names them. A node it follows that sends it back here (the two
    /// follow each other) or answers with a redirect is passed over for the next.
    pub(crate) async fn forward(
        &self,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
        hops: u32,
        via: &str,
    ) -> Result<crate::client::Reply, String> {
        if self.urls.is_empty() {
            return Err(
                "this node is not the sequencer and follows no node; submit to the sequencer or to a node that follows it"
                    .into(),
            );
        }
        let me = self.node_id.clone();
        if went_through(via, &me) {
            return Err(format!("{LOOP_MARK}{}", came_back()));
        }
        let hops = hops.max(u32::try_from(via_ids(via).count()).unwrap_or(u32::MAX));
        if hops >= MAX_HOPS {
            return Err(format!("forwarded through {hops} nodes without reaching the sequencer"));
        }
        let via = via_ids(via).chain(std::iter::once(me.as_str())).collect::<Vec<_>>().join(",");
        // The next followed node is tried only when one cannot be reached (or sends the
        // submission back, or redirects it); any other answer (a relayed 503 included) is
        // final, so that a submission costs at most one request per hop while the sequencer
        // is away.
        let mut last = String::new();
        let mut looped = 0;
        for url in self.urls.iter() {
            let headers = [(HOPS_HEADER, (hops + 1).to_string()), (VIA_HEADER, via.clone())];
            match self.client.post(url, path, content_type, body.clone(), &headers).await {
                Ok(reply) if reply.status == LOOP_DETECTED => {
                    looped += 1;
                    last = format!("{url} sent it back here");
                }
                Ok(reply) if (300..400).contains(&reply.status) => {
                    last = format!(
                        "{url} answered with a redirect (HTTP {}), which is not followed",
                        reply.status
                    );
                }
                Ok(reply) => return Ok(reply),
                Err(e) => last = e.to_string(),
            }
        }
        if looped == self.urls.len() {
            // Answered as a loop too (508), so that a node that forwarded it here passes this
            // one over for another it follows.
            return Err(format!(
                "{LOOP_MARK}every node this node follows sent the submission back to it (they follow it in turn): none of them reaches the sequencer"
            ));
        }
        Err(format!("no node it follows could be reached ({last})"))
    }
}

/// How [`Follower::forward`]'s error begins when every followed node sent the submission back:
/// it is answered [`LOOP_DETECTED`](crate::protocol::LOOP_DETECTED), not 503 ([`forward_failure`]).
const LOOP_MARK: &str = "loop: ";

/// A failed forward as the submission's refusal: 508 when every followed node sent it back
/// (so the node that forwarded it here tries another), else 503.
pub(crate) fn forward_failure(e: String) -> crate::submit::SubmitError {
    match e.strip_prefix(LOOP_MARK) {
        Some(why) => crate::submit::SubmitError::Looped(why.to_owned()),
        None => crate::submit::SubmitError::Unavailable(e),
    }
}

/// Nodes a submission may go through before it reaches the sequencer.
const MAX_HOPS: u32 = 8;

/// What the follower's fetch loop remembers.
#[derive(Default)]
pub(crate) struct Following {
    /// seq → the magnets asked for it.
    wanted: BTreeMap<u64, Wanted>,
    /// URL → its BitTorrent address.
    peers: HashMap<String, KnownPeers>,
    /// When the followed nodes' addresses were last read again because a bundle made no
    /// headway.
    peers_checked: Option<Instant>,
    /// URL → asked last until then, and its failed magnets in a row.
    demoted: HashMap<String, (Instant, u32)>,
    /// A magnet asked failed since the addresses were last read: they are read again before
    /// the next ask (a followed node that restarted on another port makes a magnet fail at
    /// once, its old address refusing the connection).
    refresh_peers: bool,
    /// The BitTorrent peers the DHT gave last (sorted).
    dht_peers: Vec<SocketAddr>,
    /// Following links: seq → the torrent of that bundle, as its child's manifest named it.
    chain: BTreeMap<u64, InfoHash>,
    /// Following links: bundles set aside to free a slot, fetched again when their turn nears.
    set_aside: std::collections::BTreeSet<u64>,
    /// Following links: the bundle last warned of for naming no parent's torrent.
    no_parent: Option<u64>,
}

/// A followed node's BitTorrent address, as its status gave it.
struct KnownPeers {
    peers: Vec<SocketAddr>,
    /// When it was asked.
    at: Instant,
    /// False when that ask failed (these are from an ask before).
    read: bool,
}

/// The magnets asked for one seq.
#[derive(Default)]
struct Wanted {
    /// Each magnet's bundle, by info-hash.
    asked: HashMap<InfoHash, Asked>,
    /// Where a magnet was sought in this round: the followed nodes (by URL) and the head's
    /// own signed magnet (`None`).
    tried: HashSet<Option<String>>,
    /// When a magnet was last asked for.
    last: Option<Instant>,
    /// When this round of sources began.
    round: Option<Instant>,
}

/// One magnet asked for a seq.
struct Asked {
    /// The followed nodes that gave it (none: the head's own, signed).
    from: Vec<String>,
    /// When it was (last) asked for.
    at: Instant,
    /// True once its failure was held against `from`.
    judged: bool,
}

/// How long a magnet may take to resolve, fetch and apply before the next followed node is
/// asked for its magnet for that seq too (both are fetched; the first bundle that verifies
/// for the seq applies). A lying node's magnet costs at most this, then it is asked last.
const PATIENCE: Duration = Duration::from_secs(5);
/// How long a bundle may go unresolved or unfetched before the followed nodes' BitTorrent
/// addresses are read again (one may have restarted on another port), and at most how often.
const PEERS_PATIENCE: Duration = Duration::from_secs(2);
/// How long a followed node's BitTorrent address is used before it is read again.
const PEERS_TTL: Duration = Duration::from_secs(30);
/// How long after a failed read a followed node's BitTorrent address is read again.
const PEERS_RETRY: Duration = Duration::from_secs(10);
/// The longest the fetch loop waits for a followed node's answer (its status, a magnet).
const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a followed node whose magnet failed is asked last, after its first failure in a
/// row; each further failure doubles it, up to [`DEMOTION_MAX`].
const DEMOTION: Duration = Duration::from_secs(60);
/// The longest a followed node is asked last for.
const DEMOTION_MAX: Duration = Duration::from_secs(600);

impl Following {
    /// The followed nodes in the order their magnets are sought: those in good standing in
    /// the order given, then those demoted, the soonest forgiven first.
    fn ranked<'a>(&self, urls: &'a [String]) -> Vec<&'a String> {
        let now = Instant::now();
        let mut ranked: Vec<(Option<Instant>, usize, &'a String)> = urls
            .iter()
            .enumerate()
            .map(|(i, url)| {
                let until = self.demoted.get(url).map(|d| d.0).filter(|until| *until > now);
                (until, i, url)
            })
            .collect();
        ranked.sort_by_key(|(until, i, _)| (*until, *i));
        ranked.into_iter().map(|(_, _, url)| url).collect()
    }

    /// Asks `url` last for a while: a magnet it gave did not resolve, fetch, verify or apply
    /// for the seq it was given for, while another did.
    fn demote(&mut self, url: &str, why: &str) {
        let (until, failures) = self.demoted.entry(url.to_owned()).or_insert((Instant::now(), 0));
        *failures = failures.saturating_add(1);
        let factor = 1u32 << (*failures - 1).min(4);
        let demotion = DEMOTION.saturating_mul(factor).min(DEMOTION_MAX);
        *until = Instant::now() + demotion;
        warn!(
            url,
            failures = *failures,
            "asking this followed node last for {}: {why}",
            humantime::format_duration(demotion)
        );
    }

    /// A magnet `url` gave applied: its failures in a row start again from none.
    fn trusted(&mut self, url: &str) {
        if let Some(d) = self.demoted.get_mut(url) {
            d.1 = 0;
        }
    }

    /// Forgets the seqs up to `last` (applied), holding against each followed node a magnet
    /// it gave for one of them that is not the bundle applied there.
    fn settle(&mut self, node: &Follower, last: u64) {
        let done: Vec<u64> = self.wanted.range(..=last).map(|(s, _)| *s).collect();
        for seq in done {
            let Some(wanted) = self.wanted.remove(&seq) else { continue };
            for (hash, asked) in wanted.asked {
                let applied = matches!(
                    node.core.fetcher.bundle_progress(hash),
                    Some((BundleState::Applied, Some(s))) if s == seq
                );
                for url in &asked.from {
                    if applied {
                        self.trusted(url);
                    } else if !asked.judged {
                        self.demote(
                            url,
                            &format!(
                                "its magnet for seq {seq} ({hash}) is not the bundle applied there"
                            ),
                        );
                    }
                }
            }
        }
    }
}

/// Follows: one task per followed node polls its heads (each poll waits at the node for a
/// newer head), and this loop fetches the bundles between the last applied one and the
/// newest head whenever either changes, and at least every `poll`.
async fn follow_loop(node: Follower) {
    let urls = node.urls.to_vec();
    info!(urls = ?urls, "following");
    for url in &urls {
        let (n, url) = (node.clone(), url.clone());
        node.core.tasks.spawn(async move { poll_heads(n, url).await });
    }
    if node.from_snapshot {
        let mut peers = Vec::new();
        for url in &urls {
            peers.extend(read_listen(&node, url).await.unwrap_or_default());
        }
        let manifests = |seq: u64| {
            let node = node.clone();
            let urls = urls.clone();
            async move {
                let mut found = Vec::new();
                for url in &urls {
                    if let Ok(Some(at)) = node.client.bundle_at(url, seq).await {
                        found.push(at.manifest);
                    }
                }
                found
            }
        };
        let mut stop = node.core.tasks.stopping();
        tokio::select! {
            () = crate::snapshots::join(&node.core, peers, manifests) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
    let mut stop = node.core.tasks.stopping();
    let mut heads = node.core.heads.subscribe();
    let mut applied = node.core.applier.subscribe();
    let mut state = Following::default();
    loop {
        fetch_missing(&node, &urls, &mut state).await;
        node.core.heads.check_stale();
        tokio::select! {
            _ = heads.changed() => {}
            _ = applied.changed() => {}
            () = tokio::time::sleep(node.poll) => {}
            _ = stop.wait_for(|s| *s) => break,
        }
    }
}

/// Polls the heads of the node at `url`, offering each to this node.
async fn poll_heads(node: Follower, url: String) {
    let mut stop = node.core.tasks.stopping();
    loop {
        let (seq, iat) = node.core.heads.head().map_or((0, 0), |(_, h)| (h.seq, h.issued_at));
        let q = HeadQuery { seq: Some(seq), iat: Some(iat), wait: Some(LONG_POLL.as_secs()) };
        let polled = tokio::select! {
            r = node.client.head(&url, &q) => r,
            _ = stop.wait_for(|s| *s) => break,
        };
        let newer = match polled {
            Ok(Some(answer)) => {
                let newer = node.core.heads.offer(&answer.head, crate::heads::Via::Relay);
                if let Some(dht) = &node.dht {
                    let salt = node.core.applier.network().id().to_owned();
                    let items: Vec<_> = answer
                        .items
                        .iter()
                        .filter_map(|i| crate::dht::item_from_json(i, &salt))
                        .collect();
                    dht.learn(&node.core, &items);
                }
                newer
            }
            Ok(None) => {
                debug!(url, "no head known there");
                false
            }
            Err(e) => {
                debug!(url, "{e}");
                false
            }
        };
        if !newer {
            tokio::select! {
                () = tokio::time::sleep(node.poll) => {}
                _ = stop.wait_for(|s| *s) => break,
            }
        }
    }
}

/// Asks for the bundles after the last applied one, up to the newest head (at most
/// [`WINDOW`] ahead): the head's own by its signed magnet, the others by `GET
/// /v1/bundles/{seq}` of the followed nodes, each from the BitTorrent peers of those nodes
/// besides the session's own.
///
/// A magnet from a followed node is not signed, so none is trusted alone: one that fails
/// (refused: not resolved in time, not verified, another seq's bundle) or that makes no
/// headway for [`PATIENCE`] makes the next followed node be asked for its own, and a node
/// whose magnet was not the bundle applied is asked last for a while. Trackers in those
/// magnets are dropped unless this node chose them (`--tracker`) or the head's signed magnet
/// names them: a relay cannot make a follower announce itself anywhere.
async fn fetch_missing(node: &Follower, urls: &[String], state: &mut Following) {
    if node.core.heads.diverged().is_some() {
        return;
    }
    let head = node.core.heads.head().map(|(_, h)| h);
    let waiting = node.core.heads.waiting_seq();
    let last = node.core.applier.snapshot().and_then(|s| s.last_bundle()).map_or(0, |b| b.seq);
    let verified = head.as_ref().map_or(0, |h| h.seq);
    // Beyond the verified head, toward a head whose signers a rotation may add, one bundle at
    // a time: each may change the set the next is signed by.
    let mut target = match waiting {
        Some(w) if w > verified => verified.max(last + 1).min(w),
        _ => verified,
    };
    // Following links: a head in a member's slot signed by keys not known yet (a rotation
    // this node has not applied adds them) leads the walk, by its magnet, unverified: the
    // bundles it leads to are verified as any, and the head is read once they applied.
    let hint = match &node.dht {
        Some(dht) if node.links => dht
            .hint_above(verified.max(last))
            .and_then(|(s, m)| MagnetLink::parse(&m).ok().map(|m| (s, m))),
        _ => None,
    };
    if let Some((s, _)) = &hint {
        target = target.max(*s);
    }
    state.settle(node, last);
    check_peers(node, urls, state).await;
    let first = last + 1;
    let end = target.min(last + WINDOW);
    if first > end.max(if node.links { target } else { 0 }) {
        return;
    }
    let mut peers = peers_to_ask(node, urls, state).await;
    let signed = head.as_ref().and_then(|h| MagnetLink::parse(&h.magnet).ok().map(|m| (h.seq, m)));
    let retry = node.poll.max(Duration::from_secs(1));
    if node.links {
        if let Some((s, m)) = &hint {
            state.chain.insert(*s, m.info_hash);
        }
        // Peers of the newest bundle known (every node seeds the bundles before it too): the
        // hint's, else the head's.
        let newest = hint.as_ref().or(signed.as_ref()).map(|(_, m)| m.info_hash);
        dht_peers(node, state, newest, &mut peers);
        // No peer known yet (the lookups run apart): a magnet asked of nobody fails at once,
        // so none is asked through the DHT until it names someone.
        if !peers.is_empty() {
            walk_back(node, urls, state, (first, target), signed.as_ref(), &peers, retry).await;
        }
        if urls.is_empty() {
            return;
        }
    }
    for seq in first..=end {
        let magnet = signed.as_ref().filter(|(s, _)| *s == seq).map(|(_, m)| m);
        let trusted = signed.as_ref().map(|(_, m)| m);
        if !want(node, urls, state, seq, magnet, trusted, &peers, retry).await {
            break;
        }
    }
}

/// Asks for the bundles `first..=end` (at most [`WINDOW`] of them at once, parents first) by
/// `GET /v1/bundles/{seq}` of the nodes at `urls`, from their BitTorrent peers: how a replica
/// whose cluster compacted its log past bundles it never applied catches up (the replicas'
/// snapshot holds only the newest cuts). No head leads it: each bundle applies only once it
/// verifies, K signatures of the set in force, as any follower's; a node whose magnet fails
/// is asked last for a while, as when following.
pub(crate) async fn fetch_range(
    node: &Follower,
    urls: &[String],
    state: &mut Following,
    (first, end): (u64, u64),
) {
    state.settle(node, first.saturating_sub(1));
    check_peers(node, urls, state).await;
    let end = end.min(first.saturating_sub(1) + WINDOW);
    let peers = peers_to_ask(node, urls, state).await;
    let retry = node.poll.max(Duration::from_secs(1));
    for seq in first..=end {
        if !want(node, urls, state, seq, None, None, &peers, retry).await {
            break;
        }
    }
}

/// Through the DHT alone: asks for the bundles from `target` back to `first`, the head's by
/// its signed magnet (`signed`), each before by the torrent its child's manifest names
/// (`parent_info_hash`), as far as the node's own slots allow. When they are full before the
/// walk reaches `first`, the bundle waiting nearest the head is set aside (its torrent and its
/// parent's remembered) to free a slot, and fetched again once its turn nears: a history
/// longer than the slots is walked whole, holding at most the slots' worth of bundles.
async fn walk_back(
    node: &Follower,
    urls: &[String],
    state: &mut Following,
    (first, target): (u64, u64),
    signed: Option<&(u64, MagnetLink)>,
    peers: &[SocketAddr],
    retry: Duration,
) {
    let fetcher = &node.core.fetcher;
    // Bundles this near the last applied one are never set aside.
    let near = first - 1 + (fetcher.limits().max_pending as u64 / 2).clamp(1, WINDOW);
    state.chain.retain(|s, _| *s >= first);
    state.set_aside.retain(|s| *s >= first);
    // Every signed head's bundle is remembered: a newer head may come while the walk is
    // still below an older one.
    if let Some((s, m)) = signed {
        state.chain.insert(*s, m.info_hash);
    }
    let trusted = signed.map(|(_, m)| m);
    let mut seq = target;
    while seq >= first {
        let known = state.chain.get(&(seq + 1)).copied();
        if let Some(parent) = fetcher.parent_torrent(seq + 1, known) {
            state.chain.insert(seq, parent);
        }
        let Some(hash) = state.chain.get(&seq).copied() else {
            if fetcher.waits_at(seq + 1, known) && state.no_parent != Some(seq + 1) {
                state.no_parent = Some(seq + 1);
                warn!(
                    seq = seq + 1,
                    "bundle {} names no parent_info_hash: the bundles before it cannot be found through the DHT alone; follow a relay too (--follow URL)",
                    seq + 1
                );
            }
            // Below an unknown one, the walk goes on from the next bundle whose torrent is
            // known (a head seen before, a parent named before).
            match state.chain.range(first..seq).next_back() {
                Some((s, _)) => {
                    seq = *s;
                    continue;
                }
                None => break,
            }
        };
        if state.set_aside.contains(&seq) && seq > near && state.chain.contains_key(&(seq - 1)) {
            // Its turn is not near yet, and its parent's torrent is known without it.
            seq -= 1;
            continue;
        }
        let magnet = match signed {
            Some((s, m)) if *s == seq => m.clone(),
            _ => match MagnetLink::parse(&format!("magnet:?xt=urn:btih:{hash}")) {
                Ok(m) => m,
                Err(_) => break,
            },
        };
        if !want(node, urls, state, seq, Some(&magnet), trusted, peers, retry).await {
            // No slot left: the bundle waiting nearest the head makes room, if the walk has
            // further to go and it is not needed soon.
            if let Some(high) = fetcher.highest_waiting_own().filter(|h| *h > seq && *h > near)
                && let Some(parent) = fetcher.parent_torrent(high, state.chain.get(&high).copied())
                && let Some(hash) = fetcher.set_aside(high).await
            {
                state.chain.insert(high - 1, parent);
                state.chain.insert(high, hash);
                state.set_aside.insert(high);
                state.wanted.remove(&high);
                return;
            }
            if seq <= near {
                return;
            }
            // Nothing above it to set aside (a head newer than every bundle waiting): this
            // one waits for its turn, and the walk goes on below it.
            state.set_aside.insert(seq);
            state.wanted.remove(&seq);
        }
        seq -= 1;
    }
}

/// Adds to `peers` the BitTorrent peers announced in the DHT for the newest bundle known and for
/// the bundles being fetched (as last found: the lookups run apart), and gives them to every
/// bundle on its way when they changed, so that one asked before any peer was found gets them.
fn dht_peers(
    node: &Follower,
    state: &mut Following,
    newest: Option<InfoHash>,
    peers: &mut Vec<SocketAddr>,
) {
    let Some(dht) = &node.dht else { return };
    let pending: Vec<InfoHash> =
        state.wanted.values().flat_map(|w| w.asked.keys().copied()).collect();
    let mut found: Vec<SocketAddr> = Vec::new();
    for hash in newest.into_iter().chain(pending.iter().copied()) {
        for peer in dht.peers(&node.core, hash.0) {
            if !found.contains(&peer) {
                found.push(peer);
            }
        }
    }
    found.sort();
    if !found.is_empty() && found != state.dht_peers {
        // The first peers found go to every bundle already asked (asked of no one, it would
        // wait out its resolve timeout); later ones only to bundles asked from now on, so
        // that transfers on their way are not started again at every lookup.
        let first = state.dht_peers.is_empty();
        state.dht_peers = found.clone();
        if first {
            let mut all = peers.clone();
            all.extend(found.iter().filter(|p| !peers.contains(p)));
            for hash in pending {
                node.core.fetcher.renew_peers(hash, all.clone());
            }
        }
    }
    for peer in &state.dht_peers {
        if !peers.contains(peer) {
            peers.push(*peer);
        }
    }
}

/// Asks for bundle `seq` if it is time to: when no magnet was asked for it yet, when every
/// magnet asked failed (again at most every `retry`), or when none made headway for
/// [`PATIENCE`] (then another's). `signed` is the head's magnet when the head names `seq`;
/// `trusted` the head's magnet, whose trackers are kept. Returns false when the node has no
/// slot left for its own fetches.
#[allow(clippy::too_many_arguments)]
async fn want(
    node: &Follower,
    urls: &[String],
    state: &mut Following,
    seq: u64,
    signed: Option<&MagnetLink>,
    trusted: Option<&MagnetLink>,
    peers: &[SocketAddr],
    retry: Duration,
) -> bool {
    let ranked: Vec<String> = state.ranked(urls).into_iter().cloned().collect();
    // How the magnets asked so far fare: on their way, or failed.
    let mut going = false;
    let mut failed = Vec::new();
    let mut any_failed = false;
    let wanted = state.wanted.entry(seq).or_default();
    for (hash, asked) in &mut wanted.asked {
        if on_its_way(node, *hash, seq) {
            going = true;
        } else if !asked.judged {
            asked.judged = true;
            any_failed = true;
            failed.extend(asked.from.iter().map(|url| (url.clone(), *hash)));
        }
    }
    // Failed magnets are held against their sources once and then forgotten, so a source
    // that hands out a new junk magnet every round cannot grow what is kept for the seq.
    wanted.asked.retain(|_, asked| !asked.judged);
    let since = wanted.last.map(|t| t.elapsed());
    let every: Vec<Option<String>> =
        signed.map(|_| None).into_iter().chain(ranked.iter().map(|u| Some(u.clone()))).collect();
    let exhausted = every.iter().all(|c| wanted.tried.contains(c));
    for (url, hash) in &failed {
        state.demote(url, &format!("its magnet for seq {seq} ({hash}) failed"));
    }
    state.refresh_peers |= any_failed;
    match since {
        // On its way, and still early.
        Some(s) if going && s < PATIENCE => return true,
        // Every magnet failed: asked again at most every `retry`.
        Some(s) if !going && s < retry => return true,
        _ => {}
    }
    let wanted = state.wanted.entry(seq).or_default();
    if exhausted {
        // Every source was asked: a new round, from the best ranked one, once the last round
        // had its time (longer while a magnet is still on its way).
        let wait = if going { PATIENCE * 4 } else { retry };
        if wanted.round.is_some_and(|r| r.elapsed() < wait) {
            return true;
        }
        wanted.tried.clear();
    }
    if wanted.tried.is_empty() {
        wanted.round = Some(Instant::now());
    }
    let mut demote = Vec::new();
    let mut added = true;
    for candidate in every {
        if !wanted.tried.insert(candidate.clone()) {
            continue;
        }
        let mut link = match &candidate {
            None => match signed {
                Some(m) => m.clone(),
                None => continue,
            },
            Some(url) => match magnet_at(node, url, seq).await {
                Some(Ok(link)) => link,
                Some(Err(why)) => {
                    demote.push((url.clone(), why));
                    continue;
                }
                None => continue,
            },
        };
        let before = link.trackers.len();
        link.trackers.retain(|t| {
            node.core.fetcher.own_tracker(t.as_str())
                || trusted.is_some_and(|m| m.trackers.contains(t))
        });
        if link.trackers.len() < before {
            debug!(
                seq,
                from = candidate.as_deref().unwrap_or("the head"),
                "dropped {} tracker(s) this node did not choose from a magnet",
                before - link.trackers.len()
            );
        }
        // A magnet asked already and on its way: another source is sought instead.
        let hash = link.info_hash;
        if wanted.asked.contains_key(&hash) && on_its_way(node, hash, seq) {
            if let (Some(url), Some(asked)) = (&candidate, wanted.asked.get_mut(&hash))
                && !asked.from.contains(url)
            {
                asked.from.push(url.clone());
            }
            continue;
        }
        // The node's own fetch: in slots of its own, which bundles strangers post never take.
        match node.core.fetcher.add_own(Source::Magnet(link), peers.to_vec()) {
            Ok(hash) => {
                let asked = wanted.asked.entry(hash).or_insert_with(|| Asked {
                    from: Vec::new(),
                    at: Instant::now(),
                    judged: false,
                });
                asked.at = Instant::now();
                asked.judged = false;
                if let Some(url) = &candidate
                    && !asked.from.contains(url)
                {
                    asked.from.push(url.clone());
                }
                wanted.last = Some(Instant::now());
                debug!(seq, info_hash = %hash, "fetching bundle seq {seq}");
                break;
            }
            Err(e) => {
                debug!(seq, "cannot fetch bundle seq {seq} now: {}", one_line(&e));
                wanted.tried.remove(&candidate);
                added = false;
                break;
            }
        }
    }
    if wanted.asked.is_empty() {
        debug!(seq, "no usable magnet link for seq {seq} yet");
    }
    for (url, why) in demote {
        state.demote(&url, &why);
    }
    added
}

/// True while the bundle `hash`, asked for `seq`, is on its way: known, not refused, and once
/// opened, that seq's bundle (a magnet of another seq's is a lie too).
fn on_its_way(node: &Follower, hash: InfoHash, seq: u64) -> bool {
    match node.core.fetcher.bundle_progress(hash) {
        None | Some((BundleState::Rejected, _)) => false,
        Some((_, Some(s))) => s == seq,
        Some((_, None)) => true,
    }
}

/// The magnet the followed node at `url` gives for bundle `seq`: `None` when it has none
/// (or cannot be reached), an error when what it gives is not a magnet link or it does not
/// answer within [`READ_TIMEOUT`].
async fn magnet_at(node: &Follower, url: &str, seq: u64) -> Option<Result<MagnetLink, String>> {
    let asked = node.client.bundle_at(url, seq);
    let Ok(reply) = tokio::time::timeout(READ_TIMEOUT, asked).await else {
        return Some(Err(format!(
            "it did not answer for the magnet of seq {seq} within {}",
            humantime::format_duration(READ_TIMEOUT)
        )));
    };
    let text = reply.ok()??.magnet?;
    Some(MagnetLink::parse(&text).map_err(|e| {
        format!("it gave something that is not a magnet link for seq {seq}: {}", one_line(&e))
    }))
}

/// When a bundle asked for has gone [`PEERS_PATIENCE`] without resolving or fetching, reads
/// the followed nodes' BitTorrent addresses again (at most that often) and gives them to
/// every bundle still resolving or fetching that was asked with others (a followed node
/// restarted on another port), so that none waits on an address nobody listens at any more.
async fn check_peers(node: &Follower, urls: &[String], state: &mut Following) {
    let stuck = state.wanted.values().flat_map(|w| &w.asked).any(|(hash, asked)| {
        asked.at.elapsed() >= PEERS_PATIENCE
            && matches!(
                node.core.fetcher.bundle_state(*hash),
                Some(BundleState::Resolving | BundleState::Fetching)
            )
    });
    if !stuck || state.peers_checked.is_some_and(|t| t.elapsed() < PEERS_PATIENCE) {
        return;
    }
    state.peers_checked = Some(Instant::now());
    let peers = followed_peers(node, urls, state, true).await;
    if peers.is_empty() {
        return;
    }
    // Only bundles asked with other peers are renewed (see `Fetcher::renew_peers`).
    let pending: Vec<InfoHash> =
        state.wanted.values().flat_map(|w| w.asked.keys().copied()).collect();
    for hash in pending {
        node.core.fetcher.renew_peers(hash, peers.clone());
    }
}

/// The followed nodes' BitTorrent addresses to ask a bundle of: read again first when a
/// magnet failed since they were last read.
async fn peers_to_ask(node: &Follower, urls: &[String], state: &mut Following) -> Vec<SocketAddr> {
    let fresh = std::mem::take(&mut state.refresh_peers);
    if fresh {
        state.peers_checked = Some(Instant::now());
    }
    followed_peers(node, urls, state, fresh).await
}

/// The followed nodes' BitTorrent addresses (each node's status's `listen`, with the URL's
/// host when it listens on every address). Each is read again after [`PEERS_TTL`], after
/// [`PEERS_RETRY`] when the last read failed, or now when `fresh` (unless the last read failed
/// within [`PEERS_RETRY`]); the reads due run at once,
/// each for at most [`READ_TIMEOUT`], so that a node that does not answer costs the loop that
/// long at most. When a read fails (the node is down, say), the address known before is kept:
/// the node may come back there.
async fn followed_peers(
    node: &Follower,
    urls: &[String],
    state: &mut Following,
    fresh: bool,
) -> Vec<SocketAddr> {
    let due: Vec<&String> = urls
        .iter()
        .filter(|url| {
            // A node whose last read failed is read again only after PEERS_RETRY, even when a
            // fresh read is asked for: one that does not answer costs the loop a read timeout
            // that often at most.
            state.peers.get(url.as_str()).is_none_or(|known| {
                let due = if known.read { PEERS_TTL } else { PEERS_RETRY };
                (fresh && known.read) || known.at.elapsed() >= due
            })
        })
        .collect();
    let reads = futures_util::future::join_all(due.iter().map(|url| read_listen(node, url))).await;
    for (url, read) in due.into_iter().zip(reads) {
        let before = state.peers.remove(url.as_str()).map(|k| k.peers).unwrap_or_default();
        let known = match read {
            Some(peers) => KnownPeers { peers, at: Instant::now(), read: true },
            None => KnownPeers { peers: before, at: Instant::now(), read: false },
        };
        state.peers.insert(url.clone(), known);
    }
    urls.iter()
        .filter_map(|url| state.peers.get(url.as_str()))
        .flat_map(|k| k.peers.clone())
        .collect()
}

/// The BitTorrent address the node at `url` gives in its status (none when it gives none);
/// `None` when it cannot be read.
async fn read_listen(node: &Follower, url: &str) -> Option<Vec<SocketAddr>> {
    let status = tokio::time::timeout(READ_TIMEOUT, node.client.status(url)).await.ok()?.ok()?;
    let mut peers = Vec::new();
    if let Some(listen) = status.listen
        && let Ok(mut addr) = listen.parse::<SocketAddr>()
    {
        if addr.ip().is_unspecified() {
            match host_ip(url) {
                Some(ip) => addr.set_ip(ip),
                None => addr.set_ip(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            }
        }
        peers.push(addr);
    }
    Some(peers)
}

/// The IP address in a URL's host, if it is one (`localhost` is loopback).
fn host_ip(url: &str) -> Option<IpAddr> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split('/').next()?;
    let host = match authority.rsplit_once(':') {
        Some((h, p)) if p.chars().all(|c| c.is_ascii_digit()) => h,
        _ => authority,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.eq_ignore_ascii_case("localhost") {
        return Some(IpAddr::V4(Ipv4Addr::LOCALHOST));
    }
    host.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_of_urls_and_a_bounded_forwarded_set() {
        assert_eq!(host_ip("http://127.0.0.2:8080/"), Some("127.0.0.2".parse().unwrap()));
        assert_eq!(host_ip("http://[::1]:80"), Some("::1".parse().unwrap()));
        assert_eq!(host_ip("http://localhost:1"), Some(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        assert_eq!(host_ip("http://node.example:1"), None);
        let mut f = Forwarded::default();
        for i in 0..(MAX_FORWARDED as u64 + 5) {
            f.insert(Hash32::digest(&i.to_le_bytes()));
        }
        assert!(!f.contains(&Hash32::digest(&0u64.to_le_bytes())));
        assert!(f.contains(&Hash32::digest(&(MAX_FORWARDED as u64 + 4).to_le_bytes())));
        assert_eq!(f.ids.len(), MAX_FORWARDED);
    }

    #[test]
    fn a_followed_node_whose_magnet_failed_is_asked_last_for_a_while() {
        let urls = vec!["http://a".to_owned(), "http://b".to_owned(), "http://c".to_owned()];
        let mut f = Following::default();
        assert_eq!(f.ranked(&urls), vec![&urls[0], &urls[1], &urls[2]]);
        f.demote("http://a", "a junk magnet");
        assert_eq!(f.ranked(&urls), vec![&urls[1], &urls[2], &urls[0]]);
        let first = f.demoted["http://a"].0;
        f.demote("http://b", "a junk magnet");
        // Both demoted: the one forgiven sooner comes first.
        assert_eq!(f.ranked(&urls), vec![&urls[2], &urls[0], &urls[1]]);
        // Each failure in a row doubles the time, up to the most.
        f.demote("http://a", "another");
        assert_eq!(f.demoted["http://a"].1, 2);
        assert!(f.demoted["http://a"].0 > first + DEMOTION / 2);
        for _ in 0..10 {
            f.demote("http://a", "again");
        }
        assert!(f.demoted["http://a"].0 <= Instant::now() + DEMOTION_MAX);
        // A magnet that applied ends the run; the time served ends the demotion.
        f.trusted("http://a");
        assert_eq!(f.demoted["http://a"].1, 0);
        f.demoted.insert("http://a".into(), (Instant::now(), 0));
        f.demoted.insert("http://b".into(), (Instant::now(), 0));
        assert_eq!(f.ranked(&urls), vec![&urls[0], &urls[1], &urls[2]]);
    }
}
