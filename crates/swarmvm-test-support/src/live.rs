//! A live network under load, shared by the load test (CI) and the benchmark: a sequencer and
//! followers, each a `swarmvm node run` process on 127.0.0.1, and clients submitting signed
//! contracts to them over HTTP (keep-alive connections, each wallet's contracts in nonce
//! order), either as fast as the network takes them or at a paced rate. Every node's
//! progress is sampled, so that each contract's submit-to-applied-on-every-node latency is
//! known, and the totals prove nothing was lost or applied twice.

use std::collections::BTreeMap;
use std::io::BufRead as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use swarmvm_token::{IssueTime, Signer, WalletEntry, issue_operations, issue_wallets};
use swarmvm_wallet::{Algorithm, Wallet};

use crate::http::get;
use crate::tools::KillOnDrop;

/// One `node run` process.
#[derive(Debug)]
pub struct Proc {
    pub(crate) child: KillOnDrop,
    /// Its HTTP API.
    pub http: SocketAddr,
}

impl Proc {
    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.0.id()
    }

    /// CPU seconds it used so far (user and system, from `/proc`).
    pub fn cpu_seconds(&self) -> f64 {
        cpu_seconds(self.pid())
    }
}

/// CPU seconds (user + system) of a process so far.
pub fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return 0.0 };
    let Some((_, rest)) = stat.rsplit_once(')') else { return 0.0 };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of the line (11 and 12 after the name).
    (ticks(11) + ticks(12)) / 100.0
}

/// A sequencer and its followers.
#[derive(Debug)]
pub struct LiveNet {
    dir: tempfile::TempDir,
    /// The network's id.
    pub network: String,
    /// The wallets clients sign with.
    pub wallets: Vec<Wallet>,
    /// The sequencer.
    pub sequencer: Proc,
    /// The followers (each follows the sequencer).
    pub followers: Vec<Proc>,
}

/// How the network runs.
#[derive(Debug, Clone)]
pub struct LiveOptions {
    /// The `swarmvm` binary.
    pub bin: PathBuf,
    /// Followers of the sequencer.
    pub followers: usize,
    /// Registered client wallets.
    pub wallets: usize,
    /// `--cut-every`.
    pub cut_every: String,
    /// `--cut-at`.
    pub cut_at: usize,
}

/// Starts `swarmvm node run` with `args` in `dir`, serving HTTP on `http` (`127.0.0.1:0` for
/// any port), and waits for its first line.
pub fn spawn_node(bin: &Path, dir: &Path, http: &str, args: &[String]) -> Proc {
    let mut child = Command::new(bin)
        .args(["node", "run", "--no-dht", "--listen", "127.0.0.1:0", "--http", http])
        .args(args)
        .arg("--json")
        .current_dir(dir)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("cannot start swarmvm node run");
    let stdout = child.stdout.take().unwrap();
    let child = KillOnDrop(child);
    let mut line = String::new();
    std::io::BufReader::new(stdout).read_line(&mut line).unwrap();
    let first: Value = serde_json::from_str(line.trim())
        .unwrap_or_else(|_| panic!("node run {args:?} did not start: {line:?}"));
    let http = first["http"].as_str().unwrap().parse().unwrap();
    Proc { child, http }
}

