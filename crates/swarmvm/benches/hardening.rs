//! Issue 25's findings 1, 2, 4, 6 and 7, shown through the CLI against a live network: real
//! `swarmvm node run` processes (the release binary) on 127.0.0.1, a sequencer and followers
//! started as the live bench starts them, driven over HTTP from this process. Prints markdown
//! for SECURITY.md, one row per figure; every wait is bounded.
//!
//! 1. **File descriptors after N bundles** (finding 1). A sequencer cutting every 20 ms and
//!    one follower; one contract at a time, each submitted once the one before is applied,
//!    so each makes one bundle, until the chain is N bundles long (`SWARMVM_HARDENING_BUNDLES`,
//!    1,000 unless set). The entries of `/proc/<pid>/fd` of both nodes at seq 1, N/4, N/2 and
//!    N (the follower's once it applied that seq), split into files, sockets and other. Before
//!    the fix a node held 786 after 255 bundles; now the count must stay flat.
//! 2. **Memory of the worst contract** (findings 2 and 4). A module that removes a new key on
//!    every turn of an endless loop, registered with 100,000,000 fuel an action, and one signed
//!    contract of 1,024 actions of it; then, on a fresh network, 8 distinct 256-page modules
//!    (300,000 fuel each) and one contract using each once. Each contract is submitted to the
//!    sequencer and followed until the sequencer reports it applied or rejected and the
//!    follower applied its bundle; the growth of each node's peak RSS (`VmHWM` in
//!    `/proc/<pid>/status`) over the run, and the outcome with its reason. Before the fix the
//!    first needed about 43 GB (42 MB an action) and the second held 900 MB.
//! 3. **Time for the worst module contract** (finding 4). A module of 256 pages that does
//!    nothing, registered with 300,000 fuel (its instance costs 10,000 + 256 × 1,024, and each
//!    further action a reset of 262,144), and one contract of 1,024 actions of it: the time
//!    from its submission until each node reports it applied or rejected. Before the fix it
//!    took 1.3 s on 2 fuel an action.
//! 4. **`/v1/status` latency under 64 long polls** (finding 6). A follower with the default
//!    `--max-connections` (256); 64 clients each holding `GET /v1/head?seq=S&iat=T&wait=25`
//!    (S and T the head it knows, so each waits), then 200 sequential `GET /v1/status`, each
//!    on a new connection: p50, p99 and errors, beside the same 200 without the polls. Before
//!    the fix 40 long polls made every other request fail with `--max-connections 40`.
//! 5. **Follower lag under a magnet flood** (finding 7). A sequencer cutting every 200 ms fed
//!    one contract every 200 ms for 20 s, one follower, and a client posting 8 dead magnets a
//!    second (random info-hashes) to the follower's `POST /v1/bundles`; the follower's
//!    `last_seq` behind the sequencer's, sampled every 100 ms: max and p50 in bundles, the
//!    flood's answer codes, and how long the follower took to catch up once it stopped.
//!    Before the fix the follower stayed 4–5 bundles behind.
//!
//! `cargo bench -p swarmvm --bench hardening`. `SWARMVM_HARDENING_BUNDLES` sets N for case 1;
//! `SWARMVM_HARDENING_ONLY` runs some cases only, by name: `fds,memory,time,polls,flood`.
#![allow(missing_docs, clippy::unwrap_used, clippy::print_stdout)]

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};
use swarmvm_test_support::live::{LiveNet, LiveOptions, Proc, quantile, wait_status};
use swarmvm_token::{IssueTime, Operation, Signer};
use swarmvm_vm::Hash32;

