//! State snapshots over BitTorrent.
//!
//! Publishing (`--snapshot-every N`): the commit of every Nth bundle is written as a snapshot
//! file (`swarmvm_ledger`'s format, the same bytes on every node at that seq) in
//! `snapshots/snapshot-SEQ/state.svs`, made a torrent with [`SNAPSHOT_PIECE`] pieces and
//! seeded; the node's heads name the newest as their `snapshot` claim. The newest [`KEEP`] are
//! kept and seeded, again after a restart.
//!
//! Joining (`--from-snapshot`): an empty ledger that follows others takes the snapshot the
//! newest verified head names: the manifest of its seq (K-signed) gives the chain position,
//! the torrent is fetched from the swarm (resuming after a crash), and the ledger installs it
//! only if every section proves to the claimed root. Without a snapshot, or when one is
//! refused or cannot be fetched, the node replays bundles from genesis and says why.

use std::path::{Path, PathBuf};
use std::time::Duration;

use swarmvm_ledger::{SNAPSHOT_PIECE, Snapshot, SnapshotTarget};
use swarmvm_swarm::{MagnetLink, TorrentFile, Transfer};
use swarmvm_token::SnapshotClaim;
use swarmvm_vm::Hash32;
use tracing::{info, warn};

use crate::core::Core;
use crate::fetcher::remove_tree;
use crate::protocol::Joined;
use crate::snapshot_store::{KEEP, name};

/// The file inside a snapshot's folder.
const FILE: &str = "state.svs";
/// How long a joiner waits for a first verified head before it replays from genesis.
const HEAD_WAIT: Duration = Duration::from_secs(30);

/// Seeds again the snapshots this node published or started from before a restart; with
/// `every`, then publishes a snapshot every `every` bundles: each Nth commit is written,
/// seeded and named in the heads.
pub(crate) fn start(core: &Core, every: Option<u64>) {
    let commits = every.map(|every| core.applier.snapshots_every(every));
    let core = core.clone();
    let tasks = core.tasks.clone();
    tasks.spawn(async move {
        reseed(&core).await;
        let Some(commits) = commits else { return };
        let mut stop = core.tasks.stopping();
        loop {
            let snapshot = tokio::select! {
                s = commits.next() => s,
                _ = stop.wait_for(|s| *s) => break,
            };
            if let Err(e) = publish(&core, snapshot).await {
                warn!("cannot publish a snapshot: {e}");
            }
        }
    });
}

/// Seeds the snapshots a previous run left, and names the newest in heads.
async fn reseed(core: &Core) {
    let dir = core.snapshots.dir().to_path_buf();
    let Ok(list) = std::fs::read_dir(&dir) else { return };
    let mut seqs: Vec<u64> = list
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let n = e.file_name().into_string().ok()?;
            n.strip_prefix("snapshot-")?.strip_suffix(".torrent")?.parse().ok()
        })
        .collect();
    seqs.sort_unstable();
    for seq in seqs.iter().rev().take(KEEP).rev() {
        let folder = dir.join(name(*seq));
        let seeded = async {
            let torrent = TorrentFile::read(&dir.join(format!("{}.torrent", name(*seq))))
                .map_err(|e| e.to_string())?;
            let root = root_of(&folder.join(FILE))?;
            let transfer =
                core.fetcher.swarm().seed(&torrent, &folder).await.map_err(|e| e.to_string())?;
            Ok::<_, String>((torrent, root, transfer))
        };
        match seeded.await {
            Ok((torrent, root, transfer)) => {
                let magnet = torrent.magnet().to_string();
                core.heads.publish_snapshot(SnapshotClaim { seq: *seq, state_root: root, magnet });
                core.snapshots.keep(core.fetcher.swarm(), *seq, transfer).await;
                core.refresh_head();
            }
            Err(e) => warn!(seq, "cannot seed the snapshot kept: {e}"),
        }
    }
}

