//! The applier: one thread owns the ledger's writer. Opened bundles reach it through a
//! channel ([`Applier::apply`]); it verifies each against the last commit and commits it
//! ([`apply_opened_with`](crate::apply_opened_with)), one at a time, and its callers announce
//! what it applied ([`Applier::announce`]) once they recorded it, which every waiter
//! ([`Applier::subscribe`]) sees as a new [`Position`]. Readers never wait for it: they read
//! the last commit ([`Applier::snapshot`]).
//!
//! The applier also answers what the chain says about a bundle before it is applied: the
//! authority set in force, and opening a fetched folder against the set it was signed under
//! ([`Applier::open_bundle`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Mutex, RwLock};
use swarmvm_bundle::{BundleError, KnownContracts, OpenedBundle, open_bundle};
use swarmvm_ledger::{
    InstallReport, Ledger, LedgerReader, OpenError, ReadError, Snapshot, SnapshotError,
    SnapshotTarget,
};
use swarmvm_token::{AuthoritySet, Network};
use swarmvm_vm::Hash32;
use tokio::sync::{oneshot, watch};
use tracing::{error, info, warn};

use crate::counters::ApplyTimes;
use crate::error::NodeError;
use crate::pipeline::{Applied, PipelineError};

/// Where the chain is: the last applied bundle's seq (0 before any) and the state root after
/// it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Position {
    /// The last applied seq.
    pub(crate) seq: u64,
    /// The state root after it.
    pub(crate) root: Hash32,
}

/// What the status shows of the ledger when it cannot be read (after a storage failure,
/// until it is open again; once stopped): its position at its last commit.
#[derive(Debug, Clone, Default)]
pub(crate) struct Summary {
    pub(crate) network: Option<swarmvm_primitives::NetworkId>,
    pub(crate) last_seq: u64,
    pub(crate) state_root: Hash32,
    pub(crate) batches: u64,
}

impl Summary {
    fn of(s: &Snapshot) -> Self {
        Self {
            network: s.network().and_then(|n| n.parse().ok()),
            last_seq: s.last_bundle().map_or(0, |b| b.seq),
            state_root: s.state_root(),
            batches: s.log_len(),
        }
    }
}

/// The newest commit to publish as a snapshot: one slot, so a publisher that falls behind
/// skips to the newest instead of holding old read transactions (which keep redb from
/// reusing their pages).
#[derive(Default)]
pub(crate) struct Commits {
    newest: Mutex<Option<Snapshot>>,
    put: tokio::sync::Notify,
}

impl Commits {
    /// The newest commit put since the last take, waiting for one.
    pub(crate) async fn next(&self) -> Snapshot {
        loop {
            if let Some(s) = self.newest.lock().take() {
                return s;
            }
            self.put.notified().await;
        }
    }

    fn put(&self, snapshot: Snapshot) {
        *self.newest.lock() = Some(snapshot);
        self.put.notify_one();
    }
}

/// Work for the writer's thread.
enum Job {
    Apply {
        bundle: Box<OpenedBundle>,
        known: KnownContracts,
        reply: oneshot::Sender<Result<Applied, PipelineError>>,
    },
    /// Closes the ledger after a storage failure: every later apply is refused until
    /// [`Job::Reopen`].
    Close { reply: oneshot::Sender<()> },
    /// Opens the ledger again if it is closed.
    Reopen { reply: oneshot::Sender<Result<(), OpenError>> },
    /// Keeps a verified head that agrees with the ledger as the one for its seq.
    KeepHead { seq: u64, text: String },
    /// Installs a snapshot file into the (empty) ledger.
    InstallSnapshot {
        path: PathBuf,
        target: Box<SnapshotTarget>,
        reply: oneshot::Sender<Result<InstallReport, SnapshotError>>,
    },
    /// Closes the ledger and ends the thread.
    Stop { reply: oneshot::Sender<()> },
}

/// What the writer's thread and the readers share.
struct Shared {
    path: PathBuf,
    network: Network,
    reader: RwLock<Option<LedgerReader>>,
    last: Mutex<Summary>,
    times: Arc<ApplyTimes>,
    /// Where the commit of every Nth bundle goes, as a read snapshot taken before the next
    /// commit (`--snapshot-every N`): N and the slot.
    snapshots: Mutex<Option<(u64, Arc<Commits>)>>,
    /// Tests: the seq whose apply panics (0: none).
    #[cfg(test)]
    panic_at: std::sync::atomic::AtomicU64,
}

