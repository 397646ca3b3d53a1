//! Other BitTorrent implementations download what we seed and seed what we download:
//! libtorrent (Python binding from PyPI), aria2, and opentracker as the tracker.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;

use swarmvm_swarm::{MIN_PIECE_LENGTH, MagnetLink, Swarm, SwarmOptions, TorrentFile};
use swarmvm_test_support::tools::{Tracker, lt_run, lt_seed};
use tokio::time::timeout;
use url::Url;

use crate::support::{LIMIT, bundle_dir, tree};

async fn seeder(torrent: &TorrentFile, bundle: &Path, work: &Path, trackers: Vec<Url>) -> Swarm {
    let swarm =
        Swarm::start(SwarmOptions { trackers, ..SwarmOptions::loopback() }, work).await.unwrap();
    let t = swarm.seed(torrent, bundle).await.unwrap();
    timeout(LIMIT, t.wait_complete()).await.unwrap().unwrap();
    swarm
}

/// libtorrent (`lt_tool.py fetch`) downloads `source`, a `.torrent` path or a magnet link,
/// into `out`, from `peer` alone, within `seconds`; panics if it fails.
async fn lt_fetch(source: String, out: &Path, peer: SocketAddr, seconds: u32) {
    let out = out.display().to_string();
    let (peer, seconds) = (peer.to_string(), seconds.to_string());
    tokio::task::spawn_blocking(move || lt_run(&["fetch", &source, &out, &peer, &seconds]))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn libtorrent_downloads_what_we_create_and_seed() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = bundle_dir(dir.path(), "bundle-7", [5_000, 1_500_000, 900]);
    let torrent = TorrentFile::create(&bundle, &[], None).unwrap();
    std::fs::write(dir.path().join("b.torrent"), torrent.as_bytes()).unwrap();
    let swarm = seeder(&torrent, &bundle, &dir.path().join("s"), vec![]).await;
    let out = dir.path().join("lt");
    let source = dir.path().join("b.torrent").display().to_string();
    lt_fetch(source, &out, swarm.listen_addr().unwrap(), 60).await;
    assert_eq!(tree(&out.join("bundle-7")), tree(&bundle));
    swarm.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn libtorrent_fetches_our_magnet_link() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = bundle_dir(dir.path(), "bundle-m", [2_000, 40_000, 500]);
    let torrent = TorrentFile::create(&bundle, &[], None).unwrap();
    let swarm = seeder(&torrent, &bundle, &dir.path().join("s"), vec![]).await;
    let out = dir.path().join("lt");
    lt_fetch(torrent.magnet().to_string(), &out, swarm.listen_addr().unwrap(), 60).await;
    assert_eq!(tree(&out.join("bundle-m")), tree(&bundle));
    swarm.stop().await;
}

