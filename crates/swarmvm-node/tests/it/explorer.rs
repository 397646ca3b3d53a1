//! The explorer's server side: the page for browsers (with its own strict policy) and JSON
//! for scripts at `/`, its embedded files, and `GET /v1/events`. The page itself is tested in
//! chromium by `crates/swarmvm/tests/it/explorer.rs`.

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use serde_json::Value;
use swarmvm_node::{HttpLimits, NodeLimits, NodeOptions};
use swarmvm_swarm::SwarmOptions;
use swarmvm_test_support::http::{exchange, get};
use swarmvm_test_support::net::student;

use crate::support::{Authority, LIMIT, add};

const BROWSER: &str = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browsers_get_the_page_under_a_strict_policy_and_scripts_keep_the_route_list() {
    let a = Authority::new(1).await;
    let node = a.node("peer").await;
    let http = node.http_addr().unwrap();
    let host = http.to_string();

    let page = exchange(
        http,
        "GET",
        "/",
        &[("Host", &host), ("Accept", BROWSER), ("Origin", "https://evil.example")],
        "",
    );
    assert_eq!(page.status, 200);
    assert_eq!(page.header("content-type"), Some("text/html; charset=utf-8"));
    assert!(page.body.contains("<title>swarmvm explorer</title>"), "{}", page.body);
    assert_eq!(page.header("vary"), Some("Accept"));
    let csp = page.header("content-security-policy").unwrap();
    for directive in [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "connect-src 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
        "form-action 'none'",
        "require-trusted-types-for 'script'",
    ] {
        assert!(csp.contains(directive), "{directive} missing from {csp}");
    }
    assert!(!csp.contains("unsafe"), "{csp}");
    assert!(
        !page.headers.iter().any(|(n, _)| n.starts_with("access-control-")),
        "{:?}",
        page.headers
    );
    assert_eq!(page.header("x-content-type-options"), Some("nosniff"));

    // Scripts: no Accept, */*, or JSON first: the list of routes, as before.
    for accept in [None, Some("*/*"), Some("application/json")] {
        let mut headers = vec![("Host", host.as_str())];
        headers.extend(accept.map(|a| ("Accept", a)));
        let r = exchange(http, "GET", "/", &headers, "");
        assert_eq!(r.status, 200);
        let routes =
            r.json["routes"].as_array().unwrap_or_else(|| panic!("{accept:?}: {}", r.body));
        assert!(routes.iter().any(|r| r.as_str().unwrap().starts_with("GET /v1/events")));
        assert_eq!(
            r.header("content-security-policy"),
            Some("default-src 'none'; frame-ancestors 'none'")
        );
    }
    let (code, list) = get(http, "/v1");
    assert_eq!((code, list["routes"].as_array().map(Vec::len).unwrap_or(0) > 20), (200, true));

    // The page's files: each named in it, served with a type and a tag; asked again with the
    // tag, nothing is sent.
    for (path, kind) in [
        ("/explorer/app.js", "text/javascript; charset=utf-8"),
        ("/explorer/style.css", "text/css; charset=utf-8"),
        ("/explorer/uPlot.iife.min.js", "text/javascript; charset=utf-8"),
        ("/explorer/icon.svg", "image/svg+xml"),
    ] {
        assert!(page.body.contains(path), "{path} not in the page");
        let r = exchange(http, "GET", path, &[("Host", &host)], "");
        assert_eq!((r.status, r.header("content-type")), (200, Some(kind)), "{path}");
        assert!(r.body.len() > 300, "{path}");
        let tag = r.header("etag").unwrap().to_owned();
        let again = exchange(http, "GET", path, &[("Host", &host), ("If-None-Match", &tag)], "");
        assert_eq!((again.status, again.body.as_str()), (304, ""), "{path}");
    }
    let (code, missing) = get(http, "/explorer/../Cargo.toml");
    assert_eq!(code, 404, "{missing}");
    let (code, missing) = get(http, "/explorer/secret.js");
    assert_eq!(code, 404);
    assert!(missing["error"].as_str().unwrap().contains("/explorer/secret.js"));
    node.shutdown().await;
}

