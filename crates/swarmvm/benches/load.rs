//! Load figures with the release binary: N `node run` processes (32 by default) on
//! 127.0.0.1 that find each other through a local opentracker fetch and apply a chain of
//! three bundles of 1,000 signed contracts each; then `wrk -t2 -c64 -d10s` against one
//! node's API. Prints a markdown table for BENCHMARKS.md.
//!
//! `cargo bench -p swarmvm --bench load` (needs opentracker and wrk: `apt-get install
//! opentracker wrk`). `SWARMVM_LOAD_NODES` changes the number of nodes; `SWARMVM_BENCH_BIN`
//! runs another `swarmvm` binary (an older build, for a before/after comparison).
#![allow(missing_docs, clippy::unwrap_used, clippy::print_stdout)]

use std::time::{Duration, Instant};

use swarmvm_test_support::load::{Bundles, Plan, wrk};

const ROUNDS: usize = 3;

fn main() {
    let nodes: usize =
        std::env::var("SWARMVM_LOAD_NODES").ok().and_then(|v| v.parse().ok()).unwrap_or(32);
    // `SWARMVM_BENCH_BIN` runs another binary (an older build) through the same harness.
    let bin = std::env::var("SWARMVM_BENCH_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_swarmvm").to_owned());
    let plan = Plan { bin: bin.into(), bundles: 3, contracts: 1_000 };
    let bundles = Bundles::create(&plan);
    let last = bundles.roots.last().unwrap().clone();
    println!(
        "{nodes} nodes, {} bundles of {} contracts ({} KiB in all), {ROUNDS} rounds",
        plan.bundles,
        plan.contracts,
        bundles.bytes / 1024
    );
    println!();
    println!("| measurement | median | best / range |");
    println!("| --- | --- | --- |");
    let mut times = Vec::new();
    let mut peaks = Vec::new();
    let mut network = None;
    for _ in 0..ROUNDS {
        drop(network.take()); // the previous round's processes exit first
        for i in 0..nodes {
            let _ = std::fs::remove_dir_all(bundles.path(&format!("node{i}")));
        }
        let start = Instant::now();
        let net = bundles.start(nodes);
        let roots = net.wait_for_seq(plan.bundles, Duration::from_secs(600)).unwrap();
        times.push(start.elapsed().as_secs_f64());
        assert!(roots.iter().all(|r| *r == last), "a node reached another root");
        peaks.extend(net.nodes.iter().map(|n| n.peak_rss_kib() as f64 / 1024.0));
        network = Some(net);
    }
    times.sort_by(f64::total_cmp);
    println!(
        "| start {nodes} nodes until every one applied seq {} | {:.2} s | {:.2} s |",
        plan.bundles,
        times[ROUNDS / 2],
        times[0]
    );
    peaks.sort_by(f64::total_cmp);
    println!(
        "| peak RSS (VmHWM) per node | {:.1} MiB | {:.1} to {:.1} MiB |",
        peaks[peaks.len() / 2],
        peaks[0],
        peaks[peaks.len() - 1]
    );
    let net = network.unwrap();
    let http = net.nodes[0].http;
    // A proof of a present student (the bundles register S0, S4, S8, ...) and of an absent
    // one: the whole route, read from redb and hashed, per request.
    for path in ["/v1/status", "/v1/state/root", "/v1/proof/students/S400", "/v1/proof/students/X1"]
    {
        let r = wrk(&format!("http://{http}{path}"), 2, 64, 10);
        assert_eq!((r.non_2xx, r.socket_errors), (0, 0), "{path}: {r:?}");
        println!(
            "| `wrk -t2 -c64 -d10s` `{path}` ({} requests, {} errors) | {:.0} req/s | p50 {:.2} ms, p99 {:.2} ms |",
            r.requests,
            r.non_2xx + r.socket_errors,
            r.per_second,
            r.p50_us / 1000.0,
            r.p99_us / 1000.0
        );
    }
}
