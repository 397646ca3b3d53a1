//! A node of a network governed by an authority set: the set in force in its status and
//! API, and a bundle whose torrent was rewritten by `bundle sign` is the same bundle.

use swarmvm_bundle::{CreateOptions, create_bundle, sign_bundle};
use swarmvm_node::{BundleState, Node, NodeOptions};
use swarmvm_swarm::{Swarm, SwarmOptions, TorrentFile};
use swarmvm_test_support::http::get;
use swarmvm_test_support::net::student;
use swarmvm_token::{
    AuthoritySet, IssueTime, Network, Signer, WalletEntry, issue_operations, issue_wallets,
    sign_contract,
};
use swarmvm_wallet::{Algorithm, Wallet};

use crate::support::{LIMIT, add, is, wait_bundle};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_re_signed_torrent_is_the_same_bundle_and_the_set_in_force_is_shown() {
    let dir = tempfile::tempdir().unwrap();
    let keys: Vec<Wallet> = (0..3).map(|_| Wallet::generate(Algorithm::Ed25519).unwrap()).collect();
    let peer = Wallet::generate(Algorithm::Ed25519).unwrap();
    let set = AuthoritySet::new(keys.iter().map(|k| k.public_key().clone()).collect(), 2).unwrap();
    let network = Network::from_set(set);
    let now = swarmvm_token::unix_now();
    let time = IssueTime { now, ttl: 3600 };
    let ops = std::collections::BTreeMap::from([(
        "register_student".to_owned(),
        "register_student".into(),
    )]);
    let handlers = swarmvm_vm::HANDLER_NAMES;
    let entry = WalletEntry { label: "peer".into(), key: peer.public_key().clone() };
    let tokens = [
        issue_operations(&Signer::Wallet(&keys[0]), &ops, handlers, time).unwrap(),
        issue_wallets(&Signer::Wallet(&keys[2]), &[entry], time).unwrap(),
    ];
    let contract = sign_contract(&peer, network.id(), 1, &[student("S1")], now).unwrap();
    let bundle = dir.path().join("bundle-1");
    std::fs::create_dir_all(&bundle).unwrap();
    std::fs::write(bundle.join("registration_tokens.txt"), tokens.join("\n") + "\n").unwrap();
    std::fs::write(bundle.join("contracts.jsonl"), format!("{contract}\n")).unwrap();
    let created = create_bundle(
        &bundle,
        &[&keys[0], &keys[1]],
        &network,
        &CreateOptions { now, ..CreateOptions::default() },
    )
    .unwrap();

    let seeder = Swarm::start(SwarmOptions::loopback(), &dir.path().join("seeder")).await.unwrap();
    let seed = |dir: std::path::PathBuf| {
        let seeder = &seeder;
        async move {
            let torrent = TorrentFile::create(&dir, &[], None).unwrap();
            let t = seeder.seed(&torrent, &dir).await.unwrap();
            tokio::time::timeout(LIMIT, t.wait_complete()).await.unwrap().unwrap();
            torrent
        }
    };
    let first = seed(bundle.clone()).await;
    let node = Node::start(NodeOptions {
        data_dir: dir.path().join("node"),
        network: Some(network.clone()),
        swarm: SwarmOptions {
            peers: vec![seeder.listen_addr().unwrap()],
            ..SwarmOptions::loopback()
        },
        http: Some("127.0.0.1:0".parse().unwrap()),
        ..NodeOptions::default()
    })
    .await
    .unwrap();
    let first_hash = add(&node, &first);
    wait_bundle(&node, &first_hash, is(BundleState::Applied)).await;
    let root = node.status().state_root;

    // The status and the API show the set in force and the network id.
    let status = node.status();
    assert_eq!(status.network.as_ref(), Some(network.network_id()));
    assert_eq!(status.authorities.threshold, 2);
    let mut ids: Vec<_> = keys.iter().map(|k| k.id()).collect();
    ids.sort();
    assert_eq!(status.authorities.members, ids);
    let http = node.http_addr().unwrap();
    let (code, set) = get(http, "/v1/authorities");
    assert_eq!(code, 200);
    assert_eq!(set["network"], network.id());
    assert_eq!(set["threshold"], 2);
    assert_eq!(set["authorities"].as_array().unwrap().len(), 3);
    let (code, page) = get(http, "/v1/state/authorities");
    assert_eq!(code, 200, "{page}");
    assert_eq!(page["entries"][0]["id"], "set", "{page}");
    let (_, status_json) = get(http, "/v1/status");
    assert_eq!(status_json["authorities"]["threshold"], 2, "{status_json}");
    // A wallet with its last nonce, and an applied bundle with the magnet this node seeds.
    let (code, w) = get(http, &format!("/v1/wallets/{}", peer.id()));
    assert_eq!(code, 200, "{w}");
    assert_eq!((w["nonce"].as_u64(), w["revoked"].as_bool()), (Some(1), Some(false)), "{w}");
    assert_eq!(w["label"], "peer");
    let (code, _) = get(http, "/v1/wallets/nobody");
    assert_eq!(code, 404);
    let (code, b) = get(http, "/v1/bundles/1");
    assert_eq!(code, 200, "{b}");
    assert_eq!(b["bundle"], created.id.to_string());
    assert_eq!(b["magnet"], first.magnet().to_string());
    assert!(b["manifest"].as_str().unwrap().starts_with('{'), "two signatures: general JSON");
    assert_eq!(get(http, "/v1/bundles/2").0, 404);
    // What became of the contract, by its id (the SHA-256 of its token).
    let id = swarmvm_vm::Hash32::digest(contract.as_bytes()).to_hex();
    let (code, c) = get(http, &format!("/v1/contracts/{id}"));
    assert_eq!(code, 200, "{c}");
    assert_eq!((c["state"].as_str(), c["seq"].as_u64()), (Some("applied"), Some(1)), "{c}");
    assert_eq!(c["receipt"]["signer"], peer.id().to_string());
    assert_eq!(get(http, &format!("/v1/contracts/{}", "0".repeat(64))).0, 404);
    assert_eq!(get(http, "/v1/contracts/xyz").0, 400);
    assert_eq!(get(http, "/v1/bundles/x").0, 400);

    // A third signature rewrites the manifest and the torrent; the identity stays, and a
    // node that applied the first torrent takes the second for the same bundle.
    let (id, signers) = sign_bundle(&bundle, &keys[2]).unwrap();
    assert_eq!((id, signers.len()), (created.id, 3));
    let second = seed(bundle.clone()).await;
    assert_ne!(second.info_hash(), first.info_hash());
    let second_hash = add(&node, &second);
    let b = wait_bundle(&node, &second_hash, is(BundleState::Applied)).await;
    assert_eq!(b.seq, Some(1));
    assert!(node.evidence().unwrap().is_empty(), "the same bundle is not a fork");
    assert_eq!(node.status().state_root, root);
    assert_eq!(node.status().last_seq, 1);
    node.shutdown().await;
}
