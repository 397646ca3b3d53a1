//! Following under attack and churn: a relay that lies about the magnets of the bundles
//! behind the head, a head for a seq no node will ever have, heads that would live too long,
//! and a sequencer that comes back on another BitTorrent port.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use swarmvm_node::{FollowOptions, Node, NodeOptions, SequencerOptions};
use swarmvm_primitives::BundleId;
use swarmvm_swarm::{Listen, SwarmOptions};
use swarmvm_test_support::http::request;
use swarmvm_test_support::net::{TestNet, student};
use swarmvm_token::{HeadContent, sign_head};
use swarmvm_vm::Hash32;
use swarmvm_wallet::Wallet;

use crate::support::{LIMIT, http, url, within};

/// A network and its folder; nodes started on loopback.
struct Net {
    net: TestNet,
    dir: tempfile::TempDir,
}

fn submit(node: &Node, contract: &str) -> (u16, Value) {
    request(http(node), "POST", "/v1/contracts", Some(contract))
}

impl Net {
    fn new() -> Self {
        Self { net: TestNet::new(1), dir: tempfile::tempdir().unwrap() }
    }

    fn options(&self, name: &str) -> NodeOptions {
        NodeOptions {
            data_dir: self.dir.path().join(name),
            network: Some(self.net.network.clone()),
            swarm: SwarmOptions::loopback(),
            http: Some("127.0.0.1:0".parse().unwrap()),
            ..NodeOptions::default()
        }
    }

    /// The sequencer's options: the network's one key, a cut for every contract.
    fn sequencing(&self) -> SequencerOptions {
        SequencerOptions {
            keys: vec![Wallet::from_pkcs8_der(&self.net.authority.to_pkcs8_der()).unwrap()],
            cut_every: Duration::from_millis(100),
            cut_at: 1,
            ..SequencerOptions::default()
        }
    }

    /// A sequencer with its genesis (the registrations) applied.
    async fn sequencer(&self, name: &str) -> Node {
        let node =
            Node::start(NodeOptions { sequencer: Some(self.sequencing()), ..self.options(name) })
                .await
                .unwrap();
        let body = json!({ "tokens": self.net.tokens }).to_string();
        let (code, answer) = request(http(&node), "POST", "/v1/registrations", Some(&body));
        assert_eq!(code, 202, "{answer}");
        assert!(node.wait_applied(1, LIMIT).await, "the registrations were never cut");
        node
    }

    async fn follower(&self, name: &str, urls: Vec<String>) -> Node {
        let follow = FollowOptions {
            urls,
            poll: Duration::from_millis(100),
            from_snapshot: false,
            links: Vec::new(),
        };
        Node::start(NodeOptions { follow: Some(follow), ..self.options(name) }).await.unwrap()
    }

    /// A head signed by the network's authority (a valid head, whatever it says).
    fn head(&self, seq: u64, bundle: BundleId, root: Hash32, now: u64, max_age: u64) -> String {
        let network = self.net.id();
        let content = HeadContent {
            network: &network,
            seq,
            bundle,
            magnet: "magnet:?xt=urn:btih:0000000000000000000000000000000000000000",
            state_root: root,
            now,
            max_age,
            snapshot: None,
        };
        sign_head(&[&self.net.authority], &content).unwrap()
    }
}

