//! The explorer page in Debian's chromium, driven by playwright-core (`tests/browser/`),
//! against real `node run` processes: every node's page shows the state with the same root,
//! a hostile name renders as text, a rejected contract shows its reason, a bundle fetched
//! while the page is open shows progress and then applied without a reload, and the page
//! makes no request outside the node and logs no error. Screenshots of every view land in
//! `target/explorer-screenshots/`. Against a sequencer, the page verifies an entry's proof
//! and signed head in the browser, refuses a changed value or head, and says when the
//! browser cannot check Ed25519. Against authority replicas, every replica's overview shows
//! its role, the same leader and each member's last signed seq, before and after a SIGKILL.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::json;
use swarmvm_test_support::require_program;
use swarmvm_wallet::Algorithm;

use crate::node::{http_of, wait_status};
use crate::support::{Daemon, Env, NOTE_OPS};

/// A student name that would run script if the page ever treated text as markup.
const XSS: &str = "<img src=x onerror=alert(1)>";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

/// `tests/browser` with its npm packages installed (by `make test-deps`).
fn browser_tests() -> PathBuf {
    let dir = repo_root().join("tests/browser");
    assert!(
        dir.join("node_modules/playwright-core").is_dir(),
        "playwright-core is not installed in {}; run `make test-deps` (npm ci there)",
        dir.display()
    );
    require_program("node", "nodejs");
    require_program("chromium", "chromium");
    dir
}

/// Runs the Node.js script `script` of `tests/browser` with `vars` in its environment; it
/// must exit 0 and print `done` (its last check). Its report is printed, as a test's output.
#[allow(clippy::print_stdout)]
fn run_script(browser: &Path, script: &str, vars: &[(&str, &str)], done: &str) {
    let out = Command::new("node")
        .arg(script)
        .current_dir(browser)
        .envs(vars.iter().copied())
        .output()
        .expect("cannot run node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(out.status.success(), "the browser checks failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains(done), "{stdout}");
}

/// Signs `action` as `wallet` with `nonce` for the network of auth.pub.
fn sign(env: &Env, name: &str, wallet: &str, nonce: u64, action: &serde_json::Value) -> String {
    env.write(name, json!({ "actions": [action] }).to_string());
    env.ok(&[
        "contract",
        "sign",
        name,
        "--wallet",
        wallet,
        "--network",
        "auth.pub",
        "--nonce",
        &nonce.to_string(),
    ])
}

