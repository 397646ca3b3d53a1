//! The sequencer: one node per network holding K authority keys. It takes checked contracts,
//! registration tokens and modules into a durable queue (group-committed: many submissions,
//! one synced write), cuts them into the next bundle every `cut_every` or at `cut_at`
//! contracts (never empty), signs it, stores it where the node resumes its bundles from,
//! applies it, seeds it, and signs a head for it.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;
use std::time::Duration;

use swarmvm_bundle::{CreateOptions, create_bundle};
use swarmvm_primitives::Rules;
use swarmvm_swarm::{MagnetLink, Source, TorrentFile};
use swarmvm_token::unix_now;
use swarmvm_vm::Hash32;
use swarmvm_wallet::Wallet;
use tokio::sync::{Notify, mpsc, oneshot};
use tracing::{info, warn};

use crate::core::Core;
use crate::error::one_line;
use crate::fetcher::CutError;
use crate::heads::Signer;
use crate::queue::{Item, Parts, Queue};
use crate::submit::{Checked, SubmitError};

/// How a sequencer runs (`node run --sequencer --key KEY...`).
#[derive(Debug)]
pub struct SequencerOptions {
    /// The authority keys it signs bundles and heads with: at least the threshold of the set in
    /// force, all members.
    pub keys: Vec<Wallet>,
    /// Cut a bundle this often (if anything is queued).
    pub cut_every: Duration,
    /// Cut as soon as this many contracts are queued; a bundle holds at most this many.
    pub cut_at: usize,
    /// Items queued at most; beyond it submissions get 429.
    pub max_queue: usize,
    /// Heads expire this long after they are signed; they are signed again before.
    pub max_head_age: Duration,
    /// The rules version its bundles name (never below the chain's): the newest by default.
    /// An older one keeps a chain at its version until every node runs a build that knows the
    /// newer, since a build that does not know `rules` applies such bundles under version 1.
    pub rules: Rules,
    /// The other authority replicas' HTTP base URLs (`--cluster URL...`): with any, this
    /// node is one replica holding one key (`keys` holds exactly one), and the replicas
    /// order, sign and publish together; without, a sequencer alone.
    pub cluster: Vec<String>,
    /// For a replica: a snapshot of the replicated state every this many log entries, after
    /// which the log before it (but for half as many entries) is purged; 0 keeps the whole
    /// log.
    pub cluster_snapshot_every: u64,
    /// Test hook for authority replicas: also sign a second, conflicting manifest and head
    /// for every seq, as a faulty member would (the others record evidence and apply nothing
    /// fewer than K signed). Never set outside tests.
    #[doc(hidden)]
    pub fault_equivocate: bool,
    /// Test hook for authority replicas: as leader, cut what is queued without checking it,
    /// and sign its own cuts unchecked, as a leader whose check is wrong would (the others
    /// refuse such a cut, and it is abandoned). Never set outside tests.
    #[doc(hidden)]
    pub fault_unchecked_cuts: bool,
}

impl Default for SequencerOptions {
    fn default() -> Self {
        Self {
            keys: Vec::new(),
            cut_every: Duration::from_secs(2),
            cut_at: 1000,
            max_queue: 100_000,
            max_head_age: Duration::from_secs(60),
            rules: Rules::CURRENT,
            cluster: Vec::new(),
            cluster_snapshot_every: swarmvm_raft::SNAPSHOT_EVERY,
            fault_equivocate: false,
            fault_unchecked_cuts: false,
        }
    }
}

/// A queued item and, for a contract, what its check found.
#[derive(Debug, Clone)]
pub(crate) struct Queued {
    arrival: u64,
    pub(crate) item: Item,
    contract: Option<Checked>,
    /// A registration token's replay key (`ISS/JTI`).
    replay: Option<String>,
}

impl Queued {
    fn bytes(&self) -> usize {
        match &self.item {
            Item::Contract(t) | Item::Registration(t) => t.len(),
            Item::Module(b) => b.len(),
        }
    }
}

/// The most a queue holds, in bytes (its items are in memory until cut; a cut of all of them
/// stays well under a bundle file's 256 MiB).
const MAX_QUEUE_BYTES: usize = 128 * 1024 * 1024;

#[derive(Debug, Default)]
struct QueueState {
    items: VecDeque<Queued>,
    /// Ids of queued contracts.
    ids: HashSet<Hash32>,
    /// Per wallet: its highest queued nonce and how many of its contracts are queued.
    nonces: HashMap<String, (u64, usize)>,
    /// Replay keys of queued registration tokens.
    replays: HashSet<String>,
    /// Queued modules.
    modules: usize,
    /// Bytes queued.
    bytes: usize,
    next: u64,
}

impl QueueState {
    fn push(&mut self, q: Queued) {
        if let Some(c) = &q.contract {
            self.ids.insert(c.id);
            let slot = self.nonces.entry(c.signer.clone()).or_insert((0, 0));
            slot.0 = slot.0.max(c.nonce);
            slot.1 += 1;
        }
        if let Some(r) = &q.replay {
            self.replays.insert(r.clone());
        }
        if matches!(q.item, Item::Module(_)) {
            self.modules += 1;
        }
        self.bytes += q.bytes();
        self.next = self.next.max(q.arrival + 1);
        self.items.push_back(q);
    }

    fn remove(&mut self, arrivals: &HashSet<u64>) {
        let items = std::mem::take(&mut self.items);
        let next = self.next;
        *self = Self { next, ..Self::default() };
        for q in items {
            if !arrivals.contains(&q.arrival) {
                self.push(q);
            }
        }
    }
}

/// Where a submission hears whether it was queued.
type Reply = oneshot::Sender<Result<(), SubmitError>>;

/// One submission on its way into the queue: its items are queued together or not at all.
pub(crate) struct Submission {
    items: Vec<Queued>,
    reply: Reply,
}