fn main() {
    let bundles: u64 = std::env::var("SWARMVM_HARDENING_BUNDLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000)
        .max(2);
    let only = std::env::var("SWARMVM_HARDENING_ONLY").unwrap_or_default();
    let runs = |name: &str| only.is_empty() || only.split(',').any(|n| n.trim() == name);
    let bin = Path::new(env!("CARGO_BIN_EXE_swarmvm"));
    println!("| measurement | figure | details |");
    println!("| --- | --- | --- |");
    if runs("fds") {
        descriptors(bin, bundles);
    }
    if runs("memory") {
        worst_memory(bin);
    }
    if runs("time") {
        worst_time(bin);
    }
    if runs("polls") {
        status_under_long_polls(bin);
    }
    if runs("flood") {
        lag_under_magnet_flood(bin);
    }
}

/// A sequencer cutting every `cut_every` and `followers` followers, with `wallets` registered
/// client wallets.
fn network(bin: &Path, followers: usize, wallets: usize, cut_every: &str) -> LiveNet {
    LiveNet::start(&LiveOptions {
        bin: bin.into(),
        followers,
        wallets,
        cut_every: cut_every.into(),
        cut_at: 1000,
    })
}

// ---------------------------------------------------------------------------------------------
// 1. File descriptors after N bundles.

fn descriptors(bin: &Path, bundles: u64) {
    let net = network(bin, 1, 1, "20ms");
    let sequencer = &net.sequencer;
    let follower = &net.followers[0];
    // Contract k (nonce k) makes bundle k + 1: N - 1 of them take the chain to N.
    let contracts = net.sign(bundles as usize).remove(0);
    let mut checkpoints = vec![1, bundles / 4, bundles / 2, bundles];
    checkpoints.retain(|c| *c >= 1);
    checkpoints.dedup();
    let start = Instant::now();
    let deadline = start + Duration::from_secs(1800);
    let mut next = contracts.iter();
    let mut seq = 1; // the registrations LiveNet::start submitted
    let mut rows: Vec<Checkpoint> = Vec::new();
    let mut stopped = None;
    'checkpoints: for &target in &checkpoints {
        while seq < target {
            if Instant::now() > deadline {
                stopped = Some(format!("stopped at seq {seq}: not done within 30 min"));
                break 'checkpoints;
            }
            let Some(contract) = next.next() else { break 'checkpoints };
            let id = match submit(sequencer.http, contract) {
                Ok(id) => id,
                Err(e) => {
                    stopped = Some(format!("stopped at seq {seq}: a contract was refused: {e}"));
                    break 'checkpoints;
                }
            };
            match settled(sequencer.http, &id, Duration::from_secs(60)) {
                Some(answer) => seq = answer["seq"].as_u64().unwrap_or(seq + 1),
                None => {
                    stopped = Some(format!("stopped at seq {seq}: a contract never applied"));
                    break 'checkpoints;
                }
            }
        }
        // The follower's count once it applied the same chain (it may lag the sequencer).
        let follower_behind = (!reached(follower.http, target, Duration::from_secs(300)))
            .then(|| last_seq(follower.http).unwrap_or(0));
        rows.push(Checkpoint {
            seq: target,
            sequencer: fds(sequencer.pid()),
            follower: fds(follower.pid()),
            follower_behind,
        });
    }
    let elapsed = start.elapsed().as_secs_f64();
    let Some(end) = rows.last() else { return };
    let series =
        |pick: fn(&Checkpoint) -> String| rows.iter().map(pick).collect::<Vec<_>>().join(" / ");
    let lagging: Vec<String> = rows
        .iter()
        .filter_map(|r| {
            r.follower_behind.map(|b| format!("at seq {} the follower had only {b}", r.seq))
        })
        .collect();
    println!(
        "| open file descriptors after {} bundles (`--cut-every 20ms`, one contract a bundle) | **sequencer {}, follower {}** | at seq {}: sequencer {}, follower {}; at seq {} the sequencer's are {} and the follower's {}; open-files limit {} (sequencer), {} (follower); {} bundles of one contract in {elapsed:.0} s{}{}; before the fix: 786 after 255 bundles |",
        end.seq,
        end.sequencer.total(),
        end.follower.total(),
        series(|r| r.seq.to_string()),
        series(|r| r.sequencer.total().to_string()),
        series(|r| r.follower.total().to_string()),
        end.seq,
        end.sequencer.split(),
        end.follower.split(),
        fd_limit(sequencer.pid()),
        fd_limit(follower.pid()),
        end.seq - 1,
        if lagging.is_empty() { String::new() } else { format!("; {}", lagging.join(", ")) },
        stopped.map(|s| format!("; {s}")).unwrap_or_default(),
    );
}

/// The descriptors of both nodes once the chain reached `seq`.
#[derive(Debug)]
struct Checkpoint {
    seq: u64,
    sequencer: Fds,
    follower: Fds,
    /// The follower's seq when it had not reached `seq` within 300 s.
    follower_behind: Option<u64>,
}

/// A process's open file descriptors, by kind.
#[derive(Debug, Default, Clone, Copy)]
struct Fds {
    /// Paths (files and folders).
    files: usize,
    sockets: usize,
    /// Pipes, eventfds, epoll and other anonymous inodes.
    other: usize,
}

impl Fds {
    fn total(self) -> usize {
        self.files + self.sockets + self.other
    }

    fn split(self) -> String {
        format!("{} files, {} sockets, {} other", self.files, self.sockets, self.other)
    }
}

/// The entries of `/proc/<pid>/fd`, by what they point at.
fn fds(pid: u32) -> Fds {
    let mut out = Fds::default();
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) else { return out };
    for entry in dir.flatten() {
        // An entry closed since the listing has no target: not counted.
        let Ok(target) = std::fs::read_link(entry.path()) else { continue };
        let target = target.to_string_lossy();
        if target.starts_with("socket:") {
            out.sockets += 1;
        } else if target.starts_with('/') {
            out.files += 1;
        } else {
            out.other += 1;
        }
    }
    out
}