#[test]
fn the_explorer_shows_each_nodes_state_live_and_safely_in_chromium() {
    let browser = browser_tests();
    let env = Env::new();
    env.wallet("auth.pem", "ed25519");
    env.public("auth.pem", "auth.pub");
    env.wallet("peer1.pem", "ed25519");
    env.wallet("peer2.pem", "ed25519");
    // A third wallet signs bundle 2's many contracts in this process (the CLI would take a
    // process per contract).
    let bulk = swarmvm_test_support::wallet(Algorithm::Ed25519, 3);
    swarmvm_wallet::write_key_file(&env.path("bulk.pem"), bulk, None, false).unwrap();
    env.write("ops.json", NOTE_OPS);
    let ops = env.ok(&["token", "issue", "operations", "--key", "auth.pem", "--ops", "ops.json"]);
    let wallets = env.ok(&[
        "token",
        "issue",
        "wallets",
        "--key",
        "auth.pem",
        "--wallet",
        "peer1.pem",
        "--wallet",
        "peer2.pem",
        "--wallet",
        "bulk.pem",
    ]);
    env.write("tokens.txt", format!("{ops}{wallets}"));

    // Bundle 1: a student, a student whose name is markup, and a contract the VM rejects.
    let s1 = json!({"action": "register_student", "student": {"id": "S001", "name": "John Doe", "department": "Computer Science"}});
    let s2 = json!({"action": "register_student", "student": {"id": "S002", "name": XSS, "department": "<script>alert(2)</script>"}});
    let again = json!({"action": "register_student", "student": {"id": "S001", "name": "Jane Roe", "department": "Physics"}});
    let contracts = [
        sign(&env, "c1.json", "peer1.pem", 1, &s1),
        sign(&env, "c2.json", "peer1.pem", 2, &s2),
        sign(&env, "c3.json", "peer2.pem", 1, &again),
    ];
    env.write("contracts1.jsonl", contracts.concat());
    env.ok(&[
        "bundle",
        "create",
        "b1",
        "--key",
        "auth.pem",
        "--tokens",
        "tokens.txt",
        "--contracts",
        "contracts1.jsonl",
    ]);

    // Bundle 2: 400 contracts (about 200 kB), seeded at 40 kB/s so the page sees it arrive.
    let network = env.json(&["wallet", "show", "auth.pem"])["id"].as_str().unwrap().to_owned();
    let now = swarmvm_test_support::now();
    let many: Vec<String> = (1..=400u64)
        .map(|n| {
            let action = json!({"action": "register_student", "student": {
                "id": format!("B{n:04}"), "name": format!("Bulk Student {n}"), "department": "Mathematics"}});
            swarmvm_token::sign_contract(bulk, &network, n, &[action], now).unwrap() + "\n"
        })
        .collect();
    env.write("contracts2.jsonl", many.concat());
    crate::node::create_b2(&env);
    let loopback = ["--no-dht", "--listen", "127.0.0.1:0"];
    let seed = |name: &str, extra: &[&str]| {
        let torrent = format!("{name}.torrent");
        let mut args = vec!["bundle", "seed", torrent.as_str(), "--dir", name];
        args.extend(loopback);
        args.extend_from_slice(extra);
        let seeder = Daemon::start(&env, &args);
        let addr = seeder.first_line["listen"].as_str().unwrap().to_owned();
        (seeder, addr)
    };
    let (_seeder1, addr1) = seed("b1", &[]);
    let (_seeder2, addr2) = seed("b2", &["--upload-limit", "40000"]);

    let node = |dir: &str, wallet: &str| {
        let mut args = vec!["node", "run", "--data-dir", dir, "--trust", "auth.pub"];
        args.extend(["--bundle", "b1.torrent", "--peer", &addr1, "--peer", &addr2]);
        args.extend(loopback);
        args.extend(["--http", "127.0.0.1:0", "--wallet", wallet]);
        Daemon::start(&env, &args)
    };
    let nodes = [node("a", "peer1.pem"), node("b", "peer2.pem")];
    let urls: Vec<String> = nodes
        .iter()
        .map(|n| {
            let http = http_of(n);
            wait_status(http, |s| s["last_seq"] == 1);
            format!("http://{http}")
        })
        .collect();

    let shots = repo_root().join("target/explorer-screenshots");
    let (nodes_var, torrent) = (urls.join(","), env.p("b2.torrent"));
    let shots_var = shots.to_string_lossy();
    let env_vars = [
        ("SWARMVM_NODES", nodes_var.as_str()),
        ("SWARMVM_TORRENT", torrent.as_str()),
        ("SWARMVM_XSS", XSS),
        ("SWARMVM_SHOTS", &shots_var),
    ];
    run_script(&browser, "explorer.test.mjs", &env_vars, "all explorer checks passed");
    for view in ["overview", "bundles", "state", "receipts", "bundles-fetching", "state-phone"] {
        let shot = shots.join(format!("{view}.png"));
        let bytes = std::fs::metadata(&shot).map(|m| m.len()).unwrap_or(0);
        assert!(bytes > 10_000, "{} is missing or empty", shot.display());
    }
}

#[test]
fn the_explorer_verifies_an_entry_against_the_signed_head_in_chromium() {
    let browser = browser_tests();
    let env = Env::new();
    let (seq, http) = crate::proofs::sequencer_with_a_student(&env);
    let url = format!("http://{http}");
    let env_vars = [("SWARMVM_NODE", url.as_str()), ("SWARMVM_ID", "S0000001")];
    run_script(&browser, "proof.test.mjs", &env_vars, "all proof checks passed");
    drop(seq);
}

#[test]
fn the_explorer_wallet_makes_a_key_that_signs_a_contract_applied_without_a_reload_in_chromium() {
    let browser = browser_tests();
    let env = Env::new();
    // A sequencer cutting every second, as the submit-to-receipt figure is measured.
    env.network("ed25519", "tokens.txt");
    let seq = crate::live::sequencer(&env, "1s");
    let http = http_of(&seq);
    crate::live::genesis(&env, http);
    let url = format!("http://{http}");
    let shots = repo_root().join("target/explorer-screenshots");
    let env_vars = [
        ("SWARMVM_NODE", url.as_str()),
        ("SWARMVM_BIN", env!("CARGO_BIN_EXE_swarmvm")),
        ("SWARMVM_DIR", &env.p("")),
        ("SWARMVM_SHOTS", &shots.to_string_lossy()),
    ];
    run_script(&browser, "wallet.test.mjs", &env_vars, "all wallet checks passed");
    drop(seq);
}

