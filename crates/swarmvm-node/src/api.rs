//! The node's API: typed reads (status, bundles, state pages, receipts, head, wallets,
//! contracts), each answered from the ledger's last commit and the parts' state, and the
//! writes anyone may ask of a node (bundles to fetch, submissions). The HTTP routes, the
//! event stream, the explorer and the command line all call it; it calls the parts.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use base64::Engine as _;
use serde_json::Value;
use swarmvm_ledger::{Evidence, LogEntry, ReadError, Receipt, Snapshot};
use swarmvm_primitives::WalletId;
use swarmvm_swarm::{InfoHash, Source, TorrentFile};
use swarmvm_token::{AuthoritySet, Network, VerifiedHead};
use swarmvm_vm::{Hash32, Table};

use crate::applier::Applier;
use crate::client::Reply;
use crate::core::Core;
use crate::counters::ApplyTimes;
use crate::error::NodeError;
use crate::follow::{Follower, forward_failure};
use crate::heads::HeadStore;
use crate::protocol::{
    AuthoritySummary, BatchResult, BundleAt, BundlePage, BundleStatus, ContractState, ContractView,
    EvidenceSummary, HeadSummary, Refusal, RegistrationsAnswer, RegistrationsBody, STATUS_BUNDLES,
    SequencerSummary, StatePage, Status, TransferTotals, WalletView,
};
use crate::replica::Replica;
use crate::sequencer::{CutFailures, Sequencer};

/// Who takes submissions on a node: a sequencer, an authority replica, or neither (they are
/// forwarded).
pub(crate) enum Writer {
    None,
    Sequencer(Arc<Sequencer>),
    Replica(Arc<Replica>),
}
use crate::submit::{SubmitError, check_prechecked, precheck, token_of};
use crate::tasks::Tasks;

struct Inner {
    core: Core,
    sequencer: Option<Arc<Sequencer>>,
    replica: Option<Arc<Replica>>,
    follower: Follower,
    relay: crate::relay::Relay,
    wallet: Option<WalletId>,
    started_at: u64,
    http_addr: OnceLock<SocketAddr>,
    times: Arc<ApplyTimes>,
}

/// The API of a running node. Cloning gives another handle to the same node.
#[derive(Clone)]
pub struct Api {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Api").field("data_dir", &self.data_dir()).finish_non_exhaustive()
    }
}

impl Api {
    pub(crate) fn new(
        core: Core,
        writer: Writer,
        follower: Follower,
        relay: crate::relay::Relay,
        wallet: Option<WalletId>,
        times: Arc<ApplyTimes>,
    ) -> Self {
        let (sequencer, replica) = match writer {
            Writer::None => (None, None),
            Writer::Sequencer(s) => (Some(s), None),
            Writer::Replica(r) => (None, Some(r)),
        };
        Self {
            inner: Arc::new(Inner {
                core,
                sequencer,
                replica,
                follower,
                relay,
                wallet,
                started_at: swarmvm_token::unix_now(),
                http_addr: OnceLock::new(),
                times,
            }),
        }
    }

    /// The authority replica this node runs, if it is one.
    pub(crate) fn replica(&self) -> Option<&Arc<Replica>> {
        self.inner.replica.as_ref()
    }

    pub(crate) fn applier(&self) -> &Applier {
        &self.inner.core.applier
    }

    pub(crate) fn heads(&self) -> &HeadStore {
        &self.inner.core.heads
    }

    pub(crate) fn tasks(&self) -> &Tasks {
        &self.inner.core.tasks
    }

    pub(crate) fn apply_times(&self) -> &ApplyTimes {
        &self.inner.times
    }

    /// The sequencer's cuts that failed in a row (`None` on other nodes).
    pub(crate) fn cut_failures(&self) -> Option<CutFailures> {
        self.inner.sequencer.as_ref().map(|s| s.cut_failures())
    }

    /// The requests that forwarded contracts to the nodes this node follows, and the
    /// contracts they carried (this run).
    pub(crate) fn forward_totals(&self) -> (u64, u64) {
        self.inner.relay.counts().totals()
    }

    /// This node's name in the path of a forwarded submission.
    pub(crate) fn node_id(&self) -> &str {
        self.inner.follower.node_id()
    }

    pub(crate) fn set_http_addr(&self, addr: SocketAddr) {
        let _ = self.inner.http_addr.set(addr);
    }

