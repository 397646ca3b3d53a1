//! The node's part in the BitTorrent DHT (`--dht-bootstrap`, `--follow LINK`): one mainline
//! DHT node per swarmvm node, in server mode, that
//!
//! - puts every head a sequencer signs as a BEP 44 item under each Ed25519 member key it
//!   holds (`swarmvm-dht`'s [`HeadItem`]; an authority replica, every head the replicas
//!   signed together, under its own member's key), and puts the items of the newest head it holds
//!   again every `--dht-republish` (BEP 44 lets anyone put a signed item again), so heads
//!   outlive the sequencer;
//! - announces its BitTorrent address for the newest bundle it applied (BEP 5), and looks up
//!   the peers of the bundles it fetches: with this DHT on, the BitTorrent session's own DHT is
//!   off, so a node runs one DHT;
//! - with `--follow LINK`, polls every Ed25519 member's slot for a newer item and offers the
//!   head inside to the [`HeadStore`](crate::heads::HeadStore).
//!
//! The bundles before the head's are found through the swarm: each manifest names its
//! parent's info-hash (`parent_info_hash`), so the follower walks back from the head's bundle,
//! setting aside what its slots cannot hold until its turn nears (see `follow.rs`).

use std::collections::HashMap;
use std::net::{SocketAddr, SocketAddrV4};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use swarmvm_dht::{DhtNode, HeadItem};
use swarmvm_swarm::MagnetLink;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use data_encoding::{BASE64URL_NOPAD, HEXLOWER};

use crate::core::Core;
use crate::error::NodeError;
use crate::heads::{Signer, Via};
use crate::protocol::DhtItem;

/// How a node takes part in the DHT.
#[derive(Debug, Clone)]
pub struct DhtOptions {
    /// Its UDP address (`--dht-bind`; port 0 for any).
    pub bind: SocketAddrV4,
    /// `HOST:PORT` of nodes already in the DHT (`--dht-bootstrap`); none starts a DHT of its
    /// own that others join through this node.
    pub bootstrap: Vec<String>,
    /// How often the items of the newest head held are put again, and the newest bundle
    /// announced again (`--dht-republish`).
    pub republish: Duration,
}

impl Default for DhtOptions {
    fn default() -> Self {
        Self {
            bind: SocketAddrV4::new(std::net::Ipv4Addr::UNSPECIFIED, 0),
            bootstrap: Vec::new(),
            republish: Duration::from_secs(30 * 60),
        }
    }
}

/// The newest head this node holds and its items, one per member key.
#[derive(Default)]
struct Held {
    head: Option<String>,
    items: Vec<HeadItem>,
}

/// The peers found for one torrent, and when (never yet: `None`).
struct Found {
    peers: Vec<SocketAddr>,
    at: Option<Instant>,
    asking: bool,
}

/// How long the peers found for a torrent are used before they are looked up again.
const PEERS_TTL: Duration = Duration::from_secs(5);
/// Most peers taken from one lookup.
const MAX_PEERS: usize = 64;
/// The longest one lookup (a get or a put) may take.
const QUERY_TIMEOUT: Duration = Duration::from_secs(10);

/// The node's DHT. Cloning gives another handle to the same node.
#[derive(Clone)]
pub(crate) struct Dht {
    node: DhtNode,
    republish: Duration,
    held: Arc<Mutex<Held>>,
    found: Arc<Mutex<HashMap<[u8; 20], Found>>>,
    /// The highest head seen in a member's slot that names a signer this node does not know
    /// yet, as its seq and magnet ([`HeadItem::hint`]): the follower fetches the bundles up to
    /// it, whose rotation makes the head readable.
    hint: Arc<Mutex<Option<(u64, String)>>>,
}

impl Dht {
    /// Starts the DHT node.
    pub(crate) async fn start(options: &DhtOptions) -> Result<Self, NodeError> {
        let node = DhtNode::start(options.bind, &options.bootstrap)
            .await
            .map_err(|e| NodeError::BadRequest(e.to_string()))?;
        info!(addr = %node.addr(), bootstrap = ?options.bootstrap, "DHT node started");
        Ok(Self {
            node,
            republish: options.republish.max(Duration::from_millis(100)),
            held: Arc::default(),
            found: Arc::default(),
            hint: Arc::default(),
        })
    }

    /// The hint of a head above `known` ([`Dht::hint`]'s field), if any.
    pub(crate) fn hint_above(&self, known: u64) -> Option<(u64, String)> {
        let mut hint = self.hint.lock();
        if hint.as_ref().is_some_and(|(s, _)| *s <= known) {
            *hint = None;
        }
        hint.clone()
    }

    /// Its UDP address (the status's `dht`).
    pub(crate) fn addr(&self) -> SocketAddr {
        self.node.addr()
    }