/// Most bundles are one piece. libtorrent 2.1.1 could not fetch one from a super-seeding
/// first seeder, what `bundle seed` and a publishing node run (`Swarm::seed`): its first news
/// of us was a have that made us a seed before it was interested, and it hung up (issue 25,
/// finding 9; vendored librqbit, PATCHED.md 12). Two and three pieces are the smallest
/// torrents still super-seeded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn libtorrent_fetches_one_two_and_three_piece_bundles_we_seed() {
    for pieces in 1..=3u32 {
        let dir = tempfile::tempdir().unwrap();
        let name = format!("bundle-{pieces}p");
        // 1,500 bytes short of `pieces` whole pieces of 16 KiB.
        let contracts = (pieces * MIN_PIECE_LENGTH - 3_000) as usize;
        let bundle = bundle_dir(dir.path(), &name, [1_000, contracts, 500]);
        let torrent = TorrentFile::create(&bundle, &[], None).unwrap();
        assert_eq!(torrent.piece_length(), MIN_PIECE_LENGTH);
        let count = torrent.total_length().div_ceil(u64::from(MIN_PIECE_LENGTH));
        assert_eq!(count, u64::from(pieces));
        let torrent_path = dir.path().join("b.torrent");
        std::fs::write(&torrent_path, torrent.as_bytes()).unwrap();
        let swarm = seeder(&torrent, &bundle, &dir.path().join("s"), vec![]).await;
        let out = dir.path().join("lt");
        let source = torrent_path.display().to_string();
        lt_fetch(source, &out, swarm.listen_addr().unwrap(), 30).await;
        assert_eq!(tree(&out.join(&name)), tree(&bundle), "{pieces} pieces");
        swarm.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn we_download_what_libtorrent_creates_and_seeds() {
    let dir = tempfile::tempdir().unwrap();
    let data = bundle_dir(dir.path(), "their-bundle", [70_000, 1_000_000, 3]);
    let torrent_path = dir.path().join("theirs.torrent");
    lt_run(&["create", data.to_str().unwrap(), torrent_path.to_str().unwrap()]);
    let torrent = TorrentFile::read(&torrent_path).unwrap();
    assert_eq!(torrent.name(), "their-bundle");
    let (_lt, port) = lt_seed(&torrent_path, dir.path());
    let out = dir.path().join("ours");
    let swarm = Swarm::start(SwarmOptions::loopback(), &out).await.unwrap();
    let peer = format!("127.0.0.1:{port}").parse().unwrap();
    let t = swarm.fetch(&torrent, &out, &[peer]).await.unwrap();
    timeout(LIMIT, t.wait_complete()).await.expect("within the limit").unwrap();
    assert_eq!(tree(&out.join("their-bundle")), tree(&data));
    swarm.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn magnet_link_from_our_seeder_fetches_in_swarmvm() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = bundle_dir(dir.path(), "bundle-mag", [1_000, 300_000, 100]);
    let torrent = TorrentFile::create(&bundle, &[], None).unwrap();
    let swarm = seeder(&torrent, &bundle, &dir.path().join("s"), vec![]).await;
    let link = MagnetLink::parse(&torrent.magnet().to_string()).unwrap();
    let out = dir.path().join("out");
    let options =
        SwarmOptions { peers: vec![swarm.listen_addr().unwrap()], ..SwarmOptions::loopback() };
    let fetcher = Swarm::start(options, &out).await.unwrap();
    let (resolved, peers) = timeout(LIMIT, fetcher.resolve(&link, &[])).await.unwrap().unwrap();
    assert_eq!(resolved.info_hash(), torrent.info_hash());
    let t = fetcher.fetch(&resolved, &out, &peers).await.unwrap();
    timeout(LIMIT, t.wait_complete()).await.unwrap().unwrap();
    assert_eq!(tree(&out.join("bundle-mag")), tree(&bundle));
    fetcher.stop().await;
    swarm.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_find_each_other_only_through_opentracker() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = bundle_dir(dir.path(), "bundle-t", [10_000, 600_000, 800]);
    let probe = TorrentFile::create(&bundle, &[], None).unwrap();
    let tracker = Tracker::start(&[probe.info_hash().to_string()]);
    let url = Url::parse(&tracker.announce_url()).unwrap();
    let torrent = TorrentFile::create(&bundle, std::slice::from_ref(&url), None).unwrap();
    assert_eq!(torrent.info_hash(), probe.info_hash(), "trackers are outside the info dict");
    assert_eq!(torrent.trackers(), std::slice::from_ref(&url));
    let swarm = seeder(&torrent, &bundle, &dir.path().join("s"), vec![]).await;
    let mut fetchers = Vec::new();
    for i in 0..3 {
        let out = dir.path().join(format!("f{i}"));
        // No peers, no DHT: the torrent's tracker is the only way to the seeder.
        let f = Swarm::start(SwarmOptions::loopback(), &out).await.unwrap();
        let t = f.fetch(&torrent, &out, &[]).await.unwrap();
        fetchers.push((f, t, out));
    }
    for (_, t, out) in &fetchers {
        timeout(LIMIT, t.wait_complete()).await.expect("found through the tracker").unwrap();
        assert_eq!(tree(&out.join("bundle-t")), tree(&bundle));
    }
    for (f, ..) in fetchers {
        f.stop().await;
    }
    swarm.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aria2_downloads_what_we_seed_through_opentracker() {
    swarmvm_test_support::require_program("aria2c", "aria2");
    let dir = tempfile::tempdir().unwrap();
    let bundle = bundle_dir(dir.path(), "bundle-a", [4_000, 800_000, 700]);
    let probe = TorrentFile::create(&bundle, &[], None).unwrap();
    let tracker = Tracker::start(&[probe.info_hash().to_string()]);
    let url = Url::parse(&tracker.announce_url()).unwrap();
    let torrent = TorrentFile::create(&bundle, &[url], None).unwrap();
    let torrent_path = dir.path().join("a.torrent");
    std::fs::write(&torrent_path, torrent.as_bytes()).unwrap();
    let swarm = seeder(&torrent, &bundle, &dir.path().join("s"), vec![]).await;
    let out = dir.path().join("aria2");
    let port = swarmvm_test_support::tools::free_port().to_string();
    let status = tokio::task::spawn_blocking(move || {
        Command::new("timeout")
            .arg("90")
            .arg("aria2c")
            .args(["--enable-dht=false", "--enable-dht6=false", "--bt-enable-lpd=false"])
            .args(["--enable-peer-exchange=false", "--seed-time=0", "--file-allocation=none"])
            .args(["--console-log-level=warn", "--summary-interval=0", "--bt-stop-timeout=60"])
            .arg("--show-console-readout=false")
            .args(["--listen-port", &port, "--dht-listen-port", &port, "--dir"])
            .arg(&out)
            .arg(&torrent_path)
            .status()
            .expect("run aria2c; install the Debian package aria2")
    })
    .await
    .unwrap();
    assert!(status.success(), "aria2c failed: {status}");
    assert_eq!(tree(&dir.path().join("aria2/bundle-a")), tree(&bundle));
    swarm.stop().await;
}