#[test]
fn demo_explore_keeps_every_peer_serving_its_explorer_until_ctrl_c() {
    use std::io::BufRead as _;
    let env = Env::new();
    let demo = Command::new(env!("CARGO_BIN_EXE_swarmvm"))
        .args(["demo", "--explore", "--peers", "2", "--json", "--dir", &env.p("demo")])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .unwrap();
    let mut child = swarmvm_test_support::tools::KillOnDrop(demo);
    let stdout = child.0.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let line = |what: &str| {
        let text = rx
            .recv_timeout(std::time::Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("demo --explore printed no {what}"));
        serde_json::from_str::<serde_json::Value>(&text).unwrap()
    };
    let result = line("result");
    assert_eq!(result["agree"], true, "{result}");
    let root = result["state_root"].as_str().unwrap().to_owned();
    let explorers: Vec<serde_json::Value> = (0..3).map(|_| line("explorer address")).collect();
    let names: Vec<&str> = explorers.iter().map(|e| e["peer"].as_str().unwrap()).collect();
    assert_eq!(names, ["authority", "peer1", "peer2"]);
    for e in &explorers {
        assert_eq!(e["event"], "explorer");
        let url = e["url"].as_str().unwrap();
        let addr: std::net::SocketAddr =
            url.trim_start_matches("http://").trim_end_matches('/').parse().unwrap();
        let host = addr.to_string();
        let page = swarmvm_test_support::http::exchange(
            addr,
            "GET",
            "/",
            &[("Host", &host), ("Accept", "text/html")],
            "",
        );
        assert_eq!(page.status, 200, "{url}");
        assert!(page.body.contains("swarmvm explorer"), "{url}");
        // The peers stay up with the demo's state after it printed its result.
        let (code, status) = swarmvm_test_support::http::get(addr, "/v1/status");
        assert_eq!((code, status["state_root"].as_str()), (200, Some(root.as_str())), "{url}");
    }
    Command::new("kill").args(["-s", "INT", &child.0.id().to_string()]).status().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let code = loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            break status.code();
        }
        assert!(std::time::Instant::now() < deadline, "demo --explore did not stop on SIGINT");
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert_eq!(code, Some(0));
    // The kept folder holds each peer's closed ledger with the same root.
    for peer in ["peer1", "peer2"] {
        let dir = env.p(&format!("demo/{peer}"));
        assert_eq!(env.ok(&["state", "root", "--data-dir", &dir]).trim(), root);
    }
}

/// Three authority replicas (2 of 3): every replica's overview shows its role and term, the
/// same leader, and each member's last signed seq; after the leader is SIGKILLed, the two
/// left show the new leader.
#[test]
fn the_explorer_shows_the_replicas_their_leader_and_last_seqs_in_chromium() {
    use std::time::{Duration, Instant};
    use swarmvm_test_support::replicas::{ReplicaNet, ReplicaOptions};
    let browser = browser_tests();
    let mut net = ReplicaNet::start(&ReplicaOptions {
        bin: env!("CARGO_BIN_EXE_swarmvm").into(),
        members: 3,
        threshold: 2,
        followers: 0,
        wallets: 1,
        cut_every: "250ms".into(),
        cut_at: 2000,
    });
    for contract in &net.sign(2)[0] {
        let (code, answer) = swarmvm_test_support::http::request(
            net.addrs[1],
            "POST",
            "/v1/contracts",
            Some(contract),
        );
        assert_eq!(code, 202, "{answer}");
    }
    net.settle(Duration::from_secs(60));
    let urls = net.urls();
    run_script(
        &browser,
        "cluster.test.mjs",
        &[("SWARMVM_NODES", &urls.join(","))],
        "all cluster checks passed",
    );

    let leader = net.leader(Duration::from_secs(10));
    let gone = net.members[leader].clone();
    net.kill(leader);
    let left: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
    // Both replicas left agree on a new leader.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let named: Vec<serde_json::Value> = left
            .iter()
            .map(|i| {
                swarmvm_test_support::http::get(net.addrs[*i], "/v1/status").1["cluster"]["leader"]
                    .clone()
            })
            .collect();
        if named[0] == named[1] && named[0].is_string() && named[0] != gone.as_str() {
            break;
        }
        assert!(Instant::now() < deadline, "no new leader: {named:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let survivors: Vec<&str> = left.iter().map(|i| urls[*i].as_str()).collect();
    run_script(
        &browser,
        "cluster.test.mjs",
        &[("SWARMVM_NODES", &survivors.join(",")), ("SWARMVM_GONE", &gone)],
        "all cluster checks passed",
    );
}
