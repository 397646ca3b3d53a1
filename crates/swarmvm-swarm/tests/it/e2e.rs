//! Transfers between real sessions on loopback.

use std::time::Duration;

use swarmvm_swarm::{Swarm, SwarmOptions, TorrentFile};
use tokio::time::timeout;

use crate::support::{LIMIT, bundle_dir, tree};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_seeder_to_three_fetchers_with_explicit_peers() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = bundle_dir(dir.path(), "bundle-1", [3_000, 200_000, 700]);
    let torrent = TorrentFile::create(&bundle, &[], None).unwrap();
    let seeder = Swarm::start(SwarmOptions::loopback(), &dir.path().join("s")).await.unwrap();
    let seeding = seeder.seed(&torrent, &bundle).await.unwrap();
    let addr = seeder.listen_addr().unwrap();
    assert!(addr.ip().is_loopback());

    let t0 = std::time::Instant::now();
    let mut fetchers = Vec::new();
    for i in 0..3 {
        let out = dir.path().join(format!("peer{i}"));
        let swarm = Swarm::start(SwarmOptions::loopback(), &out).await.unwrap();
        let transfer = swarm.fetch(&torrent, &out, &[addr]).await.unwrap();
        fetchers.push((swarm, transfer, out));
    }
    for (_, transfer, out) in &fetchers {
        timeout(LIMIT, transfer.wait_complete()).await.expect("fetch within the limit").unwrap();
        eprintln!("complete after {:?}", t0.elapsed());
        assert_eq!(transfer.path(), out.join("bundle-1"));
        assert_eq!(tree(transfer.path()), tree(&bundle), "bytes equal");
        assert!(!out.join(".bundle-1.swarmvm-partial").exists(), "partial marker removed");
        let p = transfer.progress();
        assert!(p.finished && p.done == torrent.total_length());
    }
    // The seeder's counter catches up with what the fetchers verified.
    let deadline = std::time::Instant::now() + LIMIT;
    while seeding.progress().uploaded < torrent.total_length() {
        assert!(
            std::time::Instant::now() < deadline,
            "the seeder uploaded: {:?}",
            seeding.progress()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let t1 = std::time::Instant::now();
    for (swarm, ..) in &fetchers {
        swarm.stop().await;
        eprintln!("stopped after {:?}", t1.elapsed());
    }
    seeder.stop().await;
    eprintln!("seeder stopped after {:?}", t1.elapsed());
}

/// While a transfer checks what is on disk it claims nothing (the engine's own figure is how
/// far the check got, which read 100% at once for an empty folder); once checked, all of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transfer_claims_nothing_until_its_check_ends() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = bundle_dir(dir.path(), "bundle-1", [1_000, 64 * 1024 * 1024, 1_000]);
    let torrent = TorrentFile::create(&bundle, &[], None).unwrap();
    let swarm = Swarm::start(SwarmOptions::loopback(), &dir.path().join("w")).await.unwrap();
    let transfer = swarm.fetch(&torrent, dir.path(), &[]).await.unwrap();
    let deadline = std::time::Instant::now() + LIMIT;
    let mut checking = 0;
    let p = loop {
        let p = transfer.progress();
        if p.state != swarmvm_swarm::TransferState::Checking {
            break p;
        }
        assert_eq!(p.done, 0, "claimed while checking: {p:?}");
        checking += 1;
        assert!(std::time::Instant::now() < deadline, "the check never ended");
        tokio::time::sleep(Duration::from_millis(1)).await;
    };
    assert!(checking > 0, "the check of 64 MiB ended before the first look");
    timeout(LIMIT, transfer.wait_complete()).await.unwrap().unwrap();
    assert_eq!(transfer.progress().done, torrent.total_length(), "after the check: {p:?}");
    swarm.stop().await;
}
