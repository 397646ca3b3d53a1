//! A node applying a large bundle still answers HTTP reads (from its last commit) and keeps
//! uploading the bundles it seeds to a peer that fetches them meanwhile.

use std::time::{Duration, Instant};

use swarmvm_node::{BundleState, Node, NodeOptions};
use swarmvm_swarm::{Source, SwarmOptions};
use swarmvm_test_support::http::get;
use swarmvm_test_support::net::student;

use crate::support::{Authority, LIMIT, add, is, wait_bundle};

/// Contracts in the large bundle: enough that applying it takes a while in a debug build.
const LARGE: u64 = 12_000;
/// Contracts in the small first bundle the second peer fetches from the busy one.
const SMALL: u64 = 3_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_applying_a_large_bundle_answers_reads_and_keeps_uploading() {
    let a = Authority::new(1).await;
    let first: Vec<String> =
        (1..=SMALL).map(|n| a.net.contract(0, n, &[student(&format!("A{n}"))])).collect();
    let (b1, t1) = a.publish("bundle-1", true, &first, None).await;
    let large: Vec<String> = (SMALL + 1..=SMALL + LARGE)
        .map(|n| a.net.contract(0, n, &[student(&format!("B{n}"))]))
        .collect();
    let (_b2, t2) = a.publish("bundle-2", false, &large, Some(&b1)).await;

    let busy = a.node("busy").await;
    let http = busy.http_addr().unwrap();
    add(&busy, &t1);
    assert!(busy.wait_applied(1, LIMIT).await);
    let root_1 = busy.state_root().to_hex();
    let h2 = add(&busy, &t2);
    wait_bundle(&busy, &h2, is(BundleState::Applying)).await;

    // A second peer that knows only the busy node fetches bundle 1 from it.
    let fetcher = Node::start(NodeOptions {
        data_dir: a.dir.path().join("fetcher"),
        network: Some(a.net.network.clone()),
        swarm: SwarmOptions {
            peers: vec![busy.listen_addr().unwrap()],
            ..SwarmOptions::loopback()
        },
        ..NodeOptions::default()
    })
    .await
    .unwrap();
    fetcher.add(Source::Torrent(t1.clone())).unwrap();

    // Reads while bundle 2 applies: every one answers, from the commit of bundle 1.
    let mut reads_while_applying = 0;
    let mut slowest = Duration::ZERO;
    let mut uploaded_while_applying = false;
    let deadline = Instant::now() + LIMIT;
    loop {
        let applying = busy.bundles().iter().any(|b| b.state == BundleState::Applying);
        let (took, status, root, page) = tokio::task::spawn_blocking(move || {
            let started = Instant::now();
            let status = get(http, "/v1/status");
            let root = get(http, "/v1/state/root");
            let page = get(http, "/v1/state/students?limit=5");
            (started.elapsed(), status, root, page)
        })
        .await
        .unwrap();
        // Bundle 2 not committed yet after the reads: they all ran while it applied.
        let still_applying = busy.status().last_seq == 1;
        if !(applying && still_applying) {
            break;
        }
        reads_while_applying += 1;
        slowest = slowest.max(took);
        assert_eq!((status.0, root.0, page.0), (200, 200, 200));
        assert_eq!(status.1["last_seq"], 1, "reads see the last commit: {}", status.1);
        assert_eq!(root.1["state_root"], root_1.as_str());
        assert_eq!(page.1["entries"].as_array().unwrap().len(), 5);
        let up = busy.bundles().iter().find(|b| b.seq == Some(1)).map_or(0, |b| b.uploaded);
        uploaded_while_applying |= up > 0 && fetcher.status().last_seq == 0;
        assert!(Instant::now() < deadline, "bundle 2 never finished applying");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    eprintln!(
        "busy node: {reads_while_applying} rounds of three reads while applying {LARGE} contracts, slowest round {slowest:?}"
    );
    assert!(reads_while_applying >= 3, "only {reads_while_applying} rounds of reads landed");
    assert!(uploaded_while_applying, "the busy node uploaded nothing while applying");
    assert!(busy.wait_applied(2, LIMIT).await);
    assert!(fetcher.wait_applied(1, LIMIT).await);
    assert_eq!(fetcher.state_root().to_hex(), root_1);
    fetcher.shutdown().await;
    busy.shutdown().await;
}
