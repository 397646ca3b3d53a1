//! Heads in the BitTorrent DHT, on a private DHT made of the nodes themselves (loopback, no
//! public bootstrap): a sequencer puts each head under its member key; followers that know
//! only the network's link find the head, walk back through the swarm to the first bundle
//! (each manifest names its parent's torrent), track new bundles, and put the head again, so
//! a node that joins after the sequencer stopped still finds it, expired, and reports stale.

use std::time::Duration;

use swarmvm_node::{DhtOptions, FollowOptions, Node, NodeOptions, SequencerOptions};
use swarmvm_test_support::http::get;
use swarmvm_test_support::net::student;
use swarmvm_token::{AuthoritySet, Network, sign_contract};
use swarmvm_wallet::{Algorithm, Wallet};

use crate::live::{Live, submit};
use crate::support::{LIMIT, copy, http, until};

fn dht(bootstrap: Vec<String>) -> Option<DhtOptions> {
    Some(DhtOptions {
        bind: "127.0.0.1:0".parse().unwrap(),
        bootstrap,
        republish: Duration::from_millis(500),
    })
}

/// A sequencer signing with `keys`, cutting every `cut_every`, its heads living
/// `max_head_age`, in a DHT joined through `bootstrap` (none: a DHT of its own).
async fn dht_sequencer(
    live: &Live,
    keys: Vec<Wallet>,
    (cut_every, max_head_age): (Duration, Duration),
    bootstrap: Vec<String>,
) -> Node {
    let sequencer =
        SequencerOptions { keys, cut_every, max_head_age, ..SequencerOptions::default() };
    live.start(
        "seq",
        NodeOptions { sequencer: Some(sequencer), dht: dht(bootstrap), ..Default::default() },
    )
    .await
}

/// A node that follows the network's links alone (no URL), joining the DHT through `via`.
async fn link_follower(live: &Live, name: &str, via: &Node) -> Node {
    follower(live, name, via, Vec::new()).await
}

