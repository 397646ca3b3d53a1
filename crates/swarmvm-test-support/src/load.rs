//! A peer network under load, shared by the load test (CI) and the load benchmark: many
//! `swarmvm node run` processes on 127.0.0.1 that find each other through a local
//! opentracker and fetch and apply the same chain of bundles, and `wrk` against one node's
//! HTTP API.

use std::io::BufRead as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::http::get;
use crate::tools::{KillOnDrop, Tracker};

/// The bundles to build.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The `swarmvm` binary.
    pub bin: PathBuf,
    /// How many chained bundles.
    pub bundles: usize,
    /// Signed contracts per bundle.
    pub contracts: usize,
}

/// The authority's keys, the bundles, and the root each bundle leads to, in a temporary
/// folder.
#[derive(Debug)]
pub struct Bundles {
    dir: tempfile::TempDir,
    bin: PathBuf,
    /// The torrent files, seq 1 first.
    pub torrents: Vec<String>,
    /// Their info-hashes (hex).
    pub info_hashes: Vec<String>,
    /// The state root after each bundle, as an uninterrupted `node apply` computes it.
    pub roots: Vec<String>,
    /// Total size of the bundle folders.
    pub bytes: u64,
}

/// One running node.
#[derive(Debug)]
pub struct Node {
    child: KillOnDrop,
    /// Its HTTP API.
    pub http: SocketAddr,
}

impl Node {
    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.0.id()
    }

    /// Its peak resident set (`VmHWM`), in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        proc_status_kib(self.pid(), "VmHWM:")
    }
}

/// Spawns `BIN ARGS --json` in `dir` (logs off), waits (30 s at most) for its first line,
/// and keeps draining its output so it never blocks on a full pipe. Killed when dropped.
pub fn spawn_json(bin: &Path, dir: &Path, args: &[&str]) -> (KillOnDrop, Value) {
    let mut child = KillOnDrop(
        Command::new(bin)
            .args(args)
            .arg("--json")
            .current_dir(dir)
            .env("RUST_LOG", "error")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let stdout = child.0.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut reader = std::io::BufReader::new(stdout);
        let mut line = String::new();
        let _ = reader.read_line(&mut line);
        let _ = tx.send(line);
        let _ = std::io::copy(&mut reader, &mut std::io::sink());
    });
    let line = rx
        .recv_timeout(Duration::from_secs(30))
        .unwrap_or_else(|_| panic!("{args:?} printed nothing within 30 s"));
    let first = serde_json::from_str(line.trim())
        .unwrap_or_else(|_| panic!("{args:?} did not start: {line:?}"));
    (child, first)
}

/// Runs `BIN ARGS` in `dir`, asserts success and returns stdout.
pub fn run(bin: &Path, dir: &Path, args: &[&str]) -> String {
    let out = Command::new(bin).args(args).current_dir(dir).output().unwrap();
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// Writes, in `dir`, an authority (`auth.pem`, `auth.pub`), a new wallet at each of
/// `wallets`, and `tokens.txt`: the operations token for the note's four operations and a
/// wallets token for those wallets.
pub fn write_authority(bin: &Path, dir: &Path, wallets: &[&str]) {
    run(bin, dir, &["wallet", "new", "--out", "auth.pem"]);
    std::fs::write(dir.join("auth.pub"), run(bin, dir, &["wallet", "public", "auth.pem"])).unwrap();
    std::fs::write(dir.join("ops.json"), crate::NOTE_OPS).unwrap();
    let mut issue = vec!["token", "issue", "wallets", "--key", "auth.pem"];
    for w in wallets {
        run(bin, dir, &["wallet", "new", "--out", w]);
        issue.extend(["--wallet", w]);
    }
    let ops =
        run(bin, dir, &["token", "issue", "operations", "--key", "auth.pem", "--ops", "ops.json"]);
    let wallets = run(bin, dir, &issue);
    std::fs::write(dir.join("tokens.txt"), format!("{ops}{wallets}")).unwrap();
}

/// A field of `/proc/<pid>/status` in KiB (`VmHWM:`, `VmRSS:`).
pub fn proc_status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} for process {pid}"))
}

