//! Authority replicas as processes: `node run --sequencer --key member<i>.pem --cluster ...`.
//! The leader is SIGKILLed while clients offer 1,000 contracts/s with `--cut-every 250ms`; a
//! follower sees a higher K-signed head soon after, no contract answered 202 is lost or
//! applied twice, no seq has two bundles, and the killed replica, restarted, catches up. A
//! replica whose key is not a member does not start.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use swarmvm_test_support::http::get;
use swarmvm_test_support::live::submit;
use swarmvm_test_support::replicas::{ReplicaNet, ReplicaOptions, check_history};

use crate::support::Env;

fn options(followers: usize) -> ReplicaOptions {
    ReplicaOptions {
        bin: env!("CARGO_BIN_EXE_swarmvm").into(),
        members: 3,
        threshold: 2,
        followers,
        wallets: 32,
        cut_every: "250ms".into(),
        cut_at: 1000,
    }
}

/// The newest head a node holds: its seq and how many signed it.
fn head_of(http: std::net::SocketAddr) -> (u64, usize) {
    let (_, s) = get(http, "/v1/status");
    let seq = s["head"]["seq"].as_u64().unwrap_or(0);
    let signers = s["head"]["signers"].as_array().map_or(0, Vec::len);
    (seq, signers)
}

#[test]
fn the_leader_killed_under_load_loses_no_acknowledged_contract_and_comes_back() {
    let mut net = ReplicaNet::start(&options(1));
    let follower = net.followers[0].http;
    let mut urls = net.urls();
    urls.push(format!("http://{follower}"));
    // 1,000 contracts/s offered for 5 s, through every replica and the follower.
    let contracts = net.sign(160);
    let start = Instant::now();
    let load = {
        let urls = urls.clone();
        let contracts = contracts.clone();
        std::thread::spawn(move || {
            submit(&urls, &contracts, 32, Some(1000.0), Duration::from_secs(5), start)
        })
    };
    std::thread::sleep(Duration::from_secs(2));
    let leader = net.leader(Duration::from_secs(10));
    let (before, _) = head_of(follower);
    net.kill(leader);
    let killed = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let failover = loop {
        let (seq, signers) = head_of(follower);
        if seq > before && signers >= 2 {
            break killed.elapsed();
        }
        assert!(
            killed.elapsed() < Duration::from_secs(30),
            "no higher K-signed head after the kill"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    stop.store(true, Ordering::Relaxed);
    eprintln!(
        "replicas: the follower saw a higher K-signed head {:.2} s after the leader's SIGKILL",
        failover.as_secs_f64()
    );
    let done = load.join().unwrap();
    let acked: Vec<String> = done.accepted.iter().map(|a| a.id.clone()).collect();
    eprintln!(
        "replicas: {} contracts answered 202 of {} offered, refusals {:?}",
        acked.len(),
        contracts.iter().map(Vec::len).sum::<usize>(),
        done.refused
    );
    assert!(acked.len() > 1000, "too few contracts taken: {:?}", done.refused);

    // The killed replica, restarted on its address, catches up.
    net.restart(leader);
    let seq = net.settle(Duration::from_secs(300));
    let nodes = net.running();
    let applied = check_history(&nodes, &acked).unwrap_or_else(|e| panic!("history: {e}"));
    eprintln!(
        "replicas: history checked on {} nodes: {applied} contracts in one order, seq {seq}",
        nodes.len()
    );
    // One bundle a seq everywhere, and no fork evidence anywhere.
    for s in 1..=seq {
        let ids: Vec<String> = nodes
            .iter()
            .map(|n| {
                get(*n, &format!("/v1/bundles/{s}")).1["bundle"].as_str().unwrap_or("").to_owned()
            })
            .collect();
        assert!(ids.iter().all(|i| !i.is_empty() && *i == ids[0]), "seq {s}: {ids:?}");
    }
    for n in &nodes {
        let (_, evidence) = get(*n, "/v1/evidence");
        assert_eq!(evidence["evidence"].as_array().map_or(0, Vec::len), 0, "{evidence}");
        assert!(evidence.get("equivocations").is_none(), "{evidence}");
    }
}

#[test]
fn a_replica_whose_key_is_not_a_member_is_refused() {
    let net = ReplicaNet::start(&options(0));
    let env = Env::new();
    env.wallet("outsider.pem", "ed25519");
    std::fs::copy(net.path().join("network.json"), env.path("network.json")).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let mut args = vec![
        "node",
        "run",
        "--data-dir",
        "outsider",
        "--network",
        "network.json",
        "--sequencer",
        "--key",
        "outsider.pem",
        "--no-dht",
        "--listen",
        "127.0.0.1:0",
    ];
    let http = port.to_string();
    args.extend(["--http", &http, "--cluster"]);
    let urls = net.urls();
    args.extend(urls.iter().map(String::as_str));
    let err = env.fails(&args, 1);
    assert!(err.contains("is not a member of the authority set in force"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    // The members go on without it.
    net.leader(Duration::from_secs(10));
}

#[test]
fn demo_live_with_three_replicas_survives_the_leaders_sigkill_with_one_root() {
    let env = Env::new();
    let out = env.json(&["demo", "--live", "--replicas", "3", "--peers", "2"]);
    assert_eq!(out["agree"], true, "{out}");
    assert_eq!(out["threshold"], 2, "{out}");
    assert_eq!(out["replicas"].as_array().unwrap().len(), 3, "{out}");
    let failover = out["failover_ms"].as_f64().expect("a failover time");
    assert!(failover > 0.0, "{out}");
    let (killed, after) = (out["killed"].as_str().unwrap(), out["leader_after"].as_str().unwrap());
    assert_ne!(killed, after, "{out}");
    assert_eq!(out["state"]["students"]["S001"]["name"], "John Doe", "{out}");
    assert_eq!(out["state"]["proposals"]["P001"]["votes"], 2, "{out}");
}
