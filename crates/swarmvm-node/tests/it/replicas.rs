//! Authority replicas on loopback: each node holds one member's key, the replicas order
//! submissions through Raft and co-sign every bundle and head; contracts sent through any
//! replica or follower are applied everywhere with one root, a dead leader is replaced, and
//! with fewer than K signers up nothing is applied.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use swarmvm_node::protocol::ContractState;
use swarmvm_node::{DhtOptions, FollowOptions, Node, NodeOptions, SequencerOptions};
use swarmvm_swarm::SwarmOptions;
use swarmvm_test_support::http::request;
use swarmvm_test_support::net::student;
use swarmvm_test_support::replicas::check_history;
use swarmvm_token::{
    AuthoritySet, IssueTime, Kind, Network, PayloadSignature, Signer, WalletEntry,
    issue_operations, issue_wallets, sign_contract, verify_head, verify_payload_part,
};
use swarmvm_wallet::{Algorithm, Wallet};

use crate::support::{LIMIT, copy, http, metric, url, within};

/// A network of `n` members with threshold `k`, its replicas' addresses chosen up front.
struct Cluster {
    dir: tempfile::TempDir,
    keys: Vec<Wallet>,
    peer: Wallet,
    network: Network,
    tokens: Vec<String>,
    addrs: Vec<SocketAddr>,
    cut_every: Duration,
    /// The DHT node the replicas join (none: no DHT).
    dht: Option<String>,
    /// Log entries between the replicas' snapshots.
    snapshot_every: u64,
    /// The test hook: every replica, as leader, cuts what is queued unchecked.
    unchecked_cuts: bool,
}

fn free_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

impl Cluster {
    fn new(n: usize, k: u64) -> Self {
        let keys: Vec<Wallet> =
            (0..n).map(|_| Wallet::generate(Algorithm::Ed25519).unwrap()).collect();
        let set =
            AuthoritySet::new(keys.iter().map(|k| k.public_key().clone()).collect(), k).unwrap();
        let network = Network::from_set(set);
        let peer = Wallet::generate(Algorithm::Ed25519).unwrap();
        let time = IssueTime { now: swarmvm_token::unix_now(), ttl: 86_400 };
        let handlers = swarmvm_vm::HANDLER_NAMES;
        let ops: std::collections::BTreeMap<String, swarmvm_token::Operation> =
            handlers.iter().map(|h| ((*h).to_owned(), (*h).into())).collect();
        let entry = WalletEntry { label: "peer".into(), key: peer.public_key().clone() };
        let tokens = vec![
            issue_operations(&Signer::Wallet(&keys[0]), &ops, handlers, time).unwrap(),
            issue_wallets(&Signer::Wallet(&keys[1]), &[entry], time).unwrap(),
        ];
        let addrs = (0..n).map(|_| free_addr()).collect();
        Self {
            dir: tempfile::tempdir().unwrap(),
            keys,
            peer,
            network,
            tokens,
            addrs,
            cut_every: Duration::from_millis(100),
            dht: None,
            snapshot_every: SequencerOptions::default().cluster_snapshot_every,
            unchecked_cuts: false,
        }
    }

    fn url(&self, i: usize) -> String {
        format!("http://{}", self.addrs[i])
    }

    fn options(&self, name: &str) -> NodeOptions {
        NodeOptions {
            data_dir: self.dir.path().join(name),
            network: Some(self.network.clone()),
            swarm: SwarmOptions::loopback(),
            http: Some("127.0.0.1:0".parse().unwrap()),
            ..NodeOptions::default()
        }
    }

    async fn replica(&self, i: usize) -> Node {
        self.replica_with(i, false).await
    }

    /// Replica `i`; with `faulty`, it also signs a second, conflicting manifest and head for
    /// every seq (the test hook).
    async fn replica_with(&self, i: usize, faulty: bool) -> Node {
        let others = (0..self.keys.len()).filter(|j| *j != i).map(|j| self.url(j)).collect();
        let name = format!("replica-{i}");
        started(&name, self.replica_options(&self.keys[i], self.addrs[i], &name, others, faulty))
            .await
    }