    /// The signed items held for the head `text` (`GET /v1/head`'s `items`).
    pub(crate) fn items(&self, text: &str) -> Vec<HeadItem> {
        let held = self.held.lock();
        if held.head.as_deref() == Some(text) { held.items.clone() } else { Vec::new() }
    }

    /// Keeps, for republishing, the items among `items` that carry the node's newest head
    /// (each checked against the set in force); returns how many were new.
    pub(crate) fn learn(&self, core: &Core, items: &[HeadItem]) -> usize {
        let Some((text, _)) = core.heads.head() else { return 0 };
        let (network, set) = core.applier.in_force();
        let mut held = self.held.lock();
        if held.head.as_deref() != Some(text.as_str()) {
            *held = Held { head: Some(text.clone()), items: Vec::new() };
        }
        let mut added = 0;
        for item in items {
            let carries = item.head(network.id(), &set).is_ok_and(|(_, head)| head == text);
            if !carries {
                continue;
            }
            match held.items.iter_mut().find(|i| i.key == item.key) {
                Some(known) if known.seq >= item.seq => {}
                Some(known) => {
                    *known = item.clone();
                    added += 1;
                }
                None => {
                    held.items.push(item.clone());
                    added += 1;
                }
            }
        }
        added
    }

    /// The peers announced for the torrent `ih`, as last found; looked up again in the
    /// background when older than [`PEERS_TTL`] (so the caller never waits on the DHT).
    pub(crate) fn peers(&self, core: &Core, ih: [u8; 20]) -> Vec<SocketAddr> {
        let mut found = self.found.lock();
        let entry =
            found.entry(ih).or_insert_with(|| Found { peers: Vec::new(), at: None, asking: false });
        if !entry.asking && entry.at.is_none_or(|at| at.elapsed() >= PEERS_TTL) {
            entry.asking = true;
            let dht = self.clone();
            core.tasks.spawn(async move {
                let peers = tokio::time::timeout(QUERY_TIMEOUT, dht.node.peers(ih, MAX_PEERS))
                    .await
                    .unwrap_or_default();
                let mut found = dht.found.lock();
                if let Some(entry) = found.get_mut(&ih) {
                    if !peers.is_empty() {
                        entry.peers = peers;
                    }
                    entry.at = Some(Instant::now());
                    entry.asking = false;
                }
                // Bounded: lookups for torrents no longer asked for are forgotten.
                if found.len() > 256 {
                    found.retain(|_, f| f.at.is_none_or(|at| at.elapsed() < PEERS_TTL * 12));
                }
            });
        }
        entry.peers.clone()
    }

    /// Puts every held item (each put runs apart, bounded by [`QUERY_TIMEOUT`]); each tells
    /// `done` whether it was stored.
    fn put_held(&self, core: &Core, done: &mpsc::UnboundedSender<Done>) {
        let items = self.held.lock().items.clone();
        for item in items {
            let (node, done) = (self.node.clone(), done.clone());
            core.tasks.spawn(async move {
                let stored = match tokio::time::timeout(QUERY_TIMEOUT, node.put(&item)).await {
                    Ok(Ok(())) => true,
                    Ok(Err(e)) => {
                        debug!(seq = item.seq, "{e}");
                        false
                    }
                    Err(_) => {
                        debug!(seq = item.seq, "a head item put timed out");
                        false
                    }
                };
                let _ = done.send(Done::Put(stored));
            });
        }
    }

    /// Starts the node's DHT work: signing and putting its own heads (a sequencer with
    /// `signer`), putting the newest head held again every `republish`, announcing the newest
    /// bundle applied, and following `links` (member keys whose slots are polled every
    /// `poll`, with backoff).
    pub(crate) fn run(&self, core: &Core, signer: Option<Arc<Signer>>, follow: Option<Duration>) {
        let (dht, c) = (self.clone(), core.clone());
        core.tasks.spawn(async move { publish_loop(dht, c, signer).await });
        if let Some(poll) = follow {
            let (dht, c) = (self.clone(), core.clone());
            core.tasks.spawn(async move { follow_loop(dht, c, poll).await });
        }
    }
}

/// An item as `GET /v1/head` gives it.
pub(crate) fn item_json(item: &HeadItem) -> DhtItem {
    DhtItem {
        k: HEXLOWER.encode(&item.key),
        seq: item.seq,
        sig: HEXLOWER.encode(&item.signature),
        v: BASE64URL_NOPAD.encode(&item.value),
    }
}

/// An item from `GET /v1/head`, when well formed (its signature is checked where it is used).
pub(crate) fn item_from_json(item: &DhtItem, salt: &str) -> Option<HeadItem> {
    Some(HeadItem {
        key: HEXLOWER.decode(item.k.as_bytes()).ok()?.try_into().ok()?,
        salt: salt.as_bytes().to_vec(),
        seq: item.seq,
        value: BASE64URL_NOPAD.decode(item.v.as_bytes()).ok()?,
        signature: HEXLOWER.decode(item.sig.as_bytes()).ok()?.try_into().ok()?,
    })
}