/// A node that follows the network's links and the nodes at `urls`, joining the DHT through
/// `via`.
async fn follower(live: &Live, name: &str, via: &Node, urls: Vec<String>) -> Node {
    let links = swarmvm_dht::links(live.net.network.genesis(), live.net.network.id()).unwrap();
    let follow =
        FollowOptions { urls, poll: Duration::from_millis(200), from_snapshot: false, links };
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
    let times = (Duration::from_millis(100), Duration::from_secs(4));
    let seq = dht_sequencer(&live, vec![copy(&live.net.authority)], times, Vec::new()).await;
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
    // A relay and the links combined: whichever newer valid head comes first.
    let mixed = follower(&live, "mixed", &f2, vec![crate::support::url(&seq)]).await;
    assert!(mixed.wait_applied(3, LIMIT).await, "{:?}", mixed.status());
    let via = mixed.status().head.and_then(|h| h.via).unwrap();
    assert!(via == "dht" || via == "relay", "{via}");
    assert_eq!(seq.status().head.and_then(|h| h.via), Some("self".to_owned()));

    // New bundles are tracked.
    let (code, answer) = submit(&seq, &live.net.contract(1, 1, &[student("S3")]));
    assert_eq!(code, 202, "{answer}");
    assert!(seq.wait_applied(4, LIMIT).await);
    for f in [&f1, &f2, &mixed] {
        assert!(f.wait_applied(4, LIMIT).await, "{:?}", f.status());
        assert_eq!(f.state_root(), seq.state_root());
    }
    mixed.shutdown().await;
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

/// A 2-of-2 network (the test net's authority and a second key), both keys held by the
/// sequencer, so each has a slot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_item_never_replaces_a_good_head_and_blocks_only_its_own_slot() {
    let mut net = swarmvm_test_support::net::TestNet::new(1);
    let second = Wallet::generate(Algorithm::Ed25519).unwrap();
    let set =
        AuthoritySet::new(vec![net.authority.public_key().clone(), second.public_key().clone()], 2)
            .unwrap();
    net.network = Network::from_set(set.clone());
    let id = net.network.id().to_owned();
    let live = Live::of(net);
    let contract = |nonce: u64, student_id: &str| {
        let net = &live.net;
        sign_contract(&net.peers[0], &id, nonce, &[student(student_id)], net.issued_at).unwrap()
    };
    let keys = vec![copy(&live.net.authority), copy(&second)];
    let times = (Duration::from_millis(100), SequencerOptions::default().max_head_age);
    let seq = dht_sequencer(&live, keys, times, Vec::new()).await;
    live.register(&seq);
    assert!(seq.wait_applied(1, LIMIT).await, "{:?}", seq.status());
    let f = link_follower(&live, "f", &seq).await;
    assert!(f.wait_applied(1, LIMIT).await, "{:?}", f.status());
    let good = f.status().head.unwrap();

    // The second member's key puts, in its own slot and far ahead, an item whose head only it
    // signed (fewer than K = 2): the item's own signature holds, the head inside does not.
    let (_, known) = get(http(&seq), "/v1/head");
    let magnet = swarmvm_token::verify_head(
        known["head"].as_str().unwrap(),
        &id,
        &set,
        swarmvm_token::unix_now(),
    )
    .unwrap()
    .magnet;
    let content = swarmvm_token::HeadContent {
        network: &id,
        seq: 1_000,
        bundle: swarmvm_primitives::BundleId::of_payload(b"no such bundle"),
        magnet: &magnet,
        state_root: swarmvm_vm::Hash32::digest(b"no such root"),
        now: swarmvm_token::unix_now(),
        max_age: 600,
        snapshot: None,
    };
    let lone = swarmvm_token::sign_head(&[&second], &content).unwrap();
    let ih = magnet_ih(&magnet);
    let hostile = swarmvm_dht::HeadItem::put(&second, &lone, &ih, &set, 0).unwrap();
    assert!(hostile.head(&id, &set).is_ok(), "the item itself is well formed");
    let attacker =
        swarmvm_dht::DhtNode::start("127.0.0.1:0".parse().unwrap(), &[f.status().dht.unwrap()])
            .await
            .unwrap();
    attacker.put(&hostile).await.unwrap();
    let stored = attacker.get(&hostile.key, id.as_bytes(), None).await;
    assert!(stored.iter().any(|i| i.as_ref().is_ok_and(|i| i.seq == hostile.seq)));

    // New bundles still reach the follower through the first member's slot; the hostile head
    // never becomes its head.
    let (code, answer) = submit(&seq, &contract(1, "S1"));
    assert_eq!(code, 202, "{answer}");
    assert!(seq.wait_applied(2, LIMIT).await);
    assert!(f.wait_applied(2, LIMIT).await, "{:?}", f.status());
    assert_eq!(f.state_root(), seq.state_root());
    let head = f.status().head.unwrap();
    assert_eq!(head.seq, 2);
    assert!(head.issued_at >= good.issued_at);
    assert_eq!(head.signers.len(), 2);
    until("the follower names why it refused the item's head", || {
        f.status().head_refused.is_some_and(|r| r.contains("are required"))
    })
    .await;
    for node in [&seq, &f] {
        node.shutdown().await;
    }
}

/// The info-hash a magnet names.
fn magnet_ih(magnet: &str) -> [u8; 20] {
    let hex = magnet.split("xt=urn:btih:").nth(1).unwrap().get(..40).unwrap();
    data_encoding::HEXLOWER.decode(hex.as_bytes()).unwrap().try_into().unwrap()
}

