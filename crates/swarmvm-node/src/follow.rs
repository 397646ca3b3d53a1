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

/// The longest a head may live (`exp - iat`): a follower refuses a head that claims to live
/// longer, and a sequencer refuses to start with a longer `--max-head-age`. Without a cap, one
/// head signed to live for years would hide for as long that its network stopped.
pub(crate) const MAX_HEAD_LIFETIME: Duration = Duration::from_secs(3600);

/// Refuses a `--max-head-age` longer than [`MAX_HEAD_LIFETIME`].
pub(crate) fn check_head_age(age: Duration) -> Result<(), String> {
    if age > MAX_HEAD_LIFETIME {
        return Err(format!(
            "--max-head-age {} is longer than a head may live ({}): followers would refuse every head",
            humantime::format_duration(age),
            humantime::format_duration(MAX_HEAD_LIFETIME)
        ));
    }
    Ok(())
}

/// True when `head` is newer than `known`: heads are ordered by when they were signed, then
/// by seq. A head is its authority's statement of the newest bundle at `iat`, so a later
/// statement supersedes an earlier one even when it names a lower seq: one head for a seq far
/// ahead (whose bundles no node has) is replaced by the next head signed, instead of hiding
/// every later head. A head signed ahead of the clock holds its place for at most the clock
/// leeway heads are verified with.
fn newer(head: &VerifiedHead, known: &VerifiedHead) -> bool {
    (head.issued_at, head.seq) > (known.issued_at, known.seq)
}

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
    /// (Newer as [`newer`] orders heads: by `iat`, then seq.)
    pub(crate) async fn wait_head(&self, seq: u64, iat: u64, limit: Duration) {
        let mut rx = self.inner.head_changed.subscribe();
        let _ = tokio::time::timeout(limit, rx.wait_for(|&(s, i)| (i, s) > (iat, seq))).await;
    }

    /// Keeps `head` as the newest known if it is newer ([`newer`]); a sequencer's own heads
    /// replace the one before when they name a later seq or, for the same seq, are signed
    /// later (its clock may have stepped back).
    fn store_head(&self, text: String, head: VerifiedHead, own: bool) {
        let position = (head.seq, head.issued_at);
        let mut heads = lock(&self.inner.heads);
        if let Some(k) = &heads.newest {
            let replaces =
                if own { position > (k.head.seq, k.head.issued_at) } else { newer(&head, &k.head) };
            if !replaces {
                return;
            }
        }
        heads.newest = Some(KnownHead { text, head });
        heads.stale_warned = false;
        drop(heads);
        self.inner.head_changed.send_if_modified(|h| {
            let changed = *h != position;
            if changed {
                *h = position;
            }
            changed
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
        let lifetime = head.expires_at.saturating_sub(head.issued_at);
        if lifetime > MAX_HEAD_LIFETIME.as_secs() {
            self.refuse_head(format!(
                "the head for seq {} would live {lifetime} s (iat {} to exp {}), longer than the {} s a head may live",
                head.seq,
                head.issued_at,
                head.expires_at,
                MAX_HEAD_LIFETIME.as_secs()
            ));
            return false;
        }
        if let Some((_, known)) = self.head()
            && !newer(&head, &known)
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
        self.store_head(text.to_owned(), head, false);
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
        // Followers order heads by `iat`: a clock stepped back must not make the new head
        // older than the one it replaces (or than its bundle).
        let known = self.head().map_or(0, |(_, h)| h.issued_at);
        let bundled = self.snapshot().and_then(|s| s.last_bundle()).map_or(0, |b| b.issued_at);
        let now = unix_now().max(known).max(bundled);
        let content = HeadContent {
            network: &network,
            seq,
            bundle,
            magnet,
            state_root,
            now,
            max_age: sequencer.max_head_age.as_secs().clamp(1, MAX_HEAD_LIFETIME.as_secs()),
        };
        let signed =
            sign_head(&sequencer.keys(), &content).map_err(|e| one_line(&e)).and_then(|text| {
                verify_head(&text, &network, &self.authorities(), now).map(|h| (text, h)).map_err(
                    |e| format!("the sequencer's keys cannot sign for the set in force: {e}"),
                )
            });
        match signed {
            Ok((text, head)) => self.store_head(text, head, true),
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
        if self.inner.follow.is_empty() {
            return Err(
                "this node is not the sequencer and follows no node; submit to the sequencer or to a node that follows it"
                    .into(),
            );
        }
        let me = self.node_id();
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
        for url in &self.inner.follow {
            let headers = [(HOPS_HEADER, (hops + 1).to_string()), (VIA_HEADER, via.clone())];
            match self.inner.client.post(url, path, content_type, body.clone(), &headers).await {
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
        if looped == self.inner.follow.len() {
            // Answered as a loop too (508), so that a node that forwarded it here passes this
            // one over for another it follows.
            return Err(format!(
                "{LOOP_MARK}every node this node follows sent the submission back to it (they follow it in turn): none of them reaches the sequencer"
            ));
        }
        Err(format!("no node it follows could be reached ({last})"))
    }
}

/// The header counting the nodes a forwarded submission went through.
pub(crate) const HOPS_HEADER: &str = "swarmvm-hops";
/// The header naming the nodes a forwarded submission went through ([`Node::node_id`]s,
/// comma-separated), so that one that comes back to a node is refused at once instead of
/// going round a loop of followers.
pub(crate) const VIA_HEADER: &str = "swarmvm-via";
/// The status of a submission that came back to a node it went through already.
pub(crate) const LOOP_DETECTED: u16 = 508;
/// How [`Node::forward`]'s error begins when every followed node sent the submission back:
/// it is answered [`LOOP_DETECTED`], not 503 ([`forward_failure`]).
const LOOP_MARK: &str = "loop: ";

/// A failed forward as the submission's refusal: 508 when every followed node sent it back
/// (so the node that forwarded it here tries another), else 503.
pub(crate) fn forward_failure(e: String) -> crate::submit::SubmitError {
    match e.strip_prefix(LOOP_MARK) {
        Some(why) => crate::submit::SubmitError::Looped(why.to_owned()),
        None => crate::submit::SubmitError::Unavailable(e),
    }
}

/// The node ids a [`VIA_HEADER`] value names.
fn via_ids(via: &str) -> impl Iterator<Item = &str> {
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

/// Nodes a submission may go through before it reaches the sequencer.
const MAX_HOPS: u32 = 8;

/// What the follower's fetch loop remembers.
#[derive(Default)]
struct Following {
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
    fn settle(&mut self, node: &Node, last: u64) {
        let done: Vec<u64> = self.wanted.range(..=last).map(|(s, _)| *s).collect();
        for seq in done {
            let Some(wanted) = self.wanted.remove(&seq) else { continue };
            for (hash, asked) in wanted.asked {
                let applied = matches!(
                    node.bundle_progress(hash),
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
    state.settle(node, last);
    check_peers(node, urls, state).await;
    let first = last + 1;
    let end = target.min(last + WINDOW);
    if first > end {
        return;
    }
    let fresh = std::mem::take(&mut state.refresh_peers);
    if fresh {
        state.peers_checked = Some(Instant::now());
    }
    let peers = followed_peers(node, urls, state, fresh).await;
    let signed = head.as_ref().and_then(|h| MagnetLink::parse(&h.magnet).ok().map(|m| (h.seq, m)));
    let retry = node.inner.poll.max(Duration::from_secs(1));
    for seq in first..=end {
        let magnet = signed.as_ref().filter(|(s, _)| *s == seq).map(|(_, m)| m);
        let trusted = signed.as_ref().map(|(_, m)| m);
        if !want(node, urls, state, seq, magnet, trusted, &peers, retry).await {
            break;
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
    node: &Node,
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
            node.own_tracker(t.as_str()) || trusted.is_some_and(|m| m.trackers.contains(t))
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
        match node.add_own(Source::Magnet(link), peers.to_vec()) {
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
fn on_its_way(node: &Node, hash: InfoHash, seq: u64) -> bool {
    match node.bundle_progress(hash) {
        None | Some((BundleState::Rejected, _)) => false,
        Some((_, Some(s))) => s == seq,
        Some((_, None)) => true,
    }
}

/// The magnet the followed node at `url` gives for bundle `seq`: `None` when it has none
/// (or cannot be reached), an error when what it gives is not a magnet link or it does not
/// answer within [`READ_TIMEOUT`].
async fn magnet_at(node: &Node, url: &str, seq: u64) -> Option<Result<MagnetLink, String>> {
    let path = format!("/v1/bundles/{seq}");
    let asked = node.inner.client.get(url, &path);
    let Ok(reply) = tokio::time::timeout(READ_TIMEOUT, asked).await else {
        return Some(Err(format!(
            "it did not answer for the magnet of seq {seq} within {}",
            humantime::format_duration(READ_TIMEOUT)
        )));
    };
    let reply = reply.ok()?;
    if reply.status != 200 {
        return None;
    }
    let text = reply.body.get("magnet").and_then(Value::as_str)?;
    Some(MagnetLink::parse(text).map_err(|e| {
        format!("it gave something that is not a magnet link for seq {seq}: {}", one_line(&e))
    }))
}

/// When a bundle asked for has gone [`PEERS_PATIENCE`] without resolving or fetching, reads
/// the followed nodes' BitTorrent addresses again (at most that often) and gives them to
/// every bundle still resolving or fetching that was asked with others (a followed node
/// restarted on another port), so that none waits on an address nobody listens at any more.
async fn check_peers(node: &Node, urls: &[String], state: &mut Following) {
    let stuck = state.wanted.values().flat_map(|w| &w.asked).any(|(hash, asked)| {
        asked.at.elapsed() >= PEERS_PATIENCE
            && matches!(
                node.bundle_state(*hash),
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
    // Only bundles asked with other peers are renewed (see `Node::renew_peers`).
    let pending: Vec<InfoHash> =
        state.wanted.values().flat_map(|w| w.asked.keys().copied()).collect();
    for hash in pending {
        node.renew_peers(hash, peers.clone());
    }
}

/// The followed nodes' BitTorrent addresses (each node's status's `listen`, with the URL's
/// host when it listens on every address). Each is read again after [`PEERS_TTL`], after
/// [`PEERS_RETRY`] when the last read failed, or now when `fresh` (unless the last read failed
/// within [`PEERS_RETRY`]); the reads due run at once,
/// each for at most [`READ_TIMEOUT`], so that a node that does not answer costs the loop that
/// long at most. When a read fails (the node is down, say), the address known before is kept:
/// the node may come back there.
async fn followed_peers(
    node: &Node,
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
async fn read_listen(node: &Node, url: &str) -> Option<Vec<SocketAddr>> {
    let reply = tokio::time::timeout(READ_TIMEOUT, node.inner.client.get(url, "/v1/status"))
        .await
        .ok()?
        .ok()?;
    if reply.status != 200 {
        return None;
    }
    let mut peers = Vec::new();
    if let Some(listen) = reply.body.get("listen").and_then(Value::as_str)
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

    #[test]
    fn heads_are_ordered_by_when_they_were_signed_then_by_seq_and_live_an_hour_at_most() {
        let head = |seq, iat| VerifiedHead {
            signers: Vec::new(),
            seq,
            bundle: BundleId::of_payload(b"b"),
            magnet: String::new(),
            state_root: Hash32::digest(b"r"),
            issued_at: iat,
            expires_at: iat + 60,
        };
        // A head for a seq far ahead gives way to the next one signed.
        let far = head(1_000_000_000, 100);
        assert!(newer(&head(2, 101), &far));
        assert!(!newer(&head(2, 100), &far));
        assert!(!newer(&far, &far));
        assert!(newer(&head(3, 100), &head(2, 100)));
        assert!(check_head_age(MAX_HEAD_LIFETIME).is_ok());
        assert!(check_head_age(MAX_HEAD_LIFETIME + Duration::from_secs(1)).is_err());
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