/// The info-hash of a magnet link.
pub(crate) fn magnet_ih(magnet: &str) -> Option<[u8; 20]> {
    MagnetLink::parse(magnet).ok().map(|m| m.info_hash.0)
}

/// What a put or an announce run apart came to.
enum Done {
    /// A held item was stored (true) or not.
    Put(bool),
    /// The newest bundle was announced (true) or not.
    Announced(bool),
}

/// When a put or announce that reached no node is tried again: after 1 s, doubling up to the
/// republish interval. (The first node of a private DHT has no one to store anything with
/// until others join; a DHT node does not keep its own announces.)
struct Retry {
    at: Option<Instant>,
    backoff: Duration,
}

impl Retry {
    const FIRST: Duration = Duration::from_secs(1);

    fn new() -> Self {
        Self { at: None, backoff: Self::FIRST }
    }

    fn failed(&mut self, most: Duration) {
        self.at = Some(Instant::now() + self.backoff);
        self.backoff = (self.backoff * 2).min(most);
    }

    fn succeeded(&mut self) {
        self.at = None;
        self.backoff = Self::FIRST;
    }

    /// True once a retry is due (and then it is no longer pending).
    fn due(&mut self) -> bool {
        let due = self.at.is_some_and(|at| at <= Instant::now());
        if due {
            self.at = None;
        }
        due
    }
}

/// Puts each head the node signs (under each Ed25519 member key it holds) as soon as it is
/// signed; every `republish`, puts the newest head's items again; and announces the newest
/// bundle it applied whenever that changes (and every `republish`). What reached no node is
/// tried again soon ([`Retry`]).
async fn publish_loop(dht: Dht, core: Core, signer: Option<Arc<Signer>>) {
    let mut stop = core.tasks.stopping();
    let mut heads = core.heads.subscribe();
    let mut applied = core.applier.subscribe();
    let (done_tx, mut done) = mpsc::unbounded_channel();
    let mut announced: Option<([u8; 20], Instant)> = None;
    let mut republished = Instant::now();
    let (mut put_retry, mut announce_retry) = (Retry::new(), Retry::new());
    loop {
        if let (Some(signer), Some((text, head))) = (&signer, core.heads.head()) {
            let fresh = dht.held.lock().head.as_deref() != Some(text.as_str());
            if fresh && core.heads.head_origin().is_some_and(|(via, _)| via == Via::Own) {
                sign_items(&dht, &core, signer, &text, &head.magnet);
                dht.put_held(&core, &done_tx);
            }
        }
        if republished.elapsed() >= dht.republish || put_retry.due() {
            republished = Instant::now();
            dht.put_held(&core, &done_tx);
        }
        let last = core.applier.last_seq();
        let ih = core.fetcher.magnet_of(last).as_deref().and_then(magnet_ih);
        let retry = announce_retry.due();
        if let (Some(ih), Some(port)) = (ih, core.fetcher.swarm().listen_addr().map(|a| a.port()))
            && (retry || announced.is_none_or(|(a, at)| a != ih || at.elapsed() >= dht.republish))
        {
            announced = Some((ih, Instant::now()));
            let (node, done) = (dht.node.clone(), done_tx.clone());
            core.tasks.spawn(async move {
                let ok = match tokio::time::timeout(QUERY_TIMEOUT, node.announce(ih, port)).await {
                    Ok(Ok(())) => true,
                    Ok(Err(e)) => {
                        debug!(seq = last, "{e}");
                        false
                    }
                    Err(_) => {
                        debug!(seq = last, "an announce timed out");
                        false
                    }
                };
                let _ = done.send(Done::Announced(ok));
            });
        }
        let mut wait = dht.republish.saturating_sub(republished.elapsed());
        for at in [put_retry.at, announce_retry.at].into_iter().flatten() {
            wait = wait.min(at.saturating_duration_since(Instant::now()));
        }
        tokio::select! {
            _ = heads.changed() => {}
            _ = applied.changed() => {}
            Some(d) = done.recv() => match d {
                Done::Put(true) => put_retry.succeeded(),
                Done::Put(false) => put_retry.failed(dht.republish),
                Done::Announced(true) => announce_retry.succeeded(),
                Done::Announced(false) => announce_retry.failed(dht.republish),
            },
            () = tokio::time::sleep(wait) => {}
            _ = stop.wait_for(|s| *s) => break,
        }
    }
}

