//! A sequencer's cuts when something in them cannot apply (issue 25, finding 3): a module the
//! engine cannot compile is refused when it is registered; a registration that fails only when
//! its bundle applies is dropped alone, with a reason logged, while the contracts and the other
//! registrations queued with it apply; and `GET /v1/health` reports cuts that keep failing.

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine as _;
use serde_json::{Value, json};
use swarmvm_node::{Node, NodeOptions, SequencerOptions};
use swarmvm_swarm::SwarmOptions;
use swarmvm_test_support::http::{get, request};
use swarmvm_test_support::net::{TestNet, student, vote};
use swarmvm_token::{IssueTime, Operation, Signer, WalletEntry};
use swarmvm_vm::Hash32;
use swarmvm_wallet::{Algorithm, Wallet};

use crate::support::{LIMIT, copy, http, until};

/// A network's sequencer in `dir`/seq (cutting every `cut_every`, under `rules`), started.
async fn start_sequencer(
    net: &TestNet,
    dir: &tempfile::TempDir,
    cut_every: Duration,
    rules: swarmvm_primitives::Rules,
) -> Node {
    Node::start(NodeOptions {
        data_dir: dir.path().join("seq"),
        network: Some(net.network.clone()),
        swarm: SwarmOptions::loopback(),
        http: Some("127.0.0.1:0".parse().unwrap()),
        sequencer: Some(SequencerOptions {
            keys: vec![copy(&net.authority)],
            cut_every,
            rules,
            ..SequencerOptions::default()
        }),
        ..NodeOptions::default()
    })
    .await
    .unwrap()
}

/// A network's sequencer (cutting every `cut_every`), its genesis registrations applied.
async fn sequencer(net: &TestNet, dir: &tempfile::TempDir, cut_every: Duration) -> Node {
    let node = start_sequencer(net, dir, cut_every, swarmvm_primitives::Rules::CURRENT).await;
    let (code, answer) = register(&node, &net.tokens, &[]);
    assert_eq!(code, 202, "{answer}");
    assert!(node.wait_applied(1, LIMIT).await);
    node
}

fn register(node: &Node, tokens: &[String], modules: &[Vec<u8>]) -> (u16, Value) {
    let b64 = base64::engine::general_purpose::STANDARD;
    let modules: Vec<String> = modules.iter().map(|m| b64.encode(m)).collect();
    let body = json!({ "tokens": tokens, "modules": modules }).to_string();
    request(http(node), "POST", "/v1/registrations", Some(&body))
}

fn submit(node: &Node, contract: &str) -> (u16, Value) {
    request(http(node), "POST", "/v1/contracts", Some(contract))
}

fn contract_state(node: &Node, id: &Value) -> Value {
    get(http(node), &format!("/v1/contracts/{}", id.as_str().unwrap())).1["state"].clone()
}

fn health(node: &Node) -> (u16, Value) {
    get(http(node), "/v1/health")
}

fn time() -> IssueTime {
    IssueTime { now: swarmvm_test_support::now(), ttl: 3600 }
}