/// The sequencer's part of a node.
pub(crate) struct Sequencer {
    /// The authority keys it signs bundles (and, through the heads, heads) with.
    signer: Arc<Signer>,
    rules: Rules,
    pub(crate) cut_every: Duration,
    cut_at: usize,
    max_queue: usize,
    /// The queue's file; `None` once the node stopped (the file is closed then).
    queue: Mutex<Option<Queue>>,
    state: Mutex<QueueState>,
    intake: mpsc::Sender<Submission>,
    /// Wakes the cut loop when `cut_at` contracts are queued.
    cut_now: Notify,
    /// Registered wallets' keys, as submissions looked them up.
    pub(crate) wallet_keys: crate::submit::KeyCache,
    /// Under rules 4 or later: where submissions' signatures are checked, in batches, under
    /// ZIP-215 (the semantics the bundles are applied under); before, each is checked
    /// strictly as it arrives.
    pub(crate) batcher: Option<crate::batcher::Batcher>,
    batch_loop: Mutex<Option<crate::batcher::BatchLoop>>,
    /// False until the items stored before a restart were checked again: submissions wait.
    ready: tokio::sync::watch::Sender<bool>,
    /// Cuts that failed in a row, and why the last did (`GET /v1/health`).
    failures: Mutex<CutFailures>,
    /// Per queued registration (by arrival): rounds in which its cut alone failed while
    /// nothing else could be cut to tell whether the node or the registration is at fault.
    strikes: Mutex<HashMap<u64, u32>>,
    /// The seq of a stored cut held back from the resume (the node died applying it twice),
    /// until the resumed bundles applied ([`Sequencer::settle_held`]).
    held: Mutex<Option<u64>>,
    /// Contracts dropped with held-back cuts, and why ([`DROPPED_FILE`]).
    dropped: Mutex<HashMap<Hash32, String>>,
}

/// Cuts that failed in a row before `GET /v1/health` reports the sequencer unhealthy.
pub(crate) const FAILING_CUTS: u32 = 3;

/// Rounds a registration's cut alone may fail, with nothing else to cut, before it is dropped.
const MAX_STRIKES: u32 = 5;

/// Cuts that failed in a row, and why the last one did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct CutFailures {
    /// Cuts that failed since the last one that went through (0: the last went through).
    pub(crate) in_a_row: u32,
    /// Why the last failed cut failed.
    pub(crate) last: Option<String>,
}

impl std::fmt::Debug for Sequencer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sequencer").field("keys", &self.signer.keys().len()).finish_non_exhaustive()
    }
}

/// What the submissions taken earlier in the same group commit hold (not in the queue yet).
#[derive(Debug, Default)]
struct Pending {
    ids: HashSet<Hash32>,
    nonces: HashMap<String, u64>,
    replays: HashSet<String>,
    items: usize,
    bytes: usize,
    modules: usize,
}

/// Submissions written in one transaction, at most.
const GROUP: usize = 4096;

impl Sequencer {
    /// Opens the queue in `data_dir`; the tasks start with [`Sequencer::run`].
    pub(crate) fn open(
        data_dir: &Path,
        options: SequencerOptions,
        signer: Arc<Signer>,
    ) -> Result<(Arc<Self>, mpsc::Receiver<Submission>), String> {
        let (queue, mut stored) =
            Queue::open(&data_dir.join("sequencer.redb")).map_err(|e| e.to_string())?;
        let held = recover_applying(data_dir, &queue, &mut stored);
        let dropped = read_dropped(data_dir).into_iter().collect();
        let (intake, rx) = mpsc::channel(GROUP * 4);
        let mut state = QueueState::default();
        for (arrival, item) in stored {
            // Contracts are checked again (against the ledger) once the node resumed.
            state.push(Queued { arrival, item, contract: None, replay: None });
        }
        let (batcher, batch_loop) = if options.rules.has(Rules::V4) {
            let (b, l) = crate::batcher::Batcher::new();
            (Some(b), Some(l))
        } else {
            (None, None)
        };
        let sequencer = Arc::new(Self {
            signer,
            batcher,
            batch_loop: Mutex::new(batch_loop),
            rules: options.rules,
            cut_every: options.cut_every,
            cut_at: options.cut_at.max(1),
            max_queue: options.max_queue.max(1),
            queue: Mutex::new(Some(queue)),
            state: Mutex::new(state),
            intake,
            cut_now: Notify::new(),
            wallet_keys: crate::submit::KeyCache::default(),
            ready: tokio::sync::watch::channel(false).0,
            failures: Mutex::new(CutFailures::default()),
            strikes: Mutex::new(HashMap::new()),
            held: Mutex::new(held),
            dropped: Mutex::new(dropped),
        });
        Ok((sequencer, rx))
    }

    fn with_queue(
        &self,
        f: impl FnOnce(&Queue) -> Result<(), crate::queue::QueueError>,
    ) -> Result<(), crate::queue::QueueError> {
        match self.queue.lock().as_ref() {
            Some(q) => f(q),
            None => Err(crate::queue::QueueError::closed()),
        }
    }

    /// Waits until the sequencer takes submissions (its resumed bundles applied and what it
    /// queued before checked again), or it stops.
    pub(crate) async fn wait_ready(&self) {
        let mut rx = self.ready.subscribe();
        let _ = rx.wait_for(|r| *r).await;
    }

    /// Closes the queue's file (once the node's tasks ended), so that the data folder can be
    /// opened again.
    pub(crate) fn close(&self) {
        self.queue.lock().take();
    }

    /// The keys heads and bundles are signed with.
    pub(crate) fn keys(&self) -> Vec<&Wallet> {
        self.signer.keys()
    }

    /// Items queued.
    pub(crate) fn queued(&self) -> usize {
        self.state.lock().items.len()
    }

    /// Cuts that failed in a row, and why the last did.
    pub(crate) fn cut_failures(&self) -> CutFailures {
        self.failures.lock().clone()
    }

    /// Records how a cut ended: a bundle cut (or the queue cleared of what could not apply)
    /// ends a run of failures; a failure extends it.
    fn note_cut(&self, failure: Option<&str>) {
        let mut f = self.failures.lock();
        match failure {
            None => *f = CutFailures::default(),
            Some(why) => {
                f.in_a_row = f.in_a_row.saturating_add(1);
                f.last = Some(why.to_owned());
            }
        }
    }

    /// True when contract `id` is queued.
    pub(crate) fn is_queued(&self, id: &Hash32) -> bool {
        self.state.lock().ids.contains(id)
    }

    /// Why contract `id` was dropped with a held-back cut, if it was.
    pub(crate) fn dropped(&self, id: &Hash32) -> Option<String> {
        self.dropped.lock().get(id).cloned()
    }

