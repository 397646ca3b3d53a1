//! What strangers can make a node hold or wait for, through its API and drop folder: torrents
//! that cannot be bundles, dead magnets, stalled fetches, forks, slow and idle clients, other
//! hosts and other origins. Each meets a bound, gets a clear answer and costs nothing after.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};
use swarmvm_node::{BundleState, HttpLimits, Node, NodeLimits, NodeOptions};
use swarmvm_swarm::{Source, SwarmOptions};
use swarmvm_test_support::bencode::{B, encode, file, s};
use swarmvm_test_support::http::{exchange, get, post};
use swarmvm_test_support::net::student;

use crate::support::{Authority, LIMIT, add, is, wait_bundle};

async fn node_with(a: &Authority, name: &str, options: NodeOptions) -> Node {
    Node::start(NodeOptions {
        data_dir: a.dir.path().join(name),
        network: Some(a.net.network.clone()),
        swarm: SwarmOptions {
            peers: vec![a.seeder.listen_addr().unwrap()],
            ..SwarmOptions::loopback()
        },
        http: Some("127.0.0.1:0".parse().unwrap()),
        ..options
    })
    .await
    .unwrap()
}

fn torrent_body(bytes: &[u8]) -> String {
    json!({ "torrent_base64": base64::engine::general_purpose::STANDARD.encode(bytes) }).to_string()
}

/// A multi-file torrent named `name` of `files`, with few pieces however much is declared.
fn hostile_torrent(name: &str, files: Vec<B>, announce: Option<&str>) -> Vec<u8> {
    let total: i128 = files
        .iter()
        .map(|f| match f {
            B::D(items) => match items[0].1 {
                B::I(n) => n,
                _ => 0,
            },
            _ => 0,
        })
        .sum();
    let piece_length: i128 = if total > 1 << 30 { 1 << 26 } else { 16384 };
    let pieces = ((total + piece_length - 1) / piece_length).max(1) as usize;
    let info = B::D(vec![
        ("files", B::L(files)),
        ("name", s(name)),
        ("piece length", B::I(piece_length)),
        ("pieces", B::S(vec![7; pieces * 20])),
    ]);
    let mut top = vec![];
    if let Some(url) = announce {
        top.push(("announce", s(url)));
    }
    top.push(("info", info));
    encode(&B::D(top))
}

fn bundle_files(contracts_len: i128) -> Vec<B> {
    vec![
        file(&["contracts.jsonl"], contracts_len),
        file(&["manifest.jwt"], 900),
        file(&["registration_tokens.txt"], 10),
    ]
}