impl Shared {
    fn snapshot(&self) -> Option<Snapshot> {
        self.reader.read().as_ref()?.snapshot().ok()
    }
}

/// The handle to the applier. Cloning gives another handle to the same one.
#[derive(Clone)]
pub(crate) struct Applier {
    shared: Arc<Shared>,
    jobs: std::sync::mpsc::Sender<Job>,
    applied: Arc<watch::Sender<Position>>,
    /// Held while a bundle applies, and by a sequencer while it cuts: a bundle from elsewhere
    /// applies between cuts, never during one.
    turn: Arc<tokio::sync::Mutex<()>>,
    thread: Arc<Mutex<Option<std::thread::JoinHandle<()>>>>,
}

impl std::fmt::Debug for Applier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Applier").field("path", &self.shared.path).finish_non_exhaustive()
    }
}

/// Why the ledger could not be opened again.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReopenError {
    /// The file could not be opened.
    #[error(transparent)]
    Open(#[from] OpenError),
    /// The writer's thread has ended.
    #[error("the node stopped")]
    Stopped,
}

/// The error of an apply sent to an applier that stopped.
fn stopped() -> PipelineError {
    ReadError::Corrupt("the node stopped".into()).into()
}

impl Applier {
    /// Opens the ledger at `path` for `network` (refusing one that belongs to another
    /// network) and starts the writer's thread.
    pub(crate) async fn open(
        path: PathBuf,
        network: Network,
        times: Arc<ApplyTimes>,
    ) -> Result<Self, NodeError> {
        let expected = network.id().to_owned();
        let opened = path.clone();
        let (ledger, summary) = tokio::task::spawn_blocking(move || {
            let ledger = Ledger::open(&opened)?;
            let summary = Summary::of(&ledger.snapshot()?);
            if let Some(found) = &summary.network
                && found.as_str() != expected
            {
                return Err(NodeError::BadRequest(format!(
                    "this data dir's ledger belongs to network {found}, not to network {expected}"
                )));
            }
            Ok::<_, NodeError>((ledger, summary))
        })
        .await
        .map_err(|e| NodeError::Task(e.to_string()))??;
        let position = Position { seq: summary.last_seq, root: summary.state_root };
        let shared = Arc::new(Shared {
            path,
            network,
            reader: RwLock::new(Some(ledger.reader())),
            last: Mutex::new(summary),
            times,
            snapshots: Mutex::new(None),
            #[cfg(test)]
            panic_at: std::sync::atomic::AtomicU64::new(0),
        });
        let (jobs, rx) = std::sync::mpsc::channel();
        let writer = shared.clone();
        let thread = std::thread::Builder::new()
            .name("swarmvm-applier".into())
            .spawn(move || write_loop(&writer, Some(ledger), &rx))
            .map_err(|e| NodeError::Task(format!("cannot start the applier: {e}")))?;
        Ok(Self {
            shared,
            jobs,
            applied: Arc::new(watch::channel(position).0),
            turn: Arc::new(tokio::sync::Mutex::new(())),
            thread: Arc::new(Mutex::new(Some(thread))),
        })
    }

    /// Hands `bundle` to the writer's thread: the receiver of its outcome.
    fn send(
        &self,
        bundle: OpenedBundle,
        known: KnownContracts,
    ) -> Result<oneshot::Receiver<Result<Applied, PipelineError>>, PipelineError> {
        let (reply, rx) = oneshot::channel();
        let job = Job::Apply { bundle: Box::new(bundle), known, reply };
        self.jobs.send(job).map_err(|_| stopped())?;
        Ok(rx)
    }

    /// Verifies `bundle` against the last commit and commits it, trusting the signatures of
    /// the contracts in `known` (verified already). Waits for the bundles sent before it.
    pub(crate) async fn apply(
        &self,
        bundle: OpenedBundle,
        known: KnownContracts,
    ) -> Result<Applied, PipelineError> {
        self.send(bundle, known)?.await.unwrap_or_else(|_| Err(stopped()))
    }

    /// [`Applier::apply`] from a blocking thread.
    pub(crate) fn apply_blocking(
        &self,
        bundle: OpenedBundle,
        known: KnownContracts,
    ) -> Result<Applied, PipelineError> {
        self.send(bundle, known)?.blocking_recv().unwrap_or_else(|_| Err(stopped()))
    }

    /// Closes the ledger after a storage failure (blocking): readers see the last commit's
    /// [`Summary`] and every apply is refused until [`Applier::reopen_blocking`].
    pub(crate) fn close_blocking(&self) {
        let (reply, rx) = oneshot::channel();
        if self.jobs.send(Job::Close { reply }).is_ok() {
            let _ = rx.blocking_recv();
        }
    }

