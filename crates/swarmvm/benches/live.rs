//! The network that runs itself, under load, with the release binary: a sequencer and two
//! followers (`node run` processes) on 127.0.0.1, and clients in this process submitting
//! signed contracts over HTTP to all three nodes (each wallet's contracts in nonce order,
//! through the node `wallet % 3`). Prints markdown for BENCHMARKS.md.
//!
//! 1. Throughput: clients submit as fast as they are accepted for 30 s (`--cut-every 1s
//!    --cut-at 10000`); contracts/s accepted, and applied on every node (until the last
//!    node applied the last bundle).
//! 2. Latency: an offered load of 1,000 contracts/s for 30 s with `--cut-every 1s`; each
//!    contract's time from its submission until every node applied its bundle, p50 and p99.
//!
//! Both check that every accepted contract was applied exactly once on every node: each
//! node's log holds as many contracts as were accepted, and each wallet's nonce is the count
//! of its accepted contracts.
//!
//! `cargo bench -p swarmvm --bench live`. `SWARMVM_LIVE_SECONDS` shortens the runs;
//! `SWARMVM_BENCH_BIN` runs another `swarmvm` binary (an older build, for a before/after
//! comparison in the same hour) through the same harness.
#![allow(missing_docs, clippy::unwrap_used, clippy::print_stdout)]

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use swarmvm_test_support::live::{LiveNet, LiveOptions, quantile, sample, seqs_of, submit};

fn main() {
    let seconds: u64 =
        std::env::var("SWARMVM_LIVE_SECONDS").ok().and_then(|v| v.parse().ok()).unwrap_or(30);
    let bin = std::env::var("SWARMVM_BENCH_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_swarmvm").to_owned());
    let bin = bin.as_str();
    println!("| measurement | figure | details |");
    println!("| --- | --- | --- |");
    throughput(bin, seconds, true);
    throughput(bin, seconds, false);
    latency(bin, seconds);
}

/// Clients submit through every node (`spread`), or to the sequencer alone.
fn throughput(bin: &str, seconds: u64, spread: bool) {
    let options = LiveOptions {
        bin: bin.into(),
        followers: 2,
        wallets: 256,
        cut_every: "1s".into(),
        cut_at: 10_000,
    };
    let net = LiveNet::start(&options);
    let contracts = net.sign(800);
    let mut urls: Vec<String> = net.nodes().iter().map(|n| format!("http://{}", n.http)).collect();
    if !spread {
        urls.truncate(1);
    }
    let via = if spread { "through all 3 nodes" } else { "to the sequencer" };
    let cpu_before: Vec<f64> = net.nodes().iter().map(|n| n.cpu_seconds()).collect();
    let client_before = swarmvm_test_support::live::cpu_seconds(std::process::id());
    let start = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = sample(net.nodes().iter().map(|n| n.http).collect(), start, stop.clone());
    let submitted = submit(&urls, &contracts, 256, None, Duration::from_secs(seconds), start);
    let ids: Vec<String> = submitted.accepted.iter().map(|a| a.id.clone()).collect();
    let last = net.settle(&contracts, &ids);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let progress = sampler.join().unwrap();
    let everywhere = progress.applied_at.iter().map(|m| m[&last]).max().unwrap().as_secs_f64();
    let accepted = ids.len() as f64;
    let cpu: Vec<f64> =
        net.nodes().iter().zip(&cpu_before).map(|(n, b)| n.cpu_seconds() - b).collect();
    let client_cpu = swarmvm_test_support::live::cpu_seconds(std::process::id()) - client_before;
    println!(
        "| contracts accepted (202), submitted {via} | {:.0}/s | {} in {:.1} s; refused: {:?} |",
        accepted / submitted.elapsed.as_secs_f64(),
        ids.len(),
        submitted.elapsed.as_secs_f64(),
        submitted.refused
    );
    println!(
        "| contracts applied on every node, submitted {via} | **{:.0}/s** | all {} applied on all 3 nodes {:.1} s after the first was sent; {} bundles; 0 lost, 0 duplicated |",
        accepted / everywhere,
        ids.len(),
        everywhere,
        last - 1
    );
    println!(
        "| CPU seconds during the run, submitted {via} | sequencer {:.1}, followers {:.1} and {:.1}, clients {:.1} | over {:.1} s of wall time on 2 cores |",
        cpu[0], cpu[1], cpu[2], client_cpu, everywhere
    );
}

fn latency(bin: &str, seconds: u64) {
    let options = LiveOptions {
        bin: bin.into(),
        followers: 2,
        wallets: 100,
        cut_every: "1s".into(),
        cut_at: 1000,
    };
    let net = LiveNet::start(&options);
    let rate = 1000.0;
    let per = (rate as u64 * seconds).div_ceil(100) as usize;
    let contracts = net.sign(per);
    let urls: Vec<String> = net.nodes().iter().map(|n| format!("http://{}", n.http)).collect();
    let start = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = sample(net.nodes().iter().map(|n| n.http).collect(), start, stop.clone());
    let submitted = submit(&urls, &contracts, 100, Some(rate), Duration::from_secs(seconds), start);
    let ids: Vec<String> = submitted.accepted.iter().map(|a| a.id.clone()).collect();
    let last = net.settle(&contracts, &ids);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let progress = sampler.join().unwrap();
    let seqs = seqs_of(net.sequencer.http, &ids);
    let lost = seqs.iter().filter(|s| s.is_none()).count();
    let mut latencies: Vec<f64> = submitted
        .accepted
        .iter()
        .zip(&seqs)
        .filter_map(|(a, seq)| {
            let seq = (*seq)?;
            let everywhere = progress.applied_at.iter().map(|m| m[&seq]).max()?;
            Some(everywhere.saturating_sub(a.sent).as_secs_f64())
        })
        .collect();
    latencies.sort_by(f64::total_cmp);
    println!(
        "| submit → applied on every node, at 1,000/s offered (`--cut-every 1s`) | **p50 {:.2} s, p99 {:.2} s** | {} contracts accepted ({:.0}/s), {} bundles, max {:.2} s; {lost} lost, 0 duplicated; refused: {:?} |",
        quantile(&latencies, 0.5),
        quantile(&latencies, 0.99),
        ids.len(),
        ids.len() as f64 / submitted.elapsed.as_secs_f64(),
        last - 1,
        latencies.last().copied().unwrap_or(f64::NAN),
        submitted.refused
    );
}
