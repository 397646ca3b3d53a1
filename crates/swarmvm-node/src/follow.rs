//! Heads and following: the newest signed head a node knows (signed by its own sequencer, or
//! polled from the nodes it follows), checked against its ledger; and the follower's loop,
//! which fetches the bundles it lacks, parents first, over BitTorrent.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use serde_json::Value;
use swarmvm_primitives::BundleId;
use swarmvm_swarm::{InfoHash, MagnetLink, Source};
use swarmvm_token::{HeadContent, VerifiedHead, VerifyError, sign_head, unix_now, verify_head};
use swarmvm_vm::Hash32;
use tracing::{debug, info, warn};

use crate::node::{Node, lock, one_line};
use crate::status::BundleState;

/// How a node follows others (`node run --follow URL... --poll 1s`).
#[derive(Debug, Clone)]
pub struct FollowOptions {
    /// The nodes' HTTP API URLs (`http://host:port`).
    pub urls: Vec<String>,
    /// How long to wait between polls when a node answered nothing new, and after an error.
    pub poll: Duration,
}

/// A head this node verified.
#[derive(Debug, Clone)]
pub(crate) struct KnownHead {
    pub(crate) text: String,
    pub(crate) head: VerifiedHead,
}

/// The newest head known, and the last refusal.
#[derive(Debug, Default)]
pub(crate) struct Heads {
    pub(crate) newest: Option<KnownHead>,
    pub(crate) refused: Option<String>,
    stale_warned: bool,
    /// A head signed by keys this node does not know yet (a rotation it has not applied
    /// adds them), and the seq it claims: the bundles up to it are fetched by seq, and it is
    /// verified again after each apply.
    waiting: Option<(String, u64)>,
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

/// What a head says against this node's ledger.
enum Against {
    /// It names a bundle this node has not applied yet.
    Ahead,
    /// It agrees with the ledger.
    Agrees,
    /// It names another bundle for a seq this node applied.
    OtherBundle(String),
    /// Same bundle, another root after it.
    OtherRoot(String),
}

impl Node {
    /// The newest head this node verified (expired or not), as its token and its claims.
    pub fn head(&self) -> Option<(String, VerifiedHead)> {
        lock(&self.inner.heads).newest.as_ref().map(|k| (k.text.clone(), k.head.clone()))
    }

    /// True when the newest head known has expired.
    pub fn is_stale(&self) -> bool {
        lock(&self.inner.heads).newest.as_ref().is_some_and(|k| k.head.expires_at <= unix_now())
    }

    /// Why this node stopped applying, if it diverged from the heads.
    pub fn diverged(&self) -> Option<String> {
        lock(&self.inner.diverged).clone()
    }

    /// Waits until a head newer than (`seq`, `iat`) is known, at most `limit`.
    pub(crate) async fn wait_head(&self, seq: u64, iat: u64, limit: Duration) {
        let mut rx = self.inner.head_changed.subscribe();
        let _ = tokio::time::timeout(limit, rx.wait_for(|h| *h > (seq, iat))).await;
    }

    fn store_head(&self, text: String, head: VerifiedHead) {
        let position = (head.seq, head.issued_at);
        let mut heads = lock(&self.inner.heads);
        if heads.newest.as_ref().is_some_and(|k| (k.head.seq, k.head.issued_at) >= position) {
            return;
        }
        heads.newest = Some(KnownHead { text, head });
        heads.stale_warned = false;
        drop(heads);
        self.inner.head_changed.send_if_modified(|h| {
            let newer = position > *h;
            if newer {
                *h = position;
            }
            newer
        });
    }

    fn refuse_head(&self, reason: String) {
        warn!("head refused: {reason}");
        lock(&self.inner.heads).refused = Some(reason);
    }

    /// What `head` says against the ledger.
    fn against(&self, head: &VerifiedHead) -> Against {
        let Some(snapshot) = self.snapshot() else { return Against::Ahead };
        let Ok(Some(record)) = snapshot.bundle(head.seq) else { return Against::Ahead };
        if record.id != head.bundle {
            return Against::OtherBundle(format!(
                "the head names bundle {} for seq {}, and this node applied bundle {}",
                head.bundle, head.seq, record.id
            ));
        }
        let root = snapshot
            .log(record.position, 1)
            .ok()
            .and_then(|l| l.into_iter().next())
            .map(|e| e.state_root)
            .unwrap_or_default();
        if root != head.state_root.to_hex() {
            return Against::OtherRoot(format!(
                "after bundle seq {} this node's state root is {root}, the head's is {}",
                head.seq, head.state_root
            ));
        }
        Against::Agrees
    }