/// The state root a snapshot file's header names (not checked: this node wrote it).
fn root_of(path: &Path) -> Result<Hash32, String> {
    use std::io::Read as _;
    let mut head = [0u8; 41];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut head))
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    Hash32::from_slice(&head[9..]).map_err(|e| e.to_string())
}

/// Writes the commit `snapshot` as a snapshot folder and torrent, seeds it, and names it in
/// the heads this node signs from now on.
async fn publish(core: &Core, snapshot: Snapshot) -> Result<(), String> {
    let Some(seq) = snapshot.last_bundle().map(|b| b.seq) else { return Ok(()) };
    let root = snapshot.state_root();
    let dir = core.snapshots.dir().to_path_buf();
    let trackers = core.fetcher.swarm().trackers().to_vec();
    let started = std::time::Instant::now();
    let (torrent, folder) =
        tokio::task::spawn_blocking(move || write(&dir, seq, &snapshot, &trackers))
            .await
            .map_err(|e| e.to_string())??;
    let transfer = core.fetcher.swarm().seed(&torrent, &folder).await.map_err(|e| e.to_string())?;
    let magnet = torrent.magnet().to_string();
    info!(
        seq,
        state_root = %root,
        bytes = torrent.total_length(),
        ms = started.elapsed().as_millis() as u64,
        %magnet,
        "snapshot published"
    );
    core.heads.publish_snapshot(SnapshotClaim { seq, state_root: root, magnet });
    core.snapshots.keep(core.fetcher.swarm(), seq, transfer).await;
    // The head of the newest bundle names it at once, not from the next head on.
    core.refresh_head();
    Ok(())
}

/// Writes `snapshot-SEQ/state.svs` and its torrent in `dir`, through a folder that becomes
/// the snapshot's only once whole.
fn write(
    dir: &Path,
    seq: u64,
    snapshot: &Snapshot,
    trackers: &[reqwest::Url],
) -> Result<(TorrentFile, PathBuf), String> {
    let folder = dir.join(name(seq));
    let torrent_file = dir.join(format!("{}.torrent", name(seq)));
    let building = dir.join(".building");
    let _ = remove_tree(&building);
    let staged = building.join(name(seq));
    std::fs::create_dir_all(&staged)
        .map_err(|e| format!("cannot create {}: {e}", staged.display()))?;
    let path = staged.join(FILE);
    let file = std::fs::File::create(&path)
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
    snapshot.write_snapshot(&mut out).map_err(|e| e.to_string())?;
    let file = out.into_inner().map_err(|e| e.to_string())?;
    file.sync_all().map_err(|e| e.to_string())?;
    let piece = u32::try_from(SNAPSHOT_PIECE).unwrap_or(u32::MAX);
    let torrent = TorrentFile::create(&staged, trackers, Some(piece)).map_err(|e| e.to_string())?;
    let _ = remove_tree(&folder);
    std::fs::rename(&staged, &folder).map_err(|e| format!("cannot move the snapshot: {e}"))?;
    let partial = dir.join(format!("{}.torrent.partial", name(seq)));
    std::fs::write(&partial, torrent.as_bytes())
        .and_then(|()| std::fs::rename(&partial, &torrent_file))
        .map_err(|e| format!("cannot write {}: {e}", torrent_file.display()))?;
    let _ = remove_tree(&building);
    Ok((torrent, folder))
}

/// Prunes, after every applied bundle, the bundles older than the newest `keep` that lie
/// below the newest snapshot this node seeds (never one above it, nor the snapshot's own,
/// whose manifest joiners read): no bundle is pruned until there is a snapshot.
pub(crate) fn start_pruning(core: &Core, keep: u64) {
    let core = core.clone();
    let tasks = core.tasks.clone();
    tasks.spawn(async move {
        let mut applied = core.applier.subscribe();
        let mut stop = core.tasks.stopping();
        loop {
            let last = applied.borrow_and_update().seq;
            if let Some(snapshot) = core.heads.published_snapshot() {
                let through = last.saturating_sub(keep).min(snapshot.seq.saturating_sub(1));
                if through > core.snapshots.pruned_through() {
                    prune(&core, through).await;
                }
            }
            tokio::select! {
                r = applied.changed() => if r.is_err() { break },
                // A snapshot published since is seen at the next tick.
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = stop.wait_for(|s| *s) => break,
            }
        }
    });
}

