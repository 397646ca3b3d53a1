//! A node holding a large state, with the release binary as whole processes:
//!
//! 1. Restart: a ledger of N state entries (1 million, then 10 million) is built with
//!    `swarmvm node apply`; then `swarmvm node run` is started on it, and the clock runs until
//!    `GET /v1/state/root` answers. Peak RSS (VmHWM) of the node at that moment. Median of 3
//!    restarts after a clean stop (SIGTERM), and one after SIGKILL (redb repairs the file).
//! 2. A 20,000-contract bundle applied by `node run` on the 1-million ledger: `GET
//!    /v1/status` is polled every 10 ms from another thread while it applies; p50/p99/max of
//!    those answers, the apply time, and the node's peak RSS.
//!
//! `cargo bench -p swarmvm --bench state` (about 5 minutes; `SWARMVM_STATE_SIZES=1000000`
//! for the 1-million figures only). Prints a markdown table for BENCHMARKS.md.
#![allow(missing_docs, clippy::unwrap_used, clippy::print_stdout)]

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::json;
use swarmvm_bundle::{CreateOptions, create_bundle};
use swarmvm_test_support::http::{get, post};
use swarmvm_test_support::load::{proc_status_kib, spawn_json};
use swarmvm_test_support::net::TestNet;

const BIN: &str = env!("CARGO_BIN_EXE_swarmvm");
/// Actions per contract when filling the state (a contract stays under 64 KiB).
const PER_CONTRACT: usize = 400;
/// State entries per bundle when filling.
const PER_BUNDLE: usize = 1_000_000;

fn run(dir: &Path, args: &[&str]) -> String {
    swarmvm_test_support::load::run(Path::new(BIN), dir, args)
}

fn student(id: usize) -> serde_json::Value {
    json!({"action": "register_student", "student": {"id": format!("S{id:09}"), "name": "A Student", "department": "Computer Science"}})
}

/// Writes bundle `name` after `after` holding `contracts`, with the network's tokens when
/// `tokens`.
fn bundle(
    net: &TestNet,
    dir: &Path,
    name: &str,
    tokens: bool,
    contracts: &[String],
    after: Option<&Path>,
) {
    let d = dir.join(name);
    std::fs::create_dir_all(&d).unwrap();
    let t = if tokens { net.tokens.join("\n") + "\n" } else { String::new() };
    std::fs::write(d.join("registration_tokens.txt"), t).unwrap();
    let body: String = contracts.iter().map(|c| format!("{c}\n")).collect();
    std::fs::write(d.join("contracts.jsonl"), body).unwrap();
    let options = CreateOptions { after, now: net.issued_at, force: true, ..Default::default() };
    create_bundle(&d, &[&net.authority], &net.network, &options).unwrap();
}

/// A ledger in `dir/peer` with about `entries` students, built bundle by bundle with `node
/// apply`. Returns the number of bundles.
fn fill(net: &TestNet, dir: &Path, entries: usize) -> usize {
    let mut nonce = 0u64;
    let mut made = 0;
    let mut next_id = 0;
    let mut previous: Option<std::path::PathBuf> = None;
    while next_id < entries {
        let in_bundle = PER_BUNDLE.min(entries - next_id);
        let contracts: Vec<String> = (0..in_bundle.div_ceil(PER_CONTRACT))
            .map(|c| {
                let from = next_id + c * PER_CONTRACT;
                let to = (from + PER_CONTRACT).min(next_id + in_bundle);
                let actions: Vec<serde_json::Value> = (from..to).map(student).collect();
                nonce += 1;
                net.contract(0, nonce, &actions)
            })
            .collect();
        made += 1;
        let name = format!("fill-{made}");
        bundle(net, dir, &name, made == 1, &contracts, previous.as_deref());
        let started = Instant::now();
        run(dir, &["node", "apply", &name, "--data-dir", "peer", "--trust", "auth.pub"]);
        eprintln!(
            "  bundle {made}: {in_bundle} entries applied in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        // Only the manifest is needed from now on (as the next bundle's parent).
        std::fs::remove_file(dir.join(&name).join("contracts.jsonl")).unwrap();
        previous = Some(dir.join(&name));
        next_id += in_bundle;
    }
    made
}

fn node_args<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "node",
        "run",
        "--data-dir",
        "peer",
        "--trust",
        "auth.pub",
        "--no-dht",
        "--listen",
        "127.0.0.1:0",
        "--http",
        "127.0.0.1:0",
    ];
    args.extend_from_slice(extra);
    args
}

/// How the node before a restart stopped.
#[derive(Clone, Copy)]
enum Stop {
    /// SIGTERM, waiting for a clean exit (the ledger file closed).
    Clean,
    /// SIGKILL: the next open repairs the file (redb's recovery).
    Killed,
}