/// libtorrent, a stock BEP 44 client, joins the nodes' private DHT and reads the sequencer's
/// item with the member's key and the network id as salt: its `ih` is the newest bundle's
/// torrent, and the head inside, rebuilt by an independent script, is the head the node
/// serves and verifies with PyJWT.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn libtorrent_reads_the_sequencers_item_and_finds_the_newest_bundle() {
    let live = Live::new(1);
    let times = (Duration::from_millis(100), Duration::from_secs(600));
    let seq = dht_sequencer(&live, vec![copy(&live.net.authority)], times, Vec::new()).await;
    live.register(&seq);
    assert!(seq.wait_applied(1, LIMIT).await);
    let (code, answer) = submit(&seq, &live.net.contract(0, 1, &[student("S1")]));
    assert_eq!(code, 202, "{answer}");
    assert!(seq.wait_applied(2, LIMIT).await);
    // A second node, so that the DHT is more than the sequencer.
    let f = link_follower(&live, "f", &seq).await;
    assert!(f.wait_applied(2, LIMIT).await, "{:?}", f.status());
    let (_, head) = get(http(&seq), "/v1/head");
    let text = head["head"].as_str().unwrap().to_owned();
    let (_, bundle) = get(http(&seq), "/v1/bundles/2");
    let magnet = bundle["magnet"].as_str().unwrap();
    let ih: String = magnet_ih(magnet).iter().map(|b| format!("{b:02x}")).collect();

    let dir = tempfile::tempdir().unwrap();
    let got = dir.path().join("got.json");
    let boot = [seq.status().dht.unwrap(), f.status().dht.unwrap()].join(",");
    let key = live.net.authority.public_key().ed25519_bytes().unwrap();
    let key_hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
    let network = live.net.network.id().to_owned();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../swarmvm-dht/tests/lt_get_item.py");
    let args =
        [script.to_owned(), boot, key_hex.clone(), network.clone(), got.display().to_string()];
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("python3").args(args).output().unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let mut vector: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&got).unwrap()).unwrap();
    assert_eq!(vector["seq"].as_i64().unwrap() >> 32, 2, "the newest head's item");
    vector["members"] = serde_json::json!([key_hex]);
    vector["member_ids"] = serde_json::json!([live.net.authority.id().to_string()]);
    vector["head"] = serde_json::json!(text);
    let target = swarmvm_dht::target(key, network.as_bytes());
    vector["target"] =
        serde_json::json!(target.iter().map(|b| format!("{b:02x}")).collect::<String>());
    let path = dir.path().join("vector.json");
    std::fs::write(&path, vector.to_string()).unwrap();
    let check = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/vectors/verify_dht_item.py");
    let out = std::process::Command::new("python3").arg(check).arg(&path).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains(&format!("ih {ih}")) && stdout.contains("PyJWT"), "{stdout}");
    for node in [&seq, &f] {
        node.shutdown().await;
    }
}

/// A history longer than the joiner's own fetch slots (4 here, 12 bundles): the walk back
/// sets aside the bundles nearest the head to free slots, remembers their torrents, and the
/// joiner still applies every bundle with the sequencer's root.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_history_longer_than_the_fetch_slots_is_walked_whole() {
    let live = Live::new(1);
    let times = (Duration::from_millis(50), Duration::from_secs(600));
    let seq = dht_sequencer(&live, vec![copy(&live.net.authority)], times, Vec::new()).await;
    live.register(&seq);
    assert!(seq.wait_applied(1, LIMIT).await);
    for nonce in 1..=11 {
        let (code, answer) =
            submit(&seq, &live.net.contract(0, nonce, &[student(&format!("S{nonce}"))]));
        assert_eq!(code, 202, "{answer}");
        assert!(seq.wait_applied(nonce + 1, LIMIT).await, "{:?}", seq.status());
    }
    let links = swarmvm_dht::links(live.net.network.genesis(), live.net.network.id()).unwrap();
    let follow = FollowOptions {
        urls: Vec::new(),
        poll: Duration::from_millis(200),
        from_snapshot: false,
        links,
    };
    let limits = swarmvm_node::NodeLimits { max_pending: 4, ..Default::default() };
    let joiner = live
        .start(
            "joiner",
            NodeOptions {
                follow: Some(follow),
                dht: dht(vec![seq.status().dht.unwrap()]),
                limits,
                ..Default::default()
            },
        )
        .await;
    assert!(joiner.wait_applied(12, LIMIT).await, "{:?}", joiner.status());
    assert_eq!(joiner.state_root(), seq.state_root());
    assert_eq!(joiner.state()["students"]["S11"]["name"], "John Doe");
    for node in [&seq, &joiner] {
        node.shutdown().await;
    }
}