/// Records that the bundles up to `through` are pruned, then prunes them.
async fn prune(core: &Core, through: u64) {
    if let Err(e) = core.snapshots.set_pruned(through) {
        return warn!("cannot record the pruned bundles: {e}");
    }
    let n = core.fetcher.prune(through).await;
    info!(through, removed = n, "bundles pruned");
}

/// Why a join replays instead.
fn replay(core: &Core, reason: String) {
    info!("not starting from a snapshot: {reason}; replaying bundles from genesis");
    core.snapshots.set_joined(Joined {
        from: "genesis".into(),
        seq: None,
        reason: Some(reason),
        bytes: None,
        fetched: None,
    });
}

/// Starts an empty ledger from the snapshot the newest verified head names, fetched from
/// `peers` (and the session's own); replays from genesis (saying why) when there is none, or
/// when it is refused or cannot be fetched. `manifest_at` reads the manifest of a seq from
/// the followed nodes.
pub(crate) async fn join<F, Fut>(core: &Core, peers: Vec<std::net::SocketAddr>, manifest_at: F)
where
    F: Fn(u64) -> Fut,
    Fut: std::future::Future<Output = Vec<String>>,
{
    if core.applier.last_seq() > 0 {
        return;
    }
    let waited = tokio::time::timeout(HEAD_WAIT, async {
        let mut changed = core.heads.subscribe();
        loop {
            if let Some((_, head)) = core.heads.head() {
                return head;
            }
            let _ = changed.changed().await;
        }
    })
    .await;
    let Ok(head) = waited else {
        return replay(core, format!("no verified head within {}s", HEAD_WAIT.as_secs()));
    };
    let Some(claim) = head.snapshot.clone() else {
        return replay(core, format!("the newest head (seq {}) names no snapshot", head.seq));
    };
    info!(seq = claim.seq, state_root = %claim.state_root, "starting from the snapshot the head names");
    let (network, set) = core.applier.in_force();
    let mut manifest = None;
    let mut why = format!("no followed node gave a manifest for seq {}", claim.seq);
    for text in manifest_at(claim.seq).await {
        match swarmvm_token::verify_manifest(&text, network.id(), &set) {
            Ok(m) if m.seq == claim.seq => {
                manifest = Some((text, m));
                break;
            }
            Ok(m) => why = format!("a followed node gave the manifest of seq {}", m.seq),
            Err(e) => why = format!("the manifest of seq {} did not verify: {e}", claim.seq),
        }
    }
    let Some((text, m)) = manifest else { return replay(core, why) };
    let target = SnapshotTarget {
        network: network.id().to_owned(),
        state_root: claim.state_root,
        position: swarmvm_ledger::BundlePosition {
            seq: m.seq,
            id: m.id,
            issued_at: m.issued_at,
            rules: m.rules,
        },
        parent: m.parent,
        manifest: text,
        head: None,
    };
    clear_abandoned(core.snapshots.dir(), claim.seq);
    let fetched = fetch(core, &claim, &peers).await;
    let (path, transfer) = match fetched {
        Ok(f) => f,
        Err(e) => return replay(core, format!("snapshot seq {} not fetched: {e}", claim.seq)),
    };
    match core.applier.install_snapshot(path, target).await {
        Ok(report) => {
            let progress = transfer.progress();
            let torrent_file = core.snapshots.dir().join(format!("{}.torrent", name(claim.seq)));
            let partial = torrent_file.with_extension("partial");
            // Seeded again after a restart, as a snapshot this node published.
            if let Err(e) = std::fs::write(&partial, transfer.torrent().as_bytes())
                .and_then(|()| std::fs::rename(&partial, &torrent_file))
            {
                warn!("cannot keep the snapshot's torrent: {e}");
            }
            info!(
                seq = report.seq,
                state_root = %report.state_root,
                entries = report.entries,
                chunks = report.chunks,
                "started from the snapshot; following from the next bundle"
            );
            core.snapshots.set_joined(Joined {
                from: "snapshot".into(),
                seq: Some(report.seq),
                reason: None,
                bytes: Some(progress.total),
                fetched: Some(progress.fetched),
            });
            core.heads.publish_snapshot(claim.clone());
            core.snapshots.keep(core.fetcher.swarm(), claim.seq, transfer).await;
        }
        Err(e) => {
            warn!(seq = claim.seq, "snapshot refused: {e}");
            core.fetcher.swarm().remove(&transfer).await;
            let _ = remove_tree(&core.snapshots.dir().join(name(claim.seq)));
            replay(core, format!("snapshot seq {} refused: {e}", claim.seq));
        }
    }
}

