//! The sequencer: one node per network holding K authority keys. It takes checked contracts,
//! registration tokens and modules into a durable queue (group-committed: many submissions,
//! one synced write), cuts them into the next bundle every `cut_every` or at `cut_at`
//! contracts (never empty), signs it, stores it where the node resumes its bundles from,
//! applies it, seeds it, and signs a head for it.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use swarmvm_bundle::{CreateOptions, create_bundle};
use swarmvm_token::{Operation, RegistrationBody, TimeCheck, unix_now};
use swarmvm_vm::Hash32;
use swarmvm_wallet::Wallet;
use tokio::sync::{Notify, mpsc, oneshot};
use tracing::{info, warn};

use crate::node::{Node, lock, one_line};
use crate::queue::{Item, Queue};
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
}

impl Default for SequencerOptions {
    fn default() -> Self {
        Self {
            keys: Vec::new(),
            cut_every: Duration::from_secs(2),
            cut_at: 1000,
            max_queue: 100_000,
            max_head_age: Duration::from_secs(60),
        }
    }
}

/// A queued item and, for a contract, what its check found.
#[derive(Debug, Clone)]
struct Queued {
    arrival: u64,
    item: Item,
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
    keys: Vec<Wallet>,
    pub(crate) cut_every: Duration,
    cut_at: usize,
    max_queue: usize,
    pub(crate) max_head_age: Duration,
    /// The queue's file; `None` once the node stopped (the file is closed then).
    queue: Mutex<Option<Queue>>,
    state: Mutex<QueueState>,
    intake: mpsc::Sender<Submission>,
    /// Wakes the cut loop when `cut_at` contracts are queued.
    cut_now: Notify,
    /// One cut (or published folder, or bundle from elsewhere applied) at a time.
    pub(crate) cutting: tokio::sync::Mutex<()>,
    /// Registered wallets' keys, as submissions looked them up.
    pub(crate) wallet_keys: crate::submit::KeyCache,
    /// False until the items stored before a restart were checked again: submissions wait.
    ready: tokio::sync::watch::Sender<bool>,
}

