//! Whole-process figures of the peer network, with the release binary:
//!
//! 1. `swarmvm demo` wall time, process start to exit, for 3 and 8 peers (10 runs each).
//! 2. Time from `swarmvm bundle create` until 8 running `swarmvm node run` processes have
//!    applied the bundle: create, seed, post the torrent to each node's HTTP API, poll.
//!
//! `cargo bench -p swarmvm --bench demo`. Prints a markdown table for BENCHMARKS.md.
#![allow(missing_docs, clippy::unwrap_used, clippy::print_stdout)]

use std::path::Path;
use std::time::{Duration, Instant};

use base64::Engine as _;
use swarmvm_test_support::http::{get, post};
use swarmvm_test_support::tools::KillOnDrop;

const BIN: &str = env!("CARGO_BIN_EXE_swarmvm");

fn run(dir: &Path, args: &[&str]) -> String {
    swarmvm_test_support::load::run(Path::new(BIN), dir, args)
}

fn spawn_json(dir: &Path, args: &[&str]) -> (KillOnDrop, serde_json::Value) {
    swarmvm_test_support::load::spawn_json(Path::new(BIN), dir, args)
}

fn stats(mut xs: Vec<f64>) -> (f64, f64) {
    xs.sort_by(f64::total_cmp);
    (xs[xs.len() / 2], xs[0])
}

fn demo_times(peers: &str, runs: usize) -> (f64, f64) {
    let dir = tempfile::tempdir().unwrap();
    run(dir.path(), &["demo", "--peers", peers]); // warm the page cache
    stats(
        (0..runs)
            .map(|_| {
                let start = Instant::now();
                run(dir.path(), &["demo", "--peers", peers]);
                start.elapsed().as_secs_f64()
            })
            .collect(),
    )
}

fn bundle_to_nodes(nodes: usize) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    swarmvm_test_support::load::write_authority(Path::new(BIN), d, &["peer1.pem"]);
    std::fs::write(d.join("c.json"), r#"{"actions":[{"action":"register_student","student":{"id":"S001","name":"John Doe","department":"Computer Science"}}]}"#).unwrap();
    std::fs::write(
        d.join("contracts.jsonl"),
        run(
            d,
            &[
                "contract",
                "sign",
                "c.json",
                "--wallet",
                "peer1.pem",
                "--network",
                "auth.pub",
                "--nonce",
                "1",
            ],
        ),
    )
    .unwrap();
    // Nodes are running before the bundle exists, as on a real network.
    let mut children = Vec::new();
    let mut https = Vec::new();
    let mut listens: Vec<String> = Vec::new();
    for i in 0..nodes {
        let data = format!("node{i}");
        let mut args = vec![
            "node",
            "run",
            "--data-dir",
            &data,
            "--trust",
            "auth.pub",
            "--no-dht",
            "--listen",
            "127.0.0.1:0",
            "--http",
            "127.0.0.1:0",
        ];
        let peers: Vec<String> = listens.clone();
        for p in &peers {
            args.push("--peer");
            args.push(p);
        }
        let (child, first) = spawn_json(d, &args);
        https.push(first["http"].as_str().unwrap().parse::<std::net::SocketAddr>().unwrap());
        listens.push(first["listen"].as_str().unwrap().to_owned());
        children.push(child);
    }
    let start = Instant::now();
    run(
        d,
        &[
            "bundle",
            "create",
            "b1",
            "--key",
            "auth.pem",
            "--tokens",
            "tokens.txt",
            "--contracts",
            "contracts.jsonl",
        ],
    );
    // Each node is told the torrent over its API; then the authority seeds and dials them
    // (no tracker or DHT here), and they also trade with each other.
    let torrent = base64::engine::general_purpose::STANDARD
        .encode(std::fs::read(d.join("b1.torrent")).unwrap());
    let body = serde_json::json!({ "torrent_base64": torrent }).to_string();
    for http in &https {
        assert_eq!(post(*http, "/v1/bundles", &body).0, 202);
    }
    let mut args =
        vec!["bundle", "seed", "b1.torrent", "--dir", "b1", "--no-dht", "--listen", "127.0.0.1:0"];
    for l in &listens {
        args.push("--peer");
        args.push(l);
    }
    let (seeder, _) = spawn_json(d, &args);
    children.push(seeder);
    let deadline = Instant::now() + Duration::from_secs(120);
    for http in &https {
        while get(*http, "/v1/status").1["last_seq"] != 1 {
            assert!(Instant::now() < deadline, "nodes did not apply the bundle");
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    drop(children); // kills the nodes and the seeder
    seconds
}

fn main() {
    println!("| measurement | median | best |");
    println!("| --- | --- | --- |");
    for peers in ["3", "8"] {
        let (median, best) = demo_times(peers, 10);
        println!(
            "| `swarmvm demo --peers {peers}`, process start to exit | {median:.3} s | {best:.3} s |"
        );
    }
    let (median, best) = stats((0..5).map(|_| bundle_to_nodes(8)).collect());
    println!(
        "| `bundle create` until 8 `node run` processes applied it | {median:.3} s | {best:.3} s |"
    );
}