    /// Opens the ledger again if it is closed (blocking).
    pub(crate) fn reopen_blocking(&self) -> Result<(), ReopenError> {
        let (reply, rx) = oneshot::channel();
        self.jobs.send(Job::Reopen { reply }).map_err(|_| ReopenError::Stopped)?;
        Ok(rx.blocking_recv().map_err(|_| ReopenError::Stopped)??)
    }

    /// Waits for the apply in progress, closes the ledger file and ends the writer's thread.
    pub(crate) async fn stop(&self) {
        if let Some(s) = self.snapshot() {
            *self.shared.last.lock() = Summary::of(&s);
        }
        let (reply, rx) = oneshot::channel();
        if self.jobs.send(Job::Stop { reply }).is_ok() {
            let _ = rx.await;
        }
        // The writer's thread clears it; if the thread is gone, it is cleared here, so the
        // file is closed either way.
        self.shared.reader.write().take();
        let thread = self.thread.lock().take();
        if let Some(t) = thread {
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
        }
    }

    /// From now on, the commit of every bundle whose seq is a multiple of `every` is sent, as
    /// a read snapshot of exactly that commit, to the receiver returned.
    pub(crate) fn snapshots_every(&self, every: u64) -> Arc<Commits> {
        let commits = Arc::new(Commits::default());
        *self.shared.snapshots.lock() = Some((every.max(1), commits.clone()));
        commits
    }

    /// Installs the snapshot file at `path` into the ledger, which must be empty, as the state
    /// after `target`'s bundle ([`Ledger::install_snapshot`]), and announces the new position.
    pub(crate) async fn install_snapshot(
        &self,
        path: PathBuf,
        target: SnapshotTarget,
    ) -> Result<InstallReport, SnapshotError> {
        let (reply, rx) = oneshot::channel();
        let job = Job::InstallSnapshot { path, target: Box::new(target), reply };
        let gone = || SnapshotError::Ledger(ReadError::Corrupt("the node stopped".into()));
        self.jobs.send(job).map_err(|_| gone())?;
        let report = rx.await.map_err(|_| gone())??;
        if let Some(s) = self.snapshot() {
            *self.shared.last.lock() = Summary::of(&s);
        }
        self.applied.send_replace(Position { seq: report.seq, root: report.state_root });
        Ok(report)
    }

    /// Keeps `head` (verified, and naming this ledger's bundle and root at `seq`) as the head
    /// of `seq`, so proofs against the state at `seq` can name it. Does not wait.
    pub(crate) fn keep_head(&self, seq: u64, head: String) {
        let _ = self.jobs.send(Job::KeepHead { seq, text: head });
    }

    /// Tells every waiter that `applied` is in: the caller recorded it (the bundle's entry,
    /// the head) first.
    pub(crate) fn announce(&self, applied: &Applied) {
        self.applied.send_replace(Position { seq: applied.seq, root: applied.report.state_root });
    }

    /// A receiver of the position after each announced apply.
    pub(crate) fn subscribe(&self) -> watch::Receiver<Position> {
        self.applied.subscribe()
    }

    /// Waits until the bundle `seq` has applied, at most `limit`. True if it did.
    pub(crate) async fn wait_applied(&self, seq: u64, limit: Duration) -> bool {
        let mut rx = self.subscribe();
        tokio::time::timeout(limit, rx.wait_for(|p| p.seq >= seq)).await.is_ok_and(|r| r.is_ok())
    }

    /// The turn: held while a bundle applies, and by a sequencer while it cuts.
    pub(crate) fn turn(&self) -> &tokio::sync::Mutex<()> {
        &self.turn
    }

    /// The ledger as its last commit left it (`None` while it is closed). Never waits for a
    /// bundle being applied.
    pub(crate) fn snapshot(&self) -> Option<Snapshot> {
        self.shared.snapshot()
    }

    /// The ledger's position: read from its last commit, or as it was when it closed.
    pub(crate) fn summary(&self) -> Summary {
        match self.snapshot() {
            Some(s) => Summary::of(&s),
            None => self.shared.last.lock().clone(),
        }
    }

    /// The last applied seq (0 before any).
    pub(crate) fn last_seq(&self) -> u64 {
        self.snapshot().and_then(|s| s.last_bundle()).map_or(0, |b| b.seq)
    }

    /// The network this node follows.
    pub(crate) fn network(&self) -> &Network {
        &self.shared.network
    }

