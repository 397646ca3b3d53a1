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
}

#[derive(Debug, Default)]
struct QueueState {
    items: VecDeque<Queued>,
    /// Ids of queued contracts.
    ids: HashSet<Hash32>,
    /// Per wallet: its highest queued nonce and how many of its contracts are queued.
    nonces: HashMap<String, (u64, usize)>,
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
        self.next = self.next.max(q.arrival + 1);
        self.items.push_back(q);
    }

    fn remove(&mut self, arrivals: &HashSet<u64>) {
        let mut kept = VecDeque::with_capacity(self.items.len());
        for q in self.items.drain(..) {
            if !arrivals.contains(&q.arrival) {
                kept.push_back(q);
                continue;
            }
            if let Some(c) = &q.contract {
                self.ids.remove(&c.id);
                if let Some(slot) = self.nonces.get_mut(&c.signer) {
                    slot.1 -= 1;
                    if slot.1 == 0 {
                        self.nonces.remove(&c.signer);
                    }
                }
            }
        }
        self.items = kept;
    }
}

/// One submission on its way into the queue.
pub(crate) struct Submission {
    item: Item,
    contract: Option<Checked>,
    reply: oneshot::Sender<Result<(), SubmitError>>,
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
    /// One cut (or published folder) at a time.
    cutting: tokio::sync::Mutex<()>,
    /// Registered wallets' keys, as submissions looked them up.
    pub(crate) wallet_keys: crate::submit::KeyCache,
}

impl std::fmt::Debug for Sequencer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sequencer").field("keys", &self.keys.len()).finish_non_exhaustive()
    }
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
            state.push(Queued { arrival, item, contract: None });
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

    fn retry_after(&self) -> u64 {
        self.cut_every.as_secs().max(1)
    }

    /// Queues an item; answers once it is stored durably.
    pub(crate) async fn submit(
        &self,
        item: Item,
        contract: Option<Checked>,
    ) -> Result<(), SubmitError> {
        let (reply, answer) = oneshot::channel();
        let full = || SubmitError::Full { max: self.max_queue, retry_after: self.retry_after() };
        self.intake.try_send(Submission { item, contract, reply }).map_err(|e| match e {
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
            let snapshot = node.snapshot();
            let mut accepted: Vec<(Queued, oneshot::Sender<Result<(), SubmitError>>)> = Vec::new();
            {
                let mut st = lock(&self.state);
                let mut ids: HashSet<Hash32> = HashSet::new();
                let mut nonces: HashMap<String, u64> = HashMap::new();
                for s in batch {
                    if st.items.len() + accepted.len() >= self.max_queue {
                        let _ = s.reply.send(Err(SubmitError::Full {
                            max: self.max_queue,
                            retry_after: self.retry_after(),
                        }));
                        continue;
                    }
                    if let Some(c) = &s.contract {
                        if st.ids.contains(&c.id) || ids.contains(&c.id) {
                            let _ = s.reply.send(Err(SubmitError::Duplicate {
                                id: c.id.to_hex(),
                                state: "queued".into(),
                            }));
                            continue;
                        }
                        let applied = snapshot
                            .as_ref()
                            .and_then(|snap| swarmvm_vm::nonce_of(snap, &c.signer).ok())
                            .unwrap_or(0);
                        let queued = st.nonces.get(&c.signer).map_or(0, |q| q.0);
                        let batch_last = nonces.get(&c.signer).copied().unwrap_or(0);
                        let last = applied.max(queued).max(batch_last);
                        if c.nonce <= last {
                            let _ =
                                s.reply.send(Err(SubmitError::StaleNonce { nonce: c.nonce, last }));
                            continue;
                        }
                        ids.insert(c.id);
                        nonces.insert(c.signer.clone(), c.nonce);
                    }
                    let arrival = st.next;
                    st.next += 1;
                    accepted
                        .push((Queued { arrival, item: s.item, contract: s.contract }, s.reply));
                }
            }
            drop(snapshot);
            if accepted.is_empty() {
                continue;
            }
            let me = self.clone();
            let items: Vec<(u64, Item)> =
                accepted.iter().map(|(q, _)| (q.arrival, q.item.clone())).collect();
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
                        for (q, reply) in accepted {
                            st.push(q);
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
        node.wait_resumed(Duration::from_secs(60)).await;
        self.recheck(&node);
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

    /// After a restart: contracts the ledger holds already (a cut applied before its items
    /// were removed) are dropped; the others are checked again as at submission.
    fn recheck(&self, node: &Node) {
        let Some(snapshot) = node.snapshot() else { return };
        let network = node.network().id().to_owned();
        let mut drop_list = HashSet::new();
        let mut st = lock(&self.state);
        let items: Vec<Queued> = st.items.drain(..).collect();
        *st = QueueState { next: st.next, ..QueueState::default() };
        for mut q in items {
            if let Item::Contract(token) = &q.item
                && q.contract.is_none()
            {
                match crate::submit::check(&snapshot, token, &network, &self.wallet_keys) {
                    Ok(c) => q.contract = Some(c),
                    Err(e) => {
                        info!(arrival = q.arrival, "dropping a queued contract after restart: {e}");
                        drop_list.insert(q.arrival);
                        continue;
                    }
                }
            }
            st.push(q);
        }
        drop(st);
        if !drop_list.is_empty() {
            let list: Vec<u64> = drop_list.into_iter().collect();
            if let Err(e) = self.with_queue(|q| q.remove(&list)) {
                warn!("{e}");
            }
        }
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
        let (tokens, contracts, modules) = (tokens.to_vec(), contracts.to_vec(), modules.to_vec());
        let folder = dir.clone();
        let staged = staging.clone();
        tokio::task::spawn_blocking(move || {
            crate::node::remove_tree(&staged).map_err(|e| CutError::Failed(e.to_string()))?;
            write_folder(&folder, &tokens, &contracts, &modules)
                .map_err(|e| CutError::Failed(format!("cannot write {}: {e}", folder.display())))?;
            let keys = me.keys();
            let options = CreateOptions { follows: last, now, ..CreateOptions::default() };
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
        let mut named = HashSet::new();
        for (i, token) in tokens.iter().enumerate() {
            let reg = swarmvm_token::verify_registration(
                token,
                set.trust(),
                TimeCheck::at(now),
                swarmvm_vm::HANDLER_NAMES,
            )
            .map_err(|e| SubmitError::Refused(format!("token {}: {e}", i + 1)))?;
            if let RegistrationBody::Operations(ops) = &reg.body {
                for op in ops.values() {
                    if let Operation::Wasm { module, .. } = op {
                        named.insert(*module);
                    }
                }
            }
        }
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
        for token in tokens {
            self.submit(Item::Registration(token), None).await?;
        }
        for bytes in modules {
            self.submit(Item::Module(bytes), None).await?;
        }
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
