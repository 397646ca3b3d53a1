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
    sequencer_with(env, every, &[])
}

/// [`sequencer`] with `extra` flags.
fn sequencer_with(env: &Env, every: Option<&str>, extra: &[&str]) -> (Daemon, SocketAddr) {
    if !env.path("auth.pub").exists() {
        env.network("ed25519", "tokens.txt");
    }
    let mut args = Vec::from(extra);
    if let Some(n) = every {
        args.extend(["--snapshot-every", n]);
    }
    let seq = crate::live::sequencer_with(env, "200ms", &args);
    let http = http_of(&seq);
    if get(http, "/v1/status").1["last_seq"] == 0 {
        crate::live::genesis(env, http);
    }
    (seq, http)
}

/// Applies `n` contracts, one bundle each, registering students `{prefix}{i}` with long names.
fn bundles_of_students(env: &Env, http: SocketAddr, prefix: &str, n: usize, per: usize) {
    students(env, http, prefix, n, per, "d", true);
}

/// Submits `n` contracts of `per` students `{prefix}{i}x{j}` (200-byte names, `department`),
/// waiting for each to apply with `each`, else for the last only (they may share bundles).
fn students(
    env: &Env,
    http: SocketAddr,
    prefix: &str,
    n: usize,
    per: usize,
    department: &str,
    each: bool,
) {
    let url = format!("http://{http}");
    let long = "n".repeat(200);
    for i in 0..n {
        let actions: Vec<String> = (0..per)
            .map(|j| {
                format!(r#"{{"action": "register_student", "student": {{"id": "{prefix}{i}x{j}", "name": "{long}", "department": "{department}"}}}}"#)
            })
            .collect();
        env.write("c.json", format!(r#"{{"actions": [{}]}}"#, actions.join(", ")));
        let args = ["contract", "submit", "c.json", "--node", &url, "--wallet", "peer1.pem"];
        let wait: &[&str] = if each || i + 1 == n { &["--wait", "--timeout", "60s"] } else { &[] };
        env.ok(&[&args[..], wait].concat());
    }
}

/// Runs the `count` operation once, in a bundle of its own.
fn count(env: &Env, http: SocketAddr) {
    env.write("count.json", r#"{"actions": [{"action": "count"}]}"#);
    let url = format!("http://{http}");
    let args = ["contract", "submit", "count.json", "--node", &url, "--wallet", "peer1.pem"];
    let out = env.json(&[&args[..], &["--wait", "--timeout", "30s"]].concat());
    assert_eq!(out["state"], "applied", "{out}");
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

/// `tests/vectors/verify_snapshot.py FILE --root ROOT`: its exit code and output.
fn verify_snapshot(file: &std::path::Path, root: &str) -> (i32, String) {
    swarmvm_test_support::require_program("python3", "python3");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/vectors/verify_snapshot.py");
    let out = std::process::Command::new("python3")
        .arg(script)
        .arg(file)
        .args(["--root", root])
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

/// The claims of the newest head of the node at `http` (its signatures not checked).
fn head_claims(http: SocketAddr) -> Value {
    let (_, head) = get(http, "/v1/head");
    let payload = head["head"].as_str().unwrap().split('.').nth(1).unwrap().to_owned();
    serde_json::from_slice(
        &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, payload)
            .unwrap(),
    )
    .unwrap()
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
    // Seq 2 registers a WebAssembly operation, seq 3 runs it: the module travels with the
    // snapshot.
    let counter = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/wasm/counter.wat"
    ))
    .unwrap();
    std::fs::create_dir_all(env.path("ops/modules")).unwrap();
    let wasm = swarmvm_wasm::module_bytes(counter.as_bytes()).unwrap();
    std::fs::write(env.path("ops/modules/counter.wasm"), wasm).unwrap();
    std::fs::write(env.path("counter.wat"), &counter).unwrap();
    env.write("ops.json", r#"{"count": {"wasm": "counter.wat"}}"#);
    let ops = env.ok(&["token", "issue", "operations", "--key", "auth.pem", "--ops", "ops.json"]);
    env.write("ops/registration_tokens.txt", ops);
    env.ok(&["bundle", "submit", "ops", "--node", &format!("http://{http}")]);
    wait_status(http, |s| s["last_seq"] == 2);
    count(&env, http);
    bundles_of_students(&env, http, "S", 4, 20);
    // Seq 7: snapshots of seq 3 and 6 are published, and heads name the newest.
    let status = wait_status(http, |s| s["last_seq"] == 7 && s["snapshot"]["seq"] == 6);
    let claim = status["snapshot"].clone();
    assert!(claim["magnet"].as_str().unwrap().starts_with("magnet:?xt=urn:btih:"), "{claim}");
    let claims = head_claims(http);
    assert_eq!(claims["snapshot"], claim, "the head names the snapshot");
    // The snapshot's folder and torrent are kept, and only the newest two.
    assert!(env.path("seq/snapshots/snapshot-6/state.svs").is_file());
    assert!(env.path("seq/snapshots/snapshot-3.torrent").is_file());
    // An independent reader of docs/format.md (hashlib only) checks it against the root, and
    // refuses it with one entry changed.
    let root = claim["state_root"].as_str().unwrap();
    let (code, out) = verify_snapshot(&env.path("seq/snapshots/snapshot-6/state.svs"), root);
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("ok: ") && out.contains(" 1 modules;"), "{out}");
    let mut bytes = std::fs::read(env.path("seq/snapshots/snapshot-6/state.svs")).unwrap();
    let piece = swarmvm_ledger::SNAPSHOT_PIECE;
    // One letter of a student's name (a record, not a key).
    let at = piece + bytes[piece..].windows(8).position(|w| w == b"nnnnnnnn").unwrap();
    bytes[at] = b'm';
    std::fs::write(env.path("tampered.svs"), &bytes).unwrap();
    let (code, out) = verify_snapshot(&env.path("tampered.svs"), root);
    assert_eq!(
        (code, out.trim()),
        (1, "refused at chunk 1: its entries do not hash to the subtree's hash")
    );

    let node = joiner(&env, "j", http, &[]);
    let j = http_of(&node);
    let status = caught_up(j, http);
    assert_eq!(status["joined"]["from"], "snapshot", "{status}");
    assert_eq!(status["joined"]["seq"], 6, "{status}");
    assert_eq!(status["joined"]["fetched"], status["joined"]["bytes"], "{status}");
    // It holds the state from before the snapshot, without any bundle before it.
    let (code, entry) = get(j, "/v1/state/students/S0x0");
    assert_eq!(code, 200, "{entry}");
    let (_, page) = get(j, "/v1/bundles?from=1&limit=100");
    let fetched: Vec<u64> =
        page["bundles"].as_array().unwrap().iter().filter_map(|b| b["seq"].as_u64()).collect();
    assert!(fetched.iter().all(|s| *s > 6), "{page}");
    let (code, gone) = get(j, "/v1/bundles/2");
    assert_eq!(code, 410, "{gone}");
    assert!(
        gone["error"].as_str().unwrap().contains("started from the snapshot of seq 6"),
        "{gone}"
    );
    // It seeds the snapshot it started from, and names it.
    assert_eq!(status["snapshot"]["seq"], 6, "{status}");
    // New bundles keep applying after it, the module's among them.
    count(&env, http);
    caught_up(j, http);
    let state = env.json(&["state", "show", "--data-dir", "j"]);
    assert_eq!(state["wasm"]["count"]["count"], "2", "{}", state["wasm"]);
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

#[test]
fn a_joiner_killed_while_fetching_the_snapshot_resumes_it_and_stays_in_step_at_its_seq() {
    let env = Env::new();
    // A snapshot after every bundle, and heads signed again every second.
    let (seq, http) = sequencer_with(&env, Some("1"), &["--max-head-age", "3s"]);
    // About 1 MB of state (about 480 bytes a student): a snapshot of several pieces.
    students(&env, http, "L", 26, 80, &"n".repeat(200), false);
    // The head names the snapshot of its own seq.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let at = loop {
        let claims = head_claims(http);
        if claims["snapshot"]["seq"] == claims["seq"] && claims["seq"].as_u64() > Some(1) {
            break claims["seq"].as_u64().unwrap();
        }
        assert!(std::time::Instant::now() < deadline, "no head names its own seq's snapshot");
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    // A snapshot of several chunks under header nodes, which the independent reader checks
    // too.
    let root = head_claims(http)["snapshot"]["state_root"].as_str().unwrap().to_owned();
    let file = env.path(&format!("seq/snapshots/snapshot-{at}/state.svs"));
    let (code, out) = verify_snapshot(&file, &root);
    assert_eq!(code, 0, "{out}");
    let chunks: u32 =
        out.split(" chunks").next().unwrap().rsplit(' ').next().unwrap().parse().unwrap();
    assert!(chunks >= 3, "{out}");
    // At 96 KiB/s the snapshot takes about ten seconds to fetch.
    let mut node = joiner(&env, "j", http, &["--download-limit", "98304"]);
    let file = env.path(&format!("j/snapshots/snapshot-{at}/state.svs"));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !file.exists() {
        assert!(std::time::Instant::now() < deadline, "the fetch never started");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    std::thread::sleep(std::time::Duration::from_secs(5));
    let (_, status) = get(http_of(&node), "/v1/status");
    assert_eq!(status["last_seq"], 0, "killed before the snapshot was whole: {status}");
    node.signal("KILL");
    // Nothing of it is in the ledger.
    let root = env.ok(&["state", "root", "--data-dir", "j"]);
    assert_eq!(root.trim(), swarmvm_vm::Hash32::digest(&[]).to_hex());

    let mut node = joiner(&env, "j", http, &[]);
    let j = http_of(&node);
    let status = caught_up(j, http);
    let joined = &status["joined"];
    assert_eq!((joined["from"].as_str(), joined["seq"].as_u64()), (Some("snapshot"), Some(at)));
    let (bytes, fetched) = (joined["bytes"].as_u64().unwrap(), joined["fetched"].as_u64().unwrap());
    assert!(bytes >= 4 * 262_144, "{status}");
    assert!(
        fetched < bytes,
        "the pieces verified before the kill were not fetched again: {status}"
    );
    // At the snapshot's seq, heads signed again keep agreeing with it: no divergence, and
    // the next bundle applies.
    std::thread::sleep(std::time::Duration::from_millis(2500));
    let status = wait_status(j, |s| s["head"]["seq"] == at);
    assert_eq!(status["diverged"], false, "{status}");
    bundles_of_students(&env, http, "T", 1, 1);
    caught_up(j, http);
    let verify = env.json(&["ledger", "verify", "--data-dir", "j"]);
    assert_eq!(verify["ok"], true, "{verify}");
    // After a restart it still says how it began, and seeds its snapshot again.
    assert_eq!(node.signal("TERM"), 0);
    let node = joiner(&env, "j", http, &[]);
    let status = wait_status(http_of(&node), |s| s["snapshot"]["seq"] == at);
    assert_eq!(status["joined"]["from"], "snapshot", "{status}");
    drop((seq, node));
}

/// A relay that answers `GET /v1/head` with `head` and every other GET as `upstream` does,
/// until dropped.
struct Relay {
    addr: SocketAddr,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Relay {
    fn start(upstream: SocketAddr, head: String) -> Self {
        use std::io::{Read as _, Write as _};
        use std::sync::atomic::Ordering;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopped = stop.clone();
        std::thread::spawn(move || {
            let started = std::time::Instant::now();
            while !stopped.load(Ordering::SeqCst) && started.elapsed().as_secs() < 180 {
                let Ok((mut s, _)) = listener.accept() else {
                    std::thread::sleep(std::time::Duration::from_millis(5));
                    continue;
                };
                let head = head.clone();
                std::thread::spawn(move || {
                    s.set_nonblocking(false).unwrap();
                    s.set_read_timeout(Some(std::time::Duration::from_secs(5))).unwrap();
                    let mut request = Vec::new();
                    let mut buf = [0u8; 4096];
                    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                        match s.read(&mut buf) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => request.extend_from_slice(&buf[..n]),
                        }
                    }
                    let text = String::from_utf8_lossy(&request);
                    let path = text.split(' ').nth(1).unwrap_or("/").to_owned();
                    let (code, body) = if path.starts_with("/v1/head") {
                        (200, serde_json::json!({ "head": head }).to_string())
                    } else {
                        let (code, body) = get(upstream, &path);
                        (code, body.to_string())
                    };
                    let _ = write!(
                        s,
                        "HTTP/1.1 {code} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                });
            }
        });
        Self { addr, stop }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

#[test]
fn a_snapshot_torrent_consistent_in_itself_but_of_the_wrong_state_is_refused_and_the_joiner_replays()
 {
    let env = Env::new();
    let (seq, http) = sequencer(&env, Some("3"));
    bundles_of_students(&env, http, "S", 3, 40);
    let status = wait_status(http, |s| s["last_seq"] == 4 && s["snapshot"]["seq"] == 3);
    let root = status["snapshot"]["state_root"].clone();

    // A peer seeds the snapshot with one entry changed: its torrent's piece hashes hold.
    std::fs::create_dir_all(env.path("hostile/snapshot-3")).unwrap();
    let mut bytes = std::fs::read(env.path("seq/snapshots/snapshot-3/state.svs")).unwrap();
    let piece = swarmvm_ledger::SNAPSHOT_PIECE;
    assert!(bytes.len() > piece, "a header and chunks");
    let at = piece + bytes[piece..].windows(4).position(|w| w == b"S0x1").unwrap();
    bytes[at + 3] = b'9';
    std::fs::write(env.path("hostile/snapshot-3/state.svs"), &bytes).unwrap();
    let created =
        env.json(&["bundle", "create", "hostile/snapshot-3", "--piece-length", &piece.to_string()]);
    let magnet = created["magnet"].as_str().unwrap().to_owned();
    let torrent = env.p("hostile/snapshot-3.torrent");
    let seeder = Daemon::start(
        &env,
        &[
            "bundle",
            "seed",
            &torrent,
            "--dir",
            &env.p("hostile/snapshot-3"),
            "--no-dht",
            "--listen",
            "127.0.0.1:0",
        ],
    );
    let hostile = seeder.first_line["listen"].as_str().unwrap().to_owned();

    // A head naming it with the right root, signed with the authority's key (a faulty
    // member), relayed to the joiner.
    let mut claims = head_claims(http);
    claims["snapshot"]["magnet"] = magnet.into();
    assert_eq!(claims["snapshot"]["state_root"], root);
    let key = crate::proofs::wallet(&env, "auth.pem");
    let network = claims["aud"].as_str().unwrap().to_owned();
    let iat = claims["iat"].as_u64().unwrap();
    let forged = crate::proofs::head_like(&claims, &[&key], &network, iat);
    let relay = Relay::start(http, forged);

    let node = joiner(&env, "j", relay.addr, &["--peer", &hostile]);
    let status = caught_up(http_of(&node), http);
    assert_eq!(status["joined"]["from"], "genesis", "{status}");
    let reason = status["joined"]["reason"].as_str().unwrap();
    assert!(reason.contains("snapshot seq 3 refused: snapshot refused at chunk 1"), "{reason}");
    // Nothing of the hostile snapshot is kept.
    assert!(!env.path("j/snapshots/snapshot-3").exists());
    drop((seq, seeder, relay));
}

#[test]
fn keep_bundles_prunes_only_below_the_newest_snapshot_and_the_ledger_keeps_every_record() {
    let env = Env::new();
    let (mut seq, http) = sequencer_with(&env, Some("3"), &["--keep-bundles", "2"]);
    bundles_of_students(&env, http, "S", 6, 2);
    wait_status(http, |s| s["last_seq"] == 7 && s["snapshot"]["seq"] == 6);
    // Kept: the newest two (6 and 7), and nothing above the snapshot is ever pruned; 1 to 5
    // go.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while get(http, "/v1/bundles/5").0 != 410 {
        assert!(std::time::Instant::now() < deadline, "seq 5 was never pruned");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let gone = |http| {
        (1..=7).filter(|s| get(http, &format!("/v1/bundles/{s}")).0 == 410).collect::<Vec<u64>>()
    };
    assert_eq!(gone(http), vec![1, 2, 3, 4, 5]);
    let (_, answer) = get(http, "/v1/bundles/3");
    let why = answer["error"].as_str().unwrap();
    assert!(why.contains("was pruned here (bundles up to seq 5; --keep-bundles)"), "{why}");
    let (_, page) = get(http, "/v1/bundles?from=1&limit=100");
    let seeded: Vec<u64> =
        page["bundles"].as_array().unwrap().iter().filter_map(|b| b["seq"].as_u64()).collect();
    assert_eq!(seeded, vec![6, 7], "{page}");
    assert_eq!(std::fs::read_dir(env.path("seq/torrents")).unwrap().count(), 2);
    // The ledger keeps every record, receipt and log entry.
    let verify = env.json(&["ledger", "verify", "--data-dir", "seq"]);
    assert_eq!(verify["ok"], true, "{verify}");
    assert_eq!(
        (verify["report"]["bundles"].as_u64(), verify["report"]["batches"].as_u64()),
        (Some(7), Some(7))
    );
    // A joiner still starts: from the snapshot, whose bundle is kept.
    let node = joiner(&env, "j", http, &[]);
    let status = caught_up(http_of(&node), http);
    assert_eq!(status["joined"]["from"], "snapshot", "{status}");
    drop(node);
    // After a restart the pruned stay pruned.
    assert_eq!(seq.signal("TERM"), 0);
    let (again, http) = sequencer_with(&env, Some("3"), &["--keep-bundles", "2"]);
    assert_eq!(gone(http), vec![1, 2, 3, 4, 5]);
    drop(again);

    // Without a snapshot nothing is pruned: a joiner could only replay.
    let other = Env::new();
    let (plain, http) = sequencer_with(&other, None, &["--keep-bundles", "1"]);
    bundles_of_students(&other, http, "S", 3, 1);
    std::thread::sleep(std::time::Duration::from_millis(1500));
    assert!(gone(http).is_empty());
    drop(plain);
}
