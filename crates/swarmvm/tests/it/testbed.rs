//! Whole `swarmvm` processes in the namespace testbed (`swarmvm_test_support::netns`): each
//! peer in its own network namespace behind a tbf-shaped link, finding the others through an
//! opentracker or by local service discovery, not through a list of addresses.

use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;
use swarmvm_test_support::netns::Testbed;
use swarmvm_test_support::require_program;
use swarmvm_test_support::tools::{JsonProcess as Proc, KillOnDrop};

use crate::bundle::{bundle, same_files};
use crate::support::Env;

const SWARMVM: &str = env!("CARGO_BIN_EXE_swarmvm");

/// `swarmvm ARGS --json` in peer `i`'s namespace.
fn spawn(bed: &Testbed, i: usize, env: &Env, args: &[&str]) -> Proc {
    let mut cmd = bed.command(i, std::path::Path::new(SWARMVM));
    cmd.args(args).arg("--json").current_dir(env.dir.path());
    cmd.stdin(Stdio::null()).stderr(Stdio::inherit());
    Proc::spawn(cmd)
}

/// How the testbed's peers find each other: never through a list of addresses.
enum Discovery {
    /// Through the opentracker at this announce URL.
    Tracker(String),
    /// By local service discovery (BEP 14): multicast across the bridge.
    Lsd,
}

/// A swarm in `bed` (see [`swarm`]).
struct Swarm {
    /// The bundle's size.
    size: u64,
    /// How its peers find each other.
    discovery: Discovery,
    /// The tracker, if they find each other through one.
    _tracker: Option<KillOnDrop>,
    seeder: Proc,
    /// Fetcher `k` runs in peer `k + 1`'s namespace.
    fetchers: Vec<Proc>,
}

/// `swarmvm ARGS` in peer `i`'s namespace, finding peers as `discovery` says only (no DHT),
/// listening on its bridge address and `port`.
fn start_in(
    bed: &Testbed,
    i: usize,
    env: &Env,
    discovery: &Discovery,
    port: u16,
    args: &[&str],
) -> Proc {
    let listen = format!("{}:{port}", bed.peers[i].addr);
    let mut all = args.to_vec();
    all.push("--no-dht");
    match discovery {
        Discovery::Tracker(announce) => all.extend(["--tracker", announce]),
        Discovery::Lsd => all.push("--lsd"),
    }
    all.extend(["--listen", &listen]);
    spawn(bed, i, env, &all)
}

/// `bundle fetch NAME.torrent --out f{i} --seed` in peer `i`'s namespace.
fn start_fetcher(bed: &Testbed, i: usize, env: &Env, discovery: &Discovery, name: &str) -> Proc {
    let (torrent, out) = (format!("{name}.torrent"), format!("f{i}"));
    let args = ["bundle", "fetch", &torrent, "--out", &out, "--timeout", "120s", "--seed"];
    start_in(bed, i, env, discovery, 6881, &args)
}

/// A swarm in `bed`: peer 0 seeds `name` (made from `env`'s folder `name`, 4 MiB in 64 KiB
/// pieces), every other peer runs `bundle fetch --seed` into `f{i}`. They find each other
/// through an opentracker in peer 0's namespace, or by local service discovery alone if
/// `by_lsd`. The fetchers start last.
fn swarm(bed: &Testbed, env: &Env, name: &str, by_lsd: bool) -> Swarm {
    let dir = bundle(env, name, [2_000, 4 * 1024 * 1024, 1_000]);
    let made = env.json(&["bundle", "create", &dir, "--piece-length", "65536"]);
    let info_hash = made["info_hash"].as_str().unwrap().to_owned();
    let size = made["bytes"].as_u64().unwrap();
    let (tracker, discovery) = if by_lsd {
        (None, Discovery::Lsd)
    } else {
        let (tracker, announce) = bed.opentracker(0, &env.path("tracker"), &[&info_hash]);
        (Some(tracker), Discovery::Tracker(announce))
    };
    let torrent = format!("{name}.torrent");
    let seed = ["bundle", "seed", &torrent, "--dir", &dir];
    let seeder = start_in(bed, 0, env, &discovery, 6881, &seed);
    seeder.wait_event("seeding", Duration::from_secs(30));
    let fetchers =
        (1..bed.peers.len()).map(|i| start_fetcher(bed, i, env, &discovery, name)).collect();
    Swarm { size, discovery, _tracker: tracker, seeder, fetchers }
}

