//! Authority replicas against the single sequencer, in one run, with the release binary, on
//! 127.0.0.1: 3 replicas (2 of 3, one key each, `node run --cluster`) and 2 followers, and a
//! sequencer holding the key alone with 2 followers. Prints markdown for BENCHMARKS.md.
//!
//! 1. Throughput: clients submit through every node as fast as they are accepted for the
//!    run's seconds (`--cut-every 250ms --cut-at 2000`); contracts/s applied on every node.
//!    The single sequencer runs twice: with 2 followers (the comparison the target is set
//!    against) and with 4 (five processes on the machine, as in the replicas' run). The
//!    second against the first is the ceiling of the replicas' ratio: a replica verifies,
//!    executes and stores every contract as a follower does, so with replication free the
//!    replicas' run would cost what the single sequencer with 4 followers costs.
//! 2. Latency: 1,000 contracts/s offered (`--cut-every 250ms`); each contract's time from
//!    its submission until every node applied its bundle, p50 and p99.
//! 3. Failover: 10 times, the leader is SIGKILLed while a client submits through a follower;
//!    the time until the follower holds a K-signed head for a higher seq; then the killed
//!    replica is started again and catches up. p50, p99 and max.
//!
//! Every run checks its history: every contract answered 202 applied exactly once, in one
//! order on every node, each wallet's nonces rising.
//!
//! `cargo bench -p swarmvm --bench replicas`. `SWARMVM_REPLICAS_SECONDS` sets the run length
//! (default 20); `SWARMVM_REPLICAS_PHASES` (a comma-separated list of `throughput`, `latency`
//! and `failover`, default all three) runs only some phases, e.g. to profile one.
#![allow(missing_docs, clippy::unwrap_used, clippy::print_stdout)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use swarmvm_test_support::http::get;
use swarmvm_test_support::live::{LiveNet, LiveOptions, quantile, sample, seqs_of, submit};
use swarmvm_test_support::replicas::{ReplicaNet, ReplicaOptions, check_history};

const CUT_EVERY: &str = "250ms";

fn replica_options(bin: &str, followers: usize, wallets: usize, cut_at: usize) -> ReplicaOptions {
    ReplicaOptions {
        bin: bin.into(),
        members: 3,
        threshold: 2,
        followers,
        wallets,
        cut_every: CUT_EVERY.into(),
        cut_at,
    }
}

fn live_options(bin: &str, wallets: usize, cut_at: usize) -> LiveOptions {
    LiveOptions { bin: bin.into(), followers: 2, wallets, cut_every: CUT_EVERY.into(), cut_at }
}

/// The single sequencer with `followers` followers.
fn live_options_with(bin: &str, followers: usize, wallets: usize, cut_at: usize) -> LiveOptions {
    LiveOptions { followers, ..live_options(bin, wallets, cut_at) }
}

fn main() {
    let seconds: u64 =
        std::env::var("SWARMVM_REPLICAS_SECONDS").ok().and_then(|v| v.parse().ok()).unwrap_or(20);
    let bin = std::env::var("SWARMVM_BENCH_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_swarmvm").to_owned());
    let bin = bin.as_str();
    let phases = std::env::var("SWARMVM_REPLICAS_PHASES")
        .unwrap_or_else(|_| "throughput,latency,failover".into());
    let phases: Vec<&str> = phases.split(',').map(str::trim).collect();
    if let Some(unknown) =
        phases.iter().find(|p| !["throughput", "latency", "failover"].contains(p))
    {
        panic!("SWARMVM_REPLICAS_PHASES: unknown phase {unknown:?}");
    }
    println!("| measurement | figure | details |");
    println!("| --- | --- | --- |");
    if phases.contains(&"throughput") {
        let single = throughput_single(bin, seconds, 2);
        let five = throughput_single(bin, seconds, 4);
        let replicated = throughput_replicas(bin, seconds);
        println!(
            "| replicas' rate against the single sequencer's, same run | **{:.0}%** | {replicated:.0}/s against {single:.0}/s (target: at least 75%) |",
            100.0 * replicated / single
        );
        println!(
            "| replicas' rate against the single sequencer with 4 followers (five processes on the two cores, as the replicas' run) | **{:.0}%** | {replicated:.0}/s against {five:.0}/s |",
            100.0 * replicated / five
        );
        // Every replica verifies, executes and stores each contract as a follower does, and
        // one of them takes the submission and builds the cut as the sequencer does: with
        // replication free and a replica costing exactly a follower, the replicas' run would
        // be the single sequencer with 4 followers. That run's rate against the target's
        // baseline is the highest ratio the replicas could reach on this machine.
        println!(
            "| ceiling: the single sequencer with 4 followers against with 2 (the replicas' ratio if replication cost nothing) | **{:.0}%** | {five:.0}/s against {single:.0}/s |",
            100.0 * five / single
        );
    }
    if phases.contains(&"latency") {
        latency_single(bin, seconds);
        latency_replicas(bin, seconds);
    }
    if phases.contains(&"failover") {
        failover(bin);
    }
}