/// Serves a router on 127.0.0.1; returns its base URL.
async fn serve(app: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

/// A relay that serves the head it is given and nothing else (no bundle, no BitTorrent
/// address).
async fn relay(head: Arc<Mutex<String>>) -> String {
    use axum::routing::get as route;
    let app = axum::Router::new()
        .route(
            "/v1/head",
            route(move || {
                let head = head.lock().unwrap().clone();
                async move { axum::Json(json!({ "head": head })) }
            }),
        )
        .route("/v1/status", route(|| async { axum::Json(json!({ "listen": null })) }));
    serve(app).await
}

/// A relay that serves `sequencer`'s real head, and for every `GET /v1/bundles/{seq}` a
/// magnet nobody can resolve, naming `trackers`.
async fn lying_relay(sequencer: Node, trackers: &[String]) -> String {
    use axum::extract::Path;
    use axum::http::StatusCode;
    use axum::routing::get as route;
    let tr: String = trackers
        .iter()
        .map(|t| format!("&tr={}", t.replace(':', "%3A").replace('/', "%2F")))
        .collect();
    let app = axum::Router::new()
        .route(
            "/v1/head",
            route(move || {
                let head = sequencer.head().map(|(text, _)| text);
                async move {
                    match head {
                        Some(h) => (StatusCode::OK, axum::Json(json!({ "head": h }))),
                        None => (StatusCode::NOT_FOUND, axum::Json(json!({ "error": "no head" }))),
                    }
                }
            }),
        )
        .route(
            "/v1/bundles/{seq}",
            route(move |Path(seq): Path<u64>| {
                let magnet =
                    format!("magnet:?xt=urn:btih:{:040x}{tr}", 0xbad0_0000_u128 + u128::from(seq));
                async move { axum::Json(json!({ "seq": seq, "magnet": magnet })) }
            }),
        )
        .route("/v1/status", route(|| async { axum::Json(json!({ "listen": null })) }));
    serve(app).await
}

/// Trackers that only count who contacts them: an HTTP one and a UDP one.
async fn tracker_traps() -> (Vec<String>, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let urls = vec![
        format!("http://{}/announce", tcp.local_addr().unwrap()),
        format!("udp://{}/announce", udp.local_addr().unwrap()),
    ];
    let counted = hits.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = tcp.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            drop(stream);
        }
    });
    let counted = hits.clone();
    tokio::spawn(async move {
        let mut buf = [0u8; 2048];
        while udp.recv_from(&mut buf).await.is_ok() {
            counted.fetch_add(1, Ordering::SeqCst);
        }
    });
    (urls, hits)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_listed_first_serving_junk_magnets_costs_a_lagging_follower_seconds_and_never_its_trackers()
 {
    let net = Net::new();
    let seq = net.sequencer("seq").await;
    // The follower starts this many bundles behind: more than it fetches ahead at once.
    const LAST: u64 = 21;
    for nonce in 1..LAST {
        let c = net.net.contract(0, nonce, &[student(&format!("S{nonce}"))]);
        assert_eq!(submit(&seq, &c).0, 202);
        assert!(seq.wait_applied(nonce + 1, LIMIT).await);
    }
    let (trackers, announces) = tracker_traps().await;
    let liar = lying_relay(seq.clone(), &trackers).await;
    let started = Instant::now();
    let follower = net.follower("f", vec![liar, url(&seq)]).await;
    // Only the head's own seq has a signed magnet; every other one comes from the liar first.
    assert!(
        follower.wait_applied(LAST, Duration::from_secs(30)).await,
        "the follower stayed behind the lying relay for {:?}: {:?}",
        started.elapsed(),
        follower.status()
    );
    assert_eq!(follower.state_root(), seq.state_root());
    // The liar's magnets named trackers: this node did not choose them, and never told them
    // anything.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(announces.load(Ordering::SeqCst), 0, "a tracker a relay named was contacted");
    for node in [seq, follower] {
        node.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_for_a_seq_no_node_has_gives_way_to_the_next_head_signed() {
    let net = Net::new();
    let seq = net.sequencer("seq").await;
    let (_, real) = seq.head().unwrap();
    // Validly signed, for a seq far ahead, and a little newer than any head the sequencer
    // signs meanwhile (within the clock leeway).
    let far_iat = swarmvm_test_support::now() + 2;
    let far =
        net.head(1_000_000_000, BundleId::of_payload(b"nowhere"), real.state_root, far_iat, 60);
    let relay = relay(Arc::new(Mutex::new(far))).await;
    let follower = net.follower("f", vec![relay, url(&seq)]).await;
    within(LIMIT, "the far head taken", || {
        follower.head().is_some_and(|(_, h)| h.seq == 1_000_000_000)
    })
    .await;
    assert!(follower.wait_applied(1, LIMIT).await, "{:?}", follower.status());
    // The sequencer signs its next head after the far one's iat.
    while swarmvm_test_support::now() <= far_iat {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(submit(&seq, &net.net.contract(0, 1, &[student("S1")])).0, 202);
    assert!(seq.wait_applied(2, LIMIT).await);
    within(Duration::from_secs(15), "the sequencer's next head replaces the far one", || {
        follower.head().is_some_and(|(_, h)| h.seq == 2)
    })
    .await;
    assert!(follower.wait_applied(2, Duration::from_secs(15)).await, "{:?}", follower.status());
    assert_eq!(follower.state_root(), seq.state_root());
    // It relays the real head, not the far one, and the far one does not come back.
    let (code, answer) = request(http(&follower), "GET", "/v1/head", None);
    assert_eq!(code, 200, "{answer}");
    let relayed = answer["head"].as_str().unwrap();
    let relayed = swarmvm_token::verify_head(
        relayed,
        net.net.network.id(),
        net.net.network.genesis(),
        swarmvm_test_support::now(),
    )
    .unwrap();
    assert_eq!(relayed.seq, 2);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(follower.head().unwrap().1.seq, 2);
    for node in [seq, follower] {
        node.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heads_that_would_live_longer_than_an_hour_are_refused_and_never_signed() {
    let net = Net::new();
    let seq = net.sequencer("seq").await;
    let (_, real) = seq.head().unwrap();
    let now = swarmvm_test_support::now();
    let served = Arc::new(Mutex::new(net.head(1, real.bundle, real.state_root, now, 2 * 3600)));
    let relay = relay(served.clone()).await;
    let follower = net.follower("f", vec![relay]).await;
    within(LIMIT, "the long-lived head refused", || {
        follower.status().head_refused.is_some_and(|r| r.contains("longer than"))
    })
    .await;
    assert!(follower.head().is_none());
    // An hour is allowed.
    *served.lock().unwrap() = net.head(1, real.bundle, real.state_root, now, 3600);
    within(LIMIT, "the hour-long head taken", || follower.head().is_some()).await;
    assert_eq!(follower.head().unwrap().1.expires_at, now + 3600);
    for node in [seq, follower] {
        node.shutdown().await;
    }
    // A sequencer never signs heads followers would refuse: it does not start.
    let options =
        SequencerOptions { max_head_age: Duration::from_secs(2 * 3600), ..net.sequencing() };
    match Node::start(NodeOptions { sequencer: Some(options), ..net.options("long") }).await {
        Ok(_) => panic!("a sequencer started with --max-head-age 2h"),
        Err(e) => assert!(e.to_string().contains("max-head-age"), "{e}"),
    }
    // The start that failed closed its ledger before it returned: the folder opens at once.
    let again =
        Node::start(NodeOptions { sequencer: Some(net.sequencing()), ..net.options("long") })
            .await
            .unwrap();
    again.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_gets_the_next_bundle_soon_after_the_sequencer_restarts_on_another_port() {
    let net = Net::new();
    let seq = net.sequencer("seq").await;
    let follower = net.follower("f", vec![url(&seq)]).await;
    assert!(follower.wait_applied(1, LIMIT).await, "{:?}", follower.status());
    let http_addr = http(&seq);
    let old = seq.listen_addr().unwrap();
    seq.shutdown().await;
    drop(seq);
    // The same HTTP address, another BitTorrent port.
    let listen = loop {
        let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        if free.port() != old.port() {
            break free;
        }
    };
    let seq = Node::start(NodeOptions {
        swarm: SwarmOptions { listen: Listen::Addr(listen), ..SwarmOptions::loopback() },
        http: Some(http_addr),
        sequencer: Some(net.sequencing()),
        ..net.options("seq")
    })
    .await
    .unwrap();
    assert_ne!(seq.listen_addr().unwrap().port(), old.port());
    let contract = net.net.contract(0, 1, &[student("S1")]);
    within(LIMIT, "the restarted sequencer takes a contract", || submit(&seq, &contract).0 == 202)
        .await;
    assert!(seq.wait_applied(2, LIMIT).await);
    let cut = Instant::now();
    assert!(
        follower.wait_applied(2, Duration::from_secs(15)).await,
        "the follower did not get the bundle cut after the restart within 15 s: {:?}",
        follower.status()
    );
    assert!(cut.elapsed() < Duration::from_secs(15));
    assert_eq!(follower.state_root(), seq.state_root());
    for node in [seq, follower] {
        node.shutdown().await;
    }
}
