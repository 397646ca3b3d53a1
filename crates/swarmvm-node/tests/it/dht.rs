//! Heads in the BitTorrent DHT, on a private DHT made of the nodes themselves (loopback, no
//! public bootstrap): a sequencer puts each head under its member key; followers that know
//! only the network's link find the head, walk back through the swarm to the first bundle
//! (each manifest names its parent's torrent), track new bundles, and put the head again, so
//! a node that joins after the sequencer stopped still finds it, expired, and reports stale.

use std::time::Duration;

use swarmvm_node::{DhtOptions, FollowOptions, Node, NodeOptions, SequencerOptions};
use swarmvm_test_support::http::get;
use swarmvm_test_support::net::student;

use crate::live::{Live, submit};
use crate::support::{LIMIT, copy, http, until};

fn dht(bootstrap: Vec<String>) -> Option<DhtOptions> {
    Some(DhtOptions {
        bind: "127.0.0.1:0".parse().unwrap(),
        bootstrap,
        republish: Duration::from_millis(500),
    })
}

/// A node that follows the network's links alone (no URL), joining the DHT through `via`.
async fn link_follower(live: &Live, name: &str, via: &Node) -> Node {
    let links = swarmvm_dht::links(live.net.network.genesis(), live.net.network.id()).unwrap();
    let follow = FollowOptions {
        urls: Vec::new(),
        poll: Duration::from_millis(200),
        from_snapshot: false,
        links,
    };
    let bootstrap = vec![via.status().dht.expect("the node runs a DHT")];
    live.start(
        name,
        NodeOptions { follow: Some(follow), dht: dht(bootstrap), ..Default::default() },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn followers_that_know_only_the_link_catch_up_through_the_dht_and_outlive_the_sequencer() {
    let live = Live::new(2);
    let sequencer = SequencerOptions {
        keys: vec![copy(&live.net.authority)],
        cut_every: Duration::from_millis(100),
        max_head_age: Duration::from_secs(4),
        ..SequencerOptions::default()
    };
    let seq = live
        .start(
            "seq",
            NodeOptions { sequencer: Some(sequencer), dht: dht(Vec::new()), ..Default::default() },
        )
        .await;
    let seq_dht = seq.status().dht.expect("the sequencer runs a DHT");
    assert!(seq_dht.starts_with("127.0.0.1:"), "{seq_dht}");
    // A history of three bundles before anyone follows.
    live.register(&seq);
    assert!(seq.wait_applied(1, LIMIT).await);
    for (nonce, id) in [(1, "S1"), (2, "S2")] {
        let (code, answer) = submit(&seq, &live.net.contract(0, nonce, &[student(id)]));
        assert_eq!(code, 202, "{answer}");
        assert!(seq.wait_applied(nonce + 1, LIMIT).await, "{:?}", seq.status());
    }
    // Each manifest after the first names its parent's torrent.
    for n in 2..=3 {
        let (_, at) = get(http(&seq), &format!("/v1/bundles/{n}"));
        let (_, parent) = get(http(&seq), &format!("/v1/bundles/{}", n - 1));
        let manifest = swarmvm_token::peek_manifest(at["manifest"].as_str().unwrap()).unwrap();
        let magnet = parent["magnet"].as_str().unwrap();
        let ih = manifest.parent_info_hash.expect("a parent_info_hash");
        let hex: String = ih.iter().map(|b| format!("{b:02x}")).collect();
        assert!(magnet.contains(&hex), "seq {n} names {hex}; its parent is {magnet}");
    }

    let f1 = link_follower(&live, "f1", &seq).await;
    let f2 = link_follower(&live, "f2", &f1).await;
    for f in [&f1, &f2] {
        assert!(f.wait_applied(3, LIMIT).await, "{:?}", f.status());
        assert_eq!(f.state_root(), seq.state_root());
        let status = f.status();
        assert!(status.following.is_empty(), "no URL followed");
        assert_eq!(status.head.as_ref().and_then(|h| h.via.as_deref()), Some("dht"));
        assert!(status.head.unwrap().received_at.is_some());
    }
    assert_eq!(seq.status().head.and_then(|h| h.via), Some("self".to_owned()));

    // New bundles are tracked.
    let (code, answer) = submit(&seq, &live.net.contract(1, 1, &[student("S3")]));
    assert_eq!(code, 202, "{answer}");
    assert!(seq.wait_applied(4, LIMIT).await);
    for f in [&f1, &f2] {
        assert!(f.wait_applied(4, LIMIT).await, "{:?}", f.status());
        assert_eq!(f.state_root(), seq.state_root());
    }
    assert_eq!(f2.state()["students"]["S3"]["name"], "John Doe");

    // A follower holds the head's signed items to put again: /v1/head gives them, and each
    // carries the head it gives.
    until("f1 holds the head's DHT items", || {
        let (code, head) = get(http(&f1), "/v1/head");
        code == 200 && head["items"].as_array().is_some_and(|i| !i.is_empty())
    })
    .await;
    let (_, head) = get(http(&f1), "/v1/head");
    let text = head["head"].as_str().unwrap();
    for item in head["items"].as_array().unwrap() {
        let decode = |s: &str| data_encoding::HEXLOWER.decode(s.as_bytes()).unwrap();
        let parsed = swarmvm_dht::HeadItem {
            key: decode(item["k"].as_str().unwrap()).try_into().unwrap(),
            salt: live.net.network.id().as_bytes().to_vec(),
            seq: item["seq"].as_i64().unwrap(),
            value: data_encoding::BASE64URL_NOPAD
                .decode(item["v"].as_str().unwrap().as_bytes())
                .unwrap(),
            signature: decode(item["sig"].as_str().unwrap()).try_into().unwrap(),
        };
        let (_, inside) = parsed.head(live.net.network.id(), live.net.network.genesis()).unwrap();
        assert_eq!(inside, text);
        assert_eq!(parsed.seq >> 32, 4, "the head's seq in the high bits");
    }

    // The sequencer stops; its heads expire. A node that joins afterwards with only the
    // link (through f2) finds the last head that the followers put again, catches up on the
    // whole history through the swarm, and reports stale.
    let root = seq.state_root();
    seq.shutdown().await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let joiner = link_follower(&live, "joiner", &f2).await;
    assert!(joiner.wait_applied(4, LIMIT).await, "{:?}", joiner.status());
    assert_eq!(joiner.state_root(), root);
    until("the joiner reports stale", || joiner.status().stale).await;
    for node in [&f1, &f2, &joiner] {
        node.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_of_another_network_or_without_a_dht_is_refused_in_one_line() {
    let live = Live::new(1);
    let other = Live::new(1);
    let links = swarmvm_dht::links(other.net.network.genesis(), other.net.network.id()).unwrap();
    let follow = |links: Vec<String>| FollowOptions {
        urls: Vec::new(),
        poll: Duration::from_millis(200),
        from_snapshot: false,
        links,
    };
    let dir = tempfile::tempdir().unwrap();
    let start = |name: &str, follow: FollowOptions, dht: Option<DhtOptions>| {
        Node::start(NodeOptions {
            data_dir: dir.path().join(name),
            network: Some(live.net.network.clone()),
            swarm: swarmvm_swarm::SwarmOptions::loopback(),
            follow: Some(follow),
            dht,
            ..Default::default()
        })
    };
    let e = start("a", follow(links), dht(Vec::new())).await.unwrap_err().to_string();
    assert!(e.contains("is of network"), "{e}");
    assert!(!e.contains('\n'));
    let own = swarmvm_dht::links(live.net.network.genesis(), live.net.network.id()).unwrap();
    let e = start("b", follow(own.clone()), None).await.unwrap_err().to_string();
    assert!(e.contains("needs the DHT"), "{e}");
    let e = start("c", follow(vec!["magnet:?xs=urn:btpk:zz".into()]), dht(Vec::new()))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("--follow"), "{e}");
}
