//! Heads through the BitTorrent DHT in the namespace testbed (`swarmvm_test_support::netns`),
//! on a private DHT made of the nodes themselves: a sequencer and `SWARMVM_DHT_FOLLOWERS`
//! followers (default 32) that know only the network's link, each in a namespace of its own
//! behind a 100 Mbit/s link.
//!
//! A driver inside the sequencer's namespace (`dht_heads_driver.py`) long-polls every node's
//! `GET /v1/head`, registers the wallets, waits until every follower caught up on bundle 1,
//! then submits `SWARMVM_DHT_HEADS` contracts (default 24) one at a time, each a bundle and a
//! head. For each head: the time from the sequencer showing it until 95% of the followers show
//! it. Then the sequencer is killed; after a republish interval a node that knows only the
//! link joins through one follower's DHT address, and the time until it applied the last
//! bundle with the same root is measured. Prints markdown for BENCHMARKS.md.
//!
//! `cargo bench -p swarmvm --bench dht_heads` (root, iproute2, python3).
#![allow(missing_docs, clippy::unwrap_used, clippy::print_stdout)]

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use swarmvm_test_support::live::write_network;
use swarmvm_test_support::netns::Testbed;
use swarmvm_test_support::tools::JsonProcess;

const SWARMVM: &str = env!("CARGO_BIN_EXE_swarmvm");
const MBIT: u32 = 100;
const REPUBLISH: &str = "5s";

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn main() {
    let followers = env_usize("SWARMVM_DHT_FOLLOWERS", 32);
    let heads = env_usize("SWARMVM_DHT_HEADS", 24);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (authority, wallets, tokens) = write_network(d, 4);
    let network = authority.id().to_string();
    let link = swarmvm_dht::link(authority.public_key().ed25519_bytes().unwrap(), &network);

    // Peer 0: the sequencer; 1..=followers: followers; the last: the late joiner.
    let bed = Testbed::new("dht", &vec![MBIT; followers + 2]);
    let at = |i: usize| bed.peers[i].addr;
    let api = |i: usize| format!("{}:8080", at(i));
    let dht = |i: usize| format!("{}:6881", at(i));
    let mut seq = spawn(
        &bed,
        0,
        d,
        &[
            "node",
            "run",
            "--data-dir",
            "seq",
            "--trust",
            "auth.pub",
            "--sequencer",
            "--key",
            "auth.pem",
            "--cut-every",
            "250ms",
            "--dht-bind",
            &dht(0),
            "--dht-bootstrap",
            "--dht-republish",
            REPUBLISH,
            "--listen",
            &format!("{}:6882", at(0)),
            "--http",
            &api(0),
        ],
    );
    seq.wait_event("started", Duration::from_secs(60));
    let follower = |i: usize, name: &str, via: usize| {
        spawn(
            &bed,
            i,
            d,
            &[
                "node",
                "run",
                "--data-dir",
                name,
                "--trust",
                "auth.pub",
                "--follow",
                &link,
                "--poll",
                "500ms",
                "--dht-bind",
                &dht(i),
                "--dht-bootstrap",
                &dht(via),
                "--dht-republish",
                REPUBLISH,
                "--listen",
                &format!("{}:6882", at(i)),
                "--http",
                &api(i),
            ],
        )
    };
    let started = Instant::now();
    let nodes: Vec<JsonProcess> =
        (1..=followers).map(|i| follower(i, &format!("f{i}"), 0)).collect();
    for node in &nodes {
        node.wait_event("started", Duration::from_secs(60));
    }
    let now = swarmvm_test_support::now();
    let contracts: Vec<String> = (0..heads)
        .map(|n| {
            let w = n % wallets.len();
            let nonce = (n / wallets.len()) as u64 + 1;
            let action = json!({"action": "register_student", "student": {
                "id": format!("S{n:03}"), "name": "n", "department": "d"}});
            swarmvm_token::sign_contract(&wallets[w], &network, nonce, &[action], now).unwrap()
        })
        .collect();
    let config = json!({
        "sequencer": format!("http://{}", api(0)),
        "followers": (1..=followers).map(|i| format!("http://{}", api(i))).collect::<Vec<_>>(),
        "registrations": json!({ "tokens": tokens }).to_string(),
        "contracts": contracts,
        "share": 0.95,
    });
    std::fs::write(d.join("driver.json"), config.to_string()).unwrap();
    let driver = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/dht_heads_driver.py");
    let out = bed
        .command(0, Path::new("python3"))
        .arg(&driver)
        .arg(d.join("driver.json"))
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    assert!(out.status.success(), "the driver failed");
    let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let ready = &lines[0];
    let caught_up = started.elapsed().as_secs_f64();
    assert_eq!(ready["ready"], ready["of"], "not every follower caught up on bundle 1");
    // Per head: the time until 95% of the followers showed it (the ceil(0.95 n)-th fastest).
    let need = (followers * 95).div_ceil(100);
    let mut p95s = Vec::new();
    let mut all = Vec::new();
    let mut missed = 0;
    for line in lines.iter().filter(|l| l.get("seq").is_some()) {
        let mut seen: Vec<f64> =
            line["seen"].as_array().unwrap().iter().filter_map(Value::as_f64).collect();
        missed += followers - seen.len();
        seen.sort_by(f64::total_cmp);
        all.extend(seen.iter().copied());
        if seen.len() >= need {
            p95s.push(seen[need - 1]);
        }
    }
    let heads_measured = p95s.len();
    p95s.sort_by(f64::total_cmp);
    all.sort_by(f64::total_cmp);
    let pct = |v: &[f64], p: f64| {
        if v.is_empty() {
            f64::NAN
        } else {
            v[((v.len() as f64 * p).ceil() as usize).clamp(1, v.len()) - 1]
        }
    };
    let last_seq = heads as u64 + 1;
    let root = status_in(&bed, 1, &api(1)).unwrap()["state_root"].as_str().unwrap().to_owned();

    // The sequencer dies; a node that knows only the link joins through follower 1.
    seq.kill();
    std::thread::sleep(Duration::from_secs(6));
    let joiner = followers + 1;
    let joined_at = Instant::now();
    let _joiner = follower(joiner, "joiner", 1);
    let deadline = Instant::now() + Duration::from_secs(120);
    let joined = loop {
        if let Some(s) = status_in(&bed, joiner, &api(joiner))
            && s["last_seq"] == last_seq
            && s["state_root"] == root.as_str()
        {
            break s;
        }
        assert!(Instant::now() < deadline, "the late joiner did not catch up within 120 s");
        std::thread::sleep(Duration::from_millis(200));
    };
    let join_s = joined_at.elapsed().as_secs_f64();
    drop(nodes);

    println!(
        "{followers} followers that know only the link, behind {MBIT} Mbit/s links, on a private DHT of the {} nodes; {heads} heads, one bundle each",
        followers + 1
    );
    println!();
    println!("| measurement | value |");
    println!("| --- | --- |");
    println!(
        "| bundle 1's head seen by every follower, from their start ({followers} processes starting on this machine) | {caught_up:.1} s |"
    );
    let firsts: Vec<f64> =
        ready["first"].as_array().unwrap().iter().filter_map(Value::as_f64).collect();
    println!(
        "| bundle 1's head seen, from the registrations' submission: median / last follower | {:.1} s / {:.1} s |",
        pct(&firsts, 0.5),
        firsts.last().copied().unwrap_or(f64::NAN)
    );
    println!(
        "| time until 95% of followers show a head, p50 over {heads_measured} heads | {:.2} s |",
        pct(&p95s, 0.5)
    );
    println!(
        "| time until 95% of followers show a head, p99 (max) over {heads_measured} heads | {:.2} s |",
        pct(&p95s, 0.99)
    );
    println!(
        "| one follower's time to a head, p50 / p99 over all {} | {:.2} s / {:.2} s |",
        all.len(),
        pct(&all, 0.5),
        pct(&all, 0.99)
    );
    println!("| (follower, head) pairs never seen within 15 s | {missed} |");
    println!(
        "| sequencer killed; a joiner with only the link (via a follower's DHT address) applied all {last_seq} bundles, same root | {join_s:.1} s (head from `{}`, stale: {}) |",
        joined["head"]["via"].as_str().unwrap_or("?"),
        joined["stale"]
    );
}

/// `swarmvm ARGS --json` in peer `i`'s namespace.
fn spawn(bed: &Testbed, i: usize, dir: &Path, args: &[&str]) -> JsonProcess {
    bed.spawn_json(i, Path::new(SWARMVM), dir, args)
}

/// A node's status, read from inside peer `i`'s namespace.
fn status_in(bed: &Testbed, i: usize, api: &str) -> Option<Value> {
    bed.get_json(i, &format!("http://{api}/v1/status"))
}
