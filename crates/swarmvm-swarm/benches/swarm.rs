//! Whole-transfer benchmark: a bundle from one seeder to 1, 3 and 8 fetchers on loopback,
//! swarmvm (librqbit) against libtorrent in the same run, and the bytes the first seeder
//! uploads as the number of fetchers grows. Fetchers also peer with each other. swarmvm runs
//! twice: with a plain seeder and with a super-seeding one (`SwarmOptions::super_seed`, what
//! `bundle seed` and a publishing node use).
//!
//! `cargo bench -p swarmvm-swarm --bench swarm` (libtorrent from `pip install libtorrent`).
//! Prints a markdown table for BENCHMARKS.md. Each figure is the median of 3 runs.
#![allow(missing_docs, clippy::unwrap_used, clippy::print_stdout)]

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use swarmvm_swarm::{Swarm, SwarmOptions, TorrentFile};

const RUNS: usize = 3;

fn make_bundle(root: &Path, name: &str, big: usize) -> std::path::PathBuf {
    swarmvm_test_support::bundle_dir(root, name, [3_300, big, 900])
}

/// One run: seconds until every fetcher completes, bytes the seeder uploaded, and bytes
/// fetchers uploaded to each other.
async fn swarmvm_run(
    torrent: &TorrentFile,
    bundle: &Path,
    n: usize,
    work: &Path,
    super_seed: bool,
) -> (f64, u64, u64) {
    let options = SwarmOptions { super_seed, ..SwarmOptions::loopback() };
    let seeder = Swarm::start(options, &work.join("seed")).await.unwrap();
    let seeding = seeder.seed(torrent, bundle).await.unwrap();
    seeding.wait_complete().await.unwrap();
    let mut fetchers = Vec::new();
    for i in 0..n {
        fetchers.push(
            Swarm::start(SwarmOptions::loopback(), &work.join(format!("f{i}"))).await.unwrap(),
        );
    }
    let addrs: Vec<SocketAddr> = fetchers.iter().map(|f| f.listen_addr().unwrap()).collect();
    let start = Instant::now();
    let mut transfers = Vec::new();
    for (i, f) in fetchers.iter().enumerate() {
        let mut peers = vec![seeder.listen_addr().unwrap()];
        peers.extend(addrs.iter().enumerate().filter(|(j, _)| *j != i).map(|(_, a)| *a));
        transfers.push(f.fetch(torrent, &work.join(format!("f{i}")), &peers).await.unwrap());
    }
    for t in &transfers {
        tokio::time::timeout(Duration::from_secs(180), t.wait_complete()).await.unwrap().unwrap();
    }
    let seconds = start.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let uploaded = seeding.progress().uploaded;
    let traded: u64 = transfers.iter().map(|t| t.progress().uploaded).sum();
    for f in &fetchers {
        f.stop().await;
    }
    seeder.stop().await;
    (seconds, uploaded, traded)
}

fn libtorrent_run(torrent: &Path, parent: &Path, n: usize, work: &Path) -> Option<(f64, u64)> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/lt_swarm.py");
    let out = Command::new("python3")
        .arg(script)
        .arg(torrent)
        .arg(parent)
        .arg(n.to_string())
        .arg(work)
        .output()
        .ok()?;
    if !out.status.success() {
        eprintln!("libtorrent run failed: {}", String::from_utf8_lossy(&out.stderr));
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    Some((v["seconds"].as_f64()?, v["seeder_uploaded"].as_u64()?))
}

fn median<T: Copy>(mut xs: Vec<(f64, T)>) -> (f64, T) {
    xs.sort_by(|a, b| a.0.total_cmp(&b.0));
    xs[xs.len() / 2]
}

fn main() {
    // `cargo bench` passes `--bench`; any other argument is a filter nobody uses here.
    let rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let big = make_bundle(dir.path(), "bundle-64m", 64 * 1024 * 1024 - 4_200);
    let small = make_bundle(dir.path(), "bundle-small", 2_000);
    for (label, bundle, counts) in
        [("64 MiB", &big, &[1usize, 3, 8][..]), ("4 KiB", &small, &[3usize][..])]
    {
        let torrent = TorrentFile::create(bundle, &[], None).unwrap();
        let torrent_path = dir.path().join(format!("{}.torrent", torrent.name()));
        std::fs::write(&torrent_path, torrent.as_bytes()).unwrap();
        let size = torrent.total_length();
        println!("\n{label} bundle ({size} bytes, piece length {}):\n", torrent.piece_length());
        println!(
            "| fetchers | swarmvm, super-seeding | swarmvm, plain seeder | libtorrent | seeder upload: super-seeding | plain | libtorrent | fetcher-to-fetcher: super-seeding | plain |"
        );
        println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- |");
        for &n in counts {
            let ours = |super_seed: bool| {
                median(
                    (0..RUNS)
                        .map(|r| {
                            let work = dir.path().join(
                                format!("ours-{label}-{n}-{r}-{super_seed}").replace(' ', ""),
                            );
                            let (secs, up, traded) =
                                rt.block_on(swarmvm_run(&torrent, bundle, n, &work, super_seed));
                            let _ = std::fs::remove_dir_all(&work);
                            (secs, (up, traded))
                        })
                        .collect(),
                )
            };
            let (sup, plain) = (ours(true), ours(false));
            let theirs: Vec<(f64, u64)> = (0..RUNS)
                .filter_map(|r| {
                    let work = dir.path().join(format!("lt-{label}-{n}-{r}").replace(' ', ""));
                    let result = libtorrent_run(&torrent_path, dir.path(), n, &work);
                    let _ = std::fs::remove_dir_all(&work);
                    result
                })
                .collect();
            let ratio = |b: u64| format!("{:.2}×", b as f64 / size as f64);
            let (lt_time, lt_up) = if theirs.is_empty() {
                ("not run (pip install libtorrent)".to_owned(), "-".to_owned())
            } else {
                let m = median(theirs);
                (format!("{:.3} s", m.0), ratio(m.1))
            };
            println!(
                "| {n} | {:.3} s | {:.3} s | {lt_time} | {} | {} | {lt_up} | {} | {} |",
                sup.0,
                plain.0,
                ratio(sup.1.0),
                ratio(plain.1.0),
                ratio(sup.1.1),
                ratio(plain.1.1)
            );
        }
    }
}