/// Removes the snapshot folders a fetch left unfinished (no torrent beside them), but that of
/// `seq`, whose fetch resumes.
fn clear_abandoned(dir: &Path, seq: u64) {
    let Ok(list) = std::fs::read_dir(dir) else { return };
    for entry in list.flatten() {
        let file = entry.file_name().to_string_lossy().into_owned();
        let Some(other) = file.strip_prefix("snapshot-").and_then(|n| n.parse::<u64>().ok()) else {
            continue;
        };
        if other != seq && !dir.join(format!("{file}.torrent")).exists() {
            let _ = remove_tree(&entry.path());
        }
    }
}

/// Fetches the snapshot `claim` names into `snapshots/` (resuming a fetch a crash cut short),
/// within the node's resolve and stall bounds.
async fn fetch(
    core: &Core,
    claim: &SnapshotClaim,
    peers: &[std::net::SocketAddr],
) -> Result<(PathBuf, Transfer), String> {
    let magnet = MagnetLink::parse(&claim.magnet).map_err(|e| e.to_string())?;
    let limits = core.fetcher.limits();
    let swarm = core.fetcher.swarm();
    let (torrent, seen) =
        tokio::time::timeout(limits.resolve_timeout, swarm.resolve(&magnet, peers))
            .await
            .map_err(|_| format!("its magnet did not resolve within {:?}", limits.resolve_timeout))?
            .map_err(|e| e.to_string())?;
    let files = torrent.files();
    if torrent.name() != name(claim.seq)
        || files.len() != 1
        || files[0].path.as_path() != Path::new(FILE)
        || torrent.piece_length() as usize != SNAPSHOT_PIECE
    {
        return Err(format!(
            "the torrent is not a snapshot of seq {} ({} with {} files)",
            claim.seq,
            torrent.name(),
            files.len()
        ));
    }
    let mut all: Vec<std::net::SocketAddr> = peers.to_vec();
    all.extend(seen.into_iter().filter(|p| !peers.contains(p)));
    let dir = core.snapshots.dir().to_path_buf();
    let transfer = swarm.fetch(&torrent, &dir, &all).await.map_err(|e| e.to_string())?;
    info!(seq = claim.seq, bytes = torrent.total_length(), "fetching the snapshot");
    let done = tokio::select! {
        r = transfer.wait_complete() => r.map_err(|e| e.to_string()),
        reason = crate::fetcher::stall(&transfer, limits.stall_timeout) => Err(reason),
    };
    if let Err(e) = done {
        swarm.remove(&transfer).await;
        return Err(e);
    }
    Ok((torrent.path_in(&dir).join(FILE), transfer))
}