    /// Waits until a head newer than (`seq`, `iat`) is known, at most `limit`.
    pub(crate) async fn wait_head(&self, seq: u64, iat: u64, limit: Duration) {
        self.heads().wait_head(seq, iat, limit).await;
    }

    /// The data folder.
    pub fn data_dir(&self) -> &Path {
        self.inner.core.fetcher.data_dir()
    }

    /// Where peers reach this node.
    pub fn listen_addr(&self) -> Option<SocketAddr> {
        self.inner.core.fetcher.swarm().listen_addr()
    }

    /// Where the HTTP API listens, if it does.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.inner.http_addr.get().copied()
    }

    /// Adds a bundle to fetch, verify and apply. Returns its info-hash at once; the work goes
    /// on in the background. Adding a bundle the node knows already changes nothing, unless
    /// it was refused: then it is tried again. A torrent that cannot be a bundle is refused
    /// at once, before anything is fetched or reserved for it, and so is any bundle beyond
    /// the bound on pending ones ([`NodeError::Busy`]). This is how bundles from anyone come
    /// (the API, the drop folder); the node's own take [`Api::add_own`].
    pub fn add(&self, source: Source) -> Result<InfoHash, NodeError> {
        self.inner.core.fetcher.add(source)
    }

    /// [`Api::add`], asking `peers` for it besides the session's own.
    pub fn add_with_peers(
        &self,
        source: Source,
        peers: Vec<SocketAddr>,
    ) -> Result<InfoHash, NodeError> {
        self.inner.core.fetcher.add_with_peers(source, peers)
    }

    /// Adds one of the node's own bundles (given with `--bundle`, or a followed head's),
    /// asking `peers` for it besides the session's own: as [`Api::add`], but in pending
    /// slots of its own (`max_pending` more), which bundles strangers post never take.
    pub fn add_own(&self, source: Source, peers: Vec<SocketAddr>) -> Result<InfoHash, NodeError> {
        self.inner.core.fetcher.add_own(source, peers)
    }

    /// Applies a bundle folder of this node's own (an authority publishing, the demo's
    /// authority) through the same path as fetched ones, then seeds it from where it is.
    /// Returns its torrent.
    pub async fn publish(&self, dir: &Path) -> Result<TorrentFile, NodeError> {
        self.inner.core.fetcher.publish(dir).await
    }

    /// Waits until the bundle `seq` has applied, at most `limit`. True if it did.
    pub async fn wait_applied(&self, seq: u64, limit: Duration) -> bool {
        self.applier().wait_applied(seq, limit).await
    }

    /// The network this node follows.
    pub fn network(&self) -> &Network {
        self.applier().network()
    }

    /// The authority set in force: the state's, or the network's first set.
    pub fn authorities(&self) -> AuthoritySet {
        self.applier().authorities()
    }

    /// The ledger as its last commit left it (`None` once the node stopped). Never waits for
    /// a bundle being applied.
    pub fn snapshot(&self) -> Option<Snapshot> {
        self.applier().snapshot()
    }

    /// The newest head this node verified (expired or not), as its token and its claims.
    pub fn head(&self) -> Option<(String, VerifiedHead)> {
        self.heads().head()
    }

    /// True when the newest head known has expired.
    pub fn is_stale(&self) -> bool {
        self.heads().is_stale()
    }

    /// Why this node stopped applying, if it diverged from the heads.
    pub fn diverged(&self) -> Option<String> {
        self.heads().diverged()
    }

    /// The node's status. After the node stopped it is the status at that moment.
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
        let summary = self.applier().summary();
        let last_seq = summary.last_seq;
        for t in &mut torrents {
            if t.shown(last_seq) != t.state {
                t.state = t.shown(last_seq);
                t.reason = None;
            }
        }
        let diverged = self.diverged();
        Status {
            peer_id: self.inner.core.fetcher.swarm().peer_id(),
            started_at: self.inner.started_at,
            wallet: self.inner.wallet.clone(),
            listen: self.listen_addr().map(|a| a.to_string()),
            network: summary.network,
            authorities: AuthoritySummary::of(&self.authorities()),
            last_seq,
            state_root: summary.state_root,
            batches: summary.batches,
            torrents,
            torrents_known,
            transfer,
            evidence: self
                .evidence()
                .unwrap_or_default()
                .iter()
                .map(|e| EvidenceSummary { seq: e.seq, kept: e.kept, other: e.other })
                .collect(),
            head: self.head().map(|(_, h)| {
                let mut summary = HeadSummary::of(&h);
                if let Some((via, at)) = self.heads().head_origin() {
                    summary.via = Some(via.name().to_owned());
                    summary.received_at = Some(at);
                }
                summary
            }),
            stale: self.is_stale(),
            diverged: diverged.is_some(),
            diverged_reason: diverged,
            head_refused: self.heads().refused(),
            sequencer: self
                .inner
                .sequencer
                .as_ref()
                .map(|s| SequencerSummary { queued: s.queued() })
                .or_else(|| {
                    self.inner.replica.as_ref().map(|r| SequencerSummary { queued: r.queued() })
                }),
            cluster: self.inner.replica.as_ref().map(|r| cluster_summary(r)),
            following: self.inner.follower.urls().to_vec(),
            snapshot: self.inner.core.heads.published_snapshot(),
            joined: self.inner.core.snapshots.joined().or_else(|| {
                let seq = self.snapshot()?.snapshot_seq()?;
                Some(crate::protocol::Joined {
                    from: "snapshot".into(),
                    seq: Some(seq),
                    reason: None,
                    bytes: None,
                    fetched: None,
                })
            }),
            dht: self.inner.follower.dht().map(|d| d.addr().to_string()),
        }
    }

    /// The signed DHT items this node holds for the head `text` (`GET /v1/head`'s `items`).
    pub fn head_items(&self, text: &str) -> Vec<crate::protocol::DhtItem> {
        self.inner
            .follower
            .dht()
            .map(|d| d.items(text).iter().map(crate::dht::item_json).collect())
            .unwrap_or_default()
    }

    /// Fork evidence: pairs of validly signed bundles for one seq (empty once stopped).
    pub fn evidence(&self) -> Result<Vec<Evidence>, ReadError> {
        self.snapshot().map_or(Ok(Vec::new()), |s| Ok(crate::reads::evidence(&s)?.evidence))
    }

    /// On an authority replica: members seen signing two conflicting manifests or heads for
    /// one seq.
    pub fn equivocations(&self) -> Vec<crate::protocol::Equivocation> {
        self.inner.replica.as_ref().map(|r| r.equivocations()).unwrap_or_default()
    }

    /// Every bundle the node knows, oldest first.
    pub fn bundles(&self) -> Vec<BundleStatus> {
        self.inner.core.fetcher.bundles()
    }

    /// The bundles the node knows from position `from` on (1 is the oldest; 0 is taken as
    /// 1), at most `limit`, oldest first: `GET /v1/bundles?from=N&limit=N`.
    pub fn bundles_page(&self, from: u64, limit: usize) -> BundlePage {
        self.inner.core.fetcher.bundles_page(from, limit)
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

    /// A page of the state table `table`, in id order: at most `limit` entries after the id
    /// `after`. `None` once the node stopped.
    pub fn state_page(
        &self,
        table: Table,
        after: Option<&str>,
        limit: usize,
    ) -> Option<Result<StatePage, ReadError>> {
        Some(crate::reads::state_page(&self.snapshot()?, table, after, limit))
    }

    /// The entry `id` of the state table `table` (`Ok(None)` when absent). `None` once the
    /// node stopped.
    pub fn state_entry(
        &self,
        table: Table,
        id: &str,
    ) -> Option<Result<Option<crate::protocol::StateEntry>, ReadError>> {
        Some(crate::reads::state_entry(&self.snapshot()?, table, id))
    }

    /// The entry `id` of `table`, or its absence, with its proof against the head of the last
    /// commit. `None` once the node stopped.
    pub fn proof(
        &self,
        table: Table,
        id: &str,
    ) -> Option<Result<crate::protocol::ProofAnswer, crate::reads::ProveError>> {
        Some(crate::reads::proof(&self.snapshot()?, table, id))
    }

    /// The state root (as it was when the node stopped, once stopped).
    pub fn state_root(&self) -> Hash32 {
        match self.snapshot() {
            Some(s) => s.state_root(),
            None => self.applier().summary().state_root,
        }
    }

    /// Every entry of `table` as id → value (empty once stopped).
    fn table(&self, table: Table) -> crate::protocol::Table {
        self.snapshot().map(|s| crate::reads::table(&s, table)).unwrap_or_default()
    }

    /// Registered operations: action → handler.
    pub fn operations(&self) -> crate::protocol::Table {
        self.table(Table::Operation)
    }

    /// Registered wallets with their labels and keys.
    pub fn wallets(&self) -> crate::protocol::Table {
        self.table(Table::Wallet)
    }

    /// One registered wallet, with its last used nonce (the next contract's is one more);
    /// `None` when it is not registered.
    pub fn wallet(&self, id: &str) -> Option<WalletView> {
        crate::reads::wallet(&self.snapshot()?, id)
    }

    /// Why this node no longer holds (or never held) bundle `seq`, though the chain has it:
    /// pruned (`--keep-bundles`), or before the snapshot its ledger started from.
    pub fn bundle_gone(&self, seq: u64) -> Option<String> {
        let pruned = self.inner.core.snapshots.pruned_through();
        if seq == 0 {
            return None;
        }
        if seq <= pruned {
            return Some(format!(
                "bundle seq {seq} was pruned here (bundles up to seq {pruned}; --keep-bundles): ask a node that keeps it"
            ));
        }
        let started = self.snapshot()?.snapshot_seq()?;
        (seq < started).then(|| {
            format!("this node started from the snapshot of seq {started} and never held bundle seq {seq}")
        })
    }

    /// The applied bundle `seq`, with the magnet of a torrent of it this node seeds (`None`
    /// when it applied it offline). `None` when it has not applied that bundle.
    pub fn bundle_at(&self, seq: u64) -> Option<BundleAt> {
        let record = self.snapshot()?.bundle(seq).ok()??;
        Some(BundleAt {
            seq,
            bundle: record.id,
            parent: record.parent,
            manifest: record.manifest,
            magnet: self.inner.core.fetcher.magnet_of(seq),
        })
    }

    /// What became of contract `id` (the SHA-256 of its token): pending while it waits in
    /// the sequencer's queue (on the sequencer) or after this node forwarded it there;
    /// applied or rejected once a batch held it; `None` when unknown here.
    pub fn contract(&self, id: &Hash32) -> Result<Option<ContractView>, ReadError> {
        let Some(snapshot) = self.snapshot() else { return Ok(None) };
        if let Some(view) = crate::reads::contract(&snapshot, id)? {
            return Ok(Some(view));
        }
        let dropped = match &self.inner.replica {
            Some(r) => r.dropped(id),
            None => self.inner.sequencer.as_ref().and_then(|s| s.dropped(id)),
        };
        if let Some(reason) = dropped {
            return Ok(Some(ContractView {
                state: ContractState::Rejected,
                reason: Some(reason),
                ..ContractView::pending(*id)
            }));
        }
        let queued = self.inner.sequencer.as_ref().is_some_and(|s| s.is_queued(id))
            || self.inner.replica.as_ref().is_some_and(|r| r.is_queued(id));
        let pending = queued || self.inner.follower.was_forwarded(id);
        Ok(pending.then(|| ContractView::pending(*id)))
    }

    /// Receipts from log position `from`, at most `limit`.
    pub fn receipts(&self, from: u64, limit: usize) -> Result<Vec<Receipt>, ReadError> {
        self.snapshot()
            .map_or(Ok(Vec::new()), |s| Ok(crate::reads::receipts(&s, from, limit)?.receipts))
    }

    /// The ledger's log from position `from`, at most `limit`.
    pub fn log(&self, from: u64, limit: usize) -> Result<Vec<LogEntry>, ReadError> {
        self.snapshot().map_or(Ok(Vec::new()), |s| Ok(crate::reads::log(&s, from, limit)?.log))
    }

    /// Takes a signed contract (`POST /v1/contracts`): the sequencer checks it and queues it
    /// durably; any other node checks its form and network and forwards it to the nodes it
    /// follows until the sequencer answers (a client's own in a batch with the others that
    /// arrive at the same time). Returns its id once the sequencer stored it.
    /// `hops` and `via` say which nodes forwarded it already (the `swarmvm-hops` and
    /// `swarmvm-via` headers; 0 and `""` for a client's own submission).
    pub async fn submit_contract(
        &self,
        body: &[u8],
        hops: u32,
        via: &str,
    ) -> Result<Hash32, Refusal> {
        let token = token_of(body)?;
        let network = self.network().id().to_owned();
        let signer = precheck(token, &network)?;
        if let Some(replica) = self.inner.replica.clone() {
            let checked = self.check_for_replica(&replica, token, signer, &network).await?;
            replica.submit(vec![crate::queue::Item::Contract(token.to_owned())]).await?;
            return Ok(checked.id);
        }
        let Some(sequencer) = self.inner.sequencer.clone() else {
            let relay = &self.inner.relay;
            let relayed = if hops == 0 && via.is_empty() {
                relay.submit(token.to_owned()).await
            } else {
                relay
                    .forward(&[token.to_owned()], hops, via)
                    .await
                    .pop()
                    .unwrap_or_else(|| Err("no answer".into()))
            };
            return self.forward_outcome(token, relayed);
        };
        let checked = self.check_contract(&sequencer, token, signer, &network).await?;
        let id = checked.id;
        sequencer.submit(crate::queue::Item::Contract(token.to_owned()), Some(checked)).await?;
        Ok(id)
    }

    /// Takes signed contracts, one per line (`POST /v1/contracts/batch`, at most
    /// [`MAX_BATCH_LINES`](crate::relay::MAX_BATCH_LINES)): each gets the answer
    /// [`Api::submit_contract`] would give it alone, in the order of the lines. The sequencer
    /// checks their signatures together and queues the ones that pass in that order; any
    /// other node forwards the ones whose form and network it accepts as one batch. The whole
    /// body is refused only when it cannot be read as lines.
    pub async fn submit_contracts(
        &self,
        body: &[u8],
        hops: u32,
        via: &str,
    ) -> Result<Vec<BatchResult>, Refusal> {
        let text = std::str::from_utf8(body).map_err(|_| {
            SubmitError::Malformed("not signed contracts: the body is not text".into())
        })?;
        let text = text.strip_suffix('\n').unwrap_or(text);
        if text.is_empty() {
            return Err(SubmitError::Malformed(
                "the body is empty; send signed contracts, one compact JWS per line".into(),
            )
            .into());
        }
        let lines: Vec<&str> = text.split('\n').collect();
        if lines.len() > crate::relay::MAX_BATCH_LINES {
            return Err(SubmitError::Malformed(format!(
                "{} lines; a batch holds at most {} contracts",
                lines.len(),
                crate::relay::MAX_BATCH_LINES
            ))
            .into());
        }
        let network = self.network().id().to_owned();
        let prechecked: Vec<Result<(&str, Option<String>), Refusal>> = lines
            .iter()
            .map(|line| {
                let token = token_of(line.as_bytes())?;
                Ok((token, precheck(token, &network)?))
            })
            .collect();
        let outcomes: Vec<Result<Hash32, Refusal>> = match self.inner.sequencer.clone() {
            None if self.inner.replica.is_some() => {
                let replica = self.inner.replica.clone().expect("a replica");
                let submits = prechecked.into_iter().map(|p| {
                    let (replica, network) = (&replica, &network);
                    async move {
                        let (token, signer) = p?;
                        let checked =
                            self.check_for_replica(replica, token, signer, network).await?;
                        replica
                            .submit(vec![crate::queue::Item::Contract(token.to_owned())])
                            .await?;
                        Ok(checked.id)
                    }
                });
                futures_util::future::join_all(submits).await
            }
            Some(sequencer) => {
                // The signatures are checked together; the contracts that pass are then
                // handed to the queue in the order of their lines (each is sent to the
                // queue's writer when its future is first polled), so a wallet's nonces may
                // follow each other within one batch.
                let checks = prechecked.into_iter().map(|p| {
                    let (sequencer, network) = (&sequencer, &network);
                    async move {
                        let (token, signer) = p?;
                        let checked =
                            self.check_contract(sequencer, token, signer, network).await?;
                        Ok::<_, Refusal>((token, checked))
                    }
                });
                let checked = futures_util::future::join_all(checks).await;
                let queued = checked.into_iter().map(|c| {
                    let sequencer = &sequencer;
                    async move {
                        let (token, checked) = c?;
                        let id = checked.id;
                        let item = crate::queue::Item::Contract(token.to_owned());
                        sequencer.submit(item, Some(checked)).await?;
                        Ok(id)
                    }
                });
                futures_util::future::join_all(queued).await
            }
            None => {
                let tokens: Vec<String> = prechecked
                    .iter()
                    .filter_map(|p| p.as_ref().ok().map(|(t, _)| (*t).to_owned()))
                    .collect();
                let mut relayed = self.inner.relay.forward(&tokens, hops, via).await.into_iter();
                prechecked
                    .into_iter()
                    .map(|p| {
                        let (token, _) = p?;
                        let outcome = relayed.next().unwrap_or_else(|| Err("no answer".into()));
                        self.forward_outcome(token, outcome)
                    })
                    .collect()
            }
        };
        Ok(outcomes
            .into_iter()
            .map(|o| match o {
                Ok(id) => BatchResult::accepted(id),
                Err(r) => BatchResult::refused(&r),
            })
            .collect())
    }

    /// The sequencer's check of a contract [`precheck`] passed: under rules 4 its signature in
    /// a batch with the others waiting.
    async fn check_contract(
        &self,
        sequencer: &Sequencer,
        token: &str,
        signer: Option<String>,
        network: &str,
    ) -> Result<crate::submit::Checked, Refusal> {
        let snapshot = self
            .snapshot()
            .ok_or_else(|| SubmitError::Unavailable("the ledger cannot be read now".into()))?;
        let keys = &sequencer.wallet_keys;
        Ok(match &sequencer.batcher {
            Some(batcher) => {
                crate::submit::check_batched(&snapshot, token, signer, network, keys, batcher)
                    .await?
            }
            None => check_prechecked(&snapshot, token, signer, network, keys)?,
        })
    }

    /// An authority replica's check of a contract [`precheck`] passed (under rules 4 its
    /// signature in a batch with the others waiting), remembered by the replica so that its
    /// cut and apply do not check the signature again.
    async fn check_for_replica(
        &self,
        replica: &Replica,
        token: &str,
        signer: Option<String>,
        network: &str,
    ) -> Result<crate::submit::Checked, Refusal> {
        let snapshot = self
            .snapshot()
            .ok_or_else(|| SubmitError::Unavailable("the ledger cannot be read now".into()))?;
        let keys = &replica.wallet_keys;
        let checked = match &replica.batcher {
            Some(batcher) => {
                crate::submit::check_batched(&snapshot, token, signer, network, keys, batcher)
                    .await?
            }
            None => check_prechecked(&snapshot, token, signer, network, keys)?,
        };
        replica.remember(&checked);
        Ok(checked)
    }

    /// What the nodes this node follows answered for contract `token` it forwarded: its id
    /// when the sequencer took it (remembered as pending here), else their refusal.
    fn forward_outcome(
        &self,
        token: &str,
        outcome: crate::relay::Relayed,
    ) -> Result<Hash32, Refusal> {
        let id = Hash32::digest(token.as_bytes());
        let reply = outcome.map_err(forward_failure)?;
        if reply.status == 202 {
            let named = reply.body.get("id").and_then(Value::as_str);
            if named.is_some_and(|named| named != id.to_hex()) {
                return Err(SubmitError::Unavailable(
                    "the node it follows answered for another contract".into(),
                )
                .into());
            }
            self.inner.follower.forwarded(id);
            return Ok(id);
        }
        if reply.status >= 500 {
            return Err(SubmitError::Unavailable(format!(
                "the nodes it follows did not reach the sequencer: {}",
                reply.error_line()
            ))
            .into());
        }
        Err(relayed(&reply))
    }

    /// Takes registration tokens and modules for the next cut, or a whole folder signed
    /// elsewhere to publish as the next bundle (`POST /v1/registrations`, a JSON body
    /// `{"tokens", "modules" (base64), "manifest"?, "contracts"?}`); other nodes forward it.
    /// Returns the status and the answer. `hops` and `via` as for
    /// [`Api::submit_contract`].
    pub async fn submit_registrations(
        &self,
        body: &[u8],
        hops: u32,
        via: &str,
    ) -> Result<(u16, Value), Refusal> {
        if let Some(replica) = self.inner.replica.clone() {
            return self.submit_registrations_to(&replica, body).await;
        }
        let Some(sequencer) = self.inner.sequencer.clone() else {
            let reply = self
                .inner
                .follower
                .forward("/v1/registrations", "application/json", body.to_vec(), hops, via)
                .await
                .map_err(forward_failure)?;
            if reply.is_success() {
                return Ok((reply.status, reply.body));
            }
            return Err(relayed(&reply));
        };
        let request: RegistrationsBody = serde_json::from_slice(body).map_err(|e| {
            SubmitError::Refused(format!(
                "the body must be {{\"tokens\": [...], \"modules\": [base64...], \"manifest\"?: ..., \"contracts\"?: [...]}}: {e}"
            ))
        })?;
        // A signed folder's manifest is verified first, against the authority set in force:
        // nothing of a folder signed by anyone else is decoded, hashed or written.
        let verified = match request.manifest.as_deref() {
            Some(manifest) => {
                let (network, set) = self.applier().in_force();
                let verified = swarmvm_token::verify_manifest(manifest.trim(), network.id(), &set)
                    .map_err(|e| SubmitError::Refused(format!("manifest: {e}")))?;
                // Then the files sent must be those it lists, of its sizes (their hashes are
                // checked when the folder is opened).
                swarmvm_bundle::check_text_parts(&verified, &request.tokens, &request.contracts)
                    .map_err(|e| SubmitError::Refused(e.to_string()))?;
                Some(verified)
            }
            None => None,
        };
        let modules = decode_modules(&request.modules)?;
        let (Some(manifest), Some(verified)) = (request.manifest, verified) else {
            if !request.contracts.is_empty() {
                return Err(SubmitError::Refused(
                    "contracts go to POST /v1/contracts one by one (or send the folder with its manifest)"
                        .into(),
                )
                .into());
            }
            let queued =
                sequencer.submit_registrations(&self.inner.core, request.tokens, modules).await?;
            return Ok((202, answer(&RegistrationsAnswer::Queued { queued })));
        };
        swarmvm_bundle::check_module_parts(&verified, &modules)
            .map_err(|e| SubmitError::Refused(e.to_string()))?;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let staging = self.data_dir().join("cuts").join(format!("submitted-{nanos}"));
        let dir = staging.join(format!("bundle-{}", verified.seq));
        let written =
            swarmvm_bundle::write_folder(&dir, &request.tokens, &request.contracts, &modules)
                .and_then(|()| {
                    std::fs::write(
                        dir.join(swarmvm_bundle::layout::MANIFEST_FILE),
                        format!("{}\n", manifest.trim()),
                    )
                });
        if let Err(e) = written {
            let _ = crate::fetcher::remove_tree(&staging);
            return Err(SubmitError::Unavailable(format!("cannot stage the folder: {e}")).into());
        }
        match sequencer.publish_signed(&self.inner.core, &staging, &dir).await {
            Ok(seq) => {
                Ok((200, answer(&RegistrationsAnswer::Published { seq, bundle: verified.id })))
            }
            Err(e) => {
                let _ = crate::fetcher::remove_tree(&staging);
                Err(match e {
                    crate::fetcher::CutError::Refused(why) => SubmitError::Refused(why),
                    crate::fetcher::CutError::Failed(why) => SubmitError::Unavailable(why),
                }
                .into())
            }
        }
    }
}