fn entries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn torrents_that_cannot_be_bundles_are_refused_before_they_cost_anything() {
    let a = Authority::new(1).await;
    let node = node_with(&a, "peer", NodeOptions::default()).await;
    let http = node.http_addr().unwrap();
    let many: Vec<B> = bundle_files(10)
        .into_iter()
        .chain((0..5_000).map(|i| {
            B::D(vec![("length", B::I(1)), ("path", B::L(vec![s("x"), s(format!("{i}"))]))])
        }))
        .collect();
    let single = encode(&B::D(vec![(
        "info",
        B::D(vec![
            ("length", B::I(100)),
            ("name", s("bundle-9")),
            ("piece length", B::I(16384)),
            ("pieces", B::S(vec![0; 20])),
        ]),
    )]));
    let cases = [
        (hostile_torrent("terabyte", bundle_files(1 << 40), None), "declares 1099511627776 bytes"),
        (
            hostile_torrent(
                "huge-total",
                {
                    let mut f = bundle_files(250 << 20);
                    f[2] = file(&["registration_tokens.txt"], 250 << 20);
                    f.extend(
                        (0..64).map(|i| file(&["modules", &format!("{i:064x}.wasm")], 1 << 20)),
                    );
                    f
                },
                None,
            ),
            "at most 536870912 are accepted",
        ),
        (single, "single file"),
        (hostile_torrent("many", many, None), "it holds 'x/0'"),
        (
            hostile_torrent(
                "extra",
                [bundle_files(10), vec![file(&["run-me.sh"], 5)]].concat(),
                None,
            ),
            "run-me.sh",
        ),
        (
            hostile_torrent("ssrf", bundle_files(10), Some("gopher://127.0.0.1:6379/_FLUSHALL")),
            "tracker scheme 'gopher'",
        ),
        (
            hostile_torrent(
                "files",
                (0..100_001).map(|i| file(&[&format!("{i}")], 1)).collect(),
                None,
            ),
            "length limit exceeded",
        ),
    ];
    for (torrent, says) in &cases {
        let (code, body) = post(http, "/v1/bundles", &torrent_body(torrent));
        assert_eq!(code, if says.contains("length limit") { 413 } else { 400 }, "{says}: {body}");
        let error = body["error"].as_str().unwrap();
        assert!(error.contains(says), "{says}: {error}");
        assert!(!error.contains('\n'));
    }
    assert!(node.bundles().is_empty(), "nothing is remembered: {:?}", node.bundles());
    assert!(entries(&a.dir.path().join("peer/bundles")).is_empty(), "nothing written");
    assert!(entries(&a.dir.path().join("peer/torrents")).is_empty(), "nothing stored");
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_magnets_are_bounded_time_out_and_are_forgotten() {
    let a = Authority::new(1).await;
    let limits = NodeLimits {
        max_pending: 3,
        max_rejected: 2,
        resolve_timeout: Duration::from_millis(600),
        ..NodeLimits::default()
    };
    let node = node_with(&a, "peer", NodeOptions { limits, ..NodeOptions::default() }).await;
    let http = node.http_addr().unwrap();
    // Trackers on a port where nothing answers: resolution would wait forever.
    let magnet = |i: u8| {
        json!({"magnet": format!("magnet:?xt=urn:btih:{:040x}&tr=http%3A%2F%2F127.0.0.1%3A9%2Fannounce", u128::from(i) + 1)})
            .to_string()
    };
    for i in 0..3 {
        let (code, body) = post(http, "/v1/bundles", &magnet(i));
        assert_eq!(code, 202, "{body}");
    }
    let busy = exchange(http, "POST", "/v1/bundles", &[("Host", &http.to_string())], &magnet(3));
    assert_eq!(busy.status, 429, "{:?}", busy.json);
    assert_eq!(busy.header("retry-after"), Some("5"));
    assert!(busy.json["error"].as_str().unwrap().contains("3 bundles are in progress"));
    // They time out, are refused with the reason, and only the newest two are remembered.
    let deadline = Instant::now() + LIMIT;
    while node.bundles().iter().any(|b| b.state.is_pending()) {
        assert!(Instant::now() < deadline, "{:?}", node.bundles());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let list = node.bundles();
    assert_eq!(list.len(), 2, "{list:?}");
    for b in &list {
        assert_eq!(b.state, BundleState::Rejected);
        assert!(b.reason.as_deref().unwrap().contains("not resolved within 600ms"), "{b:?}");
    }
    let (code, _) = post(http, "/v1/bundles", &magnet(3));
    assert_eq!(code, 202, "room again once they are refused");
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_fetch_is_refused_its_data_removed_and_it_can_be_tried_again() {
    let a = Authority::new(1).await;
    let limits = NodeLimits { stall_timeout: Duration::from_millis(500), ..NodeLimits::default() };
    let node = node_with(&a, "peer", NodeOptions { limits, ..NodeOptions::default() }).await;
    // The bundle exists but nobody seeds it yet.
    let dir = a.net.bundle(
        a.dir.path(),
        "bundle-1",
        true,
        &[a.net.contract(0, 1, &[student("S1")])],
        None,
    );
    let torrent = swarmvm_swarm::TorrentFile::create(&dir, &[], None).unwrap();
    let hash = add(&node, &torrent);
    let b = wait_bundle(&node, &hash, is(BundleState::Rejected)).await;
    assert!(b.reason.as_deref().unwrap().starts_with("no data for 500ms"), "{b:?}");
    let data = a.dir.path().join("peer/bundles").join(&hash);
    assert!(!data.exists(), "its folder is removed");
    assert!(!a.dir.path().join(format!("peer/torrents/{hash}.torrent")).exists());
    // Once someone seeds it, adding it again fetches and applies it.
    a.seed(&dir).await;
    node.add(Source::Torrent(torrent)).unwrap();
    assert!(node.wait_applied(1, LIMIT).await, "{:?}", node.bundles());
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fork_is_refused_and_kept_as_evidence_and_a_re_encoded_copy_is_the_same_bundle() {
    let a = Authority::new(2).await;
    let (b1, t1) =
        a.publish("bundle-1", true, &[a.net.contract(0, 1, &[student("S1")])], None).await;
    let node = node_with(&a, "peer", NodeOptions::default()).await;
    add(&node, &t1);
    assert!(node.wait_applied(1, LIMIT).await);
    let root = node.state_root();

    // The same bundle, its manifest without the newline: another torrent, the same identity.
    let copy = a.dir.path().join("bundle-1-copy");
    std::fs::create_dir(&copy).unwrap();
    for f in ["registration_tokens.txt", "contracts.jsonl"] {
        std::fs::copy(b1.join(f), copy.join(f)).unwrap();
    }
    let manifest = std::fs::read_to_string(b1.join("manifest.jwt")).unwrap();
    std::fs::write(copy.join("manifest.jwt"), manifest.trim_end()).unwrap();
    let t_copy = a.seed(&copy).await;
    assert_ne!(t_copy.info_hash(), t1.info_hash());
    let h_copy = add(&node, &t_copy);
    let same = wait_bundle(&node, &h_copy, |b| !b.state.is_pending()).await;
    assert_eq!(same.state, BundleState::Applied, "the same bundle by identity: {same:?}");

    // Another validly signed bundle for seq 1: a fork.
    let (_fork, t_fork) =
        a.publish("bundle-1-fork", true, &[a.net.contract(1, 1, &[student("S2")])], None).await;
    let h_fork = add(&node, &t_fork);
    let b = wait_bundle(&node, &h_fork, is(BundleState::Rejected)).await;
    assert!(
        b.reason.as_deref().unwrap().starts_with("fork: bundle seq 1 is already applied"),
        "{b:?}"
    );
    assert_eq!(node.state_root(), root, "the fork changed nothing");
    let http = node.http_addr().unwrap();
    let (_, status) = get(http, "/v1/status");
    assert_eq!(status["evidence"].as_array().unwrap().len(), 1, "{status}");
    assert_eq!(status["evidence"][0]["seq"], 1);
    let (code, evidence) = get(http, "/v1/evidence");
    assert_eq!(code, 200);
    let e = &evidence["evidence"][0];
    assert_eq!(e["kept_manifest"], manifest.trim_end());
    assert_eq!(
        e["other_manifest"],
        std::fs::read_to_string(_fork.join("manifest.jwt")).unwrap().trim_end()
    );
    assert_ne!(e["kept"], e["other"]);
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_drop_folder_tries_again_when_the_node_is_busy() {
    let a = Authority::new(1).await;
    let (_b1, t1) =
        a.publish("bundle-1", true, &[a.net.contract(0, 1, &[student("S1")])], None).await;
    let drop_dir = a.dir.path().join("drop");
    std::fs::create_dir(&drop_dir).unwrap();
    let limits = NodeLimits {
        max_pending: 1,
        resolve_timeout: Duration::from_millis(800),
        ..NodeLimits::default()
    };
    let node = node_with(
        &a,
        "peer",
        NodeOptions { limits, watch: Some(drop_dir.clone()), ..NodeOptions::default() },
    )
    .await;
    // A magnet nobody can resolve fills the node's one slot.
    let dead = swarmvm_swarm::MagnetLink::parse(
        "magnet:?xt=urn:btih:00000000000000000000000000000000000000aa&tr=http%3A%2F%2F127.0.0.1%3A9%2Fa",
    )
    .unwrap();
    node.add(Source::Magnet(dead)).unwrap();
    std::fs::write(drop_dir.join("b1.torrent"), t1.as_bytes()).unwrap();
    // While the slot is taken (until the magnet times out) the dropped torrent waits outside.
    let deadline = std::time::Instant::now() + LIMIT;
    loop {
        let b = node.bundles();
        if !b[0].state.is_pending() {
            break;
        }
        assert_eq!(b.len(), 1, "the dropped torrent waits: {b:?}");
        assert!(std::time::Instant::now() < deadline, "{b:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(node.wait_applied(1, LIMIT).await, "it was tried again: {:?}", node.bundles());
    let states: Vec<BundleState> = node.bundles().iter().map(|b| b.state).collect();
    assert_eq!(states, [BundleState::Rejected, BundleState::Applied]);
    node.shutdown().await;
}

/// Opens a connection that sends part of a request's headers and then nothing.
fn slow_client(addr: SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(b"GET /v1/status HTTP/1.1\r\nHo").unwrap();
    s
}

/// True when the server closed `stream` (within `limit`).
fn closed_within(stream: &mut TcpStream, limit: Duration) -> bool {
    stream.set_read_timeout(Some(limit)).unwrap();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_idle_clients_are_shed_and_the_api_keeps_answering() {
    let a = Authority::new(1).await;
    let http_limits = HttpLimits {
        max_connections: 8,
        header_timeout: Duration::from_secs(2),
        idle_timeout: Duration::from_millis(800),
        request_timeout: Duration::from_millis(800),
    };
    let limits = NodeLimits { http: http_limits, ..NodeLimits::default() };
    let node = node_with(&a, "peer", NodeOptions { limits, ..NodeOptions::default() }).await;
    let http = node.http_addr().unwrap();
    let mut slow: Vec<TcpStream> = (0..40).map(|_| slow_client(http)).collect();
    // New clients still get answers: each evicts the connection idle the longest.
    for _ in 0..5 {
        let started = Instant::now();
        let (code, status) = get(http, "/v1/status");
        assert_eq!(code, 200, "{status}");
        assert!(started.elapsed() < Duration::from_millis(500), "{:?}", started.elapsed());
    }
    // Every slow client is gone: evicted, or cut by the header timeout.
    for s in &mut slow {
        assert!(closed_within(s, Duration::from_secs(5)), "a slow client was kept");
    }
    // An idle keep-alive connection is closed after the idle timeout.
    let mut idle = TcpStream::connect(http).unwrap();
    idle.write_all(format!("GET /v1/state/root HTTP/1.1\r\nHost: {http}\r\n\r\n").as_bytes())
        .unwrap();
    let started = Instant::now();
    assert!(closed_within(&mut idle, Duration::from_secs(5)));
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(700), "closed after {waited:?}, before the timeout");
    // A body trickled slower than the request timeout gets 408.
    let mut trickle = TcpStream::connect(http).unwrap();
    trickle
        .write_all(
            format!("POST /v1/bundles HTTP/1.1\r\nHost: {http}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"mag").as_bytes(),
        )
        .unwrap();
    trickle.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut raw = Vec::new();
    let _ = trickle.read_to_end(&mut raw);
    let response = swarmvm_test_support::http::parse_response(&raw);
    assert_eq!(response.status, 408, "{response:?}");
    assert!(response.json["error"].as_str().unwrap().contains("longer than 800ms"));
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_hosts_served_and_same_origin_writes_are_answered() {
    let a = Authority::new(1).await;
    let options =
        NodeOptions { allow_hosts: vec!["node.example.org".into()], ..NodeOptions::default() };
    let node = node_with(&a, "peer", options).await;
    let http = node.http_addr().unwrap();
    let port = http.port();
    let ask = |host: &str| exchange(http, "GET", "/v1/status", &[("Host", host)], "").status;
    for host in [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        format!("node.example.org:{port}"),
    ] {
        assert_eq!(ask(&host), 200, "{host}");
    }
    for host in [
        format!("evil.example:{port}"),
        format!("127.0.0.1.nip.io:{port}"),
        format!("localhost.evil.example:{port}"),
        format!("127.0.0.1:{}", port.wrapping_add(1)),
    ] {
        let r = exchange(http, "GET", "/v1/status", &[("Host", &host)], "");
        assert_eq!(r.status, 421, "{host}");
        assert!(r.json["error"].as_str().unwrap().contains("--allow-host"), "{:?}", r.json);
    }
    let missing = exchange(http, "GET", "/v1/status", &[], "");
    assert_eq!(missing.status, 421);

    // A page on another origin cannot add a bundle, and reads get no CORS permission.
    let body = json!({"magnet": "magnet:?xt=urn:btih:00000000000000000000000000000000000000bb"})
        .to_string();
    let host = http.to_string();
    let write = exchange(
        http,
        "POST",
        "/v1/bundles",
        &[("Host", &host), ("Origin", "http://evil.example")],
        &body,
    );
    assert_eq!(write.status, 403, "{:?}", write.json);
    assert!(node.bundles().is_empty());
    let read = exchange(
        http,
        "GET",
        "/v1/status",
        &[("Host", &host), ("Origin", "http://evil.example")],
        "",
    );
    assert_eq!(read.status, 200);
    assert!(
        read.headers.iter().all(|(n, _)| !n.starts_with("access-control-")),
        "{:?}",
        read.headers
    );
    let preflight = exchange(
        http,
        "OPTIONS",
        "/v1/bundles",
        &[
            ("Host", &host),
            ("Origin", "http://evil.example"),
            ("Access-Control-Request-Method", "POST"),
        ],
        "",
    );
    assert!(preflight.headers.iter().all(|(n, _)| !n.starts_with("access-control-")));
    assert_ne!(preflight.status / 100, 2, "{preflight:?}");
    // The node's own origin may write.
    let own = format!("http://{host}");
    let ok = exchange(http, "POST", "/v1/bundles", &[("Host", &host), ("Origin", &own)], &body);
    assert_eq!(ok.status, 202, "{:?}", ok.json);

    // Magnets whose trackers are not BitTorrent trackers are refused.
    for tracker in [
        "gopher%3A%2F%2F127.0.0.1%3A6379%2F_x",
        "file%3A%2F%2F%2Fetc%2Fpasswd",
        "http%3A%2F%2Fu%3Ap%40127.0.0.1%2Fa",
    ] {
        let body = json!({"magnet": format!("magnet:?xt=urn:btih:00000000000000000000000000000000000000cc&tr={tracker}")}).to_string();
        let (code, r) = post(http, "/v1/bundles", &body);
        assert_eq!(code, 400, "{tracker}: {r}");
        let error = r["error"].as_str().unwrap();
        assert!(error.contains("tracker"), "{error}");
    }
    let _: Value = get(http, "/v1/status").1;
    node.shutdown().await;
}

/// Opens a connection holding a follower's long poll, `GET /v1/head?wait=25` (kept alive).
fn long_poll(addr: SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(format!("GET /v1/head?wait=25 HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes())
        .unwrap();
    s
}

/// Opens a connection whose request's body never comes: busy until the request timeout.
fn body_never_sent(addr: SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(
        format!("POST /v1/contracts HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 100\r\n\r\nab")
            .as_bytes(),
    )
    .unwrap();
    s
}

/// The status line and headers of an answer on `stream`, if one comes within `limit`.
fn answer_within(stream: &mut TcpStream, limit: Duration) -> Option<String> {
    let deadline = Instant::now() + limit;
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    while !raw.windows(4).any(|w| w == b"\r\n\r\n") {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        stream.set_read_timeout(Some(left)).unwrap();
        match stream.read(&mut buf) {
            Ok(n) if n > 0 => raw.extend_from_slice(&buf[..n]),
            _ => break,
        }
    }
    let text = String::from_utf8_lossy(&raw).into_owned();
    text.starts_with("HTTP/1.1 ").then_some(text)
}

/// `GET /v1/status` on a new connection: its status code, or `None` when the node refused or
/// dropped the connection (or did not answer within 5 s).
fn status_code(addr: SocketAddr) -> Option<u16> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.write_all(
        format!("GET /v1/status HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .ok()?;
    let head = answer_within(&mut s, Duration::from_secs(5))?;
    head.split_whitespace().nth(1)?.parse().ok()
}

fn with_connections(max_connections: usize) -> NodeOptions {
    let http = HttpLimits { max_connections, ..HttpLimits::default() };
    NodeOptions { limits: NodeLimits { http, ..NodeLimits::default() }, ..NodeOptions::default() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_polls_are_capped_so_they_never_take_every_connection() {
    let a = Authority::new(1).await;
    let node = node_with(&a, "peer", with_connections(8)).await;
    let http = node.http_addr().unwrap();
    let (answered, status, took) = tokio::task::spawn_blocking(move || {
        // As many long polls as the node takes connections. No head is known here, so each
        // would wait its whole 25 s.
        let mut polls: Vec<TcpStream> = (0..8).map(|_| long_poll(http)).collect();
        std::thread::sleep(Duration::from_millis(500));
        let answered: Vec<String> =
            polls.iter_mut().filter_map(|p| answer_within(p, Duration::from_millis(500))).collect();
        let started = Instant::now();
        let status = status_code(http);
        let took = started.elapsed();
        drop(polls);
        (answered, status, took)
    })
    .await
    .unwrap();
    // A quarter of the connections wait; the polls beyond are answered at once with the head
    // known (none yet), and their connections can be taken back.
    assert_eq!(answered.len(), 6, "{answered:?}");
    for a in &answered {
        assert!(a.starts_with("HTTP/1.1 404"), "{a}");
    }
    assert_eq!(status, Some(200), "a status request found no connection (after {took:?})");
    assert!(took < Duration::from_secs(2), "{took:?}");
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_poll_is_ended_early_to_make_room_when_every_connection_is_busy() {
    let a = Authority::new(1).await;
    let node = node_with(&a, "peer", with_connections(4)).await;
    let http = node.http_addr().unwrap();
    let (shed, status, took) = tokio::task::spawn_blocking(move || {
        let mut poll = long_poll(http);
        std::thread::sleep(Duration::from_millis(300));
        // Every other connection is busy with a request whose body never comes.
        let busy: Vec<TcpStream> = (0..3).map(|_| body_never_sent(http)).collect();
        std::thread::sleep(Duration::from_millis(500));
        let started = Instant::now();
        let status = status_code(http);
        let took = started.elapsed();
        let shed = answer_within(&mut poll, Duration::from_secs(5));
        drop(busy);
        (shed, status, took)
    })
    .await
    .unwrap();
    assert_eq!(status, Some(200), "a status request found no connection (after {took:?})");
    assert!(took < Duration::from_secs(2), "{took:?}");
    // The long poll made room: answered early with the head known (none yet), and closed.
    let shed = shed.expect("the long poll was answered early");
    assert!(shed.starts_with("HTTP/1.1 404"), "{shed}");
    assert!(shed.to_ascii_lowercase().contains("connection: close"), "{shed}");
    node.shutdown().await;
}
