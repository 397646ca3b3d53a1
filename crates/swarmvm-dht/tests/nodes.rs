//! Head items through a private DHT of `DhtNode`s on 127.0.0.1: put by a member's node, found
//! by any other, replaced by a newer head, never by an older one, and put again by a node that
//! does not hold the key.
#![allow(clippy::unwrap_used, missing_docs)]

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use swarmvm_dht::{DhtNode, HeadItem};
use swarmvm_primitives::{BundleId, Hash32};
use swarmvm_token::{AuthoritySet, HeadContent, sign_head, verify_head};
use swarmvm_wallet::Wallet;

const IH: &str = "0123456789abcdef0123456789abcdef01234567";

fn ih() -> [u8; 20] {
    let v: Vec<u8> =
        (0..40).step_by(2).map(|i| u8::from_str_radix(&IH[i..i + 2], 16).unwrap()).collect();
    v.try_into().unwrap()
}

fn head(w: &[Wallet], set: &AuthoritySet, seq: u64, now: u64) -> String {
    let network = set.network_id().to_string();
    let magnet = format!("magnet:?xt=urn:btih:{IH}&dn=bundle-{seq}");
    sign_head(
        &[&w[0], &w[1]],
        &HeadContent {
            network: &network,
            seq,
            bundle: BundleId::of_payload(format!("{seq}").as_bytes()),
            magnet: &magnet,
            state_root: Hash32::digest(format!("{seq}").as_bytes()),
            now,
            max_age: 600,
            snapshot: None,
        },
    )
    .unwrap()
}

/// A private DHT of `n` nodes on loopback, each joining through the first.
async fn private_dht(n: usize) -> Vec<DhtNode> {
    let first = DhtNode::start(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0), &[]).await.unwrap();
    let boot = vec![first.addr().to_string()];
    let mut nodes = vec![first];
    for _ in 1..n {
        let node = DhtNode::start(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0), &boot).await.unwrap();
        assert!(node.bootstrapped().await, "a node did not join through {boot:?}");
        nodes.push(node);
    }
    nodes
}