/// The rate at which every accepted contract was applied on every node: accepted contracts
/// over the time from the first submission until the last node applied the last bundle.
fn everywhere_rate(
    nodes: Vec<SocketAddr>,
    run: impl FnOnce(Instant) -> (usize, u64),
) -> (f64, usize, f64) {
    let start = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = sample(nodes, start, stop.clone());
    let (accepted, last) = run(start);
    stop.store(true, Ordering::Relaxed);
    let progress = sampler.join().unwrap();
    let everywhere = progress.applied_at.iter().map(|m| m[&last]).max().unwrap().as_secs_f64();
    (accepted as f64 / everywhere, accepted, everywhere)
}

fn throughput_single(bin: &str, seconds: u64, followers: usize) -> f64 {
    let net = LiveNet::start(&live_options_with(bin, followers, 256, 2000));
    let contracts = net.sign(800);
    let urls: Vec<String> = net.nodes().iter().map(|n| format!("http://{}", n.http)).collect();
    let nodes: Vec<SocketAddr> = net.nodes().iter().map(|n| n.http).collect();
    let (rate, accepted, secs) = everywhere_rate(nodes.clone(), |start| {
        let done = submit(&urls, &contracts, 256, None, Duration::from_secs(seconds), start);
        let ids: Vec<String> = done.accepted.iter().map(|a| a.id.clone()).collect();
        let last = net.settle(&contracts, &ids);
        check_history(&nodes, &ids).unwrap();
        (ids.len(), last)
    });
    println!(
        "| single sequencer + {followers} followers: contracts applied on every node | **{rate:.0}/s** | {accepted} in {secs:.1} s, through all {} nodes as fast as taken; history checked |",
        followers + 1
    );
    rate
}

fn throughput_replicas(bin: &str, seconds: u64) -> f64 {
    let net = ReplicaNet::start(&replica_options(bin, 2, 256, 2000));
    let contracts = net.sign(800);
    let mut urls = net.urls();
    urls.extend(net.followers.iter().map(|f| format!("http://{}", f.http)));
    let nodes = net.running();
    let (rate, accepted, secs) = everywhere_rate(nodes.clone(), |start| {
        let done = submit(&urls, &contracts, 256, None, Duration::from_secs(seconds), start);
        let ids: Vec<String> = done.accepted.iter().map(|a| a.id.clone()).collect();
        let last = net.settle(Duration::from_secs(600));
        check_history(&nodes, &ids).unwrap();
        (ids.len(), last)
    });
    println!(
        "| 3 replicas (2 of 3) + 2 followers: contracts applied on every node | **{rate:.0}/s** | {accepted} in {secs:.1} s, through all 5 nodes as fast as taken; history checked |"
    );
    rate
}

/// p50 and p99 of submit → applied on every node, from the accepted contracts' seqs.
fn latencies(
    done: &swarmvm_test_support::live::Submitted,
    seqs: &[Option<u64>],
    progress: &swarmvm_test_support::live::Progress,
) -> Vec<f64> {
    let mut out: Vec<f64> = done
        .accepted
        .iter()
        .zip(seqs)
        .filter_map(|(a, seq)| {
            let seq = (*seq)?;
            let at = progress.applied_at.iter().map(|m| m.get(&seq).copied()).max()??;
            Some(at.saturating_sub(a.sent).as_secs_f64())
        })
        .collect();
    out.sort_by(f64::total_cmp);
    out
}