    /// Whether the items of one submission can be queued, all of them, after what the queue
    /// and the earlier submissions of this group hold: room (items, bytes, modules per cut),
    /// each contract new with a nonce above its wallet's last (applied, queued, or earlier
    /// in this group or submission), each registration token not queued already. On success
    /// `seen` takes them.
    fn admit(
        &self,
        st: &QueueState,
        seen: &mut Pending,
        snapshot: Option<&swarmvm_ledger::Snapshot>,
        items: &[Queued],
    ) -> Result<(), SubmitError> {
        let full = || SubmitError::Full { max: self.max_queue, retry_after: self.retry_after() };
        let bytes: usize = items.iter().map(Queued::bytes).sum();
        let modules = items.iter().filter(|q| matches!(q.item, Item::Module(_))).count();
        if st.items.len() + seen.items + items.len() > self.max_queue
            || st.bytes + seen.bytes + bytes > MAX_QUEUE_BYTES
            || st.modules + seen.modules + modules > swarmvm_token::MAX_MODULES
        {
            return Err(full());
        }
        let mut mine = Pending::default();
        for q in items {
            if let Some(c) = &q.contract {
                if st.ids.contains(&c.id) || seen.ids.contains(&c.id) || mine.ids.contains(&c.id) {
                    return Err(SubmitError::Duplicate {
                        id: c.id.to_hex(),
                        state: "queued".into(),
                    });
                }
                let applied = snapshot
                    .and_then(|snap| swarmvm_vm::nonce_of(snap, &c.signer).ok())
                    .unwrap_or(0);
                let last = [
                    applied,
                    st.nonces.get(&c.signer).map_or(0, |q| q.0),
                    seen.nonces.get(&c.signer).copied().unwrap_or(0),
                    mine.nonces.get(&c.signer).copied().unwrap_or(0),
                ]
                .into_iter()
                .max()
                .unwrap_or(0);
                if c.nonce <= last {
                    return Err(SubmitError::StaleNonce { nonce: c.nonce, last });
                }
                mine.ids.insert(c.id);
                mine.nonces.insert(c.signer.clone(), c.nonce);
            }
            if let Some(r) = &q.replay
                && (st.replays.contains(r)
                    || seen.replays.contains(r)
                    || !mine.replays.insert(r.clone()))
            {
                return Err(SubmitError::Refused(format!(
                    "registration token {} is queued already",
                    swarmvm_primitives::text::shown(r)
                )));
            }
        }
        seen.ids.extend(mine.ids);
        seen.nonces.extend(mine.nonces);
        seen.replays.extend(mine.replays);
        seen.items += items.len();
        seen.bytes += bytes;
        seen.modules += modules;
        Ok(())
    }

    fn retry_after(&self) -> u64 {
        self.cut_every.as_secs().max(1)
    }

    /// Queues a contract; answers once it is stored durably.
    pub(crate) async fn submit(
        &self,
        item: Item,
        contract: Option<Checked>,
    ) -> Result<(), SubmitError> {
        self.submit_all(vec![Queued { arrival: 0, item, contract, replay: None }]).await
    }

