//! A network that runs itself: a sequencer takes submitted contracts and registrations, cuts
//! and publishes bundles and signed heads; followers find new bundles through heads polled
//! from any node, fetch them over BitTorrent and apply them; bad submissions and bad heads
//! are refused with a reason.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use swarmvm_node::{FollowOptions, Node, NodeOptions, SequencerOptions};
use swarmvm_primitives::BundleId;
use swarmvm_swarm::SwarmOptions;
use swarmvm_test_support::http::{get, request};
use swarmvm_test_support::net::{TestNet, course, student, vote};
use swarmvm_token::{HeadContent, IssueTime, Signer, WalletEntry, sign_contract, sign_head};
use swarmvm_vm::Hash32;
use swarmvm_wallet::{Algorithm, Wallet};

use crate::support::{LIMIT, copy, http, metric, until, url};

/// A network, its folder, and nodes started on loopback.
pub(crate) struct Live {
    pub(crate) net: TestNet,
    dir: tempfile::TempDir,
}

impl Live {
    pub(crate) fn new(peers: usize) -> Self {
        Self::of(TestNet::new(peers))
    }

    /// Nodes of `net`'s network.
    pub(crate) fn of(net: TestNet) -> Self {
        Self { net, dir: tempfile::tempdir().unwrap() }
    }

    pub(crate) async fn start(&self, name: &str, options: NodeOptions) -> Node {
        Node::start(NodeOptions {
            data_dir: self.dir.path().join(name),
            network: Some(self.net.network.clone()),
            swarm: SwarmOptions::loopback(),
            http: Some("127.0.0.1:0".parse().unwrap()),
            ..options
        })
        .await
        .unwrap()
    }

    /// The sequencer, signing with the network's one key.
    pub(crate) async fn sequencer(&self, name: &str, options: SequencerOptions) -> Node {
        let sequencer = SequencerOptions { keys: vec![copy(&self.net.authority)], ..options };
        self.start(name, NodeOptions { sequencer: Some(sequencer), ..NodeOptions::default() }).await
    }

    async fn follower(&self, name: &str, urls: Vec<String>) -> Node {
        let follow = FollowOptions {
            urls,
            poll: Duration::from_millis(100),
            from_snapshot: false,
            links: Vec::new(),
        };
        self.start(name, NodeOptions { follow: Some(follow), ..NodeOptions::default() }).await
    }

    /// The registration tokens, submitted to `node` (the genesis of a sequencer's network).
    pub(crate) fn register(&self, node: &Node) {
        let body = json!({ "tokens": self.net.tokens }).to_string();
        let (code, answer) = request(http(node), "POST", "/v1/registrations", Some(&body));
        assert_eq!(code, 202, "{answer}");
        assert_eq!(answer["queued"], 2);
    }
}

fn fast() -> SequencerOptions {
    SequencerOptions { cut_every: Duration::from_millis(100), ..SequencerOptions::default() }
}

pub(crate) fn submit(node: &Node, contract: &str) -> (u16, Value) {
    request(http(node), "POST", "/v1/contracts", Some(contract))
}

