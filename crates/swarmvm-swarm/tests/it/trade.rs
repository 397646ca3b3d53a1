//! Leechers trade pieces (the vendored librqbit's have messages and rarest-first,
//! `vendor/librqbit/PATCHED.md`): with the first seeder's link much slower than the others',
//! fetchers that start together get most bytes from each other; fetchers stopped mid-transfer
//! and started again finish without fetching again what they had verified.

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::Path;
use std::time::Duration;

use swarmvm_swarm::{Swarm, SwarmOptions, TorrentFile, Transfer};
use tokio::time::timeout;

use crate::support::{LIMIT, bundle_dir, tree};

/// Fetchers in these tests.
const FETCHERS: usize = 6;
/// The seeder's upload rate: one copy of the 3 MiB bundle takes about 6 s.
const SEEDER_RATE: u32 = 512 * 1024;

async fn slow_seeder(dir: &Path, torrent: &TorrentFile, bundle: &Path) -> (Swarm, Transfer) {
    let options = SwarmOptions {
        upload_limit: NonZeroU32::new(SEEDER_RATE),
        super_seed: true,
        ..SwarmOptions::loopback()
    };
    let seeder = Swarm::start(options, &dir.join("seeder")).await.unwrap();
    let seeding = seeder.seed(torrent, bundle).await.unwrap();
    seeding.wait_complete().await.unwrap();
    (seeder, seeding)
}

/// `n` fetcher sessions, each with its own folder, listening on loopback.
async fn fetchers(dir: &Path, n: usize) -> Vec<Swarm> {
    let mut out = Vec::new();
    for i in 0..n {
        out.push(Swarm::start(SwarmOptions::loopback(), &dir.join(format!("f{i}"))).await.unwrap());
    }
    out
}