    /// Queues items together (all or none); answers once they are stored durably.
    async fn submit_all(&self, items: Vec<Queued>) -> Result<(), SubmitError> {
        if !*self.ready.borrow() {
            return Err(SubmitError::Unavailable(
                "the sequencer is starting (checking what it queued before); try again in a moment"
                    .into(),
            ));
        }
        let (reply, answer) = oneshot::channel();
        let full = || SubmitError::Full { max: self.max_queue, retry_after: self.retry_after() };
        self.intake.try_send(Submission { items, reply }).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => full(),
            mpsc::error::TrySendError::Closed(_) => {
                SubmitError::Unavailable("the sequencer is stopping".into())
            }
        })?;
        answer
            .await
            .unwrap_or_else(|_| Err(SubmitError::Unavailable("the sequencer is stopping".into())))
    }

    /// Starts the queue writer, the cut loop and the head refresher.
    pub(crate) fn run(self: &Arc<Self>, node: &Core, rx: mpsc::Receiver<Submission>) {
        if let Some(batches) = self.batch_loop.lock().take() {
            node.tasks.spawn(batches.run_until(node.tasks.stopping()));
        }
        let (me, n) = (self.clone(), node.clone());
        node.tasks.spawn(async move { me.write_loop(n, rx).await });
        let (me, n) = (self.clone(), node.clone());
        node.tasks.spawn(async move { me.cut_loop(n).await });
    }

    /// Takes submissions as they come, many at a time: checks each against the queue (its
    /// nonce above the wallet's last queued one, not queued already, room left) and the
    /// ledger's nonces, writes the accepted ones in one synced transaction, then answers all.
    async fn write_loop(self: Arc<Self>, node: Core, mut rx: mpsc::Receiver<Submission>) {
        let mut stop = node.tasks.stopping();
        while let Some(batch) = crate::tasks::next_group(&mut rx, &mut stop, GROUP).await {
            let mut accepted: Vec<(Vec<Queued>, Reply)> = Vec::new();
            {
                let mut st = self.state.lock();
                // Read after the queue is locked: a cut applied before has its items removed
                // from the queue already, so its nonces are in this snapshot.
                let snapshot = node.applier.snapshot();
                let mut seen = Pending::default();
                for s in batch {
                    let verdict = self.admit(&st, &mut seen, snapshot.as_ref(), &s.items);
                    match verdict {
                        Ok(()) => {
                            let mut items = s.items;
                            for q in &mut items {
                                q.arrival = st.next;
                                st.next += 1;
                            }
                            accepted.push((items, s.reply));
                        }
                        Err(e) => {
                            let _ = s.reply.send(Err(e));
                        }
                    }
                }
            }
            if accepted.is_empty() {
                continue;
            }
            let me = self.clone();
            let items: Vec<(u64, Item)> = accepted
                .iter()
                .flat_map(|(group, _)| group.iter().map(|q| (q.arrival, q.item.clone())))
                .collect();
            let written = tokio::task::spawn_blocking(move || {
                let refs: Vec<(u64, &Item)> = items.iter().map(|(a, i)| (*a, i)).collect();
                me.with_queue(|q| q.append(&refs))
            })
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r.map_err(|e| e.to_string()));
            match written {
                Ok(()) => {
                    let contracts = {
                        let mut st = self.state.lock();
                        let mut replies = Vec::with_capacity(accepted.len());
                        for (group, reply) in accepted {
                            for q in group {
                                st.push(q);
                            }
                            replies.push(reply);
                        }
                        drop(st);
                        for reply in replies {
                            let _ = reply.send(Ok(()));
                        }
                        self.state.lock().ids.len()
                    };
                    if contracts >= self.cut_at {
                        self.cut_now.notify_one();
                    }
                }
                Err(e) => {
                    warn!("cannot store submissions: {e}");
                    for (_, reply) in accepted {
                        let _ = reply.send(Err(SubmitError::Unavailable(format!(
                            "the sequencer cannot store it now: {e}"
                        ))));
                    }
                }
            }
        }
    }

    /// Waits for the bundles the node resumed, drops what the ledger already holds, then cuts
    /// every `cut_every` or as soon as `cut_at` contracts are queued, and signs heads.
    async fn cut_loop(self: Arc<Self>, node: Core) {
        let mut stop = node.tasks.stopping();
        // The bundles it stored before a restart apply first (a cut stored and not applied
        // would otherwise be cut again as another bundle for its seq), then what it queued is
        // checked again; only then are submissions taken.
        tokio::select! {
            () = node.fetcher.wait_resumed() => {}
            _ = stop.wait_for(|s| *s) => {
                // Waiters of readiness hear that it will not come.
                self.ready.send_replace(true);
                return;
            }
        }
        self.settle_held(&node);
        self.recheck(&node).await;
        self.ready.send_replace(true);
        node.refresh_head();
        let refresh = (self.signer.max_head_age() / 3).max(Duration::from_millis(200));
        let every = self.cut_every.max(Duration::from_millis(10));
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_head = tokio::time::Instant::now();
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = self.cut_now.notified() => {}
                () = tokio::time::sleep(refresh) => {}
                _ = stop.wait_for(|s| *s) => break,
            }
            let mut cut = false;
            while self.has_work() {
                match self.cut(&node).await {
                    Ok(true) => cut = true,
                    Ok(false) => break,
                    Err(e) => {
                        warn!("cut failed: {e}");
                        self.note_cut(Some(e.as_str()));
                        break;
                    }
                }
                if self.state.lock().ids.len() < self.cut_at {
                    break;
                }
            }
            if cut {
                last_head = tokio::time::Instant::now();
            } else if last_head.elapsed() >= refresh {
                node.refresh_head();
                last_head = tokio::time::Instant::now();
            }
        }
    }

    fn has_work(&self) -> bool {
        !self.state.lock().items.is_empty()
    }

    /// After a restart: what the queue held is checked again, off the runtime's threads and
    /// without holding the queue: contracts as at submission (those the ledger holds already,
    /// from a cut applied before its items were removed, are dropped), registration tokens
    /// against the set in force and the tokens applied, modules against the tokens kept.
    async fn recheck(self: &Arc<Self>, node: &Core) {
        let items: Vec<Queued> = {
            let mut st = self.state.lock();
            let next = st.next;
            let items = std::mem::take(&mut st.items);
            *st = QueueState { next, ..QueueState::default() };
            items.into()
        };
        if items.is_empty() {
            return;
        }
        let (me, n) = (self.clone(), node.clone());
        let checked = tokio::task::spawn_blocking(move || me.check_stored(&n, items)).await;
        let (kept, dropped) = checked.unwrap_or_default();
        let mut st = self.state.lock();
        for q in kept {
            st.push(q);
        }
        drop(st);
        if !dropped.is_empty() {
            let list: Vec<u64> = dropped.into_iter().collect();
            if let Err(e) = self.with_queue(|q| q.remove(&list)) {
                warn!("{e}");
            }
        }
    }

    /// [`Sequencer::recheck`]'s checks: the items kept, and the arrivals dropped.
    fn check_stored(&self, node: &Core, items: Vec<Queued>) -> (Vec<Queued>, Vec<u64>) {
        let Some(snapshot) = node.applier.snapshot() else { return (items, Vec::new()) };
        let network = node.applier.network().id().to_owned();
        let set = node.applier.authorities();
        let now = unix_now();
        let (mut kept, mut dropped) = (Vec::new(), Vec::new());
        let mut named = HashSet::new();
        for mut q in items {
            let verdict: Result<(), String> = match &q.item {
                Item::Contract(token) if q.contract.is_none() => {
                    match crate::submit::check(&snapshot, token, &network, &self.wallet_keys) {
                        Ok(c) => {
                            q.contract = Some(c);
                            Ok(())
                        }
                        // Kept unverified: the cut verifies it as any bundle's.
                        Err(SubmitError::Unavailable(_)) => Ok(()),
                        Err(e) => Err(e.to_string()),
                    }
                }
                Item::Registration(token) => {
                    match check_registration(&snapshot, &set, token, now) {
                        Ok((replay, modules)) => {
                            named.extend(modules);
                            q.replay = Some(replay);
                            Ok(())
                        }
                        Err(e) => Err(e.to_string()),
                    }
                }
                _ => Ok(()),
            };
            match verdict {
                Ok(()) => kept.push(q),
                Err(why) => {
                    info!(arrival = q.arrival, "dropping a queued item after restart: {why}");
                    dropped.push(q.arrival);
                }
            }
        }
        // Modules no kept token names would make the cut refused.
        kept.retain(|q| match &q.item {
            Item::Module(bytes) if !named.contains(&Hash32::digest(bytes)) => {
                dropped.push(q.arrival);
                false
            }
            _ => true,
        });
        (kept, dropped)
    }

    /// Cuts the next bundle from the queue: every registration and module, and the first
    /// `cut_at` contracts. True when a bundle was cut. When that cut fails and holds
    /// registrations or modules, they are cut apart ([`Sequencer::isolate`]), so that one that
    /// cannot apply never holds up the contracts or the others.
    async fn cut(self: &Arc<Self>, node: &Core) -> Result<bool, String> {
        let _one = node.applier.turn().lock().await;
        let chosen: Vec<Queued> = {
            let st = self.state.lock();
            let mut contracts = 0;
            st.items
                .iter()
                .filter(|q| match q.item {
                    Item::Contract(_) => {
                        contracts += 1;
                        contracts <= self.cut_at
                    }
                    _ => true,
                })
                .cloned()
                .collect()
        };
        if chosen.is_empty() {
            return Ok(false);
        }
        let why = match self.publish_items(node, &chosen).await {
            Ok(seq) => {
                let contracts =
                    chosen.iter().filter(|q| matches!(q.item, Item::Contract(_))).count();
                let registrations =
                    chosen.iter().filter(|q| matches!(q.item, Item::Registration(_))).count();
                info!(seq, contracts, registrations, "cut bundle");
                self.forget(&arrivals(&chosen)).await;
                self.note_cut(None);
                return Ok(true);
            }
            Err(e) => e.to_string(),
        };
        if chosen.iter().all(|q| matches!(q.item, Item::Contract(_))) {
            return Err(why);
        }
        warn!("cut failed: {why}; cutting its registrations one at a time, then its contracts");
        self.isolate(node, &chosen, why).await
    }

    /// After a cut of `chosen` (registrations, modules and contracts) failed with `why`: each
    /// registration is cut alone, in arrival order, with the modules it names, then the
    /// contracts alone. A registration whose cut is refused (or that the set in force no
    /// longer accepts) is dropped with the reason logged. One whose cut fails otherwise (the
    /// ledger could not apply it: a module the engine cannot compile, say) is dropped too
    /// when another cut went through meanwhile, since the node works; when the contracts
    /// failed as well the node is at fault and it stays; with nothing else to cut it stays
    /// for [`MAX_STRIKES`] such rounds. Modules no registration left names are dropped. True
    /// when a bundle was cut.
    async fn isolate(
        self: &Arc<Self>,
        node: &Core,
        chosen: &[Queued],
        why: String,
    ) -> Result<bool, String> {
        let set = node.applier.authorities();
        let now = unix_now();
        let modules: Vec<(Hash32, &Queued)> = chosen
            .iter()
            .filter_map(|q| match &q.item {
                Item::Module(b) => Some((Hash32::digest(b), q)),
                _ => None,
            })
            .collect();
        let mut cut_any = false;
        let mut done: HashSet<u64> = HashSet::new();
        let mut published: HashSet<Hash32> = HashSet::new();
        let mut dropped: Vec<(u64, String)> = Vec::new();
        // Registrations whose cut failed, not refused: (arrival, modules named, why).
        let mut suspects: Vec<(u64, Vec<Hash32>, String)> = Vec::new();
        for q in chosen {
            let Item::Registration(token) = &q.item else { continue };
            let checked = match node.applier.snapshot() {
                Some(snapshot) => check_registration(&snapshot, &set, token, now),
                None => Err(SubmitError::Unavailable("the node stopped".into())),
            };
            let named = match checked {
                Ok((_, named)) => named,
                Err(SubmitError::Refused(e)) => {
                    dropped.push((q.arrival, e));
                    continue;
                }
                Err(e) => {
                    suspects.push((q.arrival, Vec::new(), e.to_string()));
                    continue;
                }
            };
            let mut items = vec![q.clone()];
            let mut carried = Vec::new();
            for (hash, m) in &modules {
                if named.contains(hash) && !published.contains(hash) && !carried.contains(hash) {
                    items.push((*m).clone());
                    carried.push(*hash);
                }
            }
            match self.publish_items(node, &items).await {
                Ok(seq) => {
                    info!(seq, arrival = q.arrival, "cut bundle of one registration alone");
                    let cut = arrivals(&items);
                    self.forget(&cut).await;
                    done.extend(cut);
                    published.extend(carried);
                    self.strikes.lock().remove(&q.arrival);
                    cut_any = true;
                }
                Err(CutError::Refused(e)) => dropped.push((q.arrival, e)),
                Err(CutError::Failed(e)) => suspects.push((q.arrival, named, e)),
            }
        }
        let contracts: Vec<Queued> =
            chosen.iter().filter(|q| matches!(q.item, Item::Contract(_))).cloned().collect();
        let mut failure = None;
        if !contracts.is_empty() {
            match self.publish_items(node, &contracts).await {
                Ok(seq) => {
                    info!(seq, contracts = contracts.len(), "cut bundle without the registrations");
                    let cut = arrivals(&contracts);
                    self.forget(&cut).await;
                    done.extend(cut);
                    cut_any = true;
                }
                Err(e) => failure = Some(e.to_string()),
            }
        }
        // What the registrations kept still need.
        let mut needed: HashSet<Hash32> = HashSet::new();
        {
            let mut strikes = self.strikes.lock();
            for (arrival, named, e) in suspects {
                let struck = strikes.entry(arrival).or_insert(0);
                if !cut_any && contracts.is_empty() {
                    *struck += 1;
                }
                if cut_any || *struck >= MAX_STRIKES {
                    strikes.remove(&arrival);
                    dropped.push((arrival, format!("it cannot be applied: {e}")));
                } else {
                    needed.extend(named);
                }
            }
        }
        for (hash, m) in &modules {
            if !done.contains(&m.arrival) && !needed.contains(hash) {
                dropped
                    .push((m.arrival, format!("module {hash} is named by no registration left")));
            }
        }
        let resolved = !dropped.is_empty();
        if resolved {
            for (arrival, reason) in &dropped {
                warn!(arrival, "dropping a queued registration or module: {reason}");
            }
            let gone: HashSet<u64> = dropped.iter().map(|(a, _)| *a).collect();
            self.forget(&gone).await;
        }
        match failure {
            Some(e) => Err(e),
            None if cut_any || resolved => {
                self.note_cut(None);
                Ok(cut_any)
            }
            None => Err(why),
        }
    }

    async fn forget(self: &Arc<Self>, arrivals: &HashSet<u64>) {
        self.state.lock().remove(arrivals);
        self.strikes.lock().retain(|arrival, _| !arrivals.contains(arrival));
        let me = self.clone();
        let list: Vec<u64> = arrivals.iter().copied().collect();
        match tokio::task::spawn_blocking(move || me.with_queue(|q| q.remove(&list))).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => warn!("{e}"),
            Err(e) => warn!("queue removal failed: {e}"),
        }
    }

    /// Cuts `items` into the next bundle and publishes it. While it is stored and applied,
    /// `sequencer-applying.json` names it ([`recover_applying`]).
    async fn publish_items(
        self: &Arc<Self>,
        node: &Core,
        items: &[Queued],
    ) -> Result<u64, CutError> {
        let known: swarmvm_bundle::KnownContracts = items
            .iter()
            .filter_map(|q| q.contract.as_ref())
            .map(|c| (c.id, (*c.verified).clone()))
            .collect();
        let (tokens, contracts, modules) = Parts::of(items.iter().map(|q| &q.item)).owned();
        let arrivals: Vec<u64> = items.iter().map(|q| q.arrival).collect();
        // Cleared however the cut ends, a stop of the node included (its task dropped at
        // shutdown): only a crash leaves the record, and only crashes count against a cut.
        let _record = ClearOnDrop(node.fetcher.data_dir());
        self.publish_cut(node, tokens, contracts, modules, known, arrivals).await
    }

    async fn publish_cut(
        self: &Arc<Self>,
        node: &Core,
        tokens: Vec<String>,
        contracts: Vec<String>,
        modules: Vec<Vec<u8>>,
        known: swarmvm_bundle::KnownContracts,
        arrivals: Vec<u64>,
    ) -> Result<u64, CutError> {
        let snapshot =
            node.applier.snapshot().ok_or_else(|| CutError::Failed("the node stopped".into()))?;
        let last = snapshot.last_bundle();
        drop(snapshot);
        let seq = last.map_or(1, |b| b.seq + 1);
        let now = unix_now().max(last.map_or(0, |b| b.issued_at));
        let staging = node.fetcher.data_dir().join("cuts").join(seq.to_string());
        let dir = staging.join(format!("bundle-{seq}"));
        let me = self.clone();
        let network = node.applier.network().clone();
        let set = node.applier.authorities();
        let folder = dir.clone();
        let staged = staging.clone();
        let data_dir = node.fetcher.data_dir().to_path_buf();
        // The parent's torrent, named in the manifest: a node that knows only the newest
        // bundle (from the DHT) walks back through the swarm.
        let parent_info_hash = last
            .and_then(|l| node.fetcher.magnet_of(l.seq))
            .and_then(|m| MagnetLink::parse(&m).ok())
            .map(|m| m.info_hash.0);
        tokio::task::spawn_blocking(move || {
            Applying { seq, attempts: 1, arrivals }
                .write(&data_dir)
                .map_err(|e| CutError::Failed(format!("cannot write {}: {e}", APPLYING_FILE)))?;
            crate::fetcher::remove_tree(&staged).map_err(|e| CutError::Failed(e.to_string()))?;
            swarmvm_bundle::write_folder(&folder, &tokens, &contracts, &modules)
                .map_err(|e| CutError::Failed(format!("cannot write {}: {e}", folder.display())))?;
            let keys = me.keys();
            let options = CreateOptions {
                follows: last,
                parent_info_hash,
                now,
                members: Some(&set),
                // The version asked for, never below the chain's.
                rules: me.rules.max(last.map_or(Rules::V1, |l| l.rules)),
                ..CreateOptions::default()
            };
            create_bundle(&folder, &keys, &network, &options)
                .map_err(|e| CutError::Refused(one_line(&e)))
        })
        .await
        .map_err(|e| CutError::Failed(e.to_string()))??;
        match node.fetcher.publish_stored(&staging, &dir, known).await {
            Ok(seq) => Ok(seq),
            Err(e) => {
                let _ = crate::fetcher::remove_tree(&staging);
                Err(e)
            }
        }
    }

    /// After a restart, once the resumed bundles applied: a stored cut held back from the
    /// resume ([`recover_applying`]) is seeded again if it is the bundle the ledger applied
    /// at its seq (the node died after applying it), else dropped with its files. Then the
    /// record of the cut being applied is cleared: the resume did not stop the node.
    fn settle_held(&self, node: &Core) {
        let dir = node.fetcher.data_dir().to_path_buf();
        let Some(seq) = self.held.lock().take() else {
            clear_once_applied(node, &dir);
            return;
        };
        let applied =
            node.applier.snapshot().and_then(|s| s.bundle(seq).ok().flatten()).map(|b| b.id);
        let held: Vec<PathBuf> = std::fs::read_dir(dir.join(HELD_DIR))
            .map(|entries| entries.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        for path in held {
            let Ok(torrent) = TorrentFile::read(&path) else {
                let _ = std::fs::remove_file(&path);
                continue;
            };
            let hash = torrent.info_hash();
            let data = dir.join("bundles").join(hash.to_string());
            let manifest = data.join(torrent.name()).join(swarmvm_token::MANIFEST_FILE);
            let id = std::fs::read_to_string(&manifest)
                .ok()
                .and_then(|m| swarmvm_token::peek_manifest(m.trim()).ok())
                .map(|p| p.id);
            if id.is_some() && id == applied {
                let back = dir.join("torrents").join(format!("{hash}.torrent"));
                if std::fs::rename(&path, &back).is_ok()
                    && let Err(e) = node.fetcher.add_own(Source::Torrent(torrent), Vec::new())
                {
                    warn!(info_hash = %hash, "cannot seed the cut for seq {seq} again: {}", one_line(&e));
                }
                continue;
            }
            warn!(
                info_hash = %hash,
                seq,
                "dropping the stored cut for seq {seq}: the node stopped twice while applying it"
            );
            let _ = std::fs::remove_file(&path);
            let _ = crate::fetcher::remove_tree(&data);
        }
        let _ = crate::fetcher::remove_tree(&dir.join(HELD_DIR));
        clear_once_applied(node, &dir);
    }

    /// Checks registration tokens (against the set in force) and modules (against the ABI;
    /// each must be named by one of the tokens) and queues them for the next cut. Returns how
    /// many items were queued.
    pub(crate) async fn submit_registrations(
        &self,
        node: &Core,
        tokens: Vec<String>,
        modules: Vec<Vec<u8>>,
    ) -> Result<usize, SubmitError> {
        let queued = checked_registrations(node, tokens, modules)?;
        let count = queued.len();
        self.submit_all(queued).await?;
        Ok(count)
    }

    /// Publishes a folder signed elsewhere (a rotation's new keys, say) as the next bundle,
    /// between cuts.
    pub(crate) async fn publish_signed(
        &self,
        node: &Core,
        staging: &Path,
        dir: &Path,
    ) -> Result<u64, CutError> {
        let _one = node.applier.turn().lock().await;
        node.fetcher.publish_stored(staging, dir, swarmvm_bundle::KnownContracts::new()).await
    }
}