fn wallets(net: &TestNet, label: &str, wallet: &Wallet) -> String {
    let entry = WalletEntry { label: label.into(), key: wallet.public_key().clone() };
    swarmvm_token::issue_wallets(&Signer::Wallet(&net.authority), &[entry], time()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_module_the_engine_cannot_compile_is_refused_when_registered_and_cuts_go_on() {
    let net = TestNet::new(1);
    let dir = tempfile::tempdir().unwrap();
    let seq = sequencer(&net, &dir, Duration::from_millis(100)).await;
    // One function with 40,000 locals: valid WebAssembly (the validator allows 50,000 a
    // function), which wasmi cannot compile.
    let module = swarmvm_test_support::fuzz::many_locals(40_000);
    let ops: BTreeMap<String, Operation> = [(
        "heavy".to_owned(),
        Operation::Wasm { module: Hash32::digest(&module), fuel: 1_000_000 },
    )]
    .into();
    let token = swarmvm_token::issue_operations(
        &Signer::Wallet(&net.authority),
        &ops,
        swarmvm_vm::HANDLER_NAMES,
        time(),
    )
    .unwrap();
    let (code, answer) = register(&seq, &[token], &[module]);
    assert_eq!(code, 400, "{answer}");
    let error = answer["error"].as_str().unwrap();
    assert!(error.contains("cannot compile"), "{answer}");
    assert_eq!(seq.status().sequencer.unwrap().queued, 0);
    // Contracts go on applying.
    let (code, answer) = submit(&seq, &net.contract(0, 1, &[student("S1")]));
    assert_eq!(code, 202, "{answer}");
    until("the contract applied", || contract_state(&seq, &answer["id"]) == "applied").await;
    let (code, body) = health(&seq);
    assert_eq!((code, body["sequencer"]["failed_cuts"].clone()), (200, json!(0)), "{body}");
    seq.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registration_that_fails_when_applied_is_dropped_alone_and_the_rest_of_its_cut_applies() {
    let net = TestNet::new(2);
    let dir = tempfile::tempdir().unwrap();
    // Cuts far enough apart that what is sent below lands in one.
    let seq = sequencer(&net, &dir, Duration::from_secs(1)).await;
    let peer1 = net.peers[1].id().to_string();
    let revoke = swarmvm_token::issue_wallets_revoking(
        &Signer::Wallet(&net.authority),
        &[],
        std::slice::from_ref(&peer1),
        time(),
    )
    .unwrap();
    assert_eq!(register(&seq, &[revoke], &[]).0, 202);
    assert!(seq.wait_applied(2, LIMIT).await);
    // One member registers the revoked wallet again: the submission's checks pass (the token
    // is validly signed and new), and only applying it fails (revocation is for good). With it
    // in the same submission, so in the same cut: another wallet's valid registration; and a
    // contract.
    let newcomer = Wallet::generate(Algorithm::Ed25519).unwrap();
    let again = wallets(&net, "peer1-again", &net.peers[1]);
    let welcome = wallets(&net, "newcomer", &newcomer);
    let (code, answer) = register(&seq, &[again, welcome], &[]);
    assert_eq!((code, answer["queued"].clone()), (202, json!(2)), "{answer}");
    let (code, answer) = submit(&seq, &net.contract(0, 1, &[vote("P1")]));
    assert_eq!(code, 202, "{answer}");
    let id = answer["id"].clone();
    until("the contract applied", || contract_state(&seq, &id) == "applied").await;
    // The valid registration applied; the bad one alone was dropped; nothing is left queued.
    until("the newcomer registered", || {
        get(http(&seq), &format!("/v1/wallets/{}", newcomer.id())).1["label"] == "newcomer"
    })
    .await;
    until("the queue emptied", || seq.status().sequencer.unwrap().queued == 0).await;
    let (code, answer) = submit(&seq, &net.contract(1, 1, &[vote("P2")]));
    assert_eq!(code, 403, "the revoked wallet stays revoked: {answer}");
    let c = swarmvm_token::sign_contract(&newcomer, &net.id(), 1, &[vote("P3")], 1).unwrap();
    let (code, answer) = submit(&seq, &c);
    assert_eq!(code, 202, "{answer}");
    until("the newcomer's contract applied", || contract_state(&seq, &answer["id"]) == "applied")
        .await;
    let (code, body) = health(&seq);
    assert_eq!((code, body["sequencer"]["failed_cuts"].clone()), (200, json!(0)), "{body}");
    seq.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_reports_a_sequencer_whose_cuts_keep_failing_until_one_goes_through() {
    let net = TestNet::new(1);
    let dir = tempfile::tempdir().unwrap();
    let seq = sequencer(&net, &dir, Duration::from_millis(100)).await;
    let (code, body) = health(&seq);
    assert_eq!((code, body["status"].clone()), (200, json!("ok")), "{body}");
    assert_eq!(body["sequencer"], json!({ "failed_cuts": 0, "last_failure": null }), "{body}");
    // A file where the sequencer stages its cuts: every cut fails.
    let cuts = seq.data_dir().join("cuts");
    let _ = std::fs::remove_dir_all(&cuts);
    std::fs::write(&cuts, b"in the way").unwrap();
    let (code, answer) = submit(&seq, &net.contract(0, 1, &[student("S1")]));
    assert_eq!(code, 202, "{answer}");
    let id = answer["id"].clone();
    until("health reports the failing cuts", || health(&seq).0 == 503).await;
    let (_, body) = health(&seq);
    assert_eq!(body["status"], "unhealthy", "{body}");
    assert!(body["sequencer"]["failed_cuts"].as_u64().unwrap() >= 3, "{body}");
    assert!(body["sequencer"]["last_failure"].is_string(), "{body}");
    let problems = body["problems"].as_array().unwrap();
    assert!(
        problems.iter().any(|p| p.as_str().unwrap().starts_with("sequencer: the last")),
        "{body}"
    );
    assert_eq!(contract_state(&seq, &id), "pending");
    // Once a cut goes through, the sequencer is healthy again.
    std::fs::remove_file(&cuts).unwrap();
    until("the contract applied", || contract_state(&seq, &id) == "applied").await;
    until("health says ok again", || health(&seq).0 == 200).await;
    let (_, body) = health(&seq);
    assert_eq!(body["sequencer"]["failed_cuts"], 0, "{body}");
    seq.shutdown().await;
}

/// A sequencer asked to keep an older rules version (`node run --rules 1`, until every node
/// runs a build that knows the newer one) cuts bundles naming it, and moves up when asked; it
/// never cuts below the chain's version, whatever it is asked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sequencer_cuts_under_the_rules_it_is_given_never_below_the_chains() {
    use swarmvm_primitives::Rules;
    let net = TestNet::new(2);
    let dir = tempfile::tempdir().unwrap();
    let start = |rules: Rules| start_sequencer(&net, &dir, Duration::from_millis(100), rules);
    let rules_of = |node: &Node| node.snapshot().unwrap().last_bundle().unwrap().rules;
    let node = start(Rules::V1).await;
    let (code, answer) = register(&node, &net.tokens, &[]);
    assert_eq!(code, 202, "{answer}");
    assert!(node.wait_applied(1, LIMIT).await);
    assert_eq!(rules_of(&node), Rules::V1);
    node.shutdown().await;
    drop(node);
    let node = start(Rules::V2).await;
    let (code, answer) = submit(&node, &net.contract(0, 1, &[student("S1")]));
    assert_eq!(code, 202, "{answer}");
    assert!(node.wait_applied(2, LIMIT).await);
    assert_eq!(rules_of(&node), Rules::V2);
    node.shutdown().await;
    drop(node);
    let node = start(Rules::V1).await;
    let (code, answer) = submit(&node, &net.contract(0, 2, &[student("S2")]));
    assert_eq!(code, 202, "{answer}");
    assert!(node.wait_applied(3, LIMIT).await);
    assert_eq!(rules_of(&node), Rules::V2, "never below the chain's");
    node.shutdown().await;
}