fn contract_state(node: &Node, id: &str) -> Value {
    get(http(node), &format!("/v1/contracts/{id}")).1["state"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_contract_submitted_to_a_follower_of_a_follower_is_forwarded_and_applied_everywhere() {
    let live = Live::new(2);
    let seq = live
        .sequencer("seq", SequencerOptions { cut_every: Duration::from_secs(1), ..fast() })
        .await;
    live.register(&seq);
    assert!(seq.wait_applied(1, LIMIT).await, "the registrations were never cut");
    let f1 = live.follower("f1", vec![url(&seq)]).await;
    // f2 knows only f1: heads, bundles and submissions all go through f1.
    let f2 = live.follower("f2", vec![url(&f1)]).await;
    assert!(f2.wait_applied(1, LIMIT).await, "f2 never caught up: {:?}", f2.status());

    let contract = live.net.contract(0, 1, &[student("S1")]);
    let id = Hash32::digest(contract.as_bytes()).to_hex();
    let (code, answer) = submit(&f2, &contract);
    assert_eq!(code, 202, "{answer}");
    assert_eq!(answer["id"], id);
    // Accepted, not applied yet: pending where it was submitted and on the sequencer.
    assert_eq!(contract_state(&f2, &id), "pending");
    assert_eq!(contract_state(&seq, &id), "pending");
    assert_eq!(seq.status().sequencer.unwrap().queued, 1);

    for node in [&seq, &f1, &f2] {
        assert!(node.wait_applied(2, LIMIT).await, "{:?}", node.status());
    }
    until("f2 shows the contract applied", || contract_state(&f2, &id) == "applied").await;
    let (_, on_f2) = get(http(&f2), &format!("/v1/contracts/{id}"));
    assert_eq!(on_f2["seq"], 2);
    let root = seq.state_root();
    assert_eq!(f1.state_root(), root);
    assert_eq!(f2.state_root(), root);
    assert_eq!(f2.state()["students"]["S1"]["name"], "John Doe");

    // Every node relays the newest head; it verifies and names the root every node has.
    let (code, head) = get(http(&f2), "/v1/head");
    assert_eq!(code, 200);
    let text = head["head"].as_str().unwrap();
    let verified = swarmvm_token::verify_head(
        text,
        live.net.network.id(),
        live.net.network.genesis(),
        swarmvm_test_support::now(),
    )
    .unwrap();
    assert_eq!((verified.seq, verified.state_root), (2, root));
    let status = f2.status();
    assert_eq!(status.head.unwrap().seq, 2);
    assert!(!status.stale && !status.diverged);
    assert_eq!(status.following, vec![url(&f1)]);
    // The bundles a follower applied are listed with a magnet others can fetch them by.
    let (code, b2) = get(http(&f1), "/v1/bundles/2");
    assert_eq!(code, 200);
    assert!(b2["magnet"].as_str().unwrap().starts_with("magnet:?"));
    assert_eq!(b2["bundle"], verified.bundle.to_string());
    for node in [seq, f1, f2] {
        node.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_submissions_get_a_4xx_with_one_line_and_a_full_queue_429() {
    let live = Live::new(2);
    // Cuts only when asked to (never, here): what is accepted stays queued.
    let options = SequencerOptions {
        cut_every: Duration::from_secs(3600),
        max_queue: 3,
        ..SequencerOptions::default()
    };
    let seq = live.sequencer("seq", options).await;
    // A genesis made with `bundle create` and handed to the sequencer: it signs a head for it.
    let genesis = live.net.bundle(live.dir.path(), "genesis", true, &[], None);
    seq.publish(&genesis).await.unwrap();
    until("a head for the genesis", || seq.head().is_some_and(|(_, h)| h.seq == 1)).await;
    let follower = live.follower("f", vec![url(&seq)]).await;
    assert!(follower.wait_applied(1, LIMIT).await);

    let valid = live.net.contract(0, 5, &[student("S1")]);
    let mut bad_signature = valid.clone();
    let last = bad_signature.pop().unwrap();
    bad_signature.push(if last == 'A' { 'B' } else { 'A' });
    let stranger = Wallet::generate(Algorithm::Ed25519).unwrap();
    let cases: Vec<(&str, String, u16, &str)> = vec![
        ("not a contract", "hello".into(), 400, "not a signed contract"),
        ("a registration token", live.net.tokens[1].clone(), 400, "typ"),
        (
            "another network",
            sign_contract(&live.net.peers[0], "another-network", 1, &[student("S9")], 1).unwrap(),
            400,
            "network",
        ),
        ("a bad signature", bad_signature, 400, "signature"),
        (
            "an unregistered wallet",
            sign_contract(&stranger, &live.net.id(), 1, &[student("S9")], 1).unwrap(),
            403,
            "not registered",
        ),
    ];
    for (what, body, status, says) in &cases {
        for node in [&seq, &follower] {
            let (code, answer) = submit(node, body);
            assert_eq!(code, *status, "{what}: {answer}");
            let line = answer["error"].as_str().unwrap();
            assert!(line.contains(says) && !line.contains('\n'), "{what}: {line}");
        }
    }
    let (code, answer) = submit(&seq, &"x".repeat(70_000));
    assert_eq!(code, 413, "{answer}");

    let (code, answer) = submit(&follower, &valid);
    assert_eq!(code, 202, "{answer}");
    // The same contract again, through either node: a duplicate.
    for node in [&seq, &follower] {
        let (code, answer) = submit(node, &valid);
        assert_eq!((code, answer["duplicate"].clone()), (409, json!(true)), "{answer}");
    }
    // Another contract with a nonce at or under the one queued: stale, with the next nonce.
    for nonce in [5, 3] {
        let (code, answer) = submit(&seq, &live.net.contract(0, nonce, &[student("S2")]));
        assert_eq!(code, 409, "{answer}");
        assert_eq!(answer["next_nonce"], 6, "{answer}");
        assert!(answer["error"].as_str().unwrap().contains("not above"), "{answer}");
    }
    assert_eq!(submit(&seq, &live.net.contract(0, 6, &[student("S2")])).0, 202);
    assert_eq!(submit(&seq, &live.net.contract(1, 1, &[vote("P1")])).0, 202);
    let full = swarmvm_test_support::http::exchange(
        http(&seq),
        "POST",
        "/v1/contracts",
        &[("Host", &http(&seq).to_string())],
        &live.net.contract(1, 2, &[vote("P1")]),
    );
    assert_eq!(full.status, 429, "{}", full.json);
    assert_eq!(full.header("retry-after"), Some("3600"));
    assert!(full.json["error"].as_str().unwrap().contains("full"));
    // Nothing refused was queued, and nothing was cut.
    assert_eq!(seq.status().sequencer.unwrap().queued, 3);
    assert_eq!(seq.status().last_seq, 1);
    for node in [seq, follower] {
        node.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_wallet_is_refused_at_submission() {
    let live = Live::new(2);
    let seq = live.sequencer("seq", fast()).await;
    live.register(&seq);
    assert!(seq.wait_applied(1, LIMIT).await);
    let revoke = swarmvm_token::issue_wallets_revoking(
        &Signer::Wallet(&live.net.authority),
        &[],
        &[live.net.peers[1].id().to_string()],
        IssueTime { now: swarmvm_test_support::now(), ttl: 3600 },
    )
    .unwrap();
    let body = json!({ "tokens": [revoke] }).to_string();
    assert_eq!(request(http(&seq), "POST", "/v1/registrations", Some(&body)).0, 202);
    assert!(seq.wait_applied(2, LIMIT).await);
    let (code, answer) = submit(&seq, &live.net.contract(1, 1, &[vote("P1")]));
    assert_eq!(code, 403, "{answer}");
    assert!(answer["error"].as_str().unwrap().contains("revoked"), "{answer}");
    assert_eq!(submit(&seq, &live.net.contract(0, 1, &[vote("P1")])).0, 202);
    seq.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_started_late_with_only_follow_catches_up_through_several_bundles() {
    let live = Live::new(1);
    let seq = live.sequencer("seq", SequencerOptions { cut_at: 1, ..fast() }).await;
    live.register(&seq);
    assert!(seq.wait_applied(1, LIMIT).await);
    for nonce in 1..=4 {
        let c = live.net.contract(0, nonce, &[student(&format!("S{nonce}"))]);
        assert_eq!(submit(&seq, &c).0, 202);
        assert!(seq.wait_applied(nonce + 1, LIMIT).await);
    }
    assert_eq!(seq.status().last_seq, 5);
    let late = live.follower("late", vec![url(&seq)]).await;
    assert!(late.wait_applied(5, LIMIT).await, "{:?}", late.status());
    assert_eq!(late.state_root(), seq.state_root());
    assert_eq!(late.status().batches, 5);
    for node in [seq, late] {
        node.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registration_added_through_the_sequencer_takes_effect_in_the_next_cut() {
    let live = Live::new(1);
    let seq = live.sequencer("seq", fast()).await;
    live.register(&seq);
    assert!(seq.wait_applied(1, LIMIT).await);
    let newcomer = Wallet::generate(Algorithm::Ed25519).unwrap();
    let contract = sign_contract(&newcomer, &live.net.id(), 1, &[student("N1")], 1).unwrap();
    assert_eq!(submit(&seq, &contract).0, 403);
    let token = swarmvm_token::issue_wallets(
        &Signer::Wallet(&live.net.authority),
        &[WalletEntry { label: "newcomer".into(), key: newcomer.public_key().clone() }],
        IssueTime { now: swarmvm_test_support::now(), ttl: 3600 },
    )
    .unwrap();
    // A token signed by someone outside the set is refused; the authority's is queued.
    let forged = swarmvm_token::issue_wallets(
        &Signer::Wallet(&newcomer),
        &[WalletEntry { label: "me".into(), key: newcomer.public_key().clone() }],
        IssueTime { now: swarmvm_test_support::now(), ttl: 3600 },
    )
    .unwrap();
    let (code, answer) = request(
        http(&seq),
        "POST",
        "/v1/registrations",
        Some(&json!({ "tokens": [forged] }).to_string()),
    );
    assert_eq!(code, 400, "{answer}");
    let body = json!({ "tokens": [token] }).to_string();
    assert_eq!(request(http(&seq), "POST", "/v1/registrations", Some(&body)).0, 202);
    assert!(seq.wait_applied(2, LIMIT).await);
    let (_, wallet) = get(http(&seq), &format!("/v1/wallets/{}", newcomer.id()));
    assert_eq!(wallet["label"], "newcomer");
    assert_eq!(submit(&seq, &contract).0, 202);
    assert!(seq.wait_applied(3, LIMIT).await);
    assert_eq!(seq.state()["students"]["N1"]["name"], "John Doe");

    // A signed folder that is an applied bundle again (the very torrent, then another torrent
    // of it) is refused, and the bundle the node seeds stays as it was.
    let (_, b2) = get(http(&seq), "/v1/bundles/2");
    let magnet = b2["magnet"].as_str().unwrap().to_owned();
    let hash = magnet.split("btih:").nth(1).unwrap()[..40].to_owned();
    let folder = live.dir.path().join("seq/bundles").join(&hash).join("bundle-2");
    let read = |f: &str| std::fs::read_to_string(folder.join(f)).unwrap();
    let lines = |f: &str| read(f).lines().map(str::to_owned).collect::<Vec<_>>();
    let again = json!({
        "manifest": read("manifest.jwt"),
        "tokens": lines("registration_tokens.txt"),
        "contracts": lines("contracts.jsonl"),
    });
    let (code, answer) = request(http(&seq), "POST", "/v1/registrations", Some(&again.to_string()));
    assert_eq!(code, 400, "{answer}");
    assert!(answer["error"].as_str().unwrap().contains("known here already"), "{answer}");
    let mut other = again.clone();
    other["contracts"] = json!([]);
    other["tokens"] = json!([]);
    let (code, answer) = request(http(&seq), "POST", "/v1/registrations", Some(&other.to_string()));
    assert_eq!(code, 400, "{answer}");
    assert!(folder.join("manifest.jwt").exists());
    assert_eq!(get(http(&seq), "/v1/bundles/2").1["magnet"], magnet.as_str());
    let late = live.follower("late", vec![url(&seq)]).await;
    assert!(late.wait_applied(3, LIMIT).await, "{:?}", late.status());
    for node in [seq, late] {
        node.shutdown().await;
    }
}

/// A node that serves a head it is given (and the BitTorrent address of `peer`), as a relay
/// would.
async fn relay(head: Arc<Mutex<String>>, peer: Option<SocketAddr>) -> String {
    use axum::routing::get as route;
    let status = json!({ "listen": peer.map(|p| p.to_string()) });
    let app = axum::Router::new()
        .route(
            "/v1/head",
            route(move || {
                let head = head.lock().unwrap().clone();
                async move { axum::Json(json!({ "head": head })) }
            }),
        )
        .route("/v1/status", route(move || async move { axum::Json(status) }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

fn head_of(
    signers: &[&Wallet],
    network: &str,
    seq: u64,
    bundle: BundleId,
    root: Hash32,
    now: u64,
) -> String {
    let content = HeadContent {
        network,
        seq,
        bundle,
        magnet: "magnet:?xt=urn:btih:0000000000000000000000000000000000000000",
        state_root: root,
        now,
        max_age: 60,
        snapshot: None,
    };
    sign_head(signers, &content).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heads_signed_by_an_outsider_expired_or_naming_another_bundle_are_refused() {
    let live = Live::new(1);
    let seq = live.sequencer("seq", fast()).await;
    live.register(&seq);
    assert!(seq.wait_applied(1, LIMIT).await);
    let (good, good_head) = seq.head().unwrap();
    let net = live.net.id();
    let now = swarmvm_test_support::now();
    let outsider = Wallet::generate(Algorithm::Ed25519).unwrap();
    let served = Arc::new(Mutex::new(head_of(
        &[&outsider],
        &net,
        9,
        good_head.bundle,
        good_head.state_root,
        now,
    )));
    let fake = relay(served.clone(), None).await;
    // Follows the fake relay only: nothing it serves is taken.
    let follower = live.follower("f", vec![fake.clone()]).await;
    until("the outsider's head refused", || {
        follower.status().head_refused.is_some_and(|r| r.contains("not a member"))
    })
    .await;
    assert!(follower.head().is_none());
    *served.lock().unwrap() =
        head_of(&[&live.net.authority], &net, 9, good_head.bundle, good_head.state_root, now - 600);
    until("the expired head refused", || {
        follower.status().head_refused.is_some_and(|r| r.contains("expired"))
    })
    .await;
    assert!(follower.head().is_none());
    assert_eq!(follower.status().last_seq, 0);
    follower.shutdown().await;

    // A follower of the sequencer and of the relay: the relay's head names another bundle
    // for seq 1, which this follower applied. Refused; the sequencer's head stays.
    let follower = live.follower("g", vec![url(&seq), fake]).await;
    assert!(follower.wait_applied(1, LIMIT).await);
    *served.lock().unwrap() = head_of(
        &[&live.net.authority],
        &net,
        1,
        BundleId::of_payload(b"another bundle"),
        good_head.state_root,
        // Newer than any head the sequencer signs meanwhile, within the clock leeway.
        swarmvm_test_support::now() + 30,
    );
    until("the head naming another bundle refused", || {
        follower.status().head_refused.is_some_and(|r| r.contains("names bundle"))
    })
    .await;
    assert_eq!(follower.head().unwrap().0, good);
    assert!(!follower.status().diverged);
    for node in [seq, follower] {
        node.shutdown().await;
    }
}

/// Sets wallet `id`'s last nonce in a stopped node's ledger file, behind the ledger's back.
fn alter_nonce(ledger: &Path, id: &str, last: u64) {
    use redb::TableDefinition;
    let state: TableDefinition<'_, &[u8], &[u8]> = TableDefinition::new("state");
    let db = redb::Database::open(ledger).unwrap();
    let txn = db.begin_write().unwrap();
    {
        let mut table = txn.open_table(state).unwrap();
        let mut value = Vec::new();
        swarmvm_vm::Record::Nonce { last }.encode(&mut value);
        table
            .insert(
                swarmvm_vm::encode_key(swarmvm_vm::Table::Nonce, id).as_slice(),
                value.as_slice(),
            )
            .unwrap();
    }
    txn.commit().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_whose_ledger_was_altered_reports_diverged_and_stops_applying() {
    let live = Live::new(1);
    let seq = live.sequencer("seq", SequencerOptions { cut_at: 1, ..fast() }).await;
    live.register(&seq);
    assert!(seq.wait_applied(1, LIMIT).await);
    let follower = live.follower("f", vec![url(&seq)]).await;
    assert!(follower.wait_applied(1, LIMIT).await);
    follower.shutdown().await;
    alter_nonce(
        &live.dir.path().join("f").join("ledger.redb"),
        live.net.peers[0].id().as_ref(),
        1000,
    );
    let follower = live.follower("f", vec![url(&seq)]).await;
    assert_eq!(submit(&seq, &live.net.contract(0, 1, &[student("S1")])).0, 202);
    assert!(seq.wait_applied(2, LIMIT).await);
    until("diverged", || follower.status().diverged).await;
    let status = follower.status();
    assert!(status.diverged_reason.unwrap().contains("state root"));
    assert_eq!(status.last_seq, 2);
    // It stops applying: the next bundle is never applied here.
    assert_eq!(submit(&seq, &live.net.contract(0, 2, &[student("S2")])).0, 202);
    assert!(seq.wait_applied(3, LIMIT).await);
    assert!(!follower.wait_applied(3, Duration::from_secs(2)).await);
    for node in [seq, follower] {
        node.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_reports_stale_once_the_sequencer_stops_publishing() {
    let live = Live::new(1);
    let options = SequencerOptions { max_head_age: Duration::from_secs(2), ..fast() };
    let seq = live.sequencer("seq", options).await;
    live.register(&seq);
    assert!(seq.wait_applied(1, LIMIT).await);
    let follower = live.follower("f", vec![url(&seq)]).await;
    assert!(follower.wait_applied(1, LIMIT).await);
    // While the sequencer runs, it signs its head again before it expires.
    let first = follower.head().unwrap().1.issued_at;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(!follower.status().stale, "{:?}", follower.status().head);
    assert!(follower.head().unwrap().1.issued_at > first);
    seq.shutdown().await;
    until("stale", || follower.status().stale).await;
    let (code, answer) = get(http(&follower), "/v1/head");
    assert_eq!(code, 404);
    assert!(answer["error"].as_str().unwrap().contains("expired"), "{answer}");
    let (code, health) = get(http(&follower), "/v1/health");
    assert_eq!((code, health["status"].clone()), (503, json!("unhealthy")), "{health}");
    assert!(health["problems"][0].as_str().unwrap().starts_with("stale"), "{health}");
    follower.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_waits_for_the_rotation_that_adds_the_keys_a_head_is_signed_by() {
    use swarmvm_bundle::{BundlePosition, CreateOptions, create_bundle};
    use swarmvm_token::{AuthoritySet, Network};
    let live = Live::new(1);
    let a = &live.net.authority;
    let b = Wallet::generate(Algorithm::Ed25519).unwrap();
    let network = Network::from_set(AuthoritySet::new(vec![a.public_key().clone()], 1).unwrap());
    let start = |name: &str, keys: Option<Vec<Wallet>>, follow: Option<String>| {
        let options = NodeOptions {
            data_dir: live.dir.path().join(name),
            network: Some(network.clone()),
            swarm: SwarmOptions::loopback(),
            http: Some("127.0.0.1:0".parse().unwrap()),
            sequencer: keys.map(|keys| SequencerOptions { keys, ..fast() }),
            follow: follow.map(|url| FollowOptions {
                urls: vec![url],
                poll: Duration::from_millis(100),
                from_snapshot: false,
                links: Vec::new(),
            }),
            ..NodeOptions::default()
        };
        async move { Node::start(options).await.unwrap() }
    };
    let seq = start("seq", Some(vec![copy(a)]), None).await;
    live.register(&seq);
    assert!(seq.wait_applied(1, LIMIT).await);
    let follower = start("f", None, Some(url(&seq))).await;
    assert!(follower.wait_applied(1, LIMIT).await);
    follower.shutdown().await;

    // The set rotates from {A} to {B}: a folder signed by A and B, published whole by the
    // sequencer as seq 2. Then the sequencer runs with B's key.
    let last = seq.snapshot().unwrap().last_bundle().unwrap();
    let dir = live.dir.path().join("rotation");
    let new_set = AuthoritySet::new(vec![b.public_key().clone()], 1).unwrap();
    let options = CreateOptions {
        follows: Some(BundlePosition { ..last }),
        now: swarmvm_test_support::now(),
        authority_set: Some(&new_set),
        ..CreateOptions::default()
    };
    create_bundle(&dir, &[a, &b], &network, &options).unwrap();
    let manifest = std::fs::read_to_string(dir.join("manifest.jwt")).unwrap();
    let body = json!({ "tokens": [], "contracts": [], "manifest": manifest }).to_string();
    let (code, answer) = request(http(&seq), "POST", "/v1/registrations", Some(&body));
    assert_eq!((code, answer["seq"].clone()), (200, json!(2)), "{answer}");
    seq.shutdown().await;
    let seq = start("seq", Some(vec![copy(&b)]), None).await;
    let contract = sign_contract(&live.net.peers[0], network.id(), 1, &[student("S1")], 1).unwrap();
    assert_eq!(submit(&seq, &contract).0, 202);
    assert!(seq.wait_applied(3, LIMIT).await);
    until("a head signed by B", || seq.head().is_some_and(|(_, h)| h.seq == 3)).await;
    assert_eq!(seq.head().unwrap().1.signers, vec![b.id().to_string()]);

    // The follower knows only A. B's head waits; the bundles up to it are fetched by seq; the
    // rotation applies, then the head verifies.
    let follower = start("f", None, Some(url(&seq))).await;
    assert!(follower.wait_applied(3, LIMIT).await, "{:?}", follower.status());
    assert_eq!(follower.state_root(), seq.state_root());
    until("B's head taken", || follower.head().is_some_and(|(_, h)| h.seq == 3)).await;
    assert_eq!(follower.authorities().threshold(), 1);
    assert!(follower.authorities().contains(b.id().as_ref()));
    for node in [seq, follower] {
        node.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_tokens_applied_or_queued_already_are_refused_and_cannot_wedge_the_cuts() {
    let live = Live::new(1);
    let seq = live
        .sequencer("seq", SequencerOptions { cut_every: Duration::from_millis(300), ..fast() })
        .await;
    live.register(&seq);
    assert!(seq.wait_applied(1, LIMIT).await);
    // The tokens of the genesis are public: sent again, they are refused, not queued.
    let again = json!({ "tokens": [live.net.tokens[1]] }).to_string();
    let (code, answer) = request(http(&seq), "POST", "/v1/registrations", Some(&again));
    assert_eq!(code, 400, "{answer}");
    assert!(answer["error"].as_str().unwrap().contains("applied already"), "{answer}");
    // A new token is queued once; the same token in the same request or queued is refused,
    // and a request is queued whole or not at all.
    let newcomer = Wallet::generate(Algorithm::Ed25519).unwrap();
    let token = swarmvm_token::issue_wallets(
        &Signer::Wallet(&live.net.authority),
        &[WalletEntry { label: "n".into(), key: newcomer.public_key().clone() }],
        IssueTime { now: swarmvm_test_support::now(), ttl: 3600 },
    )
    .unwrap();
    let twice = json!({ "tokens": [token, token] }).to_string();
    let (code, answer) = request(http(&seq), "POST", "/v1/registrations", Some(&twice));
    assert_eq!(code, 400, "{answer}");
    assert!(answer["error"].as_str().unwrap().contains("queued already"), "{answer}");
    assert_eq!(seq.status().sequencer.unwrap().queued, 0);
    let once = json!({ "tokens": [token] }).to_string();
    assert_eq!(request(http(&seq), "POST", "/v1/registrations", Some(&once)).0, 202);
    // Contracts keep being cut whatever was refused.
    assert!(seq.wait_applied(2, LIMIT).await);
    assert_eq!(submit(&seq, &live.net.contract(0, 1, &[student("S1")])).0, 202);
    assert!(seq.wait_applied(3, LIMIT).await);
    let (_, wallet) = get(http(&seq), &format!("/v1/wallets/{}", newcomer.id()));
    assert_eq!(wallet["label"], "n");
    seq.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bundles_from_elsewhere_apply_between_cuts_and_a_cut_is_never_a_fork_of_its_own_node() {
    use swarmvm_bundle::{CreateOptions, create_bundle};
    use swarmvm_swarm::{Source, TorrentFile};
    let live = Live::new(1);
    let seq = live
        .sequencer("seq", SequencerOptions { cut_every: Duration::from_millis(20), ..fast() })
        .await;
    live.register(&seq);
    assert!(seq.wait_applied(1, LIMIT).await);
    // Contracts keep the sequencer cutting while the authority hands it bundles of its own,
    // each made after the last bundle the sequencer shows: some apply, some lose to a cut.
    let mut outside = std::collections::BTreeSet::new();
    for round in 1..=12u64 {
        let c = live.net.contract(0, round, &[student(&format!("S{round}"))]);
        assert_eq!(submit(&seq, &c).0, 202);
        let last = seq.snapshot().unwrap().last_bundle().unwrap();
        let dir = live.dir.path().join(format!("outside-{round}"));
        let options = CreateOptions {
            follows: Some(last),
            now: swarmvm_test_support::now().max(last.issued_at),
            ..CreateOptions::default()
        };
        let created =
            create_bundle(&dir, &[&live.net.authority], &live.net.network, &options).unwrap();
        outside.insert(created.id);
        let torrent = TorrentFile::create(&dir, &[], None).unwrap();
        // Handed over as a torrent whose data is already in place.
        let target = live.dir.path().join("seq/bundles").join(torrent.info_hash().to_string());
        std::fs::create_dir_all(&target).unwrap();
        std::fs::rename(&dir, target.join(torrent.name())).unwrap();
        seq.add(Source::Torrent(torrent)).unwrap();
        tokio::time::sleep(Duration::from_millis(15)).await;
    }
    until("every contract applied", || {
        seq.status().sequencer.unwrap().queued == 0
            && swarmvm_vm::nonce_of(&seq.snapshot().unwrap(), live.net.peers[0].id().as_ref())
                .unwrap()
                == 12
    })
    .await;
    until("the bundles from elsewhere settled", || {
        seq.bundles().iter().all(|b| !b.state.is_pending())
    })
    .await;
    // Every fork recorded keeps a bundle and refuses one from elsewhere, never a cut.
    for e in seq.evidence().unwrap() {
        assert!(outside.contains(&e.other), "the sequencer refused its own cut {}", e.other);
    }
    let follower = live.follower("f", vec![url(&seq)]).await;
    let last = seq.status().last_seq;
    assert!(follower.wait_applied(last, LIMIT).await, "{:?}", follower.status());
    assert_eq!(follower.state_root(), seq.state_root());
    for node in [seq, follower] {
        node.shutdown().await;
    }
}

/// A magnet nobody can resolve (its tracker is a port where nothing answers), as a stranger
/// posts it.
fn dead_magnet(i: u8) -> String {
    json!({"magnet": format!("magnet:?xt=urn:btih:{:040x}&tr=http%3A%2F%2F127.0.0.1%3A9%2Fannounce", u128::from(i) + 1)})
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strangers_filling_the_pending_slots_never_hold_up_a_followers_own_fetches() {
    use swarmvm_node::{BundleState, NodeLimits};
    let live = Live::new(1);
    let seq = live.sequencer("seq", SequencerOptions { cut_at: 1, ..fast() }).await;
    live.register(&seq);
    assert!(seq.wait_applied(1, LIMIT).await);
    // Dead magnets would hold their slots far longer than this test waits.
    let limits = NodeLimits {
        max_pending: 2,
        resolve_timeout: Duration::from_secs(600),
        ..NodeLimits::default()
    };
    let follow = FollowOptions {
        urls: vec![url(&seq)],
        poll: Duration::from_millis(100),
        from_snapshot: false,
        links: Vec::new(),
    };
    let follower = live
        .start("f", NodeOptions { follow: Some(follow), limits, ..NodeOptions::default() })
        .await;
    assert!(follower.wait_applied(1, LIMIT).await, "{:?}", follower.status());
    // Strangers post dead magnets until the node refuses more.
    let mut accepted = 0;
    for i in 0..10 {
        let (code, answer) = request(http(&follower), "POST", "/v1/bundles", Some(&dead_magnet(i)));
        if code == 429 {
            break;
        }
        assert_eq!(code, 202, "{answer}");
        accepted += 1;
    }
    assert_eq!(accepted, 2, "the slots for strangers' bundles are full");
    // The sequencer goes on: the follower's own fetches have slots of their own.
    for nonce in 1..=3 {
        let c = live.net.contract(0, nonce, &[student(&format!("S{nonce}"))]);
        assert_eq!(submit(&seq, &c).0, 202);
        assert!(seq.wait_applied(nonce + 1, LIMIT).await);
    }
    assert!(
        follower.wait_applied(4, Duration::from_secs(30)).await,
        "the follower stayed behind: {:?}",
        follower.status()
    );
    assert_eq!(follower.state_root(), seq.state_root());
    // Nothing of the strangers' was dropped to make room, and they still hold their slots.
    let resolving = follower.bundles().iter().filter(|b| b.state == BundleState::Resolving).count();
    assert_eq!(resolving, 2, "{:?}", follower.bundles());
    let (code, _) = request(http(&follower), "POST", "/v1/bundles", Some(&dead_magnet(20)));
    assert_eq!(code, 429);
    for node in [seq, follower] {
        node.shutdown().await;
    }
}

/// A node answering every request with a redirect (307, which re-sends a body) to `target`.
async fn redirecting(target: String) -> String {
    use axum::http::{StatusCode, header};
    let app = axum::Router::new().fallback(move || {
        let target = target.clone();
        async move { (StatusCode::TEMPORARY_REDIRECT, [(header::LOCATION, target)], "") }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

/// A node that takes anything (202) and counts the requests it got.
async fn counting(hits: Arc<std::sync::atomic::AtomicUsize>) -> String {
    let app =
        axum::Router::new().fallback(move || {
            hits.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            async move {
                (axum::http::StatusCode::ACCEPTED, axum::Json(json!({"id": "0", "queued": 1})))
            }
        });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_never_follows_a_redirect_with_a_submission() {
    let live = Live::new(1);
    let hits = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let elsewhere = counting(hits.clone()).await;
    let redirect = redirecting(format!("{elsewhere}/v1/contracts")).await;
    let follower = live.follower("f", vec![redirect.clone()]).await;
    let contract = live.net.contract(0, 1, &[student("S1")]);
    let (code, answer) = submit(&follower, &contract);
    assert_eq!(code, 503, "{answer}");
    assert!(answer["error"].as_str().unwrap().contains("redirect"), "{answer}");
    let tokens = json!({ "tokens": live.net.tokens }).to_string();
    let (code, answer) = request(http(&follower), "POST", "/v1/registrations", Some(&tokens));
    assert_eq!(code, 503, "{answer}");
    assert!(answer["error"].as_str().unwrap().contains("redirect"), "{answer}");
    // The client answers with the redirect itself.
    let client = swarmvm_node::client::Client::new(Duration::from_secs(5));
    let reply = client
        .post(&redirect, "/v1/contracts", "application/jose", contract.into_bytes(), &[])
        .await
        .unwrap();
    assert_eq!(reply.status, 307);
    assert_eq!(
        hits.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "a request was sent where the redirect pointed"
    );
    follower.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_contract_body_with_more_than_one_line_end_is_refused_not_given_an_id_never_applied() {
    let live = Live::new(1);
    let seq = live.sequencer("seq", fast()).await;
    live.register(&seq);
    assert!(seq.wait_applied(1, LIMIT).await);
    let follower = live.follower("f", vec![url(&seq)]).await;
    assert!(follower.wait_applied(1, LIMIT).await);
    let contract = live.net.contract(0, 1, &[student("S1")]);
    for node in [&seq, &follower] {
        for body in [
            format!("{contract}\n\n"),
            format!("{contract}\r\n\r\n"),
            format!("{contract} \n"),
            format!("{contract}\n{contract}\n"),
        ] {
            let (code, answer) = submit(node, &body);
            assert_eq!(code, 400, "{body:?}: {answer}");
            assert!(
                answer["error"].as_str().unwrap().contains("not a signed contract"),
                "{answer}"
            );
        }
    }
    assert_eq!(seq.status().sequencer.unwrap().queued, 0, "nothing refused was queued");
    // With one line end, the id given is the id of what applies.
    let id = Hash32::digest(contract.as_bytes()).to_hex();
    let (code, answer) = submit(&follower, &format!("{contract}\n"));
    assert_eq!((code, answer["id"].clone()), (202, json!(id)), "{answer}");
    assert!(seq.wait_applied(2, LIMIT).await);
    until("the contract applied under its id", || contract_state(&seq, &id) == "applied").await;
    for node in [seq, follower] {
        node.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nonce_out_of_range_is_refused_as_such_not_as_a_bad_signature() {
    use swarmvm_test_support::{ForgeKey, forge};
    let live = Live::new(1);
    let seq = live.sequencer("seq", fast()).await;
    live.register(&seq);
    assert!(seq.wait_applied(1, LIMIT).await);
    let peer = &live.net.peers[0];
    let id = peer.id().to_string();
    let header = json!({"alg": "EdDSA", "typ": "swarmvm-contract+jwt", "kid": id});
    for nonce in [json!(1u64 << 53), json!(u64::MAX), json!(0)] {
        let claims = json!({
            "iss": id,
            "aud": live.net.id(),
            "iat": swarmvm_test_support::now(),
            "nonce": nonce,
            "actions": [student("S1")],
        });
        // Validly signed by a registered wallet: only the nonce is wrong.
        let token = forge(&header, &claims, ForgeKey::Wallet(peer));
        let (code, answer) = submit(&seq, &token);
        assert_eq!(code, 400, "{nonce}: {answer}");
        let error = answer["error"].as_str().unwrap();
        assert!(error.contains("nonce out of range"), "{nonce}: {error}");
        assert!(!error.contains("signature"), "{nonce}: {error}");
    }
    assert_eq!(seq.status().sequencer.unwrap().queued, 0);
    seq.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_followers_that_follow_each_other_answer_submissions_at_once() {
    let live = Live::new(1);
    // b's address is chosen first, so that a can follow b and b follow a.
    let b_addr = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let a = live.follower("a", vec![format!("http://{b_addr}")]).await;
    let b = Node::start(NodeOptions {
        data_dir: live.dir.path().join("b"),
        network: Some(live.net.network.clone()),
        swarm: SwarmOptions::loopback(),
        http: Some(b_addr),
        follow: Some(FollowOptions {
            urls: vec![url(&a)],
            poll: Duration::from_millis(100),
            from_snapshot: false,
            links: Vec::new(),
        }),
        ..NodeOptions::default()
    })
    .await
    .unwrap();
    let to = http(&a);
    let tokens = json!({ "tokens": live.net.tokens }).to_string();
    let contract = live.net.contract(0, 1, &[student("S1")]);
    let answers = tokio::task::spawn_blocking(move || {
        [("/v1/registrations", tokens), ("/v1/contracts", contract)].map(|(path, body)| {
            let started = Instant::now();
            let (code, answer) = request(to, "POST", path, Some(&body));
            (path, code, answer, started.elapsed())
        })
    })
    .await
    .unwrap();
    for (path, code, answer, took) in answers {
        assert!(took < Duration::from_secs(5), "{path} took {took:?}: {answer}");
        assert_eq!(code, 508, "a loop, not a node that is down: {path}: {answer}");
        assert!(answer["error"].as_str().unwrap().contains("back"), "{path}: {answer}");
    }
    for node in [a, b] {
        node.shutdown().await;
    }
}

/// A follows B first and the sequencer second, B follows A: a submission to A goes to B, comes
/// back, B answers it as a loop (508), and A passes B over for the sequencer, which takes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loop_among_followed_nodes_is_passed_over_for_one_that_reaches_the_sequencer() {
    let live = Live::new(1);
    let seq = live.sequencer("seq", fast()).await;
    let b_addr = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let a = live.follower("a", vec![format!("http://{b_addr}"), url(&seq)]).await;
    let b = Node::start(NodeOptions {
        data_dir: live.dir.path().join("b"),
        network: Some(live.net.network.clone()),
        swarm: SwarmOptions::loopback(),
        http: Some(b_addr),
        follow: Some(FollowOptions {
            urls: vec![url(&a)],
            poll: Duration::from_millis(100),
            from_snapshot: false,
            links: Vec::new(),
        }),
        ..NodeOptions::default()
    })
    .await
    .unwrap();
    let to = http(&a);
    let tokens = json!({ "tokens": live.net.tokens }).to_string();
    let (code, answer) = tokio::task::spawn_blocking(move || {
        request(to, "POST", "/v1/registrations", Some(&tokens))
    })
    .await
    .unwrap();
    assert_eq!(code, 202, "the sequencer took it through a: {answer}");
    assert!(seq.wait_applied(1, LIMIT).await);
    for node in [a, b, seq] {
        node.shutdown().await;
    }
}

/// A stranger who posts the node's own next bundle first (with a tracker that never answers)
/// does not hold it: when the node asks for it as its own, the entry moves to the node's own
/// slots (a stranger's slot is free again) and is asked of the node's peers, so it applies
/// in seconds rather than when the stranger's resolve times out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stranger_who_posts_the_nodes_own_bundle_first_does_not_hold_it() {
    use swarmvm_node::NodeLimits;
    use swarmvm_swarm::Source;
    let live = Live::new(1);
    let seq = live.sequencer("seq", fast()).await;
    live.register(&seq);
    assert!(seq.wait_applied(1, LIMIT).await);
    let magnet = get(http(&seq), "/v1/bundles/1").1["magnet"].as_str().unwrap().to_owned();
    let tarpit = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let tracker = format!("http://{}/announce", tarpit.local_addr().unwrap());
    let limits = NodeLimits {
        max_pending: 1,
        resolve_timeout: Duration::from_secs(60),
        ..NodeLimits::default()
    };
    let node = live.start("n", NodeOptions { limits, ..NodeOptions::default() }).await;
    let posted = json!({ "magnet": format!("{magnet}&tr={}", tracker.replace(':', "%3A").replace('/', "%2F")) });
    let (code, answer) = request(http(&node), "POST", "/v1/bundles", Some(&posted.to_string()));
    assert_eq!(code, 202, "{answer}");
    let other = json!({ "magnet": "magnet:?xt=urn:btih:1111111111111111111111111111111111111111" });
    let (code, _) = request(http(&node), "POST", "/v1/bundles", Some(&other.to_string()));
    assert_eq!(code, 429, "the stranger's slot is taken");
    let own = Source::parse(&magnet).unwrap();
    node.add_own(own, vec![seq.listen_addr().unwrap()]).unwrap();
    let (code, answer) = request(http(&node), "POST", "/v1/bundles", Some(&other.to_string()));
    assert_eq!(code, 202, "the bundle left the strangers' slots: {answer}");
    assert!(
        node.wait_applied(1, Duration::from_secs(15)).await,
        "the node's own bundle waited for the stranger's tracker: {:?}",
        node.status()
    );
    drop(tarpit);
    for n in [node, seq] {
        n.shutdown().await;
    }
}

fn submit_batch(node: &Node, lines: &[String]) -> (u16, Value) {
    let body: String = lines.iter().map(|l| format!("{l}\n")).collect();
    request(http(node), "POST", "/v1/contracts/batch", Some(&body))
}

/// One batch line and what it must be answered: the status and a word of the line.
struct Line {
    what: &'static str,
    body: String,
    status: u16,
    says: &'static str,
}

/// A batch of good and bad contracts for `live`'s wallets, with wallet 0's next nonce `n`
/// and wallet 1's `m`: each line gets the answer it would get alone.
fn mixed_batch(live: &Live, n: u64, m: u64) -> Vec<Line> {
    let first = live.net.contract(0, n, &[student(&format!("S{n}"))]);
    let mut bad_signature = live.net.contract(1, m + 5, &[vote("P1")]);
    let last = bad_signature.pop().unwrap();
    bad_signature.push(if last == 'A' { 'B' } else { 'A' });
    let stranger = Wallet::generate(Algorithm::Ed25519).unwrap();
    let line = |what, body, status, says| Line { what, body, status, says };
    vec![
        line("a contract", first.clone(), 202, ""),
        // The same wallet's next nonce, in the same batch: queued after the one before.
        line("the next nonce", live.net.contract(0, n + 1, &[course("C1")]), 202, ""),
        line("not a contract", "hello".into(), 400, "not a signed contract"),
        line(
            "another network",
            sign_contract(&live.net.peers[0], "another-network", n + 2, &[student("S9")], 1)
                .unwrap(),
            400,
            "network",
        ),
        line("a bad signature", bad_signature, 400, "signature"),
        line(
            "an unregistered wallet",
            sign_contract(&stranger, &live.net.id(), 1, &[student("S9")], 1).unwrap(),
            403,
            "not registered",
        ),
        line("the first again", first, 409, "already"),
        line("a stale nonce", live.net.contract(0, n, &[vote("P2")]), 409, "not above"),
        line("another wallet", live.net.contract(1, m, &[vote("P1")]), 202, ""),
    ]
}

fn check_answers(node: &str, lines: &[Line], answer: &Value) {
    let results = answer["results"].as_array().unwrap();
    assert_eq!(results.len(), lines.len(), "{node}: {answer}");
    for (line, result) in lines.iter().zip(results) {
        assert_eq!(result["status"], line.status, "{node}, {}: {result}", line.what);
        if line.status == 202 {
            let id = Hash32::digest(line.body.as_bytes()).to_hex();
            assert_eq!((&result["id"], &result["state"]), (&json!(id), &json!("pending")));
        } else {
            let error = result["error"].as_str().unwrap();
            assert!(error.contains(line.says), "{node}, {}: {error}", line.what);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_gets_each_contract_the_answer_it_would_get_alone_through_any_node() {
    let live = Live::new(2);
    let options =
        SequencerOptions { cut_every: Duration::from_secs(3600), ..SequencerOptions::default() };
    let seq = live.sequencer("seq", options).await;
    let genesis = live.net.bundle(live.dir.path(), "genesis", true, &[], None);
    seq.publish(&genesis).await.unwrap();
    until("a head for the genesis", || seq.head().is_some_and(|(_, h)| h.seq == 1)).await;
    let follower = live.follower("f", vec![url(&seq)]).await;
    assert!(follower.wait_applied(1, LIMIT).await);

    // To the sequencer, then through the follower (which forwards the lines whose form and
    // network it accepts as one batch), each wallet's nonces going on.
    let mut queued = 0;
    for (node, name, n, m) in [(&seq, "sequencer", 1, 1), (&follower, "follower", 3, 2)] {
        let lines = mixed_batch(&live, n, m);
        let bodies: Vec<String> = lines.iter().map(|l| l.body.clone()).collect();
        let (code, answer) = submit_batch(node, &bodies);
        assert_eq!(code, 200, "{name}: {answer}");
        check_answers(name, &lines, &answer);
        queued += 3;
        assert_eq!(seq.status().sequencer.unwrap().queued, queued, "{name}");
        // Alone, each refused line is refused the same way.
        for line in lines.iter().filter(|l| l.status != 202) {
            let (code, alone) = submit(node, &line.body);
            assert_eq!(code, line.status, "{name}, {} alone: {alone}", line.what);
        }
        // What the follower forwarded is pending there.
        let id = Hash32::digest(lines[0].body.as_bytes()).to_hex();
        assert_eq!(contract_state(node, &id), "pending");
    }

    // Bodies that are not a batch are refused whole, and nothing is queued.
    let too_many: Vec<String> = (0..1001).map(|_| "x.y.z".to_owned()).collect();
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        ("an empty body", Vec::new(), 400, "empty"),
        ("1,001 lines", format!("{}\n", too_many.join("\n")).into_bytes(), 400, "at most 1000"),
        ("bytes that are not text", vec![b'a', 0xff, b'\n'], 400, "not text"),
    ];
    for node in [&seq, &follower] {
        for (what, body, status, says) in &cases {
            let refusal = node.api().submit_contracts(body, 0, "").await.unwrap_err();
            assert_eq!(refusal.status, *status, "{what}: {}", refusal.message);
            assert!(refusal.message.contains(says), "{what}: {}", refusal.message);
        }
        let (code, answer) =
            request(http(node), "POST", "/v1/contracts/batch", Some(&"x".repeat(5 << 20)));
        assert_eq!(code, 413, "{answer}");
    }
    assert_eq!(seq.status().sequencer.unwrap().queued, queued);
    for node in [seq, follower] {
        node.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_submissions_to_a_follower_travel_in_batches_and_each_applies_once() {
    const WALLETS: usize = 24;
    const EACH: u64 = 10;
    let live = Arc::new(Live::new(WALLETS));
    let seq = live.sequencer("seq", fast()).await;
    live.register(&seq);
    assert!(seq.wait_applied(1, LIMIT).await);
    let follower = live.follower("f", vec![url(&seq)]).await;
    assert!(follower.wait_applied(1, LIMIT).await);

    // Every wallet submits its contracts to the follower one after another, all wallets at
    // once.
    let addr = http(&follower);
    let clients: Vec<_> = (0..WALLETS)
        .map(|w| {
            let live = live.clone();
            std::thread::spawn(move || {
                let mut ids = Vec::new();
                for nonce in 1..=EACH {
                    let contract =
                        live.net.contract(w, nonce, &[student(&format!("S{w}-{nonce}"))]);
                    let (code, answer) = request(addr, "POST", "/v1/contracts", Some(&contract));
                    assert_eq!(code, 202, "wallet {w}, nonce {nonce}: {answer}");
                    ids.push(answer["id"].as_str().unwrap().to_owned());
                }
                ids
            })
        })
        .collect();
    let ids: Vec<String> = clients.into_iter().flat_map(|c| c.join().unwrap()).collect();
    let total = WALLETS as u64 * EACH;
    assert_eq!(ids.len() as u64, total);

    // They travelled in fewer requests than contracts, and every one of them is counted.
    let requests = metric(&follower, "swarmvm_forward_requests_total");
    let contracts = metric(&follower, "swarmvm_forwarded_contracts_total");
    assert_eq!(contracts, total as f64);
    assert!(requests >= 1.0 && requests < contracts, "{requests} requests for {contracts}");

    until("every contract applied on both nodes", || {
        seq.status().sequencer.unwrap().queued == 0
            && follower.status().last_seq == seq.status().last_seq
    })
    .await;
    for id in &ids {
        for node in [&seq, &follower] {
            assert_eq!(contract_state(node, id), "applied", "{id}");
        }
    }
    assert_eq!(follower.state_root(), seq.state_root());
    // Each wallet's nonce is its last: none applied twice, none lost.
    for w in 0..WALLETS {
        let id = live.net.peers[w].id().to_string();
        let (code, wallet) = get(http(&seq), &format!("/v1/wallets/{id}"));
        assert_eq!((code, wallet["nonce"].clone()), (200, json!(EACH)), "{wallet}");
        assert_eq!(follower.state()["students"].as_object().unwrap().len(), total as usize);
    }
    for node in [seq, follower] {
        node.shutdown().await;
    }
}

/// A node of an older version: it knows no batch route (405, as `POST` on
/// `/v1/contracts/{id}`), takes contracts one by one (202 with the SHA-256 of each, or, with
/// `wrong_id`, of something else), and counts the batches and the contracts it was sent.
async fn older_node(
    batches: Arc<AtomicUsize>,
    singles: Arc<AtomicUsize>,
    wrong_id: bool,
) -> String {
    use axum::http::StatusCode;
    let app =
        axum::Router::new()
            .route(
                "/v1/contracts/batch",
                axum::routing::post(move || {
                    batches.fetch_add(1, Ordering::SeqCst);
                    async { (StatusCode::METHOD_NOT_ALLOWED, axum::Json(json!({"error": "no"}))) }
                }),
            )
            .route(
                "/v1/contracts",
                axum::routing::post(move |body: String| {
                    singles.fetch_add(1, Ordering::SeqCst);
                    let token = if wrong_id { "other" } else { body.trim_end() };
                    let id = Hash32::digest(token.as_bytes()).to_hex();
                    async move {
                        (StatusCode::ACCEPTED, axum::Json(json!({"id": id, "state": "pending"})))
                    }
                }),
            );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_knows_no_batches_gets_the_contracts_one_by_one() {
    let live = Live::new(1);
    let (batches, singles) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let older = older_node(batches.clone(), singles.clone(), false).await;
    let follower = live.follower("f", vec![older]).await;
    let lines: Vec<String> =
        (1..=3).map(|n| live.net.contract(0, n, &[student(&format!("S{n}"))])).collect();
    let (code, answer) = submit_batch(&follower, &lines);
    assert_eq!(code, 200, "{answer}");
    for (line, result) in lines.iter().zip(answer["results"].as_array().unwrap()) {
        assert_eq!(result["status"], 202, "{result}");
        assert_eq!(result["id"], Hash32::digest(line.as_bytes()).to_hex());
    }
    assert_eq!((batches.load(Ordering::SeqCst), singles.load(Ordering::SeqCst)), (1, 3));
    // The batch and the three requests after it, each carrying what it carried.
    assert_eq!(metric(&follower, "swarmvm_forward_requests_total"), 4.0);
    assert_eq!(metric(&follower, "swarmvm_forwarded_contracts_total"), 6.0);
    follower.shutdown().await;

    // One that answers 202 for another contract than the one sent is not believed.
    let (batches, singles) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let lying = older_node(batches, singles, true).await;
    let follower = live.follower("f2", vec![lying]).await;
    let (code, answer) = submit(&follower, &lines[0]);
    assert_eq!(code, 503, "{answer}");
    assert!(answer["error"].as_str().unwrap().contains("another contract"), "{answer}");
    let id = Hash32::digest(lines[0].as_bytes()).to_hex();
    assert_eq!(get(http(&follower), &format!("/v1/contracts/{id}")).0, 404);
    follower.shutdown().await;
}