impl Api {
    /// [`Api::submit_registrations`] on an authority replica: tokens and modules are queued
    /// through the replicas' log. A folder signed elsewhere is not taken here: its signatures
    /// were not gathered through the log.
    async fn submit_registrations_to(
        &self,
        replica: &Replica,
        body: &[u8],
    ) -> Result<(u16, Value), Refusal> {
        let request: RegistrationsBody = serde_json::from_slice(body).map_err(|e| {
            SubmitError::Refused(format!(
                "the body must be {{\"tokens\": [...], \"modules\": [base64...]}}: {e}"
            ))
        })?;
        if request.manifest.is_none() && !request.contracts.is_empty() {
            return Err(SubmitError::Refused(
                "contracts go to POST /v1/contracts one by one (or send the folder with its manifest)"
                    .into(),
            )
            .into());
        }
        let modules = decode_modules(&request.modules)?;
        if let Some(manifest) = request.manifest {
            return self
                .publish_through(replica, manifest, request.tokens, request.contracts, modules)
                .await;
        }
        let items: Vec<crate::queue::Item> =
            crate::sequencer::checked_registrations(&self.inner.core, request.tokens, modules)?
                .into_iter()
                .map(|q| q.item)
                .collect();
        let queued = items.len();
        replica.submit(items).await?;
        Ok((202, answer(&RegistrationsAnswer::Queued { queued })))
    }
}