/// Registration tokens (checked against the set in force) and modules (checked against the
/// ABI; each must be named by one of the tokens), as queue items in that order.
pub(crate) fn checked_registrations(
    node: &Core,
    tokens: Vec<String>,
    modules: Vec<Vec<u8>>,
) -> Result<Vec<Queued>, SubmitError> {
    let set = node.applier.authorities();
    let now = unix_now();
    let snapshot = node
        .applier
        .snapshot()
        .ok_or_else(|| SubmitError::Unavailable("the ledger cannot be read now".into()))?;
    let mut named = HashSet::new();
    let mut queued = Vec::new();
    for (i, token) in tokens.iter().enumerate() {
        let (replay, modules) =
            check_registration(&snapshot, &set, token, now).map_err(|e| match e {
                SubmitError::Refused(why) => {
                    SubmitError::Refused(format!("token {}: {why}", i + 1))
                }
                other => other,
            })?;
        named.extend(modules);
        queued.push(Queued {
            arrival: 0,
            item: Item::Registration(token.clone()),
            contract: None,
            replay: Some(replay),
        });
    }
    drop(snapshot);
    for (i, bytes) in modules.iter().enumerate() {
        let info = swarmvm_wasm::check_module(bytes)
            .map_err(|e| SubmitError::Refused(format!("module {}: {e}", i + 1)))?;
        if !named.contains(&info.hash) {
            return Err(SubmitError::Refused(format!(
                "module {} ({}) is named by none of the tokens sent with it",
                i + 1,
                info.hash
            )));
        }
    }
    if queued.is_empty() && modules.is_empty() {
        return Err(SubmitError::Refused("nothing to queue: no tokens and no modules".into()));
    }
    for bytes in modules {
        queued.push(Queued { arrival: 0, item: Item::Module(bytes), contract: None, replay: None });
    }
    Ok(queued)
}

