//! A network that runs itself, through the command line: `node run --sequencer`, `node run
//! --follow`, `bundle submit`, `contract submit --wait` and its exit codes, and a sequencer
//! killed with SIGKILL after answering 202 that applies every accepted contract exactly once
//! after a restart.

use std::net::SocketAddr;

use serde_json::Value;
use swarmvm_test_support::http::get;

use crate::node::{http_of, wait_status};
use crate::support::{Daemon, Env};

/// `node run --sequencer --key auth.pem` on data folder `seq`, cutting every `cut_every`, on
/// loopback with an HTTP API.
pub(crate) fn sequencer(env: &Env, cut_every: &str) -> Daemon {
    sequencer_with(env, cut_every, &[])
}

/// [`sequencer`] with `extra` flags.
pub(crate) fn sequencer_with(env: &Env, cut_every: &str, extra: &[&str]) -> Daemon {
    let mut args = vec![
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
        cut_every,
        "--no-dht",
        "--listen",
        "127.0.0.1:0",
        "--http",
        "127.0.0.1:0",
    ];
    args.extend(extra);
    Daemon::start(env, &args)
}

fn url(http: SocketAddr) -> String {
    format!("http://{http}")
}

fn wallet_id(env: &Env, file: &str) -> String {
    env.json(&["wallet", "show", file])["id"].as_str().unwrap().to_owned()
}