/// An open `GET /v1/events` stream.
struct Events {
    reader: BufReader<TcpStream>,
}

impl Events {
    fn open(http: SocketAddr) -> Result<Self, String> {
        let mut stream = TcpStream::connect(http).unwrap();
        stream
            .write_all(
                format!(
                    "GET /v1/events HTTP/1.1\r\nHost: {http}\r\nAccept: text/event-stream\r\n\r\n"
                )
                .as_bytes(),
            )
            .unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut reader = BufReader::new(stream);
        let mut head = String::new();
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            if line == "\r\n" || line.is_empty() {
                break;
            }
            head.push_str(&line);
        }
        if !head.starts_with("HTTP/1.1 200") {
            return Err(head);
        }
        assert!(head.to_ascii_lowercase().contains("content-type: text/event-stream"), "{head}");
        Ok(Self { reader })
    }

    /// The next `status` event's document, or `None` when none comes within `wait`.
    fn next_status(&mut self, wait: Duration) -> Option<Value> {
        self.reader.get_ref().set_read_timeout(Some(wait)).unwrap();
        let deadline = Instant::now() + wait;
        let mut event = String::new();
        while Instant::now() < deadline {
            let mut line = String::new();
            match self.reader.read_line(&mut line) {
                Ok(0) => panic!("the stream closed"),
                Ok(_) => {}
                Err(_) => return None,
            }
            // Chunked framing: a size line, then the event's lines.
            let line = line.trim_end();
            if let Some(name) = line.strip_prefix("event: ") {
                event = name.to_owned();
            } else if let Some(data) = line.strip_prefix("data: ")
                && event == "status"
            {
                return Some(serde_json::from_str(data).unwrap());
            }
        }
        None
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_streams_send_the_status_at_once_and_on_each_change_and_outlive_the_idle_timeout() {
    let a = Authority::new(1).await;
    let http_limits =
        HttpLimits { idle_timeout: Duration::from_millis(800), ..HttpLimits::default() };
    let node = swarmvm_node::Node::start(NodeOptions {
        data_dir: a.dir.path().join("peer"),
        network: Some(a.net.network.clone()),
        swarm: SwarmOptions {
            peers: vec![a.seeder.listen_addr().unwrap()],
            ..SwarmOptions::loopback()
        },
        http: Some("127.0.0.1:0".parse().unwrap()),
        limits: NodeLimits { http: http_limits, ..NodeLimits::default() },
        ..NodeOptions::default()
    })
    .await
    .unwrap();
    let http = node.http_addr().unwrap();
    let mut events =
        tokio::task::spawn_blocking(move || Events::open(http)).await.unwrap().unwrap();
    let (first, mut events) = tokio::task::spawn_blocking(move || {
        let s = events.next_status(Duration::from_secs(5));
        (s, events)
    })
    .await
    .unwrap();
    let first = first.expect("a status event at once");
    assert_eq!(first["last_seq"], 0);
    assert!(first["started_at"].as_u64().unwrap() > 1_700_000_000);

    // Quiet for longer than the idle timeout: the stream stays open (the connection is busy
    // sending it), and nothing is sent while nothing changes.
    let (quiet, mut events) = tokio::task::spawn_blocking(move || {
        let s = events.next_status(Duration::from_secs(2));
        (s, events)
    })
    .await
    .unwrap();
    assert!(quiet.is_none(), "an event while nothing changed: {quiet:?}");

    // A bundle arrives and applies: events follow it to seq 1, with its size and progress.
    let (_b1, t1) =
        a.publish("bundle-1", true, &[a.net.contract(0, 1, &[student("S1")])], None).await;
    add(&node, &t1);
    assert!(node.wait_applied(1, LIMIT).await);
    let root = node.status().state_root;
    let seen = tokio::task::spawn_blocking(move || {
        let mut seen = Vec::new();
        while let Some(s) = events.next_status(Duration::from_secs(10)) {
            let done = s["last_seq"] == 1;
            seen.push(s);
            if done {
                break;
            }
        }
        seen
    })
    .await
    .unwrap();
    let last = seen.last().expect("status events after the bundle came");
    assert_eq!(last["last_seq"], 1);
    assert_eq!(last["state_root"], root.to_hex());
    let bundle = &last["torrents"][0];
    assert_eq!(bundle["state"], "applied");
    assert_eq!(bundle["size"], t1.total_length());
    assert_eq!(bundle["down_bps"], 0, "a finished download takes nothing");
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_streams_are_bounded_and_a_closed_one_frees_its_place() {
    let a = Authority::new(1).await;
    let node = a.node("peer").await;
    let http = node.http_addr().unwrap();
    let (open, refused, after) = tokio::task::spawn_blocking(move || {
        let mut open: Vec<Events> = (0..64).map(|_| Events::open(http).unwrap()).collect();
        let refused = Events::open(http).err();
        drop(open.pop());
        // The server notices the closed stream at its next write at the latest (a keep-alive
        // comment, or a status change); bounded retry.
        let deadline = Instant::now() + Duration::from_secs(30);
        let after = loop {
            match Events::open(http) {
                Ok(e) => break Some(e),
                Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(200))
                }
                Err(_) => break None,
            }
        };
        (open, refused, after)
    })
    .await
    .unwrap();
    // Pages of other sites may not open streams at all.
    let host = http.to_string();
    for headers in [
        [("Host", host.as_str()), ("Origin", "https://evil.example")],
        [("Host", host.as_str()), ("Sec-Fetch-Site", "cross-site")],
    ] {
        let r = exchange(http, "GET", "/v1/events", &headers, "");
        assert_eq!(r.status, 403, "{headers:?}: {}", r.body);
        assert!(r.json["error"].as_str().unwrap().contains("another site"));
    }
    let refused = refused.expect("the 65th stream is refused");
    assert!(refused.starts_with("HTTP/1.1 503"), "{refused}");
    assert!(refused.to_ascii_lowercase().contains("retry-after: 5"), "{refused}");
    assert!(after.is_some(), "a place freed by a closed stream is given again");
    let metrics = exchange(http, "GET", "/metrics", &[("Host", &host)], "");
    assert_eq!(metrics.status, 200);
    assert!(metrics.body.contains("\nswarmvm_event_streams 64\n"), "{}", metrics.body);
    drop(open);
    node.shutdown().await;
}