/// Makes the items of the head `text` (the node's own) under each Ed25519 member key the
/// node holds. The low 32 bits of each item's seq are the head's `iat`, which grows with each
/// signing and, unlike a count, survives a restart.
fn sign_items(dht: &Dht, core: &Core, signer: &Signer, text: &str, magnet: &str) {
    let Some(ih) = magnet_ih(magnet) else { return };
    let set = core.applier.authorities();
    let iat = core.heads.head().map_or(0, |(_, h)| h.issued_at);
    let mut items = Vec::new();
    for wallet in signer.keys() {
        if wallet.public_key().ed25519_bytes().is_none() {
            continue;
        }
        // The low 32 bits of `iat` (until 2106 that is `iat` itself).
        let low = u32::try_from(iat & u64::from(u32::MAX)).unwrap_or_default();
        match HeadItem::put(wallet, text, &ih, &set, low) {
            Ok(item) => items.push(item),
            Err(e) => warn!("cannot put the head in the DHT under {}: {e}", wallet.id()),
        }
    }
    *dht.held.lock() = Held { head: Some(text.to_owned()), items };
}

/// The longest wait between two polls of the members' slots when nothing new came.
const MAX_BACKOFF_FACTOR: u32 = 2;

/// Follows through the DHT: polls every Ed25519 member's slot for an item newer than the
/// last this node took from it, and offers the head inside. One member's slot stuck at a
/// high seq (an item whose head does not verify) blocks only that slot: the others are
/// polled as before. Polls every `poll` while heads come, backing off (doubling, up to
/// [`MAX_BACKOFF_FACTOR`] times `poll`) while none does.
async fn follow_loop(dht: Dht, core: Core, poll: Duration) {
    let mut stop = core.tasks.stopping();
    // Member key → the seq of the newest item taken from its slot.
    let mut taken: HashMap<[u8; 32], i64> = HashMap::new();
    // Items refused (by slot and seq), so one is judged once, not at every poll.
    let mut refused: std::collections::HashSet<([u8; 32], i64)> = Default::default();
    let mut wait = poll;
    info!("following the heads in the DHT");
    loop {
        let (network, set) = core.applier.in_force();
        let keys: Vec<[u8; 32]> =
            set.members().filter_map(|(_, k)| k.ed25519_bytes().copied()).collect();
        let gets = keys.iter().map(|key| {
            let node = dht.node.clone();
            let since = taken.get(key).copied();
            let salt = network.id().as_bytes().to_vec();
            async move {
                tokio::time::timeout(QUERY_TIMEOUT, node.get(key, &salt, since))
                    .await
                    .unwrap_or_default()
            }
        });
        let answers = tokio::select! {
            a = futures_util::future::join_all(gets) => a,
            _ = stop.wait_for(|s| *s) => break,
        };
        let mut newer = false;
        let mut items = Vec::new();
        for (key, answer) in keys.iter().zip(answers) {
            for item in answer {
                let item = match item {
                    Ok(item) => item,
                    Err(e) => {
                        debug!("a DHT item refused: {e}");
                        continue;
                    }
                };
                if refused.contains(&(item.key, item.seq)) {
                    continue;
                }
                if refused.len() >= 1024 {
                    refused.clear();
                }
                let head = match item.head(network.id(), &set) {
                    Ok((_, head)) => head,
                    Err(e) => {
                        let known = core.heads.head().map_or(0, |(_, h)| h.seq);
                        match item.hint(network.id()) {
                            // Signers this node does not know yet: perhaps a rotation it has
                            // not applied adds them. The bundles up to the head are fetched
                            // (and verified as any); the item is read again after each apply.
                            Ok((seq, magnet))
                                if seq > known && e.to_string().contains("no member") =>
                            {
                                let mut hint = dht.hint.lock();
                                if hint.as_ref().is_none_or(|(s, _)| *s < seq) {
                                    debug!(seq, "a head signed by keys not known yet: {e}");
                                    *hint = Some((seq, magnet));
                                }
                            }
                            _ => {
                                warn!(seq = item.seq, "a DHT item refused: {e}");
                                refused.insert((item.key, item.seq));
                            }
                        }
                        continue;
                    }
                };
                newer |= core.heads.offer(&head, Via::Dht);
                let kept = core.heads.head().is_some_and(|(text, _)| text == head);
                if !kept && !newer {
                    // Refused, or older than the head known: judged once. (A head waiting for
                    // keys a rotation adds is offered again by the store after each apply.)
                    refused.insert((item.key, item.seq));
                }
                if core.heads.head().is_some_and(|(text, _)| text == head) {
                    let seen = taken.entry(*key).or_insert(item.seq);
                    *seen = (*seen).max(item.seq);
                    items.push(item);
                }
            }
        }
        dht.learn(&core, &items);
        wait = if newer { poll } else { (wait * 2).min(poll * MAX_BACKOFF_FACTOR) };
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            _ = stop.wait_for(|s| *s) => break,
        }
    }
}
