//! A session seeding many torrents keeps few descriptors open (issue 25, finding 1). Each
//! seeded torrent used to keep its folder and its files open for as long as it was seeded,
//! so a node's descriptors grew with its chain (786 after 255 bundles) until "Too many open
//! files". Now files are opened on demand and the process keeps at most a fixed number open,
//! whatever the number of torrents.

use std::path::{Path, PathBuf};

use swarmvm_swarm::{Swarm, SwarmOptions, TorrentFile};
use tokio::time::timeout;

use crate::support::{LIMIT, bundle_dir, tree};

/// Files the process keeps open at most (`MAX_OPEN_FILES` in `src/storage.rs`).
const CAP: usize = 64;
/// Torrents seeded: each used to hold four descriptors (its folder and its three files).
const TORRENTS: usize = 256;

/// What this process's descriptors are open on: a path for a file or a folder, something
/// like `socket:[1234]` or `anon_inode:[eventpoll]` for the rest.
fn open_descriptors() -> Vec<PathBuf> {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .collect()
}

fn count(list: &[PathBuf], which: impl Fn(&Path) -> bool) -> usize {
    list.iter().filter(|target| which(target)).count()
}

fn is_socket(target: &Path) -> bool {
    target.to_string_lossy().starts_with("socket:")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seeding_many_torrents_keeps_few_descriptors_open() {
    let dir = tempfile::tempdir().unwrap();
    // The links in /proc/self/fd name canonical paths.
    let root = dir.path().canonicalize().unwrap();
    let data = root.join("data");
    let bundles: Vec<(PathBuf, TorrentFile)> = (0..TORRENTS)
        .map(|i| {
            let bundle = bundle_dir(&data, &format!("bundle-{i}"), [100 + i, 1_000, 50]);
            let torrent = TorrentFile::create(&bundle, &[], None).unwrap();
            (bundle, torrent)
        })
        .collect();

    let before = open_descriptors();
    let seeder = Swarm::start(SwarmOptions::loopback(), &root.join("seeder")).await.unwrap();
    let mut seeds = Vec::new();
    for (bundle, torrent) in &bundles {
        seeds.push(seeder.seed(torrent, bundle).await.unwrap());
    }
    // Each checked (its files read) and seeding.
    for seed in &seeds {
        timeout(LIMIT, seed.wait_complete()).await.expect("checked within the limit").unwrap();
    }
    // Reads from a few, the first ones' files closed long ago: they open again on demand.
    let addr = seeder.listen_addr().unwrap();
    let out = root.join("fetched");
    let fetcher = Swarm::start(SwarmOptions::loopback(), &out).await.unwrap();
    let mut fetches = Vec::new();
    for i in [0, 1, TORRENTS / 2, TORRENTS - 1] {
        let (bundle, torrent) = &bundles[i];
        fetches.push((fetcher.fetch(torrent, &out, &[addr]).await.unwrap(), bundle.clone()));
    }
    for (transfer, _) in &fetches {
        timeout(LIMIT, transfer.wait_complete()).await.expect("fetched within the limit").unwrap();
    }

    let after = open_descriptors();
    let below = count(&after, |t| t.starts_with(&root));
    let grown =
        |which: &dyn Fn(&Path) -> bool| count(&after, which).saturating_sub(count(&before, which));
    let (files, others, all) =
        (grown(&|t| t.is_absolute()), grown(&|t| !is_socket(t)), grown(&|_| true));
    eprintln!(
        "{TORRENTS} torrents seeded, {} fetched: {below} descriptors open below the test's \
         folder; growth: {files} files and folders, {others} not sockets, {all} in all",
        fetches.len()
    );
    // Exactly: what this test's torrents hold open, seeded and fetched.
    assert!(below <= CAP, "{below} descriptors open below the test's folder (at most {CAP})");
    // The whole process (the tests running alongside share the same cap): files, folders,
    // pipes and the like, but not sockets, which other tests open and close meanwhile.
    assert!(others <= CAP + 64, "{others} more descriptors (not sockets) than before");

    for (transfer, bundle) in &fetches {
        assert_eq!(tree(transfer.path()), tree(bundle), "bytes equal");
    }
    fetcher.stop().await;
    seeder.stop().await;
}
