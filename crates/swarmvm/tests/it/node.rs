//! `swarmvm demo`, `swarmvm bundle create --key`, `swarmvm node apply|run`.

use std::io::BufRead as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use swarmvm_test_support::http::get;

use crate::support::{Daemon, Env, FAILURE, REFUSED, Tmpfs};

fn demo(peers: &str) -> Value {
    let env = Env::new();
    let out = env.json(&["demo", "--peers", peers]);
    let n: usize = peers.parse().unwrap();
    assert_eq!(out["agree"], true);
    let list = out["peers"].as_array().unwrap();
    assert_eq!(list.len(), n);
    let first = &list[0];
    for p in list {
        assert_eq!(p["state_root"], out["state_root"]);
        assert_eq!(p["applied"], true);
        assert!(p["fetched"].as_u64().unwrap() > 0, "each peer received the bundle's bytes itself");
        assert_eq!(p["state"]["students"]["S001"]["name"], "John Doe");
        assert_eq!(p["state"]["courses"]["C001"]["name"], "Blockchain Technology");
        assert_eq!(p["state"]["proposals"]["P001"]["description"], "Increase Research Funding");
        assert_eq!(p["state"]["proposals"]["P001"]["votes"], n);
        assert_eq!(p["state"]["nfts"]["NFT001"]["owner"], first["wallet"]);
        assert_eq!(p["state"]["nfts"]["NFT001"]["metadata"]["artist"], "Alice");
        let ops: Vec<&String> = p["operations"].as_object().unwrap().keys().collect();
        assert_eq!(ops, ["add_course", "generate_nft", "register_student", "vote_proposal"]);
        assert_eq!(p["wallet"].as_str().unwrap().len(), 43);
    }
    let wallets: std::collections::BTreeSet<&str> =
        list.iter().map(|p| p["wallet"].as_str().unwrap()).collect();
    assert_eq!(wallets.len(), n, "every peer has its own wallet");
    out
}

#[test]
fn demo_with_three_peers_agrees() {
    let out = demo("3");
    assert!(out["seconds"].as_f64().unwrap() < 30.0);
}

#[test]
fn demo_with_eight_peers_agrees() {
    demo("8");
}

#[test]
fn demo_text_ends_with_the_agreement_and_cleans_up() {
    let env = Env::new();
    let before: Vec<_> = std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("swarmvm-demo-"))
        .map(|e| e.path())
        .collect();
    let out = env.ok(&["demo"]);
    assert!(out.lines().last().unwrap().starts_with("all 3 state roots agree: "), "{out}");
    assert!(out.contains("operations  add_course, generate_nft, register_student, vote_proposal"));
    let after: Vec<_> = std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("swarmvm-demo-"))
        .map(|e| e.path())
        .collect();
    assert_eq!(before, after, "no demo folder left behind");
}

/// `bundle create b1` of tokens.txt and contracts1.jsonl, signed by auth.pem.
pub(crate) fn create_b1(env: &Env) -> Value {
    env.json(&[
        "bundle",
        "create",
        "b1",
        "--key",
        "auth.pem",
        "--tokens",
        "tokens.txt",
        "--contracts",
        "contracts1.jsonl",
    ])
}

/// `bundle create b2 --after b1` of contracts2.jsonl, signed by auth.pem.
pub(crate) fn create_b2(env: &Env) -> Value {
    env.json(&[
        "bundle",
        "create",
        "b2",
        "--key",
        "auth.pem",
        "--contracts",
        "contracts2.jsonl",
        "--after",
        "b1",
    ])
}