/// Seconds from starting `node run` until `/v1/state/root` answers, and its peak RSS then;
/// the node is then stopped as `stop` says.
fn restart(dir: &Path, stop: Stop) -> (f64, u64) {
    let started = Instant::now();
    let (mut child, first) = spawn_json(Path::new(BIN), dir, &node_args(&[]));
    let http: std::net::SocketAddr = first["http"].as_str().unwrap().parse().unwrap();
    loop {
        if get(http, "/v1/state/root").0 == 200 {
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let seconds = started.elapsed().as_secs_f64();
    let rss = proc_status_kib(child.0.id(), "VmHWM:");
    if let Stop::Clean = stop {
        let pid = child.0.id().to_string();
        std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        while child.0.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "the node did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    drop(child);
    (seconds, rss)
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

struct ApplyFigures {
    seconds: f64,
    p50: Duration,
    p99: Duration,
    max: Duration,
    polls: usize,
    rss_kib: u64,
}

/// Applies a bundle of `count` one-action contracts with `node run` on the ledger in
/// `dir/peer`, polling the status meanwhile.
fn apply_large_bundle(net: &TestNet, dir: &Path, count: usize, after: &Path) -> ApplyFigures {
    let mut nonces = vec![1_000_000u64; net.peers.len()];
    let contracts: Vec<String> = (0..count)
        .map(|i| {
            let peer = i % net.peers.len();
            nonces[peer] += 1;
            net.contract(peer, nonces[peer], &[student(900_000_000 + i)])
        })
        .collect();
    bundle(net, dir, "large", false, &contracts, Some(after));
    run(dir, &["bundle", "create", "large", "-o", "large.torrent"]);
    let (seeder, seeding) = spawn_json(
        Path::new(BIN),
        dir,
        &[
            "bundle",
            "seed",
            "large.torrent",
            "--dir",
            "large",
            "--no-dht",
            "--listen",
            "127.0.0.1:0",
        ],
    );
    let peer = seeding["listen"].as_str().unwrap().to_owned();
    let (node, first) = spawn_json(Path::new(BIN), dir, &node_args(&["--peer", &peer]));
    let http: std::net::SocketAddr = first["http"].as_str().unwrap().parse().unwrap();
    let last_seq = get(http, "/v1/status").1["last_seq"].as_u64().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let poller = {
        let (stop, latencies) = (stop.clone(), latencies.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                let (code, _) = get(http, "/v1/status");
                assert_eq!(code, 200);
                latencies.lock().unwrap().push(t.elapsed());
                std::thread::sleep(Duration::from_millis(10));
            }
        })
    };
    let torrent = base64::engine::general_purpose::STANDARD
        .encode(std::fs::read(dir.join("large.torrent")).unwrap());
    let started = Instant::now();
    assert_eq!(post(http, "/v1/bundles", &json!({"torrent_base64": torrent}).to_string()).0, 202);
    let deadline = Instant::now() + Duration::from_secs(900);
    loop {
        let (_, status) = get(http, "/v1/status");
        if status["last_seq"].as_u64() == Some(last_seq + 1) {
            break;
        }
        assert!(Instant::now() < deadline, "the large bundle was not applied: {status}");
        std::thread::sleep(Duration::from_millis(20));
    }
    let seconds = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    poller.join().unwrap();
    let rss_kib = proc_status_kib(node.0.id(), "VmHWM:");
    drop((node, seeder));
    let mut lat = latencies.lock().unwrap().clone();
    lat.sort();
    let at = |p: usize| lat[(lat.len() * p / 100).min(lat.len() - 1)];
    ApplyFigures {
        seconds,
        p50: at(50),
        p99: at(99),
        max: lat[lat.len() - 1],
        polls: lat.len(),
        rss_kib,
    }
}

fn main() {
    let sizes: Vec<usize> = std::env::var("SWARMVM_STATE_SIZES")
        .unwrap_or_else(|_| "1000000,10000000".into())
        .split(',')
        .map(|s| s.trim().parse().unwrap())
        .collect();
    let mut rows = Vec::new();
    for &entries in &sizes {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let net = TestNet::new(16);
        std::fs::write(d.join("auth.pub"), net.authority.public_key().to_spki_pem()).unwrap();
        eprintln!("filling a ledger with {entries} students");
        let started = Instant::now();
        let bundles = fill(&net, d, entries);
        let fill_seconds = started.elapsed().as_secs_f64();
        // A first start (after `node apply` closed the file), then three after a clean
        // stop, then one after SIGKILL (the open repairs the file first), then a clean one.
        restart(d, Stop::Clean);
        let runs: Vec<(f64, u64)> = (0..3).map(|_| restart(d, Stop::Clean)).collect();
        let seconds = median(runs.iter().map(|r| r.0).collect());
        let rss = median(runs.iter().map(|r| r.1 as f64).collect());
        rows.push(format!(
            "| restart after a clean stop (open the ledger, serve `/v1/state/root`), {entries} entries | {seconds:.3} s | {:.0} MiB | filled with {bundles} bundles in {fill_seconds:.0} s; median of 3 |",
            rss / 1024.0
        ));
        restart(d, Stop::Killed);
        let (seconds, rss) = restart(d, Stop::Clean);
        rows.push(format!(
            "| restart after SIGKILL (the file is repaired on open), {entries} entries | {seconds:.3} s | {:.0} MiB | |",
            rss as f64 / 1024.0
        ));
        if entries == 1_000_000 {
            // The last fill bundle is the large one's parent.
            let a = apply_large_bundle(&net, d, 20_000, &d.join(format!("fill-{bundles}")));
            rows.push(format!(
                "| `GET /v1/status` while a 20,000-contract bundle applies, 1,000,000 entries | p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} polls) | {:.0} MiB | fetched and applied in {:.1} s |",
                a.p50.as_secs_f64() * 1e3,
                a.p99.as_secs_f64() * 1e3,
                a.max.as_secs_f64() * 1e3,
                a.polls,
                a.rss_kib as f64 / 1024.0,
                a.seconds
            ));
        }
    }
    println!("| measurement | time | peak RSS | notes |");
    println!("| --- | --- | --- | --- |");
    for r in rows {
        println!("{r}");
    }
}
