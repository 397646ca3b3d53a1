//! A late joiner in the namespace testbed (`swarmvm_test_support::netns`): time to ready from
//! a state snapshot against replaying every bundle, and the joiner's peak memory.
//!
//! A network of about `SWARMVM_SNAPSHOT_ENTRIES` state entries (default 1,000,000: students
//! registered 400 to a contract, 50 contracts to a bundle) is built by a sequencer on
//! loopback with `--snapshot-every K`, topped up with one-contract bundles until its last
//! seq is a multiple of K (so the newest snapshot is the head's state), and stopped. It is
//! started again in namespace 0, behind an 80 Mbit/s link; a joiner with `--from-snapshot`
//! starts in namespace 1 and a joiner without it (replaying every bundle) in namespace 2, one
//! after the other, each behind its own 80 Mbit/s link. Time to ready runs from the joiner's
//! start until its status shows the sequencer's last seq and root (polled every 250 ms from
//! inside its namespace). Peak memory is the joiner's `VmHWM`. Prints markdown for
//! BENCHMARKS.md.
//!
//! `cargo bench -p swarmvm --bench snapshot` (root, iproute2, python3).
#![allow(missing_docs, clippy::unwrap_used, clippy::print_stdout)]

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use swarmvm_test_support::http::{get, request};

use swarmvm_test_support::live::{submit, wait_status, write_network};
use swarmvm_test_support::load::proc_status_kib;
use swarmvm_test_support::netns::Testbed;
use swarmvm_test_support::tools::JsonProcess;

const SWARMVM: &str = env!("CARGO_BIN_EXE_swarmvm");
const MBIT: u32 = 80;
const PER_CONTRACT: usize = 400;
const WALLETS: usize = 50;
const EVERY: u64 = 8;
/// A joiner that is not ready by then fails the run.
const LIMIT: Duration = Duration::from_secs(900);