    /// The network, and the authority set in force after the last commit (the network's
    /// first set when the ledger cannot be read: verification repeats the check anyway).
    pub(crate) fn in_force(&self) -> (Network, AuthoritySet) {
        let network = self.shared.network.clone();
        let set = self
            .snapshot()
            .and_then(|s| swarmvm_bundle::set_in_force(&s, &network).ok())
            .unwrap_or_else(|| network.genesis().clone());
        (network, set)
    }

    /// The authority set in force: the state's, or the network's first set.
    pub(crate) fn authorities(&self) -> AuthoritySet {
        self.in_force().1
    }

    /// Opens a bundle folder (its manifest and files, [`open_bundle`]) against the set in
    /// force before it: the set in force now for the next bundle (and, as the best guess,
    /// for later ones); for a bundle at or below the last applied seq (another torrent of an
    /// applied bundle, or a fork), the set the chain had then, found in the applied
    /// manifests, when the set in force now refuses its signers (a rotation removed them
    /// since). Blocking: the one place a fetched bundle is verified before it is applied.
    pub(crate) fn open_bundle(&self, path: &Path) -> Result<OpenedBundle, BundleError> {
        use swarmvm_token::VerifyError;
        let (network, set) = self.in_force();
        let refused = match open_bundle(path, network.id(), &set) {
            Err(BundleError::Manifest(
                e @ (VerifyError::NotAMember(_)
                | VerifyError::UnknownKid(_)
                | VerifyError::ThresholdNotMet { .. }),
            )) => e,
            other => return other,
        };
        let seq = std::fs::read(path.join(swarmvm_bundle::layout::MANIFEST_FILE))
            .ok()
            .and_then(|raw| {
                swarmvm_bundle::manifest_token(&raw)
                    .ok()
                    .and_then(|t| swarmvm_token::peek_manifest(t).ok())
            })
            .map(|p| p.seq);
        match seq.filter(|s| *s <= self.last_seq()).and_then(|s| self.set_before(s)) {
            Some(before) if before.canonical() != set.canonical() => {
                open_bundle(path, network.id(), &before)
            }
            _ => Err(BundleError::Manifest(refused)),
        }
    }

    /// The authority set in force before the applied bundle `seq`: the rotation of the last
    /// applied manifest before it that carries one, else the network's first set.
    fn set_before(&self, seq: u64) -> Option<AuthoritySet> {
        let snapshot = self.snapshot()?;
        for s in (1..seq).rev() {
            let record = snapshot.bundle(s).ok()??;
            let peek = swarmvm_token::peek_manifest(&record.manifest).ok()?;
            if let Some(set) = peek.authority_set {
                return Some(set);
            }
        }
        Some(self.shared.network.genesis().clone())
    }
}

/// The writer's thread: takes jobs in order until it is stopped or every handle is gone.
fn write_loop(shared: &Shared, mut ledger: Option<Ledger>, jobs: &std::sync::mpsc::Receiver<Job>) {
    while let Ok(job) = jobs.recv() {
        match job {
            Job::Apply { bundle, known, reply } => {
                let result = match ledger.as_mut() {
                    Some(l) => {
                        let run =
                            std::panic::AssertUnwindSafe(|| commit(shared, l, *bundle, &known));
                        std::panic::catch_unwind(run).unwrap_or_else(|panic| {
                            // The write transaction was dropped unfinished, so the file holds
                            // the last commit; what the ledger kept in memory may not, so it
                            // is opened again from the file.
                            let why = panic_message(panic.as_ref());
                            error!(%why, "applying a bundle panicked; reopening the ledger");
                            close(shared, &mut ledger);
                            if let Err(e) = reopen(shared, &mut ledger) {
                                error!(error = %e, "cannot open the ledger again");
                            }
                            Err(PipelineError::Panicked(why))
                        })
                    }
                    None => Err(ReadError::Corrupt(
                        "the ledger is closed after a storage failure".into(),
                    )
                    .into()),
                };
                let _ = reply.send(result);
            }
            Job::Close { reply } => {
                close(shared, &mut ledger);
                let _ = reply.send(());
            }
            Job::Reopen { reply } => {
                let _ = reply.send(reopen(shared, &mut ledger));
            }
            Job::KeepHead { seq, text } => {
                if let Some(l) = ledger.as_mut()
                    && let Err(e) = l.keep_head(seq, &text)
                {
                    warn!(seq, error = %e, "cannot keep the head");
                }
            }
            Job::InstallSnapshot { path, target, reply } => {
                let result = match ledger.as_mut() {
                    Some(l) => {
                        std::fs::File::open(&path).map_err(SnapshotError::Io).and_then(|f| {
                            let mut input = std::io::BufReader::with_capacity(1 << 20, f);
                            l.install_snapshot(&mut input, &target)
                        })
                    }
                    None => Err(SnapshotError::Ledger(ReadError::Corrupt(
                        "the ledger is closed after a storage failure".into(),
                    ))),
                };
                let _ = reply.send(result);
            }
            Job::Stop { reply } => {
                close(shared, &mut ledger);
                let _ = reply.send(());
                return;
            }
        }
    }
}