/// The soft limit on open files of a process (`/proc/<pid>/limits`).
fn fd_limit(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/limits"))
        .ok()
        .and_then(|text| {
            let line = text.lines().find(|l| l.starts_with("Max open files"))?;
            line.split_whitespace().nth(3).map(str::to_owned)
        })
        .unwrap_or_else(|| "?".into())
}

// ---------------------------------------------------------------------------------------------
// 2. Memory of the worst contract.

/// Removes a new 4-byte key on every turn, for ever (the hostile catalogue's `removes`).
const REMOVES: &str = r#"(module (import "swarmvm" "remove" (func $r (param i32 i32))) (memory (export "memory") 1) (func (export "run") (result i32) (local $i i32) (loop $l (i32.store (i32.const 0) (local.get $i)) (call $r (i32.const 0) (i32.const 4)) (local.set $i (i32.add (local.get $i) (i32.const 1))) (br $l)) (i32.const 0)))"#;

/// 256 pages that it never touches (the hostile catalogue's `pages256`).
const PAGES256: &str =
    r#"(module (memory (export "memory") 256) (func (export "run") (result i32) (i32.const 0)))"#;

/// A 256-page module that does nothing, made distinct by `tag` (an unused function).
fn pages256_tagged(tag: usize) -> String {
    format!(
        r#"(module (memory (export "memory") 256) (func $tag (result i32) (i32.const {tag})) (func (export "run") (result i32) (i32.const 0)))"#
    )
}

/// `n` actions `{"action": name}`.
fn repeated(name: &str, n: usize) -> Vec<Value> {
    std::iter::repeat_n(json!({ "action": name }), n).collect()
}

fn wasm(text: &str) -> Vec<u8> {
    swarmvm_wasm::module_bytes(text.as_bytes()).unwrap()
}

fn worst_memory(bin: &Path) {
    memory_of(
        bin,
        "a contract of 1,024 actions of a `remove` loop (100,000,000 fuel an action)",
        &[("removes".to_owned(), wasm(REMOVES), 100_000_000)],
        &repeated("removes", 1024),
        "before the fix: about 42 MB an action, 43 GB for this contract",
    );
    let modules: Vec<(String, Vec<u8>, u64)> =
        (0..8).map(|i| (format!("pages{i}"), wasm(&pages256_tagged(i)), 300_000)).collect();
    let actions: Vec<Value> = (0..8).map(|i| json!({"action": format!("pages{i}")})).collect();
    memory_of(
        bin,
        "a contract using 8 distinct 256-page modules once each (300,000 fuel an action)",
        &modules,
        &actions,
        "before the fix: 900 MB held",
    );
}