/// The tracker, the seeders and the nodes of one run; everything is killed when dropped.
#[derive(Debug)]
pub struct Network {
    /// The nodes, in start order.
    pub nodes: Vec<Node>,
    _seeders: Vec<KillOnDrop>,
    _tracker: Tracker,
}

impl Bundles {
    /// Makes an authority, two signing wallets, their registration tokens and a chain of
    /// `plan.bundles` bundles of `plan.contracts` contracts each (students, courses, votes
    /// and NFTs), and applies them once to learn the reference roots.
    pub fn create(plan: &Plan) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut b = Self {
            dir,
            bin: plan.bin.clone(),
            torrents: vec![],
            info_hashes: vec![],
            roots: vec![],
            bytes: 0,
        };
        write_authority(&b.bin, b.dir.path(), &["p1.pem", "p2.pem"]);
        let wallet = |name: &str| {
            swarmvm_wallet::read_key_file(&b.path(name), None).unwrap().0.into_wallet().unwrap()
        };
        let signers = [wallet("p1.pem"), wallet("p2.pem")];
        let network = swarmvm_wallet::read_key_file(&b.path("auth.pub"), None)
            .unwrap()
            .0
            .public_key()
            .id()
            .to_string();
        for seq in 1..=plan.bundles {
            let mut lines = String::new();
            for i in 0..plan.contracts {
                let n = (seq - 1) * plan.contracts + i;
                let signer = &signers[n % 2];
                let nonce = (n / 2 + 1) as u64;
                let action = match n % 4 {
                    0 => {
                        json!({"action": "register_student", "student": {"id": format!("S{n}"), "name": "Load Test", "department": "Networks"}})
                    }
                    1 => {
                        json!({"action": "add_course", "course": {"id": format!("C{n}"), "name": "Distributed Systems", "department": "Networks"}})
                    }
                    2 => {
                        json!({"action": "vote_proposal", "proposal": {"id": format!("P{n}"), "description": "More bandwidth"}})
                    }
                    _ => {
                        json!({"action": "generate_nft", "nft": {"id": format!("N{n}"), "name": "Badge", "metadata": {"n": n}}})
                    }
                };
                lines.push_str(
                    &swarmvm_token::sign_contract(signer, &network, nonce, &[action], 1).unwrap(),
                );
                lines.push('\n');
            }
            let contracts = format!("c{seq}.jsonl");
            std::fs::write(b.path(&contracts), lines).unwrap();
            let name = format!("b{seq}");
            let after = format!("b{}", seq - 1);
            let mut args = vec![
                "bundle",
                "create",
                &name,
                "--key",
                "auth.pem",
                "--contracts",
                &contracts,
                "--json",
            ];
            if seq == 1 {
                args.extend(["--tokens", "tokens.txt"]);
            } else {
                args.extend(["--after", &after]);
            }
            let created: Value = serde_json::from_str(&b.run(&args)).unwrap();
            b.info_hashes.push(created["info_hash"].as_str().unwrap().to_owned());
            b.torrents.push(format!("{name}.torrent"));
            for f in std::fs::read_dir(b.path(&name)).unwrap() {
                b.bytes += f.unwrap().metadata().unwrap().len();
            }
            b.run(&["node", "apply", &name, "--data-dir", "reference", "--trust", "auth.pub"]);
            b.roots.push(b.run(&["state", "root", "--data-dir", "reference"]).trim().to_owned());
        }
        b
    }

    /// The folder everything lives in.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn run(&self, args: &[&str]) -> String {
        run(&self.bin, self.dir.path(), args)
    }

    /// Starts a whitelisting opentracker for the bundles, one seeder per bundle, then
    /// `nodes` nodes that know the torrents (`--bundle`) and the tracker, nothing else.
    pub fn start(&self, nodes: usize) -> Network {
        let tracker = Tracker::start(&self.info_hashes);
        let url = tracker.announce_url();
        let mut seeders = Vec::new();
        for (i, t) in self.torrents.iter().enumerate() {
            let folder = format!("b{}", i + 1);
            let args = [
                "bundle",
                "seed",
                t,
                "--dir",
                &folder,
                "--no-dht",
                "--listen",
                "127.0.0.1:0",
                "--tracker",
                &url,
            ];
            seeders.push(spawn_json(&self.bin, self.dir.path(), &args).0);
        }
        let mut started = Vec::new();
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
                "--tracker",
                &url,
            ];
            for t in &self.torrents {
                args.extend(["--bundle", t]);
            }
            let (child, first) = spawn_json(&self.bin, self.dir.path(), &args);
            let http = first["http"].as_str().unwrap().parse().unwrap();
            started.push(Node { child, http });
        }
        Network { nodes: started, _seeders: seeders, _tracker: tracker }
    }
}