/// The seeder and every other fetcher, for fetcher `i`.
fn peers_of(i: usize, seeder: SocketAddr, all: &[SocketAddr]) -> Vec<SocketAddr> {
    let mut peers = vec![seeder];
    peers.extend(all.iter().enumerate().filter(|(j, _)| *j != i).map(|(_, a)| *a));
    peers
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetchers_behind_a_slow_seeder_get_most_bytes_from_each_other() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = bundle_dir(dir.path(), "bundle-1", [3_000, 3 * 1024 * 1024, 900]);
    let torrent = TorrentFile::create(&bundle, &[], Some(64 * 1024)).unwrap();
    let size = torrent.total_length();
    let (seeder, seeding) = slow_seeder(dir.path(), &torrent, &bundle).await;
    let swarms = fetchers(dir.path(), FETCHERS).await;
    let addrs: Vec<SocketAddr> = swarms.iter().map(|s| s.listen_addr().unwrap()).collect();
    let mut transfers = Vec::new();
    for (i, s) in swarms.iter().enumerate() {
        let out = dir.path().join(format!("f{i}"));
        let peers = peers_of(i, seeder.listen_addr().unwrap(), &addrs);
        transfers.push((s.fetch(&torrent, &out, &peers).await.unwrap(), out));
    }
    let started = std::time::Instant::now();
    for (t, out) in &transfers {
        timeout(LIMIT, t.wait_complete()).await.expect("every fetcher finishes").unwrap();
        assert_eq!(tree(&out.join("bundle-1")), tree(&bundle));
    }
    let seconds = started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let from_seeder = seeding.progress().uploaded;
    let traded: u64 = transfers.iter().map(|(t, _)| t.progress().uploaded).sum();
    eprintln!(
        "{FETCHERS} fetchers in {seconds:.1} s; the seeder uploaded {:.2}x, fetchers to each other {:.2}x",
        from_seeder as f64 / size as f64,
        traded as f64 / size as f64
    );
    // Without trading the seeder would send six copies (36 s at its rate); it sent under two.
    assert!(from_seeder < 2 * size, "the seeder uploaded {from_seeder} of a {size}-byte bundle");
    assert!(
        traded >= (FETCHERS as u64 - 2) * size,
        "fetchers uploaded only {traded} bytes to each other"
    );
    for s in &swarms {
        s.stop().await;
    }
    seeder.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetchers_stopped_mid_transfer_resume_and_fetch_nothing_they_had_verified() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = bundle_dir(dir.path(), "bundle-1", [3_000, 3 * 1024 * 1024, 900]);
    let torrent = TorrentFile::create(&bundle, &[], Some(64 * 1024)).unwrap();
    let size = torrent.total_length();
    let (seeder, _seeding) = slow_seeder(dir.path(), &torrent, &bundle).await;
    let seeder_addr = seeder.listen_addr().unwrap();
    let mut swarms = fetchers(dir.path(), FETCHERS).await;
    let addrs: Vec<SocketAddr> = swarms.iter().map(|s| s.listen_addr().unwrap()).collect();
    let mut transfers = Vec::new();
    for (i, s) in swarms.iter().enumerate() {
        let out = dir.path().join(format!("f{i}"));
        transfers.push(s.fetch(&torrent, &out, &peers_of(i, seeder_addr, &addrs)).await.unwrap());
    }
    // A quarter of the fetchers (rounded up: 2 of 6) stop once they hold a third of the
    // bundle, then start again on the same folders.
    let churned = [0, 1];
    for &i in &churned {
        let deadline = std::time::Instant::now() + LIMIT;
        while transfers[i].progress().done < size / 3 {
            assert!(
                std::time::Instant::now() < deadline,
                "no progress: {:?}",
                transfers[i].progress()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        swarms[i].stop().await;
    }
    for &i in &churned {
        let folder = dir.path().join(format!("f{i}"));
        swarms[i] = Swarm::start(SwarmOptions::loopback(), &folder).await.unwrap();
        let others: Vec<SocketAddr> = swarms
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .filter_map(|(_, s)| s.listen_addr())
            .collect();
        let mut peers = vec![seeder_addr];
        peers.extend(others);
        transfers[i] = swarms[i].fetch(&torrent, &folder, &peers).await.unwrap();
    }
    // What each restarted fetcher found verified on disk, once its check is done.
    let mut had = Vec::new();
    for &i in &churned {
        let deadline = std::time::Instant::now() + LIMIT;
        let p = loop {
            let p = transfers[i].progress();
            if p.state != swarmvm_swarm::TransferState::Checking {
                break p;
            }
            assert!(std::time::Instant::now() < deadline, "the check never ended");
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        // Pieces may arrive between the check's end and this look: what the check found is
        // what is done less what this session verified.
        let found = p.done - p.verified;
        assert!(found >= size / 3, "fetcher {i} lost verified data: {p:?}");
        had.push(found);
    }
    for (i, t) in transfers.iter().enumerate() {
        timeout(LIMIT, t.wait_complete()).await.expect("every fetcher finishes").unwrap();
        assert_eq!(tree(&dir.path().join(format!("f{i}/bundle-1"))), tree(&bundle));
    }
    for (&i, had) in churned.iter().zip(had) {
        let p = transfers[i].progress();
        // Data already verified is not fetched again: what it verified after the restart is
        // exactly what it lacked. Chunks two peers both sent in the endgame are received in
        // vain; a few at most.
        assert_eq!(had + p.verified, size, "fetcher {i} fetched again what it had: {p:?}");
        assert!(p.fetched - p.verified <= 4 * 64 * 1024, "fetcher {i}: {p:?}");
    }
    for s in &swarms {
        s.stop().await;
    }
    seeder.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetchers_that_know_only_a_super_seeding_seeder_still_finish() {
    // Followers of a sequencer know only its address: a super-seeder must not hold back the
    // pieces another fetcher has when they cannot reach each other.
    let dir = tempfile::tempdir().unwrap();
    let bundle = bundle_dir(dir.path(), "bundle-1", [3_000, 1024 * 1024, 900]);
    let torrent = TorrentFile::create(&bundle, &[], Some(64 * 1024)).unwrap();
    let seeder = Swarm::start(SwarmOptions::loopback(), &dir.path().join("seeder")).await.unwrap();
    assert!(SwarmOptions::loopback().super_seed, "super-seeding is the default");
    let _seeding = seeder.seed(&torrent, &bundle).await.unwrap();
    let swarms = fetchers(dir.path(), 3).await;
    let mut transfers = Vec::new();
    for (i, s) in swarms.iter().enumerate() {
        let out = dir.path().join(format!("f{i}"));
        transfers.push(s.fetch(&torrent, &out, &[seeder.listen_addr().unwrap()]).await.unwrap());
    }
    // Within seconds: a fetcher that stalls is shown what the others have after one second
    // (before that was fixed, such fetchers waited out read timeouts: about 30 s).
    for (i, t) in transfers.iter().enumerate() {
        timeout(Duration::from_secs(20), t.wait_complete())
            .await
            .expect("every fetcher finishes within 20 s")
            .unwrap();
        assert_eq!(tree(&dir.path().join(format!("f{i}/bundle-1"))), tree(&bundle));
    }
    for s in &swarms {
        s.stop().await;
    }
    seeder.stop().await;
}