impl Api {
    /// A folder signed elsewhere (a rotation, whose added keys sign it themselves), taken by
    /// an authority replica: its manifest verified against the set in force and its parts
    /// against the manifest, then published as the next bundle through the replicas' log.
    /// Answers once this replica applied it.
    async fn publish_through(
        &self,
        replica: &Replica,
        manifest: String,
        tokens: Vec<String>,
        contracts: Vec<String>,
        modules: Vec<Vec<u8>>,
    ) -> Result<(u16, Value), Refusal> {
        let (network, set) = self.applier().in_force();
        let verified = swarmvm_token::verify_manifest(manifest.trim(), network.id(), &set)
            .map_err(|e| SubmitError::Refused(format!("manifest: {e}")))?;
        swarmvm_bundle::check_text_parts(&verified, &tokens, &contracts)
            .map_err(|e| SubmitError::Refused(e.to_string()))?;
        swarmvm_bundle::check_module_parts(&verified, &modules)
            .map_err(|e| SubmitError::Refused(e.to_string()))?;
        let next = self.applier().last_seq() + 1;
        if verified.seq != next {
            return Err(SubmitError::Refused(format!(
                "the folder is bundle seq {}; the next is seq {next}",
                verified.seq
            ))
            .into());
        }
        let seq = verified.seq;
        // Opened and verified whole before it goes into the log: a folder that would not
        // open on the replicas would hold its seq.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let staging = self.data_dir().join("cuts").join(format!("checked-{nanos}"));
        let dir = staging.join(format!("bundle-{seq}"));
        let opened = {
            let (dir, staging) = (dir.clone(), staging.clone());
            let (tokens, contracts, modules) = (tokens.clone(), contracts.clone(), modules.clone());
            let manifest = manifest.trim().to_owned();
            tokio::task::spawn_blocking(move || {
                let written = swarmvm_bundle::write_folder(&dir, &tokens, &contracts, &modules)
                    .and_then(|()| {
                        std::fs::write(
                            dir.join(swarmvm_bundle::layout::MANIFEST_FILE),
                            format!("{manifest}\n"),
                        )
                    })
                    .map_err(|e| SubmitError::Unavailable(format!("cannot stage the folder: {e}")));
                let opened = written.and_then(|()| {
                    swarmvm_bundle::open_bundle(&dir, network.id(), &set)
                        .map(|_| ())
                        .map_err(|e| SubmitError::Refused(crate::error::one_line(&e)))
                });
                let _ = crate::fetcher::remove_tree(&staging);
                opened
            })
            .await
            .map_err(|e| SubmitError::Unavailable(e.to_string()))?
        };
        opened?;
        replica.publish(seq, manifest.trim().to_owned(), tokens, contracts, &modules).await?;
        if !self.wait_applied(seq, std::time::Duration::from_secs(30)).await {
            return Err(SubmitError::Unavailable(format!(
                "seq {seq} was not applied here in time"
            ))
            .into());
        }
        let applied = self.snapshot().and_then(|s| s.bundle(seq).ok().flatten()).map(|b| b.id);
        if applied != Some(verified.id) {
            return Err(SubmitError::Refused(format!("another bundle took seq {seq} first")).into());
        }
        Ok((200, answer(&RegistrationsAnswer::Published { seq, bundle: verified.id })))
    }
}