fn latency_single(bin: &str, seconds: u64) {
    let net = LiveNet::start(&live_options(bin, 100, 1000));
    let per = (1000 * seconds).div_ceil(100) as usize;
    let contracts = net.sign(per);
    let urls: Vec<String> = net.nodes().iter().map(|n| format!("http://{}", n.http)).collect();
    let nodes: Vec<SocketAddr> = net.nodes().iter().map(|n| n.http).collect();
    let start = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = sample(nodes, start, stop.clone());
    let done = submit(&urls, &contracts, 100, Some(1000.0), Duration::from_secs(seconds), start);
    let ids: Vec<String> = done.accepted.iter().map(|a| a.id.clone()).collect();
    net.settle(&contracts, &ids);
    stop.store(true, Ordering::Relaxed);
    let progress = sampler.join().unwrap();
    let l = latencies(&done, &seqs_of(net.sequencer.http, &ids), &progress);
    println!(
        "| single sequencer: submit → applied on every node at 1,000/s offered | **p50 {:.2} s, p99 {:.2} s** | {} accepted ({:.0}/s); refused: {:?} |",
        quantile(&l, 0.5),
        quantile(&l, 0.99),
        ids.len(),
        ids.len() as f64 / done.elapsed.as_secs_f64(),
        done.refused
    );
}

fn latency_replicas(bin: &str, seconds: u64) {
    let net = ReplicaNet::start(&replica_options(bin, 2, 100, 1000));
    let per = (1000 * seconds).div_ceil(100) as usize;
    let contracts = net.sign(per);
    let mut urls = net.urls();
    urls.extend(net.followers.iter().map(|f| format!("http://{}", f.http)));
    let nodes = net.running();
    let start = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = sample(nodes.clone(), start, stop.clone());
    let done = submit(&urls, &contracts, 100, Some(1000.0), Duration::from_secs(seconds), start);
    let ids: Vec<String> = done.accepted.iter().map(|a| a.id.clone()).collect();
    net.settle(Duration::from_secs(600));
    stop.store(true, Ordering::Relaxed);
    let progress = sampler.join().unwrap();
    check_history(&nodes, &ids).unwrap();
    let l = latencies(&done, &seqs_of(nodes[0], &ids), &progress);
    println!(
        "| 3 replicas: submit → applied on every node at 1,000/s offered | **p50 {:.2} s, p99 {:.2} s** | {} accepted ({:.0}/s); refused: {:?}; history checked |",
        quantile(&l, 0.5),
        quantile(&l, 0.99),
        ids.len(),
        ids.len() as f64 / done.elapsed.as_secs_f64(),
        done.refused
    );
}

/// The follower's head: its seq and how many signed it.
fn head_of(http: SocketAddr) -> (u64, usize) {
    let (_, s) = get(http, "/v1/status");
    (s["head"]["seq"].as_u64().unwrap_or(0), s["head"]["signers"].as_array().map_or(0, Vec::len))
}

fn failover(bin: &str) {
    let mut net = ReplicaNet::start(&replica_options(bin, 1, 1, 1000));
    let follower = net.followers[0].http;
    let contracts = net.sign(5000);
    let stop = Arc::new(AtomicBool::new(false));
    // A client that keeps submitting through the follower (each contract until it is taken).
    let client = {
        let stop = stop.clone();
        let list = contracts[0].clone();
        std::thread::spawn(move || {
            let mut acked = Vec::new();
            for token in list {
                loop {
                    if stop.load(Ordering::Relaxed) {
                        return acked;
                    }
                    let (code, _) = swarmvm_test_support::http::request(
                        follower,
                        "POST",
                        "/v1/contracts",
                        Some(&token),
                    );
                    if code == 202 {
                        acked.push(swarmvm_vm::Hash32::digest(token.as_bytes()).to_hex());
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            acked
        })
    };
    let mut times = Vec::new();
    for _ in 0..10 {
        std::thread::sleep(Duration::from_secs(2));
        let leader = net.leader(Duration::from_secs(30));
        let (before, _) = head_of(follower);
        net.kill(leader);
        let killed = Instant::now();
        loop {
            let (seq, signers) = head_of(follower);
            if seq > before && signers >= 2 {
                times.push(killed.elapsed().as_secs_f64());
                break;
            }
            assert!(killed.elapsed() < Duration::from_secs(60), "no higher K-signed head");
            std::thread::sleep(Duration::from_millis(5));
        }
        net.restart(leader);
    }
    stop.store(true, Ordering::Relaxed);
    let acked = client.join().unwrap();
    let seq = net.settle(Duration::from_secs(300));
    check_history(&net.running(), &acked).unwrap();
    times.sort_by(f64::total_cmp);
    println!(
        "| failover: leader SIGKILLed → the follower holds a higher K-signed head (10 kills) | **p50 {:.2} s, p99 {:.2} s** | max {:.2} s; each killed replica restarted and caught up; {} contracts acknowledged and applied once, seq {seq}; history checked (target p99 ≤ 2 s) |",
        quantile(&times, 0.5),
        quantile(&times, 0.99),
        times.last().copied().unwrap_or(f64::NAN),
        acked.len()
    );
}