fn main() {
    let entries: usize = std::env::var("SWARMVM_SNAPSHOT_ENTRIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (authority, wallets, tokens) = write_network(d, WALLETS);
    let network = authority.id().to_string();

    // Build the network on loopback.
    let built = Instant::now();
    let port = swarmvm_test_support::tools::free_port();
    let http: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let seq = sequencer(d, &["--http", &http.to_string(), "--listen", "127.0.0.1:0"]);
    let body = json!({ "tokens": tokens }).to_string();
    let (code, answer) = request(http, "POST", "/v1/registrations", Some(&body));
    assert_eq!(code, 202, "{answer}");
    wait_status(http, Duration::from_secs(60), |s| s["last_seq"] == 1);
    let contracts = entries.div_ceil(PER_CONTRACT);
    let per_wallet = contracts.div_ceil(WALLETS);
    let now = swarmvm_test_support::now();
    let signed: Vec<Vec<String>> = wallets
        .iter()
        .enumerate()
        .map(|(w, wallet)| {
            (1..=per_wallet as u64)
                .map(|nonce| {
                    let actions: Vec<Value> = (0..PER_CONTRACT)
                        .map(|i| {
                            json!({"action": "register_student", "student": {
                                "id": format!("S{w:02}{nonce:04}{i:03}"), "name": "n", "department": "d"}})
                        })
                        .collect();
                    swarmvm_token::sign_contract(wallet, &network, nonce, &actions, now).unwrap()
                })
                .collect()
        })
        .collect();
    let sent = submit(&[format!("http://{http}")], &signed, 8, None, LIMIT, Instant::now());
    assert!(sent.refused.is_empty(), "refused: {:?}", sent.refused);
    let total = signed.iter().map(Vec::len).sum::<usize>();
    let deadline = Instant::now() + LIMIT;
    while applied(http) < total as u64 {
        assert!(Instant::now() < deadline, "the contracts were not applied within {LIMIT:?}");
        std::thread::sleep(Duration::from_millis(500));
    }
    let status = wait_status(http, LIMIT, |_| true);
    // One-contract bundles until the last seq is a multiple of EVERY.
    let mut last = status["last_seq"].as_u64().unwrap();
    let mut nonce = per_wallet as u64;
    while last % EVERY != 0 {
        nonce += 1;
        let action = json!({"action": "register_course", "course": {"id": format!("C{nonce}"), "name": "n", "department": "d"}});
        let token =
            swarmvm_token::sign_contract(&wallets[0], &network, nonce, &[action], now).unwrap();
        let one =
            submit(&[format!("http://{http}")], &[vec![token]], 1, None, LIMIT, Instant::now());
        assert!(one.refused.is_empty(), "refused: {:?}", one.refused);
        last += 1;
        wait_status(http, Duration::from_secs(60), |s| s["last_seq"] == last);
    }
    let status = wait_status(http, LIMIT, |s| s["snapshot"]["seq"] == last);
    let root = status["state_root"].as_str().unwrap().to_owned();
    let bundle_bytes: u64 = dir_size(&d.join("seq/bundles"));
    let snapshot_bytes =
        std::fs::metadata(d.join(format!("seq/snapshots/snapshot-{last}/state.svs")))
            .unwrap()
            .len();
    let state = swarmvm_test_support::load::run(
        Path::new(SWARMVM),
        d,
        &["ledger", "verify", "--data-dir", "seq", "--json"],
    );
    let state: Value = serde_json::from_str(&state).unwrap();
    let n_entries = state["report"]["entries"].as_u64().unwrap();
    seq.interrupt();
    seq.wait_event("stopped", Duration::from_secs(60));
    drop(seq);
    let build_s = built.elapsed().as_secs_f64();

    // The testbed: the sequencer, the snapshot joiner and the replaying joiner.
    let bed = Testbed::new("snap", &[MBIT, MBIT, MBIT]);
    let at = |i: usize| bed.peers[i].addr;
    let seq_http = format!("{}:8080", at(0));
    let _seq = spawn(
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
            "--snapshot-every",
            &EVERY.to_string(),
            "--no-dht",
            "--listen",
            &format!("{}:6881", at(0)),
            "--http",
            &seq_http,
        ],
    );
    let ready = |i: usize| {
        let deadline = Instant::now() + Duration::from_secs(30);
        while status_in(&bed, i, &format!("{}:8080", at(i))).is_none() {
            assert!(Instant::now() < deadline, "peer {i} does not answer");
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    ready(0);
    let mut rows = Vec::new();
    for (i, name, extra) in
        [(1, "from the snapshot", vec!["--from-snapshot"]), (2, "replaying every bundle", vec![])]
    {
        let data = format!("joiner{i}");
        let listen = format!("{}:6881", at(i));
        let api = format!("{}:8080", at(i));
        let follow = format!("http://{seq_http}");
        let mut args = vec![
            "node",
            "run",
            "--data-dir",
            &data,
            "--trust",
            "auth.pub",
            "--follow",
            &follow,
            "--poll",
            "200ms",
            "--no-dht",
            "--listen",
            &listen,
            "--http",
            &api,
        ];
        args.extend(extra.iter());
        let started = Instant::now();
        let joiner = spawn(&bed, i, d, &args);
        let pid = joiner.pid();
        let mut peak = 0;
        let status = loop {
            assert!(started.elapsed() < LIMIT, "{name}: not ready within {LIMIT:?}");
            peak = peak.max(proc_status_kib(pid, "VmHWM:"));
            if let Some(s) = status_in(&bed, i, &api)
                && s["last_seq"] == last
                && s["state_root"] == root.as_str()
            {
                break s;
            }
            std::thread::sleep(Duration::from_millis(250));
        };
        let took = started.elapsed().as_secs_f64();
        peak = peak.max(proc_status_kib(pid, "VmHWM:"));
        rows.push(format!(
            "| {name} | {took:.1} s | {:.0} MiB | {} |",
            peak as f64 / 1024.0,
            status["joined"]
        ));
        drop(joiner);
    }
    println!(
        "{n_entries} entries, {last} bundles ({:.0} MiB of bundles), snapshot {:.1} MiB at seq {last}; built in {build_s:.0} s; links {MBIT} Mbit/s",
        bundle_bytes as f64 / 1048576.0,
        snapshot_bytes as f64 / 1048576.0
    );
    println!();
    println!("| joiner | time to ready | peak memory (VmHWM) | status `joined` |");
    println!("| --- | --- | --- | --- |");
    for r in rows {
        println!("{r}");
    }
}

/// The contracts the sequencer applied so far (from its status).
fn applied(http: SocketAddr) -> u64 {
    let (_, log) = get(http, "/v1/log?from=1&limit=1000");
    log["log"].as_array().map_or(0, |l| l.iter().filter_map(|e| e["applied"].as_u64()).sum())
}

/// The sequencer on loopback, once it says it started.
fn sequencer(dir: &Path, extra: &[&str]) -> JsonProcess {
    let mut cmd = Command::new(SWARMVM);
    cmd.args(["node", "run", "--data-dir", "seq", "--trust", "auth.pub", "--sequencer"])
        .args(["--key", "auth.pem", "--cut-every", "250ms", "--cut-at", "50"])
        .args(["--max-queue", "1000000", "--snapshot-every", &EVERY.to_string(), "--no-dht"])
        .args(extra)
        .arg("--json")
        .current_dir(dir)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stderr(Stdio::inherit());
    let node = JsonProcess::spawn(cmd);
    node.wait_event("started", Duration::from_secs(60));
    node
}

/// `swarmvm ARGS --json` in peer `i`'s namespace.
fn spawn(bed: &Testbed, i: usize, dir: &Path, args: &[&str]) -> JsonProcess {
    bed.spawn_json(i, Path::new(SWARMVM), dir, args)
}

/// A node's status, read from inside peer `i`'s namespace.
fn status_in(bed: &Testbed, i: usize, api: &str) -> Option<Value> {
    bed.get_json(i, &format!("http://{api}/v1/status"))
}

fn dir_size(path: &Path) -> u64 {
    let Ok(list) = std::fs::read_dir(path) else { return 0 };
    list.flatten()
        .map(|e| {
            let m = e.metadata().unwrap();
            if m.is_dir() { dir_size(&e.path()) } else { m.len() }
        })
        .sum()
}
