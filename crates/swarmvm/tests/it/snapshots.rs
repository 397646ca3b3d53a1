//! Late joiners: `node run --snapshot-every N` publishes state snapshots that its heads name,
//! and `node run --follow URL --from-snapshot` starts from the newest, checked piece by piece
//! against the signed root, without fetching the bundles before it; without a snapshot it
//! replays and says so.

use std::net::SocketAddr;

use serde_json::Value;
use swarmvm_test_support::http::get;

use crate::node::{http_of, wait_status};
use crate::support::{Daemon, Env};

/// A sequencer on data folder `seq` that publishes a snapshot every `every` bundles (none with
/// `None`), with its registrations applied; its daemon and HTTP address.
fn sequencer(env: &Env, every: Option<&str>) -> (Daemon, SocketAddr) {
    env.network("ed25519", "tokens.txt");
    let mut args = vec![
        "node",
        "run",
        "--data-dir",
        "seq",
        "--trust",
        "auth.pub",
        "--sequencer",
        "--key",
        "auth.pem",
        "--cut-every",
        "200ms",
        "--no-dht",
        "--listen",
        "127.0.0.1:0",
        "--http",
        "127.0.0.1:0",
    ];
    if let Some(n) = every {
        args.extend(["--snapshot-every", n]);
    }
    let seq = Daemon::start(env, &args);
    let http = http_of(&seq);
    crate::live::genesis(env, http);
    (seq, http)
}

/// Applies `n` contracts, one bundle each, registering students `{prefix}{i}` with long names.
fn bundles_of_students(env: &Env, http: SocketAddr, prefix: &str, n: usize, per: usize) {
    let url = format!("http://{http}");
    let long = "n".repeat(200);
    for i in 0..n {
        let actions: Vec<String> = (0..per)
            .map(|j| {
                format!(r#"{{"action": "register_student", "student": {{"id": "{prefix}{i}x{j}", "name": "{long}", "department": "d"}}}}"#)
            })
            .collect();
        env.write("c.json", format!(r#"{{"actions": [{}]}}"#, actions.join(", ")));
        let args = ["contract", "submit", "c.json", "--node", &url, "--wallet", "peer1.pem"];
        env.ok(&[&args[..], &["--wait", "--timeout", "30s"]].concat());
    }
}

/// `node run --follow URL --from-snapshot` on data folder `dir`, with `extra` flags.
fn joiner(env: &Env, dir: &str, http: SocketAddr, extra: &[&str]) -> Daemon {
    let url = format!("http://{http}");
    let mut args = vec![
        "node",
        "run",
        "--data-dir",
        dir,
        "--trust",
        "auth.pub",
        "--follow",
        &url,
        "--from-snapshot",
        "--poll",
        "100ms",
        "--no-dht",
        "--listen",
        "127.0.0.1:0",
        "--http",
        "127.0.0.1:0",
    ];
    args.extend(extra);
    Daemon::start(env, &args)
}

/// Waits until the node at `http` stands where the node at `like` stands (seq and root).
fn caught_up(http: SocketAddr, like: SocketAddr) -> Value {
    let (_, target) = get(like, "/v1/status");
    let (seq, root) = (target["last_seq"].clone(), target["state_root"].clone());
    wait_status(http, |s| s["last_seq"] == seq && s["state_root"] == root)
}

#[test]
fn a_late_joiner_starts_from_the_newest_snapshot_without_fetching_the_bundles_before_it() {
    let env = Env::new();
    let (seq, http) = sequencer(&env, Some("3"));
    bundles_of_students(&env, http, "S", 6, 20);
    // Seq 7: snapshots of seq 3 and 6 are published, and heads name the newest.
    let status = wait_status(http, |s| s["last_seq"] == 7 && s["snapshot"]["seq"] == 6);
    let claim = status["snapshot"].clone();
    assert!(claim["magnet"].as_str().unwrap().starts_with("magnet:?xt=urn:btih:"), "{claim}");
    let (_, head) = get(http, "/v1/head");
    let payload = head["head"].as_str().unwrap().split('.').nth(1).unwrap().to_owned();
    let claims: Value = serde_json::from_slice(
        &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, payload)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(claims["snapshot"], claim, "the head names the snapshot");
    // The snapshot's folder and torrent are kept, and only the newest two.
    assert!(env.path("seq/snapshots/snapshot-6/state.svs").is_file());
    assert!(env.path("seq/snapshots/snapshot-3.torrent").is_file());

    let node = joiner(&env, "j", http, &[]);
    let j = http_of(&node);
    let status = caught_up(j, http);
    assert_eq!(status["joined"], serde_json::json!({"from": "snapshot", "seq": 6}), "{status}");
    // It holds the state from before the snapshot, without any bundle before it.
    let (code, entry) = get(j, "/v1/state/students/S0x0");
    assert_eq!(code, 200, "{entry}");
    let (_, page) = get(j, "/v1/bundles?from=1&limit=100");
    let fetched: Vec<u64> =
        page["bundles"].as_array().unwrap().iter().filter_map(|b| b["seq"].as_u64()).collect();
    assert!(fetched.iter().all(|s| *s > 6), "{page}");
    // It seeds the snapshot it started from, and names it.
    assert_eq!(status["snapshot"]["seq"], 6, "{status}");
    // New bundles keep applying after it.
    bundles_of_students(&env, http, "T", 1, 1);
    caught_up(j, http);
    let verify = env.json(&["ledger", "verify", "--data-dir", "j"]);
    assert_eq!(verify["ok"], true, "{verify}");
    drop(seq);
}

#[test]
fn a_joiner_with_no_snapshot_anywhere_replays_every_bundle_and_says_so() {
    let env = Env::new();
    let (seq, http) = sequencer(&env, None);
    bundles_of_students(&env, http, "S", 2, 2);
    let node = joiner(&env, "j", http, &[]);
    let j = http_of(&node);
    let status = caught_up(j, http);
    assert_eq!(status["joined"]["from"], "genesis", "{status}");
    let reason = status["joined"]["reason"].as_str().unwrap();
    assert!(reason.contains("names no snapshot"), "{reason}");
    let (code, _) = get(j, "/v1/bundles/1");
    assert_eq!(code, 200, "the replay fetched the first bundle");
    drop(seq);
}
