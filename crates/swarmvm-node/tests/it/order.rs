//! Bundles apply in order, exactly once; broken bundles never apply and the node says why.

use swarmvm_node::BundleState;
use swarmvm_test_support::net::{course, nft, student, vote};

use crate::support::{Authority, LIMIT, add, is, wait_bundle};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_bundles_delivered_out_of_order_apply_in_order() {
    let a = Authority::new(2).await;
    let (b1, t1) =
        a.publish("bundle-1", true, &[a.net.contract(0, 1, &[student("S001")])], None).await;
    let (b2, t2) =
        a.publish("bundle-2", false, &[a.net.contract(0, 2, &[course("C001")])], Some(&b1)).await;
    let (_b3, t3) =
        a.publish("bundle-3", false, &[a.net.contract(1, 1, &[vote("P001")])], Some(&b2)).await;
    let node = a.node("peer").await;
    let h3 = add(&node, &t3);
    let h2 = add(&node, &t2);
    // Both arrive, verify, and wait: nothing applies before seq 1.
    let w3 = wait_bundle(&node, &h3, is(BundleState::Waiting)).await;
    wait_bundle(&node, &h2, is(BundleState::Waiting)).await;
    assert_eq!(w3.seq, Some(3));
    assert!(w3.reason.as_deref().unwrap().contains("waiting for the bundles before seq 3"));
    assert_eq!(node.status().last_seq, 0);
    let h1 = add(&node, &t1);
    assert!(node.wait_applied(3, LIMIT).await);
    for h in [&h1, &h2, &h3] {
        wait_bundle(&node, h, is(BundleState::Applied)).await;
    }
    let log = node.log(1, 10).unwrap();
    let seqs: Vec<Option<u64>> = log.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, [Some(1), Some(2), Some(3)], "applied in order, each once");
    let state = node.state();
    assert_eq!(state["students"]["S001"]["name"], "John Doe");
    assert_eq!(state["courses"]["C001"]["name"], "Blockchain Technology");
    assert_eq!(state["proposals"]["P001"]["votes"], 1);
    assert!(node.bundles().iter().all(|b| b.fetched > 0), "every bundle came over BitTorrent");
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_bundles_are_never_applied_and_the_node_says_why() {
    let a = Authority::new(1).await;
    let (b1, t1) =
        a.publish("bundle-1", true, &[a.net.contract(0, 1, &[student("S001")])], None).await;
    let node = a.node("peer").await;
    add(&node, &t1);
    assert!(node.wait_applied(1, LIMIT).await);
    let root = node.state_root();

    // A file changed after signing (same length, so only the hash can tell).
    let changed = a.net.bundle(
        a.dir.path(),
        "changed",
        false,
        &[a.net.contract(0, 2, &[course("C001")])],
        Some(&b1),
    );
    let mut text = std::fs::read_to_string(changed.join("contracts.jsonl")).unwrap();
    text = text.replacen('e', "f", 1);
    std::fs::write(changed.join("contracts.jsonl"), text).unwrap();
    let t_changed = a.seed(&changed).await;

    // A manifest signed by a key the node does not trust.
    let stranger = swarmvm_test_support::net::TestNet::new(1);
    let foreign = stranger.bundle(a.dir.path(), "foreign", true, &[], None);
    let t_foreign = a.seed(&foreign).await;

    // A wrong parent: seq 2 claiming to follow a bundle that was never applied.
    let other_first = a.net.bundle(a.dir.path(), "other-first", false, &[], None);
    let wrong_parent = a.net.bundle(
        a.dir.path(),
        "wrong-parent",
        false,
        &[a.net.contract(0, 2, &[nft("N1")])],
        Some(&other_first),
    );
    let t_wrong_parent = a.seed(&wrong_parent).await;

    // A skipped seq: seq 3 while seq 2 never comes.
    let ghost = a.net.bundle(a.dir.path(), "ghost-2", false, &[], Some(&b1));
    let skipped = a.net.bundle(
        a.dir.path(),
        "skipped-3",
        false,
        &[a.net.contract(0, 2, &[vote("P9")])],
        Some(&ghost),
    );
    let t_skipped = a.seed(&skipped).await;

    let cases = [
        (
            add(&node, &t_changed),
            BundleState::Rejected,
            "contracts.jsonl does not match the manifest's sha-256",
        ),
        (add(&node, &t_foreign), BundleState::Rejected, "is not a member of the authority set"),
        (add(&node, &t_wrong_parent), BundleState::Rejected, "has parent"),
        (add(&node, &t_skipped), BundleState::Waiting, "waiting for the bundles before seq 3"),
    ];
    for (hash, state, says) in &cases {
        let b = wait_bundle(&node, hash, is(*state)).await;
        let reason = b.reason.unwrap();
        assert!(reason.contains(says), "{hash}: {reason}");
        assert!(!reason.contains('\n'));
    }
    let wrong = node.bundles().into_iter().find(|b| b.info_hash == cases[2].0).unwrap();
    let expected_parent = a.net.open(&b1).unwrap().id().to_string();
    assert!(wrong.reason.unwrap().contains(&expected_parent), "names the parent it expected");
    // The status route says the same, and nothing changed.
    let (code, status) = swarmvm_test_support::http::get(node.http_addr().unwrap(), "/v1/status");
    assert_eq!(code, 200);
    let reasons: Vec<String> = status["torrents"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["reason"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(reasons.len(), 4, "{status}");
    assert_eq!(node.state_root(), root, "no broken bundle changed the state");
    assert_eq!(node.status().last_seq, 1);
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_node_keeps_its_state_and_seeds_what_it_applied() {
    let a = Authority::new(1).await;
    let (_b1, t1) =
        a.publish("bundle-1", true, &[a.net.contract(0, 1, &[student("S001")])], None).await;
    let data = a.dir.path().join("peer");
    let node = a.node_at(&data).await;
    add(&node, &t1);
    assert!(node.wait_applied(1, LIMIT).await);
    let root = node.state_root();
    node.shutdown().await;
    drop(node);
    a.seeder.stop().await;

    // Restarted, with the authority's seeder gone: it resumes from its own data.
    let again = swarmvm_node::Node::start(swarmvm_node::NodeOptions {
        data_dir: data.clone(),
        network: Some(a.net.network.clone()),
        swarm: swarmvm_swarm::SwarmOptions::loopback(),
        wallet: None,
        http: None,
        watch: None,
        ..Default::default()
    })
    .await
    .unwrap();
    assert_eq!(again.state_root(), root);
    assert_eq!(again.status().last_seq, 1);
    let hash = t1.info_hash().to_string();
    let b = wait_bundle(&again, &hash, is(BundleState::Applied)).await;
    assert_eq!(b.fetched, 0, "nothing fetched again");

    // A newcomer that knows only the restarted node gets the bundle from it.
    let newcomer = swarmvm_node::Node::start(swarmvm_node::NodeOptions {
        data_dir: a.dir.path().join("newcomer"),
        network: Some(a.net.network.clone()),
        swarm: swarmvm_swarm::SwarmOptions {
            peers: vec![again.listen_addr().unwrap()],
            ..swarmvm_swarm::SwarmOptions::loopback()
        },
        wallet: None,
        http: None,
        watch: None,
        ..Default::default()
    })
    .await
    .unwrap();
    add(&newcomer, &t1);
    assert!(newcomer.wait_applied(1, LIMIT).await);
    assert_eq!(newcomer.state_root(), root);
    newcomer.shutdown().await;
    again.shutdown().await;
}