/// On a fresh network (a sequencer and one follower), registers `modules` and runs one
/// contract of `actions`: the growth of each node's peak RSS, and the outcome.
fn memory_of(
    bin: &Path,
    what: &str,
    modules: &[(String, Vec<u8>, u64)],
    actions: &[Value],
    before_fix: &str,
) {
    let net = network(bin, 1, 1, "50ms");
    register_modules(&net, modules);
    let nodes = net.nodes();
    let before: Vec<u64> = nodes.iter().map(|n| status_kib(n.pid(), "VmHWM")).collect();
    let contract = swarmvm_token::sign_contract(
        &net.wallets[0],
        &net.network,
        1,
        actions,
        swarmvm_test_support::now(),
    )
    .unwrap();
    let outcome = run_contract(&nodes, &contract, Duration::from_secs(300));
    let after: Vec<u64> = nodes.iter().map(|n| status_kib(n.pid(), "VmHWM")).collect();
    let mb = |kib: u64| kib as f64 / 1024.0;
    let growth = |i: usize| mb(after[i].saturating_sub(before[i]));
    println!(
        "| peak memory of {what} | **sequencer +{:.1} MB, follower +{:.1} MB** | {}; peak RSS {:.0} → {:.0} MB (sequencer), {:.0} → {:.0} MB (follower); contract of {} bytes; {before_fix} |",
        growth(0),
        growth(1),
        outcome.describe(&nodes),
        mb(before[0]),
        mb(after[0]),
        mb(before[1]),
        mb(after[1]),
        contract.len(),
    );
}

/// A field of `/proc/<pid>/status` in KiB (`VmHWM`, `VmRSS`); 0 when unreadable.
fn status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|text| {
            text.lines().find_map(|l| {
                l.strip_prefix(field)?.strip_prefix(':')?.split_whitespace().next()?.parse().ok()
            })
        })
        .unwrap_or(0)
}

/// Registers each `(action, module, fuel)` in one operations token signed by the network's
/// authority (`POST /v1/registrations` to the sequencer, modules in base64), and waits until
/// every node applied the bundle that carries them.
fn register_modules(net: &LiveNet, modules: &[(String, Vec<u8>, u64)]) {
    let authority = net.authority();
    let ops: BTreeMap<String, Operation> = modules
        .iter()
        .map(|(action, bytes, fuel)| {
            (action.clone(), Operation::Wasm { module: Hash32::digest(bytes), fuel: *fuel })
        })
        .collect();
    let time = IssueTime { now: swarmvm_test_support::now(), ttl: 86_400 };
    let token = swarmvm_token::issue_operations(
        &Signer::Wallet(&authority),
        &ops,
        swarmvm_vm::HANDLER_NAMES,
        time,
    )
    .unwrap();
    let b64 = base64::engine::general_purpose::STANDARD;
    let encoded: Vec<String> = modules.iter().map(|(_, bytes, _)| b64.encode(bytes)).collect();
    let body = json!({ "tokens": [token], "modules": encoded }).to_string();
    let before = last_seq(net.sequencer.http).unwrap();
    let (code, answer) = swarmvm_test_support::http::request(
        net.sequencer.http,
        "POST",
        "/v1/registrations",
        Some(&body),
    );
    assert_eq!(code, 202, "the modules were not taken: {answer}");
    let status = wait_status(net.sequencer.http, Duration::from_secs(60), |s| {
        s["last_seq"].as_u64() > Some(before)
    });
    let seq = status["last_seq"].as_u64().unwrap();
    for f in &net.followers {
        wait_status(f.http, Duration::from_secs(120), |s| s["last_seq"].as_u64() >= Some(seq));
    }
}

/// What became of one contract on each node.
#[derive(Debug)]
struct Outcome {
    /// The sequencer's answer to the submission when it was not 202.
    refused: Option<String>,
    /// Its state on the sequencer (`applied`, `rejected`), with the reason.
    state: Option<String>,
    reason: Option<String>,
    /// When each node (the sequencer first) reported it applied or rejected, from the
    /// submission.
    at: Vec<Option<Duration>>,
}