/// Closes the ledger: readers see the last commit's [`Summary`] until it opens again.
fn close(shared: &Shared, ledger: &mut Option<Ledger>) {
    *ledger = None;
    shared.reader.write().take();
}

/// Opens the ledger from its file if it is closed, for the writer and the readers.
fn reopen(shared: &Shared, ledger: &mut Option<Ledger>) -> Result<(), OpenError> {
    if ledger.is_none() {
        let l = Ledger::open(&shared.path)?;
        *shared.reader.write() = Some(l.reader());
        *ledger = Some(l);
    }
    Ok(())
}

/// The text of a caught panic.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned())
}

/// Applies one bundle: the one place a node commits a bundle to its ledger.
fn commit(
    shared: &Shared,
    ledger: &mut Ledger,
    bundle: OpenedBundle,
    known: &KnownContracts,
) -> Result<Applied, PipelineError> {
    info!(seq = bundle.manifest.seq, bundle = %bundle.id(), "applying bundle");
    let started = std::time::Instant::now();
    #[cfg(test)]
    assert_ne!(
        shared.panic_at.load(std::sync::atomic::Ordering::SeqCst),
        bundle.manifest.seq,
        "injected panic"
    );
    let applied = crate::pipeline::apply_opened_with(ledger, bundle, &shared.network, known)?;
    shared.times.record(started.elapsed());
    if let Ok(snapshot) = ledger.snapshot() {
        *shared.last.lock() = Summary::of(&snapshot);
    }
    if let Some((every, commits)) = &*shared.snapshots.lock()
        && applied.seq % every == 0
        && let Ok(snapshot) = ledger.snapshot()
    {
        commits.put(snapshot);
    }
    info!(
        seq = applied.seq,
        bundle = %applied.id,
        applied = applied.report.entry.applied,
        rejected = applied.report.entry.rejected,
        state_root = %applied.report.state_root,
        "bundle applied"
    );
    Ok(applied)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use swarmvm_test_support::net::{TestNet, student};

    use super::*;

    #[tokio::test]
    async fn a_panic_while_applying_fails_that_apply_only_and_the_ledger_stays_as_it_was() {
        let dir = tempfile::tempdir().unwrap();
        let net = TestNet::new(1);
        let contracts = [net.contract(0, 1, &[student("S001")])];
        let b1 = net.bundle(dir.path(), "bundle-1", true, &contracts, None);
        let path = dir.path().join("ledger.redb");
        let applier =
            Applier::open(path.clone(), net.network.clone(), Arc::default()).await.unwrap();
        let before = applier.snapshot().unwrap().state_root();

        applier.shared.panic_at.store(1, Ordering::SeqCst);
        let e = applier.apply(applier.open_bundle(&b1).unwrap(), KnownContracts::new()).await;
        let Err(e) = e else { panic!("the apply did not fail") };
        assert!(
            matches!(&e, PipelineError::Panicked(why) if why.contains("injected panic")),
            "{e}"
        );
        assert!(e.is_fatal(), "a panic is this node's failure, not the bundle's refusal");
        let snapshot = applier.snapshot().expect("the ledger was opened again");
        assert_eq!((snapshot.state_root(), applier.last_seq()), (before, 0));
        drop(snapshot);

        // The writer's thread lives on: the same bundle applies once nothing panics.
        applier.shared.panic_at.store(0, Ordering::SeqCst);
        let applied =
            applier.apply(applier.open_bundle(&b1).unwrap(), KnownContracts::new()).await.unwrap();
        assert_eq!((applied.seq, applier.last_seq()), (1, 1));
        assert_ne!(applier.snapshot().unwrap().state_root(), before);

        // Stopping closes the file: it opens again at once.
        applier.stop().await;
        assert!(applier.snapshot().is_none());
        assert!(applier.reopen_blocking().is_err(), "a stopped applier does not pretend");
        Ledger::open(&path).unwrap();
    }
}