/// A testbed whose peer 0 (the seeder) is behind a 16 Mbit/s link and its `fetchers` other
/// peers behind 80 Mbit/s links.
fn slow_seeder_testbed(tag: &str, fetchers: usize) -> Testbed {
    let mut rates = vec![16];
    rates.extend(std::iter::repeat_n(80, fetchers));
    Testbed::new(tag, &rates)
}

/// Checks that every fetcher's copy of `name` (in `f{i}`) is the original, stops the
/// seeder and returns what it uploaded.
fn check_copies_and_stop_seeder(bed: &Testbed, env: &Env, name: &str, seeder: &Proc) -> u64 {
    for i in 1..bed.peers.len() {
        same_files(&env.path(&format!("f{i}/{name}")), &env.path(name));
    }
    seeder.interrupt();
    seeder.wait_event("stopped", Duration::from_secs(20))["uploaded"].as_u64().unwrap()
}

/// Every namespace knows the other peers' MAC addresses from the start (permanent neighbour
/// entries), so peers never ARP for each other: Linux keeps one ARP table for all namespaces
/// (1024 entries by default), and 64 peers resolving each other overflowed it, dropping new
/// connections for 20 s and more (the `netns` module's docs).
#[test]
fn testbed_peers_know_each_other_without_arp() {
    let bed = Testbed::new("arp", &[80, 80, 80]);
    for (i, me) in bed.peers.iter().enumerate() {
        let out = bed
            .command(i, std::path::Path::new("ip"))
            .args(["neigh", "show", "nud", "permanent"])
            .output()
            .expect("ip neigh");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let entries = String::from_utf8_lossy(&out.stdout).into_owned();
        let others: Vec<_> = bed.peers.iter().filter(|p| p.addr != me.addr).collect();
        assert_eq!(entries.lines().count(), others.len(), "{}: {entries}", me.ns);
        for other in others {
            assert!(
                entries
                    .lines()
                    .any(|l| l.starts_with(&format!("{} ", other.addr)) && l.contains("PERMANENT")),
                "{} has no permanent entry for {}: {entries}",
                me.ns,
                other.addr
            );
        }
    }
}

#[test]
fn fetchers_behind_shaped_links_find_each_other_by_tracker_and_spare_a_slow_seeder() {
    require_program("tc", "iproute2");
    let env = Env::new();
    // The seeder's link is 16 Mbit/s, every fetcher's 80: one copy from the seeder takes
    // about 2.1 s, seven would take 15 s.
    let bed = slow_seeder_testbed("swarm", 7);
    let started = Instant::now();
    let Swarm { size, seeder, fetchers, _tracker, .. } = swarm(&bed, &env, "bundle-n", false);
    let mut fetched = 0u64;
    for f in &fetchers {
        let done = f.wait_event("complete", Duration::from_secs(120));
        fetched += done["fetched"].as_u64().unwrap();
    }
    let seconds = started.elapsed().as_secs_f64();
    let uploaded = check_copies_and_stop_seeder(&bed, &env, "bundle-n", &seeder);
    eprintln!(
        "7 fetchers in {seconds:.1} s; the seeder uploaded {:.2}x, the fetchers received {:.2}x",
        uploaded as f64 / size as f64,
        fetched as f64 / size as f64
    );
    assert!(uploaded < 2 * size, "the seeder uploaded {uploaded} bytes of a {size}-byte bundle");
    for f in &fetchers {
        f.interrupt();
    }
}

