//! Authority replicas as processes: `node run --sequencer --key member<i>.pem --cluster ...`.
//! The leader is SIGKILLed while clients offer 1,000 contracts/s with `--cut-every 250ms`; a
//! follower sees a higher K-signed head soon after, no contract answered 202 is lost or
//! applied twice, no seq has two bundles, and the killed replica, restarted, catches up. A
//! replica whose key is not a member does not start.

use std::time::{Duration, Instant};

use swarmvm_test_support::http::get;
use swarmvm_test_support::live::submit;
use swarmvm_test_support::netns::Testbed;
use swarmvm_test_support::replicas::{
    ReplicaNet, ReplicaOptions, applied_order_with, check_history, check_orders, write_network,
};

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

/// `POST path` with `body` to `url` from inside peer `i`'s namespace: the status and the JSON
/// answer (status 0 when nothing answered within 5 s).
fn post_in(bed: &Testbed, i: usize, url: &str, body: &str) -> (u16, serde_json::Value) {
    const POST: &str = r#"
import json, sys, urllib.request, urllib.error
req = urllib.request.Request(sys.argv[1], data=sys.argv[2].encode(), method="POST")
try:
    with urllib.request.urlopen(req, timeout=15) as r:
        print(json.dumps([r.status, json.load(r)]))
except urllib.error.HTTPError as e:
    print(json.dumps([e.code, json.loads(e.read() or b"null")]))
except Exception as e:
    print(json.dumps([0, str(e)]))
"#;
    let out = bed
        .command(i, std::path::Path::new("python3"))
        .args(["-c", POST, url, body])
        .output()
        .expect("cannot run python3");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("the poster's answer");
    (u16::try_from(v[0].as_u64().unwrap()).unwrap(), v[1].clone())
}