/// A rotation from {A, B} to {B, D} (2 of 2) while a node follows the links of {A, B}: B's
/// slot then carries heads that D co-signed, whom the follower does not know yet. It takes the
/// item's magnet as a hint, walks to the rotation through the swarm, applies it, and then
/// reads and verifies the heads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_follower_reads_heads_signed_by_keys_a_rotation_adds() {
    use swarmvm_bundle::{BundlePosition, CreateOptions, create_bundle};
    let mut net = swarmvm_test_support::net::TestNet::new(1);
    let b = Wallet::generate(Algorithm::Ed25519).unwrap();
    let d = Wallet::generate(Algorithm::Ed25519).unwrap();
    let set =
        AuthoritySet::new(vec![net.authority.public_key().clone(), b.public_key().clone()], 1)
            .unwrap();
    net.network = Network::from_set(set);
    let id = net.network.id().to_owned();
    let live = Live::of(net);
    let a = &live.net.authority;
    let times = (Duration::from_millis(100), Duration::from_secs(600));
    let seq = dht_sequencer(&live, vec![copy(a), copy(&b)], times, Vec::new()).await;
    live.register(&seq);
    assert!(seq.wait_applied(1, LIMIT).await);
    let f = link_follower(&live, "f", &seq).await;
    assert!(f.wait_applied(1, LIMIT).await, "{:?}", f.status());
    let f_dht = f.status().dht.unwrap();

    // Seq 2 rotates to {B, D}, 2 of 2: signed by A (the old threshold) and D (added).
    let last = seq.snapshot().unwrap().last_bundle().unwrap();
    let (_, one) = get(http(&seq), "/v1/bundles/1");
    let dir = tempfile::tempdir().unwrap();
    let new_set =
        AuthoritySet::new(vec![b.public_key().clone(), d.public_key().clone()], 2).unwrap();
    let options = CreateOptions {
        follows: Some(BundlePosition { ..last }),
        parent_info_hash: Some(magnet_ih(one["magnet"].as_str().unwrap())),
        now: swarmvm_test_support::now(),
        authority_set: Some(&new_set),
        ..CreateOptions::default()
    };
    create_bundle(dir.path(), &[a, &d], &live.net.network, &options).unwrap();
    let manifest = std::fs::read_to_string(dir.path().join("manifest.jwt")).unwrap();
    let body = serde_json::json!({ "tokens": [], "contracts": [], "manifest": manifest });
    let (code, answer) = swarmvm_test_support::http::request(
        http(&seq),
        "POST",
        "/v1/registrations",
        Some(&body.to_string()),
    );
    assert_eq!((code, answer["seq"].clone()), (200, serde_json::json!(2)), "{answer}");
    seq.shutdown().await;

    // The sequencer runs again with B's and D's keys, on a DHT joined through the follower.
    let seq = dht_sequencer(&live, vec![copy(&b), copy(&d)], times, vec![f_dht]).await;
    let contract =
        sign_contract(&live.net.peers[0], &id, 1, &[student("S1")], live.net.issued_at).unwrap();
    let (code, answer) = submit(&seq, &contract);
    assert_eq!(code, 202, "{answer}");
    assert!(seq.wait_applied(3, LIMIT).await, "{:?}", seq.status());

    assert!(f.wait_applied(3, LIMIT).await, "{:?}", f.status());
    assert_eq!(f.state_root(), seq.state_root());
    until("the follower reads the head B and D signed, from the DHT", || {
        f.status().head.is_some_and(|h| h.seq == 3 && h.signers.len() == 2)
    })
    .await;
    assert!(f.authorities().contains(d.id().as_ref()));
    for node in [&seq, &f] {
        node.shutdown().await;
    }
}