impl std::fmt::Debug for Sequencer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sequencer").field("keys", &self.keys.len()).finish_non_exhaustive()
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
    ) -> Result<(Arc<Self>, mpsc::Receiver<Submission>), String> {
        let (queue, stored) =
            Queue::open(&data_dir.join("sequencer.redb")).map_err(|e| e.to_string())?;
        let (intake, rx) = mpsc::channel(GROUP * 4);
        let mut state = QueueState::default();
        for (arrival, item) in stored {
            // Contracts are checked again (against the ledger) once the node resumed.
            state.push(Queued { arrival, item, contract: None, replay: None });
        }
        let sequencer = Arc::new(Self {
            keys: options.keys,
            cut_every: options.cut_every,
            cut_at: options.cut_at.max(1),
            max_queue: options.max_queue.max(1),
            max_head_age: options.max_head_age,
            queue: Mutex::new(Some(queue)),
            state: Mutex::new(state),
            intake,
            cut_now: Notify::new(),
            cutting: tokio::sync::Mutex::new(()),
            wallet_keys: crate::submit::KeyCache::default(),
            ready: tokio::sync::watch::channel(false).0,
        });
        Ok((sequencer, rx))
    }

    fn with_queue(
        &self,
        f: impl FnOnce(&Queue) -> Result<(), crate::queue::QueueError>,
    ) -> Result<(), crate::queue::QueueError> {
        match lock(&self.queue).as_ref() {
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
        lock(&self.queue).take();
    }

    /// The keys heads and bundles are signed with.
    pub(crate) fn keys(&self) -> Vec<&Wallet> {
        self.keys.iter().collect()
    }

    /// Items queued.
    pub(crate) fn queued(&self) -> usize {
        lock(&self.state).items.len()
    }

    /// True when contract `id` is queued.
    pub(crate) fn is_queued(&self, id: &Hash32) -> bool {
        lock(&self.state).ids.contains(id)
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
    pub(crate) fn run(self: &Arc<Self>, node: &Node, rx: mpsc::Receiver<Submission>) {
        let (me, n) = (self.clone(), node.clone());
        node.spawn(async move { me.write_loop(n, rx).await });
        let (me, n) = (self.clone(), node.clone());
        node.spawn(async move { me.cut_loop(n).await });
    }

    /// Takes submissions as they come, many at a time: checks each against the queue (its
    /// nonce above the wallet's last queued one, not queued already, room left) and the
    /// ledger's nonces, writes the accepted ones in one synced transaction, then answers all.
    async fn write_loop(self: Arc<Self>, node: Node, mut rx: mpsc::Receiver<Submission>) {
        let mut stop = node.stopping();
        loop {
            let first = tokio::select! {
                s = rx.recv() => s,
                _ = stop.wait_for(|s| *s) => None,
            };
            let Some(first) = first else { break };
            let mut batch = vec![first];
            while batch.len() < GROUP {
                match rx.try_recv() {
                    Ok(s) => batch.push(s),
                    Err(_) => break,
                }
            }
            let mut accepted: Vec<(Vec<Queued>, Reply)> = Vec::new();
            {
                let mut st = lock(&self.state);
                // Read after the queue is locked: a cut applied before has its items removed
                // from the queue already, so its nonces are in this snapshot.
                let snapshot = node.snapshot();
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
                        let mut st = lock(&self.state);
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
                        lock(&self.state).ids.len()
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
    async fn cut_loop(self: Arc<Self>, node: Node) {
        let mut stop = node.stopping();
        // The bundles it stored before a restart apply first (a cut stored and not applied
        // would otherwise be cut again as another bundle for its seq), then what it queued is
        // checked again; only then are submissions taken.
        tokio::select! {
            () = node.wait_resumed() => {}
            _ = stop.wait_for(|s| *s) => {
                // Waiters of readiness hear that it will not come.
                self.ready.send_replace(true);
                return;
            }
        }
        self.recheck(&node).await;
        self.ready.send_replace(true);
        node.refresh_head();
        let refresh = (self.max_head_age / 3).max(Duration::from_millis(200));
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
                        break;
                    }
                }
                if lock(&self.state).ids.len() < self.cut_at {
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
        !lock(&self.state).items.is_empty()
    }

    /// After a restart: what the queue held is checked again, off the runtime's threads and
    /// without holding the queue: contracts as at submission (those the ledger holds already,
    /// from a cut applied before its items were removed, are dropped), registration tokens
    /// against the set in force and the tokens applied, modules against the tokens kept.
    async fn recheck(self: &Arc<Self>, node: &Node) {
        let items: Vec<Queued> = {
            let mut st = lock(&self.state);
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
        let mut st = lock(&self.state);
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
    fn check_stored(&self, node: &Node, items: Vec<Queued>) -> (Vec<Queued>, Vec<u64>) {
        let Some(snapshot) = node.snapshot() else { return (items, Vec::new()) };
        let network = node.network().id().to_owned();
        let set = node.authorities();
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
    /// `cut_at` contracts. True when a bundle was cut.
    async fn cut(self: &Arc<Self>, node: &Node) -> Result<bool, String> {
        let _one = self.cutting.lock().await;
        let chosen: Vec<Queued> = {
            let st = lock(&self.state);
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
        let mut tokens = Vec::new();
        let mut contracts = Vec::new();
        let mut modules = Vec::new();
        let known: swarmvm_bundle::KnownContracts = chosen
            .iter()
            .filter_map(|q| q.contract.as_ref())
            .map(|c| (c.id, (*c.verified).clone()))
            .collect();
        for q in &chosen {
            match &q.item {
                Item::Contract(t) => contracts.push(t.clone()),
                Item::Registration(t) => tokens.push(t.clone()),
                Item::Module(b) => modules.push(b.clone()),
            }
        }
        let arrivals: HashSet<u64> = chosen.iter().map(|q| q.arrival).collect();
        let result = self.publish_cut(node, &tokens, &contracts, &modules, known).await;
        match result {
            Ok(seq) => {
                info!(seq, contracts = contracts.len(), registrations = tokens.len(), "cut bundle");
                self.forget(&arrivals).await;
                Ok(true)
            }
            Err(CutError::Refused(why)) if !tokens.is_empty() || !modules.is_empty() => {
                // A registration the set in force no longer accepts (expired, say) must not
                // hold the queue up: registrations and modules of this cut are dropped.
                let dropped: HashSet<u64> = chosen
                    .iter()
                    .filter(|q| !matches!(q.item, Item::Contract(_)))
                    .map(|q| q.arrival)
                    .collect();
                warn!(
                    count = dropped.len(),
                    "dropping queued registrations and modules the cut refused: {why}"
                );
                self.forget(&dropped).await;
                Err(why)
            }
            Err(CutError::Refused(why) | CutError::Failed(why)) => Err(why),
        }
    }

    async fn forget(self: &Arc<Self>, arrivals: &HashSet<u64>) {
        lock(&self.state).remove(arrivals);
        let me = self.clone();
        let list: Vec<u64> = arrivals.iter().copied().collect();
        match tokio::task::spawn_blocking(move || me.with_queue(|q| q.remove(&list))).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => warn!("{e}"),
            Err(e) => warn!("queue removal failed: {e}"),
        }
    }

    async fn publish_cut(
        self: &Arc<Self>,
        node: &Node,
        tokens: &[String],
        contracts: &[String],
        modules: &[Vec<u8>],
        known: swarmvm_bundle::KnownContracts,
    ) -> Result<u64, CutError> {
        let snapshot =
            node.snapshot().ok_or_else(|| CutError::Failed("the node stopped".into()))?;
        let last = snapshot.last_bundle();
        drop(snapshot);
        let seq = last.map_or(1, |b| b.seq + 1);
        let now = unix_now().max(last.map_or(0, |b| b.issued_at));
        let staging = node.data_dir().join("cuts").join(seq.to_string());
        let dir = staging.join(format!("bundle-{seq}"));
        let me = self.clone();
        let network = node.network().clone();
        let set = node.authorities();
        let (tokens, contracts, modules) = (tokens.to_vec(), contracts.to_vec(), modules.to_vec());
        let folder = dir.clone();
        let staged = staging.clone();
        tokio::task::spawn_blocking(move || {
            crate::node::remove_tree(&staged).map_err(|e| CutError::Failed(e.to_string()))?;
            write_folder(&folder, &tokens, &contracts, &modules)
                .map_err(|e| CutError::Failed(format!("cannot write {}: {e}", folder.display())))?;
            let keys = me.keys();
            let options = CreateOptions {
                follows: last,
                now,
                members: Some(&set),
                ..CreateOptions::default()
            };
            create_bundle(&folder, &keys, &network, &options)
                .map_err(|e| CutError::Refused(one_line(&e)))
        })
        .await
        .map_err(|e| CutError::Failed(e.to_string()))??;
        match node.publish_stored(&staging, &dir, known).await {
            Ok(seq) => Ok(seq),
            Err(e) => {
                let _ = crate::node::remove_tree(&staging);
                Err(e)
            }
        }
    }

    /// Checks registration tokens (against the set in force) and modules (against the ABI;
    /// each must be named by one of the tokens) and queues them for the next cut. Returns how
    /// many items were queued.
    pub(crate) async fn submit_registrations(
        &self,
        node: &Node,
        tokens: Vec<String>,
        modules: Vec<Vec<u8>>,
    ) -> Result<usize, SubmitError> {
        let set = node.authorities();
        let now = unix_now();
        let snapshot = node
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
        let count = tokens.len() + modules.len();
        if count == 0 {
            return Err(SubmitError::Refused("nothing to queue: no tokens and no modules".into()));
        }
        for bytes in modules {
            queued.push(Queued {
                arrival: 0,
                item: Item::Module(bytes),
                contract: None,
                replay: None,
            });
        }
        self.submit_all(queued).await?;
        Ok(count)
    }

    /// Publishes a folder signed elsewhere (a rotation's new keys, say) as the next bundle,
    /// between cuts.
    pub(crate) async fn publish_signed(
        &self,
        node: &Node,
        staging: &Path,
        dir: &Path,
    ) -> Result<u64, CutError> {
        let _one = self.cutting.lock().await;
        node.publish_stored(staging, dir, swarmvm_bundle::KnownContracts::new()).await
    }
}

/// A registration token the sequencer can queue: signed by a member of `set` (checked at
/// `now`) and not applied before. Returns its replay key and the modules it names.
fn check_registration(
    snapshot: &swarmvm_ledger::Snapshot,
    set: &swarmvm_token::AuthoritySet,
    token: &str,
    now: u64,
) -> Result<(String, Vec<Hash32>), SubmitError> {
    use swarmvm_bundle::ChainView as _;
    let reg = swarmvm_token::verify_registration(
        token,
        set.trust(),
        TimeCheck::at(now),
        swarmvm_vm::HANDLER_NAMES,
    )
    .map_err(|e| SubmitError::Refused(e.to_string()))?;
    let replay = reg.replay_key();
    if snapshot.token_used(&replay).map_err(|e| SubmitError::Unavailable(e.to_string()))? {
        return Err(SubmitError::Refused(format!(
            "it was applied already ({})",
            swarmvm_primitives::text::shown(&replay)
        )));
    }
    Ok((replay, wasm_modules(&reg)))
}

/// The modules an operations token binds actions to.
fn wasm_modules(reg: &swarmvm_token::Registration) -> Vec<Hash32> {
    match &reg.body {
        RegistrationBody::Operations(ops) => ops
            .values()
            .filter_map(|op| match op {
                Operation::Wasm { module, .. } => Some(*module),
                Operation::Handler(_) => None,
            })
            .collect(),
        RegistrationBody::Wallets(_) => Vec::new(),
    }
}

/// Why a cut was not published.
#[derive(Debug)]
pub(crate) enum CutError {
    /// The bundle was refused (a token, the chain): not the node's fault.
    Refused(String),
    /// The node failed (storage, stopping).
    Failed(String),
}

impl std::fmt::Display for CutError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Refused(w) | Self::Failed(w) => f.write_str(w),
        }
    }
}

/// The bundle's files, each one item a line, and its modules, in `dir` (created).
pub(crate) fn write_folder(
    dir: &Path,
    tokens: &[String],
    contracts: &[String],
    modules: &[Vec<u8>],
) -> std::io::Result<()> {
    use swarmvm_bundle::layout::{CONTRACTS_FILE, MODULES_DIR, TOKENS_FILE};
    std::fs::create_dir_all(dir)?;
    let lines = |items: &[String]| -> String { items.iter().map(|l| format!("{l}\n")).collect() };
    std::fs::write(dir.join(TOKENS_FILE), lines(tokens))?;
    std::fs::write(dir.join(CONTRACTS_FILE), lines(contracts))?;
    if !modules.is_empty() {
        std::fs::create_dir_all(dir.join(MODULES_DIR))?;
    }
    for bytes in modules {
        let hash = Hash32::digest(bytes);
        std::fs::write(dir.join(swarmvm_token::module_file(&hash)), bytes)?;
    }
    Ok(())
}