#[test]
fn fetchers_cut_off_from_the_seeder_mid_transfer_finish_from_the_others() {
    require_program("tc", "iproute2");
    let env = Env::new();
    // A 16 Mbit/s seeder and six fetchers at 80: one copy from the seeder takes 2.1 s.
    let bed = slow_seeder_testbed("part", 6);
    let Swarm { size, seeder, fetchers, _tracker, .. } = swarm(&bed, &env, "bundle-p", false);
    // Once fetcher 1 has a tenth of the bundle, fetchers 1 to 3 lose the seeder (the tracker,
    // in its namespace too) but keep each other and fetchers 4 to 6.
    let deadline = Instant::now() + Duration::from_secs(60);
    let first = loop {
        let p = fetchers[0].wait_event("progress", Duration::from_secs(60));
        if p["percent"].as_f64().unwrap_or(0.0) >= 10.0 {
            break p;
        }
        assert!(Instant::now() < deadline, "fetcher 1 never reached 10%");
    };
    assert!(first["percent"].as_f64().unwrap() < 100.0, "the partition came too late: {first}");
    for i in 1..=3 {
        bed.separate(0, i);
    }
    eprintln!("partitioned at {}% of fetcher 1", first["percent"]);
    for (k, f) in fetchers.iter().enumerate() {
        let done = f.wait_event("complete", Duration::from_secs(120));
        assert_eq!(done["done"].as_u64(), Some(size), "fetcher {}", k + 1);
    }
    for i in 1..=3 {
        bed.join(0, i);
    }
    let uploaded = check_copies_and_stop_seeder(&bed, &env, "bundle-p", &seeder);
    eprintln!("the seeder uploaded {:.2}x", uploaded as f64 / size as f64);
    assert!(uploaded < 2 * size, "the seeder uploaded {uploaded} bytes of a {size}-byte bundle");
    for f in &fetchers {
        f.interrupt();
    }
}

/// With no tracker and no address given, peers find each other by local service discovery
/// (BEP 14): multicast announces cross the testbed's bridge like a LAN's switch. The seeder's
/// link is slow, so the fetchers must also have found each other to spare it.
#[test]
fn fetchers_find_the_seeder_and_each_other_by_lsd_across_the_bridge() {
    require_program("tc", "iproute2");
    let env = Env::new();
    let bed = slow_seeder_testbed("lsd", 4);
    let Swarm { size, seeder, fetchers, .. } = swarm(&bed, &env, "bundle-l", true);
    let mut uploaded_by_fetchers = 0;
    for (k, f) in fetchers.iter().enumerate() {
        let done = f.wait_event("complete", Duration::from_secs(90));
        assert_eq!(done["done"].as_u64(), Some(size), "fetcher {}", k + 1);
        uploaded_by_fetchers += done["uploaded"].as_u64().unwrap();
    }
    let uploaded = check_copies_and_stop_seeder(&bed, &env, "bundle-l", &seeder);
    eprintln!(
        "the seeder uploaded {:.2}x, the fetchers {:.2}x by the time each finished",
        uploaded as f64 / size as f64,
        uploaded_by_fetchers as f64 / size as f64
    );
    assert!(uploaded_by_fetchers > 0, "the fetchers never found each other");
    assert!(uploaded < 2 * size, "the seeder uploaded {uploaded} bytes of a {size}-byte bundle");
    for f in &fetchers {
        f.interrupt();
    }
}

/// Bytes of the pieces of `torrent` that folder `out` holds whole and right (compared with
/// the original folder `original`): what a fetcher killed at this moment has, however far its
/// own records got before the kill.
fn pieces_on_disk(
    torrent: &std::path::Path,
    out: &std::path::Path,
    original: &std::path::Path,
) -> u64 {
    let torrent = swarmvm_swarm::TorrentFile::read(torrent).unwrap();
    let concat = |root: &std::path::Path| -> Vec<u8> {
        let mut all = Vec::new();
        for f in torrent.files() {
            let mut data = std::fs::read(root.join(&f.path)).unwrap_or_default();
            data.resize(f.length as usize, 0);
            all.extend(data);
        }
        all
    };
    let (have, want) = (concat(out), concat(original));
    let piece = torrent.piece_length() as usize;
    have.chunks(piece)
        .zip(want.chunks(piece))
        .filter(|(h, w)| h == w)
        .map(|(h, _)| h.len() as u64)
        .sum()
}