/// A registration token the sequencer can queue: signed by a member of `set` (checked at
/// `now`) and not applied before ([`swarmvm_bundle::admit_registration`]). Returns its replay
/// key and the modules it names.
pub(crate) fn check_registration(
    snapshot: &swarmvm_ledger::Snapshot,
    set: &swarmvm_token::AuthoritySet,
    token: &str,
    now: u64,
) -> Result<(String, Vec<Hash32>), SubmitError> {
    let a = swarmvm_bundle::admit_registration(snapshot, set, token, now).map_err(|e| match e {
        swarmvm_bundle::AdmitError::Storage(e) => SubmitError::Unavailable(e.to_string()),
        e => SubmitError::Refused(e.to_string()),
    })?;
    Ok((a.replay_key, a.modules))
}

/// The arrivals of `items`.
fn arrivals(items: &[Queued]) -> HashSet<u64> {
    items.iter().map(|q| q.arrival).collect()
}

/// The file naming the cut being stored and applied, in the data folder.
const APPLYING_FILE: &str = "sequencer-applying.json";

/// Clears the record of the cut being applied once the ledger holds its seq, or its stored cut
/// is gone: a resume that has not applied it yet (still fetching it, say) may still crash on it.
fn clear_once_applied(node: &Core, dir: &Path) {
    let Some(applying) = Applying::read(dir) else { return };
    let last = node.applier.snapshot().and_then(|s| s.last_bundle()).map_or(0, |b| b.seq);
    if last >= applying.seq || stored_cuts(dir, applying.seq).is_empty() {
        Applying::clear(dir);
    }
}

