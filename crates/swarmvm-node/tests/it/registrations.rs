//! `POST /v1/registrations` with a signed folder: its manifest is verified against the set in
//! force, and the files sent are matched to it, before anything of the folder is hashed or
//! written.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use swarmvm_node::{Node, NodeOptions, SequencerOptions};
use swarmvm_primitives::Rules;
use swarmvm_swarm::SwarmOptions;
use swarmvm_test_support::http::request;
use swarmvm_test_support::net::TestNet;
use swarmvm_token::{FileDigest, ManifestContent, sign_manifest};
use swarmvm_vm::Hash32;
use swarmvm_wallet::{Algorithm, Wallet};

use crate::support::{LIMIT, copy, http};

/// Every name in the folders `dirs` (each `folder/name`).
fn names(dirs: &[PathBuf]) -> BTreeSet<String> {
    dirs.iter()
        .flat_map(|d| {
            std::fs::read_dir(d)
                .into_iter()
                .flatten()
                .flatten()
                .map(move |e| format!("{}/{}", d.display(), e.file_name().to_string_lossy()))
        })
        .collect()
}

/// Runs `busy` while watching `dirs` as often as the disk allows; returns its result and every
/// name that appeared in them meanwhile, even for a moment.
fn written_during<T>(dirs: &[PathBuf], busy: impl FnOnce() -> T) -> (T, BTreeSet<String>) {
    let before = names(dirs);
    let done = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (dirs, done, before) = (dirs.to_vec(), done.clone(), before.clone());
        std::thread::spawn(move || {
            let mut seen = BTreeSet::new();
            while !done.load(Ordering::Acquire) {
                seen.extend(names(&dirs).into_iter().filter(|n| !before.contains(n)));
                std::thread::sleep(Duration::from_micros(200));
            }
            seen
        })
    };
    let out = busy();
    done.store(true, Ordering::Release);
    let mut seen = watcher.join().unwrap();
    seen.extend(names(dirs).into_iter().filter(|n| !before.contains(n)));
    (out, seen)
}

/// The folders a posted folder is staged, stored and seeded in.
fn staging_dirs(data: &Path) -> Vec<PathBuf> {
    ["cuts", "bundles", "torrents"].iter().map(|d| data.join(d)).collect()
}

/// A manifest for the next bundle after `node`'s last, signed by `signer`, listing
/// `contracts` bytes of contracts (with `sha256`) and no registration tokens.
fn manifest(node: &Node, net: &TestNet, signer: &Wallet, contracts: u64, sha256: Hash32) -> String {
    let last = node.snapshot().unwrap().last_bundle().unwrap();
    let files: BTreeMap<String, FileDigest> = [
        ("contracts.jsonl".to_owned(), FileDigest { size: contracts, sha256 }),
        ("registration_tokens.txt".to_owned(), FileDigest { size: 0, sha256: Hash32::digest(b"") }),
    ]
    .into_iter()
    .collect();
    let content = ManifestContent {
        seq: last.seq + 1,
        parent: Some(last.id),
        parent_info_hash: None,
        files: &files,
        network: net.network.id(),
        authority_set: None,
        now: swarmvm_test_support::now().max(last.issued_at),
        rules: Rules::CURRENT,
    };
    sign_manifest(&[signer], &content).unwrap()
}

fn post(node: &Node, body: &Value) -> (u16, Value) {
    let (addr, body) = (http(node), body.to_string());
    request(addr, "POST", "/v1/registrations", Some(&body))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_posted_folder_is_refused_before_any_of_it_is_written_unless_a_member_signed_it() {
    let net = TestNet::new(1);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("seq");
    let node = Node::start(NodeOptions {
        data_dir: data.clone(),
        network: Some(net.network.clone()),
        swarm: SwarmOptions::loopback(),
        http: Some("127.0.0.1:0".parse().unwrap()),
        sequencer: Some(SequencerOptions {
            keys: vec![copy(&net.authority)],
            cut_every: Duration::from_millis(100),
            ..SequencerOptions::default()
        }),
        ..NodeOptions::default()
    })
    .await
    .unwrap();
    let (code, answer) = post(&node, &json!({ "tokens": net.tokens }));
    assert_eq!(code, 202, "{answer}");
    assert!(node.wait_applied(1, LIMIT).await);
    let dirs = staging_dirs(&data);

    // 24 MiB of contracts under a manifest signed by a stranger: refused on its signature,
    // and not one file of it is written (or hashed into a torrent), not even for a moment.
    let stranger = Wallet::generate(Algorithm::Ed25519).unwrap();
    let line = "x".repeat(16 * 1024);
    let contracts: Vec<&str> = (0..1536).map(|_| line.as_str()).collect();
    let size: u64 = contracts.iter().map(|c| c.len() as u64 + 1).sum();
    // (The hash is not the contents': the signature is what is checked first.)
    let forged = manifest(&node, &net, &stranger, size, Hash32([7; 32]));
    let body = json!({ "manifest": forged, "tokens": [], "contracts": contracts });
    let ((code, answer), written) = {
        let (node, dirs) = (node.clone(), dirs.clone());
        tokio::task::spawn_blocking(move || written_during(&dirs, || post(&node, &body)))
            .await
            .unwrap()
    };
    assert_eq!(code, 400, "{answer}");
    assert!(answer["error"].as_str().unwrap().starts_with("manifest:"), "{answer}");
    assert!(written.is_empty(), "written before the signature was checked: {written:?}");

    // Signed by the authority, but the files sent are not those it lists: refused as well
    // before anything is written.
    let listed = manifest(&node, &net, &net.authority, 100, Hash32([7; 32]));
    let body = json!({ "manifest": listed, "tokens": [], "contracts": ["a.b.c"] });
    let ((code, answer), written) = {
        let (node, dirs) = (node.clone(), dirs.clone());
        tokio::task::spawn_blocking(move || written_during(&dirs, || post(&node, &body)))
            .await
            .unwrap()
    };
    assert_eq!(code, 400, "{answer}");
    assert!(answer["error"].as_str().unwrap().contains("its manifest lists 100"), "{answer}");
    assert!(written.is_empty(), "written though its files are not the manifest's: {written:?}");
    assert_eq!(node.status().last_seq, 1);

    // The authority's folder of the files it lists is published.
    let empty = Hash32::digest(b"");
    let signed = manifest(&node, &net, &net.authority, 0, empty);
    let (code, answer) = post(&node, &json!({ "manifest": signed, "tokens": [], "contracts": [] }));
    assert_eq!((code, answer["seq"].clone()), (200, json!(2)), "{answer}");
    assert!(node.wait_applied(2, LIMIT).await);
    node.shutdown().await;
}