#[test]
fn fetchers_killed_mid_transfer_and_restarted_finish_and_fetch_no_piece_they_held() {
    require_program("tc", "iproute2");
    let env = Env::new();
    // A 16 Mbit/s seeder and seven fetchers at 80; two of them (a quarter) are killed.
    let bed = slow_seeder_testbed("churn", 7);
    let Swarm { size, discovery, _tracker, seeder, mut fetchers } =
        swarm(&bed, &env, "bundle-c", false);
    let churned = [1, 2];
    // Once fetcher 1 holds a fifth of the bundle, fetchers 1 and 2 get SIGKILL.
    let deadline = Instant::now() + Duration::from_secs(60);
    let last = loop {
        let p = fetchers[0].wait_event("progress", Duration::from_secs(60));
        if p["percent"].as_f64().unwrap_or(0.0) >= 20.0 {
            break p;
        }
        assert!(Instant::now() < deadline, "fetcher 1 never reached 20%");
    };
    for &i in &churned {
        fetchers[i - 1].kill();
    }
    let torrent = env.path("bundle-c.torrent");
    let mut held = Vec::new();
    for &i in &churned {
        let out = env.path(&format!("f{i}/bundle-c"));
        let bytes = pieces_on_disk(&torrent, &out, &env.path("bundle-c"));
        assert!(bytes < size, "fetcher {i} had finished before the kill");
        held.push(bytes);
    }
    let said = last["done"].as_u64().unwrap();
    assert!(held[0] >= said, "fetcher 1 said it had {said} bytes; {} are on disk", held[0]);
    eprintln!("killed at {}% of fetcher 1; on disk: {held:?} of {size} bytes", last["percent"]);
    for &i in &churned {
        fetchers[i - 1] = start_fetcher(&bed, i, &env, &discovery, "bundle-c");
    }
    for (k, f) in fetchers.iter().enumerate() {
        let done = f.wait_event("complete", Duration::from_secs(120));
        assert_eq!(done["done"].as_u64(), Some(size), "fetcher {}", k + 1);
        if let Some(c) = churned.iter().position(|&i| i == k + 1) {
            // After the restart it verified exactly the pieces that were not on disk: none
            // it held was fetched again. Chunks two peers both sent in the endgame are
            // received in vain; a few at most.
            let verified = done["verified"].as_u64().unwrap();
            let fetched = done["fetched"].as_u64().unwrap();
            eprintln!(
                "fetcher {}: {} bytes held, {verified} fetched and verified after the restart, {} received in vain",
                k + 1,
                held[c],
                fetched - verified
            );
            assert_eq!(held[c] + verified, size, "fetcher {} fetched what it held", k + 1);
            assert!(
                fetched - verified <= 4 * 65_536,
                "fetcher {} received {} bytes in vain",
                k + 1,
                fetched - verified
            );
        }
    }
    let uploaded = check_copies_and_stop_seeder(&bed, &env, "bundle-c", &seeder);
    eprintln!("the seeder uploaded {:.2}x", uploaded as f64 / size as f64);
    for f in &fetchers {
        f.interrupt();
    }
}

/// Polls `GET /v1/status` of every node at `addrs` from inside peer `i`'s namespace (the
/// nodes answer only there) until each has applied `seq`, for at most `limit`; each node's
/// state root (null for a node that never got there).
fn roots_at(bed: &Testbed, i: usize, addrs: &[String], seq: u64, limit: Duration) -> Vec<Value> {
    const POLL: &str = r#"
import json, sys, time, urllib.request
seq, limit, addrs = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3:]
roots, deadline = {}, time.monotonic() + limit
while len(roots) < len(addrs) and time.monotonic() < deadline:
    for a in addrs:
        if a in roots:
            continue
        try:
            with urllib.request.urlopen(f"http://{a}/v1/status", timeout=2) as r:
                status = json.load(r)
        except Exception:
            continue
        if status["last_seq"] >= seq:
            roots[a] = status["state_root"]
            print(f"{a} at seq {seq} after {time.monotonic() - deadline + limit:.1f} s", file=sys.stderr)
    time.sleep(0.2)
print(json.dumps([roots.get(a) for a in addrs]))
"#;
    let out = bed
        .command(i, std::path::Path::new("python3"))
        .args(["-c", POLL, &seq.to_string(), &limit.as_secs_f64().to_string()])
        .args(addrs)
        .stderr(Stdio::inherit())
        .output()
        .expect("cannot run python3");
    assert!(out.status.success(), "the status poller failed");
    serde_json::from_slice(&out.stdout).expect("the poller's answer")
}