impl Network {
    /// Polls every node's `/v1/status` until each has applied `seq` (or `timeout` passes);
    /// returns each node's state root.
    pub fn wait_for_seq(&self, seq: usize, timeout: Duration) -> Result<Vec<String>, String> {
        let deadline = Instant::now() + timeout;
        let mut roots = Vec::new();
        for (i, node) in self.nodes.iter().enumerate() {
            loop {
                let (code, status) = get(node.http, "/v1/status");
                if code == 200 && status["last_seq"].as_u64() == Some(seq as u64) {
                    roots.push(status["state_root"].as_str().unwrap_or_default().to_owned());
                    break;
                }
                if Instant::now() > deadline {
                    return Err(format!(
                        "node {i} is at seq {} after {timeout:?}: {status}",
                        status["last_seq"]
                    ));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Ok(roots)
    }
}

/// What `wrk` measured.
#[derive(Debug, Clone, PartialEq)]
pub struct WrkReport {
    /// Requests completed.
    pub requests: u64,
    /// Requests per second.
    pub per_second: f64,
    /// Median latency, microseconds.
    pub p50_us: f64,
    /// 99th percentile latency, microseconds.
    pub p99_us: f64,
    /// Responses with a status other than 2xx or 3xx.
    pub non_2xx: u64,
    /// Connect, read, write and timeout errors.
    pub socket_errors: u64,
}

/// Runs `wrk -t THREADS -c CONNECTIONS -d SECONDS URL` and reads its figures through a Lua
/// `done` hook (machine-readable, unlike its text summary).
pub fn wrk(url: &str, threads: u32, connections: u32, seconds: u32) -> WrkReport {
    crate::require_program("wrk", "wrk");
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("report.lua");
    std::fs::write(
        &script,
        r#"done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("WRK %d %d %d %d %d %d %d %.1f %.1f\n",
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"#,
    )
    .unwrap();
    let out = Command::new("wrk")
        .args([
            "-t",
            &threads.to_string(),
            "-c",
            &connections.to_string(),
            "-d",
            &format!("{seconds}s"),
        ])
        .arg("-s")
        .arg(&script)
        .arg(url)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "wrk failed: {text} {}", String::from_utf8_lossy(&out.stderr));
    parse_wrk(&text).unwrap_or_else(|| panic!("no report in wrk's output: {text}"))
}

fn parse_wrk(text: &str) -> Option<WrkReport> {
    let line = text.lines().find_map(|l| l.strip_prefix("WRK "))?;
    let f: Vec<f64> = line.split_whitespace().map(|x| x.parse().ok()).collect::<Option<_>>()?;
    let [requests, duration_us, connect, read, write, status, timeout, p50, p99] = f[..] else {
        return None;
    };
    Some(WrkReport {
        requests: requests as u64,
        per_second: requests / (duration_us / 1e6),
        p50_us: p50,
        p99_us: p99,
        non_2xx: status as u64,
        socket_errors: (connect + read + write + timeout) as u64,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_the_report_line() {
        let r =
            super::parse_wrk("Running 1s test\nWRK 1000 2000000 0 1 0 3 0 120.0 900.5\n").unwrap();
        assert_eq!((r.requests, r.non_2xx, r.socket_errors), (1000, 3, 1));
        assert!((r.per_second - 500.0).abs() < 1e-9);
        assert_eq!((r.p50_us, r.p99_us), (120.0, 900.5));
        assert!(super::parse_wrk("no report").is_none());
    }
}