impl Outcome {
    fn describe(&self, nodes: &[&Proc]) -> String {
        if let Some(refused) = &self.refused {
            return format!("refused when submitted: {refused}");
        }
        let mut out = match (&self.state, &self.reason) {
            (Some(state), Some(reason)) => format!("{state}: \"{reason}\""),
            (Some(state), None) => state.clone(),
            (None, _) => "never settled on the sequencer".into(),
        };
        for (i, node) in nodes.iter().enumerate() {
            let name = if i == 0 { "the sequencer".to_owned() } else { format!("follower {i}") };
            match self.at[i] {
                Some(at) => out.push_str(&format!("; {name} after {:.2} s", at.as_secs_f64())),
                None if alive(node.pid()) => out.push_str(&format!("; {name} never settled it")),
                None => out.push_str(&format!("; {name} died")),
            }
        }
        out
    }
}

/// Submits `contract` to the sequencer (`nodes[0]`) and polls `GET /v1/contracts/{id}` on
/// every node every 5 ms until each reports it applied or rejected, at most `limit`.
fn run_contract(nodes: &[&Proc], contract: &str, limit: Duration) -> Outcome {
    let mut outcome =
        Outcome { refused: None, state: None, reason: None, at: vec![None; nodes.len()] };
    let start = Instant::now();
    let id = match submit(nodes[0].http, contract) {
        Ok(id) => id,
        Err(e) => {
            outcome.refused = Some(e);
            return outcome;
        }
    };
    let path = format!("/v1/contracts/{id}");
    while outcome.at.iter().any(Option::is_none) && start.elapsed() < limit {
        for (i, node) in nodes.iter().enumerate() {
            if outcome.at[i].is_some() {
                continue;
            }
            let Ok((200, answer)) = call(node.http, "GET", &path, "", Duration::from_secs(10))
            else {
                continue;
            };
            if answer["state"] == "applied" || answer["state"] == "rejected" {
                outcome.at[i] = Some(start.elapsed());
                if i == 0 {
                    outcome.state = answer["state"].as_str().map(str::to_owned);
                    outcome.reason = answer["reason"].as_str().map(str::to_owned);
                }
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    outcome
}

/// True while the process runs (not a zombie).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            stat.rsplit_once(')').and_then(|(_, rest)| rest.trim_start().chars().next())
        })
        .is_some_and(|state| state != 'Z' && state != 'X')
}

// ---------------------------------------------------------------------------------------------
// 3. Time for the worst module contract.

fn worst_time(bin: &Path) {
    let net = network(bin, 1, 1, "20ms");
    register_modules(&net, &[("pages".to_owned(), wasm(PAGES256), 300_000)]);
    let nodes = net.nodes();
    let actions = repeated("pages", 1024);
    let contract = swarmvm_token::sign_contract(
        &net.wallets[0],
        &net.network,
        1,
        &actions,
        swarmvm_test_support::now(),
    )
    .unwrap();
    let outcome = run_contract(&nodes, &contract, Duration::from_secs(300));
    let everywhere = if outcome.at.iter().all(Option::is_some) {
        let max = outcome.at.iter().flatten().max().unwrap();
        format!("{:.2} s on every node", max.as_secs_f64())
    } else {
        "not settled on every node".into()
    };
    println!(
        "| submit → applied or rejected, one contract of 1,024 actions of a 256-page module (300,000 fuel an action, `--cut-every 20ms`) | **{} {everywhere}** | {}; before the fix: 1.3 s on 2 fuel an action |",
        outcome.state.as_deref().unwrap_or("refused or unsettled,"),
        outcome.describe(&nodes),
    );
}

// ---------------------------------------------------------------------------------------------
// 4. `/v1/status` latency under 64 long polls.

/// Long polls held at once against the follower.
const LONG_POLLS: usize = 64;