    /// Takes a head polled from another node: verified against the set in force and the
    /// ledger. Returns true when it is newer than the newest known.
    pub(crate) fn offer_head(&self, text: &str) -> bool {
        let set = self.authorities();
        let network = self.network().id().to_owned();
        let head = match verify_head(text, &network, &set, unix_now()) {
            Ok(h) => h,
            Err(
                e @ (VerifyError::NotAMember(_)
                | VerifyError::UnknownKid(_)
                | VerifyError::ThresholdNotMet { .. }),
            ) => {
                // Perhaps signed by keys a rotation this node has not applied yet adds.
                let last = self.snapshot().and_then(|s| s.last_bundle()).map_or(0, |b| b.seq);
                if let Some(seq) = claimed_seq(text).filter(|s| *s > last) {
                    lock(&self.inner.heads).waiting = Some((text.to_owned(), seq));
                    self.refuse_head(format!(
                        "{e}; waiting: the bundles up to seq {seq} may rotate the keys in"
                    ));
                } else {
                    self.refuse_head(e.to_string());
                }
                return false;
            }
            Err(e) => {
                self.refuse_head(e.to_string());
                return false;
            }
        };
        if let Some((_, known)) = self.head()
            && (known.seq, known.issued_at) >= (head.seq, head.issued_at)
        {
            return false;
        }
        match self.against(&head) {
            Against::OtherBundle(why) => {
                self.refuse_head(why);
                return false;
            }
            Against::OtherRoot(why) => self.diverge(why),
            Against::Ahead | Against::Agrees => {}
        }
        self.store_head(text.to_owned(), head);
        true
    }

    fn diverge(&self, why: String) {
        let mut diverged = lock(&self.inner.diverged);
        if diverged.is_none() {
            warn!("diverged, not applying any more bundles: {why}");
            *diverged = Some(why);
        }
    }

    /// After a bundle applied: a sequencer signs a head for it; any other node checks it
    /// against the newest head.
    pub(crate) fn after_applied(
        &self,
        seq: u64,
        id: BundleId,
        root: Hash32,
        magnet: Option<String>,
    ) {
        if self.inner.sequencer.is_some() {
            if let Some(magnet) = magnet {
                self.sign_head(seq, id, root, &magnet);
            }
            return;
        }
        // A head waiting for keys a rotation adds: verified again (and kept waiting while
        // its signers are still unknown).
        let waiting = lock(&self.inner.heads).waiting.take();
        if let Some((text, _)) = waiting {
            self.offer_head(&text);
        }
        let Some((_, head)) = self.head() else { return };
        if head.seq != seq {
            return;
        }
        if head.bundle != id {
            self.refuse_head(format!(
                "the head names bundle {} for seq {seq}, and the bundle applied there is {id}",
                head.bundle
            ));
            lock(&self.inner.heads).newest = None;
        } else if head.state_root != root {
            self.diverge(format!(
                "after bundle seq {seq} this node's state root is {root}, the head's is {}",
                head.state_root
            ));
        }
    }

    /// The sequencer signs a head for bundle `seq`.
    fn sign_head(&self, seq: u64, bundle: BundleId, state_root: Hash32, magnet: &str) {
        let Some(sequencer) = &self.inner.sequencer else { return };
        let network = self.network().id().to_owned();
        let now = unix_now();
        let content = HeadContent {
            network: &network,
            seq,
            bundle,
            magnet,
            state_root,
            now,
            max_age: sequencer.max_head_age.as_secs().max(1),
        };
        let signed =
            sign_head(&sequencer.keys(), &content).map_err(|e| one_line(&e)).and_then(|text| {
                verify_head(&text, &network, &self.authorities(), now).map(|h| (text, h)).map_err(
                    |e| format!("the sequencer's keys cannot sign for the set in force: {e}"),
                )
            });
        match signed {
            Ok((text, head)) => self.store_head(text, head),
            Err(e) => warn!("cannot sign a head for seq {seq}: {e}"),
        }
    }