/// Waits (bounded by `limit`) until `ok` holds for the node's status.
pub fn wait_status(http: SocketAddr, limit: Duration, ok: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + limit;
    loop {
        let (code, status) = get(http, "/v1/status");
        if code == 200 && ok(&status) {
            return status;
        }
        assert!(Instant::now() < deadline, "the node at {http} never got there: {status}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A network in `dir`: an authority (`auth.pem`, `auth.pub`), `wallets` client wallets, and
/// the registration tokens of the note's operations and of those wallets (`client0`, ...).
pub fn write_network(dir: &Path, wallets: usize) -> (Wallet, Vec<Wallet>, Vec<String>) {
    let authority = Wallet::generate(Algorithm::Ed25519).unwrap();
    swarmvm_wallet::write_key_file(&dir.join("auth.pem"), &authority, None, false).unwrap();
    std::fs::write(dir.join("auth.pub"), authority.public_key().to_spki_pem()).unwrap();
    let wallets: Vec<Wallet> =
        (0..wallets).map(|_| Wallet::generate(Algorithm::Ed25519).unwrap()).collect();
    let time = IssueTime { now: crate::now(), ttl: 86_400 };
    let signer = Signer::Wallet(&authority);
    let ops: BTreeMap<String, swarmvm_token::Operation> =
        swarmvm_vm::HANDLER_NAMES.iter().map(|h| ((*h).to_owned(), (*h).into())).collect();
    let entries: Vec<WalletEntry> = wallets
        .iter()
        .enumerate()
        .map(|(i, w)| WalletEntry { label: format!("client{i}"), key: w.public_key().clone() })
        .collect();
    let tokens = vec![
        issue_operations(&signer, &ops, swarmvm_vm::HANDLER_NAMES, time).unwrap(),
        issue_wallets(&signer, &entries, time).unwrap(),
    ];
    (authority, wallets, tokens)
}

impl LiveNet {
    /// Starts the sequencer, submits the registrations (the note's operations and the
    /// wallets) and waits for their cut, then starts the followers and waits until they
    /// applied it.
    pub fn start(options: &LiveOptions) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (authority, wallets, tokens) = write_network(dir.path(), options.wallets);
        let sequencer = spawn_node(
            &options.bin,
            dir.path(),
            "127.0.0.1:0",
            &[
                "--data-dir".into(),
                "sequencer".into(),
                "--trust".into(),
                "auth.pub".into(),
                "--sequencer".into(),
                "--key".into(),
                "auth.pem".into(),
                "--cut-every".into(),
                options.cut_every.clone(),
                "--cut-at".into(),
                options.cut_at.to_string(),
                "--max-queue".into(),
                "1000000".into(),
                "--max-connections".into(),
                "1024".into(),
            ],
        );
        let body = json!({ "tokens": tokens }).to_string();
        let (code, answer) =
            crate::http::request(sequencer.http, "POST", "/v1/registrations", Some(&body));
        assert_eq!(code, 202, "{answer}");
        wait_status(sequencer.http, Duration::from_secs(60), |s| s["last_seq"] == 1);
        let url = format!("http://{}", sequencer.http);
        let followers: Vec<Proc> = (0..options.followers)
            .map(|i| {
                spawn_node(
                    &options.bin,
                    dir.path(),
                    "127.0.0.1:0",
                    &[
                        "--data-dir".into(),
                        format!("follower{i}"),
                        "--trust".into(),
                        "auth.pub".into(),
                        "--follow".into(),
                        url.clone(),
                        "--poll".into(),
                        "200ms".into(),
                        "--max-connections".into(),
                        "1024".into(),
                    ],
                )
            })
            .collect();
        for f in &followers {
            wait_status(f.http, Duration::from_secs(60), |s| s["last_seq"] == 1);
        }
        Self { dir, network: authority.id().to_string(), wallets, sequencer, followers }
    }

    /// Every node: the sequencer first.
    pub fn nodes(&self) -> Vec<&Proc> {
        std::iter::once(&self.sequencer).chain(&self.followers).collect()
    }

    /// The folder the nodes run in.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The network's authority (the key the sequencer signs with), to sign registrations.
    pub fn authority(&self) -> Wallet {
        let (key, _) =
            swarmvm_wallet::read_key_file(&self.dir.path().join("auth.pem"), None).unwrap();
        match key {
            swarmvm_wallet::KeyMaterial::Private(wallet) => wallet,
            swarmvm_wallet::KeyMaterial::Public(_) => panic!("auth.pem holds no private key"),
        }
    }

    /// Starts one more follower of the sequencer, with its data in folder `name` (`--follow`
    /// the sequencer, `--poll 200ms`, and `extra`; every other flag at its default, unlike
    /// [`LiveNet::start`]'s followers), and waits until it applied the sequencer's last bundle.
    /// `bin` is the `swarmvm` binary.
    pub fn start_follower(&self, bin: &Path, name: &str, extra: &[String]) -> Proc {
        let mut args: Vec<String> = vec![
            "--data-dir".into(),
            name.into(),
            "--trust".into(),
            "auth.pub".into(),
            "--follow".into(),
            format!("http://{}", self.sequencer.http),
            "--poll".into(),
            "200ms".into(),
        ];
        args.extend_from_slice(extra);
        let follower = spawn_node(bin, self.dir.path(), "127.0.0.1:0", &args);
        let (_, status) = get(self.sequencer.http, "/v1/status");
        let last = status["last_seq"].as_u64().unwrap_or(0);
        wait_status(follower.http, Duration::from_secs(60), |s| {
            s["last_seq"].as_u64() >= Some(last)
        });
        follower
    }

    /// Waits (at most ten minutes) until the sequencer's queue is empty and every node
    /// applied its last bundle, then checks that every node holds exactly the `accepted`
    /// contracts of `contracts` (its log counts as many, and each wallet's nonce is the
    /// number of its contracts accepted): nothing lost, nothing applied twice. Returns the
    /// last seq.
    pub fn settle(&self, contracts: &[Vec<String>], accepted: &[String]) -> u64 {
        let deadline = Instant::now() + Duration::from_secs(600);
        let last = loop {
            let (_, s) = get(self.sequencer.http, "/v1/status");
            if s["sequencer"]["queued"] == 0 {
                break s["last_seq"].as_u64().unwrap();
            }
            assert!(Instant::now() < deadline, "the queue never drained: {s}");
            std::thread::sleep(Duration::from_millis(50));
        };
        let mut roots = Vec::new();
        for node in self.nodes() {
            let status = wait_status(node.http, Duration::from_secs(600), |s| {
                s["last_seq"].as_u64() >= Some(last)
            });
            roots.push(status["state_root"].clone());
            let mut count = 0;
            let mut from = 1;
            loop {
                let (_, log) = get(node.http, &format!("/v1/log?from={from}&limit=10000"));
                let entries = log["log"].as_array().cloned().unwrap_or_default();
                if entries.is_empty() {
                    break;
                }
                for e in &entries {
                    count += e["contracts"].as_u64().unwrap() as usize;
                    from = e["position"].as_u64().unwrap() + 1;
                }
            }
            assert_eq!(
                count,
                accepted.len(),
                "node {} holds another count of contracts",
                node.http
            );
        }
        assert!(roots.iter().all(|r| *r == roots[0]), "the nodes' roots differ: {roots:?}");
        let index: std::collections::HashMap<String, usize> = contracts
            .iter()
            .enumerate()
            .flat_map(|(w, list)| {
                list.iter().map(move |c| (swarmvm_vm::Hash32::digest(c.as_bytes()).to_hex(), w))
            })
            .collect();
        let mut counts = vec![0u64; self.wallets.len()];
        for id in accepted {
            counts[index[id]] += 1;
        }
        let follower = self.followers.first().unwrap_or(&self.sequencer).http;
        for (w, wallet) in self.wallets.iter().enumerate() {
            let (_, v) = get(follower, &format!("/v1/wallets/{}", wallet.id()));
            assert_eq!(v["nonce"].as_u64(), Some(counts[w]), "wallet {w}: {v}");
        }
        last
    }

    /// `per_wallet` contracts for each wallet (nonces 1 up), each registering a student,
    /// signed on every core: `[wallet][nonce - 1]`.
    pub fn sign(&self, per_wallet: usize) -> Vec<Vec<String>> {
        sign_for(&self.network, &self.wallets, per_wallet)
    }
}

/// `per_wallet` contracts of network `network` for each of `wallets` (nonces 1 up), each
/// registering a student, signed on every core: `[wallet][nonce - 1]`.
pub fn sign_for(network: &str, wallets: &[Wallet], per_wallet: usize) -> Vec<Vec<String>> {
    let now = crate::now();
    std::thread::scope(|scope| {
        let handles: Vec<_> = wallets
            .iter()
            .enumerate()
            .map(|(w, wallet)| {
                scope.spawn(move || {
                    (1..=per_wallet as u64)
                        .map(|nonce| {
                            let action = json!({"action": "register_student", "student": {
                                "id": format!("S{w}-{nonce}"), "name": "n", "department": "d"}});
                            swarmvm_token::sign_contract(wallet, network, nonce, &[action], now)
                                .unwrap()
                        })
                        .collect::<Vec<String>>()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

/// One contract accepted (202).
#[derive(Debug, Clone)]
pub struct Accepted {
    /// Its id.
    pub id: String,
    /// When it was sent, from the start of the run.
    pub sent: Duration,
}

/// What the clients did.
#[derive(Debug, Default)]
pub struct Submitted {
    /// Accepted contracts.
    pub accepted: Vec<Accepted>,
    /// Answers other than 202, by status (0: no answer).
    pub refused: BTreeMap<u16, usize>,
    /// How long the clients submitted.
    pub elapsed: Duration,
}

/// When each node first reported each seq applied, from the start of the run (sampled every
/// 10 ms by a background thread until stopped).
#[derive(Debug, Clone, Default)]
pub struct Progress {
    /// `[node][seq]` → first time seen.
    pub applied_at: Vec<BTreeMap<u64, Duration>>,
}

/// Samples every node's `last_seq` every 10 ms from `start` until `stop` is set.
pub fn sample(
    nodes: Vec<SocketAddr>,
    start: Instant,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<Progress> {
    std::thread::spawn(move || {
        let mut progress = Progress { applied_at: vec![BTreeMap::new(); nodes.len()] };
        let mut last = vec![0u64; nodes.len()];
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            for (i, node) in nodes.iter().enumerate() {
                let (code, status) = get(*node, "/v1/status");
                if code != 200 {
                    continue;
                }
                let seq = status["last_seq"].as_u64().unwrap_or(0);
                let at = start.elapsed();
                for s in (last[i] + 1)..=seq {
                    progress.applied_at[i].insert(s, at);
                }
                last[i] = last[i].max(seq);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        progress
    })
}

/// Submits `contracts[wallet][nonce-1]` through the nodes at `urls`, each wallet's in nonce
/// order from one client task, `tasks` tasks (wallet `w` goes to node `w % urls.len()`).
/// With `rate`, contracts are sent at that many per second in all (contract `k` at `k/rate`
/// seconds, round-robin over the wallets); without, as fast as they are accepted. Stops
/// sending after `limit`.
pub fn submit(
    urls: &[String],
    contracts: &[Vec<String>],
    tasks: usize,
    rate: Option<f64>,
    limit: Duration,
    start: Instant,
) -> Submitted {
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let wallets = contracts.len();
    let per_wallet = contracts.first().map_or(0, Vec::len);
    let result = Arc::new(Mutex::new(Submitted::default()));
    runtime.block_on(async {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(tasks)
            .timeout(Duration::from_secs(30))
            .no_proxy()
            .build()
            .unwrap();
        let mut handles = Vec::new();
        for t in 0..tasks {
            // Task t sends, in global order k = nonce_index * wallets + w, the contracts of
            // the wallets w with w % tasks == t.
            let mine: Vec<(usize, usize, String)> = (0..per_wallet)
                .flat_map(|n| (0..wallets).map(move |w| (n, w)))
                .enumerate()
                .filter(|(_, (_, w))| w % tasks == t)
                .map(|(k, (n, w))| (k, w, contracts[w][n].clone()))
                .collect();
            let client = client.clone();
            let urls = urls.to_vec();
            let result = result.clone();
            handles.push(tokio::spawn(async move {
                for (k, w, token) in mine {
                    if let Some(rate) = rate {
                        let due = start + Duration::from_secs_f64(k as f64 / rate);
                        tokio::time::sleep_until(due.into()).await;
                    }
                    if start.elapsed() >= limit {
                        break;
                    }
                    let url = format!("{}/v1/contracts", urls[w % urls.len()]);
                    let sent = start.elapsed();
                    let answer = client
                        .post(&url)
                        .header("content-type", "application/jose")
                        .body(token.clone())
                        .send()
                        .await;
                    let status = match answer {
                        Ok(r) => {
                            let s = r.status().as_u16();
                            let _ = r.bytes().await;
                            s
                        }
                        Err(_) => 0,
                    };
                    let mut out = result.lock().unwrap();
                    if status == 202 {
                        let id = swarmvm_vm::Hash32::digest(token.as_bytes()).to_hex();
                        out.accepted.push(Accepted { id, sent });
                    } else {
                        *out.refused.entry(status).or_default() += 1;
                        // The wallet's later contracts would be refused as out of order.
                        break;
                    }
                }
            }));
        }
        for h in handles {
            let _ = h.await;
        }
    });
    let mut out = std::mem::take(&mut *result.lock().unwrap());
    out.elapsed = start.elapsed();
    out
}

/// Each accepted contract's bundle seq, asked of the sequencer (`GET /v1/contracts/{id}`).
pub fn seqs_of(sequencer: SocketAddr, ids: &[String]) -> Vec<Option<u64>> {
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async {
        let client = reqwest::Client::builder().no_proxy().build().unwrap();
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(256) {
            let futures = chunk.iter().map(|id| {
                let client = client.clone();
                let url = format!("http://{sequencer}/v1/contracts/{id}");
                async move {
                    let r = client.get(&url).send().await.ok()?;
                    let v: Value = r.json().await.ok()?;
                    (v["state"] == "applied").then(|| v["seq"].as_u64()).flatten()
                }
            });
            let mut handles = Vec::new();
            for f in futures {
                handles.push(tokio::spawn(f));
            }
            for h in handles {
                out.push(h.await.ok().flatten());
            }
        }
        out
    })
}

/// The `q`-quantile (0 to 1) of sorted `values`.
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[i]
}