#[test]
fn contract_submit_waits_for_the_outcome_through_a_follower() {
    let env = Env::new();
    env.network("ed25519", "tokens.txt");
    let seq = sequencer(&env, "200ms");
    let seq_http = http_of(&seq);
    genesis(&env, seq_http);

    let follower = Daemon::start(
        &env,
        &[
            "node",
            "run",
            "--data-dir",
            "f",
            "--trust",
            "auth.pub",
            "--follow",
            &url(seq_http),
            "--poll",
            "100ms",
            "--no-dht",
            "--listen",
            "127.0.0.1:0",
            "--http",
            "127.0.0.1:0",
        ],
    );
    let f_http = http_of(&follower);
    wait_status(f_http, |s| s["last_seq"] == 1);

    // Signed here (the network and the next nonce from the node), submitted to the follower,
    // forwarded, cut, applied: exit 0.
    env.write("student.json", r#"{"actions": [{"action": "register_student", "student": {"id": "S1", "name": "Ada", "department": "CS"}}]}"#);
    let args = [
        "contract",
        "submit",
        "student.json",
        "--node",
        &url(f_http),
        "--wallet",
        "peer1.pem",
        "--wait",
        "--timeout",
        "30s",
    ];
    let out = env.ok(&args);
    assert!(out.contains("applied in bundle seq"), "{out}");
    // The next contract of the same wallet finds the next nonce by itself.
    env.write("vote.json", r#"{"actions": [{"action": "vote_proposal", "proposal": {"id": "P1", "description": "d"}}]}"#);
    let json = env.json(&[
        "contract",
        "submit",
        "vote.json",
        "--node",
        &url(f_http),
        "--wallet",
        "peer1.pem",
        "--wait",
    ]);
    assert_eq!(json["state"], "applied", "{json}");
    let seq_no = json["seq"].as_u64().unwrap();
    wait_status(f_http, |s| s["last_seq"].as_u64() >= Some(seq_no));
    let (_, wallet) = get(f_http, &format!("/v1/wallets/{}", wallet_id(&env, "peer1.pem")));
    assert_eq!(wallet["nonce"], 2, "{wallet}");

    // A contract the VM rejects (an action no token registered): exit 1 with the reason.
    env.write("bad.json", r#"{"actions": [{"action": "no_such_action"}]}"#);
    let run = env.run(&[
        "contract",
        "submit",
        "bad.json",
        "--node",
        &url(seq_http),
        "--wallet",
        "peer2.pem",
        "--wait",
    ]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stdout.contains("rejected"), "{run:?}");

    // A contract signed beforehand with `contract sign` (one line): prints its id.
    env.write(
        "student2.json",
        r#"{"actions": [{"action": "register_student", "student": {"id": "S2", "name": "Bo", "department": "CS"}}]}"#,
    );
    let signed = env.ok(&[
        "contract",
        "sign",
        "student2.json",
        "--wallet",
        "peer2.pem",
        "--network",
        "auth.pub",
    ]);
    env.write("signed.jwt", &signed);
    let id = env.ok(&["contract", "submit", "signed.jwt", "--node", &url(f_http)]);
    let id = id.trim();
    assert_eq!(id.len(), 64, "{id}");
    let status = wait_contract(f_http, id);
    assert_eq!(status["state"], "applied", "{status}");

    // Submitting it again (a client retrying) is not an error: the same id.
    let again = env.ok(&["contract", "submit", "signed.jwt", "--node", &url(seq_http)]);
    assert_eq!(again.trim(), id);
    // A refusal by the node: exit 1 with its line (a nonce peer1 used already).
    let stale = env.ok(&[
        "contract",
        "sign",
        "student2.json",
        "--wallet",
        "peer1.pem",
        "--network",
        "auth.pub",
        "--nonce",
        "1",
    ]);
    env.write("stale.jwt", &stale);
    let err = env.fails(&["contract", "submit", "stale.jwt", "--node", &url(f_http)], 1);
    assert!(err.contains("not above"), "{err}");
    drop(follower);
}

/// Waits (bounded) until contract `id` is applied or rejected at `http`.
fn wait_contract(http: SocketAddr, id: &str) -> Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let (code, body) = get(http, &format!("/v1/contracts/{id}"));
        if code == 200 && body["state"] != "pending" {
            return body;
        }
        assert!(std::time::Instant::now() < deadline, "contract {id} never applied: {body}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn contract_submit_times_out_with_exit_3_when_nothing_is_cut() {
    let env = Env::new();
    env.network("ed25519", "tokens.txt");
    let seq = sequencer(&env, "200ms");
    genesis(&env, http_of(&seq));
    drop(seq);
    // The same sequencer, cutting once an hour: a contract is accepted and never applied.
    let seq = sequencer(&env, "1h");
    env.write("student.json", r#"{"actions": [{"action": "register_student", "student": {"id": "S1", "name": "Ada", "department": "CS"}}]}"#);
    let run = env.run(&[
        "contract",
        "submit",
        "student.json",
        "--node",
        &url(http_of(&seq)),
        "--wallet",
        "peer1.pem",
        "--wait",
        "--timeout",
        "1s",
    ]);
    assert_eq!(run.code, 3, "{run:?}");
    assert!(run.one_line_error().contains("not applied within"), "{run:?}");
}

/// The network's registrations, submitted to the sequencer as a folder of tokens alone,
/// cut into the genesis.
/// A network (`Env::network`) whose sequencer, cutting every 200 ms, applied its
/// registrations; and its HTTP address.
pub(crate) fn live_sequencer(env: &Env) -> (Daemon, SocketAddr) {
    env.network("ed25519", "tokens.txt");
    let seq = sequencer(env, "200ms");
    let http = crate::node::http_of(&seq);
    genesis(env, http);
    (seq, http)
}

pub(crate) fn genesis(env: &Env, seq: SocketAddr) {
    std::fs::create_dir_all(env.path("genesis")).unwrap();
    std::fs::copy(env.path("tokens.txt"), env.path("genesis/registration_tokens.txt")).unwrap();
    env.ok(&["bundle", "submit", "genesis", "--node", &url(seq)]);
    wait_status(seq, |s| s["last_seq"] == 1);
}

#[test]
fn a_sequencer_killed_after_answering_202_applies_every_accepted_contract_exactly_once() {
    let env = Env::new();
    env.network("ed25519", "tokens.txt");
    let seq = sequencer(&env, "200ms");
    genesis(&env, http_of(&seq));
    drop(seq);
    let mut seq = sequencer(&env, "1h");
    let http = http_of(&seq);
    let mut ids = Vec::new();
    for i in 0..12 {
        let wallet = if i % 2 == 0 { "peer1.pem" } else { "peer2.pem" };
        env.write("c.json", format!(r#"{{"actions": [{{"action": "register_student", "student": {{"id": "S{i}", "name": "n", "department": "d"}}}}]}}"#));
        let id =
            env.ok(&["contract", "submit", "c.json", "--node", &url(http), "--wallet", wallet]);
        ids.push(id.trim().to_owned());
    }
    // One more, signed beforehand: its client will submit it again after the crash.
    env.write("last.json", r#"{"actions": [{"action": "register_student", "student": {"id": "L", "name": "n", "department": "d"}}]}"#);
    let last = env.ok(&[
        "contract",
        "sign",
        "last.json",
        "--wallet",
        "peer1.pem",
        "--network",
        "auth.pub",
        "--nonce",
        "7",
    ]);
    env.write("last.jwt", &last);
    let id = env.ok(&["contract", "submit", "last.jwt", "--node", &url(http)]);
    ids.push(id.trim().to_owned());
    let (_, status) = get(http, "/v1/status");
    assert_eq!(status["sequencer"]["queued"], 13, "{status}");
    assert_eq!(status["last_seq"], 1);
    assert_eq!(seq.signal("KILL"), -1);

    let seq = sequencer(&env, "200ms");
    let http = http_of(&seq);
    // The client that did not hear the 202 submits again: the same contract, not a second.
    let again = env.ok(&["contract", "submit", "last.jwt", "--node", &url(http)]);
    assert_eq!(again.trim(), ids[12]);
    for id in &ids {
        assert_eq!(wait_contract(http, id)["state"], "applied");
    }
    // Exactly once: thirteen receipts in all; peer1's nonce at seven, peer2's at six.
    let (_, log) = get(http, "/v1/log?from=1&limit=100");
    let contracts: u64 =
        log["log"].as_array().unwrap().iter().map(|e| e["contracts"].as_u64().unwrap()).sum();
    assert_eq!(contracts, 13, "{log}");
    for (wallet, nonce) in [("peer1.pem", 7), ("peer2.pem", 6)] {
        let (_, w) = get(http, &format!("/v1/wallets/{}", wallet_id(&env, wallet)));
        assert_eq!(w["nonce"], nonce, "{w}");
    }
    let (_, status) = get(http, "/v1/status");
    assert_eq!(status["sequencer"]["queued"], 0, "{status}");
    drop(seq);
}

#[test]
fn demo_live_applies_every_peers_contracts_on_every_node_with_one_root() {
    let env = Env::new();
    for (peers, wasm) in [("3", false), ("2", true)] {
        let mut args = vec!["demo", "--live", "--peers", peers];
        if wasm {
            args.push("--wasm");
        }
        let out = env.json(&args);
        assert_eq!(out["agree"], true, "{out}");
        let contracts = out["contracts"].as_array().unwrap();
        let n: usize = peers.parse().unwrap();
        assert_eq!(contracts.len(), 3 + n, "{out}");
        for (i, c) in contracts.iter().enumerate() {
            assert_eq!(c["outcome"], "applied", "{c}");
            assert!(c["latency_ms"].as_f64().unwrap() > 0.0, "{c}");
            let via = format!("peer{}", i.saturating_sub(3) + 1);
            assert_eq!(c["via"], via.as_str());
        }
        let state = &out["state"];
        assert_eq!(state["students"]["S001"]["name"], "John Doe");
        if wasm {
            assert_eq!(state["wasm"]["vote_proposal"]["P001"], n.to_string(), "{state}");
        } else {
            assert_eq!(state["proposals"]["P001"]["votes"], n, "{state}");
        }
    }
}

/// The load test (CI-sized; `benches/live.rs` is the measured run): a sequencer and two
/// followers as processes, 32 client wallets submitting through all three nodes as fast as
/// they are taken, then at a paced 200 contracts/s. Every accepted contract is applied exactly
/// once on every node, with one root; the figures are printed, not asserted.
#[test]
fn load_a_sequencer_and_two_followers_apply_every_accepted_contract_exactly_once() {
    use std::sync::Arc;
    use std::sync::atomic::AtomicBool;
    use std::time::{Duration, Instant};
    use swarmvm_test_support::live::{LiveNet, LiveOptions, quantile, sample, seqs_of, submit};

    let options = LiveOptions {
        bin: env!("CARGO_BIN_EXE_swarmvm").into(),
        followers: 2,
        wallets: 32,
        cut_every: "300ms".into(),
        cut_at: 500,
    };
    let net = LiveNet::start(&options);
    let urls: Vec<String> = net.nodes().iter().map(|n| format!("http://{}", n.http)).collect();
    let addrs: Vec<SocketAddr> = net.nodes().iter().map(|n| n.http).collect();

    // As fast as they are taken.
    let contracts = net.sign(50);
    let start = Instant::now();
    let done = submit(&urls, &contracts, 32, None, Duration::from_secs(60), start);
    assert!(done.refused.is_empty(), "refused: {:?}", done.refused);
    assert_eq!(done.accepted.len(), 32 * 50);
    let ids: Vec<String> = done.accepted.iter().map(|a| a.id.clone()).collect();
    net.settle(&contracts, &ids);
    eprintln!(
        "load: {} contracts accepted in {:.2} s, applied everywhere after {:.2} s",
        ids.len(),
        done.elapsed.as_secs_f64(),
        start.elapsed().as_secs_f64()
    );

    // Paced: each contract's latency until every node applied it.
    let more = net.sign(70);
    let paced: Vec<Vec<String>> = more.iter().map(|list| list[50..].to_vec()).collect();
    let start = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = sample(addrs, start, stop.clone());
    let done = submit(&urls, &paced, 32, Some(200.0), Duration::from_secs(30), start);
    assert!(done.refused.is_empty(), "refused: {:?}", done.refused);
    let paced_ids: Vec<String> = done.accepted.iter().map(|a| a.id.clone()).collect();
    let mut all_ids = ids;
    all_ids.extend(paced_ids.iter().cloned());
    let mut all: Vec<Vec<String>> = contracts;
    for (w, list) in paced.iter().enumerate() {
        all[w].extend(list.iter().cloned());
    }
    net.settle(&all, &all_ids);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let progress = sampler.join().unwrap();
    let seqs = seqs_of(net.sequencer.http, &paced_ids);
    assert!(seqs.iter().all(Option::is_some), "a paced contract is not applied");
    let mut latencies: Vec<f64> = done
        .accepted
        .iter()
        .zip(&seqs)
        .map(|(a, seq)| {
            let at = progress.applied_at.iter().map(|m| m[&seq.unwrap()]).max().unwrap();
            at.saturating_sub(a.sent).as_secs_f64()
        })
        .collect();
    latencies.sort_by(f64::total_cmp);
    eprintln!(
        "load: {} paced contracts, submit to applied everywhere p50 {:.2} s, p99 {:.2} s",
        latencies.len(),
        quantile(&latencies, 0.5),
        quantile(&latencies, 0.99)
    );
}

/// `node run --follow LINK --dht-bootstrap HOST:PORT`: a follower that knows only the link
/// (from `network link`) and the sequencer's DHT address follows through the DHT alone, and
/// both say where their DHT node listens.
#[test]
fn a_follower_given_only_the_link_follows_through_a_private_dht() {
    let env = Env::new();
    env.network("ed25519", "tokens.txt");
    env.ok(&[
        "network",
        "init",
        "--authority",
        "auth.pub",
        "--threshold",
        "1",
        "--out",
        "net.json",
    ]);
    let seq = Daemon::start(
        &env,
        &[
            "node",
            "run",
            "--data-dir",
            "seq",
            "--network",
            "net.json",
            "--sequencer",
            "--key",
            "auth.pem",
            "--cut-every",
            "200ms",
            "--no-dht",
            "--dht-bootstrap",
            "--dht-bind",
            "127.0.0.1:0",
            "--listen",
            "127.0.0.1:0",
            "--http",
            "127.0.0.1:0",
        ],
    );
    let seq_dht = seq.first_line["dht"].as_str().expect("the started line names the DHT");
    assert!(seq_dht.starts_with("127.0.0.1:"), "{seq_dht}");
    let seq_http = http_of(&seq);
    genesis(&env, seq_http);
    let link = env.ok(&["network", "link", "net.json"]);
    let link = link.trim();
    let follower = Daemon::start(
        &env,
        &[
            "node",
            "run",
            "--data-dir",
            "f",
            "--network",
            "net.json",
            "--follow",
            link,
            "--poll",
            "200ms",
            "--dht-bootstrap",
            seq_dht,
            "--dht-bind",
            "127.0.0.1:0",
            "--dht-republish",
            "1s",
            "--listen",
            "127.0.0.1:0",
            "--http",
            "127.0.0.1:0",
        ],
    );
    let f_http = http_of(&follower);
    let status = wait_status(f_http, |s| s["last_seq"] == 1);
    assert_eq!(status["following"], serde_json::json!([]), "no URL followed");
    assert_eq!(status["dht"], follower.first_line["dht"]);
    let status = wait_status(f_http, |s| s["head"]["via"] == "dht");
    assert!(status["head"]["received_at"].as_u64().is_some(), "{status}");

    env.write("student.json", r#"{"actions": [{"action": "register_student", "student": {"id": "S1", "name": "Ada", "department": "CS"}}]}"#);
    let json = env.json(&[
        "contract",
        "submit",
        "student.json",
        "--node",
        &url(seq_http),
        "--wallet",
        "peer1.pem",
        "--wait",
    ]);
    assert_eq!(json["state"], "applied", "{json}");
    let status = wait_status(f_http, |s| s["last_seq"] == 2);
    let (_, on_seq) = get(seq_http, "/v1/status");
    assert_eq!(status["state_root"], on_seq["state_root"]);

    // A link of another network is refused in one line, before the node starts.
    env.wallet("other.pem", "ed25519");
    env.ok(&["network", "init", "--authority", "other.pem", "--threshold", "1", "--out", "o.json"]);
    let other = env.ok(&["network", "link", "o.json"]);
    let err = env.fails(
        &[
            "node",
            "run",
            "--data-dir",
            "g",
            "--network",
            "net.json",
            "--follow",
            other.trim(),
            "--dht-bootstrap",
            seq_dht,
            "--dht-bind",
            "127.0.0.1:0",
            "--listen",
            "127.0.0.1:0",
        ],
        1,
    );
    assert!(err.contains("is of network"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    drop(follower);
}