fn status_under_long_polls(bin: &Path) {
    let net = network(bin, 0, 1, "1s");
    let follower = net.start_follower(bin, "plain", &[]);
    let addr = follower.http;
    let quiet = status_latencies(addr, 200);
    let stop = Arc::new(AtomicBool::new(false));
    let waiting = Arc::new(AtomicUsize::new(0));
    let early = Arc::new(AtomicUsize::new(0));
    let streams: Arc<Mutex<Vec<TcpStream>>> = Arc::new(Mutex::new(Vec::new()));
    let answers: Arc<Mutex<BTreeMap<String, usize>>> = Arc::new(Mutex::new(BTreeMap::new()));
    let pollers: Vec<_> = (0..LONG_POLLS)
        .map(|_| {
            let (stop, waiting, early) = (stop.clone(), waiting.clone(), early.clone());
            let (streams, answers) = (streams.clone(), answers.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Acquire) {
                    let sent = Instant::now();
                    let answer = long_poll(addr, &streams, &stop, &waiting);
                    if stop.load(Ordering::Acquire) {
                        break;
                    }
                    let key = match answer {
                        Ok(code) => code.to_string(),
                        Err(e) => format!("no answer ({e})"),
                    };
                    *answers.lock().unwrap().entry(key).or_default() += 1;
                    if sent.elapsed() < Duration::from_secs(1) {
                        // Answered at once: not held (beyond the node's cap, or refused).
                        early.fetch_add(1, Ordering::AcqRel);
                        std::thread::sleep(Duration::from_secs(1));
                    }
                }
            })
        })
        .collect();
    // Let every poll connect and settle into its wait.
    std::thread::sleep(Duration::from_secs(2));
    let held_before = waiting.load(Ordering::Acquire);
    let loaded = status_latencies(addr, 200);
    let held_after = waiting.load(Ordering::Acquire);
    stop.store(true, Ordering::Release);
    for s in streams.lock().unwrap().iter() {
        let _ = s.shutdown(Shutdown::Both);
    }
    for p in pollers {
        let _ = p.join();
    }
    let answers = answers.lock().unwrap().clone();
    println!(
        "| `GET /v1/status` on a follower (default `--max-connections` 256) while {LONG_POLLS} `GET /v1/head?wait=25` wait | **p50 {:.1} ms, p99 {:.1} ms, {} errors** of {} | long polls waiting: {held_before} before the 200 requests, {held_after} after; {} answered within 1 s (answers while measuring: {answers:?}); max {:.1} ms; without the polls p50 {:.1} ms, p99 {:.1} ms, {} errors; before the fix, with `--max-connections 40`, 40 long polls made every other request fail |",
        loaded.p50_ms(),
        loaded.p99_ms(),
        loaded.errors,
        loaded.count(),
        early.load(Ordering::Acquire),
        loaded.max_ms(),
        quiet.p50_ms(),
        quiet.p99_ms(),
        quiet.errors,
    );
}