/// The newest item in the slot that `node` finds, within 10 s.
async fn newest(node: &DhtNode, key: &[u8; 32], salt: &[u8]) -> Option<HeadItem> {
    for _ in 0..20 {
        if let Some(Ok(item)) = node.get(key, salt, None).await.into_iter().next() {
            return Some(item);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_put_by_a_member_is_found_by_every_node_and_only_a_newer_one_replaces_it() {
    let nodes = private_dht(8).await;
    let w: Vec<Wallet> = (1..=3).map(|i| Wallet::from_ed25519_seed(&[i; 32]).unwrap()).collect();
    let set = AuthoritySet::new(w.iter().map(|k| k.public_key().clone()).collect(), 2).unwrap();
    let network = set.network_id().to_string();
    let now = swarmvm_token::unix_now();
    let key = *w[0].public_key().ed25519_bytes().unwrap();

    let first = HeadItem::put(&w[0], &head(&w, &set, 5, now), &ih(), &set, 0).unwrap();
    nodes[1].put(&first).await.unwrap();
    for (i, node) in nodes.iter().enumerate() {
        let found = newest(node, &key, network.as_bytes()).await;
        let found = found.unwrap_or_else(|| panic!("node {i} found no item"));
        assert_eq!(found, first, "node {i}");
        let (got_ih, text) = found.head(&network, &set).unwrap();
        assert_eq!(got_ih, ih());
        assert_eq!(verify_head(&text, &network, &set, now).unwrap().seq, 5);
    }

    // The same head signed again, then a newer bundle's: each replaces the one before.
    for (seq, resigned) in [(5, 1), (6, 0)] {
        let item =
            HeadItem::put(&w[0], &head(&w, &set, seq, now + 1), &ih(), &set, resigned).unwrap();
        nodes[2].put(&item).await.unwrap();
        let mut seen = None;
        for _ in 0..20 {
            seen = nodes[7].get(&key, network.as_bytes(), None).await.into_iter().next();
            if seen.as_ref().is_some_and(|s| s.as_ref().ok() == Some(&item)) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        assert_eq!(seen.unwrap().unwrap(), item, "seq {seq}, signed again {resigned} times");
    }

    // An older head put afterwards (a stale replayer) does not replace the newest.
    let stale = HeadItem::put(&w[0], &head(&w, &set, 4, now), &ih(), &set, 0).unwrap();
    assert!(nodes[3].put(&stale).await.is_err(), "BEP 44 nodes refuse a lower seq");
    let after = newest(&nodes[0], &key, network.as_bytes()).await.unwrap();
    assert_eq!(after.seq >> 32, 6);

    // Anyone may put a member's signed item again (a follower republishing): a node without
    // the key stores it where it is missing; a changed copy is refused before it is sent.
    nodes[5].put(&after).await.unwrap();
    let mut forged = after.clone();
    forged.value[10] ^= 1;
    assert!(nodes[5].put(&forged).await.is_err());
    // A slot no one put in stays empty.
    let other = *w[2].public_key().ed25519_bytes().unwrap();
    assert!(nodes[4].get(&other, network.as_bytes(), None).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn libtorrent_gets_the_item_from_our_dht_and_python_rebuilds_and_verifies_the_head() {
    swarmvm_test_support::require_python_modules(&["libtorrent", "cryptography", "jwt"]);
    let nodes = private_dht(6).await;
    let w: Vec<Wallet> = (1..=3).map(|i| Wallet::from_ed25519_seed(&[i; 32]).unwrap()).collect();
    let set = AuthoritySet::new(w.iter().map(|k| k.public_key().clone()).collect(), 2).unwrap();
    let network = set.network_id().to_string();
    let now = swarmvm_token::unix_now();
    let text = head(&w, &set, 17, now);
    let item = HeadItem::put(&w[1], &text, &ih(), &set, 2).unwrap();
    nodes[0].put(&item).await.unwrap();

    let dir = tempfile::tempdir().unwrap();
    let got = dir.path().join("got.json");
    let boot: Vec<String> = nodes.iter().map(|n| n.addr().to_string()).collect();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/lt_get_item.py");
    let key_hex: String = item.key.iter().map(|b| format!("{b:02x}")).collect();
    let out = tokio::process::Command::new("python3")
        .args([script, &boot.join(","), &key_hex, &network, &got.to_string_lossy()])
        .output()
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
    assert_eq!(vector["seq"], item.seq);
    // What libtorrent read, completed with what a reader knows (the set, the target it
    // computes), goes through the independent check: SHA-1 target, the item's signature,
    // ih, and the head rebuilt and verified with PyJWT.
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    vector["members"] = w.iter().map(|k| hex(k.public_key().ed25519_bytes().unwrap())).collect();
    vector["member_ids"] = w.iter().map(|k| k.id().to_string()).collect();
    vector["head"] = serde_json::json!(text);
    vector["ih"] = serde_json::json!(IH);
    vector["target"] = serde_json::json!(hex(&item.target()));
    let path = dir.path().join("vector.json");
    std::fs::write(&path, vector.to_string()).unwrap();
    let check = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/vectors/verify_dht_item.py");
    let out = std::process::Command::new("python3").arg(check).arg(&path).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains(&format!("ih {IH}")) && stdout.contains("PyJWT"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_with_a_two_byte_transaction_id_is_answered_with_the_same_id() {
    // libtorrent's queries carry 2-byte ids; upstream mainline 8.0.1 dropped them (patched in
    // vendor/mainline, PATCHED.md 1).
    let node = DhtNode::start(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0), &[]).await.unwrap();
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    for tid in [&b"aa"[..], b"x", b"abc", b"wxyz"] {
        let mut ping = b"d1:ad2:id20:abcdefghij0123456789e1:q4:ping1:t".to_vec();
        ping.extend_from_slice(format!("{}:", tid.len()).as_bytes());
        ping.extend_from_slice(tid);
        ping.extend_from_slice(b"1:y1:qe");
        socket.send_to(&ping, node.addr()).unwrap();
        let mut buf = [0u8; 1500];
        let (n, _) = socket.recv_from(&mut buf).unwrap();
        let answer = &buf[..n];
        let mut echoed = b"1:t".to_vec();
        echoed.extend_from_slice(format!("{}:", tid.len()).as_bytes());
        echoed.extend_from_slice(tid);
        assert!(
            answer.windows(echoed.len()).any(|w| w == echoed.as_slice()),
            "{tid:?}: {}",
            String::from_utf8_lossy(answer)
        );
        let response: &[u8] = b"1:y1:r";
        assert!(answer.windows(response.len()).any(|w| w == response), "a response");
    }
}