#[test]
fn thirty_two_nodes_in_namespaces_find_each_other_by_tracker_and_converge_on_one_root() {
    require_program("tc", "iproute2");
    let env = Env::new();
    crate::node::network(&env);
    let b1 = crate::node::create_b1(&env);
    let b2 = crate::node::create_b2(&env);
    // The root every node must reach, computed offline.
    for b in ["b1", "b2"] {
        env.ok(&["node", "apply", b, "--data-dir", "reference", "--trust", "auth.pub"]);
    }
    let reference = env.ok(&["state", "root", "--data-dir", "reference"]).trim().to_owned();

    // Peer 0 holds the tracker and seeds both bundles behind 16 Mbit/s; peers 1 to 32 run
    // `node run` behind 80 Mbit/s, knowing the torrents and the tracker, no peer address.
    let bed = slow_seeder_testbed("conv", 32);
    let hashes = [&b1, &b2].map(|b| b["info_hash"].as_str().expect("info_hash").to_owned());
    let (_tracker, announce) = bed.opentracker(0, &env.path("tracker"), &[&hashes[0], &hashes[1]]);
    let discovery = Discovery::Tracker(announce);
    let seeders: Vec<Proc> = ["b1", "b2"]
        .iter()
        .zip([6881, 6882])
        .map(|(b, port)| {
            let torrent = format!("{b}.torrent");
            start_in(&bed, 0, &env, &discovery, port, &["bundle", "seed", &torrent, "--dir", b])
        })
        .collect();
    for s in &seeders {
        s.wait_event("seeding", Duration::from_secs(30));
    }
    let started = Instant::now();
    let http = |i: usize| format!("{}:8080", bed.peers[i].addr);
    let nodes: Vec<Proc> = (1..bed.peers.len())
        .map(|i| {
            let (data_dir, http) = (format!("n{i}"), http(i));
            let args = [
                "node",
                "run",
                "--data-dir",
                &data_dir,
                "--trust",
                "auth.pub",
                "--bundle",
                "b2.torrent",
                "--bundle",
                "b1.torrent",
                "--http",
                &http,
            ];
            start_in(&bed, i, &env, &discovery, 6881, &args)
        })
        .collect();
    for n in &nodes {
        assert_eq!(n.wait_event("started", Duration::from_secs(60))["last_seq"], 0);
    }
    let addrs: Vec<String> = (1..bed.peers.len()).map(http).collect();
    let roots = roots_at(&bed, 0, &addrs, 2, Duration::from_secs(120));
    let seconds = started.elapsed().as_secs_f64();
    let behind: Vec<&String> =
        addrs.iter().zip(&roots).filter(|(_, r)| r.is_null()).map(|(a, _)| a).collect();
    assert!(behind.is_empty(), "{} of 32 nodes never applied seq 2: {behind:?}", behind.len());
    for (a, root) in addrs.iter().zip(&roots) {
        assert_eq!(root.as_str(), Some(reference.as_str()), "node {a}");
    }
    eprintln!("32 nodes applied both bundles with one root in {seconds:.1} s");
    // Most nodes got each bundle from other nodes, whom they could find only through the
    // tracker (no DHT, no peer addresses): the seeder sent fewer than 16 copies of each.
    for (name, s) in ["b1", "b2"].iter().zip(&seeders) {
        s.interrupt();
        let stopped = s.wait_event("stopped", Duration::from_secs(20));
        let (uploaded, size) =
            (stopped["uploaded"].as_u64().unwrap(), stopped["total"].as_u64().unwrap());
        eprintln!(
            "the seeder of {name} uploaded {:.1} copies for 32 nodes",
            uploaded as f64 / size as f64
        );
        assert!(uploaded < 16 * size, "the seeder of {name} uploaded {uploaded} bytes of {size}");
    }
    // Each stops cleanly and says the same.
    for n in &nodes {
        n.interrupt();
    }
    for n in &nodes {
        let stopped = n.wait_event("stopped", Duration::from_secs(30));
        assert_eq!(
            (stopped["last_seq"].as_u64(), stopped["state_root"].as_str()),
            (Some(2), Some(reference.as_str()))
        );
    }
}
