//! Load: 32 `node run` processes on one machine find each other through a local opentracker
//! and fetch and apply the same three bundles, while `wrk` hammers one node's HTTP API.
//! Every node must reach the reference root, the API must answer every request, and no
//! node's memory may grow past a bound. The larger measured run is `benches/load.rs`.

use std::time::Duration;

use swarmvm_test_support::http::get;
use swarmvm_test_support::load::{Bundles, Plan, wrk};

/// Peak resident memory allowed per node (VmHWM). A node holds its ledger in redb and its
/// bundles on disk; nothing scales with the number of peers but connection buffers. Nodes
/// peak near 31 MiB here; with mimalloc's eager arena commit (the default that `main.rs`
/// turns off) they peaked at 73 MiB, so this bound also guards that setting.
const MAX_PEAK_RSS_MIB: u64 = 48;

#[test]
fn thirty_two_nodes_converge_while_wrk_hammers_one_api() {
    let plan = Plan { bin: env!("CARGO_BIN_EXE_swarmvm").into(), bundles: 3, contracts: 300 };
    let bundles = Bundles::create(&plan);
    let network = bundles.start(32);
    let busy = network.nodes[0].http;
    // wrk runs while the nodes fetch and apply: the API answers from the last committed
    // state and never waits on a transfer.
    let hammer = std::thread::spawn(move || wrk(&format!("http://{busy}/v1/status"), 1, 16, 4));
    let roots = network.wait_for_seq(plan.bundles, Duration::from_secs(180)).unwrap();
    let during = hammer.join().unwrap();
    let last = &bundles.roots[plan.bundles - 1];
    for (i, root) in roots.iter().enumerate() {
        assert_eq!(root, last, "node {i} reached another root");
    }
    eprintln!("load: /v1/status during the fetch: {during:?}");
    assert_eq!((during.non_2xx, during.socket_errors), (0, 0), "{during:?}");
    assert!(during.requests >= 1_000, "the API answered only {} requests in 4 s", during.requests);

    let after = wrk(&format!("http://{busy}/v1/state/root"), 1, 16, 2);
    eprintln!("load: /v1/state/root after: {after:?}");
    assert_eq!((after.non_2xx, after.socket_errors), (0, 0), "{after:?}");
    assert_eq!(get(busy, "/v1/state/root").1["state_root"], last.as_str());

    let peaks: Vec<u64> = network.nodes.iter().map(|n| n.peak_rss_kib()).collect();
    let max = peaks.iter().max().unwrap() / 1024;
    eprintln!(
        "load: peak RSS per node max {max} MiB, sum {} MiB",
        peaks.iter().sum::<u64>() / 1024
    );
    assert!(max <= MAX_PEAK_RSS_MIB, "a node peaked at {max} MiB (bound {MAX_PEAK_RSS_MIB} MiB)");
}