/// One long poll for a head newer than the one the follower knows: its status code when
/// answered. Its connection is listed in `streams` (to be shut when the measurement ends);
/// `waiting` counts it while it waits for the answer.
fn long_poll(
    addr: SocketAddr,
    streams: &Mutex<Vec<TcpStream>>,
    stop: &AtomicBool,
    waiting: &AtomicUsize,
) -> Result<u16, String> {
    let (_, status) = call(addr, "GET", "/v1/status", "", Duration::from_secs(10))?;
    let seq = status["head"]["seq"].as_u64().unwrap_or(0);
    let iat = status["head"]["issued_at"].as_u64().unwrap_or(0);
    let mut stream =
        TcpStream::connect_timeout(&addr, Duration::from_secs(10)).map_err(|e| e.to_string())?;
    stream.set_read_timeout(Some(Duration::from_secs(30))).map_err(|e| e.to_string())?;
    streams.lock().unwrap().push(stream.try_clone().map_err(|e| e.to_string())?);
    if stop.load(Ordering::Acquire) {
        return Err("stopped".into());
    }
    let request = format!(
        "GET /v1/head?seq={seq}&iat={iat}&wait=25 HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).map_err(|e| e.to_string())?;
    waiting.fetch_add(1, Ordering::AcqRel);
    let mut raw = Vec::new();
    let read = stream.read_to_end(&mut raw);
    waiting.fetch_sub(1, Ordering::AcqRel);
    if raw.starts_with(b"HTTP/") {
        return Ok(swarmvm_test_support::http::parse_response(&raw).status);
    }
    Err(read.err().map_or_else(|| "closed without an answer".into(), |e| e.to_string()))
}

/// Latencies of sequential requests, in seconds, sorted, and the requests that failed.
#[derive(Debug, Default)]
struct Latencies {
    sorted: Vec<f64>,
    errors: usize,
}

impl Latencies {
    fn count(&self) -> usize {
        self.sorted.len() + self.errors
    }

    fn p50_ms(&self) -> f64 {
        quantile(&self.sorted, 0.5) * 1000.0
    }

    fn p99_ms(&self) -> f64 {
        quantile(&self.sorted, 0.99) * 1000.0
    }

    fn max_ms(&self) -> f64 {
        self.sorted.last().copied().unwrap_or(f64::NAN) * 1000.0
    }
}

/// `n` sequential `GET /v1/status`, each on a new connection: the latencies of those answered
/// 200 within 10 s, and the count of the others.
fn status_latencies(addr: SocketAddr, n: usize) -> Latencies {
    let mut out = Latencies::default();
    for _ in 0..n {
        let start = Instant::now();
        match call(addr, "GET", "/v1/status", "", Duration::from_secs(10)) {
            Ok((200, _)) => out.sorted.push(start.elapsed().as_secs_f64()),
            _ => out.errors += 1,
        }
    }
    out.sorted.sort_by(f64::total_cmp);
    out
}

// ---------------------------------------------------------------------------------------------
// 5. Follower lag under a magnet flood.

/// How long contracts and the flood run.
const FLOOD_SECONDS: u64 = 20;

fn lag_under_magnet_flood(bin: &Path) {
    let net = network(bin, 1, 1, "200ms");
    let sequencer = net.sequencer.http;
    let follower = net.followers[0].http;
    let contracts = net.sign((FLOOD_SECONDS * 5 + 10) as usize).remove(0);
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let first_seq = last_seq(sequencer).unwrap_or(1);
    // One contract every 200 ms, in nonce order (a refusal ends the wallet's run).
    let submitter = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut codes: BTreeMap<u16, usize> = BTreeMap::new();
            for (k, contract) in contracts.iter().enumerate() {
                sleep_until(start + Duration::from_millis(200 * k as u64));
                if stop.load(Ordering::Acquire) {
                    break;
                }
                let code =
                    call(sequencer, "POST", "/v1/contracts", contract, Duration::from_secs(10))
                        .map_or(0, |(code, _)| code);
                *codes.entry(code).or_default() += 1;
                if code != 202 {
                    break;
                }
            }
            codes
        })
    };
    // Eight dead magnets a second to the follower, each naming a tracker that takes the
    // connection and never answers (a listener nobody accepts on), so that each stays
    // resolving until the node gives it up, as the review's did.
    let tarpit = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let tracker = format!("http://{}/announce", tarpit.local_addr().unwrap());
    let flood = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut codes: BTreeMap<u16, usize> = BTreeMap::new();
            let mut rng = XorShift::seeded();
            for k in 0u64.. {
                sleep_until(start + Duration::from_millis(125 * k));
                if stop.load(Ordering::Acquire) {
                    break;
                }
                let magnet = format!("magnet:?xt=urn:btih:{}&tr={tracker}", rng.hex40());
                let body = json!({ "magnet": magnet });
                let code = call(
                    follower,
                    "POST",
                    "/v1/bundles",
                    &body.to_string(),
                    Duration::from_secs(10),
                )
                .map_or(0, |(code, _)| code);
                *codes.entry(code).or_default() += 1;
            }
            codes
        })
    };
    let mut lags: Vec<f64> = Vec::new();
    let mut unanswered = 0;
    for k in 1.. {
        let due = start + Duration::from_millis(100 * k);
        if due > start + Duration::from_secs(FLOOD_SECONDS) {
            break;
        }
        sleep_until(due);
        match (last_seq(sequencer), last_seq(follower)) {
            (Some(s), Some(f)) => lags.push(s.saturating_sub(f) as f64),
            _ => unanswered += 1,
        }
    }
    stop.store(true, Ordering::Release);
    let submitted = submitter.join().unwrap();
    let flooded = flood.join().unwrap();
    drop(tarpit);
    let end_seq = last_seq(sequencer).unwrap_or(0);
    let stopped = Instant::now();
    let caught_up = reached(follower, end_seq, Duration::from_secs(120))
        .then(|| stopped.elapsed().as_secs_f64());
    lags.sort_by(f64::total_cmp);
    let magnets: usize = flooded.values().sum();
    println!(
        "| follower lag behind the sequencer (`--cut-every 200ms`, a contract every 200 ms for {FLOOD_SECONDS} s) under 8 dead magnets a second posted to the follower | **max {:.0}, p50 {:.0} bundles** | {} samples every 100 ms ({unanswered} unanswered); flood answers {flooded:?} for {magnets} magnets; contract answers {submitted:?}; {} bundles cut; the follower {}; before the fix: 4–5 bundles behind |",
        lags.last().copied().unwrap_or(f64::NAN),
        quantile(&lags, 0.5),
        lags.len(),
        end_seq.saturating_sub(first_seq),
        caught_up.map_or_else(
            || format!("had not caught up (seq {end_seq}) 120 s after"),
            |s| format!("reached the sequencer's seq {end_seq} {s:.2} s after the flood ended"),
        ),
    );
}

