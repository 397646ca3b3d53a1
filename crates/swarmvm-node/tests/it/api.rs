//! The HTTP API: every route, and bad input getting a 4xx with a JSON error.

use base64::Engine as _;
use serde_json::json;
use swarmvm_node::BundleState;
use swarmvm_test_support::http::{get, post, request};
use swarmvm_test_support::net::{nft, student, vote};

use crate::support::{Authority, LIMIT, add, is, wait_bundle};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_answers_json() {
    let a = Authority::new(2).await;
    let contracts = [
        a.net.contract(0, 1, &[student("S001")]),
        a.net.contract(1, 1, &[vote("P001")]),
        a.net.contract(1, 1, &[nft("N1")]), // replayed nonce: a rejection receipt
    ];
    let (_b1, t1) = a.publish("bundle-1", true, &contracts, None).await;
    let node = a.node("peer").await;
    let http = node.http_addr().unwrap();
    add(&node, &t1);
    assert!(node.wait_applied(1, LIMIT).await);

    let (code, index) = get(http, "/");
    assert_eq!(code, 200);
    assert!(index["routes"].as_array().unwrap().len() >= 8);

    let (code, status) = get(http, "/v1/status");
    assert_eq!(code, 200);
    assert_eq!(status["last_seq"], 1);
    assert_eq!(status["network"], a.net.id());
    assert_eq!(status["peer_id"].as_str().unwrap().len(), 40);
    assert!(status["peer_id"].as_str().unwrap().starts_with("2d535630313030"), "-SV0100- in hex");
    assert_eq!(status["torrents"][0]["state"], "applied");
    assert_eq!(status["torrents"][0]["percent"], 100.0);
    assert!(status["torrents"][0]["fetched"].as_u64().unwrap() > 0);

    let (code, state) = get(http, "/v1/state");
    assert_eq!(code, 200);
    assert_eq!(state["students"]["S001"]["name"], "John Doe");
    assert_eq!(state["proposals"]["P001"]["votes"], 1);
    let (code, root) = get(http, "/v1/state/root");
    assert_eq!(code, 200);
    assert_eq!(root["state_root"], status["state_root"]);
    // One table a page at a time, in id order.
    let (code, page) = get(http, "/v1/state/wallets?limit=1");
    assert_eq!(code, 200, "{page}");
    assert_eq!(page["table"], "wallets");
    let first = page["entries"][0]["id"].as_str().unwrap().to_owned();
    assert_eq!(page["entries"].as_array().unwrap().len(), 1);
    assert_eq!(page["next"], first.as_str());
    let (_, rest) = get(http, &format!("/v1/state/wallets?after={first}&limit=10"));
    let second = rest["entries"][0]["id"].as_str().unwrap();
    assert!(second > first.as_str(), "{second} after {first}");
    assert_eq!((rest["entries"].as_array().unwrap().len(), &rest["next"]), (1, &json!(null)));
    assert_eq!(rest["entries"][0]["label"], state["wallets"][second]["label"]);
    let (_, students) = get(http, "/v1/state/students");
    assert_eq!(students["entries"][0]["id"], "S001");
    assert_eq!(students["entries"][0]["name"], "John Doe");
    let (_, proposals) = get(http, "/v1/state/proposals");
    assert_eq!(proposals["entries"][0]["votes"], 1);
    assert_eq!(root["state_root"], state["state_root"]);
    // One entry: as its table's page shows it, with the state it was read from.
    let (code, one) = get(http, "/v1/state/students/S001");
    assert_eq!(code, 200, "{one}");
    assert_eq!((&one["table"], &one["entry"]), (&json!("students"), &students["entries"][0]));
    assert_eq!((&one["state_root"], &one["last_seq"]), (&root["state_root"], &json!(1)));
    // An id with a slash, as it is and escaped.
    let vote_id = format!("P001/{}", a.net.peers[1].id());
    let (_, votes) = get(http, "/v1/state/votes");
    assert_eq!(votes["entries"][0]["id"], vote_id.as_str());
    for path in [
        format!("/v1/state/votes/{vote_id}"),
        format!("/v1/state/votes/{}", vote_id.replace('/', "%2F")),
    ] {
        let (code, one) = get(http, &path);
        assert_eq!((code, &one["entry"]), (200, &votes["entries"][0]), "{path}");
    }
    let (code, wallet) = get(http, &format!("/v1/state/nonces/{}", a.net.peers[0].id()));
    assert_eq!((code, &wallet["entry"]["value"]), (200, &json!(1)), "{wallet}");

    let (code, ops) = get(http, "/v1/operations");
    assert_eq!(code, 200);
    assert_eq!(ops["register_student"], "register_student");
    let (code, wallets) = get(http, "/v1/wallets");
    assert_eq!(code, 200);
    assert_eq!(wallets.as_object().unwrap().len(), 2);
    assert_eq!(wallets[a.net.peers[0].id().as_str()]["label"], "peer1");

    let (code, bundles) = get(http, "/v1/bundles");
    assert_eq!(code, 200);
    assert_eq!(bundles["bundles"][0]["seq"], 1);
    let (code, receipts) = get(http, "/v1/receipts");
    assert_eq!(code, 200);
    let list = receipts["receipts"].as_array().unwrap();
    assert_eq!(list.len(), 3);
    assert_eq!(list[2]["status"], "rejected");
    assert!(list[2]["reason"].as_str().unwrap().contains("nonce 1 is not above"));
    let (code, page) = get(http, "/v1/receipts?from=1&limit=1");
    assert_eq!((code, page["receipts"].as_array().unwrap().len()), (200, 1));
    let (code, log) = get(http, "/v1/log");
    assert_eq!(code, 200);
    assert_eq!(log["log"][0]["seq"], 1);
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bundles_posted_as_magnet_or_torrent_are_fetched_and_applied() {
    let a = Authority::new(1).await;
    let (b1, t1) =
        a.publish("bundle-1", true, &[a.net.contract(0, 1, &[student("S001")])], None).await;
    let (_b2, t2) =
        a.publish("bundle-2", false, &[a.net.contract(0, 2, &[vote("P1")])], Some(&b1)).await;
    let node = a.node("peer").await;
    let http = node.http_addr().unwrap();
    let (code, body) =
        post(http, "/v1/bundles", &json!({"magnet": t1.magnet().to_string()}).to_string());
    assert_eq!(code, 202, "{body}");
    assert_eq!(body["info_hash"], t1.info_hash().to_string());
    let b64 = base64::engine::general_purpose::STANDARD.encode(t2.as_bytes());
    let (code, body) = post(http, "/v1/bundles", &json!({"torrent_base64": b64}).to_string());
    assert_eq!(code, 202, "{body}");
    assert!(node.wait_applied(2, LIMIT).await);
    wait_bundle(&node, &t2.info_hash().to_string(), is(BundleState::Applied)).await;
    // Posting a known bundle again changes nothing.
    let (code, _) = post(http, "/v1/bundles", &json!({"torrent_base64": b64}).to_string());
    assert_eq!(code, 202);
    assert_eq!(node.bundles().len(), 2);
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_4xx_with_a_json_error() {
    let a = Authority::new(1).await;
    let node = a.node("peer").await;
    let http = node.http_addr().unwrap();
    let long_id = format!("/v1/state/students/{}", "S".repeat(4000));
    let cases: &[(&str, &str, Option<&str>, u16, &str)] = &[
        ("POST", "/v1/bundles", Some("{not json"), 400, "json"),
        ("POST", "/v1/bundles", Some("{}"), 400, "exactly one of"),
        (
            "POST",
            "/v1/bundles",
            Some(r#"{"magnet": "magnet:?xt=urn:btih:00", "torrent_base64": "AA=="}"#),
            400,
            "exactly one of",
        ),
        (
            "POST",
            "/v1/bundles",
            Some(r#"{"magnet": "http://example.invalid/x"}"#),
            400,
            "bad magnet link",
        ),
        (
            "POST",
            "/v1/bundles",
            Some(r#"{"magnet": "magnet:?xt=urn:btih:zzzz"}"#),
            400,
            "is not an info-hash",
        ),
        ("POST", "/v1/bundles", Some(r#"{"torrent_base64": "!!!"}"#), 400, "not base64"),
        ("POST", "/v1/bundles", Some(r#"{"torrent_base64": "ZDQ6c3BhbWU="}"#), 400, "bad torrent"),
        ("POST", "/v1/bundles", Some(r#"{"torrent": "x"}"#), 400, "unknown field"),
        ("GET", "/v1/nope", None, 404, "no route GET /v1/nope"),
        ("DELETE", "/v1/status", None, 405, "DELETE is not allowed on /v1/status"),
        ("GET", "/v1/receipts?limit=0", None, 400, "limit must be from 1 to 10000"),
        ("GET", "/v1/receipts?limit=abc", None, 400, "invalid"),
        ("GET", "/v1/log?limit=0", None, 400, "limit must be from 1 to 10000"),
        ("POST", "/v1/state", Some("{}"), 405, "POST is not allowed on /v1/state"),
        ("GET", "/v1/state/people", None, 404, "no state table 'people'; the tables are"),
        ("GET", "/v1/state/students?limit=0", None, 400, "limit must be from 1 to 1000"),
        ("GET", "/v1/state/students?limit=1001", None, 400, "limit must be from 1 to 1000"),
        ("GET", "/v1/state/students?from=1", None, 400, "unknown field"),
        (
            "GET",
            "/v1/state/students/S999",
            None,
            404,
            "no entry 'S999' in the state table students",
        ),
        ("GET", "/v1/state/people/S001", None, 404, "no state table 'people'"),
        ("GET", "/v1/state/students/S%0A1", None, 404, "no entry 'S\\n1'"),
        (
            "GET",
            "/v1/state/students/..%2F..%2Fetc%2Fpasswd",
            None,
            404,
            "no entry '../../etc/passwd'",
        ),
        ("GET", "/v1/state/students/%00", None, 404, "no entry"),
        ("GET", "/v1/state/students/%ff%fe", None, 400, "utf-8"),
        ("GET", "/v1/wallets/%ff", None, 400, "utf-8"),
        ("GET", "/v1/bundles/%c3%28", None, 400, "utf-8"),
        ("GET", "/v1/state/students/", None, 404, "no route"),
        ("GET", long_id.as_str(), None, 404, "…' in the state table students"),
    ];
    for &(method, path, body, code, says) in cases {
        let (got, json) = request(http, method, path, body);
        assert_eq!(got, code, "{method} {path} {body:?}: {json}");
        let error = json["error"]
            .as_str()
            .unwrap_or_else(|| panic!("{method} {path}: no JSON error: {json}"));
        assert!(error.to_lowercase().contains(&says.to_lowercase()), "{method} {path}: {error}");
        assert!(!error.contains('\n'));
    }
    assert!(node.bundles().is_empty(), "nothing was added");
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn torrents_dropped_in_the_watched_folder_are_added() {
    let a = Authority::new(1).await;
    let (_b1, t1) =
        a.publish("bundle-1", true, &[a.net.contract(0, 1, &[student("S001")])], None).await;
    let drop_dir = a.dir.path().join("drop");
    std::fs::create_dir(&drop_dir).unwrap();
    let node = swarmvm_node::Node::start(swarmvm_node::NodeOptions {
        data_dir: a.dir.path().join("peer"),
        network: Some(a.net.network.clone()),
        swarm: swarmvm_swarm::SwarmOptions {
            peers: vec![a.seeder.listen_addr().unwrap()],
            ..swarmvm_swarm::SwarmOptions::loopback()
        },
        wallet: Some(PEER_WALLET.parse().unwrap()),
        http: None,
        watch: Some(drop_dir.clone()),
        ..Default::default()
    })
    .await
    .unwrap();
    std::fs::write(drop_dir.join("junk.torrent"), b"not a torrent").unwrap();
    std::fs::write(drop_dir.join("b1.torrent"), t1.as_bytes()).unwrap();
    assert!(node.wait_applied(1, LIMIT).await);
    assert_eq!(node.bundles().len(), 1, "the junk file was ignored");
    assert_eq!(node.status().wallet.map(|w| w.to_string()).as_deref(), Some(PEER_WALLET));
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_in_the_prometheus_text_format_and_health_says_ok() {
    let a = Authority::new(1).await;
    let (_b1, t1) =
        a.publish("bundle-1", true, &[a.net.contract(0, 1, &[student("S1")])], None).await;
    let node = a.node("peer").await;
    let http = node.http_addr().unwrap();
    add(&node, &t1);
    assert!(node.wait_applied(1, LIMIT).await);
    let (code, health) = get(http, "/v1/health");
    assert_eq!((code, health["status"].clone()), (200, json!("ok")), "{health}");
    let host = http.to_string();
    let r = swarmvm_test_support::http::exchange(http, "GET", "/metrics", &[("Host", &host)], "");
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").unwrap().starts_with("text/plain; version=0.0.4"));
    let text = r.body;
    for line in [
        "swarmvm_last_seq 1",
        "swarmvm_bundles{state=\"applied\"} 1",
        "swarmvm_bundles_applied_total 1",
        "swarmvm_apply_seconds_count 1",
        "swarmvm_apply_seconds_bucket{le=\"+Inf\"} 1",
        "swarmvm_stale 0",
        "swarmvm_diverged 0",
        "# TYPE swarmvm_apply_seconds histogram",
    ] {
        assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
    }
    let value = |name: &str| -> f64 {
        let line = text.lines().find(|l| l.starts_with(name)).unwrap();
        line.rsplit(' ').next().unwrap().parse().unwrap()
    };
    assert!(value("swarmvm_downloaded_bytes_total") > 0.0, "{text}");
    assert!(value("swarmvm_http_requests_total{code=\"2xx\"}") >= 1.0, "{text}");
    // Prometheus's own Python client parses every family and sample.
    swarmvm_test_support::require_python_modules(&["prometheus_client"]);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("metrics.txt"), &text).unwrap();
    let script = "import sys\nfrom prometheus_client.parser import text_string_to_metric_families as p\n\
        fams = {f.name: f for f in p(open(sys.argv[1]).read())}\n\
        print(len(fams), fams['swarmvm_apply_seconds'].type, fams['swarmvm_last_seq'].samples[0].value)\n";
    let out = std::process::Command::new("python3")
        .args(["-c", script, &dir.path().join("metrics.txt").to_string_lossy()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let fields: Vec<&str> = stdout.split_whitespace().collect();
    assert_eq!(fields[0].parse::<usize>().unwrap(), 17, "{stdout}");
    assert_eq!(fields[1], "histogram", "{stdout}");
    assert_eq!(fields[2].parse::<f64>().unwrap(), 1.0, "{stdout}");
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_give_other_origins_no_cors_permission_and_carry_a_strict_csp() {
    let a = Authority::new(1).await;
    let node = a.node("peer").await;
    let http = node.http_addr().unwrap();
    let host = http.to_string();
    let evil = [("Host", host.as_str()), ("Origin", "https://evil.example")];
    let preflight = [
        ("Host", host.as_str()),
        ("Origin", "https://evil.example"),
        ("Access-Control-Request-Method", "POST"),
    ];
    for (method, path, headers) in [
        ("GET", "/v1/status", &evil[..]),
        ("GET", "/metrics", &evil[..]),
        ("OPTIONS", "/v1/contracts", &preflight[..]),
        ("POST", "/v1/contracts", &evil[..]),
    ] {
        let r = swarmvm_test_support::http::exchange(http, method, path, headers, "x");
        assert!(
            !r.headers.iter().any(|(n, _)| n.starts_with("access-control-")),
            "{method} {path}: {:?}",
            r.headers
        );
        assert_eq!(
            r.header("content-security-policy"),
            Some("default-src 'none'; frame-ancestors 'none'"),
            "{method} {path}"
        );
        assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
    }
    // A write from a page of another origin is refused outright.
    let r = swarmvm_test_support::http::exchange(http, "POST", "/v1/contracts", &evil, "x");
    assert_eq!(r.status, 403, "{}", r.body);
    node.shutdown().await;
}

/// A wallet id (the RFC 7638 example key's thumbprint).
const PEER_WALLET: &str = "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs";