/// A replica's [`ClusterSummary`](crate::protocol::ClusterSummary).
fn cluster_summary(replica: &Replica) -> crate::protocol::ClusterSummary {
    let (status, signed) = replica.status();
    crate::protocol::ClusterSummary {
        role: status.role.to_owned(),
        term: status.term,
        leader: status.leader,
        members: status
            .members
            .into_iter()
            .map(|m| crate::protocol::ClusterMember {
                last_seq: signed.get(&m.member).copied().unwrap_or(0),
                member: m.member,
                url: m.url,
            })
            .collect(),
        commit_index: status.commit_index,
        leader_changes: status.leader_changes,
        snapshot_index: status.snapshot_index,
    }
}

/// An answer as JSON.
fn answer(a: &RegistrationsAnswer) -> Value {
    serde_json::to_value(a).unwrap_or(Value::Null)
}

/// Another node's refusal, relayed.
fn relayed(reply: &Reply) -> Refusal {
    Refusal {
        status: reply.status,
        message: reply.error_line(),
        retry_after: reply.retry_after,
        next_nonce: reply.body.get("next_nonce").and_then(Value::as_u64),
        duplicate: reply.body.get("duplicate").and_then(Value::as_bool).unwrap_or(false),
    }
}

/// The modules of a bundle submission, each base64 text decoded; the first that is not is
/// refused by its place (1-based).
fn decode_modules(modules: &[String]) -> Result<Vec<Vec<u8>>, SubmitError> {
    let b64 = base64::engine::general_purpose::STANDARD;
    modules
        .iter()
        .enumerate()
        .map(|(i, m)| {
            b64.decode(m.trim())
                .map_err(|_| SubmitError::Refused(format!("module {} is not base64", i + 1)))
        })
        .collect()
}