/// An authority, two peers, tokens.txt and two contract files.
pub(crate) fn network(env: &Env) {
    env.network("ed25519", "tokens.txt");
    env.write("c1.json", r#"{"actions":[{"action":"register_student","student":{"id":"S001","name":"John Doe","department":"Computer Science"}}]}"#);
    env.write("c2.json", r#"{"actions":[{"action":"vote_proposal","proposal":{"id":"P001","description":"Increase Research Funding"}}]}"#);
    let c1 = env.ok(&[
        "contract",
        "sign",
        "c1.json",
        "--wallet",
        "peer1.pem",
        "--network",
        "auth.pub",
        "--nonce",
        "1",
    ]);
    let c2 = env.ok(&[
        "contract",
        "sign",
        "c2.json",
        "--wallet",
        "peer2.pem",
        "--network",
        "auth.pub",
        "--nonce",
        "1",
    ]);
    env.write("contracts1.jsonl", c1);
    env.write("contracts2.jsonl", c2);
}

#[test]
fn bundles_made_with_key_apply_offline_in_order_only() {
    let env = Env::new();
    network(&env);
    let b1 = create_b1(&env);
    assert_eq!((b1["seq"].as_u64(), b1["parent"].is_null()), (Some(1), true));
    let b2 = create_b2(&env);
    assert_eq!(b2["seq"], 2);
    assert_eq!(b2["parent"], b1["bundle"], "parent is the previous bundle's identity");
    assert!(env.path("b2/registration_tokens.txt").exists(), "both files are present, one empty");
    let apply = |bundle: &str| {
        env.run(&["node", "apply", bundle, "--data-dir", "peer", "--trust", "auth.pub", "--json"])
    };
    let run = apply("b2");
    assert_eq!(run.code, REFUSED);
    assert!(
        run.one_line_error().ends_with("bundle seq 2 is out of order: this ledger expects seq 1"),
        "{}",
        run.stderr
    );
    let run = apply("b1");
    assert_eq!(run.code, 0, "{}", run.stderr);
    let out: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!((out["seq"].as_u64(), out["applied"].as_u64()), (Some(1), Some(1)));
    let run = apply("b2");
    assert_eq!(run.code, 0, "{}", run.stderr);
    let state = env.json(&["state", "show", "--data-dir", "peer"]);
    assert_eq!(state["last_bundle"]["seq"], 2);
    assert_eq!(state["proposals"]["P001"]["votes"], 1);
    let run = apply("b1");
    assert_eq!(run.code, REFUSED, "an applied bundle does not apply twice");

    // Broken bundles are refused with the reason, and change nothing.
    let root = env.ok(&["state", "root", "--data-dir", "peer"]);
    env.json(&["bundle", "create", "b3", "--key", "auth.pem", "--after", "b2"]);
    std::fs::write(env.path("b3/contracts.jsonl"), b"added after signing\n").unwrap();
    let run = apply("b3");
    assert_eq!(run.code, REFUSED);
    assert!(
        run.one_line_error().contains("contracts.jsonl has 20 bytes but the manifest says 0"),
        "{}",
        run.stderr
    );
    env.json(&["bundle", "create", "b4", "--key", "auth.pem", "--after", "b2"]);
    env.write("b4/evil.sh", "rm -rf /");
    let run = apply("b4");
    assert_eq!(run.code, REFUSED);
    assert!(run.one_line_error().contains("unexpected entry 'evil.sh'"), "{}", run.stderr);
    env.wallet("other.pem", "ed25519");
    env.public("other.pem", "other.pub");
    let run = env.run(&["node", "apply", "b2", "--data-dir", "peer", "--trust", "other.pub"]);
    assert_eq!(run.code, REFUSED);
    assert!(
        run.one_line_error().contains("manifest refused: signer")
            && run.one_line_error().contains("is not a member of the authority set"),
        "{}",
        run.stderr
    );
    assert_eq!(env.ok(&["state", "root", "--data-dir", "peer"]), root);

    // A bundle's tokens must verify against its authority when it is made.
    let run = env.run(&["bundle", "create", "b5", "--key", "other.pem", "--tokens", "tokens.txt"]);
    assert_eq!(run.code, REFUSED);
    assert!(
        run.one_line_error().contains("registration token 1 refused: unknown kid"),
        "{}",
        run.stderr
    );
    let run = env.run(&["bundle", "create", "b6", "--key", "other.pem", "--after", "b2"]);
    assert_eq!(run.code, REFUSED, "{}", run.stderr);
    assert!(
        run.one_line_error().contains("the previous bundle is signed for network"),
        "{}",
        run.stderr
    );
    let run = env.run(&["bundle", "create", "b7", "--tokens", "tokens.txt"]);
    assert_eq!(run.code, FAILURE, "--tokens needs --key");
}

/// Polls a node's HTTP status until `ok` (bounded).
pub(crate) fn wait_status(http: std::net::SocketAddr, ok: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (code, status) = get(http, "/v1/status");
        if code == 200 && ok(&status) {
            return status;
        }
        assert!(Instant::now() < deadline, "status never got there: {status}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub(crate) fn http_of(node: &Daemon) -> std::net::SocketAddr {
    node.first_line["http"].as_str().unwrap().parse().unwrap()
}

#[test]
fn node_run_fetches_applies_seeds_and_stops_on_sigterm() {
    let env = Env::new();
    network(&env);
    create_b1(&env);
    let mut seeder = Daemon::start(
        &env,
        &["bundle", "seed", "b1.torrent", "--dir", "b1", "--no-dht", "--listen", "127.0.0.1:0"],
    );
    let seeder_addr = seeder.first_line["listen"].as_str().unwrap().to_owned();
    let mut node = Daemon::start(
        &env,
        &[
            "node",
            "run",
            "--data-dir",
            "peer",
            "--trust",
            "auth.pub",
            "--bundle",
            "b1.torrent",
            "--peer",
            &seeder_addr,
            "--no-dht",
            "--listen",
            "127.0.0.1:0",
            "--http",
            "127.0.0.1:0",
            "--wallet",
            "peer1.pem",
        ],
    );
    assert_eq!(node.first_line["event"], "started");
    let status = wait_status(http_of(&node), |s| s["last_seq"] == 1);
    assert_eq!(status["wallet"], env.json(&["wallet", "show", "peer1.pem"])["id"]);
    assert_eq!(status["torrents"][0]["state"], "applied");
    // The seeder leaves; a second node learns the bundle from the first one only.
    assert_eq!(seeder.signal("INT"), 0);
    let first_listen = node.first_line["listen"].as_str().unwrap().to_owned();
    let mut second = Daemon::start(
        &env,
        &[
            "node",
            "run",
            "--data-dir",
            "peer2",
            "--trust",
            "auth.pub",
            "--bundle",
            "b1.torrent",
            "--peer",
            &first_listen,
            "--no-dht",
            "--listen",
            "127.0.0.1:0",
            "--http",
            "127.0.0.1:0",
        ],
    );
    let status2 = wait_status(http_of(&second), |s| s["last_seq"] == 1);
    assert_eq!(status2["state_root"], status["state_root"]);
    assert_eq!(node.signal("TERM"), 0, "SIGTERM stops the node cleanly");
    let mut line = String::new();
    node.stdout.read_line(&mut line).unwrap();
    let stopped: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(
        (stopped["event"].as_str(), stopped["last_seq"].as_u64()),
        (Some("stopped"), Some(1))
    );
    // The ledger is closed and readable.
    assert_eq!(env.ok(&["state", "root", "--data-dir", "peer"]).trim(), status["state_root"]);
    assert_eq!(second.signal("INT"), 0, "SIGINT stops a node cleanly too");
    assert_eq!(env.ok(&["state", "root", "--data-dir", "peer2"]).trim(), status["state_root"]);
}

#[test]
fn a_node_killed_while_applying_restarts_and_reaches_the_same_root() {
    let env = Env::new();
    network(&env);
    // A large bundle: 3,000 contracts, so applying takes a while. (Signed in-process: 3,000
    // `contract sign` processes would be slow for no gain; that command has its own tests.)
    let wallet = |name: &str| {
        let (m, _) = swarmvm_wallet::read_key_file(&env.path(name), None).unwrap();
        m.into_wallet().unwrap()
    };
    let (p1, p2) = (wallet("peer1.pem"), wallet("peer2.pem"));
    let network = env.json(&["wallet", "show", "auth.pub"])["id"].as_str().unwrap().to_owned();
    let mut lines = String::new();
    for i in 0..3000u64 {
        let action = serde_json::json!({"action": "register_student", "student": {"id": format!("S{i}"), "name": "N", "department": "D"}});
        let signer = if i % 2 == 0 { &p1 } else { &p2 };
        lines.push_str(
            &swarmvm_token::sign_contract(signer, &network, i / 2 + 1, &[action], 1).unwrap(),
        );
        lines.push('\n');
    }
    env.write("big.jsonl", lines);
    env.ok(&[
        "bundle",
        "create",
        "big",
        "--key",
        "auth.pem",
        "--tokens",
        "tokens.txt",
        "--contracts",
        "big.jsonl",
    ]);
    env.ok(&["node", "apply", "big", "--data-dir", "reference", "--trust", "auth.pub"]);
    let reference = env.ok(&["state", "root", "--data-dir", "reference"]);
    let seeder = Daemon::start(
        &env,
        &["bundle", "seed", "big.torrent", "--dir", "big", "--no-dht", "--listen", "127.0.0.1:0"],
    );
    let seeder_addr = seeder.first_line["listen"].as_str().unwrap().to_owned();
    let args = [
        "node",
        "run",
        "--data-dir",
        "peer",
        "--trust",
        "auth.pub",
        "--bundle",
        "big.torrent",
        "--peer",
        &seeder_addr,
        "--no-dht",
        "--listen",
        "127.0.0.1:0",
        "--json",
    ];
    let mut kills_mid_apply = 0;
    for round in 0..3u64 {
        let mut child = Command::new(env!("CARGO_BIN_EXE_swarmvm"))
            .args(args)
            .current_dir(env.dir.path())
            .env("RUST_LOG", "swarmvm_node=info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = std::io::BufReader::new(child.stderr.take().unwrap());
        let mut applying = false;
        for line in stderr.lines() {
            let line = line.unwrap();
            if line.contains("applying bundle") {
                applying = true;
                break;
            }
            if line.contains("bundle applied") {
                break;
            }
        }
        // Kill as the apply starts: in the middle of applying the 3,000 contracts.
        std::thread::sleep(Duration::from_millis(round * 7));
        child.kill().unwrap();
        child.wait().unwrap();
        // Whatever the moment, the ledger holds the whole bundle or none of it.
        let root = env.ok(&["state", "root", "--data-dir", "peer"]);
        let state = env.json(&["state", "show", "--data-dir", "peer"]);
        let students = state["students"].as_object().unwrap().len();
        assert!(students == 0 || students == 3000, "half a bundle: {students} students");
        assert_eq!(students == 3000, root == reference);
        if applying && students == 0 {
            kills_mid_apply += 1;
        }
    }
    assert!(kills_mid_apply >= 1, "no kill landed while applying");
    let _node = Daemon::start(&env, &args[..args.len() - 1]);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if env.ok(&["state", "root", "--data-dir", "peer"]) == reference {
            break;
        }
        assert!(Instant::now() < deadline, "the restarted node never reached the reference root");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `node run` on `data_dir` trusting auth.pub, on loopback with an HTTP API, plus `extra`.
fn run_node(env: &Env, data_dir: &str, extra: &[&str]) -> Daemon {
    let mut args = vec!["node", "run", "--data-dir", data_dir, "--trust", "auth.pub"];
    args.extend(["--no-dht", "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0"]);
    args.extend_from_slice(extra);
    let node = Daemon::start(env, &args);
    assert_eq!(node.first_line["event"], "started");
    node
}

/// `bundle seed NAME.torrent --dir NAME` on loopback; its address.
fn seed_bundle(env: &Env, name: &str) -> (Daemon, String) {
    let torrent = format!("{name}.torrent");
    let args = ["bundle", "seed", &torrent, "--dir", name, "--no-dht", "--listen", "127.0.0.1:0"];
    let seeder = Daemon::start(env, &args);
    let addr = seeder.first_line["listen"].as_str().unwrap().to_owned();
    (seeder, addr)
}

#[test]
fn node_run_watch_adds_torrents_and_magnet_files_dropped_in_its_folder() {
    let env = Env::new();
    network(&env);
    create_b1(&env);
    let b2 = create_b2(&env);
    let (_s1, addr1) = seed_bundle(&env, "b1");
    let (_s2, addr2) = seed_bundle(&env, "b2");
    std::fs::create_dir(env.path("drop")).unwrap();
    let node = run_node(&env, "peer", &["--watch", "drop", "--peer", &addr1, "--peer", &addr2]);
    let http = http_of(&node);
    assert_eq!(wait_status(http, |s| s["batches"] == 0)["torrents"], serde_json::json!([]));
    // A torrent file, then a magnet link in a file.
    std::fs::copy(env.path("b1.torrent"), env.path("drop/b1.torrent")).unwrap();
    let status = wait_status(http, |s| s["last_seq"] == 1);
    assert_eq!(status["torrents"][0]["name"], "b1");
    env.write("drop/b2.magnet", format!("{}\n", b2["magnet"].as_str().unwrap()));
    let status = wait_status(http, |s| s["last_seq"] == 2);
    assert_eq!(status["torrents"][1]["info_hash"], b2["info_hash"]);
    assert_eq!(status["torrents"][1]["state"], "applied");
    let state = env.json(&["state", "show", "--data-dir", "peer"]);
    assert_eq!(state["proposals"]["P001"]["votes"], 1);
}

#[test]
fn a_late_joiner_applies_a_bundle_whose_tokens_have_expired_since() {
    let env = Env::new();
    // A network whose tokens (30 days) were issued 40 days ago, with its first bundle.
    let now = swarmvm_token::unix_now();
    let net = swarmvm_test_support::net::TestNet::at(1, now - 40 * 86_400);
    let contract = net.contract(0, 1, &[swarmvm_test_support::net::student("S001")]);
    net.bundle(env.dir.path(), "old", true, &[contract], None);
    env.write("auth.pub", net.authority.public_key().to_spki_pem());
    env.write("token.txt", &net.tokens[0]);
    let err = env.fails(&["token", "verify", "token.txt", "--trust", "auth.pub"], REFUSED);
    assert!(err.contains("expired"), "the tokens have expired by now: {err}");
    // They were valid when the bundle was signed, which is what counts.
    let applied = env.json(&["node", "apply", "old", "--data-dir", "late", "--trust", "auth.pub"]);
    assert_eq!((applied["seq"].as_u64(), applied["applied"].as_u64()), (Some(1), Some(1)));
    let state = env.json(&["state", "show", "--data-dir", "late"]);
    assert_eq!(state["students"]["S001"]["name"], "John Doe");
    assert_eq!(state["wallets"].as_object().unwrap().len(), 1);
}

#[test]
fn a_node_whose_ledger_storage_fails_keeps_serving_and_applies_once_there_is_room() {
    use base64::Engine as _;
    let env = Env::new();
    network(&env);
    // Many contracts, so that applying the bundle needs room in the ledger file.
    let mut lines = String::new();
    for n in 1..=1500u64 {
        env.write(
            "c.json",
            format!(
                r#"{{"actions":[{{"action":"register_student","student":{{"id":"S{n:05}","name":"{name}","department":"Storage"}}}}]}}"#,
                name = "N".repeat(200)
            ),
        );
        let nonce = n.to_string();
        lines += &env.ok(&[
            "contract",
            "sign",
            "c.json",
            "--wallet",
            "peer1.pem",
            "--network",
            "auth.pub",
            "--nonce",
            &nonce,
        ]);
    }
    env.write("contracts1.jsonl", lines);
    create_b1(&env);
    let reference =
        env.json(&["node", "apply", "b1", "--data-dir", "reference", "--trust", "auth.pub"]);
    let (_seeder, addr) = seed_bundle(&env, "b1");

    // The ledger lives on a small disk; the bundles beside it do not.
    let disk = Tmpfs::mount(&env, "disk", 8 << 20);
    std::fs::create_dir(env.path("peer")).unwrap();
    std::os::unix::fs::symlink(disk.path.join("ledger.redb"), env.path("peer/ledger.redb"))
        .unwrap();
    let mut node = run_node(&env, "peer", &["--peer", &addr]);
    let http = http_of(&node);
    let empty_root = wait_status(http, |s| s["batches"] == 0)["state_root"].clone();
    crate::bundle::fill(&disk.path.join("filler"));
    let torrent = std::fs::read(env.path("b1.torrent")).unwrap();
    let body = serde_json::json!({
        "torrent_base64": base64::engine::general_purpose::STANDARD.encode(torrent)
    });
    let (code, _) = swarmvm_test_support::http::post(http, "/v1/bundles", &body.to_string());
    assert_eq!(code, 202);
    let status = wait_status(http, |s| {
        s["torrents"][0]["reason"].as_str().is_some_and(|r| r.contains("storage failure"))
    });
    let bundle = &status["torrents"][0];
    assert_ne!(bundle["state"], "rejected", "the bundle is not blamed: {bundle}");
    assert_eq!(status["last_seq"], 0);
    assert_eq!(status["state_root"], empty_root, "nothing half-applied");
    let (code, root) = get(http, "/v1/state/root");
    assert_eq!((code, &root["state_root"]), (200, &empty_root), "reads go on");

    // Room again: the node opens its ledger again and applies the bundle whole.
    std::fs::remove_file(disk.path.join("filler")).unwrap();
    let status = wait_status(http, |s| s["last_seq"] == 1);
    assert_eq!(status["state_root"], reference["state_root"]);
    assert_eq!(status["torrents"][0]["state"], "applied");
    assert_eq!(node.signal("TERM"), 0);
    env.ok(&["ledger", "verify", "--data-dir", "peer"]);
    // And it opens as it was left.
    let node = run_node(&env, "peer", &["--peer", &addr]);
    let status = wait_status(http_of(&node), |s| s["last_seq"] == 1);
    assert_eq!(status["state_root"], reference["state_root"]);
    drop(node);
    env.ok(&["ledger", "verify", "--data-dir", "peer"]);
}