    /// The sequencer signs its head again (a new `iat` and `exp`) for its last applied
    /// bundle, so that followers never see it expire while it runs.
    pub(crate) fn refresh_head(&self) {
        let Some(snapshot) = self.snapshot() else { return };
        let Some(last) = snapshot.last_bundle() else { return };
        let root = snapshot.state_root();
        drop(snapshot);
        match self.magnet_of(last.seq) {
            Some(magnet) => self.sign_head(last.seq, last.id, root, &magnet),
            None => {
                debug!(seq = last.seq, "no head yet: this node does not seed bundle {}", last.seq)
            }
        }
    }

    /// Warns once when the newest head expired.
    fn check_stale(&self) {
        let mut heads = lock(&self.inner.heads);
        let Some(k) = &heads.newest else { return };
        if k.head.expires_at <= unix_now() && !heads.stale_warned {
            warn!(
                seq = k.head.seq,
                expired_at = k.head.expires_at,
                "stale: the newest head expired; the sequencer stopped publishing or cannot be reached"
            );
            heads.stale_warned = true;
        }
    }

    /// Forwards a request to the nodes this node follows until one of them answers it (not a
    /// 5xx, not unreachable); `hops` counts the nodes it went through already.
    pub(crate) async fn forward(
        &self,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
        hops: u32,
    ) -> Result<crate::client::Reply, String> {
        if self.inner.follow.is_empty() {
            return Err(
                "this node is not the sequencer and follows no node; submit to the sequencer or to a node that follows it"
                    .into(),
            );
        }
        if hops >= MAX_HOPS {
            return Err(format!("forwarded through {hops} nodes without reaching the sequencer"));
        }
        // The next followed node is tried only when one cannot be reached; any answer (a
        // relayed 503 included) is final, so that a submission costs at most one request per
        // hop while the sequencer is away.
        let mut last = String::new();
        for url in &self.inner.follow {
            let headers = [(HOPS_HEADER, (hops + 1).to_string())];
            match self.inner.client.post(url, path, content_type, body.clone(), &headers).await {
                Ok(reply) => return Ok(reply),
                Err(e) => last = e.to_string(),
            }
        }
        Err(format!("no node it follows could be reached ({last})"))
    }
}

/// The header counting the nodes a forwarded submission went through.
pub(crate) const HOPS_HEADER: &str = "swarmvm-hops";
/// Nodes a submission may go through before it reaches the sequencer.
const MAX_HOPS: u32 = 8;

/// What the follower's fetch loop remembers.
#[derive(Default)]
struct Following {
    /// seq → the bundle asked for it, and when.
    requested: BTreeMap<u64, (InfoHash, Instant)>,
    /// URL → its BitTorrent address, and when it was asked.
    peers: HashMap<String, (Vec<SocketAddr>, Instant)>,
}

/// Follows: one task per followed node polls its heads (each poll waits at the node for a
/// newer head), and this loop fetches the bundles between the last applied one and the
/// newest head whenever either changes, and at least every `poll`.
pub(crate) async fn follow_loop(node: Node) {
    let urls = node.inner.follow.clone();
    info!(urls = ?urls, "following");
    for url in &urls {
        let (n, url) = (node.clone(), url.clone());
        node.spawn(async move { poll_heads(n, url).await });
    }
    let mut stop = node.stopping();
    let mut heads = node.inner.head_changed.subscribe();
    let mut applied = node.inner.applied.subscribe();
    let mut state = Following::default();
    loop {
        fetch_missing(&node, &urls, &mut state).await;
        node.check_stale();
        tokio::select! {
            _ = heads.changed() => {}
            _ = applied.changed() => {}
            () = tokio::time::sleep(node.inner.poll) => {}
            _ = stop.wait_for(|s| *s) => break,
        }
    }
}

/// Polls the heads of the node at `url`, offering each to this node.
async fn poll_heads(node: Node, url: String) {
    let mut stop = node.stopping();
    loop {
        let (seq, iat) = node.head().map_or((0, 0), |(_, h)| (h.seq, h.issued_at));
        let path = format!("/v1/head?seq={seq}&iat={iat}&wait={}", LONG_POLL.as_secs());
        let polled = tokio::select! {
            r = node.inner.client.get(&url, &path) => r,
            _ = stop.wait_for(|s| *s) => break,
        };
        let newer = match polled {
            Ok(reply) if reply.status == 200 => {
                reply.body.get("head").and_then(Value::as_str).is_some_and(|t| node.offer_head(t))
            }
            Ok(reply) => {
                debug!(url, "no head: {}", reply.error_line());
                false
            }
            Err(e) => {
                debug!(url, "{e}");
                false
            }
        };
        if !newer {
            tokio::select! {
                () = tokio::time::sleep(node.inner.poll) => {}
                _ = stop.wait_for(|s| *s) => break,
            }
        }
    }
}

/// Asks for the bundles after the last applied one, up to the newest head (at most
/// [`WINDOW`] ahead): the head's own by its magnet, the others by `GET /v1/bundles/{seq}` of
/// the followed nodes, each from the BitTorrent peers of those nodes besides the session's
/// own.
async fn fetch_missing(node: &Node, urls: &[String], state: &mut Following) {
    if node.diverged().is_some() {
        return;
    }
    let head = node.head().map(|(_, h)| h);
    let waiting = lock(&node.inner.heads).waiting.as_ref().map(|(_, s)| *s);
    let last = node.snapshot().and_then(|s| s.last_bundle()).map_or(0, |b| b.seq);
    let verified = head.as_ref().map_or(0, |h| h.seq);
    // Beyond the verified head, toward a head whose signers a rotation may add, one bundle at
    // a time: each may change the set the next is signed by.
    let target = match waiting {
        Some(w) if w > verified => verified.max(last + 1).min(w),
        _ => verified,
    };
    state.requested.retain(|s, _| *s > last);
    let retry = node.inner.poll.max(Duration::from_secs(1));
    for seq in (last + 1)..=target.min(last + WINDOW) {
        if let Some((hash, at)) = state.requested.get(&seq) {
            match node.bundle_state(*hash) {
                Some(s) if s != BundleState::Rejected => continue,
                Some(_) if at.elapsed() < retry => continue,
                _ => {}
            }
        }
        let magnet = match &head {
            Some(h) if h.seq == seq => Some(h.magnet.clone()),
            _ => magnet_from(node, urls, seq).await,
        };
        let Some(link) = magnet.and_then(|m| MagnetLink::parse(&m).ok()) else {
            debug!(seq, "no usable magnet link for seq {seq} yet");
            continue;
        };
        let mut peers = Vec::new();
        for url in urls {
            peers.extend(peers_of(node, url, state).await);
        }
        match node.add_with_peers(Source::Magnet(link), peers) {
            Ok(hash) => {
                state.requested.insert(seq, (hash, Instant::now()));
            }
            Err(e) => {
                debug!(seq, "cannot fetch bundle seq {seq} now: {}", one_line(&e));
                break;
            }
        }
    }
}

/// The magnet of bundle `seq` from the first followed node that has it.
async fn magnet_from(node: &Node, urls: &[String], seq: u64) -> Option<String> {
    for url in urls {
        if let Ok(r) = node.inner.client.get(url, &format!("/v1/bundles/{seq}")).await
            && r.status == 200
            && let Some(m) = r.body.get("magnet").and_then(Value::as_str)
        {
            return Some(m.to_owned());
        }
    }
    None
}

/// The BitTorrent address of the node at `url` (its status's `listen`, with the URL's host
/// when it listens on every address), asked at most every 30 s.
async fn peers_of(node: &Node, url: &str, state: &mut Following) -> Vec<SocketAddr> {
    if let Some((peers, at)) = state.peers.get(url)
        && at.elapsed() < Duration::from_secs(30)
    {
        return peers.clone();
    }
    let mut peers = Vec::new();
    if let Ok(reply) = node.inner.client.get(url, "/v1/status").await
        && let Some(listen) = reply.body.get("listen").and_then(Value::as_str)
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
    state.peers.insert(url.to_owned(), (peers.clone(), Instant::now()));
    peers
}

/// The `seq` a head claims, read without verifying anything (compact or JSON serialization).
fn claimed_seq(text: &str) -> Option<u64> {
    use base64::Engine as _;
    let payload = if text.starts_with('{') {
        let v: Value = serde_json::from_str(text).ok()?;
        v.get("payload")?.as_str()?.to_owned()
    } else {
        text.split('.').nth(1)?.to_owned()
    };
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).ok()?;
    let claims: Value = serde_json::from_slice(&bytes).ok()?;
    claims.get("seq")?.as_u64()
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
}