/// Posts magnets `range` that nobody can resolve (their tracker's port answers nothing): each
/// stays a bundle the node knows, resolving. Returns their info-hashes, in order.
fn dead_magnets(http: SocketAddr, range: std::ops::Range<u32>) -> Vec<String> {
    range
        .map(|i| {
            let magnet = format!(
                "magnet:?xt=urn:btih:{:040x}&tr=http%3A%2F%2F127.0.0.1%3A9%2Fannounce",
                u128::from(i) + 1
            );
            let body = serde_json::json!({ "magnet": magnet }).to_string();
            let (code, answer) = swarmvm_test_support::http::post(http, "/v1/bundles", &body);
            assert_eq!(code, 202, "{answer}");
            answer["info_hash"].as_str().unwrap().to_owned()
        })
        .collect()
}

fn info_hashes(list: &Value) -> Vec<String> {
    list.as_array().unwrap().iter().map(|b| b["info_hash"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_and_its_events_list_the_newest_bundles_and_the_rest_are_paged() {
    use swarmvm_node::STATUS_BUNDLES;
    let a = Authority::new(1).await;
    let limits = NodeLimits {
        max_pending: 100,
        resolve_timeout: Duration::from_secs(600),
        ..NodeLimits::default()
    };
    let node = swarmvm_node::Node::start(NodeOptions {
        data_dir: a.dir.path().join("peer"),
        network: Some(a.net.network.clone()),
        swarm: SwarmOptions::loopback(),
        http: Some("127.0.0.1:0".parse().unwrap()),
        limits,
        ..NodeOptions::default()
    })
    .await
    .unwrap();
    let http = node.http_addr().unwrap();
    let n = STATUS_BUNDLES + 13;
    let hashes = dead_magnets(http, 0..n as u32);

    // The status lists the newest, with how many there are and transfers summed over all.
    let (code, status) = get(http, "/v1/status");
    assert_eq!(code, 200, "{status}");
    assert_eq!(info_hashes(&status["torrents"]), hashes[n - STATUS_BUNDLES..].to_vec());
    assert_eq!(status["torrents_known"], n);
    assert_eq!(status["transfer"]["fetched"], 0);
    assert_eq!(status["transfer"]["peers"], 0);
    let size = status.to_string().len();

    // The rest, a page at a time, oldest first; a page of all, and past the end.
    let (code, older) = get(http, &format!("/v1/bundles?from=1&limit={}", n - STATUS_BUNDLES));
    assert_eq!(code, 200, "{older}");
    assert_eq!(info_hashes(&older["bundles"]), hashes[..n - STATUS_BUNDLES].to_vec());
    assert_eq!(older["known"], n);
    assert_eq!(older["from"], 1);
    assert_eq!(older["next"], n - STATUS_BUNDLES + 1);
    let mut all = Vec::new();
    let mut from = 1;
    loop {
        let (code, page) = get(http, &format!("/v1/bundles?from={from}&limit=10"));
        assert_eq!(code, 200, "{page}");
        assert!(page["bundles"].as_array().unwrap().len() <= 10, "{page}");
        all.extend(info_hashes(&page["bundles"]));
        assert!(all.len() <= n, "{page}");
        match page["next"].as_u64() {
            Some(next) => from = next,
            None => break,
        }
    }
    assert_eq!(all, hashes);
    let (code, page) = get(http, "/v1/bundles");
    assert_eq!((code, info_hashes(&page["bundles"])), (200, hashes.clone()));
    assert_eq!(page["next"], Value::Null);
    let (code, page) = get(http, &format!("/v1/bundles?from={}", n + 1));
    assert_eq!((code, page["bundles"].as_array().map(Vec::len)), (200, Some(0)), "{page}");
    assert_eq!(page["next"], Value::Null);
    for bad in ["limit=0", "limit=1001", "from=x", "after=3"] {
        let (code, answer) = get(http, &format!("/v1/bundles?{bad}"));
        assert_eq!(code, 400, "{bad}: {answer}");
    }

    // Each status event is as bounded as the status.
    let mut events =
        tokio::task::spawn_blocking(move || Events::open(http)).await.unwrap().unwrap();
    let (first, mut events) = tokio::task::spawn_blocking(move || {
        let s = events.next_status(Duration::from_secs(10));
        (s, events)
    })
    .await
    .unwrap();
    let first = first.expect("a status event at once");
    assert_eq!(first["torrents"].as_array().unwrap().len(), STATUS_BUNDLES);
    assert_eq!(first["torrents_known"], n);

    // Twenty more: the status and the events stay the same size; the metrics count them all.
    let more = dead_magnets(http, n as u32..n as u32 + 20);
    let (_, status) = get(http, "/v1/status");
    let newest: Vec<String> =
        hashes.iter().chain(&more).skip(n + 20 - STATUS_BUNDLES).cloned().collect();
    assert_eq!(info_hashes(&status["torrents"]), newest);
    assert_eq!(status["torrents_known"], n + 20);
    let later = status.to_string().len();
    assert!(later <= size + 16, "the status grew from {size} to {later} bytes");
    let last = tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + LIMIT;
        loop {
            let s = events.next_status(Duration::from_secs(10)).expect("status events");
            if s["torrents_known"] == n + 20 || Instant::now() > deadline {
                return s;
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(last["torrents_known"], n + 20, "{last}");
    assert_eq!(info_hashes(&last["torrents"]), newest);
    let metrics = exchange(http, "GET", "/metrics", &[("Host", &http.to_string())], "");
    let resolving = format!("\nswarmvm_bundles{{state=\"resolving\"}} {}\n", n + 20);
    assert!(metrics.body.contains(&resolving), "{}", metrics.body);
    node.shutdown().await;
}