/// Clears the record of the cut being applied ([`APPLYING_FILE`]) when dropped, unless a panic
/// is unwinding (that is a crash on the cut, which the record is there to count).
struct ClearOnDrop<'a>(&'a Path);

impl Drop for ClearOnDrop<'_> {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            Applying::clear(self.0);
        }
    }
}

/// The contracts dropped with a held-back cut, by id, with why ([`DROPPED_FILE`]): answered as
/// rejected by `GET /v1/contracts/{id}`, so that a client told 202 learns what became of its
/// contract. The newest [`MAX_DROPPED`] are kept.
const DROPPED_FILE: &str = "sequencer-dropped.json";
/// Dropped contracts remembered, at most.
const MAX_DROPPED: usize = 10_000;

/// Reads the dropped contracts ([`DROPPED_FILE`]), oldest first; none when absent or unreadable.
fn read_dropped(dir: &Path) -> Vec<(Hash32, String)> {
    std::fs::read(dir.join(DROPPED_FILE))
        .ok()
        .and_then(|b| serde_json::from_slice::<Vec<(String, String)>>(&b).ok())
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(id, why)| id.parse().ok().map(|id| (id, why)))
        .collect()
}

/// Adds `ids` to the dropped contracts, keeping the newest [`MAX_DROPPED`].
fn write_dropped(dir: &Path, ids: &[Hash32], why: &str) -> std::io::Result<()> {
    let mut all = read_dropped(dir);
    all.extend(ids.iter().map(|id| (*id, why.to_owned())));
    let excess = all.len().saturating_sub(MAX_DROPPED);
    all.drain(..excess);
    let json: Vec<(String, &String)> = all.iter().map(|(id, why)| (id.to_hex(), why)).collect();
    replace_file(dir, DROPPED_FILE, &serde_json::to_vec(&json).map_err(std::io::Error::other)?)
}

/// Writes `dir`/`name` whole or not at all (a temporary file, then a rename).
fn replace_file(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    let temp = dir.join(format!("{name}.tmp"));
    std::fs::write(&temp, bytes)?;
    std::fs::rename(&temp, dir.join(name))
}
/// Where stored cuts held back from the resume wait, in the data folder.
const HELD_DIR: &str = "held-cuts";
/// Times the node may stop while applying one stored cut (when it was cut, then each time the
/// resume applies it again); the next restart holds it back. More than one, since a kill is
/// no fault of the cut.
const MAX_APPLY_ATTEMPTS: u32 = 3;

/// The cut being stored and applied ([`APPLYING_FILE`], while it is): its seq, the times the
/// node started applying it, and its queued items. A sequencer that stops while applying a
/// cut finds it at restart.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Applying {
    seq: u64,
    attempts: u32,
    arrivals: Vec<u64>,
}

impl Applying {
    fn read(dir: &Path) -> Option<Self> {
        serde_json::from_slice(&std::fs::read(dir.join(APPLYING_FILE)).ok()?).ok()
    }

    fn write(&self, dir: &Path) -> std::io::Result<()> {
        replace_file(dir, APPLYING_FILE, &serde_json::to_vec(self).map_err(std::io::Error::other)?)
    }

    fn clear(dir: &Path) {
        let _ = std::fs::remove_file(dir.join(APPLYING_FILE));
    }
}

/// At open, before the node resumes its stored bundles: when the node stopped while applying
/// a stored cut (a kill, a crash), the resume applies it again; once it stopped
/// [`MAX_APPLY_ATTEMPTS`] times so, the cut is held back from the resume (its torrent moved to
/// [`HELD_DIR`]) and its items are dropped from the queue, so that no stored cut keeps the
/// sequencer in a crash loop. (A cut that was not stored yet is simply cut again.) Returns
/// the seq of a cut held back.
fn recover_applying(data_dir: &Path, queue: &Queue, stored: &mut Vec<(u64, Item)>) -> Option<u64> {
    let mut applying = Applying::read(data_dir)?;
    if stored_cuts(data_dir, applying.seq).is_empty() {
        return None;
    }
    if applying.attempts < MAX_APPLY_ATTEMPTS {
        applying.attempts += 1;
        warn!(
            seq = applying.seq,
            "the node stopped while applying the cut for seq {}; the resume applies it again",
            applying.seq
        );
        if let Err(e) = applying.write(data_dir) {
            warn!("cannot write {APPLYING_FILE}: {e}");
        }
        return None;
    }
    let held = hold_stored_cut(data_dir, applying.seq);
    let dropped: HashSet<u64> = applying.arrivals.iter().copied().collect();
    let contracts: Vec<Hash32> = stored
        .iter()
        .filter(|(arrival, _)| dropped.contains(arrival))
        .filter_map(|(_, item)| match item {
            Item::Contract(token) => Some(Hash32::digest(token.as_bytes())),
            _ => None,
        })
        .collect();
    let why = format!(
        "dropped by the sequencer: the node stopped {} times while applying the cut for seq {} that held it",
        applying.attempts, applying.seq
    );
    if let Err(e) = write_dropped(data_dir, &contracts, &why) {
        warn!("cannot write {DROPPED_FILE}: {e}");
    }
    stored.retain(|(arrival, _)| !dropped.contains(arrival));
    if let Err(e) = queue.remove(&applying.arrivals) {
        warn!("{e}");
    }
    warn!(
        seq = applying.seq,
        held,
        items = applying.arrivals.len(),
        "the node stopped {} times while applying the cut for seq {}: the cut is held back from \
         the resume and its queued items are dropped",
        applying.attempts,
        applying.seq
    );
    Some(applying.seq)
}