/// A xorshift64 generator seeded from the clock: random info-hashes.
struct XorShift(u64);

impl XorShift {
    fn seeded() -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64);
        Self(nanos | 1)
    }

    fn step(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// 40 hex characters (20 random bytes).
    fn hex40(&mut self) -> String {
        let (a, b, c) = (self.step(), self.step(), self.step());
        format!("{a:016x}{b:016x}{:08x}", c & 0xffff_ffff)
    }
}

fn sleep_until(due: Instant) {
    let now = Instant::now();
    if due > now {
        std::thread::sleep(due - now);
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP.

/// One request on a new connection (`Connection: close`), each step bounded by `timeout`:
/// the status and the body as JSON (`Null` when it is not), or why nothing was answered.
/// Unlike the test-support client it never panics or retries: failures are counted.
fn call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &str,
    timeout: Duration,
) -> Result<(u16, Value), String> {
    let mut stream = TcpStream::connect_timeout(&addr, timeout).map_err(|e| e.to_string())?;
    stream.set_read_timeout(Some(timeout)).map_err(|e| e.to_string())?;
    stream.set_write_timeout(Some(timeout)).map_err(|e| e.to_string())?;
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    let read = stream.read_to_end(&mut raw);
    if raw.starts_with(b"HTTP/") {
        let response = swarmvm_test_support::http::parse_response(&raw);
        return Ok((response.status, response.json));
    }
    Err(read.err().map_or_else(|| "closed without an answer".into(), |e| e.to_string()))
}

/// Submits a contract: its id when accepted (202), else the answer.
fn submit(addr: SocketAddr, contract: &str) -> Result<String, String> {
    match call(addr, "POST", "/v1/contracts", contract, Duration::from_secs(30))? {
        (202, answer) => answer["id"].as_str().map(str::to_owned).ok_or_else(|| answer.to_string()),
        (code, answer) => Err(format!("{code} {answer}")),
    }
}

/// Polls `GET /v1/contracts/{id}` every 5 ms until the contract is applied or rejected, at
/// most `limit`: the last answer, or `None` if it never was.
fn settled(addr: SocketAddr, id: &str, limit: Duration) -> Option<Value> {
    let deadline = Instant::now() + limit;
    let path = format!("/v1/contracts/{id}");
    while Instant::now() < deadline {
        if let Ok((200, answer)) = call(addr, "GET", &path, "", Duration::from_secs(10))
            && (answer["state"] == "applied" || answer["state"] == "rejected")
        {
            return Some(answer);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    None
}

/// A node's `last_seq`, when it answers.
fn last_seq(addr: SocketAddr) -> Option<u64> {
    match call(addr, "GET", "/v1/status", "", Duration::from_secs(10)) {
        Ok((200, status)) => status["last_seq"].as_u64(),
        _ => None,
    }
}

/// Waits (at most `limit`, polling every 20 ms) until the node applied `seq`.
fn reached(addr: SocketAddr, seq: u64, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if last_seq(addr).is_some_and(|s| s >= seq) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