/// Waits (bounded by `limit`) until `ok` holds for the status of `url`, read from inside
/// peer `i`'s namespace.
fn wait_in(
    bed: &Testbed,
    i: usize,
    url: &str,
    limit: Duration,
    ok: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(s) = bed.get_json(i, &format!("{url}/v1/status"))
            && ok(&s)
        {
            return s;
        }
        assert!(Instant::now() < deadline, "{url} never got there");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Three replicas and a follower, each in its own network namespace behind a 100 Mbit/s link:
/// the leader's link is cut; the majority elects a new leader and goes on, the isolated
/// replica takes nothing and produces no K-signed head; once the link is back there is one
/// history.
#[test]
fn a_partition_isolating_the_leader_leaves_one_history() {
    let bed = Testbed::new("rp", &[100, 100, 100, 100]);
    let env = Env::new();
    let (network, wallets, tokens) = write_network(env.dir.path(), 3, 2, 1);
    let url = |i: usize| format!("http://{}:8080", bed.peers[i].addr);
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_swarmvm"));
    let start = |i: usize, args: Vec<String>| {
        let mut all: Vec<String> = vec![
            "node".into(),
            "run".into(),
            "--network".into(),
            "network.json".into(),
            "--no-dht".into(),
            "--listen".into(),
            format!("{}:4240", bed.peers[i].addr),
            "--http".into(),
            format!("{}:8080", bed.peers[i].addr),
        ];
        all.extend(args);
        let refs: Vec<&str> = all.iter().map(String::as_str).collect();
        let p = bed.spawn_json(i, bin, env.dir.path(), &refs);
        p.wait_event("started", Duration::from_secs(60));
        p
    };
    let replicas: Vec<_> = (0..3)
        .map(|i| {
            let mut args: Vec<String> = vec![
                "--data-dir".into(),
                format!("replica{i}"),
                "--sequencer".into(),
                "--key".into(),
                format!("member{i}.pem"),
                "--cut-every".into(),
                "250ms".into(),
                "--cluster".into(),
            ];
            args.extend((0..3).filter(|j| *j != i).map(url));
            Some(start(i, args))
        })
        .collect();
    let body = serde_json::json!({ "tokens": tokens }).to_string();
    let deadline = Instant::now() + Duration::from_secs(60);
    while post_in(&bed, 3, &format!("{}/v1/registrations", url(0)), &body).0 != 202 {
        assert!(Instant::now() < deadline, "the replicas never took the registrations");
        std::thread::sleep(Duration::from_millis(200));
    }
    let mut follow: Vec<String> =
        vec!["--data-dir".into(), "follower".into(), "--poll".into(), "100ms".into()];
    for i in 0..3 {
        follow.extend(["--follow".into(), url(i)]);
    }
    let _follower = start(3, follow);
    let contracts = swarmvm_test_support::live::sign_for(&network, &wallets, 3);
    // The ids of the contracts answered 202, for the history checker.
    let acked = std::cell::RefCell::new(Vec::new());
    let submit = |via: usize, nonce: usize| {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (code, answer) =
                post_in(&bed, 3, &format!("{}/v1/contracts", url(via)), &contracts[0][nonce - 1]);
            if code == 202 {
                acked.borrow_mut().push(answer["id"].as_str().unwrap().to_owned());
                return;
            }
            assert!(Instant::now() < deadline, "contract {nonce} never taken: {code} {answer}");
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    submit(1, 1);
    for i in 0..4 {
        wait_in(&bed, 3, &url(i), Duration::from_secs(60), |s| s["last_seq"] == 2);
    }

    // The leader's link is cut.
    let leader = (0..3)
        .find(|i| {
            bed.get_json(3, &format!("{}/v1/status", url(*i)))
                .is_some_and(|s| s["cluster"]["role"] == "leader")
        })
        .expect("a leader");
    bed.cut(leader);
    let majority: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
    // The isolated replica takes nothing: asked from its own namespace, it answers no 202.
    let (code, answer) =
        post_in(&bed, leader, &format!("{}/v1/contracts", url(leader)), &contracts[0][2]);
    // It answers within its proposal limit (5 s) that a majority did not take it, rather
    // than holding the request until it hears of the newer term.
    assert_eq!(code, 503, "the isolated replica's answer: {answer}");
    assert!(answer.to_string().contains("a majority did not take it"), "{answer}");
    // The majority goes on.
    submit(majority[0], 2);
    let after = wait_in(&bed, 3, &url(majority[1]), Duration::from_secs(60), |s| {
        s["last_seq"].as_u64() >= Some(3) && s["cluster"]["role"].is_string()
    });
    let isolated = bed.get_json(leader, &format!("{}/v1/status", url(leader))).expect("its status");
    assert!(
        isolated["head"]["seq"].as_u64().unwrap_or(0) <= 2,
        "the isolated replica has a newer head: {isolated}"
    );
    assert_eq!(isolated["last_seq"], 2, "{isolated}");
    // The link back: the isolated replica catches up, and there is one history.
    bed.restore(leader);
    // Every node comes to the same seq and root, at least the majority's. The nodes are
    // compared when they agree, not each as it reaches that seq: read one by one, nodes
    // that had gone further were compared with nodes that had not.
    let least = after["last_seq"].as_u64().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let seq = loop {
        let states: Vec<(Option<u64>, serde_json::Value)> = (0..4)
            .map(|i| {
                let s = bed.get_json(3, &format!("{}/v1/status", url(i))).unwrap_or_default();
                (s["last_seq"].as_u64(), s["state_root"].clone())
            })
            .collect();
        if states.iter().all(|s| *s == states[0] && s.0 >= Some(least)) {
            break states[0].0.unwrap();
        }
        assert!(Instant::now() < deadline, "no one history after the heal: {states:?}");
        std::thread::sleep(Duration::from_millis(200));
    };
    for s in 1..=seq {
        let ids: Vec<serde_json::Value> = (0..4)
            .map(|i| {
                bed.get_json(3, &format!("{}/v1/bundles/{s}", url(i))).unwrap()["bundle"].clone()
            })
            .collect();
        assert!(ids.iter().all(|id| *id == ids[0] && id.is_string()), "seq {s}: {ids:?}");
    }
    let orders: Vec<_> = (0..4)
        .map(|i| {
            applied_order_with(|path| {
                bed.get_json(3, &format!("{}{path}", url(i))).expect("a page of receipts")
            })
        })
        .collect();
    assert_eq!(check_orders(&orders, &acked.borrow()), Ok(2), "the history of the run");
    drop(replicas);
}