/// The stored torrents (in `torrents/`) of bundles named `bundle-<seq>`: a sequencer's cut
/// for `seq`.
fn stored_cuts(data_dir: &Path, seq: u64) -> Vec<PathBuf> {
    let name = format!("bundle-{seq}");
    let Ok(entries) = std::fs::read_dir(data_dir.join("torrents")) else { return Vec::new() };
    entries
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|e| e == "torrent"))
        .filter(|path| TorrentFile::read(path).is_ok_and(|t| t.name() == name))
        .collect()
}

/// Moves the stored torrents of the cut for `seq` to [`HELD_DIR`]. Returns how many it moved.
fn hold_stored_cut(data_dir: &Path, seq: u64) -> usize {
    let held = data_dir.join(HELD_DIR);
    let mut moved = 0;
    for path in stored_cuts(data_dir, seq) {
        let Some(file) = path.file_name() else { continue };
        if std::fs::create_dir_all(&held).is_ok() && std::fs::rename(&path, held.join(file)).is_ok()
        {
            moved += 1;
        }
    }
    moved
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A signer with no keys (the tests here sign nothing).
    fn signer() -> Arc<Signer> {
        Arc::new(Signer::new(Vec::new(), Duration::from_secs(60)))
    }

    /// A stored torrent of a folder `bundle-<seq>` (as a cut is stored), in `torrents/`.
    fn stored_torrent(data_dir: &Path, seq: u64) -> PathBuf {
        let folder = data_dir.join("made").join(format!("bundle-{seq}"));
        std::fs::create_dir_all(&folder).unwrap();
        std::fs::write(folder.join("contracts.jsonl"), format!("{seq}\n")).unwrap();
        let torrent = TorrentFile::create(&folder, &[], None).unwrap();
        let path = data_dir.join("torrents").join(format!("{}.torrent", torrent.info_hash()));
        std::fs::write(&path, torrent.as_bytes()).unwrap();
        path
    }

    #[test]
    fn a_stored_cut_the_node_keeps_stopping_on_is_held_back_and_its_items_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path();
        std::fs::create_dir_all(data.join("torrents")).unwrap();
        let five = stored_torrent(data, 5);
        let four = stored_torrent(data, 4);
        let (queue, _) = Queue::open(&data.join("sequencer.redb")).unwrap();
        let a = Item::Contract("a.b.c".into());
        let r = Item::Registration("r.s.t".into());
        let c = Item::Contract("c.d.e".into());
        queue.append(&[(1, &a), (2, &r), (3, &c)]).unwrap();
        let mut stored = vec![(1, a), (2, r), (3, c.clone())];
        // No cut was being applied: nothing changes.
        assert_eq!(recover_applying(data, &queue, &mut stored), None);
        assert_eq!(stored.len(), 3);
        // A cut for seq 6 was being made when the node stopped, not stored yet: cut again.
        Applying { seq: 6, attempts: 1, arrivals: vec![1, 2] }.write(data).unwrap();
        assert_eq!(recover_applying(data, &queue, &mut stored), None);
        assert_eq!(Applying::read(data).unwrap().attempts, 1);
        // The node stopped while applying the stored cut of items 1 and 2 for seq 5, then
        // again while the resume applied it: the resume applies it again each time.
        Applying { seq: 5, attempts: 1, arrivals: vec![1, 2] }.write(data).unwrap();
        for attempts in 2..=MAX_APPLY_ATTEMPTS {
            assert_eq!(recover_applying(data, &queue, &mut stored), None);
            assert_eq!(Applying::read(data).unwrap().attempts, attempts);
            assert!(five.exists());
            assert_eq!(stored.len(), 3);
        }
        // Once more: the cut is held back from the resume and its items are dropped; other
        // stored bundles stay.
        assert_eq!(recover_applying(data, &queue, &mut stored), Some(5));
        assert!(!five.exists());
        assert!(data.join(HELD_DIR).join(five.file_name().unwrap()).exists());
        assert!(four.exists());
        assert_eq!(stored, vec![(3, c.clone())]);
        drop(queue);
        let (_, left) = Queue::open(&data.join("sequencer.redb")).unwrap();
        assert_eq!(left, vec![(3, c)]);
        // The dropped contract (not the registration, nor the contract kept) is remembered
        // with the reason, for `GET /v1/contracts/{id}` to answer it rejected.
        let dropped = read_dropped(data);
        assert_eq!(dropped.len(), 1, "{dropped:?}");
        assert_eq!(dropped[0].0, Hash32::digest(b"a.b.c"));
        assert!(dropped[0].1.contains("stopped 3 times while applying the cut for seq 5"));
    }

    #[test]
    fn a_cut_dropped_without_a_crash_clears_its_record_and_a_panic_keeps_it() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path();
        Applying { seq: 5, attempts: 1, arrivals: vec![1] }.write(data).unwrap();
        drop(ClearOnDrop(data));
        assert!(Applying::read(data).is_none(), "a stop of the node is no crash on the cut");
        Applying { seq: 5, attempts: 1, arrivals: vec![1] }.write(data).unwrap();
        let owned = data.to_path_buf();
        let crashed = std::thread::spawn(move || {
            let _record = ClearOnDrop(&owned);
            panic!("the cut crashed the node");
        })
        .join();
        assert!(crashed.is_err());
        assert!(Applying::read(data).is_some(), "a panic on the cut is counted");
    }

    #[test]
    fn cut_failures_count_in_a_row_until_a_cut_goes_through() {
        let dir = tempfile::tempdir().unwrap();
        let (sequencer, _rx) =
            Sequencer::open(dir.path(), SequencerOptions::default(), signer()).unwrap();
        assert_eq!(sequencer.cut_failures(), CutFailures::default());
        for _ in 0..FAILING_CUTS {
            sequencer.note_cut(Some("cannot write"));
        }
        let failures = sequencer.cut_failures();
        assert_eq!(failures.in_a_row, FAILING_CUTS);
        assert_eq!(failures.last.as_deref(), Some("cannot write"));
        sequencer.note_cut(None);
        assert_eq!(sequencer.cut_failures(), CutFailures::default());
    }
}