    /// A replica holding `key`, serving on `addr`, with its data in folder `name`.
    fn replica_options(
        &self,
        key: &Wallet,
        addr: SocketAddr,
        name: &str,
        others: Vec<String>,
        faulty: bool,
    ) -> NodeOptions {
        NodeOptions {
            http: Some(addr),
            sequencer: Some(SequencerOptions {
                keys: vec![copy(key)],
                cut_every: self.cut_every,
                cluster: others,
                fault_equivocate: faulty,
                fault_unchecked_cuts: self.unchecked_cuts,
                cluster_snapshot_every: self.snapshot_every,
                ..SequencerOptions::default()
            }),
            dht: self.dht.clone().map(dht_options),
            ..self.options(name)
        }
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

    fn contract(&self, nonce: u64) -> String {
        self.contract_named(nonce, &format!("S{nonce}"))
    }

    /// Waits until the peer's wallet is at nonce `nonce` on every one of `nodes`.
    async fn nonce_reached(&self, nodes: &[&Node], nonce: u64, what: &str) {
        let wallet = self.peer.id().to_string();
        within(LIMIT, what, || {
            nodes.iter().all(|n| {
                n.snapshot().is_some_and(|s| swarmvm_vm::nonce_of(&s, &wallet).unwrap() == nonce)
            })
        })
        .await;
    }

    /// A contract of nonce `nonce` adding student `name`.
    fn contract_named(&self, nonce: u64, name: &str) -> String {
        let id = self.network.id().to_owned();
        sign_contract(&self.peer, &id, nonce, &[student(name)], swarmvm_token::unix_now()).unwrap()
    }

    fn set(&self) -> AuthoritySet {
        self.network.genesis().clone()
    }

    /// Sends the network's registrations through `via` and waits until `nodes` applied them
    /// (seq 1) with one root.
    async fn register(&self, via: &Node, nodes: &[&Node]) {
        let body = json!({ "tokens": self.tokens }).to_string();
        let (code, answer) = request(http(via), "POST", "/v1/registrations", Some(&body));
        assert_eq!(code, 202, "{answer}");
        same_root(nodes, 1).await;
    }
}

/// The node `name` started with `options` (the test stops if it does not start).
async fn started(name: &str, options: NodeOptions) -> Node {
    Node::start(options).await.unwrap_or_else(|e| panic!("replica {name} did not start: {e}"))
}

/// A DHT node on loopback that joins the DHT through `bootstrap`.
fn dht_options(bootstrap: String) -> DhtOptions {
    DhtOptions {
        bind: "127.0.0.1:0".parse().unwrap(),
        bootstrap: vec![bootstrap],
        republish: Duration::from_millis(500),
    }
}

fn status(node: &Node) -> Value {
    let (code, body) = request(http(node), "GET", "/v1/status", None);
    assert_eq!(code, 200);
    body
}

fn submit(node: &Node, contract: &str) -> (u16, Value) {
    request(http(node), "POST", "/v1/contracts", Some(contract))
}

/// The history checker ([`check_history`]) over `nodes`, `acked` the contracts answered 202.
fn history(nodes: &[&Node], acked: &[&str]) -> Result<usize, String> {
    let addrs: Vec<SocketAddr> = nodes.iter().map(|n| http(n)).collect();
    let ids: Vec<String> =
        acked.iter().map(|t| swarmvm_vm::Hash32::digest(t.as_bytes()).to_hex()).collect();
    check_history(&addrs, &ids)
}

/// Waits until every node applied `seq` with one root; returns it.
async fn same_root(nodes: &[&Node], seq: u64) -> swarmvm_vm::Hash32 {
    for n in nodes {
        assert!(n.wait_applied(seq, LIMIT).await, "a node never applied seq {seq}: {}", status(n));
    }
    let roots: Vec<_> = nodes.iter().map(|n| n.status().state_root).collect();
    assert!(roots.windows(2).all(|w| w[0] == w[1]), "roots differ: {roots:?}");
    roots[0]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contracts_sent_through_any_replica_or_follower_apply_everywhere_with_one_root() {
    let c = Cluster::new(3, 2);
    let (a, b, d) = tokio::join!(c.replica(0), c.replica(1), c.replica(2));
    let replicas = [&a, &b, &d];
    // The registrations through one replica, a contract through each, and one through a
    // follower of another.
    c.register(&d, &replicas).await;
    let follower = c.follower("follower", vec![url(&a)]).await;
    let tokens: Vec<String> = (1..=4).map(|n| c.contract(n)).collect();
    for (i, node) in replicas.iter().enumerate() {
        let (code, answer) = submit(node, &tokens[i]);
        assert_eq!(code, 202, "replica {i}: {answer}");
    }
    let (code, answer) = submit(&follower, &tokens[3]);
    assert_eq!(code, 202, "through the follower: {answer}");
    c.nonce_reached(&replicas, 4, "the four contracts applied").await;
    let seq = a.status().last_seq;
    same_root(&[&a, &b, &d, &follower], seq).await;
    // The history checker: every acknowledged contract once, in one order everywhere.
    let acked: Vec<&str> = tokens.iter().map(String::as_str).collect();
    assert_eq!(history(&[&a, &b, &d, &follower], &acked), Ok(4));

    // Every replica holds the same K-signed head; the follower took it.
    let set = c.set();
    let network = c.network.id().to_owned();
    within(LIMIT, "a head for the last seq on every node", || {
        [&a, &b, &d, &follower].iter().all(|n| n.status().head.is_some_and(|h| h.seq == seq))
    })
    .await;
    for n in [&a, &b, &d] {
        let (code, head) = request(http(n), "GET", "/v1/head", None);
        assert_eq!(code, 200);
        let text = head["head"].as_str().unwrap();
        let verified = verify_head(text, &network, &set, swarmvm_token::unix_now()).unwrap();
        assert_eq!(verified.seq, seq);
        assert!(verified.signers.len() >= 2, "{:?}", verified.signers);
    }
    // One bundle a seq, the same on every replica.
    for s in 1..=seq {
        let ids: Vec<_> = [&a, &b, &d]
            .iter()
            .map(|n| n.snapshot().unwrap().bundle(s).unwrap().unwrap().id)
            .collect();
        assert!(ids.windows(2).all(|w| w[0] == w[1]), "seq {s}: {ids:?}");
    }
    // The status names the cluster: one leader, three members with their last signed seq.
    let st = status(&a);
    let cluster = &st["cluster"];
    assert!(cluster["leader"].is_string(), "{st}");
    assert_eq!(cluster["members"].as_array().unwrap().len(), 3, "{st}");
    let signed: u64 = cluster["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["last_seq"].as_u64().unwrap())
        .max()
        .unwrap();
    assert_eq!(signed, seq, "{st}");
    let roles: Vec<String> = [&a, &b, &d]
        .iter()
        .map(|n| status(n)["cluster"]["role"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(roles.iter().filter(|r| *r == "leader").count(), 1, "{roles:?}");
    // And /metrics the term, the leader changes and the commit index.
    let metric = |name: &str| metric(&b, name);
    assert!(metric("swarmvm_cluster_term") >= 1.0);
    assert!(metric("swarmvm_cluster_leader_changes_total") >= 1.0);
    assert!(metric("swarmvm_cluster_commit_index") >= seq as f64);
    for n in [&a, &b, &d, &follower] {
        n.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_leader_is_replaced_and_the_follower_sees_a_higher_k_signed_head() {
    let c = Cluster::new(3, 2);
    let (a, b, d) = tokio::join!(c.replica(0), c.replica(1), c.replica(2));
    let mut replicas = vec![a, b, d];
    let refs: Vec<&Node> = replicas.iter().collect();
    c.register(&replicas[0], &refs).await;
    let follower = c.follower("follower", replicas.iter().map(url).collect()).await;
    assert!(follower.wait_applied(1, LIMIT).await);
    let leader =
        replicas.iter().position(|n| status(n)["cluster"]["role"] == "leader").expect("a leader");
    let before = follower.status().head.map_or(0, |h| h.seq);
    let dead = replicas.remove(leader);
    dead.shutdown().await;
    let killed = Instant::now();
    // A contract through a survivor: taken once a new leader is elected.
    let mut nonce = 1;
    let deadline = Instant::now() + LIMIT;
    loop {
        let (code, answer) = submit(&replicas[0], &c.contract(nonce));
        if code == 202 {
            break;
        }
        assert!(Instant::now() < deadline, "no survivor took a contract: {answer}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    within(LIMIT, "the follower sees a higher K-signed head", || {
        follower.status().head.is_some_and(|h| h.seq > before)
    })
    .await;
    println!(
        "a higher K-signed head reached the follower {:?} after the leader stopped",
        killed.elapsed()
    );
    nonce += 1;
    let (code, answer) = submit(&follower, &c.contract(nonce));
    assert_eq!(code, 202, "{answer}");
    c.nonce_reached(&[&follower], 2, "both contracts applied").await;
    // Restarted, the dead replica catches up from the others.
    let back = c.replica(leader).await;
    let seq = follower.status().last_seq;
    same_root(&[&back, &replicas[0], &replicas[1], &follower], seq).await;
    assert_eq!(history(&[&back, &replicas[0], &replicas[1], &follower], &[]), Ok(2));
    for n in [&back, &replicas[0], &replicas[1], &follower] {
        n.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_back_after_the_others_compacted_their_logs_catches_up_from_a_snapshot() {
    // Ten bundles: the snapshot it is sent still holds their cuts.
    back_after_compaction(10).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_away_longer_than_a_snapshots_cuts_fetches_the_bundles_between_by_itself() {
    // Twenty-four: the snapshot holds only the cuts less than 16 bundles behind, so the
    // bundles before them are fetched over BitTorrent from the other replicas.
    back_after_compaction(24).await;
}

/// One replica stops while `bundles` bundles are cut, one contract each, and the others
/// compact their logs past it; back, it reaches their root and co-signs again.
async fn back_after_compaction(bundles: u64) {
    // A snapshot every 8 entries, 4 kept behind it.
    let c = Cluster { snapshot_every: 8, ..Cluster::new(3, 2) };
    let (a, b, d) = tokio::join!(c.replica(0), c.replica(1), c.replica(2));
    let mut replicas = vec![a, b, d];
    let refs: Vec<&Node> = replicas.iter().collect();
    c.register(&replicas[0], &refs).await;
    let leader =
        replicas.iter().position(|n| status(n)["cluster"]["role"] == "leader").expect("a leader");
    let gone_at = (leader + 1) % 3;
    let gone = replicas.remove(gone_at);
    let stopped_at = status(&gone)["cluster"]["commit_index"].as_u64().unwrap();
    gone.shutdown().await;
    drop(gone);
    // Contracts one by one through both survivors: a bundle, its signatures and its head
    // each, dozens of log entries.
    for nonce in 1..=bundles {
        let via = &replicas[nonce as usize % 2];
        let (code, answer) = submit(via, &c.contract(nonce));
        assert_eq!(code, 202, "{answer}");
        c.nonce_reached(&[via], nonce, "the contract applied").await;
    }
    // Both survivors compacted their logs past where the stopped replica was (and past the
    // entries kept behind a snapshot): it can only be sent a snapshot.
    for n in &replicas {
        within(LIMIT, "a snapshot past the stopped replica's log", || {
            status(n)["cluster"]["snapshot_index"].as_u64().unwrap() > stopped_at + 4
        })
        .await;
    }
    // /metrics says the same.
    let snapshot_index = metric(&replicas[0], "swarmvm_cluster_snapshot_index");
    assert!(snapshot_index > (stopped_at + 4) as f64, "{snapshot_index}");
    let back = c.replica(gone_at).await;
    let seq = replicas[0].status().last_seq;
    assert!(seq > bundles, "the bundles after the registrations: {}", status(&replicas[0]));
    same_root(&[&back, &replicas[0], &replicas[1]], seq).await;
    // And it takes part again: with it, either survivor alone makes the two signatures.
    replicas[0].shutdown().await;
    let (code, answer) = submit(&back, &c.contract(bundles + 1));
    assert_eq!(code, 202, "{answer}");
    same_root(&[&back, &replicas[1]], seq + 1).await;
    assert_eq!(history(&[&back, &replicas[1]], &[]), Ok(bundles as usize + 1));
    for n in [&back, &replicas[1]] {
        n.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_the_replicas_refuse_is_abandoned_and_its_good_contracts_are_cut_again() {
    // Every replica, as leader, cuts what is queued unchecked and signs its own cuts
    // unchecked: two contracts of one nonce both go into cuts, the leader signs the cut
    // holding the second, and the two others (K) refuse it.
    let c = Cluster { unchecked_cuts: true, ..Cluster::new(3, 2) };
    let (a, b, d) = tokio::join!(c.replica(0), c.replica(1), c.replica(2));
    let replicas = [&a, &b, &d];
    c.register(&a, &replicas).await;
    let start = a.status().last_seq;
    let one = c.contract_named(1, "one");
    let twin = c.contract_named(1, "twin");
    for (via, contract) in [(&a, &one), (&b, &twin)] {
        let (code, answer) = submit(via, contract);
        assert_eq!(code, 202, "{answer}");
    }
    let two = c.contract(2);
    let (code, answer) = submit(&d, &two);
    assert_eq!(code, 202, "{answer}");
    // The refused cut is given up and the seq cut again: nonce 2 applies everywhere.
    c.nonce_reached(&replicas, 2, "nonce 2 applied on every replica").await;
    let seq = a.status().last_seq;
    same_root(&replicas, seq).await;
    // One of the two of nonce 1 applied; the other was dropped for the refusal's reason, on
    // every replica (the abandon is replicated state).
    let state = |n: &Node, t: &str| n.contract(&swarmvm_vm::Hash32::digest(t.as_bytes())).unwrap();
    let applied: Vec<&String> = [&one, &twin]
        .into_iter()
        .filter(|t| state(&a, t).is_some_and(|v| v.state == ContractState::Applied))
        .collect();
    assert_eq!(applied.len(), 1, "exactly one of the two of nonce 1 applied");
    let refused = if applied[0] == &one { &twin } else { &one };
    for n in replicas {
        let view = state(n, refused).expect("the refused contract is known");
        let reason = view.reason.unwrap_or_default();
        assert!(reason.contains("refused at the cut for seq"), "{reason}");
        assert!(reason.contains("nonce 1"), "{reason}");
    }
    // Refused by the two that did not make the cut, not by the leader that signed it: no
    // member both signed and refused, so no evidence.
    for n in replicas {
        assert!(n.equivocations().is_empty(), "{:?}", n.equivocations());
    }
    // No seq was skipped or doubled: one history, the two that applied, in nonce order.
    assert_eq!(history(&replicas, &[applied[0], &two]), Ok(2));
    assert!(seq > start, "bundles after the registrations");
    for n in replicas {
        n.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_whose_decisions_file_cannot_be_read_does_not_start() {
    // Starting without what it decided could make it sign a cut it refused.
    let c = Cluster::new(3, 2);
    let dir = c.dir.path().join("replica-0");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("replica-decisions.json");
    std::fs::write(&file, b"[{\"seq\": 2, \"manif").unwrap();
    let others = vec![c.url(1), c.url(2)];
    let options = c.replica_options(&c.keys[0], c.addrs[0], "replica-0", others, false);
    let e = Node::start(options).await.expect_err("a replica started without its decisions");
    let why = e.to_string();
    assert!(why.contains("replica-decisions.json") && !why.contains('\n'), "{why}");
    // Untouched.
    assert_eq!(std::fs::read(&file).unwrap(), b"[{\"seq\": 2, \"manif");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_fewer_than_k_signers_up_nothing_is_applied_until_one_comes_back() {
    // 3 of 3: a majority (two) orders, but a third signature is needed.
    let c = Cluster::new(3, 3);
    let (a, b, d) = tokio::join!(c.replica(0), c.replica(1), c.replica(2));
    c.register(&a, &[&a, &b, &d]).await;
    d.shutdown().await;
    drop(d);
    let one = c.contract(1);
    let (code, answer) = submit(&a, &one);
    assert_eq!(code, 202, "a majority still takes submissions: {answer}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(a.status().last_seq, 1, "applied with two of three signers: {}", status(&a));
    assert_eq!(b.status().last_seq, 1);
    let back = c.replica(2).await;
    same_root(&[&a, &b, &back], 2).await;
    assert_eq!(history(&[&a, &b, &back], &[&one]), Ok(1));
    for n in [&a, &b, &back] {
        n.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_signing_two_manifests_or_heads_for_a_seq_leaves_evidence_and_nothing_short_of_k_applies()
 {
    let c = Cluster::new(3, 2);
    let (a, b, d) = tokio::join!(c.replica(0), c.replica(1), c.replica_with(2, true));
    c.register(&a, &[&a, &b, &d]).await;
    let follower = c.follower("follower", vec![url(&b)]).await;
    let one = c.contract(1);
    let (code, answer) = submit(&b, &one);
    assert_eq!(code, 202, "{answer}");
    same_root(&[&a, &b, &d, &follower], 2).await;
    assert_eq!(history(&[&a, &b, &d, &follower], &[&one]), Ok(1));
    let faulty = c.keys[2].id().to_string();
    let set = c.set();
    within(LIMIT, "evidence of both kinds on every replica", || {
        [&a, &b, &d].iter().all(|n| {
            let kinds: HashSet<String> = n
                .equivocations()
                .iter()
                .filter(|e| e.member == faulty)
                .map(|e| e.kind.clone())
                .collect();
            kinds.len() == 2
        })
    })
    .await;
    // Served at /v1/evidence, each a pair of the member's own signatures over two payloads.
    let (code, list) = request(http(&a), "GET", "/v1/evidence", None);
    assert_eq!(code, 200);
    let found = list["equivocations"].as_array().unwrap();
    for e in found {
        assert_eq!(e["member"], faulty.as_str());
        let kind = if e["kind"] == "head" { Kind::Head } else { Kind::Manifest };
        let parts: Vec<(String, PayloadSignature)> = ["first", "second"]
            .iter()
            .map(|w| {
                let jws = e[*w].as_str().unwrap();
                let mut it = jws.split('.');
                let (p, payload, sig) =
                    (it.next().unwrap(), it.next().unwrap(), it.next().unwrap());
                let part = PayloadSignature {
                    signer: faulty.clone(),
                    protected: p.to_owned(),
                    signature: sig.to_owned(),
                };
                verify_payload_part(&part, kind, payload, &set).unwrap();
                (payload.to_owned(), part)
            })
            .collect();
        assert_ne!(parts[0].0, parts[1].0, "two different payloads");
    }
    // Nothing the faulty member signed alone was applied: one bundle a seq, the same on
    // every node, each K-signed; the heads everywhere are the honest ones.
    for s in 1..=2 {
        let records: Vec<_> = [&a, &b, &d, &follower]
            .iter()
            .map(|n| n.snapshot().unwrap().bundle(s).unwrap().unwrap())
            .collect();
        assert!(records.windows(2).all(|w| w[0].id == w[1].id), "seq {s}");
        let verified =
            swarmvm_token::verify_manifest(records[0].manifest.trim(), c.network.id(), &set)
                .unwrap();
        assert!(verified.signers.len() >= 2);
    }
    let root = a.status().state_root;
    within(LIMIT, "the follower holds the honest head", || {
        follower.status().head.is_some_and(|h| h.seq == 2 && h.state_root == root)
    })
    .await;
    assert!(follower.evidence().unwrap().is_empty(), "no fork reached the follower");
    for n in [&a, &b, &d, &follower] {
        n.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_adds_one_members_replica_and_removes_anothers() {
    let c = Cluster::new(3, 2);
    let (a, b, old) = tokio::join!(c.replica(0), c.replica(1), c.replica(2));
    c.register(&a, &[&a, &b, &old]).await;

    // The rotation: {0, 1, 2} to {0, 1, new}, 2 of 3, signed by two old members and the new
    // key, sent to a replica as a folder signed elsewhere.
    let new_key = Wallet::generate(Algorithm::Ed25519).unwrap();
    let next = AuthoritySet::new(
        vec![
            c.keys[0].public_key().clone(),
            c.keys[1].public_key().clone(),
            new_key.public_key().clone(),
        ],
        2,
    )
    .unwrap();
    let last = a.snapshot().unwrap().last_bundle().unwrap();
    let folder = c.dir.path().join("rotation").join("bundle-2");
    let network = c.network.clone();
    let old_set = c.set();
    // The rotation also registers one more wallet.
    let extra = Wallet::generate(Algorithm::Ed25519).unwrap();
    let entry = WalletEntry { label: "extra".into(), key: extra.public_key().clone() };
    let time = IssueTime { now: swarmvm_token::unix_now(), ttl: 86_400 };
    let token = issue_wallets(&Signer::Wallet(&c.keys[0]), &[entry], time).unwrap();
    swarmvm_bundle::write_folder(&folder, std::slice::from_ref(&token), &[], &[]).unwrap();
    swarmvm_bundle::create_bundle(
        &folder,
        &[&c.keys[0], &c.keys[1], &new_key],
        &network,
        &swarmvm_bundle::CreateOptions {
            follows: Some(last),
            now: swarmvm_token::unix_now().max(last.issued_at),
            authority_set: Some(&next),
            members: Some(&old_set),
            rules: last.rules,
            ..swarmvm_bundle::CreateOptions::default()
        },
    )
    .unwrap();
    let manifest = std::fs::read_to_string(folder.join("manifest.jwt")).unwrap();
    // The same manifest with a token of the same size changed: refused before it reaches the
    // log (the manifest lists only sizes and hashes), so it cannot hold the seq.
    let mut forged = token.clone().into_bytes();
    let at = token.rfind('.').unwrap() + 5;
    forged[at] = if forged[at] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(forged).unwrap();
    let body =
        json!({ "tokens": [forged], "contracts": [], "modules": [], "manifest": manifest.trim() })
            .to_string();
    let (code, answer) = request(http(&b), "POST", "/v1/registrations", Some(&body));
    assert_eq!(code, 400, "{answer}");
    let body =
        json!({ "tokens": [token], "contracts": [], "modules": [], "manifest": manifest.trim() })
            .to_string();
    let (code, answer) = request(http(&b), "POST", "/v1/registrations", Some(&body));
    assert_eq!(code, 200, "{answer}");
    assert_eq!(answer["seq"], 2, "{answer}");
    same_root(&[&a, &b], 2).await;

    // The new member's node first follows to the rotation, then runs as a replica and asks
    // to join; the dropped member's replica is removed.
    let new_addr = free_addr();
    let follower = c.follower("replica-new", vec![url(&a)]).await;
    assert!(follower.wait_applied(2, LIMIT).await);
    follower.shutdown().await;
    drop(follower);
    let others = vec![c.url(0), c.url(1), c.url(2)];
    let options = c.replica_options(&new_key, new_addr, "replica-new", others, false);
    let joined = started("replica-new", options).await;
    let new_id = new_key.id().to_string();
    let old_id = c.keys[2].id().to_string();
    within(LIMIT, "the cluster is {0, 1, new}", || {
        [&a, &b, &joined].iter().all(|n| {
            let st = status(n);
            let members: HashSet<String> = st["cluster"]["members"]
                .as_array()
                .map(|m| m.iter().map(|m| m["member"].as_str().unwrap().to_owned()).collect())
                .unwrap_or_default();
            members.len() == 3 && members.contains(&new_id) && !members.contains(&old_id)
        })
    })
    .await;
    // The new replica signs: a contract through it is applied with one root, its bundle
    // signed by members of the new set.
    let one = c.contract(1);
    let (code, answer) = submit(&joined, &one);
    assert_eq!(code, 202, "{answer}");
    let root = same_root(&[&a, &b, &joined], 3).await;
    assert_eq!(history(&[&a, &b, &joined], &[&one]), Ok(1));
    let record = joined.snapshot().unwrap().bundle(3).unwrap().unwrap();
    let verified =
        swarmvm_token::verify_manifest(record.manifest.trim(), c.network.id(), &next).unwrap();
    assert!(verified.signers.iter().all(|s| *s != old_id), "{:?}", verified.signers);
    within(LIMIT, "a head for seq 3 signed by the new set", || {
        joined.status().head.is_some_and(|h| h.seq == 3 && h.state_root == root)
    })
    .await;
    // The dropped member's messages are refused now.
    let envelope = swarmvm_raft::Envelope::seal(
        &c.keys[2],
        "vote",
        c.network.id(),
        c.keys[0].id().as_str(),
        1,
        1,
        "{}".into(),
    )
    .unwrap();
    let (code, answer) = request(
        http(&a),
        "POST",
        "/v1/cluster/raft/vote",
        Some(&serde_json::to_string(&envelope).unwrap()),
    );
    assert_eq!(code, 403, "{answer}");
    for n in [&a, &b, &old, &joined] {
        n.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_wallets_contracts_sent_through_two_replicas_out_of_order_both_apply() {
    let mut c = Cluster::new(3, 2);
    c.cut_every = Duration::from_secs(2);
    let (a, b, d) = tokio::join!(c.replica(0), c.replica(1), c.replica(2));
    c.register(&a, &[&a, &b, &d]).await;
    // Nonce 2 through one replica, then nonce 1 through another, before the next cut: both
    // are taken (each is above the ledger's last), and the cut puts them in nonce order.
    let (one, two) = (c.contract(1), c.contract(2));
    let (code, answer) = submit(&b, &two);
    assert_eq!(code, 202, "{answer}");
    let (code, answer) = submit(&d, &one);
    assert_eq!(code, 202, "{answer}");
    c.nonce_reached(&[&a, &b, &d], 2, "both applied").await;
    let seq = a.status().last_seq;
    same_root(&[&a, &b, &d], seq).await;
    assert_eq!(history(&[&a, &b, &d], &[&one, &two]), Ok(2));
    let (_, receipts) = request(http(&a), "GET", "/v1/receipts?from=1&limit=100", None);
    let outcomes: Vec<&str> = receipts["receipts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["applied", "applied"], "{receipts}");
    for n in [&a, &b, &d] {
        n.shutdown().await;
    }
}

/// Each replica puts the heads the replicas signed together under its own member's slot in
/// the DHT: every member's slot holds a K-signed head, and a follower that knows only the
/// network's links (no replica's URL) catches up through the DHT alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_replica_puts_the_k_signed_heads_under_its_own_slot_in_the_dht() {
    let mut c = Cluster::new(3, 2);
    let boot = swarmvm_dht::DhtNode::start("127.0.0.1:0".parse().unwrap(), &[]).await.unwrap();
    c.dht = Some(boot.addr().to_string());
    let (a, b, d) = tokio::join!(c.replica(0), c.replica(1), c.replica(2));
    c.register(&a, &[&a, &b, &d]).await;
    let (code, answer) = submit(&b, &c.contract(1));
    assert_eq!(code, 202, "{answer}");
    same_root(&[&a, &b, &d], 2).await;

    // Every member's slot: the newest item's head is K-signed, for seq 2.
    let id = c.network.id().to_owned();
    let set = c.set();
    for key in &c.keys {
        let slot = *key.public_key().ed25519_bytes().unwrap();
        let deadline = Instant::now() + LIMIT;
        loop {
            let items = boot.get(&slot, id.as_bytes(), None).await;
            let newest = items.iter().flatten().find_map(|i| {
                let (_, text) = i.head(&id, &set).ok()?;
                verify_head(&text, &id, &set, swarmvm_token::unix_now()).ok()
            });
            if let Some(head) = newest.filter(|h| h.seq == 2) {
                assert!(head.signers.len() >= 2, "{:?}", head.signers);
                break;
            }
            assert!(Instant::now() < deadline, "no K-signed head for seq 2 in {}'s slot", key.id());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    // A follower of the links alone, joining the DHT through the bootstrap node.
    let links = swarmvm_dht::links(c.network.genesis(), &id).unwrap();
    let follow = FollowOptions {
        urls: Vec::new(),
        poll: Duration::from_millis(200),
        from_snapshot: false,
        links,
    };
    let f = Node::start(NodeOptions {
        follow: Some(follow),
        dht: Some(dht_options(boot.addr().to_string())),
        ..c.options("link-follower")
    })
    .await
    .unwrap();
    same_root(&[&a, &f], 2).await;
    let head = f.status().head.expect("the follower holds a head");
    assert_eq!((head.seq, head.via.as_deref()), (2, Some("dht")));
    assert!(head.signers.len() >= 2);
    for node in [&a, &b, &d, &f] {
        node.shutdown().await;
    }
}
